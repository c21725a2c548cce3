"""erase: a person's values or authorship replaced by a marker, logged, in the caller's transaction."""

from __future__ import annotations

import pytest
from ops_support import declare_customer
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select

from sqlaudit import OperationError, erase, get_resource_changes
from sqlaudit.ops import ERASED
from sqlaudit.ops._common import build_operations_table


def _log(audit) -> list:
    table = build_operations_table(audit.config.table)
    if not sa_inspect(audit.engine).has_table(table.name):
        return []  # created in the erasure's transaction, and rolled back with it
    with audit.engine.connect() as connection:
        return list(connection.execute(table.select().order_by(table.c.id)))


@pytest.fixture
def customers(audit):
    """Two customers with a history each: Jane (1) by user 5, John (2) by user 6."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    audit.user = 5
    with audit.Session() as session:
        session.add(customer(id=1, name="Jane", email="jane@example.com"))
        session.commit()
        session.get(customer, 1).email = None
        session.commit()
    audit.user = 6
    with audit.Session() as session:
        session.add(customer(id=2, name="John", email="john@example.com"))
        session.commit()
    return customer


def test_erase_by_resource_replaces_its_values_and_keeps_the_rows(audit, customers):
    """Every value of the resource reads back as the marker; no value stays none; rows stay."""
    audit.user = 99
    with audit.Session() as session:
        report = erase(session, model=customers, resource_ids=1, reason="request 118")
        session.commit()
    assert report.rows_erased == 3
    changes = get_resource_changes(customers, filter_resource_ids=1)
    assert [(c.field_name, c.old_value, c.new_value) for c in changes] == [
        ("email", ERASED, None),
        ("email", None, ERASED),
        ("name", None, ERASED),
    ]
    assert {c.changed_by for c in changes} == {"5"}
    john = get_resource_changes(customers, filter_resource_ids=2)
    assert sorted(c.new_value for c in john) == ["John", "john@example.com"]
    [entry] = _log(audit)
    assert (entry.operation, entry.status, entry.performed_by, entry.rows_affected) == (
        "erase",
        "done",
        "99",
        3,
    )
    assert entry.arguments["resource_ids"] == ["1"]
    assert entry.arguments["reason"] == "request 118"


def test_erase_only_named_fields(audit, customers):
    """``fields`` limits the erasure to those fields."""
    with audit.Session() as session:
        assert erase(session, model=customers, resource_ids=[1], fields="email").rows_erased == 2
        session.commit()
    changes = get_resource_changes(customers, filter_resource_ids=1, filter_fields="name")
    assert [c.new_value for c in changes] == ["Jane"]


def test_erase_by_user_replaces_the_author_and_does_not_log_who(audit, customers):
    """``user_id`` erases authorship on that user's rows; the log keeps no trace of the id."""
    with audit.Session() as session:
        assert erase(session, user_id=6).rows_erased == 2
        session.commit()
    table = audit.config.table
    with audit.engine.connect() as connection:
        authors = connection.execute(select(table.c.changed_by).order_by(table.c.id)).scalars()
        assert list(authors) == ["5", "5", "5", ERASED, ERASED]
    [entry] = _log(audit)
    assert "6" not in str(entry.arguments) and entry.arguments["user"] is True


def test_a_rolled_back_erasure_leaves_history_and_log_unchanged(audit, customers):
    """Erasure is written in the caller's transaction: a rollback undoes it and its log entry."""
    with audit.Session() as session:
        erase(session, model=customers, resource_ids=1)
        session.rollback()
    assert [c.new_value for c in get_resource_changes(customers, filter_resource_ids=1)][-1] == (
        "Jane"
    )
    assert _log(audit) == []


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({}, "nothing to erase"),
        ({"resource_ids": 1}, "needs model="),
        ({"model": int, "resource_ids": 1}, "int is not a tracked model"),
        ({"model": "customers", "resource_ids": 1}, "not a tracked model"),
        ({"user_id": 5, "fields": "email"}, "pass model= and resource_ids="),
    ],
)
def test_erase_refuses_bad_arguments(audit, customers, options, words):
    """Bad arguments raise OperationError saying what to pass."""
    with audit.Session() as session, pytest.raises(OperationError, match=words):
        erase(session, **options)


def test_erase_names_the_model_and_its_fields_for_an_unknown_field(audit, customers):
    """An untracked field is named with the model's tracked fields."""
    with (
        audit.Session() as session,
        pytest.raises(OperationError, match=r"phone is not tracked on Customer; .*name, email"),
    ):
        erase(session, model=customers, resource_ids=1, fields=["phone"])


def test_erase_needs_a_session(audit, customers):
    """A first argument that is not a Session is refused with the reason."""
    with pytest.raises(OperationError, match="takes a Session"):
        erase(audit.engine, model=customers, resource_ids=1)  # type: ignore[arg-type]
