"""The benchmark table: ``bench_item``, six columns besides the key, four of them tracked.

Columns: ``name`` (str), ``sku`` (str), ``quantity`` (int), ``price`` (Decimal),
``active`` (bool) and ``created_at`` (datetime); the tracked fields are ``name``,
``quantity``, ``price`` and ``active``. Every process declares it afresh on a
Base of its own, after its contestant has had the chance to set itself up (the
peers must be configured before models are declared).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Numeric, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["TABLE", "TRACKED", "UNTRACKED", "declare_item", "item_values"]

TABLE = "bench_item"
TRACKED = ("name", "quantity", "price", "active")
UNTRACKED = ("sku", "created_at")

_EPOCH = datetime(2026, 1, 1, 8, 0, 0)


def declare_item(versioned: dict[str, Any] | None = None) -> tuple[type[Any], type[Any]]:
    """Declare ``Item`` on a new Base; return ``(Base, Item)``.

    ``versioned``: the ``__versioned__`` options of SQLAlchemy-Continuum/-History.
    """

    class Base(DeclarativeBase):
        """A Base for this process only."""

    class Item(Base):
        """One row of the benchmark table."""

        __tablename__ = TABLE
        if versioned is not None:
            __versioned__ = versioned

        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
        name: Mapped[str] = mapped_column(String(100))
        sku: Mapped[str] = mapped_column(String(40))
        quantity: Mapped[int]
        price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
        active: Mapped[bool]
        created_at: Mapped[datetime]

    return Base, Item


def item_values(i: int) -> dict[str, Any]:
    """Return the column values of the ``i``-th object (deterministic)."""
    return {
        "name": f"Item number {i}",
        "sku": f"SKU-{i:08d}",
        "quantity": i % 1000,
        "price": Decimal(i % 100_000) / 100 + Decimal("0.99"),
        "active": i % 3 != 0,
        "created_at": _EPOCH + timedelta(seconds=i),
    }
