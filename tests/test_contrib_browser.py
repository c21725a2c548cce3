"""The admin history pages in a real headless Chromium: clicks, a restore, and a script that never runs.

The browser is Debian's ``/usr/bin/chromium`` (``apt-get install chromium``), driven by
Playwright; no browser is ever downloaded. The run saves screenshots of the Activity and
History pages into ``docs/_static/`` for the documentation.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from admin_support import FRAMEWORKS, SCRIPT, build_admin, declare_models, seed

from sqlaudit import get_resource_events

CHROMIUM = Path("/usr/bin/chromium")
STATIC = Path(__file__).resolve().parent.parent / "docs" / "_static"

pytestmark = [
    pytest.mark.backends("sqlite"),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="no /usr/bin/chromium: install Debian's chromium (apt-get install chromium)",
    ),
]

playwright_api = pytest.importorskip("playwright.sync_api")


class Served:
    """A WSGI or ASGI app served on a free localhost port in a background thread."""

    def __init__(self, framework: str, app: Any) -> None:
        self.framework = framework
        if framework == "sqladmin":
            import uvicorn

            config = uvicorn.Config(
                app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", ws="none"
            )
            self._uvicorn = uvicorn.Server(config)
            self._thread = threading.Thread(target=self._uvicorn.run, daemon=True)
            self._thread.start()
            while not self._uvicorn.started:
                if not self._thread.is_alive():
                    raise RuntimeError("uvicorn did not start")
                threading.Event().wait(0.05)
            sock = self._uvicorn.servers[0].sockets[0]
            self.port = int(sock.getsockname()[1])
        else:
            from werkzeug.serving import make_server

            self._werkzeug = make_server("127.0.0.1", 0, app, threaded=True)
            self.port = self._werkzeug.port
            self._thread = threading.Thread(target=self._werkzeug.serve_forever, daemon=True)
            self._thread.start()
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop the server and wait for its thread."""
        if self.framework == "sqladmin":
            self._uvicorn.should_exit = True
        else:
            self._werkzeug.shutdown()
        self._thread.join(timeout=30)


@pytest.fixture(params=FRAMEWORKS)
def served(request: pytest.FixtureRequest, audit: Any, target: Any) -> Iterator[dict[str, Any]]:
    """The seeded admin of one framework, served over HTTP, and its models."""
    customer, order = declare_models(audit.base)
    audit.create_tables()
    transactions = seed(audit, customer, order)
    admin = build_admin(
        request.param,
        audit,
        [customer, order],
        can_undo=lambda request: True,
        page_size=2,
        field_labels={customer: {"email": "E-mail address"}},
    )
    server = Served(request.param, admin.app)
    try:
        yield {
            "base": server.base,
            "admin": admin,
            "customer": customer,
            "tx": transactions,
            "framework": request.param,
        }
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, started by Playwright with no network chatter."""
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page whose viewer is in Auckland; any dialog (an alert) fails the test."""
    context = browser.new_context(
        timezone_id="Pacific/Auckland", viewport={"width": 1400, "height": 900}
    )
    opened = context.new_page()
    dialogs: list[str] = []
    opened.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    yield opened
    context.close()
    assert not dialogs, f"a dialog opened: {dialogs}"


def activity_url(served: dict[str, Any]) -> str:
    """The Activity page's address."""
    return served["base"] + served["admin"].activity_url


def listed(page: Any) -> list[str]:
    """The objects named by the rows of the events table."""
    return page.locator(
        "table.sqlaudit-events > tbody > tr > td:nth-child(2) > a"
    ).all_inner_texts()


def never_ran(page: Any) -> None:
    """The stored script tag shows as text and has not run."""
    assert page.evaluate("typeof window.sqlauditPwned") == "undefined"
    assert page.title() != "pwned"


def test_activity_page_filters_and_pages_by_clicking(served, page):
    """The Activity page loads; the filter form and the Older link work by clicking."""
    page.goto(activity_url(served))
    assert page.locator("#sqlaudit-tz").input_value() == "Pacific/Auckland"  # the browser's zone
    assert "6 events" in page.locator(".sqlaudit-total").inner_text()
    STATIC.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(STATIC / f"admin-{served['framework']}-activity.png"), full_page=True)
    never_ran(page)

    seen = listed(page)
    while page.locator("a.sqlaudit-older").count():
        page.locator("a.sqlaudit-older").click()
        page.wait_for_load_state()
        seen += listed(page)
    assert sorted(seen) == sorted(["Client 1"] * 4 + ["Client 2", "Order 9"])

    page.goto(activity_url(served))
    page.locator("#sqlaudit-user").fill("2")
    page.locator("#sqlaudit-filter").click()
    page.wait_for_url(re.compile(r"user=2"))
    assert listed(page) == ["Client 1"]
    assert "1 event" in page.locator(".sqlaudit-total").inner_text()

    page.goto(activity_url(served))
    page.locator("#sqlaudit-model").select_option("orders")
    page.locator("#sqlaudit-filter").click()
    page.wait_for_url(re.compile(r"model=orders"))
    assert listed(page) == ["Order 9"]

    # 23:00-23:30 UTC on 5 January is the 6th for this viewer in Auckland
    page.goto(activity_url(served))
    page.locator("#sqlaudit-since").fill("2026-01-06")
    page.locator("#sqlaudit-until").fill("2026-01-06")
    page.locator("#sqlaudit-filter").click()
    page.wait_for_url(re.compile(r"since=2026-01-06"))
    assert "6 events" in page.locator(".sqlaudit-total").inner_text()
    page.locator("#sqlaudit-since").fill("2026-01-05")
    page.locator("#sqlaudit-until").fill("2026-01-05")
    page.locator("#sqlaudit-filter").click()
    page.wait_for_url(re.compile(r"since=2026-01-05"))
    assert "0 events" in page.locator(".sqlaudit-total").inner_text()


def test_history_page_restore_round_trips_and_the_script_never_runs(served, page, audit):
    """History loads with its diffs; Restore -> confirm -> the values come back; no script runs."""
    customer = served["customer"]
    page.goto(served["base"] + served["admin"].history_url("customers", "1"))
    assert "Client 1: history" in page.content()
    page.screenshot(path=str(STATIC / f"admin-{served['framework']}-history.png"), full_page=True)
    never_ran(page)

    while page.locator("a.sqlaudit-older").count():
        page.locator("a.sqlaudit-older").click()
        page.wait_for_load_state()
        never_ran(page)
    assert page.get_by_text(SCRIPT).count() >= 1  # the stored script tag shows as text
    page.locator("a.sqlaudit-restore").last.click()  # the oldest event: the insert
    page.wait_for_url(re.compile(r"/restore/customers/1/"))
    never_ran(page)
    plan = page.locator("table.sqlaudit-plan").inner_text()
    assert "ada@new.example.com" in plan and "ada@example.com" in plan
    page.locator("#sqlaudit-confirm").click()
    page.wait_for_url(re.compile(r"done=restored"))
    assert "Restored." in page.content()
    never_ran(page)
    with audit.Session() as session:
        row = session.get(customer, 1)
        assert (row.name, row.email) == ("Ada", "ada@example.com")
    assert get_resource_events(customer, 1)[0].reason == "restore"

    page.goto(f"{served['base']}/admin/sqlaudit/state/customers/1/{served['tx'][2]}")
    assert page.get_by_text(SCRIPT).count() == 1
    never_ran(page)
