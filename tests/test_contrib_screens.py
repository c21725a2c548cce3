"""The admin pages' settings and value rendering, framework-free: bad settings name the fix."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import pytest
from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from sqlaudit import track_table
from sqlaudit.contrib._parts import same_origin
from sqlaudit.contrib._render import FOLD_AT, attrs, link, value_html
from sqlaudit.contrib._screens import HistoryAdmin
from sqlaudit.exceptions import ConfigurationError, UntrackedModelError


def customer_model(base: Any) -> type[Any]:
    """Declare a tracked Customer."""

    @track_table(tracked_fields=["name"], table_label="Client")
    class Customer(base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50))
        email: Mapped[str | None] = mapped_column(String(50))

    return Customer


def test_labels_come_from_table_label_and_the_field_mapping(base):
    """The model's label is its table_label; a field's label is the mapping's, else its name."""
    customer = customer_model(base)
    admin = HistoryAdmin([customer], field_labels={customer: {"name": "Full name"}})
    assert admin.model_label("customers") == "Client"
    assert admin.label("customers", "name") == "Full name"
    assert admin.label("customers", "id") == "id"


def test_an_untracked_model_is_refused_with_the_fix(base):
    """A model without @track_table raises UntrackedModelError naming it and the decorator."""

    class Plain(base):
        __tablename__ = "plain"
        id: Mapped[int] = mapped_column(primary_key=True)

    with pytest.raises(UntrackedModelError, match=r"Plain is not tracked.*@track_table"):
        HistoryAdmin([Plain])


def test_a_label_for_an_untracked_field_names_the_model_field_and_the_tracked_ones(base):
    """Labelling a field that is not tracked raises ConfigurationError listing the tracked fields."""
    customer = customer_model(base)
    with pytest.raises(ConfigurationError, match=r"Customer\.email.*tracked fields are: name"):
        HistoryAdmin([customer], field_labels={customer: {"email": "E-mail"}})


def test_labels_for_a_model_left_out_are_refused(base):
    """field_labels naming a model not in models= raises, saying to add it."""
    customer = customer_model(base)

    @track_table(tracked_fields=["status"])
    class Order(base):
        __tablename__ = "orders"
        id: Mapped[int] = mapped_column(primary_key=True)
        status: Mapped[str] = mapped_column(String(20))

    with pytest.raises(ConfigurationError, match=r"Order, which is not in models="):
        HistoryAdmin([customer], field_labels={Order: {"status": "State"}})


def test_a_composite_key_an_empty_list_and_a_bad_page_size_are_refused(base):
    """The pages address objects by one id, need models, and a positive page size."""

    @track_table(tracked_fields=["qty"])
    class Line(base):
        __tablename__ = "lines"
        order_id: Mapped[int] = mapped_column(primary_key=True)
        n: Mapped[int] = mapped_column(primary_key=True)
        qty: Mapped[int] = mapped_column()

    with pytest.raises(ConfigurationError, match=r"Line has a composite primary key"):
        HistoryAdmin([Line])
    with pytest.raises(ConfigurationError, match=r"models= is empty"):
        HistoryAdmin([])
    with pytest.raises(ConfigurationError, match=r"page_size must be a positive int"):
        HistoryAdmin([customer_model(base)], page_size=0)


class Colour(Enum):
    RED = "red"


@pytest.mark.parametrize(
    ("value", "html"),
    [
        (None, '<em class="sqlaudit-empty">empty</em>'),
        ("<b>x</b>", "<code>&lt;b&gt;x&lt;/b&gt;</code>"),
        ('"quoted" & more', "<code>&quot;quoted&quot; &amp; more</code>"),
        (b"\x00" * 2048, '<span class="sqlaudit-bytes">2,048 bytes</span>'),
        (b"a", '<span class="sqlaudit-bytes">1 byte</span>'),
        (Decimal("1.50"), "<code>1.50</code>"),
        (Colour.RED, "<code>red</code>"),
        (datetime(2026, 1, 5, 23, 0, tzinfo=UTC), "<code>2026-01-05T23:00:00+00:00</code>"),
        (
            {"b": 1, "a": "<i>"},
            '<pre class="sqlaudit-json">{\n  &quot;a&quot;: &quot;&lt;i&gt;&quot;,\n  &quot;b&quot;: 1\n}</pre>',
        ),
    ],
)
def test_values_are_escaped_and_shaped(value, html):
    """Values render escaped: None as empty, bytes by size, JSON pretty and sorted."""
    assert value_html(value) == html


def test_long_values_fold_behind_a_summary():
    """A value longer than FOLD_AT characters is folded, its start and length in the summary."""
    text = "<script>" + "x" * FOLD_AT
    html = value_html(text)
    assert html.startswith('<details class="sqlaudit-fold"><summary>&lt;script&gt;xx')
    assert f"({len(text):,} characters)" in html
    assert "<script>" not in html
    assert value_html("y" * FOLD_AT).startswith("<code>")


def test_attributes_and_links_escape_quotes():
    """An address or text with quotes cannot break out of its attribute."""
    assert attrs(href='/x?a="><script>') == ' href="/x?a=&quot;&gt;&lt;script&gt;"'
    assert link("/a", "<i>") == '<a href="/a">&lt;i&gt;</a>'


@pytest.mark.parametrize(
    ("origin", "referer", "host", "same"),
    [
        ("https://admin.example", None, "admin.example", True),
        ("https://admin.example:8443", None, "admin.example:8443", True),
        ("https://evil.example", None, "admin.example", False),
        ("https://evil.example", "https://admin.example/a", "admin.example", False),
        (None, "https://evil.example/a", "admin.example", False),
        (None, "https://admin.example/admin/", "Admin.Example", True),
        ("null", None, "admin.example", False),
        (None, None, "admin.example", True),
    ],
)
def test_same_origin_reads_origin_then_referer(origin, referer, host, same):
    """Origin decides, else Referer; an opaque origin is refused; no header at all is allowed."""
    assert same_origin(origin, referer, host) is same


def test_sqladmin_views_are_added_once(base):
    """A second add_history_views() on one SQLAdmin raises, saying to list every model in one call."""
    from fastapi import FastAPI
    from sqladmin import Admin
    from sqlalchemy import create_engine

    from sqlaudit.contrib.sqladmin import add_history_views

    customer = customer_model(base)
    engine = create_engine("sqlite://")
    try:
        admin = Admin(FastAPI(), engine)
        add_history_views(admin, models=[customer])
        with pytest.raises(ConfigurationError, match=r"already called on this Admin"):
            add_history_views(admin, models=[customer])
    finally:
        engine.dispose()


def test_flask_admin_refuses_an_untracked_model(base):
    """Flask-Admin's add_history_views() checks its models before adding anything."""
    from flask import Flask
    from flask_admin import Admin

    from sqlaudit.contrib.flask_admin import add_history_views

    class Plain(base):
        __tablename__ = "plain"
        id: Mapped[int] = mapped_column(primary_key=True)

    admin = Admin(Flask(__name__))
    with pytest.raises(UntrackedModelError, match=r"Plain is not tracked"):
        add_history_views(admin, models=[Plain])
    assert [view.endpoint for view in admin._views] == ["admin"]
