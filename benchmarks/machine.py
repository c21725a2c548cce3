"""What the benchmarks ran on: versions of everything involved and the hardware."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from benchmarks.contestants import CONTESTANTS

__all__ = ["describe", "server_version"]

_ROOT = Path(__file__).resolve().parent.parent


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=_ROOT
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "sqlaudit"],
            capture_output=True,
            text=True,
            cwd=_ROOT,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' (sqlaudit/ modified)' if dirty else ''}" if head else "unknown"


def describe(contestants: list[str]) -> dict[str, Any]:
    """Return the versions and the machine, as JSON-able data."""
    packages = {"Python": platform.python_version(), "SQLAlchemy": _version("SQLAlchemy")}
    for name in contestants:
        contestant = CONTESTANTS[name]
        if contestant.distribution and contestant.distribution not in packages:
            packages[contestant.distribution] = _version(contestant.distribution)
    for distribution in (
        "psycopg",
        "psycopg2-binary",
        "asyncpg",
        "PyMySQL",
        "aiomysql",
        "mysqlclient",
        "aiosqlite",
        "matplotlib",
    ):
        packages[distribution] = _version(distribution)
    packages["SQLite library"] = sqlite3.sqlite_version
    return {
        "packages": packages,
        "sqlaudit_commit": _commit(),
        "machine": {
            "nproc": os.cpu_count(),
            "memory": _memory(),
            "cpu": _cpu_model(),
            "platform": platform.platform(),
        },
    }


def server_version(url: str) -> str:
    """Return the database server's version string (SQLite: the library's)."""
    if url.startswith("sqlite"):
        return f"SQLite {sqlite3.sqlite_version}"
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            version = connection.execute(text("SELECT version()")).scalar_one()
    finally:
        engine.dispose()
    if engine.dialect.name == "postgresql":
        return " ".join(str(version).split()[:2])
    return f"MariaDB {version}" if "mariadb" in str(version).lower() else f"MySQL {version}"
