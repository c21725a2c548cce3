"""The append-only guard: the change table refuses UPDATE and DELETE, except from prune and erase.

Anchors (:func:`~sqlaudit.ops.anchor_changes`) detect an edit after the fact; the guard
stops one before it happens. Installed on a database, it makes the database itself
refuse every ``UPDATE`` and ``DELETE`` of change rows (and ``TRUNCATE`` on PostgreSQL)
that does not come from :func:`~sqlaudit.ops.prune` or :func:`~sqlaudit.ops.erase`,
whoever sends it: the application, a script, a migration, a console::

    from sqlaudit import check_guard, install_guard

    install_guard(engine)             # idempotent: run it at every deploy
    assert check_guard(engine) == []

How each database does it:

- **PostgreSQL**: a ``BEFORE UPDATE OR DELETE`` row trigger (cloned by PostgreSQL into
  every partition of a partitioned change table) and a ``BEFORE TRUNCATE`` statement
  trigger, sharing one function that raises (SQLSTATE ``42501``) unless the
  transaction-local setting ``sqlaudit.maintenance`` is ``on``. Prune and erase set it
  (``set_config(..., true)``) around their own statements and clear it after; being
  transaction-local, it never outlives the transaction, even when one fails.
- **MySQL/MariaDB**: ``BEFORE UPDATE`` and ``BEFORE DELETE`` row triggers that
  ``SIGNAL SQLSTATE '45000'`` unless the connection's user variable
  ``@sqlaudit_maintenance`` is 1. Prune and erase set it around their own statements
  and always reset it, on error too; a connection whose reset failed is invalidated,
  never returned to the pool with the guard open. ``TRUNCATE`` fires no trigger there.
- **SQLite**: ``BEFORE UPDATE`` and ``BEFORE DELETE`` triggers that ``RAISE(ABORT)``
  unless the table ``<change table>_maintenance`` has a row. Prune and erase insert
  one in their transaction and delete it before they return; a rollback removes it
  too, and SQLite's single writer means no other connection ever sees it.

The refusal is the database's error, wrapped by SQLAlchemy in a
:class:`~sqlalchemy.exc.DBAPIError` whose message starts with ``sqlaudit guard:`` and
names the table, such as ``sqlaudit guard: sqlaudit_changes is append-only, DELETE
refused; use sqlaudit.prune() or sqlaudit.erase()``.

The guard keeps honest mistakes and careless tools away from the trail; it is not an
access control: someone who holds the application's credentials can set the same
switch, or drop the triggers. Against them, use grants (the application's database
user gets ``INSERT`` and ``SELECT`` only on the change table; prune and erase run as
another user) and anchors with a key.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Table, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection, Engine

from sqlaudit import _schema
from sqlaudit._sql_codec import literal
from sqlaudit._triggers import object_name
from sqlaudit.config import get_config, has_config
from sqlaudit.exceptions import ConfigurationError

__all__ = [
    "check_guard",
    "create_guard",
    "drop_guard",
    "has_guard_triggers",
    "install_guard",
    "maintenance",
    "marker_table_name",
    "message",
]

Bind = Engine | Connection

_MYSQL = ("mysql", "mariadb")
# Written into every guard trigger: one of another version is reported by check_guard().
_MARK = "sqlaudit guard 1"
_SETTING = "sqlaudit.maintenance"
_VARIABLE = "@sqlaudit_maintenance"
# MySQL cuts a SIGNAL's MESSAGE_TEXT at 128 characters.
_MESSAGE_LIMIT = 128


@contextmanager
def _begin(bind: Bind) -> Iterator[Connection]:
    if isinstance(bind, Engine):
        with bind.begin() as connection:
            yield connection
    else:
        yield bind


def _change_table(table_name: str | None, table_schema: str | None) -> Table:
    """Return the change table named, else the configured one, else ``sqlaudit_changes``."""
    if table_name is None and table_schema is None and has_config():
        return get_config().table
    return _schema.build_change_table(table_name or "sqlaudit_changes", table_schema)


def _check_dialect(connection: Connection, what: str) -> str:
    name = connection.dialect.name
    if name not in ("postgresql", "sqlite", *_MYSQL):
        raise ConfigurationError(
            f"{what}() supports PostgreSQL, MySQL, MariaDB and SQLite, not {name}; on "
            f"{name}, grant the application's user INSERT and SELECT only on the change table."
        )
    return name


def _quote(connection: Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote(name)


def _qualified(connection: Connection, table: Table, name: str) -> str:
    """Return ``name`` quoted, in ``table``'s schema."""
    quoted = _quote(connection, name)
    if table.schema is None:
        return quoted
    return f"{connection.dialect.identifier_preparer.quote_schema(table.schema)}.{quoted}"


def _name(table: Table, suffix: str) -> str:
    """Return the name of one of ``table``'s guard objects (``sqlaudit_<table>_<suffix>``)."""
    return object_name(table.name, table.fullname, suffix, 63)


def _triggers(dialect: str, table: Table) -> dict[str, str]:
    """Return the guard's trigger names, by the operations each refuses."""
    if dialect == "postgresql":
        return {
            "UPDATE and DELETE": _name(table, "guard"),
            "TRUNCATE": _name(table, "guard_truncate"),
        }
    return {"UPDATE": _name(table, "guard_update"), "DELETE": _name(table, "guard_delete")}


def marker_table_name(table: Table) -> str:
    """Return SQLite's maintenance table of ``table``: a row there opens the guard.

    Example:
        >>> marker_table_name(_schema.build_change_table("sqlaudit_changes", None))
        'sqlaudit_changes_maintenance'
    """
    return f"{table.name}_maintenance"


def message(table: Table, operation: str) -> str:
    """Return what the guard says when it refuses ``operation`` on ``table``.

    Example:
        >>> text = message(_schema.build_change_table("sqlaudit_changes", None), "DELETE")
        >>> text.startswith("sqlaudit guard: sqlaudit_changes is append-only, DELETE refused; ")
        True
        >>> text.endswith("use sqlaudit.prune() or sqlaudit.erase()")
        True
    """
    head, tail = "sqlaudit guard: ", f" is append-only, {operation} refused; "
    advice = "use sqlaudit.prune() or sqlaudit.erase()"
    room = _MESSAGE_LIMIT - len(head) - len(tail) - len(advice)
    name = table.name if len(table.name) <= room else table.name[: room - 3] + "..."
    return f"{head}{name}{tail}{advice}"


def _create_sql(connection: Connection, dialect: str, table: Table) -> list[str]:
    target = _qualified(connection, table, table.name)
    if dialect == "sqlite":  # a trigger names its table unqualified, in its own schema
        target = _quote(connection, table.name)
    names = _triggers(dialect, table)
    if dialect == "postgresql":
        function = _qualified(connection, table, _name(table, "guard"))
        rows, truncate = (_quote(connection, name) for name in names.values())
        refused = literal(message(table, "%"))
        # Row-level for UPDATE and DELETE: PostgreSQL clones row triggers into every
        # partition of a partitioned change table, present and future, so a statement
        # sent to one partition directly is refused too. A BEFORE ROW trigger must
        # hand the row back for the statement to go on.
        return [
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql "
            f"AS $sqlaudit$\nBEGIN -- {_MARK}\n"
            f"    IF coalesce(current_setting('{_SETTING}', true), '') <> 'on' THEN\n"
            f"        RAISE EXCEPTION {refused}, TG_OP USING ERRCODE = 'insufficient_privilege',\n"
            "            HINT = 'Change rows are deleted by sqlaudit.prune() and rewritten by "
            "sqlaudit.erase(); sqlaudit.drop_guard() removes the guard.';\n"
            "    END IF;\n"
            "    IF TG_LEVEL = 'ROW' THEN\n"
            "        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;\n"
            "        RETURN NEW;\n"
            "    END IF;\n"
            "    RETURN NULL;\nEND\n$sqlaudit$",
            f"DROP TRIGGER IF EXISTS {rows} ON {target}",
            f"DROP TRIGGER IF EXISTS {truncate} ON {target}",
            f"CREATE TRIGGER {rows} BEFORE UPDATE OR DELETE ON {target} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()",
            f"CREATE TRIGGER {truncate} BEFORE TRUNCATE ON {target} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
        ]
    statements = []
    if dialect == "sqlite":
        marker = _qualified(connection, table, marker_table_name(table))
        statements.append(f"CREATE TABLE IF NOT EXISTS {marker} (id INTEGER PRIMARY KEY)")
    for operation, trigger in names.items():
        name = _qualified(connection, table, trigger)
        refused = literal(message(table, operation))
        statements.append(f"DROP TRIGGER IF EXISTS {name}")
        if dialect == "sqlite":
            unmarked = f"NOT EXISTS (SELECT 1 FROM {_quote(connection, marker_table_name(table))})"
            statements.append(
                f"CREATE TRIGGER {name} BEFORE {operation} ON {target} FOR EACH ROW "
                f"WHEN {unmarked} BEGIN -- {_MARK}\nSELECT RAISE(ABORT, {refused}); END"
            )
        else:
            statements.append(
                f"CREATE TRIGGER {name} BEFORE {operation} ON {target} FOR EACH ROW "
                f"BEGIN /* {_MARK} */ IF NOT ({_VARIABLE} <=> 1) THEN "
                f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = {refused}; END IF; END"
            )
    return statements


def create_guard(connection: Connection, table: Table) -> None:
    """Create (or replace) the guard of ``table``, which exists, in ``connection``'s transaction."""
    dialect = _check_dialect(connection, "install_guard")
    for statement in _create_sql(connection, dialect, table):
        connection.exec_driver_sql(_escape(statement, connection))


def has_guard_triggers(connection: Connection, table: Table) -> bool:
    """Return whether any of the guard's triggers is on ``table``."""
    installed = _installed(connection, connection.dialect.name, table)
    return any(name in installed for name in _triggers(connection.dialect.name, table).values())


def _drop_sql(connection: Connection, dialect: str, table: Table) -> list[str]:
    target = _qualified(connection, table, table.name)
    names = list(_triggers(dialect, table).values())
    if dialect == "postgresql":
        function = _qualified(connection, table, _name(table, "guard"))
        return [
            *(f"DROP TRIGGER IF EXISTS {_quote(connection, name)} ON {target}" for name in names),
            f"DROP FUNCTION IF EXISTS {function}()",
        ]
    statements = [f"DROP TRIGGER IF EXISTS {_qualified(connection, table, name)}" for name in names]
    if dialect == "sqlite":
        marker = _qualified(connection, table, marker_table_name(table))
        statements.append(f"DROP TABLE IF EXISTS {marker}")
    return statements


def _escape(statement: str, connection: Connection) -> str:
    # exec_driver_sql hands the text to the driver, whose paramstyle may treat "%".
    if connection.dialect.paramstyle in ("format", "pyformat"):
        return statement.replace("%", "%%")
    return statement


def install_guard(
    bind: Bind, *, table_name: str | None = None, table_schema: str | None = None
) -> None:
    """Make the change table refuse UPDATE and DELETE except from prune and erase (idempotent).

    Creates the change table first if it is missing. Running it again replaces the
    guard with the current one; on MySQL/MariaDB the triggers are dropped and created
    again, so the table is unguarded for that moment.

    Args:
        bind: An engine (its own transaction) or a connection (the caller's; commit it).
        table_name: The change table; default: the configured one
            (:func:`~sqlaudit.set_config`), else ``sqlaudit_changes``.
        table_schema: Its schema, likewise.

    Raises:
        ConfigurationError: a database other than PostgreSQL, MySQL, MariaDB and SQLite.

    Example:
        >>> install_guard(engine)  # doctest: +SKIP
        >>> with engine.begin() as connection:  # doctest: +SKIP
        ...     connection.execute(text("DELETE FROM sqlaudit_changes"))
        Traceback (most recent call last):
        sqlalchemy.exc.ProgrammingError: ... sqlaudit guard: sqlaudit_changes is append-only, ...
    """
    table = _change_table(table_name, table_schema)
    with _begin(bind) as connection:
        _check_dialect(connection, "install_guard")
        _schema.create_change_table(table, connection)
        create_guard(connection, table)


def drop_guard(
    bind: Bind, *, table_name: str | None = None, table_schema: str | None = None
) -> None:
    """Remove the guard of :func:`install_guard` (nothing happens where there is none).

    Args:
        bind: An engine (its own transaction) or a connection (the caller's; commit it).
        table_name: The change table; default: the configured one, else ``sqlaudit_changes``.
        table_schema: Its schema, likewise.

    Example:
        >>> drop_guard(engine)  # doctest: +SKIP
    """
    table = _change_table(table_name, table_schema)
    with _begin(bind) as connection:
        dialect = _check_dialect(connection, "drop_guard")
        for statement in _drop_sql(connection, dialect, table):
            connection.exec_driver_sql(statement)


def _installed(connection: Connection, dialect: str, table: Table) -> dict[str, str]:
    """Return the change table's triggers as (name, text) pairs."""
    if dialect == "postgresql":
        schema = literal(table.schema) if table.schema else "current_schema()"
        query = (
            "SELECT t.tgname, p.prosrc FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace s ON s.oid = c.relnamespace JOIN pg_proc p ON p.oid = t.tgfoid "
            f"WHERE NOT t.tgisinternal AND c.relname = {literal(table.name)} "
            f"AND s.nspname = {schema}"
        )
    elif dialect in _MYSQL:
        schema = literal(table.schema) if table.schema else "DATABASE()"
        query = (
            "SELECT TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS "
            f"WHERE EVENT_OBJECT_SCHEMA = {schema} AND EVENT_OBJECT_TABLE = {literal(table.name)}"
        )
    else:
        master = "sqlite_master"
        if table.schema is not None:
            master = f"{_quote(connection, table.schema)}.sqlite_master"
        query = (
            f"SELECT name, sql FROM {master} WHERE type = 'trigger' "
            f"AND tbl_name = {literal(table.name)}"
        )
    return {row[0]: row[1] or "" for row in connection.execute(text(query))}


def check_guard(
    bind: Bind, *, table_name: str | None = None, table_schema: str | None = None
) -> list[str]:
    """Say what is missing for the change table to be guarded; ``[]``: it is.

    Args:
        bind: An engine or a connection.
        table_name: The change table; default: the configured one, else ``sqlaudit_changes``.
        table_schema: Its schema, likewise.

    Returns:
        One message per missing or outdated piece, each saying how to fix it.

    Raises:
        ConfigurationError: a database other than PostgreSQL, MySQL, MariaDB and SQLite.

    Example:
        >>> check_guard(engine)  # doctest: +SKIP
        []
    """
    table = _change_table(table_name, table_schema)
    problems = []
    with _begin(bind) as connection:
        dialect = _check_dialect(connection, "check_guard")
        inspector = sa_inspect(connection)
        if not inspector.has_table(table.name, schema=table.schema):
            return [f"the change table {table.fullname} does not exist; run install_guard()."]
        installed = _installed(connection, dialect, table)
        for operation, name in _triggers(dialect, table).items():
            body = installed.get(name)
            if body is None:
                problems.append(
                    f"the trigger {name} that refuses {operation} on {table.fullname} is "
                    "missing; run install_guard()."
                )
            elif _MARK not in body:
                problems.append(
                    f"the trigger {name} on {table.fullname} is not the current guard; run "
                    "install_guard() to replace it."
                )
        marker = marker_table_name(table)
        if dialect == "sqlite" and not inspector.has_table(marker, schema=table.schema):
            problems.append(f"the table {marker} is missing; run install_guard().")
    return problems


def _has_marker_table(connection: Connection, table: Table) -> bool:
    master = "sqlite_master"
    if table.schema is not None:
        master = f"{_quote(connection, table.schema)}.sqlite_master"
    found = connection.exec_driver_sql(
        f"SELECT 1 FROM {master} WHERE type = 'table' AND name = ?",
        (marker_table_name(table),),
    ).first()
    return found is not None


@contextmanager
def maintenance(connection: Connection, table: Table) -> Iterator[None]:
    """Open the guard for the statements run inside, on ``connection`` only, then close it.

    Used by prune and erase around their own ``DELETE`` and ``UPDATE`` statements,
    in their transaction; harmless where no guard is installed. However the block
    ends, the guard is closed again: on MySQL/MariaDB, a connection that cannot be
    reset is invalidated, so it never goes back to the pool open.
    """
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.exec_driver_sql(f"SELECT set_config('{_SETTING}', 'on', true)")
        close = f"SELECT set_config('{_SETTING}', '', true)"
    elif dialect in _MYSQL:
        connection.exec_driver_sql(f"SET {_VARIABLE} = 1")
        close = f"SET {_VARIABLE} = NULL"
    elif dialect == "sqlite" and _has_marker_table(connection, table):
        marker = _qualified(connection, table, marker_table_name(table))
        row = connection.exec_driver_sql(f"INSERT INTO {marker} DEFAULT VALUES").lastrowid
        close = f"DELETE FROM {marker} WHERE id = {int(row)}"
    else:
        yield
        return
    try:
        yield
    except BaseException:
        _close(connection, close, failing=True)
        raise
    _close(connection, close, failing=False)


def _close(connection: Connection, close: str, *, failing: bool) -> None:
    try:
        connection.exec_driver_sql(close)
    except Exception:
        if connection.dialect.name in _MYSQL and not connection.invalidated:
            # The variable lives as long as the database connection: drop that.
            connection.invalidate()
        # PostgreSQL's setting and SQLite's row go with the transaction, which an
        # error leaves able only to roll back.
        if not failing:
            raise
