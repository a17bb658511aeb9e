"""The ptrace stop protocol: hold every thread of a process still, then let go.

:class:`ProcessStop` seizes every thread (``PTRACE_SEIZE`` with no options, so
the target is never killed if we die, then ``PTRACE_INTERRUPT``), waits for each
stop with ``waitpid(__WALL)``, and rescans ``/proc/PID/task`` until a pass finds no
new thread. :meth:`ProcessStop.detach` releases them all and always runs to the
end (it survives KeyboardInterrupt and re-raises it afterwards).

Why this keeps the target's state intact:

* A thread that was already in a group-stop (the process was SIGSTOPped before we
  came) reports a ``PTRACE_EVENT_STOP`` carrying the stop signal; on
  ``PTRACE_DETACH`` the kernel puts it back into the group-stop
  (``__ptrace_unlink`` re-arms ``JOBCTL_STOP_PENDING`` while the group is
  stopped). We never send SIGCONT.
* A running thread reports ``PTRACE_EVENT_STOP`` with SIGTRAP (our interrupt) and
  simply runs again after detach.
* A thread that dequeued a signal between the seize and the interrupt reports a
  signal-delivery-stop; the signal is handed back on ``PTRACE_DETACH`` so it is
  delivered exactly once. Signals sent while we hold the threads stay queued.
* A thread blocked in a restartable syscall (read, nanosleep, futex) is restarted
  by the kernel after detach; it never sees EINTR. Syscalls that are never
  restarted after a stop (epoll_wait, select with a timeout ... see signal(7))
  return EINTR once, as they do under gdb.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import functools
import os
import signal
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from .._ffi import libc
from .._ffi._errors import check_errno, last_errno
from ..errors import AccessDenied, ProcessError, ProcessNotFound
from . import _procfs

_GROUP_STOP_SIGNALS = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
USER_REGS_SIZE = 216
USER_FPREGS_SIZE = 512
_USER_REGS = struct.Struct("<27Q")
USER_REGS_FIELDS = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
                    "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags",
                    "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs")
# rescans of /proc/PID/task before giving up on a process that keeps spawning threads
MAX_SCAN_ROUNDS = 10_000
# how long detach waits for threads that died under us to report their exit
REAP_SECONDS = 5.0


class _State(enum.Enum):
    SEIZED = 1  # seized and interrupted, stop not yet collected
    STOPPED = 2
    GONE = 3


@functools.cache
def _null() -> object:
    ffi, _ = libc.load()
    return ffi.cast("void *", 0)


def _ptrace(request: int, tid: int, addr: int = 0, data: object = 0) -> int:
    """ptrace(2) with every variadic argument cast, as glibc's prototype requires."""
    ffi, lib = libc.load()
    null = _null()
    if isinstance(data, ffi.CData):
        data_arg = data
    else:
        data_arg = ffi.cast("void *", data) if data else null
    addr_arg = ffi.cast("void *", addr) if addr else null
    return int(lib.ptrace(request, ffi.cast("int", tid), addr_arg, data_arg))


def _waitpid(tid: int, options: int) -> tuple[int, int]:
    """waitpid(tid, __WALL | options); (0, 0) with WNOHANG and nothing to report.

    EINTR is retried here; any Python signal handler (KeyboardInterrupt) has run in
    between, since every cffi call returns to the interpreter.
    """
    ffi, lib = libc.load()
    status = ffi.new("int *")
    while True:
        got = int(lib.waitpid(tid, status, libc.WALL | options))
        if got == -1 and last_errno() == errno.EINTR:
            continue
        check_errno(got, f"waitpid({tid})", tid)
        return got, int(status[0])


def _exited_unreaped(tid: int, *, block: bool) -> bool | None:
    """Peek at ``tid``'s next wait report without collecting it (WNOWAIT), so that an
    exit stays for the process's parent: True for an exit, False for a stop, None if
    there is nothing to report yet (only when not ``block``)."""
    ffi, lib = libc.load()
    info = ffi.new("siginfo_t *")
    options = libc.WEXITED | libc.WSTOPPED | libc.WNOWAIT | libc.WALL
    if not block:
        options |= libc.WNOHANG
    while True:
        rc = int(lib.waitid(libc.P_PID, tid, info, options))
        if rc == -1 and last_errno() == errno.EINTR:
            continue
        check_errno(rc, f"waitid({tid})", tid)
        if info.si_pid == 0:
            return None
        return info.si_code in (libc.CLD_EXITED, libc.CLD_KILLED, libc.CLD_DUMPED)


def _describe(status: int) -> tuple[bool, int, int]:
    """(stopped, signal, event) of a wait status."""
    if status & 0xFF == 0x7F:
        return True, (status >> 8) & 0xFF, status >> 16
    return False, 0, 0


class ProcessStop:
    """Every thread of ``pid`` held in a ptrace-stop until :meth:`detach`.

    Use it as a context manager: ``with ProcessStop(pid) as stop: ...``; entering
    stops the threads, leaving detaches them (always, even after an exception).
    """

    def __init__(self, pid: int, *, ppid: int | None = None) -> None:
        """``ppid``: the target's parent if the caller has just read it (spares a
        /proc/PID/stat read)."""
        self.pid = pid
        self._state: dict[int, _State] = {}
        self._inject: dict[int, int] = {}  # tid → signal to hand back at detach
        self.group_stopped: set[int] = set()  # threads that were in a group-stop
        self.stop_started_ns = 0
        self.stopped_ns = 0
        self.detached_ns = 0
        # tid → perf_counter_ns when it was seized (a thread state sampled before the
        # stop says how long before its own stop it was read)
        self.seized_ns: dict[int, int] = {}
        self._regbuf: Any = None  # reused PTRACE_GETREGSET buffer and iovec
        self._iov: Any = None
        # When we are also the target's parent, its exit status belongs to the code that
        # started it (subprocess.Popen.wait ...): we must never collect it as its tracer.
        if ppid is None:
            try:
                ppid = _procfs.read_stat(pid).ppid
            except ProcessError:
                ppid = 0
        self._we_are_parent = ppid == os.getpid()

    def _leaves_exit_to_parent(self, tid: int) -> bool:
        return tid == self.pid and self._we_are_parent

    # --- stopping -------------------------------------------------------------

    def __enter__(self) -> ProcessStop:
        try:
            self.stop()
        except BaseException:
            self.detach()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    @property
    def tids(self) -> list[int]:
        """Threads held stopped, the main thread first."""
        tids = [tid for tid, st in self._state.items() if st is _State.STOPPED]
        if self.pid in tids:
            tids.remove(self.pid)
            tids.insert(0, self.pid)
        return tids

    def stop(self) -> None:
        """Seize and interrupt every thread, rescanning until no new one appears."""
        self.stop_started_ns = time.perf_counter_ns()
        watch = _SeizeWatch(self)
        try:
            self._stop_all(watch)
        finally:
            watch.close()
            for tid in watch.reaped:
                self._state[tid] = _State.GONE

    def _stop_all(self, watch: _SeizeWatch) -> None:
        for _ in range(MAX_SCAN_ROUNDS):
            try:
                listed = _procfs.task_ids(self.pid)
            except ProcessNotFound:
                self._reap_all()
                raise
            new = [tid for tid in listed if tid not in self._state]
            if not new:
                break
            self._seize(new, watch)
            for tid in watch.take_reaped():
                self._state[tid] = _State.GONE
            self._collect(new)
        else:
            raise ProcessError(errno.EAGAIN, f"process {self.pid} kept creating threads faster "
                               "than they could be stopped; try again", pid=self.pid)
        if not self.tids:
            self._reap_all()
            raise ProcessNotFound(errno.ESRCH, f"process {self.pid} exited while it was being "
                                  "stopped", pid=self.pid)
        self.stopped_ns = time.perf_counter_ns()

    def _seize(self, tids: Iterable[int], watch: _SeizeWatch | None = None) -> None:
        # Seize and interrupt all first, then collect: the stops happen in parallel.
        for tid in tids:
            if watch is not None and self._state:
                with watch.seizing():
                    rc = _ptrace(libc.PTRACE_SEIZE, tid, 0, 0)
            else:
                rc = _ptrace(libc.PTRACE_SEIZE, tid, 0, 0)
            if rc == -1:
                err = last_errno()
                if err == errno.ESRCH or self._is_dead(tid):
                    self._state[tid] = _State.GONE  # exited between the listing and now
                    continue
                if err != errno.EPERM or not self._seized_on_retry(tid):
                    if self._is_dead(tid):  # it was exiting after all: gone
                        self._state[tid] = _State.GONE
                        continue
                    raise _seize_error(self.pid, tid, err)
            self._state[tid] = _State.SEIZED
            self.seized_ns[tid] = time.perf_counter_ns()
            if _ptrace(libc.PTRACE_INTERRUPT, tid) == -1 and last_errno() != errno.ESRCH:
                raise ProcessError.from_errno(last_errno(), f"PTRACE_INTERRUPT of thread {tid}",
                                              pid=self.pid)

    def _seized_on_retry(self, tid: int) -> bool:
        """After an EPERM from a live thread: seize again a few times over ~50 ms. The
        kernel refuses an exiting thread to anyone, and while another thread executes a
        new program the leader's tid is such a thread for a moment, then belongs to the
        executing thread, alive and seizable (found by tests/stress: the leader read as
        alive and well right after the EPERM). A refusal meant for us stays a refusal."""
        for _ in range(5):
            time.sleep(0.01)
            if _ptrace(libc.PTRACE_SEIZE, tid, 0, 0) == 0:
                return True
            if last_errno() == errno.ESRCH:
                return False
        return False

    def _is_dead(self, tid: int) -> bool:
        try:
            return _procfs.read_stat(self.pid, tid).state in ("Z", "X")
        except ProcessError:
            return True

    def _collect(self, tids: Iterable[int]) -> None:
        """Wait for the stop (or the exit) of each seized thread.

        The main thread comes last: if the whole process exits meanwhile, the kernel
        reports the leader's exit only after every other thread is reaped, and the
        threads we seized are ours to reap, so waiting on the leader first could wait
        for ever. A thread other than the leader is always reported at once.
        """
        for tid in sorted(tids, key=lambda t: t == self.pid):
            if self._state.get(tid) is not _State.SEIZED:
                continue
            try:
                if self._leaves_exit_to_parent(tid) and self._leader_gone(tid):
                    self._state[tid] = _State.GONE
                    continue
                if tid == self.pid:
                    polled = self._wait_leader(tid)
                    if polled is None:
                        self._state[tid] = _State.GONE
                        continue
                    status = polled
                else:
                    _, status = _waitpid(tid, 0)
            except ProcessError as exc:
                if exc.errno != errno.ECHILD:
                    raise
                self._state[tid] = _State.GONE
                continue
            self._record(tid, status)

    def _wait_leader(self, tid: int) -> int | None:
        """The main thread's wait status, polled; None once it is a zombie whose report
        is held back: when the process is SIGKILLed while we hold other threads, the
        kernel reports the main thread's exit only after those are reaped (at detach),
        so a blocking wait here would never return."""
        spins = 0
        while True:
            got, status = _waitpid(tid, libc.WNOHANG)
            if got:
                return status
            if self._is_dead(tid):
                got, status = _waitpid(tid, libc.WNOHANG)
                return status if got else None
            spins += 1
            if spins > 20:
                time.sleep(0.0001)

    def _leader_gone(self, tid: int) -> bool:
        """For the main thread of our own child: wait until it reports a stop (False) or
        an exit (True), without collecting an exit (its parent's). Polled, not a blocking
        waitid: when another thread runs execve, the kernel drops the old leader from our
        tracees silently and the pid names the new program's thread, which we did not
        seize; as our child it would satisfy a blocking wait only when it exits."""
        while True:
            peek = _exited_unreaped(tid, block=False)
            if peek is not None:
                return peek
            # TracerPid names the tracing thread, which is this one (not always the
            # main thread: a snapshot may be freed from another thread)
            if not _traced_by(self.pid, tid, threading.get_native_id()):
                return True
            time.sleep(0.0002)

    def _record(self, tid: int, status: int) -> None:
        stopped, sig, event = _describe(status)
        if not stopped:
            self._state[tid] = _State.GONE  # exited or killed; waitpid reaped it
            return
        self._state[tid] = _State.STOPPED
        if event == libc.PTRACE_EVENT_STOP:
            if sig in _GROUP_STOP_SIGNALS:
                self.group_stopped.add(tid)
        elif event == 0 and sig:
            # signal-delivery-stop: the thread dequeued ``sig``; give it back at detach
            self._inject[tid] = sig

    # --- reading registers ----------------------------------------------------

    def _regset(self, tid: int, note: int, size: int) -> bytes:
        ffi, _ = libc.load()
        if self._regbuf is None:
            self._regbuf = ffi.new("char[]", USER_FPREGS_SIZE)
            self._iov = ffi.new("struct iovec *")
        buf, iov = self._regbuf, self._iov
        iov.iov_base = buf
        iov.iov_len = size
        check_errno(_ptrace(libc.PTRACE_GETREGSET, tid, note, iov),
                    f"PTRACE_GETREGSET({note}) of thread {tid}", self.pid)
        if iov.iov_len != size:
            raise ProcessError(errno.EIO, f"PTRACE_GETREGSET({note}) of thread {tid} returned "
                               f"{iov.iov_len} bytes, expected {size}", pid=self.pid)
        return bytes(ffi.buffer(buf, size))

    def general_registers(self, tid: int) -> dict[str, int]:
        """struct user_regs_struct by field name (NT_PRSTATUS)."""
        values = _USER_REGS.unpack(self._regset(tid, libc.NT_PRSTATUS, USER_REGS_SIZE))
        return dict(zip(USER_REGS_FIELDS, values, strict=True))

    def fpu_registers(self, tid: int) -> bytes:
        """The 512-byte FXSAVE image (NT_PRFPREG)."""
        return self._regset(tid, libc.NT_PRFPREG, USER_FPREGS_SIZE)

    def debug_registers(self, tid: int) -> list[int]:
        """u_debugreg[0..7] (PEEKUSER); dr4/dr5 are reserved aliases, not read (0).

        DR7 is read first: when it is 0 no hardware breakpoint or watchpoint is enabled,
        so whatever addresses DR0-DR3 hold take no effect; those four reads are skipped
        and written as 0 (the value of a thread no debugger ever armed). DR6 is always
        read: it carries state even with DR7 clear (the single-step bit, and the
        reserved-ones pattern the kernel reports). Two PEEKUSERs per thread instead of
        six on the common path: a measurable part of the pause on many-thread targets."""
        dr7 = self._peek_debugreg(tid, 7)
        dr6 = self._peek_debugreg(tid, 6)
        if dr7 == 0:
            return [0, 0, 0, 0, 0, 0, dr6, 0]
        return [*(self._peek_debugreg(tid, i) for i in range(4)), 0, 0, dr6, dr7]

    def _peek_debugreg(self, tid: int, i: int) -> int:
        ffi, _ = libc.load()
        ffi.errno = 0
        value = _ptrace(libc.PTRACE_PEEKUSER, tid, libc.USER_DEBUGREG_OFFSET + 8 * i)
        if value == -1 and last_errno():
            raise ProcessError.from_errno(last_errno(), f"PTRACE_PEEKUSER(dr{i}) of thread "
                                          f"{tid}", pid=self.pid)
        return value & 0xFFFF_FFFF_FFFF_FFFF

    # --- letting go -----------------------------------------------------------

    def detach(self) -> None:
        """Release every thread. Idempotent; finishes even if KeyboardInterrupt arrives
        meanwhile (which is re-raised at the end). Threads that died under us are reaped,
        so the target's parent can reap the process normally."""
        deferred: BaseException | None = None
        while True:
            try:
                self._detach_all()
                break
            except KeyboardInterrupt as exc:  # finish releasing first, then honour it
                deferred = exc
        if not self.detached_ns:
            self.detached_ns = time.perf_counter_ns()
        if deferred is not None:
            raise deferred

    def _detach_all(self) -> None:
        # Threads still on their way into the stop must arrive before they can be detached.
        pending = [tid for tid, st in self._state.items() if st is _State.SEIZED]
        try:
            self._collect(pending)
        except ProcessError:
            for tid in pending:
                if self._state[tid] is _State.SEIZED:
                    self._state[tid] = _State.GONE
        dead = []
        for tid, st in list(self._state.items()):
            if st is not _State.STOPPED:
                continue
            sig = self._inject.get(tid, 0)
            if _ptrace(libc.PTRACE_DETACH, tid, 0, sig) == -1:
                # ESRCH: killed (SIGKILL wakes a stopped tracee); its exit is ours to reap
                dead.append(tid)
            self._state[tid] = _State.GONE
        if dead:
            self._reap(dead)

    def _reap(self, tids: list[int]) -> None:
        """Collect the exit reports of dead tracees (without blocking on any one:
        a dead group leader reports only after its other threads are reaped)."""
        left = set(tids)
        deadline = time.monotonic() + REAP_SECONDS
        while left and time.monotonic() < deadline:
            for tid in list(left):
                try:
                    if self._leaves_exit_to_parent(tid):
                        peek = _exited_unreaped(tid, block=False)
                        if peek is None:
                            continue
                        if peek:
                            left.discard(tid)  # the parent (our caller) collects it
                            continue
                    got, status = _waitpid(tid, libc.WNOHANG)
                except ProcessError:
                    left.discard(tid)  # ECHILD: no longer ours
                    continue
                if got == tid and not _describe(status)[0]:
                    left.discard(tid)
                elif got == tid:  # a stop after all: it can be detached now
                    _ptrace(libc.PTRACE_DETACH, tid, 0, 0)
            if left:
                time.sleep(0.001)

    def _reap_all(self) -> None:
        self.detach()


def _traced_by(pid: int, tid: int, tracer: int) -> bool:
    try:
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith("TracerPid:"):
                    return int(line.split()[1]) == tracer
    except (OSError, ValueError):
        return False
    return False


class _SeizeWatch:
    """Breaks the ptrace/execve deadlock while threads are being seized.

    If another thread of the target runs execve while we hold some of its threads,
    execve kills them and waits until their tracer (us) reaps them, holding the
    target's cred_guard_mutex; PTRACE_SEIZE of one more thread waits for that mutex,
    so neither side moves (see ptrace(2), "execve(2) under ptrace"). This thread
    watches the seize calls: one that has not returned after SEIZE_STUCK_SECONDS makes
    it reap our tracees that have exited (a waitpid from any thread of the tracer's
    process collects them), which lets execve, and then the seize, go on. It acts only
    while the main thread is inside PTRACE_SEIZE, so no wait report is taken from
    under the stopping loop; the reaped threads are GONE. Started on first use.
    """

    SEIZE_STUCK_SECONDS = 0.02

    def __init__(self, stop: ProcessStop) -> None:
        self._stop = stop
        self._lock = threading.Lock()
        self._since = 0.0
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self.reaped: set[int] = set()

    @contextlib.contextmanager
    def seizing(self) -> Iterator[None]:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="minidumpkit-seize-watch",
                                            daemon=True)
            self._thread.start()
        with self._lock:
            self._since = time.monotonic()
        try:
            yield
        finally:
            with self._lock:  # waits for a reaping round in progress
                self._since = 0.0

    def take_reaped(self) -> set[int]:
        with self._lock:
            reaped, self.reaped = self.reaped, set()
        return reaped

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._closed.wait(self.SEIZE_STUCK_SECONDS / 4):
            with self._lock:
                if self._since and time.monotonic() - self._since > self.SEIZE_STUCK_SECONDS:
                    self._reap_exited()

    def _reap_exited(self) -> None:
        stop = self._stop
        for tid, state in list(stop._state.items()):
            if state not in (_State.SEIZED, _State.STOPPED) or tid in self.reaped \
                    or tid == stop.pid:  # a leader reports only once the group is empty
                continue
            try:
                if _procfs.read_stat(stop.pid, tid).state not in ("Z", "X"):
                    continue
            except ProcessError:
                pass  # already released: the waitpid below tells
            try:
                got, status = _waitpid(tid, libc.WNOHANG)
            except ProcessError:
                continue
            if got == tid and not _describe(status)[0]:
                self.reaped.add(tid)


def _seize_error(pid: int, tid: int, err: int) -> ProcessError:
    if err == errno.EPERM and _exiting_or_execing(pid, tid):
        # PTRACE_SEIZE refuses a thread that is exiting with EPERM, whoever asks: during
        # another thread's execve the old leader is such a thread (see _readable_...)
        return ProcessError(err, f"thread {tid} of process {pid} could not be traced: it is "
                            "exiting, or another thread is executing a new program (execve); "
                            "try again", pid=pid)
    if err in (errno.EPERM, errno.EACCES):
        return AccessDenied(err, f"not allowed to ptrace thread {tid} of process {pid}: "
                            f"{_PERMISSION_HINT}", pid=pid)
    return ProcessError.from_errno(err, f"PTRACE_SEIZE of thread {tid} of process {pid}", pid=pid)


def _exiting_or_execing(pid: int, tid: int) -> bool:
    """After PTRACE_SEIZE said EPERM: whether that was not a refusal to us but the
    thread exiting (the kernel refuses an exiting thread to anyone; during another
    thread's execve the old leader is one). The thread must be seen ending (gone, a
    zombie or dead within 50 ms), we may read the address space (or it is briefly gone,
    mid-execve), no Yama scope restricts attaching, and nobody else traces the
    process: then a permission problem is ruled out. (Reading the address space alone
    proves nothing: root without CAP_SYS_PTRACE may read another user's auxv, yet not
    trace it.)"""
    deadline = time.monotonic() + 0.05
    while True:
        try:
            if _procfs.read_stat(pid, tid).state in ("Z", "X"):
                break
        except ProcessError:
            break  # gone
        if time.monotonic() > deadline:
            return False  # alive and well: the EPERM was meant for us
        time.sleep(0.005)
    try:
        with open(f"/proc/{pid}/auxv", "rb") as f:
            f.read(16)
    except (FileNotFoundError, ProcessLookupError):
        pass  # mid-execve, or gone
    except OSError:
        return False  # PermissionError: really refused
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            if int(f.read().strip() or 0) > 0 and os.geteuid() != 0:
                return False
    except (OSError, ValueError):
        pass
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("TracerPid:"):
                    return int(line.split()[1]) in (0, os.getpid())
    except (OSError, ValueError):
        return True
    return True


_PERMISSION_HINT = (
    "tracing another process needs the same user id as the target (and a dumpable target), "
    "or CAP_SYS_PTRACE (run as root, or grant the capability); where Yama is enabled, "
    "/proc/sys/kernel/yama/ptrace_scope must allow it (0 = classic rules; 1 = only "
    "descendants, or the target calls prctl(PR_SET_PTRACER, ...))")
