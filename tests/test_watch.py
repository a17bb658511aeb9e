"""`minidumpkit run` / `watch` and the Watcher API, against real programs (issue 16).

The target is tests/targets/watch/watch_target.c (one behaviour per argv[1]). Crash
dumps are checked by our reader and by lldb and minidump-stackwalk (with a dump-syms
symbol store of the target); expected values come from how the target was built
(BAD_ADDRESS, the function names). After each test no process is left traced or
stopped (checked in /proc).
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import CFLAGS, assert_released, wait_until
from oracles import run as run_tool

import minidumpkit
from minidumpkit import watch

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux watcher")

SOURCE = Path(__file__).resolve().parent / "targets" / "watch" / "watch_target.c"
BAD_ADDRESS = 0xDEAD0000  # watch_target.c
SEGV_MAPERR = 1
SRC = str(Path(__file__).resolve().parents[1] / "src")
WAIT = 60.0  # a hang guard, never a timing assert


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exe = tmp_path_factory.mktemp("watch") / "watch_target"
    subprocess.run(["cc", *CFLAGS, "-o", str(exe), str(SOURCE)], check=True)
    return exe


@pytest.fixture(scope="module")
def symbols(prog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Breakpad symbol store of the target, made by rust dump-syms."""
    store = tmp_path_factory.mktemp("symbols")
    sym = run_tool("dump-syms", prog, check=True, timeout=300).stdout
    header = sym.splitlines()[0].split()
    folder = store / header[4] / header[3]
    folder.mkdir(parents=True)
    (folder / f"{header[4]}.sym").write_text(sym)
    return store


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    return env


class Cli:
    """A `python -m minidumpkit ...` process; the target's stdout comes through ours."""

    def __init__(self, *args: str | os.PathLike[str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "minidumpkit", *map(str, args)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=_env())
        self.target_pid = 0

    def ready(self) -> int:
        """Wait for the target's READY line; its pid."""
        assert self.proc.stdout is not None
        if not select.select([self.proc.stdout], [], [], WAIT)[0]:
            self.proc.kill()  # a hang guard: fail with what the watcher said
            pytest.fail(f"no READY line within {WAIT} s; stderr: {self.proc.communicate()[1]}")
        line = self.proc.stdout.readline()
        match = re.search(r"READY pid=(\d+)", line)
        assert match, f"no READY line: {line!r} {self.finish()}"
        self.target_pid = int(match.group(1))
        return self.target_pid

    def finish(self, timeout: float = WAIT) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def close(self) -> None:
        if self.target_pid and os.path.exists(f"/proc/{self.target_pid}"):
            try:
                os.kill(self.target_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.communicate(timeout=WAIT)
        except subprocess.TimeoutExpired:  # a target we never learnt of holds the pipes
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()


@pytest.fixture
def cli() -> Iterator[type[Cli]]:
    started: list[Cli] = []

    class Tracked(Cli):
        def __init__(self, *args: str | os.PathLike[str]) -> None:
            super().__init__(*args)
            started.append(self)

    yield Tracked
    for c in started:
        c.close()


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def run_cli(*args: str | os.PathLike[str]) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "minidumpkit", *map(str, args)],
                          capture_output=True, text=True, env=_env(), timeout=WAIT)
    return proc.returncode, proc.stdout, proc.stderr


def dumps(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.dmp"))


def lldb_backtraces(dump: Path, prog: Path) -> str:
    out = run_tool("lldb", "-b", "-c", dump, prog, "-o", "thread backtrace all",
                   check=True).stdout
    return out


def rust_walk(dump: Path, store: Path) -> dict[str, object]:
    proc = run_tool("minidump-stackwalk", "--json", "--symbols-path", store, dump, check=True)
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def crashing_lldb_frames(text: str) -> list[str]:
    """The frames of lldb's selected (crashing: '*') thread."""
    block = text.split("* thread #", 1)[1]
    block = re.split(r"\n  thread #", block)[0]
    return re.findall(r"frame #\d+: 0x[0-9a-f]+ \S+`(\w+)", block)


# --- crashes ---------------------------------------------------------------------------

def test_segv_dump_has_signal_code_address_and_top_frame(prog: Path, symbols: Path,
                                                         tmp_path: Path) -> None:
    code, out, err = run_cli("run", "--on-crash", "--dir", tmp_path, "--", prog, "segv")
    assert code == -signal.SIGSEGV, err  # run died of the child's signal
    pid = int(re.search(r"READY pid=(\d+)", out).group(1))  # type: ignore[union-attr]
    [dump] = dumps(tmp_path)
    assert re.fullmatch(rf"watch_target_{pid}_\d{{8}}_\d{{6}}_crash\.dmp", dump.name)
    assert _gone(pid)
    with minidumpkit.open_minidump(dump) as d:
        exc = d.exception
        assert (exc.code, exc.flags, exc.address) == (signal.SIGSEGV, SEGV_MAPERR, BAD_ADDRESS)
        assert exc.thread_id == pid
    assert crashing_lldb_frames(lldb_backtraces(dump, prog))[0] == "crash_here"
    walk = rust_walk(dump, symbols)
    info = walk["crash_info"]
    assert info["type"] == "SIGSEGV / SEGV_MAPERR"  # type: ignore[index]
    assert int(info["address"], 16) == BAD_ADDRESS  # type: ignore[index]
    thread = walk["crashing_thread"]
    assert thread["thread_id"] == pid  # type: ignore[index]
    assert thread["frames"][0]["function"] == "crash_here"  # type: ignore[index]


def test_abort_dump(prog: Path, symbols: Path, tmp_path: Path) -> None:
    code, out, err = run_cli("run", "--on-crash", "--dir", tmp_path, "--", prog, "abort")
    assert code == -signal.SIGABRT, err
    [dump] = dumps(tmp_path)
    with minidumpkit.open_minidump(dump) as d:
        assert d.exception.code == signal.SIGABRT
        assert d.exception.reason.startswith("SIGABRT")
    frames = crashing_lldb_frames(lldb_backtraces(dump, prog))
    assert "abort_here" in frames, frames  # under libc's abort/raise frames
    walk = rust_walk(dump, symbols)
    assert walk["crash_info"]["type"].startswith("SIGABRT")  # type: ignore[index]
    functions = [f.get("function") for f in walk["crashing_thread"]["frames"]]  # type: ignore[index]
    assert "abort_here" in functions, functions


def test_crash_in_a_secondary_thread(prog: Path, symbols: Path, tmp_path: Path) -> None:
    code, out, err = run_cli("run", "--on-crash", "--dir", tmp_path, "--", prog, "thread-segv")
    assert code == -signal.SIGSEGV, err
    pid = int(re.search(r"READY pid=(\d+)", out).group(1))  # type: ignore[union-attr]
    [dump] = dumps(tmp_path)
    with minidumpkit.open_minidump(dump) as d:
        names = {t.thread_id: t.name for t in d.threads}
        assert len(names) == 2
        assert d.exception.thread_id != pid
        assert names[d.exception.thread_id] == "crasher"
        assert (d.exception.code, d.exception.flags, d.exception.address) == \
            (signal.SIGSEGV, SEGV_MAPERR, BAD_ADDRESS)
        crasher = d.exception.thread_id
    assert crashing_lldb_frames(lldb_backtraces(dump, prog))[0] == "thread_crash_here"
    walk = rust_walk(dump, symbols)
    assert walk["crashing_thread"]["thread_id"] == crasher  # type: ignore[index]
    assert walk["crashing_thread"]["frames"][0]["function"] == "thread_crash_here"  # type: ignore[index]


def test_handled_segv_gives_no_dump(prog: Path, tmp_path: Path) -> None:
    code, out, err = run_cli("run", "--on-crash", "--dir", tmp_path, "--", prog, "handled")
    assert (code, "survived" in out) == (7, True), err
    assert dumps(tmp_path) == []


def test_handled_segv_with_first_chance(prog: Path, tmp_path: Path) -> None:
    code, out, err = run_cli("run", "--on-crash", "--first-chance", "--dir", tmp_path, "--",
                             prog, "handled")
    assert (code, "survived" in out) == (7, True), err
    [dump] = dumps(tmp_path)
    assert dump.name.endswith("_first-chance.dmp")
    with minidumpkit.open_minidump(dump) as d:
        assert (d.exception.code, d.exception.address) == (signal.SIGSEGV, BAD_ADDRESS)


def test_reraise_after_the_programs_handler_is_dumped(prog: Path, tmp_path: Path) -> None:
    """faulthandler's way: the handler resets SIGSEGV to SIG_DFL and raises it again;
    the first delivery (caught) gives no dump, the re-raise does."""
    code, out, err = run_cli("run", "--on-crash", "--dir", tmp_path, "--", prog, "reraise")
    assert code == -signal.SIGSEGV, err
    [dump] = dumps(tmp_path)
    with minidumpkit.open_minidump(dump) as d:
        assert d.exception.code == signal.SIGSEGV
        assert d.exception.reason == "SIGSEGV / SI_TKILL"  # raise(), not the fault


def test_run_exits_as_the_child_did(prog: Path, tmp_path: Path) -> None:
    code, out, err = run_cli("run", "--on-crash", "--dir", tmp_path, "--", prog, "sleep", "0")
    assert code == 3, err
    assert dumps(tmp_path) == []


# --- the Python API --------------------------------------------------------------------

def test_watcher_on_a_popen_calls_back_and_leaves_the_exit_status(prog: Path,
                                                                  tmp_path: Path) -> None:
    proc = subprocess.Popen([str(prog), "segv-on-input"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("READY")
        seen: list[watch.DumpWritten] = []
        with watch.Watcher(proc, on_crash=True, directory=tmp_path, on_dump=seen.append) as w:
            assert proc.stdin is not None
            proc.stdin.write("crash\n")
            proc.stdin.flush()
            assert proc.wait(timeout=WAIT) == -signal.SIGSEGV  # ours to reap, not the watcher's
            assert w.wait(WAIT)
        [event] = seen
        assert event.trigger == "crash" and event.pid == proc.pid
        assert dumps(tmp_path) == [event.path]
        with minidumpkit.open_minidump(event) as d:
            assert (d.exception.code, d.exception.address) == (signal.SIGSEGV, BAD_ADDRESS)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_watcher_stop_detaches(prog: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen([str(prog), "usr1", "h"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("READY")
        w = watch.Watcher(proc.pid, signal=signal.SIGUSR1, directory=tmp_path).start()
        wait_until(lambda: all(t != 0 for t in _tracers(proc.pid)), "traced")
        os.kill(proc.pid, signal.SIGUSR1)
        assert proc.stdout.readline().strip() == "usr1 1"  # handled: passed on after the dump
        wait_until(lambda: bool(w.dumps), "the helper's report of the dump")
        assert [d.trigger for d in w.dumps] == ["signal"]
        w.stop()
        assert not w.running
        assert_released(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def _tracers(pid: int) -> list[int]:
    """Each thread's TracerPid (the tracing *thread*'s id, 0 when untraced)."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            out.append(int(re.search(r"TracerPid:\s*(\d+)", f.read()).group(1)))  # type: ignore[union-attr]
    return out


def test_dump_self(tmp_path: Path) -> None:
    import threading

    path = minidumpkit.dump_self(tmp_path / "self.dmp")
    with minidumpkit.open_minidump(path) as d:
        assert d.process_id == os.getpid()
        assert d.exception.requested
        assert d.exception.thread_id == threading.get_native_id()
    assert all(t == 0 for t in _tracers(os.getpid()))


# --- hangs -----------------------------------------------------------------------------

def test_deadlock_is_dumped_and_every_thread_waits_on_its_lock(cli: type[Cli], prog: Path,
                                                                tmp_path: Path) -> None:
    c = cli("run", "--on-hang", "2", "--dir", tmp_path, "--", prog, "deadlock")
    pid = c.ready()
    assert c.proc.stdout is not None and c.proc.stdout.readline().strip() == "DEADLOCKED"
    wait_until(lambda: bool(dumps(tmp_path)), "a hang dump of the deadlocked program")
    [dump] = dumps(tmp_path)
    assert dump.name.endswith("_hang.dmp")
    wait_until(lambda: all(t == 0 for t in _tracers(pid)), "the watcher to detach (-n 1)")
    assert_released(pid)
    text = lldb_backtraces(dump, prog)
    threads = re.split(r"\n[ *] thread #", text)[1:]
    assert len(threads) == 2, text
    for block in threads:  # each waits in glibc's mutex lock for the other's lock
        assert "pthread_mutex_lock" in block or "__lll_lock_wait" in block, block
    assert "lock_second_then_first" in text and "main" in text
    os.kill(pid, signal.SIGKILL)
    code, _, _ = c.finish()
    assert code == -signal.SIGKILL


def test_idle_event_loop_is_not_a_hang(prog: Path, tmp_path: Path) -> None:
    code, out, err = run_cli("run", "--on-hang", "2", "--dir", tmp_path, "--", prog, "idle", "5")
    assert code == 0, err
    assert dumps(tmp_path) == []


def test_lock_cycle_beside_a_running_thread_is_a_hang(cli: type[Cli], prog: Path,
                                                       tmp_path: Path) -> None:
    """on_hang's lock rule: two threads in an ABBA deadlock while the main thread keeps
    running (not every thread is blocked): the sampled dump, which has the cycle, is
    the hang dump."""
    c = cli("run", "--on-hang", "2", "--dir", tmp_path, "--", prog, "deadlock-with-worker")
    pid = c.ready()
    assert c.proc.stdout is not None and c.proc.stdout.readline().strip() == "DEADLOCKED"
    wait_until(lambda: bool(dumps(tmp_path)), "a hang dump of the deadlocked threads",
               timeout=30)
    [dump] = dumps(tmp_path)
    assert dump.name.endswith("_hang.dmp")
    wait_until(lambda: all(t == 0 for t in _tracers(pid)), "the watcher to detach (-n 1)")
    assert_released(pid)
    assert os.listdir(tmp_path) == [dump.name]  # the sample is the dump: nothing else
    code, out, err = run_cli("info", dump)
    assert code == 0, err
    verdict = out.split("\n\n", 1)[0]
    assert verdict.startswith("DEADLOCK: 2 threads"), out
    assert '"lockerA"' in verdict and '"lockerB"' in verdict, verdict  # prctl names
    text = lldb_backtraces(dump, prog)
    threads = re.split(r"\n[ *] thread #", text)[1:]
    assert len(threads) == 3, text
    lockers = [block for block in threads if "abba_thread" in block]
    assert len(lockers) == 2, text
    for block in lockers:  # each waits in glibc's mutex lock for the other's lock
        assert "pthread_mutex_lock" in block or "__lll_lock_wait" in block, block
    os.kill(pid, signal.SIGKILL)
    code, _, _ = c.finish()
    assert code == -signal.SIGKILL


def _voluntary_switches(pid: int, tid: int) -> int:
    with open(f"/proc/{pid}/task/{tid}/status") as f:
        match = re.search(r"(?m)^voluntary_ctxt_switches:\s*(\d+)", f.read())
    assert match
    return int(match.group(1))


def _in_futex(pid: int, tid: int) -> bool:
    with open(f"/proc/{pid}/task/{tid}/syscall") as f:
        return f.read().split(" ", 1)[0] == "202"  # x86-64 futex


def test_lock_waits_without_a_cycle_are_sampled_and_not_dumped(
        cli: type[Cli], prog: Path, tmp_path: Path) -> None:
    """Two threads wait on two locks a third, sleeping, thread holds (no cycle) while
    the main thread runs: the sample is taken (the hold wakes each waiter's futex wait:
    its voluntary context switches grow), finds no cycle and is dropped. The watch goes
    on for 5 s in all with no dump."""
    c = cli("run", "--on-hang", "2", "--dir", tmp_path, "--", prog, "blocked-no-cycle")
    pid = c.ready()
    started = time.monotonic()
    assert c.proc.stdout is not None
    match = re.match(r"BLOCKED w1=(\d+) w2=(\d+)", c.proc.stdout.readline())
    assert match
    waiters = [int(match.group(1)), int(match.group(2))]
    wait_until(lambda: all(_in_futex(pid, t) for t in waiters), "both waiters in futex")
    before = [_voluntary_switches(pid, t) for t in waiters]
    wait_until(lambda: all(_voluntary_switches(pid, t) > n for t, n in zip(waiters, before)),
               "the watcher to hold the waiters for a lock sample", timeout=30)
    time.sleep(max(0.0, 5.0 - (time.monotonic() - started)))  # (a window, not an assert)
    os.kill(pid, signal.SIGTERM)
    code, _, err = c.finish()  # the watcher ends after the child: any dump is complete
    assert code == 0, err
    assert os.listdir(tmp_path) == []  # no dump, no sample left behind


def test_a_lock_sample_without_a_cycle_is_not_taken_again(prog: Path) -> None:
    """Cost control: once a blocked set was sampled without a cycle, the samplers do
    not ask for it again while it stays the same."""
    from minidumpkit._backends._linux_watch import _Samplers

    proc = subprocess.Popen([prog, "blocked-no-cycle"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        match = re.match(r"BLOCKED w1=(\d+) w2=(\d+)", proc.stdout.readline())
        assert match
        waiters = [int(match.group(1)), int(match.group(2))]
        wait_until(lambda: all(_in_futex(proc.pid, t) for t in waiters), "both in futex")
        samplers = _Samplers(proc.pid, minidumpkit.Triggers(on_hang=0.01))
        samplers.lock_samples = True

        def due() -> bool:
            samplers.poll(time.monotonic())
            return samplers.lock_due

        wait_until(due, "the two waiters to be due for a lock sample")
        samplers.after_sample()  # (nothing held them: the set stays exactly the same)
        for _ in range(5):
            time.sleep(0.02)
            samplers.poll(time.monotonic())  # (the first rule may fire: not ours here)
            assert not samplers.lock_due
    finally:
        proc.kill()
        proc.wait()


def test_heartbeat_that_stops_is_a_hang(prog: Path, tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    beat.touch()
    code, out, err = run_cli("run", "--on-hang", "1", "--heartbeat", beat, "--dir", tmp_path,
                             "--", prog, "idle", "4")
    assert code == 0, err
    [dump] = dumps(tmp_path)
    assert dump.name.endswith("_hang.dmp")


# --- signal, timer, count ---------------------------------------------------------------

def test_signal_trigger_swallows_an_unhandled_signal(cli: type[Cli], prog: Path,
                                                      tmp_path: Path) -> None:
    c = cli("run", "--signal", "USR1", "-n", "2", "--dir", tmp_path, "--", prog, "usr1")
    pid = c.ready()
    wait_until(lambda: all(t != 0 for t in _tracers(pid)), "traced")
    os.kill(pid, signal.SIGUSR1)  # default action: terminate; swallowed after the dump
    wait_until(lambda: len(dumps(tmp_path)) == 1, "the signal dump")
    assert not _gone(pid)
    os.kill(pid, signal.SIGTERM)
    code, out, err = c.finish()
    assert code == 0, err  # the target's SIGTERM handler returns 0
    [dump] = dumps(tmp_path)
    assert dump.name.endswith("_signal.dmp")
    with minidumpkit.open_minidump(dump) as d:
        assert d.exception.requested and d.exception.thread_id == pid


def test_timer_count_interval(prog: Path, tmp_path: Path) -> None:
    code, out, err = run_cli("run", "--timer", "1", "-n", "3", "--interval", "1", "--dir",
                             tmp_path, "--", prog, "sleep", "6")
    assert code == 3, err
    written = dumps(tmp_path)
    assert len(written) == 3 and all("_timer" in p.name for p in written), written
    for p in written:
        with minidumpkit.open_minidump(p) as d:
            assert d.exception.requested


def test_cpu_spike(prog: Path, tmp_path: Path) -> None:
    # 20 %: the spinning child gets about half a CPU on a busy shared 2-core machine
    code, out, err = run_cli("run", "--cpu", "20", "--for", "1", "--dir", tmp_path, "--",
                             prog, "spin", "4")
    assert code == 0, err
    [dump] = dumps(tmp_path)
    assert dump.name.endswith("_cpu.dmp")


def test_memory_growth(prog: Path, tmp_path: Path) -> None:
    code, out, err = run_cli("run", "--memory", "20", "--dir", tmp_path, "--", prog, "grow",
                             "40")
    assert code == 0, err
    [dump] = dumps(tmp_path)
    assert dump.name.endswith("_memory.dmp")
    with minidumpkit.open_minidump(dump) as d:  # the process status it was taken at
        raw = d.raw_stream(0x47670004)  # LinuxProcStatus
    assert raw is not None
    status = raw.decode()
    rss_kb = int(re.search(r"VmRSS:\s*(\d+)", status).group(1))  # type: ignore[union-attr]
    assert rss_kb >= 20 * 1024


def test_fd_count(prog: Path, tmp_path: Path) -> None:
    code, out, err = run_cli("run", "--fds", "3", "--dir", tmp_path, "--", prog, "sleep", "2")
    assert code == 3, err  # stdin, stdout, stderr: 3 descriptors from the start
    [dump] = dumps(tmp_path)
    assert dump.name.endswith("_fds.dmp")


def test_thread_count(cli: type[Cli], prog: Path, tmp_path: Path) -> None:
    c = cli("run", "--threads", "2", "--dir", tmp_path, "--", prog, "deadlock")
    pid = c.ready()
    wait_until(lambda: bool(dumps(tmp_path)), "the thread-count dump")
    [dump] = dumps(tmp_path)
    assert dump.name.endswith("_threads.dmp")
    with minidumpkit.open_minidump(dump) as d:
        assert len(d.threads) == 2
    os.kill(pid, signal.SIGKILL)
    assert c.finish()[0] == -signal.SIGKILL


def test_a_crash_after_count_is_still_dumped(prog: Path, tmp_path: Path) -> None:
    """-n 1 used up by a signal dump; --on-crash still catches the crash that follows."""
    proc = subprocess.Popen([sys.executable, "-m", "minidumpkit", "run", "--on-crash",
                             "--signal", "USR1", "--dir", str(tmp_path), "--", str(prog),
                             "segv-on-input"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    try:
        assert proc.stdout is not None and proc.stdin is not None
        pid = int(re.search(r"pid=(\d+)", proc.stdout.readline()).group(1))  # type: ignore[union-attr]
        wait_until(lambda: all(t != 0 for t in _tracers(pid)), "traced")
        os.kill(pid, signal.SIGUSR1)
        wait_until(lambda: len(dumps(tmp_path)) == 1, "the signal dump")
        proc.stdin.write("crash\n")
        proc.stdin.flush()
        assert proc.wait(timeout=WAIT) == -signal.SIGSEGV
        names = [p.name for p in dumps(tmp_path)]
        # (sorted: the names' times may fall in the same second or not)
        assert sorted(n.rsplit("_", 1)[1] for n in names) == ["crash.dmp", "signal.dmp"], names
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


# --- interruption, job control, errors ---------------------------------------------------

def test_sigint_to_run_detaches_and_run_ends_as_the_child(cli: type[Cli], prog: Path,
                                                          tmp_path: Path) -> None:
    c = cli("run", "--on-crash", "--dir", tmp_path, "--", prog, "usr1", "h")
    pid = c.ready()
    wait_until(lambda: all(t != 0 for t in _tracers(pid)), "traced")
    c.proc.send_signal(signal.SIGINT)  # to the watcher alone: the child runs on
    assert c.proc.stderr is not None
    assert "interrupted" in c.proc.stderr.readline()
    assert_released(pid)
    os.kill(pid, signal.SIGTERM)
    code, _, _ = c.finish()
    assert code == 0


def test_sigint_to_watch_detaches(cli: type[Cli], prog: Path, tmp_path: Path) -> None:
    target = subprocess.Popen([str(prog), "usr1", "h"], stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout is not None and target.stdout.readline().startswith("READY")
        c = cli("watch", target.pid, "--on-crash", "--dir", tmp_path)
        wait_until(lambda: all(t != 0 for t in _tracers(target.pid)), "traced")
        c.proc.send_signal(signal.SIGINT)
        code, _, err = c.finish()
        assert code == 130, err
        assert_released(target.pid)
        os.kill(target.pid, signal.SIGUSR1)
        assert target.stdout.readline().strip() == "usr1 1"
    finally:
        target.kill()
        target.wait()


def test_job_control_under_watch(cli: type[Cli], prog: Path, tmp_path: Path) -> None:
    target = subprocess.Popen([str(prog), "usr1", "h"], stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout is not None and target.stdout.readline().startswith("READY")
        c = cli("watch", target.pid, "--on-crash", "--dir", tmp_path)
        wait_until(lambda: all(t != 0 for t in _tracers(target.pid)), "traced")
        os.kill(target.pid, signal.SIGSTOP)
        wait_until(lambda: _state(target.pid) in ("t", "T"), "the group-stop")
        os.kill(target.pid, signal.SIGUSR1)  # stays pending while stopped
        time.sleep(0.3)
        assert _state(target.pid) in ("t", "T")
        os.kill(target.pid, signal.SIGCONT)
        assert target.stdout.readline().strip() == "usr1 1"
        c.proc.send_signal(signal.SIGINT)
        assert c.finish()[0] == 130
        assert_released(target.pid)
        os.kill(target.pid, signal.SIGSTOP)  # job control after the watch: plain 'T'
        wait_until(lambda: _state(target.pid) == "T", "a plain stop")
        os.kill(target.pid, signal.SIGCONT)
        wait_until(lambda: _state(target.pid) in ("S", "R"), "running again")
    finally:
        target.kill()
        target.wait()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0]


def test_bad_input_exit_statuses(prog: Path, tmp_path: Path) -> None:
    d = str(tmp_path)
    code, _, err = run_cli("run", "--on-crash", "--dir", d, "--", "no-such-command-xyz")
    assert code == 127 and err.count("\n") == 1 and "not found" in err
    text = tmp_path / "notes.txt"
    text.write_text("not a program\n")
    code, _, err = run_cli("run", "--on-crash", "--dir", d, "--", text)
    assert code == 126 and "not executable" in err
    text.chmod(0o755)  # executable bits, but no format the kernel runs (ENOEXEC)
    code, _, err = run_cli("run", "--on-crash", "--dir", d, "--", text)
    assert code == 126 and "not executable" in err, err
    code, _, err = run_cli("watch", "4194304", "--on-crash", "--dir", d)
    assert code == 3 and err.count("\n") == 1
    code, _, err = run_cli("run", "--on-hang", "0", "--dir", d, "--", prog, "sleep", "0")
    assert code == 6 and "on-hang" in err
    code, _, err = run_cli("run", "--threads", "0", "--dir", d, "--", prog, "sleep", "0")
    assert code == 6
    code, _, err = run_cli("run", "--dir", d, "--", prog, "sleep", "0")
    assert code == 2 and "trigger" in err
    assert dumps(tmp_path) == []


def test_already_traced_by_gdb(prog: Path, tmp_path: Path) -> None:
    target = subprocess.Popen([str(prog), "sleep", "30"], stdout=subprocess.PIPE, text=True)
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    gdb = subprocess.Popen(["gdb", "-q", "-nx", "-batch", "-p", str(target.pid),
                            "-ex", f"shell read x < {fifo}", "-ex", "detach"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _tracers(target.pid)[0] == gdb.pid, "gdb attached")
        code, _, err = run_cli("watch", target.pid, "--on-crash", "--dir", tmp_path)
        assert code == 4 and "gdb" in err and err.count("\n") == 1, err
    finally:
        with open(fifo, "w") as f:
            f.write("x\n")
        gdb.wait(timeout=WAIT)
        assert _tracers(target.pid) == [0]
        target.kill()
        target.wait()


def test_no_ptrace_permission(prog: Path, tmp_path: Path) -> None:
    """A root watcher without CAP_SYS_PTRACE cannot trace another user's process."""
    if os.geteuid() != 0:
        pytest.skip("starting a target as another user needs root")
    target = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               str(prog), "sleep", "30"], stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout is not None and target.stdout.readline().startswith("READY")
        proc = subprocess.run(["setpriv", "--bounding-set=-sys_ptrace",
                               "--inh-caps=-sys_ptrace", sys.executable, "-m", "minidumpkit",
                               "watch", str(target.pid), "--on-crash", "--dir", str(tmp_path)],
                              capture_output=True, text=True, env=_env(), timeout=WAIT)
        assert proc.returncode == 5 and "CAP_SYS_PTRACE" in proc.stderr, proc.stderr
        assert _tracers(target.pid) == [0]
    finally:
        target.kill()
        target.wait()


def test_run_whose_on_start_raises_leaves_the_child_untraced(prog: Path, tmp_path: Path) -> None:
    """watch.run's on_start callback raising: the exception reaches the caller and the
    child runs on untraced (it stayed traced by the caller's thread, found in review)."""
    started: list[int] = []

    def on_start(pid: int) -> None:
        started.append(pid)
        raise RuntimeError("on_start failed")

    with pytest.raises(RuntimeError, match="on_start failed"):
        minidumpkit.watch.run([str(prog), "idle", "30"], directory=tmp_path, on_crash=True,
                              on_start=on_start)
    [pid] = started
    try:
        assert _tracers(pid) and all(t == 0 for t in _tracers(pid)), _tracers(pid)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
