"""Reading the history back: :func:`get_resource_changes`.

One indexed ``SELECT`` on the change table, newest first (in the order the rows
were written, not by their timestamps); each row comes back as a frozen
:class:`ResourceChange` whose values have the Python types the column held and
whose timestamp is expressed in ``config.time_zone``::

    changes = get_resource_changes(
        model_class=Customer,
        session=session,
        filter_resource_ids=[1, 2],
        filter_fields="name",
        filter_date_range=(datetime(2026, 1, 1), None),
    )
    for change in changes:
        print(change.timestamp, change.changed_by, change.old_value, "->", change.new_value)

The query itself is built by :func:`build_changes_query`, so other executors
(an async session, say) run the very same statement.
"""

from __future__ import annotations

import enum
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from operator import itemgetter
from typing import Any
from uuid import UUID

from sqlalchemy import Column, ColumnElement, Select, select
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from sqlaudit import _codec, _registry, _schema
from sqlaudit._capture import Operation
from sqlaudit._large_values import MARKER, TruncatedValue, decode_marker
from sqlaudit._registry import TrackedModel
from sqlaudit.config import SQLAuditConfig, get_config
from sqlaudit.exceptions import FilterError, FilterTypeError, UntrackedModelError

__all__ = [
    "Operation",
    "ResourceChange",
    "TruncatedValue",
    "build_changes_query",
    "get_resource_changes",
    "get_transaction_changes",
    "transaction_query",
]

IdValue = str | int | UUID
ResourceIds = IdValue | tuple[IdValue, ...] | Iterable[IdValue | tuple[IdValue, ...]]
DateBound = datetime | date | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceChange:
    """One recorded change of one field of one resource.

    Attributes:
        change_id: The change row's id (increases with every row written; the
            order of the history).
        table_name: The tracked table.
        table_label: The label given to ``@track_table`` (default: the class name).
        resource_id: The resource's id as text; a composite key reads ``'["1","a"]'``.
        field_name: The attribute that changed.
        operation: ``insert``, ``update`` or ``delete``.
        old_value: The value before (``None``: no value), with its Python type; a
            :class:`TruncatedValue` for one too large for the database to store in
            full (MySQL/MariaDB, beyond ``max_allowed_packet``).
        new_value: The value after, likewise.
        changed_by: The user id as text, or ``None`` when no user was known.
        timestamp: When, aware, in ``config.time_zone``.
        transaction_id: Shared by every row written in one database transaction.
        reason: The ``reason`` of the :func:`~sqlaudit.audit_context` in effect, or ``None``.
        extra: The extra metadata of that context (empty when none).

    Example:
        >>> changes = get_resource_changes(Customer, filter_resource_ids=2)  # doctest: +SKIP
        >>> changes[0].field_name, changes[0].old_value, changes[0].new_value  # doctest: +SKIP
        ('name', 'Jane Doe', 'Jane Smith')
    """

    change_id: int
    table_name: str
    table_label: str | None
    resource_id: str
    field_name: str
    operation: Operation
    old_value: Any
    new_value: Any
    changed_by: str | None
    timestamp: datetime
    transaction_id: str
    reason: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def get_resource_changes(
    model_class: type[Any],
    session: Session | None = None,
    filter_resource_ids: ResourceIds | None = None,
    filter_fields: str | Iterable[str] | None = None,
    filter_user_ids: IdValue | Iterable[IdValue] | None = None,
    filter_date_range: tuple[DateBound, DateBound] | None = None,
    limit: int | None = None,
    offset: int | None = None,
    filter_transaction_ids: str | UUID | Iterable[str | UUID] | None = None,
    sort_by: str | None = None,
    sort_direction: str = "desc",
) -> list[ResourceChange]:
    """Return the recorded changes of a tracked model, newest first.

    Filters combine with AND; each left as ``None`` does not filter.

    Args:
        model_class: A class decorated with ``@track_table``.
        session: The Session to read with; ``None`` opens one from
            ``config.session_factory`` and closes it afterwards.
        filter_resource_ids: One id or a list; each a ``str``, ``int`` or ``UUID``, or
            a tuple of them for a composite key. ``None``: every resource; an empty
            list: none.
        filter_fields: One field name or a list; each must be tracked.
        filter_user_ids: One user id or a list; ``str``, ``int`` or ``UUID``.
        filter_date_range: ``(start, end)``, inclusive, either may be ``None``. Naive
            datetimes are read in ``config.time_zone``, aware ones in their own zone;
            a ``date`` means its whole day in ``config.time_zone``.
        limit: At most this many change rows.
        offset: Skip this many change rows first.
        filter_transaction_ids: One transaction id or a list.
        sort_by: sqlaudit 0.7's option, deprecated: only ``"timestamp"`` is
            accepted (with a :class:`DeprecationWarning`), and the order stays the
            order of writing described below.
        sort_direction: ``"desc"`` (newest first, the default) or ``"asc"`` (oldest
            first).

    Code written for sqlaudit 0.7 that passes ``(model_class, filter_resource_ids,
    session)`` positionally is understood, with a :class:`DeprecationWarning`:
    pass them by keyword.

    Returns:
        The changes, newest first: in the reverse order of writing (the change row
        id), which for one resource is the order its changes were made, even when
        a flush waited for another transaction's lock after taking its timestamp.
        Timestamps may therefore go back in the list; ``filter_date_range`` still
        filters on them.

    Raises:
        UntrackedModelError: ``model_class`` is not tracked.
        FilterError: a field that is not tracked, a range whose start is after its
            end, a negative limit or offset, an unknown ``sort_by`` or ``sort_direction``.
        FilterTypeError: an id, field, bound, limit or offset of the wrong type.
        NotConfiguredError: :func:`~sqlaudit.config.set_config` was not called.

    Example:
        >>> changes = get_resource_changes(model_class=Customer, session=session,
        ...                                filter_resource_ids=2)  # doctest: +SKIP
        >>> [(c.field_name, c.new_value) for c in changes][:2]  # doctest: +SKIP
        [('name', 'Jane Smith'), ('user_id', 1)]
    """
    config = get_config()
    if _looks_like_ids(session) and (
        filter_resource_ids is None or isinstance(filter_resource_ids, Session)
    ):
        warnings.warn(
            "get_resource_changes(model_class, filter_resource_ids, session) is sqlaudit "
            "0.7's positional order; the second parameter is now session. Pass "
            "filter_resource_ids=... and session=... by keyword.",
            DeprecationWarning,
            stacklevel=2,
        )
        session, filter_resource_ids = filter_resource_ids, session
    descending = _descending(model_class, sort_by, sort_direction)
    query = build_changes_query(
        model_class,
        config=config,
        filter_resource_ids=filter_resource_ids,
        filter_fields=filter_fields,
        filter_user_ids=filter_user_ids,
        filter_date_range=filter_date_range,
        limit=limit,
        offset=offset,
        filter_transaction_ids=filter_transaction_ids,
        descending=descending,
    )
    rows = _execute(config, session, query)
    return _to_changes(rows, config.zone)


def _looks_like_ids(value: object) -> bool:
    """Tell whether a ``session`` argument is really resource ids (0.7's positional order)."""
    if value is None or isinstance(value, Session):
        return False
    if isinstance(value, (str, int, UUID, tuple)) and not isinstance(value, bool):
        return True
    return isinstance(value, list)


def _descending(model_class: Any, sort_by: str | None, sort_direction: str) -> bool:
    name = getattr(model_class, "__name__", "the model")
    if sort_by is not None:
        if sort_by != "timestamp":
            raise FilterError(
                f"get_resource_changes({name}, sort_by={sort_by!r}): changes are listed in "
                "the order they were written, and only sort_by='timestamp' (sqlaudit 0.7's "
                "default, the same order) is accepted. Remove sort_by, and sort the "
                "returned list in Python for another order."
            )
        warnings.warn(
            "get_resource_changes(sort_by='timestamp') is sqlaudit 0.7's option: changes are "
            "always listed in the order they were written. Remove sort_by.",
            DeprecationWarning,
            stacklevel=3,
        )
    if sort_direction not in ("asc", "desc"):
        raise FilterError(
            f"get_resource_changes({name}, sort_direction={sort_direction!r}): use 'desc' "
            "(newest first, the default) or 'asc' (oldest first)."
        )
    return sort_direction == "desc"


def get_transaction_changes(
    transaction_id: str | UUID, session: Session | None = None
) -> list[ResourceChange]:
    """Return every change row written in one database transaction, across models.

    Args:
        transaction_id: A ``ResourceChange.transaction_id``.
        session: The Session to read with; ``None`` opens one from
            ``config.session_factory`` and closes it afterwards.

    Returns:
        The changes, newest first (same order as :func:`get_resource_changes`).

    Raises:
        FilterTypeError: ``transaction_id`` is not a str or UUID.

    Example:
        >>> change = get_resource_changes(Customer, filter_resource_ids=2)[0]  # doctest: +SKIP
        >>> get_transaction_changes(change.transaction_id)  # doctest: +SKIP
    """
    config = get_config()
    query = transaction_query(config, transaction_id)
    return _to_changes(_execute(config, session, query), config.zone)


def transaction_query(config: SQLAuditConfig, transaction_id: str | UUID) -> Select[Any]:
    """Build the ``SELECT`` behind :func:`get_transaction_changes`.

    Example:
        >>> query = transaction_query(get_config(), "0b9e...")  # doctest: +SKIP
    """
    table = config.table
    return (
        select(table)
        .where(table.c.transaction_id == _transaction_text(transaction_id))
        .order_by(table.c.id.desc())
    )


def _execute(config: SQLAuditConfig, session: Session | None, query: Select[Any]) -> Any:
    if session is None:
        with config.open_session() as own_session:
            return own_session.execute(query).all()
    return session.execute(query).all()


def _transaction_text(value: Any) -> str:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, str):
        return value
    raise FilterTypeError(
        f"transaction ids are str (or UUID), as ResourceChange.transaction_id gives them, "
        f"not {type(value).__name__} {value!r}."
    )


def _tracked_model(model_class: type[Any]) -> TrackedModel:
    """Return how ``model_class`` is tracked, or raise :class:`UntrackedModelError`."""
    if not isinstance(model_class, type):
        raise FilterTypeError(
            f"model_class must be a tracked model class, not {type(model_class).__name__}; "
            "pass the class itself (Customer, not Customer())."
        )
    tracked = _registry.lookup(model_class)
    if tracked is None:
        raise UntrackedModelError(
            f"{model_class.__name__} is not tracked: decorate it with "
            f"@track_table(tracked_fields=[...]) before asking for its changes."
        )
    return tracked


def build_changes_query(
    model_class: type[Any],
    *,
    config: SQLAuditConfig,
    filter_resource_ids: ResourceIds | None = None,
    filter_fields: str | Iterable[str] | None = None,
    filter_user_ids: IdValue | Iterable[IdValue] | None = None,
    filter_date_range: tuple[DateBound, DateBound] | None = None,
    limit: int | None = None,
    offset: int | None = None,
    filter_transaction_ids: str | UUID | Iterable[str | UUID] | None = None,
    descending: bool = True,
) -> Select[Any]:
    """Build, and validate, the ``SELECT`` behind :func:`get_resource_changes`.

    ``descending=False`` lists the oldest first.

    Example:
        >>> query = build_changes_query(Customer, config=get_config())  # doctest: +SKIP
    """
    tracked = _tracked_model(model_class)
    table = config.table
    query = select(table).where(table.c.table_name == tracked.table_name)
    if filter_resource_ids is not None:
        ids = _resource_ids(tracked, filter_resource_ids)
        query = query.where(*_matching(table.c.resource_key, table.c.resource_id, ids))
    if filter_fields is not None:
        fields = _fields(tracked, filter_fields)
        query = query.where(table.c.field_name.in_(fields))
    if filter_user_ids is not None:
        users = [_id_text(value, "filter_user_ids") for value in _as_list(filter_user_ids)]
        query = query.where(*_matching(table.c.changed_by_key, table.c.changed_by, users))
    if filter_date_range is not None:
        start, end = _date_range(filter_date_range, config.zone)
        if start is not None:
            query = query.where(table.c.changed_at >= start)
        if end is not None:
            query = query.where(table.c.changed_at < end)
    if filter_transaction_ids is not None:
        transactions = [_transaction_text(value) for value in _as_list(filter_transaction_ids)]
        query = query.where(table.c.transaction_id.in_(transactions))
    query = query.order_by(table.c.id.desc() if descending else table.c.id.asc())
    if limit is not None:
        query = query.limit(_count(limit, "limit"))
    if offset is not None:
        query = query.offset(_count(offset, "offset"))
    return query


def _matching(key: Column[Any], text: Column[Any], values: list[str]) -> list[ColumnElement[bool]]:
    """Filter an unbounded text column by its index key (the index) and its value (the truth).

    An empty list matches nothing, as an empty IN does.
    """
    if len(values) == 1:
        return [key == _schema.index_key(values[0]), text == values[0]]
    return [key.in_([_schema.index_key(value) for value in values]), text.in_(values)]


# Operation(text) walks the Enum machinery on every call; a dict lookup does not.
_OPERATIONS = {operation.value: operation for operation in Operation}
_ROW_COLUMNS = ("id", *_schema.CHANGE_COLUMNS)


def _to_changes(rows: Sequence[Row[Any]], zone: tzinfo) -> list[ResourceChange]:
    """Map change-table rows to :class:`ResourceChange` values.

    Each row's columns are taken by position, looked up once per call: reading
    them by name costs several times more on the thousand rows of a long history.
    """
    if not rows:
        return []
    positions = {name: number for number, name in enumerate(rows[0]._fields)}
    columns = itemgetter(*(positions[name] for name in _ROW_COLUMNS))
    hints_by_table: dict[str, dict[str, type[enum.Enum]]] = {}
    changes = []
    for row in rows:
        (
            change_id,
            transaction_id,
            table_name,
            table_label,
            resource_id,
            field_name,
            operation,
            old_value,
            new_value,
            changed_by,
            changed_at,
            stored,
        ) = columns(row)
        hints = hints_by_table.get(table_name)
        if hints is None:
            hints = hints_by_table[table_name] = _registry.enum_hints_for_table(table_name)
        hint = hints.get(field_name)
        change = ResourceChange(
            change_id=change_id,
            table_name=table_name,
            table_label=table_label,
            resource_id=resource_id,
            field_name=field_name,
            operation=_OPERATIONS[operation],
            old_value=_decode(old_value, hint),
            new_value=_decode(new_value, hint),
            changed_by=changed_by,
            timestamp=changed_at.astimezone(zone),
            transaction_id=transaction_id,
            reason=stored.get("reason") if stored else None,
            extra=stored.get("extra", {}) if stored else {},
        )
        changes.append(change)
    return changes


def _decode(text: str | None, enum_hint: type[enum.Enum] | None) -> Any:
    if text is not None and text.startswith(MARKER):
        truncated = decode_marker(text)
        if truncated is not None:
            return truncated
    return _codec.decode(text, enum_hint=enum_hint)


def _as_list(value: Any) -> list[Any]:
    # A mapping is iterable but is no list of ids: kept whole, it is rejected by type.
    if isinstance(value, (str, bytes, int, UUID, tuple, Mapping)) or not isinstance(
        value, Iterable
    ):
        return [value]
    return list(value)


def _id_text(value: Any, option: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, UUID)) and not isinstance(value, bool):
        return str(value)
    raise FilterTypeError(
        f"{option} takes str, int or UUID ids (or a list of them), not "
        f"{type(value).__name__} {value!r}."
    )


def _normalise_part(value: Any, python_type: type[Any] | None, option: str) -> str:
    text = _id_text(value, option)
    if python_type is UUID and isinstance(value, str):
        try:
            return str(UUID(value))
        except ValueError:
            return text
    return text


def _resource_ids(tracked: TrackedModel, value: ResourceIds) -> list[str]:
    ids: list[str] = []
    key_size = 1 if tracked.resource_id_field is not None else len(tracked.primary_key)
    key_types = (None,) if tracked.resource_id_field is not None else tracked.primary_key_types
    for item in _as_list(value):
        parts = item if isinstance(item, tuple) else (item,)
        if len(parts) != key_size:
            raise FilterError(
                f"{tracked.model.__name__} is identified by {key_size} value(s) "
                f"({', '.join(tracked.primary_key) if key_size > 1 else 'one id'}); "
                f"filter_resource_ids got {item!r}. Give a composite key as a tuple."
            )
        texts = tuple(
            _normalise_part(part, python_type, "filter_resource_ids")
            for part, python_type in zip(parts, key_types, strict=True)
        )
        ids.append(_registry.encode_resource_id(texts))
    return ids


def _fields(tracked: TrackedModel, value: str | Iterable[str]) -> list[str]:
    names = [value] if isinstance(value, str) else list(value)
    for name in names:
        if not isinstance(name, str):
            raise FilterTypeError(
                f"filter_fields takes field names as str, not {type(name).__name__} {name!r}."
            )
        if name not in tracked.fields:
            raise FilterError(
                f"{tracked.model.__name__}.{name} is not a tracked field; tracked fields are: "
                f"{', '.join(tracked.fields)}. Add it to @track_table(tracked_fields=[...]) "
                "or remove it from filter_fields."
            )
    return names


def _date_range(value: Any, zone: tzinfo) -> tuple[datetime | None, datetime | None]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise FilterTypeError(
            f"filter_date_range takes a (start, end) pair, not {value!r}; use None for an open end."
        )
    start_value, end_value = value
    start = None if start_value is None else _bound(start_value, zone, "start")
    end = None if end_value is None else _bound(end_value, zone, "end")
    # The end bound is inclusive: a datetime end includes its own microsecond, a
    # date end includes its whole day; both become an exclusive "<" bound.
    if end is not None:
        end = end + (timedelta(days=1) if type(end_value) is date else timedelta(microseconds=1))
    if start is not None and end is not None and start >= end:
        raise FilterError(
            f"filter_date_range starts after it ends ({start_value!r} > {end_value!r}); "
            "swap the bounds."
        )
    return start, end


def _bound(value: Any, zone: tzinfo, which: str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=zone)
    if isinstance(value, date):
        return datetime.combine(value, time.min, tzinfo=zone)
    raise FilterTypeError(
        f"filter_date_range {which} must be a datetime, a date or None, not "
        f"{type(value).__name__} {value!r}."
    )


def _count(value: Any, option: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise FilterTypeError(f"{option} must be an int, not {type(value).__name__}.")
    if value < 0:
        raise FilterError(f"{option} must be zero or more, not {value}.")
    return value
