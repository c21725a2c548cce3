"""A tour of the history API on an in-memory SQLite database.

Run ``python examples/history_tour.py``: it records a few changes, then reads them
back as events, a feed page, states, a diff, and undoes some of them with restore
and revert. ``tests/test_history_docs.py`` runs it.
"""

from datetime import UTC, datetime

from sqlalchemy import ForeignKey, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

from sqlaudit import (
    SQLAuditConfig,
    audit_context,
    diff_resource,
    get_events,
    get_related_states,
    get_resource_events,
    get_resource_state,
    register_hooks,
    restore,
    revert_transaction,
    set_config,
    track_table,
)


class Base(DeclarativeBase):
    pass


@track_table(tracked_fields=["status"])
class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(20))
    lines: Mapped[list["Line"]] = relationship(back_populates="order")


@track_table(tracked_fields=["order_id", "quantity"])
class Line(Base):
    __tablename__ = "order_lines"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    quantity: Mapped[int] = mapped_column()
    order: Mapped[Order | None] = relationship(back_populates="lines")


engine = create_engine("sqlite://")
Base.metadata.create_all(engine)
Session = sessionmaker(engine)
set_config(SQLAuditConfig(session_factory=Session, time_zone="UTC"))
register_hooks()

with audit_context(user_id="alice"), Session() as session:
    session.add(Order(id=7, status="new", lines=[Line(id=1, quantity=2), Line(id=2, quantity=1)]))
    session.commit()
created = datetime.now(UTC)  # a moment between the two transactions
with audit_context(user_id="bob"), Session() as session:
    order = session.get(Order, 7)
    order.status = "paid"
    session.get(Line, 2).order_id = None  # the second line leaves the order
    session.commit()
paid = datetime.now(UTC)

# Events: one per resource per transaction, newest first.
for event in get_resource_events(Order, 7):
    print("event:", event.operation, event.changed_by, dict(event.fields))

# A feed page across models, filtered by user, with a cursor for the next page.
page = get_events(models=[Order, Line], filter_user_ids="bob", limit=1)
print("feed:", [(e.resource_type, e.resource_id) for e in page], "more:", bool(page.next_cursor))
page = get_events(models=[Order, Line], filter_user_ids="bob", limit=1, cursor=page.next_cursor)
print("feed, next page:", [(e.resource_type, e.resource_id) for e in page])

# The order as it was before bob's edit, with the lines that belonged to it then.
state = get_resource_state(Order, 7, at=created)
lines = get_related_states(Order, 7, "lines", at=created)
print("state then:", state.status, dict(state.values), [line.resource_id for line in lines])

# What changed between then and now.
print("diff:", diff_resource(Order, 7, created, paid))

# Undo bob's transaction (audited, in our session; we commit).
with Session() as session:
    bobs = get_resource_events(Order, 7, session=session)[0].transaction_id
    revert_transaction(session, bobs)
    session.commit()
    print("after revert:", session.get(Order, 7).status, session.get(Line, 2).order_id)

# Or set one resource back to a moment.
with Session() as session:
    restore(session, Order, 7, at=paid)
    session.commit()
    print("after restore:", session.get(Order, 7).status)
print("last event:", get_resource_events(Order, 7)[0].reason)
