"""Python-level waits (docs/locks.md): a thread waiting for the GIL, for a
``threading.RLock`` (and who owns it), for a ``threading.Lock`` (which records no owner).

A thread blocked in a futex already has a wait from :mod:`.locks` (a condition variable,
a semaphore, ...). When the process runs CPython 3.11-3.13 this module tells which Python
object that futex belongs to, from memory only:

* the GIL: the futex word lies in its interpreter's ``_gil_runtime_state`` ``cond`` (or
  ``mutex``); the holder is ``last_holder`` when ``locked`` (3.12+, per interpreter), or
  ``gilstate.tstate_current`` (3.11), mapped to its OS thread;
* a ``threading.RLock`` (C ``_thread.RLock``): an RLock object found in the slots (locals
  and value stack) of the thread's newest Python frame, directly or as the ``self`` of a
  bound method (``with lock:`` keeps ``lock.__exit__``), whose ``rlock_lock`` semaphore is
  the futex word; its ``rlock_owner`` (a thread ident, ``threading.get_ident()``) names
  the owner and ``rlock_count`` the depth;
* a ``threading.Lock`` (``_thread.lock``): the same, its ``lock_lock`` semaphore being
  the futex word. A Lock records no owner: the wait says so.

Nothing is named on a guess: an object must be found whose semaphore is the very word
the thread sleeps on. Where the frame slots are not in the dump (a MINI dump holds the
frames' heads, not their slots), the futex wait stays what :mod:`.locks` made of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .._pyruntime import PythonRuntime, PythonThread
from .._pyruntime import offsets as o
from .._pyruntime.slots import SlotReader, lock_objects
from .._lazydataclass import replace
from ..errors import MemoryNotCaptured
from .deadlocks import ThreadWait
from .locks import FrameLike

if TYPE_CHECKING:
    from ..reader import Minidump

__all__ = ["GIL", "PYTHON_LOCK", "PYTHON_RLOCK", "python_waits"]

GIL, PYTHON_RLOCK, PYTHON_LOCK = "gil", "python_rlock", "python_lock"
NO_OWNER = "a threading.Lock records no owner"
# kinds of ThreadWait a futex wait can have (deadlocks.py / locks.WaitKind values)
_FUTEX_KINDS = frozenset({"mutex", "robust_mutex", "pi_mutex", "rwlock", "condvar",
                          "semaphore", "join", "barrier", "unknown"})


def _reader(dump: Minidump) -> SlotReader:
    """Dump memory; type names, when the dump lacks them (3.11's static types name
    themselves in libpython's read-only data), from the module's file on this machine
    when its build id matches."""
    def constant(address: int, size: int) -> bytes:
        try:
            return dump.memory.read(address, size)
        except (MemoryNotCaptured, ValueError, OverflowError):
            pass
        from . import symbolizer_for

        module = dump.module_at(address)
        if module is None:
            return b""
        found = symbolizer_for(dump).for_module(module)
        if found.runtime is None:
            return b""
        return found.runtime.read_vaddr(found.vaddr(address), size) or b""

    return SlotReader(dump.memory.read, constant)


def python_waits(dump: Minidump, runtime: PythonRuntime, waits: Mapping[int, ThreadWait],
                 frames: Mapping[int, Sequence[FrameLike]] | None = None
                 ) -> dict[int, ThreadWait]:
    """``waits`` with each futex wait that belongs to the GIL, a ``threading.RLock`` or a
    ``threading.Lock`` replaced by a wait on that (kinds ``gil``, ``python_rlock``,
    ``python_lock``). ``frames``: the threads' native frames (innermost first); when the
    lock object is not in the dump, a wait under ``rlock_acquire`` /
    ``lock_PyThread_acquire_lock`` is still named (the RLock's owner then unknown, with
    the reason). Waits it cannot tie to a Python object are returned unchanged."""
    version = runtime.version_hex or 0
    offsets = o.LOCK_OFFSETS.get((version >> 24, (version >> 16) & 0xFF, o.LP64))
    if offsets is None or not runtime.threads:
        return dict(waits)
    reader = _reader(dump)
    by_ident = {t.thread_id: t for t in runtime.threads}
    holders = {t.gil_address: t for t in runtime.threads if t.holds_gil and t.gil_address}
    gils = {t.gil_address for t in runtime.threads if t.gil_address}
    out = dict(waits)
    for tid, wait in waits.items():
        if wait.kind not in _FUTEX_KINDS or wait.syscall != "futex" or wait.address is None:
            continue
        word = wait.address
        gil = next((g for g in gils if g + offsets.gil_cond <= word
                    < g + offsets.gil_cond + offsets.gil_cond_size
                    or g + offsets.gil_mutex <= word
                    < g + offsets.gil_mutex + offsets.gil_mutex_size), None)
        if gil is not None:
            out[tid] = _gil_wait(wait, gil, holders.get(gil), runtime, tid)
            continue
        thread = _innermost(runtime.threads, tid)
        if thread is None or not thread.frames:
            continue
        frame = thread.frames[0]
        where = f"{frame.qualname} ({frame.filename}:{frame.line})"
        for obj, name in lock_objects(reader, frame.address, offsets):
            if name == "_thread.RLock" and reader.u64(obj + offsets.rlock_lock) == word:
                ident = reader.u64(obj + offsets.rlock_owner) or 0
                count = reader.u64(obj + offsets.rlock_count)
                owner = by_ident.get(ident)
                owner_tid = owner.os_thread_id if owner is not None else None
                # held by a thread the dump cannot name: the owner exists, so unknown
                unknown = "" if owner_tid is not None or ident == 0 else \
                    f"its owner, thread ident 0x{ident:x}, is no Python thread of the dump"
                out[tid] = replace(
                    wait, kind=PYTHON_RLOCK, object_address=obj, owner_tid=owner_tid,
                    hold_count=count, frame=where, unknown=unknown,
                    note="not held: being released" if ident == 0 else "",
                    evidence=f"threading.RLock 0x{obj:x} in the slots of {frame.qualname}: "
                             f"its semaphore is the futex word; rlock_owner 0x{ident:x}")
                break
            if name == "_thread.lock" and reader.u64(obj + offsets.lock_lock) == word:
                out[tid] = replace(
                    wait, kind=PYTHON_LOCK, object_address=obj, owner_tid=None,
                    frame=where, unknown="", note=NO_OWNER,
                    evidence=f"threading.Lock 0x{obj:x} in the slots of {frame.qualname}: "
                             "its semaphore is the futex word")
                break
        else:
            out[tid] = _from_native(wait, (frames or {}).get(tid) or (), where)
    return out


def _innermost(threads: Sequence[PythonThread], tid: int) -> PythonThread | None:
    """The thread state an OS thread runs now: with frames, lowest C-stack anchor."""
    mine = [t for t in threads if t.os_thread_id == tid and t.frames]
    return min(mine, key=lambda t: min(t.anchors, default=1 << 64)) if mine else None


def _gil_wait(wait: ThreadWait, gil: int, holder: PythonThread | None,
              runtime: PythonRuntime, tid: int) -> ThreadWait:
    interp = next((t.interpreter_id for t in runtime.threads if t.gil_address == gil), 0)
    owner = holder.os_thread_id if holder is not None else None
    thread = _innermost(runtime.threads, tid)
    where = None
    if thread is not None and thread.frames:
        f = thread.frames[0]
        where = f"{f.qualname} ({f.filename}:{f.line})"
    return replace(
        wait, kind=GIL, object_address=gil, owner_tid=owner, frame=where or wait.frame,
        unknown="", hold_count=None,
        note="" if owner is not None else "no thread holds it: being handed over",
        evidence=f"the futex word is in interpreter {interp}'s GIL state "
                 f"(_gil_runtime_state 0x{gil:x})")


def _from_native(wait: ThreadWait, frames: Sequence[FrameLike], where: str) -> ThreadWait:
    """A lock wait told by ``_thread``'s C function among the native frames, when the
    lock object is not in the dump (a MINI dump holds no frame slots)."""
    names = [f.function for f in frames[:12] if f.function]
    if "rlock_acquire" in names:
        return replace(
            wait, kind=PYTHON_RLOCK, object_address=None, owner_tid=None, frame=where,
            note="", unknown="the RLock object is not in the dump (the Python frame's "
                             "slots were not captured)",
            evidence="rlock_acquire (_thread.RLock.acquire) among the native frames")
    if "lock_PyThread_acquire_lock" in names:
        return replace(
            wait, kind=PYTHON_LOCK, object_address=None, owner_tid=None, frame=where,
            unknown="", note=NO_OWNER,
            evidence="lock_PyThread_acquire_lock (_thread.lock.acquire) among the native "
                     "frames")
    return wait
