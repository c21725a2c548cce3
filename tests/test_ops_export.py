"""export_changes: JSON lines and CSV, filters, resumable cursor, constant memory."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from datetime import datetime

import pytest
from ops_support import OLD, add_rows, declare_customer

from sqlaudit import OperationError, export_changes
from sqlaudit.ops import EXPORT_FIELDS


class _Sink(io.TextIOBase):
    """A text stream that counts what it is given and keeps nothing."""

    def __init__(self) -> None:
        self.lines = 0

    def write(self, text: str) -> int:
        self.lines += text.count("\n")
        return len(text)


def test_export_writes_every_field_of_each_change_as_json_lines(audit):
    """Each change becomes one JSON object with every stored field, oldest first."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    audit.user = 5
    with audit.Session() as session:
        session.add(customer(id=1, name="Jane", email="j@example.com"))
        session.commit()
        session.get(customer, 1).name = "Jane Smith"
        session.commit()
    out = io.StringIO()
    report = export_changes(out)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["field_name"], r["operation"], r["new_value"]) for r in records] == [
        ("name", "insert", "str:Jane"),
        ("email", "insert", "str:j@example.com"),
        ("name", "update", "str:Jane Smith"),
    ]
    assert set(records[0]) == set(EXPORT_FIELDS)
    assert records[2]["old_value"] == "str:Jane" and records[2]["changed_by"] == "5"
    assert datetime.fromisoformat(records[0]["changed_at"]).tzinfo is not None
    assert report.rows == 3 and report.complete and report.cursor == str(records[-1]["id"])


def test_export_decodes_values_when_asked(audit):
    """``decode_values=True`` writes plain JSON values instead of the typed text."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    with audit.Session() as session:
        session.add(customer(id=1, name="Jane"))
        session.commit()
    out = io.StringIO()
    export_changes(out, decode_values=True)
    assert [json.loads(line)["new_value"] for line in out.getvalue().splitlines()] == ["Jane"]


def test_export_as_csv_has_a_header_and_one_line_per_change(audit):
    """CSV output starts with the field names and has one record per change."""
    add_rows(audit.engine, audit.config, 5)
    out = io.StringIO()
    report = export_changes(out, format="csv")
    lines = list(csv.reader(io.StringIO(out.getvalue())))
    assert lines[0] == list(EXPORT_FIELDS)
    assert [line[EXPORT_FIELDS.index("resource_id")] for line in lines[1:]] == [
        "0",
        "1",
        "2",
        "3",
        "4",
    ]
    assert report.rows == 5


def test_export_resumes_after_the_cursor_without_repeating_or_skipping(audit):
    """An export cut by ``limit`` continues from its cursor: every row exactly once."""
    add_rows(audit.engine, audit.config, 25)
    seen: list[str] = []
    cursor = None
    runs = 0
    while True:
        out = io.StringIO()
        report = export_changes(out, after=cursor, limit=10, batch_size=3)
        seen.extend(json.loads(line)["resource_id"] for line in out.getvalue().splitlines())
        cursor = report.cursor
        runs += 1
        if report.complete:
            break
    assert seen == [str(n) for n in range(25)]
    assert runs == 3
    add_rows(audit.engine, audit.config, 2, start=25)
    out = io.StringIO()
    assert export_changes(out, after=cursor).rows == 2


def test_export_filters_by_table_user_operation_and_time(audit):
    """Tables, users, operations and a time range narrow the export."""
    add_rows(audit.engine, audit.config, 10)
    add_rows(audit.engine, audit.config, 3, table_name="orders", start=100)
    out = io.StringIO()
    assert export_changes(out, models="orders").rows == 3
    assert export_changes(io.StringIO(), user_ids="8").rows == 0
    assert export_changes(io.StringIO(), operations=["insert"]).rows == 13
    since = OLD.replace(second=5)
    until = OLD.replace(second=8)
    assert export_changes(io.StringIO(), models="customers", since=since, until=until).rows == 3


def test_export_works_from_an_engine_and_table_name_without_config(audit):
    """``bind=`` and ``table_name=`` are enough: no config, no models."""
    add_rows(audit.engine, audit.config, 4)
    from sqlaudit import clear_config

    clear_config()
    out = io.StringIO()
    assert export_changes(out, bind=audit.engine, table_name="sqlaudit_changes").rows == 4


def test_export_memory_does_not_grow_with_the_number_of_rows(audit):
    """Peak memory (tracemalloc) exporting 8,000 rows is that of exporting 1,000."""
    add_rows(audit.engine, audit.config, 8000)
    export_changes(_Sink(), limit=500, batch_size=250)  # warm the pool and caches

    def peak(limit: int) -> int:
        tracemalloc.start()
        try:
            sink = _Sink()
            export_changes(sink, limit=limit, batch_size=250)
            assert sink.lines == limit
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small = peak(1000)
    large = peak(8000)
    assert large < small * 1.5, (small, large)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"format": "xml"}, "'jsonl'"),
        ({"after": "abc"}, "not an export cursor"),
        ({"batch_size": 0}, "positive int"),
        ({"since": datetime(2026, 1, 1)}, "aware datetime"),
        ({"models": [int]}, "not a tracked model"),
    ],
)
def test_export_refuses_bad_arguments_saying_what_to_pass(audit, options, words):
    """Each bad argument raises OperationError naming it and the fix."""
    with pytest.raises(OperationError, match=words):
        export_changes(io.StringIO(), **options)


def test_export_needs_a_database(engine):
    """With no config and no bind, the error says to configure or pass bind=."""
    from sqlaudit import NotConfiguredError

    with pytest.raises(NotConfiguredError, match="bind=create_engine"):
        export_changes(io.StringIO())
