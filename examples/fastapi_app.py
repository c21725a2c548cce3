"""FastAPI recipe: take the acting user from the request, two ways.

1. An async dependency that opens ``audit_context`` for the request
   (``create_app(session_factory, how="dependency")``).
2. A plain ASGI middleware that does the same for every HTTP request
   (``create_app(session_factory, how="middleware")``).

Either way, every change a request makes carries its ``X-User-Id`` and
``X-Request-Id`` headers, whatever thread or task serves it. The dependency is
``async def``: a sync (``def``) dependency is entered in a worker thread, and the
context it opens would not reach the endpoint. Blocking Session I/O stays out of
``async def`` endpoints: the async one below hands it to a worker thread. Run
``python examples/fastapi_app.py`` (FastAPI and httpx installed) to drive it with
FastAPI's test client on an SQLite file; ``tests/test_recipes.py`` tests it.
"""

from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel
from sqlalchemy import String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from starlette.concurrency import run_in_threadpool

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


class CustomerIn(BaseModel):
    name: str
    email: str


async def audited_request(
    x_user_id: Annotated[str | None, Header()] = None,
    x_request_id: Annotated[str | None, Header()] = None,
) -> AsyncIterator[None]:
    """Recipe 1: an async dependency holding the request's audit context open."""
    # A missing header leaves the user to get_user_id_callback (or records none).
    context: dict[str, Any] = {"user_id": x_user_id} if x_user_id else {}
    if x_request_id:
        context["request_id"] = x_request_id
    async with audit_context(**context):
        yield


class AuditContextMiddleware:
    """Recipe 2: a plain ASGI middleware opening the audit context per HTTP request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]
        }
        context: dict[str, Any] = {}
        if "x-user-id" in headers:
            context["user_id"] = headers["x-user-id"]
        if "x-request-id" in headers:
            context["request_id"] = headers["x-request-id"]
        async with audit_context(**context):
            await self.app(scope, receive, send)


def create_app(
    session_factory: sessionmaker[Session], how: Literal["dependency", "middleware"]
) -> FastAPI:
    """Build the app; sqlaudit must already be configured."""

    def get_db() -> Iterator[Session]:
        with session_factory() as session:
            yield session

    dependencies = [Depends(audited_request)] if how == "dependency" else []
    app = FastAPI(dependencies=dependencies)
    if how == "middleware":
        app.add_middleware(AuditContextMiddleware)

    @app.post("/customers", status_code=201)
    def create_customer(
        body: CustomerIn, db: Annotated[Session, Depends(get_db)]
    ) -> dict[str, int]:
        customer = Customer(name=body.name, email=body.email)
        db.add(customer)
        db.commit()
        return {"id": customer.id}

    def rename(db: Session, customer_id: int, body: CustomerIn) -> dict[str, int]:
        customer = db.get(Customer, customer_id)
        if customer is None:
            raise HTTPException(404)
        customer.name, customer.email = body.name, body.email
        db.commit()
        return {"id": customer_id}

    @app.put("/customers/{customer_id}")
    async def rename_customer(
        customer_id: int, body: CustomerIn, db: Annotated[Session, Depends(get_db)]
    ) -> dict[str, int]:
        # The Session blocks: run it in a worker thread, not on the event loop. The
        # thread runs in a copy of the request's context, audit_context included.
        return await run_in_threadpool(rename, db, customer_id, body)

    @app.get("/customers/{customer_id}/history")
    def history(customer_id: int, db: Annotated[Session, Depends(get_db)]) -> list[dict[str, Any]]:
        return [
            {
                "field": change.field_name,
                "old": change.old_value,
                "new": change.new_value,
                "by": change.changed_by,
                "request_id": change.extra.get("request_id"),
            }
            for change in get_resource_changes(
                Customer, session=db, filter_resource_ids=customer_id
            )
        ]

    return app


if __name__ == "__main__":
    from fastapi.testclient import TestClient

    engine = create_engine("sqlite:///fastapi_example.db")
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    session_factory = sessionmaker(engine)
    set_config(SQLAuditConfig(session_factory=session_factory))
    register_hooks()
    client = TestClient(create_app(session_factory, how="dependency"))
    headers = {"X-User-Id": "alice", "X-Request-Id": "req-1"}
    created = client.post("/customers", json={"name": "Jane", "email": "j@x.io"}, headers=headers)
    customer_id = created.json()["id"]
    headers = {"X-User-Id": "bob", "X-Request-Id": "req-2"}
    client.put(
        f"/customers/{customer_id}", json={"name": "Janet", "email": "j@x.io"}, headers=headers
    )
    for row in client.get(f"/customers/{customer_id}/history").json():
        print(row)
