"""The replay and rebuild commands, through click's test runner on every database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import Audit
from ops_support import declare_customer
from querylog_support import checksum, rows, second_engine
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from sqlaudit import clear_config
from sqlaudit._schema import create_change_table
from sqlaudit.cli import cli
from sqlaudit.querylog import log_queries, read_log
from sqlaudit.querylog._table import build_log_table, create_log_table

APP: dict[str, Any] = {}


def app_config() -> Any:
    """What ``--app test_querylog_cli:app_config`` loads: the test's config."""
    return APP["config"]


def url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def other(engine: Engine, tmp_path: Path) -> Iterator[Engine]:
    """An empty second database of the same dialect and driver."""
    yield from second_engine(engine, tmp_path)


@pytest.fixture
def logged(audit: Audit) -> type[Any]:
    """A tracked Customer whose table and three writes are in the query log."""
    customer = declare_customer(audit.base)
    log = log_queries(of=audit.engine)
    try:
        audit.create_tables()
        with audit.Session() as session:
            session.add_all([customer(id=n, name=f"c{n}") for n in (1, 2)])
            session.commit()
            session.get(customer, 2).email = "two@example.com"
            session.commit()
    finally:
        log.remove()
    return customer


def test_replay_dry_run_lists_and_replay_runs(
    audit: Audit, logged: type[Any], other: Engine
) -> None:
    """``replay --dry-run`` lists the statements; ``replay`` runs them: the tables match."""
    create_change_table(audit.config.table, other)  # created before the log was on
    listed = run("--url", url(audit.engine), "replay", url(other), "--dry-run", "--format", "json")
    assert listed.exit_code == 0, listed.output
    lines = [line for line in listed.output.splitlines() if line.startswith("{")]
    assert len(lines) == len(read_log(audit.engine))
    done = run("--url", url(audit.engine), "replay", url(other))
    assert done.exit_code == 0, done.output
    assert f"replayed {len(lines)} statements" in done.output
    assert checksum(other, "customers") == checksum(audit.engine, "customers")


def test_replay_skips_what_the_targets_log_holds_unless_told(
    audit: Audit, logged: type[Any], other: Engine
) -> None:
    """A second ``replay`` into a target with its own query log runs nothing and says
    why; ``--replay-present --dry-run`` lists everything again."""
    create_change_table(audit.config.table, other)
    create_log_table(build_log_table(), other)  # the target has a query log table
    count = len(read_log(audit.engine))
    assert (
        f"replayed {count} statements"
        in run("--url", url(audit.engine), "replay", url(other)).output
    )
    again = run("--url", url(audit.engine), "replay", url(other))
    assert again.exit_code == 0, again.output
    assert f"replayed 0 statements ({count} skipped" in again.output
    forced = run("--url", url(audit.engine), "replay", url(other), "--replay-present", "--dry-run")
    assert f"would replay {count} statements" in forced.output
    assert checksum(other, "customers") == checksum(audit.engine, "customers")


def test_replay_failure_prints_where_to_resume(
    audit: Audit, logged: type[Any], other: Engine
) -> None:
    """A failing statement exits 1 with the --start-at to resume with."""
    logged.__table__.create(other)
    with other.begin() as connection:
        connection.execute(insert(logged.__table__), {"id": 1, "name": "in the way"})
    failed = run("--url", url(audit.engine), "replay", url(other))
    assert failed.exit_code == 1
    assert "start_at=" in failed.output


def test_rebuild_writes_the_table_as_it_was(audit: Audit, logged: type[Any], other: Engine) -> None:
    """``rebuild MODEL TARGET --at`` writes the rows live at that moment."""
    moment = datetime.now(UTC)
    with audit.Session() as session:
        session.delete(session.get(logged, 1))
        session.commit()
    APP["config"] = audit.config
    clear_config()
    result = run(
        "--app",
        "test_querylog_cli:app_config",
        "rebuild",
        "Customer",
        url(other),
        "--at",
        moment.isoformat(),
    )
    assert result.exit_code == 0, result.output
    assert "rebuilt 2 rows of customers" in result.output
    assert [row[0] for row in rows(other, "customers")] == [1, 2]


def test_rebuild_names_an_unknown_model(audit: Audit, logged: type[Any], other: Engine) -> None:
    """An unknown model is refused, listing the tracked ones."""
    APP["config"] = audit.config
    clear_config()
    result = run(
        "--app", "test_querylog_cli:app_config", "rebuild", "Invoice", url(other), "--at", "1d"
    )
    assert result.exit_code == 2
    assert "tracked models: Customer" in result.output
