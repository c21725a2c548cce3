"""The admin pages, framework-neutral: what the SQLAdmin and Flask-Admin views render.

A :class:`HistoryAdmin` holds the settings (tracked models, labels, who may undo) and
turns a request's parameters into a :class:`Screen`: a title, a body of escaped HTML
and a status code, or a redirect. Every read and write goes through
:mod:`sqlaudit.history`; the framework modules only route requests, check the
permission callback, and wrap the body in the admin's layout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, Protocol

from sqlalchemy.orm import Session

from sqlaudit import _codec, _registry
from sqlaudit._events import ResourceEvent, ResourceState
from sqlaudit.config import get_config
from sqlaudit.contrib._parts import (
    activity_form,
    confirm_form,
    conflicts,
    dash,
    day,
    denied,
    error,
    none,
    not_found,
    notice,
    pager,
)
from sqlaudit.contrib._render import esc, link, table, value_html
from sqlaudit.exceptions import (
    ConfigurationError,
    FilterError,
    HistoryError,
    RevertConflictError,
    SQLAuditError,
    UntrackedModelError,
)
from sqlaudit.history import (
    count_events,
    get_events,
    get_resource_state,
    restore,
    revert_transaction,
)

__all__ = ["HistoryAdmin", "Links", "Screen", "SessionFactory"]

SessionFactory = Callable[[], AbstractContextManager[Session]]


@dataclass(frozen=True, slots=True)
class Screen:
    """What a page shows: a title and a body of escaped HTML, or a redirect.

    Example:
        >>> Screen("Activity", "<p>No events.</p>").status
        200
    """

    title: str
    body: str = ""
    status: int = 200
    redirect: str | None = None


class Links(Protocol):
    """The addresses of the pages, as the framework routes them."""

    def activity(self, params: Mapping[str, str]) -> str:
        """Return the activity page's address with these query parameters."""

    def history(self, model: str, resource_id: str, params: Mapping[str, str]) -> str:
        """Return one object's history page's address."""

    def state(self, model: str, resource_id: str, transaction_id: str) -> str:
        """Return the address of one object as it was just after a transaction."""

    def restore(self, model: str, resource_id: str, transaction_id: str) -> str:
        """Return the address of the restore confirmation (GET) and action (POST)."""

    def revert(self, transaction_id: str) -> str:
        """Return the address of the revert confirmation (GET) and action (POST)."""

    def obj(self, model: str, resource_id: str) -> str | None:
        """Return the admin's own page of the object, or ``None`` when it has none."""


class HistoryAdmin:
    """The settings of the admin history pages, checked once, and the pages themselves.

    Args:
        models: The tracked models to show (each decorated with ``@track_table``).
        field_labels: ``{Model: {"field": "Label"}}``: how fields are named on the pages
            (default: the field name); model names come from ``table_label``.
        page_size: Events per page.
        user_label: ``(changed_by) -> str``: how a user id is shown (a name, say);
            default: the id itself.
        session_factory: Opens the Session to read and write with (a ``sessionmaker``
            works); default: the one in the sqlaudit config.

    Raises:
        UntrackedModelError: a model is not tracked.
        ConfigurationError: a label for a field that is not tracked, a composite key,
            or a page size below 1.

    Example:
        >>> labels = {Customer: {"email": "E-mail"}}
        >>> admin = HistoryAdmin([Customer], field_labels=labels)  # doctest: +SKIP
        >>> admin.label("customers", "email")  # doctest: +SKIP
        'E-mail'
    """

    def __init__(
        self,
        models: Iterable[type[Any]],
        *,
        field_labels: Mapping[type[Any], Mapping[str, str]] | None = None,
        page_size: int = 20,
        session_factory: SessionFactory | None = None,
        user_label: Callable[[str], str] | None = None,
    ) -> None:
        self.models: dict[str, _registry.TrackedModel] = {}
        for model in models:
            tracked = _registry.lookup(model)
            if tracked is None:
                raise UntrackedModelError(
                    f"{getattr(model, '__name__', model)!s} is not tracked, so it has no "
                    "history to show; decorate it with @track_table(tracked_fields=[...]) "
                    "or leave it out of models=."
                )
            if tracked.resource_id_field is None and len(tracked.primary_key) != 1:
                raise ConfigurationError(
                    f"{model.__name__} has a composite primary key "
                    f"({', '.join(tracked.primary_key)}); the admin history pages address "
                    "an object by one id. Give @track_table a resource_id_field, or leave "
                    f"{model.__name__} out of models=."
                )
            self.models[tracked.table_name] = tracked
        if not self.models:
            raise ConfigurationError(
                "models= is empty: name the tracked models whose history the admin shows."
            )
        self.labels: dict[str, dict[str, str]] = {key: {} for key in self.models}
        for model, labels in (field_labels or {}).items():
            tracked = _registry.lookup(model)
            if tracked is None or tracked.table_name not in self.models:
                raise ConfigurationError(
                    f"field_labels names {getattr(model, '__name__', model)!s}, which is not "
                    "in models=; add it to models= or drop its labels."
                )
            for field, label in labels.items():
                if field not in tracked.fields:
                    raise ConfigurationError(
                        f"field_labels gives a label for {model.__name__}.{field}, which is "
                        f"not a tracked field; tracked fields are: {', '.join(tracked.fields)}."
                    )
                self.labels[tracked.table_name][field] = str(label)
        if not isinstance(page_size, int) or page_size < 1:
            raise ConfigurationError(f"page_size must be a positive int, not {page_size!r}.")
        self.page_size = page_size
        self._session_factory = session_factory
        self._user_label = user_label

    # --- helpers ------------------------------------------------------------------------

    def label(self, model: str, field: str) -> str:
        """Return a field's label (its name when no label was given).

        Example:
            >>> admin.label("customers", "name")  # doctest: +SKIP
            'name'
        """
        return self.labels.get(model, {}).get(field, field)

    def user(self, changed_by: str) -> str:
        """Return how a user id is shown: ``user_label(changed_by)``, else the id.

        Example:
            >>> admin.user("7")  # doctest: +SKIP
            'Ada (7)'
        """
        return str(self._user_label(changed_by)) if self._user_label is not None else changed_by

    def model_label(self, model: str) -> str:
        """Return a model's ``table_label``.

        Example:
            >>> admin.model_label("customers")  # doctest: +SKIP
            'Customer'
        """
        tracked = self.models.get(model)
        return tracked.table_label if tracked is not None else model

    def session(self) -> AbstractContextManager[Session]:
        """Open the Session the pages read and write with.

        Example:
            >>> with admin.session() as session:  # doctest: +SKIP
            ...     pass
        """
        if self._session_factory is not None:
            return self._session_factory()
        return get_config().open_session()

    def _model(self, key: str) -> _registry.TrackedModel | None:
        return self.models.get(key)

    # --- pages --------------------------------------------------------------------------

    def activity(self, params: Mapping[str, str], links: Links, *, can_undo: bool) -> Screen:
        """Return the Activity page: events across the models, filtered and paginated.

        ``params`` are the query parameters: ``user``, ``model``, ``operation``,
        ``since`` and ``until`` (dates, ``YYYY-MM-DD``, read in ``tz``), ``tz`` (the
        viewer's IANA zone; default: the config's) and ``cursor``.

        Example:
            >>> admin.activity({"user": "7"}, links, can_undo=False).title  # doctest: +SKIP
            'Activity'
        """
        form = activity_form(self, params)
        try:
            filters = self._filters(params)
            with self.session() as session:
                page = get_events(
                    session=session,
                    limit=self.page_size,
                    cursor=params.get("cursor") or None,
                    **filters,
                )
                total = count_events(session=session, **filters)
        except SQLAuditError as exc:
            return Screen("Activity", form + error(exc), status=400)
        kept = {k: v for k, v in params.items() if v and k not in ("cursor", "done")}
        zone = params.get("tz") or None
        rows = [
            self._event_row(event, links, can_undo=can_undo, show_object=True, zone=zone)
            for event in page
        ]
        body = form + notice(params)
        body += f'<p class="sqlaudit-total">{total:,} event{"" if total == 1 else "s"}</p>'
        headers = ["When", "Object", "Operation", "Who", "Why", "Changes", ""]
        body += table(headers, rows, class_="table sqlaudit-events") if rows else none()
        body += pager(lambda extra: links.activity({**kept, **extra}), params, page.next_cursor)
        return Screen("Activity", body)

    def history(
        self,
        model: str,
        resource_id: str,
        params: Mapping[str, str],
        links: Links,
        *,
        can_undo: bool,
    ) -> Screen:
        """Return one object's History page: its events newest first, with diffs, paginated.

        Example:
            >>> admin.history("customers", "2", {}, links, can_undo=True).title  # doctest: +SKIP
            'Customer 2: history'
        """
        tracked = self._model(model)
        if tracked is None:
            return not_found(model)
        title = f"{tracked.table_label} {resource_id}: history"
        zone = params.get("tz") or None
        try:
            with self.session() as session:
                page = get_events(
                    session=session,
                    models=[tracked.model],
                    filter_resource_ids=[resource_id],
                    limit=self.page_size,
                    cursor=params.get("cursor") or None,
                    time_zone=zone,
                )
        except SQLAuditError as exc:
            return Screen(title, error(exc), status=400)
        body = notice(params)
        own = links.obj(model, resource_id)
        nav = [link(links.activity({}), "All activity")]
        if own is not None:
            nav.insert(0, link(own, f"{tracked.table_label} {resource_id}"))
        body += f'<p class="sqlaudit-nav">{" · ".join(nav)}</p>'
        rows = [
            self._event_row(event, links, can_undo=can_undo, show_object=False, zone=zone)
            for event in page
        ]
        headers = ["When", "Operation", "Who", "Why", "Changes", ""]
        body += table(headers, rows, class_="table sqlaudit-events") if rows else none()
        kept = {"tz": zone} if zone else {}
        body += pager(
            lambda extra: links.history(model, resource_id, {**kept, **extra}),
            params,
            page.next_cursor,
        )
        return Screen(title, body)

    def state(
        self, model: str, resource_id: str, transaction_id: str, links: Links, *, can_undo: bool
    ) -> Screen:
        """Return an object as its history says it was just after one transaction.

        Example:
            >>> admin.state("customers", "2", tx, links, can_undo=False).title  # doctest: +SKIP
            'Customer 2 after transaction ...'
        """
        tracked = self._model(model)
        if tracked is None:
            return not_found(model)
        title = f"{tracked.table_label} {resource_id} as of transaction {transaction_id}"
        try:
            state = self._state(tracked, resource_id, transaction_id)
        except SQLAuditError as exc:
            return Screen(title, error(exc), status=400)
        when = state.timestamp.isoformat(sep=" ") if state.timestamp else "before its history"
        body = f'<p class="sqlaudit-status">Status: <strong>{esc(state.status)}</strong>'
        body += f" at {esc(when)}"
        if not state.complete:
            body += " (incomplete: the history does not hold every field)"
        body += "</p>"
        rows = [
            [esc(self.label(model, name)), value_html(state.values.get(name))]
            for name in tracked.fields
            if name in state.values
        ]
        body += table(["Field", "Value"], rows, class_="table sqlaudit-state")
        actions = [link(links.history(model, resource_id, {}), "Back to the history")]
        if can_undo:
            actions.append(
                link(
                    links.restore(model, resource_id, transaction_id),
                    "Restore to this state",
                    class_="btn btn-warning sqlaudit-restore",
                )
            )
        body += f'<p class="sqlaudit-actions">{" ".join(actions)}</p>'
        return Screen(title, body)

    def restore(
        self,
        model: str,
        resource_id: str,
        transaction_id: str,
        links: Links,
        *,
        can_undo: bool,
        form: Mapping[str, str] | None = None,
        same_origin: bool = True,
    ) -> Screen:
        """Return the restore confirmation (``form`` is ``None``) or restore and redirect.

        A form posted from another site (``same_origin=False``) is refused (403).

        The confirmation lists every field that will change (now -> after the restore).
        The restore writes audited rows (``reason="restore"``) and commits.

        Example:
            >>> admin.restore("customers", "2", tx, links, can_undo=True).title  # doctest: +SKIP
            'Restore Customer 2'
        """
        tracked = self._model(model)
        if tracked is None:
            return not_found(model)
        title = f"Restore {tracked.table_label} {resource_id}"
        if not can_undo:
            return denied(title, "restore")
        if form is not None and not same_origin:
            return denied(title, "restore from a form posted by another site")
        back = links.history(model, resource_id, {})
        if form is not None:
            overwrite = form.get("overwrite") == "1"
            try:
                with self.session() as session:
                    restore(
                        session,
                        tracked.model,
                        resource_id,
                        transaction_id=transaction_id,
                        overwrite=overwrite,
                    )
                    session.commit()
            except RevertConflictError as exc:
                return Screen(title, conflicts(exc, overwrite_form=True), status=409)
            except SQLAuditError as exc:
                return Screen(title, error(exc), status=400)
            return Screen(title, redirect=links.history(model, resource_id, {"done": "restored"}))
        try:
            target = self._state(tracked, resource_id, transaction_id)
            now = self._state(tracked, resource_id, None)
        except SQLAuditError as exc:
            return Screen(title, error(exc), status=400)
        if target.status == "absent":
            absent = HistoryError(
                f"{tracked.model.__name__} {resource_id} did not exist yet after transaction "
                f"{transaction_id}; pick a later event to restore to."
            )
            return Screen(title, error(absent), status=400)
        body = f"<p>Restore {esc(tracked.table_label)} {esc(resource_id)} to its state just "
        body += f"after transaction <code>{esc(transaction_id)}</code>. This will:</p>"
        if target.status == "deleted" and now.status != "deleted":
            body += '<p class="sqlaudit-plan"><strong>delete</strong> the object.</p>'
        else:
            if now.status == "deleted":
                body += '<p class="sqlaudit-plan"><strong>add the object back</strong>.</p>'
            rows = [
                [
                    esc(self.label(model, name)),
                    value_html(now.values.get(name)),
                    value_html(target.values[name]),
                ]
                for name in tracked.fields
                if name in target.values
                and _codec.encode(now.values.get(name)) != _codec.encode(target.values[name])
            ]
            if rows:
                headers = ["Field", "Now", "After the restore"]
                body += table(headers, rows, class_="table sqlaudit-plan")
            elif now.status != "deleted":
                body += '<p class="sqlaudit-plan">change nothing: the values are the same.</p>'
        body += confirm_form(links.restore(model, resource_id, transaction_id), "Restore", back)
        return Screen(title, body)

    def revert(
        self,
        transaction_id: str,
        links: Links,
        *,
        can_undo: bool,
        form: Mapping[str, str] | None = None,
        same_origin: bool = True,
    ) -> Screen:
        """Return the revert confirmation (``form`` is ``None``) or revert and redirect.

        A form posted from another site (``same_origin=False``) is refused (403).

        The confirmation lists every object and field the transaction changed and the
        value each goes back to. The revert writes audited rows (``reason="revert"``).

        Example:
            >>> admin.revert(tx, links, can_undo=True).title  # doctest: +SKIP
            'Revert transaction ...'
        """
        title = f"Revert transaction {transaction_id}"
        if not can_undo:
            return denied(title, "revert a transaction")
        if form is not None and not same_origin:
            return denied(title, "revert from a form posted by another site")
        if form is not None:
            overwrite = form.get("overwrite") == "1"
            try:
                with self.session() as session:
                    revert_transaction(session, transaction_id, overwrite=overwrite)
                    session.commit()
            except RevertConflictError as exc:
                return Screen(title, conflicts(exc, overwrite_form=True), status=409)
            except SQLAuditError as exc:
                return Screen(title, error(exc), status=400)
            return Screen(title, redirect=links.activity({"done": "reverted"}))
        try:
            with self.session() as session:
                events = get_events(session=session, filter_transaction_ids=[transaction_id]).items
        except SQLAuditError as exc:
            return Screen(title, error(exc), status=400)
        if not events:
            unknown = FilterError(
                f"no change row has transaction id {transaction_id!r}; pick a transaction "
                "from the Activity page."
            )
            return Screen(title, error(unknown), status=404)
        body = "<p>Undo everything this transaction did. This will:</p><ul class='sqlaudit-plan'>"
        for event in reversed(events):
            name = f"{event.table_label or event.table_name} {event.resource_id}"
            if event.operation == "insert":
                body += f"<li><strong>delete</strong> {esc(name)}</li>"
                continue
            verb = "add back" if event.operation == "delete" else "set"
            rows = [
                [esc(self.label(event.table_name, f)), value_html(new), value_html(old)]
                for f, (old, new) in event.fields.items()
            ]
            body += f"<li><strong>{verb}</strong> {esc(name)}"
            body += table(["Field", "Now (after the transaction)", "Back to"], rows) + "</li>"
        body += "</ul>"
        back = links.activity({})
        body += confirm_form(links.revert(transaction_id), "Revert transaction", back)
        return Screen(title, body)

    # --- parts --------------------------------------------------------------------------

    def _state(
        self, tracked: _registry.TrackedModel, resource_id: str, transaction_id: str | None
    ) -> ResourceState:
        with self.session() as session:
            return get_resource_state(
                tracked.model, resource_id, session=session, transaction_id=transaction_id
            )

    def _filters(self, params: Mapping[str, str]) -> dict[str, Any]:
        filters: dict[str, Any] = {"time_zone": params.get("tz") or None}
        key = params.get("model") or ""
        if key:
            tracked = self._model(key)
            if tracked is None:
                raise FilterError(
                    f"model {key!r} is not one of the admin's models: "
                    f"{', '.join(self.models)}. Pick one from the list."
                )
            filters["models"] = [tracked.model]
        else:
            filters["models"] = [tracked.model for tracked in self.models.values()]
        if params.get("user"):
            filters["filter_user_ids"] = params["user"].strip()
        if params.get("operation"):
            filters["filter_operations"] = params["operation"]
        since, until = day(params, "since"), day(params, "until")
        if since or until:
            filters["filter_date_range"] = (
                datetime.combine(since, time.min) if since else None,
                datetime.combine(until, time.max) if until else None,
            )
        return filters

    def _event_row(
        self,
        event: ResourceEvent,
        links: Links,
        *,
        can_undo: bool,
        show_object: bool,
        zone: str | None,
    ) -> list[str]:
        model = event.table_name
        when = f'<time datetime="{esc(event.timestamp.isoformat())}">'
        when += f"{esc(event.timestamp.strftime('%Y-%m-%d %H:%M:%S %Z'))}</time>"
        diff = [
            [esc(self.label(model, field)), value_html(old), "&rarr;", value_html(new)]
            for field, (old, new) in event.fields.items()
        ]
        changes = table(["Field", "Old", "", "New"], diff, class_="table table-sm sqlaudit-diff")
        actions = [
            link(
                links.state(model, event.resource_id, event.transaction_id),
                "State at this event",
                class_="sqlaudit-state-link",
            )
        ]
        if can_undo:
            actions.append(
                link(
                    links.restore(model, event.resource_id, event.transaction_id),
                    "Restore",
                    class_="btn btn-sm btn-warning sqlaudit-restore",
                )
            )
            actions.append(
                link(
                    links.revert(event.transaction_id),
                    "Revert transaction",
                    class_="btn btn-sm btn-danger sqlaudit-revert",
                )
            )
        row = [when]
        if show_object:
            name = f"{self.model_label(model)} {event.resource_id}"
            kept = {"tz": zone} if zone else {}
            row.append(
                link(links.history(model, event.resource_id, kept), name, class_="sqlaudit-object")
            )
        row += [
            f'<span class="sqlaudit-op sqlaudit-op-{esc(event.operation)}">'
            f"{esc(event.operation)}</span>",
            esc(self.user(event.changed_by)) if event.changed_by is not None else dash(),
            esc(event.reason) if event.reason else dash(),
            changes,
            "<br>".join(actions),
        ]
        return row
