"""The small pieces of the admin pages: the filter form, the pager, confirmations, notices.

Each returns HTML in which every value has been escaped (see :mod:`._render`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sqlaudit.contrib._render import attrs, esc, link, table, value_html
from sqlaudit.exceptions import FilterError, RevertConflictError, UntrackedModelError

if TYPE_CHECKING:
    from sqlaudit.contrib._screens import HistoryAdmin, Screen

__all__ = [
    "OPERATIONS",
    "activity_form",
    "confirm_form",
    "conflicts",
    "dash",
    "day",
    "denied",
    "error",
    "none",
    "not_found",
    "notice",
    "pager",
    "same_origin",
]

OPERATIONS = ("insert", "update", "delete", "baseline")


def same_origin(origin: str | None, referer: str | None, host: str | None) -> bool:
    """Return whether a POST came from a page of this site, by its Origin (else Referer) header.

    A browser sends ``Origin`` with every cross-site POST; a request that carries
    neither header (a script, a test client) is taken as same-site. This refuses a
    restore or revert posted from another site's page with the admin's cookies.

    Example:
        >>> same_origin("https://evil.example", None, "admin.example")
        False
        >>> same_origin(None, "https://admin.example/admin/x", "admin.example")
        True
    """
    source = origin if origin and origin != "null" else referer
    if not source:
        return origin != "null"
    return urlsplit(source).netloc.lower() == (host or "").lower()


def day(params: Mapping[str, str], name: str) -> date | None:
    text = (params.get(name) or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise FilterError(
            f"the {name!r} filter takes a date as YYYY-MM-DD, not {text!r}."
        ) from None


_INPUT = "form-control form-control-sm d-inline-block w-auto"
_SELECT = "form-select form-select-sm d-inline-block w-auto"


def activity_form(admin: HistoryAdmin, params: Mapping[str, str]) -> str:
    def option(value: str, text: str, chosen: str) -> str:
        selected = " selected" if value == chosen else ""
        return f"<option{attrs(value=value)}{selected}>{esc(text)}</option>"

    models = option("", "All models", params.get("model", ""))
    models += "".join(
        option(key, tracked.table_label, params.get("model", ""))
        for key, tracked in admin.models.items()
    )
    operations = option("", "Any operation", params.get("operation", ""))
    operations += "".join(option(op, op, params.get("operation", "")) for op in OPERATIONS)

    def field(label: str, control: str) -> str:
        return f'<label class="me-2">{esc(label)} {control}</label>'

    def text_input(name: str, kind: str) -> str:
        value = params.get(name, "")
        return f"<input{attrs(type=kind, name=name, id=f'sqlaudit-{name}', value=value)}" + (
            f"{attrs(class_=_INPUT)}>"
        )

    def select(name: str, options: str) -> str:
        return (
            f"<select{attrs(name=name, id=f'sqlaudit-{name}', class_=_SELECT)}>{options}</select>"
        )

    parts = [
        field("User", text_input("user", "text")),
        field("Model", select("model", models)),
        field("Operation", select("operation", operations)),
        field("From", text_input("since", "date")),
        field("To", text_input("until", "date")),
        f"<input{attrs(type='hidden', name='tz', id='sqlaudit-tz', value=params.get('tz', ''))}>",
        '<button type="submit" id="sqlaudit-filter" class="btn btn-sm btn-primary">Filter</button>',
    ]
    # The dates are read in the viewer's time zone: the browser fills it in.
    script = (
        "<script>(function(){var tz=document.getElementById('sqlaudit-tz');"
        "if(tz&&!tz.value){try{tz.value=Intl.DateTimeFormat().resolvedOptions().timeZone;}"
        "catch(e){}}})();</script>"
    )
    zone = params.get("tz") or ""
    shown = f" (dates in {esc(zone)})" if zone else ""
    return (
        f'<form method="get" class="sqlaudit-filters mb-3">{"".join(parts)}{shown}</form>{script}'
    )


def pager(
    url: Callable[[dict[str, str]], str], params: Mapping[str, str], cursor: str | None
) -> str:
    parts = []
    if params.get("cursor"):
        parts.append(link(url({}), "« Newest", class_="btn btn-sm btn-secondary sqlaudit-newest"))
    if cursor:
        parts.append(
            link(
                url({"cursor": cursor}), "Older »", class_="btn btn-sm btn-secondary sqlaudit-older"
            )
        )
    return f'<p class="sqlaudit-pager">{" ".join(parts)}</p>' if parts else ""


def confirm_form(action: str, label: str, back: str, *, overwrite: bool = False) -> str:
    hidden = '<input type="hidden" name="overwrite" value="1">' if overwrite else ""
    hidden += '<input type="hidden" name="confirm" value="1">'
    return (
        f'<form method="post"{attrs(action=action)} class="sqlaudit-confirm">{hidden}'
        f'<button type="submit" class="btn btn-danger" id="sqlaudit-confirm">{esc(label)}</button> '
        f"{link(back, 'Cancel', class_='btn btn-secondary')}</form>"
    )


def conflicts(exc: RevertConflictError, *, overwrite_form: bool) -> str:
    rows = [
        [
            esc(f"{c.model} {c.resource_id}"),
            esc(c.field),
            value_html(c.expected),
            value_html(c.actual),
            esc(c.transaction_id) if c.transaction_id else "a write with no history",
        ]
        for c in exc.conflicts
    ]
    body = '<div class="alert alert-warning sqlaudit-conflict">Nothing was changed: later '
    body += "changes touch the same fields.</div>"
    body += table(["Object", "Field", "Expected", "Found", "Changed by"], rows)
    if overwrite_form:
        body += '<form method="post" class="sqlaudit-confirm">'
        body += '<input type="hidden" name="overwrite" value="1">'
        body += '<input type="hidden" name="confirm" value="1">'
        body += '<button type="submit" class="btn btn-danger">Overwrite them anyway</button></form>'
    return body


def error(exc: Exception) -> str:
    return f'<div class="alert alert-danger sqlaudit-error">{esc(exc)}</div>'


def notice(params: Mapping[str, str]) -> str:
    done = params.get("done")
    text = {"restored": "Restored.", "reverted": "Transaction reverted."}.get(done or "")
    return f'<div class="alert alert-success sqlaudit-done">{text}</div>' if text else ""


def none() -> str:
    return '<p class="sqlaudit-none">No events.</p>'


def dash() -> str:
    return '<span class="text-muted">&mdash;</span>'


def not_found(model: str) -> Screen:
    from sqlaudit.contrib._screens import Screen

    return Screen(
        "Not found",
        error(
            UntrackedModelError(
                f"{model!r} is not one of the models whose history this admin shows."
            )
        ),
        status=404,
    )


def denied(title: str, what: str) -> Screen:
    from sqlaudit.contrib._screens import Screen

    return Screen(
        title,
        f'<div class="alert alert-danger sqlaudit-denied">You are not allowed to {esc(what)}.'
        "</div>",
        status=403,
    )
