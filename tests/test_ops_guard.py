"""The append-only guard: raw UPDATE, DELETE and TRUNCATE refused; sqlaudit's own writes unhindered."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from ops_support import OLD, add_rows, declare_customer
from sqlalchemy import Engine, String, create_engine, event, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Mapped, Session, mapped_column
from test_change_table import declare_document

from sqlaudit import (
    anchor_changes,
    check_guard,
    drop_guard,
    erase,
    get_resource_changes,
    install_guard,
    install_triggers,
    prune,
    track_table,
    verify,
)
from sqlaudit import asyncio as sqlaudit_asyncio
from sqlaudit._schema import build_change_table
from sqlaudit.ops import ERASED, clear_sensitive_fields, set_sensitive_fields

CUT = OLD + timedelta(days=1)


def _count(audit: Any) -> int:
    with audit.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(audit.config.table)).scalar_one()


def refused(engine: Engine, sql: str) -> str:
    """Run ``sql`` in a transaction of its own; return the error the database raised."""
    with pytest.raises(DBAPIError) as caught, engine.begin() as connection:
        connection.execute(text(sql))
    return str(caught.value.orig)


@pytest.fixture
def guarded(audit: Any) -> Any:
    """A tracked Customer with one change row per field, and the guard installed."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    audit.user = 5
    with audit.Session() as session:
        session.add(customer(id=1, name="Jane", email="jane@example.com"))
        session.commit()
    install_guard(audit.engine)
    return customer


@pytest.fixture
def pooled(audit: Any) -> Iterator[Engine]:
    """A second engine on the same database whose pool holds two connections, reused."""
    engine = create_engine(audit.engine.url, pool_size=2, max_overflow=0)
    yield engine
    engine.dispose()


def test_raw_update_and_delete_of_change_rows_are_refused_naming_the_table(audit, guarded):
    """With the guard on, UPDATE and DELETE of change rows fail with a message naming the way out."""
    for sql in (
        "UPDATE sqlaudit_changes SET new_value = 'str:forged'",
        "DELETE FROM sqlaudit_changes",
        "DELETE FROM sqlaudit_changes WHERE id = 1",
    ):
        message = refused(audit.engine, sql)
        assert "sqlaudit guard: sqlaudit_changes is append-only" in message
        assert "sqlaudit.prune() or sqlaudit.erase()" in message
    assert _count(audit) == 2
    assert {c.new_value for c in get_resource_changes(guarded, filter_resource_ids=1)} == {
        "Jane",
        "jane@example.com",
    }


@pytest.mark.backends("postgresql")
def test_truncate_is_refused_on_postgresql(audit, guarded):
    """PostgreSQL's TRUNCATE, which fires no row trigger, is refused too."""
    assert "TRUNCATE refused" in refused(audit.engine, "TRUNCATE sqlaudit_changes")
    assert _count(audit) == 2


def test_session_capture_keeps_writing_through_the_guard(audit, guarded):
    """Inserts, updates and deletes of tracked rows still record their changes."""
    with audit.Session() as session:
        session.get(guarded, 1).name = "Jane Smith"
        session.add(guarded(id=2, name="John"))
        session.commit()
        session.delete(session.get(guarded, 2))
        session.commit()
    assert check_guard(audit.engine) == []
    names = get_resource_changes(guarded, filter_resource_ids=[1, 2], filter_fields="name")
    assert sorted((c.resource_id, c.operation.value, c.new_value or "") for c in names) == [
        ("1", "insert", "Jane"),
        ("1", "update", "Jane Smith"),
        ("2", "delete", ""),
        ("2", "insert", "John"),
    ]


def test_database_capture_keeps_writing_through_the_guard(audit, backend):
    """Rows the capture triggers write, for raw SQL on a plain connection, go in as before."""

    @track_table(tracked_fields=["name"], capture="database")
    class Supplier(audit.base):
        __tablename__ = "suppliers"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str] = mapped_column(String(100))

    audit.base.metadata.create_all(audit.engine)
    install_triggers(audit.engine)
    install_guard(audit.engine)
    with audit.engine.begin() as connection:
        connection.execute(text("INSERT INTO suppliers (id, name) VALUES (1, 'Acme')"))
        connection.execute(text("UPDATE suppliers SET name = 'Acme Ltd' WHERE id = 1"))
        connection.execute(text("DELETE FROM suppliers WHERE id = 1"))
    changes = get_resource_changes(Supplier, filter_resource_ids=1)
    assert [(c.operation.value, c.old_value, c.new_value) for c in changes] == [
        ("delete", "Acme Ltd", None),
        ("update", "Acme", "Acme Ltd"),
        ("insert", None, "Acme"),
    ]


def test_sensitive_fields_are_redacted_through_the_guard(audit):
    """A masked field is stored masked, by the same INSERT, with the guard on."""
    audit.configure(bulk_in_database=False)
    customer = declare_customer(audit.base)
    audit.create_tables()
    install_guard(audit.engine)
    set_sensitive_fields(customer, {"email": "mask"})
    try:
        with audit.Session() as session:
            session.add(customer(id=1, name="Jane", email="jane@example.com"))
            session.commit()
    finally:
        clear_sensitive_fields()
    (email,) = get_resource_changes(customer, filter_resource_ids=1, filter_fields="email")
    assert email.new_value == "[masked]"


def test_prune_and_erase_pass_the_guard_and_anchors_still_verify(audit, guarded):
    """Prune deletes and erase rewrites guarded rows; the re-anchored trail verifies."""
    add_rows(audit.engine, audit.config, 5)
    anchor_changes(settle=timedelta(0))
    report = prune(CUT, batch_size=2)
    assert (report.rows_deleted, report.batches) == (5, 3)
    with audit.Session() as session:
        assert erase(session, model=guarded, resource_ids=[1]).rows_erased == 2
        session.commit()
    values = {c.new_value for c in get_resource_changes(guarded, filter_resource_ids=1)}
    assert values == {ERASED}
    assert verify().ok
    assert "append-only" in refused(audit.engine, "DELETE FROM sqlaudit_changes")


def _fail_on(engine: Engine, verb: str) -> Any:
    """Make ``engine`` raise before sending a ``verb`` statement on the change table."""

    def fail(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if (
            statement.split()[0].upper() == verb
            and "sqlaudit_changes" in statement.split("WHERE")[0]
        ):
            raise RuntimeError(f"interrupted before the {verb}")

    event.listen(engine, "before_cursor_execute", fail)
    return fail


def _guard_is_closed(engine: Engine, backend: str) -> None:
    """Check, on every connection of ``engine``'s pool (two), that nothing left the guard open."""
    with engine.connect() as first, engine.connect() as second:
        for connection in (first, second):
            if backend == "mariadb":
                assert connection.exec_driver_sql("SELECT @sqlaudit_maintenance").scalar() is None
            elif backend == "postgresql":
                setting = "SELECT current_setting('sqlaudit.maintenance', true)"
                assert connection.exec_driver_sql(setting).scalar() in (None, "")
            else:
                marker = "SELECT count(*) FROM sqlaudit_changes_maintenance"
                assert connection.exec_driver_sql(marker).scalar() == 0
            with pytest.raises(DBAPIError, match="append-only"):
                connection.exec_driver_sql("DELETE FROM sqlaudit_changes")
            connection.rollback()


def test_a_failed_prune_leaves_the_guard_closed_on_its_pooled_connection(
    audit, guarded, pooled, backend
):
    """A prune interrupted inside the guard's opening does not leave it open for the pool."""
    add_rows(audit.engine, audit.config, 3)
    fail = _fail_on(pooled, "DELETE")
    with pytest.raises(RuntimeError, match="interrupted"):
        prune(CUT, bind=pooled)
    event.remove(pooled, "before_cursor_execute", fail)
    _guard_is_closed(pooled, backend)
    assert _count(audit) == 5


def test_a_failed_erase_leaves_the_guard_closed_on_its_pooled_connection(
    audit, guarded, pooled, backend
):
    """An erasure interrupted inside the guard's opening leaves it closed, in its transaction too."""
    fail = _fail_on(pooled, "UPDATE")
    with Session(pooled) as session:
        with pytest.raises(RuntimeError, match="interrupted"):
            erase(session, model=guarded, resource_ids=[1])
        event.remove(pooled, "before_cursor_execute", fail)
        with pytest.raises(DBAPIError, match="append-only"):
            session.execute(text("UPDATE sqlaudit_changes SET new_value = 'str:x'"))
        session.rollback()
    _guard_is_closed(pooled, backend)


def test_a_prune_whose_closing_fails_still_leaves_the_guard_closed(audit, guarded, pooled, backend):
    """When closing the opening itself fails, the batch fails and nothing stays open.

    MySQL/MariaDB's variable outlives the transaction: the connection is invalidated.
    """
    add_rows(audit.engine, audit.config, 3)

    def fail(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        closing = "NULL" in statement or "''" in statement or statement.startswith("DELETE")
        if "maintenance" in statement and closing:
            raise RuntimeError("the closing statement failed")

    event.listen(pooled, "before_cursor_execute", fail)
    with pytest.raises(RuntimeError, match="closing statement failed"):
        prune(CUT, bind=pooled)
    event.remove(pooled, "before_cursor_execute", fail)
    _guard_is_closed(pooled, backend)
    assert _count(audit) == 5  # the batch rolled back


def test_an_erasure_closes_the_guard_for_the_rest_of_its_transaction(audit, guarded):
    """After erase returns, the same transaction cannot UPDATE change rows either."""
    with audit.Session() as session:
        erase(session, model=guarded, resource_ids=[1], fields="email")
        with pytest.raises(DBAPIError, match="append-only"):
            session.execute(text("UPDATE sqlaudit_changes SET new_value = 'str:x'"))
        session.rollback()


def test_install_is_idempotent_and_drop_removes_the_guard(audit, guarded):
    """Installing twice leaves one guard; dropping it lets raw statements through again."""
    install_guard(audit.engine)
    assert check_guard(audit.engine) == []
    drop_guard(audit.engine)
    problems = check_guard(audit.engine)
    assert problems and all("install_guard()" in problem for problem in problems)
    drop_guard(audit.engine)  # nothing left to drop
    with audit.engine.begin() as connection:
        connection.execute(text("UPDATE sqlaudit_changes SET changed_by = 'x'"))
        connection.execute(text("DELETE FROM sqlaudit_changes"))
    assert _count(audit) == 0


def test_check_guard_reports_a_missing_change_table(engine):
    """On a database without the change table, check_guard says so."""
    assert check_guard(engine) == [
        "the change table sqlaudit_changes does not exist; run install_guard()."
    ]


def test_install_creates_the_change_table_and_honours_its_name(engine):
    """install_guard(table_name=...) creates that table if missing and guards it."""
    install_guard(engine, table_name="audit_trail")
    assert check_guard(engine, table_name="audit_trail") == []
    assert check_guard(engine) != []
    # Row triggers (MySQL/MariaDB, SQLite) fire only for a row there is.
    add_rows(engine, SimpleNamespace(table=build_change_table("audit_trail", None)), 1)
    message = refused(engine, "DELETE FROM audit_trail")
    assert "sqlaudit guard: audit_trail is append-only, DELETE refused" in message


@pytest.mark.backends("mariadb")
def test_a_row_larger_than_a_packet_is_written_without_an_update(audit):
    """MariaDB's rows too large for one statement go in whole, so the guard never objects."""
    document = declare_document(audit.base)
    audit.create_tables()
    install_guard(audit.engine)
    with audit.engine.connect() as connection:
        packet = int(connection.exec_driver_sql("SELECT @@max_allowed_packet").scalar_one())
    old, new = "a" * (packet * 2 // 3), "b" * (packet * 2 // 3)
    with audit.Session() as session:
        session.add(document(id=1, body=old))
        session.commit()
        session.get(document, 1).body = new
        session.commit()
    latest = get_resource_changes(document, filter_resource_ids=1, filter_fields="body")[0]
    assert (latest.old_value, latest.new_value) == (old, new)
    with audit.engine.connect() as connection:
        left = "SELECT @sqlaudit_old_value, @sqlaudit_new_value"
        assert tuple(connection.exec_driver_sql(left).one()) == (None, None)


def test_async_twins_install_check_and_drop(audit, guarded, target):
    """sqlaudit.asyncio installs, checks and drops the guard through an async engine."""

    async def scenario() -> list[list[str]]:
        engine = create_async_engine(target.async_url(audit.engine))
        try:
            await sqlaudit_asyncio.drop_guard(engine)
            seen = [await sqlaudit_asyncio.check_guard(engine)]
            await sqlaudit_asyncio.install_guard(engine)
            seen.append(await sqlaudit_asyncio.check_guard(engine))
            return seen
        finally:
            await engine.dispose()

    dropped, installed = asyncio.run(scenario())
    assert dropped and installed == []
    message = refused(audit.engine, "DELETE FROM sqlaudit_changes")
    assert "sqlaudit guard: sqlaudit_changes is append-only, DELETE refused" in message


def test_prune_of_recent_rows_and_new_writes_meanwhile(audit, guarded):
    """A prune that finds nothing to delete changes nothing and leaves the guard on."""
    report = prune(datetime.now(UTC) - timedelta(days=1))
    assert report.rows_deleted == 0
    assert check_guard(audit.engine) == []
