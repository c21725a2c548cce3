"""Capture under AsyncSession and the async retrieval API, on every backend."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import String, select, text, update
from sqlalchemy.exc import PendingRollbackError
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from sqlaudit import (
    BulkStatementError,
    ConfigurationTypeError,
    SQLAuditConfig,
    UnauditedWriteError,
    audit_context,
    get_config,
    get_resource_changes,
    install_triggers,
    register_hooks,
    set_config,
    track_table,
)
from sqlaudit import asyncio as audit_async

ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg", "mariadb": "aiomysql"}


def async_url(engine, backend):
    url = engine.url.set(drivername=f"{engine.url.get_backend_name()}+{ASYNC_DRIVERS[backend]}")
    return url.render_as_string(hide_password=False)


def declare_note(base):
    @track_table(tracked_fields=["title", "body"])
    class Note(base):
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(String(50))
        body: Mapped[str | None] = mapped_column(String(200))

    return Note


@pytest.fixture
def async_setup(engine, backend, base):
    """A tracked Note model and its tables, and ``run(scenario)``, which runs
    ``scenario(factory)`` in a fresh event loop with an async engine on the same database."""
    Note = declare_note(base)
    base.metadata.create_all(engine)
    url = async_url(engine, backend)

    def run(scenario):
        async def main():
            async_engine = create_async_engine(url)
            factory = async_sessionmaker(async_engine, expire_on_commit=True)
            config = SQLAuditConfig(
                session_factory=factory,
                create_table=False,
                time_zone="UTC",
                get_user_id_callback=lambda: 1,
            )
            set_config(config)
            config.table.create(engine, checkfirst=True)
            try:
                return await scenario(factory)
            finally:
                await async_engine.dispose()

        return asyncio.run(main())

    register_hooks()
    return Note, run


def test_async_session_capture_and_async_retrieval(async_setup):
    """Inserts, updates of expired attributes and deletes through an AsyncSession are recorded and read back async."""
    Note, run = async_setup

    async def scenario(factory):
        async with factory() as session:
            note = Note(title="draft", body=None)
            session.add(note)
            await session.flush()
            note_id = note.id
            await session.commit()  # expires note
            session.expire(note)
            note.title = "final"  # assigned while expired: no I/O on assignment
            note.body = "text"
            await session.commit()
            await session.delete(await session.get(Note, note_id))
            await session.commit()
            return note_id, await audit_async.get_resource_changes(
                Note, session=session, filter_resource_ids=note_id
            )

    note_id, changes = run(scenario)
    by_operation = {}
    for change in changes:
        by_operation.setdefault(change.operation, set()).add(
            (change.field_name, change.old_value, change.new_value)
        )
    assert by_operation == {
        "insert": {("title", None, "draft")},
        "update": {("title", "draft", "final"), ("body", None, "text")},
        "delete": {("title", "final", None), ("body", "text", None)},
    }
    assert [c.operation for c in changes] == ["delete"] * 2 + ["update"] * 2 + ["insert"]
    assert {c.resource_id for c in changes} == {str(note_id)}


def test_async_bulk_update_and_transaction_changes(async_setup):
    """A bulk update on an AsyncSession is recorded, and get_transaction_changes finds its rows."""
    Note, run = async_setup

    async def scenario(factory):
        async with factory() as session:
            session.add_all([Note(title="a"), Note(title="b")])
            await session.commit()
            await session.execute(update(Note).values(title=Note.title + "!"))
            await session.commit()
            latest = (await audit_async.get_resource_changes(Note, session=session, limit=1))[0]
            return await audit_async.get_transaction_changes(latest.transaction_id, session=session)

    changes = run(scenario)
    assert sorted((c.old_value, c.new_value) for c in changes) == [("a", "a!"), ("b", "b!")]


def test_async_retrieval_without_a_session_uses_the_factory(async_setup):
    """With session=None, the async functions open a session from an async_sessionmaker or an async generator."""
    Note, run = async_setup
    closed = []

    async def scenario(factory):
        async def get_db():
            async with factory() as session:
                try:
                    yield session
                finally:
                    closed.append(True)

        async with factory() as session:
            session.add(Note(title="x"))
            await session.commit()
        first = await audit_async.get_resource_changes(Note)
        set_config(SQLAuditConfig(session_factory=get_db, create_table=False, time_zone="UTC"))
        second = await audit_async.get_resource_changes(Note)
        return first, second

    first, second = run(scenario)
    assert [c.new_value for c in first] == [c.new_value for c in second] == ["x"]
    assert closed == [True]


def test_audit_context_is_per_task_with_async_sessions(async_setup, backend):
    """Concurrent asyncio tasks, each in its own audit_context and AsyncSession, record their own user."""
    Note, run = async_setup
    if backend == "sqlite":
        pytest.skip("SQLite serialises writers; the task isolation itself is covered on servers")

    async def scenario(factory):
        async def writer(user: str):
            async with audit_context(user_id=user), factory() as session:
                for i in range(5):
                    session.add(Note(title=f"{user}-{i}"))
                    await session.commit()
                    await asyncio.sleep(0)

        await asyncio.gather(*(writer(f"user{n}") for n in range(4)))
        return await audit_async.get_resource_changes(Note)

    changes = run(scenario)
    assert len(changes) == 20
    for change in changes:
        assert change.new_value.startswith(change.changed_by + "-")


def test_async_factory_explains_table_creation_and_sync_reads(engine, base):
    """An async session factory with create_table=True, or read through the sync API, fails with the fix."""
    Note = declare_note(base)

    async def main():
        async_engine = create_async_engine("sqlite+aiosqlite://")
        factory = async_sessionmaker(async_engine)
        try:
            with pytest.raises(ConfigurationTypeError, match="create_change_table"):
                set_config(SQLAuditConfig(session_factory=factory))
            set_config(SQLAuditConfig(session_factory=factory, create_table=False))
            with pytest.raises(ConfigurationTypeError, match=r"sqlaudit\.asyncio"):
                get_resource_changes(Note)
            await audit_async.create_change_table(async_engine)
            async with factory() as session:
                return await audit_async.get_resource_changes(Note, session=session)
        finally:
            await async_engine.dispose()

    assert asyncio.run(main()) == []


def test_async_api_rejects_a_sync_session(async_setup, engine):
    """Passing a synchronous Session to sqlaudit.asyncio fails with a clear type error."""
    Note, run = async_setup

    async def scenario(factory):
        with (
            Session(engine) as session,
            pytest.raises(ConfigurationTypeError, match="AsyncSession"),
        ):
            await audit_async.get_resource_changes(Note, session=session)
        return True

    assert run(scenario)


def test_async_session_cannot_commit_a_statement_whose_rows_failed(async_setup, engine):
    """Under AsyncSession too, a bulk statement whose change rows failed cannot be committed."""
    Note, run = async_setup

    async def scenario(factory):
        async with factory() as session:
            session.add(Note(id=1, title="a"))
            await session.commit()
        get_config().table.drop(engine)  # every change-row INSERT now fails
        async with factory() as session:
            with pytest.raises(Exception) as raised:
                await session.execute(update(Note).where(Note.id == 1).values(title="b"))
            assert not isinstance(raised.value, UnauditedWriteError)
            with pytest.raises((UnauditedWriteError, PendingRollbackError)):
                await session.commit()
            await session.rollback()
            return await session.scalar(select(Note.title))

    assert run(scenario) == "a"


def test_async_session_refuses_legacy_bulk_methods_through_run_sync(async_setup):
    """`run_sync(lambda s: s.bulk_insert_mappings(...))` is refused like the sync call."""
    Note, run = async_setup

    async def scenario(factory):
        async with factory() as session:
            with pytest.raises(BulkStatementError, match=r"insert\(Note\)"):
                await session.run_sync(
                    lambda sync: sync.bulk_insert_mappings(Note, [{"id": 1, "title": "a"}])
                )
            return await session.scalar(select(Note.title))

    assert run(scenario) is None


def test_database_capture_under_async_session(engine, backend, base):
    """With capture='database', an AsyncSession's writes reach the triggers with their user, and the context ends with the transaction."""

    @track_table(tracked_fields=["title"], capture="database")
    class Memo(base):
        __tablename__ = "memos"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(String(50))

    base.metadata.create_all(engine)
    url = async_url(engine, backend)

    async def main():
        async_engine = create_async_engine(url, pool_size=1, max_overflow=0)
        factory = async_sessionmaker(async_engine)
        set_config(SQLAuditConfig(session_factory=factory, create_table=False, time_zone="UTC"))
        get_config().table.create(engine, checkfirst=True)
        install_triggers(engine)
        register_hooks()
        try:
            assert await audit_async.check_triggers(async_engine) == []
            async with factory() as session:
                with audit_context(user_id="async-user"):
                    session.add(Memo(id=1, title="a"))
                    await session.commit()
            async with async_engine.begin() as connection:  # same pooled connection, no context
                await connection.execute(text("INSERT INTO memos (id, title) VALUES (2, 'raw')"))
            return await audit_async.get_resource_changes(Memo)
        finally:
            await async_engine.dispose()

    changes = asyncio.run(main())
    assert {(c.resource_id, c.changed_by) for c in changes} == {("1", "async-user"), ("2", None)}
    assert len({c.transaction_id for c in changes}) == 2
