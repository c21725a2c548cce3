"""The pure capture functions, without a database: attribute history to change rows."""

from __future__ import annotations

import json
from collections import namedtuple
from datetime import UTC, datetime
from uuid import UUID

import pytest
from sqlalchemy import Integer
from sqlalchemy.orm.base import NO_VALUE

from sqlaudit import FallbackEncodingWarning, _capture, _codec
from sqlaudit._capture import FlushStamp, Operation, changed_fields
from sqlaudit._registry import TrackedModel, encode_resource_id
from sqlaudit._schema import CHANGE_COLUMNS

STAMP = FlushStamp(
    transaction_id="tx-1",
    changed_by="7",
    changed_at=datetime(2026, 1, 15, 10, 0, tzinfo=UTC),
)


class Customer:
    """Stands in for a mapped class; change_rows never looks at it."""


TRACKED = TrackedModel(
    model=Customer,
    table_name="customers",
    table_label="Customer",
    fields=("name", "email", "age"),
    primary_key=("id",),
    resource_id_field=None,
    enum_hints={},
    primary_key_types=(int,),
)


Row = namedtuple("Row", CHANGE_COLUMNS)


def change_rows(*args):
    """Call the real change_rows; name each row's columns for the assertions."""
    rows = _capture.change_rows(*args)
    assert all(len(row) == len(CHANGE_COLUMNS) for row in rows)
    return [Row(*row) for row in rows]


def decoded(rows):
    """Return ``(field, old, new)`` for each row, with values decoded."""
    return [
        (row.field_name, _codec.decode(row.old_value), _codec.decode(row.new_value)) for row in rows
    ]


def test_changed_fields_returns_the_committed_value_of_each_changed_field():
    """A field assigned a different value yields the value it had when loaded."""
    committed = {"name": "Jane Doe", "age": 30}
    current = {"name": "Jane Smith", "email": "a@example.com", "age": 31}
    assert changed_fields(["name", "email", "age"], committed, current) == {
        "name": "Jane Doe",
        "age": 30,
    }


def test_changed_fields_reports_none_when_the_old_value_was_never_loaded():
    """An attribute assigned while unloaded (NO_VALUE) reports None; the hooks read it from the database."""
    assert changed_fields(["name"], {"name": NO_VALUE}, {"name": "Jane"}) == {"name": None}


def test_changed_fields_counts_an_attribute_the_flush_expired_as_changed():
    """A field missing after the flush (a SQL expression) counts as changed from its committed value."""
    assert changed_fields(["score"], {"score": 5}, {}) == {"score": 5}


def test_changed_fields_ignores_equal_assignments_and_unassigned_fields():
    """An equal assignment (including a None kept None) and an unassigned field yield nothing."""
    committed = {"name": "Jane", "email": None}
    current = {"name": "Jane", "email": None, "age": 31}
    assert changed_fields(["name", "email", "age"], committed, current) == {}


def test_changed_fields_reads_only_the_fields_it_is_given():
    """Only tracked fields count, whatever else was assigned."""
    committed = {"name": "a", "secret": "x"}
    assert changed_fields(["name"], committed, {"name": "b", "secret": "y"}) == {"name": "a"}


def test_changed_fields_uses_the_column_types_comparator():
    """True assigned to an Integer holding 1 is no change: the flush sends no UPDATE for it."""
    equals = {"count": Integer().compare_values}
    assert changed_fields(["count"], {"count": 1}, {"count": True}, equals) == {}
    assert changed_fields(["count"], {"count": 1}, {"count": 2}, equals) == {"count": 1}


def test_changed_fields_treats_a_failing_comparator_as_a_change():
    """A comparator that raises (an array's ambiguous truth, say) counts as changed, never lost."""

    def broken(a, b):
        raise ValueError("ambiguous")

    assert changed_fields(["v"], {"v": 1}, {"v": 1.5}, {"v": broken}) == {"v": 1}


def test_change_rows_update_compares_stored_encodings():
    """{"k": 1} -> {"k": True} is recorded: Python's == says equal, the stored JSON differs."""
    rows = change_rows(
        TRACKED, Operation.UPDATE, "5", {"name": {"k": 1}}, {"name": {"k": True}}, STAMP
    )
    assert decoded(rows) == [("name", {"k": 1}, {"k": True})]
    assert (
        change_rows(TRACKED, Operation.UPDATE, "5", {"name": {"k": 1}}, {"name": {"k": 1}}, STAMP)
        == []
    )


def test_change_rows_insert_records_every_tracked_field_with_a_value():
    """An insert gives one row per tracked field that has a value, old value NULL."""
    rows = change_rows(
        TRACKED,
        Operation.INSERT,
        "5",
        {},
        {"name": "Jane", "email": "jane@example.com", "age": 30},
        STAMP,
    )
    assert decoded(rows) == [
        ("name", None, "Jane"),
        ("email", None, "jane@example.com"),
        ("age", None, 30),
    ]
    assert [row.old_value for row in rows] == [None, None, None]


def test_change_rows_insert_skips_null_values():
    """An insert leaves out tracked fields whose value is NULL (but keeps falsy values)."""
    rows = change_rows(
        TRACKED, Operation.INSERT, "5", {}, {"name": "", "email": None, "age": 0}, STAMP
    )
    assert decoded(rows) == [("name", None, ""), ("age", None, 0)]


def test_change_rows_insert_rows_carry_the_stamp_and_resource():
    """Every row of an insert carries the flush stamp, table, label, resource id and operation."""
    rows = change_rows(TRACKED, Operation.INSERT, "5", {}, {"name": "Jane"}, STAMP)
    assert len(rows) == 1
    row = rows[0]
    assert row.transaction_id == "tx-1"
    assert row.table_name == "customers"
    assert row.table_label == "Customer"
    assert row.resource_id == "5"
    assert row.operation == "insert"
    assert row.changed_by == "7"
    assert row.changed_at == datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
    assert row.extra is None


def test_change_rows_update_records_only_really_changed_fields():
    """An update gives a row per field whose new value differs from the old one."""
    rows = change_rows(
        TRACKED,
        Operation.UPDATE,
        "5",
        {"name": "Jane Doe", "age": 30, "email": None},
        {"name": "Jane Smith", "age": 30, "email": "jane@example.com"},
        STAMP,
    )
    assert decoded(rows) == [
        ("name", "Jane Doe", "Jane Smith"),
        ("email", None, "jane@example.com"),
    ]
    assert {row.operation for row in rows} == {"update"}


def test_change_rows_update_records_a_change_to_null():
    """An update of a value to NULL is a change, recorded with a NULL new value."""
    rows = change_rows(TRACKED, Operation.UPDATE, "5", {"email": "a@b.c"}, {"email": None}, STAMP)
    assert decoded(rows) == [("email", "a@b.c", None)]
    assert rows[0].new_value is None


def test_change_rows_update_treats_a_raising_eq_as_changed():
    """Values whose ``__eq__`` raises are treated as changed, not as an error."""

    class Prickly:
        def __eq__(self, other):
            raise ValueError("ambiguous comparison")

        __hash__ = object.__hash__

    with pytest.warns(FallbackEncodingWarning):
        rows = change_rows(
            TRACKED, Operation.UPDATE, "5", {"name": Prickly()}, {"name": Prickly()}, STAMP
        )
    assert [row.field_name for row in rows] == ["name"]


def test_change_rows_update_treats_bool_and_int_as_different():
    """``1`` replaced by ``True`` (and ``False`` by ``0``) is recorded, though they compare equal."""
    rows = change_rows(
        TRACKED,
        Operation.UPDATE,
        "5",
        {"age": 1, "name": False},
        {"age": True, "name": 0},
        STAMP,
    )
    assert decoded(rows) == [("age", 1, True), ("name", False, 0)]
    assert [type(new) for _, _, new in decoded(rows)] == [bool, int]


def test_change_rows_delete_records_the_last_value_of_every_tracked_field():
    """A delete gives one row per tracked field with its last value and a NULL new value."""
    rows = change_rows(
        TRACKED,
        Operation.DELETE,
        "5",
        {"name": "Jane", "email": "jane@example.com", "age": 30},
        {},
        STAMP,
    )
    assert decoded(rows) == [
        ("name", "Jane", None),
        ("email", "jane@example.com", None),
        ("age", 30, None),
    ]
    assert {row.operation for row in rows} == {"delete"}


def test_encode_resource_id_of_a_single_key_is_its_text():
    """A single-column key is stored as the plain text of its value."""
    assert encode_resource_id((7,)) == "7"
    assert encode_resource_id(("abc",)) == "abc"


def test_encode_resource_id_of_a_composite_key_is_a_json_list_of_texts():
    """A composite key is stored as a compact JSON list of the parts' texts, in key order."""
    encoded = encode_resource_id((1, "a"))
    assert encoded == '["1","a"]'
    assert json.loads(encoded) == ["1", "a"]
    assert encode_resource_id(("a", 1)) != encoded


def test_encode_resource_id_is_the_same_for_equal_values_of_different_types():
    """An int and its str, a UUID and its str, give the same stored text."""
    uid = UUID("12345678-1234-5678-1234-567812345678")
    assert encode_resource_id((2,)) == encode_resource_id(("2",))
    assert encode_resource_id((uid,)) == encode_resource_id((str(uid),))
    assert encode_resource_id((2, uid)) == encode_resource_id(("2", str(uid)))
