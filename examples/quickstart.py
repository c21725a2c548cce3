"""The README quick start, on an SQLite file (examples/quickstart.db).

Run: python examples/quickstart.py
"""

from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import ForeignKey, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from sqlaudit import (
    SQLAuditConfig,
    get_resource_changes,
    register_hooks,
    set_config,
    track_table,
)

# An SQLite file next to this script, new on every run
DATABASE_FILE = Path(__file__).with_name("quickstart.db")
DATABASE_FILE.unlink(missing_ok=True)
engine = create_engine(f"sqlite:///{DATABASE_FILE}")
SessionLocal = sessionmaker(bind=engine)


def get_db() -> Iterator[Session]:
    """Give a Session and close it afterwards (FastAPI's dependency style)."""
    with SessionLocal() as db:
        yield db


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    user_id: Mapped[int] = mapped_column(primary_key=True)


current_user = User()


def current_user_id() -> int:
    """Who is making the changes; in a web app, the logged-in user."""
    return current_user.user_id


set_config(
    SQLAuditConfig(
        session_factory=get_db,
        user_model=User,
        user_model_user_id_field="user_id",
        get_user_id_callback=current_user_id,
        time_zone="UTC",
    )
)


@track_table(tracked_fields=["name", "email", "user_id"], table_label="Customer")
class Customer(Base):
    __tablename__ = "customers"
    customer_id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.user_id"))


register_hooks()

if __name__ == "__main__":
    Base.metadata.create_all(engine)
    with SessionLocal() as session:
        session.add(current_user)
        session.commit()

        john = Customer(name="John Doe", email="jdoe@example.com", user_id=current_user.user_id)
        session.add(john)
        session.commit()
        print(f"Customer {john.customer_id} added with name {john.name} and email {john.email}.")

        jane = Customer(name="Jane Doe", email="jane@example.com", user_id=current_user.user_id)
        session.add(jane)
        session.commit()
        print(f"Customer {jane.customer_id} added with name {jane.name} and email {jane.email}.")

        jane.name = "Jane Smith"
        session.commit()

        for change in get_resource_changes(
            model_class=Customer, session=session, filter_resource_ids=jane.customer_id
        ):
            print(
                f"FIELD: '{change.field_name}' CHANGED AT {change.timestamp} "
                f"TO {change.new_value} (OLD: {change.old_value}) BY USER ID {change.changed_by}"
            )
