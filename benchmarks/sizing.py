"""``python -m benchmarks.sizing URL``: the bytes one change row takes on disk.

Writes change rows through session capture with the W1 workload (insert objects
of ``bench_item``, four tracked fields each, committing every 100) until the
change table holds ``--rows`` rows, then measures the change table and its
indexes as the database reports them: ``pg_total_relation_size`` over the
partition tree (PostgreSQL), ``data_length + index_length`` after ``ANALYZE
TABLE`` (MySQL/MariaDB), the pages of the table and its indexes in ``dbstat``
(SQLite). ``--partitioned`` (PostgreSQL) measures the monthly partitioned
change table.

It works on tables of its own, ``bench_item`` and ``sizing_changes``, which it
drops first: point it at a scratch database::

    python -m benchmarks.sizing postgresql+psycopg://postgres@127.0.0.1/scratch --rows 100000
"""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import sessionmaker

from benchmarks.models import TRACKED, declare_item, item_values
from sqlaudit import SQLAuditConfig, clear_config, register_hooks, set_config, track_table
from sqlaudit.hooks import unregister_hooks
from sqlaudit.ops import create_partitioned_change_table

TABLE = "sizing_changes"
BATCH = 100


def main(argv: list[str] | None = None) -> int:
    """Run the measure and print rows, bytes and bytes per row."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sizing", description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--partitioned", action="store_true")
    args = parser.parse_args(argv)
    engine = create_engine(args.url)
    rows, size = measure(engine, args.rows, partitioned=args.partitioned)
    kind = " (partitioned)" if args.partitioned else ""
    print(
        f"{engine.dialect.name}{kind} W1: {rows} change rows, {size} bytes "
        f"(table and indexes), {size / rows:.0f} bytes per row"
    )
    engine.dispose()
    return 0


def measure(engine: Engine, rows: int, *, partitioned: bool) -> tuple[int, int]:
    """Write ``rows`` change rows (rounded up to whole objects); return (rows, bytes on disk)."""
    base, item = declare_item()
    track_table(tracked_fields=list(TRACKED))(item)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {TABLE}")
        base.metadata.drop_all(connection)
        base.metadata.create_all(connection)
    if partitioned:
        create_partitioned_change_table(engine, table_name=TABLE, months_ahead=1)
    factory = sessionmaker(engine)
    set_config(SQLAuditConfig(session_factory=factory, table_name=TABLE))
    register_hooks()
    try:
        objects = -(-rows // len(TRACKED))
        with factory() as session:
            for start in range(1, objects + 1, BATCH):
                stop = min(start + BATCH, objects + 1)
                session.add_all([item(**item_values(i)) for i in range(start, stop)])
                session.commit()
        with engine.begin() as connection:
            count = int(connection.execute(text(f"SELECT count(*) FROM {TABLE}")).scalar_one())
            return count, _size(connection)
    finally:
        unregister_hooks()
        clear_config()


def _size(connection: Any) -> int:
    dialect = connection.dialect.name
    if dialect == "postgresql":
        return int(
            connection.execute(
                text(
                    "SELECT COALESCE((SELECT SUM(pg_total_relation_size(relid)) "
                    f"FROM pg_partition_tree('{TABLE}'::regclass)), "
                    f"pg_total_relation_size('{TABLE}'::regclass))"
                )
            ).scalar_one()
        )
    if dialect in ("mysql", "mariadb"):
        connection.exec_driver_sql(f"ANALYZE TABLE {TABLE}").all()
        return int(
            connection.execute(
                text(
                    "SELECT data_length + index_length FROM information_schema.tables "
                    f"WHERE table_schema = DATABASE() AND table_name = '{TABLE}'"
                )
            ).scalar_one()
        )
    return int(
        connection.execute(
            text(
                "SELECT SUM(pgsize) FROM dbstat WHERE name IN "
                f"(SELECT name FROM sqlite_master WHERE tbl_name = '{TABLE}')"
            )
        ).scalar_one()
    )


if __name__ == "__main__":
    raise SystemExit(main())
