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

**Database-capture triggers** (see :mod:`sqlaudit.triggers`) are created, replaced
and dropped by three operations this module registers with Alembic when imported
(``import sqlaudit.alembic`` in ``env.py``)::

    def upgrade() -> None:
        op.create_audit_triggers("Customer", "Order")   # by class name, or the classes
        # after altering a tracked table or its tracked fields:
        op.replace_audit_triggers("Customer")

    def downgrade() -> None:
        op.drop_audit_triggers("Customer", "Order")

The models are the ones ``env.py`` imports (tracked with ``capture="database"``);
no names: every database-captured model. The change table is the configured one,
else ``sqlaudit_changes``; ``table_name=`` / ``table_schema=`` name another. They
run against the migration's connection (online mode); autogenerate renders
neither them nor their reverse.

**The append-only guard** (see :func:`sqlaudit.install_guard`) is installed and
dropped by two more operations, with the same ``table_name=`` / ``table_schema=``::

    def upgrade() -> None:
        op.create_audit_guard()     # the change table refuses UPDATE and DELETE but
                                    # from prune and erase
    def downgrade() -> None:
        op.drop_audit_guard()
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from alembic.operations import MigrateOperation, Operations
from sqlalchemy import MetaData, Table

from sqlaudit import _registry, _schema, ops, triggers
from sqlaudit.config import SQLAuditConfig, get_config, has_config
from sqlaudit.exceptions import ConfigurationTypeError, UntrackedModelError

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext

__all__ = [
    "CreateAuditGuardOp",
    "CreateAuditTriggersOp",
    "DropAuditGuardOp",
    "DropAuditTriggersOp",
    "ReplaceAuditTriggersOp",
    "change_table_name",
    "include_change_table",
    "include_object",
    "render_item",
]

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
    table (or ``sqlaudit_changes``), its monthly partitions when it is partitioned
    (``sqlaudit_changes_p202611``, ``sqlaudit_changes_default``: see
    :func:`sqlaudit.ops.create_partitioned_change_table`), and their indexes, are
    left out.

    Example:
        >>> include_object(None, "sqlaudit_changes", "table", True, None)
        False
        >>> include_object(None, "sqlaudit_changes_p202611", "table", True, None)
        False
        >>> include_object(None, "customers", "table", True, None)
        True
    """
    names = {_DEFAULT_NAME, change_table_name()}
    if type_ == "table":
        return not _is_change_table(name, names)
    table = getattr(obj, "table", None)
    if type_ in ("index", "column", "unique_constraint", "foreign_key_constraint"):
        return not _is_change_table(getattr(table, "name", None), names)
    return True


def _is_change_table(name: str | None, names: set[str]) -> bool:
    """Say whether ``name`` is the change table or a monthly partition of it (``_pYYYYMM``)."""
    if name is None:
        return False
    if name in names:
        return True
    return any(_PARTITION.fullmatch(name[len(n) :]) for n in names if name.startswith(n))


_PARTITION = re.compile(r"_(p\d{6}|default)")


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


ModelRef = str | type[Any]


def _models(names: Sequence[ModelRef]) -> list[type[Any]] | None:
    """Resolve class names (or classes) to the tracked classes; none: every one."""
    if not names:
        return None
    tracked = {model.__name__: model for model in _registry.models()}
    resolved = []
    for name in names:
        if isinstance(name, type):
            resolved.append(name)
        elif name in tracked:
            resolved.append(tracked[name])
        else:
            known = ", ".join(sorted(tracked)) or "none"
            raise UntrackedModelError(
                f"The migration names the model {name!r}, which is not tracked here (tracked: "
                f"{known}). Import the models in env.py (with @track_table(..., "
                "capture='database')) before running the migration."
            )
    return resolved


class _AuditTriggersOp(MigrateOperation):
    """What the three trigger operations share: the models and the change table."""

    def __init__(
        self,
        *models: ModelRef,
        table_name: str | None = None,
        table_schema: str | None = None,
    ) -> None:
        self.models = models
        self.table_name = table_name
        self.table_schema = table_schema

    def _options(self) -> dict[str, Any]:
        return {"table_name": self.table_name, "table_schema": self.table_schema}


@Operations.register_operation("create_audit_triggers")
class CreateAuditTriggersOp(_AuditTriggersOp):
    """``op.create_audit_triggers(*models)``: install the capture triggers of these models.

    Example:
        >>> CreateAuditTriggersOp("Customer").reverse().models
        ('Customer',)
    """

    @classmethod
    def create_audit_triggers(
        cls, operations: Operations, *models: ModelRef, **options: Any
    ) -> None:
        """Install the capture triggers of ``models`` (class names or classes; none: all)."""
        operations.invoke(cls(*models, **options))

    def reverse(self) -> DropAuditTriggersOp:
        """Return the operation that undoes this one: dropping the same triggers."""
        return DropAuditTriggersOp(*self.models, **self._options())


@Operations.register_operation("replace_audit_triggers")
class ReplaceAuditTriggersOp(_AuditTriggersOp):
    """``op.replace_audit_triggers(*models)``: rewrite the triggers after a schema change.

    Example:
        >>> ReplaceAuditTriggersOp("Customer").reverse().models
        ('Customer',)
    """

    @classmethod
    def replace_audit_triggers(
        cls, operations: Operations, *models: ModelRef, **options: Any
    ) -> None:
        """Rewrite the capture triggers of ``models`` from their current declaration."""
        operations.invoke(cls(*models, **options))

    def reverse(self) -> ReplaceAuditTriggersOp:
        """Return the operation that undoes this one: replacing them again."""
        return ReplaceAuditTriggersOp(*self.models, **self._options())


@Operations.register_operation("drop_audit_triggers")
class DropAuditTriggersOp(_AuditTriggersOp):
    """``op.drop_audit_triggers(*models)``: remove the capture triggers of these models.

    Example:
        >>> DropAuditTriggersOp("Customer").reverse().models
        ('Customer',)
    """

    @classmethod
    def drop_audit_triggers(cls, operations: Operations, *models: ModelRef, **options: Any) -> None:
        """Remove the capture triggers of ``models`` (class names or classes; none: all)."""
        operations.invoke(cls(*models, **options))

    def reverse(self) -> CreateAuditTriggersOp:
        """Return the operation that undoes this one: creating the same triggers."""
        return CreateAuditTriggersOp(*self.models, **self._options())


@Operations.implementation_for(CreateAuditTriggersOp)
@Operations.implementation_for(ReplaceAuditTriggersOp)
def _install(operations: Operations, operation: _AuditTriggersOp) -> None:
    triggers.install_triggers(
        operations.get_bind(), _models(operation.models), **operation._options()
    )


@Operations.implementation_for(DropAuditTriggersOp)
def _drop(operations: Operations, operation: _AuditTriggersOp) -> None:
    triggers.drop_triggers(operations.get_bind(), _models(operation.models), **operation._options())


class _AuditGuardOp(MigrateOperation):
    """What the two guard operations share: the change table."""

    def __init__(self, *, table_name: str | None = None, table_schema: str | None = None) -> None:
        self.table_name = table_name
        self.table_schema = table_schema

    def _options(self) -> dict[str, Any]:
        return {"table_name": self.table_name, "table_schema": self.table_schema}


@Operations.register_operation("create_audit_guard")
class CreateAuditGuardOp(_AuditGuardOp):
    """``op.create_audit_guard()``: make the change table refuse UPDATE and DELETE.

    Example:
        >>> CreateAuditGuardOp(table_name="audit").reverse().table_name
        'audit'
    """

    @classmethod
    def create_audit_guard(cls, operations: Operations, **options: Any) -> None:
        """Install the change table's append-only guard (see :func:`sqlaudit.install_guard`)."""
        operations.invoke(cls(**options))

    def reverse(self) -> DropAuditGuardOp:
        """Return the operation that undoes this one: dropping the guard."""
        return DropAuditGuardOp(**self._options())


@Operations.register_operation("drop_audit_guard")
class DropAuditGuardOp(_AuditGuardOp):
    """``op.drop_audit_guard()``: remove the change table's append-only guard.

    Example:
        >>> DropAuditGuardOp().reverse().table_name is None
        True
    """

    @classmethod
    def drop_audit_guard(cls, operations: Operations, **options: Any) -> None:
        """Remove the append-only guard (see :func:`sqlaudit.drop_guard`)."""
        operations.invoke(cls(**options))

    def reverse(self) -> CreateAuditGuardOp:
        """Return the operation that undoes this one: installing the guard."""
        return CreateAuditGuardOp(**self._options())


@Operations.implementation_for(CreateAuditGuardOp)
def _install_guard(operations: Operations, operation: _AuditGuardOp) -> None:
    ops.install_guard(operations.get_bind(), **operation._options())


@Operations.implementation_for(DropAuditGuardOp)
def _drop_guard(operations: Operations, operation: _AuditGuardOp) -> None:
    ops.drop_guard(operations.get_bind(), **operation._options())
