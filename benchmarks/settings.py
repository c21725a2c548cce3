"""Scales, database URLs and the targets: a database reached through one driver.

The server URLs can be overridden with ``SQLAUDIT_BENCH_POSTGRESQL_URL`` and
``SQLAUDIT_BENCH_MYSQL_URL`` (their driver is replaced by each target's); SQLite
uses files in a work directory (``--workdir``, by default ``$TMPDIR/sqlaudit-bench``).

A target is named ``database`` (its default driver: sqlite3, psycopg 3, PyMySQL)
or ``database:driver``; async drivers run the same ORM workloads in SQLAlchemy's
greenlet adaptation, as ``AsyncSession`` does.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

__all__ = [
    "DATABASES",
    "FULL",
    "QUICK",
    "TARGETS",
    "Scale",
    "Target",
    "database_url",
    "default_workdir",
]

DATABASES = ("sqlite", "postgresql", "mariadb")


@dataclass(frozen=True, slots=True)
class Target:
    """A database reached through one driver."""

    name: str  # "postgresql:psycopg2"; a database's default driver: just "postgresql"
    database: str
    driver: str  # the driver's own name, as the report shows it
    dialect_driver: str  # SQLAlchemy's name for it, in the URL
    module: str  # its import name
    is_async: bool = False

    @property
    def is_default(self) -> bool:
        """Whether this is its database's default driver (the peers and R1 run only there)."""
        return self.name == self.database

    def installed(self) -> bool:
        """Whether the driver can be imported here."""
        return importlib.util.find_spec(self.module) is not None

    def url(self, workdir: Path, *, name: str = "bench") -> str:
        """Return the SQLAlchemy URL of this target (SQLite: the file ``name``.db)."""
        base = make_url(database_url(self.database, workdir, name=name))
        url = base.set(drivername=f"{base.get_backend_name()}+{self.dialect_driver}")
        return url.render_as_string(hide_password=False)

    def setup_url(self, workdir: Path, *, name: str = "bench") -> str:
        """Return a sync URL of the same database, for the untimed setup and the checks."""
        if not self.is_async:
            return self.url(workdir, name=name)
        return TARGETS[self.database].url(workdir, name=name)


TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target("sqlite", "sqlite", "sqlite3", "pysqlite", "sqlite3"),
        Target("sqlite:aiosqlite", "sqlite", "aiosqlite", "aiosqlite", "aiosqlite", True),
        Target("postgresql", "postgresql", "psycopg", "psycopg", "psycopg"),
        Target("postgresql:psycopg2", "postgresql", "psycopg2", "psycopg2", "psycopg2"),
        Target("postgresql:asyncpg", "postgresql", "asyncpg", "asyncpg", "asyncpg", True),
        Target("mariadb", "mariadb", "PyMySQL", "pymysql", "pymysql"),
        Target("mariadb:aiomysql", "mariadb", "aiomysql", "aiomysql", "aiomysql", True),
        Target("mariadb:mysqlclient", "mariadb", "mysqlclient", "mysqldb", "MySQLdb"),
    )
}

_DEFAULT_URLS = {
    "postgresql": (
        "SQLAUDIT_BENCH_POSTGRESQL_URL",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test_bench",
    ),
    "mariadb": ("SQLAUDIT_BENCH_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test_bench"),
}


@dataclass(frozen=True, slots=True)
class Scale:
    """How big each workload is."""

    name: str
    objects: int  # W1 inserts, W2 updates, W5 bulk update
    batch: int  # commit every `batch` objects (W1, W2, W4)
    single_commits: int  # W3: one object per transaction
    deletes: int  # W4
    lookups: int  # R1: resources read, one at a time
    r1_sizes: tuple[int, ...]  # R1: rows in the change table

    def as_dict(self) -> dict[str, Any]:
        """Return the scale as plain JSON-able data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scale:
        """Rebuild a scale from :meth:`as_dict`."""
        return cls(**{**data, "r1_sizes": tuple(data["r1_sizes"])})


FULL = Scale("full", 10_000, 100, 1_000, 2_000, 200, (100_000, 1_000_000))
QUICK = Scale("quick", 2_000, 100, 200, 400, 100, (20_000, 200_000))


def default_workdir() -> Path:
    """Return the directory for the SQLite files."""
    return Path(tempfile.gettempdir()) / "sqlaudit-bench"


def database_url(database: str, workdir: Path, *, name: str = "bench") -> str:
    """Return the SQLAlchemy URL of ``database`` (SQLite: the file ``name``.db)."""
    if database == "sqlite":
        return f"sqlite:///{workdir / (name + '.db')}"
    variable, default = _DEFAULT_URLS[database]
    return os.environ.get(variable, default)
