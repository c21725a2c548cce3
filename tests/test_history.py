"""The history API on every backend: events, feed, pagination, state, diff, relations, bad input."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from history_support import at, busy_day, change_row_count, declare_models, write
from sqlalchemy import Column, ForeignKey, String, Table
from sqlalchemy.orm import Mapped, mapped_column, relationship

from sqlaudit import (
    FilterError,
    FilterTypeError,
    HistoryError,
    InvalidCursorError,
    InvalidTimeZoneError,
    Operation,
    SQLAuditError,
    UnknownTransactionError,
    UntrackedModelError,
    audit_context,
    count_changes,
    count_events,
    diff_resource,
    get_aggregate_events,
    get_changes,
    get_events,
    get_related_states,
    get_resource_changes,
    get_resource_events,
    get_resource_state,
    record_baseline,
    restore,
    revert_transaction,
    track_table,
)


@pytest.fixture
def models(audit: Any) -> tuple[type[Any], type[Any], type[Any]]:
    """The three models, their tables created."""
    declared = declare_models(audit.base)
    audit.create_tables()
    return declared


def jane_story(audit: Any, customer: type[Any]) -> list[str]:
    """Insert customer 1, rename it twice in one transaction, delete it, reuse the key.

    Returns the four transaction ids.
    """

    def rename_twice(session: Any) -> None:
        jane = session.get(customer, 1)
        jane.name = "Jane B"
        session.flush()
        jane.name = "Jane C"
        jane.email = "jane@example.com"

    return [
        write(audit, at(9), lambda s: s.add(customer(id=1, name="Jane A"))),
        write(audit, at(10), rename_twice, user=2),
        write(audit, at(11), lambda s: s.delete(s.get(customer, 1))),
        write(audit, at(12), lambda s: s.add(customer(id=1, name="Other"))),
    ]


# --- events ---------------------------------------------------------------------------------


def test_resource_events_one_per_transaction_newest_first(audit, models):
    """Each transaction is one event; ``fields`` spans the whole transaction, old to new."""
    customer = models[0]
    transactions = jane_story(audit, customer)
    with audit.Session() as session:
        events = get_resource_events(customer, 1, session=session)
    assert [e.transaction_id for e in events] == transactions[::-1]
    assert [e.operation for e in events] == ["insert", "delete", "update", "insert"]
    assert dict(events[2].fields) == {
        "name": ("Jane A", "Jane C"),
        "email": (None, "jane@example.com"),
    }
    assert [c.new_value for c in events[2].changes if c.field_name == "name"] == [
        "Jane B",
        "Jane C",
    ]
    assert events[2].changed_by == "2"
    assert dict(events[1].fields) == {"name": ("Jane C", None), "email": ("jane@example.com", None)}
    assert events[2].timestamp == at(10)


def test_events_read_under_the_names_of_sqlaudit_0_7(audit, models):
    """``record_id``, ``resource_type``, ``changes`` items and ``model_dump()`` read as in 0.7.0."""
    customer = models[0]
    with audit_context(reason="import"):
        write(audit, at(9), lambda s: s.add(customer(id=5, name="Ann")))
    (event,) = get_resource_events(customer, 5)
    assert event.resource_type == "Customer"
    assert event.resource_id == "5"
    assert [(c.field_name, c.old_value, c.new_value) for c in event.changes] == [
        ("name", None, "Ann")
    ]
    dumped = event.model_dump()
    assert dumped["record_id"] == event.record_id
    assert dumped["reason"] == "import"
    assert dumped["changes"] == [
        {"field_name": "name", "old_value": None, "new_value": "Ann", "dtype": "str"}
    ]
    again = get_resource_events(customer, 5)[0]
    assert again.record_id == event.record_id


def test_resource_events_limit_and_offset(audit, models):
    """``limit`` and ``offset`` count events, not rows."""
    customer = models[0]
    transactions = jane_story(audit, customer)
    events = get_resource_events(customer, 1, limit=2, offset=1)
    assert [e.transaction_id for e in events] == transactions[::-1][1:3]


# --- state and diff -------------------------------------------------------------------------


def test_state_at_moments_and_transactions_keeps_lives_apart(audit, models):
    """State before, during and after each life; the reused key starts afresh."""
    customer = models[0]
    transactions = jane_story(audit, customer)
    assert get_resource_state(customer, 1, at=at(8)).status == "absent"
    first = get_resource_state(customer, 1, at=at(9, 30))
    assert (first.status, dict(first.values), first.complete) == (
        "live",
        {"name": "Jane A", "email": None},
        True,
    )
    deleted = get_resource_state(customer, 1, transaction_id=transactions[2])
    assert deleted.status == "deleted"
    assert deleted.values["name"] == "Jane C"
    now = get_resource_state(customer, 1)
    assert (now.status, dict(now.values)) == ("live", {"name": "Other", "email": None})
    naive_in_new_york = datetime(2026, 1, 15, 5, 30)  # 10:30 UTC
    assert (
        get_resource_state(customer, 1, at=naive_in_new_york, time_zone="America/New_York").values[
            "name"
        ]
        == "Jane C"
    )


def test_diff_between_moments_and_across_lives(audit, models):
    """A diff lists only differing fields; two lives of one key are never diffed."""
    customer = models[0]
    transactions = jane_story(audit, customer)
    assert diff_resource(customer, 1, transactions[0], at(10, 30)) == {
        "name": ("Jane A", "Jane C"),
        "email": (None, "jane@example.com"),
    }
    assert diff_resource(customer, 1, at(10, 30), transactions[2]) == {}
    with pytest.raises(HistoryError, match="different lives"):
        diff_resource(customer, 1, transactions[0], transactions[3])


# --- feed and pagination --------------------------------------------------------------------


def test_feed_filters_by_model_user_operation_value_and_dates(audit, models):
    """Every feed filter narrows rows (and events) as documented; counts agree with lists."""
    customer, order, line = models
    busy_day(audit, *models)
    by_user_2 = get_changes(filter_user_ids=2)
    assert {(c.table_name, c.resource_id) for c in by_user_2} == {
        ("orders", "7"),
        ("lines", "1"),
        ("lines", "2"),
    }
    assert count_changes(filter_user_ids=2) == len(by_user_2.items) == 6
    assert [c.new_value for c in get_changes(models=[order], filter_fields="status")] == [
        "shipped",
        "paid",
        "new",
    ]
    paid = get_events(models=order, filter_values={"status": "paid"})
    assert [e.fields["status"] for e in paid] == [("paid", "shipped"), ("new", "paid")]
    inserts = get_events(models=[customer, line], filter_operations=["insert"])
    assert sorted((e.table_name, e.resource_id) for e in inserts) == [
        ("customers", "1"),
        ("customers", "2"),
        ("customers", "3"),
        ("lines", "1"),
        ("lines", "2"),
    ]
    assert count_events(models=[customer, line], filter_operations="insert") == 5
    window = get_events(filter_date_range=(at(10), at(12)))
    assert [(e.table_name, e.resource_id) for e in window] == [
        ("lines", "2"),
        ("customers", "2"),
        ("orders", "7"),
    ]
    ids = get_changes(models=[customer], filter_resource_ids=[2, 3])
    assert {c.resource_id for c in ids} == {"2", "3"}
    assert (
        get_changes(models=[customer], filter_resource_ids=[2, 3], time_zone="Asia/Tokyo")[0]
        .timestamp.utcoffset()
        .total_seconds()
        == 9 * 3600
    )


@pytest.mark.parametrize("size", [1, 2, 3])
def test_cursor_pages_cover_the_feed_once_in_order(audit, models, size):
    """Following ``next_cursor`` lists every row (and event) exactly once, newest first."""
    busy_day(audit, *models)
    for reader in (get_changes, get_events):
        everything = reader().items
        seen: list[Any] = []
        page = reader(limit=size)
        pages = 1
        while True:
            assert len(page.items) <= size
            seen.extend(page)
            if page.next_cursor is None:
                break
            page = reader(limit=size, cursor=page.next_cursor)
            pages += 1
        assert seen == everything
        assert pages == -(-len(everything) // size)


def test_cursor_is_stable_under_concurrent_inserts(audit, models):
    """Rows committed between two pages neither shift the next page nor repeat rows."""
    customer, _order, _line = models
    busy_day(audit, *models)
    before = get_events().items
    first = get_events(limit=3)
    write(audit, at(14), lambda s: s.add(customer(id=9, name="late")))
    rest: list[Any] = []
    page = get_events(limit=3, cursor=first.next_cursor)
    rest.extend(page)
    while page.next_cursor is not None:
        page = get_events(limit=3, cursor=page.next_cursor)
        rest.extend(page)
    assert first.items + rest == before
    assert get_events(limit=1).items[0].resource_id == "9"


def test_offset_still_works_with_limit(audit, models):
    """``offset`` skips items, as in ``get_resource_changes``."""
    busy_day(audit, *models)
    everything = get_changes().items
    assert get_changes(limit=3, offset=2).items == everything[2:5]
    events = get_events().items
    assert get_events(limit=2, offset=1).items == events[1:3]


# --- relations ------------------------------------------------------------------------------


def test_related_states_follow_the_foreign_key_at_each_moment(audit, models):
    """An order's lines are those whose tracked ``order_id`` pointed at it then."""
    _customer, order, line = models
    busy_day(audit, *models)
    then = get_related_states(order, 7, "lines", at=at(11))
    assert [(s.resource_id, s.values["quantity"]) for s in then] == [("1", 2), ("2", 1)]
    now = get_related_states(order, 7, "lines")
    assert [s.resource_id for s in now] == ["1"]
    assert get_related_states(order, 7, "lines", at=at(8)) == []
    (parent,) = get_related_states(line, 1, "order", at=at(12, 30))
    assert (parent.resource_id, parent.values["status"]) == ("7", "paid")


def test_aggregate_events_merge_the_order_and_its_lines(audit, models):
    """The aggregate timeline holds the order's events and its lines' events while they belonged."""
    _customer, order, _line = models
    busy_day(audit, *models)
    timeline = get_aggregate_events(order, 7, relationships=["lines"])
    assert [(e.table_name, e.resource_id, e.operation) for e in timeline] == [
        ("orders", "7", Operation.UPDATE),
        ("lines", "2", Operation.UPDATE),
        ("orders", "7", Operation.UPDATE),
        ("lines", "2", Operation.INSERT),
        ("lines", "1", Operation.INSERT),
        ("orders", "7", Operation.INSERT),
    ]
    assert [e.event_id for e in timeline] == sorted((e.event_id for e in timeline), reverse=True)


# --- bad input ------------------------------------------------------------------------------


def test_bad_input_raises_named_errors_and_writes_nothing(audit, models):
    """Unknown model, field, operation, zone, ids without a model, both moments: each named."""
    customer, order, _line = models
    busy_day(audit, *models)
    rows = change_row_count(audit)

    class Untracked(audit.base):
        __tablename__ = "untracked"
        id: Mapped[int] = mapped_column(primary_key=True)

    with pytest.raises(UntrackedModelError, match="Untracked"):
        get_resource_events(Untracked, 1)
    with pytest.raises(UntrackedModelError, match="Untracked"):
        get_changes(models=[Untracked])
    with pytest.raises(FilterError, match=r"Customer\.phone is not a tracked field"):
        get_changes(models=[customer], filter_fields="phone")
    with pytest.raises(FilterError, match="'phone' is not a tracked field of any model"):
        get_events(models=[customer, order], filter_values={"phone": "1"})
    with pytest.raises(FilterError, match="'upsert' is not an operation"):
        count_events(filter_operations="upsert")
    with pytest.raises(InvalidTimeZoneError, match="Mars/Base"):
        get_events(time_zone="Mars/Base")
    with pytest.raises(FilterError, match="needs models"):
        get_changes(filter_resource_ids=1)
    with pytest.raises(FilterError, match="not both"):
        get_resource_state(customer, 1, at=at(9), transaction_id="x")
    with pytest.raises(UnknownTransactionError, match="no-such"):
        get_resource_state(customer, 1, transaction_id="no-such")
    with pytest.raises(FilterTypeError, match="one id"):
        get_resource_events(customer, [1, 2])
    with pytest.raises(FilterTypeError, match="filter_values"):
        get_changes(filter_values=["status"])
    with pytest.raises(FilterTypeError, match="moment"):
        diff_resource(customer, 1, 3.5, at(9))
    with pytest.raises(HistoryError, match="no relationship 'items'"):
        get_related_states(order, 7, "items")
    assert change_row_count(audit) == rows


def test_cursors_from_another_query_or_altered_are_refused(audit, models):
    """A cursor only continues the query that made it."""
    customer, order, _line = models
    busy_day(audit, *models)
    cursor = get_changes(models=[order], limit=1).next_cursor
    assert cursor is not None
    with pytest.raises(InvalidCursorError, match="same filters"):
        get_changes(models=[customer], limit=1, cursor=cursor)
    with pytest.raises(InvalidCursorError):
        get_events(models=[order], limit=1, cursor=cursor)  # a changes cursor, not an events one
    head, check = cursor.split(".")
    with pytest.raises(InvalidCursorError):
        get_changes(models=[order], limit=1, cursor=f"{int(head) + 1}.{check}")
    with pytest.raises(InvalidCursorError):
        get_changes(models=[order], limit=1, cursor="garbage")
    with pytest.raises(FilterTypeError, match="cursor"):
        get_changes(models=[order], limit=1, cursor=12)  # type: ignore[arg-type]
    assert get_changes(models=[order], limit=1, cursor=cursor).items


def test_untracked_foreign_key_is_named(audit):
    """A relationship whose foreign key is not tracked cannot be followed, and says why."""

    @track_table(tracked_fields=["title"])
    class Shelf(audit.base):
        __tablename__ = "shelves"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(String(20))
        books: Mapped[list[Book]] = relationship()

    @track_table(tracked_fields=["title"])
    class Book(audit.base):
        __tablename__ = "books"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(String(20))
        shelf_id: Mapped[int | None] = mapped_column(ForeignKey("shelves.id"))

    audit.create_tables()
    with pytest.raises(HistoryError, match=r"Book\.shelf_id .* not a tracked field"):
        get_related_states(Shelf, 1, "books")


def test_get_resource_changes_is_unchanged(audit, models):
    """The existing read still returns rows, newest first, next to the new API."""
    customer = models[0]
    jane_story(audit, customer)
    rows = get_resource_changes(customer, filter_resource_ids=1)
    assert [c.change_id for c in rows] == [c.change_id for c in get_changes(models=customer)]


def test_more_bad_input_each_named(audit, models):
    """Bad limits, offsets, types, relationships and sessions: each an SQLAuditError naming it."""
    customer, order, _line = models
    busy_day(audit, *models)
    rows = change_row_count(audit)
    with pytest.raises(FilterError, match="limit must be zero or more"):
        get_changes(limit=-1)
    with pytest.raises(FilterTypeError, match="offset must be an int"):
        get_resource_events(customer, 1, offset="2")
    with pytest.raises(FilterTypeError, match="filter_operations takes operation names"):
        get_events(filter_operations=[1])
    with pytest.raises(FilterTypeError, match="transaction ids are str"):
        get_resource_state(customer, 1, transaction_id=5)
    with pytest.raises(HistoryError, match="no relationship 'nope'"):
        get_aggregate_events(order, 7, relationships=["nope"])
    with pytest.raises(SQLAuditError, match="time_zone"):
        get_changes(time_zone=5)
    with pytest.raises(FilterTypeError, match="caller's Session"):
        restore(object(), customer, 1, at=at(9))
    with pytest.raises(FilterTypeError, match="caller's Session"):
        revert_transaction(None, "x")
    with audit.Session() as session:
        with pytest.raises(FilterTypeError, match="transaction ids are str"):
            revert_transaction(session, 5)
        with pytest.raises(UntrackedModelError, match="dict is not tracked"):
            record_baseline(session, dict)
    assert change_row_count(audit) == rows


def test_many_to_many_relationships_are_refused(audit):
    """A many-to-many relationship has no tracked foreign key: the error says so."""
    link = Table(
        "post_tags",
        audit.base.metadata,
        Column("post_id", ForeignKey("posts.id"), primary_key=True),
        Column("tag_id", ForeignKey("tags.id"), primary_key=True),
    )

    @track_table(tracked_fields=["name"])
    class Tag(audit.base):
        __tablename__ = "tags"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(20))

    @track_table(tracked_fields=["title"])
    class Post(audit.base):
        __tablename__ = "posts"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(String(20))
        tags: Mapped[list[Tag]] = relationship(secondary=link)

    audit.create_tables()
    with pytest.raises(HistoryError, match=r"Post\.tags is many-to-many"):
        get_related_states(Post, 1, "tags")
