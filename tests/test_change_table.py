"""The change table: its indexes, ids of any length and case, utf8mb4, history order, large values."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, LargeBinary, String, Text, create_engine, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from sqlaudit import (
    SQLAuditConfig,
    TruncatedValue,
    _insert,
    _large_values,
    get_resource_changes,
    register_hooks,
    set_config,
    track_table,
)
from sqlaudit._schema import CHANGE_COLUMNS
from sqlaudit.migration import layout_differences
from sqlaudit.retrieval import build_changes_query


def case_sensitive(length: int) -> Any:
    """A string type that keeps case apart on MariaDB too (as it does elsewhere)."""
    return String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )


def declare_tag(base: Any) -> type[Any]:
    """Declare a ``Tag`` keyed by a case-sensitive code, tracking its label."""

    @track_table(tracked_fields=["label"])
    class Tag(base):
        __tablename__ = "tags"
        code: Mapped[str] = mapped_column(case_sensitive(40), primary_key=True)
        label: Mapped[str] = mapped_column(case_sensitive(100))

    return Tag


def declare_customer(base: Any) -> type[Any]:
    """Declare a ``Customer`` (id, name, email) tracking name and email."""

    @track_table(tracked_fields=["name", "email"])
    class Customer(base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str] = mapped_column(String(100))
        email: Mapped[str | None] = mapped_column(String(100))

    return Customer


def changes_of(audit: Any, model: type[Any], **filters: Any) -> list[Any]:
    """Return ``get_resource_changes(model, **filters)`` read with a session of ``audit``."""
    with audit.Session() as session:
        return get_resource_changes(model, session=session, **filters)


# --- layout ---------------------------------------------------------------------------------


def test_a_new_table_has_the_current_layout_and_the_documented_indexes(audit):
    """The table ``set_config`` creates has the documented indexes, each ending in the row id."""
    inspector = sa_inspect(audit.engine)
    indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("sqlaudit_changes")}
    assert {name: columns for name, columns in indexes.items() if name.startswith("ix_")} == {
        "ix_sqlaudit_changes_resource": ["table_name", "resource_key", "id"],
        "ix_sqlaudit_changes_changed_by": ["changed_by_key", "id"],
        "ix_sqlaudit_changes_transaction": ["transaction_id"],
    }
    with audit.engine.connect() as connection:
        assert layout_differences(connection, audit.config.table) == []


def explain(audit: Any, query: Any) -> str:
    """Return the database's plan for ``query`` (index use forced where the planner may skip it)."""
    sql = str(query.compile(audit.engine, compile_kwargs={"literal_binds": True}))
    with audit.engine.connect() as connection:
        if audit.engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SET enable_seqscan = off")
            rows = connection.exec_driver_sql("EXPLAIN " + sql).all()
        elif audit.engine.dialect.name == "sqlite":
            rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql).all()
        else:
            rows = connection.exec_driver_sql("EXPLAIN " + sql).mappings().all()
    return "\n".join(str(dict(row) if hasattr(row, "keys") else tuple(row)) for row in rows)


def test_one_resources_history_is_read_through_its_index(audit):
    """Reading one resource's changes uses the (table, resource key, id) index."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    with audit.Session() as session:
        session.add_all([customer(id=n, name=f"c{n}") for n in range(1, 30)])
        session.commit()
    query = build_changes_query(customer, config=audit.config, filter_resource_ids=7)
    assert "ix_sqlaudit_changes_resource" in explain(audit, query)
    assert [c.new_value for c in changes_of(audit, customer, filter_resource_ids=7)] == ["c7"]


def test_one_users_activity_is_read_through_its_index(audit):
    """Reading by user uses the (changed-by key, id) index."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    for number in range(1, 30):
        audit.user = f"user-{number}"
        with audit.Session() as session:
            session.add(customer(id=number, name=f"c{number}"))
            session.commit()
    query = build_changes_query(customer, config=audit.config, filter_user_ids="user-7")
    assert "ix_sqlaudit_changes_changed_by" in explain(audit, query)
    assert [c.new_value for c in changes_of(audit, customer, filter_user_ids="user-7")] == ["c7"]


# --- ids of any length, case and character --------------------------------------------------


def test_a_300_character_composite_key_and_user_id_are_recorded_and_found(audit):
    """A 300-character composite key and user id never fail the write, and filter exactly."""

    @track_table(tracked_fields=["qty"])
    class Line(audit.base):
        __tablename__ = "order_lines"
        order_ref: Mapped[str] = mapped_column(String(150), primary_key=True)
        sku: Mapped[str] = mapped_column(String(150), primary_key=True)
        qty: Mapped[int]

    audit.create_tables()
    long_ref, other_ref = "r" * 150, "r" * 149 + "s"
    sku = "s" * 150
    audit.user = "u" * 300
    with audit.Session() as session:
        session.add_all([Line(order_ref=long_ref, sku=sku, qty=1)])
        session.add_all([Line(order_ref=other_ref, sku=sku, qty=2)])
        session.commit()
    (change,) = changes_of(audit, Line, filter_resource_ids=(long_ref, sku))
    assert len(change.resource_id) > 300
    assert (change.new_value, change.changed_by) == (1, "u" * 300)
    both = changes_of(audit, Line, filter_resource_ids=[(long_ref, sku), (other_ref, sku)])
    assert sorted(c.new_value for c in both) == [1, 2]
    assert len(changes_of(audit, Line, filter_user_ids="u" * 300)) == 2
    assert changes_of(audit, Line, filter_user_ids="u" * 299) == []


def test_a_user_id_longer_than_any_index_entry_is_recorded(audit):
    """A 10,000-character user id (beyond PostgreSQL's B-tree entry limit) is stored and found."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    audit.user = "".join(chr(0x4E00 + n % 500) for n in range(10_000))
    with audit.Session() as session:
        session.add(customer(id=1, name="Jane"))
        session.commit()
    (change,) = changes_of(audit, customer, filter_user_ids=audit.user)
    assert change.changed_by == audit.user


def test_ids_and_users_that_differ_only_in_case_stay_apart(audit):
    """``abc`` and ``ABC`` are two resources, ``alice`` and ``ALICE`` two users, everywhere."""
    tag = declare_tag(audit.base)
    audit.create_tables()
    for code, user in [("abc", "alice"), ("ABC", "ALICE")]:
        audit.user = user
        with audit.Session() as session:
            session.add(tag(code=code, label=f"{code} by {user}"))
            session.commit()
    (lower,) = changes_of(audit, tag, filter_resource_ids="abc")
    assert (lower.resource_id, lower.new_value, lower.changed_by) == (
        "abc",
        "abc by alice",
        "alice",
    )
    (upper,) = changes_of(audit, tag, filter_user_ids="ALICE")
    assert (upper.resource_id, upper.new_value) == ("ABC", "ABC by ALICE")
    assert len(changes_of(audit, tag, filter_resource_ids=["abc", "ABC"])) == 2


def test_emoji_in_ids_users_and_values_round_trip(audit):
    """Characters outside the Basic Multilingual Plane come back as written."""
    tag = declare_tag(audit.base)
    audit.create_tables()
    audit.user = "user-😀"
    with audit.Session() as session:
        session.add(tag(code="🙂", label="✨ sparkle 🚀"))
        session.commit()
    (change,) = changes_of(audit, tag, filter_resource_ids="🙂", filter_user_ids="user-😀")
    assert (change.resource_id, change.new_value, change.changed_by) == (
        "🙂",
        "✨ sparkle 🚀",
        "user-😀",
    )


@pytest.fixture
def latin1_engine(engine: Engine) -> Any:
    """An engine on a fresh MariaDB database whose default character set is latin1."""
    name = f"{engine.url.database}_latin1"
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        connection.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET latin1")
    latin1 = create_engine(engine.url.set(database=name))
    try:
        yield latin1
    finally:
        latin1.dispose()
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")


@pytest.mark.backends("mariadb")
def test_the_change_table_is_utf8mb4_bin_on_a_latin1_database(latin1_engine, base):
    """On a database defaulting to latin1 the change table is utf8mb4_bin; emoji round-trip."""
    tag = declare_tag(base)
    base.metadata.create_all(latin1_engine)
    factory = sessionmaker(latin1_engine)
    set_config(
        SQLAuditConfig(session_factory=factory, time_zone="UTC", get_user_id_callback=lambda: "é😀")
    )
    register_hooks()
    with factory() as session:
        session.add(tag(code="🙂", label="✨"))
        session.add(tag(code="🙃", label="x"))
        session.commit()
        changes = get_resource_changes(tag, session=session, filter_resource_ids="🙂")
        collations = session.execute(
            text(
                "SELECT DISTINCT COLLATION_NAME FROM information_schema.COLUMNS WHERE "
                "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'sqlaudit_changes' "
                "AND COLLATION_NAME IS NOT NULL AND COLUMN_NAME NOT LIKE '%\\_key'"
            )
        ).scalars()
        assert set(collations) == {"utf8mb4_bin"}
    assert [(c.resource_id, c.new_value, c.changed_by) for c in changes] == [("🙂", "✨", "é😀")]


# --- the order of the history (the order of writing) ----------------------------------------


def connection_id(session: Any) -> int:
    """Return the server's id of the connection ``session`` uses."""
    query = (
        "SELECT pg_backend_pid()"
        if session.bind.dialect.name == "postgresql"
        else ("SELECT CONNECTION_ID()")
    )
    return int(session.connection().exec_driver_sql(query).scalar_one())


def is_waiting_for_a_lock(engine: Engine, server_id: int) -> bool:
    """Tell whether the server connection ``server_id`` waits for a row lock."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            query = "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s"
        else:
            query = (
                "SELECT trx_state = 'LOCK WAIT' FROM information_schema.INNODB_TRX "
                "WHERE trx_mysql_thread_id = %s"
            )
        return bool(connection.exec_driver_sql(query, (server_id,)).scalar())


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; fail (rather than hang) if it never does."""
    for _ in range(3000):
        if condition():
            return
        time.sleep(0.01)
    pytest.fail(f"gave up waiting until {what}")


@pytest.mark.backends("postgresql", "mariadb")
def test_a_flush_that_waited_for_a_lock_is_listed_after_the_change_it_waited_for(audit):
    """T2 flushes first but waits for T1's lock: T2's change is newest, its old value is T1's new."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    with audit.Session() as session:
        session.add(customer(id=1, name="v0", email="a@example.com"))
        session.commit()

    first = audit.Session()
    row = first.get(customer, 1)
    row.email = "b@example.com"
    first.flush()  # T1 holds the row's lock from here to its commit

    second_server_id: list[int] = []
    errors: list[BaseException] = []

    def second_writer() -> None:
        try:
            with audit.Session() as second:
                other = second.get(customer, 1)
                second_server_id.append(connection_id(second))
                second.expire(other, ["name"])  # its old value is read when the flush runs
                other.name = "t2"
                second.commit()  # the flush begins, then waits for T1's lock
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    thread = threading.Thread(target=second_writer)
    thread.start()
    try:
        wait_for(lambda: bool(second_server_id), "T2 has a connection")
        wait_for(
            lambda: is_waiting_for_a_lock(audit.engine, second_server_id[0]), "T2 waits for T1"
        )
        row.name = "t1"  # flushed after T2's flush began
        first.commit()
    finally:
        first.close()
        thread.join()
    assert errors == []

    names = changes_of(audit, customer, filter_resource_ids=1, filter_fields="name")
    assert [(c.old_value, c.new_value) for c in names] == [("t1", "t2"), ("v0", "t1"), (None, "v0")]
    history = changes_of(audit, customer, filter_resource_ids=1)
    assert (history[0].field_name, history[0].new_value) == ("name", "t2")
    assert [c.change_id for c in history] == sorted((c.change_id for c in history), reverse=True)


# --- large values ---------------------------------------------------------------------------


def declare_document(base: Any) -> type[Any]:
    """Declare a ``Document`` with a long text body and a binary attachment, both tracked."""
    long_text = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
    long_bytes = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")

    @track_table(tracked_fields=["body", "attachment"])
    class Document(base):
        __tablename__ = "documents"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        body: Mapped[str | None] = mapped_column(long_text)
        attachment: Mapped[bytes | None] = mapped_column(long_bytes)

    return Document


def max_allowed_packet(engine: Engine) -> int:
    """Return the MariaDB server's ``max_allowed_packet``."""
    with engine.connect() as connection:
        return int(connection.exec_driver_sql("SELECT @@max_allowed_packet").scalar_one())


def change_row(field: str, old: str | None, new: str | None) -> tuple[Any, ...]:
    """Return a change row of document 1 (in ``CHANGE_COLUMNS`` order) with encoded values."""
    values = {
        "transaction_id": "00000000-0000-4000-8000-000000000001",
        "table_name": "documents",
        "table_label": "Document",
        "resource_id": "1",
        "field_name": field,
        "operation": "update",
        "old_value": old,
        "new_value": new,
        "changed_by": "7",
        "changed_at": datetime(2026, 1, 15, 10, 0, tzinfo=UTC),
        "extra": None,
    }
    return tuple(values[name] for name in CHANGE_COLUMNS)


@pytest.mark.backends("mariadb")
def test_rows_larger_than_a_packet_are_written_in_pieces_in_order(audit):
    """Old and new 10 MB values are stored in full, between smaller rows, in the order given."""
    document = declare_document(audit.base)
    audit.create_tables()
    old, new = "str:" + "a" * 10_000_000, "str:" + "b" * 9_000_000 + "'\\" * 500_000
    assert len(old) + len(new) > max_allowed_packet(audit.engine)  # one INSERT would fail
    rows = [
        change_row("body", None, "str:small"),
        change_row("body", old, new),
        change_row("attachment", None, "bytes:AAAA"),
    ]
    with audit.engine.begin() as connection:
        _large_values.write_changes(
            connection, audit.config.table, rows, None, _insert.write_changes
        )
    changes = changes_of(audit, document)
    assert [c.field_name for c in changes] == ["attachment", "body", "body"]
    assert changes[1].old_value == old[4:]
    assert changes[1].new_value == new[4:]
    assert (changes[0].new_value, changes[2].new_value) == (b"\0\0\0", "small")


@pytest.mark.backends("mariadb")
def test_a_value_no_statement_can_hold_is_stored_truncated_with_a_marker(audit):
    """A value beyond ``max_allowed_packet`` even alone reads back as a ``TruncatedValue``."""
    document = declare_document(audit.base)
    audit.create_tables()
    packet = max_allowed_packet(audit.engine)
    huge = "bytes:" + "QUJD" * (packet // 4 + 1)
    with audit.engine.begin() as connection:
        _large_values.write_changes(
            connection,
            audit.config.table,
            [change_row("attachment", "bytes:AAAA", huge)],
            None,
            _insert.write_changes,
        )
    (change,) = changes_of(audit, document)
    assert change.old_value == b"\0\0\0"
    assert isinstance(change.new_value, TruncatedValue)
    assert change.new_value.length == len(huge)
    assert change.new_value.type_tag == "bytes"
    assert huge.startswith(change.new_value.prefix)
    assert 0 < len(change.new_value.prefix) <= packet // 8


def test_a_text_that_looks_like_the_marker_reads_back_as_text(audit):
    """A ``str`` value spelling ``truncated:...`` is stored tagged, so it is never taken for one."""
    document = declare_document(audit.base)
    audit.create_tables()
    with audit.Session() as session:
        session.add(document(id=1, body="truncated:12:str:abc"))
        session.commit()
    (change,) = changes_of(audit, document)
    assert change.new_value == "truncated:12:str:abc"


@pytest.mark.backends("mariadb")
def test_a_10_mb_text_update_succeeds_with_auditing(audit):
    """An UPDATE of a 10 MB text that MariaDB accepts alone also commits with its change row."""
    document = declare_document(audit.base)
    audit.create_tables()
    with audit.Session() as session:
        session.add(document(id=1, body="a" * 10_000_000))
        session.commit()
        session.get(document, 1).body = "b" * 10_000_000
        session.commit()
    changes = changes_of(audit, document, filter_fields="body")
    assert [(len(c.old_value or ""), len(c.new_value)) for c in changes] == [
        (10_000_000, 10_000_000),
        (0, 10_000_000),
    ]
