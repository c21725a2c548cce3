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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Result
from sqlalchemy.orm import InstanceState, ORMExecuteState, Session, UOWTransaction
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.sql.elements import ClauseElement

from sqlaudit import _bulk, _clock, _registry, _schema
from sqlaudit._capture import ChangeRow, FlushStamp, Operation, change_rows, changed_fields
from sqlaudit._registry import TrackedModel
from sqlaudit.config import SQLAuditConfig, get_config
from sqlaudit.context import _Unset, auditing_disabled, effective_context
from sqlaudit.exceptions import BulkStatementError, UserRequiredError

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
    resource_id: str | None  # None for inserts until the key exists
    missing: list[str] = field(default_factory=list)  # old values still to be read


@dataclass(slots=True)
class _FlushCapture:
    config: SQLAuditConfig
    changed_by: str | None
    changed_at: datetime
    extra: dict[str, Any] | None
    pending: list[_Pending] = field(default_factory=list)
    # id() -> snapshot taken before the flush (deletes, SQL-expression old values)
    before: dict[int, _Pending] = field(default_factory=dict)
    seen: set[int] = field(default_factory=set)  # id() of objects already captured
    updates: dict[int, _Pending] = field(default_factory=dict)  # id() -> UPDATE pending


def _new_capture(
    session: Session,
    models: set[type[Any]],
    changes_anything: Callable[[], bool] = lambda: True,
) -> _FlushCapture:
    """Resolve config, user and context once per flush.

    ``changes_anything`` tells, only when it matters (``require_user`` and no user),
    whether the flush really changes a tracked value: assigning an equal value is
    no change and needs no user.
    """
    config = get_config()  # NotConfiguredError
    context = effective_context(session)
    if isinstance(context.user_id, _Unset):
        changed_by = config.current_user_id()
    else:
        changed_by = context.user_id
    if changed_by is None and config.require_user and changes_anything():
        names = ", ".join(sorted(model.__name__ for model in models)) or "a tracked model"
        raise UserRequiredError(
            f"A change to {names} was flushed with no user, and require_user is on: wrap "
            "the work in audit_context(user_id=...), set_session_context(session, "
            "user_id=...), or make get_user_id_callback return the user."
        )
    return _FlushCapture(config, changed_by, _clock.utc_now(), context.stored_extra())


def _capture_of(session: Session, tracked: TrackedModel) -> _FlushCapture:
    capture: _FlushCapture | None = session.info.get(_FLUSH_KEY)
    if capture is None:
        capture = session.info[_FLUSH_KEY] = _new_capture(session, {tracked.model})
    return capture


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
    session.info[_FLUSH_KEY] = None
    if auditing_disabled():
        return
    lookup = _registry.lookup
    models: set[type[Any]] = set()
    before: dict[int, _Pending] = {}
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
        state = sa_inspect(obj)
        committed = state.committed_state
        if not any(name in committed for name in tracked.fields):
            continue  # only untracked attributes were assigned
        models.add(tracked.model)
        dirty.append((state, tracked))
        snapshot = _update_snapshot(obj, state, tracked)
        if snapshot is not None:
            before[id(obj)] = snapshot
            if snapshot.missing:
                unknown.setdefault(tracked, []).append(snapshot)
    for obj in session.deleted:
        tracked = lookup(type(obj))
        if tracked is None:
            continue
        models.add(tracked.model)
        state = sa_inspect(obj)
        resource_id = tracked.resource_id(obj, _identity(state))
        snapshot = _delete_snapshot(obj, state, tracked, resource_id)
        before[id(obj)] = snapshot
        if snapshot.missing:
            unknown.setdefault(tracked, []).append(snapshot)
    if models:

        def changes_anything() -> bool:
            return (
                len(before) > 0
                or any(lookup(type(obj)) is not None for obj in session.new)
                or any(changed_fields(t.fields, s.committed_state, s.dict) for s, t in dirty)
            )

        capture = session.info[_FLUSH_KEY] = _new_capture(session, models, changes_anything)
        capture.before = before
    for tracked, snapshots in unknown.items():
        _read_old_values(session, tracked, snapshots)


# The committed value of an attribute assigned while expired or never loaded:
# SQLAlchemy did not load it (loading on assignment would break AsyncSession).
_UNKNOWN = NO_VALUE


def _update_snapshot(obj: Any, state: InstanceState[Any], tracked: TrackedModel) -> _Pending | None:
    """Keep, before the flush, the old values the flush would lose.

    Two kinds: attributes assigned a SQL expression (the flush expires them, and
    their history with them), and attributes assigned while expired or unloaded
    (their old value was never loaded). The first are known now; the second are
    listed in ``missing`` for one batched read per model.
    """
    committed = state.committed_state
    if not committed:
        return None
    data = state.dict
    old: dict[str, Any] = {}
    missing: list[str] = []
    for name in tracked.fields:
        if name not in committed:
            continue
        value = committed[name]
        if value is _UNKNOWN:
            missing.append(name)
        elif isinstance(data.get(name), ClauseElement):
            old[name] = value
    if not old and not missing:
        return None
    snapshot = _Pending(obj, state, tracked, Operation.UPDATE, old, None)
    snapshot.missing = missing
    return snapshot


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
    for query in _bulk.select_by_keys(mapper, tracked, names, keys, lock=True):
        rows.extend(session.execute(query, bind_arguments={"mapper": mapper}).all())
    values = _bulk.rows_by_key(rows, len(tracked.primary_key), names)
    for item in snapshots:
        identity = _identity(item.state)
        current = values.get(identity, {}) if identity is not None else {}
        for name in item.missing:
            item.old[name] = current.get(name)


def _after_flush(session: Session, flush_context: UOWTransaction) -> None:
    if auditing_disabled():
        return
    lookup = _registry.lookup
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
        old = changed_fields(tracked.fields, committed, state.dict)
        if snapshot is not None:
            # Old values only the snapshot knows: SQL expressions (expired by the
            # flush, history and all) and values read from the database.
            old.update(snapshot.old)
        if old:
            capture = capture or _capture_of(session, tracked)
            resource_id = tracked.resource_id(obj, _identity(state))
            update = _Pending(obj, state, tracked, Operation.UPDATE, old, resource_id)
            capture.pending.append(update)
            capture.updates[id(obj)] = update
    for item in before.values():
        if item.operation is Operation.DELETE and capture is not None:
            capture.pending.append(item)
            capture.seen.add(id(item.obj))


def _persistent_to_deleted(session: Session, instance: Any) -> None:
    """Catch deletes the flush found on its own (``delete-orphan`` cascades).

    The row is gone by now, so the last values are those the object had loaded;
    an attribute that was expired records no value.
    """
    tracked = _registry.lookup(type(instance))
    # Outside a flush (a bulk delete synchronising the session) the bulk hook has
    # already recorded the rows.
    if tracked is None or auditing_disabled() or not session._flushing:
        return
    capture = _capture_of(session, tracked)
    if id(instance) in capture.seen:
        return
    state = sa_inspect(instance)
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
    stamp = FlushStamp(
        transaction_id=_transaction_id(session),
        changed_by=capture.changed_by,
        changed_at=capture.changed_at,
        extra=capture.extra,
    )
    rows_by_mapper: dict[Any, list[ChangeRow]] = {}
    for item in capture.pending:
        tracked, state = item.tracked, item.state
        if item.operation is Operation.DELETE:
            new: dict[str, Any] = {}
        else:
            names = tracked.fields if item.operation is Operation.INSERT else item.old
            new = _current_values(item.obj, state, names)
        resource_id = item.resource_id or tracked.resource_id(item.obj, _identity(state))
        rows = change_rows(tracked, item.operation, resource_id, item.old, new, stamp)
        if rows:
            rows_by_mapper.setdefault(state.mapper, []).extend(rows)
    _write(session, capture.config, rows_by_mapper)


def _write(
    session: Session, config: SQLAuditConfig, rows_by_mapper: dict[Any, list[ChangeRow]]
) -> None:
    """Write the rows with one executemany INSERT per connection (usually exactly one)."""
    connections: dict[int, Any] = {}
    for mapper, rows in rows_by_mapper.items():
        connection = session.connection(bind_arguments={"mapper": mapper})
        connections.setdefault(id(connection), (connection, []))[1].extend(rows)
    for connection, rows in connections.values():
        _schema.write_changes(connection, config.table, rows)


def _do_orm_execute(orm_state: ORMExecuteState) -> Result[Any] | None:
    """Audit bulk ``insert()``/``update()``/``delete()`` statements run through a Session."""
    if not (orm_state.is_update or orm_state.is_delete or orm_state.is_insert):
        return None
    if auditing_disabled():
        return None
    statement: Any = orm_state.statement
    mapper = orm_state.bind_mapper
    if mapper is None:
        # A Core statement on a Table, run through the Session: audit it through the
        # model tracked on that table, if any.
        tracked = _registry.lookup_table(getattr(statement, "table", None))
        if tracked is None:
            return None
        mapper = sa_inspect(tracked.model)
    else:
        tracked = _registry.lookup(mapper.class_)
        if tracked is None:
            return None
    session = orm_state.session
    raw = orm_state.parameters
    parameters: list[Mapping[str, Any]] = list(raw) if isinstance(raw, (list, tuple)) else []
    if orm_state.is_update:
        assigned = _bulk.assigned_fields(mapper, statement, parameters)
        moved = [name for name in tracked.primary_key if name in assigned and not parameters]
        if moved:
            raise BulkStatementError(
                f"A bulk update that assigns {tracked.model.__name__}.{moved[0]}, part of "
                "the primary key, cannot be audited: its old and new rows could not be "
                "paired. Change primary keys one object at a time through the Session."
            )
        fields = [name for name in tracked.fields if name in assigned]
        if not fields:
            return None  # touches no tracked field: nothing to read, nothing to write
        operation = Operation.UPDATE
    else:
        fields = list(tracked.fields)
        operation = Operation.DELETE if orm_state.is_delete else Operation.INSERT
    capture = _new_capture(session, {tracked.model})  # errors before anything is written
    read = list(dict.fromkeys([*fields, *filter(None, [tracked.resource_id_field])]))
    key_size = len(tracked.primary_key)
    bind = orm_state.bind_arguments

    def fetch(queries: list[Any]) -> dict[tuple[Any, ...], dict[str, Any]]:
        rows: list[Any] = []
        for query in queries:
            rows.extend(session.execute(query, bind_arguments=bind).all())
        return _bulk.rows_by_key(rows, key_size, read)

    def invoke_returning() -> tuple[Result[Any], dict[tuple[Any, ...], dict[str, Any]]]:
        # The statement's own result is handed back with its rows read (a statement
        # without RETURNING of its own has none the caller expects); rowcount stays.
        columns = _bulk.columns(mapper, [*tracked.primary_key, *read])
        result = orm_state.invoke_statement(statement=statement.returning(*columns))
        rows = result.all()
        _keep_rowcount(result, len(rows))
        return result, _bulk.rows_by_key(rows, key_size, read)

    dialect = session.get_bind(**bind).dialect
    # RETURNING only where every column read lives in the statement's one table: a
    # joined-inheritance subclass spans several.
    own_returning = bool(getattr(statement, "_returning", ())) or (
        mapper.persist_selectable is not mapper.local_table
    )
    old: dict[tuple[Any, ...], dict[str, Any]] = {}
    new: dict[tuple[Any, ...], dict[str, Any]] = {}
    if operation is Operation.INSERT:
        result, keys = _invoke_insert(orm_state, statement, mapper, tracked, parameters)
        new = fetch(_bulk.select_by_keys(mapper, tracked, read, keys, lock=False))
    elif parameters:  # UPDATE by primary key: an executemany, read before and after
        keys = _bulk.keys_from_parameters(tracked, parameters)
        old = fetch(_bulk.select_by_keys(mapper, tracked, read, keys, lock=True))
        result = orm_state.invoke_statement()
        new = fetch(_bulk.select_by_keys(mapper, tracked, read, list(old), lock=False))
        keys = list(old)
    elif operation is Operation.DELETE and dialect.delete_returning and not own_returning:
        result, old = invoke_returning()  # DELETE ... RETURNING gives the last values
        keys = list(old)
    else:
        old = fetch([_bulk.select_affected(mapper, tracked, statement, read)])
        if operation is Operation.DELETE:
            result = orm_state.invoke_statement()
        elif dialect.update_returning and not own_returning:
            result, new = invoke_returning()  # UPDATE ... RETURNING gives the new values
        else:
            result = orm_state.invoke_statement()
            new = fetch(_bulk.select_by_keys(mapper, tracked, read, list(old), lock=False))
        # A row the UPDATE matched that the read did not (inserted meanwhile by another
        # transaction) is still recorded, with no old value, rather than lost.
        keys = list(old) + [key for key in new if key not in old]
    stamp = FlushStamp(
        transaction_id=_transaction_id(session),
        changed_by=capture.changed_by,
        changed_at=capture.changed_at,
        extra=capture.extra,
    )
    rows: list[ChangeRow] = []
    for key in keys:
        before, after = old.get(key, {}), new.get(key, {})
        values = after or before
        resource_id = tracked.resource_id_of(key, values)
        if operation is Operation.UPDATE:
            before = {name: before.get(name) for name in fields}
        rows.extend(change_rows(tracked, operation, resource_id, before, after, stamp))
    if rows:
        _write(session, capture.config, {mapper: rows})
    return result


def _invoke_insert(
    orm_state: ORMExecuteState,
    statement: Any,
    mapper: Any,
    tracked: TrackedModel,
    parameters: list[Mapping[str, Any]],
) -> tuple[Result[Any], list[tuple[Any, ...]]]:
    """Run a bulk INSERT and return its result and the primary keys it inserted."""
    if parameters and all(
        all(name in params for name in tracked.primary_key) for params in parameters
    ):
        return orm_state.invoke_statement(), _bulk.keys_from_parameters(tracked, parameters)
    if not parameters and statement.select is None and not statement._multi_values:
        # One row: the caller's result stays whole, inserted_primary_key included.
        result = orm_state.invoke_statement()
        key = tuple(result.inserted_primary_key or ())  # type: ignore[attr-defined]
        if len(key) == len(tracked.primary_key) and None not in key:
            return result, [key]
        raise BulkStatementError(
            f"sqlaudit could not learn the primary key of the {tracked.model.__name__} row "
            "this insert created; give the primary key or use session.add()."
        )
    dialect = orm_state.session.get_bind(mapper=mapper).dialect
    supported = dialect.insert_executemany_returning if parameters else dialect.insert_returning
    if getattr(statement, "_returning", ()) or not supported or statement.select is not None:
        raise BulkStatementError(
            f"sqlaudit cannot tell which {tracked.model.__name__} rows this bulk insert "
            f"creates on {dialect.name} (no primary keys given"
            f"{', a RETURNING clause of its own' if statement._returning else ''}"
            f"{', an INSERT ... SELECT' if statement.select is not None else ''}), so it "
            "would commit without audit rows: give each row its primary key "
            f"({', '.join(tracked.primary_key)}) or use session.add_all()."
        )
    pk_columns = _bulk.columns(mapper, tracked.primary_key)
    result = orm_state.invoke_statement(statement=statement.returning(*pk_columns))
    rows = result.all()
    _keep_rowcount(result, len(rows))
    return result, [tuple(row) for row in rows]


def _keep_rowcount(result: Result[Any], count: int) -> None:
    """Give a RETURNING result the ``rowcount`` the caller's plain DML result would have.

    Once RETURNING is added the ORM hands back a row-only result, which has no
    ``rowcount``; the caller asked for a statement without RETURNING and may read
    it. Every matched row was returned, so their number is that rowcount.
    """
    if not hasattr(result, "rowcount"):
        setattr(result, "rowcount", count)  # noqa: B010 - not a declared attribute


def _identity(state: InstanceState[Any]) -> tuple[Any, ...] | None:
    """Return the primary key the row had when loaded (``None`` for a pending object)."""
    key = state.key
    return None if key is None else tuple(key[1])


def _delete_snapshot(
    obj: Any, state: InstanceState[Any], tracked: TrackedModel, resource_id: str
) -> _Pending:
    """Keep the values the database holds for an object about to be deleted.

    An edit made and not flushed before the delete never reached the database, so
    its committed side is used (read from the database when it was never loaded);
    an expired attribute is loaded (one SELECT for all of them).
    """
    committed = state.committed_state
    old: dict[str, Any] = {}
    missing: list[str] = []
    for name in tracked.fields:
        if name in committed:
            if committed[name] is _UNKNOWN:
                missing.append(name)
            else:
                old[name] = committed[name]
        else:
            old[name] = getattr(obj, name)
    snapshot = _Pending(obj, state, tracked, Operation.DELETE, old, resource_id)
    snapshot.missing = missing
    return snapshot


def _current_values(obj: Any, state: InstanceState[Any], names: Any) -> dict[str, Any]:
    """Return the values after the flush.

    Attributes the flush expired (server defaults, SQL expressions) are loaded,
    all in one SELECT.
    """
    data = state.dict
    return {name: data[name] if name in data else getattr(obj, name) for name in names}


_EVENTS = (
    ("do_orm_execute", _do_orm_execute),
    ("before_flush", _before_flush),
    ("after_flush", _after_flush),
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
