"""The write workloads W1-W5.

Each workload has an untimed ``setup`` (rows the workload starts from, loaded with
one Core bulk insert, outside any ORM auditing, as when auditing is added to an
existing table) and a timed ``run`` through the ORM. ``run`` returns what it did:
transactions committed and the changes made, counted both as changed fields and as
changed objects, so a contestant's audit rows can be checked against them.

- W1 insert ``objects`` objects, committing every ``batch``;
- W2 update two tracked fields (``quantity``, ``price``) of each, committing every ``batch``;
- W3 update one field (``quantity``) and commit after every object (``single_commits``);
- W4 delete ``deletes`` objects, committing every ``batch``;
- W5 one bulk ``update()`` statement touching ``objects`` rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import sessionmaker

from benchmarks.models import TRACKED, item_values
from benchmarks.settings import Scale

__all__ = ["WORKLOADS", "Outcome", "Workload"]

Factory = sessionmaker[Any]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a workload did."""

    transactions: int
    changed_fields: int
    changed_objects: int


@dataclass(frozen=True, slots=True)
class Workload:
    """One write workload."""

    name: str
    title: str
    setup: Callable[[Engine, type[Any], Scale], list[int]]
    run: Callable[[Factory, type[Any], Scale, list[int]], Outcome]


def _no_rows(engine: Engine, item: type[Any], scale: Scale) -> list[int]:
    return []


def _load_rows(engine: Engine, item: type[Any], scale: Scale) -> list[int]:
    """Insert ``scale.objects`` rows with Core; return their ids in order."""
    with engine.begin() as connection:
        for start in range(1, scale.objects + 1, 1000):
            stop = min(start + 1000, scale.objects + 1)
            connection.execute(insert(item), [item_values(i) for i in range(start, stop)])
        return list(connection.scalars(select(item.id).order_by(item.id)))


def _chunks(ids: list[int], size: int) -> list[list[int]]:
    return [ids[start : start + size] for start in range(0, len(ids), size)]


def _w1_insert(factory: Factory, item: type[Any], scale: Scale, ids: list[int]) -> Outcome:
    transactions = 0
    with factory() as session:
        for start in range(0, scale.objects, scale.batch):
            stop = min(start + scale.batch, scale.objects)
            session.add_all([item(**item_values(i)) for i in range(start + 1, stop + 1)])
            session.commit()
            transactions += 1
    return Outcome(transactions, scale.objects * len(TRACKED), scale.objects)


def _w2_update(factory: Factory, item: type[Any], scale: Scale, ids: list[int]) -> Outcome:
    transactions = 0
    with factory() as session:
        for chunk in _chunks(ids, scale.batch):
            for obj in session.scalars(select(item).where(item.id.in_(chunk))):
                obj.quantity += 1
                obj.price += Decimal("0.01")
            session.commit()
            transactions += 1
    return Outcome(transactions, len(ids) * 2, len(ids))


def _w3_single(factory: Factory, item: type[Any], scale: Scale, ids: list[int]) -> Outcome:
    chosen = ids[: scale.single_commits]
    with factory() as session:
        for ident in chosen:
            obj = session.get(item, ident)
            obj.quantity += 1
            session.commit()
    return Outcome(len(chosen), len(chosen), len(chosen))


def _w4_delete(factory: Factory, item: type[Any], scale: Scale, ids: list[int]) -> Outcome:
    chosen = ids[: scale.deletes]
    transactions = 0
    with factory() as session:
        for chunk in _chunks(chosen, scale.batch):
            for obj in session.scalars(select(item).where(item.id.in_(chunk))):
                session.delete(obj)
            session.commit()
            transactions += 1
    return Outcome(transactions, len(chosen) * len(TRACKED), len(chosen))


def _w5_bulk(factory: Factory, item: type[Any], scale: Scale, ids: list[int]) -> Outcome:
    with factory() as session:
        result = session.execute(
            update(item).values(quantity=item.quantity + 1),
            execution_options={"synchronize_session": False},
        )
        touched = result.rowcount
        session.commit()
    return Outcome(1, touched, touched)


WORKLOADS: dict[str, Workload] = {
    workload.name: workload
    for workload in (
        Workload("W1", "insert, commit every 100", _no_rows, _w1_insert),
        Workload("W2", "update 2 fields, commit every 100", _load_rows, _w2_update),
        Workload("W3", "update 1 field, commit every object", _load_rows, _w3_single),
        Workload("W4", "delete, commit every 100", _load_rows, _w4_delete),
        Workload("W5", "one bulk update() statement", _load_rows, _w5_bulk),
    )
}
