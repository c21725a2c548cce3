"""The change-row write path (sqlaudit._insert) on every database and driver: statements, order, encoding."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, String, event, select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from sqlaudit import track_table
from sqlaudit._insert import write_changes
from sqlaudit._schema import CHANGE_COLUMNS, build_change_table


@pytest.mark.parametrize("first", ["sqlaudit._insert", "sqlaudit._schema"])
def test_write_changes_is_importable_from_both_modules_whichever_comes_first(first):
    """_schema re-exports _insert.write_changes, and importing either module first works."""
    code = (
        f"import {first}\n"
        "from sqlaudit._schema import write_changes\n"
        "from sqlaudit import _insert\n"
        "assert write_changes is _insert.write_changes\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture
def change_inserts(audit) -> Iterator[Callable[[Session], int]]:
    """A function telling how many INSERT statements reached the change table so far.

    Counted by the database where there is one: a statement-level trigger on
    PostgreSQL (it fires once per statement, however many rows), the session's
    ``Com_insert`` on MariaDB (a multi-row INSERT counts once). SQLite runs in the
    process, so there the calls into the driver are counted (an executemany once).
    """
    engine: Engine = audit.engine
    backend = engine.dialect.name
    if backend == "postgresql":
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE change_inserts (n integer)")
            connection.exec_driver_sql(
                "CREATE OR REPLACE FUNCTION sqlaudit_test_count_insert() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN INSERT INTO change_inserts VALUES (1); "
                "RETURN NULL; END $$"
            )
            connection.exec_driver_sql(
                "CREATE TRIGGER sqlaudit_test_count_insert AFTER INSERT ON sqlaudit_changes "
                "FOR EACH STATEMENT EXECUTE FUNCTION sqlaudit_test_count_insert()"
            )
        try:
            yield lambda session: int(
                session.connection().exec_driver_sql("SELECT count(*) FROM change_inserts").scalar()
                or 0
            )
        finally:
            with engine.begin() as connection:
                connection.exec_driver_sql(
                    "DROP FUNCTION IF EXISTS sqlaudit_test_count_insert() CASCADE"
                )
    elif backend in ("mysql", "mariadb"):
        yield lambda session: int(
            session.connection().exec_driver_sql("SHOW SESSION STATUS LIKE 'Com_insert'").one()[1]
        )
    else:
        calls: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.startswith("INSERT INTO sqlaudit_changes"):
                calls.append(statement)

        event.listen(engine, "before_cursor_execute", count)
        try:
            yield lambda session: len(calls)
        finally:
            event.remove(engine, "before_cursor_execute", count)


@pytest.fixture
def Item(audit):
    @track_table(tracked_fields=["name", "quantity"])
    class Item(audit.base):
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50))
        quantity: Mapped[int]

    audit.create_tables()
    return Item


@pytest.mark.parametrize("operation", ["update", "delete"])
@pytest.mark.parametrize("objects", [1, 20, 300])
def test_a_flush_sends_its_change_rows_in_one_statement_whatever_its_size(
    audit, Item, change_inserts, objects, operation
):
    """A flush changing 1, 20 or 300 objects writes all its change rows with one INSERT."""
    with audit.Session() as session:
        session.add_all([Item(id=i, name=f"item {i}", quantity=i) for i in range(1, objects + 1)])
        session.commit()
    with audit.Session() as session:
        items = session.scalars(select(Item).order_by(Item.id)).all()
        before = change_inserts(session)
        for item in items:
            if operation == "update":
                item.name += "!"
                item.quantity += 1
            else:
                session.delete(item)
        session.flush()
        sent = change_inserts(session) - before
        session.commit()
    assert sent == 1
    assert len(audit.rows()) == objects * 2 * 2


# Values that quoting, parameter markers or PostgreSQL's array syntax could trip over.
_AWKWARD = (
    "new, (value) %s %(x)s ? :x $1 ",
    "NULL",
    "",
    ' {a,"b"} \\ \\" ',
    "\t tab, new\nline, é, 💾 ",
)


def _sample_rows(count: int) -> list[tuple[Any, ...]]:
    """Change rows in CHANGE_COLUMNS order, shuffled so that no column sorts like the input."""
    moment = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    rows = []
    for i in range(count):
        rows.append(
            (
                f"tx-{i % 3}",
                "items",
                None if i % 4 == 0 else "Item",
                str(i),
                ("name", "quantity", "price")[i % 3],
                ("insert", "update", "delete")[i % 3],
                None if i % 3 == 0 else f"old 'quoted' \"value\" \\ {i}",
                None if i % 3 == 2 else _AWKWARD[i % len(_AWKWARD)],
                None if i % 5 == 0 else str(i % 7),
                moment + timedelta(microseconds=i % 2),
                None if i % 2 else {"request": f"r{i}", "tags": [1, "two", None]},
            )
        )
    random.Random(count).shuffle(rows)
    return rows


def _read(connection: Any, table: Any) -> list[tuple[Any, ...]]:
    return [tuple(row)[1:] for row in connection.execute(table.select().order_by(table.c.id))]


def _write_and_compare(connection: Any, rows: list[tuple[Any, ...]]) -> None:
    """Write ``rows`` with write_changes and with a plain Core insert; both read back alike."""
    ours = build_change_table("sqlaudit_changes_fast", None)
    reference = build_change_table("sqlaudit_changes_core", None)
    for table in (ours, reference):
        table.drop(connection, checkfirst=True)
        table.create(connection)
    write_changes(connection, ours, rows)
    connection.execute(
        reference.insert(), [dict(zip(CHANGE_COLUMNS, row, strict=True)) for row in rows]
    )
    written = _read(connection, ours)
    assert written == _read(connection, reference)
    assert [row[3] for row in written] == [row[3] for row in rows]  # in the order given
    for table in (ours, reference):
        table.drop(connection)


@pytest.mark.parametrize("count", [1, 7, 2500])
def test_rows_are_written_in_order_with_the_encoding_of_a_plain_insert(engine, count):
    """Ids follow the order of the rows given, and values read back as a Core insert's do."""
    with engine.begin() as connection:
        _write_and_compare(connection, _sample_rows(count))


@pytest.mark.parametrize("count", [1, 2500])
def test_async_drivers_write_in_order_with_the_encoding_of_a_plain_insert(engine, target, count):
    """The same holds through the target's async driver (asyncpg, psycopg, aiomysql, aiosqlite)."""

    async def run() -> None:
        async_engine = create_async_engine(target.async_url(engine))
        try:
            async with async_engine.begin() as connection:
                await connection.run_sync(_write_and_compare, _sample_rows(count))
        finally:
            await async_engine.dispose()

    asyncio.run(run())


def test_rows_larger_than_one_statement_are_all_written_in_order(engine):
    """Three megabytes of change rows (more than a MySQL driver puts in one statement) all arrive, in order."""
    rows = [(*row[:7], f"{i}:" + "x" * 300_000, *row[8:]) for i, row in enumerate(_sample_rows(10))]
    with engine.begin() as connection:
        _write_and_compare(connection, rows)


def test_no_rows_send_nothing(engine):
    """An empty list of rows sends no statement."""
    table = build_change_table("sqlaudit_changes", None)
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    with engine.connect() as connection:
        event.listen(connection, "before_cursor_execute", record)
        write_changes(connection, table, [])
    assert statements == []
