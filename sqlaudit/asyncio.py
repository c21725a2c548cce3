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

The capture triggers and the append-only guard are installed, checked and dropped
through an ``AsyncEngine`` by twins of their functions (:func:`install_triggers`,
:func:`install_guard` ...).

The history API (:mod:`sqlaudit.history`) has a twin here for every read and for
:func:`restore`, :func:`revert_transaction` and :func:`record_baseline`: the same
arguments, awaited, with an ``AsyncSession``; each runs the synchronous
implementation on the session's connection (``AsyncSession.run_sync``)::

    from sqlaudit.asyncio import get_events, get_resource_events, restore

    async with async_session() as session:
        page = await get_events(models=[Customer], limit=50, session=session)
        await restore(session, Customer, 2, at=last_tuesday)
        await session.commit()

The query log has a twin too, :func:`log_queries`: it creates its tables through the
``AsyncEngine`` and logs everything run on it, in each statement's transaction; with
``to=`` its outbox is delivered in an event loop of its own, never on the
application's connections::

    from sqlaudit.asyncio import log_queries

    log = await log_queries(of=async_engine, to=log_engine)
    ...
    await log.remove()  # delivers what is committed, stops the drainer thread

Needs the ``async`` extra: ``pip install "sqlaudit-trail[async]"``.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import Select
from sqlalchemy.orm import Session

try:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
except ImportError as exc:  # greenlet missing: SQLAlchemy's asyncio needs it
    raise ImportError(
        "sqlaudit.asyncio needs SQLAlchemy's asyncio support (greenlet) and an async "
        "driver: pip install 'sqlaudit-trail[async]'"
    ) from exc

from sqlaudit import _schema, history, ops, triggers
from sqlaudit.config import SQLAuditConfig, get_config
from sqlaudit.exceptions import ConfigurationError, ConfigurationTypeError
from sqlaudit.history import Page, ResourceEvent, ResourceState
from sqlaudit.querylog._async import AsyncQueryLog as AsyncQueryLog
from sqlaudit.querylog._async import log_queries as log_queries
from sqlaudit.retrieval import (
    DateBound,
    IdValue,
    ResourceChange,
    ResourceIds,
    _to_changes,
    build_changes_query,
    transaction_query,
)

__all__ = [
    "AsyncQueryLog",
    "check_guard",
    "check_triggers",
    "count_changes",
    "count_events",
    "create_change_table",
    "diff_resource",
    "drop_guard",
    "drop_triggers",
    "get_aggregate_events",
    "get_changes",
    "get_events",
    "get_related_states",
    "get_resource_changes",
    "get_resource_events",
    "get_resource_state",
    "get_transaction_changes",
    "install_guard",
    "install_triggers",
    "log_queries",
    "record_baseline",
    "restore",
    "revert_transaction",
]

R = TypeVar("R")


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


async def _on_connection(bind: AsyncEngine | AsyncConnection, work: Callable[[Any], R]) -> R:
    if isinstance(bind, AsyncEngine):
        async with bind.begin() as connection:
            return await connection.run_sync(work)
    return await bind.run_sync(work)


async def install_triggers(
    bind: AsyncEngine | AsyncConnection, models: Iterable[type[Any]] | None = None, **options: Any
) -> list[type[Any]]:
    """Install the capture triggers through an async engine (see :func:`sqlaudit.install_triggers`).

    Example:
        >>> await install_triggers(async_engine)  # doctest: +SKIP
    """
    return await _on_connection(
        bind, lambda sync: triggers.install_triggers(sync, models, **options)
    )


async def drop_triggers(
    bind: AsyncEngine | AsyncConnection, models: Iterable[type[Any]] | None = None, **options: Any
) -> list[type[Any]]:
    """Remove the capture triggers through an async engine (see :func:`sqlaudit.drop_triggers`).

    Example:
        >>> await drop_triggers(async_engine)  # doctest: +SKIP
    """
    return await _on_connection(bind, lambda sync: triggers.drop_triggers(sync, models, **options))


async def check_triggers(
    bind: AsyncEngine | AsyncConnection, models: Iterable[type[Any]] | None = None, **options: Any
) -> list[triggers.TriggerProblem]:
    """Compare the installed triggers with the models (see :func:`sqlaudit.check_triggers`).

    ``register_hooks()`` cannot check them at start-up when the session factory is
    async (it would need the event loop): an async application awaits this instead.

    Example:
        >>> assert await check_triggers(async_engine) == []  # doctest: +SKIP
    """
    return await _on_connection(bind, lambda sync: triggers.check_triggers(sync, models, **options))


async def install_guard(bind: AsyncEngine | AsyncConnection, **options: Any) -> None:
    """Install the append-only guard through an async engine (see :func:`sqlaudit.install_guard`).

    Example:
        >>> await install_guard(async_engine)  # doctest: +SKIP
    """
    await _on_connection(bind, lambda sync: ops.install_guard(sync, **options))


async def drop_guard(bind: AsyncEngine | AsyncConnection, **options: Any) -> None:
    """Remove the append-only guard through an async engine (see :func:`sqlaudit.drop_guard`).

    Example:
        >>> await drop_guard(async_engine)  # doctest: +SKIP
    """
    await _on_connection(bind, lambda sync: ops.drop_guard(sync, **options))


async def check_guard(bind: AsyncEngine | AsyncConnection, **options: Any) -> list[str]:
    """Say what the append-only guard is missing (see :func:`sqlaudit.check_guard`).

    Example:
        >>> assert await check_guard(async_engine) == []  # doctest: +SKIP
    """
    return await _on_connection(bind, lambda sync: ops.check_guard(sync, **options))


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


# --- the history API ------------------------------------------------------------------------


async def _read(session: AsyncSession | None, work: Callable[[Session], R]) -> R:
    """Run a synchronous read on ``session`` (or on one opened from the config)."""
    if session is not None:
        _check_given(session)
        return await session.run_sync(work)
    async with _open_session(get_config()) as own:
        return await own.run_sync(work)


def _check_given(session: object) -> AsyncSession:
    if not isinstance(session, AsyncSession):
        raise ConfigurationTypeError(
            f"sqlaudit.asyncio works with an AsyncSession, not {type(session).__name__}; "
            "use sqlaudit.history for a synchronous Session."
        )
    return session


async def get_resource_events(
    model_class: type[Any], resource_id: Any, *, session: AsyncSession | None = None, **options: Any
) -> list[ResourceEvent]:
    """Return one resource's events, newest first (async).

    The twin of :func:`sqlaudit.history.get_resource_events`, with the same arguments.

    Example:
        >>> events = await get_resource_events(Customer, 2, session=session)  # doctest: +SKIP
    """
    return await _read(
        session,
        lambda s: history.get_resource_events(model_class, resource_id, session=s, **options),
    )


async def get_resource_state(
    model_class: type[Any], resource_id: Any, *, session: AsyncSession | None = None, **options: Any
) -> ResourceState:
    """Return a resource's state at a moment (async).

    The twin of :func:`sqlaudit.history.get_resource_state`, with the same arguments.

    Example:
        >>> state = await get_resource_state(Customer, 2, at=last_tuesday)  # doctest: +SKIP
    """
    return await _read(
        session,
        lambda s: history.get_resource_state(model_class, resource_id, session=s, **options),
    )


async def diff_resource(
    model_class: type[Any],
    resource_id: Any,
    start: Any,
    end: Any,
    *,
    session: AsyncSession | None = None,
    **options: Any,
) -> dict[str, tuple[Any, Any]]:
    """Return the fields that differ between two moments (async).

    The twin of :func:`sqlaudit.history.diff_resource`, with the same arguments.

    Example:
        >>> await diff_resource(Customer, 2, last_tuesday, today)  # doctest: +SKIP
    """
    return await _read(
        session,
        lambda s: history.diff_resource(model_class, resource_id, start, end, session=s, **options),
    )


async def get_changes(
    *, session: AsyncSession | None = None, **filters: Any
) -> Page[ResourceChange]:
    """Return a page of change rows across models (async).

    The twin of :func:`sqlaudit.history.get_changes`, with the same arguments.

    Example:
        >>> page = await get_changes(models=[Customer], limit=50)  # doctest: +SKIP
    """
    return await _read(session, lambda s: history.get_changes(session=s, **filters))


async def get_events(*, session: AsyncSession | None = None, **filters: Any) -> Page[ResourceEvent]:
    """Return a page of events across models (async).

    The twin of :func:`sqlaudit.history.get_events`, with the same arguments.

    Example:
        >>> page = await get_events(models=[Customer], limit=50)  # doctest: +SKIP
    """
    return await _read(session, lambda s: history.get_events(session=s, **filters))


async def count_changes(*, session: AsyncSession | None = None, **filters: Any) -> int:
    """Count change rows (async).

    The twin of :func:`sqlaudit.history.count_changes`, with the same arguments.

    Example:
        >>> await count_changes(models=[Customer], filter_user_ids=7)  # doctest: +SKIP
    """
    return await _read(session, lambda s: history.count_changes(session=s, **filters))


async def count_events(*, session: AsyncSession | None = None, **filters: Any) -> int:
    """Count events (async).

    The twin of :func:`sqlaudit.history.count_events`, with the same arguments.

    Example:
        >>> await count_events(models=[Customer], filter_user_ids=7)  # doctest: +SKIP
    """
    return await _read(session, lambda s: history.count_events(session=s, **filters))


async def get_related_states(
    model_class: type[Any],
    resource_id: Any,
    relationship: str,
    *,
    session: AsyncSession | None = None,
    **options: Any,
) -> list[ResourceState]:
    """Return the related objects' states at a moment (async).

    The twin of :func:`sqlaudit.history.get_related_states`, with the same arguments.

    Example:
        >>> lines = await get_related_states(Order, 7, "lines", at=last_tuesday)  # doctest: +SKIP
    """
    return await _read(
        session,
        lambda s: history.get_related_states(
            model_class, resource_id, relationship, session=s, **options
        ),
    )


async def get_aggregate_events(
    model_class: type[Any], resource_id: Any, *, session: AsyncSession | None = None, **options: Any
) -> list[ResourceEvent]:
    """Return an aggregate's timeline (async).

    The twin of :func:`sqlaudit.history.get_aggregate_events`, with the same arguments.

    Example:
        >>> await get_aggregate_events(Order, 7, relationships=["lines"])  # doctest: +SKIP
    """
    return await _read(
        session,
        lambda s: history.get_aggregate_events(model_class, resource_id, session=s, **options),
    )


async def restore(
    session: AsyncSession, model_class: type[Any], resource_id: Any, **options: Any
) -> Any:
    """Restore a resource in ``session`` (async).

    The twin of :func:`sqlaudit.history.restore`, with the same arguments.

    Example:
        >>> await restore(session, Customer, 2, at=last_tuesday)  # doctest: +SKIP
        >>> await session.commit()  # doctest: +SKIP
    """
    return await _check_given(session).run_sync(
        lambda s: history.restore(s, model_class, resource_id, **options)
    )


async def revert_transaction(
    session: AsyncSession, transaction_id: str | UUID, **options: Any
) -> list[ResourceEvent]:
    """Undo one transaction in ``session`` (async).

    The twin of :func:`sqlaudit.history.revert_transaction`, with the same arguments.

    Example:
        >>> await revert_transaction(session, event.transaction_id)  # doctest: +SKIP
        >>> await session.commit()  # doctest: +SKIP
    """
    return await _check_given(session).run_sync(
        lambda s: history.revert_transaction(s, transaction_id, **options)
    )


async def record_baseline(session: AsyncSession, model_class: type[Any], **options: Any) -> int:
    """Record the values of rows that predate tracking (async).

    The twin of :func:`sqlaudit.history.record_baseline`, with the same arguments.

    Example:
        >>> await record_baseline(session, Customer)  # doctest: +SKIP
        >>> await session.commit()  # doctest: +SKIP
    """
    return await _check_given(session).run_sync(
        lambda s: history.record_baseline(s, model_class, **options)
    )
