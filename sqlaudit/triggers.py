"""Database capture: install, check and remove the triggers that record changes.

A model tracked with ``capture="database"`` (per model, or for every model with
``SQLAuditConfig(capture="database")``) is recorded by triggers the database runs
on every write to its table, whoever makes it: a Session, Core on a plain
Connection, ``text()`` SQL, another service, psql, a foreign-key cascade, a
database default or another trigger. They write the same change rows as session
capture, with the same encoding. Install them once the tables exist::

    from sqlaudit import install_triggers, check_triggers

    @track_table(tracked_fields=["name", "email"], capture="database")
    class Customer(Base): ...

    Base.metadata.create_all(engine)
    install_triggers(engine)          # idempotent: run it at every deploy
    assert check_triggers(engine) == []

On PostgreSQL they are statement-level triggers over transition tables (one
``INSERT ... SELECT`` per statement); on MySQL/MariaDB and SQLite row-level
triggers. A tracked column whose type the database cannot encode exactly as the
Python codec does is refused here, naming the column
(:class:`~sqlaudit.exceptions.TriggerTypeError`), never recorded differently.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection, Engine

from sqlaudit import _dbcontext, _registry, _schema, _sql_codec
from sqlaudit._registry import TrackedModel
from sqlaudit._triggers import Plan, mysql, plan_for, postgresql, sqlite
from sqlaudit.config import get_config, has_config
from sqlaudit.exceptions import ConfigurationError, TriggerDriftWarning, UntrackedModelError

__all__ = ["TriggerProblem", "check_triggers", "drop_triggers", "install_triggers", "trigger_sql"]

_MYSQL = ("mysql", "mariadb")
Bind = Engine | Connection


@dataclass(frozen=True, slots=True)
class TriggerProblem:
    """One way the installed triggers differ from what the tracked models need.

    Attributes:
        model: The tracked class.
        table: The table's name.
        kind: ``missing`` (a trigger is not installed), ``outdated`` (installed for
            other tracked fields, column types or change table), ``column`` (a
            tracked column was dropped or its type changed in the database).
        message: What is wrong and how to fix it.

    Example:
        >>> for problem in check_triggers(engine):  # doctest: +SKIP
        ...     print(problem.message)
    """

    model: type[Any]
    table: str
    kind: str
    message: str


@contextmanager
def _begin(bind: Bind) -> Iterator[Connection]:
    if isinstance(bind, Engine):
        with bind.begin() as connection:
            yield connection
    else:
        yield bind


def _database_models(models: Iterable[type[Any]] | None) -> list[TrackedModel]:
    if models is None:
        return [
            tracked
            for model in _registry.models()
            if (tracked := _registry.lookup(model)) is not None
            and tracked.model is model
            and _registry.capture_of(tracked) == "database"
        ]
    chosen = []
    for model in models:
        tracked = _registry.lookup(model)
        if tracked is None or tracked.model is not model:
            raise UntrackedModelError(
                f"{getattr(model, '__name__', model)!s} is not tracked: decorate it with "
                "@track_table(..., capture='database') before installing its triggers."
            )
        if _registry.capture_of(tracked) != "database":
            raise ConfigurationError(
                f"{model.__name__} is tracked with session capture; triggers on its table "
                "would record every change twice. Track it with "
                "@track_table(..., capture='database') (or SQLAuditConfig(capture='database'))."
            )
        chosen.append(tracked)
    return chosen


def _change_table(table_name: str | None, table_schema: str | None) -> Table:
    """Return the change table named, else the configured one, else ``sqlaudit_changes``."""
    if table_name is None and table_schema is None and has_config():
        return get_config().table
    return _schema.build_change_table(table_name or _DEFAULT_TABLE, table_schema)


_DEFAULT_TABLE = "sqlaudit_changes"


def _plans(connection: Connection, models: Sequence[TrackedModel], table: Table) -> list[Plan]:
    return [plan_for(tracked, connection.dialect, table) for tracked in models]


TableKey = tuple[str | None, str]


def _key(table: Table) -> TableKey:
    return (table.schema, table.name)


def _cascade_map(connection: Connection, children: Sequence[Plan]) -> dict[TableKey, list[Any]]:
    """Map each parent table to the cascades its foreign keys make to ``children``' rows.

    Only MySQL/MariaDB need it: they fire no trigger for rows a cascade changes.
    """
    if connection.dialect.name not in _MYSQL:
        return {}
    inspector = sa_inspect(connection)
    found: dict[TableKey, list[Any]] = {}
    for child in children:
        for key in inspector.get_foreign_keys(child.table.name, schema=child.table.schema):
            options = key.get("options", {})
            on_delete = (options.get("ondelete") or "").upper() or None
            on_update = (options.get("onupdate") or "").upper() or None
            acts = ("CASCADE", "SET NULL")
            if on_delete not in acts and on_update not in acts:
                continue
            pairs = tuple(zip(key["constrained_columns"], key["referred_columns"], strict=True))
            parent = (key.get("referred_schema"), key["referred_table"])
            found.setdefault(parent, []).append(mysql.Cascade(child, pairs, on_delete, on_update))
    return found


def _install_statements(
    connection: Connection, chosen: Sequence[Plan], everything: Sequence[Plan]
) -> list[str]:
    """Return the DDL that installs ``chosen``'s triggers (``everything``: all captured)."""
    cascades = _cascade_map(connection, everything)
    statements = [
        sql for plan in chosen for sql in _create_statements(plan, cascades.get(_key(plan.table)))
    ]
    captured = {_key(plan.table) for plan in everything}
    for parent, found in cascades.items():
        if parent not in captured:  # a parent not captured itself still records its cascades
            statements += mysql.cascade_only_sql(parent[1], parent[0], found, found[0].child.quote)
    return statements


def _drop_statements_for(
    connection: Connection, chosen: Sequence[Plan], everything: Sequence[Plan]
) -> list[str]:
    """Return the DDL that drops ``chosen``'s triggers, keeping the others' cascades."""
    statements = [sql for plan in chosen for sql in _drop_statements(plan)]
    dropped = {_key(plan.table) for plan in chosen}
    remaining = [plan for plan in everything if _key(plan.table) not in dropped]
    affected = _cascade_map(connection, chosen)
    if not affected:
        return statements
    kept = _cascade_map(connection, remaining)
    by_table = {_key(plan.table): plan for plan in remaining}
    for parent, found in affected.items():
        if parent in dropped:
            continue
        if parent in by_table:
            statements += _create_statements(by_table[parent], kept.get(parent))
        else:
            quote = found[0].child.quote
            statements += mysql.cascade_only_sql(parent[1], parent[0], kept.get(parent, []), quote)
    return statements


def _create_statements(plan: Plan, cascades: Sequence[Any] | None) -> list[str]:
    dialect = plan.dialect
    if dialect == "postgresql":
        return postgresql.create_sql(plan)
    if dialect in _MYSQL:
        return mysql.create_sql(plan, tuple(cascades or ()))
    if dialect == "sqlite":
        name = _dbcontext.context_table_name(plan.change_table.name)
        return [sqlite.context_table_sql(plan, name), *sqlite.create_sql(plan, name)]
    raise ConfigurationError(
        f"Database capture supports PostgreSQL, MySQL, MariaDB and SQLite, not {dialect}; "
        "track the models with capture='session'."
    )


def _drop_statements(plan: Plan) -> list[str]:
    if plan.dialect == "postgresql":
        return postgresql.drop_sql(plan)
    if plan.dialect in _MYSQL:
        return mysql.drop_sql(plan)
    return sqlite.drop_sql(plan)


def trigger_sql(
    bind: Bind,
    models: Iterable[type[Any]] | None = None,
    *,
    table_name: str | None = None,
    table_schema: str | None = None,
) -> list[str]:
    """Return the statements :func:`install_triggers` would run, without running them.

    For review, or for a migration that should carry the exact SQL.

    Example:
        >>> for statement in trigger_sql(engine):  # doctest: +SKIP
        ...     print(statement)
    """
    table = _change_table(table_name, table_schema)
    with _begin(bind) as connection:
        plans = _plans(connection, _database_models(models), table)
        everything = _plans(connection, _database_models(None), table)
        return _install_statements(connection, plans, everything)


def install_triggers(
    bind: Bind,
    models: Iterable[type[Any]] | None = None,
    *,
    table_name: str | None = None,
    table_schema: str | None = None,
) -> list[type[Any]]:
    """Create or replace the capture triggers of database-captured models (idempotent).

    Args:
        bind: An engine (its own transaction) or a connection (the caller's).
        models: The models to install; default: every model tracked with
            ``capture="database"``.
        table_name: The change table the triggers write to; default: the configured
            one (:func:`~sqlaudit.set_config`), else ``sqlaudit_changes``. A migration,
            which runs without the application's config, may name it.
        table_schema: The change table's schema, likewise.

    Returns:
        The models whose triggers were installed.

    Raises:
        TriggerTypeError: a tracked column's type cannot be encoded by the database
            exactly like the Python codec (the message names the column).
        ConfigurationError: a model uses session capture, or the database is not
            supported.

    Example:
        >>> install_triggers(engine)  # doctest: +SKIP
        [<class 'Customer'>]
    """
    chosen = _database_models(models)
    table = _change_table(table_name, table_schema)
    with _begin(bind) as connection:
        _schema.create_change_table(table, connection)
        plans = _plans(connection, chosen, table)
        everything = (
            _plans(connection, _database_models(None), table) if models is not None else plans
        )
        for statement in _install_statements(connection, plans, everything):
            connection.exec_driver_sql(_escape(statement, connection))
    _dbcontext.forget(_engine(bind))
    return [tracked.model for tracked in chosen]


def drop_triggers(
    bind: Bind,
    models: Iterable[type[Any]] | None = None,
    *,
    table_name: str | None = None,
    table_schema: str | None = None,
) -> list[type[Any]]:
    """Remove the capture triggers of database-captured models (missing ones are skipped).

    Example:
        >>> drop_triggers(engine)  # doctest: +SKIP
        [<class 'Customer'>]
    """
    chosen = _database_models(models)
    table = _change_table(table_name, table_schema)
    with _begin(bind) as connection:
        plans = _plans(connection, chosen, table)
        everything = _plans(connection, _database_models(None), table)
        for statement in _drop_statements_for(connection, plans, everything):
            connection.exec_driver_sql(_escape(statement, connection))
    _dbcontext.forget(_engine(bind))
    return [tracked.model for tracked in chosen]


def _engine(bind: Bind) -> Engine:
    return bind if isinstance(bind, Engine) else bind.engine


def _escape(statement: str, connection: Connection) -> str:
    # exec_driver_sql passes the text to the driver, whose paramstyle may treat "%".
    if connection.dialect.paramstyle in ("format", "pyformat"):
        return statement.replace("%", "%%")
    return statement


def check_triggers(
    bind: Bind,
    models: Iterable[type[Any]] | None = None,
    *,
    table_name: str | None = None,
    table_schema: str | None = None,
) -> list[TriggerProblem]:
    """Compare the installed triggers with what the tracked models need.

    Reports a missing trigger, a trigger written for other tracked fields, column
    types or change table, and a tracked column dropped or retyped in the database.
    An empty list means every database-captured model is recorded as declared.

    Example:
        >>> check_triggers(engine)  # doctest: +SKIP
        []
    """
    problems: list[TriggerProblem] = []
    table = _change_table(table_name, table_schema)
    with _begin(bind) as connection:
        for tracked in _database_models(models):
            problems.extend(check_model(connection, tracked, table))
    return problems


def check_model(
    connection: Connection, tracked: TrackedModel, change_table: Table | None = None
) -> list[TriggerProblem]:
    """Return what is wrong with ``tracked``'s triggers on ``connection``'s database."""
    model, table = tracked.model, tracked.table_name
    columns = _columns(connection, sa_inspect(model).local_table)
    if columns is None:
        return [TriggerProblem(model, table, "missing", f"the table {table} does not exist.")]
    problems = []
    mapper: Any = sa_inspect(model)
    for name in tracked.fields:
        declared = mapper.columns[name]
        reflected = columns.get(declared.name)
        if reflected is None:
            message = (
                f"{model.__name__}.{name} is tracked but the column {table}.{declared.name} "
                "is not in the database; migrate the table, then run install_triggers()."
            )
        elif not _sql_codec.same_family(declared.type, reflected, connection.dialect.name):
            message = (
                f"{model.__name__}.{name} is declared {declared.type!r} but the column "
                f"{table}.{declared.name} is {reflected!r} in the database; make them match "
                "(a migration, or the model), then run install_triggers()."
            )
        else:
            continue
        problems.append(TriggerProblem(model, table, "column", message))
    target = change_table if change_table is not None else _change_table(None, None)
    plan = plan_for(tracked, connection.dialect, target)
    installed = {row[0]: row[1] or "" for row in connection.execute(text(_installed_sql(plan)))}
    for name in _expected_names(plan):
        body = installed.get(name)
        if body is None:
            message = (
                f"the trigger {name} on {table} is missing; run install_triggers() "
                f"(or drop_triggers() and track {model.__name__} with session capture)."
            )
            problems.append(TriggerProblem(model, table, "missing", message))
        elif plan.fingerprint not in body:
            message = (
                f"the trigger {name} on {table} was installed for other tracked fields, "
                "column types or change table than the model declares now; run "
                "install_triggers() to replace it."
            )
            problems.append(TriggerProblem(model, table, "outdated", message))
    return problems


def _columns(connection: Connection, table: Table) -> dict[str, Any] | None:
    """Return the table's columns in the database, by name, with their reflected types."""
    inspector = sa_inspect(connection)
    if not inspector.has_table(table.name, schema=table.schema):
        return None
    reflected = inspector.get_columns(table.name, schema=table.schema)
    return {column["name"]: column["type"] for column in reflected}


def _installed_sql(plan: Plan) -> str:
    if plan.dialect == "postgresql":
        return postgresql.installed_sql(plan)
    if plan.dialect in _MYSQL:
        return mysql.installed_sql(plan)
    return sqlite.installed_sql(plan)


def _expected_names(plan: Plan) -> list[str]:
    if plan.dialect == "postgresql":
        return [plan.short_name(op) for op in ("insert", "update", "delete")]
    if plan.dialect in _MYSQL:
        names = mysql.trigger_names(plan)
        return [names[key] for key in ("AFTER INSERT", "AFTER UPDATE", "AFTER DELETE")]
    return list(sqlite.trigger_names(plan).values())


def warn_on_drift(bind: Bind) -> None:
    """Warn (:class:`~sqlaudit.exceptions.TriggerDriftWarning`) about every trigger problem."""
    try:
        problems = check_triggers(bind)
    except Exception as error:  # start-up must not fail on a check
        warnings.warn(
            f"sqlaudit could not check the capture triggers: {error}",
            TriggerDriftWarning,
            stacklevel=3,
        )
        return
    for problem in problems:
        warnings.warn(
            f"{problem.model.__name__}: {problem.message}", TriggerDriftWarning, stacklevel=3
        )
