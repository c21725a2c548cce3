"""Scales and database URLs.

The server URLs can be overridden with ``SQLAUDIT_BENCH_POSTGRESQL_URL`` and
``SQLAUDIT_BENCH_MYSQL_URL``; SQLite uses files in a work directory
(``--workdir``, by default ``$TMPDIR/sqlaudit-bench``).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DATABASES",
    "FULL",
    "QUICK",
    "Scale",
    "database_url",
    "default_workdir",
]

DATABASES = ("sqlite", "postgresql", "mariadb")

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
