"""Start-up mistakes are not silent: hooks never registered, a bare ``@track_table``, a sync FastAPI dependency.

No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations at run time.
"""

import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Header
from fastapi.testclient import TestClient
from sqlalchemy import String
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from sqlaudit import (
    AuditContextWarning,
    HooksNotRegisteredWarning,
    TrackingError,
    audit_context,
    get_resource_changes,
    register_hooks,
    set_session_context,
    track_table,
    unregister_hooks,
)
from sqlaudit.config import SQLAuditConfig, set_config


def declare_customer(base: Any) -> type[Any]:
    """Declare a ``Customer`` (id, name, email) tracked with a bare ``@track_table``."""

    @track_table
    class Customer(base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(100))
        email: Mapped[str | None] = mapped_column(String(100))

    return Customer


def test_bare_track_table_tracks_every_column_but_the_key(audit):
    """``@track_table`` without parentheses records every column except the primary key."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    with audit.Session() as session:
        session.add(Customer(id=1, name="Ann", email="ann@example.com"))
        session.commit()
    assert sorted(row.field_name for row in audit.rows()) == ["email", "name"]


def test_track_table_with_a_positional_list_says_to_use_the_keyword(base):
    """``@track_table(["name"])`` raises a TrackingError showing the keyword form."""
    with pytest.raises(TrackingError, match=r"@track_table\(tracked_fields=\['name'\]\)"):

        @track_table(["name"])  # type: ignore[call-overload]
        class Customer(base):
            __tablename__ = "customers"
            id: Mapped[int] = mapped_column(primary_key=True)
            name: Mapped[str] = mapped_column(String(100))


def configure_without_hooks(engine: Any) -> sessionmaker[Session]:
    """Configure sqlaudit on ``engine`` but never call ``register_hooks()``."""
    Session_ = sessionmaker(engine)
    set_config(SQLAuditConfig(session_factory=Session_, get_user_id_callback=lambda: 1))
    return Session_


def test_flushing_a_tracked_model_without_hooks_warns(engine, base):
    """A flush of a tracked model while ``register_hooks()`` was never called warns, naming the model and the fix."""
    Customer = declare_customer(base)
    base.metadata.create_all(engine)
    Session_ = configure_without_hooks(engine)
    with Session_() as session:
        session.add(Customer(id=1, name="Ann"))
        with pytest.warns(
            HooksNotRegisteredWarning, match=r"Customer is tracked.*register_hooks\(\)"
        ):
            session.commit()


def test_no_warning_once_hooks_are_registered_or_deliberately_off(engine, base):
    """After ``register_hooks()``, or a deliberate ``unregister_hooks()``, no warning is given."""
    Customer = declare_customer(base)
    base.metadata.create_all(engine)
    Session_ = configure_without_hooks(engine)
    unregister_hooks()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Session_() as session:
            session.add(Customer(id=1, name="Ann"))
            session.commit()
        register_hooks()
        with Session_() as session:
            session.add(Customer(id=2, name="Bob"))
            session.commit()
    assert [c.resource_id for c in get_resource_changes(Customer)] == ["2"]


def test_no_warning_for_untracked_models(engine, base):
    """A flush of untracked models only does not warn, even with hooks never registered."""
    declare_customer(base)

    class Note(base):
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(primary_key=True)

    base.metadata.create_all(engine)
    Session_ = configure_without_hooks(engine)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Session_() as session:
            session.add(Note(id=1))
            session.commit()


# --- FastAPI: a sync dependency cannot hold the request's context -------------------------


def build_app(audit: Any, dependency: Any, Customer: Any) -> FastAPI:
    """An app whose POST creates a customer, with ``dependency`` on every request."""

    def get_db(x_user_id: Annotated[str | None, Header()] = None) -> Iterator[Session]:
        with audit.Session() as session:
            yield session

    app = FastAPI(dependencies=[Depends(dependency)] if dependency else [])

    @app.post("/customers/{customer_id}")
    def create(customer_id: int, db: Annotated[Session, Depends(get_db)]) -> None:
        db.add(Customer(id=customer_id, name="Ann"))
        db.commit()

    return app


def test_a_sync_dependency_that_opens_audit_context_is_detected(audit):
    """A ``def`` dependency entering ``audit_context`` records no user, and leaving it warns with the fix."""
    Customer = declare_customer(audit.base)
    audit.create_tables()

    def sync_dependency(x_user_id: Annotated[str, Header()]) -> Iterator[None]:
        with audit_context(user_id=x_user_id):
            yield

    with (
        TestClient(build_app(audit, sync_dependency, Customer)) as client,
        pytest.warns(AuditContextWarning, match="async def"),
    ):
        response = client.post("/customers/1", headers={"X-User-Id": "alice"})
    assert response.status_code == 200, response.text
    assert [row.changed_by for row in audit.rows()] == [None]


def test_the_documented_fixes_record_the_user(audit):
    """An ``async def`` dependency, or ``set_session_context`` in a sync ``get_db``, records the request's user."""
    Customer = declare_customer(audit.base)
    audit.create_tables()

    async def async_dependency(x_user_id: Annotated[str, Header()]) -> AsyncIterator[None]:
        async with audit_context(user_id=x_user_id):
            yield

    with TestClient(build_app(audit, async_dependency, Customer)) as client:
        assert client.post("/customers/1", headers={"X-User-Id": "alice"}).status_code == 200

    app = FastAPI()

    def get_db(x_user_id: Annotated[str, Header()]) -> Iterator[Session]:
        with audit.Session() as session:
            set_session_context(session, user_id=x_user_id)
            yield session

    @app.post("/customers/{customer_id}")
    def create(customer_id: int, db: Annotated[Session, Depends(get_db)]) -> None:
        db.add(Customer(id=customer_id, name="Bob"))
        db.commit()

    with TestClient(app) as client:
        assert client.post("/customers/2", headers={"X-User-Id": "bob"}).status_code == 200
    assert [(row.resource_id, row.changed_by) for row in audit.rows()] == [
        ("1", "alice"),
        ("2", "bob"),
    ]
