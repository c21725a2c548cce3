"""Database capture behind PgBouncer in transaction pooling mode (PostgreSQL).

PgBouncer lends a server connection for one transaction at a time; the context sqlaudit
hands the triggers is transaction-local, so it can neither be lost within a transaction
nor leak into another client's. The test starts a private PgBouncer with a pool of one
server connection, so every client shares it. It is skipped when PgBouncer is not
installed (Debian: ``apt-get install pgbouncer``; CI installs it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, String, create_engine, text
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from sqlaudit import audit_context, get_resource_changes, track_table

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"

pytestmark = pytest.mark.backends("postgresql")


@pytest.fixture
def capture() -> str:
    """Database capture: the triggers must get the right context through the pooler."""
    return "database"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def pgbouncer(engine: Engine) -> Iterator[str]:
    """A PgBouncer in transaction mode with one server connection; yields its URL."""
    if not os.path.exists(PGBOUNCER):
        pytest.skip("PgBouncer is not installed (Debian: apt-get install pgbouncer)")
    url = engine.url
    directory = Path(tempfile.mkdtemp(prefix="sqlaudit-pgbouncer-"))
    directory.chmod(0o755)
    port = _free_port()
    users = directory / "users.txt"
    users.write_text(f'"{url.username}" ""\n')
    config = directory / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"* = host={url.host} port={url.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\n"
        f"auth_type = trust\nauth_file = {users}\n"
        "pool_mode = transaction\ndefault_pool_size = 1\nmax_client_conn = 50\n"
        "unix_socket_dir =\n"
        f"logfile = {directory / 'pgbouncer.log'}\npidfile = {directory / 'pgbouncer.pid'}\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
    )
    for path in (users, config):
        path.chmod(0o644)
    command = [PGBOUNCER, str(config)]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root: it runs as postgres
        command[1:1] = ["-u", "postgres"]
        shutil.chown(directory, "postgres")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"PgBouncer did not start: {output}")
            time.sleep(0.05)
        pooled = url.set(drivername="postgresql+psycopg2", host="127.0.0.1", port=port)
        yield pooled.render_as_string(hide_password=False)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
        shutil.rmtree(directory, ignore_errors=True)


def test_context_never_leaks_between_clients_sharing_a_server_connection(audit, pgbouncer):
    """Two clients through one pooled server connection: each change has its own user, a raw write none."""

    @track_table(tracked_fields=["name"])
    class Customer(audit.base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50))

    audit.create_tables()
    first: Engine = create_engine(pgbouncer)
    second: Engine = create_engine(pgbouncer)
    try:
        audit.Session = sessionmaker(first)
        audit.configure()
        FirstSession, SecondSession = sessionmaker(first), sessionmaker(second)
        with FirstSession() as alice, SecondSession() as bob:
            with audit_context(user_id="alice"):
                alice.add(Customer(id=1, name="a"))
                alice.flush()
                alice.add(Customer(id=2, name="a2"))  # a second statement, same transaction
                alice.commit()
            with second.begin() as connection:  # same server connection, no context
                connection.execute(text("INSERT INTO customers (id, name) VALUES (3, 'raw')"))
            with audit_context(user_id="bob"):
                bob.add(Customer(id=4, name="b"))
                bob.commit()
            with audit_context(user_id="alice"):
                alice.get(Customer, 4).name = "b by alice"
                alice.commit()
        servers = _server_pids(first)
    finally:
        first.dispose()
        second.dispose()

    changes = {
        (c.resource_id, c.operation): (c.changed_by, c.transaction_id)
        for c in get_resource_changes(Customer)
    }
    assert {key: who for key, (who, _) in changes.items()} == {
        ("1", "insert"): "alice",
        ("2", "insert"): "alice",
        ("3", "insert"): None,
        ("4", "insert"): "bob",
        ("4", "update"): "alice",
    }
    transactions = {key: tx for key, (_, tx) in changes.items()}
    assert transactions[("1", "insert")] == transactions[("2", "insert")]
    assert len(set(transactions.values())) == 4
    assert len(servers) == 1  # every client was lent the one server connection


def _server_pids(engine: Engine) -> set[Any]:
    pids = set()
    for _ in range(3):
        with engine.connect() as connection:
            pids.add(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())
    return pids
