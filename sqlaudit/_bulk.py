"""Auditing bulk ``insert()``/``update()``/``delete()`` statements run through a Session.

Bulk statements bypass the unit of work, so the flush hooks never see them.
:func:`do_orm_execute` (registered by :func:`sqlaudit.hooks.register_hooks`)
reads the affected rows before the statement (locking them where the database
can) and their new values after it, with ``RETURNING`` where the database has it
and by primary key otherwise, then writes their change rows in the same
transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Select, select, tuple_
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Result
from sqlalchemy.orm import Mapper, ORMExecuteState
from sqlalchemy.sql.dml import Delete, Update

from sqlaudit import _bulk_sql, _registry
from sqlaudit._capture import ChangeRow, Operation, change_rows
from sqlaudit._registry import TrackedModel
from sqlaudit._writer import resolve, write
from sqlaudit.context import auditing_disabled
from sqlaudit.exceptions import BulkStatementError

__all__ = [
    "assigned_fields",
    "columns",
    "do_orm_execute",
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


def do_orm_execute(orm_state: ORMExecuteState) -> Result[Any] | None:
    """Audit bulk ``insert()``/``update()``/``delete()`` statements run through a Session."""
    if not (orm_state.is_update or orm_state.is_delete or orm_state.is_insert):
        return None
    if auditing_disabled():
        return None
    statement: Any = orm_state.statement
    mapper = orm_state.bind_mapper
    if mapper is None:
        # A Core statement on a Table, run through the Session: audit it through the
        # model tracked on that table, if any.
        tracked = _registry.lookup_table(getattr(statement, "table", None))
        if tracked is None:
            return None
        mapper = sa_inspect(tracked.model)
    else:
        tracked = _registry.lookup(mapper.class_)
        if tracked is None:
            return None
    session = orm_state.session
    raw = orm_state.parameters
    parameters: list[Mapping[str, Any]] = list(raw) if isinstance(raw, (list, tuple)) else []
    if orm_state.is_update:
        assigned = assigned_fields(mapper, statement, parameters)
        moved = [name for name in tracked.primary_key if name in assigned and not parameters]
        if moved:
            raise BulkStatementError(
                f"A bulk update that assigns {tracked.model.__name__}.{moved[0]}, part of "
                "the primary key, cannot be audited: its old and new rows could not be "
                "paired. Change primary keys one object at a time through the Session."
            )
        fields = [name for name in tracked.fields if name in assigned]
        if not fields:
            return None  # touches no tracked field: nothing to read, nothing to write
        operation = Operation.UPDATE
    else:
        fields = list(tracked.fields)
        operation = Operation.DELETE if orm_state.is_delete else Operation.INSERT
    author = resolve(session, {tracked.model})  # errors before anything is written
    read = list(dict.fromkeys([*fields, *filter(None, [tracked.resource_id_field])]))
    key_size = len(tracked.primary_key)
    bind = orm_state.bind_arguments
    options = orm_state.execution_options
    # The statement's own schema_translate_map applies to the reads (and the writes).
    schema_map = options.get("schema_translate_map")
    translate = {"schema_translate_map": schema_map} if schema_map is not None else {}

    def fetch(
        queries: list[Any], params: Mapping[str, Any] | None = None
    ) -> dict[tuple[Any, ...], dict[str, Any]]:
        rows: list[Any] = []
        for query in queries:
            rows.extend(
                session.execute(
                    query, params, bind_arguments=dict(bind), execution_options=translate
                ).all()
            )
        return rows_by_key(rows, key_size, read)

    def invoke_returning() -> tuple[Result[Any], dict[tuple[Any, ...], dict[str, Any]]]:
        # The statement's own result is handed back with its rows read (a statement
        # without RETURNING of its own has none the caller expects); rowcount stays.
        returned = columns(mapper, [*tracked.primary_key, *read])
        result = orm_state.invoke_statement(statement=statement.returning(*returned))
        rows = result.all()
        _keep_rowcount(result, len(rows))
        return result, rows_by_key(rows, key_size, read)

    if not parameters and operation is not Operation.INSERT:
        connection = session.connection(bind_arguments=dict(bind))  # it pops 'bind' from its dict
        plan = _bulk_sql.plan(
            mapper, tracked, statement, fields, connection, author.config, options
        )
        if plan is not None:
            return _bulk_sql.run(
                orm_state,
                connection,
                operation,
                tracked,
                plan,
                lambda: author.stamp(session),
                author.config.table,
            )
    dialect = session.get_bind(**bind).dialect
    # RETURNING only where every column read lives in the statement's one table: a
    # joined-inheritance subclass spans several.
    own_returning = bool(getattr(statement, "_returning", ())) or (
        mapper.persist_selectable is not mapper.local_table
    )
    old: dict[tuple[Any, ...], dict[str, Any]] = {}
    new: dict[tuple[Any, ...], dict[str, Any]] = {}
    if operation is Operation.INSERT:
        result, keys = _invoke_insert(orm_state, statement, mapper, tracked, parameters)
        new = fetch(select_by_keys(mapper, tracked, read, keys, lock=False))
    elif parameters:  # UPDATE by primary key: an executemany, read before and after
        keys = keys_from_parameters(tracked, parameters)
        old = fetch(select_by_keys(mapper, tracked, read, keys, lock=True))
        result = orm_state.invoke_statement()
        new = fetch(select_by_keys(mapper, tracked, read, list(old), lock=False))
        keys = list(old)
    elif operation is Operation.DELETE and dialect.delete_returning and not own_returning:
        result, old = invoke_returning()  # DELETE ... RETURNING gives the last values
        keys = list(old)
    else:
        # Parameters given at execute time (a bindparam() in the WHERE) apply to the read.
        single = dict(raw) if isinstance(raw, Mapping) and raw else None
        old = fetch([select_affected(mapper, tracked, statement, read)], single)
        if operation is Operation.DELETE:
            result = orm_state.invoke_statement()
        elif dialect.update_returning and not own_returning:
            result, new = invoke_returning()  # UPDATE ... RETURNING gives the new values
        else:
            result = orm_state.invoke_statement()
            new = fetch(select_by_keys(mapper, tracked, read, list(old), lock=False))
        # A row the UPDATE matched that the read did not (inserted meanwhile by another
        # transaction) is still recorded, with no old value, rather than lost.
        keys = list(old) + [key for key in new if key not in old]
    stamp = author.stamp(session)
    rows: list[ChangeRow] = []
    for key in keys:
        before, after = old.get(key, {}), new.get(key, {})
        values = after or before
        resource_id = tracked.resource_id_of(key, values)
        if operation is Operation.UPDATE:
            before = {name: before.get(name) for name in fields}
        rows.extend(change_rows(tracked, operation, resource_id, before, after, stamp))
    if rows:
        write(session, author.config, {mapper: rows}, translate, bind)
    return result


def _invoke_insert(
    orm_state: ORMExecuteState,
    statement: Any,
    mapper: Any,
    tracked: TrackedModel,
    parameters: list[Mapping[str, Any]],
) -> tuple[Result[Any], list[tuple[Any, ...]]]:
    """Run a bulk INSERT and return its result and the primary keys it inserted."""
    if parameters and all(
        all(name in params for name in tracked.primary_key) for params in parameters
    ):
        return orm_state.invoke_statement(), keys_from_parameters(tracked, parameters)
    if not parameters and statement.select is None and not statement._multi_values:
        # One row: the caller's result stays whole, inserted_primary_key included.
        result = orm_state.invoke_statement()
        key = tuple(result.inserted_primary_key or ())  # type: ignore[attr-defined]
        if len(key) == len(tracked.primary_key) and None not in key:
            return result, [key]
        raise BulkStatementError(
            f"sqlaudit could not learn the primary key of the {tracked.model.__name__} row "
            "this insert created; give the primary key or use session.add()."
        )
    dialect = orm_state.session.get_bind(mapper=mapper).dialect
    supported = dialect.insert_executemany_returning if parameters else dialect.insert_returning
    if getattr(statement, "_returning", ()) or not supported or statement.select is not None:
        raise BulkStatementError(
            f"sqlaudit cannot tell which {tracked.model.__name__} rows this bulk insert "
            f"creates on {dialect.name} (no primary keys given"
            f"{', a RETURNING clause of its own' if statement._returning else ''}"
            f"{', an INSERT ... SELECT' if statement.select is not None else ''}), so it "
            "would commit without audit rows: give each row its primary key "
            f"({', '.join(tracked.primary_key)}) or use session.add_all()."
        )
    pk_columns = columns(mapper, tracked.primary_key)
    result = orm_state.invoke_statement(statement=statement.returning(*pk_columns))
    rows = result.all()
    _keep_rowcount(result, len(rows))
    return result, [tuple(row) for row in rows]


def _keep_rowcount(result: Result[Any], count: int) -> None:
    """Give a RETURNING result the ``rowcount`` the caller's plain DML result would have.

    Once RETURNING is added the ORM hands back a row-only result, which has no
    ``rowcount``; the caller asked for a statement without RETURNING and may read
    it. Every matched row was returned, so their number is that rowcount.
    """
    if getattr(result, "rowcount", None) != count:
        # A row-only result has none; a cursor result may report 0 once its RETURNING
        # rows are fetched (SQLite).
        with contextlib.suppress(AttributeError):  # read-only: nothing better to offer
            setattr(result, "rowcount", count)  # noqa: B010 - not always a declared attribute
