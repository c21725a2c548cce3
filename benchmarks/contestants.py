"""The contestants: plain SQLAlchemy, sqlaudit, the storage floor, the peers and a trigger.

Each contestant sets itself up around the declaration of the benchmark model and
knows how to count the audit rows it wrote. ``granularity`` says what one audit
row stands for: a changed field (sqlaudit, the trigger) or a changed object (the
peers write one full-row version per object), so that rows recorded can be
compared with the changes made.
"""

from __future__ import annotations

import importlib
import uuid
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from sqlalchemy import Engine, event, func, select, table
from sqlalchemy.orm import Session, configure_mappers, sessionmaker
from sqlalchemy.orm.base import instance_state

from benchmarks.models import TABLE, TRACKED, UNTRACKED, declare_item

__all__ = ["CONTESTANTS", "Contestant", "get"]


class Contestant:
    """Plain SQLAlchemy: no auditing at all (the baseline)."""

    name = "plain"
    label = "plain SQLAlchemy"
    granularity: str | None = None  # "field", "row" or None (records nothing)
    distribution: str | None = "SQLAlchemy"
    databases: tuple[str, ...] | None = None  # None: every database
    every_driver = True  # False: measured on each database's default driver only
    audit_table: str | None = None
    workloads: tuple[str, ...] | None = None  # None: every write workload

    def unavailable(self, database: str) -> str | None:
        """Return why this contestant cannot run on ``database``, or ``None``."""
        if self.databases is not None and database not in self.databases:
            return f"runs on {', '.join(self.databases)} only"
        return None

    def version(self) -> str | None:
        """Return the installed version of the contestant's distribution."""
        if self.distribution is None:
            return None
        try:
            return metadata.version(self.distribution)
        except metadata.PackageNotFoundError:
            return None

    def declare(self) -> tuple[type[Any], type[Any]]:
        """Declare the benchmark model for this contestant; return ``(Base, Item)``."""
        return declare_item()

    def install(self, engine: Engine, base: type[Any], item: type[Any], **options: Any) -> None:
        """Create the tables (and whatever auditing needs) on ``engine``."""
        base.metadata.create_all(engine)

    def before_run(self, engine: Engine) -> None:
        """Do what must be running when the workload starts (untimed); nothing by default."""

    def after_run(self, engine: Engine) -> None:
        """Finish what runs beside the workload (untimed, reported apart); nothing by default."""

    def audit_rows(self, engine: Engine) -> int | None:
        """Return how many audit rows exist (``None``: this contestant keeps none)."""
        if self.audit_table is None:
            return None
        with engine.connect() as connection:
            query = select(func.count()).select_from(table(self.audit_table))
            return connection.execute(query).scalar_one()


class SQLAudit(Contestant):
    """sqlaudit: one multi-row INSERT of change rows per flush."""

    name = "sqlaudit"
    label = "sqlaudit"
    granularity = "field"
    distribution = "sqlaudit-trail"
    audit_table = "sqlaudit_changes"
    read_old_values = True

    def declare(self) -> tuple[type[Any], type[Any]]:
        """Declare the model and track its four tracked fields."""
        from sqlaudit.decorators import track_table

        base, item = declare_item()
        track_table(tracked_fields=list(TRACKED), table_label="Item")(item)
        return base, item

    def install(self, engine: Engine, base: type[Any], item: type[Any], **options: Any) -> None:
        """Create the tables, configure sqlaudit (user 1 for every change), register hooks.

        ``drop_indexes``: names of change-table indexes to drop once it is created.
        """
        from sqlaudit.config import SQLAuditConfig, set_config
        from sqlaudit.hooks import register_hooks

        base.metadata.create_all(engine)
        table_name = options.get("table_name", "sqlaudit_changes")
        self.audit_table = table_name
        config = SQLAuditConfig(
            session_factory=sessionmaker(engine),
            get_user_id_callback=lambda: 1,
            table_name=table_name,
            read_old_values=self.read_old_values,
        )
        set_config(config)
        dropped = set(options.get("drop_indexes") or ())
        for index in config.table.indexes:
            if index.name in dropped:
                index.drop(engine)
        register_hooks()


class SQLAuditTrusting(SQLAudit):
    """sqlaudit with ``read_old_values=False``: the session's loaded values are trusted."""

    name = "sqlaudit-trusting"
    label = "sqlaudit, read_old_values=False"
    every_driver = False
    read_old_values = False


def _anchor_loop(url: str, table_name: str, interval: float, ready: Any, stop: Any) -> None:
    """Anchor the change rows every ``interval`` seconds until ``stop`` is set (a process)."""
    from datetime import timedelta

    from sqlalchemy import create_engine

    from sqlaudit.ops import anchor_changes

    engine = create_engine(url)
    try:
        anchor_changes(settle=timedelta(0), bind=engine, table_name=table_name)
        ready.set()
        while not stop.wait(interval):
            anchor_changes(settle=timedelta(0), bind=engine, table_name=table_name)
    finally:
        engine.dispose()


class SQLAuditAnchored(SQLAudit):
    """sqlaudit with the hash chain kept up to date while the workload writes.

    Anchoring (the hash chain of tamper evidence) adds nothing to the write path: a
    separate process runs ``anchor_changes()`` every ``INTERVAL`` seconds during the
    workload, as a scheduled job would, so the ratio to the same run's sqlaudit is
    what the chain costs the writes (the contention with the anchor process for the
    database and the machine). After the timer stops, one more anchor run covers the
    rows written since the last one; its time is reported apart.
    """

    name = "sqlaudit-anchored"
    label = "sqlaudit + hash chain"
    every_driver = False
    workloads = ("W1",)
    INTERVAL = 0.2

    def before_run(self, engine: Engine) -> None:
        """Start the anchoring process and wait for its first run (untimed)."""
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        ready, self._stop = context.Event(), context.Event()
        url = engine.url.render_as_string(hide_password=False)
        table_name = self.audit_table or "sqlaudit_changes"
        args = (url, table_name, self.INTERVAL, ready, self._stop)
        self._process = context.Process(target=_anchor_loop, args=args, daemon=True)
        self._process.start()
        if not ready.wait(60):
            raise RuntimeError("the anchoring process did not start")

    def after_run(self, engine: Engine) -> None:
        """Stop the anchoring process, then anchor the rows it has not anchored yet."""
        from datetime import timedelta

        from sqlaudit.ops import anchor_changes

        self._stop.set()
        self._process.join()
        if self._process.exitcode != 0:
            raise RuntimeError(f"the anchoring process failed ({self._process.exitcode})")
        anchor_changes(settle=timedelta(0), bind=engine)


class SQLAuditDatabase(SQLAudit):
    """sqlaudit with ``capture="database"``: generated triggers write the change rows."""

    name = "sqlaudit-database"
    label = "sqlaudit, capture='database'"
    every_driver = False
    capture = "database"

    def declare(self) -> tuple[type[Any], type[Any]]:
        """Declare the model and track its four tracked fields with database capture."""
        from sqlaudit.decorators import track_table

        base, item = declare_item()
        track_table(tracked_fields=list(TRACKED), table_label="Item", capture="database")(item)
        return base, item

    def install(self, engine: Engine, base: type[Any], item: type[Any], **options: Any) -> None:
        """Configure sqlaudit as for session capture, then install the triggers."""
        from sqlaudit.triggers import install_triggers

        super().install(engine, base, item, **options)
        install_triggers(engine)


class _Versioning(Contestant):
    """A SQLAlchemy-Continuum style peer: a full-row version per changed object."""

    granularity = "row"
    every_driver = False
    module = ""
    audit_table = f"{TABLE}_version"

    def unavailable(self, database: str) -> str | None:
        """Return why the peer cannot run (not installed, fails to import), or ``None``."""
        try:
            importlib.import_module(self.module)
        except Exception as exc:  # ImportError, or a peer broken on this SQLAlchemy
            return f"not available: {type(exc).__name__}: {exc}"
        return super().unavailable(database)

    def declare(self) -> tuple[type[Any], type[Any]]:
        """Turn versioning on, then declare the model versioning only the tracked fields."""
        peer = importlib.import_module(self.module)
        peer.make_versioned(user_cls=None)
        base, item = declare_item(versioned={"exclude": list(UNTRACKED)})
        configure_mappers()  # builds the version class and the transaction table
        return base, item


class Continuum(_Versioning):
    """SQLAlchemy-Continuum from PyPI."""

    name = "continuum"
    label = "SQLAlchemy-Continuum"
    distribution = "SQLAlchemy-Continuum"
    module = "sqlalchemy_continuum"


class History(_Versioning):
    """SQLAlchemy-History from PyPI (a maintained fork of Continuum)."""

    name = "history"
    label = "SQLAlchemy-History"
    distribution = "SQLAlchemy-History"
    module = "sqlalchemy_history"


class Floor(Contestant):
    """The storage floor: a minimal hook writing sqlaudit's change rows and nothing else.

    One ``after_flush`` listener writes, per new, changed or deleted object, one row
    per changed tracked field (values as plain ``str()``, a fixed user) into a table
    built like sqlaudit's (same columns, same three indexes), with the same single
    executemany per flush. It reads no expired old value, resolves no user or context
    and audits no bulk statement: what it costs is the price of the storage format
    (one indexed row per changed field); what sqlaudit costs beyond it is the price of
    its capture.
    """

    name = "floor"
    label = "minimal hook (floor)"
    granularity = "field"
    distribution = None
    audit_table = "floor_changes"

    def install(self, engine: Engine, base: type[Any], item: type[Any], **options: Any) -> None:
        """Create the tables and the change table; listen to every Session's flushes."""
        from sqlaudit._schema import build_change_table, write_changes

        base.metadata.create_all(engine)
        changes = build_change_table(self.audit_table or "floor_changes", None)
        changes.create(engine, checkfirst=True)

        def after_flush(session: Session, context: Any) -> None:
            stamp = (str(uuid.uuid4()), TABLE, "Item")
            tail = ("1", datetime.now(UTC), None)
            rows: list[tuple[Any, ...]] = []
            for obj in session.new:
                for name in TRACKED:
                    value = getattr(obj, name)
                    if value is not None:
                        rows.append((*stamp, str(obj.id), name, "insert", None, str(value), *tail))
            for obj in session.dirty:
                committed = instance_state(obj).committed_state
                for name in TRACKED:
                    if name in committed and committed[name] != getattr(obj, name):
                        old, new = str(committed[name]), str(getattr(obj, name))
                        rows.append((*stamp, str(obj.id), name, "update", old, new, *tail))
            for obj in session.deleted:
                for name in TRACKED:
                    old = str(getattr(obj, name))
                    rows.append((*stamp, str(obj.id), name, "delete", old, None, *tail))
            if rows:
                write_changes(session.connection(), changes, rows)

        event.listen(Session, "after_flush", after_flush)


# One statement per item: drivers differ on several statements in one execute().
_TRIGGER_SQL = (
    """
CREATE TABLE bench_audit (
    id bigserial PRIMARY KEY,
    transaction_id bigint NOT NULL DEFAULT txid_current(),
    table_name text NOT NULL,
    resource_id text NOT NULL,
    field_name text NOT NULL,
    operation text NOT NULL,
    old_value text,
    new_value text,
    changed_by text,
    changed_at timestamptz NOT NULL DEFAULT now()
)
""",
    "CREATE INDEX ix_bench_audit_resource ON bench_audit (table_name, resource_id, changed_at)",
    "CREATE INDEX ix_bench_audit_changed_by ON bench_audit (changed_by, changed_at)",
    "CREATE INDEX ix_bench_audit_transaction ON bench_audit (transaction_id)",
    """
CREATE OR REPLACE FUNCTION bench_audit_item() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    who text := current_setting('bench.user_id', true);
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO bench_audit
            (table_name, resource_id, field_name, operation, old_value, new_value, changed_by)
        SELECT TG_TABLE_NAME, NEW.id::text, f, 'insert', NULL, n, who
        FROM (VALUES ('name', NEW.name::text), ('quantity', NEW.quantity::text),
                     ('price', NEW.price::text), ('active', NEW.active::text)) AS v (f, n)
        WHERE n IS NOT NULL;
        RETURN NEW;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO bench_audit
            (table_name, resource_id, field_name, operation, old_value, new_value, changed_by)
        SELECT TG_TABLE_NAME, NEW.id::text, f, 'update', o, n, who
        FROM (VALUES ('name', OLD.name::text, NEW.name::text),
                     ('quantity', OLD.quantity::text, NEW.quantity::text),
                     ('price', OLD.price::text, NEW.price::text),
                     ('active', OLD.active::text, NEW.active::text)) AS v (f, o, n)
        WHERE o IS DISTINCT FROM n;
        RETURN NEW;
    ELSE
        INSERT INTO bench_audit
            (table_name, resource_id, field_name, operation, old_value, new_value, changed_by)
        SELECT TG_TABLE_NAME, OLD.id::text, f, 'delete', o, NULL, who
        FROM (VALUES ('name', OLD.name::text), ('quantity', OLD.quantity::text),
                     ('price', OLD.price::text), ('active', OLD.active::text)) AS v (f, o);
        RETURN OLD;
    END IF;
END
$$
""",
    f"""
CREATE TRIGGER bench_item_audit AFTER INSERT OR UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION bench_audit_item()
""",
)


class Trigger(Contestant):
    """A hand-written PL/pgSQL row trigger: one audit row per changed tracked field."""

    name = "trigger"
    label = "PL/pgSQL trigger"
    granularity = "field"
    distribution = None
    databases = ("postgresql",)
    audit_table = "bench_audit"

    def install(self, engine: Engine, base: type[Any], item: type[Any], **options: Any) -> None:
        """Create the tables, the audit table (indexed as sqlaudit's) and the trigger."""
        base.metadata.create_all(engine)
        with engine.begin() as connection:
            for statement in _TRIGGER_SQL:
                connection.exec_driver_sql(statement)


CONTESTANTS: dict[str, Contestant] = {
    contestant.name: contestant
    for contestant in (
        Contestant(),
        SQLAudit(),
        SQLAuditTrusting(),
        SQLAuditAnchored(),
        SQLAuditDatabase(),
        Floor(),
        Continuum(),
        History(),
        Trigger(),
    )
}


def get(name: str) -> Contestant:
    """Return the contestant called ``name``."""
    return CONTESTANTS[name]
