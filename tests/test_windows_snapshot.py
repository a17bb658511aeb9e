"""Dumper(pid).snapshot() on the Windows backend, on Linux, with a stand-in Process
Snapshotting API.

The stand-in PssWalkSnapshot / PssQuerySnapshot build every PSS_* entry byte by byte at
the offsets and sizes of ``reference/winabi/layout-x86_64.json`` (the independent ground
truth; our cdef is never used to build them) and copy it into the buffer the backend
passes, after checking the buffer length equals the JSON size. Strings are UTF-16
buffers of the stand-in's own, with byte lengths, some not NUL-terminated (garbage
after the counted length), some with the terminator counted; contexts are CONTEXT
records built at the JSON's CONTEXT offsets. When a walk marker is freed the stand-in
overwrites every string and context it handed out under that marker, so a value read
after PssWalkMarkerFree would show. Expected values come from the scripted entries.

MiniDumpWriteDump is test_windows_backend's stand-in: it replays Wine's callback order
(IsProcessSnapshotCallback first) through the C caller of test_windows_trampoline.

What this does not prove: anything about the real kernel32 Pss* functions (which
entries Windows returns, whether the walk really ends with ERROR_NO_MORE_ITEMS rather
than another code, how long the strings live); see docs/windows.md.
"""

from __future__ import annotations

import gc
import json
import sys
import types
import warnings
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, cast

import cffi
import pytest

if sys.platform == "win32":  # stand-ins built with cc; the real DLLs are in test_windows_live.py
    pytest.skip("Linux-side model of the Windows snapshot walks", allow_module_level=True)

from oracles import FIXTURES
from test_windows_backend import DUMP_BYTES, FakeDbgHelp, FakeKernel32, script_from_wine
from test_windows_trampoline import Inputs, Recorder, build_harness, expect

import minidumpkit
from minidumpkit import dumper as dumper_mod
from minidumpkit import format as md
from minidumpkit._backends import _win_snapshot, windows
from minidumpkit.errors import AccessDenied, ProcessError, UnsupportedError
from minidumpkit.flags import CallbackType as CT
from minidumpkit.flags import ContextFlags, DumpType, PssCaptureFlags
from minidumpkit.snapshot import (
    Snapshot,
    SnapshotHandle,
    SnapshotProcessInfo,
    SnapshotRefused,
    SnapshotThread,
    SnapshotVaRegion,
)

F = PssCaptureFlags
LAYOUT = json.loads((FIXTURES.parent / "reference" / "winabi" / "layout-x86_64.json").read_text())
REF = LAYOUT["reference"]
C = LAYOUT["constants"]
PID = 0x20
HPSS = 0x5550000
ERROR_NO_MORE_ITEMS = 259
PSS_NAMES = ("PssCaptureSnapshot", "PssFreeSnapshot", "PssQuerySnapshot", "PssWalkSnapshot",
             "PssWalkMarkerCreate", "PssWalkMarkerFree")
ALL_FLAGS = (F.VA_CLONE | F.THREADS | F.THREAD_CONTEXT | F.HANDLES | F.HANDLE_NAME_INFORMATION
             | F.HANDLE_BASIC_INFORMATION | F.VA_SPACE | F.VA_SPACE_SECTION_INFORMATION)

sffi = cffi.FFI()  # the stand-in's own: no declaration of ours


def addr(cdata: Any) -> int:
    return int(sffi.cast("uintptr_t", cdata))


def put_pointer(out: Any, value: int) -> None:
    """*out = value, for an HPSS* / HPSSWALK* out-parameter, without our declarations."""
    sffi.cast("uintptr_t *", addr(out))[0] = value


def pack(struct_name: str, values: dict[str, Any]) -> bytes:
    """A structure of the JSON's size with each field at the JSON's offset (little endian)."""
    fields = REF[struct_name]["fields"]
    buf = bytearray(REF[struct_name]["size"])
    for name, value in values.items():
        offset, width = fields[name]
        raw = value if isinstance(value, bytes) else \
            (value & ((1 << 8 * width) - 1)).to_bytes(width, "little")
        assert len(raw) <= width, name
        buf[offset:offset + len(raw)] = raw
    return bytes(buf)


def context_record(**registers: int | bytes) -> bytes:
    """A 1232-byte CONTEXT at the JSON's CONTEXT offsets."""
    values: dict[str, Any] = {"ContextFlags": C["CONTEXT_ALL"]}
    values.update(registers)
    return pack("CONTEXT", values)


XMM0 = bytes(range(0x40, 0x50))
CTX_A = context_record(Rip=0x7FF7_0000_1234, Rsp=0x0000_00C0_FFEE_0F00, Rax=0x1111,
                       R15=0xF15F15, SegCs=0x33, EFlags=0x246, MxCsr=0x1F80, Dr7=0x401,
                       Xmm0=XMM0)
CTX_B = context_record(Rip=0x7FFB_AAAA_0010, Rsp=0x0000_00C0_1234_5000, Rbx=0x2222)
CTX_X86 = bytes(716)  # a WOW64/x86-sized record: no x64 CONTEXT in it

THREADS: list[dict[str, Any]] = [
    {"ExitStatus": 259, "TebBaseAddress": 0x3F_0000_1000, "ProcessId": PID, "ThreadId": 0x1A2C,
     "AffinityMask": 0xF, "Priority": 10, "BasePriority": 8, "LastSyscallFirstArgument": 0xDEAD0,
     "LastSyscallNumber": 0x1B, "CreateTime": 133_500_000_000_000_001, "ExitTime": 0,
     "KernelTime": 156_250, "UserTime": 312_500, "Win32StartAddress": 0x7FF7_0000_1130,
     "CaptureTime": 133_500_000_100_000_000, "Flags": 0, "SuspendCount": 0, "context": CTX_A},
    {"ExitStatus": 259, "TebBaseAddress": 0x3F_0000_3000, "ProcessId": PID, "ThreadId": 0x2B3C,
     "AffinityMask": 0x3, "Priority": 15, "BasePriority": 8, "LastSyscallFirstArgument": 0,
     "LastSyscallNumber": 0x6, "CreateTime": 133_500_000_000_500_000, "ExitTime": 0,
     "KernelTime": 0, "UserTime": 10, "Win32StartAddress": 0x7FFB_CCCC_0000,
     "CaptureTime": 133_500_000_100_000_001, "Flags": 0, "SuspendCount": 2, "context": CTX_B},
    {"ExitStatus": 3, "TebBaseAddress": 0, "ProcessId": PID, "ThreadId": 0x3C4D,
     "AffinityMask": 0x1, "Priority": 0, "BasePriority": 8, "CreateTime": 133_500_000_000_000_100,
     "ExitTime": 133_500_000_050_000_000, "Win32StartAddress": 0x7FF7_0000_2000,
     "Flags": C["PSS_THREAD_FLAGS_TERMINATED"], "SuspendCount": 0, "context": CTX_X86},
]

H_ALL = (C["PSS_HANDLE_HAVE_TYPE"] | C["PSS_HANDLE_HAVE_NAME"]
         | C["PSS_HANDLE_HAVE_BASIC_INFORMATION"] | C["PSS_HANDLE_HAVE_TYPE_SPECIFIC_INFORMATION"])
FILE_NAME = "\\Device\\HarddiskVolume3\\Dätä\\log \U0001d11e.txt"
HANDLES: list[dict[str, Any]] = [
    # the name's terminator counted in ObjectNameLength (PSS does that for some objects)
    {"Handle": 0x4, "Flags": H_ALL, "ObjectType": C["PSS_OBJECT_TYPE_EVENT"], "Attributes": 0x2,
     "GrantedAccess": 0x1F0003, "HandleCount": 3, "PointerCount": 65537, "TypeName": ("Event",),
     "ObjectName": ("\\Sessions\\1\\BaseNamedObjects\\ready", "nul")},
    # not NUL-terminated: garbage follows the counted bytes
    {"Handle": 0x48, "Flags": H_ALL & ~C["PSS_HANDLE_HAVE_TYPE_SPECIFIC_INFORMATION"],
     "ObjectType": C["PSS_OBJECT_TYPE_UNKNOWN"], "Attributes": 0, "GrantedAccess": 0x12019F,
     "HandleCount": 1, "PointerCount": 32768, "TypeName": ("File", "JUNK"),
     "ObjectName": (FILE_NAME, "JUNKJUNK")},
    # type only: basic information and the name are not valid and must not be used
    {"Handle": 0x4C, "Flags": C["PSS_HANDLE_HAVE_TYPE"], "ObjectType": C["PSS_OBJECT_TYPE_PROCESS"],
     "Attributes": 0x99, "GrantedAccess": 0x77, "HandleCount": 9, "PointerCount": 9,
     "TypeName": ("Process",), "ObjectName": ("stale name",)},
    # a type newer than PSS_OBJECT_TYPE
    {"Handle": 0x50, "Flags": C["PSS_HANDLE_HAVE_TYPE"], "ObjectType": 9,
     "TypeName": ("EtwRegistration",)},
]

MEM_COMMIT, MEM_RESERVE = 0x1000, 0x2000
MEM_PRIVATE, MEM_MAPPED, MEM_IMAGE = 0x20000, 0x40000, 0x1000000
REGIONS: list[dict[str, Any]] = [
    {"BaseAddress": 0x10000, "AllocationBase": 0x10000, "AllocationProtect": 0x04,
     "RegionSize": 0x2000, "State": MEM_COMMIT, "Protect": 0x04, "Type": MEM_PRIVATE},
    {"BaseAddress": 0x7FF7_0000_0000, "AllocationBase": 0x7FF7_0000_0000, "AllocationProtect": 0x80,
     "RegionSize": 0x1000, "State": MEM_COMMIT, "Protect": 0x02, "Type": MEM_IMAGE,
     "TimeDateStamp": 0x5F00_1234, "SizeOfImage": 0x24000, "ImageBase": 0x1_4000_0000,
     "CheckSum": 0x2A3B4, "MappedFileName": ("\\Device\\HarddiskVolume3\\app\\app.exe", "XX")},
    {"BaseAddress": 0x2000_0000, "AllocationBase": 0x2000_0000, "AllocationProtect": 0x04,
     "RegionSize": 0x10000, "State": MEM_COMMIT, "Protect": 0x04, "Type": MEM_MAPPED,
     "MappedFileName": ("\\Device\\HarddiskVolume3\\shared.bin", "nul")},
    {"BaseAddress": 0x3000_0000, "AllocationBase": 0x3000_0000, "AllocationProtect": 0x08,
     "RegionSize": 0x4000, "State": MEM_COMMIT, "Protect": 0x08, "Type": MEM_MAPPED,
     "MappedFileName": ("\\Device\\HarddiskVolume3\\data.bin",)},
    {"BaseAddress": 0x4000_0000, "AllocationBase": 0x4000_0000, "AllocationProtect": 0x04,
     "RegionSize": 0x100000, "State": MEM_RESERVE, "Protect": 0, "Type": MEM_PRIVATE},
]
# the clone shares writable section views: only region 2 is not point-in-time
POINT_IN_TIME = [True, True, False, True, True]

IMAGE = "C:\\Program Files\\Äpp\\app.exe"
PROCESS: dict[str, Any] = {
    "ExitStatus": 259, "PebBaseAddress": 0x3F_FFFF_E000, "AffinityMask": 0xF, "BasePriority": 8,
    "ProcessId": PID, "ParentProcessId": 0x3E8, "Flags": C["PSS_PROCESS_FLAGS_FROZEN"],
    "CreateTime": 133_499_999_000_000_000, "ExitTime": 0, "KernelTime": 4_000_000,
    "UserTime": 9_000_000,
    "PriorityClass": 0x20, "PeakVirtualSize": 0x2_0000_0000, "VirtualSize": 0x1_8000_0000,
    "PageFaultCount": 4242, "PeakWorkingSetSize": 0x400_0000, "WorkingSetSize": 0x300_0000,
    "PagefileUsage": 0x200_0000, "PeakPagefileUsage": 0x280_0000, "PrivateUsage": 0x210_0000,
    "ImageFileName": (IMAGE + "\0").encode("utf-16-le")}


class StandInPss:
    """PssCaptureSnapshot/Free, PssWalkMarkerCreate/Free, PssWalkSnapshot, PssQuerySnapshot."""

    WALKS: ClassVar[dict[int, tuple[str, str]]] = {
        C["PSS_WALK_THREADS"]: ("PSS_THREAD_ENTRY", "threads"),
        C["PSS_WALK_HANDLES"]: ("PSS_HANDLE_ENTRY", "handles"),
        C["PSS_WALK_VA_SPACE"]: ("PSS_VA_SPACE_ENTRY", "regions")}

    def __init__(self, k32: FakeKernel32) -> None:
        self.k32 = k32
        self.threads, self.handles, self.regions = THREADS, HANDLES, REGIONS
        self.captured: list[tuple[int, int, int]] = []
        self.handed_out: list[int] = []  # one HPSS per capture: HPSS, HPSS + 0x10, ...
        self.freed: list[tuple[int, int]] = []
        self.markers: dict[int, dict[str, Any]] = {}  # live walk markers
        self.markers_made = 0
        self.markers_freed: list[int] = []
        self.walks: list[int] = []  # the information class of every PssWalkSnapshot call
        self.queries: list[int] = []
        self.scribbled = 0
        self.graveyard: list[Any] = []  # freed buffers stay allocated, overwritten
        self.capture_error = self.create_error = 0
        self.walk_error: dict[tuple[int, int], int] = {}  # (class, index) -> code

    def PssCaptureSnapshot(self, hprocess: Any, flags: int, ctx: int, out: Any) -> int:
        assert addr(hprocess) in self.k32.open
        self.captured.append((addr(hprocess), flags, ctx))
        if self.capture_error:
            return self.capture_error
        self.handed_out.append(HPSS + 0x10 * len(self.handed_out))
        put_pointer(out, self.handed_out[-1])
        return 0

    def live(self, hpss: Any) -> bool:
        return addr(hpss) in self.handed_out and addr(hpss) not in [h for _c, h in self.freed]

    def PssFreeSnapshot(self, hcurrent: Any, hpss: Any) -> int:
        assert self.markers == {}, "snapshot freed with walk markers still open"
        assert self.live(hpss), "freeing a snapshot that is not live"
        self.freed.append((int(sffi.cast("intptr_t", hcurrent)), addr(hpss)))
        return 0

    def PssWalkMarkerCreate(self, allocator: Any, out: Any) -> int:
        assert addr(allocator) == 0  # the default process-heap allocator
        if self.create_error:
            return self.create_error
        self.markers_made += 1
        marker = 0x7770000 + 0x10 * self.markers_made
        self.markers[marker] = {"pos": 0, "keep": []}
        put_pointer(out, marker)
        return 0

    def PssWalkMarkerFree(self, marker: Any) -> int:
        state = self.markers.pop(addr(marker))  # KeyError: freed twice or never made
        for buf in state["keep"]:  # what the entries pointed to dies with the marker
            sffi.memmove(buf, b"\xEE" * sffi.sizeof(buf), sffi.sizeof(buf))
            self.scribbled += 1
        self.graveyard.extend(state["keep"])
        self.markers_freed.append(addr(marker))
        return 0

    def _wide(self, keep: list[Any], spec: tuple[str, ...]) -> tuple[int, int]:
        """(text,): counted bytes = the text's; (text, "nul"): its terminator counted too;
        (text, garbage): garbage follows the counted bytes (no terminator there)."""
        text = spec[0]
        tail = spec[1] if len(spec) > 1 else ""
        counted = len(text.encode("utf-16-le"))
        if tail == "nul":
            counted, tail = counted + 2, ""
        buf = sffi.new("char16_t[]", text + tail)  # cffi adds a terminator after tail
        keep.append(buf)
        return addr(buf), counted

    def _entry(self, kind: str, spec: dict[str, Any], keep: list[Any]) -> bytes:
        values = {k: v for k, v in spec.items()
                  if k not in ("context", "TypeName", "ObjectName", "MappedFileName")}
        if kind == "threads" and spec.get("context") is not None:
            record = sffi.new("unsigned char[]", spec["context"])
            keep.append(record)
            values["ContextRecord"] = addr(record)
            values["SizeOfContextRecord"] = len(spec["context"])
        for name in ("TypeName", "ObjectName", "MappedFileName"):
            if name in spec:
                values[name], values[name + "Length"] = self._wide(keep, spec[name])
        return pack({"threads": "PSS_THREAD_ENTRY", "handles": "PSS_HANDLE_ENTRY",
                     "regions": "PSS_VA_SPACE_ENTRY"}[kind], values)

    def PssWalkSnapshot(self, hpss: Any, what: int, marker: Any, buf: Any, size: int) -> int:
        assert self.live(hpss)
        state = self.markers.get(addr(marker))
        if state is None:
            return 6  # ERROR_INVALID_HANDLE
        struct_name, kind = self.WALKS[what]
        assert size == REF[struct_name]["size"], (struct_name, size)
        self.walks.append(what)
        index = state["pos"]
        if (what, index) in self.walk_error:
            return self.walk_error[(what, index)]
        entries = getattr(self, kind)
        if index >= len(entries):
            return ERROR_NO_MORE_ITEMS
        data = self._entry(kind, entries[index], state["keep"])
        sffi.memmove(sffi.cast("void *", addr(buf)), data, size)
        state["pos"] = index + 1
        return 0

    def PssQuerySnapshot(self, hpss: Any, what: int, buf: Any, size: int) -> int:
        assert self.live(hpss)
        self.queries.append(what)
        if what == C["PSS_QUERY_PROCESS_INFORMATION"]:
            data = pack("PSS_PROCESS_INFORMATION", PROCESS)
        elif what == C["PSS_QUERY_THREAD_INFORMATION"]:
            data = pack("PSS_THREAD_INFORMATION", {"ThreadsCaptured": len(self.threads),
                                                   "ContextLength": 1232})
        else:
            return 50  # ERROR_NOT_SUPPORTED
        assert size == len(data)
        sffi.memmove(sffi.cast("void *", addr(buf)), data, size)
        return 0


class SnapWorld:
    def __init__(self, lib: Any, *, missing: tuple[str, ...] = (), snapshot_script: bool = True
                 ) -> None:
        self.k32 = FakeKernel32()
        self.dbg = FakeDbgHelp(lib, self.k32, script_from_wine(Inputs(pid=PID, handle=0x34),
                                                               snapshot_script))
        self.pss = StandInPss(self.k32)
        exports = types.SimpleNamespace(**{n: getattr(self.pss, n) for n in PSS_NAMES
                                           if n not in missing})
        self.api = windows.WinApi(kernel32=self.k32, dbghelp=self.dbg, pss=exports,
                                  get_last_error=lambda: self.k32.last_error,
                                  osfhandle=lambda fd: fd)

    def backend(self) -> types.SimpleNamespace:
        return types.SimpleNamespace(
            __name__="windows", check_target=partial(windows.check_target, api=self.api),
            write_dump=partial(windows.write_dump, api=self.api),
            take_snapshot=partial(windows.take_snapshot, api=self.api))


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_harness(tmp_path_factory.mktemp("snapshot"))


@pytest.fixture
def world(harness: Any, monkeypatch: pytest.MonkeyPatch) -> SnapWorld:
    w = SnapWorld(harness)
    monkeypatch.setattr(dumper_mod, "load_backend", w.backend)
    return w


# --- expected values, from the scripted entries -------------------------------------------

def expected_thread(spec: dict[str, Any], with_context: bool) -> dict[str, Any]:
    return {"tid": spec["ThreadId"], "pid": spec["ProcessId"], "name": "",
            "teb": spec["TebBaseAddress"], "start_address": spec["Win32StartAddress"],
            "affinity": spec["AffinityMask"], "priority": spec["Priority"],
            "base_priority": spec["BasePriority"], "create_time": spec["CreateTime"],
            "user_time": spec.get("UserTime", 0), "kernel_time": spec.get("KernelTime", 0),
            "suspended": spec["SuspendCount"] > 0,
            "last_syscall_number": spec.get("LastSyscallNumber", 0),
            "last_syscall_first_argument": spec.get("LastSyscallFirstArgument", 0),
            "terminated": bool(spec["Flags"] & C["PSS_THREAD_FLAGS_TERMINATED"]),
            "suspend_count": spec["SuspendCount"], "exit_status": spec["ExitStatus"],
            "exit_time": spec["ExitTime"], "capture_time": spec.get("CaptureTime", 0)}


def check_context(ctx: md.ContextAMD64 | None, record: bytes) -> None:
    """Registers read back equal the bytes at the JSON's CONTEXT offsets."""
    assert ctx is not None
    fields = REF["CONTEXT"]["fields"]
    for name, attr in (("ContextFlags", "context_flags"), ("Rip", "rip"), ("Rsp", "rsp"),
                       ("Rax", "rax"), ("Rbx", "rbx"), ("R15", "r15"), ("SegCs", "seg_cs"),
                       ("EFlags", "eflags"), ("MxCsr", "mx_csr"), ("Dr7", "dr7")):
        off, width = fields[name]
        assert getattr(ctx, attr) == int.from_bytes(record[off:off + width], "little"), name
    off, width = fields["Xmm0"]
    assert ctx.flt_save.xmm_registers[:16] == record[off:off + width]


# --- the walks through Dumper.snapshot -------------------------------------------------------

def test_dumper_snapshot_on_a_faked_win32(harness: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """sys.platform faked to "win32": the real load_backend picks windows.py, Dumper(pid)
    opens and closes the process, snapshot() captures with the flags and context flags
    given, and the public Snapshot's members hold the Windows objects; the snapshot is
    freed once, on leaving the block, after every walk marker was freed."""
    w = SnapWorld(harness)
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(windows, "winapi", lambda: w.api)
    with minidumpkit.Dumper(PID).snapshot(ALL_FLAGS, ContextFlags.FULL) as snap:
        assert isinstance(snap, Snapshot)
        assert w.pss.captured == [(w.k32.closed[0] + 4, int(ALL_FLAGS), int(ContextFlags.FULL))]
        assert snap.capture_method == md.CAPTURE_VA_CLONE
        assert isinstance(snap.pause_ns, int) and snap.pause_ns >= 0
        assert [t.tid for t in snap.threads] == [t["ThreadId"] for t in THREADS]
        assert [h.handle for h in snap.handles] == [h["Handle"] for h in HANDLES]
        assert [r.base_address for r in snap.va_space] == [r["BaseAddress"] for r in REGIONS]
        assert snap.process_info.image_file_name == IMAGE
        assert w.pss.freed == [] and w.pss.markers == {}
    assert w.pss.freed == [(-1, HPSS)]
    assert w.pss.markers_made == 3 and len(w.pss.markers_freed) == 3
    assert w.k32.open == {}


def test_threads(world: SnapWorld) -> None:
    """PSS_THREAD_ENTRY → SnapshotThread (a WindowsSnapshotThread): every field, the CONTEXT
    parsed into md.ContextAMD64 from the snapshot-owned record, None for an x86-sized
    record; one marker, walked until ERROR_NO_MORE_ITEMS and not beyond, freed."""
    with minidumpkit.Dumper(PID).snapshot(ALL_FLAGS) as snap:
        threads = snap.threads
        again = snap.threads  # cached: a snapshot does not change
    assert again == threads
    assert all(isinstance(t, SnapshotThread) for t in threads)
    assert all(isinstance(t, _win_snapshot.WindowsSnapshotThread) for t in threads)
    for got, spec in zip(threads, THREADS, strict=True):
        want = expected_thread(spec, True)
        assert {k: getattr(got, k) for k in want} == want
    check_context(threads[0].context, CTX_A)
    check_context(threads[1].context, CTX_B)
    assert threads[2].context is None and getattr(threads[2], "terminated") is True  # noqa: B009
    # ERROR_NO_MORE_ITEMS ended the walk: one call per entry, one more, none after
    assert world.pss.walks == [C["PSS_WALK_THREADS"]] * (len(THREADS) + 1)
    assert world.pss.markers == {} and world.pss.markers_made == 1
    assert world.pss.scribbled == len(THREADS)  # the records died with the marker...
    check_context(threads[0].context, CTX_A)  # ...after they had been copied


def test_handles(world: SnapWorld) -> None:
    """PSS_HANDLE_ENTRY → SnapshotHandle: byte lengths (not characters), names with and
    without a counted terminator or with garbage after the count, non-BMP text; the
    name, access and counts only where PSS_HANDLE_FLAGS says they are valid; the object
    type as PssObjectType (or the raw value for a newer type)."""
    from minidumpkit._ffi import pss

    with minidumpkit.Dumper(PID).snapshot(ALL_FLAGS) as snap:
        handles = snap.handles
    assert all(isinstance(h, SnapshotHandle) for h in handles)
    assert all(isinstance(h, _win_snapshot.WindowsSnapshotHandle) for h in handles)
    got = [(h.handle, h.type_name, h.object_name, h.attributes, h.granted_access,
            h.object_type, h.flags, h.handle_count, h.pointer_count)
           for h in cast(list[_win_snapshot.WindowsSnapshotHandle], handles)]
    assert got == [
        (0x4, "Event", "\\Sessions\\1\\BaseNamedObjects\\ready", 0x2, 0x1F0003,
         C["PSS_OBJECT_TYPE_EVENT"], H_ALL, 3, 65537),
        (0x48, "File", FILE_NAME, 0, 0x12019F, 0,
         H_ALL & ~C["PSS_HANDLE_HAVE_TYPE_SPECIFIC_INFORMATION"], 1, 32768),
        (0x4C, "Process", "", 0, 0, C["PSS_OBJECT_TYPE_PROCESS"], C["PSS_HANDLE_HAVE_TYPE"], 0, 0),
        (0x50, "EtwRegistration", "", 0, 0, 9, C["PSS_HANDLE_HAVE_TYPE"], 0, 0),
    ]
    assert getattr(handles[0], "object_type") is pss.PssObjectType.EVENT  # noqa: B009
    assert world.pss.markers == {} and world.pss.scribbled == 6 + 1  # 7 strings handed out


def test_va_space(world: SnapWorld) -> None:
    """PSS_VA_SPACE_ENTRY → SnapshotVaRegion: MEMORY_BASIC_INFORMATION fields, the mapped
    file name from its byte length, the image fields, point_in_time False only for a
    writable shared view of a VA-clone snapshot (and for every region without VA_CLONE)."""
    with minidumpkit.Dumper(PID).snapshot(ALL_FLAGS) as snap:
        regions = snap.va_space
    assert all(isinstance(r, SnapshotVaRegion) for r in regions)
    for got, spec, pit in zip(regions, REGIONS, POINT_IN_TIME, strict=True):
        assert (got.base_address, got.region_size, got.protect, got.type, got.state,
                got.allocation_base, got.allocation_protect, got.point_in_time) == (
            spec["BaseAddress"], spec["RegionSize"], spec["Protect"], spec["Type"],
            spec["State"], spec["AllocationBase"], spec["AllocationProtect"], pit)
        assert got.mapped_file_name == spec.get("MappedFileName", ("",))[0]
    image = regions[1]
    assert isinstance(image, _win_snapshot.WindowsSnapshotVaRegion)
    assert (image.image_base, image.size_of_image, image.time_date_stamp, image.checksum) == (
        0x1_4000_0000, 0x24000, 0x5F00_1234, 0x2A3B4)
    with minidumpkit.Dumper(PID).snapshot(F.VA_SPACE) as live:
        assert live.capture_method == md.CAPTURE_SNAPSHOT_LIVE
        assert [r.point_in_time for r in live.va_space] == [False] * len(REGIONS)


def test_process_info(world: SnapWorld) -> None:
    """PssQuerySnapshot(PSS_QUERY_PROCESS_INFORMATION) → SnapshotProcessInfo (the inline
    WCHAR[260] image name), thread_count from PSS_QUERY_THREAD_INFORMATION, and 0 when
    THREADS was not captured (that query is then not made)."""
    with minidumpkit.Dumper(PID).snapshot(ALL_FLAGS) as snap:
        info = snap.process_info
    assert isinstance(info, SnapshotProcessInfo)
    p = PROCESS
    assert (info.pid, info.parent_pid, info.image_file_name, info.create_time, info.user_time,
            info.kernel_time, info.virtual_size, info.peak_virtual_size, info.working_set_size,
            info.peak_working_set_size, info.page_fault_count, info.thread_count,
            info.base_priority, info.exit_status) == (
        PID, p["ParentProcessId"], IMAGE, p["CreateTime"], p["UserTime"], p["KernelTime"],
        p["VirtualSize"], p["PeakVirtualSize"], p["WorkingSetSize"], p["PeakWorkingSetSize"],
        p["PageFaultCount"], len(THREADS), p["BasePriority"], 259)
    assert isinstance(info, _win_snapshot.WindowsSnapshotProcessInfo)
    assert (info.flags, info.peb_address, info.affinity, info.priority_class,
            info.private_usage, info.pagefile_usage) == (
        C["PSS_PROCESS_FLAGS_FROZEN"], p["PebBaseAddress"], 0xF, 0x20, p["PrivateUsage"],
        p["PagefileUsage"])
    assert world.pss.queries == [C["PSS_QUERY_PROCESS_INFORMATION"],
                                 C["PSS_QUERY_THREAD_INFORMATION"]]
    world.pss.queries.clear()
    with minidumpkit.Dumper(PID).snapshot(F.VA_CLONE) as bare:
        assert bare.process_info.thread_count == 0
    assert world.pss.queries == [C["PSS_QUERY_PROCESS_INFORMATION"]]


def test_walks_not_captured_are_empty(world: SnapWorld) -> None:
    """Without THREADS / HANDLES / VA_SPACE the walks are empty without asking PSS (as on
    Linux); THREADS without THREAD_CONTEXT gives context None even where a record exists."""
    with minidumpkit.Dumper(PID).snapshot(F.VA_CLONE) as snap:
        assert (snap.threads, snap.handles, snap.va_space) == ([], [], [])
    assert world.pss.walks == [] and world.pss.markers_made == 0
    with minidumpkit.Dumper(PID).snapshot(F.THREADS) as snap:
        assert [t.context for t in snap.threads] == [None] * len(THREADS)
        assert snap.capture_method == md.CAPTURE_SNAPSHOT_LIVE


# --- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("code,exc", [(8, ProcessError), (5, AccessDenied), (6, ProcessError),
                                      (50, UnsupportedError)])
def test_walk_failure_is_mapped_and_the_marker_freed(world: SnapWorld, code: int,
                                                     exc: type[Exception]) -> None:
    """PssWalkSnapshot failing on the 2nd entry: the mapped exception with winerror, the
    marker freed all the same; the snapshot stays usable and is freed once on exit."""
    world.pss.walk_error[(C["PSS_WALK_HANDLES"], 1)] = code
    with minidumpkit.Dumper(PID).snapshot(ALL_FLAGS) as snap:
        with pytest.raises(exc, match="PssWalkSnapshot") as caught:
            snap.handles  # noqa: B018
        assert getattr(caught.value, "winerror", None) == code
        assert world.pss.markers == {} and len(world.pss.markers_freed) == 1
        assert len(snap.threads) == len(THREADS)
    assert len(world.pss.freed) == 1


def test_marker_create_failure(world: SnapWorld) -> None:
    """PssWalkMarkerCreate failing (ERROR_NOT_ENOUGH_MEMORY): mapped, nothing walked."""
    world.pss.create_error = 8
    with (minidumpkit.Dumper(PID).snapshot(ALL_FLAGS) as snap,
          pytest.raises(ProcessError, match="PssWalkMarkerCreate") as caught):
        snap.va_space  # noqa: B018
    assert caught.value.winerror == 8  # type: ignore[attr-defined]
    assert world.pss.walks == [] and world.pss.markers == {}


@pytest.mark.parametrize("code,exc,refused", [(5, AccessDenied, False),
                                              (87, ProcessError, False),
                                              (50, UnsupportedError, True)])
def test_capture_failure_is_mapped(world: SnapWorld, code: int, exc: type[Exception],
                                   refused: bool) -> None:
    """PssCaptureSnapshot's Win32 code → the mapped exception with winerror, the process
    handle closed, nothing freed; ERROR_NOT_SUPPORTED is also a SnapshotRefused."""
    world.pss.capture_error = code
    with pytest.raises(exc, match="PssCaptureSnapshot") as caught:
        minidumpkit.Dumper(PID).snapshot(ALL_FLAGS)
    assert caught.value.winerror == code  # type: ignore[attr-defined]
    assert isinstance(caught.value, SnapshotRefused) is refused
    assert world.k32.open == {} and world.pss.freed == []


@pytest.mark.parametrize("missing", PSS_NAMES)
def test_missing_pss_function(harness: Any, monkeypatch: pytest.MonkeyPatch,
                              missing: str) -> None:
    """A kernel32 without one Pss* export: UnsupportedError naming it — at capture for
    PssCaptureSnapshot/PssFreeSnapshot (before OpenProcess), at the first walk or query
    for the others, with no marker left open and the snapshot freed once."""
    w = SnapWorld(harness, missing=(missing,))
    monkeypatch.setattr(dumper_mod, "load_backend", w.backend)
    if missing in ("PssCaptureSnapshot", "PssFreeSnapshot"):
        with pytest.raises(UnsupportedError, match=missing) as caught:
            minidumpkit.Dumper(PID).snapshot(ALL_FLAGS)
        assert isinstance(caught.value, SnapshotRefused)
        assert w.k32.opened == [(windows.DUMP_ACCESS, PID)]  # Dumper's check only
        return
    with (minidumpkit.Dumper(PID).snapshot(ALL_FLAGS) as snap,
          pytest.raises(UnsupportedError, match=missing)):
        snap.process_info if missing == "PssQuerySnapshot" else snap.threads  # noqa: B018
    assert w.pss.markers == {} and len(w.pss.freed) == 1


def test_linux_options_are_refused(world: SnapWorld) -> None:
    """frozen_limit has no Windows meaning: TypeError, nothing captured."""
    with pytest.raises(TypeError, match="frozen_limit"):
        minidumpkit.Dumper(PID).snapshot(ALL_FLAGS, frozen_limit=1 << 20)
    assert world.pss.captured == []


# --- freeing -----------------------------------------------------------------------------------

def test_freed_exactly_once(world: SnapWorld) -> None:
    """PssFreeSnapshot once: on leaving the block, on an exception inside it (which
    propagates), with close() called twice, and from __del__ with a ResourceWarning.
    After close every member but close/closed raises ValueError."""
    pss = world.pss
    with minidumpkit.Dumper(PID).snapshot(ALL_FLAGS) as snap:
        pass
    assert len(pss.freed) == 1
    with pytest.raises(LookupError), minidumpkit.Dumper(PID).snapshot(ALL_FLAGS) as snap:
        snap.threads  # noqa: B018
        raise LookupError("inside")
    assert len(pss.freed) == 2 and pss.markers == {}
    snap.close()
    snap.close()
    assert len(pss.freed) == 2 and snap.closed
    for member in ("threads", "handles", "va_space", "process_info", "pause_ns"):
        with pytest.raises(ValueError, match="closed"):
            getattr(snap, member)
    dropped = minidumpkit.Dumper(PID).snapshot(ALL_FLAGS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del dropped
        gc.collect()
    assert [c.category for c in caught if "Snapshot pid=" in str(c.message)] == [ResourceWarning]
    assert len(pss.freed) == 3 and world.k32.open == {}
    assert pss.freed == [(-1, h) for h in pss.handed_out]  # GetCurrentProcess(), each once


# --- writing -----------------------------------------------------------------------------------

def test_write_answers_is_process_snapshot_itself(world: SnapWorld, tmp_path: Path) -> None:
    """Snapshot.write: MiniDumpWriteDump gets the HPSS as hProcess with the real pid, the
    trampoline answers IsProcessSnapshotCallback S_FALSE and the user's callbacks never
    see it; the file holds what dbghelp wrote; last_times is a WindowsDumpTimes."""
    rec = Recorder()
    with minidumpkit.Dumper(PID).snapshot(ALL_FLAGS) as snap:
        path = snap.write(tmp_path / "snap.dmp", DumpType.FULL, callbacks=rec)
        assert world.pss.freed == []
    assert path.read_bytes() == DUMP_BYTES
    (call,) = world.dbg.calls
    assert (call["hprocess"], call["pid"], call["type"]) == (HPSS, PID, int(DumpType.FULL))
    assert world.dbg.answers[0] == (CT.IsProcessSnapshotCallback, 1, expect(Status=1))
    assert "is_process_snapshot" not in rec.names() and rec.names()[0] == "cancel"
    assert rec.names().count("thread") == 5
    assert isinstance(snap.last_times, windows.WindowsDumpTimes)
    assert snap.last_times.size == len(DUMP_BYTES)
    assert len(world.pss.freed) == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["snap.dmp"]


def test_last_write_frees_the_snapshot_once(world: SnapWorld, tmp_path: Path) -> None:
    """Snapshot.write(close=True): dbghelp writes from the HPSS, then the snapshot is
    freed (PssFreeSnapshot once, also when the block ends after it)."""
    with minidumpkit.Dumper(PID).snapshot(ALL_FLAGS) as snap:
        path = snap.write(tmp_path / "last.dmp", DumpType.FULL, close=True)
        assert snap.closed and world.pss.freed == [(-1, HPSS)]
        with pytest.raises(ValueError, match="closed"):
            snap.write(tmp_path / "again.dmp", DumpType.FULL)
    assert world.pss.freed == [(-1, HPSS)] and world.k32.open == {}
    assert world.dbg.calls[0]["hprocess"] == HPSS
    assert path.read_bytes() == DUMP_BYTES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.dmp"]


def test_dumper_write_full_goes_through_a_snapshot(world: SnapWorld, tmp_path: Path) -> None:
    """Dumper.write(FULL) with snapshot="auto" now takes a PSS snapshot on Windows (the
    flags dumper.py asks for), dumps from its HPSS and frees it."""
    minidumpkit.Dumper(PID).write(tmp_path / "full.dmp", DumpType.FULL)
    assert [c[1:] for c in world.pss.captured] == [(int(dumper_mod.WRITE_SNAPSHOT_FLAGS),
                                                   int(ContextFlags.ALL))]
    assert world.dbg.calls[0]["hprocess"] == HPSS
    assert len(world.pss.freed) == 1 and world.k32.open == {}
    assert (tmp_path / "full.dmp").read_bytes() == DUMP_BYTES


def test_dumper_write_without_pss_falls_back(harness: Any, monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    """No PssCaptureSnapshot (Windows 7, Wine): Dumper.write(FULL) dumps the live process
    with an OpenProcess handle instead of failing; snapshot="always" raises."""
    w = SnapWorld(harness, missing=("PssCaptureSnapshot",), snapshot_script=False)
    monkeypatch.setattr(dumper_mod, "load_backend", w.backend)
    minidumpkit.Dumper(PID).write(tmp_path / "live.dmp", DumpType.FULL)
    (call,) = w.dbg.calls
    assert call["hprocess"] != HPSS and call["hprocess"] in call["open"]
    assert w.pss.captured == [] and w.k32.open == {}
    with pytest.raises(UnsupportedError, match="PssCaptureSnapshot"):
        minidumpkit.Dumper(PID).write(tmp_path / "always.dmp", DumpType.FULL, snapshot="always")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.dmp"]


def test_take_snapshot_directly(harness: Any) -> None:
    """windows.take_snapshot without Dumper: the SnapshotBackend protocol's members."""
    w = SnapWorld(harness)
    backend = windows.take_snapshot(PID, int(F.THREADS | F.THREAD_CONTEXT), int(ContextFlags.ALL),
                                    api=w.api)
    try:
        assert (backend.pid, backend.flags, backend.capture_method) == (
            PID, F.THREADS | F.THREAD_CONTEXT, md.CAPTURE_SNAPSHOT_LIVE)
        assert [t.tid for t in backend.threads()] == [t["ThreadId"] for t in THREADS]
        assert backend.handles() == [] and backend.va_space() == []
    finally:
        backend.close()
    backend.close()
    assert len(w.pss.freed) == 1
