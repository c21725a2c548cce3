"""Shared fixtures: one database fixture over every database and driver, and a clean world per test.

Each integration test runs once per target, a database reached through one driver:

==========================  ==========  ==================================
target (test id)            backend     driver, sync / async
==========================  ==========  ==================================
``sqlite``                  sqlite      sqlite3 / aiosqlite
``postgresql``              postgresql  psycopg 3 / asyncpg
``postgresql-psycopg2``     postgresql  psycopg2 / psycopg 3 (async mode)
``mariadb``                 mariadb     PyMySQL / aiomysql
``mariadb-mysqlclient``     mariadb     mysqlclient / aiomysql
==========================  ==========  ==================================

The ``backend`` fixture names the database, so ``backend == "postgresql"`` and
``@pytest.mark.backends("postgresql")`` hold for both PostgreSQL drivers; a marker may
also name one target. PostgreSQL and MariaDB are found through
``SQLAUDIT_POSTGRESQL_URL`` and ``SQLAUDIT_MYSQL_URL`` (defaults: the local servers;
their driver is the default target's, the other targets swap in their own). A server
that does not answer skips its tests with the reason, unless
``SQLAUDIT_REQUIRE_DATABASES=1`` (CI) makes that a failure. mysqlclient builds from
source against the MariaDB client headers, so it is not in the ``test`` extra: its
target is skipped when it is not installed (``pip install mysqlclient``).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, create_engine, event, make_url, text
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from sqlaudit import _registry
from sqlaudit.config import SQLAuditConfig, clear_config, set_config
from sqlaudit.hooks import _forget_decision, register_hooks, unregister_hooks
from sqlaudit.triggers import install_triggers

BACKEND_URLS = {
    "postgresql": os.environ.get(
        "SQLAUDIT_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("SQLAUDIT_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
BACKENDS = ["sqlite", "postgresql", "mariadb"]
REQUIRE_DATABASES = os.environ.get("SQLAUDIT_REQUIRE_DATABASES") == "1"


@dataclass(frozen=True)
class Target:
    """A database reached through one driver: what an integration test runs on."""

    name: str
    backend: str
    driver: str | None  # SQLAlchemy's driver name; None: the one in the backend's URL
    async_driver: str
    module: str  # the driver's import name, to tell "not installed" from "not answering"
    optional: bool = False  # not in the ``test`` extra: skipped, never failed, when missing

    def url(self, directory: Path) -> str:
        """Return the sync URL (SQLite: a file in ``directory``)."""
        if self.backend == "sqlite":
            return f"sqlite:///{directory / 'sqlaudit-tests.db'}"
        url = make_url(BACKEND_URLS[self.backend])
        if self.driver is not None:
            url = url.set(drivername=f"{url.get_backend_name()}+{self.driver}")
        return url.render_as_string(hide_password=False)

    def async_url(self, engine: Engine) -> str:
        """Return the URL of ``engine`` with this target's async driver."""
        url = engine.url.set(drivername=f"{engine.url.get_backend_name()}+{self.async_driver}")
        return url.render_as_string(hide_password=False)


TARGETS = {
    target.name: target
    for target in (
        Target("sqlite", "sqlite", None, "aiosqlite", "sqlite3"),
        Target("postgresql", "postgresql", None, "asyncpg", "psycopg"),
        Target("postgresql-psycopg2", "postgresql", "psycopg2", "psycopg_async", "psycopg2"),
        Target("mariadb", "mariadb", None, "aiomysql", "pymysql"),
        Target("mariadb-mysqlclient", "mariadb", "mysqldb", "aiomysql", "MySQLdb", optional=True),
    )
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Honour ``@pytest.mark.backends(...)``: skip targets whose database (or name) is not listed."""
    for item in items:
        marker = item.get_closest_marker("backends")
        callspec = getattr(item, "callspec", None)
        if marker is None or callspec is None or "target" not in callspec.params:
            continue
        target = TARGETS[callspec.params["target"]]
        if target.backend not in marker.args and target.name not in marker.args:
            item.add_marker(pytest.mark.skip(reason=f"runs on {', '.join(marker.args)} only"))
    for item in items:
        marker = item.get_closest_marker("capture_modes")
        callspec = getattr(item, "callspec", None)
        if marker is None or callspec is None or "capture" not in callspec.params:
            continue
        if callspec.params["capture"] not in marker.args:
            reason = marker.kwargs.get("reason", "")
            item.add_marker(
                pytest.mark.skip(reason=f"{', '.join(marker.args)} capture only: {reason}")
            )


@pytest.fixture(scope="session", params=list(TARGETS))
def target(request: pytest.FixtureRequest) -> Target:
    """The database and driver the test runs on."""
    return TARGETS[request.param]


@pytest.fixture(scope="session")
def backend(target: Target) -> str:
    """The name of the database backend the test runs on (whatever the driver)."""
    return target.backend


@pytest.fixture(scope="session")
def _engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Engine | str]]:
    engines: dict[str, Engine | str] = {}
    yield engines
    for engine in engines.values():
        if isinstance(engine, Engine):
            engine.dispose()


def _make_engine(target: Target, directory: Path) -> Engine | str:
    if importlib.util.find_spec(target.module) is None:
        return f"{target.name}: the driver {target.module} is not installed"
    if target.backend == "sqlite":
        return create_engine(target.url(directory))
    engine = create_engine(target.url(directory), pool_pre_ping=True)
    try:
        with engine.connect() as connection:
            connection.execute(text("select 1"))
    except Exception as exc:
        engine.dispose()
        return (
            f"{target.name} at {engine.url.render_as_string(hide_password=True)} "
            f"does not answer: {exc}"
        )
    return engine


@pytest.fixture
def engine(
    target: Target,
    _engines: dict[str, Engine | str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Engine]:
    """An engine on the target, with no tables left over from other tests."""
    if target.name not in _engines:
        _engines[target.name] = _make_engine(target, tmp_path_factory.mktemp(target.name))
    made = _engines[target.name]
    if isinstance(made, str):
        if REQUIRE_DATABASES and not target.optional:
            pytest.fail(f"SQLAUDIT_REQUIRE_DATABASES=1 but {made}")
        pytest.skip(made)
    _drop_everything(made)
    yield made
    _drop_everything(made)


def _drop_everything(engine: Engine) -> None:
    if engine.dialect.name == "postgresql":
        # A partitioned table first: dropping it drops its partitions, which
        # drop_all would otherwise try to drop again.
        with engine.begin() as connection:
            for name in connection.exec_driver_sql(
                "SELECT relname FROM pg_class WHERE relkind = 'p' "
                "AND relnamespace = current_schema()::regnamespace"
            ).scalars():
                connection.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}" CASCADE')
    metadata = MetaData()
    metadata.reflect(engine)
    metadata.drop_all(engine)


@pytest.fixture(autouse=True)
def _clean_world() -> Iterator[None]:
    """Every test starts and ends with no config, no hooks and no tracked models."""
    clear_config()
    unregister_hooks()
    _forget_decision()
    _registry.reset()
    yield
    clear_config()
    unregister_hooks()
    _forget_decision()
    _registry.reset()


@pytest.fixture
def base() -> type[DeclarativeBase]:
    """A fresh declarative base, so each test declares its own models."""

    class Base(DeclarativeBase):
        pass

    return Base


@dataclass
class Audit:
    """A configured sqlaudit on one engine, with a settable current user."""

    engine: Engine
    base: type[DeclarativeBase]
    user: Any = None
    capture: str = "session"
    config: SQLAuditConfig = field(init=False)
    Session: sessionmaker[Session] = field(init=False)

    def __post_init__(self) -> None:
        self.Session = sessionmaker(self.engine, expire_on_commit=True)

    def configure(self, **options: Any) -> SQLAuditConfig:
        options.setdefault("get_user_id_callback", lambda: self.user)
        options.setdefault("capture", self.capture)
        options.setdefault("time_zone", "UTC")
        self.config = SQLAuditConfig(session_factory=self.Session, **options)
        set_config(self.config)
        register_hooks()
        return self.config

    def create_tables(self) -> None:
        """Create the models' tables (and, in database capture, install their triggers)."""
        self.base.metadata.create_all(self.engine)
        if _registry.database_capture_in_use():
            install_triggers(self.engine)

    def rows(self) -> list[Any]:
        """Every raw change row, oldest first."""
        table = self.config.table
        with self.engine.connect() as connection:
            return list(connection.execute(table.select().order_by(table.c.id)))


@pytest.fixture
def capture() -> str:
    """How tracked models are captured; a module overrides it to run in both modes."""
    return "session"


@pytest.fixture
def audit(engine: Engine, base: type[DeclarativeBase], capture: str) -> Audit:
    """sqlaudit configured on ``engine`` (time zone UTC, user from ``audit.user``), hooks on.

    Declare models on ``base``, then call ``audit.create_tables()``.
    """
    result = Audit(engine=engine, base=base, capture=capture)
    result.configure()
    return result


@dataclass
class StatementCounter:
    """Counts the statements an engine runs (an executemany counts once)."""

    statements: list[tuple[str, bool]] = field(default_factory=list)

    def __call__(
        self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool
    ) -> None:
        self.statements.append((statement, executemany))

    def matching(self, predicate: Callable[[str], bool]) -> list[tuple[str, bool]]:
        return [item for item in self.statements if predicate(item[0])]


@pytest.fixture
def count_statements(engine: Engine) -> Iterator[StatementCounter]:
    """Record every statement sent to the database during the test."""
    counter = StatementCounter()
    event.listen(engine, "before_cursor_execute", counter)
    yield counter
    event.remove(engine, "before_cursor_execute", counter)
