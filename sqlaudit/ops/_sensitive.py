"""Sensitive fields: declared apart from ``@track_table``, stored digested or masked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlaudit import _redact, _registry
from sqlaudit.config import get_config, has_config
from sqlaudit.exceptions import OperationError

__all__ = ["clear_sensitive_fields", "set_sensitive_fields"]

STRATEGIES = ("digest", "mask")


def set_sensitive_fields(
    model: type[Any], fields: Mapping[str, str], *, key: bytes | str | None = None
) -> None:
    """Store the values of some tracked fields as a keyed digest, or masked.

    ``"digest"`` stores ``digest:`` and the first 128 bits of HMAC-SHA-256 of the value
    under ``key``: a change is still visible (two equal values have equal digests, so
    one can tell "changed back to what it was"), the value is not, and without the key
    nobody can test a guess. ``"mask"`` stores ``"[masked]"``: the row still says that
    the field changed, when and by whom. Either way no value is kept in clear, so
    states, diffs and restores of those fields show the digest or the mask. Rows
    written before the declaration keep their values: :func:`erase` them if needed.

    Rows are redacted where sqlaudit writes them from Python. Rows written inside the
    database are not, so a model captured by database triggers is refused, and so is a
    config that audits bulk statements in the database (``bulk_in_database=True``, the
    default): declare after :func:`sqlaudit.set_config` with ``bulk_in_database=False``.

    Args:
        model: A tracked model.
        fields: ``{field: "digest" | "mask"}``; replaces an earlier declaration.
        key: The secret of the digests (16 bytes or more; str is UTF-8 encoded). Keep it
            outside the database; the same key gives the same digests.

    Raises:
        OperationError: an untracked model or field, an unknown strategy, a digest
            without a key, database capture, or bulk statements audited in the database.

    Example:
        >>> set_sensitive_fields(Customer, {"email": "digest", "phone": "mask"},
        ...                      key=os.environ["AUDIT_KEY"])  # doctest: +SKIP
    """
    tracked = _registry.lookup(model) if isinstance(model, type) else None
    if tracked is None:
        shown = model.__name__ if isinstance(model, type) else repr(model)
        raise OperationError(
            f"set_sensitive_fields({shown}, ...): {shown} is not a tracked model; pass a "
            "class decorated with @track_table."
        )
    name = tracked.model.__name__
    if not isinstance(fields, Mapping) or not fields:
        raise OperationError(
            f"set_sensitive_fields({name}, fields=...) takes a dict such as "
            '{"email": "digest", "phone": "mask"}.'
        )
    unknown = [field for field in fields if field not in tracked.fields]
    if unknown:
        raise OperationError(
            f"set_sensitive_fields({name}, ...): {', '.join(map(str, unknown))} is not tracked "
            f"on {name}; its tracked fields are: {', '.join(tracked.fields)}."
        )
    bad = {field: how for field, how in fields.items() if how not in STRATEGIES}
    if bad:
        raise OperationError(
            f"set_sensitive_fields({name}, {bad!r}): each field takes 'digest' (a keyed "
            "digest) or 'mask'."
        )
    secret = key.encode() if isinstance(key, str) else key
    if "digest" in fields.values() and (not isinstance(secret, bytes) or len(secret) < 16):
        raise OperationError(
            f"set_sensitive_fields({name}, ...): a 'digest' field needs key= (16 bytes or "
            "more, kept outside the database), such as key=os.environ['AUDIT_KEY']."
        )
    if _registry.capture_of(tracked) == "database":
        raise OperationError(
            f"set_sensitive_fields({name}, ...): {name} is captured by database triggers, "
            "which store values as they are; capture it in the session "
            '(@track_table(..., capture="session")) to redact its fields.'
        )
    if has_config() and get_config().bulk_in_database:
        raise OperationError(
            f"set_sensitive_fields({name}, ...): bulk statements are audited inside the "
            "database, where values are stored as they are; set "
            "SQLAuditConfig(bulk_in_database=False) so they are audited in Python, and "
            "redacted."
        )
    rules = {
        field: _redact.Rule(how, secret if how == "digest" else None)
        for field, how in fields.items()
    }
    _redact.declare(tracked.table_name, rules)


def clear_sensitive_fields(model: type[Any] | None = None) -> None:
    """Store the fields of ``model`` (``None``: of every model) in clear again.

    Example:
        >>> clear_sensitive_fields()
    """
    if model is None:
        _redact.clear()
        return
    tracked = _registry.lookup(model)
    if tracked is not None:
        _redact.clear(tracked.table_name)
