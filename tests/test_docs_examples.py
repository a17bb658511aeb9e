"""Every code example in README.md and docs/*.md runs, against a real live target.

Each fenced block is taken from the Markdown files as they are (new files under docs/
are picked up by themselves):

* ```` ```python ````: executed. The blocks of one file run in order in one namespace
  (as in a doctest session), in a scratch directory, with the names in
  :func:`example_namespace` predefined: ``pid`` (a running C target, tests/targets/
  mdk_target.c), ``app.dmp`` already written there (a MINI dump of it) and
  ``crash.dmp`` (a Crashpad dump of a real SIGSEGV, from the fixtures), and the few
  placeholders the prose explains (``config_address``, ``capture`` ...).
* ```` ```console ````: every ``$ command`` line is run (``minidumpkit`` as
  ``python -m minidumpkit``, ``PID`` replaced by the target's pid) and must exit 0; the
  lines after it are its output, each of which must appear in order (``...`` lines
  stand for anything).
* ```` ```sh ````: each ``&&``-separated command is run (exit 0), but for those that
  install packages or run a test suite (:data:`NOT_RUN_PREFIXES`: ``.ci/run`` runs
  README's verbatim) and the benchmarks (never run by tests); those are printed.
* Other languages (or none) are text, not examples.

A block preceded by ``<!-- doc-example: windows-only -->`` needs Windows; it is not run
here and must be listed in :data:`WINDOWS_ONLY` (the Wine suite runs them). No other
way to leave a block out exists.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Target
from oracles import FIXTURES

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MARKER = re.compile(r"<!--\s*doc-example:\s*([\w-]+)\s*-->")
FENCE = re.compile(r"^(?P<indent>[ ]{0,3})```(?P<lang>[\w+-]*)[^\n]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$",
                   re.S | re.M)
RUN_LANGS = ("python", "console", "sh")
# the start of a block that is an example whatever its label says
CODE_LIKE = re.compile(r"\s*(import minidumpkit|from minidumpkit|mdk\.|\$ |minidumpkit |"
                       r"python3? -m minidumpkit)")

# Blocks that need Windows: (file, first line of code). The Wine suite runs them.
WINDOWS_ONLY = {
    ("docs/windows.md", "from minidumpkit._ffi import pss"),
    ("docs/windows.md", "from minidumpkit._backends._win_snapshot import WindowsSnapshot"),
    ("docs/windows.md", "with mdk.Dumper(pid).snapshot(F.VA_CLONE | F.THREADS | F.THREAD_CONTEXT | F.HANDLES"),
}
# Commands of sh blocks a test cannot run inside itself: installs and test-suite runs
# (.ci/run runs README's test command verbatim on a fresh machine) and benchmarks
# (measured by their own command, never in tests).
NOT_RUN_PREFIXES = ("python3 -m pip ", "python -m pip ", "pip ", "bash .ci/", ".ci/",
                    "python3 -m pytest", "python -m pytest", "pytest",
                    "python3 benchmarks/", "python benchmarks/")
CRASH_FIXTURE = "generated-crashpad-linux-x86_64-3threads-segv.dmp"


@dataclasses.dataclass(frozen=True)
class Block:
    file: str  # relative to the repository
    line: int  # of the opening fence
    lang: str
    code: str
    marker: str | None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def first_line(self) -> str:
        return next((ln.strip() for ln in self.code.splitlines() if ln.strip()), "")


def blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        before = text[:m.start()].rstrip().rsplit("\n", 1)[-1]
        marker = MARKER.search(before)
        code = "\n".join(line[len(m["indent"]):] for line in m["code"].splitlines())
        out.append(Block(str(path.relative_to(REPO)), text.count("\n", 0, m.start()) + 1,
                         m["lang"].lower(), code, marker.group(1) if marker else None))
    return out


ALL_BLOCKS = [b for path in DOCS for b in blocks(path)]


def test_every_example_is_run_or_listed() -> None:
    """Each runnable block is run by test_examples, or is a listed Windows-only one;
    markers are only the known one."""
    windows = {(b.file, b.first_line) for b in ALL_BLOCKS if b.marker == "windows-only"}
    assert windows == WINDOWS_ONLY, "update WINDOWS_ONLY to the blocks marked windows-only"
    for b in ALL_BLOCKS:
        assert b.marker in (None, "windows-only"), f"{b.where}: unknown marker {b.marker!r}"
        if b.marker == "windows-only":
            assert b.lang in RUN_LANGS, f"{b.where}: only code blocks are marked"
    for b in ALL_BLOCKS:  # code in a block without a language would escape the run
        if b.lang not in RUN_LANGS:
            assert not CODE_LIKE.match(b.code), \
                f"{b.where}: this looks like code; label the block python, console or sh"
    runnable = [b for b in ALL_BLOCKS if b.lang in RUN_LANGS and b.marker is None]
    assert len(runnable) >= 15, [b.where for b in runnable]
    print("\nnot run on Linux (the Wine suite runs them):")
    for b in ALL_BLOCKS:
        if b.marker == "windows-only":
            print(f"  {b.where}  {b.first_line}")
    print("sh commands not run (installs, test suites: .ci/run; benchmarks):")
    for b in ALL_BLOCKS:
        if b.lang == "sh" and b.marker is None:
            for cmd in sh_commands(b):
                if not_run(cmd):
                    print(f"  {b.where}  {cmd}")


# --- the namespace -------------------------------------------------------------------------

@pytest.fixture
def workspace(target_bins: dict[str, Path], start_target: Callable[..., Target],
              tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A live target, a scratch directory holding app.dmp and crash.dmp, and the names
    the examples use; the current directory is the scratch directory meanwhile."""
    import minidumpkit

    work = tmp_path / "work"
    work.mkdir()
    target = start_target([target_bins["mdk_target"], tmp_path / "known-file.txt"])
    target.wait_parked("main", "reader", "sleeper", "regs", "futex")
    minidumpkit.dump(target.pid, work / "app.dmp")
    shutil.copyfile(FIXTURES / "third-party" / CRASH_FIXTURE, work / "crash.dmp")
    old = os.getcwd()
    os.chdir(work)
    try:
        with example_namespace(target) as names:
            yield {"target": target, "dir": work, "names": names}
    finally:
        os.chdir(old)


@contextlib.contextmanager
def example_namespace(target: Target) -> Iterator[dict[str, Any]]:
    """The names an example may use without defining them (docs/testing.md lists them)."""
    from minidumpkit import DumpType
    from minidumpkit._backends import linux
    from minidumpkit._backends._ptrace import ProcessStop

    pattern = target.int("pattern")  # an address in the target's memory
    with linux.ProcessMemory(target.pid) as memory:
        with ProcessStop(target.pid) as stop:  # a capture, as the Linux backend makes one
            capture = linux.capture(target.pid, stop, memory, DumpType.MINI)
        # a real module, as a user's script is (dataclasses look their module up)
        module = types.ModuleType("__doc_example__")
        module.__dict__.update({
            "pid": target.pid,
            "config_address": pattern,  # callbacks.md: memory to add
            "secret_address": pattern + 64,  # callbacks.md: memory to leave out
            "stop_requested": threading.Event(),  # callbacks.md: a cancel flag
            "capture": capture,  # writer.md: a ProcessCapture
        })
        sys.modules[module.__name__] = module
        try:
            yield module.__dict__
        finally:
            del sys.modules[module.__name__]


# --- running -------------------------------------------------------------------------------

def _command(cmd: str, pid: int) -> list[str]:
    argv = shlex.split(cmd.replace("PID", str(pid)))
    if argv[0] == "minidumpkit":
        return [sys.executable, "-m", "minidumpkit", *argv[1:]]
    if argv[0] in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    return argv


def _run(cmd: str, ws: dict[str, Any], where: str) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    cwd = REPO if "examples/" in cmd else ws["dir"]  # the repository's own scripts
    proc = subprocess.run(_command(cmd, ws["target"].pid), cwd=cwd, capture_output=True, text=True, timeout=300, env=env,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{where}: `{cmd}` exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout


def run_python(block: Block, ws: dict[str, Any]) -> None:
    code = compile(block.code, f"{block.file} (block at line {block.line})", "exec")
    exec(code, ws["names"])  # noqa: S102 - the documentation's own examples


def run_console(block: Block, ws: dict[str, Any]) -> None:
    lines = block.code.splitlines()
    i = 0
    ran = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            i += 1
            continue
        out = _run(lines[i][2:], ws, block.where).splitlines()
        ran += 1
        i += 1
        expected = []
        while i < len(lines) and not lines[i].startswith("$ "):
            expected.append(lines[i].rstrip())
            i += 1
        pos = 0
        for want in expected:
            if want.strip() in ("...", ""):
                continue
            try:
                pos = [line.rstrip() for line in out].index(want, pos) + 1
            except ValueError:
                pytest.fail(f"{block.where}: the documented line {want!r} is not in the output "
                            f"(in order):\n" + "\n".join(out))
    assert ran, f"{block.where}: a console block without a `$ command` line"


def sh_commands(block: Block) -> Iterator[str]:
    for line in block.code.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            yield from (c.strip() for c in line.split("&&"))


def not_run(cmd: str) -> bool:
    """Whether ``cmd`` is one of NOT_RUN_PREFIXES, after any leading ``NAME=value``
    environment assignments (``MDK_STRESS_SCALE=full python3 -m pytest ...``)."""
    words = cmd.split()
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", words[0]):
        words.pop(0)
    return " ".join(words).startswith(NOT_RUN_PREFIXES)


def run_sh(block: Block, ws: dict[str, Any]) -> None:
    for cmd in sh_commands(block):
        if not not_run(cmd):
            _run(cmd, ws, block.where)


RUNNERS = {"python": run_python, "console": run_console, "sh": run_sh}


def _runnable(doc: str) -> list[Block]:
    return [b for b in ALL_BLOCKS if b.file == doc and b.lang in RUN_LANGS
            and b.marker != "windows-only"]


@pytest.mark.parametrize("doc", [d for d in dict.fromkeys(b.file for b in ALL_BLOCKS)
                                 if _runnable(d)])
def test_examples(doc: str, workspace: dict[str, Any]) -> None:
    """The file's examples, in order, in one namespace."""
    for block in _runnable(doc):
        RUNNERS[block.lang](block, workspace)
