"""Upgrading a change table written by an earlier sqlaudit to the current layout.

Earlier versions created ``resource_id`` and ``changed_by`` as ``VARCHAR(255)``
(longer keys and user ids failed the user's write), indexed them with the
timestamp, and on MySQL/MariaDB used the database's default character set and
collation. The current layout stores both as unbounded text with a generated,
indexed key column each (see :mod:`sqlaudit._schema`), orders history by the
change row id, and uses ``utf8mb4_bin`` throughout on MySQL/MariaDB.

Run the upgrade once per database, before :func:`~sqlaudit.config.set_config`
(which refuses a table of the older layout rather than write into it)::

    from sqlalchemy import create_engine
    from sqlaudit import upgrade_change_table

    engine = create_engine("postgresql+psycopg://app@db/app")
    upgrade_change_table(engine)          # True: upgraded; False: nothing to do

It keeps every row and id; running it again does nothing. On PostgreSQL it runs in
one transaction; on MySQL/MariaDB it is one ``ALTER TABLE`` (which copies the
table); on SQLite the table is rebuilt (new table, rows copied, old one dropped), and
the append-only guard (:func:`~sqlaudit.install_guard`), if any, is put back on it.
An async application runs it with ``await connection.run_sync(upgrade_change_table)``
(names as keywords after it), an Alembic migration with
``upgrade_change_table(op.get_bind())``.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import String, Table, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import CreateColumn, CreateTable

from sqlaudit import _schema
from sqlaudit.exceptions import ConfigurationError

__all__ = ["upgrade_change_table"]

# Columns holding text of any length: an index on them as such is the old layout.
_UNBOUNDED = ("resource_id", "changed_by")
_LONGTEXT = (*_UNBOUNDED, "old_value", "new_value")


def upgrade_change_table(
    bind: Engine | Connection,
    *,
    table_name: str = "sqlaudit_changes",
    table_schema: str | None = None,
) -> bool:
    """Upgrade a change table of an earlier layout in place; do nothing if it is current.

    Every row is kept, with its id. A table that does not exist is left to
    :func:`~sqlaudit.config.set_config` to create.

    Args:
        bind: An engine (the upgrade runs in a transaction of its own) or a
            connection (it runs in the connection's transaction; commit it).
        table_name: The change table's name, as given to ``SQLAuditConfig``.
        table_schema: Its schema, as given to ``SQLAuditConfig``.

    Returns:
        ``True`` if the table was upgraded, ``False`` if there was nothing to do.

    Raises:
        ConfigurationError: the database is not SQLite, PostgreSQL or MySQL/MariaDB;
            or, on SQLite, the table has columns sqlaudit does not know (a rebuild
            would lose them).

    Example:
        >>> from sqlalchemy import create_engine
        >>> upgrade_change_table(create_engine("sqlite://"))
        False
    """
    table = _schema.build_change_table(table_name, table_schema)
    if isinstance(bind, Engine):
        with bind.begin() as connection:
            return _upgrade(connection, table)
    return _upgrade(bind, table)


def check_layout(connection: Connection, table: Table) -> None:
    """Raise :class:`ConfigurationError` if the existing ``table`` has an older layout."""
    differences = layout_differences(connection, table)
    if differences:
        raise ConfigurationError(
            f"The change table {table.fullname} has an older layout than this version of "
            f"sqlaudit writes ({'; '.join(differences)}). Upgrade it once with "
            f"sqlaudit.upgrade_change_table(engine{_name_arguments(table)}) (async: await "
            f"connection.run_sync(upgrade_change_table{_name_arguments(table)})"
            "; see 'Upgrading the change table' in the docs), then set it up again."
        )


def layout_differences(connection: Connection, table: Table) -> list[str]:
    """Say how the existing ``table`` differs from its current definition (empty: it does not).

    Example:
        >>> from sqlalchemy import create_engine
        >>> engine = create_engine("sqlite://")
        >>> table = _schema.build_change_table("sqlaudit_changes", None)
        >>> with engine.begin() as connection:
        ...     table.create(connection)
        ...     layout_differences(connection, table)
        []
    """
    inspector = sa_inspect(connection)
    columns = {c["name"]: c for c in inspector.get_columns(table.name, schema=table.schema)}
    differences = [
        f"column {column.name} is missing" for column in table.columns if column.name not in columns
    ]
    for name in _UNBOUNDED:
        length = getattr(columns[name]["type"], "length", None) if name in columns else None
        if length is not None:
            differences.append(f"{name} is limited to {length} characters")
    if "table_name" in columns:
        length = getattr(columns["table_name"]["type"], "length", None)
        if length is not None and length < 255:
            differences.append(f"table_name is limited to {length} characters")
    if connection.dialect.name in ("mysql", "mariadb"):
        differences.extend(_mysql_text_differences(connection, table))
    existing = _indexes(connection, table)
    for index in table.indexes:
        wanted = [column.name for column in index.columns]
        found = existing.get(str(index.name))
        if found is None:
            differences.append(f"index {index.name} is missing")
        elif found != wanted:
            differences.append(f"index {index.name} is on ({', '.join(found)})")
    for name in _old_indexes(existing, table):
        if name not in {index.name for index in table.indexes}:
            differences.append(f"index {name} indexes {'/'.join(_UNBOUNDED)} as text")
    return differences


def _name_arguments(table: Table) -> str:
    arguments = ""
    if table.name != "sqlaudit_changes":
        arguments += f", table_name={table.name!r}"
    if table.schema is not None:
        arguments += f", table_schema={table.schema!r}"
    return arguments


def _indexes(connection: Connection, table: Table) -> dict[str, list[str]]:
    return {
        str(index["name"]): [str(name) for name in index["column_names"]]
        for index in sa_inspect(connection).get_indexes(table.name, schema=table.schema)
    }


def _old_indexes(existing: dict[str, list[str]], table: Table) -> list[str]:
    """Indexes to drop: those on the unbounded texts, and ours that are defined otherwise."""
    wanted = {str(index.name): [c.name for c in index.columns] for index in table.indexes}
    return [
        name
        for name, columns in existing.items()
        if set(columns) & set(_UNBOUNDED) or (name in wanted and wanted[name] != columns)
    ]


def _mysql_text_differences(connection: Connection, table: Table) -> list[str]:
    """Text columns (and the table's default) not in utf8mb4_bin, or not LONGTEXT where due."""
    schema = "COALESCE(:schema, DATABASE())"
    rows = connection.execute(
        text(
            "SELECT COLUMN_NAME, DATA_TYPE, COLLATION_NAME FROM information_schema.COLUMNS "
            f"WHERE TABLE_SCHEMA = {schema} AND TABLE_NAME = :name"
        ),
        {"schema": table.schema, "name": table.name},
    ).all()
    differences = []
    key_columns = {key for key, _ in _schema.KEY_COLUMNS}
    for name, data_type, collation in rows:
        if name not in table.c or name in key_columns or name == "extra" or collation is None:
            continue
        if collation != _schema.COLLATION:
            differences.append(f"{name} has collation {collation}")
        if name in _LONGTEXT and str(data_type).lower() != "longtext":
            differences.append(f"{name} is {data_type}")
    default = connection.execute(
        text(
            "SELECT TABLE_COLLATION FROM information_schema.TABLES "
            f"WHERE TABLE_SCHEMA = {schema} AND TABLE_NAME = :name"
        ),
        {"schema": table.schema, "name": table.name},
    ).scalar()
    if default != _schema.COLLATION:
        differences.append(f"the table's default collation is {default}")
    return differences


def _upgrade(connection: Connection, table: Table) -> bool:
    if not sa_inspect(connection).has_table(table.name, schema=table.schema):
        return False
    if not layout_differences(connection, table):
        return False
    upgrade = _UPGRADES.get(connection.dialect.name)
    if upgrade is None:
        raise ConfigurationError(
            f"sqlaudit cannot upgrade a change table on {connection.dialect.name}; it upgrades "
            "on SQLite, PostgreSQL and MySQL/MariaDB. Recreate the table, or alter it to "
            "match sqlaudit._schema.build_change_table()."
        )
    upgrade(connection, table)
    # Reflection is cached per inspector; a fresh one sees the upgraded table.
    remaining = layout_differences(connection, table)
    if remaining:  # pragma: no cover - a database that ignored part of the ALTER
        raise ConfigurationError(
            f"Upgrading {table.fullname} left it different from the current layout: "
            f"{'; '.join(remaining)}."
        )
    return True


def _column_spec(connection: Connection, table: Table, name: str) -> str:
    return str(CreateColumn(table.c[name]).compile(dialect=connection.dialect)).strip()


def _upgrade_postgresql(connection: Connection, table: Table) -> None:
    """Drop the old indexes, widen the columns, add the key columns, index them: one transaction."""
    preparer = connection.dialect.identifier_preparer
    existing = _indexes(connection, table)
    dropped = _old_indexes(existing, table)
    for name in dropped:
        qualified = preparer.quote(name)
        if table.schema is not None:
            qualified = f"{preparer.quote_schema(table.schema)}.{qualified}"
        connection.exec_driver_sql(f"DROP INDEX {qualified}")
    reflected = sa_inspect(connection).get_columns(table.name, table.schema)
    columns = {c["name"] for c in reflected}
    # Only the columns still limited: a column a generated column reads cannot be altered.
    clauses = [
        f"ALTER COLUMN {preparer.quote(c['name'])} TYPE "
        f"{table.c[c['name']].type.compile(dialect=connection.dialect)}"
        for c in reflected
        if c["name"] in (*_UNBOUNDED, "table_name") and getattr(c["type"], "length", None)
    ]
    clauses += [
        f"ADD COLUMN {_column_spec(connection, table, column.name)}"
        for column in table.columns
        if column.name not in columns
    ]
    connection.exec_driver_sql(f"ALTER TABLE {preparer.format_table(table)} {', '.join(clauses)}")
    _create_missing_indexes(connection, table, set(existing) - set(dropped))


def _upgrade_mysql(connection: Connection, table: Table) -> None:
    """One ALTER TABLE: old indexes dropped, text columns converted, keys added and indexed."""
    preparer = connection.dialect.identifier_preparer
    existing = _indexes(connection, table)
    dropped = _old_indexes(existing, table)
    columns = {c["name"] for c in sa_inspect(connection).get_columns(table.name, table.schema)}
    clauses = [f"DROP INDEX {preparer.quote(name)}" for name in dropped]
    key_columns = {key for key, _ in _schema.KEY_COLUMNS}
    for column in table.columns:
        if column.name in key_columns or column.name not in columns:
            continue
        if column.name != "extra" and isinstance(column.type, String):
            clauses.append(f"MODIFY COLUMN {_column_spec(connection, table, column.name)}")
    clauses += [
        f"ADD COLUMN {_column_spec(connection, table, column.name)}"
        for column in table.columns
        if column.name not in columns
    ]
    kept = set(existing) - set(dropped)
    for index in table.indexes:
        if index.name not in kept:
            names = ", ".join(preparer.quote(c.name) for c in index.columns)
            clauses.append(f"ADD INDEX {preparer.quote(str(index.name))} ({names})")
    clauses.append(f"DEFAULT CHARACTER SET {_schema.CHARSET} COLLATE {_schema.COLLATION}")
    connection.exec_driver_sql(f"ALTER TABLE {preparer.format_table(table)} {', '.join(clauses)}")


def _upgrade_sqlite(connection: Connection, table: Table) -> None:
    """Rebuild: SQLite cannot add a stored generated column to an existing table."""
    preparer = connection.dialect.identifier_preparer
    columns = [c["name"] for c in sa_inspect(connection).get_columns(table.name, table.schema)]
    unknown = [name for name in columns if name not in table.c]
    if unknown:
        raise ConfigurationError(
            f"The change table {table.fullname} has columns sqlaudit does not know "
            f"({', '.join(unknown)}); upgrading on SQLite rebuilds the table and would lose "
            "them. Move them elsewhere first."
        )
    # The append-only guard's triggers go with the old table: put them back on the new one.
    from sqlaudit.ops import _append_only

    guarded = _append_only.has_guard_triggers(connection, table)
    computed = {key for key, _ in _schema.KEY_COLUMNS}
    copied = ", ".join(preparer.quote(name) for name in columns if name not in computed)
    staging = _schema.build_change_table(f"{table.name}__sqlaudit_upgrade", table.schema)
    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {preparer.format_table(staging)}")
    connection.execute(CreateTable(staging))  # without its indexes: their names are taken
    connection.exec_driver_sql(
        f"INSERT INTO {preparer.format_table(staging)} ({copied}) "
        f"SELECT {copied} FROM {preparer.format_table(table)}"
    )
    connection.exec_driver_sql(f"DROP TABLE {preparer.format_table(table)}")
    connection.exec_driver_sql(
        f"ALTER TABLE {preparer.format_table(staging)} RENAME TO {preparer.quote(table.name)}"
    )
    for index in table.indexes:
        index.create(connection)
    if guarded:
        _append_only.create_guard(connection, table)


def _create_missing_indexes(connection: Connection, table: Table, kept: set[str]) -> None:
    for index in table.indexes:
        if index.name not in kept:
            index.create(connection)


_UPGRADES: dict[str, Callable[[Connection, Table], None]] = {
    "postgresql": _upgrade_postgresql,
    "mysql": _upgrade_mysql,
    "mariadb": _upgrade_mysql,
    "sqlite": _upgrade_sqlite,
}
