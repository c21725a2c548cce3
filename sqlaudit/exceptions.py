"""The exceptions and warnings sqlaudit raises.

Every error derives from :class:`SQLAuditError`, so one ``except`` clause catches
them all; errors about a bad value or a bad type also derive from
:class:`ValueError` or :class:`TypeError`, so code written against the built-in
exceptions keeps working::

    SQLAuditError
    ├── SQLAuditConfigError                    any configuration problem (sqlaudit 0.7's name)
    │   ├── ConfigurationError (ValueError)    a config value that cannot work
    │   │   └── InvalidTimeZoneError           an unknown IANA time zone name
    │   ├── ConfigurationTypeError (TypeError) a config argument of the wrong type
    │   └── NotConfiguredError (RuntimeError)  no config set yet
    ├── ContextTypeError (TypeError)           audit_context given a bad user id or metadata
    ├── UserRequiredError (RuntimeError)       require_user is on and no user is known
    ├── TrackingError (ValueError)             @track_table given a bad field or class
    │   └── TriggerTypeError                   a column database capture cannot encode
    ├── UntrackedModelError (ValueError)       a model that is not tracked
    ├── BulkStatementError (ValueError)        a bulk statement whose rows cannot be audited
    ├── UnauditedWriteError (RuntimeError)     a tracked write that cannot commit with its rows
    ├── FilterError (ValueError)               a retrieval filter that cannot match
    │   └── InvalidCursorError                 a page cursor from another query, or altered
    ├── FilterTypeError (TypeError)            a retrieval filter of the wrong type
    ├── HistoryError (ValueError)              a history read or restore that cannot be answered
    │   ├── UnknownTransactionError            a transaction id with no change rows
    │   ├── RestoreError                       a restore that cannot be written
    │   └── RevertConflictError                later or unaudited changes to what is undone
    ├── OperationError (ValueError)            prune, erase, export, verify given bad arguments
    └── RecoveryError (ValueError)             query log, replay or rebuild given bad arguments
        └── ReplayError                        a replayed statement failed (with its position)

    SQLAuditWarning (UserWarning)
    ├── AuditContextWarning                    an audit_context left where it was not entered
    ├── FallbackEncodingWarning                a value stored with the fallback encoding
    ├── HooksNotRegisteredWarning              a tracked change flushed before register_hooks()
    └── TriggerDriftWarning                    installed capture triggers differ from the models

Example:
    >>> from sqlaudit.exceptions import SQLAuditError, FilterError
    >>> issubclass(FilterError, SQLAuditError), issubclass(FilterError, ValueError)
    (True, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
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
    "OperationError",
    "RecoveryError",
    "ReplayError",
    "RestoreError",
    "RevertConflictError",
    "SQLAuditConfigError",
    "SQLAuditError",
    "SQLAuditWarning",
    "TrackingError",
    "TriggerDriftWarning",
    "TriggerTypeError",
    "UnauditedWriteError",
    "UnknownTransactionError",
    "UntrackedModelError",
    "UserRequiredError",
]


class SQLAuditError(Exception):
    """Base class of every error sqlaudit raises.

    Example:
        >>> try:
        ...     raise UntrackedModelError("Invoice is not tracked")
        ... except SQLAuditError as exc:
        ...     print(exc)
        Invoice is not tracked
    """


class SQLAuditConfigError(SQLAuditError):
    """Any configuration problem: a bad value or type, or no configuration at all.

    The name code written for sqlaudit 0.7 catches; :class:`ConfigurationError`,
    :class:`ConfigurationTypeError` and :class:`NotConfiguredError` derive from it.

    Example:
        >>> from sqlaudit.config import clear_config, get_config
        >>> clear_config()
        >>> try:
        ...     get_config()
        ... except SQLAuditConfigError as exc:
        ...     print(type(exc).__name__)
        NotConfiguredError
    """


class ConfigurationError(SQLAuditConfigError, ValueError):
    """A configuration value that cannot work (an unknown attribute, a bad name).

    Example:
        >>> isinstance(ConfigurationError("x"), ValueError)
        True
    """


class InvalidTimeZoneError(ConfigurationError):
    """``time_zone`` is not an IANA time zone name that this system knows.

    Example:
        >>> from sqlaudit.config import SQLAuditConfig
        >>> SQLAuditConfig(session_factory=lambda: None, time_zone="Mars/Olympus")
        Traceback (most recent call last):
        ...
        sqlaudit.exceptions.InvalidTimeZoneError: ...
    """


class ConfigurationTypeError(SQLAuditConfigError, TypeError):
    """A configuration argument of the wrong type (``set_config`` given a dict, say).

    Example:
        >>> isinstance(ConfigurationTypeError("x"), TypeError)
        True
    """


class ContextTypeError(SQLAuditError, TypeError):
    """``audit_context`` given a user id, reason or metadata it cannot store.

    Example:
        >>> from sqlaudit.context import audit_context
        >>> audit_context(user_id=1.5)
        Traceback (most recent call last):
        ...
        sqlaudit.exceptions.ContextTypeError: ...
    """


class UserRequiredError(SQLAuditError, RuntimeError):
    """``require_user=True`` and a tracked change was flushed with no user known.

    Raised by the flush before anything is written, so the change does not commit.

    Example:
        >>> isinstance(UserRequiredError("x"), RuntimeError)
        True
    """


class NotConfiguredError(SQLAuditConfigError, RuntimeError):
    """sqlaudit is used before :func:`sqlaudit.config.set_config` was called.

    Example:
        >>> from sqlaudit.config import clear_config, get_config
        >>> clear_config()
        >>> get_config()
        Traceback (most recent call last):
        ...
        sqlaudit.exceptions.NotConfiguredError: ...
    """


class TrackingError(SQLAuditError, ValueError):
    """``@track_table`` was given a field that is not a column, or a class that is not mapped.

    Example:
        >>> isinstance(TrackingError("x"), ValueError)
        True
    """


class UntrackedModelError(SQLAuditError, ValueError):
    """A model class that was never decorated with ``@track_table``.

    Example:
        >>> isinstance(UntrackedModelError("x"), ValueError)
        True
    """


class BulkStatementError(SQLAuditError, ValueError):
    """A statement on a tracked model whose changes sqlaudit cannot establish.

    Usually raised before the statement runs (an upsert, an ``INSERT ... SELECT``,
    a legacy ``bulk_*`` method), so nothing commits without its audit rows. When
    it is raised after the statement ran (rows another transaction inserted in
    between), the session's transaction can no longer commit: roll it back.

    Example:
        >>> isinstance(BulkStatementError("x"), ValueError)
        True
    """


class UnauditedWriteError(SQLAuditError, RuntimeError):
    """A tracked write that cannot commit together with its change rows.

    Raised before a tracked write on an ``AUTOCOMMIT`` connection (each statement
    would commit on its own, before its change rows exist), and by ``commit()``
    after a statement ran but its change rows could not be written: that
    transaction must be rolled back.

    Example:
        >>> isinstance(UnauditedWriteError("x"), RuntimeError)
        True
    """


class FilterError(SQLAuditError, ValueError):
    """A retrieval filter with a bad value (an untracked field, a reversed date range).

    Example:
        >>> isinstance(FilterError("x"), ValueError)
        True
    """


class FilterTypeError(SQLAuditError, TypeError):
    """A retrieval filter of an unsupported type (a float resource id, say).

    Example:
        >>> isinstance(FilterTypeError("x"), TypeError)
        True
    """


class InvalidCursorError(FilterError):
    """A page cursor that this query did not make: from another query's filters, or altered.

    Example:
        >>> from sqlaudit.history import get_changes
        >>> get_changes(cursor="not-a-cursor")  # doctest: +SKIP
        Traceback (most recent call last):
        ...
        sqlaudit.exceptions.InvalidCursorError: ...
    """


class HistoryError(SQLAuditError, ValueError):
    """A history read or restore that cannot be answered as asked.

    A resource with no recorded history, a moment before it existed, two moments in
    different lives of a reused key, a relationship that is not tracked.

    Example:
        >>> isinstance(HistoryError("x"), ValueError)
        True
    """


class UnknownTransactionError(HistoryError):
    """A transaction id for which no change row was recorded.

    Example:
        >>> from sqlaudit.history import revert_transaction
        >>> revert_transaction(session, "no-such-transaction")  # doctest: +SKIP
        Traceback (most recent call last):
        ...
        sqlaudit.exceptions.UnknownTransactionError: ...
    """


class RestoreError(HistoryError):
    """A restore that cannot be written (a required column the history does not hold).

    Example:
        >>> isinstance(RestoreError("x"), HistoryError)
        True
    """


@dataclass(frozen=True, slots=True)
class Conflict:
    """One field that a revert or restore would overwrite without knowing it.

    Attributes:
        model: The model class name.
        resource_id: The resource id as text.
        field: The field name.
        expected: The value the history gives (what the undo assumes is there).
        actual: The value found instead (in the table, or written by a later transaction).
        transaction_id: The later transaction that changed it, or ``None`` for a write
            that left no change row (an unaudited write).

    Example:
        >>> Conflict("Customer", "1", "name", "Jo", "Joe", None).field
        'name'
    """

    model: str
    resource_id: str
    field: str
    expected: Any
    actual: Any
    transaction_id: str | None

    def __str__(self) -> str:
        by = (
            f"changed again by transaction {self.transaction_id}"
            if self.transaction_id is not None
            else "changed by a write that left no change row"
        )
        return (
            f"{self.model} {self.resource_id}.{self.field}: the history says "
            f"{self.expected!r}, but it is {self.actual!r} ({by})"
        )


class RevertConflictError(HistoryError):
    """A revert or restore would overwrite changes made after, or outside, the history it undoes.

    ``conflicts`` lists each field concerned. Pass ``overwrite=True`` to proceed anyway.

    Example:
        >>> error = RevertConflictError([Conflict("Customer", "1", "name", "Jo", "Joe", "t2")])
        >>> error.conflicts[0].transaction_id
        't2'
    """

    def __init__(self, conflicts: Sequence[Conflict], action: str = "the revert") -> None:
        self.conflicts = list(conflicts)
        lines = "; ".join(str(conflict) for conflict in self.conflicts)
        super().__init__(
            f"{action} would overwrite {len(self.conflicts)} later change(s): {lines}. "
            "Check them, then pass overwrite=True to proceed anyway."
        )


class OperationError(SQLAuditError, ValueError):
    """An operation (prune, erase, export, verify) given arguments it cannot act on.

    Example:
        >>> from sqlaudit.ops import prune
        >>> try:
        ...     prune(before="yesterday")
        ... except OperationError as exc:
        ...     print(type(exc).__name__)
        OperationError
    """


class RecoveryError(SQLAuditError, ValueError):
    """The query log, a replay or a table rebuild given arguments it cannot act on.

    Example:
        >>> from sqlaudit.querylog import log_queries
        >>> try:
        ...     log_queries(of="sqlite://")
        ... except RecoveryError as exc:
        ...     print(type(exc).__name__)
        RecoveryError
    """


class ReplayError(RecoveryError):
    """A statement of the query log failed when replayed; the replay stopped there.

    Attributes:
        entry_id: The log entry (its ``id``) whose statement failed.
        position: Its place (1-based) in the replay order of this call.
        resume_at: The log entry to pass as ``start_at=`` to resume: the first statement
            of the failed statement's transaction, which was rolled back on the target.
        replayed: How many statements committed on the target before the failure.

    Example:
        >>> err = ReplayError("entry 7 failed", entry_id=7, position=3, resume_at=6, replayed=1)
        >>> err.entry_id, err.resume_at
        (7, 6)
    """

    def __init__(
        self,
        message: str,
        *,
        entry_id: int | None = None,
        position: int | None = None,
        resume_at: int | None = None,
        replayed: int = 0,
    ) -> None:
        super().__init__(message)
        self.entry_id = entry_id
        self.position = position
        self.resume_at = resume_at
        self.replayed = replayed


class SQLAuditWarning(UserWarning):
    """Base class of every warning sqlaudit issues.

    Example:
        >>> issubclass(FallbackEncodingWarning, SQLAuditWarning)
        True
    """


class FallbackEncodingWarning(SQLAuditWarning):
    """A value of a type the codec does not know was recorded with its ``repr()``.

    The change is still recorded and the commit goes through; the value reads
    back as that text rather than as the original object.

    Example:
        >>> import warnings
        >>> warnings.simplefilter("error", FallbackEncodingWarning)  # make it loud in tests
    """


class TriggerTypeError(TrackingError):
    """A tracked column whose type database capture cannot encode exactly like Python.

    Raised by :func:`sqlaudit.install_triggers` (and the Alembic operations), naming
    the model, the column and the fix: the change would otherwise be stored
    differently from what session capture records.

    Example:
        >>> issubclass(TriggerTypeError, TrackingError)
        True
    """


class HooksNotRegisteredWarning(SQLAuditWarning):
    """A tracked model was flushed but :func:`sqlaudit.hooks.register_hooks` was never called.

    Nothing is recorded for that flush. Call ``register_hooks()`` once at start-up,
    after ``set_config()``; calling :func:`sqlaudit.hooks.unregister_hooks` on
    purpose silences the warning.

    Example:
        >>> issubclass(HooksNotRegisteredWarning, SQLAuditWarning)
        True
    """


class TriggerDriftWarning(SQLAuditWarning):
    """The installed capture triggers differ from what the tracked models declare.

    Issued by :func:`sqlaudit.register_hooks` at start-up for each problem
    :func:`sqlaudit.check_triggers` finds (a trigger missing, written for other
    fields or column types, a tracked column dropped).

    Example:
        >>> issubclass(TriggerDriftWarning, SQLAuditWarning)
        True
    """


class AuditContextWarning(SQLAuditWarning):
    """An ``audit_context`` was left in another thread or task than it was entered in.

    The changes made in between did not carry its user: the typical cause is a sync
    (``def``) FastAPI dependency, which FastAPI enters and exits in worker threads.
    Declare the dependency ``async def``, or use
    :func:`sqlaudit.context.set_session_context` on the request's Session.

    Example:
        >>> issubclass(AuditContextWarning, SQLAuditWarning)
        True
    """
