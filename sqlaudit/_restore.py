"""Writing history back: restore, revert and baseline, in the caller's session.

Restore and revert set tracked attributes (or add and delete objects) through the
ORM, so the flush hooks record them like any change, with a reason and extra
metadata saying what was restored. Nothing is committed: the caller commits or
rolls back. Baseline writes ``baseline`` rows directly, with the writer the hooks use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, select, tuple_
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session
from sqlalchemy.schema import sort_tables

from sqlaudit import _codec, _writer
from sqlaudit._capture import ChangeRow, Operation
from sqlaudit._events import ResourceEvent, ResourceState, fold_state, group_events
from sqlaudit._feed import tracked_models
from sqlaudit._registry import TrackedModel
from sqlaudit._resource import (
    change_columns,
    events_upto,
    key_values,
    one_resource,
    resource_events,
    transaction_end,
)
from sqlaudit.config import SQLAuditConfig, get_config
from sqlaudit.context import SESSION_CONTEXT_KEY, set_session_context
from sqlaudit.exceptions import (
    Conflict,
    FilterError,
    FilterTypeError,
    HistoryError,
    RestoreError,
    RevertConflictError,
)
from sqlaudit.retrieval import _count, _to_changes, _tracked_model, _transaction_text

__all__ = ["record_baseline", "restore", "revert_transaction"]


def restore(
    session: Session,
    model_class: type[Any],
    resource_id: Any,
    *,
    at: datetime | date | None = None,
    transaction_id: str | UUID | None = None,
    fields: str | Iterable[str] | None = None,
    overwrite: bool = False,
) -> Any:
    """Set a resource's tracked fields back to their values at a moment, in ``session``.

    A deleted row is added back (with its tracked values and key); a moment at
    which the resource was deleted deletes it. A moment in an earlier life of a
    reused key puts that life's values on the row holding the key now. The changes
    are flushed, audited with ``reason="restore"`` and ``extra={"restored": {...}}``,
    and not committed.

    Args:
        session: The caller's Session; it is flushed, never committed.
        model_class: A tracked model.
        resource_id: Its id.
        at: The moment to go back to (naive: in ``config.time_zone``).
        transaction_id: Or: just after this transaction committed.
        fields: Only these tracked fields (default: every field whose value is known).
        overwrite: Proceed even when the row's current values differ from what its
            history says they are (an unaudited write changed them).

    Returns:
        The restored object, or ``None`` when the resource was deleted at that moment.

    Raises:
        HistoryError: no history, or a moment before the resource existed.
        RestoreError: a deleted row cannot be added back (a required untracked column).
        RevertConflictError: the row differs from its history and ``overwrite`` is off.
        UnknownTransactionError: a transaction id with no change rows.

    Example:
        >>> restore(session, Customer, 2, at=datetime(2026, 1, 6))  # doctest: +SKIP
        >>> session.commit()  # doctest: +SKIP
    """
    config = get_config()
    tracked, text = one_resource(model_class, resource_id)
    chosen = None if fields is None else _restored_fields(tracked, fields)
    _check_session(session, "restore")
    session.flush()  # the caller's pending work is written with the caller's context
    events = resource_events(session, config, tracked, text, config.zone)
    name = tracked.model.__name__
    if not events:
        raise HistoryError(
            f"{name} {text} has no recorded history, so there is nothing to restore it "
            "to; check the id (record_baseline() records rows that predate tracking)."
        )
    upto = events_upto(session, config, events, at, transaction_id, config.zone)
    target = fold_state(tracked.table_name, text, tracked.fields, events, upto)
    if target.status == "absent":
        raise HistoryError(
            f"{name} {text} did not exist yet at {at or transaction_id!r}: its history "
            f"begins at {events[0].timestamp.isoformat()} (transaction "
            f"{events[0].transaction_id}). Pick a later moment."
        )
    now = fold_state(tracked.table_name, text, tracked.fields, events, len(events))
    obj = _load(session, tracked, text)
    if not overwrite:
        conflicts = _unaudited(tracked, text, now, obj, chosen)
        if conflicts:
            raise RevertConflictError(conflicts, f"restoring {name} {text}")
    moment = {"at": at.isoformat() if at is not None else None}
    moment["transaction_id"] = None if transaction_id is None else str(transaction_id)
    restored = {"model": name, "resource_id": text, **moment}
    with _stamped(session, reason="restore", restored=restored):
        result = _apply(session, tracked, text, target, obj, chosen)
        session.flush()
    return result


def revert_transaction(
    session: Session, transaction_id: str | UUID, *, overwrite: bool = False
) -> list[ResourceEvent]:
    """Undo every tracked change one transaction made, across models, in ``session``.

    Updated fields go back to their values before it, inserted rows are deleted and
    deleted rows added back; rows are added parents first and deleted children
    first. The changes are flushed, audited with ``reason="revert"`` and
    ``extra={"reverted_transaction": id}``, and not committed.

    Args:
        session: The caller's Session; it is flushed, never committed.
        transaction_id: A ``ResourceChange.transaction_id``.
        overwrite: Proceed even when a later transaction (or an unaudited write)
            changed a field this transaction changed.

    Returns:
        The events undone, oldest first.

    Raises:
        UnknownTransactionError: no change row has this transaction id.
        RevertConflictError: later changes to the same fields, and ``overwrite`` is off.
        HistoryError: a table no tracked model maps any more.
        RestoreError: a deleted row cannot be added back.

    Example:
        >>> revert_transaction(session, event.transaction_id)  # doctest: +SKIP
        >>> session.commit()  # doctest: +SKIP
    """
    config = get_config()
    text = _transaction_text(transaction_id)
    _check_session(session, "revert_transaction")
    session.flush()
    transaction_end(session, config, text)  # raises for an unknown transaction
    table = config.table
    rows = session.execute(
        select(*change_columns(table)).where(table.c.transaction_id == text).order_by(table.c.id)
    ).all()
    undone = group_events(_to_changes(rows, config.zone))
    by_table = _models_by_table()
    plans: list[tuple[TrackedModel, str, ResourceState, Any, set[str]]] = []
    conflicts: list[Conflict] = []
    seen: set[tuple[str, str]] = set()
    for event in undone:
        key = (event.table_name, event.resource_id)
        if key in seen:
            continue
        seen.add(key)
        tracked = by_table.get(event.table_name)
        if tracked is None:
            raise HistoryError(
                f"transaction {text} changed {event.table_name}, which no tracked model maps "
                "now; declare (and track) its model before reverting."
            )
        history = resource_events(session, config, tracked, event.resource_id, config.zone)
        mine = [n for n, e in enumerate(history) if e.transaction_id == text]
        first, last = mine[0], mine[-1]
        before = fold_state(tracked.table_name, event.resource_id, tracked.fields, history, first)
        after = fold_state(tracked.table_name, event.resource_id, tracked.fields, history, last + 1)
        now = fold_state(
            tracked.table_name, event.resource_id, tracked.fields, history, len(history)
        )
        changed = {name for e in history[first : last + 1] for name in e.fields}
        obj = _load(session, tracked, event.resource_id)
        if not overwrite:
            for later in history[last + 1 :]:
                for name in sorted(changed & set(later.fields)):
                    conflicts.append(
                        Conflict(
                            tracked.model.__name__,
                            event.resource_id,
                            name,
                            after.values.get(name),
                            later.fields[name][1],
                            later.transaction_id,
                        )
                    )
            conflicts.extend(_unaudited(tracked, event.resource_id, now, obj, sorted(changed)))
        plans.append((tracked, event.resource_id, before, obj, changed))
    if conflicts:
        raise RevertConflictError(conflicts, f"reverting transaction {text}")
    with _stamped(session, reason="revert", reverted_transaction=text):
        _apply_in_order(session, plans)
    return undone


@contextmanager
def _stamped(session: Session, *, reason: str, **extra: Any) -> Iterator[None]:
    """Give the rows flushed in the block this reason and extra, over any the session set."""
    previous = session.info.get(SESSION_CONTEXT_KEY)
    set_session_context(session, reason=reason, **extra)
    try:
        yield
    finally:
        if previous is None:
            session.info.pop(SESSION_CONTEXT_KEY, None)
        else:
            session.info[SESSION_CONTEXT_KEY] = previous


def _apply_in_order(
    session: Session, plans: list[tuple[TrackedModel, str, ResourceState, Any, set[str]]]
) -> None:
    """Add rows parents first, update, then delete rows children first, flushing between."""
    tables = sort_tables({sa_inspect(plan[0].model).local_table for plan in plans})
    rank = {table: number for number, table in enumerate(tables)}

    def order(plan: tuple[TrackedModel, str, ResourceState, Any, set[str]]) -> int:
        return rank[sa_inspect(plan[0].model).local_table]

    adds = [p for p in plans if p[2].status == "live" and p[3] is None]
    updates = [p for p in plans if p[2].status == "live" and p[3] is not None]
    deletes = [p for p in plans if p[2].status != "live" and p[3] is not None]
    for tracked, text, before, obj, _ in sorted(adds, key=order):
        _apply(session, tracked, text, before, obj, None)
        session.flush()
    for tracked, text, before, obj, changed in updates:
        _apply(session, tracked, text, before, obj, sorted(changed))
    session.flush()
    for tracked, text, before, obj, _ in sorted(deletes, key=order, reverse=True):
        _apply(session, tracked, text, before, obj, None)
        session.flush()


def _apply(
    session: Session,
    tracked: TrackedModel,
    text: str,
    target: ResourceState,
    obj: Any,
    chosen: Sequence[str] | None,
) -> Any:
    names = [n for n in (chosen or tracked.fields) if n in target.values]
    if target.status != "live":
        if obj is not None:
            session.delete(obj)
        return None
    if obj is not None:
        for name in names:
            setattr(obj, name, target.values[name])
        return obj
    values = {name: target.values[name] for name in target.values}
    values.update(key_values(tracked, text))
    _check_required(tracked, text, values)
    obj = tracked.model(**values)
    session.add(obj)
    return obj


def _restored_fields(tracked: TrackedModel, fields: str | Iterable[str]) -> list[str]:
    names = [fields] if isinstance(fields, str) else list(fields)
    for name in names:
        if not isinstance(name, str) or name not in tracked.fields:
            raise FilterError(
                f"restore(fields=...) got {name!r}, which is not a tracked field of "
                f"{tracked.model.__name__}; tracked fields are: {', '.join(tracked.fields)}. "
                "Only tracked fields have values in the history."
            )
    return names


def _check_required(tracked: TrackedModel, text: str, values: dict[str, Any]) -> None:
    missing = []
    for attribute in sa_inspect(tracked.model).column_attrs:
        if attribute.key in values:
            continue
        for column in attribute.columns:
            if (
                not column.nullable
                and column.default is None
                and column.server_default is None
                and not (column.primary_key and column.autoincrement in (True, "auto"))
            ):
                missing.append(attribute.key)
    if missing:
        name = tracked.model.__name__
        raise RestoreError(
            f"{name} {text} cannot be added back: its history holds no value for the "
            f"required column(s) {', '.join(sorted(missing))}, which are not tracked. Track "
            f"them with @track_table(tracked_fields=[...]), or give them a default."
        )


def _unaudited(
    tracked: TrackedModel,
    text: str,
    now: ResourceState,
    obj: Any,
    chosen: Sequence[str] | None,
) -> list[Conflict]:
    """Return the differences between the row and what its history says it is now."""
    name = tracked.model.__name__
    if now.status == "live" and obj is None:
        return [Conflict(name, text, "(row)", "present", "missing", None)]
    if now.status != "live" and obj is not None:
        return [Conflict(name, text, "(row)", now.status, "present", None)]
    if obj is None:
        return []
    conflicts = []
    for field in chosen or tracked.fields:
        if field not in now.values:
            continue
        actual = getattr(obj, field)
        if _codec.encode(actual) != _codec.encode(now.values[field]):
            conflicts.append(Conflict(name, text, field, now.values[field], actual, None))
    return conflicts


def _load(session: Session, tracked: TrackedModel, text: str) -> Any:
    keys = key_values(tracked, text)
    model = tracked.model
    if tracked.resource_id_field is None:
        identity = tuple(keys[name] for name in tracked.primary_key)
        return session.get(model, identity if len(identity) > 1 else identity[0])
    column = getattr(model, tracked.resource_id_field)
    return session.execute(
        select(model).where(column == keys[tracked.resource_id_field])
    ).scalar_one_or_none()


def _models_by_table() -> dict[str, TrackedModel]:
    return {tracked.table_name: tracked for tracked in tracked_models(None)}


def _check_session(session: Any, where: str) -> None:
    if not isinstance(session, Session):
        raise FilterTypeError(
            f"{where} writes in the caller's Session, not {type(session).__name__}; pass "
            "the Session to write with (sqlaudit.asyncio has the AsyncSession version)."
        )


def record_baseline(
    session: Session,
    model_class: type[Any],
    *,
    where: ColumnElement[bool] | None = None,
    batch_size: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Record the current values of existing rows that have no start in their history.

    Rows that existed before tracking began have no insert rows, so their state is
    incomplete. This writes, once, one ``baseline`` row per tracked field of each
    such row (a row whose history has no insert or baseline since its last delete),
    in batches, in ``session`` (flushed, not committed). Running it again records
    nothing new, so an interrupted run is resumed by running it again.

    Args:
        session: The Session to read and write with; commit it afterwards.
        model_class: A tracked model.
        where: Only rows matching this condition (``Customer.id < 1000``).
        batch_size: Rows read per batch.
        progress: Called after each batch with (rows scanned, rows recorded) so far.

    Returns:
        How many rows were recorded.

    Raises:
        UntrackedModelError: ``model_class`` is not tracked.
        FilterError: a batch size below one.

    Example:
        >>> record_baseline(session, Customer, batch_size=500)  # doctest: +SKIP
        1200
        >>> session.commit()  # doctest: +SKIP
    """
    config = get_config()
    tracked = _tracked_model(model_class)
    size = _count(batch_size, "batch_size")
    if size < 1:
        raise FilterError(f"batch_size must be at least 1, not {size}.")
    _check_session(session, "record_baseline")
    session.flush()
    mapper = sa_inspect(tracked.model)
    key_columns = list(mapper.primary_key)
    scanned = recorded = 0
    last: tuple[Any, ...] | None = None
    while True:
        query = select(tracked.model)
        if where is not None:
            query = query.where(where)
        if last is not None:
            query = query.where(tuple_(*key_columns) > tuple_(*last))
        batch = list(session.execute(query.order_by(*key_columns).limit(size)).scalars())
        if not batch:
            break
        last = tuple(mapper.primary_key_from_instance(obj) for obj in batch)[-1]
        scanned += len(batch)
        recorded += _baseline_batch(session, config, tracked, batch)
        if progress is not None:
            progress(scanned, recorded)
        if len(batch) < size:
            break
    return recorded


def _baseline_batch(
    session: Session, config: SQLAuditConfig, tracked: TrackedModel, batch: list[Any]
) -> int:
    table = config.table
    ids = {tracked.resource_id(obj, None): obj for obj in batch}
    from sqlaudit._schema import index_key

    query = (
        select(table.c.resource_id, table.c.operation, table.c.id)
        .where(table.c.table_name == tracked.table_name)
        .where(table.c.resource_key.in_([index_key(text) for text in ids]))
        .where(
            table.c.operation.in_(
                [Operation.INSERT.value, Operation.BASELINE.value, Operation.DELETE.value]
            )
        )
    )
    started: dict[str, int] = {}
    ended: dict[str, int] = {}
    for row in session.execute(query):
        if row.resource_id not in ids:
            continue
        into = ended if row.operation == Operation.DELETE.value else started
        into[row.resource_id] = max(into.get(row.resource_id, 0), row.id)
    todo = [
        (text, obj)
        for text, obj in ids.items()
        if text not in started or ended.get(text, 0) > started[text]
    ]
    if not todo:
        return 0
    mapper = sa_inspect(tracked.model)
    author = _writer.resolve(session, {tracked.model})
    stamp = author.stamp(session, session.connection(bind_arguments={"mapper": mapper}))
    rows: list[ChangeRow] = []
    for text, obj in todo:
        for name in tracked.fields:
            rows.append(
                (
                    stamp.transaction_id,
                    tracked.table_name,
                    tracked.table_label,
                    text,
                    name,
                    Operation.BASELINE.value,
                    None,
                    _codec.encode(getattr(obj, name)),
                    stamp.changed_by,
                    stamp.changed_at,
                    stamp.extra,
                )
            )
    _writer.write(session, config, [(mapper, rows)])
    return len(todo)
