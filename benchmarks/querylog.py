"""The query log's figures: W1-W4 writes with and without it, and replay speed on SQLite.

Run ``python -m benchmarks.querylog URL [URL ...]`` (each URL a database it may empty:
every table in it is dropped first and last). For each database it runs W1-W4 of
:mod:`benchmarks.workloads` through sqlaudit's session capture, with the query log off
and on (``log_queries(of=engine)``, same database), alternately, best of ``--repeat``
runs each, and prints the seconds and the ratio. ``--objects`` sets their size (W1/W2
objects; W3 commits a tenth of them one by one, W4 deletes half; 2,000 by default,
10,000 for the figures in docs/recovery.md). A URL with an async driver
(``postgresql+asyncpg://``...) runs the same ORM workloads through it. Then, on a
SQLite file, it logs ``--statements`` single-row inserts (100 per transaction) and
prints how many statements per second ``replay`` re-runs into an empty second file.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import sessionmaker

from benchmarks.contestants import SQLAudit
from benchmarks.settings import Scale
from benchmarks.workloads import WORKLOADS
from sqlaudit import _registry
from sqlaudit.config import clear_config
from sqlaudit.hooks import unregister_hooks
from sqlaudit.querylog import log_queries, replay
from sqlaudit.querylog._table import build_log_table, create_log_table


def scale(objects: int) -> Scale:
    """Return the workloads' size for ``objects`` (W3 commits a tenth of them one by one)."""
    return Scale("querylog", objects, 100, objects // 10, objects // 2, 0, ())


SCALE = scale(2000)


def _empty(engine: Engine) -> None:
    metadata = MetaData()
    metadata.reflect(engine)
    metadata.drop_all(engine)


def _once(engine: Engine, workload: str, logged: bool, size: Scale = SCALE) -> float:
    _empty(engine)
    clear_config()
    unregister_hooks()
    _registry.reset()
    contestant = SQLAudit()
    base, item = contestant.declare()
    contestant.install(engine, base, item)
    chosen = WORKLOADS[workload]
    ids = chosen.setup(engine, item, size)
    log = log_queries(of=engine) if logged else None
    factory: Any = sessionmaker(engine)
    try:
        started = time.perf_counter()
        chosen.run(factory, item, size, ids)
        return time.perf_counter() - started
    finally:
        if log is not None:
            log.remove()


def writes(url: str, repeat: int, size: Scale = SCALE) -> list[str]:
    """Return one line per workload: seconds without and with the log, and the ratio.

    With an async driver (``postgresql+asyncpg://...``), everything runs in SQLAlchemy's
    greenlet on the async engine's ``sync_engine``, as an application's ``run_sync``
    would: the same ORM workloads, through the async driver.
    """
    if not make_url(url).get_dialect().is_async:
        return _writes(create_engine(url), repeat, size)

    async def in_greenlet() -> list[str]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(
                    lambda sync: _writes(sync.engine, repeat, size, dispose=False)
                )
        finally:
            await engine.dispose()

    return asyncio.run(in_greenlet())


def _writes(engine: Engine, repeat: int, size: Scale, dispose: bool = True) -> list[str]:
    label = f"{engine.dialect.name}+{engine.dialect.driver}"
    lines = []
    try:
        for name in ("W1", "W2", "W3", "W4"):
            # Off and on alternate, so a machine busier for a while weighs on both.
            offs, ons = [], []
            for _ in range(repeat):
                offs.append(_once(engine, name, False, size))
                ons.append(_once(engine, name, True, size))
            off, on = min(offs), min(ons)
            lines.append(
                f"{label:20} {name}: {off:.3f} s without the log, "
                f"{on:.3f} s with it ({on / off:.2f}x)"
            )
    finally:
        _empty(engine)
        clear_config()
        unregister_hooks()
        _registry.reset()
        if dispose:
            engine.dispose()
    return lines


def replay_rate(statements: int) -> str:
    """Return the statements per second ``replay`` re-runs on SQLite.

    Twice: into a database with no query log, and into one with its own (as a backup of
    a database that logs into itself has), where each replayed entry is logged too.
    """
    with tempfile.TemporaryDirectory() as directory:
        source = create_engine(f"sqlite:///{Path(directory) / 'source.db'}")
        table = Table(
            "bench_rows",
            MetaData(),
            Column("id", Integer, primary_key=True, autoincrement=False),
            Column("name", String(50)),
        )
        table.create(source)
        log = log_queries(of=source)
        try:
            for start in range(0, statements, 100):
                with source.begin() as connection:
                    for number in range(start, min(start + 100, statements)):
                        connection.execute(insert(table), {"id": number, "name": f"row {number}"})
        finally:
            log.remove()
        figures = []
        for name, with_log in (("target.db", False), ("logged.db", True)):
            target = create_engine(f"sqlite:///{Path(directory) / name}")
            table.create(target)
            if with_log:
                create_log_table(build_log_table(), target)  # an empty query log
            started = time.perf_counter()
            result = replay(source, target)
            seconds = time.perf_counter() - started
            target.dispose()
            figures.append((result.count, seconds))
        source.dispose()
    (count, plain), (_, logged) = figures
    return (
        f"replay: {count} statements on SQLite in {plain:.2f} s, {count / plain:,.0f} "
        f"statements per second; into a database with its own query log, {logged:.2f} s, "
        f"{count / logged:,.0f} per second"
    )


def main() -> None:
    """Print the figures for each URL given, then the replay speed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("urls", nargs="*", help="databases to empty and use")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--statements", type=int, default=100_000)
    parser.add_argument(
        "--objects",
        type=int,
        default=SCALE.objects,
        help="W1/W2 objects (W3 a tenth, W4 a half); larger runs vary less",
    )
    arguments = parser.parse_args()
    for url in arguments.urls:
        for line in writes(url, arguments.repeat, scale(arguments.objects)):
            print(line, flush=True)
    print(replay_rate(arguments.statements), flush=True)


if __name__ == "__main__":
    main()
