"""Restore, revert and baseline on every backend: what they write, what they refuse."""

from __future__ import annotations

from typing import Any

import pytest
from history_support import at, change_row_count, declare_models, write
from sqlalchemy import ForeignKey, String, select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from sqlaudit import (
    FilterError,
    HistoryError,
    Operation,
    RestoreError,
    RevertConflictError,
    UnknownTransactionError,
    disable_auditing,
    get_resource_events,
    get_resource_state,
    record_baseline,
    restore,
    revert_transaction,
    set_session_context,
    track_table,
)


@pytest.fixture
def models(audit: Any) -> tuple[type[Any], type[Any], type[Any]]:
    """Customer, Order and Line, their tables created."""
    declared = declare_models(audit.base)
    audit.create_tables()
    return declared


def table_rows(audit: Any, model: type[Any], *names: str) -> dict[Any, tuple[Any, ...]]:
    """Return ``{id: (values of names)}`` of every row of ``model``, read with a fresh session."""
    with audit.Session() as session:
        return {
            obj.id: tuple(getattr(obj, name) for name in names)
            for obj in session.scalars(select(model))
        }


# --- restore --------------------------------------------------------------------------------


def test_restore_sets_values_back_audited_and_uncommitted(audit, models):
    """Restore writes the old values through the session, with a reason; rollback undoes it."""
    customer = models[0]
    write(audit, at(9), lambda s: s.add(customer(id=1, name="Ann", email="a@x")))
    write(audit, at(10), lambda s: setattr(s.get(customer, 1), "name", "Bob"))
    rows = change_row_count(audit)
    with audit.Session() as session:
        restored = restore(session, customer, 1, at=at(9, 30))
        assert (restored.name, restored.email) == ("Ann", "a@x")
        session.rollback()
    assert table_rows(audit, customer, "name") == {1: ("Bob",)}
    assert change_row_count(audit) == rows
    with audit.Session() as session:
        set_session_context(session, reason="cleanup", ticket="T-1")
        restore(session, customer, 1, at=at(9, 30))
        session.get(customer, 1).email = "after@x"
        session.commit()
    assert table_rows(audit, customer, "name") == {1: ("Ann",)}
    latest = get_resource_events(customer, 1)[0]
    by_field = {change.field_name: change for change in latest.changes}
    assert latest.fields["name"] == ("Bob", "Ann")
    assert by_field["name"].reason == "restore"
    assert by_field["name"].extra["restored"]["model"] == "Customer"
    assert by_field["name"].extra["ticket"] == "T-1"
    # The session's own reason is back once the restore's rows are written.
    assert (by_field["email"].reason, dict(by_field["email"].extra)) == (
        "cleanup",
        {"ticket": "T-1"},
    )


def test_restore_only_chosen_fields(audit, models):
    """``fields=`` restores those fields and leaves the others."""
    customer = models[0]
    write(audit, at(9), lambda s: s.add(customer(id=1, name="Ann", email="a@x")))

    def both(session: Any) -> None:
        session.get(customer, 1).name = "Bob"
        session.get(customer, 1).email = "b@x"

    transaction = write(audit, at(10), both)
    with audit.Session() as session:
        restore(session, customer, 1, at=at(9, 30), fields=["email"])
        session.commit()
    assert table_rows(audit, customer, "name", "email") == {1: ("Bob", "a@x")}
    with audit.Session() as session, pytest.raises(FilterError, match="'phone', which is not"):
        restore(session, customer, 1, at=at(9, 30), fields=["phone"])
    assert get_resource_state(customer, 1, transaction_id=transaction).values["email"] == "b@x"


def test_restore_adds_a_deleted_row_back(audit, models):
    """A deleted resource restored to a moment it was live is inserted again."""
    customer = models[0]
    write(audit, at(9), lambda s: s.add(customer(id=3, name="Cy", email="c@x")))
    write(audit, at(10), lambda s: s.delete(s.get(customer, 3)))
    with audit.Session() as session:
        restore(session, customer, 3, at=at(9, 30))
        session.commit()
    assert table_rows(audit, customer, "name", "email") == {3: ("Cy", "c@x")}
    assert get_resource_events(customer, 3)[0].operation == Operation.INSERT
    assert get_resource_state(customer, 3).status == "live"


def test_restore_refuses_a_required_untracked_column(audit):
    """A row whose required column is not tracked cannot be added back; the error names it."""

    @track_table(tracked_fields=["name"])
    class Tag(audit.base):
        __tablename__ = "tags"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str] = mapped_column(String(20))
        colour: Mapped[str] = mapped_column(String(20))

    audit.create_tables()
    write(audit, at(9), lambda s: s.add(Tag(id=1, name="red", colour="#f00")))
    write(audit, at(10), lambda s: s.delete(s.get(Tag, 1)))
    rows = change_row_count(audit)
    with audit.Session() as session, pytest.raises(RestoreError, match="colour"):
        restore(session, Tag, 1, at=at(9, 30))
    assert change_row_count(audit) == rows


def test_restore_refuses_without_history_or_before_it(audit, models):
    """No history, or a moment before the first event: a named error, nothing written."""
    customer = models[0]
    write(audit, at(9), lambda s: s.add(customer(id=1, name="Ann")))
    rows = change_row_count(audit)
    with audit.Session() as session:
        with pytest.raises(HistoryError, match="Customer 2 has no recorded history"):
            restore(session, customer, 2, at=at(9))
        with pytest.raises(HistoryError, match="did not exist yet"):
            restore(session, customer, 1, at=at(8))
    assert change_row_count(audit) == rows


def test_restore_refuses_after_an_unaudited_write_unless_overwrite(audit, models):
    """A row changed without a change row conflicts; ``overwrite=True`` restores anyway."""
    customer = models[0]
    write(audit, at(9), lambda s: s.add(customer(id=1, name="Ann")))
    write(audit, at(10), lambda s: setattr(s.get(customer, 1), "name", "Bob"))
    with disable_auditing():
        write(audit, at(11), lambda s: setattr(s.get(customer, 1), "name", "Sneaky"))
    with audit.Session() as session:
        with pytest.raises(RevertConflictError, match="Sneaky") as caught:
            restore(session, customer, 1, at=at(9, 30))
        assert [(c.field, c.expected, c.actual) for c in caught.value.conflicts] == [
            ("name", "Bob", "Sneaky")
        ]
        restore(session, customer, 1, at=at(9, 30), overwrite=True)
        session.commit()
    assert table_rows(audit, customer, "name") == {1: ("Ann",)}


# --- revert ---------------------------------------------------------------------------------


def test_revert_an_update_across_models(audit, models):
    """Every field a transaction changed, in every model, goes back to its value before it."""
    customer, order, _line = models
    write(
        audit,
        at(9),
        lambda s: s.add_all([customer(id=1, name="Ann"), order(id=7, status="new")]),
    )

    def edit(session: Any) -> None:
        session.get(customer, 1).name = "Bob"
        session.get(order, 7).status = "paid"

    transaction = write(audit, at(10), edit)
    with audit.Session() as session:
        undone = revert_transaction(session, transaction)
        session.commit()
    assert sorted(e.table_name for e in undone) == ["customers", "orders"]
    assert table_rows(audit, customer, "name") == {1: ("Ann",)}
    assert table_rows(audit, order, "status") == {7: ("new",)}
    assert get_resource_events(order, 7)[0].extra == {"reverted_transaction": transaction}


def test_revert_inserts_and_deletes_in_dependency_order(audit, models):
    """Reverting an insert deletes lines before their order; reverting a delete adds the order first."""
    _customer, order, line = models

    def create(session: Any) -> None:
        session.add(order(id=7, status="new", lines=[line(id=1, quantity=2)]))

    created = write(audit, at(9), create)
    with audit.Session() as session:
        revert_transaction(session, created)
        session.commit()
    assert table_rows(audit, order, "status") == {}
    assert table_rows(audit, line, "quantity") == {}

    def delete_all(session: Any) -> None:
        session.delete(session.get(line, 1))
        session.flush()
        session.delete(session.get(order, 7))

    write(audit, at(10), create)
    deleted = write(audit, at(11), delete_all)
    with audit.Session() as session:
        revert_transaction(session, deleted)
        session.commit()
    assert table_rows(audit, order, "status") == {7: ("new",)}
    assert table_rows(audit, line, "order_id", "quantity") == {1: (7, 2)}


def test_revert_refuses_later_changes_unless_overwrite(audit, models):
    """A field changed again later is a conflict naming the later transaction."""
    customer = models[0]
    write(audit, at(9), lambda s: s.add(customer(id=1, name="Ann", email="a@x")))
    first = write(audit, at(10), lambda s: setattr(s.get(customer, 1), "name", "Bob"))
    second = write(audit, at(11), lambda s: setattr(s.get(customer, 1), "name", "Cy"))
    rows = change_row_count(audit)
    with audit.Session() as session:
        with pytest.raises(RevertConflictError, match="overwrite=True") as caught:
            revert_transaction(session, first)
        assert [(c.field, c.transaction_id, c.actual) for c in caught.value.conflicts] == [
            ("name", second, "Cy")
        ]
    assert change_row_count(audit) == rows
    with audit.Session() as session:
        revert_transaction(session, first, overwrite=True)
        session.commit()
    assert table_rows(audit, customer, "name") == {1: ("Ann",)}


def test_revert_of_an_unknown_transaction_writes_nothing(audit, models):
    """An unknown transaction id raises and writes nothing."""
    customer = models[0]
    write(audit, at(9), lambda s: s.add(customer(id=1, name="Ann")))
    rows = change_row_count(audit)
    with audit.Session() as session, pytest.raises(UnknownTransactionError, match="nope"):
        revert_transaction(session, "nope")
    assert change_row_count(audit) == rows


# --- baseline -------------------------------------------------------------------------------


def test_baseline_completes_untracked_rows_once(audit, models):
    """Rows written before tracking get one baseline each; a second run records nothing."""
    customer = models[0]
    with disable_auditing():
        write(
            audit,
            at(8),
            lambda s: s.add_all([customer(id=n, name=f"c{n}", email=None) for n in range(1, 6)]),
        )
    write(audit, at(9), lambda s: setattr(s.get(customer, 2), "email", "two@x"))
    assert get_resource_state(customer, 1).status == "absent"
    partial = get_resource_state(customer, 2)
    assert (partial.status, partial.complete, dict(partial.values)) == (
        "live",
        False,
        {"email": "two@x"},
    )
    seen: list[tuple[int, int]] = []
    with audit.Session() as session:
        recorded = record_baseline(
            session,
            customer,
            where=customer.id < 5,
            batch_size=2,
            progress=lambda *a: seen.append(a),
        )
        session.commit()
    assert recorded == 4
    assert seen == [(2, 2), (4, 4)]
    state = get_resource_state(customer, 2)
    assert (state.complete, dict(state.values)) == (True, {"name": "c2", "email": "two@x"})
    assert get_resource_events(customer, 1)[0].operation == Operation.BASELINE
    with audit.Session() as session:
        assert record_baseline(session, customer) == 1  # only customer 5 is left
        assert record_baseline(session, customer) == 0
        session.commit()
    with audit.Session() as session, pytest.raises(FilterError, match="batch_size"):
        record_baseline(session, customer, batch_size=0)


def test_baseline_after_a_reinsert_without_history_starts_a_new_life(audit):
    """A row whose last recorded event is a delete, yet is there, gets a baseline."""

    @track_table(tracked_fields=["name"])
    class Pet(audit.base):
        __tablename__ = "pets"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str] = mapped_column(String(20))
        owner_id: Mapped[int | None] = mapped_column(ForeignKey("pets.id"))
        children: Mapped[list[Pet]] = relationship()

    audit.create_tables()
    write(audit, at(9), lambda s: s.add(Pet(id=1, name="Rex")))
    write(audit, at(10), lambda s: s.delete(s.get(Pet, 1)))
    with disable_auditing():
        write(audit, at(11), lambda s: s.add(Pet(id=1, name="Max")))
    with audit.Session() as session:
        assert record_baseline(session, Pet) == 1
        session.commit()
    state = get_resource_state(Pet, 1)
    assert (state.status, dict(state.values)) == ("live", {"name": "Max"})
    assert get_resource_state(Pet, 1, at=at(10, 30)).status == "deleted"
