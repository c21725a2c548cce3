"""Rebuilding a tracked table as it was at a moment, from its change rows, on another database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import Audit
from querylog_support import checksum, rows, second_engine
from sqlalchemy import String, create_engine, insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from sqlaudit import disable_auditing, track_table
from sqlaudit.exceptions import RecoveryError, UntrackedModelError
from sqlaudit.querylog import rebuild_table


@pytest.fixture
def other(engine: Engine, tmp_path: Path) -> Iterator[Engine]:
    """An empty second database of the same dialect and driver."""
    yield from second_engine(engine, tmp_path)


@pytest.fixture
def customer(audit: Audit) -> type[Any]:
    @track_table(tracked_fields=["name", "email"])
    class Customer(audit.base):  # type: ignore[name-defined,misc]
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column("full_name", String(100))
        email: Mapped[str | None] = mapped_column(String(100))

    audit.create_tables()
    return Customer


def test_the_table_is_rebuilt_as_it_was(audit: Audit, customer: type[Any], other: Engine) -> None:
    """Rows live at the moment come back with the values they had then; later changes do not."""
    with audit.Session() as session:
        session.add_all(
            [customer(id=n, name=f"c{n}", email=f"c{n}@example.com") for n in range(1, 5)]
        )
        session.commit()
        session.get(customer, 1).name = "renamed"
        session.delete(session.get(customer, 2))
        session.commit()
    then = checksum(audit.engine, "customers")
    moment = datetime.now(UTC)
    with audit.Session() as session:
        session.get(customer, 3).email = None
        session.delete(session.get(customer, 4))
        session.add(customer(id=5, name="later", email=None))
        session.commit()
    result = rebuild_table(customer, at=moment, target=other)
    assert (result.table_name, result.rows_written, result.incomplete) == ("customers", 3, ())
    assert checksum(other, "customers") == then
    assert [row[0] for row in rows(other, "customers")] == [1, 3, 4]


def test_rows_with_an_incomplete_history_are_reported(
    audit: Audit, customer: type[Any], other: Engine
) -> None:
    """A row inserted while auditing was off has no insert row: reported, not written."""
    with disable_auditing(), audit.Session() as session:
        session.add(customer(id=1, name="quiet", email="q@example.com"))
        session.commit()
    with audit.Session() as session:
        session.get(customer, 1).name = "heard"
        session.add(customer(id=2, name="full", email=None))
        session.commit()
    result = rebuild_table(customer, at=datetime.now(UTC), target=other)
    assert result.incomplete == ("1",)
    assert result.rows_written == 1
    assert [row[0] for row in rows(other, "customers")] == [2]


def test_the_change_rows_are_read_with_the_session_given(
    audit: Audit, customer: type[Any], other: Engine
) -> None:
    """session= reads inside that Session: its uncommitted change rows count."""
    with audit.Session() as session:
        session.add(customer(id=1, name="not committed", email=None))
        session.flush()
        result = rebuild_table(customer, at=datetime.now(UTC), target=other, session=session)
        session.rollback()
    assert result.rows_written == 1
    assert [row[1] for row in rows(other, "customers")] == ["not committed"]


def test_a_target_table_with_rows_is_refused(
    audit: Audit, customer: type[Any], other: Engine
) -> None:
    """Rebuilding into a table that has rows raises, naming the table and the fix."""
    customer.__table__.create(other)
    with other.begin() as connection:
        connection.execute(insert(customer.__table__), {"id": 9, "full_name": "x"})
    with pytest.raises(RecoveryError, match=r"customers on .* already has 1 rows"):
        rebuild_table(customer, at=datetime.now(UTC), target=other)


def test_bad_arguments_name_the_fix(audit: Audit, customer: type[Any]) -> None:
    """A moment that is not one, a target that is not an engine, an untracked model."""
    target = create_engine("sqlite://")
    with pytest.raises(RecoveryError, match="takes a datetime or a date"):
        rebuild_table(customer, at="yesterday", target=target)  # type: ignore[arg-type]
    with pytest.raises(RecoveryError, match="takes an Engine"):
        rebuild_table(customer, at=datetime.now(UTC), target="sqlite://")  # type: ignore[arg-type]

    class Plain(audit.base):  # type: ignore[name-defined,misc]
        __tablename__ = "plain"
        id: Mapped[int] = mapped_column(primary_key=True)

    with pytest.raises(UntrackedModelError, match="Plain is not tracked"):
        rebuild_table(Plain, at=datetime.now(UTC), target=target)
    target.dispose()
