"""The query log kept in another database: an outbox in the transaction, drained exactly once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BACKEND_URLS, REQUIRE_DATABASES
from querylog_support import checksum, declare_item, eventually, second_engine
from sqlalchemy import create_engine, insert, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Session

from sqlaudit.exceptions import RecoveryError
from sqlaudit.querylog import LogEntry, log_queries, read_log, replay
from sqlaudit.querylog._table import LOG_TABLE, OUTBOX_TABLE, build_log_table


@pytest.fixture
def other(engine: Engine, tmp_path: Path) -> Iterator[Engine]:
    """An empty second database of the same dialect and driver."""
    yield from second_engine(engine, tmp_path)


@pytest.fixture
def item(base: type[DeclarativeBase], engine: Engine) -> type[Any]:
    return declare_item(base, engine)


# The other server a source's log goes to in the "other-server" case.
_OTHER_SERVER = {"sqlite": "postgresql", "postgresql": "mariadb", "mariadb": "postgresql"}


@pytest.fixture(params=["second", "sqlite-file", "other-server"])
def log_database(
    request: pytest.FixtureRequest, engine: Engine, backend: str, tmp_path: Path
) -> Iterator[Engine]:
    """The log database: a second database of the source's kind, a SQLite file, or a
    second database on the other server (SQLite and MariaDB to PostgreSQL, PostgreSQL to
    MariaDB)."""
    if request.param == "second":
        yield from second_engine(engine, tmp_path)
        return
    if request.param == "sqlite-file":
        log = create_engine(f"sqlite:///{tmp_path / 'log.db'}")
        yield log
        log.dispose()
        return
    server = create_engine(BACKEND_URLS[_OTHER_SERVER[backend]])
    try:
        with server.connect():
            pass
    except OperationalError as exc:
        server.dispose()
        if REQUIRE_DATABASES:
            pytest.fail(f"SQLAUDIT_REQUIRE_DATABASES=1 but {exc}")
        pytest.skip(f"the other server does not answer: {exc}")
    try:
        yield from second_engine(server, tmp_path)
    finally:
        server.dispose()


def _delivered(engine: Engine) -> list[LogEntry]:
    """The entries in the log database (none before the first delivery creates its table)."""
    if not inspect(engine).has_table(LOG_TABLE):
        return []
    return read_log(engine)


def _names(entries: list[LogEntry]) -> list[str]:
    """The ``name`` value of each insert entry, in log order."""
    names = []
    for entry in entries:
        values = entry.parameters
        values = values.values() if isinstance(values, dict) else values
        names.append(next(value for value in values if isinstance(value, str)))
    return names


def _outbox(engine: Engine) -> list[Any]:
    table = build_log_table(name=OUTBOX_TABLE)
    with engine.connect() as connection:
        return list(connection.execute(select(table).order_by(table.c.id)))


def test_entries_wait_in_the_outbox_until_drained(
    engine: Engine, other: Engine, item: type[Any]
) -> None:
    """Committed entries sit in the source's outbox; drain() moves them to the log database."""
    log = log_queries(of=engine, to=other, drain="manual")
    try:
        with Session(engine) as session:
            session.add(item(id=1, name="Ada"))
            session.commit()
        with Session(engine) as session:
            session.add(item(id=2, name="rolled back"))
            session.flush()
            session.rollback()
        assert len(_outbox(engine)) == 1
        assert read_log(other) == []
        assert log.drain() == 1
    finally:
        log.remove()
    assert _outbox(engine) == []
    [entry] = read_log(other)
    assert entry.kind == "insert" and "Ada" in repr(entry.parameters)


def test_a_retried_drain_delivers_once(engine: Engine, other: Engine, item: type[Any]) -> None:
    """A drain that died after delivering (its outbox rows still there) delivers nothing twice."""
    log = log_queries(of=engine, to=other, drain="manual")
    try:
        with engine.begin() as connection:
            connection.execute(insert(item), [{"id": n, "name": f"n{n}"} for n in range(3)])
        with engine.begin() as connection:
            connection.execute(insert(item), {"id": 9, "name": "nine"})
        pending = [dict(row._mapping) for row in _outbox(engine)]
        assert log.drain() == len(pending) == 2
        # The outbox rows come back, as if the drain had died before deleting them.
        outbox = build_log_table(name=OUTBOX_TABLE)
        with engine.begin() as connection:
            connection.execute(insert(outbox), pending)
        assert log.drain() == 0
    finally:
        log.remove()
    assert _outbox(engine) == []
    assert len(read_log(other)) == 2


def test_the_drained_log_replays(engine: Engine, other: Engine, item: type[Any]) -> None:
    """The log delivered to another database replays onto a copy of the source's tables."""
    log = log_queries(of=engine, to=other, drain="manual")
    try:
        with engine.begin() as connection:
            connection.execute(insert(item), [{"id": n, "name": f"n{n}"} for n in range(5)])
            connection.execute(item.__table__.update().where(item.id > 2).values(name="big"))
        log.drain()
    finally:
        log.remove()
    item.__table__.create(other)
    replay(other, other)
    assert checksum(other, "items") == checksum(engine, "items")


def test_committed_entries_reach_the_log_database_with_no_drain_call(
    engine: Engine, log_database: Engine, item: type[Any]
) -> None:
    """After a commit the background drainer delivers the entries; a rollback ships nothing."""
    log = log_queries(of=engine, to=log_database)
    try:
        with Session(engine) as session:
            session.add(item(id=1, name="rolled back"))
            session.flush()
            session.rollback()
            session.add(item(id=2, name="Ada"))
            session.commit()
        eventually(lambda: len(_delivered(log_database)) == 1, "the committed entry")
        eventually(lambda: _outbox(engine) == [], "the outbox to be emptied")
        # A connection that stays open wakes the drainer when it begins its next transaction.
        with engine.connect() as connection:
            connection.execute(insert(item), {"id": 3, "name": "Grace"})
            connection.commit()
            connection.execute(select(item.id)).all()
            eventually(lambda: len(_delivered(log_database)) == 2, "the second entry")
    finally:
        log.remove()
    assert _names(read_log(log_database)) == ["Ada", "Grace"]


def _outage(
    engine: Engine,
    item: type[Any],
    target: Engine,
    caplog: pytest.LogCaptureFixture,
    bring_back: Callable[[], None],
) -> None:
    """Commit two writes while ``target`` is unreachable: they wait in the outbox, one
    warning is logged; after ``bring_back()`` both are delivered, in order."""
    caplog.set_level(logging.WARNING, logger="sqlaudit.querylog")
    log = log_queries(of=engine, to=target, drain_interval=0.05)
    try:
        with Session(engine) as session:
            session.add(item(id=1, name="Ada"))
            session.commit()
        with engine.begin() as connection:
            connection.execute(insert(item), {"id": 2, "name": "Grace"})
        eventually(lambda: bool(caplog.records), "the delivery failure to be logged")
        assert len(_outbox(engine)) == 2
        bring_back()
        eventually(lambda: _outbox(engine) == [], "the delivery once the log database is back")
    finally:
        log.remove()
    try:
        assert _names(read_log(target)) == ["Ada", "Grace"]
    finally:
        target.dispose()  # (a server database is dropped after)
    # One warning for the outage, not one per retry.
    [record] = caplog.records
    assert record.levelno == logging.WARNING and "stay in the outbox" in record.getMessage()


def test_commits_go_on_while_the_log_database_is_down(
    engine: Engine, item: type[Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The log database unreachable, commits succeed and entries wait; they go once it is back."""
    down = tmp_path / "not-there-yet"
    _outage(engine, item, create_engine(f"sqlite:///{down / 'log.db'}"), caplog, down.mkdir)


def test_commits_go_on_while_the_log_database_on_a_server_is_missing(
    engine: Engine, backend: str, item: type[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A log database on PostgreSQL or MariaDB that does not exist yet (connections
    refused): commits succeed, entries wait, and go once it is created."""
    if backend == "sqlite":
        pytest.skip("a SQLite log database that is not there is the test above")
    name = f"{engine.url.database}_late"
    quote = '"' if backend == "postgresql" else "`"

    def on_server(statement: str) -> None:
        # On an engine of its own: what runs on ``engine`` is logged.
        admin = create_engine(engine.url)
        try:
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.exec_driver_sql(statement)
        finally:
            admin.dispose()

    on_server(f"DROP DATABASE IF EXISTS {quote}{name}{quote}")
    try:
        _outage(
            engine,
            item,
            create_engine(engine.url.set(database=name)),
            caplog,
            lambda: on_server(f"CREATE DATABASE {quote}{name}{quote}"),
        )
    finally:
        on_server(f"DROP DATABASE IF EXISTS {quote}{name}{quote}")


def test_entries_a_dead_process_left_are_delivered_by_the_next_log(
    engine: Engine, log_database: Engine, item: type[Any]
) -> None:
    """Entries committed but never delivered (the process died) go with the next log's drainer."""
    dead = log_queries(of=engine, to=log_database, drain="manual")
    with engine.begin() as connection:
        connection.execute(insert(item), {"id": 1, "name": "Ada"})
    dead.remove()  # nothing delivered, as when the process is killed after its commit
    assert len(_outbox(engine)) == 1
    log = log_queries(of=engine, to=log_database)
    try:
        eventually(lambda: _outbox(engine) == [], "the left entries to be delivered")
    finally:
        log.remove()
    assert _names(read_log(log_database)) == ["Ada"]


def test_drains_running_at_once_deliver_each_entry_once_in_order(
    engine: Engine, log_database: Engine, item: type[Any]
) -> None:
    """Two drainers (own engines, as two processes) racing over one outbox deliver each entry once."""
    count = 60
    log = log_queries(of=engine, to=log_database, drain="manual")
    rival_source, rival_log = create_engine(engine.url), create_engine(log_database.url)
    rival = log_queries(of=rival_source, to=rival_log, drain="manual")
    delivered: list[int] = []
    errors: list[BaseException] = []
    try:
        for number in range(count):
            with engine.begin() as connection:
                connection.execute(insert(item), {"id": number, "name": f"n{number}"})
        start = threading.Barrier(2)

        def drain(one: Any) -> None:
            try:
                start.wait()
                delivered.append(one.drain(batch_size=7))
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=drain, args=(one,)) for one in (log, rival)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        rival.remove()
        log.remove()
        rival_source.dispose()
        rival_log.dispose()
    assert errors == []
    assert sum(delivered) == count
    assert _outbox(engine) == []
    assert _names(read_log(log_database)) == [f"n{number}" for number in range(count)]


def test_remove_delivers_and_stops_the_drainer(
    engine: Engine, log_database: Engine, item: type[Any]
) -> None:
    """remove() returns with the committed entries delivered and no drainer thread left."""
    log = log_queries(of=engine, to=log_database, drain_interval=3600)
    with engine.begin() as connection:
        connection.execute(insert(item), {"id": 1, "name": "Ada"})
    log.remove()
    assert _outbox(engine) == []
    assert _names(read_log(log_database)) == ["Ada"]
    assert "sqlaudit-query-log-drain" not in [thread.name for thread in threading.enumerate()]


@pytest.mark.parametrize("options", [{"drain": "after_commit"}, {"drain_interval": 0}])
def test_bad_drain_options_are_refused(engine: Engine, other: Engine, options: Any) -> None:
    """drain= takes 'background' or 'manual', drain_interval= a positive number of seconds."""
    with pytest.raises(RecoveryError, match="drain"):
        log_queries(of=engine, to=other, **options)
