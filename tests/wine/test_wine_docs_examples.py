"""The Windows-only code examples of the docs, run by a Windows python under Wine.

A block is Windows-only when the line before it is ``<!-- doc-example: windows-only -->``
(tests/test_docs_examples.py runs every other block on Linux). Until that marker
convention is in the tree, the python blocks of docs/windows.md are taken. Each block
runs in the driver with the names the docs assume (``mdk``, ``pid`` = the running
Windows python target, ``DumpType``, ``F`` = PssCaptureFlags, ``MyCallbacks``), in a
fresh directory. A block that takes a snapshot needs the Pss* functions, which Wine 8
lacks: a strict xfail (it must start passing where Pss* exists).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from wine_session import Scenario, Targets, job
from winenv import REPO, winpath

pytestmark = pytest.mark.timeout(900)

MARKER = "<!-- doc-example: windows-only -->"
NO_PSS = pytest.mark.xfail(strict=True, raises=AssertionError,
                           reason="Wine 8 exports none of the Pss* functions: "
                           "a snapshot example raises UnsupportedError under Wine")


def windows_blocks() -> list[tuple[str, str]]:
    """(source "file:line", code) of every Windows-only python block of README and docs."""
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    marked: list[tuple[str, str]] = []
    fallback: list[tuple[str, str]] = []
    for path in files:
        lines = path.read_text(encoding="utf-8").splitlines()
        for index, line in enumerate(lines):
            if not re.match(r"```python\s*$", line):
                continue
            end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
            block = (f"{path.relative_to(REPO)}:{index + 1}", "\n".join(lines[index + 1:end]))
            previous = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
            if previous.strip() == MARKER:
                marked.append(block)
            elif path.name == "windows.md":
                fallback.append(block)
    return marked or fallback


BLOCKS = windows_blocks()


def needs_pss(code: str) -> bool:
    return bool(re.search(r"snapshot|Pss", code, re.IGNORECASE))


@pytest.fixture(scope="module")
def examples(scenario_factory: Any, targets: Targets) -> Scenario:
    def jobs(work: Path) -> list[dict[str, Any]]:
        out = []
        for number, (source, code) in enumerate(BLOCKS):
            cwd = work / f"example-{number}"
            cwd.mkdir()
            out.append(job(work, source, "example", code=code, source=source,
                           cwd=winpath(cwd), pid=targets.pid("py")))
        return out
    return scenario_factory("examples", jobs)


def test_there_are_windows_examples() -> None:
    assert BLOCKS, "no Windows-only example found in README.md or docs/"


@pytest.mark.parametrize(
    "source", [pytest.param(source, marks=[NO_PSS] if needs_pss(code) else [])
               for source, code in BLOCKS])
def test_windows_example_runs_under_wine(examples: Scenario, source: str) -> None:
    """The block runs to its end without an exception in a Windows python under Wine."""
    examples.ok(source)
