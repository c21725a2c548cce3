"""SQLAdmin with sqlaudit's history pages, on an in-memory SQLite database with demo data.

Run ``python examples/admin_sqladmin.py --port 8001`` (needs
``pip install "sqlaudit-trail[sqladmin]" uvicorn``) and open http://127.0.0.1:8001/admin/:
*Activity* is in the menu, and a customer's page has a *History* button.
"""

from __future__ import annotations

import argparse

from admin_demo import FIELD_LABELS, Customer, Order, Product, setup
from fastapi import FastAPI
from sqladmin import Admin, ModelView
from starlette.requests import Request

from sqlaudit.contrib.sqladmin import HistoryMixin, add_history_views


class CustomerAdmin(HistoryMixin, ModelView, model=Customer):
    column_list = (Customer.id, Customer.name, Customer.email, Customer.tier)


class OrderAdmin(HistoryMixin, ModelView, model=Order):
    column_list = (Order.id, Order.customer_id, Order.status, Order.total)


class ProductAdmin(ModelView, model=Product):
    column_list = (Product.id, Product.title)


def can_undo(request: Request) -> bool:
    """Who may restore and revert: everyone in this demo; check your user's role in yours."""
    return True


def create_app() -> FastAPI:
    """Build the demo application."""
    engine, factory = setup()
    app = FastAPI()
    admin = Admin(app, engine, session_maker=factory, title="Demo shop")
    for view in (CustomerAdmin, OrderAdmin, ProductAdmin):
        admin.add_view(view)
    add_history_views(admin, models=[Customer, Order], field_labels=FIELD_LABELS, can_undo=can_undo)
    return app


def main() -> None:
    """Serve the demo on 127.0.0.1 (``--host`` and ``--port`` to change)."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    print(f"Admin at http://{args.host}:{args.port}/admin/", flush=True)
    uvicorn.run(create_app(), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
