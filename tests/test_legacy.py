"""History kept by sqlaudit 0.7 is copied into the change table: typed, idempotent, batched, resumable."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    TIMESTAMP,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
    delete,
    insert,
)
from sqlalchemy.orm import Mapped, mapped_column

from sqlaudit import Operation, get_resource_changes, track_table
from sqlaudit.exceptions import ConfigurationError, ConfigurationTypeError
from sqlaudit.legacy import import_legacy_history


def legacy_tables(metadata: MetaData) -> dict[str, Table]:
    """sqlaudit 0.7's four tables, with the column types its models declare.

    0.7 declares its text columns without a length, which MySQL/MariaDB refuse, so
    there they get one here, as a 0.7 user's own migration would have given them.
    """
    return {
        "tables": Table(
            "SQLAuditTables",
            metadata,
            Column("table_id", Integer, primary_key=True, autoincrement=True),
            Column("table_name", String(255), nullable=False),
            Column("resource_id_field", String(255), nullable=False),
            Column("label", String(255), nullable=True),
        ),
        "fields": Table(
            "SQLAuditFields",
            metadata,
            Column("field_id", Integer, primary_key=True, autoincrement=True),
            Column("table_id", ForeignKey("SQLAuditTables.table_id"), nullable=False),
            Column("field_name", String(255), nullable=False),
        ),
        "logs": Table(
            "SQLAuditLogs",
            metadata,
            Column("record_id", Uuid, primary_key=True),
            Column("table_id", ForeignKey("SQLAuditTables.table_id"), nullable=False),
            Column("resource_id", String(255), nullable=False),
            Column("timestamp", TIMESTAMP, nullable=False),
            Column("changed_by", String(256)),
            Column("impersonated_by", String(256)),
            Column("reason", String(512)),
        ),
        "changes": Table(
            "SQLAuditFieldChanges",
            metadata,
            Column("change_id", Integer, primary_key=True, autoincrement=True),
            Column("record_id", ForeignKey("SQLAuditLogs.record_id"), nullable=False),
            Column("field_id", ForeignKey("SQLAuditFields.field_id"), nullable=False),
            Column("old_value", String(255)),
            Column("new_value", String(255)),
        ),
    }


FIELDS = ["name", "active", "born", "score", "meta", "ref"]


def record_id(n: int) -> uuid.UUID:
    """A time-ordered record id, as 0.7's uuid7 ids are."""
    return uuid.UUID(f"01a220be-0000-7000-8000-{n:012d}")


def fill_legacy(engine: Any, records: list[tuple[int, str, str | None, dict[str, Any]]]) -> None:
    """Create 0.7's tables and write ``records``: (n, resource id, changed_by, {field: (old, new)})."""
    metadata = MetaData()
    tables = legacy_tables(metadata)
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            insert(tables["tables"]),
            [{"table_id": 1, "table_name": "customers", "resource_id_field": "id", "label": None}],
        )
        connection.execute(
            insert(tables["fields"]),
            [{"field_id": i + 1, "table_id": 1, "field_name": f} for i, f in enumerate(FIELDS)],
        )
        for n, resource, changed_by, changes in records:
            connection.execute(
                insert(tables["logs"]),
                {
                    "record_id": record_id(n),
                    "table_id": 1,
                    "resource_id": resource,
                    "timestamp": datetime(2025, 5, 1, 12, 0, n),
                    "changed_by": changed_by,
                    "impersonated_by": "2" if n == 3 else "None",
                    "reason": "fix typo" if n == 3 else None,
                },
            )
            connection.execute(
                insert(tables["changes"]),
                [
                    {
                        "record_id": record_id(n),
                        "field_id": FIELDS.index(name) + 1,
                        "old_value": old,
                        "new_value": new,
                    }
                    for name, (old, new) in changes.items()
                ],
            )


def declare_customer(base: Any) -> type[Any]:
    """Today's model of the table 0.7 tracked, with every field 0.7 recorded."""

    @track_table(tracked_fields=FIELDS)
    class Customer(base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(100))
        active: Mapped[bool] = mapped_column(Boolean)
        born: Mapped[datetime | None] = mapped_column(DateTime)
        score: Mapped[float | None] = mapped_column(Float)
        meta: Mapped[dict[str, Any] | None] = mapped_column(JSON)
        ref: Mapped[uuid.UUID | None] = mapped_column(Uuid)

    return Customer


REF = "00000000-0000-0000-0000-000000000005"
RECORDS: list[tuple[int, str, str | None, dict[str, Any]]] = [
    (
        1,
        "1",
        "1",
        {
            "name": (None, "Ann"),
            "active": (None, "1"),
            "born": (None, "2020-01-02T03:04:05"),
            "score": (None, "1.5"),
            "meta": (None, '{"k": [1]}'),
            "ref": (None, REF),
        },
    ),
    (2, "1", "None", {"name": ("Ann", "Anne"), "active": ("1", "0")}),
    (3, "1", "7", {"score": ("1.5", "2.25")}),
    (4, "2", "1", {"name": ("", "Bob")}),
    (5, "2", "1", {"name": ("Bob", "Bobby")}),
]


def test_history_reads_back_typed_with_who_when_and_why(audit):
    """Imported rows read back with the column types, 0.7's user, reason and impersonator, and aware timestamps."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    fill_legacy(audit.engine, RECORDS)
    report = import_legacy_history(audit.engine)
    assert (report.records_seen, report.records_imported, report.rows_written) == (5, 5, 11)
    changes = get_resource_changes(Customer, filter_resource_ids=1, sort_direction="asc")
    values = [(c.field_name, c.operation, c.old_value, c.new_value) for c in changes]
    assert values == [
        ("name", Operation.INSERT, None, "Ann"),
        ("active", Operation.INSERT, None, True),
        ("born", Operation.INSERT, None, datetime(2020, 1, 2, 3, 4, 5)),
        ("score", Operation.INSERT, None, 1.5),
        ("meta", Operation.INSERT, None, {"k": [1]}),
        ("ref", Operation.INSERT, None, uuid.UUID(REF)),
        ("name", Operation.UPDATE, "Ann", "Anne"),
        ("active", Operation.UPDATE, True, False),
        ("score", Operation.UPDATE, 1.5, 2.25),
    ]
    assert [c.changed_by for c in changes] == ["1"] * 6 + [None, None, "7"]
    assert changes[-1].reason == "fix typo"
    assert dict(changes[-1].extra) == {"impersonated_by": "2"}
    assert changes[6].extra == {}
    assert changes[0].timestamp == datetime(2025, 5, 1, 12, 0, 1, tzinfo=UTC)
    assert changes[0].transaction_id == str(record_id(1))
    assert {c.transaction_id for c in changes[:6]} == {str(record_id(1))}
    assert changes[0].table_label == "Customer"
    bob = get_resource_changes(Customer, filter_resource_ids=2, sort_direction="asc")
    assert [(c.operation, c.old_value, c.new_value) for c in bob] == [
        (Operation.INSERT, None, "Bob"),
        (Operation.UPDATE, "Bob", "Bobby"),
    ]


def test_a_second_run_copies_nothing_again(audit):
    """The import is idempotent: run again, every record is skipped and no row is added."""
    declare_customer(audit.base)
    audit.create_tables()
    fill_legacy(audit.engine, RECORDS)
    import_legacy_history(audit.engine)
    before = [tuple(row) for row in audit.rows()]
    again = import_legacy_history(audit.engine)
    assert (again.records_imported, again.records_skipped, again.rows_written) == (0, 5, 0)
    assert [tuple(row) for row in audit.rows()] == before


def test_batches_commit_on_their_own_and_an_interrupted_run_is_finished_by_the_next(audit):
    """With ``batch_size=2`` five records make three batches; records whose batch never committed are copied by the next run."""
    declare_customer(audit.base)
    audit.create_tables()
    fill_legacy(audit.engine, RECORDS)
    report = import_legacy_history(audit.engine, batch_size=2)
    assert report.batches == 3
    table = audit.config.table
    lost = {str(record_id(4)), str(record_id(5))}
    with audit.engine.begin() as connection:  # as if the last batches had not committed
        connection.execute(delete(table).where(table.c.transaction_id.in_(lost)))
    resumed = import_legacy_history(audit.engine, batch_size=2)
    assert (resumed.records_imported, resumed.records_skipped) == (2, 3)
    rows = audit.rows()
    assert len(rows) == 11
    assert [row.transaction_id for row in rows[-2:]] == sorted(lost)


def test_an_untracked_table_keeps_the_text(audit):
    """Without a tracked model for the table, values are kept as 0.7's text."""
    audit.create_tables()
    fill_legacy(audit.engine, RECORDS[:2])
    import_legacy_history(audit.engine)
    by_field = {(row.field_name, row.operation): row.new_value for row in audit.rows()}
    assert by_field[("active", "insert")] == "str:1"
    assert by_field[("active", "update")] == "str:0"
    assert {row.table_label for row in audit.rows()} == {"customers"}


def test_timestamps_are_read_in_the_given_zone(audit):
    """``source_time_zone`` says the zone of 0.7's naive timestamps."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    fill_legacy(audit.engine, RECORDS[:1])
    import_legacy_history(audit.engine, source_time_zone="Europe/Kyiv")
    change = get_resource_changes(Customer)[0]
    assert change.timestamp == datetime(2025, 5, 1, 9, 0, 1, tzinfo=UTC)


def test_missing_legacy_tables_are_named(audit):
    """With no 0.7 tables the import raises, naming the missing tables and the fix."""
    with pytest.raises(ConfigurationError, match=r"SQLAuditTables, .*SQLAuditLogs.*legacy_schema"):
        import_legacy_history(audit.engine)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"batch_size": 0}, ConfigurationTypeError, "batch_size=0.*positive int"),
        ({"batch_size": True}, ConfigurationTypeError, "batch_size=True"),
        ({"source_time_zone": "Mars/Base"}, ConfigurationError, r"'Mars/Base'\) is not a known"),
    ],
)
def test_bad_options_are_refused(audit, kwargs, error, message):
    """A bad batch size or time zone raises, naming the option and the fix."""
    with pytest.raises(error, match=message):
        import_legacy_history(audit.engine, **kwargs)


def test_a_connection_is_refused(audit):
    """The import takes an Engine, so that each batch commits on its own."""
    with (
        audit.engine.connect() as connection,
        pytest.raises(ConfigurationTypeError, match="Engine"),
    ):
        import_legacy_history(connection)  # type: ignore[arg-type]
