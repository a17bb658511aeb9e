"""Running Windows programs under Wine for the Windows end-to-end suite.

The environment is installed by ``.ci/install-wine.sh`` into ``$MDK_WINE_CACHE``
(default ``<repo>/.tools/wine``): ``python/`` (the official embeddable CPython with
cffi), ``prefix/`` (a Wine prefix with Wine's own dbghelp). ``MDK_WINE_DBGHELP=DIR``
(a directory holding Microsoft's x64 ``dbghelp.dll`` and ``dbgcore.dll``) makes the
suite run against those instead: they go into the ``System32`` of a second prefix
(``prefix-ms-<hash>``, hard-linked from the first), loaded natively
(``WINEDLLOVERRIDES=dbghelp,dbgcore=n``); dbghelp.load() opens System32's copy by
absolute path, so DLLs beside python.exe would not be used.

Rules learnt the hard way (issue 12): every Wine process gets /dev/null as stdio
and writes its results to a file (a pipe handed to Wine can stay open for minutes:
wineserver and explorer.exe inherit it); a Wine pid is not a Linux pid (targets
write ``os.getpid()``); ``wineserver -k`` ends a session.

``python3 tests/wine/winenv.py run ARGS...`` runs the Windows python with ARGS
(after the same setup), for experiments by hand.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MDK_WINE_CACHE", REPO / ".tools" / "wine"))
WIN_DIR = Path(__file__).resolve().parent / "win"
#: The minidumpkit the Windows python imports (MDK_WINE_SRC: another tree's src, to check
#: a branch's backend against this suite).
SRC = Path(os.environ.get("MDK_WINE_SRC", REPO / "src")).resolve()
WINE = "/usr/lib/wine/wine64"  # Debian's wine64 puts no `wine` on PATH
WINESERVER = "/usr/lib/wine/wineserver"
MINGW_GCC = "x86_64-w64-mingw32-gcc"
#: True: Windows processes run with Wine's WMI provider, as on Windows. CPython 3.12+
#: answers platform.machine() with a WMI query, on which Wine 8 aborts the interpreter;
#: dbghelp.load() called it before issue 12's fix. MDK_WINE_WMI=0 disables WMI
#: (WINEDLLOVERRIDES=wbemprox=d) to run the suite on a tree without that fix;
#: test_wine_load.py keeps WMI on either way.
WMI = os.environ.get("MDK_WINE_WMI", "1") != "0"
INSTALL_HINT = "run `bash .ci/install-wine.sh` (root, Debian) or set MDK_SKIP_WINE=1 to skip the Wine suite explicitly"


def winpath(path: str | os.PathLike[str]) -> str:
    """A Linux path as Wine's Windows programs see it (drive Z: is /)."""
    return "Z:" + os.path.abspath(path).replace("/", "\\")


def missing() -> str | None:
    """Why the Wine environment cannot run, or None when it is installed."""
    if not os.access(WINE, os.X_OK):
        return f"{WINE} is missing (Debian package wine64)"
    if shutil.which(MINGW_GCC) is None:
        return f"{MINGW_GCC} is missing (Debian package gcc-mingw-w64-x86-64)"
    if not (CACHE / "ready").is_file() or not (CACHE / "python" / "python.exe").is_file():
        return f"no Windows python in {CACHE}"
    return None


@dataclasses.dataclass
class WineEnv:
    """One Wine prefix with one dbghelp: Wine's own, or Microsoft's from ``dbghelp_dir``."""

    dbghelp_dir: Path | None = None

    @property
    def flavor(self) -> str:
        return "wine" if self.dbghelp_dir is None else "microsoft"

    @property
    def python(self) -> Path:
        return CACHE / "python" / "python.exe"

    @property
    def prefix(self) -> Path:
        if self.dbghelp_dir is None:
            return CACHE / "prefix"
        digest = hashlib.sha256((self.dbghelp_dir / "dbghelp.dll").read_bytes()
                                + (self.dbghelp_dir / "dbgcore.dll").read_bytes())
        return CACHE / f"prefix-ms-{digest.hexdigest()[:12]}"

    def prepare(self) -> None:
        """Make the Microsoft prefix if needed: hard links to the Wine one (cheap), own
        registry files (wineserver rewrites them), Microsoft's pair in System32."""
        if self.dbghelp_dir is None or (self.prefix / "ready").exists():
            return
        base = CACHE / "prefix"
        staging = self.prefix.with_name(self.prefix.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        subprocess.run(["cp", "-al", str(base), str(staging)], check=True)
        for reg in base.glob("*.reg"):
            (staging / reg.name).unlink()
            shutil.copy2(reg, staging / reg.name)
        system32 = staging / "drive_c" / "windows" / "system32"
        for name in ("dbghelp.dll", "dbgcore.dll"):
            (system32 / name).unlink(missing_ok=True)
            shutil.copy2(self.dbghelp_dir / name, system32 / name)
        (staging / "ready").write_text(str(self.dbghelp_dir))
        staging.rename(self.prefix)

    def environ(self, *, wmi: bool = WMI) -> dict[str, str]:
        # Wine hands the Linux environment to Windows processes: not the display (headless)
        # nor the Linux pytest's PYTEST_* (PYTEST_ADDOPTS from .ci/run would give the
        # Windows pytest of test_wine_windows_tests.py a Linux --junitxml path)
        env = {k: v for k, v in os.environ.items()
               if k not in ("DISPLAY", "WAYLAND_DISPLAY") and not k.startswith("PYTEST_")}
        overrides = ["mscoree,mshtml=d"]
        if not wmi:
            overrides.append("wbemprox=d")
        if self.dbghelp_dir is not None:
            overrides.append("dbghelp,dbgcore=n")
        env.update(WINEPREFIX=str(self.prefix), WINEDEBUG="-all",
                   WINEDLLOVERRIDES=";".join(overrides),
                   MDK_WINE_PYTHONPATH=winpath(SRC))
        return env

    def popen(self, program: str | os.PathLike[str], *args: str, wmi: bool = WMI,
              cwd: Path | None = None,
              extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a Windows program; stdio is /dev/null (see the module docstring)."""
        return subprocess.Popen([WINE, str(program), *args],
                                env={**self.environ(wmi=wmi), **(extra_env or {})}, cwd=cwd,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    def run_python(self, *args: str, timeout: float = 900, wmi: bool = WMI,
                   cwd: Path | None = None, extra_env: dict[str, str] | None = None) -> int:
        """Run the Windows python to completion; returns its exit status."""
        proc = self.popen(self.python, *args, wmi=wmi, cwd=cwd, extra_env=extra_env)
        try:
            return proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def start_target(self, program: str | os.PathLike[str], *args: str, ready: Path,
                     timeout: float = 60) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
        """Start a target that writes ``ready`` (JSON with its Windows pid) when parked;
        the caller kills and reaps it."""
        ready.unlink(missing_ok=True)
        proc = self.popen(program, *args, winpath(ready))
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"Windows target {program} did not get ready "
                                   f"(exit status {proc.returncode})")
            time.sleep(0.05)
        return proc, json.loads(ready.read_text())

    def run_jobs(self, jobs: list[dict[str, Any]], workdir: Path,
                 timeout: float = 900) -> tuple[dict[str, Any], int]:
        """Run driver.py with ``jobs``; returns the results by job id and the exit status."""
        jobs_file, result_file = workdir / "jobs.json", workdir / "results.json"
        jobs_file.write_text(json.dumps(jobs), encoding="utf-8")
        status = self.run_python(winpath(WIN_DIR / "driver.py"), winpath(jobs_file),
                                 winpath(result_file), timeout=timeout)
        results = json.loads(result_file.read_text("utf-8")) if result_file.exists() else {}
        return results, status

    def kill_server(self) -> None:
        """wineserver -k: ends every process of this prefix (targets, explorer.exe)."""
        if self.prefix.exists():
            subprocess.run([WINESERVER, "-k"], env=self.environ(), check=False,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)


def from_environment() -> WineEnv:
    """The WineEnv the environment asks for (MDK_WINE_DBGHELP or Wine's own dbghelp)."""
    directory = os.environ.get("MDK_WINE_DBGHELP")
    if not directory:
        return WineEnv()
    path = Path(directory)
    for name in ("dbghelp.dll", "dbgcore.dll"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"MDK_WINE_DBGHELP={directory} has no {name}")
    return WineEnv(path)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "run":
        print(__doc__)
        return 2
    problem = missing()
    if problem:
        print(f"{problem}: {INSTALL_HINT}", file=sys.stderr)
        return 1
    env = from_environment()
    env.prepare()
    return env.run_python(*argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
