"""The value encoding of :mod:`sqlaudit._codec`, spelled in SQL for database capture.

Database capture writes change rows from triggers, so every tracked column needs an
SQL expression that turns the stored value into exactly the text the Python codec
gives for the value SQLAlchemy loads from it (``int:5``, ``str:abc``,
``datetime:2026-01-02T03:04:05``...). :func:`value_sql` returns that expression for
one column on one dialect, or raises :class:`~sqlaudit.exceptions.TriggerTypeError`
when the database cannot spell the encoding exactly (a float, whose shortest
round-trip text differs between the database and Python; a JSON document, whose key
order and spacing the database does not keep; a ``TypeDecorator``, whose Python value
is not the stored one). A column refused here is refused when the triggers are
installed, never recorded differently from session capture.

:func:`key_sql` does the same for the resource id (:func:`sqlaudit._registry.encode_resource_id`).

Every spelling is checked against the Python codec on each database by
``tests/test_sql_codec.py``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    Numeric,
    String,
    TypeDecorator,
    Uuid,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.types import TypeEngine

from sqlaudit import _codec
from sqlaudit.exceptions import TriggerTypeError

__all__ = ["Spelling", "family", "key_sql", "literal", "same_family", "value_sql"]

# Given the SQL of a column reference (``NEW."name"``), the SQL of its encoded value.
Spelling = Callable[[str], str]

_POSTGRESQL = "postgresql"
_MYSQL = ("mysql", "mariadb")
_SQLITE = "sqlite"
# Python's Decimal str() switches to exponent notation below 1E-6 (0.0000001 is
# "1E-7"); a NUMERIC with at most 6 decimal places never gets there.
_MAX_SCALE = 6


def literal(text: str | None) -> str:
    """Return ``text`` as an SQL string literal (standard quoting, every dialect here).

    Example:
        >>> literal("it's")
        "'it''s'"
    """
    if text is None:
        return "NULL"
    return "'" + text.replace("'", "''") + "'"


def _concat(dialect: str, *parts: str) -> str:
    if dialect in _MYSQL:
        return "CONCAT(" + ", ".join(parts) + ")"
    return "(" + " || ".join(parts) + ")"


def _refuse(where: str, column_type: TypeEngine[Any], dialect: str, why: str, fix: str) -> NoReturn:
    raise TriggerTypeError(
        f"{where} ({column_type!r}) cannot be captured by database triggers on {dialect}: "
        f"{why} Track it with session capture (track_table(..., capture='session')), {fix}"
    )


def value_sql(column_type: TypeEngine[Any], dialect: str, where: str) -> Spelling:
    r"""Return the SQL spelling of the codec for values of ``column_type`` on ``dialect``.

    Args:
        column_type: The column's SQLAlchemy type.
        dialect: ``postgresql``, ``mysql``, ``mariadb`` or ``sqlite``.
        where: ``Model.field``, for the error message.

    Raises:
        TriggerTypeError: the database cannot spell the encoding of this type exactly.

    Example:
        >>> value_sql(Integer(), "postgresql", "Customer.age")('NEW."age"')
        '(\'int:\' || NEW."age"::text)'
    """
    if isinstance(column_type, TypeDecorator):
        return _refuse(
            where,
            column_type,
            dialect,
            "a TypeDecorator's Python value is not the value stored, so the database "
            "cannot encode what Python would.",
            "or track the column's underlying value.",
        )
    if isinstance(column_type, SAEnum):
        return _enum(column_type, dialect)
    if isinstance(column_type, Boolean):
        true = "x" if dialect == _POSTGRESQL else "x <> 0"
        return lambda x: (
            f"(CASE WHEN {x} IS NULL THEN NULL WHEN {true.replace('x', x)} "
            "THEN 'bool:true' ELSE 'bool:false' END)"
        )
    if isinstance(column_type, Integer):
        return lambda x: _concat(dialect, "'int:'", _as_text(x, dialect))
    if isinstance(column_type, Float):
        return _refuse(
            where,
            column_type,
            dialect,
            "a float's text in the database (digits, exponent form, '1' for 1.0) is not "
            "Python's repr().",
            "or store it as Numeric(precision, scale).",
        )
    if isinstance(column_type, Numeric):
        return _numeric(column_type, dialect, where)
    if isinstance(column_type, String):
        return lambda x: _concat(dialect, "'str:'", x)
    if isinstance(column_type, DateTime):
        return _datetime(column_type, dialect, where)
    if isinstance(column_type, Date):
        return _date(dialect)
    if isinstance(column_type, Uuid):
        return _uuid(column_type, dialect, where)
    if isinstance(column_type, LargeBinary):
        return _bytes(column_type, dialect, where)
    return _refuse(
        where,
        column_type,
        dialect,
        "sqlaudit has no SQL spelling of its encoding for this type (JSON, intervals, "
        "times of day, arrays and custom types are encoded in Python only).",
        "or track a column of a supported type (integers, booleans, strings, enums, "
        "Numeric, Date, DateTime, Uuid, LargeBinary).",
    )


def _as_text(x: str, dialect: str) -> str:
    if dialect == _POSTGRESQL:
        return f"{x}::text"
    if dialect in _MYSQL:
        return f"CAST({x} AS CHAR)"
    return f"CAST({x} AS TEXT)"


def _enum(column_type: SAEnum, dialect: str) -> Spelling:
    enum_class = column_type.enum_class
    if enum_class is None:
        return lambda x: _concat(dialect, "'str:'", _as_text(x, dialect))
    # What SQLAlchemy stores for each member: its name, or what values_callable gives,
    # in the order of __members__ (aliases included); the first spelling wins.
    by_stored: dict[str, enum.Enum] = {}
    for stored, member in zip(column_type.enums, enum_class.__members__.values(), strict=False):
        by_stored.setdefault(stored, member)
    cases = " ".join(
        f"WHEN {literal(stored)} THEN {literal(_codec.encode(member))}"
        for stored, member in by_stored.items()
    )
    return lambda x: f"(CASE {_as_text(x, dialect)} {cases} ELSE NULL END)"


def _numeric(column_type: Numeric[Any], dialect: str, where: str) -> Spelling:
    scale = column_type.scale
    if not column_type.asdecimal or scale is None or scale > _MAX_SCALE:
        return _refuse(
            where,
            column_type,
            dialect,
            "only a NUMERIC with a declared scale of at most 6 reads back as a Decimal "
            "whose text the database can spell.",
            f"or declare Numeric(precision, scale) with scale <= {_MAX_SCALE}.",
        )
    if dialect == _SQLITE:
        # SQLite keeps the number as REAL (or INTEGER); SQLAlchemy reads it back as
        # Decimal("%.<scale>f" % value), which printf() spells the same way.
        return lambda x: (
            f"(CASE WHEN {x} IS NULL THEN NULL ELSE 'decimal:' || printf('%.{scale}f', {x}) END)"
        )
    return lambda x: _concat(dialect, "'decimal:'", _as_text(x, dialect))


def _date(dialect: str) -> Spelling:
    if dialect == _POSTGRESQL:
        return lambda x: f"('date:' || to_char({x}, 'YYYY-MM-DD'))"
    if dialect in _MYSQL:
        return lambda x: f"CONCAT('date:', DATE_FORMAT({x}, '%Y-%m-%d'))"
    return lambda x: f"('date:' || substr({x}, 1, 10))"


def _datetime(column_type: DateTime, dialect: str, where: str) -> Spelling:
    if column_type.timezone:
        return _refuse(
            where,
            column_type,
            dialect,
            "an aware datetime is recorded with the UTC offset it was given in Python, "
            "which the database does not keep.",
            "or use DateTime(timezone=False) holding UTC.",
        )
    # isoformat(): 'YYYY-MM-DDTHH:MM:SS', then '.ffffff' only when microseconds != 0.
    if dialect == _POSTGRESQL:
        return lambda x: (
            f"('datetime:' || to_char({x}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE "
            f"WHEN to_char({x}, 'US') <> '000000' THEN to_char({x}, '.US') ELSE '' END)"
        )
    if dialect in _MYSQL:
        return lambda x: (
            f"CONCAT('datetime:', DATE_FORMAT({x}, '%Y-%m-%dT%H:%i:%s'), "
            f"IF(MICROSECOND({x}) <> 0, DATE_FORMAT({x}, '.%f'), ''))"
        )
    # SQLAlchemy stores 'YYYY-MM-DD HH:MM:SS.ffffff' on SQLite.
    return lambda x: (
        f"('datetime:' || substr({x}, 1, 10) || 'T' || substr({x}, 12, 8) || CASE "
        f"WHEN length({x}) > 19 AND substr({x}, 21) <> '000000' "
        f"THEN '.' || substr({x}, 21) ELSE '' END)"
    )


def _hex_uuid(x: str, dialect: str) -> str:
    # 32 hex digits (SQLAlchemy's Uuid where there is no native type), or a native
    # UUID's text (MariaDB's UUID type) -> the canonical form.
    digits = f"replace(lower({_as_text(x, dialect)}), '-', '')"
    parts = [f"substr({digits}, {start}, {length})" for start, length in _UUID_PARTS]
    dashed = ", '-', ".join(parts)
    if dialect in _MYSQL:
        return f"CONCAT({dashed})"
    return " || '-' || ".join(parts)


_UUID_PARTS = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))


def _uuid(column_type: Uuid[Any], dialect: str, where: str) -> Spelling:
    native = dialect == _POSTGRESQL and column_type.native_uuid
    if not column_type.as_uuid and not native:
        return _refuse(
            where,
            column_type,
            dialect,
            "Uuid(as_uuid=False) stores 32 hex digits but loads the text it was given.",
            "or use Uuid() (as_uuid=True).",
        )
    tag = "'uuid:'" if column_type.as_uuid else "'str:'"
    if native:
        return lambda x: f"({tag} || {x}::text)"
    return lambda x: _concat(dialect, tag, f"({_hex_uuid(x, dialect)})")


def _bytes(column_type: LargeBinary, dialect: str, where: str) -> Spelling:
    if dialect == _POSTGRESQL:
        return lambda x: f"('bytes:' || translate(encode({x}, 'base64'), E'\\n', ''))"
    if dialect in _MYSQL:
        return lambda x: (
            f"CONCAT('bytes:', CONVERT(REPLACE(TO_BASE64({x}), CHAR(10), '') USING utf8mb4))"
        )
    return _refuse(
        where,
        column_type,
        dialect,
        "SQLite has no base64 function to spell the encoding of bytes.",
        "or use PostgreSQL, MySQL or MariaDB for database capture of binary columns.",
    )


def key_sql(column_types: Sequence[TypeEngine[Any]], dialect: str, where: str) -> Spelling:
    r"""Return the SQL spelling of the resource id over the key columns.

    The returned function takes the SQL of each key column, joined by ``"\x00"``.
    One column gives its text (``7``, a UUID in canonical form); several give a
    compact JSON array of their texts (``["7","a"]``).

    Raises:
        TriggerTypeError: a key column is not an integer, a string or a UUID.

    Example:
        >>> key_sql([Integer()], "sqlite", "Customer.id")('NEW."id"')
        'CAST(NEW."id" AS TEXT)'
    """
    parts: list[Callable[[str], str]] = []
    for column_type in column_types:
        if isinstance(column_type, TypeDecorator | SAEnum | Boolean):
            parts.append(_refuse_key(where, column_type, dialect))
        elif isinstance(column_type, Integer):
            parts.append(lambda x: _as_text(x, dialect))
        elif isinstance(column_type, String):
            parts.append(lambda x: x)
        elif isinstance(column_type, Uuid) and column_type.as_uuid:
            if dialect == _POSTGRESQL and column_type.native_uuid:
                parts.append(lambda x: f"{x}::text")
            else:
                parts.append(lambda x: f"({_hex_uuid(x, dialect)})")
        else:
            parts.append(_refuse_key(where, column_type, dialect))

    def spell(columns: str) -> str:
        names = columns.split("\x00")
        texts = [part(name) for part, name in zip(parts, names, strict=True)]
        if len(texts) == 1:
            return texts[0]
        if dialect == _POSTGRESQL:
            quoted = [f"to_json(({text})::text)::text" for text in texts]
            return "('[' || " + " || ',' || ".join(quoted) + " || ']')"
        if dialect in _MYSQL:
            quoted = [f"JSON_QUOTE({text})" for text in texts]
            return "CONCAT('[', " + ", ',', ".join(quoted) + ", ']')"
        return "json_array(" + ", ".join(texts) + ")"

    return spell


def _refuse_key(where: str, column_type: TypeEngine[Any], dialect: str) -> Any:
    return _refuse(
        where,
        column_type,
        dialect,
        "a resource id made of this type has no SQL spelling (keys of integers, strings "
        "and UUIDs do).",
        "or set resource_id_field to an integer, string or UUID column.",
    )


def family(column_type: TypeEngine[Any]) -> str:
    """Return the kind of value a column holds, as far as its encoding goes.

    Coarse on purpose: it compares a model's column with the one the database
    reflects, which spells the same type in its own words.

    Example:
        >>> family(Numeric(10, 2)), family(String(20))
        ('decimal:2', 'str')
    """
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    if isinstance(column_type, Boolean):
        return "bool"
    if isinstance(column_type, Integer):
        return "int"
    if isinstance(column_type, Float):
        return "float"
    if isinstance(column_type, Numeric):
        return f"decimal:{column_type.scale}"
    if isinstance(column_type, String):  # Enum included: the database holds its text
        return "str"
    if isinstance(column_type, DateTime):
        return "datetime"
    if isinstance(column_type, Date):
        return "date"
    if isinstance(column_type, Uuid):
        return "uuid"
    if isinstance(column_type, LargeBinary):
        return "bytes"
    return type(column_type).__name__.lower()


def same_family(declared: TypeEngine[Any], reflected: TypeEngine[Any], dialect: str) -> bool:
    """Tell whether the database's column still holds what the model's type declares.

    Where the database has no type of its own, its spelling is accepted: a boolean
    is an integer on MySQL/MariaDB and SQLite, a UUID 32 characters.

    Example:
        >>> same_family(Integer(), String(10), "postgresql")
        False
    """
    ours, theirs = family(declared), family(reflected)
    if ours == theirs:
        return True
    if dialect != _POSTGRESQL:
        return (ours, theirs) in {("bool", "int"), ("uuid", "str")}
    return False
