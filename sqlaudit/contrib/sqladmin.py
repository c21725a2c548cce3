"""History pages for SQLAdmin (FastAPI / Starlette): ``pip install "sqlaudit-trail[sqladmin]"``.

:func:`add_history_views` adds an **Activity** page to the admin's menu (events across
the models, filtered by user, model, operation and date range, paginated) and the
pages it links to: each object's **History** (events newest first with their field
diffs), the object as it was after an event, and **Restore** / **Revert transaction**
confirmations behind the ``can_undo`` permission callback. :class:`HistoryMixin`
puts a *History* button on a model view's details page::

    from sqladmin import Admin, ModelView
    from sqlaudit.contrib.sqladmin import HistoryMixin, add_history_views

    class CustomerAdmin(HistoryMixin, ModelView, model=Customer):
        column_list = [Customer.id, Customer.name]

    admin = Admin(app, engine)
    admin.add_view(CustomerAdmin)
    add_history_views(admin, models=[Customer],
                      field_labels={Customer: {"email": "E-mail"}},
                      can_undo=lambda request: request.session.get("role") == "admin")

The pages read and write through :mod:`sqlaudit.history` with a sync Session (the
config's, or ``session_factory=``), in Starlette's thread pool. Restores and reverts
are audited like any change: their rows carry the user the sqlaudit config resolves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from jinja2 import ChoiceLoader, PackageLoader
from markupsafe import Markup
from sqladmin import Admin, BaseView, ModelView, action, expose
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from sqlaudit import _registry
from sqlaudit.contrib._parts import same_origin
from sqlaudit.contrib._screens import HistoryAdmin, Screen, SessionFactory
from sqlaudit.exceptions import ConfigurationError

__all__ = ["HistoryMixin", "add_history_views"]

Permission = Callable[[Request], bool]
_TEMPLATE = "sqlaudit/sqladmin_page.html"


def add_history_views(
    admin: Admin,
    *,
    models: Iterable[type[Any]],
    field_labels: Mapping[type[Any], Mapping[str, str]] | None = None,
    can_undo: Permission | None = None,
    page_size: int = 20,
    session_factory: SessionFactory | None = None,
    user_label: Callable[[str], str] | None = None,
    name: str = "Activity",
    icon: str = "fa-solid fa-clock-rotate-left",
) -> type[BaseView]:
    """Add the Activity page (in the menu) and the history pages to a SQLAdmin ``Admin``.

    Args:
        admin: The ``sqladmin.Admin``.
        models: The tracked models whose history the pages show.
        field_labels: ``{Model: {"field": "Label"}}`` for the pages; model names come
            from ``@track_table(table_label=...)``.
        can_undo: ``(request) -> bool``: may this request restore and revert? ``None``:
            nobody may (the buttons are hidden and the actions answer 403).
        page_size: Events per page.
        user_label: ``(changed_by) -> str``: how a user id is shown (a name, say);
            default: the id itself.
        session_factory: Opens the Session to use; default: the sqlaudit config's.
        name: The menu entry's name.
        icon: The menu entry's icon.

    Returns:
        The view class added (its routes are named ``admin:view-sqlaudit-*``).

    Raises:
        UntrackedModelError: a model is not tracked.
        ConfigurationError: a label for an untracked field, a composite key, a second call
            on the same admin.

    Example:
        >>> add_history_views(admin, models=[Customer],
        ...                   can_undo=lambda request: True)  # doctest: +SKIP
    """
    if any(getattr(view, "sqlaudit_history", None) is not None for view in admin.views):
        raise ConfigurationError(
            "add_history_views() was already called on this Admin; call it once, with "
            "every tracked model in models=."
        )
    history = HistoryAdmin(
        models,
        field_labels=field_labels,
        page_size=page_size,
        session_factory=session_factory,
        user_label=user_label,
    )
    loader = admin.templates.env.loader
    extra = PackageLoader("sqlaudit.contrib", "templates")
    admin.templates.env.loader = ChoiceLoader([loader, extra] if loader else [extra])
    view = type(
        "SQLAuditHistoryView",
        (_HistoryView,),
        {"name": name, "icon": icon, "sqlaudit_history": history, "can_undo": can_undo},
    )
    admin.add_base_view(view)
    return view


class _Links:
    """The page addresses, from Starlette's route names."""

    def __init__(self, request: Request, admin: Admin) -> None:
        self.request = request
        self.admin = admin

    def _url(self, name: str, params: Mapping[str, str] | None = None, **path: str) -> str:
        url = self.request.url_for(f"admin:view-sqlaudit-{name}", **path)
        kept = {k: v for k, v in (params or {}).items() if v}
        return str(url.include_query_params(**kept) if kept else url)

    def activity(self, params: Mapping[str, str]) -> str:
        return self._url("activity", params)

    def history(self, model: str, resource_id: str, params: Mapping[str, str]) -> str:
        return self._url("history", params, model=model, resource_id=resource_id)

    def state(self, model: str, resource_id: str, transaction_id: str) -> str:
        return self._url(
            "state", model=model, resource_id=resource_id, transaction_id=transaction_id
        )

    def restore(self, model: str, resource_id: str, transaction_id: str) -> str:
        return self._url(
            "restore", model=model, resource_id=resource_id, transaction_id=transaction_id
        )

    def revert(self, transaction_id: str) -> str:
        return self._url("revert", transaction_id=transaction_id)

    def obj(self, model: str, resource_id: str) -> str | None:
        for view in self.admin.views:
            if isinstance(view, ModelView) and _table_of(view.model) == model:
                url = self.request.url_for("admin:details", identity=view.identity, pk=resource_id)
                return str(url)
        return None


def _table_of(model: type[Any]) -> str | None:
    tracked = _registry.lookup(model)
    return tracked.table_name if tracked is not None else None


class _HistoryView(BaseView):
    """The Activity page and the pages it links to (configured by :func:`add_history_views`)."""

    sqlaudit_history: ClassVar[HistoryAdmin]
    can_undo: ClassVar[Permission | None]

    def _allowed(self, request: Request) -> bool:
        check = type(self).can_undo
        return bool(check(request)) if check is not None else False

    async def _show(self, request: Request, screen: Screen) -> Response:
        if screen.redirect is not None:
            return RedirectResponse(screen.redirect, status_code=303)
        return await self.templates.TemplateResponse(
            request,
            _TEMPLATE,
            context={"title": screen.title, "subtitle": "", "body": Markup(screen.body)},
            status_code=screen.status,
        )

    def _links(self, request: Request) -> _Links:
        return _Links(request, self._admin_ref)  # type: ignore[arg-type]

    # The first exposed method names the menu entry: keep ``activity`` first.
    @expose("/sqlaudit/activity", methods=["GET"], identity="sqlaudit-activity")
    async def activity(self, request: Request) -> Response:
        """Show the Activity page."""
        params = dict(request.query_params)
        screen = await run_in_threadpool(
            self.sqlaudit_history.activity,
            params,
            self._links(request),
            can_undo=self._allowed(request),
        )
        return await self._show(request, screen)

    @expose("/sqlaudit/history/{model}/{resource_id}", methods=["GET"], identity="sqlaudit-history")
    async def history(self, request: Request) -> Response:
        """Show one object's History page."""
        path = request.path_params
        screen = await run_in_threadpool(
            self.sqlaudit_history.history,
            path["model"],
            path["resource_id"],
            dict(request.query_params),
            self._links(request),
            can_undo=self._allowed(request),
        )
        return await self._show(request, screen)

    @expose(
        "/sqlaudit/state/{model}/{resource_id}/{transaction_id}",
        methods=["GET"],
        identity="sqlaudit-state",
    )
    async def state(self, request: Request) -> Response:
        """Show an object as it was just after a transaction."""
        path = request.path_params
        screen = await run_in_threadpool(
            self.sqlaudit_history.state,
            path["model"],
            path["resource_id"],
            path["transaction_id"],
            self._links(request),
            can_undo=self._allowed(request),
        )
        return await self._show(request, screen)

    @expose(
        "/sqlaudit/restore/{model}/{resource_id}/{transaction_id}",
        methods=["GET", "POST"],
        identity="sqlaudit-restore",
    )
    async def restore(self, request: Request) -> Response:
        """Show the restore confirmation (GET), or restore (POST)."""
        path = request.path_params
        form = await _form(request)
        screen = await run_in_threadpool(
            self.sqlaudit_history.restore,
            path["model"],
            path["resource_id"],
            path["transaction_id"],
            self._links(request),
            can_undo=self._allowed(request),
            form=form,
            same_origin=_same_origin(request),
        )
        return await self._show(request, screen)

    @expose(
        "/sqlaudit/revert/{transaction_id}", methods=["GET", "POST"], identity="sqlaudit-revert"
    )
    async def revert(self, request: Request) -> Response:
        """Show the revert confirmation (GET), or revert (POST)."""
        form = await _form(request)
        screen = await run_in_threadpool(
            self.sqlaudit_history.revert,
            request.path_params["transaction_id"],
            self._links(request),
            can_undo=self._allowed(request),
            form=form,
            same_origin=_same_origin(request),
        )
        return await self._show(request, screen)


def _same_origin(request: Request) -> bool:
    headers = request.headers
    return same_origin(headers.get("origin"), headers.get("referer"), headers.get("host"))


async def _form(request: Request) -> dict[str, str] | None:
    if request.method != "POST":
        return None
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


class HistoryMixin:
    """Mix into a ``ModelView`` to put a *History* button on its details page.

    The button opens the object's History page (added by :func:`add_history_views`).

    Example:
        >>> class CustomerAdmin(HistoryMixin, ModelView, model=Customer):  # doctest: +SKIP
        ...     pass
    """

    model: ClassVar[type[Any]]

    @action("sqlaudit-history", label="History", add_in_detail=True, add_in_list=False)
    async def sqlaudit_history_action(self, request: Request) -> Response:
        """Redirect to the History page of the object the button was pressed on.

        Example:
            >>> client.get("/admin/customer/action/sqlaudit-history?pks=2")  # doctest: +SKIP
        """
        pk = request.query_params.get("pks", "").split(",")[0]
        table = _table_of(self.model)
        if table is None or not pk:
            return RedirectResponse(str(request.url_for("admin:index")), status_code=303)
        url = request.url_for("admin:view-sqlaudit-history", model=table, resource_id=pk)
        return RedirectResponse(str(url), status_code=303)
