"""The change table in an application's Alembic migrations: ``alembic revision --autogenerate``, ``upgrade``, ``downgrade``.

Each test lays out a small Alembic project (``alembic.ini``, ``env.py`` importing the
application's models, ``versions/``) and runs the ``alembic`` command line on it, in
a process of its own, as an application's developer would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import alembic
import pytest
from sqlalchemy import MetaData, String, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from sqlaudit import (
    ConfigurationTypeError,
    check_guard,
    check_triggers,
    get_resource_changes,
    register_hooks,
    track_table,
)
from sqlaudit.alembic import (
    CreateAuditGuardOp,
    CreateAuditTriggersOp,
    DropAuditGuardOp,
    DropAuditTriggersOp,
    ReplaceAuditTriggersOp,
    change_table_name,
    include_change_table,
    include_object,
    render_item,
)
from sqlaudit.config import SQLAuditConfig, set_config

TEMPLATE = Path(alembic.__file__).parent / "templates" / "generic" / "script.py.mako"

MODELS = """
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
"""

ENV = """
from alembic import context
from sqlalchemy import create_engine

import sqlaudit.alembic
from models import Base

target_metadata = Base.metadata
MANAGED = {managed}
if MANAGED:
    sqlaudit.alembic.include_change_table(target_metadata)
    hooks = {{"render_item": sqlaudit.alembic.render_item}}
else:
    hooks = {{"include_object": sqlaudit.alembic.include_object}}

engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=target_metadata, **hooks)
    with context.begin_transaction():
        context.run_migrations()
"""


class Project:
    """A small Alembic project on one database."""

    def __init__(self, root: Path, url: str, *, managed: bool) -> None:
        self.root = root
        self.url = url
        (root / "migrations" / "versions").mkdir(parents=True)
        (root / "migrations" / "script.py.mako").write_text(TEMPLATE.read_text())
        (root / "migrations" / "env.py").write_text(ENV.format(managed=managed))
        (root / "models.py").write_text(MODELS)
        (root / "alembic.ini").write_text(
            "[alembic]\nscript_location = migrations\nprepend_sys_path = .\npath_separator = os\n"
        )

    def alembic(self, *args: str) -> str:
        """Run the ``alembic`` command line in the project; return its output."""
        result = subprocess.run(
            [sys.executable, "-m", "alembic", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout + result.stderr

    def revision(self, message: str) -> str:
        """Autogenerate a revision; return the migration's source."""
        before = set((self.root / "migrations" / "versions").glob("*.py"))
        self.alembic("-c", "alembic.ini", "revision", "--autogenerate", "-m", message)
        (created,) = set((self.root / "migrations" / "versions").glob("*.py")) - before
        return created.read_text()


def url_of(engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def project(tmp_path: Path, engine, *, managed: bool) -> Project:
    made = Project(tmp_path / "app", url_of(engine), managed=managed)
    ini = made.root / "alembic.ini"
    ini.write_text(ini.read_text() + f"sqlalchemy.url = {made.url.replace('%', '%%')}\n")
    return made


def upgrade_function(source: str) -> str:
    return source.split("def upgrade()", 1)[1].split("def downgrade()", 1)[0]


def test_autogenerate_creates_the_change_table_with_public_names_only(engine, tmp_path):
    """With the table included, the first migration creates it without any sqlaudit name; upgrade, a no-op second revision, downgrade."""
    app = project(tmp_path, engine, managed=True)
    source = app.revision("initial")
    assert "sqlaudit_changes" in source
    assert "sqlaudit." not in source and "import sqlaudit" not in source
    assert "drop_table('sqlaudit_changes')" not in upgrade_function(source)
    app.alembic("-c", "alembic.ini", "upgrade", "head")
    # Another process changed the schema: SQLite's pooled connections may hold the old one
    # (PRAGMA index_list reads a connection's cached schema without checking it).
    engine.dispose()
    inspector = sa_inspect(engine)
    assert inspector.has_table("sqlaudit_changes")
    assert {index["name"] for index in inspector.get_indexes("sqlaudit_changes")} >= {
        "ix_sqlaudit_changes_resource",
        "ix_sqlaudit_changes_changed_by",
        "ix_sqlaudit_changes_transaction",
    }

    # The table the migration made is the one sqlaudit expects, and records changes.
    class Base(DeclarativeBase):
        pass

    @track_table(tracked_fields=["name"])
    class Customer(Base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(100))

    Session = sessionmaker(engine)
    set_config(SQLAuditConfig(session_factory=Session, time_zone="UTC"))  # checks the layout
    register_hooks()
    with Session() as session:
        session.add(Customer(id=1, name="Ann"))
        session.commit()
    assert [c.new_value for c in get_resource_changes(Customer)] == ["Ann"]

    second = app.revision("nothing")
    assert "op." not in upgrade_function(second), second
    app.alembic("-c", "alembic.ini", "upgrade", "head")
    app.alembic("-c", "alembic.ini", "downgrade", "base")
    assert not sa_inspect(engine).has_table("sqlaudit_changes")
    assert not sa_inspect(engine).has_table("customers")


def test_a_change_table_sqlaudit_creates_is_left_alone(engine, tmp_path):
    """With ``include_object``, autogenerate neither drops nor creates the table ``set_config()`` made."""
    set_config(SQLAuditConfig(session_factory=sessionmaker(engine)))
    assert sa_inspect(engine).has_table("sqlaudit_changes")
    app = project(tmp_path, engine, managed=False)
    source = app.revision("initial")
    assert "sqlaudit_changes" not in source
    assert "create_table('customers'" in source
    app.alembic("-c", "alembic.ini", "upgrade", "head")
    app.alembic("-c", "alembic.ini", "downgrade", "base")
    assert sa_inspect(engine).has_table("sqlaudit_changes")


def test_include_change_table_follows_the_config_and_is_idempotent(engine):
    """The table added is the configured one (name and schema), once, however often it is called."""
    set_config(SQLAuditConfig(session_factory=sessionmaker(engine), table_name="audit_rows"))
    metadata = MetaData()
    table = include_change_table(metadata)
    assert include_change_table(metadata) is table
    assert table.name == "audit_rows" == change_table_name()
    assert {index.name for index in table.indexes} == {
        "ix_audit_rows_resource",
        "ix_audit_rows_changed_by",
        "ix_audit_rows_transaction",
    }
    other = include_change_table(MetaData(), table_name="history", table_schema="audit")
    assert (other.name, other.schema) == ("history", "audit")
    assert include_object(table, "audit_rows", "table", True, None) is False
    assert include_object(next(iter(table.indexes)), "ix", "index", True, None) is False
    assert include_object(None, "customers", "table", True, None) is True


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: include_change_table(Base_metadata_typo()), "takes the application's MetaData"),
        (lambda: include_change_table(MetaData(), config="x"), "must be a SQLAuditConfig"),
    ],
)
def test_include_change_table_refuses_what_is_not_metadata_or_config(call, message):
    """A wrong argument raises a ConfigurationTypeError naming what to pass."""
    with pytest.raises(ConfigurationTypeError, match=message):
        call()


def Base_metadata_typo() -> object:
    """What a typo hands over instead of ``Base.metadata``: the declarative base itself."""

    class Base(DeclarativeBase):
        pass

    return Base


def test_render_item_leaves_other_types_to_alembic():
    """Only sqlaudit's own type is rendered; everything else returns False."""

    class Context:
        def __init__(self) -> None:
            self.imports: set[str] = set()

    context = Context()
    assert render_item("type", String(5), context) is False  # type: ignore[arg-type]
    assert render_item("server_default", None, context) is False  # type: ignore[arg-type]
    assert context.imports == set()


TRACKED_MODELS = """
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqlaudit import track_table


class Base(DeclarativeBase):
    pass


@track_table(tracked_fields=["name"], capture="database")
class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
"""

TRIGGER_MIGRATION = '''
"""create the customers table and its capture triggers"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
    )
    op.create_audit_triggers("Customer")
    op.create_audit_guard()


def downgrade() -> None:
    op.drop_audit_guard()
    op.drop_audit_triggers("Customer")
    op.drop_table("customers")
'''


def test_migration_operations_create_and_drop_capture_triggers(engine, tmp_path):
    """op.create_audit_triggers / op.drop_audit_triggers install and remove the triggers in upgrade and downgrade."""
    app = project(tmp_path, engine, managed=False)
    (app.root / "models.py").write_text(TRACKED_MODELS)
    (app.root / "migrations" / "versions" / "0001_customers.py").write_text(TRIGGER_MIGRATION)
    app.alembic("-c", "alembic.ini", "upgrade", "head")

    class Base(DeclarativeBase):
        pass

    @track_table(tracked_fields=["name"], capture="database")
    class Customer(Base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(100))

    assert check_triggers(engine) == []
    with engine.begin() as connection:  # recorded by the triggers the migration made
        connection.execute(text("INSERT INTO customers (id, name) VALUES (1, 'Ann')"))
    set_config(SQLAuditConfig(session_factory=sessionmaker(engine), time_zone="UTC"))
    assert [c.new_value for c in get_resource_changes(Customer)] == ["Ann"]
    assert check_guard(engine) == []  # and the change table refuses edits
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(text("UPDATE sqlaudit_changes SET new_value = 'str:Bob'"))

    app.alembic("-c", "alembic.ini", "downgrade", "base")
    assert not sa_inspect(engine).has_table("customers")
    assert check_guard(engine) != []


def test_migration_naming_an_untracked_model_fails_with_the_fix(engine, tmp_path):
    """A migration naming a model env.py did not track fails, naming the model and the fix."""
    app = project(tmp_path, engine, managed=False)
    (app.root / "migrations" / "versions" / "0001_customers.py").write_text(TRIGGER_MIGRATION)
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", "alembic.ini", "upgrade", "head"],
        cwd=app.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "UntrackedModelError" in result.stderr
    assert "'Customer', which is not tracked here" in result.stderr
    assert "Import the models in env.py" in result.stderr


def test_guard_operations_reverse_each_other():
    """op.create_audit_guard and op.drop_audit_guard undo each other, keeping the table named."""
    create = CreateAuditGuardOp(table_name="audit", table_schema="ops")
    assert isinstance(create.reverse(), DropAuditGuardOp)
    assert (create.reverse().table_name, create.reverse().table_schema) == ("audit", "ops")
    assert isinstance(create.reverse().reverse(), CreateAuditGuardOp)


def test_trigger_operations_reverse_each_other():
    """Each trigger operation's reverse is the one autogenerate would pair with it."""
    create = CreateAuditTriggersOp("Customer", table_name="audit")
    assert isinstance(create.reverse(), DropAuditTriggersOp)
    assert create.reverse().models == ("Customer",)
    assert create.reverse().table_name == "audit"
    assert isinstance(create.reverse().reverse(), CreateAuditTriggersOp)
    assert isinstance(ReplaceAuditTriggersOp().reverse(), ReplaceAuditTriggersOp)
