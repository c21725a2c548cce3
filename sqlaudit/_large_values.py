"""Change rows too large for one MySQL/MariaDB statement: written in pieces.

MySQL and MariaDB refuse any statement larger than the server's
``max_allowed_packet`` (16 MB by default on MariaDB, 64 MB on MySQL 8), and a change
row carries two values: an UPDATE setting a 10 MB text fits in 16 MB, the INSERT of
its change row (the old and the new 10 MB value) does not. :func:`write_changes`
sends such a row on its own, in pieces, in the caller's transaction: each value that
does not fit beside the others first goes to a user variable of the connection, in a
statement of its own (``SET @sqlaudit_old_value = ...``), then one INSERT writes the
row, reading those values from the variables, which are emptied right after. The row
is written whole, by one INSERT, so it keeps its place in the order of writing (its
id), and the change table never sees an UPDATE (which the append-only guard,
:func:`sqlaudit.install_guard`, would refuse).

Every value is stored in full, unless it cannot fit in a statement even alone (a
``bytes`` value grows by a third in base64, so one of more than about three
quarters of the packet). Such a value is stored truncated, behind a marker::

    truncated:<length of the full encoded value, in characters>:<its first characters>

The first characters are at most an eighth of ``max_allowed_packet``. Every value
the codec writes starts with its type tag (``str:``, ``bytes:`` ...) and no tag is
``truncated``, so the marker reads back unambiguously, as a :class:`TruncatedValue`.

PostgreSQL (1 GB a value) and SQLite (1 GB a row by default) take rows as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, literal_column, text
from sqlalchemy.engine import Connection

from sqlaudit._schema import CHANGE_COLUMNS

__all__ = ["MARKER", "TruncatedValue", "decode_marker", "truncate", "write_changes"]

MARKER = "truncated:"

_VALUES = ("old_value", "new_value")
_POSITIONS = tuple(CHANGE_COLUMNS.index(name) for name in _VALUES)
# Below this many characters of values, a row is never measured: even at 8 bytes a
# character (4 in UTF-8, doubled by escaping) it stays under 1 MiB, and no server
# in use runs with a smaller max_allowed_packet.
_MEASURE_FROM = 1 << 17
# Room for the statement's own text and quoting, besides the values measured.
_STATEMENT = 4096
_ESCAPED = (b"\\", b"'", b'"', b"\0", b"\n", b"\r", b"\x1a")
_PACKET_KEY = "sqlaudit.max_allowed_packet"

WriteBatch = Callable[[Connection, Table, Sequence[Sequence[Any]], Mapping[str, Any] | None], None]


@dataclass(frozen=True, slots=True)
class TruncatedValue:
    """A value too large for the database to store in full: its size and its start.

    Only MySQL/MariaDB truncate, and only a value that cannot fit in one statement
    (``max_allowed_packet``) even on its own.

    Attributes:
        length: The length of the full encoded value, in characters (tag included).
        prefix: Its first characters, tag included (``'bytes:iVBORw0KGgo...'``).

    Example:
        >>> value = TruncatedValue(length=22_369_628, prefix="bytes:iVBORw0KGgo")
        >>> value.type_tag
        'bytes'
    """

    length: int
    prefix: str

    @property
    def type_tag(self) -> str:
        """The codec's tag of the value that was truncated (``str``, ``bytes``, ``json`` ...)."""
        return self.prefix.partition(":")[0]


def truncate(text: str, limit: int) -> str:
    """Return the marker for ``text``, with at most ``limit // 8`` of its characters.

    Example:
        >>> truncate("str:" + "a" * 100, 80)
        'truncated:104:str:a'
    """
    keep = max(limit // 8 - len(MARKER) - 20, 0)
    return f"{MARKER}{len(text)}:{text[:keep]}"


def decode_marker(text: str) -> TruncatedValue | None:
    """Read a stored value written by :func:`truncate`; ``None`` if it is no marker.

    Example:
        >>> decode_marker("truncated:104:str:a")
        TruncatedValue(length=104, prefix='str:a')
        >>> decode_marker("str:truncated:1:x") is None
        True
    """
    if not text.startswith(MARKER):
        return None
    length, sep, prefix = text[len(MARKER) :].partition(":")
    if not sep or not length.isdigit():
        return None
    return TruncatedValue(length=int(length), prefix=prefix)


def write_changes(
    connection: Connection,
    table: Table,
    rows: Sequence[Sequence[Any]],
    execution_options: Mapping[str, Any] | None,
    write_batch: WriteBatch,
) -> None:
    """Write ``rows`` (in :data:`CHANGE_COLUMNS` order) in order, each fitting a statement.

    Runs of rows that fit go to ``write_batch`` (the one-statement writer); a row
    too large for one statement is written alone, in pieces. Off MySQL/MariaDB, or
    when no row is large, this is one call of ``write_batch``.
    """
    if connection.dialect.name not in ("mysql", "mariadb") or not any(map(_is_large, rows)):
        write_batch(connection, table, rows, execution_options)
        return
    budget = _packet(connection) - _STATEMENT
    run: list[Sequence[Any]] = []
    for row in rows:
        if not _is_large(row) or sum(_wire_size(value) for value in row) <= budget:
            run.append(row)
            continue
        if run:
            write_batch(connection, table, run, execution_options)
            run = []
        _write_alone(connection, table, row, budget, execution_options)
    if run:
        write_batch(connection, table, run, execution_options)


def _is_large(row: Sequence[Any]) -> bool:
    return sum(len(row[i]) for i in _POSITIONS if isinstance(row[i], str)) >= _MEASURE_FROM


def _wire_size(value: Any) -> int:
    """Bytes ``value`` takes in a statement, escaping included (an upper bound for others)."""
    if value is None:
        return 4
    data = (value if isinstance(value, str) else str(value)).encode("utf-8", "surrogatepass")
    return len(data) + sum(data.count(char) for char in _ESCAPED) + 2


def _packet(connection: Connection) -> int:
    """Return the server's max_allowed_packet, read once per database connection."""
    packet = connection.info.get(_PACKET_KEY)
    if packet is None:
        packet = int(connection.exec_driver_sql("SELECT @@max_allowed_packet").scalar_one())
        connection.info[_PACKET_KEY] = packet
    return int(packet)


def _write_alone(
    connection: Connection,
    table: Table,
    row: Sequence[Any],
    budget: int,
    execution_options: Mapping[str, Any] | None,
) -> None:
    values = dict(zip(CHANGE_COLUMNS, row, strict=True))
    room = budget - sum(_wire_size(values[name]) for name in CHANGE_COLUMNS if name not in _VALUES)
    later: list[tuple[str, str]] = []
    for name in _VALUES:
        value = values[name]
        if value is None:
            continue
        if _wire_size(value) > budget:
            value = values[name] = truncate(value, budget)
        size = _wire_size(value)
        if size <= room:
            room -= size
        else:
            later.append((name, value))
            values[name] = None
    options = dict(execution_options or {})
    variables = {name: f"@sqlaudit_{name}" for name, _ in later}
    for name, value in later:
        connection.execute(text(f"SET {variables[name]} = :value"), {"value": value})
        del values[name]
    statement = table.insert().values(
        {name: literal_column(variable) for name, variable in variables.items()}
    )
    try:
        connection.execute(statement, values, execution_options=options)
    finally:
        if variables:
            # Free what they hold (up to a packet each) on the pooled connection.
            emptied = ", ".join(f"{variable} = NULL" for variable in variables.values())
            connection.exec_driver_sql(f"SET {emptied}")
