"""Flask recipe: an admin view of the history, with cursor pagination and a diff.

The same two endpoints as the FastAPI recipe: ``/admin/history`` lists events with
``?model=``, ``?user=``, ``?limit=`` and ``?cursor=``; ``/admin/customers/<id>/diff``
compares ``?start=`` and ``?end=`` (ISO datetimes or transaction ids).
``tests/test_history_docs.py`` drives it with Flask's test client.
"""

from datetime import datetime
from typing import Any

from flask import Flask, abort, request
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from sqlaudit import SQLAuditError, count_events, diff_resource, get_events, track_table


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


def create_app(session_factory: sessionmaker[Session]) -> Flask:
    """Build the admin app; sqlaudit must already be configured."""
    app = Flask(__name__)

    @app.get("/admin/history")
    def history() -> dict[str, Any]:
        model = request.args.get("model")
        filters: dict[str, Any] = {"models": [MODELS[model]] if model else None}
        if "user" in request.args:
            filters["filter_user_ids"] = request.args["user"]
        limit = request.args.get("limit", 20, type=int)
        with session_factory() as session:
            try:
                page = get_events(
                    session=session, limit=limit, cursor=request.args.get("cursor"), **filters
                )
                total = count_events(session=session, **filters)
            except SQLAuditError as exc:
                abort(400, str(exc))
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

    @app.get("/admin/customers/<int:customer_id>/diff")
    def diff(customer_id: int) -> dict[str, Any]:
        start, end = request.args["start"], request.args["end"]
        with session_factory() as session:
            try:
                changed = diff_resource(
                    Customer, customer_id, moment(start), moment(end), session=session
                )
            except SQLAuditError as exc:
                abort(400, str(exc))
        return {name: [as_json(old), as_json(new)] for name, (old, new) in changed.items()}

    return app
