"""Trimming the query log: the entries of transactions older than the last backup."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Engine

from sqlaudit.exceptions import RecoveryError
from sqlaudit.querylog._table import LOG_TABLE, build_log_table

__all__ = ["trim_log"]


def trim_log(log_engine: Engine, *, before: datetime, batch_size: int = 10_000) -> int:
    """Delete the query log's entries of the transactions that ran before ``before``.

    Whole transactions only, chosen as ``replay(until=before)`` chooses them: those
    whose last statement started before ``before``. A transaction with a statement
    started at or after it keeps all its entries, so a replay ``since=before`` still
    finds it whole. Deletes ``batch_size`` entries per transaction, oldest first, so
    a large log is trimmed without one long lock; a trim that stops half-way can run
    again. Run it after a backup, with the moment the backup's snapshot began: the
    entries before it are in the backup (its own copy of the log included).

    Args:
        log_engine: Where the log lives (the data's own engine when logged with
            ``to=None``).
        before: An aware datetime.
        batch_size: Entries deleted per transaction.

    Returns:
        How many entries were deleted.

    Raises:
        RecoveryError: ``log_engine`` is not an Engine or has no query log table,
            ``before`` is not an aware datetime, or ``batch_size`` is below one.

    Example:
        >>> trim_log(engine, before=backup_started)  # doctest: +SKIP
        18342
    """
    if not isinstance(log_engine, Engine):
        raise RecoveryError(
            f"trim_log() takes the Engine of the log's database, not "
            f"{type(log_engine).__name__}: pass create_engine(url)."
        )
    if not isinstance(before, datetime) or before.tzinfo is None:
        raise RecoveryError(
            f"trim_log(before={before!r}) takes an aware datetime, such as "
            "datetime(2026, 1, 31, tzinfo=UTC): the log keeps UTC times."
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise RecoveryError(
            f"trim_log(batch_size={batch_size!r}) takes a number of entries, 1 or more."
        )
    if not sa_inspect(log_engine).has_table(LOG_TABLE):
        raise RecoveryError(
            f"{log_engine.url.render_as_string(hide_password=True)} has no {LOG_TABLE} "
            "table: pass the database log_queries(of=...) wrote to."
        )
    moment = before.astimezone(UTC)
    table = build_log_table()
    earlier = table.c.started_at < moment
    with log_engine.connect() as connection:
        upper = connection.execute(select(func.max(table.c.id)).where(earlier)).scalar()
        # Transactions with statements on both sides of the moment keep them all.
        straddling = list(
            connection.scalars(
                select(table.c.transaction_id)
                .where(
                    table.c.started_at >= moment,
                    table.c.transaction_id.in_(select(table.c.transaction_id).where(earlier)),
                )
                .distinct()
            )
        )
        connection.rollback()
    if upper is None:
        return 0
    older = [table.c.id <= upper, earlier]
    if straddling:
        older.append(
            or_(table.c.transaction_id.is_(None), table.c.transaction_id.not_in(straddling))
        )
    deleted = 0
    last = 0
    while True:
        with log_engine.begin() as connection:
            ids = list(
                connection.scalars(
                    select(table.c.id)
                    .where(table.c.id > last, *older)
                    .order_by(table.c.id)
                    .limit(batch_size)
                )
            )
            if not ids:
                return deleted
            connection.execute(delete(table).where(table.c.id.in_(ids)))
        deleted += len(ids)
        last = ids[-1]
