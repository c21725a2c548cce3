"""Helpers shared by the query log and recovery tests: a second database and row checksums."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Integer, MetaData, String, create_engine, make_url, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def second_url(engine: Engine, directory: Path) -> str:
    """Return the URL of a second database next to ``engine``'s (created if missing)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return f"sqlite:///{directory / 'second.db'}"
    name = f"{url.database}b"
    if url.get_backend_name() == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            found = connection.execute(
                text("select 1 from pg_database where datname = :name"), {"name": name}
            ).first()
            if found is None:
                connection.execute(text(f'create database "{name}"'))
    else:
        with engine.connect() as connection:
            connection.execute(text(f"create database if not exists `{name}`"))
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def clean(engine: Engine) -> None:
    """Drop every table of ``engine``'s database."""
    metadata = MetaData()
    metadata.reflect(engine)
    metadata.drop_all(engine)


def second_engine(engine: Engine, directory: Path) -> Iterator[Engine]:
    """Yield an empty second database of ``engine``'s dialect and driver; empty it after."""
    other = create_engine(second_url(engine, directory))
    clean(other)
    try:
        yield other
    finally:
        clean(other)
        other.dispose()


def _normal(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return str(int(value))
    return repr(value)


def checksum(engine: Engine, table_name: str, columns: list[str] | None = None) -> str:
    """Return a SHA-256 over a table's rows (or some of their columns), in key order."""
    metadata = MetaData()
    metadata.reflect(engine, only=[table_name])
    table = metadata.tables[table_name]
    chosen = [table.c[name] for name in columns] if columns else list(table.columns)
    key = list(table.primary_key.columns)
    digest = hashlib.sha256()
    with engine.connect() as connection:
        for row in connection.execute(select(*chosen).order_by(*key)):
            digest.update("|".join(_normal(value) for value in row).encode())
            digest.update(b"\n")
    return digest.hexdigest()


def rows(engine: Engine, table_name: str) -> list[tuple[Any, ...]]:
    """Return a table's rows in key order."""
    metadata = MetaData()
    metadata.reflect(engine, only=[table_name])
    table = metadata.tables[table_name]
    with engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(select(table).order_by(*table.primary_key.columns))
        ]


def eventually(check: Callable[[], bool], what: str, within: float = 60.0) -> None:
    """Poll ``check`` until it holds; fail, saying ``what`` was awaited, after ``within`` s.

    The bound only keeps a broken test from hanging: nothing asserts how fast it holds.
    """
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting, after {within} s, for {what}")
        time.sleep(0.02)


def declare_item(base: type[DeclarativeBase], engine: Engine) -> type[Any]:
    """Declare ``items`` (id given, name) on ``base`` and create it on ``engine``."""

    class Item(base):  # type: ignore[misc,valid-type]
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        name: Mapped[str] = mapped_column(String(50))

    base.metadata.create_all(engine)
    return Item
