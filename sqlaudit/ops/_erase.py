"""Erasure: remove a person's values from history, leaving a marker and a logged event."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, case, select, update
from sqlalchemy.orm import Session

from sqlaudit import _registry
from sqlaudit.config import get_config, has_config
from sqlaudit.context import _Unset, effective_context
from sqlaudit.exceptions import OperationError
from sqlaudit.ops import _anchors
from sqlaudit.ops._append_only import maintenance
from sqlaudit.ops._common import log_finish, log_start, resolve_target
from sqlaudit.retrieval import _as_list, _id_text, _matching, _resource_ids

__all__ = ["ERASED", "ErasureReport", "erase"]

ERASED = "[erased]"
"""What an erased value or user reads back as (a plain text with no type tag)."""


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """What one :func:`erase` call rewrote.

    Attributes:
        rows_erased: Change rows rewritten.
        operation_id: The erasure's row in the operations log.

    Example:
        >>> ErasureReport(rows_erased=4, operation_id=9).rows_erased
        4
    """

    rows_erased: int
    operation_id: int


def _performed_by(session: Session) -> str | None:
    context = effective_context(session)
    if not isinstance(context.user_id, _Unset):
        return context.user_id
    if has_config():
        user = get_config().current_user_id()
        return None if user is None else str(user)
    return None


def erase(
    session: Session,
    *,
    model: type[Any] | None = None,
    resource_ids: Any = None,
    user_id: Any = None,
    fields: str | Iterable[str] | None = None,
    reason: str | None = None,
    anchor_key: bytes | str | None = None,
) -> ErasureReport:
    """Replace a person's values in the change history with :data:`ERASED`.

    Two ways to name the person, together or apart:

    * ``model`` and ``resource_ids``: the old and new values of those resources'
      change rows (every field, or only ``fields``) become ``"[erased]"``; a value
      that was no value (``NULL``) stays so. The rows themselves stay: history still
      shows that a field changed, when and by whom, but no longer what it held.
    * ``user_id``: the person as an author. ``changed_by`` becomes ``"[erased]"`` on
      every row they wrote (restricted to ``model``'s table when given).

    The erasure is itself recorded in the operations log
    (``<change table>_operations``): who erased (the session's audit user), what
    was asked (model, ids, fields, reason; the user id of an erased author is not
    kept) and how many rows changed. It is written in ``session``'s transaction,
    together with the rewritten rows: nothing happens until you commit, and a
    rollback undoes both. Anchored rows are re-anchored in the same transaction,
    so :func:`verify` still passes.

    Args:
        session: The Session to write with; commit it afterwards.
        model: The tracked model of ``resource_ids`` (and the only table for ``user_id``).
        resource_ids: One id or a list (str, int, UUID; a tuple for a composite key).
        user_id: An author to erase (as ``changed_by`` holds it).
        fields: Only these fields of the resources (default: every field).
        reason: Why, for the operations log ("GDPR request 2026-118").
        anchor_key: The key the anchors were made with, if any (:func:`anchor_changes`).

    Returns:
        An :class:`ErasureReport`.

    Raises:
        OperationError: nothing to erase named, ids without a model, an untracked
            model, a field the model does not track, ``session`` not a Session, or
            anchors made with a key and not this ``anchor_key``.

    Example:
        >>> erase(session, model=Customer, resource_ids=[2],
        ...       reason="erasure request 118")  # doctest: +SKIP
        ErasureReport(rows_erased=4, operation_id=3)
        >>> session.commit()  # doctest: +SKIP
    """
    if not isinstance(session, Session):
        raise OperationError(
            f"erase() takes a Session as its first argument, not {type(session).__name__}; "
            "it writes in that session's transaction, which you then commit."
        )
    if resource_ids is None and user_id is None:
        raise OperationError(
            "erase() was given nothing to erase: pass model= and resource_ids= (a "
            "person's records), user_id= (a person as author), or both."
        )
    tracked = None
    if model is not None:
        tracked = _registry.lookup(model) if isinstance(model, type) else None
        if tracked is None:
            shown = model.__name__ if isinstance(model, type) else repr(model)
            raise OperationError(
                f"erase(model={shown}): {shown} is not a tracked model; pass a class "
                "decorated with @track_table."
            )
    if resource_ids is not None and tracked is None:
        raise OperationError(
            "erase(resource_ids=...) needs model=: a resource id means something only for "
            "a model; pass the model the ids belong to."
        )
    names: list[str] | None = None
    if fields is not None:
        if tracked is None or resource_ids is None:
            raise OperationError(
                "erase(fields=...) applies to the values of resources: pass model= and "
                "resource_ids= with it."
            )
        names = sorted({fields} if isinstance(fields, str) else set(fields))
        unknown = [name for name in names if name not in tracked.fields]
        if unknown:
            raise OperationError(
                f"erase(fields={names!r}): {', '.join(unknown)} is not tracked on "
                f"{tracked.model.__name__}; its tracked fields are: {', '.join(tracked.fields)}."
            )
    target = resolve_target(session, None, None, "erase")
    table = target.table
    log = target.operations
    connection = session.connection()
    if connection.dialect.name in ("mysql", "mariadb"):
        # DDL inside the session's transaction would commit it there: a connection
        # of its own creates the log (a no-op once it exists).
        with target.engine.begin() as own:
            log.create(own, checkfirst=True)
    else:
        log.create(connection, checkfirst=True)
    arguments: dict[str, Any] = {
        "model": None if tracked is None else tracked.model.__name__,
        "table": None if tracked is None else tracked.table_name,
        "resource_ids": None,
        "user": user_id is not None,
        "fields": names,
        "reason": reason,
    }
    sign = _anchors.check_key(connection, table, anchor_key, "erase")
    erased: set[int] = set()
    # The append-only guard lets these UPDATEs through, and only these.
    with maintenance(connection, table):
        if resource_ids is not None and tracked is not None:
            texts = sorted(set(_resource_ids(tracked, resource_ids)))
            arguments["resource_ids"] = texts
            conditions: list[ColumnElement[bool]] = [table.c.table_name == tracked.table_name]
            conditions.extend(_matching(table.c.resource_key, table.c.resource_id, texts))
            if names is not None:
                conditions.append(table.c.field_name.in_(names))
            ids = list(connection.execute(select(table.c.id).where(*conditions)).scalars())
            if ids:
                connection.execute(
                    update(table)
                    .where(table.c.id.in_(ids))
                    .values(
                        old_value=case((table.c.old_value.is_(None), None), else_=ERASED),
                        new_value=case((table.c.new_value.is_(None), None), else_=ERASED),
                    )
                )
                erased.update(ids)
        if user_id is not None:
            users = sorted({_id_text(value, "user_id") for value in _as_list(user_id)})
            user_conditions = _matching(table.c.changed_by_key, table.c.changed_by, users)
            if tracked is not None:
                user_conditions.append(table.c.table_name == tracked.table_name)
            ids = list(connection.execute(select(table.c.id).where(*user_conditions)).scalars())
            if ids:
                connection.execute(
                    update(table).where(table.c.id.in_(ids)).values(changed_by=ERASED)
                )
                erased.update(ids)
    operation_id = log_start(connection, log, "erase", arguments, _performed_by(session))
    _anchors.redigest(connection, table, sorted(erased), sign)
    log_finish(connection, log, operation_id, len(erased), {"rows": len(erased)})
    return ErasureReport(len(erased), operation_id)
