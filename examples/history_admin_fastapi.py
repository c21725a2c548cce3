"""FastAPI recipe: an admin view of the history, with cursor pagination and a diff.

``GET /admin/history?model=Customer&user=7&limit=20&cursor=...`` lists events, newest
first, with the total and the cursor of the next page; ``GET
/admin/customers/{id}/diff?start=...&end=...`` compares two moments (ISO datetimes or
transaction ids). A cursor from another query is answered with 400.
``tests/test_history_docs.py`` drives it with FastAPI's test client.
"""

from datetime import datetime
from typing import Any

from fastapi import FastAPI, HTTPException
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from sqlaudit import (
    SQLAuditError,
    count_events,
    diff_resource,
    get_events,
    track_table,
)


class Base(DeclarativeBase):
    pass


@track_table(tracked_fields=["name", "email"], table_label="Customer")
class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(100))


MODELS = {"Customer": Customer}


def as_json(value: Any) -> Any:
    """Values as JSON can carry them (text for dates, decimals, UUIDs...)."""
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


def moment(text: str) -> datetime | str:
    """An ISO datetime, or else a transaction id."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return text


def create_app(session_factory: sessionmaker[Session]) -> FastAPI:
    """Build the admin app; sqlaudit must already be configured."""
    app = FastAPI()

    @app.get("/admin/history")
    def history(
        model: str | None = None,
        user: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        filters: dict[str, Any] = {"models": [MODELS[model]] if model else None}
        if user is not None:
            filters["filter_user_ids"] = user
        with session_factory() as session:
            try:
                page = get_events(session=session, limit=limit, cursor=cursor, **filters)
                total = count_events(session=session, **filters)
            except SQLAuditError as exc:  # a foreign or altered cursor, an unknown field...
                raise HTTPException(status_code=400, detail=str(exc)) from exc
        return {
            "total": total,
            "next_cursor": page.next_cursor,
            "items": [
                {
                    "id": str(event.record_id),
                    "type": event.resource_type,
                    "resource_id": event.resource_id,
                    "operation": event.operation.value,
                    "by": event.changed_by,
                    "at": event.timestamp.isoformat(),
                    "fields": {
                        k: [as_json(old), as_json(new)] for k, (old, new) in event.fields.items()
                    },
                }
                for event in page
            ],
        }

    @app.get("/admin/customers/{customer_id}/diff")
    def diff(customer_id: int, start: str, end: str) -> dict[str, Any]:
        with session_factory() as session:
            try:
                changed = diff_resource(
                    Customer, customer_id, moment(start), moment(end), session=session
                )
            except SQLAuditError as exc:
                raise HTTPException(status_code=400, detail=str(exc)) from exc
        return {name: [as_json(old), as_json(new)] for name, (old, new) in changed.items()}

    return app
