"""The Windows writer's Python-aware capture: the shared walk over a suspended target.

:func:`held_capture` lists the target's modules (K32EnumProcessModules); when one is
``python3XY.dll`` it suspends the process (NtSuspendProcess), walks its CPython runtime
with ReadProcessMemory (:func:`._python_capture.capture_python`, the walk the reader
runs, LLP64), and yields two user streams for MiniDumpWriteDump's UserStreamParam:
the MinidumpkitPythonStream (0x4D4B0004) describing the runtime and a
MinidumpkitMemoryStream (0x4D4B0005) holding exactly the memory the walk read. The
process stays suspended until the dump is written (dbghelp suspends each thread again
and resumes it: suspend counts nest), so the walk and the dump see one instant; it is
resumed on every path out, errors and KeyboardInterrupt included.

The memory goes into minidumpkit's own stream, not through dbghelp's Memory callback,
which Wine's dbghelp never sends. A process without a python module costs the module
list only: no suspension, no read, no stream.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from .. import format as md
from .._capture import CapturedModule
from .._ffi import kernel32
from .._pyruntime import offsets
from .._pyruntime.locate import ModuleRef, python_modules
from ..flags import StreamType
from . import _python_capture

__all__ = ["ProcessMemory", "held_capture", "process_modules"]

#: The walk's budget while the target is suspended (seconds). Larger than Linux's
#: 10 ms: under Wine every ReadProcessMemory is a wineserver round trip (57 page reads
#: took 10-38 ms on a loaded 2-core machine), and MiniDumpWriteDump itself holds the
#: target far longer (0.3 s for a MINI with Microsoft's dbghelp, seconds with Wine's).
HELD_TIME_LIMIT = 0.200
MAX_MODULES = 4096
_MAX_PATH = 32768


class ProcessMemory:
    """The capture's MemorySource over ReadProcessMemory: the readable prefix of a
    request (ERROR_PARTIAL_COPY reports how much was copied), or nothing."""

    def __init__(self, api: Any, hprocess: Any) -> None:
        self.api, self.hprocess = api, hprocess
        self.done = kernel32.ffi.new("SIZE_T *")

    def read(self, address: int, size: int) -> bytes:
        if size <= 0 or address <= 0:
            return b""
        buffer = kernel32.ffi.new("char[]", size)
        self.done[0] = 0
        self.api.kernel32.ReadProcessMemory(self.hprocess, kernel32.ffi.cast("LPCVOID", address),
                                            buffer, size, self.done)
        data: bytes = kernel32.ffi.buffer(buffer, min(self.done[0], size))[:]
        return data


def process_modules(api: Any, hprocess: Any) -> list[CapturedModule]:
    """Every module of the target (base, SizeOfImage, path); empty when the list cannot
    be read (the dump then goes on without the capture)."""
    ffi, k32 = kernel32.ffi, api.kernel32
    count, needed = 256, ffi.new("DWORD *")
    while True:
        handles = ffi.new("HANDLE[]", count)
        if not k32.K32EnumProcessModules(hprocess, handles, ffi.sizeof(handles), needed):
            return []
        have = needed[0] // ffi.sizeof("HANDLE")
        if have <= count or count >= MAX_MODULES:
            break
        count = min(have, MAX_MODULES)
    info = ffi.new("uint64_t[3]")
    name = ffi.new("WCHAR[]", _MAX_PATH)
    out = []
    for handle in handles[0:min(have, count)]:
        if not k32.K32GetModuleInformation(hprocess, handle, info, ffi.sizeof(info)):
            continue
        length = k32.K32GetModuleFileNameExW(hprocess, handle, name, _MAX_PATH)
        path = ffi.string(name, length) if length else ""
        out.append(CapturedModule(base=int(info[0]), size=int(info[1]) & 0xFFFFFFFF,
                                  path=path))
    return out


@contextlib.contextmanager
def held_capture(api: Any, pid: int, hprocess: Any, *,
                 time_limit: float | None = None) -> Iterator[list[tuple[int, bytes]]]:
    """(stream type, bytes) of the user streams to write, with the target suspended
    until the block ends; no stream (and no suspension) when the process has no
    python3XY.dll or cannot be suspended."""
    if api.ntdll is None:
        yield []
        return
    modules = process_modules(api, hprocess)
    if not python_modules(ModuleRef(m.path, m.base, m.size, None) for m in modules):
        yield []
        return
    from .windows import close_handle, open_process

    try:
        hsuspend = open_process(api, pid, kernel32.PROCESS_SUSPEND_RESUME)
    except OSError:
        yield []
        return
    try:
        if api.ntdll.NtSuspendProcess(hsuspend) != 0:
            yield []
            return
        try:
            capture = _python_capture.capture_python(
                ProcessMemory(api, hprocess), modules, model=offsets.LLP64, keep_bytes=True,
                time_limit=HELD_TIME_LIMIT if time_limit is None else time_limit)
            streams: list[tuple[int, bytes]] = []
            if capture is not None:
                streams.append((int(StreamType.MinidumpkitPythonStream), capture.stream))
                if capture.ranges:
                    streams.append((int(StreamType.MinidumpkitMemoryStream),
                                    md.pack_memory_stream(
                                        zip((a for a, _ in capture.ranges), capture.data))))
            yield streams
        finally:
            api.ntdll.NtResumeProcess(hsuspend)
    finally:
        close_handle(api, hsuspend)
