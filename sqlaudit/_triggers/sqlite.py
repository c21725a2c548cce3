"""SQLite: row-level AFTER triggers, one per operation and one for moved keys.

Update triggers fire only when a tracked or key column is assigned (``UPDATE OF``);
the one for rows that keep their resource id and the one for rows whose id changed
are told apart by their ``WHEN`` clause, so neither tests the other's case.

Each trigger writes the changed fields of its row with one ``INSERT ... SELECT``
over a derived table that unpivots the tracked columns, joined to the context
table's one row (``<change table>_context``: transaction id, user, extra). SQLite
has a single writer at a time, so one row serves whichever connection writes; the
ORM side fills it inside the transaction and deletes it before commit
(:mod:`sqlaudit._dbcontext`). A write with no context (another program) creates
the row with a new transaction id, no user and ``extra`` naming no database role
(SQLite has none).

Foreign-key cascades fire SQLite's triggers (with ``PRAGMA foreign_keys=ON``), so
rows a cascade deletes or changes are recorded by the child's own triggers.
"""

from __future__ import annotations

from sqlaudit._sql_codec import literal
from sqlaudit._triggers import COLUMNS as _COLUMNS
from sqlaudit._triggers import Plan

__all__ = ["context_table_sql", "create_sql", "drop_sql", "installed_sql"]

_UUID4 = (
    "lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || "
    "substr(lower(hex(randomblob(2))), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) "
    "|| substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6)))"
)
_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'"
_NO_CONTEXT_EXTRA = "json_object('extra', json_object('sqlaudit.database_role', NULL))"


def context_table_sql(plan: Plan, name: str) -> str:
    """Return the CREATE statement of the context table (if missing)."""
    return (
        f"CREATE TABLE IF NOT EXISTS {plan.quote(name)} (id INTEGER PRIMARY KEY CHECK (id = 1), "
        "transaction_id TEXT NOT NULL, changed_by TEXT, extra TEXT, "
        "no_context INTEGER NOT NULL DEFAULT 0)"
    )


def _derived(plan: Plan, *aliases: str) -> str:
    selects = []
    names = ("name", "old", "new") if len(aliases) == 2 else ("name", "val")
    for field in plan.fields:
        values = [literal(field.name)]
        values += [field.spell(f"{alias}.{plan.quote(field.column)}") for alias in aliases]
        selects.append(
            "SELECT " + ", ".join(f"{v} AS {n}" for v, n in zip(values, names, strict=True))
        )
    return "(" + " UNION ALL ".join(selects) + ")"


def _insert(
    plan: Plan, context: str, rid: str, operation: str, source: str, where: str, extra: str
) -> str:
    change = plan.quote(plan.change_table.name)
    old = "v.old" if operation == "update" else ("v.val" if operation == "delete" else "NULL")
    new = "v.new" if operation == "update" else ("v.val" if operation == "insert" else "NULL")
    return (
        f"INSERT INTO {change} ({_COLUMNS}) SELECT x.transaction_id, "
        f"{literal(plan.tracked.table_name)}, {literal(plan.tracked.table_label)}, {rid}, "
        f"v.name, '{operation}', {old}, {new}, x.changed_by, {_NOW}, {extra} "
        f"FROM {source} AS v, {context} AS x WHERE x.id = 1{where};"
    )


def _linked(old_id: str, new_id: str) -> str:
    link = f"json_object('sqlaudit.key_change', json_object('from', {old_id}, 'to', {new_id}))"
    return (
        "json_set(coalesce(x.extra, '{}'), '$.extra', "
        f"json_patch(coalesce(json_extract(x.extra, '$.extra'), '{{}}'), {link}))"
    )


def trigger_names(plan: Plan) -> dict[str, str]:
    """Return the trigger name per operation."""
    operations = ("INSERT", "UPDATE", "MOVE", "DELETE")
    return {op: plan.short_name(op.lower(), limit=200) for op in operations}


def create_sql(plan: Plan, context_table: str) -> list[str]:
    """Return the statements that (re)create the table's triggers."""
    context = plan.quote(context_table)
    start = (
        f"INSERT OR IGNORE INTO {context} (id, transaction_id, extra, no_context) "
        f"VALUES (1, {_UUID4}, {_NO_CONTEXT_EXTRA}, 1);"
    )
    new_id, old_id = plan.key_sql("NEW"), plan.key_sql("OLD")
    linked = _linked(old_id, new_id)
    inserts = _derived(plan, "NEW")
    bodies = {
        "INSERT": _insert(
            plan, context, new_id, "insert", inserts, " AND v.val IS NOT NULL", "x.extra"
        ),
        "DELETE": _insert(plan, context, old_id, "delete", _derived(plan, "OLD"), "", "x.extra"),
        "UPDATE": _insert(
            plan,
            context,
            new_id,
            "update",
            _derived(plan, "OLD", "NEW"),
            " AND v.old IS NOT v.new",
            "x.extra",
        ),
        "MOVE": " ".join(
            (
                _insert(plan, context, old_id, "delete", _derived(plan, "OLD"), "", linked),
                _insert(plan, context, new_id, "insert", inserts, " AND v.val IS NOT NULL", linked),
            )
        ),
    }
    # Updates fire only when a tracked or key column is assigned; one that keeps the
    # resource id records its changed fields, one that changes it a delete and an insert.
    watched = dict.fromkeys([*(field.column for field in plan.fields), *plan.key_columns])
    columns = ", ".join(plan.quote(name) for name in watched)
    events = {
        "INSERT": "AFTER INSERT",
        "DELETE": "AFTER DELETE",
        "UPDATE": f"AFTER UPDATE OF {columns}",
        "MOVE": f"AFTER UPDATE OF {columns}",
    }
    when = {"UPDATE": f" WHEN {old_id} IS {new_id}", "MOVE": f" WHEN {old_id} IS NOT {new_id}"}
    table = plan.qualified(plan.table)
    names = trigger_names(plan)
    statements = [f"DROP TRIGGER IF EXISTS {plan.quote(name)}" for name in names.values()]
    for operation, body in bodies.items():
        statements.append(
            f"CREATE TRIGGER {plan.quote(names[operation])} {events[operation]} ON {table} "
            f"FOR EACH ROW{when.get(operation, '')} BEGIN -- sqlaudit trigger {plan.fingerprint}\n"
            f"{start} {body} END"
        )
    return statements


def drop_sql(plan: Plan) -> list[str]:
    """Return the statements that drop the table's triggers."""
    return [f"DROP TRIGGER IF EXISTS {plan.quote(name)}" for name in trigger_names(plan).values()]


def installed_sql(plan: Plan) -> str:
    """Return a query of (trigger name, trigger SQL) for the table's sqlaudit triggers."""
    return (
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
        f"AND tbl_name = {literal(plan.table.name)} AND name LIKE 'sqlaudit%'"
    )
