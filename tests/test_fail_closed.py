"""Every tracked write is recorded truthfully or refused: the cases that used to fail open.

Each test names the case it guards. Bulk statements run on both bulk paths
(``bulk_path``): audited in the database and by reading the rows.
"""

from __future__ import annotations

import contextlib
import enum
from datetime import datetime
from decimal import Decimal

import pytest
from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Integer,
    Numeric,
    String,
    TypeDecorator,
    bindparam,
    delete,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import PendingRollbackError
from sqlalchemy.ext.mutable import MutableDict
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship, with_loader_criteria

from sqlaudit import (
    BulkStatementError,
    ConfigurationTypeError,
    SQLAuditError,
    UnauditedWriteError,
    disable_auditing,
    get_resource_changes,
    track_table,
    unregister_hooks,
)
from sqlaudit._bulk import is_upsert, set_clause_keys
from sqlaudit._guard import is_autocommit


class Color(enum.Enum):
    """A column's Enum class."""

    red = "red"
    green = "green"


def declare_account(base):
    @track_table(tracked_fields=["full", "score"])
    class Account(base):
        __tablename__ = "accounts"
        id: Mapped[int] = mapped_column(primary_key=True)
        # The attribute name differs from the column name on purpose.
        full: Mapped[str] = mapped_column("full_name", String(50))
        score: Mapped[int | None] = mapped_column(Integer)

    return Account


@pytest.fixture(params=["in-database", "read"])
def bulk_path(request, audit):
    """Run the test on both bulk paths: in the database, and by reading the rows."""
    audit.configure(bulk_in_database=request.param == "in-database")
    return request.param


@pytest.fixture
def Account(audit):
    model = declare_account(audit.base)
    audit.create_tables()
    with audit.Session() as session:
        session.add_all([model(id=1, full="Ann", score=1), model(id=2, full="Bob", score=2)])
        session.commit()
    return model


def updates(model):
    """(resource, field, old, new) of every update, oldest first."""
    return [
        (c.resource_id, c.field_name, c.old_value, c.new_value)
        for c in reversed(get_resource_changes(model))
        if c.operation == "update"
    ]


def test_orm_update_with_set_values_given_at_execute_time_is_recorded(audit, Account, bulk_path):
    """Case 1: `execute(update(M).where(...), {"full_name": ...})` records the SET values."""
    with audit.Session() as session:
        session.execute(update(Account).where(Account.id == 1), {"full_name": "Anna"})
        session.commit()
    assert updates(Account) == [("1", "full", "Ann", "Anna")]


def test_core_update_with_set_values_given_at_execute_time_is_recorded(audit, Account, bulk_path):
    """Case 1: a Core `update(table)` with execute-time SET values and a WHERE parameter."""
    table = Account.__table__
    with audit.Session() as session:
        session.execute(
            update(table).where(table.c.id == bindparam("target")),
            {"full_name": "Bobby", "score": 20, "target": 2},
        )
        session.commit()
    assert updates(Account) == [("2", "full", "Bob", "Bobby"), ("2", "score", 2, 20)]


def test_core_update_naming_the_column_not_the_attribute_is_recorded(audit, Account, bulk_path):
    """Case 2: `update(table).values(full_name=...)`, the column named where it differs."""
    table = Account.__table__
    with audit.Session() as session:
        session.execute(update(table).where(table.c.id == 1).values(full_name="Annie"))
        session.execute(update(Account).where(Account.id == 2).values({table.c.full_name: "B"}))
        session.commit()
    assert updates(Account) == [("1", "full", "Ann", "Annie"), ("2", "full", "Bob", "B")]


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect(), mysql.dialect()])
def test_set_clause_keys_agree_with_the_compiled_statement(base, dialect):
    """The one private read of a SET clause names exactly the columns the compiled SQL sets."""
    Account = declare_account(base)
    table = Account.__table__
    statements = [
        update(Account).values(full="a"),
        update(Account).values({Account.score: Account.score + 1}),
        update(table).values(full_name="a", score=2),
        update(table).ordered_values((table.c.score, 1), (table.c.full_name, "x")),
    ]
    for statement in statements:
        compiled = str(statement.compile(dialect=dialect))
        set_clause = compiled.split(" SET ", 1)[1]
        named = {column.name for column in table.c if f"{column.name}=" in set_clause}
        keys = set_clause_keys(statement)
        found = set()
        for key in keys:
            column = table.c.get(key) if isinstance(key, str) else None
            if isinstance(key, str) and column is None:
                column = table.c[Account.__mapper__.attrs[key].columns[0].key]
            found.add((column if column is not None else getattr(key, "expression", key)).name)
        assert found == named, compiled


def test_true_assigned_to_an_integer_holding_one_records_nothing(audit, Account):
    """Case 8: the column type's comparator says equal, so no UPDATE is sent and nothing recorded."""
    with audit.Session() as session:
        account = session.get(Account, 1)
        account.score = True
        session.commit()
    assert updates(Account) == []


def table_rows(audit, model):
    """The model's rows as (id, full, score), by id."""
    with audit.engine.connect() as connection:
        table = model.__table__
        query = select(table.c.id, table.c.full_name, table.c.score).order_by(table.c.id)
        return [tuple(row) for row in connection.execute(query)]


def history(model, **filters):
    """(operation, resource, field, old, new) of every change, oldest first."""
    return [
        (c.operation, c.resource_id, c.field_name, c.old_value, c.new_value)
        for c in reversed(get_resource_changes(model, **filters))
    ]


# --- Case 3: upserts are refused before they run ---------------------------------------------


def upsert_statements(backend, Account):
    """The upsert forms of the backend's dialect, each over row 1 (which exists)."""
    row = {"id": 1, "full_name": "Zed", "score": 9}
    if backend == "mariadb":
        upsert = mysql.insert(Account).values(**row)
        return {
            "on duplicate key update": upsert.on_duplicate_key_update(full_name="Zed"),
            "insert ignore": insert(Account).values(**row).prefix_with("IGNORE"),
        }
    dialect = postgresql if backend == "postgresql" else sqlite
    upsert = dialect.insert(Account).values(**row)
    forms = {
        "on conflict do update": upsert.on_conflict_do_update(
            index_elements=["id"], set_={"full_name": "Zed"}
        ),
        "on conflict do nothing": upsert.on_conflict_do_nothing(),
    }
    if backend == "sqlite":
        forms["insert or replace"] = insert(Account).values(**row).prefix_with("OR REPLACE")
    return forms


def test_upserts_are_refused_before_they_run(audit, Account, backend):
    """Case 3: every upsert form is refused unrun, so no value is overwritten unrecorded."""
    for name, statement in upsert_statements(backend, Account).items():
        with audit.Session() as session:
            with pytest.raises(BulkStatementError, match="upsert of Account"):
                session.execute(statement)
            session.commit()
        assert table_rows(audit, Account) == [(1, "Ann", 1), (2, "Bob", 2)], name
    assert [row for row in history(Account) if row[0] != "insert"] == []


def test_upsert_of_an_untracked_model_runs(audit, base, backend):
    """Only tracked models are refused: an upsert of another model runs as usual."""

    class Tag(base):
        __tablename__ = "tags"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(20))

    audit.create_tables()
    with audit.Session() as session:
        session.execute(insert(Tag).values(id=1, name="a"))
        prefix = "IGNORE" if backend == "mariadb" else "OR IGNORE"
        if backend == "postgresql":
            session.execute(postgresql.insert(Tag).values(id=1, name="b").on_conflict_do_nothing())
        else:
            session.execute(insert(Tag).values(id=1, name="b").prefix_with(prefix))
        session.commit()
        assert session.scalar(select(Tag.name)) == "a"


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect(), mysql.dialect()])
def test_is_upsert_agrees_with_the_compiled_statement(base, dialect):
    """The one private read of an INSERT's upsert clauses matches the SQL SQLAlchemy compiles."""
    Account = declare_account(base)
    plain = [insert(Account).values(id=1), insert(Account), insert(Account).returning(Account.id)]
    module = {"sqlite": sqlite, "postgresql": postgresql, "mysql": mysql}[dialect.name]
    if dialect.name == "mysql":
        upserts = [
            module.insert(Account).values(id=1).on_duplicate_key_update(score=1),
            insert(Account).values(id=1).prefix_with("IGNORE"),
        ]
    else:
        upserts = [
            module.insert(Account).values(id=1).on_conflict_do_nothing(),
            module.insert(Account)
            .values(id=1)
            .on_conflict_do_update(index_elements=["id"], set_={"score": 1}),
            insert(Account).values(id=1).prefix_with("OR IGNORE"),
        ]
    markers = ("ON CONFLICT", "ON DUPLICATE KEY", "INSERT IGNORE", "INSERT OR ")
    for statement in plain + upserts:
        compiled = str(statement.compile(dialect=dialect))
        assert is_upsert(statement) == any(marker in compiled for marker in markers), compiled
    assert not any(is_upsert(statement) for statement in plain)


# --- Case 4: an error after the statement ran leaves nothing to commit --------------------


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param(lambda A: update(A).where(A.id == 1).values(full="Zed"), id="update"),
        pytest.param(lambda A: delete(A).where(A.id == 1), id="delete"),
        pytest.param(lambda A: insert(A).values(id=3, full="Cy", score=3), id="insert"),
    ],
)
def test_a_failed_change_row_insert_leaves_the_statement_uncommittable(
    audit, Account, bulk_path, statement
):
    """Case 4: the change rows cannot be written; catching the error and committing keeps nothing."""
    audit.config.table.drop(audit.engine)  # every change-row INSERT now fails
    with audit.Session() as session:
        with pytest.raises(Exception) as raised:
            session.execute(statement(Account))
        assert not isinstance(raised.value, UnauditedWriteError)
        with pytest.raises((UnauditedWriteError, PendingRollbackError)):
            session.commit()
        session.rollback()
        session.commit()  # after the rollback the session works again
    assert table_rows(audit, Account) == [(1, "Ann", 1), (2, "Bob", 2)]


def test_a_failed_change_row_insert_of_a_flush_leaves_nothing_to_commit(audit, Account):
    """Case 4, flush path: SQLAlchemy's own must-roll-back state keeps the change out."""
    audit.config.table.drop(audit.engine)
    with audit.Session() as session:
        session.get(Account, 1).full = "Zed"
        with pytest.raises(Exception):  # noqa: B017 - the driver's own error
            session.flush()
        with pytest.raises(PendingRollbackError):
            session.commit()
        session.rollback()
    assert table_rows(audit, Account) == [(1, "Ann", 1), (2, "Bob", 2)]


def test_the_uncommittable_mark_is_cleared_by_rollback_and_by_close(audit, Account, bulk_path):
    """After a rollback, or a new transaction of a closed session, commits work again."""
    audit.config.table.drop(audit.engine)
    session = audit.Session()
    with pytest.raises(Exception):  # noqa: B017 - the driver's own error
        session.execute(update(Account).where(Account.id == 1).values(full="Zed"))
    session.close()
    audit.config.table.create(audit.engine)
    session.execute(update(Account).where(Account.id == 2).values(full="Bo"))
    session.commit()
    session.close()
    assert table_rows(audit, Account) == [(1, "Ann", 1), (2, "Bo", 2)]
    assert [row for row in history(Account) if row[0] == "update"] == [
        ("update", "2", "full", "Bob", "Bo")
    ]


@pytest.mark.backends("postgresql")
def test_the_phantom_row_error_leaves_the_statement_uncommittable(audit, base):
    """Case 4 on PostgreSQL READ COMMITTED: a row inserted midway; catch, commit: nothing kept."""
    audit.configure(bulk_in_database=True)
    Account = declare_account(base)
    audit.create_tables()
    with audit.Session() as session:
        session.add(Account(id=1, full="Ann", score=1))
        session.commit()
    with row_inserted_midway(audit, Account) as fired, audit.Session() as session:
        with pytest.raises(BulkStatementError, match="another transaction"):
            session.execute(update(Account).where(Account.score == 1).values(score=5))
        with pytest.raises(UnauditedWriteError, match="roll"):
            session.commit()
        session.rollback()
    assert fired
    assert table_rows(audit, Account) == [(1, "Ann", 1), (9, "P", 1)]


@contextlib.contextmanager
def row_inserted_midway(audit, Account):
    """Have another connection insert and commit a matching row just before the UPDATE runs."""
    fired = []

    def insert_midway(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE ACCOUNTS") and not fired:
            fired.append(True)
            with audit.engine.connect() as other:
                other.execute(insert(Account.__table__).values(id=9, full_name="P", score=1))
                other.commit()

    event.listen(audit.engine, "before_cursor_execute", insert_midway)
    try:
        yield fired
    finally:
        event.remove(audit.engine, "before_cursor_execute", insert_midway)


# --- Case 5: AUTOCOMMIT is refused for tracked writes -------------------------------------


def test_a_tracked_flush_on_an_autocommit_engine_is_refused_before_it_runs(audit, Account):
    """Case 5: the change would commit before its change rows: refused, nothing written."""
    with Session(audit.engine.execution_options(isolation_level="AUTOCOMMIT")) as session:
        session.get(Account, 1).full = "Zed"
        with pytest.raises(UnauditedWriteError, match=r"Account .*AUTOCOMMIT"):
            session.flush()
        session.rollback()
        session.add(Account(id=5, full="Eve", score=5))
        with pytest.raises(UnauditedWriteError):
            session.commit()
    assert table_rows(audit, Account) == [(1, "Ann", 1), (2, "Bob", 2)]


def test_an_autocommit_flush_of_untracked_changes_runs(audit, base):
    """Untracked models (and the rest of the application) keep their AUTOCOMMIT engine."""

    class Note(base):
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(primary_key=True)
        body: Mapped[str] = mapped_column(String(20))

    audit.create_tables()
    with Session(audit.engine.execution_options(isolation_level="AUTOCOMMIT")) as session:
        session.add(Note(id=1, body="x"))
        session.commit()
        assert session.scalar(select(Note.body)) == "x"


def test_is_autocommit_reads_the_engine_connection_and_statement_levels(audit):
    """The one private read of the isolation level answers for each way of setting it."""
    with audit.engine.connect() as connection:
        assert not is_autocommit(connection, {})
        assert is_autocommit(connection, {"isolation_level": "AUTOCOMMIT"})
    with audit.engine.execution_options(isolation_level="AUTOCOMMIT").connect() as connection:
        assert is_autocommit(connection, {})


# --- Case 6: the legacy bulk methods are refused on tracked models -------------------------


@pytest.mark.parametrize(
    ("method", "arguments", "modern"),
    [
        ("bulk_save_objects", lambda A: ([A(id=3, full="Cy", score=3)],), "add_all"),
        (
            "bulk_insert_mappings",
            lambda A: (A, [{"id": 3, "full": "Cy", "score": 3}]),
            r"insert\(Account\)",
        ),
        (
            "bulk_update_mappings",
            lambda A: (A, [{"id": 1, "full": "Zed"}]),
            r"update\(Account\)",
        ),
    ],
)
def test_legacy_bulk_methods_are_refused_on_tracked_models(
    audit, Account, method, arguments, modern
):
    """Case 6: they bypass every session event; the error names the modern statement."""
    with audit.Session() as session:
        with pytest.raises(BulkStatementError, match=modern):
            getattr(session, method)(*arguments(Account))
        session.commit()
    assert table_rows(audit, Account) == [(1, "Ann", 1), (2, "Bob", 2)]


def test_legacy_bulk_methods_still_serve_untracked_models_and_disabled_auditing(audit, base):
    """Untracked models, auditing switched off, and unregistered hooks keep the legacy methods."""
    Account = declare_account(base)

    class Note(base):
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(primary_key=True)
        body: Mapped[str] = mapped_column(String(20))

    audit.create_tables()
    with audit.Session() as session:
        session.bulk_insert_mappings(Note, [{"id": 1, "body": "x"}])
        with disable_auditing():
            session.bulk_insert_mappings(Account, [{"id": 1, "full": "A", "score": 1}])
        session.commit()
    unregister_hooks()
    with audit.Session() as session:
        session.bulk_insert_mappings(Account, [{"id": 2, "full": "B", "score": 2}])
        session.commit()
    assert table_rows(audit, Account) == [(1, "A", 1), (2, "B", 2)]


# --- Case 7: a partial flush records exactly what it flushed -------------------------------


@pytest.mark.filterwarnings("ignore:The `objects` parameter:DeprecationWarning")
def test_a_partial_flush_records_only_the_objects_it_flushed(audit, Account):
    """Case 7: session.flush([obj]) records obj; the others are recorded when they are flushed."""
    with audit.Session() as session:
        one, two = session.get(Account, 1), session.get(Account, 2)
        first, second = Account(id=3, full="Cy", score=3), Account(id=4, full="Di", score=4)
        session.add_all([first, second])
        one.full = "Anna"
        session.delete(two)
        session.flush([first])
        with session.no_autoflush:  # the read itself must not flush the rest
            rows = history(Account, session=session)
        recorded = {(row[0], row[1]) for row in rows}
        assert ("insert", "3") in recorded
        assert ("insert", "4") not in recorded
        assert ("update", "1") not in recorded
        assert ("delete", "2") not in recorded
        assert all(row[1] != "None" for row in rows)
        session.commit()
    recorded = [(row[0], row[1]) for row in history(Account)]
    assert recorded.count(("insert", "4")) == 2
    assert recorded.count(("update", "1")) == 1
    assert recorded.count(("delete", "2")) == 2


# --- C1: a delete and an add of one key in one flush -------------------------------------------


def test_delete_and_add_of_one_key_in_one_flush_ends_with_the_new_row(audit, Account):
    """C1: SQLAlchemy's row switch (one UPDATE) is recorded delete first, then insert."""
    with audit.Session() as session:
        session.delete(session.get(Account, 1))
        session.add(Account(id=1, full="New", score=None))
        session.commit()
    last = history(Account, filter_resource_ids=1)[-3:]
    assert [row[0] for row in last] == ["delete", "delete", "insert"]
    assert last[-1] == ("insert", "1", "full", None, "New")
    assert table_rows(audit, Account)[0] == (1, "New", None)


# --- C2: a primary key changed through the Session ------------------------------------------


def test_a_primary_key_change_ends_the_old_id_and_starts_the_new_one_linked(audit, Account):
    """C2: the old id gets delete rows, the new id insert rows, both linked in their context."""
    with audit.Session() as session:
        session.get(Account, 1).id = 10
        session.commit()
    old = history(Account, filter_resource_ids=1)
    new = history(Account, filter_resource_ids=10)
    assert old[-2:] == [("delete", "1", "full", "Ann", None), ("delete", "1", "score", 1, None)]
    assert new == [("insert", "10", "full", None, "Ann"), ("insert", "10", "score", None, 1)]
    links = {c.extra["sqlaudit.key_change"]["to"] for c in get_resource_changes(Account) if c.extra}
    assert links == {"10"}


def test_a_primary_key_change_with_a_field_change_records_the_last_and_new_values(audit, Account):
    """C2: the delete carries the values before the flush, the insert those after it."""
    with audit.Session() as session:
        account = session.get(Account, 2)
        account.id, account.full = 20, "Robert"
        session.commit()
    assert history(Account, filter_resource_ids=2)[-2:] == [
        ("delete", "2", "full", "Bob", None),
        ("delete", "2", "score", 2, None),
    ]
    assert history(Account, filter_resource_ids=20) == [
        ("insert", "20", "full", None, "Robert"),
        ("insert", "20", "score", None, 2),
    ]


# --- NULL resource id ------------------------------------------------------------------------


def test_a_null_resource_id_field_is_refused(audit, base):
    """A change whose resource_id_field is None cannot be found again: the flush is refused."""

    @track_table(tracked_fields=["name"], resource_id_field="code")
    class Item(base):
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(primary_key=True)
        code: Mapped[str | None] = mapped_column(String(20))
        name: Mapped[str] = mapped_column(String(20))

    audit.create_tables()
    with audit.Session() as session:
        session.add(Item(id=1, code=None, name="x"))
        with pytest.raises(UnauditedWriteError, match=r"Item\.code\) is None"):
            session.commit()
        session.rollback()
    assert audit.rows() == []


# --- C5: a value assigned during the flush while expired ---------------------------------


def test_a_foreign_key_set_from_a_relationship_while_expired_records_the_true_old_value(
    audit, base
):
    """C5: the flush copies the new parent's key into an expired child column; the old is read."""

    class Parent(base):
        __tablename__ = "parents"
        id: Mapped[int] = mapped_column(primary_key=True)

    @track_table(tracked_fields=["parent_id"])
    class Child(base):
        __tablename__ = "children"
        id: Mapped[int] = mapped_column(primary_key=True)
        parent_id: Mapped[int] = mapped_column(ForeignKey("parents.id"))
        parent: Mapped[Parent] = relationship()

    audit.create_tables()
    with audit.Session() as session:
        session.add_all([Parent(id=1), Parent(id=2), Child(id=1, parent_id=1)])
        session.commit()
    with audit.Session() as session:
        child = session.get(Child, 1)
        new_parent = session.get(Parent, 2)
        session.expire(child, ["parent_id"])
        child.parent = new_parent
        session.commit()
    assert history(Child)[-1] == ("update", "1", "parent_id", 1, 2)


def declare_stamped_doc(base):
    @track_table(tracked_fields=["name", "stamp"])
    class Doc(base):
        __tablename__ = "docs"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(20))
        stamp: Mapped[str] = mapped_column(String(20))

    return Doc


def restamp_expired(audit, Doc):
    """Store a doc, then flush a change while a before_update listener assigns expired 'stamp'."""
    with audit.Session() as session:
        session.add(Doc(id=1, name="a", stamp="v1"))
        session.commit()
    with audit.Session() as session:
        doc = session.get(Doc, 1)
        session.expire(doc, ["stamp"])
        doc.name = "b"
        session.commit()


def test_a_value_set_by_an_earlier_before_update_listener_while_expired_records_the_old_value(
    audit, base
):
    """C5: a before_update listener registered before register_hooks(): the old value is read."""
    unregister_hooks()
    Doc = declare_stamped_doc(base)
    event.listen(
        Doc, "before_update", lambda mapper, connection, target: setattr(target, "stamp", "v2")
    )
    audit.configure()  # registers the hooks again, after the listener
    audit.create_tables()
    restamp_expired(audit, Doc)
    assert sorted(history(Doc)[-2:]) == [
        ("update", "1", "name", "a", "b"),
        ("update", "1", "stamp", "v1", "v2"),
    ]


def test_a_value_set_by_a_later_before_update_listener_while_expired_is_refused(audit, base):
    """C5: registered after register_hooks(), its old value is unknown: the flush fails closed."""
    Doc = declare_stamped_doc(base)
    event.listen(
        Doc, "before_update", lambda mapper, connection, target: setattr(target, "stamp", "v2")
    )
    audit.create_tables()
    with pytest.raises(UnauditedWriteError, match=r"Doc\.stamp was assigned during the flush"):
        restamp_expired(audit, Doc)
    with audit.engine.connect() as connection:
        assert connection.execute(select(Doc.name, Doc.stamp)).one() == ("a", "v1")


# --- C7: one database transaction, one transaction id --------------------------------------


def test_a_session_joined_to_an_outer_transaction_keeps_one_transaction_id(audit, Account):
    """C7: commits of a session joined to a connection's transaction share its one id."""
    with audit.engine.connect() as connection:
        outer = connection.begin()
        with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
            session.get(Account, 1).full = "A1"
            session.commit()
            session.get(Account, 2).full = "B1"
            session.commit()
        outer.commit()
    ids = {c.transaction_id for c in get_resource_changes(Account) if c.operation == "update"}
    assert len(ids) == 1


def test_separate_transactions_get_separate_ids(audit, Account):
    """Two commits of an ordinary session are two database transactions, two ids."""
    with audit.Session() as session:
        session.get(Account, 1).full = "A1"
        session.commit()
        session.get(Account, 2).full = "B1"
        session.commit()
    ids = {c.transaction_id for c in get_resource_changes(Account) if c.operation == "update"}
    assert len(ids) == 2


def test_sql_text_error_paths_do_not_mark_a_session(audit, Account):
    """A statement that fails by itself (no change made) leaves the session committable."""
    with audit.Session() as session:
        with pytest.raises(SQLAuditError.__mro__[1]):  # the driver's own error, not sqlaudit's
            session.execute(text("select * from no_such_table"))
        session.rollback()
        session.get(Account, 1).full = "Ann2"
        session.commit()
    assert table_rows(audit, Account)[0] == (1, "Ann2", 1)


# --- C6: what the database holds, not what Python assigned -------------------------------------


def declare_priced(base):
    @track_table(tracked_fields=["amount", "count", "at"])
    class Priced(base):
        __tablename__ = "priced"
        id: Mapped[int] = mapped_column(primary_key=True)
        amount: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
        count: Mapped[int | None] = mapped_column(Integer)
        at: Mapped[datetime | None] = mapped_column(DateTime)

    return Priced


def test_values_are_recorded_as_the_database_stores_them(audit, base, backend):
    """C6: 1.5 in a Numeric(10, 2) is recorded 1.50; MariaDB's DATETIME drops the microseconds."""
    Priced = declare_priced(base)
    audit.create_tables()
    moment = datetime(2026, 5, 1, 12, 0, 0, 123456)
    with audit.Session() as session:
        item = Priced(id=1, amount=Decimal("1.5"), count=1, at=moment)
        session.add(item)
        session.commit()
        item.amount = Decimal("2.5")
        session.flush()
        assert str(item.amount) == "2.50"  # the object holds the stored value too
        item.amount = Decimal("3")
        session.commit()
    stored_at = moment.replace(microsecond=0) if backend == "mariadb" else moment
    assert history(Priced) == [
        ("insert", "1", "amount", None, Decimal("1.50")),
        ("insert", "1", "count", None, 1),
        ("insert", "1", "at", None, stored_at),
        ("update", "1", "amount", Decimal("1.50"), Decimal("2.50")),
        ("update", "1", "amount", Decimal("2.50"), Decimal("3.00")),
    ]


def test_values_already_in_stored_form_need_no_read(audit, base, count_statements):
    """A value the database keeps as given costs no SELECT: the read happens only when needed."""
    Priced = declare_priced(base)
    audit.create_tables()
    with audit.Session() as session:
        session.add(Priced(id=1, amount=Decimal("1.50"), count=2, at=datetime(2026, 5, 1, 12)))
        count_statements.statements.clear()
        session.commit()
    assert count_statements.matching(lambda sql: sql.lstrip().upper().startswith("SELECT")) == []


# --- B: same-named tables in two schemas keep apart ------------------------------------------


@pytest.mark.backends("postgresql", "mariadb")
def test_same_named_tables_in_two_schemas_have_separate_histories(audit, base, backend):
    """The recorded table name is schema-qualified, so two schemas' 'items' never mix."""
    schemas = ("sqlaudit_a", "sqlaudit_b")
    with audit.engine.begin() as connection:
        for schema in schemas:
            if backend == "postgresql":
                connection.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
                connection.execute(text(f"CREATE SCHEMA {schema}"))
            else:
                connection.execute(text(f"DROP DATABASE IF EXISTS {schema}"))
                connection.execute(text(f"CREATE DATABASE {schema}"))

    @track_table(tracked_fields=["name"])
    class ItemA(base):
        __tablename__ = "items"
        __table_args__ = ({"schema": schemas[0]},)
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(20))

    @track_table(tracked_fields=["name"])
    class ItemB(base):
        __tablename__ = "items"
        __table_args__ = ({"schema": schemas[1]},)
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(20))

    models = [ItemA, ItemB]
    try:
        audit.create_tables()
        with audit.Session() as session:
            session.add_all([models[0](id=1, name="in a"), models[1](id=1, name="in b")])
            session.commit()
        for model, schema in zip(models, schemas, strict=True):
            (change,) = get_resource_changes(model, filter_resource_ids=1)
            assert change.table_name == f"{schema}.items"
            assert change.new_value == f"in {schema[-1]}"
    finally:
        base.metadata.drop_all(audit.engine)
        with audit.engine.begin() as connection:
            for schema in schemas:
                kind = "SCHEMA" if backend == "postgresql" else "DATABASE"
                cascade = " CASCADE" if backend == "postgresql" else ""
                connection.execute(text(f"DROP {kind} IF EXISTS {schema}{cascade}"))


# --- C4: JSON values that Python calls equal ----------------------------------------------------


def declare_settings(base):
    @track_table(tracked_fields=["data"])
    class Settings(base):
        __tablename__ = "settings"
        id: Mapped[int] = mapped_column(primary_key=True)
        data: Mapped[dict] = mapped_column(MutableDict.as_mutable(JSON))

    return Settings


def test_json_one_becoming_true_in_place_is_recorded(audit, base):
    """C4: {"k": 1} -> {"k": true} changed in place: Python's == says equal, the database differs."""
    Settings = declare_settings(base)
    audit.create_tables()
    with audit.Session() as session:
        session.add(Settings(id=1, data={"k": 1}))
        session.commit()
        settings = session.get(Settings, 1)  # held: the session keeps unmodified objects weakly
        settings.data["k"] = True
        session.commit()
    assert history(Settings)[-1] == ("update", "1", "data", {"k": 1}, {"k": True})


def test_json_one_becoming_true_by_a_bulk_update_is_recorded(audit, base, bulk_path):
    """C4: the same change made by a bulk update() is recorded on both bulk paths."""
    Settings = declare_settings(base)
    audit.create_tables()
    with audit.Session() as session:
        session.add(Settings(id=1, data={"k": 1}))
        session.commit()
        session.execute(update(Settings).where(Settings.id == 1).values(data={"k": True}))
        session.commit()
    last = history(Settings)[-1]
    assert last == ("update", "1", "data", {"k": 1}, {"k": True})
    assert type(last[4]["k"]) is bool


# --- Review: further ways a write could escape its record ----------------------------------------


def test_a_listener_that_edits_flushed_objects_after_the_flush_loses_nothing(audit, Account):
    """A later after_flush_postexec listener editing the objects does not hide what was flushed."""

    def touch(session, flush_context):
        for obj in list(session.identity_map.values()):
            if isinstance(obj, Account) and obj.score != 77:
                obj.score = 77  # a new change, recorded at the next flush

    event.listen(Session, "after_flush_postexec", touch)
    try:
        with audit.Session() as session:
            account = session.get(Account, 1)  # held: the identity map keeps objects weakly
            account.full = "Zed"
            session.flush()
            session.commit()
    finally:
        event.remove(Session, "after_flush_postexec", touch)
    recorded = [row[2:] for row in history(Account, filter_resource_ids=1) if row[0] == "update"]
    assert recorded[0] == ("full", "Ann", "Zed")
    assert ("score", 1, 77) in recorded
    assert table_rows(audit, Account)[0] == (1, "Zed", 77)


def test_autocommit_set_on_the_connection_is_refused_at_every_flush(audit, Account):
    """A flush that changed nothing under AUTOCOMMIT does not let the next, real one through."""
    with audit.Session() as session:
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        account = session.get(Account, 1)
        account.full = "Ann"  # the same value: nothing to write
        session.flush()
        account.full = "Zed"
        with pytest.raises(UnauditedWriteError, match="AUTOCOMMIT"):
            session.flush()
        session.rollback()
    assert table_rows(audit, Account)[0] == (1, "Ann", 1)


@contextlib.contextmanager
def change_rows_fail(audit):
    """Make every change-row INSERT on the engine fail, as a full disk or a lost grant would."""

    def fail(conn, cursor, statement, params, context, executemany):
        if "INTO SQLAUDIT_CHANGES" in " ".join(statement.upper().split()):
            raise RuntimeError("change rows cannot be written")

    event.listen(audit.engine, "before_cursor_execute", fail)
    try:
        yield
    finally:
        event.remove(audit.engine, "before_cursor_execute", fail)


def failing_update(session, Account, key=1, name="Zed"):
    with pytest.raises(RuntimeError, match="change rows cannot be written"):
        session.execute(update(Account).where(Account.id == key).values(full=name))


def test_a_failure_in_a_rolled_back_savepoint_leaves_the_rest_committable(
    audit, Account, bulk_path
):
    """Rolling back the savepoint the unaudited statement ran in undoes it; other work commits."""
    with audit.Session() as session:
        session.get(Account, 2).full = "Bobby"
        session.flush()
        nested = session.begin_nested()
        with change_rows_fail(audit):
            failing_update(session, Account)
        nested.rollback()
        session.commit()
    assert table_rows(audit, Account) == [(1, "Ann", 1), (2, "Bobby", 2)]
    assert [row[1:] for row in history(Account) if row[0] == "update"] == [
        ("2", "full", "Bob", "Bobby")
    ]


def test_a_failure_in_a_savepoint_cannot_be_released_or_committed(audit, Account, bulk_path):
    """Releasing the savepoint that holds the unaudited change is refused like a commit."""
    with audit.Session() as session:
        nested = session.begin_nested()
        with change_rows_fail(audit):
            failing_update(session, Account)  # caught
        with pytest.raises(UnauditedWriteError, match="bulk update of Account"):
            nested.commit()
        with pytest.raises(UnauditedWriteError, match="bulk update of Account"):
            session.commit()
        session.rollback()
    assert table_rows(audit, Account)[0] == (1, "Ann", 1)


@pytest.mark.parametrize(
    "mode", ["conditional_savepoint", "rollback_only", "create_savepoint", "control_fully"]
)
def test_a_session_joined_to_an_outer_transaction_cannot_leak_the_change(
    audit, Account, bulk_path, mode
):
    """Closing the joined session after the failure leaves the outer transaction unable to commit it."""
    with audit.engine.connect() as connection:
        outer = connection.begin()
        session = Session(bind=connection, join_transaction_mode=mode)
        with change_rows_fail(audit):
            failing_update(session, Account)
        with pytest.raises(UnauditedWriteError):
            session.commit()
        session.close()
        if outer.is_active:
            outer.commit()
    assert table_rows(audit, Account)[0] == (1, "Ann", 1)


def test_a_row_inserted_meanwhile_on_the_read_path_is_refused(audit, Account, backend):
    """The read path too refuses a statement that changed rows it never read (READ COMMITTED)."""
    audit.configure(bulk_in_database=False)
    if backend == "sqlite":
        pytest.skip("SQLite has one writer: no row can appear between the read and the update")
    with row_inserted_midway(audit, Account) as fired, audit.Session() as session:
        session.connection(execution_options={"isolation_level": "READ COMMITTED"})
        with pytest.raises(BulkStatementError, match="another transaction"):
            session.execute(update(Account).where(Account.score == 1).values(score=5))
        with pytest.raises(UnauditedWriteError):
            session.commit()
        session.rollback()
    assert fired
    assert table_rows(audit, Account) == [(1, "Ann", 1), (2, "Bob", 2), (9, "P", 1)]


def test_loader_criteria_narrow_the_rows_read_as_well(audit, Account, bulk_path):
    """with_loader_criteria() excludes rows from the statement and from the record alike."""
    with audit.Session() as session:
        session.execute(
            update(Account)
            .where(Account.id.in_([1, 2]))
            .values(full="X")
            .options(with_loader_criteria(Account, Account.score == 1))
        )
        session.execute(
            delete(Account)
            .where(Account.id > 0)
            .options(with_loader_criteria(Account, Account.score == 2))
        )
        session.commit()
    assert [row for row in history(Account) if row[0] != "insert"] == [
        ("update", "1", "full", "Ann", "X"),
        ("delete", "2", "full", "Bob", None),
        ("delete", "2", "score", 2, None),
    ]
    assert table_rows(audit, Account) == [(1, "X", 1)]


def test_a_core_executemany_update_is_refused(audit, Account):
    """A Core executemany can set any column from its parameters: refused, with the ORM form named."""
    table = Account.__table__
    with audit.Session() as session:
        with pytest.raises(BulkStatementError, match=r"update\(Account\)"):
            session.execute(
                update(table).where(table.c.full_name == bindparam("nm")),
                [{"nm": "Ann", "id": 7, "score": 70}],
            )
        session.commit()
    assert table_rows(audit, Account) == [(1, "Ann", 1), (2, "Bob", 2)]


def test_a_bulk_change_of_the_resource_id_field_is_refused(audit, base, bulk_path):
    """Changing resource_id_field in bulk would mix two ids' histories: refused unrun."""

    @track_table(tracked_fields=["code", "name"], resource_id_field="code")
    class Item(base):
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(primary_key=True)
        code: Mapped[str] = mapped_column(String(20))
        name: Mapped[str] = mapped_column(String(20))

    audit.create_tables()
    with audit.Session() as session:
        session.add(Item(id=1, code="X1", name="a"))
        session.commit()
        with pytest.raises(BulkStatementError, match=r"Item\.code"):
            session.execute(update(Item).where(Item.id == 1).values(code="Y1"))
        with pytest.raises(BulkStatementError, match=r"Item\.code"):
            session.execute(update(Item), [{"id": 1, "code": "Y1"}])
        session.commit()


def test_statements_reaching_a_tracked_subclass_through_its_untracked_base_are_refused(audit, base):
    """update()/delete() of an untracked base also change its tracked subclass's rows: refused."""

    class Animal(base):
        __tablename__ = "animals"
        id: Mapped[int] = mapped_column(primary_key=True)
        kind: Mapped[str] = mapped_column(String(20))
        name: Mapped[str] = mapped_column(String(20))
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "animal"}  # noqa: RUF012

    @track_table(tracked_fields=["name"])
    class Dog(Animal):
        __mapper_args__ = {"polymorphic_identity": "dog"}  # noqa: RUF012

    audit.create_tables()
    with audit.Session() as session:
        session.add(Dog(id=1, name="Rex"))
        session.commit()
        with pytest.raises(BulkStatementError, match="subclass Dog"):
            session.execute(update(Animal).values(name="Max"))
        with pytest.raises(BulkStatementError, match="subclass Dog"):
            session.execute(delete(Animal))
        with pytest.raises(BulkStatementError, match="Dog"):
            session.bulk_update_mappings(Animal, [{"id": 1, "name": "Max"}])
        session.commit()
        assert session.scalar(select(Animal.name)) == "Rex"


@pytest.mark.backends("mariadb")
def test_a_multi_table_update_setting_a_tracked_column_is_refused(audit, Account, base):
    """MySQL's UPDATE a, b SET a.x = ... from a statement on an untracked table: refused."""

    class Other(base):
        __tablename__ = "others"
        id: Mapped[int] = mapped_column(primary_key=True)
        aid: Mapped[int] = mapped_column(Integer)

    Other.__table__.create(audit.engine)
    with audit.Session() as session:
        session.add(Other(id=1, aid=1))
        session.commit()
        with pytest.raises(BulkStatementError, match=r"Account\.score"):
            session.execute(
                update(Other).where(Other.aid == Account.id).values({Account.score: 999})
            )
        session.commit()
    assert table_rows(audit, Account)[0] == (1, "Ann", 1)


def test_insert_or_abort_is_not_an_upsert(base):
    """SQLite's INSERT OR ABORT / FAIL / ROLLBACK insert or fail: they are not refused as upserts."""
    Account = declare_account(base)
    for word in ("ABORT", "FAIL", "ROLLBACK"):
        assert not is_upsert(insert(Account).values(id=1).prefix_with(f"OR {word}"))
    assert is_upsert(insert(Account).values(id=1).prefix_with("OR REPLACE"))


# --- Review 2: the flush path reads what it replaces ------------------------------------------


def test_a_stale_session_records_the_value_the_database_held(audit, Account):
    """Another session changed the row after this one loaded it: the old value is the database's."""
    with audit.Session() as mine, audit.Session() as theirs:
        account = mine.get(Account, 1)
        theirs.get(Account, 1).full = "Other"
        theirs.commit()
        account.full = "Mine"
        mine.commit()
    updates_of_1 = [
        row[2:] for row in history(Account, filter_resource_ids=1) if row[0] == "update"
    ]
    assert updates_of_1 == [("full", "Ann", "Other"), ("full", "Other", "Mine")]


def test_a_stale_session_writing_the_value_already_there_records_nothing(audit, Account):
    """Assigning what another session already wrote changes nothing: no forged update."""
    with audit.Session() as mine, audit.Session() as theirs:
        account = mine.get(Account, 1)
        theirs.get(Account, 1).full = "Same"
        theirs.commit()
        account.full = "Same"
        mine.commit()
    assert [row[2:] for row in history(Account) if row[0] == "update"] == [("full", "Ann", "Same")]


def test_a_bulk_update_then_a_flush_chain(audit, Account, bulk_path):
    """A flush after a bulk update records the bulk's stored value as its old value."""
    with audit.Session() as session:
        account = session.get(Account, 1)
        session.execute(
            update(Account).where(Account.id == 1).values(full="Bulk"),
            execution_options={"synchronize_session": False},
        )
        account.full = "Flush"  # the session still believes "Ann"
        session.commit()
    assert [row[2:] for row in history(Account) if row[0] == "update"] == [
        ("full", "Ann", "Bulk"),
        ("full", "Bulk", "Flush"),
    ]


def test_two_failures_keep_two_marks(audit, Account, bulk_path):
    """A second failure, rolled back in its savepoint, does not clear the first one's mark."""
    with audit.Session() as session:
        with change_rows_fail(audit):
            failing_update(session, Account, key=1)
        savepoint = session.begin_nested()
        with change_rows_fail(audit):
            failing_update(session, Account, key=2)
        savepoint.rollback()
        with pytest.raises(UnauditedWriteError):
            session.commit()
        session.rollback()
    assert table_rows(audit, Account) == [(1, "Ann", 1), (2, "Bob", 2)]


def declare_coded(base, tracked_fields):
    @track_table(tracked_fields=tracked_fields, resource_id_field="code")
    class Coded(base):
        __tablename__ = "coded"
        id: Mapped[int] = mapped_column(primary_key=True)
        code: Mapped[str] = mapped_column(String(20))
        name: Mapped[str] = mapped_column(String(20))

    return Coded


@pytest.mark.parametrize(
    "tracked_fields", [["name"], ["code", "name"]], ids=["untracked", "tracked"]
)
def test_a_resource_id_field_changed_while_expired_moves_the_history(audit, base, tracked_fields):
    """An expired resource_id_field assigned a new value ends the old id and starts the new."""
    Coded = declare_coded(base, tracked_fields)
    audit.create_tables()
    with audit.Session() as session:
        item = Coded(id=1, code="c1", name="a")
        session.add(item)
        session.commit()  # expires item
        item.code = "c1x"
        session.commit()
    assert [row[0] for row in history(Coded, filter_resource_ids="c1")][-1] == "delete"
    assert {row[0] for row in history(Coded, filter_resource_ids="c1x")} == {"insert"}


def test_a_resource_id_field_edited_then_deleted_records_the_delete_under_the_stored_id(
    audit, base
):
    """An unflushed edit of the id field before a delete never reached the row: its old id ends."""
    Coded = declare_coded(base, ["name"])
    audit.create_tables()
    with audit.Session() as session:
        item = Coded(id=1, code="c1", name="a")
        session.add(item)
        session.commit()
        item.code = "c1-new"
        session.delete(item)
        session.commit()
    assert history(Coded, filter_resource_ids="c1")[-1][0] == "delete"
    assert history(Coded, filter_resource_ids="c1-new") == []


def test_two_objects_swapping_resource_ids_in_one_flush(audit, base):
    """Both old lives end before either new one begins, so both ids end alive."""
    Coded = declare_coded(base, ["name"])
    audit.create_tables()
    with audit.Session() as session:
        first, second = Coded(id=1, code="a", name="x"), Coded(id=2, code="b", name="y")
        session.add_all([first, second])
        session.commit()
        first.code, second.code = "b", "a"
        session.commit()
    for code, name in (("a", "y"), ("b", "x")):
        rows = history(Coded, filter_resource_ids=code)
        assert rows[-1][0] == "insert" and rows[-1][4] == name
        assert rows[-2][0] == "delete"


def test_a_post_update_foreign_key_assigned_while_expired_is_recorded(audit, base):
    """A post_update relationship sets its key in a second UPDATE; the old value is still read."""

    class Child(base):
        __tablename__ = "pu_children"
        id: Mapped[int] = mapped_column(primary_key=True)
        parent_id: Mapped[int | None] = mapped_column(Integer)  # no FK: no table cycle

    @track_table(tracked_fields=["name", "fav_id"])
    class Parent(base):
        __tablename__ = "pu_parents"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(20))
        fav_id: Mapped[int | None] = mapped_column(ForeignKey("pu_children.id"))
        fav: Mapped[Child | None] = relationship(foreign_keys=[fav_id], post_update=True)

    audit.create_tables()
    with audit.Session() as session:
        parent = Parent(id=1, name="p")
        session.add(parent)
        session.flush()
        session.add_all([Child(id=1, parent_id=1), Child(id=2, parent_id=1)])
        session.flush()
        parent.fav = session.get(Child, 1)
        session.commit()  # expires parent
        parent.fav = session.get(Child, 2)
        session.commit()
    assert [row[2:] for row in history(Parent) if row[0] == "update"] == [
        ("fav_id", None, 1),
        ("fav_id", 1, 2),
    ]


class Lower(TypeDecorator):
    """Stores text lower-cased: the database holds something else than was assigned."""

    impl = String(20)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else value.lower()


def test_values_changed_on_their_way_in_are_recorded_as_stored(audit, base):
    """A TypeDecorator that changes values, an Enum assigned by name: recorded as stored."""

    @track_table(tracked_fields=["label", "color"])
    class Paint(base):
        __tablename__ = "paints"
        id: Mapped[int] = mapped_column(primary_key=True)
        label: Mapped[str] = mapped_column(Lower())
        color: Mapped[Color] = mapped_column(SAEnum(Color))

    audit.create_tables()
    with audit.Session() as session:
        session.add(Paint(id=1, label="ABC", color="green"))
        session.commit()
    assert history(Paint) == [
        ("insert", "1", "label", None, "abc"),
        ("insert", "1", "color", None, Color.green),
    ]


def test_a_row_switch_records_the_columns_the_new_object_left_unset(audit, Account):
    """The row switch keeps the old row's values where the new object set nothing: recorded so."""
    with audit.Session() as session:
        session.delete(session.get(Account, 1))
        session.add(Account(id=1, full="New"))
        session.commit()
    stored = table_rows(audit, Account)[0]
    last = history(Account, filter_resource_ids=1)
    inserted = {row[2]: row[4] for row in last if row[0] == "insert"}
    assert inserted["full"] == "New"
    assert inserted.get("score") == stored[2]


def test_without_read_old_values_the_session_values_are_trusted(audit, Account, count_statements):
    """read_old_values=False: no read before an update of loaded values; a stale copy shows."""
    audit.configure(read_old_values=False)
    with audit.Session() as mine, audit.Session() as theirs:
        account = mine.get(Account, 1)
        theirs.get(Account, 1).full = "Other"
        theirs.commit()
        account.full = "Mine"
        count_statements.statements.clear()
        mine.commit()
    selects = count_statements.matching(lambda sql: sql.lstrip().upper().startswith("SELECT"))
    assert selects == []
    assert [row[2:] for row in history(Account, filter_resource_ids=1) if row[0] == "update"] == [
        ("full", "Ann", "Other"),
        ("full", "Ann", "Mine"),  # the value this session saw
    ]


def test_without_read_old_values_values_never_loaded_are_still_read(audit, Account):
    """read_old_values=False still reads what the session never loaded (assigned after expiry)."""
    audit.configure(read_old_values=False)
    with audit.Session() as session:
        account = session.get(Account, 1)
        session.commit()  # expires it
        account.full = "Zed"
        session.commit()
    assert history(Account, filter_resource_ids=1)[-1] == ("update", "1", "full", "Ann", "Zed")


def test_read_old_values_must_be_a_bool(audit):
    """A non-bool read_old_values is refused with the option's name."""
    with pytest.raises(ConfigurationTypeError, match="read_old_values"):
        audit.configure(read_old_values="yes")
