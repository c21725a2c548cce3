"""What the flush hooks and the bulk-statement hook share: who writes, and how.

:func:`resolve` settles, once per flush or bulk statement, the config, the user
(from the session's context, the ambient ``audit_context`` or the callback) and the
extra context; :meth:`Author.stamp` adds the time (taken as the rows are written)
and the id of the database transaction; :func:`write` sends the change rows, with one statement
per connection, on the session's own connections.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from sqlaudit import _clock, _schema
from sqlaudit._capture import ChangeRow, FlushStamp
from sqlaudit.config import SQLAuditConfig, get_config
from sqlaudit.context import _Unset, effective_context
from sqlaudit.exceptions import UserRequiredError

__all__ = ["Author", "adopt_transaction_id", "resolve", "transaction_id", "write"]

_TRANSACTION_KEY = "sqlaudit.transaction"


@dataclass(frozen=True, slots=True)
class Author:
    """Who changed things, when, and in which config: settled once per flush."""

    config: SQLAuditConfig
    changed_by: str | None
    extra: dict[str, Any] | None

    def stamp(self, session: Session, connection: Connection) -> FlushStamp:
        """Return what every row this author writes now, on ``connection``, shares.

        The time is taken here, when the rows are about to be written (after the
        statements they describe ran, and any lock they waited for was granted),
        not when the flush began.
        """
        return FlushStamp(
            transaction_id=transaction_id(session, connection),
            changed_by=self.changed_by,
            changed_at=_clock.utc_now(),
            extra=self.extra,
        )


def resolve(
    session: Session,
    models: set[type[Any]],
    changes_anything: Callable[[], bool] = lambda: True,
) -> Author:
    """Resolve config, user and context, before anything is written.

    ``changes_anything`` tells, only when it matters (``require_user`` and no user),
    whether the flush really changes a tracked value: assigning an equal value is
    no change and needs no user.

    Raises:
        NotConfiguredError: no config is set.
        UserRequiredError: ``require_user`` is on and no user is known.
    """
    config = get_config()
    context = effective_context(session)
    if isinstance(context.user_id, _Unset):
        changed_by = config.current_user_id()
    else:
        changed_by = context.user_id
    if changed_by is None and config.require_user and changes_anything():
        names = ", ".join(sorted(model.__name__ for model in models)) or "a tracked model"
        raise UserRequiredError(
            f"A change to {names} was flushed with no user, and require_user is on: wrap "
            "the work in audit_context(user_id=...), set_session_context(session, "
            "user_id=...), or make get_user_id_callback return the user."
        )
    return Author(config, changed_by, context.stored_extra())


def transaction_id(session: Session, connection: Connection) -> str:
    """Return the id shared by every change row of one database transaction.

    The database transaction is the connection's outermost one: a session joined
    to a connection that already has a transaction (``join_transaction_mode``)
    begins a new session transaction at each ``commit()`` while the database
    transaction goes on, and all of its rows share one id.
    """
    root = session.get_transaction()
    current = session.info.get(_TRANSACTION_KEY)
    if current is not None and current[0] is root:
        same: str = current[2]
        return same
    database = connection.get_transaction()
    if current is not None and database is not None and current[1] is database:
        transaction_id: str = current[2]
    else:
        transaction_id = str(uuid.uuid4())
    # The transaction objects themselves are kept (not their id()), so a later
    # transaction can never be mistaken for them.
    session.info[_TRANSACTION_KEY] = (root, database, transaction_id)
    return transaction_id


def adopt_transaction_id(session: Session, connection: Connection, transaction_id: str) -> None:
    """Make ``transaction_id`` the id of the session's current database transaction.

    Used when the database already gave the transaction an id (a capture trigger drew
    one for a write the Session did not see), so that every row shares it.
    """
    session.info[_TRANSACTION_KEY] = (
        session.get_transaction(),
        connection.get_transaction(),
        transaction_id,
    )


def write(
    session: Session,
    config: SQLAuditConfig,
    rows_by_mapper: Mapping[Any, Sequence[ChangeRow]] | Sequence[tuple[Any, Sequence[ChangeRow]]],
    execution_options: Mapping[str, Any] | None = None,
    bind_arguments: Mapping[str, Any] | None = None,
) -> None:
    """Write the rows with one INSERT per connection (usually exactly one).

    ``rows_by_mapper``: ``{mapper: rows}``, or ``(mapper, rows)`` pairs when the
    order of writing matters across mappers (ids follow it on each connection).

    ``execution_options``: a bulk statement's own ``schema_translate_map``, which the
    change rows follow as they follow a connection's. ``bind_arguments``: a bulk
    statement's own (an explicit ``bind`` included), so that its change rows go to
    the connection, and the transaction, the statement ran in.
    """
    connections: dict[int, tuple[Any, list[ChangeRow]]] = {}
    pairs = rows_by_mapper.items() if isinstance(rows_by_mapper, Mapping) else rows_by_mapper
    by_mapper: dict[Any, Any] = {}  # mapper -> its connection, looked up once
    for mapper, rows in pairs:
        connection = by_mapper.get(mapper)
        if connection is None:
            arguments = dict(bind_arguments) if bind_arguments else {"mapper": mapper}
            connection = by_mapper[mapper] = session.connection(bind_arguments=arguments)
        connections.setdefault(id(connection), (connection, []))[1].extend(rows)
    for connection, rows in connections.values():
        _schema.write_changes(connection, config.table, rows, execution_options)
