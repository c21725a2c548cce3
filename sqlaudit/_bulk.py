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
from sqlalchemy.orm import ColumnProperty, LoaderCriteriaOption, Mapper, ORMExecuteState
from sqlalchemy.sql.dml import Delete, Update
from sqlalchemy.sql.elements import TextClause

from sqlaudit import _bulk_sql, _dbcontext, _guard, _registry
from sqlaudit._capture import ChangeRow, Operation, change_rows
from sqlaudit._registry import TrackedModel
from sqlaudit._writer import resolve, write
from sqlaudit.context import auditing_disabled
from sqlaudit.exceptions import BulkStatementError

__all__ = [
    "assigned_fields",
    "columns",
    "core_select_by_keys",
    "do_orm_execute",
    "is_upsert",
    "keys_from_parameters",
    "loader_criteria",
    "rows_by_key",
    "select_affected",
    "select_by_keys",
    "set_clause_keys",
]

# Primary keys per "IN" list: well under SQLite's bound-parameter limit.
_CHUNK = 5000


def assigned_fields(
    mapper: Mapper[Any],
    tracked: TrackedModel,
    statement: Update,
    parameters: Sequence[Mapping[str, Any]],
) -> set[str]:
    """Return the attribute names a bulk UPDATE may assign.

    They come from its ``values()`` and from the parameters given at execute time
    (a list of rows by primary key, or one dict whose column keys become the SET
    clause), each key named by attribute, column key or column.

    Raises:
        BulkStatementError: a SET key names nothing sqlaudit can map to a column, so
            it cannot tell what the statement changes (refused before it runs).
    """
    names: set[str] = set()
    for key in set_clause_keys(statement):
        name = _attribute_key(mapper, key)
        if name is None:
            if _foreign_column(mapper, key):
                continue  # a multi-table UPDATE's SET of another table's column
            raise BulkStatementError(
                f"A bulk update of {tracked.model.__name__} sets {key!r}, which sqlaudit "
                f"cannot map to a column of {tracked.table_name}, so it cannot tell what "
                "the statement changes. Name the column by its attribute "
                f"({tracked.model.__name__}.<attribute>) or its Column object."
            )
        names.add(name)
    for params in parameters:
        for key in params:
            # A key naming no column is a bound parameter of the WHERE clause.
            name = _attribute_key(mapper, key)
            if name is not None:
                names.add(name)
    return names


def set_clause_keys(statement: Update) -> list[Any]:
    """Return the keys of an UPDATE's ``values()`` (names, columns or attributes).

    SQLAlchemy has no public accessor for a statement's SET clause, so this reads
    the two attributes ``values()`` and ``ordered_values()`` fill; it is the one
    place that does, and tests/test_fail_closed.py checks it against the compiled
    SQL so that a change in SQLAlchemy breaks a test rather than losing changes.
    """
    keys: list[Any] = list(getattr(statement, "_values", None) or ())
    keys.extend(key for key, _ in getattr(statement, "_ordered_values", None) or ())
    return keys


def _attribute_key(mapper: Mapper[Any], key: Any) -> str | None:
    """Return the mapped attribute a SET key names, or ``None`` when it names none."""
    table = mapper.local_table
    if isinstance(key, str):
        if key in mapper.attrs and isinstance(mapper.attrs[key], ColumnProperty):
            return key
        column = getattr(table, "c", {}).get(key)
        if column is None:
            return None
        key = column
    column = getattr(key, "expression", key)  # an instrumented attribute's column
    try:
        return str(mapper.get_property_by_column(column).key)
    except Exception:  # not a column of this mapper
        return None


def _foreign_column(mapper: Mapper[Any], key: Any) -> bool:
    """Tell a column of another table (a multi-table UPDATE's SET) from an unknown key."""
    column = getattr(key, "expression", key)
    table = getattr(column, "table", None)
    return table is not None and table not in mapper.tables


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
    criteria = loader_criteria(statement)
    if criteria:
        query = query.options(*criteria)
    return query.with_for_update()


def loader_criteria(statement: Any) -> list[LoaderCriteriaOption]:
    """Return the ``with_loader_criteria()`` options of a statement.

    They narrow an ORM statement's WHERE beyond ``whereclause``, so the reads of the
    rows it touches must carry them too. SQLAlchemy keeps a statement's options in
    ``_with_options``, with no public accessor; this is the one place that reads it
    (tests/test_fail_closed.py checks it).
    """
    options = getattr(statement, "_with_options", ())
    return [option for option in options if isinstance(option, LoaderCriteriaOption)]


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
    return _by_keys(columns(mapper, tracked.primary_key), columns(mapper, fields), keys, lock, None)


def core_select_by_keys(
    mapper: Mapper[Any],
    tracked: TrackedModel,
    fields: Iterable[str],
    keys: Sequence[tuple[Any, ...]],
    *,
    lock: bool,
) -> list[Select[Any]]:
    """Like :func:`select_by_keys`, as Core statements on the mapper's tables.

    For the flush hooks' own reads, run on the flush's connection: no ORM execution
    (cheaper, and an application's ``do_orm_execute`` criteria, a soft-delete
    filter say, cannot hide a row the flush is about to write).
    """
    return _by_keys(
        [mapper.columns[name] for name in tracked.primary_key],
        [mapper.columns[name] for name in fields],
        keys,
        lock,
        mapper.persist_selectable,
    )


def _by_keys(
    pk_columns: Sequence[Any],
    field_columns: Sequence[Any],
    keys: Sequence[tuple[Any, ...]],
    lock: bool,
    source: Any,
) -> list[Select[Any]]:
    queries = []
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        if len(pk_columns) == 1:
            condition = pk_columns[0].in_([key[0] for key in chunk])
        else:
            condition = tuple_(*pk_columns).in_(chunk)
        query = select(*pk_columns, *field_columns)
        if source is not None:
            query = query.select_from(source)
        query = query.where(condition)
        queries.append(query.with_for_update() if lock else query)
    return queries


def rows_by_key(
    rows: Iterable[Sequence[Any]], key_size: int, fields: Sequence[str]
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Index selected rows by primary key: ``{key: {field: value}}``."""
    return {tuple(row[:key_size]): dict(zip(fields, row[key_size:], strict=True)) for row in rows}


def do_orm_execute(orm_state: ORMExecuteState) -> Result[Any] | None:
    """Audit bulk ``insert()``/``update()``/``delete()`` statements run through a Session."""
    writes = orm_state.is_update or orm_state.is_delete or orm_state.is_insert
    if not writes and not isinstance(orm_state.statement, TextClause):
        return None  # a read: nothing to do, at the cost of two attribute reads
    if auditing_disabled():
        return None
    if _registry.database_capture_in_use():
        _prepare_triggers(orm_state)
    if not writes:
        return None
    statement: Any = orm_state.statement
    mapper = orm_state.bind_mapper
    if mapper is None:
        # A Core statement on a Table, run through the Session: audit it through the
        # model tracked on that table, if any.
        tracked = _session_captured(_registry.lookup_table(getattr(statement, "table", None)))
        if tracked is None:
            _refuse_reaching_tracked(orm_state, statement, None)
            return None
        mapper = sa_inspect(tracked.model)
    else:
        tracked = _registry.in_session(mapper.class_)
        if tracked is None:
            _refuse_reaching_tracked(orm_state, statement, mapper)
            return None
    invoke = _Invoke(orm_state)
    try:
        return _audit(orm_state, statement, mapper, tracked, invoke)
    except BaseException as error:
        if invoke.ran:
            # The caller's statement changed rows whose change rows were not written:
            # that transaction must not commit, even if the caller catches this.
            session = orm_state.session
            connection = None
            with contextlib.suppress(Exception):  # the mark is set even without it
                connection = session.connection(bind_arguments=dict(orm_state.bind_arguments))
            kind = (
                "insert" if orm_state.is_insert else "update" if orm_state.is_update else "delete"
            )
            what = f"a bulk {kind} of {tracked.model.__name__} ran unaudited"
            _guard.poison(session, connection, error, what)
        raise


def _session_captured(tracked: TrackedModel | None) -> TrackedModel | None:
    """Return ``tracked`` if session capture records it (not database triggers)."""
    if tracked is None or _registry.capture_of(tracked) != "session":
        return None
    return tracked


def _prepare_triggers(orm_state: ORMExecuteState) -> None:
    """Hand database triggers the context of a statement run through a Session.

    A statement on a database-captured model also makes sure its triggers are
    installed; any other write (``text()`` SQL, a Core statement) may reach a
    database-captured table too, so it gets the context as well.
    """
    mapper = orm_state.bind_mapper
    tracked = None
    if mapper is not None:
        tracked = _registry.in_database(mapper.class_)
    elif orm_state.is_insert or orm_state.is_update or orm_state.is_delete:
        found = _registry.lookup_table(getattr(orm_state.statement, "table", None))
        if found is not None and _registry.capture_of(found) == "database":
            tracked = found
    models = [tracked] if tracked is not None else []
    session = orm_state.session
    author = resolve(session, {t.model for t in models})
    connection = session.connection(bind_arguments=dict(orm_state.bind_arguments))
    _dbcontext.prepare(session, connection, author, models)


def _refuse_reaching_tracked(
    orm_state: ORMExecuteState, statement: Any, mapper: Mapper[Any] | None
) -> None:
    """Refuse a statement on an untracked model or table that changes tracked rows.

    Two ways: a multi-table UPDATE (MySQL/MariaDB) whose SET names a tracked table's
    column, and an UPDATE or DELETE of an untracked class whose tracked subclass
    shares its table (single-table inheritance), which changes that subclass's rows.

    Raises:
        BulkStatementError: the statement would change tracked rows unaudited.
    """
    if orm_state.is_insert:
        return
    if orm_state.is_update:
        own = set(mapper.tables) if mapper is not None else {getattr(statement, "table", None)}
        for key in set_clause_keys(statement):
            column = getattr(key, "expression", key)
            table = getattr(column, "table", None)
            owner = None if table in own else _session_captured(_registry.lookup_table(table))
            if owner is not None:
                raise BulkStatementError(
                    f"This update sets {owner.model.__name__}.{column.key} (tracked) from "
                    "a statement on another table, which sqlaudit cannot audit. Update "
                    f"{owner.model.__name__} with its own statement: update("
                    f"{owner.model.__name__}).where(...).values(...)."
                )
    if mapper is None:
        return
    for descendant in mapper.self_and_descendants:
        tracked = _registry.in_session(descendant.class_)
        if tracked is not None:
            kind = "update" if orm_state.is_update else "delete"
            raise BulkStatementError(
                f"A bulk {kind} of {mapper.class_.__name__} (untracked) also changes the rows "
                f"of its subclass {tracked.model.__name__} (tracked), unaudited. Run it on "
                f"{tracked.model.__name__} and on the other classes separately, or track "
                f"{mapper.class_.__name__}."
            )


class _Invoke:
    """Runs the caller's statement, remembering that it ran."""

    __slots__ = ("orm_state", "ran")

    def __init__(self, orm_state: ORMExecuteState) -> None:
        self.orm_state = orm_state
        self.ran = False

    def __call__(self, statement: Any = None) -> Result[Any]:
        if statement is None:
            result: Result[Any] = self.orm_state.invoke_statement()
        else:
            result = self.orm_state.invoke_statement(statement=statement)
        self.ran = True
        return result


def _audit(
    orm_state: ORMExecuteState,
    statement: Any,
    mapper: Mapper[Any],
    tracked: TrackedModel,
    invoke: _Invoke,
) -> Result[Any] | None:
    session = orm_state.session
    if orm_state.is_insert:
        _refuse_upsert(tracked, statement)
    raw = orm_state.parameters
    parameters: list[Mapping[str, Any]] = list(raw) if isinstance(raw, (list, tuple)) else []
    single = [raw] if isinstance(raw, Mapping) and raw else []
    if parameters and not orm_state.is_insert and orm_state.bind_mapper is None:
        raise BulkStatementError(
            f"A Core executemany {'update' if orm_state.is_update else 'delete'} of "
            f"{tracked.model.__name__}'s table cannot be audited: sqlaudit cannot tell which "
            "row each parameter set reaches. Use the ORM form, session.execute("
            f"update({tracked.model.__name__}), [{{primary key and values}}, ...]), which "
            "updates by primary key."
        )
    if orm_state.is_update:
        assigned = assigned_fields(mapper, tracked, statement, parameters or single)
        # By primary key (a list of rows), the key names the row and is never changed.
        moved = [name for name in tracked.primary_key if name in assigned and not parameters]
        if tracked.resource_id_field is not None and tracked.resource_id_field in assigned:
            moved.append(tracked.resource_id_field)
        if moved:
            raise BulkStatementError(
                f"A bulk update that assigns {tracked.model.__name__}.{moved[0]}, which the "
                "resource id is made of, cannot be audited: the old and new ids could not "
                "be paired. Change it one object at a time through the Session, which "
                "records the old id's end and the new id's start."
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
    connection = session.connection(bind_arguments=dict(bind))  # it pops 'bind' from its dict
    _guard.refuse_autocommit(connection, options, [tracked.model])
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
        result = invoke(statement.returning(*returned))
        rows = result.all()
        _keep_rowcount(result, len(rows))
        return result, rows_by_key(rows, key_size, read)

    # with_loader_criteria() narrows the statement: the read path applies it to its reads.
    if not parameters and operation is not Operation.INSERT and not loader_criteria(statement):
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
                invoke,
                lambda: author.stamp(session, connection),
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
        result, keys = _invoke_insert(orm_state, invoke, statement, mapper, tracked, parameters)
        new = fetch(select_by_keys(mapper, tracked, read, keys, lock=False))
    elif parameters:  # UPDATE by primary key: an executemany, read before and after
        keys = keys_from_parameters(tracked, parameters)
        old = fetch(select_by_keys(mapper, tracked, read, keys, lock=True))
        result = invoke()
        # Each parameter row matches at most its one row; a key missing when read
        # (distinct keys not found) must match nothing, or a row appeared meanwhile.
        missing = len(set(keys)) - len(old)
        if missing > 0:
            _refuse_unread_rows(tracked, operation, _matched(result), len(keys) - missing)
        new = fetch(select_by_keys(mapper, tracked, read, list(old), lock=False))
        keys = list(old)
    elif operation is Operation.DELETE and dialect.delete_returning and not own_returning:
        result, old = invoke_returning()  # DELETE ... RETURNING gives the last values
        keys = list(old)
    else:
        # Parameters given at execute time (a bindparam() in the WHERE) apply to the read.
        where_params = dict(raw) if isinstance(raw, Mapping) and raw else None
        old = fetch([select_affected(mapper, tracked, statement, read)], where_params)
        if operation is Operation.DELETE:
            result = invoke()
            _refuse_unread_rows(tracked, operation, _matched(result), len(old))
        elif dialect.update_returning and not own_returning:
            result, new = invoke_returning()  # UPDATE ... RETURNING gives the new values
            _refuse_unread_rows(tracked, operation, len(new), sum(key in old for key in new))
        else:
            result = invoke()
            _refuse_unread_rows(tracked, operation, _matched(result), len(old))
            new = fetch(select_by_keys(mapper, tracked, read, list(old), lock=False))
        # An update records the rows it reached (RETURNING names them; a row read
        # but not updated reads back unchanged); a delete, every row it removed.
        keys = list(old) if operation is Operation.DELETE else [key for key in old if key in new]
    stamp = author.stamp(session, connection)
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


def _matched(result: Result[Any]) -> int:
    """Return the rows a statement matched, or -1 where the driver cannot tell yet."""
    count = getattr(result, "rowcount", -1)
    return count if isinstance(count, int) else -1


def _refuse_unread_rows(
    tracked: TrackedModel, operation: Operation, matched: int, read: int
) -> None:
    """Fail when the statement changed rows that were not read before it ran.

    Under READ COMMITTED another transaction may insert and commit a matching row
    between sqlaudit's read and the statement; its old values were never seen, so
    it cannot be recorded truthfully. (The caller marks the transaction so that it
    cannot commit.)

    Raises:
        BulkStatementError: more rows matched than were read.
    """
    if matched > read:
        raise BulkStatementError(
            f"A bulk {operation.value} of {tracked.model.__name__} changed {matched} rows "
            f"but sqlaudit had read {read} of them: another transaction inserted matching "
            "rows in between (READ COMMITTED). Their change rows cannot be written, so "
            "roll back and retry, or run the transaction at REPEATABLE READ."
        )


def _invoke_insert(
    orm_state: ORMExecuteState,
    invoke: _Invoke,
    statement: Any,
    mapper: Any,
    tracked: TrackedModel,
    parameters: list[Mapping[str, Any]],
) -> tuple[Result[Any], list[tuple[Any, ...]]]:
    """Run a bulk INSERT and return its result and the primary keys it inserted."""
    if parameters and all(
        all(name in params for name in tracked.primary_key) for params in parameters
    ):
        return invoke(), keys_from_parameters(tracked, parameters)
    if not parameters and statement.select is None and not statement._multi_values:
        # One row: the caller's result stays whole, inserted_primary_key included.
        result = invoke()
        key = tuple(result.inserted_primary_key or ())  # type: ignore[attr-defined]
        if len(key) == len(tracked.primary_key) and None not in key:
            return result, [key]
        raise BulkStatementError(
            f"sqlaudit could not learn the primary key of the {tracked.model.__name__} row "
            "this insert created; give the primary key or use session.add()."
        )
    dialect = orm_state.session.get_bind(mapper=mapper).dialect
    supported = dialect.insert_executemany_returning if parameters else dialect.insert_returning
    model = tracked.model.__name__
    if statement.select is not None:
        raise BulkStatementError(
            f"An INSERT ... SELECT into {model} cannot be audited: its rows are built by "
            "the database, and sqlaudit cannot tell which it creates or what they hold. "
            f"Read the rows and insert them with session.execute(insert({model}), rows) "
            "or session.add_all()."
        )
    if getattr(statement, "_returning", ()) or not supported:
        reason = (
            "it has a RETURNING clause of its own"
            if getattr(statement, "_returning", ())
            else f"{dialect.name} cannot return the keys it generates"
        )
        raise BulkStatementError(
            f"sqlaudit cannot tell which {model} rows this bulk insert creates: no row "
            f"gives its primary key and {reason}, so it would commit without audit rows. "
            f"Give each row its primary key ({', '.join(tracked.primary_key)}) or use "
            "session.add_all()."
        )
    pk_columns = columns(mapper, tracked.primary_key)
    result = invoke(statement.returning(*pk_columns))
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


# Prefix words that make an INSERT skip or replace existing rows (SQLite's INSERT OR
# ABORT / FAIL / ROLLBACK only choose how a failure ends, and insert or fail).
_UPSERT_PREFIXES = frozenset({"IGNORE", "REPLACE"})


def is_upsert(statement: Any) -> bool:
    """Tell an INSERT that may update or skip existing rows from a plain one.

    ``ON CONFLICT`` (PostgreSQL, SQLite) and ``ON DUPLICATE KEY UPDATE`` (MySQL,
    MariaDB) live in the clause the dialects' ``Insert`` renders after its values;
    ``INSERT IGNORE`` / ``INSERT OR ...`` are prefixes. SQLAlchemy has no public
    accessor for either, so this is the one place that reads them, and
    tests/test_fail_closed.py checks it against the compiled SQL of each form.
    """
    if getattr(statement, "_post_values_clause", None) is not None:
        return True
    for prefix, _dialect in getattr(statement, "_prefixes", ()):
        if _UPSERT_PREFIXES.intersection(str(prefix).upper().split()):
            return True
    return False


def _refuse_upsert(tracked: TrackedModel, statement: Any) -> None:
    """Refuse an upsert of a tracked model, before it runs.

    Recording it as an insert would lose the values it overwrites and forge rows
    for the rows it skips.

    Raises:
        BulkStatementError: the statement is an upsert.
    """
    if is_upsert(statement):
        raise BulkStatementError(
            f"sqlaudit cannot audit an upsert of {tracked.model.__name__} (ON CONFLICT, ON "
            "DUPLICATE KEY UPDATE, INSERT IGNORE, INSERT OR ...): it cannot tell which rows "
            "it inserts, which it overwrites and which it leaves alone. Read the existing "
            "rows, update those through the Session and insert the others (or use "
            "session.merge())."
        )
