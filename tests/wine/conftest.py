"""Fixtures of the Windows end-to-end suite under Wine (see winenv.py, docs/testing.md).

The suite is part of the default ``python3 -m pytest -q``. A machine without the Wine
environment FAILS it, with the command that installs it (``.ci/install-wine.sh``):
a missing oracle is a failure, not a skip. ``MDK_SKIP_WINE=1`` skips it explicitly.

Every Windows process the suite starts is killed and reaped by the fixture that
started it, and the session ends with ``wineserver -k``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import winenv  # noqa: E402
from wine_session import Scenario, Targets  # noqa: E402

@pytest.fixture(scope="session")
def wine() -> Iterator[winenv.WineEnv]:
    if os.environ.get("MDK_SKIP_WINE") == "1":
        pytest.skip("MDK_SKIP_WINE=1: the Windows end-to-end suite under Wine was skipped "
                    "on request")
    problem = winenv.missing()
    if problem:
        pytest.fail(f"the Wine suite cannot run: {problem}; {winenv.INSTALL_HINT}",
                    pytrace=False)
    env = winenv.from_environment()
    env.prepare()
    try:
        yield env
    finally:
        env.kill_server()


@pytest.fixture(scope="session")
def c_target_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/wine/win/target.c cross-compiled with mingw-w64 (debug info kept)."""
    out = tmp_path_factory.mktemp("wine-c") / "mdktarget.exe"
    subprocess.run([winenv.MINGW_GCC, "-O1", "-g", "-Wall", "-municode",
                    str(winenv.WIN_DIR / "target.c"), "-o", str(out)], check=True)
    return out


@pytest.fixture(scope="session")
def targets(wine: winenv.WineEnv, c_target_exe: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Targets]:
    work = tmp_path_factory.mktemp("wine-targets")
    running = Targets()
    try:
        for name, program, args in (
                ("py", wine.python, (winenv.winpath(winenv.WIN_DIR / "target.py"),)),
                ("c", c_target_exe, ())):
            proc, state = wine.start_target(program, *args, ready=work / f"{name}.ready")
            running.procs[name], running.state[name] = proc, state
        yield running
    finally:
        for proc in running.procs.values():
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def scenario_factory(wine: winenv.WineEnv, tmp_path_factory: pytest.TempPathFactory) -> Any:
    def run(name: str, make_jobs: Any) -> Scenario:
        work = tmp_path_factory.mktemp(f"wine-{name}")
        return Scenario(wine, work, make_jobs(work))
    return run
