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

from sqlaudit.exceptions import UnauditedWriteError

__all__ = ["TrackedModel", "encode_resource_id", "lookup", "register", "reset", "unregister"]


@dataclass(frozen=True, eq=False, slots=True, weakref_slot=True)
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
    # "session", "database", or None: the config's capture decides.
    capture: str | None = None

    @property
    def key_fields(self) -> tuple[str, ...]:
        """Return the attributes the resource id is made of."""
        if self.resource_id_field is not None:
            return (self.resource_id_field,)
        return self.primary_key

    def resource_id(self, obj: Any, identity: tuple[Any, ...] | None) -> str:
        """Return the stored resource id of ``obj`` (``identity``: its primary key, if known)."""
        if self.resource_id_field is not None:
            return self._encode((getattr(obj, self.resource_id_field),))
        if identity is None:
            identity = tuple(getattr(obj, key) for key in self.primary_key)
        return self._encode(identity)

    def resource_id_of(self, key: tuple[Any, ...], values: Mapping[str, Any]) -> str:
        """Return the stored resource id of a row given its primary key and column values."""
        if self.resource_id_field is not None:
            return self._encode((values[self.resource_id_field],))
        return self._encode(key)

    def _encode(self, values: tuple[Any, ...]) -> str:
        if None in values:
            name = ", ".join(self.key_fields)
            raise UnauditedWriteError(
                f"A change to {self.model.__name__} cannot be recorded: its resource id "
                f"({self.model.__name__}.{name}) is None, and a change with no resource "
                f"id could never be found again. Give {name} a value before the flush, "
                "or make it NOT NULL."
            )
        return encode_resource_id(values)


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
# The capture mode of models that name none: the config's (set by set_config()).
_default_capture = "session"
_database_in_use: bool | None = None  # cached answer of database_capture_in_use()
# Resolution cache: class -> its TrackedModel (own or inherited), or None when untracked.
_resolved: WeakKeyDictionary[type[Any], TrackedModel | None] = WeakKeyDictionary()


# Called with each newly registered class (the hooks listen on its mapper).
on_register: list[Callable[[type[Any]], None]] = []


def register(tracked: TrackedModel) -> None:
    """Track ``tracked.model`` (replacing an earlier registration of the same class)."""
    global _database_in_use
    _database_in_use = None
    _tracked[tracked.model] = tracked
    _resolved.clear()
    for callback in list(on_register):
        callback(tracked.model)


def set_default_capture(capture: str) -> None:
    """Make ``capture`` the mode of tracked models that name none (``set_config()`` calls it)."""
    global _default_capture, _database_in_use
    _default_capture = capture
    _database_in_use = None


def capture_of(tracked: TrackedModel) -> str:
    """Return how ``tracked`` is captured: ``"session"`` or ``"database"``."""
    return tracked.capture or _default_capture


def in_session(cls: type[Any]) -> TrackedModel | None:
    """Return how instances of ``cls`` are tracked if session capture records them."""
    tracked = lookup(cls)
    if tracked is None or (tracked.capture or _default_capture) != "session":
        return None
    return tracked


def in_database(cls: type[Any]) -> TrackedModel | None:
    """Return how instances of ``cls`` are tracked if database triggers record them."""
    tracked = lookup(cls)
    if tracked is None or (tracked.capture or _default_capture) != "database":
        return None
    return tracked


def database_capture_in_use() -> bool:
    """Tell whether any tracked model is captured by database triggers (cheap: cached)."""
    global _database_in_use
    if _database_in_use is None:
        _database_in_use = any(capture_of(t) == "database" for t in list(_tracked.values()))
    return _database_in_use


def models() -> list[type[Any]]:
    """Return every class registered with ``@track_table``."""
    return list(_tracked.keys())


def unregister(model: type[Any]) -> None:
    """Stop tracking ``model`` itself (subclasses fall back to a tracked ancestor)."""
    global _database_in_use
    _database_in_use = None
    _tracked.pop(model, None)
    _resolved.clear()


def reset() -> None:
    """Forget every registration."""
    global _database_in_use
    _database_in_use = None
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
