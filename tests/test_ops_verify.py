"""anchor_changes and verify: edits, deletions, out-of-order inserts, broken anchors, re-anchoring."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from ops_support import OLD, add_rows, declare_customer
from sqlalchemy import delete, event, insert, select, update

from sqlaudit import OperationError, anchor_changes, erase, prune, verify
from sqlaudit.ops._anchors import Signer, build_anchors_table, redigest
from sqlaudit.ops._common import build_operations_table

NOW = timedelta(0)


def _ids(audit) -> list[int]:
    table = audit.config.table
    with audit.engine.connect() as connection:
        return list(connection.execute(select(table.c.id).order_by(table.c.id)).scalars())


def test_verify_passes_on_untouched_anchored_rows_and_counts_the_rest(audit):
    """Anchored, unchanged rows verify; rows written after the anchor are only counted."""
    add_rows(audit.engine, audit.config, 25)
    report = anchor_changes(settle=NOW, block_size=10)
    assert (report.blocks, report.rows) == (3, 25)
    add_rows(audit.engine, audit.config, 4, start=100)
    result = verify()
    assert result.ok and result.problems == []
    assert (result.anchors_checked, result.rows_checked, result.unanchored_rows) == (3, 25, 4)
    assert result.head == report.head
    again = anchor_changes(settle=NOW, block_size=10)
    assert (again.blocks, again.rows) == (1, 4)
    assert verify(expected_head=report.head).ok


def test_rows_newer_than_settle_wait_for_the_next_anchor(audit):
    """Rows written less than ``settle`` ago are not anchored yet."""
    add_rows(audit.engine, audit.config, 3)
    add_rows(audit.engine, audit.config, 2, at=datetime.now(UTC), start=10)
    assert anchor_changes(settle=timedelta(hours=1)).rows == 3
    assert verify().unanchored_rows == 2


def test_verify_reports_an_edited_row_and_where(audit):
    """A value changed by hand after anchoring is reported with the row's id."""
    add_rows(audit.engine, audit.config, 12)
    anchor_changes(settle=NOW, block_size=5)
    target = _ids(audit)[7]
    table = audit.config.table
    with audit.engine.begin() as connection:
        connection.execute(update(table).where(table.c.id == target).values(new_value="str:x"))
    result = verify()
    assert not result.ok
    assert [(p.kind, p.change_id) for p in result.problems] == [("edited", target)]
    assert f"change row {target}" in result.problems[0].message


def test_verify_reports_a_deleted_row(audit):
    """A row deleted by hand (not by prune) after anchoring is reported."""
    add_rows(audit.engine, audit.config, 6)
    anchor_changes(settle=NOW)
    target = _ids(audit)[2]
    table = audit.config.table
    with audit.engine.begin() as connection:
        connection.execute(delete(table).where(table.c.id == target))
    assert [(p.kind, p.change_id) for p in verify().problems] == [("deleted", target)]


def test_verify_reports_a_row_inserted_inside_an_anchored_range(audit):
    """A row given an id inside an anchored range, after anchoring, is out of order."""
    add_rows(audit.engine, audit.config, 6)
    table = audit.config.table
    ids = _ids(audit)
    with audit.engine.begin() as connection:
        row = connection.execute(select(table).where(table.c.id == ids[3])).one()
        connection.execute(delete(table).where(table.c.id == ids[3]))
    anchor_changes(settle=NOW)
    values = {k: v for k, v in row._mapping.items() if k not in ("resource_key", "changed_by_key")}
    with audit.engine.begin() as connection:
        connection.execute(insert(table).values(**values))
    assert [(p.kind, p.change_id) for p in verify().problems] == [("inserted", ids[3])]


def test_verify_reports_an_altered_or_removed_anchor(audit):
    """Anchors whose digests were rewritten, or that were removed, break the chain."""
    add_rows(audit.engine, audit.config, 9)
    anchor_changes(settle=NOW, block_size=3)
    anchors = build_anchors_table(audit.config.table)
    with audit.engine.begin() as connection:
        first = connection.execute(select(anchors.c.id).order_by(anchors.c.id)).scalars().first()
        connection.execute(
            update(anchors).where(anchors.c.id == first).values(digests="[]", row_count=0)
        )
    kinds = {(p.kind, p.anchor_id) for p in verify().problems}
    assert ("anchor", first) in kinds
    with audit.engine.begin() as connection:
        connection.execute(delete(anchors).where(anchors.c.id == first + 1))
    assert ("anchor", first + 2) in {(p.kind, p.anchor_id) for p in verify().problems}


def test_an_expected_head_not_in_the_chain_is_reported(audit):
    """A head kept elsewhere that the chain does not contain means the anchors were rewritten."""
    add_rows(audit.engine, audit.config, 3)
    anchor_changes(settle=NOW)
    result = verify(expected_head="f" * 64)
    assert not result.ok and "expected head" in result.problems[0].message


def test_prune_and_erase_reanchor_so_the_log_stays_verifiable(audit):
    """After pruning and erasing anchored rows, verify still passes."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    add_rows(audit.engine, audit.config, 30)
    with audit.Session() as session:
        session.add(customer(id=500, name="Jane", email="jane@example.com"))
        session.commit()
    anchor_changes(settle=NOW, block_size=7)
    pruned = prune(OLD + timedelta(seconds=12), batch_size=5)
    assert pruned.rows_deleted == 12
    assert verify().ok
    with audit.Session() as session:
        erase(session, model=customer, resource_ids=[500])
        session.commit()
    result = verify()
    assert result.ok, result.problems
    assert result.rows_checked == 30 - 12 + 2


def test_without_anchors_verify_has_nothing_to_check(audit):
    """Before any anchor, verify passes and counts every row as unanchored."""
    add_rows(audit.engine, audit.config, 2)
    result = verify()
    assert result.ok and (result.anchors_checked, result.unanchored_rows) == (0, 2)


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: anchor_changes(settle=-timedelta(seconds=1)), "zero or more"),
        (lambda: anchor_changes(block_size=0), "block_size=0"),
        (lambda: verify(max_problems=0), "max_problems=0"),
    ],
)
def test_anchor_and_verify_refuse_bad_arguments(audit, call, words):
    """Bad arguments raise OperationError naming the argument."""
    with pytest.raises(OperationError, match=words):
        call()


class TestDatabaseCapture:
    """Rows written by the database triggers are anchored and verified like any other."""

    @pytest.fixture(params=["session", "database"])
    def capture(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    def test_rows_from_either_capture_mode_verify_and_edits_are_found(self, audit):
        """Anchoring covers rows whoever wrote them; an edit of one is reported."""
        customer = declare_customer(audit.base)
        audit.create_tables()
        with audit.Session() as session:
            session.add_all([customer(id=n, name=f"c{n}", email=None) for n in range(1, 6)])
            session.commit()
            session.get(customer, 3).name = "changed"
            session.commit()
        assert anchor_changes(settle=NOW).rows == 6
        assert verify().ok
        table = audit.config.table
        target = _ids(audit)[-1]
        with audit.engine.begin() as connection:
            connection.execute(update(table).where(table.c.id == target).values(changed_by="x"))
        assert [(p.kind, p.change_id) for p in verify().problems] == [("edited", target)]


KEY = "a key of more than sixteen bytes"


def test_keyed_anchors_verify_only_with_their_key(audit):
    """Anchors made with a key verify with it; no key, another key or a stray key is refused."""
    add_rows(audit.engine, audit.config, 5)
    anchor_changes(settle=NOW, key=KEY)
    assert verify(key=KEY).ok
    with pytest.raises(OperationError, match="made with a key; pass the same key="):
        verify()
    with pytest.raises(OperationError, match="not the key"):
        verify(key="another key of sixteen bytes")
    with pytest.raises(OperationError, match="made with a key"):
        anchor_changes(settle=NOW)
    with pytest.raises(OperationError, match="16 bytes or more"):
        verify(key="short")


def test_unkeyed_anchors_refuse_a_key(audit):
    """A key given for anchors made without one is refused, not silently ignored."""
    add_rows(audit.engine, audit.config, 2)
    anchor_changes(settle=NOW)
    with pytest.raises(OperationError, match="made without a key"):
        verify(key=KEY)


def test_an_edit_re_anchored_without_the_key_is_still_found(audit):
    """Someone without the key who edits a row and recomputes its anchor is still caught."""
    add_rows(audit.engine, audit.config, 6)
    anchor_changes(settle=NOW, key=KEY)
    target = _ids(audit)[1]
    table = audit.config.table
    with audit.engine.begin() as connection:
        connection.execute(update(table).where(table.c.id == target).values(new_value="str:x"))
        # what the code would do without the key: plain SHA-256 digests and chain
        redigest(connection, table, [target], Signer())
    kinds = {(p.kind, p.change_id) for p in verify(key=KEY).problems}
    assert ("edited", target) in kinds and any(kind == "anchor" for kind, _ in kinds)


def test_prune_and_erase_of_keyed_anchors_need_the_key(audit):
    """Without the anchors' key prune deletes nothing and erase rewrites nothing; with it both re-anchor."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    add_rows(audit.engine, audit.config, 10)
    with audit.Session() as session:
        session.add(customer(id=500, name="Jane"))
        session.commit()
    anchor_changes(settle=NOW, key=KEY, block_size=4)
    with pytest.raises(OperationError, match="pass the same key="):
        prune(OLD + timedelta(seconds=5))
    assert len(_ids(audit)) == 11
    assert prune(OLD + timedelta(seconds=5), anchor_key=KEY).rows_deleted == 5
    with audit.Session() as session:
        with pytest.raises(OperationError, match="pass the same key="):
            erase(session, model=customer, resource_ids=500)
        session.rollback()
        erase(session, model=customer, resource_ids=500, anchor_key=KEY)
        session.commit()
    result = verify(key=KEY)
    assert result.ok, result.problems


def test_a_row_digest_is_sha256_of_its_columns_as_compact_json(audit):
    """The documented digest: SHA-256 of [id, columns...] as compact sorted-key JSON, 128 bits.

    Anchors made by one release must verify under the next, so the bytes digested are
    pinned here, rebuilt from the row as read back, independently of the library.
    """
    import hashlib
    import json

    from sqlaudit._schema import CHANGE_COLUMNS

    add_rows(audit.engine, audit.config, 3)
    anchor_changes(settle=NOW)
    table = audit.config.table
    anchors = build_anchors_table(table)
    with audit.engine.connect() as connection:
        rows = connection.execute(select(table).order_by(table.c.id)).all()
        listed = dict(json.loads(connection.execute(select(anchors.c.digests)).scalar_one()))
    assert len(rows) == len(listed) == 3
    for row in rows:
        values = [row.id, *(row._mapping[name] for name in CHANGE_COLUMNS)]
        values[1 + CHANGE_COLUMNS.index("changed_at")] = row.changed_at.isoformat()
        data = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
        assert listed[row.id] == hashlib.sha256(data.encode()).hexdigest()[:32]


@contextmanager
def _write_transactions(engine):
    """Count the committed transactions on ``engine`` that wrote (a list, filled as they commit)."""
    counted: list[int] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
            conn.info["wrote"] = True

    def committed(conn):
        if conn.info.pop("wrote", False):
            counted.append(1)

    def rolled_back(conn):
        conn.info.pop("wrote", None)

    listeners = [("before_cursor_execute", seen), ("commit", committed), ("rollback", rolled_back)]
    for name, listener in listeners:
        event.listen(engine, name, listener)
    try:
        yield counted
    finally:
        for name, listener in listeners:
            event.remove(engine, name, listener)


@pytest.mark.parametrize(("rows", "block_size", "blocks"), [(5, 100, 1), (9, 3, 3), (10, 3, 4)])
def test_an_anchor_run_writes_one_transaction_per_block(audit, rows, block_size, blocks):
    """The run's start and end go in with its first and last block: one write per block."""
    add_rows(audit.engine, audit.config, rows)
    with _write_transactions(audit.engine) as counted:
        report = anchor_changes(settle=NOW, block_size=block_size)
        assert (report.blocks, report.rows) == (blocks, rows)
        assert len(counted) == blocks
    log = build_operations_table(audit.config.table)
    with audit.engine.connect() as connection:
        [entry] = connection.execute(log.select().where(log.c.operation == "anchor")).all()
    assert entry.status == "done" and entry.rows_affected == rows
    assert entry.detail["blocks"] == blocks and entry.detail["head"] == report.head
    assert verify().ok
