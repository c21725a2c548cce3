"""PostgreSQL: one statement-level AFTER trigger per operation, over transition tables.

Each INSERT, UPDATE or DELETE statement on a tracked table runs one
``INSERT ... SELECT`` into the change table, whatever the number of rows, by
unpivoting the transition tables (``new_rows``, ``old_rows``) into one row per
tracked field. The three triggers share one PL/pgSQL function.

Who and why come from two transaction-local settings the ORM side sets once per
transaction (``set_config(..., true)``, so nothing outlives the transaction, which
is what makes the design safe behind PgBouncer in transaction mode):
``sqlaudit.transaction_id`` and ``sqlaudit.context`` (JSON: ``changed_by`` and
``extra``). A write that comes with no context (psql, another service) records no
user and the database role in ``extra``; its transaction id is drawn once and kept
in the same transaction-local setting, so every row of that transaction shares it.

An UPDATE that changes a row's resource id (its primary key or its
``resource_id_field``) ends the old resource's life and begins the new one: a
delete and an insert, linked by ``extra["sqlaudit.key_change"]`` as session capture
links them. Rows are paired by primary key; when the key itself changed, the one
row a statement moved is paired, and a statement moving several records unlinked
deletes and inserts.
"""

from __future__ import annotations

from sqlaudit._sql_codec import literal
from sqlaudit._triggers import COLUMNS as _COLUMNS
from sqlaudit._triggers import Plan

__all__ = ["create_sql", "drop_sql", "installed_sql"]

_OPERATIONS = ("INSERT", "UPDATE", "DELETE")


def _function(plan: Plan) -> str:
    name = plan.quote(plan.short_name("fn"))
    schema = plan.table.schema
    return f"{plan.quote(schema)}.{name}" if schema else name


def _trigger(plan: Plan, operation: str) -> str:
    return plan.short_name(operation.lower())


def _values(plan: Plan, *aliases: str) -> str:
    """``VALUES ('field', enc(a.col), enc(b.col)), ...`` over the given row aliases."""
    rows = []
    for field in plan.fields:
        encoded = [field.spell(f"{alias}.{plan.quote(field.column)}") for alias in aliases]
        rows.append("(" + ", ".join([literal(field.name), *encoded]) + ")")
    return "VALUES " + ", ".join(rows)


def _linked(old_id: str, new_id: str, ext: str) -> str:
    link = f"jsonb_build_object('from', {old_id}, 'to', {new_id})"
    return (
        f"jsonb_set(coalesce({ext}, '{{}}'::jsonb), '{{extra}}', coalesce({ext} -> 'extra', "
        f"'{{}}'::jsonb) || jsonb_build_object('sqlaudit.key_change', {link}))"
    )


# A statement that updated more rows than this pairs old and new rows with a plan
# made for its own size (EXECUTE); smaller ones reuse the function's cached plan.
# PL/pgSQL keeps the plan of the first statement it saw, usually one row: a nested
# loop that would turn a bulk UPDATE of thousands of rows quadratic.
_CACHED_PLAN_ROWS = 64


def _update_sql(
    plan: Plan, tx: str, who: str, extj: str, ext: str, *, one_row: bool = False
) -> tuple[str, str, str]:
    """Return (the updates' INSERT, the test for moved keys, the moves' INSERT).

    ``tx``, ``who``, ``extj``, ``ext``: how the statements name the transaction id,
    the user, the extra context as json and as jsonb (variables, or ``$1``...).
    ``one_row``: the statement changed one row, the only possible pair of old and
    new (no join needed, even when its key changed).
    """
    change = plan.qualified(plan.change_table)
    head = f"{tx}, {literal(plan.tracked.table_name)}, {literal(plan.tracked.table_label)}"
    pk_pairs = " AND ".join(f"o.{plan.quote(c)} = n.{plan.quote(c)}" for c in plan.primary_key)
    pk_o = "TRUE" if one_row else pk_pairs
    first_pk = plan.quote(plan.primary_key[0])
    o_key, n_key = plan.key_sql("(p.o)"), plan.key_sql("(p.n)")
    mo_key, mn_key = plan.key_sql("(m.o)"), plan.key_sql("(m.n)")
    linked = _linked(mo_key, mn_key, ext)
    updates = f"""
        INSERT INTO {change} ({_COLUMNS})
        SELECT {head}, {plan.key_sql("o")}, f.name, 'update', f.old, f.new, {who},
               statement_timestamp(), {extj}
        FROM old_rows o JOIN new_rows n ON {pk_o}
             CROSS JOIN LATERAL ({_values(plan, "o", "n")}) AS f(name, old, new)
        WHERE {plan.key_sql("o")} = {plan.key_sql("n")} AND f.old IS DISTINCT FROM f.new"""
    # Counted, not EXISTS: a semi-join would be planned for its first row (a nested loop).
    moved = f"""
        SELECT (SELECT count(*) FROM old_rows) <> (
            SELECT count(*) FROM old_rows o JOIN new_rows n ON {pk_o}
            WHERE {plan.key_sql("o")} = {plan.key_sql("n")})"""
    moves = f"""
        INSERT INTO {change} ({_COLUMNS})
        WITH pairs AS (
            SELECT o, n FROM old_rows o FULL JOIN new_rows n ON {pk_pairs}
        ), lone AS (
            SELECT p.o, p.n FROM pairs p
            WHERE (p.o).{first_pk} IS NULL OR (p.n).{first_pk} IS NULL
        ), single AS (
            SELECT (SELECT count(*) FROM lone l WHERE (l.o).{first_pk} IS NOT NULL) = 1
               AND (SELECT count(*) FROM lone l WHERE (l.n).{first_pk} IS NOT NULL) = 1
               AS paired
        ), moves AS (
            SELECT p.o, p.n FROM pairs p
            WHERE (p.o).{first_pk} IS NOT NULL AND (p.n).{first_pk} IS NOT NULL
              AND {o_key} <> {n_key}
            UNION ALL
            SELECT (SELECT l.o FROM lone l WHERE (l.o).{first_pk} IS NOT NULL),
                   (SELECT l.n FROM lone l WHERE (l.n).{first_pk} IS NOT NULL)
            FROM single WHERE single.paired
            UNION ALL
            SELECT l.o, l.n FROM lone l, single WHERE NOT single.paired
        ), rows AS (
            SELECT 0 AS ord, {mo_key} AS rid, f.name, 'delete' AS op, f.old, NULL AS new,
                   CASE WHEN (m.n).{first_pk} IS NULL THEN {ext} ELSE {linked} END AS ext
            FROM moves m CROSS JOIN LATERAL ({_values(plan, "(m.o)")}) AS f(name, old)
            WHERE (m.o).{first_pk} IS NOT NULL
            UNION ALL
            SELECT 1, {mn_key}, f.name, 'insert', NULL, f.new,
                   CASE WHEN (m.o).{first_pk} IS NULL THEN {ext} ELSE {linked} END
            FROM moves m CROSS JOIN LATERAL ({_values(plan, "(m.n)")}) AS f(name, new)
            WHERE (m.n).{first_pk} IS NOT NULL AND f.new IS NOT NULL
        )
        SELECT {head}, r.rid, r.name, r.op, r.old, r.new, {who}, statement_timestamp(),
               r.ext::json
        FROM rows r ORDER BY r.ord"""
    return updates, moved, moves


def _body(plan: Plan) -> str:
    change = plan.qualified(plan.change_table)
    head = f"tx, {literal(plan.tracked.table_name)}, {literal(plan.tracked.table_label)}"
    one_updates, one_moved, _ = _update_sql(plan, "tx", "who", "extj", "ext", one_row=True)
    updates, moved, moves = _update_sql(plan, "tx", "who", "extj", "ext")
    d_updates, d_moved, d_moves = _update_sql(plan, "$1", "$2", "$3", "$4")
    return f"""
DECLARE
    -- sqlaudit trigger {plan.fingerprint}
    tx text := NULLIF(current_setting('sqlaudit.transaction_id', true), '');
    ctx jsonb := NULLIF(current_setting('sqlaudit.context', true), '')::jsonb;
    who text;
    ext jsonb;
    extj json;
    moved boolean;
    updated bigint;
BEGIN
    IF tx IS NULL THEN
        tx := gen_random_uuid()::text;
        PERFORM set_config('sqlaudit.transaction_id', tx, true);
    END IF;
    IF ctx IS NULL THEN
        ext := jsonb_build_object(
            'extra', jsonb_build_object('sqlaudit.database_role', current_user));
    ELSE
        who := ctx ->> 'changed_by';
        ext := NULLIF(ctx -> 'extra', 'null'::jsonb);
    END IF;
    extj := ext::json;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO {change} ({_COLUMNS})
        SELECT {head}, {plan.key_sql("n")}, f.name, 'insert', NULL, f.new, who,
               statement_timestamp(), extj
        FROM new_rows n CROSS JOIN LATERAL ({_values(plan, "n")}) AS f(name, new)
        WHERE f.new IS NOT NULL;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO {change} ({_COLUMNS})
        SELECT {head}, {plan.key_sql("o")}, f.name, 'delete', f.old, NULL, who,
               statement_timestamp(), extj
        FROM old_rows o CROSS JOIN LATERAL ({_values(plan, "o")}) AS f(name, old);
    ELSE
        updated := (SELECT count(*) FROM new_rows);
    END IF;
    IF updated = 1 THEN
        -- One row (an ORM flush updates row by row): its old and new values pair.
        {one_updates};
        {one_moved} INTO moved;
        IF moved THEN
            {moves};
        END IF;
    ELSIF updated BETWEEN 2 AND {_CACHED_PLAN_ROWS} THEN
        -- Rows that kept their resource id: one row per changed field.
        {updates};
        -- Rows whose resource id changed (rare): the old life ends, a new one begins.
        {moved} INTO moved;
        IF moved THEN
            {moves};
        END IF;
    ELSIF updated > {_CACHED_PLAN_ROWS} THEN
        EXECUTE $sql${d_updates}$sql$ USING tx, who, extj, ext;
        EXECUTE $sql${d_moved}$sql$ INTO moved USING tx, who, extj, ext;
        IF moved THEN
            EXECUTE $sql${d_moves}$sql$ USING tx, who, extj, ext;
        END IF;
    END IF;
    RETURN NULL;
END"""


def create_sql(plan: Plan) -> list[str]:
    """Return the statements that (re)create the function and the three triggers."""
    function = _function(plan)
    table = plan.qualified(plan.table)
    statements = [
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql "
        f"AS $sqlaudit${_body(plan)}$sqlaudit$"
    ]
    for operation in _OPERATIONS:
        name = plan.quote(_trigger(plan, operation))
        referencing = {
            "INSERT": "NEW TABLE AS new_rows",
            "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
            "DELETE": "OLD TABLE AS old_rows",
        }[operation]
        statements.append(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        statements.append(
            f"CREATE TRIGGER {name} AFTER {operation} ON {table} REFERENCING {referencing} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )
    return statements


def drop_sql(plan: Plan) -> list[str]:
    """Return the statements that drop the triggers and their function."""
    table = plan.qualified(plan.table)
    statements = [
        f"DROP TRIGGER IF EXISTS {plan.quote(_trigger(plan, operation))} ON {table}"
        for operation in _OPERATIONS
    ]
    statements.append(f"DROP FUNCTION IF EXISTS {_function(plan)}()")
    return statements


def installed_sql(plan: Plan) -> str:
    """Return a query giving, per installed trigger of the table, its name and fingerprint.

    The query returns (trigger name, function source) rows.
    """
    schema = literal(plan.table.schema) if plan.table.schema else "current_schema()"
    return (
        "SELECT t.tgname, p.prosrc FROM pg_trigger t "
        "JOIN pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_namespace s ON s.oid = c.relnamespace "
        "JOIN pg_proc p ON p.oid = t.tgfoid "
        f"WHERE NOT t.tgisinternal AND c.relname = {literal(plan.table.name)} "
        f"AND s.nspname = {schema} AND t.tgname LIKE 'sqlaudit%'"
    )
