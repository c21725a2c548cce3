"""The typed value encoding of ``sqlaudit._codec``: round trips, stored format, fallback."""

from __future__ import annotations

import enum
import math
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest

from sqlaudit._codec import decode, encode
from sqlaudit.exceptions import FallbackEncodingWarning


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Status(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class Shape(enum.Enum):
    """An Enum whose values are not JSON: only its name can be stored."""

    SQUARE = Decimal("4")


def round_trip(value: Any, **options: Any) -> Any:
    return decode(encode(value), **options)


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "",
        "a:b:c",
        "int:5",
        "Привіт, 世界 🎉",
        0,
        7,
        -42,
        2**100,
        -(2**70),
        0.1,
        -2.5,
        1e308,
        math.inf,
        -math.inf,
        True,
        False,
        Decimal("3.14159"),
        Decimal("-0.001"),
        datetime(2026, 3, 1, 12, 30, 45),
        datetime(2026, 3, 1, 12, 30, 45, 123456),
        date(2026, 3, 1),
        time(9, 30),
        time(23, 59, 59, 999999),
        timedelta(days=3, seconds=7, microseconds=11),
        timedelta(days=-2, hours=5),
        timedelta(microseconds=-1),
        UUID("12345678-1234-5678-1234-567812345678"),
        b"",
        b"\x00\x01\xfe\xff",
        {"a": 1, "nested": {"b": [1, 2.5, None, True, "x"]}},
        [1, "two", [3, {"four": 4}]],
        [],
        {},
    ],
    ids=repr,
)
def test_round_trip_keeps_value_and_type(value):
    """A value of a supported type decodes to an equal value of the very same type."""
    decoded = round_trip(value)
    assert type(decoded) is type(value)
    assert decoded == value


def test_none_stays_none():
    """None is stored as NULL (None) and NULL decodes to None."""
    assert encode(None) is None
    assert decode(None) is None


def test_nan_round_trips():
    """A float NaN comes back as a float NaN."""
    decoded = round_trip(math.nan)
    assert isinstance(decoded, float)
    assert math.isnan(decoded)


def test_negative_zero_keeps_its_sign():
    """-0.0 comes back as -0.0, not 0.0."""
    assert math.copysign(1.0, round_trip(-0.0)) == -1.0


def test_bool_does_not_come_back_as_int():
    """True and False come back as the bool singletons, and 1 and 0 as ints."""
    assert round_trip(True) is True
    assert round_trip(False) is False
    assert type(round_trip(1)) is int
    assert type(round_trip(0)) is int
    assert encode(True) != encode(1)


@pytest.mark.parametrize("text", ["1.50", "0.00", "1E+3", "-12.3400", "1.000000000000000000001"])
def test_decimal_keeps_exponent_and_trailing_zeros(text):
    """A Decimal comes back with its exact digits and exponent, trailing zeros included."""
    decoded = round_trip(Decimal(text))
    assert type(decoded) is Decimal
    assert str(decoded) == text
    assert decoded.as_tuple() == Decimal(text).as_tuple()


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 3, 1, 12, 30, 45, 123456, tzinfo=UTC),
        datetime(2026, 3, 1, 12, 30, 45, 1, tzinfo=ZoneInfo("Europe/Kyiv")),
        datetime(2026, 7, 1, 8, 0, tzinfo=ZoneInfo("America/New_York")),
        datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    ],
    ids=str,
)
def test_aware_datetime_keeps_instant_offset_and_microseconds(value):
    """An aware datetime comes back aware, at the same instant, with its UTC offset and microseconds."""
    decoded = round_trip(value)
    assert type(decoded) is datetime
    assert decoded.tzinfo is not None
    assert decoded == value
    assert decoded.utcoffset() == value.utcoffset()
    assert decoded.replace(tzinfo=None) == value.replace(tzinfo=None)
    assert decoded.microsecond == value.microsecond


def test_naive_datetime_stays_naive():
    """A naive datetime comes back naive, with its wall time and microseconds."""
    value = datetime(2026, 3, 1, 12, 30, 45, 987654)
    decoded = round_trip(value)
    assert decoded.tzinfo is None
    assert decoded == value


def test_time_with_fixed_offset_keeps_it():
    """A time with a fixed-offset tzinfo comes back with the same offset."""
    value = time(12, 30, 15, 500, tzinfo=timezone(timedelta(hours=-3)))
    decoded = round_trip(value)
    assert type(decoded) is time
    assert decoded == value
    assert decoded.utcoffset() == timedelta(hours=-3)
    assert decoded.microsecond == 500


def test_naive_time_stays_naive():
    """A time without tzinfo comes back without tzinfo."""
    decoded = round_trip(time(7, 5, 3))
    assert decoded == time(7, 5, 3)
    assert decoded.tzinfo is None


@pytest.mark.parametrize(
    "value",
    [b"\x00abc\xff", bytearray(b"\x00abc\xff"), memoryview(b"\x00abc\xff")],
    ids=["bytes", "bytearray", "memoryview"],
)
def test_bytes_likes_come_back_as_bytes(value):
    """bytes, bytearray and memoryview all come back as the same bytes."""
    decoded = round_trip(value)
    assert type(decoded) is bytes
    assert decoded == b"\x00abc\xff"


def test_tuple_comes_back_as_list():
    """A tuple (nested ones too) is stored as a JSON array and comes back as a list."""
    decoded = round_trip((1, "a", (2, None)))
    assert decoded == [1, "a", [2, None]]
    assert type(decoded) is list
    assert type(decoded[2]) is list


@pytest.mark.parametrize(
    "member", [Color.RED, Color.GREEN, Priority.HIGH, Status.CLOSED, Shape.SQUARE], ids=str
)
def test_enum_member_comes_back_as_same_member(member):
    """A member of an importable Enum (plain, IntEnum, StrEnum) comes back as that very member."""
    assert round_trip(member) is member


def test_int_enum_is_not_stored_as_plain_int():
    """An IntEnum member is stored as an enum, not as its int value."""
    assert encode(Priority.HIGH).startswith("enum:")
    assert encode(Priority.HIGH) != encode(2)


def test_str_enum_is_not_stored_as_plain_str():
    """A StrEnum member is stored as an enum, not as its str value."""
    assert encode(Status.OPEN).startswith("enum:")
    assert encode(Status.OPEN) != encode("open")


def _unimportable_enum() -> type[enum.Enum]:
    class Level(enum.Enum):  # a local class: its qualified name cannot be imported
        DEBUG = 10
        ERROR = 40

    return Level


def test_unimportable_enum_decodes_through_enum_hint():
    """An Enum whose class cannot be imported decodes to the member of the enum_hint class."""
    level = _unimportable_enum()
    current = _unimportable_enum()  # the model's Enum class "today": same names, another class
    decoded = decode(encode(level.ERROR), enum_hint=current)
    assert decoded is current.ERROR


def test_enum_hint_is_tried_first():
    """enum_hint wins over the stored class when it has a member of that name."""
    hint = enum.Enum("Color", {"RED": "rouge", "GREEN": "vert"})
    assert decode(encode(Color.GREEN), enum_hint=hint) is hint.GREEN


def test_unimportable_enum_without_hint_falls_back_to_value():
    """Without a hint and without an importable class, the member's stored value comes back."""
    level = _unimportable_enum()
    decoded = decode(encode(level.ERROR))
    assert decoded == 40
    assert type(decoded) is int


def test_unimportable_enum_with_non_json_value_falls_back_to_name():
    """An unimportable member whose value is not JSON comes back as its name."""

    class Unit(enum.Enum):
        METRE = Decimal("1")

    assert decode(encode(Unit.METRE)) == "METRE"


def test_enum_hint_without_the_member_falls_back_to_stored_class():
    """A hint lacking the stored member's name does not stop the stored class from decoding it."""
    hint = enum.Enum("Other", {"BLUE": 3})
    assert decode(encode(Color.RED), enum_hint=hint) is Color.RED


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (5, "int:5"),
        (-12, "int:-12"),
        ("a:b", "str:a:b"),
        ("", "str:"),
        (True, "bool:true"),
        (False, "bool:false"),
        (1.5, "float:1.5"),
        (math.inf, "float:inf"),
        (Decimal("1.50"), "decimal:1.50"),
        (datetime(2026, 3, 1, 12, 0, 0, 123456), "datetime:2026-03-01T12:00:00.123456"),
        (
            datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
            "datetime:2026-03-01T14:00:00+02:00",
        ),
        (date(2026, 3, 1), "date:2026-03-01"),
        (time(9, 30), "time:09:30:00"),
        (timedelta(days=1, seconds=2, microseconds=3), "timedelta:1,2,3"),
        (timedelta(seconds=-1), "timedelta:-1,86399,0"),
        (
            UUID("12345678-1234-5678-1234-567812345678"),
            "uuid:12345678-1234-5678-1234-567812345678",
        ),
        (b"hi", "bytes:aGk="),
        ({"a": [1, 2]}, 'json:{"a":[1,2]}'),
        ((1, "x"), 'json:[1,"x"]'),
    ],
    ids=repr,
)
def test_stored_text_format(value, text):
    """Values are stored as the documented ``tag:payload`` text, which other tools read."""
    assert encode(value) == text


def test_stored_text_format_of_enum():
    """An Enum member is stored as JSON naming its class path, member name and value."""
    assert encode(Color.RED) == (
        'enum:{"class":"' + Color.__module__ + ':Color","name":"RED","value":"red"}'
    )


class Opaque:
    """A class the codec knows nothing about."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __repr__(self) -> str:
        return f"Opaque({self.n})"


class BrokenRepr:
    """A class whose repr() raises."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def test_unknown_type_falls_back_to_repr_with_warning():
    """An object of an unknown class is stored as ``repr:<repr>`` with a FallbackEncodingWarning."""
    with pytest.warns(FallbackEncodingWarning, match="Opaque"):
        text = encode(Opaque(3))
    assert text == "repr:Opaque(3)"
    assert decode(text) == "Opaque(3)"


def test_unknown_type_with_broken_repr_still_encodes():
    """An object whose __repr__ raises is still encoded (as fallback text), with the warning."""
    with pytest.warns(FallbackEncodingWarning):
        text = encode(BrokenRepr())
    assert isinstance(text, str)
    assert text.startswith("repr:")
    assert "BrokenRepr" in text
    assert isinstance(decode(text), str)


def test_json_with_non_json_value_falls_back_with_warning():
    """A dict holding a value JSON cannot hold is stored as its repr, with the warning."""
    value = {"when": datetime(2026, 3, 1, 12, 0)}
    with pytest.warns(FallbackEncodingWarning):
        text = encode(value)
    assert text == "repr:" + repr(value)
    assert decode(text) == repr(value)


def test_list_with_non_json_value_falls_back_with_warning():
    """A list holding an object JSON cannot hold is stored as its repr, with the warning."""
    value = [1, Opaque(2)]
    with pytest.warns(FallbackEncodingWarning):
        text = encode(value)
    assert text == "repr:[1, Opaque(2)]"


@pytest.mark.parametrize(
    "text", ["hello", "no tag here", "", "http://example.com/a:b", "unknown:thing", "INT:5"]
)
def test_untagged_text_decodes_unchanged(text):
    """Text without a known tag (written by hand, say) decodes to itself."""
    assert decode(text) == text
