"""Reading the history with an :class:`~sqlalchemy.ext.asyncio.AsyncSession`.

Capture needs nothing special: the hooks listen on the Session inside every
``AsyncSession``. Reading is the same query as :mod:`sqlaudit.retrieval`, awaited::

    from sqlaudit.asyncio import get_resource_changes

    async with async_session() as session:
        changes = await get_resource_changes(Customer, session=session, filter_resource_ids=2)

With ``session=None`` a session is opened from ``config.session_factory``, which may
then be an ``async_sessionmaker``, a function returning an ``AsyncSession`` or an
async generator function yielding one (FastAPI's async ``get_db``). Async
applications create the change table with :func:`create_change_table`, since
:func:`~sqlaudit.config.set_config` cannot await (give it ``create_table=False``).

Needs the ``async`` extra: ``pip install "sqlaudit[async]"``.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

from sqlalchemy import Select

try:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
except ImportError as exc:  # greenlet missing: SQLAlchemy's asyncio needs it
    raise ImportError(
        "sqlaudit.asyncio needs SQLAlchemy's asyncio support (greenlet) and an async "
        "driver: pip install 'sqlaudit[async]'"
    ) from exc

from sqlaudit import _schema
from sqlaudit.config import SQLAuditConfig, get_config
from sqlaudit.exceptions import ConfigurationError, ConfigurationTypeError
from sqlaudit.retrieval import (
    DateBound,
    IdValue,
    ResourceChange,
    ResourceIds,
    _to_changes,
    build_changes_query,
    transaction_query,
)

__all__ = ["create_change_table", "get_resource_changes", "get_transaction_changes"]


async def get_resource_changes(
    model_class: type[Any],
    session: AsyncSession | None = None,
    filter_resource_ids: ResourceIds | None = None,
    filter_fields: str | Iterable[str] | None = None,
    filter_user_ids: IdValue | Iterable[IdValue] | None = None,
    filter_date_range: tuple[DateBound, DateBound] | None = None,
    limit: int | None = None,
    offset: int | None = None,
    filter_transaction_ids: str | UUID | Iterable[str | UUID] | None = None,
) -> list[ResourceChange]:
    """Return the recorded changes of a tracked model, newest first (async).

    Takes the same arguments, and raises the same errors, as
    :func:`sqlaudit.retrieval.get_resource_changes`.

    Example:
        >>> changes = await get_resource_changes(Customer, session=session)  # doctest: +SKIP
    """
    config = get_config()
    query = build_changes_query(
        model_class,
        config=config,
        filter_resource_ids=filter_resource_ids,
        filter_fields=filter_fields,
        filter_user_ids=filter_user_ids,
        filter_date_range=filter_date_range,
        limit=limit,
        offset=offset,
        filter_transaction_ids=filter_transaction_ids,
    )
    return _to_changes(await _execute(config, session, query), config.zone)


async def get_transaction_changes(
    transaction_id: str | UUID, session: AsyncSession | None = None
) -> list[ResourceChange]:
    """Return every change row of one database transaction, across models (async).

    Example:
        >>> changes = await get_transaction_changes(change.transaction_id)  # doctest: +SKIP
    """
    config = get_config()
    query = transaction_query(config, transaction_id)
    return _to_changes(await _execute(config, session, query), config.zone)


async def create_change_table(
    bind: AsyncEngine | AsyncConnection, config: SQLAuditConfig | None = None
) -> None:
    """Create the change table (and its indexes) unless it exists.

    Args:
        bind: The async engine or connection to create it with.
        config: Whose table to create; default: the global config.

    Raises:
        ConfigurationError: the table exists with the layout of an earlier sqlaudit;
            upgrade it with ``await connection.run_sync(sqlaudit.upgrade_change_table)``.

    Example:
        >>> await create_change_table(async_engine)  # doctest: +SKIP
    """
    table = (config or get_config()).table
    if isinstance(bind, AsyncEngine):
        async with bind.begin() as connection:
            await connection.run_sync(lambda sync: _schema.create_change_table(table, sync))
    else:
        await bind.run_sync(lambda sync: _schema.create_change_table(table, sync))


async def _execute(config: SQLAuditConfig, session: AsyncSession | None, query: Select[Any]) -> Any:
    if session is not None:
        if not isinstance(session, AsyncSession):
            raise ConfigurationTypeError(
                f"sqlaudit.asyncio reads with an AsyncSession, not {type(session).__name__}; "
                "use sqlaudit.retrieval for a synchronous Session."
            )
        return (await session.execute(query)).all()
    async with _open_session(config) as own:
        return (await own.execute(query)).all()


@asynccontextmanager
async def _open_session(config: SQLAuditConfig) -> AsyncIterator[AsyncSession]:
    produced: Any = config.session_factory()
    if inspect.isawaitable(produced):
        produced = await produced
    if inspect.isasyncgen(produced):
        try:
            session = await produced.__anext__()
        except StopAsyncIteration:
            raise ConfigurationError(
                "SQLAuditConfig.session_factory is an async generator that yielded no "
                "AsyncSession; it must yield exactly one."
            ) from None
        try:
            yield _check(session)
        finally:
            await produced.aclose()
        return
    session = _check(produced)
    try:
        yield session
    finally:
        await session.close()


def _check(session: object) -> AsyncSession:
    if not isinstance(session, AsyncSession):
        raise ConfigurationTypeError(
            f"SQLAuditConfig.session_factory produced a {type(session).__name__}, not an "
            "AsyncSession; sqlaudit.asyncio with session=None needs an async_sessionmaker "
            "(or pass session=...)."
        )
    return session
