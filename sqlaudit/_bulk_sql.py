"""Auditing a bulk UPDATE or DELETE inside the database, without reading its rows into Python.

:func:`sqlaudit._bulk.do_orm_execute` hands a statement here first. When the
statement's WHERE names only its model's table, the key is one integer or string
column, and every field to record is an integer, string or boolean column (types
whose codec text SQL can spell exactly, see :mod:`sqlaudit._codec`), the change
rows are built by the database:

1. the affected rows' key and fields are copied, locked, into a temporary stage
   table of the connection (``INSERT INTO stage SELECT ... FOR UPDATE``);
2. the caller's statement runs unchanged: its result, ``rowcount`` and the ORM's
   ``synchronize_session`` stay as they are;
3. one ``INSERT ... SELECT`` writes a change row per field, from the stage (DELETE)
   or the stage joined to the table (UPDATE, leaving out values that did not change);
4. the stage is emptied (dropped on MySQL/MariaDB).

With the stage created when missing, that is a constant five statements besides
the caller's, whatever the number of rows, and no row passes through Python.
Anything else takes the read path of :mod:`sqlaudit._bulk`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import (
    CHAR,
    Boolean,
    Column,
    Enum,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    case,
    cast,
    collate,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Dialect, Result
from sqlalchemy.orm import ColumnProperty, Mapper, ORMExecuteState
from sqlalchemy.sql import operators
from sqlalchemy.sql import util as sql_util
from sqlalchemy.sql.elements import (
    BinaryExpression,
    BindParameter,
    BooleanClauseList,
    ColumnElement,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

from sqlaudit._capture import FlushStamp, Operation
from sqlaudit._registry import TrackedModel
from sqlaudit._schema import CHANGE_COLUMNS
from sqlaudit.config import SQLAuditConfig
from sqlaudit.exceptions import BulkStatementError

__all__ = ["Plan", "encoder_for", "plan", "run"]

_DIALECTS = frozenset({"sqlite", "postgresql", "mysql", "mariadb"})

Encoder = Callable[[ColumnElement[Any]], ColumnElement[Any]]


def _text(value: str) -> ColumnElement[str]:
    """Return an SQL string constant (the codec's tags: fixed text, never user data)."""
    return literal_column("'" + value.replace("'", "''") + "'", String())


def _encode_str(column: ColumnElement[Any]) -> ColumnElement[Any]:
    return _text("str:") + column


def _encode_int(column: ColumnElement[Any]) -> ColumnElement[Any]:
    return _text("int:") + cast(column, String())


def _encode_int_sqlite(column: ColumnElement[Any]) -> ColumnElement[Any]:
    # SQLite keeps whatever it is given: a REAL or TEXT in an INTEGER column reads
    # back as float or str, and the codec tags it so.
    kind = func.typeof(column)
    return case(
        (kind == _text("integer"), _text("int:") + cast(column, String())),
        (kind == _text("null"), null()),
        (kind == _text("real"), _text("float:") + func.printf(_text("%!.17g"), column)),
        else_=_text("str:") + cast(column, String()),
    )


def _encode_bool(column: ColumnElement[Any]) -> ColumnElement[Any]:
    return case(
        (column.is_(None), null()),
        (column != false(), _text("bool:true")),
        else_=_text("bool:false"),
    )


def encoder_for(type_: TypeEngine[Any], dialect_name: str) -> Encoder | None:
    """Return the SQL spelling of :func:`sqlaudit._codec.encode` for a column type, or ``None``.

    Only types whose values SQL can encode as Python would: integers, strings (not
    Enum, MySQL SET or blank-padded CHAR) and booleans, with no ``TypeDecorator``.
    (On SQLite a REAL held by an INTEGER column is written with 17 significant
    digits: it decodes to the same float, though its text may differ from ``repr()``.)
    """
    if _padded(type_):
        return None
    if isinstance(type_, Boolean):
        return _encode_bool
    if isinstance(type_, Integer):
        return _encode_int_sqlite if dialect_name == "sqlite" else _encode_int
    if isinstance(type_, String) and not isinstance(type_, (Enum, mysql.SET)):
        return _encode_str
    return None


def _padded(type_: TypeEngine[Any]) -> bool:
    """Tell types SQL would not read back as the driver does (or that hide their own).

    A ``TypeDecorator`` changes values in Python; ``CHAR(n)`` is blank-padded by some
    drivers but not by SQL's string functions; MySQL's ``ZEROFILL`` integers are
    zero-padded as text but not as numbers.
    """
    return isinstance(type_, (TypeDecorator, CHAR)) or bool(getattr(type_, "zerofill", False))


def _key_text(type_: TypeEngine[Any]) -> Encoder | None:
    """Return how a one-column key becomes the stored resource id text (as ``str()`` would)."""
    if _padded(type_) or isinstance(type_, Boolean):
        return None
    if isinstance(type_, Integer):
        return lambda column: cast(column, String())
    if isinstance(type_, String) and not isinstance(type_, (Enum, mysql.SET)):
        return lambda column: column
    return None


@dataclass(frozen=True, slots=True)
class Plan:
    """How one bulk statement is audited in SQL."""

    table: Table
    key: Column[Any]
    key_text: Encoder
    fields: tuple[str, ...]
    columns: tuple[Column[Any], ...]  # the table's column per field
    encoders: tuple[Encoder, ...]
    stage: Table  # columns: k (the key), then c0, c1, ... (one per field)


def _column(mapper: Mapper[Any], table: Table, name: str) -> Column[Any] | None:
    prop = mapper.get_property(name)
    if not isinstance(prop, ColumnProperty) or len(prop.columns) != 1:
        return None
    column = prop.columns[0]
    if not isinstance(column, Column) or column.table is not table:
        return None
    return column


def plan(
    mapper: Mapper[Any],
    tracked: TrackedModel,
    statement: Any,
    fields: Sequence[str],
    connection: Connection,
    config: SQLAuditConfig,
    execution_options: Mapping[str, Any],
) -> Plan | None:
    """Return how to audit ``statement`` in SQL, or ``None`` when it must take the read path.

    ``execution_options``: the statement's own, merged with the session's.
    """
    dialect_name = connection.dialect.name
    if not config.bulk_in_database or dialect_name not in _DIALECTS:
        return None
    if connection.get_execution_options().get("schema_translate_map") or execution_options.get(
        "schema_translate_map"
    ):
        return None  # a temporary table cannot be moved to another schema
    table = mapper.local_table
    if (
        not isinstance(table, Table)
        or mapper.persist_selectable is not table
        or mapper.inherits is not None
        or mapper.polymorphic_on is not None
        or bool(getattr(statement, "_returning", None))
        or len(tracked.primary_key) != 1
        or tracked.resource_id_field not in (None, tracked.primary_key[0])
    ):
        return None
    where = statement.whereclause
    if where is not None and any(
        found is not table for found in sql_util.find_tables(where, check_columns=True)
    ):
        return None  # other tables (UPDATE ... FROM) or aliases: the read path pairs rows
    key = _column(mapper, table, tracked.primary_key[0])
    if key is not None and where is not None and _few_rows(where, key):
        # A handful of rows by key: the read path's three statements cost less than
        # staging's five (a one-row update: about 1.9x plain against 3.5x, PostgreSQL).
        return None
    key_text = None if key is None else _key_text(key.type)
    if key is None or key_text is None:
        return None
    columns: list[Column[Any]] = []
    encoders: list[Encoder] = []
    for name in fields:
        column = _column(mapper, table, name)
        encoder = None if column is None else encoder_for(column.type, dialect_name)
        if column is None or encoder is None:
            return None
        columns.append(column)
        encoders.append(encoder)
    return Plan(
        table,
        key,
        key_text,
        tuple(fields),
        tuple(columns),
        tuple(encoders),
        _stage(table, key, columns, connection.dialect),
    )


# Up to this many rows named by key, a bulk statement takes the read path.
FEW_ROWS = 50


def _few_rows(where: ColumnElement[Any], key: Column[Any]) -> bool:
    """Tell a WHERE that pins at most :data:`FEW_ROWS` rows by key (``key == x``, ``key IN``).

    Read from the clause's public structure: a comparison, or an ``AND`` of clauses
    one of which is such a comparison.
    """
    if isinstance(where, BooleanClauseList):
        return where.operator is operators.and_ and any(
            _few_rows(clause, key) for clause in where.clauses
        )
    if not isinstance(where, BinaryExpression) or not where.left.compare(key):
        return False
    right = where.right
    if where.operator is operators.eq:
        return isinstance(right, BindParameter) and FEW_ROWS >= 1
    if where.operator is operators.in_op and isinstance(right, BindParameter):
        value = right.value
        return isinstance(value, (list, tuple)) and len(value) <= FEW_ROWS
    return False


_stages: WeakKeyDictionary[Table, dict[tuple[Any, ...], Table]] = WeakKeyDictionary()


def _stage(
    table: Table, key: Column[Any], columns: Sequence[Column[Any]], dialect: Dialect
) -> Table:
    """Return the stage table for these columns of ``table`` (declared once).

    The declaration only names the stage and its columns for the statements that
    use it; :func:`_create_stage` creates it as a copy of the table's columns. Its
    name is derived from the table, the columns and their types as the database
    spells them: a stage left on a pooled connection by another table of the same
    name is only reused when it has exactly the same columns.
    """
    spelled = tuple(
        (column.name, str(column.type.compile(dialect=dialect))) for column in (key, *columns)
    )
    cache_key = (dialect.name, spelled)
    by_columns = _stages.setdefault(table, {})
    stage = by_columns.get(cache_key)
    if stage is None:
        digest = hashlib.sha1(repr((table.fullname, cache_key)).encode()).hexdigest()[:20]
        stage = Table(
            f"sqlaudit_stage_{digest}",
            MetaData(),
            Column("k", key.type),
            *(Column(f"c{i}", column.type) for i, column in enumerate(columns)),
        )
        by_columns[cache_key] = stage
    return stage


def run(
    orm_state: ORMExecuteState,
    connection: Connection,
    operation: Operation,
    tracked: TrackedModel,
    plan: Plan,
    invoke: Callable[[], Result[Any]],
    stamp: Callable[[], FlushStamp],
    change_table: Table,
) -> Result[Any]:
    """Stage, run the caller's statement, write the change rows, empty the stage.

    Raises:
        BulkStatementError: the statement changed rows the stage had not seen (rows
            another transaction inserted in between, under READ COMMITTED).
    """
    stage = plan.stage
    if orm_state.execution_options.get("autoflush", True):
        # The ORM flushes pending changes before a bulk statement, but only inside
        # invoke_statement(): the stage must see the rows the statement will see.
        orm_state.session._autoflush()
    _create_stage(connection, plan)
    connection.execute(delete(stage))  # leftovers of a statement that failed midway
    affected = select(plan.key, *plan.columns)
    if orm_state.statement.whereclause is not None:  # type: ignore[attr-defined]
        affected = affected.where(orm_state.statement.whereclause)  # type: ignore[attr-defined]
    # Parameters given at execute time (a bindparam() in the WHERE) apply to the stage too.
    parameters = orm_state.parameters if isinstance(orm_state.parameters, Mapping) else None
    staged = connection.execute(
        insert(stage)
        .from_select([column.name for column in stage.c], affected.with_for_update())
        .execution_options(preserve_rowcount=True),  # an INSERT's rowcount is kept only so
        dict(parameters) if parameters else None,
    ).rowcount
    result = invoke()
    matched = getattr(result, "rowcount", -1)
    if isinstance(matched, int) and matched > staged:
        _empty(connection, stage)
        raise BulkStatementError(
            f"A bulk {operation.value} of {tracked.model.__name__} changed {matched} rows but "
            f"sqlaudit had read {staged} of them: another transaction inserted matching rows "
            "in between (READ COMMITTED). Their change rows cannot be written, so roll back "
            "and retry, or run the transaction at REPEATABLE READ."
        )
    if staged:
        query = _changes(connection.dialect.name, operation, tracked, plan, stamp(), change_table)
        connection.execute(insert(change_table).from_select(list(CHANGE_COLUMNS), query))
        _empty(connection, stage)
    return result


def _create_stage(connection: Connection, plan: Plan) -> None:
    """Create the stage if missing, as a copy of the table's columns (``CREATE ... AS SELECT``).

    Copying the columns keeps their collation and character set (a join or comparison
    between two collations is an error on MySQL/MariaDB and PostgreSQL).
    """
    dialect = connection.dialect
    columns = [plan.key.label("k"), *(c.label(f"c{i}") for i, c in enumerate(plan.columns))]
    query = select(*columns).select_from(plan.table)
    preparer = dialect.identifier_preparer
    name = preparer.format_table(plan.stage)
    if dialect.name == "postgresql":
        # Emptied at every commit: no dead rows pile up in a table autovacuum never visits.
        body = query.compile(dialect=dialect)
        sql = (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {name} ON COMMIT DELETE ROWS "
            f"AS {body} WITH NO DATA"
        )
    else:
        body = query.limit(0).compile(dialect=dialect, compile_kwargs={"literal_binds": True})
        sql = f"CREATE TEMPORARY TABLE IF NOT EXISTS {name} AS {body}"
    connection.exec_driver_sql(sql)


def _empty(connection: Connection, stage: Table) -> None:
    """Empty the stage: MySQL/MariaDB drop it (much faster than a DELETE there)."""
    if connection.dialect.name in ("mysql", "mariadb"):
        # TEMPORARY keeps the drop from committing the transaction.
        name = connection.dialect.identifier_preparer.format_table(stage)
        connection.exec_driver_sql(f"DROP TEMPORARY TABLE IF EXISTS {name}")
    else:
        connection.execute(delete(stage))


def _changes(
    dialect_name: str,
    operation: Operation,
    tracked: TrackedModel,
    plan: Plan,
    stamp: FlushStamp,
    change_table: Table,
) -> Any:
    """Build the SELECT of the change rows (one branch per field, UNION ALL)."""
    stage, table = plan.stage, plan.table
    common_head = (
        literal(stamp.transaction_id, String()),
        literal(tracked.table_name, String()),
        literal(tracked.table_label, String()),
        plan.key_text(stage.c.k),
    )
    common_tail = (
        # Typed binds, NULLs included: a bare NULL in a UNION is text to PostgreSQL.
        literal(stamp.changed_by, String()),
        literal(stamp.changed_at, change_table.c.changed_at.type),
        literal(stamp.extra, change_table.c.extra.type),
    )
    branches = []
    for index, (name, column, encode) in enumerate(
        zip(plan.fields, plan.columns, plan.encoders, strict=True)
    ):
        old = encode(stage.c[f"c{index}"])
        source: Any = stage
        if operation is Operation.DELETE:
            new: ColumnElement[Any] = null()
            condition = ~exists().where(plan.key == stage.c.k)  # rows really gone
        else:
            new = encode(column)
            source = stage.join(table, plan.key == stage.c.k)
            condition = _comparable(old, dialect_name).is_distinct_from(
                _comparable(new, dialect_name)
            )
        branches.append(
            select(
                *common_head,
                literal(name, String()),
                literal(operation.value, String()),
                old,
                new,
                *common_tail,
            )
            .select_from(source)
            .where(condition)
        )
    return branches[0] if len(branches) == 1 else union_all(*branches)


def _comparable(encoded: ColumnElement[Any], dialect_name: str) -> ColumnElement[Any]:
    """Compare encoded values byte for byte, as Python compares them, whatever the collation."""
    if dialect_name in ("mysql", "mariadb"):
        # The 'str:' tag is in the connection's charset, the value in the column's:
        # compare both sides as utf8mb4 bytes, whatever mix CONCAT makes of them.
        return cast(cast(encoded, mysql.CHAR(charset="utf8mb4")), LargeBinary())
    if dialect_name == "postgresql":
        return collate(encoded, "C")
    return encoded
