"""Flask recipe: take the acting user from the request.

``before_request`` opens an ``audit_context`` with the request's ``X-User-Id`` and
``X-Request-Id`` headers and ``teardown_request`` closes it, so every change the
request makes carries them. Run ``python examples/flask_app.py`` to drive it with
Flask's test client on an SQLite file; ``tests/test_recipes.py`` tests it.
"""

from typing import Any

from flask import Flask, abort, g, request
from sqlalchemy import String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from sqlaudit import (
    SQLAuditConfig,
    audit_context,
    get_resource_changes,
    register_hooks,
    set_config,
    track_table,
)


class Base(DeclarativeBase):
    pass


@track_table(tracked_fields=["name", "email"], table_label="Customer")
class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(100))


def create_app(session_factory: sessionmaker[Session]) -> Flask:
    """Build the app; sqlaudit must already be configured."""
    app = Flask(__name__)

    @app.before_request
    def open_audit_context() -> None:
        # A missing header leaves the user to get_user_id_callback (or records none).
        values: dict[str, Any] = {}
        if "X-User-Id" in request.headers:
            values["user_id"] = request.headers["X-User-Id"]
        if "X-Request-Id" in request.headers:
            values["request_id"] = request.headers["X-Request-Id"]
        context = audit_context(**values)
        context.__enter__()
        g.audit_context = context

    @app.teardown_request
    def close_audit_context(exc: BaseException | None) -> None:
        context = g.pop("audit_context", None)
        if context is not None:
            context.__exit__(None, None, None)

    @app.post("/customers")
    def create_customer() -> tuple[dict[str, int], int]:
        body = request.get_json()
        with session_factory() as db:
            customer = Customer(name=body["name"], email=body["email"])
            db.add(customer)
            db.commit()
            return {"id": customer.id}, 201

    @app.put("/customers/<int:customer_id>")
    def rename_customer(customer_id: int) -> dict[str, int]:
        body = request.get_json()
        with session_factory() as db:
            customer = db.get(Customer, customer_id)
            if customer is None:
                abort(404)
            customer.name, customer.email = body["name"], body["email"]
            db.commit()
        return {"id": customer_id}

    @app.get("/customers/<int:customer_id>/history")
    def history(customer_id: int) -> list[dict[str, Any]]:
        with session_factory() as db:
            changes = get_resource_changes(Customer, session=db, filter_resource_ids=customer_id)
        return [
            {
                "field": change.field_name,
                "old": change.old_value,
                "new": change.new_value,
                "by": change.changed_by,
                "request_id": change.extra.get("request_id"),
            }
            for change in changes
        ]

    return app


if __name__ == "__main__":
    engine = create_engine("sqlite:///flask_example.db")
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    session_factory = sessionmaker(engine)
    set_config(SQLAuditConfig(session_factory=session_factory))
    register_hooks()
    client = create_app(session_factory).test_client()
    headers = {"X-User-Id": "alice", "X-Request-Id": "req-1"}
    created = client.post("/customers", json={"name": "Jane", "email": "j@x.io"}, headers=headers)
    customer_id = created.get_json()["id"]
    headers = {"X-User-Id": "bob", "X-Request-Id": "req-2"}
    client.put(
        f"/customers/{customer_id}", json={"name": "Janet", "email": "j@x.io"}, headers=headers
    )
    for row in client.get(f"/customers/{customer_id}/history").get_json():
        print(row)
