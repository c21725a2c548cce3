"""Flask-Admin with sqlaudit's history pages, on an in-memory SQLite database with demo data.

Run ``python examples/admin_flask.py --port 8002`` (needs
``pip install "sqlaudit-trail[flask-admin]"``) and open http://127.0.0.1:8002/admin/:
*Activity* is in the menu, and a customer's edit page has a *History* button.
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any

from admin_demo import FIELD_LABELS, Customer, Order, Product, setup
from flask import Flask, Request
from flask_admin import Admin
from flask_admin.contrib.sqla import ModelView
from sqlalchemy.orm import scoped_session

from sqlaudit.contrib.flask_admin import HistoryMixin, add_history_views


class CustomerAdmin(HistoryMixin, ModelView):  # type: ignore[misc]
    column_list = ("id", "name", "email", "tier")


class OrderAdmin(HistoryMixin, ModelView):  # type: ignore[misc]
    column_list = ("id", "customer_id", "status", "total")


def can_undo(request: Request) -> bool:
    """Who may restore and revert: everyone in this demo; check your user's role in yours."""
    return True


def create_app() -> Flask:
    """Build the demo application."""
    _engine, factory = setup()
    session: Any = scoped_session(factory)
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "demo only"
    app.teardown_appcontext(lambda error: session.remove())  # end each request's transaction
    admin = Admin(app, name="Demo shop")
    with warnings.catch_warnings():
        # Flask-Admin 2 prefers a Flask-SQLAlchemy object; a plain Session works too.
        warnings.simplefilter("ignore", DeprecationWarning)
        admin.add_view(CustomerAdmin(Customer, session))
        admin.add_view(OrderAdmin(Order, session))
        admin.add_view(ModelView(Product, session))
    add_history_views(admin, models=[Customer, Order], field_labels=FIELD_LABELS, can_undo=can_undo)
    return app


def main() -> None:
    """Serve the demo on 127.0.0.1 (``--host`` and ``--port`` to change)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args()
    print(f"Admin at http://{args.host}:{args.port}/admin/", flush=True)
    create_app().run(host=args.host, port=args.port)


if __name__ == "__main__":
    main()
