"""Database capture: the parity suite, the blind spots it closes, and installing and checking triggers."""

from __future__ import annotations

import contextlib
import enum
import json
import threading
import uuid
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from conftest import _drop_everything
from sqlalchemy import (
    JSON,
    Engine,
    FetchedValue,
    ForeignKey,
    Numeric,
    String,
    Uuid,
    delete,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.exc import DBAPIError, PendingRollbackError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from sqlaudit import (
    ConfigurationError,
    SQLAuditConfig,
    TrackingError,
    TriggerDriftWarning,
    TriggerTypeError,
    UnauditedWriteError,
    UntrackedModelError,
    _registry,
    audit_context,
    check_triggers,
    drop_triggers,
    get_resource_changes,
    install_triggers,
    register_hooks,
    set_config,
    set_session_context,
    track_table,
    trigger_sql,
    unregister_hooks,
)
from sqlaudit.config import clear_config


class Tier(enum.Enum):
    FREE = "free"
    GOLD = "gold"


# --- the parity suite ----------------------------------------------------------------------
#
# Each scenario declares its models on a fresh base (with the capture mode under test),
# runs through the ORM, and the change rows the two modes write are compared field by
# field: ids and timestamps aside, transaction ids compared by the order in which they
# first appear.


def declare(base: type[DeclarativeBase], backend: str) -> dict[str, type[Any]]:
    """Declare every model the scenarios use."""

    @track_table(tracked_fields=["name", "email", "score", "tier", "active", "joined"])
    class Customer(base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(100))
        email: Mapped[str | None] = mapped_column(String(100))
        score: Mapped[int | None]
        tier: Mapped[Tier | None] = mapped_column(SAEnum(Tier))
        active: Mapped[bool | None]
        joined: Mapped[date | None]
        status: Mapped[str] = mapped_column(String(20), server_default="new")
        notes: Mapped[str | None] = mapped_column(String(100))
        orders: Mapped[list[Order]] = relationship(
            back_populates="customer", cascade="all, delete-orphan"
        )

    @track_table(tracked_fields=["customer_id", "item", "quantity", "placed"])
    class Order(base):
        __tablename__ = "orders"
        id: Mapped[int] = mapped_column(primary_key=True)
        customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
        item: Mapped[str] = mapped_column(String(50))
        quantity: Mapped[int] = mapped_column(default=1)
        placed: Mapped[datetime | None]
        customer: Mapped[Customer] = relationship(back_populates="orders")

    @track_table(tracked_fields=["label"])
    class Token(base):
        __tablename__ = "tokens"
        id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
        label: Mapped[str] = mapped_column(String(50))

    @track_table(tracked_fields=["value"])
    class Setting(base):
        __tablename__ = "settings"
        scope: Mapped[str] = mapped_column(String(20), primary_key=True)
        key: Mapped[str] = mapped_column(String(20), primary_key=True)
        value: Mapped[str | None] = mapped_column(String(50))

    @track_table(tracked_fields=["sku", "title"], resource_id_field="sku")
    class Product(base):
        __tablename__ = "products"
        id: Mapped[int] = mapped_column(primary_key=True)
        sku: Mapped[str] = mapped_column(String(20), unique=True)
        title: Mapped[str] = mapped_column(String(50))

    @track_table(tracked_fields=["amount"])
    class Invoice(base):
        __tablename__ = "invoices"
        id: Mapped[int] = mapped_column(primary_key=True)
        amount: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))

    return {
        "Customer": Customer,
        "Order": Order,
        "Token": Token,
        "Setting": Setting,
        "Product": Product,
        "Invoice": Invoice,
    }


Scenario = Callable[[Any, dict[str, type[Any]], str], None]


def s_insert_update_delete(Session: Any, m: dict[str, type[Any]], backend: str) -> None:
    Customer = m["Customer"]
    with Session() as session:
        session.add(Customer(id=1, name="Ann", email="ann@example.com", score=5, tier=Tier.FREE))
        session.add(Customer(id=2, name="Bob", active=True, joined=date(2026, 1, 2)))
        session.commit()
        ann = session.get(Customer, 1)
        ann.name, ann.email, ann.score, ann.tier = "Anna", None, None, Tier.GOLD
        session.get(Customer, 2).email = "bob@example.com"
        session.commit()
        session.delete(session.get(Customer, 2))
        session.commit()


def s_no_change_records_nothing(Session: Any, m: dict[str, type[Any]], backend: str) -> None:
    Customer = m["Customer"]
    with Session() as session:
        session.add(Customer(id=1, name="Ann", score=1))
        session.commit()
        customer = session.get(Customer, 1)
        customer.name = "Ann"  # equal
        customer.score = 2
        customer.score = 1  # and back
        customer.notes = "untracked only"
        session.commit()


def s_users_reasons_and_extra(Session: Any, m: dict[str, type[Any]], backend: str) -> None:
    Customer = m["Customer"]
    with Session() as session:
        with audit_context(user_id=7, reason="import", batch="b-1"):
            session.add(Customer(id=1, name="Ann"))
            session.flush()
        with audit_context(user_id="alice"):
            session.get(Customer, 1).score = 3
            session.flush()
        session.commit()
    with Session() as session:
        set_session_context(session, user_id=uuid.UUID(int=5), reason="support ticket")
        session.get(Customer, 1).email = "a@example.com"
        session.commit()


def s_keys(Session: Any, m: dict[str, type[Any]], backend: str) -> None:
    Token, Setting, Product = m["Token"], m["Setting"], m["Product"]
    token_id = uuid.UUID("0b7cbb8e-7f1e-4b6c-9d1c-2f8f4a0c1d2e")
    with Session() as session:
        session.add_all(
            [
                Token(id=token_id, label="mine"),
                Setting(scope="app", key='we"ird', value="1"),
                Product(id=1, sku="SKU-1", title="Cup"),
            ]
        )
        session.commit()
        session.get(Token, token_id).label = "yours"
        session.get(Setting, ("app", 'we"ird')).value = None
        session.get(Product, 1).title = "Mug"
        session.commit()
        session.get(Product, 1).sku = "SKU-2"  # the resource id moves
        session.commit()


def s_primary_key_change(Session: Any, m: dict[str, type[Any]], backend: str) -> None:
    Customer = m["Customer"]
    with Session() as session:
        session.add(Customer(id=1, name="Ann", score=1))
        session.commit()
        session.get(Customer, 1).id = 10
        session.commit()


def s_savepoints_and_rollbacks(Session: Any, m: dict[str, type[Any]], backend: str) -> None:
    Customer = m["Customer"]
    with Session() as session:
        session.add(Customer(id=1, name="Ann"))
        session.flush()
        savepoint = session.begin_nested()
        session.get(Customer, 1).name = "Dropped"
        session.flush()
        savepoint.rollback()
        with session.begin_nested():
            session.get(Customer, 1).score = 9
        session.commit()
    with Session() as session:
        session.get(Customer, 1).name = "Never"
        session.flush()
        session.rollback()


def s_bulk_statements(Session: Any, m: dict[str, type[Any]], backend: str) -> None:
    Customer = m["Customer"]
    with Session() as session:
        session.execute(
            insert(Customer), [{"id": n, "name": f"c{n}", "score": n} for n in range(1, 6)]
        )
        session.execute(
            update(Customer).where(Customer.score > 2).values(score=Customer.score * 10)
        )
        session.execute(update(Customer), [{"id": 1, "name": "first"}, {"id": 2, "email": "e"}])
        session.execute(delete(Customer).where(Customer.id >= 4))
        session.commit()


def s_computed_values(Session: Any, m: dict[str, type[Any]], backend: str) -> None:
    Customer, Order = m["Customer"], m["Order"]
    with Session() as session:
        session.add(Customer(id=1, name="Ann", score=1))
        session.add(Order(id=1, customer_id=1, item="tea", placed=datetime(2026, 3, 4, 5, 6, 7)))
        session.commit()
        customer = session.get(Customer, 1)
        customer.score = Customer.score + 41
        session.commit()


def s_orphans_and_relationships(Session: Any, m: dict[str, type[Any]], backend: str) -> None:
    Customer, Order = m["Customer"], m["Order"]
    with Session() as session:
        customer = Customer(id=1, name="Ann")
        customer.orders = [Order(id=1, item="tea", quantity=2), Order(id=2, item="cake")]
        session.add(customer)
        session.commit()
        customer.orders.remove(customer.orders[0])  # delete-orphan
        session.commit()
        session.delete(customer)  # cascades to the remaining order
        session.commit()


def s_types(Session: Any, m: dict[str, type[Any]], backend: str) -> None:
    Customer = m["Customer"]
    with Session() as session:
        session.add(Customer(id=1, name="Zoë 🎉 it's", active=False, joined=date(1999, 12, 31)))
        if "Invoice" in m:
            session.add(m["Invoice"](id=1, amount=Decimal("12.50")))
        session.commit()
        customer = session.get(Customer, 1)
        customer.active, customer.tier = True, Tier.GOLD
        if "Invoice" in m:
            session.get(m["Invoice"], 1).amount = Decimal("0.05")
        session.commit()


SCENARIOS: dict[str, Scenario] = {
    name.removeprefix("s_"): scenario
    for name, scenario in list(globals().items())
    if name.startswith("s_") and callable(scenario)
}


def _normalize(rows: list[Any]) -> list[tuple[Any, ...]]:
    """Rows without ids and times, transaction ids as the order they first appear in."""
    order: dict[str, int] = {}
    result = []
    for row in rows:
        transaction = order.setdefault(row.transaction_id, len(order))
        extra = row.extra if not isinstance(row.extra, str) else json.loads(row.extra)
        result.append(
            (
                transaction,
                row.table_name,
                row.table_label,
                row.resource_id,
                row.field_name,
                row.operation,
                row.old_value,
                row.new_value,
                row.changed_by,
                json.dumps(extra, sort_keys=True),
            )
        )
    return sorted(result, key=lambda item: tuple("" if v is None else str(v) for v in item))


def _run(audit: Any, backend: str, capture: str, scenario: Scenario) -> list[tuple[Any, ...]]:
    _drop_everything(audit.engine)
    unregister_hooks()
    _registry.reset()

    class Base(DeclarativeBase):
        pass

    audit.base, audit.capture = Base, capture
    audit.configure()
    models = declare(Base, backend)
    audit.create_tables()
    scenario(audit.Session, models, backend)
    return _normalize(audit.rows())


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_both_capture_modes_write_the_same_rows(audit, backend, name):
    """The scenario's change rows are the same field by field in session and database capture (ids and times aside)."""
    scenario = SCENARIOS[name]
    session_rows = _run(audit, backend, "session", scenario)
    database_rows = _run(audit, backend, "database", scenario)
    assert session_rows, "the scenario records something"
    assert database_rows == session_rows


# --- database capture only: the blind spots of session capture ---------------------------


@pytest.fixture
def capture() -> str:
    """The tests below run in database capture."""
    return "database"


def simple_customer(base: type[DeclarativeBase]) -> type[Any]:
    @track_table(tracked_fields=["name", "score"])
    class Customer(base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(100))
        score: Mapped[int | None]

    return Customer


def history(model: type[Any]) -> list[tuple[str, str, str, Any, Any]]:
    changes = reversed(get_resource_changes(model))
    return [(c.resource_id, c.operation, c.field_name, c.old_value, c.new_value) for c in changes]


def test_raw_sql_on_a_plain_connection_is_recorded_without_a_user(audit):
    """text() SQL on a plain Connection is recorded, with no user and the database role in extra; one id per transaction."""
    Customer = simple_customer(audit.base)
    audit.create_tables()
    audit.user = "ignored"  # a plain connection has no session: no context
    with audit.engine.begin() as connection:
        connection.execute(text("INSERT INTO customers (id, name, score) VALUES (1, 'Ann', 1)"))
        connection.execute(text("UPDATE customers SET score = 2 WHERE id = 1"))
    with audit.engine.begin() as connection:
        connection.execute(text("DELETE FROM customers WHERE id = 1"))

    assert history(Customer) == [
        ("1", "insert", "name", None, "Ann"),
        ("1", "insert", "score", None, 1),
        ("1", "update", "score", 1, 2),
        ("1", "delete", "name", "Ann", None),
        ("1", "delete", "score", 2, None),
    ]
    changes = list(reversed(get_resource_changes(Customer)))
    assert {c.changed_by for c in changes} == {None}
    assert all("sqlaudit.database_role" in c.extra for c in changes)
    assert len({c.transaction_id for c in changes[:3]}) == 1
    assert changes[3].transaction_id != changes[0].transaction_id
    assert changes[3].transaction_id == changes[4].transaction_id


def test_core_statements_on_a_connection_are_recorded(audit):
    """Core insert/update/delete on a plain Connection are recorded like ORM writes."""
    Customer = simple_customer(audit.base)
    audit.create_tables()
    table = Customer.__table__
    with audit.engine.begin() as connection:
        connection.execute(table.insert(), [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
        connection.execute(table.update().where(table.c.id == 2).values(score=table.c.id * 3))
        connection.execute(table.delete().where(table.c.id == 1))
    assert history(Customer) == [
        ("1", "insert", "name", None, "a"),
        ("2", "insert", "name", None, "b"),
        ("2", "update", "score", None, 6),
        ("1", "delete", "name", "a", None),
        ("1", "delete", "score", None, None),
    ]


def test_a_write_from_another_program_is_recorded(audit, backend):
    """A write through the bare driver, outside SQLAlchemy (another service, psql), is recorded."""
    Customer = simple_customer(audit.base)
    audit.create_tables()
    url = audit.engine.url
    if backend == "postgresql":
        import psycopg

        connection: Any = psycopg.connect(
            host=url.host, port=url.port, user=url.username, dbname=url.database
        )
    elif backend == "mariadb":
        import pymysql

        connection = pymysql.connect(
            host=url.host, port=url.port or 3306, user=url.username, database=url.database
        )
    else:
        import sqlite3

        connection = sqlite3.connect(url.database)
    try:
        cursor = connection.cursor()
        cursor.execute("INSERT INTO customers (id, name) VALUES (1, 'outside')")
        connection.commit()
        cursor.execute("UPDATE customers SET name = 'outside 2' WHERE id = 1")
        connection.commit()
    finally:
        connection.close()

    changes = list(reversed(get_resource_changes(Customer)))
    assert [(c.operation, c.new_value, c.changed_by) for c in changes] == [
        ("insert", "outside", None),
        ("update", "outside 2", None),
    ]
    if backend == "postgresql":  # transaction-local: every transaction draws its own id
        assert changes[0].transaction_id != changes[1].transaction_id


def _enable_sqlite_foreign_keys(engine: Engine) -> Callable[[], None]:
    def on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.execute("PRAGMA foreign_keys=ON")

    event.listen(engine, "connect", on_connect)
    engine.dispose()
    return lambda: (event.remove(engine, "connect", on_connect), engine.dispose())


def test_foreign_key_cascades_are_recorded(audit, backend):
    """Rows a foreign key deletes (ON DELETE CASCADE), nulls (SET NULL) or rekeys (ON UPDATE CASCADE) are recorded."""
    restore = _enable_sqlite_foreign_keys(audit.engine) if backend == "sqlite" else None

    @track_table(tracked_fields=["name", "code"])
    class Team(audit.base):
        __tablename__ = "teams"
        id: Mapped[int] = mapped_column(primary_key=True)
        code: Mapped[str] = mapped_column(String(10), unique=True)
        name: Mapped[str] = mapped_column(String(50))

    @track_table(tracked_fields=["team_id", "name"])
    class Member(audit.base):
        __tablename__ = "members"
        id: Mapped[int] = mapped_column(primary_key=True)
        team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
        name: Mapped[str] = mapped_column(String(50))

    @track_table(tracked_fields=["team_code", "text"])
    class Note(audit.base):
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(primary_key=True)
        team_code: Mapped[str | None] = mapped_column(
            ForeignKey("teams.code", ondelete="SET NULL", onupdate="CASCADE")
        )
        text: Mapped[str] = mapped_column(String(50))

    try:
        audit.create_tables()
        with audit.engine.begin() as connection:
            connection.execute(text("INSERT INTO teams (id, code, name) VALUES (1, 'a', 'A')"))
            connection.execute(text("INSERT INTO members (id, team_id, name) VALUES (1, 1, 'm1')"))
            connection.execute(text("INSERT INTO members (id, team_id, name) VALUES (2, 1, 'm2')"))
            connection.execute(text("INSERT INTO notes (id, team_code, text) VALUES (1, 'a', 'n')"))
        with audit.engine.begin() as connection:
            connection.execute(text("UPDATE teams SET code = 'b' WHERE id = 1"))
        with audit.engine.begin() as connection:
            connection.execute(text("DELETE FROM teams WHERE id = 1"))
    finally:
        if restore is not None:
            restore()

    members = [entry for entry in history(Member) if entry[1] == "delete"]
    assert sorted(members) == [
        ("1", "delete", "name", "m1", None),
        ("1", "delete", "team_id", 1, None),
        ("2", "delete", "name", "m2", None),
        ("2", "delete", "team_id", 1, None),
    ]
    assert [entry for entry in history(Note) if entry[1] == "update"] == [
        ("1", "update", "team_code", "a", "b"),
        ("1", "update", "team_code", "b", None),
    ]


def test_a_value_set_by_a_database_trigger_is_recorded(audit, backend):
    """A tracked value the database sets on its own (a trigger of the application, server_onupdate) is recorded."""

    @track_table(tracked_fields=["name", "slug"])
    class Page(audit.base):
        __tablename__ = "pages"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50))
        slug: Mapped[str | None] = mapped_column(
            String(50), server_default=FetchedValue(), server_onupdate=FetchedValue()
        )

    audit.create_tables()
    with audit.engine.begin() as connection:
        if backend == "postgresql":
            connection.exec_driver_sql(
                "CREATE OR REPLACE FUNCTION pages_slug() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN NEW.slug := lower(NEW.name); RETURN NEW; END $$"
            )
            connection.exec_driver_sql(
                "CREATE TRIGGER pages_slug BEFORE INSERT OR UPDATE ON pages "
                "FOR EACH ROW EXECUTE FUNCTION pages_slug()"
            )
        elif backend == "mariadb":
            for timing in ("INSERT", "UPDATE"):
                connection.exec_driver_sql(
                    f"CREATE TRIGGER pages_slug_{timing.lower()} BEFORE {timing} ON pages "
                    "FOR EACH ROW SET NEW.slug = lower(NEW.name)"
                )
        else:
            connection.exec_driver_sql(
                "CREATE TRIGGER pages_slug AFTER UPDATE OF name ON pages FOR EACH ROW "
                "BEGIN UPDATE pages SET slug = lower(NEW.name) WHERE id = NEW.id; END"
            )
    with audit.Session() as session:
        page = Page(id=1, name="Home", slug="home")
        session.add(page)
        session.commit()
        page.name = "About"
        session.commit()
        assert page.slug == "about"

    assert ("1", "update", "slug", "home", "about") in history(Page)
    if backend == "postgresql":
        changes = get_resource_changes(Page)
        assert {c.changed_by for c in changes} == {None}


def test_legacy_bulk_methods_are_recorded_with_the_user(audit):
    """Session.bulk_insert_mappings and bulk_update_mappings, which skip session events, are recorded with the user."""
    Customer = simple_customer(audit.base)
    audit.create_tables()
    audit.user = "loader"
    with audit.Session() as session:
        session.bulk_insert_mappings(Customer, [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
        session.bulk_update_mappings(Customer, [{"id": 2, "score": 5}])
        session.commit()
    changes = get_resource_changes(Customer)
    assert len(changes) == 3
    assert {c.changed_by for c in changes} == {"loader"}


def test_context_is_sent_once_per_transaction_and_again_when_it_changes(audit, count_statements):
    """The context reaches the database with one statement per transaction, and again only when the user changes."""
    Customer = simple_customer(audit.base)
    audit.create_tables()

    count_statements.statements.clear()
    starts = ("SELECT set_config('sqlaudit", "SET @sqlaudit_transaction_id", "INSERT OR REPLACE")

    def context_statements() -> int:
        return len(count_statements.matching(lambda sql: sql.startswith(starts)))

    audit.user = "u1"
    with audit.Session() as session:
        for n in range(3):
            session.add(Customer(id=n + 1, name=f"c{n}"))
            session.flush()
        session.execute(update(Customer).values(score=1))
        assert context_statements() == 1
        audit.user = "u2"
        session.get(Customer, 1).score = 2
        session.flush()
        assert context_statements() == 2
        session.commit()
    with audit.Session() as session:
        session.get(Customer, 1).score = 3
        session.commit()
    assert context_statements() == 3
    by_user = {
        (c.changed_by, c.new_value) for c in get_resource_changes(Customer, filter_fields="score")
    }
    assert by_user == {("u1", 1), ("u2", 2), ("u2", 3)}


def test_rows_of_both_modes_in_one_transaction_share_its_id(audit):
    """A transaction writing a session-captured and a database-captured model records one transaction id."""

    @track_table(tracked_fields=["name"], capture="session")
    class Tag(audit.base):
        __tablename__ = "tags"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(20))

    Customer = simple_customer(audit.base)
    audit.create_tables()
    with audit.Session() as session:
        session.add_all([Tag(id=1, name="t"), Customer(id=1, name="c")])
        session.commit()
    assert len({row.transaction_id for row in audit.rows()}) == 1
    assert {row.table_name for row in audit.rows()} == {"tags", "customers"}


def test_context_taken_back_by_a_rolled_back_savepoint_is_sent_again(audit):
    """A savepoint rollback that undoes the context (PostgreSQL, SQLite) does not leave later writes without a user."""
    Customer = simple_customer(audit.base)
    audit.create_tables()
    audit.user = "u1"
    with audit.Session() as session:
        savepoint = session.begin_nested()
        session.add(Customer(id=1, name="dropped"))
        session.flush()
        savepoint.rollback()
        session.add(Customer(id=2, name="kept"))
        session.commit()
    assert {(c.resource_id, c.changed_by) for c in get_resource_changes(Customer)} == {("2", "u1")}


@pytest.mark.backends("postgresql", "mariadb")
def test_concurrent_writers_each_record_their_own_user(audit):
    """Eight threads writing at once through the triggers record every change once, each with its own user."""
    Customer = simple_customer(audit.base)
    audit.create_tables()
    users: dict[int, str] = {}
    local = threading.local()
    audit.configure(get_user_id_callback=lambda: getattr(local, "user", None))
    workers, rounds = 8, 10
    start = threading.Barrier(workers)

    def work(worker: int) -> None:
        local.user = f"user-{worker}"
        start.wait(timeout=30)
        with audit.Session() as session:
            for n in range(rounds):
                key = worker * 100 + n + 1
                users[key] = local.user
                session.add(Customer(id=key, name=f"w{worker}", score=0))
                session.commit()
                session.get(Customer, key).score = worker + 1
                session.commit()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(work, worker) for worker in range(workers)]:
            future.result(timeout=120)

    changes = get_resource_changes(Customer)
    assert len(changes) == workers * rounds * 3
    for change in changes:
        assert change.changed_by == users[int(change.resource_id)]


# --- installing, checking and removing triggers -------------------------------------------


def test_install_is_idempotent_and_drop_stops_capture(audit):
    """Installing twice changes nothing; after drop_triggers a write records nothing (and is refused through a Session)."""
    Customer = simple_customer(audit.base)
    audit.create_tables()
    assert install_triggers(audit.engine) == [Customer]
    assert check_triggers(audit.engine) == []
    assert drop_triggers(audit.engine) == [Customer]
    kinds = {problem.kind for problem in check_triggers(audit.engine)}
    assert kinds == {"missing"}
    with audit.engine.begin() as connection:
        connection.execute(text("INSERT INTO customers (id, name) VALUES (1, 'raw')"))
    assert get_resource_changes(Customer) == []
    with audit.Session() as session:
        session.add(Customer(id=2, name="orm"))
        with pytest.raises(UnauditedWriteError, match="install_triggers"):
            session.commit()


def test_writes_are_refused_until_the_triggers_are_installed(audit):
    """A database-captured model whose triggers were never installed cannot be written through a Session."""
    Customer = simple_customer(audit.base)
    audit.base.metadata.create_all(audit.engine)
    with audit.Session() as session:
        session.add(Customer(id=1, name="Ann"))
        with pytest.raises(UnauditedWriteError, match=r"Customer is captured by database triggers"):
            session.commit()
        session.rollback()
        with pytest.raises(UnauditedWriteError):
            session.execute(update(Customer).values(score=1))
    with audit.Session() as session:
        assert session.scalars(select(Customer)).all() == []


def test_check_reports_changed_fields_and_dropped_columns(audit, backend):
    """check_triggers reports triggers written for other tracked fields and tracked columns gone from the database."""
    Customer = simple_customer(audit.base)
    audit.create_tables()

    @track_table(tracked_fields=["name"], table_label="Customer")
    class Narrower(audit.base):
        __table__ = Customer.__table__

    _registry.unregister(Customer)
    problems = check_triggers(audit.engine)
    assert {problem.kind for problem in problems} == {"outdated"}
    assert "install_triggers()" in problems[0].message
    install_triggers(audit.engine)
    assert check_triggers(audit.engine) == []

    with audit.engine.begin() as connection:
        if backend == "sqlite":
            for name in ("insert", "update", "move", "delete"):
                connection.exec_driver_sql(f"DROP TRIGGER sqlaudit_customers_{name}")
        connection.exec_driver_sql("ALTER TABLE customers DROP COLUMN name")
    kinds = {problem.kind for problem in check_triggers(audit.engine)}
    assert "column" in kinds


def test_register_hooks_warns_about_drift_at_start_up(audit):
    """register_hooks() warns, naming the model and the fix, when the installed triggers do not match."""
    simple_customer(audit.base)
    audit.base.metadata.create_all(audit.engine)
    unregister_hooks()
    with pytest.warns(
        TriggerDriftWarning, match=r"Customer: the trigger .* is missing; run install_triggers"
    ):
        register_hooks()
    install_triggers(audit.engine)
    unregister_hooks()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register_hooks()


def test_untranslatable_column_is_refused_at_install_naming_it(audit):
    """A tracked JSON column is refused when the triggers are installed, naming Model.field; nothing is installed."""

    @track_table(tracked_fields=["name", "payload"])
    class Event(audit.base):
        __tablename__ = "events"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(20))
        payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    audit.base.metadata.create_all(audit.engine)
    with pytest.raises(TriggerTypeError, match=r"Event\.payload .*capture='session'"):
        install_triggers(audit.engine)
    with audit.engine.begin() as connection:  # nothing was installed
        connection.execute(text("INSERT INTO events (id, name) VALUES (1, 'raw')"))
    assert audit.rows() == []


def test_joined_table_inheritance_is_refused_naming_the_parent_column(audit):
    """A subclass tracking a column of its parent's table cannot be captured by a trigger on its own table."""

    class Person(audit.base):
        __tablename__ = "people"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(20))
        kind: Mapped[str] = mapped_column(String(20))
        __mapper_args__: ClassVar[dict[str, Any]] = {
            "polymorphic_on": "kind",
            "polymorphic_identity": "person",
        }

    @track_table(tracked_fields=["name", "language"])
    class Engineer(Person):
        __tablename__ = "engineers"
        id: Mapped[int] = mapped_column(ForeignKey("people.id"), primary_key=True)
        language: Mapped[str] = mapped_column(String(20))
        __mapper_args__: ClassVar[dict[str, Any]] = {"polymorphic_identity": "engineer"}

    audit.base.metadata.create_all(audit.engine)
    with pytest.raises(TriggerTypeError, match=r"Engineer\.name is a column of people"):
        install_triggers(audit.engine)


def test_installing_for_a_session_captured_or_untracked_model_is_refused(audit):
    """install_triggers refuses a session-captured model (it would record twice) and an untracked one."""

    @track_table(tracked_fields=["name"], capture="session")
    class Tag(audit.base):
        __tablename__ = "tags"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(20))

    class Plain(audit.base):
        __tablename__ = "plain"
        id: Mapped[int] = mapped_column(primary_key=True)

    audit.base.metadata.create_all(audit.engine)
    with pytest.raises(ConfigurationError, match=r"Tag is tracked with session capture"):
        install_triggers(audit.engine, [Tag])
    with pytest.raises(UntrackedModelError, match=r"Plain is not tracked"):
        install_triggers(audit.engine, [Plain])


def test_trigger_sql_returns_the_statements_without_running_them(audit):
    """trigger_sql() gives the DDL install_triggers() would run, and running it captures changes."""
    Customer = simple_customer(audit.base)
    audit.base.metadata.create_all(audit.engine)
    statements = trigger_sql(audit.engine)
    assert statements and all(isinstance(sql, str) for sql in statements)
    assert {problem.kind for problem in check_triggers(audit.engine)} == {"missing"}
    install_triggers(audit.engine)
    with audit.Session() as session:
        session.add(Customer(id=1, name="Ann"))
        session.commit()
    assert history(Customer) == [("1", "insert", "name", None, "Ann")]


def test_capture_option_is_checked(audit):
    """capture= accepts only 'session' and 'database', in the config and in track_table."""
    with pytest.raises(ConfigurationError, match="capture must be 'session'"):
        SQLAuditConfig(session_factory=audit.Session, capture="trigger")
    with pytest.raises(TrackingError, match=r"capture=\.\.\.\) must be 'session' or 'database'"):
        track_table(tracked_fields=["name"], capture="both")


def test_config_capture_applies_to_models_that_name_none(audit):
    """SQLAuditConfig(capture=...) decides for models without their own capture=; clear_config() restores session."""
    Customer = simple_customer(audit.base)
    tracked = _registry.lookup(Customer)
    assert tracked is not None
    assert _registry.capture_of(tracked) == "database"
    set_config(SQLAuditConfig(session_factory=audit.Session, capture="session"))
    assert _registry.capture_of(tracked) == "session"
    clear_config()
    assert _registry.capture_of(tracked) == "session"


def test_statements_of_many_rows_are_recorded_row_by_row(audit):
    """An UPDATE of hundreds of rows at once (PostgreSQL: planned for its size) records each row's change; moved keys record a delete and an insert."""
    Customer = simple_customer(audit.base)
    audit.create_tables()
    rows = 300
    table = Customer.__table__
    with audit.engine.begin() as connection:
        connection.execute(
            table.insert(), [{"id": n, "name": f"c{n}", "score": n} for n in range(1, rows + 1)]
        )
    with audit.engine.begin() as connection:
        connection.execute(table.update().values(score=table.c.score + 1))
    with audit.engine.begin() as connection:
        connection.execute(table.update().values(id=table.c.id + 1000))
    changes = get_resource_changes(Customer)
    updates = {
        (c.resource_id, c.old_value, c.new_value) for c in changes if c.operation == "update"
    }
    assert updates == {(str(n), n, n + 1) for n in range(1, rows + 1)}
    deleted = {c.resource_id for c in changes if c.operation == "delete"}
    inserted = {
        c.resource_id for c in changes if c.operation == "insert" and int(c.resource_id) > 1000
    }
    assert deleted == {str(n) for n in range(1, rows + 1)}
    assert inserted == {str(n + 1000) for n in range(1, rows + 1)}
    assert len(changes) == rows * 2 + rows + rows * 2 * 2


def test_a_write_outside_the_sessions_events_shares_the_transaction_id(audit):
    """Raw SQL on the Session's own connection, then a flush, in one transaction: one transaction id."""
    Customer = simple_customer(audit.base)
    audit.create_tables()
    audit.user = "u1"
    with audit.Session() as session:
        session.connection().execute(text("INSERT INTO customers (id, name) VALUES (1, 'raw')"))
        session.add(Customer(id=2, name="orm"))
        session.commit()
    changes = get_resource_changes(Customer)
    assert {c.resource_id for c in changes} == {"1", "2"}
    assert len({c.transaction_id for c in changes}) == 1
    by_id = {c.resource_id: c.changed_by for c in changes}
    assert by_id == {"1": None, "2": "u1"}


def test_cascades_from_a_table_that_is_not_captured_are_recorded(audit, backend):
    """Deleting a row of an untracked parent records the tracked child rows its ON DELETE CASCADE removes; dropping the child's triggers stops it."""
    restore = _enable_sqlite_foreign_keys(audit.engine) if backend == "sqlite" else None

    class Account(audit.base):  # not tracked
        __tablename__ = "accounts"
        id: Mapped[int] = mapped_column(primary_key=True)

    @track_table(tracked_fields=["account_id", "total"])
    class Invoice(audit.base):
        __tablename__ = "invoices"
        id: Mapped[int] = mapped_column(primary_key=True)
        account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
        total: Mapped[int]

    try:
        audit.create_tables()
        with audit.engine.begin() as connection:
            connection.execute(text("INSERT INTO accounts (id) VALUES (1), (2)"))
            connection.execute(
                text(
                    "INSERT INTO invoices (id, account_id, total) "
                    "VALUES (1, 1, 10), (2, 1, 20), (3, 2, 30)"
                )
            )
        with audit.engine.begin() as connection:
            connection.execute(text("DELETE FROM accounts WHERE id = 1"))
        deleted = sorted(
            (c.resource_id, c.field_name, c.old_value)
            for c in get_resource_changes(Invoice)
            if c.operation == "delete"
        )
        assert deleted == [
            ("1", "account_id", 1),
            ("1", "total", 10),
            ("2", "account_id", 1),
            ("2", "total", 20),
        ]
        drop_triggers(audit.engine)
        with audit.engine.begin() as connection:  # nothing left to record it, nothing fails
            connection.execute(text("DELETE FROM accounts WHERE id = 2"))
        assert len([c for c in get_resource_changes(Invoice) if c.operation == "delete"]) == 4
    finally:
        if restore is not None:
            restore()


def test_check_finds_no_drift_for_every_supported_type(audit, backend):
    """A model tracking one column of every supported type checks clean against what the database reflects."""
    from sqlalchemy import BigInteger, Boolean, Date, DateTime, LargeBinary, SmallInteger, Text

    @track_table(
        tracked_fields=[
            "small",
            "big",
            "flag",
            "label",
            "body",
            "tier",
            "price",
            "day",
            "moment",
            "token",
        ]
        + (["blob"] if backend != "sqlite" else [])
    )
    class Everything(audit.base):
        __tablename__ = "everything"
        id: Mapped[int] = mapped_column(primary_key=True)
        small: Mapped[int | None] = mapped_column(SmallInteger)
        big: Mapped[int | None] = mapped_column(BigInteger)
        flag: Mapped[bool | None] = mapped_column(Boolean)
        label: Mapped[str | None] = mapped_column(String(30))
        body: Mapped[str | None] = mapped_column(Text)
        tier: Mapped[Tier | None] = mapped_column(SAEnum(Tier))
        price: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
        day: Mapped[date | None] = mapped_column(Date)
        moment: Mapped[datetime | None] = mapped_column(DateTime)
        token: Mapped[uuid.UUID | None] = mapped_column(Uuid)
        blob: Mapped[bytes | None] = mapped_column(LargeBinary)

    audit.create_tables()
    assert check_triggers(audit.engine) == []


@pytest.mark.backends("postgresql", "mariadb")
def test_check_reports_a_tracked_column_retyped_in_the_database(audit, backend):
    """A tracked column whose type a migration changed (integer to text) is reported, naming both types."""
    simple_customer(audit.base)
    audit.create_tables()
    with audit.engine.begin() as connection:
        if backend == "postgresql":
            connection.exec_driver_sql("ALTER TABLE customers ALTER COLUMN score TYPE text")
        else:
            connection.exec_driver_sql("ALTER TABLE customers MODIFY score VARCHAR(20)")
    problems = check_triggers(audit.engine)
    assert [problem.kind for problem in problems] == ["column"]
    assert "Customer.score is declared Integer()" in problems[0].message
    assert "install_triggers()" in problems[0].message


def test_a_failed_trigger_caught_then_committed_leaves_no_unaudited_change(audit):
    """When a trigger cannot write its change rows, catching the error and committing keeps no change, on a connection or a Session."""
    Customer = simple_customer(audit.base)
    audit.create_tables()
    with audit.engine.begin() as connection:
        connection.execute(text("INSERT INTO customers (id, name) VALUES (1, 'kept')"))
    audit.config.table.drop(audit.engine)  # every change row now fails to be written

    with audit.engine.connect() as connection:
        with pytest.raises(DBAPIError):
            connection.execute(text("INSERT INTO customers (id, name) VALUES (2, 'lost')"))
        with contextlib.suppress(DBAPIError):  # PostgreSQL: the transaction is aborted
            connection.commit()
    with audit.Session() as session:
        session.get(Customer, 1).name = "changed"
        with pytest.raises(DBAPIError):
            session.commit()
        with pytest.raises(PendingRollbackError):
            session.commit()
    with audit.engine.connect() as connection:
        rows = connection.execute(text("SELECT id, name FROM customers ORDER BY id")).all()
    assert [tuple(row) for row in rows] == [(1, "kept")]
