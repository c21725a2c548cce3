"""Transaction ids: one per database transaction, ``get_transaction_changes`` and ``filter_transaction_ids``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from freezegun import freeze_time
from sqlalchemy import ForeignKey, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqlaudit import FilterTypeError, get_resource_changes, get_transaction_changes, track_table


def declare_models(base: type[DeclarativeBase]) -> tuple[type[Any], type[Any]]:
    """Declare a tracked Customer (name, email) and a tracked Order (customer_id, total)."""

    @track_table(tracked_fields=["name", "email"])
    class Customer(base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(100))
        email: Mapped[str | None] = mapped_column(String(100))

    @track_table(tracked_fields=["customer_id", "total"])
    class Order(base):
        __tablename__ = "orders"
        id: Mapped[int] = mapped_column(primary_key=True)
        customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
        total: Mapped[int]

    return Customer, Order


def at(minute: int) -> datetime:
    """Return an aware UTC instant on 2 March 2026 at 10:<minute>."""
    return datetime(2026, 3, 2, 10, minute, tzinfo=UTC)


def one_transaction(audit: Any, customer: type[Any], name: str) -> str:
    """Insert a customer in its own transaction and return the transaction id of its rows."""
    with audit.Session() as session:
        session.add(customer(name=name))
        session.commit()
    return str(audit.rows()[-1].transaction_id)


def summary(changes: list[Any]) -> list[tuple[str, str, str, Any]]:
    """Return (table, operation, field, new value) of each change, in the order given."""
    return [(c.table_name, c.operation, c.field_name, c.new_value) for c in changes]


# --- one id per database transaction -------------------------------------------------------


def test_rows_of_one_transaction_share_an_id_across_flushes_and_models(audit):
    """Every change row of one transaction, over several flushes and two models, has the same transaction id; the next transaction has another."""
    Customer, Order = declare_models(audit.base)
    audit.create_tables()

    with audit.Session() as session:
        customer = Customer(name="Ann")
        session.add(customer)
        session.flush()
        session.add(Order(customer_id=customer.id, total=10))
        session.flush()
        customer.email = "ann@example.com"
        session.commit()
        customer.name = "Anna"
        session.commit()

    rows = audit.rows()
    assert [(row.table_name, row.operation, row.field_name) for row in rows] == [
        ("customers", "insert", "name"),
        ("orders", "insert", "customer_id"),
        ("orders", "insert", "total"),
        ("customers", "update", "email"),
        ("customers", "update", "name"),
    ]
    first = {row.transaction_id for row in rows[:4]}
    assert len(first) == 1
    assert rows[4].transaction_id not in first
    changes = get_resource_changes(Customer)
    assert [c.transaction_id for c in changes] == [
        row.transaction_id for row in (rows[4], rows[3], rows[0])
    ]


def test_rolled_back_transaction_id_is_not_reused(audit):
    """After a rollback, the next transaction of the same session gets a new id, not the rolled-back one."""
    Customer, _ = declare_models(audit.base)
    audit.create_tables()
    table = audit.config.table

    with audit.Session() as session:
        session.add(Customer(name="Ghost"))
        session.flush()
        rolled_back = session.execute(select(table.c.transaction_id)).scalars().all()
        session.rollback()
        session.add(Customer(name="Ann"))
        session.commit()

    rows = audit.rows()
    assert len(rolled_back) == 1
    assert [row.new_value is not None for row in rows] == [True]
    assert rows[0].transaction_id != rolled_back[0]
    assert get_transaction_changes(rolled_back[0]) == []


def test_savepoint_rows_share_the_outer_transaction_id(audit):
    """Rows written inside a savepoint, committed or rolled back and redone, share the outer transaction's id."""
    Customer, Order = declare_models(audit.base)
    audit.create_tables()

    with audit.Session() as session:
        customer = Customer(name="Ann")
        session.add(customer)
        session.flush()
        with session.begin_nested():
            session.add(Order(customer_id=customer.id, total=5))
        savepoint = session.begin_nested()
        customer.name = "Discarded"
        session.flush()
        savepoint.rollback()
        customer.email = "ann@example.com"
        session.commit()

    rows = audit.rows()
    assert [(row.table_name, row.field_name, row.operation) for row in rows] == [
        ("customers", "name", "insert"),
        ("orders", "customer_id", "insert"),
        ("orders", "total", "insert"),
        ("customers", "email", "update"),
    ]
    assert len({row.transaction_id for row in rows}) == 1


# --- get_transaction_changes ---------------------------------------------------------------


def test_get_transaction_changes_returns_every_row_across_models_newest_first(audit):
    """get_transaction_changes gives every change of one transaction, over two models and three flushes, newest first, and nothing of other transactions."""
    Customer, Order = declare_models(audit.base)
    audit.create_tables()
    other = one_transaction(audit, Customer, "Other")

    with audit.Session() as session:
        with freeze_time(at(0)):
            customer = Customer(name="Ann", email="ann@example.com")
            session.add(customer)
            session.flush()
        with freeze_time(at(5)):
            session.add(Order(customer_id=customer.id, total=10))
            session.flush()
        with freeze_time(at(10)):
            customer.name = "Anna"
            session.commit()
        customer_id = customer.id
    transaction_id = audit.rows()[-1].transaction_id

    with audit.Session() as session:
        changes = get_transaction_changes(transaction_id, session=session)

    assert summary(changes) == [
        ("customers", "update", "name", "Anna"),
        ("orders", "insert", "total", 10),
        ("orders", "insert", "customer_id", customer_id),
        ("customers", "insert", "email", "ann@example.com"),
        ("customers", "insert", "name", "Ann"),
    ]
    assert [c.timestamp for c in changes] == [at(10), at(5), at(5), at(0), at(0)]
    assert {c.transaction_id for c in changes} == {transaction_id}
    assert other != transaction_id
    assert summary(get_transaction_changes(other)) == [("customers", "insert", "name", "Other")]


def test_get_transaction_changes_of_an_unknown_id_is_empty(audit):
    """An id that no transaction has gives an empty list."""
    Customer, _ = declare_models(audit.base)
    audit.create_tables()
    one_transaction(audit, Customer, "Ann")

    with audit.Session() as session:
        assert get_transaction_changes(str(uuid4()), session=session) == []


def test_get_transaction_changes_without_session_uses_the_session_factory(audit):
    """With session=None, get_transaction_changes reads through the configured session factory."""
    Customer, _ = declare_models(audit.base)
    audit.create_tables()
    transaction_id = one_transaction(audit, Customer, "Ann")

    changes = get_transaction_changes(transaction_id)

    assert summary(changes) == [("customers", "insert", "name", "Ann")]


def test_get_transaction_changes_accepts_a_uuid(audit):
    """A transaction id given as a UUID finds the same rows as its text."""
    Customer, _ = declare_models(audit.base)
    audit.create_tables()
    transaction_id = one_transaction(audit, Customer, "Ann")

    assert summary(get_transaction_changes(UUID(transaction_id))) == [
        ("customers", "insert", "name", "Ann")
    ]


@pytest.mark.parametrize("value", [123, None, b"abc"], ids=["int", "none", "bytes"])
def test_get_transaction_changes_rejects_an_id_that_is_not_str_or_uuid(audit, value):
    """A transaction id that is not a str or UUID raises FilterTypeError."""
    with pytest.raises(FilterTypeError, match="transaction ids"):
        get_transaction_changes(value)


# --- filter_transaction_ids ----------------------------------------------------------------


def test_filter_transaction_ids_takes_one_id_or_a_list(audit):
    """get_resource_changes(filter_transaction_ids=...) keeps only the rows of the given transaction, or transactions, of that model."""
    Customer, Order = declare_models(audit.base)
    audit.create_tables()
    ann = one_transaction(audit, Customer, "Ann")
    bob = one_transaction(audit, Customer, "Bob")
    with audit.Session() as session:
        customer = Customer(name="Carol")
        session.add(customer)
        session.flush()
        session.add(Order(customer_id=customer.id, total=3))
        session.commit()
    carol = audit.rows()[-1].transaction_id

    def names(**filters: Any) -> list[Any]:
        return [c.new_value for c in get_resource_changes(Customer, **filters)]

    assert names(filter_transaction_ids=bob) == ["Bob"]
    assert names(filter_transaction_ids=UUID(ann)) == ["Ann"]
    assert names(filter_transaction_ids=[ann, carol]) == ["Carol", "Ann"]
    assert names(filter_transaction_ids=[]) == []
    assert [c.field_name for c in get_resource_changes(Order, filter_transaction_ids=carol)] == [
        "total",
        "customer_id",
    ]


def test_filter_transaction_ids_rejects_an_id_of_another_type(audit):
    """A transaction id in the filter that is not a str or UUID raises FilterTypeError."""
    Customer, _ = declare_models(audit.base)
    audit.create_tables()

    with pytest.raises(FilterTypeError, match="transaction ids"):
        get_resource_changes(Customer, filter_transaction_ids=[str(uuid4()), 5])
