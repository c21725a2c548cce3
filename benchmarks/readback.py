"""R1: read the full history of random resources, one at a time, from a big change table.

The change table is filled straight with a fast bulk insert (``COPY`` on PostgreSQL,
Core ``executemany`` elsewhere), about ten rows per resource (four inserted fields,
then updates) spread over five tables, fifty users and a year, rows of different
resources interleaved in time as a live system writes them. A filled table is kept
(``sqlaudit_changes_r1_<rows>``) and reused by later runs while its row count is
right: filling a million rows takes longer than reading from them.
"""

from __future__ import annotations

import random
import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Table, func, select
from sqlalchemy.orm import Session

from benchmarks.models import TABLE, TRACKED
from sqlaudit._schema import CHANGE_COLUMNS

__all__ = ["ROWS_PER_RESOURCE", "ensure_filled", "read_histories", "table_name"]

ROWS_PER_RESOURCE = 10
_TABLES = (TABLE, "customer", "purchase_order", "invoice", "product")
_START = datetime(2025, 1, 1, tzinfo=UTC)
_SPAN = timedelta(days=365)
# Every column sqlaudit writes except the optional JSON context, in its order.
_COLUMNS = tuple(name for name in CHANGE_COLUMNS if name != "extra")


def table_name(size: int) -> str:
    """Return the name of the change table holding ``size`` rows."""
    return f"sqlaudit_changes_r1_{size}"


def _resources(size: int) -> int:
    return max(size // ROWS_PER_RESOURCE, len(_TABLES))


def _rows(size: int) -> Iterator[tuple[Any, ...]]:
    resources = _resources(size)
    step = _SPAN / size
    for i in range(size):
        resource, round_ = i % resources, i // resources
        field = TRACKED[round_ % len(TRACKED)]
        inserted = round_ < len(TRACKED)
        yield (
            str(uuid.UUID(int=i // len(TRACKED) + 1)),
            _TABLES[resource % len(_TABLES)],
            "Item",
            str(resource // len(_TABLES) + 1),
            field,
            "insert" if inserted else "update",
            None if inserted else f"int:{round_ - 1}",
            f"int:{round_}",
            str(i % 50 + 1),
            _START + step * i,
        )


def ensure_filled(engine: Engine, table: Table, size: int) -> bool:
    """Fill ``table`` with ``size`` rows unless it holds that many; return True if filled."""
    with engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(table)).scalar_one()
    if count == size:
        return False
    with engine.begin() as connection:
        connection.execute(table.delete())
    if engine.dialect.name == "postgresql":
        _copy(engine, table, size)
    else:
        with engine.begin() as connection:
            chunk: list[dict[str, Any]] = []
            for row in _rows(size):
                chunk.append(dict(zip(_COLUMNS, row, strict=True)))
                if len(chunk) == 10_000:
                    connection.execute(table.insert(), chunk)
                    chunk = []
            if chunk:
                connection.execute(table.insert(), chunk)
    with engine.begin() as connection:
        statement = {"mysql": "ANALYZE TABLE {}", "mariadb": "ANALYZE TABLE {}"}
        connection.exec_driver_sql(
            statement.get(engine.dialect.name, "ANALYZE {}").format(table.name)
        )
    return True


def _copy(engine: Engine, table: Table, size: int) -> None:
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            columns = ", ".join(_COLUMNS)
            with cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for row in _rows(size):
                    copy.write_row(row)
        raw.commit()
    finally:
        raw.close()


def read_histories(
    session: Session, item: type[Any], size: int, lookups: int, *, seed: int = 4
) -> dict[str, Any]:
    """Read ``lookups`` random resources' full history one at a time; return the timings."""
    from sqlaudit.retrieval import get_resource_changes

    rng = random.Random(seed)
    per_table = _resources(size) // len(_TABLES)
    ids = [rng.randint(1, per_table) for _ in range(lookups)]
    for ident in ids[:5]:  # warm up: statement cache, buffer pool
        get_resource_changes(model_class=item, session=session, filter_resource_ids=ident)
    durations, rows = [], 0
    for ident in ids:
        start = time.perf_counter()
        changes = get_resource_changes(model_class=item, session=session, filter_resource_ids=ident)
        durations.append(time.perf_counter() - start)
        rows += len(changes)
    durations.sort()
    return {
        "lookups": lookups,
        "ms_median": statistics.median(durations) * 1000,
        "ms_mean": statistics.fmean(durations) * 1000,
        "ms_p95": durations[int(0.95 * (len(durations) - 1))] * 1000,
        "rows_per_lookup": rows / lookups,
        "seconds": sum(durations),
    }
