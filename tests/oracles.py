"""Where the independent minidump readers are, and how to run them.

They are installed by ``.ci/install-validators.sh`` into ``$MDK_TOOLS_DIR/bin``
(default ``<repo>/.tools/bin``). A missing tool is a test failure, never a skip:
these tools are what makes our results trustworthy.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOLS_DIR = Path(os.environ.get("MDK_TOOLS_DIR", REPO / ".tools"))
TOOLS_BIN = TOOLS_DIR / "bin"
FIXTURES = Path(os.environ.get("MDK_FIXTURES", REPO.parent / "shared" / "fixtures"))


def tool(name: str) -> str:
    """Path of validator ``name`` (lldb, obj2yaml, minidump-stackwalk, dump-syms,
    breakpad-stackwalk, breakpad-minidump-dump, breakpad-dump-syms)."""
    path = TOOLS_BIN / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"validator {name!r} is not installed at {path}: run .ci/install-validators.sh")
    return str(path)


def run(name: str, *args: str | os.PathLike[str], timeout: float = 120,
        check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run validator ``name`` and return its completed process (text, both streams captured)."""
    proc = subprocess.run([tool(name), *map(str, args)], capture_output=True, text=True,
                          errors="replace", timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        pytest.fail(f"{name} {' '.join(map(str, args))} exited {proc.returncode}:\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc
