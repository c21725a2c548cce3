"""Replaying the query log on a second database: order, dry runs, failures and resuming."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from querylog_support import checksum, rows, second_engine
from sqlalchemy import Integer, Numeric, String, create_engine, insert, text, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from sqlaudit.exceptions import RecoveryError, ReplayError
from sqlaudit.querylog import log_queries, read_log, replay
from sqlaudit.querylog._table import build_log_table, create_log_table


@pytest.fixture
def other(engine: Engine, tmp_path: Path) -> Iterator[Engine]:
    """An empty second database of the same dialect and driver."""
    yield from second_engine(engine, tmp_path)


@pytest.fixture
def item(base: type[DeclarativeBase]) -> type[Any]:
    class Item(base):  # type: ignore[misc,valid-type]
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        name: Mapped[str] = mapped_column(String(50))
        price: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))

    return Item


def _workload(engine: Engine, item: type[Any]) -> None:
    with Session(engine) as session:
        session.add_all([item(id=n, name=f"item {n}", price=Decimal(n)) for n in range(1, 6)])
        session.commit()
        session.get(item, 2).name = "renamed"  # type: ignore[union-attr]
        session.delete(session.get(item, 3))
        session.commit()
    with engine.begin() as connection:
        connection.execute(update(item).where(item.id > 3).values(price=item.price * 2))
        connection.execute(
            text("insert into items (id, name, price) values (:id, :name, :price)"),
            [{"id": 10 + n, "name": f"raw {n}", "price": "0.50"} for n in range(3)],
        )


def test_replay_builds_the_same_table(
    engine: Engine, other: Engine, base: type[DeclarativeBase], item: type[Any]
) -> None:
    """DDL and writes of ORM, bulk and raw SQL, replayed, give a table equal to the original."""
    log = log_queries(of=engine)
    try:
        base.metadata.create_all(engine)
        _workload(engine, item)
    finally:
        log.remove()
    result = replay(engine, other)
    assert result.count == len(read_log(engine))
    assert checksum(other, "items") == checksum(engine, "items")
    assert len(rows(other, "items")) == 7


def test_a_dry_run_lists_and_runs_nothing(
    engine: Engine, other: Engine, base: type[DeclarativeBase], item: type[Any]
) -> None:
    """dry_run=True returns the entries in order and leaves the target untouched."""
    log = log_queries(of=engine)
    try:
        base.metadata.create_all(engine)
        _workload(engine, item)
    finally:
        log.remove()
    result = replay(engine, other, dry_run=True)
    assert result.dry_run and result.count > 0
    assert result.entries[0].kind == "ddl"
    assert not sa_inspect(other).has_table("items")


def test_since_and_until_choose_the_statements(
    engine: Engine, other: Engine, base: type[DeclarativeBase], item: type[Any]
) -> None:
    """Only statements started in [since, until) are replayed."""
    base.metadata.create_all(engine)
    base.metadata.create_all(other)
    log = log_queries(of=engine)
    try:
        with engine.begin() as connection:
            connection.execute(insert(item), {"id": 1, "name": "before"})
        middle = datetime.now(UTC)
        with engine.begin() as connection:
            connection.execute(insert(item), {"id": 2, "name": "inside"})
        end = datetime.now(UTC)
        with engine.begin() as connection:
            connection.execute(insert(item), {"id": 3, "name": "after"})
    finally:
        log.remove()
    ordered = read_log(engine)
    since = ordered[1].started_at
    until = ordered[2].started_at
    assert middle <= end  # the log's own times decide, not these
    replay(engine, other, since=since, until=until)
    assert [row[1] for row in rows(other, "items")] == ["inside"]


def test_a_failing_statement_stops_the_replay_and_it_resumes(
    engine: Engine, other: Engine, base: type[DeclarativeBase], item: type[Any]
) -> None:
    """A failure names the entry and where to resume; the transactions before it stay."""
    base.metadata.create_all(engine)
    base.metadata.create_all(other)
    log = log_queries(of=engine)
    try:
        with engine.begin() as connection:
            connection.execute(insert(item), {"id": 1, "name": "one"})
        with engine.begin() as connection:
            connection.execute(insert(item), {"id": 2, "name": "two"})
            connection.execute(insert(item), {"id": 3, "name": "three"})
    finally:
        log.remove()
    with other.begin() as connection:
        connection.execute(insert(item), {"id": 3, "name": "in the way"})
    with pytest.raises(ReplayError, match="start_at=") as caught:
        replay(engine, other)
    error = caught.value
    entries = read_log(engine)
    assert error.entry_id == entries[2].id
    assert error.position == 3
    assert error.resume_at == entries[1].id
    assert error.replayed == 1
    assert [row[0] for row in rows(other, "items")] == [1, 3]
    with other.begin() as connection:
        connection.execute(text("delete from items where id = 3"))
    result = replay(engine, other, start_at=error.resume_at)
    assert result.count == 2
    assert [row[1] for row in rows(other, "items")] == ["one", "two", "three"]


def test_masked_entries_are_refused(
    engine: Engine, other: Engine, base: type[DeclarativeBase], item: type[Any]
) -> None:
    """An entry with a masked value cannot be replayed; a filter can leave it out."""
    base.metadata.create_all(engine)
    base.metadata.create_all(other)
    log = log_queries(of=engine, mask_columns=["name"])
    try:
        with engine.begin() as connection:
            connection.execute(insert(item), {"id": 1, "name": "secret"})
    finally:
        log.remove()
    with pytest.raises(RecoveryError, match="masked parameters"):
        replay(engine, other)
    assert replay(engine, other, filter=lambda entry: not entry.masked).count == 0


def test_bad_arguments_name_the_fix(
    engine: Engine, other: Engine, base: type[DeclarativeBase], item: type[Any]
) -> None:
    """Naive moments, unknown start_at, a missing log or another dialect are refused."""
    with pytest.raises(RecoveryError, match="has no sqlaudit_query_log table"):
        replay(engine, other)
    log = log_queries(of=engine)
    try:
        base.metadata.create_all(engine)
    finally:
        log.remove()
    with pytest.raises(RecoveryError, match="is naive"):
        replay(engine, other, since=datetime(2026, 1, 1))
    with pytest.raises(RecoveryError, match="no entry with this id"):
        replay(engine, other, start_at=10_000)
    with pytest.raises(RecoveryError, match="takes an Engine"):
        replay(engine, "sqlite://")  # type: ignore[arg-type]
    if engine.dialect.name != "sqlite":
        with pytest.raises(RecoveryError, match="same dialect"):
            replay(engine, create_engine("sqlite://"))


def test_since_chooses_whole_transactions(
    engine: Engine, other: Engine, base: type[DeclarativeBase], item: type[Any]
) -> None:
    """A transaction whose first statement started before ``since`` and its last after it
    is replayed whole (it committed after ``since``), never split."""
    base.metadata.create_all(engine)
    base.metadata.create_all(other)
    log = log_queries(of=engine)
    try:
        with engine.begin() as connection:
            connection.execute(insert(item), {"id": 1, "name": "before"})
        with engine.begin() as connection:
            connection.execute(insert(item), {"id": 2, "name": "straddling"})
            connection.execute(update(item).where(item.id == 2).values(price=Decimal("2.50")))
    finally:
        log.remove()
    second = read_log(engine)[-1]
    assert replay(engine, other, since=second.started_at).count == 2
    assert rows(other, "items") == [(2, "straddling", Decimal("2.50"))]
    assert replay(engine, other, until=second.started_at, dry_run=True).count == 1


def test_transactions_the_restored_log_holds_are_skipped_and_replayed_ones_logged(
    engine: Engine, other: Engine, base: type[DeclarativeBase], item: type[Any]
) -> None:
    """A backup holds the log of exactly the transactions it holds, whatever their ids:
    those are skipped; what is replayed is logged on the target, so a second replay, or
    one after a failure, runs nothing twice."""
    base.metadata.create_all(engine)
    base.metadata.create_all(other)
    log = log_queries(of=engine)
    try:
        for number in (1, 2, 3):
            with engine.begin() as connection:
                connection.execute(insert(item), {"id": number, "name": f"n{number}"})
    finally:
        log.remove()
    first, second, third = (entry.transaction_id for entry in read_log(engine))
    # A backup taken while the second transaction was still committing: it holds the
    # first and the third (and their log entries), not the second, whose log id is lower.
    create_log = log_queries(of=other)
    create_log.remove()
    backed_up = replay(engine, other, filter=lambda entry: entry.transaction_id != second)
    assert backed_up.count == 2 and backed_up.skipped == 0
    assert [entry.transaction_id for entry in read_log(other)] == [first, third]

    result = replay(engine, other)
    assert [entry.transaction_id for entry in result.entries] == [second]
    assert result.skipped == 2
    assert checksum(other, "items") == checksum(engine, "items")
    assert sorted(entry.transaction_id for entry in read_log(other)) == sorted(
        [first, second, third]
    )
    again = replay(engine, other)
    assert (again.count, again.skipped) == (0, 3)
    # Replayed entries keep what the log held.
    source = {entry.transaction_id: entry for entry in read_log(engine)}
    for entry in read_log(other):
        original = source[entry.transaction_id]
        assert (entry.statement, entry.parameters, entry.started_at, entry.kind) == (
            original.statement,
            original.parameters,
            original.started_at,
            original.kind,
        )


def test_after_a_failure_a_plain_replay_goes_on_where_it_stopped(
    engine: Engine, other: Engine, base: type[DeclarativeBase], item: type[Any]
) -> None:
    """With a log on the target, the failed transaction is not logged there: replaying
    again, once the cause is fixed, runs it and what follows, and nothing before."""
    base.metadata.create_all(engine)
    base.metadata.create_all(other)
    create_log_table(build_log_table(), other)  # the target has a query log table
    log = log_queries(of=engine)
    try:
        for number in (1, 2, 3):
            with engine.begin() as connection:
                connection.execute(insert(item), {"id": number, "name": f"n{number}"})
    finally:
        log.remove()
    with other.begin() as connection:
        connection.execute(insert(item), {"id": 2, "name": "in the way"})
    with pytest.raises(ReplayError):
        replay(engine, other)
    with other.begin() as connection:
        connection.execute(text("delete from items where id = 2"))
    result = replay(engine, other)
    assert (result.count, result.skipped) == (2, 1)
    assert [row[1] for row in rows(other, "items")] == ["n1", "n2", "n3"]


def test_skip_present_false_replays_everything_and_logs_nothing(
    engine: Engine, other: Engine, base: type[DeclarativeBase], item: type[Any]
) -> None:
    """``skip_present=False``: the target's log is neither read nor written."""
    base.metadata.create_all(engine)
    base.metadata.create_all(other)
    create_log_table(build_log_table(), other)  # the target has a query log table
    log = log_queries(of=engine)
    try:
        with engine.begin() as connection:
            connection.execute(insert(item), {"id": 1, "name": "n1"})
    finally:
        log.remove()
    assert replay(engine, other, skip_present=False).count == 1
    assert read_log(other) == []
    with pytest.raises(RecoveryError, match="True \\(the default\\) or False"):
        replay(engine, other, skip_present="no")  # type: ignore[arg-type]


def test_a_query_log_on_the_target_does_not_log_the_replay_twice(
    engine: Engine, other: Engine, base: type[DeclarativeBase], item: type[Any]
) -> None:
    """Replay logs what it runs on the target itself: a log installed there stays quiet."""
    base.metadata.create_all(engine)
    base.metadata.create_all(other)
    log = log_queries(of=engine)
    try:
        with engine.begin() as connection:
            connection.execute(insert(item), {"id": 1, "name": "n1"})
    finally:
        log.remove()
    on_target = log_queries(of=other)
    try:
        assert replay(engine, other).count == 1
        with other.begin() as connection:  # the target's log still logs its own writes
            connection.execute(insert(item), {"id": 2, "name": "later"})
    finally:
        on_target.remove()
    logged = read_log(other)
    assert len(logged) == 2
    assert logged[0].transaction_id == read_log(engine)[0].transaction_id


def test_entries_a_filter_left_out_are_replayed_later(
    engine: Engine, other: Engine, base: type[DeclarativeBase], item: type[Any]
) -> None:
    """A filter chooses entry by entry: what it left out of a transaction is not taken for
    replayed by the next replay."""
    base.metadata.create_all(engine)
    base.metadata.create_all(other)
    create_log_table(build_log_table(), other)  # the target has a query log table
    log = log_queries(of=engine)
    try:
        with engine.begin() as connection:
            connection.execute(insert(item), {"id": 1, "name": "kept"})
            connection.execute(insert(item), {"id": 2, "name": "left out"})
    finally:
        log.remove()
    first = replay(engine, other, filter=lambda entry: "'kept'" in repr(entry.parameters))
    assert first.count == 1
    second = replay(engine, other)
    assert (second.count, second.skipped) == (1, 1)
    assert [row[1] for row in rows(other, "items")] == ["kept", "left out"]


def test_autocommit_statements_are_skipped_one_by_one(
    engine: Engine, other: Engine, base: type[DeclarativeBase], item: type[Any]
) -> None:
    """Under AUTOCOMMIT each statement is its own transaction: a backup holding two of
    three gets the third."""
    base.metadata.create_all(engine)
    base.metadata.create_all(other)
    create_log_table(build_log_table(), other)  # the target has a query log table
    log = log_queries(of=engine)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            for number in (1, 2, 3):
                connection.execute(insert(item), {"id": number, "name": f"n{number}"})
    finally:
        log.remove()
    third = read_log(engine)[-1].id
    assert replay(engine, other, filter=lambda entry: entry.id != third).count == 2
    result = replay(engine, other)
    assert (result.count, result.skipped) == (1, 2)
    assert [row[0] for row in rows(other, "items")] == [1, 2, 3]


def test_a_failure_after_ddl_resumes_without_running_the_ddl_again(
    engine: Engine, other: Engine, base: type[DeclarativeBase], item: type[Any]
) -> None:
    """A transaction fails on the target after its DDL: replaying again, once the cause is
    fixed, completes it (on MySQL the DDL committed on its own, and was logged with it)."""
    base.metadata.create_all(engine)
    base.metadata.create_all(other)
    create_log_table(build_log_table(), other)  # the target has a query log table
    log = log_queries(of=engine)
    try:
        with engine.begin() as connection:
            connection.execute(text("create table extra (id integer primary key)"))
            connection.execute(insert(item), {"id": 5, "name": "five"})
    finally:
        log.remove()
    with other.begin() as connection:
        connection.execute(insert(item), {"id": 5, "name": "in the way"})
    with pytest.raises(ReplayError):
        replay(engine, other)
    with other.begin() as connection:
        connection.execute(text("delete from items where id = 5"))
    replay(engine, other)
    assert [row[1] for row in rows(other, "items")] == ["five"]
    assert sa_inspect(other).has_table("extra")
    assert replay(engine, other).count == 0
