"""The change-row write path: one prepared INSERT per flush, straight to the driver.

:func:`write_changes` takes rows already in :data:`sqlaudit._schema.CHANGE_COLUMNS`
order and sends them in one executemany. The INSERT is compiled once per table and
dialect and kept with the bind processors of its columns, so a flush pays neither a
compile nor SQLAlchemy's per-row parameter processing::

    from sqlaudit._insert import write_changes

    with engine.begin() as connection:
        write_changes(connection, config.table, rows)

A connection (or a call) with a ``schema_translate_map`` goes through
``connection.execute(table.insert(), ...)`` instead, so the map is applied.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Dialect, Table
from sqlalchemy.engine import Connection

from sqlaudit._schema import CHANGE_COLUMNS

__all__ = ["write_changes"]


@dataclass(frozen=True, slots=True)
class _PreparedInsert:
    sql: str
    positions: tuple[int, ...] | None  # column index per positional bind; None: named binds
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]  # (column index, bind processor)


_prepared: WeakKeyDictionary[Table, dict[tuple[Any, ...], _PreparedInsert]] = WeakKeyDictionary()

_IN_ORDER = tuple(range(len(CHANGE_COLUMNS)))


def _prepare(table: Table, dialect: Dialect) -> _PreparedInsert:
    """Compile the change INSERT once per table and dialect, with its bind processors."""
    key = (type(dialect), dialect.paramstyle, dialect.server_version_info)
    by_dialect = _prepared.setdefault(table, {})
    prepared = by_dialect.get(key)
    if prepared is None:
        compiled = table.insert().compile(dialect=dialect, column_keys=list(CHANGE_COLUMNS))
        positions = None
        if compiled.positional:
            positions = tuple(CHANGE_COLUMNS.index(name) for name in compiled.positiontup or ())
        processors = []
        for index, name in enumerate(CHANGE_COLUMNS):
            processor = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors.append((index, processor))
        prepared = _PreparedInsert(compiled.string, positions, tuple(processors))
        by_dialect[key] = prepared
    return prepared


def write_changes(
    connection: Connection,
    table: Table,
    rows: Sequence[Sequence[Any]],
    execution_options: Mapping[str, Any] | None = None,
) -> None:
    """Insert change rows (values in :data:`CHANGE_COLUMNS` order) with one executemany.

    The statement is compiled once per dialect and goes straight to the driver.
    Bind processing (the UTC timestamp, the JSON context) runs once per distinct
    value rather than once per row, since every row of a flush shares its timestamp
    and context; this keeps SQLAlchemy's per-row parameter work out of the flush.
    """
    if connection.get_execution_options().get("schema_translate_map") or (
        execution_options and execution_options.get("schema_translate_map")
    ):
        # The prepared SQL names the table as compiled; let SQLAlchemy translate it.
        connection.execute(
            table.insert(),
            [dict(zip(CHANGE_COLUMNS, row, strict=True)) for row in rows],
            execution_options=execution_options,
        )
        return
    prepared = _prepare(table, connection.dialect)
    values: list[Any] = list(rows)
    for index, processor in prepared.processors:
        memo: dict[int, tuple[Any, Any]] = {}  # id(value) -> (value, processed)
        replaced = []
        for row in values:
            value = row[index]
            if value is not None:
                seen = memo.get(id(value))
                if seen is None or seen[0] is not value:
                    seen = memo[id(value)] = (value, processor(value))
                row = (*row[:index], seen[1], *row[index + 1 :])
            replaced.append(row)
        values = replaced
    if prepared.positions is None:
        params: list[Any] = [dict(zip(CHANGE_COLUMNS, row, strict=True)) for row in values]
    elif prepared.positions == _IN_ORDER:
        params = [tuple(row) for row in values]
    else:
        params = [tuple(row[i] for i in prepared.positions) for row in values]
    connection.exec_driver_sql(prepared.sql, params)
