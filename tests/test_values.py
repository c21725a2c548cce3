"""Recorded values read back with their Python types, on every backend, and timestamps in the configured zone."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
    Interval,
    LargeBinary,
    Numeric,
    String,
    Time,
    TypeDecorator,
    Uuid,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqlaudit import FallbackEncodingWarning, get_resource_changes, track_table


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


@pytest.mark.parametrize(
    ("column_type", "first", "second"),
    [
        pytest.param(String(100), "alpha", "int:5", id="String"),
        pytest.param(String(100), "", "Ünïcødé ✓", id="String-unicode"),
        pytest.param(Integer(), 7, -42, id="Integer"),
        pytest.param(BigInteger(), 2**40, -(2**62), id="BigInteger"),
        pytest.param(Float(), 1.5, 2.25, id="Float"),
        pytest.param(Boolean(), True, False, id="Boolean"),
        pytest.param(Numeric(10, 2), Decimal("12.50"), Decimal("1234.05"), id="Numeric"),
        pytest.param(
            DateTime(),
            datetime(2026, 3, 1, 12, 30, 45),
            datetime(1999, 12, 31, 23, 59, 59),
            id="DateTime",
        ),
        pytest.param(Date(), date(2026, 3, 1), date(1999, 12, 31), id="Date"),
        pytest.param(Time(), time(9, 30), time(17, 45, 10), id="Time"),
        pytest.param(
            Interval(), timedelta(days=1, hours=2), timedelta(minutes=90, seconds=5), id="Interval"
        ),
        pytest.param(
            Uuid(),
            UUID("6f1c2a4e-8b3d-4c5e-9f70-1a2b3c4d5e6f"),
            UUID("0d9e8f7a-6b5c-4d3e-a2f1-0e9d8c7b6a59"),
            id="Uuid",
        ),
        pytest.param(LargeBinary(), b"\x00\x01\xff", b"second", id="LargeBinary"),
        pytest.param(
            JSON(), {"a": 1, "tags": ["x"]}, {"a": 2, "nested": {"b": None}}, id="JSON-dict"
        ),
        pytest.param(JSON(), [1, "two", 3.5], [{"k": "v"}], id="JSON-list"),
        pytest.param(SAEnum(Color, name="values_color"), Color.RED, Color.GREEN, id="Enum"),
    ],
)
def test_values_come_back_with_their_python_type(audit, column_type, first, second):
    """An insert and an update of a column read back as old/new values of the column's Python type."""

    @track_table(tracked_fields=["value"])
    class Item(audit.base):
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(primary_key=True)
        value: Mapped[Any] = mapped_column(column_type, nullable=True)

    audit.create_tables()
    with audit.Session() as session:
        item = Item(value=first)
        session.add(item)
        session.commit()
        item.value = second  # the commit expired it: the old value is loaded from the database
        session.commit()
        item_id = item.id
        changes = get_resource_changes(Item, session=session, filter_resource_ids=item_id)
    with audit.Session() as session:
        stored = session.get(Item, item_id).value

    assert [(c.operation, c.old_value, c.new_value) for c in changes] == [
        ("update", first, second),
        ("insert", None, first),
    ]
    assert [(type(c.old_value), type(c.new_value)) for c in changes] == [
        (type(first), type(second)),
        (type(None), type(first)),
    ]
    assert changes[0].new_value == stored
    if isinstance(first, enum.Enum):
        assert changes[0].old_value is first
        assert changes[0].new_value is second


def test_aware_datetime_records_what_the_database_holds(audit, backend):
    """A DateTime(timezone=True) records the instant on PostgreSQL, the naive wall time where it is stored so."""

    @track_table(tracked_fields=["at"])
    class Meeting(audit.base):
        __tablename__ = "meetings"
        id: Mapped[int] = mapped_column(primary_key=True)
        at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    first = datetime(2026, 3, 1, 14, 0, tzinfo=ZoneInfo("Europe/Kyiv"))
    second = datetime(2026, 6, 1, 9, 15, tzinfo=UTC)
    audit.create_tables()
    with audit.Session() as session:
        meeting = Meeting(at=first)
        session.add(meeting)
        session.commit()
        loaded = meeting.at  # what the database gave back
        meeting.at = second
        session.commit()
        update, insert = get_resource_changes(Meeting, session=session)

    # PostgreSQL keeps the instant; SQLite and MariaDB keep the wall time, naive.
    keeps_zone = backend == "postgresql"
    assert (loaded.tzinfo is not None) == keeps_zone
    assert insert.new_value == loaded
    assert (insert.new_value.tzinfo is not None) == keeps_zone
    assert update.old_value == insert.new_value  # the history chains
    assert update.new_value == (second if keeps_zone else second.replace(tzinfo=None))


@dataclass(frozen=True)
class Money:
    """A value object the codec does not know."""

    amount: Decimal
    currency: str


class MoneyType(TypeDecorator[Money]):
    """Stores a Money as ``"<amount> <currency>"`` text."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: Money | None, dialect: Any) -> str | None:
        return None if value is None else f"{value.amount} {value.currency}"

    def process_result_value(self, value: str | None, dialect: Any) -> Money | None:
        if value is None:
            return None
        amount, currency = value.split(" ")
        return Money(Decimal(amount), currency)


def test_custom_type_falls_back_to_repr_and_commits(audit):
    """A value of a custom class is recorded as its repr text, with a warning, and the commit goes through."""

    @track_table(tracked_fields=["price"])
    class Product(audit.base):
        __tablename__ = "products"
        id: Mapped[int] = mapped_column(primary_key=True)
        price: Mapped[Money] = mapped_column(MoneyType())

    first = Money(Decimal("9.99"), "EUR")
    second = Money(Decimal("12.50"), "USD")
    audit.create_tables()
    with audit.Session() as session:
        product = Product(price=first)
        session.add(product)
        with pytest.warns(FallbackEncodingWarning, match="Money"):
            session.commit()
        product.price = second
        with pytest.warns(FallbackEncodingWarning, match="Money"):
            session.commit()
        product_id = product.id
        changes = get_resource_changes(Product, session=session)
    with audit.Session() as session:
        assert session.get(Product, product_id).price == second

    assert [(c.operation, c.old_value, c.new_value) for c in changes] == [
        ("update", repr(first), repr(second)),
        ("insert", None, repr(first)),
    ]


def test_rows_of_a_removed_column_stay_readable(audit):
    """Changes recorded for a column the model no longer has still read back with their values."""

    @track_table(tracked_fields=["a", "b"])
    class WidgetV1(audit.base):
        __tablename__ = "widgets"
        id: Mapped[int] = mapped_column(primary_key=True)
        a: Mapped[str] = mapped_column(String(50))
        b: Mapped[date] = mapped_column(Date())

    audit.create_tables()
    with audit.Session() as session:
        widget = WidgetV1(a="one", b=date(2026, 1, 1))
        session.add(widget)
        session.commit()
        widget.b = date(2026, 2, 2)
        session.commit()
        widget_id = widget.id

    class LaterBase(DeclarativeBase):
        pass

    @track_table(tracked_fields=["a"])
    class WidgetV2(LaterBase):
        __tablename__ = "widgets"
        id: Mapped[int] = mapped_column(primary_key=True)
        a: Mapped[str] = mapped_column(String(50))

    with audit.Session() as session:
        changes = get_resource_changes(WidgetV2, session=session, filter_resource_ids=widget_id)

    assert sorted((c.operation, c.field_name, c.old_value, c.new_value) for c in changes) == [
        ("insert", "a", None, "one"),
        ("insert", "b", None, date(2026, 1, 1)),
        ("update", "b", date(2026, 1, 1), date(2026, 2, 2)),
    ]


def test_rows_of_a_retyped_column_keep_their_old_type(audit):
    """Changes recorded while a column was an Integer read back as ints after it became a String."""

    @track_table(tracked_fields=["code"])
    class PartV1(audit.base):
        __tablename__ = "parts"
        id: Mapped[int] = mapped_column(primary_key=True)
        code: Mapped[int] = mapped_column(Integer())

    audit.create_tables()
    with audit.Session() as session:
        part = PartV1(code=5)
        session.add(part)
        session.commit()
        part.code = 6
        session.commit()
        part_id = part.id

    class LaterBase(DeclarativeBase):
        pass

    @track_table(tracked_fields=["code"])
    class PartV2(LaterBase):
        __tablename__ = "parts"
        id: Mapped[int] = mapped_column(primary_key=True)
        code: Mapped[str] = mapped_column(String(20))

    with audit.Session() as session:
        update, insert = get_resource_changes(PartV2, session=session, filter_resource_ids=part_id)

    assert (update.old_value, update.new_value, insert.new_value) == (5, 6, 5)
    assert {type(update.old_value), type(update.new_value), type(insert.new_value)} == {int}


def _track_notes(audit: Any) -> type[Any]:
    @track_table(tracked_fields=["text"])
    class Note(audit.base):
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(primary_key=True)
        text: Mapped[str] = mapped_column(String(100))

    audit.create_tables()
    return Note


def test_timestamps_come_back_in_the_configured_zone(audit):
    """Timestamps come back aware, in config.time_zone, at the instant of the write."""
    audit.configure(time_zone="Europe/Kyiv")
    note_class = _track_notes(audit)
    before = datetime.now(UTC)
    with audit.Session() as session:
        session.add(note_class(text="hello"))
        session.commit()
    after = datetime.now(UTC)
    with audit.Session() as session:
        (change,) = get_resource_changes(note_class, session=session)

    assert isinstance(change.timestamp.tzinfo, ZoneInfo)
    assert change.timestamp.tzinfo.key == "Europe/Kyiv"
    assert before - timedelta(seconds=1) <= change.timestamp <= after + timedelta(seconds=1)


def test_frozen_clock_gives_the_exact_timestamp(audit):
    """With the clock frozen (freezegun), the recorded timestamp is exactly the frozen instant."""
    audit.configure(time_zone="Europe/Kyiv")
    note_class = _track_notes(audit)
    with freeze_time("2026-03-01 12:00:00"), audit.Session() as session:
        session.add(note_class(text="hello"))
        session.commit()
    with audit.Session() as session:
        (change,) = get_resource_changes(note_class, session=session)

    assert change.timestamp == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert change.timestamp.tzinfo.key == "Europe/Kyiv"
    assert change.timestamp.replace(tzinfo=None) == datetime(2026, 3, 1, 14, 0)
