"""The recovery tutorial (docs/recovery.md), step by step: back up, lose, restore, replay, rebuild.

A mistaken statement wipes a table. The backup taken earlier is restored into a second
database (a file copy on SQLite, ``pg_dump | psql`` on PostgreSQL, ``mariadb-dump |
mariadb`` on MariaDB), the query log replays every write made after the backup and
before the mistake, and the restored tables equal the lost ones, row checksum for row
checksum. Then ``rebuild_table`` rebuilds the wiped table from the change log alone.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import Audit
from querylog_support import checksum, clean, second_url
from sqlalchemy import Integer, String, create_engine, func, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from sqlaudit import audit_context, track_table
from sqlaudit.querylog import log_queries, rebuild_table, replay

TABLES = ["customers", "notes", "sqlaudit_changes"]


def take_backup(engine: Engine, directory: Path) -> Path:
    """Back the database up: a file copy on SQLite, a dump on the servers."""
    url = engine.url
    backend = url.get_backend_name()
    if backend == "sqlite":
        backup = directory / "backup.db"
        engine.dispose()
        shutil.copyfile(str(url.database), backup)
        return backup
    backup = directory / "backup.sql"
    tool = "pg_dump" if backend == "postgresql" else "mariadb-dump"
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    host = url.host or "127.0.0.1"
    if backend == "postgresql":
        command = [tool, "-h", host, "-U", url.username or "postgres", "--no-owner"]
        command += ["-d", str(url.database)]
    else:
        command = [tool, f"-h{host}", f"-u{url.username or 'root'}", str(url.database)]
    with backup.open("wb") as out:
        subprocess.run(command, stdout=out, check=True)
    return backup


def restore_backup(backup: Path, engine: Engine, directory: Path) -> Engine:
    """Restore the backup into a second, empty database and return its engine."""
    url = second_url(engine, directory)
    restored = create_engine(url)
    if engine.url.get_backend_name() == "sqlite":
        restored.dispose()
        shutil.copyfile(backup, str(restored.url.database))
        return restored
    clean(restored)
    if restored.dialect.name == "postgresql":
        # Functions and types left by an earlier restore are not tables: start empty.
        with restored.begin() as connection:
            connection.execute(text("drop schema public cascade"))
            connection.execute(text("create schema public"))
    target = restored.url
    host = target.host or "127.0.0.1"
    if target.get_backend_name() == "postgresql":
        command = ["psql", "-q", "-v", "ON_ERROR_STOP=1", "-h", host]
        command += ["-U", target.username or "postgres", "-d", str(target.database)]
    else:
        command = ["mariadb", f"-h{host}", f"-u{target.username or 'root'}", str(target.database)]
    with backup.open("rb") as dump:
        subprocess.run(command, stdin=dump, check=True, stdout=subprocess.DEVNULL)
    return restored


@pytest.fixture
def restored_engines() -> Iterator[list[Engine]]:
    """Engines the test opens on the restored database, emptied and closed after it."""
    engines: list[Engine] = []
    yield engines
    for engine in engines:
        clean(engine)
        engine.dispose()


def test_recovery_tutorial(
    audit: Audit, tmp_path: Path, restored_engines: list[Engine], target: Any
) -> None:
    """Restore a backup, replay the log up to the mistake: the tables equal the lost ones."""
    if target.name == "mariadb-mysqlclient":
        pytest.skip("the tutorial runs once per database")

    @track_table(tracked_fields=["name", "email", "tier"])
    class Customer(audit.base):  # type: ignore[name-defined,misc]
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(100))
        email: Mapped[str | None] = mapped_column(String(100))
        tier: Mapped[int] = mapped_column(Integer, default=0)

    class Note(audit.base):  # type: ignore[name-defined,misc]
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(primary_key=True)
        body: Mapped[str] = mapped_column(String(200))

    engine = audit.engine
    # 1. The application runs with the query log on, and a first customer exists.
    audit.create_tables()
    log = log_queries(of=engine)
    try:
        with audit.Session() as session:
            session.add(Customer(name="Ada", email="ada@example.com"))
            session.commit()

        # 2. The nightly backup.
        backup = take_backup(engine, tmp_path)

        # 3. A day of work: the ORM, a bulk statement, raw SQL.
        with audit_context(user_id=7, reason="onboarding"), audit.Session() as session:
            session.add_all(
                [Customer(name=f"customer {n}", email=f"c{n}@example.com") for n in range(20)]
            )
            session.commit()
            ada = session.scalars(select(Customer).where(Customer.name == "Ada")).one()
            ada.email = "ada@lovelace.example"
            session.delete(
                session.scalars(select(Customer).where(Customer.name == "customer 3")).one()
            )
            session.commit()
            session.execute(update(Customer).where(Customer.id > 10).values(tier=2))
            session.commit()
        with engine.begin() as connection:
            connection.execute(text("insert into notes (id, body) values (1, 'call Ada back')"))
            connection.execute(text("insert into notes (id, body) values (2, 'send invoice')"))
            connection.execute(text("update notes set body = 'invoice sent' where id = 2"))
        lost = {name: checksum(engine, name) for name in TABLES}

        # 4. The mistake: a statement wipes the customers.
        mistake = datetime.now(UTC)
        with engine.begin() as connection:
            connection.execute(text("delete from customers"))
    finally:
        log.remove()
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(Customer)).scalar_one() == 0

    # 5. Restore the backup into a second database, and replay what came after it.
    restored = restore_backup(backup, engine, tmp_path)
    restored_engines.append(restored)
    result = replay(engine, restored, until=mistake)
    assert result.count > 0 and result.skipped > 0  # the backup's own transactions skipped
    assert {name: checksum(restored, name) for name in TABLES} == lost

    # 6. Or, with no backup at all: rebuild the customers from the change log.
    clean(restored)
    rebuilt = rebuild_table(Customer, at=mistake, target=restored)
    assert rebuilt.rows_written == 20 and rebuilt.incomplete == ()
    assert checksum(restored, "customers") == lost["customers"]
