"""Nox sessions for sqlaudit: tests, lint, docs and the quickstart example.

Run ``nox`` for the default sessions (tests and lint) or ``nox -s docs``.
Sessions use the interpreter nox runs under; arguments after ``--`` are
passed to pytest, e.g. ``nox -s tests -- -k retrieval``.
"""

import shutil
import subprocess

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
@nox.parametrize("sqlalchemy", ["2.0", "2.1"])
def tests(session: nox.Session, sqlalchemy: str) -> None:
    """Run the test suite on SQLAlchemy 2.0 and 2.1."""
    session.install("-e", ".[test]", f"SQLAlchemy~={sqlalchemy}.0")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style, formatting and types."""
    session.install(".[lint]")
    session.install("-e", ".")
    session.run("ruff", "check", "sqlaudit", "tests", "examples", "benchmarks")
    session.run("ruff", "format", "--check", "sqlaudit", "tests", "examples", "benchmarks")
    session.run("mypy")  # the package and the typed examples (pyproject.toml)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the HTML documentation, treating warnings as errors."""
    session.install("-e", ".[docs]")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session
def example(session: nox.Session) -> None:
    """Run the quickstart example against a regular install."""
    session.install(".")
    session.run("python", "examples/quickstart.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks and write docs/benchmarks.md (arguments after -- go to the runner).

    Without arguments, the history reads (H1, ``python -m benchmarks.history``) run
    afterwards and print their table.

    The peers, the drivers and matplotlib come from benchmarks/requirements.txt,
    installed here only; mysqlclient too when the MariaDB/MySQL client headers are
    there to build it against (Debian: libmariadb-dev).
    """
    session.install("-e", ".", "-r", "benchmarks/requirements.txt")
    if _mysql_headers():
        session.install("mysqlclient>=2.2")
    else:
        session.log("mysqlclient not installed: no MariaDB/MySQL client headers to build it")
    args = session.posargs or ["--output", "docs/benchmarks.md"]
    session.run("python", "-m", "benchmarks", *args)
    if not session.posargs:
        # H1: the history API's reads on 100,000 and 1,000,000 change rows.
        session.run(
            "python", "-m", "benchmarks.history", "--databases", "postgresql,mariadb,sqlite"
        )


def _mysql_headers() -> bool:
    """Whether pkg-config finds the MariaDB or MySQL client library mysqlclient builds on."""
    if shutil.which("pkg-config") is None:
        return False
    return any(
        subprocess.run(["pkg-config", "--exists", name], check=False).returncode == 0
        for name in ("libmariadb", "mysqlclient")
    )
