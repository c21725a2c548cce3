"""Reading one resource's history: the queries and folds its events, states and diffs share.

Used by :mod:`sqlaudit.history` (the reads), :mod:`sqlaudit._relations` and
:mod:`sqlaudit._restore` (the writes): the rows of one resource come from one indexed
query and are grouped into events; a moment (a datetime or a transaction id) becomes
how many of those events had happened by then.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import date, datetime, tzinfo
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import Column, Select, Table, func, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from sqlaudit._events import ResourceEvent, group_events
from sqlaudit._registry import TrackedModel
from sqlaudit.config import SQLAuditConfig, get_config
from sqlaudit.exceptions import FilterError, FilterTypeError, UnknownTransactionError
from sqlaudit.retrieval import (
    _ROW_COLUMNS,
    _bound,
    _matching,
    _resource_ids,
    _to_changes,
    _tracked_model,
    _transaction_text,
)

__all__ = [
    "SCAN",
    "change_columns",
    "events_upto",
    "key_values",
    "newest_events",
    "one_resource",
    "resource_events",
    "resource_query",
    "run_read",
    "split_moment",
    "transaction_end",
]

R = TypeVar("R")
# Rows fetched per round trip when reading newest first.
SCAN = 500


def change_columns(table: Table) -> list[Column[Any]]:
    """Return the columns a ResourceChange is read from (not the computed index keys).

    Fewer columns to parse matters with a pure-Python driver reading long histories.
    """
    return [table.c[name] for name in _ROW_COLUMNS]


def run_read(session: Session | None, work: Callable[[Session], R]) -> R:
    if session is None:
        with get_config().open_session() as own:
            return work(own)
    return work(session)


def one_resource(model_class: type[Any], resource_id: Any) -> tuple[TrackedModel, str]:
    tracked = _tracked_model(model_class)
    if isinstance(resource_id, (list, set, frozenset)) or resource_id is None:
        raise FilterTypeError(
            f"resource_id takes one id of {model_class.__name__} (str, int or UUID, or a "
            f"tuple for a composite key), not {resource_id!r}."
        )
    return tracked, _resource_ids(tracked, resource_id)[0]


def resource_query(config: SQLAuditConfig, tracked: TrackedModel, text: str) -> Select[Any]:
    table = config.table
    return (
        select(*change_columns(table))
        .where(table.c.table_name == tracked.table_name)
        .where(*_matching(table.c.resource_key, table.c.resource_id, [text]))
        .order_by(table.c.id)
    )


def resource_events(
    session: Session, config: SQLAuditConfig, tracked: TrackedModel, text: str, zone: tzinfo
) -> list[ResourceEvent]:
    """Return the resource's events, oldest first."""
    rows = session.execute(resource_query(config, tracked, text)).all()
    return group_events(_to_changes(rows, zone))


def newest_events(
    session: Session,
    config: SQLAuditConfig,
    tracked: TrackedModel,
    text: str,
    zone: tzinfo,
    wanted: int,
) -> list[ResourceEvent]:
    """Return (at least) the ``wanted`` newest events, newest first, reading rows newest first.

    The rows of one resource written by one transaction are consecutive in its
    history (the transaction holds the row's lock), so once rows of ``wanted + 1``
    transactions are read, the ``wanted`` newest events are complete.
    """
    table = config.table
    base = resource_query(config, tracked, text).order_by(None).order_by(table.c.id.desc())
    rows: list[Any] = []
    runs = 0
    below: int | None = None
    chunk = max(SCAN, 8 * wanted)
    while True:
        query = base if below is None else base.where(table.c.id < below)
        batch = session.execute(query.limit(chunk)).all()
        for row in batch:
            if not rows or row.transaction_id != rows[-1].transaction_id:
                runs += 1
                if runs > wanted:
                    break
            rows.append(row)
        if runs > wanted or len(batch) < chunk:
            break
        below = batch[-1].id
    return group_events(_to_changes(rows, zone))[::-1]


def split_moment(value: Any) -> tuple[datetime | date | None, str | UUID | None]:
    if isinstance(value, (datetime, date)):
        return value, None
    if isinstance(value, (str, UUID)):
        return None, value
    raise FilterTypeError(
        f"a moment is a datetime, a date or a transaction id (str or UUID), not "
        f"{type(value).__name__} {value!r}."
    )


def events_upto(
    session: Session,
    config: SQLAuditConfig,
    events: Sequence[ResourceEvent],
    at: datetime | date | None,
    transaction_id: str | UUID | None,
    zone: tzinfo,
) -> int:
    """Return how many of ``events`` (oldest first) had happened at the moment."""
    if at is not None and transaction_id is not None:
        raise FilterError("give at= or transaction_id=, not both: they each name a moment.")
    if transaction_id is not None:
        last = transaction_end(session, config, transaction_id)
        return sum(1 for event in events if event.event_id <= last)
    if at is not None:
        moment = _bound(at, zone, "at")
        upto = 0
        for number, event in enumerate(events, start=1):
            if event.timestamp <= moment:
                upto = number
        return upto
    return len(events)


def transaction_end(session: Session, config: SQLAuditConfig, transaction_id: Any) -> int:
    """Return the id of the last change row of a transaction, or raise if it has none."""
    table = config.table
    text = _transaction_text(transaction_id)
    query = select(func.max(table.c.id)).where(table.c.transaction_id == text)
    last: int | None = session.execute(query).scalar()
    if last is None:
        raise UnknownTransactionError(
            f"no change row has transaction id {text!r}: pass a transaction_id taken from a "
            "ResourceChange or ResourceEvent of this change table."
        )
    return last


def key_values(tracked: TrackedModel, text: str) -> dict[str, Any]:
    """Return ``{attribute: value}`` of the key a resource id spells, typed as its columns."""
    names = tracked.key_fields
    parts: list[Any] = list(json.loads(text)) if len(names) > 1 else [text]
    mapper = sa_inspect(tracked.model)
    values = {}
    for name, part in zip(names, parts, strict=True):
        try:
            python_type = mapper.columns[name].type.python_type
        except (KeyError, NotImplementedError):
            python_type = str
        values[name] = _typed(part, python_type)
    return values


def _typed(text: str, python_type: type[Any]) -> Any:
    try:
        if python_type is int:
            return int(text)
        if python_type is UUID:
            return UUID(text)
    except ValueError:
        return text
    return text
