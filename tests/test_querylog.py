"""The query log: what an entry holds, what is logged, and what is left out."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    create_engine,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.mysql import LONGTEXT
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from sqlaudit import audit_context
from sqlaudit.exceptions import RecoveryError, SQLAuditError
from sqlaudit.querylog import QueryLog, log_queries, read_log, statement_kind
from sqlaudit.querylog._table import MASK, encode_parameters, to_entry


@pytest.fixture
def item(base: type[DeclarativeBase]) -> type[Any]:
    class Item(base):  # type: ignore[misc,valid-type]
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        name: Mapped[str] = mapped_column(String(50))
        price: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
        secret: Mapped[str | None] = mapped_column(String(50))

    return Item


@pytest.fixture
def logged(engine: Engine, base: type[DeclarativeBase], item: type[Any]) -> Iterator[QueryLog]:
    base.metadata.create_all(engine)
    log = log_queries(of=engine)
    yield log
    log.remove()


def test_an_orm_insert_is_logged_with_its_typed_parameters(
    engine: Engine, item: type[Any], logged: QueryLog
) -> None:
    """An ORM insert gives one insert entry: dialect, SQL, typed parameters, time, row count."""
    before = datetime.now(UTC)
    with Session(engine) as session:
        session.add(item(id=1, name="Ada", price=Decimal("2.50")))
        session.commit()
    [entry] = read_log(engine)
    assert entry.kind == "insert"
    assert entry.dialect.startswith(engine.dialect.name + "+")
    assert "items" in entry.statement
    values = (
        list(entry.parameters.values())
        if isinstance(entry.parameters, dict)
        else list(entry.parameters)
    )
    assert 1 in values and "Ada" in values
    assert entry.started_at.tzinfo is not None and entry.started_at >= before.replace(microsecond=0)
    assert entry.duration >= 0
    assert entry.row_count == 1
    assert entry.transaction_id is not None
    assert not entry.executemany


def test_a_rolled_back_transaction_leaves_no_entry(
    engine: Engine, item: type[Any], logged: QueryLog
) -> None:
    """Entries are written in the statement's transaction: a rollback drops them."""
    with Session(engine) as session:
        session.add(item(id=1, name="Ada"))
        session.flush()
        session.rollback()
    with engine.begin() as connection:
        connection.execute(insert(item), {"id": 2, "name": "Bo"})
    assert [entry.kind for entry in read_log(engine)] == ["insert"]
    assert len(read_log(engine)) == 1


def test_a_rolled_back_savepoint_drops_its_entries(
    engine: Engine, item: type[Any], logged: QueryLog
) -> None:
    """What a rolled-back savepoint ran is not in the log; the rest of the transaction is."""
    with Session(engine) as session:
        session.add(item(id=1, name="Ada"))
        session.flush()
        nested = session.begin_nested()
        session.add(item(id=2, name="Bo"))
        session.flush()
        nested.rollback()
        session.commit()
    entries = read_log(engine)
    assert len(entries) == 1
    assert "savepoint" not in " ".join(e.statement.lower() for e in entries)


def test_nested_savepoints_keep_what_was_released(
    engine: Engine, item: type[Any], logged: QueryLog
) -> None:
    """An inner savepoint rolled back drops its entry; the released outer one keeps its own."""
    with engine.begin() as connection:
        outer = connection.begin_nested()
        connection.execute(insert(item), {"id": 1, "name": "kept"})
        inner = connection.begin_nested()
        connection.execute(insert(item), {"id": 2, "name": "dropped"})
        inner.rollback()
        outer.commit()
        connection.execute(insert(item), {"id": 3, "name": "kept too"})
    logged_names = [repr(entry.parameters) for entry in read_log(engine)]
    assert len(logged_names) == 2
    assert "dropped" not in " ".join(logged_names)


@pytest.mark.backends("postgresql", "mariadb")
def test_transactions_are_logged_in_commit_order(
    engine: Engine, item: type[Any], logged: QueryLog
) -> None:
    """Entries are written at commit: a transaction that commits first comes first in the log."""
    with engine.connect() as first, engine.connect() as second:
        first.execute(insert(item), {"id": 1, "name": "began first"})
        second.execute(insert(item), {"id": 2, "name": "committed first"})
        second.commit()
        first.commit()
    entries = read_log(engine)
    assert "committed first" in repr(entries[0].parameters)
    assert "began first" in repr(entries[1].parameters)


def test_autocommit_statements_are_logged_at_once(
    engine: Engine, item: type[Any], logged: QueryLog
) -> None:
    """With AUTOCOMMIT, each statement commits itself, and its entry is written with it."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(insert(item), {"id": 1, "name": "Ada"})
        assert len(read_log(engine)) == 1
        connection.execute(insert(item), {"id": 2, "name": "Grace"})
    # Each is a transaction of its own: no shared transaction id.
    assert [entry.transaction_id for entry in read_log(engine)] == [None, None]


def test_an_autocommit_engine_logs_each_statement_at_once(
    engine: Engine, item: type[Any], base: type[DeclarativeBase]
) -> None:
    """``create_engine(isolation_level="AUTOCOMMIT")`` too: no COMMIT comes, so each entry
    is written with its statement (none is held, then dropped at the connection's close)."""
    base.metadata.create_all(engine)
    autocommit = create_engine(engine.url, isolation_level="AUTOCOMMIT")
    log = log_queries(of=autocommit)
    try:
        with autocommit.connect() as connection:
            connection.execute(insert(item), {"id": 1, "name": "Ada"})
            assert [entry.transaction_id for entry in read_log(engine)] == [None]
            connection.execute(insert(item), {"id": 2, "name": "Grace"})
    finally:
        log.remove()
        autocommit.dispose()
    assert [entry.kind for entry in read_log(engine)] == ["insert", "insert"]


def test_one_transaction_shares_one_id_and_the_next_gets_another(
    engine: Engine, item: type[Any], logged: QueryLog
) -> None:
    """Statements of one database transaction share its id; another transaction has its own."""
    with engine.begin() as connection:
        connection.execute(insert(item), {"id": 1, "name": "Ada"})
        connection.execute(update(item).where(item.id == 1).values(name="Ada L."))
    with engine.begin() as connection:
        connection.execute(delete(item).where(item.id == 1))
    first, second, third = read_log(engine)
    assert [first.kind, second.kind, third.kind] == ["insert", "update", "delete"]
    assert first.transaction_id == second.transaction_id != third.transaction_id


def test_a_transaction_logging_more_than_a_packet_commits(engine: Engine) -> None:
    """Entries adding up to more than MySQL's max_allowed_packet (16 MB on MariaDB) go in
    several INSERTs: the transaction commits, with every entry, in order."""
    table = Table(
        "notes",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("body", Text().with_variant(LONGTEXT(), "mysql", "mariadb")),
    )
    table.create(engine)
    bodies = ["a" * 600_000] + [chr(ord("b") + number % 20) * 450_000 for number in range(40)]
    log = log_queries(of=engine)
    try:
        with engine.begin() as connection:
            for number, body in enumerate(bodies, start=1):
                connection.execute(insert(table), {"id": number, "body": body})
    finally:
        log.remove()
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(table)).scalar_one() == 41
    logged = []
    for entry in read_log(engine):
        values = entry.parameters
        values = list(values.values()) if isinstance(values, dict) else list(values)
        logged.append(next(value for value in values if isinstance(value, str)))
    assert logged == bodies


def test_a_long_transaction_logs_every_statement_in_order(
    engine: Engine, item: type[Any], logged: QueryLog
) -> None:
    """A transaction of 120 statements (written as several multi-row INSERTs) logs them all,
    in the order they ran, under one transaction id."""
    with engine.begin() as connection:
        for number in range(1, 121):
            connection.execute(insert(item.__table__), {"id": number, "name": f"n{number}"})
    entries = read_log(engine)
    names = [
        entry.parameters["name"] if isinstance(entry.parameters, dict) else entry.parameters[1]
        for entry in entries
    ]
    assert names == [f"n{number}" for number in range(1, 121)]
    assert [entry.id for entry in entries] == sorted(entry.id for entry in entries)
    assert len({entry.transaction_id for entry in entries}) == 1


def test_an_executemany_keeps_its_batch(engine: Engine, item: type[Any], logged: QueryLog) -> None:
    """A Core insert of several rows keeps every parameter set of the batch."""
    with engine.begin() as connection:
        connection.execute(update(item.__table__).where(item.__table__.c.id == 0).values(name="x"))
        connection.execute(
            text("insert into items (id, name) values (:id, :name)"),
            [{"id": n, "name": f"n{n}"} for n in range(1, 4)],
        )
    entries = read_log(engine)
    batch = entries[-1]
    assert batch.executemany
    assert len(batch.parameters) == 3


_AWKWARD = [
    'it\'s \\ a "quoted" 100% text; -- not a comment',
    "line\nbreak\r\tand \x1a control",
    "",
    "Zoë, 東京, \U0001f600",
    "x" * 600_000,  # longer than what goes inline on MySQL: sent bound, in order
    "\U0001f600" * 100_000,  # 100,000 characters, 400 KB of UTF-8: bound too
    "%s %(name)s ? :name $1",
]


@pytest.mark.parametrize("sql_mode", ["", "NO_BACKSLASH_ESCAPES,ANSI_QUOTES"])
def test_awkward_texts_are_logged_exactly(engine: Engine, backend: str, sql_mode: str) -> None:
    """Quotes, backslashes, %, control characters, non-BMP text and a 600 KB value read back
    exactly as sent, in order (on MySQL, whatever the session's sql_mode)."""
    if sql_mode and backend not in ("mysql", "mariadb"):
        pytest.skip("sql_mode is MySQL's")
    table = Table(
        "notes",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("body", Text().with_variant(LONGTEXT(), "mysql", "mariadb")),
    )
    table.create(engine)
    log = log_queries(of=engine)
    try:
        with engine.begin() as connection:
            if sql_mode:
                connection.exec_driver_sql(f"SET SESSION sql_mode = '{sql_mode}'")
            for number, body in enumerate(_AWKWARD):
                connection.execute(insert(table), {"id": number + 1, "body": body})
            connection.execute(
                text("update notes set body = :body where id = 1 -- it's 100% a comment"),
                {"body": _AWKWARD[0] + "!"},
            )
    finally:
        log.remove()
        engine.dispose()  # no pooled connection keeps the sql_mode
    entries = [entry for entry in read_log(engine) if entry.kind != "text"]
    assert [entry.kind for entry in entries] == ["insert"] * len(_AWKWARD) + ["update"]
    for entry, body in zip(entries, [*_AWKWARD, _AWKWARD[0] + "!"], strict=True):
        values = (
            list(entry.parameters.values())
            if isinstance(entry.parameters, dict)
            else list(entry.parameters)
        )
        assert body in values
    assert "-- it's 100" in entries[-1].statement
    assert len({entry.transaction_id for entry in entries}) == 1


def test_raw_sql_reads_and_ddl_have_their_kinds(engine: Engine, item: type[Any]) -> None:
    """With statements="all", reads are logged as select; DDL as ddl; raw SQL by its verb."""
    log = log_queries(of=engine, statements="all")
    try:
        with engine.begin() as connection:
            connection.execute(text("create table scratch (id integer primary key)"))
            connection.execute(text("insert into scratch (id) values (1)"))
            connection.execute(text("select id from scratch")).all()
    finally:
        log.remove()
    kinds = [entry.kind for entry in read_log(engine)]
    assert kinds == ["ddl", "insert", "select"]


def test_reads_are_not_logged_by_default(engine: Engine, item: type[Any], logged: QueryLog) -> None:
    """The default, statements="writes", leaves SELECTs out."""
    with Session(engine) as session:
        session.execute(select(item)).all()
        session.commit()
    assert read_log(engine) == []


def test_reads_can_be_sampled(engine: Engine, item: type[Any], base: type[DeclarativeBase]) -> None:
    """sample=0 logs no read and every write; sample=1 logs every read."""
    base.metadata.create_all(engine)
    for sample, reads in ((0.0, 0), (1.0, 3)):
        log = log_queries(of=engine, statements="all", sample=sample)
        try:
            with engine.begin() as connection:
                connection.execute(delete(item))
                for _ in range(3):
                    connection.execute(select(item)).all()
        finally:
            log.remove()
        kinds = [entry.kind for entry in read_log(engine)]
        assert kinds.count("select") == reads
        with engine.begin() as connection:
            connection.execute(text("delete from sqlaudit_query_log"))
    with pytest.raises(RecoveryError, match="a number from 0 to 1"):
        log_queries(of=engine, sample=2)


def test_who_and_why_come_from_the_audit_context(
    engine: Engine, item: type[Any], base: type[DeclarativeBase]
) -> None:
    """The user, reason and extra metadata of audit_context, and the log's own extra, are kept."""
    base.metadata.create_all(engine)
    log = log_queries(of=engine, extra={"app": "billing"})
    try:
        with audit_context(user_id=7, reason="ticket 12", request="r-1"), engine.begin() as c:
            c.execute(insert(item), {"id": 1, "name": "Ada"})
    finally:
        log.remove()
    [entry] = read_log(engine)
    assert (entry.changed_by, entry.reason) == ("7", "ticket 12")
    assert entry.extra == {"request": "r-1", "app": "billing"}


def test_masked_columns_are_not_kept(
    engine: Engine, item: type[Any], base: type[DeclarativeBase]
) -> None:
    """A masked column's value is stored as masked; the other values are kept."""
    base.metadata.create_all(engine)
    log = log_queries(of=engine, mask_columns=["secret"])
    try:
        with Session(engine) as session:
            session.add(item(id=1, name="Ada", secret="hunter2"))
            session.commit()
    finally:
        log.remove()
    [entry] = read_log(engine)
    assert entry.masked
    assert "hunter2" not in repr(entry.parameters)
    assert "Ada" in repr(entry.parameters)


def test_removing_the_log_stops_logging(engine: Engine, item: type[Any], logged: QueryLog) -> None:
    """After remove(), statements are no longer logged."""
    logged.remove()
    with engine.begin() as connection:
        connection.execute(insert(item), {"id": 1, "name": "Ada"})
    assert read_log(engine) == []


def test_statements_on_the_log_table_are_never_logged(
    engine: Engine, item: type[Any], logged: QueryLog
) -> None:
    """Deleting from the log table itself leaves no entry about it."""
    with engine.begin() as connection:
        connection.execute(insert(item), {"id": 1, "name": "Ada"})
    with engine.begin() as connection:
        connection.execute(text("delete from sqlaudit_query_log where id < 0"))
    assert [entry.kind for entry in read_log(engine)] == ["insert"]


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("INSERT INTO t VALUES (1)", "insert"),
        ("  update t set a = 1", "update"),
        ("/* c */ DELETE FROM t", "delete"),
        ("-- note\nSELECT 1", "select"),
        ("CREATE TABLE t (a int)", "ddl"),
        ("SAVEPOINT sa_1", "control"),
        ("WITH x AS (SELECT 1) UPDATE t SET a = 1", "text"),
    ],
)
def test_statement_kind(sql: str, kind: str) -> None:
    """A statement's kind comes from its first word, past comments."""
    assert statement_kind(sql) == kind


def test_bad_arguments_name_the_fix() -> None:
    """Bad arguments raise RecoveryError saying what to pass."""
    engine = create_engine("sqlite://")
    with pytest.raises(RecoveryError, match="takes an Engine or a Connection"):
        log_queries(of="sqlite://")  # type: ignore[arg-type]
    with pytest.raises(RecoveryError, match="'writes' \\(the default\\) or 'all'"):
        log_queries(of=engine, statements="reads")
    with pytest.raises(
        RecoveryError, match="takes an Engine \\(the database to keep the log in\\)"
    ):
        log_queries(of=engine, to="sqlite://")  # type: ignore[arg-type]
    with engine.connect() as connection, pytest.raises(RecoveryError, match="pass the engine"):
        log_queries(of=connection, to=create_engine("sqlite://"))
    log = log_queries(of=engine)
    with pytest.raises(RecoveryError, match="nothing to drain"):
        log.drain()
    log.remove()
    with pytest.raises(SQLAuditError, match=r"pass \['secret'\]"):
        log_queries(of=engine, mask_columns="secret")


def _stored(parameters: str, executemany: bool = False) -> Any:
    """A log table row holding ``parameters`` as stored text."""
    return SimpleNamespace(
        id=1,
        transaction_id=None,
        kind="insert",
        dialect="sqlite+pysqlite",
        statement="INSERT INTO items VALUES (?)",
        parameters=parameters,
        executemany=executemany,
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        duration=0.0,
        row_count=1,
        changed_by=None,
        extra=None,
    )


def test_parameters_read_back_with_their_types() -> None:
    """Each kind of parameter value, plain JSON or tagged, reads back as the value sent."""
    sent = (
        "Ada",
        7,
        2.5,
        True,
        None,
        Decimal("1.10"),
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        date(2026, 1, 2),
        b"\x00\xff",
        UUID("12345678-1234-5678-1234-567812345678"),
        [1, "a"],
    )
    entry = to_entry(_stored(encode_parameters(sent, "qmark")))
    assert entry.parameters == sent and not entry.masked
    assert [type(value) for value in entry.parameters] == [type(value) for value in sent]
    batch = [{"id": 1, "name": "Ada"}, {"id": 2, "name": MASK}]
    entry = to_entry(_stored(encode_parameters(batch, "named"), executemany=True))
    assert entry.parameters == [{"id": 1, "name": "Ada"}, {"id": 2, "name": "masked:"}]
    assert entry.masked


def test_entries_in_the_earlier_tagged_form_still_read() -> None:
    """Parameters stored as tagged text by earlier versions decode to the same values."""
    stored = '{"style":"qmark","values":["str:Ada","int:7",null,{"array":["int:1"]},"masked:"]}'
    entry = to_entry(_stored(stored))
    assert entry.parameters == ("Ada", 7, None, [1], "masked:")
    assert entry.masked and entry.paramstyle == "qmark"
