"""Shared fixtures: one database fixture over SQLite, PostgreSQL and MariaDB, and a clean world per test.

PostgreSQL and MariaDB are found through ``SQLAUDIT_POSTGRESQL_URL`` and
``SQLAUDIT_MYSQL_URL`` (defaults: the local servers). A server that does not answer
skips its tests with the reason, unless ``SQLAUDIT_REQUIRE_DATABASES=1`` (CI) makes
that a failure.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, create_engine, event, text
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from sqlaudit import _registry
from sqlaudit.config import SQLAuditConfig, clear_config, set_config
from sqlaudit.hooks import register_hooks, unregister_hooks

BACKEND_URLS = {
    "postgresql": os.environ.get(
        "SQLAUDIT_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("SQLAUDIT_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
BACKENDS = ["sqlite", "postgresql", "mariadb"]
REQUIRE_DATABASES = os.environ.get("SQLAUDIT_REQUIRE_DATABASES") == "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Honour ``@pytest.mark.backends(...)`` by deselecting other backends' parameters."""
    for item in items:
        marker = item.get_closest_marker("backends")
        callspec = getattr(item, "callspec", None)
        if marker is None or callspec is None or "backend" not in callspec.params:
            continue
        if callspec.params["backend"] not in marker.args:
            item.add_marker(pytest.mark.skip(reason=f"runs on {', '.join(marker.args)} only"))


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the database backend the test runs on."""
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def _engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Engine | str]]:
    engines: dict[str, Engine | str] = {}
    yield engines
    for engine in engines.values():
        if isinstance(engine, Engine):
            engine.dispose()


def _make_engine(backend: str, directory: Path) -> Engine | str:
    if backend == "sqlite":
        return create_engine(f"sqlite:///{directory / 'sqlaudit-tests.db'}")
    url = BACKEND_URLS[backend]
    engine = create_engine(url, pool_pre_ping=True)
    try:
        with engine.connect() as connection:
            connection.execute(text("select 1"))
    except Exception as exc:
        engine.dispose()
        return (
            f"{backend} at {engine.url.render_as_string(hide_password=True)} does not answer: {exc}"
        )
    return engine


@pytest.fixture
def engine(
    backend: str,
    _engines: dict[str, Engine | str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Engine]:
    """An engine on the backend, with no tables left over from other tests."""
    if backend not in _engines:
        _engines[backend] = _make_engine(backend, tmp_path_factory.mktemp(backend))
    made = _engines[backend]
    if isinstance(made, str):
        if REQUIRE_DATABASES:
            pytest.fail(f"SQLAUDIT_REQUIRE_DATABASES=1 but {made}")
        pytest.skip(made)
    _drop_everything(made)
    yield made
    _drop_everything(made)


def _drop_everything(engine: Engine) -> None:
    metadata = MetaData()
    metadata.reflect(engine)
    metadata.drop_all(engine)


@pytest.fixture(autouse=True)
def _clean_world() -> Iterator[None]:
    """Every test starts and ends with no config, no hooks and no tracked models."""
    clear_config()
    unregister_hooks()
    _registry.reset()
    yield
    clear_config()
    unregister_hooks()
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
    config: SQLAuditConfig = field(init=False)
    Session: sessionmaker[Session] = field(init=False)

    def __post_init__(self) -> None:
        self.Session = sessionmaker(self.engine, expire_on_commit=True)

    def configure(self, **options: Any) -> SQLAuditConfig:
        options.setdefault("get_user_id_callback", lambda: self.user)
        options.setdefault("time_zone", "UTC")
        self.config = SQLAuditConfig(session_factory=self.Session, **options)
        set_config(self.config)
        register_hooks()
        return self.config

    def create_tables(self) -> None:
        self.base.metadata.create_all(self.engine)

    def rows(self) -> list[Any]:
        """Every raw change row, oldest first."""
        table = self.config.table
        with self.engine.connect() as connection:
            return list(connection.execute(table.select().order_by(table.c.id)))


@pytest.fixture
def audit(engine: Engine, base: type[DeclarativeBase]) -> Audit:
    """sqlaudit configured on ``engine`` (time zone UTC, user from ``audit.user``), hooks on.

    Declare models on ``base``, then call ``audit.create_tables()``.
    """
    result = Audit(engine=engine, base=base)
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
