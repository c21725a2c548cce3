"""Telling database triggers who is writing, why, and in which transaction.

Database capture (``capture="database"``) records changes with triggers, which
cannot see Python's context. Before a Session's first write to a database-captured
model in a transaction, :func:`prepare` hands the triggers the transaction id, the
user and the extra context with one statement, and again only when they change:

- PostgreSQL: ``set_config('sqlaudit.transaction_id', ..., true)`` and
  ``set_config('sqlaudit.context', ..., true)``: transaction-local, gone at commit or
  rollback, so a pooled connection (PgBouncer in transaction mode included) never
  carries them into another transaction;
- MySQL/MariaDB: session variables (``@sqlaudit_transaction_id``,
  ``@sqlaudit_context``, ``@sqlaudit_changed_by``, ``@sqlaudit_extra``), cleared
  when any SQLAlchemy connection commits or rolls back and when the pool resets a
  connection (:func:`clear`);
- SQLite: one row of a context table next to the change table (SQLite has a single
  writer at a time), written inside the transaction, so a rollback takes it back,
  and deleted before commit.

It also makes sure, once per engine and model, that the model's triggers are
installed on that database: a database-captured write to a table without them
would record nothing, so it is refused (:class:`~sqlaudit.exceptions.UnauditedWriteError`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from sqlaudit import _writer
from sqlaudit._registry import TrackedModel
from sqlaudit.config import get_config
from sqlaudit.exceptions import UnauditedWriteError

__all__ = [
    "MYSQL_CLEAR",
    "clear",
    "context_table_name",
    "prepare",
    "prepare_for",
    "ready",
    "verified",
]

_KEY = "sqlaudit.dbcontext"
_MYSQL = ("mysql", "mariadb")
MYSQL_CLEAR = (
    "SET @sqlaudit_transaction_id = NULL, @sqlaudit_context = NULL, "
    "@sqlaudit_changed_by = NULL, @sqlaudit_extra = NULL"
)

# Engine -> the models whose triggers were found installed on its database.
_verified: WeakKeyDictionary[Engine, set[str]] = WeakKeyDictionary()


def context_table_name(change_table_name: str) -> str:
    """Return the name of SQLite's context table next to the change table of that name."""
    return f"{change_table_name}_context"


def verified(engine: Engine, tracked: TrackedModel) -> None:
    """Remember that ``tracked``'s triggers are installed on ``engine``'s database."""
    _verified.setdefault(engine, set()).add(tracked.table_name)


def forget(engine: Engine) -> None:
    """Forget what was verified on ``engine`` (its triggers were dropped or replaced)."""
    _verified.pop(engine, None)


def _check_installed(connection: Connection, models: Iterable[TrackedModel]) -> None:
    engine = connection.engine
    known = _verified.setdefault(engine, set())
    missing = [tracked for tracked in models if tracked.table_name not in known]
    if not missing:
        return
    from sqlaudit import triggers  # it builds on this module

    for tracked in missing:
        problems = triggers.check_model(connection, tracked)
        if problems:
            raise UnauditedWriteError(
                f"{tracked.model.__name__} is captured by database triggers, but on this "
                f"database {problems[0].message} Its change would be recorded wrongly or "
                "not at all, so it is refused. Run sqlaudit.install_triggers(engine) (or the "
                "Alembic operation) after the tables exist."
            )
        known.add(tracked.table_name)


def ready(connection: Connection, tracked: TrackedModel) -> bool:
    """Tell whether the context is in place on ``connection`` for a write to ``tracked``."""
    current = connection.info.get(_KEY)
    if current is None:
        return False
    scope = current[0]
    if scope is None or not scope.is_active:
        return False
    if scope is not (connection.get_nested_transaction() or connection.get_transaction()):
        return False
    return tracked.table_name in _verified.get(connection.engine, ())


def prepare(
    session: Session,
    connection: Connection,
    author: _writer.Author,
    models: Iterable[TrackedModel] = (),
) -> None:
    """Hand the triggers the context of the session's writes on ``connection``.

    One statement, at the first write of a transaction and whenever the user or
    the extra context changes within it; nothing when they are already in place. A
    transaction id a trigger already drew in this transaction is kept.

    Raises:
        UnauditedWriteError: a model's triggers are missing or out of date.
    """
    _check_installed(connection, models)
    transaction_id = _writer.transaction_id(session, connection)
    extra = json.dumps(author.extra, separators=(",", ":")) if author.extra else None
    wanted = (transaction_id, author.changed_by, extra)
    scope = connection.get_nested_transaction() or connection.get_transaction()
    current = connection.info.get(_KEY)
    in_place = current is not None and current[0] is scope and current[1] == wanted
    if in_place and scope is not None and scope.is_active:
        return
    dialect = connection.dialect.name
    if dialect == "postgresql":
        context = json.dumps(
            {"changed_by": author.changed_by, "extra": author.extra}, separators=(",", ":")
        )
        # A trigger may already have drawn this transaction's id (a write on the same
        # connection outside the Session's events): keep it, and make it the Session's.
        kept = connection.execute(
            text(
                "SELECT set_config('sqlaudit.transaction_id', COALESCE(NULLIF("
                "current_setting('sqlaudit.transaction_id', true), ''), :tx), true), "
                "set_config('sqlaudit.context', :ctx, true)"
            ),
            {"tx": transaction_id, "ctx": context},
        ).scalar_one()
        if kept != transaction_id:
            _writer.adopt_transaction_id(session, connection, kept)
            wanted = (kept, author.changed_by, extra)
    elif dialect in _MYSQL:
        connection.execute(
            text(
                "SET @sqlaudit_transaction_id = COALESCE(@sqlaudit_transaction_id, :tx), "
                "@sqlaudit_context = 1, "
                "@sqlaudit_changed_by = :by, @sqlaudit_extra = :extra"
            ),
            {"tx": transaction_id, "by": author.changed_by, "extra": extra},
        )
    elif dialect == "sqlite":
        table = _quote(context_table_name(author.config.table_name))
        connection.execute(
            text(
                f"INSERT OR REPLACE INTO {table} (id, transaction_id, changed_by, extra) "
                f"VALUES (1, COALESCE((SELECT transaction_id FROM {table} WHERE id = 1), :tx), "
                ":by, :extra)"
            ),
            {"tx": transaction_id, "by": author.changed_by, "extra": extra},
        )
    connection.info[_KEY] = (scope, wanted)


def prepare_for(session: Session, writes: Mapping[Any, TrackedModel]) -> None:
    """Hand the triggers the context of writes to these models, on each one's connection.

    ``writes``: ``{mapper: tracked model}``; the user and context are resolved once.

    Raises:
        UserRequiredError: ``require_user`` is on and no user is known.
        UnauditedWriteError: a model's triggers are missing or out of date.
    """
    if not writes:
        return
    author = _writer.resolve(session, {tracked.model for tracked in writes.values()})
    for mapper, tracked in writes.items():
        connection = session.connection(bind_arguments={"mapper": mapper})
        prepare(session, connection, author, [tracked])


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def clear(connection: Connection) -> None:
    """Take the context off ``connection`` before its transaction ends.

    Listened on every engine's ``commit`` and ``rollback`` while database capture is
    in use: MySQL/MariaDB session variables outlive transactions, and SQLite's
    context row would be committed. Runs on the DBAPI cursor, outside SQLAlchemy's
    statement events.
    """
    connection.info.pop(_KEY, None)
    dialect = connection.dialect.name
    if dialect in _MYSQL:
        cursor = connection.connection.cursor()
        try:
            cursor.execute(MYSQL_CLEAR)
        finally:
            cursor.close()
    elif dialect == "sqlite":
        try:
            config = get_config()
        except Exception:
            return
        table = _quote(context_table_name(config.table_name))
        cursor = connection.connection.cursor()
        try:
            # Read first: a DELETE would take SQLite's write lock even in a read-only
            # transaction.
            cursor.execute(f"SELECT 1 FROM {table} WHERE id = 1")
            if cursor.fetchone() is not None:
                cursor.execute(f"DELETE FROM {table} WHERE id = 1")
        except Exception:  # no context table: triggers are not installed here
            return
        finally:
            cursor.close()


def reset_dbapi(dbapi_connection: Any, dialect: str) -> None:
    """Clear MySQL/MariaDB context variables on a connection the pool resets."""
    if dialect in _MYSQL:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(MYSQL_CLEAR)
        finally:
            cursor.close()
