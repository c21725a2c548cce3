"""What keeps a tracked write from committing without its change rows.

Three guards, used by the flush hooks and the bulk-statement hook:

- :func:`refuse_autocommit`: a tracked write on an ``AUTOCOMMIT`` connection is
  refused before it runs (each statement would commit alone, before its change
  rows are written, and a failed change-row INSERT would leave it unaudited);
- :func:`poison`: when anything fails after a tracked statement ran (its change
  rows could not be read or written), the session's transaction is marked, and
  ``commit()`` raises :class:`~sqlaudit.exceptions.UnauditedWriteError` until it
  is rolled back: catching the error and committing cannot keep the change;
- the legacy ``Session.bulk_*`` methods, which bypass every session event, are
  refused on tracked models with the modern statement to use instead
  (:func:`install_legacy_guards`, undone by :func:`remove_legacy_guards`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, SessionTransaction

from sqlaudit import _dbcontext, _registry
from sqlaudit.context import auditing_disabled
from sqlaudit.exceptions import BulkStatementError, UnauditedWriteError

__all__ = [
    "after_soft_rollback",
    "after_transaction_end",
    "before_commit",
    "install_legacy_guards",
    "is_autocommit",
    "poison",
    "refuse_autocommit",
    "remove_legacy_guards",
]

_POISON_KEY = "sqlaudit.poisoned"


def is_autocommit(connection: Connection, execution_options: Mapping[str, Any]) -> bool:
    """Tell whether statements on ``connection`` commit one by one (``AUTOCOMMIT``).

    The level may be set on the engine (``create_engine(isolation_level=...)``), on
    the connection or the statement (``execution_options``). SQLAlchemy answers the
    first two only through ``Connection._is_autocommit_isolation()``, read here and
    nowhere else (tests/test_fail_closed.py breaks if it goes away).
    """
    if execution_options.get("isolation_level") == "AUTOCOMMIT":
        return True
    return bool(connection._is_autocommit_isolation())


def refuse_autocommit(
    connection: Connection, execution_options: Mapping[str, Any], models: Iterable[type[Any]]
) -> None:
    """Refuse a tracked write on an ``AUTOCOMMIT`` connection, before it runs.

    Raises:
        UnauditedWriteError: the connection commits each statement on its own.
    """
    if is_autocommit(connection, execution_options):
        names = ", ".join(sorted(model.__name__ for model in models))
        raise UnauditedWriteError(
            f"A write to {names} (tracked) was sent on an AUTOCOMMIT connection, where it "
            "would commit before its change rows are written. Run tracked writes in a "
            "transaction: a session on an engine without isolation_level='AUTOCOMMIT', "
            "or session.connection(execution_options={'isolation_level': "
            "'READ COMMITTED'}) before the first write."
        )


@dataclass(slots=True)
class _Mark:
    """A session transaction holding a change whose rows were not written."""

    transaction: SessionTransaction  # innermost when the statement ran; moves outwards
    scope: Any  # the connection's innermost transaction then (Core)
    reason: str
    moved_from: SessionTransaction | None = None


def poison(
    session: Session, connection: Connection | None, error: BaseException, what: str
) -> None:
    """Keep the change of a statement that ran unaudited from committing.

    The session transaction the statement ran in (a savepoint, or the root) is
    marked. Rolling that savepoint back clears the mark; releasing it moves the
    mark to the enclosing transaction; ``commit()`` raises while a mark is held;
    and a root transaction that ends without a rollback (``close()`` of a session
    joined to a connection's own transaction) rolls that connection transaction
    back, so the change cannot be committed from outside either.
    """
    current = session.get_nested_transaction() or session.get_transaction()
    if current is None:
        return
    scope = None
    if connection is not None:
        scope = connection.get_nested_transaction() or connection.get_transaction()
    reason = f"{what}: {type(error).__name__}: {error}"
    session.info.setdefault(_POISON_KEY, []).append(_Mark(current, scope, reason))


def _marks(session: Session) -> list[_Mark]:
    marks: list[_Mark] = session.info.get(_POISON_KEY) or []
    return marks


def before_commit(session: Session) -> None:
    """Refuse to commit while a change is marked (a ``before_commit`` listener)."""
    marks = _marks(session)
    if marks:
        raise UnauditedWriteError(
            f"This transaction cannot commit: {marks[0].reason}. The change ran but its "
            "change rows could not be written. Call session.rollback() (or roll back the "
            "savepoint it ran in), then retry the work."
        )


def after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    """Move marks outwards, or end them with their root (an ``after_transaction_end`` listener)."""
    marks = _marks(session)
    for mark in [mark for mark in marks if mark.transaction is transaction]:
        parent = transaction.parent
        if parent is not None:
            # Released or rolled back: after_soft_rollback, which follows, tells.
            mark.transaction, mark.moved_from = parent, transaction
            continue
        marks.remove(mark)
        scope = mark.scope
        if scope is not None and scope.is_active:
            # Ended without a rollback (close() of a session joined to a connection's
            # own transaction): roll that back, so the change cannot commit from outside.
            with contextlib.suppress(Exception):  # a broken connection commits nothing
                scope.rollback()


def after_soft_rollback(session: Session, previous: SessionTransaction) -> None:
    """Clear the marks of changes the rolled-back transaction held."""
    marks = _marks(session)
    marks[:] = [
        mark
        for mark in marks
        if mark.moved_from is not previous and mark.transaction is not previous
    ]


_LEGACY: dict[str, str] = {
    "bulk_save_objects": "session.add_all(objects)",
    "bulk_insert_mappings": "session.execute(insert({model}), mappings)",
    "bulk_update_mappings": "session.execute(update({model}), mappings)",
}
_originals: dict[str, Callable[..., Any]] = {}


def _tracked_classes(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[type[Any]]:
    if name == "bulk_save_objects":
        objects = kwargs.get("objects", args[0] if args else ())
        classes = {type(obj) for obj in objects}
    else:
        target = kwargs.get("mapper", args[0] if args else None)
        # A class's mappings may reach rows of its subclasses (single-table inheritance).
        mappers = sa_inspect(target).self_and_descendants if target is not None else []
        classes = {mapper.class_ for mapper in mappers}
    return [cls for cls in classes if _registry.in_session(cls) is not None]


def _guarded(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def method(self: Session, *args: Any, **kwargs: Any) -> Any:
        if not auditing_disabled():
            tracked = _tracked_classes(name, args, kwargs)
            if tracked:
                model = tracked[0].__name__
                raise BulkStatementError(
                    f"Session.{name}() bypasses every session event, so its changes to "
                    f"{model} (tracked) would commit unaudited. Use "
                    f"{_LEGACY[name].format(model=model)} instead, which sqlaudit audits."
                )
            _prepare_triggers(self, name, args, kwargs)
        return original(self, *args, **kwargs)

    return method


def _prepare_triggers(
    session: Session, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Hand database triggers the context of a legacy bulk write to database-captured models."""
    if not _registry.database_capture_in_use():
        return
    if name == "bulk_save_objects":
        classes = {type(obj) for obj in kwargs.get("objects", args[0] if args else ())}
    else:
        target = kwargs.get("mapper", args[0] if args else None)
        classes = {target} if isinstance(target, type) else set()
    captured = [t for cls in classes if (t := _registry.in_database(cls)) is not None]
    _dbcontext.prepare_for(session, {sa_inspect(t.model): t for t in captured})


def install_legacy_guards() -> None:
    """Make the legacy ``Session.bulk_*`` methods refuse tracked models (idempotent)."""
    for name in _LEGACY:
        if name not in _originals:
            _originals[name] = getattr(Session, name)
            setattr(Session, name, _guarded(name, _originals[name]))


def remove_legacy_guards() -> None:
    """Give ``Session`` its own ``bulk_*`` methods back (undoes :func:`install_legacy_guards`)."""
    for name, original in list(_originals.items()):
        setattr(Session, name, original)
        del _originals[name]
