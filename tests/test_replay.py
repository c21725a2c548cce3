"""Replaying the history gives the table: random write sequences, checked whenever the database settles.

Each test plays a seeded random sequence of writes on a tracked ``Customer`` (generated
integer key; string, integer, boolean, JSON and numeric fields, one of them mapped to a
column of another name) and a tracked ``Tag`` (string key): the unit of work, bulk and
Core statements through a Session, savepoints, rollbacks, a second session, and
statements sqlaudit must refuse. After every commit or rollback it folds the change
rows, in write order, into the resources they describe (an insert sets fields, an update
sets one field, a delete ends the resource, and every old value must be the value
replayed before it) and asserts that the result equals the tracked columns of every
row, compared type-strictly: ``True`` is not ``1`` and ``Decimal("1.5")`` is not the
``1.50`` a ``Numeric(10, 2)`` column holds. A statement refused with an
``SQLAuditError`` must not have run; the step is rolled back and counts as a no-op.

A failure names the seed, the bulk path and every step taken. ``SQLAUDIT_REPLAY_SEEDS=N``
plays seeds 1 to N instead of the default six. While a bug is being fixed, put the name
of the operation that shows it (a key of ``OPERATIONS``) in ``SKIP_OPERATIONS``.
"""

from __future__ import annotations

import copy
import os
import random
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    Connection,
    Integer,
    Numeric,
    String,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.mutable import MutableDict
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from sqlaudit import track_table
from sqlaudit._codec import decode, encode
from sqlaudit.exceptions import SQLAuditError

SEEDS = list(range(1, int(os.environ.get("SQLAUDIT_REPLAY_SEEDS", "6")) + 1))
STEPS = 40
# Names of operations (keys of OPERATIONS) left out of the sequences; keep it empty in commits.
SKIP_OPERATIONS: set[str] = set()


# --- the models ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """A tracked model and the values its fields are given."""

    model: Any
    key: str  # the primary key attribute
    # tracked field -> the values it is given; the first field is never None, so every row
    # has an insert row to start its history
    pools: Mapping[str, Sequence[Any]]

    @property
    def table(self) -> str:
        return str(self.model.__tablename__)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.pools)

    def column_key(self, name: str) -> str:
        """Return the Table column key of an attribute (``score`` lives in ``points``)."""
        return str(sa_inspect(self.model).get_property(name).columns[0].key)


def declare_models(base: type[DeclarativeBase]) -> tuple[Spec, Spec]:
    """Declare the tracked Customer (integer key) and Tag (string key) and their value pools."""

    @track_table(tracked_fields=["name", "score", "flag", "data", "amount"])
    class Customer(base):
        __tablename__ = "replay_customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50))
        score: Mapped[int | None] = mapped_column("points", Integer)
        flag: Mapped[bool | None] = mapped_column(Boolean)
        data: Mapped[dict[str, Any] | None] = mapped_column(MutableDict.as_mutable(JSON))
        amount: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))

    @track_table(tracked_fields=["label", "uses"])
    class Tag(base):
        __tablename__ = "replay_tags"
        code: Mapped[str] = mapped_column(String(20), primary_key=True)
        label: Mapped[str] = mapped_column(String(50))
        uses: Mapped[int | None]

    customer = Spec(
        Customer,
        "id",
        {
            "name": ["ann", "bob", "cy", "dee"],
            "score": [None, 0, 1, 2, 40],
            "flag": [None, True, False],
            "data": [None, {}, {"k": 1}, {"k": 2, "tags": ["a", "b"]}, {"k": "x", "n": None}],
            "amount": [None, Decimal("0.00"), Decimal("1.50"), Decimal("2.25"), Decimal("99.99")],
        },
    )
    tag = Spec(Tag, "code", {"label": ["red", "green", "blue"], "uses": [None, 0, 1, 5]})
    return customer, tag


# --- replaying the history and reading the table ---------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Compare values type-strictly: JSON structurally, ``True`` is not ``1``, ``1.5`` is not ``1.50``."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(same, a, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, Decimal):
        return str(a) == str(b)
    return bool(a == b)


@dataclass
class _Life:
    fields: dict[str, Any] = field(default_factory=dict)
    alive: bool = True
    deleted: set[str] = field(default_factory=set)  # fields whose delete row was read


Resources = dict[tuple[str, str], dict[str, Any]]


def describe_row(row: Any) -> str:
    old, new = decode(row.old_value), decode(row.new_value)
    return (
        f"row {row.id}: {row.operation} {row.table_name}/{row.resource_id} "
        f"{row.field_name}: {old!r} -> {new!r}"
    )


def replay(rows: Sequence[Any], specs: Sequence[Spec]) -> tuple[Resources, list[str]]:
    """Fold change rows (oldest first) into ``{(table, resource id): {field: value}}`` and list broken links."""
    lives: dict[tuple[str, str], _Life] = {}
    problems: list[str] = []
    for row in rows:
        key = (row.table_name, row.resource_id)
        name, old, new = row.field_name, decode(row.old_value), decode(row.new_value)
        life = lives.get(key)
        where = describe_row(row)
        if row.operation == "insert":
            if life is None or not life.alive:
                life = lives[key] = _Life()
            elif name in life.fields:
                problems.append(f"{where}: inserts a field the resource already has")
            if old is not None:
                problems.append(f"{where}: an insert with an old value")
            life.fields[name] = new
        elif row.operation == "update":
            if life is None or not life.alive:
                problems.append(f"{where}: updates a resource that does not exist")
                life = lives[key] = _Life()
            before = life.fields.get(name)
            if not same(old, before):
                problems.append(f"{where}: the replayed value before it is {before!r}")
            if same(old, new):
                problems.append(f"{where}: records no change")
            life.fields[name] = new
        elif row.operation == "delete":
            if life is None or (not life.alive and name in life.deleted):
                problems.append(f"{where}: deletes a resource that does not exist")
                continue
            before = life.fields.get(name)
            if not same(old, before):
                problems.append(f"{where}: the replayed value before it is {before!r}")
            if new is not None:
                problems.append(f"{where}: a delete with a new value")
            life.alive = False
            life.deleted.add(name)
        else:
            problems.append(f"{where}: unknown operation")
    fields = {spec.table: spec.fields for spec in specs}
    resources = {
        key: {name: life.fields.get(name) for name in fields.get(key[0], ())}
        for key, life in lives.items()
        if life.alive
    }
    return resources, problems


def read_table(connection: Connection, specs: Sequence[Spec]) -> Resources:
    """Read the tracked fields of every row, as the codec would store and read them back."""
    resources: Resources = {}
    for spec in specs:
        model = spec.model
        query = select(getattr(model, spec.key), *(getattr(model, name) for name in spec.fields))
        for key, *values in connection.execute(query):
            resources[(spec.table, str(key))] = {
                name: decode(encode(value)) for name, value in zip(spec.fields, values, strict=True)
            }
    return resources


def differences(replayed: Resources, table: Resources) -> list[str]:
    """List, resource by resource, where the replayed history and the table disagree."""
    found = []
    for key in sorted(replayed.keys() | table.keys()):
        resource = "/".join(key)
        history, row = replayed.get(key), table.get(key)
        if history is None:
            found.append(f"{resource}: in the table {row!r}, not in the history")
        elif row is None:
            found.append(f"{resource}: in the history {history!r}, not in the table")
        else:
            found.extend(
                f"{resource}.{name}: history {history[name]!r}, table {row[name]!r}"
                for name in history
                if not same(history[name], row[name])
            )
    return found


# --- one random sequence -----------------------------------------------------------------------


class _Refused(Exception):
    """A statement was refused with an SQLAuditError and its step rolled back."""


@dataclass
class Run:
    """One seeded sequence of operations, checked against the history after every commit and rollback."""

    audit: Any
    seed: int
    path: str
    customer: Spec
    tag: Spec
    rng: random.Random = field(init=False)
    steps: list[list[str]] = field(default_factory=list)
    last_row: int = 0  # the id of the newest change row at the last settled point
    next_key: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    @property
    def specs(self) -> tuple[Spec, Spec]:
        return self.customer, self.tag

    @property
    def dialect(self) -> str:
        return str(self.audit.engine.dialect.name)

    # -- bookkeeping --

    def note(self, text: str) -> None:
        self.steps[-1].append(text)

    def transcript(self) -> str:
        lines = [f"seed {self.seed}, bulk path {self.path!r}, {self.dialect}; steps:"]
        lines.extend(f"  {index}: {'; '.join(parts)}" for index, parts in enumerate(self.steps))
        return "\n".join(lines)

    def play(self, session: Session) -> None:
        weighted = [name for name, (_, weight) in OPERATIONS.items() for _ in range(weight)]
        choices = [name for name in weighted if name not in SKIP_OPERATIONS]
        self.steps.append(["add"])
        op_add(self, session, count=4)
        for _ in range(STEPS):
            name = self.rng.choice(choices)
            self.steps.append([name])
            try:
                OPERATIONS[name][0](self, session)
            except _Refused:
                pass
            except SQLAuditError as exc:  # refused at a flush or a commit: roll back, a no-op
                self.note(f"refused at commit: {type(exc).__name__}: {str(exc)[:120]}")
                self.rollback(session)

    # -- settled points --

    def commit(self, session: Session) -> None:
        session.commit()
        self.check("commit")

    def rollback(self, session: Session) -> None:
        session.rollback()
        self.check("rollback")

    def check(self, after: str) -> None:
        """Assert that replaying every change row gives the table."""
        rows = self.audit.rows()
        replayed, problems = replay(rows, self.specs)
        with self.audit.engine.connect() as connection:
            table = read_table(connection, self.specs)
        found = problems + differences(replayed, table)
        if found:
            new_rows = [describe_row(row) for row in rows if row.id > self.last_row]
            raise AssertionError(
                f"after the {after} of step {len(self.steps) - 1}, replaying the history "
                "does not give the table:\n  "
                + "\n  ".join(found[:12])
                + "\nrows written since the last settled point:\n  "
                + "\n  ".join(new_rows[:30] or ["(none)"])
                + "\n"
                + self.transcript()
            )
        self.last_row = max((row.id for row in rows), default=0)

    def guarded(self, session: Session, action: Callable[[], Any], *, flush: bool = True) -> Any:
        """Run one write statement; if sqlaudit refuses it, check it did not run and roll back.

        Pending changes are flushed first (autoflush would send them before the statement,
        and they must not be taken for its effect), unless the statement is what writes them.
        """
        if flush:
            session.flush()
        before = read_table(session.connection(), self.specs)
        try:
            return action()
        except SQLAuditError as exc:
            self.note(f"refused: {type(exc).__name__}: {str(exc)[:120]}")
            try:
                during: Resources | None = read_table(session.connection(), self.specs)
            except (sa_exc.PendingRollbackError, sa_exc.DBAPIError):
                during = None  # the database transaction already failed: nothing can commit
            session.rollback()
            if during is not None and not same(during, before):
                raise AssertionError(
                    "a statement refused with an SQLAuditError had already changed the table:\n  "
                    + "\n  ".join(differences(during, before))
                    + "\n"
                    + self.transcript()
                ) from exc
            self.check("rollback of the refused statement")
            raise _Refused from exc

    # -- drawing keys, objects and values --

    def spec(self) -> Spec:
        return self.customer if self.rng.random() < 0.75 else self.tag

    def new_key(self, spec: Spec) -> Any:
        """A key no row ever had (negative Customer ids never meet generated ones)."""
        self.next_key += 1
        return -self.next_key if spec is self.customer else f"t{self.next_key}"

    def keys(self, session: Session, spec: Spec) -> list[Any]:
        return sorted(session.scalars(select(getattr(spec.model, spec.key))).all())

    def objects(self, session: Session, spec: Spec, count: int) -> list[Any]:
        keys = self.keys(session, spec)
        chosen = self.rng.sample(keys, min(count, len(keys)))
        return [session.get(spec.model, key) for key in chosen]

    def draw(self, spec: Spec, name: str) -> Any:
        return copy.deepcopy(self.rng.choice(spec.pools[name]))

    def new_values(self, spec: Spec, key: Any = None) -> dict[str, Any]:
        values = {name: self.draw(spec, name) for name in spec.fields}
        if spec is self.tag and key is None:
            key = self.new_key(spec)
        elif spec is self.customer and key is None and self.rng.random() < 0.3:
            key = self.new_key(spec)  # explicit; otherwise generated
        if key is not None:
            values = {spec.key: key, **values}
        return values

    def spec_of(self, obj: Any) -> Spec:
        return self.customer if isinstance(obj, self.customer.model) else self.tag

    def name_of(self, obj: Any) -> str:
        """``Customer[3]``, read from the identity (so an expired object is not loaded)."""
        identity = sa_inspect(obj).identity
        key = "new" if identity is None else identity[0]
        return f"{type(obj).__name__}[{key!r}]"

    def assign(self, obj: Any, count: int, *, load: bool = True) -> None:
        """Assign ``count`` random tracked fields of ``obj`` (an equal value now and then)."""
        spec = self.spec_of(obj)
        for name in self.rng.sample(spec.fields, min(count, len(spec.fields))):
            if load and self.rng.random() < 0.2:
                value = copy.deepcopy(getattr(obj, name))  # equal: records nothing
            else:
                value = self.draw(spec, name)
            setattr(obj, name, value)
            self.note(f"{self.name_of(obj)}.{name} = {value!r}")

    def condition(self, session: Session, spec: Spec) -> tuple[ColumnElement[bool], str]:
        """A WHERE clause for a bulk statement, and how it reads."""
        model, keys = spec.model, self.keys(session, spec)
        key = getattr(model, spec.key)
        choice = self.rng.random()
        if keys and choice < 0.4:
            one = self.rng.choice(keys)
            return key == one, f"{spec.key} == {one!r}"
        if keys and choice < 0.7:
            some = self.rng.sample(keys, min(2, len(keys)))
            return key.in_(some), f"{spec.key} in {some!r}"
        if spec is self.customer:
            bound = self.rng.choice([0, 1, 2, 40])
            return model.score >= bound, f"score >= {bound}"
        return model.uses.is_(None), "uses is None"


# --- the operations ------------------------------------------------------------------------------
# Each takes the run and the main session, leaves the session settled (committed or rolled
# back) and notes what it did.


def op_add(run: Run, session: Session, count: int = 0) -> None:
    """session.add() of new objects, keys generated or given."""
    added = []
    for _ in range(count or run.rng.randint(1, 3)):
        spec = run.spec()
        values = run.new_values(spec)
        obj = spec.model(**values)
        session.add(obj)
        added.append(obj)
        run.note(f"add {spec.model.__name__}({values!r})")
    session.commit()
    run.note(f"keys {[sa_inspect(obj).identity[0] for obj in added]!r}")
    run.check("commit")


def op_modify(run: Run, session: Session) -> None:
    """Assign tracked fields of loaded objects (equal values and None included)."""
    for obj in run.objects(session, run.spec(), run.rng.randint(1, 2)):
        run.assign(obj, run.rng.randint(1, 3))
    run.commit(session)


def op_true_into_one(run: Run, session: Session) -> None:
    """Assign True to an Integer field that holds 1."""
    for obj in run.objects(session, run.customer, 1):
        obj.score = 1
        run.note(f"{run.name_of(obj)}.score = 1")
        run.commit(session)
        run.note(f"{run.name_of(obj)}.score is {obj.score!r}; .score = True")
        obj.score = True
        run.commit(session)


def op_short_decimal(run: Run, session: Session) -> None:
    """Give the Numeric(10, 2) field a Decimal of fewer places (1.5), on a new object or a loaded one (holding 1.50, now and then)."""
    value = run.rng.choice([Decimal("1.5"), Decimal("2.5"), Decimal("7")])
    objs = run.objects(session, run.customer, 1)
    if objs and run.rng.random() < 0.6:
        obj = objs[0]
        if run.rng.random() < 0.5:
            obj.amount = value.quantize(Decimal("0.01"))  # the same number, as the column spells it
            run.note(f"{run.name_of(obj)}.amount = {obj.amount!r}")
            run.commit(session)
        run.note(f"{run.name_of(obj)}.amount = {value!r} (holds {obj.amount!r})")
        obj.amount = value
    else:
        values = {**run.new_values(run.customer), "amount": value}
        session.add(run.customer.model(**values))
        run.note(f"add Customer({values!r})")
    run.commit(session)


def op_json_in_place(run: Run, session: Session) -> None:
    """Change the JSON field in place (MutableDict), {"k": 1} -> {"k": True} among others."""
    for obj in run.objects(session, run.customer, 1):
        if obj.data is None or run.rng.random() < 0.5:
            obj.data = {"k": 1}
            run.note(f"{run.name_of(obj)}.data = {{'k': 1}}")
            run.commit(session)
            obj.data["k"] = True
            run.note(f"{run.name_of(obj)}.data['k'] = True")
        else:
            key = run.rng.choice(["k", "n", "x"])
            if key in obj.data and run.rng.random() < 0.3:
                del obj.data[key]
                run.note(f"del {run.name_of(obj)}.data[{key!r}]")
            else:
                value = copy.deepcopy(run.rng.choice([1, 2, True, False, "s", None, [1, 2]]))
                obj.data[key] = value
                run.note(f"{run.name_of(obj)}.data[{key!r}] = {value!r}")
    run.commit(session)


def op_delete(run: Run, session: Session) -> None:
    """session.delete() of loaded objects."""
    for obj in run.objects(session, run.spec(), run.rng.randint(1, 2)):
        run.note(f"delete {run.name_of(obj)}")
        session.delete(obj)
    run.commit(session)


def op_delete_and_add_same_key(run: Run, session: Session) -> None:
    """Delete an object and add a new one with the same key, in one flush."""
    spec = run.spec()
    for obj in run.objects(session, spec, 1):
        key = getattr(obj, spec.key)
        session.delete(obj)
        values = run.new_values(spec, key)
        session.add(spec.model(**values))
        run.note(f"delete {run.name_of(obj)}; add {spec.model.__name__}({values!r})")
    run.commit(session)


def op_change_key(run: Run, session: Session) -> None:
    """Change the primary key of a loaded object through the session (with a field, now and then)."""
    spec = run.spec()
    for obj in run.objects(session, spec, 1):
        key = run.new_key(spec)
        run.note(f"{run.name_of(obj)}.{spec.key} = {key!r}")
        setattr(obj, spec.key, key)
        if run.rng.random() < 0.5:
            run.assign(obj, 1)
    run.commit(session)


def op_update_where(run: Run, session: Session) -> None:
    """session.execute(update(M).where(...).values(...)), values or SQL expressions."""
    spec = run.spec()
    model = spec.model
    where, text = run.condition(session, spec)
    names = run.rng.sample(spec.fields, run.rng.randint(1, 2))
    values: dict[str, Any] = {}
    shown = {}
    for name in names:
        if name in ("score", "uses") and run.rng.random() < 0.4:
            values[name] = getattr(model, name) + 1
            shown[name] = f"{name} + 1"
        else:
            values[name] = shown[name] = run.draw(spec, name)
    run.note(f"update({model.__name__}).where({text}).values({shown!r})")
    run.guarded(session, lambda: session.execute(update(model).where(where).values(**values)))
    run.commit(session)


def op_update_execute_params(run: Run, session: Session) -> None:
    """session.execute(update(M).where(key == k), {column: value}): SET values given at execute time."""
    spec = run.spec()
    model = spec.model
    for obj in run.objects(session, spec, 1):
        key = getattr(obj, spec.key)
        names = run.rng.sample(spec.fields, run.rng.randint(1, 2))
        params = {spec.column_key(name): run.draw(spec, name) for name in names}
        run.note(f"update({model.__name__}).where({spec.key} == {key!r}), {params!r}")
        statement = update(model).where(getattr(model, spec.key) == key)
        run.guarded(session, lambda: session.execute(statement, params))  # noqa: B023
    run.commit(session)


def op_core_update(run: Run, session: Session) -> None:
    """A Core update(M.__table__) naming columns (not attributes), through the session."""
    spec = run.spec()
    table = spec.model.__table__
    for obj in run.objects(session, spec, 1):
        key = getattr(obj, spec.key)
        names = run.rng.sample(spec.fields, run.rng.randint(1, 2))
        values = {spec.column_key(name): run.draw(spec, name) for name in names}
        run.note(f"update({spec.table}).where(c.{spec.key} == {key!r}).values({values!r})")
        statement = update(table).where(table.c[spec.key] == key).values(values)
        run.guarded(session, lambda: session.execute(statement))  # noqa: B023
    run.commit(session)


def op_update_by_key(run: Run, session: Session) -> None:
    """session.execute(update(M), [{key: ..., field: ...}, ...]): bulk update by primary key."""
    spec = run.spec()
    keys = run.keys(session, spec)
    if not keys:
        return
    names = run.rng.sample(spec.fields, run.rng.randint(1, 2))
    rows = [
        {spec.key: key, **{name: run.draw(spec, name) for name in names}}
        for key in run.rng.sample(keys, min(len(keys), run.rng.randint(1, 3)))
    ]
    run.note(f"update({spec.model.__name__}), {rows!r}")
    run.guarded(session, lambda: session.execute(update(spec.model), rows))
    run.commit(session)


def op_delete_where(run: Run, session: Session) -> None:
    """session.execute(delete(M).where(...))."""
    spec = run.spec()
    where, text = run.condition(session, spec)
    run.note(f"delete({spec.model.__name__}).where({text})")
    run.guarded(session, lambda: session.execute(delete(spec.model).where(where)))
    run.commit(session)


def op_insert_rows(run: Run, session: Session) -> None:
    """session.execute(insert(M), [{...}, ...]), keys given or generated."""
    spec = run.spec()
    explicit = spec is run.tag or run.rng.random() < 0.5
    rows = []
    for _ in range(run.rng.randint(1, 3)):
        values = {name: run.draw(spec, name) for name in spec.fields}
        rows.append({spec.key: run.new_key(spec), **values} if explicit else values)
    run.note(f"insert({spec.model.__name__}), {rows!r}")
    run.guarded(session, lambda: session.execute(insert(spec.model), rows))
    run.commit(session)


def op_savepoint(run: Run, session: Session) -> None:
    """Changes inside session.begin_nested(), flushed, then the savepoint released or rolled back."""
    spec = run.spec()
    if run.rng.random() < 0.5:
        for obj in run.objects(session, spec, 1):
            run.assign(obj, 1)
        session.flush()
    nested = session.begin_nested()
    run.note("begin_nested()")
    action = run.rng.choice(["assign", "add", "delete"])
    objs = run.objects(session, spec, 1)
    if action == "add" or not objs:
        values = run.new_values(spec)
        session.add(spec.model(**values))
        run.note(f"add {spec.model.__name__}({values!r})")
    elif action == "assign":
        run.assign(objs[0], run.rng.randint(1, 2))
    else:
        run.note(f"delete {run.name_of(objs[0])}")
        session.delete(objs[0])
    session.flush()
    if run.rng.random() < 0.5:
        nested.commit()
        run.note("savepoint released")
    else:
        nested.rollback()
        run.note("savepoint rolled back")
    run.commit(session)


def op_rollback(run: Run, session: Session) -> None:
    """Several flushed changes and a bulk update, then session.rollback()."""
    for obj in run.objects(session, run.spec(), 2):
        run.assign(obj, 1)
        session.flush()
    values = run.new_values(run.customer)
    session.add(run.customer.model(**values))
    run.note(f"add Customer({values!r}); flush")
    session.flush()
    name = run.draw(run.customer, "name")
    run.note(f"update(Customer).values(name={name!r}); rollback()")
    session.execute(update(run.customer.model).values(name=name))
    run.rollback(session)


def op_flush_one(run: Run, session: Session) -> None:
    """session.flush([one object]) while others are pending or dirty, then commit."""
    spec = run.spec()
    if run.rng.random() < 0.5:
        objs = [spec.model(**run.new_values(spec)) for _ in range(2)]
        session.add_all(objs)
        run.note(f"add two {spec.model.__name__}")
    else:
        objs = run.objects(session, spec, 2)
        for obj in objs:
            run.assign(obj, 1)
    if objs:
        with warnings.catch_warnings():  # deprecated in SQLAlchemy 2.1, still supported
            warnings.filterwarnings(
                "ignore", "The `objects` parameter", sa_exc.SADeprecationWarning
            )
            session.flush([objs[0]])
        run.note("flush([the first])")
    run.commit(session)


def op_expired_assign(run: Run, session: Session) -> None:
    """Commit (expiring loaded objects), then assign their expired attributes, then commit."""
    objs = run.objects(session, run.spec(), run.rng.randint(1, 2))
    run.note("commit (expires)")
    run.commit(session)
    for obj in objs:
        run.assign(obj, run.rng.randint(1, 3), load=False)
    run.commit(session)


def op_second_session(run: Run, session: Session) -> None:
    """Edit one row in the main session, commit a change to another in a second session, then commit the first."""
    spec = run.spec()
    objs = run.objects(session, spec, 1)
    for obj in objs:
        run.assign(obj, run.rng.randint(1, 2))
    taken = {getattr(obj, spec.key) for obj in objs}
    with run.audit.Session() as other:
        others = [obj for obj in run.objects(other, spec, 2) if getattr(obj, spec.key) not in taken]
        action = run.rng.choice(["assign", "delete", "add"])
        if action == "add" or not others:
            values = run.new_values(spec)
            other.add(spec.model(**values))
            run.note(f"second session: add {spec.model.__name__}({values!r})")
        elif action == "assign":
            run.note("second session:")
            run.assign(others[0], run.rng.randint(1, 2))
        else:
            run.note(f"second session: delete {run.name_of(others[0])}")
            other.delete(others[0])
        other.commit()
    run.check("commit of the second session")
    run.commit(session)


def op_upsert(run: Run, session: Session) -> None:
    """An upsert (ON CONFLICT DO UPDATE / ON DUPLICATE KEY UPDATE) on a tracked model: audited right, or refused."""
    spec = run.customer
    keys = run.keys(session, spec)
    key = run.rng.choice(keys) if keys and run.rng.random() < 0.7 else run.new_key(spec)
    values = {"id": key, "name": run.draw(spec, "name"), "flag": run.draw(spec, "flag")}
    model = spec.model
    statement: Any
    if run.dialect in ("mysql", "mariadb"):
        statement = mysql.insert(model).values(values)
        statement = statement.on_duplicate_key_update(
            name=statement.inserted.name, flag=statement.inserted.flag
        )
        run.note(f"mysql insert({values!r}).on_duplicate_key_update(name, flag)")
    else:
        dialect_insert = postgresql.insert if run.dialect == "postgresql" else sqlite.insert
        statement = dialect_insert(model).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=["id"],
            set_={"name": statement.excluded.name, "flag": statement.excluded.flag},
        )
        run.note(f"{run.dialect} insert({values!r}).on_conflict_do_update(id: name, flag)")
    run.guarded(session, lambda: session.execute(statement))
    run.commit(session)


def op_legacy_bulk(run: Run, session: Session) -> None:
    """session.bulk_update_mappings / bulk_insert_mappings / bulk_save_objects on a tracked model: audited, or refused."""
    spec = run.spec()
    method = run.rng.choice(["bulk_update_mappings", "bulk_insert_mappings", "bulk_save_objects"])
    if method == "bulk_update_mappings":
        keys = run.keys(session, spec)
        if not keys:
            return
        name = run.rng.choice(spec.fields)
        rows = [{spec.key: run.rng.choice(keys), name: run.draw(spec, name)}]
        run.note(f"bulk_update_mappings({spec.model.__name__}, {rows!r})")
        run.guarded(session, lambda: session.bulk_update_mappings(spec.model, rows))
    elif method == "bulk_insert_mappings":
        rows = [run.new_values(spec, run.new_key(spec))]
        run.note(f"bulk_insert_mappings({spec.model.__name__}, {rows!r})")
        run.guarded(session, lambda: session.bulk_insert_mappings(spec.model, rows))
    else:
        objs = run.objects(session, spec, 1)
        if objs and run.rng.random() < 0.5:
            run.assign(objs[0], 1)
        else:
            values = run.new_values(spec, run.new_key(spec))
            objs = [spec.model(**values)]
            run.note(f"new {spec.model.__name__}({values!r})")
        run.note("bulk_save_objects([it])")
        run.guarded(session, lambda: session.bulk_save_objects(objs), flush=False)
    run.commit(session)


# name -> (operation, weight in the draw)
OPERATIONS: dict[str, tuple[Callable[[Run, Session], None], int]] = {
    "add": (op_add, 3),
    "modify": (op_modify, 3),
    "true_into_one": (op_true_into_one, 1),
    "short_decimal": (op_short_decimal, 1),
    "json_in_place": (op_json_in_place, 1),
    "delete": (op_delete, 1),
    "delete_and_add_same_key": (op_delete_and_add_same_key, 1),
    "change_key": (op_change_key, 1),
    "update_where": (op_update_where, 2),
    "update_execute_params": (op_update_execute_params, 1),
    "core_update": (op_core_update, 1),
    "update_by_key": (op_update_by_key, 1),
    "delete_where": (op_delete_where, 1),
    "insert_rows": (op_insert_rows, 1),
    "savepoint": (op_savepoint, 1),
    "rollback": (op_rollback, 1),
    "flush_one": (op_flush_one, 1),
    "expired_assign": (op_expired_assign, 1),
    "second_session": (op_second_session, 1),
    "upsert": (op_upsert, 1),
    "legacy_bulk": (op_legacy_bulk, 1),
}


# --- the test --------------------------------------------------------------------------------


@pytest.fixture
def run_session(audit: Any) -> Iterator[Session]:
    """The main session of a run, closed before the tables are dropped."""
    with audit.Session() as session:
        yield session


@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed-{seed}" for seed in SEEDS])
@pytest.mark.parametrize("path", ["in-database", "read"])
def test_history_replays_to_the_table(audit, run_session, seed, path):
    """After every commit or rollback of a random write sequence, replaying the change rows in order gives every tracked row of the table, and refused statements change nothing."""
    audit.configure(bulk_in_database=path == "in-database")
    customer, tag = declare_models(audit.base)
    audit.create_tables()
    run = Run(audit, seed, path, customer, tag)
    try:
        run.play(run_session)
    except AssertionError:
        raise  # its message holds the steps already
    except Exception as exc:
        exc.add_note(run.transcript())
        raise
