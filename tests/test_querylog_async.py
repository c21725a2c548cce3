"""The query log on an AsyncEngine: logged in the transaction, delivered from a loop of its own.

Runs on every target's async driver: aiosqlite, asyncpg, psycopg (async mode), aiomysql.
"""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Target
from querylog_support import declare_item, eventually, second_engine
from sqlalchemy import create_engine, insert, inspect, make_url, select
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from sqlaudit import asyncio as audit_async
from sqlaudit.exceptions import RecoveryError
from sqlaudit.querylog import LogEntry, log_queries, read_log
from sqlaudit.querylog._table import LOG_TABLE, OUTBOX_TABLE, build_log_table

THE_FIX = re.escape("await sqlaudit.asyncio.log_queries(of=engine")


@pytest.fixture
def item(base: type[DeclarativeBase], engine: Engine) -> type[Any]:
    return declare_item(base, engine)


@pytest.fixture
def other(engine: Engine, tmp_path: Path) -> Iterator[Engine]:
    """An empty second database of the same dialect (the sync driver: to read it back)."""
    yield from second_engine(engine, tmp_path)


@pytest.fixture
def run(engine: Engine, target: Target) -> Callable[[Callable[[AsyncEngine], Awaitable[Any]]], Any]:
    """Run ``scenario(async_engine)`` in a fresh event loop, on the target's async driver."""

    def run(scenario: Callable[[AsyncEngine], Awaitable[Any]]) -> Any:
        async def main() -> Any:
            async_engine = create_async_engine(target.async_url(engine))
            try:
                return await scenario(async_engine)
            finally:
                await async_engine.dispose()

        return asyncio.run(main())

    return run


@pytest.fixture(params=["async", "sync"])
def to_kind(request: pytest.FixtureRequest) -> str:
    """Whether the log database is given as an AsyncEngine or as an Engine."""
    return str(request.param)


def _log_database(to_kind: str, other: Engine, target: Target) -> AsyncEngine | Engine:
    return create_async_engine(target.async_url(other)) if to_kind == "async" else other


async def _dispose(to: AsyncEngine | Engine) -> None:
    if isinstance(to, AsyncEngine):
        await to.dispose()


def _delivered(engine: Engine) -> list[LogEntry]:
    """The entries in the log database (none before the first delivery creates its table)."""
    if not inspect(engine).has_table(LOG_TABLE):
        return []
    return read_log(engine)


def _outbox(engine: Engine) -> list[Any]:
    table = build_log_table(name=OUTBOX_TABLE)
    with engine.connect() as connection:
        return list(connection.execute(select(table).order_by(table.c.id)))


def _names(entries: list[LogEntry]) -> list[str]:
    """The ``name`` value of each insert entry, in log order."""
    names = []
    for entry in entries:
        values = entry.parameters
        values = values.values() if isinstance(values, dict) else values
        names.append(next(value for value in values if isinstance(value, str)))
    return names


def _drainers() -> list[str]:
    """The drainer threads and delivery loops' threads alive."""
    return [t.name for t in threading.enumerate() if t.name.startswith("sqlaudit-query-log-")]


def test_an_async_session_is_logged_in_its_transaction(
    engine: Engine, item: type[Any], run: Any
) -> None:
    """The twin creates the log table through the AsyncEngine and logs an AsyncSession's insert."""
    drivers: list[str] = []

    async def scenario(async_engine: AsyncEngine) -> None:
        drivers.append(async_engine.dialect.driver)
        log = await audit_async.log_queries(of=async_engine)
        try:
            async with AsyncSession(async_engine) as session:
                session.add(item(id=1, name="Ada"))
                await session.commit()
        finally:
            await log.remove()
        async with AsyncSession(async_engine) as session:
            session.add(item(id=2, name="after remove"))
            await session.commit()

    run(scenario)
    [entry] = read_log(engine)
    assert entry.kind == "insert" and "items" in entry.statement
    assert entry.dialect.endswith(f"+{drivers[0]}")
    assert entry.transaction_id is not None and entry.row_count == 1
    assert _names([entry]) == ["Ada"]


def test_a_rollback_through_an_async_session_logs_nothing(
    engine: Engine, item: type[Any], run: Any
) -> None:
    """What an AsyncSession rolls back, or a rolled-back savepoint, leaves no entry."""

    async def scenario(async_engine: AsyncEngine) -> None:
        log = await audit_async.log_queries(of=async_engine)
        try:
            async with AsyncSession(async_engine) as session:
                session.add(item(id=1, name="rolled back"))
                await session.flush()
                await session.rollback()
                session.add(item(id=2, name="Ada"))
                await session.flush()
                savepoint = await session.begin_nested()
                session.add(item(id=3, name="savepoint rolled back"))
                await session.flush()
                await savepoint.rollback()
                await session.commit()
        finally:
            await log.remove()

    run(scenario)
    assert _names(read_log(engine)) == ["Ada"]


def test_the_background_drainer_delivers_each_entry_once(
    engine: Engine, other: Engine, target: Target, item: type[Any], run: Any, to_kind: str
) -> None:
    """Committed entries reach the log database (async or sync engine) once, while the
    application's event loop is blocked: the drainer needs nothing of it."""

    async def scenario(async_engine: AsyncEngine) -> None:
        to = _log_database(to_kind, other, target)
        log = await audit_async.log_queries(of=async_engine, to=to)
        try:
            async with AsyncSession(async_engine) as session:
                session.add(item(id=1, name="rolled back"))
                await session.flush()
                await session.rollback()
                session.add(item(id=2, name="Ada"))
                await session.commit()
            # A blocking wait: the loop runs nothing until the entry is delivered.
            eventually(lambda: _names(_delivered(other)) == ["Ada"], "the committed entry")
            eventually(lambda: _outbox(engine) == [], "the outbox to be emptied")
            async with async_engine.begin() as connection:
                await connection.execute(insert(item), {"id": 3, "name": "Grace"})
            eventually(lambda: len(_delivered(other)) == 2, "the second entry")
        finally:
            await log.remove()
            await _dispose(to)

    run(scenario)
    assert _names(read_log(other)) == ["Ada", "Grace"]
    assert _outbox(engine) == []


def test_an_awaited_drain_delivers_each_entry_once(
    engine: Engine, other: Engine, target: Target, item: type[Any], run: Any, to_kind: str
) -> None:
    """With drain="manual" nothing moves until ``await log.drain()``; a retried drain
    (its outbox rows back, as if it died before deleting them) delivers nothing twice."""

    async def scenario(async_engine: AsyncEngine) -> None:
        to = _log_database(to_kind, other, target)
        log = await audit_async.log_queries(of=async_engine, to=to, drain="manual")
        try:
            async with AsyncSession(async_engine) as session:
                session.add(item(id=1, name="Ada"))
                await session.commit()
                session.add(item(id=2, name="rolled back"))
                await session.flush()
                await session.rollback()
            async with async_engine.begin() as connection:
                await connection.execute(insert(item), {"id": 3, "name": "Grace"})
            pending = [dict(row._mapping) for row in _outbox(engine)]
            assert len(pending) == 2 and _delivered(other) == []
            assert not _drainers()
            assert await log.drain() == 2
            async with async_engine.begin() as connection:
                await connection.execute(insert(build_log_table(name=OUTBOX_TABLE)), pending)
            assert await log.drain() == 0
        finally:
            await log.remove()
            await _dispose(to)

    run(scenario)
    assert _outbox(engine) == []
    assert _names(read_log(other)) == ["Ada", "Grace"]


def test_remove_delivers_the_rest_and_stops_the_drainer(
    engine: Engine, other: Engine, target: Target, item: type[Any], run: Any, to_kind: str
) -> None:
    """``await log.remove()`` returns with the committed entries delivered and no drainer left."""

    async def scenario(async_engine: AsyncEngine) -> None:
        to = _log_database(to_kind, other, target)
        log = await audit_async.log_queries(of=async_engine, to=to, drain_interval=3600)
        try:
            # The connection stays checked out and begins nothing more: no commit wakes
            # the drainer, so the delivery is remove()'s.
            async with async_engine.connect() as connection:
                await connection.execute(insert(item), {"id": 1, "name": "Ada"})
                await connection.commit()
                await log.remove()
        finally:
            await _dispose(to)

    run(scenario)
    assert _outbox(engine) == []
    assert _names(read_log(other)) == ["Ada"]
    assert _drainers() == []


def test_the_sync_log_queries_refuses_async_engines_naming_the_twin(
    engine: Engine, run: Any
) -> None:
    """An AsyncEngine, its connection or its sync side (outside run_sync) given to the sync
    log_queries raises RecoveryError naming ``await sqlaudit.asyncio.log_queries``; the twin
    refuses a sync Engine, naming the sync function."""

    async def scenario(async_engine: AsyncEngine) -> None:
        with pytest.raises(RecoveryError, match=THE_FIX):
            log_queries(of=async_engine)  # type: ignore[arg-type]
        async with async_engine.connect() as connection:
            with pytest.raises(RecoveryError, match=THE_FIX):
                log_queries(of=connection)  # type: ignore[arg-type]
        # Its sync side would fail with MissingGreenlet when creating the table.
        with pytest.raises(RecoveryError, match=THE_FIX):
            log_queries(of=async_engine.sync_engine)
        for to in (async_engine, async_engine.sync_engine):
            with pytest.raises(RecoveryError, match=re.escape("to=log_engine)`")):
                log_queries(of=engine, to=to)  # type: ignore[arg-type]
        with pytest.raises(RecoveryError, match=re.escape("sqlaudit.querylog.log_queries")):
            await audit_async.log_queries(of=engine)  # type: ignore[arg-type]

    run(scenario)
    assert not inspect(engine).has_table(LOG_TABLE)


def test_an_async_log_database_down_at_start_up_is_delivered_to_once_back(
    engine: Engine, item: type[Any], run: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The log's AsyncEngine unreachable, the twin starts, commits succeed, and the entries
    go once it is back (the drainer creates the log table there)."""
    down = tmp_path / "not-there-yet"
    caplog.set_level(logging.WARNING, logger="sqlaudit.querylog")

    async def scenario(async_engine: AsyncEngine) -> None:
        to = create_async_engine(f"sqlite+aiosqlite:///{down / 'log.db'}")
        log = await audit_async.log_queries(of=async_engine, to=to, drain_interval=0.05)
        try:
            async with AsyncSession(async_engine) as session:
                session.add(item(id=1, name="Ada"))
                await session.commit()
            eventually(lambda: bool(caplog.records), "the delivery failure to be logged")
            assert len(_outbox(engine)) == 1
            down.mkdir()
            eventually(lambda: _outbox(engine) == [], "the delivery once the database is back")
        finally:
            await log.remove()
            await to.dispose()

    run(scenario)
    log_database = create_engine(f"sqlite:///{down / 'log.db'}")
    try:
        assert _names(read_log(log_database)) == ["Ada"]
    finally:
        log_database.dispose()
    [record] = caplog.records
    assert record.levelno == logging.WARNING and "stay in the outbox" in record.getMessage()


_EXIT_SCRIPT = """
import asyncio, sys
from sqlalchemy.ext.asyncio import create_async_engine
from sqlaudit.asyncio import log_queries

async def main():
    app = create_async_engine(sys.argv[1])
    log = await log_queries(of=app, to=create_async_engine(sys.argv[2]), drain_interval=3600)
    async with app.begin() as connection:
        await connection.exec_driver_sql("insert into items (id, name) values (1, 'Ada')")
    await app.dispose()
    return log  # never removed: the interpreter's exit delivers

log = asyncio.run(main())
"""


def test_an_async_log_delivers_at_interpreter_exit_with_a_host_name(
    engine: Engine, backend: str, target: Target, other: Engine, item: type[Any], tmp_path: Path
) -> None:
    """Without ``await log.remove()``, the exit hook delivers, also when the URL names a
    host (resolved through the loop's executor, which is shut down by then)."""
    if backend == "sqlite":
        pytest.skip("SQLite has no host to resolve")
    by_name = {
        name: make_url(target.async_url(one)).set(host="localhost").render_as_string(False)
        for name, one in (("data", engine), ("log", other))
    }
    script = tmp_path / "exit.py"
    script.write_text(_EXIT_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), by_name["data"], by_name["log"]],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "cannot schedule new futures" not in done.stderr, done.stderr
    assert [entry.kind for entry in read_log(other)] == ["insert"]
    with engine.connect() as connection:
        assert connection.execute(select(build_log_table(name=OUTBOX_TABLE))).all() == []
