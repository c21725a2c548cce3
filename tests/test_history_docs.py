"""The history page's examples: the tour script and the FastAPI/Flask admin recipes, run for real."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sqlaudit import clear_config, get_resource_events
from sqlaudit.hooks import unregister_hooks

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_history_tour_prints_what_the_docs_show(capsys):
    """The tour reads events, a feed, a state, a diff, and undoes changes, as printed in the docs."""
    try:
        runpy.run_path(str(EXAMPLES / "history_tour.py"), run_name="sqlaudit_tour")
    finally:
        clear_config()
        unregister_hooks()
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "event: update bob {'status': ('new', 'paid')}",
        "event: insert alice {'status': (None, 'new')}",
        "feed: [('Line', '2')] more: True",
        "feed, next page: [('Order', '7')]",
        "state then: live {'status': 'new'} ['1', '2']",
        "diff: {'status': ('new', 'paid')}",
        "after revert: new 7",
        "after restore: paid",
        "last event: restore",
    ]


def seed(audit: Any, customer: type[Any]) -> list[str]:
    """Create three customers as user 1, rename one as user 2; return customer 1's transactions."""
    audit.user = 1
    with audit.Session() as session:
        session.add_all([customer(id=n, name=f"c{n}") for n in (1, 2, 3)])
        session.commit()
    audit.user = 2
    with audit.Session() as session:
        session.get(customer, 1).name = "renamed"
        session.commit()
    return [event.transaction_id for event in get_resource_events(customer, 1)]


def browse(get: Any) -> tuple[list[Any], int]:
    """Follow next_cursor through /admin/history two events at a time."""
    seen: list[Any] = []
    body = get("/admin/history?limit=2")
    total = body["total"]
    seen.extend(body["items"])
    while body["next_cursor"]:
        body = get(f"/admin/history?limit=2&cursor={body['next_cursor']}")
        seen.extend(body["items"])
    return seen, total


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
def test_admin_recipe_pages_events_and_shows_a_diff(audit, framework):
    """Both admin recipes list every event once through the cursor, refuse a foreign cursor, and diff."""
    namespace = runpy.run_path(
        str(EXAMPLES / f"history_admin_{framework}.py"), run_name="sqlaudit_recipe"
    )
    namespace["Base"].metadata.create_all(audit.engine)
    transactions = seed(audit, namespace["Customer"])
    app = namespace["create_app"](audit.Session)
    if framework == "fastapi":
        client: Any = TestClient(app)
        get = lambda url: client.get(url).json()  # noqa: E731
        status = lambda url: client.get(url).status_code  # noqa: E731
    else:
        client = app.test_client()
        get = lambda url: client.get(url).get_json()  # noqa: E731
        status = lambda url: client.get(url).status_code  # noqa: E731
    seen, total = browse(get)
    assert total == 4
    assert [(i["resource_id"], i["operation"]) for i in seen] == [
        ("1", "update"),
        ("3", "insert"),
        ("2", "insert"),
        ("1", "insert"),
    ]
    assert seen[0]["fields"] == {"name": ["c1", "renamed"]}
    by_user_2 = get("/admin/history?user=2")
    assert [i["by"] for i in by_user_2["items"]] == ["2"]
    cursor = get("/admin/history?limit=1")["next_cursor"]
    assert status(f"/admin/history?limit=1&user=2&cursor={cursor}") == 400
    diff = get(f"/admin/customers/1/diff?start={transactions[1]}&end={transactions[0]}")
    assert diff == {"name": ["c1", "renamed"]}
