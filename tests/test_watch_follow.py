"""`minidumpkit run --follow-children` and Watcher(follow_children=True): process trees.

The target is tests/targets/watch/follow_target.c (one behaviour per argv[1]); expected
values come from how it was built (BAD_ADDRESS, the function names, the exit codes it
computes from its children's ends). Crash dumps are read by our reader and walker and
by lldb. No process of a tree is left traced or stopped (checked in /proc).
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import CFLAGS, assert_released, wait_until
from test_watch import WAIT, _env, _gone, crashing_lldb_frames, dumps, lldb_backtraces, run_cli

import minidumpkit
from minidumpkit import watch
from minidumpkit.analysis import walk_stacks

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux watcher")

SOURCE = Path(__file__).resolve().parent / "targets" / "watch" / "follow_target.c"
BAD_ADDRESS = 0xDEAD0000  # follow_target.c
SEGV_MAPERR = 1
TREE_EXIT = 41  # tree: the child exits with the grandchild's signal (11), plus 30


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exe = tmp_path_factory.mktemp("follow") / "follow_target"
    subprocess.run(["cc", *CFLAGS, "-o", str(exe), str(SOURCE)], check=True)
    return exe


@pytest.fixture(scope="module")
def deadlocker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/targets/watch/watch_target.c (its "deadlock" mode: two threads, two mutexes)."""
    exe = tmp_path_factory.mktemp("follow") / "watch_target"
    subprocess.run(["cc", *CFLAGS, "-o", str(exe), str(SOURCE.with_name("watch_target.c"))],
                   check=True)
    return exe


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _tracers(pid: int) -> list[int]:
    """Each thread's TracerPid ([] once the process is gone)."""
    out = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                out.append(int(re.search(r"TracerPid:\s*(\d+)", f.read()).group(1)))  # type: ignore[union-attr]
        except FileNotFoundError:
            continue
    return out


class Tree:
    """`follow_target tree`, started by ``argv`` (a `minidumpkit run`) or directly; its
    stdin releases the grandchild's crash."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.pids: dict[str, int] = {}
        assert self.proc.stdout is not None
        while "GRANDCHILD" not in self.pids:
            line = self.proc.stdout.readline()
            match = re.match(r"(READY|CHILD|GRANDCHILD) pid=(\d+)", line)
            assert match, f"unexpected line {line!r}"
            self.pids[match.group(1)] = int(match.group(2))

    def crash(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.close()
        self.proc.stdin = None

    def close(self) -> None:
        for pid in self.pids.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@pytest.fixture
def trees() -> Iterator[list[Tree]]:
    started: list[Tree] = []
    yield started
    for tree in started:
        tree.close()


def _cli(*args: str | os.PathLike[str]) -> list[str]:
    return [sys.executable, "-m", "minidumpkit", *map(str, args)]


def _top_function(dump: Path) -> str | None:
    """Our walker's top frame of the crashing thread."""
    with minidumpkit.open_minidump(dump) as d:
        crashed = d.exception.thread_id
        for stack in walk_stacks(d):
            if stack.thread_id == crashed:
                return stack.frames[0].function
    return None


def test_grandchild_crash_is_dumped(prog: Path, tmp_path: Path, trees: list[Tree]) -> None:
    tree = Tree(_cli("run", "--on-crash", "--follow-children", "--dir", tmp_path, "--",
                     prog, "tree"), env=_env())
    trees.append(tree)
    grandchild = tree.pids["GRANDCHILD"]
    for pid in tree.pids.values():  # every process of the tree, from its first instruction
        assert _tracers(pid) and all(_tracers(pid)), (pid, _tracers(pid))
    os.kill(grandchild, signal.SIGSTOP)  # job control in a child: a group-stop, then on
    wait_until(lambda: _state(grandchild) in ("t", "T"), "the grandchild's group-stop")
    os.kill(grandchild, signal.SIGCONT)
    wait_until(lambda: _state(grandchild) == "S", "the grandchild running again")
    tree.crash()
    assert tree.proc.wait(timeout=WAIT) == TREE_EXIT  # run ends as its own child did
    [dump] = dumps(tmp_path)
    assert re.fullmatch(rf"follow_target_{grandchild}_\d{{8}}_\d{{6}}_crash\.dmp", dump.name)
    with minidumpkit.open_minidump(dump) as d:
        exc = d.exception
        assert (exc.code, exc.flags, exc.address) == (signal.SIGSEGV, SEGV_MAPERR, BAD_ADDRESS)
        assert d.process_id == grandchild and exc.thread_id == grandchild
        assert len(d.threads) == 2  # its own two threads, none of its parents'
    assert _top_function(dump) == "grandchild_crash_here"
    assert crashing_lldb_frames(lldb_backtraces(dump, prog))[0] == "grandchild_crash_here"
    assert all(_gone(pid) for pid in tree.pids.values())


def test_without_follow_children_the_grandchild_is_neither_traced_nor_dumped(
        prog: Path, tmp_path: Path, trees: list[Tree]) -> None:
    tree = Tree(_cli("run", "--on-crash", "--dir", tmp_path, "--", prog, "tree"), env=_env())
    trees.append(tree)
    assert all(_tracers(tree.pids["READY"]))
    assert _tracers(tree.pids["CHILD"]) == [0]
    assert _tracers(tree.pids["GRANDCHILD"]) == [0, 0]
    tree.crash()
    assert tree.proc.wait(timeout=WAIT) == TREE_EXIT
    assert dumps(tmp_path) == []


def test_fork_exec_loop_then_a_crash_after_exec(prog: Path, tmp_path: Path) -> None:
    """50 runs of /bin/true (fork+exec and posix_spawn's vfork in turn), then a child
    that execs a crashing program: that one is dumped, under its new name."""
    code, out, err = run_cli("run", "--on-crash", "--follow-children", "--dir", tmp_path,
                             "--", prog, "execloop", "50")
    assert code == 5, err  # the target saw its last child die of SIGSEGV
    [dump] = dumps(tmp_path)
    match = re.fullmatch(r"follow_target_(\d+)_\d{8}_\d{6}_crash\.dmp", dump.name)
    assert match, dump.name
    with minidumpkit.open_minidump(dump) as d:
        assert d.process_id == int(match.group(1))
        assert (d.exception.code, d.exception.address) == (signal.SIGSEGV, BAD_ADDRESS)
        assert any(m.name.endswith("follow_target") for m in d.modules)
    assert _top_function(dump) == "exec_crash_here"


@pytest.mark.parametrize("follow", [True, False], ids=["follow", "no-follow"])
def test_a_process_made_by_clone(prog: Path, tmp_path: Path, follow: bool) -> None:
    """clone() without CLONE_THREAD makes a process the kernel reports as a clone, not a
    fork: followed, it is dumped; not followed, it is let go at its first stop."""
    code, out, err = run_cli("run", "--on-crash", *(["--follow-children"] if follow else []),
                             "--dir", tmp_path, "--", prog, "clone")
    assert code == 7, err  # the clone died of SIGSEGV, as without a watcher
    if not follow:
        assert dumps(tmp_path) == []
        return
    [dump] = dumps(tmp_path)
    with minidumpkit.open_minidump(dump) as d:
        assert (d.exception.code, d.exception.address) == (signal.SIGSEGV, BAD_ADDRESS)
        assert f"_{d.process_id}_" in dump.name and len(d.threads) == 1
    assert _top_function(dump) == "clone_crash_here"


def test_children_outliving_the_first_process_are_watched_to_their_end(
        prog: Path, tmp_path: Path) -> None:
    code, out, err = run_cli("run", "--on-crash", "--follow-children", "--dir", tmp_path,
                             "--", prog, "orphan")
    assert code == 6, err  # the first process's own exit code, given once all have ended
    child = int(re.search(r"CHILD pid=(\d+)", out).group(1))  # type: ignore[union-attr]
    [dump] = dumps(tmp_path)
    assert f"_{child}_" in dump.name
    assert _top_function(dump) == "orphan_crash_here"
    wait_until(lambda: _gone(child), "the orphan's end (reaped by init)")


def test_a_deadlocked_child_is_the_hang_not_its_waiting_parent(
        prog: Path, deadlocker: Path, tmp_path: Path) -> None:
    """--on-hang per process: the parent blocked in waitpid for its child is not stuck
    (its child decides); the deadlocked child is dumped, and only its threads."""
    proc = subprocess.Popen(_cli("run", "--on-hang", "1", "--follow-children", "--dir",
                                 tmp_path, "--", prog, "spawn", deadlocker, "deadlock"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())
    try:
        assert proc.stdout is not None
        child = int(re.search(r"READY pid=(\d+)", proc.stdout.readline()).group(1))  # type: ignore[union-attr]
        assert proc.stdout.readline().strip() == "DEADLOCKED"
        wait_until(lambda: bool(dumps(tmp_path)), "a hang dump")
        wait_until(lambda: _traced_by(proc.pid) == [], "the watch to end (-n 1)")
        [dump] = dumps(tmp_path)
        assert re.fullmatch(rf"watch_target_{child}_\d{{8}}_\d{{6}}_hang\.dmp", dump.name)
        with minidumpkit.open_minidump(dump) as d:
            assert d.process_id == child and len(d.threads) == 2
        assert_released(child)
        os.kill(child, signal.SIGKILL)
        assert proc.wait(timeout=WAIT) == 128 + signal.SIGKILL  # spawn: 128 + its signal
    finally:
        for target in _children(proc.pid):  # on a failure: the spawner and the deadlock
            for pid in [*_children(target), target]:
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_sigint_detaches_every_process_of_the_tree(prog: Path, tmp_path: Path,
                                                    trees: list[Tree]) -> None:
    tree = Tree(_cli("run", "--on-crash", "--follow-children", "--dir", tmp_path, "--",
                     prog, "tree"), env=_env())
    trees.append(tree)
    tree.proc.send_signal(signal.SIGINT)  # to the watcher alone
    assert tree.proc.stderr is not None
    assert "interrupted" in tree.proc.stderr.readline()
    for pid in tree.pids.values():
        assert_released(pid)
    tree.crash()  # untraced now: the crash is not dumped, the tree ends as it would
    assert tree.proc.wait(timeout=WAIT) == TREE_EXIT
    assert dumps(tmp_path) == []


def test_watcher_follows_the_children_that_already_run(prog: Path, tmp_path: Path,
                                                       trees: list[Tree]) -> None:
    tree = Tree([str(prog), "tree"])
    trees.append(tree)
    seen: list[watch.DumpWritten] = []
    with watch.Watcher(tree.proc, on_crash=True, follow_children=True, directory=tmp_path,
                       on_dump=seen.append) as w:
        for pid in tree.pids.values():
            wait_until(lambda pid=pid: all(_tracers(pid)), f"process {pid} traced")
        # a dump of a followed child is asked of the watcher, which traces it: routed
        child = tree.pids["CHILD"]
        tids = sorted(int(t) for t in os.listdir(f"/proc/{child}/task"))
        routed = minidumpkit.dump(child, tmp_path / "routed.dmp")
        assert all(_tracers(child)) and _state(child) != "t"  # still traced, running again
        tree.crash()
        assert tree.proc.wait(timeout=WAIT) == TREE_EXIT  # ours to reap, not the watcher's
        assert w.wait(WAIT)
    with minidumpkit.open_minidump(routed) as d:
        assert d.process_id == child and sorted(t.thread_id for t in d.threads) == tids
        assert d.exception is not None and d.exception.requested
    text = lldb_backtraces(routed, prog)  # lldb: as many threads, and "follow_target"
    assert len(re.findall(r"(?m)^\s*\*?\s*thread #\d+", text)) == len(tids), text
    assert "follow_target" in text, text
    [event] = seen
    assert (event.trigger, event.pid) == ("crash", tree.pids["GRANDCHILD"])
    with minidumpkit.open_minidump(event) as d:
        assert (d.exception.code, d.exception.address) == (signal.SIGSEGV, BAD_ADDRESS)


def _traced_by(tracer: int) -> list[str]:
    """Every thread on the machine traced by ``tracer`` (its TracerPid names the tracing
    thread: the watcher's main thread, whose id is its pid)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            for tid in _tracers_by_tid(int(name)):
                if tid[1] == tracer:
                    found.append(f"{name}/{tid[0]}")
    return found


def _tracers_by_tid(pid: int) -> list[tuple[int, int]]:
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    out = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                text = f.read()
        except OSError:
            continue
        out.append((int(tid), int(re.search(r"TracerPid:\s*(\d+)", text).group(1))))  # type: ignore[union-attr]
    return out


def _children(pid: int) -> list[int]:
    return [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                           text=True).stdout.split()]


def test_sigint_in_a_fork_storm_leaves_nothing_traced(prog: Path, tmp_path: Path) -> None:
    """Ctrl-C while children (forked, and vforked by posix_spawn: a vfork parent cannot
    stop before its child has exec'd) come and go: every one is let go."""
    cli = subprocess.Popen(_cli("run", "--on-crash", "--follow-children", "--dir", tmp_path,
                                "--", prog, "execloop", "1000000"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=_env())
    try:
        wait_until(lambda: _children(cli.pid) != [], "the target")
        [target] = _children(cli.pid)
        wait_until(lambda: any(not p.startswith(f"{target}/") for p in _traced_by(cli.pid)),
                   "a traced child of the target")
        cli.send_signal(signal.SIGINT)
        assert cli.stderr is not None
        assert select.select([cli.stderr], [], [], WAIT)[0], "run did not end after SIGINT"
        assert "interrupted" in cli.stderr.readline()
        assert _traced_by(cli.pid) == []
    finally:
        for pid in _children(cli.pid):
            os.kill(pid, signal.SIGKILL)  # the target (its loop never ends)
        cli.communicate(timeout=WAIT)
    assert cli.returncode == -signal.SIGKILL  # run ends as the (killed) target did
    assert dumps(tmp_path) == []
