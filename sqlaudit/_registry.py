"""What is tracked: one :class:`TrackedModel` per class decorated with ``@track_table``.

Entries are keyed by mapped class (weakly, so model classes declared inside tests
go away with them). An instance of an untracked subclass of a tracked class is
tracked through the nearest tracked ancestor.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import inspect as sa_inspect

__all__ = ["TrackedModel", "encode_resource_id", "lookup", "register", "reset", "unregister"]


@dataclass(frozen=True, eq=False, slots=True)
class TrackedModel:
    """How one mapped class is audited."""

    model: type[Any]
    table_name: str
    table_label: str
    fields: tuple[str, ...]
    primary_key: tuple[str, ...]
    resource_id_field: str | None
    enum_hints: Mapping[str, type[enum.Enum]]
    primary_key_types: tuple[type[Any] | None, ...]
    # Per field, the column type's own comparator (what decides whether the flush
    # writes the column); a field without one compares with ==.
    equals: Mapping[str, Callable[[Any, Any], bool]] = field(default_factory=dict)

    def resource_id(self, obj: Any, identity: tuple[Any, ...] | None) -> str:
        """Return the stored resource id of ``obj`` (``identity``: its primary key, if known)."""
        if self.resource_id_field is not None:
            return encode_resource_id((getattr(obj, self.resource_id_field),))
        if identity is None:
            identity = tuple(getattr(obj, key) for key in self.primary_key)
        return encode_resource_id(identity)

    def resource_id_of(self, key: tuple[Any, ...], values: Mapping[str, Any]) -> str:
        """Return the stored resource id of a row given its primary key and column values."""
        if self.resource_id_field is not None:
            return encode_resource_id((values[self.resource_id_field],))
        return encode_resource_id(key)


def encode_resource_id(values: tuple[Any, ...]) -> str:
    """Encode a (possibly composite) key as text: ``"7"``, or ``'["7","a"]'`` when composite.

    The same key always gives the same text, whatever mix of str/int/UUID spells it.
    """
    if len(values) == 1:
        return _key_part(values[0])
    return json.dumps([_key_part(value) for value in values], separators=(",", ":"))


def _key_part(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, enum.Enum):
        return _key_part(value.value)
    return str(value)


_tracked: WeakKeyDictionary[type[Any], TrackedModel] = WeakKeyDictionary()
# Resolution cache: class -> its TrackedModel (own or inherited), or None when untracked.
_resolved: WeakKeyDictionary[type[Any], TrackedModel | None] = WeakKeyDictionary()


def register(tracked: TrackedModel) -> None:
    """Track ``tracked.model`` (replacing an earlier registration of the same class)."""
    _tracked[tracked.model] = tracked
    _resolved.clear()


def unregister(model: type[Any]) -> None:
    """Stop tracking ``model`` itself (subclasses fall back to a tracked ancestor)."""
    _tracked.pop(model, None)
    _resolved.clear()


def reset() -> None:
    """Forget every registration."""
    _tracked.clear()
    _resolved.clear()


def enum_hints_for_table(table_name: str) -> dict[str, type[enum.Enum]]:
    """Return the Enum classes the models tracked on ``table_name`` declare, by field."""
    hints: dict[str, type[enum.Enum]] = {}
    for tracked in list(_tracked.values()):
        if tracked.table_name == table_name:
            hints.update(tracked.enum_hints)
    return hints


def lookup_table(table: Any) -> TrackedModel | None:
    """Return the registration of a model mapped to ``table`` itself, or ``None``."""
    if table is None:
        return None
    for tracked in list(_tracked.values()):
        if sa_inspect(tracked.model).local_table is table:
            return tracked
    return None


def lookup(cls: type[Any]) -> TrackedModel | None:
    """Return how instances of ``cls`` are tracked, or ``None`` when they are not."""
    try:
        return _resolved[cls]
    except KeyError:
        pass
    found: TrackedModel | None = None
    for klass in cls.__mro__:
        found = _tracked.get(klass)
        if found is not None:
            break
    _resolved[cls] = found
    return found
