"""Python stacks from dumps of the Windows CPython under Wine (the Windows part of issue 15).

The Windows python runs tests/wine/win/py_stacks_target.py: a thread in time.sleep two
calls deep, one in threading.Event.wait under a recursion, the main thread parked on
the line that recorded ``sys._current_frames()`` (the oracle: function, qualified
name, file and line of every frame, per native thread id). The Windows driver dumps it
with minidumpkit's Windows backend (this prefix's dbghelp: Wine's 6.1.7601, or
Microsoft's with MDK_WINE_DBGHELP); here, on Linux, our reader reads the dumps:

* ``DumpType.PYTHON`` with the Python-aware capture: the stacks come from the dump
  alone (the capture's MinidumpkitMemoryStream, its MinidumpkitPythonStream, and the
  PE export lookup it logged), and every independent reader still accepts the dump;
* ``DumpType.FULL`` without the capture: the reader finds ``_PyRuntime`` in
  python313.dll's export table in the dump's memory (LLP64, ``_Py_DebugOffsets``);
* the PYTHON preset without the capture: the stacks are not in the dump (the control).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import winenv
from oracles import run
from wine_session import Scenario, job

import minidumpkit as mdk
from minidumpkit._pyruntime import ModuleRef, offsets, walk_process
from minidumpkit.analysis import python_stacks
from minidumpkit.flags import DumpType, StreamType

pytestmark = [pytest.mark.timeout(600), pytest.mark.validators]


@pytest.fixture(scope="module")
def py_target(wine: winenv.WineEnv,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The running target and its own record (killed and reaped at the end)."""
    work = tmp_path_factory.mktemp("wine-pystacks")
    proc: subprocess.Popen[bytes]
    proc, truth = wine.start_target(wine.python,
                                    winenv.winpath(winenv.WIN_DIR / "py_stacks_target.py"),
                                    ready=work / "truth.json")
    try:
        yield truth
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def dumps(scenario_factory: Any, py_target: dict[str, Any]) -> Scenario:
    pid = py_target["pid"]

    def jobs(work: Path) -> list[dict[str, Any]]:
        return [job(work, "identity", "identity"),
                job(work, "python", "dump", "python.dmp", pid=pid, type=int(DumpType.PYTHON)),
                job(work, "full", "dump", "full.dmp", pid=pid, type=int(DumpType.FULL),
                    python=False),
                job(work, "plain", "dump", "plain.dmp", pid=pid, type=int(DumpType.PYTHON),
                    python=False),
                job(work, "after", "suspend_counts", pid=pid)]
    return scenario_factory("pystacks", jobs)


def truth_by_thread(truth: dict[str, Any]) -> dict[int, list[tuple[str, str, str, int]]]:
    return {t["native_id"]: [tuple(f) for f in t["frames"]] for t in truth["threads"]}


def stacks_by_thread(runtime: Any) -> dict[int | None, list[tuple[str, str, str, int]]]:
    return {t.os_thread_id: [(f.function, f.qualname, f.filename, f.line) for f in t.frames]
            for t in runtime.threads}


def test_which_dbghelp(dumps: Scenario, wine: winenv.WineEnv) -> None:
    """The dumps were written by this prefix's dbghelp (Wine's 6.1.7601 unless
    MDK_WINE_DBGHELP names Microsoft's), with minidumpkit from this tree."""
    identity = dumps.ok("identity")
    print(f"dbghelp {identity['version']} ({identity['path']}), Windows python "
          f"{identity['executable']}")
    assert identity["version"].startswith("6.1." if wine.flavor == "wine" else "10.0.")


def test_capture_dump_alone_gives_the_targets_own_stacks(dumps: Scenario,
                                                         py_target: dict[str, Any]) -> None:
    """DumpType.PYTHON with the capture, read without any local file: every Python
    thread, mapped to its OS thread, equals the target's sys._current_frames() frame
    for frame (function, qualified name, file, line)."""
    dumps.ok("python")
    with mdk.open_minidump(dumps.path("python")) as dump:
        info = dump.minidumpkit_python
        runtime = python_stacks(dump, use_local_files=False)
        streams = {int(s.type) for s in dump.streams}
    assert info is not None and info.status == "complete", info
    assert info.details["model"] == "llp64" and info.range_count > 0
    assert int(StreamType.MinidumpkitMemoryStream) in streams
    assert runtime.status == "ok" and runtime.found_by == "minidumpkit Python stream"
    assert runtime.version_hex == py_target["version"]
    assert stacks_by_thread(runtime) == truth_by_thread(py_target)
    assert all(t.mapped_by == "C-stack anchor" for t in runtime.threads)
    print(f"capture: {info.range_count} ranges, {info.range_bytes} B, walk "
          f"{info.walk_ns / 1e6:.1f} ms; dump {dumps.path('python').stat().st_size} B")


def test_target_is_left_running(dumps: Scenario, py_target: dict[str, Any]) -> None:
    """After the dumps (the capture suspended the target for one of them) every thread
    of the target has suspend count 0, the target's own threads among them."""
    counts = {int(tid): n for tid, n in dumps.ok("after")["counts"].items()}
    assert set(truth_by_thread(py_target)) <= set(counts)
    assert set(counts.values()) == {0}, counts


def test_capture_dump_without_its_stream_finds_pyruntime_in_its_memory(
        dumps: Scenario, py_target: dict[str, Any]) -> None:
    """A reader ignoring the MinidumpkitPythonStream finds _PyRuntime through
    python313.dll's PE export table, whose reads the capture kept."""
    with mdk.open_minidump(dumps.path("python")) as dump:
        modules = [ModuleRef(m.name, m.base, m.size, None) for m in dump.modules]
        runtime = walk_process(dump.memory, modules, model=offsets.LLP64, open_file=None)
        runtime.threads.sort(key=lambda t: t.native_thread_id)
    assert runtime.status == "ok" and runtime.found_by == "dump memory (PE export table)"
    assert {t.native_thread_id: [(f.function, f.qualname, f.filename, f.line)
                                 for f in t.frames] for t in runtime.threads} == \
        truth_by_thread(py_target)


def test_independent_readers_accept_the_capture_dump(dumps: Scenario) -> None:
    """rust-minidump's minidump-stackwalk reads the dump with the two user streams and
    lists every thread."""
    path = dumps.path("python")
    with mdk.open_minidump(path) as dump:
        tids = {t.thread_id for t in dump.threads}
    rust = json.loads(run("minidump-stackwalk", "--json", path, check=True).stdout)
    assert {t["thread_id"] for t in rust["threads"]} == tids


def test_full_dump_without_capture(dumps: Scenario, py_target: dict[str, Any]) -> None:
    """A FULL dump written without the capture (dbghelp's memory only): _PyRuntime from
    the PE export table in the dump's memory, LLP64 through _Py_DebugOffsets."""
    dumps.ok("full")
    with mdk.open_minidump(dumps.path("full")) as dump:
        assert dump.minidumpkit_python is None
        runtime = python_stacks(dump, use_local_files=False)
    assert runtime.status == "ok" and runtime.found_by == "dump memory (PE export table)"
    assert runtime.layout == "debug-offsets-3.13-llp64"
    assert stacks_by_thread(runtime) == truth_by_thread(py_target)


def test_small_dump_without_capture_has_no_stacks(dumps: Scenario) -> None:
    """The control: the same preset with python=False holds neither stream, and the
    reader says why it has no stacks (with local files allowed: python313.dll on this
    machine gives _PyRuntime, but its memory is not in the dump)."""
    dumps.ok("plain")
    with mdk.open_minidump(dumps.path("plain")) as dump:
        assert dump.minidumpkit_python is None
        streams = {int(s.type) for s in dump.streams}
        runtime = python_stacks(dump)
    assert int(StreamType.MinidumpkitMemoryStream) not in streams
    assert not runtime.ok and not any(t.frames for t in runtime.threads), runtime
    assert runtime.found_by is not None and "PE timestamp and size match" in runtime.found_by
