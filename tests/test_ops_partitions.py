"""The monthly partitioned change table (PostgreSQL): writes, the default partition, prune."""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from freezegun import freeze_time
from ops_support import add_rows, declare_customer
from sqlalchemy import func, inspect, select, text

from sqlaudit import OperationError, get_resource_changes, prune
from sqlaudit._schema import CHANGE_COLUMNS
from sqlaudit.alembic import include_object
from sqlaudit.cli import cli
from sqlaudit.history import get_resource_events, get_resource_state, restore
from sqlaudit.ops import (
    anchor_changes,
    create_partitioned_change_table,
    ensure_partitions,
    erase,
    export_changes,
    list_partitions,
    verify,
)
from sqlaudit.ops._common import build_operations_table

JAN = datetime(2020, 1, 10, tzinfo=UTC)
FEB = datetime(2020, 2, 10, tzinfo=UTC)
MAR = datetime(2020, 3, 10, tzinfo=UTC)
# March's rows are at 00:00:00 to 00:00:09 on March 10: the cutoff splits them in two.
CUT = datetime(2020, 3, 10, 0, 0, 5, tzinfo=UTC)


@pytest.fixture
def partitioned(audit):
    """The audit's change table recreated partitioned by month (current month and next)."""
    with audit.engine.begin() as connection:
        audit.config.table.drop(connection)
    create_partitioned_change_table(audit.engine, months_ahead=1)
    return audit


def _where(audit) -> dict[int, str]:
    """Each change row's id and the partition holding it."""
    with audit.engine.connect() as connection:
        rows = connection.execute(
            text("SELECT id, tableoid::regclass::text FROM sqlaudit_changes ORDER BY id")
        )
        return {int(i): str(name) for i, name in rows}


def _count(audit) -> int:
    with audit.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(audit.config.table)).scalar_one()


def _this_month() -> str:
    return f"sqlaudit_changes_p{datetime.now(UTC):%Y%m}"


@pytest.mark.backends("postgresql")
def test_create_makes_monthly_partitions_a_default_and_a_key_with_the_partition_column(partitioned):
    """The table is partitioned by month, with a default partition; its key is (id, changed_at)."""
    names = [p.name for p in list_partitions()]
    assert names[0] == _this_month() and names[-1] == "sqlaudit_changes_default"
    assert len(names) == 3
    first = list_partitions()[0]
    assert first.start is not None and first.end is not None
    assert (first.start.day, first.start.hour, first.start.tzinfo) == (1, 0, UTC)
    with partitioned.engine.connect() as connection:
        key = inspect(connection).get_pk_constraint("sqlaudit_changes")
    assert key["constrained_columns"] == ["id", "changed_at"]
    # Creating it again changes nothing; set_config accepts the table as it is.
    assert create_partitioned_change_table(partitioned.engine, months_ahead=1).created == ()
    partitioned.configure()


@pytest.mark.backends("postgresql")
@pytest.mark.parametrize("capture", ["session", "database"])
def test_writes_by_session_and_database_capture_land_in_the_current_month(partitioned, capture):
    """Both capture modes write into the table; the rows sit in this month's partition."""
    customer = declare_customer(partitioned.base)
    partitioned.create_tables()
    with partitioned.Session() as session:
        session.add(customer(id=1, name="Jane", email="jane@example.com"))
        session.commit()
        session.get(customer, 1).name = "Jane Smith"
        session.commit()
    where = _where(partitioned)
    assert len(where) == 3 and set(where.values()) == {_this_month()}
    with partitioned.Session() as session:
        changes = get_resource_changes(model_class=customer, session=session, filter_resource_ids=1)
    assert [c.new_value for c in changes] == ["Jane Smith", "jane@example.com", "Jane"]


@pytest.mark.backends("postgresql")
def test_a_write_for_a_month_without_a_partition_goes_to_default_and_ensure_moves_it(partitioned):
    """No partition for the month: the write lands in the default one; ensure moves it out."""
    customer = declare_customer(partitioned.base)
    partitioned.create_tables()
    add_rows(partitioned.engine, partitioned.config, 3, at=JAN, table_name="orders")
    later = datetime.now(UTC).replace(day=15) + timedelta(days=200)
    with freeze_time(later), partitioned.Session() as session:
        session.add(customer(id=1, name="Future"))
        session.commit()
    before = _where(partitioned)
    assert set(before.values()) == {"sqlaudit_changes_default"}
    report = ensure_partitions(months_ahead=1)
    assert report.rows_moved == 4
    assert "sqlaudit_changes_p202001" in report.created
    assert f"sqlaudit_changes_p{later:%Y%m}" in report.created
    after = _where(partitioned)
    assert after.keys() == before.keys()  # the same rows, the same ids
    assert [after[i] for i in sorted(after)] == [
        "sqlaudit_changes_p202001",
        "sqlaudit_changes_p202001",
        "sqlaudit_changes_p202001",
        f"sqlaudit_changes_p{later:%Y%m}",
    ]
    assert list_partitions()[-1].default
    # Nothing is left to move, and the next write of that month goes to its partition.
    assert ensure_partitions(months_ahead=1).rows_moved == 0
    with partitioned.Session() as session:
        changes = get_resource_changes(model_class=customer, session=session, filter_resource_ids=1)
    assert [(c.field_name, c.new_value) for c in changes] == [("name", "Future")]


def _three_months(audit) -> None:
    """Ten rows each in January, February and March 2020 (a second apart), partitioned."""
    add_rows(audit.engine, audit.config, 10, at=JAN)
    add_rows(audit.engine, audit.config, 10, at=FEB, start=10)
    add_rows(audit.engine, audit.config, 10, at=MAR - timedelta(seconds=20), start=20)
    assert ensure_partitions(months_ahead=1).rows_moved == 30


@pytest.mark.backends("postgresql")
def test_prune_drops_whole_partitions_and_deletes_the_straddling_rows_in_batches(partitioned):
    """Partitions before the cutoff are dropped; March's old rows go in batches; logged."""
    _three_months(partitioned)
    anchor_changes(settle=timedelta(0), block_size=4)
    report = prune(CUT, batch_size=4)
    assert report.partitions_dropped == ("sqlaudit_changes_p202001", "sqlaudit_changes_p202002")
    # Two partitions of 10 rows dropped whole; 5 of March's 10 rows deleted in 2 batches.
    assert (report.rows_deleted, report.batches) == (25, 2)
    assert (report.first_id, report.last_id) == (1, 25)
    assert _count(partitioned) == 5
    names = [p.name for p in list_partitions()]
    assert "sqlaudit_changes_p202001" not in names and "sqlaudit_changes_p202003" in names
    log = build_operations_table(partitioned.config.table)
    with partitioned.engine.connect() as connection:
        [entry] = connection.execute(log.select().where(log.c.operation == "prune")).all()
    assert (entry.status, entry.rows_affected) == ("done", 25)
    assert [(d["name"], d["rows"]) for d in entry.detail["partitions_dropped"]] == [
        ("sqlaudit_changes_p202001", 10),
        ("sqlaudit_changes_p202002", 10),
    ]
    assert entry.detail["partitions_dropped"][0]["from"].startswith("2020-01-01T00:00:00")
    assert verify().ok


@pytest.mark.backends("postgresql")
def test_after_dropping_partitions_anchors_reads_erase_and_export_still_hold(partitioned):
    """Anchors re-chained, history, erasure and the export cursor work on what is left."""
    customer = declare_customer(partitioned.base)
    partitioned.create_tables()
    _three_months(partitioned)
    with partitioned.Session() as session:
        session.add(customer(id=7, name="Kept", email="kept@example.com"))
        session.commit()
    anchor_changes(settle=timedelta(0), block_size=7)
    report = prune(datetime(2020, 3, 1, tzinfo=UTC), batch_size=100)
    assert report.rows_deleted == 20 and report.batches == 0
    check = verify()
    assert check.ok and check.rows_checked == 12
    out = io.StringIO()
    exported = export_changes(out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["id"] for line in lines] == list(range(21, 33))
    assert exported.cursor == "32"
    with partitioned.Session() as session:
        erase(session, model=customer, resource_ids=[7], reason="test")
        session.commit()
    assert verify().ok
    with partitioned.Session() as session:
        changes = get_resource_changes(model_class=customer, session=session, filter_resource_ids=7)
    assert {c.new_value for c in changes} == {"[erased]"}


@pytest.mark.backends("postgresql")
def test_prune_with_models_drops_no_partition_and_deletes_in_batches(partitioned):
    """With ``models`` every old row of those tables goes in batches; partitions stay."""
    customer = declare_customer(partitioned.base)
    _three_months(partitioned)
    add_rows(partitioned.engine, partitioned.config, 5, at=JAN, table_name="orders", start=100)
    ensure_partitions()
    report = prune(CUT, models=[customer], batch_size=8)
    assert report.partitions_dropped == () and report.rows_deleted == 25
    assert report.batches == 4
    assert "sqlaudit_changes_p202001" in [p.name for p in list_partitions()]
    with partitioned.engine.connect() as connection:
        table = partitioned.config.table
        left = connection.execute(
            select(table.c.table_name, func.count()).group_by(table.c.table_name)
        ).all()
    assert sorted(left) == [("customers", 5), ("orders", 5)]


@pytest.mark.backends("postgresql")
def test_prune_drops_partitions_while_the_application_keeps_writing(partitioned):
    """A writer commits throughout a prune that drops partitions: nothing is lost or blocked."""
    customer = declare_customer(partitioned.base)
    partitioned.create_tables()
    _three_months(partitioned)
    stop = threading.Event()
    written: list[int] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            n = 0
            while not stop.is_set() or n < 10:
                with partitioned.Session() as session:
                    session.add(customer(id=n + 1, name=f"c{n}"))
                    session.commit()
                written.append(n + 1)
                n += 1
                stop.wait(0.01)
        except BaseException as exc:  # reported below
            errors.append(exc)

    def wait_for_a_write(deleted: int) -> None:
        before = len(written)
        while len(written) == before and not errors:
            threading.Event().wait(0.01)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        report = prune(CUT, batch_size=3, progress=wait_for_a_write)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert report.rows_deleted == 25 and len(report.partitions_dropped) == 2
    table = partitioned.config.table
    with partitioned.Session() as session:
        resources = session.scalars(
            select(table.c.resource_id).where(table.c.changed_at > datetime(2021, 1, 1, tzinfo=UTC))
        ).all()
    assert sorted(int(i) for i in resources) == written


@pytest.mark.backends("postgresql")
def test_the_cli_creates_ensures_and_lists_partitions(audit):
    """``sqlaudit partitions --create/--ensure`` and the bare listing, from a URL."""
    with audit.engine.begin() as connection:
        audit.config.table.drop(connection)
    url = audit.engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    created = runner.invoke(
        cli, ["--url", url, "partitions", "--create", "--months-ahead", "0"], catch_exceptions=False
    )
    assert created.exit_code == 0, created.output
    assert _this_month() in created.output and "DEFAULT" in created.output
    ensured = runner.invoke(cli, ["--url", url, "partitions", "--ensure"], catch_exceptions=False)
    assert "created 3 partitions" in ensured.output
    listed = runner.invoke(cli, ["--url", url, "partitions"], catch_exceptions=False)
    assert len(listed.output.splitlines()) == 5
    # The size on disk is the partitions' (the partitioned table itself has none).
    stats = runner.invoke(cli, ["--url", url, "stats", "--format", "json"], catch_exceptions=False)
    assert "sqlaudit_changes size: " in stats.output
    assert "sqlaudit_changes size: 0 B" not in stats.output


@pytest.mark.backends("postgresql")
def test_partition_functions_refuse_a_plain_table_naming_the_fix(audit):
    """A plain change table is not partitioned in place; ensure names the function to use."""
    with pytest.raises(OperationError, match="create_partitioned_change_table"):
        ensure_partitions()
    with pytest.raises(OperationError, match="cannot partition a table in place"):
        create_partitioned_change_table()
    with pytest.raises(OperationError, match="months_ahead=-1"):
        create_partitioned_change_table(months_ahead=-1)


@pytest.mark.backends("sqlite", "mariadb")
@pytest.mark.parametrize("call", [create_partitioned_change_table, ensure_partitions])
def test_partitioning_is_refused_off_postgresql_and_prune_still_batches(audit, call: Any):
    """SQLite and MariaDB: a clear refusal naming the alternative; prune works as before."""
    with pytest.raises(OperationError, match=r"needs PostgreSQL.*prune"):
        call()
    add_rows(audit.engine, audit.config, 5, at=JAN)
    report = prune(CUT)
    assert (report.rows_deleted, report.partitions_dropped) == (5, ())


def test_alembic_autogenerate_leaves_the_partitions_out():
    """``include_object`` skips the change table's partitions, not tables named alike."""
    assert not include_object(None, "sqlaudit_changes_p202611", "table", True, None)
    assert not include_object(None, "sqlaudit_changes_default", "table", True, None)
    assert include_object(None, "sqlaudit_changes_pending", "table", True, None)


@pytest.mark.backends("postgresql")
def test_the_documented_move_of_a_plain_table_keeps_ids_anchors_and_the_sequence(audit):
    """The recipe in docs/retention.md moves a plain table's rows into monthly partitions."""
    add_rows(audit.engine, audit.config, 60, at=JAN)
    add_rows(audit.engine, audit.config, 40, at=FEB, start=60)
    anchor_changes(settle=timedelta(0), block_size=30)
    columns = (
        "id, transaction_id, table_name, table_label, resource_id, field_name, operation, "
        "old_value, new_value, changed_by, changed_at, extra"
    )
    assert columns == ", ".join(("id", *CHANGE_COLUMNS))  # as the docs spell them
    with audit.engine.begin() as connection:
        connection.exec_driver_sql("CREATE SCHEMA audit_old")
        connection.exec_driver_sql("ALTER TABLE sqlaudit_changes SET SCHEMA audit_old")
        create_partitioned_change_table(connection, months_ahead=3)
        connection.exec_driver_sql(
            f"INSERT INTO sqlaudit_changes ({columns}) "
            f"SELECT {columns} FROM audit_old.sqlaudit_changes"
        )
        connection.exec_driver_sql(
            "SELECT setval(pg_get_serial_sequence('sqlaudit_changes', 'id'), "
            "(SELECT max(id) FROM sqlaudit_changes))"
        )
        assert ensure_partitions(connection, months_ahead=3).rows_moved == 100
    try:
        assert verify().ok
        add_rows(audit.engine, audit.config, 1, at=datetime.now(UTC), start=100)
        where = _where(audit)
        assert sorted(where) == list(range(1, 102))
        assert where[1] == "sqlaudit_changes_p202001" and where[101] == _this_month()
        assert prune(datetime(2020, 3, 1, tzinfo=UTC)).rows_deleted == 100
        assert verify().ok
    finally:
        with audit.engine.begin() as connection:
            connection.exec_driver_sql("DROP SCHEMA audit_old CASCADE")


@pytest.mark.backends("postgresql")
def test_states_events_and_restore_read_a_history_spread_over_partitions(partitioned):
    """A resource whose history spans two months reads and restores as on a plain table."""
    customer = declare_customer(partitioned.base)
    partitioned.create_tables()
    with freeze_time(JAN), partitioned.Session() as session:
        session.add(customer(id=1, name="Jane", email="jane@example.com"))
        session.commit()
    with freeze_time(FEB), partitioned.Session() as session:
        session.get(customer, 1).name = "Jane Smith"
        session.commit()
    ensure_partitions()
    assert set(_where(partitioned).values()) == {
        "sqlaudit_changes_p202001",
        "sqlaudit_changes_p202002",
    }
    with partitioned.Session() as session:
        state = get_resource_state(customer, 1, session=session, at=JAN + timedelta(days=1))
        assert state.values == {"name": "Jane", "email": "jane@example.com"}
        assert len(get_resource_events(customer, 1, session=session)) == 2
        restore(session, customer, 1, at=JAN + timedelta(days=1))
        session.commit()
        assert session.get(customer, 1).name == "Jane"
    assert _where(partitioned)[4] == _this_month()  # the restore's own change row


@pytest.mark.backends("postgresql")
def test_writes_into_the_default_partition_never_fail_while_ensure_moves_rows(partitioned):
    """A writer keeps writing rows of months with no partition while ensure runs: none fails."""
    stop = threading.Event()
    written: list[int] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            n = 0
            while not stop.is_set() or n < 20:
                month = datetime(2019, 1 + n % 12, 3, tzinfo=UTC)
                add_rows(partitioned.engine, partitioned.config, 1, at=month, start=n)
                written.append(n)
                n += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        moved = 0
        while len(written) < 40 and not errors:
            moved += ensure_partitions().rows_moved
    finally:
        stop.set()
        thread.join()
    assert errors == []
    moved += ensure_partitions().rows_moved
    where = _where(partitioned)
    assert len(where) == len(written)
    # Each month's first row went to the default partition, then to its month's.
    assert moved >= 12
    assert "sqlaudit_changes_default" not in where.values()


@pytest.mark.backends("postgresql")
def test_the_guard_covers_every_partition_and_lets_ensure_and_prune_through(partitioned):
    """With the append-only guard on a partitioned table, statements sent to a partition
    directly are refused too; ensure_partitions moves rows and prune drops and deletes."""
    from sqlalchemy.exc import DBAPIError

    from sqlaudit.ops import check_guard, install_guard

    add_rows(partitioned.engine, partitioned.config, 10, at=JAN)
    install_guard(partitioned.engine)
    assert check_guard(partitioned.engine) == []
    # Rows in the default partition, then moved out of it under the guard.
    assert ensure_partitions(months_ahead=1).rows_moved == 10
    add_rows(partitioned.engine, partitioned.config, 10, at=FEB, start=10)
    add_rows(partitioned.engine, partitioned.config, 10, at=MAR - timedelta(seconds=20), start=20)
    assert ensure_partitions(months_ahead=1).rows_moved == 20
    for sql in (
        "DELETE FROM sqlaudit_changes",
        "DELETE FROM sqlaudit_changes_p202002",
        "UPDATE sqlaudit_changes_p202001 SET new_value = 'str:forged'",
        "TRUNCATE sqlaudit_changes",
    ):
        with pytest.raises(DBAPIError, match="append-only"), partitioned.engine.begin() as conn:
            conn.execute(text(sql))
    assert _count(partitioned) == 30
    anchor_changes(settle=timedelta(0), block_size=4)
    report = prune(CUT, batch_size=4)
    assert report.partitions_dropped == ("sqlaudit_changes_p202001", "sqlaudit_changes_p202002")
    assert (report.rows_deleted, _count(partitioned)) == (25, 5)
    assert verify().ok
    # A partition created after the guard is guarded as well.
    later = datetime.now(UTC).replace(day=15) + timedelta(days=400)
    add_rows(partitioned.engine, partitioned.config, 2, at=later, start=50)
    assert ensure_partitions(months_ahead=1).rows_moved == 2
    with pytest.raises(DBAPIError, match="append-only"), partitioned.engine.begin() as conn:
        conn.execute(text(f"DELETE FROM sqlaudit_changes_p{later:%Y%m}"))
    assert _count(partitioned) == 7
