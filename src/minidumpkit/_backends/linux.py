"""The Linux backend: stop a process with ptrace, capture it, write it, let it go.

``write_dump(pid, out, dump_type)`` is the whole job: preflight checks from /proc
(:func:`check_target`), every thread held by :class:`~._ptrace.ProcessStop`, a
:class:`~minidumpkit._capture.ProcessCapture` filled from ptrace, /proc and the
process's memory (:func:`capture`), the writer's plan made and the memory it copies
read into a :class:`MemorySnapshot` while the target is still stopped, the threads
released in every case, and the platform-free writer run from the snapshot after
the release (while stopped, for a dump too big to buffer). Dumping our own process
goes through a helper process (:mod:`._selfdump`), since a process cannot ptrace
itself.

Helpers, one job each: :mod:`._procfs` (parsing /proc), :mod:`._elf` (build ids,
r_debug), :mod:`._ptrace` (the stop protocol).
"""

from __future__ import annotations

import bisect
import dataclasses
import errno
import functools
import io
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, BinaryIO

from .. import format as md
from .._capture import (
    CapturedException,
    CapturedModule,
    CapturedSystem,
    CapturedThread,
    ProcessCapture,
    Region,
)
from .._ffi import libc
from .._ffi._errors import last_errno
from .._selection import BULK_TYPES, DumpPolicy, Selection, select
from ..errors import (
    AccessDenied,
    AlreadyTraced,
    DumpCancelled,
    InvalidTargetError,
    ProcessError,
    ProcessNotFound,
    UnsupportedError,
)
from ..flags import MiniDumpType, StreamType
from . import _elf, _memory, _procfs, _python_capture, _threadstate
from . import _ptrace as _ptrace_mod
from ._ptrace import _PERMISSION_HINT, ProcessStop

if TYPE_CHECKING:
    from ..writer import WriteStats

__all__ = ["ProcessMemory", "capture", "check_target", "resolve_pid", "write_dump"]

PAGE = os.sysconf("SC_PAGE_SIZE")
# one process_vm_readv call moves at most this much (the kernel copies in page batches anyway)
_READ_CHUNK = 1 << 22
# iovecs per process_vm_readv (IOV_MAX)
_MAX_IOV = 1024
# reads up to this size reuse one buffer (_vm_readv_small)
_SMALL_READ = 1 << 16


# --- memory -------------------------------------------------------------------------

class ProcessMemory:
    """Reads a (stopped) process's memory: process_vm_readv, else /proc/PID/mem.

    ``read`` returns the readable prefix of the range (short or empty where the
    range stops being mapped or readable) and raises ProcessNotFound if the process
    is gone. process_vm_readv is refused in some sandboxes (EPERM, ENOSYS); then
    /proc/PID/mem serves every later read.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._mem_fd: int | None = None
        self._use_mem_file = False
        # read_into's cffi views of the (two, when read ahead) buffers it is given
        self._into: list[tuple[bytearray, Any, Any, Any]] = []
        self._small: tuple[Any, Any, Any] | None = None  # _vm_readv_small's buffer, iovecs

    def close(self) -> None:
        fd, self._mem_fd = self._mem_fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> ProcessMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, address: int, size: int) -> bytes:
        if size <= 0 or address < 0:
            return b""
        out = bytearray()
        while size > 0:
            want = min(size, _READ_CHUNK)
            chunk = self._read_once(address, want)
            if len(chunk) < want:
                # The range may continue to be readable after a hole at a page boundary
                # only for callers that ask for holes; our contract is the prefix, but a
                # short transfer can also stop mid-range for reasons other than a hole,
                # so retry the rest page by page before giving up.
                out += chunk
                address += len(chunk)
                size -= len(chunk)
                while size > 0:
                    step = min(size, PAGE - address % PAGE)
                    page = self._read_once(address, step)
                    out += page
                    if len(page) < step:
                        return bytes(out)
                    address += step
                    size -= step
                return bytes(out)
            if not out and size == want:
                return chunk
            out += chunk
            address += want
            size -= want
        return bytes(out)

    def read_into(self, address: int, size: int, buf: bytearray) -> int:
        """Read ``size`` bytes at ``address`` into ``buf[:size]`` (no allocation, no
        copy: the bulk-memory path); returns how many bytes were read, with
        :meth:`read`'s readable-prefix rules."""
        n = 0
        if not self._use_mem_file and 0 < size <= len(buf) and address >= 0:
            ffi, lib = libc.load()
            views = next((v for v in self._into if v[0] is buf), None)
            if views is None:
                views = (buf, ffi.from_buffer(buf), ffi.new("unsigned long[2]"),
                         ffi.new("unsigned long[2]"))
                self._into = [*self._into[-1:], views]
            _, cbuf, local, remote = views
            local[0], local[1] = int(ffi.cast("uintptr_t", cbuf)), size
            remote[0], remote[1] = address, size
            n = int(lib.process_vm_readv(self.pid, local, 1, remote, 1, 0))
            if n == size:
                return n
            n = max(n, 0)  # short or failed: the general path decides (errors, fallback)
        rest = self.read(address + n, size - n)
        buf[n:n + len(rest)] = rest
        return n + len(rest)

    def read_many(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """``[read(a, n) for a, n in ranges]``, with as few system calls as possible.

        Up to _MAX_IOV ranges (and _READ_CHUNK bytes) go into one process_vm_readv;
        the kernel stops a vector read at the first unreadable byte, so the range it
        stopped in is read again on its own (with :meth:`read`'s prefix rules) and the
        batch resumes after it.
        """
        out: list[bytes] = []
        i, n = 0, len(ranges)
        while i < n:
            batch: list[tuple[int, int]] = []
            total = 0
            while i + len(batch) < n and len(batch) < _MAX_IOV:
                address, size = ranges[i + len(batch)]
                if size <= 0 or address < 0 or size > _READ_CHUNK \
                        or (batch and total + size > _READ_CHUNK):
                    break
                batch.append((address, size))
                total += size
            if not batch:  # empty, huge or invalid: the single-range path knows what to do
                address, size = ranges[i]
                out.append(self.read(address, size))
                i += 1
                continue
            got = None if self._use_mem_file else self._vm_readv_many(batch, total)
            if got is None:
                out.extend(self.read(a, s) for a, s in batch)
                i += len(batch)
                continue
            data, done = got
            pos = 0
            for address, size in batch:
                if pos + size > done:
                    break
                out.append(data[pos:pos + size])
                pos += size
                i += 1
            if pos < total:  # stopped inside ranges[i]: that one alone, then go on
                address, size = ranges[i]
                out.append(self.read(address, size))
                i += 1
        return out

    def _read_once(self, address: int, size: int) -> bytes:
        if not self._use_mem_file:
            if size <= _SMALL_READ:
                got = self._vm_readv_small(address, size)
            else:
                got = self._vm_readv_many([(address, size)], size)
            if got is not None:
                return got[0]
            self._use_mem_file = True
        return self._pread(address, size)

    def _vm_readv_small(self, address: int, size: int) -> tuple[bytes, int] | None:
        """One small range through iovecs and a buffer made once per reader (a dump
        makes dozens of these reads for ELF headers, notes and r_debug while the target
        is stopped: the cffi allocations cost more than the system call)."""
        ffi, lib = libc.load()
        if self._small is None:
            buf = ffi.new("char[]", _SMALL_READ)
            local = ffi.new("unsigned long[2]")
            local[0] = int(ffi.cast("uintptr_t", buf))
            self._small = (buf, local, ffi.new("unsigned long[2]"))
        buf, local, remote = self._small
        local[1] = size
        remote[0], remote[1] = address, size
        n = int(lib.process_vm_readv(self.pid, local, 1, remote, 1, 0))
        if n >= 0:
            return ffi.buffer(buf, n)[:], n
        return self._vm_readv_many([(address, size)], size)  # the general path's errors

    def _vm_readv_many(self, ranges: list[tuple[int, int]], total: int) -> tuple[bytes, int] | None:
        """One process_vm_readv of ``ranges`` into one buffer: (bytes, count read), or
        None where the call is refused (EPERM, ENOSYS, EACCES: use /proc/PID/mem)."""
        ffi, lib = libc.load()
        buf = bytearray(total)
        cbuf = ffi.from_buffer(buf)
        base = int(ffi.cast("uintptr_t", cbuf))
        count = len(ranges)
        # struct iovec is {void *base; size_t len}: two unsigned longs (checked by the tests)
        local = ffi.new("unsigned long[]", 2 * count)
        remote = ffi.new("unsigned long[]", 2 * count)
        flat_local: list[int] = []
        flat_remote: list[int] = []
        pos = 0
        for address, size in ranges:
            flat_local += (base + pos, size)
            flat_remote += (address, size)
            pos += size
        local[0:2 * count] = flat_local
        remote[0:2 * count] = flat_remote
        n = int(lib.process_vm_readv(self.pid, local, count, remote, count, 0))
        if n >= 0:
            return (bytes(buf) if n == total else bytes(buf[:n])), n
        err = last_errno()
        if err == errno.EFAULT:
            return b"", 0
        if err == errno.ESRCH:
            raise ProcessNotFound(errno.ESRCH, f"process {self.pid} exited during the dump",
                                  pid=self.pid)
        if err in (errno.EPERM, errno.ENOSYS, errno.EACCES):
            self._use_mem_file = True
            return None
        address, size = ranges[0]
        raise ProcessError.from_errno(err, f"process_vm_readv(0x{address:x}, {size})",
                                      pid=self.pid)

    def _pread(self, address: int, size: int) -> bytes:
        if self._mem_fd is None:
            path = f"/proc/{self.pid}/mem"
            try:
                self._mem_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise _procfs._os_error(exc, path, self.pid) from exc
        try:
            return os.pread(self._mem_fd, size, address)
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EFAULT, errno.EINVAL):
                return b""
            if exc.errno == errno.ESRCH:
                raise ProcessNotFound(errno.ESRCH, f"process {self.pid} exited during the dump",
                                      pid=self.pid) from exc
            raise ProcessError.from_errno(exc.errno or errno.EIO, "reading /proc/PID/mem",
                                          pid=self.pid) from exc


class MemorySnapshot:
    """Bytes read from a stopped process, served after it has been released.

    Built from ``(address, bytes)`` blocks, each the readable prefix of a range the
    live process was asked for. ``read`` answers from the blocks exactly as the live
    read answered then (short where the block is short); an address no block covers
    reads as unreadable (empty).
    """

    def __init__(self, blocks: dict[int, bytes]) -> None:
        self._starts = sorted(blocks)
        self._blocks = [blocks[a] for a in self._starts]

    @property
    def nbytes(self) -> int:
        return sum(len(b) for b in self._blocks)

    def read(self, address: int, size: int) -> bytes:
        if size <= 0 or address < 0:
            return b""
        i = bisect.bisect_right(self._starts, address) - 1
        out = b""
        while 0 <= i < len(self._starts) and size > 0:
            start, block = self._starts[i], self._blocks[i]
            offset = address - start
            if offset >= len(block):
                break
            piece = block[offset:offset + size]
            out = piece if not out else out + piece
            address += len(piece)
            size -= len(piece)
            i += 1
            if i < len(self._starts) and self._starts[i] != address:
                break  # only blocks that touch continue one another
        return out


class _RecordingMemory:
    """A live reader that keeps what it read, so planned ranges read while planning
    (the stacks, scanned for pointers) are not read twice."""

    def __init__(self, memory: ProcessMemory) -> None:
        self.memory = memory
        self.blocks: dict[int, bytes] = {}

    def read(self, address: int, size: int) -> bytes:
        data = self.memory.read(address, size)
        if len(data) == size:  # only whole reads: a short one is re-read by the snapshot
            self.blocks[address] = data
        return data


class _PageReader:
    """Small reads of a stopped process served from whole pages, each read once.

    The module walk (ELF magic, headers, program headers, build-id notes) and the
    r_debug walk make dozens of small reads that land in a few pages (a module's
    headers and notes share its first page); :meth:`prefetch` brings many pages in
    with one process_vm_readv. Answers follow :meth:`ProcessMemory.read`'s rules: the
    readable prefix of the range (pages are readable or not as a whole). Reads wider
    than a few pages go straight to the process.
    """

    _MAX_PAGES = 4

    def __init__(self, memory: ProcessMemory) -> None:
        self.memory = memory
        self.pages: dict[int, bytes] = {}

    def prefetch(self, addresses: list[int]) -> None:
        starts = sorted({a - a % PAGE for a in addresses} - self.pages.keys())
        if starts:
            got = self.memory.read_many([(a, PAGE) for a in starts])
            self.pages.update(zip(starts, got, strict=True))

    def read(self, address: int, size: int) -> bytes:
        if size <= 0 or address < 0:
            return b""
        first = address - address % PAGE
        end = address + size
        if end - first > self._MAX_PAGES * PAGE:
            return self.memory.read(address, size)
        out = b""
        page = first
        while page < end:
            data = self.pages.get(page)
            if data is None:
                data = self.pages[page] = self.memory.read(page, PAGE)
            lo, hi = max(address, page) - page, min(end, page + PAGE) - page
            piece = data[lo:hi]
            out = piece if not out else out + piece
            if len(piece) < hi - lo:
                break
            page += PAGE
        return out


def snapshot_selection(memory: ProcessMemory, selection: Selection,
                       seen: dict[int, bytes] | None = None) -> MemorySnapshot:
    """Read every byte ``selection`` plans to copy (mapping by mapping, as the writer
    copies it) in as few system calls as possible. ``seen``: whole reads already made
    (address → bytes) that may serve a range without reading it again."""
    seen = seen or {}
    seen_starts = sorted(seen)
    blocks: dict[int, bytes] = {}
    wanted: list[tuple[int, int]] = []
    for piece in [*selection.memory, *selection.memory64]:
        for start, end, _region in selection.regions.segments(piece.start, piece.end):
            i = bisect.bisect_right(seen_starts, start) - 1
            if i >= 0:
                base = seen_starts[i]
                block = seen[base]
                if end <= base + len(block):
                    blocks[start] = block[start - base:end - base]
                    continue
            wanted.append((start, end - start))
    for (start, _size), data in zip(wanted, memory.read_many(wanted), strict=True):
        blocks[start] = data
    return MemorySnapshot(blocks)


# --- preflight ----------------------------------------------------------------------

def resolve_pid(pid: int) -> int:
    """The process (thread group) id of ``pid``; a thread id names its process.

    Raises ProcessNotFound if there is no such process or thread.
    """
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"pid must be an int, not {type(pid).__name__}")
    if pid <= 0:
        raise ProcessNotFound(errno.ESRCH, f"{pid} is not a valid process id (must be > 0)",
                              pid=pid)
    status = _read_status(pid)
    try:
        return int(status.get("Tgid", pid))
    except ValueError:
        return pid


def _read_status(pid: int) -> dict[str, str]:
    if pid <= 0:
        raise ProcessNotFound(errno.ESRCH, f"{pid} is not a valid process id (must be > 0)",
                              pid=pid)
    try:
        return _procfs.parse_status(_procfs.read_text(f"/proc/{pid}/status", pid))
    except ProcessNotFound:
        raise ProcessNotFound(errno.ESRCH, f"no process with pid {pid} exists (it may have "
                              f"exited); check the pid, e.g. with `ps -p {pid}`", pid=pid) from None


def _has_live_thread(pid: int) -> bool:
    """Whether a thread of ``pid`` other than its leader is alive: then a leader in state
    Z is not a dead process but a main thread that has exited, or the old leader while
    another thread executes a new program (found by tests/stress)."""
    try:
        tids = _procfs.task_ids(pid)
    except ProcessError:
        return False
    for tid in tids:
        if tid == pid:
            continue
        try:
            if _procfs.read_stat(pid, tid).state not in ("Z", "X"):
                return True
        except ProcessError:
            continue
    return False


def check_target(pid: int, status: dict[str, str] | None = None,
                 stat: _procfs.Stat | None = None) -> None:
    """Raise a clear error now if ``pid`` cannot be dumped; do nothing otherwise.

    Checks: the process exists, is not a zombie or a kernel thread, is not traced by
    someone else, and we may read its private /proc files (the same permission
    ptrace needs). Our own process passes: it is dumped through a helper process.
    ``status`` and ``stat``: the parsed /proc files if the caller has just read them.
    """
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"pid must be an int, not {type(pid).__name__}")
    if status is None:
        status = _read_status(pid)
    name = status.get("Name", "?")
    state = status.get("State", "")
    threads = int(status.get("Threads", "1") or 1)
    if (state.startswith("Z") and threads <= 1 or state.startswith("X")) \
            and not _has_live_thread(pid):
        raise InvalidTargetError(
            f"process {pid} ({name}) is a zombie: it has exited and only waits for its "
            "parent to reap it, so there is no memory or thread left to dump", pid=pid)
    if _is_kernel_thread(pid, stat):
        raise InvalidTargetError(
            f"pid {pid} ({name}) is a kernel thread: it has no user-space memory, threads or "
            "modules to dump; pick a user process", pid=pid)
    tracer = int(status.get("TracerPid", "0") or 0)
    if tracer:
        from . import _tracer_socket

        if _tracer_socket.held_by_us(pid, tracer):
            return  # our own tracer holds it: dumps are asked of it (it checks our uid)
        if pid != os.getpid():
            raise _already_traced(pid, name, tracer)
    if pid == os.getpid():
        return
    try:
        _readable_address_space(pid, name)
    except PermissionError as exc:
        uids = status.get("Uid", "?").split()
        gids = status.get("Gid", "?").split()
        if set(uids) == {str(os.geteuid())} and set(gids) == {str(os.getegid())}:
            # our own uid and gid everywhere, and still refused: the kernel's dumpable
            # flag (or an LSM) is what says no
            raise AccessDenied(exc.errno or errno.EACCES,
                               f"not allowed to inspect process {pid} ({name}) although it runs "
                               f"as our uid {uids[0]}: it is not dumpable (it called "
                               "prctl(PR_SET_DUMPABLE, 0), or started as a set-user-ID program "
                               "or with changed credentials); dumping it needs CAP_SYS_PTRACE "
                               "(run as root)", pid=pid) from None
        raise AccessDenied(exc.errno or errno.EACCES,
                           f"not allowed to inspect process {pid} ({name}) owned by uid "
                           f"{uids[0]}: {_PERMISSION_HINT}", pid=pid) from None


# How long a process whose address space is briefly unreadable (its leader thread
# exiting in the middle of an execve by another thread) is waited for.
EXEC_WAIT_SECONDS = 1.0


def _readable_address_space(pid: int, name: str) -> None:
    """Read a little of /proc/PID/auxv, which needs PTRACE_MODE_READ like ptrace
    (PermissionError when refused). While another thread of the process runs execve,
    the old leader is exiting and its /proc files say "no such process" for a few ms
    although the process lives on: wait for the new program (bounded), and say so if
    it does not come."""
    deadline = time.monotonic() + EXEC_WAIT_SECONDS
    while True:
        try:
            with open(f"/proc/{pid}/auxv", "rb") as f:
                f.read(16)
            return
        except (FileNotFoundError, ProcessLookupError):
            try:
                state = _read_status(pid).get("State", "")
            except ProcessNotFound:
                state = "X"
            if state.startswith(("Z", "X")) and not _has_live_threads(pid):
                raise ProcessNotFound(errno.ESRCH, f"process {pid} ({name}) exited",
                                      pid=pid) from None
            if time.monotonic() > deadline:
                raise ProcessError(
                    errno.EAGAIN, f"process {pid} ({name}) has no readable address space: "
                    "its main thread is exiting, or another thread is executing a new program "
                    "(execve); try again", pid=pid) from None
            time.sleep(0.002)


def _has_live_threads(pid: int) -> bool:
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tids:
        try:
            if _procfs.read_stat(pid, int(tid)).state not in ("Z", "X"):
                return True
        except ProcessError:
            continue
    return False


def _routed(pid: int, status: dict[str, str]) -> socket.socket | None:
    """A connection to the minidumpkit tracer (enable_crash_dumps, a Watcher) that holds
    ``pid``, if one does: a dump request goes through it, never a second tracer."""
    tracer = int(status.get("TracerPid", "0") or 0)
    if not tracer:
        return None
    from . import _tracer_socket

    return _tracer_socket.connect(pid, tracer)


def _already_traced(pid: int, name: str, tracer: int) -> AlreadyTraced:
    try:
        tracer_name = _procfs.read_text(f"/proc/{tracer}/comm").strip()
    except ProcessError:
        tracer_name = "?"
    command = (_procfs.try_read_bytes(f"/proc/{tracer}/cmdline") or b"").split(b"\0")
    ours = [n for n, arg in enumerate(command[:3])
            if os.path.basename(arg).startswith(b"minidumpkit")]
    if ours:  # python3 -m minidumpkit.crashdumps, minidumpkit run, python3 -m minidumpkit watch
        end = ours[0] + 1 + (os.path.basename(command[ours[0]]) == b"minidumpkit")
        shown = b" ".join([os.path.basename(command[0]), *command[1:end]]).decode(
            errors="replace")
        from . import _tracer_socket

        if _tracer_socket.held_by_us(pid, tracer):
            return AlreadyTraced(
                errno.EPERM,
                f"process {pid} ({name}) is held by minidumpkit's own tracer, pid {tracer} "
                f"({shown}); a process can have only one tracer: dumps of it go through that "
                "tracer (minidumpkit dump, dump()), but it cannot be traced or watched a "
                "second time; stop that tracer first", pid=pid)
        return AlreadyTraced(
            errno.EPERM,
            f"process {pid} ({name}) is held by minidumpkit's own tracer, pid {tracer} "
            f"({shown}), which does not take dump "
            "requests; use that tracer's triggers (--signal, --timer) or stop it, then try "
            "again", pid=pid)
    return AlreadyTraced(
        errno.EPERM,
        f"process {pid} ({name}) is already traced by pid {tracer} ({tracer_name}); a process "
        "can have only one tracer: detach that debugger or tracer (or let it finish) and try "
        "again", pid=pid)


def _is_kernel_thread(pid: int, stat: _procfs.Stat | None = None) -> bool:
    if stat is not None:
        return bool(stat.flags & _procfs.PF_KTHREAD)
    try:
        return bool(_procfs.read_stat(pid).flags & _procfs.PF_KTHREAD)
    except ProcessError:
        pass
    try:  # no stat: judge by the missing executable and address space
        os.readlink(f"/proc/{pid}/exe")
        return False
    except FileNotFoundError:
        # no executable: a kernel thread if it also has no mappings
        data = _procfs.try_read_bytes(f"/proc/{pid}/maps")
        return data == b""
    except OSError:
        return False


# --- capture ------------------------------------------------------------------------

@functools.cache
def _zero_context_fields() -> dict[str, Any]:
    zero = md.ContextAMD64.zero()
    return {f.name: getattr(zero, f.name) for f in dataclasses.fields(md.ContextAMD64)}


def _context(regs: dict[str, int], fxsave: bytes, debug: list[int]) -> md.ContextAMD64:
    """CONTEXT_AMD64 as Crashpad fills it: every GPR and segment, eflags, the debug
    registers, top-level MxCsr, and the FXSAVE image copied whole (CONTEXT_ALL)."""
    flt = md.XmmSaveArea32.unpack_from(fxsave)
    fields: dict[str, Any] = dict(_zero_context_fields())
    fields.update(
        context_flags=md.CONTEXT_AMD64_ALL,
        mx_csr=flt.mx_csr,
        seg_cs=regs["cs"] & 0xFFFF, seg_ds=regs["ds"] & 0xFFFF, seg_es=regs["es"] & 0xFFFF,
        seg_fs=regs["fs"] & 0xFFFF, seg_gs=regs["gs"] & 0xFFFF, seg_ss=regs["ss"] & 0xFFFF,
        eflags=regs["eflags"] & 0xFFFF_FFFF,
        dr0=debug[0], dr1=debug[1], dr2=debug[2], dr3=debug[3], dr6=debug[6], dr7=debug[7],
        flt_save=flt)
    for name in md.AMD64_GPRS:
        fields[name] = regs[name]
    fields["rip"] = regs["rip"]
    return md.ContextAMD64._from_fields(fields)


def _affinity(tid: int) -> int:
    try:
        return sum(1 << cpu for cpu in os.sched_getaffinity(tid) if cpu < 64)
    except OSError:
        return 0


# the largest XSAVE image a CPU reports today (AMX tiles included) is ~11 KiB
_XSTATE_MAX = 16 << 10


def _xstate(stop: ProcessStop, tid: int) -> bytes | None:
    """The thread's XSAVE image (NT_X86_XSTATE, standard format, as long as the CPU's),
    or None where the kernel or CPU has none."""
    ffi, _ = libc.load()
    buf = ffi.new("char[]", _XSTATE_MAX)
    iov = ffi.new("struct iovec *")
    iov.iov_base = buf
    iov.iov_len = _XSTATE_MAX
    if _ptrace_mod._ptrace(libc.PTRACE_GETREGSET, tid, libc.NT_X86_XSTATE, iov) == -1:
        return None  # ENODEV (no XSAVE), or the thread is gone: the plain context stands
    return bytes(ffi.buffer(buf, int(iov.iov_len)))


def _capture_thread(stop: ProcessStop, pid: int, tid: int, with_info: bool) -> CapturedThread:
    regs = stop.general_registers(tid)
    context = _context(regs, stop.fpu_registers(tid), stop.debug_registers(tid))
    st: _procfs.Stat | None = None
    if with_info:
        try:
            st = _procfs.read_stat(pid, tid)
        except ProcessError:
            pass  # ended while stopped (killed): its times are gone
    # stat's comm is the comm file's text unescaped; where no character needs escaping
    # they are the same, and one read per thread is spared
    name = st.comm if st is not None and _plain_comm(st.comm) else _procfs.thread_name(pid, tid)
    if st is None:
        return CapturedThread(tid=tid, name=name, context=context, teb=regs["fs_base"])
    return CapturedThread(
        tid=tid, name=name, context=context, teb=regs["fs_base"],
        create_time=_procfs.start_filetime(st.starttime),
        user_time=_procfs.ticks_to_filetime_units(st.utime),
        kernel_time=_procfs.ticks_to_filetime_units(st.stime), affinity=_affinity(tid))


def _plain_comm(comm: str) -> bool:
    """Whether /proc/.../comm shows ``comm`` as stat does: printable ASCII without the
    characters the kernel escapes there (backslash, quote; controls are not printable)."""
    return comm.isascii() and comm.isprintable() and "\\" not in comm and '"' not in comm


@dataclasses.dataclass
class _ModuleSpan:
    path: str
    key: tuple[str, str, int]
    start: int
    end: int
    # where the ELF image ends by its program headers; None where they cannot be read
    image_end: int | None = None


def _module_file(region: Region) -> bool:
    """Whether ``region`` maps a file that may be a module (device nodes never are)."""
    return region.path.startswith("/") and not region.path.startswith("/dev/")


def _module_spans(regions: list[Region], image_ends: dict[int, int] | None = None,
                  ) -> list[_ModuleSpan]:
    """Mapped ELF files: a mapping at file offset 0 (where the ELF headers are) starts a
    module, which runs to the end of the last mapping of the same file (path, device,
    inode) that belongs to the same load, over whatever lies between: the PROT_NONE
    gaps ld.so leaves, the holes the kernel leaves between the segments of a program it
    loads (a non-PIE node has one after its first text mapping), anonymous pieces.

    ``image_ends[start]`` is where the image whose headers are mapped at ``start`` ends,
    by its program headers (absent: they could not be read). A mapping of
    the same file starting before that belongs to the load, even at file offset 0 (lld's
    text segment shares the headers' file page when its first segment is small) and even
    far away (lld pads segments to ``-z max-page-size``). Where the headers cannot be
    read, a mapping belongs if no other file's mapping came between and it is adjacent
    or at a non-zero offset. A mapping after the image's end, at offset 0, is a new load
    (the same library loaded again). Device mappings (/dev/...) are never modules and
    never opened."""
    spans: list[_ModuleSpan] = []
    loads: dict[tuple[str, str, int], _ModuleSpan] = {}  # each file's latest load
    last_key: tuple[str, str, int] | None = None  # the file of the last file mapping
    for r in regions:
        if not r.path.startswith("/"):
            continue  # anonymous, [heap], [stack]...: between segments, or no module's
        key = (r.path, r.device, r.inode)
        span = loads.get(key)
        after_other_file, last_key = last_key != key, key
        if span is not None:
            if span.image_end is not None:
                belongs = r.start < span.image_end
            else:
                belongs = not after_other_file and (r.start == span.end or r.offset != 0)
            if belongs:
                span.end = r.end
                continue
        if r.offset == 0 and _module_file(r):
            span = _ModuleSpan(path=r.path, key=key, start=r.start, end=r.end,
                               image_end=(image_ends or {}).get(r.start))
            loads[key] = span
            spans.append(span)
        else:
            loads.pop(key, None)  # a piece of the file outside any load we saw start
    return spans


def _module_name(path: str) -> str:
    return path[:-len(" (deleted)")] if path.endswith(" (deleted)") else path


def _is_elf(memory: _PageReader, span: _ModuleSpan) -> bool:
    head = memory.read(span.start, 4)
    if len(head) == 4:
        return head == _elf.ELF_MAGIC
    try:  # the header page is not readable in memory: look at the file
        with open(_module_name(span.path), "rb") as f:
            return f.read(4) == _elf.ELF_MAGIC
    except OSError:
        return False


def _image_end(memory: _PageReader, start: int, path: str) -> int | None:
    """Where the ELF image whose headers are mapped at ``start`` ends, by its program
    headers in memory, else (header page not readable) by those of the file ``path``."""
    end = _elf.image_end(memory.read, start)
    if end is not None:
        return end
    try:
        with open(_module_name(path), "rb") as f:
            head = f.read(PAGE)  # ELF and program headers: the first page, as in memory
    except OSError:
        return None
    return _elf.image_end(lambda address, size: head[address - start:][:size], start)


def _modules(regions: list[Region], auxv: dict[int, int],
             memory: _PageReader) -> list[CapturedModule]:
    modules: list[CapturedModule] = []
    # every module's first page (ELF header, program headers, usually the build-id
    # note too) in one system call
    vdso = auxv.get(_procfs.AT_SYSINFO_EHDR, 0)
    heads = [r for r in regions if r.offset == 0 and _module_file(r)]
    memory.prefetch([r.start for r in heads] + ([vdso] if vdso else []))
    ends = {r.start: end for r in heads
            if (end := _image_end(memory, r.start, r.path)) is not None}
    spans = [span for span in _module_spans(regions, ends) if span.end - span.start >= PAGE]
    for span in spans:
        if not _is_elf(memory, span):
            continue
        build_id = _elf.build_id_from_memory(memory.read, span.start)
        if not build_id:
            build_id = _elf.build_id_from_file(_module_name(span.path)) or b""
        modules.append(CapturedModule(base=span.start, size=span.end - span.start,
                                      path=_module_name(span.path), build_id=build_id))
    for r in regions:
        if r.path == "[vdso]" or (vdso and r.start == vdso):
            build_id = _elf.build_id_from_memory(memory.read, r.start) or b""
            # Breakpad's and minidump-writer's name for the vDSO
            modules.append(CapturedModule(base=r.start, size=r.size, path="linux-gate.so",
                                          build_id=build_id))
            break
    # Readers treat module 0 as the main executable: the one holding the entry point.
    entry = auxv.get(_procfs.AT_ENTRY, 0)
    for i, mod in enumerate(modules):
        if mod.base <= entry < mod.base + mod.size:
            modules.insert(0, modules.pop(i))
            break
    return modules


_EDX_FLAGS = {"fpu": 0, "vme": 1, "de": 2, "pse": 3, "tsc": 4, "msr": 5, "pae": 6, "mce": 7,
              "cx8": 8, "apic": 9, "sep": 11, "mtrr": 12, "pge": 13, "mca": 14, "cmov": 15,
              "pat": 16, "pse36": 17, "pn": 18, "clflush": 19, "dts": 21, "acpi": 22, "mmx": 23,
              "fxsr": 24, "sse": 25, "sse2": 26, "ss": 27, "ht": 28, "tm": 29, "ia64": 30,
              "pbe": 31}
_AMD_EXT_EDX_FLAGS = {"syscall": 11, "mp": 19, "nx": 20, "mmxext": 22, "fxsr_opt": 25,
                      "pdpe1gb": 26, "rdtscp": 27, "lm": 29, "3dnowext": 30, "3dnow": 31}


def _cpuid_version(family: int, model: int, stepping: int) -> int:
    """CPUID leaf 1 EAX rebuilt from the decoded family/model/stepping /proc shows."""
    base_family, ext_family = (0xF, family - 0xF) if family >= 0xF else (family, 0)
    base_model, ext_model = model & 0xF, model >> 4
    return (stepping & 0xF) | base_model << 4 | base_family << 8 | ext_model << 16 \
        | (ext_family & 0xFF) << 20


@functools.cache
def system_info() -> CapturedSystem:
    """SystemInfo inputs: /proc/cpuinfo (as Breakpad reads it) and uname."""
    cpu = _procfs.parse_cpuinfo(_procfs.read_text("/proc/cpuinfo"))
    uname = os.uname()

    def num(key: str) -> int:
        try:
            return int(cpu.get(key, "0"), 0)
        except ValueError:
            return 0

    family, model, stepping = num("cpu family"), num("model"), num("stepping")
    flags = set(cpu.get("flags", "").split())
    vendor = cpu.get("vendor_id", "")
    amd_ext = 0
    if vendor == "AuthenticAMD":
        amd_ext = sum(1 << bit for name, bit in _AMD_EXT_EDX_FLAGS.items() if name in flags)
    return CapturedSystem(
        processor_architecture=md.ProcessorArchitecture.AMD64,
        processor_level=family & 0xFFFF,
        processor_revision=((model & 0xFF) << 8 | (stepping & 0xFF)),
        number_of_processors=min(max(num("count"), os.cpu_count() or 1, 1), 255),
        platform_id=md.PlatformId.LINUX,
        csd_version=f"{uname.sysname} {uname.release} {uname.version} {uname.machine}",
        cpu_vendor=vendor.encode("ascii", "replace")[:12].ljust(12, b"\0"),
        cpu_version_information=_cpuid_version(family, model, stepping),
        cpu_feature_information=sum(1 << bit for name, bit in _EDX_FLAGS.items() if name in flags),
        cpu_amd_extended_features=amd_ext)


def machine_streams() -> dict[int, bytes]:
    """The raw streams that describe the machine, not the process (/proc/cpuinfo and the
    distribution's release file): read before the target is stopped."""
    streams: dict[int, bytes] = {}
    cpuinfo = _procfs.try_read_bytes("/proc/cpuinfo")
    if cpuinfo is not None:
        streams[StreamType.LinuxCpuInfo] = cpuinfo
    release = _release_file()
    if release is not None:
        streams[StreamType.LinuxLsbRelease] = release
    return streams


@functools.cache
def _release_file() -> bytes | None:
    """The distribution's release file, read once per interpreter (it changes only when
    the system is upgraded; /proc/cpuinfo, whose clock figures move, is read each time)."""
    release = _procfs.try_read_bytes("/etc/lsb-release")
    if release is None:
        release = _procfs.try_read_bytes("/etc/os-release")
    return release


def _raw_streams(pid: int, maps: bytes, auxv: bytes,
                 machine: dict[int, bytes] | None) -> dict[int, bytes]:
    streams = dict(machine_streams() if machine is None else machine)
    status = _procfs.try_read_bytes(f"/proc/{pid}/status")
    if status is not None:
        streams[StreamType.LinuxProcStatus] = status
    for stream, name in ((StreamType.LinuxCmdLine, "cmdline"), (StreamType.LinuxEnviron, "environ")):
        data = _procfs.try_read_bytes(f"/proc/{pid}/{name}")
        if data is not None:
            streams[stream] = data
    streams[StreamType.LinuxAuxv] = auxv
    streams[StreamType.LinuxMaps] = maps
    return streams


def capture(pid: int, stop: ProcessStop, memory: ProcessMemory,
            dump_type: MiniDumpType, machine: dict[int, bytes] | None = None, *,
            requesting_tid: int | None = None,
            samples: dict[int, _threadstate.Sample] | None = None) -> ProcessCapture:
    """Fill a ProcessCapture of ``pid``, whose threads ``stop`` holds stopped.

    ``machine`` is :func:`machine_streams` read beforehand (read now if None).
    ``requesting_tid``: the thread that asked for the dump (a process dumping itself);
    the exception stream names it (Breakpad's DUMP_REQUESTED). Default: the main thread.
    ``samples``: :func:`._threadstate.sample` taken just before the stop (the threads'
    scheduler state and wchan; without it they are recorded as not sampled)."""
    maps = _procfs.read_bytes(f"/proc/{pid}/maps", pid)
    regions = _procfs.parse_maps(maps.decode("utf-8", "surrogateescape"))
    auxv_raw = _procfs.read_bytes(f"/proc/{pid}/auxv", pid)
    auxv = _procfs.parse_auxv(auxv_raw)
    with_info = bool(dump_type & MiniDumpType.WithThreadInfo)
    threads = []
    for tid in stop.tids:
        try:
            threads.append(_capture_thread(stop, pid, tid, with_info))
        except ProcessNotFound:
            if tid == pid:
                raise
            # a thread SIGKILLed (with its process) while stopped: its registers are gone
    if not threads:
        raise ProcessNotFound(errno.ESRCH, f"process {pid} exited during the dump", pid=pid)
    if dump_type & MiniDumpType.WithAvxXStateContext:
        threads = [dataclasses.replace(t, xstate=_xstate(stop, t.tid)) for t in threads]
    states, registers = _threadstate.collect(stop, pid, [t.tid for t in threads], memory,
                                             samples)
    proc_stat = _procfs.read_stat(pid)
    ticks = _procfs.clock_ticks()
    blamed = next((t for t in threads if t.tid == requesting_tid), threads[0])
    pages = _PageReader(memory)
    modules = _modules(regions, auxv, pages)
    if dump_type & BULK_TYPES:  # which pages exist, what the kernel would dump (smaps, pagemap)
        regions = _memory.annotate(
            pid, regions, elf_starts=frozenset(m.base for m in modules),
            private_pages=bool(dump_type & MiniDumpType.WithPrivateWriteCopyMemory))
    return ProcessCapture(
        pid=pid,
        threads=threads,
        regions=regions,
        modules=modules,
        memory=memory,
        system=system_info(),
        exception=CapturedException(thread_id=blamed.tid, address=blamed.pc),
        handles=(list(_procfs.iter_handles(pid))
                 if dump_type & MiniDumpType.WithHandleData else []),
        process_create_time=_procfs.boot_time() + proc_stat.starttime // ticks,
        process_user_time=proc_stat.utime // ticks,
        process_kernel_time=proc_stat.stime // ticks,
        raw_streams=_raw_streams(pid, maps, auxv_raw, machine),
        dso_debug=_elf.read_dso_debug(pages.read, auxv.get(_procfs.AT_PHDR, 0),
                                      auxv.get(_procfs.AT_PHNUM, 0)),
        capture_method=md.CAPTURE_STOP,
        timestamp=int(time.time()),
        thread_states=states,
        lock_memory=_threadstate.lock_memory(states, registers, pages),
    )


# --- the whole dump -----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class DumpTimes:
    """Where a stop-and-dump spent its time (perf_counter ns)."""

    threads: int
    stop_ns: int  # first PTRACE_SEIZE → every thread stopped
    pause_ns: int  # first PTRACE_SEIZE → last PTRACE_DETACH: what the target felt
    stats: WriteStats | None = None


# Up to this many planned bytes are read into memory while the target is stopped and
# written after it is released; a bigger dump is written while it is held, so that we
# never buffer more than this.
SNAPSHOT_LIMIT = 64 << 20


#: write_dump and LinuxSnapshot.write take ``python=False`` (no Python-aware capture)
PYTHON_CAPTURE = True


def write_dump(pid: int, out: BinaryIO, dump_type: MiniDumpType, *,
               policy: DumpPolicy | None = None, all_memory: bool = False,
               requesting_tid: int | None = None, python: bool = True) -> DumpTimes:
    """Write a minidump of ``pid`` to ``out`` (a seekable binary file).

    The target is stopped while its threads, /proc state and memory are captured and
    released afterwards, whatever happens. When what the dump copies is small (at most
    SNAPSHOT_LIMIT bytes, every dump type implemented today in practice) the memory is
    read into a snapshot during the stop and the file is written after the release;
    otherwise the file is written while the target is held. ``pid`` may name a
    thread; its process is dumped. ``policy`` answers the writer's questions.
    ``all_memory``: WithFullMemory copies every readable page, not only what the
    kernel's core dump would hold. ``requesting_tid``: see :func:`capture`.
    ``python``: when the target runs CPython, walk its runtime while it is stopped and
    add that memory and a MinidumpkitPythonStream (:mod:`._python_capture`).
    """
    from ..writer import SUPPORTED_TYPES, flag_names, record_pause, write_minidump

    unsupported = dump_type & ~SUPPORTED_TYPES
    if unsupported:  # refuse before the target is stopped, not half-way through
        raise UnsupportedError(
            f"MiniDumpType.{flag_names(unsupported)} is not implemented by the Linux writer "
            f"yet (it writes {flag_names(SUPPORTED_TYPES)}); leave it out")
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"pid must be an int, not {type(pid).__name__}")
    status = _read_status(pid)
    tgid = int(status.get("Tgid", pid) or pid)
    if tgid != pid:  # a thread id: dump its process
        pid, status = tgid, _read_status(tgid)
    routed = _routed(pid, status)
    if routed is not None:  # our own tracer holds it: it writes the dump
        if policy is not None:
            raise UnsupportedError(
                f"callbacks cannot be used for process {pid}: the minidumpkit tracer that "
                "holds it writes the dump in another process; pass callbacks=None")
        from . import _tracer_socket

        answer = _tracer_socket.request_dump(
            routed, pid, out, dump_type, all_memory=all_memory, python=python,
            requesting_tid=threading.get_native_id() if pid == os.getpid() else None)
        return DumpTimes(threads=int(answer.get("threads") or 0),
                         stop_ns=int(answer.get("stop_ns") or 0),
                         pause_ns=int(answer.get("pause_ns") or 0))
    if pid == os.getpid():
        if policy is not None:
            # The helper process that ptraces us cannot call back into this interpreter.
            raise UnsupportedError(
                "callbacks cannot be used when a process dumps itself (the dump is written "
                "by a helper process); dump from another process, or pass callbacks=None")
        from . import _selfdump

        return _selfdump.dump_self(out, dump_type, all_memory=all_memory, python=python)
    try:
        stat: _procfs.Stat | None = _procfs.read_stat(pid)
    except ProcessError:
        stat = None  # check_target tells why (gone, or a kernel thread without stat)
    check_target(pid, status, stat)
    if policy is None:
        policy = DumpPolicy()
    # Everything that does not depend on the target's state is done before it is stopped.
    libc.load()
    system_info()
    machine = machine_streams()
    stop = ProcessStop(pid, ppid=stat.ppid if stat is not None else None)
    held: WriteStats | None = None
    samples = _threadstate.sample(pid)  # the last thing before the stop (see its docs)
    with ProcessMemory(pid) as memory:
        with stop:
            cap = capture(pid, stop, memory, dump_type, machine, requesting_tid=requesting_tid,
                          samples=samples)
            py = _python_capture.capture_python(memory, cap.modules) if python else None
            if py is not None:
                cap.raw_streams[StreamType.MinidumpkitPythonStream] = py.stream
            job = _Planned(policy)
            recording = _RecordingMemory(memory)
            cap.memory = recording
            sel = select(cap, dump_type, policy, job.checkpoint, all_memory=all_memory)
            if py is not None:
                _python_capture.add_to_selection(sel, py.ranges)
            if sel.total_bytes <= SNAPSHOT_LIMIT:
                cap.memory = snapshot_selection(memory, sel, recording.blocks)
            else:  # too big to buffer: write while the threads are held
                cap.memory = memory
                cap.pause_ns = time.perf_counter_ns() - stop.stop_started_ns  # patched below
                held = write_minidump(cap, out, dump_type, policy=policy, selection=sel)
        # The pause is what the target felt: first PTRACE_SEIZE to last PTRACE_DETACH.
        pause_ns = stop.detached_ns - stop.stop_started_ns
        if held is None:
            cap.pause_ns = pause_ns
            stats: WriteStats = _write_buffered(cap, out, dump_type, policy, sel)
        else:  # the stream was written while the pause still ran: the real one goes in now
            record_pause(out, held, pause_ns)
            stats = held
    return DumpTimes(threads=len(cap.threads),
                     stop_ns=stop.stopped_ns - stop.stop_started_ns,
                     pause_ns=pause_ns, stats=stats)


# A dump whose planned memory is at most this big is assembled in memory and handed to
# ``out`` in one write (the writer's seeks and back-patches cost a system call each
# on a file).
BUFFER_LIMIT = 16 << 20


def _write_buffered(cap: ProcessCapture, out: BinaryIO, dump_type: MiniDumpType,
                    policy: DumpPolicy, sel: Selection) -> WriteStats:
    from ..writer import write_minidump

    if sel.total_bytes > BUFFER_LIMIT or sel.memory64:
        return write_minidump(cap, out, dump_type, policy=policy, selection=sel)
    buf = io.BytesIO()
    stats = write_minidump(cap, buf, dump_type, policy=policy, selection=sel)
    start = out.tell()
    out.write(buf.getbuffer())
    out.truncate()  # an r+b file may hold an older, longer dump (as the writer does)
    out.seek(start + stats.bytes_written)
    if stats.info_offset is None:
        return stats
    return dataclasses.replace(stats, info_offset=start + stats.info_offset)  # in ``out``


class _Planned:
    """The cancel poll :func:`select` makes while the target is stopped."""

    def __init__(self, policy: DumpPolicy) -> None:
        self.policy = policy

    def checkpoint(self) -> None:
        if self.policy.cancel():
            raise DumpCancelled("the dump was cancelled: DumpPolicy.cancel() returned True")


# --- a process the caller already traces (minidumpkit.watch) -------------------------

def write_held_dump(pid: int, stop: ProcessStop, out: BinaryIO, dump_type: MiniDumpType, *,
                    exception: CapturedException | None = None, all_memory: bool = False,
                    policy: DumpPolicy | None = None, python: bool = True) -> DumpTimes:
    """Write a minidump of ``pid``, a process the caller already traces (a watcher).

    ``stop`` is a :class:`~._ptrace.ProcessStop` subclass whose ``stop()`` holds the
    caller's tracees (PTRACE_INTERRUPT, no second PTRACE_SEIZE) and whose ``detach()``
    gives them back to the caller's tracer loop. ``exception``: the record to write (a
    crash signal; its thread must be held), else a requested dump blamed on the main
    thread. Otherwise as :func:`write_dump`, whose stop-capture-release steps it follows
    (``python``: the Python stacks of a CPython target, as there).
    """
    from ..writer import SUPPORTED_TYPES, flag_names, record_pause, write_minidump

    unsupported = dump_type & ~SUPPORTED_TYPES
    if unsupported:
        raise UnsupportedError(
            f"MiniDumpType.{flag_names(unsupported)} is not implemented by the Linux writer "
            f"yet (it writes {flag_names(SUPPORTED_TYPES)}); leave it out")
    policy = policy or DumpPolicy()
    machine = machine_streams()
    held: WriteStats | None = None
    with ProcessMemory(pid) as memory:
        with stop:
            cap = capture(pid, stop, memory, dump_type, machine)
            if exception is not None:
                cap.exception = exception
            py = _python_capture.capture_python(memory, cap.modules) if python else None
            if py is not None:
                cap.raw_streams[StreamType.MinidumpkitPythonStream] = py.stream
            recording = _RecordingMemory(memory)
            cap.memory = recording
            sel = select(cap, dump_type, policy, _Planned(policy).checkpoint,
                         all_memory=all_memory)
            if py is not None:
                _python_capture.add_to_selection(sel, py.ranges)
            if sel.total_bytes <= SNAPSHOT_LIMIT:
                cap.memory = snapshot_selection(memory, sel, recording.blocks)
            else:  # too big to buffer: write while the threads are held
                cap.memory = memory
                cap.pause_ns = time.perf_counter_ns() - stop.stop_started_ns
                held = write_minidump(cap, out, dump_type, policy=policy, selection=sel)
        pause_ns = stop.detached_ns - stop.stop_started_ns
        if held is None:
            cap.pause_ns = pause_ns
            stats: WriteStats = _write_buffered(cap, out, dump_type, policy, sel)
        else:
            record_pause(out, held, pause_ns)
            stats = held
    return DumpTimes(threads=len(cap.threads), stop_ns=stop.stopped_ns - stop.stop_started_ns,
                     pause_ns=pause_ns, stats=stats)


# --- snapshots (PSS semantics; the implementation is in _linux_snapshot / _clone) ----

def take_snapshot(pid: int, flags: int, context_flags: int, **options: Any) -> Any:
    """A :class:`~._linux_snapshot.LinuxSnapshot` (the SnapshotBackend of Dumper.snapshot)."""
    from ._linux_snapshot import LinuxSnapshot

    return LinuxSnapshot(pid, flags, context_flags, **options)
