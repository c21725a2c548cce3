"""Code written for sqlaudit 0.7 keeps working: its names, arguments and positional order."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
from sqlalchemy import String, TypeDecorator
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Mapped, mapped_column

from sqlaudit import get_resource_changes, register_type, track_table, unregister_type
from sqlaudit.config import SQLAuditConfig, clear_config, get_config, has_config, set_config
from sqlaudit.context import (
    AuditContextManager,
    clear_audit_context,
    current_context,
    get_audit_context,
    set_audit_context,
)
from sqlaudit.exceptions import (
    ConfigurationError,
    ConfigurationTypeError,
    ContextTypeError,
    FilterError,
    InvalidTimeZoneError,
    NotConfiguredError,
    SQLAuditConfigError,
    SQLAuditError,
)
from sqlaudit.serializer import Serializer, TypeHandler


def declare_customer(base: Any, **options: Any) -> type[Any]:
    """Declare a ``Customer`` (id, name, email) tracking name and email."""

    @track_table(tracked_fields=["name", "email"], **options)
    class Customer(base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(100))
        email: Mapped[str | None] = mapped_column(String(100))

    return Customer


def add_and_rename(audit: Any, Customer: Any) -> None:
    """Insert customer 1 (two fields), then rename it: three change rows."""
    with audit.Session() as session:
        session.add(Customer(id=1, name="Ann", email="ann@example.com"))
        session.commit()
        session.get(Customer, 1).name = "Anne"
        session.commit()


# --- exceptions and config -----------------------------------------------------------


def test_sqlaudit_config_error_catches_every_configuration_error():
    """0.7's ``SQLAuditConfigError`` is the base of today's configuration errors."""
    for cls in (ConfigurationError, ConfigurationTypeError, NotConfiguredError):
        assert issubclass(cls, SQLAuditConfigError)
    assert issubclass(InvalidTimeZoneError, SQLAuditConfigError)
    assert issubclass(SQLAuditConfigError, SQLAuditError)
    clear_config()
    with pytest.raises(SQLAuditConfigError, match="set_config"):
        get_config()


def test_has_config_tells_whether_set_config_was_called(engine):
    """``has_config()`` is False before ``set_config()`` and after ``clear_config()``."""
    from sqlalchemy.orm import sessionmaker

    assert has_config() is False
    set_config(SQLAuditConfig(session_factory=sessionmaker(engine)))
    assert has_config() is True
    clear_config()
    assert has_config() is False


@pytest.mark.parametrize("create", [True, False])
def test_create_all_models_is_create_table_with_a_warning(engine, create):
    """``SQLAuditConfig(create_all_models=...)`` warns and decides whether the table is created."""
    from sqlalchemy.orm import sessionmaker

    with pytest.warns(DeprecationWarning, match=f"create_table={create}"):
        config = SQLAuditConfig(session_factory=sessionmaker(engine), create_all_models=create)
    assert config.create_table is create
    set_config(config)
    assert sa_inspect(engine).has_table("sqlaudit_changes") is create


def test_create_all_models_of_the_wrong_type_is_refused():
    """A non-bool ``create_all_models`` raises, naming the option and the fix."""
    with (
        pytest.warns(DeprecationWarning),
        pytest.raises(ConfigurationTypeError, match=r"create_all_models.*create_table"),
    ):
        SQLAuditConfig(session_factory=lambda: None, create_all_models="yes")  # type: ignore[arg-type]


# --- track_table ----------------------------------------------------------------------


def test_user_id_field_is_accepted_with_a_warning_and_ignored(audit):
    """``track_table(user_id_field=...)`` warns; the user still comes from the callback."""
    with pytest.warns(DeprecationWarning, match=r"user_id_field='email'\) is ignored"):
        Customer = declare_customer(audit.base, user_id_field="email")
    audit.create_tables()
    audit.user = 7
    add_and_rename(audit, Customer)
    assert {row.changed_by for row in audit.rows()} == {"7"}


# --- get_resource_changes ---------------------------------------------------------------


def test_the_0_7_positional_order_is_understood_with_a_warning(audit):
    """``get_resource_changes(Customer, 1, session)`` (0.7's order) reads customer 1's history."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    add_and_rename(audit, Customer)
    with audit.Session() as session:
        with pytest.warns(DeprecationWarning, match="positional order"):
            changes = get_resource_changes(Customer, 1, session)
        assert [c.field_name for c in changes] == ["name", "email", "name"]
        with pytest.warns(DeprecationWarning, match="positional order"):
            assert len(get_resource_changes(Customer, [1, 2])) == 3
        with pytest.warns(DeprecationWarning, match="positional order"):
            assert get_resource_changes(Customer, "2", session) == []


def test_sort_by_timestamp_warns_and_sort_direction_orders(audit):
    """``sort_by="timestamp"`` warns (the order is the order of writing); ``sort_direction="asc"`` lists oldest first."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    add_and_rename(audit, Customer)
    with audit.Session() as session:
        newest_first = get_resource_changes(Customer, session=session)
        oldest_first = get_resource_changes(Customer, session=session, sort_direction="asc")
        assert oldest_first == newest_first[::-1]
        with pytest.warns(DeprecationWarning, match="sort_by"):
            legacy = get_resource_changes(
                Customer, session=session, sort_by="timestamp", sort_direction="desc"
            )
        assert legacy == newest_first


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sort_by": "changed_by"}, r"Customer, sort_by='changed_by'.*Remove sort_by"),
        ({"sort_direction": "up"}, r"Customer, sort_direction='up'.*'asc'"),
    ],
)
def test_unknown_sort_options_are_refused(audit, options, message):
    """Another ``sort_by`` or a bad ``sort_direction`` raises a FilterError naming the fix."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    with pytest.raises(FilterError, match=message):
        get_resource_changes(Customer, **options)


# --- context ----------------------------------------------------------------------------


def test_audit_context_manager_records_user_reason_and_impersonator(audit):
    """``AuditContextManager`` warns and records its user, reason and ``impersonated_by``."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    audit.user = 1
    with pytest.warns(DeprecationWarning, match="audit_context"):
        manager = AuditContextManager(user_id="123", reason="Update record", impersonated_by=9)
    with audit.Session() as session, manager as context:
        assert context.user_id == "123"
        session.add(Customer(id=1, name="Ann"))
        session.commit()
    assert current_context().reason is None
    changes = get_resource_changes(Customer, filter_resource_ids=1)
    assert [(c.changed_by, c.reason, dict(c.extra)) for c in changes] == [
        ("123", "Update record", {"impersonated_by": "9"})
    ]


def test_audit_context_manager_without_user_keeps_the_callback(audit):
    """``AuditContextManager(reason=...)`` leaves the user to ``get_user_id_callback``."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    audit.user = 4
    with (
        pytest.warns(DeprecationWarning),
        AuditContextManager(reason="why"),
        audit.Session() as session,
    ):
        session.add(Customer(id=1, name="Ann"))
        session.commit()
    assert [(r.changed_by, r.extra) for r in audit.rows()] == [("4", {"reason": "why"})]


def test_set_audit_context_holds_until_cleared(audit):
    """``set_audit_context`` warns and sets the context until ``clear_audit_context()``."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    audit.user = 1
    with pytest.warns(DeprecationWarning, match="set_audit_context"):
        returned = set_audit_context(user_id="42", reason="import")
    try:
        assert get_audit_context() == returned == current_context()
        with audit.Session() as session:
            session.add(Customer(id=1, name="Ann"))
            session.commit()
    finally:
        clear_audit_context()
    assert get_audit_context().reason is None
    assert {row.changed_by for row in audit.rows()} == {"42"}


# --- value types ------------------------------------------------------------------------


class Money:
    """A user value type: an amount and a currency."""

    def __init__(self, amount: int, currency: str) -> None:
        self.amount, self.currency = amount, currency

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and (self.amount, self.currency) == (
            other.amount,
            other.currency,
        )

    def __hash__(self) -> int:
        return hash((self.amount, self.currency))

    def __repr__(self) -> str:
        return f"Money({self.amount}, {self.currency!r})"

    @classmethod
    def parse(cls, text: str) -> Money:
        amount, currency = text.split(" ")
        return cls(int(amount), currency)


class MoneyType(TypeDecorator[Money]):
    """Money stored as text."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: Money | None, dialect: Any) -> str | None:
        return None if value is None else f"{value.amount} {value.currency}"

    def process_result_value(self, value: str | None, dialect: Any) -> Money | None:
        return None if value is None else Money.parse(value)


@pytest.fixture
def money_registered():
    """``Money`` registered with ``register_type`` for the test, and unregistered after it."""
    register_type(Money, lambda m: f"{m.amount} {m.currency}", Money.parse, name="money")
    yield
    unregister_type(Money)


def declare_wallet(base: Any) -> type[Any]:
    """Declare a tracked ``Wallet`` with a ``Money`` column."""

    @track_table(tracked_fields=["balance"])
    class Wallet(base):
        __tablename__ = "wallets"
        id: Mapped[int] = mapped_column(primary_key=True)
        balance: Mapped[Money | None] = mapped_column(MoneyType())

    return Wallet


def test_a_registered_type_reads_back_as_itself(audit, money_registered):
    """A value of a type given to ``register_type`` is stored with its name and reads back typed, with no warning."""
    Wallet = declare_wallet(audit.base)
    audit.create_tables()
    with audit.Session() as session:
        session.add(Wallet(id=1, balance=Money(5, "EUR")))
        session.commit()
        session.get(Wallet, 1).balance = Money(7, "USD")
        session.commit()
    assert [row.new_value for row in audit.rows()] == ["custom:money:5 EUR", "custom:money:7 USD"]
    changes = get_resource_changes(Wallet, filter_resource_ids=1)
    assert [(c.old_value, c.new_value) for c in changes] == [
        (Money(5, "EUR"), Money(7, "USD")),
        (None, Money(5, "EUR")),
    ]


def test_a_type_no_longer_registered_reads_back_as_its_text(audit, money_registered):
    """Rows written under a name that is no longer registered read back as the encoded text."""
    Wallet = declare_wallet(audit.base)
    audit.create_tables()
    with audit.Session() as session:
        session.add(Wallet(id=1, balance=Money(5, "EUR")))
        session.commit()
    unregister_type(Money)
    assert get_resource_changes(Wallet)[0].new_value == "5 EUR"


def test_0_7_custom_handlers_go_to_register_type(audit):
    """``Serializer.register_custom_handler`` warns and registers the type."""
    Wallet = declare_wallet(audit.base)
    audit.create_tables()
    with pytest.warns(DeprecationWarning, match="register_type"):
        Serializer.register_custom_handler(
            Money,
            TypeHandler(serialize=lambda m: f"{m.amount} {m.currency}", deserialize=Money.parse),
        )
    try:
        assert Serializer.has_handler(Money)
        with audit.Session() as session:
            session.add(Wallet(id=1, balance=Money(1, "GBP")))
            session.commit()
        assert get_resource_changes(Wallet)[0].new_value == Money(1, "GBP")
    finally:
        unregister_type(Money)
    assert not Serializer.has_handler(Money)


def test_an_encoder_that_returns_no_text_fails_the_flush(audit):
    """An encode function returning a non-str raises, naming the type and the fix, and nothing commits."""
    Wallet = declare_wallet(audit.base)
    audit.create_tables()
    register_type(Money, lambda m: m.amount, Money.parse)
    try:
        with audit.Session() as session:
            session.add(Wallet(id=1, balance=Money(1, "GBP")))
            with pytest.raises(ConfigurationTypeError, match="Money returned a int, not a str"):
                session.commit()
    finally:
        unregister_type(Money)
    with audit.Session() as session:
        assert session.get(Wallet, 1) is None


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: register_type("Money", str, str), ConfigurationTypeError, "class of the values"),
        (lambda: register_type(Money, "str", str), ConfigurationTypeError, "encode must be"),
        (lambda: register_type(Money, str, None), ConfigurationTypeError, "decode must be"),
        (lambda: register_type(int, str, int), ConfigurationError, "already records int"),
        (lambda: register_type(Money, str, str, name="a:b"), ConfigurationError, "without ':'"),
        (lambda: register_type(Money, str, str, name=""), ConfigurationError, "non-empty"),
    ],
)
def test_register_type_refuses_bad_arguments(call, error, message):
    """Bad arguments to ``register_type`` raise an error naming the type and the fix."""
    with pytest.raises(error, match=message):
        call()


def test_a_name_taken_by_another_class_is_refused():
    """Two classes cannot share a stored name: the second registration says which class has it."""
    register_type(Fraction, str, Fraction, name="number")
    try:
        with pytest.raises(ConfigurationError, match="already registered for Fraction"):
            register_type(Money, str, Money.parse, name="number")
        register_type(Fraction, str, Fraction, name="number")  # the same class again is fine
    finally:
        unregister_type(Fraction)


def test_0_7_context_names_refuse_ids_they_cannot_store():
    """A user id or impersonator of another type raises a ContextTypeError naming the argument and the fix."""
    with (
        pytest.warns(DeprecationWarning),
        pytest.raises(ContextTypeError, match=r"AuditContextManager\(user_id=\.\.\.\).*user's id"),
    ):
        AuditContextManager(user_id=1.5)
    with (
        pytest.warns(DeprecationWarning),
        pytest.raises(
            ContextTypeError, match=r"set_audit_context\(impersonated_by=\.\.\.\).*user's id"
        ),
    ):
        set_audit_context(impersonated_by=object())
    assert get_audit_context() == current_context()


def test_a_0_7_handler_of_the_wrong_type_is_refused():
    """``register_custom_handler`` given something other than a TypeHandler says to use register_type."""
    with (
        pytest.warns(DeprecationWarning),
        pytest.raises(ConfigurationTypeError, match=r"takes a TypeHandler.*register_type"),
    ):
        Serializer.register_custom_handler(Money, (str, Money.parse))  # type: ignore[arg-type]
