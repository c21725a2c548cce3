"""The FastAPI and Flask recipes of the docs, run as real apps with their test clients."""

from __future__ import annotations

import ast
import asyncio
import runpy
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(audit, name):
    """Load an example app module afresh (its models register again) and create its tables."""
    namespace = runpy.run_path(str(EXAMPLES / name), run_name="sqlaudit_recipe")
    namespace["Base"].metadata.create_all(audit.engine)
    return namespace


def exercise(client, json_of):
    """Create as alice (req-1), rename as bob (req-2), then rename with no headers."""
    created = client.post(
        "/customers",
        json={"name": "Jane", "email": "j@x.io"},
        headers={"X-User-Id": "alice", "X-Request-Id": "req-1"},
    )
    customer_id = json_of(created)["id"]
    client.put(
        f"/customers/{customer_id}",
        json={"name": "Janet", "email": "j@x.io"},
        headers={"X-User-Id": "bob", "X-Request-Id": "req-2"},
    )
    client.put(f"/customers/{customer_id}", json={"name": "J.", "email": "j@x.io"})
    return json_of(client.get(f"/customers/{customer_id}/history"))


def canonical(rows):
    """The rows as an order-free, key-order-free value."""
    return sorted(repr(sorted(row.items())) for row in rows)


EXPECTED = [
    {"field": "name", "old": "Janet", "new": "J.", "by": "callback-user", "request_id": None},
    {"field": "name", "old": "Jane", "new": "Janet", "by": "bob", "request_id": "req-2"},
    {"field": "email", "old": None, "new": "j@x.io", "by": "alice", "request_id": "req-1"},
    {"field": "name", "old": None, "new": "Jane", "by": "alice", "request_id": "req-1"},
]


@pytest.mark.parametrize("how", ["dependency", "middleware"])
def test_fastapi_recipe_records_the_request_user(audit, how):
    """Both FastAPI recipes attribute each request's changes to its X-User-Id, sync and async endpoints alike."""
    audit.user = "callback-user"
    app = load(audit, "fastapi_app.py")["create_app"](audit.Session, how=how)
    with TestClient(app) as client:
        history = exercise(client, lambda response: response.json())
    assert canonical(history) == canonical(EXPECTED)
    assert history[:2] == EXPECTED[:2]


def test_flask_recipe_records_the_request_user(audit):
    """The Flask recipe attributes each request's changes to its X-User-Id."""
    audit.user = "callback-user"
    app = load(audit, "flask_app.py")["create_app"](audit.Session)
    history = exercise(app.test_client(), lambda response: response.get_json())
    assert canonical(history) == canonical(EXPECTED)
    assert history[:2] == EXPECTED[:2]


@pytest.mark.backends("postgresql", "mariadb")
@pytest.mark.parametrize("how", ["dependency", "middleware"])
def test_fastapi_concurrent_requests_keep_their_own_user(audit, how):
    """Concurrent requests served by one FastAPI app never see each other's user."""
    app = load(audit, "fastapi_app.py")["create_app"](audit.Session, how=how)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

            async def create(n):
                response = await client.post(
                    "/customers",
                    json={"name": f"user{n}", "email": f"{n}@x.io"},
                    headers={"X-User-Id": f"user{n}"},
                )
                return response.json()["id"]

            ids = await asyncio.gather(*(create(n) for n in range(8)))
            return [(await client.get(f"/customers/{i}/history")).json() for i in ids]

    for history in asyncio.run(scenario()):
        names = {row["new"] for row in history if row["field"] == "name"}
        assert len(names) == 1
        assert {row["by"] for row in history} == names


SESSION_IO = {"add", "commit", "delete", "execute", "flush", "get", "query", "refresh", "scalars"}


def test_fastapi_recipe_does_no_blocking_session_io_in_async_endpoints():
    """No ``async def`` in the FastAPI recipe calls a Session method directly: it would block the event loop."""
    tree = ast.parse((EXAMPLES / "fastapi_app.py").read_text())
    blocking = [
        f"{node.name}: {call.func.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.AsyncFunctionDef)
        for call in ast.walk(node)
        if isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr in SESSION_IO
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id in {"db", "session"}
    ]
    assert blocking == []
