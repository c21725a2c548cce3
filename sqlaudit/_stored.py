"""Whether the database stores a value exactly as Python holds it.

The unit of work knows the value assigned in Python; the database may keep
another: ``Decimal("1.5")`` in a ``Numeric(10, 2)`` is stored as ``1.50``, a
MySQL ``DATETIME`` without fractional seconds drops the microseconds, ``True`` in
an ``Integer`` column reads back as ``1``. :func:`checks_for` returns, per tracked
field, a cheap test of whether a value may be stored differently; the flush hooks
read such values back from the database (one ``SELECT`` per model and flush, only
when one occurs) so the change row records what the database holds.

Example:
    >>> from decimal import Decimal
    >>> from sqlalchemy import Numeric
    >>> check = differs_when_stored(Numeric(10, 2), "postgresql")
    >>> check(Decimal("1.5")), check(Decimal("1.50"))
    (True, False)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID
from weakref import WeakKeyDictionary

from sqlalchemy import (
    CHAR,
    Boolean,
    Date,
    DateTime,
    Enum,
    Float,
    Integer,
    Numeric,
    String,
    Time,
    Uuid,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeDecorator, TypeEngine

from sqlaudit._registry import TrackedModel

__all__ = ["checks_for", "differs_when_stored"]

Check = Callable[[Any], bool]
_MYSQL = ("mysql", "mariadb")
# SQLAlchemy's scale for a Numeric read back as Decimal when none is given.
_DEFAULT_RETURN_SCALE = 10


def _numeric(type_: Numeric[Any], dialect_name: str) -> Check | None:
    if not type_.asdecimal:
        return lambda value: not isinstance(value, float)
    scale = type_.scale
    if dialect_name == "sqlite":
        scale = type_.decimal_return_scale or scale or _DEFAULT_RETURN_SCALE
    elif dialect_name in _MYSQL and scale is None:
        scale = 0  # MySQL's DECIMAL is DECIMAL(10, 0)
    if scale is None:  # PostgreSQL's unconstrained numeric keeps what it is given
        return lambda value: not isinstance(value, Decimal)
    exponent = -scale

    def check(value: Any) -> bool:
        return not isinstance(value, Decimal) or value.as_tuple().exponent != exponent

    return check


def _float(type_: Float[Any], dialect_name: str) -> Check | None:
    single = dialect_name in _MYSQL and (type_.precision is None or type_.precision <= 24)
    if single:  # MySQL's FLOAT is single precision, read back with 6 significant digits

        def check(value: Any) -> bool:
            return type(value) is not float or float(f"{value:.6g}") != value

        return check
    return lambda value: type(value) is not float


def _fraction(type_: TypeEngine[Any], dialect_name: str, kind: type[Any]) -> Check:
    digits = getattr(type_, "fsp", None) or 0
    drops = dialect_name in _MYSQL  # MySQL/MariaDB keep `fsp` fractional digits (default 0)
    step = 10 ** (6 - digits)
    # PostgreSQL keeps the zone only in a timezone-aware column; the others keep none.
    aware = bool(getattr(type_, "timezone", False)) and dialect_name == "postgresql"

    def check(value: Any) -> bool:
        if type(value) is not kind or (value.tzinfo is not None) != aware:
            return True
        return drops and value.microsecond % step != 0

    return check


def differs_when_stored(type_: TypeEngine[Any], dialect_name: str) -> Check | None:
    """Return a test of whether a value may be stored otherwise than held, or ``None``.

    ``None`` means the database keeps every value of the type as given (or the
    type is one this module does not judge: a ``TypeDecorator``, JSON, ...).
    """
    if isinstance(type_, TypeDecorator):
        cls = type(type_)
        if (
            cls.process_bind_param is not TypeDecorator.process_bind_param
            or cls.bind_processor is not TypeDecorator.bind_processor
        ):
            # It changes values on their way in (PickleType, a UTC decorator, ...):
            # only the database can tell what it holds.
            return lambda value: True
        return differs_when_stored(type_.impl_instance, dialect_name)
    if isinstance(type_, Enum):
        kind = type_.enum_class or str  # a name assigned for a member reads back a member
        return lambda value: not isinstance(value, kind)
    if isinstance(type_, Uuid):
        uuid_kind = UUID if type_.as_uuid else str
        return lambda value: type(value) is not uuid_kind
    if isinstance(type_, mysql.SET):
        return None
    if isinstance(type_, Boolean):
        return lambda value: type(value) is not bool
    if isinstance(type_, Integer):
        return lambda value: type(value) is not int
    if isinstance(type_, Float):
        return _float(type_, dialect_name)
    if isinstance(type_, Numeric):
        return _numeric(type_, dialect_name)
    if isinstance(type_, DateTime):
        return _fraction(type_, dialect_name, datetime)
    if isinstance(type_, Time):
        return _fraction(type_, dialect_name, time)
    if isinstance(type_, Date):
        return lambda value: type(value) is not date
    if isinstance(type_, CHAR) and type_.length:
        # Blank-padded on PostgreSQL, padding stripped on MySQL: read a short value back.
        length = type_.length
        return lambda value: not isinstance(value, str) or len(value) != length
    if isinstance(type_, String):
        return lambda value: not isinstance(value, str)
    return None


_checks: WeakKeyDictionary[TrackedModel, dict[str, dict[str, Check]]] = WeakKeyDictionary()


def checks_for(tracked: TrackedModel, dialect_name: str) -> dict[str, Check]:
    """Return ``{field: check}`` for the tracked fields whose stored value may differ."""
    by_dialect = _checks.setdefault(tracked, {})
    checks = by_dialect.get(dialect_name)
    if checks is None:
        columns = sa_inspect(tracked.model).columns
        checks = {}
        for name in tracked.fields:
            check = differs_when_stored(columns[name].type, dialect_name)
            if check is not None:
                checks[name] = check
        by_dialect[dialect_name] = checks
    return checks
