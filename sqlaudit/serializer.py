"""sqlaudit 0.7's custom type handlers, kept so code written for it still imports.

0.7 registered a type with ``Serializer.register_custom_handler(Money,
TypeHandler(serialize=..., deserialize=...))``; that call now goes to
:func:`sqlaudit.register_type`, with a :class:`DeprecationWarning`::

    from sqlaudit import register_type

    register_type(Money, encode=str, decode=Money.parse)
"""

from __future__ import annotations

import enum
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlaudit import _codec

__all__ = ["Serializer", "TypeHandler"]


@dataclass
class TypeHandler:
    """How 0.7 encoded one type: ``serialize`` (value -> str) and ``deserialize`` (str -> value).

    Example:
        >>> handler = TypeHandler(serialize=str, deserialize=int)
    """

    serialize: Callable[[Any], str]
    deserialize: Callable[[str], Any]


class Serializer:
    """0.7's serializer; only :meth:`register_custom_handler` is kept.

    Example:
        >>> Serializer.has_handler(int)
        True
    """

    @classmethod
    def register_custom_handler(cls, target_type: type[Any], handler: TypeHandler) -> None:
        """Register ``target_type`` with :func:`sqlaudit.register_type` (deprecated).

        Raises:
            ConfigurationTypeError: ``handler`` is not a :class:`TypeHandler`.
            ConfigurationError: as :func:`sqlaudit.register_type`.

        Example:
            >>> from fractions import Fraction
            >>> import warnings
            >>> with warnings.catch_warnings():
            ...     warnings.simplefilter("ignore", DeprecationWarning)
            ...     Serializer.register_custom_handler(Fraction, TypeHandler(str, Fraction))
        """
        from sqlaudit.exceptions import ConfigurationTypeError

        warnings.warn(
            "Serializer.register_custom_handler() is sqlaudit 0.7's API: use "
            f"sqlaudit.register_type({getattr(target_type, '__qualname__', target_type)}, "
            "encode, decode).",
            DeprecationWarning,
            stacklevel=2,
        )
        if not isinstance(handler, TypeHandler):
            raise ConfigurationTypeError(
                f"Serializer.register_custom_handler({target_type!r}, ...) takes a "
                f"TypeHandler, not {type(handler).__name__}; better, call "
                "sqlaudit.register_type(cls, encode, decode)."
            )
        _codec.register_type(target_type, handler.serialize, handler.deserialize)

    @classmethod
    def has_handler(cls, target_type: type[Any]) -> bool:
        """Tell whether values of ``target_type`` are recorded with their type.

        Example:
            >>> Serializer.has_handler(object)
            False
        """
        if target_type in _codec.registered_types():
            return True
        return target_type in _codec._NATIVE or issubclass(target_type, enum.Enum)
