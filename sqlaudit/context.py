"""Request context for the audit trail: who is acting, why, and anything else worth keeping.

:func:`audit_context` is a context manager and a decorator built on
:mod:`contextvars`, so each thread and each asyncio task sees only its own::

    from sqlaudit import audit_context

    with audit_context(user_id=current_user.id, reason="support ticket 4711", request_id=rid):
        customer.email = "new@example.com"
        session.commit()   # the rows carry that user, reason and {"request_id": rid}

Inside it, rows carry that user (overriding ``get_user_id_callback``), the reason and
the extra metadata. Nested contexts merge (the inner one wins key by key) and
leaving one restores the outer state. :func:`set_session_context` sets the same for
one Session (it wins over the ambient context), and :func:`disable_auditing`
switches capture off in its scope, a deliberate hole for maintenance jobs.
"""

from __future__ import annotations

import functools
import inspect
import json
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, Final, ParamSpec, TypeVar
from uuid import UUID

from sqlalchemy.orm import Session

from sqlaudit.exceptions import AuditContextWarning, ContextTypeError

__all__ = [
    "AuditContext",
    "AuditContextManager",
    "audit_context",
    "auditing_disabled",
    "clear_audit_context",
    "clear_session_context",
    "current_context",
    "disable_auditing",
    "get_audit_context",
    "set_audit_context",
    "set_session_context",
]

P = ParamSpec("P")
R = TypeVar("R")


class _Unset:
    """Marks "not given", as opposed to ``None`` ("no user")."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


@dataclass(frozen=True, slots=True)
class AuditContext:
    """The user, reason and extra metadata in effect for the changes being written.

    ``user_id`` is :data:`UNSET` when no context chose a user (the callback decides).

    Example:
        >>> with audit_context(user_id=7, reason="import"):
        ...     current_context().user_id, current_context().reason
        ('7', 'import')
    """

    user_id: str | _Unset | None = UNSET
    reason: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def merged(self, inner: AuditContext) -> AuditContext:
        """Return this context overridden, key by key, by ``inner``."""
        return AuditContext(
            user_id=self.user_id if isinstance(inner.user_id, _Unset) else inner.user_id,
            reason=self.reason if inner.reason is None else inner.reason,
            extra=MappingProxyType({**self.extra, **inner.extra}),
        )

    def stored_extra(self) -> dict[str, Any] | None:
        """Return what goes into the change table's JSON column (``None`` when empty)."""
        if self.reason is None and not self.extra:
            return None
        stored: dict[str, Any] = {}
        if self.reason is not None:
            stored["reason"] = self.reason
        if self.extra:
            stored["extra"] = dict(self.extra)
        return stored


_EMPTY = AuditContext()
_context: ContextVar[AuditContext] = ContextVar("sqlaudit_context", default=_EMPTY)
_disabled: ContextVar[bool] = ContextVar("sqlaudit_disabled", default=False)
# The (instance, token) pairs of the audit_context blocks open in this thread or
# task, innermost last: one instance may be open in several threads at once, or
# nested in itself, and each exit must restore its own token.
_entered: ContextVar[tuple[tuple[audit_context, Token[AuditContext]], ...]] = ContextVar(
    "sqlaudit_entered", default=()
)
SESSION_CONTEXT_KEY: Final = "sqlaudit.context"


def _build(user_id: Any, reason: Any, extra: dict[str, Any], where: str) -> AuditContext:
    if not isinstance(user_id, _Unset):
        user_id = _user_id_text(user_id, where)
    if reason is not None and not isinstance(reason, str):
        raise ContextTypeError(
            f"{where}(reason=...) takes a str or None, not {type(reason).__name__}."
        )
    for key, value in extra.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ContextTypeError(
                f"{where}({key}=...) cannot be stored as JSON ({exc}); pass str, numbers, "
                "bools, None, or lists/dicts of them (str(value) for anything else)."
            ) from None
    return AuditContext(user_id=user_id, reason=reason, extra=MappingProxyType(dict(extra)))


def _user_id_text(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, UUID)) and not isinstance(value, bool):
        return str(value)
    raise ContextTypeError(
        f"{where}(user_id=...) takes a str, int, UUID or None, not {type(value).__name__} "
        f"{value!r}; pass the user's id, not the user."
    )


class audit_context:
    """Set the user, reason and extra metadata of the changes written in its scope.

    Works as a context manager (``with``/``async with``) and as a decorator of plain
    and ``async`` functions. Nested contexts merge; leaving one restores the outer.

    Args:
        user_id: The acting user (``str``, ``int``, ``UUID``), or ``None`` for "no user";
            overrides ``get_user_id_callback``. Omit it to keep the outer choice.
        reason: Why the change is made, returned as ``ResourceChange.reason``.
        **extra: JSON-serialisable metadata, returned as ``ResourceChange.extra``.

    Raises:
        ContextTypeError: a user id of another type, a non-str reason, or extra
            metadata that cannot be stored as JSON (raised at once, before any write).

    Example:
        >>> with audit_context(user_id=1, reason="bulk fix", ticket="T-9"):
        ...     with audit_context(user_id=2):
        ...         ctx = current_context()
        >>> ctx.user_id, ctx.reason, dict(ctx.extra)
        ('2', 'bulk fix', {'ticket': 'T-9'})
    """

    def __init__(self, *, user_id: Any = UNSET, reason: str | None = None, **extra: Any) -> None:
        self._layer = _build(user_id, reason, extra, "audit_context")

    def __enter__(self) -> AuditContext:
        merged = _context.get().merged(self._layer)
        token = _context.set(merged)
        _entered.set((*_entered.get(), (self, token)))
        return merged

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entered = _entered.get()
        for position in range(len(entered) - 1, -1, -1):
            if entered[position][0] is self:
                _entered.set(entered[:position] + entered[position + 1 :])
                _context.reset(entered[position][1])
                return
        # Left in a context it was never entered in: whatever ran in between (in the
        # context the caller meant) did not see it. A sync FastAPI dependency does
        # exactly this: FastAPI enters and exits it in worker threads.
        warnings.warn(
            "audit_context was left in another thread or task than the one it was entered "
            "in, so the changes made meanwhile did not carry its user, reason or metadata. "
            "A sync (def) FastAPI dependency does this: declare the dependency with "
            "`async def`, or call set_session_context(session, user_id=...) on the "
            "request's Session instead.",
            AuditContextWarning,
            stacklevel=2,
        )

    async def __aenter__(self) -> AuditContext:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Decorate ``func`` so that each call runs inside this context."""
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise ContextTypeError(
                f"audit_context cannot decorate the generator function {func.__qualname__}: "
                "its body runs after the call returns, outside the context. Open "
                "`with audit_context(...):` inside the generator instead."
            )
        layer = self._layer
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                token = _context.set(_context.get().merged(layer))
                try:
                    return await func(*args, **kwargs)
                finally:
                    _context.reset(token)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            token = _context.set(_context.get().merged(layer))
            try:
                return func(*args, **kwargs)
            finally:
                _context.reset(token)

        return wrapper


def current_context() -> AuditContext:
    """Return the ambient context (merged from every enclosing :func:`audit_context`).

    Example:
        >>> current_context().user_id
        UNSET
    """
    return _context.get()


def set_session_context(
    session: Session, *, user_id: Any = UNSET, reason: str | None = None, **extra: Any
) -> None:
    """Set the user, reason and extra metadata for every change written by ``session``.

    It is kept in ``session.info`` until :func:`clear_session_context` or the end of
    the Session, and wins, key by key, over the ambient :func:`audit_context`.

    Raises:
        ContextTypeError: as :func:`audit_context`.

    Example:
        >>> set_session_context(session, user_id="cron", reason="nightly")  # doctest: +SKIP
    """
    layer = _build(user_id, reason, extra, "set_session_context")
    existing = session.info.get(SESSION_CONTEXT_KEY, _EMPTY)
    session.info[SESSION_CONTEXT_KEY] = existing.merged(layer)


def clear_session_context(session: Session) -> None:
    """Forget what :func:`set_session_context` set on ``session``.

    Example:
        >>> clear_session_context(session)  # doctest: +SKIP
    """
    session.info.pop(SESSION_CONTEXT_KEY, None)


def effective_context(session: Session) -> AuditContext:
    """Return the ambient context overridden by ``session``'s own, if any."""
    ambient = _context.get()
    own: AuditContext | None = session.info.get(SESSION_CONTEXT_KEY)
    return ambient if own is None else ambient.merged(own)


@contextmanager
def disable_auditing() -> Iterator[None]:
    """Skip capture for every flush in its scope (this thread or task only).

    A deliberate hole in the audit trail, meant for maintenance jobs such as a
    backfill that must not flood the history. Works as a decorator too.

    Example:
        >>> with disable_auditing():
        ...     auditing_disabled()
        True
    """
    token = _disabled.set(True)
    try:
        yield
    finally:
        _disabled.reset(token)


def auditing_disabled() -> bool:
    """Tell whether :func:`disable_auditing` is in effect here.

    Example:
        >>> auditing_disabled()
        False
    """
    return _disabled.get()


# --- sqlaudit 0.7's names ---------------------------------------------------------------


def _legacy_layer(
    user_id: Any, reason: str | None, impersonated_by: Any, where: str
) -> AuditContext:
    extra: dict[str, Any] = {}
    if impersonated_by is not None:
        if isinstance(impersonated_by, bool) or not isinstance(impersonated_by, (str, int, UUID)):
            raise ContextTypeError(
                f"{where}(impersonated_by=...) takes a str, int, UUID or None, not "
                f"{type(impersonated_by).__name__}; pass the impersonating user's id."
            )
        extra["impersonated_by"] = str(impersonated_by)
    return _build(UNSET if user_id is None else user_id, reason, extra, where)


class AuditContextManager(audit_context):
    """sqlaudit 0.7's context manager: :class:`audit_context` with 0.7's arguments.

    Deprecated (a :class:`DeprecationWarning` says so): ``impersonated_by`` is kept as
    ``extra["impersonated_by"]``, ``user_id=None`` leaves the user to
    ``get_user_id_callback`` (read at each flush, not when the block opens), and
    ``with`` gives an :class:`AuditContext`, not 0.7's pydantic model.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", DeprecationWarning)
        ...     with AuditContextManager(user_id="123", reason="Update record") as ctx:
        ...         ctx.user_id, ctx.reason
        ('123', 'Update record')
    """

    def __init__(
        self,
        *,
        user_id: Any = None,
        reason: str | None = None,
        impersonated_by: Any = None,
    ) -> None:
        warnings.warn(
            "AuditContextManager is sqlaudit 0.7's name: use "
            "sqlaudit.audit_context(user_id=..., reason=..., impersonated_by=...); "
            "impersonated_by is kept in ResourceChange.extra.",
            DeprecationWarning,
            stacklevel=2,
        )
        self._layer = _legacy_layer(user_id, reason, impersonated_by, "AuditContextManager")


def set_audit_context(
    *, user_id: Any = None, reason: str | None = None, impersonated_by: Any = None
) -> AuditContext:
    """Set the context of this thread or task with no block to leave (sqlaudit 0.7's name).

    Deprecated (a :class:`DeprecationWarning` says so): it replaces the ambient
    context until :func:`clear_audit_context` (0.7 also cleared it after the next
    flush); prefer ``with audit_context(...)``, which restores the outer state.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", DeprecationWarning)
        ...     set_audit_context(user_id="7", reason="import").user_id
        '7'
        >>> clear_audit_context()
    """
    warnings.warn(
        "set_audit_context() is sqlaudit 0.7's name: use `with "
        "sqlaudit.audit_context(user_id=..., reason=...):` around the work; the context "
        "set here stays until clear_audit_context().",
        DeprecationWarning,
        stacklevel=2,
    )
    layer = _legacy_layer(user_id, reason, impersonated_by, "set_audit_context")
    _context.set(layer)
    return layer


def clear_audit_context() -> None:
    """Forget the context set by :func:`set_audit_context` (sqlaudit 0.7's name).

    Example:
        >>> clear_audit_context()
        >>> current_context().reason is None
        True
    """
    _context.set(_EMPTY)


def get_audit_context() -> AuditContext:
    """Return the ambient context: sqlaudit 0.7's name for :func:`current_context`.

    Example:
        >>> get_audit_context().user_id
        UNSET
    """
    return _context.get()
