"""Helpers shared by the live suites (tests/test_snapshot.py, tests/test_linux_errors.py,
tests/stress/): a target's children (VA clones), whether a process is left stopped or
traced, what a dumper killed at a random moment left behind, the dumping process's own
descriptors and memory, and running code as an unprivileged user.

Plain functions (not fixtures) so that a forked child can use them too.
"""

from __future__ import annotations

import os
import selectors
import time
from collections.abc import Callable
from typing import Any

# The kill hook: a pipe byte and a shared-memory byte per phase change (see PhaseProbe).
PHASES = ("attach", "registers", "clone", "copy", "write")


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, state letter) of every process whose parent is ``pid`` (a VA clone, its
    zombie, or a target's own child)."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    st = f.read()
            except OSError:
                continue
            rest = st[st.rindex(")") + 2:].split()
            if int(rest[1]) == pid:
                out.append((int(name), rest[0]))
    return out


def thread_states(pid: int) -> dict[int, tuple[str, int]]:
    """{tid: (state letter, TracerPid)} of ``pid``'s threads; {} once it is gone."""
    out = {}
    try:
        names = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return {}
    for name in names:
        try:
            with open(f"/proc/{pid}/task/{name}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
        except (FileNotFoundError, ProcessLookupError):  # the thread just ended
            continue
        out[int(name)] = (status["State"].split()[0], int(status["TracerPid"]))
    return out


def held_threads(pid: int, *, stopped_ok: bool = False) -> list[str]:
    """Threads of ``pid`` that are traced, or stopped ('t' always; 'T' unless
    ``stopped_ok``): one "tid state tracer" line each; [] when released (or gone)."""
    bad = []
    for tid, (state, tracer) in thread_states(pid).items():
        if tracer or state == "t" or (state == "T" and not stopped_ok):
            bad.append(f"{tid} {state} tracer={tracer}")
    return bad


def released(pid: int, *, stopped_ok: bool = False) -> bool:
    return not held_threads(pid, stopped_ok=stopped_ok)


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll ``predicate`` for at most ``timeout`` seconds: whether it came true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def clones_ended(pid: int) -> bool:
    """Every child of the target is a zombie (or gone): a killed dumper's clone has died
    of PTRACE_O_EXITKILL (only the target itself can reap it)."""
    return all(state in ("Z", "X") for _, state in children(pid))


def reap_clone_zombies(pid: int) -> int:
    """Reap the clone zombies a killed dumper left in ``pid`` (by the same injected
    wait4 the library uses); the number reaped. Raises if one cannot be reaped."""
    from minidumpkit._backends import _clone

    reaped = 0
    for zombie, state in children(pid):
        if state == "Z":
            if not _clone.reap_clone_zombie(pid, zombie):
                raise AssertionError(f"clone zombie {zombie} of {pid} could not be reaped")
            reaped += 1
    return reaped


def settle_after_killed_dumper(proc: Any, pid: int, inside_window: bool,
                               timeout: float = 30.0) -> dict[str, bool]:
    """What a SIGKILLed dumper left: wait (bounded) for the target to be released and
    for any clone to end. ``proc`` is the target's Popen. A kill inside the clone
    injection window can leave the target running the stub on its own (it dies of the
    int3, documented in docs/snapshots.md), so there we first give it 2 s to die.

    Returns {"alive", "released", "clones_ended"}."""
    if inside_window:
        wait_for(lambda: proc.poll() is not None, 2.0)
    alive = proc.poll() is None
    if not alive:
        return {"alive": False, "released": True, "clones_ended": True}
    return {"alive": True,
            "released": wait_for(lambda: released(pid), timeout),
            "clones_ended": wait_for(lambda: clones_ended(pid), timeout)}


def reap(pid: int, timeout: float = 30.0) -> int:
    """waitpid(``pid``) for at most ``timeout`` seconds, then SIGKILL it (and fail): its
    wait status. Every wait of the live suites is bounded."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError(f"child {pid} did not end within {timeout} s (killed)")
        time.sleep(0.001)


# --- the dumping process's own resources -------------------------------------------------

def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


# --- running code as someone else ------------------------------------------------------

def in_unprivileged_child(fn: Callable[[], object], uid: int = 65534,
                          timeout: float = 60.0) -> tuple[str, str]:
    """Run ``fn()`` in a forked child that dropped to uid/gid ``uid`` (65534: nobody);
    return the (exception class name, message) it raised, or ("", repr(result)) if
    none. Forked, not exec'd: the interpreter's files may not be readable by that user,
    so everything ``fn`` needs must be loaded before (``libc.load()``)."""
    from minidumpkit._ffi import libc

    libc.load()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            value = fn()
            result = f"\0{value!r}"
        except BaseException as exc:  # reported to the parent
            result = f"{type(exc).__name__}\0{exc}"
        os.write(w, result.encode())
        os._exit(0)
    os.close(w)
    chunks = []
    with selectors.DefaultSelector() as sel, os.fdopen(r, "rb", buffering=0) as f:
        sel.register(f, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                reap(pid, 0)
                raise AssertionError(f"the unprivileged child hung for {timeout} s")
            chunk = f.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
    reap(pid, timeout)
    name, _, message = b"".join(chunks).decode().partition("\0")
    return name, message
