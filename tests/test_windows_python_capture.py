"""The Windows backend's Python-aware capture (_backends/_win_python.py) with stand-in DLLs:
the suspension discipline, which the Wine test (tests/wine/test_wine_python.py) checks
only on its normal path.

A stand-in kernel32 lists the modules a test names and serves ReadProcessMemory from a
small memory image; a stand-in ntdll records NtSuspendProcess / NtResumeProcess. What
this does not prove: anything about the real DLLs (the Wine test runs them).
"""

from __future__ import annotations

import struct
from typing import Any

import pytest

from minidumpkit import format as md
from minidumpkit._backends import _win_python, windows
from minidumpkit._ffi import kernel32
from minidumpkit.errors import AccessDenied
from minidumpkit.flags import StreamType

ffi = kernel32.ffi
PID = 0x44
DLL_BASE = 0x180000000


class FakeKernel32:
    def __init__(self, modules: list[tuple[int, int, str]], memory: dict[int, bytes],
                 deny_suspend: bool = False) -> None:
        self.modules, self.memory, self.deny_suspend = modules, memory, deny_suspend
        self.opened: list[int] = []
        self.closed: list[int] = []
        self.reads = 0

    def OpenProcess(self, access: int, inherit: int, pid: int) -> Any:
        if self.deny_suspend and access & kernel32.PROCESS_SUSPEND_RESUME:
            return ffi.NULL
        handle = 0x1000 + len(self.opened)
        self.opened.append(handle)
        return ffi.cast("HANDLE", handle)

    def CloseHandle(self, handle: Any) -> int:
        self.closed.append(int(ffi.cast("uintptr_t", handle)))
        return 1

    def K32EnumProcessModules(self, hprocess: Any, handles: Any, cb: int, needed: Any) -> int:
        needed[0] = 8 * len(self.modules)
        for k, (base, _, _) in enumerate(self.modules[:cb // 8]):
            handles[k] = ffi.cast("HANDLE", base)
        return 1

    def K32GetModuleInformation(self, hprocess: Any, hmodule: Any, info: Any, cb: int) -> int:
        base = int(ffi.cast("uintptr_t", hmodule))
        size = next(s for b, s, _ in self.modules if b == base)
        info[0], info[1], info[2] = base, size, 0
        return 1

    def K32GetModuleFileNameExW(self, hprocess: Any, hmodule: Any, name: Any, size: int) -> int:
        base = int(ffi.cast("uintptr_t", hmodule))
        path = next(p for b, _, p in self.modules if b == base)
        for k, ch in enumerate(path):
            name[k] = ch
        return len(path)

    def ReadProcessMemory(self, hprocess: Any, address: Any, buffer: Any, size: int,
                          done: Any) -> int:
        self.reads += 1
        start = int(ffi.cast("uintptr_t", address))
        for base, data in self.memory.items():
            if base <= start < base + len(data):
                chunk = data[start - base:start - base + size]
                ffi.memmove(buffer, chunk, len(chunk))
                done[0] = len(chunk)
                return int(len(chunk) == size)
        done[0] = 0
        return 0


class FakeNtdll:
    def __init__(self, status: int = 0) -> None:
        self.status = status
        self.calls: list[tuple[str, int]] = []

    def NtSuspendProcess(self, handle: Any) -> int:
        self.calls.append(("suspend", int(ffi.cast("uintptr_t", handle))))
        return self.status

    def NtResumeProcess(self, handle: Any) -> int:
        self.calls.append(("resume", int(ffi.cast("uintptr_t", handle))))
        return 0


def api_for(k32: FakeKernel32, ntdll: FakeNtdll | None) -> windows.WinApi:
    return windows.WinApi(kernel32=k32, dbghelp=None, pss=None, get_last_error=lambda: 5,
                          osfhandle=lambda fd: fd, ntdll=ntdll)


PYTHON_DLL = [(0x140000000, 0x1A000, r"C:\Python313\python.exe"),
              (DLL_BASE, 0x64E000, r"C:\Python313\python313.dll")]


def test_no_python_module_no_suspension() -> None:
    """Only kernel32.dll-like modules: no suspension, no read, no stream."""
    k32 = FakeKernel32([(0x7FF00000, 0x1000, r"C:\windows\system32\kernel32.dll")], {})
    ntdll = FakeNtdll()
    with _win_python.held_capture(api_for(k32, ntdll), PID, ffi.cast("HANDLE", 1)) as streams:
        assert streams == []
    assert ntdll.calls == [] and k32.reads == 0 and k32.opened == []


def test_without_ntdll_nothing_is_asked() -> None:
    """WinApi.ntdll None (the stand-ins of the other backend tests): no capture."""
    k32 = FakeKernel32(PYTHON_DLL, {})
    with _win_python.held_capture(api_for(k32, None), PID, ffi.cast("HANDLE", 1)) as streams:
        assert streams == []
    assert k32.reads == 0 and k32.opened == []


def pe_image() -> bytes:
    """A PE32+ header page whose export directory lists no name: the walk finds the DLL
    but no _PyRuntime (what a reader sees from a foreign build)."""
    page = bytearray(4096)
    page[:2] = b"MZ"
    struct.pack_into("<I", page, 0x3C, 0x80)
    page[0x80:0x84] = b"PE\0\0"
    struct.pack_into("<H", page, 0x80 + 4 + 16, 240)   # SizeOfOptionalHeader
    struct.pack_into("<H", page, 0x80 + 24, 0x20B)     # PE32+
    struct.pack_into("<I", page, 0x80 + 24 + 108, 16)  # NumberOfRvaAndSizes
    struct.pack_into("<II", page, 0x80 + 24 + 112, 0x400, 40)  # export directory
    return bytes(page)


def test_suspended_for_the_block_and_resumed_once() -> None:
    """python313.dll present: suspended before the walk (every read happens while
    suspended), resumed once after the block, the suspend handle closed; the streams
    say what the walk found (here: no _PyRuntime) and carry no memory."""
    k32 = FakeKernel32(PYTHON_DLL, {DLL_BASE: pe_image()})
    ntdll = FakeNtdll()
    reads_at_suspend: list[int] = []
    original = ntdll.NtSuspendProcess

    def suspend(handle: Any) -> int:
        reads_at_suspend.append(k32.reads)
        return original(handle)

    ntdll.NtSuspendProcess = suspend  # type: ignore[method-assign]
    with _win_python.held_capture(api_for(k32, ntdll), PID, ffi.cast("HANDLE", 1)) as streams:
        assert [kind for kind, _ in ntdll.calls] == ["suspend"]
        assert reads_at_suspend == [0] and k32.reads > 0
    handle = k32.opened[0]
    assert ntdll.calls == [("suspend", handle), ("resume", handle)]
    assert k32.closed == [handle]
    assert [kind for kind, _ in streams] == [int(StreamType.MinidumpkitPythonStream)]
    head = md.MinidumpkitPython.unpack_from(streams[0][1], 0)
    assert head.walk_status == md.PYTHON_WALK_NOT_FOUND and head.range_count == 0


@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError])
def test_resumed_when_the_dump_fails(error: type[BaseException]) -> None:
    """An exception inside the block (the dump failing, Ctrl-C): resumed and closed, and
    the exception goes on."""
    k32 = FakeKernel32(PYTHON_DLL, {DLL_BASE: pe_image()})
    ntdll = FakeNtdll()
    with pytest.raises(error), _win_python.held_capture(api_for(k32, ntdll), PID,
                                                        ffi.cast("HANDLE", 1)):
        raise error("the dump failed")
    assert [kind for kind, _ in ntdll.calls] == ["suspend", "resume"]
    assert k32.closed == k32.opened


def test_suspend_refused_writes_without_capture() -> None:
    """NtSuspendProcess failing (an NTSTATUS) or PROCESS_SUSPEND_RESUME denied: no walk,
    no stream, nothing to resume, the handle (if any) closed."""
    k32 = FakeKernel32(PYTHON_DLL, {DLL_BASE: pe_image()})
    ntdll = FakeNtdll(status=0xC0000022)  # STATUS_ACCESS_DENIED
    with _win_python.held_capture(api_for(k32, ntdll), PID, ffi.cast("HANDLE", 1)) as streams:
        assert streams == []
    assert [kind for kind, _ in ntdll.calls] == ["suspend"] and k32.reads == 0
    assert k32.closed == k32.opened
    denied = FakeKernel32(PYTHON_DLL, {}, deny_suspend=True)
    with _win_python.held_capture(api_for(denied, FakeNtdll()), PID,
                                  ffi.cast("HANDLE", 1)) as streams:
        assert streams == []
    assert denied.opened == [] and denied.reads == 0


def test_open_refusal_is_an_oserror() -> None:
    """What held_capture relies on: open_process maps a refused OpenProcess to an OSError
    subclass (AccessDenied for ERROR_ACCESS_DENIED)."""
    k32 = FakeKernel32(PYTHON_DLL, {}, deny_suspend=True)
    with pytest.raises(AccessDenied):
        windows.open_process(api_for(k32, FakeNtdll()), PID, kernel32.PROCESS_SUSPEND_RESUME)


def test_memory_stream_round_trip() -> None:
    """format.pack_memory_stream: the head, the (start, size) pairs, the bytes in order."""
    data = md.pack_memory_stream([(0x1000, b"abc"), (0x2000, b"defg")])
    head = md.MinidumpkitMemory.unpack_from(data, 0)
    assert (head.range_count, head.data_offset) == (2, md.MinidumpkitMemory.SIZE + 32)
    assert struct.unpack_from("<4Q", data, md.MinidumpkitMemory.SIZE) == (0x1000, 3, 0x2000, 4)
    assert data[head.data_offset:] == b"abcdefg"
