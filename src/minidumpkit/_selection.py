"""What goes into a dump: the policy's decision points and the memory plan.

:class:`DumpPolicy` has one method per place where dbghelp would call a
``MINIDUMP_CALLBACK_ROUTINE``; its defaults produce exactly the dump the
``MiniDumpType`` flags ask for. :func:`select` asks those questions in dbghelp's
order and turns a :class:`~minidumpkit._capture.ProcessCapture` into a
:class:`Selection`: the threads and modules to write with their write flags, and
the memory ranges to copy, sorted, disjoint and within the limits readers impose
(Breakpad's 4096 MemoryList ranges, 32-bit RVAs). It reads target memory only to
look for pointers on stacks; writing the file is :mod:`minidumpkit.writer`'s job.
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence

from ._capture import (
    CapturedModule,
    CapturedThread,
    MemorySource,
    ProcessCapture,
    Region,
)
from .flags import MiniDumpType, ModuleWriteFlags, ThreadWriteFlags

__all__ = [
    "DumpPolicy",
    "MemoryRange",
    "ModuleChoice",
    "RangeKind",
    "RegionIndex",
    "Selection",
    "ThreadChoice",
    "VmArea",
    "check_all_memory",
    "default_module_flags",
    "default_thread_flags",
    "select",
]

# The x86_64 System V ABI lets a leaf function use 128 bytes below rsp without moving it.
STACK_RED_ZONE = 128
# dbghelp's "instruction window": code around each thread's instruction pointer.
INSTRUCTION_WINDOW_BEFORE = 128
INSTRUCTION_WINDOW_AFTER = 128
# Window captured around a pointer found on a stack (~256 bytes, like dbghelp): a little
# before the target (allocator headers, preceding fields), most of it after (the object).
INDIRECT_WINDOW_BEFORE = 64
INDIRECT_WINDOW_AFTER = 192
# Breakpad's processor refuses a MemoryList with more ranges (minidump.cc).
BREAKPAD_MAX_MEMORY_RANGES = 4096
# Two planned ranges closer than this inside one readable mapping may be merged (the gap is
# copied too) when the range count must come down to the limit.
MAX_MERGE_GAP = 64 * 1024

MiB = 1 << 20
# WithProcessThreadData: bytes around each thread's TLS pointer (fs_base). glibc puts the
# static TLS blocks just below it and struct pthread (~2.3 KiB) at it.
THREAD_DATA_BEFORE = 4096
THREAD_DATA_AFTER = 4096
# MiniDumpType bits that copy whole regions (Memory64List), and the optional memory
# WithoutOptionalData drops.
BULK_TYPES = (MiniDumpType.WithFullMemory | MiniDumpType.WithPrivateReadWriteMemory
              | MiniDumpType.WithPrivateWriteCopyMemory | MiniDumpType.WithDataSegs
              | MiniDumpType.WithCodeSegs)


@dataclasses.dataclass(frozen=True)
class VmArea(Region):
    """A :class:`Region` with what a backend knows about its pages, for the dump types
    that copy whole regions. A plain Region means: nothing known, every page exists.

    ``vm_flags``
        the kernel's VmFlags mnemonics (/proc/PID/smaps): ``dd`` (VM_DONTDUMP: never
        copied by a bulk flag), ``io`` (device memory: never read), ...
    ``core_dump_size``
        bytes from ``start`` the OS's own core dumper would write (Linux: the target's
        coredump_filter applied as the kernel does); None = the whole region.
    ``pages``
        ``(start, end)`` runs of pages that exist (present or swapped out); pages outside
        them were never touched. None = every page.
    ``written_pages``
        runs of pages copied on write (private file mappings that were written); None =
        unknown, then a private writable file mapping counts as written.
    """

    vm_flags: frozenset[str] = frozenset()
    core_dump_size: int | None = None
    pages: tuple[tuple[int, int], ...] | None = None
    written_pages: tuple[tuple[int, int], ...] | None = None


class DumpPolicy:
    """The decision points of a dump, with dbghelp's callback semantics.

    Each method corresponds to one ``MINIDUMP_CALLBACK_TYPE`` and is called where
    dbghelp would call it, in dbghelp's order: :meth:`cancel` once before anything,
    :meth:`include_thread` for every thread, :meth:`include_module` for every
    module, :meth:`thread_flags` for every included thread, :meth:`module_flags`
    for every included module, :meth:`extra_memory`, :meth:`remove_memory`,
    :meth:`include_vm_region` for every region copied whole (full/private memory); then,
    while the file is written, :meth:`cancel` before every stream and every memory
    chunk, :meth:`progress` after every chunk and :meth:`read_memory_failure` when
    target memory cannot be read. An exception raised by any method stops the dump
    and propagates unchanged.

    The defaults write exactly what the dump type asks for. The size limits are
    keyword arguments (and class attributes, so a subclass may override them):

    ``max_stack_size``
        bytes of one thread's stack, from ``rsp - 128`` upwards (1 MiB).
    ``max_indirect_pointers``
        distinct pointers followed per thread for WithIndirectlyReferencedMemory (1024).
    ``max_indirect_bytes``
        bytes of indirectly referenced memory in the whole dump (4 MiB).
    ``max_memory_ranges``
        MemoryList descriptors (4096, Breakpad's limit).
    ``max_memory_bytes``
        bytes in MemoryList, so every RVA stays below 4 GiB (3 GiB).
    ``chunk_size``
        bytes read from the target at a time; cancel and progress are polled per chunk
        (1 MiB).
    ``max_lock_memory_bytes``
        bytes of the memory the lock analysis needs (the objects around waited-on futex
        words, robust mutex lists; docs/threads.md), copied in every dump type but those
        with WithoutOptionalData (64 KiB; 0 leaves it out).
    """

    max_stack_size: int = 1 * MiB
    max_indirect_pointers: int = 1024
    max_indirect_bytes: int = 4 * MiB
    max_memory_ranges: int = BREAKPAD_MAX_MEMORY_RANGES
    max_memory_bytes: int = 3 << 30
    chunk_size: int = 1 * MiB
    max_lock_memory_bytes: int = 64 << 10

    def __init__(self, *, max_stack_size: int | None = None,
                 max_indirect_pointers: int | None = None,
                 max_indirect_bytes: int | None = None,
                 max_memory_ranges: int | None = None,
                 max_memory_bytes: int | None = None,
                 chunk_size: int | None = None,
                 max_lock_memory_bytes: int | None = None) -> None:
        limits = {"max_stack_size": max_stack_size,
                  "max_indirect_pointers": max_indirect_pointers,
                  "max_indirect_bytes": max_indirect_bytes,
                  "max_memory_ranges": max_memory_ranges,
                  "max_memory_bytes": max_memory_bytes,
                  "chunk_size": chunk_size,
                  "max_lock_memory_bytes": max_lock_memory_bytes}
        for name, value in limits.items():
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, not {value!r}")
            setattr(self, name, value)
        if self.chunk_size < 8:
            raise ValueError(f"chunk_size must be at least 8 bytes, not {self.chunk_size}")

    # Not a dbghelp callback: the capture the questions are about.
    def begin(self, capture: ProcessCapture) -> None:
        """Called once by :func:`select`, before :meth:`cancel` and any question, with
        the capture being written (an adapter prepares its views of it). Default: nothing."""

    # IncludeThreadCallback
    def include_thread(self, thread: CapturedThread) -> bool:
        """Whether ``thread`` appears in the dump at all. Default: True."""
        return True

    # ThreadCallback / ThreadExCallback
    def thread_flags(self, thread: CapturedThread,
                     default: ThreadWriteFlags) -> ThreadWriteFlags:
        """What is written for an included thread. Default: ``default``.

        ``default`` is Thread|Stack|Context|InstructionWindow, plus ThreadInfo with
        MiniDumpWithThreadInfo. As in dbghelp the answer can only remove bits: it is
        ANDed with ``default``. Without Thread the thread has no ThreadList,
        ThreadNames entry; without Context its entry has no context; without Stack
        (InstructionWindow) its stack (the code around its rip) is not copied.
        """
        return default

    # IncludeModuleCallback
    def include_module(self, module: CapturedModule) -> bool:
        """Whether ``module`` appears in ModuleList. Default: True."""
        return True

    # ModuleCallback
    def module_flags(self, module: CapturedModule,
                     default: ModuleWriteFlags) -> ModuleWriteFlags:
        """What is written for an included module. Default: ``default``.

        ``default`` is Module|CvRecord|MiscRecord; the answer is ANDed with it.
        Without Module the module is left out; without CvRecord it has no build id.
        """
        return default

    # MemoryCallback
    def extra_memory(self) -> Iterable[tuple[int, int]]:
        """Additional ``(base, size)`` ranges to copy. Default: none.

        They are read as given: a part that cannot be read goes through
        :meth:`read_memory_failure`.
        """
        return ()

    # RemoveMemoryCallback
    def remove_memory(self) -> Iterable[tuple[int, int]]:
        """``(base, size)`` ranges to keep out of the dump, whatever added them.
        Default: none."""
        return ()

    # IncludeVmRegionCallback
    def include_vm_region(self, region: Region) -> bool:
        """Whether ``region``, which the dump type would copy whole (WithFullMemory,
        WithPrivateReadWriteMemory, ...), is copied. Default: True.

        Asked once per such region while the plan is made, after :meth:`remove_memory`.
        False leaves the whole region out of the bulk copy (memory it holds may still
        be copied for another reason, e.g. a stack).
        """
        return True

    # ReadMemoryFailureCallback
    def read_memory_failure(self, address: int, size: int, error: OSError) -> bool:
        """Target memory at ``address`` (``size`` bytes) could not be read.

        Return True to go on (the range keeps the bytes read before ``address``; the
        rest of that mapping's part of the range is left out), False to stop the dump
        with a :class:`~minidumpkit.errors.ProcessError`. Default: True.
        """
        return True

    # CancelCallback
    def cancel(self) -> bool:
        """Polled before every stream and every memory chunk; True stops the dump
        with :class:`~minidumpkit.errors.DumpCancelled`. Default: False."""
        return False

    def progress(self, done: int, total: int) -> None:
        """Memory bytes processed so far out of ``total``; called after every chunk,
        monotonically, and last with ``done == total``. Default: nothing."""


def default_thread_flags(dump_type: MiniDumpType) -> ThreadWriteFlags:
    """dbghelp's default ThreadWriteFlags for ``dump_type``."""
    flags = (ThreadWriteFlags.Thread | ThreadWriteFlags.Stack | ThreadWriteFlags.Context
             | ThreadWriteFlags.InstructionWindow)
    if dump_type & MiniDumpType.WithThreadInfo:
        flags |= ThreadWriteFlags.ThreadInfo
    if dump_type & MiniDumpType.WithProcessThreadData:
        flags |= ThreadWriteFlags.ThreadData
    return flags


def default_module_flags(dump_type: MiniDumpType) -> ModuleWriteFlags:
    """dbghelp's default ModuleWriteFlags for ``dump_type`` (ModuleReferencedByMemory is
    added per module by ScanMemory)."""
    flags = ModuleWriteFlags.Module | ModuleWriteFlags.CvRecord | ModuleWriteFlags.MiscRecord
    if dump_type & MiniDumpType.WithDataSegs:
        flags |= ModuleWriteFlags.DataSeg
    if dump_type & MiniDumpType.WithCodeSegs:
        flags |= ModuleWriteFlags.CodeSegs
    return flags


# --- address-space helpers ---------------------------------------------------------

def never_read(region: Region) -> bool:
    """Mappings whose reading has side effects or always fails: devices, [vvar], [vsyscall]."""
    path = region.path
    if path.startswith(("[vvar", "[vsyscall]")):
        return True
    return path.startswith("/dev/") and not path.startswith(("/dev/shm/", "/dev/zero"))


def dumpable(region: Region) -> bool:
    return region.readable and not never_read(region)


def bulk_copyable(region: Region) -> bool:
    """Whether a whole-region flag may copy ``region``: readable, not a device, not
    VM_DONTDUMP (madvise(MADV_DONTDUMP) asks debuggers' and the kernel's dumpers alike
    to leave it out)."""
    if not dumpable(region):
        return False
    if isinstance(region, VmArea):
        return not region.vm_flags & {"dd", "io", "pf"}
    return True


def kernel_readable(region: Region) -> bool:
    """Whether the kernel lets a debugger read ``region`` without side effects: readable,
    not a device, [vvar] or [vsyscall], not VM_IO / VM_PFNMAP memory (which
    /proc/PID/mem refuses). MADV_DONTDUMP does not matter here."""
    if not dumpable(region):
        return False
    return not (isinstance(region, VmArea) and region.vm_flags & {"io", "pf"})


def check_all_memory(all_memory: bool, dump_type: MiniDumpType) -> None:
    """Refuse ``all_memory=True`` for a dump type it cannot widen (no WithFullMemory)."""
    if not isinstance(all_memory, bool):
        raise TypeError(f"all_memory must be True or False, not {all_memory!r}")
    if all_memory and not dump_type & MiniDumpType.WithFullMemory:
        raise ValueError(f"all_memory=True widens WithFullMemory, which dump type "
                         f"0x{int(dump_type):x} does not have: use DumpType.FULL")


def existing_pages(region: Region, start: int | None = None,
                   end: int | None = None) -> list[tuple[int, int]]:
    """The runs of pages of ``region`` (within ``[start, end)``) that exist."""
    lo = region.start if start is None else max(start, region.start)
    hi = region.end if end is None else min(end, region.end)
    if hi <= lo:
        return []
    runs = region.pages if isinstance(region, VmArea) else None
    if runs is None:
        return [(lo, hi)]
    return [(max(a, lo), min(b, hi)) for a, b in runs if b > lo and a < hi]


class RegionIndex:
    """The captured mappings, sorted, with address lookup."""

    def __init__(self, regions: Iterable[Region]) -> None:
        self.regions = sorted(regions, key=lambda r: r.start)
        self._starts = [r.start for r in self.regions]

    def find(self, address: int) -> Region | None:
        i = bisect.bisect_right(self._starts, address) - 1
        if i >= 0 and self.regions[i].contains(address):
            return self.regions[i]
        return None

    def segments(self, start: int, end: int) -> Iterator[tuple[int, int, Region | None]]:
        """Split ``[start, end)`` at mapping boundaries; unmapped gaps are segments too."""
        regions, n = self.regions, len(self.regions)
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        pos = start
        while pos < end:
            while i < n and regions[i].end <= pos:
                i += 1
            if i < n and regions[i].start <= pos:
                seg_end, region = min(end, regions[i].end), regions[i]
            else:
                seg_end, region = (min(end, regions[i].start) if i < n else end), None
            yield pos, seg_end, region
            pos = seg_end


# --- ranges -------------------------------------------------------------------------

class RangeKind(enum.IntEnum):
    """Why a range is in the dump; a higher value is kept longer when limits bite."""

    INDIRECT = 0
    EXTRA = 1
    INSTRUCTION_WINDOW = 2
    STACK = 3
    # whole-region copies (full / private / data / code memory): Memory64List, never capped
    BULK = 4


@dataclasses.dataclass(frozen=True)
class MemoryRange:
    start: int
    end: int
    kind: RangeKind

    @property
    def size(self) -> int:
        return self.end - self.start


def normalize(ranges: Iterable[MemoryRange]) -> list[MemoryRange]:
    """Sorted, with overlapping and touching ranges merged (the merge keeps the higher kind)."""
    out: list[MemoryRange] = []
    for r in sorted(ranges, key=lambda r: (r.start, r.end)):
        if r.end <= r.start:
            continue
        if out and r.start <= out[-1].end:
            last = out[-1]
            out[-1] = MemoryRange(last.start, max(last.end, r.end), max(last.kind, r.kind))
        else:
            out.append(r)
    return out


def subtract(ranges: Sequence[MemoryRange], holes: Sequence[MemoryRange]) -> list[MemoryRange]:
    """``ranges`` minus ``holes`` (both normalized)."""
    out: list[MemoryRange] = []
    j = 0
    for r in ranges:
        start = r.start
        while j < len(holes) and holes[j].end <= start:
            j += 1
        k = j
        while k < len(holes) and holes[k].start < r.end:
            if holes[k].start > start:
                out.append(MemoryRange(start, holes[k].start, r.kind))
            start = max(start, holes[k].end)
            k += 1
        if start < r.end:
            out.append(MemoryRange(start, r.end, r.kind))
    return out


def _overlaps(holes: Sequence[MemoryRange], starts: Sequence[int], start: int, end: int) -> bool:
    i = bisect.bisect_right(starts, start) - 1
    for h in holes[max(i, 0):]:
        if h.start >= end:
            break
        if h.end > start and h.start < end:
            return True
    return False


def cap_count(ranges: list[MemoryRange], limit: int, index: RegionIndex,
              holes: Sequence[MemoryRange]) -> tuple[list[MemoryRange], list[MemoryRange]]:
    """Bring normalized ``ranges`` down to ``limit`` ranges.

    First the smallest gaps (at most MAX_MERGE_GAP, inside one readable mapping, not
    touching removed memory) are filled so neighbours merge; then the least important
    ranges (lowest kind, then smallest) are dropped. Returns (kept, dropped).
    """
    if len(ranges) <= limit:
        return ranges, []
    hole_starts = [h.start for h in holes]
    gaps: list[tuple[int, int]] = []
    for i in range(len(ranges) - 1):
        gap_start, gap_end = ranges[i].end, ranges[i + 1].start
        if gap_end - gap_start > MAX_MERGE_GAP:
            continue
        region = index.find(gap_start)
        if region is None or not dumpable(region) or gap_end > region.end:
            continue
        if _overlaps(holes, hole_starts, gap_start, gap_end):
            continue
        gaps.append((gap_end - gap_start, i))
    gaps.sort()
    fill = {i for _, i in gaps[:len(ranges) - limit]}
    merged: list[MemoryRange] = []
    for i, r in enumerate(ranges):
        if i - 1 in fill:
            last = merged[-1]
            merged[-1] = MemoryRange(last.start, r.end, max(last.kind, r.kind))
        else:
            merged.append(r)
    if len(merged) <= limit:
        return merged, []
    by_value = sorted(merged, key=lambda r: (r.kind, r.size, r.start))
    excess = len(merged) - limit
    dropped = by_value[:excess]
    kept = sorted(by_value[excess:], key=lambda r: r.start)
    return kept, dropped


def cap_bytes(ranges: list[MemoryRange], limit: int) -> tuple[list[MemoryRange], list[MemoryRange]]:
    """Drop the least important ranges (lowest kind, then largest) until ``limit`` bytes fit."""
    total = sum(r.size for r in ranges)
    if total <= limit:
        return ranges, []
    dropped: list[MemoryRange] = []
    gone: set[int] = set()
    for r in sorted(ranges, key=lambda r: (r.kind, -r.size, r.start)):
        if total <= limit:
            break
        dropped.append(r)
        gone.add(r.start)
        total -= r.size
    return [r for r in ranges if r.start not in gone], dropped


def _user_ranges(items: Iterable[tuple[int, int]], hook: str, kind: RangeKind) -> list[MemoryRange]:
    out = []
    for item in items:
        base, size = item
        if isinstance(base, bool) or isinstance(size, bool) or not isinstance(base, int) \
                or not isinstance(size, int):
            raise TypeError(f"DumpPolicy.{hook}() must yield (base, size) int pairs, got {item!r}")
        if base < 0 or size < 0 or base + size > 1 << 64:
            raise ValueError(f"DumpPolicy.{hook}() gave an impossible range {item!r}")
        if size:  # as with MemoryCallback, an empty range adds nothing
            out.append(MemoryRange(base, base + size, kind))
    return out


# --- the plan -----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ThreadChoice:
    thread: CapturedThread
    flags: ThreadWriteFlags


@dataclasses.dataclass(frozen=True)
class ModuleChoice:
    module: CapturedModule
    flags: ModuleWriteFlags


@dataclasses.dataclass
class Selection:
    """What to write: threads and modules in capture order, memory sorted by address."""

    threads: list[ThreadChoice]
    modules: list[ModuleChoice]
    memory: list[MemoryRange]
    # tid → the stack range wanted for it ([rsp-128, end of mapping) within the cap)
    stacks: dict[int, tuple[int, int]]
    regions: RegionIndex
    dropped: list[MemoryRange] = dataclasses.field(default_factory=list)
    indirect_pointers: int = 0
    # whole-region copies, written to Memory64List at the end of the file (disjoint from
    # ``memory``, which keeps stacks and small ranges under 32-bit RVAs)
    memory64: list[MemoryRange] = dataclasses.field(default_factory=list)
    # modules a stack word points into (ScanMemory), by base address
    referenced_modules: frozenset[int] = frozenset()
    # what WithFullMemory copied: "core_dump" (the OS's core-dump rules), "all_readable"
    # (all_memory=True), None without WithFullMemory; recorded in the MinidumpkitInfo stream
    full_memory: str | None = None
    # what DumpPolicy.remove_memory took out (normalized): ranges added after planning
    # (the Python-aware capture's) leave these out too
    holes: list[MemoryRange] = dataclasses.field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(r.size for r in self.memory) + sum(r.size for r in self.memory64)


def stack_range(thread: CapturedThread, index: RegionIndex, max_size: int) -> tuple[int, int] | None:
    """``[rsp - 128, end of rsp's mapping)``, clipped to the mapping and to ``max_size``
    bytes from its low end (the part nearest rsp holds the innermost frames)."""
    sp = thread.sp
    region = index.find(sp)
    if region is None or not dumpable(region):
        return None
    start = max(region.start, sp - STACK_RED_ZONE)
    end = min(region.end, start + max_size)
    return (start, end) if end > start else None


def instruction_window(thread: CapturedThread, index: RegionIndex) -> tuple[int, int] | None:
    pc = thread.pc
    region = index.find(pc)
    if region is None or not dumpable(region):
        return None
    return max(region.start, pc - INSTRUCTION_WINDOW_BEFORE), min(region.end, pc + INSTRUCTION_WINDOW_AFTER)


class _PointerTargets:
    """Mappings a stack word may point into to have memory captured around it:
    readable, not code, not a stack, not a device."""

    def __init__(self, index: RegionIndex, stack_regions: set[tuple[int, int]]) -> None:
        self.regions = [r for r in index.regions
                        if dumpable(r) and not r.executable and (r.start, r.end) not in stack_regions
                        and not r.path.startswith("[stack")]
        self._starts = self.starts = [r.start for r in self.regions]
        self.ends = [r.end for r in self.regions]
        self.low = self.regions[0].start if self.regions else 0
        self.high = max((r.end for r in self.regions), default=0)

    def find(self, address: int) -> Region | None:
        i = bisect.bisect_right(self._starts, address) - 1
        if i >= 0 and address < self.regions[i].end:
            return self.regions[i]
        return None


def _words(data: bytes) -> array[int]:
    words = array("Q")
    words.frombytes(data[:len(data) & ~7])
    if sys.byteorder == "big":  # the target's words are little-endian
        words.byteswap()
    return words


def _scan_pointers(memory: MemorySource, start: int, end: int, targets: _PointerTargets,
                   limit: int, chunk: int, checkpoint: Callable[[], None]) -> list[int]:
    """Distinct aligned words in ``[start, end)`` that point into a target mapping,
    nearest rsp first, at most ``limit``. Unreadable memory ends the scan quietly:
    the writer reports read failures when it copies the same bytes."""
    found: dict[int, None] = {}
    addr = (start + 7) & ~7
    low, high = targets.low, targets.high
    starts, ends = targets.starts, targets.ends  # targets.find, inlined
    bisect_right = bisect.bisect_right
    while addr + 8 <= end and len(found) < limit:
        want = min(chunk, end - addr) & ~7
        checkpoint()
        data = memory.read(addr, want)[:want]
        # Distinct words first (in C, first occurrence order kept): stacks repeat zeros,
        # return addresses and saved pointers, so far fewer words reach the lookups.
        # (the range test in a comprehension first: most words are small integers)
        for word in [w for w in dict.fromkeys(_words(data)) if low <= w < high and w not in found]:
            i = bisect_right(starts, word) - 1
            if i >= 0 and word < ends[i]:
                found[word] = None
                if len(found) >= limit:
                    break
        if len(data) < want:
            break
        addr += want
    return list(found)


def select(capture: ProcessCapture, dump_type: MiniDumpType, policy: DumpPolicy,
           checkpoint: Callable[[], None], *, all_memory: bool = False) -> Selection:
    """Ask ``policy`` every question, in dbghelp's order, and plan the dump.

    ``checkpoint`` polls cancellation (raising DumpCancelled); it runs before the
    first question, after the last one, and per chunk while stacks are scanned.
    ``all_memory``: WithFullMemory copies every page the kernel can read, not only
    what the OS's core dumper would write (see :func:`check_all_memory`).
    """
    policy.begin(capture)
    checkpoint()
    index = RegionIndex(capture.regions)
    threads = [t for t in capture.threads if policy.include_thread(t)]
    modules = [m for m in capture.modules if policy.include_module(m)]
    tdefault = default_thread_flags(dump_type)
    thread_choices = [ThreadChoice(t, ThreadWriteFlags(int(policy.thread_flags(t, tdefault)) & tdefault))
                      for t in threads]
    stacks: dict[int, tuple[int, int]] = {}
    for choice in thread_choices:
        if choice.flags & ThreadWriteFlags.Stack:
            stack = stack_range(choice.thread, index, policy.max_stack_size)
            if stack is not None:
                stacks[choice.thread.tid] = stack
    referenced: frozenset[int] = frozenset()
    if dump_type & MiniDumpType.ScanMemory:
        # dbghelp scans before its ModuleCallbacks, which then see ModuleReferencedByMemory
        referenced = _referenced_modules(capture, modules, stacks, policy, checkpoint)
    mdefault = default_module_flags(dump_type)
    module_choices = []
    for m in modules:
        default = mdefault
        if m.base in referenced:
            default |= ModuleWriteFlags.ModuleReferencedByMemory
        flags = ModuleWriteFlags(int(policy.module_flags(m, default)) & default)
        if flags & ModuleWriteFlags.Module:
            module_choices.append(ModuleChoice(m, flags))
    extra = _user_ranges(policy.extra_memory(), "extra_memory", RangeKind.EXTRA)
    holes = normalize(_user_ranges(policy.remove_memory(), "remove_memory", RangeKind.EXTRA))
    checkpoint()

    optional = not dump_type & MiniDumpType.WithoutOptionalData
    base: list[MemoryRange] = list(extra)
    for choice in thread_choices:
        t = choice.thread
        if t.tid in stacks:
            base.append(MemoryRange(*stacks[t.tid], RangeKind.STACK))
        if choice.flags & ThreadWriteFlags.InstructionWindow:
            window = instruction_window(t, index)
            if window is not None:
                base.append(MemoryRange(*window, RangeKind.INSTRUCTION_WINDOW))
        if optional and choice.flags & ThreadWriteFlags.ThreadData and t.teb:
            base += _around(index, t.teb, THREAD_DATA_BEFORE, THREAD_DATA_AFTER)
    if optional:  # the lock analysis's memory is optional data, like indirect memory
        base += _lock_memory(index, capture.lock_memory, policy.max_lock_memory_bytes)
    if optional and dump_type & MiniDumpType.WithModuleHeaders:
        for mc in module_choices:  # the ELF (PE) headers: the module's first page
            base += _around(index, mc.module.base, 0, 4096)
    limit = policy.max_memory_ranges
    planned, dropped = cap_count(subtract(normalize(base), holes), limit, index, holes)

    selection = Selection(thread_choices, module_choices, planned, stacks, index, dropped,
                          referenced_modules=referenced, holes=holes)
    if optional and dump_type & MiniDumpType.WithIndirectlyReferencedMemory:
        indirect = _indirect_memory(capture, selection, policy, holes, checkpoint)
        indirect = subtract(normalize(indirect), normalize([*planned, *holes]))
        indirect, more = cap_count(indirect, max(limit - len(planned), 0), index, holes)
        selection.dropped += more
        planned = normalize([*planned, *indirect])
    selection.memory, more = cap_bytes(planned, policy.max_memory_bytes)
    selection.dropped += more
    if dump_type & MiniDumpType.WithFullMemory:
        selection.full_memory = "all_readable" if all_memory else "core_dump"
    if dump_type & BULK_TYPES:
        bulk = _bulk_memory(index, module_choices, dump_type, policy, all_memory)
        checkpoint()
        selection.memory64 = subtract(normalize(bulk), normalize([*selection.memory, *holes]))
    return selection


def _around(index: RegionIndex, address: int, before: int, after: int) -> list[MemoryRange]:
    """``[address - before, address + after)`` clipped to the readable mapping holding
    ``address`` (nothing if there is none)."""
    region = index.find(address)
    if region is None or not dumpable(region):
        return []
    lo, hi = max(region.start, address - before), min(region.end, address + after)
    return [MemoryRange(lo, hi, RangeKind.EXTRA)] if hi > lo else []


def _lock_memory(index: RegionIndex, wanted: Sequence[tuple[int, int]],
                 budget: int) -> list[MemoryRange]:
    """The backend's lock-analysis ranges, clipped to readable mappings, in the order
    given (futex objects first) until ``budget`` bytes."""
    out: list[MemoryRange] = []
    for address, size in wanted:
        for lo, hi, region in index.segments(address, address + size):
            if region is None or not dumpable(region):
                continue
            hi = min(hi, lo + budget)
            if hi <= lo:
                return out
            out.append(MemoryRange(lo, hi, RangeKind.EXTRA))
            budget -= hi - lo
    return out


def _file_backed(region: Region) -> bool:
    return region.path.startswith("/") and region.inode != 0


def _bulk_memory(index: RegionIndex, modules: Sequence[ModuleChoice], dump_type: MiniDumpType,
                 policy: DumpPolicy, all_memory: bool = False) -> list[MemoryRange]:
    """What the whole-region flags copy, region by region (IncludeVmRegionCallback asked
    for each region with something to copy), only pages that exist. With ``all_memory``
    WithFullMemory takes every region the kernel can read whole, MADV_DONTDUMP ones
    and file mappings included, whatever the core-dump rules say."""
    data_spans: list[tuple[int, int]] = []
    code_spans: list[tuple[int, int]] = []
    for mc in modules:
        span = (mc.module.base, mc.module.base + mc.module.size)
        if mc.flags & ModuleWriteFlags.DataSeg:
            data_spans.append(span)
        if mc.flags & ModuleWriteFlags.CodeSegs:
            code_spans.append(span)
    data_ends = {end for _, end in data_spans}
    full = dump_type & MiniDumpType.WithFullMemory
    private_rw = dump_type & MiniDumpType.WithPrivateReadWriteMemory
    write_copy = dump_type & MiniDumpType.WithPrivateWriteCopyMemory
    out: list[MemoryRange] = []
    for r in index.regions:
        everything = bool(full) and all_memory and kernel_readable(r)
        if not everything and not bulk_copyable(r):
            continue
        wanted: list[tuple[int, int]] = []
        file_backed = _file_backed(r)
        in_module = any(lo <= r.start < hi for lo, hi in data_spans + code_spans)
        if everything:
            wanted += existing_pages(r)
        elif full:
            size = r.size
            if isinstance(r, VmArea) and r.core_dump_size is not None:
                size = r.core_dump_size
            wanted += existing_pages(r, r.start, r.start + size)
        if private_rw and r.private and r.writable and not file_backed:
            wanted += existing_pages(r)
        if write_copy and r.private and file_backed:
            written = r.written_pages if isinstance(r, VmArea) else None
            if written is not None:
                wanted += written
            elif r.writable:
                wanted += existing_pages(r)
        if in_module and r.writable and any(lo <= r.start < hi for lo, hi in data_spans):
            wanted += existing_pages(r)
        elif r.writable and r.private and not file_backed and r.start in data_ends:
            wanted += existing_pages(r)  # .bss beyond the file's end: anonymous, right after
        if in_module and r.executable and any(lo <= r.start < hi for lo, hi in code_spans):
            wanted += existing_pages(r)
        if not wanted or not policy.include_vm_region(r):
            continue
        out += (MemoryRange(lo, hi, RangeKind.BULK) for lo, hi in wanted if hi > lo)
    return out


def _referenced_modules(capture: ProcessCapture, modules: Sequence[CapturedModule],
                        stacks: dict[int, tuple[int, int]], policy: DumpPolicy,
                        checkpoint: Callable[[], None]) -> frozenset[int]:
    """Bases of the modules some aligned stack word points into (ScanMemory)."""
    spans = sorted((m.base, m.base + m.size) for m in modules)
    if not spans:
        return frozenset()
    starts = [lo for lo, _ in spans]
    found: set[int] = set()
    for start, end in stacks.values():
        addr = (start + 7) & ~7
        while addr + 8 <= end and len(found) < len(spans):
            want = min(policy.chunk_size, end - addr) & ~7
            checkpoint()
            data = capture.memory.read(addr, want)[:want]
            for word in set(_words(data)):
                i = bisect.bisect_right(starts, word) - 1
                if i >= 0 and word < spans[i][1]:
                    found.add(spans[i][0])
            if len(data) < want:
                break
            addr += want
    return frozenset(found)


def _indirect_memory(capture: ProcessCapture, selection: Selection, policy: DumpPolicy,
                     holes: Sequence[MemoryRange],
                     checkpoint: Callable[[], None]) -> list[MemoryRange]:
    """Windows around pointers found on the copied stacks (WithIndirectlyReferencedMemory)."""
    index = selection.regions
    stack_regions = set()
    for t in capture.threads:
        region = index.find(t.sp)
        if region is not None:
            stack_regions.add((region.start, region.end))
    targets = _PointerTargets(index, stack_regions)
    if not targets.regions:
        return []
    # The blamed thread's stack is scanned first: its pointers matter most when the
    # byte budget runs out.
    blamed = capture.exception.thread_id if capture.exception else None
    order = sorted(selection.stacks.items(), key=lambda item: item[0] != blamed)
    budget = policy.max_indirect_bytes
    windows: list[MemoryRange] = []
    for _tid, (start, end) in order:
        left = policy.max_indirect_pointers
        # Only the stack bytes that will really be in the dump are scanned.
        for piece in subtract([MemoryRange(start, end, RangeKind.STACK)], holes):
            if budget <= 0 or left <= 0:
                break
            pointers = _scan_pointers(capture.memory, piece.start, piece.end, targets,
                                      left, policy.chunk_size, checkpoint)
            left -= len(pointers)
            selection.indirect_pointers += len(pointers)
            for p in pointers:
                region = targets.find(p)
                assert region is not None
                w = MemoryRange(max(region.start, p - INDIRECT_WINDOW_BEFORE),
                                min(region.end, p + INDIRECT_WINDOW_AFTER), RangeKind.INDIRECT)
                if w.size > budget:
                    budget = 0
                    break
                budget -= w.size
                windows.append(w)
    return windows
