"""The demo shop both admin examples show: tracked models and a few days of changes.

``admin_sqladmin.py`` and ``admin_flask.py`` import it; on its own it does nothing.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Numeric, String, Text, create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool

from sqlaudit import SQLAuditConfig, audit_context, register_hooks, set_config, track_table


class Base(DeclarativeBase):
    pass


@track_table(tracked_fields=["name", "email", "tier", "notes", "prefs"], table_label="Customer")
class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(200))
    tier: Mapped[str] = mapped_column(String(20), default="basic")
    notes: Mapped[str | None] = mapped_column(Text)
    prefs: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    def __str__(self) -> str:
        return self.name


@track_table(tracked_fields=["status", "total", "customer_id"], table_label="Order")
class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    status: Mapped[str] = mapped_column(String(20), default="new")
    total: Mapped[Decimal] = mapped_column(Numeric(10, 2))


class Product(Base):  # not tracked: it has no history pages
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))


FIELD_LABELS = {Customer: {"email": "E-mail", "prefs": "Preferences"}, Order: {"total": "Total"}}


def setup() -> tuple[Engine, sessionmaker[Session]]:
    """Create an in-memory SQLite database, configure sqlaudit on it, and write the demo data."""
    engine = create_engine(
        "sqlite://", connect_args={"check_same_thread": False}, poolclass=StaticPool
    )
    Base.metadata.create_all(engine)
    factory = sessionmaker(engine)
    set_config(SQLAuditConfig(session_factory=factory, time_zone="UTC"))
    register_hooks()
    seed(factory)
    return engine, factory


def seed(factory: sessionmaker[Session]) -> None:
    """Write a few customers and orders, then change them as different users."""
    with audit_context(user_id="alice", reason="signup"), factory() as session:
        session.add_all(
            [
                Customer(id=1, name="Ada Lovelace", email="ada@example.com"),
                Customer(id=2, name="Grace Hopper", email="grace@example.com", tier="gold"),
                Customer(id=3, name="Alan Turing", email=None),
                Product(id=1, title="Analytical engine"),
            ]
        )
        session.commit()
    with audit_context(user_id="bob"), factory() as session:
        session.add_all(
            [
                Order(id=100, customer_id=1, total=Decimal("129.90")),
                Order(id=101, customer_id=2, total=Decimal("15.00")),
            ]
        )
        session.commit()
    with audit_context(user_id="carol", reason="support ticket 42"), factory() as session:
        ada = session.get(Customer, 1)
        assert ada is not None
        ada.tier = "gold"
        ada.notes = (
            "Called about the invoice of order 100. Asked for a copy by e-mail and for the "
            "delivery to go to the office address from now on. <b>Markup</b> stays text."
        )
        ada.prefs = {"newsletter": True, "language": "en", "channels": ["email", "phone"]}
        session.commit()
    with audit_context(user_id="bob"), factory() as session:
        order = session.get(Order, 100)
        assert order is not None
        order.status = "paid"
        session.commit()
    with audit_context(user_id="carol"), factory() as session:
        ada = session.get(Customer, 1)
        assert ada is not None
        ada.email = "ada.lovelace@example.com"
        session.commit()
    with audit_context(user_id="dave", reason="import"), factory() as session:
        alan = session.get(Customer, 3)
        assert alan is not None
        alan.name = "<script>alert('never runs')</script>"
        session.commit()
