"""Write paths changed for operations and the query log fail closed.

An error after the caller's statement ran, caught by the application, then
``commit()``: what the transaction committed is audited (and logged) in full, on
every driver, sync and async.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from test_change_table import declare_document, max_allowed_packet

from sqlaudit import get_resource_changes
from sqlaudit.querylog import log_queries
from sqlaudit.querylog._table import build_log_table

MISSING = "SELECT * FROM sqlaudit_no_such_table"


def _fail_and_go_on(session: Session) -> None:
    """Run a failing statement in a savepoint and swallow its error, as an application would."""
    with pytest.raises(DBAPIError), session.begin_nested():
        session.execute(text(MISSING))


def _logged_inserts(engine: Any) -> list[str]:
    table = build_log_table()
    with engine.connect() as connection:
        query = select(table.c.statement).where(table.c.kind == "insert").order_by(table.c.id)
        return list(connection.execute(query).scalars())


@pytest.mark.backends("mariadb")
def test_a_caught_error_after_a_value_larger_than_a_packet_keeps_its_change_row(audit):
    """The one-INSERT path of oversized values commits its change row with the caller's row."""
    document = declare_document(audit.base)
    audit.create_tables()
    body = "x" * (max_allowed_packet(audit.engine) * 2 // 3)
    with audit.Session() as session:
        session.add(document(id=1, body=body))
        session.flush()
        _fail_and_go_on(session)
        session.commit()
    [change] = get_resource_changes(document, filter_resource_ids=1, filter_fields="body")
    assert change.new_value == body


@pytest.mark.backends("mariadb")
def test_a_caught_error_after_a_large_value_on_aiomysql_keeps_its_change_row(audit, target):
    """The same through AsyncSession on aiomysql."""
    document = declare_document(audit.base)
    audit.create_tables()
    body = "y" * (max_allowed_packet(audit.engine) * 2 // 3)

    async def scenario() -> None:
        engine = create_async_engine(target.async_url(audit.engine))
        try:
            async with AsyncSession(engine) as session:
                session.add(document(id=2, body=body))
                await session.flush()
                with pytest.raises(DBAPIError):
                    async with session.begin_nested():
                        await session.execute(text(MISSING))
                await session.commit()
        finally:
            await engine.dispose()

    asyncio.run(scenario())
    [change] = get_resource_changes(document, filter_resource_ids=2, filter_fields="body")
    assert change.new_value == body


def test_a_caught_error_keeps_the_query_log_of_what_committed(audit):
    """Logged in the transaction: the caller's INSERT and the change rows' INSERT are
    logged; the failed statement is not; the change rows are there."""
    document = declare_document(audit.base)
    audit.create_tables()
    log = log_queries(of=audit.engine)
    try:
        with audit.Session() as session:
            session.add(document(id=3, body="logged"))
            session.flush()
            _fail_and_go_on(session)
            session.commit()
    finally:
        log.remove()
    inserts = _logged_inserts(audit.engine)
    assert any("documents" in sql for sql in inserts)
    assert any("sqlaudit_changes" in sql for sql in inserts)
    assert not any("sqlaudit_no_such_table" in sql for sql in inserts)
    [change] = get_resource_changes(document, filter_resource_ids=3, filter_fields="body")
    assert change.new_value == "logged"


def test_a_caught_error_keeps_the_query_log_on_the_async_driver(audit, target):
    """The same on the target's async driver (aiosqlite, asyncpg, psycopg async, aiomysql)."""
    document = declare_document(audit.base)
    audit.create_tables()

    async def scenario() -> None:
        engine = create_async_engine(target.async_url(audit.engine))
        # The recipe documented before sqlaudit.asyncio.log_queries (still supported):
        # log_queries creates its table, so it runs where the async driver can do I/O.
        async with engine.connect() as connection:
            log = await connection.run_sync(lambda sync: log_queries(of=sync.engine))
        try:
            async with AsyncSession(engine) as session:
                session.add(document(id=4, body="async"))
                await session.flush()
                with pytest.raises(DBAPIError):
                    async with session.begin_nested():
                        await session.execute(text(MISSING))
                await session.commit()
        finally:
            log.remove()
            await engine.dispose()

    asyncio.run(scenario())
    inserts = _logged_inserts(audit.engine)
    assert any("documents" in sql for sql in inserts)
    assert any("sqlaudit_changes" in sql for sql in inserts)
    with audit.engine.connect() as connection:
        rows = connection.execute(
            select(func.count())
            .select_from(audit.config.table)
            .where(audit.config.table.c.table_name == "documents")
        ).scalar_one()
    assert rows == 1
