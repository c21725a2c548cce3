"""Logging statements: Core cursor events write one log row per statement, in its transaction.

With ``to=other_engine`` the rows go to an outbox table in the same transaction, and
once committed a background thread (or :meth:`QueryLog.drain`) delivers them to the
other database, once each (:mod:`sqlaudit.querylog._drain`).
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from sqlaudit import _clock
from sqlaudit.config import get_config, has_config
from sqlaudit.context import _Unset, current_context
from sqlaudit.exceptions import RecoveryError
from sqlaudit.querylog._drain import Drainer, deliver
from sqlaudit.querylog._table import (
    LOG_TABLE,
    MASK,
    OUTBOX_TABLE,
    build_log_table,
    create_log_table,
    encode_parameters,
    write_entries,
)

if TYPE_CHECKING:
    from sqlaudit.querylog._async import DeliveryLoop

__all__ = ["QueryLog", "check_options", "log_queries", "statement_kind"]

_BUSY: Final = "sqlaudit.querylog.busy"
_STARTED: Final = "sqlaudit.querylog.started"
_TRANSACTION: Final = "sqlaudit.querylog.transaction"
_PENDING: Final = "sqlaudit.querylog.pending"  # entries of the transaction, written at commit
_MARKS: Final = "sqlaudit.querylog.savepoints"  # per open savepoint: entries pending before it
_SHIP: Final = "sqlaudit.querylog.ship"  # entries committed here: wake the drainer after
_STATEMENTS = ("writes", "all")
_DRAINS = ("background", "manual")
_KIND_CACHE: Final = 512  # statements whose kind is remembered (then forgotten all at once)
_FIRST_WORD = re.compile(r"\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*\(?\s*(\w+)", re.DOTALL)
_KINDS = {
    "insert": "insert",
    "replace": "insert",
    "update": "update",
    "delete": "delete",
    "select": "select",
    "show": "select",
    "pragma": "select",
    "explain": "select",
    "describe": "select",
    "values": "select",
    "create": "ddl",
    "alter": "ddl",
    "drop": "ddl",
    "truncate": "ddl",
    "comment": "ddl",
    "rename": "ddl",
}
# Transaction control is not logged: a replay runs each logged transaction in one of its
# own, and what a rolled-back savepoint ran was dropped from the log with it.
_CONTROL = frozenset({"begin", "commit", "rollback", "savepoint", "release", "start", "end"})
_BIND_SUFFIX = re.compile(r"(?:_m\d+|__\d+|_\d+)+$")


def statement_kind(statement: str) -> str:
    """Return the kind of a SQL statement, from its first word.

    Returns:
        ``insert``, ``update``, ``delete``, ``select``, ``ddl``, ``control`` (transaction
        control, never logged) or ``text`` (anything else, such as ``WITH`` or ``CALL``).

    Example:
        >>> statement_kind("UPDATE customers SET name = ?"), statement_kind("WITH x AS (...)")
        ('update', 'text')
    """
    match = _FIRST_WORD.match(statement)
    word = match.group(1).lower() if match else ""
    if word in _CONTROL:
        return "control"
    return _KINDS.get(word, "text")


@dataclass(eq=False)
class QueryLog:
    """A query log installed by :func:`log_queries`; :meth:`remove` uninstalls it.

    Example:
        >>> log = log_queries(of=engine)  # doctest: +SKIP
        >>> log.remove()  # doctest: +SKIP
    """

    target: Engine | Connection
    destination: Engine | None
    statements: str
    extra: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None
    mask_columns: frozenset[str]
    sample: float = 1.0
    drain_mode: str = "background"
    drain_interval: float = 5.0
    # Set by sqlaudit.asyncio.log_queries when ``to=`` is given: the deliveries then run
    # in an event loop of their own (an async driver's connections belong to one loop).
    delivery_loop: DeliveryLoop | None = None
    _listeners: list[tuple[str, Callable[..., Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        name = LOG_TABLE if self.destination is None else OUTBOX_TABLE
        self.table = build_log_table(name=name)
        self._own = re.compile(rf"\b(?:{LOG_TABLE}|{OUTBOX_TABLE})\b", re.IGNORECASE)
        # The kind of each statement seen ("": not logged), by its text: a statement
        # compiled once is classified once.
        self._kinds: dict[str, str] = {}
        self._drainer: Drainer | None = None
        self._log_table_ready = False

    def install(self) -> None:
        create_log_table(self.table, self.target)
        if self.destination is not None:
            try:
                self._create_log_table()
            except Exception:
                if self.drain_mode != "background":
                    raise
                # The log database is down: the application starts all the same; the
                # drainer's first delivery (which creates the table) reports the failure.
                pass
        self._listen()

    def _listen(self) -> None:
        """Install the listeners on ``target`` and start the drainer (the tables exist)."""
        listeners: list[tuple[str, Callable[..., Any]]] = [
            ("before_cursor_execute", self._before),
            ("after_cursor_execute", self._after),
            ("begin", self._forget),
            ("commit", self._flush),
            ("rollback", self._forget),
            ("savepoint", self._mark),
            ("rollback_savepoint", self._back_to),
            ("release_savepoint", self._release),
        ]
        if self.destination is not None and self.drain_mode == "background":
            self._drainer = Drainer(self.drain, self.destination, self.drain_interval)
            # A connection that committed entries wakes the drainer when it is returned
            # to the pool, or begins its next transaction: the COMMIT is done by then.
            listeners.append(("checkin", self._checked_in))
        for name, listener in listeners:
            event.listen(self.target, name, listener)
            self._listeners.append((name, listener))
        if self._drainer is not None:
            # Its first delivery takes what the outbox already holds (left by a process
            # that died before delivering, say).
            self._drainer.start()

    def remove(self) -> None:
        """Stop logging (the log table and its rows stay); with ``to=``, deliver and stop.

        Entries of transactions still open, not yet written (they are written at commit),
        are dropped. With ``drain="background"``, the committed entries are delivered
        (or, the log database being down, left in the outbox) and the drainer thread
        stops, before this returns.

        Example:
            >>> log.remove()  # doctest: +SKIP
        """
        self._unlisten()
        self._stop()

    def _unlisten(self) -> None:
        while self._listeners:
            name, listener = self._listeners.pop()
            event.remove(self.target, name, listener)

    def _stop(self) -> None:
        """Deliver the rest and stop the drainer thread; let go of the delivery loop's engines."""
        if self._drainer is not None:
            self._drainer.stop()
        if self.delivery_loop is not None:
            self.delivery_loop.dispose()

    def drain(self, *, batch_size: int = 1000) -> int:
        """Deliver the committed entries of the outbox to the ``to`` database, now.

        With ``drain="background"`` (the default) a thread does this after every commit;
        call it yourself with ``drain="manual"``, from a job, say. Entries are copied in
        the order they were logged, then deleted from the outbox. Each carries a unique
        key, so when a drain dies between the copy and the delete, the next one finds
        those keys delivered and only deletes them. Drains running at once (threads,
        processes) take turns on a lock in the log database: every committed entry
        reaches it exactly once, in order. The log table there is created if missing.

        Returns:
            How many entries were delivered.

        Raises:
            RecoveryError: the log was made without ``to=``.
            sqlalchemy.exc.SQLAlchemyError: either database failed; what was not
                delivered stays in the outbox.

        Example:
            >>> log = log_queries(of=engine, to=log_engine, drain="manual")  # doctest: +SKIP
            >>> log.drain()  # after commits, or from a job  # doctest: +SKIP
            3
        """
        if self.destination is None:
            raise RecoveryError(
                "drain() delivers the outbox of log_queries(to=...); this log writes into "
                "its own database, so there is nothing to drain."
            )
        if self.delivery_loop is not None:
            return self.delivery_loop.run(
                lambda source, destination: self._deliver(source, destination, batch_size)
            )
        engine = self.target
        assert isinstance(engine, Engine)  # log_queries() refuses to= with a Connection
        return self._deliver(engine, self.destination, batch_size)

    def _deliver(self, source: Engine, destination: Engine, batch_size: int) -> int:
        if not self._log_table_ready:
            self._create_log_table(destination)
        return deliver(source, self.table, destination, batch_size)

    def _create_log_table(self, bind: Engine | Connection | None = None) -> None:
        """Create the log table on the ``to`` database (through ``bind``, if given)."""
        assert self.destination is not None
        create_log_table(build_log_table(), self.destination if bind is None else bind)
        self._log_table_ready = True

    def _checked_in(self, dbapi_connection: Any, record: Any) -> None:
        if record is not None and record.info.pop(_SHIP, None) and self._drainer is not None:
            self._drainer.wake()

    # --- the transaction events ---------------------------------------------------------
    #
    # Entries wait in conn.info until the transaction commits, then go in with one
    # multi-row INSERT just before the COMMIT: one statement per transaction instead of
    # one per statement, and the log's ids follow the order transactions committed in.
    # A rollback (or a rolled-back savepoint) drops what it undid.

    def _forget(self, conn: Connection) -> None:
        info = conn.info
        info.pop(_PENDING, None)
        info.pop(_MARKS, None)
        if info.pop(_SHIP, None) and self._drainer is not None:
            self._drainer.wake()

    def _mark(self, conn: Connection, name: str | None) -> None:
        # The event comes before the savepoint is named; savepoints nest, so a stack
        # of "entries pending before it" matches them.
        conn.info.setdefault(_MARKS, []).append(len(conn.info.get(_PENDING, ())))

    def _release(self, conn: Connection, name: str, context: Any) -> None:
        marks = conn.info.get(_MARKS)
        if marks:
            marks.pop()

    def _back_to(self, conn: Connection, name: str, context: Any) -> None:
        marks = conn.info.get(_MARKS)
        pending = conn.info.get(_PENDING)
        if marks:
            mark = marks.pop()
            if pending is not None:
                del pending[mark:]

    def _flush(self, conn: Connection) -> None:
        pending = conn.info.pop(_PENDING, None)
        conn.info.pop(_MARKS, None)
        if pending:
            self._write(conn, pending)
            self._written(conn)

    def _written(self, conn: Connection) -> None:
        """Entries were written just before ``conn`` commits: the drainer will be woken."""
        if self._drainer is not None:
            conn.info[_SHIP] = True

    def _write(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        conn.info[_BUSY] = True
        try:
            write_entries(conn, self.table, rows)
        finally:
            conn.info[_BUSY] = False

    # --- the cursor events ------------------------------------------------------------

    def _before(
        self,
        conn: Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        info = conn.info
        if info.get(_BUSY):
            return
        # The statement and parameters are kept from here: SQLAlchemy 2.0 reports an
        # "insertmanyvalues" batch to after_cursor_execute with the statement's template
        # and every row's parameters (its issue #13018), before_cursor_execute with the
        # batch as sent.
        info[_STARTED] = (_clock.utc_now(), time.perf_counter(), statement, parameters, executemany)

    def _after(
        self,
        conn: Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        info = conn.info
        if info.get(_BUSY):
            return
        started = info.pop(_STARTED, None)
        if started is None:
            return
        duration = time.perf_counter() - started[1]
        statement, parameters, executemany = started[2], started[3], started[4]
        kind = self._kinds.get(statement)
        if kind is None:
            kind = self._kind_of(statement)
        if not kind:
            return
        if kind == "select" and (
            self.statements == "writes" or (self.sample < 1.0 and random.random() >= self.sample)
        ):
            return
        rowcount = getattr(cursor, "rowcount", -1)
        # An "insertmanyvalues" batch is reported as an executemany, with one parameter
        # set for its multi-row VALUES: it is run (and replayed) as one statement.
        executemany = executemany and _is_batch(parameters)
        if parameters is None:
            parameters = ()
        if self.mask_columns:
            parameters = self._mask(_parameter_sets(parameters, executemany), context, executemany)
        dialect = conn.dialect
        pending = info.get(_PENDING)
        # A later statement of a transaction takes the id its first entry got.
        autocommit = False
        if pending:
            transaction_id = pending[-1][0]
        else:
            # Under AUTOCOMMIT each statement is a transaction of its own (no id).
            autocommit = _autocommit(conn)
            transaction_id = None if autocommit else _transaction_id(conn)
        who, why = _who(self.extra)
        # In ENTRY_COLUMNS order.
        row = (
            transaction_id,
            kind,
            f"{dialect.name}+{dialect.driver}",
            statement,
            encode_parameters(parameters, dialect.paramstyle),
            executemany,
            started[0],
            duration,
            rowcount if type(rowcount) is int and rowcount >= 0 else None,
            who,
            why,
            None if self.destination is None else str(uuid.uuid4()),
        )
        if pending is not None:
            pending.append(row)
        elif autocommit:
            self._write(conn, [row])  # committed with the statement
            if self._drainer is not None:
                self._drainer.wake()
        else:
            info[_PENDING] = [row]

    def _kind_of(self, statement: str) -> str:
        """Return the kind of a statement to log, or ``""`` (transaction control, the log's own)."""
        kind = statement_kind(statement)
        if kind == "control" or self._own.search(statement):
            kind = ""
        if len(self._kinds) >= _KIND_CACHE:
            self._kinds.clear()
        self._kinds[statement] = kind
        return kind

    def _mask(self, values: Any, context: Any, many: bool) -> Any:
        masked = self.mask_columns

        def hidden(name: str) -> bool:
            return name in masked or _BIND_SUFFIX.sub("", name) in masked

        def one_set(one: Any) -> Any:
            if isinstance(one, dict):
                return {k: (MASK if hidden(str(k)) else v) for k, v in one.items()}
            names = _positions(context)
            if not names:
                return one
            return [
                MASK if hidden(names[index % len(names)]) else value
                for index, value in enumerate(one)
            ]

        if many:
            return [one_set(one) for one in values]
        return one_set(values)


def _autocommit(conn: Connection) -> bool:
    """Tell whether each statement commits on its own (no COMMIT will come to write at)."""
    level = conn.get_execution_options().get("isolation_level")
    if level is None:
        # create_engine(isolation_level=...) is kept here (SQLAlchemy 2.0 and 2.1).
        level = getattr(conn.dialect, "_on_connect_isolation_level", None)
    return level == "AUTOCOMMIT"


def _positions(context: Any) -> list[str]:
    compiled = getattr(context, "compiled", None)
    names = getattr(compiled, "positiontup", None)
    return [str(name) for name in names] if names else []


def _is_batch(parameters: Any) -> bool:
    """Tell a batch of parameter sets from one set (its first item says which)."""
    if type(parameters) not in (list, tuple) or not parameters:
        return False
    return isinstance(parameters[0], (Mapping, list, tuple))


def _parameter_sets(parameters: Any, executemany: bool) -> Any:
    if executemany:
        return [_one_set(one) for one in parameters or ()]
    return _one_set(parameters)


def _one_set(parameters: Any) -> Any:
    if parameters is None:
        return []
    if isinstance(parameters, Mapping):
        return dict(parameters)
    return list(parameters)


def _transaction_id(conn: Connection) -> str | None:
    """Return the id of the connection's database transaction (``None``: autocommit)."""
    transaction = conn.get_transaction()
    if transaction is None:
        return None
    current = conn.info.get(_TRANSACTION)
    # The transaction object itself is kept, so a later one is never taken for it.
    if current is not None and current[0] is transaction:
        same: str = current[1]
        return same
    new = str(uuid.uuid4())
    conn.info[_TRANSACTION] = (transaction, new)
    return new


def _who(
    extra: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None,
) -> tuple[Any, str | None]:
    """Return the entry's ``changed_by`` and ``extra`` (JSON) from the audit context."""
    context = current_context()
    user = context.user_id
    if isinstance(user, _Unset):
        user = get_config().current_user_id() if has_config() else None
    stored = context.stored_extra() or {}
    more = extra() if callable(extra) else extra
    if more:
        stored["extra"] = {**stored.get("extra", {}), **more}
    return user, json.dumps(stored, separators=(",", ":"), default=str) if stored else None


def log_queries(
    *,
    of: Engine | Connection,
    to: Engine | None = None,
    extra: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
    statements: str = "writes",
    mask_columns: Iterable[str] = (),
    sample: float = 1.0,
    drain: str = "background",
    drain_interval: float = 5.0,
) -> QueryLog:
    """Log every statement run on ``of`` into the query log table, in the statement's transaction.

    Each entry keeps the statement's kind, dialect, SQL, parameters (encoded like change
    values; an executemany keeps its batch), start time (UTC), duration, row count,
    the id of its database transaction, and the user, reason and extra metadata of the
    :func:`~sqlaudit.audit_context` in force. The entry is written on the same
    connection, inside the statement's transaction: what rolls back leaves no entry
    (a rolled-back savepoint drops its entries too). Statements on the log table itself
    and transaction control (``BEGIN``, ``SAVEPOINT``...) are never logged.

    Args:
        of: The engine (or one connection) whose statements are logged. The log table,
            ``sqlaudit_query_log``, is created there if missing. For an ``AsyncEngine``,
            await the twin, :func:`sqlaudit.asyncio.log_queries`, instead.
        to: Another database to keep the log in (an Engine). Entries are then written
            to an outbox table, ``sqlaudit_query_outbox``, in ``of``'s database, inside each
            transaction, and delivered once committed to ``sqlaudit_query_log`` on ``to``
            (created there if missing), exactly once each (see ``drain``).
            ``of`` must be an Engine.
        extra: Metadata added to every entry (a mapping, or a function returning one).
        statements: ``"writes"`` (everything but reads) or ``"all"``.
        sample: With ``statements="all"``, the share of reads logged, drawn at random
            per read (``0.01``: one in a hundred); writes are always logged.
        mask_columns: Column (bind parameter) names whose values are stored as
            ``masked:``; such an entry is refused by replay. Raw SQL with positional
            parameters cannot be masked by name.
        drain: With ``to=``, who delivers the outbox. ``"background"``: a daemon thread,
            woken once a transaction that logged statements has committed (when its
            connection goes back to the pool or begins its next transaction), and every
            ``drain_interval`` seconds; the committing thread only wakes it, and a failed
            delivery (``to`` down) is logged on the ``sqlaudit.querylog`` logger, never
            raised, and retried. ``"manual"``: only :meth:`QueryLog.drain` delivers.
        drain_interval: Seconds between the background drainer's deliveries when no
            commit wakes it: its retry delay while ``to`` is down.

    Returns:
        A :class:`QueryLog`; call its ``remove()`` to stop logging.

    Raises:
        RecoveryError: ``of`` is not an engine or connection (an ``AsyncEngine``, or its
            sync side outside ``run_sync``, is refused, naming the async twin), ``to`` is
            not an engine (or given with a connection as ``of``, or with an async
            driver), ``statements`` is neither ``"writes"`` nor ``"all"``, ``drain``
            neither ``"background"`` nor ``"manual"``, or ``drain_interval`` is not a
            positive number.

    Known blind spots: the user and reason come from the ambient ``audit_context`` (or
    ``get_user_id_callback``), not from ``set_session_context``: the log sees connections,
    not Sessions; the transaction id is the log's own, not the change rows'. Values the
    database generates (sequence numbers, ``now()`` defaults) are generated again on
    replay; a sequence number consumed by a rolled-back insert is not, so keys generated
    after one may differ on replay.

    Example:
        >>> log = log_queries(of=engine, mask_columns=["password"])  # doctest: +SKIP
        >>> with Session(engine) as session:  # doctest: +SKIP
        ...     session.add(Customer(name="Ada")); session.commit()
        >>> log.remove()  # doctest: +SKIP
    """
    if _is_async(of):
        raise RecoveryError(
            f"log_queries(of=...) takes a synchronous Engine or Connection, not the "
            f"{type(of).__name__} {of!r}: on an AsyncEngine, use its twin, "
            "`await sqlaudit.asyncio.log_queries(of=engine)`."
        )
    if not isinstance(of, (Engine, Connection)):
        raise RecoveryError(
            f"log_queries(of=...) takes an Engine or a Connection, not {type(of).__name__} "
            f"{of!r}: pass create_engine(url)."
        )
    if _is_async(to):
        raise RecoveryError(
            f"log_queries(to=...) takes a synchronous Engine, not the {type(to).__name__} "
            f"{to!r}: pass create_engine(url) for the log database, or log an AsyncEngine "
            "with `await sqlaudit.asyncio.log_queries(of=engine, to=log_engine)`."
        )
    if to is not None and not isinstance(to, Engine):
        raise RecoveryError(
            f"log_queries(to=...) takes an Engine (the database to keep the log in), not "
            f"{type(to).__name__}: pass create_engine(url), or None for the same database."
        )
    if to is not None and not isinstance(of, Engine):
        raise RecoveryError(
            "log_queries(to=...) needs of= to be an Engine, since drain() opens connections "
            "of its own on it: pass the engine, not one connection."
        )
    if of.dialect.is_async and not _in_greenlet():
        # Creating the table would fail with MissingGreenlet (after the driver made a
        # coroutine it never awaits).
        raise RecoveryError(
            f"log_queries(of=...) got the sync side of an AsyncEngine ({of.engine.url.drivername})"
            " outside AsyncConnection.run_sync(), where its driver cannot do I/O: use "
            "`await sqlaudit.asyncio.log_queries(of=engine)`."
        )
    if to is not None and (of.dialect.is_async or to.dialect.is_async):
        # The drainer thread would open connections of an async driver outside any
        # event loop: the twin gives it a loop of its own.
        raise RecoveryError(
            "log_queries(to=...) cannot deliver through an async driver's engine "
            f"({(of if of.dialect.is_async else to).engine.url.drivername}); on an "
            "AsyncEngine, use `await sqlaudit.asyncio.log_queries(of=engine, to=log_engine)`."
        )
    check_options(statements, sample, mask_columns, drain, drain_interval)
    log = QueryLog(
        of,
        to,
        statements,
        extra,
        frozenset(mask_columns),
        float(sample),
        drain,
        float(drain_interval),
    )
    log.install()
    return log


def check_options(
    statements: str,
    sample: float,
    mask_columns: Iterable[str],
    drain: str,
    drain_interval: float,
) -> None:
    """Refuse the options of ``log_queries`` (sync or async) that are not valid, naming the fix."""
    if statements not in _STATEMENTS:
        raise RecoveryError(
            f"log_queries(statements={statements!r}): pass 'writes' (the default) or 'all'."
        )
    if isinstance(sample, bool) or not isinstance(sample, (int, float)) or not 0 <= sample <= 1:
        raise RecoveryError(
            f"log_queries(sample={sample!r}) takes the share of reads to log, a number from "
            "0 to 1 (0.01: one read in a hundred)."
        )
    if isinstance(mask_columns, str):
        raise RecoveryError(
            f"log_queries(mask_columns={mask_columns!r}) takes a list of column names: "
            f"pass [{mask_columns!r}]."
        )
    if drain not in _DRAINS:
        raise RecoveryError(
            f"log_queries(drain={drain!r}): pass 'background' (the default: a thread "
            "delivers after each commit) or 'manual' (you call log.drain())."
        )
    if (
        isinstance(drain_interval, bool)
        or not isinstance(drain_interval, (int, float))
        or not drain_interval > 0
    ):
        raise RecoveryError(
            f"log_queries(drain_interval={drain_interval!r}) takes seconds, a positive "
            "number (5: the background drainer retries every five seconds)."
        )


def _in_greenlet() -> bool:
    """Tell whether this runs inside SQLAlchemy's greenlet (``run_sync``), where async I/O works."""
    try:
        from sqlalchemy.util.concurrency import in_greenlet
    except ImportError:  # no greenlet: no async engine either
        return False
    return bool(in_greenlet())


def _is_async(bind: object) -> bool:
    """Tell an AsyncEngine or AsyncConnection (whose driver needs the event loop) from the rest."""
    try:
        from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
    except ImportError:  # no greenlet: nothing here can be async
        return False
    return isinstance(bind, (AsyncEngine, AsyncConnection))
