"""The two admin example apps start with one command on SQLite and serve their demo pages."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
APPS = {
    "admin_sqladmin.py": ("/admin/sqlaudit/activity", "/admin/customer/details/1"),
    "admin_flask.py": ("/admin/sqlaudit/", "/admin/customer/edit/?id=1"),
}


def free_port() -> int:
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetch(url: str) -> tuple[int, str]:
    """GET a page; return its status and text."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_until_up(process: subprocess.Popen[str], url: str) -> None:
    """Poll until the server answers, failing with its output if it exits first."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"the example exited with {process.returncode}:\n{output}")
        try:
            fetch(url)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    pytest.fail(f"the example did not answer at {url} within a minute")


@pytest.fixture(params=list(APPS))
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """Start an example app on a free port, as the docs say; yield its name and base URL."""
    name = request.param
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / name), "--port", str(port)],
        cwd=EXAMPLES.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(process, f"{base}/admin/")
        yield name, base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()


def test_example_serves_activity_history_and_a_linked_customer(served):
    """The example lists its demo events, shows a customer's history, and links it from the customer."""
    name, base = served
    activity, customer = APPS[name]
    status, menu = fetch(f"{base}/admin/")
    assert status == 200
    assert "Activity" in menu  # in the admin's menu
    status, page = fetch(base + activity)
    assert status == 200
    assert "sqlaudit-events" in page and "Customer 1" in page and "Order 100" in page
    status, page = fetch(f"{base}/admin/sqlaudit/history/customers/3")
    assert status == 200
    assert "&lt;script&gt;alert" in page and "<script>alert('never runs')" not in page
    status, page = fetch(base + customer)
    assert status == 200
    assert "sqlaudit-history" in page  # the History button
