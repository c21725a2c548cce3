"""Turning attribute history into change rows: pure functions, no I/O.

The flush hooks in :mod:`sqlaudit.hooks` call these with values they have read
from the session; everything here can be tested without a database.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm.base import NO_VALUE

from sqlaudit import _codec
from sqlaudit._registry import TrackedModel

__all__ = ["ChangeRow", "FlushStamp", "Operation", "change_rows", "changed_fields"]


class Operation(enum.StrEnum):
    """What happened to the resource: ``insert``, ``update`` or ``delete``.

    Example:
        >>> Operation("update") is Operation.UPDATE
        True
    """

    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class FlushStamp:
    """What every row written by one flush shares."""

    transaction_id: str
    changed_by: str | None
    changed_at: datetime
    extra: Mapping[str, Any] | None = None


def changed_fields(
    fields: Iterable[str], committed: Mapping[str, Any], current: Mapping[str, Any]
) -> dict[str, Any]:
    """Return ``{field: old value}`` for each field whose value really changed.

    ``committed`` holds, for each attribute assigned since it was loaded, the value
    it had then (SQLAlchemy's ``InstanceState.committed_state``; reading it is far
    cheaper than building a ``History`` per attribute). An old value that was never
    loaded (``NO_VALUE``) reads as ``None`` here; the hooks read it from the database.
    A field missing from ``current`` was expired by the flush (a SQL expression): it
    counts as changed, and its new value is read after the flush.
    """
    old: dict[str, Any] = {}
    for name in fields:
        if name not in committed:
            continue
        previous = committed[name]
        if previous is NO_VALUE:
            old[name] = None
        elif name not in current or not _equal(previous, current[name]):
            old[name] = previous
    return old


def _equal(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if type(a) is not type(b) and (isinstance(a, bool) or isinstance(b, bool)):
        return False
    try:
        return bool(a == b)
    except Exception:  # an exotic __eq__ (arrays, say): treat as changed
        return False


# One row of the change table, in the column order of the prepared INSERT
# (sqlaudit._schema.CHANGE_COLUMNS): transaction_id, table_name, table_label,
# resource_id, field_name, operation, old_value, new_value, changed_by, changed_at,
# extra. A plain tuple: a flush builds one per changed field, and a NamedTuple's
# constructor costs several times a tuple display.
ChangeRow = tuple[str, str, str, str, str, str, str | None, str | None, str | None, datetime, Any]


def change_rows(
    tracked: TrackedModel,
    operation: Operation,
    resource_id: str,
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    stamp: FlushStamp,
) -> list[ChangeRow]:
    """Build the change-table rows for one resource in one flush.

    - insert: one row per tracked field that has a value (``new``);
    - update: one row per field in ``old`` whose value really changed;
    - delete: one row per tracked field, with its last value (``old``).
    """
    if operation is Operation.INSERT:
        pairs = [(name, None, new[name]) for name in tracked.fields if new.get(name) is not None]
    elif operation is Operation.UPDATE:
        pairs = [
            (name, value, new.get(name))
            for name, value in old.items()
            if not _equal(value, new.get(name))
        ]
    else:
        pairs = [(name, old.get(name), None) for name in tracked.fields]
    encode = _codec.encode
    head = (stamp.transaction_id, tracked.table_name, tracked.table_label, resource_id)
    tail = (stamp.changed_by, stamp.changed_at, stamp.extra)
    op = operation.value
    return [
        (*head, name, op, encode(old_value), encode(new_value), *tail)
        for name, old_value, new_value in pairs
    ]
