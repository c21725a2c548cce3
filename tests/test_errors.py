"""Every bad input raises a SQLAuditError that is also the right built-in and names the fix."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import ForeignKey, String, create_engine, func, select
from sqlalchemy.orm import Mapped, mapped_column, relationship, sessionmaker

from sqlaudit import (
    ConfigurationError,
    ConfigurationTypeError,
    FilterError,
    FilterTypeError,
    InvalidTimeZoneError,
    NotConfiguredError,
    SQLAuditConfig,
    SQLAuditError,
    TrackingError,
    UntrackedModelError,
    clear_config,
    get_config,
    get_resource_changes,
    set_config,
    track_table,
)


@contextmanager
def raises(error: type[Exception], builtin: type[Exception], match: str) -> Iterator[Any]:
    """Expect ``error`` matching ``match``, and check it is a SQLAuditError and a ``builtin``."""
    with pytest.raises(error, match=match) as info:
        yield info
    assert isinstance(info.value, SQLAuditError)
    assert isinstance(info.value, builtin)


def declare_customer(base: Any, **tracking: Any) -> type[Any]:
    """Declare a tracked ``Customer`` (id, name, email) on ``base``."""
    tracking.setdefault("tracked_fields", ["name"])

    @track_table(**tracking)
    class Customer(base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(100))
        email: Mapped[str | None] = mapped_column(String(100))

    return Customer


@pytest.fixture
def sqlite_config() -> Iterator[SQLAuditConfig]:
    """A configuration on an in-memory SQLite database, set globally."""
    engine = create_engine("sqlite://")
    config = SQLAuditConfig(session_factory=sessionmaker(engine), time_zone="UTC")
    set_config(config)
    yield config
    engine.dispose()


# --- @track_table ---------------------------------------------------------------------------


def test_tracked_field_that_is_not_a_column_lists_the_columns(base):
    """A tracked field that is not a column names the model, the field and the real columns."""
    with raises(
        TrackingError,
        ValueError,
        r"Customer\.phone is not a column of customers; columns are: id, name, email\."
        r".*Fix tracked_fields in @track_table on Customer",
    ):
        declare_customer(base, tracked_fields=["name", "phone"])


def test_relationship_given_as_tracked_field_hints_at_its_columns(base):
    """Tracking a relationship name says it is a relationship and which column to track."""

    class Customer(base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)

    with raises(
        TrackingError,
        ValueError,
        r"Order\.customer is not a column of orders.*"
        r"Order\.customer is a relationship; track its column\(s\) \['customer_id'\] instead",
    ):

        @track_table(tracked_fields=["customer"])
        class Order(base):
            __tablename__ = "orders"
            id: Mapped[int] = mapped_column(primary_key=True)
            customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
            customer: Mapped[Customer] = relationship()


def test_resource_id_field_that_is_not_a_column_is_rejected(base):
    """A ``resource_id_field`` that is not a column names it, the columns and the option."""
    with raises(
        TrackingError,
        ValueError,
        r"Customer\.code is not a column of customers; columns are: id, name, email\."
        r".*Fix resource_id_field",
    ):
        declare_customer(base, resource_id_field="code")


def test_track_table_on_a_class_that_is_not_mapped_is_rejected():
    """Decorating a plain class says it is not mapped and where the decorator belongs."""

    class Plain:
        pass

    with raises(TrackingError, ValueError, r"Plain.*is not mapped.*DeclarativeBase"):
        track_table(tracked_fields=["name"])(Plain)


# --- retrieval filters ----------------------------------------------------------------------


def test_untracked_model_is_rejected_by_retrieval(base, sqlite_config):
    """Asking for the changes of an untracked model names it and says to decorate it."""

    class Invoice(base):
        __tablename__ = "invoices"
        id: Mapped[int] = mapped_column(primary_key=True)

    with raises(UntrackedModelError, ValueError, r"Invoice is not tracked.*@track_table"):
        get_resource_changes(Invoice)


def test_filter_fields_naming_an_untracked_field_lists_the_tracked_ones(base, sqlite_config):
    """A filter field that is not tracked names the model, the field and the tracked fields."""
    customer = declare_customer(base, tracked_fields=["name"])
    with raises(
        FilterError,
        ValueError,
        r"Customer\.email is not a tracked field; tracked fields are: name\."
        r".*remove it from filter_fields",
    ):
        get_resource_changes(customer, filter_fields=["name", "email"])


def test_reversed_date_range_is_rejected(base, sqlite_config):
    """A date range whose start is after its end says so and suggests swapping the bounds."""
    customer = declare_customer(base)
    with raises(FilterError, ValueError, r"filter_date_range starts after it ends.*swap"):
        get_resource_changes(
            customer, filter_date_range=(datetime(2026, 1, 2), datetime(2026, 1, 1))
        )


@pytest.mark.parametrize("bad_id", [1.0, True, {"id": 1}], ids=["float", "bool", "dict"])
def test_resource_id_of_an_unsupported_type_is_rejected(base, sqlite_config, bad_id):
    """A resource id that is not a str, int or UUID raises FilterTypeError naming the option."""
    customer = declare_customer(base)
    with raises(FilterTypeError, TypeError, r"filter_resource_ids takes str, int or UUID"):
        get_resource_changes(customer, filter_resource_ids=bad_id)


@pytest.mark.parametrize("bad_id", [1.0, False, {"id": 1}], ids=["float", "bool", "dict"])
def test_user_id_of_an_unsupported_type_is_rejected(base, sqlite_config, bad_id):
    """A user id that is not a str, int or UUID raises FilterTypeError naming the option."""
    customer = declare_customer(base)
    with raises(FilterTypeError, TypeError, r"filter_user_ids takes str, int or UUID"):
        get_resource_changes(customer, filter_user_ids=bad_id)


def test_composite_key_model_given_a_single_id_asks_for_a_tuple(base, sqlite_config):
    """A composite-key model given a non-tuple id names the key columns and asks for a tuple."""

    @track_table(tracked_fields=["qty"])
    class Line(base):
        __tablename__ = "order_lines"
        order_id: Mapped[int] = mapped_column(primary_key=True)
        line_no: Mapped[int] = mapped_column(primary_key=True)
        qty: Mapped[int]

    with raises(
        FilterError, ValueError, r"Line is identified by 2 value\(s\) \(order_id, line_no\).*tuple"
    ):
        get_resource_changes(Line, filter_resource_ids=5)


@pytest.mark.parametrize("option", ["limit", "offset"])
def test_negative_limit_or_offset_is_rejected(base, sqlite_config, option):
    """A negative limit or offset raises FilterError naming the option."""
    customer = declare_customer(base)
    with raises(FilterError, ValueError, rf"{option} must be zero or more, not -1"):
        get_resource_changes(customer, **{option: -1})


@pytest.mark.parametrize("option", ["limit", "offset"])
@pytest.mark.parametrize("value", ["5", 2.0, True], ids=["str", "float", "bool"])
def test_limit_or_offset_that_is_not_an_int_is_rejected(base, sqlite_config, option, value):
    """A limit or offset that is not an int raises FilterTypeError naming the option."""
    customer = declare_customer(base)
    with raises(
        FilterTypeError, TypeError, rf"{option} must be an int, not {type(value).__name__}"
    ):
        get_resource_changes(customer, **{option: value})


# --- configuration --------------------------------------------------------------------------


def test_unknown_time_zone_is_rejected_when_the_config_is_built():
    """An unknown IANA name fails at construction, naming the value and valid examples."""
    with raises(
        InvalidTimeZoneError,
        ValueError,
        r"time_zone='Mars/Olympus' is not a known IANA time zone.*America/New_York",
    ) as info:
        SQLAuditConfig(session_factory=lambda: None, time_zone="Mars/Olympus")
    assert isinstance(info.value, ConfigurationError)


@pytest.mark.parametrize("value", [{"session_factory": None}, None], ids=["dict", "None"])
def test_set_config_given_something_else_than_a_config_is_rejected(value):
    """``set_config`` given a dict or None says it takes a SQLAuditConfig and how to build one."""
    with raises(
        ConfigurationTypeError,
        TypeError,
        rf"set_config\(\) takes a SQLAuditConfig, not {type(value).__name__}.*session_factory",
    ):
        set_config(value)
    with pytest.raises(NotConfiguredError):
        get_config()


def test_get_config_before_set_config_says_to_call_set_config():
    """``get_config`` before any ``set_config`` raises NotConfiguredError naming the fix."""
    clear_config()
    with raises(NotConfiguredError, RuntimeError, r"not configured.*set_config\(SQLAuditConfig"):
        get_config()


def test_session_factory_that_is_not_callable_is_rejected():
    """A session factory that is not callable names the option and what it accepts."""
    with raises(
        ConfigurationTypeError, TypeError, r"session_factory must be a sessionmaker.*not str"
    ):
        SQLAuditConfig(session_factory="sqlite://")


@pytest.mark.parametrize("option", ["create_table", "require_user", "bulk_in_database"])
def test_switch_that_is_not_a_bool_is_rejected(option):
    """A yes/no option given something else than True or False names the option and the value."""
    with raises(ConfigurationTypeError, TypeError, rf"{option} must be True or False, not 'no'"):
        SQLAuditConfig(session_factory=lambda: None, **{option: "no"})


def test_user_model_that_is_not_mapped_is_rejected():
    """A user model that is not a mapped class names the option and the class."""

    class User:
        pass

    with raises(ConfigurationTypeError, TypeError, r"user_model must be a mapped class.*User"):
        SQLAuditConfig(session_factory=lambda: None, user_model=User)


def test_user_id_field_that_is_not_a_column_lists_the_columns(base):
    """A ``user_model_user_id_field`` that is not a column names the model and its columns."""

    class User(base):
        __tablename__ = "users"
        id: Mapped[int] = mapped_column(primary_key=True)
        login: Mapped[str] = mapped_column(String(100))

    with raises(
        ConfigurationError,
        ValueError,
        r"User\.uid is not a column of users; columns are: id, login\."
        r".*Set user_model_user_id_field",
    ):
        SQLAuditConfig(
            session_factory=lambda: None, user_model=User, user_model_user_id_field="uid"
        )


# --- at flush time --------------------------------------------------------------------------


def count(audit: Any, model: type[Any]) -> int:
    """Return the number of rows of ``model``'s table, read on a fresh connection."""
    with audit.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(model.__table__)).scalar_one()


def test_tracked_flush_before_any_config_raises_and_commits_nothing(audit):
    """A tracked flush with no config set raises NotConfiguredError and writes nothing."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    clear_config()
    with audit.Session() as session:
        session.add(customer(name="Jane"))
        with raises(NotConfiguredError, RuntimeError, r"set_config"):
            session.commit()
        session.rollback()
    assert count(audit, customer) == 0
    assert audit.rows() == []


@pytest.mark.parametrize("user", [1.5, {"id": 1}], ids=["float", "dict"])
def test_user_callback_returning_an_unsupported_type_fails_the_flush(audit, user):
    """A user callback returning a float or dict raises ConfigurationTypeError; nothing is written."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    audit.user = user
    with audit.Session() as session:
        session.add(customer(name="Jane"))
        with raises(
            ConfigurationTypeError,
            TypeError,
            rf"user id must be a str, int, UUID or None.*not {type(user).__name__}"
            r".*fix get_user_id_callback",
        ):
            session.commit()
        session.rollback()
    assert count(audit, customer) == 0
    assert audit.rows() == []
