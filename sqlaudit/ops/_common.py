"""What the operations share: where the change table is, and the operations log.

Every operation works either from the config set with :func:`sqlaudit.set_config`
(its change table, and the engine its session factory is bound to) or from an
explicit ``bind`` and table name, which is how the command line works from a
database URL alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    update,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from sqlaudit import _clock
from sqlaudit._schema import CHARSET, COLLATION, UTCDateTime, build_change_table
from sqlaudit.config import get_config, has_config
from sqlaudit.exceptions import NotConfiguredError, OperationError

__all__ = [
    "ChangeTarget",
    "build_operations_table",
    "check_positive",
    "log_finish",
    "log_start",
    "resolve_target",
]

_Id = BigInteger().with_variant(Integer(), "sqlite")
_MYSQL = ("mysql", "mariadb")


@dataclass(frozen=True, slots=True)
class ChangeTarget:
    """The change table an operation works on, and the engine to reach it."""

    engine: Engine
    table: Table

    @property
    def operations(self) -> Table:
        """Return the operations log table beside the change table."""
        return build_operations_table(self.table)


def resolve_target(
    bind: Engine | Connection | Session | None,
    table_name: str | None,
    table_schema: str | None,
    what: str,
) -> ChangeTarget:
    """Return the engine and change table ``what`` (the operation's name) works on.

    Raises:
        NotConfiguredError: neither ``bind`` nor a config.
        OperationError: a ``bind`` of the wrong kind.
    """
    configured = get_config() if has_config() else None
    if bind is None:
        if configured is None:
            raise NotConfiguredError(
                f"{what}() needs a database: call set_config(SQLAuditConfig(...)) first, or "
                f"pass bind=create_engine(url) (and table_name= if the change table is not "
                "sqlaudit_changes)."
            )
        with configured.open_session() as session:
            bind = session.get_bind()
    if isinstance(bind, Session):
        bind = bind.get_bind()
    if isinstance(bind, Connection):
        bind = bind.engine
    if not isinstance(bind, Engine):
        raise OperationError(
            f"{what}(bind=...) takes an Engine, a Connection or a Session, not "
            f"{type(bind).__name__}."
        )
    if table_name is not None:
        table = build_change_table(table_name, table_schema)
    elif configured is not None and table_schema is None:
        table = configured.table
    else:
        table = build_change_table("sqlaudit_changes", table_schema)
    return ChangeTarget(bind, table)


def check_positive(value: Any, option: str, what: str) -> int:
    """Return ``value`` when it is a positive int, or raise :class:`OperationError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OperationError(f"{what}({option}={value!r}): pass a positive int.")
    return value


_operations_tables: dict[tuple[str, str | None], Table] = {}


def build_operations_table(change_table: Table) -> Table:
    """Return the operations log table of ``change_table``: ``<name>_operations``.

    One row per prune, erase or anchoring run: what was asked, by whom, when it
    started and finished, and how many rows it touched. A run that was interrupted
    stays ``running``.

    Example:
        >>> build_operations_table(build_change_table("sqlaudit_changes", None)).name
        'sqlaudit_changes_operations'
    """
    key = (change_table.name, change_table.schema)
    table = _operations_tables.get(key)
    if table is None:
        text = Text().with_variant(mysql.TEXT(charset=CHARSET, collation=COLLATION), *_MYSQL)
        name = String(32).with_variant(
            mysql.VARCHAR(32, charset=CHARSET, collation=COLLATION), *_MYSQL
        )
        table = Table(
            f"{change_table.name}_operations",
            MetaData(schema=change_table.schema),
            Column("id", _Id, primary_key=True, autoincrement=True),
            Column("operation", name, nullable=False),
            Column("status", name, nullable=False),
            Column("performed_by", text, nullable=True),
            Column("started_at", UTCDateTime(), nullable=False),
            Column("finished_at", UTCDateTime(), nullable=True),
            Column("arguments", JSON(none_as_null=True), nullable=True),
            Column("rows_affected", _Id, nullable=False, default=0),
            Column("detail", JSON(none_as_null=True), nullable=True),
            mysql_charset=CHARSET,
            mysql_collate=COLLATION,
            mariadb_charset=CHARSET,
            mariadb_collate=COLLATION,
        )
        _operations_tables[key] = table
    return table


def _plain(value: Any) -> Any:
    """Return ``value`` as JSON can hold it (datetimes as ISO 8601, the rest as text)."""
    return json.loads(json.dumps(value, default=_default))


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=str)
    return str(value)


def log_start(
    connection: Connection,
    table: Table,
    operation: str,
    arguments: Mapping[str, Any],
    performed_by: str | None = None,
) -> int:
    """Create the operations log if missing and record a run as ``running``; return its id."""
    table.create(connection, checkfirst=True)
    result = connection.execute(
        insert(table).values(
            operation=operation,
            status="running",
            performed_by=performed_by,
            started_at=_clock.utc_now(),
            arguments=_plain(dict(arguments)),
            rows_affected=0,
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def log_finish(
    connection: Connection,
    table: Table,
    operation_id: int,
    rows_affected: int,
    detail: Mapping[str, Any] | None = None,
    *,
    status: str = "done",
) -> None:
    """Record the end of run ``operation_id`` (or its progress, with ``status="running"``)."""
    connection.execute(
        update(table)
        .where(table.c.id == operation_id)
        .values(
            status=status,
            finished_at=None if status == "running" else _clock.utc_now(),
            rows_affected=rows_affected,
            detail=None if detail is None else _plain(dict(detail)),
        )
    )
