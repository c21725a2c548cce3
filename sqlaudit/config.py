"""The one global sqlaudit configuration.

Build a :class:`SQLAuditConfig` once at start-up and hand it to :func:`set_config`;
it creates the change table when it is missing (unless ``create_table=False``)::

    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker
    from sqlaudit.config import SQLAuditConfig, set_config

    engine = create_engine("sqlite:///app.db")
    set_config(SQLAuditConfig(session_factory=sessionmaker(engine), time_zone="Europe/Kyiv"))

``get_config()`` returns it and ``clear_config()`` forgets it again (tests use that).
``register_type(cls, encode, decode)`` teaches the change table a value type of
your own.
"""

from __future__ import annotations

import inspect as pyinspect
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import KW_ONLY, dataclass
from datetime import tzinfo
from functools import cached_property
from typing import TYPE_CHECKING, Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Table
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import NoInspectionAvailable
from sqlalchemy.orm import Mapper, Session

from sqlaudit import _clock, _registry, _schema
from sqlaudit._codec import register_type as register_type
from sqlaudit._codec import unregister_type as unregister_type
from sqlaudit.exceptions import (
    ConfigurationError,
    ConfigurationTypeError,
    InvalidTimeZoneError,
    NotConfiguredError,
)

# How changes are captured: by the flush hooks, or by generated triggers.
CAPTURE_MODES = ("session", "database")

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "SQLAuditConfig",
    "SessionFactory",
    "UserId",
    "clear_config",
    "get_config",
    "has_config",
    "register_type",
    "set_config",
    "unregister_type",
]

UserId = str | int | UUID
"""The types a user id may have: ``str``, ``int`` or ``UUID``."""

SessionFactory = (
    Callable[[], Session]
    | Callable[[], Iterator[Session]]
    | Callable[[], "AsyncSession"]
    | Callable[[], AsyncIterator["AsyncSession"]]
)
"""What ``session_factory`` may be, as the type checker sees it.

A ``sessionmaker``, a function returning a Session, a generator function yielding
one (FastAPI's ``def get_db() -> Iterator[Session]``, or ``Generator[Session, None,
None]``), and for async applications an ``async_sessionmaker`` or an async generator
function yielding an ``AsyncSession`` (read with :mod:`sqlaudit.asyncio`).
"""


@dataclass(frozen=True, eq=False)
class SQLAuditConfig:
    """Everything sqlaudit needs to know about the application, set once.

    Args:
        session_factory: Where sqlaudit gets a Session when the caller gives none: a
            ``sessionmaker``, a callable returning a ``Session``, or a generator
            function yielding one (FastAPI's ``get_db`` style; sqlaudit closes it).
        user_model: The mapped class of users, if any. ``get_user_id_callback`` may
            then return an instance of it instead of an id.
        user_model_user_id_field: The attribute of ``user_model`` holding the id;
            defaults to its primary key.
        get_user_id_callback: ``() -> str | int | UUID | None``, called once per flush
            that records changes; ``None`` records no user.
        time_zone: IANA name (``"Europe/Kyiv"``) or ``tzinfo`` in which timestamps are
            returned and naive date-range bounds are read; default: the system's zone.
        table_name: Name of the change table.
        table_schema: Schema of the change table (``None``: the default schema).
        create_table: Whether :func:`set_config` creates the change table when it is
            missing; turn it off when migrations manage the table.
        require_user: Refuse (with :class:`~sqlaudit.exceptions.UserRequiredError`,
            before anything is written) a tracked change flushed with no user.
        bulk_in_database: Audit a bulk ``update()``/``delete()`` of integer, string
            and boolean fields inside the database (a temporary table and
            ``INSERT ... SELECT``; no row passes through Python). Turn it off where the
            database user may not create temporary tables, behind a pooler that
            shares connections per transaction, or with two-phase commit; such
            statements are then audited by reading their rows.
        read_old_values: Read the value each flush's ``UPDATE`` or ``DELETE``
            replaces from the database (one locked ``SELECT`` per model and flush),
            so the recorded old value is the row's even when the session's copy is
            stale (another transaction changed the row since it was loaded). Turn it
            off to trust the values the session loaded (one statement less per
            flush; a row changed meanwhile records the value the session saw, and an
            assignment of the value already there records an update). Values the
            session never loaded are read either way.
        capture: How tracked models that name no mode of their own are captured:
            ``"session"`` (the default: the flush hooks and bulk-statement hook write
            the change rows) or ``"database"`` (generated triggers write them, for
            writes from anywhere; install them with :func:`sqlaudit.install_triggers`).
        create_all_models: sqlaudit 0.7's name for ``create_table`` (deprecated;
            a :class:`DeprecationWarning` says so). It wins over ``create_table``.

    Raises:
        InvalidTimeZoneError: ``time_zone`` names no known zone.
        ConfigurationTypeError: an argument has the wrong type.
        ConfigurationError: ``user_model_user_id_field`` is not an attribute of ``user_model``,
            or ``capture`` is neither ``"session"`` nor ``"database"``.

    Example:
        >>> from sqlalchemy import create_engine
        >>> from sqlalchemy.orm import sessionmaker
        >>> config = SQLAuditConfig(
        ...     session_factory=sessionmaker(create_engine("sqlite://")),
        ...     get_user_id_callback=lambda: 42,
        ...     time_zone="Europe/Kyiv",
        ... )
        >>> config.zone
        zoneinfo.ZoneInfo(key='Europe/Kyiv')
    """

    session_factory: SessionFactory
    user_model: type[Any] | None = None
    user_model_user_id_field: str | None = None
    get_user_id_callback: Callable[[], Any] | None = None
    time_zone: str | tzinfo | None = None
    _: KW_ONLY
    table_name: str = "sqlaudit_changes"
    table_schema: str | None = None
    create_table: bool = True
    require_user: bool = False
    bulk_in_database: bool = True
    read_old_values: bool = True
    capture: str = "session"
    create_all_models: bool | None = None

    def __post_init__(self) -> None:
        if self.create_all_models is not None:
            warnings.warn(
                "SQLAuditConfig(create_all_models=...) is sqlaudit 0.7's name: use "
                f"create_table={bool(self.create_all_models)!r}. Note that create_table "
                "defaults to True (0.7's create_all_models defaulted to False).",
                DeprecationWarning,
                stacklevel=3,
            )
            if not isinstance(self.create_all_models, bool):
                raise ConfigurationTypeError(
                    f"SQLAuditConfig.create_all_models must be True or False, not "
                    f"{self.create_all_models!r}; better, pass create_table=True or False."
                )
            object.__setattr__(self, "create_table", self.create_all_models)
        if not callable(self.session_factory):
            raise ConfigurationTypeError(
                f"SQLAuditConfig.session_factory must be a sessionmaker, a callable returning "
                f"a Session or a generator function yielding one, not "
                f"{type(self.session_factory).__name__}."
            )
        if self.get_user_id_callback is not None and not callable(self.get_user_id_callback):
            raise ConfigurationTypeError(
                "SQLAuditConfig.get_user_id_callback must be a callable taking no arguments "
                "and returning the current user's id, not "
                f"{type(self.get_user_id_callback).__name__}."
            )
        if not isinstance(self.table_name, str) or not self.table_name:
            raise ConfigurationTypeError("SQLAuditConfig.table_name must be a non-empty str.")
        for name in ("create_table", "require_user", "bulk_in_database", "read_old_values"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ConfigurationTypeError(
                    f"SQLAuditConfig.{name} must be True or False, not {value!r} "
                    f"({type(value).__name__})."
                )
        if self.capture not in CAPTURE_MODES:
            raise ConfigurationError(
                f"SQLAuditConfig.capture must be 'session' (flush hooks, the default) or "
                f"'database' (generated triggers; see install_triggers()), not {self.capture!r}."
            )
        object.__setattr__(self, "_zone", _resolve_zone(self.time_zone))
        object.__setattr__(self, "_user_id_attr", self._resolve_user_id_attr())

    @property
    def zone(self) -> tzinfo:
        """The resolved time zone in which timestamps are presented.

        Example:
            >>> SQLAuditConfig(session_factory=lambda: None, time_zone="UTC").zone
            zoneinfo.ZoneInfo(key='UTC')
        """
        zone: tzinfo = self.__dict__["_zone"]
        return zone

    @cached_property
    def table(self) -> Table:
        """The change table this configuration writes to and reads from.

        Example:
            >>> SQLAuditConfig(session_factory=lambda: None).table.name
            'sqlaudit_changes'
        """
        return _schema.build_change_table(self.table_name, self.table_schema)

    def resolve_user_id(self, value: Any) -> str | None:
        """Turn what the user callback (or a context) gave into the stored user id.

        Args:
            value: ``None``, a ``str``, ``int`` or ``UUID``, or an instance of ``user_model``.

        Returns:
            The id as a string, or ``None`` for "no user".

        Raises:
            ConfigurationTypeError: the value is none of those.

        Example:
            >>> SQLAuditConfig(session_factory=lambda: None).resolve_user_id(7)
            '7'
        """
        if value is None:
            return None
        if isinstance(value, str):
            return value
        if isinstance(value, (int, UUID)) and not isinstance(value, bool):
            return str(value)
        user_attr: str | None = self.__dict__["_user_id_attr"]
        if self.user_model is not None and isinstance(value, self.user_model) and user_attr:
            return self.resolve_user_id(getattr(value, user_attr))
        raise ConfigurationTypeError(
            f"The current user id must be a str, int, UUID or None"
            f"{' (or a ' + self.user_model.__name__ + ' instance)' if self.user_model else ''}, "
            f"not {type(value).__name__}: fix get_user_id_callback to return the user's id."
        )

    def current_user_id(self) -> str | None:
        """Call ``get_user_id_callback`` (if any) and return the resolved id.

        Example:
            >>> config = SQLAuditConfig(session_factory=lambda: None,
            ...                         get_user_id_callback=lambda: 3)
            >>> config.current_user_id()
            '3'
        """
        if self.get_user_id_callback is None:
            return None
        return self.resolve_user_id(self.get_user_id_callback())

    @contextmanager
    def open_session(self) -> Iterator[Session]:
        """Open a Session from ``session_factory`` and close what was opened.

        Example:
            >>> from sqlalchemy import create_engine
            >>> from sqlalchemy.orm import sessionmaker
            >>> config = SQLAuditConfig(session_factory=sessionmaker(create_engine("sqlite://")))
            >>> with config.open_session() as session:
            ...     session.is_active
            True
        """
        produced = self.session_factory()
        if pyinspect.isgenerator(produced):
            try:
                session = next(produced)
            except StopIteration:
                raise ConfigurationError(
                    "SQLAuditConfig.session_factory is a generator that yielded no Session; "
                    "it must yield exactly one."
                ) from None
            try:
                yield _check_session(session)
            finally:
                produced.close()
            return
        session = _check_session(produced)
        try:
            yield session
        finally:
            session.close()

    def _resolve_user_id_attr(self) -> str | None:
        if self.user_model is None:
            if self.user_model_user_id_field is not None:
                raise ConfigurationError(
                    "SQLAuditConfig.user_model_user_id_field is set but user_model is not: "
                    "pass the user class as user_model too."
                )
            return None
        try:
            mapper: Mapper[Any] = sa_inspect(self.user_model)
        except NoInspectionAvailable:
            raise ConfigurationTypeError(
                f"SQLAuditConfig.user_model must be a mapped class; "
                f"{self.user_model!r} is not mapped by SQLAlchemy."
            ) from None
        if self.user_model_user_id_field is None:
            if len(mapper.primary_key) != 1:
                raise ConfigurationError(
                    f"{self.user_model.__name__} has a composite primary key: "
                    "set user_model_user_id_field to the attribute that holds the user id."
                )
            return mapper.get_property_by_column(mapper.primary_key[0]).key
        if self.user_model_user_id_field not in mapper.columns:
            columns = ", ".join(mapper.columns.keys())
            raise ConfigurationError(
                f"{self.user_model.__name__}.{self.user_model_user_id_field} is not a column of "
                f"{mapper.local_table.description}; columns are: {columns}. "
                "Set user_model_user_id_field to one of them."
            )
        return self.user_model_user_id_field


def _resolve_zone(value: str | tzinfo | None) -> tzinfo:
    if value is None:
        return _clock.local_zone()
    if isinstance(value, tzinfo):
        return value
    if not isinstance(value, str):
        raise ConfigurationTypeError(
            f"SQLAuditConfig.time_zone must be an IANA name such as 'Europe/Kyiv', a tzinfo "
            f"or None, not {type(value).__name__}."
        )
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidTimeZoneError(
            f"SQLAuditConfig.time_zone={value!r} is not a known IANA time zone; use a name "
            "such as 'Europe/Kyiv' or 'America/New_York' (zoneinfo.available_timezones() "
            "lists them), or None for the system's zone."
        ) from None


def _check_session(session: object) -> Session:
    if is_async_source(session):
        raise ConfigurationTypeError(
            "SQLAuditConfig.session_factory produces async sessions, which synchronous code "
            "cannot use: read with sqlaudit.asyncio (get_resource_changes, "
            "get_transaction_changes), and create the change table with "
            "SQLAuditConfig(..., create_table=False) plus "
            "`await sqlaudit.asyncio.create_change_table(engine)`."
        )
    if not isinstance(session, Session):
        raise ConfigurationTypeError(
            f"SQLAuditConfig.session_factory produced a {type(session).__name__}, not a "
            "sqlalchemy.orm.Session; pass a sessionmaker or a function returning a Session."
        )
    return session


def is_async_source(produced: object) -> bool:
    """Tell whether a session factory's product is async (an AsyncSession or async generator)."""
    if pyinspect.isasyncgen(produced) or pyinspect.iscoroutine(produced):
        return True
    return any(cls.__name__ == "AsyncSession" for cls in type(produced).__mro__)


_config: SQLAuditConfig | None = None


def set_config(config: SQLAuditConfig) -> None:
    """Make ``config`` the global configuration and create the change table if missing.

    Args:
        config: The configuration to use from now on.

    Raises:
        ConfigurationTypeError: ``config`` is not a :class:`SQLAuditConfig`.

    Example:
        >>> from sqlalchemy import create_engine
        >>> from sqlalchemy.orm import sessionmaker
        >>> set_config(SQLAuditConfig(session_factory=sessionmaker(create_engine("sqlite://"))))
    """
    global _config
    if not isinstance(config, SQLAuditConfig):
        raise ConfigurationTypeError(
            f"set_config() takes a SQLAuditConfig, not {type(config).__name__}: "
            "build one with SQLAuditConfig(session_factory=...)."
        )
    if config.create_table:
        if pyinspect.isasyncgenfunction(config.session_factory) or pyinspect.iscoroutinefunction(
            config.session_factory
        ):
            _check_session(config.session_factory())  # raises, explaining the async set-up
        with config.open_session() as session:
            bind = session.get_bind()
            _schema.create_change_table(config.table, bind)
    _config = config
    _registry.set_default_capture(config.capture)


def has_config() -> bool:
    """Tell whether :func:`set_config` has been called (and not undone by :func:`clear_config`).

    Example:
        >>> clear_config()
        >>> has_config()
        False
    """
    return _config is not None


def get_config() -> SQLAuditConfig:
    """Return the global configuration.

    Raises:
        NotConfiguredError: :func:`set_config` has not been called.

    Example:
        >>> get_config().table_name
        'sqlaudit_changes'
    """
    if _config is None:
        raise NotConfiguredError(
            "sqlaudit is not configured: call sqlaudit.set_config(SQLAuditConfig(...)) "
            "at start-up, before the first tracked change or query."
        )
    return _config


def clear_config() -> None:
    """Forget the global configuration (the change table is left as it is).

    Example:
        >>> clear_config()
    """
    global _config
    _config = None
    _registry.set_default_capture("session")
