"""The change-row write path: one prepared INSERT per flush, whatever the driver.

:func:`write_changes` takes rows already in :data:`sqlaudit._schema.CHANGE_COLUMNS`
order and sends them in one statement, so that auditing adds a constant number of
round trips per flush on every supported driver::

    from sqlaudit._insert import write_changes

    with engine.begin() as connection:
        write_changes(connection, config.table, rows)

How the rows travel, by database (a driver's own executemany is not trusted with
this: psycopg2 sends one statement per row, mysqlclient one per 64 KB):

- **PostgreSQL** (psycopg2, psycopg 3, asyncpg): one ``INSERT ... SELECT ... FROM
  unnest(...) WITH ORDINALITY ... ORDER BY`` whose parameters are one array per
  column: eleven parameters whatever the number of rows, and a statement text that
  never changes, so drivers that prepare statements prepare it once. psycopg2 and
  psycopg get each array as one string in PostgreSQL's array syntax
  (``{"a","b",NULL}``), which costs both ends less than a list (psycopg2 writes a
  list as ``ARRAY['a', 'b', NULL]`` for the server to parse); asyncpg gets lists.
- **MySQL and MariaDB** (PyMySQL, aiomysql, mysqlclient): one multi-row
  ``INSERT ... VALUES (...), (...)``; a flush of more than about 1 MB of values is
  cut into statements of about 1 MB, well under the server's ``max_allowed_packet``.
- **SQLite** (sqlite3, aiosqlite): one executemany, which runs inside the process.

Either way ids increase in the order the rows are given, which is the order history
is read in. The statement is compiled once per table and dialect and kept with the
bind processors of its columns; bind processing runs once per distinct value, since
every row of a flush shares its timestamp and context. A ``schema_translate_map``
(on the connection or the call) is followed: the PostgreSQL statement goes through
``Connection.execute``, which translates it; elsewhere the rows go through
``connection.execute(table.insert(), ...)``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from weakref import WeakKeyDictionary

from sqlalchemy import Dialect, Insert, String, Table, column, text
from sqlalchemy.engine import Connection

from sqlaudit import _large_values, _redact
from sqlaudit._schema import CHANGE_COLUMNS

__all__ = ["write_changes"]

# MySQL's multi-row statements are cut at about this many bytes of values (PyMySQL's
# own executemany cuts at 1,024,000); the server's max_allowed_packet is 16 MB or more.
_STATEMENT_BYTES = 1_000_000
# The placeholders a multi-row VALUES can repeat; other paramstyles use executemany.
_REPEATABLE = {
    "format": None,
    "qmark": None,
    "pyformat": re.compile(r"%\((\w+)\)s"),
    "named": re.compile(r"(?<![:\w]):(\w+)"),
}

# arrays: one array per column; array_literals: the same, each written as its text;
# values: multi-row VALUES; executemany: the driver's.
_Kind = Literal["arrays", "array_literals", "values", "executemany"]


@dataclass(frozen=True, slots=True)
class _PreparedInsert:
    statement: Insert  # for Connection.execute (PostgreSQL)
    sql: str  # the same, compiled for the dialect, for exec_driver_sql
    kind: _Kind
    paramstyle: str
    positions: tuple[int, ...] | None  # column index per positional bind; None: named binds
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]  # (column index, bind processor)


_prepared: WeakKeyDictionary[Table, dict[tuple[Any, ...], _PreparedInsert]] = WeakKeyDictionary()


def _unnest_insert(table: Table, dialect: Dialect) -> Insert:
    """Return ``INSERT ... SELECT`` from one array parameter per column (PostgreSQL)."""
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(name) for name in CHANGE_COLUMNS)
    arrays = []
    for name in CHANGE_COLUMNS:
        column_type = table.c[name].type
        # A cast to VARCHAR(n) would cut a long value silently; cast to TEXT and let
        # the column's own type refuse it, as a plain INSERT would.
        element = (
            "TEXT"
            if isinstance(column_type, String)
            else dialect.type_compiler_instance.process(column_type)
        )
        arrays.append(f"CAST(:{name} AS {element}[])")
    source = text(
        f"SELECT {names} FROM unnest({', '.join(arrays)}) "
        f"WITH ORDINALITY AS change ({names}, position) ORDER BY position"
    ).columns(*(column(name) for name in CHANGE_COLUMNS))
    return table.insert().from_select(list(CHANGE_COLUMNS), source)


def _kind(dialect: Dialect) -> _Kind:
    if dialect.name == "postgresql":
        # asyncpg types the parameter as an array from the statement and wants a list.
        return "arrays" if dialect.driver == "asyncpg" else "array_literals"
    if dialect.name in ("mysql", "mariadb") and dialect.paramstyle in _REPEATABLE:
        return "values"
    return "executemany"


def _prepare(table: Table, dialect: Dialect) -> _PreparedInsert:
    """Compile the change INSERT once per table and dialect, with its bind processors."""
    key = (type(dialect), dialect.paramstyle, dialect.server_version_info)
    by_dialect = _prepared.setdefault(table, {})
    prepared = by_dialect.get(key)
    if prepared is None:
        kind = _kind(dialect)
        # inline(): no RETURNING of the generated ids, which nobody reads.
        statement = (
            _unnest_insert(table, dialect)
            if kind in ("arrays", "array_literals")
            else table.insert().inline()
        )
        compiled = statement.compile(dialect=dialect, column_keys=list(CHANGE_COLUMNS))
        sql, paramstyle = compiled.string, dialect.paramstyle
        positions = None
        if compiled.positional:
            positions = tuple(CHANGE_COLUMNS.index(name) for name in compiled.positiontup or ())
        elif kind == "values" and paramstyle == "pyformat":
            # MySQL drivers take %s with a tuple as well as %(name)s with a dict: the
            # positional form makes a statement of hundreds of rows a third as long.
            named = _REPEATABLE["pyformat"]
            assert named is not None
            positions = tuple(CHANGE_COLUMNS.index(name) for name in named.findall(sql))
            sql, paramstyle = named.sub("%s", sql), "format"
        processors = []
        for index, name in enumerate(CHANGE_COLUMNS):
            processor = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors.append((index, processor))
        prepared = _PreparedInsert(
            statement,
            sql,
            kind,
            paramstyle,
            positions,
            tuple(processors),
        )
        by_dialect[key] = prepared
    return prepared


@functools.lru_cache(maxsize=64)
def _values_sql(sql: str, paramstyle: str, count: int) -> str:
    """Return the one-row ``INSERT ... VALUES (...)`` ``sql`` with ``count`` rows of values.

    Named placeholders get the row's number as a suffix (``name_0``, ``name_1``, ...).
    """
    head, keyword, row = sql.rpartition(" VALUES ")
    placeholder = _REPEATABLE[paramstyle]
    if placeholder is None:
        rows = [row] * count
    else:
        template = r"%(\g<1>_{})s" if paramstyle == "pyformat" else r":\g<1>_{}"
        rows = [placeholder.sub(template.format(n), row) for n in range(count)]
    return head + keyword + ", ".join(rows)


def _batches(columns: list[list[Any]]) -> Iterator[tuple[int, int]]:
    """Yield ``(start, stop)`` row ranges holding about :data:`_STATEMENT_BYTES` each."""
    start, size = 0, 0
    for index, values in enumerate(zip(*columns, strict=True)):
        row_size = sum(len(value) if isinstance(value, str | bytes) else 8 for value in values)
        if index > start and size + row_size > _STATEMENT_BYTES:
            yield start, index
            start, size = index, 0
        size += row_size
    yield start, len(columns[0])


def _processed(values: list[Any], processor: Callable[[Any], Any]) -> list[Any]:
    """Apply ``processor`` to each value, once per distinct value object."""
    memo: dict[int, tuple[Any, Any]] = {}  # id(value) -> (value, processed)
    result: list[Any] = []
    for value in values:
        if value is None:
            result.append(None)
            continue
        seen = memo.get(id(value))
        if seen is None or seen[0] is not value:
            seen = memo[id(value)] = (value, processor(value))
        result.append(seen[1])
    return result


def _array_literal(values: list[Any]) -> str | list[Any]:
    """Return PostgreSQL's text form of the one-dimensional array of ``values``.

    Only text, timestamps and ``None`` are written out (what the bind processors give
    the change columns; psycopg's JSON wrapper is not text); a column holding any other
    value returns the list as it is, for the driver to adapt.
    """
    memo: dict[str | datetime, str] = {}
    parts = []
    for value in values:
        if value is None:
            parts.append("NULL")
            continue
        if not isinstance(value, str | datetime):
            return values
        element = memo.get(value)
        if element is None:
            written = value if isinstance(value, str) else value.isoformat()
            escaped = written.replace("\\", "\\\\").replace('"', '\\"')
            element = memo[value] = f'"{escaped}"'
        parts.append(element)
    return "{" + ",".join(parts) + "}"


def _send_values(
    connection: Connection, prepared: _PreparedInsert, columns: list[list[Any]]
) -> None:
    """Send the rows as multi-row ``INSERT ... VALUES``, about 1 MB per statement."""
    for start, stop in _batches(columns):
        sql = _values_sql(prepared.sql, prepared.paramstyle, stop - start)
        if prepared.positions is None:
            connection.exec_driver_sql(
                sql,
                {
                    f"{name}_{n}": value
                    for name, values in zip(CHANGE_COLUMNS, columns, strict=True)
                    for n, value in enumerate(values[start:stop])
                },
            )
        else:
            ordered = [columns[i][start:stop] for i in prepared.positions]
            connection.exec_driver_sql(
                sql, tuple(v for row in zip(*ordered, strict=True) for v in row)
            )


def write_changes(
    connection: Connection,
    table: Table,
    rows: Sequence[Sequence[Any]],
    execution_options: Mapping[str, Any] | None = None,
) -> None:
    """Insert change rows (values in :data:`CHANGE_COLUMNS` order) in one statement.

    Values of fields declared sensitive (:func:`sqlaudit.ops.set_sensitive_fields`)
    are stored as a keyed digest or masked.

    A row too large for one MySQL/MariaDB statement (``max_allowed_packet``) is
    written on its own, in pieces (:mod:`sqlaudit._large_values`); every other row
    goes out as below.

    See the module docstring for the statement each database gets. Ids increase in
    the order of ``rows``; nothing is sent for no rows.

    Args:
        connection: Where to write, inside the caller's transaction.
        table: The change table (:func:`sqlaudit._schema.build_change_table`).
        rows: One sequence of values per change row, in :data:`CHANGE_COLUMNS` order.
        execution_options: Options for this call; a ``schema_translate_map`` here or
            on the connection is followed.

    Example::

        write_changes(connection, table, [
            (transaction_id, "customers", "Customer", "1", "name", "update",
             '"Jo"', '"Jane"', "7", changed_at, None),
        ])
    """
    if rows:
        # Sensitive fields (sqlaudit.ops.set_sensitive_fields) are digested or masked
        # here, where every row written from Python passes.
        rows = _redact.redact(rows)
        _large_values.write_changes(connection, table, rows, execution_options, _write_batch)


def _write_batch(
    connection: Connection,
    table: Table,
    rows: Sequence[Sequence[Any]],
    execution_options: Mapping[str, Any] | None,
) -> None:
    """Send rows that each fit in a statement, in one statement (or ~1 MB batches)."""
    if not rows:
        return
    prepared = _prepare(table, connection.dialect)
    translated = bool(
        connection.get_execution_options().get("schema_translate_map")
        or (execution_options and execution_options.get("schema_translate_map"))
    )
    if translated and prepared.kind not in ("arrays", "array_literals"):
        # The prepared SQL names the table as compiled; let SQLAlchemy translate it.
        connection.execute(
            table.insert(),
            [dict(zip(CHANGE_COLUMNS, row, strict=True)) for row in rows],
            execution_options=execution_options,
        )
        return
    columns = [list(values) for values in zip(*rows, strict=True)]
    if len(columns) != len(CHANGE_COLUMNS):
        raise ValueError(f"change rows have {len(columns)} values, not {len(CHANGE_COLUMNS)}")
    for index, processor in prepared.processors:
        columns[index] = _processed(columns[index], processor)
    if prepared.kind in ("arrays", "array_literals"):
        arrays: dict[str, Any] = dict(zip(CHANGE_COLUMNS, columns, strict=True))
        if prepared.kind == "array_literals":
            arrays = {name: _array_literal(values) for name, values in arrays.items()}
        connection.execute(prepared.statement, arrays, execution_options=execution_options)
    elif prepared.kind == "values":
        _send_values(connection, prepared, columns)
    elif prepared.positions is None:
        connection.exec_driver_sql(
            prepared.sql,
            [dict(zip(CHANGE_COLUMNS, row, strict=True)) for row in zip(*columns, strict=True)],
        )
    else:
        connection.exec_driver_sql(
            prepared.sql, list(zip(*(columns[i] for i in prepared.positions), strict=True))
        )
