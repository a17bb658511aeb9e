"""Windows critical sections read from a dump's memory (docs/locks.md, "Windows").

    from minidumpkit.analysis import critical_section

    section = critical_section(dump, 0x140010100)   # a CRITICAL_SECTION's address
    section.owner_tid, section.recursion_count      # or section.reason when not told

An x64 ``RTL_CRITICAL_SECTION`` (winnt.h; 40 bytes): ``DebugInfo`` pointer at 0,
``LockCount`` LONG at 8, ``RecursionCount`` LONG at 12, ``OwningThread`` at 16 (the
owner's thread id, not a handle), ``LockSemaphore`` at 24, ``SpinCount`` at 32. A held
section names its owner only when the words are consistent: a recursion count of at
least 1, an owner that is a thread of the dump and a lock count that is not the free
value -1. Anything else is ``reason`` (memory not captured, not held, inconsistent),
never a guess.

This reads one section at an address the caller knows (a global's symbol, a pointer in
its own data). Which section a thread waits for is not told: the stack walker does not
unwind or name frames in PE modules (ntdll's ``RtlEnterCriticalSection``), so
:func:`~minidumpkit.analysis.wait_graph` has no Windows waits (docs/locks.md).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from .. import format as md
from .._lazydataclass import lazy_dataclass, replace
from ..errors import MemoryNotCaptured

if TYPE_CHECKING:
    from ..reader import Minidump

__all__ = ["CriticalSection", "critical_section"]

# RTL_CRITICAL_SECTION, x64: DebugInfo, LockCount, RecursionCount, OwningThread,
# LockSemaphore, SpinCount (checked with mingw-w64's winnt.h: tests/wine/win/cs_target.c)
_SECTION = struct.Struct("<QiiQQQ")
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
    why = ("the lock count says free" if lock_count == FREE_LOCK_COUNT
           else f"recursion count {recursion}" if recursion < 1
           else f"owner {owner} is not a thread of the dump" if owner not in tids
           else "")
    if why:
        return replace(section, reason=f"inconsistent words ({why})")
    return replace(section, owner_tid=owner)
