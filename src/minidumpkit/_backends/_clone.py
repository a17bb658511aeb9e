"""VA_CLONE on Linux: a copy-on-write clone of a stopped process, made by the process itself.

The kernel has no "snapshot another process's memory" call, but fork does exactly
that for the caller. So, with every thread held by :class:`~._ptrace.ProcessStop`,
one thread is made to run a 17-byte stub written over its own code page::

    0f 05                 syscall            ; clone(CLONE_FILES, 0, 0, 0, 0)
    48 85 c0              test rax, rax
    75 09                 jnz  +9            ; parent (child pid) or error: to int3
    31 ff                 xor  edi, edi
    b8 e7 00 00 00        mov  eax, 231
    0f 05                 syscall            ; child: exit_group(0) at once
    cc                    int3               ; parent: back to us (SIGTRAP stop)

The clone is auto-attached to us (PTRACE_O_TRACECLONE) and stops before it runs
one instruction; PTRACE_O_EXITKILL is set on the clone only, never on the target.
The original code bytes, registers and signal mask go back before the target is
released. The clone never runs its own code: it is read through /proc/CLONE/mem
(process_vm_readv would make it copy every page it reads), killed and waited for when
the snapshot is freed; its zombie, which only the target can reap, is reaped by a
second injection, ``wait4(clone, NULL, __WALL|WNOHANG, NULL)``.

A dump written as the snapshot's last one gives the clone's pages back as it goes
(:meth:`CloneMemory.consumed`): the clone runs ``madvise(MADV_DONTNEED)`` over what is
already in the file, from the stub's ``syscall`` under PTRACE_SYSCALL. A page the
clone no longer maps is the target's alone again, so the target's next write to it
reuses it in place instead of copying it: less memory, and the target's heap is not
scattered over fresh pages (which makes its later forks and snapshots dearer:
docs/snapshots.md, "Pause at 4 GiB").

The mechanics and the measurements behind each choice are in
/work/shared/reference/snapshot-spike.md; docs/snapshots.md is the user's view.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import signal
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from .._capture import Region
from .._ffi import libc
from .._ffi._errors import last_errno
from ..errors import AlreadyTraced, ProcessError, ProcessNotFound
from ..snapshot import SnapshotRefused
from . import _procfs
from ._memory import parse_smaps
from ._ptrace import USER_REGS_FIELDS, ProcessStop, _describe, _ptrace, _waitpid

__all__ = [
    "CLONE_STUB",
    "Clone",
    "CloneMemory",
    "PreflightInputs",
    "make_clone",
    "preflight",
    "reap_clone_zombie",
]

PTRACE_SYSCALL = 24
PTRACE_GET_RSEQ_CONFIGURATION = 0x420F
PTRACE_O_TRACESYSGOOD = 0x1
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETEVENTMSG = 0x4201
PTRACE_SETREGSET = 0x4205
PTRACE_GETSIGMASK = 0x420A
PTRACE_SETSIGMASK = 0x420B
PTRACE_O_TRACECLONE = 0x8
PTRACE_O_EXITKILL = 0x100000
PTRACE_EVENT_CLONE = 3

SYS_MADVISE = 28
SYS_CLONE = 56
SYS_WAIT4 = 61
MADV_DONTNEED = 4
CLONE_FILES = 0x400
WNOHANG = 1
WALL = 0x40000000

CLONE_STUB = bytes.fromhex("0f0548 85c0 7509 31ff b8e7000000 0f05 cc".replace(" ", ""))
# the reap needs no child path: wait4 never creates a process
REAP_STUB = bytes.fromhex("0f05cc")
_REGS = struct.Struct("<27Q")
# struct ptrace_rseq_configuration: rseq_abi_pointer, rseq_abi_size, signature, flags, pad
_RSEQ_CONF = struct.Struct("<QIIII")
_RIP = USER_REGS_FIELDS.index("rip")
_SIGTRAP_BIT = 1 << (signal.SIGTRAP - 1)
# a blocked-signal mask with everything but SIGTRAP, for the injected thread
_INJECT_MASK = 0xFFFF_FFFF_FFFF_FFFF & ~_SIGTRAP_BIT
_PAGE = os.sysconf("SC_PAGE_SIZE")
# signal.pthread_sigmask turns every signal number it takes and returns into an enum:
# 0.4 ms per block/restore pair, inside the target's pause; _signal's takes 4 µs
_sigmask: Callable[[int, Iterable[int]], Iterable[int]] = signal.pthread_sigmask
_ALL_SIGNALS: frozenset[int] = frozenset(signal.valid_signals())
try:
    import _signal  # type: ignore[import-not-found]
except ImportError:  # not CPython
    pass
else:
    _sigmask = _signal.pthread_sigmask
    _ALL_SIGNALS = frozenset(_signal.valid_signals())


# --- preflight ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PreflightInputs:
    """What :func:`preflight` decides from, as the kernel shows it. Tests build these
    by hand to exercise each refusal without changing the machine's settings."""

    status: str  # /proc/PID/status
    smaps: str  # /proc/PID/smaps (VmFlags and sizes of each mapping)
    overcommit_memory: str  # /proc/sys/vm/overcommit_memory
    meminfo: str  # /proc/meminfo (CommitLimit, Committed_AS)

    @classmethod
    def read(cls, pid: int) -> PreflightInputs:
        return cls(status=_procfs.read_text(f"/proc/{pid}/status", pid),
                   smaps=_procfs.read_text(f"/proc/{pid}/smaps", pid),
                   overcommit_memory=_procfs.read_text("/proc/sys/vm/overcommit_memory"),
                   meminfo=_procfs.read_text("/proc/meminfo"))


@dataclasses.dataclass(frozen=True)
class PreflightResult:
    """What the clone will not hold point-in-time, known before the target is stopped."""

    not_copied: tuple[tuple[int, int], ...]  # MADV_DONTFORK ('dc'): absent from the clone
    wiped: tuple[tuple[int, int], ...]  # MADV_WIPEONFORK ('wf'): zeros in the clone
    commit_needed: int  # bytes the fork charges in strict overcommit


def _meminfo_kib(meminfo: str, key: str) -> int | None:
    m = re.search(rf"^{key}:\s+(\d+) kB", meminfo, re.MULTILINE)
    return int(m.group(1)) * 1024 if m else None


def preflight(pid: int, inputs: PreflightInputs | None = None) -> PreflightResult:
    """Refuse, before anything is touched, a target the clone would harm or fail on.

    Raises AlreadyTraced (a tracer is attached), SnapshotRefused (seccomp filter: the
    injected clone could kill the target; a job-control stop; strict overcommit that
    cannot fit a fork of this process).
    """
    if inputs is None:
        inputs = PreflightInputs.read(pid)
    status = _procfs.parse_status(inputs.status)
    name = status.get("Name", "?")
    tracer = int(status.get("TracerPid", "0") or 0)
    if tracer:
        from . import _tracer_socket

        if _tracer_socket.held_by_us(pid, tracer):
            raise SnapshotRefused(
                f"process {pid} ({name}) is held by minidumpkit's own tracer (pid {tracer}), "
                "which writes its dumps by stopping it; a VA-clone snapshot needs to be its "
                "only tracer: dump it with snapshot='never' or 'auto'", pid=pid,
                reason="traced")
        raise AlreadyTraced(errno.EPERM, f"process {pid} ({name}) is already traced by pid "
                            f"{tracer}; a VA-clone snapshot needs to be its only tracer", pid=pid)
    if status.get("Seccomp", "0").strip() not in ("0", ""):
        raise SnapshotRefused(
            f"process {pid} ({name}) runs under a seccomp filter (Seccomp: "
            f"{status.get('Seccomp')}): the filter may kill it for the injected clone(); "
            "take the snapshot without PssCaptureFlags.VA_CLONE, or dump with "
            "snapshot='never'", pid=pid, reason="seccomp")
    if status.get("State", "").startswith(("T", "t")):
        raise SnapshotRefused(
            f"process {pid} ({name}) is stopped ({status.get('State')}); a stopped process "
            "cannot run the clone() a VA-clone snapshot needs; dump it with snapshot='never'",
            pid=pid, reason="stopped")
    smaps = parse_smaps(inputs.smaps).values()
    not_copied = tuple((e.start, e.end) for e in smaps if "dc" in e.vm_flags)
    wiped = tuple((e.start, e.end) for e in smaps if "wf" in e.vm_flags)
    # fork charges the child what the kernel accounts (VM_ACCOUNT): private writable
    # mappings that are copied; DONTFORK ones are not.
    need = sum(e.size for e in smaps
               if e.private and e.writable and "dc" not in e.vm_flags and "ht" not in e.vm_flags)
    if inputs.overcommit_memory.strip() == "2":
        limit = _meminfo_kib(inputs.meminfo, "CommitLimit")
        committed = _meminfo_kib(inputs.meminfo, "Committed_AS")
        if limit is not None and committed is not None and committed + need > limit:
            raise SnapshotRefused(
                f"strict overcommit (vm.overcommit_memory=2) would refuse the fork of process "
                f"{pid} ({name}): it needs {need >> 20} MiB of commit, and only "
                f"{max(limit - committed, 0) >> 20} MiB of CommitLimit {limit >> 20} MiB is "
                "left; dump it with snapshot='never'", pid=pid, reason="overcommit")
    return PreflightResult(not_copied=not_copied, wiped=wiped, commit_needed=need)


# --- registers and memory of a stopped thread ----------------------------------------

def _get_regs(tid: int) -> list[int]:
    ffi, _ = libc.load()
    buf = ffi.new("char[]", _REGS.size)
    iov = ffi.new("struct iovec *")
    iov.iov_base = buf
    iov.iov_len = _REGS.size
    _check(_ptrace(libc.PTRACE_GETREGSET, tid, libc.NT_PRSTATUS, iov), "PTRACE_GETREGSET", tid)
    return list(_REGS.unpack(bytes(ffi.buffer(buf, _REGS.size))))


def _set_regs(tid: int, regs: Sequence[int]) -> None:
    ffi, _ = libc.load()
    buf = ffi.new("char[]", _REGS.pack(*regs))
    iov = ffi.new("struct iovec *")
    iov.iov_base = buf
    iov.iov_len = _REGS.size
    _check(_ptrace(PTRACE_SETREGSET, tid, libc.NT_PRSTATUS, iov), "PTRACE_SETREGSET", tid)


def _get_sigmask(tid: int) -> int:
    ffi, _ = libc.load()
    mask = ffi.new("unsigned long long *")
    _check(_ptrace(PTRACE_GETSIGMASK, tid, 8, mask), "PTRACE_GETSIGMASK", tid)
    return int(mask[0])


def _set_sigmask(tid: int, value: int) -> None:
    ffi, _ = libc.load()
    mask = ffi.new("unsigned long long *", value)
    _check(_ptrace(PTRACE_SETSIGMASK, tid, 8, mask), "PTRACE_SETSIGMASK", tid)


def _check(rc: int, what: str, tid: int) -> None:
    if rc == -1:
        err = last_errno()
        raise ProcessError.from_errno(err, f"{what} of thread {tid}", pid=tid)


def _reg(regs: Sequence[int], name: str) -> int:
    return regs[USER_REGS_FIELDS.index(name)]


def _with(regs: Sequence[int], **values: int) -> list[int]:
    out = list(regs)
    for name, value in values.items():
        out[USER_REGS_FIELDS.index(name)] = value & 0xFFFF_FFFF_FFFF_FFFF
    return out


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """No signal handler of ours (KeyboardInterrupt, SIGTERM) may run while the target
    holds injected code: everything in here must run to its end. SIGKILL cannot be
    blocked; that residual risk is the fatal window, measured and documented."""
    old = _sigmask(signal.SIG_BLOCK, _ALL_SIGNALS)
    try:
        yield
    finally:
        _sigmask(signal.SIG_SETMASK, old)


# Test hook: called with True right before the target holds injected code and with
# False once it is restored (the SIGKILL trials use it to know where the kill fell).
window_hook: Callable[[bool], None] | None = None


def _pick_thread(stop: ProcessStop, regions: Sequence[Region]) -> tuple[int, list[int], Region]:
    """A thread to inject into: stopped, no signal to hand back, rip in an executable
    mapping (whose page gets the stub); one stopped in user mode is preferred (the
    spike found every kind works; user mode avoids restart bookkeeping)."""
    best: tuple[int, list[int], Region] | None = None
    for tid in stop.tids:
        if tid in stop._inject or tid in stop.group_stopped:
            continue
        regs = _get_regs(tid)
        rip = _reg(regs, "rip")
        region = _procfs.find_region(list(regions), rip)
        if region is None or not region.executable or (rip & ~0xFFF) + len(CLONE_STUB) > region.end:
            continue
        if _reg(regs, "orig_rax") == 0xFFFF_FFFF_FFFF_FFFF:
            return tid, regs, region
        if best is None:
            best = (tid, regs, region)
    if best is None:
        raise SnapshotRefused(f"no thread of process {stop.pid} is stopped in executable code, "
                              "so no clone() can be injected", pid=stop.pid, reason="no_thread")
    return best


def _leave_trap(stop: ProcessStop, tid: int) -> None:
    """Take ``tid`` (restored, in the int3's SIGTRAP signal-delivery-stop) back to a
    plain ptrace event-stop. Left in the signal-delivery-stop, a tracer that dies would
    let the kernel deliver that SIGTRAP and kill the target; resuming with signal 0
    drops it (and restarts an interrupted syscall, as a detach would), and
    PTRACE_INTERRUPT stops the thread again at once."""
    _ptrace(libc.PTRACE_CONT, tid, 0, 0)
    _ptrace(libc.PTRACE_INTERRUPT, tid)
    _, status = _wait_injected(stop.pid, tid)
    stop._record(tid, status)


def _wait_injected(pid: int, tid: int) -> tuple[int, int]:
    """waitpid(tid) for the thread running an injected call, which stops at once in
    the normal case. Polled: if the process is SIGKILLed meanwhile and ``tid`` is its
    main thread, the kernel reports that thread's exit only after the other threads
    are reaped, and we hold those stopped: a blocking wait would never return. A
    thread that is a zombie without a report is then "died" (exit status 0x9)."""
    got, status = _waitpid(tid, libc.WNOHANG)
    spins = 0
    while not got:
        try:
            dead = _procfs.read_stat(pid, tid).state in ("Z", "X")
        except ProcessError:
            dead = True
        if dead:
            got, status = _waitpid(tid, libc.WNOHANG)
            return (tid, status) if got else (tid, signal.SIGKILL)  # killed, unreported
        spins += 1
        if spins > 20:
            time.sleep(0.0001)
        got, status = _waitpid(tid, libc.WNOHANG)
    return got, status


# --- the injection -------------------------------------------------------------------

@dataclasses.dataclass
class Clone:
    """A live clone of the target (our tracee, stopped, EXITKILL)."""

    pid: int  # the clone's pid
    parent: int  # the target
    stub_address: int
    original: bytes  # the target's bytes under the stub (the clone still has the stub)
    injected_tid: int
    fatal_window_ns: int  # stub written → original bytes and registers back
    clone_ns: int  # PTRACE_CONT → PTRACE_EVENT_CLONE: the kernel's fork work
    killed: bool = False
    tracer_tid: int = dataclasses.field(default_factory=threading.get_native_id)
    #: (address, bytes) of the target's memory that the clone's own running changed
    #: (its rseq area), put back in every read; the stub is restored separately
    preserved: list[tuple[int, bytes]] = dataclasses.field(default_factory=list)
    _regs: list[int] | None = dataclasses.field(default=None, repr=False)

    def kill(self) -> None:
        """SIGKILL the clone and collect its exit as its tracer. Idempotent."""
        if self.killed:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            while True:
                got, status = _waitpid(self.pid, 0)
                if got == self.pid and not _describe(status)[0]:
                    break
        except ProcessError as exc:  # ECHILD: already collected
            if exc.errno != errno.ECHILD:
                raise
        self.killed = True

    def syscall(self, nr: int, *args: int) -> int:
        """Run one system call in the clone and return its result (``-errno`` on
        failure): rip on the stub's first ``syscall`` (the clone still holds the stub),
        PTRACE_SYSCALL to the call's entry stop and on to its exit stop, where the
        clone stays, stopped, for the next one. The code after that ``syscall`` (the
        child path's exit_group) is never reached.

        Only from the thread that made the clone (its tracer, for the kernel). Before
        the first call the clone's rseq area is saved (see :attr:`preserved`).
        """
        if self.killed:
            raise ProcessError(errno.ESRCH, "the snapshot's clone is gone", pid=self.parent)
        if threading.get_native_id() != self.tracer_tid:
            raise ProcessError(errno.EPERM, "only the thread that took the snapshot can run "
                               "system calls in its clone (ptrace)", pid=self.parent)
        if self._regs is None:
            self._regs = _get_regs(self.pid)
            self.preserved.extend(self._rseq_area())
        names = ("rdi", "rsi", "rdx", "r10", "r8", "r9")
        values = dict(zip(names, args, strict=False))
        _set_regs(self.pid, _with(self._regs, rip=self.stub_address, rax=nr, orig_rax=-1,
                                  **values))
        self._syscall_stop("entry")
        self._syscall_stop("exit")
        rax = _reg(_get_regs(self.pid), "rax")
        return rax - (1 << 64) if rax >= 1 << 63 else rax

    def _syscall_stop(self, stage: str) -> None:
        """Resume the clone to its next syscall stop (SIGTRAP|0x80, TRACESYSGOOD). Any
        other stop on the way (a SIGTRAP or SIGCONT sent to the clone, which shares the
        target's process group; a group-stop) is resumed with no signal: the clone never
        runs a handler, and the entry and exit stops stay paired."""
        for _ in range(64):
            _check(_ptrace(PTRACE_SYSCALL, self.pid, 0, 0), "PTRACE_SYSCALL", self.pid)
            _, status = _waitpid(self.pid, 0)
            stopped, sig, _event = _describe(status)
            if not stopped:
                self.killed = True  # it exited: collected by that waitpid
                raise ProcessError(errno.ESRCH, f"the clone {self.pid} ended before the "
                                   f"{stage} of an injected system call", pid=self.parent)
            if sig == signal.SIGTRAP | 0x80:
                return
        raise ProcessError(errno.EIO, f"the clone {self.pid} keeps stopping before the {stage} "
                           "of an injected system call", pid=self.parent)

    def _rseq_area(self) -> list[tuple[int, bytes]]:
        """The bytes of the clone's registered rseq area, as the target's thread left
        them: the clone inherited its registration, and the kernel rewrites the area
        (cpu_id, mm_cid) each time the clone returns to user mode, which it first does
        in :meth:`syscall`. Without PTRACE_GET_RSEQ_CONFIGURATION (Linux < 5.13) the
        area cannot be found: this raises, and no system call is run in the clone."""
        ffi, _ = libc.load()
        conf = ffi.new("unsigned char[]", _RSEQ_CONF.size)
        got = _ptrace(PTRACE_GET_RSEQ_CONFIGURATION, self.pid, _RSEQ_CONF.size, conf)
        if got < 0:
            raise ProcessError.from_errno(last_errno(), "PTRACE_GET_RSEQ_CONFIGURATION of the "
                                          "clone", pid=self.parent)
        pointer, size, _signature, _flags, _pad = _RSEQ_CONF.unpack(bytes(conf))
        if not pointer or not size:
            return []
        with open(f"/proc/{self.pid}/mem", "rb", buffering=0) as mem:
            mem.seek(pointer)
            data = mem.read(size)
        if len(data) != size:
            raise ProcessError(errno.EIO, f"cannot read the clone's rseq area at 0x{pointer:x}",
                               pid=self.parent)
        return [(pointer, data)]


def _inject(tid: int, mem_fd: int, stub_address: int, stub: bytes, regs: list[int],
            nr: int, args: Sequence[int]) -> tuple[bytes, list[int]]:
    """Save the bytes and signal mask, write the stub and the syscall registers (the
    caller restores with :func:`_restore`)."""
    original = os.pread(mem_fd, len(stub), stub_address)
    if len(original) != len(stub):
        raise ProcessError(errno.EIO, f"cannot read the code at 0x{stub_address:x}", pid=tid)
    names = ("rdi", "rsi", "rdx", "r10", "r8", "r9")
    values = dict.fromkeys(names, 0)
    values.update(zip(names, args, strict=False))
    # orig_rax = -1: no syscall-restart fix-up of the interrupted call on this entry
    injected = _with(regs, rip=stub_address, rax=nr, orig_rax=-1, **values)
    return original, injected


def _restore(tid: int, mem_fd: int, stub_address: int, original: bytes, regs: list[int],
             old_mask: int) -> None:
    """Put back what :func:`_inject` and the caller replaced: the code, registers and
    signal mask. Each step on its own, so that one failing does not skip the others."""
    with contextlib.suppress(OSError):
        os.pwrite(mem_fd, original, stub_address)
    with contextlib.suppress(ProcessError):
        _set_regs(tid, regs)
    with contextlib.suppress(ProcessError):
        _set_sigmask(tid, old_mask)


def make_clone(stop: ProcessStop, regions: Sequence[Region]) -> Clone:
    """Inject clone(CLONE_FILES) into one stopped thread of ``stop`` and return the clone.

    On return the target's code, registers, signal mask and ptrace options are as
    before, and its threads are still held (the caller releases them).
    """
    pid = stop.pid
    tid, regs, _region = _pick_thread(stop, regions)
    stub_address = _reg(regs, "rip") & ~0xFFF
    old_mask = _get_sigmask(tid)
    mem_fd = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)
    clone_pid = 0
    try:
        original, injected = _inject(tid, mem_fd, stub_address, CLONE_STUB, regs, SYS_CLONE,
                                     (CLONE_FILES,))
        with _signals_blocked():
            if window_hook is not None:
                window_hook(True)
            started = time.perf_counter_ns()
            stopped, sig, event = False, 0, -1
            after = None
            try:
                _set_sigmask(tid, _INJECT_MASK)
                os.pwrite(mem_fd, CLONE_STUB, stub_address)
                _set_regs(tid, injected)
                _check(_ptrace(PTRACE_SETOPTIONS, tid, 0, PTRACE_O_TRACECLONE),
                       "PTRACE_SETOPTIONS", tid)
                cont = time.perf_counter_ns()
                _check(_ptrace(libc.PTRACE_CONT, tid, 0, 0), "PTRACE_CONT", tid)
                _, status = _wait_injected(pid, tid)
                stopped, sig, event = _describe(status)
                clone_ns = time.perf_counter_ns() - cont
                if stopped and sig == signal.SIGTRAP and event == PTRACE_EVENT_CLONE:
                    ffi, _ = libc.load()
                    msg = ffi.new("unsigned long *")
                    _check(_ptrace(PTRACE_GETEVENTMSG, tid, 0, msg), "PTRACE_GETEVENTMSG", tid)
                    clone_pid = int(msg[0])
                    # its first stop, then EXITKILL on it alone
                    _waitpid(clone_pid, 0)
                    # (TRACESYSGOOD: Clone.syscall tells its syscall stops from others)
                    _check(_ptrace(PTRACE_SETOPTIONS, clone_pid, 0,
                                   PTRACE_O_EXITKILL | PTRACE_O_TRACESYSGOOD),
                           "PTRACE_SETOPTIONS(EXITKILL) of the clone", clone_pid)
                    _check(_ptrace(libc.PTRACE_CONT, tid, 0, 0), "PTRACE_CONT", tid)
                    _, status = _wait_injected(pid, tid)  # the int3
                    stopped, sig, event = _describe(status)
                after = _get_regs(tid) if stopped else None
            finally:
                # Whatever happened: the original code, registers, mask and options.
                _restore(tid, mem_fd, stub_address, original, regs, old_mask)
                _ptrace(PTRACE_SETOPTIONS, tid, 0, 0)
                if stopped and event == 0:
                    _leave_trap(stop, tid)
                window = time.perf_counter_ns() - started
                if window_hook is not None:
                    window_hook(False)
        if not stopped:
            raise ProcessNotFound(errno.ESRCH, f"process {pid} died during the clone", pid=pid)
        if after is not None and _reg(after, "rip") != stub_address + len(CLONE_STUB):
            raise ProcessError(errno.EIO, f"the injected clone() in thread {tid} stopped at "
                               f"0x{_reg(after, 'rip'):x} (signal {sig}, event {event}), not at "
                               "its int3", pid=pid)
        if not clone_pid:
            rax = _reg(after, "rax") if after is not None else 0
            err = -(rax - (1 << 64)) if rax >= 1 << 63 else errno.EIO
            raise ProcessError.from_errno(err, f"the clone() injected into process {pid} "
                                          "failed", pid=pid)
        return Clone(pid=clone_pid, parent=pid, stub_address=stub_address, original=original,
                     injected_tid=tid, fatal_window_ns=window, clone_ns=clone_ns)
    except BaseException:
        if clone_pid:
            Clone(clone_pid, pid, stub_address, b"", tid, 0, 0).kill()
        raise
    finally:
        os.close(mem_fd)


def reap_clone_zombie(pid: int, clone_pid: int) -> bool:
    """Make the target collect the dead clone with an injected wait4(WNOHANG): True if
    the zombie is gone (or the target is). A short stop of its own."""
    try:
        st = _procfs.read_stat(clone_pid)
    except ProcessError:
        return True  # already gone (the target exited, or reaped it with __WALL itself)
    if st.state not in ("Z", "X"):
        return False
    try:
        stop = ProcessStop(pid)
    except ProcessError:
        return True
    try:
        with stop:
            maps = _procfs.read_text(f"/proc/{pid}/maps", pid)
            regions = _procfs.parse_maps(maps)
            tid, regs, _ = _pick_thread(stop, regions)
            stub_address = _reg(regs, "rip") & ~0xFFF
            old_mask = _get_sigmask(tid)
            mem_fd = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)
            try:
                original, injected = _inject(tid, mem_fd, stub_address, REAP_STUB, regs,
                                             SYS_WAIT4, (clone_pid, 0, WALL | WNOHANG, 0))
                with _signals_blocked():
                    if window_hook is not None:
                        window_hook(True)
                    trapped = False
                    after = None
                    try:
                        _set_sigmask(tid, _INJECT_MASK)
                        os.pwrite(mem_fd, REAP_STUB, stub_address)
                        _set_regs(tid, injected)
                        _check(_ptrace(libc.PTRACE_CONT, tid, 0, 0), "PTRACE_CONT", tid)
                        _, status = _wait_injected(pid, tid)
                        trapped = _describe(status)[0]
                        after = _get_regs(tid) if trapped else None
                    finally:
                        _restore(tid, mem_fd, stub_address, original, regs, old_mask)
                        if trapped:
                            _leave_trap(stop, tid)
                        if window_hook is not None:
                            window_hook(False)
            finally:
                os.close(mem_fd)
    except ProcessNotFound:
        return True
    return after is not None and _reg(after, "rax") == clone_pid


# --- reading the clone ------------------------------------------------------------------

class CloneMemory:
    """Reads a clone through /proc/CLONE/mem (FOLL_GET: the pages stay shared with the
    target; process_vm_readv's FOLL_PIN would unshare each one), with the injected stub
    replaced by the target's original bytes.

    With :attr:`releasing` set (the snapshot's last dump), :meth:`consumed` gives the
    clone's pages back once the writer is done with them, :data:`RELEASE_BATCH` bytes
    of address space per injected madvise.
    """

    #: address space released per injected madvise(MADV_DONTNEED): about 1 ms each,
    #: mostly the kernel unmapping 8192 pages (work the clone's exit would do anyway)
    RELEASE_BATCH = 32 << 20

    def __init__(self, clone: Clone) -> None:
        self.clone = clone
        self._fd: int | None = os.open(f"/proc/{clone.pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        self.releasing = False
        self.released = 0  # bytes of address space given back
        self.release_failures = 0
        self._pending: tuple[int, int] | None = None  # consumed, not yet released: [lo, hi)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def read(self, address: int, size: int) -> bytes:
        if size <= 0 or address < 0:
            self._check_open()
            return b""
        buf = bytearray(size)
        return bytes(memoryview(buf)[:self.read_into(address, size, buf)])

    def read_into(self, address: int, size: int, buf: bytearray) -> int:
        """Read up to ``size`` bytes at ``address`` into ``buf`` (the writer's reused
        chunk buffer: no allocation, no copy); returns the readable prefix's length."""
        fd = self._check_open()
        if size <= 0 or address < 0:
            return 0
        view = memoryview(buf)
        done = 0
        while done < size:
            try:
                n = os.preadv(fd, [view[done:size]], address + done)
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EFAULT, errno.EINVAL):
                    break
                raise ProcessError.from_errno(exc.errno or errno.EIO, "reading the clone",
                                              pid=self.clone.parent) from exc
            if n <= 0:
                break
            done += n
        self._patch(view[:done], address)
        return done

    def _check_open(self) -> int:
        if self._fd is None:
            raise ValueError("the snapshot is closed")
        return self._fd

    def _patch(self, buf: memoryview, start: int) -> None:
        """Put the target's own bytes back where the clone holds others: the stub, and
        what the clone's running rewrote (:attr:`Clone.preserved`)."""
        c = self.clone
        for address, original in ((c.stub_address, c.original), *c.preserved):
            lo = max(start, address)
            hi = min(start + len(buf), address + len(original))
            if lo < hi:
                buf[lo - start:hi - start] = original[lo - address:hi - address]

    # --- giving pages back ------------------------------------------------------------

    def consumed(self, address: int, size: int) -> None:
        """The writer will not read ``[address, address + size)`` again."""
        if not self.releasing or size <= 0:
            return
        pending = self._pending
        if pending is not None and pending[1] == address:
            self._pending = (pending[0], address + size)
        else:
            self.flush_release()
            self._pending = (address, address + size)
        if self._pending[1] - self._pending[0] >= self.RELEASE_BATCH:
            self.flush_release(keep_tail=True)

    def flush_release(self, *, keep_tail: bool = False) -> None:
        """madvise(MADV_DONTNEED) in the clone over the whole pages consumed so far,
        never over the stub's page (the clone's syscall instruction lives there).
        ``keep_tail``: a last page consumed only in part stays pending, for the next
        consumed bytes to complete."""
        pending, self._pending = self._pending, None
        if pending is None or self.clone.killed:
            return
        lo = -(-pending[0] // _PAGE) * _PAGE
        hi = pending[1] // _PAGE * _PAGE
        if keep_tail and hi < pending[1]:
            self._pending = (max(hi, pending[0]), pending[1])
        stub_page = self.clone.stub_address & ~(_PAGE - 1)
        pieces = [(lo, min(hi, stub_page)), (max(lo, stub_page + _PAGE), hi)]
        for a, b in pieces:
            if a >= b:
                continue
            try:
                rc = self.clone.syscall(SYS_MADVISE, a, b - a, MADV_DONTNEED)
            except ProcessError:
                # only an optimisation: the dump is read either way; the clone is
                # freed with the snapshot
                self.release_failures += 1
                self.releasing = False
                return
            if rc == 0:
                self.released += b - a
            else:
                self.release_failures += 1
