"""The query log and point-in-time recovery: log statements, replay them, rebuild tables.

Two logs make two kinds of recovery. The **query log** keeps every write statement
run on an engine (its SQL, typed parameters, transaction, time, and who and why from
:func:`~sqlaudit.audit_context`), written in the statement's own transaction, so a
rollback leaves no entry. :func:`replay` re-runs those statements, transaction by
transaction, on a restored backup::

    from sqlaudit.querylog import log_queries, rebuild_table, replay

    log = log_queries(of=engine)              # from now on, every write is logged
    ...                                        # (backup taken at `backup_time`)
    replay(engine, restored_engine, since=backup_time, until=mistake_time)

With ``log_queries(of=engine, to=log_engine)`` the log is kept in another database: each
entry goes to an outbox in the statement's transaction, and a background thread delivers
the committed ones after each commit, exactly once each, even across crashes and outages
of ``log_engine``. On an ``AsyncEngine``, await the twin,
:func:`sqlaudit.asyncio.log_queries`.

After a backup, :func:`trim_log` deletes the entries of the transactions it holds.

The **change log** (the field-level history sqlaudit keeps) rebuilds one tracked
table as it was at a moment, with no backup at all::

    rebuild_table(Customer, at=mistake_time, target=other_engine)

The tutorial, :doc:`/recovery`, walks through both; it is also a test.
"""

from sqlaudit.querylog._capture import QueryLog as QueryLog
from sqlaudit.querylog._capture import log_queries as log_queries
from sqlaudit.querylog._capture import statement_kind as statement_kind
from sqlaudit.querylog._rebuild import RebuildResult as RebuildResult
from sqlaudit.querylog._rebuild import rebuild_table as rebuild_table
from sqlaudit.querylog._replay import ReplayResult as ReplayResult
from sqlaudit.querylog._replay import read_log as read_log
from sqlaudit.querylog._replay import replay as replay
from sqlaudit.querylog._table import LogEntry as LogEntry
from sqlaudit.querylog._trim import trim_log as trim_log

__all__ = [
    "LogEntry",
    "QueryLog",
    "RebuildResult",
    "ReplayResult",
    "log_queries",
    "read_log",
    "rebuild_table",
    "replay",
    "statement_kind",
    "trim_log",
]
