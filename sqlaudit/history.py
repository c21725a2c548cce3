"""History you can use: events, activity feeds, state at a moment, diff, restore, revert, baseline.

Everything is a read over the change rows (or, for restore and revert, ordinary
audited writes in your session)::

    from sqlaudit.history import (
        diff_resource, get_events, get_resource_events, get_resource_state, restore,
    )

    for event in get_resource_events(Customer, 2):        # newest first
        print(event.operation, event.changed_by, event.fields)   # {field: (old, new)}

    page = get_events(models=[Customer, Order], filter_user_ids=7, limit=50)
    more = get_events(models=[Customer, Order], filter_user_ids=7, limit=50,
                      cursor=page.next_cursor)

    get_resource_state(Customer, 2, at=datetime(2026, 1, 6)).values
    diff_resource(Customer, 2, datetime(2026, 1, 6), datetime(2026, 2, 1))
    restore(session, Customer, 2, at=datetime(2026, 1, 6))   # then session.commit()

An **event** is what one database transaction did to one resource; a resource's
**life** runs from its insert (or baseline) to its delete, and a key reused later
starts a new one: states, events and diffs never mix two lives. The async twins of
every function live in :mod:`sqlaudit.asyncio`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, tzinfo
from typing import Any
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sqlaudit import _codec
from sqlaudit._events import Page, ResourceEvent, ResourceState, fold_state, lives
from sqlaudit._feed import ModelsArg, build_feed, event_page, resolve_zone
from sqlaudit._relations import get_aggregate_events as get_aggregate_events
from sqlaudit._relations import get_related_states as get_related_states
from sqlaudit._resource import (
    change_columns,
    events_upto,
    newest_events,
    one_resource,
    resource_events,
    run_read,
    split_moment,
)
from sqlaudit._restore import record_baseline as record_baseline
from sqlaudit._restore import restore as restore
from sqlaudit._restore import revert_transaction as revert_transaction
from sqlaudit.config import get_config
from sqlaudit.exceptions import HistoryError
from sqlaudit.retrieval import DateBound, IdValue, ResourceChange, _count, _to_changes

__all__ = [
    "Page",
    "ResourceEvent",
    "ResourceState",
    "count_changes",
    "count_events",
    "diff_resource",
    "get_aggregate_events",
    "get_changes",
    "get_events",
    "get_related_states",
    "get_resource_events",
    "get_resource_state",
    "record_baseline",
    "restore",
    "revert_transaction",
]

Moment = datetime | date | str | UUID


# --- one resource ---------------------------------------------------------------------------


def get_resource_events(
    model_class: type[Any],
    resource_id: IdValue | tuple[IdValue, ...],
    *,
    session: Session | None = None,
    limit: int | None = None,
    offset: int | None = None,
    time_zone: str | tzinfo | None = None,
) -> list[ResourceEvent]:
    """Return one resource's events, newest first: one per database transaction.

    Args:
        model_class: A tracked model.
        resource_id: Its id (a tuple for a composite key).
        session: The Session to read with; ``None`` opens one from the config.
        limit: At most this many events.
        offset: Skip this many events first.
        time_zone: Zone of the timestamps; default: ``config.time_zone``.

    Returns:
        The events; each one's ``fields`` maps a field to (value before the
        transaction, value after it).

    Raises:
        UntrackedModelError: ``model_class`` is not tracked.
        FilterTypeError: an id, limit or offset of the wrong type.
        InvalidTimeZoneError: an unknown time zone.

    Example:
        >>> events = get_resource_events(Customer, 2, session=session)  # doctest: +SKIP
        >>> [(e.operation, e.fields) for e in events][0]  # doctest: +SKIP
        ('update', {'name': ('Jane Doe', 'Jane Smith')})
    """
    config = get_config()
    tracked, text = one_resource(model_class, resource_id)
    zone = resolve_zone(config, time_zone)
    start = 0 if offset is None else _count(offset, "offset")
    stop = None if limit is None else start + _count(limit, "limit")
    if stop is None:
        events = run_read(session, lambda s: resource_events(s, config, tracked, text, zone))
        return events[::-1][start:]
    newest = run_read(session, lambda s: newest_events(s, config, tracked, text, zone, stop))
    return newest[start:stop]


def get_resource_state(
    model_class: type[Any],
    resource_id: IdValue | tuple[IdValue, ...],
    *,
    session: Session | None = None,
    at: datetime | date | None = None,
    transaction_id: str | UUID | None = None,
    time_zone: str | tzinfo | None = None,
) -> ResourceState:
    """Return a resource as its history says it was at a moment.

    Args:
        model_class: A tracked model.
        resource_id: Its id.
        session: The Session to read with.
        at: The moment (naive: in the time zone); ``None`` with no transaction: now.
        transaction_id: Just after this transaction committed (instead of ``at``).
        time_zone: Zone of naive moments and timestamps; default: ``config.time_zone``.

    Returns:
        The :class:`ResourceState`: ``values``, ``status`` (``absent``/``live``/
        ``deleted``) and ``complete``. Only the life in progress at that moment is
        folded.

    Raises:
        UntrackedModelError: ``model_class`` is not tracked.
        UnknownTransactionError: no change row has this transaction id.
        FilterError: both ``at`` and ``transaction_id``.

    Example:
        >>> state = get_resource_state(Customer, 2, at=datetime(2026, 1, 6))  # doctest: +SKIP
        >>> state.status, state.values  # doctest: +SKIP
        ('live', {'name': 'Jane Doe', 'email': 'jane@example.com'})
    """
    config = get_config()
    tracked, text = one_resource(model_class, resource_id)
    zone = resolve_zone(config, time_zone)

    def work(s: Session) -> ResourceState:
        events = resource_events(s, config, tracked, text, zone)
        upto = events_upto(s, config, events, at, transaction_id, zone)
        return fold_state(tracked.table_name, text, tracked.fields, events, upto)

    return run_read(session, work)


def diff_resource(
    model_class: type[Any],
    resource_id: IdValue | tuple[IdValue, ...],
    start: Moment,
    end: Moment,
    *,
    session: Session | None = None,
    time_zone: str | tzinfo | None = None,
) -> dict[str, tuple[Any, Any]]:
    """Return ``{field: (value at start, value at end)}`` for the fields that differ.

    Args:
        model_class: A tracked model.
        resource_id: Its id.
        start: A moment (datetime or date) or a transaction id (str or UUID).
        end: Likewise.
        session: The Session to read with.
        time_zone: Zone of naive moments; default: ``config.time_zone``.

    Raises:
        HistoryError: the two moments fall in two different lives of the key.
        UnknownTransactionError: a transaction id with no change rows.

    Example:
        >>> diff_resource(Customer, 2, datetime(2026, 1, 6), datetime(2026, 2, 1))  # doctest: +SKIP
        {'name': ('Jane Doe', 'Jane Smith')}
    """
    config = get_config()
    tracked, text = one_resource(model_class, resource_id)
    zone = resolve_zone(config, time_zone)

    def work(s: Session) -> dict[str, tuple[Any, Any]]:
        events = resource_events(s, config, tracked, text, zone)
        states = []
        for moment in (start, end):
            at, transaction = split_moment(moment)
            upto = events_upto(s, config, events, at, transaction, zone)
            life = len(lives(events[:upto])) - 1
            states.append(
                (fold_state(tracked.table_name, text, tracked.fields, events, upto), life)
            )
        (first, first_life), (second, second_life) = states
        if first_life >= 0 and second_life >= 0 and first_life != second_life:
            raise HistoryError(
                f"{tracked.model.__name__} {text} was deleted and its key reused between "
                f"{start!r} and {end!r}: the two moments are in different lives (numbers "
                f"{first_life} and {second_life}), which a diff never mixes. Diff two moments "
                "of one life, or compare the two states yourself."
            )
        names = [n for n in tracked.fields if n in first.values or n in second.values]
        return {
            name: (first.values.get(name), second.values.get(name))
            for name in names
            if _codec.encode(first.values.get(name)) != _codec.encode(second.values.get(name))
        }

    return run_read(session, work)


# --- the feed -------------------------------------------------------------------------------


def get_changes(
    *,
    models: ModelsArg = None,
    session: Session | None = None,
    filter_resource_ids: Any = None,
    filter_fields: str | Iterable[str] | None = None,
    filter_user_ids: IdValue | Iterable[IdValue] | None = None,
    filter_operations: str | Iterable[str] | None = None,
    filter_transaction_ids: str | UUID | Iterable[str | UUID] | None = None,
    filter_date_range: tuple[DateBound, DateBound] | None = None,
    filter_values: Mapping[str, Any] | None = None,
    limit: int | None = None,
    offset: int | None = None,
    cursor: str | None = None,
    time_zone: str | tzinfo | None = None,
) -> Page[ResourceChange]:
    """Return change rows across models, newest first, one page at a time.

    Args:
        models: A tracked model or a list of them; ``None``: every table.
        session: The Session to read with; ``None`` opens one from the config.
        filter_resource_ids: One id or a list (needs ``models``).
        filter_fields: One field name or a list, tracked by one of the models.
        filter_user_ids: One user id or a list.
        filter_operations: ``"insert"``, ``"update"``, ``"delete"``, ``"baseline"`` or a list.
        filter_transaction_ids: One transaction id or a list.
        filter_date_range: ``(start, end)``, inclusive, either end may be ``None``.
        filter_values: ``{field: value}``: rows of that field whose old or new value is
            that value (several fields: any of them).
        limit: At most this many rows; the page has a ``next_cursor`` when there are more.
        offset: Skip this many rows first (after the cursor).
        cursor: A previous page's ``next_cursor``, for the rows after it.
        time_zone: Zone of naive bounds and of timestamps; default: ``config.time_zone``.

    Returns:
        A :class:`Page` of :class:`~sqlaudit.retrieval.ResourceChange`.

    Raises:
        UntrackedModelError, FilterError, FilterTypeError, InvalidTimeZoneError: bad filters.
        InvalidCursorError: a cursor from a query with other filters, or altered.

    Example:
        >>> page = get_changes(models=[Customer], filter_user_ids=7, limit=50)  # doctest: +SKIP
        >>> page = get_changes(models=[Customer], filter_user_ids=7, limit=50,
        ...                    cursor=page.next_cursor)  # doctest: +SKIP
    """
    config = get_config()
    feed = build_feed(
        config,
        kind="changes",
        models=models,
        filter_resource_ids=filter_resource_ids,
        filter_fields=filter_fields,
        filter_user_ids=filter_user_ids,
        filter_operations=filter_operations,
        filter_transaction_ids=filter_transaction_ids,
        filter_date_range=filter_date_range,
        filter_values=filter_values,
        time_zone=time_zone,
    )
    before = feed.after(cursor)
    size = None if limit is None else _count(limit, "limit")
    skip = None if offset is None else _count(offset, "offset")
    table = feed.table
    query = feed.where(select(*change_columns(table)), before).order_by(table.c.id.desc())
    if size is not None:
        query = query.limit(size + 1)
    if skip:
        query = query.offset(skip)
    rows = run_read(session, lambda s: s.execute(query).all())
    changes = _to_changes(rows, feed.zone)
    if size is not None and len(changes) > size:
        changes = changes[:size]
        return Page(changes, feed.cursor(changes[-1].change_id))
    return Page(changes, None)


def count_changes(
    *,
    models: ModelsArg = None,
    session: Session | None = None,
    filter_resource_ids: Any = None,
    filter_fields: str | Iterable[str] | None = None,
    filter_user_ids: IdValue | Iterable[IdValue] | None = None,
    filter_operations: str | Iterable[str] | None = None,
    filter_transaction_ids: str | UUID | Iterable[str | UUID] | None = None,
    filter_date_range: tuple[DateBound, DateBound] | None = None,
    filter_values: Mapping[str, Any] | None = None,
    time_zone: str | tzinfo | None = None,
) -> int:
    """Return how many change rows :func:`get_changes` would list with the same filters.

    Example:
        >>> count_changes(models=[Customer], filter_user_ids=7)  # doctest: +SKIP
        12
    """
    config = get_config()
    feed = build_feed(
        config,
        kind="changes",
        models=models,
        filter_resource_ids=filter_resource_ids,
        filter_fields=filter_fields,
        filter_user_ids=filter_user_ids,
        filter_operations=filter_operations,
        filter_transaction_ids=filter_transaction_ids,
        filter_date_range=filter_date_range,
        filter_values=filter_values,
        time_zone=time_zone,
    )
    query = feed.where(select(func.count()).select_from(feed.table))
    return int(run_read(session, lambda s: s.execute(query).scalar_one()))


def get_events(
    *,
    models: ModelsArg = None,
    session: Session | None = None,
    filter_resource_ids: Any = None,
    filter_fields: str | Iterable[str] | None = None,
    filter_user_ids: IdValue | Iterable[IdValue] | None = None,
    filter_operations: str | Iterable[str] | None = None,
    filter_transaction_ids: str | UUID | Iterable[str | UUID] | None = None,
    filter_date_range: tuple[DateBound, DateBound] | None = None,
    filter_values: Mapping[str, Any] | None = None,
    limit: int | None = None,
    offset: int | None = None,
    cursor: str | None = None,
    time_zone: str | tzinfo | None = None,
) -> Page[ResourceEvent]:
    """Return events across models, newest first, one page at a time.

    Takes the filters of :func:`get_changes`. An event is listed when at least one
    of its rows matches them, and then comes with all its rows; events are ordered
    by their newest matching row.

    Returns:
        A :class:`Page` of :class:`ResourceEvent`.

    Raises:
        UntrackedModelError, FilterError, FilterTypeError, InvalidTimeZoneError: bad filters.
        InvalidCursorError: a cursor from a query with other filters, or altered.

    Example:
        >>> page = get_events(models=[Order], filter_values={"status": "paid"},
        ...                   limit=20)  # doctest: +SKIP
        >>> [(e.resource_id, e.fields["status"]) for e in page]  # doctest: +SKIP
        [('7', ('new', 'paid'))]
    """
    config = get_config()
    feed = build_feed(
        config,
        kind="events",
        models=models,
        filter_resource_ids=filter_resource_ids,
        filter_fields=filter_fields,
        filter_user_ids=filter_user_ids,
        filter_operations=filter_operations,
        filter_transaction_ids=filter_transaction_ids,
        filter_date_range=filter_date_range,
        filter_values=filter_values,
        time_zone=time_zone,
    )
    before = feed.after(cursor)
    size = None if limit is None else _count(limit, "limit")
    skip = 0 if offset is None else _count(offset, "offset")
    return run_read(session, lambda s: event_page(s, feed, before, size, skip))


def count_events(
    *,
    models: ModelsArg = None,
    session: Session | None = None,
    filter_resource_ids: Any = None,
    filter_fields: str | Iterable[str] | None = None,
    filter_user_ids: IdValue | Iterable[IdValue] | None = None,
    filter_operations: str | Iterable[str] | None = None,
    filter_transaction_ids: str | UUID | Iterable[str | UUID] | None = None,
    filter_date_range: tuple[DateBound, DateBound] | None = None,
    filter_values: Mapping[str, Any] | None = None,
    time_zone: str | tzinfo | None = None,
) -> int:
    """Return how many events :func:`get_events` would list with the same filters.

    Counts (transaction, resource) pairs: a key deleted and reused inside one
    transaction counts once here, though it lists as two events.

    Example:
        >>> count_events(models=[Customer], filter_user_ids=7)  # doctest: +SKIP
        4
    """
    config = get_config()
    feed = build_feed(
        config,
        kind="events",
        models=models,
        filter_resource_ids=filter_resource_ids,
        filter_fields=filter_fields,
        filter_user_ids=filter_user_ids,
        filter_operations=filter_operations,
        filter_transaction_ids=filter_transaction_ids,
        filter_date_range=filter_date_range,
        filter_values=filter_values,
        time_zone=time_zone,
    )
    query = feed.count_events_query()
    return int(run_read(session, lambda s: s.execute(query).scalar_one()))
