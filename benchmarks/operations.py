"""The operations' figures in the docs: export memory, anchoring and verification speed.

Run ``python -m benchmarks.operations URL [URL ...]`` (each URL a database it may
empty: every table in it is dropped first and last). For each database it writes
``--rows`` change rows, then prints the peak Python memory (tracemalloc) of exporting
10,000 rows and all of them, and the rows per second of ``anchor_changes`` and
``verify``. Anchoring adds nothing to the write path; what it costs W1 is measured by
the main benchmark's ``sqlaudit-anchored`` contestant.
"""

from __future__ import annotations

import argparse
import io
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import MetaData, create_engine
from sqlalchemy.engine import Engine

from sqlaudit._schema import build_change_table, create_change_table, write_changes
from sqlaudit.ops import anchor_changes, export_changes, verify


class _Sink(io.TextIOBase):
    """A text stream that keeps nothing."""

    def write(self, text: str) -> int:
        return len(text)


def _empty(engine: Engine) -> None:
    metadata = MetaData()
    metadata.reflect(engine)
    metadata.drop_all(engine)


def measure(url: str, rows: int) -> str:
    """Return one line of figures for the database at ``url``."""
    engine = create_engine(url)
    _empty(engine)
    table = build_change_table("sqlaudit_changes", None)
    create_change_table(table, engine)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for first in range(0, rows, 5000):
        batch = [
            (
                str(uuid.uuid4()),
                "customers",
                "Customer",
                str(n),
                "email",
                "update",
                f"str:old{n}@example.com",
                f"str:new{n}@example.com",
                str(n % 500),
                start + timedelta(seconds=n),
                None,
            )
            for n in range(first, min(first + 5000, rows))
        ]
        with engine.begin() as connection:
            write_changes(connection, table, batch)
    peaks = []
    for limit in (min(10_000, rows), rows):
        tracemalloc.start()
        export_changes(_Sink(), limit=limit, bind=engine, table_name=table.name)
        peaks.append(f"{limit} rows: {tracemalloc.get_traced_memory()[1] / 1e6:.1f} MB")
        tracemalloc.stop()
    began = time.perf_counter()
    anchor_changes(settle=timedelta(0), bind=engine, table_name=table.name)
    anchored = rows / (time.perf_counter() - began)
    began = time.perf_counter()
    report = verify(bind=engine, table_name=table.name)
    verified = rows / (time.perf_counter() - began)
    _empty(engine)
    engine.dispose()
    return (
        f"{engine.dialect.name}: export peak {', '.join(peaks)}; anchor {anchored:,.0f} rows/s; "
        f"verify {verified:,.0f} rows/s (ok={report.ok})"
    )


def main() -> None:
    """Parse the arguments and print one line per database."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("urls", nargs="+", help="databases to empty and measure on")
    parser.add_argument("--rows", type=int, default=200_000)
    arguments = parser.parse_args()
    for url in arguments.urls:
        print(measure(url, arguments.rows))


if __name__ == "__main__":
    main()
