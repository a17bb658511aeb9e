"""A Windows process snapshot (PssCaptureSnapshot) as a handle-owning object.

Microsoft's "Generate Dump File from a Process Snapshot": capture with
PssCaptureSnapshot, pass the HPSS as MiniDumpWriteDump's hProcess (with the real
pid) and answer IsProcessSnapshotCallback with S_FALSE, free with
PssFreeSnapshot(GetCurrentProcess(), hpss). With PssCaptureFlags.VA_CLONE the
target runs again as soon as the capture returns.

The walks (PssWalkSnapshot over PSS_THREAD_ENTRY, PSS_HANDLE_ENTRY,
PSS_VA_SPACE_ENTRY) and PssQuerySnapshot(PSS_QUERY_PROCESS_INFORMATION) become
the platform-neutral objects of :mod:`minidumpkit.snapshot` (Windows subclasses
that add what only PSS reports); :class:`WindowsSnapshotBackend` is the
:class:`~minidumpkit.snapshot.SnapshotBackend` ``Dumper.snapshot`` wraps.

Ownership (aesthetics P7): every field ``__del__`` reads is set first; ``close()``
is idempotent and frees the snapshot exactly once, then closes the process
handle; ``__exit__`` closes; ``__del__`` warns ResourceWarning and closes.
NOT RUN ON WINDOWS YET: see docs/windows.md.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

from .. import format as md
from .._closing import Closeable
from .._ffi import _winerror, kernel32, pss
from ..callbacks import DumpCallbacks
from ..errors import UnsupportedError
from ..flags import (
    ContextFlags,
    DumpType,
    MiniDumpType,
    PssCaptureFlags,
    coerce_dump_type,
)
from ..snapshot import (
    SnapshotHandle,
    SnapshotProcessInfo,
    SnapshotRefused,
    SnapshotThread,
    SnapshotVaRegion,
)
from . import windows
from ._win_trampoline import Trampoline

__all__ = [
    "DEFAULT_CAPTURE_FLAGS",
    "SNAPSHOT_ACCESS",
    "PssUnavailable",
    "WindowsSnapshot",
    "WindowsSnapshotBackend",
    "WindowsSnapshotHandle",
    "WindowsSnapshotProcessInfo",
    "WindowsSnapshotThread",
    "WindowsSnapshotVaRegion",
    "take",
]

_F = PssCaptureFlags
_T = TypeVar("_T")
_MEM_MAPPED = 0x40000
_SHARED_WRITABLE = 0x04 | 0x40  # PAGE_READWRITE, PAGE_EXECUTE_READWRITE (not *WRITECOPY)

#: What a dump from the snapshot needs: a memory clone, threads with their
#: contexts, handles with their names and details (Microsoft's example, less the
#: handle trace, which needs extra rights, and the extended contexts).
DEFAULT_CAPTURE_FLAGS = (
    PssCaptureFlags.VA_CLONE | PssCaptureFlags.HANDLES | PssCaptureFlags.HANDLE_NAME_INFORMATION
    | PssCaptureFlags.HANDLE_BASIC_INFORMATION | PssCaptureFlags.HANDLE_TYPE_SPECIFIC_INFORMATION
    | PssCaptureFlags.THREADS | PssCaptureFlags.THREAD_CONTEXT
    | PssCaptureFlags.CREATE_BREAKAWAY_OPTIONAL | PssCaptureFlags.CREATE_USE_VM_ALLOCATIONS
    | PssCaptureFlags.CREATE_RELEASE_SECTION)

#: PssCaptureSnapshot's needs (VA_CLONE creates a process: CREATE_PROCESS,
#: VM_OPERATION) plus what MiniDumpWriteDump needs.
SNAPSHOT_ACCESS = (windows.DUMP_ACCESS | kernel32.PROCESS_CREATE_PROCESS
                   | kernel32.PROCESS_VM_OPERATION)


class PssUnavailable(SnapshotRefused, UnsupportedError):
    """No PSS snapshot can be had here: a Pss* function is missing (Windows before
    8.1, Wine) or PssCaptureSnapshot answered ERROR_NOT_SUPPORTED.

    Both an UnsupportedError (what it is) and a SnapshotRefused, so that
    ``Dumper.write(snapshot="auto")`` falls back to a plain MiniDumpWriteDump.
    """


# --- the walk objects: the neutral types plus what only PSS reports --------------------

@dataclasses.dataclass(frozen=True)
class WindowsSnapshotThread(SnapshotThread):
    """A PSS_THREAD_ENTRY. ``terminated``: PSS_THREAD_FLAGS_TERMINATED (the thread
    had exited when captured; its object was still referenced)."""

    terminated: bool = False
    suspend_count: int = 0
    exit_status: int = 0
    exit_time: int = 0  # FILETIME
    capture_time: int = 0  # FILETIME


@dataclasses.dataclass(frozen=True)
class WindowsSnapshotHandle(SnapshotHandle):
    """A PSS_HANDLE_ENTRY. ``object_type`` is a :class:`~minidumpkit._ffi.pss.PssObjectType`
    (an int where Windows reports a type that enumeration lacks); ``flags`` the
    PSS_HANDLE_FLAGS saying which parts are valid."""

    object_type: int = 0
    flags: int = 0
    handle_count: int = 0
    pointer_count: int = 0


@dataclasses.dataclass(frozen=True)
class WindowsSnapshotVaRegion(SnapshotVaRegion):
    """A PSS_VA_SPACE_ENTRY; the image fields are set for MEM_IMAGE regions when
    PssCaptureFlags.VA_SPACE_SECTION_INFORMATION was given, else 0."""

    image_base: int = 0
    size_of_image: int = 0
    time_date_stamp: int = 0
    checksum: int = 0


@dataclasses.dataclass(frozen=True)
class WindowsSnapshotProcessInfo(SnapshotProcessInfo):
    """PSS_PROCESS_INFORMATION. ``flags``: PSS_PROCESS_FLAGS (protected, WOW64, frozen)."""

    flags: int = 0
    peb_address: int = 0
    affinity: int = 0
    priority_class: int = 0
    exit_time: int = 0  # FILETIME
    private_usage: int = 0
    pagefile_usage: int = 0


def _address(pointer: Any) -> int:
    return int(pss.ffi.cast("uintptr_t", pointer))


def _filetime(ft: Any) -> int:
    return (int(ft.dwHighDateTime) << 32) | int(ft.dwLowDateTime)


def _wide(pointer: Any, length_bytes: int) -> str:
    """A PSS string: ``length_bytes`` is in bytes (the SDK says so for TypeNameLength,
    ObjectNameLength and MappedFileNameLength), the text need not be NUL-terminated,
    and some names carry their terminator inside the length."""
    if pointer == pss.ffi.NULL or length_bytes < 2:
        return ""
    text: str = pss.ffi.unpack(pointer, length_bytes // 2)
    return text.rstrip("\0")


def _known(enum: type[Any], value: int) -> int:
    try:
        known: int = enum(value)
    except ValueError:
        return value
    return known


def _context(entry: Any) -> md.ContextAMD64 | None:
    """The thread's CONTEXT (x64 only: an x86 or WOW64 record gives None)."""
    size = int(entry.SizeOfContextRecord)
    if entry.ContextRecord == pss.ffi.NULL or size < md.ContextAMD64.SIZE:
        return None
    raw = bytes(pss.ffi.buffer(entry.ContextRecord, md.ContextAMD64.SIZE))
    context = md.ContextAMD64.unpack_from(raw)
    if not context.context_flags & int(ContextFlags.AMD64):
        return None
    return context


def _thread(entry: Any, with_context: bool) -> WindowsSnapshotThread:
    return WindowsSnapshotThread(
        tid=int(entry.ThreadId), pid=int(entry.ProcessId),
        teb=_address(entry.TebBaseAddress), start_address=_address(entry.Win32StartAddress),
        affinity=int(entry.AffinityMask), priority=int(entry.Priority),
        base_priority=int(entry.BasePriority), create_time=_filetime(entry.CreateTime),
        user_time=_filetime(entry.UserTime), kernel_time=_filetime(entry.KernelTime),
        suspended=int(entry.SuspendCount) > 0,
        last_syscall_number=int(entry.LastSyscallNumber),
        last_syscall_first_argument=_address(entry.LastSyscallFirstArgument),
        context=_context(entry) if with_context else None,
        terminated=bool(entry.Flags & pss.PssThreadFlags.TERMINATED),
        suspend_count=int(entry.SuspendCount), exit_status=int(entry.ExitStatus),
        exit_time=_filetime(entry.ExitTime), capture_time=_filetime(entry.CaptureTime))


def _handle(entry: Any) -> WindowsSnapshotHandle:
    flags = int(entry.Flags)
    basic = bool(flags & pss.PssHandleFlags.HAVE_BASIC_INFORMATION)
    return WindowsSnapshotHandle(
        handle=_address(entry.Handle),
        type_name=_wide(entry.TypeName, int(entry.TypeNameLength)),
        object_name=(_wide(entry.ObjectName, int(entry.ObjectNameLength))
                     if flags & pss.PssHandleFlags.HAVE_NAME else ""),
        attributes=int(entry.Attributes) if basic else 0,
        granted_access=int(entry.GrantedAccess) if basic else 0,
        object_type=(_known(pss.PssObjectType, int(entry.ObjectType))
                     if flags & pss.PssHandleFlags.HAVE_TYPE else pss.PssObjectType.UNKNOWN),
        flags=_known(pss.PssHandleFlags, flags),
        handle_count=int(entry.HandleCount) if basic else 0,
        pointer_count=int(entry.PointerCount) if basic else 0)


def _region(entry: Any, va_clone: bool) -> WindowsSnapshotVaRegion:
    kind, protect = int(entry.Type), int(entry.Protect)
    # The clone shares section views with the target (fork semantics: ViewShare), so
    # a writable shared mapping keeps changing; private and image pages are frozen.
    shared_live = kind == _MEM_MAPPED and bool(protect & _SHARED_WRITABLE)
    return WindowsSnapshotVaRegion(
        base_address=_address(entry.BaseAddress), region_size=int(entry.RegionSize),
        protect=protect, type=kind, state=int(entry.State),
        allocation_base=_address(entry.AllocationBase),
        allocation_protect=int(entry.AllocationProtect),
        mapped_file_name=_wide(entry.MappedFileName, int(entry.MappedFileNameLength)),
        point_in_time=va_clone and not shared_live,
        image_base=_address(entry.ImageBase), size_of_image=int(entry.SizeOfImage),
        time_date_stamp=int(entry.TimeDateStamp), checksum=int(entry.CheckSum))


class WindowsSnapshot(Closeable):
    """A PSS snapshot of process ``pid``; write dumps from it, then close it.

    ::

        with WindowsSnapshot(pid) as snap:   # the target runs again here
            snap.write("app.dmp", DumpType.FULL)

    Pss* missing (Windows before 8.1, Wine) raises UnsupportedError naming the
    function, before the process is opened.
    """

    def __init__(self, pid: int, flags: int | PssCaptureFlags = DEFAULT_CAPTURE_FLAGS,
                 context_flags: int | ContextFlags = ContextFlags.ALL, *,
                 api: windows.WinApi | None = None) -> None:
        # First, so that __del__ and close() work whatever fails below.
        self._hpss: Any = None
        self._hprocess: Any = None
        self._walked: dict[str, Any] = {}
        self.pid = pid
        #: the PssCaptureSnapshot call, in ns: Windows holds the target inside it
        self.pause_ns = 0
        #: timings of the last :meth:`write`
        self.last_times: windows.WindowsDumpTimes | None = None
        self.flags = PssCaptureFlags(int(flags))
        self.context_flags = ContextFlags(int(context_flags))
        self._api = api or windows.winapi()
        capture = pss.function("PssCaptureSnapshot", self._api.pss)
        self._free = pss.function("PssFreeSnapshot", self._api.pss)  # needed later: check now
        hprocess = windows.open_process(self._api, pid, SNAPSHOT_ACCESS)
        try:
            out = pss.ffi.new("HPSS *")
            started = time.perf_counter_ns()
            code = capture(hprocess, int(self.flags), int(self.context_flags), out)
            self.pause_ns = time.perf_counter_ns() - started
            _winerror.check_win32(code, "PssCaptureSnapshot", pid=pid)
        except BaseException:
            windows.close_handle(self._api, hprocess)
            raise
        self._hprocess = hprocess
        self._hpss = out[0]

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"flags={self.flags!r}"
        return f"<WindowsSnapshot pid={self.pid} {state}>"

    @property
    def closed(self) -> bool:
        return self._hpss is None

    @property
    def handle(self) -> Any:
        """The HPSS (valid until :meth:`close`)."""
        if self._hpss is None:
            raise ValueError("the snapshot is closed")
        return self._hpss

    def write(self, path: str | Path, type: int | MiniDumpType = DumpType.MINI, *,
              callbacks: DumpCallbacks | None = None, overwrite: bool = True) -> Path:
        """Write a minidump of the snapshot to ``path`` (atomically: nothing is left
        there on failure) and return it. ``path`` and ``overwrite`` follow
        :meth:`minidumpkit.Dumper.write`. ``callbacks`` never see
        IsProcessSnapshotCallback: it is answered S_FALSE here."""
        from .. import _output

        if callbacks is not None and not isinstance(callbacks, DumpCallbacks):
            raise TypeError(f"callbacks must be a minidumpkit.DumpCallbacks instance, not "
                            f"{callbacks.__class__.__name__}")
        dump_type = coerce_dump_type(type)
        self._check_open()
        dest = _output.destination(path, overwrite=overwrite)
        with _output.open_output(dest) as out:
            self.write_to(out, dump_type, callbacks)
        return Path(dest.written or dest.path)

    def write_to(self, out: IO[bytes], dump_type: MiniDumpType,
                 callbacks: DumpCallbacks | None) -> windows.WindowsDumpTimes:
        """MiniDumpWriteDump of the snapshot into ``out`` (an open, seekable file)."""
        self.last_times = windows.write_from_handle(
            self._api, self.handle, self.pid, out, dump_type,
            Trampoline(callbacks, snapshot=True, pid=self.pid))
        return self.last_times

    # --- the walks (cached: a snapshot does not change) --------------------------------

    def _check_open(self) -> None:
        if self._hpss is None:
            raise ValueError("the snapshot is closed")

    def _walk(self, what: pss.PssWalkInformationClass, ctype: str,
              convert: Callable[[Any], _T]) -> list[_T]:
        """Every entry of one PssWalkSnapshot class, converted while the walk marker
        lives (the strings and contexts an entry points to die with the marker)."""
        hpss = self.handle
        walk = pss.function("PssWalkSnapshot", self._api.pss)
        create = pss.function("PssWalkMarkerCreate", self._api.pss)
        free = pss.function("PssWalkMarkerFree", self._api.pss)
        made = pss.ffi.new("HPSSWALK *")
        _winerror.check_win32(create(pss.ffi.NULL, made), "PssWalkMarkerCreate", pid=self.pid)
        marker = made[0]
        entry = pss.ffi.new(f"{ctype} *")
        size = pss.ffi.sizeof(ctype)
        found: list[_T] = []
        try:
            while True:
                code = walk(hpss, int(what), marker, entry, size)
                if code == _winerror.ERROR_NO_MORE_ITEMS:
                    break
                _winerror.check_win32(code, "PssWalkSnapshot", pid=self.pid)
                found.append(convert(entry))
        except BaseException:
            free(marker)  # its own failure would only hide the one in flight
            raise
        _winerror.check_win32(free(marker), "PssWalkMarkerFree", pid=self.pid)
        return found

    def _query(self, what: pss.PssQueryInformationClass, ctype: str) -> Any:
        query = pss.function("PssQuerySnapshot", self._api.pss)
        buffer = pss.ffi.new(f"{ctype} *")
        code = query(self.handle, int(what), buffer, pss.ffi.sizeof(ctype))
        _winerror.check_win32(code, "PssQuerySnapshot", pid=self.pid)
        return buffer

    def threads(self) -> list[WindowsSnapshotThread]:
        """PSS_WALK_THREADS; empty unless PssCaptureFlags.THREADS was captured.
        ``context`` is None unless THREAD_CONTEXT was."""
        self._check_open()
        if not self.flags & _F.THREADS:
            return []
        if "threads" not in self._walked:
            with_context = bool(self.flags & _F.THREAD_CONTEXT)
            self._walked["threads"] = self._walk(
                pss.PssWalkInformationClass.THREADS, "PSS_THREAD_ENTRY",
                lambda e: _thread(e, with_context))
        return list(self._walked["threads"])

    def handles(self) -> list[WindowsSnapshotHandle]:
        """PSS_WALK_HANDLES; empty unless PssCaptureFlags.HANDLES was captured."""
        self._check_open()
        if not self.flags & _F.HANDLES:
            return []
        if "handles" not in self._walked:
            self._walked["handles"] = self._walk(
                pss.PssWalkInformationClass.HANDLES, "PSS_HANDLE_ENTRY", _handle)
        return list(self._walked["handles"])

    def va_space(self) -> list[WindowsSnapshotVaRegion]:
        """PSS_WALK_VA_SPACE; empty unless PssCaptureFlags.VA_SPACE was captured."""
        self._check_open()
        if not self.flags & _F.VA_SPACE:
            return []
        if "va_space" not in self._walked:
            va_clone = bool(self.flags & _F.VA_CLONE)
            self._walked["va_space"] = self._walk(
                pss.PssWalkInformationClass.VA_SPACE, "PSS_VA_SPACE_ENTRY",
                lambda e: _region(e, va_clone))
        return list(self._walked["va_space"])

    def process_info(self) -> WindowsSnapshotProcessInfo:
        """PssQuerySnapshot(PSS_QUERY_PROCESS_INFORMATION), always captured;
        ``thread_count`` from PSS_QUERY_THREAD_INFORMATION (0 without THREADS)."""
        self._check_open()
        if "process" not in self._walked:
            p = self._query(pss.PssQueryInformationClass.PROCESS_INFORMATION,
                            "PSS_PROCESS_INFORMATION")
            threads = 0
            if self.flags & _F.THREADS:
                threads = int(self._query(pss.PssQueryInformationClass.THREAD_INFORMATION,
                                          "PSS_THREAD_INFORMATION").ThreadsCaptured)
            self._walked["process"] = WindowsSnapshotProcessInfo(
                pid=int(p.ProcessId), parent_pid=int(p.ParentProcessId),
                image_file_name=pss.ffi.string(p.ImageFileName),
                create_time=_filetime(p.CreateTime), user_time=_filetime(p.UserTime),
                kernel_time=_filetime(p.KernelTime), virtual_size=int(p.VirtualSize),
                peak_virtual_size=int(p.PeakVirtualSize),
                working_set_size=int(p.WorkingSetSize),
                peak_working_set_size=int(p.PeakWorkingSetSize),
                page_fault_count=int(p.PageFaultCount), thread_count=threads,
                base_priority=int(p.BasePriority), exit_status=int(p.ExitStatus),
                flags=_known(pss.PssProcessFlags, int(p.Flags)),
                peb_address=_address(p.PebBaseAddress), affinity=int(p.AffinityMask),
                priority_class=int(p.PriorityClass), exit_time=_filetime(p.ExitTime),
                private_usage=int(p.PrivateUsage), pagefile_usage=int(p.PagefileUsage))
        info: WindowsSnapshotProcessInfo = self._walked["process"]
        return info

    def close(self) -> None:
        """PssFreeSnapshot(GetCurrentProcess(), hpss) once, then close the process handle."""
        hpss, self._hpss = self._hpss, None
        hprocess, self._hprocess = self._hprocess, None
        self._walked = {}
        if hpss is None:
            return
        try:
            code = self._free(self._api.kernel32.GetCurrentProcess(), hpss)
        finally:
            if hprocess is not None:
                windows.close_handle(self._api, hprocess)
        _winerror.check_win32(code, "PssFreeSnapshot", pid=self.pid)

    def _open(self) -> bool:
        return getattr(self, "_hpss", None) is not None


class WindowsSnapshotBackend:
    """The :class:`~minidumpkit.snapshot.SnapshotBackend` of ``Dumper.snapshot`` on
    Windows: a :class:`WindowsSnapshot` behind the platform-neutral protocol."""

    def __init__(self, snapshot: WindowsSnapshot) -> None:
        self.snapshot = snapshot
        self.pid = snapshot.pid
        self.flags = snapshot.flags
        # Without VA_CLONE dbghelp reads memory from the live process, as on Linux.
        self.capture_method = (md.CAPTURE_VA_CLONE if snapshot.flags & _F.VA_CLONE
                               else md.CAPTURE_SNAPSHOT_LIVE)
        self.pause_ns = snapshot.pause_ns

    def threads(self) -> list[SnapshotThread]:
        return list(self.snapshot.threads())

    def handles(self) -> list[SnapshotHandle]:
        return list(self.snapshot.handles())

    def va_space(self) -> list[SnapshotVaRegion]:
        return list(self.snapshot.va_space())

    def process_info(self) -> SnapshotProcessInfo:
        return self.snapshot.process_info()

    def write(self, out: IO[bytes], dump_type: MiniDumpType, policy: Any, *,
              last: bool = False, all_memory: bool = False) -> windows.WindowsDumpTimes:
        """``policy`` is what Snapshot.write made of ``callbacks=``; dbghelp asks the
        user's DumpCallbacks itself (a bare Linux DumpPolicy is refused). ``last``
        changes nothing here: dbghelp reads the snapshot whole, and Snapshot.write
        frees it (PssFreeSnapshot) afterwards. Nor does ``all_memory``: dbghelp's
        WithFullMemory already copies every committed readable page."""
        return self.snapshot.write_to(out, dump_type, windows.callbacks_from_policy(policy))

    def close(self) -> None:
        self.snapshot.close()


def take(pid: int, flags: int | PssCaptureFlags, context_flags: int | ContextFlags, *,
         api: windows.WinApi | None = None) -> WindowsSnapshotBackend:
    """PssCaptureSnapshot of ``pid`` with exactly ``flags`` and ``context_flags``.

    A missing Pss* function or ERROR_NOT_SUPPORTED raises :class:`PssUnavailable`
    (an UnsupportedError naming the function, and a SnapshotRefused).
    """
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"pid must be an int, not {type(pid).__name__}")
    try:
        snapshot = WindowsSnapshot(pid, flags, context_flags, api=api)
    except PssUnavailable:
        raise
    except UnsupportedError as exc:
        refused = PssUnavailable(str(exc), pid=pid, reason="unsupported")
        for name in ("winerror", "hresult"):
            if hasattr(exc, name):
                setattr(refused, name, getattr(exc, name))
        raise refused from exc
    return WindowsSnapshotBackend(snapshot)
