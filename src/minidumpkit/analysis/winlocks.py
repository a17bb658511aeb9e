"""Windows critical sections read from a dump's memory (docs/locks.md, "Windows").

    from minidumpkit.analysis import critical_section

    section = critical_section(dump, 0x140010100)   # a CRITICAL_SECTION's address
    section.owner_tid, section.recursion_count      # or section.reason when not told

An x64 ``RTL_CRITICAL_SECTION`` (winnt.h; 40 bytes): ``DebugInfo`` pointer at 0,
``LockCount`` LONG at 8, ``RecursionCount`` LONG at 12, ``OwningThread`` at 16 (the
owner's thread id, not a handle), ``LockSemaphore`` at 24, ``SpinCount`` at 32. A held
section names its owner only when the words are consistent: a recursion count of at
least 1, an owner that is a thread of the dump, a lock count that is not the free
value -1 and a DebugInfo that is a user pointer, NULL or -1. Anything else is ``reason`` (memory not captured, not held, inconsistent),
never a guess.

:func:`critical_section_waits` tells which section a thread in ntdll's
``RtlEnterCriticalSection`` waits for: its frames are unwound through the PE modules'
unwind tables (:mod:`._peunwind`) and the one pointer in them at a section held by
another thread is the answer; :func:`~minidumpkit.analysis.wait_graph` makes the owner
its edge. SRW locks, condition variables and waits on handles (a mutex's
WaitForSingleObject) are not told.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .. import format as md
from .._lazydataclass import lazy_dataclass, replace
from ..errors import MemoryNotCaptured
from ._peunwind import Image, ImageError, PeFrame, image_of, walk

if TYPE_CHECKING:
    from ..reader import Minidump

__all__ = ["CS_FUNCTIONS", "CriticalSection", "CriticalSectionWait", "critical_section",
           "critical_section_waits", "ntdll_problem"]

# RTL_CRITICAL_SECTION, x64: DebugInfo, LockCount, RecursionCount, OwningThread,
# LockSemaphore, SpinCount (checked with mingw-w64's winnt.h: tests/wine/win/cs_target.c)
_SECTION = struct.Struct("<QiiQQQ")
_NO_DEBUG_INFO = 0xFFFF_FFFF_FFFF_FFFF  # RTL_CRITICAL_SECTION_FLAG_NO_DEBUG_INFO's -1
_USER_LIMIT = 1 << 47  # x64 user addresses
FREE_LOCK_COUNT = -1  # both encodings (Wine's count of entries - 1, Windows' bit 0 = free)


@lazy_dataclass
class CriticalSection:
    """One ``CRITICAL_SECTION`` as the dump holds it. ``owner_tid`` is set only for a
    held section whose words are consistent; otherwise ``reason`` says why not."""

    address: int
    owner_tid: int | None = None
    recursion_count: int | None = None
    lock_count: int | None = None
    debug_info: int | None = None
    reason: str = ""

    def describe(self) -> str:
        if self.owner_tid is not None:
            return (f"critical section 0x{self.address:x} held by thread {self.owner_tid}"
                    f" (recursion count {self.recursion_count})")
        return f"critical section 0x{self.address:x}: unknown: {self.reason}"

    def to_json(self) -> dict[str, object]:
        """Plain JSON types; addresses as ``"0x..."`` strings."""
        return {"address": f"0x{self.address:x}", "owner_tid": self.owner_tid,
                "recursion_count": self.recursion_count, "lock_count": self.lock_count,
                "debug_info": None if self.debug_info is None else f"0x{self.debug_info:x}",
                "reason": self.reason}


def _x64_windows(dump: Minidump) -> str:
    system = dump.system_info
    if system is None:
        return "no SystemInfo stream: the operating system is not known"
    if not system.os.startswith("Windows"):
        return f"a {system.os} dump, not a Windows one"
    if system.architecture != md.ProcessorArchitecture.AMD64:
        return "not an x64 dump (the layout read is x64's)"
    return ""


def critical_section(dump: Minidump, address: int) -> CriticalSection:
    """The ``CRITICAL_SECTION`` at ``address`` in an x64 Windows ``dump``: its owner's
    thread id and recursion count when held, else the reason (see the module doc)."""
    problem = _x64_windows(dump)
    if problem:
        return CriticalSection(address, reason=problem)
    try:
        debug_info, lock_count, recursion, owner, _semaphore, _spin = _SECTION.unpack(
            dump.memory.read(address, _SECTION.size))
    except (MemoryNotCaptured, ValueError):
        return CriticalSection(address, reason="memory not captured")
    section = CriticalSection(address, lock_count=lock_count, recursion_count=recursion,
                              debug_info=debug_info)
    if lock_count == FREE_LOCK_COUNT and owner == 0:
        return replace(section, recursion_count=None, reason="not held")
    tids = {thread.thread_id for thread in dump.threads}
    why = ("DebugInfo is not a pointer or -1" if debug_info not in (0, _NO_DEBUG_INFO)
           and (debug_info & 7 or debug_info >= _USER_LIMIT)
           else "the lock count says free" if lock_count == FREE_LOCK_COUNT
           else f"recursion count {recursion}" if recursion < 1
           else f"owner {owner} is not a thread of the dump" if owner not in tids
           else "")
    if why:
        return replace(section, reason=f"inconsistent words ({why})")
    return replace(section, owner_tid=owner)


# --- which section a thread waits for ----------------------------------------------------

# ntdll's functions a thread waiting for a critical section is in, by export name: the
# entry (exported by Windows and Wine) and the internal waits below it (Wine exports
# RtlpWaitForCriticalSection; Windows' RtlpEnterCriticalSectionContended and
# RtlpWaitOnCriticalSection are not exported, so only the entry names them there)
CS_FUNCTIONS = frozenset({"RtlEnterCriticalSection", "RtlpWaitForCriticalSection",
                          "RtlpWaitOnCriticalSection", "RtlpEnterCriticalSectionContended"})
_NONVOLATILE = ("rbx", "rbp", "rsi", "rdi", "r12", "r13", "r14", "r15")
_MAX_SEARCH = 0x4000  # bytes of stack searched between the frames


@lazy_dataclass
class CriticalSectionWait:
    """A thread in ``RtlEnterCriticalSection``: the section it waits for (``section``,
    its owner in ``section.owner_tid``), or ``reason`` why it cannot be told."""

    thread_id: int
    function: str  # the innermost ntdll frame of the wait
    section: CriticalSection | None = None
    reason: str = ""
    frame: str | None = None  # the caller: module!function or module+offset


def critical_section_waits(dump: Minidump, image_paths: Iterable[str | os.PathLike[str]] = ()) \
        -> dict[int, CriticalSectionWait]:
    """{thread id: its critical-section wait} for the threads of an x64 Windows ``dump``
    that are in ``RtlEnterCriticalSection`` (docs/locks.md, "Windows").

    Each thread is unwound through the PE modules' unwind tables (read from the dump's
    memory, or from a file of the module's name in ``image_paths`` with the same
    TimeDateStamp and SizeOfImage). The section is found among the stack words between
    the innermost of :data:`CS_FUNCTIONS` and ``RtlEnterCriticalSection``'s caller and
    the non-volatile registers saved there: a pointer at captured memory that reads as
    a section held by another thread of the dump. Exactly one is the answer; none or
    several is ``reason``."""
    if _x64_windows(dump):
        return {}
    image_paths = list(image_paths)
    images: dict[int, Image] = {}
    for module in dump.modules:
        try:
            images[module.base] = image_of(dump, module, image_paths)
        except ImageError:
            continue
    out: dict[int, CriticalSectionWait] = {}
    for thread in dump.threads:
        frames, _end = walk(dump, thread, images)
        wait = _wait(dump, thread.thread_id, frames)
        if wait is not None:
            out[thread.thread_id] = wait
    return out


def ntdll_problem(dump: Minidump, image_paths: Iterable[str | os.PathLike[str]] = ()) -> str:
    """Why :func:`critical_section_waits` cannot tell any wait of ``dump`` ("" when it
    can): not x64 Windows, or ntdll.dll's image (its unwind tables) not readable."""
    problem = _x64_windows(dump)
    if problem:
        return problem
    ntdll = next((m for m in dump.modules if m.basename.lower() == "ntdll.dll"), None)
    if ntdll is None:
        return "no ntdll.dll among the modules"
    try:
        image_of(dump, ntdll, image_paths)
    except ImageError:
        return ("ntdll.dll's image (its unwind tables) is not in the dump and no copy of it "
                "is in the symbol paths")
    return ""


def _wait(dump: Minidump, tid: int, frames: list[PeFrame]) -> CriticalSectionWait | None:
    matched = [i for i, f in enumerate(frames)
               if f.module is not None and f.module.lower() == "ntdll.dll"
               and f.function in CS_FUNCTIONS]
    if not matched:
        return None
    inner, outer = matched[0], matched[-1]
    function = frames[inner].function or ""
    if outer + 1 >= len(frames):
        return CriticalSectionWait(tid, function, reason="the caller of "
                                   f"{frames[outer].function} was not unwound")
    caller = frames[outer + 1]
    module = next((m for m in dump.modules if m.base <= caller.pc < m.base + m.size), None)
    where = (f"{caller.function} ({module.basename})" if caller.function and module
             else f"{module.basename}+0x{caller.pc - module.base:x}" if module
             else f"0x{caller.pc:x}")
    low, high = frames[inner].sp, min(caller.sp, frames[inner].sp + _MAX_SEARCH)
    try:
        stack = dump.memory.read(low, high - low)
    except (MemoryNotCaptured, ValueError):
        return CriticalSectionWait(tid, function, reason="the stack between the frames is "
                                   "not captured", frame=where)
    values = {v for (v,) in struct.iter_unpack("<Q", stack[:len(stack) // 8 * 8])}
    for frame in frames[inner:outer + 2]:
        values.update(frame.registers.get(r, 0) for r in _NONVOLATILE)
    held: list[CriticalSection] = []
    absent = 0
    for value in sorted(values):
        if value < 0x10000 or value & 7 or value >= _USER_LIMIT:
            continue
        section = critical_section(dump, value)
        if section.reason == "memory not captured":
            absent += 1
        elif section.owner_tid is not None and section.owner_tid != tid:
            held.append(section)
    if len(held) == 1:
        return CriticalSectionWait(tid, function, held[0], frame=where)
    if len(held) > 1:
        return CriticalSectionWait(tid, function, reason="several pointers in the frames read "
                                   "as held critical sections: " + ", ".join(
                                       f"0x{s.address:x}" for s in held), frame=where)
    if absent:
        return CriticalSectionWait(tid, function, reason=f"memory not captured ({absent} "
                                   "pointers in the frames point outside the dump's memory; "
                                   "none of the rest reads as a held critical section)",
                                   frame=where)
    return CriticalSectionWait(tid, function, reason="no pointer in the frames reads as a "
                               "critical section held by another thread", frame=where)
