"""The pytest plugin (minidumpkit.pytest_plugin) and dump_on_hang (docs/harness.md).

Each pytester session runs under a small "reaper": a child subreaper that runs pytest,
then collects every process left behind below it (the watchdogs included) and names
any still alive a few seconds after pytest ended. The hung tests write what only they
know (their pid, the ids of their threads, their child's pid) to a file; the dumps are
checked against that, and by lldb as well as by our reader.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import minidumpkit
import minidumpkit.reader  # noqa: F401  (see below)
from liveproc import children, released
from oracles import run as run_tool

pytestmark = [pytest.mark.live, pytest.mark.validators,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")]
pytest_plugins = ["pytester"]
# pytester drops the modules a test imported when it ends; the reader is imported here,
# at collection, so that the dumps read in these tests leave no half-removed module
# (and no second copy of its classes) to the tests after them.

REAPER = r'''
import ctypes, json, os, subprocess, sys, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans come to us
rc = subprocess.call(sys.argv[1:])
def kids():
    found = []
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as f:
            found += [int(p) for p in f.read().split()]
    return found
left, deadline = [], time.monotonic() + 8
while True:
    while True:  # reap what ended
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pid = 0
        if not pid:
            break
    alive = kids()
    if not alive:
        break
    if time.monotonic() > deadline:
        for pid in alive:
            try:
                left.append(open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode())
            except OSError:
                left.append(str(pid))
            os.kill(pid, 9)
        break
    time.sleep(0.05)
print("\nREAPER " + json.dumps({"rc": rc, "left": left}))
'''

# What every hung test writes: its process, its threads, its child.
TESTS = r'''
import ctypes, json, os, subprocess, sys, threading, time
import minidumpkit
import pytest

def note(**facts):
    with open(os.environ["HARNESS_FACTS"], "a") as f:
        f.write(json.dumps(facts) + "\n")

def test_sleep():
    note(test="sleep", pid=os.getpid(), tid=threading.get_native_id())
    time.sleep(120)

def test_child():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    note(test="child", pid=os.getpid(), child=child.pid)
    try:
        child.wait()
    finally:
        child.kill()
        child.wait()

def test_gil():
    lib = ctypes.PyDLL(None)  # PyDLL: the GIL stays held during the call
    mutex = ctypes.create_string_buffer(64)  # a zeroed pthread_mutex_t
    held = threading.Event()
    def holder():
        lib.pthread_mutex_lock(mutex)
        note(test="gil-holder", tid=threading.get_native_id())
        held.set()
        time.sleep(120)
    threading.Thread(target=holder, daemon=True).start()
    held.wait()
    note(test="gil", pid=os.getpid(), tid=threading.get_native_id())
    lib.pthread_mutex_lock(mutex)

def test_segv():
    note(test="segv", pid=os.getpid(), tid=threading.get_native_id())
    ctypes.string_at(0)

@pytest.mark.minidump(timeout=1)
def test_marked():
    note(test="marked", pid=os.getpid(), tid=threading.get_native_id())
    time.sleep(120)

def test_fixture(minidump):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        path = minidump.dump(child)
        with open(f"/proc/{child.pid}/status") as f:  # whose tracer held it (crash mode)
            tracer = int(f.read().split("TracerPid:")[1].split()[0])
        # (under --minidump-on-crash both dumps are routed to the watchdog, our tracer)
        own = minidumpkit.dump_self(path.with_name(f"self-{os.getpid()}.dmp"))
        with minidumpkit.open_minidump(own) as d:
            assert d.process_id == os.getpid()
        note(test="fixture", child=child.pid, path=str(path), tracer=tracer)
    finally:
        child.kill()
        child.wait()

def test_child_segv():
    child = subprocess.Popen([sys.executable, "-c", "import ctypes; ctypes.string_at(0)"])
    note(test="child-segv", pid=os.getpid(), child=child.pid)
    assert child.wait() == -11

def test_lost_watchdog(request):
    watchdog = request.config.pluginmanager.get_plugin("minidumpkit-harness").watchdog
    note(test="lost", pid=os.getpid(), watchdog=watchdog.proc.pid)
    os.kill(watchdog.proc.pid, 9)
    time.sleep(120)

def test_ok():
    pass
'''


class Session:
    def __init__(self, result: pytest.RunResult, facts: Path, dumps: Path) -> None:
        out = result.stdout.str()
        match = re.search(r"^REAPER (.*)$", out, re.M)
        assert match, out[-3000:] + result.stderr.str()[-3000:]
        reaper = json.loads(match.group(1))
        self.rc: int = reaper["rc"]
        self.left: list[str] = reaper["left"]
        self.out = out
        self.err = result.stderr.str()
        self.facts: dict[str, dict[str, object]] = {}
        for line in facts.read_text().splitlines():
            fact = json.loads(line)
            self.facts[str(fact["test"])] = fact
        self.dumps = dumps

    def dump_of(self, test: str, pid: object) -> Path:
        found = sorted(self.dumps.glob(f"*{test}_{pid}_*.dmp"))
        assert len(found) == 1, (test, pid, sorted(p.name for p in self.dumps.iterdir()))
        return found[0]


def run_session(pytester: pytest.Pytester, *args: str, tests: str) -> Session:
    pytester.makepyfile(test_hangs=TESTS)
    reaper = pytester.path / "reaper.py"
    reaper.write_text(REAPER)
    facts = pytester.path / "facts.jsonl"
    facts.touch()
    dumps = pytester.path / "dumps"
    os.environ["HARNESS_FACTS"] = str(facts)
    try:
        result = pytester.run(sys.executable, reaper, sys.executable, "-m", "pytest",
                              "-p", "minidumpkit.pytest_plugin", "-p", "no:cacheprovider",
                              "-p", "no:randomly", "--minidump-dir", str(dumps),
                              "--minidump-grace", "1", "-rA", *args, "-k", tests,
                              timeout=120)
    finally:
        del os.environ["HARNESS_FACTS"]
    return Session(result, facts, dumps)


def lldb_backtraces(dump: Path) -> str:
    return run_tool("lldb", "-b", "--no-lldbinit", "-c", dump, "-o", "thread list",
                    "-o", "thread backtrace all", check=True).stdout


def thread_ids(dump: Path) -> list[int]:
    with minidumpkit.open_minidump(dump) as d:
        return [t.thread_id for t in d.threads]


def lldb_thread_block(text: str, tid: int) -> str:
    """lldb's backtrace of the thread whose ``tid`` (``thread list``) is given."""
    listed = re.findall(r"thread #(\d+): tid = (\d+)", text)
    index = next(i for i, t in listed if int(t) == tid)
    blocks = re.split(r"(?m)^\s*\*? ?thread #", text.split("thread backtrace all", 1)[1])
    return next(b for b in blocks if b.startswith(f"{index}\n") or b.startswith(f"{index},"))


def check_no_leftovers(session: Session) -> None:
    assert session.left == [], session.left
    assert "Traceback" not in session.err or "Fatal Python error" in session.err, session.err


def test_timeouts_marker_and_fixture_without_xdist(pytester: pytest.Pytester) -> None:
    session = run_session(pytester, "--minidump-on-timeout", "2", "--junitxml", "junit.xml",
                          tests="test_sleep or test_child or test_marked or test_fixture "
                                "or test_ok")
    check_no_leftovers(session)
    assert session.rc == 1, session.out[-3000:]
    assert "PASSED test_hangs.py::test_ok" in session.out
    assert "PASSED test_hangs.py::test_fixture" in session.out
    sleep, child, marked, fixture = (session.facts[k] for k in ("sleep", "child", "marked",
                                                                "fixture"))
    assert sleep["pid"] == child["pid"] == marked["pid"]
    for test in ("test_sleep", "test_child", "test_marked"):
        assert f"FAILED test_hangs.py::{test} - Failed: Timeout" in session.out

    # the sleeping test: its dump, in the report with the thread's native frame
    path = session.dump_of("test_sleep", sleep["pid"])
    assert str(path) in session.out
    assert sleep["tid"] in thread_ids(path)
    assert re.search(rf'thread {sleep["tid"]} "[^"]*": clock_nanosleep', session.out)
    block = lldb_thread_block(lldb_backtraces(path), int(str(sleep["tid"])))
    assert "clock_nanosleep" in block and "time_sleep" in block

    # the test whose child hangs: the pytest process (in wait4) and the child
    parent = session.dump_of("test_child", child["pid"])
    kid = session.dump_of("test_child", child["child"])
    assert str(parent) in session.out and str(kid) in session.out
    assert child["pid"] in thread_ids(parent) and thread_ids(kid) == [child["child"]]
    assert re.search(rf'thread {child["child"]} "[^"]*": clock_nanosleep', session.out)
    assert re.search(rf'thread {child["pid"]} "[^"]*": wait4', session.out)
    assert "wait4" in lldb_thread_block(lldb_backtraces(parent), int(str(child["pid"])))
    assert "clock_nanosleep" in lldb_backtraces(kid)

    # the marker's own timeout (1 s, not the option's 2 s)
    path = session.dump_of("test_marked", marked["pid"])
    assert "Failed: Timeout: test_hangs.py::test_marked ran longer than 1 s" in session.out
    assert re.search(rf'thread {marked["tid"]} "[^"]*": clock_nanosleep', session.out)

    # the fixture's dump of a child, in the report
    dumped = Path(str(fixture["path"]))
    assert thread_ids(dumped) == [fixture["child"]] and str(dumped) in session.out
    assert "clock_nanosleep" in lldb_backtraces(dumped)

    # JUnit XML: the dumps as properties
    xml = (pytester.path / "junit.xml").read_text()
    for test, paths in (("test_sleep", [session.dump_of("test_sleep", sleep["pid"])]),
                        ("test_child", [parent, kid]), ("test_fixture", [dumped])):
        case = re.search(rf'<testcase [^>]*name="{test}".*?</testcase>', xml, re.S)
        assert case, test
        for one in paths:
            assert f'<property name="minidump" value="{one}"' in case.group(0), test


def test_gil_holding_test_is_dumped_then_killed_without_xdist(pytester: pytest.Pytester
                                                               ) -> None:
    session = run_session(pytester, "--minidump-on-timeout", "2", tests="test_gil")
    check_no_leftovers(session)
    assert session.rc == -signal.SIGKILL, session.out[-3000:]  # the session ends
    gil, holder = session.facts["gil"], session.facts["gil-holder"]
    path = session.dump_of("test_gil", gil["pid"])
    line = [x for x in session.err.splitlines() if "did not answer" in x]
    assert len(line) == 1 and "test_hangs.py::test_gil" in line[0] and str(path) in line[0]
    record = json.loads((session.dumps / f"killed-{gil['pid']}.json").read_text())
    summary = "\n".join(record["dumps"][0]["summary"])
    assert re.search(rf'thread {gil["tid"]} "[^"]*": __lll_lock_wait', summary)
    assert f'held by thread {holder["tid"]}' in summary
    text = lldb_backtraces(path)
    assert "__lll_lock_wait" in lldb_thread_block(text, int(str(gil["tid"])))
    assert "clock_nanosleep" in lldb_thread_block(text, int(str(holder["tid"])))


def test_crash_without_xdist(pytester: pytest.Pytester) -> None:
    session = run_session(pytester, "--minidump-on-crash", tests="test_segv")
    check_no_leftovers(session)
    assert session.rc == -signal.SIGSEGV, session.out[-3000:]
    segv = session.facts["segv"]
    path = session.dump_of("test_segv", segv["pid"])
    line = [x for x in session.err.splitlines() if "crashed: pid" in x]
    assert len(line) == 1 and "test_hangs.py::test_segv" in line[0] and str(path) in line[0]
    assert "dies of SIGSEGV" in line[0]
    with minidumpkit.open_minidump(path) as d:
        assert d.exception is not None and d.exception.code == signal.SIGSEGV
        assert d.exception.thread_id == segv["tid"]
    assert "stop reason = signal SIGSEGV" in lldb_backtraces(path)


def test_crash_mode_follows_children(pytester: pytest.Pytester) -> None:
    session = run_session(pytester, "--minidump-on-crash", "--minidump-on-timeout", "2",
                          "--junitxml", "junit.xml",
                          tests="test_child or test_fixture or test_ok")
    check_no_leftovers(session)
    assert session.rc == 1, session.out[-3000:]  # test_child times out; the rest passes
    for test in ("test_child_segv", "test_fixture", "test_ok"):
        assert f"PASSED test_hangs.py::{test}" in session.out
    segv, fixture, child = (session.facts[k] for k in ("child-segv", "fixture", "child"))

    # the child that died of SIGSEGV: dumped where it faulted, named in the report
    path = session.dump_of("test_child_segv", segv["child"])
    with minidumpkit.open_minidump(path) as d:
        assert d.exception is not None and d.exception.code == signal.SIGSEGV
        assert d.exception.thread_id == segv["child"]
    assert "stop reason = signal SIGSEGV" in lldb_backtraces(path)
    assert re.search(rf"pid {segv['child']} \(python[0-9.]*\), started by the tests, died of "
                     r"SIGSEGV during this test", session.out)
    assert str(path) in session.out
    line = [x for x in session.err.splitlines() if f"pid {segv['child']} " in x]
    assert len(line) == 1 and "test_hangs.py::test_child_segv" in line[0], session.err
    assert "dies of SIGSEGV" in line[0] and str(path) in line[0]
    xml = (pytester.path / "junit.xml").read_text()
    case = re.search(r'<testcase [^>]*name="test_child_segv".*?</testcase>', xml, re.S)
    assert case and f'<property name="minidump" value="{path}"' in case.group(0)

    # the fixture's dump of a child the crash tracer follows: routed through it
    assert fixture["tracer"] != 0  # (the watchdog traced the child when it was dumped)
    dumped = Path(str(fixture["path"]))
    assert thread_ids(dumped) == [fixture["child"]]
    assert "clock_nanosleep" in lldb_backtraces(dumped)

    # the timeout dumps of a followed child: through the same tracer
    kid = session.dump_of("test_child", child["child"])
    assert thread_ids(kid) == [child["child"]]
    assert re.search(rf'thread {child["child"]} "[^"]*": clock_nanosleep', session.out)


def test_lost_watchdog_is_said_and_the_test_still_times_out(pytester: pytest.Pytester
                                                              ) -> None:
    session = run_session(pytester, "--minidump-on-timeout", "2",
                          tests="test_lost_watchdog or test_ok")
    check_no_leftovers(session)
    assert session.rc == 1, session.out[-3000:]
    assert "PASSED test_hangs.py::test_ok" in session.out
    lost = session.facts["lost"]
    line = [x for x in session.err.splitlines() if "the watchdog process" in x]
    assert line == [f"minidumpkit: the watchdog process (pid {lost['watchdog']}) ended "
                    "(killed by SIGKILL) during test_hangs.py::test_lost_watchdog; the "
                    "remaining tests are not watched"], session.err
    assert "FAILED test_hangs.py::test_lost_watchdog - Failed: Timeout" in session.out
    assert ("Failed: Timeout: test_hangs.py::test_lost_watchdog ran longer than 2 s; no "
            "minidumps: the "
            "watchdog process had ended (killed by SIGKILL)") in session.out
    assert "the watchdog process ended (killed by SIGKILL) during this test" in session.out


def test_under_xdist(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")  # (a test dependency: pyproject's test extra)
    session = run_session(pytester, "-n", "2", "--minidump-on-timeout", "2",
                          "--minidump-on-crash", "--junitxml", "junit.xml",
                          tests="test_sleep or test_gil or test_segv or test_ok")
    check_no_leftovers(session)
    assert session.rc == 1, session.out[-3000:]  # tests failed; the session went on
    assert re.search(r"PASSED test_hangs.py::test_ok", session.out)
    sleep, gil, holder, segv = (session.facts[k] for k in ("sleep", "gil", "gil-holder",
                                                           "segv"))
    assert len({sleep["pid"], gil["pid"], segv["pid"], os.getpid()}) >= 3
    sleep_dump = session.dump_of("test_sleep", sleep["pid"])
    gil_dump = session.dump_of("test_gil", gil["pid"])
    segv_dump = session.dump_of("test_segv", segv["pid"])
    assert re.search(rf'thread {sleep["tid"]} "[^"]*": clock_nanosleep', session.out)
    assert "clock_nanosleep" in lldb_thread_block(lldb_backtraces(sleep_dump),
                                                  int(str(sleep["tid"])))
    # the GIL test: its worker killed and reported crashed, with the dump and frames
    assert "crashed while running 'test_hangs.py::test_gil'" in session.out
    assert re.search(rf'thread {gil["tid"]} "[^"]*": __lll_lock_wait', session.out)
    assert f'held by thread {holder["tid"]}' in session.out
    assert "__lll_lock_wait" in lldb_thread_block(lldb_backtraces(gil_dump),
                                                  int(str(gil["tid"])))
    assert "crashed while running 'test_hangs.py::test_segv'" in session.out
    with minidumpkit.open_minidump(segv_dump) as d:
        assert d.exception is not None and d.exception.thread_id == segv["tid"]
    assert {sleep["tid"]} <= set(thread_ids(sleep_dump))
    assert {gil["tid"], holder["tid"]} <= set(thread_ids(gil_dump))
    assert "stop reason = signal SIGSEGV" in lldb_backtraces(segv_dump)
    # JUnit XML: each failed test carries its dumps as properties
    xml = (pytester.path / "junit.xml").read_text()
    for test, path in (("test_sleep", sleep_dump), ("test_gil", gil_dump),
                       ("test_segv", segv_dump)):
        case = re.search(rf'<testcase [^>]*name="{test}".*?</testcase>', xml, re.S)
        assert case and f'<property name="minidump" value="{path}"' in case.group(0), test


def test_inert_unless_enabled(pytester: pytest.Pytester) -> None:
    session = run_session(pytester, tests="test_ok")
    check_no_leftovers(session)
    assert session.rc == 0 and "PASSED test_hangs.py::test_ok" in session.out
    assert not session.dumps.exists()  # no watchdog ever started (it makes the directory)


# --- dump_on_hang -------------------------------------------------------------------------

def watchdogs() -> list[int]:
    """Our children that run the watchdog."""
    found = []
    for pid, _state in children(os.getpid()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"minidumpkit._watchdog" in cmdline:
            found.append(pid)
    return found


def test_dump_on_hang_dumps_a_hung_child_and_its_descendants(tmp_path: Path) -> None:
    code = ("import subprocess, sys, time\n"
            "kid = subprocess.Popen(['sleep', '120'])\n"
            "print(kid.pid, flush=True)\n"
            "time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        grandchild = int(proc.stdout.readline())
        with minidumpkit.dump_on_hang(proc, 1, tmp_path) as hang:
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                pass
        assert hang.fired and hang.errors == []
        assert [p.name.split("_")[1] for p in hang.dumps] == [str(proc.pid), str(grandchild)]
        assert thread_ids(hang.dumps[0]) == [proc.pid]
        assert thread_ids(hang.dumps[1]) == [grandchild]
        assert "clock_nanosleep" in lldb_backtraces(hang.dumps[0])
        assert "clock_nanosleep" in lldb_backtraces(hang.dumps[1])
        assert any("clock_nanosleep" in line for line in hang.summaries[hang.dumps[0]])
        assert released(proc.pid) and released(grandchild)
        assert watchdogs() == []
    finally:
        for pid in children(proc.pid):
            os.kill(pid[0], signal.SIGKILL)
        proc.kill()
        proc.wait()


def test_dump_on_hang_writes_nothing_in_time(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    with minidumpkit.dump_on_hang(proc, 30, tmp_path) as hang:
        proc.wait()
    assert not hang.fired and hang.dumps == [] and list(tmp_path.iterdir()) == []
    assert watchdogs() == []


def test_dump_on_hang_ends_its_watchdog_on_an_exception(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pytest.raises(KeyboardInterrupt):
            with minidumpkit.dump_on_hang(proc.pid, 30, tmp_path):
                assert len(watchdogs()) == 1
                raise KeyboardInterrupt
        assert watchdogs() == [] and list(tmp_path.iterdir()) == []
        assert released(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_dump_on_hang_refuses_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="pid or a subprocess.Popen"):
        minidumpkit.dump_on_hang("123", 1, tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="above 0"):
        minidumpkit.dump_on_hang(os.getpid(), 0, tmp_path)
    with pytest.raises(minidumpkit.PathNotFoundError):
        minidumpkit.dump_on_hang(os.getpid(), 1, tmp_path / "missing")
