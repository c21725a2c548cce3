"""The query log's figures: W1-W4 writes with and without it, and replay speed on SQLite.

Run ``python -m benchmarks.querylog URL [URL ...]`` (each URL a database it may empty:
every table in it is dropped first and last). For each database it runs W1-W4 of
:mod:`benchmarks.workloads` through sqlaudit's session capture, with the query log off
and on (``log_queries(of=engine)``, same database), alternately, best of ``--repeat``
runs each, and prints the seconds and the ratio. Then, on a SQLite file, it logs
``--statements`` single-row inserts (100 per transaction) and prints how many
statements per second ``replay`` re-runs into an empty second file.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from benchmarks.contestants import SQLAudit
from benchmarks.settings import Scale
from benchmarks.workloads import WORKLOADS
from sqlaudit import _registry
from sqlaudit.config import clear_config
from sqlaudit.hooks import unregister_hooks
from sqlaudit.querylog import log_queries, replay

SCALE = Scale("querylog", 2000, 100, 200, 1000, 0, ())


def _empty(engine: Engine) -> None:
    metadata = MetaData()
    metadata.reflect(engine)
    metadata.drop_all(engine)


def _once(engine: Engine, workload: str, logged: bool) -> float:
    _empty(engine)
    clear_config()
    unregister_hooks()
    _registry.reset()
    contestant = SQLAudit()
    base, item = contestant.declare()
    contestant.install(engine, base, item)
    chosen = WORKLOADS[workload]
    ids = chosen.setup(engine, item, SCALE)
    log = log_queries(of=engine) if logged else None
    factory: Any = sessionmaker(engine)
    try:
        started = time.perf_counter()
        chosen.run(factory, item, SCALE, ids)
        return time.perf_counter() - started
    finally:
        if log is not None:
            log.remove()


def writes(url: str, repeat: int) -> list[str]:
    """Return one line per workload: seconds without and with the log, and the ratio."""
    engine = create_engine(url)
    lines = []
    try:
        for name in ("W1", "W2", "W3", "W4"):
            # Off and on alternate, so a machine busier for a while weighs on both.
            offs, ons = [], []
            for _ in range(repeat):
                offs.append(_once(engine, name, False))
                ons.append(_once(engine, name, True))
            off, on = min(offs), min(ons)
            lines.append(
                f"{engine.dialect.name:10} {name}: {off:.3f} s without the log, "
                f"{on:.3f} s with it ({on / off:.2f}x)"
            )
    finally:
        _empty(engine)
        clear_config()
        unregister_hooks()
        _registry.reset()
        engine.dispose()
    return lines


def replay_rate(statements: int) -> str:
    """Return the statements per second ``replay`` re-runs on SQLite."""
    with tempfile.TemporaryDirectory() as directory:
        source = create_engine(f"sqlite:///{Path(directory) / 'source.db'}")
        target = create_engine(f"sqlite:///{Path(directory) / 'target.db'}")
        table = Table(
            "bench_rows",
            MetaData(),
            Column("id", Integer, primary_key=True, autoincrement=False),
            Column("name", String(50)),
        )
        table.create(source)
        table.create(target)
        log = log_queries(of=source)
        try:
            for start in range(0, statements, 100):
                with source.begin() as connection:
                    for number in range(start, min(start + 100, statements)):
                        connection.execute(insert(table), {"id": number, "name": f"row {number}"})
        finally:
            log.remove()
        started = time.perf_counter()
        result = replay(source, target)
        seconds = time.perf_counter() - started
        source.dispose()
        target.dispose()
    return (
        f"replay: {result.count} statements in {seconds:.2f} s on SQLite, "
        f"{result.count / seconds:,.0f} statements per second"
    )


def main() -> None:
    """Print the figures for each URL given, then the replay speed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("urls", nargs="*", help="databases to empty and use")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--statements", type=int, default=100_000)
    arguments = parser.parse_args()
    for url in arguments.urls:
        for line in writes(url, arguments.repeat):
            print(line, flush=True)
    print(replay_rate(arguments.statements), flush=True)


if __name__ == "__main__":
    main()
