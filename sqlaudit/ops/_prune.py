"""Retention: delete change rows older than a moment, in short batches, logged."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from sqlaudit.exceptions import OperationError
from sqlaudit.ops import _anchors, _partitions
from sqlaudit.ops._append_only import maintenance
from sqlaudit.ops._common import check_positive, log_finish, log_start, resolve_target
from sqlaudit.ops._export import table_names

__all__ = ["PruneReport", "prune"]


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What one :func:`prune` run deleted.

    Attributes:
        rows_deleted: Change rows deleted.
        batches: Transactions committed (one per batch).
        first_id: The lowest id deleted (``None``: nothing was).
        last_id: The highest id deleted.
        operation_id: The run's row in the operations log.
        complete: ``False`` when ``max_batches`` stopped the run early (run it again).
        partitions_dropped: On a partitioned change table, the partitions dropped
            whole (their rows are counted in ``rows_deleted``, their ids in
            ``first_id`` and ``last_id``).

    Example:
        >>> PruneReport(1200, 3, 1, 1250, 7, True).rows_deleted
        1200
    """

    rows_deleted: int
    batches: int
    first_id: int | None
    last_id: int | None
    operation_id: int
    complete: bool
    partitions_dropped: tuple[str, ...] = ()


def prune(
    before: datetime,
    *,
    models: type[Any] | str | Iterable[type[Any] | str] | None = None,
    batch_size: int = 5000,
    max_batches: int | None = None,
    anchor_key: bytes | str | None = None,
    bind: Engine | Connection | Session | None = None,
    table_name: str | None = None,
    table_schema: str | None = None,
    performed_by: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> PruneReport:
    """Delete the change rows written before ``before``, in short batches.

    Each batch finds the next ``batch_size`` matching ids in id order (the primary
    key's index), deletes exactly those ids, and commits: no transaction lasts
    longer than one batch, and only the deleted rows are locked, so the application
    goes on writing new changes while a prune runs. Every run is recorded in the
    operations log (``<change table>_operations``): arguments, who, start, end and
    rows deleted; a run that was interrupted stays ``running`` there, and running
    ``prune`` again with the same arguments finishes the work. When the change
    table has anchors (:func:`anchor_changes`), the anchors of the deleted rows are
    re-anchored in the same transactions, so :func:`verify` still passes.

    On a change table partitioned by month (:func:`create_partitioned_change_table`,
    PostgreSQL), the partitions lying wholly before ``before`` are dropped, each in
    a transaction of its own, instead of deleted row by row: the time does not grow
    with their size. Only the rows of the partition that straddles ``before`` (and
    old rows in the default partition) are deleted in batches. With ``models``,
    no partition is dropped (it holds other tables' rows too): every row goes in
    batches, as on a plain table, and emptied partitions stay until a prune
    without ``models`` drops them. The log's ``detail`` lists each partition
    dropped with its rows, counted just before the drop.

    Pruning removes the beginning of histories: a resource whose insert was pruned
    has a state only from its first kept change on; record a baseline
    (:func:`sqlaudit.record_baseline`) after pruning if states must stay complete.

    Args:
        before: An aware datetime; rows with ``changed_at`` before it are deleted.
        models: Tracked classes or table names; ``None``: every table.
        batch_size: Rows deleted per transaction.
        max_batches: Stop after this many batches (``None``: until done); dropping a
            partition is not a batch.
        anchor_key: The key the anchors were made with, if any (:func:`anchor_changes`).
        bind: Engine, Connection or Session whose engine to use; default: the config's.
        table_name: The change table's name when not the config's.
        table_schema: Its schema.
        performed_by: Who runs it, for the operations log.
        progress: Called after each batch with the number of rows deleted so far.

    Returns:
        A :class:`PruneReport`.

    Raises:
        OperationError: a naive or missing ``before``, a batch size below one, an
            untracked model, anchors made with a key and not this ``anchor_key``.
        NotConfiguredError: no ``bind`` and no config.

    Example:
        >>> from datetime import UTC, datetime, timedelta
        >>> report = prune(datetime.now(UTC) - timedelta(days=365))  # doctest: +SKIP
        >>> report.rows_deleted, report.batches  # doctest: +SKIP
        (120000, 24)
    """
    if not isinstance(before, datetime) or before.tzinfo is None:
        raise OperationError(
            f"prune(before={before!r}): pass an aware datetime, such as "
            "datetime.now(UTC) - timedelta(days=365); rows changed before it are deleted."
        )
    size = check_positive(batch_size, "batch_size", "prune")
    most = None if max_batches is None else check_positive(max_batches, "max_batches", "prune")
    names = table_names(models, "prune")
    target = resolve_target(bind, table_name, table_schema, "prune")
    table = target.table
    log = target.operations
    arguments = {"before": before, "models": names or None, "batch_size": size}
    with target.engine.begin() as connection:
        # Checked before anything is deleted: the chain is redone with it at the end.
        sign = _anchors.check_key(connection, table, anchor_key, "prune")
        operation_id = log_start(connection, log, "prune", arguments, performed_by)
    deleted = batches = 0
    first: int | None = None
    last: int | None = None
    dropped: list[dict[str, Any]] = []
    if not names:
        with target.engine.connect() as connection:
            old = (
                _partitions.dropped_before(connection, table, before)
                if _partitions.is_partitioned(connection, table)
                else []
            )

        def record(
            connection: Connection, partition: _partitions.Partition, rows: int, low: int, high: int
        ) -> None:
            # In the drop's own transaction: the log never misses a dropped partition.
            nonlocal deleted, first, last
            deleted += rows
            if rows:
                first = low if first is None else min(first, low)
                last = high if last is None else max(last, high)
            dropped.append(
                {"name": partition.name, "from": partition.start, "to": partition.end, "rows": rows}
            )
            detail = {"last_id": last, "partitions_dropped": dropped}
            log_finish(connection, log, operation_id, deleted, detail, status="running")

        for partition in old:
            _partitions.drop_partition(target.engine, table, partition, record)
            if progress is not None:
                progress(deleted)
    conditions = [table.c.changed_at < before]
    if names:
        conditions.append(table.c.table_name.in_(names))
    after = 0
    complete = True
    while True:
        if most is not None and batches >= most:
            complete = False
            break
        with target.engine.begin() as connection:
            ids = list(
                connection.execute(
                    select(table.c.id)
                    .where(table.c.id > after, *conditions)
                    .order_by(table.c.id)
                    .limit(size)
                ).scalars()
            )
            if not ids:
                break
            # Exactly these ids, and only if still old: a row is never deleted on a
            # guess, whatever was written meanwhile.
            with maintenance(connection, table):  # the append-only guard lets this through
                result = connection.execute(delete(table).where(table.c.id.in_(ids), *conditions))
            count = int(result.rowcount)
            _anchors.forget(connection, table, ids)
            deleted += count
            batches += 1
            first = ids[0] if first is None else min(first, ids[0])
            last = ids[-1] if last is None else max(last, ids[-1])
            after = ids[-1]
            detail: dict[str, Any] = {"last_id": last}
            if dropped:
                detail["partitions_dropped"] = dropped
            log_finish(connection, log, operation_id, deleted, detail, status="running")
        if progress is not None:
            progress(deleted)
        if len(ids) < size:
            break
    with target.engine.begin() as connection:
        summary: dict[str, Any] = {"first_id": first, "last_id": last, "batches": batches}
        if dropped:
            summary["partitions_dropped"] = dropped
        summary["anchors"] = _anchors.rechain(connection, table, sign)
        log_finish(
            connection,
            log,
            operation_id,
            deleted,
            summary,
            status="done" if complete else "partial",
        )
    names_dropped = tuple(str(entry["name"]) for entry in dropped)
    return PruneReport(deleted, batches, first, last, operation_id, complete, names_dropped)
