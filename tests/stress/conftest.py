"""The reliability suite's scale and its figures.

``MDK_STRESS_SCALE`` chooses how much work each stress test does: ``ci`` (the default,
what ``python3 -m pytest`` and .ci/run run; the whole suite in under 4 minutes on two
cores) or ``full`` (the figures of docs/reliability.md: 1000 soak dumps, 200 kills,
100,000 reader mutants; it takes tens of minutes)::

    MDK_STRESS_SCALE=full python3 -m pytest -q -s tests/stress

Every test records its counts with the ``figures`` fixture: they are printed at the end
of the run and written as JSON to ``$MDK_STRESS_REPORT`` when that is set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

SCALES = ("ci", "full")
_FIGURES: dict[str, Any] = {}


@dataclass(frozen=True)
class Scale:
    """How many of each thing one stress test does."""

    name: str
    soak_dumps: int
    kills: int
    churn_dumps: int  # dumps per churning target
    mutants: int

    def pick(self, ci: int, full: int) -> int:
        return full if self.name == "full" else ci


def _scale_from_env() -> Scale:
    name = os.environ.get("MDK_STRESS_SCALE", "ci") or "ci"
    if name not in SCALES:
        raise pytest.UsageError(f"MDK_STRESS_SCALE={name!r}: use one of {', '.join(SCALES)}")
    if name == "full":
        return Scale("full", soak_dumps=1000, kills=200, churn_dumps=100, mutants=100_000)
    return Scale("ci", soak_dumps=40, kills=20, churn_dumps=8, mutants=10_000)


@pytest.fixture(scope="session")
def scale() -> Scale:
    return _scale_from_env()


@pytest.fixture(scope="session")
def figures() -> Iterator[dict[str, Any]]:
    """A dict each test files its counts into, under its own key."""
    yield _FIGURES


def pytest_report_header(config: pytest.Config) -> str:
    return f"minidumpkit stress scale: {_scale_from_env().name} (MDK_STRESS_SCALE)"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    text = json.dumps(_FIGURES, indent=1, sort_keys=True, default=str)
    terminalreporter.section(f"stress figures ({_scale_from_env().name} scale)")
    terminalreporter.write_line(text)
    out = os.environ.get("MDK_STRESS_REPORT")
    if out:
        with open(out, "w") as f:
            f.write(text + "\n")
