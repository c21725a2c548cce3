"""Trimming the query log after a backup: whole transactions, in batches."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from querylog_support import checksum, declare_item, second_engine
from sqlalchemy import insert, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

from sqlaudit.cli import cli
from sqlaudit.exceptions import RecoveryError
from sqlaudit.querylog import log_queries, read_log, replay, trim_log


@pytest.fixture
def item(base: type[DeclarativeBase], engine: Engine) -> type[Any]:
    return declare_item(base, engine)


@pytest.fixture
def other(engine: Engine, tmp_path: Path) -> Iterator[Engine]:
    yield from second_engine(engine, tmp_path)


def _history(engine: Engine, item: type[Any]) -> datetime:
    """Log an old transaction, autocommit statements, one straddling the returned moment,
    and a newer one; return the moment."""
    log = log_queries(of=engine)
    try:
        with engine.begin() as connection:
            connection.execute(insert(item), [{"id": 1, "name": "old"}])
            connection.execute(update(item).where(item.id == 1).values(name="old, renamed"))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(insert(item), {"id": 2, "name": "autocommit"})
        with engine.begin() as connection:
            connection.execute(insert(item), {"id": 3, "name": "straddling"})
            moment = datetime.now(UTC)
            connection.execute(update(item).where(item.id == 3).values(name="straddled"))
        with engine.begin() as connection:
            connection.execute(insert(item), {"id": 4, "name": "new"})
    finally:
        log.remove()
    return moment


def test_trim_deletes_whole_transactions_before_the_moment(
    engine: Engine, item: type[Any], other: Engine
) -> None:
    """The old transaction and the autocommit statement go; the straddling transaction
    keeps both its entries, and a replay since the moment still rebuilds what followed."""
    moment = _history(engine, item)
    entries = read_log(engine)
    assert len(entries) == 6
    straddling = entries[3].transaction_id
    assert trim_log(engine, before=moment, batch_size=1) == 3
    kept = read_log(engine)
    assert [entry.id for entry in kept] == [entry.id for entry in entries[3:]]
    assert [entry.transaction_id for entry in kept][:2] == [straddling, straddling]
    assert trim_log(engine, before=moment) == 0  # again: nothing more
    item.__table__.create(other)
    with other.begin() as connection:
        connection.execute(insert(item), [{"id": 1, "name": "old, renamed"}])
        connection.execute(insert(item), [{"id": 2, "name": "autocommit"}])
    replay(engine, other)
    assert checksum(other, "items") == checksum(engine, "items")


def test_trim_before_everything_deletes_nothing_and_after_everything_all(
    engine: Engine, item: type[Any]
) -> None:
    moment = _history(engine, item)
    assert trim_log(engine, before=datetime(2000, 1, 1, tzinfo=UTC)) == 0
    assert len(read_log(engine)) == 6
    assert moment < datetime.now(UTC)
    assert trim_log(engine, before=datetime.now(UTC)) == 6
    assert read_log(engine) == []


def test_trim_refuses_bad_arguments(engine: Engine) -> None:
    with pytest.raises(RecoveryError, match="no sqlaudit_query_log table"):
        trim_log(engine, before=datetime.now(UTC))
    with pytest.raises(RecoveryError, match="aware datetime"):
        trim_log(engine, before=datetime(2026, 1, 1))
    with pytest.raises(RecoveryError, match="1 or more"):
        trim_log(engine, before=datetime.now(UTC), batch_size=0)
    with pytest.raises(RecoveryError, match="pass create_engine"):
        trim_log("sqlite://", before=datetime.now(UTC))  # type: ignore[arg-type]


def test_the_trim_log_command(engine: Engine, item: type[Any]) -> None:
    moment = _history(engine, item)
    url = engine.url.render_as_string(hide_password=False)
    done = CliRunner().invoke(
        cli, ["--url", url, "trim-log", "--before", moment.isoformat()], catch_exceptions=False
    )
    assert done.exit_code == 0, done.output
    assert "deleted 3 query log entries" in done.output
    assert len(read_log(engine)) == 3
    bad = CliRunner().invoke(cli, ["--url", url, "trim-log", "--before", "soon"])
    assert bad.exit_code != 0 and "--before" in bad.output
