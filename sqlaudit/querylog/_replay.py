"""Replaying the query log: logged writes, transaction by transaction, against another database."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection, Engine

from sqlaudit.exceptions import RecoveryError, ReplayError
from sqlaudit.querylog._capture import _BUSY
from sqlaudit.querylog._table import (
    LOG_TABLE,
    LogEntry,
    build_log_table,
    encode_parameters,
    to_entry,
    write_entries,
)

__all__ = ["ReplayResult", "read_log", "replay"]


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What :func:`replay` ran (or, in a dry run, would run).

    Attributes:
        entries: The log entries, in replay order.
        dry_run: Whether nothing was run.
        skipped: Statements left out because the target's own query log already holds
            them (see ``skip_present``).

    Example:
        >>> result = replay(engine, restored, dry_run=True)  # doctest: +SKIP
        >>> [entry.statement for entry in result.entries][:1]  # doctest: +SKIP
        ['INSERT INTO customers (name) VALUES (?)']
    """

    entries: tuple[LogEntry, ...]
    dry_run: bool
    skipped: int = 0

    @property
    def count(self) -> int:
        """How many statements were (or would be) replayed.

        Example:
            >>> ReplayResult((), True).count
            0
        """
        return len(self.entries)


def _moment(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise RecoveryError(
            f"replay({name}=...) takes a datetime, not {type(value).__name__} {value!r}."
        )
    if value.tzinfo is None:
        raise RecoveryError(
            f"replay({name}={value!r}) is naive: pass an aware datetime, such as "
            f"{value!r}.replace(tzinfo=UTC); the log keeps UTC times."
        )
    return value.astimezone(UTC)


def read_log(log: Engine | Connection) -> list[LogEntry]:
    """Return every entry of the query log on ``log``, oldest first.

    Raises:
        RecoveryError: there is no query log table there.

    Example:
        >>> [entry.kind for entry in read_log(engine)]  # doctest: +SKIP
        ['ddl', 'insert', 'update']
    """
    if not isinstance(log, (Engine, Connection)):
        raise RecoveryError(
            f"the query log is read from an Engine or a Connection, not {type(log).__name__}."
        )
    if not sa_inspect(log).has_table(LOG_TABLE):
        raise RecoveryError(
            f"{log.engine.url.render_as_string(hide_password=True)} has no {LOG_TABLE} "
            "table: pass the database log_queries(of=...) wrote to."
        )
    table = build_log_table()
    query = select(table).order_by(table.c.id)
    if isinstance(log, Connection):
        return [to_entry(row) for row in log.execute(query)]
    with log.connect() as connection:
        return [to_entry(row) for row in connection.execute(query)]


def _transactions(entries: Iterable[LogEntry]) -> list[list[LogEntry]]:
    """Group entries by transaction, transactions in the order of their last entry.

    A transaction's entries are written together at its commit, so this is commit order
    (and stays right for a log whose entries were written one by one). An autocommit
    entry is a transaction of its own.
    """
    groups: dict[Any, list[LogEntry]] = {}
    for entry in entries:
        key = entry.transaction_id if entry.transaction_id is not None else ("auto", entry.id)
        groups.setdefault(key, []).append(entry)
    return sorted(groups.values(), key=lambda group: group[-1].id)


def _fingerprint(entry: LogEntry) -> tuple[Any, ...]:
    """Return what tells an entry in another copy of the log (where its id may differ).

    Its transaction, when it started (microseconds) and how long it took (a float from
    a high-resolution clock): two statements of one transaction never share both.
    """
    return (entry.transaction_id, entry.started_at, entry.duration)


def _same_database(log: Engine | Connection, target: Engine) -> bool:
    def name(engine: Engine) -> str:
        return engine.url.render_as_string(hide_password=False)

    return name(log.engine) == name(target)


def _present(target: Engine) -> tuple[Table | None, set[tuple[Any, ...]]]:
    """Return the target's own query log table (if it has one) and the entries in it."""
    if not sa_inspect(target).has_table(LOG_TABLE):
        return None, set()
    table = build_log_table()
    columns = (table.c.transaction_id, table.c.started_at, table.c.duration)
    with target.connect() as connection:
        return table, {tuple(row) for row in connection.execute(select(*columns))}


def replay(
    log_engine: Engine | Connection,
    target_engine: Engine,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    filter: Callable[[LogEntry], bool] | None = None,
    dry_run: bool = False,
    start_at: int | None = None,
    skip_present: bool = True,
) -> ReplayResult:
    """Re-run the logged writes against ``target_engine``, in commit order.

    Each logged transaction is replayed in one transaction on the target, in the order
    transactions committed (the log writes a transaction's entries at its commit); the
    statements of one transaction follow their order in the log. Reads are never
    replayed, and a transaction is never split: ``since`` and ``until`` choose whole
    transactions, by the start of their last statement (the nearest the log has to
    their commit).

    A backup of a database that logs into itself (``log_queries(of=engine)``) holds the
    log of the transactions it holds, and only theirs, whatever ran concurrently while
    it was taken. So when the target has a query log table, the entries found there
    are skipped, and what is replayed is logged there too, in the transaction
    that replays it: the restored database's log is whole again, and replaying twice,
    or again after a failure, runs nothing twice.

    Args:
        log_engine: Where the log lives (the data's own engine when logged with ``to=None``).
        target_engine: The database to replay on (a restored backup), of the dialect
            the statements were logged on.
        since: Only transactions whose last statement started at or after this moment
            (aware).
        until: Only transactions whose last statement started before this moment (aware).
        filter: Only entries for which this returns true (entry by entry).
        dry_run: List what would be run, run nothing.
        start_at: Skip the entries before the one with this id in the replay order
            (the ``resume_at`` of a :class:`~sqlaudit.exceptions.ReplayError`).
        skip_present: Skip the entries the target's own query log holds, and log the
            replayed ones there (when it has one, and is not ``log_engine``'s
            database). ``False``: replay every entry chosen, and write nothing but the
            statements.

    Returns:
        A :class:`ReplayResult` with the entries run (or to run).

    Raises:
        RecoveryError: bad arguments, no log table, a ``start_at`` not among the
            entries, a statement logged on another dialect or parameter style, or one
            with masked parameters.
        ReplayError: a statement failed; its transaction was rolled back on the target,
            the transactions before it stay committed, and ``resume_at`` says where
            to resume.

    Example:
        >>> replay(engine, restored, since=backup_taken)  # doctest: +SKIP
        ReplayResult(entries=(...), dry_run=False)
        >>> try:  # doctest: +SKIP
        ...     replay(engine, restored)
        ... except ReplayError as exc:
        ...     replay(engine, restored, start_at=exc.resume_at)  # after fixing the cause
    """
    if not isinstance(target_engine, Engine):
        raise RecoveryError(
            f"replay(target_engine=...) takes an Engine, not {type(target_engine).__name__}: "
            "pass create_engine(url) of the restored database."
        )
    if filter is not None and not callable(filter):
        raise RecoveryError("replay(filter=...) takes a function of a LogEntry returning a bool.")
    if start_at is not None and (not isinstance(start_at, int) or isinstance(start_at, bool)):
        raise RecoveryError(
            f"replay(start_at={start_at!r}) takes a log entry id (int), such as the "
            "resume_at of the ReplayError that stopped the previous replay."
        )
    if not isinstance(skip_present, bool):
        raise RecoveryError(
            f"replay(skip_present={skip_present!r}) takes True (the default) or False."
        )
    low, high = _moment(since, "since"), _moment(until, "until")
    # (A target that is the log's own database holds every transaction of the log.)
    own = _same_database(log_engine, target_engine)
    record, present = _present(target_engine) if skip_present and not own else (None, set())
    ordered: list[LogEntry] = []
    skipped = 0
    for group in _transactions(entry for entry in read_log(log_engine) if entry.kind != "select"):
        last = group[-1].started_at
        if (low is not None and last < low) or (high is not None and last >= high):
            continue
        for entry in group:
            if present and _fingerprint(entry) in present:
                skipped += 1
            elif filter is None or filter(entry):
                ordered.append(entry)
    if start_at is not None:
        ids = [entry.id for entry in ordered]
        if start_at not in ids:
            raise RecoveryError(
                f"replay(start_at={start_at}): no entry with this id is among the "
                f"{len(ids)} to replay with these filters; pass the resume_at of the "
                "ReplayError with the same since/until/filter."
            )
        ordered = ordered[ids.index(start_at) :]
    _check(ordered, target_engine)
    if not dry_run:
        _run(ordered, target_engine, record)
    return ReplayResult(tuple(ordered), dry_run, skipped)


def _check(entries: list[LogEntry], target: Engine) -> None:
    dialect = target.dialect
    for entry in entries:
        name = entry.dialect.split("+", 1)[0]
        if name != dialect.name:
            raise RecoveryError(
                f"log entry {entry.id} was logged on {entry.dialect}, and the target is "
                f"{dialect.name}: replay on a database of the same dialect."
            )
        if entry.paramstyle and entry.paramstyle != dialect.paramstyle:
            raise RecoveryError(
                f"log entry {entry.id} was logged with the {entry.paramstyle} parameter "
                f"style ({entry.dialect}), and the target's driver uses {dialect.paramstyle}: "
                f"connect to the target with the driver of the log ({entry.dialect})."
            )
        if entry.masked:
            raise RecoveryError(
                f"log entry {entry.id} has masked parameters (log_queries(mask_columns=...)), "
                "so it cannot be re-run: leave it out with filter=..., or apply it by hand."
            )


def _run(entries: list[LogEntry], target: Engine, record: Table | None) -> None:
    """Run ``entries`` on ``target``, one logged transaction per transaction.

    With ``record`` (the target's query log), each is logged there in its transaction.
    """
    position = 0
    replayed = 0
    index = 0
    while index < len(entries):
        key = entries[index].transaction_id
        end = index + 1
        while key is not None and end < len(entries) and entries[end].transaction_id == key:
            end += 1
        done: list[LogEntry] = []
        with target.connect() as connection:
            if record is not None:
                # What replay runs is logged by replay, with the original entries: a
                # query log installed on the target must not log it a second time.
                connection.info[_BUSY] = True
            try:
                for entry in entries[index:end]:
                    position += 1
                    try:
                        connection.exec_driver_sql(entry.statement, entry.parameters)
                    except Exception as exc:
                        connection.rollback()
                        resume_at = (done or [entry])[0].id
                        raise ReplayError(
                            f"replay stopped at log entry {entry.id} (statement {position} "
                            f"of {len(entries)}): {type(exc).__name__}: {exc}. Its transaction "
                            f"was rolled back on the target; fix the cause, then call "
                            f"replay(..., start_at={resume_at}) with the same filters.",
                            entry_id=entry.id,
                            position=position,
                            resume_at=resume_at,
                            replayed=replayed,
                        ) from exc
                    done.append(entry)
                    if entry.kind == "ddl" and _committed_itself(connection):
                        _commit(connection, record, done)
                        replayed += len(done)
                        done = []
                _commit(connection, record, done)
                replayed += len(done)
            finally:
                connection.info.pop(_BUSY, None)
        index = end


def _committed_itself(connection: Connection) -> bool:
    """Tell whether the DDL statement just run committed itself, and what ran before it.

    MySQL commits DDL on its own; Python's sqlite3 runs DDL outside a transaction when
    none is open yet. The entries run so far are then logged and committed at once.
    """
    name = connection.dialect.name
    if name in ("mysql", "mariadb"):
        return True
    if name == "sqlite":
        return not getattr(connection.connection.dbapi_connection, "in_transaction", True)
    return False


def _commit(connection: Connection, record: Table | None, done: list[LogEntry]) -> None:
    if record is not None and done:
        write_entries(connection, record, [_stored(entry) for entry in done])
    connection.commit()


def _stored(entry: LogEntry) -> tuple[Any, ...]:
    """Return a replayed entry as the log stores it (:data:`ENTRY_COLUMNS` order)."""
    extra: dict[str, Any] = {}
    if entry.reason is not None:
        extra["reason"] = entry.reason
    if entry.extra:
        extra["extra"] = entry.extra
    return (
        entry.transaction_id,
        entry.kind,
        entry.dialect,
        entry.statement,
        encode_parameters(entry.parameters, entry.paramstyle),
        entry.executemany,
        entry.started_at,
        entry.duration,
        entry.row_count,
        entry.changed_by,
        json.dumps(extra, separators=(",", ":"), default=str) if extra else None,
        None,  # (a key only marks entries delivered from an outbox)
    )
