"""Rebuilding a tracked table as it was at a moment, from its change rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import MetaData, Table, func, insert, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from sqlaudit._events import fold_state, group_events
from sqlaudit._feed import resolve_zone
from sqlaudit._resource import change_columns, key_values, run_read
from sqlaudit.config import get_config
from sqlaudit.exceptions import RecoveryError
from sqlaudit.retrieval import _bound, _to_changes, _tracked_model

__all__ = ["RebuildResult", "rebuild_table"]


@dataclass(frozen=True, slots=True)
class RebuildResult:
    """What :func:`rebuild_table` wrote.

    Attributes:
        table_name: The table written on the target.
        rows_written: How many rows were written.
        incomplete: The ids of resources live at that moment whose history does not
            give every tracked value (no insert row or baseline): not written.
        untracked_columns: Columns of the table the history does not hold; written
            as their defaults (or NULL).

    Example:
        >>> result = rebuild_table(Customer, at=moment, target=other)  # doctest: +SKIP
        >>> result.rows_written, result.incomplete  # doctest: +SKIP
        (120, ('17',))
    """

    table_name: str
    rows_written: int
    incomplete: tuple[str, ...]
    untracked_columns: tuple[str, ...]


def rebuild_table(
    model_class: type[Any],
    *,
    at: datetime | date,
    target: Engine,
    session: Session | None = None,
) -> RebuildResult:
    """Write the rows of a tracked table as they were at ``at`` into the same table on ``target``.

    Every resource whose life was in progress at ``at`` is folded from its change rows
    (as :func:`~sqlaudit.history.get_resource_state` does) and inserted. The table is
    created on ``target`` when missing, and must be empty when present.

    Args:
        model_class: A tracked model.
        at: The moment (naive: in the config's time zone).
        target: The database to write to.
        session: The Session to read the change rows with; ``None`` opens one.

    Returns:
        A :class:`RebuildResult`; resources whose history is incomplete (tracking began
        after they were inserted, with no baseline) are listed, not written.

    Raises:
        UntrackedModelError: ``model_class`` is not tracked.
        RecoveryError: ``at`` is not a moment, ``target`` is not an Engine, or the
            target table already has rows.

    Example:
        >>> result = rebuild_table(Customer, at=datetime(2026, 1, 6, tzinfo=UTC),
        ...                        target=create_engine("sqlite:///rebuilt.db"))  # doctest: +SKIP
        >>> result.rows_written  # doctest: +SKIP
        120
    """
    if not isinstance(at, (datetime, date)):
        raise RecoveryError(
            f"rebuild_table(at=...) takes a datetime or a date, not {type(at).__name__} {at!r}."
        )
    if not isinstance(target, Engine):
        raise RecoveryError(
            f"rebuild_table(target=...) takes an Engine, not {type(target).__name__}: pass "
            "create_engine(url) of the database to write the table into."
        )
    tracked = _tracked_model(model_class)
    config = get_config()
    zone = resolve_zone(config, None)
    moment = _bound(at, zone, "at")
    change_table = config.table
    query = (
        select(*change_columns(change_table))
        .where(change_table.c.table_name == tracked.table_name)
        .order_by(change_table.c.id)
    )
    rows = run_read(session, lambda s: s.execute(query).all())
    by_resource: dict[str, list[Any]] = {}
    for event in group_events(_to_changes(rows, zone)):
        by_resource.setdefault(event.resource_id, []).append(event)
    mapper = sa_inspect(model_class)
    source: Table = mapper.local_table
    copy = source.to_metadata(MetaData())
    copy.create(target, checkfirst=True)
    with target.connect() as connection:
        present = connection.execute(select(func.count()).select_from(copy)).scalar_one()
    if present:
        raise RecoveryError(
            f"{copy.name} on {target.url.render_as_string(hide_password=True)} already has "
            f"{present} rows: rebuild into an empty table (delete its rows, or pass another "
            "target)."
        )
    column_of = {name: mapper.columns[name].name for name in tracked.fields}
    column_of.update({name: mapper.columns[name].name for name in tracked.key_fields})
    untracked = tuple(c.name for c in copy.columns if c.name not in column_of.values())
    values: list[dict[str, Any]] = []
    incomplete: list[str] = []
    for resource_id, events in by_resource.items():
        upto = sum(1 for event in events if event.timestamp <= moment)
        state = fold_state(tracked.table_name, resource_id, tracked.fields, events, upto)
        if state.status != "live":
            continue
        if not state.complete:
            incomplete.append(resource_id)
            continue
        row = {column_of[name]: value for name, value in state.values.items()}
        for name, value in key_values(tracked, resource_id).items():
            row.setdefault(column_of[name], value)
        values.append(row)
    if values:
        with target.begin() as connection:
            connection.execute(insert(copy), values)
    return RebuildResult(copy.name, len(values), tuple(sorted(incomplete)), untracked)
