"""``get_resource_changes`` on every backend: filters, order, paging, date ranges and sessions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from freezegun import freeze_time
from sqlalchemy import String, Uuid
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from sqlaudit import SQLAuditConfig, get_resource_changes, set_config, track_table

NEW_YORK = ZoneInfo("America/New_York")  # UTC-5 in January
ALPHA = UUID("00000000-0000-4000-8000-00000000000a")
BETA = UUID("00000000-0000-4000-8000-00000000000b")


def at(hour: int, minute: int = 0, *, day: int = 15) -> datetime:
    """Return an aware UTC instant on ``day`` January 2026."""
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC)


def declare_customer(base: Any) -> type[Any]:
    """Declare a ``Customer`` (id, name, email) tracking name and email."""

    @track_table(tracked_fields=["name", "email"])
    class Customer(base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str] = mapped_column(String(100))
        email: Mapped[str | None] = mapped_column(String(100))

    return Customer


def changes_of(audit: Any, model: type[Any], **filters: Any) -> list[Any]:
    """Return ``get_resource_changes(model, **filters)`` read with a session of ``audit``."""
    with audit.Session() as session:
        return get_resource_changes(model, session=session, **filters)


def summary(changes: list[Any]) -> list[tuple[str, str, Any]]:
    """Return ``(resource_id, field_name, new_value)`` of each change, in the order given."""
    return [(c.resource_id, c.field_name, c.new_value) for c in changes]


def committed_at(audit: Any, customer: type[Any], instants: list[datetime]) -> None:
    """Insert customer 1 named ``"v0"`` at the first instant, rename it ``"v<n>"`` at the others."""
    for number, instant in enumerate(instants):
        with freeze_time(instant), audit.Session() as session:
            if number == 0:
                session.add(customer(id=1, name="v0"))
            else:
                session.get(customer, 1).name = f"v{number}"
            session.commit()


def names(changes: list[Any]) -> list[Any]:
    """Return the new values of the changes, in the order given."""
    return [c.new_value for c in changes]


# --- filters --------------------------------------------------------------------------------


def test_filters_combine_with_and(audit):
    """Resource ids, fields, users and a date range together keep only rows matching all four."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    with freeze_time(at(10)), audit.Session() as session:
        audit.user = 1
        for number in (1, 2, 3):
            session.add(customer(id=number, name=f"c{number}", email=f"c{number}@example.com"))
        session.commit()
    with freeze_time(at(11)), audit.Session() as session:
        audit.user = 2
        session.get(customer, 1).name = "c1 by 2"
        session.get(customer, 2).name = "c2 by 2"
        session.commit()
    with freeze_time(at(12)), audit.Session() as session:
        audit.user = 1
        session.get(customer, 1).name = "c1 by 1"
        session.get(customer, 1).email = "c1@example.org"
        session.get(customer, 2).name = "c2 by 1"
        session.get(customer, 3).name = "c3 by 1"
        session.commit()

    changes = changes_of(
        audit,
        customer,
        filter_resource_ids=[1, 2],
        filter_fields="name",
        filter_user_ids=1,
        filter_date_range=(at(10, 30), at(12)),
    )
    assert sorted(summary(changes)) == [("1", "name", "c1 by 1"), ("2", "name", "c2 by 1")]
    assert {(c.changed_by, c.timestamp) for c in changes} == {("1", at(12))}


def test_resource_id_as_int_or_str_matches_the_same_resource(audit):
    """``2`` and ``"2"``, alone or in a list, select resource 2's changes and no other's."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    with audit.Session() as session:
        session.add_all([customer(id=n, name=f"c{n}") for n in (1, 2, 12, 22)])
        session.commit()
    expected = [("2", "name", "c2")]
    assert summary(changes_of(audit, customer, filter_resource_ids=2)) == expected
    assert summary(changes_of(audit, customer, filter_resource_ids="2")) == expected
    assert summary(changes_of(audit, customer, filter_resource_ids=[2])) == expected
    assert summary(changes_of(audit, customer, filter_resource_ids=["2"])) == expected


def test_resource_ids_given_as_a_list_select_each_listed_resource(audit):
    """A list mixing int and str ids selects exactly those resources; an empty list selects none."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    with audit.Session() as session:
        session.add_all([customer(id=n, name=f"c{n}") for n in (1, 2, 3)])
        session.commit()
    changes = changes_of(audit, customer, filter_resource_ids=[1, "3"])
    assert sorted(summary(changes)) == [("1", "name", "c1"), ("3", "name", "c3")]
    assert changes_of(audit, customer, filter_resource_ids=[]) == []


def test_resource_ids_of_a_uuid_key_match_as_uuid_or_str(audit):
    """A UUID key is matched by the UUID, its str (any case), alone or in a list."""

    @track_table(tracked_fields=["name"])
    class Device(audit.base):
        __tablename__ = "devices"
        id: Mapped[UUID] = mapped_column(Uuid, primary_key=True)
        name: Mapped[str] = mapped_column(String(100))

    audit.create_tables()
    with audit.Session() as session:
        session.add_all([Device(id=ALPHA, name="alpha"), Device(id=BETA, name="beta")])
        session.commit()
    alpha = [(str(ALPHA), "name", "alpha")]
    assert summary(changes_of(audit, Device, filter_resource_ids=ALPHA)) == alpha
    assert summary(changes_of(audit, Device, filter_resource_ids=str(ALPHA))) == alpha
    assert summary(changes_of(audit, Device, filter_resource_ids=str(ALPHA).upper())) == alpha
    both = changes_of(audit, Device, filter_resource_ids=[ALPHA, str(BETA)])
    assert sorted(names(both)) == ["alpha", "beta"]


def test_resource_ids_of_a_composite_key_are_tuples(audit):
    """A composite key is selected by a tuple of its parts, int or str, alone or in a list."""

    @track_table(tracked_fields=["qty"])
    class Line(audit.base):
        __tablename__ = "order_lines"
        order_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        sku: Mapped[str] = mapped_column(String(20), primary_key=True)
        qty: Mapped[int]

    audit.create_tables()
    with audit.Session() as session:
        session.add_all([Line(order_id=1, sku="a", qty=1), Line(order_id=1, sku="b", qty=2)])
        session.add(Line(order_id=2, sku="a", qty=3))
        session.commit()
    assert names(changes_of(audit, Line, filter_resource_ids=("1", "b"))) == [2]
    both = changes_of(audit, Line, filter_resource_ids=[(1, "a"), (2, "a")])
    assert sorted(names(both)) == [1, 3]


def test_no_resource_filter_returns_every_resource_of_that_model_only(audit):
    """``filter_resource_ids=None`` returns all of the model's changes, none of another model's."""
    customer = declare_customer(audit.base)

    @track_table(tracked_fields=["name"])
    class Supplier(audit.base):
        __tablename__ = "suppliers"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str] = mapped_column(String(100))

    audit.create_tables()
    with audit.Session() as session:
        session.add_all([customer(id=1, name="c1"), customer(id=2, name="c2")])
        session.add_all([Supplier(id=1, name="s1"), Supplier(id=2, name="s2")])
        session.commit()
    customers = changes_of(audit, customer)
    assert sorted(summary(customers)) == [("1", "name", "c1"), ("2", "name", "c2")]
    assert {c.table_name for c in customers} == {"customers"}
    assert names(changes_of(audit, Supplier, filter_resource_ids=1)) == ["s1"]


def test_filter_fields_takes_one_name_or_a_list(audit):
    """``filter_fields`` as one name keeps that field; as a list keeps each listed field."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    with audit.Session() as session:
        session.add(customer(id=1, name="Jane", email="jane@example.com"))
        session.commit()
    assert summary(changes_of(audit, customer, filter_fields="email")) == [
        ("1", "email", "jane@example.com")
    ]
    assert summary(changes_of(audit, customer, filter_fields=["name"])) == [("1", "name", "Jane")]
    both = changes_of(audit, customer, filter_fields=["name", "email"])
    assert sorted(c.field_name for c in both) == ["email", "name"]


def test_filter_user_ids_takes_one_id_or_a_list_of_int_str_or_uuid(audit):
    """User ids match whether given as int, str or UUID, alone or in a list."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    for number, user in enumerate([1, "2", ALPHA], start=1):
        audit.user = user
        with audit.Session() as session:
            session.add(customer(id=number, name=f"by {user}"))
            session.commit()
    assert names(changes_of(audit, customer, filter_user_ids=1)) == ["by 1"]
    assert names(changes_of(audit, customer, filter_user_ids="1")) == ["by 1"]
    assert names(changes_of(audit, customer, filter_user_ids=2)) == ["by 2"]
    assert names(changes_of(audit, customer, filter_user_ids=ALPHA)) == [f"by {ALPHA}"]
    assert names(changes_of(audit, customer, filter_user_ids=str(ALPHA))) == [f"by {ALPHA}"]
    several = changes_of(audit, customer, filter_user_ids=[ALPHA, 1])
    assert sorted(c.changed_by for c in several) == sorted(["1", str(ALPHA)])
    assert changes_of(audit, customer, filter_user_ids=[]) == []


# --- order and paging -----------------------------------------------------------------------


def test_changes_come_newest_first(audit):
    """Changes come back last written first."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    committed_at(audit, customer, [at(10), at(11), at(12)])
    changes = changes_of(audit, customer)
    assert names(changes) == ["v2", "v1", "v0"]
    assert [c.timestamp for c in changes] == [at(12), at(11), at(10)]


def test_order_is_the_order_of_writing_not_of_timestamps(audit):
    """A change stamped earlier but written later comes first: the clock does not decide."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    committed_at(audit, customer, [at(10), at(12), at(11)])  # the clock may go back
    changes = changes_of(audit, customer)
    assert names(changes) == ["v2", "v1", "v0"]
    assert [c.timestamp for c in changes] == [at(11), at(12), at(10)]
    assert [c.old_value for c in changes] == ["v1", "v0", None]


def test_rows_of_one_flush_come_newest_row_first(audit):
    """Rows sharing a timestamp (one flush) come back in descending row id."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    with audit.Session() as session:
        session.add_all([customer(id=n, name=f"c{n}", email=f"c{n}@example.com") for n in (1, 2)])
        session.commit()
    changes = changes_of(audit, customer)
    assert len({c.timestamp for c in changes}) == 1
    assert [c.change_id for c in changes] == [row.id for row in reversed(audit.rows())]
    assert len(changes) == 4


def test_flushes_at_the_same_instant_come_later_flush_first(audit):
    """Two commits with the same timestamp come back with the later commit's rows first."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    committed_at(audit, customer, [at(10), at(10), at(10)])
    changes = changes_of(audit, customer)
    assert names(changes) == ["v2", "v1", "v0"]
    assert [c.change_id for c in changes] == sorted((c.change_id for c in changes), reverse=True)


def test_limit_and_offset_page_through_change_rows(audit):
    """Pages taken with limit and offset count change rows and concatenate to the full list."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    with audit.Session() as session:
        session.add_all([customer(id=n, name=f"c{n}", email=f"c{n}@example.com") for n in (1, 2)])
        session.commit()
        session.get(customer, 1).name = "c1 renamed"
        session.commit()
        session.get(customer, 2).email = None
        session.commit()
    full = changes_of(audit, customer)
    assert len(full) == 6
    pages = [changes_of(audit, customer, limit=4, offset=offset) for offset in (0, 4, 8)]
    assert [len(page) for page in pages] == [4, 2, 0]
    assert [c.change_id for page in pages for c in page] == [c.change_id for c in full]
    assert changes_of(audit, customer, limit=4) == full[:4]
    assert changes_of(audit, customer, offset=3) == full[3:]
    assert changes_of(audit, customer, limit=0) == []


# --- date ranges ----------------------------------------------------------------------------


def test_date_range_bounds_are_inclusive(audit):
    """A row stamped exactly at the start or the end of the range is included."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    committed_at(audit, customer, [at(10), at(11), at(12)])
    assert names(changes_of(audit, customer, filter_date_range=(at(10), at(11)))) == ["v1", "v0"]
    assert names(changes_of(audit, customer, filter_date_range=(at(11), at(11)))) == ["v1"]
    one_microsecond = timedelta(microseconds=1)
    narrow = (at(10) + one_microsecond, at(12) - one_microsecond)
    assert names(changes_of(audit, customer, filter_date_range=narrow)) == ["v1"]


def test_date_range_bound_may_be_none(audit):
    """A ``None`` start or end leaves that side of the range open."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    committed_at(audit, customer, [at(10), at(11), at(12)])
    assert names(changes_of(audit, customer, filter_date_range=(at(11), None))) == ["v2", "v1"]
    assert names(changes_of(audit, customer, filter_date_range=(None, at(11)))) == ["v1", "v0"]
    assert names(changes_of(audit, customer, filter_date_range=(None, None))) == ["v2", "v1", "v0"]


def test_naive_date_range_bounds_are_read_in_the_configured_zone(audit):
    """Naive bounds are New York wall-clock times when the configured zone is New York."""
    audit.configure(time_zone="America/New_York")
    customer = declare_customer(audit.base)
    audit.create_tables()
    committed_at(audit, customer, [at(10), at(11), at(12)])  # 05:00, 06:00, 07:00 in New York
    naive = (datetime(2026, 1, 15, 5, 0), datetime(2026, 1, 15, 6, 0))
    assert names(changes_of(audit, customer, filter_date_range=naive)) == ["v1", "v0"]
    naive_start = (datetime(2026, 1, 15, 7, 0), None)
    assert names(changes_of(audit, customer, filter_date_range=naive_start)) == ["v2"]


def test_aware_date_range_bounds_are_read_in_their_own_zone(audit):
    """Aware bounds keep their own zone, whatever zone is configured."""
    audit.configure(time_zone="America/New_York")
    customer = declare_customer(audit.base)
    audit.create_tables()
    committed_at(audit, customer, [at(10), at(11), at(12)])
    berlin = ZoneInfo("Europe/Berlin")  # UTC+1 in January
    aware = (
        datetime(2026, 1, 15, 12, 0, tzinfo=berlin),
        datetime(2026, 1, 15, 13, 0, tzinfo=berlin),
    )
    assert names(changes_of(audit, customer, filter_date_range=aware)) == ["v2", "v1"]


def test_date_bound_covers_its_whole_day_in_the_configured_zone(audit):
    """A ``date`` bound covers the whole day, midnight to midnight in the configured zone."""
    audit.configure(time_zone="America/New_York")
    customer = declare_customer(audit.base)
    audit.create_tables()
    committed_at(
        audit,
        customer,
        [
            at(4, 30, day=15),  # 14 Jan, 23:30 in New York
            at(5, 30, day=15),  # 15 Jan, 00:30
            at(4, 30, day=16),  # 15 Jan, 23:30
            at(5, 30, day=16),  # 16 Jan, 00:30
        ],
    )
    day = date(2026, 1, 15)
    assert names(changes_of(audit, customer, filter_date_range=(day, day))) == ["v2", "v1"]
    assert names(changes_of(audit, customer, filter_date_range=(day, None))) == ["v3", "v2", "v1"]
    assert names(changes_of(audit, customer, filter_date_range=(None, day))) == ["v2", "v1", "v0"]


def test_timestamps_are_aware_in_the_configured_zone(audit):
    """Returned timestamps are aware and expressed in ``config.time_zone``."""
    audit.configure(time_zone="America/New_York")
    customer = declare_customer(audit.base)
    audit.create_tables()
    committed_at(audit, customer, [at(10)])
    (change,) = changes_of(audit, customer)
    assert change.timestamp == at(10)
    assert change.timestamp.tzinfo == NEW_YORK
    assert (change.timestamp.hour, change.timestamp.utcoffset()) == (5, timedelta(hours=-5))


# --- session=None ---------------------------------------------------------------------------


def recording_session_class(events: list[str]) -> type[Session]:
    """Return a Session subclass that logs ``opened`` and ``closed`` to ``events``."""

    class RecordingSession(Session):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            events.append("opened")

        def close(self) -> None:
            events.append("closed")
            super().close()

    return RecordingSession


def seed_two_customers(audit: Any) -> type[Any]:
    """Declare ``Customer`` and insert two named customers; return the class."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    with audit.Session() as session:
        session.add_all([customer(id=1, name="Jane"), customer(id=2, name="John")])
        session.commit()
    return customer


def test_no_session_uses_a_sessionmaker_factory_and_closes_it(audit):
    """Without a session, one is opened from a sessionmaker factory and closed afterwards."""
    customer = seed_two_customers(audit)
    events: list[str] = []
    factory = sessionmaker(audit.engine, class_=recording_session_class(events))
    set_config(SQLAuditConfig(session_factory=factory, time_zone="UTC"))
    events.clear()  # set_config used the factory too, to create the change table
    changes = get_resource_changes(customer, filter_resource_ids=2)
    assert summary(changes) == [("2", "name", "John")]
    assert events == ["opened", "closed"]
    assert audit.engine.pool.checkedout() == 0


def test_no_session_uses_a_plain_function_factory_and_closes_it(audit):
    """Without a session, one is made by a plain function factory and closed afterwards."""
    customer = seed_two_customers(audit)
    events: list[str] = []
    session_class = recording_session_class(events)

    def new_session() -> Session:
        return session_class(audit.engine)

    set_config(SQLAuditConfig(session_factory=new_session, time_zone="UTC"))
    events.clear()  # set_config used the factory too, to create the change table
    changes = get_resource_changes(customer)
    assert sorted(summary(changes)) == [("1", "name", "Jane"), ("2", "name", "John")]
    assert events == ["opened", "closed"]
    assert audit.engine.pool.checkedout() == 0


def test_no_session_uses_a_generator_factory_and_runs_its_finally(audit):
    """Without a session, a FastAPI-style ``get_db`` generator is used and its ``finally`` runs."""
    customer = seed_two_customers(audit)
    events: list[str] = []
    session_class = recording_session_class(events)

    def get_db():
        db = session_class(audit.engine)
        try:
            yield db
        finally:
            db.close()
            events.append("finally")

    set_config(SQLAuditConfig(session_factory=get_db, time_zone="UTC"))
    events.clear()  # set_config used the factory too, to create the change table
    changes = get_resource_changes(customer, filter_fields="name", filter_resource_ids=1)
    assert summary(changes) == [("1", "name", "Jane")]
    assert events == ["opened", "closed", "finally"]
    assert audit.engine.pool.checkedout() == 0
