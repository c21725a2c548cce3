"""``@track_table``: choose which models and fields are audited.

Put the decorator on the line above the ``class`` statement of a mapped class
(it runs once the class body is mapped)::

    @track_table(tracked_fields=["name", "email"], table_label="Customer")
    class Customer(Base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]
        email: Mapped[str]

Field names are attribute names and are checked against the mapper at once; a
typo fails at import time, naming the columns that do exist. A bare
``@track_table`` (no parentheses) tracks every column but the primary key.
"""

from __future__ import annotations

import dataclasses
import enum
import warnings
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, overload

from sqlalchemy import Enum as SAEnum
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import NoInspectionAvailable
from sqlalchemy.orm import Mapper

from sqlaudit import _registry, hooks
from sqlaudit.exceptions import TrackingError

__all__ = ["track_table", "untrack_table"]

T = TypeVar("T", bound=type[Any])


@overload
def track_table(model_class: T, /) -> T: ...


@overload
def track_table(
    *,
    tracked_fields: Iterable[str] | str | None = None,
    table_label: str | None = None,
    resource_id_field: str | None = None,
    user_id_field: str | None = None,
    capture: str | None = None,
) -> Callable[[T], T]: ...


def track_table(
    model_class: Any = None,
    /,
    *,
    tracked_fields: Iterable[str] | str | None = None,
    table_label: str | None = None,
    resource_id_field: str | None = None,
    user_id_field: str | None = None,
    capture: str | None = None,
) -> Any:
    """Audit inserts, updates and deletes of a mapped class's fields.

    Args:
        model_class: Given only when used bare, as ``@track_table`` without
            parentheses: the class to track, with every option at its default.
        tracked_fields: Attribute names of the columns to audit; ``None`` audits every
            column except the primary key.
        table_label: A human name for the table in the history (default: the class name).
        resource_id_field: The column that identifies a resource in the history
            (default: the primary key; a composite key is recorded as all its parts).
        capture: ``"session"`` (flush hooks) or ``"database"`` (generated triggers,
            installed with :func:`sqlaudit.install_triggers`, which record writes from
            anywhere); default: the config's ``capture``.
        user_id_field: Accepted for code written for sqlaudit 0.7, which stored it and
            never used it; ignored, with a :class:`DeprecationWarning`. The user comes
            from ``get_user_id_callback`` or :func:`~sqlaudit.audit_context`.

    Returns:
        A class decorator that registers the class and returns it unchanged (used
        bare: the class itself, registered).

    Raises:
        TrackingError: the class is not mapped, a name is not one of its columns, or
            the decorator was given a positional argument other than a class.

    Tracking is per class: declaring a fresh class for the same table (as a test
    suite does) registers that class too. Old values are always known, even for
    attributes a commit expired: the flush reads the values it is about to
    replace, for all such objects of a model in one query. Known blind spot: a row deleted as
    an orphan by a ``delete-orphan`` cascade records the values its object had
    loaded; an attribute that was expired at that moment records no value.

    Example:
        >>> from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
        >>> class Base(DeclarativeBase): ...
        >>> @track_table(tracked_fields=["name"], table_label="Customer")
        ... class Customer(Base):
        ...     __tablename__ = "customers"
        ...     id: Mapped[int] = mapped_column(primary_key=True)
        ...     name: Mapped[str]
        >>> @track_table  # every column but the primary key
        ... class Tag(Base):
        ...     __tablename__ = "tags"
        ...     id: Mapped[int] = mapped_column(primary_key=True)
        ...     label: Mapped[str]
    """
    if model_class is not None and not isinstance(model_class, type):
        raise TrackingError(
            f"track_table() takes its options by keyword, not {model_class!r} positionally: "
            f"write @track_table(tracked_fields={model_class!r}) (or a bare @track_table "
            "to track every column but the primary key)."
        )
    if user_id_field is not None:
        warnings.warn(
            f"track_table(user_id_field={user_id_field!r}) is ignored (sqlaudit 0.7 kept it "
            "and never used it): the user of a change comes from get_user_id_callback or "
            "audit_context(user_id=...). Remove the argument.",
            DeprecationWarning,
            stacklevel=2,
        )
    if isinstance(tracked_fields, str):
        tracked_fields = [tracked_fields]
    requested = None if tracked_fields is None else list(tracked_fields)
    if requested is not None and not all(isinstance(name, str) for name in requested):
        raise TrackingError(
            f"track_table(tracked_fields=...) takes attribute names as str, got {requested!r}."
        )

    if capture is not None and capture not in ("session", "database"):
        raise TrackingError(
            f"track_table(capture=...) must be 'session' or 'database', not {capture!r}."
        )

    def decorate(cls: T) -> T:
        tracked = _build(cls, requested, table_label, resource_id_field)
        if capture is not None:
            tracked = dataclasses.replace(tracked, capture=capture)
        _registry.register(tracked)
        # Forgetting register_hooks() must not be silent: warn at the first flush.
        hooks.watch_unregistered()
        return cls

    if model_class is not None:
        return decorate(model_class)
    return decorate


def untrack_table(model_class: type[Any]) -> None:
    """Stop auditing ``model_class`` (undoes ``@track_table``).

    Example:
        >>> untrack_table(Customer)  # doctest: +SKIP
    """
    _registry.unregister(model_class)


def _build(
    cls: type[Any],
    requested: list[str] | None,
    table_label: str | None,
    resource_id_field: str | None,
) -> _registry.TrackedModel:
    try:
        mapper: Mapper[Any] = sa_inspect(cls)
    except NoInspectionAvailable:
        raise TrackingError(
            f"@track_table can only decorate a mapped class; {cls!r} is not mapped. "
            "Put the decorator above a declarative model (a subclass of your DeclarativeBase)."
        ) from None
    table = mapper.local_table
    # Schema-qualified when the table names a schema: same-named tables in two
    # schemas never share a history.
    table_name = getattr(table, "fullname", None) or cls.__name__
    columns = tuple(mapper.columns.keys())
    primary_key = tuple(mapper.get_property_by_column(column).key for column in mapper.primary_key)
    if requested is None:
        fields = tuple(name for name in columns if name not in primary_key)
    else:
        for name in requested:
            _check_column(cls, mapper, table_name, columns, name, "tracked_fields")
        fields = tuple(dict.fromkeys(requested))
    if resource_id_field is not None:
        _check_column(cls, mapper, table_name, columns, resource_id_field, "resource_id_field")
    enum_hints: dict[str, type[enum.Enum]] = {}
    for name in fields:
        column_type = mapper.columns[name].type
        if isinstance(column_type, SAEnum) and column_type.enum_class is not None:
            enum_hints[name] = column_type.enum_class
    return _registry.TrackedModel(
        model=cls,
        table_name=table_name,
        table_label=table_label if table_label is not None else cls.__name__,
        fields=fields,
        primary_key=primary_key,
        resource_id_field=resource_id_field,
        enum_hints=enum_hints,
        primary_key_types=tuple(_python_type(column.type) for column in mapper.primary_key),
        equals={name: mapper.columns[name].type.compare_values for name in fields},
    )


def _python_type(column_type: Any) -> type[Any] | None:
    try:
        python_type: type[Any] = column_type.python_type
    except NotImplementedError:
        return None
    return python_type


def _check_column(
    cls: type[Any],
    mapper: Mapper[Any],
    table_name: str,
    columns: tuple[str, ...],
    name: str,
    option: str,
) -> None:
    if name in columns:
        return
    listing = ", ".join(columns)
    hint = ""
    if name in mapper.relationships:
        local = [column.key for column in mapper.relationships[name].local_columns]
        hint = f" {cls.__name__}.{name} is a relationship; track its column(s) {local} instead."
    raise TrackingError(
        f"{cls.__name__}.{name} is not a column of {table_name}; columns are: {listing}."
        f"{hint} Fix {option} in @track_table on {cls.__name__}."
    )
