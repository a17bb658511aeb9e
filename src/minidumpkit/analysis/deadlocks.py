"""Who waits for whom: every thread's wait, the wait-for graph, its cycles (deadlocks)
and chains (docs/locks.md).

    import minidumpkit
    from minidumpkit.analysis import wait_graph

    with minidumpkit.open_minidump("app.dmp") as dump:
        graph = wait_graph(dump)
        print(graph)              # the verdict, the deadlocks, the chains
        graph.to_json()           # the same as plain JSON types

A thread's wait (:class:`ThreadWait`) comes from its blocking system call
(:mod:`.threads`) and, for a futex, from :func:`.locks.futex_wait` with the stack walker's
frames. An edge goes from a waiting thread to the thread its object names as owner: a
mutex's ``__owner``, a robust or PI mutex's futex word, a write-held rwlock's
``__cur_writer``, a joined thread. Condition variables and semaphores have no owner: no
edge. A thread blocked on a descriptor (read, recv, poll, ...), sleeping or waiting for a
child ends a chain. Each thread waits for one thing, so every thread has at most one
outgoing edge and a cycle is found by following edges.

What cannot be told is ``unknown`` with the reason (no state stream and registers that
show no blocked call, lock memory not in the dump, a libc whose layouts are not known),
never a guess.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import format as md
from .._lazydataclass import lazy_dataclass, replace
from .locks import FrameLike, FutexWait, WaitKind, futex_wait
from .threads import BlockingCall, ThreadStatus, thread_status

if TYPE_CHECKING:
    from .._pyruntime import PythonRuntime
    from .._streams import Module, Thread
    from ..reader import Minidump

__all__ = ["Chain", "Deadlock", "DeadlockLock", "ThreadWait", "WaitGraph", "libc_problem",
           "wait_graph"]

# kinds of a wait beyond the futex ones (WaitKind)
IO, POLL, SLEEP, CHILD, SIGNAL, SYSCALL, RUNNING, CRASHED, UNKNOWN = (
    "io", "poll", "sleep", "child", "signal", "syscall", "running", "crashed", "unknown")
_IO_CALLS = frozenset({"read", "readv", "pread64", "preadv", "preadv2", "recvfrom", "recvmsg",
                       "recvmmsg", "write", "writev", "pwrite64", "pwritev", "pwritev2",
                       "sendto", "sendmsg", "sendmmsg", "accept", "accept4", "connect",
                       "flock", "fcntl", "ioctl", "splice", "tee", "sendfile", "fsync",
                       "fdatasync", "io_uring_enter"})
_POLL_CALLS = frozenset({"poll", "ppoll", "select", "pselect6", "epoll_wait", "epoll_pwait",
                         "epoll_pwait2"})
_SLEEP_CALLS = frozenset({"nanosleep", "clock_nanosleep"})
_CHILD_CALLS = frozenset({"wait4", "waitid"})
_SIGNAL_CALLS = frozenset({"pause", "rt_sigsuspend", "rt_sigtimedwait"})
# the futex kinds whose object records an owner: a wait on one without a known owner
# is "unknown" (the owner exists, the dump cannot name it)
_OWNED = frozenset({WaitKind.MUTEX, WaitKind.ROBUST_MUTEX, WaitKind.PI_MUTEX, WaitKind.JOIN})
MUTEX_COUNT = 4        # glibc x86_64 pthread_mutex_t.__count: a recursive mutex's depth
MUTEX_KIND = 16
MUTEX_TYPE_RECURSIVE = 1
# glibc's lock layouts used by .locks: measured on 2.36; the public structures
# (bits/struct_mutex.h, struct_rwlock.h, pthreadtypes.h) are fixed since the new rwlock
# and condvar of 2.25
_GLIBC_LAYOUTS_SINCE = (2, 25)
_GLIBC_FILE = re.compile(r"libc-(\d+)\.(\d+)(?:\.\d+)?\.so")
_GLIBC_VERSION = re.compile(rb"GNU C Library [^\n]*?release version (\d+)\.(\d+)")
# the Python-level kinds (.pylocks) in words
_LABELS = {"critical_section": "critical section", "gil": "the GIL", "python_rlock": "threading.RLock", "python_lock": "threading.Lock"}


@lazy_dataclass
class ThreadWait:
    """What one thread waits for.

    ``kind``: a futex kind (``mutex``, ``robust_mutex``, ``pi_mutex``, ``rwlock``,
    ``condvar``, ``semaphore``, ``join``, ``barrier``), ``critical_section`` (Windows,
    :mod:`.winlocks`; ``hold_count``: the owner's recursion count) or ``io`` (read, recv, accept, ...
    on ``fd``), ``poll`` (poll, select, epoll_wait), ``sleep``, ``child`` (wait4, waitid),
    ``signal`` (pause, sigsuspend), ``syscall`` (another blocking call), ``running`` (not
    blocked), ``crashed`` (the thread of the dump's exception) or ``unknown``.
    ``address``: the futex word; ``object_address``: the lock object. ``owner_tid``: the thread holding it (the edge of the wait-for graph).
    ``frame``: the frame where it waits (the innermost outside the module of the call,
    e.g. the program's function that called pthread_mutex_lock). ``unknown``: why the
    kind or the owner cannot be told (empty when they are known); ``note``: more words
    (why there is no owner, the owner died, a recursive mutex's depth).
    """

    thread_id: int
    name: str | None
    kind: str
    syscall: str | None = None
    call: str = ""  # the call in words: read(fd 0 -> pipe:[123])
    address: int | None = None
    object_address: int | None = None
    fd: int | None = None
    fd_target: str | None = None
    pid: int | None = None
    owner_tid: int | None = None
    owner_died: bool = False
    hold_count: int | None = None
    frame: str | None = None
    unknown: str = ""
    note: str = ""
    evidence: str = ""

    @property
    def label(self) -> str:
        return f'thread {self.thread_id} "{self.name or ""}"'

    @property
    def lock(self) -> str | None:
        """``mutex 0x...`` for a lock wait, else None."""
        if self.kind in (IO, POLL, SLEEP, CHILD, SIGNAL, SYSCALL, RUNNING, CRASHED, UNKNOWN):
            return None
        address = self.object_address if self.object_address is not None else self.address
        label = _LABELS.get(self.kind, self.kind)
        if self.kind in _LABELS and self.object_address is None and address is not None:
            return f"{label} (semaphore 0x{address:x})"  # the object itself is not known
        return f"{label} 0x{address:x}" if address is not None else label

    def describe(self, names: Mapping[int, str | None] | None = None) -> str:
        """One line: ``mutex 0x55... held by thread 12 "worker" (in locker)``."""
        names = names or {}
        if self.kind == UNKNOWN:
            where = f", in {self.frame}" if self.frame else ""
            text = f"unknown{where}: {self.unknown}"
            return f"{self.call}: {text}" if self.call else text
        elif self.kind == RUNNING:
            text = f"nothing (running: {self.note})" if self.note else "nothing (running)"
        elif self.kind == CRASHED:
            text = f"nothing: it crashed ({self.note})"
        elif self.lock is None:
            text = self.call
        elif self.kind == WaitKind.JOIN.value and self.owner_tid is not None:
            text = f"thread {self.owner_tid}{_quoted(names, self.owner_tid)} to exit " \
                   "(pthread_join)"
        else:
            text = self.lock
            if self.owner_tid is not None:
                text += f" held by thread {self.owner_tid}{_quoted(names, self.owner_tid)}"
                if self.hold_count and self.hold_count > 1:
                    text += f" ({self.hold_count} times)"
            if self.unknown:
                text += f", owner unknown: {self.unknown}"
            elif self.note and self.owner_tid is None:
                text += f" ({self.note})"
            elif self.owner_died:
                text += " (owner died)"
        if self.frame and self.kind != RUNNING:
            text += f" in {self.frame}"
        return text

    def phrase(self, names: Mapping[int, str | None] | None = None) -> str:
        """``for mutex 0x... held by ...`` or ``in read(fd 0 -> pipe:[...])``: what
        follows "waits" in a sentence."""
        text = self.describe(names)
        if self.lock is not None or self.kind == UNKNOWN:
            return f"for {text}"
        if self.kind == RUNNING:
            return "for nothing: it is running" + (f" ({self.note})" if self.note else "")
        if self.kind == CRASHED:
            return f"for nothing: it crashed ({self.note})"
        return f"in {text}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "syscall": self.syscall, "call": self.call,
                "address": _hex(self.address), "object_address": _hex(self.object_address),
                "fd": self.fd, "fd_target": self.fd_target, "pid": self.pid,
                "owner_tid": self.owner_tid, "owner_died": self.owner_died,
                "hold_count": self.hold_count, "frame": self.frame,
                "unknown": self.unknown or None, "note": self.note, "evidence": self.evidence}


@lazy_dataclass
class DeadlockLock:
    """One edge of a cycle: ``waiter`` waits for the lock ``holder`` holds."""

    address: int
    kind: str
    waiter: int
    holder: int

    def to_json(self) -> dict[str, Any]:
        return {"address": f"0x{self.address:x}", "kind": self.kind, "waiter": self.waiter,
                "holder": self.holder}


@lazy_dataclass
class Deadlock:
    """A cycle of the wait-for graph: ``threads[i]`` waits for ``locks[i]``, held by
    ``threads[i + 1]`` (the last by the first). ``lines``: one per thread, in words."""

    threads: tuple[int, ...]
    locks: tuple[DeadlockLock, ...]
    lines: tuple[str, ...]

    def __str__(self) -> str:
        n = len(self.threads)
        return "\n".join([f"DEADLOCK: {n} thread{'s' if n != 1 else ''}",
                          *(f"  {line}" for line in self.lines)])

    def to_json(self) -> dict[str, Any]:
        return {"threads": list(self.threads), "locks": [lk.to_json() for lk in self.locks],
                "lines": list(self.lines)}


@lazy_dataclass
class Chain:
    """Threads each waiting for the next; the last waits on something that is not a
    thread (``end``), or is in a deadlock (``into_deadlock``: its index)."""

    threads: tuple[int, ...]
    end: str
    into_deadlock: int | None = None
    text: str = ""

    def __str__(self) -> str:
        return self.text

    def to_json(self) -> dict[str, Any]:
        return {"threads": list(self.threads), "end": self.end,
                "into_deadlock": self.into_deadlock, "text": self.text}


@lazy_dataclass
class WaitGraph:
    """Every thread's wait (``waits``, in the dump's thread order), the ``deadlocks``
    (cycles) and the ``chains`` (paths of two threads or more that end elsewhere)."""

    waits: dict[int, ThreadWait]
    deadlocks: list[Deadlock]
    chains: list[Chain]
    problem: str = ""  # why nothing could be told for any thread (another libc, arch)

    @property
    def unknown(self) -> list[ThreadWait]:
        return [w for w in self.waits.values() if w.unknown]

    def edges(self) -> dict[int, int]:
        """{waiting thread: the thread it waits for}, owners in the dump only."""
        return {tid: w.owner_tid for tid, w in self.waits.items()
                if w.owner_tid is not None and w.owner_tid in self.waits}

    def verdict(self) -> list[str]:
        """The lines ``minidumpkit info`` leads with."""
        if self.deadlocks:
            return [line for d in self.deadlocks for line in str(d).splitlines()]
        head = "no deadlock"
        if self.problem:
            head += f" found, but {self.problem}"
        elif self.unknown:
            head += f" proven: {len(self.unknown)} thread(s) unknown"
        return [head]

    def __str__(self) -> str:
        lines = self.verdict()
        lines += [f"chain: {c}" for c in self.chains]
        names = {tid: w.name for tid, w in self.waits.items()}
        lines += [f"{w.label} waits: {w.describe(names)}" for w in self.waits.values()]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<WaitGraph {len(self.waits)} threads, {len(self.deadlocks)} deadlock(s), "
                f"{len(self.chains)} chain(s), {len(self.unknown)} unknown>")

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))

    def to_json(self) -> dict[str, Any]:
        return {"threads": [{"id": tid, "name": w.name, "wait": w.to_json()}
                            for tid, w in self.waits.items()],
                "deadlocks": [d.to_json() for d in self.deadlocks],
                "chains": [c.to_json() for c in self.chains], "problem": self.problem or None}


def _hex(value: int | None) -> str | None:
    return None if value is None else f"0x{value:x}"


def _quoted(names: Mapping[int, str | None], tid: int) -> str:
    return f' "{names.get(tid) or ""}"'


# --- the libc whose layouts are used ---------------------------------------------------------

def libc_problem(dump: Minidump) -> str:
    """Why the glibc lock layouts cannot be applied to ``dump`` ("" when they can)."""
    system = dump.system_info
    if system is None:
        return "no SystemInfo stream: the operating system and architecture are not known"
    if system.os not in ("Linux", "Android"):
        covered = (" (of Windows waits only critical sections, x64, are told: not SRW "
                   "locks, condition variables nor waits on handles)") \
            if system.os.startswith("Windows") else ""
        return f"a {system.os} dump: the lock analysis reads Linux glibc objects{covered}"
    if system.architecture != md.ProcessorArchitecture.AMD64:
        return "not an x86_64 dump (the lock layouts are glibc x86_64's)"
    modules: list[Module] = dump.modules
    names = [m.basename for m in modules]
    if any(n.startswith("ld-musl") or n.startswith("libc.musl") for n in names):
        return "the program uses musl libc (the lock layouts are glibc's)"
    libc = next((m for m in modules if m.basename.startswith("libc.so.6")
                 or _GLIBC_FILE.fullmatch(m.basename)), None)
    if libc is None:
        return "no glibc (libc.so.6) among the modules: the lock layouts are glibc's"
    named = _GLIBC_FILE.fullmatch(libc.basename)  # libc-2.19.so: older glibc's file name
    version = (int(named.group(1)), int(named.group(2))) if named else _glibc_version(libc)
    if version is not None and version < _GLIBC_LAYOUTS_SINCE:
        return (f"glibc {version[0]}.{version[1]}: the lock layouts used are those of glibc "
                "2.25 and later")
    return ""


def _glibc_version(libc: Module) -> tuple[int, int] | None:
    """glibc's version from its file on this machine, when the file's build id is the
    one the dump records (None if it cannot be checked)."""
    from .elf import ElfError, ElfFile

    try:
        elf = ElfFile(libc.name)
    except (ElfError, OSError):
        return None
    try:
        if libc.build_id is None or elf.build_id != libc.build_id:
            return None
        # the banner is in .rodata: searched there in the mapping, not in a copy of the
        # whole file (a tenth of the bytes)
        rodata = elf.section_bytes(".rodata")
        if rodata is not None:
            found = _GLIBC_VERSION.search(rodata)
            version = None if found is None else (int(found.group(1)), int(found.group(2)))
            del found, rodata
            if version is not None:
                return version
        with open(libc.name, "rb") as f:
            found = _GLIBC_VERSION.search(f.read())
    except (OSError, ElfError):
        return None
    finally:
        elf.close()
    return None if found is None else (int(found.group(1)), int(found.group(2)))


# --- one thread's wait -----------------------------------------------------------------------

def _waiting_frame(frames: Sequence[FrameLike] | None) -> str | None:
    """The innermost frame outside the module of frame #0 (libc, for a call made through
    it): the code that asked to wait."""
    if not frames:
        return None
    first_module = getattr(frames[0], "module", None)
    for frame in frames:
        if getattr(frame, "module", None) != first_module:
            return _frame_words(frame)
    named = next((f for f in frames if f.function), None)
    return None if named is None else _frame_words(named)


def _frame_words(frame: FrameLike) -> str:
    """``locker (app.c:42)``, ``aeMain (redis-server)`` or ``libjemalloc.so.2+0x39ad8``."""
    module = getattr(frame, "module_basename", None)
    if frame.function is None:
        offset = getattr(frame, "module_offset", None)
        if module is not None and offset is not None:
            return f"{module}+0x{offset:x}"
        pc = getattr(frame, "pc", None)
        return "?" if pc is None else f"0x{pc:x}"
    text = frame.function
    source = getattr(frame, "source_file", None)
    if source:
        text += f" ({os.path.basename(source)}:{getattr(frame, 'source_line', None)})"
    elif module:
        text += f" ({module})"
    return text


def _from_call(status: ThreadStatus, call: BlockingCall) -> ThreadWait:
    d = call.details
    base = ThreadWait(status.thread_id, status.name, SYSCALL, syscall=call.name,
                      call=call.describe())
    name = call.name
    if name is None:
        return replace(base, kind=UNKNOWN, unknown="restart_syscall: the call "
                                   "it restarts is not told by its call site")
    if name in _IO_CALLS:
        return replace(base, kind=IO, fd=d.get("fd"), fd_target=d.get("fd_target"))
    if name in _POLL_CALLS:
        return replace(base, kind=POLL, fd=d.get("fd"),
                                   fd_target=d.get("fd_target"))
    if name in _SLEEP_CALLS:
        return replace(base, kind=SLEEP)
    if name in _CHILD_CALLS:
        return replace(base, kind=CHILD, pid=d.get("pid"))
    if name in _SIGNAL_CALLS:
        return replace(base, kind=SIGNAL)
    return base


def _from_futex(dump: Minidump, status: ThreadStatus, call: BlockingCall,
                wait: FutexWait, libc: str) -> ThreadWait:
    base = ThreadWait(status.thread_id, status.name, wait.kind.value, syscall="futex",
                      call=call.describe(), address=wait.address,
                      object_address=wait.object_address, evidence=wait.evidence)
    if wait.kind is WaitKind.UNKNOWN:
        return replace(base, unknown=wait.reason)
    if libc and wait.kind in (WaitKind.MUTEX, WaitKind.RWLOCK):
        # told by the frame, read with glibc's layout: not for another libc
        return replace(base, unknown=libc)
    out = replace(base, owner_tid=wait.owner_tid, owner_died=wait.owner_died)
    if wait.owner_tid is None:
        if wait.kind in _OWNED or "not in the dump" in wait.reason:
            return replace(out, unknown=wait.reason or "the owner is not recorded")
        return replace(out, note=wait.reason)
    if dump.thread(wait.owner_tid) is None:
        return replace(out, note=f"owner {wait.owner_tid} is not a thread of the "
                                   "dump: it exited holding the lock (orphaned)")
    if wait.kind is WaitKind.MUTEX:
        kind = _u32(dump, wait.address + MUTEX_KIND)
        count = _u32(dump, wait.address + MUTEX_COUNT)
        if kind is not None and kind & 3 == MUTEX_TYPE_RECURSIVE and count:
            out = replace(out, hold_count=count)
    return out


def _u32(dump: Minidump, address: int) -> int | None:
    from ..errors import MemoryNotCaptured

    try:
        return dump.memory.read_u32(address)
    except (MemoryNotCaptured, ValueError):
        return None


def thread_wait(dump: Minidump, thread: Thread, frames: Sequence[FrameLike] | None = None,
                *, libc: str | None = None) -> ThreadWait:
    """:class:`ThreadWait` of one of ``dump.threads``; ``frames``: its call stack,
    innermost first (the stack walker's frames)."""
    if libc is None:
        libc = libc_problem(dump)
    status = thread_status(dump, thread)
    call = status.call
    frame = _waiting_frame(frames)
    crash = dump.exception
    if crash is not None and not crash.requested and crash.thread_id == thread.thread_id:
        return ThreadWait(thread.thread_id, thread.name, CRASHED, note=crash.reason,
                          frame=_frame_words(frames[0]) if frames else None)
    if call is None:
        if status.note.startswith("unknown"):
            return ThreadWait(thread.thread_id, thread.name, UNKNOWN,
                              unknown=status.note.removeprefix("unknown: "), frame=frame)
        return ThreadWait(thread.thread_id, thread.name, RUNNING, note=status.note,
                          frame=frame)
    if call.name == "futex":
        wait = futex_wait(dump, thread, frames)
        if wait is not None:
            return replace(_from_futex(dump, status, call, wait, libc), frame=frame)
    return replace(_from_call(status, call), frame=frame)


# --- the graph -------------------------------------------------------------------------------

def wait_graph(dump: Minidump, *, frames: Mapping[int, Sequence[FrameLike]] | None = None,
               symbol_paths: Iterable[str | os.PathLike[str]] = (),
               python: PythonRuntime | bool | None = None) -> WaitGraph:
    """Every thread's wait, the deadlocks and the chains of ``dump``.

    ``frames``: {thread id: call stack, innermost first}; by default every thread is
    walked with :func:`~minidumpkit.analysis.walk_stacks` (``symbol_paths`` passed on).
    An x64 Windows dump's critical-section waits (:mod:`.winlocks`) are found with the
    modules' PE images from the dump or from ``symbol_paths`` (files of the modules'
    names), whatever ``frames`` is.
    ``python``: the dump's Python stacks (:func:`~minidumpkit.analysis.python_stacks`),
    to tell waits for the GIL, a ``threading.RLock`` or a ``threading.Lock``
    (:mod:`.pylocks`); by default read when the dump has a python module; False: not.
    Raises only :class:`~minidumpkit.MinidumpFormatError` for a malformed dump.
    """
    symbol_paths = tuple(symbol_paths)  # used twice: a generator would be spent by the walk
    if frames is None:
        from . import walk_stacks

        frames = {cs.thread_id: cs.frames for cs in walk_stacks(dump, symbol_paths=symbol_paths)}
    libc = libc_problem(dump)
    system = dump.system_info
    waits = {t.thread_id: thread_wait(dump, t, frames.get(t.thread_id), libc=libc)
             for t in dump.threads}
    if system is not None and system.os.startswith("Windows"):
        waits = _windows_waits(dump, waits, symbol_paths)
    if python is None:
        python = any("python" in m.basename for m in dump.modules)
    if python is True:
        from .python import python_stacks

        python = python_stacks(dump)
    if python:
        from .pylocks import python_waits

        waits = python_waits(dump, python, waits, frames)
    deadlocks = _cycles(waits)
    return WaitGraph(waits, deadlocks, _chains(waits, deadlocks), problem=libc)


def _windows_waits(dump: Minidump, waits: dict[int, ThreadWait],
                   symbol_paths: Iterable[str | os.PathLike[str]]) -> dict[int, ThreadWait]:
    """The threads of an x64 Windows dump in ``RtlEnterCriticalSection`` (:mod:`.winlocks`):
    the section and its owner, or unknown with the reason."""
    from .winlocks import critical_section_waits, ntdll_problem

    paths = list(symbol_paths)
    problem = ntdll_problem(dump, paths)
    if problem:
        return {tid: w if not w.unknown else replace(
            w, unknown=f"{w.unknown}; critical sections are not told: {problem}")
            for tid, w in waits.items()}
    out = dict(waits)
    for tid, cs in critical_section_waits(dump, paths).items():
        name = waits[tid].name
        if cs.section is None:
            out[tid] = ThreadWait(tid, name, UNKNOWN, call=f"critical section ({cs.function})",
                                  unknown=cs.reason, frame=cs.frame)
        else:
            out[tid] = ThreadWait(tid, name, "critical_section",
                                  object_address=cs.section.address,
                                  owner_tid=cs.section.owner_tid,
                                  hold_count=cs.section.recursion_count, frame=cs.frame,
                                  evidence=f"{cs.function} in ntdll.dll; the section's "
                                  "OwningThread")
    return out


def _next(waits: Mapping[int, ThreadWait], tid: int) -> int | None:
    owner = waits[tid].owner_tid
    return owner if owner is not None and owner in waits else None


def _cycles(waits: Mapping[int, ThreadWait]) -> list[Deadlock]:
    """Each thread has at most one outgoing edge: follow it from every thread; a walk
    that comes back to a thread of its own path closed a cycle."""
    done: set[int] = set()
    out: list[Deadlock] = []
    for start in waits:
        path: list[int] = []
        on_path: dict[int, int] = {}
        tid: int | None = start
        while tid is not None and tid not in done and tid not in on_path:
            on_path[tid] = len(path)
            path.append(tid)
            tid = _next(waits, tid)
        if tid is not None and tid in on_path:
            out.append(_deadlock(waits, path[on_path[tid]:]))
        done.update(path)
    return out


def _deadlock(waits: Mapping[int, ThreadWait], cycle: list[int]) -> Deadlock:
    names = {tid: w.name for tid, w in waits.items()}
    locks, lines = [], []
    for i, tid in enumerate(cycle):
        wait = waits[tid]
        holder = cycle[(i + 1) % len(cycle)]
        held = waits[cycle[i - 1]]  # what the thread before it waits for, this one holds
        address = wait.object_address if wait.object_address is not None else wait.address
        locks.append(DeadlockLock(address or 0, wait.kind, tid, holder))
        holds = f"holds {held.lock} and " if held.lock and held.kind != WaitKind.JOIN.value \
            else ""
        lines.append(f"{wait.label} {holds}waits {wait.phrase(names)}")
    return Deadlock(tuple(cycle), tuple(locks), tuple(lines))


def _chains(waits: Mapping[int, ThreadWait], deadlocks: list[Deadlock]) -> list[Chain]:
    """The longest paths: from each thread nobody waits for, through its edges."""
    in_cycle = {tid: i for i, d in enumerate(deadlocks) for tid in d.threads}
    waited_for = {_next(waits, tid) for tid in waits} - {None}
    names = {tid: w.name for tid, w in waits.items()}
    out = []
    for start in waits:
        if start in waited_for or start in in_cycle or _next(waits, start) is None:
            continue
        path = [start]
        tid = _next(waits, start)
        while tid is not None and tid not in in_cycle and tid not in path:
            path.append(tid)
            tid = _next(waits, tid)
        into = in_cycle.get(tid) if tid is not None else None
        if into is not None and tid is not None:
            path.append(tid)
        last = waits[path[-1]]
        parts = [f"{waits[path[0]].label} waits {waits[path[0]].phrase(names)}"]
        for tid in path[1:]:
            parts.append(f"{waits[tid].label}, which "
                         + (f"is in deadlock {into + 1}" if into is not None and tid == path[-1]
                            else f"waits {waits[tid].phrase(names)}"))
        end = f"deadlock {into + 1}" if into is not None else last.describe(names)
        out.append(Chain(tuple(path), end, into, "; ".join(parts)))
    return out
