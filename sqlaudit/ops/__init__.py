"""Running an audit trail in production: export, retention, erasure and tamper evidence.

Each operation works on the change table of the config set with
:func:`sqlaudit.set_config`, or on any database given as ``bind=`` (an Engine)
with ``table_name=``, which is how the ``sqlaudit`` command line works from a URL
alone::

    from datetime import UTC, datetime, timedelta
    from sqlaudit.ops import (
        anchor_changes, erase, export_changes, install_guard, prune, set_sensitive_fields,
        verify,
    )

    # ship new rows to a warehouse, resuming where the last run stopped
    with open("changes.jsonl", "a") as out:
        report = export_changes(out, after=saved_cursor)
    saved_cursor = report.cursor

    # keep one year, in short batches, while the application writes on
    prune(datetime.now(UTC) - timedelta(days=365), batch_size=5000)

    # a person asks to be forgotten
    erase(session, model=Customer, resource_ids=[2], reason="request 118")
    session.commit()

    # never store an e-mail address in clear, only a keyed digest
    set_sensitive_fields(Customer, {"email": "digest"}, key=AUDIT_KEY)

    # tamper evidence: anchor from a cron job, check whenever
    anchor_changes()
    assert verify().ok

On PostgreSQL the change table can be partitioned by month, so that pruning
drops whole partitions instead of deleting rows::

    create_partitioned_change_table(engine, months_ahead=3)  # before set_config()
    ensure_partitions(months_ahead=3)                         # monthly, from cron

And the database can refuse UPDATE and DELETE of change rows, but for prune and
erase::

    install_guard(engine)

Prune, erase and anchoring are recorded in the operations log,
``<change table>_operations`` (created on first use): what was asked, by whom,
when, and how many rows it touched. Anchors live in ``<change table>_anchors``.
:func:`install_guard` (undone by :func:`drop_guard`, checked by :func:`check_guard`)
makes the change table append-only for everything but :func:`prune` and :func:`erase`.
:data:`ERASED` (``"[erased]"``) is what an erased value reads back as;
:data:`EXPORT_FIELDS` names an exported row's fields, in CSV column order.
Nothing here adds work to the write path: change rows are written exactly as
before, by the flush hooks or by the database triggers.
"""

from sqlaudit.ops._anchors import AnchorReport as AnchorReport
from sqlaudit.ops._anchors import anchor_changes as anchor_changes
from sqlaudit.ops._append_only import check_guard as check_guard
from sqlaudit.ops._append_only import drop_guard as drop_guard
from sqlaudit.ops._append_only import install_guard as install_guard
from sqlaudit.ops._erase import ERASED as ERASED
from sqlaudit.ops._erase import ErasureReport as ErasureReport
from sqlaudit.ops._erase import erase as erase
from sqlaudit.ops._export import EXPORT_FIELDS as EXPORT_FIELDS
from sqlaudit.ops._export import ExportReport as ExportReport
from sqlaudit.ops._export import export_changes as export_changes
from sqlaudit.ops._partitions import Partition as Partition
from sqlaudit.ops._partitions import PartitionReport as PartitionReport
from sqlaudit.ops._partitions import (
    create_partitioned_change_table as create_partitioned_change_table,
)
from sqlaudit.ops._partitions import ensure_partitions as ensure_partitions
from sqlaudit.ops._partitions import list_partitions as list_partitions
from sqlaudit.ops._prune import PruneReport as PruneReport
from sqlaudit.ops._prune import prune as prune
from sqlaudit.ops._sensitive import clear_sensitive_fields as clear_sensitive_fields
from sqlaudit.ops._sensitive import set_sensitive_fields as set_sensitive_fields
from sqlaudit.ops._verify import Problem as Problem
from sqlaudit.ops._verify import VerifyReport as VerifyReport
from sqlaudit.ops._verify import verify as verify

__all__ = [
    "AnchorReport",
    "ErasureReport",
    "ExportReport",
    "Partition",
    "PartitionReport",
    "Problem",
    "PruneReport",
    "VerifyReport",
    "anchor_changes",
    "check_guard",
    "clear_sensitive_fields",
    "create_partitioned_change_table",
    "drop_guard",
    "ensure_partitions",
    "erase",
    "export_changes",
    "install_guard",
    "list_partitions",
    "prune",
    "set_sensitive_fields",
    "verify",
]
