"""Capture through the ORM unit of work: the correctness rules of DESIGN.md section 3, on every backend."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from datetime import UTC, date, datetime
from typing import Any, ClassVar

import pytest
from freezegun import freeze_time
from sqlalchemy import ForeignKey, String, Text, Uuid, event, func, select, update
from sqlalchemy.dialects import mysql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, load_only, mapped_column, relationship

from sqlaudit import NotConfiguredError, audit_context, get_resource_changes, track_table
from sqlaudit.config import clear_config


@pytest.fixture(params=["session", "database"])
def capture(request: pytest.FixtureRequest) -> str:
    """Every capture scenario runs with the flush hooks and with database triggers."""
    return str(request.param)


def declare_customer(
    base: type[DeclarativeBase],
    *,
    tracked_fields: tuple[str, ...] = ("name", "email", "score"),
    **track_options: Any,
) -> type[Any]:
    """Declare the standard Customer model on ``base``; ``notes`` is never tracked."""

    @track_table(tracked_fields=list(tracked_fields), **track_options)
    class Customer(base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(100))
        email: Mapped[str | None] = mapped_column(String(100))
        score: Mapped[int | None]
        notes: Mapped[str | None] = mapped_column(String(100))

    return Customer


def history(model: type[Any], resource_id: Any) -> list[tuple[str, str, Any, Any]]:
    """One resource's changes as (operation, field, old, new), oldest first."""
    changes = get_resource_changes(model, filter_resource_ids=resource_id)
    return [(c.operation, c.field_name, c.old_value, c.new_value) for c in reversed(changes)]


def insert_one(audit: Any, model: type[Any], **values: Any) -> int:
    """Insert one object of ``model`` in its own session and return its id."""
    with audit.Session() as session:
        obj = model(**values)
        session.add(obj)
        session.commit()
        return int(obj.id)


def count_rows(audit: Any, model: type[Any]) -> int:
    """How many rows the model's table holds, read on a fresh connection."""
    with audit.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(model)).scalar_one())


# --- inserts -------------------------------------------------------------------------------


def test_insert_records_every_tracked_field_that_has_a_value(audit):
    """An insert records one row per tracked field with a value, old value None, and nothing for untracked or NULL fields."""
    Customer = declare_customer(audit.base)
    audit.create_tables()

    customer_id = insert_one(audit, Customer, name="Ann", email="ann@example.com", notes="vip")

    assert set(history(Customer, customer_id)) == {
        ("insert", "name", None, "Ann"),
        ("insert", "email", None, "ann@example.com"),
    }
    assert {row.field_name for row in audit.rows()} == {"name", "email"}


# --- updates and the true old value --------------------------------------------------------


def test_update_after_commit_records_the_true_old_value(audit):
    """An update of attributes a commit expired records as old values what the database held at the update."""
    Customer = declare_customer(audit.base)
    audit.create_tables()

    with audit.Session(expire_on_commit=True) as session:
        customer = Customer(name="Ann", score=5)
        session.add(customer)
        session.commit()
        assert "name" not in customer.__dict__  # the commit expired it
        with audit.engine.begin() as connection:  # another writer, not seen by this session
            connection.execute(update(Customer.__table__).values(score=50))
        customer.name = "Anna"
        customer.score = 6
        session.commit()
        customer_id = customer.id

    changes = history(Customer, customer_id)[2:]
    if audit.capture == "database":  # the other writer is recorded too
        assert changes[0] == ("update", "score", 5, 50)
        changes = changes[1:]
    assert set(changes) == {
        ("update", "name", "Ann", "Anna"),
        ("update", "score", 50, 6),
    }


def test_update_in_a_fresh_session_records_the_old_value(audit):
    """An object loaded in a new session and assigned without reading records the stored old value."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    customer_id = insert_one(audit, Customer, name="Ann", email="ann@example.com")

    with audit.Session() as session:
        customer = session.get(Customer, customer_id)
        customer.email = "ann@new.example.com"
        session.commit()

    assert history(Customer, customer_id)[-1] == (
        "update",
        "email",
        "ann@example.com",
        "ann@new.example.com",
    )


def test_update_of_a_never_loaded_attribute_records_the_old_value(audit):
    """Assigning an attribute the query never loaded (load_only) records the stored old value."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    customer_id = insert_one(audit, Customer, name="Ann", score=10)

    with audit.Session() as session:
        customer = session.scalars(select(Customer).options(load_only(Customer.id))).one()
        assert "score" not in customer.__dict__
        customer.score = 11
        session.commit()

    assert history(Customer, customer_id)[-1] == ("update", "score", 10, 11)


def test_update_of_an_unloaded_deferred_column_records_the_old_value(audit):
    """A tracked deferred column updated without being loaded records its stored old value."""

    @track_table(tracked_fields=["title", "body"])
    class Article(audit.base):
        __tablename__ = "articles"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(String(100))
        body: Mapped[str] = mapped_column(Text, deferred=True)

    audit.create_tables()
    article_id = insert_one(audit, Article, title="Hello", body="first draft")

    with audit.Session() as session:
        article = session.get(Article, article_id)
        assert "body" not in article.__dict__
        article.body = "final text"
        session.commit()

    assert history(Article, article_id) == [
        ("insert", "title", None, "Hello"),
        ("insert", "body", None, "first draft"),
        ("update", "body", "first draft", "final text"),
    ]


# --- NULL ----------------------------------------------------------------------------------


def test_change_from_null_to_a_value_is_recorded(audit):
    """Setting a NULL field records old value None and the new value."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    customer_id = insert_one(audit, Customer, name="Ann")

    with audit.Session() as session:
        session.get(Customer, customer_id).email = "ann@example.com"
        session.commit()

    assert history(Customer, customer_id) == [
        ("insert", "name", None, "Ann"),
        ("update", "email", None, "ann@example.com"),
    ]


def test_change_from_a_value_to_null_is_recorded(audit):
    """Clearing a field records its old value and new value None."""
    Customer = declare_customer(audit.base)
    audit.create_tables()

    with audit.Session() as session:
        customer = Customer(name="Ann", score=3)
        session.add(customer)
        session.commit()
        customer.score = None
        session.commit()
        customer_id = customer.id

    assert history(Customer, customer_id)[-1] == ("update", "score", 3, None)
    assert audit.rows()[-1].new_value is None


# --- no-op assignments ---------------------------------------------------------------------


def test_assigning_an_equal_value_records_nothing(audit):
    """Assigning the value a field already holds, loaded or expired, records no change."""
    Customer = declare_customer(audit.base)
    audit.create_tables()

    with audit.Session() as session:
        customer = Customer(name="Ann", score=5)
        session.add(customer)
        session.commit()
        customer.name = "Ann"  # expired by the commit: compared with the stored value
        customer.score = 5
        session.commit()
        customer.email  # noqa: B018 - load the row
        customer.name = "Ann"  # loaded
        customer.email = None
        session.commit()
        customer_id = customer.id

    assert [operation for operation, *_ in history(Customer, customer_id)] == ["insert", "insert"]
    assert len(audit.rows()) == 2


def test_changing_a_value_and_back_before_the_flush_records_nothing(audit):
    """A field set to another value and back to the original before the flush records no change."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    customer_id = insert_one(audit, Customer, name="Ann", score=5)

    with audit.Session() as session:
        customer = session.get(Customer, customer_id)
        customer.name = "Bob"
        customer.score = 9
        customer.name = "Ann"
        customer.score = 5
        session.commit()

    assert len(audit.rows()) == 2
    assert {operation for operation, *_ in history(Customer, customer_id)} == {"insert"}


# --- deletes -------------------------------------------------------------------------------


def test_delete_records_the_last_value_of_every_tracked_field(audit):
    """A delete records one row per tracked field with its last value, NULL fields included."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    customer_id = insert_one(audit, Customer, name="Ann", email="ann@example.com", notes="x")

    with audit.Session() as session:
        session.delete(session.get(Customer, customer_id))
        session.commit()

    deletes = [change for change in history(Customer, customer_id) if change[0] == "delete"]
    assert set(deletes) == {
        ("delete", "name", "Ann", None),
        ("delete", "email", "ann@example.com", None),
        ("delete", "score", None, None),
    }


def test_delete_after_a_commit_expired_the_object_records_its_last_values(audit):
    """Deleting an object whose attributes a commit expired records the values the row last held."""
    Customer = declare_customer(audit.base)
    audit.create_tables()

    with audit.Session() as session:
        customer = Customer(name="Ann", score=1)
        session.add(customer)
        session.commit()
        customer.score = 2
        session.commit()
        customer_id = customer.id
        session.expire(customer)
        session.delete(customer)
        session.commit()

    deletes = [change for change in history(Customer, customer_id) if change[0] == "delete"]
    assert set(deletes) == {
        ("delete", "name", "Ann", None),
        ("delete", "email", None, None),
        ("delete", "score", 2, None),
    }
    assert count_rows(audit, Customer) == 0


# --- resource ids --------------------------------------------------------------------------


def test_generated_primary_keys_are_the_resource_ids(audit):
    """Rows inserted in one flush are recorded under the ids the database generated for them."""
    Customer = declare_customer(audit.base)
    audit.create_tables()

    with audit.Session() as session:
        customers = [Customer(name=f"c{n}") for n in range(3)]
        session.add_all(customers)
        session.commit()
        ids = {customer.name: customer.id for customer in customers}

    recorded = {c.new_value: c.resource_id for c in get_resource_changes(Customer)}
    assert recorded == {name: str(customer_id) for name, customer_id in ids.items()}
    for name, customer_id in ids.items():
        assert history(Customer, customer_id) == [("insert", "name", None, name)]


def test_composite_primary_key_is_recorded_and_retrievable(audit):
    """A two-column key is recorded as both parts and found again by a (int, str) tuple."""

    @track_table(tracked_fields=["label"])
    class Part(audit.base):
        __tablename__ = "parts"
        code: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        variant: Mapped[str] = mapped_column(String(10), primary_key=True)
        label: Mapped[str] = mapped_column(String(100))

    audit.create_tables()
    with audit.Session() as session:
        session.add_all(
            [
                Part(code=1, variant="a", label="one-a"),
                Part(code=1, variant="b", label="one-b"),
                Part(code=2, variant="a", label="two-a"),
            ]
        )
        session.commit()
        session.get(Part, (1, "a")).label = "one-a v2"
        session.commit()

    changes = get_resource_changes(Part, filter_resource_ids=[(1, "a")])
    assert [(c.operation, c.old_value, c.new_value) for c in changes] == [
        ("update", "one-a", "one-a v2"),
        ("insert", None, "one-a"),
    ]
    assert {c.resource_id for c in changes} == {'["1","a"]'}
    assert get_resource_changes(Part, filter_resource_ids=("1", "a")) == changes


def test_uuid_primary_key_is_retrievable_by_uuid_or_str(audit):
    """A UUID primary key generated by a Python default is found by the UUID and by its text."""

    @track_table(tracked_fields=["label"])
    class Token(audit.base):
        __tablename__ = "tokens"
        id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
        label: Mapped[str] = mapped_column(String(100))

    audit.create_tables()
    with audit.Session() as session:
        token, other = Token(label="mine"), Token(label="other")
        session.add_all([token, other])
        session.commit()
        token.label = "mine v2"
        session.commit()
        token_id = token.id

    by_uuid = get_resource_changes(Token, filter_resource_ids=token_id)
    assert [(c.operation, c.new_value) for c in by_uuid] == [
        ("update", "mine v2"),
        ("insert", "mine"),
    ]
    assert {c.resource_id for c in by_uuid} == {str(token_id)}
    assert get_resource_changes(Token, filter_resource_ids=str(token_id)) == by_uuid


def test_resource_id_field_identifies_the_resource(audit):
    """With resource_id_field, changes are recorded and found under that column's value."""
    Customer = declare_customer(audit.base, tracked_fields=("name",))

    @track_table(tracked_fields=["name"], resource_id_field="code")
    class Supplier(audit.base):
        __tablename__ = "suppliers"
        id: Mapped[int] = mapped_column(primary_key=True)
        code: Mapped[str] = mapped_column(String(36), unique=True)
        name: Mapped[str] = mapped_column(String(100))

    audit.create_tables()
    insert_one(audit, Customer, name="pad the ids")  # ids and codes must not coincide
    with audit.Session() as session:
        supplier = Supplier(code="SUP-7", name="Acme")
        session.add(supplier)
        session.commit()
        supplier.name = "Acme Ltd"
        session.commit()
        session.delete(supplier)
        session.commit()

    assert history(Supplier, "SUP-7") == [
        ("insert", "name", None, "Acme"),
        ("update", "name", "Acme", "Acme Ltd"),
        ("delete", "name", "Acme Ltd", None),
    ]
    assert {row.resource_id for row in audit.rows() if row.table_name == "suppliers"} == {"SUP-7"}


# --- users ---------------------------------------------------------------------------------


def test_user_is_resolved_at_each_flush(audit):
    """Each flush of one session records the user current at that flush, not an earlier one."""
    Customer = declare_customer(audit.base)
    audit.create_tables()

    with audit.Session() as session:
        audit.user = 1
        customer = Customer(name="Ann")
        session.add(customer)
        session.commit()
        audit.user = 2
        customer.name = "Anna"
        session.commit()
        audit.user = 3
        customer.score = 1
        session.flush()
        audit.user = "4"
        customer.score = 2
        session.commit()
        customer_id = customer.id

    changes = get_resource_changes(Customer, filter_resource_ids=customer_id)
    assert [(c.field_name, c.new_value, c.changed_by) for c in reversed(changes)] == [
        ("name", "Ann", "1"),
        ("name", "Anna", "2"),
        ("score", 1, "3"),
        ("score", 2, "4"),
    ]


def test_callback_returning_none_records_no_user(audit):
    """A user callback returning None stores NULL as the user, never the text 'None'."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    audit.user = None

    customer_id = insert_one(audit, Customer, name="Ann")

    assert [row.changed_by for row in audit.rows()] == [None]
    assert [
        c.changed_by for c in get_resource_changes(Customer, filter_resource_ids=customer_id)
    ] == [None]


def test_uuid_user_id_is_stored_as_its_text(audit):
    """A UUID returned by the user callback is stored as its canonical text and found by it."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    audit.user = uuid.uuid4()

    insert_one(audit, Customer, name="Ann")

    assert [row.changed_by for row in audit.rows()] == [str(audit.user)]
    found = get_resource_changes(Customer, filter_user_ids=audit.user)
    assert [c.new_value for c in found] == ["Ann"]


def test_user_model_instance_records_its_id_field(audit):
    """A callback returning a user_model instance records the value of user_model_user_id_field."""

    class User(audit.base):
        __tablename__ = "users"
        id: Mapped[int] = mapped_column(primary_key=True)
        public_id: Mapped[str] = mapped_column(String(36), unique=True)

    Customer = declare_customer(audit.base)
    audit.create_tables()
    with audit.Session(expire_on_commit=False) as session:
        alice = User(public_id="alice-7f3a")
        session.add(alice)
        session.commit()
    audit.configure(
        user_model=User, user_model_user_id_field="public_id", get_user_id_callback=lambda: alice
    )

    insert_one(audit, Customer, name="Ann")

    assert [row.changed_by for row in audit.rows()] == ["alice-7f3a"]


# --- transactions --------------------------------------------------------------------------


def test_rollback_after_a_flush_leaves_no_change_rows(audit):
    """Change rows written by a flush disappear when the transaction rolls back."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    customer_id = insert_one(audit, Customer, name="Ann")

    with audit.Session() as session:
        session.add(Customer(name="Bob"))
        session.get(Customer, customer_id).name = "Anna"
        session.flush()
        session.rollback()

    assert [(row.resource_id, row.operation) for row in audit.rows()] == [
        (str(customer_id), "insert")
    ]
    assert history(Customer, customer_id) == [("insert", "name", None, "Ann")]
    assert count_rows(audit, Customer) == 1


def test_rolled_back_savepoint_drops_its_change_rows(audit):
    """A savepoint rolled back drops the change rows of its changes, keeps the outer ones, and later old values are the outer ones."""
    Customer = declare_customer(audit.base)
    audit.create_tables()

    with audit.Session() as session:
        ann = Customer(name="Ann")
        session.add(ann)
        savepoint = session.begin_nested()  # flushes Ann's insert in the outer transaction
        ann.name = "Anna"
        session.add(Customer(name="Bob"))
        session.flush()
        savepoint.rollback()
        ann.name = "Annie"
        session.commit()
        ann_id = ann.id

    changes = get_resource_changes(Customer)
    assert [(c.resource_id, c.operation, c.old_value, c.new_value) for c in changes] == [
        (str(ann_id), "update", "Ann", "Annie"),
        (str(ann_id), "insert", None, "Ann"),
    ]
    assert count_rows(audit, Customer) == 1


def test_committed_savepoint_keeps_its_change_rows(audit):
    """A savepoint released and then committed with its transaction keeps its change rows."""
    Customer = declare_customer(audit.base)
    audit.create_tables()

    with audit.Session() as session:
        ann = Customer(name="Ann")
        session.add(ann)
        with session.begin_nested():
            ann.name = "Anna"
            bob = Customer(name="Bob")
            session.add(bob)
        session.commit()
        ann_id, bob_id = ann.id, bob.id

    assert history(Customer, ann_id) == [
        ("insert", "name", None, "Ann"),
        ("update", "name", "Ann", "Anna"),
    ]
    assert history(Customer, bob_id) == [("insert", "name", None, "Bob")]


@pytest.mark.backends("postgresql", "mariadb")
def test_concurrent_writers_each_record_their_own_changes(audit):
    """Threads writing at once, each with its own session and user, record their own user and resources."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    current_user: ContextVar[str | None] = ContextVar("current_user", default=None)
    audit.configure(get_user_id_callback=current_user.get)
    workers, rounds = 4, 10
    start = threading.Barrier(workers)

    def work(worker: int) -> None:
        current_user.set(f"user-{worker}")
        start.wait(timeout=30)
        with audit.Session() as session:
            for n in range(rounds):
                customer = Customer(name=f"w{worker}-{n}", score=0)
                session.add(customer)
                session.commit()
                customer.score = worker + 1
                session.commit()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(work, worker) for worker in range(workers)]:
            future.result(timeout=120)

    with audit.Session() as session:
        owner = {
            str(customer.id): int(customer.name[1 : customer.name.index("-")])
            for customer in session.scalars(select(Customer))
        }
    changes = get_resource_changes(Customer)
    assert len(owner) == workers * rounds
    assert len(changes) == workers * rounds * 3  # insert name, insert score, update score
    for change in changes:
        worker = owner[change.resource_id]
        assert change.changed_by == f"user-{worker}"
        if change.operation == "update":
            assert (change.old_value, change.new_value) == (0, worker + 1)
        elif change.field_name == "name":
            assert change.new_value.startswith(f"w{worker}-")


# --- inheritance ---------------------------------------------------------------------------


def test_single_table_subclass_is_recorded_under_the_parent_registration(audit):
    """An instance of an untracked single-table subclass is recorded with its tracked parent's fields and label."""

    @track_table(tracked_fields=["name"])
    class Employee(audit.base):
        __tablename__ = "employees"
        id: Mapped[int] = mapped_column(primary_key=True)
        kind: Mapped[str] = mapped_column(String(20))
        name: Mapped[str] = mapped_column(String(100))
        __mapper_args__: ClassVar[dict[str, Any]] = {
            "polymorphic_on": "kind",
            "polymorphic_identity": "employee",
        }

    class Manager(Employee):
        budget: Mapped[int | None] = mapped_column(nullable=True)
        __mapper_args__: ClassVar[dict[str, Any]] = {"polymorphic_identity": "manager"}

    audit.create_tables()
    with audit.Session() as session:
        manager = Manager(name="Mia", budget=10)
        session.add(manager)
        session.commit()
        manager.name = "Mia B"
        manager.budget = 20
        session.commit()
        manager_id = manager.id

    expected = [("insert", "name", None, "Mia"), ("update", "name", "Mia", "Mia B")]
    assert history(Employee, manager_id) == expected
    assert history(Manager, manager_id) == expected
    assert {(row.table_name, row.table_label) for row in audit.rows()} == {
        ("employees", "Employee")
    }


@pytest.mark.capture_modes(
    "session",
    reason="a trigger cannot see a parent table's columns; test_triggers.py checks the refusal",
)
def test_joined_table_subclass_with_its_own_registration(audit):
    """A joined-table subclass tracked on its own records parent and subclass columns under its registration."""

    @track_table(tracked_fields=["name"])
    class Person(audit.base):
        __tablename__ = "persons"
        id: Mapped[int] = mapped_column(primary_key=True)
        kind: Mapped[str] = mapped_column(String(20))
        name: Mapped[str] = mapped_column(String(100))
        __mapper_args__: ClassVar[dict[str, Any]] = {
            "polymorphic_on": "kind",
            "polymorphic_identity": "person",
        }

    @track_table(tracked_fields=["name", "language"])
    class Engineer(Person):
        __tablename__ = "engineers"
        id: Mapped[int] = mapped_column(ForeignKey("persons.id"), primary_key=True)
        language: Mapped[str | None] = mapped_column(String(50))
        __mapper_args__: ClassVar[dict[str, Any]] = {"polymorphic_identity": "engineer"}

    audit.create_tables()
    with audit.Session() as session:
        pat, eve = Person(name="Pat"), Engineer(name="Eve", language="python")
        session.add_all([pat, eve])
        session.commit()
        pat.name = "Pat Q"
        eve.name = "Eve L"
        eve.language = "rust"
        session.commit()
        pat_id, eve_id = pat.id, eve.id

    assert history(Person, pat_id) == [
        ("insert", "name", None, "Pat"),
        ("update", "name", "Pat", "Pat Q"),
    ]
    assert set(history(Engineer, eve_id)) == {
        ("insert", "name", None, "Eve"),
        ("insert", "language", None, "python"),
        ("update", "name", "Eve", "Eve L"),
        ("update", "language", "python", "rust"),
    }
    rows = audit.rows()
    assert len(rows) == 6  # every change once, under one registration
    assert {
        (row.table_name, row.table_label) for row in rows if row.resource_id == str(eve_id)
    } == {("engineers", "Engineer")}


# --- statements, transactions and failures -------------------------------------------------


@pytest.mark.capture_modes(
    "session", reason="it counts the client's statements; triggers write inside the database"
)
def test_a_flush_writes_its_change_rows_with_one_statement(audit, count_statements):
    """A flush of 1 or 50 new objects with four tracked fields writes the change rows in one statement."""
    Customer = declare_customer(audit.base, tracked_fields=("name", "email", "score", "notes"))
    audit.create_tables()
    change_table = audit.config.table.name

    statements_per_flush = []
    with audit.Session() as session:
        for size in (1, 50):
            count_statements.statements.clear()
            session.add_all(
                Customer(name=f"c{n}", email=f"c{n}@example.com", score=n, notes="n")
                for n in range(size)
            )
            session.commit()
            on_change_table = count_statements.matching(lambda sql: change_table in sql)
            assert all(sql.lstrip().upper().startswith("INSERT") for sql, _ in on_change_table)
            statements_per_flush.append(len(on_change_table))

    assert statements_per_flush == [1, 1]
    assert len(audit.rows()) == 51 * 4


def test_a_flush_of_untracked_models_issues_no_statement_on_the_change_table(
    audit, count_statements
):
    """Inserting, updating and deleting only untracked models never touches the change table."""

    class Note(audit.base):
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(primary_key=True)
        text: Mapped[str] = mapped_column(String(100))

    audit.create_tables()
    count_statements.statements.clear()
    with audit.Session() as session:
        note = Note(text="a")
        session.add(note)
        session.commit()
        note.text = "b"
        session.commit()
        session.delete(note)
        session.commit()

    assert count_statements.matching(lambda sql: "notes" in sql)  # the counter did see the work
    assert count_statements.matching(lambda sql: audit.config.table.name in sql) == []
    assert audit.rows() == []


def test_rows_of_one_flush_share_a_transaction_id_and_timestamp(audit):
    """All change rows of one flush share one transaction id and one timestamp; another flush has its own id."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    existing_id = insert_one(audit, Customer, name="Old", score=1)

    with audit.Session() as session:
        session.get(Customer, existing_id).score = 2  # before the adds: a get autoflushes
        session.add_all([Customer(name="Ann", email="ann@example.com"), Customer(name="Bob")])
        session.commit()
    with audit.Session() as session:
        session.get(Customer, existing_id).score = 3
        session.commit()

    rows = audit.rows()
    first, second, third = rows[:2], rows[2:6], rows[6:]
    assert [len(first), len(second), len(third)] == [2, 4, 1]
    assert len({row.transaction_id for row in second}) == 1
    if audit.capture == "session":  # a trigger stamps each statement's rows on its own
        assert len({row.changed_at for row in second}) == 1
    assert len({first[0].transaction_id, second[0].transaction_id, third[0].transaction_id}) == 3
    changes = get_resource_changes(Customer)
    assert [c.transaction_id for c in reversed(changes)] == [row.transaction_id for row in rows]


def test_tracked_flush_without_config_raises_and_writes_nothing(audit):
    """A tracked flush with no configuration raises NotConfiguredError and neither the change nor its audit rows are written."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    clear_config()

    with audit.Session() as session:
        session.add(Customer(name="Ann"))
        with pytest.raises(NotConfiguredError):
            session.commit()

    assert count_rows(audit, Customer) == 0
    assert audit.rows() == []


def test_change_row_that_cannot_be_written_fails_the_flush(audit):
    """When the change rows cannot be written the commit raises and the user's insert or update is not committed."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    with audit.engine.begin() as connection:
        connection.execute(Customer.__table__.insert().values(id=1, name="Bob"))
    audit.config.table.drop(audit.engine)

    with audit.Session() as session:
        session.add(Customer(name="Ann"))
        with pytest.raises(DBAPIError):
            session.commit()
    assert count_rows(audit, Customer) == 1

    with audit.Session() as session:
        session.get(Customer, 1).name = "Robert"
        with pytest.raises(DBAPIError):
            session.commit()
    with audit.Session() as session:
        assert session.get(Customer, 1).name == "Bob"


# --- computed values -----------------------------------------------------------------------


def test_sql_expression_assignment_records_the_computed_value(audit):
    """Assigning a SQL expression records the value the database computed, not the expression."""
    Customer = declare_customer(audit.base)
    audit.create_tables()

    with audit.Session() as session:
        customer = Customer(name="Ann", score=5)
        session.add(customer)
        session.commit()
        customer.score = Customer.score + 1
        session.commit()
        customer_id = customer.id

    assert history(Customer, customer_id)[-1] == ("update", "score", 5, 6)


def test_python_side_default_is_recorded_on_insert(audit):
    """A column filled by its Python-side default records that value on insert."""

    @track_table(tracked_fields=["title", "status"])
    class Ticket(audit.base):
        __tablename__ = "tickets"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(String(100))
        status: Mapped[str] = mapped_column(String(20), default="new")

    audit.create_tables()
    ticket_id = insert_one(audit, Ticket, title="Broken")

    assert set(history(Ticket, ticket_id)) == {
        ("insert", "title", None, "Broken"),
        ("insert", "status", None, "new"),
    }


def test_server_side_default_is_recorded_on_insert(audit):
    """A column filled by its server default records the value the database gave it on insert."""

    @track_table(tracked_fields=["title", "status"])
    class Ticket(audit.base):
        __tablename__ = "tickets"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(String(100))
        status: Mapped[str] = mapped_column(String(20), server_default="open")

    audit.create_tables()
    ticket_id = insert_one(audit, Ticket, title="Broken")

    assert set(history(Ticket, ticket_id)) == {
        ("insert", "title", None, "Broken"),
        ("insert", "status", None, "open"),
    }


# --- regressions: capture after other listeners, deletes, large values, context storage ----


def test_delete_after_an_unflushed_edit_records_the_database_value(audit):
    """Deleting an object with an unflushed edit records the value the database held, not the edit, as the delete's old value."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    loaded_id = insert_one(audit, Customer, name="Jane", email="jane@example.com")

    with audit.Session() as session:
        expired = Customer(name="Jack", score=3)
        session.add(expired)
        session.commit()  # expires the object
        expired_id = expired.id
        loaded = session.get(Customer, loaded_id)  # loaded from the database
        for customer in (loaded, expired):
            customer.name = "Typo"
            session.delete(customer)
        session.commit()

    assert set(history(Customer, loaded_id)[-3:]) == {
        ("delete", "name", "Jane", None),
        ("delete", "email", "jane@example.com", None),
        ("delete", "score", None, None),
    }
    assert set(history(Customer, expired_id)[-3:]) == {
        ("delete", "name", "Jack", None),
        ("delete", "email", None, None),
        ("delete", "score", 3, None),
    }
    assert [row.operation for row in audit.rows() if row.operation == "update"] == []


def test_before_flush_listener_registered_after_the_hooks_is_recorded(audit):
    """A before_flush listener added after register_hooks() that edits a tracked field and adds a tracked object has both recorded."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    customer_id = insert_one(audit, Customer, name="Ann")

    def normalise(session: Any, flush_context: Any, instances: Any) -> None:
        for obj in list(session.dirty):
            if isinstance(obj, Customer) and obj.email is None:
                obj.email = f"{obj.name.lower()}@example.com"
                session.add(Customer(name=f"{obj.name} (copy)"))

    event.listen(audit.Session, "before_flush", normalise)
    try:
        with audit.Session() as session:
            session.get(Customer, customer_id).name = "Anna"
            session.commit()
    finally:
        event.remove(audit.Session, "before_flush", normalise)

    assert set(history(Customer, customer_id)[1:]) == {
        ("update", "name", "Ann", "Anna"),
        ("update", "email", None, "anna@example.com"),
    }
    with audit.Session() as session:
        copy_id = session.scalars(select(Customer.id).where(Customer.name == "Anna (copy)")).one()
    assert history(Customer, copy_id) == [("insert", "name", None, "Anna (copy)")]


def test_tracked_object_added_by_a_listener_to_an_untracked_flush_is_recorded(audit):
    """A tracked object added by a later before_flush listener to a flush of only untracked objects is recorded."""
    Customer = declare_customer(audit.base)

    class Memo(audit.base):
        __tablename__ = "memos"
        id: Mapped[int] = mapped_column(primary_key=True)
        text: Mapped[str] = mapped_column(String(100))

    audit.create_tables()
    audit.user = 4

    def add_customer(session: Any, flush_context: Any, instances: Any) -> None:
        for obj in list(session.new):
            if isinstance(obj, Memo):
                session.add(Customer(name=f"from {obj.text}"))

    event.listen(audit.Session, "before_flush", add_customer)
    try:
        with audit.Session() as session:
            session.add(Memo(text="memo"))
            session.commit()
    finally:
        event.remove(audit.Session, "before_flush", add_customer)

    changes = get_resource_changes(Customer)
    assert [(c.operation, c.field_name, c.new_value, c.changed_by) for c in changes] == [
        ("insert", "name", "from memo", "4")
    ]


def test_field_set_by_a_mapper_before_update_event_is_recorded(audit):
    """A tracked field set by a mapper before_update event is recorded with the field the user changed."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    customer_id = insert_one(audit, Customer, name="Ann", email="ann@example.com")

    def derive_email(mapper: Any, connection: Any, target: Any) -> None:
        target.email = f"{target.name.lower()}@example.com"

    event.listen(Customer, "before_update", derive_email)
    try:
        with audit.Session() as session:
            session.get(Customer, customer_id).name = "Anna"
            session.commit()
    finally:
        event.remove(Customer, "before_update", derive_email)

    assert set(history(Customer, customer_id)[2:]) == {
        ("update", "name", "Ann", "Anna"),
        ("update", "email", "ann@example.com", "anna@example.com"),
    }
    with audit.Session() as session:
        assert session.get(Customer, customer_id).email == "anna@example.com"


def declare_parent_and_child(base: type[DeclarativeBase]) -> tuple[type[Any], type[Any]]:
    """Declare an untracked Parent whose tracked children are deleted as orphans."""

    class Parent(base):
        __tablename__ = "parents"
        id: Mapped[int] = mapped_column(primary_key=True)
        children: Mapped[list[Child]] = relationship(
            cascade="all, delete-orphan", back_populates="parent", order_by="Child.id"
        )

    @track_table(tracked_fields=["label", "parent_id"])
    class Child(base):
        __tablename__ = "children"
        id: Mapped[int] = mapped_column(primary_key=True)
        label: Mapped[str] = mapped_column(String(100))
        parent_id: Mapped[int] = mapped_column(ForeignKey("parents.id"))
        parent: Mapped[Parent] = relationship(back_populates="children")

    return Parent, Child


def test_delete_orphan_cascade_records_the_childs_delete(audit):
    """Removing a child from a delete-orphan collection records the child's delete with its last values."""
    Parent, Child = declare_parent_and_child(audit.base)
    audit.create_tables()
    with audit.Session() as session:
        parent = Parent(children=[Child(label="a"), Child(label="b")])
        session.add(parent)
        session.commit()
        parent_id, (first_id, second_id) = parent.id, [c.id for c in parent.children]

    with audit.Session() as session:
        parent = session.get(Parent, parent_id)
        parent.children.remove(parent.children[0])
        session.commit()

    assert history(Child, first_id) == [
        ("insert", "label", None, "a"),
        ("insert", "parent_id", None, parent_id),
        ("delete", "label", "a", None),
        ("delete", "parent_id", parent_id, None),
    ]
    assert len(history(Child, second_id)) == 2
    assert count_rows(audit, Child) == 1


def test_orphan_with_an_unflushed_edit_records_the_database_value(audit):
    """An orphaned child edited before the flush records one delete with the database's values and no update."""
    Parent, Child = declare_parent_and_child(audit.base)
    audit.create_tables()
    with audit.Session() as session:
        parent = Parent(children=[Child(label="a")])
        session.add(parent)
        session.commit()
        parent_id, child_id = parent.id, parent.children[0].id

    with audit.Session() as session:
        parent = session.get(Parent, parent_id)
        child = parent.children[0]
        child.label = "Typo"
        parent.children.remove(child)
        session.commit()

    assert history(Child, child_id)[2:] == [
        ("delete", "label", "a", None),
        ("delete", "parent_id", parent_id, None),
    ]


def test_long_text_value_is_recorded_whole(audit):
    """A tracked Text value of 100,000 characters (LONGTEXT on MariaDB) is recorded and reads back whole, old and new."""

    @track_table(tracked_fields=["body"])
    class Document(audit.base):
        __tablename__ = "documents"
        id: Mapped[int] = mapped_column(primary_key=True)
        body: Mapped[str] = mapped_column(Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb"))

    audit.create_tables()
    first, second = "0123456789" * 10_000, "abcdefghij" * 10_000
    document_id = insert_one(audit, Document, body=first)
    with audit.Session() as session:
        session.get(Document, document_id).body = second
        session.commit()

    (insert_row, update_row) = history(Document, document_id)
    assert insert_row == ("insert", "body", None, first)
    assert update_row == ("update", "body", first, second)
    assert len(update_row[2]) == len(update_row[3]) == 100_000


def test_extra_column_is_sql_null_without_a_context(audit):
    """Rows written with no context store SQL NULL (not JSON null) in the extra column; rows with a context store JSON."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    insert_one(audit, Customer, name="Ann", email="ann@example.com")
    with audit_context(reason="import"):
        insert_one(audit, Customer, name="Bob")

    table = audit.config.table
    with audit.engine.connect() as connection:
        nulls = connection.execute(
            select(table.c.field_name).where(table.c.extra.is_(None)).order_by(table.c.id)
        ).scalars()
        assert list(nulls) == ["name", "email"]
        stored = connection.execute(select(table.c.extra).where(table.c.extra.is_not(None)))
        assert stored.scalars().all() == [{"reason": "import"}]


@pytest.mark.capture_modes(
    "session", reason="it freezes Python's clock, and triggers take the database's"
)
def test_mixed_datetime_and_date_range_is_accepted(audit):
    """A date range mixing a datetime and a date bound is accepted, the date covering its whole day (time zone UTC)."""
    Customer = declare_customer(audit.base)
    audit.create_tables()
    with freeze_time(datetime(2026, 3, 1, 11, 0, tzinfo=UTC)):
        customer_id = insert_one(audit, Customer, name="v0")
    for name, instant in [("v1", datetime(2026, 3, 1, 13, 0)), ("v2", datetime(2026, 3, 2, 0, 30))]:
        with freeze_time(instant.replace(tzinfo=UTC)), audit.Session() as session:
            session.get(Customer, customer_id).name = name
            session.commit()

    def names(start: Any, end: Any) -> list[Any]:
        return [c.new_value for c in get_resource_changes(Customer, filter_date_range=(start, end))]

    assert names(datetime(2026, 3, 1, 12, 0), date(2026, 3, 1)) == ["v1"]
    assert names(date(2026, 3, 1), datetime(2026, 3, 1, 12, 0)) == ["v0"]


@pytest.mark.capture_modes(
    "session",
    reason="a JSON column has no SQL spelling of the codec; database capture refuses it at install",
)
def test_in_place_change_of_a_mutable_json_value_records_the_true_old_value(audit):
    """Mutating a MutableDict in place records the dict as the database held it, not the mutated one."""
    from sqlalchemy import JSON
    from sqlalchemy.ext.mutable import MutableDict

    @track_table(tracked_fields=["prefs"])
    class Profile(audit.base):
        __tablename__ = "profiles"
        id: Mapped[int] = mapped_column(primary_key=True)
        prefs: Mapped[dict] = mapped_column(MutableDict.as_mutable(JSON))

    audit.create_tables()
    with audit.Session() as session:
        profile = Profile(prefs={"theme": "dark"})
        session.add(profile)
        session.commit()
        profile.prefs["theme"] = "light"
        session.commit()
        profile_id = profile.id
    assert history(Profile, profile_id)[-1] == (
        "update",
        "prefs",
        {"theme": "dark"},
        {"theme": "light"},
    )


def test_expired_assignments_on_several_single_table_subclasses_record_true_old_values(audit):
    """Old values read at flush time cover every subclass sharing a tracked single-table parent."""

    @track_table(tracked_fields=["name"])
    class Animal(audit.base):
        __tablename__ = "animals"
        id: Mapped[int] = mapped_column(primary_key=True)
        kind: Mapped[str] = mapped_column(String(10))
        name: Mapped[str] = mapped_column(String(50))
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "animal"}  # noqa: RUF012

    class Cat(Animal):
        __mapper_args__ = {"polymorphic_identity": "cat"}  # noqa: RUF012

    class Dog(Animal):
        __mapper_args__ = {"polymorphic_identity": "dog"}  # noqa: RUF012

    audit.create_tables()
    with audit.Session() as session:
        cat, dog = Cat(name="Tom"), Dog(name="Rex")
        session.add_all([cat, dog])
        session.commit()  # expires both
        cat.name, dog.name = "Thomas", "Rexy"  # assigned while expired: old values unknown
        session.commit()
        cat_id, dog_id = cat.id, dog.id
    assert history(Animal, cat_id)[-1] == ("update", "name", "Tom", "Thomas")
    assert history(Animal, dog_id)[-1] == ("update", "name", "Rex", "Rexy")


@pytest.mark.backends("postgresql")
def test_schema_translate_map_sends_change_rows_to_the_translated_schema(engine, base):
    """With schema_translate_map on the engine, the change rows go to the translated schema's table."""
    from sqlalchemy import text
    from sqlalchemy.orm import sessionmaker

    from sqlaudit import SQLAuditConfig, get_resource_changes, register_hooks, set_config

    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS sqlaudit_tenant CASCADE"))
        connection.execute(text("CREATE SCHEMA sqlaudit_tenant"))
    tenant = engine.execution_options(schema_translate_map={None: "sqlaudit_tenant"})
    try:
        Customer = declare_customer(base)
        base.metadata.create_all(tenant)
        factory = sessionmaker(tenant)
        set_config(SQLAuditConfig(session_factory=factory, time_zone="UTC"))
        register_hooks()
        with factory() as session:
            session.add(Customer(name="T", email="t@x.io", score=1))
            session.commit()
            changes = get_resource_changes(Customer, session=session)
        assert {c.new_value for c in changes} >= {"T", "t@x.io"}
        with engine.connect() as connection:
            count = connection.execute(
                text("select count(*) from sqlaudit_tenant.sqlaudit_changes")
            ).scalar()
        assert count == len(changes)
    finally:
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA sqlaudit_tenant CASCADE"))
