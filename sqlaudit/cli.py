"""The ``sqlaudit`` command line: look up history, prune, export, verify, import.

Install it with its extra, ``pip install "sqlaudit-trail[cli]"`` (click and rich).
It finds the application with ``--app module:attr`` (or ``SQLAUDIT_APP``): the
module is imported, so its ``@track_table`` models and its ``set_config`` call take
effect, and ``attr``, when given, may be the :class:`~sqlaudit.SQLAuditConfig` or a
function returning it. Commands that need no model (``feed``, ``events``, ``tx``,
``stats``, ``prune``, ``export``, ``verify``, ``partitions``, ``guard``, ``import-0.7``) also
work from a database URL alone, ``--url`` (or ``SQLAUDIT_URL``)::

    sqlaudit --app myapp.audit:config history Customer 2
    sqlaudit --url postgresql+psycopg://app@db/app feed --user 7 --since 2026-01-01
    sqlaudit --url sqlite:///app.db prune --older-than 365d --yes
    sqlaudit --url sqlite:///app.db export --cursor-file export.cursor >> changes.jsonl
    sqlaudit --url sqlite:///app.db verify --anchor
    sqlaudit --url postgresql+psycopg://app@db/app partitions --ensure --months-ahead 3
    sqlaudit --url sqlite:///app.db guard install
    sqlaudit --url sqlite:///app.db replay sqlite:///restored.db --until 2026-01-31T12:00
    sqlaudit --app myapp.audit:config rebuild Customer sqlite:///rebuilt.db --at 2026-01-31

Listing commands take ``--format table|json|csv`` (JSON lines). Long commands
(``prune``, ``export``, ``verify``, ``baseline``, ``import-0.7``) show a progress bar
on standard error; interrupted (Ctrl-C), they stop between batches and the same
command resumes them.

Example:
    >>> from click.testing import CliRunner
    >>> result = CliRunner().invoke(cli, ["--help"])
    >>> "history" in result.output
    True
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

try:
    import click
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.table import Table as RichTable
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "The sqlaudit command line needs click and rich: pip install 'sqlaudit-trail[cli]'."
    ) from exc

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from sqlaudit import _registry
from sqlaudit.config import SQLAuditConfig, clear_config, get_config, has_config, set_config
from sqlaudit.exceptions import SQLAuditError

__all__ = ["cli", "main"]

FORMATS = ("table", "json", "csv")


@dataclass
class _State:
    app: str | None
    url: str | None
    table: str | None
    schema: str | None
    time_zone: str
    anchor_key: str | None = None
    _engine: Engine | None = None
    _configured_here: bool = False

    def setup(self, *, needs_models: bool = False) -> SQLAuditConfig:
        """Load the application or connect to the URL, and return the config in force."""
        if self.app:
            if not has_config():
                _load_app(self.app)
            if not has_config():
                raise click.UsageError(
                    f"--app {self.app} did not configure sqlaudit: point it at the "
                    "SQLAuditConfig (module:attr), or at a module that calls set_config()."
                )
            return get_config()
        if needs_models:
            raise click.UsageError(
                "this command needs the application's tracked models: pass --app "
                "module:attr (or set SQLAUDIT_APP)."
            )
        if not self.url:
            raise click.UsageError(
                "no database: pass --app module:attr (or set SQLAUDIT_APP), or --url "
                "(or set SQLAUDIT_URL)."
            )
        if not has_config():
            self._engine = create_engine(self.url)
            self._configured_here = True
            set_config(
                SQLAuditConfig(
                    session_factory=sessionmaker(self._engine),
                    time_zone=self.time_zone,
                    table_name=self.table or "sqlaudit_changes",
                    table_schema=self.schema,
                    create_table=False,
                )
            )
        return get_config()

    def engine(self) -> Engine:
        """Return the engine the change table is reached with."""
        config = self.setup()
        if self._engine is None:
            with config.open_session() as session:
                bind = session.get_bind()
            assert isinstance(bind, Engine)
            self._engine = bind
        return self._engine

    def close(self) -> None:
        """Forget the config made from ``--url`` and close its connections."""
        if self._configured_here:
            clear_config()
            if self._engine is not None:
                self._engine.dispose()


def _load_app(spec: str) -> None:
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.UsageError(f"--app {spec}: cannot import {module_name} ({exc}).") from exc
    if not attr:
        return
    try:
        value = getattr(module, attr)
    except AttributeError as exc:
        raise click.UsageError(f"--app {spec}: {module_name} has no attribute {attr}.") from exc
    if callable(value) and not isinstance(value, SQLAuditConfig | type):
        value = value()
    if isinstance(value, SQLAuditConfig):
        set_config(value)


def _moment(value: str | None, option: str) -> datetime | None:
    """Read ``2026-01-31``, ``2026-01-31T12:00+02:00`` (naive: UTC) or an age (``30d``)."""
    if value is None:
        return None
    age = re.fullmatch(r"(\d+)([dhm])", value.strip())
    if age:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[age.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: int(age.group(1))})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(
            f"{value!r}: pass a date (2026-01-31), a time (2026-01-31T12:00:00+00:00) or "
            "an age (30d, 12h, 45m).",
            param_hint=option,
        ) from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _model(name: str) -> type[Any]:
    models = _registry.models()
    for model in models:
        tracked = _registry.lookup(model)
        if name in (model.__name__, tracked.table_name if tracked else None):
            return model
    known = ", ".join(sorted(model.__name__ for model in models)) or "none"
    raise click.BadParameter(
        f"{name} is not a tracked model of the application; tracked models: {known}.",
        param_hint="MODEL",
    )


def _emit(rows: Sequence[dict[str, Any]], output_format: str, title: str | None = None) -> None:
    if output_format == "json":
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False, default=str))
    elif output_format == "csv":
        if rows:
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
            click.echo(buffer.getvalue(), nl=False)
    else:
        table = RichTable(title=title)
        for name in rows[0] if rows else ["(no rows)"]:
            table.add_column(name)
        for row in rows:
            table.add_row(*(_cell(value) for value in row.values()))
        Console(width=160).print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _change(change: Any) -> dict[str, Any]:
    return {
        "id": change.change_id,
        "time": change.timestamp,
        "table": change.table_name,
        "resource": change.resource_id,
        "operation": str(change.operation),
        "field": change.field_name,
        "old": change.old_value,
        "new": change.new_value,
        "by": change.changed_by,
        "transaction": change.transaction_id,
    }


@contextmanager
def _progress(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.update(task, completed=done)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except SQLAuditError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        click.echo(
            "Interrupted: the batch in progress was rolled back; run the same command "
            "again to go on.",
            err=True,
        )
        raise SystemExit(130) from None


_format = click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="table, JSON lines or CSV.",
)


@click.group()
@click.option("--app", envvar="SQLAUDIT_APP", help="module:attr of the SQLAuditConfig.")
@click.option("--url", envvar="SQLAUDIT_URL", help="Database URL, when there is no --app.")
@click.option("--table", envvar="SQLAUDIT_TABLE", help="Change table name (with --url).")
@click.option("--schema", envvar="SQLAUDIT_SCHEMA", help="Change table schema (with --url).")
@click.option("--time-zone", default="UTC", show_default=True, help="Zone of times shown.")
@click.option(
    "--anchor-key",
    envvar="SQLAUDIT_ANCHOR_KEY",
    help="Key of keyed anchors (verify, prune); better set SQLAUDIT_ANCHOR_KEY.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    app: str | None,
    url: str | None,
    table: str | None,
    schema: str | None,
    time_zone: str,
    anchor_key: str | None,
) -> None:
    """Look up, prune, export and verify sqlaudit's change history.

    Example:
        >>> from click.testing import CliRunner
        >>> CliRunner().invoke(cli, ["stats", "--help"]).exit_code
        0
    """
    state = _State(app, url, table, schema, time_zone, anchor_key)
    ctx.obj = state
    ctx.call_on_close(state.close)


@cli.command()
@click.argument("model")
@click.argument("resource_id")
@click.option("--limit", type=int, default=50, show_default=True)
@_format
@click.pass_obj
def history(state: _State, model: str, resource_id: str, limit: int, output_format: str) -> None:
    """Show the changes of one resource, newest first (needs --app)."""
    from sqlaudit.retrieval import get_resource_changes

    with _errors():
        state.setup(needs_models=True)
        changes = get_resource_changes(_model(model), filter_resource_ids=resource_id, limit=limit)
        _emit([_change(c) for c in changes], output_format, f"{model} {resource_id}")


@cli.command()
@click.option("--model", "models", multiple=True, help="Tracked model (needs --app).")
@click.option("--user", "users", multiple=True, help="Only this user's changes.")
@click.option("--since", help="Date, time or age (30d).")
@click.option("--until", help="Date, time or age.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--cursor", help="The next cursor a previous page printed.")
@_format
@click.pass_obj
def events(
    state: _State,
    models: tuple[str, ...],
    users: tuple[str, ...],
    since: str | None,
    until: str | None,
    limit: int,
    cursor: str | None,
    output_format: str,
) -> None:
    """List events (what one transaction did to one resource), newest first."""
    from sqlaudit.history import get_events

    with _errors():
        state.setup(needs_models=bool(models))
        dates = _range(since, until)
        page = get_events(
            models=[_model(m) for m in models] or None,
            filter_user_ids=list(users) or None,
            filter_date_range=dates,
            limit=limit,
            cursor=cursor,
        )
        rows = [
            {
                "time": e.timestamp,
                "table": e.table_name,
                "resource": e.resource_id,
                "operation": str(e.operation),
                "by": e.changed_by,
                "fields": {name: [old, new] for name, (old, new) in e.fields.items()},
                "transaction": e.transaction_id,
            }
            for e in page
        ]
        _emit(rows, output_format, "events")
        if page.next_cursor:
            click.echo(f"next: --cursor {page.next_cursor}", err=True)


def _range(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None] | None:
    start, end = _moment(since, "--since"), _moment(until, "--until")
    return None if start is None and end is None else (start, end)


@cli.command()
@click.option("--user", "users", multiple=True, help="Only this user's changes.")
@click.option("--since", help="Date, time or age (30d).")
@click.option("--until", help="Date, time or age.")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--cursor", help="The next cursor a previous page printed.")
@_format
@click.pass_obj
def feed(
    state: _State,
    users: tuple[str, ...],
    since: str | None,
    until: str | None,
    limit: int,
    cursor: str | None,
    output_format: str,
) -> None:
    """List change rows across tables, newest first (who did what)."""
    from sqlaudit.history import get_changes

    with _errors():
        state.setup()
        page = get_changes(
            filter_user_ids=list(users) or None,
            filter_date_range=_range(since, until),
            limit=limit,
            cursor=cursor,
        )
        _emit([_change(c) for c in page], output_format, "changes")
        if page.next_cursor:
            click.echo(f"next: --cursor {page.next_cursor}", err=True)


@cli.command()
@click.argument("transaction_id")
@_format
@click.pass_obj
def tx(state: _State, transaction_id: str, output_format: str) -> None:
    """Show every change of one database transaction."""
    from sqlaudit.retrieval import get_transaction_changes

    with _errors():
        state.setup()
        changes = get_transaction_changes(transaction_id)
        if not changes:
            raise click.ClickException(f"no change rows have transaction id {transaction_id}.")
        _emit([_change(c) for c in changes], output_format, f"transaction {transaction_id}")


@cli.command()
@_format
@click.pass_obj
def stats(state: _State, output_format: str) -> None:
    """Rows per tracked table, and the size of the change table on disk."""
    with _errors():
        config = state.setup()
        engine = state.engine()
        table = config.table
        query = (
            select(
                table.c.table_name,
                func.count().label("rows"),
                func.min(table.c.changed_at).label("oldest"),
                func.max(table.c.changed_at).label("newest"),
            )
            .group_by(table.c.table_name)
            .order_by(table.c.table_name)
        )
        with engine.connect() as connection:
            rows = [dict(row._mapping) for row in connection.execute(query)]
            size = _size(connection, table.name, table.schema)
        _emit(rows, output_format, f"{table.name}: {_bytes(size)}")
        if output_format != "table":
            click.echo(f"{table.name} size: {_bytes(size)}", err=True)


def _size(connection: Any, name: str, schema: str | None) -> int | None:
    dialect = connection.dialect.name
    try:
        if dialect == "postgresql":
            qualified = f"{schema}.{name}" if schema else name
            # A partitioned table: the sum of its partitions (PostgreSQL 12+).
            query = text(
                "SELECT COALESCE((SELECT SUM(pg_total_relation_size(relid)) "
                "FROM pg_partition_tree(CAST(:name AS regclass))), "
                "pg_total_relation_size(CAST(:name AS regclass)))"
            )
            return int(connection.execute(query, {"name": qualified}).scalar_one())
        if dialect in ("mysql", "mariadb"):
            query = text(
                "SELECT data_length + index_length FROM information_schema.tables "
                "WHERE table_schema = COALESCE(:schema, DATABASE()) AND table_name = :name"
            )
            found = connection.execute(query, {"schema": schema, "name": name}).scalar()
            return None if found is None else int(found)
        found = connection.execute(
            text("SELECT SUM(pgsize) FROM dbstat WHERE name = :name"), {"name": name}
        ).scalar()
        return None if found is None else int(found)
    except Exception:  # a size is a nicety: SQLite without dbstat, no privilege
        connection.rollback()
        return None


def _bytes(size: int | None) -> str:
    if size is None:
        return "size unknown"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


@cli.command()
@click.option("--before", help="Delete rows changed before this date or time (naive: UTC).")
@click.option("--older-than", help="Delete rows older than this age (365d).")
@click.option("--model", "models", multiple=True, help="Only this model or table name.")
@click.option("--batch-size", type=int, default=5000, show_default=True)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def prune(
    state: _State,
    before: str | None,
    older_than: str | None,
    models: tuple[str, ...],
    batch_size: int,
    yes: bool,
) -> None:
    """Delete old change rows in short batches (the application keeps writing)."""
    from sqlaudit.ops import prune as run_prune

    if (before is None) == (older_than is None):
        raise click.UsageError("pass either --before DATE or --older-than AGE (365d).")
    moment = _moment(before or older_than, "--before" if before else "--older-than")
    assert moment is not None
    with _errors():
        config = state.setup()
        engine = state.engine()
        table = config.table
        names = _table_names(models)
        condition = [table.c.changed_at < moment]
        if names:
            condition.append(table.c.table_name.in_(names))
        with engine.connect() as connection:
            total = int(
                connection.execute(
                    select(func.count()).select_from(table).where(*condition)
                ).scalar_one()
            )
        if not yes:
            click.confirm(
                f"Delete {total} change rows written before {moment.isoformat()}?", abort=True
            )
        with _progress("pruning", total) as advance:
            report = run_prune(
                moment,
                models=names or None,
                batch_size=batch_size,
                bind=engine,
                table_name=table.name,
                table_schema=table.schema,
                performed_by=os.environ.get("USER"),
                anchor_key=state.anchor_key,
                progress=advance,
            )
        click.echo(
            f"deleted {report.rows_deleted} rows in {report.batches} batches"
            f"{_dropped(report.partitions_dropped)} (operation {report.operation_id})"
        )


def _dropped(names: Sequence[str]) -> str:
    return f" and {len(names)} partitions ({', '.join(names)})" if names else ""


@cli.command()
@click.option(
    "--create",
    "action",
    flag_value="create",
    help="Create the change table partitioned by month (PostgreSQL), with its partitions.",
)
@click.option(
    "--ensure",
    "action",
    flag_value="ensure",
    help="Create the coming months' partitions; move rows out of the default partition.",
)
@click.option("--months-ahead", type=int, default=3, show_default=True)
@click.pass_obj
def partitions(state: _State, action: str | None, months_ahead: int) -> None:
    """List, create or extend the monthly partitions of the change table (PostgreSQL)."""
    from sqlaudit.ops import create_partitioned_change_table, ensure_partitions, list_partitions

    with _errors():
        config = state.setup()
        engine = state.engine()
        table = config.table
        names = {"table_name": table.name, "table_schema": table.schema}
        if action is None:
            found = list_partitions(engine, **names)
        else:
            run = create_partitioned_change_table if action == "create" else ensure_partitions
            report = run(engine, months_ahead=months_ahead, **names)
            found = list(report.partitions)
            click.echo(
                f"created {len(report.created)} partitions"
                f"{': ' + ', '.join(report.created) if report.created else ''}; "
                f"moved {report.rows_moved} rows out of the default partition",
                err=True,
            )
        for partition in found:
            if partition.default:
                click.echo(f"{partition.name}\tDEFAULT")
            else:
                start = partition.start.isoformat() if partition.start else "MINVALUE"
                end = partition.end.isoformat() if partition.end else "MAXVALUE"
                click.echo(f"{partition.name}\t{start}\t{end}")


def _table_names(models: Sequence[str]) -> list[str]:
    """Return the table names of ``--model`` values: class or table names with --app."""
    if not _registry.models():
        return list(models)
    names = []
    for name in models:
        tracked = _registry.lookup(_model(name))
        assert tracked is not None
        names.append(tracked.table_name)
    return names


@cli.command()
@click.option("--format", "output_format", type=click.Choice(["jsonl", "csv"]), default="jsonl")
@click.option("--after", help="Continue after this cursor (the last id exported).")
@click.option(
    "--cursor-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the cursor from this file, and keep it there as the export goes on.",
)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", "models", multiple=True, help="Only this model or table name.")
@click.option("--since", help="Date, time or age (30d).")
@click.option("--until", help="Date, time or age.")
@click.option("--decode", is_flag=True, help="Plain JSON values instead of the stored text.")
@click.option("--batch-size", type=int, default=1000, show_default=True)
@click.pass_obj
def export(
    state: _State,
    output_format: str,
    after: str | None,
    cursor_file: Path | None,
    output: Path | None,
    models: tuple[str, ...],
    since: str | None,
    until: str | None,
    decode: bool,
    batch_size: int,
) -> None:
    """Stream change rows, oldest first, as JSON lines or CSV (resumable)."""
    from sqlaudit.ops import export_changes

    if after is None and cursor_file is not None and cursor_file.exists():
        after = cursor_file.read_text().strip() or None
    with _errors():
        config = state.setup()
        engine = state.engine()
        table = config.table
        out = output.open("a", encoding="utf-8", newline="") if output else sys.stdout
        total = 0
        first = True
        try:
            with _progress("exporting", None) as advance:
                while True:
                    report = export_changes(
                        out,
                        format=output_format,
                        after=after,
                        models=_table_names(models) or None,
                        since=_moment(since, "--since"),
                        until=_moment(until, "--until"),
                        decode_values=decode,
                        header=first and after is None,
                        batch_size=batch_size,
                        limit=batch_size * 10,
                        bind=engine,
                        table_name=table.name,
                        table_schema=table.schema,
                        progress=_offset(advance, total),
                    )
                    first = False
                    total += report.rows
                    after = report.cursor
                    out.flush()
                    if cursor_file is not None and after is not None:
                        cursor_file.write_text(after + "\n")
                    if report.complete:
                        break
        finally:
            if output:
                out.close()
        click.echo(f"exported {total} rows; cursor {after}", err=True)


def _offset(advance: Callable[[int], None], base: int) -> Callable[[int], None]:
    return lambda done: advance(base + done)


@cli.command()
@click.option("--anchor", is_flag=True, help="First anchor the rows written since the last run.")
@click.option("--settle", type=int, default=300, show_default=True, help="Seconds (--anchor).")
@click.option("--expected-head", help="A head kept outside the database.")
@_format
@click.pass_obj
def verify(
    state: _State, anchor: bool, settle: int, expected_head: str | None, output_format: str
) -> None:
    """Check the change rows against their anchors; exit 1 when anything was altered."""
    from sqlaudit.ops import anchor_changes
    from sqlaudit.ops import verify as run_verify

    with _errors():
        config = state.setup()
        engine = state.engine()
        name, schema = config.table.name, config.table.schema
        if anchor:
            with _progress("anchoring", None) as advance:
                anchored = anchor_changes(
                    settle=timedelta(seconds=settle),
                    key=state.anchor_key,
                    bind=engine,
                    table_name=name,
                    table_schema=schema,
                    progress=advance,
                )
            click.echo(f"anchored {anchored.rows} rows in {anchored.blocks} blocks", err=True)
        with _progress("verifying", None) as advance:
            report = run_verify(
                expected_head=expected_head,
                key=state.anchor_key,
                bind=engine,
                table_name=name,
                table_schema=schema,
                progress=advance,
            )
        _emit(
            [
                {
                    "kind": p.kind,
                    "change_id": p.change_id,
                    "anchor": p.anchor_id,
                    "problem": p.message,
                }
                for p in report.problems
            ],
            output_format,
            "problems",
        )
        click.echo(
            f"{'ok' if report.ok else 'NOT OK'}: {report.rows_checked} rows in "
            f"{report.anchors_checked} anchors checked, {report.unanchored_rows} not anchored "
            f"yet; head {report.head}"
        )
        if not report.ok:
            raise SystemExit(1)


@cli.group()
def guard() -> None:
    """Install, check or drop the change table's append-only guard.

    With the guard, the database refuses every UPDATE and DELETE of change rows
    (and TRUNCATE on PostgreSQL) except those of prune and erase.
    """


def _guarded_table(state: _State) -> tuple[Engine, dict[str, Any], str]:
    """Return the engine, the change table's options and its name, for the guard commands."""
    table = state.setup().table
    options = {"table_name": table.name, "table_schema": table.schema}
    return state.engine(), options, table.fullname


@guard.command("install")
@click.pass_obj
def guard_install(state: _State) -> None:
    """Install the guard (idempotent; creates the change table if missing)."""
    from sqlaudit.ops import install_guard

    with _errors():
        engine, options, name = _guarded_table(state)
        install_guard(engine, **options)
        click.echo(f"guard installed on {name}: only prune and erase may update or delete rows")


@guard.command("drop")
@click.pass_obj
def guard_drop(state: _State) -> None:
    """Remove the guard."""
    from sqlaudit.ops import drop_guard

    with _errors():
        engine, options, name = _guarded_table(state)
        drop_guard(engine, **options)
        click.echo(f"guard dropped from {name}")


@guard.command("check")
@click.pass_obj
def guard_check(state: _State) -> None:
    """Say whether the guard is installed; exit 1 when it is not, or not whole."""
    from sqlaudit.ops import check_guard

    with _errors():
        engine, options, name = _guarded_table(state)
        problems = check_guard(engine, **options)
        for problem in problems:
            click.echo(problem)
        if problems:
            click.echo(f"NOT guarded: {name}")
            raise SystemExit(1)
        click.echo(f"ok: {name} is guarded")


@cli.command()
@click.argument("model")
@click.option("--batch-size", type=int, default=1000, show_default=True)
@click.pass_obj
def baseline(state: _State, model: str, batch_size: int) -> None:
    """Record the current values of rows that have no start in their history (needs --app)."""
    from sqlaudit.history import record_baseline

    with _errors():
        config = state.setup(needs_models=True)
        with config.open_session() as session, _progress("baseline", None) as advance:
            recorded = record_baseline(
                session,
                _model(model),
                batch_size=batch_size,
                progress=lambda scanned, done: advance(scanned),
            )
            session.commit()
        click.echo(f"recorded a baseline of {recorded} rows")


@cli.command("import-0.7")
@click.option("--batch-size", type=int, default=500, show_default=True)
@click.option("--source-time-zone", default="UTC", show_default=True)
@click.option("--legacy-schema", help="Schema of sqlaudit 0.7's tables.")
@click.pass_obj
def import_07(
    state: _State, batch_size: int, source_time_zone: str, legacy_schema: str | None
) -> None:
    """Copy sqlaudit 0.7's history into the change table (idempotent, resumable)."""
    from sqlaudit.legacy import import_legacy_history

    with _errors():
        config = state.setup()
        with _progress("importing 0.7 records", None) as advance:
            report = import_legacy_history(
                state.engine(),
                config=config,
                batch_size=batch_size,
                source_time_zone=source_time_zone,
                legacy_schema=legacy_schema,
                progress=advance,
            )
        click.echo(
            f"imported {report.records_imported} records ({report.rows_written} rows), "
            f"skipped {report.records_skipped} already imported"
        )


@cli.command("replay")
@click.argument("target_url")
@click.option(
    "--since", help="Only transactions whose last statement started at or after this moment."
)
@click.option("--until", help="Only transactions whose last statement started before this moment.")
@click.option("--start-at", type=int, help="Resume at this log entry (printed by a failure).")
@click.option("--dry-run", is_flag=True, help="List the statements, run nothing.")
@click.option(
    "--replay-present",
    is_flag=True,
    help="Also replay the transactions the target's own query log holds.",
)
@_format
@click.pass_obj
def replay_command(
    state: _State,
    target_url: str,
    since: str | None,
    until: str | None,
    start_at: int | None,
    dry_run: bool,
    replay_present: bool,
    output_format: str,
) -> None:
    """Re-run the query log's writes (from --url) on the database at TARGET_URL.

    Transactions the target's own query log holds (restored with the backup) are
    skipped, and those replayed are logged there. A failure prints the statement and
    the --start-at to resume with, and exits 1.
    """
    from sqlaudit.querylog import replay

    with _errors():
        log_engine = create_engine(state.url) if state.url else state.engine()
        target = create_engine(target_url)
        try:
            result = replay(
                log_engine,
                target,
                since=_moment(since, "--since"),
                until=_moment(until, "--until"),
                dry_run=dry_run,
                start_at=start_at,
                skip_present=not replay_present,
            )
        finally:
            target.dispose()
            if state.url:
                log_engine.dispose()
        if dry_run:
            _emit(
                [
                    {
                        "id": entry.id,
                        "started": entry.started_at,
                        "kind": entry.kind,
                        "transaction": entry.transaction_id,
                        "statement": " ".join(entry.statement.split()),
                    }
                    for entry in result.entries
                ],
                output_format,
                "statements to replay",
            )
            click.echo(f"would replay {result.count} statements{_skipped(result)}", err=True)
        else:
            click.echo(f"replayed {result.count} statements{_skipped(result)}")


def _skipped(result: Any) -> str:
    if not result.skipped:
        return ""
    return f" ({result.skipped} skipped: the target's query log holds them)"


@cli.command("trim-log")
@click.option("--before", required=True, help="A date, a time or an age (30d).")
@click.option("--batch-size", type=int, default=10_000, show_default=True)
@click.pass_obj
def trim_log_command(state: _State, before: str, batch_size: int) -> None:
    """Delete the query log's entries (at --url) of transactions that ran before --before.

    Whole transactions only: one with a statement started at or after --before keeps
    all its entries. Run it after a backup, with the moment its snapshot began.
    """
    from sqlaudit.querylog import trim_log

    with _errors():
        log_engine = create_engine(state.url) if state.url else state.engine()
        try:
            moment = _moment(before, "--before")
            assert moment is not None
            deleted = trim_log(log_engine, before=moment, batch_size=batch_size)
        finally:
            if state.url:
                log_engine.dispose()
        click.echo(f"deleted {deleted} query log entries")


@cli.command("rebuild")
@click.argument("model")
@click.argument("target_url")
@click.option("--at", "at", required=True, help="The moment: a date, a time or an age (30d).")
@click.pass_obj
def rebuild_command(state: _State, model: str, target_url: str, at: str) -> None:
    """Write MODEL's rows as they were --at into its table on TARGET_URL (needs --app)."""
    from sqlaudit.querylog import rebuild_table

    with _errors():
        state.setup(needs_models=True)
        target = create_engine(target_url)
        try:
            moment = _moment(at, "--at")
            assert moment is not None
            result = rebuild_table(_model(model), at=moment, target=target)
        finally:
            target.dispose()
        click.echo(f"rebuilt {result.rows_written} rows of {result.table_name}")
        if result.incomplete:
            click.echo(
                f"{len(result.incomplete)} rows not rebuilt, their history is incomplete: "
                + ", ".join(result.incomplete),
                err=True,
            )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line (the ``sqlaudit`` console script).

    Example:
        >>> main(["--help"])  # doctest: +SKIP
    """
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="sqlaudit")
    finally:
        clear_config()
