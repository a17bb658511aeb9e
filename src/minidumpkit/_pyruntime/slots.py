"""The objects in a Python frame's slots (locals, cells, value stack) and their type names:
what the Python-level lock analysis looks for (analysis/pylocks.py) and what the writer's
Python-aware capture copies for it (the newest frame of each thread), so both read the
same memory. Untrusted memory: every count is bounded, a failed read ends that object.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from ..errors import MemoryNotCaptured
from .offsets import LockOffsets

__all__ = ["LOCK_TYPES", "MAX_SLOTS", "SlotReader", "lock_objects"]

MAX_SLOTS = 1024
LOCK_TYPES = ("_thread.RLock", "_thread.lock")
BOUND_METHOD = "builtin_function_or_method"
LOCK_OBJECT_SIZE = 40  # rlockobject up to rlock_count; lockobject up to in_weakreflist
_U64 = struct.Struct("<Q")
_I32 = struct.Struct("<i")
_READ_ERRORS = (MemoryNotCaptured, OSError, ValueError, OverflowError)


class SlotReader:
    """Reads for :func:`lock_objects`: ``read(address, size)`` the process's memory;
    ``constant(address, size)`` read-only bytes (a type's name), which a dump may lack
    but a module's file holds (default: ``read``)."""

    def __init__(self, read: Callable[[int, int], bytes],
                 constant: Callable[[int, int], bytes] | None = None) -> None:
        self.read = read
        self.constant = constant or read
        self._type_names: dict[int, str | None] = {}

    def u64(self, address: int) -> int | None:
        try:
            value: int = _U64.unpack(self.read(address, 8))[0]
        except _READ_ERRORS:
            return None
        return value

    def i32(self, address: int) -> int | None:
        try:
            value: int = _I32.unpack(self.read(address, 4))[0]
        except _READ_ERRORS:
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
                raw = b""
                for size in (32, 16):  # a short name may end near its segment's end
                    try:
                        raw = self.constant(ptr, size)
                    except _READ_ERRORS:
                        raw = b""
                    if b"\0" in raw:
                        break
                if b"\0" in raw:
                    name = raw.split(b"\0", 1)[0].decode("latin-1")
            self._type_names[tp] = name
        return self._type_names[tp]


def lock_objects(reader: SlotReader, frame: int, offsets: LockOffsets
                 ) -> list[tuple[int, str]]:
    """(address, type name) of the ``_thread.RLock`` / ``_thread.lock`` objects in the
    slots of the frame at ``frame``, directly or as the ``self`` of a bound builtin method
    there (``with lock:`` keeps ``lock.__exit__``); each one's fields are read too."""
    code = reader.u64(frame + offsets.frame_code)
    if code is None or code < 4096:
        return []
    nlocals = reader.i32(code + offsets.code_nlocalsplus)
    stack = reader.i32(code + offsets.code_stacksize)
    if nlocals is None or stack is None or nlocals < 0 or stack < 0 \
            or nlocals + stack > MAX_SLOTS:
        return []
    try:
        raw = reader.read(frame + offsets.frame_localsplus, 8 * (nlocals + stack))
    except _READ_ERRORS:
        return []
    seen: set[int] = set()
    out: list[tuple[int, str]] = []
    for (value,) in _U64.iter_unpack(raw):
        candidates = [value]
        if value not in seen and reader.type_name(value) == BOUND_METHOD:
            bound = reader.u64(value + offsets.cfunction_self)
            if bound:
                candidates.append(bound)
        for obj in candidates:
            if obj in seen:
                continue
            seen.add(obj)
            name = reader.type_name(obj)
            if name in LOCK_TYPES:
                try:
                    reader.read(obj, LOCK_OBJECT_SIZE)
                except _READ_ERRORS:
                    continue
                out.append((obj, name))
    return out
