"""Bulk UPDATE/DELETE audited inside the database: same history as the read path, in constant statements."""

from __future__ import annotations

import asyncio
import enum
import json
from decimal import Decimal

import pytest
from sqlalchemy import (
    CHAR,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    Unicode,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    not_,
    select,
    update,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.dialects import mysql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import NullPool

from sqlaudit import (
    BulkStatementError,
    SQLAuditConfig,
    UnauditedWriteError,
    _bulk_sql,
    _codec,
    get_resource_changes,
    register_hooks,
    set_config,
    track_table,
)
from sqlaudit import asyncio as audit_async

ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg", "mariadb": "aiomysql"}


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


def declare_item(base):
    @track_table(tracked_fields=["name", "score", "flag", "code"])
    class Item(base):
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str | None] = mapped_column(String(50))
        score: Mapped[int | None]
        flag: Mapped[bool | None]
        code: Mapped[str] = mapped_column(String(20), unique=True)
        visits: Mapped[int] = mapped_column(default=0)  # not tracked

    return Item


def seed(audit, model, rows):
    """Insert rows by Core on a plain connection: nothing is recorded."""
    with audit.engine.begin() as connection:
        connection.execute(insert(model.__table__), rows)


def item_rows(*rows):
    """Rows of (id, name, score, flag) with a distinct code each."""
    return [
        {"id": i, "name": name, "score": score, "flag": flag, "code": f"c{i}"}
        for i, name, score, flag in rows
    ]


@pytest.fixture(autouse=True)
def _stage_even_a_few_rows(monkeypatch):
    """Send statements naming rows by key through the stage too: this module tests the stage.

    (By default a statement pinning a handful of rows by key takes the cheaper read
    path; test_a_statement_by_key_takes_the_read_path checks that.)
    """
    monkeypatch.setattr(_bulk_sql, "FEW_ROWS", 0)


@pytest.fixture
def Item(audit):
    model = declare_item(audit.base)
    audit.create_tables()
    return model


def history(model, **filters):
    """(operation, resource, field, old, new) for every change, oldest first."""
    return [
        (c.operation, c.resource_id, c.field_name, c.old_value, c.new_value)
        for c in reversed(get_resource_changes(model, **filters))
    ]


def sql(counter):
    """The statements recorded so far, upper-cased, without leading blanks."""
    return [statement.strip().upper() for statement, _ in counter.statements]


def stage_statements(counter):
    return [s for s in sql(counter) if "SQLAUDIT_STAGE_" in s]


def assert_ran_in_database(counter, table="items"):
    """The bulk statements staged their rows in SQL and read none of ``table``'s rows into Python."""
    statements = sql(counter)
    assert any(s.startswith("INSERT INTO SQLAUDIT_STAGE_") for s in statements)
    reads = [s for s in statements if s.startswith("SELECT") and f"FROM {table.upper()}" in s]
    assert reads == []


def run_in_transaction(audit, *statements):
    with audit.Session() as session:
        results = [session.execute(statement) for statement in statements]
        session.commit()
    return results


# --- 1. The SQL encoding is the Python codec -------------------------------------------

INTS = {
    "i": [0, -1, 2**31 - 1, -(2**31)],
    "bi": [0, -1, 2**31, -(2**62)],
    "si": [0, -1, 2**15 - 1, -(2**15)],
}
STRINGS = ["", "a:b", "it's", "ünïcødé ☃", " both ends ", "ABC", "abc", "int:5"]
TEXTS = [*STRINGS, "x" * 2000]
BOOLS = [True, False]


def declare_sample(base):
    class Sample(base):
        __tablename__ = "samples"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        i: Mapped[int | None] = mapped_column(Integer)
        bi: Mapped[int | None] = mapped_column(BigInteger)
        si: Mapped[int | None] = mapped_column(SmallInteger)
        s: Mapped[str | None] = mapped_column(String(50))
        t: Mapped[str | None] = mapped_column(Text)
        u: Mapped[str | None] = mapped_column(Unicode(50))
        b: Mapped[bool | None] = mapped_column(Boolean)

    return Sample


def sample_rows():
    """One row per tricky value of the longest list; every column ends with NULLs."""
    columns = {**INTS, "s": STRINGS, "t": TEXTS, "u": STRINGS, "b": BOOLS}
    count = max(len(values) for values in columns.values()) + 1
    return [
        {
            "id": row,
            **{
                name: values[row] if row < len(values) else None for name, values in columns.items()
            },
        }
        for row in range(count)
    ]


def test_sql_encoding_is_exactly_the_python_codec(audit):
    """For every integer, string and boolean type and tricky value, the SQL encoder gives encode()'s exact text."""
    Sample = declare_sample(audit.base)
    audit.create_tables()
    rows = sample_rows()
    seed(audit, Sample, rows)
    table = Sample.__table__
    dialect = audit.engine.dialect.name
    checked = 0
    with audit.engine.connect() as connection:
        for column in table.c:
            if column.name == "id":
                continue
            encoder = _bulk_sql.encoder_for(column.type, dialect)
            assert encoder is not None, column.type
            got = connection.execute(
                select(table.c.id, column, encoder(column)).order_by(table.c.id)
            ).all()
            # The database holds the tricky values themselves (nothing trimmed or folded).
            assert [value for _, value, _ in got] == [row[column.name] for row in rows]
            wrong = [
                (key, value, text)
                for key, value, text in got
                if text != _codec.encode(value) or type(text) is not type(_codec.encode(value))
            ]
            assert wrong == [], column.name
            checked += len(got)
    assert checked == 7 * len(rows)


def test_types_sql_cannot_spell_have_no_encoder():
    """Numeric, Enum, SET, date/time and TypeDecorator columns get no SQL encoder; integers, strings and booleans do."""

    class Trimmed(TypeDecorator):
        impl = String(20)
        cache_ok = True

    for dialect in ("sqlite", "postgresql", "mysql", "mariadb"):
        for type_ in (Integer(), BigInteger(), SmallInteger(), String(5), Text(), Unicode(5)):
            assert _bulk_sql.encoder_for(type_, dialect) is not None
        assert _bulk_sql.encoder_for(Boolean(), dialect) is not None
        for type_ in (
            Numeric(10, 2),
            SAEnum(Color),
            SAEnum(Color, native_enum=False),
            mysql.SET("a", "b"),
            DateTime(),
            Date(),
            Trimmed(),
        ):
            assert _bulk_sql.encoder_for(type_, dialect) is None, (type_, dialect)


@pytest.mark.backends("sqlite")
def test_sqlite_integer_column_holding_a_real_or_text_decodes_to_what_sqlalchemy_reads(audit):
    """On SQLite a REAL or TEXT kept in an INTEGER column encodes to text that decodes to the value read."""
    Sample = declare_sample(audit.base)
    audit.create_tables()
    with audit.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO samples (id, i) VALUES (1, 1.5), (2, 0.1), (3, 'abc'), (4, 1e300),"
            " (5, -2.5e-7), (6, 9e999), (7, 12), (8, NULL)"
        )
    table = Sample.__table__
    encoder = _bulk_sql.encoder_for(table.c.i.type, "sqlite")
    with audit.engine.connect() as connection:
        got = connection.execute(select(table.c.i, encoder(table.c.i)).order_by(table.c.id)).all()
    assert [value for value, _ in got] == [1.5, 0.1, "abc", 1e300, -2.5e-7, float("inf"), 12, None]
    for value, text in got:
        decoded = _codec.decode(text)
        assert decoded == value
        assert type(decoded) is type(value)


@pytest.mark.backends("sqlite")
def test_sqlite_integer_column_holding_a_real_or_text_is_recorded_with_its_type(
    audit, Item, count_statements
):
    """A bulk update of such a SQLite column records the float or str it held, as the read path would."""
    seed(audit, Item, item_rows((1, "a", 1, True), (2, "b", 2, True), (3, "c", 3, True)))
    with audit.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE items SET score = 1.5 WHERE id = 1")
        connection.exec_driver_sql("UPDATE items SET score = 'abc' WHERE id = 2")
    run_in_transaction(audit, update(Item).values(score=7))
    assert_ran_in_database(count_statements)
    assert sorted(history(Item)) == [
        ("update", "1", "score", 1.5, 7),
        ("update", "2", "score", "abc", 7),
        ("update", "3", "score", 3, 7),
    ]


# --- 2. Which path runs -------------------------------------------------------------------


def test_eligible_statements_are_audited_in_the_database(audit, Item, count_statements, backend):
    """An eligible update and delete stage their rows in a temporary table and never read them into Python."""
    seed(audit, Item, item_rows((1, "a", 1, True), (2, "b", 2, False), (3, "c", 3, None)))
    count_statements.statements.clear()
    run_in_transaction(
        audit,
        update(Item).where(Item.id < 3).values(score=Item.score + 10, name=Item.name + "!"),
        delete(Item).where(Item.id == 3),
    )
    statements = sql(count_statements)
    assert sum(s.startswith("CREATE TEMPORARY TABLE") for s in statements) == 2
    staging = [s for s in statements if s.startswith("INSERT INTO SQLAUDIT_STAGE_")]
    assert len(staging) == 2
    if backend != "sqlite":
        assert all("FOR UPDATE" in s for s in staging)
    assert not [s for s in statements if s.startswith("SELECT")]
    assert not [s for s in statements if "RETURNING" in s]
    assert len([s for s in statements if s.startswith("INSERT INTO SQLAUDIT_CHANGES")]) == 2
    assert sorted(history(Item)) == [
        ("delete", "3", "code", "c3", None),
        ("delete", "3", "flag", None, None),
        ("delete", "3", "name", "c", None),
        ("delete", "3", "score", 3, None),
        ("update", "1", "name", "a", "a!"),
        ("update", "1", "score", 1, 11),
        ("update", "2", "name", "b", "b!"),
        ("update", "2", "score", 2, 12),
    ]


def test_statement_count_does_not_grow_with_the_rows(audit, Item, count_statements):
    """An update of 3 rows and one of 60 rows cost the same statements; every row is recorded."""
    seed(audit, Item, item_rows(*((i, f"n{i}", i, True) for i in range(1, 64))))
    counts = []
    for statement in (
        update(Item).where(Item.id <= 3).values(score=Item.score * 2),
        update(Item).where(Item.id > 3).values(score=Item.score * 2),
        delete(Item).where(Item.id <= 3),
        delete(Item).where(Item.id > 3),
    ):
        count_statements.statements.clear()
        run_in_transaction(audit, statement)
        counts.append(len(count_statements.statements))
    assert counts[0] == counts[1]
    assert counts[2] == counts[3]
    changes = history(Item)
    updated = sorted((int(r[1]), r[3], r[4]) for r in changes if r[0] == "update")
    assert updated == [(i, i, i * 2) for i in range(1, 64)]
    deleted = [r for r in changes if r[0] == "delete"]
    assert len(deleted) == 63 * 4
    assert {(r[1], r[3]) for r in deleted if r[2] == "score"} == {
        (str(i), i * 2) for i in range(1, 64)
    }


def test_switched_off_the_read_path_stores_the_same_history(audit, Item, count_statements):
    """The same statements store the same text audited in the database or, switched off, read into Python."""
    rows = item_rows(
        (1, "abc", 1, True), (2, None, None, False), (3, "x ", 2**31 - 1, None), (4, "é", 0, True)
    )
    statements = [
        update(Item).values(name="ABC", flag=not_(Item.flag)),
        update(Item).where(Item.id > 1).values(score=Item.score - 1, name=None),
        delete(Item).where(Item.id.in_([2, 4])),
    ]

    def stored():
        return sorted(
            (
                (r.operation, r.resource_id, r.field_name, r.old_value, r.new_value, r.changed_by)
                for r in audit.rows()
            ),
            key=repr,
        )

    audit.user = "u1"
    seed(audit, Item, rows)
    run_in_transaction(audit, *statements)
    assert_ran_in_database(count_statements)
    in_database = stored()
    with audit.engine.begin() as connection:
        connection.execute(delete(audit.config.table))
        connection.execute(delete(Item.__table__))
        connection.execute(insert(Item.__table__), rows)
    audit.configure(bulk_in_database=False)
    count_statements.statements.clear()
    run_in_transaction(audit, *statements)
    assert count_statements.statements
    assert stage_statements(count_statements) == []
    assert in_database == stored()
    assert len(in_database) == 20


# Statements the database path cannot audit. Each declares its models and rows and returns
# (model, run, expected history); run() executes and commits through audit.Session.


def shape_numeric_field(audit):
    @track_table(tracked_fields=["amount"])
    class Price(audit.base):
        __tablename__ = "prices"
        id: Mapped[int] = mapped_column(primary_key=True)
        amount: Mapped[Decimal] = mapped_column(Numeric(10, 2))

    audit.create_tables()
    seed(audit, Price, [{"id": 1, "amount": Decimal("1.50")}, {"id": 2, "amount": Decimal("3")}])

    def run():
        run_in_transaction(
            audit, update(Price).where(Price.id == 1).values(amount=Price.amount + 1)
        )

    return Price, run, [("update", "1", "amount", Decimal("1.50"), Decimal("2.50"))]


def shape_enum_field(audit):
    @track_table(tracked_fields=["color"])
    class Paint(audit.base):
        __tablename__ = "paints"
        id: Mapped[int] = mapped_column(primary_key=True)
        color: Mapped[Color] = mapped_column(SAEnum(Color, native_enum=False, length=10))

    audit.create_tables()
    seed(audit, Paint, [{"id": 1, "color": Color.RED}, {"id": 2, "color": Color.GREEN}])

    def run():
        run_in_transaction(audit, update(Paint).values(color=Color.GREEN))

    return Paint, run, [("update", "1", "color", Color.RED, Color.GREEN)]


def shape_type_decorator_field(audit):
    class Lowered(TypeDecorator):
        impl = String(20)
        cache_ok = True

        def process_bind_param(self, value, dialect):
            return None if value is None else value.lower()

    @track_table(tracked_fields=["tag"])
    class Tag(audit.base):
        __tablename__ = "tags"
        id: Mapped[int] = mapped_column(primary_key=True)
        tag: Mapped[str] = mapped_column(Lowered())

    audit.create_tables()
    seed(audit, Tag, [{"id": 1, "tag": "a"}])

    def run():
        run_in_transaction(audit, update(Tag).values(tag="NEW"))

    return Tag, run, [("update", "1", "tag", "a", "new")]


def shape_composite_key(audit):
    @track_table(tracked_fields=["label"])
    class Pair(audit.base):
        __tablename__ = "pairs"
        a: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        b: Mapped[str] = mapped_column(String(10), primary_key=True)
        label: Mapped[str] = mapped_column(String(20))

    audit.create_tables()
    seed(audit, Pair, [{"a": 1, "b": "k", "label": "l1"}, {"a": 2, "b": "k", "label": "l2"}])

    def run():
        run_in_transaction(audit, update(Pair).where(Pair.a == 1).values(label="x"))

    return (
        Pair,
        run,
        [("update", json.dumps(["1", "k"], separators=(",", ":")), "label", "l1", "x")],
    )


def declare_team_and_member(audit):
    class Team(audit.base):
        __tablename__ = "teams"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(20))

    @track_table(tracked_fields=["score"])
    class Member(audit.base):
        __tablename__ = "members"
        id: Mapped[int] = mapped_column(primary_key=True)
        team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
        score: Mapped[int]

    audit.create_tables()
    seed(audit, Team, [{"id": 1, "name": "red"}, {"id": 2, "name": "blue"}])
    seed(
        audit,
        Member,
        [{"id": 1, "team_id": 1, "score": 5}, {"id": 2, "team_id": 2, "score": 6}],
    )
    return Team, Member


def shape_where_joins_another_table(audit):
    Team, Member = declare_team_and_member(audit)

    def run():
        run_in_transaction(
            audit,
            update(Member)
            .where(Member.team_id == Team.id, Team.name == "red")
            .values(score=Member.score + 1),
        )

    return Member, run, [("update", "1", "score", 5, 6)]


def shape_where_has_a_subquery_on_another_table(audit):
    Team, Member = declare_team_and_member(audit)

    def run():
        red = select(Team.id).where(Team.name == "red")
        run_in_transaction(audit, delete(Member).where(Member.team_id.in_(red)))

    return Member, run, [("delete", "1", "score", 5, None)]


def shape_own_returning(audit):
    Item = declare_item(audit.base)
    audit.create_tables()
    seed(audit, Item, item_rows((1, "a", 1, True), (2, "b", 2, False)))

    def run():
        with audit.Session() as session:
            returned = session.execute(delete(Item).where(Item.id == 2).returning(Item.name))
            assert returned.all() == [("b",)]
            session.commit()

    return (
        Item,
        run,
        [
            ("delete", "2", "code", "c2", None),
            ("delete", "2", "flag", False, None),
            ("delete", "2", "name", "b", None),
            ("delete", "2", "score", 2, None),
        ],
    )


def declare_people(audit):
    @track_table(tracked_fields=["name"])
    class Person(audit.base):
        __tablename__ = "people"
        id: Mapped[int] = mapped_column(primary_key=True)
        kind: Mapped[str] = mapped_column(String(10))
        name: Mapped[str] = mapped_column(String(50))
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "person"}  # noqa: RUF012

    class Dev(Person):
        __tablename__ = "devs"
        id: Mapped[int] = mapped_column(ForeignKey("people.id"), primary_key=True)
        language: Mapped[str] = mapped_column(String(20))
        __mapper_args__ = {"polymorphic_identity": "dev"}  # noqa: RUF012

    audit.create_tables()
    with audit.engine.begin() as connection:
        connection.execute(
            insert(Person.__table__),
            [{"id": 1, "kind": "person", "name": "Ann"}, {"id": 2, "kind": "dev", "name": "Ada"}],
        )
        connection.execute(insert(Dev.__table__), [{"id": 2, "language": "py"}])
    return Person, Dev


def shape_joined_subclass_delete(audit):
    Person, Dev = declare_people(audit)

    def run():
        run_in_transaction(audit, delete(Dev).where(Dev.id == 2))

    return Person, run, [("delete", "2", "name", "Ada", None)]


def shape_joined_base_update(audit):
    Person, _ = declare_people(audit)

    def run():
        run_in_transaction(audit, update(Person).values(name=Person.name + "!"))

    return (
        Person,
        run,
        [("update", "1", "name", "Ann", "Ann!"), ("update", "2", "name", "Ada", "Ada!")],
    )


def shape_single_table_subclass(audit):
    @track_table(tracked_fields=["name"])
    class Vehicle(audit.base):
        __tablename__ = "vehicles"
        id: Mapped[int] = mapped_column(primary_key=True)
        kind: Mapped[str] = mapped_column(String(10))
        name: Mapped[str] = mapped_column(String(50))
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "vehicle"}  # noqa: RUF012

    class Car(Vehicle):
        __mapper_args__ = {"polymorphic_identity": "car"}  # noqa: RUF012

    audit.create_tables()
    seed(
        audit,
        Vehicle,
        [{"id": 1, "kind": "vehicle", "name": "v"}, {"id": 2, "kind": "car", "name": "c"}],
    )

    def run():
        run_in_transaction(audit, update(Car).values(name="car"))

    return Vehicle, run, [("update", "2", "name", "c", "car")]


def shape_resource_id_field_not_the_key(audit):
    @track_table(tracked_fields=["balance"], resource_id_field="number")
    class Account(audit.base):
        __tablename__ = "accounts"
        id: Mapped[int] = mapped_column(primary_key=True)
        number: Mapped[str] = mapped_column(String(20), unique=True)
        balance: Mapped[int]

    audit.create_tables()
    seed(audit, Account, [{"id": 1, "number": "AC-1", "balance": 5}])

    def run():
        run_in_transaction(audit, update(Account).values(balance=Account.balance + 1))

    return Account, run, [("update", "AC-1", "balance", 5, 6)]


def shape_schema_translate_map(audit):
    Item = declare_item(audit.base)
    audit.create_tables()
    seed(audit, Item, item_rows((1, "a", 1, True)))

    def run():
        translated = audit.engine.execution_options(schema_translate_map={None: None})
        with Session(translated) as session:
            session.execute(update(Item).values(score=2))
            session.commit()

    return Item, run, [("update", "1", "score", 1, 2)]


@pytest.mark.parametrize(
    "shape",
    [
        shape_numeric_field,
        shape_enum_field,
        shape_type_decorator_field,
        shape_composite_key,
        shape_where_joins_another_table,
        shape_where_has_a_subquery_on_another_table,
        shape_own_returning,
        shape_joined_subclass_delete,
        shape_joined_base_update,
        shape_single_table_subclass,
        shape_resource_id_field_not_the_key,
        shape_schema_translate_map,
    ],
    ids=lambda shape: shape.__name__.removeprefix("shape_"),
)
def test_statements_the_database_cannot_audit_take_the_read_path(audit, count_statements, shape):
    """Each ineligible shape runs no stage statement and still records the right history."""
    model, run, expected = shape(audit)
    count_statements.statements.clear()
    run()
    assert sql(count_statements), "the statement ran"
    assert stage_statements(count_statements) == []
    assert sorted(history(model)) == sorted(expected)


# --- 3. Values -----------------------------------------------------------------------------


def test_updates_to_and_from_null_are_recorded(audit, Item, count_statements):
    """Setting a value to NULL and a NULL to a value both record a change, with None on their side."""
    seed(audit, Item, item_rows((1, "a", 1, True), (2, None, None, None)))
    run_in_transaction(
        audit,
        update(Item).where(Item.id == 1).values(name=None, score=None, flag=None),
        update(Item).where(Item.id == 2).values(name="b", score=0, flag=False),
    )
    assert_ran_in_database(count_statements)
    assert sorted(history(Item)) == [
        ("update", "1", "flag", True, None),
        ("update", "1", "name", "a", None),
        ("update", "1", "score", 1, None),
        ("update", "2", "flag", None, False),
        ("update", "2", "name", None, "b"),
        ("update", "2", "score", None, 0),
    ]


def test_values_assigned_unchanged_record_nothing(audit, Item, count_statements):
    """Rows given the value they already have record nothing, while other rows of the statement do."""
    seed(
        audit,
        Item,
        item_rows(
            (1, "same", 5, True), (2, "same", 6, False), (3, None, 5, None), (4, "", 0, True)
        ),
    )
    run_in_transaction(
        audit, update(Item).where(Item.id < 4).values(name="same", score=5, flag=True)
    )
    run_in_transaction(audit, update(Item).where(Item.id == 4).values(name="", score=0))
    assert_ran_in_database(count_statements)
    assert sorted(history(Item)) == [
        ("update", "2", "flag", False, True),
        ("update", "2", "score", 6, 5),
        ("update", "3", "flag", None, True),
        ("update", "3", "name", None, "same"),
    ]


def test_case_and_trailing_space_changes_are_recorded(audit, Item, count_statements):
    """'abc' -> 'ABC' and changes of trailing spaces are changes on every backend, whatever the collation."""
    seed(
        audit,
        Item,
        item_rows((1, "abc", 1, True), (2, "abc", 2, True), (3, "x  ", 3, True), (4, "é", 4, True)),
    )
    run_in_transaction(
        audit,
        update(Item).where(Item.id == 1).values(name="ABC"),
        update(Item).where(Item.id == 2).values(name="abc "),
        update(Item).where(Item.id == 3).values(name="x"),
        update(Item).where(Item.id == 4).values(name="É"),
    )
    assert_ran_in_database(count_statements)
    with audit.engine.connect() as connection:
        stored = connection.execute(select(Item.name).order_by(Item.id)).scalars().all()
    assert stored == ["ABC", "abc ", "x", "É"]
    assert sorted(history(Item)) == [
        ("update", "1", "name", "abc", "ABC"),
        ("update", "2", "name", "abc", "abc "),
        ("update", "3", "name", "x  ", "x"),
        ("update", "4", "name", "é", "É"),
    ]


def test_delete_records_every_tracked_field_including_nulls(audit, Item, count_statements):
    """A bulk delete records each tracked field of each row, NULL ones too, and no untracked field."""
    seed(audit, Item, item_rows((1, None, None, None), (2, "b", 0, False), (3, "keep", 3, True)))
    result = run_in_transaction(audit, delete(Item).where(Item.id < 3))[0]
    assert result.rowcount == 2
    assert_ran_in_database(count_statements)
    assert sorted(history(Item)) == [
        ("delete", "1", "code", "c1", None),
        ("delete", "1", "flag", None, None),
        ("delete", "1", "name", None, None),
        ("delete", "1", "score", None, None),
        ("delete", "2", "code", "c2", None),
        ("delete", "2", "flag", False, None),
        ("delete", "2", "name", "b", None),
        ("delete", "2", "score", 0, None),
    ]


def test_booleans_flip_both_ways(audit, Item, count_statements):
    """NOT flag turns true to false and false to true, both recorded; a NULL stays NULL and records nothing."""
    seed(audit, Item, item_rows((1, "a", 1, True), (2, "b", 2, False), (3, "c", 3, None)))
    run_in_transaction(audit, update(Item).values(flag=not_(Item.flag)))
    assert_ran_in_database(count_statements)
    assert sorted(history(Item)) == [
        ("update", "1", "flag", True, False),
        ("update", "2", "flag", False, True),
    ]


def test_string_keys_are_the_resource_ids(audit, count_statements):
    """A string primary key (quotes, non-ASCII, digits) is stored as the resource id, exactly."""

    @track_table(tracked_fields=["value"])
    class Setting(audit.base):
        __tablename__ = "settings"
        key: Mapped[str] = mapped_column(String(30), primary_key=True)
        value: Mapped[int]

    audit.create_tables()
    keys = ["o'k", "ünï ☃", "007", "a:b"]
    seed(audit, Setting, [{"key": key, "value": n} for n, key in enumerate(keys)])
    run_in_transaction(audit, update(Setting).values(value=Setting.value + 100))
    run_in_transaction(audit, delete(Setting).where(Setting.key == "007"))
    assert_ran_in_database(count_statements, "settings")
    assert sorted(history(Setting)) == sorted(
        [("update", key, "value", n, n + 100) for n, key in enumerate(keys)]
        + [("delete", "007", "value", 102, None)]
    )


def test_big_integer_keys_are_the_resource_ids(audit, count_statements):
    """A BigInteger key beyond 32 bits (negative too) becomes its decimal text."""

    @track_table(tracked_fields=["hits"])
    class Counter(audit.base):
        __tablename__ = "counters"
        id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
        hits: Mapped[int] = mapped_column(BigInteger)

    audit.create_tables()
    seed(audit, Counter, [{"id": 2**40, "hits": 2**40}, {"id": -(2**62), "hits": 0}])
    run_in_transaction(audit, update(Counter).values(hits=Counter.hits + 1))
    assert_ran_in_database(count_statements, "counters")
    assert sorted(history(Counter)) == sorted(
        [
            ("update", str(2**40), "hits", 2**40, 2**40 + 1),
            ("update", str(-(2**62)), "hits", 0, 1),
        ]
    )


# --- 4. Transactions -----------------------------------------------------------------------


def test_two_bulk_statements_in_one_transaction_are_recorded_in_order(
    audit, Item, count_statements
):
    """Two bulk updates and a delete of one model in one transaction each record their own changes."""
    seed(audit, Item, item_rows((1, "a", 1, True), (2, "b", 2, True)))
    with audit.Session() as session:
        session.execute(update(Item).values(score=Item.score + 1))
        session.execute(update(Item).where(Item.id == 1).values(score=Item.score * 10))
        session.execute(delete(Item).where(Item.id == 2))
        session.commit()
    assert_ran_in_database(count_statements)
    changes = get_resource_changes(Item)
    assert len({c.transaction_id for c in changes}) == 1
    assert sorted(history(Item)) == [
        ("delete", "2", "code", "c2", None),
        ("delete", "2", "flag", True, None),
        ("delete", "2", "name", "b", None),
        ("delete", "2", "score", 3, None),
        ("update", "1", "score", 1, 2),
        ("update", "1", "score", 2, 20),
        ("update", "2", "score", 2, 3),
    ]


def test_rollback_leaves_no_change_rows_and_the_next_transaction_works(
    audit, Item, count_statements
):
    """A rolled back bulk statement leaves nothing; the same statement in a new transaction is recorded."""
    seed(audit, Item, item_rows((1, "a", 1, True), (2, "b", 2, True)))
    with audit.Session() as session:
        session.execute(update(Item).values(score=0))
        session.execute(delete(Item).where(Item.id == 2))
        session.rollback()
        assert audit.rows() == []
        session.execute(update(Item).where(Item.id == 1).values(score=9))
        session.commit()
    assert_ran_in_database(count_statements)
    assert history(Item) == [("update", "1", "score", 1, 9)]


def test_failed_statement_in_a_savepoint_leaves_nothing_behind(audit, Item, count_statements):
    """A bulk update that fails in the database, rolled back to its savepoint, leaves no stage rows for the next one."""
    seed(audit, Item, item_rows((1, "a", 1, True), (2, "b", 2, True), (3, "c", 3, True)))
    with audit.Session() as session:
        savepoint = session.begin_nested()
        with pytest.raises(IntegrityError):  # the unique code: row 2 would repeat row 1's
            session.execute(update(Item).where(Item.id < 3).values(code="same"))
        savepoint.rollback()
        savepoint = session.begin_nested()
        with pytest.raises(IntegrityError):  # code is NOT NULL
            session.execute(update(Item).where(Item.id < 3).values(code=None))
        savepoint.rollback()
        session.execute(update(Item).where(Item.id == 1).values(code="new"))
        session.commit()
    assert_ran_in_database(count_statements)
    assert history(Item) == [("update", "1", "code", "c1", "new")]


@pytest.mark.backends("sqlite", "mariadb")
def test_failed_statement_without_a_savepoint_leaves_nothing_behind(audit, Item, count_statements):
    """Where a failed statement keeps the transaction (SQLite, MariaDB), the next bulk statement records only its rows."""
    seed(audit, Item, item_rows((1, "a", 1, True), (2, "b", 2, True), (3, "c", 3, True)))
    with audit.Session() as session:
        with pytest.raises(IntegrityError):
            session.execute(update(Item).values(code="same"))
        session.execute(update(Item).where(Item.id == 1).values(code="new"))
        session.execute(delete(Item).where(Item.id == 3))
        session.commit()
    assert_ran_in_database(count_statements)
    assert sorted(history(Item)) == [
        ("delete", "3", "code", "c3", None),
        ("delete", "3", "flag", True, None),
        ("delete", "3", "name", "c", None),
        ("delete", "3", "score", 3, None),
        ("update", "1", "code", "c1", "new"),
    ]


# --- 5. PostgreSQL: rows inserted by another transaction ---------------------------------


def insert_before_the_update(audit, Item, row):
    """A listener that commits ``row`` through another connection just before the caller's UPDATE runs."""
    done = []

    def listener(conn, cursor, statement, params, context, executemany):
        if done or not statement.startswith("UPDATE items"):
            return
        done.append(True)
        with audit.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as other:
            other.execute(insert(Item.__table__).values(**row))

    return done, listener


@pytest.mark.backends("postgresql")
def test_row_inserted_by_another_transaction_midway_is_refused(audit, Item):
    """Under READ COMMITTED a matching row committed between staging and the UPDATE raises; nothing is recorded."""
    seed(audit, Item, item_rows((1, "a", 1, True), (2, "b", 1, True)))
    phantom = item_rows((99, "p", 1, True))[0]
    done, listener = insert_before_the_update(audit, Item, phantom)
    event.listen(audit.engine, "before_cursor_execute", listener)
    try:
        with audit.Session() as session:
            with pytest.raises(BulkStatementError, match=r"bulk update of Item changed 3 rows"):
                session.execute(update(Item).where(Item.score == 1).values(score=2))
            session.rollback()
    finally:
        event.remove(audit.engine, "before_cursor_execute", listener)
    assert done
    assert audit.rows() == []
    with audit.engine.connect() as connection:
        scores = connection.execute(select(Item.id, Item.score).order_by(Item.id)).all()
    assert scores == [(1, 1), (2, 1), (99, 1)]


@pytest.mark.backends("postgresql")
def test_repeatable_read_does_not_see_the_row_inserted_midway(audit, Item, count_statements):
    """At REPEATABLE READ, as the error advises, the row inserted midway is not updated and the rest is recorded."""
    seed(audit, Item, item_rows((1, "a", 1, True), (2, "b", 1, True)))
    done, listener = insert_before_the_update(audit, Item, item_rows((99, "p", 1, True))[0])
    event.listen(audit.engine, "before_cursor_execute", listener)
    try:
        bind = audit.engine.execution_options(isolation_level="REPEATABLE READ")
        with Session(bind) as session:
            assert (
                session.execute(update(Item).where(Item.score == 1).values(score=2)).rowcount == 2
            )
            session.commit()
    finally:
        event.remove(audit.engine, "before_cursor_execute", listener)
    assert done
    assert_ran_in_database(count_statements)
    assert sorted(history(Item)) == [
        ("update", "1", "score", 1, 2),
        ("update", "2", "score", 1, 2),
    ]


# --- 6. AsyncSession -----------------------------------------------------------------------


def test_async_session_bulk_statements_are_audited_in_the_database(engine, backend, base):
    """Under an AsyncSession a bulk update and delete take the database path and record the right history."""
    Item = declare_item(base)
    base.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            insert(Item.__table__), item_rows((1, "a", 1, True), (2, None, 2, False))
        )
    url = engine.url.set(drivername=f"{engine.url.get_backend_name()}+{ASYNC_DRIVERS[backend]}")
    statements: list[str] = []

    def record(conn, cursor, statement, params, context, executemany):
        statements.append(statement.strip().upper())

    async def main():
        async_engine = create_async_engine(url.render_as_string(hide_password=False))
        event.listen(async_engine.sync_engine, "before_cursor_execute", record)
        factory = async_sessionmaker(async_engine, expire_on_commit=True)
        config = SQLAuditConfig(
            session_factory=factory,
            create_table=False,
            time_zone="UTC",
            get_user_id_callback=lambda: "async-user",
        )
        set_config(config)
        config.table.create(engine, checkfirst=True)
        register_hooks()
        try:
            async with factory() as session:
                await session.execute(
                    update(Item).values(name=func.coalesce(Item.name, "") + "!", flag=True)
                )
                await session.execute(delete(Item).where(Item.id == 2))
                await session.commit()
                return await audit_async.get_resource_changes(Item, session=session)
        finally:
            await async_engine.dispose()

    changes = asyncio.run(main())
    assert any(s.startswith("INSERT INTO SQLAUDIT_STAGE_") for s in statements)
    assert not [s for s in statements if s.startswith("SELECT") and "FROM ITEMS" in s]
    assert {c.changed_by for c in changes} == {"async-user"}
    assert sorted(
        (c.operation, c.resource_id, c.field_name, c.old_value, c.new_value) for c in changes
    ) == [
        ("delete", "2", "code", "c2", None),
        ("delete", "2", "flag", True, None),
        ("delete", "2", "name", "!", None),
        ("delete", "2", "score", 2, None),
        ("update", "1", "name", "a", "a!"),
        ("update", "2", "flag", False, True),
        ("update", "2", "name", None, "!"),
    ]


# Regressions: a connection without a transaction, a stage left by another table of the
# same name, a table whose charset is not the database's, a statement's own schema map.


def declare_value_item(base, value_type, **table_args):
    @track_table(tracked_fields=["value"])
    class Item(base):
        __tablename__ = "value_items"
        __table_args__ = table_args
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        value = mapped_column(value_type, nullable=True)

    return Item


def value_history(model, **filters):
    return sorted(
        (c.operation, c.resource_id, c.old_value, c.new_value)
        for c in get_resource_changes(model, **filters)
    )


@pytest.mark.parametrize("in_database", [True, False], ids=["in-database", "read"])
def test_autocommit_session_bulk_changes_are_refused(audit, in_database):
    """Under AUTOCOMMIT (each statement commits alone) tracked bulk statements are refused unrun."""
    audit.configure(bulk_in_database=in_database)
    Item = declare_value_item(audit.base, String(50))
    audit.create_tables()
    with audit.engine.begin() as connection:
        connection.execute(
            insert(Item.__table__), [{"id": 1, "value": "a"}, {"id": 2, "value": "b"}]
        )
    with Session(audit.engine.execution_options(isolation_level="AUTOCOMMIT")) as session:
        with pytest.raises(UnauditedWriteError, match="AUTOCOMMIT"):
            session.execute(update(Item).where(Item.id == 1).values(value="A"))
        with pytest.raises(UnauditedWriteError, match="AUTOCOMMIT"):
            session.execute(delete(Item).where(Item.id == 2))
    with audit.engine.connect() as connection:
        rows = connection.execute(select(Item.__table__).order_by(Item.id)).all()
    assert [tuple(row) for row in rows] == [(1, "a"), (2, "b")]
    assert value_history(Item) == []


@pytest.mark.parametrize(
    ("first", "second", "old", "new"),
    [
        pytest.param(String(50), Integer(), 5, 6, id="string-then-integer"),
        pytest.param(String(5), String(50), "a" * 20, "b", id="short-then-long-string"),
    ],
)
def test_a_table_of_the_same_name_with_other_types_gets_its_own_stage(
    audit, first, second, old, new
):
    """A stage left on a connection by a dropped table is not reused by a new table of other types."""
    fresh = create_engine(audit.engine.url, poolclass=NullPool)  # one connection, no stage yet
    with fresh.connect() as connection:

        class FirstBase(DeclarativeBase):
            pass

        One = declare_value_item(FirstBase, first)
        FirstBase.metadata.create_all(connection)
        connection.execute(insert(One.__table__), [{"id": 1, "value": "x"}])
        connection.commit()
        with Session(connection) as session:
            session.execute(update(One).values(value="y"))
            session.commit()
        FirstBase.metadata.drop_all(connection)
        connection.commit()

        class SecondBase(DeclarativeBase):
            pass

        Two = declare_value_item(SecondBase, second)
        SecondBase.metadata.create_all(connection)
        connection.execute(insert(Two.__table__), [{"id": 1, "value": old}])
        connection.commit()
        with Session(connection) as session:
            session.execute(update(Two).values(value=new))
            session.commit()
    fresh.dispose()
    newest = get_resource_changes(Two)[0]
    assert (newest.old_value, newest.new_value) == (old, new)
    assert type(newest.old_value) is type(old)


@pytest.mark.backends("mariadb")
def test_a_latin1_table_records_only_real_changes(audit, count_statements):
    """A latin1 table in a utf8mb4 database: an unchanged non-ASCII value records nothing."""
    Item = declare_value_item(audit.base, String(50), mysql_charset="latin1")
    audit.create_tables()
    with audit.engine.begin() as connection:
        connection.execute(
            insert(Item.__table__), [{"id": 1, "value": "é"}, {"id": 2, "value": "x"}]
        )
    with audit.Session() as session:
        session.execute(update(Item).values(value="é"))
        session.commit()
    assert_ran_in_database(count_statements)
    assert value_history(Item) == [("update", "2", "x", "é")]


@pytest.mark.backends("postgresql")
@pytest.mark.parametrize("in_database", [True, False], ids=["in-database", "read"])
def test_a_statements_own_schema_translate_map_is_followed(audit, in_database):
    """A bulk statement's own schema_translate_map: the tenant's rows are read and its change table written."""
    audit.configure(bulk_in_database=in_database)
    Item = declare_value_item(audit.base, String(50))
    tenant = audit.engine.execution_options(schema_translate_map={None: "sqlaudit_tenant"})
    with audit.engine.begin() as connection:
        connection.exec_driver_sql("DROP SCHEMA IF EXISTS sqlaudit_tenant CASCADE")
        connection.exec_driver_sql("CREATE SCHEMA sqlaudit_tenant")
    try:
        audit.create_tables()
        audit.base.metadata.create_all(tenant)
        audit.config.table.create(tenant)
        with audit.engine.begin() as connection:
            connection.execute(insert(Item.__table__), [{"id": 1, "value": "public-a"}])
        with tenant.begin() as connection:
            connection.execute(insert(Item.__table__), [{"id": 1, "value": "tenant-a"}])
        with audit.Session() as session:
            session.execute(
                update(Item)
                .where(Item.id == 1)
                .values(value="new")
                .execution_options(schema_translate_map={None: "sqlaudit_tenant"})
            )
            session.commit()
        assert value_history(Item) == []  # nothing in the default schema's change table
        with Session(tenant) as session:
            assert value_history(Item, session=session) == [("update", "1", "tenant-a", "new")]
    finally:
        with audit.engine.begin() as connection:
            connection.exec_driver_sql("DROP SCHEMA IF EXISTS sqlaudit_tenant CASCADE")


# Regressions of the review: an explicit bind, pending changes (autoflush), a collation
# other than the database's, execute-time parameters, padded CHAR and ZEROFILL columns.

both_paths = pytest.mark.parametrize("in_database", [True, False], ids=["in-database", "read"])


def declare_scored(base):
    @track_table(tracked_fields=["name", "score"])
    class Scored(base):
        __tablename__ = "scored"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str] = mapped_column(String(50))
        score: Mapped[int]

    return Scored


@pytest.fixture
def Scored(audit):
    model = declare_scored(audit.base)
    audit.create_tables()
    with audit.engine.begin() as connection:
        connection.execute(
            insert(model.__table__), [{"id": i, "name": f"n{i}", "score": i} for i in range(1, 5)]
        )
    return model


def changes_of(model):
    return sorted(
        (c.resource_id, c.field_name, c.operation, c.old_value, c.new_value)
        for c in get_resource_changes(model)
        if c.operation != "insert"
    )


@both_paths
def test_pending_insert_is_flushed_before_the_bulk_update_reads(audit, Scored, in_database):
    """An object added and not yet flushed is updated by the bulk statement and recorded, no error."""
    audit.configure(bulk_in_database=in_database)
    with audit.Session() as session:
        session.add(Scored(id=5, name="n5", score=5))
        session.execute(update(Scored).values(score=0))
        session.commit()
    assert changes_of(Scored) == [(str(i), "score", "update", i, 0) for i in range(1, 6)]


@both_paths
def test_pending_change_is_flushed_before_the_bulk_delete_reads(audit, Scored, in_database):
    """A bulk delete after an unflushed edit records the edit, then the edited value as the last one."""
    audit.configure(bulk_in_database=in_database)
    with audit.Session() as session:
        session.get(Scored, 1).score = 50
        session.execute(delete(Scored).where(Scored.id == 1))
        session.commit()
    assert changes_of(Scored) == [
        ("1", "name", "delete", "n1", None),
        ("1", "score", "delete", 50, None),
        ("1", "score", "update", 1, 50),
    ]


@both_paths
def test_pending_changes_that_balance_the_row_count_lose_nothing(audit, Scored, in_database):
    """A pending edit moving a row out of the WHERE and a pending add moving one in: every row recorded."""
    audit.configure(bulk_in_database=in_database)
    with audit.Session() as session:
        session.get(Scored, 1).score = 50
        session.add(Scored(id=5, name="n5", score=5))
        session.execute(update(Scored).where(Scored.score < 10).values(name="z"))
        session.commit()
    assert changes_of(Scored) == [
        ("1", "score", "update", 1, 50),
        *((str(i), "name", "update", f"n{i}", "z") for i in range(2, 6)),
    ]


@both_paths
def test_parameters_given_at_execute_time_apply_to_the_audit(audit, Scored, in_database):
    """`where(Model.id == bindparam("x"))` with `{"x": ...}` at execute time: statement and audit agree."""
    audit.configure(bulk_in_database=in_database)
    with audit.Session() as session:
        session.execute(
            update(Scored).where(Scored.id == bindparam("x")).values(name="u"), {"x": 2}
        )
        assert (
            session.execute(delete(Scored).where(Scored.id == bindparam("x")), {"x": 3}).rowcount
            == 1
        )
        session.commit()
    assert changes_of(Scored) == [
        ("2", "name", "update", "n2", "u"),
        ("3", "name", "delete", "n3", None),
        ("3", "score", "delete", 3, None),
    ]


@pytest.mark.backends("sqlite")
@both_paths
def test_a_statement_sent_to_another_engine_runs_and_is_recorded_there(
    audit, tmp_path, in_database
):
    """`bind_arguments={"bind": other}`: the statement runs on `other`, its change rows go there too."""
    audit.configure(bulk_in_database=in_database)
    Item = declare_value_item(audit.base, String(20))
    other = create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        for engine in (audit.engine, other):
            audit.base.metadata.create_all(engine)
            audit.config.table.create(engine, checkfirst=True)
            with engine.begin() as connection:
                connection.execute(insert(Item.__table__), [{"id": 1, "value": "orig"}])
        with audit.Session() as session:
            session.execute(
                update(Item).where(Item.id == 1).values(value="changed"),
                bind_arguments={"bind": other},
            )
            session.commit()
        for engine, value, recorded in ((audit.engine, "orig", []), (other, "changed", [1])):
            with engine.connect() as connection:
                assert connection.execute(select(Item.value)).scalar_one() == value
                rows = connection.execute(select(audit.config.table)).all()
                assert [1 for row in rows if row.operation == "update"] == recorded
    finally:
        other.dispose()


@pytest.mark.backends("mariadb")
@both_paths
def test_a_string_key_in_a_table_of_another_collation(audit, count_statements, in_database):
    """A utf8mb4_unicode_ci table (a common default): the stage joins its string key without error."""
    audit.configure(bulk_in_database=in_database)

    @track_table(tracked_fields=["name"])
    class Coded(audit.base):
        __tablename__ = "coded"
        __table_args__ = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci"}  # noqa: RUF012
        code: Mapped[str] = mapped_column(String(10), primary_key=True)
        name: Mapped[str] = mapped_column(String(20))

    audit.create_tables()
    with audit.engine.begin() as connection:
        connection.execute(
            insert(Coded.__table__), [{"code": "a", "name": "x"}, {"code": "b", "name": "y"}]
        )
    with audit.Session() as session:
        assert (
            session.execute(update(Coded).where(Coded.code == "a").values(name="X")).rowcount == 1
        )
        assert session.execute(delete(Coded).where(Coded.code == "b")).rowcount == 1
        session.commit()
    assert bool(stage_statements(count_statements)) is in_database
    assert changes_of(Coded) == [
        ("a", "name", "update", "x", "X"),
        ("b", "name", "delete", "y", None),
    ]


@pytest.mark.backends("postgresql", "mariadb")
def test_padded_columns_take_the_read_path_and_keep_the_drivers_text(
    audit, backend, count_statements
):
    """CHAR(n) on PostgreSQL (blank-padded) and ZEROFILL integers on MariaDB are recorded as read."""
    if backend == "postgresql":
        padded, before, after, stored = CHAR(5), "x", "xy", ("x    ", "xy   ")
    else:
        padded, before, after, stored = mysql.INTEGER(zerofill=True), 42, 43, (42, 43)
    Item = declare_value_item(audit.base, padded)
    audit.create_tables()
    with audit.engine.begin() as connection:
        connection.execute(insert(Item.__table__), [{"id": 1, "value": before}])
    with audit.Session() as session:
        session.execute(update(Item).values(value=after))
        session.commit()
    assert stage_statements(count_statements) == []
    assert value_history(Item) == [("update", "1", *stored)]


@pytest.mark.parametrize(
    "where",
    [
        pytest.param(lambda Item: Item.id == 1, id="key-equals"),
        pytest.param(lambda Item: Item.id.in_([1, 2]), id="key-in"),
        pytest.param(lambda Item: (Item.id == 1) & (Item.score > 0), id="key-and-more"),
    ],
)
def test_a_statement_by_key_takes_the_read_path(audit, Item, count_statements, monkeypatch, where):
    """A statement pinning a few rows by key is read, not staged: three statements, not six."""
    monkeypatch.setattr(_bulk_sql, "FEW_ROWS", 50)
    audit.configure(bulk_in_database=True)
    seed(audit, Item, item_rows((1, "a", 1, True), (2, "b", 1, True)))
    count_statements.statements.clear()
    run_in_transaction(audit, update(Item).where(where(Item)).values(score=5))
    assert not any(s.startswith("INSERT INTO SQLAUDIT_STAGE_") for s in sql(count_statements))
    changed = {row[1] for row in history(Item) if row[0] == "update"}
    assert changed == ({"1", "2"} if "IN" in str(where(Item)) else {"1"})


def test_a_statement_over_many_keys_is_staged(audit, Item, count_statements, monkeypatch):
    """Past FEW_ROWS keys the stage is cheaper again, and is used."""
    monkeypatch.setattr(_bulk_sql, "FEW_ROWS", 1)
    audit.configure(bulk_in_database=True)
    seed(audit, Item, item_rows((1, "a", 1, True), (2, "b", 1, True)))
    count_statements.statements.clear()
    run_in_transaction(audit, update(Item).where(Item.id.in_([1, 2])).values(score=5))
    assert_ran_in_database(count_statements)
