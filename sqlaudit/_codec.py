"""Typed, self-describing encoding of column values for the change table.

A value is stored as ``"<tag>:<payload>"`` text, so it reads back as the type it
had when it was written, whatever the model looks like today (a column removed or
retyped since). ``None`` is stored as SQL NULL.

=========  ===================================  =============================
tag        Python type                          payload
=========  ===================================  =============================
str        ``str``                              the text itself
int        ``int``                              decimal digits
float      ``float``                            ``repr()`` (``inf``, ``nan`` too)
bool       ``bool``                             ``true`` / ``false``
decimal    ``Decimal``                          ``str()``, exponent kept
datetime   ``datetime`` (naive or aware)        ISO 8601, offset when aware
date       ``date``                             ISO 8601
time       ``time``                             ISO 8601
timedelta  ``timedelta``                        days,seconds,microseconds
uuid       ``UUID``                             canonical hex form
bytes      ``bytes``/``bytearray``/memoryview   base64
json       ``dict``/``list``/``tuple``          JSON
enum       ``Enum`` member                      JSON: class path, name, value
custom     a type given to :func:`register_type`  ``<name>:<what its encode gave>``
repr       anything else (with a warning)       ``repr()``
=========  ===================================  =============================
"""

from __future__ import annotations

import base64
import enum
import importlib
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlaudit.exceptions import ConfigurationError, ConfigurationTypeError, FallbackEncodingWarning

__all__ = ["decode", "encode", "register_type", "unregister_type"]


@dataclass(frozen=True, slots=True)
class _Custom:
    cls: type[Any]
    name: str
    encode: Callable[[Any], str]
    decode: Callable[[str], Any]

    def encode_value(self, value: Any) -> str:
        text = self.encode(value)
        if not isinstance(text, str):
            raise ConfigurationTypeError(
                f"The encode function registered for {self.cls.__qualname__} returned a "
                f"{type(text).__name__}, not a str: fix it to return text, as "
                "register_type() requires."
            )
        return f"custom:{self.name}:{text}"


_CUSTOM: dict[type[Any], _Custom] = {}
_CUSTOM_BY_NAME: dict[str, _Custom] = {}


def _encode_enum(value: enum.Enum) -> str:
    cls = type(value)
    payload = {"class": f"{cls.__module__}:{cls.__qualname__}", "name": value.name}
    try:
        json.dumps(value.value)
    except (TypeError, ValueError):
        pass
    else:
        payload["value"] = value.value
    return "enum:" + json.dumps(payload, separators=(",", ":"))


def _encode_timedelta(value: timedelta) -> str:
    return f"timedelta:{value.days},{value.seconds},{value.microseconds}"


def _encode_bytes(value: bytes | bytearray | memoryview) -> str:
    return "bytes:" + base64.b64encode(bytes(value)).decode("ascii")


def _encode_json(value: dict[Any, Any] | list[Any] | tuple[Any, ...]) -> str:
    try:
        return "json:" + json.dumps(value, separators=(",", ":"), allow_nan=True)
    except (TypeError, ValueError):
        return _fallback(value)


# Ordered: Enum before its int/str mix-ins, bool before int, datetime before date.
_ENCODERS: tuple[tuple[type[Any] | tuple[type[Any], ...], Callable[[Any], str]], ...] = (
    (enum.Enum, _encode_enum),
    (bool, lambda v: "bool:true" if v else "bool:false"),
    (int, lambda v: f"int:{int(v)}"),
    (float, lambda v: f"float:{float(v)!r}"),
    (Decimal, lambda v: f"decimal:{v}"),
    (str, lambda v: "str:" + str(v)),
    (datetime, lambda v: "datetime:" + v.isoformat()),
    (date, lambda v: "date:" + v.isoformat()),
    (time, lambda v: "time:" + v.isoformat()),
    (timedelta, _encode_timedelta),
    (UUID, lambda v: f"uuid:{v}"),
    ((bytes, bytearray, memoryview), _encode_bytes),
    ((dict, list, tuple), _encode_json),
)
# The exact type of the value usually settles it with one dict lookup; subclasses
# (IntEnum, str subclasses, ...) walk the ordered table once and are cached.
_BY_TYPE: dict[type[Any], Callable[[Any], str]] = {}


def encode(value: Any) -> str | None:
    """Encode ``value`` as tagged text; ``None`` stays ``None``.

    A value of a type the codec does not know is stored as ``repr:<repr(value)>``
    with a :class:`~sqlaudit.exceptions.FallbackEncodingWarning`: it is never a
    reason to fail the user's commit (unless warnings are turned into errors).
    """
    if value is None:
        return None
    kind = type(value)
    encoder = _BY_TYPE.get(kind)
    if encoder is None:
        custom = _CUSTOM.get(kind) or next(
            (entry for cls, entry in _CUSTOM.items() if isinstance(value, cls)), None
        )
        if custom is not None:
            encoder = custom.encode_value
        else:
            encoder = next((enc for base, enc in _ENCODERS if isinstance(value, base)), _fallback)
        if encoder is not _fallback:
            _BY_TYPE[kind] = encoder
    return encoder(value)


_NATIVE = (
    bool, int, float, Decimal, str, datetime, date, time, timedelta, UUID,
    bytes, bytearray, memoryview, dict, list, tuple, type(None),
)  # fmt: skip


def register_type(
    cls: type[Any],
    encode: Callable[[Any], str],
    decode: Callable[[str], Any],
    *,
    name: str | None = None,
) -> None:
    """Record values of ``cls`` (and its subclasses) with your own text encoding.

    Without it, a value of a type sqlaudit does not know is stored as its ``repr()``
    with a :class:`~sqlaudit.exceptions.FallbackEncodingWarning` and reads back as
    text. Registered, it is stored as ``custom:<name>:<encode(value)>`` and reads back
    as ``decode(text)``. The name, not the class, is stored: keep it when the class
    moves or is renamed (pass the old one as ``name``). A value written under a name
    no longer registered reads back as its text.

    Args:
        cls: The Python type of the values, as the column hands them over.
        encode: ``value -> str``.
        decode: ``str -> value``, the inverse of ``encode``.
        name: The stored name of the type (default: ``module.QualName``); no ``:``.

    Raises:
        ConfigurationTypeError: ``cls`` is not a class, or a function is not callable.
        ConfigurationError: ``cls`` is one sqlaudit already encodes natively, or the
            name is empty, contains ``:``, or is taken by another class.

    Example:
        >>> from fractions import Fraction
        >>> register_type(Fraction, str, Fraction, name="fraction")
        >>> encode(Fraction(1, 3))
        'custom:fraction:1/3'
        >>> decode('custom:fraction:1/3')
        Fraction(1, 3)
        >>> unregister_type(Fraction)
    """
    if not isinstance(cls, type):
        raise ConfigurationTypeError(
            f"register_type() takes the class of the values first, not {cls!r}: "
            "register_type(Money, encode, decode)."
        )
    for label, function in (("encode", encode), ("decode", decode)):
        if not callable(function):
            raise ConfigurationTypeError(
                f"register_type({cls.__qualname__}, ...): {label} must be a function, not "
                f"{type(function).__name__}; pass {label}=a callable."
            )
    if cls in _NATIVE or issubclass(cls, enum.Enum):
        raise ConfigurationError(
            f"register_type({cls.__qualname__}, ...): sqlaudit already records "
            f"{cls.__qualname__} values with their type; register a class of your own "
            "(or a subclass) instead."
        )
    stored = f"{cls.__module__}.{cls.__qualname__}" if name is None else name
    if not isinstance(stored, str) or not stored or ":" in stored:
        raise ConfigurationError(
            f"register_type({cls.__qualname__}, ..., name={stored!r}): the name must be a "
            "non-empty str without ':'."
        )
    taken = _CUSTOM_BY_NAME.get(stored)
    if taken is not None and taken.cls is not cls:
        raise ConfigurationError(
            f"register_type({cls.__qualname__}, ..., name={stored!r}): the name is already "
            f"registered for {taken.cls.__qualname__}; pick another name, or "
            f"unregister_type({taken.cls.__qualname__}) first."
        )
    unregister_type(cls)
    entry = _Custom(cls, stored, encode, decode)
    _CUSTOM[cls] = entry
    _CUSTOM_BY_NAME[stored] = entry
    _BY_TYPE.clear()


def unregister_type(cls: type[Any]) -> None:
    """Undo :func:`register_type` for ``cls`` (nothing happens if it was not registered).

    Example:
        >>> from fractions import Fraction
        >>> unregister_type(Fraction)
    """
    entry = _CUSTOM.pop(cls, None)
    if entry is not None:
        _CUSTOM_BY_NAME.pop(entry.name, None)
    _BY_TYPE.clear()


def registered_decoder(name: str) -> Callable[[str], Any] | None:
    """Return the decode function registered under ``name``, if any."""
    entry = _CUSTOM_BY_NAME.get(name)
    return None if entry is None else entry.decode


def registered_types() -> dict[type[Any], Callable[[str], Any]]:
    """Return each registered class with its decode function."""
    return {cls: entry.decode for cls, entry in _CUSTOM.items()}


def _fallback(value: Any) -> str:
    warnings.warn(
        f"sqlaudit cannot encode a {type(value).__module__}.{type(value).__qualname__} "
        "natively; it is recorded as its repr() and will read back as text. "
        "Store a str, number, date/time, UUID, bytes, Enum or JSON value to keep its type, "
        "or register the type with sqlaudit.register_type(cls, encode, decode).",
        FallbackEncodingWarning,
        stacklevel=2,
    )
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not break the commit either
        text = f"<unrepresentable {type(value).__qualname__}>"
    return "repr:" + text


def _decode_enum(payload: str, enum_hint: type[enum.Enum] | None) -> Any:
    data = json.loads(payload)
    name = data["name"]
    candidates: list[type[enum.Enum]] = []
    if enum_hint is not None:
        candidates.append(enum_hint)
    module_name, _, qualname = data["class"].partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        pass
    else:
        if isinstance(obj, type) and issubclass(obj, enum.Enum):
            candidates.append(obj)
    for cls in candidates:
        if name in cls.__members__:
            return cls[name]
    # The enum (or the member) is gone: its stored value, else its name, is what is left.
    return data.get("value", name)


def _decode_timedelta(payload: str) -> timedelta:
    days, seconds, microseconds = (int(part) for part in payload.split(","))
    return timedelta(days=days, seconds=seconds, microseconds=microseconds)


_DECODERS: dict[str, Callable[[str], Any]] = {
    "str": lambda p: p,
    "int": int,
    "float": float,
    "bool": lambda p: p == "true",
    "decimal": Decimal,
    "datetime": datetime.fromisoformat,
    "date": date.fromisoformat,
    "time": time.fromisoformat,
    "timedelta": _decode_timedelta,
    "uuid": UUID,
    "bytes": lambda p: base64.b64decode(p.encode("ascii")),
    "json": json.loads,
    "repr": lambda p: p,
}


def decode(text: str | None, *, enum_hint: type[enum.Enum] | None = None) -> Any:
    """Decode what :func:`encode` wrote.

    Args:
        text: The stored text, or ``None``.
        enum_hint: The Enum class the column holds today, tried first for ``enum`` values.

    Text without a known tag (written by hand, say) is returned unchanged.
    """
    if text is None:
        return None
    tag, sep, payload = text.partition(":")
    if not sep:
        return text
    if tag == "enum":
        return _decode_enum(payload, enum_hint)
    if tag == "custom":
        name, _, text_value = payload.partition(":")
        decoder_of = registered_decoder(name)
        return text_value if decoder_of is None else decoder_of(text_value)
    decoder = _DECODERS.get(tag)
    if decoder is None:
        return text
    return decoder(payload)
