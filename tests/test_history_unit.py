"""The pure folds behind events and states: grouping rows, lives, and states, with no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlaudit import Operation, ResourceChange
from sqlaudit._events import fold_state, group_events, lives

START = datetime(2026, 1, 1, tzinfo=UTC)
FIELDS = ("name", "qty")


class Rows:
    """Builds change rows of resource 1 of ``items``, ids and times increasing."""

    def __init__(self) -> None:
        self.rows: list[ResourceChange] = []

    def add(self, transaction: str, operation: str, field: str, old: Any, new: Any) -> Rows:
        number = len(self.rows) + 1
        self.rows.append(
            ResourceChange(
                change_id=number,
                table_name="items",
                table_label="Item",
                resource_id="1",
                field_name=field,
                operation=Operation(operation),
                old_value=old,
                new_value=new,
                changed_by=None,
                timestamp=START + timedelta(minutes=number),
                transaction_id=transaction,
            )
        )
        return self


def test_rows_of_one_transaction_are_one_event_with_old_before_and_new_after():
    """Two updates of a field in one transaction: one event, (first old, last new)."""
    rows = Rows().add("t1", "insert", "name", None, "a").add("t2", "update", "name", "a", "b")
    rows.add("t2", "update", "name", "b", "c").add("t2", "update", "qty", None, 3)
    events = group_events(reversed(rows.rows))
    assert [(e.transaction_id, e.operation) for e in events] == [("t1", "insert"), ("t2", "update")]
    assert dict(events[1].fields) == {"name": ("a", "c"), "qty": (None, 3)}
    assert [c.change_id for c in events[1].changes] == [2, 3, 4]


def test_a_delete_then_insert_in_one_transaction_is_two_events_and_two_lives():
    """A key reused inside one transaction splits the event, and starts a new life."""
    rows = Rows().add("t1", "insert", "name", None, "a")
    rows.add("t2", "delete", "name", "a", None).add("t2", "delete", "qty", None, None)
    rows.add("t2", "insert", "name", None, "z")
    events = group_events(rows.rows)
    assert [e.operation for e in events] == ["insert", "delete", "insert"]
    assert [len(life) for life in lives(events)] == [2, 1]
    state = fold_state("items", "1", FIELDS, events, 3)
    assert (state.status, dict(state.values)) == ("live", {"name": "z", "qty": None})
    deleted = fold_state("items", "1", FIELDS, events, 2)
    assert (deleted.status, dict(deleted.values)) == ("deleted", {"name": "a", "qty": None})


def test_a_delete_after_updates_in_the_same_transaction_keeps_the_last_values():
    """The deleted state holds the values the delete rows recorded, not those before the transaction."""
    rows = Rows().add("t1", "insert", "name", None, "a")
    rows.add("t2", "update", "name", "a", "b").add("t2", "delete", "name", "b", None)
    rows.add("t2", "delete", "qty", None, None)
    events = group_events(rows.rows)
    assert events[-1].operation == "delete"
    assert fold_state("items", "1", FIELDS, events, 2).values["name"] == "b"


def test_a_row_from_before_tracking_is_incomplete_until_its_fields_show():
    """Without an insert, a state knows only the fields seen, earlier values from later old ones."""
    rows = Rows().add("t1", "update", "name", "x", "y").add("t2", "update", "qty", 5, 6)
    events = group_events(rows.rows)
    first = fold_state("items", "1", FIELDS, events, 1)
    assert (first.status, first.complete, dict(first.values)) == (
        "live",
        True,
        {"name": "y", "qty": 5},
    )
    only_name = fold_state("items", "1", FIELDS, events[:1], 1)
    assert (only_name.complete, dict(only_name.values)) == (False, {"name": "y"})


def test_no_event_yet_is_absent():
    """Before the first event there is no state."""
    events = group_events(Rows().add("t1", "insert", "name", None, "a").rows)
    state = fold_state("items", "1", FIELDS, events, 0)
    assert (state.status, dict(state.values), state.complete) == ("absent", {}, False)


def test_baseline_completes_a_live_state_without_starting_a_new_life():
    """A baseline over a partial history completes it; a later update stays in the same life."""
    rows = Rows().add("t1", "update", "name", "x", "y")
    rows.add("t2", "baseline", "name", None, "y").add("t2", "baseline", "qty", None, 4)
    rows.add("t3", "update", "qty", 4, 5)
    events = group_events(rows.rows)
    assert [e.operation for e in events] == ["update", "baseline", "update"]
    assert len(lives(events)) == 1
    assert dict(fold_state("items", "1", FIELDS, events, 3).values) == {"name": "y", "qty": 5}
