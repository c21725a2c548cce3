"""Benchmarks: what auditing costs each write, against plain SQLAlchemy and the peers.

Run everything (the full scale, every contestant, every database that answers,
through every installed driver) and write the report::

    python -m benchmarks --output docs/benchmarks.md

or a run of a couple of minutes::

    python -m benchmarks --quick --databases sqlite --repeat 1

``--databases`` takes targets: ``postgresql`` (its default driver, psycopg 3) or
``postgresql:psycopg2``, ``postgresql:asyncpg``, ``mariadb:aiomysql``,
``mariadb:mysqlclient``, ``sqlite:aiosqlite`` (:data:`benchmarks.settings.TARGETS`).

``nox -s bench`` installs what the benchmarks need (``benchmarks/requirements.txt``:
the peers SQLAlchemy-Continuum and SQLAlchemy-History, matplotlib, the drivers) into a
virtualenv of its own and runs the same entry point.

Modules: :mod:`benchmarks.settings` (scales, database URLs, targets), :mod:`benchmarks.models`
(the benchmark table), :mod:`benchmarks.contestants` (plain SQLAlchemy, sqlaudit, the
peers, a PL/pgSQL trigger), :mod:`benchmarks.workloads` (W1-W5),
:mod:`benchmarks.readback` (R1), :mod:`benchmarks.worker` (one contestant x workload
in one process), :mod:`benchmarks.run` (the command line and the schedule),
:mod:`benchmarks.report` (the Markdown report and the chart), :mod:`benchmarks.machine`
(versions and hardware) and :mod:`benchmarks.profile` (cProfile of one workload).
"""
