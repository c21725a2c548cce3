"""The session events that capture changes: ``register_hooks()`` and ``unregister_hooks()``.

Call :func:`register_hooks` once at start-up; it listens on every
:class:`~sqlalchemy.orm.Session` (sync sessions and those inside an
``AsyncSession``). Per flush:

1. ``before_flush`` resolves the user and context once (so a missing config or a
   required user fails before anything is written) and snapshots what the flush
   would destroy: the last values of deleted objects and the old values of
   attributes assigned a SQL expression;
2. ``after_flush`` reads the attribute history of new and dirty tracked objects,
   after every other ``before_flush`` listener and mapper event has had its say;
3. ``persistent_to_deleted`` catches deletes the flush found on its own
   (``delete-orphan`` cascades);
4. ``after_flush_postexec`` reads what only exists after the flush (generated
   keys, defaults, values computed by SQL) and writes every change row of the
   flush with one ``INSERT`` on the session's own connection, so
   the rows commit or roll back with the change.

Bulk statements run through a Session (``do_orm_execute``) are audited by
:mod:`sqlaudit._bulk`; both share :mod:`sqlaudit._writer`.

Example:
    >>> from sqlaudit.hooks import register_hooks, unregister_hooks
    >>> register_hooks()
    >>> register_hooks()  # a second call changes nothing
    >>> unregister_hooks()
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from weakref import WeakKeyDictionary, WeakSet

from sqlalchemy import event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import InstanceState, Mapper, Session, UOWTransaction, object_session
from sqlalchemy.orm.attributes import instance_state, set_committed_value
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.sql.elements import ClauseElement

from sqlaudit import _bulk, _dbcontext, _guard, _registry
from sqlaudit._capture import ChangeRow, FlushStamp, Operation, change_rows, changed_fields
from sqlaudit._registry import TrackedModel
from sqlaudit._stored import checks_for
from sqlaudit._writer import Author, resolve, write
from sqlaudit.config import get_config
from sqlaudit.context import auditing_disabled
from sqlaudit.exceptions import (
    ConfigurationTypeError,
    HooksNotRegisteredWarning,
    NotConfiguredError,
    TriggerDriftWarning,
    UnauditedWriteError,
)

__all__ = ["hooks_registered", "register_hooks", "unregister_hooks", "watch_unregistered"]

# Per-flush state lives in session.info, never in a module global: before_flush
# replaces it on every flush (so a failed flush leaves nothing behind for the next
# one) and after_flush_postexec takes it out.
_FLUSH_KEY = "sqlaudit.flush"


@dataclass(slots=True)
class _Pending:
    obj: Any  # a strong reference: the identity map holds persistent objects weakly
    state: InstanceState[Any]
    tracked: TrackedModel
    operation: Operation
    old: dict[str, Any]
    resource_id: str | None  # None for inserts until the key exists
    missing: list[str] = field(default_factory=list)  # old values still to be read
    keyed: bool = False  # an update that assigned the key: it may have moved the resource
    key_before: dict[str, Any] = field(default_factory=dict)  # untracked key fields, as read


@dataclass(slots=True)
class _FlushCapture:
    author: Author
    pending: list[_Pending] = field(default_factory=list)
    # id() -> snapshot taken before the flush (deletes, SQL-expression old values)
    before: dict[int, _Pending] = field(default_factory=dict)
    seen: set[int] = field(default_factory=set)  # id() of objects already captured
    updates: dict[int, _Pending] = field(default_factory=dict)  # id() -> UPDATE pending


def _capture_of(session: Session, tracked: TrackedModel) -> _FlushCapture:
    capture: _FlushCapture | None = session.info.get(_FLUSH_KEY)
    if capture is None:
        capture = session.info[_FLUSH_KEY] = _FlushCapture(resolve(session, {tracked.model}))
    return capture


def _before_flush(session: Session, flush_context: UOWTransaction, instances: Any) -> None:
    session.info[_FLUSH_KEY] = None
    if auditing_disabled():
        return
    if _registry.database_capture_in_use():
        _prepare_triggers(session)
    lookup = _registry.in_session
    models: set[type[Any]] = set()
    before: dict[int, _Pending] = {}
    read_all = _reads_old_values()
    for obj in session.new:
        tracked = lookup(type(obj))
        if tracked is not None:
            models.add(tracked.model)
    unknown: dict[TrackedModel, list[_Pending]] = {}
    dirty: list[tuple[InstanceState[Any], TrackedModel]] = []
    for obj in session.dirty:
        tracked = lookup(type(obj))
        if tracked is None:
            continue
        state = instance_state(obj)
        committed = state.committed_state
        if (
            not any(name in committed for name in tracked.fields)
            and not any(name in committed for name in tracked.key_fields)
            and not _post_update_fields(tracked, committed)
        ):
            continue  # only untracked attributes were assigned
        models.add(tracked.model)
        dirty.append((state, tracked))
        snapshot = _update_snapshot(obj, state, tracked, read_all)
        if snapshot is not None:
            before[id(obj)] = snapshot
            if snapshot.missing:
                unknown.setdefault(tracked, []).append(snapshot)
    for obj in session.deleted:
        tracked = lookup(type(obj))
        if tracked is None:
            continue
        models.add(tracked.model)
        state = instance_state(obj)
        snapshot = _delete_snapshot(obj, state, tracked, read_all)
        before[id(obj)] = snapshot
        if snapshot.missing:
            unknown.setdefault(tracked, []).append(snapshot)
    if models:

        def changes_anything() -> bool:
            return (
                len(before) > 0
                or any(lookup(type(obj)) is not None for obj in session.new)
                or any(
                    changed_fields(t.fields, s.committed_state, s.dict, t.equals) for s, t in dirty
                )
            )

        capture = _FlushCapture(resolve(session, models, changes_anything))
        session.info[_FLUSH_KEY] = capture
        capture.before = before
        _refuse_autocommit(session, models, changes_anything)
    for tracked, snapshots in unknown.items():
        _read_old_values(session, tracked, snapshots)
    for snapshot in before.values():
        if snapshot.operation is Operation.DELETE:
            # The id the row had: a key field edited before the delete never reached it.
            values = {**snapshot.key_before, **snapshot.old}
            snapshot.resource_id = snapshot.tracked.resource_id_of(
                _identity(snapshot.state) or (), values
            )


_CHECKED_KEY = "sqlaudit.transactional"


def _prepare_triggers(session: Session) -> None:
    """Hand the database triggers the context of this flush's database-captured writes."""
    found: dict[Mapper[Any], TrackedModel] = {}
    for collection in (session.new, session.dirty, session.deleted):
        for obj in collection:
            tracked = _registry.in_database(type(obj))
            if tracked is not None:
                found.setdefault(sa_inspect(type(obj)), tracked)
    _dbcontext.prepare_for(session, found)


def _refuse_autocommit(session: Session, models: set[type[Any]], changes_anything: Any) -> None:
    """Refuse the flush before it runs when its tracked changes would autocommit.

    Every bind the flush writes tracked rows on is checked; one found transactional
    is remembered for the rest of the session transaction (its isolation level is
    fixed when it begins), one found in AUTOCOMMIT is checked again at every flush.
    """
    root = session.get_transaction()
    checked: tuple[Any, set[Any]] | None = session.info.get(_CHECKED_KEY)
    if checked is None or checked[0] is not root:
        checked = session.info[_CHECKED_KEY] = (root, set())
    for model in models:
        mapper = sa_inspect(model)
        bind = session.get_bind(mapper=mapper)
        if bind in checked[1]:
            continue
        connection = session.connection(bind_arguments={"mapper": mapper})
        if not _guard.is_autocommit(connection, {}):
            checked[1].add(bind)
        elif changes_anything():
            _guard.refuse_autocommit(connection, {}, models)


# The committed value of an attribute assigned while expired or never loaded:
# SQLAlchemy did not load it (loading on assignment would break AsyncSession).
_UNKNOWN = NO_VALUE


def _reads_old_values() -> bool:
    try:
        return get_config().read_old_values
    except NotConfiguredError:  # resolve() raises it once a tracked change is seen
        return True


def _update_snapshot(
    obj: Any, state: InstanceState[Any], tracked: TrackedModel, read_all: bool
) -> _Pending | None:
    """List, before the flush, the old values to read from the database.

    With ``read_old_values`` (the default) every tracked attribute the flush will
    write, and a key field it changes, is read (locked) just before the flush's
    UPDATE, in one query per model: the value the session loaded may be stale
    (another transaction changed the row since, or a bulk statement did). Either
    way, values the session never loaded (assigned while expired) are read, and the
    old value of a SQL expression (which the flush expires) is kept.
    """
    committed = state.committed_state
    if not committed:
        return None
    data = state.dict
    old: dict[str, Any] = {}
    if read_all:
        missing = list(changed_fields(tracked.fields, committed, data, tracked.equals))
    else:
        missing = []
        for name in tracked.fields:
            if name not in committed:
                continue
            value = committed[name]
            if value is _UNKNOWN:
                missing.append(name)
            elif isinstance(data.get(name), ClauseElement):
                old[name] = value
    missing.extend(
        name
        for name in tracked.key_fields
        if name in committed
        and name not in missing
        and (read_all or (committed[name] is _UNKNOWN and name not in tracked.fields))
    )
    missing.extend(
        name
        for name in _post_update_fields(tracked, committed)
        if name not in missing and (read_all or name not in data)
    )
    if not missing and not old:
        return None
    snapshot = _Pending(obj, state, tracked, Operation.UPDATE, old, None)
    snapshot.missing = missing
    return snapshot


_post_updates: WeakKeyDictionary[TrackedModel, dict[str, tuple[str, ...]]] = WeakKeyDictionary()


def _post_update_fields(tracked: TrackedModel, committed: Mapping[str, Any]) -> list[str]:
    """Return tracked foreign keys that a changed ``post_update`` relationship will set.

    The flush sets them in a second UPDATE, which no mapper event precedes, so their
    old values are read before the flush.
    """
    by_relationship = _post_updates.get(tracked)
    if by_relationship is None:
        mapper = sa_inspect(tracked.model)
        by_relationship = {}
        for relationship in mapper.relationships:
            if relationship.post_update:
                names = tuple(
                    prop.key
                    for column in relationship.local_columns
                    if (prop := mapper.get_property_by_column(column)).key in tracked.fields
                )
                if names:
                    by_relationship[relationship.key] = names
        _post_updates[tracked] = by_relationship
    if not by_relationship:
        return []
    return [name for key, names in by_relationship.items() if key in committed for name in names]


def _read_old_values(session: Session, tracked: TrackedModel, snapshots: list[_Pending]) -> None:
    """Read the database's current values of attributes assigned unloaded, in one query.

    The rows are locked (``FOR UPDATE`` where the database has it) so that the value
    read is the value the flush's UPDATE replaces.
    """
    # The tracked class's mapper, not an instance's: a query on one subclass of a
    # single-table hierarchy would filter out its siblings' rows.
    mapper = sa_inspect(tracked.model)
    names = list(dict.fromkeys(name for item in snapshots for name in item.missing))
    keys = [key for item in snapshots if (key := _identity(item.state)) is not None]
    rows: list[Any] = []
    connection = session.connection(bind_arguments={"mapper": mapper})
    for query in _bulk.core_select_by_keys(mapper, tracked, names, keys, lock=True):
        rows.extend(connection.execute(query).all())
    values = _bulk.rows_by_key(rows, len(tracked.primary_key), names)
    fields = set(tracked.fields)
    for item in snapshots:
        identity = _identity(item.state)
        current = values.get(identity, {}) if identity is not None else {}
        for name in item.missing:
            target = item.old if name in fields else item.key_before
            target[name] = current.get(name)


def _before_update(mapper: Mapper[Any], connection: Connection, target: Any) -> None:
    """Read old values of tracked attributes assigned during the flush while expired.

    The flush itself may assign them after ``before_flush``: a foreign key copied
    from a relationship, a ``before_update`` mapper listener, a ``before_flush``
    listener registered after sqlaudit's. Their committed value is unknown
    (``NO_VALUE``); it is read here, locked, just before the row's UPDATE, on the
    flush's own connection.
    """
    state = instance_state(target)
    committed = state.committed_state
    if not any(value is _UNKNOWN for value in committed.values()):
        return  # the common case: every old value is known
    tracked = _registry.in_session(type(target))
    if tracked is None or auditing_disabled():
        return
    missing = [name for name in tracked.fields if name in committed and committed[name] is _UNKNOWN]
    session = state.session
    if not missing or session is None:
        return
    capture = _capture_of(session, tracked)
    snapshot = capture.before.get(id(target))
    if snapshot is None:
        snapshot = capture.before[id(target)] = _Pending(
            target, state, tracked, Operation.UPDATE, {}, None
        )
    names = [name for name in missing if name not in snapshot.old]
    identity = _identity(state)
    if not names or identity is None:
        return
    model = sa_inspect(tracked.model)
    row = None
    for query in _bulk.core_select_by_keys(model, tracked, names, [identity], lock=True):
        row = connection.execute(query).first()
    values = {} if row is None else dict(zip(names, row[len(identity) :], strict=True))
    for name in names:
        snapshot.old[name] = values.get(name)


def _after_flush(session: Session, flush_context: UOWTransaction) -> None:
    if auditing_disabled():
        return
    lookup = _registry.in_session
    capture: _FlushCapture | None = session.info.get(_FLUSH_KEY)
    before = {} if capture is None else capture.before
    for obj in session.new:
        tracked = lookup(type(obj))
        if tracked is not None:
            capture = capture or _capture_of(session, tracked)
            capture.pending.append(
                _Pending(obj, instance_state(obj), tracked, Operation.INSERT, {}, None)
            )
    for obj in session.dirty:
        tracked = lookup(type(obj))
        if tracked is None:
            continue
        state = instance_state(obj)
        committed = state.committed_state
        snapshot = before.get(id(obj))
        if not committed and snapshot is None:
            continue
        old = changed_fields(tracked.fields, committed, state.dict, tracked.equals)
        if snapshot is not None:
            # The values read from the database before the flush (only for fields
            # the flush writes) replace what the session remembered; a SQL
            # expression's field is known only to the snapshot (the flush expired it).
            old.update(snapshot.old)
        _refuse_unknown_old_values(tracked, committed, old, snapshot)
        keyed = any(name in committed for name in tracked.key_fields)
        if old or keyed:
            capture = capture or _capture_of(session, tracked)
            if keyed and tracked.resource_id_field is not None:
                resource_id = _resource_id_before(obj, state, tracked, old, snapshot)
            else:  # the identity is still the key the row had before the flush
                resource_id = tracked.resource_id(obj, _identity(state))
            update = _Pending(obj, state, tracked, Operation.UPDATE, old, resource_id)
            update.keyed = keyed
            capture.pending.append(update)
            capture.updates[id(obj)] = update
    for item in before.values():
        if item.operation is Operation.DELETE and capture is not None:
            capture.pending.append(item)
            capture.seen.add(id(item.obj))


def _refuse_unknown_old_values(
    tracked: TrackedModel,
    committed: Any,
    old: dict[str, Any],
    snapshot: _Pending | None,
) -> None:
    """Fail the flush rather than record a guessed old value.

    An attribute assigned while expired after every chance to read its old value
    (by a ``before_update`` listener registered after :func:`register_hooks`) has
    a committed value nobody knows; the flush already overwrote it.

    Raises:
        UnauditedWriteError: such an attribute was written by this flush.
    """
    known = snapshot.old if snapshot is not None else {}
    for name in old:
        if committed.get(name) is _UNKNOWN and name not in known:
            model = tracked.model.__name__
            raise UnauditedWriteError(
                f"{model}.{name} was assigned during the flush while expired, after "
                "sqlaudit could read the value it replaces (a before_update listener "
                "registered after register_hooks(), say), so its old value is unknown. "
                "Call register_hooks() after registering that listener, or load "
                f"{model}.{name} before it is assigned."
            )


def _persistent_to_deleted(session: Session, instance: Any) -> None:
    """Catch deletes the flush found on its own (``delete-orphan`` cascades).

    The row is gone by now, so the last values are those the object had loaded;
    an attribute that was expired records no value.
    """
    tracked = _registry.in_session(type(instance))
    # Outside a flush (a bulk delete synchronising the session) the bulk hook has
    # already recorded the rows.
    if tracked is None or auditing_disabled() or not session._flushing:
        return
    capture = _capture_of(session, tracked)
    if id(instance) in capture.seen:
        return
    state = instance_state(instance)
    old = {name: state.dict.get(name) for name in tracked.fields}
    update = capture.updates.pop(id(instance), None)
    if update is not None:
        # Edited, then orphaned: the row was deleted, never updated; the edit's old
        # side is what the database held.
        old.update(update.old)
        update.old = {}
    resource_id = tracked.resource_id(instance, _identity(state))
    capture.pending.append(_Pending(instance, state, tracked, Operation.DELETE, old, resource_id))
    capture.seen.add(id(instance))


def _after_flush_postexec(session: Session, flush_context: UOWTransaction) -> None:
    capture: _FlushCapture | None = session.info.pop(_FLUSH_KEY, None)
    if capture is None or not capture.pending:
        return
    # Only what this flush wrote: session.flush([obj]) leaves the other pending,
    # dirty and deleted objects as they were, to be recorded when they are flushed.
    # Deletes first: a delete and an insert of one key in one flush (SQLAlchemy's
    # "row switch") happened in that order.
    written = flushed_states(flush_context)
    done = [item for item in capture.pending if _flushed(item, written)]
    done.sort(key=lambda item: item.operation is not Operation.DELETE)
    if not done:
        return
    first = done[0].state.mapper
    stamp = capture.author.stamp(session, session.connection(bind_arguments={"mapper": first}))
    deleted = {
        (item.tracked.table_name, item.resource_id)
        for item in done
        if item.operation is Operation.DELETE
    }
    news: list[dict[str, Any]] = []
    switched: set[int] = set()
    for index, item in enumerate(done):
        if item.operation is Operation.DELETE:
            news.append({})
            continue
        names = item.tracked.fields if item.operation is Operation.INSERT else item.old
        news.append(_current_values(item.obj, item.state, names))
        if item.operation is Operation.INSERT:
            item.resource_id = item.tracked.resource_id(item.obj, _identity(item.state))
            if (item.tracked.table_name, item.resource_id) in deleted:
                # A row switch: SQLAlchemy updated the deleted object's row, so columns
                # the new object left unset keep the old row's values. Read them all.
                switched.add(index)
    _read_stored_values(session, done, news, switched)
    # Every delete of the flush (a changed key's end included) is written before any
    # insert, so that two objects swapping keys never end a life just begun.
    early: list[tuple[Any, list[ChangeRow]]] = []
    late: list[tuple[Any, list[ChangeRow]]] = []
    for item, new in zip(done, news, strict=True):
        tracked, state = item.tracked, item.state
        resource_id = item.resource_id
        if resource_id is None or item.keyed:
            resource_id = tracked.resource_id(item.obj, _identity(state))  # after the flush
            if item.resource_id is not None and item.resource_id != resource_id:
                ended, begun = _moved_rows(item, resource_id, stamp)
                early.append((state.mapper, ended))
                late.append((state.mapper, begun))
                continue
        rows = change_rows(tracked, item.operation, resource_id, item.old, new, stamp)
        if rows:
            (early if item.operation is Operation.DELETE else late).append((state.mapper, rows))
    write(session, capture.author.config, early + late)


def _read_stored_values(
    session: Session,
    done: list[_Pending],
    news: list[dict[str, Any]],
    switched: set[int],
) -> None:
    """Replace new values the database may store otherwise by what it stores.

    ``Decimal("1.5")`` in a ``Numeric(10, 2)`` is stored as ``1.50``, a MySQL
    ``DATETIME`` drops microseconds (see :mod:`sqlaudit._stored`). Such values are
    read back, one SELECT per model, only when one occurs; the object is given the
    stored value too, so the next change's old value chains with this one.
    ``switched``: indexes of inserts that took over a deleted row (read in full).
    """
    wanted: dict[TrackedModel, list[tuple[_Pending, dict[str, Any], list[str]]]] = {}
    checks_by_mapper: dict[Any, dict[str, Any]] = {}
    for index, (item, new) in enumerate(zip(done, news, strict=True)):
        if index in switched:
            wanted.setdefault(item.tracked, []).append((item, new, list(item.tracked.fields)))
            continue
        if not new:
            continue
        mapper = item.state.mapper
        checks = checks_by_mapper.get(mapper)
        if checks is None:
            dialect = session.get_bind(mapper=mapper).dialect.name
            checks = checks_by_mapper[mapper] = checks_for(item.tracked, dialect)
        if not checks:
            continue
        names = [
            name
            for name, value in new.items()
            if value is not None and name in checks and checks[name](value)
        ]
        if names:
            wanted.setdefault(item.tracked, []).append((item, new, names))
    for tracked, items in wanted.items():
        model = sa_inspect(tracked.model)
        names = list(dict.fromkeys(name for _, _, item_names in items for name in item_names))
        keys = [key for item, _, _ in items if (key := _identity(item.state)) is not None]
        rows: list[Any] = []
        connection = session.connection(bind_arguments={"mapper": model})
        for query in _bulk.core_select_by_keys(model, tracked, names, keys, lock=False):
            rows.extend(connection.execute(query).all())
        stored = _bulk.rows_by_key(rows, len(tracked.primary_key), names)
        for item, new, item_names in items:
            values = stored.get(_identity(item.state) or (), {})
            for name in item_names:
                if name in values:
                    new[name] = values[name]
                    if item.state.dict.get(name, NO_VALUE) is not values[name]:
                        set_committed_value(item.obj, name, values[name])


def flushed_states(flush_context: UOWTransaction) -> Mapping[Any, tuple[bool, bool]]:
    """Return the states the flush wrote: ``{state: (isdelete, listonly)}``.

    The unit of work keeps them in ``UOWTransaction.states``, an attribute without
    a public accessor; this is the one place that reads it (tests/test_fail_closed.py
    breaks if it goes away).
    """
    states: Mapping[Any, tuple[bool, bool]] = flush_context.states
    return states


def _flushed(item: _Pending, written: Mapping[Any, tuple[bool, bool]]) -> bool:
    """Tell whether the flush that just ended wrote this object's change.

    Judged by the flush itself, not by the object's state afterwards (a listener may
    have changed it again since).
    """
    entry = written.get(item.state)
    if entry is None:
        return False
    isdelete, listonly = entry
    if item.operation is Operation.DELETE:
        # A row switch (a delete and an add of one key, sent as one UPDATE) leaves
        # the deleted object listed only; its row was replaced all the same.
        return isdelete
    return not isdelete and not listonly and item.state.key is not None


def _moved_rows(
    item: _Pending, resource_id: str, stamp: FlushStamp
) -> tuple[list[ChangeRow], list[ChangeRow]]:
    """Record an update that changed the resource id as a delete and an insert, linked.

    The old id's life ends with its last values, the new id's begins with every
    tracked value; both carry ``{"sqlaudit.key_change": {"from": ..., "to": ...}}``
    in their ``extra`` context, and they share the transaction id.
    """
    tracked, obj, state = item.tracked, item.obj, item.state
    old_id = item.resource_id or ""
    current = _current_values(obj, state, tracked.fields)
    last = {name: item.old.get(name, current[name]) for name in tracked.fields}
    context = dict(stamp.extra or {})
    context["extra"] = {
        **context.get("extra", {}),
        "sqlaudit.key_change": {"from": old_id, "to": resource_id},
    }
    linked = replace(stamp, extra=context)
    return (
        change_rows(tracked, Operation.DELETE, old_id, last, {}, linked),
        change_rows(tracked, Operation.INSERT, resource_id, {}, current, linked),
    )


def _resource_id_before(
    obj: Any,
    state: InstanceState[Any],
    tracked: TrackedModel,
    old: dict[str, Any],
    snapshot: _Pending | None,
) -> str:
    """Return the resource id the object had before this flush (it may be changing it)."""
    name = tracked.resource_id_field
    if name is None:
        return tracked.resource_id(obj, _identity(state))  # the identity is still the old key
    value = old.get(name, NO_VALUE)
    if value is NO_VALUE and snapshot is not None:
        value = snapshot.key_before.get(name, NO_VALUE)
    if value is NO_VALUE:
        value = state.committed_state.get(name, NO_VALUE)
    if value is NO_VALUE:
        value = state.dict.get(name)
    return tracked.resource_id_of((), {name: value})


def _identity(state: InstanceState[Any]) -> tuple[Any, ...] | None:
    """Return the primary key the row had when loaded (``None`` for a pending object)."""
    key = state.key
    return None if key is None else tuple(key[1])


def _delete_snapshot(
    obj: Any, state: InstanceState[Any], tracked: TrackedModel, read_all: bool
) -> _Pending:
    """List the values to read for an object about to be deleted: its last values.

    With ``read_old_values`` every tracked field (and an untracked resource-id field)
    is read from the database, locked, in one query per model: what the session
    holds may be an edit never flushed, a value never loaded, or stale. Without it,
    the session's loaded values are used (the committed side of an unflushed edit)
    and only values never loaded are read.
    """
    snapshot = _Pending(obj, state, tracked, Operation.DELETE, {}, None)
    key_field = tracked.resource_id_field
    names = list(tracked.fields)
    if key_field is not None and key_field not in tracked.fields:
        names.append(key_field)
    if read_all:
        snapshot.missing = names
        return snapshot
    committed = state.committed_state
    for name in names:
        target = snapshot.old if name in tracked.fields else snapshot.key_before
        if name in committed:
            if committed[name] is _UNKNOWN:
                snapshot.missing.append(name)
            else:
                target[name] = committed[name]
        else:
            target[name] = getattr(obj, name)
    return snapshot


def _current_values(obj: Any, state: InstanceState[Any], names: Any) -> dict[str, Any]:
    """Return the values after the flush.

    Attributes the flush expired (server defaults, SQL expressions) are loaded,
    all in one SELECT.
    """
    data = state.dict
    return {name: data[name] if name in data else getattr(obj, name) for name in names}


_EVENTS: tuple[tuple[str, Any], ...] = (
    ("do_orm_execute", _bulk.do_orm_execute),
    ("before_flush", _before_flush),
    ("after_flush", _after_flush),
    ("persistent_to_deleted", _persistent_to_deleted),
    ("after_flush_postexec", _after_flush_postexec),
    ("before_commit", _guard.before_commit),
    ("after_transaction_end", _guard.after_transaction_end),
    ("after_soft_rollback", _guard.after_soft_rollback),
)


# Listened on each tracked class, at register_hooks() (or when the class is tracked
# later): a mapper's listeners run in the order they were registered, so listeners
# an application registered before register_hooks() run before sqlaudit's.
def _before_write(mapper: Mapper[Any], connection: Connection, target: Any) -> None:
    """Make sure the triggers have the context, right before a database-captured row is written.

    ``before_flush`` hands it over for the objects the session held when the flush
    began; this catches any added later (by another ``before_flush`` listener).
    """
    if not _registry.database_capture_in_use() or auditing_disabled():
        return
    tracked = _registry.in_database(type(target))
    if tracked is None or _dbcontext.ready(connection, tracked):
        return
    session = object_session(target)
    if session is not None:
        _dbcontext.prepare(session, connection, resolve(session, {tracked.model}), [tracked])


_MAPPER_EVENTS: tuple[tuple[str, Any], ...] = (
    ("before_update", _before_update),
    ("before_insert", _before_write),
    ("before_update", _before_write),
    ("before_delete", _before_write),
)
_listened: WeakSet[type[Any]] = WeakSet()


def _listen_mapper(model: type[Any]) -> None:
    for name, listener in _MAPPER_EVENTS:
        if not event.contains(model, name, listener):
            event.listen(model, name, listener, propagate=True)
    _listened.add(model)


def _unlisten_mappers() -> None:
    for model in list(_listened):
        for name, listener in _MAPPER_EVENTS:
            if event.contains(model, name, listener):
                event.remove(model, name, listener)
    _listened.clear()


def _end_of_transaction(connection: Connection) -> None:
    if _registry.database_capture_in_use():
        _dbcontext.clear(connection)
        connection.info[_CLEAN_KEY] = True


def _begin(connection: Connection) -> None:
    connection.info[_CLEAN_KEY] = False


def _pool_reset(dbapi_connection: Any, record: Any, reset_state: Any) -> None:
    # A connection returned to the pool without commit or rollback through its
    # Connection (reset on return): MySQL/MariaDB session variables would outlive it.
    if record.info.get(_CLEAN_KEY, True) or not _registry.database_capture_in_use():
        return
    if "mysql" in type(dbapi_connection).__module__.lower():
        _dbcontext.reset_dbapi(dbapi_connection, "mysql")
    record.info[_CLEAN_KEY] = True


_CLEAN_KEY = "sqlaudit.context_clear"
# Listened on every Engine (and so every pool): database capture's context must not
# outlive a transaction.
_ENGINE_EVENTS: tuple[tuple[str, Any], ...] = (
    ("begin", _begin),
    ("commit", _end_of_transaction),
    ("rollback", _end_of_transaction),
    ("reset", _pool_reset),
)


def register_hooks() -> None:
    """Start capturing changes of tracked models in every Session.

    Calling it again changes nothing.

    Example:
        >>> register_hooks()
    """
    global _decided
    _decided = True
    _stop_watching()
    for name, listener in _EVENTS:
        if not event.contains(Session, name, listener):
            event.listen(Session, name, listener)
    for model in _registry.models():
        _listen_mapper(model)
    if _listen_mapper not in _registry.on_register:
        _registry.on_register.append(_listen_mapper)
    _guard.install_legacy_guards()
    for name, listener in _ENGINE_EVENTS:
        if not event.contains(Engine, name, listener):
            event.listen(Engine, name, listener)
    _check_triggers_at_start()


def _check_triggers_at_start() -> None:
    """Warn about drift of the capture triggers, when database capture is configured."""
    if not _registry.database_capture_in_use():
        return
    try:
        config = get_config()
    except NotConfiguredError:
        return
    from sqlaudit import triggers

    try:
        with config.open_session() as session:
            bind = session.get_bind()
    except ConfigurationTypeError:
        # An async session factory: the check needs the event loop, so an async
        # application awaits sqlaudit.asyncio.check_triggers(engine) instead.
        return
    except Exception as error:  # start-up must not fail on a check
        warnings.warn(
            f"sqlaudit could not check the capture triggers: {error}",
            TriggerDriftWarning,
            stacklevel=3,
        )
        return
    triggers.warn_on_drift(bind)


def unregister_hooks() -> None:
    """Stop capturing changes (undoes :func:`register_hooks`).

    Example:
        >>> unregister_hooks()
    """
    global _decided
    _decided = True
    _stop_watching()
    for name, listener in _EVENTS:
        if event.contains(Session, name, listener):
            event.remove(Session, name, listener)
    if _listen_mapper in _registry.on_register:
        _registry.on_register.remove(_listen_mapper)
    _unlisten_mappers()
    _guard.remove_legacy_guards()
    for name, listener in _ENGINE_EVENTS:
        if event.contains(Engine, name, listener):
            event.remove(Engine, name, listener)


def hooks_registered() -> bool:
    """Tell whether :func:`register_hooks` is in effect.

    Example:
        >>> register_hooks(); hooks_registered()
        True
    """
    return all(event.contains(Session, name, listener) for name, listener in _EVENTS)


# Forgetting register_hooks() must not be silent. Until register_hooks() or
# unregister_hooks() is called (a decision either way), @track_table puts one cheap
# before_flush listener in place that warns when a flush carries tracked objects.
_decided = False


def watch_unregistered() -> None:
    """Warn at the next flush of a tracked model if :func:`register_hooks` is still not called.

    Called by ``@track_table``; does nothing once :func:`register_hooks` or
    :func:`unregister_hooks` has been called.

    Example:
        >>> watch_unregistered()
    """
    if _decided or hooks_registered():
        return
    if not event.contains(Session, "before_flush", _warn_unregistered):
        event.listen(Session, "before_flush", _warn_unregistered)


def _forget_decision() -> None:
    """Return to the start-up state: as if neither hook function had been called (tests).

    Example:
        >>> _forget_decision()
    """
    global _decided
    _decided = False
    _stop_watching()


def _stop_watching() -> None:
    if event.contains(Session, "before_flush", _warn_unregistered):
        event.remove(Session, "before_flush", _warn_unregistered)


def _warn_unregistered(session: Session, flush_context: UOWTransaction, instances: Any) -> None:
    if _decided or hooks_registered() or auditing_disabled():
        return
    names = sorted(
        {
            tracked.model.__name__
            for group in (session.new, session.dirty, session.deleted)
            for obj in group
            if (tracked := _registry.lookup(type(obj))) is not None
        }
    )
    if names:
        warnings.warn(
            f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} tracked with "
            "@track_table but register_hooks() was never called, so this flush records "
            "no changes: call sqlaudit.register_hooks() once at start-up, after set_config().",
            HooksNotRegisteredWarning,
            stacklevel=2,
        )
