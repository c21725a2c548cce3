"""The change table in an application's Alembic migrations (needs the ``alembic`` extra).

Alembic's autogenerate compares the database with ``target_metadata``. The change
table is not in the application's metadata, so without help autogenerate emits
``op.drop_table("sqlaudit_changes")``; and a change table added naively renders
sqlaudit's own column type as ``sqlaudit._schema.UTCDateTime()``, a private name the
migration never imports. Two ways out, both set in ``env.py``:

**Migrations manage the change table** (then ``SQLAuditConfig(create_table=False)``)::

    import sqlaudit.alembic
    from myapp.models import Base

    target_metadata = Base.metadata
    sqlaudit.alembic.include_change_table(target_metadata)

    def run_migrations_online() -> None:
        ...
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_item=sqlaudit.alembic.render_item,
        )

The first ``alembic revision --autogenerate`` then creates the table and its
indexes with SQLAlchemy's own types only (the migration imports ``sqlalchemy`` and
``sqlalchemy.dialects.mysql``, never sqlaudit), and later ones leave it alone.

**sqlaudit manages it** (``set_config()`` creates it, the default): keep it out of
the comparison, so that autogenerate neither drops nor creates it::

    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=sqlaudit.alembic.include_object,
    )

The generated columns that index long keys (``resource_key``, ``changed_by_key``)
are rendered in the SQL of the database autogenerate ran against: generate the
migration against the kind of database it will run on.

This module is the home of sqlaudit's migration helpers: the operations for
database-capture triggers are added here as they come.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import MetaData, Table

from sqlaudit import _schema
from sqlaudit.config import SQLAuditConfig, get_config, has_config
from sqlaudit.exceptions import ConfigurationTypeError

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext

__all__ = ["change_table_name", "include_change_table", "include_object", "render_item"]

_DEFAULT_NAME = "sqlaudit_changes"


def include_change_table(
    metadata: MetaData,
    config: SQLAuditConfig | None = None,
    *,
    table_name: str | None = None,
    table_schema: str | None = None,
) -> Table:
    """Add the change table (and its indexes) to ``metadata``, the one autogenerate compares.

    Args:
        metadata: The application's ``target_metadata``.
        config: Whose table name and schema to use; default: the configuration set
            with :func:`~sqlaudit.set_config`, if any, else ``table_name`` and
            ``table_schema``.
        table_name: The change table's name when no config says (default
            ``"sqlaudit_changes"``).
        table_schema: Its schema when no config says (default: the default schema).

    Returns:
        The change table in ``metadata`` (the one already there when called again).

    Raises:
        ConfigurationTypeError: ``metadata`` is not a MetaData, or ``config`` not a
            :class:`~sqlaudit.SQLAuditConfig`.

    Example:
        >>> from sqlalchemy import MetaData
        >>> metadata = MetaData()
        >>> include_change_table(metadata).name
        'sqlaudit_changes'
    """
    if not isinstance(metadata, MetaData):
        raise ConfigurationTypeError(
            f"include_change_table() takes the application's MetaData (Base.metadata, the "
            f"target_metadata of env.py), not {type(metadata).__name__}."
        )
    name, schema = _names(config, table_name, table_schema)
    key = f"{schema}.{name}" if schema else name
    existing = metadata.tables.get(key)
    if existing is not None:
        return existing
    return _schema.build_change_table(name, schema).to_metadata(metadata)


def change_table_name(config: SQLAuditConfig | None = None) -> str:
    """Return the change table's name: ``config``'s, the configured one, or the default.

    Example:
        >>> change_table_name()
        'sqlaudit_changes'
    """
    return _names(config, None, None)[0]


def _names(
    config: SQLAuditConfig | None, table_name: str | None, table_schema: str | None
) -> tuple[str, str | None]:
    if config is not None and not isinstance(config, SQLAuditConfig):
        raise ConfigurationTypeError(
            f"config must be a SQLAuditConfig (or None for the one set with set_config()), "
            f"not {type(config).__name__}."
        )
    if config is None and table_name is None and table_schema is None and has_config():
        config = get_config()
    if config is not None:
        return config.table_name, config.table_schema
    return table_name or _DEFAULT_NAME, table_schema


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic ``include_object`` hook that leaves the change table out of autogenerate.

    For applications where ``set_config()`` creates the change table: autogenerate
    then neither drops it nor creates it. Tables named as the configured change
    table (or ``sqlaudit_changes``), and their indexes, are left out.

    Example:
        >>> include_object(None, "sqlaudit_changes", "table", True, None)
        False
        >>> include_object(None, "customers", "table", True, None)
        True
    """
    names = {_DEFAULT_NAME, change_table_name()}
    if type_ == "table":
        return name not in names
    table = getattr(obj, "table", None)
    if type_ in ("index", "column", "unique_constraint", "foreign_key_constraint"):
        return getattr(table, "name", None) not in names
    return True


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Alembic ``render_item`` hook that writes sqlaudit's column types with SQLAlchemy's own.

    The change table's timestamp type is rendered as
    ``sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")``,
    what it creates, so the migration imports nothing from sqlaudit. Anything else
    is left to Alembic (``False``). An application with a ``render_item`` of its own
    calls this one first.

    Example:
        >>> from sqlaudit import _schema
        >>> class Context:
        ...     imports = set()
        >>> render_item("type", _schema.UTCDateTime(), Context())
        "sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), 'mysql', 'mariadb')"
    """
    if type_ == "type" and isinstance(obj, _schema.UTCDateTime):
        autogen_context.imports.add("from sqlalchemy.dialects import mysql")
        return "sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), 'mysql', 'mariadb')"
    return False
