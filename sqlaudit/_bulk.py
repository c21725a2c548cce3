"""Reading what a bulk ORM ``update()``/``delete()`` statement touches.

Bulk statements bypass the unit of work, so the flush hooks never see them. The
``do_orm_execute`` hook in :mod:`sqlaudit.hooks` uses these helpers to read the
affected rows before the statement (locking them where the database can) and
their new values after it, by primary key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Select, select, tuple_
from sqlalchemy.orm import Mapper
from sqlalchemy.sql.dml import Delete, Update

from sqlaudit._registry import TrackedModel
from sqlaudit.exceptions import BulkStatementError

__all__ = [
    "assigned_fields",
    "columns",
    "keys_from_parameters",
    "rows_by_key",
    "select_affected",
    "select_by_keys",
]

# Primary keys per "IN" list: well under SQLite's bound-parameter limit.
_CHUNK = 5000


def assigned_fields(
    mapper: Mapper[Any], statement: Update, parameters: Sequence[Mapping[str, Any]] | None
) -> set[str]:
    """Return the attribute names a bulk UPDATE assigns (from ``values()`` or its parameters)."""
    names: set[str] = set()
    for key in getattr(statement, "_values", None) or ():
        names.add(_attribute_key(mapper, key))
    for key in getattr(statement, "_ordered_values", None) or ():
        names.add(_attribute_key(mapper, key[0]))
    for params in parameters or ():
        names.update(_attribute_key(mapper, key) for key in params)
    return names


def _attribute_key(mapper: Mapper[Any], key: Any) -> str:
    if isinstance(key, str):
        return key
    column = getattr(key, "expression", key)
    try:
        return str(mapper.get_property_by_column(column).key)
    except Exception:  # not a mapped column (a literal key, say): keep its name
        return str(getattr(key, "key", key))


def columns(mapper: Mapper[Any], names: Iterable[str]) -> list[Any]:
    """Return the class-bound attributes (a joined class then selects FROM its join)."""
    return [getattr(mapper.class_, name) for name in names]


def select_affected(
    mapper: Mapper[Any],
    tracked: TrackedModel,
    statement: Update | Delete,
    fields: Iterable[str],
) -> Select[Any]:
    """Build the SELECT of the rows a bulk statement will touch, locked ``FOR UPDATE``.

    (An UPDATE by primary key, given a list of parameter dicts, is read with
    :func:`select_by_keys` instead.)
    """
    query = select(*columns(mapper, tracked.primary_key), *columns(mapper, fields))
    if statement.whereclause is not None:
        query = query.where(statement.whereclause)
    return query.with_for_update()


def keys_from_parameters(
    tracked: TrackedModel, parameters: Sequence[Mapping[str, Any]]
) -> list[tuple[Any, ...]]:
    """Return the primary keys named by an UPDATE-by-primary-key parameter list.

    Raises:
        BulkStatementError: a row lacks part of the primary key.
    """
    keys = []
    for params in parameters:
        missing = [name for name in tracked.primary_key if name not in params]
        if missing:
            raise BulkStatementError(
                f"A bulk update of {tracked.model.__name__} by primary key got a row without "
                f"{', '.join(missing)} ({dict(params)!r}); sqlaudit cannot tell which row it "
                "changes. Give every row its primary key, or use update().where()."
            )
        keys.append(tuple(params[name] for name in tracked.primary_key))
    return keys


def select_by_keys(
    mapper: Mapper[Any],
    tracked: TrackedModel,
    fields: Iterable[str],
    keys: Sequence[tuple[Any, ...]],
    *,
    lock: bool,
) -> list[Select[Any]]:
    """Build the SELECTs (one per chunk of keys) of the given rows' tracked fields."""
    pk_columns = columns(mapper, tracked.primary_key)
    field_columns = columns(mapper, fields)
    queries = []
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        if len(pk_columns) == 1:
            condition = pk_columns[0].in_([key[0] for key in chunk])
        else:
            condition = tuple_(*pk_columns).in_(chunk)
        query = select(*pk_columns, *field_columns).where(condition)
        queries.append(query.with_for_update() if lock else query)
    return queries


def rows_by_key(
    rows: Iterable[Sequence[Any]], key_size: int, fields: Sequence[str]
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Index selected rows by primary key: ``{key: {field: value}}``."""
    return {tuple(row[:key_size]): dict(zip(fields, row[key_size:], strict=True)) for row in rows}
