"""The async twins of the history API, with an AsyncSession on every backend."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from history_support import at, busy_day, declare_models, write
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from sqlaudit import (
    ConfigurationTypeError,
    InvalidCursorError,
    RevertConflictError,
    SQLAuditConfig,
    disable_auditing,
    set_config,
)
from sqlaudit import asyncio as audit_async


@pytest.fixture
def run(audit: Any, target: Any) -> Callable[[Callable[[Any], Awaitable[Any]]], Any]:
    """Run ``scenario(factory)`` in a fresh loop, the config's factory an async_sessionmaker."""
    url = target.async_url(audit.engine)

    def runner(scenario: Callable[[Any], Awaitable[Any]]) -> Any:
        async def main() -> Any:
            engine = create_async_engine(url)
            factory = async_sessionmaker(engine, expire_on_commit=False)
            set_config(
                SQLAuditConfig(
                    session_factory=factory,
                    create_table=False,
                    time_zone="UTC",
                    get_user_id_callback=lambda: audit.user,
                )
            )
            try:
                return await scenario(factory)
            finally:
                await engine.dispose()

        return asyncio.run(main())

    return runner


@pytest.fixture
def models(audit: Any) -> tuple[type[Any], type[Any], type[Any]]:
    """Customer, Order and Line with a busy day of history, written synchronously."""
    declared = declare_models(audit.base)
    audit.create_tables()
    busy_day(audit, *declared)
    return declared


def test_async_reads_match_the_sync_ones(audit, models, run):
    """Every async read returns what its sync twin returns."""
    customer, order, line = models
    from sqlaudit import history

    expected = {
        "events": history.get_resource_events(order, 7),
        "state": history.get_resource_state(order, 7, at=at(10, 30)),
        "diff": history.diff_resource(order, 7, at(9, 30), at(13, 30)),
        "changes": history.get_changes(filter_user_ids=2, limit=2),
        "feed": history.get_events(models=[order, line], limit=3),
        "count_changes": history.count_changes(models=[customer]),
        "count_events": history.count_events(models=[customer]),
        "related": history.get_related_states(order, 7, "lines", at=at(11)),
        "aggregate": history.get_aggregate_events(order, 7, relationships=["lines"]),
    }

    async def scenario(factory: Any) -> dict[str, Any]:
        async with factory() as session:
            return {
                "events": await audit_async.get_resource_events(order, 7, session=session),
                "state": await audit_async.get_resource_state(order, 7, at=at(10, 30)),
                "diff": await audit_async.diff_resource(order, 7, at(9, 30), at(13, 30)),
                "changes": await audit_async.get_changes(filter_user_ids=2, limit=2),
                "feed": await audit_async.get_events(
                    models=[order, line], limit=3, session=session
                ),
                "count_changes": await audit_async.count_changes(models=[customer]),
                "count_events": await audit_async.count_events(models=[customer], session=session),
                "related": await audit_async.get_related_states(order, 7, "lines", at=at(11)),
                "aggregate": await audit_async.get_aggregate_events(
                    order, 7, relationships=["lines"]
                ),
            }

    assert run(scenario) == expected


def test_async_cursor_pages_and_refusals(audit, models, run):
    """Async pages follow the cursor to the end; a foreign cursor is refused."""
    customer, order, _line = models
    from sqlaudit import history

    expected = history.get_events().items

    async def scenario(factory: Any) -> list[Any]:
        seen: list[Any] = []
        page = await audit_async.get_events(limit=2)
        seen.extend(page)
        while page.next_cursor:
            page = await audit_async.get_events(limit=2, cursor=page.next_cursor)
            seen.extend(page)
        other = (await audit_async.get_changes(models=[order], limit=1)).next_cursor
        with pytest.raises(InvalidCursorError):
            await audit_async.get_changes(models=[customer], limit=1, cursor=other)
        return seen

    assert run(scenario) == expected


def test_async_restore_and_revert_in_the_callers_session(audit, models, run):
    """Restore and revert write in the AsyncSession; the caller commits."""
    customer, order, _line = models
    renamed = write(audit, at(14), lambda s: setattr(s.get(customer, 1), "name", "renamed"))

    async def scenario(factory: Any) -> tuple[Any, Any]:
        async with factory() as session:
            await audit_async.revert_transaction(session, renamed)
            await audit_async.restore(session, order, 7, at=at(9, 30))
            await session.commit()
        async with factory() as session:
            name = (await session.execute(select(customer.name).where(customer.id == 1))).scalar()
            status = (await session.execute(select(order.status).where(order.id == 7))).scalar()
            return name, status

    assert run(scenario) == ("c1", "new")


def test_async_restore_refuses_conflicts_and_wrong_sessions(audit, models, run):
    """A conflict raises through run_sync; a sync Session is refused with a named error."""
    _customer, order, _line = models
    with disable_auditing():
        write(audit, at(14), lambda s: setattr(s.get(order, 7), "status", "lost"))

    async def scenario(factory: Any) -> None:
        async with factory() as session:
            assert isinstance(session, AsyncSession)
            with pytest.raises(RevertConflictError, match="lost"):
                await audit_async.restore(session, order, 7, at=at(9, 30))
        with audit.Session() as sync_session:
            with pytest.raises(ConfigurationTypeError, match="AsyncSession"):
                await audit_async.restore(sync_session, order, 7, at=at(9, 30))
            with pytest.raises(ConfigurationTypeError, match="AsyncSession"):
                await audit_async.get_resource_events(order, 7, session=sync_session)

    run(scenario)


def test_async_baseline(audit, models, run):
    """``record_baseline`` runs in an AsyncSession and is idempotent."""
    customer = models[0]
    with disable_auditing():
        write(audit, at(14), lambda s: s.add(customer(id=20, name="old")))

    async def scenario(factory: Any) -> tuple[int, int, str]:
        async with factory() as session:
            first = await audit_async.record_baseline(session, customer)
            second = await audit_async.record_baseline(session, customer)
            await session.commit()
        state = await audit_async.get_resource_state(customer, 20)
        return first, second, state.values["name"]

    assert run(scenario) == (1, 0, "old")
