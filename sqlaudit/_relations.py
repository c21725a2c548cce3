"""Aggregates and relations at a moment: related states and an aggregate's timeline.

A relationship is followed through its foreign key, which must be a tracked field:
who belonged to whom at a moment is read from that field's history.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, tzinfo
from typing import Any
from uuid import UUID

from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select
from sqlalchemy.orm import RelationshipDirection, Session

from sqlaudit import _codec
from sqlaudit._events import ResourceEvent, ResourceState, fold_state
from sqlaudit._feed import resolve_zone
from sqlaudit._registry import TrackedModel, encode_resource_id
from sqlaudit._resource import events_upto, key_values, one_resource, resource_events, run_read
from sqlaudit.config import SQLAuditConfig, get_config
from sqlaudit.exceptions import HistoryError
from sqlaudit.retrieval import IdValue, _count, _tracked_model

__all__ = ["get_aggregate_events", "get_related_states"]


def get_related_states(
    model_class: type[Any],
    resource_id: IdValue | tuple[IdValue, ...],
    relationship: str,
    *,
    session: Session | None = None,
    at: datetime | date | None = None,
    transaction_id: str | UUID | None = None,
    time_zone: str | tzinfo | None = None,
) -> list[ResourceState]:
    """Return the states of the objects related to a resource at a moment.

    Follows a relationship whose foreign key is a tracked field: one-to-many (an
    order's ``lines``: every line whose tracked ``order_id`` pointed at the order
    then) or many-to-one (a line's ``order``).

    Args:
        model_class: A tracked model.
        resource_id: Its id.
        relationship: The name of a relationship of ``model_class``.
        session: The Session to read with.
        at: The moment; ``None`` with no transaction: now.
        transaction_id: Just after this transaction committed (instead of ``at``).
        time_zone: Zone of naive moments; default: ``config.time_zone``.

    Returns:
        The live related states then, each with its ``resource_id``, ordered by id.

    Raises:
        HistoryError: an unknown relationship, an untracked related model or foreign
            key, a many-to-many relationship.

    Example:
        >>> lines = get_related_states(Order, 7, "lines", at=last_tuesday)  # doctest: +SKIP
        >>> [(line.resource_id, line.values["quantity"]) for line in lines]  # doctest: +SKIP
        [('1', 2), ('3', 1)]
    """
    config = get_config()
    tracked, text = one_resource(model_class, resource_id)
    zone = resolve_zone(config, time_zone)
    link = _link(tracked, relationship)

    def work(s: Session) -> list[ResourceState]:
        events = resource_events(s, config, tracked, text, zone)
        own = fold_state(
            tracked.table_name,
            text,
            tracked.fields,
            events,
            events_upto(s, config, events, at, transaction_id, zone),
        )
        states = []
        for other_id, other_events in _related(s, config, link, tracked, text, own, zone):
            upto = events_upto(s, config, other_events, at, transaction_id, zone)
            state = fold_state(
                link.other.table_name, other_id, link.other.fields, other_events, upto
            )
            if state.status == "live" and link.belongs(tracked, text, own, state):
                states.append(state)
        return sorted(states, key=lambda state: _sort_key(state.resource_id))

    return run_read(session, work)


def get_aggregate_events(
    model_class: type[Any],
    resource_id: IdValue | tuple[IdValue, ...],
    *,
    relationships: Sequence[str],
    session: Session | None = None,
    limit: int | None = None,
    time_zone: str | tzinfo | None = None,
) -> list[ResourceEvent]:
    """Return the history of an aggregate as one timeline, newest first.

    The resource's own events merged with the events of the objects that belonged
    to it through each one-to-many relationship (those of a line while its tracked
    foreign key pointed at the order, before or after the event).

    Raises:
        HistoryError: as :func:`get_related_states`.

    Example:
        >>> timeline = get_aggregate_events(Order, 7, relationships=["lines"])  # doctest: +SKIP
        >>> [(e.table_name, e.operation) for e in timeline][:2]  # doctest: +SKIP
        [('order_lines', 'update'), ('orders', 'update')]
    """
    config = get_config()
    tracked, text = one_resource(model_class, resource_id)
    zone = resolve_zone(config, time_zone)
    if isinstance(relationships, str):
        relationships = [relationships]
    links = [_link(tracked, name) for name in relationships]
    size = None if limit is None else _count(limit, "limit")

    def work(s: Session) -> list[ResourceEvent]:
        events = resource_events(s, config, tracked, text, zone)
        own = fold_state(tracked.table_name, text, tracked.fields, events, len(events))
        timeline = list(events)
        for link in links:
            if link.direction is not RelationshipDirection.ONETOMANY:
                continue
            for other_id, other_events in _related(s, config, link, tracked, text, own, zone):
                for number, event in enumerate(other_events):
                    around = (
                        fold_state(link.other.table_name, other_id, link.other.fields,
                                   other_events, upto)
                        for upto in (number, number + 1)
                    )  # fmt: skip
                    if any(
                        state.status != "absent" and link.belongs(tracked, text, own, state)
                        for state in around
                    ):
                        timeline.append(event)
        timeline.sort(key=lambda event: event.event_id, reverse=True)
        return timeline if size is None else timeline[:size]

    return run_read(session, work)


class _Link:
    """A relationship between two tracked models through tracked foreign-key fields."""

    def __init__(
        self,
        direction: RelationshipDirection,
        other: TrackedModel,
        pairs: list[tuple[str, str]],
    ) -> None:
        self.direction = direction
        self.other = other
        self.pairs = pairs  # (own attribute, other attribute)

    def belongs(
        self, own: TrackedModel, own_id: str, own_state: ResourceState, state: ResourceState
    ) -> bool:
        """Whether ``state`` of the other object points at (or is pointed at by) the resource."""
        own_values = _attribute_values(own, own_id, own_state)
        other_values = _attribute_values(self.other, state.resource_id, state)
        return all(
            name in own_values
            and other in other_values
            and own_values[name] is not None
            and _codec.encode(own_values[name]) == _codec.encode(other_values[other])
            for name, other in self.pairs
        )


def _link(tracked: TrackedModel, name: str) -> _Link:
    mapper = sa_inspect(tracked.model)
    if not isinstance(name, str) or name not in mapper.relationships:
        names = ", ".join(sorted(mapper.relationships.keys())) or "none"
        raise HistoryError(
            f"{tracked.model.__name__} has no relationship {name!r}; its relationships are: "
            f"{names}. Pass the name of a relationship() attribute."
        )
    relation = mapper.relationships[name]
    if relation.direction is RelationshipDirection.MANYTOMANY:
        raise HistoryError(
            f"{tracked.model.__name__}.{name} is many-to-many: its association rows are not "
            "tracked fields, so its past cannot be rebuilt. Map the association as a tracked "
            "model and follow its one-to-many relationships."
        )
    other = _tracked_model(relation.mapper.class_)
    pairs = []
    for local, remote in relation.local_remote_pairs or ():
        own_attr = mapper.get_property_by_column(local).key
        other_attr = relation.mapper.get_property_by_column(remote).key
        fk_model, fk_attr = (
            (other, other_attr)
            if relation.direction is RelationshipDirection.ONETOMANY
            else (tracked, own_attr)
        )
        if fk_attr not in fk_model.fields and fk_attr not in fk_model.key_fields:
            raise HistoryError(
                f"{fk_model.model.__name__}.{fk_attr} links {tracked.model.__name__}.{name} "
                f"but is not a tracked field, so who belonged to whom is not in the history. "
                f"Add {fk_attr!r} to @track_table(tracked_fields=[...]) of "
                f"{fk_model.model.__name__}."
            )
        pairs.append((own_attr, other_attr))
    return _Link(relation.direction, other, pairs)


def _related(
    session: Session,
    config: SQLAuditConfig,
    link: _Link,
    own: TrackedModel,
    own_id: str,
    own_state: ResourceState,
    zone: tzinfo,
) -> list[tuple[str, list[ResourceEvent]]]:
    """Return the ids and events of every object that may ever have been related."""
    table = config.table
    own_values = _attribute_values(own, own_id, own_state)
    if link.direction is RelationshipDirection.MANYTOONE:
        values = tuple(own_values.get(name) for name, _ in link.pairs)
        if any(value is None for value in values):
            return []
        other_names = tuple(other for _, other in link.pairs)
        if other_names != link.other.key_fields:
            return []
        other_id = encode_resource_id(values)
        return [(other_id, resource_events(session, config, link.other, other_id, zone))]
    own_name, other_name = link.pairs[0]
    value = own_values.get(own_name)
    if value is None:
        return []
    encoded = _codec.encode(value)
    query = (
        select(table.c.resource_id)
        .where(table.c.table_name == link.other.table_name)
        .where(table.c.field_name == other_name)
        .where((table.c.new_value == encoded) | (table.c.old_value == encoded))
        .distinct()
    )
    ids = sorted(session.execute(query).scalars(), key=_sort_key)
    return [
        (other_id, resource_events(session, config, link.other, other_id, zone)) for other_id in ids
    ]


def _attribute_values(tracked: TrackedModel, text: str, state: ResourceState) -> dict[str, Any]:
    """Return a state's values together with the key attributes its resource id spells."""
    values = dict(state.values)
    values.update(key_values(tracked, text))
    return values


def _sort_key(text: str) -> tuple[int, Any]:
    return (0, int(text)) if text.lstrip("-").isdigit() else (1, text)
