"""The command line: schedule every contestant x workload in its own process, repeat.

``python -m benchmarks [--quick] [--databases sqlite,postgresql:psycopg2,...] [--repeat N]
[--contestants plain,sqlaudit,floor,continuum,history,trigger] [--output docs/benchmarks.md]``

``--databases`` names targets: a database with its default driver (``sqlite``,
``postgresql``, ``mariadb``) or ``database:driver`` (``sqlite:aiosqlite``,
``postgresql:psycopg2``, ``postgresql:asyncpg``, ``mariadb:aiomysql``,
``mariadb:mysqlclient``); by default every target whose driver is installed. Per
target and repeat, each workload runs for every contestant back to back (so the
baseline is measured next to what is compared with it, on the same driver), in
forward order on even repeats and reverse order on odd ones. The peers and R1 run
on each database's default driver only. A target that does not answer, or whose
driver is not installed, is skipped and said so in the report. After the timed
repeats, one more pass measures peak memory with tracemalloc (``--no-memory`` skips
it). On each database's default driver, W1 is then run with sqlaudit's change table
built with every index, without each index in turn and without any, next to plain
SQLAlchemy (``--no-index-costs`` skips it). The raw results are kept as JSON
(``--json``); ``--report-only FILE`` rewrites the report from one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from benchmarks import machine, report
from benchmarks.contestants import CONTESTANTS
from benchmarks.readback import table_name
from benchmarks.settings import FULL, QUICK, TARGETS, Target, default_workdir
from benchmarks.worker import MARKER
from benchmarks.workloads import WORKLOADS
from sqlaudit._schema import build_change_table

__all__ = ["main", "parse_args"]

_ROOT = Path(__file__).resolve().parent.parent
_TIMEOUT = 1800  # seconds, per process


def _names(value: str, allowed: tuple[str, ...] | list[str]) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown: {', '.join(unknown)}; choose from {', '.join(allowed)}"
        )
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small scale: a couple of minutes")
    parser.add_argument(
        "--databases",
        type=lambda v: _names(v, list(TARGETS)),
        default=[name for name, target in TARGETS.items() if target.installed()],
        help=f"comma-separated targets: {','.join(TARGETS)} (default: all installed)",
    )
    parser.add_argument(
        "--contestants",
        type=lambda v: _names(v, list(CONTESTANTS)),
        default=list(CONTESTANTS),
        help=f"comma-separated: {','.join(CONTESTANTS)} (default: all)",
    )
    parser.add_argument(
        "--workloads",
        type=lambda v: _names(v, [*WORKLOADS, "R1"]),
        default=[*WORKLOADS, "R1"],
        help="comma-separated: W1,W2,W3,W4,W5,R1 (default: all)",
    )
    parser.add_argument("--repeat", type=int, default=None, help="repeats (default 3, quick 1)")
    parser.add_argument("--output", type=Path, help="write the Markdown report here")
    parser.add_argument("--json", type=Path, help="keep the raw results here")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc pass")
    parser.add_argument(
        "--memory-for",
        type=lambda v: _names(v, list(CONTESTANTS)),
        help="contestants measured in the tracemalloc pass (default: all)",
    )
    parser.add_argument(
        "--index-costs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="W1 without each change-table index in turn (default: on)",
    )
    parser.add_argument("--workdir", type=Path, default=default_workdir(), help="SQLite files")
    parser.add_argument("--report-only", type=Path, help="rewrite the report from saved JSON")
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def _spawn(spec: dict[str, Any]) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.worker", json.dumps(spec)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")])),
    }
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=_TIMEOUT, cwd=_ROOT, env=env
        )
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"timed out after {_TIMEOUT} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])
    lines = [
        line
        for line in done.stderr.strip().splitlines()
        if line.strip() and not line.startswith("(Background on this error")
    ]
    return {"status": "failed", "reason": lines[-1] if lines else f"exit code {done.returncode}"}


def _reachable(target: Target, workdir: Path) -> str | None:
    if not target.installed():
        return f"the driver {target.driver} is not installed (import {target.module})"
    if target.database == "sqlite":
        return None
    engine = create_engine(target.setup_url(workdir))
    shown = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"not reachable at {shown}: {type(exc).__name__}"
    return None


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _spec(args: argparse.Namespace, target: Target, **spec: Any) -> dict[str, Any]:
    name = spec.pop("name", "bench")
    return {
        "database": target.database,
        "url": target.url(args.workdir, name=name),
        "setup_url": target.setup_url(args.workdir, name=name),
        "async": target.is_async,
        "scale": (QUICK if args.quick else FULL).as_dict(),
        **spec,
    }


def _bench_target(args: argparse.Namespace, target: Target, results: dict[str, Any]) -> None:
    scale = QUICK if args.quick else FULL
    runs: dict[str, Any] = results["databases"][target.name]["runs"]
    writes = [name for name in args.workloads if name in WORKLOADS]
    default = TARGETS[target.database].driver
    elsewhere = [
        name
        for name in args.contestants
        if not (target.is_default or CONTESTANTS[name].every_driver)
    ]
    for workload in writes:
        for name in elsewhere:
            reason = f"measured on {default} only, the database's default driver"
            runs.setdefault(workload, {})[name] = [{"status": "unavailable", "reason": reason}]
    for workload in writes:
        for name in args.contestants:
            only = CONTESTANTS[name].workloads
            if only is not None and workload not in only and name not in elsewhere:
                reason = f"measured on {', '.join(only)} only"
                runs.setdefault(workload, {})[name] = [{"status": "unavailable", "reason": reason}]
    contestants = [name for name in args.contestants if name not in elsewhere]
    passes = [(repeat, False) for repeat in range(args.repeat)]
    if not args.no_memory:
        passes.append((args.repeat, True))
    for repeat, memory in passes:
        order = contestants if repeat % 2 == 0 else contestants[::-1]
        if memory and args.memory_for is not None:
            order = [name for name in order if name in args.memory_for]
        for workload in writes:
            for name in order:
                only = CONTESTANTS[name].workloads
                if only is not None and workload not in only:
                    continue
                spec = _spec(args, target, contestant=name, workload=workload, memory=memory)
                result = _spawn(spec)
                runs.setdefault(workload, {}).setdefault(name, []).append(
                    {**result, "repeat": repeat, "memory_pass": memory}
                )
                _log(
                    f"{target.name} {workload} {name} {'memory' if memory else repeat}: "
                    f"{result.get('seconds', result.get('reason'))}"
                )
                _save(args, results)
    if target.is_default and "R1" in args.workloads and "sqlaudit" in args.contestants:
        for size in scale.r1_sizes:
            for repeat in range(args.repeat):
                spec = _spec(
                    args,
                    target,
                    name=table_name(size),
                    contestant="sqlaudit",
                    workload="R1",
                    size=size,
                )
                result = _spawn(spec)
                runs.setdefault("R1", {}).setdefault(str(size), []).append(
                    {**result, "repeat": repeat}
                )
                measured = result.get("ms_median", result.get("reason"))
                _log(f"{target.name} R1 {size} {repeat}: {measured}")
                _save(args, results)
    if target.is_default and args.index_costs and "W1" in writes:
        _bench_index_costs(args, target, results)


def _bench_index_costs(args: argparse.Namespace, target: Target, results: dict[str, Any]) -> None:
    """W1 next to plain SQLAlchemy, with every change-table index, without each, without any."""
    indexes = sorted(
        build_change_table("sqlaudit_changes", None).indexes, key=lambda i: i.name or ""
    )
    names = [index.name or "" for index in indexes]
    variants: list[tuple[str, str, list[str]]] = [
        ("plain", "plain", []),
        ("all", "sqlaudit", []),
        *[(f"without:{name}", "sqlaudit", [name]) for name in names],
        ("none", "sqlaudit", names),
    ]
    costs: dict[str, Any] = results["databases"][target.name]["index_costs"]
    costs["indexes"] = {index.name: [column.name for column in index.columns] for index in indexes}
    for repeat in range(args.repeat):
        for key, contestant, dropped in variants if repeat % 2 == 0 else variants[::-1]:
            spec = _spec(args, target, contestant=contestant, workload="W1", drop_indexes=dropped)
            result = _spawn(spec)
            costs.setdefault("runs", {}).setdefault(key, []).append({**result, "repeat": repeat})
            _log(f"{target.name} W1 {key} {repeat}: {result.get('seconds', result.get('reason'))}")
            _save(args, results)


def _save(args: argparse.Namespace, results: dict[str, Any]) -> None:
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks (or only rewrite the report) and print the summary."""
    args = parse_args(argv)
    if args.report_only is not None:
        results = json.loads(args.report_only.read_text())
    else:
        command = "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv)
        scale = QUICK if args.quick else FULL
        results = {
            "command": command.strip(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "scale": scale.as_dict(),
            "repeat": args.repeat,
            "contestants": args.contestants,
            "workloads": args.workloads,
            "memory_for": None if args.no_memory else (args.memory_for or args.contestants),
            "environment": machine.describe(args.contestants),
            "databases": {},
        }
        for name in args.databases:
            target = TARGETS[name]
            entry: dict[str, Any] = {
                "database": target.database,
                "driver": target.driver,
                "runs": {},
                "index_costs": {},
                "server": None,
                "skipped": _reachable(target, args.workdir),
            }
            results["databases"][name] = entry
            if entry["skipped"] is not None:
                _log(f"{name}: {entry['skipped']}")
                continue
            entry["server"] = machine.server_version(target.setup_url(args.workdir))
            _bench_target(args, target, results)
        results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        _save(args, results)
    summary = report.summarise(results)
    print(report.text_summary(summary))
    if args.output is not None:
        chart = args.output.parent / "_static" / "benchmarks.png"
        report.write(summary, args.output, chart)
        _log(f"wrote {args.output} and {chart}")
    return 0
