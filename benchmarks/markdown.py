"""Render the summary of a run as the Markdown page ``docs/benchmarks.md``."""

from __future__ import annotations

from typing import Any

from benchmarks.contestants import CONTESTANTS
from benchmarks.workloads import WORKLOADS

__all__ = ["TITLES", "render"]

TITLES = {"sqlite": "SQLite (file)", "postgresql": "PostgreSQL", "mariadb": "MariaDB"}


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return [*lines, ""]


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def _recorded(row: dict[str, Any]) -> str:
    if row["expected"] is None:
        return "- (no audit)"
    unit = "fields" if row["granularity"] == "field" else "objects"
    text = f"{row['recorded']:,} / {row['expected']:,} {unit}"
    return text + (f" **fewer**{_flag(row)}" if row["fewer"] else "")


def _flag(row: dict[str, Any]) -> str:
    from benchmarks.report import shortfall  # report imports this module

    return shortfall(row)


def _header(summary: dict[str, Any]) -> list[str]:
    env = summary["environment"]
    scale = summary["scale"]
    machine = env["machine"]
    lines = [
        "# Benchmarks",
        "",
        "What auditing costs each write, measured against plain SQLAlchemy (the baseline) "
        "and the peers on the same workloads, in one run. Absolute times on shared machines "
        "are noisy, so the tables give **ratios to the baseline measured in the same run**, "
        "next to it. The goals each result is held to are listed under Budget below.",
        "",
        "Reproduce with `nox -s bench` (arguments after `--` go to the runner), or in an "
        "environment with `benchmarks/requirements.txt` installed: "
        "`python -m benchmarks --output docs/benchmarks.md` "
        "(`--quick`, `--databases` naming targets such as `postgresql:psycopg2`, "
        "`--contestants`, `--workloads`, `--repeat N`, `--no-index-costs`, `--json`).",
        "",
        "## The run",
        "",
        f"- Command: `{summary['command']}`",
        f"- Date: {summary['started']} to {summary.get('finished', '?')} (UTC)",
        f"- Scale: **{scale['name']}**: W1 {scale['objects']:,} inserts, W2 {scale['objects']:,} "
        f"updates, commit every {scale['batch']}; W3 {scale['single_commits']:,} transactions; "
        f"W4 {scale['deletes']:,} deletes; W5 {scale['objects']:,} rows; R1 {scale['lookups']} "
        f"lookups at {', '.join(f'{size:,}' for size in scale['r1_sizes'])} rows",
        f"- Repeats: {summary['repeat']} (medians reported), each contestant x workload in a "
        "process of its own, contestant order reversed on every other repeat",
        f"- sqlaudit at commit {env['sqlaudit_commit']}",
        f"- Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory']} memory, "
        f"{machine['platform']}",
        "",
    ]
    versions = [[name, version] for name, version in env["packages"].items()]
    servers: dict[str, str] = {}
    for name, entry in summary["databases"].items():
        database = entry.get("database", name)
        if entry["server"] or database not in servers:
            servers[database] = entry["server"] or f"skipped: {entry['skipped']}"
    versions += [[f"{TITLES.get(db, db)} server", server] for db, server in servers.items()]
    memory_for = summary.get("memory_for", _memory_from_command(summary["command"]))
    if memory_for is not None:
        labels = ", ".join(CONTESTANTS[name].label for name in memory_for)
        lines.insert(-1, f"- Peak memory measured for: {labels} (`-` elsewhere: not measured)")
    return lines + _table(["component", "version"], versions)


def _memory_from_command(command: str) -> list[str] | None:
    """Read ``--memory-for`` back from the command of a run that did not store it."""
    words = command.split()
    if "--no-memory" in words:
        return None
    if "--memory-for" in words:
        return words[words.index("--memory-for") + 1].split(",")
    return list(CONTESTANTS)


def _ratios(summary: dict[str, Any], chart: str | None) -> list[str]:
    lines = [
        "## Time ratios",
        "",
        "Time of each workload divided by plain SQLAlchemy's on the same database and driver.",
        "",
    ]
    rows = []
    for entry in summary["databases"].values():
        if entry["skipped"]:
            continue
        for name, contestant in CONTESTANTS.items():
            cells = [entry["writes"].get(w, {}).get(name) for w in WORKLOADS]
            if name == "plain" or all(
                cell is None or cell.get("status") == "unavailable" for cell in cells
            ):
                continue
            rows.append([entry["title"], contestant.label] + [_cell(cell) for cell in cells])
    lines += _table(["database", "contestant", *WORKLOADS], rows)
    if chart:
        lines += [f"![Time ratios per workload, database and contestant]({chart})", ""]
    return lines


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    if row.get("status") != "ok":
        return "not available" if row.get("status") == "unavailable" else "failed"
    text = f"{row['ratio']:.2f}x" if row.get("ratio") is not None else "-"
    return text + _flag(row)


def _drivers(summary: dict[str, Any]) -> list[str]:
    from benchmarks.report import DRIVER_SPREAD  # report imports this module

    rows = summary.get("drivers") or []
    if not rows:
        return []
    lines = [
        "## Drivers",
        "",
        "sqlaudit's ratio to plain SQLAlchemy on each driver of a database (each ratio is "
        "measured against plain SQLAlchemy on that same driver). No driver may be more than "
        f"{DRIVER_SPREAD}x worse than the best one on any workload. A ratio also moves with "
        "the baseline: a driver whose plain SQLAlchemy is slower (an async driver's greenlet "
        "and event loop, aiosqlite's thread) shows the same added time as a smaller ratio, "
        "so the time sqlaudit adds (median seconds, sqlaudit minus plain) is given too.",
        "",
    ]
    table = [
        [
            TITLES.get(row["database"], row["database"]),
            row["workload"],
            ", ".join(f"{driver} {ratio:.2f}x" for driver, ratio in row["ratios"].items()),
            ", ".join(
                f"{driver} {seconds:+.3f}" for driver, seconds in row["added_seconds"].items()
            ),
            f"{row['worst']} - {row['best']} = {row['spread']:.2f}x",
            row["verdict"],
        ]
        for row in rows
    ]
    header = ["database", "workload", "sqlaudit / plain", "added s", "worst - best", "verdict"]
    return lines + _table(header, table)


def _index_costs(summary: dict[str, Any]) -> list[str]:
    shown = {
        name: entry for name, entry in summary["databases"].items() if entry.get("index_costs")
    }
    if not shown:
        return []
    lines = [
        "## Index costs (W1)",
        "",
        "W1 with sqlaudit's change table built with every index, then without each index in "
        "turn, then without any, each next to plain SQLAlchemy in the same repeat (on each "
        "database's default driver). An index's cost is the time with every index minus the "
        "time without it, in ms for the whole workload and in ratio points.",
        "",
    ]
    for entry in shown.values():
        costs = entry["index_costs"]
        lines += [f"{entry['title']}: plain SQLAlchemy {costs['plain_ms']:.0f} ms.", ""]
        rows = []
        for row in costs["rows"]:
            variant = row["variant"]
            if variant == "all":
                label, cost = "every index", "-"
            elif variant == "none":
                label, cost = "no index", "all indexes: "
            else:
                name = variant.removeprefix("without:")
                columns = ", ".join(costs["indexes"].get(name, []))
                label, cost = f"without {name} ({columns})", ""
            if row["status"] != "ok":
                rows.append([label, "failed", "-", "-"])
                continue
            if cost != "-":
                cost += f"{row['cost_ms']:+.0f} ms ({row['cost_ratio']:+.2f}x)"
            rows.append([label, f"{row['ms']:.0f}", f"{row['ratio']:.2f}x", cost])
        lines += _table(["change table", "W1 ms", "ratio to plain", "index cost"], rows)
    return lines


def _budget(summary: dict[str, Any]) -> list[str]:
    lines = [
        "## Budget",
        "",
        "sqlaudit against its performance budget. SQLite: W1 and W2 at most 1.5x, W3 1.15x, "
        "W4 2x. PostgreSQL: as cheap as a hand-written PL/pgSQL audit trigger (W1 2x, W2 1.7x, "
        "W3 1.4x, W4 1.5x; the trigger measured in this run is shown next to sqlaudit). "
        "Everywhere: W5 at most 2x the unaudited bulk statement; R1 under 1 ms per lookup at "
        "the smaller table and no more than 1.3x that at the bigger one; peak memory within "
        "10 MB of the baseline; faster than every peer on every workload. A workload whose "
        "changes are not all recorded never counts as met.",
        "",
    ]
    rows = [
        [
            summary["databases"][r["database"]]["title"],
            r["check"],
            r["limit"],
            r["measured"],
            r["verdict"],
        ]
        for r in summary["budget"]
    ]
    return lines + _table(["database", "check", "limit", "measured", "verdict"], rows)


def _where_the_time_goes(summary: dict[str, Any]) -> list[str]:
    """Explain each missed time limit against the storage floor measured in the same run."""
    bullets = []
    for row in summary["budget"]:
        check, database = row["check"], row["database"]
        if not check.endswith(" time") or "missed" not in row["verdict"]:
            continue
        workload = check.split()[0]
        writes = summary["databases"][database]["writes"].get(workload, {})
        ours, floor = writes.get("sqlaudit", {}), writes.get("floor", {})
        if ours.get("status") != "ok" or floor.get("status") != "ok" or floor["fewer"]:
            continue
        limit = float(row["limit"].removeprefix("<=").strip().removesuffix("x"))
        title = f"{summary['databases'][database]['title']} {workload} (limit {limit}x)"
        above = ours["ratio"] - floor["ratio"]
        if above < 0:
            bullets.append(
                f"- {title}: sqlaudit {ours['ratio']:.2f}x, the storage floor "
                f"{floor['ratio']:.2f}x: sqlaudit measured below the floor, that is within "
                "the noise of it; the floor itself is "
                + ("above" if floor["ratio"] > limit else "within")
                + " the limit."
            )
        elif floor["ratio"] > limit:
            trigger = writes.get("trigger", {})
            server_side = (
                f" The trigger ({trigger['ratio']:.2f}x) writes its rows inside the server, "
                "without sending them from the client."
                if trigger.get("status") == "ok" and not trigger["fewer"]
                else ""
            )
            bullets.append(
                f"- {title}: the storage floor alone costs {floor['ratio']:.2f}x, above the "
                "limit: sending and writing one indexed change row per changed field from the "
                "client costs more than the budget allows, whatever the capture does; "
                f"sqlaudit adds {above:+.2f}x to it.{server_side}"
            )
        else:
            bullets.append(
                f"- {title}: the storage floor costs {floor['ratio']:.2f}x, within the limit; "
                f"sqlaudit's capture (old values, user and context, typed encoding) adds "
                f"{above:+.2f}x to it."
            )
    if not bullets:
        return []
    return [
        "### Where the time goes",
        "",
        "Each missed time limit against the storage floor of the same run (a minimal hook "
        "writing the same change rows into the same table, see below): what the floor costs "
        "is the price of the storage format, what sqlaudit costs above it the price of its "
        "capture. Run-to-run noise on these ratios is about 0.1x to 0.2x.",
        "",
        *bullets,
        "",
        "R1 is one indexed query per lookup (statements / lookup 1.00, the "
        "(table, resource, time) index, no sort). A lookup of a resource not read before "
        "costs the database's page reads, which depend on the machine's disk and cache "
        "(a table larger than the buffer pool grows them); the same resources read again "
        "cost less.",
        "",
        "W5 (no floor: the minimal hook sees no bulk statement): sqlaudit audits the bulk "
        "UPDATE inside the database, so no row passes through Python and memory stays flat; "
        "what remains is the database inserting one indexed change row per updated row, "
        "next to an UPDATE that rewrites rows in place. The PL/pgSQL trigger pays the same "
        "price on PostgreSQL (its W5 above).",
        "",
    ]


def _database(database: str, entry: dict[str, Any]) -> list[str]:
    lines = [f"## {entry['title']}", ""]
    if entry["skipped"]:
        return [*lines, f"Skipped: {entry['skipped']}.", ""]
    lines += [f"Server: {entry['server']}.", ""]
    rows = []
    absent: dict[str, str] = {}
    for workload, by_name in entry["writes"].items():
        for name, contestant in CONTESTANTS.items():
            row = by_name.get(name)
            if row is None:
                continue
            if row.get("status") == "unavailable":
                absent[contestant.label] = row.get("reason") or "not available"
                continue
            if row.get("status") != "ok":
                rows.append(
                    [
                        workload,
                        contestant.label,
                        "-",
                        _cell(row),
                        "-",
                        row.get("reason") or "-",
                        "-",
                        "-",
                    ]
                )
                continue
            rows.append(
                [
                    workload,
                    contestant.label,
                    f"{row['seconds']:.3f}",
                    _cell(row),
                    f"{row['statements_per_transaction']:.1f}",
                    _recorded(row),
                    _fmt(row.get("peak_mb"), ".1f"),
                    _fmt(row.get("peak_delta_mb"), "+.1f"),
                ]
            )
    lines += _table(
        [
            "workload",
            "contestant",
            "median s",
            "ratio",
            "statements / transaction",
            "audit rows recorded / expected",
            "peak MB",
            "peak vs baseline MB",
        ],
        rows,
    )
    lines += [f"Not run here: {label} ({reason})." for label, reason in absent.items()]
    if absent:
        lines.append("")
    if entry["r1"]:
        lines += ["R1, sqlaudit's `get_resource_changes()` for one resource at a time:", ""]
        r1_rows = []
        for size, row in sorted(entry["r1"].items(), key=lambda item: int(item[0])):
            if row["status"] != "ok":
                r1_rows.append([f"{int(size):,}", "failed", row.get("reason") or "-", "-", "-"])
                continue
            r1_rows.append(
                [
                    f"{int(size):,}",
                    f"{row['ms_median']:.3f}",
                    f"{row['ms_p95']:.3f}",
                    f"{row['statements_per_lookup']:.2f}",
                    f"{row['rows_per_lookup']:.1f}",
                ]
            )
        lines += _table(
            [
                "rows in change table",
                "median ms / lookup",
                "p95 ms",
                "statements / lookup",
                "changes / lookup",
            ],
            r1_rows,
        )
    return lines


_METHOD = """## How it is measured

- **Workloads** (`benchmarks/workloads.py`) on one table of six columns besides the key
  (str, str, int, Decimal, bool, datetime), four of them tracked (`name`, `quantity`,
  `price`, `active`): W1 insert, committing every 100; W2 update `quantity` and `price` of
  each object, loading and committing 100 at a time; W3 update `quantity` and commit after
  every object (`Session.get()`, then commit); W4 delete, 100 per transaction; W5 one bulk
  `update()` statement. W2-W5 start from rows loaded with one Core bulk insert before the
  timer starts (as when auditing is added to an existing table). Only the ORM part is timed.
- **Contestants** (`benchmarks/contestants.py`): plain SQLAlchemy; sqlaudit (a user id from
  a callback, the default change table); sqlaudit with `read_old_values=False`; sqlaudit
  with `capture="database"` (generated triggers write the same change rows inside the
  database: statement-level triggers over transition tables on PostgreSQL, row-level
  triggers on MariaDB and SQLite; the Session hands them the user once per transaction, one
  statement; measured on each database's default driver); sqlaudit with the hash chain of
  [Verification](verification.md) kept up to date (W1 on each database's default driver:
  anchoring adds nothing to the write path, so a separate process runs
  `anchor_changes(settle=timedelta(0))` every 0.2 s during the workload, as a scheduled job
  would, and the ratio to sqlaudit's W1 of the same run is what the chain costs the writes,
  contention with that process included; one more anchor run after the timer stops covers
  the rows written since the last one, and its time is given apart); the storage floor, a
  minimal `after_flush` hook writing the same change rows (`str()` values, a fixed user)
  into a table built like sqlaudit's, with sqlaudit's own write path (one INSERT per flush),
  and nothing else (no expired old values, no context, no bulk statements): what it costs is
  the price of one indexed row per changed field, what sqlaudit costs beyond it the price of
  its capture; SQLAlchemy-Continuum and SQLAlchemy-History with
  `make_versioned(user_cls=None)`, versioning only the four tracked columns (they write one
  full-row version per changed object, plus a transaction row per transaction); on
  PostgreSQL a hand-written PL/pgSQL `AFTER ... FOR EACH ROW` trigger writing one row per
  changed tracked field into a table with the same three indexes as sqlaudit's.
- **sqlaudit on W5** takes its in-database path (`docs/concepts.md`, "In the database"): the
  affected rows are staged in a temporary table and the change rows written by one
  `INSERT ... SELECT`, five statements besides the UPDATE whatever the number of rows.
- **Drivers**: each target is a database reached through one driver (sqlite3 and
  aiosqlite; psycopg 3, psycopg2 and asyncpg; PyMySQL, aiomysql and mysqlclient when
  installed). Async drivers run the same ORM workloads on Sessions bound to
  `AsyncEngine.sync_engine` inside `AsyncSession.run_sync`, SQLAlchemy's greenlet
  adaptation, which is how `AsyncSession` runs a flush; the untimed setup uses a sync
  driver of the same database. Every ratio is to plain SQLAlchemy on the same driver. The
  peers and R1 run on each database's default driver only.
- **Index costs** (W1): sqlaudit's change table is created as usual, then the named
  indexes are dropped before the workload runs; plain SQLAlchemy and every variant run
  back to back in each repeat.
- **Statements per transaction** are counted with a `before_cursor_execute` listener: each
  `executemany` batch counts once, and what a trigger does inside the server does not show.
- **Audit rows recorded** are counted in the audit table before and after the workload and
  compared with the changes made: changed fields for field-level contestants, changed
  objects for the row-versioning peers. Fewer is flagged; it is never a success.
- **Peak memory** is the tracemalloc peak of the workload, measured in one extra pass whose
  times are discarded (tracing slows what it traces); the baseline's peak is subtracted.
- **R1** fills a change table of its own (`sqlaudit_changes_r1_<rows>`) straight with a bulk
  insert (`COPY` on PostgreSQL), about ten rows per resource over five tables, fifty users
  and a year, rows of different resources interleaved in time; the table is kept and reused
  by later runs. It then reads 200 (quick: 100) random resources one at a time, after five
  warm-up reads.
"""


def render(summary: dict[str, Any], chart: str | None) -> str:
    """Return the whole page."""
    lines = _header(summary) + _ratios(summary, chart) + _drivers(summary) + _budget(summary)
    lines += _where_the_time_goes(summary) + _index_costs(summary)
    for database, entry in summary["databases"].items():
        lines += _database(database, entry)
    lines.append(_METHOD)
    return "\n".join(lines)
