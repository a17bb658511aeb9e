"""cffi (in-line ABI mode) declarations of the Process Snapshotting API (processsnapshot.h).

Declarations, their enumerations and the lazy function lookup; no policy.
Importing this module parses the declarations and opens nothing.

The Pss* functions live in kernel32.dll from Windows 8.1 / Server 2012 R2 on and
are missing from older Windows and from Wine (8.0 exports none of them), so each
one is looked up by name when first needed: :func:`function` turns a missing
export into :class:`~minidumpkit.errors.UnsupportedError` naming the function,
and a Windows without any of them still dumps through MiniDumpWriteDump.

processsnapshot.h has no pack pragma: these structures use default (natural)
packing, unlike minidumpapiset.h. Every Pss* function returns a Win32 error code
(ERROR_SUCCESS = 0) and does not set the thread's last error; check it with
:func:`minidumpkit._ffi._winerror.check_win32`.

References: learn.microsoft.com "processsnapshot.h" (PssCaptureSnapshot,
PSS_THREAD_ENTRY, ...), ``reference/winabi/winabi_ref.h``; the i686 import
library decorations (``_PssCaptureSnapshot@16`` ...) confirm argument sizes.
"""

from __future__ import annotations

import enum
import functools
import sys
from collections.abc import Callable
from typing import Any, Literal

import cffi  # type: ignore[import-untyped,unused-ignore]  # cffi ships no types

from ..errors import UnsupportedError
from ._win32 import CONTEXT_NATIVE, WIN32_POINTERS, WIN32_TYPES, WINNT_STRUCTS

__all__ = [
    "FUNCTION_NAMES",
    "PSS_PERF_RESOLUTION",
    "PssDuplicateFlags",
    "PssFunctionName",
    "PssHandleFlags",
    "PssObjectType",
    "PssProcessFlags",
    "PssQueryInformationClass",
    "PssThreadFlags",
    "PssWalkInformationClass",
    "ffi",
    "function",
    "load",
]

#: PSS_PERFORMANCE_COUNTERS count in units of 1/PSS_PERF_RESOLUTION seconds.
PSS_PERF_RESOLUTION = 1000000


class PssQueryInformationClass(enum.IntEnum):
    """PSS_QUERY_INFORMATION_CLASS: what PssQuerySnapshot returns."""

    PROCESS_INFORMATION = 0
    VA_CLONE_INFORMATION = 1
    AUXILIARY_PAGES_INFORMATION = 2
    VA_SPACE_INFORMATION = 3
    HANDLE_INFORMATION = 4
    THREAD_INFORMATION = 5
    HANDLE_TRACE_INFORMATION = 6
    PERFORMANCE_COUNTERS = 7


class PssWalkInformationClass(enum.IntEnum):
    """PSS_WALK_INFORMATION_CLASS: what PssWalkSnapshot walks."""

    AUXILIARY_PAGES = 0
    VA_SPACE = 1
    HANDLES = 2
    THREADS = 3
    THREAD_NAME = 4  # newer SDKs only; the docs list it without a value


class PssDuplicateFlags(enum.IntFlag):
    """PSS_DUPLICATE_FLAGS (PssDuplicateSnapshot)."""

    NONE = 0x0
    CLOSE_SOURCE = 0x1


class PssProcessFlags(enum.IntFlag):
    """PSS_PROCESS_FLAGS (PSS_PROCESS_INFORMATION.Flags)."""

    NONE = 0x00
    PROTECTED = 0x01
    WOW64 = 0x02
    RESERVED_03 = 0x04
    RESERVED_04 = 0x08
    FROZEN = 0x10


class PssThreadFlags(enum.IntFlag):
    """PSS_THREAD_FLAGS (PSS_THREAD_ENTRY.Flags)."""

    NONE = 0x0
    TERMINATED = 0x1


class PssHandleFlags(enum.IntFlag):
    """PSS_HANDLE_FLAGS: which parts of a PSS_HANDLE_ENTRY are valid."""

    NONE = 0x0
    HAVE_TYPE = 0x1
    HAVE_NAME = 0x2
    HAVE_BASIC_INFORMATION = 0x4
    HAVE_TYPE_SPECIFIC_INFORMATION = 0x8


class PssObjectType(enum.IntEnum):
    """PSS_OBJECT_TYPE (PSS_HANDLE_ENTRY.ObjectType)."""

    UNKNOWN = 0
    PROCESS = 1
    THREAD = 2
    MUTANT = 3
    EVENT = 4
    SECTION = 5
    SEMAPHORE = 6


#: Forward pointer typedefs (HPSS/HPSSWALK are DECLARE_HANDLE pointers).
POINTERS = """
typedef struct HPSS__ *HPSS;
typedef struct HPSSWALK__ *HPSSWALK;
typedef const WCHAR *PCWCHAR;
/* The SDK declares these two inline in PSS_ALLOCATOR; the names are ours. */
typedef PVOID (WINAPI *PSS_ALLOC_ROUTINE)(PVOID Context, DWORD Size);
typedef void (WINAPI *PSS_FREE_ROUTINE)(PVOID Context, PVOID Address);
"""

#: processsnapshot.h structures, default packing. Enumeration-typed members are
#: declared DWORD: C enums are 32-bit and the values live in the classes above.
STRUCTS = """
typedef struct {
    DWORD     ExitStatus;
    PVOID     PebBaseAddress;
    ULONG_PTR AffinityMask;
    LONG      BasePriority;
    DWORD     ProcessId;
    DWORD     ParentProcessId;
    DWORD     Flags;                 /* PSS_PROCESS_FLAGS */
    FILETIME  CreateTime;
    FILETIME  ExitTime;
    FILETIME  KernelTime;
    FILETIME  UserTime;
    DWORD     PriorityClass;
    ULONG_PTR PeakVirtualSize;
    ULONG_PTR VirtualSize;
    DWORD     PageFaultCount;
    ULONG_PTR PeakWorkingSetSize;
    ULONG_PTR WorkingSetSize;
    ULONG_PTR QuotaPeakPagedPoolUsage;
    ULONG_PTR QuotaPagedPoolUsage;
    ULONG_PTR QuotaPeakNonPagedPoolUsage;
    ULONG_PTR QuotaNonPagedPoolUsage;
    ULONG_PTR PagefileUsage;
    ULONG_PTR PeakPagefileUsage;
    ULONG_PTR PrivateUsage;
    DWORD     ExecuteFlags;
    WCHAR     ImageFileName[260];    /* MAX_PATH */
} PSS_PROCESS_INFORMATION;

typedef struct {
    HANDLE VaCloneHandle;
} PSS_VA_CLONE_INFORMATION;

typedef struct {
    DWORD AuxPagesCaptured;
} PSS_AUXILIARY_PAGES_INFORMATION;

typedef struct {
    DWORD RegionCount;
} PSS_VA_SPACE_INFORMATION;

typedef struct {
    DWORD HandlesCaptured;
} PSS_HANDLE_INFORMATION;

typedef struct {
    DWORD ThreadsCaptured;
    DWORD ContextLength;
} PSS_THREAD_INFORMATION;

typedef struct {
    HANDLE SectionHandle;
    DWORD  Size;
} PSS_HANDLE_TRACE_INFORMATION;

typedef struct {
    UINT64 TotalCycleCount;
    UINT64 TotalWallClockPeriod;
    UINT64 VaCloneCycleCount;
    UINT64 VaCloneWallClockPeriod;
    UINT64 VaSpaceCycleCount;
    UINT64 VaSpaceWallClockPeriod;
    UINT64 AuxPagesCycleCount;
    UINT64 AuxPagesWallClockPeriod;
    UINT64 HandlesCycleCount;
    UINT64 HandlesWallClockPeriod;
    UINT64 ThreadsCycleCount;
    UINT64 ThreadsWallClockPeriod;
} PSS_PERFORMANCE_COUNTERS;

typedef struct {
    PVOID                    Address;
    MEMORY_BASIC_INFORMATION BasicInformation;
    FILETIME                 CaptureTime;
    PVOID                    PageContents;
    DWORD                    PageSize;
} PSS_AUXILIARY_PAGE_ENTRY;

typedef struct {
    PVOID     BaseAddress;
    PVOID     AllocationBase;
    DWORD     AllocationProtect;
    ULONG_PTR RegionSize;
    DWORD     State;
    DWORD     Protect;
    DWORD     Type;
    DWORD     TimeDateStamp;
    DWORD     SizeOfImage;
    PVOID     ImageBase;
    DWORD     CheckSum;
    WORD      MappedFileNameLength;  /* bytes, not characters */
    PCWCHAR   MappedFileName;        /* not NUL-terminated */
} PSS_VA_SPACE_ENTRY;

typedef struct {
    HANDLE   Handle;
    DWORD    Flags;                  /* PSS_HANDLE_FLAGS */
    DWORD    ObjectType;             /* PSS_OBJECT_TYPE */
    FILETIME CaptureTime;
    DWORD    Attributes;
    DWORD    GrantedAccess;
    DWORD    HandleCount;
    DWORD    PointerCount;
    DWORD    PagedPoolCharge;
    DWORD    NonPagedPoolCharge;
    FILETIME CreationTime;
    WORD     TypeNameLength;         /* bytes */
    PCWCHAR  TypeName;
    WORD     ObjectNameLength;       /* bytes */
    PCWCHAR  ObjectName;
    union {
        struct {
            DWORD     ExitStatus;
            PVOID     PebBaseAddress;
            ULONG_PTR AffinityMask;
            LONG      BasePriority;
            DWORD     ProcessId;
            DWORD     ParentProcessId;
            DWORD     Flags;
        } Process;
        struct {
            DWORD     ExitStatus;
            PVOID     TebBaseAddress;
            DWORD     ProcessId;
            DWORD     ThreadId;
            ULONG_PTR AffinityMask;
            INT       Priority;
            INT       BasePriority;
            PVOID     Win32StartAddress;
        } Thread;
        struct {
            LONG  CurrentCount;
            BOOL  Abandoned;
            DWORD OwnerProcessId;
            DWORD OwnerThreadId;
        } Mutant;
        struct {
            BOOL ManualReset;
            BOOL Signaled;
        } Event;
        struct {
            PVOID         BaseAddress;
            DWORD         AllocationAttributes;
            LARGE_INTEGER MaximumSize;
        } Section;
        struct {
            LONG CurrentCount;
            LONG MaximumCount;
        } Semaphore;
    } TypeSpecificInformation;
} PSS_HANDLE_ENTRY;

typedef struct {
    DWORD     ExitStatus;
    PVOID     TebBaseAddress;
    DWORD     ProcessId;
    DWORD     ThreadId;
    ULONG_PTR AffinityMask;
    INT       Priority;
    INT       BasePriority;
    PVOID     LastSyscallFirstArgument;
    WORD      LastSyscallNumber;
    FILETIME  CreateTime;
    FILETIME  ExitTime;
    FILETIME  KernelTime;
    FILETIME  UserTime;
    PVOID     Win32StartAddress;
    FILETIME  CaptureTime;
    DWORD     Flags;                 /* PSS_THREAD_FLAGS */
    WORD      SuspendCount;
    WORD      SizeOfContextRecord;
    PCONTEXT  ContextRecord;         /* read-only, owned by the snapshot */
} PSS_THREAD_ENTRY;

/* Newer SDKs only (PSS_WALK_THREAD_NAME); not on the documented structure list. */
typedef struct {
    WORD    ThreadNameSize;
    PCWCHAR ThreadName;
} PSS_THREAD_NAME;

typedef struct {
    PVOID             Context;
    PSS_ALLOC_ROUTINE AllocRoutine;
    PSS_FREE_ROUTINE  FreeRoutine;
} PSS_ALLOCATOR;
"""

#: kernel32.dll exports (Windows 8.1+). The undocumented Rewind/Seek/Tell
#: exports are not declared.
FUNCTIONS = """
DWORD WINAPI PssCaptureSnapshot(HANDLE ProcessHandle, DWORD CaptureFlags,
                                DWORD ThreadContextFlags, HPSS *SnapshotHandle);
DWORD WINAPI PssFreeSnapshot(HANDLE ProcessHandle, HPSS SnapshotHandle);
DWORD WINAPI PssQuerySnapshot(HPSS SnapshotHandle, DWORD InformationClass,
                              void *Buffer, DWORD BufferLength);
DWORD WINAPI PssWalkSnapshot(HPSS SnapshotHandle, DWORD InformationClass,
                             HPSSWALK WalkMarkerHandle, void *Buffer, DWORD BufferLength);
DWORD WINAPI PssDuplicateSnapshot(HANDLE SourceProcessHandle, HPSS SnapshotHandle,
                                  HANDLE TargetProcessHandle, HPSS *TargetSnapshotHandle,
                                  DWORD Flags);
DWORD WINAPI PssWalkMarkerCreate(const PSS_ALLOCATOR *Allocator, HPSSWALK *WalkMarkerHandle);
DWORD WINAPI PssWalkMarkerFree(HPSSWALK WalkMarkerHandle);
DWORD WINAPI PssWalkMarkerGetPosition(HPSSWALK WalkMarkerHandle, ULONG_PTR *Position);
DWORD WINAPI PssWalkMarkerSetPosition(HPSSWALK WalkMarkerHandle, ULONG_PTR Position);
DWORD WINAPI PssWalkMarkerSeekToBeginning(HPSSWALK WalkMarkerHandle);
"""

PssFunctionName = Literal[
    "PssCaptureSnapshot", "PssFreeSnapshot", "PssQuerySnapshot", "PssWalkSnapshot",
    "PssDuplicateSnapshot", "PssWalkMarkerCreate", "PssWalkMarkerFree",
    "PssWalkMarkerGetPosition", "PssWalkMarkerSetPosition", "PssWalkMarkerSeekToBeginning",
]
FUNCTION_NAMES: frozenset[str] = frozenset(PssFunctionName.__args__)  # type: ignore[attr-defined]

ffi = cffi.FFI()
ffi.cdef(WIN32_TYPES)
ffi.cdef(WIN32_POINTERS + POINTERS)
ffi.cdef(CONTEXT_NATIVE + WINNT_STRUCTS)
ffi.cdef(STRUCTS)
ffi.cdef(FUNCTIONS)


@functools.cache
def load() -> Any:
    """Open kernel32.dll for the Pss* functions (Windows only).

    The library opens on every Windows; whether a given Pss* function exists is
    only known when :func:`function` looks it up.
    """
    if sys.platform != "win32":
        raise UnsupportedError(
            "the Process Snapshotting API (PssCaptureSnapshot) is part of Windows; "
            "on Linux minidumpkit takes snapshots with its own clone mechanism")
    return ffi.dlopen("kernel32.dll")


def function(name: PssFunctionName, lib: Any = None) -> Callable[..., int]:
    """The Pss* function ``name`` from ``lib`` (default: :func:`load`).

    A missing export raises :class:`~minidumpkit.errors.UnsupportedError` that
    names the function. ``lib`` is any object whose attributes are the exports
    (a cffi library, or a stand-in in tests).
    """
    if name not in FUNCTION_NAMES:
        raise ValueError(f"{name!r} is not a declared Process Snapshotting function")
    if lib is None:
        lib = load()
    try:
        found: Callable[..., int] = getattr(lib, name)
    except AttributeError:
        raise UnsupportedError(
            f"{name} is not available: kernel32.dll on this system does not export it "
            "(the Process Snapshotting API needs Windows 8.1 / Server 2012 R2 or later, "
            "and Wine does not implement it); dump without a snapshot instead") from None
    return found
