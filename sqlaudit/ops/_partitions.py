"""A PostgreSQL change table partitioned by month, and pruning by dropping partitions.

Opt-in, PostgreSQL only. :func:`create_partitioned_change_table` creates the change
table partitioned by range of ``changed_at``, one partition per UTC month
(``<table>_pYYYYMM``), plus a DEFAULT partition (``<table>_default``) that takes
any row whose month has no partition yet, so a write never fails for want of one.
:func:`ensure_partitions`, run from a cron job (``sqlaudit partitions --ensure``),
creates the coming months; if rows went to the default partition meanwhile, it
creates their months too and moves the rows there (PostgreSQL refuses a partition
whose range has rows in the default partition). :func:`sqlaudit.ops.prune` then
drops the partitions lying wholly before its cutoff, instead of deleting their rows.

The primary key is ``(id, changed_at)`` (PostgreSQL requires the partition key in
it); ``id`` still comes from one sequence, so it stays unique and orders the rows
as on a plain table.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from sqlaudit import _clock
from sqlaudit._schema import CHANGE_COLUMNS, build_change_table
from sqlaudit.exceptions import OperationError
from sqlaudit.ops import _anchors
from sqlaudit.ops._append_only import maintenance
from sqlaudit.ops._common import resolve_target

__all__ = [
    "Partition",
    "PartitionReport",
    "create_partitioned_change_table",
    "drop_partition",
    "dropped_before",
    "ensure_partitions",
    "is_partitioned",
    "list_partitions",
]

# PostgreSQL truncates identifiers longer than this; a partition name must stay whole.
_MAX_NAME = 63
# How long dropping a partition waits for the change table's lock before trying again,
# so that a long transaction holding it never queues the application's writes behind it.
_LOCK_TIMEOUT = "5s"
_ATTEMPTS = 3
# Lock not available, deadlock detected: worth another attempt.
_RETRYABLE = ("55P03", "40P01")
_ID_CHUNK = 10000


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition of a partitioned change table.

    Attributes:
        name: The partition's table name (``sqlaudit_changes_p202611``).
        start: The first moment it holds (aware UTC); ``None`` for the default partition.
        end: The first moment after it; ``None`` for the default partition.
        default: Whether it is the DEFAULT partition (rows of months with no partition).

    Example:
        >>> from datetime import UTC, datetime
        >>> november = Partition("sqlaudit_changes_p202611",
        ...     datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
        >>> november.default
        False
    """

    name: str
    start: datetime | None
    end: datetime | None
    default: bool = False


@dataclass(frozen=True, slots=True)
class PartitionReport:
    """What :func:`create_partitioned_change_table` or :func:`ensure_partitions` did.

    Attributes:
        created: Names of the partitions created, oldest month first.
        rows_moved: Rows moved out of the default partition into their month's.
        partitions: Every partition afterwards, oldest first, the default last.

    Example:
        >>> PartitionReport(created=("sqlaudit_changes_p202612",), rows_moved=0,
        ...     partitions=()).created
        ('sqlaudit_changes_p202612',)
    """

    created: tuple[str, ...]
    rows_moved: int
    partitions: tuple[Partition, ...]


def create_partitioned_change_table(
    bind: Engine | Connection | Session | None = None,
    *,
    months_ahead: int = 3,
    table_name: str | None = None,
    table_schema: str | None = None,
) -> PartitionReport:
    """Create the change table partitioned by month (PostgreSQL), with its partitions.

    Creates the table (partitioned by range of ``changed_at``, primary key
    ``(id, changed_at)``) and its indexes, the DEFAULT partition, and one partition
    per UTC month from the current one to ``months_ahead`` months later. Call it
    before :func:`sqlaudit.set_config` (which then finds the table and uses it as
    it is), or from an Alembic migration with ``op.get_bind()``. On a table that is
    already partitioned it only ensures the partitions, like :func:`ensure_partitions`.

    Args:
        bind: An Engine (runs in a transaction of its own), a Connection (runs in
            its transaction, as in an Alembic migration) or a Session; default: the
            config's engine.
        months_ahead: Months after the current one to create partitions for.
        table_name: The change table's name when not the config's.
        table_schema: Its schema.

    Returns:
        A :class:`PartitionReport`.

    Raises:
        OperationError: the database is not PostgreSQL; the table exists and is not
            partitioned (PostgreSQL cannot partition a table in place: see
            "Partitioned by month" in the retention docs to move it); ``months_ahead``
            below zero.

    Example:
        >>> report = create_partitioned_change_table(engine, months_ahead=3)  # doctest: +SKIP
        >>> [p.name for p in report.partitions][:2]  # doctest: +SKIP
        ['sqlaudit_changes_p202611', 'sqlaudit_changes_p202612']
    """
    what = "create_partitioned_change_table"
    ahead = _check_months(months_ahead, what)
    with _connect(bind, table_name, table_schema, what) as (connection, table):
        kind = _relkind(connection, table)
        if kind is None:
            build_change_table(table.name, table.schema, partitioned=True).create(connection)
        elif kind != "p":
            raise OperationError(
                f"{what}(): {table.fullname} exists and is not partitioned; PostgreSQL cannot "
                "partition a table in place. Rename it, create the partitioned table, and "
                "copy its rows (see 'Partitioned by month' in docs/retention.md), or "
                "keep it plain and prune it in batches."
            )
        return _ensure(connection, table, ahead)


def ensure_partitions(
    bind: Engine | Connection | Session | None = None,
    *,
    months_ahead: int = 3,
    table_name: str | None = None,
    table_schema: str | None = None,
) -> PartitionReport:
    """Create the coming months' partitions, and move rows out of the default partition.

    Creates a partition for each UTC month from the current one to ``months_ahead``
    months later that has none, and the DEFAULT partition if it is missing. Rows
    that went to the default partition (their month had no partition) are moved to
    partitions created for their months: in one transaction the default partition
    is detached, the months created, the rows moved, and the default attached again;
    the change table is locked meanwhile, so writers wait (they never fail) for the
    time it takes to move those rows. Safe to run at any time and as often as
    wanted; run it at least monthly (``sqlaudit partitions --ensure`` from cron).

    Args:
        bind: An Engine, a Connection (runs in its transaction) or a Session;
            default: the config's engine.
        months_ahead: Months after the current one to have partitions for.
        table_name: The change table's name when not the config's.
        table_schema: Its schema.

    Returns:
        A :class:`PartitionReport`.

    Raises:
        OperationError: the database is not PostgreSQL, or the table is missing or
            not partitioned (create it with :func:`create_partitioned_change_table`).

    Example:
        >>> report = ensure_partitions(months_ahead=3)  # doctest: +SKIP
        >>> report.created, report.rows_moved  # doctest: +SKIP
        (('sqlaudit_changes_p202703',), 0)
    """
    what = "ensure_partitions"
    ahead = _check_months(months_ahead, what)
    with _connect(bind, table_name, table_schema, what) as (connection, table):
        _require_partitioned(connection, table, what)
        return _ensure(connection, table, ahead)


def list_partitions(
    bind: Engine | Connection | Session | None = None,
    *,
    table_name: str | None = None,
    table_schema: str | None = None,
) -> list[Partition]:
    """Return the partitions of the partitioned change table, oldest first, the default last.

    Raises:
        OperationError: the database is not PostgreSQL, or the table is missing or
            not partitioned.

    Example:
        >>> [p.name for p in list_partitions()]  # doctest: +SKIP
        ['sqlaudit_changes_p202611', 'sqlaudit_changes_p202612', 'sqlaudit_changes_default']
    """
    what = "list_partitions"
    with _connect(bind, table_name, table_schema, what) as (connection, table):
        _require_partitioned(connection, table, what)
        return _partitions(connection, table)


def is_partitioned(connection: Connection, table: Table) -> bool:
    """Return whether ``table`` is a partitioned table (always ``False`` off PostgreSQL)."""
    if connection.dialect.name != "postgresql":
        return False
    return _relkind(connection, table) == "p"


def dropped_before(connection: Connection, table: Table, before: datetime) -> list[Partition]:
    """Return the partitions of ``table`` that end on or before ``before``, oldest first."""
    return [
        partition
        for partition in _partitions(connection, table)
        if not partition.default and partition.end is not None and partition.end <= before
    ]


def drop_partition(
    engine: Engine,
    table: Table,
    partition: Partition,
    record: Callable[[Connection, Partition, int, int, int], None],
) -> None:
    """Drop ``partition`` in a transaction of its own, and ``record`` it there.

    ``record`` is called in the drop's transaction with the connection, the
    partition, the rows it held, and its lowest and highest id (0 and 0 when
    empty). Anchors listing its rows forget them first, in the same transaction
    (the chain is redone by :func:`sqlaudit.ops._anchors.rechain`). The lock on
    the change table is awaited at most a few seconds, a few times, so that a
    long transaction holding it makes the application's writes queue behind the
    drop for no longer than that.

    Raises:
        OperationError: the lock could not be had.
    """
    for attempt in range(_ATTEMPTS):
        try:
            with engine.begin() as connection:
                record(connection, partition, *_drop(connection, table, partition))
            return
        except OperationalError as exc:
            code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
            if code not in _RETRYABLE:
                raise
            if attempt == _ATTEMPTS - 1:
                raise OperationError(
                    f"prune(): could not lock {table.fullname} to drop {partition.name} "
                    f"(waited {_LOCK_TIMEOUT}, {_ATTEMPTS} times): a long transaction holds "
                    "it. Run prune again when it has ended; nothing of this partition was "
                    "dropped."
                ) from exc
            time.sleep(1)


def _drop(connection: Connection, table: Table, partition: Partition) -> tuple[int, int, int]:
    qualified = _qualified(connection, table.schema, partition.name)
    anchored = _anchors.has_table(connection, _anchors.build_anchors_table(table))
    forgotten = _forget_ids(connection, table, qualified) if anchored else 0
    connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
    # Locked first, then counted: no row can arrive between the count and the drop.
    connection.exec_driver_sql(f"LOCK TABLE {qualified} IN ACCESS EXCLUSIVE MODE")
    count, low, high = connection.exec_driver_sql(
        f"SELECT count(*), min(id), max(id) FROM {qualified}"
    ).one()
    if anchored and count != forgotten:
        # Rows written into it after the ids were read (a late or imported timestamp).
        _forget_ids(connection, table, qualified)
    connection.exec_driver_sql(f"DROP TABLE {qualified}")
    return int(count), int(low or 0), int(high or 0)


def _forget_ids(connection: Connection, table: Table, qualified: str) -> int:
    """Take every id of a partition out of the anchors, a chunk at a time; return how many."""
    after = 0
    seen = 0
    while True:
        ids = [
            int(i)
            for i in connection.exec_driver_sql(
                f"SELECT id FROM {qualified} WHERE id > %(after)s ORDER BY id LIMIT {_ID_CHUNK}",
                {"after": after},
            ).scalars()
        ]
        if not ids:
            return seen
        _anchors.forget(connection, table, ids)
        seen += len(ids)
        after = ids[-1]


@contextmanager
def _connect(
    bind: Engine | Connection | Session | None,
    table_name: str | None,
    table_schema: str | None,
    what: str,
) -> Iterator[tuple[Connection, Table]]:
    """Yield a connection in a transaction, and the change table: the caller's, or a new one."""
    target = resolve_target(bind, table_name, table_schema, what)
    if isinstance(bind, Connection):
        _require_postgresql(bind, what)
        yield bind, target.table
        return
    with target.engine.begin() as connection:
        _require_postgresql(connection, what)
        yield connection, target.table


def _require_postgresql(connection: Connection, what: str) -> None:
    name = connection.dialect.name
    if name != "postgresql":
        raise OperationError(
            f"{what}(): a partitioned change table needs PostgreSQL; this database is {name}. "
            "Keep the plain change table there and prune it with prune(before=...), which "
            "deletes old rows in short batches."
        )


def _require_partitioned(connection: Connection, table: Table, what: str) -> None:
    kind = _relkind(connection, table)
    if kind == "p":
        return
    state = "does not exist" if kind is None else "is not partitioned"
    raise OperationError(
        f"{what}(): the change table {table.fullname} {state}; create it partitioned with "
        "create_partitioned_change_table(engine) (or `sqlaudit partitions --create`)."
    )


def _check_months(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise OperationError(f"{what}(months_ahead={value!r}): pass an int of zero or more.")
    return value


def _relkind(connection: Connection, table: Table) -> str | None:
    preparer = connection.dialect.identifier_preparer
    kind = connection.execute(
        text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:name)"),
        {"name": preparer.format_table(table)},
    ).scalar()
    return None if kind is None else str(kind)


def _qualified(connection: Connection, schema: str | None, name: str) -> str:
    preparer = connection.dialect.identifier_preparer
    quoted = preparer.quote(name)
    return quoted if schema is None else f"{preparer.quote_schema(schema)}.{quoted}"


# The bounds as PostgreSQL prints them, parsed back by PostgreSQL (whatever the
# session's time zone); MINVALUE/MAXVALUE read as NULL.
_PARTITIONS = text(
    r"""
    SELECT c.relname AS name,
           pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT' AS is_default,
           (regexp_match(pg_get_expr(c.relpartbound, c.oid),
                         'FROM \(''([^'']*)''\)'))[1]::timestamptz AS lower_bound,
           (regexp_match(pg_get_expr(c.relpartbound, c.oid),
                         'TO \(''([^'']*)''\)'))[1]::timestamptz AS upper_bound
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = to_regclass(:parent)
    """
)


def _partitions(connection: Connection, table: Table) -> list[Partition]:
    preparer = connection.dialect.identifier_preparer
    rows = connection.execute(_PARTITIONS, {"parent": preparer.format_table(table)}).all()
    found = [
        Partition(
            str(row.name),
            None if row.is_default else _utc(row.lower_bound),
            None if row.is_default else _utc(row.upper_bound),
            bool(row.is_default),
        )
        for row in rows
    ]
    lowest = datetime.min.replace(tzinfo=UTC)
    return sorted(found, key=lambda p: (p.default, p.start or lowest, p.name))


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _month(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(month: datetime) -> datetime:
    if month.month == 12:
        return month.replace(year=month.year + 1, month=1)
    return month.replace(month=month.month + 1)


def _name(table: Table, suffix: str) -> str:
    name = f"{table.name}_{suffix}"
    if len(name.encode()) > _MAX_NAME:
        raise OperationError(
            f"The partition name {name!r} is longer than PostgreSQL's {_MAX_NAME} bytes; "
            "use a shorter change table name (SQLAuditConfig(table_name=...))."
        )
    return name


def _ensure(connection: Connection, table: Table, months_ahead: int) -> PartitionReport:
    parent = _qualified(connection, table.schema, table.name)
    existing = _partitions(connection, table)
    default = next((p for p in existing if p.default), None)
    ranged = [p for p in existing if not p.default]
    wanted = [_month(_clock.utc_now())]
    for _ in range(months_ahead):
        wanted.append(_next_month(wanted[-1]))
    if not _needs_work(connection, table, default, ranged, wanted):
        return PartitionReport((), 0, tuple(existing))
    # Writers wait from here to the commit (creating a partition locks the table
    # anyway): no row can reach the default partition between reading its months
    # and creating or moving them, which PostgreSQL would refuse.
    connection.exec_driver_sql(f"LOCK TABLE {parent} IN ACCESS EXCLUSIVE MODE")
    if default is None:
        default = Partition(_name(table, "default"), None, None, True)
        connection.exec_driver_sql(
            f"CREATE TABLE {_qualified(connection, table.schema, default.name)} "
            f"PARTITION OF {parent} DEFAULT"
        )
    qualified_default = _qualified(connection, table.schema, default.name)
    stray = [
        month.replace(tzinfo=UTC)
        for month in connection.exec_driver_sql(
            "SELECT DISTINCT date_trunc('month', changed_at AT TIME ZONE 'UTC') "
            f"FROM {qualified_default}"
        ).scalars()
    ]
    missing = sorted(
        month
        for month in set(wanted) | set(stray)
        if not any(_overlaps(p, month, _next_month(month)) for p in ranged)
    )
    moving = [month for month in missing if month in set(stray)]
    moved = 0
    if moving:
        connection.exec_driver_sql(f"ALTER TABLE {parent} DETACH PARTITION {qualified_default}")
    created = []
    for month in missing:
        name = _name(table, f"p{month:%Y%m}")
        connection.exec_driver_sql(
            f"CREATE TABLE {_qualified(connection, table.schema, name)} PARTITION OF {parent} "
            f"FOR VALUES FROM ('{month.isoformat()}') TO ('{_next_month(month).isoformat()}')"
        )
        created.append(name)
    if moving:
        with maintenance(connection, table):  # the append-only guard lets the move through
            moved = _move(connection, parent, qualified_default, moving)
        connection.exec_driver_sql(
            f"ALTER TABLE {parent} ATTACH PARTITION {qualified_default} DEFAULT"
        )
    return PartitionReport(tuple(created), moved, tuple(_partitions(connection, table)))


def _needs_work(
    connection: Connection,
    table: Table,
    default: Partition | None,
    ranged: list[Partition],
    wanted: list[datetime],
) -> bool:
    """Whether a partition is due: the default, a wanted month, or one for rows in the default."""
    if default is None:
        return True
    if any(not any(_overlaps(p, m, _next_month(m)) for p in ranged) for m in wanted):
        return True
    qualified = _qualified(connection, table.schema, default.name)
    return connection.exec_driver_sql(f"SELECT 1 FROM {qualified} LIMIT 1").first() is not None


def _overlaps(partition: Partition, start: datetime, end: datetime) -> bool:
    low = partition.start or datetime.min.replace(tzinfo=UTC)
    high = partition.end or datetime.max.replace(tzinfo=UTC)
    return low < end and start < high


def _move(connection: Connection, parent: str, default: str, months: list[datetime]) -> int:
    """Move the rows of ``months`` from the (detached) default partition into the table."""
    columns = ", ".join(("id", *CHANGE_COLUMNS))  # not the generated key columns
    ranges = " OR ".join(
        f"(changed_at >= '{month.isoformat()}' AND changed_at < '{_next_month(month).isoformat()}')"
        for month in months
    )
    result = connection.exec_driver_sql(
        f"WITH moved AS (DELETE FROM {default} WHERE {ranges} RETURNING {columns}) "
        f"INSERT INTO {parent} ({columns}) SELECT {columns} FROM moved"
    )
    return int(result.rowcount)
