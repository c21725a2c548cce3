"""Profile one contestant x workload with cProfile (the untimed setup is not profiled).

``python -m benchmarks.profile --workload W1 --database sqlite [--contestant sqlaudit]``
prints the functions with the most cumulative and own time, and the sqlaudit
functions alone, so the hot path's cost can be read against the whole workload.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats

from sqlalchemy.orm import sessionmaker

from benchmarks import contestants
from benchmarks.settings import DATABASES, FULL, QUICK, database_url, default_workdir
from benchmarks.worker import _engine, _reset
from benchmarks.workloads import WORKLOADS

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Profile the workload named on the command line and print the statistics."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("--workload", choices=list(WORKLOADS), default="W1")
    parser.add_argument("--database", choices=DATABASES, default="sqlite")
    parser.add_argument("--contestant", choices=list(contestants.CONTESTANTS), default="sqlaudit")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    contestant = contestants.get(args.contestant)
    engine = _engine(database_url(args.database, default_workdir()))
    _reset(engine)
    base, item = contestant.declare()
    contestant.install(engine, base, item)
    workload = WORKLOADS[args.workload]
    ids = workload.setup(engine, item, scale)
    profiler = cProfile.Profile()
    profiler.enable()
    workload.run(sessionmaker(engine), item, scale, ids)
    profiler.disable()
    engine.dispose()
    for sort, restriction in (("cumulative", ()), ("tottime", ()), ("tottime", ("/sqlaudit/",))):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        if not restriction:
            stats.strip_dirs()
        stats.sort_stats(sort).print_stats(*restriction, args.top)
        title = f"{args.contestant} {args.workload} {args.database}: by {sort}"
        print(f"==== {title}{' (sqlaudit only)' if restriction else ''}\n{out.getvalue()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
