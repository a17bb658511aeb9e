"""The MDMP writer: a :class:`~minidumpkit._capture.ProcessCapture` in, a minidump out.

The output is the Breakpad/Crashpad Linux dialect that lldb, rust-minidump,
Breakpad and Sentry read (see ``docs/writer.md``). Nothing here knows which OS
the capture came from; what to include is decided by :mod:`minidumpkit._selection`
(the :class:`DumpPolicy` hooks and the memory plan).

File layout: the header and the directory (sized exactly up front, back-patched at
the end), then every stream appended at an 8-byte boundary (contexts at 16):
ThreadList (its entries are patched once the stacks are copied), the thread
contexts, ThreadNames, ThreadInfoList, ModuleList, Exception, SystemInfo, MiscInfo,
HandleData, the raw Linux streams, LinuxDsoDebug, the memory bytes followed by the
MemoryList that describes them, MemoryInfoList, UnloadedModuleList, and minidumpkit's
info stream. Everything a 32-bit RVA points to stays below 4 GiB. Whole-region memory
(full, private, data and code memory) comes last: the Memory64List descriptors, then
its bytes back to back, the only part of the file that may extend past 4 GiB. With
full memory, Memory64List holds every byte, stacks included, and MemoryList is empty
(dbghelp's layout), unless the Memory64 bytes could pass 4 GiB (see
:meth:`_Job.memory64_below_4gib`).
"""

from __future__ import annotations

import bisect
import dataclasses
import errno
import functools
import io
import json
import os
import struct
import time
from array import array
from collections.abc import Callable
from typing import BinaryIO

from . import __version__
from . import format as md
from ._capture import CapturedThread, CapturedThreadState, ProcessCapture, Region
from ._readahead import ReadAhead
from ._selection import (
    DumpPolicy,
    RegionIndex,
    Selection,
    ThreadChoice,
    normalize,
    select,
)
from .errors import DumpCancelled, ProcessError, UnsupportedError
from .flags import (
    MiniDumpType,
    ModuleWriteFlags,
    StreamType,
    ThreadWriteFlags,
    coerce_dump_type,
)

__all__ = ["NO_EFFECT_TYPES", "SUPPORTED_TYPES", "DumpPolicy", "WriteStats", "flag_names",
           "write_minidump"]

# The MiniDumpType bits this writer accepts; any other bit is refused, never ignored.
# Today that is every valid bit: those in NO_EFFECT_TYPES have no meaning outside Windows
# and are only recorded in the header (docs/dump-types.md).
SUPPORTED_TYPES = MiniDumpType.ValidTypeFlags
NO_EFFECT_TYPES = (MiniDumpType.WithoutAuxiliaryState | MiniDumpType.WithFullAuxiliaryState
                   | MiniDumpType.WithTokenInformation | MiniDumpType.FilterTriage
                   | MiniDumpType.WithIptTrace | MiniDumpType.ScanInaccessiblePartialPages
                   | MiniDumpType.FilterWriteCombinedMemory)

# Breakpad's kInvalidMDRVA: LinuxDsoDebug's link-map RVA when there is no link map.
_INVALID_RVA = 0xFFFFFFFF
_RVA_LIMIT = 1 << 32
# MINIDUMP_THREAD_INFO.ExitStatus of a thread that has not exited (Windows' STILL_ACTIVE).
_STILL_ACTIVE = 259
_CAPTURE_NAMES = {md.CAPTURE_STOP: "stop", md.CAPTURE_VA_CLONE: "va_clone",
                  md.CAPTURE_SNAPSHOT_LIVE: "snapshot_live"}
# At most this many read failures / dropped ranges are listed in the info stream.
_MAX_LISTED = 32
# Room kept for the info stream when it is written before the Memory64 bytes it reports on.
_INFO_RESERVE = 16 << 10
# CONTEXT_EX (winnt.h): three CONTEXT_CHUNKs {LONG Offset; DWORD Length} = All, Legacy, XState
_CONTEXT_EX = struct.Struct("<iIiIiI")
_CONTEXT_XSTATE = 0x40  # CONTEXT_XSTATE without the architecture bit
_FXSAVE_SIZE = 512  # the legacy XSAVE region, already in CONTEXT.FltSave
# Memory64 chunks of zeros at least this long are left as holes (sparse output)
_HOLE_MIN = 64 << 10


@dataclasses.dataclass(frozen=True)
class WriteStats:
    """What :func:`write_minidump` wrote."""

    bytes_written: int
    stream_count: int
    memory_ranges: int
    memory_bytes: int
    thread_count: int
    module_count: int
    handle_count: int
    read_failures: int  # ranges cut short because target memory could not be read
    dropped_ranges: int  # planned ranges left out to respect the range/byte limits
    elapsed: float  # seconds
    # where the MinidumpkitInfo stream starts in ``out`` (an absolute file position, not
    # an RVA), for :func:`record_pause`
    info_offset: int | None = None


def flag_names(value: int) -> str:
    """``"WithThreadInfo|WithHandleData"`` (``"Normal"`` for 0)."""
    return _flag_names(int(value))


@functools.lru_cache(maxsize=64)
def _flag_names(value: int) -> str:
    # iterating an enum's members costs ~0.3 ms; a program dumps with few distinct types
    names = [m.name for m in MiniDumpType if m.value & value and m.name]
    return "|".join(names) or "Normal"


def write_minidump(capture: ProcessCapture, out: BinaryIO, dump_type: MiniDumpType,
                   *, policy: DumpPolicy | None = None,
                   selection: Selection | None = None) -> WriteStats:
    """Write ``capture`` to ``out`` (seekable, opened for writing) as an MDMP file.

    ``dump_type`` says what to include; bits this writer does not implement raise
    :class:`~minidumpkit.errors.UnsupportedError` naming them. ``policy`` answers the
    questions dbghelp would ask its callback (default: :class:`DumpPolicy`, which
    writes exactly what ``dump_type`` asks for). Exceptions raised by the policy
    propagate unchanged; :meth:`DumpPolicy.cancel` returning True raises
    :class:`~minidumpkit.errors.DumpCancelled`. On any exception ``out`` holds a
    partial file that the caller discards.

    ``selection`` is the plan :func:`~minidumpkit._selection.select` already made for
    this capture, ``dump_type`` and ``policy`` (a backend that plans while the target
    is stopped and writes after releasing it); None plans now.
    """
    started = time.perf_counter()
    dump_type = coerce_dump_type(dump_type)
    # Plain ints: ``~`` of an IntFlag spans only the defined bits, so it misses unknown ones.
    if int(dump_type) & ~int(MiniDumpType.ValidTypeFlags):
        raise ValueError(f"0x{int(dump_type):x} has bits outside MiniDumpValidTypeFlags (0x01FFFFFF)")
    unsupported = int(dump_type) & ~int(SUPPORTED_TYPES)
    if unsupported:
        raise UnsupportedError(
            f"MiniDumpType.{flag_names(unsupported)} is not implemented by minidumpkit's "
            f"MDMP writer yet (it writes {flag_names(SUPPORTED_TYPES)}); leave "
            f"{'that bit' if unsupported.bit_count() == 1 else 'those bits'} out")
    _validate(capture)
    return _Job(capture, out, dump_type, DumpPolicy() if policy is None else policy,
                started).run(selection)


def record_pause(out: BinaryIO, stats: WriteStats, pause_ns: int) -> None:
    """Overwrite the pause recorded in the MinidumpkitInfo stream of the dump just
    written to ``out`` (seekable) with ``pause_ns``, leaving ``out`` at its end.

    A dump written while the target is held records a pause that is still running:
    the backend measures the real one once it has released the target, and patches
    it in here before the file is published."""
    if stats.info_offset is None:
        raise ValueError("this dump has no MinidumpkitInfo stream to patch")
    end = out.tell()
    out.seek(stats.info_offset + md.MinidumpkitInfo.offset_of("pause_ns"))
    out.write(struct.pack("<Q", pause_ns))
    out.seek(end)
    out.flush()


def _validate(capture: ProcessCapture) -> None:
    """Contract checks on what the backend filled (ValueError: a backend bug)."""
    tids = [t.tid for t in capture.threads]
    if len(set(tids)) != len(tids):
        raise ValueError(f"ProcessCapture.threads lists a thread id twice: {sorted(tids)}")
    if capture.exception is not None:
        if capture.exception.thread_id not in tids:
            raise ValueError(f"the exception's thread {capture.exception.thread_id} is not in "
                             "ProcessCapture.threads")
        if len(capture.exception.parameters) > md.EXCEPTION_MAXIMUM_PARAMETERS:
            raise ValueError(f"an exception record holds at most {md.EXCEPTION_MAXIMUM_PARAMETERS} "
                             f"parameters, got {len(capture.exception.parameters)}")
    for stream_type in capture.raw_streams:
        # skelsec's reader (and others) reject unknown ids <= LastReservedStream.
        if stream_type <= StreamType.LastReservedStream or stream_type in _OWN_STREAMS:
            raise ValueError(f"raw stream type 0x{stream_type:x} is reserved or written by the writer")


_OWN_STREAMS = frozenset({StreamType.LinuxDsoDebug, StreamType.MinidumpkitInfoStream,
                          StreamType.MinidumpkitThreadStateStream})


class _File:
    """Appends to ``out`` and hands out RVAs (offsets from where the dump starts)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.base = out.tell()  # where the dump starts in ``out``
        self.pos = 0

    def align(self, alignment: int) -> None:
        pad = -self.pos % alignment
        if pad:
            self.raw(bytes(pad))

    def raw(self, data: bytes | bytearray | memoryview) -> None:
        self._out.write(data)
        self.pos += len(data)

    def skip(self, size: int) -> None:
        """Leave ``size`` zero bytes by seeking over them: a hole in a sparse file."""
        self._out.seek(size, io.SEEK_CUR)
        self.pos += size

    def append(self, data: bytes, alignment: int = 8) -> md.Location:
        """Write ``data`` aligned and return where it is."""
        pad = -self.pos % alignment
        if pad:
            self._out.write(bytes(pad))
            self.pos += pad
        size = len(data)
        rva = self.pos
        if rva + size > _RVA_LIMIT:
            self.check_rva(rva, size)
        self._out.write(data)
        self.pos = rva + size
        return md.Location._from_fields({"data_size": size, "rva": rva})

    def string(self, text: str) -> int:
        """A MINIDUMP_STRING (with its UTF-16 NUL); returns its RVA."""
        return self.append(md.pack_string(text), 4).rva

    def patch(self, rva: int, data: bytes) -> None:
        self._out.seek(self.base + rva)
        self._out.write(data)
        self._out.seek(self.base + self.pos)

    def finish(self) -> None:
        self._out.seek(self.base + self.pos)
        try:  # an r+b file may hold an older, longer dump
            self._out.truncate()
        except (io.UnsupportedOperation, OSError):
            pass
        self._out.flush()

    @staticmethod
    def check_rva(rva: int, size: int) -> None:
        if rva + size > _RVA_LIMIT:
            raise ValueError(f"the dump outgrew 32-bit RVAs at 0x{rva:x} (+{size} bytes); "
                             "lower DumpPolicy.max_memory_bytes")


@dataclasses.dataclass
class _Descriptor:
    start: int
    size: int
    rva: int


class _Job:
    """One write: the selection, then the streams in file order."""

    def __init__(self, capture: ProcessCapture, out: BinaryIO, dump_type: MiniDumpType,
                 policy: DumpPolicy, started: float) -> None:
        self.capture = capture
        self.dump_type = dump_type
        self.policy = policy
        self.started = started
        self.file = _File(out)
        self.directory: list[tuple[int, md.Location]] = []
        self.descriptors: list[_Descriptor] = []
        self.read_failures: list[tuple[int, int]] = []
        # (address, size) of planned memory left out at copy time (range limit reached)
        self.left_out: list[tuple[int, int]] = []
        self.done = 0
        self.total = 0
        # (start, size) of Memory64List ranges, in file order
        self.descriptors64: list[tuple[int, int]] = []
        self.base_rva64 = 0  # where the Memory64 bytes start
        # FilterMemory: the stack mappings whose non-pointer words are zeroed
        self.filtered: list[tuple[int, int]] = []
        self.index: RegionIndex | None = None
        self.buffer: bytearray | None = None  # reused by copy_segment64
        self.ahead: ReadAhead | None = None  # its worker, for segments of several chunks

    # -- cancel / progress -------------------------------------------------------------

    def checkpoint(self) -> None:
        if self.policy.cancel():
            raise DumpCancelled("the dump was cancelled: DumpPolicy.cancel() returned True")

    def advance(self, nbytes: int) -> None:
        self.done = min(self.total, self.done + nbytes)
        self.policy.progress(self.done, self.total)

    # -- the whole file ----------------------------------------------------------------

    def run(self, sel: Selection | None = None) -> WriteStats:
        if sel is None:
            sel = select(self.capture, self.dump_type, self.policy, self.checkpoint)
        else:
            self.checkpoint()
        full = bool(self.dump_type & MiniDumpType.WithFullMemory)
        if full:  # dbghelp's layout: Memory64List holds every byte, stacks included
            sel = dataclasses.replace(sel, memory64=normalize([*sel.memory, *sel.memory64]))
        self.total = sel.total_bytes
        threads = [c for c in sel.threads if c.flags & ThreadWriteFlags.Thread]
        named = [c.thread for c in threads if c.thread.name]
        info = [c for c in sel.threads if c.flags & ThreadWriteFlags.ThreadInfo]
        cap = self.capture

        dt = self.dump_type
        # dbghelp writes MemoryInfoList with full memory whatever the flags say, and
        # udmp-parser wants a MemoryInfoList entry at every Memory64 range
        with_info = bool(dt & MiniDumpType.WithFullMemoryInfo or sel.memory64)
        count = (5 + (cap.exception is not None) + bool(named)
                 + bool(dt & MiniDumpType.WithThreadInfo)
                 + bool(dt & MiniDumpType.WithHandleData)
                 + len(cap.raw_streams) + (cap.dso_debug is not None) + 1
                 + with_info + bool(dt & MiniDumpType.WithUnloadedModules)
                 + bool(sel.memory64)
                 + bool(self.states(threads)))
        f = self.file
        f.raw(bytes(md.Header.SIZE + count * md.Directory.SIZE))
        if dt & MiniDumpType.FilterMemory:
            self.index = sel.regions
            self.filtered = sorted({(r.start, r.end) for c in sel.threads
                                    if (r := sel.regions.find(c.thread.sp)) is not None})

        self.checkpoint()
        thread_list = f.append(bytes(4 + len(threads) * md.Thread.SIZE))
        self.directory.append((StreamType.ThreadListStream, thread_list))
        contexts: dict[int, md.Location] = {}
        for c in threads:
            if c.flags & ThreadWriteFlags.Context:
                contexts[c.thread.tid] = f.append(self.context_bytes(c.thread), 16)
        if named:
            self.stream(StreamType.ThreadNamesStream, self.thread_names(named))
        if self.dump_type & MiniDumpType.WithThreadInfo:
            self.stream(StreamType.ThreadInfoListStream, self.thread_info(info))
        if self.states(threads):
            self.stream(StreamType.MinidumpkitThreadStateStream,
                        self.thread_state(self.states(threads)))
        self.stream(StreamType.ModuleListStream, self.module_list(sel))
        if cap.exception is not None:
            self.stream(StreamType.ExceptionStream, self.exception(contexts))
        self.stream(StreamType.SystemInfoStream, self.system_info())
        self.stream(StreamType.MiscInfoStream, self.misc_info())
        if self.dump_type & MiniDumpType.WithHandleData:
            self.stream(StreamType.HandleDataStream, self.handle_data())
        for stream_type in sorted(cap.raw_streams):
            self.checkpoint()
            self.directory.append((stream_type, f.append(bytes(cap.raw_streams[stream_type]))))
        if cap.dso_debug is not None:
            self.stream(StreamType.LinuxDsoDebug, self.dso_debug())

        self.checkpoint()
        if full and self.memory64_below_4gib(sel):
            sel = dataclasses.replace(sel, memory=[])  # MemoryList stays empty, as dbghelp's
            self.total = sel.total_bytes
        self.copy_memory(sel)
        # MINIDUMP_MEMORY_DESCRIPTORs packed straight from their fields (start, size, rva):
        # a MINI dump has dozens, and a record object each costs more than the packing
        entry = md.MemoryDescriptor._struct
        packed = bytearray(4 + entry.size * len(self.descriptors))
        struct.pack_into("<I", packed, 0, len(self.descriptors))
        for i, d in enumerate(self.descriptors):
            entry.pack_into(packed, 4 + i * entry.size, d.start, d.size, d.rva)
        memory_list = bytes(packed)
        self.directory.append((StreamType.MemoryListStream, f.append(memory_list)))
        if with_info:
            self.stream(StreamType.MemoryInfoListStream, lambda: self.memory_info(sel))
        if dt & MiniDumpType.WithUnloadedModules:
            # Linux keeps no record of unloaded shared objects: an empty, well-formed list
            self.stream(StreamType.UnloadedModuleListStream, md.UnloadedModuleListHeader(
                size_of_header=md.UnloadedModuleListHeader.SIZE,
                size_of_entry=md.UnloadedModule.SIZE, number_of_entries=0).pack())
        if sel.memory64:
            self.copy_memory64(sel)
        else:
            self.stream(StreamType.MinidumpkitInfoStream, self.info(sel))
        # the stacks' places are known once the memory is in (FULL: in Memory64List)
        f.patch(thread_list.rva, self.thread_entries(threads, contexts, sel))

        assert len(self.directory) == count, (len(self.directory), count)
        entry = md.Directory._struct  # stream_type, location.data_size, location.rva
        f.patch(md.Header.SIZE, b"".join(entry.pack(t, loc.data_size, loc.rva)
                                         for t, loc in self.directory))
        stamp = self.capture.timestamp or int(time.time())
        f.patch(0, md.Header(signature=md.SIGNATURE, version=md.VERSION, stream_count=count,
                             stream_directory_rva=md.Header.SIZE, checksum=0,
                             time_date_stamp=stamp & 0xFFFFFFFF, flags=int(self.dump_type)).pack())
        f.finish()
        self.policy.progress(self.total, self.total)
        info_rva = next(loc.rva for t, loc in self.directory
                        if t == StreamType.MinidumpkitInfoStream)
        return WriteStats(
            bytes_written=f.pos, stream_count=count,
            memory_ranges=len(self.descriptors) + len(self.descriptors64),
            memory_bytes=(sum(d.size for d in self.descriptors)
                          + sum(n for _, n in self.descriptors64)),
            thread_count=len(threads),
            module_count=len(sel.modules),
            handle_count=len(cap.handles) if self.dump_type & MiniDumpType.WithHandleData else 0,
            read_failures=len(self.read_failures),
            dropped_ranges=len(sel.dropped) + len(self.left_out),
            elapsed=time.perf_counter() - self.started, info_offset=f.base + info_rva)

    def memory64_below_4gib(self, sel: Selection) -> bool:
        """Whether every Memory64 byte lands below 4 GiB when written next, so the
        thread stack descriptors' 32-bit RVAs can point into them. Otherwise (FULL
        dumps of big processes) the small ranges (stacks, instruction windows...)
        are also written to MemoryList, below 4 GiB, and the descriptors point there."""
        ranges = len(sel.memory64)
        # what comes before the Memory64 bytes, at most: an empty MemoryList,
        # MemoryInfoList (an entry per mapping and per range cut), UnloadedModuleList,
        # the Memory64 table, the info stream's room, alignment
        metadata = (md.MemoryInfo.SIZE * (len(sel.regions.regions) + 2 * ranges + 1)
                    + md.MemoryDescriptor64.SIZE * (ranges + len(sel.regions.regions) + 1)
                    + _INFO_RESERVE + 4096)
        return self.file.pos + metadata + sum(r.size for r in sel.memory64) <= _RVA_LIMIT

    def stream(self, stream_type: int, write: bytes | Callable[[], bytes]) -> None:
        self.checkpoint()
        self.directory.append((stream_type, self.file.append(write if isinstance(write, bytes)
                                                             else write())))

    # -- threads -----------------------------------------------------------------------

    def thread_entries(self, threads: list[ThreadChoice], contexts: dict[int, md.Location],
                       sel: Selection) -> bytes:
        out = [struct.pack("<I", len(threads))]
        for c in threads:
            t = c.thread
            out.append(md.Thread(thread_id=t.tid, suspend_count=0, priority_class=0, priority=0,
                                 teb=t.teb, stack=self.stack_descriptor(t, sel),
                                 thread_context=contexts.get(t.tid, md.Location(0, 0))).pack())
        return b"".join(out)

    def stack_descriptor(self, thread: CapturedThread, sel: Selection) -> md.MemoryDescriptor:
        """The copied part of the thread's stack: it starts in (or is) a MemoryList
        range, else (FULL dumps) it lies in a Memory64List range."""
        wanted = sel.stacks.get(thread.tid)
        if wanted is None:
            return md.MemoryDescriptor(start_of_memory_range=thread.sp, memory=md.Location(0, 0))
        start, end = wanted
        for ranges in (self.descriptors, self.ranges64()):
            starts = [d.start for d in ranges]
            i = bisect.bisect_right(starts, start) - 1
            for d in ranges[max(i, 0):]:
                if d.start >= end:
                    break
                lo, hi = max(start, d.start), min(end, d.start + d.size)
                if lo < hi and d.rva + lo - d.start + hi - lo <= _RVA_LIMIT:
                    return md.MemoryDescriptor(start_of_memory_range=lo,
                                               memory=md.Location(hi - lo, d.rva + lo - d.start))
        return md.MemoryDescriptor(start_of_memory_range=start, memory=md.Location(0, 0))

    def ranges64(self) -> list[_Descriptor]:
        """The Memory64List ranges with the file offsets of their bytes."""
        out = []
        rva = self.base_rva64
        for start, size in self.descriptors64:
            out.append(_Descriptor(start, size, rva))
            rva += size
        return out

    def thread_names(self, named: list[CapturedThread]) -> bytes:
        f = self.file
        entries = [md.ThreadName(thread_id=t.tid, rva_of_thread_name=f.string(t.name)).pack()
                   for t in named]
        return struct.pack("<I", len(named)) + b"".join(entries)

    def thread_info(self, choices: list[ThreadChoice]) -> bytes:
        header = md.ThreadInfoListHeader(size_of_header=md.ThreadInfoListHeader.SIZE,
                                         size_of_entry=md.ThreadInfo.SIZE,
                                         number_of_entries=len(choices))
        states = self.capture.thread_states
        entries = [md.ThreadInfo(thread_id=c.thread.tid,
                                 dump_flags=_info_flags(states.get(c.thread.tid)), dump_error=0,
                                 exit_status=_STILL_ACTIVE, create_time=c.thread.create_time,
                                 exit_time=0, kernel_time=c.thread.kernel_time,
                                 user_time=c.thread.user_time,
                                 start_address=c.thread.start_address,
                                 affinity=c.thread.affinity).pack() for c in choices]
        return header.pack() + b"".join(entries)

    def states(self, threads: list[ThreadChoice]) -> list[CapturedThreadState]:
        """The captured states of the threads written, in ThreadList order."""
        states = self.capture.thread_states
        return [states[c.thread.tid] for c in threads if c.thread.tid in states]

    def thread_state(self, states: list[CapturedThreadState]) -> bytes:
        """MinidumpkitThreadStateStream: a ThreadStateListHeader and one ThreadState per
        thread (docs/threads.md)."""
        header = md.ThreadStateListHeader(size_of_header=md.ThreadStateListHeader.SIZE,
                                          size_of_entry=md.ThreadState.SIZE,
                                          number_of_entries=len(states), reserved=0)
        return header.pack() + b"".join(_thread_state_entry(st) for st in states)

    # -- modules, exception, system ------------------------------------------------------

    def module_list(self, sel: Selection) -> bytes:
        f = self.file
        entries = []
        base_names = bool(self.dump_type & MiniDumpType.FilterModulePaths)
        for choice in sel.modules:
            m = choice.module
            name_rva = f.string(os.path.basename(m.path) if base_names else m.path)
            cv = md.Location(0, 0)
            if m.build_id and choice.flags & ModuleWriteFlags.CvRecord:
                cv = f.append(struct.pack("<I", md.CV_SIGNATURE_ELF) + bytes(m.build_id), 4)
            entries.append(md.Module(
                base_of_image=m.base, size_of_image=min(m.size, 0xFFFFFFFF), checksum=0,
                time_date_stamp=0, module_name_rva=name_rva,
                version_info=m.version or md.VsFixedFileInfo.zero(), cv_record=cv,
                misc_record=md.Location(0, 0), reserved0=0, reserved1=0).pack())
        return struct.pack("<I", len(entries)) + b"".join(entries)

    def exception(self, contexts: dict[int, md.Location]) -> bytes:
        exc = self.capture.exception
        assert exc is not None
        thread = next(t for t in self.capture.threads if t.tid == exc.thread_id)
        context = contexts.get(thread.tid)
        if context is None:  # the thread itself was left out (or its context): keep this one
            context = self.file.append(self.context_bytes(thread), 16)
        address = exc.address
        if exc.code == md.DUMP_REQUESTED and not address:
            address = thread.pc
        params = struct.pack(f"<{len(exc.parameters)}Q", *exc.parameters)
        record = md.ExceptionRecord(
            exception_code=exc.code & 0xFFFFFFFF, exception_flags=exc.flags & 0xFFFFFFFF,
            exception_record=0, exception_address=address,
            number_parameters=len(exc.parameters), unused_alignment=0,
            exception_information=params.ljust(8 * md.EXCEPTION_MAXIMUM_PARAMETERS, b"\0"))
        return md.ExceptionStream(thread_id=exc.thread_id, alignment=0, exception_record=record,
                                  thread_context=context).pack()

    def system_info(self) -> bytes:
        s = self.capture.system
        csd_rva = self.file.string(s.csd_version)
        cpu = (bytes(s.cpu_vendor)[:12].ljust(12, b"\0")
               + struct.pack("<III", s.cpu_version_information & 0xFFFFFFFF,
                             s.cpu_feature_information & 0xFFFFFFFF,
                             s.cpu_amd_extended_features & 0xFFFFFFFF))
        return md.SystemInfo(
            processor_architecture=s.processor_architecture, processor_level=s.processor_level,
            processor_revision=s.processor_revision,
            number_of_processors=min(max(s.number_of_processors, 0), 255), product_type=0,
            major_version=s.major_version, minor_version=s.minor_version,
            build_number=s.build_number, platform_id=s.platform_id, csd_version_rva=csd_rva,
            suite_mask=0, reserved2=0, cpu=cpu).pack()

    def misc_info(self) -> bytes:
        # The 24-byte MINIDUMP_MISC_INFO: every reader accepts it (lldb takes the pid from it).
        c = self.capture
        flags = md.MiscInfoFlags.PROCESS_ID
        if c.process_create_time:
            flags |= md.MiscInfoFlags.PROCESS_TIMES
        return md.MiscInfo(size_of_info=md.MiscInfo.SIZE, flags1=int(flags), process_id=c.pid,
                           process_create_time=c.process_create_time & 0xFFFFFFFF,
                           process_user_time=c.process_user_time & 0xFFFFFFFF,
                           process_kernel_time=c.process_kernel_time & 0xFFFFFFFF).pack()

    def handle_data(self) -> bytes:
        f = self.file
        entries = []
        for h in self.capture.handles:
            entries.append(md.HandleDescriptor2(
                handle=h.handle, type_name_rva=f.string(h.type_name) if h.type_name else 0,
                object_name_rva=f.string(h.object_name) if h.object_name else 0,
                attributes=h.attributes & 0xFFFFFFFF, granted_access=h.granted_access & 0xFFFFFFFF,
                handle_count=0, pointer_count=0, object_info_rva=0, reserved0=0).pack())
        header = md.HandleDataHeader(size_of_header=md.HandleDataHeader.SIZE,
                                     size_of_descriptor=md.HandleDescriptor2.SIZE,
                                     number_of_descriptors=len(entries), reserved=0)
        return header.pack() + b"".join(entries)

    def dso_debug(self) -> bytes:
        """Breakpad's LinuxDsoDebug: MDRawDebug64 with _DYNAMIC appended; the link map
        array (and its names) sits elsewhere in the file, at ``map``."""
        dso = self.capture.dso_debug
        assert dso is not None
        f = self.file
        map_rva = _INVALID_RVA
        if dso.link_maps:
            names = [f.string(lm.name) for lm in dso.link_maps]
            map_rva = f.append(b"".join(
                md.LinkMap64(addr=lm.addr, name=rva, padding=0, ld=lm.ld).pack()
                for lm, rva in zip(dso.link_maps, names))).rva
        head = md.Debug64(version=dso.version, map=map_rva, dso_count=len(dso.link_maps),
                          padding=0, brk=dso.brk, ldbase=dso.ldbase, dynamic=dso.dynamic_address)
        return head.pack() + bytes(dso.dynamic)

    def info(self, sel: Selection) -> bytes:
        c = self.capture
        details = {
            "writer": f"minidumpkit {__version__}",
            "dump_type": flag_names(self.dump_type),
            "capture": _CAPTURE_NAMES.get(c.capture_method, str(c.capture_method)),
            "full_memory": sel.full_memory,
            "memory": {
                "ranges": len(self.descriptors),
                "bytes": sum(d.size for d in self.descriptors),
                "ranges64": len(self.descriptors64),
                "bytes64": sum(n for _, n in self.descriptors64),
                "indirect_pointers": sel.indirect_pointers,
                "read_failures": len(self.read_failures),
                "read_failures_first": [{"address": a, "size": n}
                                        for a, n in self.read_failures[:_MAX_LISTED]],
                "dropped_ranges": len(sel.dropped) + len(self.left_out),
                "dropped_first": [{"address": r.start, "size": r.size, "kind": r.kind.name.lower()}
                                  for r in sel.dropped[:_MAX_LISTED]]
                + [{"address": a, "size": n, "kind": "over_limit"}
                   for a, n in self.left_out[:_MAX_LISTED]],
            },
            "limits": {
                "max_stack_size": self.policy.max_stack_size,
                "max_indirect_pointers": self.policy.max_indirect_pointers,
                "max_indirect_bytes": self.policy.max_indirect_bytes,
                "max_memory_ranges": self.policy.max_memory_ranges,
                "max_memory_bytes": self.policy.max_memory_bytes,
            },
        }
        head = md.MinidumpkitInfo(size_of_header=md.MinidumpkitInfo.SIZE,
                                  capture=c.capture_method & 0xFFFFFFFF,
                                  dump_type=int(self.dump_type), pause_ns=c.pause_ns)
        return head.pack() + json.dumps(details, sort_keys=True).encode()

    # -- memory --------------------------------------------------------------------------

    def copy_memory(self, sel: Selection) -> None:
        """Copy every planned range, in address order, in chunks.

        A range is read mapping by mapping, so an unreadable part of one mapping does
        not lose the next. Address-contiguous bytes written back to back share one
        descriptor.
        """
        self.policy.progress(0, self.total)
        limit = self.policy.max_memory_ranges
        for i, piece in enumerate(sel.memory):
            later = len(sel.memory) - i - 1  # each later piece needs one descriptor
            opened = False
            for start, end, _region in sel.regions.segments(piece.start, piece.end):
                # A read failure inside a piece splits it; the extra descriptor must not
                # push a later piece (a stack, say) over the range limit.
                if opened and not self.continues(start) \
                        and len(self.descriptors) + 1 + later > limit:
                    self.left_out.append((start, end - start))
                    self.advance(end - start)
                    continue
                before = len(self.descriptors)
                self.copy_segment(start, end)
                opened = opened or len(self.descriptors) > before

    def continues(self, address: int) -> bool:
        """Whether bytes at ``address`` would extend the last descriptor."""
        if not self.descriptors:
            return False
        last = self.descriptors[-1]
        return last.start + last.size == address and last.rva + last.size == self.file.pos

    def copy_segment(self, start: int, end: int) -> None:
        f, memory, chunk = self.file, self.capture.memory, self.policy.chunk_size
        descriptors = self.descriptors
        addr = start
        while addr < end:
            self.checkpoint()
            want = min(chunk, end - addr)
            data: bytes | memoryview = memory.read(addr, want)
            if len(data) > want:
                data = data[:want]
            if data and self.filtered:
                data = self.filter_words(addr, data)
            size = len(data)
            if size:
                last = descriptors[-1] if descriptors else None
                if last is None or last.start + last.size != addr or last.rva + last.size != f.pos:
                    f.align(8)
                    last = _Descriptor(addr, 0, f.pos)
                    descriptors.append(last)
                f.check_rva(f.pos, size)
                f.raw(data)
                last.size += size
            self.advance(size)
            if size < want:
                self.read_failed(addr + size, end)
                return
            addr += want

    def read_failed(self, address: int, end: int) -> None:
        size = end - address
        self.read_failures.append((address, size))
        if self.dump_type & MiniDumpType.IgnoreInaccessibleMemory:
            self.advance(size)  # skipped without asking: the dump type says so
            return
        error = OSError(errno.EFAULT, f"cannot read {size} bytes of process {self.capture.pid} "
                                      f"memory at 0x{address:x}")
        if not self.policy.read_memory_failure(address, size, error):
            raise ProcessError(
                errno.EFAULT, f"cannot read 0x{address:x}..0x{end:x} of process {self.capture.pid} "
                "and DumpPolicy.read_memory_failure() asked to stop the dump",
                pid=self.capture.pid)
        self.advance(size)

    # -- contexts ------------------------------------------------------------------------

    def context_bytes(self, thread: CapturedThread) -> bytes:
        """The thread's CONTEXT; with WithAvxXStateContext and a captured XSAVE image,
        Windows' extended layout: CONTEXT (flags + CONTEXT_XSTATE), a CONTEXT_EX whose
        chunk offsets are relative to itself, and at the next 64-byte boundary the XSAVE
        header and extended components (standard format, component offsets minus the
        512-byte legacy region the CONTEXT already holds in FltSave)."""
        ctx = thread.context
        xsave = thread.xstate
        if not self.dump_type & MiniDumpType.WithAvxXStateContext or not xsave \
                or len(xsave) <= _FXSAVE_SIZE + 64:
            return ctx.pack()
        head = dataclasses.replace(ctx, context_flags=ctx.context_flags | _CONTEXT_XSTATE).pack()
        ex_at = len(head)
        xstate_at = (ex_at + _CONTEXT_EX.size + 63) & ~63
        xstate = bytes(xsave[_FXSAVE_SIZE:])
        total = xstate_at + len(xstate)
        ex = _CONTEXT_EX.pack(-ex_at, total, -ex_at, ex_at, xstate_at - ex_at, len(xstate))
        return head + ex + bytes(xstate_at - ex_at - len(ex)) + xstate

    # -- memory info -----------------------------------------------------------------------

    def memory_info(self, sel: Selection) -> bytes:
        """One MINIDUMP_MEMORY_INFO per mapping, split where a Memory64 range starts or
        ends (readers such as udmp-parser look a range up by its start)."""
        cuts = sorted({p for r in sel.memory64 for p in (r.start, r.end)})
        images = sorted((m.module.base, m.module.base + m.module.size) for m in sel.modules)
        image_starts = [lo for lo, _ in images]
        entries = []
        for r in sel.regions.regions:
            protect = _protection(r)
            mem_type, alloc_base = md.MemType.PRIVATE, r.start
            file_backed = r.path.startswith("/") and r.inode != 0
            i = bisect.bisect_right(image_starts, r.start) - 1
            if file_backed and i >= 0 and r.start < images[i][1]:
                mem_type, alloc_base = md.MemType.IMAGE, images[i][0]
            elif file_backed or not r.private:
                mem_type = md.MemType.MAPPED
            lo = r.start
            j = bisect.bisect_right(cuts, lo)
            while lo < r.end:
                hi = cuts[j] if j < len(cuts) and cuts[j] < r.end else r.end
                entries.append(md.MemoryInfo(
                    base_address=lo, allocation_base=alloc_base, allocation_protect=protect,
                    alignment1=0, region_size=hi - lo, state=int(md.MemState.COMMIT),
                    protect=protect, type=int(mem_type), alignment2=0).pack())
                lo = hi
                j += 1
        header = md.MemoryInfoListHeader(size_of_header=md.MemoryInfoListHeader.SIZE,
                                         size_of_entry=md.MemoryInfo.SIZE,
                                         number_of_entries=len(entries))
        return header.pack() + b"".join(entries)

    # -- FilterMemory ------------------------------------------------------------------------

    def filter_words(self, address: int, data: bytes | memoryview) -> bytes | memoryview:
        """``data`` (read at ``address``) with every aligned word inside a stack mapping
        that does not point into mapped memory zeroed (FilterMemory): return addresses,
        frame and object pointers survive, so stacks still walk; values do not."""
        end = address + len(data)
        buf: bytearray | None = None
        index = self.index
        assert index is not None
        for lo, hi in self.filtered:
            a, b = max(lo, address), min(hi, end)
            if a >= b:
                continue
            if buf is None:
                buf = bytearray(data)
            w0, w1 = (a + 7) & ~7, b & ~7
            buf[a - address:min(w0, b) - address] = bytes(min(w0, b) - a)  # partial words
            if w1 > w0:
                buf[w1 - address:b - address] = bytes(b - w1)
                words = array("Q", buf[w0 - address:w1 - address])
                keep = {w for w in set(words) if w and index.find(w) is not None}
                words = array("Q", [w if w in keep else 0 for w in words])
                buf[w0 - address:w1 - address] = words.tobytes()
        return data if buf is None else bytes(buf)

    # -- Memory64List ------------------------------------------------------------------------

    def copy_memory64(self, sel: Selection) -> None:
        """The descriptor table (sized for the worst case), the info stream (reserved
        room), then every whole-region byte back to back; table and info are patched
        once the bytes are in, since a read failure shortens a range."""
        f = self.file
        segments = [(lo, hi) for piece in sel.memory64
                    for lo, hi, _r in sel.regions.segments(piece.start, piece.end)]
        f.align(8)
        table_rva = f.pos
        f.check_rva(table_rva, md.Memory64ListHeader.SIZE + 16 * len(segments))
        f.raw(bytes(md.Memory64ListHeader.SIZE + 16 * len(segments)))
        info_at = f.append(bytes(_INFO_RESERVE))
        f.align(16)
        base_rva = self.base_rva64 = f.pos
        try:
            self.copy_segments64(segments)
        finally:
            if self.ahead is not None:
                self.ahead.close()
                self.ahead = None
        table = md.Memory64ListHeader(number_of_memory_ranges=len(self.descriptors64),
                                      base_rva=base_rva).pack() + b"".join(
            md.MemoryDescriptor64(start_of_memory_range=a, data_size=n).pack()
            for a, n in self.descriptors64)
        f.patch(table_rva, table)
        self.directory.append((StreamType.Memory64ListStream, md.Location(len(table), table_rva)))
        info = self.info(sel)
        if len(info) > _INFO_RESERVE:  # JSON lists are bounded; never past the room kept
            info = info[:_INFO_RESERVE]
        f.patch(info_at.rva, info)
        self.directory.append((StreamType.MinidumpkitInfoStream, md.Location(len(info), info_at.rva)))

    def copy_segments64(self, segments: list[tuple[int, int]]) -> None:
        """Read ``segments`` (each inside one mapping) and append their bytes; small ones
        are read many per call when the memory source can (``read_many``)."""
        chunk = self.policy.chunk_size
        read_many = getattr(self.capture.memory, "read_many", None)
        batch: list[tuple[int, int]] = []
        batch_bytes = 0
        for lo, hi in segments:
            if hi - lo >= chunk or read_many is None:
                self.flush64(batch, read_many)
                batch, batch_bytes = [], 0
                self.copy_segment64(lo, hi)
                continue
            batch.append((lo, hi - lo))
            batch_bytes += hi - lo
            if batch_bytes >= chunk:
                self.flush64(batch, read_many)
                batch, batch_bytes = [], 0
        self.flush64(batch, read_many)

    def flush64(self, batch: list[tuple[int, int]],
                read_many: Callable[[list[tuple[int, int]]], list[bytes]] | None) -> None:
        if not batch:
            return
        self.checkpoint()
        assert read_many is not None
        for (address, size), data in zip(batch, read_many(batch), strict=True):
            self.emit64(address, data[:size])
            self.advance(len(data[:size]))
            if len(data) < size:
                self.read_failed(address + len(data), address + size)

    def copy_segment64(self, start: int, end: int) -> None:
        memory, chunk = self.capture.memory, self.policy.chunk_size
        # a source that can read into our buffer spares an allocation and a copy per chunk
        read_into = getattr(memory, "read_into", None)
        # bulk memory is read once, in address order: a source may free what is written
        consumed = getattr(memory, "consumed", None)
        if read_into is not None and end - start > chunk:
            self.copy_ahead(start, end, read_into, consumed)
            return
        if read_into is not None and self.buffer is None:
            self.buffer = bytearray(chunk)
        addr = start
        while addr < end:
            self.checkpoint()
            want = min(chunk, end - addr)
            data: bytes | memoryview
            if read_into is not None:
                assert self.buffer is not None
                data = memoryview(self.buffer)[:read_into(addr, want, self.buffer)]
            else:
                data = memory.read(addr, want)[:want]
            if not self.emitted64(addr, want, data, end, consumed):
                return
            addr += want

    def copy_ahead(self, start: int, end: int, read_into: Callable[[int, int, bytearray], int],
                   consumed: Callable[[int, int], None] | None) -> None:
        """:meth:`copy_segment64` with the next chunk read while this one is written."""
        chunk = self.policy.chunk_size
        if self.ahead is None:
            self.ahead = ReadAhead(read_into, chunk)
        ahead = self.ahead
        addr, want = start, min(chunk, end - start)
        ahead.submit(addr, want)
        try:
            while True:
                self.checkpoint()
                data = ahead.take()
                after = addr + want
                if len(data) == want and after < end:
                    ahead.submit(after, min(chunk, end - after))
                if not self.emitted64(addr, want, data, end, consumed) or after >= end:
                    return
                addr, want = after, min(chunk, end - after)
        finally:
            ahead.settle()

    def emitted64(self, address: int, want: int, data: bytes | memoryview, end: int,
                  consumed: Callable[[int, int], None] | None) -> bool:
        """Write one chunk read at ``address``; False when it came short (the rest of
        the segment, up to ``end``, is then reported unreadable)."""
        self.emit64(address, data)
        if consumed is not None:
            consumed(address, len(data))
        self.advance(len(data))
        if len(data) < want:
            self.read_failed(address + len(data), end)
            return False
        return True

    def emit64(self, address: int, data: bytes | memoryview) -> None:
        if not data:
            return
        if self.filtered:
            data = self.filter_words(address, data)
        if len(data) >= _HOLE_MIN and not any(data[:8]) and not any(data[-8:]) \
                and bytes(data) == _zeros(len(data)):
            self.file.skip(len(data))  # all zero: a hole where the file system has them
        else:
            self.file.raw(data)
        last = self.descriptors64[-1] if self.descriptors64 else None
        if last is not None and last[0] + last[1] == address:
            self.descriptors64[-1] = (last[0], last[1] + len(data))
        else:
            self.descriptors64.append((address, len(data)))


def _info_flags(state: CapturedThreadState | None) -> int:
    """MINIDUMP_THREAD_INFO.DumpFlags: a thread sampled as a zombie or dead has exited."""
    if state is not None and state.state in ("Z", "X"):
        return int(md.ThreadInfoFlags.EXITED_THREAD)
    return 0


def _thread_state_entry(st: CapturedThreadState) -> bytes:
    flags = md.ThreadStateFlags(0)
    if st.sample_age_ns is not None:
        flags |= md.ThreadStateFlags.SAMPLED
    if st.orig_rax >= 0:
        flags |= md.ThreadStateFlags.IN_SYSCALL
    if st.blocked:
        flags |= md.ThreadStateFlags.BLOCKED
    if st.restarted:
        flags |= md.ThreadStateFlags.RESTARTED
    if st.blocked and st.syscall is None:
        flags |= md.ThreadStateFlags.SYSCALL_UNKNOWN
    if st.robust_list is not None:
        flags |= md.ThreadStateFlags.ROBUST_LIST
    if st.interrupted:
        flags |= md.ThreadStateFlags.INTERRUPTED
    head, size = st.robust_list or (0, 0)
    mask = (1 << 64) - 1
    return md.ThreadState(
        thread_id=st.tid, flags=int(flags), state=ord(st.state[:1]) if st.state else 0,
        reserved=0, sample_age_ns=max(st.sample_age_ns or 0, 0), orig_rax=st.orig_rax & mask,
        syscall=(st.syscall if st.syscall is not None else -1) & mask,
        robust_list_head=head, robust_list_len=size,
        wchan=st.wchan.encode("ascii", "replace")[:64]).pack()


@functools.lru_cache(maxsize=4)
def _zeros(size: int) -> bytes:
    return bytes(size)


def _protection(region: Region) -> int:
    """PAGE_* for a mapping: private writable file mappings are copy-on-write."""
    r, w, x = region.readable, region.writable, region.executable
    cow = w and region.private and region.path.startswith("/") and region.inode != 0
    if x:
        if w:
            return md.MemProtect.EXECUTE_WRITECOPY if cow else md.MemProtect.EXECUTE_READWRITE
        return md.MemProtect.EXECUTE_READ if r else md.MemProtect.EXECUTE
    if w:
        return md.MemProtect.WRITECOPY if cow else md.MemProtect.READWRITE
    return md.MemProtect.READONLY if r else md.MemProtect.NOACCESS
