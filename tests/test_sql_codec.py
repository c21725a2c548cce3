"""The codec's SQL spelling, checked against the Python codec on every database."""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Integer,
    Interval,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    Time,
    TypeDecorator,
    Unicode,
    Uuid,
    literal_column,
    select,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.types import TypeEngine

from sqlaudit import TriggerTypeError, _codec, _registry, _sql_codec


class Colour(enum.Enum):
    RED = "red"
    GREEN = 2


class Size(enum.Enum):
    SMALL = "s"
    LARGE = "l"


class Upper(TypeDecorator[str]):
    impl = String(20)
    cache_ok = True


def _cases(backend: str) -> list[tuple[str, TypeEngine[Any], list[Any]]]:
    cases: list[tuple[str, TypeEngine[Any], list[Any]]] = [
        ("int", Integer(), [0, -5, 7, 2**31 - 1]),
        ("small", SmallInteger(), [3, -3]),
        ("big", BigInteger(), [2**40, -(2**40)]),
        ("str", String(200), ["", "plain", 'it\'s "quoted"', "emoji 🎉 ünïcode", "back\\slash"]),
        ("text", Text(), ["line\nbreak", "x" * 300]),
        ("unicode", Unicode(50), ["Ωmega"]),
        ("flag", Boolean(), [True, False]),
        ("colour", SAEnum(Colour), [Colour.RED, Colour.GREEN]),
        ("size", SAEnum(Size, values_callable=lambda e: [m.value for m in e]), [Size.LARGE]),
        ("plain_enum", SAEnum("a", "b", name="plain_enum"), ["a", "b"]),
        ("day", Date(), [date(2026, 1, 2), date(999, 12, 31)]),
        (
            "moment",
            DateTime(),
            [datetime(2026, 1, 2, 3, 4, 5), datetime(2026, 1, 2, 3, 4, 5, 120)]
            if backend != "mariadb"
            else [datetime(2026, 1, 2, 3, 4, 5)],
        ),
        ("ident", Uuid(), [uuid.UUID("12345678-9abc-4def-8123-456789abcdef"), uuid.uuid4()]),
    ]
    cases += [
        ("price", Numeric(10, 2), [Decimal("1.50"), Decimal("-0.05"), Decimal("12345678.00")]),
        ("rate", Numeric(12, 6), [Decimal("0.000001"), Decimal("3.141593"), Decimal(5)]),
    ]
    if backend != "sqlite":
        cases.append(("blob", LargeBinary(), [b"", b"\x00\xff binary", bytes(range(256))]))
    return cases


def test_every_supported_type_is_spelled_as_python_encodes_it(engine, backend):
    """For each supported type and value, the SQL spelling of the stored value equals the Python codec's text of the loaded value."""
    cases = _cases(backend)
    metadata = MetaData()
    columns = [Column(name, column_type) for name, column_type, _ in cases]
    table = Table("codec_values", metadata, Column("id", Integer, primary_key=True), *columns)
    metadata.create_all(engine)
    rows = max(len(values) for _, _, values in cases)
    with engine.begin() as connection:
        for n in range(rows):
            values = {name: vals[n] if n < len(vals) else None for name, _, vals in cases}
            connection.execute(table.insert().values(id=n + 1, **values))
        connection.execute(table.insert().values(id=rows + 1))  # every value NULL
        checked = 0
        for name, column_type, _ in cases:
            spell = _sql_codec.value_sql(column_type, engine.dialect.name, f"Values.{name}")
            quoted = engine.dialect.identifier_preparer.quote(name)
            spelled_column = literal_column(spell("codec_values." + quoted))
            query = select(table.c[name], spelled_column).order_by(table.c.id)
            for loaded, spelled in connection.execute(query):
                assert spelled == _codec.encode(loaded), (name, loaded)
                checked += 1
    assert checked == len(cases) * (rows + 1)


@pytest.mark.parametrize(
    ("key_types", "values"),
    [
        ([BigInteger()], [(1,), (2**40,)]),
        ([String(40)], [("a",), ("it's",), ("emoji 🎉",)]),
        ([Uuid()], [(uuid.UUID("12345678-9abc-4def-8123-456789abcdef"),)]),
        ([Integer(), String(20)], [(7, "a"), (8, 'quote"d'), (9, "back\\slash")]),
    ],
    ids=["int", "str", "uuid", "composite"],
)
def test_resource_id_is_spelled_as_python_encodes_it(engine, key_types, values):
    """The SQL spelling of a (composite) key equals encode_resource_id of the loaded key."""
    metadata = MetaData()
    names = [f"k{n}" for n in range(len(key_types))]
    table = Table(
        "codec_keys",
        metadata,
        *(
            Column(name, kind, primary_key=True, autoincrement=False)
            for name, kind in zip(names, key_types, strict=True)
        ),
    )
    metadata.create_all(engine)
    spell = _sql_codec.key_sql(key_types, engine.dialect.name, "Keys.id")
    quote = engine.dialect.identifier_preparer.quote
    with engine.begin() as connection:
        for row in values:
            connection.execute(table.insert().values(dict(zip(names, row, strict=True))))
        columns = "\x00".join(f"codec_keys.{quote(name)}" for name in names)
        result = connection.execute(select(*table.c, literal_column(spell(columns))))
        spelled = {tuple(row[:-1]): row[-1] for row in result}
    assert len(spelled) == len(values)
    for key, text_id in spelled.items():
        assert text_id == _registry.encode_resource_id(key)


@pytest.mark.parametrize(
    ("column_type", "dialects", "named"),
    [
        (Float(), ("postgresql", "mysql", "sqlite"), "float"),
        (JSON(), ("postgresql", "mysql", "sqlite"), "JSON"),
        (DateTime(timezone=True), ("postgresql", "mysql", "sqlite"), "aware datetime"),
        (Upper(), ("postgresql", "mysql", "sqlite"), "TypeDecorator"),
        (Time(), ("postgresql", "mysql", "sqlite"), "no SQL spelling"),
        (Interval(), ("postgresql",), "cannot be captured"),
        (Numeric(20, 10), ("postgresql", "mysql", "sqlite"), "scale"),
        (Numeric(), ("postgresql",), "scale"),
        (LargeBinary(), ("sqlite",), "base64"),
        (Uuid(as_uuid=False), ("mysql", "sqlite"), "as_uuid"),
    ],
)
def test_types_the_database_cannot_spell_are_refused_naming_the_column(
    column_type, dialects, named
):
    """A type whose encoding the database cannot spell exactly raises TriggerTypeError naming the column and the fix."""
    for dialect in dialects:
        with pytest.raises(TriggerTypeError) as raised:
            _sql_codec.value_sql(column_type, dialect, "Invoice.total")
        message = str(raised.value)
        assert "Invoice.total" in message
        assert named in message
        assert "capture='session'" in message


@pytest.mark.parametrize("key_type", [Boolean(), DateTime(), Float(), Upper()])
def test_key_types_without_a_spelling_are_refused(key_type):
    """A resource id made of a type with no SQL spelling is refused, naming resource_id_field as the way out."""
    with pytest.raises(TriggerTypeError, match="resource_id_field"):
        _sql_codec.key_sql([key_type], "postgresql", "Invoice.id")


def test_literal_doubles_quotes():
    """SQL string literals double embedded quotes and spell None as NULL."""
    assert _sql_codec.literal("it's") == "'it''s'"
    assert _sql_codec.literal(None) == "NULL"
