"""The README quick start, and sqlaudit 0.7's own quick start, run unchanged and print the promised history."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# sqlaudit 0.7's README quick start, byte for byte, as its users know it.
LEGACY_EXAMPLE = ROOT / "tests" / "compat" / "quickstart_0_7_example.py"


def _readme_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "README's quick start has no python block"
    return match.group(1)


def _run(script: Path, cwd: Path) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(script)], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def _check_history(lines: list[str]) -> None:
    changes = [line for line in lines if line.startswith("FIELD:")]
    fields = [re.match(r"FIELD: '(\w+)'", line).group(1) for line in changes]
    assert len(changes) == 4
    assert fields[0] == "name"
    assert "TO Jane Smith (OLD: Jane Doe)" in changes[0]
    assert sorted(fields[1:]) == ["email", "name", "user_id"]
    assert all(line.endswith("BY USER ID 1") for line in changes)
    assert any("TO Jane Doe (OLD: None)" in line for line in changes[1:])


def test_readme_quick_start_runs_unchanged(tmp_path: Path) -> None:
    """The README's quick-start block, run as is on in-memory SQLite, prints customer 2's four changes."""
    script = tmp_path / "quickstart_readme.py"
    script.write_text(_readme_example())
    _check_history(_run(script, tmp_path))


def test_the_0_7_quick_start_runs_unchanged(tmp_path: Path) -> None:
    """sqlaudit 0.7's quick start, unchanged, prints customer 2's four changes by user 1."""
    _check_history(_run(LEGACY_EXAMPLE, tmp_path))


def test_readme_quick_start_is_the_file_example() -> None:
    """examples/quickstart.py is the README's quick start, on an SQLite file instead of in memory."""
    readme = _readme_example()
    example = (ROOT / "examples" / "quickstart.py").read_text()
    kept = [line for line in readme.splitlines() if not line.startswith("engine = ")]
    assert all(line in example.splitlines() for line in kept)


def test_file_example_prints_history_twice_in_a_row(tmp_path: Path) -> None:
    """examples/quickstart.py starts from a new SQLite file on every run, so reruns print the same history."""
    script = tmp_path / "quickstart.py"
    script.write_text((ROOT / "examples" / "quickstart.py").read_text())
    _check_history(_run(script, tmp_path))
    _check_history(_run(script, tmp_path))
    assert (tmp_path / "quickstart.db").exists()
