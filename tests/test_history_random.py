"""Random edit sequences: the state rebuilt from the history equals the table at every commit."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy import String, func, select
from sqlalchemy.orm import Mapped, mapped_column

from sqlaudit import (
    count_changes,
    count_events,
    get_events,
    get_resource_events,
    get_resource_state,
    restore,
    revert_transaction,
    track_table,
)

KEYS = (1, 2, 3, 4)
NAMES = ("ann", "bob", "cy", "dee", None)


def declare_item(base: Any) -> type[Any]:
    """Declare an Item tracking ``name`` and ``qty`` (both nullable)."""

    @track_table(tracked_fields=["name", "qty"])
    class Item(base):
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str | None] = mapped_column(String(20))
        qty: Mapped[int | None] = mapped_column()

    return Item


def snapshot(audit: Any, item: type[Any]) -> dict[int, dict[str, Any]]:
    """Return the table as ``{id: {"name": ..., "qty": ...}}``, read with a fresh session."""
    with audit.Session() as session:
        return {obj.id: {"name": obj.name, "qty": obj.qty} for obj in session.scalars(select(item))}


def last_change_id(audit: Any) -> int:
    """Return the id of the newest change row (0 when there is none)."""
    table = audit.config.table
    with audit.engine.connect() as connection:
        return int(connection.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one())


def transaction_of(audit: Any, change_id: int) -> str:
    """Return the transaction id of one change row."""
    table = audit.config.table
    with audit.engine.connect() as connection:
        query = select(table.c.transaction_id).where(table.c.id == change_id)
        return str(connection.execute(query).scalar_one())


def random_transaction(rng: random.Random, session: Any, item: type[Any]) -> None:
    """Make one to three random edits (insert, update, delete, reuse a key) in one transaction."""
    for _ in range(rng.randint(1, 3)):
        key = rng.choice(KEYS)
        obj = session.get(item, key)
        if obj is None:
            # An insert records only the fields it sets: one with every tracked field
            # None leaves no row, so its life could not be seen (a documented blind spot).
            name = rng.choice(NAMES[:-1])
            session.add(item(id=key, name=name, qty=rng.choice([None, 1, 2, 3])))
        elif rng.random() < 0.25:
            session.delete(obj)
        else:
            if rng.random() < 0.7:
                obj.name = rng.choice(NAMES)
            if rng.random() < 0.5:
                obj.qty = rng.choice([None, 1, 2, 3, 40])
        session.flush()


def assert_state_matches(
    audit: Any, item: type[Any], table: dict[int, dict[str, Any]], **moment: Any
) -> None:
    """Every key's state (now, or at ``moment``) equals the table's row, or says it is gone."""
    for key in KEYS:
        state = get_resource_state(item, key, **moment)
        if key in table:
            assert (state.status, state.complete, dict(state.values)) == ("live", True, table[key])
        else:
            assert state.status in ("absent", "deleted")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_state_from_history_equals_the_table_at_every_commit(audit, seed):
    """Random inserts, updates, deletes and reused keys; state now and later-at-each-commit match."""
    item = declare_item(audit.base)
    audit.create_tables()
    rng = random.Random(seed)
    commits: list[tuple[str, dict[int, dict[str, Any]]]] = []
    for _ in range(20):
        before = last_change_id(audit)
        with audit.Session() as session:
            random_transaction(rng, session, item)
            session.commit()
        table = snapshot(audit, item)
        assert_state_matches(audit, item, table)
        after = last_change_id(audit)
        if after != before:
            commits.append((transaction_of(audit, after), table))
    assert len(commits) > 5
    for transaction, table in commits:
        assert_state_matches(audit, item, table, transaction_id=transaction)
    # A limited read (newest rows first) gives the same events as the full one.
    for key in KEYS:
        everything = get_resource_events(item, key)
        for size in (1, 2, 5):
            assert get_resource_events(item, key, limit=size) == everything[:size]
            assert get_resource_events(item, key, limit=size, offset=1) == everything[1 : 1 + size]
    # The "new" side of each transaction's last event for a key is the state just after it.
    for key in KEYS:
        last_events = {e.transaction_id: e for e in get_resource_events(item, key)[::-1]}
        for event in last_events.values():
            state = get_resource_state(item, key, transaction_id=event.transaction_id)
            expected = "deleted" if event.operation == "delete" else "live"
            assert state.status == expected
            if expected == "live":
                assert {name: new for name, (_, new) in event.fields.items()} == {
                    name: state.values[name] for name in event.fields
                }


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_restore_to_a_commit_then_revert_the_restore(audit, seed):
    """Restoring every key to a past commit gives its table; reverting that restore undoes it."""
    item = declare_item(audit.base)
    audit.create_tables()
    rng = random.Random(seed)
    commits: list[tuple[str, dict[int, dict[str, Any]]]] = []
    for _ in range(12):
        before = last_change_id(audit)
        with audit.Session() as session:
            random_transaction(rng, session, item)
            session.commit()
        after = last_change_id(audit)
        if after != before:
            commits.append((transaction_of(audit, after), snapshot(audit, item)))
    latest = snapshot(audit, item)
    target_transaction, target = commits[rng.randrange(len(commits) - 1)]
    with audit.Session() as session:
        for key in KEYS:
            then = get_resource_state(item, key, session=session, transaction_id=target_transaction)
            if then.status != "absent":
                restore(session, item, key, transaction_id=target_transaction)
            elif session.get(item, key) is not None:
                session.delete(session.get(item, key))
        session.commit()
    assert snapshot(audit, item) == target
    with audit.Session() as session:
        revert_transaction(session, transaction_of(audit, last_change_id(audit)))
        session.commit()
    assert snapshot(audit, item) == latest


FEED_FILTERS: list[tuple[dict[str, Any], Any]] = [
    ({}, lambda row: True),
    ({"filter_user_ids": 2}, lambda row: row.changed_by == "2"),
    ({"filter_fields": "qty"}, lambda row: row.field_name == "qty"),
    ({"filter_operations": "update"}, lambda row: row.operation == "update"),
    (
        {"filter_values": {"name": "bob"}},
        lambda row: row.field_name == "name" and "str:bob" in (row.old_value, row.new_value),
    ),
]


@pytest.mark.parametrize("seed", [7, 8])
def test_feed_pages_match_an_independent_grouping_of_the_raw_rows(audit, seed):
    """Events listed (and paged) by each filter are exactly the raw rows' groups, newest first."""
    item = declare_item(audit.base)
    audit.create_tables()
    rng = random.Random(seed)
    for _ in range(15):
        audit.user = rng.choice([1, 2, 3])
        with audit.Session() as session:
            random_transaction(rng, session, item)
            session.commit()
    raw = audit.rows()
    for filters, matches in FEED_FILTERS:
        heads: dict[tuple[str, str], int] = {}
        for row in raw:
            if matches(row):
                heads[(row.transaction_id, row.resource_id)] = row.id
        expected = sorted(heads, key=lambda key: heads[key], reverse=True)
        listed = [(e.transaction_id, e.resource_id) for e in get_events(models=item, **filters)]
        # A key reused inside one transaction lists as two adjacent events.
        deduplicated = [key for n, key in enumerate(listed) if n == 0 or listed[n - 1] != key]
        assert deduplicated == expected, filters
        assert count_events(models=item, **filters) == len(expected)
        assert count_changes(models=item, **filters) == sum(1 for row in raw if matches(row))
        for size in (1, 2, 3):
            paged: list[Any] = []
            page = get_events(models=item, limit=size, **filters)
            paged.extend(page)
            while page.next_cursor is not None:
                page = get_events(models=item, limit=size, cursor=page.next_cursor, **filters)
                paged.extend(page)
            assert paged == get_events(models=item, **filters).items, (filters, size)
