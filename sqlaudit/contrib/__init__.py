"""Admin integrations: history pages for SQLAdmin and Flask-Admin.

Each integration lives in a submodule of its own, behind an extra that installs
its framework::

    pip install "sqlaudit-trail[sqladmin]"      # sqlaudit.contrib.sqladmin
    pip install "sqlaudit-trail[flask-admin]"   # sqlaudit.contrib.flask_admin

Both add a **History** page per tracked object, a global **Activity** page, and
**Restore** / **Revert transaction** buttons behind a permission callback, all built
on :mod:`sqlaudit.history`. Example::

    from sqlaudit.contrib.sqladmin import add_history_views

    add_history_views(admin, models=[Customer], can_undo=lambda request: True)
"""

from __future__ import annotations

__all__: list[str] = []
