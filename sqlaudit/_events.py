"""Events, states and pages: the values the history API returns, and the pure folds behind them.

Everything here works on :class:`~sqlaudit.retrieval.ResourceChange` values already
read; nothing touches a database, so each rule can be tested on its own:

- an **event** is the run of one resource's rows written by one database transaction
  (split where a delete is followed by a new insert: a key reused in the same
  transaction starts a new life, and an event never spans two lives);
- a **life** runs from an insert (or a baseline) to a delete;
- a **state** folds the rows of one life, oldest first, up to a moment.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from sqlaudit._capture import Operation
from sqlaudit.retrieval import ResourceChange

__all__ = ["Page", "ResourceEvent", "ResourceState", "fold_state", "group_events", "lives"]

T = TypeVar("T")
Status = Literal["absent", "live", "deleted"]
_STARTS = (Operation.INSERT, Operation.BASELINE)
# A namespace for the stable event ids (``record_id``) derived from an event's rows.
_EVENT_NAMESPACE = uuid.UUID("5d0c2a1e-8f43-4c55-9a2b-7d3f0e6a1b90")


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceEvent:
    """What one database transaction did to one resource.

    Attributes:
        transaction_id: The database transaction.
        table_name: The tracked table.
        table_label: Its ``@track_table`` label.
        resource_id: The resource's id as text.
        operation: ``insert``, ``update``, ``delete`` or ``baseline``: ``delete`` when
            the transaction ended the resource's life, ``insert`` when it began it.
        timestamp: When its last row was written, in the requested time zone.
        changed_by: The user id as text, or ``None``.
        reason: The ``audit_context`` reason, or ``None``.
        extra: The ``audit_context`` extra metadata.
        fields: ``{field: (old, new)}``: old as before the transaction, new as after it,
            even when the field changed twice inside it.
        changes: The change rows, oldest first.

    The names sqlaudit 0.7.0 used read the same event: :attr:`record_id`,
    :attr:`resource_type`, ``changes`` (items with ``field_name``, ``old_value``,
    ``new_value``) and :meth:`model_dump`.

    Example:
        >>> event = get_resource_events(Customer, 2)[0]  # doctest: +SKIP
        >>> event.operation, event.fields  # doctest: +SKIP
        ('update', {'name': ('Jane Doe', 'Jane Smith')})
    """

    transaction_id: str
    table_name: str
    table_label: str | None
    resource_id: str
    operation: Operation
    timestamp: datetime
    changed_by: str | None
    reason: str | None
    extra: Mapping[str, Any]
    fields: Mapping[str, tuple[Any, Any]]
    changes: tuple[ResourceChange, ...]

    @property
    def event_id(self) -> int:
        """The id of the event's newest change row: its place in the history.

        Example:
            >>> event.event_id  # doctest: +SKIP
            42
        """
        return self.changes[-1].change_id

    @property
    def record_id(self) -> uuid.UUID:
        """A stable UUID naming this event (sqlaudit 0.7.0's ``record_id``).

        Example:
            >>> event.record_id  # doctest: +SKIP
            UUID('...')
        """
        name = f"{self.table_name}\x00{self.resource_id}\x00{self.changes[0].change_id}"
        return uuid.uuid5(_EVENT_NAMESPACE, name)

    @property
    def resource_type(self) -> str:
        """The table label, else the table name (sqlaudit 0.7.0's ``resource_type``).

        Example:
            >>> event.resource_type  # doctest: +SKIP
            'Customer'
        """
        return self.table_label or self.table_name

    def model_dump(self) -> dict[str, Any]:
        """Return the event as a dict, with the keys of sqlaudit 0.7.0's records and then some.

        Example:
            >>> sorted(event.model_dump())[:3]  # doctest: +SKIP
            ['changed_by', 'changes', 'extra']
        """
        return {
            "record_id": self.record_id,
            "resource_id": self.resource_id,
            "resource_type": self.resource_type,
            "timestamp": self.timestamp,
            "changed_by": self.changed_by,
            "impersonated_by": None,
            "reason": self.reason,
            "changes": [
                {
                    "field_name": change.field_name,
                    "old_value": change.old_value,
                    "new_value": change.new_value,
                    "dtype": type(
                        change.new_value if change.new_value is not None else change.old_value
                    ).__name__,
                }
                for change in self.changes
            ],
            "transaction_id": self.transaction_id,
            "operation": self.operation.value,
            "table_name": self.table_name,
            "extra": dict(self.extra),
            "fields": dict(self.fields),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceState:
    """A resource as its history says it was at one moment.

    Attributes:
        table_name: The tracked table.
        resource_id: The resource's id as text.
        values: The tracked fields' values then (only the known ones when incomplete).
        status: ``"absent"`` (no life had begun), ``"live"`` or ``"deleted"``; a
            deleted state keeps the values it had when it was deleted.
        complete: Every tracked field's value is known (the life began with an insert
            or a baseline, or every field changed since).
        transaction_id: The last transaction folded in, or ``None`` when absent.
        timestamp: When that transaction wrote its last row, or ``None``.

    Example:
        >>> state = get_resource_state(Customer, 2, at=last_tuesday)  # doctest: +SKIP
        >>> state.status, state.values["name"]  # doctest: +SKIP
        ('live', 'Jane Doe')
    """

    table_name: str
    resource_id: str
    values: Mapping[str, Any]
    status: Status
    complete: bool
    transaction_id: str | None = None
    timestamp: datetime | None = None

    @property
    def exists(self) -> bool:
        """Whether the resource was live at that moment.

        Example:
            >>> state.exists  # doctest: +SKIP
            True
        """
        return self.status == "live"


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a feed: its items and the cursor of the next page.

    Iterating over a page iterates over its items.

    Attributes:
        items: The items, newest first.
        next_cursor: Pass it as ``cursor=`` for the next page; ``None`` on the last one.

    Example:
        >>> page = get_changes(models=[Customer], limit=50)  # doctest: +SKIP
        >>> while page.next_cursor:  # doctest: +SKIP
        ...     page = get_changes(models=[Customer], limit=50, cursor=page.next_cursor)
    """

    items: list[T]
    next_cursor: str | None = None

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> T:
        return self.items[index]


def group_events(changes: Iterable[ResourceChange]) -> list[ResourceEvent]:
    """Group change rows (any order) into events, oldest first.

    The rows of one resource are taken in the order they were written; each run of
    rows of one transaction is one event, split where a delete is followed by an
    insert (a new life).

    Example:
        >>> group_events([])
        []
    """
    by_resource: dict[tuple[str, str], list[ResourceChange]] = {}
    for change in changes:
        by_resource.setdefault((change.table_name, change.resource_id), []).append(change)
    runs: list[list[ResourceChange]] = []
    for rows in by_resource.values():
        rows.sort(key=lambda change: change.change_id)
        current: list[ResourceChange] = []
        for change in rows:
            if current and (
                change.transaction_id != current[-1].transaction_id
                or (change.operation in _STARTS and _ended(current))
            ):
                runs.append(current)
                current = []
            current.append(change)
        if current:
            runs.append(current)
    runs.sort(key=lambda run: run[-1].change_id)
    return [_event(run) for run in runs]


def _ended(rows: Sequence[ResourceChange]) -> bool:
    return any(row.operation is Operation.DELETE for row in rows)


def _event(rows: list[ResourceChange]) -> ResourceEvent:
    first, last = rows[0], rows[-1]
    fields: dict[str, tuple[Any, Any]] = {}
    for row in rows:
        before = fields[row.field_name][0] if row.field_name in fields else row.old_value
        fields[row.field_name] = (before, row.new_value)
    operations = {row.operation for row in rows}
    if last.operation is Operation.DELETE:
        operation = Operation.DELETE
    elif Operation.INSERT in operations:
        operation = Operation.INSERT
    elif Operation.BASELINE in operations:
        operation = Operation.BASELINE
    else:
        operation = Operation.UPDATE
    return ResourceEvent(
        transaction_id=first.transaction_id,
        table_name=first.table_name,
        table_label=first.table_label,
        resource_id=first.resource_id,
        operation=operation,
        timestamp=last.timestamp,
        changed_by=last.changed_by,
        reason=last.reason,
        extra=last.extra,
        fields=fields,
        changes=tuple(rows),
    )


def lives(events: Sequence[ResourceEvent]) -> list[list[ResourceEvent]]:
    """Split one resource's events (oldest first) into its lives.

    A life ends with a delete event; the next event (an insert, a baseline, or an
    unaudited re-insert's first update) begins a new one.

    Example:
        >>> lives([])
        []
    """
    result: list[list[ResourceEvent]] = []
    current: list[ResourceEvent] = []
    for event in events:
        if current and (
            current[-1].operation is Operation.DELETE or event.operation is Operation.INSERT
        ):
            result.append(current)
            current = []
        current.append(event)
    if current:
        result.append(current)
    return result


def fold_state(
    table_name: str,
    resource_id: str,
    tracked_fields: Sequence[str],
    events: Sequence[ResourceEvent],
    upto: int,
) -> ResourceState:
    """Return the state after the first ``upto`` of one resource's ``events`` (oldest first).

    Values not set by the folded rows of the life are taken from the old value of
    the first later row of the same life that changes them (a row that existed
    before tracking began shows its earlier values as it is updated).

    Example:
        >>> fold_state("customers", "1", ["name"], [], 0).status
        'absent'
    """
    if upto <= 0:
        return ResourceState(
            table_name=table_name, resource_id=resource_id, values={}, status="absent",
            complete=False,
        )  # fmt: skip
    position = upto - 1
    life: list[ResourceEvent] = []
    later: list[ResourceEvent] = []
    index = 0
    for one_life in lives(events):
        end = index + len(one_life)
        if index <= position < end:
            life = one_life[: position - index + 1]
            later = one_life[position - index + 1 :]
            break
        index = end
    values: dict[str, Any] = {}
    known: set[str] = set()
    for event in life:
        if event.operation in _STARTS:
            known.update(tracked_fields)
            if event.operation is Operation.INSERT:
                values = dict.fromkeys(tracked_fields)
        for name, (_, new) in event.fields.items():
            values[name] = new
            known.add(name)
        if event.operation is Operation.DELETE:
            # The last values, which a delete row records for every tracked field.
            for change in event.changes:
                if change.operation is Operation.DELETE:
                    values[change.field_name] = change.old_value
                    known.add(change.field_name)
    for event in later:
        for name, (old, _) in event.fields.items():
            if name not in known:
                values[name] = old
                known.add(name)
    for name in tracked_fields:
        if name in known:
            values.setdefault(name, None)
    last = life[-1]
    return ResourceState(
        table_name=table_name,
        resource_id=resource_id,
        values={name: values[name] for name in tracked_fields if name in known},
        status="deleted" if last.operation is Operation.DELETE else "live",
        complete=all(name in known for name in tracked_fields),
        transaction_id=last.transaction_id,
        timestamp=last.timestamp,
    )
