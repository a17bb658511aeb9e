"""Watching a process on Linux: trace it with PTRACE_SEIZE and dump it when a trigger fires.

:class:`LinuxWatch` seizes every thread with ``PTRACE_O_TRACECLONE`` (new threads are
traced from their first instruction) and never stops the process on its own: the
kernel reports to us only signals, clones and job-control stops. A crash signal is
seen at its signal-delivery-stop, before the kernel acts on it; when its disposition
is the default action (/proc/PID/status SigCgt and SigIgn at that moment) the dump is
written while that thread is held there, the others are held with PTRACE_INTERRUPT
(no second PTRACE_SEIZE: :class:`_HeldStop`), then the signal is delivered and the
process dies as it would have. The other triggers are sampled from /proc without
stopping anything (:class:`_Samplers`).

With ``Triggers.follow_children`` the options add ``PTRACE_O_TRACEFORK``,
``TRACEVFORK`` and ``TRACEEXEC``: every process the watched one starts (fork, vfork,
posix_spawn, a clone without CLONE_THREAD), and theirs, is traced from its first
instruction by the kernel itself and gets the same handling, each process on its
own (:class:`_Proc`: its threads, its samplers, its crash). A dump holds only the
threads of the process it is of. An exec starts that process's samplers afresh. The
watch lasts until every watched process has ended. Without it, a process a clone
made (not a thread) is detached at its first stop.

Group-stops (SIGSTOP, Ctrl-Z) are answered with PTRACE_LISTEN, so job control works
as without us. Every path out (the process exits, enough dumps, Ctrl-C, an error)
detaches every thread with the signal it was about to receive handed back.

All ptrace calls are made from one thread: the one that called :meth:`LinuxWatch.attach`.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import os
import re
import signal
import struct
import threading
import time
from collections.abc import Callable
from typing import IO, BinaryIO, cast

from .._capture import CapturedException
from .._ffi import libc
from .._ffi._errors import check_errno, last_errno
from .._triggers import CRASH_SIGNALS, CommandError, Triggers
from ..errors import ProcessError, ProcessNotFound
from ..flags import MiniDumpType
from . import _procfs
from ._ptrace import (
    _GROUP_STOP_SIGNALS,
    ProcessStop,
    _describe,
    _exited_unreaped,
    _ptrace,
    _seize_error,
    _State,
    _waitpid,
)

PTRACE_SETOPTIONS = 0x4200
PTRACE_GETEVENTMSG = 0x4201
PTRACE_GETSIGINFO = 0x4202
PTRACE_O_TRACEFORK = 0x2
PTRACE_O_TRACEVFORK = 0x4
PTRACE_O_TRACECLONE = 0x8
PTRACE_O_TRACEEXEC = 0x10
PTRACE_EVENT_FORK = 1
PTRACE_EVENT_VFORK = 2
PTRACE_EVENT_CLONE = 3
PTRACE_EVENT_EXEC = 4
_NEW_TASK_EVENTS = frozenset({PTRACE_EVENT_FORK, PTRACE_EVENT_VFORK, PTRACE_EVENT_CLONE})
FOLLOW_OPTIONS = PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACEEXEC
# x86-64 system calls in which a parent waits for its children: under follow_children
# a thread blocked in one is not counted as stuck by on_hang (its child decides)
_WAIT_SYSCALLS = frozenset({"61", "247"})  # wait4, waitid
# x86-64 system calls in which a thread waits for a lock (pthread mutexes, rwlocks,
# condition variables, semaphores, CPython's locks): futex, futex_waitv
_LOCK_SYSCALLS = frozenset({"202", "449"})
WNOTHREAD = 0x20000000  # __WNOTHREAD: only this thread's children and tracees
# siginfo_t on x86-64: si_signo, si_errno, si_code, padding, then the union (si_addr first)
_SIGINFO_HEAD = struct.Struct("<iiiiQ")
# Signals whose si_addr is the faulting address (Breakpad's and Crashpad's choice); for
# the others the exception address is the thread's pc.
_ADDRESS_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL,
                              signal.SIGTRAP})
# How often the /proc triggers are sampled, and the longest idle sleep between two
# looks for ptrace reports (a report waits at most this long to be handled).
SAMPLE_SECONDS = 0.25
MAX_IDLE_SECONDS = 0.02
# A dump waits this long for each thread of the process to stop; one that has not (a
# vfork parent whose child is held elsewhere) is left out of the dump.
HOLD_SECONDS = 2.0

WriteFn = Callable[[IO[bytes], MiniDumpType, bool], object]
"""write(out, dump_type, all_memory): writes the held process to ``out``; its ``pid``
attribute names that process (with follow_children, not always the first one)."""
DumpHandler = Callable[[str, WriteFn], None]
"""on_dump(trigger, write): called when a trigger fires; calls write at most once."""
SampleHandler = Callable[[str, WriteFn], bool]
"""on_sample(trigger, write): a lock sample (on_hang's second rule): calls write once and
analyses the dump; publishes it as a dump of ``trigger`` and returns True if it holds a
lock cycle, else discards it and returns False."""


@dataclasses.dataclass(frozen=True)
class SignalInfo:
    signo: int
    code: int
    address: int


def _siginfo(tid: int) -> SignalInfo | None:
    ffi, _ = libc.load()
    buf = ffi.new("char[]", 128)
    if _ptrace(PTRACE_GETSIGINFO, tid, 0, buf) == -1:
        return None
    signo, _errno, code, _pad, address = _SIGINFO_HEAD.unpack(ffi.buffer(buf, 24)[:])
    return SignalInfo(signo, code, address)


def _event_message(tid: int) -> int:
    ffi, _ = libc.load()
    out = ffi.new("unsigned long *")
    if _ptrace(PTRACE_GETEVENTMSG, tid, 0, out) == -1:
        return 0
    return int(out[0])


def _signal_mask(status: dict[str, str], key: str) -> int:
    try:
        return int(status.get(key, "0"), 16)
    except ValueError:
        return 0


def disposition(pid: int, sig: int) -> str:
    """``"caught"``, ``"ignored"`` or ``"default"``: what ``pid`` does with ``sig`` now."""
    status = _procfs.parse_status(_procfs.read_text(f"/proc/{pid}/status", pid))
    bit = 1 << (sig - 1)
    if _signal_mask(status, "SigCgt") & bit:
        return "caught"
    if _signal_mask(status, "SigIgn") & bit:
        return "ignored"
    return "default"


def _synthetic_status(info: object) -> int:
    """A wait status rebuilt from a WNOWAIT waitid report (the exit is left unreaped)."""
    code, value = int(info.si_code), int(info.si_status)  # type: ignore[attr-defined]
    if code == libc.CLD_EXITED:
        return (value & 0xFF) << 8
    return (value & 0x7F) | (0x80 if code == libc.CLD_DUMPED else 0)


@dataclasses.dataclass
class _Proc:
    """One watched process: its samplers and the per-process state of its triggers."""

    pid: int
    ppid: int | None  # None: read from /proc when a dump needs it
    samplers: _Samplers | None = None
    dying: bool = False  # a fatal signal was delivered: wait for the exit
    last_fired: dict[str, float] = dataclasses.field(default_factory=dict)


def _is_zombie(tid: int) -> bool:
    stat = _procfs.try_read_bytes(f"/proc/{tid}/stat")
    return stat is None or stat[stat.rindex(b")") + 2:][:1] in (b"Z", b"X")


#: A wait status for a tracee found in a ptrace-stop with no report left to collect:
#: stopped, no signal to pass on, no event.
_STOPPED_WITHOUT_REPORT = 0x7F


def _in_trace_stop(tid: int) -> bool:
    """Whether thread ``tid`` is in a ptrace-stop (state ``t`` in /proc/TID/stat)."""
    stat = _procfs.try_read_bytes(f"/proc/{tid}/stat")
    return stat is not None and stat[stat.rindex(b")") + 2:][:1] == b"t"


def _tgid(tid: int) -> int:
    """The process (thread group) of thread ``tid``; ``tid`` itself if unreadable."""
    text = _procfs.try_read_bytes(f"/proc/{tid}/status")
    if text is not None:
        match = re.search(rb"(?m)^Tgid:\s*(\d+)", text)
        if match:
            return int(match.group(1))
    return tid


class LinuxWatch:
    """Trace ``pid`` and call ``on_dump`` each time a trigger of ``triggers`` fires.

    ``reap_leader``: we are the process's parent and collect its exit status
    (``minidumpkit run``); otherwise its exit is left unreaped for its parent (a
    ``subprocess.Popen`` of the caller). With ``triggers.follow_children`` every
    process it starts is watched too; :attr:`exit_status` stays the first process's.
    """

    def __init__(self, pid: int, triggers: Triggers, on_dump: DumpHandler, *,
                 reap_leader: bool = False,
                 on_error: Callable[[BaseException], object] | None = None,
                 on_sample: SampleHandler | None = None) -> None:
        self.pid = pid
        self.triggers = triggers
        self.on_dump = on_dump
        # The lock analysis of on_hang's lock rule is the caller's (a callback): the
        # backends sit under the analysis layer and never import it.
        self.on_sample = on_sample
        self.lock_samples = 0  # sampled dumps taken for the lock rule (kept or not)
        self.on_error = on_error
        self.reap_leader = reap_leader
        self.follow = bool(getattr(triggers, "follow_children", False))
        self.options = PTRACE_O_TRACECLONE | (FOLLOW_OPTIONS if self.follow else 0)
        self.ppid = 0
        self.dumps = 0
        self.exit_status: int | None = None  # the leader's wait status, once it exited
        self.finished = False  # every watched process is gone: nothing left to detach
        self.detached = False
        self.processes_seen = 0  # processes watched in all (the first one included)
        self._known: dict[int, int] = {}  # threads we trace → their process (tgid)
        self._procs: dict[int, _Proc] = {}  # the processes we watch, by pid
        self._listening: set[int] = set()  # in a group-stop, released with PTRACE_LISTEN
        self._held_signal: dict[int, int] = {}  # stopped at a signal we have not passed on
        self._queue: collections.deque[tuple[int, int]] = collections.deque()
        self._want_detach = False

    # --- attaching ------------------------------------------------------------

    def attach(self) -> None:
        """Seize every thread (rescanning /proc/PID/task until no new one appears);
        with follow_children, then every descendant process that already exists."""
        try:
            self.ppid = _procfs.read_stat(self.pid).ppid
            status = _procfs.parse_status(_procfs.read_text(f"/proc/{self.pid}/status",
                                                            self.pid))
        except ProcessError:
            raise ProcessNotFound(errno.ESRCH, f"process {self.pid} exited", pid=self.pid) \
                from None
        tracer = int(status.get("TracerPid", "0") or 0)
        if tracer and tracer != threading.get_native_id():
            from .linux import _already_traced  # (one tracer per process: say whose)

            raise _already_traced(self.pid, status.get("Name", "?"), tracer)
        self._add_process(self.pid, self.ppid)
        self._seize_process(self.pid)
        if self.follow:
            self._seize_descendants()

    def _add_process(self, pid: int, ppid: int | None) -> _Proc:
        proc = _Proc(pid, ppid)
        proc.samplers = self._samplers_for(pid)
        self._procs[pid] = proc
        self.processes_seen += 1
        return proc

    def _samplers_for(self, pid: int) -> _Samplers | None:
        t = self.triggers
        if pid != self.pid and t.heartbeat is not None:
            t = dataclasses.replace(t, on_hang=None, heartbeat=None)  # the first process's
        if t.on_hang is None and t.cpu is None and t.memory_mb is None and t.threads is None \
                and t.fds is None and t.timer is None:
            return None
        samplers = _Samplers(pid, t, skip_waits=self.follow)
        samplers.lock_samples = t.on_hang is not None and self.on_sample is not None
        return samplers

    def _seize_process(self, pid: int, *, strict: bool = True) -> None:
        for _ in range(10_000):
            try:
                tids = _procfs.task_ids(pid)
            except ProcessError:
                if strict and pid == self.pid and not self._known:
                    raise ProcessNotFound(errno.ESRCH, f"process {pid} exited",
                                          pid=pid) from None
                return
            new = [tid for tid in tids if tid not in self._known]
            if not new:
                break
            for tid in new:
                if not self._seize(tid, pid, strict=strict) and not strict:
                    return

    def _seize(self, tid: int, tgid: int, *, strict: bool = True) -> bool:
        if _ptrace(libc.PTRACE_SEIZE, tid, 0, self.options) == -1:
            err = last_errno()
            if err == errno.ESRCH:
                if tid == self.pid and strict:
                    raise ProcessNotFound(errno.ESRCH, f"process {self.pid} exited",
                                          pid=self.pid)
                return True
            if err == errno.EPERM and (tid in self._known or self._traced_by_us(tgid, tid)):
                self._known[tid] = tgid  # already ours (auto-attached by a clone or fork)
                return True
            if not strict:
                return False  # a descendant we may not trace: left alone
            self.detach()
            raise _seize_error(self.pid, tid, err)
        self._known[tid] = tgid
        return True

    def _traced_by_us(self, pid: int, tid: int) -> bool:
        status = _procfs.try_read_bytes(f"/proc/{pid}/task/{tid}/status")
        if status is None:
            return False
        match = re.search(rb"(?m)^TracerPid:\s*(\d+)", status)
        return bool(match) and int(match.group(1)) == threading.get_native_id()  # type: ignore[union-attr]

    def _seize_descendants(self) -> None:
        """The processes the watched one started before we came, and theirs (a fork
        made from now on is attached by the kernel)."""
        for _ in range(100):
            children: dict[int, int] = {}
            for name in os.listdir("/proc"):
                if name.isdigit() and int(name) not in self._procs:
                    try:
                        ppid = _procfs.read_stat(int(name)).ppid
                    except ProcessError:
                        continue
                    if ppid in self._procs:
                        children[int(name)] = ppid
            if not children:
                return
            for pid, ppid in children.items():
                self._add_process(pid, ppid)
                self._seize_process(pid, strict=False)
                if not any(g == pid for g in self._known.values()):
                    del self._procs[pid]  # gone, or not ours to trace (another tracer)
                    self.processes_seen -= 1

    def _adopt(self, tid: int, tgid: int | None = None) -> bool:
        """A thread we trace but did not know: a new thread of a process we watch, or
        (follow_children) the first thread of a new process. False: not ours to watch
        (a process a clone made, without follow_children)."""
        if tgid is None:
            tgid = _tgid(tid)
        if tgid not in self._procs:
            if not self.follow or tgid != tid:
                return False
            self._add_process(tgid, None)
        self._known[tid] = tgid
        return True

    # --- the loop -------------------------------------------------------------

    def run(self, should_stop: Callable[[], bool] = lambda: False,
            wait_idle: Callable[[float], object] | None = None,
            serve: tuple[int, Callable[[], object]] | None = None) -> None:
        """Handle reports and sample triggers until every watched process is gone,
        ``count`` dumps are written or ``should_stop()``; every thread is detached on
        the way out (also on an exception or KeyboardInterrupt).

        ``wait_idle(seconds)``: how to wait when there is nothing to do, at most that
        long; it must return early when a ptrace report may be waiting (a caller that
        turns SIGCHLD into a wake-up: no report waits for a poll). It runs on the
        tracing thread, so it may call :meth:`write_requested`. ``serve`` = (fd,
        handler): the wait also ends when fd is readable, and handler is called (on the
        tracing thread); it polls with growing sleeps (at most MAX_IDLE_SECONDS).
        Otherwise the loop sleeps in sigtimedwait(SIGCHLD), which the kernel sends us at
        each tracee stop, when nobody else in this process handles SIGCHLD (its
        disposition is the default); failing that it polls with growing sleeps."""
        idle = 0.0005
        next_sample = time.monotonic()
        wake = _SigchldWait.start()
        try:
            while not self.finished and not self._want_detach and not should_stop():
                if self._queue:
                    self._handle(*self._queue.popleft())
                    continue
                report = self._next_report()
                if report is not None:
                    self._handle(*report)
                    idle = 0.0005
                    continue
                now = time.monotonic()
                if now >= next_sample:
                    self._sample(now)
                    next_sample = now + SAMPLE_SECONDS
                    continue
                if wait_idle is not None:
                    wait_idle(max(0.0, next_sample - now))
                    continue
                if wake is not None:
                    # (with a dump-request socket: looked at between waits, so SIGCHLD
                    # still ends every wait at once; a request waits at most one wait)
                    if serve is not None and _readable(serve[0], 0.0):
                        serve[1]()
                        continue
                    wake.wait(min(MAX_IDLE_SECONDS, max(0.0, next_sample - now)))
                    continue
                delay = min(idle, max(0.0, next_sample - now))
                if serve is None:
                    time.sleep(delay)
                elif _readable(serve[0], delay):
                    serve[1]()
                idle = min(idle * 2, MAX_IDLE_SECONDS)
        finally:
            try:
                if not self.finished:
                    self.detach()
            finally:
                if wake is not None:
                    wake.stop()

    def _next_report(self) -> tuple[int, int] | None:
        ffi, lib = libc.load()
        info = ffi.new("siginfo_t *")
        options = (libc.WEXITED | libc.WSTOPPED | libc.WNOWAIT | libc.WNOHANG | libc.WALL
                   | WNOTHREAD)
        while True:
            rc = int(lib.waitid(0, 0, info, options))  # P_ALL
            if rc == -1 and last_errno() == errno.EINTR:
                continue
            break
        if rc == -1:
            if last_errno() == errno.ECHILD:  # nothing traced any more
                self.finished = True
                return None
            check_errno(rc, "waitid", self.pid)
        tid = int(info.si_pid)
        if tid == 0:
            return None
        if tid == self.pid and not self.reap_leader and info.si_code in (
                libc.CLD_EXITED, libc.CLD_KILLED, libc.CLD_DUMPED):
            return tid, _synthetic_status(info)  # its parent collects it
        got, status = _waitpid(tid, libc.WNOHANG)
        return (tid, status) if got == tid else None

    def _handle(self, tid: int, status: int) -> None:
        stopped, sig, event = _describe(status)
        if not stopped:
            self._gone(tid, status)
            return
        if tid not in self._known and not self._adopt(tid):
            # a process a clone made, not followed: let it go with what it stopped for
            _ptrace(libc.PTRACE_DETACH, tid, 0, sig if event == 0 else 0)
            return
        if event in _NEW_TASK_EVENTS:
            new = _event_message(tid)
            if new and new not in self._known:
                parent = self._known[tid]
                if os.path.exists(f"/proc/{parent}/task/{new}"):
                    self._known[new] = parent  # a thread (its first stop may come later)
                elif self.follow:
                    self._adopt(new, new)  # a new process
            self._cont(tid, 0)
        elif event == PTRACE_EVENT_EXEC:
            self._exec(tid)
            self._cont(tid, 0)
        elif event == libc.PTRACE_EVENT_STOP:
            if sig in _GROUP_STOP_SIGNALS:  # job control: stay stopped until SIGCONT
                if _ptrace(libc.PTRACE_LISTEN, tid) != -1:
                    self._listening.add(tid)
            else:  # our interrupt, a new thread's first stop, or SIGCONT after a LISTEN
                self._listening.discard(tid)
                self._cont(tid, 0)
        elif event:
            self._cont(tid, 0)
        else:
            self._held_signal[tid] = sig
            self._on_signal(tid, sig)

    def _exec(self, tid: int) -> None:
        """A process ran execve: the thread that did now has the process's id (its
        former id, if another, is gone); its samplers start afresh."""
        former = _event_message(tid)
        tgid = self._known.get(tid, tid)
        if former and former != tid:
            self._known.pop(former, None)
            self._listening.discard(former)
            self._held_signal.pop(former, None)
        proc = self._procs.get(tgid)
        if proc is not None:
            proc.samplers = self._samplers_for(tgid)

    def _gone(self, tid: int, status: int) -> None:
        tgid = self._known.pop(tid, tid)
        self._listening.discard(tid)
        self._held_signal.pop(tid, None)
        if tid != tgid or tid not in self._procs:
            return  # a thread; its process lives on
        del self._procs[tid]
        for other in [t for t, g in self._known.items() if g == tid]:
            del self._known[other]  # (reported before the leader: none left, normally)
        if tid == self.pid:
            self.exit_status = status
        if not self.follow or not self._procs:
            self.finished = True

    def _cont(self, tid: int, sig: int) -> None:
        self._held_signal.pop(tid, None)
        _ptrace(libc.PTRACE_CONT, tid, 0, sig)  # ESRCH: killed meanwhile; its exit follows

    def _on_signal(self, tid: int, sig: int) -> None:
        t = self.triggers
        tgid = self._known.get(tid, tid)
        if t.on_crash and sig in CRASH_SIGNALS:
            try:
                fatal = disposition(tgid, sig) == "default"
            except ProcessError:
                fatal = False
            if fatal or t.first_chance:
                info = _siginfo(tid)
                code, address = (info.code, info.address) if info is not None else (0, 0)
                if sig not in _ADDRESS_SIGNALS or code <= 0:
                    address = self._pc(tgid, tid)  # sent by a process (kill, abort): no fault address
                self._dump("crash" if fatal else "first-chance", tgid, held=tid,
                           always=fatal,
                           exception=CapturedException(thread_id=tid, code=sig, flags=code,
                                                       address=address))
            if fatal:
                proc = self._procs.get(tgid)
                if proc is not None:
                    proc.dying = True
                self._want_detach = False  # stay until the exit, to reap it
            self._cont(tid, sig)
            return
        if t.signal is not None and sig == t.signal:
            self._dump("signal", tgid, held=tid, exception=CapturedException(thread_id=tid),
                       always=True)
            try:
                handled = disposition(tgid, sig) == "caught"
            except ProcessError:
                handled = False
            self._cont(tid, sig if handled else 0)  # unhandled: its default would kill it
            return
        self._cont(tid, sig)

    def _ppid(self, tgid: int) -> int | None:
        proc = self._procs.get(tgid)
        return self.ppid if tgid == self.pid else (proc.ppid if proc else None)

    def _pc(self, tgid: int, tid: int) -> int:
        try:
            return ProcessStop(tgid, ppid=self._ppid(tgid)).general_registers(tid)["rip"]
        except ProcessError:
            return 0

    # --- dumping --------------------------------------------------------------

    def _dump(self, trigger: str, tgid: int, *, held: int | None = None,
              exception: CapturedException | None = None, always: bool = False) -> None:
        """Write one dump of process ``tgid`` unless ``count`` are written (or, unless
        ``always``, this trigger fired for it less than ``interval`` ago)."""
        now = time.monotonic()
        if self.dumps >= self.triggers.count and trigger != "crash":
            return  # (a crash is always dumped: it is the last thing the process does)
        proc = self._procs.get(tgid)
        if proc is None:
            return
        last = proc.last_fired.get(trigger)
        if not always and last is not None and now - last < self.triggers.repeat_after():
            return
        proc.last_fired[trigger] = now
        self.dumps += 1
        stop = _HeldStop(self, tgid, held)
        write = _HeldWrite(tgid, stop, exception)
        try:
            self.on_dump(trigger, write)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001  reported; the watch goes on
            if self.on_error is None:
                raise
            self.on_error(exc)
        if self.dumps >= self.triggers.count and not self.triggers.on_crash \
                and not any(p.dying for p in self._procs.values()):
            self._want_detach = True  # (with on_crash: watch for a crash only)
        if proc.samplers is not None:
            proc.samplers.after_dump(time.monotonic())

    def write_requested(self, out: IO[bytes], dump_type: MiniDumpType, all_memory: bool,
                        requesting_tid: int | None = None, python: bool = True, *,
                        pid: int | None = None) -> object:
        """Write a requested dump of process ``pid`` (default: the watched one; with
        follow_children, any process we trace) to ``out`` now (a dump() routed to this
        tracer): the threads of that process alone are held with PTRACE_INTERRUPT, no
        second PTRACE_SEIZE. ``requesting_tid``: the thread the Exception stream names
        (DUMP_REQUESTED), if it is one of that process; else its main thread. Call it
        from the tracing thread, between two reports (``wait_idle``). Triggers and
        ``count`` are not involved."""
        from .linux import write_held_dump

        target = self.pid if pid is None else pid
        if self.finished or target not in self._procs:
            if target == self.pid or not self.follow:
                detail = "exited" if target == self.pid else "is not the process it watches"
            else:
                detail = "is not one it traces (it exited?)"
            raise ProcessNotFound(errno.ESRCH, f"process {target} cannot be dumped by the "
                                  f"minidumpkit tracer that held it: it {detail}", pid=target)
        tid = requesting_tid if requesting_tid is not None \
            and self._known.get(requesting_tid) == target else target
        stop = _HeldStop(self, target, None)
        times = write_held_dump(target, stop, cast(BinaryIO, out), dump_type,
                                exception=CapturedException(thread_id=tid),
                                all_memory=all_memory, python=python)
        proc = self._procs.get(target)
        if proc is not None and proc.samplers is not None:
            proc.samplers.after_dump(time.monotonic())
        return times

    def traces(self, pid: int) -> bool:
        """Whether process ``pid`` is one this watch traces now."""
        return not self.finished and pid in self._procs

    def _sample(self, now: float) -> None:
        if self.dumps >= self.triggers.count:
            return
        for proc in list(self._procs.values()):
            if proc.samplers is None or proc.dying:
                continue
            try:
                fired = proc.samplers.poll(now)
            except ProcessError:
                continue  # exiting: its exit report comes next
            for trigger in fired:
                self._dump(trigger, proc.pid)
                if self._want_detach or self.finished:
                    return
            if not fired and proc.samplers.lock_due:
                self._lock_sample(proc)
                if self._want_detach or self.finished:
                    return

    def _lock_sample(self, proc: _Proc) -> None:
        """on_hang's lock rule: threads of ``proc`` have waited on locks for on_hang
        seconds (the first rule did not fire). Hold it and write a sampled dump;
        ``on_sample`` analyses it and keeps it as the hang dump (no second dump is
        taken) if it has a lock cycle, else drops it."""
        assert self.on_sample is not None and proc.samplers is not None
        now = time.monotonic()
        last = proc.last_fired.get("hang")
        if last is not None and now - last < self.triggers.repeat_after():
            return
        self.lock_samples += 1
        write = _HeldWrite(proc.pid, _HeldStop(self, proc.pid, None), None)
        try:
            kept = self.on_sample("hang", write)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001  reported; the watch goes on
            if self.on_error is None:
                raise
            self.on_error(exc)
            kept = False
        if not kept:
            proc.samplers.after_sample()
            return
        proc.last_fired["hang"] = time.monotonic()
        self.dumps += 1
        if self.dumps >= self.triggers.count and not self.triggers.on_crash \
                and not any(p.dying for p in self._procs.values()):
            self._want_detach = True
        proc.samplers.after_dump(time.monotonic())

    def hold(self, tgid: int, except_tid: int | None, state: dict[int, _State]) -> list[int]:
        """Interrupt every running thread of process ``tgid`` and wait until each is
        stopped; fill ``state`` with the stopped ones. Reports other than our interrupt
        are queued for the loop. Returns the threads to resume with :meth:`release`."""
        mine = [tid for tid, g in self._known.items() if g == tgid]
        already = ({t for t in self._held_signal if t in mine}
                   | {t for t, _ in self._queue if t in mine})
        targets = [tid for tid in mine if tid != except_tid and tid not in already]
        for tid in targets:
            _ptrace(libc.PTRACE_INTERRUPT, tid)
        resume = []
        for tid, status in self._await_stops(targets, holding=tgid,
                                             give_up_after=HOLD_SECONDS):
            if status is None:
                self._gone(tid, 0)
                continue
            stopped, sig, event = _describe(status)
            if not stopped:
                self._gone(tid, status)
                continue
            state[tid] = _State.STOPPED
            if event == libc.PTRACE_EVENT_STOP and sig not in _GROUP_STOP_SIGNALS:
                resume.append(tid)
            else:
                self._queue.append((tid, status))
        for tid in already | ({except_tid} if except_tid is not None else set()):
            if tid in self._known:
                state[tid] = _State.STOPPED
        return resume

    def _await_stops(self, targets: list[int], *, detaching: bool = False,
                     holding: int | None = None,
                     give_up_after: float | None = None) -> list[tuple[int, int | None]]:
        """Collect the next report of each of ``targets`` (interrupted): (tid, wait
        status), or (tid, None) for one that is gone. Polled, not a blocking wait on
        each in turn: a thread in vfork() cannot stop before its child (another of our
        tracees) has run on to its exec, so the reports of tracees other than
        ``targets`` are served meanwhile (:meth:`_serve_other`). A leader that is a
        zombie (waiting for its other threads) is left out, and with ``give_up_after``
        so is a thread that has not stopped by then (it reports to the loop later)."""
        pending = list(targets)
        results: list[tuple[int, int | None]] = []
        deadline = None if give_up_after is None else time.monotonic() + give_up_after
        idle = 0
        while pending:
            progressed = False
            for tid in list(pending):
                try:
                    got, status = self._poll(tid)
                except ProcessError:
                    got, status = tid, None
                if got:
                    pending.remove(tid)
                    results.append((tid, status))
                    progressed = True
            if not pending or progressed:
                idle = 0
                continue
            if self._serve_other(set(pending), detaching, holding):
                idle = 0
                continue
            idle += 1
            if idle % 64 == 0:
                pending = [t for t in pending if not (self._known.get(t) == t
                                                      and _is_zombie(t))]
                if detaching and idle % 256 == 0:
                    # A tracee already in a ptrace-stop whose report was taken earlier
                    # reports nothing more to our interrupt, and a vfork parent cannot
                    # stop until its child (maybe one we never heard of) runs on: let
                    # such tracees go from the stop they are in (found by Ctrl-C in a
                    # fork storm under load: detach waited for ever on the parent)
                    for tid in [t for t in pending if _in_trace_stop(t)]:
                        pending.remove(tid)
                        results.append((tid, _STOPPED_WITHOUT_REPORT))
                    for tid in self._stray_tracees() - set(pending):
                        if _in_trace_stop(tid):
                            _ptrace(libc.PTRACE_DETACH, tid, 0, 0)
                            self._known.pop(tid, None)
                            self._listening.discard(tid)
                if deadline is not None and time.monotonic() > deadline:
                    break
            if idle > 16:
                time.sleep(0.0002)
        return results

    def _poll(self, tid: int) -> tuple[int, int]:
        if tid == self.pid and not self.reap_leader:
            peek = _exited_unreaped(tid, block=False)
            if peek is None:
                return 0, 0
            if peek:
                ffi, lib = libc.load()
                info = ffi.new("siginfo_t *")
                lib.waitid(libc.P_PID, tid, info, libc.WEXITED | libc.WNOWAIT | libc.WALL)
                return tid, _synthetic_status(info)
        return _waitpid(tid, libc.WNOHANG)

    def _serve_other(self, pending: set[int], detaching: bool, holding: int | None) -> bool:
        """Collect one report of a tracee outside ``pending``, if any: while detaching,
        let it go at once; else continue a new task's first stop (a vfork child must
        run on to its exec) unless it is a thread of process ``holding`` (held for a
        dump), and queue anything else for the loop. True if one was."""
        ffi, lib = libc.load()
        info = ffi.new("siginfo_t *")
        options = (libc.WEXITED | libc.WSTOPPED | libc.WNOWAIT | libc.WNOHANG | libc.WALL
                   | WNOTHREAD)
        if int(lib.waitid(0, 0, info, options)) == -1:
            return False
        tid = int(info.si_pid)
        if tid == 0 or tid in pending or (tid == self.pid and not self.reap_leader):
            return False
        got, status = _waitpid(tid, libc.WNOHANG)
        if got != tid:
            return False
        stopped, sig, event = _describe(status)
        if not stopped:
            if detaching:
                self._gone(tid, status)
            else:
                self._queue.append((tid, status))
            return True
        if detaching:
            if event in _NEW_TASK_EVENTS:
                new = _event_message(tid)
                if new:
                    self._known.setdefault(new, _tgid(new))
            _ptrace(libc.PTRACE_DETACH, tid, 0, sig if event == 0 else 0)
            self._known.pop(tid, None)
            self._listening.discard(tid)
            self._held_signal.pop(tid, None)
            return True
        if event == libc.PTRACE_EVENT_STOP and sig not in _GROUP_STOP_SIGNALS \
                and tid not in self._held_signal \
                and self._known.get(tid, _tgid(tid)) != holding:
            if tid in self._known or self._adopt(tid):
                self._cont(tid, 0)  # a new task's first stop
            else:
                _ptrace(libc.PTRACE_DETACH, tid, 0, 0)
            return True
        self._queue.append((tid, status))
        return True

    def release(self, tids: list[int]) -> None:
        for tid in tids:
            self._listening.discard(tid)
            _ptrace(libc.PTRACE_CONT, tid, 0, 0)

    # --- detaching ------------------------------------------------------------

    def detach(self) -> None:
        """Let every thread go, each with the signal it was stopped at. Idempotent;
        finishes even if KeyboardInterrupt arrives meanwhile (re-raised at the end)."""
        deferred: BaseException | None = None
        while True:
            try:
                self._detach_all()
                break
            except KeyboardInterrupt as exc:
                deferred = exc
        self.detached = True
        if deferred is not None:
            raise deferred

    def _detach_all(self) -> None:
        for _ in range(100):
            while self._queue:  # stopped with a report not yet acted on
                tid, status = self._queue.popleft()
                stopped, sig, event = _describe(status)
                if not stopped:
                    self._gone(tid, status)
                elif event == 0 and sig:
                    self._held_signal[tid] = sig
                else:
                    self._held_signal.setdefault(tid, 0)
            for tid, sig in list(self._held_signal.items()):
                _ptrace(libc.PTRACE_DETACH, tid, 0, sig)
                self._known.pop(tid, None)
                self._listening.discard(tid)
            self._held_signal.clear()
            if not self._known:
                stray = self._stray_tracees()
                if not stray:
                    break
                for tid in stray:
                    self._known.setdefault(tid, _tgid(tid))
            tids = list(self._known)
            for tid in tids:
                _ptrace(libc.PTRACE_INTERRUPT, tid)
            for tid, report in self._await_stops(tids, detaching=True):
                if report is None:
                    self._gone(tid, 0)
                    continue
                stopped, sig, event = _describe(report)
                if not stopped:
                    self._gone(tid, report)
                    continue
                if event in _NEW_TASK_EVENTS:  # the new task's first stop comes next round
                    new = _event_message(tid)
                    if new:
                        self._known.setdefault(new, _tgid(new))
                inject = sig if event == 0 else 0
                _ptrace(libc.PTRACE_DETACH, tid, 0, inject)
                self._known.pop(tid, None)
                self._listening.discard(tid)
            for tid in self._stray_tracees():
                self._known.setdefault(tid, _tgid(tid))
        self.finished = self.finished or not self._known

    def _stray_tracees(self) -> set[int]:
        """Threads still traced by us that we did not know of (a clone or a fork we
        had not heard about yet): of the watched process, or with follow_children of
        any process."""
        me = threading.get_native_id()  # TracerPid names the tracing thread
        stray: set[int] = set()
        pids = [p for p in os.listdir("/proc") if p.isdigit()] if self.follow \
            else [str(self.pid)]
        for pid in pids:
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                status = _procfs.try_read_bytes(f"/proc/{pid}/task/{tid}/status")
                if status is None:
                    continue
                match = re.search(rb"(?m)^TracerPid:\s*(\d+)", status)
                if match and int(match.group(1)) == me:
                    stray.add(int(tid))
        return stray


class _SigchldWait:
    """SIGCHLD blocked on the calling thread and waited for with sigtimedwait: the loop
    wakes at a tracee's stop instead of at its next poll."""

    def __init__(self, was_blocked: bool) -> None:
        self._was_blocked = was_blocked

    @classmethod
    def start(cls) -> _SigchldWait | None:
        try:
            if signal.getsignal(signal.SIGCHLD) is not signal.SIG_DFL:
                return None  # someone handles it (asyncio's child watcher ...): poll
            before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        except (ValueError, OSError, AttributeError):
            return None
        return cls(signal.SIGCHLD in before)

    def wait(self, timeout: float) -> None:
        signal.sigtimedwait({signal.SIGCHLD}, timeout)

    def stop(self) -> None:
        if not self._was_blocked:  # a pending SIGCHLD is then dropped (default: ignore)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})


class _HeldWrite:
    """write(out, dump_type, all_memory) for the on_dump handler: writes process
    :attr:`pid` (the one a trigger fired for) while its threads are held."""

    def __init__(self, pid: int, stop: _HeldStop, exception: CapturedException | None) -> None:
        self.pid = pid
        self._stop = stop
        self._exception = exception

    def __call__(self, out: IO[bytes], dump_type: MiniDumpType, all_memory: bool) -> object:
        from .linux import write_held_dump

        return write_held_dump(self.pid, self._stop, cast(BinaryIO, out), dump_type,
                               exception=self._exception, all_memory=all_memory)


class _HeldStop(ProcessStop):
    """The ProcessStop the writer sees for a process we already trace: stop() holds our
    tracees of that process with PTRACE_INTERRUPT, detach() hands them back to the
    watch loop."""

    def __init__(self, watch: LinuxWatch, tgid: int, held_tid: int | None) -> None:
        super().__init__(tgid, ppid=watch._ppid(tgid))
        self._watch = watch
        self._held_tid = held_tid
        self._resume: list[int] = []

    def stop(self) -> None:
        self.stop_started_ns = time.perf_counter_ns()
        self._resume = self._watch.hold(self.pid, self._held_tid, self._state)
        if not self.tids:
            raise ProcessNotFound(errno.ESRCH, f"process {self.pid} exited", pid=self.pid)
        self.stopped_ns = time.perf_counter_ns()

    def detach(self) -> None:
        if self.detached_ns:
            return
        resume, self._resume = self._resume, []
        self._watch.release(resume)
        for tid in self._state:
            self._state[tid] = _State.GONE
        self.detached_ns = time.perf_counter_ns()


def _readable(fd: int, timeout: float) -> bool:
    import select

    try:
        return bool(select.select([fd], [], [], timeout)[0])
    except InterruptedError:
        return False


class ChildWakeup:
    """A ``wait_idle`` for :meth:`LinuxWatch.run` in a tracer process of its own (the
    helpers of Watcher and enable_crash_dumps): each ptrace report also sends the
    tracer SIGCHLD, turned here into a byte on a pipe (``signal.set_wakeup_fd``) that
    ends the wait at once, so no report waits for a poll (a thread the target starts
    is not slowed down by one). ``handlers``: more descriptors to wait on, each with
    what to call when it is readable. Takes over SIGCHLD and the wake-up fd of the
    process: create it on the main thread of a helper, never in a user's process."""

    def __init__(self, handlers: dict[int, Callable[[], object]] | None = None) -> None:
        self.handlers = handlers if handlers is not None else {}
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.siginterrupt(signal.SIGCHLD, False)  # SA_RESTART: no other call cut short
        signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)

    def __call__(self, seconds: float) -> None:
        import select

        try:
            ready = select.select([self._r, *self.handlers], [], [], seconds)[0]
        except InterruptedError:
            return
        for fd in ready:
            if fd == self._r:
                try:
                    while os.read(self._r, 512):
                        pass
                except BlockingIOError:
                    pass
            elif fd in self.handlers:
                self.handlers[fd]()


# --- the /proc triggers ------------------------------------------------------------

class _Samplers:
    """The triggers read from /proc (or the heartbeat file) without stopping anything."""

    def __init__(self, pid: int, triggers: Triggers, *, skip_waits: bool = False) -> None:
        self.pid = pid
        self.t = triggers
        self.skip_waits = skip_waits  # a thread waiting for a child is not stuck
        self.started = time.monotonic()
        self._hang_regex = re.compile(triggers.hang_threads) if triggers.hang_threads else None
        self._hang_state: object = None
        self._hang_since = self.started
        # the lock rule of on_hang (a lock cycle in a sampled dump): off unless the
        # watch can analyse a sample (LinuxWatch.on_sample)
        self.lock_samples = False
        self.lock_due = False
        self._lock_state: tuple[tuple[int, str, str], ...] = ()
        self._lock_since = self.started
        self._lock_skip: tuple[tuple[int, str, str], ...] | None = None
        self._lock_settle = False
        self._beat: float | None = None
        self._beat_since = self.started
        self._cpu_last: tuple[float, int] | None = None
        self._cpu_since: float | None = None
        self._timer_next = self.started + triggers.timer if triggers.timer else None
        self._ticks = _procfs.clock_ticks()

    def after_dump(self, now: float) -> None:
        self._hang_state = None  # the dump itself moved every thread: start over
        self._hang_since = now
        self._lock_state, self._lock_since = (), now
        self.lock_due = False
        self._beat_since = max(self._beat_since, now)

    def poll(self, now: float) -> list[str]:
        t = self.t
        fired = []
        if t.timer is not None and self._timer_next is not None and now >= self._timer_next:
            fired.append("timer")
            self._timer_next = now + (t.interval if t.interval else t.timer)
        if t.on_hang is not None and self._hung(now):
            fired.append("hang")
        if t.cpu is not None and self._cpu_high(now):
            fired.append("cpu")
        if t.memory_mb is not None or t.threads is not None:
            status = _procfs.parse_status(_procfs.read_text(f"/proc/{self.pid}/status",
                                                            self.pid))
            if t.memory_mb is not None:
                rss_kb = int((status.get("VmRSS", "0 kB").split() or ["0"])[0])
                if rss_kb >= t.memory_mb * 1024:
                    fired.append("memory")
            if t.threads is not None and int(status.get("Threads", "0") or 0) >= t.threads:
                fired.append("threads")
        if t.fds is not None:
            try:
                count = len(os.listdir(f"/proc/{self.pid}/fd"))
            except OSError:
                count = 0
            if count >= t.fds:
                fired.append("fds")
        return fired

    def _hung(self, now: float) -> bool:
        assert self.t.on_hang is not None
        rows, all_blocked = ([], False) if self.t.heartbeat is not None \
            and not self.lock_samples else self._thread_rows()
        self._lock_candidates(rows, now)
        if self.t.heartbeat is not None:
            try:
                beat: float | None = os.stat(self.t.heartbeat).st_mtime
            except OSError:
                beat = None
            if beat != self._beat:
                self._beat, self._beat_since = beat, now
            return now - self._beat_since >= self.t.on_hang
        state = tuple((tid, line, switches) for tid, line, switches, watched in rows
                      if watched) if all_blocked else None
        if not state or state != self._hang_state:
            self._hang_state, self._hang_since = state or None, now
            return False
        return now - self._hang_since >= self.t.on_hang

    def _thread_rows(self) -> tuple[list[tuple[int, str, str, bool]], bool]:
        """Per blocked thread either rule needs: (tid, its system call line (number,
        arguments, sp, pc), its context-switch counts, whether --hang-threads watches
        it); and whether every watched thread is blocked in a system call. Two equal
        samples mean no thread ran in between (a thread woken even once switched
        context). Once a watched thread is seen running only the lock waits are read
        on (the lock rule's), so a busy process costs one file per thread."""
        rows = []
        all_blocked = True
        for tid in _procfs.task_ids(self.pid):
            base = f"/proc/{self.pid}/task/{tid}"
            syscall = _procfs.try_read_bytes(f"{base}/syscall")
            if syscall is None:
                continue  # exited meanwhile
            line = syscall.decode("ascii", "replace").strip()
            number = line.split(" ", 1)[0]
            lock = self.lock_samples and number in _LOCK_SYSCALLS
            if not lock and not all_blocked:
                continue
            if self.skip_waits and number in _WAIT_SYSCALLS:
                continue
            watched = self._hang_regex is None or \
                bool(self._hang_regex.search(_procfs.thread_name(self.pid, tid)))
            if number in ("running", "-1"):
                all_blocked = all_blocked and not watched
                continue  # running, or stopped outside a system call (job control)
            if not lock and not watched:
                continue
            status = _procfs.try_read_bytes(f"{base}/status")
            if status is None:
                continue
            switches = ",".join(m.group(0).decode() for m in
                                re.finditer(rb"(?m)^(non)?voluntary_ctxt_switches:\s*\d+",
                                            status))
            rows.append((tid, line, switches, watched))
        return rows, all_blocked and any(watched for *_, watched in rows)

    def _lock_candidates(self, rows: list[tuple[int, str, str, bool]], now: float) -> None:
        """The second hang rule's first half: at least two threads blocked in a lock
        wait (futex) at the same pc, unchanged for on_hang seconds (whatever the other
        threads do; when the first rule fires at the same look it wins). Sets :attr:`lock_due`: the
        watch then samples a dump and keeps it only if the lock analysis finds a cycle.
        A blocked set sampled without a cycle is not sampled again until one of its
        threads moves (:meth:`after_sample`)."""
        self.lock_due = False
        if not self.lock_samples:
            return
        groups: dict[str, list[tuple[int, str, str]]] = collections.defaultdict(list)
        for tid, line, switches, _ in rows:
            fields = line.split()
            if fields[0] in _LOCK_SYSCALLS:
                groups[fields[-1]].append((tid, line, switches))  # by pc
        key = tuple(sorted(r for group in groups.values() if len(group) >= 2 for r in group))
        if self._lock_settle:  # the first look after a discarded sample: its baseline
            self._lock_settle = False
            self._lock_skip = key
        if key != self._lock_state:
            self._lock_state, self._lock_since = key, now
        self.lock_due = bool(key) and key != self._lock_skip and \
            now - self._lock_since >= (self.t.on_hang or 0)

    def after_sample(self) -> None:
        """A lock sample found no cycle: the threads it held have moved (the hold woke
        them once), so the blocked set is taken again at the next look and skipped for
        as long as it stays the same."""
        self._lock_settle = True
        self.lock_due = False

    def _cpu_high(self, now: float) -> bool:
        assert self.t.cpu is not None
        st = _procfs.read_stat(self.pid)
        ticks = st.utime + st.stime
        last, self._cpu_last = self._cpu_last, (now, ticks)
        if last is None or now <= last[0]:
            return False
        percent = (ticks - last[1]) / self._ticks / (now - last[0]) * 100
        if percent < self.t.cpu:
            self._cpu_since = None
            return False
        if self._cpu_since is None:
            self._cpu_since = last[0]
        return now - self._cpu_since >= self.t.cpu_for


# --- starting a command traced -----------------------------------------------------

def spawn_traced(argv: list[str]) -> tuple[int, Callable[[], None]]:
    """Fork a child that waits, and return (pid, go): the caller seizes it (it is
    blocked in read(2), running, not stopped), then ``go()`` lets it exec ``argv``.
    ``go`` raises :class:`CommandError` if the exec fails (the child then exits 127:
    the caller reaps it)."""
    gate_r, gate_w = os.pipe()
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the child: only async-signal-safe steps until exec
        code = errno.ENOEXEC
        try:
            os.close(gate_w)
            os.close(err_r)
            os.read(gate_r, 1)
            os.close(gate_r)
            for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores them; exec keeps that
                signal.signal(sig, signal.SIG_DFL)
            os.execvp(argv[0], argv)
        except OSError as exc:
            code = exc.errno or errno.ENOEXEC
        finally:
            try:
                os.write(err_w, str(code).encode())
            finally:
                os._exit(127)
    os.close(gate_r)
    os.close(err_w)

    def go() -> None:
        try:
            os.write(gate_w, b"g")
        finally:
            os.close(gate_w)
        try:
            report = b""
            while chunk := os.read(err_r, 16):
                report += chunk
        finally:
            os.close(err_r)
        if report:
            code = int(report or errno.ENOEXEC)
            raise CommandError(code, os.strerror(code), argv[0])

    return pid, go
