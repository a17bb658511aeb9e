"""The package's type annotations hold: ``mypy --strict`` (pyproject.toml's [tool.mypy])
over src/minidumpkit finds nothing. py.typed promises users that the annotations are
checked; this keeps the promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_mypy_strict_finds_nothing(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path),
                             "src/minidumpkit"], cwd=REPO, capture_output=True, text=True,
                            timeout=600)
    # (mypy is in the test extra: pip install -e '.[test]')
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout, result.stdout
