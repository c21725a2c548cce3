"""The admin history pages, driven through SQLAdmin's and Flask-Admin's test clients on every database."""

from __future__ import annotations

import re
from typing import Any

import pytest
from admin_support import (
    FRAMEWORKS,
    LONG_NOTE,
    SCRIPT,
    Reply,
    build_admin,
    declare_models,
    seed,
)

from sqlaudit import get_resource_events

pytestmark = pytest.mark.backends("sqlite", "postgresql", "mariadb")

LABELS = {"email": "E-mail address", "prefs": "Preferences"}


@pytest.fixture(params=FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> str:
    """The admin framework the test drives."""
    return str(request.param)


@pytest.fixture(autouse=True)
def _one_driver_per_database(target: Any) -> None:
    """The pages do not depend on the driver: run on each database's default one."""
    if target.name not in ("sqlite", "postgresql", "mariadb"):
        pytest.skip("the admin pages are driver-independent; run on the default driver")


@pytest.fixture
def world(audit: Any, framework: str) -> dict[str, Any]:
    """Customer and Order with a known history, and an admin that lets everyone undo."""
    customer, order = declare_models(audit.base)
    audit.create_tables()
    transactions = seed(audit, customer, order)
    admin = build_admin(
        framework,
        audit,
        [customer, order],
        can_undo=lambda request: True,
        page_size=2,
        field_labels={customer: LABELS},
        user_label=lambda user_id: f"User <{user_id}>",
    )
    return {"customer": customer, "order": order, "tx": transactions, "admin": admin}


def follow(admin: Any, url: str) -> list[Reply]:
    """Fetch a page and every page after it through the "Older" links."""
    pages = [admin.get(url)]
    while older := pages[-1].links("sqlaudit-older"):
        assert len(older) == 1
        pages.append(admin.get(older[0]))
    return pages


def objects(reply: Reply) -> list[str]:
    """Return the objects the activity rows name, in page order."""
    return re.findall(r'sqlaudit/history/\w+/\d+[^"]*"[^>]*>([^<]+)</a>', reply.page())


def test_activity_lists_every_event_once_through_the_pages(world):
    """The Activity page counts the events and lists all of them, newest first, two a page."""
    admin = world["admin"]
    pages = follow(admin, admin.activity_url)
    assert all(page.status == 200 for page in pages)
    assert "6 events" in pages[0].text
    listed = [name for page in pages for name in objects(page)]
    assert listed[:3] == ["Client 1", "Client 1", "Client 1"]
    assert sorted(listed) == sorted(["Client 1"] * 4 + ["Client 2", "Order 9"])
    assert len(pages) == 3
    assert pages[1].links("sqlaudit-newest")  # a way back to the first page
    assert not pages[0].links("sqlaudit-newest")


FILTERS = [
    ("user=2", ["Client 1"], 1),
    ("user=1", ["Client 1", "Client 1", "Client 2", "Order 9"], 4),
    ("model=orders", ["Order 9"], 1),
    ("operation=insert", ["Client 1", "Client 2", "Order 9"], 3),
    ("operation=update&user=3", ["Client 1"], 1),
    # 23:00-23:30 UTC on 5 January is 6 January in Auckland (UTC+13) ...
    ("since=2026-01-06&until=2026-01-06&tz=Pacific/Auckland", None, 6),
    ("since=2026-01-06&tz=UTC", [], 0),
    # ... and still 5 January in UTC
    ("until=2026-01-05&tz=UTC", None, 6),
    ("until=2026-01-05&tz=Pacific/Auckland", [], 0),
]


def test_activity_filters(world):
    """Filters by user, model, operation and date range (read in the viewer's zone) combine."""
    admin = world["admin"]
    for query, expected, count in FILTERS:
        pages = follow(admin, f"{admin.activity_url}?{query}")
        assert f"{count} event" in pages[0].text, query
        listed = [name for page in pages for name in objects(page)]
        assert len(listed) == count, query
        if expected is not None:
            assert sorted(listed) == sorted(expected), query
        for key_value in query.split("&"):
            key, value = key_value.split("=")
            # the form shows each filter back ...
            assert f'name="{key}"' in pages[0].text
            assert f'value="{value}"' in pages[0].text, query
            # ... and the next pages keep it
            for page in pages[1:]:
                assert f"{key}={value.replace('/', '%2F')}" in page.text or (
                    f"{key}={value}" in page.text
                ), query


BAD_FILTERS = [
    ("since=5-1-2026", "takes a date as YYYY-MM-DD"),
    ("cursor=bm9wZQ", "cursor"),
    ("model=planets", "is not one of the admin"),
    ("tz=Mars/Olympus", "Mars/Olympus"),
    ("operation=teleport", "teleport"),
]


def test_activity_bad_filters_answer_400_with_the_reason(world):
    """A bad filter value shows the project's error message and a 400, never a crash."""
    admin = world["admin"]
    for query, message in BAD_FILTERS:
        reply = admin.get(f"{admin.activity_url}?{query}")
        assert reply.status == 400, query
        assert "sqlaudit-error" in reply.text, query
        assert message in reply.text, query


def test_activity_shows_times_in_the_viewers_zone(world):
    """Timestamps are shown in the zone the viewer's browser gives."""
    admin = world["admin"]
    assert "2026-01-06 12:30:00" in admin.get(f"{admin.activity_url}?tz=Pacific/Auckland").text
    assert "2026-01-05 23:30:00" in admin.get(f"{admin.activity_url}?tz=UTC").text
    history = admin.get(f"{admin.activity_url}?tz=Pacific/Auckland").links("sqlaudit-object")[0]
    assert re.search(r"tz=Pacific(%2F|/)Auckland", history)
    assert "2026-01-06 12:30:00" in admin.get(history).text


def test_history_page_shows_events_newest_first_with_diffs(world):
    """History: when, who, why, operation, labelled field diffs, folding, JSON, bytes, escaping."""
    admin = world["admin"]
    reply = admin.get(admin.history_url("customers", "1"))
    assert reply.status == 200
    page = reply.page()
    assert "Client 1: history" in reply.text
    # newest first: the e-mail change by user 3, then the enrichment by user 1
    assert page.index("ada@new.example.com") < page.index("A long note.")
    assert "E-mail address" in page and "Preferences" in page
    assert '<details class="sqlaudit-fold">' in page  # the long note is folded
    assert f"{len(LONG_NOTE):,} characters" in page
    assert '<pre class="sqlaudit-json">' in page and "&quot;theme&quot;: &quot;dark&quot;" in page
    assert "1,024 bytes" in page
    assert "User &lt;3&gt;" in page and "User &lt;1&gt;" in page  # who, by user_label
    assert len(reply.links("sqlaudit-state-link")) == 2
    assert reply.links("sqlaudit-older")
    rest = follow(admin, reply.links("sqlaudit-older")[0])
    text = "".join(p.page() for p in rest)
    assert "import" in text  # the reason of the rename
    assert "sqlaudit-op-insert" in text
    assert "&lt;script&gt;window.sqlauditPwned" in text
    assert SCRIPT not in text
    assert sum(len(p.links("sqlaudit-state-link")) for p in rest) == 2


def test_history_page_links_the_object_and_answers_404_for_an_unknown_model(world):
    """The history links the admin's object page; an unknown model is a 404, not a crash."""
    admin = world["admin"]
    reply = admin.get(admin.history_url("customers", "1"))
    assert re.search(r'href="[^"]*(customer/details/1|customer/edit/\?id=1)', reply.text)
    missing = admin.get(admin.history_url("planets", "1"))
    assert missing.status == 404
    assert "planets" in missing.text
    unknown = admin.get(admin.history_url("customers", "%3Cb%3E"))  # "<b>": no history
    assert unknown.status == 200
    assert "No events." in unknown.text and "Client &lt;b&gt;: history" in unknown.text


def test_object_page_links_its_history(world):
    """The admin's own page of a customer has a History button that leads to its history."""
    admin = world["admin"]
    reply = admin.get(admin.object_url(1))
    assert reply.status == 200
    if admin.framework == "sqladmin":
        match = re.search(r'href="([^"]*action/sqlaudit-history\?pks=1)"', reply.text)
        assert match, "no History button on the details page"
        redirect = admin.get(match.group(1))
        assert redirect.status == 303
        assert redirect.location.endswith("/admin/sqlaudit/history/customers/1")
    else:
        assert reply.links("sqlaudit-history-link") == ["/admin/sqlaudit/history/customers/1"]


def test_state_page_shows_the_object_after_an_event(world):
    """The state link of the rename shows the values just after it."""
    admin = world["admin"]
    rename = world["tx"][2]
    reply = admin.get(f"/admin/sqlaudit/state/customers/1/{rename}")
    assert reply.status == 200
    page = reply.page()
    assert "&lt;script&gt;" in page and SCRIPT not in page
    assert "ada@example.com" in page
    assert "A long note." not in page  # not yet written then
    assert "live" in page


def test_restore_confirms_exactly_what_changes_then_writes_audited_rows(world, audit):
    """Restore shows each field that changes (now, after), then restores, audited, on POST."""
    admin, customer = world["admin"], world["customer"]
    insert = world["tx"][3]
    url = admin.get(admin.history_url("customers", "1")).links("sqlaudit-restore")[0]
    assert url.endswith(f"/{world['tx'][0]}")
    confirm = admin.get(f"/admin/sqlaudit/restore/customers/1/{insert}")
    assert confirm.status == 200
    plan = confirm.page()
    rows = re.findall(r"<tr><td>([^<]+)</td>", plan.split("sqlaudit-plan", 1)[1])
    assert rows == ["name", "E-mail address", "notes", "Preferences", "avatar"]
    assert "&lt;script&gt;" in plan and "ada@example.com" in plan
    audit.user = "admin-7"
    done = admin.post(f"/admin/sqlaudit/restore/customers/1/{insert}", {"confirm": "1"})
    assert done.status == 303
    assert "/admin/sqlaudit/history/customers/1" in done.location
    assert "done=restored" in done.location
    with audit.Session() as session:
        row = session.get(customer, 1)
        assert (row.name, row.email, row.notes, row.prefs, row.avatar) == (
            "Ada",
            "ada@example.com",
            None,
            None,
            None,
        )
    newest = get_resource_events(customer, 1)[0]
    assert (newest.reason, newest.changed_by) == ("restore", "admin-7")
    shown = admin.get(done.location)
    assert "Restored." in shown.text


def test_revert_confirms_then_undoes_a_transaction(world, audit):
    """Revert lists what goes back, then undoes the transaction on POST, audited."""
    admin, customer = world["admin"], world["customer"]
    email_change = world["tx"][0]
    confirm = admin.get(f"/admin/sqlaudit/revert/{email_change}")
    assert confirm.status == 200
    assert "ada@new.example.com" in confirm.page() and "ada@example.com" in confirm.page()
    assert "E-mail address" in confirm.page()
    done = admin.post(f"/admin/sqlaudit/revert/{email_change}", {"confirm": "1"})
    assert done.status == 303
    assert "done=reverted" in done.location
    with audit.Session() as session:
        assert session.get(customer, 1).email == "ada@example.com"
    assert get_resource_events(customer, 1)[0].reason == "revert"
    assert "Transaction reverted." in admin.get(done.location).text


def test_revert_with_later_changes_shows_the_conflicts_then_overwrites_on_request(world, audit):
    """Reverting the insert conflicts with the later changes: 409 and nothing written, until overwrite."""
    admin, customer = world["admin"], world["customer"]
    rename = world["tx"][2]
    with audit.Session() as session:
        session.get(customer, 1).name = "Ada Lovelace"
        session.commit()
    before = len(get_resource_events(customer, 1))
    refused = admin.post(f"/admin/sqlaudit/revert/{rename}", {"confirm": "1"})
    assert refused.status == 409
    assert "sqlaudit-conflict" in refused.text and "Ada Lovelace" in refused.text
    assert len(get_resource_events(customer, 1)) == before
    forced = admin.post(f"/admin/sqlaudit/revert/{rename}", {"confirm": "1", "overwrite": "1"})
    assert forced.status == 303
    with audit.Session() as session:
        assert session.get(customer, 1).name == "Ada"


def test_a_form_posted_from_another_site_is_refused(world, audit):
    """A restore or revert posted from another site's page (its Origin) is a 403; nothing changes."""
    admin, customer = world["admin"], world["customer"]
    host = "testserver" if admin.framework == "sqladmin" else "localhost"
    restore = f"/admin/sqlaudit/restore/customers/1/{world['tx'][3]}"
    revert = f"/admin/sqlaudit/revert/{world['tx'][0]}"
    for headers in ({"Origin": "https://evil.example"}, {"Referer": "https://evil.example/x"}):
        for url in (restore, revert):
            reply = admin.post(url, {"confirm": "1"}, headers)
            assert reply.status == 403, (url, headers)
            assert "posted by another site" in reply.text
    assert len(get_resource_events(customer, 1)) == 4
    done = admin.post(revert, {"confirm": "1"}, {"Origin": f"http://{host}"})
    assert done.status == 303
    assert get_resource_events(customer, 1)[0].reason == "revert"


def test_revert_of_an_unknown_transaction_is_a_404(world):
    """A transaction id with no change rows answers 404 with the reason."""
    reply = world["admin"].get("/admin/sqlaudit/revert/00000000-0000-0000-0000-000000000000")
    assert reply.status == 404
    assert "no change row has transaction id" in reply.text


def test_restore_to_before_the_object_existed_is_refused(world, audit):
    """Restoring an object to a transaction before its life began is a 400, nothing written."""
    admin, customer = world["admin"], world["customer"]
    rename = world["tx"][2]
    with audit.Session() as session:
        session.add(customer(id=4, name="Late"))
        session.commit()
    for reply in (
        admin.get(f"/admin/sqlaudit/restore/customers/4/{rename}"),
        admin.post(f"/admin/sqlaudit/restore/customers/4/{rename}", {"confirm": "1"}),
    ):
        assert reply.status == 400
        assert "did not exist yet" in reply.text
    assert len(get_resource_events(customer, 4)) == 1
    same = admin.get(f"/admin/sqlaudit/restore/customers/2/{rename}")
    assert same.status == 200  # customer 2 has not changed since: nothing to do
    assert "change nothing" in same.text
    unknown = admin.get("/admin/sqlaudit/restore/customers/1/not-a-transaction")
    assert unknown.status == 400
    assert "sqlaudit-error" in unknown.text


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_without_permission_there_are_no_buttons_and_undo_is_forbidden(audit, framework):
    """A permission callback that says no hides the buttons and answers 403; nothing changes."""
    customer, order = declare_models(audit.base)
    audit.create_tables()
    transactions = seed(audit, customer, order)
    asked: list[Any] = []

    def never(request: Any) -> bool:
        asked.append(request)
        return False

    admin = build_admin(framework, audit, [customer, order], can_undo=never)
    history = admin.get(admin.history_url("customers", "1"))
    assert history.status == 200
    assert not history.links("sqlaudit-restore") and not history.links("sqlaudit-revert")
    assert asked, "the permission callback was never asked"
    assert admin.get(f"/admin/sqlaudit/restore/customers/1/{transactions[3]}").status == 403
    assert admin.post(f"/admin/sqlaudit/restore/customers/1/{transactions[3]}", {}).status == 403
    assert admin.get(f"/admin/sqlaudit/revert/{transactions[0]}").status == 403
    assert admin.post(f"/admin/sqlaudit/revert/{transactions[0]}", {}).status == 403
    assert len(get_resource_events(customer, 1)) == 4
    state = admin.get(f"/admin/sqlaudit/state/customers/1/{transactions[0]}")
    assert not state.links("sqlaudit-restore")


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_no_permission_callback_means_nobody_may_undo(audit, framework):
    """Without a can_undo callback the undo pages are forbidden (fail closed)."""
    customer, order = declare_models(audit.base)
    audit.create_tables()
    transactions = seed(audit, customer, order)
    admin = build_admin(framework, audit, [customer, order], can_undo=None)
    assert admin.post(f"/admin/sqlaudit/revert/{transactions[0]}", {"confirm": "1"}).status == 403


def test_sqladmin_on_an_async_engine(audit, target):
    """An SQLAdmin on an async engine gets the same pages (they read and write with a sync Session)."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from sqladmin import Admin, ModelView
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    from sqlaudit.contrib.sqladmin import HistoryMixin, add_history_views

    customer, order = declare_models(audit.base)
    audit.create_tables()
    transactions = seed(audit, customer, order)
    app = FastAPI()
    admin = Admin(app, create_async_engine(target.async_url(audit.engine), poolclass=NullPool))

    class CustomerAdmin(HistoryMixin, ModelView, model=customer):
        column_list = ("id", "name")

    admin.add_view(CustomerAdmin)
    add_history_views(admin, models=[customer, order], can_undo=lambda request: True)
    client = TestClient(app)
    assert "sqlaudit-history" in client.get("/admin/customer/details/1").text
    assert "Client 1: history" in client.get("/admin/sqlaudit/history/customers/1").text
    reply = client.post(f"/admin/sqlaudit/revert/{transactions[0]}", follow_redirects=False)
    assert reply.status_code == 303
    with audit.Session() as session:
        assert session.get(customer, 1).email == "ada@example.com"


def test_restore_adds_a_deleted_object_back_and_revert_of_an_insert_deletes(world, audit):
    """The plans say "add the object back" and "delete"; confirming does exactly that, audited."""
    admin, customer, order = world["admin"], world["customer"], world["order"]
    insert = world["tx"][3]
    with audit.Session() as session:
        session.delete(session.get(customer, 2))
        session.commit()
    plan = admin.get(f"/admin/sqlaudit/restore/customers/2/{insert}")
    assert plan.status == 200
    assert "add the object back" in plan.page()
    assert (
        admin.post(f"/admin/sqlaudit/restore/customers/2/{insert}", {"confirm": "1"}).status == 303
    )
    with audit.Session() as session:
        assert session.get(customer, 2).name == "Bob"
    history = admin.get(admin.history_url("customers", "2")).page()
    assert "sqlaudit-op-delete" in history and "restore" in history

    with audit.Session() as session:
        session.get(order, 9).status = "paid"
        session.commit()
    paid = get_resource_events(order, 9)[0].transaction_id
    plan = admin.get(f"/admin/sqlaudit/restore/orders/9/{paid}")
    assert "change nothing" in plan.page()
    with audit.Session() as session:
        session.add(order(id=10, status="new"))
        session.commit()
    created = get_resource_events(order, 10)[0].transaction_id
    plan = admin.get(f"/admin/sqlaudit/revert/{created}")
    assert "<strong>delete</strong> Order 10" in plan.page()
    assert admin.post(f"/admin/sqlaudit/revert/{created}", {"confirm": "1"}).status == 303
    with audit.Session() as session:
        assert session.get(order, 10) is None
    deleted = admin.get(admin.history_url("orders", "10")).page()
    assert "sqlaudit-op-delete" in deleted
    plan = admin.get(
        f"/admin/sqlaudit/restore/orders/10/{get_resource_events(order, 10)[0].transaction_id}"
    )
    assert plan.status == 200  # restoring to the deleted state of a deleted row: nothing to do
