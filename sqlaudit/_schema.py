"""The change table: one row per changed field.

Columns, in order: ``id`` (autoincrement), ``transaction_id``, ``table_name``,
``table_label``, ``resource_id``, ``field_name``, ``operation``, ``old_value``,
``new_value`` (both in the typed text encoding of :mod:`sqlaudit._codec`),
``changed_by``, ``changed_at`` (aware UTC) and ``extra`` (JSON, optional context).

Three indexes serve the retrieval filters: (table, resource id, time) for one
resource's history, (changed by, time) for one user's activity and
(transaction) for one database transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine

__all__ = [
    "CHANGE_COLUMNS",
    "UTCDateTime",
    "build_change_table",
    "create_change_table",
    "write_changes",
]


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back aware, in UTC.

    PostgreSQL keeps the zone (``timestamptz``); SQLite and MySQL/MariaDB store a
    naive UTC value (with microseconds), to which UTC is re-attached on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UTCDateTime only stores aware datetimes")
        value = value.astimezone(UTC)
        if dialect.name == "postgresql":
            return value
        return value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


_Id = BigInteger().with_variant(Integer(), "sqlite")
# MySQL's TEXT holds 64 KB; a tracked MEDIUMTEXT or JSON value may be larger.
_Value = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def build_change_table(name: str, schema: str | None) -> Table:
    """Return the change table's definition on a MetaData of its own."""
    metadata = MetaData(schema=schema)
    return Table(
        name,
        metadata,
        Column("id", _Id, primary_key=True, autoincrement=True),
        Column("transaction_id", String(36), nullable=False),
        Column("table_name", String(128), nullable=False),
        Column("table_label", String(128), nullable=True),
        Column("resource_id", String(255), nullable=False),
        Column("field_name", String(128), nullable=False),
        Column("operation", String(8), nullable=False),
        Column("old_value", _Value, nullable=True),
        Column("new_value", _Value, nullable=True),
        Column("changed_by", String(255), nullable=True),
        Column("changed_at", UTCDateTime(), nullable=False),
        Column("extra", JSON(none_as_null=True), nullable=True),
        Index(f"ix_{name}_resource", "table_name", "resource_id", "changed_at"),
        Index(f"ix_{name}_changed_by", "changed_by", "changed_at"),
        Index(f"ix_{name}_transaction", "transaction_id"),
    )


def create_change_table(table: Table, bind: Engine | Connection) -> None:
    """Create ``table`` and its indexes on ``bind`` unless the table already exists."""
    if isinstance(bind, Engine):
        with bind.begin() as connection:
            table.create(connection, checkfirst=True)
    else:
        table.create(bind, checkfirst=True)


# The columns every change row fills, in the order of the prepared INSERT.
CHANGE_COLUMNS = (
    "transaction_id",
    "table_name",
    "table_label",
    "resource_id",
    "field_name",
    "operation",
    "old_value",
    "new_value",
    "changed_by",
    "changed_at",
    "extra",
)


# The write path lives in sqlaudit._insert, which reads CHANGE_COLUMNS from here;
# imported last, once everything it needs is defined.
from sqlaudit._insert import write_changes as write_changes  # noqa: E402
