"""``minidumpkit.enable_crash_dumps``: a Python process that crashes leaves a minidump
written from outside it (issue 16), and dump requests for it go through its tracer.

Each target is a fresh Python child that enables crash dumps and then crashes
(``ctypes.string_at(0)``: strlen reads address 0), exits, or waits. Expected values come
from how the child crashed (SIGSEGV, SEGV_MAPERR, address 0, the thread it printed) and
from lldb and minidump-stackwalk, never from our own output alone. After each test no
process is left traced and no helper is left running.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import assert_released, wait_until
from oracles import run as run_tool

import minidumpkit
from minidumpkit.analysis import python_stacks

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux tracer")

SRC = str(Path(__file__).resolve().parents[1] / "src")
PYTHON = os.path.realpath(sys.executable)  # lldb wants the real binary, not a shim
SEGV_MAPERR = 1
WAIT = 60.0  # a hang guard, never a timing assert

PRELUDE = """
import ctypes, faulthandler, os, sys, threading
import minidumpkit
crash_dumps = minidumpkit.enable_crash_dumps(sys.argv[1])
print(json.dumps({"pid": os.getpid(), "helper": crash_dumps.helper_pid}), flush=True)
"""


def source(body: str) -> str:
    return "import json\n" + PRELUDE + textwrap.dedent(body)


def line_of(code: str, text: str) -> int:
    [line] = [n for n, s in enumerate(code.splitlines(), 1) if s.strip() == text]
    return line


def child(body: str, directory: Path, **popen: object) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    code = source(body)
    return subprocess.Popen([sys.executable, "-c", code, str(directory)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            **popen)  # type: ignore[call-overload]


def finish(proc: subprocess.Popen[str]) -> tuple[int, list[dict[str, int]], str]:
    """Its return code, the JSON lines it printed, its stderr."""
    out, err = proc.communicate(timeout=WAIT)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return proc.returncode, lines, err


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie waiting for init to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def dumps(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.dmp"))


def lldb_crashing_frames(dump: Path) -> list[tuple[str, str]]:
    """(module, function) of each frame of lldb's selected (crashing, '*') thread, top
    first (libc's local functions have no name without its separate debug file)."""
    # (no external symbol lookup: looking for the Python's build ids elsewhere costs ~6 s)
    text = run_tool("lldb", "-b", "-O", "settings set symbols.enable-external-lookup false",
                    "-c", dump, PYTHON, "-o", "thread backtrace all", check=True).stdout
    block = text.split("* thread #", 1)[1]
    block = re.split(r"\n  thread #", block)[0]
    return re.findall(r"frame #\d+: 0x[0-9a-f]+ (\S+)`(\w+)", block)


def stackwalk(dump: Path) -> dict[str, object]:
    proc = run_tool("minidump-stackwalk", "--json", dump, check=True)
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_segfault_through_ctypes_leaves_a_dump_of_the_crashing_thread(tmp_path: Path) -> None:
    code, [ids], err = finish(child("ctypes.string_at(0)\n", tmp_path))
    assert code == -signal.SIGSEGV, err  # it died of its signal, as without us
    pid = ids["pid"]
    [dump] = dumps(tmp_path)
    assert re.fullmatch(rf"python3[.\d]*_{pid}_\d{{8}}_\d{{6}}_crash\.dmp", dump.name)
    with minidumpkit.open_minidump(dump) as d:
        assert d.process_id == pid
        exc = d.exception
        assert (exc.code, exc.flags, exc.address) == (signal.SIGSEGV, SEGV_MAPERR, 0)
        assert exc.thread_id == pid  # the main thread made the call
        # the Python stack at the crash is in the dump too
        [thread] = [t for t in python_stacks(d).threads if t.os_thread_id == pid]
    frames_py = [(f.function, f.filename, f.line) for f in thread.frames]
    assert frames_py[0][:2] == ("string_at", ctypes.__file__), frames_py
    assert frames_py[1] == ("<module>", "<string>",
                            line_of(source("ctypes.string_at(0)\n"), "ctypes.string_at(0)"))
    frames = lldb_crashing_frames(dump)
    assert frames[0][0] == "libc.so.6", frames  # string_at(0) is strlen(NULL)
    assert ("_ctypes" in frames[1][0] and frames[1][1] == "string_at"), frames
    walk = stackwalk(dump)
    info = walk["crash_info"]
    assert info["type"] == "SIGSEGV / SEGV_MAPERR"  # type: ignore[index]
    assert int(info["address"], 16) == 0  # type: ignore[index]
    assert walk["crashing_thread"]["thread_id"] == pid  # type: ignore[index]
    modules = [f.get("module") for f in walk["crashing_thread"]["frames"]]  # type: ignore[index]
    assert modules[0] == "libc.so.6" and any("_ctypes" in str(m) for m in modules[:4]), modules
    wait_until(lambda: gone(ids["helper"]), "the helper to end with its process", WAIT)


def test_crash_in_a_secondary_thread(tmp_path: Path) -> None:
    code, lines, err = finish(child("""
        def crash():
            print(json.dumps({"tid": threading.get_native_id()}), flush=True)
            ctypes.string_at(0)
        t = threading.Thread(target=crash)
        t.start()
        t.join()
        """, tmp_path))
    assert code == -signal.SIGSEGV, err
    [ids, crasher] = lines
    tid = crasher["tid"]
    assert tid != ids["pid"]
    [dump] = dumps(tmp_path)
    with minidumpkit.open_minidump(dump) as d:
        assert sorted(t.thread_id for t in d.threads) == sorted([ids["pid"], tid])
        assert d.exception.thread_id == tid
        assert (d.exception.code, d.exception.address) == (signal.SIGSEGV, 0)
    frames = lldb_crashing_frames(dump)
    assert frames[0][0] == "libc.so.6" and frames[1][1] == "string_at", frames
    walk = stackwalk(dump)
    assert walk["crashing_thread"]["thread_id"] == tid  # type: ignore[index]
    wait_until(lambda: gone(ids["helper"]), "the helper to end", WAIT)


def test_with_faulthandler_the_traceback_is_printed_and_the_reraise_dumped(
        tmp_path: Path) -> None:
    code, [ids], err = finish(child("""
        faulthandler.enable()
        ctypes.string_at(0)
        """, tmp_path))
    assert code == -signal.SIGSEGV, err
    assert "Fatal Python error: Segmentation fault" in err
    assert re.search(r'line \d+ in string_at', err), err  # faulthandler's traceback
    [dump] = dumps(tmp_path)
    with minidumpkit.open_minidump(dump) as d:
        # faulthandler caught the fault (no dump: handled), printed, then raised SIGSEGV
        # again with its default action: that delivery is the one dumped
        assert d.exception.code == signal.SIGSEGV
        assert d.exception.reason == "SIGSEGV / SI_TKILL"
        assert d.exception.thread_id == ids["pid"]
        [thread] = [t for t in python_stacks(d).threads if t.os_thread_id == ids["pid"]]
    # the dump's Python stack is the one faulthandler printed (most recent call first)
    printed = re.findall(r'File "(.+)", line (\d+) in (\S+)', err)
    assert printed and [(f.filename, f.line, f.function) for f in thread.frames] == \
        [(name, int(line), function) for name, line, function in printed], (printed, err)
    frames = lldb_crashing_frames(dump)
    # raise() in the handler, then (through the signal frame) the fault in strlen
    assert ("libc.so.6", "raise") in frames[:2], frames
    walk = stackwalk(dump)
    assert walk["crashing_thread"]["thread_id"] == ids["pid"]  # type: ignore[index]
    modules = [f.get("module") for f in walk["crashing_thread"]["frames"]]  # type: ignore[index]
    assert any("_ctypes" in str(m) for m in modules), modules
    wait_until(lambda: gone(ids["helper"]), "the helper to end", WAIT)


def test_a_normal_exit_leaves_no_file_and_no_helper(tmp_path: Path) -> None:
    # sys.exit: the helper is stopped and reaped at exit (atexit)
    code, [ids], err = finish(child("sys.exit(3)\n", tmp_path))
    assert code == 3, err
    assert not os.path.exists(f"/proc/{ids['helper']}")  # reaped, not even a zombie
    # os._exit (no atexit): the helper sees its process end and ends too
    code, [ids], err = finish(child("os._exit(4)\n", tmp_path))
    assert code == 4, err
    wait_until(lambda: gone(ids["helper"]), "the helper to end by itself", WAIT)
    assert list(tmp_path.iterdir()) == []
    assert err == ""


def test_dump_requests_go_through_the_tracer_and_disable_detaches(tmp_path: Path) -> None:
    """While enabled, dump_self() in the process and dump(pid) from another process are
    written by the helper (no second PTRACE_SEIZE, which would fail); a second
    enable_crash_dumps is refused; disable() detaches every thread."""
    proc = child("""
        print(json.dumps({"tid": threading.get_native_id()}), flush=True)
        try:
            minidumpkit.enable_crash_dumps(sys.argv[1])
        except minidumpkit.AlreadyTraced as exc:
            print(json.dumps({"twice": str(exc)}), flush=True)
        path = minidumpkit.dump_self(os.path.join(sys.argv[1], "self.dmp"))
        print(json.dumps({"self": str(path)}), flush=True)
        sys.stdin.readline()             # the test dumps us from outside meanwhile
        crash_dumps.disable()
        print(json.dumps({"disabled": crash_dumps.enabled}), flush=True)
        sys.stdin.readline()             # the test checks we are released
        """, tmp_path, stdin=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        ids, main, twice, own = (json.loads(proc.stdout.readline()) for _ in range(4))
        pid, helper = ids["pid"], ids["helper"]
        assert "already enabled" in twice["twice"] and str(helper) in twice["twice"]
        with minidumpkit.open_minidump(own["self"]) as d:
            assert d.process_id == pid
            assert d.exception.requested and d.exception.thread_id == main["tid"]
        path = minidumpkit.dump(pid, tmp_path / "outside.dmp")
        with minidumpkit.open_minidump(path) as d:
            assert d.process_id == pid and d.exception.requested
            ours = sorted(t.thread_id for t in d.threads)
        assert ours == sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
        walk = stackwalk(path)  # an independent reader agrees on the threads
        assert sorted(t["thread_id"] for t in walk["threads"]) == ours  # type: ignore[union-attr]
        assert {t[1] for t in _states(pid)} == {helper}  # still held by the helper alone
        with pytest.raises(minidumpkit.AlreadyTraced,
                           match=rf"held by minidumpkit's own tracer, pid {helper} "):
            minidumpkit.Watcher(pid, on_crash=True, directory=tmp_path).start()
        assert {t[1] for t in _states(pid)} == {helper}
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline()) == {"disabled": False}
        assert_released(pid)
        assert not os.path.exists(f"/proc/{helper}")
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=WAIT) == 0
        assert sorted(p.name for p in dumps(tmp_path)) == ["outside.dmp", "self.dmp"]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _states(pid: int) -> list[tuple[int, int]]:
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            text = f.read()
        out.append((int(tid), int(re.search(r"TracerPid:\s*(\d+)", text).group(1))))  # type: ignore[union-attr]
    return out


def test_a_bad_directory_is_refused_before_any_helper_starts(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(minidumpkit.PathNotFoundError):
        minidumpkit.enable_crash_dumps(missing)
    assert all(t == 0 for _, t in _states(os.getpid()))


WAITER = "import os, sys; print(os.getpid(), flush=True); sys.stdin.readline()"


def _check_routed_dump(pid: int, tracer: int, path: Path) -> None:
    assert {t for _, t in _states(pid)} == {tracer}  # held: a second tracer would fail
    written = minidumpkit.dump(pid, path)
    with minidumpkit.open_minidump(written) as d:
        assert d.process_id == pid and d.exception.requested
        ours = sorted(t.thread_id for t in d.threads)
    assert ours == sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    walk = stackwalk(written)
    assert sorted(t["thread_id"] for t in walk["threads"]) == ours  # type: ignore[union-attr]
    assert {t for _, t in _states(pid)} == {tracer}  # and still held, by the same tracer


def test_dump_of_a_process_under_minidumpkit_run_goes_through_run(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    run = subprocess.Popen([sys.executable, "-m", "minidumpkit", "run", "--on-crash", "--dir",
                            str(tmp_path), "--", sys.executable, "-c", WAITER],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert run.stdout is not None and run.stdin is not None
        pid = int(run.stdout.readline())
        wait_until(lambda: all(t for _, t in _states(pid)), "traced")
        _check_routed_dump(pid, run.pid, tmp_path / "routed.dmp")
        run.stdin.write("\n")
        run.stdin.flush()
        assert run.wait(timeout=WAIT) == 0
    finally:
        if run.poll() is None:
            run.kill()
        run.communicate()


def test_dump_of_a_process_under_a_watcher_goes_through_its_helper(tmp_path: Path) -> None:
    target = subprocess.Popen([sys.executable, "-c", WAITER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout is not None and target.stdin is not None
        pid = int(target.stdout.readline())
        with minidumpkit.Watcher(target, on_crash=True, directory=tmp_path) as w:
            assert w.helper_pid is not None
            _check_routed_dump(pid, w.helper_pid, tmp_path / "routed.dmp")
        assert_released(pid)
        target.stdin.write("\n")
        target.stdin.flush()
        assert target.wait(timeout=WAIT) == 0
    finally:
        if target.poll() is None:
            target.kill()
        target.communicate()


def test_refused_while_another_tracer_holds_the_process(tmp_path: Path) -> None:
    """strace traces the child (and lets it run): enabling is refused with a one-line
    AlreadyTraced that names strace, and strace's hold is left as it was."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    code = textwrap.dedent("""
        import os, sys, minidumpkit
        print(os.getpid(), flush=True)
        sys.stdin.readline()
        try:
            minidumpkit.enable_crash_dumps(sys.argv[1])
        except minidumpkit.AlreadyTraced as exc:
            print("refused:", exc, flush=True)
        sys.stdin.readline()
        """)
    target = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    strace = None
    try:
        assert target.stdout is not None and target.stdin is not None
        pid = int(target.stdout.readline())
        strace = subprocess.Popen(["strace", "-f", "-o", os.devnull, "-p", str(pid)],
                                  stderr=subprocess.DEVNULL)
        wait_until(lambda: all(t == strace.pid for _, t in _states(pid)),  # type: ignore[union-attr]
                   "strace attached")
        target.stdin.write("\n")
        target.stdin.flush()
        line = target.stdout.readline()
        assert line.startswith("refused:") and "strace" in line and str(strace.pid) in line, line
        assert all(t == strace.pid for _, t in _states(pid))
        target.stdin.write("\n")
        target.stdin.flush()
        assert target.wait(timeout=WAIT) == 0
        assert list(tmp_path.iterdir()) == []
    finally:
        if target.poll() is None:
            target.kill()
        target.communicate()
        if strace is not None:
            strace.wait(timeout=WAIT)


def test_a_crash_after_the_atexit_handlers_needs_detach_at_exit_false(tmp_path: Path) -> None:
    """atexit runs handlers last-registered first: one registered before
    enable_crash_dumps runs after its detach. It crashes: by default no dump (the watch
    has ended), with detach_at_exit=False a dump; the process dies of SIGSEGV either
    way."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    code = textwrap.dedent("""
        import atexit, ctypes, sys, minidumpkit
        atexit.register(ctypes.string_at, 0)
        minidumpkit.enable_crash_dumps(sys.argv[1], detach_at_exit=sys.argv[2] == "1")
        """)
    for keep, folder in ((False, tmp_path / "default"), (True, tmp_path / "kept")):
        folder.mkdir()
        proc = subprocess.run([sys.executable, "-c", code, str(folder), "0" if keep else "1"],
                              capture_output=True, text=True, env=env, timeout=WAIT)
        assert proc.returncode == -signal.SIGSEGV, proc.stderr
        written = dumps(folder)
        assert len(written) == (1 if keep else 0), written
    with minidumpkit.open_minidump(written[0]) as d:
        assert (d.exception.code, d.exception.address) == (signal.SIGSEGV, 0)
