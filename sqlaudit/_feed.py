"""The activity feed's filters, queries and cursors, shared by the sync and async readers.

:func:`build_feed` validates the filters of :func:`sqlaudit.history.get_changes` and
its siblings once and turns them into SQL conditions on the change table, plus a
fingerprint of what they select. A page cursor is the id of the last item's newest
matching row, with a check value computed from that id and the fingerprint: a cursor
given to a query with other filters, or altered, is refused, since it would silently
skip or repeat rows. (The check is no secret: it catches mistakes and edits, and a
forged cursor could only select rows the filters already allow.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, Select, Table, and_, func, or_, select
from sqlalchemy.orm import Session

from sqlaudit import _codec, _registry
from sqlaudit._capture import Operation
from sqlaudit._events import Page, ResourceEvent, group_events
from sqlaudit._registry import TrackedModel
from sqlaudit._resource import SCAN, change_columns
from sqlaudit._schema import index_key
from sqlaudit.config import SQLAuditConfig, _resolve_zone
from sqlaudit.exceptions import FilterError, FilterTypeError, InvalidCursorError
from sqlaudit.retrieval import (
    DateBound,
    IdValue,
    ResourceChange,
    _as_list,
    _date_range,
    _fields,
    _id_text,
    _matching,
    _resource_ids,
    _to_changes,
    _tracked_model,
    _transaction_text,
)

__all__ = [
    "Feed",
    "build_feed",
    "event_page",
    "keys_condition",
    "resolve_zone",
    "tracked_models",
]

ModelsArg = type[Any] | Iterable[type[Any]] | None


@dataclass(frozen=True, slots=True)
class Feed:
    """Validated feed filters: SQL conditions, their fingerprint and the time zone."""

    table: Table
    conditions: tuple[ColumnElement[bool], ...]
    fingerprint: str
    zone: tzinfo

    def cursor(self, last_id: int) -> str:
        """Return the cursor of a page whose last item's newest matching row is ``last_id``."""
        return f"{last_id}.{self._check(last_id)}"

    def after(self, cursor: str | None) -> int | None:
        """Return the row id a cursor continues below, or raise :class:`InvalidCursorError`."""
        if cursor is None:
            return None
        if not isinstance(cursor, str):
            raise FilterTypeError(
                f"cursor takes the str a page gave as next_cursor, not {type(cursor).__name__}."
            )
        head, _, check = cursor.partition(".")
        if not head.isdigit() or check != self._check(int(head)):
            raise InvalidCursorError(
                f"cursor {cursor!r} was not made by a query with these filters (or it was "
                "altered): pass the next_cursor of a page read with exactly the same "
                "filters, or start again without cursor."
            )
        return int(head)

    def _check(self, last_id: int) -> str:
        text = f"{self.fingerprint}:{last_id}".encode()
        return hashlib.blake2b(text, digest_size=10).hexdigest()

    def where(self, query: Select[Any], before: int | None = None) -> Select[Any]:
        """Return ``query`` with the filters (and ``id < before``) applied."""
        query = query.where(*self.conditions)
        if before is not None:
            query = query.where(self.table.c.id < before)
        return query

    def count_events_query(self) -> Select[Any]:
        """Return the ``SELECT`` counting the distinct (transaction, resource) pairs."""
        table = self.table
        pairs = (
            select(table.c.transaction_id, table.c.table_name, table.c.resource_key)
            .where(*self.conditions)
            .distinct()
            .subquery()
        )
        return select(func.count()).select_from(pairs)


def resolve_zone(config: SQLAuditConfig, time_zone: str | tzinfo | None) -> tzinfo:
    """Return ``time_zone`` resolved, or the config's zone when it is ``None``.

    Raises:
        InvalidTimeZoneError: an unknown IANA name.
    """
    if time_zone is None:
        return config.zone
    return _resolve_zone(time_zone)


def tracked_models(models: ModelsArg) -> list[TrackedModel]:
    """Return the registrations of ``models`` (``None``: every tracked model)."""
    if models is None:
        found = [_registry.lookup(model) for model in _registry.models()]
        return [tracked for tracked in found if tracked is not None]
    items = [models] if isinstance(models, type) else list(models)
    return [_tracked_model(model) for model in items]


def build_feed(
    config: SQLAuditConfig,
    *,
    kind: str,
    models: ModelsArg = None,
    filter_resource_ids: Any = None,
    filter_fields: str | Iterable[str] | None = None,
    filter_user_ids: IdValue | Iterable[IdValue] | None = None,
    filter_operations: str | Iterable[str] | None = None,
    filter_transaction_ids: str | UUID | Iterable[str | UUID] | None = None,
    filter_date_range: tuple[DateBound, DateBound] | None = None,
    filter_values: Mapping[str, Any] | None = None,
    time_zone: str | tzinfo | None = None,
) -> Feed:
    """Validate the feed filters and return them as a :class:`Feed`.

    Raises:
        UntrackedModelError: a model that is not tracked.
        FilterError: an unknown field or operation, ids without a model, a reversed range.
        FilterTypeError: a filter of the wrong type.
        InvalidTimeZoneError: an unknown time zone.
    """
    zone = resolve_zone(config, time_zone)
    table = config.table
    chosen = tracked_models(models)
    conditions: list[ColumnElement[bool]] = []
    described: list[Any] = [kind]
    if models is not None:
        names = sorted({tracked.table_name for tracked in chosen})
        conditions.append(table.c.table_name.in_(names))
        described.append(("models", names))
    if filter_resource_ids is not None:
        if models is None:
            raise FilterError(
                "filter_resource_ids needs models=[...]: a resource id means something only "
                "for a model; pass the model (or models) the ids belong to."
            )
        ids = sorted(
            {text for tracked in chosen for text in _resource_ids(tracked, filter_resource_ids)}
        )
        conditions.extend(_matching(table.c.resource_key, table.c.resource_id, ids))
        described.append(("ids", ids))
    if filter_fields is not None:
        fields = sorted(set(_known_fields(chosen, filter_fields)))
        conditions.append(table.c.field_name.in_(fields))
        described.append(("fields", fields))
    if filter_user_ids is not None:
        users = sorted({_id_text(value, "filter_user_ids") for value in _as_list(filter_user_ids)})
        conditions.extend(_matching(table.c.changed_by_key, table.c.changed_by, users))
        described.append(("users", users))
    if filter_operations is not None:
        operations = sorted(_operations(filter_operations))
        conditions.append(table.c.operation.in_(operations))
        described.append(("operations", operations))
    if filter_transaction_ids is not None:
        transactions = sorted({_transaction_text(v) for v in _as_list(filter_transaction_ids)})
        conditions.append(table.c.transaction_id.in_(transactions))
        described.append(("transactions", transactions))
    if filter_date_range is not None:
        start, end = _date_range(filter_date_range, zone)
        if start is not None:
            conditions.append(table.c.changed_at >= start)
        if end is not None:
            conditions.append(table.c.changed_at < end)
        described.append(("dates", start and start.isoformat(), end and end.isoformat()))
    if filter_values is not None:
        value_conditions, value_description = _values(chosen, filter_values, table)
        conditions.append(or_(*value_conditions))
        described.append(("values", value_description))
    fingerprint = hashlib.sha256(repr(described).encode()).hexdigest()
    return Feed(table, tuple(conditions), fingerprint, zone)


def _known_fields(chosen: list[TrackedModel], value: str | Iterable[str]) -> list[str]:
    names = [value] if isinstance(value, str) else list(value)
    if len(chosen) == 1:
        return _fields(chosen[0], names)
    tracked_names = {name for tracked in chosen for name in tracked.fields}
    for name in names:
        if not isinstance(name, str):
            raise FilterTypeError(
                f"filter_fields takes field names as str, not {type(name).__name__} {name!r}."
            )
        if name not in tracked_names:
            models = ", ".join(sorted(tracked.model.__name__ for tracked in chosen)) or "none"
            raise FilterError(
                f"{name!r} is not a tracked field of any model in the feed ({models}); "
                f"tracked fields are: {', '.join(sorted(tracked_names))}. Check the name, "
                "or add the model to models=[...]."
            )
    return names


def _operations(value: str | Iterable[str]) -> set[str]:
    items = [value] if isinstance(value, str) else list(value)
    known = [operation.value for operation in Operation]
    result = set()
    for item in items:
        if not isinstance(item, str):
            raise FilterTypeError(
                f"filter_operations takes operation names as str (or Operation), not "
                f"{type(item).__name__} {item!r}."
            )
        if item not in known:
            raise FilterError(
                f"{item!r} is not an operation; operations are: {', '.join(known)}. "
                "Use one of them (or sqlaudit.Operation) in filter_operations."
            )
        result.add(str(item))
    return result


def _values(
    chosen: list[TrackedModel], value: Mapping[str, Any], table: Table
) -> tuple[list[ColumnElement[bool]], list[Any]]:
    if not isinstance(value, Mapping) or not value:
        raise FilterTypeError(
            f"filter_values takes a non-empty {{field: value}} mapping, such as "
            f"{{'status': 'paid'}}, not {value!r}."
        )
    _known_fields(chosen, list(value))
    conditions: list[ColumnElement[bool]] = []
    description: list[Any] = []
    for name, wanted in sorted(value.items()):
        encoded = _codec.encode(wanted)
        if encoded is None:
            match = or_(table.c.old_value.is_(None), table.c.new_value.is_(None))
        else:
            match = or_(table.c.old_value == encoded, table.c.new_value == encoded)
        conditions.append(and_(table.c.field_name == name, match))
        description.append((name, encoded))
    return conditions, description


def keys_condition(table: Table, keys: Iterable[tuple[str, str, str]]) -> ColumnElement[bool]:
    """Return a condition selecting (at least) the rows of (transaction, table, resource id) keys.

    A superset: the caller keeps the rows whose exact key it asked for.
    """
    pairs = set(keys)
    return and_(
        table.c.transaction_id.in_(sorted({key[0] for key in pairs})),
        table.c.table_name.in_(sorted({key[1] for key in pairs})),
        table.c.resource_key.in_([index_key(text) for text in sorted({key[2] for key in pairs})]),
    )


Key = tuple[str, str, str]  # (transaction id, table name, resource id)


def event_page(
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
            query = query.limit(max(SCAN, 4 * wanted))
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
        if wanted is None or not rows or len(rows) < max(SCAN, 4 * wanted):
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
    for start in range(0, len(keys), SCAN):
        batch = keys[start : start + SCAN]
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
    for start in range(0, len(keys), SCAN):
        batch = keys[start : start + SCAN]
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
