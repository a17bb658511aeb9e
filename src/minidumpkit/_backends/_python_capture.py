"""The writer's Python-aware capture: walk the target's CPython runtime and keep what it read.

While the target is held (a stop-and-dump) or from a snapshot's frozen memory (the
VA clone), :func:`capture_python` walks every interpreter, thread state, frame, code
object and the strings and line tables they use with the shared walk of
:mod:`minidumpkit._pyruntime` (the one the reader runs), logging every read. The dump
then gets exactly that memory (object-granular reads, merged where they touch;
:func:`add_to_selection`) and a MinidumpkitPythonStream describing the runtime
(:func:`stream_bytes`; layout in ``format.MinidumpkitPython``), whatever the dump type.

The slots of each thread's newest frame and the lock objects there are read too, for the
reader's Python lock analysis (``threading.RLock`` owners; docs/locks.md).

The walk is bounded: the shared walk's frame, thread, interpreter and string limits,
its cycle checks, and a time limit (:data:`HELD_TIME_LIMIT` while the target is
stopped). When a limit bites, the dump records "partial walk: why" instead of
prolonging the pause. A process without a python module costs nothing: no read, no
stream. This module knows nothing of the OS: the Linux backend adds the ranges to its
MemoryList (:func:`add_to_selection`); the Windows one (:mod:`._win_python`) hands
dbghelp the bytes (``keep_bytes``) in a MinidumpkitMemoryStream.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .. import format as md
from .._capture import CapturedModule, MemorySource
from .._pyruntime import ModuleRef, PythonRuntime, offsets, walk_process
from .._pyruntime.live import merge_ranges
from .._pyruntime.locate import python_modules
from .._pyruntime.slots import SlotReader, lock_objects
from .._selection import MemoryRange, RangeKind, Selection, normalize, subtract

__all__ = ["HELD_TIME_LIMIT", "SNAPSHOT_TIME_LIMIT", "PythonCapture", "add_to_selection",
           "capture_python"]

#: The walk's budget while the target is stopped (seconds): past it the walk stops and
#: the dump says "partial walk: time limit reached".
HELD_TIME_LIMIT = 0.010
#: The budget when walking a snapshot's clone after the target was released.
SNAPSHOT_TIME_LIMIT = 1.0


@dataclass(frozen=True)
class PythonCapture:
    """What the walk read (merged (address, size) ranges) and the stream describing it;
    ``data``: the bytes of each range, when asked for (``keep_bytes``), else empty."""

    runtime: PythonRuntime
    ranges: list[tuple[int, int]]
    walk_ns: int
    stream: bytes
    data: tuple[bytes, ...] = ()

    @property
    def nbytes(self) -> int:
        return sum(size for _, size in self.ranges)


PAGE = 4096
# reads wider than this go to the target directly (line tables, big strings)
_CACHED_READ = 2 * PAGE


class _ExactReads:
    """The walk's MemorySource contract over a backend reader: exactly ``size`` bytes or
    OSError (a backend reader answers the readable prefix). Small reads are served from
    whole pages, each read from the target once: the walk's hundreds of small reads
    (a frame, a code object's header, a string) cluster in few pages, and every read
    of a stopped target is a system call. What the walk logs stays object-granular."""

    def __init__(self, memory: MemorySource) -> None:
        self.memory = memory
        self.pages: dict[int, bytes] = {}

    def read(self, address: int, size: int) -> bytes:
        if size > _CACHED_READ or address < 0:
            data = self.memory.read(address, size)
        else:
            data = b""
            end, page = address + size, address - address % PAGE
            while page < end:
                block = self.pages.get(page)
                if block is None:
                    block = self.pages[page] = self.memory.read(page, PAGE)
                data += block[max(address, page) - page:end - page]
                if len(block) < PAGE:
                    break
                page += PAGE
        if len(data) != size:
            raise OSError(5, f"{size} bytes at 0x{address:x} not readable")
        return data


def capture_python(memory: MemorySource, modules: Sequence[CapturedModule], *,
                   time_limit: float | None = None, model: str = offsets.LP64,
                   keep_bytes: bool = False) -> PythonCapture | None:
    """Walk the CPython runtime of the captured process; None when no module of it looks
    like CPython (libpython3.X, python3XY.dll or a python3 executable). Never raises for
    the target's memory: what went wrong is the capture's status. ``time_limit``:
    seconds (default :data:`HELD_TIME_LIMIT`, read at each call); ``model``: the
    target's C data model (offsets.LLP64 on Windows); ``keep_bytes``: also return the
    bytes of every range (read again, mostly from the pages the walk read)."""
    if time_limit is None:
        time_limit = HELD_TIME_LIMIT
    refs = [ModuleRef(m.path, m.base, m.size, m.build_id or None) for m in modules]
    if not python_modules(refs):
        return None
    log: list[tuple[int, int]] = []
    started = time.perf_counter_ns()
    source = _ExactReads(memory)
    runtime = walk_process(source, refs, model=model, open_file=None,
                           time_limit=time_limit, log=log)
    _lock_slots(source, runtime, log, started + int(time_limit * 1e9), model)
    walk_ns = time.perf_counter_ns() - started
    # Nothing to walk (no runtime, an unsupported version): the stream says why, the
    # dump gets none of the probing reads.
    ranges = merge_ranges(log) if runtime.layout is not None else []
    module = next((m for m in refs if m.name == runtime.module), None)
    data: list[bytes] = []
    if keep_bytes:
        kept = []
        for address, size in ranges:
            try:
                data.append(source.read(address, size))
            except OSError:  # read a moment ago: only a vanished target gets here
                continue
            kept.append((address, size))
        ranges = kept
    stream = stream_bytes(runtime, ranges, walk_ns, time_limit,
                          module_base=module.base if module is not None else 0, model=model)
    return PythonCapture(runtime, ranges, walk_ns, stream, tuple(data))


def _lock_slots(source: _ExactReads, runtime: PythonRuntime, log: list[tuple[int, int]],
                deadline_ns: int, model: str) -> None:
    """Read (and log) what the reader's Python lock analysis needs (analysis/pylocks.py):
    the slots of each thread's newest frame, the types of the objects there, and the
    ``_thread.RLock`` / ``_thread.lock`` objects among them; within the walk's budget."""
    version = runtime.version_hex or 0
    lock_offsets = offsets.LOCK_OFFSETS.get((version >> 24, (version >> 16) & 0xFF,
                                             model))
    if lock_offsets is None or runtime.layout is None:
        return

    def read(address: int, size: int) -> bytes:
        data = source.read(address, size)
        log.append((address, size))
        return data

    reader = SlotReader(read)
    for thread in runtime.threads:
        if time.perf_counter_ns() > deadline_ns:
            return
        if thread.frames:
            lock_objects(reader, thread.frames[0].address, lock_offsets)


def walk_status(runtime: PythonRuntime) -> tuple[int, str]:
    """(PYTHON_WALK_* code, text) for the stream: "complete" or the walk's own words."""
    if runtime.status == "ok":
        return md.PYTHON_WALK_COMPLETE, "complete"
    if runtime.status.startswith("partial walk"):
        return md.PYTHON_WALK_PARTIAL, runtime.status
    return md.PYTHON_WALK_NOT_FOUND, runtime.status


def stream_bytes(runtime: PythonRuntime, ranges: list[tuple[int, int]], walk_ns: int,
                 time_limit: float, *, module_base: int = 0,
                 model: str = offsets.LP64) -> bytes:
    """A MinidumpkitPythonStream: the format.MinidumpkitPython head, then its JSON."""
    code, status = walk_status(runtime)
    head = md.MinidumpkitPython(
        size_of_header=md.MinidumpkitPython.SIZE, format_version=md.PYTHON_STREAM_VERSION,
        version_hex=(runtime.version_hex or 0) & 0xFFFFFFFF, walk_status=code,
        runtime_address=runtime.runtime_address or 0,
        code_type_address=runtime.code_type_address or 0, module_base=module_base,
        range_count=len(ranges), reserved=0, range_bytes=sum(n for _, n in ranges),
        walk_ns=walk_ns)
    details = {
        "version": runtime.version,
        "layout": runtime.layout,
        "model": model,
        "module": runtime.module,
        "found_by": runtime.found_by,
        "status": status,
        "threads": len(runtime.threads),
        "frames": sum(len(t.frames) for t in runtime.threads),
        "time_limit_ns": int(time_limit * 1e9),
    }
    return head.pack() + json.dumps(details, sort_keys=True).encode()


def add_to_selection(selection: Selection, ranges: Sequence[tuple[int, int]]) -> int:
    """Add ``ranges`` to the dump's memory list, less what the bulk copy already holds
    and what DumpPolicy.remove_memory took out; returns the bytes added. The ranges are
    the walk's own (already read successfully), so neither the range count nor the byte
    limits of the policy cut them: they are what makes the Python stacks readable."""
    wanted = normalize(MemoryRange(a, a + n, RangeKind.EXTRA) for a, n in ranges)
    present = normalize([*selection.memory, *selection.memory64, *selection.holes])
    extra = subtract(wanted, present)
    selection.memory = normalize([*selection.memory, *extra])
    return sum(r.size for r in extra)
