"""Sensitive fields: values stored as a keyed digest, or masked, instead of in clear.

The declarations live here, apart from ``@track_table``, and are applied where every
change row written from Python passes: :func:`sqlaudit._insert.write_changes` calls
:func:`redact` on the rows of a flush (a dictionary lookup when nothing is declared).
Rows written inside the database (capture triggers, bulk statements audited in the
database) never pass here, so a declaration refuses a model captured in the database
and a config that audits bulk statements in the database.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["MASKED", "Rule", "clear", "declare", "redact", "rules"]

MASKED = "[masked]"
"""What a masked value reads back as."""

DIGEST_TAG = "digest:"

# CHANGE_COLUMNS positions (sqlaudit._schema): table_name, field_name, old, new.
_TABLE, _FIELD, _OLD, _NEW = 1, 4, 6, 7


@dataclass(frozen=True, slots=True)
class Rule:
    """How one field is stored: ``"digest"`` (keyed, with ``key``) or ``"mask"``."""

    strategy: str
    key: bytes | None

    def apply(self, text: str | None) -> str | None:
        """Return the stored form of the encoded value ``text`` (``None`` stays ``None``)."""
        if text is None:
            return None
        if self.strategy == "mask":
            return MASKED
        assert self.key is not None
        digest = hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()[:32]
        return DIGEST_TAG + digest


_rules: dict[str, dict[str, Rule]] = {}


def declare(table_name: str, fields: Mapping[str, Rule]) -> None:
    """Declare (or replace) the sensitive fields of one tracked table."""
    _rules[table_name] = dict(fields)


def clear(table_name: str | None = None) -> None:
    """Forget the declarations of one table, or of every table."""
    if table_name is None:
        _rules.clear()
    else:
        _rules.pop(table_name, None)


def rules() -> Mapping[str, Mapping[str, Rule]]:
    """Return the declarations, by table name."""
    return _rules


def redact(rows: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
    """Return ``rows`` with the values of sensitive fields digested or masked."""
    if not _rules:
        return rows
    result: list[Sequence[Any]] = []
    for row in rows:
        fields = _rules.get(row[_TABLE])
        rule = fields.get(row[_FIELD]) if fields else None
        if rule is None:
            result.append(row)
            continue
        values = list(row)
        values[_OLD] = rule.apply(values[_OLD])
        values[_NEW] = rule.apply(values[_NEW])
        result.append(tuple(values))
    return result
