"""Shared by the history tests: the models, a clock-frozen writer and a busy day of changes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from freezegun import freeze_time
from sqlalchemy import ForeignKey, String, func, select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from sqlaudit import track_table


def at(hour: int, minute: int = 0) -> datetime:
    """Return an aware UTC instant on 15 January 2026."""
    return datetime(2026, 1, 15, hour, minute, tzinfo=UTC)


def declare_models(base: Any) -> tuple[type[Any], type[Any], type[Any]]:
    """Declare a tracked Customer, and an Order with its Lines (tracked ``order_id``)."""

    @track_table(tracked_fields=["name", "email"])
    class Customer(base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str] = mapped_column(String(100))
        email: Mapped[str | None] = mapped_column(String(100))

    @track_table(tracked_fields=["status"])
    class Order(base):
        __tablename__ = "orders"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        status: Mapped[str] = mapped_column(String(20))
        lines: Mapped[list[Line]] = relationship(back_populates="order")

    @track_table(tracked_fields=["order_id", "quantity"])
    class Line(base):
        __tablename__ = "lines"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
        quantity: Mapped[int] = mapped_column()
        order: Mapped[Order | None] = relationship(back_populates="lines")

    return Customer, Order, Line


def write(audit: Any, when: datetime, work: Any, user: Any = 1) -> str:
    """Run ``work(session)`` at ``when`` as ``user``, commit, and return the transaction id."""
    audit.user = user
    with freeze_time(when), audit.Session() as session:
        work(session)
        session.commit()
    table = audit.config.table
    with audit.engine.connect() as connection:
        last = connection.execute(select(func.max(table.c.id))).scalar_one()
        return str(
            connection.execute(select(table.c.transaction_id).where(table.c.id == last)).scalar()
        )


def change_row_count(audit: Any) -> int:
    """Return how many change rows the table holds."""
    with audit.engine.connect() as connection:
        return int(
            connection.execute(select(func.count()).select_from(audit.config.table)).scalar_one()
        )


def busy_day(audit: Any, customer: type[Any], order: type[Any], line: type[Any]) -> None:
    """Three users change customers, orders and lines over the day."""

    def order_with_lines(session: Any) -> None:
        session.add(
            order(id=7, status="new", lines=[line(id=1, quantity=2), line(id=2, quantity=1)])
        )

    write(audit, at(8), lambda s: s.add_all([customer(id=n, name=f"c{n}") for n in (1, 2, 3)]))
    write(audit, at(9), order_with_lines, user=2)
    write(audit, at(10), lambda s: setattr(s.get(order, 7), "status", "paid"), user=3)
    write(audit, at(11), lambda s: setattr(s.get(customer, 2), "email", "two@example.com"))
    write(audit, at(12), lambda s: setattr(s.get(line, 2), "order_id", None), user=2)
    write(audit, at(13), lambda s: setattr(s.get(order, 7), "status", "shipped"), user=3)
