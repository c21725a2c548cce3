"""Database capture: the triggers that write change rows inside the database.

A :class:`Plan` holds everything one tracked table's triggers need (its columns,
how each tracked value and the resource id are spelled in SQL, the change table)
and a fingerprint of it. One module per database turns a plan into DDL:
:mod:`.postgresql` (statement-level triggers over transition tables),
:mod:`.mysql` (row-level triggers, MySQL and MariaDB) and :mod:`.sqlite`
(row-level triggers). Each trigger carries the fingerprint in its text, so
:func:`sqlaudit.triggers.check_triggers` can tell a trigger written for other
tracked fields, or for another column type, from a current one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Dialect

from sqlaudit import _sql_codec
from sqlaudit._registry import TrackedModel
from sqlaudit._schema import CHANGE_COLUMNS
from sqlaudit._sql_codec import Spelling
from sqlaudit.exceptions import TriggerTypeError

__all__ = ["COLUMNS", "VERSION", "Field", "Plan", "object_name", "plan_for"]

# The change table's columns every trigger fills, in the order of the Python writer.
COLUMNS = ", ".join(CHANGE_COLUMNS)

# Bumped whenever the generated SQL changes meaning: installed triggers of another
# version are reported as drift.
VERSION = "1"


@dataclass(frozen=True, slots=True)
class Field:
    """One tracked field: its attribute name, its column name and its SQL encoding."""

    name: str
    column: str
    spell: Spelling


@dataclass(frozen=True, slots=True)
class Plan:
    """What the triggers of one tracked table are made of."""

    tracked: TrackedModel
    table: Table
    dialect: str
    fields: tuple[Field, ...]
    key_columns: tuple[str, ...]  # the resource id's columns
    primary_key: tuple[str, ...]  # the row's primary key columns
    spell_key: Spelling  # "\x00"-joined SQL of the key columns -> SQL of the resource id
    change_table: Table
    fingerprint: str

    def quote(self, name: str) -> str:
        """Quote an identifier for this plan's dialect."""
        return _QUOTE[self.dialect](name)

    def qualified(self, table: Table) -> str:
        """Return the quoted, schema-qualified name of ``table``."""
        name = self.quote(table.name)
        return f"{self.quote(table.schema)}.{name}" if table.schema else name

    def key_sql(self, alias: str) -> str:
        """Return the SQL of the resource id of the row ``alias`` (``NEW``, ``o``...)."""
        return self.spell_key("\x00".join(f"{alias}.{self.quote(c)}" for c in self.key_columns))

    def short_name(self, suffix: str, limit: int = 63) -> str:
        """Return a trigger or function name for this table, within ``limit`` characters."""
        return object_name(self.table.name, self.table.fullname, suffix, limit)


def object_name(table: str, fullname: str, suffix: str, limit: int) -> str:
    """Return the name of a trigger (or function) of ``table``, within ``limit`` characters.

    Example:
        >>> object_name("customers", "customers", "insert", 63)
        'sqlaudit_customers_insert'
    """
    base = f"sqlaudit_{table}_{suffix}"
    if len(base) <= limit:
        return base
    digest = hashlib.sha1(fullname.encode()).hexdigest()[:8]
    return f"sqlaudit_{table[: limit - 20 - len(suffix)]}_{digest}_{suffix}"


def _quote_double(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_backtick(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


_QUOTE = {
    "postgresql": _quote_double,
    "sqlite": _quote_double,
    "mysql": _quote_backtick,
    "mariadb": _quote_backtick,
}


def plan_for(tracked: TrackedModel, dialect: Dialect, change_table: Table) -> Plan:
    """Build the trigger plan of ``tracked`` for ``dialect``.

    Raises:
        TriggerTypeError: a tracked column or a key column has a type the database
            cannot encode exactly like the Python codec.
    """
    name = dialect.name
    mapper: Any = sa_inspect(tracked.model)
    table: Table = mapper.local_table
    model = tracked.model.__name__
    fields = []
    for field_name in tracked.fields + tracked.key_fields:
        if mapper.columns[field_name].table is not table:
            raise TriggerTypeError(
                f"{model}.{field_name} is a column of {mapper.columns[field_name].table}, not "
                f"of {table.fullname}: a trigger on {table.fullname} cannot see it (joined-table "
                f"inheritance). Track {model} with session capture "
                "(track_table(..., capture='session')), or track that field on the model "
                "mapped to its own table."
            )
    for field_name in tracked.fields:
        column = mapper.columns[field_name]
        spell = _sql_codec.value_sql(column.type, name, f"{model}.{field_name}")
        fields.append(Field(field_name, column.name, spell))
    key_names = tracked.key_fields
    key_columns = tuple(mapper.columns[key].name for key in key_names)
    spell_key = _sql_codec.key_sql(
        [mapper.columns[key].type for key in key_names], name, f"{model}.{', '.join(key_names)}"
    )
    primary_key = tuple(column.name for column in table.primary_key.columns)
    digest = hashlib.sha256()
    for part in (
        VERSION,
        name,
        table.fullname,
        tracked.table_name,
        tracked.table_label,
        change_table.fullname,
        *(f"{f.name}={f.column}:{f.spell('x')}" for f in fields),
        *key_columns,
        "|",
        *primary_key,
    ):
        digest.update(part.encode())
        digest.update(b"\x00")
    return Plan(
        tracked=tracked,
        table=table,
        dialect=name,
        fields=tuple(fields),
        key_columns=key_columns,
        primary_key=primary_key,
        spell_key=spell_key,
        change_table=change_table,
        fingerprint=digest.hexdigest()[:16],
    )
