"""History pages for Flask-Admin: ``pip install "sqlaudit-trail[flask-admin]"``.

:func:`add_history_views` adds an **Activity** page to the admin's menu (events across
the models, filtered by user, model, operation and date range, paginated) and the
pages it links to: each object's **History** (events newest first with their field
diffs), the object as it was after an event, and **Restore** / **Revert transaction**
confirmations behind the ``can_undo`` permission callback. :class:`HistoryMixin`
puts a *History* button on a model view's edit and details pages::

    from flask_admin import Admin
    from flask_admin.contrib.sqla import ModelView
    from sqlaudit.contrib.flask_admin import HistoryMixin, add_history_views

    class CustomerAdmin(HistoryMixin, ModelView):
        pass

    admin = Admin(app)
    admin.add_view(CustomerAdmin(Customer, db_session))
    add_history_views(admin, models=[Customer],
                      field_labels={Customer: {"email": "E-mail"}},
                      can_undo=lambda request: current_user.is_admin)

The pages read and write through :mod:`sqlaudit.history` with the config's Session
(or ``session_factory=``). Restores and reverts are audited like any change: their
rows carry the user the sqlaudit config resolves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

from flask import Blueprint, Request, redirect, request, url_for
from flask_admin import Admin, BaseView, expose
from jinja2 import ChoiceLoader, PackageLoader
from markupsafe import Markup

from sqlaudit import _registry
from sqlaudit.contrib._parts import same_origin
from sqlaudit.contrib._screens import HistoryAdmin, Screen, SessionFactory

__all__ = ["HistoryMixin", "HistoryView", "add_history_views"]

Permission = Callable[[Request], bool]
ENDPOINT = "sqlaudit"
F = TypeVar("F", bound=Callable[..., Any])


def _expose(url: str, methods: tuple[str, ...] = ("GET",)) -> Callable[[F], F]:
    """Flask-Admin's ``expose``, typed (Flask-Admin ships no type information)."""
    return cast(Callable[[F], F], expose(url, methods=methods))


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
) -> HistoryView:
    """Add the Activity page (in the menu) and the history pages to a Flask-Admin ``Admin``.

    Args:
        admin: The ``flask_admin.Admin``.
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

    Returns:
        The view added (endpoint ``sqlaudit``, under ``<admin url>/sqlaudit/``).

    Raises:
        UntrackedModelError: a model is not tracked.
        ConfigurationError: a label for an untracked field, or a composite key.

    Example:
        >>> add_history_views(admin, models=[Customer],
        ...                   can_undo=lambda request: True)  # doctest: +SKIP
    """
    history = HistoryAdmin(
        models,
        field_labels=field_labels,
        page_size=page_size,
        session_factory=session_factory,
        user_label=user_label,
    )
    view = HistoryView(history, can_undo=can_undo, name=name)
    admin.add_view(view)
    return view


def _with_templates(blueprint: Blueprint) -> Blueprint:
    """Let the blueprint find sqlaudit's templates beside its own."""
    own = blueprint.jinja_loader
    extra = PackageLoader("sqlaudit.contrib", "templates")
    blueprint.jinja_loader = ChoiceLoader([own, extra] if own else [extra])
    return blueprint


class _Links:
    """The page addresses, from Flask's endpoints."""

    def __init__(self, admin: Admin | None) -> None:
        self.admin = admin

    @staticmethod
    def _url(name: str, params: Mapping[str, str] | None = None, **path: str) -> str:
        values: dict[str, Any] = {k: v for k, v in (params or {}).items() if v}
        values.update(path)
        return url_for(f"{ENDPOINT}.{name}", **values)

    def activity(self, params: Mapping[str, str]) -> str:
        return self._url("index", params)

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
        for view in getattr(self.admin, "_views", []):
            target = getattr(view, "model", None)
            if target is not None and _table_of(target) == model:
                return url_for(f"{view.endpoint}.edit_view", id=resource_id)
        return None


def _table_of(model: type[Any]) -> str | None:
    tracked = _registry.lookup(model)
    return tracked.table_name if tracked is not None else None


class HistoryView(BaseView):  # type: ignore[misc]
    """The Activity page and the pages it links to; made by :func:`add_history_views`.

    Example:
        >>> admin.add_view(HistoryView(HistoryAdmin([Customer])))  # doctest: +SKIP
    """

    def __init__(
        self, history: HistoryAdmin, *, can_undo: Permission | None = None, name: str = "Activity"
    ) -> None:
        super().__init__(name=name, endpoint=ENDPOINT)
        self.history_admin = history
        self.can_undo = can_undo

    def create_blueprint(self, admin: Admin) -> Blueprint:
        """Create the view's blueprint, able to find sqlaudit's templates.

        Flask-Admin calls it when the view is added.

        Example:
            >>> admin.add_view(view)  # calls view.create_blueprint(admin)  # doctest: +SKIP
        """
        return _with_templates(super().create_blueprint(admin))

    def _allowed(self) -> bool:
        check = self.can_undo
        return bool(check(request)) if check is not None else False

    def _show(self, screen: Screen) -> Any:
        if screen.redirect is not None:
            return redirect(screen.redirect, code=303)
        page = self.render(
            "sqlaudit/flask_admin_page.html",
            title=screen.title,
            body=Markup(screen.body),
        )
        return page, screen.status

    @staticmethod
    def _same_origin() -> bool:
        headers = request.headers
        return same_origin(headers.get("Origin"), headers.get("Referer"), headers.get("Host"))

    @staticmethod
    def _form() -> dict[str, str] | None:
        return dict(request.form) if request.method == "POST" else None

    @_expose("/")
    def index(self) -> Any:
        """Show the Activity page.

        Example:
            >>> client.get("/admin/sqlaudit/?user=7&tz=Europe/Kyiv")  # doctest: +SKIP
        """
        screen = self.history_admin.activity(
            dict(request.args), _Links(self.admin), can_undo=self._allowed()
        )
        return self._show(screen)

    @_expose("/history/<model>/<resource_id>")
    def history(self, model: str, resource_id: str) -> Any:
        """Show one object's History page.

        Example:
            >>> client.get("/admin/sqlaudit/history/customers/2")  # doctest: +SKIP
        """
        screen = self.history_admin.history(
            model, resource_id, dict(request.args), _Links(self.admin), can_undo=self._allowed()
        )
        return self._show(screen)

    @_expose("/state/<model>/<resource_id>/<transaction_id>")
    def state(self, model: str, resource_id: str, transaction_id: str) -> Any:
        """Show an object as it was just after a transaction.

        Example:
            >>> client.get(f"/admin/sqlaudit/state/customers/2/{tx}")  # doctest: +SKIP
        """
        screen = self.history_admin.state(
            model, resource_id, transaction_id, _Links(self.admin), can_undo=self._allowed()
        )
        return self._show(screen)

    @_expose("/restore/<model>/<resource_id>/<transaction_id>", ("GET", "POST"))
    def restore(self, model: str, resource_id: str, transaction_id: str) -> Any:
        """Show the restore confirmation (GET), or restore (POST).

        Example:
            >>> client.post(f"/admin/sqlaudit/restore/customers/2/{tx}")  # doctest: +SKIP
        """
        screen = self.history_admin.restore(
            model,
            resource_id,
            transaction_id,
            _Links(self.admin),
            can_undo=self._allowed(),
            form=self._form(),
            same_origin=self._same_origin(),
        )
        return self._show(screen)

    @_expose("/revert/<transaction_id>", ("GET", "POST"))
    def revert(self, transaction_id: str) -> Any:
        """Show the revert confirmation (GET), or revert (POST).

        Example:
            >>> client.post(f"/admin/sqlaudit/revert/{tx}")  # doctest: +SKIP
        """
        screen = self.history_admin.revert(
            transaction_id,
            _Links(self.admin),
            can_undo=self._allowed(),
            form=self._form(),
            same_origin=self._same_origin(),
        )
        return self._show(screen)


class HistoryMixin:
    """Mix into a Flask-Admin ``ModelView`` to put a *History* button on its object pages.

    The button, on the edit and details pages, opens the object's History page (added
    by :func:`add_history_views`).

    Example:
        >>> class CustomerAdmin(HistoryMixin, ModelView):  # doctest: +SKIP
        ...     pass
    """

    edit_template = "sqlaudit/flask_admin_edit.html"
    details_template = "sqlaudit/flask_admin_details.html"
    model: Any

    def create_blueprint(self, admin: Admin) -> Blueprint:
        """Create the view's blueprint, able to find sqlaudit's templates.

        Flask-Admin calls it when the view is added.

        Example:
            >>> admin.add_view(view)  # calls view.create_blueprint(admin)  # doctest: +SKIP
        """
        return _with_templates(super().create_blueprint(admin))  # type: ignore[misc]

    def sqlaudit_history_url(self, obj: Any) -> str:
        """Return the address of ``obj``'s History page.

        Example:
            >>> view.sqlaudit_history_url(customer)  # doctest: +SKIP
            '/admin/sqlaudit/history/customers/2'
        """
        tracked = _registry.lookup(type(obj))
        if tracked is None:
            return url_for(f"{ENDPOINT}.index")
        resource_id = tracked.resource_id(obj, None)
        return url_for(f"{ENDPOINT}.history", model=tracked.table_name, resource_id=resource_id)
