"""Helpers shared by the operations tests: a tracked Customer and fast change rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from sqlaudit import track_table
from sqlaudit._schema import write_changes
from sqlaudit.config import SQLAuditConfig

OLD = datetime(2020, 1, 1, tzinfo=UTC)


def declare_customer(base: Any) -> type[Any]:
    """Declare a tracked ``Customer`` (id, name, email) on ``base``."""

    @track_table(tracked_fields=["name", "email"])
    class Customer(base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(100))
        email: Mapped[str | None] = mapped_column(String(100))

    return Customer


def add_rows(
    engine: Engine,
    config: SQLAuditConfig,
    count: int,
    *,
    at: datetime = OLD,
    table_name: str = "customers",
    chunk: int = 2000,
    start: int = 0,
) -> None:
    """Write ``count`` change rows (one per resource, ``at`` plus a second each) directly."""
    for first in range(start, start + count, chunk):
        rows = [
            (
                str(uuid.uuid4()),
                table_name,
                "Customer",
                str(n),
                "name",
                "insert",
                None,
                f"str:name {n}",
                "7",
                at + timedelta(seconds=n),
                None,
            )
            for n in range(first, min(first + chunk, start + count))
        ]
        with engine.begin() as connection:
            write_changes(connection, config.table, rows)
