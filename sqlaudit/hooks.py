"""The session events that capture changes: ``register_hooks()`` and ``unregister_hooks()``.

Call :func:`register_hooks` once at start-up; it listens on every
:class:`~sqlalchemy.orm.Session` (sync sessions and those inside an
``AsyncSession``). Per flush:

1. ``before_flush`` snapshots, for tracked objects only, the old values of changed
   fields (updates) and the last values of all tracked fields (deletes), and
   resolves the user once;
2. ``after_flush_postexec`` reads what only exists after the flush (generated
   keys, defaults, values computed by SQL) and writes every change row of the
   flush with one executemany ``INSERT`` on the session's own connection, so
   the rows commit or roll back with the change.

Example:
    >>> from sqlaudit.hooks import register_hooks, unregister_hooks
    >>> register_hooks()
    >>> register_hooks()  # a second call changes nothing
    >>> unregister_hooks()
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import InstanceState, Session, UOWTransaction
from sqlalchemy.orm.attributes import History

from sqlaudit import _clock, _registry
from sqlaudit._capture import FlushStamp, Operation, change_rows, changed_fields
from sqlaudit._registry import TrackedModel
from sqlaudit.config import SQLAuditConfig, get_config
from sqlaudit.context import _Unset, auditing_disabled, effective_context
from sqlaudit.exceptions import UserRequiredError

__all__ = ["hooks_registered", "register_hooks", "unregister_hooks"]

# Per-flush state lives in session.info, never in a module global: before_flush
# replaces it on every flush (so a failed flush leaves nothing behind for the next
# one) and after_flush_postexec takes it out.
_FLUSH_KEY = "sqlaudit.flush"
_TRANSACTION_KEY = "sqlaudit.transaction"


@dataclass(slots=True)
class _Pending:
    obj: Any  # a strong reference: the identity map holds persistent objects weakly
    state: InstanceState[Any]
    tracked: TrackedModel
    operation: Operation
    old: dict[str, Any]
    resource_id: str | None


@dataclass(slots=True)
class _FlushCapture:
    config: SQLAuditConfig
    changed_by: str | None
    changed_at: datetime
    extra: dict[str, Any] | None
    pending: list[_Pending] = field(default_factory=list)
    deleted: set[int] = field(default_factory=set)  # id() of objects captured as deleted


def _new_capture(session: Session, pending: list[_Pending]) -> _FlushCapture:
    """Resolve config, user and context once per flush, before anything is written."""
    config = get_config()  # NotConfiguredError
    context = effective_context(session)
    if isinstance(context.user_id, _Unset):
        changed_by = config.current_user_id()
    else:
        changed_by = context.user_id
    if changed_by is None and config.require_user:
        models = sorted({item.tracked.model.__name__ for item in pending}) or ["a tracked model"]
        raise UserRequiredError(
            f"A change to {', '.join(models)} was flushed with no user, and require_user is "
            "on: wrap the work in audit_context(user_id=...), set_session_context(session, "
            "user_id=...), or make get_user_id_callback return the user."
        )
    deleted = {id(item.obj) for item in pending if item.operation is Operation.DELETE}
    return _FlushCapture(
        config, changed_by, _clock.utc_now(), context.stored_extra(), pending, deleted
    )


def _transaction_id(session: Session) -> str:
    """Return the id shared by every change row of the session's current transaction."""
    root = session.get_transaction()
    current = session.info.get(_TRANSACTION_KEY)
    if current is not None and current[0] is root:
        transaction_id: str = current[1]
        return transaction_id
    transaction_id = str(uuid.uuid4())
    # The transaction object itself is kept (not its id()), so a later transaction
    # can never be mistaken for it.
    session.info[_TRANSACTION_KEY] = (root, transaction_id)
    return transaction_id


def _before_flush(session: Session, flush_context: UOWTransaction, instances: Any) -> None:
    if auditing_disabled():
        session.info[_FLUSH_KEY] = None
        return
    pending: list[_Pending] = []
    lookup = _registry.lookup
    for obj in session.new:
        tracked = lookup(type(obj))
        if tracked is not None:
            pending.append(_Pending(obj, sa_inspect(obj), tracked, Operation.INSERT, {}, None))
    for obj in session.dirty:
        tracked = lookup(type(obj))
        if tracked is None:
            continue
        state = sa_inspect(obj)
        old = changed_fields(tracked.fields, _history_reader(state))
        if old:
            resource_id = tracked.resource_id(obj, _identity(state))
            pending.append(_Pending(obj, state, tracked, Operation.UPDATE, old, resource_id))
    for obj in session.deleted:
        tracked = lookup(type(obj))
        if tracked is None:
            continue
        state = sa_inspect(obj)
        # Reading loads any expired attribute (one SELECT for all of them): a delete
        # records the last value of every tracked field.
        old = {name: getattr(obj, name) for name in tracked.fields}
        resource_id = tracked.resource_id(obj, _identity(state))
        pending.append(_Pending(obj, state, tracked, Operation.DELETE, old, resource_id))
    session.info[_FLUSH_KEY] = _new_capture(session, pending) if pending else None


def _persistent_to_deleted(session: Session, instance: Any) -> None:
    """Catch deletes the flush found on its own (``delete-orphan`` cascades).

    The row is gone by now, so the last values are those the object had loaded;
    an attribute that was expired records no value.
    """
    tracked = _registry.lookup(type(instance))
    if tracked is None or auditing_disabled():
        return
    capture: _FlushCapture | None = session.info.get(_FLUSH_KEY)
    if capture is not None and id(instance) in capture.deleted:
        return
    if capture is None:
        capture = session.info[_FLUSH_KEY] = _new_capture(session, [])
    state = sa_inspect(instance)
    old = {name: state.dict.get(name) for name in tracked.fields}
    resource_id = tracked.resource_id(instance, _identity(state))
    capture.pending.append(_Pending(instance, state, tracked, Operation.DELETE, old, resource_id))
    capture.deleted.add(id(instance))


def _after_flush_postexec(session: Session, flush_context: UOWTransaction) -> None:
    capture: _FlushCapture | None = session.info.pop(_FLUSH_KEY, None)
    if capture is None:
        return
    stamp = FlushStamp(
        transaction_id=_transaction_id(session),
        changed_by=capture.changed_by,
        changed_at=capture.changed_at,
        extra=capture.extra,
    )
    rows_by_mapper: dict[Any, list[dict[str, Any]]] = {}
    for item in capture.pending:
        state = item.state
        if item.operation is Operation.DELETE:
            new: dict[str, Any] = {}
            resource_id = item.resource_id
        else:
            names = item.tracked.fields if item.operation is Operation.INSERT else item.old
            new = _current_values(item.obj, state, names)
            resource_id = item.resource_id or item.tracked.resource_id(item.obj, state.identity)
        assert resource_id is not None
        rows = change_rows(item.tracked, item.operation, resource_id, item.old, new, stamp)
        if rows:
            rows_by_mapper.setdefault(state.mapper, []).extend(rows)
    if not rows_by_mapper:
        return
    insert = capture.config.table.insert()
    connections: dict[int, Any] = {}
    for mapper, rows in rows_by_mapper.items():
        connection = session.connection(bind_arguments={"mapper": mapper})
        connections.setdefault(id(connection), (connection, []))[1].extend(rows)
    for connection, rows in connections.values():
        connection.execute(insert, rows)


def _history_reader(state: InstanceState[Any]) -> Callable[[str], History]:
    attrs = state.attrs
    # AttributeState.history never loads: an unloaded attribute has no history.
    return lambda name: attrs[name].history


def _identity(state: InstanceState[Any]) -> tuple[Any, ...] | None:
    """Return the primary key the row had when loaded (``None`` for a pending object)."""
    key = state.key
    return None if key is None else tuple(key[1])


def _current_values(obj: Any, state: InstanceState[Any], names: Any) -> dict[str, Any]:
    """Return the values after the flush.

    Attributes the flush expired (server defaults, SQL expressions) are loaded,
    all in one SELECT.
    """
    data = state.dict
    values: dict[str, Any] = {}
    missing = []
    for name in names:
        if name in data:
            values[name] = data[name]
        else:
            missing.append(name)
    if missing:
        unloaded = state.unloaded
        for name in missing:
            values[name] = getattr(obj, name) if name in unloaded else None
    return values


_EVENTS = (
    ("before_flush", _before_flush),
    ("persistent_to_deleted", _persistent_to_deleted),
    ("after_flush_postexec", _after_flush_postexec),
)


def register_hooks() -> None:
    """Start capturing changes of tracked models in every Session.

    Calling it again changes nothing.

    Example:
        >>> register_hooks()
    """
    for name, listener in _EVENTS:
        if not event.contains(Session, name, listener):
            event.listen(Session, name, listener)


def unregister_hooks() -> None:
    """Stop capturing changes (undoes :func:`register_hooks`).

    Example:
        >>> unregister_hooks()
    """
    for name, listener in _EVENTS:
        if event.contains(Session, name, listener):
            event.remove(Session, name, listener)


def hooks_registered() -> bool:
    """Tell whether :func:`register_hooks` is in effect.

    Example:
        >>> register_hooks(); hooks_registered()
        True
    """
    return all(event.contains(Session, name, listener) for name, listener in _EVENTS)
