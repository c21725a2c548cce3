"""``upgrade_change_table``: a change table of the previous layout upgraded in place, on every backend."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    event,
    select,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects import mysql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from sqlaudit import (
    ConfigurationError,
    SQLAuditConfig,
    check_guard,
    get_resource_changes,
    register_hooks,
    set_config,
    track_table,
    upgrade_change_table,
)
from sqlaudit._schema import CHANGE_COLUMNS, UTCDateTime
from sqlaudit.migration import layout_differences
from sqlaudit.ops._append_only import create_guard

ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg", "mariadb": "aiomysql"}


def build_old_change_table(name: str, schema: str | None = None, **options: Any) -> Table:
    """The change table as sqlaudit created it before this layout (copied, not imported)."""
    metadata = MetaData(schema=schema)
    value = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
    return Table(
        name,
        metadata,
        Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
        Column("transaction_id", String(36), nullable=False),
        Column("table_name", String(128), nullable=False),
        Column("table_label", String(128), nullable=True),
        Column("resource_id", String(255), nullable=False),
        Column("field_name", String(128), nullable=False),
        Column("operation", String(8), nullable=False),
        Column("old_value", value, nullable=True),
        Column("new_value", value, nullable=True),
        Column("changed_by", String(255), nullable=True),
        Column("changed_at", UTCDateTime(), nullable=False),
        Column("extra", JSON(none_as_null=True), nullable=True),
        Index(f"ix_{name}_resource", "table_name", "resource_id", "changed_at"),
        Index(f"ix_{name}_changed_by", "changed_by", "changed_at"),
        Index(f"ix_{name}_transaction", "transaction_id"),
        **options,
    )


def declare_customer(base: Any) -> type[Any]:
    """Declare a ``Customer`` (id, name) tracking its name."""

    @track_table(tracked_fields=["name"])
    class Customer(base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str] = mapped_column(String(100))

    return Customer


def write_history_into_the_old_table(engine: Engine, customer: type[Any], **options: Any) -> None:
    """Record inserts and renames of two customers into an old-layout table, as before."""
    factory = sessionmaker(engine)
    user = {"id": "alice"}
    set_config(
        SQLAuditConfig(
            session_factory=factory,
            time_zone="UTC",
            create_table=False,
            get_user_id_callback=lambda: user["id"],
            **options,
        )
    )
    register_hooks()
    with factory() as session:
        session.add_all([customer(id=1, name="Jané"), customer(id=2, name="John")])
        session.commit()
        user["id"] = "bob"
        session.get(customer, 1).name = "Jané Smith"
        session.commit()


def raw_rows(engine: Engine, table: Table) -> list[tuple[Any, ...]]:
    """Every row's id and written columns, oldest first."""
    with engine.connect() as connection:
        columns = [table.c.id, *(table.c[name] for name in CHANGE_COLUMNS)]
        return [tuple(row) for row in connection.execute(select(*columns).order_by(table.c.id))]


def test_upgrade_keeps_every_row_and_retrieval_works(engine, base):
    """Rows written in the old layout survive the upgrade, ids included, and are found by id and user."""
    old = build_old_change_table("sqlaudit_changes")
    old.create(engine)
    customer = declare_customer(base)
    base.metadata.create_all(engine)
    write_history_into_the_old_table(engine, customer)
    before = raw_rows(engine, old)

    assert upgrade_change_table(engine) is True

    config = SQLAuditConfig(session_factory=sessionmaker(engine), time_zone="UTC")
    set_config(config)  # the upgraded table is accepted
    assert raw_rows(engine, config.table) == before
    with engine.connect() as connection:
        assert layout_differences(connection, config.table) == []
    with sessionmaker(engine)() as session:
        one = get_resource_changes(customer, session=session, filter_resource_ids=1)
        by_bob = get_resource_changes(customer, session=session, filter_user_ids="bob")
        session.get(customer, 2).name = "John Smith"
        session.commit()
        two = get_resource_changes(customer, session=session, filter_resource_ids=2)
    assert [(c.old_value, c.new_value, c.changed_by) for c in one] == [
        ("Jané", "Jané Smith", "bob"),
        (None, "Jané", "alice"),
    ]
    assert [c.new_value for c in by_bob] == ["Jané Smith"]
    assert [c.new_value for c in two] == ["John Smith", "John"]
    assert two[0].change_id > max(row[0] for row in before)


def test_a_second_upgrade_changes_nothing(engine, base):
    """Upgrading an upgraded (or new) table returns False and runs no DDL or DML."""
    build_old_change_table("sqlaudit_changes").create(engine)
    assert upgrade_change_table(engine) is True
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        assert upgrade_change_table(engine) is False
    finally:
        event.remove(engine, "before_cursor_execute", record)
    changing = ("ALTER", "CREATE", "DROP", "INSERT", "UPDATE", "DELETE")
    assert [s for s in statements if s.lstrip().upper().startswith(changing)] == []


def test_upgrade_of_a_missing_table_does_nothing(engine):
    """With no change table there is nothing to upgrade; ``set_config`` creates it later."""
    assert upgrade_change_table(engine) is False
    assert not sa_inspect(engine).has_table("sqlaudit_changes")


def test_set_config_refuses_a_table_of_the_old_layout(engine):
    """``set_config`` does not write into an old table: it says to run the upgrade."""
    build_old_change_table("sqlaudit_changes").create(engine)
    config = SQLAuditConfig(session_factory=sessionmaker(engine), time_zone="UTC")
    with pytest.raises(ConfigurationError, match=r"upgrade_change_table\(engine\)") as raised:
        set_config(config)
    assert "resource_key is missing" in str(raised.value)
    upgrade_change_table(engine)
    set_config(config)


def test_a_custom_table_name_is_upgraded(engine, base):
    """``table_name=`` upgrades that table (and its indexes) and leaves others alone."""
    build_old_change_table("customer_audit").create(engine)
    customer = declare_customer(base)
    base.metadata.create_all(engine)
    write_history_into_the_old_table(engine, customer, table_name="customer_audit")
    config = SQLAuditConfig(
        session_factory=sessionmaker(engine), time_zone="UTC", table_name="customer_audit"
    )
    with pytest.raises(ConfigurationError, match="table_name='customer_audit'"):
        set_config(config)
    assert upgrade_change_table(engine, table_name="customer_audit") is True
    set_config(config)
    assert not sa_inspect(engine).has_table("sqlaudit_changes")
    with sessionmaker(engine)() as session:
        changes = get_resource_changes(customer, session=session, filter_resource_ids=1)
    assert [c.new_value for c in changes] == ["Jané Smith", "Jané"]


def test_upgrade_runs_in_the_callers_transaction(engine):
    """Given a connection, the upgrade runs on it and commits with it."""
    build_old_change_table("sqlaudit_changes").create(engine)
    with engine.begin() as connection:
        assert upgrade_change_table(connection) is True
    assert "resource_key" in {c["name"] for c in sa_inspect(engine).get_columns("sqlaudit_changes")}


def test_an_async_application_upgrades_through_run_sync(engine, backend):
    """``await connection.run_sync(upgrade_change_table)`` upgrades on an async engine."""
    build_old_change_table("sqlaudit_changes").create(engine)
    url = engine.url.set(drivername=f"{engine.url.get_backend_name()}+{ASYNC_DRIVERS[backend]}")

    async def upgrade() -> bool:
        async_engine = create_async_engine(url)
        try:
            async with async_engine.begin() as connection:
                return bool(await connection.run_sync(upgrade_change_table))
        finally:
            await async_engine.dispose()

    assert asyncio.run(upgrade()) is True
    assert "resource_key" in {c["name"] for c in sa_inspect(engine).get_columns("sqlaudit_changes")}


@pytest.mark.backends("mariadb")
def test_a_latin1_case_insensitive_table_becomes_utf8mb4_bin(engine, base):
    """On MariaDB an old latin1 table is converted to utf8mb4_bin, its text kept."""
    build_old_change_table(
        "sqlaudit_changes", mysql_charset="latin1", mysql_collate="latin1_swedish_ci"
    ).create(engine)
    customer = declare_customer(base)
    base.metadata.create_all(engine)
    write_history_into_the_old_table(engine, customer)
    assert upgrade_change_table(engine) is True
    with engine.connect() as connection:
        collations = connection.exec_driver_sql(
            "SELECT DISTINCT COLLATION_NAME FROM information_schema.COLUMNS WHERE "
            "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'sqlaudit_changes' "
            "AND DATA_TYPE IN ('varchar', 'longtext') AND COLUMN_NAME <> 'extra'"
        ).scalars()
        assert set(collations) == {"utf8mb4_bin"}
    set_config(SQLAuditConfig(session_factory=sessionmaker(engine), time_zone="UTC"))
    with sessionmaker(engine)() as session:
        session.get(customer, 1).name = "Jané 😀"
        session.commit()
        changes = get_resource_changes(customer, session=session, filter_resource_ids=1)
        assert get_resource_changes(customer, session=session, filter_user_ids="ALICE") == []
    assert [c.new_value for c in changes] == ["Jané 😀", "Jané Smith", "Jané"]


@pytest.mark.backends("postgresql")
def test_a_table_in_a_schema_is_upgraded(engine, base):
    """``table_schema=`` upgrades the table in that schema, indexes included."""
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS audit_upgrade")
    try:
        build_old_change_table("sqlaudit_changes", schema="audit_upgrade").create(engine)
        assert upgrade_change_table(engine, table_schema="audit_upgrade") is True
        assert upgrade_change_table(engine, table_schema="audit_upgrade") is False
        config = SQLAuditConfig(
            session_factory=sessionmaker(engine), time_zone="UTC", table_schema="audit_upgrade"
        )
        set_config(config)
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP SCHEMA IF EXISTS audit_upgrade CASCADE")


@pytest.mark.backends("sqlite")
def test_sqlite_refuses_to_rebuild_a_table_with_unknown_columns(engine):
    """A rebuild would drop columns sqlaudit does not know, so SQLite refuses and says why."""
    old = build_old_change_table("sqlaudit_changes")
    old.append_column(Column("ticket", String(20)))
    old.create(engine)
    with pytest.raises(ConfigurationError, match=r"\(ticket\)"):
        upgrade_change_table(engine)
    assert "resource_key" not in {
        c["name"] for c in sa_inspect(engine).get_columns("sqlaudit_changes")
    }


def test_the_append_only_guard_survives_the_upgrade(engine, base):
    """A guarded table of the old layout is upgraded (no row is updated) and stays guarded."""
    old = build_old_change_table("sqlaudit_changes")
    old.create(engine)
    customer = declare_customer(base)
    base.metadata.create_all(engine)
    with engine.begin() as connection:
        create_guard(connection, old)
    write_history_into_the_old_table(engine, customer)
    assert upgrade_change_table(engine) is True
    assert check_guard(engine) == []
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.exec_driver_sql("UPDATE sqlaudit_changes SET changed_by = 'x'")
