"""Shared fixtures: the compiled dump targets and a handle on running ones.

The C programs in tests/targets/ are compiled once per session with the system
``cc`` (debug info, frame pointers, a GNU build id) into a temporary directory.
Every process a test starts goes through :func:`start_target` (or the
module-scoped variants), which kills and reaps it when the test ends.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TARGETS = Path(__file__).resolve().parent / "targets"
CFLAGS = ["-g", "-O0", "-fno-omit-frame-pointer", "-pthread", "-Wl,--build-id"]
# Generous bound on waiting for a target to answer: a failure, never a timing assert.
ANSWER_TIMEOUT = 30.0


@pytest.fixture(scope="session")
def target_bins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every tests/targets/*.c compiled: {stem: executable}."""
    cc = shutil.which("cc")
    if cc is None:
        pytest.fail("the system C compiler `cc` is required to build the dump targets")
    out = tmp_path_factory.mktemp("targets")
    bins = {}
    for src in sorted(TARGETS.glob("*.c")):
        exe = out / src.stem
        subprocess.run([cc, *CFLAGS, "-o", str(exe), str(src)], check=True)
        bins[src.stem] = exe
    return bins


class Target:
    """A running target process speaking the READY / command protocol."""

    def __init__(self, argv: list[str], **popen: object) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1, **popen)  # type: ignore[call-overload]
        self.pid: int = self.proc.pid
        line = self._readline()
        if not line.startswith("READY"):
            self.close()
            raise AssertionError(f"target {argv} did not start: {line!r}")
        self.info: dict[str, str] = dict(re.findall(r"(\w+)=(\S+)", line))

    def _readline(self) -> str:
        assert self.proc.stdout is not None
        import selectors

        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(ANSWER_TIMEOUT):
                raise AssertionError(f"target {self.pid} did not answer")
        return self.proc.stdout.readline().strip()

    def int(self, key: str) -> int:
        return int(self.info[key], 0)

    def wait_parked(self, *keys: str) -> None:
        """Wait until each thread named by ``keys`` (READY fields holding tids; no keys: every
        thread) is asleep in
        a system call: READY is printed before the threads reach their final blocking call,
        and a dump taken in between would catch them on the way (e.g. in fflush)."""
        def parked(tid: int) -> bool:
            try:
                call = Path(f"/proc/{self.pid}/task/{tid}/syscall").read_text().split()
                stat = Path(f"/proc/{self.pid}/task/{tid}/stat").read_text()
            except OSError:
                return False
            return bool(call) and call[0] != "running" and stat.rsplit(")", 1)[1].split()[0] == "S"

        if keys:
            tids = {key: self.int(key) for key in keys}
        else:  # every thread of the target
            tids = {f"task {t}": int(t) for t in os.listdir(f"/proc/{self.pid}/task")}
        for key, tid in tids.items():
            wait_until(lambda: parked(tid), f"thread {key} ({tid}) to block in its system call")

    def command(self, cmd: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self._readline()

    def status(self) -> dict[str, int]:
        line = self.command("status")
        assert line.startswith("STATUS"), line
        return {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)", line)}

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGCONT)  # a stopped target must die too
            except ProcessLookupError:
                pass
            self.proc.kill()
        self.proc.wait(timeout=ANSWER_TIMEOUT)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass


@pytest.fixture
def start_target() -> Iterator[Callable[..., Target]]:
    """Factory: start_target(argv) → Target; all are killed and reaped afterwards."""
    started: list[Target] = []

    def start(argv: list[str], **popen: object) -> Target:
        target = Target([str(a) for a in argv], **popen)
        started.append(target)
        return target

    try:
        yield start
    finally:
        for target in started:
            target.close()


def task_states(pid: int) -> dict[int, tuple[str, int]]:
    """{tid: (state letter, TracerPid)} for every thread of ``pid`` ({} once it is gone):
    liveproc's, under the name the older tests use."""
    from liveproc import thread_states

    return thread_states(pid)


def assert_released(pid: int, *, stopped: bool = False) -> None:
    """No thread of ``pid`` is traced; each is running/sleeping (or, if ``stopped``,
    in a job-control stop 'T' — never the tracing stop 't')."""
    states = task_states(pid)
    assert states, f"process {pid} has no threads"
    for tid, (state, tracer) in states.items():
        assert tracer == 0, f"thread {tid} still traced by {tracer}"
        if stopped:
            assert state == "T", f"thread {tid} state {state}, expected T (stopped)"
        else:
            assert state not in ("T", "t"), f"thread {tid} left stopped (state {state})"


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = ANSWER_TIMEOUT) -> None:
    """Poll ``predicate`` until it holds; fail (not a timing assert: a hang guard) if it
    never does."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for: {what}")
        time.sleep(0.005)


def assert_target_healthy(target: Target) -> None:
    """The C target's own self-checks after a dump: the counter thread advances, the
    checksummed memory is unchanged, the thread blocked in read() gets fed data without
    EINTR, and no thread saw EINTR from nanosleep."""
    before = target.status()
    wait_until(lambda: target.status()["counter"] > before["counter"], "counter to advance")
    assert target.command("feed") == "FED"
    wait_until(lambda: target.status()["reader_got"] >= before["reader_got"] + 8,
               "reader thread to receive the fed bytes")
    after = target.status()
    assert after["checksum_ok"] == 1
    assert after["reader_eintr"] == 0
    assert after["sleeper_eintr"] == 0


@pytest.fixture
def live() -> object:
    """The helpers above, for tests: live.task_states, live.assert_released, ..."""
    import types

    return types.SimpleNamespace(task_states=task_states, assert_released=assert_released,
                                 wait_until=wait_until, assert_target_healthy=assert_target_healthy,
                                 Target=Target, python=sys.executable, targets_dir=TARGETS)


@pytest.fixture(scope="session")
def main_dump(target_bins: dict[str, Path],
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One DumpType.MINI dump of a running mdk_target, shared by every test that checks
    a dump's contents (our reader and the independent tools read the same file).

    Yields a namespace: target (still running), path (the .dmp), binary, known_file
    (the path the target holds open), started/ready (wall-clock bounds of its start).
    """
    import types

    import minidumpkit

    work = tmp_path_factory.mktemp("main_dump")
    known_file = work / "known-file.txt"
    started = time.time()
    target = Target([str(target_bins["mdk_target"]), str(known_file)])
    try:
        ready = time.time()
        target.wait_parked("main", "reader", "sleeper", "regs", "futex")
        path = minidumpkit.dump(target.pid, work / "mdk_target.dmp")
        yield types.SimpleNamespace(target=target, path=path, binary=target_bins["mdk_target"],
                                    known_file=known_file, started=started, ready=ready)
    finally:
        target.close()
