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

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, tzinfo
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import Column, Select, Table, func, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import RelationshipDirection, Session

from sqlaudit import _codec
from sqlaudit._events import Page, ResourceEvent, ResourceState, fold_state, group_events, lives
from sqlaudit._feed import Feed, ModelsArg, build_feed, keys_condition, resolve_zone
from sqlaudit._registry import TrackedModel, encode_resource_id
from sqlaudit.config import SQLAuditConfig, get_config
from sqlaudit.exceptions import FilterError, FilterTypeError, HistoryError, UnknownTransactionError
from sqlaudit.retrieval import (
    _ROW_COLUMNS,
    DateBound,
    IdValue,
    ResourceChange,
    _bound,
    _count,
    _matching,
    _resource_ids,
    _to_changes,
    _tracked_model,
    _transaction_text,
)

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

R = TypeVar("R")
Moment = datetime | date | str | UUID
# Rows fetched per round trip when a page of events is gathered.
_SCAN = 500


def change_columns(table: Table) -> list[Column[Any]]:
    """Return the columns a ResourceChange is read from (not the computed index keys).

    Fewer columns to parse matters with a pure-Python driver reading long histories.
    """
    return [table.c[name] for name in _ROW_COLUMNS]


def _run(session: Session | None, work: Callable[[Session], R]) -> R:
    if session is None:
        with get_config().open_session() as own:
            return work(own)
    return work(session)


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
    tracked, text = _one_resource(model_class, resource_id)
    zone = resolve_zone(config, time_zone)
    start = 0 if offset is None else _count(offset, "offset")
    stop = None if limit is None else start + _count(limit, "limit")
    if stop is None:
        events = _run(session, lambda s: _resource_events(s, config, tracked, text, zone))
        return events[::-1][start:]
    newest = _run(session, lambda s: _newest_events(s, config, tracked, text, zone, stop))
    return newest[start:stop]


def _newest_events(
    session: Session,
    config: SQLAuditConfig,
    tracked: TrackedModel,
    text: str,
    zone: tzinfo,
    wanted: int,
) -> list[ResourceEvent]:
    """Return (at least) the ``wanted`` newest events, newest first, reading rows newest first.

    The rows of one resource written by one transaction are consecutive in its
    history (the transaction holds the row's lock), so once rows of ``wanted + 1``
    transactions are read, the ``wanted`` newest events are complete.
    """
    table = config.table
    base = _resource_query(config, tracked, text).order_by(None).order_by(table.c.id.desc())
    rows: list[Any] = []
    runs = 0
    below: int | None = None
    chunk = max(_SCAN, 8 * wanted)
    while True:
        query = base if below is None else base.where(table.c.id < below)
        batch = session.execute(query.limit(chunk)).all()
        for row in batch:
            if not rows or row.transaction_id != rows[-1].transaction_id:
                runs += 1
                if runs > wanted:
                    break
            rows.append(row)
        if runs > wanted or len(batch) < chunk:
            break
        below = batch[-1].id
    return group_events(_to_changes(rows, zone))[::-1]


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
    tracked, text = _one_resource(model_class, resource_id)
    zone = resolve_zone(config, time_zone)

    def work(s: Session) -> ResourceState:
        events = _resource_events(s, config, tracked, text, zone)
        upto = _upto(s, config, events, at, transaction_id, zone)
        return fold_state(tracked.table_name, text, tracked.fields, events, upto)

    return _run(session, work)


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
    tracked, text = _one_resource(model_class, resource_id)
    zone = resolve_zone(config, time_zone)

    def work(s: Session) -> dict[str, tuple[Any, Any]]:
        events = _resource_events(s, config, tracked, text, zone)
        states = []
        for moment in (start, end):
            at, transaction = _moment(moment)
            upto = _upto(s, config, events, at, transaction, zone)
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

    return _run(session, work)


def _one_resource(model_class: type[Any], resource_id: Any) -> tuple[TrackedModel, str]:
    tracked = _tracked_model(model_class)
    if isinstance(resource_id, (list, set, frozenset)) or resource_id is None:
        raise FilterTypeError(
            f"resource_id takes one id of {model_class.__name__} (str, int or UUID, or a "
            f"tuple for a composite key), not {resource_id!r}."
        )
    return tracked, _resource_ids(tracked, resource_id)[0]


def _resource_query(config: SQLAuditConfig, tracked: TrackedModel, text: str) -> Select[Any]:
    table = config.table
    return (
        select(*change_columns(table))
        .where(table.c.table_name == tracked.table_name)
        .where(*_matching(table.c.resource_key, table.c.resource_id, [text]))
        .order_by(table.c.id)
    )


def _resource_events(
    session: Session, config: SQLAuditConfig, tracked: TrackedModel, text: str, zone: tzinfo
) -> list[ResourceEvent]:
    """Return the resource's events, oldest first."""
    rows = session.execute(_resource_query(config, tracked, text)).all()
    return group_events(_to_changes(rows, zone))


def _moment(value: Any) -> tuple[datetime | date | None, str | UUID | None]:
    if isinstance(value, (datetime, date)):
        return value, None
    if isinstance(value, (str, UUID)):
        return None, value
    raise FilterTypeError(
        f"a moment is a datetime, a date or a transaction id (str or UUID), not "
        f"{type(value).__name__} {value!r}."
    )


def _upto(
    session: Session,
    config: SQLAuditConfig,
    events: Sequence[ResourceEvent],
    at: datetime | date | None,
    transaction_id: str | UUID | None,
    zone: tzinfo,
) -> int:
    """Return how many of ``events`` (oldest first) had happened at the moment."""
    if at is not None and transaction_id is not None:
        raise FilterError("give at= or transaction_id=, not both: they each name a moment.")
    if transaction_id is not None:
        last = transaction_end(session, config, transaction_id)
        return sum(1 for event in events if event.event_id <= last)
    if at is not None:
        moment = _bound(at, zone, "at")
        upto = 0
        for number, event in enumerate(events, start=1):
            if event.timestamp <= moment:
                upto = number
        return upto
    return len(events)


def transaction_end(session: Session, config: SQLAuditConfig, transaction_id: Any) -> int:
    """Return the id of the last change row of a transaction, or raise if it has none."""
    table = config.table
    text = _transaction_text(transaction_id)
    query = select(func.max(table.c.id)).where(table.c.transaction_id == text)
    last: int | None = session.execute(query).scalar()
    if last is None:
        raise UnknownTransactionError(
            f"no change row has transaction id {text!r}: pass a transaction_id taken from a "
            "ResourceChange or ResourceEvent of this change table."
        )
    return last


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
    rows = _run(session, lambda s: s.execute(query).all())
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
    return int(_run(session, lambda s: s.execute(query).scalar_one()))


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
    return _run(session, lambda s: _event_page(s, feed, before, size, skip))


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
    return int(_run(session, lambda s: s.execute(query).scalar_one()))


Key = tuple[str, str, str]  # (transaction id, table name, resource id)


def _event_page(
    session: Session, feed: Feed, before: int | None, size: int | None, skip: int
) -> Page[ResourceEvent]:
    """Gather one page of events: scan matching rows newest first, then read whole events."""
    table = feed.table
    wanted = None if size is None else skip + size + 1
    heads: dict[Key, int] = {}  # each listed event's newest matching row, in order
    refused: set[Key] = set()
    scanned_below = before
    while wanted is None or len(heads) < wanted:
        query = feed.where(
            select(table.c.id, table.c.transaction_id, table.c.table_name, table.c.resource_id),
            scanned_below,
        ).order_by(table.c.id.desc())
        if wanted is not None:
            query = query.limit(max(_SCAN, 4 * wanted))
        rows = session.execute(query).all()
        fresh: dict[Key, int] = {}
        for row in rows:
            key = (row.transaction_id, row.table_name, row.resource_id)
            if key not in heads and key not in refused and key not in fresh:
                fresh[key] = row.id
        if before is not None and fresh:
            # An event with a matching row at or above the cursor was on an earlier page.
            for key in _listed_before(session, feed, before, list(fresh)):
                refused.add(key)
                del fresh[key]
        for key, head in fresh.items():
            heads[key] = head
            if wanted is not None and len(heads) >= wanted:
                break
        if wanted is None or not rows or len(rows) < max(_SCAN, 4 * wanted):
            break
        scanned_below = rows[-1].id
    keys = list(heads)
    chosen = keys[skip:] if size is None else keys[skip : skip + size]
    more = size is not None and len(keys) > skip + size
    events = _whole_events(session, feed, chosen)
    cursor = feed.cursor(heads[chosen[-1]]) if more and chosen else None
    return Page(events, cursor)


def _listed_before(session: Session, feed: Feed, before: int, keys: list[Key]) -> set[Key]:
    table = feed.table
    found: set[Key] = set()
    for start in range(0, len(keys), _SCAN):
        batch = keys[start : start + _SCAN]
        query = (
            feed.where(select(table.c.transaction_id, table.c.table_name, table.c.resource_id))
            .where(table.c.id >= before)
            .where(keys_condition(table, batch))
            .distinct()
        )
        wanted = set(batch)
        for row in session.execute(query):
            key = (row.transaction_id, row.table_name, row.resource_id)
            if key in wanted:
                found.add(key)
    return found


def _whole_events(session: Session, feed: Feed, keys: list[Key]) -> list[ResourceEvent]:
    """Read every row of the chosen (transaction, resource) keys; events in the keys' order."""
    table = feed.table
    changes: list[ResourceChange] = []
    for start in range(0, len(keys), _SCAN):
        batch = keys[start : start + _SCAN]
        wanted = set(batch)
        query = (
            select(*change_columns(table)).where(keys_condition(table, batch)).order_by(table.c.id)
        )
        rows = session.execute(query).all()
        exact = [
            row for row in rows if (row.transaction_id, row.table_name, row.resource_id) in wanted
        ]
        changes.extend(_to_changes(exact, feed.zone))
    order = {key: number for number, key in enumerate(keys)}
    events = group_events(changes)
    events.sort(key=lambda e: (order[(e.transaction_id, e.table_name, e.resource_id)], -e.event_id))
    return events


# --- relations ------------------------------------------------------------------------------


def get_related_states(
    model_class: type[Any],
    resource_id: IdValue | tuple[IdValue, ...],
    relationship: str,
    *,
    session: Session | None = None,
    at: datetime | date | None = None,
    transaction_id: str | UUID | None = None,
    time_zone: str | tzinfo | None = None,
) -> list[ResourceState]:
    """Return the states of the objects related to a resource at a moment.

    Follows a relationship whose foreign key is a tracked field: one-to-many (an
    order's ``lines``: every line whose tracked ``order_id`` pointed at the order
    then) or many-to-one (a line's ``order``).

    Args:
        model_class: A tracked model.
        resource_id: Its id.
        relationship: The name of a relationship of ``model_class``.
        session: The Session to read with.
        at: The moment; ``None`` with no transaction: now.
        transaction_id: Just after this transaction committed (instead of ``at``).
        time_zone: Zone of naive moments; default: ``config.time_zone``.

    Returns:
        The live related states then, each with its ``resource_id``, ordered by id.

    Raises:
        HistoryError: an unknown relationship, an untracked related model or foreign
            key, a many-to-many relationship.

    Example:
        >>> lines = get_related_states(Order, 7, "lines", at=last_tuesday)  # doctest: +SKIP
        >>> [(line.resource_id, line.values["quantity"]) for line in lines]  # doctest: +SKIP
        [('1', 2), ('3', 1)]
    """
    config = get_config()
    tracked, text = _one_resource(model_class, resource_id)
    zone = resolve_zone(config, time_zone)
    link = _link(tracked, relationship)

    def work(s: Session) -> list[ResourceState]:
        events = _resource_events(s, config, tracked, text, zone)
        own = fold_state(
            tracked.table_name,
            text,
            tracked.fields,
            events,
            _upto(s, config, events, at, transaction_id, zone),
        )
        states = []
        for other_id, other_events in _related(s, config, link, tracked, text, own, zone):
            upto = _upto(s, config, other_events, at, transaction_id, zone)
            state = fold_state(
                link.other.table_name, other_id, link.other.fields, other_events, upto
            )
            if state.status == "live" and link.belongs(tracked, text, own, state):
                states.append(state)
        return sorted(states, key=lambda state: _sort_key(state.resource_id))

    return _run(session, work)


def get_aggregate_events(
    model_class: type[Any],
    resource_id: IdValue | tuple[IdValue, ...],
    *,
    relationships: Sequence[str],
    session: Session | None = None,
    limit: int | None = None,
    time_zone: str | tzinfo | None = None,
) -> list[ResourceEvent]:
    """Return the history of an aggregate as one timeline, newest first.

    The resource's own events merged with the events of the objects that belonged
    to it through each one-to-many relationship (those of a line while its tracked
    foreign key pointed at the order, before or after the event).

    Raises:
        HistoryError: as :func:`get_related_states`.

    Example:
        >>> timeline = get_aggregate_events(Order, 7, relationships=["lines"])  # doctest: +SKIP
        >>> [(e.table_name, e.operation) for e in timeline][:2]  # doctest: +SKIP
        [('order_lines', 'update'), ('orders', 'update')]
    """
    config = get_config()
    tracked, text = _one_resource(model_class, resource_id)
    zone = resolve_zone(config, time_zone)
    if isinstance(relationships, str):
        relationships = [relationships]
    links = [_link(tracked, name) for name in relationships]
    size = None if limit is None else _count(limit, "limit")

    def work(s: Session) -> list[ResourceEvent]:
        events = _resource_events(s, config, tracked, text, zone)
        own = fold_state(tracked.table_name, text, tracked.fields, events, len(events))
        timeline = list(events)
        for link in links:
            if link.direction is not RelationshipDirection.ONETOMANY:
                continue
            for other_id, other_events in _related(s, config, link, tracked, text, own, zone):
                for number, event in enumerate(other_events):
                    around = (
                        fold_state(link.other.table_name, other_id, link.other.fields,
                                   other_events, upto)
                        for upto in (number, number + 1)
                    )  # fmt: skip
                    if any(
                        state.status != "absent" and link.belongs(tracked, text, own, state)
                        for state in around
                    ):
                        timeline.append(event)
        timeline.sort(key=lambda event: event.event_id, reverse=True)
        return timeline if size is None else timeline[:size]

    return _run(session, work)


class _Link:
    """A relationship between two tracked models through tracked foreign-key fields."""

    def __init__(
        self,
        direction: RelationshipDirection,
        other: TrackedModel,
        pairs: list[tuple[str, str]],
    ) -> None:
        self.direction = direction
        self.other = other
        self.pairs = pairs  # (own attribute, other attribute)

    def belongs(
        self, own: TrackedModel, own_id: str, own_state: ResourceState, state: ResourceState
    ) -> bool:
        """Whether ``state`` of the other object points at (or is pointed at by) the resource."""
        own_values = _attribute_values(own, own_id, own_state)
        other_values = _attribute_values(self.other, state.resource_id, state)
        return all(
            name in own_values
            and other in other_values
            and own_values[name] is not None
            and _codec.encode(own_values[name]) == _codec.encode(other_values[other])
            for name, other in self.pairs
        )


def _link(tracked: TrackedModel, name: str) -> _Link:
    mapper = sa_inspect(tracked.model)
    if not isinstance(name, str) or name not in mapper.relationships:
        names = ", ".join(sorted(mapper.relationships.keys())) or "none"
        raise HistoryError(
            f"{tracked.model.__name__} has no relationship {name!r}; its relationships are: "
            f"{names}. Pass the name of a relationship() attribute."
        )
    relation = mapper.relationships[name]
    if relation.direction is RelationshipDirection.MANYTOMANY:
        raise HistoryError(
            f"{tracked.model.__name__}.{name} is many-to-many: its association rows are not "
            "tracked fields, so its past cannot be rebuilt. Map the association as a tracked "
            "model and follow its one-to-many relationships."
        )
    other = _tracked_model(relation.mapper.class_)
    pairs = []
    for local, remote in relation.local_remote_pairs or ():
        own_attr = mapper.get_property_by_column(local).key
        other_attr = relation.mapper.get_property_by_column(remote).key
        fk_model, fk_attr = (
            (other, other_attr)
            if relation.direction is RelationshipDirection.ONETOMANY
            else (tracked, own_attr)
        )
        if fk_attr not in fk_model.fields and fk_attr not in fk_model.key_fields:
            raise HistoryError(
                f"{fk_model.model.__name__}.{fk_attr} links {tracked.model.__name__}.{name} "
                f"but is not a tracked field, so who belonged to whom is not in the history. "
                f"Add {fk_attr!r} to @track_table(tracked_fields=[...]) of "
                f"{fk_model.model.__name__}."
            )
        pairs.append((own_attr, other_attr))
    return _Link(relation.direction, other, pairs)


def _related(
    session: Session,
    config: SQLAuditConfig,
    link: _Link,
    own: TrackedModel,
    own_id: str,
    own_state: ResourceState,
    zone: tzinfo,
) -> list[tuple[str, list[ResourceEvent]]]:
    """Return the ids and events of every object that may ever have been related."""
    table = config.table
    own_values = _attribute_values(own, own_id, own_state)
    if link.direction is RelationshipDirection.MANYTOONE:
        values = tuple(own_values.get(name) for name, _ in link.pairs)
        if any(value is None for value in values):
            return []
        other_names = tuple(other for _, other in link.pairs)
        if other_names != link.other.key_fields:
            return []
        other_id = encode_resource_id(values)
        return [(other_id, _resource_events(session, config, link.other, other_id, zone))]
    own_name, other_name = link.pairs[0]
    value = own_values.get(own_name)
    if value is None:
        return []
    encoded = _codec.encode(value)
    query = (
        select(table.c.resource_id)
        .where(table.c.table_name == link.other.table_name)
        .where(table.c.field_name == other_name)
        .where((table.c.new_value == encoded) | (table.c.old_value == encoded))
        .distinct()
    )
    ids = sorted(session.execute(query).scalars(), key=_sort_key)
    return [
        (other_id, _resource_events(session, config, link.other, other_id, zone))
        for other_id in ids
    ]


def _attribute_values(tracked: TrackedModel, text: str, state: ResourceState) -> dict[str, Any]:
    """Return a state's values together with the key attributes its resource id spells."""
    values = dict(state.values)
    values.update(key_values(tracked, text))
    return values


def key_values(tracked: TrackedModel, text: str) -> dict[str, Any]:
    """Return ``{attribute: value}`` of the key a resource id spells, typed as its columns."""
    names = tracked.key_fields
    parts: list[Any] = list(json.loads(text)) if len(names) > 1 else [text]
    mapper = sa_inspect(tracked.model)
    values = {}
    for name, part in zip(names, parts, strict=True):
        try:
            python_type = mapper.columns[name].type.python_type
        except (KeyError, NotImplementedError):
            python_type = str
        values[name] = _typed(part, python_type)
    return values


def _typed(text: str, python_type: type[Any]) -> Any:
    try:
        if python_type is int:
            return int(text)
        if python_type is UUID:
            return UUID(text)
    except ValueError:
        return text
    return text


def _sort_key(text: str) -> tuple[int, Any]:
    return (0, int(text)) if text.lstrip("-").isdigit() else (1, text)


# The write side builds on the reads above; imported last, once they are defined.
from sqlaudit._restore import record_baseline as record_baseline  # noqa: E402
from sqlaudit._restore import restore as restore  # noqa: E402
from sqlaudit._restore import revert_transaction as revert_transaction  # noqa: E402
