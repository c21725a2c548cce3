"""Verification: every anchored change row checked against its anchor, and the chain."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from sqlaudit.ops._anchors import (
    GENESIS,
    block_digest,
    build_anchors_table,
    check_key,
    has_table,
    load_digests,
    read_rows,
    signer,
)
from sqlaudit.ops._common import check_positive, resolve_target

__all__ = ["Problem", "VerifyReport", "verify"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing :func:`verify` found wrong.

    Attributes:
        kind: ``"edited"``, ``"deleted"``, ``"inserted"`` (an id inside an anchored
            range that no anchor lists) or ``"anchor"`` (an anchor whose chain or
            digest does not hold).
        change_id: The change row concerned (``None`` for an anchor problem).
        anchor_id: The anchor whose block it is in.
        message: What was found, in a sentence.

    Example:
        >>> Problem("edited", 42, 1, "change row 42 was edited after anchor 1").kind
        'edited'
    """

    kind: str
    change_id: int | None
    anchor_id: int | None
    message: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What :func:`verify` checked and found.

    Attributes:
        ok: ``True`` when no problem was found.
        problems: Each row edited, deleted or inserted out of order, and each broken anchor.
        anchors_checked: Anchors read.
        rows_checked: Change rows compared with their anchors.
        unanchored_rows: Rows written after the last anchor (not checked).
        head: The newest anchor's chain value: compare it with the one kept elsewhere.

    Example:
        >>> report = VerifyReport(ok=True, problems=[], anchors_checked=0, rows_checked=0,
        ...                       unanchored_rows=5, head=GENESIS)
        >>> report.ok
        True
    """

    ok: bool
    problems: list[Problem] = field(default_factory=list)
    anchors_checked: int = 0
    rows_checked: int = 0
    unanchored_rows: int = 0
    head: str = GENESIS


def verify(
    *,
    expected_head: str | None = None,
    key: bytes | str | None = None,
    bind: Engine | Connection | Session | None = None,
    table_name: str | None = None,
    table_schema: str | None = None,
    max_problems: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Check every anchored change row against its anchor, and the anchors' chain.

    Reads one anchor and its rows at a time (memory stays that of one block).

    Args:
        expected_head: A head kept outside the database: a problem is reported when
            it is neither the newest anchor's chain value nor an earlier one.
        key: The key the anchors were made with (:func:`anchor_changes`), if any.
        bind: Engine, Connection or Session whose engine to use; default: the config's.
        table_name: The change table's name when not the config's.
        table_schema: Its schema.
        max_problems: Stop listing problems after this many (``ok`` stays ``False``).
        progress: Called after each anchor with the number of rows checked so far.

    Returns:
        A :class:`VerifyReport`; ``report.ok`` is ``True`` when nothing was found.

    Raises:
        OperationError: ``max_problems`` below one; no key, or another key, for anchors
            made with one; a key for anchors made without one.

    Example:
        >>> report = verify()  # doctest: +SKIP
        >>> report.ok, [p.message for p in report.problems]  # doctest: +SKIP
        (False, ['change row 42 was edited after anchor 1 was written'])
    """
    limit = check_positive(max_problems, "max_problems", "verify")
    signer(key, "verify")
    target = resolve_target(bind, table_name, table_schema, "verify")
    table = target.table
    anchors = build_anchors_table(table)
    problems: list[Problem] = []

    def report(problem: Problem) -> None:
        if len(problems) < limit:
            problems.append(problem)

    checked = count = 0
    previous = GENESIS
    last = 0
    seen_heads = {GENESIS}
    with target.engine.connect() as connection:
        if not has_table(connection, anchors):
            counted = connection.execute(select(func.count()).select_from(table))
            unanchored = int(counted.scalar_one())
            ok = expected_head in (None, GENESIS)
            if not ok:
                report(Problem("anchor", None, None, "no anchors, but an expected head was given"))
            return VerifyReport(ok, problems, 0, 0, unanchored, GENESIS)
        sign = check_key(connection, table, key, "verify")
        anchor_ids = list(connection.execute(select(anchors.c.id).order_by(anchors.c.id)).scalars())
    for anchor_id in anchor_ids:
        with target.engine.connect() as connection:
            anchor = connection.execute(select(anchors).where(anchors.c.id == anchor_id)).one()
            rows = read_rows(connection, table, last, int(anchor.last_id), None)
        count += 1
        if anchor.previous != previous:
            report(
                Problem(
                    "anchor",
                    None,
                    anchor.id,
                    f"anchor {anchor.id} does not follow the anchor before it (an anchor "
                    "was removed, or the chain rewritten)",
                )
            )
        if block_digest(anchor.digests) != anchor.block_digest or anchor.chain != sign.chain(
            anchor.previous, anchor.block_digest
        ):
            report(
                Problem(
                    "anchor",
                    None,
                    anchor.id,
                    f"anchor {anchor.id} was altered: its digests do not give its chain value",
                )
            )
        listed = load_digests(anchor.digests)
        for row in rows:
            digest = listed.pop(int(row.id), None)
            if digest is None:
                report(
                    Problem(
                        "inserted",
                        row.id,
                        anchor.id,
                        f"change row {row.id} is inside the range of anchor {anchor.id} "
                        "but was not there when it was written (inserted out of order)",
                    )
                )
            elif digest != sign.row(row):
                report(
                    Problem(
                        "edited",
                        row.id,
                        anchor.id,
                        f"change row {row.id} ({row.table_name} {row.resource_id} "
                        f"{row.field_name}) was edited after anchor {anchor.id} was written",
                    )
                )
        for missing in sorted(listed):
            report(
                Problem(
                    "deleted",
                    missing,
                    anchor.id,
                    f"change row {missing} was deleted after anchor {anchor.id} was "
                    "written (and not by prune)",
                )
            )
        checked += len(rows)
        previous = str(anchor.chain)
        seen_heads.add(previous)
        last = int(anchor.last_id)
        if progress is not None:
            progress(checked)
    with target.engine.connect() as connection:
        unanchored = int(
            connection.execute(
                select(func.count()).select_from(table).where(table.c.id > last)
            ).scalar_one()
        )
    if expected_head is not None and expected_head not in seen_heads:
        report(
            Problem(
                "anchor",
                None,
                None,
                f"the expected head {expected_head} is not in the chain: the anchors "
                "were rewritten since it was taken (or it was taken elsewhere)",
            )
        )
    ok = not problems
    return VerifyReport(ok, problems, count, checked, unanchored, previous)
