"""Export: stream change rows since a cursor as JSON lines or CSV, in constant memory."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from sqlalchemy import ColumnElement, Row, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from sqlaudit import _codec, _registry, _schema
from sqlaudit.exceptions import OperationError
from sqlaudit.ops._common import check_positive, resolve_target

__all__ = ["EXPORT_FIELDS", "ExportReport", "export_changes", "parse_cursor", "table_names"]

EXPORT_FIELDS = ("id", *_schema.CHANGE_COLUMNS)
"""The fields of an exported change, in the order of a CSV's columns."""

FORMATS = ("jsonl", "csv")


@dataclass(frozen=True, slots=True)
class ExportReport:
    """What one :func:`export_changes` run wrote.

    Attributes:
        rows: Change rows written.
        cursor: Pass it as ``after=`` to continue after the last row written (the
            ``after`` given, when nothing was written).
        complete: ``True`` when no matching row was left (``limit`` not reached).

    Example:
        >>> ExportReport(rows=2, cursor="42", complete=True).cursor
        '42'
    """

    rows: int
    cursor: str | None
    complete: bool


def parse_cursor(after: str | int | None) -> int:
    """Return the row id an export cursor continues after (0: from the start).

    Raises:
        OperationError: a cursor that is not a row id.

    Example:
        >>> parse_cursor("42"), parse_cursor(None)
        (42, 0)
    """
    if after is None:
        return 0
    if isinstance(after, bool) or not isinstance(after, int | str):
        raise OperationError(
            f"export_changes(after={after!r}): pass the cursor a previous export returned "
            "(a str such as '1042'), or None to start from the first row."
        )
    text = str(after).strip()
    if not text.isdigit():
        raise OperationError(
            f"export_changes(after={after!r}) is not an export cursor: pass the cursor a "
            "previous export returned (the id of the last row it wrote, such as '1042')."
        )
    return int(text)


def table_names(models: type[Any] | str | Iterable[type[Any] | str] | None, what: str) -> list[str]:
    """Return the change-table names of ``models`` (tracked classes or table names).

    Raises:
        OperationError: a class that is not tracked, or something else.
    """
    if models is None:
        return []
    items = [models] if isinstance(models, type | str) else list(models)
    names = []
    for item in items:
        if isinstance(item, str):
            names.append(item)
            continue
        tracked = _registry.lookup(item) if isinstance(item, type) else None
        if tracked is None:
            shown = item.__name__ if isinstance(item, type) else repr(item)
            raise OperationError(
                f"{what}(models=[{shown}]): {shown} is not a tracked model; pass tracked "
                "model classes (decorated with @track_table) or table names as str."
            )
        names.append(tracked.table_name)
    return sorted(set(names))


def _aware(value: datetime | None, option: str, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise OperationError(
            f"{what}({option}={value!r}): pass an aware datetime "
            "(datetime(2026, 1, 1, tzinfo=UTC)), so the moment is not read in a guessed zone."
        )
    return value


def _json_value(text: str | None, decode: bool) -> Any:
    if not decode or text is None:
        return text
    value = _codec.decode(text)
    if isinstance(value, str | int | float | bool | dict | list) or value is None:
        return value
    if isinstance(value, bytes):
        return value.hex()
    return str(value.value if hasattr(value, "value") else value)


def _record(row: Row[Any], decode: bool) -> dict[str, Any]:
    return {
        "id": row.id,
        "transaction_id": row.transaction_id,
        "table_name": row.table_name,
        "table_label": row.table_label,
        "resource_id": row.resource_id,
        "field_name": row.field_name,
        "operation": row.operation,
        "old_value": _json_value(row.old_value, decode),
        "new_value": _json_value(row.new_value, decode),
        "changed_by": row.changed_by,
        "changed_at": row.changed_at.isoformat(),
        "extra": row.extra,
    }


def export_changes(
    out: IO[str],
    *,
    format: str = "jsonl",
    after: str | int | None = None,
    models: type[Any] | str | Iterable[type[Any] | str] | None = None,
    user_ids: Iterable[str] | str | None = None,
    operations: Iterable[str] | str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    decode_values: bool = False,
    header: bool = True,
    batch_size: int = 1000,
    limit: int | None = None,
    bind: Engine | Connection | Session | None = None,
    table_name: str | None = None,
    table_schema: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ExportReport:
    """Write change rows after a cursor to ``out``, oldest first, as JSON lines or CSV.

    Rows are read by id in batches of ``batch_size`` (``WHERE id > last ORDER BY id
    LIMIT n``, the primary key's index), each batch written and dropped before the
    next is read: memory stays the same whatever the number of rows. Each batch is
    its own short read, so an export never holds a long transaction open. The
    report's ``cursor`` (the last id written) resumes the export where it stopped,
    interrupted or not; rows are only ever appended with higher ids, so an export
    run every few minutes with the previous cursor ships each row once. (A
    transaction that commits after a later one has been exported may be missed:
    keep the cursor a few minutes behind the newest row, ``until=now - 5 min``.)

    Values are the stored typed text (``"str:Jane"``, ``"int:3"``: lossless, see
    :doc:`change-table`), or with ``decode_values=True`` plain JSON values (numbers,
    text, ``null``; dates, decimals and UUIDs as text).

    Args:
        out: A text stream (``sys.stdout``, an ``open(path, "w")`` file).
        format: ``"jsonl"`` (one JSON object per line) or ``"csv"``.
        after: A cursor from a previous export; ``None``: from the first row.
        models: Tracked classes or table names; ``None``: every table.
        user_ids: Only rows by these users (as stored: text).
        operations: Only these operations (``"insert"``, ``"update"``, ...).
        since: Only rows changed at or after this aware moment.
        until: Only rows changed before this aware moment.
        decode_values: Write decoded values instead of the stored text.
        header: Write the CSV header line.
        batch_size: Rows read per query.
        limit: Stop after this many rows (the cursor continues from there).
        bind: Engine, Connection or Session to read with; default: the config's.
        table_name: The change table's name when not the config's.
        table_schema: Its schema.
        progress: Called after each batch with the number of rows written so far.

    Returns:
        An :class:`ExportReport`.

    Raises:
        OperationError: an unknown format, a bad cursor, a naive datetime, an
            untracked model, a batch size or limit below one.
        NotConfiguredError: no ``bind`` and no config.

    Example:
        >>> import io
        >>> report = export_changes(io.StringIO(), bind=engine)  # doctest: +SKIP
        >>> later = export_changes(sys.stdout, after=report.cursor)  # doctest: +SKIP
    """
    if format not in FORMATS:
        raise OperationError(
            f"export_changes(format={format!r}): pass 'jsonl' (JSON lines) or 'csv'."
        )
    last = parse_cursor(after)
    size = check_positive(batch_size, "batch_size", "export_changes")
    remaining = None if limit is None else check_positive(limit, "limit", "export_changes")
    start = _aware(since, "since", "export_changes")
    end = _aware(until, "until", "export_changes")
    names = table_names(models, "export_changes")
    target = resolve_target(bind, table_name, table_schema, "export_changes")
    table = target.table
    conditions: list[ColumnElement[bool]] = []
    if names:
        conditions.append(table.c.table_name.in_(names))
    if user_ids is not None:
        users = [user_ids] if isinstance(user_ids, str) else [str(u) for u in user_ids]
        conditions.append(table.c.changed_by.in_(users))
    if operations is not None:
        chosen = [operations] if isinstance(operations, str) else list(operations)
        conditions.append(table.c.operation.in_(chosen))
    if start is not None:
        conditions.append(table.c.changed_at >= start)
    if end is not None:
        conditions.append(table.c.changed_at < end)
    columns = [table.c[name] for name in EXPORT_FIELDS]
    writer = csv.writer(out) if format == "csv" else None
    if writer is not None and header:
        writer.writerow(EXPORT_FIELDS)
    written = 0
    complete = False
    while True:
        count = size if remaining is None else min(size, remaining - written)
        if count <= 0:
            break
        query = (
            select(*columns).where(table.c.id > last, *conditions).order_by(table.c.id).limit(count)
        )
        with target.engine.connect() as connection:
            rows = connection.execute(query).all()
        for row in rows:
            record = _record(row, decode_values)
            if writer is None:
                out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            else:
                if record["extra"] is not None:
                    record["extra"] = json.dumps(record["extra"], default=str)
                writer.writerow([record[name] for name in EXPORT_FIELDS])
        written += len(rows)
        if rows:
            last = rows[-1].id
        if progress is not None:
            progress(written)
        if len(rows) < count:
            complete = True
            break
        del rows
    cursor = str(last) if last or after is not None else None
    return ExportReport(written, cursor, complete)
