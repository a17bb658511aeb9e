"""``minidumpkit run --on-crash`` and the Watcher's crash trigger on Windows, under Wine.

The target is tests/wine/win/crash.c, cross-compiled here with mingw-w64: it writes to
BAD_ADDRESS (0xBAD8) in ``mdk_crash_write`` (from the main thread or a second one),
calls abort(), fails fast, or answers the same fault itself with a vectored handler.
The Windows python runs the watcher (tests/wine/win/driver.py); each dump is judged
here by our reader, our stack walker and rust-minidump's minidump-stackwalk, against
what the build says: the symbol's address from ``x86_64-w64-mingw32-nm``, the address
the C source writes to, and the exception codes of the Windows headers.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import winenv
from oracles import run
from wine_session import Scenario, job

import minidumpkit as mdk
from minidumpkit._ffi import kernel32
from minidumpkit.analysis import walk_stack

pytestmark = [pytest.mark.timeout(600), pytest.mark.validators]

BAD_ADDRESS = 0xBAD8  # crash.c
HANDLED_EXIT = 7  # crash.c
EXCEPTION_ACCESS_VIOLATION = 0xC0000005  # winnt.h
STATUS_STACK_BUFFER_OVERRUN = 0xC0000409  # what __fastfail raises
FAST_FAIL_FATAL_APP_EXIT = 7


@pytest.fixture(scope="module")
def crash_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wine-crash") / "crash.exe"
    subprocess.run([winenv.MINGW_GCC, "-O1", "-g", "-Wall", str(winenv.WIN_DIR / "crash.c"),
                    "-o", str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def function_range(crash_exe: Path) -> tuple[int, int]:
    """``mdk_crash_write``'s [start, end) as image-relative addresses: its symbol and the
    next text symbol after it (nm), less the ImageBase of the PE header (objdump)."""
    listing = subprocess.run(["x86_64-w64-mingw32-nm", "-n", str(crash_exe)], check=True,
                             capture_output=True, text=True).stdout
    symbols = [(int(m.group(1), 16), m.group(2)) for m in
               re.finditer(r"^([0-9a-f]+) [tT] (\S+)$", listing, re.MULTILINE)]
    index = next(i for i, (_, name) in enumerate(symbols) if name == "mdk_crash_write")
    header = subprocess.run(["x86_64-w64-mingw32-objdump", "-p", str(crash_exe)], check=True,
                            capture_output=True, text=True).stdout
    found = re.search(r"^ImageBase\s+([0-9a-fA-F]+)$", header, re.MULTILINE)
    assert found is not None, header[:2000]
    image_base = int(found.group(1), 16)
    return symbols[index][0] - image_base, symbols[index + 1][0] - image_base


@pytest.fixture(scope="module")
def runs(scenario_factory: Any, crash_exe: Path) -> Scenario:
    exe = winenv.winpath(crash_exe)

    def jobs(work: Path) -> list[dict[str, Any]]:
        def cli(job_id: str, *argv: str) -> dict[str, Any]:
            directory = winenv.winpath(work / job_id)
            return job(work, job_id, "watch_cli", job_id,
                       argv=[argv[0], "--on-crash", "--dir", directory, *argv[1:]])

        return [
            job(work, "identity", "identity"),
            cli("av", "run", "--", exe, "av"),
            cli("thread", "run", "--", exe, "thread"),
            cli("abort", "run", "--", exe, "abort"),
            cli("fastfail", "run", "--", exe, "fastfail"),
            cli("handled", "run", "--", exe, "handled"),
            cli("first-chance", "run", "--first-chance", "--", exe, "handled"),
            cli("missing", "run", "--", winenv.winpath(work / "no-such.exe")),
            job(work, "hang", "watch_cli", "hang",
                argv=["run", "--on-hang", "2", "--", exe, "av"]),
            job(work, "watcher", "watcher", "watcher", exe=exe, crash=True),
            job(work, "watcher-stop", "watcher", "watcher-stop", exe=exe, crash=False),
            job(work, "watch-attach", "watch_attach", "watch-attach", exe=exe),
            job(work, "run-stopped", "run_stopped", "run-stopped", exe=exe),
        ]
    return scenario_factory("crash", jobs)


def dumps_in(runs: Scenario, job_id: str) -> list[Path]:
    return sorted(runs.path(job_id).glob("*.dmp"))


def check_access_violation(path: Path, function_range: tuple[int, int],
                           first_chance: bool = False) -> dict[str, Any]:
    """The dump's Exception stream is the write to BAD_ADDRESS in mdk_crash_write, for
    our reader, our walker and minidump-stackwalk; returns minidump-stackwalk's JSON."""
    start, end = function_range
    with mdk.open_minidump(path) as dump:
        exc = dump.exception
        assert exc is not None
        assert exc.code == EXCEPTION_ACCESS_VIOLATION
        assert exc.parameters == (1, BAD_ADDRESS)  # a write, at that address
        assert exc.reason == "EXCEPTION_ACCESS_VIOLATION_WRITE"
        assert exc.crash_address == BAD_ADDRESS
        assert exc.context is not None and exc.context_size == kernel32.ffi.sizeof("CONTEXT")
        module = next(m for m in dump.modules if m.name.lower().endswith("crash.exe"))
        assert start <= exc.context.pc - module.base < end
        assert exc.address == exc.context.pc  # the faulting instruction
        thread = next(t for t in dump.threads if t.thread_id == exc.thread_id)
        top = walk_stack(dump, thread).frames[0]
        assert top.pc == exc.context.pc
        assert dump.misc_info is not None
    rust = json.loads(run("minidump-stackwalk", "--json", path, check=True).stdout)
    crash = rust["crash_info"]
    assert crash["type"] == "EXCEPTION_ACCESS_VIOLATION_WRITE"
    assert int(crash["address"], 16) == BAD_ADDRESS
    frame = rust["threads"][crash["crashing_thread"]]["frames"][0]
    assert frame["module"] == "crash.exe" and frame["trust"] == "context"
    assert start <= int(frame["module_offset"], 16) < end
    return rust


def test_the_debug_structures_have_the_windows_layout(wine: winenv.WineEnv, crash_exe: Path,
                                                      tmp_path: Path) -> None:
    """kernel32.ffi's DEBUG_EVENT and its members, EXCEPTION_RECORD and CONTEXT: the sizes
    and offsets mingw-w64's own headers give (crash.exe layout, run under Wine), and the
    documented x64 sizes (DEBUG_EVENT 176, EXCEPTION_RECORD 152, CONTEXT 1232, 16-aligned)."""
    out = tmp_path / "layout.json"
    proc = wine.popen(crash_exe, "layout", winenv.winpath(out))
    assert proc.wait(60) == 0
    facts = json.loads(out.read_text())
    assert (facts["DEBUG_EVENT"], facts["EXCEPTION_RECORD"], facts["CONTEXT"],
            facts["CONTEXT.align"]) == (176, 152, 1232, 16)
    ffi = kernel32.ffi
    for name, value in facts.items():
        if name == "CONTEXT.align":
            continue
        if "." not in name:
            assert ffi.sizeof(name) == value, name
            continue
        struct, field = name.split(".")
        ctype = ffi.typeof(struct)
        offset = ffi.offsetof(ctype, field)
        size = ffi.sizeof(dict(ctype.fields)[field].type)
        assert [offset, size] == value, name
    owner, context = kernel32.new_context()
    assert int(ffi.cast("uintptr_t", context)) % 16 == 0


def test_which_dbghelp_wrote_the_dumps(runs: Scenario) -> None:
    """The dbghelp.dll the Windows python loads (printed: Wine's 6.1.7601.17514 in CI),
    from System32, and the minidumpkit it imports is this tree's."""
    identity = runs.ok("identity")
    print("dbghelp:", identity["path"], identity["version"])
    assert identity["path"].lower().endswith("\\system32\\dbghelp.dll")
    assert identity["minidumpkit"].lower().startswith(winenv.winpath(winenv.SRC).lower())


def test_run_dumps_an_access_violation(runs: Scenario,
                                       function_range: tuple[int, int]) -> None:
    """run --on-crash -- crash.exe av: one dump named by the trigger, holding the
    access violation (write, 0xBAD8) with the crashing thread's context inside
    mdk_crash_write; run exits with the child's exit code 0xC0000005."""
    result = runs.ok("av")
    assert result["returncode"] == EXCEPTION_ACCESS_VIOLATION, result["stderr"]
    [path] = dumps_in(runs, "av")
    assert re.fullmatch(r"crash_\d+_\d{8}_\d{6}_crash\.dmp", path.name)
    assert f"wrote {winenv.winpath(path)} (crash)" in result["stderr"]
    check_access_violation(path, function_range)


def test_run_dumps_a_crash_in_a_second_thread(runs: Scenario,
                                              function_range: tuple[int, int]) -> None:
    """The same fault on a thread the program made: the Exception stream names that
    thread, not the main one (the first in the thread list)."""
    result = runs.ok("thread")
    assert result["returncode"] == EXCEPTION_ACCESS_VIOLATION, result["stderr"]
    [path] = dumps_in(runs, "thread")
    rust = check_access_violation(path, function_range)
    with mdk.open_minidump(path) as dump:
        assert dump.exception is not None
        assert dump.exception.thread_id != dump.threads[0].thread_id
    assert rust["crash_info"]["crashing_thread"] != 0


def test_abort_with_msvcrt_exits_3_and_is_no_crash(runs: Scenario) -> None:
    """mingw-w64 links msvcrt.dll, whose abort() is raise(SIGABRT) then _exit(3): no
    exception reaches a debugger, so there is no crash to dump; run exits 3."""
    result = runs.ok("abort")
    assert result["returncode"] == 3, result["stderr"]
    assert dumps_in(runs, "abort") == []


def test_fail_fast_is_dumped(runs: Scenario) -> None:
    """__fastfail(FAST_FAIL_FATAL_APP_EXIT), the UCRT's abort(): a second-chance
    STATUS_STACK_BUFFER_OVERRUN with the fail-fast code, for our reader and
    minidump-stackwalk; run exits 0xC0000409."""
    result = runs.ok("fastfail")
    assert result["returncode"] == STATUS_STACK_BUFFER_OVERRUN, result["stderr"]
    [path] = dumps_in(runs, "fastfail")
    with mdk.open_minidump(path) as dump:
        assert dump.exception is not None
        assert dump.exception.code == STATUS_STACK_BUFFER_OVERRUN
        assert dump.exception.parameters[:1] == (FAST_FAIL_FATAL_APP_EXIT,)
    rust = json.loads(run("minidump-stackwalk", "--json", path, check=True).stdout)
    assert rust["crash_info"]["type"].startswith("EXCEPTION_STACK_BUFFER_OVERRUN")


def test_a_fault_the_program_handles_gives_no_dump(runs: Scenario,
                                                   function_range: tuple[int, int]) -> None:
    """A vectored handler skips the faulting write: the first chance is passed on, the
    program recovers and exits 7, no dump. With --first-chance the same fault is dumped
    (trigger first-chance) and the program still recovers."""
    result = runs.ok("handled")
    assert result["returncode"] == HANDLED_EXIT, result["stderr"]
    assert dumps_in(runs, "handled") == []
    first = runs.ok("first-chance")
    assert first["returncode"] == HANDLED_EXIT, first["stderr"]
    [path] = dumps_in(runs, "first-chance")
    assert path.name.endswith("_first-chance.dmp")
    check_access_violation(path, function_range, first_chance=True)


def test_run_errors(runs: Scenario) -> None:
    """A missing command exits 127; a trigger Windows lacks exits 1 with a one-line
    message, before anything runs."""
    missing = runs.ok("missing")
    assert missing["returncode"] == 127
    assert "command not found" in missing["stderr"]
    hang = runs.ok("hang")
    assert hang["returncode"] == 1
    assert hang["stderr"].strip().count("\n") == 0
    assert "on-hang" in hang["stderr"] and "Windows" in hang["stderr"]
    assert hang["files"] == []


def test_watcher_dumps_a_popen_child_that_crashes(runs: Scenario,
                                                  function_range: tuple[int, int]) -> None:
    """mdk.Watcher(popen, on_crash=True): the child is debugged while watched (a second
    `minidumpkit watch` of it is refused, exit 4), its crash is dumped and reported to
    on_dump, it dies with 0xC0000005, and the watch ends by itself."""
    result = runs.ok("watcher")
    assert result["debugged_while_watched"] is True
    assert result["second_watch"]["returncode"] == 4, result["second_watch"]
    assert "already being debugged" in result["second_watch"]["stderr"]
    assert result["exit_code"] == EXCEPTION_ACCESS_VIOLATION
    assert result["ended"] is True and result["errors"] == []
    [dump] = result["dumps"]
    assert dump["trigger"] == "crash" and dump["pid"] == result["child_pid"]
    assert result["heard"] == [dump["path"]]
    [path] = dumps_in(runs, "watcher")
    check_access_violation(path, function_range)


def test_watcher_stop_leaves_the_process_running_and_undebugged(runs: Scenario) -> None:
    """Watcher.stop() on a process that did not crash: DebugActiveProcessStop, the process
    runs on and no debugger is present (CheckRemoteDebuggerPresent); no dump."""
    result = runs.ok("watcher-stop")
    assert result["debugged_while_watched"] is True
    assert result["running_after_stop"] is True
    assert result["debugged_after_stop"] is False
    assert result["dumps"] == [] and result["files"] == []


def test_watch_pid_dumps_a_crash(runs: Scenario, function_range: tuple[int, int]) -> None:
    """minidumpkit watch PID --on-crash (DebugActiveProcess on a running process): the
    crash is dumped, the process dies with 0xC0000005, watch exits 0."""
    result = runs.ok("watch-attach")
    assert result["attached"] is True
    assert result["exit_code"] == EXCEPTION_ACCESS_VIOLATION
    assert result["returncode"] == 0
    [path] = dumps_in(runs, "watch-attach")
    check_access_violation(path, function_range)


def test_run_stopped_lets_its_child_go(runs: Scenario) -> None:
    """minidumpkit.watch.run whose should_stop() turns true (what Ctrl-C does to `run`):
    it returns None, its child (started with DEBUG_ONLY_THIS_PROCESS) runs on with no
    debugger; killed afterwards (TerminateProcess, exit code 15) and waited for by pid."""
    result = runs.ok("run-stopped")
    assert result["returned"] is None
    assert result["debugged_after"] is False
    assert result["still_running"] is True
    assert result["exit_code"] == 15
    assert result["files"] == []
