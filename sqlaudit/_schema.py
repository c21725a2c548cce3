"""The change table: one row per changed field.

Columns, in order: ``id`` (autoincrement: the order of writing), ``transaction_id``,
``table_name``, ``table_label``, ``resource_id``, ``field_name``, ``operation``,
``old_value``, ``new_value`` (both in the typed text encoding of
:mod:`sqlaudit._codec`), ``changed_by``, ``changed_at`` (aware UTC), ``extra``
(JSON, optional context), then two index keys computed by the database:
``resource_key`` and ``changed_by_key``.

``resource_id`` and ``changed_by`` are unbounded text, so no key or user id is too
long to record. A long text cannot be indexed as such everywhere (MySQL indexes
TEXT only by a prefix, PostgreSQL refuses B-tree entries over about 2.7 kB), so
each has a generated key column, the MD5 of the text in hex (on SQLite, which
indexes text of any length, the text itself). A lookup filters on the key, which
the index serves, and on the full value, which settles it::

    table.c.resource_key == index_key(rid), table.c.resource_id == rid

Three indexes serve the documented reads, each in the order of writing:
(table, resource key, id) for one resource's history, (changed-by key, id) for one
user's activity and (transaction) for one database transaction.

On MySQL/MariaDB every text column is ``utf8mb4`` with the binary collation
``utf8mb4_bin``, whatever the database's default: ids that differ only in case
stay apart, and any character (emoji included) round-trips.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ColumnElement,
    Computed,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    column,
    literal,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

__all__ = [
    "CHANGE_COLUMNS",
    "KEY_COLUMNS",
    "UTCDateTime",
    "build_change_table",
    "create_change_table",
    "index_key",
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

# MySQL/MariaDB: utf8mb4 with a binary collation, named on every text column (and as
# the table's default), so neither the database's default character set nor a
# case-insensitive collation ever applies to a change row.
CHARSET = "utf8mb4"
COLLATION = "utf8mb4_bin"
_MYSQL = ("mysql", "mariadb")


def _text() -> Text:
    # MySQL's TEXT holds 64 KB; a tracked MEDIUMTEXT or JSON value may be larger.
    return Text().with_variant(mysql.LONGTEXT(charset=CHARSET, collation=COLLATION), *_MYSQL)


def _name(length: int) -> String:
    return String(length).with_variant(
        mysql.VARCHAR(length, charset=CHARSET, collation=COLLATION), *_MYSQL
    )


# A hex MD5: 32 ASCII characters (32 bytes in a MySQL index, not 128).
_Key = String(32).with_variant(mysql.CHAR(32, charset="ascii", collation="ascii_bin"), *_MYSQL)


class _IndexKey(FunctionElement[str]):
    """The index key of an unbounded text: MD5 in hex; on SQLite the text itself."""

    type = String(32)
    inherit_cache = True
    name = "sqlaudit_index_key"


@compiles(_IndexKey)
def _index_key(element: _IndexKey, compiler: SQLCompiler, **kw: Any) -> str:
    return f"md5({compiler.process(element.clauses, **kw)})"


@compiles(_IndexKey, "postgresql")
def _index_key_postgresql(element: _IndexKey, compiler: SQLCompiler, **kw: Any) -> str:
    # The cast settles md5(text) against md5(bytea) for a bound parameter.
    return f"md5(CAST({compiler.process(element.clauses, **kw)} AS TEXT))"


@compiles(_IndexKey, "mysql")
@compiles(_IndexKey, "mariadb")
def _index_key_mysql(element: _IndexKey, compiler: SQLCompiler, **kw: Any) -> str:
    # MD5 hashes bytes: a parameter sent in another connection character set must be
    # hashed as the utf8mb4 bytes the column holds.
    return f"md5(CONVERT({compiler.process(element.clauses, **kw)} USING {CHARSET}))"


@compiles(_IndexKey, "sqlite")
def _index_key_sqlite(element: _IndexKey, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


def index_key(value: str) -> ColumnElement[str]:
    """Return the SQL that computes the index key of ``value``, as the key columns hold it.

    Example:
        >>> table = build_change_table("sqlaudit_changes", None)
        >>> condition = (table.c.resource_key == index_key("42")) & (table.c.resource_id == "42")
    """
    return _IndexKey(literal(value, Text()))


# (key column, the text column it is computed from)
KEY_COLUMNS = (("resource_key", "resource_id"), ("changed_by_key", "changed_by"))


def build_change_table(name: str, schema: str | None, *, partitioned: bool = False) -> Table:
    """Return the change table's definition on a MetaData of its own.

    With ``partitioned=True`` (PostgreSQL only; see
    :func:`sqlaudit.ops.create_partitioned_change_table`) the table is partitioned by
    range of ``changed_at``, and its primary key is ``(id, changed_at)``: PostgreSQL
    requires the partition key in every unique constraint. Ids still come from the
    one sequence of ``id``, so they stay unique; every read works on either table.

    Example:
        >>> build_change_table("sqlaudit_changes", None).c.resource_key.computed is not None
        True
        >>> [c.name for c in build_change_table("t", None, partitioned=True).primary_key]
        ['id', 'changed_at']
    """
    metadata = MetaData(schema=schema)
    options: dict[str, Any] = {}
    if partitioned:
        options["postgresql_partition_by"] = "RANGE (changed_at)"
    return Table(
        name,
        metadata,
        Column("id", _Id, primary_key=True, autoincrement=True),
        Column("transaction_id", _name(36), nullable=False),
        Column("table_name", _name(255), nullable=False),
        Column("table_label", _name(128), nullable=True),
        Column("resource_id", _text(), nullable=False),
        Column("field_name", _name(128), nullable=False),
        Column("operation", _name(8), nullable=False),
        Column("old_value", _text(), nullable=True),
        Column("new_value", _text(), nullable=True),
        Column("changed_by", _text(), nullable=True),
        Column("changed_at", UTCDateTime(), nullable=False, primary_key=partitioned),
        Column("extra", JSON(none_as_null=True), nullable=True),
        # Stored, not virtual: PostgreSQL before 18 has only stored generated columns.
        Column("resource_key", _Key, Computed(_IndexKey(column("resource_id")), persisted=True)),
        Column("changed_by_key", _Key, Computed(_IndexKey(column("changed_by")), persisted=True)),
        Index(f"ix_{name}_resource", "table_name", "resource_key", "id"),
        Index(f"ix_{name}_changed_by", "changed_by_key", "id"),
        Index(f"ix_{name}_transaction", "transaction_id"),
        mysql_charset=CHARSET,
        mysql_collate=COLLATION,
        mariadb_charset=CHARSET,
        mariadb_collate=COLLATION,
        **options,
    )


def create_change_table(table: Table, bind: Engine | Connection) -> None:
    """Create ``table`` and its indexes on ``bind`` unless the table already exists.

    Raises:
        ConfigurationError: the table exists with an older layout; upgrade it with
            :func:`sqlaudit.migration.upgrade_change_table` first.
    """
    if isinstance(bind, Engine):
        with bind.begin() as connection:
            _create(table, connection)
    else:
        _create(table, bind)


def _create(table: Table, connection: Connection) -> None:
    if not sa_inspect(connection).has_table(table.name, schema=table.schema):
        table.create(connection, checkfirst=True)
        return
    from sqlaudit import migration  # it builds on this module

    migration.check_layout(connection, table)


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
