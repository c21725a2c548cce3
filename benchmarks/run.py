"""The command line: schedule every contestant x workload in its own process, repeat.

``python -m benchmarks [--quick] [--databases sqlite,postgresql,mariadb] [--repeat N]
[--contestants plain,sqlaudit,floor,continuum,history,trigger] [--output docs/benchmarks.md]``

Per database and repeat, each workload runs for every contestant back to back (so
the baseline is measured next to what is compared with it), in forward order on
even repeats and reverse order on odd ones. A database that does not answer is
skipped and said so in the report. After the timed repeats, one more pass
measures peak memory with tracemalloc (``--no-memory`` skips it). The raw results
are kept as JSON (``--json``); ``--report-only FILE`` rewrites the report from one.
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
from benchmarks.settings import DATABASES, FULL, QUICK, database_url, default_workdir
from benchmarks.worker import MARKER
from benchmarks.workloads import WORKLOADS

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
        type=lambda v: _names(v, DATABASES),
        default=list(DATABASES),
        help="comma-separated: sqlite,postgresql,mariadb (default: all)",
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
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return {"status": "failed", "reason": lines[-1] if lines else f"exit code {done.returncode}"}


def _reachable(database: str, url: str) -> str | None:
    if database == "sqlite":
        return None
    engine = create_engine(url)
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


def _bench_database(args: argparse.Namespace, database: str, results: dict[str, Any]) -> None:
    scale = QUICK if args.quick else FULL
    url = database_url(database, args.workdir)
    runs: dict[str, Any] = results["databases"][database]["runs"]
    writes = [name for name in args.workloads if name in WORKLOADS]
    passes = [(repeat, False) for repeat in range(args.repeat)]
    if not args.no_memory:
        passes.append((args.repeat, True))
    for repeat, memory in passes:
        order = args.contestants if repeat % 2 == 0 else args.contestants[::-1]
        if memory and args.memory_for is not None:
            order = [name for name in order if name in args.memory_for]
        for workload in writes:
            for name in order:
                spec = {
                    "contestant": name,
                    "workload": workload,
                    "database": database,
                    "url": url,
                    "scale": scale.as_dict(),
                    "memory": memory,
                }
                result = _spawn(spec)
                runs.setdefault(workload, {}).setdefault(name, []).append(
                    {**result, "repeat": repeat, "memory_pass": memory}
                )
                _log(
                    f"{database} {workload} {name} {'memory' if memory else repeat}: "
                    f"{result.get('seconds', result.get('reason'))}"
                )
                _save(args, results)
    if "R1" in args.workloads and "sqlaudit" in args.contestants:
        for size in scale.r1_sizes:
            size_url = database_url(database, args.workdir, name=table_name(size))
            for repeat in range(args.repeat):
                spec = {
                    "contestant": "sqlaudit",
                    "workload": "R1",
                    "database": database,
                    "url": size_url,
                    "scale": scale.as_dict(),
                    "size": size,
                }
                result = _spawn(spec)
                runs.setdefault("R1", {}).setdefault(str(size), []).append(
                    {**result, "repeat": repeat}
                )
                measured = result.get("ms_median", result.get("reason"))
                _log(f"{database} R1 {size} {repeat}: {measured}")
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
        for database in args.databases:
            url = database_url(database, args.workdir)
            entry: dict[str, Any] = {
                "runs": {},
                "server": None,
                "skipped": _reachable(database, url),
            }
            results["databases"][database] = entry
            if entry["skipped"] is not None:
                _log(f"{database}: {entry['skipped']}")
                continue
            entry["server"] = machine.server_version(url)
            _bench_database(args, database, results)
        results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        _save(args, results)
    summary = report.summarise(results)
    print(report.text_summary(summary))
    if args.output is not None:
        chart = args.output.parent / "_static" / "benchmarks.png"
        report.write(summary, args.output, chart)
        _log(f"wrote {args.output} and {chart}")
    return 0
