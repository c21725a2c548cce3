"""Delivering the outbox of ``log_queries(to=...)``: one delivery, and the thread that runs them.

:func:`deliver` moves committed entries from the outbox on the source database to the
log table on the log database, batch by batch, oldest first:

1. read the oldest ``batch_size`` outbox rows on the source (a plain read, no lock);
2. on the log database, holding its *drain lock* (one delivery at a time per log
   database, whatever process runs it), insert the rows whose ``entry_key`` is not
   there yet, in outbox order, and commit;
3. delete the batch from the outbox.

A delivery that dies after step 2 leaves rows that step 2 of the next one finds
delivered: each entry reaches the log once. Two deliveries running at once take the
lock in turn, and the second finds the first one's rows delivered. A batch holds every
entry committed (when it is read) with a smaller outbox id than its newest one, so an
entry never reaches the log before one whose transaction it waited for.

:class:`Drainer` is the background thread of ``drain="background"``: woken once a
transaction that wrote entries has committed, and every ``interval`` seconds besides
(a retry while the log database is down, and the entries a dead process left behind).
It never raises into the application: a failed delivery is logged on the
``sqlaudit.querylog`` logger and retried.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

from sqlalchemy import Table, delete, select
from sqlalchemy.engine import Connection, Engine

from sqlaudit.exceptions import RecoveryError
from sqlaudit.querylog._table import ENTRY_COLUMNS, build_log_table, write_entries

__all__ = ["Drainer", "deliver", "logger"]

logger: Final = logging.getLogger("sqlaudit.querylog")

# PostgreSQL's advisory lock key for "a delivery into this database's query log":
# the bytes of "SQLAUDIT" as a positive bigint.
_PG_LOCK: Final = int.from_bytes(b"SQLAUDIT", "big")
# MySQL's lock names are server-wide: the database's name (hashed, to fit 64 characters)
# keeps two log databases on one server apart.
_MYSQL_LOCK: Final = "CONCAT('sqlaudit_query_log:', MD5(DATABASE()))"
_MYSQL_WAIT: Final = 60  # seconds to wait for another process's delivery to finish


def deliver(source: Engine, outbox: Table, destination: Engine, batch_size: int) -> int:
    """Move the outbox's committed entries to the log on ``destination``; return how many.

    See the module docstring for the steps and why an entry arrives once.
    """
    log = build_log_table()
    delivered = 0
    while True:
        with source.connect() as connection:
            rows = connection.execute(select(outbox).order_by(outbox.c.id).limit(batch_size)).all()
            connection.rollback()
        if not rows:
            return delivered
        with _drain_lock(destination) as connection, connection.begin():
            if connection.dialect.name == "sqlite":
                # SQLite's lock is the database's write lock, taken before the read.
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            present = set(
                connection.scalars(
                    select(log.c.entry_key).where(
                        log.c.entry_key.in_([row.entry_key for row in rows])
                    )
                )
            )
            fresh = [
                tuple(row._mapping[name] for name in ENTRY_COLUMNS)
                for row in rows
                if row.entry_key not in present
            ]
            if fresh:
                write_entries(connection, log, fresh)
        with source.begin() as connection:
            connection.execute(delete(outbox).where(outbox.c.id.in_([row.id for row in rows])))
        delivered += len(fresh)


@contextmanager
def _drain_lock(engine: Engine) -> Iterator[Connection]:
    """Yield a connection to ``engine`` that holds its drain lock, outside a transaction.

    PostgreSQL and MySQL take a session lock in a transaction of its own, so the
    delivery's transaction starts (and reads) after the previous delivery committed,
    whatever the isolation level. SQLite's is taken by the delivery (``BEGIN
    IMMEDIATE``).
    """
    with engine.connect() as connection:
        name = connection.dialect.name
        release = None
        if name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({_PG_LOCK})")
            release = f"SELECT pg_advisory_unlock({_PG_LOCK})"
        elif name in ("mysql", "mariadb"):
            taken = connection.exec_driver_sql(
                f"SELECT GET_LOCK({_MYSQL_LOCK}, {_MYSQL_WAIT})"
            ).scalar()
            if taken != 1:
                connection.rollback()
                raise RecoveryError(
                    f"another delivery of the query log held its lock for {_MYSQL_WAIT} "
                    "seconds; this one gives up and the entries stay in the outbox."
                )
            release = f"SELECT RELEASE_LOCK({_MYSQL_LOCK})"
        connection.commit()
        try:
            yield connection
        finally:
            if release is not None:
                try:
                    connection.rollback()
                    connection.exec_driver_sql(release)
                    connection.commit()
                except Exception:
                    # Closing the database session is what surely frees its lock.
                    connection.invalidate()
                    raise


class Drainer:
    """The background thread that runs one log's deliveries (``drain="background"``)."""

    def __init__(self, deliver: Callable[[], int], destination: Engine, interval: float) -> None:
        self._deliver = deliver
        self._destination = destination
        self._interval = interval
        self._wake = threading.Event()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stopping = False
        self._failing = False

    def start(self) -> None:
        """Start the thread (in this process: a forked child starts its own at its next wake)."""
        with self._guard:
            if self._stopping:
                return
            thread = self._thread
            if thread is not None and self._pid == os.getpid() and thread.is_alive():
                return
            self._pid = os.getpid()
            self._wake = threading.Event()
            self._thread = threading.Thread(
                target=self._run, name="sqlaudit-query-log-drain", daemon=True
            )
            self._thread.start()
        atexit.register(self.stop)

    def wake(self) -> None:
        """Ask for a delivery soon (called once a transaction that wrote entries committed)."""
        if self._pid != os.getpid():
            self.start()
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Deliver what is committed, then stop the thread (waits ``timeout`` seconds at most)."""
        atexit.unregister(self.stop)
        with self._guard:
            self._stopping = True
            thread = self._thread if self._pid == os.getpid() else None
        self._wake.set()
        if thread is None or not thread.is_alive():
            # No thread here (a forked child that never woke one): deliver from this one.
            self.run_once()
        elif thread is not threading.current_thread():
            thread.join(timeout)

    def run_once(self) -> int | None:
        """Run one delivery; return how many entries it delivered, or ``None`` when it failed."""
        try:
            delivered = self._deliver()
        except Exception:
            if not self._failing:
                logger.warning(
                    "The query log could not deliver its outbox to %s; the entries stay "
                    "in the outbox and delivery is retried every %s seconds.",
                    self._destination.url.render_as_string(hide_password=True),
                    self._interval,
                    exc_info=True,
                )
            else:
                logger.debug("Query log delivery failed again.", exc_info=True)
            self._failing = True
            return None
        if self._failing:
            logger.info("The query log delivers again: %d entries delivered.", delivered)
        self._failing = False
        return delivered

    def _run(self) -> None:
        wake = self._wake
        while True:
            # Cleared before the delivery: a wake during it brings another one.
            wake.clear()
            stopping = self._stopping
            self.run_once()
            if stopping:
                return
            # Once stop() is called, one more delivery: of what committed before it.
            wake.wait(self._interval)
