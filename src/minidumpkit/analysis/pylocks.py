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

import dataclasses
import struct
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .._pyruntime import PythonRuntime, PythonThread
from .._pyruntime import offsets as o
from ..errors import MemoryNotCaptured
from .deadlocks import ThreadWait
from .locks import FrameLike

if TYPE_CHECKING:
    from ..reader import Minidump

__all__ = ["GIL", "PYTHON_LOCK", "PYTHON_RLOCK", "python_waits"]

GIL, PYTHON_RLOCK, PYTHON_LOCK = "gil", "python_rlock", "python_lock"
NO_OWNER = "a threading.Lock records no owner"
_MAX_SLOTS = 4096
_U64 = struct.Struct("<Q")
_I32 = struct.Struct("<i")
# kinds of ThreadWait a futex wait can have (deadlocks.py / locks.WaitKind values)
_FUTEX_KINDS = frozenset({"mutex", "robust_mutex", "pi_mutex", "rwlock", "condvar",
                          "semaphore", "join", "barrier", "unknown"})


class _Reader:
    def __init__(self, dump: Minidump) -> None:
        self.dump = dump
        self.memory = dump.memory
        self._type_names: dict[int, str | None] = {}

    def constant(self, address: int, size: int) -> bytes:
        """Read-only bytes (a type's name): from the dump, else from the module's file
        on this machine when its build id matches (a dump without file-backed pages)."""
        try:
            return self.memory.read(address, size)
        except (MemoryNotCaptured, ValueError, OverflowError):
            pass
        from . import symbolizer_for

        module = self.dump.module_at(address)
        if module is None:
            return b""
        found = symbolizer_for(self.dump).for_module(module)
        if found.runtime is None:
            return b""
        return found.runtime.read_vaddr(found.vaddr(address), size) or b""

    def u64(self, address: int) -> int | None:
        try:
            value: int = _U64.unpack(self.memory.read(address, 8))[0]
        except (MemoryNotCaptured, ValueError, OverflowError):
            return None
        return value

    def i32(self, address: int) -> int | None:
        try:
            value: int = _I32.unpack(self.memory.read(address, 4))[0]
        except (MemoryNotCaptured, ValueError, OverflowError):
            return None
        return value

    def type_name(self, obj: int) -> str | None:
        """The ``tp_name`` of ``obj``'s type, or None when not readable."""
        if obj < 4096 or obj % 8:
            return None
        tp = self.u64(obj + 8)
        if tp is None or tp < 4096 or tp % 8:
            return None
        if tp not in self._type_names:
            name = None
            ptr = self.u64(tp + 24)
            if ptr is not None and ptr >= 4096:
                raw = self.constant(ptr, 40) or self.constant(ptr, 16)
                if b"\0" in raw:
                    name = raw.split(b"\0", 1)[0].decode("latin-1")
            self._type_names[tp] = name
        return self._type_names[tp]


def _slot_objects(reader: _Reader, frame: int, offsets: o.LockOffsets) -> list[int]:
    """The objects in a frame's slots (locals, cells, value stack), and the ``self`` of
    bound builtin methods among them."""
    code = reader.u64(frame + offsets.frame_code)
    if code is None:
        return []
    nlocals = reader.i32(code + offsets.code_nlocalsplus)
    stack = reader.i32(code + offsets.code_stacksize)
    if nlocals is None or stack is None or not 0 <= nlocals + stack <= _MAX_SLOTS \
            or nlocals < 0 or stack < 0:
        return []
    try:
        raw = reader.memory.read(frame + offsets.frame_localsplus, 8 * (nlocals + stack))
    except (MemoryNotCaptured, ValueError, OverflowError):
        return []
    out: list[int] = []
    for (value,) in _U64.iter_unpack(raw):
        if value in out or value < 4096:
            continue
        out.append(value)
        if reader.type_name(value) == "builtin_function_or_method":
            bound = reader.u64(value + offsets.cfunction_self)
            if bound and bound not in out:
                out.append(bound)
    return out


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
    reader = _Reader(dump)
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
        for obj in _slot_objects(reader, frame.address, offsets):
            name = reader.type_name(obj)
            if name == "_thread.RLock" and reader.u64(obj + offsets.rlock_lock) == word:
                ident = reader.u64(obj + offsets.rlock_owner) or 0
                count = reader.u64(obj + offsets.rlock_count)
                owner = by_ident.get(ident)
                note = "" if owner is not None and owner.os_thread_id is not None else \
                    "not held (being released)" if ident == 0 else \
                    f"owner thread ident 0x{ident:x} is no Python thread of the dump"
                out[tid] = dataclasses.replace(
                    wait, kind=PYTHON_RLOCK, object_address=obj,
                    owner_tid=owner.os_thread_id if owner is not None else None,
                    hold_count=count, frame=where, unknown="", note=note,
                    evidence=f"threading.RLock 0x{obj:x} in the slots of {frame.qualname}: "
                             f"its semaphore is the futex word; rlock_owner 0x{ident:x}")
                break
            if name == "_thread.lock" and reader.u64(obj + offsets.lock_lock) == word:
                out[tid] = dataclasses.replace(
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
    return dataclasses.replace(
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
        return dataclasses.replace(
            wait, kind=PYTHON_RLOCK, object_address=None, owner_tid=None, frame=where,
            note="", unknown="the RLock object is not in the dump (the Python frame's "
                             "slots were not captured)",
            evidence="rlock_acquire (_thread.RLock.acquire) among the native frames")
    if "lock_PyThread_acquire_lock" in names:
        return dataclasses.replace(
            wait, kind=PYTHON_LOCK, object_address=None, owner_tid=None, frame=where,
            unknown="", note=NO_OWNER,
            evidence="lock_PyThread_acquire_lock (_thread.lock.acquire) among the native "
                     "frames")
    return wait
