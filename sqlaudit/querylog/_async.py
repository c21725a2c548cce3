"""The query log on an ``AsyncEngine``: the twin of ``log_queries``, and its deliveries.

Capture is the sync code of :mod:`sqlaudit.querylog._capture`, unchanged: its listeners
are installed on ``engine.sync_engine`` and run inside SQLAlchemy's greenlet, where the
async driver's I/O is awaited for them, so an entry is written in its statement's
transaction as on a sync engine. What differs is where I/O may happen: the tables are
created through the async engine, and the outbox of ``to=`` is delivered by a
:class:`DeliveryLoop`. Imported by :mod:`sqlaudit.asyncio` only: it needs greenlet.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.util.concurrency import greenlet_spawn

from sqlaudit.exceptions import RecoveryError
from sqlaudit.querylog._capture import QueryLog, check_options
from sqlaudit.querylog._table import create_log_table

__all__ = ["AsyncQueryLog", "DeliveryLoop", "log_queries"]

R = TypeVar("R")


class DeliveryLoop:
    """Runs the deliveries of a log on an ``AsyncEngine``: in an event loop of their own.

    An async driver's connection (asyncpg, psycopg async, aiomysql, aiosqlite) belongs to
    the event loop that opened it, and the application's pool hands out connections
    opened on the application's loop: the drainer thread must not take them, nor run
    anything on that loop (it may be busy, blocked, or gone at exit). So deliveries run
    on an event loop of this object's own, in a thread of its own (started at the first
    delivery, stopped by :meth:`dispose`), on engines of its own made from the
    application's URLs (which keep the password). The delivery itself is the sync code,
    run in SQLAlchemy's greenlet (``greenlet_spawn``), so it takes the same path as a
    sync log's.

    The engines use ``NullPool``: each connection is opened for one step of a delivery
    and closed with it, so none is left open when the loop stops (at ``remove()``, or
    killed with the process), and none goes stale between deliveries. The price: a
    connection opened per step (three per batch), and the application engine's
    ``connect_args`` and pool events are not used (its URL is). A sync ``to`` engine is
    used as it is: its pool is thread-safe and bound to no loop.
    """

    def __init__(self, source: AsyncEngine, destination: AsyncEngine | Engine) -> None:
        self._source = create_async_engine(source.url, poolclass=NullPool)
        self._own_destination = (
            create_async_engine(destination.url, poolclass=NullPool)
            if isinstance(destination, AsyncEngine)
            else None
        )
        self._destination = (
            destination if self._own_destination is None else self._own_destination.sync_engine
        )
        self._guard = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._pending: set[Future[Any]] = set()

    def run(self, work: Callable[[Engine, Engine], R]) -> R:
        """Return ``work(source, destination)``, run on the loop; wait for it in this thread."""
        with self._guard:
            if self._loop is None or self._pid != os.getpid():
                # (A forked child has the loop but not its thread: it starts its own.)
                self._start()
            assert self._loop is not None
            coroutine = greenlet_spawn(work, self._source.sync_engine, self._destination)
            future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
            # What dispose() waits for (only changed under the guard).
            self._pending = {one for one in self._pending if not one.done()} | {future}
        return future.result()

    def _start(self) -> None:
        loop = asyncio.new_event_loop()
        loop.set_default_executor(_InlineExecutor())
        thread = threading.Thread(
            target=loop.run_forever, name="sqlaudit-query-log-loop", daemon=True
        )
        thread.start()
        self._loop, self._thread, self._pid = loop, thread, os.getpid()
        self._pending = set()

    def dispose(self) -> None:
        """Stop the loop and its thread, once the deliveries under way are done.

        A delivery asked for later starts them again.
        """
        with self._guard:
            loop, thread, pending = self._loop, self._thread, self._pending
            if self._pid != os.getpid():
                loop = None
            self._loop = self._thread = None
            self._pending = set()
        if loop is None or thread is None:
            return
        if wait(pending, timeout=30).not_done:
            # A delivery still waits on a database: its daemon thread is left to it.
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
        # NullPool holds no connection: no I/O, so no loop needed.
        self._source.sync_engine.dispose()
        if self._own_destination is not None:
            self._own_destination.sync_engine.dispose()


class _InlineExecutor(ThreadPoolExecutor):
    """Runs what the delivery loop hands its default executor in the loop's own thread.

    The drivers resolve host names there (``getaddrinfo``), and the last delivery may
    run at interpreter exit, after ``concurrent.futures`` has stopped taking work: a
    thread pool would refuse it. Blocking the log's own loop for a lookup costs nothing.
    """

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        future: Future[R] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to whoever awaits it, as a pool would
            future.set_exception(exc)
        return future


@dataclass(frozen=True, eq=False)
class AsyncQueryLog:
    """A query log on an ``AsyncEngine``, from :func:`sqlaudit.asyncio.log_queries`.

    The twin of :class:`~sqlaudit.querylog.QueryLog`: :meth:`drain` and :meth:`remove`
    are awaited, and never block the event loop: the delivery runs on the log's own
    loop, in its own thread, and is waited for in a worker thread. (``sync_log.drain()``
    works from any thread too, blocking it.)

    Attributes:
        sync_log: The :class:`~sqlaudit.querylog.QueryLog` whose listeners are on the
            engine's ``sync_engine``.

    Example:
        >>> log = await log_queries(of=engine, to=log_engine)  # doctest: +SKIP
        >>> await log.remove()  # doctest: +SKIP
    """

    sync_log: QueryLog

    async def drain(self, *, batch_size: int = 1000) -> int:
        """Deliver the committed entries of the outbox to the ``to`` database, now.

        The same delivery as :meth:`QueryLog.drain <sqlaudit.querylog.QueryLog.drain>`
        (in order, exactly once, under the log database's lock), run on the log's own
        event loop, on connections of its own, and awaited without blocking this one.

        Returns:
            How many entries were delivered.

        Raises:
            RecoveryError: the log was made without ``to=``.
            sqlalchemy.exc.SQLAlchemyError: either database failed; what was not
                delivered stays in the outbox.

        Example:
            >>> log = await log_queries(of=engine, to=log_engine, drain="manual")  # doctest: +SKIP
            >>> await log.drain()  # doctest: +SKIP
            3
        """
        return await asyncio.to_thread(self.sync_log.drain, batch_size=batch_size)

    async def remove(self) -> None:
        """Stop logging; with ``to=``, deliver what is committed and stop the drainer.

        As :meth:`QueryLog.remove <sqlaudit.querylog.QueryLog.remove>`; the last delivery
        is awaited in a worker thread.

        Example:
            >>> await log.remove()  # doctest: +SKIP
        """
        # The listeners are removed here, in the loop's thread, where the engine is used.
        self.sync_log._unlisten()
        await asyncio.to_thread(self.sync_log._stop)


async def log_queries(
    *,
    of: AsyncEngine,
    to: AsyncEngine | Engine | None = None,
    extra: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
    statements: str = "writes",
    mask_columns: Iterable[str] = (),
    sample: float = 1.0,
    drain: str = "background",
    drain_interval: float = 5.0,
) -> AsyncQueryLog:
    """Log every statement run on an ``AsyncEngine`` (async twin of ``log_queries``).

    Takes the same options as :func:`sqlaudit.querylog.log_queries`, and logs the
    same way: each entry is written in its statement's transaction (through an
    ``AsyncSession``, an ``AsyncConnection``...), so what rolls back leaves none. The
    log table (or, with ``to=``, the outbox) is created through ``of``, and with ``to=``
    the log table there, through ``to``.

    Args:
        of: The async engine whose statements are logged.
        to: Another database to keep the log in: an ``AsyncEngine`` or an ``Engine``.
            The background drainer thread, and :meth:`AsyncQueryLog.drain`, deliver in an
            event loop of their own, on connections of their own opened from ``of``'s
            (and an async ``to``'s) URL and closed after each step, never on the
            application's pooled connections (they belong to its event loop).
        extra: See :func:`sqlaudit.querylog.log_queries`, as for the options below.
        statements: ``"writes"`` or ``"all"``.
        mask_columns: Bind parameter names whose values are stored as ``masked:``.
        sample: With ``statements="all"``, the share of reads logged.
        drain: With ``to=``, ``"background"`` (a thread) or ``"manual"``
            (``await log.drain()``).
        drain_interval: Seconds between the background drainer's deliveries.

    Returns:
        An :class:`AsyncQueryLog`; ``await log.remove()`` stops logging.

    Raises:
        RecoveryError: ``of`` is not an ``AsyncEngine``, ``to`` is not an engine, or an
            option is not valid (as for the sync function).

    Known blind spots: those of the sync function; and the drainer connects with the
    URLs only, without the engine's ``connect_args`` (an SSL context, say). An
    in-memory SQLite database cannot be drained: the drainer's connection opens
    another one.

    Example:
        >>> from sqlaudit.asyncio import log_queries  # doctest: +SKIP
        >>> log = await log_queries(of=async_engine, to=log_engine)  # doctest: +SKIP
        >>> async with AsyncSession(async_engine) as session:  # doctest: +SKIP
        ...     session.add(Customer(name="Ada")); await session.commit()
        >>> await log.remove()  # doctest: +SKIP
    """
    if not isinstance(of, AsyncEngine):
        raise RecoveryError(
            f"sqlaudit.asyncio.log_queries(of=...) takes an AsyncEngine, not "
            f"{type(of).__name__} {of!r}: pass create_async_engine(url), or log a sync "
            "Engine with sqlaudit.querylog.log_queries(of=engine)."
        )
    if to is not None and not isinstance(to, (AsyncEngine, Engine)):
        raise RecoveryError(
            f"sqlaudit.asyncio.log_queries(to=...) takes an AsyncEngine or an Engine (the "
            f"database to keep the log in), not {type(to).__name__}: pass "
            "create_async_engine(url), or None for the same database."
        )
    check_options(statements, sample, mask_columns, drain, drain_interval)
    log = QueryLog(
        of.sync_engine,
        to.sync_engine if isinstance(to, AsyncEngine) else to,
        statements,
        extra,
        frozenset(mask_columns),
        float(sample),
        drain,
        float(drain_interval),
        delivery_loop=None if to is None else DeliveryLoop(of, to),
    )
    async with of.begin() as connection:
        await connection.run_sync(lambda sync: create_log_table(log.table, sync))
    if to is not None:
        try:
            if isinstance(to, AsyncEngine):
                async with to.begin() as connection:
                    await connection.run_sync(log._create_log_table)
            else:
                await asyncio.to_thread(log._create_log_table)
        except Exception:
            if drain != "background":
                raise
            # The log database is down: the application starts all the same; the
            # drainer's first delivery (which creates the table) reports the failure.
    log._listen()
    return AsyncQueryLog(log)
