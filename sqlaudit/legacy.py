"""History recorded by sqlaudit 0.7, copied into the change table.

sqlaudit 0.7 (an unrelated earlier project with the same import name) kept its
history in four tables: ``SQLAuditTables``, ``SQLAuditFields``, ``SQLAuditLogs``
(one record per object and flush: who, when, why) and ``SQLAuditFieldChanges``
(one row per changed field, values as plain text). :func:`import_legacy_history`
copies every record into the change table, one change row per field change, so
:func:`~sqlaudit.get_resource_changes` returns it with the rest::

    from sqlaudit.legacy import import_legacy_history

    set_config(SQLAuditConfig(session_factory=SessionLocal))
    # import the modules that declare your @track_table models first: their column
    # types turn 0.7's text back into ints, datetimes, UUIDs, ...
    report = import_legacy_history(engine)
    print(report.records_imported, report.rows_written)

It is idempotent and resumable: each record becomes one transaction id (its
``record_id``), each batch of records is committed on its own, and records whose
transaction id is already in the change table are skipped, so an interrupted run
is finished by running it again. The 0.7 tables are only read, never changed.

How 0.7's rows map to change rows:

* ``transaction_id``: the record's ``record_id`` (a UUID), so the rows of one
  0.7 record share it;
* ``operation``: ``insert`` when every field of the record had no old value,
  otherwise ``update`` (0.7 recorded no deletes);
* values: 0.7 stored text without its type. When a model tracked with
  ``@track_table`` maps the table, the column's Python type decodes the text as 0.7
  encoded it (``"1"``/``"0"`` for booleans, ISO 8601 for dates, JSON for dicts and
  lists, and types given to :func:`~sqlaudit.register_type`); otherwise, or when
  the text does not decode, the text itself is kept. An empty text is no value;
* ``changed_by``: as stored, except 0.7's ``"None"`` (written when no user was
  known), which is no user;
* ``changed_at``: 0.7's naive timestamp, read in ``source_time_zone`` (UTC, which
  0.7 wrote, unless the database converted it to its own zone);
* ``reason`` is kept as the reason, ``impersonated_by`` in ``extra``.

Rows are written in the order of the 0.7 records (whose ``record_id`` values are
time-ordered). Run the import before the application records new changes:
histories are listed in the order rows were written, so rows imported later list
as newer than changes recorded before the import.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import JSON, MetaData, Table, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection, Engine

from sqlaudit import _codec, _registry, _schema
from sqlaudit._registry import TrackedModel
from sqlaudit.config import SQLAuditConfig, get_config
from sqlaudit.exceptions import ConfigurationError, ConfigurationTypeError

__all__ = ["LEGACY_TABLES", "LegacyImport", "import_legacy_history"]

LEGACY_TABLES = ("SQLAuditTables", "SQLAuditFields", "SQLAuditLogs", "SQLAuditFieldChanges")
"""The names of sqlaudit 0.7's tables, as it created them."""


@dataclass(frozen=True, slots=True)
class LegacyImport:
    """What one :func:`import_legacy_history` run did.

    Attributes:
        records_seen: 0.7 records read.
        records_imported: Records copied by this run.
        records_skipped: Records already in the change table (an earlier run).
        rows_written: Change rows written by this run.
        batches: Batches committed.

    Example:
        >>> LegacyImport(3, 2, 1, 5, 1).records_imported
        2
    """

    records_seen: int
    records_imported: int
    records_skipped: int
    rows_written: int
    batches: int


def import_legacy_history(
    engine: Engine,
    *,
    config: SQLAuditConfig | None = None,
    batch_size: int = 500,
    source_time_zone: str | tzinfo = "UTC",
    legacy_schema: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> LegacyImport:
    """Copy the history kept in sqlaudit 0.7's tables into the change table.

    Args:
        engine: The database holding both the 0.7 tables and the change table.
        config: Whose change table to write (default: the one set with
            :func:`~sqlaudit.set_config`). The table is created if missing.
        batch_size: 0.7 records per committed batch.
        source_time_zone: The zone of 0.7's naive timestamps (IANA name or tzinfo).
        legacy_schema: The schema of the 0.7 tables (default: the default schema).
        progress: Called after each committed batch with the number of records read so far.

    Returns:
        What was read, copied and skipped.

    Raises:
        ConfigurationTypeError: ``engine`` is not an Engine, or ``batch_size`` is not a
            positive int.
        ConfigurationError: the 0.7 tables are not there, or the time zone is unknown.
        NotConfiguredError: no ``config`` given and none set.

    Example:
        >>> report = import_legacy_history(engine)  # doctest: +SKIP
        >>> report.records_imported, report.records_skipped  # doctest: +SKIP
        (120, 0)
    """
    if not isinstance(engine, Engine):
        raise ConfigurationTypeError(
            f"import_legacy_history() takes an Engine (create_engine(url)), not "
            f"{type(engine).__name__}: each batch is committed on a connection of its own."
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigurationTypeError(
            f"import_legacy_history(batch_size={batch_size!r}): pass a positive int, "
            "the number of 0.7 records per committed batch."
        )
    zone = _zone(source_time_zone)
    config = get_config() if config is None else config
    legacy = _reflect(engine, legacy_schema)
    _schema.create_change_table(config.table, engine)
    decoders = _Decoders()
    seen = imported = skipped = written = batches = 0
    last: Any = None
    while True:
        with engine.begin() as connection:
            records = _next_records(connection, legacy, last, batch_size)
            if not records:
                break
            last = records[-1].record_id
            seen += len(records)
            done = _already_imported(connection, config, records)
            todo = [record for record in records if _transaction_id(record.record_id) not in done]
            skipped += len(records) - len(todo)
            rows = _change_rows(connection, legacy, todo, zone, decoders)
            _schema.write_changes(connection, config.table, rows)
            imported += len(todo)
            written += len(rows)
            batches += 1
        if progress is not None:
            progress(seen)
    return LegacyImport(seen, imported, skipped, written, batches)


def _zone(value: str | tzinfo) -> tzinfo:
    if isinstance(value, tzinfo):
        return value
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigurationError(
            f"import_legacy_history(source_time_zone={value!r}) is not a known IANA time "
            "zone: pass the zone of 0.7's timestamps, such as 'UTC' (what 0.7 wrote)."
        ) from None


def _reflect(engine: Engine, schema: str | None) -> dict[str, Table]:
    metadata = MetaData(schema=schema)
    with engine.connect() as connection:
        present = set(sa_inspect(connection).get_table_names(schema=schema))
        missing = [name for name in LEGACY_TABLES if name not in present]
        if missing:
            where = f"schema {schema!r}" if schema else "the default schema"
            raise ConfigurationError(
                f"import_legacy_history(): the sqlaudit 0.7 table(s) {', '.join(missing)} "
                f"are not in {where} of {engine.url.render_as_string(hide_password=True)}; "
                "pass the engine of the database 0.7 wrote to (and legacy_schema= if its "
                "tables are in another schema)."
            )
        metadata.reflect(connection, only=list(LEGACY_TABLES))
    return {table.name: table for table in metadata.tables.values()}


def _next_records(
    connection: Connection, legacy: Mapping[str, Table], after: Any, limit: int
) -> Sequence[Any]:
    logs = legacy["SQLAuditLogs"]
    tables = legacy["SQLAuditTables"]
    query = (
        select(
            logs.c.record_id,
            logs.c.resource_id,
            logs.c.timestamp,
            logs.c.changed_by,
            logs.c.impersonated_by,
            logs.c.reason,
            tables.c.table_name,
            tables.c.label,
        )
        .join(tables, tables.c.table_id == logs.c.table_id)
        .order_by(logs.c.record_id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(logs.c.record_id > after)
    return connection.execute(query).all()


def _transaction_id(record_id: Any) -> str:
    try:
        return str(record_id if isinstance(record_id, UUID) else UUID(str(record_id)))
    except ValueError:
        return str(record_id)


def _already_imported(
    connection: Connection, config: SQLAuditConfig, records: Sequence[Any]
) -> set[str]:
    table = config.table
    ids = [_transaction_id(record.record_id) for record in records]
    query = select(table.c.transaction_id).where(table.c.transaction_id.in_(ids)).distinct()
    return set(connection.execute(query).scalars())


def _change_rows(
    connection: Connection,
    legacy: Mapping[str, Table],
    records: Sequence[Any],
    zone: tzinfo,
    decoders: _Decoders,
) -> list[tuple[Any, ...]]:
    if not records:
        return []
    changes = legacy["SQLAuditFieldChanges"]
    fields = legacy["SQLAuditFields"]
    query = (
        select(changes.c.record_id, fields.c.field_name, changes.c.old_value, changes.c.new_value)
        .join(fields, fields.c.field_id == changes.c.field_id)
        .where(changes.c.record_id.in_([record.record_id for record in records]))
        .order_by(changes.c.change_id)
    )
    by_record: dict[str, list[Any]] = {}
    for change in connection.execute(query):
        by_record.setdefault(_transaction_id(change.record_id), []).append(change)
    rows: list[tuple[Any, ...]] = []
    for record in records:
        transaction_id = _transaction_id(record.record_id)
        fields_changed = by_record.get(transaction_id, [])
        tracked = decoders.tracked(record.table_name)
        operation = "insert" if all(_blank(c.old_value) for c in fields_changed) else "update"
        table_name = tracked.table_name if tracked is not None else record.table_name
        label = record.label or (tracked.table_label if tracked is not None else record.table_name)
        changed_at = record.timestamp
        if changed_at.tzinfo is None:
            changed_at = changed_at.replace(tzinfo=zone)
        changed_at = changed_at.astimezone(UTC)
        extra = _extra(record.reason, record.impersonated_by)
        for change in fields_changed:
            decode = decoders.decoder(record.table_name, change.field_name)
            rows.append(
                (
                    transaction_id,
                    table_name,
                    label,
                    str(record.resource_id),
                    change.field_name,
                    operation,
                    _codec.encode(_value(change.old_value, decode)),
                    _codec.encode(_value(change.new_value, decode)),
                    _user(record.changed_by),
                    changed_at,
                    extra,
                )
            )
    return rows


def _blank(value: str | None) -> bool:
    return value is None or value == ""


def _user(value: str | None) -> str | None:
    return None if value is None or value in ("", "None") else value


def _extra(reason: str | None, impersonated_by: str | None) -> dict[str, Any] | None:
    stored: dict[str, Any] = {}
    if reason:
        stored["reason"] = reason
    impersonator = _user(impersonated_by)
    if impersonator is not None:
        stored["extra"] = {"impersonated_by": impersonator}
    return stored or None


def _value(text: str | None, decode: Callable[[str], Any] | None) -> Any:
    if _blank(text):
        return None
    assert text is not None
    if decode is None:
        return text
    try:
        return decode(text)
    except Exception:  # text 0.7 did not write as the column's type: keep it as it is
        return text


# How 0.7 turned each type into text (its Serializer), reversed.
_LEGACY_DECODERS: dict[type[Any], Callable[[str], Any]] = {
    str: lambda text: text,
    int: int,
    float: float,
    bool: lambda text: text == "1",
    datetime: datetime.fromisoformat,
    date: date.fromisoformat,
    dict: json.loads,
    list: json.loads,
    UUID: UUID,
}


class _Decoders:
    """Per 0.7 table and field, how to read its text back, from today's tracked models."""

    def __init__(self) -> None:
        self._tracked: dict[str, TrackedModel | None] = {}
        self._decoders: dict[tuple[str, str], Callable[[str], Any] | None] = {}

    def tracked(self, table_name: str) -> TrackedModel | None:
        if table_name not in self._tracked:
            found = None
            for model in _registry.models():
                tracked = _registry.lookup(model)
                if tracked is not None and sa_inspect(model).local_table.name == table_name:
                    found = tracked
                    break
            self._tracked[table_name] = found
        return self._tracked[table_name]

    def decoder(self, table_name: str, field_name: str) -> Callable[[str], Any] | None:
        key = (table_name, field_name)
        if key not in self._decoders:
            self._decoders[key] = self._find(table_name, field_name)
        return self._decoders[key]

    def _find(self, table_name: str, field_name: str) -> Callable[[str], Any] | None:
        tracked = self.tracked(table_name)
        if tracked is None:
            return None
        columns = sa_inspect(tracked.model).columns
        if field_name not in columns:
            return None
        column_type = columns[field_name].type
        if isinstance(column_type, JSON):
            return json.loads
        try:
            python_type = column_type.python_type
        except NotImplementedError:
            return None
        custom = _codec.registered_types()
        for cls in python_type.__mro__:
            if cls in custom:
                return custom[cls]
        return _LEGACY_DECODERS.get(python_type)
