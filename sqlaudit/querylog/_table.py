"""The query log table: one row per logged statement, and the entries read back from it."""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final
from weakref import WeakKeyDictionary

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine

from sqlaudit import _codec
from sqlaudit._schema import UTCDateTime

__all__ = [
    "ENTRY_COLUMNS",
    "LOG_TABLE",
    "MASKED",
    "OUTBOX_TABLE",
    "LogEntry",
    "build_log_table",
    "create_log_table",
    "to_entry",
    "write_entries",
]

LOG_TABLE: Final = "sqlaudit_query_log"
# Where log_queries(to=other_engine) keeps entries until drain() delivers them.
OUTBOX_TABLE: Final = "sqlaudit_query_outbox"
# What a masked parameter value is stored as: it cannot be replayed.
MASKED: Final = "masked:"
_MYSQL = ("mysql", "mariadb")


def _text() -> Text:
    # MySQL's TEXT holds 64 KB; a statement's parameters (an executemany batch) may not fit.
    return Text().with_variant(mysql.LONGTEXT(charset="utf8mb4", collation="utf8mb4_bin"), *_MYSQL)


def _name(length: int) -> String:
    return String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), *_MYSQL
    )


def build_log_table(metadata: MetaData | None = None, name: str = LOG_TABLE) -> Table:
    """Return the query log table (``sqlaudit_query_log``, or the outbox) on ``metadata``.

    ``entry_key`` is set on entries that travel through the outbox: unique, it makes a
    retried delivery a no-op.

    Example:
        >>> build_log_table().name
        'sqlaudit_query_log'
    """
    return Table(
        name,
        metadata if metadata is not None else MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("transaction_id", _name(36), nullable=True),
        Column("kind", _name(8), nullable=False),
        Column("dialect", _name(64), nullable=False),
        Column("statement", _text(), nullable=False),
        Column("parameters", _text(), nullable=True),
        Column("executemany", Boolean, nullable=False),
        Column("started_at", UTCDateTime(), nullable=False),
        Column("duration", Float, nullable=False),
        Column("row_count", Integer, nullable=True),
        Column("changed_by", _name(255), nullable=True),
        Column("extra", _text(), nullable=True),
        Column("entry_key", _name(36), nullable=True, unique=True),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )


def create_log_table(table: Table, bind: Engine | Connection) -> None:
    """Create the log table on ``bind`` unless it exists."""
    table.create(bind, checkfirst=True)


# The values of a log entry as the capture builds it: a tuple, in this order.
ENTRY_COLUMNS: Final = (
    "transaction_id",
    "kind",
    "dialect",
    "statement",
    "parameters",
    "executemany",
    "started_at",
    "duration",
    "row_count",
    "changed_by",
    "extra",
    "entry_key",
)


# Entries per multi-row INSERT at most: 600 binds, under the oldest SQLite's limit (999).
_ROWS_PER_INSERT: Final = 50
_BOUND_TEXT: Final = 1 << 20  # characters of text per multi-row INSERT, about


@dataclass(frozen=True, slots=True)
class _PreparedWrite:
    sql: str
    positions: tuple[int, ...] | None  # per positional bind, its index in the flat values
    names: tuple[str, ...] | None  # per flat value, its bind's name (named binds)


_processors: WeakKeyDictionary[Table, dict[Any, tuple[tuple[int, Callable[[Any], Any]], ...]]] = (
    WeakKeyDictionary()
)
_prepared: WeakKeyDictionary[Table, dict[tuple[Any, int], _PreparedWrite]] = WeakKeyDictionary()


def write_entries(connection: Connection, table: Table, entries: list[tuple[Any, ...]]) -> None:
    """Insert log entries (tuples in :data:`ENTRY_COLUMNS` order), in order, in one statement.

    A multi-row INSERT (of up to 50 entries; on MySQL, of literals) rather than an
    executemany: psycopg2 sends an executemany as one statement per row. The INSERT for
    each number of entries is compiled once per table and dialect, and the values go to
    the driver as they are, bar the columns whose type converts them (the timestamp):
    none of the per-row work of ``Connection.execute(insert(), rows)``.
    """
    dialect = connection.dialect
    by_dialect = _processors.setdefault(table, {})
    processors = by_dialect.get(dialect)
    if processors is None:
        found = []
        for index, name in enumerate(ENTRY_COLUMNS):
            bind = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if bind is not None:
                found.append((index, bind))
        processors = by_dialect[dialect] = tuple(found)
    if processors:
        rows = []
        for entry in entries:
            values = list(entry)
            for index, processor in processors:
                values[index] = processor(values[index])
            rows.append(values)
    else:
        rows = [list(entry) for entry in entries]
    if dialect.name in _MYSQL:
        rows = _write_inline(connection, table, rows)
    for chunk in _chunks(rows):
        prepared = _prepare(table, dialect, len(chunk))
        flat = [value for values in chunk for value in values]
        if prepared.names is None:
            assert prepared.positions is not None
            parameters: Any = tuple(flat[index] for index in prepared.positions)
        else:
            parameters = dict(zip(prepared.names, flat, strict=True))
        connection.exec_driver_sql(prepared.sql, parameters)


def _chunks(rows: list[list[Any]]) -> Iterator[list[list[Any]]]:
    """Cut ``rows`` into INSERTs of 50 entries and about 1 MB of text at most, in order.

    (MySQL refuses a statement over ``max_allowed_packet``, 4 MB by default on MySQL
    5.7; an entry larger than the cap goes alone.)
    """
    chunk: list[list[Any]] = []
    size = 0
    for values in rows:
        length = sum(len(value) for value in values if type(value) is str)
        if chunk and (len(chunk) == _ROWS_PER_INSERT or size + length > _BOUND_TEXT):
            yield chunk
            chunk, size = [], 0
        chunk.append(values)
        size += length
    if chunk:
        yield chunk


def _prepare(table: Table, dialect: Any, count: int) -> _PreparedWrite:
    """Return the INSERT of ``count`` entries into ``table`` on ``dialect``, compiled once."""
    by_key = _prepared.setdefault(table, {})
    prepared = by_key.get((dialect, count))
    if prepared is not None:
        return prepared
    names = [f"e{row}_{column}" for row in range(count) for column in ENTRY_COLUMNS]
    rows = [
        {
            column: bindparam(names[row * len(ENTRY_COLUMNS) + place], type_=table.c[column].type)
            for place, column in enumerate(ENTRY_COLUMNS)
        }
        for row in range(count)
    ]
    statement = table.insert().values(rows) if count > 1 else table.insert().values(rows[0])
    compiled = statement.compile(dialect=dialect)
    if compiled.positional:
        flat_index = {name: index for index, name in enumerate(names)}
        prepared = _PreparedWrite(
            compiled.string, tuple(flat_index[name] for name in compiled.positiontup or ()), None
        )
    else:
        prepared = _PreparedWrite(compiled.string, None, tuple(names))
    by_key[(dialect, count)] = prepared
    return prepared


# On MySQL/MariaDB the entries go in as literals of one multi-row INSERT, their texts as
# hexadecimal literals: PyMySQL and aiomysql escape a bound string character by
# character in Python, which for the ~100 KB a transaction of bulk inserts logs costs
# more than the rest of the log's write (hex encoding is done in C, and reads the same
# whatever the server's sql_mode). A text too long to send twice its size goes bound.
_INLINE_TEXT: Final = 1 << 18  # UTF-8 bytes of one text sent inline at most (twice in hex)
_INLINE_STATEMENT: Final = 1 << 21  # characters of one inline INSERT, about


def _write_inline(connection: Connection, table: Table, rows: list[list[Any]]) -> list[list[Any]]:
    """Insert ``rows`` on MySQL as inline literals, in order; return those left to bind.

    The rows from the first that cannot be sent inline (a text too long, a value of a
    type without a literal here) on are returned, and go bound, so the order holds.
    """
    head = (
        f"INSERT INTO {connection.dialect.identifier_preparer.format_table(table)} "
        f"({', '.join(ENTRY_COLUMNS)}) VALUES "
    )
    groups: list[str] = []
    size = 0
    for index, values in enumerate(rows):
        group = _literal_row(values)
        if group is None or len(group) > _INLINE_STATEMENT:
            _send_inline(connection, head, groups)
            return rows[index:]
        if groups and size + len(group) > _INLINE_STATEMENT:
            _send_inline(connection, head, groups)
            groups, size = [], 0
        groups.append(group)
        size += len(group)
    _send_inline(connection, head, groups)
    return []


def _send_inline(connection: Connection, head: str, groups: list[str]) -> None:
    if groups:
        # Every text is a hex literal, so the statement holds no "%" for the driver's
        # parameter formatting to trip on.
        connection.exec_driver_sql(head + ", ".join(groups))


def _literal_row(values: list[Any]) -> str | None:
    """Return ``(v1, v2, ...)`` of MySQL literals for one entry, or ``None`` if one has none."""
    literals = []
    for value in values:
        kind = type(value)
        if value is None:
            literals.append("NULL")
        elif kind is str:
            if len(value) > _INLINE_TEXT:  # (a character is one UTF-8 byte or more)
                return None
            try:
                encoded = value.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate: left to the driver
                return None
            if len(encoded) > _INLINE_TEXT:
                return None
            literals.append("_utf8mb4 X'" + encoded.hex() + "'")
        elif kind is bool:
            literals.append("1" if value else "0")
        elif kind is int or (kind is float and math.isfinite(value)):
            literals.append(repr(value))
        elif kind is datetime and value.tzinfo is None:
            literals.append(f"'{value.isoformat(' ')}'")
        else:
            return None
    return "(" + ", ".join(literals) + ")"


@dataclass(frozen=True, slots=True, kw_only=True)
class LogEntry:
    """One logged statement, as :func:`~sqlaudit.querylog.replay` reads it back.

    Attributes:
        id: Its place in the log.
        transaction_id: The database transaction it ran in (``None``: autocommit).
        kind: ``insert``, ``update``, ``delete``, ``select``, ``ddl`` or ``text``
            (SQL whose first word says none of these).
        dialect: ``name+driver`` of the connection it ran on.
        statement: The SQL as sent to the driver.
        paramstyle: The driver's parameter style (``qmark``, ``pyformat``...).
        parameters: The parameters, decoded (a list of them for an executemany).
        executemany: Whether it was one statement run for a batch of parameter sets.
        masked: Whether a parameter value was masked (it cannot be replayed).
        started_at: When it started (aware, UTC).
        duration: How long it took, in seconds.
        row_count: The rows it matched or inserted, when the driver says.
        changed_by: The user of the audit context, or ``None``.
        reason: The reason of the audit context, or ``None``.
        extra: The audit context's extra metadata and the log's own ``extra``.

    Example:
        >>> from sqlaudit.querylog import read_log  # doctest: +SKIP
        >>> [entry.kind for entry in read_log(engine)]  # doctest: +SKIP
        ['insert', 'update']
    """

    id: int
    transaction_id: str | None
    kind: str
    dialect: str
    statement: str
    paramstyle: str
    parameters: Any
    executemany: bool
    masked: bool
    started_at: datetime
    duration: float
    row_count: int | None
    changed_by: str | None
    reason: str | None
    extra: dict[str, Any]


def encode_parameters(parameters: Any, paramstyle: str) -> str:
    """Return a statement's parameters (a set, or a batch of sets) as one JSON text.

    Strings, integers, floats, booleans and ``None`` are plain JSON values; lists and
    tuples (array parameters) JSON arrays; any other value an object that says what it
    was: ``{"$": <change value encoding>}`` (``Decimal``, ``datetime``, ``bytes``...),
    ``{"json": <text>}`` for a driver's JSON wrapper, ``{"masked": 1}`` for a masked
    value. The plain values are encoded by the ``json`` module's C encoder, so a
    statement costs one call, whatever its number of parameters.
    """
    return _ENCODER.encode({"style": paramstyle, "v": parameters})


def _typed(value: Any) -> Any:
    """Return the JSON form of a parameter value the JSON encoder does not know."""
    kind = type(value)
    # The two a bulk insert sends most, encoded as the change value codec does, first.
    if kind is datetime:
        return {"$": "datetime:" + value.isoformat()}
    if kind is Decimal:
        return {"$": f"decimal:{value}"}
    if kind is _Masked:
        return _MASKED_VALUE
    wrapped = _json_wrapped(value)
    if wrapped is not None:
        return {"json": wrapped}
    return {"$": _codec.encode(value)}


_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), default=_typed, check_circular=False)
_MASKED_VALUE: Final = {"masked": 1}


def _decode_set(values: Any, driver: str) -> Any:
    if isinstance(values, dict):
        return {key: _decode_value(value, driver) for key, value in values.items()}
    return tuple(_decode_value(value, driver) for value in values)


def _decode_value(value: Any, driver: str) -> Any:
    kind = type(value)
    if kind is list:
        return [_decode_value(element, driver) for element in value]
    if kind is not dict:
        return value
    if "$" in value:
        return _codec.decode(value["$"])
    if "json" in value:
        return _json_parameter(value["json"], driver)
    if "masked" in value:
        return MASKED
    return {key: _decode_value(element, driver) for key, element in value.items()}


def _is_masked(value: Any) -> bool:
    kind = type(value)
    if kind is dict:
        return "masked" in value and len(value) == 1
    if kind is list:
        return any(_is_masked(element) for element in value)
    return False


def _decode_set_tagged(values: Any, driver: str) -> Any:
    """Decode a parameter set written before parameters were plain JSON (tagged text)."""
    if isinstance(values, dict):
        return {key: _decode_tagged(value, driver) for key, value in values.items()}
    return tuple(_decode_tagged(value, driver) for value in values)


def _decode_tagged(value: Any, driver: str) -> Any:
    if isinstance(value, dict):
        if "array" in value:
            return [_decode_tagged(element, driver) for element in value["array"]]
        return _json_parameter(value["json"], driver)
    if value == MASKED:
        return value
    return _codec.decode(value)


def _json_parameter(text: str, driver: str) -> Any:
    """Return a JSON parameter wrapped as the driver that logged it wrapped it."""
    module = {"psycopg": "psycopg.types.json", "psycopg2": "psycopg2.extras"}.get(driver)
    if module is None:
        return text
    return importlib.import_module(module).Json(json.loads(text))


def to_entry(row: Any) -> LogEntry:
    """Return the :class:`LogEntry` of a log table row."""
    stored: dict[str, Any] = json.loads(row.parameters) if row.parameters else {"v": []}
    driver = row.dialect.partition("+")[2]
    if "v" in stored:
        values = stored["v"]
        if row.executemany:
            parameters: Any = [_decode_set(one, driver) for one in values]
            sets = values
        else:
            parameters = _decode_set(values, driver)
            sets = [values]
        masked = any(
            _is_masked(value)
            for one in sets
            for value in (one.values() if isinstance(one, dict) else one)
        )
    else:
        # Written by an earlier version: every value tagged text ("str:Ada").
        values = stored["values"]
        if row.executemany:
            parameters = [_decode_set_tagged(one, driver) for one in values]
            flat = [v for one in values for v in (one.values() if isinstance(one, dict) else one)]
        else:
            parameters = _decode_set_tagged(values, driver)
            flat = list(values.values() if isinstance(values, dict) else values)
        masked = MASKED in flat
    extra = json.loads(row.extra) if row.extra else {}
    reason = extra.pop("reason", None)
    return LogEntry(
        id=row.id,
        transaction_id=row.transaction_id,
        kind=row.kind,
        dialect=row.dialect,
        statement=row.statement,
        paramstyle=stored.get("style", ""),
        parameters=parameters,
        executemany=bool(row.executemany),
        masked=masked,
        started_at=row.started_at,
        duration=row.duration,
        row_count=row.row_count,
        changed_by=row.changed_by,
        reason=reason,
        extra=extra.get("extra", {}),
    )


class _Masked:
    """Stands for a parameter value the log must not keep."""

    __slots__ = ()


MASK: Final = _Masked()


def _json_wrapped(value: Any) -> str | None:
    """Return the JSON text a driver's JSON wrapper (psycopg's ``Json``) holds, else ``None``."""
    kind = type(value)
    if kind.__name__ not in ("Json", "Jsonb"):
        return None
    if kind.__module__.startswith("psycopg2"):
        return json.dumps(value.adapted)
    if kind.__module__.startswith("psycopg"):
        return json.dumps(value.obj)
    return None
