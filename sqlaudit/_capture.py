"""Turning attribute history into change rows: pure functions, no I/O.

The flush hooks in :mod:`sqlaudit.hooks` call these with values they have read
from the session; everything here can be tested without a database.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm.base import NO_VALUE

from sqlaudit import _codec
from sqlaudit._registry import TrackedModel

__all__ = ["ChangeRow", "FlushStamp", "Operation", "change_rows", "changed_fields"]


class Operation(enum.StrEnum):
    """What happened to the resource: ``insert``, ``update`` or ``delete``.

    ``baseline`` marks the values of a row that existed before tracking began, as
    :func:`sqlaudit.history.record_baseline` recorded them: no change, a starting point.

    Example:
        >>> Operation("update") is Operation.UPDATE
        True
    """

    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"
    BASELINE = "baseline"


@dataclass(frozen=True, slots=True)
class FlushStamp:
    """What every row written by one flush shares."""

    transaction_id: str
    changed_by: str | None
    changed_at: datetime
    extra: Mapping[str, Any] | None = None


Equals = Callable[[Any, Any], bool]


def changed_fields(
    fields: Iterable[str],
    committed: Mapping[str, Any],
    current: Mapping[str, Any],
    equals: Mapping[str, Equals] | None = None,
) -> dict[str, Any]:
    """Return ``{field: old value}`` for each field whose value really changed.

    ``committed`` holds, for each attribute assigned since it was loaded, the value
    it had then (SQLAlchemy's ``InstanceState.committed_state``; reading it is far
    cheaper than building a ``History`` per attribute). An old value that was never
    loaded (``NO_VALUE``) reads as ``None`` here; the hooks read it from the database.
    A field missing from ``current`` was expired by the flush (a SQL expression): it
    counts as changed, and its new value is read after the flush.

    ``equals`` gives, per field, the column type's own comparator
    (``TypeEngine.compare_values``), the one SQLAlchemy uses to decide whether the
    flush sends the column at all: a value its comparator calls equal is never
    written, so it records nothing (``True`` assigned to an ``Integer`` holding 1).
    """
    old: dict[str, Any] = {}
    comparators = equals or {}
    for name in fields:
        if name not in committed:
            continue
        previous = committed[name]
        if previous is NO_VALUE:
            old[name] = None
        elif name not in current or not _same(
            comparators.get(name, _equal), previous, current[name]
        ):
            old[name] = previous
    return old


def _equal(a: Any, b: Any) -> bool:
    return bool(a == b)


def _same(equals: Equals, a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(equals(a, b))
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
    - update: one row per field in ``old`` whose stored encoding changed (so that
      ``{"k": 1}`` and ``{"k": True}`` differ, as they do in the database, though
      Python's ``==`` calls them equal);
    - delete: one row per tracked field, with its last value (``old``).
    """
    encode = _codec.encode
    pairs: list[tuple[str, str | None, str | None]]
    if operation is Operation.INSERT:
        pairs = [
            (name, None, encode(new[name])) for name in tracked.fields if new.get(name) is not None
        ]
    elif operation is Operation.UPDATE:
        pairs = []
        for name, value in old.items():
            before, after = encode(value), encode(new.get(name))
            if before != after:
                pairs.append((name, before, after))
    else:
        pairs = [(name, encode(old.get(name)), None) for name in tracked.fields]
    head = (stamp.transaction_id, tracked.table_name, tracked.table_label, resource_id)
    tail = (stamp.changed_by, stamp.changed_at, stamp.extra)
    op = operation.value
    return [(*head, name, op, old_value, new_value, *tail) for name, old_value, new_value in pairs]
