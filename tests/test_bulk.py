"""Bulk ORM statements run through a Session are audited like the unit of work.

An UPDATE or DELETE of a model like ``Player`` (integer key, integer and string
fields) is audited in the database (``bulk_in_database``, tested on its own in
``test_bulk_sql.py``); the tests taking ``bulk_path`` run on that path and again on
the read path every other statement takes, and the read path's own statement shapes
are tested with ``read_path``.
"""

from __future__ import annotations

import pytest
from sqlalchemy import ForeignKey, String, delete, func, insert, select, update
from sqlalchemy.orm import Mapped, mapped_column

from sqlaudit import (
    BulkStatementError,
    audit_context,
    disable_auditing,
    get_resource_changes,
    track_table,
)


def declare_player(base):
    @track_table(tracked_fields=["name", "score"])
    class Player(base):
        __tablename__ = "players"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50))
        score: Mapped[int]
        visits: Mapped[int] = mapped_column(default=0)

    return Player


@pytest.fixture(params=["in-database", "read"])
def bulk_path(request, audit):
    """Run the test on both bulk paths: in the database, and by reading the rows."""
    audit.configure(bulk_in_database=request.param == "in-database")
    return request.param


@pytest.fixture
def read_path(audit):
    """Send every bulk statement down the read path."""
    audit.configure(bulk_in_database=False)


@pytest.fixture
def Player(audit):
    model = declare_player(audit.base)
    audit.create_tables()
    with audit.Session() as session:
        for i in (1, 2, 3):  # generated keys 1, 2, 3, one flush each to fix the order
            session.add(model(name=f"p{i}", score=i * 10))
            session.flush()
        session.commit()
    return model


def history(model, **filters):
    """(operation, resource, field, old, new) for every change, oldest first."""
    return [
        (c.operation, c.resource_id, c.field_name, c.old_value, c.new_value)
        for c in reversed(get_resource_changes(model, **filters))
    ]


def updates(model):
    return [row for row in history(model) if row[0] != "insert"]


@pytest.mark.parametrize("sync", ["auto", False, "evaluate", "fetch"])
def test_update_with_sql_expression_records_true_old_and_new_values(audit, Player, bulk_path, sync):
    """`update(...).where(...).values(score=score + 1)` records each affected row's old and computed new value."""
    with audit.Session() as session:
        session.execute(
            update(Player)
            .where(Player.score >= 20)
            .values(score=Player.score + 1)
            .execution_options(synchronize_session=sync)
        )
        session.commit()
    assert sorted(updates(Player)) == [
        ("update", "2", "score", 20, 21),
        ("update", "3", "score", 30, 31),
    ]


@pytest.mark.parametrize("sync", ["auto", False, "evaluate", "fetch"])
def test_delete_statement_records_last_values(audit, Player, bulk_path, sync):
    """`delete(...).where(...)` records the last value of every tracked field of each deleted row."""
    with audit.Session() as session:
        session.execute(
            delete(Player).where(Player.name == "p2").execution_options(synchronize_session=sync)
        )
        session.commit()
    assert sorted(updates(Player)) == [
        ("delete", "2", "name", "p2", None),
        ("delete", "2", "score", 20, None),
    ]


def test_update_by_primary_key_list(audit, Player):
    """`session.execute(update(Model), [dicts with keys])` records each row's changed fields."""
    with audit.Session() as session:
        session.execute(update(Player), [{"id": 1, "name": "one"}, {"id": 3, "name": "p3"}])
        session.commit()
    # row 3 was given its own value: no net change, nothing recorded
    assert updates(Player) == [("update", "1", "name", "p1", "one")]


def test_update_of_untracked_field_costs_nothing_extra(audit, Player, bulk_path, count_statements):
    """A bulk update that assigns no tracked field runs alone: no read, no audit write."""
    with audit.Session() as session:
        session.execute(update(Player).values(visits=Player.visits + 1))
        session.commit()
    statements = [
        s for s, _ in count_statements.statements if not s.startswith(("BEGIN", "COMMIT"))
    ]
    assert len(statements) == 1
    assert statements[0].upper().startswith("UPDATE")
    assert updates(Player) == []


def test_update_matching_no_rows_writes_nothing(audit, Player, bulk_path, count_statements):
    """A bulk update that matches no row writes no change row."""
    with audit.Session() as session:
        session.execute(update(Player).where(Player.id > 100).values(name="x"))
        session.commit()
    assert not count_statements.matching(lambda s: "sqlaudit_changes" in s)
    assert updates(Player) == []


def test_bulk_insert_with_and_without_primary_keys(audit, Player):
    """ORM bulk `insert(Model)` records every tracked field, whether the keys are given or generated."""
    with audit.Session() as session:
        session.execute(insert(Player), [{"id": 7, "name": "seven", "score": 70}])
        session.execute(insert(Player), [{"name": "gen", "score": 5}, {"name": "gen2", "score": 6}])
        session.commit()
        generated = session.scalars(select(Player.id).where(Player.name.like("gen%"))).all()
    rows = [row for row in history(Player) if row[1] not in ("1", "2", "3")]
    assert ("insert", "7", "name", None, "seven") in rows
    assert ("insert", "7", "score", None, 70) in rows
    resources = {row[1] for row in rows if row[3:] in ((None, "gen"), (None, "gen2"))}
    assert resources == {str(key) for key in generated}
    assert len(rows) == 6


def test_insert_from_select_is_refused_before_anything_is_written(audit, Player):
    """An INSERT ... SELECT on a tracked model cannot be audited: it fails before running."""
    with audit.Session() as session:
        statement = insert(Player).from_select(
            ["name", "score"], select(Player.name + "-copy", Player.score).where(Player.id == 1)
        )
        with pytest.raises(BulkStatementError, match=r"INSERT ... SELECT into Player"):
            session.execute(statement)
        session.rollback()
        assert session.scalar(select(func.count()).select_from(Player)) == 3


def test_bulk_changes_roll_back_with_the_transaction(audit, Player, bulk_path):
    """Rolling back a bulk update leaves no change rows behind."""
    with audit.Session() as session:
        session.execute(update(Player).values(name="gone"))
        session.rollback()
    assert updates(Player) == []


def test_bulk_rows_carry_context_user_and_transaction(audit, Player, bulk_path):
    """Bulk rows carry the audit_context user and share the transaction id with flushed rows."""
    audit.user = 1
    with audit_context(user_id="admin", reason="cleanup"), audit.Session() as session:
        session.get(Player, 1).name = "flushed"
        session.flush()
        session.execute(delete(Player).where(Player.id == 2))
        session.commit()
    changes = [c for c in get_resource_changes(Player) if c.operation != "insert"]
    assert {c.changed_by for c in changes} == {"admin"}
    assert {c.reason for c in changes} == {"cleanup"}
    assert len({c.transaction_id for c in changes}) == 1


def test_disable_auditing_skips_bulk_statements(audit, Player, bulk_path):
    """Inside disable_auditing() a bulk statement records nothing."""
    with disable_auditing(), audit.Session() as session:
        session.execute(update(Player).values(score=0))
        session.commit()
    assert updates(Player) == []


def test_core_statement_on_the_table_through_a_session_is_audited(audit, Player, bulk_path):
    """A Core update() on the tracked model's Table, run through a Session, is recorded."""
    table = Player.__table__
    with audit.Session() as session:
        session.execute(update(table).where(table.c.id == 1).values(name="core"))
        session.commit()
    assert updates(Player) == [("update", "1", "name", "p1", "core")]


def test_core_statement_on_a_plain_connection_is_not_audited(audit, Player):
    """A Core statement on a plain Connection bypasses the Session, as documented: nothing is recorded."""
    table = Player.__table__
    with audit.engine.begin() as connection:
        connection.execute(update(table).where(table.c.id == 1).values(name="raw"))
    assert updates(Player) == []


def test_bulk_statements_keep_their_rowcount(audit, Player, bulk_path):
    """Auditing hands back the statement's own result: rowcount still counts the affected rows."""
    with audit.Session() as session:
        assert session.execute(update(Player).values(name="all")).rowcount == 3
        assert session.execute(delete(Player).where(Player.id > 1)).rowcount == 2
        session.commit()
    assert len([row for row in updates(Player) if row[0] == "delete"]) == 4


def test_core_statements_keep_their_rowcount(audit, Player, bulk_path):
    """A Core update()/delete() on the tracked Table through a Session keeps its rowcount too."""
    table = Player.__table__
    with audit.Session() as session:
        assert session.execute(update(table).where(table.c.id > 1).values(score=0)).rowcount == 2
        assert session.execute(delete(table).where(table.c.id == 3)).rowcount == 1
        session.commit()
    assert len(updates(Player)) == 4  # two updates of score, the delete's name and score


def test_statement_with_its_own_returning_is_audited_and_returns_its_rows(audit, Player, backend):
    """An update/delete with a RETURNING of its own gives the caller exactly those rows, and is audited."""
    if backend == "mariadb":
        statement = delete(Player).where(Player.id == 3).returning(Player.name)
        expected = [("delete", "3", "name", "p3", None), ("delete", "3", "score", 30, None)]
    else:
        statement = update(Player).where(Player.id == 3).values(score=0).returning(Player.name)
        expected = [("update", "3", "score", 30, 0)]
    with audit.Session() as session:
        assert session.execute(statement).all() == [("p3",)]
        session.commit()
    assert sorted(updates(Player)) == expected


def test_update_takes_returning_where_the_database_has_it(
    audit, Player, read_path, backend, count_statements
):
    """A bulk UPDATE reads new values with RETURNING on SQLite and PostgreSQL, by a second read on MariaDB."""
    with audit.Session() as session:
        count_statements.statements.clear()
        session.execute(update(Player).where(Player.id < 3).values(score=Player.score * 2))
        session.commit()
    sql = [s.upper() for s, _ in count_statements.statements]
    on_players = [s for s in sql if "PLAYERS" in s and "SQLAUDIT_CHANGES" not in s]
    returning = any(s.startswith("UPDATE") and "RETURNING" in s for s in on_players)
    reads = [s for s in on_players if s.startswith("SELECT")]
    if backend == "mariadb":  # no UPDATE ... RETURNING: read before and after
        assert not returning
        assert len(reads) == 2
    else:
        assert returning
        assert len(reads) == 1
    assert sorted(updates(Player)) == [
        ("update", "1", "score", 10, 20),
        ("update", "2", "score", 20, 40),
    ]


def test_delete_takes_returning_unless_it_has_its_own(audit, Player, read_path, count_statements):
    """A bulk DELETE gets its last values from RETURNING, or from a read when it returns rows of its own."""
    with audit.Session() as session:
        count_statements.statements.clear()
        session.execute(delete(Player).where(Player.id == 1))
        plain = [s.upper() for s, _ in count_statements.statements]
        count_statements.statements.clear()
        session.execute(delete(Player).where(Player.id == 2).returning(Player.id)).all()
        own = [s.upper() for s, _ in count_statements.statements]
        session.commit()
    assert any(s.startswith("DELETE") and "RETURNING" in s for s in plain)
    assert not any(s.startswith("SELECT") and "PLAYERS" in s for s in plain)
    assert any(s.startswith("SELECT") and "PLAYERS" in s for s in own)
    assert sorted(row[1:4] for row in updates(Player)) == [
        ("1", "name", "p1"),
        ("1", "score", 10),
        ("2", "name", "p2"),
        ("2", "score", 20),
    ]


def test_update_by_primary_key_without_a_key_is_refused(audit, Player):
    """A by-primary-key bulk update with a row lacking its key fails clearly, before anything is written."""
    with audit.Session() as session:
        with pytest.raises(BulkStatementError, match=r"Player.*without id"):
            session.execute(update(Player), [{"id": 1, "name": "a"}, {"name": "no key"}])
        session.rollback()
        assert session.get(Player, 1).name == "p1"
    assert updates(Player) == []


def test_bulk_delete_of_a_joined_subclass_reads_instead_of_returning(audit):
    """A bulk delete on a joined-inheritance subclass runs as without auditing and records the row."""

    @track_table(tracked_fields=["name", "skill"])
    class Person(audit.base):
        __tablename__ = "people"
        id: Mapped[int] = mapped_column(primary_key=True)
        kind: Mapped[str] = mapped_column(String(10))
        name: Mapped[str] = mapped_column(String(50))
        skill: Mapped[str | None] = mapped_column(String(50))  # on the parent, tracked there
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "person"}  # noqa: RUF012

    class Dev(Person):
        __tablename__ = "devs"
        id: Mapped[int] = mapped_column(ForeignKey("people.id"), primary_key=True)
        language: Mapped[str] = mapped_column(String(20))
        __mapper_args__ = {"polymorphic_identity": "dev"}  # noqa: RUF012

    audit.create_tables()
    with audit.Session() as session:
        session.add(Dev(id=10, name="Ada", skill="math", language="py"))
        session.commit()
        assert session.execute(delete(Dev).where(Dev.id == 10)).rowcount == 1
        session.commit()
    deletes = [row for row in history(Person) if row[0] == "delete"]
    assert sorted(deletes) == [
        ("delete", "10", "name", "Ada", None),
        ("delete", "10", "skill", "math", None),
    ]


def test_single_row_insert_keeps_inserted_primary_key(audit, Player):
    """`session.execute(insert(Model).values(...))` still gives inserted_primary_key, and is recorded."""
    with audit.Session() as session:
        result = session.execute(insert(Player).values(name="solo", score=1))
        (new_id,) = result.inserted_primary_key
        session.commit()
    assert ("insert", str(new_id), "name", None, "solo") in history(Player)


def test_bulk_update_of_a_primary_key_is_refused(audit, Player, bulk_path):
    """A bulk update assigning the primary key fails before running: its rows could not be paired."""
    with audit.Session() as session:
        with pytest.raises(BulkStatementError, match=r"Player\.id"):
            session.execute(update(Player).where(Player.id == 1).values(id=100, score=9))
        session.rollback()
        assert session.get(Player, 1).score == 10
