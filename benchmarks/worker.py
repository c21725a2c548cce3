"""One contestant x one workload x one database, in a process of its own.

The runner starts ``python -m benchmarks.worker '<json spec>'``; the worker prints
one line ``BENCH-RESULT <json>`` with the measurements (or why it could not run).
Only the workload's ``run`` is timed. Statements are counted with a
``before_cursor_execute`` listener (each executemany batch counts once; what a
trigger does inside the server does not show). Peak memory is measured in a
separate pass (``"memory": true``), with tracemalloc, because tracing slows the
code it traces.

The untimed setup runs on ``setup_url``, a sync driver of the same database. With
``"async": true`` the timed run goes through an async driver: the same ORM workload,
on Sessions bound to ``AsyncEngine.sync_engine``, inside ``AsyncSession.run_sync``
(SQLAlchemy's greenlet adaptation, which is how ``AsyncSession`` runs a flush).
``"drop_indexes"`` names change-table indexes sqlaudit's table is measured without.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from benchmarks import contestants, readback
from benchmarks.settings import Scale
from benchmarks.workloads import WORKLOADS

__all__ = ["MARKER", "StatementCounter", "main", "run"]

MARKER = "BENCH-RESULT "

_T = TypeVar("_T")


class StatementCounter:
    """Count the statements an engine sends to the database."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, *args: Any) -> None:
        self.count += 1


def _reset(engine: Engine) -> None:
    """Drop every benchmark table except the kept R1 change tables."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        engine.dispose()
        path = Path(url.database or "")
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    keep = readback.table_name(0).rstrip("0")
    names = [name for name in inspect(engine).get_table_names() if not name.startswith(keep)]
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            for name in names:
                connection.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}" CASCADE')
            sequences = connection.scalars(
                text(
                    "SELECT sequence_name FROM information_schema.sequences "
                    "WHERE sequence_schema = current_schema()"
                )
            )
            for name in [name for name in sequences if not name.startswith(keep)]:
                connection.exec_driver_sql(f'DROP SEQUENCE IF EXISTS "{name}" CASCADE')
        else:
            connection.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
            for name in names:
                connection.exec_driver_sql(f"DROP TABLE IF EXISTS `{name}`")
            connection.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 1")


def _engine(url: str) -> Engine:
    if make_url(url).get_backend_name() == "sqlite":
        Path(make_url(url).database or "").parent.mkdir(parents=True, exist_ok=True)
    return create_engine(url)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run what ``spec`` names and return the measurements."""
    contestant = contestants.get(spec["contestant"])
    reason = contestant.unavailable(spec["database"])
    if reason is not None:
        return {"status": "unavailable", "reason": reason}
    scale = Scale.from_dict(spec["scale"])
    engine = _engine(spec.get("setup_url", spec["url"]))
    try:
        if spec["workload"] == "R1":
            return _run_r1(engine, contestant, scale, spec["size"])
        return _run_write(engine, contestant, scale, spec)
    finally:
        engine.dispose()


def _timed(spec: dict[str, Any], engine: Engine, work: Callable[[Engine], _T]) -> _T:
    """Run ``work`` on the engine of the spec's driver: ``engine``, or an async one."""
    if not spec.get("async"):
        return work(engine)

    async def in_greenlet() -> _T:
        async_engine = create_async_engine(spec["url"])
        try:
            # A pooled connection, as the sync engine has one left from the setup.
            async with async_engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            async with AsyncSession(async_engine) as session:
                return await session.run_sync(lambda _: work(async_engine.sync_engine))
        finally:
            await async_engine.dispose()

    return asyncio.run(in_greenlet())


def _run_write(
    engine: Engine, contestant: contestants.Contestant, scale: Scale, spec: dict[str, Any]
) -> dict[str, Any]:
    workload = WORKLOADS[spec["workload"]]
    memory = spec.get("memory", False)
    _reset(engine)
    base, item = contestant.declare()
    contestant.install(engine, base, item, drop_indexes=spec.get("drop_indexes", ()))
    ids = workload.setup(engine, item, scale)
    before = contestant.audit_rows(engine)

    def measure(run_engine: Engine) -> tuple[Any, float, float, int | None, int]:
        factory = sessionmaker(run_engine)
        counter = StatementCounter(run_engine)
        contestant.before_run(run_engine)
        gc.collect()
        if memory:
            tracemalloc.start()
        start = time.perf_counter()
        outcome = workload.run(factory, item, scale, ids)
        seconds, statements = time.perf_counter() - start, counter.count
        ran = time.perf_counter()
        contestant.after_run(run_engine)
        after_seconds = time.perf_counter() - ran
        peak = None
        if memory:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        return outcome, seconds, after_seconds, peak, statements

    outcome, seconds, after_seconds, peak, statements = _timed(spec, engine, measure)
    after = contestant.audit_rows(engine)
    expected = {"field": outcome.changed_fields, "row": outcome.changed_objects}.get(
        contestant.granularity or ""
    )
    return {
        "status": "ok",
        "seconds": seconds,
        "after_seconds": after_seconds,
        "transactions": outcome.transactions,
        "statements": statements,
        "changed_fields": outcome.changed_fields,
        "changed_objects": outcome.changed_objects,
        "recorded": None if after is None or before is None else after - before,
        "expected": expected,
        "granularity": contestant.granularity,
        "peak_bytes": peak,
    }


def _run_r1(
    engine: Engine, contestant: contestants.Contestant, scale: Scale, size: int
) -> dict[str, Any]:
    if contestant.name != "sqlaudit":
        return {"status": "unavailable", "reason": "R1 measures sqlaudit's own read API"}
    from sqlaudit.config import get_config

    base, item = contestant.declare()
    contestant.install(engine, base, item, table_name=readback.table_name(size))
    start = time.perf_counter()
    filled = readback.ensure_filled(engine, get_config().table, size)
    fill_seconds = time.perf_counter() - start
    counter = StatementCounter(engine)
    with Session(engine) as session:
        result = readback.read_histories(session, item, size, scale.lookups)
    return {
        "status": "ok",
        "size": size,
        "filled": filled,
        "fill_seconds": fill_seconds if filled else None,
        "statements_per_lookup": counter.count / (scale.lookups + 5),
        **result,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the spec given as the first argument (JSON) and print the result line."""
    args = sys.argv[1:] if argv is None else argv
    result = run(json.loads(args[0]))
    print(MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
