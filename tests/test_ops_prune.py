"""prune: bounded batches by id, the operations log, models, resumption, a concurrent writer."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from ops_support import OLD, add_rows, declare_customer
from sqlalchemy import func, select

from sqlaudit import OperationError, prune
from sqlaudit.ops._common import build_operations_table

CUT = OLD + timedelta(days=1)


def _count(audit) -> int:
    with audit.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(audit.config.table)).scalar_one()


def _log(audit) -> list:
    table = build_operations_table(audit.config.table)
    with audit.engine.connect() as connection:
        return list(connection.execute(table.select().order_by(table.c.id)))


def test_prune_deletes_rows_before_the_moment_in_batches_and_logs_the_run(audit):
    """Only rows older than ``before`` go, ``batch_size`` at a time; the log says so."""
    add_rows(audit.engine, audit.config, 23)
    add_rows(audit.engine, audit.config, 4, at=datetime.now(UTC), start=100)
    seen: list[int] = []
    report = prune(CUT, batch_size=10, performed_by="ops", progress=seen.append)
    assert (report.rows_deleted, report.batches, report.complete) == (23, 3, True)
    assert seen == [10, 20, 23]
    assert _count(audit) == 4
    [entry] = _log(audit)
    assert (entry.operation, entry.status, entry.rows_affected, entry.performed_by) == (
        "prune",
        "done",
        23,
        "ops",
    )
    assert entry.arguments["batch_size"] == 10
    assert entry.detail["first_id"] == report.first_id and entry.detail["last_id"] == report.last_id


def test_prune_of_nothing_deletes_nothing_and_still_logs(audit):
    """With no old rows, prune deletes nothing and records a run of zero rows."""
    add_rows(audit.engine, audit.config, 3, at=datetime.now(UTC))
    report = prune(CUT)
    assert (report.rows_deleted, report.batches, report.first_id) == (0, 0, None)
    assert _count(audit) == 3
    assert [(e.status, e.rows_affected) for e in _log(audit)] == [("done", 0)]


def test_prune_limited_to_models_leaves_other_tables(audit):
    """``models`` restricts pruning to those tables."""
    customer = declare_customer(audit.base)
    add_rows(audit.engine, audit.config, 5)
    add_rows(audit.engine, audit.config, 5, table_name="orders", start=10)
    assert prune(CUT, models=[customer]).rows_deleted == 5
    with audit.engine.connect() as connection:
        left = connection.execute(select(audit.config.table.c.table_name).distinct()).scalars()
        assert list(left) == ["orders"]


def test_prune_stopped_by_max_batches_is_finished_by_running_it_again(audit):
    """An interrupted run (``max_batches``) is partial; the next run deletes the rest."""
    add_rows(audit.engine, audit.config, 30)
    first = prune(CUT, batch_size=10, max_batches=2)
    assert (first.rows_deleted, first.complete) == (20, False)
    second = prune(CUT, batch_size=10)
    assert (second.rows_deleted, second.complete) == (10, True)
    assert _count(audit) == 0
    assert [e.status for e in _log(audit)] == ["partial", "done"]


def test_prune_runs_while_the_application_keeps_writing(audit):
    """A writer thread commits changes throughout a prune: none is lost, all old rows go."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    add_rows(audit.engine, audit.config, 3000)
    stop = threading.Event()
    written: list[int] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            n = 0
            while not stop.is_set() or n < 20:
                with audit.Session() as session:
                    session.add(customer(id=n + 1, name=f"c{n}"))
                    session.commit()
                written.append(n + 1)
                n += 1
                # A pause between transactions, as an application has: SQLite grants
                # its write lock with no fairness, and a writer that never pauses can
                # keep it from the prune past the busy timeout.
                stop.wait(0.01)
        except BaseException as exc:  # reported below
            errors.append(exc)

    between: list[int] = []

    def wait_for_a_write(deleted: int) -> None:
        # Each batch waits for the writer to commit once more, so writes and batches
        # interleave whatever the scheduling.
        before = len(written)
        while len(written) == before and not errors:
            threading.Event().wait(0.01)
        between.append(len(written))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        report = prune(CUT, batch_size=100, progress=wait_for_a_write)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert report.rows_deleted == 3000 and report.batches == 30
    assert len(between) == 30 and between == sorted(set(between))
    with audit.engine.connect() as connection:
        table = audit.config.table
        ids = connection.execute(
            select(table.c.resource_id).where(table.c.changed_at >= CUT)
        ).scalars()
        assert sorted(int(i) for i in ids) == written
    assert _count(audit) == len(written)


@pytest.mark.parametrize(
    ("before", "options", "words"),
    [
        ("2020-01-01", {}, "aware datetime"),
        (datetime(2020, 1, 1), {}, "aware datetime"),
        (CUT, {"batch_size": 0}, "batch_size=0"),
        (CUT, {"max_batches": -1}, "max_batches=-1"),
        (CUT, {"models": [object]}, "not a tracked model"),
    ],
)
def test_prune_refuses_bad_arguments(audit, before, options, words):
    """Bad arguments raise OperationError naming the argument and what to pass."""
    with pytest.raises(OperationError, match=words):
        prune(before, **options)
