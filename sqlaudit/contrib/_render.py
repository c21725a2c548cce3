"""HTML for the admin pages: every value escaped, long values folded, JSON pretty, bytes sized.

Nothing here knows a web framework: the functions take values and return HTML text
in which everything that came from the database has gone through :func:`html.escape`.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time
from html import escape
from typing import Any

__all__ = ["FOLD_AT", "attrs", "esc", "link", "table", "value_html"]

# Values longer than this many characters are folded behind a <details> summary.
FOLD_AT = 80


def esc(value: object) -> str:
    """Return ``str(value)`` HTML-escaped (quotes included, so it is safe in attributes too).

    Example:
        >>> esc("<script>")
        '&lt;script&gt;'
    """
    return escape(str(value), quote=True)


def attrs(**values: object) -> str:
    """Return HTML attributes, escaped; ``class_`` spells ``class``, ``None`` values are left out.

    Example:
        >>> attrs(href="/a?b=1&c=2", class_="btn")
        ' href="/a?b=1&amp;c=2" class="btn"'
    """
    parts = []
    for name, value in values.items():
        if value is None:
            continue
        key = name.rstrip("_").replace("_", "-")
        parts.append(f' {key}="{esc(value)}"')
    return "".join(parts)


def link(href: str, text: str, **extra: object) -> str:
    """Return an ``<a>`` element with escaped address and text.

    Example:
        >>> link("/h?x=1&y=2", "<b>")
        '<a href="/h?x=1&amp;y=2">&lt;b&gt;</a>'
    """
    return f"<a{attrs(href=href, **extra)}>{esc(text)}</a>"


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], **extra: object) -> str:
    """Return a ``<table>``: ``headers`` are escaped, the cells of ``rows`` are HTML already.

    Example:
        >>> table(["a"], [["<i>1</i>"]], id="t")[:40]
        '<table id="t" class="table"><thead><tr>'
    """
    extra.setdefault("class_", "table")
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table{attrs(**extra)}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _text(value: Any) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def value_html(value: Any) -> str:
    """Return a stored value as HTML: bytes by size, JSON pretty, long text folded.

    Example:
        >>> value_html(None)
        '<em class="sqlaudit-empty">empty</em>'
        >>> value_html(b"abc")
        '<span class="sqlaudit-bytes">3 bytes</span>'
        >>> value_html("<script>alert(1)</script>")
        '<code>&lt;script&gt;alert(1)&lt;/script&gt;</code>'
    """
    if value is None:
        return '<em class="sqlaudit-empty">empty</em>'
    if isinstance(value, bytes | bytearray | memoryview):
        size = len(bytes(value))
        return f'<span class="sqlaudit-bytes">{size:,} byte{"" if size == 1 else "s"}</span>'
    if isinstance(value, Mapping | list | tuple):
        pretty = json.dumps(value, indent=2, sort_keys=True, default=_text, ensure_ascii=False)
        return _folded(pretty, pre=True, css="sqlaudit-json")
    text = _text(value)
    return _folded(text, pre="\n" in text, css="sqlaudit-text")


def _folded(text: str, *, pre: bool, css: str) -> str:
    whole = f'<pre class="{css}">{esc(text)}</pre>' if pre else f"<code>{esc(text)}</code>"
    if len(text) <= FOLD_AT:
        return whole
    first = text[:FOLD_AT].splitlines()[0] if text[:FOLD_AT].strip() else text[:FOLD_AT]
    summary = f"{esc(first)}… ({len(text):,} characters)"
    return f'<details class="sqlaudit-fold"><summary>{summary}</summary>{whole}</details>'
