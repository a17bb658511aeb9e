"""Per-thread scheduler state, blocking system call and lock memory (Linux writer).

Three steps, each its own function so the stop protocol stays as it is:

* :func:`sample`, just before the threads are stopped: each thread's state letter and
  ``wchan`` from /proc/PID/task/TID/{stat,wchan}. Once a thread is ptrace-stopped it
  reads ``t`` / ``ptrace_stop``, so these are only worth anything read before; the
  sample's time is kept so the dump can say how long before its stop it was taken.
* :func:`collect`, while stopped: ``orig_rax`` and ``rax`` from the registers. A
  thread counts as blocked in the call ``orig_rax`` names only when ``rax`` holds one
  of the -ERESTART* values the kernel leaves there for a call it will restart; a
  ``restart_syscall`` (a call interrupted by an earlier stop, ours or any tracer's) is
  mapped back to the interrupted call from the code before the pc (``mov $nr, %eax;
  syscall``). A call the stop broke off (rax -EINTR: epoll_wait, select ...) counts
  as blocked when the thread was sampled asleep just before. The robust-mutex list
  head comes from get_robust_list(2).
* :func:`lock_memory`: the ranges the lock analysis reads (the object around each
  waited-on futex word, every robust list head and its entries), so that a MINI dump
  holds them.
"""

from __future__ import annotations

import dataclasses
import struct
import time
from collections.abc import Iterable
from typing import Protocol

from .._capture import CapturedThreadState
from .._ffi import libc
from .._syscalls import EINTR, ERESTART, RESTART_SYSCALL, syscall_at_call_site
from ..errors import ProcessError
from . import _procfs
from ._ptrace import ProcessStop

__all__ = ["FUTEX_AFTER", "FUTEX_BEFORE", "Sample", "collect", "lock_memory", "sample"]

_SYS_FUTEX = 202
_SYS_GET_ROBUST_LIST = 274
# Bytes kept around a waited-on futex word: glibc's pthread_mutex_t is 40 bytes with the
# word at +0, pthread_rwlock_t 56 (words at +8, +12), pthread_cond_t 48 (+40, +44),
# sem_t 32 (+0), and pthread_join waits on the joined thread's TID word inside its TCB.
# 64 on each side covers every object whichever of its words is waited on.
FUTEX_BEFORE = 64
FUTEX_AFTER = 64
# glibc 2.36 (x86_64) keeps the thread's TID word 16 bytes before its robust list head
# (pthread_self()+720 and +736): the head's range starts there so a pthread_join's
# futex address can be matched to a thread. The reader checks the word against the
# thread id before trusting it.
ROBUST_HEAD_BEFORE = 16
# robust list entries followed per thread (a thread holding more robust mutexes than
# this is unusual; the list is circular, a corrupt one must not loop)
MAX_ROBUST_ENTRIES = 64
# bytes of each robust mutex kept (pthread_mutex_t), from its futex word
ROBUST_MUTEX_SIZE = 40
# bytes before the pc read to find the number a restarted call was made with
_CALL_SITE_BYTES = 16
_U64 = struct.Struct("<Q")
_HEAD = struct.Struct("<QqQ")  # struct robust_list_head: next, futex_offset, list_op_pending


class _Reader(Protocol):
    def read(self, address: int, size: int) -> bytes: ...


@dataclasses.dataclass(frozen=True)
class Sample:
    """One thread's /proc state read before the stop, and when (perf_counter_ns)."""

    state: str
    wchan: str
    at_ns: int


def sample(pid: int) -> dict[int, Sample]:
    """State letter and wchan of every thread of ``pid``, read now. A thread that ends
    (or cannot be read) meanwhile is left out: its state will be "not sampled"."""
    out: dict[int, Sample] = {}
    try:
        tids = _procfs.task_ids(pid)
    except ProcessError:
        return out
    for tid in tids:
        try:
            state = _procfs.read_stat(pid, tid).state
            wchan = _procfs.read_text(f"/proc/{pid}/task/{tid}/wchan", pid).strip()
        except ProcessError:
            continue
        out[tid] = Sample(state=state, wchan="" if wchan == "0" else wchan,
                          at_ns=time.perf_counter_ns())
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _robust_list(tid: int) -> tuple[int, int] | None:
    """(head, len) of ``tid``'s robust futex list (get_robust_list(2)), None if unset or
    refused."""
    ffi, lib = libc.load()
    head = ffi.new("unsigned long *")
    size = ffi.new("unsigned long *")
    rc = int(lib.syscall(_SYS_GET_ROBUST_LIST, ffi.cast("long", tid), head, size))
    if rc != 0 or not head[0]:
        return None
    return int(head[0]), int(size[0])


def collect(stop: ProcessStop, pid: int, tids: Iterable[int], memory: _Reader,
            samples: dict[int, Sample] | None) -> tuple[dict[int, CapturedThreadState],
                                                        dict[int, dict[str, int]]]:
    """Each stopped thread's state, and its registers (for :func:`lock_memory`)."""
    states: dict[int, CapturedThreadState] = {}
    registers: dict[int, dict[str, int]] = {}
    for tid in tids:
        try:
            regs = stop.general_registers(tid)
        except ProcessError:
            continue  # killed while stopped: no registers, no state
        registers[tid] = regs
        orig, rax = _signed(regs["orig_rax"]), _signed(regs["rax"])
        got = (samples or {}).get(tid)
        blocked = orig >= 0 and rax in ERESTART
        # A call the kernel never restarts after a stop (epoll_wait, select, ...) has
        # already been broken off with -EINTR: it was blocking if the thread was asleep
        # in the kernel just before the stop.
        interrupted = (orig >= 0 and rax == EINTR and got is not None
                       and got.state in ("S", "D") and bool(got.wchan))
        blocked = blocked or interrupted
        syscall: int | None = orig if blocked else None
        restarted = blocked and orig == RESTART_SYSCALL
        if restarted:
            rip = regs["rip"]
            syscall = syscall_at_call_site(memory.read(rip - _CALL_SITE_BYTES, _CALL_SITE_BYTES))
        seized = stop.seized_ns.get(tid)
        age = seized - got.at_ns if got is not None and seized is not None else None
        states[tid] = CapturedThreadState(
            tid=tid, state=got.state if got is not None else "",
            wchan=got.wchan if got is not None else "", sample_age_ns=age,
            orig_rax=orig, blocked=blocked, syscall=syscall, restarted=restarted,
            interrupted=interrupted,
            robust_list=_robust_list(tid))
    return states, registers


def lock_memory(states: dict[int, CapturedThreadState], registers: dict[int, dict[str, int]],
                memory: _Reader) -> list[tuple[int, int]]:
    """``(address, size)`` ranges the lock analysis needs: for each thread blocked in
    futex(), FUTEX_BEFORE/FUTEX_AFTER bytes around the word; for each thread with a
    robust list, its head (with glibc's TID word before it) and every mutex on it."""
    ranges: list[tuple[int, int]] = []
    for tid, st in states.items():
        regs = registers[tid]
        if st.blocked and st.syscall == _SYS_FUTEX:
            uaddr = regs["rdi"]
            lo = max(uaddr - FUTEX_BEFORE, 0)
            ranges.append((lo, uaddr + FUTEX_AFTER - lo))
        if st.robust_list is not None:
            ranges += _robust_ranges(*st.robust_list, memory)
    return ranges


def _robust_ranges(head: int, size: int, memory: _Reader) -> list[tuple[int, int]]:
    out = [(head - ROBUST_HEAD_BEFORE, ROBUST_HEAD_BEFORE + max(size, _HEAD.size))]
    raw = memory.read(head, _HEAD.size)
    if len(raw) < _HEAD.size:
        return out
    entry, futex_offset, pending = _HEAD.unpack(raw)
    seen = {head}
    for _ in range(MAX_ROBUST_ENTRIES):
        # the low bit marks a PI mutex; the list is circular back to the head
        entry &= ~1
        if not entry or entry in seen:
            break
        seen.add(entry)
        out.append(_mutex_range(entry, futex_offset))
        nxt = memory.read(entry, 8)
        if len(nxt) < 8:
            break
        entry = _U64.unpack(nxt)[0]
    if pending & ~1:
        out.append(_mutex_range(pending & ~1, futex_offset))
    return out


def _mutex_range(entry: int, futex_offset: int) -> tuple[int, int]:
    """The mutex an entry belongs to: from its futex word (entry + futex_offset) over a
    pthread_mutex_t, and the entry's own next pointer whatever the offset."""
    word = entry + futex_offset
    lo, hi = min(word, entry), max(word + ROBUST_MUTEX_SIZE, entry + 8)
    return (max(lo, 0), hi - max(lo, 0))
