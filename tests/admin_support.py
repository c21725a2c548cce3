"""Shared by the admin tests: a tracked Customer, its history, and both admins behind one client."""

from __future__ import annotations

import html
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from freezegun import freeze_time
from sqlalchemy import JSON, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from sqlaudit import audit_context, get_resource_events, track_table

SCRIPT = "<script>window.sqlauditPwned = 1; document.title = 'pwned';</script>"
LONG_NOTE = "A long note. " * 20
FRAMEWORKS = ["sqladmin", "flask_admin"]


def declare_models(base: Any) -> tuple[type[Any], type[Any]]:
    """Declare a tracked Customer (text, long text, JSON, bytes) and a tracked Order."""

    @track_table(tracked_fields=["name", "email", "notes", "prefs", "avatar"], table_label="Client")
    class Customer(base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str] = mapped_column(String(200))
        email: Mapped[str | None] = mapped_column(String(100))
        notes: Mapped[str | None] = mapped_column(Text)
        prefs: Mapped[dict[str, Any] | None] = mapped_column(JSON)
        avatar: Mapped[bytes | None] = mapped_column(LargeBinary)

        def __str__(self) -> str:
            return self.name

    @track_table(tracked_fields=["status"], table_label="Order")
    class Order(base):
        __tablename__ = "orders"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        status: Mapped[str] = mapped_column(String(20))

    return Customer, Order


def seed(audit: Any, customer: type[Any], order: type[Any]) -> list[str]:
    """Write a known history on 5 January 2026 (UTC); return customer 1's transactions, newest first.

    Customer 1: inserted by user 1 at 23:00, renamed to a script tag by user 2 at 23:10
    (reason "import"), given a long note, preferences and an avatar by user 1 at 23:20,
    then its e-mail changed by user 3 at 23:30. Customer 2 and order 9 are inserted
    by user 1 at 23:00.
    """

    def write(minute: int, user: int, work: Callable[[Any], None], reason: str | None = None):
        with (
            freeze_time(datetime(2026, 1, 5, 23, minute, tzinfo=UTC)),
            audit_context(user_id=user, reason=reason),
            audit.Session() as session,
        ):
            work(session)
            session.commit()

    def insert(session: Any) -> None:
        session.add_all(
            [
                customer(id=1, name="Ada", email="ada@example.com"),
                customer(id=2, name="Bob", email=None),
                order(id=9, status="new"),
            ]
        )

    def rename(session: Any) -> None:
        session.get(customer, 1).name = SCRIPT

    def enrich(session: Any) -> None:
        obj = session.get(customer, 1)
        obj.notes = LONG_NOTE
        obj.prefs = {"theme": "dark", "langs": ["en", "fr"]}
        obj.avatar = b"\x89PNG" + bytes(1020)

    def new_email(session: Any) -> None:
        session.get(customer, 1).email = "ada@new.example.com"

    write(0, 1, insert)
    write(10, 2, rename, reason="import")
    write(20, 1, enrich)
    write(30, 3, new_email)
    return [event.transaction_id for event in get_resource_events(customer, 1)]


@dataclass
class Reply:
    """One answer from an admin: status, body, and where a redirect points."""

    status: int
    text: str
    location: str | None = None

    def links(self, css: str) -> list[str]:
        """Return the addresses of the links with this CSS class, in page order."""
        found = re.findall(
            r'<a href="([^"]+)"[^>]*class="[^"]*\b' + re.escape(css) + r"\b", self.text
        )
        return [html.unescape(url) for url in found]

    def page(self) -> str:
        """Return the part of the page sqlaudit renders (no menu, no layout)."""
        start = self.text.index("sqlaudit-page")
        return self.text[start:]


@dataclass
class Admin:
    """An admin app (SQLAdmin or Flask-Admin) with the history views, behind a test client."""

    framework: str
    get: Callable[[str], Reply]
    post: Callable[..., Reply]
    activity_url: str
    history_url: Callable[[str, str], str]
    object_url: Callable[[int], str]
    app: Any = None


def build_admin(
    framework: str,
    audit: Any,
    models: list[type[Any]],
    *,
    can_undo: Callable[[Any], bool] | None,
    page_size: int = 20,
    field_labels: dict[type[Any], dict[str, str]] | None = None,
    user_label: Callable[[str], str] | None = None,
) -> Admin:
    """Build the framework's admin on the audit's engine, with a History button on Customer."""
    options = {
        "can_undo": can_undo,
        "page_size": page_size,
        "field_labels": field_labels,
        "user_label": user_label,
    }
    if framework == "sqladmin":
        return _sqladmin(audit, models, options)
    return _flask_admin(audit, models, options)


def _sqladmin(audit: Any, models: list[type[Any]], options: dict[str, Any]) -> Admin:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from sqladmin import Admin as SQLAdmin
    from sqladmin import ModelView

    from sqlaudit.contrib.sqladmin import HistoryMixin, add_history_views

    app = FastAPI()
    admin = SQLAdmin(app, audit.engine, session_maker=audit.Session)

    class CustomerAdmin(HistoryMixin, ModelView, model=models[0]):
        column_list = ("id", "name")

    admin.add_view(CustomerAdmin)
    add_history_views(admin, models=models, **options)
    client = TestClient(app)

    def get(url: str) -> Reply:
        response = client.get(url, follow_redirects=False)
        return Reply(response.status_code, response.text, response.headers.get("location"))

    def post(url: str, data: dict[str, str], headers: dict[str, str] | None = None) -> Reply:
        response = client.post(url, data=data, headers=headers, follow_redirects=False)
        return Reply(response.status_code, response.text, response.headers.get("location"))

    return Admin(
        "sqladmin",
        get,
        post,
        "/admin/sqlaudit/activity",
        lambda model, pk: f"/admin/sqlaudit/history/{model}/{pk}",
        lambda pk: f"/admin/customer/details/{pk}",
        app,
    )


def _flask_admin(audit: Any, models: list[type[Any]], options: dict[str, Any]) -> Admin:
    from flask import Flask
    from flask_admin import Admin as FlaskAdmin
    from flask_admin.contrib.sqla import ModelView
    from sqlalchemy.orm import scoped_session

    from sqlaudit.contrib.flask_admin import HistoryMixin, add_history_views

    app = Flask(__name__)
    app.config["SECRET_KEY"] = "tests"
    admin = FlaskAdmin(app)

    class CustomerAdmin(HistoryMixin, ModelView):
        pass

    scoped = scoped_session(audit.Session)
    app.teardown_appcontext(lambda error: scoped.remove())  # end each request's transaction
    with warnings.catch_warnings():
        # Flask-Admin 2 prefers a Flask-SQLAlchemy object; a plain Session still works.
        warnings.simplefilter("ignore", DeprecationWarning)
        admin.add_view(CustomerAdmin(models[0], scoped))
    add_history_views(admin, models=models, **options)
    client = app.test_client()

    def get(url: str) -> Reply:
        response = client.get(url)
        return Reply(response.status_code, response.get_data(as_text=True), response.location)

    def post(url: str, data: dict[str, str], headers: dict[str, str] | None = None) -> Reply:
        response = client.post(url, data=data, headers=headers)
        return Reply(response.status_code, response.get_data(as_text=True), response.location)

    return Admin(
        "flask_admin",
        get,
        post,
        "/admin/sqlaudit/",
        lambda model, pk: f"/admin/sqlaudit/history/{model}/{pk}",
        lambda pk: f"/admin/customer/edit/?id={pk}",
        app,
    )
