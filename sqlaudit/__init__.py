"""sqlaudit: a field-level audit trail for SQLAlchemy 2.x.

Decorate a model, configure once, register the hooks, and every insert, update
and delete of a tracked field is recorded, in the same transaction, as one row
per changed field::

    from sqlaudit import (
        SQLAuditConfig, get_resource_changes, register_hooks, set_config, track_table,
    )

    set_config(SQLAuditConfig(session_factory=SessionLocal, get_user_id_callback=current_user_id))

    @track_table(tracked_fields=["name", "email"])
    class Customer(Base): ...

    register_hooks()
    ...
    for change in get_resource_changes(model_class=Customer, filter_resource_ids=1):
        print(change.field_name, change.old_value, change.new_value, change.changed_by)

Everything listed in ``__all__`` is importable from here and from its documented
submodule (:mod:`sqlaudit.config`, :mod:`sqlaudit.decorators`,
:mod:`sqlaudit.hooks`, :mod:`sqlaudit.retrieval`, :mod:`sqlaudit.history`,
:mod:`sqlaudit.migration`, :mod:`sqlaudit.triggers`, :mod:`sqlaudit.ops`,
:mod:`sqlaudit.exceptions`).
"""

from sqlaudit.config import SQLAuditConfig as SQLAuditConfig
from sqlaudit.config import clear_config as clear_config
from sqlaudit.config import get_config as get_config
from sqlaudit.config import register_type as register_type
from sqlaudit.config import set_config as set_config
from sqlaudit.config import unregister_type as unregister_type
from sqlaudit.context import AuditContext as AuditContext
from sqlaudit.context import audit_context as audit_context
from sqlaudit.context import clear_session_context as clear_session_context
from sqlaudit.context import current_context as current_context
from sqlaudit.context import disable_auditing as disable_auditing
from sqlaudit.context import set_session_context as set_session_context
from sqlaudit.decorators import track_table as track_table
from sqlaudit.decorators import untrack_table as untrack_table
from sqlaudit.exceptions import AuditContextWarning as AuditContextWarning
from sqlaudit.exceptions import BulkStatementError as BulkStatementError
from sqlaudit.exceptions import ConfigurationError as ConfigurationError
from sqlaudit.exceptions import ConfigurationTypeError as ConfigurationTypeError
from sqlaudit.exceptions import Conflict as Conflict
from sqlaudit.exceptions import ContextTypeError as ContextTypeError
from sqlaudit.exceptions import FallbackEncodingWarning as FallbackEncodingWarning
from sqlaudit.exceptions import FilterError as FilterError
from sqlaudit.exceptions import FilterTypeError as FilterTypeError
from sqlaudit.exceptions import HistoryError as HistoryError
from sqlaudit.exceptions import HooksNotRegisteredWarning as HooksNotRegisteredWarning
from sqlaudit.exceptions import InvalidCursorError as InvalidCursorError
from sqlaudit.exceptions import InvalidTimeZoneError as InvalidTimeZoneError
from sqlaudit.exceptions import NotConfiguredError as NotConfiguredError
from sqlaudit.exceptions import OperationError as OperationError
from sqlaudit.exceptions import RestoreError as RestoreError
from sqlaudit.exceptions import RevertConflictError as RevertConflictError
from sqlaudit.exceptions import SQLAuditError as SQLAuditError
from sqlaudit.exceptions import SQLAuditWarning as SQLAuditWarning
from sqlaudit.exceptions import TrackingError as TrackingError
from sqlaudit.exceptions import TriggerDriftWarning as TriggerDriftWarning
from sqlaudit.exceptions import TriggerTypeError as TriggerTypeError
from sqlaudit.exceptions import UnauditedWriteError as UnauditedWriteError
from sqlaudit.exceptions import UnknownTransactionError as UnknownTransactionError
from sqlaudit.exceptions import UntrackedModelError as UntrackedModelError
from sqlaudit.exceptions import UserRequiredError as UserRequiredError
from sqlaudit.history import Page as Page
from sqlaudit.history import ResourceEvent as ResourceEvent
from sqlaudit.history import ResourceState as ResourceState
from sqlaudit.history import count_changes as count_changes
from sqlaudit.history import count_events as count_events
from sqlaudit.history import diff_resource as diff_resource
from sqlaudit.history import get_aggregate_events as get_aggregate_events
from sqlaudit.history import get_changes as get_changes
from sqlaudit.history import get_events as get_events
from sqlaudit.history import get_related_states as get_related_states
from sqlaudit.history import get_resource_events as get_resource_events
from sqlaudit.history import get_resource_state as get_resource_state
from sqlaudit.history import record_baseline as record_baseline
from sqlaudit.history import restore as restore
from sqlaudit.history import revert_transaction as revert_transaction
from sqlaudit.hooks import register_hooks as register_hooks
from sqlaudit.hooks import unregister_hooks as unregister_hooks
from sqlaudit.migration import upgrade_change_table as upgrade_change_table
from sqlaudit.ops import anchor_changes as anchor_changes
from sqlaudit.ops import check_guard as check_guard
from sqlaudit.ops import drop_guard as drop_guard
from sqlaudit.ops import erase as erase
from sqlaudit.ops import export_changes as export_changes
from sqlaudit.ops import install_guard as install_guard
from sqlaudit.ops import prune as prune
from sqlaudit.ops import verify as verify
from sqlaudit.retrieval import Operation as Operation
from sqlaudit.retrieval import ResourceChange as ResourceChange
from sqlaudit.retrieval import TruncatedValue as TruncatedValue
from sqlaudit.retrieval import get_resource_changes as get_resource_changes
from sqlaudit.retrieval import get_transaction_changes as get_transaction_changes
from sqlaudit.triggers import TriggerProblem as TriggerProblem
from sqlaudit.triggers import check_triggers as check_triggers
from sqlaudit.triggers import drop_triggers as drop_triggers
from sqlaudit.triggers import install_triggers as install_triggers
from sqlaudit.triggers import trigger_sql as trigger_sql

__version__ = "1.0.0a1"

__all__ = [
    "AuditContext",
    "AuditContextWarning",
    "BulkStatementError",
    "ConfigurationError",
    "ConfigurationTypeError",
    "Conflict",
    "ContextTypeError",
    "FallbackEncodingWarning",
    "FilterError",
    "FilterTypeError",
    "HistoryError",
    "HooksNotRegisteredWarning",
    "InvalidCursorError",
    "InvalidTimeZoneError",
    "NotConfiguredError",
    "Operation",
    "OperationError",
    "Page",
    "ResourceChange",
    "ResourceEvent",
    "ResourceState",
    "RestoreError",
    "RevertConflictError",
    "SQLAuditConfig",
    "SQLAuditError",
    "SQLAuditWarning",
    "TrackingError",
    "TriggerDriftWarning",
    "TriggerProblem",
    "TriggerTypeError",
    "TruncatedValue",
    "UnauditedWriteError",
    "UnknownTransactionError",
    "UntrackedModelError",
    "UserRequiredError",
    "anchor_changes",
    "audit_context",
    "check_guard",
    "check_triggers",
    "clear_config",
    "clear_session_context",
    "count_changes",
    "count_events",
    "current_context",
    "diff_resource",
    "disable_auditing",
    "drop_guard",
    "drop_triggers",
    "erase",
    "export_changes",
    "get_aggregate_events",
    "get_changes",
    "get_config",
    "get_events",
    "get_related_states",
    "get_resource_changes",
    "get_resource_events",
    "get_resource_state",
    "get_transaction_changes",
    "install_guard",
    "install_triggers",
    "prune",
    "record_baseline",
    "register_hooks",
    "register_type",
    "restore",
    "revert_transaction",
    "set_config",
    "set_session_context",
    "track_table",
    "trigger_sql",
    "unregister_hooks",
    "unregister_type",
    "untrack_table",
    "upgrade_change_table",
    "verify",
]
