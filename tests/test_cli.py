"""The sqlaudit command line, driven through click's test runner on every database."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner
from ops_support import add_rows, declare_customer
from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError
from test_legacy import RECORDS, fill_legacy
from test_legacy import declare_customer as declare_legacy_customer

from sqlaudit import clear_config
from sqlaudit.cli import cli
from sqlaudit.ops._common import build_operations_table

APP: dict[str, Any] = {}


def app_config() -> Any:
    """What ``--app test_cli:app_config`` loads: the test's config."""
    return APP["config"]


def url(audit) -> str:
    return audit.engine.url.render_as_string(hide_password=False)


def run(*args: str, input: str | None = None) -> Any:
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    return result


@pytest.fixture
def jane(audit):
    """A tracked Customer with Jane's insert and rename by user 5, and John's insert by 6."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    audit.user = 5
    with audit.Session() as session:
        session.add(customer(id=1, name="Jane", email="jane@example.com"))
        session.commit()
        session.get(customer, 1).name = "Jane Smith"
        session.commit()
    audit.user = 6
    with audit.Session() as session:
        session.add(customer(id=2, name="John"))
        session.commit()
    APP["config"] = audit.config
    clear_config()
    return customer


def test_history_through_the_app_lists_one_resource_newest_first(audit, jane):
    """``--app module:attr`` loads the config; ``history MODEL ID`` prints its changes."""
    result = run("--app", "test_cli:app_config", "history", "Customer", "1", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["field"], r["old"], r["new"], r["by"]) for r in rows] == [
        ("name", "Jane", "Jane Smith", "5"),
        ("email", None, "jane@example.com", "5"),
        ("name", None, "Jane", "5"),
    ]


def test_history_as_a_table(audit, jane):
    """The default output is a table with the values in it."""
    result = run("--app", "test_cli:app_config", "history", "customers", "1")
    assert result.exit_code == 0, result.output
    assert "Jane Smith" in result.output and "jane@example.com" in result.output


def test_history_needs_the_app_and_names_the_tracked_models(audit, jane):
    """Without --app, history says so; an unknown model is named with the tracked ones."""
    result = run("--url", url(audit), "history", "Customer", "1")
    assert result.exit_code == 2 and "--app" in result.output
    result = run("--app", "test_cli:app_config", "history", "Invoice", "1")
    assert result.exit_code == 2 and "Invoice is not a tracked model" in result.output
    assert "Customer" in result.output


def test_feed_by_user_and_since_from_the_url_alone(audit, jane):
    """``feed --user --since`` works from ``--url`` with no models, as CSV."""
    result = run("--url", url(audit), "feed", "--user", "6", "--since", "30d", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert sorted((r["resource"], r["field"], r["new"]) for r in rows) == [("2", "name", "John")]
    later = run("--url", url(audit), "feed", "--since", "2999-01-01", "--format", "json")
    assert later.exit_code == 0 and later.stdout == ""


def test_events_and_tx_from_the_url(audit, jane):
    """``events`` groups a transaction's rows; ``tx ID`` lists one transaction's changes."""
    result = run("--url", url(audit), "events", "--user", "5", "--format", "json")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["operation"], e["fields"]) for e in events] == [
        ("update", {"name": ["Jane", "Jane Smith"]}),
        ("insert", {"name": [None, "Jane"], "email": [None, "jane@example.com"]}),
    ]
    transaction = events[0]["transaction"]
    result = run("--url", url(audit), "tx", transaction, "--format", "json")
    assert [json.loads(line)["new"] for line in result.stdout.splitlines()] == ["Jane Smith"]
    missing = run("--url", url(audit), "tx", "no-such-transaction")
    assert missing.exit_code == 1 and "no change rows" in missing.output


def test_stats_counts_rows_per_table(audit, jane):
    """``stats`` lists each tracked table with its number of change rows."""
    add_rows(audit.engine, audit.config, 3, table_name="orders")
    result = run("--url", url(audit), "stats", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["table_name"], r["rows"]) for r in rows] == [("customers", 4), ("orders", 3)]
    table = run("--url", url(audit), "stats")
    assert "sqlaudit_changes" in table.output and "customers" in table.output


def test_prune_asks_then_deletes_and_logs(audit, jane):
    """``prune`` confirms, deletes old rows with a progress bar and logs the run."""
    add_rows(audit.engine, audit.config, 12)
    refused = run("--url", url(audit), "prune", "--before", "2021-01-01", input="n\n")
    assert refused.exit_code == 1 and "Delete 12 change rows" in refused.output
    result = run(
        "--url", url(audit), "prune", "--before", "2021-01-01", "--batch-size", "5", "--yes"
    )
    assert result.exit_code == 0, result.output
    assert "deleted 12 rows in 3 batches" in result.output
    log = build_operations_table(audit.config.table)
    with audit.engine.connect() as connection:
        assert [r.status for r in connection.execute(log.select())] == ["done"]
    bad = run("--url", url(audit), "prune", "--before", "last tuesday", "--yes")
    assert bad.exit_code == 2 and "pass a date" in bad.output
    neither = run("--url", url(audit), "prune", "--yes")
    assert neither.exit_code == 2 and "--older-than" in neither.output


def test_export_with_a_cursor_file_resumes_where_it_stopped(audit, jane, tmp_path):
    """``export --cursor-file`` appends only rows written since the previous run."""
    cursor = tmp_path / "export.cursor"
    out = tmp_path / "changes.jsonl"
    args = ["--url", url(audit), "export", "--cursor-file", str(cursor), "-o", str(out)]
    first = run(*args, "--batch-size", "1")
    assert first.exit_code == 0, first.output
    assert "exported 4 rows" in first.output
    add_rows(audit.engine, audit.config, 2, at=datetime.now(UTC), start=50)
    second = run(*args)
    assert "exported 2 rows" in second.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["resource_id"] for line in lines] == ["1", "1", "1", "2", "50", "51"]
    assert cursor.read_text().strip() == str(lines[-1]["id"])


def test_export_csv_to_standard_output(audit, jane):
    """``export --format csv`` writes a header and one line per change."""
    result = run("--url", url(audit), "export", "--format", "csv", "--decode")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["new_value"] for r in rows] == ["Jane", "jane@example.com", "Jane Smith", "John"]


def test_export_and_prune_take_model_class_names_with_the_app(audit, jane):
    """With --app, ``--model`` takes the class name as well as the table name."""
    add_rows(audit.engine, audit.config, 2, table_name="orders")
    app = ["--app", "test_cli:app_config"]
    result = run(*app, "export", "--model", "Customer")
    assert [json.loads(line)["table_name"] for line in result.stdout.splitlines()] == [
        "customers"
    ] * 4
    pruned = run(*app, "prune", "--model", "Customer", "--older-than", "0m", "--yes")
    assert "deleted 4 rows" in pruned.output
    left = run(*app, "export")
    assert [json.loads(line)["table_name"] for line in left.stdout.splitlines()] == ["orders"] * 2


def test_verify_anchors_then_finds_an_edit_and_exits_1(audit, jane):
    """``verify --anchor`` passes on untouched rows; an edited row fails it with its id."""
    result = run("--url", url(audit), "verify", "--anchor", "--settle", "0")
    assert result.exit_code == 0, result.output
    assert "ok: 4 rows in 1 anchors checked" in result.output
    table = audit.config.table
    with audit.engine.begin() as connection:
        connection.execute(update(table).where(table.c.resource_id == "2").values(changed_by="9"))
    failed = run("--url", url(audit), "verify", "--format", "json")
    assert failed.exit_code == 1
    problem = json.loads(failed.stdout.splitlines()[0])
    assert problem["kind"] == "edited" and "NOT OK" in failed.output


def test_verify_with_a_key_from_the_environment(audit, jane, monkeypatch):
    """``SQLAUDIT_ANCHOR_KEY`` keys the anchors; verifying them without it says to pass it."""
    monkeypatch.setenv("SQLAUDIT_ANCHOR_KEY", "a key of more than sixteen bytes")
    result = run("--url", url(audit), "verify", "--anchor", "--settle", "0")
    assert result.exit_code == 0 and "ok: 4 rows" in result.output
    monkeypatch.delenv("SQLAUDIT_ANCHOR_KEY")
    refused = run("--url", url(audit), "verify")
    assert refused.exit_code == 1 and "pass the same key=" in refused.output


def test_baseline_through_the_app(audit, jane):
    """``baseline MODEL`` records rows that have no start in their history."""
    from sqlalchemy import text

    with audit.engine.begin() as connection:
        connection.execute(text("INSERT INTO customers (id, name) VALUES (3, 'Old')"))
    result = run("--app", "test_cli:app_config", "baseline", "Customer")
    assert result.exit_code == 0, result.output
    assert "recorded a baseline of 1 rows" in result.output


def test_import_07_from_the_url(audit):
    """``import-0.7`` copies sqlaudit 0.7's history, and a second run skips it."""
    declare_legacy_customer(audit.base)
    audit.create_tables()
    fill_legacy(audit.engine, RECORDS)
    clear_config()
    first = run("--url", url(audit), "import-0.7")
    assert first.exit_code == 0, first.output
    assert f"imported {len(RECORDS)} records" in first.output
    again = run("--url", url(audit), "import-0.7")
    assert f"skipped {len(RECORDS)} already imported" in again.output


def test_the_07_import_reports_progress_after_each_batch(audit):
    """``import_legacy_history(progress=...)`` (behind the CLI's bar) hears of every batch."""
    from sqlaudit.legacy import import_legacy_history

    declare_legacy_customer(audit.base)
    audit.create_tables()
    fill_legacy(audit.engine, RECORDS)
    seen: list[int] = []
    import_legacy_history(audit.engine, batch_size=2, progress=seen.append)
    assert seen == [2, 4, 5]
    assert len(RECORDS) == 5


def test_without_app_or_url_the_cli_says_what_to_pass(engine, monkeypatch):
    """No --app and no --url is a usage error naming both (and their variables)."""
    monkeypatch.delenv("SQLAUDIT_APP", raising=False)
    monkeypatch.delenv("SQLAUDIT_URL", raising=False)
    result = run("feed")
    assert result.exit_code == 2 and "SQLAUDIT_URL" in result.output


def test_the_app_can_come_from_the_environment(audit, jane, monkeypatch):
    """``SQLAUDIT_APP`` stands for ``--app``."""
    monkeypatch.setenv("SQLAUDIT_APP", "test_cli:app_config")
    result = run("history", "Customer", "2", "--format", "json")
    assert result.exit_code == 0 and "John" in result.output


def test_the_cli_is_an_extra_in_the_test_extra_with_a_console_script():
    """click and rich come with the ``cli`` extra (and the ``test`` extra); ``sqlaudit`` is a script."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    for extra in ("cli", "test"):
        names = {dep.split(">")[0] for dep in project["optional-dependencies"][extra]}
        assert {"click", "rich"} <= names
    assert project["scripts"]["sqlaudit"] == "sqlaudit.cli:main"
    index = (root / "docs" / "index.md").read_text()
    for page in ("export", "retention", "erasure", "verification", "cli"):
        assert f"\n{page}\n" in index and (root / "docs" / f"{page}.md").exists()


def test_guard_install_check_and_drop(audit, jane):
    """``guard install`` makes the change table refuse raw DELETEs; ``check`` and ``drop`` follow."""
    before = run("--url", url(audit), "guard", "check")
    assert before.exit_code == 1
    assert "install_guard()" in before.output and "NOT guarded: sqlaudit_changes" in before.output
    installed = run("--url", url(audit), "guard", "install")
    assert installed.exit_code == 0, installed.output
    assert "guard installed on sqlaudit_changes" in installed.output
    checked = run("--url", url(audit), "guard", "check")
    assert (checked.exit_code, checked.output) == (0, "ok: sqlaudit_changes is guarded\n")
    with pytest.raises(DBAPIError, match="append-only"), audit.engine.begin() as connection:
        connection.execute(text("DELETE FROM sqlaudit_changes"))
    pruned = run("--url", url(audit), "prune", "--older-than", "0d", "--yes")
    assert pruned.exit_code == 0, pruned.output
    assert "deleted 4 rows" in pruned.output
    dropped = run("--url", url(audit), "guard", "drop")
    assert (dropped.exit_code, dropped.output) == (0, "guard dropped from sqlaudit_changes\n")
    assert run("--url", url(audit), "guard", "check").exit_code == 1


def test_guard_through_the_app_uses_its_change_table(audit, jane):
    """With ``--app``, the guard goes on the configured change table."""
    result = run("--app", "test_cli:app_config", "guard", "install")
    assert result.exit_code == 0, result.output
    assert run("--app", "test_cli:app_config", "guard", "check").exit_code == 0
