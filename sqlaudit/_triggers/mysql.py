"""MySQL and MariaDB: one row-level AFTER trigger per operation.

Each trigger writes one single-row ``INSERT`` per changed field (a delete: one
multi-row ``INSERT`` of every field): inside a row trigger that is several times
cheaper on MySQL/MariaDB than an ``INSERT ... SELECT`` over a derived table, which
is materialised for every row. Who and why come from
session variables the ORM side sets once per transaction (see
:mod:`sqlaudit._dbcontext`); a write with no context (another client) draws a
transaction id, records no user and the database account in ``extra``.

Every encoded value is converted to ``utf8mb4`` with the binary collation, the
change table's, so tracked columns in other character sets mix in one statement.

MySQL and MariaDB fire no trigger for rows a foreign-key cascade deletes or
changes; :func:`create_sql` takes the cascades that reach tracked tables and the
parent's BEFORE DELETE / BEFORE UPDATE triggers record those child rows (a parent
that is not captured itself gets those two triggers only: :func:`cascade_only_sql`).
One level deep: a child's own cascade to a grandchild is not followed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlaudit._sql_codec import literal
from sqlaudit._triggers import COLUMNS as _COLUMNS
from sqlaudit._triggers import Plan, object_name

__all__ = [
    "Cascade",
    "cascade_only_sql",
    "cascade_trigger_names",
    "create_sql",
    "drop_sql",
    "installed_sql",
    "trigger_names",
]

_NO_CONTEXT_EXTRA = "JSON_OBJECT('extra', JSON_OBJECT('sqlaudit.database_role', CURRENT_USER()))"
_EXTRA = f"IF(@sqlaudit_context IS NULL, {_NO_CONTEXT_EXTRA}, @sqlaudit_extra)"
_WHO = "IF(@sqlaudit_context IS NULL, NULL, @sqlaudit_changed_by)"


@dataclass(frozen=True, slots=True)
class Cascade:
    """A tracked child table a foreign key cascades to from the plan's table.

    ``child``: the child's plan; ``columns``: (child column, parent column) pairs;
    ``on_delete`` / ``on_update``: the referential actions (``CASCADE``,
    ``SET NULL``...) or ``None``.
    """

    child: Plan
    columns: tuple[tuple[str, str], ...]
    on_delete: str | None
    on_update: str | None


def _utf8(sql: str) -> str:
    return f"CONVERT({sql} USING utf8mb4) COLLATE utf8mb4_bin"


def _row(plan: Plan, rid: str, field: str, operation: str, old: str, new: str, extra: str) -> str:
    """Return the VALUES tuple of one change row."""
    return (
        f"(@sqlaudit_transaction_id, {literal(plan.tracked.table_name)}, "
        f"{literal(plan.tracked.table_label)}, {_utf8(rid)}, {_utf8(literal(field))}, "
        f"'{operation}', {old}, {new}, {_WHO}, UTC_TIMESTAMP(6), {extra})"
    )


def _encoded(plan: Plan, alias: str) -> list[tuple[str, str]]:
    """Return (field name, encoded value on row ``alias``) for every tracked field."""
    return [
        (field.name, _utf8(field.spell(f"{alias}.{plan.quote(field.column)}")))
        for field in plan.fields
    ]


def _inserts(plan: Plan, rid: str, extra: str) -> str:
    # One single-row INSERT per field with a value: inside a row trigger this is far
    # cheaper on MySQL/MariaDB than one INSERT ... SELECT over a derived table.
    change = plan.qualified(plan.change_table)
    return " ".join(
        f"IF {value} IS NOT NULL THEN INSERT INTO {change} ({_COLUMNS}) VALUES "
        f"{_row(plan, rid, name, 'insert', 'NULL', value, extra)}; END IF;"
        for name, value in _encoded(plan, "NEW")
    )


def _deletes(plan: Plan, rid: str, extra: str) -> str:
    change = plan.qualified(plan.change_table)
    rows = ", ".join(
        _row(plan, rid, name, "delete", value, "NULL", extra)
        for name, value in _encoded(plan, "OLD")
    )
    return f"INSERT INTO {change} ({_COLUMNS}) VALUES {rows};"


def _updates(plan: Plan, rid: str) -> str:
    change = plan.qualified(plan.change_table)
    pairs = zip(_encoded(plan, "OLD"), _encoded(plan, "NEW"), strict=True)
    return " ".join(
        f"IF NOT ({old} <=> {new}) THEN INSERT INTO {change} ({_COLUMNS}) VALUES "
        f"{_row(plan, rid, name, 'update', old, new, _EXTRA)}; END IF;"
        for (name, old), (_, new) in pairs
    )


def _linked(old_id: str, new_id: str) -> str:
    link = f"JSON_OBJECT('sqlaudit.key_change', JSON_OBJECT('from', {old_id}, 'to', {new_id}))"
    return (
        f"JSON_SET(COALESCE({_EXTRA}, JSON_OBJECT()), '$.extra', JSON_MERGE_PATCH("
        f"COALESCE(JSON_EXTRACT({_EXTRA}, '$.extra'), JSON_OBJECT()), {link}))"
    )


_START = "IF @sqlaudit_transaction_id IS NULL THEN SET @sqlaudit_transaction_id = UUID(); END IF;"


def _matches(cascade: Cascade, parent: str, child: str = "c") -> str:
    return " AND ".join(
        f"{child}.{cascade.child.quote(c)} = {parent}.{cascade.child.quote(p)}"
        for c, p in cascade.columns
    )


def _cascade_sql(quote: Callable[[str], str], cascade: Cascade, operation: str) -> str:
    """Return the statements recording the child rows a parent DELETE/UPDATE cascades to.

    ``quote`` quotes the parent's column names.
    """
    child = cascade.child
    table = child.qualified(child.table)
    action = cascade.on_delete if operation == "delete" else cascade.on_update
    if action not in ("CASCADE", "SET NULL"):
        return ""
    where = _matches(cascade, "OLD")
    if operation == "update":
        changed = " OR ".join(
            f"NOT (OLD.{quote(p)} <=> NEW.{quote(p)})" for _, p in cascade.columns
        )
        where = f"({changed}) AND {where}"
    fields = {field.column: field for field in child.fields}
    if operation == "delete" and action == "CASCADE":
        # Every tracked field of each child row, with its last value.
        # MariaDB has no LATERAL: the fields are unpivoted by a join with their numbers.
        numbers = " UNION ALL ".join(f"SELECT {i} AS n" for i in range(len(child.fields)))
        name = " ".join(
            f"WHEN {i} THEN {_utf8(literal(f.name))}" for i, f in enumerate(child.fields)
        )
        value = " ".join(
            f"WHEN {i} THEN {_utf8(f.spell(f'c.{child.quote(f.column)}'))}"
            for i, f in enumerate(child.fields)
        )
        rid = child.key_sql("c")
        return (
            f"INSERT INTO {child.qualified(child.change_table)} ({_COLUMNS}) "
            f"SELECT @sqlaudit_transaction_id, {literal(child.tracked.table_name)}, "
            f"{literal(child.tracked.table_label)}, {_utf8(rid)}, CASE k.n {name} END, "
            f"'delete', CASE k.n {value} END, NULL, {_WHO}, UTC_TIMESTAMP(6), {_EXTRA} "
            f"FROM {table} AS c CROSS JOIN ({numbers}) AS k WHERE {where} "
            f"ORDER BY c.{child.quote(child.primary_key[0])}, k.n;"
        )
    # SET NULL (delete or update) or CASCADE (update): the foreign-key columns change.
    parts = []
    for child_column, parent_column in cascade.columns:
        field = fields.get(child_column)
        if field is None:
            continue
        new_value = "NULL" if action == "SET NULL" else f"NEW.{quote(parent_column)}"
        old_sql = _utf8(field.spell(f"c.{child.quote(child_column)}"))
        new_sql = _utf8(field.spell(new_value)) if new_value != "NULL" else "NULL"
        parts.append(
            f"INSERT INTO {child.qualified(child.change_table)} ({_COLUMNS}) "
            f"SELECT @sqlaudit_transaction_id, {literal(child.tracked.table_name)}, "
            f"{literal(child.tracked.table_label)}, {_utf8(child.key_sql('c'))}, "
            f"{literal(field.name)}, 'update', {old_sql}, {new_sql}, {_WHO}, UTC_TIMESTAMP(6), "
            f"{_EXTRA} FROM {table} AS c WHERE {where} AND NOT ({old_sql} <=> {new_sql});"
        )
    return "\n".join(parts)


def trigger_names(plan: Plan) -> dict[str, str]:
    """Return the trigger name per (timing, operation) key, within MySQL's 64 characters."""
    return {
        key: plan.short_name(key.replace(" ", "_").lower(), limit=64)
        for key in (
            "AFTER INSERT",
            "AFTER UPDATE",
            "AFTER DELETE",
            "BEFORE UPDATE",
            "BEFORE DELETE",
        )
    }


def create_sql(plan: Plan, cascades: tuple[Cascade, ...] = ()) -> list[str]:
    """Return the statements that (re)create the table's triggers."""
    table = plan.qualified(plan.table)
    names = trigger_names(plan)
    mark = f"/* sqlaudit trigger {plan.fingerprint} */"
    new_id, old_id = plan.key_sql("NEW"), plan.key_sql("OLD")
    linked = _linked(old_id, new_id)
    bodies = {
        "AFTER INSERT": _inserts(plan, new_id, _EXTRA),
        "AFTER DELETE": _deletes(plan, old_id, _EXTRA),
        "AFTER UPDATE": (
            f"IF {old_id} <=> {new_id} THEN {_updates(plan, new_id)} "
            f"ELSE {_deletes(plan, old_id, linked)} {_inserts(plan, new_id, linked)} END IF;"
        ),
    }
    bodies.update(_before_bodies(plan.quote, cascades))
    statements = [f"DROP TRIGGER IF EXISTS {plan.quote(name)}" for name in names.values()]
    for key, body in bodies.items():
        statements.append(
            f"CREATE TRIGGER {plan.quote(names[key])} {key} ON {table} FOR EACH ROW "
            f"BEGIN {mark} {_START} {body} END"
        )
    return statements


def _before_bodies(quote: Callable[[str], str], cascades: Sequence[Cascade]) -> dict[str, str]:
    bodies = {}
    for key, operation in (("BEFORE DELETE", "delete"), ("BEFORE UPDATE", "update")):
        body = "\n".join(filter(None, (_cascade_sql(quote, c, operation) for c in cascades)))
        if body:
            bodies[key] = body
    return bodies


def cascade_trigger_names(table: str, fullname: str) -> dict[str, str]:
    """Return the BEFORE trigger names of a parent table (as :func:`trigger_names` gives them)."""
    return {
        key: object_name(table, fullname, key.replace(" ", "_").lower(), 64)
        for key in ("BEFORE UPDATE", "BEFORE DELETE")
    }


def cascade_only_sql(
    table: str,
    schema: str | None,
    cascades: Sequence[Cascade],
    quote: Callable[[str], str],
) -> list[str]:
    """Return the statements that (re)create the cascade triggers of a parent table.

    For a parent that is not itself captured in the database: its BEFORE DELETE and
    BEFORE UPDATE triggers only record the tracked child rows its foreign keys
    cascade to (none left: the triggers are only dropped).
    """
    fullname = f"{schema}.{table}" if schema else table
    qualified = f"{quote(schema)}.{quote(table)}" if schema else quote(table)
    names = cascade_trigger_names(table, fullname)
    statements = [f"DROP TRIGGER IF EXISTS {quote(name)}" for name in names.values()]
    for key, body in _before_bodies(quote, cascades).items():
        statements.append(
            f"CREATE TRIGGER {quote(names[key])} {key} ON {qualified} FOR EACH ROW "
            f"BEGIN /* sqlaudit cascades */ {_START} {body} END"
        )
    return statements


def drop_sql(plan: Plan) -> list[str]:
    """Return the statements that drop the table's triggers."""
    return [f"DROP TRIGGER IF EXISTS {plan.quote(name)}" for name in trigger_names(plan).values()]


def installed_sql(plan: Plan) -> str:
    """Return a query of (trigger name, trigger body) for the table's sqlaudit triggers."""
    schema = literal(plan.table.schema) if plan.table.schema else "DATABASE()"
    return (
        "SELECT TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS "
        f"WHERE EVENT_OBJECT_SCHEMA = {schema} "
        f"AND EVENT_OBJECT_TABLE = {literal(plan.table.name)} "
        "AND TRIGGER_NAME LIKE 'sqlaudit%'"
    )
