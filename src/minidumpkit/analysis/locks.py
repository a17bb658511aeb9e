"""What a thread blocked in futex() waits for, from the futex call, the dump's memory and
(when a stack walker supplies them) the libc frames (docs/threads.md).

glibc's lock kinds share futex operations: a condition variable, a semaphore, a rwlock,
pthread_join and a timed mutex lock all wait with FUTEX_WAIT_BITSET, and a normal mutex
waits with the same FUTEX_WAIT as a barrier or a condition-variable waiter taking its
mutex back. So, without the frame, only these are told from the call and memory alone:

* FUTEX_LOCK_PI: a priority-inheritance mutex; its owner's TID is in the futex word.
* a futex word that is a mutex on some thread's robust list (glibc keeps the list
  head in the thread's control block; the kernel gives its address): a robust mutex
  owned by that thread (the word's TID confirms it).
* a futex word that is some thread's TID word in its control block (16 bytes before
  its robust list head in glibc 2.36, x86_64) holding that thread's id: pthread_join
  on that thread.

Anything else is ``unknown`` with the reason "needs the libc frame (stack walker)";
nothing is read as an owner on a guess. Given ``frames`` (innermost first, objects with
a ``function`` name, as the stack walker returns them), the innermost libc lock function
names the kind, and the object's layout (glibc 2.36, x86_64, analysis.md B.2-B.6) gives
the owner where the object records one.
"""

from __future__ import annotations

import enum
import struct
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from .. import format as md
from .._lazydataclass import lazy_dataclass, replace
from ..errors import MemoryNotCaptured
from .threads import BlockingCall, blocking_call, thread_states

if TYPE_CHECKING:
    from .._streams import Thread
    from ..reader import Minidump

__all__ = ["FrameLike", "FutexWait", "RobustMutex", "WaitKind", "futex_wait", "futex_waits",
           "robust_mutexes"]

FUTEX_TID_MASK = 0x3FFF_FFFF
FUTEX_OWNER_DIED = 0x4000_0000
FUTEX_WAITERS = 0x8000_0000
_LOCK_PI_COMMANDS = frozenset({6, 8, 13})  # LOCK_PI, TRYLOCK_PI, LOCK_PI2
# glibc 2.36 x86_64 (analysis.md B.2-B.4)
MUTEX_OWNER = 8
MUTEX_KIND = 16
MUTEX_KIND_ROBUST = 16
MUTEX_KIND_PI = 32
MUTEX_KIND_PP = 64
RWLOCK_CUR_WRITER = 24
TID_BEFORE_ROBUST_HEAD = 16
_MAX_ROBUST = 64
_HEAD = struct.Struct("<QqQ")


class FrameLike(Protocol):
    """What :func:`futex_wait` needs of a frame: its function name (None if unknown)."""

    @property
    def function(self) -> str | None: ...


class WaitKind(str, enum.Enum):
    MUTEX = "mutex"
    ROBUST_MUTEX = "robust_mutex"
    PI_MUTEX = "pi_mutex"
    RWLOCK = "rwlock"
    CONDVAR = "condvar"
    SEMAPHORE = "semaphore"
    JOIN = "join"
    BARRIER = "barrier"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


@lazy_dataclass
class FutexWait:
    """A futex wait explained.

    ``address``: the futex word; ``object_address``: the start of the lock object when
    known. ``owner_tid``: the thread holding it, where the object records one (None for
    condition variables and semaphores, which have no owner, and for ``unknown``).
    ``owner_died``: FUTEX_OWNER_DIED set in a robust or PI mutex's word. ``evidence``:
    how the kind was told; ``reason``: why it could not be (``unknown``) or why there is
    no owner.
    """

    thread_id: int
    address: int
    op_name: str
    kind: WaitKind
    object_address: int | None = None
    owner_tid: int | None = None
    owner_died: bool = False
    evidence: str = ""
    reason: str = ""

    def to_json(self) -> dict[str, object]:
        """Plain JSON types; addresses as ``"0x..."`` strings."""
        return {"thread": self.thread_id, "kind": self.kind.value,
                "address": f"0x{self.address:x}", "op": self.op_name,
                "object_address": None if self.object_address is None
                else f"0x{self.object_address:x}",
                "owner_tid": self.owner_tid, "owner_died": self.owner_died,
                "evidence": self.evidence, "reason": self.reason}

    def describe(self) -> str:
        if self.kind is WaitKind.UNKNOWN:
            return f"futex 0x{self.address:x} ({self.op_name}): unknown: {self.reason}"
        text = f"{self.kind.value} 0x{(self.object_address or self.address):x}"
        if self.owner_tid is not None:
            text += f" held by thread {self.owner_tid}" + (" (owner died)" if self.owner_died
                                                          else "")
        elif self.reason:
            text += f" ({self.reason})"
        return text


@lazy_dataclass
class RobustMutex:
    """A mutex on a thread's robust list: the thread holds it."""

    holder_tid: int
    address: int  # the mutex (its futex word)
    pi: bool
    word: int | None  # the futex word's value, None if not in the dump


def _u32(dump: Minidump, address: int) -> int | None:
    try:
        return dump.memory.read_u32(address)
    except (MemoryNotCaptured, ValueError):
        return None


def robust_mutexes(dump: Minidump, thread_id: int) -> list[RobustMutex]:
    """The robust mutexes thread ``thread_id`` holds, from its robust list in the dump
    (empty when the dump has no list head for it or the list is not captured)."""
    state = thread_states(dump).get(thread_id)
    if state is None or state.robust_list is None:
        return []
    head = state.robust_list[0]
    try:
        entry, futex_offset, _pending = _HEAD.unpack(dump.memory.read(head, _HEAD.size))
    except (MemoryNotCaptured, ValueError):
        return []
    out: list[RobustMutex] = []
    seen = {head}
    for _ in range(_MAX_ROBUST):
        pi, entry = bool(entry & 1), entry & ~1
        if not entry or entry in seen:
            break
        seen.add(entry)
        word_at = entry + futex_offset
        out.append(RobustMutex(thread_id, word_at, pi, _u32(dump, word_at)))
        try:
            entry = dump.memory.read_u64(entry)
        except (MemoryNotCaptured, ValueError):
            break
    return out


_TID_WORDS: weakref.WeakKeyDictionary[Minidump, dict[int, int]] = weakref.WeakKeyDictionary()


def _tid_words(dump: Minidump) -> dict[int, int]:
    """{address of a thread's TID word: thread id}, for threads whose word (glibc 2.36:
    16 bytes before the robust list head) is in the dump and holds the thread's id
    (read once per dump, not per futex wait)."""
    found = _TID_WORDS.get(dump)
    if found is not None:
        return found
    out: dict[int, int] = {}
    for tid, state in thread_states(dump).items():
        if state.robust_list is None:
            continue
        at = state.robust_list[0] - TID_BEFORE_ROBUST_HEAD
        if _u32(dump, at) == tid:
            out[at] = tid
    _TID_WORDS[dump] = out
    return out


# innermost-first: the first frame naming one of these decides (a condition variable
# waiter taking its mutex back is inside __lll_lock_wait, under pthread_cond_wait)
_FRAME_KINDS: tuple[tuple[frozenset[str], WaitKind], ...] = (
    (frozenset({"lll_lock_wait", "lll_lock_wait_private", "pthread_mutex_lock_full",
                "pthread_mutex_lock", "pthread_mutex_timedlock", "pthread_mutex_clocklock",
                "pthread_mutex_clocklock_common", "pthread_mutex_cond_lock"}), WaitKind.MUTEX),
    (frozenset({"pthread_rwlock_rdlock", "pthread_rwlock_wrlock", "pthread_rwlock_timedrdlock",
                "pthread_rwlock_timedwrlock", "pthread_rwlock_clockrdlock",
                "pthread_rwlock_clockwrlock", "pthread_rwlock_rdlock_full64",
                "pthread_rwlock_wrlock_full64"}), WaitKind.RWLOCK),
    (frozenset({"pthread_cond_wait", "pthread_cond_timedwait", "pthread_cond_clockwait",
                "pthread_cond_wait_common"}), WaitKind.CONDVAR),
    (frozenset({"sem_wait", "sem_timedwait", "sem_clockwait", "new_sem_wait",
                "new_sem_wait_slow64", "new_sem_wait_slow", "do_futex_wait"}),
     WaitKind.SEMAPHORE),
    (frozenset({"pthread_join", "pthread_clockjoin_ex", "pthread_timedjoin_np",
                "pthread_clockjoin_np"}), WaitKind.JOIN),
    (frozenset({"pthread_barrier_wait"}), WaitKind.BARRIER),
)


def _base_name(function: str) -> str:
    """The name without version, clone suffix, glibc's internal prefixes and leading
    underscores: ``___pthread_cond_wait``, ``pthread_cond_wait@@GLIBC_2.3.2`` and
    ``__GI___lll_lock_wait`` become ``pthread_cond_wait`` and ``lll_lock_wait``."""
    name = function.split("@", 1)[0].split("(", 1)[0].strip().split(".", 1)[0]
    if name.startswith("__GI_"):
        name = name[len("__GI_"):]
    return name.lstrip("_")


def _kind_from_frames(frames: Sequence[FrameLike]) -> tuple[WaitKind, str] | None:
    for frame in frames:
        if not frame.function:
            continue
        name = _base_name(frame.function)
        for names, kind in _FRAME_KINDS:
            if name in names:
                return kind, frame.function
    return None


def futex_wait(dump: Minidump, thread: Thread,
               frames: Sequence[FrameLike] | None = None) -> FutexWait | None:
    """What ``thread`` waits for, if it is blocked in a futex wait; None otherwise.

    ``frames``: the thread's call stack, innermost first (the stack walker's frames, or
    any objects with a ``function`` name); without them only the kinds the call and the
    memory prove are told (see the module's docs), the rest is ``unknown``.
    """
    call = blocking_call(dump, thread)
    if call is None or call.name != "futex":
        return None
    d = call.details
    base = FutexWait(thread.thread_id, d["address"], d["op_name"], WaitKind.UNKNOWN)
    address, word = d["address"], d.get("word")
    if d["command"] in _LOCK_PI_COMMANDS:
        pi = replace(base, kind=WaitKind.PI_MUTEX, object_address=address,
                                 evidence="FUTEX_LOCK_PI is only used to lock PI mutexes")
        if word is None:
            return replace(
                pi, reason="the futex word is not in the dump: owner unknown")
        return replace(
            pi, owner_tid=(word & FUTEX_TID_MASK) or None,
            owner_died=bool(word & FUTEX_OWNER_DIED),
            evidence=pi.evidence + "; the owner's TID is in the futex word")
    robust = _robust_owner(dump, address)
    if robust is not None:
        holder, entry = robust
        evidence = f"the futex word is a mutex on thread {holder}'s robust list (it holds it)"
        if word is not None and word & FUTEX_TID_MASK != holder:
            evidence += f"; but the word's TID is {word & FUTEX_TID_MASK}"
        return replace(
            base, kind=WaitKind.PI_MUTEX if entry.pi else WaitKind.ROBUST_MUTEX,
            object_address=address, owner_tid=holder,
            owner_died=word is not None and bool(word & FUTEX_OWNER_DIED), evidence=evidence)
    joined = _tid_words(dump).get(address)
    if joined is not None and d["val"] == joined:
        return replace(
            base, kind=WaitKind.JOIN, object_address=address, owner_tid=joined,
            evidence=f"the futex word is thread {joined}'s TID word in its control block, "
                     "and the wait expects that TID: pthread_join")
    if frames:
        told = _kind_from_frames(frames)
        if told is not None:
            return _from_frame(dump, call, base, *told)
        top = next((f.function for f in frames if f.function), None)
        return replace(
            base, reason="no libc lock function among the frames "
                         f"(innermost named: {top or 'none'})")
    return replace(
        base, reason=f"needs the libc frame (stack walker): {d['op_name']} on a word that "
                     "is neither a PI mutex, a robust mutex on a thread's list, nor a "
                     "thread's TID word is used alike by " + _shared_by(d["command"]))


def _shared_by(command: int) -> str:
    if command == 0:
        return "mutexes, barriers and condition-variable waiters retaking their mutex"
    if command == 9:
        return "condition variables, semaphores, rwlocks, pthread_join and timed mutex locks"
    return "several glibc objects"


# {mutex address: (holder, entry)} of every thread's robust list, per dump: each futex
# wait looks its mutex up there (reading every list per wait was n^2 memory reads)
_ROBUST: weakref.WeakKeyDictionary[Minidump, dict[int, tuple[int, RobustMutex]]] = \
    weakref.WeakKeyDictionary()


def _robust_owner(dump: Minidump, address: int) -> tuple[int, RobustMutex] | None:
    held = _ROBUST.get(dump)
    if held is None:
        held = {}
        for tid in thread_states(dump):
            for entry in robust_mutexes(dump, tid):
                held.setdefault(entry.address, (tid, entry))  # the first list naming it
        _ROBUST[dump] = held
    return held.get(address)


def _from_frame(dump: Minidump, call: BlockingCall, base: FutexWait,
                kind: WaitKind, function: str) -> FutexWait:
    d = call.details
    address, word = d["address"], d.get("word")
    told = replace(base, kind=kind, evidence=f"frame {function}")
    if kind is WaitKind.MUTEX:
        mutex = replace(told, object_address=address)
        mutex_kind = _u32(dump, address + MUTEX_KIND)
        if mutex_kind is None or word is None:
            return replace(mutex, reason="the mutex is not in the dump: owner unknown")
        if mutex_kind & (MUTEX_KIND_ROBUST | MUTEX_KIND_PI):
            return replace(
                mutex, kind=(WaitKind.PI_MUTEX if mutex_kind & MUTEX_KIND_PI
                             else WaitKind.ROBUST_MUTEX),
                owner_tid=(word & FUTEX_TID_MASK) or None,
                owner_died=bool(word & FUTEX_OWNER_DIED),
                evidence=f"{told.evidence}; __kind {mutex_kind}: the TID is in the word")
        owner = _u32(dump, address + MUTEX_OWNER)
        return replace(
            mutex, owner_tid=owner or None, evidence=f"{told.evidence}; __owner",
            reason="" if owner else "locked, __owner is 0 (owner unknown)")
    if kind is WaitKind.RWLOCK:
        # waits on __wrphase_futex (+8) or __writers_futex (+12); a write-held lock
        # has WRPHASE|WRLOCKED in __readers and the writer in __cur_writer
        seen = False
        for offset in (8, 12):
            obj = address - offset
            readers = _u32(dump, obj)
            writer = _u32(dump, obj + RWLOCK_CUR_WRITER)
            seen = seen or (readers is not None and writer is not None)
            if readers is not None and writer and readers & 3 == 3 \
                    and writer in thread_states(dump):
                return replace(told, object_address=obj, owner_tid=writer,
                                           evidence=f"{told.evidence}; __cur_writer")
        if not seen:
            return replace(
                told, reason="the rwlock is not in the dump: owner unknown")
        return replace(
            told, reason="not write-held: held by readers, who are not recorded")
    if kind is WaitKind.JOIN:
        return replace(told, object_address=address, owner_tid=d["val"] or None,
                                   evidence=f"{told.evidence}; the TID it waits on")
    reason = {WaitKind.CONDVAR: "condition variables record no owner: a signal is expected",
              WaitKind.SEMAPHORE: "semaphores have no owner: a post is expected",
              WaitKind.BARRIER: "barriers have no owner: more arrivals are expected"}[kind]
    return replace(told, reason=reason)


def futex_waits(dump: Minidump, frames: Mapping[int, Sequence[FrameLike]] | None = None,
                ) -> dict[int, FutexWait]:
    """{thread id: :func:`futex_wait`} for every thread blocked in a futex wait.
    ``frames``: {thread id: call stack, innermost first} for the threads walked."""
    if dump.system_info is not None and dump.system_info.architecture \
            != md.ProcessorArchitecture.AMD64:
        return {}
    out: dict[int, FutexWait] = {}
    for thread in dump.threads:
        wait = futex_wait(dump, thread, (frames or {}).get(thread.thread_id))
        if wait is not None:
            out[thread.thread_id] = wait
    return out
