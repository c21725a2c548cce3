"""Tamper evidence: anchors that chain digests of the change rows, and their check.

Nothing is added to the write path: change rows stay exactly as session capture
and the database triggers write them. :func:`anchor_changes`, run from time to
time (a cron job, ``sqlaudit verify --anchor``), reads the rows written since the
last anchor in blocks (``block_size`` rows, in id order) and stores, per block, one
row in ``<change table>_anchors``: the ids and a digest of each row (SHA-256 of
every stored column, 128 bits kept), the block's digest, and a chain value,
``SHA-256(previous chain value + block digest)``, so that every anchor depends on
all before it. The last chain value, the *head*, is what to keep outside the
database (a log line, a ticket, another system): with it, a rewrite of the whole
anchors table is detected too.

:func:`verify` reads the anchors and the rows they cover, block by block, and
reports each row edited (its digest differs), deleted (anchored, now missing) or
inserted out of order (an id inside an anchored range that no anchor lists), and
each anchor whose chain does not hold. Rows written after the last anchor are
counted as unanchored, not as problems.

Writers never wait for anchoring and never serialise on a chain: only the anchor
run reads the rows, after they are written. Rows of a transaction still open when
a block is anchored would look inserted later, so blocks end at the newest row
written at least ``settle`` ago (default five minutes).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sqlaudit import _clock
from sqlaudit._schema import CHARSET, UTCDateTime
from sqlaudit.exceptions import OperationError
from sqlaudit.ops._common import check_positive, log_finish, log_start, resolve_target
from sqlaudit.ops._export import EXPORT_FIELDS

__all__ = [
    "GENESIS",
    "AnchorReport",
    "Signer",
    "anchor_changes",
    "block_digest",
    "build_anchors_table",
    "check_key",
    "forget",
    "has_table",
    "load_digests",
    "read_rows",
    "rechain",
    "redigest",
    "signer",
]

GENESIS = "0" * 64
"""The chain value before the first anchor."""

_Id = BigInteger().with_variant(Integer(), "sqlite")
_Hex = String(64).with_variant(mysql.CHAR(64, charset="ascii", collation="ascii_bin"), "mysql")
_Hex = _Hex.with_variant(mysql.CHAR(64, charset="ascii", collation="ascii_bin"), "mariadb")
_Digests = Text().with_variant(mysql.LONGTEXT(charset="ascii", collation="ascii_bin"), "mysql")
_Digests = _Digests.with_variant(mysql.LONGTEXT(charset="ascii", collation="ascii_bin"), "mariadb")

_tables: dict[tuple[str, str | None], Table] = {}


def build_anchors_table(change_table: Table) -> Table:
    """Return the anchors table of ``change_table``: ``<name>_anchors``.

    Example:
        >>> from sqlaudit._schema import build_change_table
        >>> build_anchors_table(build_change_table("sqlaudit_changes", None)).name
        'sqlaudit_changes_anchors'
    """
    key = (change_table.name, change_table.schema)
    table = _tables.get(key)
    if table is None:
        name = f"{change_table.name}_anchors"
        table = Table(
            name,
            MetaData(schema=change_table.schema),
            Column("id", _Id, primary_key=True, autoincrement=True),
            Column("first_id", _Id, nullable=False),
            Column("last_id", _Id, nullable=False),
            Column("row_count", Integer, nullable=False),
            Column("digests", _Digests, nullable=False),
            Column("block_digest", _Hex, nullable=False),
            Column("previous", _Hex, nullable=False),
            Column("chain", _Hex, nullable=False),
            # "" for plain SHA-256; with a key, a fingerprint of it (never the key).
            Column("key_id", String(16), nullable=False),
            Column("created_at", UTCDateTime(), nullable=False),
            # Two anchor runs at once cannot both append after the same anchor.
            UniqueConstraint("previous", name=f"uq_{name}_previous"),
            mysql_charset=CHARSET,
            mariadb_charset=CHARSET,
        )
        _tables[key] = table
    return table


# One encoder for every row: json.dumps() with options builds a new one per call.
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode
_CHANGED_AT = EXPORT_FIELDS.index("changed_at")


def _canonical(row: Row[Any]) -> bytes:
    """Return the bytes a row's digest is taken of: its stored columns as JSON.

    ``row`` holds the columns of ``EXPORT_FIELDS``, in that order (:func:`read_rows`).
    """
    values = list(row)
    values[_CHANGED_AT] = values[_CHANGED_AT].isoformat()
    return _ENCODE(values).encode()


def block_digest(digests: str) -> str:
    return hashlib.sha256(digests.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Signer:
    """How digests and chain values are made: SHA-256, or HMAC-SHA-256 under a key."""

    key: bytes | None = None

    @property
    def key_id(self) -> str:
        """Return ``""`` without a key, else a fingerprint of it (not the key)."""
        if self.key is None:
            return ""
        return hmac.new(self.key, b"sqlaudit anchors", hashlib.sha256).hexdigest()[:16]

    def _digest(self, data: bytes) -> str:
        if self.key is None:
            return hashlib.sha256(data).hexdigest()
        return hmac.new(self.key, data, hashlib.sha256).hexdigest()

    def row(self, row: Row[Any]) -> str:
        """Return the digest of one change row (every stored column), 32 hex digits."""
        return self._digest(_canonical(row))[:32]

    def chain(self, previous: str, block_digest: str) -> str:
        """Return the chain value following ``previous`` for a block."""
        return self._digest(f"{previous}{block_digest}".encode())


def signer(key: bytes | str | None, what: str) -> Signer:
    """Return the :class:`Signer` of ``key``, or raise :class:`OperationError`."""
    if key is None:
        return Signer()
    secret = key.encode() if isinstance(key, str) else key
    if not isinstance(secret, bytes) or len(secret) < 16:
        raise OperationError(
            f"{what}(key=...): pass bytes or str of 16 bytes or more (kept outside the "
            "database, such as os.environ['SQLAUDIT_ANCHOR_KEY']), or None."
        )
    return Signer(secret)


def check_key(connection: Connection, table: Table, key: bytes | str | None, what: str) -> Signer:
    """Return the signer of ``key`` if it is the one the existing anchors were made with.

    Raises:
        OperationError: anchors made with a key and none given, another key, or a key
            given for anchors made without one.
    """
    chosen = signer(key, what)
    anchors = build_anchors_table(table)
    if not has_table(connection, anchors):
        return chosen
    found = connection.execute(select(anchors.c.key_id).limit(1)).scalar()
    if found is None or found == chosen.key_id:
        return chosen
    if found == "":
        raise OperationError(
            f"{what}(key=...): the anchors of {table.name} were made without a key; "
            "pass no key (or anchor a new table with one)."
        )
    if chosen.key is None:
        raise OperationError(
            f"{what}(): the anchors of {table.name} were made with a key; pass the same "
            "key= (the CLI reads SQLAUDIT_ANCHOR_KEY)."
        )
    raise OperationError(
        f"{what}(key=...): this is not the key the anchors of {table.name} were made with."
    )


def _dump(pairs: Iterable[tuple[int, str]]) -> str:
    return json.dumps([[i, d] for i, d in pairs], separators=(",", ":"))


def load_digests(digests: str) -> dict[int, str]:
    return {int(i): str(d) for i, d in json.loads(digests)}


def read_rows(
    connection: Connection, table: Table, low: int, high: int | None, limit: int | None
) -> Sequence[Row[Any]]:
    query = select(*(table.c[name] for name in EXPORT_FIELDS)).where(table.c.id > low)
    if high is not None:
        query = query.where(table.c.id <= high)
    query = query.order_by(table.c.id)
    if limit is not None:
        query = query.limit(limit)
    return connection.execute(query).all()


@dataclass(frozen=True, slots=True)
class AnchorReport:
    """What one :func:`anchor_changes` run anchored.

    Attributes:
        blocks: Anchors written.
        rows: Change rows they cover.
        head: The chain value of the newest anchor (keep it outside the database).

    Example:
        >>> AnchorReport(blocks=1, rows=3, head="ab" * 32).rows
        3
    """

    blocks: int
    rows: int
    head: str


def has_table(connection: Connection, table: Table) -> bool:
    return bool(sa_inspect(connection).has_table(table.name, schema=table.schema))


def _head(connection: Connection, anchors: Table) -> tuple[str, int]:
    last = connection.execute(
        select(anchors.c.chain, anchors.c.last_id).order_by(anchors.c.id.desc()).limit(1)
    ).first()
    return (GENESIS, 0) if last is None else (str(last.chain), int(last.last_id))


def anchor_changes(
    *,
    settle: timedelta = timedelta(minutes=5),
    block_size: int = 1000,
    key: bytes | str | None = None,
    bind: Engine | Connection | Session | None = None,
    table_name: str | None = None,
    table_schema: str | None = None,
    performed_by: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> AnchorReport:
    """Anchor the change rows written since the last anchor, one block per transaction.

    Args:
        settle: Anchor only up to the newest row written at least this long ago, so
            that transactions still open have committed their rows.
        block_size: Rows per anchor.
        key: A secret (16 bytes or more) kept outside the database: digests and chain
            values are then HMAC-SHA-256 under it, which nobody without the key can
            recompute. Every later anchor run, verify, prune and erase needs the same key.
        bind: Engine, Connection or Session whose engine to use; default: the config's.
        table_name: The change table's name when not the config's.
        table_schema: Its schema.
        performed_by: Who runs it, for the operations log.
        progress: Called after each block with the number of rows anchored so far.

    Returns:
        An :class:`AnchorReport` with the new head.

    Raises:
        OperationError: a negative ``settle``, a block size below one, a key other
            than the existing anchors', or another anchor run appending at the same time.

    Example:
        >>> report = anchor_changes(settle=timedelta(minutes=5))  # doctest: +SKIP
        >>> report.head  # doctest: +SKIP
        '5f2c...'
    """
    if not isinstance(settle, timedelta) or settle < timedelta(0):
        raise OperationError(
            f"anchor_changes(settle={settle!r}): pass a timedelta of zero or more, "
            "such as timedelta(minutes=5)."
        )
    size = check_positive(block_size, "block_size", "anchor_changes")
    target = resolve_target(bind, table_name, table_schema, "anchor_changes")
    table = target.table
    anchors = build_anchors_table(table)
    with target.engine.begin() as connection:
        anchors.create(connection, checkfirst=True)
        sign = check_key(connection, table, key, "anchor_changes")
        head, last = _head(connection, anchors)
        upto = connection.execute(
            select(func.max(table.c.id)).where(
                table.c.id > last, table.c.changed_at <= _clock.utc_now() - settle
            )
        ).scalar_one()
    blocks = rows_done = 0
    operation_id: int | None = None
    while upto is not None:
        # The run's start goes in with its first block and its end with its last: a run
        # of one block is one write transaction (on SQLite, one sync of the file).
        with target.engine.begin() as connection:
            if operation_id is None:
                operation_id = log_start(
                    connection, target.operations, "anchor", {"block_size": size}, performed_by
                )
            rows = read_rows(connection, table, last, int(upto), size)
            if rows:
                digests = _dump((row.id, sign.row(row)) for row in rows)
                block = block_digest(digests)
                chain = sign.chain(head, block)
                try:
                    connection.execute(
                        insert(anchors).values(
                            first_id=rows[0].id,
                            last_id=rows[-1].id,
                            row_count=len(rows),
                            digests=digests,
                            block_digest=block,
                            previous=head,
                            chain=chain,
                            key_id=sign.key_id,
                            created_at=_clock.utc_now(),
                        )
                    )
                except IntegrityError as exc:
                    raise OperationError(
                        "anchor_changes(): another anchor run appended to the chain at the "
                        "same time; run one at a time (it is safe to run this one again)."
                    ) from exc
                head, last = chain, int(rows[-1].id)
                blocks += 1
                rows_done += len(rows)
            finished = len(rows) < size or last >= int(upto)
            if finished:
                log_finish(
                    connection,
                    target.operations,
                    operation_id,
                    rows_done,
                    {"blocks": blocks, "head": head},
                )
        if rows and progress is not None:
            progress(rows_done)
        if finished:
            break
    return AnchorReport(blocks, rows_done, head)


def forget(connection: Connection, table: Table, ids: list[int]) -> None:
    """Remove deleted rows from the anchors that list them (their chain is redone by rechain)."""
    if not ids:
        return
    anchors = build_anchors_table(table)
    if not has_table(connection, anchors):
        return
    gone = set(ids)
    for anchor in connection.execute(
        select(anchors.c.id, anchors.c.digests)
        .where(anchors.c.last_id >= min(ids), anchors.c.first_id <= max(ids))
        .order_by(anchors.c.id)
    ):
        kept = {i: d for i, d in load_digests(anchor.digests).items() if i not in gone}
        if not kept:
            connection.execute(delete(anchors).where(anchors.c.id == anchor.id))
            continue
        digests = _dump(sorted(kept.items()))
        connection.execute(
            update(anchors)
            .where(anchors.c.id == anchor.id)
            .values(
                first_id=min(kept),
                last_id=max(kept),
                row_count=len(kept),
                digests=digests,
                block_digest=block_digest(digests),
            )
        )


def redigest(connection: Connection, table: Table, ids: list[int], sign: Signer) -> None:
    """Store the current digests of rows rewritten on purpose (erasure), then rechain."""
    if not ids:
        return
    anchors = build_anchors_table(table)
    if not has_table(connection, anchors):
        return
    wanted = set(ids)
    for anchor in connection.execute(
        select(anchors.c.id, anchors.c.first_id, anchors.c.last_id, anchors.c.digests)
        .where(anchors.c.last_id >= min(ids), anchors.c.first_id <= max(ids))
        .order_by(anchors.c.id)
    ).all():
        listed = load_digests(anchor.digests)
        mine = [i for i in listed if i in wanted]
        if not mine:
            continue
        for row in connection.execute(
            select(*(table.c[name] for name in EXPORT_FIELDS)).where(table.c.id.in_(mine))
        ):
            listed[int(row.id)] = sign.row(row)
        digests = _dump(sorted(listed.items()))
        connection.execute(
            update(anchors)
            .where(anchors.c.id == anchor.id)
            .values(digests=digests, block_digest=block_digest(digests))
        )
    rechain(connection, table, sign)


def rechain(connection: Connection, table: Table, sign: Signer) -> int:
    """Recompute the chain values after blocks changed on purpose; return anchors rewritten.

    Reads only the small columns of each anchor (not the digests).
    """
    anchors = build_anchors_table(table)
    if not has_table(connection, anchors):
        return 0
    previous = GENESIS
    rewritten = 0
    for anchor in connection.execute(
        select(anchors.c.id, anchors.c.block_digest, anchors.c.previous, anchors.c.chain).order_by(
            anchors.c.id
        )
    ).all():
        chain = sign.chain(previous, anchor.block_digest)
        if anchor.previous != previous or anchor.chain != chain:
            connection.execute(
                update(anchors)
                .where(anchors.c.id == anchor.id)
                .values(previous=previous, chain=chain)
            )
            rewritten += 1
        previous = chain
    return rewritten
