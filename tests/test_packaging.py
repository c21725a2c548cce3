"""What a new user installs and reads: the distribution's name, version and URLs, the README's links, the typed factories."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import distribution
from pathlib import Path

import sqlaudit

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_distribution_is_not_the_unrelated_sqlaudit():
    """The distribution is ``sqlaudit-trail`` (the import name stays ``sqlaudit``), at a version the other project never had."""
    project = PYPROJECT["project"]
    assert project["name"] == "sqlaudit-trail"
    assert project["version"] == sqlaudit.__version__
    major = int(project["version"].split(".")[0])
    assert major >= 1  # the unrelated project's versions are 0.1.0 to 0.7.0
    assert distribution("sqlaudit-trail").version == sqlaudit.__version__


def test_project_urls_and_runtime_dependencies():
    """Project-URLs are set and the runtime needs only SQLAlchemy and tzdata."""
    urls = PYPROJECT["project"]["urls"]
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())
    names = [re.split(r"[<>=~\[ ]", dep)[0] for dep in PYPROJECT["project"]["dependencies"]]
    assert names == ["SQLAlchemy", "tzdata"]


def test_alembic_is_an_extra_and_in_the_test_and_docs_extras():
    """``sqlaudit.alembic`` needs the ``alembic`` extra; tests and docs install it too."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    for extra in ("alembic", "test", "docs"):
        assert any(dep.startswith("alembic") for dep in extras[extra]), extra


def test_the_docs_extra_installs_what_autodoc_imports():
    """Autodoc imports ``sqlaudit.asyncio`` (greenlet) and ``sqlaudit.alembic``: the docs extra brings both."""
    docs = PYPROJECT["project"]["optional-dependencies"]["docs"]
    assert "SQLAlchemy[asyncio]" in docs
    assert any(dep.startswith("alembic") for dep in docs)


def test_readme_links_work_outside_the_repository():
    """Every README link is absolute or an anchor of the README itself."""
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)]+)\)", readme)
    assert targets
    assert [t for t in targets if not t.startswith(("https://", "#"))] == []


def test_readme_never_installs_the_unrelated_project():
    """The README installs ``sqlaudit-trail``; a bare ``pip install sqlaudit`` appears only where it says not to."""
    readme = (ROOT / "README.md").read_text()
    bare = re.findall(r"pip install [\"']?sqlaudit(?![-\w])", readme)
    assert bare == ["pip install sqlaudit"]
    assert "Do not\n`pip install sqlaudit`" in readme
    assert 'pip install "sqlaudit-trail' in readme


def test_every_documented_session_factory_runs(tmp_path):
    """The typed example (checked by ``mypy --strict``) builds a config from each documented factory."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "session_factories.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "3 async factories accepted" in result.stdout


def test_mypy_checks_the_typed_examples():
    """``mypy`` (strict, as CI runs it) is configured to check the typed examples."""
    files = PYPROJECT["tool"]["mypy"]["files"]
    assert "examples/session_factories.py" in files
    assert "examples/quickstart.py" in files


def test_the_docs_have_the_alembic_and_migration_pages():
    """The Alembic page and "Migrating from sqlaudit 0.7" are in the docs' table of contents."""
    index = (ROOT / "docs" / "index.md").read_text()
    for page in ("alembic", "migrating-from-0.7"):
        assert f"\n{page}\n" in index
        assert (ROOT / "docs" / f"{page}.md").exists()


def test_every_subpackage_is_in_the_distribution():
    """Each package directory under sqlaudit/ is listed for setuptools, so a built wheel holds it."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "sqlaudit").rglob("__init__.py")
    }
    assert on_disk == listed
