"""The query log kept in another database: an outbox in the transaction, drained exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from querylog_support import checksum, second_engine
from sqlalchemy import Integer, String, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from sqlaudit.querylog import log_queries, read_log, replay
from sqlaudit.querylog._table import OUTBOX_TABLE, build_log_table


@pytest.fixture
def other(engine: Engine, tmp_path: Path) -> Iterator[Engine]:
    """An empty second database of the same dialect and driver."""
    yield from second_engine(engine, tmp_path)


@pytest.fixture
def item(base: type[DeclarativeBase], engine: Engine) -> type[Any]:
    class Item(base):  # type: ignore[misc,valid-type]
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        name: Mapped[str] = mapped_column(String(50))

    base.metadata.create_all(engine)
    return Item


def _outbox(engine: Engine) -> list[Any]:
    table = build_log_table(name=OUTBOX_TABLE)
    with engine.connect() as connection:
        return list(connection.execute(select(table).order_by(table.c.id)))


def test_entries_wait_in_the_outbox_until_drained(
    engine: Engine, other: Engine, item: type[Any]
) -> None:
    """Committed entries sit in the source's outbox; drain() moves them to the log database."""
    log = log_queries(of=engine, to=other)
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
    log = log_queries(of=engine, to=other)
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
    log = log_queries(of=engine, to=other)
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
