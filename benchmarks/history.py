"""H1: the history API's reads on a big change table.

``python -m benchmarks.history --sizes 100000,1000000`` fills one change table per size
(the R1 layout of :mod:`benchmarks.readback`: about ten rows per resource over five
tables, fifty users and a year, plus one "hot" resource with 1,000 changes, one per
transaction), then times, on each database reached:

- ``events``: ``get_resource_events`` of the hot resource (1,000 changes);
- ``state``: ``get_resource_state`` of the hot resource, now;
- ``changes/user``: a page of 50 rows filtered by user (``get_changes``), and the
  tenth page reached through the cursor (``changes/user p10``);
- ``events/user``: a page of 50 events filtered by user (``get_events``);
- ``events/model+dates``: a page of 50 events of one model in a one-day range;
- ``count/user``: ``count_changes`` and ``count_events`` of one user.

Each figure is the median of ``--repeat`` calls after a warm-up, in milliseconds. A
filled table (``sqlaudit_changes_h_<rows>``) is kept and reused while its row count is
right. Databases come from ``--databases`` (``postgresql``, ``mariadb``, ``sqlite``) and
the URLs of :mod:`benchmarks.settings`' environment variables.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from benchmarks import readback
from benchmarks.models import TABLE, TRACKED, declare_item
from sqlaudit import (
    SQLAuditConfig,
    count_changes,
    count_events,
    get_changes,
    get_events,
    get_resource_events,
    get_resource_state,
    set_config,
    track_table,
)

__all__ = ["HOT_CHANGES", "HOT_ID", "main", "measure"]

HOT_ID = 999_999_999
HOT_CHANGES = 1_000
_URLS = {
    "postgresql": os.environ.get(
        "SQLAUDIT_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("SQLAUDIT_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}


def _url(database: str, workdir: Path) -> str:
    if database == "sqlite":
        return f"sqlite:///{workdir / 'history-bench.db'}"
    return _URLS[database]


def _fill(engine: Engine, table: Any, size: int) -> bool:
    """Fill ``table`` with ``size`` R1 rows plus the hot resource, unless it is already."""
    with engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(table)).scalar_one()
    if count == size + HOT_CHANGES:
        return False
    readback.ensure_filled(engine, table, size)
    start = datetime(2025, 6, 1, tzinfo=UTC)
    rows = []
    for number in range(HOT_CHANGES):
        field = TRACKED[number % len(TRACKED)]
        inserted = number < len(TRACKED)
        rows.append(
            {
                "transaction_id": str(uuid.UUID(int=2**100 + (number if not inserted else 0))),
                "table_name": TABLE,
                "table_label": "Item",
                "resource_id": str(HOT_ID),
                "field_name": field,
                "operation": "insert" if inserted else "update",
                "old_value": None if inserted else f"int:{number - 1}",
                "new_value": f"int:{number}",
                "changed_by": "hot-user",
                "changed_at": start + timedelta(minutes=number),
            }
        )
    with engine.begin() as connection:
        connection.execute(table.insert(), rows)
    return True


def _median_ms(call: Callable[[], Any], repeat: int) -> float:
    for _ in range(3):  # warm up: statement cache, buffer pool
        call()
    durations = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations) * 1000


def measure(engine: Engine, size: int, repeat: int) -> dict[str, float]:
    """Fill (if needed) the change table of ``size`` rows on ``engine``; return the timings."""
    _base, item = declare_item()
    track_table(tracked_fields=list(TRACKED), table_label="Item")(item)
    factory = sessionmaker(engine)
    config = SQLAuditConfig(
        session_factory=factory, table_name=f"sqlaudit_changes_h_{size}", time_zone="UTC"
    )
    set_config(config)
    _fill(engine, config.table, size)
    day = (datetime(2025, 7, 1, tzinfo=UTC), datetime(2025, 7, 2, tzinfo=UTC))
    with factory() as session:
        tenth = _tenth_cursor(session)
        reads: dict[str, Callable[[], Any]] = {
            "events": lambda: get_resource_events(item, HOT_ID, session=session),
            "state": lambda: get_resource_state(item, HOT_ID, session=session),
            "changes/user": lambda: get_changes(filter_user_ids=7, limit=50, session=session),
            "changes/user p10": lambda: get_changes(
                filter_user_ids=7, limit=50, cursor=tenth, session=session
            ),
            "events/user": lambda: get_events(filter_user_ids=7, limit=50, session=session),
            "events/model+dates": lambda: get_events(
                models=[item], filter_date_range=day, limit=50, session=session
            ),
            "count_changes/user": lambda: count_changes(filter_user_ids=7, session=session),
            "count_events/user": lambda: count_events(filter_user_ids=7, session=session),
        }
        checks = (
            len(get_resource_events(item, HOT_ID, session=session)) == HOT_CHANGES - 3,
            len(get_events(models=[item], filter_date_range=day, limit=50, session=session)) == 50,
        )
        if not all(checks):
            raise RuntimeError(f"the filled table does not read back as expected: {checks}")
        return {name: _median_ms(call, repeat) for name, call in reads.items()}


def _tenth_cursor(session: Session) -> str | None:
    page = get_changes(filter_user_ids=7, limit=50, session=session)
    for _ in range(8):
        page = get_changes(filter_user_ids=7, limit=50, cursor=page.next_cursor, session=session)
    return page.next_cursor


def main(argv: list[str] | None = None) -> int:
    """Run H1 and print a Markdown table of the medians (ms)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.history", description=__doc__)
    parser.add_argument("--databases", default="postgresql", help="postgresql,mariadb,sqlite")
    parser.add_argument("--sizes", default="100000,1000000", help="change-table rows")
    parser.add_argument("--repeat", type=int, default=30, help="calls per figure")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp"), help="SQLite files")
    args = parser.parse_args(argv)
    sizes = [int(value) for value in args.sizes.split(",")]
    results: dict[tuple[str, int], dict[str, float]] = {}
    for database in args.databases.split(","):
        engine = create_engine(_url(database, args.workdir))
        try:
            for size in sizes:
                started = time.perf_counter()
                results[(database, size)] = measure(engine, size, args.repeat)
                print(f"{database} {size}: done in {time.perf_counter() - started:.0f} s")
        finally:
            engine.dispose()
    names = list(next(iter(results.values())))
    print("| database | rows | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for (database, size), timings in results.items():
        cells = " | ".join(f"{timings[name]:.2f}" for name in names)
        print(f"| {database} | {size:,} | {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
