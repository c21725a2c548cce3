"""The public surface: exported names, the documented imports, hooks, and the change table's setup."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest
from sqlalchemy import String, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

import sqlaudit
from sqlaudit import get_resource_changes, register_hooks, track_table, unregister_hooks
from sqlaudit.config import SQLAuditConfig, set_config

SUBMODULES = [
    "sqlaudit.config",
    "sqlaudit.context",
    "sqlaudit.decorators",
    "sqlaudit.hooks",
    "sqlaudit.retrieval",
    "sqlaudit.history",
    "sqlaudit.migration",
    "sqlaudit.triggers",
    "sqlaudit.ops",
    "sqlaudit.querylog",
    "sqlaudit.exceptions",
]


def declare_customer(base: Any, fields: list[str] | None = None) -> type[Any]:
    """Declare a ``Customer`` (id, name, email) on ``base``, tracking ``fields``."""

    @track_table(tracked_fields=fields or ["name", "email"])
    class Customer(base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(100))
        email: Mapped[str | None] = mapped_column(String(100))

    return Customer


def test_all_is_sorted():
    """``sqlaudit.__all__`` is kept in sorted order."""
    assert sqlaudit.__all__ == sorted(sqlaudit.__all__)


def test_all_lists_every_public_name():
    """Every public name defined or re-exported in ``sqlaudit/__init__.py`` is in ``__all__``."""
    public = {
        name
        for name, value in vars(sqlaudit).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public == set(sqlaudit.__all__)


def test_every_exported_name_is_importable_and_documented_with_an_example():
    """Each name in ``__all__`` can be imported and has a docstring with a ``>>>`` example."""
    namespace: dict[str, Any] = {}
    exec(f"from sqlaudit import {', '.join(sqlaudit.__all__)}", namespace)
    undocumented = [
        name for name in sqlaudit.__all__ if ">>>" not in (inspect.getdoc(namespace[name]) or "")
    ]
    assert undocumented == []


@pytest.mark.parametrize("module_name", SUBMODULES)
def test_documented_submodule_has_a_sorted_all_of_existing_names(module_name):
    """A documented submodule has a sorted ``__all__`` whose every name exists in it."""
    module = importlib.import_module(module_name)
    assert module.__all__ == sorted(module.__all__)
    assert [name for name in module.__all__ if not hasattr(module, name)] == []


def test_exports_of_sqlaudit_are_the_submodules_objects():
    """A name exported by ``sqlaudit`` is the same object its documented submodule exports."""
    mismatched = []
    for name in sqlaudit.__all__:
        homes = [m for m in map(importlib.import_module, SUBMODULES) if name in m.__all__]
        if not homes or any(getattr(m, name) is not getattr(sqlaudit, name) for m in homes):
            mismatched.append(name)
    assert mismatched == []


def test_contract_imports_of_the_design_work():
    """The imports of the public contract (DESIGN.md section 2) work exactly as written."""
    namespace: dict[str, Any] = {}
    exec(
        "from sqlaudit.config import SQLAuditConfig, set_config, get_config\n"
        "from sqlaudit.decorators import track_table\n"
        "from sqlaudit.hooks import register_hooks\n"
        "from sqlaudit.retrieval import get_resource_changes\n",
        namespace,
    )
    for name in ["SQLAuditConfig", "set_config", "get_config", "track_table"]:
        assert namespace[name] is getattr(sqlaudit, name)
    assert namespace["register_hooks"] is sqlaudit.register_hooks
    assert namespace["get_resource_changes"] is sqlaudit.get_resource_changes


def test_register_hooks_twice_records_each_change_once(audit):
    """A second ``register_hooks()`` changes nothing: one row per changed field, not two."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    register_hooks()
    register_hooks()
    with audit.Session() as session:
        session.add(customer(id=1, name="Jane", email="jane@example.com"))
        session.commit()
    assert sorted(row.field_name for row in audit.rows()) == ["email", "name"]


def test_unregister_hooks_stops_capture(audit):
    """After ``unregister_hooks()`` changes are no longer recorded."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    with audit.Session() as session:
        jane = customer(id=1, name="Jane")
        session.add(jane)
        session.commit()
        unregister_hooks()
        jane.name = "Jane Smith"
        session.add(customer(id=2, name="John"))
        session.commit()
    assert [(row.resource_id, row.field_name) for row in audit.rows()] == [("1", "name")]


def test_set_config_creates_the_change_table_when_missing(engine):
    """``set_config`` creates the change table on the session factory's database."""
    assert not sa_inspect(engine).has_table("sqlaudit_changes")
    set_config(SQLAuditConfig(session_factory=sessionmaker(engine), time_zone="UTC"))
    assert sa_inspect(engine).has_table("sqlaudit_changes")
    index_names = {index["name"] for index in sa_inspect(engine).get_indexes("sqlaudit_changes")}
    assert {
        "ix_sqlaudit_changes_resource",
        "ix_sqlaudit_changes_changed_by",
        "ix_sqlaudit_changes_transaction",
    } <= index_names


def test_set_config_with_create_table_false_leaves_the_table_missing(engine):
    """``create_table=False`` makes ``set_config`` leave the database untouched."""
    set_config(
        SQLAuditConfig(session_factory=sessionmaker(engine), time_zone="UTC", create_table=False)
    )
    assert not sa_inspect(engine).has_table("sqlaudit_changes")


def test_custom_table_name_is_honoured(audit):
    """With a custom ``table_name`` the change rows are written to and read from that table."""
    customer = declare_customer(audit.base)
    audit.create_tables()
    audit.configure(table_name="customer_audit")
    assert sa_inspect(audit.engine).has_table("customer_audit")
    with audit.Session() as session:
        session.add(customer(id=1, name="Jane"))
        session.commit()
        changes = get_resource_changes(customer, session=session)
        default_rows = session.execute(text("SELECT COUNT(*) FROM sqlaudit_changes")).scalar_one()
    assert [(row.field_name, row.new_value) for row in audit.rows()] == [("name", "str:Jane")]
    assert [(c.field_name, c.new_value) for c in changes] == [("name", "Jane")]
    assert default_rows == 0


@pytest.mark.backends("postgresql")
def test_custom_table_schema_is_honoured(audit):
    """With a ``table_schema`` the change table lives in that schema and is used there."""
    with audit.engine.begin() as connection:
        connection.execute(text("CREATE SCHEMA IF NOT EXISTS audit_test"))
    try:
        customer = declare_customer(audit.base)
        audit.create_tables()
        audit.configure(table_schema="audit_test")
        assert sa_inspect(audit.engine).has_table("sqlaudit_changes", schema="audit_test")
        with audit.Session() as session:
            session.add(customer(id=1, name="Jane"))
            session.commit()
            changes = get_resource_changes(customer, session=session)
            in_schema = list(
                session.execute(
                    text("SELECT field_name FROM audit_test.sqlaudit_changes")
                ).scalars()
            )
            in_public = session.execute(text("SELECT COUNT(*) FROM sqlaudit_changes")).scalar_one()
        assert in_schema == ["name"]
        assert in_public == 0
        assert [(c.field_name, c.new_value) for c in changes] == [("name", "Jane")]
    finally:
        with audit.engine.begin() as connection:
            connection.execute(text("DROP SCHEMA IF EXISTS audit_test CASCADE"))


def test_fresh_model_classes_for_one_table_are_tracked_independently(audit):
    """Two classes declared for the same table on two bases are each tracked with their own fields."""

    class FirstBase(DeclarativeBase):
        pass

    first = declare_customer(FirstBase, ["name"])
    FirstBase.metadata.create_all(audit.engine)
    with audit.Session() as session:
        session.add(first(id=1, name="Jane", email="jane@example.com"))
        session.commit()

    class SecondBase(DeclarativeBase):
        pass

    second = declare_customer(SecondBase, ["name", "email"])
    with audit.Session() as session:
        session.add(second(id=2, name="John", email="john@example.com"))
        session.commit()
        session.get(first, 1).email = "jane@example.org"  # not tracked by the first class
        session.get(first, 1).name = "Jane Smith"
        session.commit()

    assert [(row.resource_id, row.field_name, row.operation) for row in audit.rows()] == [
        ("1", "name", "insert"),
        ("2", "name", "insert"),
        ("2", "email", "insert"),
        ("1", "name", "update"),
    ]
    with audit.Session() as session:
        by_first = get_resource_changes(first, session=session, filter_resource_ids=1)
        by_second = get_resource_changes(second, session=session, filter_fields="email")
    assert [(c.field_name, c.new_value) for c in by_first] == [
        ("name", "Jane Smith"),
        ("name", "Jane"),
    ]
    assert [(c.resource_id, c.new_value) for c in by_second] == [("2", "john@example.com")]


def test_generator_session_factory_creates_the_table_through_it(engine):
    """A FastAPI-style generator session factory is used, and closed, to create the table."""
    events: list[str] = []

    def get_db():
        db = Session(engine)
        events.append("opened")
        try:
            yield db
        finally:
            db.close()
            events.append("closed")

    set_config(SQLAuditConfig(session_factory=get_db, time_zone="UTC"))
    assert sa_inspect(engine).has_table("sqlaudit_changes")
    assert events == ["opened", "closed"]
