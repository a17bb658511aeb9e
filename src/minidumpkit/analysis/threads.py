"""What each thread of a dump was doing: its scheduler state and the system call it is
blocked in, with the call's arguments decoded (docs/threads.md).

Needs no stack walker. The facts come from minidumpkit's thread state stream when the
dump has one (Linux dumps written by minidumpkit: state, wchan, ``orig_rax``,
``restart_syscall`` mapped back); for any other x86_64 Linux dump they are inferred from
the thread's context (``rax`` holding -ERESTART*) and the captured code before its pc
(``mov $nr, %eax; syscall``), and ``source`` says so.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from .. import format as md
from .._lazydataclass import field, lazy_dataclass
from .._syscalls import ERESTART, RESTART_SYSCALL, syscall_at_call_site, syscall_name
from ..errors import MemoryNotCaptured, MinidumpFormatError

if TYPE_CHECKING:
    from .._streams import Thread, ThreadState
    from ..reader import Minidump

__all__ = ["BlockingCall", "ThreadStatus", "blocking_call", "stream_problem", "thread_status",
           "thread_states", "thread_statuses"]

# x86_64 system call argument registers, in order
ARG_REGISTERS = ("rdi", "rsi", "rdx", "r10", "r8", "r9")

FUTEX_PRIVATE = 128
FUTEX_CLOCK_REALTIME = 256
FUTEX_COMMANDS = {0: "FUTEX_WAIT", 1: "FUTEX_WAKE", 2: "FUTEX_FD", 3: "FUTEX_REQUEUE",
                  4: "FUTEX_CMP_REQUEUE", 5: "FUTEX_WAKE_OP", 6: "FUTEX_LOCK_PI",
                  7: "FUTEX_UNLOCK_PI", 8: "FUTEX_TRYLOCK_PI", 9: "FUTEX_WAIT_BITSET",
                  10: "FUTEX_WAKE_BITSET", 11: "FUTEX_WAIT_REQUEUE_PI",
                  12: "FUTEX_CMP_REQUEUE_PI", 13: "FUTEX_LOCK_PI2"}
CLOCKS = {0: "CLOCK_REALTIME", 1: "CLOCK_MONOTONIC", 2: "CLOCK_PROCESS_CPUTIME_ID",
          3: "CLOCK_THREAD_CPUTIME_ID", 4: "CLOCK_MONOTONIC_RAW", 5: "CLOCK_REALTIME_COARSE",
          6: "CLOCK_MONOTONIC_COARSE", 7: "CLOCK_BOOTTIME"}
# calls whose first argument is a file descriptor worth naming
_FD_FIRST = frozenset({"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv",
                       "pwritev", "preadv2", "pwritev2", "recvfrom", "recvmsg", "recvmmsg",
                       "sendto", "sendmsg", "sendmmsg", "accept", "accept4", "connect",
                       "flock", "fsync", "fdatasync", "ioctl", "fcntl", "splice", "tee",
                       "epoll_wait", "epoll_pwait", "epoll_pwait2", "sync_file_range",
                       "io_uring_enter", "fallocate", "sendfile"})
_POLLFD = struct.Struct("<ihh")
_TIMESPEC = struct.Struct("<qq")
_MAX_POLL_FDS = 64


def futex_op_name(op: int) -> str:
    """``"FUTEX_WAIT_BITSET|FUTEX_PRIVATE_FLAG|FUTEX_CLOCK_REALTIME"`` for 393."""
    cmd = op & ~(FUTEX_PRIVATE | FUTEX_CLOCK_REALTIME)
    parts = [FUTEX_COMMANDS.get(cmd, f"futex_cmd_{cmd}")]
    if op & FUTEX_PRIVATE:
        parts.append("FUTEX_PRIVATE_FLAG")
    if op & FUTEX_CLOCK_REALTIME:
        parts.append("FUTEX_CLOCK_REALTIME")
    return "|".join(parts)


@lazy_dataclass
class BlockingCall:
    """The system call a thread is blocked in.

    ``number``/``name``: the call (None when a ``restart_syscall``'s call site did not
    say which call it restarts). ``args``: the six argument registers (rdi, rsi, rdx,
    r10, r8, r9) from the thread's context; a restarted call keeps its original ones.
    ``details``: the arguments decoded (see :func:`blocking_call`). ``source``:
    ``"thread state stream"`` or ``"registers and code"`` (a dump without minidumpkit's
    stream: inferred from ``rax`` and the instruction before the pc).
    """

    thread_id: int
    number: int | None
    name: str | None
    args: tuple[int, ...]
    restarted: bool
    source: str
    details: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """One line: ``futex(0x55..., FUTEX_WAIT_PRIVATE, 2)``, ``read(fd 3 -> pipe:[…])``."""
        d = self.details
        name = self.name
        if name is None:
            text = "restart_syscall (original call unknown)"
        elif name == "futex":
            text = f"futex(0x{d['address']:x}, {d['op_name']}, {d['val']})"
        elif "fd" in d:
            target = d.get("fd_target")
            text = f"{name}(fd {d['fd']}{f' -> {target}' if target else ''})"
        elif "fds" in d:
            fds = ", ".join(f"fd {f['fd']}{' -> ' + f['target'] if f.get('target') else ''}"
                            for f in d["fds"])
            text = f"{name}({fds or 'no fds'})"
        elif "pid" in d:
            text = f"{name}(pid {d['pid']})"
        elif "clock" in d or "seconds" in d:
            bits = [d["clock"]] if "clock" in d else []
            if d.get("absolute"):
                bits.append("TIMER_ABSTIME")
            if "seconds" in d:
                bits.append(f"{d['seconds']}.{d['nanoseconds']:09d} s")
            text = f"{name}({', '.join(bits)})"
        else:
            text = f"{name}()"
        return text + (" [restarted]" if self.restarted else "")

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types; addresses and registers as ``"0x..."`` strings."""
        details = {k: (f"0x{v:x}" if k in ("address", "timeout") and isinstance(v, int) else v)
                   for k, v in self.details.items()}
        return {"syscall": self.name, "number": self.number, "restarted": self.restarted,
                "args": [f"0x{a:x}" for a in self.args], "source": self.source,
                "details": details}


@lazy_dataclass
class ThreadStatus:
    """A thread's state: ``state``/``wchan`` as sampled before the stop (None when the
    dump has none), and the call it is blocked in (None: not in a blocking call, or
    unknown; ``note`` says which)."""

    thread_id: int
    name: str | None
    state: str | None
    wchan: str | None
    sample_age_ns: int | None
    call: BlockingCall | None
    note: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.thread_id, "name": self.name, "state": self.state,
                "wchan": self.wchan, "sample_age_ns": self.sample_age_ns,
                "call": None if self.call is None else self.call.to_json(), "note": self.note}

    def describe(self) -> str:
        head = f"thread {self.thread_id}" + (f' "{self.name}"' if self.name else "")
        state = f" state {self.state}" if self.state else ""
        wchan = f" wchan {self.wchan}" if self.wchan else ""
        what = self.call.describe() if self.call is not None else self.note
        return f"{head}:{state}{wchan} {what}".replace(":  ", ": ")


def _registers(thread: Thread) -> dict[str, int] | None:
    ctx = thread.context
    if not isinstance(ctx, md.ContextAMD64):
        return None
    return {name: int(getattr(ctx, name)) for name in (*ARG_REGISTERS, "rax", "rip", "rsp")}


def thread_states(dump: Minidump) -> dict[int, ThreadState]:
    """``dump.thread_states``, or {} when the stream is malformed (then the registers
    are read as for a dump without it; :func:`stream_problem` says why)."""
    try:
        return dump.thread_states
    except MinidumpFormatError:
        return {}


def stream_problem(dump: Minidump) -> str | None:
    """Why the thread state stream cannot be used, or None (absent streams are fine)."""
    try:
        dump.thread_states
    except MinidumpFormatError as exc:
        return f"thread state stream unreadable: {exc}"
    return None


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def blocking_call(dump: Minidump, thread: Thread) -> BlockingCall | None:
    """The system call ``thread`` is blocked in, decoded, or None.

    ``details`` holds: futex: ``address``, ``op``, ``op_name``, ``command``, ``private``,
    ``val``, ``timeout`` (pointer), ``word`` (the futex word's value when the dump holds
    it); calls on a descriptor: ``fd`` and ``fd_target`` (HandleData's name for it);
    poll/ppoll: ``fds`` (fd, events, target) when the array is in the dump; epoll_wait:
    ``fd`` (the epoll descriptor), ``timeout_ms``; nanosleep/clock_nanosleep: ``clock``,
    ``absolute``, ``seconds``/``nanoseconds`` when the request is in the dump;
    wait4/waitid: ``pid``.
    """
    regs = _registers(thread)
    if regs is None:
        return None
    args = tuple(regs[r] for r in ARG_REGISTERS)
    state = thread_states(dump).get(thread.thread_id)
    if state is not None:
        if not state.blocked:
            return None
        number, restarted, source = state.syscall, state.restarted, "thread state stream"
        if state.interrupted:
            source += " (interrupted by the stop: returns EINTR when resumed)"
    else:
        if _signed(regs["rax"]) not in ERESTART:
            return None
        try:
            code = dump.memory.read(regs["rip"] - 24, 24)
            number = syscall_at_call_site(code)
            source = "registers and code"
            if number is None:
                number = syscall_at_call_site(code, nearby=True)
                source = "registers and code (number found a few instructions before)"
        except MemoryNotCaptured:
            return None
        if number is None:
            return None
        restarted = False
        if number == RESTART_SYSCALL:  # the call site says what was restarted
            restarted = True
    name = syscall_name(number) if number is not None else None
    return BlockingCall(thread.thread_id, number, name, args, restarted, source,
                        _details(dump, name, args))


def _read(dump: Minidump, address: int, size: int) -> bytes | None:
    try:
        return dump.memory.read(address, size)
    except (MemoryNotCaptured, ValueError):
        return None


def _fd_targets(dump: Minidump) -> dict[int, str]:
    return {h.handle: h.object_name or "" for h in dump.handles}


def _details(dump: Minidump, name: str | None, args: tuple[int, ...]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if name is None:
        return d
    if name == "futex":
        op = args[1] & 0xFFFF_FFFF
        d.update(address=args[0], op=op, op_name=futex_op_name(op),
                 command=op & ~(FUTEX_PRIVATE | FUTEX_CLOCK_REALTIME),
                 private=bool(op & FUTEX_PRIVATE), val=args[2] & 0xFFFF_FFFF, timeout=args[3])
        word = _read(dump, args[0], 4)
        if word is not None:
            d["word"] = int.from_bytes(word, "little")
        return d
    if name in _FD_FIRST:
        fd = _signed(args[0]) & 0xFFFF_FFFF
        d["fd"] = fd
        target = _fd_targets(dump).get(fd)
        if target is not None:
            d["fd_target"] = target
        if name.startswith("epoll_"):
            d["timeout_ms"] = _int32(args[3])
        return d
    if name in ("poll", "ppoll"):
        nfds = args[1]
        d["nfds"] = nfds
        if name == "poll":
            d["timeout_ms"] = _int32(args[2])
        raw = _read(dump, args[0], _POLLFD.size * min(nfds, _MAX_POLL_FDS)) if nfds else b""
        if raw is not None:
            targets = _fd_targets(dump)
            d["fds"] = [{"fd": fd, "events": ev & 0xFFFF, "target": targets.get(fd)}
                        for fd, ev, _ in _POLLFD.iter_unpack(raw)]
        return d
    if name in ("nanosleep", "clock_nanosleep"):
        request = args[0]
        if name == "clock_nanosleep":
            d["clock"] = CLOCKS.get(args[0] & 0xFFFF_FFFF, f"clock {args[0]}")
            d["absolute"] = bool(args[1] & 1)
            request = args[2]
        raw = _read(dump, request, _TIMESPEC.size)
        if raw is not None:
            d["seconds"], d["nanoseconds"] = _TIMESPEC.unpack(raw)
        return d
    if name == "wait4":
        d["pid"] = _int32(args[0])
        d["options"] = args[2] & 0xFFFF_FFFF
        return d
    if name == "waitid":
        d["idtype"] = args[0] & 0xFFFF_FFFF
        d["pid"] = _int32(args[1])
        return d
    return d


def _int32(value: int) -> int:
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def thread_status(dump: Minidump, thread: Thread) -> ThreadStatus:
    """:class:`ThreadStatus` of one of ``dump.threads``."""
    state = thread_states(dump).get(thread.thread_id)
    call = blocking_call(dump, thread)
    if call is not None:
        note = "blocked"
    elif state is not None and state.orig_rax >= 0:
        note = (f"in {syscall_name(state.orig_rax)} but not blocked in it (it was returning "
                "or had just been entered)")
    elif state is not None:
        note = "running (not in a system call)"
    elif _registers(thread) is None:
        note = "unknown: not an x86_64 context"
    else:
        note = ("unknown: no thread state stream, and the registers do not show a blocked "
                "system call")
        problem = stream_problem(dump)
        if problem is not None:
            note = f"unknown: {problem}; the registers do not show a blocked system call"
    return ThreadStatus(
        thread_id=thread.thread_id, name=thread.name,
        state=state.state if state is not None else None,
        wchan=state.wchan if state is not None else None,
        sample_age_ns=state.sample_age_ns if state is not None else None,
        call=call, note=note)


def thread_statuses(dump: Minidump) -> list[ThreadStatus]:
    """:func:`thread_status` of every thread, in the dump's thread order."""
    return [thread_status(dump, t) for t in dump.threads]
