"""cffi (in-line ABI mode) declarations of dbghelp's minidump API (minidumpapiset.h).

Declarations, the loader and one piece of pure data logic
(:func:`thread_callback_layout`); no policy. Importing this module parses the
declarations (so tests can measure them on any OS) but opens no library:
:func:`load` does that, on Windows only.

Why in-line mode: the SDK wraps all of minidumpapiset.h in ``#pragma pack(4)``
(``pshpack4.h``), which moves in-memory API structures on x64 too
(``MINIDUMP_EXCEPTION_INFORMATION`` is 16 bytes, ``ExceptionPointers`` at 4).
cffi expresses that only as ``ffi.cdef(..., pack=4)``, which out-of-line mode
rejects.

Only the in-memory API structures are declared here. The file-format records
(``MINIDUMP_HEADER``, ``MINIDUMP_MODULE``, ...) are defined once, in
:mod:`minidumpkit.format`; ``MINIDUMP_DIRECTORY`` is therefore opaque here, and
the stream pointers :func:`MiniDumpReadDumpStream` returns are read with
``md.Directory.unpack_from(ffi.buffer(dir_ptr, md.Directory.SIZE))``.

References: learn.microsoft.com "minidumpapiset.h" (MiniDumpWriteDump,
MINIDUMP_CALLBACK_INPUT, MINIDUMP_CALLBACK_OUTPUT, ...), Microsoft's
minidumpapiset.h as recompiled in microsoft/win32metadata, and
``reference/winabi/winabi_ref.h``.
"""

from __future__ import annotations

import enum
import functools
import os
import sys
import threading
from typing import Any, NamedTuple, Protocol, cast

import cffi  # type: ignore[import-untyped,unused-ignore]  # cffi ships no types

from ..errors import UnsupportedError
from ._win32 import (
    CONTEXT_NATIVE,
    CONTEXT_SIZE_AMD64,
    WIN32_POINTERS,
    WIN32_TYPES,
    WINNT_STRUCTS,
)

__all__ = [
    "GCC_X64",
    "LOCK",
    "MSVC_X64",
    "S_FALSE",
    "S_OK",
    "SUPPORTED_PLATFORMS",
    "DbgHelp",
    "MiniSecondaryFlags",
    "ThreadCallbackLayout",
    "check_process_machine",
    "ffi",
    "load",
    "thread_callback_layout",
]

# HRESULTs a callback stores in MINIDUMP_CALLBACK_OUTPUT.Status.
S_OK = 0
S_FALSE = 1  # IsProcessSnapshotCallback: "hProcess is a PSS snapshot" (Microsoft's snapshot example)



class MiniSecondaryFlags(enum.IntFlag):
    """MINIDUMP_SECONDARY_FLAGS: the answer to SecondaryFlagsCallback."""

    WithoutPowerInfo = 0x00000001
    ValidFlags = 0x00000001


#: Every ``T *`` the minidump structures use, as forward typedefs.
POINTERS = """
typedef struct _MINIDUMP_DIRECTORY *PMINIDUMP_DIRECTORY;
typedef struct _MINIDUMP_EXCEPTION_INFORMATION *PMINIDUMP_EXCEPTION_INFORMATION;
typedef struct _MINIDUMP_USER_STREAM *PMINIDUMP_USER_STREAM;
typedef struct _MINIDUMP_USER_STREAM_INFORMATION *PMINIDUMP_USER_STREAM_INFORMATION;
typedef struct _MINIDUMP_CALLBACK_INPUT *PMINIDUMP_CALLBACK_INPUT;
typedef struct _MINIDUMP_CALLBACK_OUTPUT *PMINIDUMP_CALLBACK_OUTPUT;
typedef struct _MINIDUMP_CALLBACK_INFORMATION *PMINIDUMP_CALLBACK_INFORMATION;

/* The header says `_In_ PMINIDUMP_CALLBACK_INPUT`; the docs' `const PMINIDUMP_...`
   makes the pointer const, not the structure, so the C type is the same. */
typedef BOOL (WINAPI *MINIDUMP_CALLBACK_ROUTINE)(
    PVOID CallbackParam,
    PMINIDUMP_CALLBACK_INPUT CallbackInput,
    PMINIDUMP_CALLBACK_OUTPUT CallbackOutput);
"""

#: minidumpapiset.h in-memory structures; parsed with pack=4 like the SDK.
STRUCTS = """
typedef struct _MINIDUMP_EXCEPTION_INFORMATION {
    DWORD               ThreadId;
    PEXCEPTION_POINTERS ExceptionPointers;
    BOOL                ClientPointers;
} MINIDUMP_EXCEPTION_INFORMATION;

typedef struct _MINIDUMP_EXCEPTION_INFORMATION64 {
    DWORD   ThreadId;
    ULONG64 ExceptionRecord;
    ULONG64 ContextRecord;
    BOOL    ClientPointers;
} MINIDUMP_EXCEPTION_INFORMATION64;

typedef struct _MINIDUMP_USER_STREAM {
    ULONG32 Type;
    ULONG   BufferSize;
    PVOID   Buffer;
} MINIDUMP_USER_STREAM;

typedef struct _MINIDUMP_USER_STREAM_INFORMATION {
    ULONG                 UserStreamCount;
    PMINIDUMP_USER_STREAM UserStreamArray;
} MINIDUMP_USER_STREAM_INFORMATION;

/* CONTEXT is DECLSPEC_ALIGN(16) on x64. MSVC keeps that alignment inside pack(4)
   (Context at +16, real Windows dbghelp); GCC lets pack(4) win (Context at +12,
   Wine's dbghelp). cffi can only express the second, which is what this
   declaration gives; thread_callback_layout() tells the two apart at run time. */
typedef struct _MINIDUMP_THREAD_CALLBACK {
    ULONG   ThreadId;
    HANDLE  ThreadHandle;
    CONTEXT Context;
    ULONG   SizeOfContext;
    ULONG64 StackBase;
    ULONG64 StackEnd;
} MINIDUMP_THREAD_CALLBACK;

typedef struct _MINIDUMP_THREAD_EX_CALLBACK {
    ULONG   ThreadId;
    HANDLE  ThreadHandle;
    CONTEXT Context;
    ULONG   SizeOfContext;
    ULONG64 StackBase;
    ULONG64 StackEnd;
    ULONG64 BackingStoreBase;
    ULONG64 BackingStoreEnd;
} MINIDUMP_THREAD_EX_CALLBACK;

typedef struct _MINIDUMP_INCLUDE_THREAD_CALLBACK {
    ULONG ThreadId;
} MINIDUMP_INCLUDE_THREAD_CALLBACK;

typedef struct _MINIDUMP_MODULE_CALLBACK {
    PWCHAR           FullPath;
    ULONG64          BaseOfImage;
    ULONG            SizeOfImage;
    ULONG            CheckSum;
    ULONG            TimeDateStamp;
    VS_FIXEDFILEINFO VersionInfo;
    PVOID            CvRecord;
    ULONG            SizeOfCvRecord;
    PVOID            MiscRecord;
    ULONG            SizeOfMiscRecord;
} MINIDUMP_MODULE_CALLBACK;

typedef struct _MINIDUMP_INCLUDE_MODULE_CALLBACK {
    ULONG64 BaseOfImage;
} MINIDUMP_INCLUDE_MODULE_CALLBACK;

typedef struct _MINIDUMP_IO_CALLBACK {
    HANDLE  Handle;
    ULONG64 Offset;
    PVOID   Buffer;
    ULONG   BufferBytes;
} MINIDUMP_IO_CALLBACK;

typedef struct _MINIDUMP_READ_MEMORY_FAILURE_CALLBACK {
    ULONG64 Offset;
    ULONG   Bytes;
    HRESULT FailureStatus;
} MINIDUMP_READ_MEMORY_FAILURE_CALLBACK;

typedef struct _MINIDUMP_VM_QUERY_CALLBACK {
    ULONG64 Offset;
} MINIDUMP_VM_QUERY_CALLBACK;

typedef struct _MINIDUMP_VM_PRE_READ_CALLBACK {
    ULONG64 Offset;
    PVOID   Buffer;
    ULONG   Size;
} MINIDUMP_VM_PRE_READ_CALLBACK;

typedef struct _MINIDUMP_VM_POST_READ_CALLBACK {
    ULONG64 Offset;
    PVOID   Buffer;
    ULONG   Size;
    ULONG   Completed;
    HRESULT Status;
} MINIDUMP_VM_POST_READ_CALLBACK;

typedef struct _MINIDUMP_CALLBACK_INPUT {
    ULONG  ProcessId;
    HANDLE ProcessHandle;
    ULONG  CallbackType;
    union {
        HRESULT                               Status;
        MINIDUMP_THREAD_CALLBACK              Thread;
        MINIDUMP_THREAD_EX_CALLBACK           ThreadEx;
        MINIDUMP_MODULE_CALLBACK              Module;
        MINIDUMP_INCLUDE_THREAD_CALLBACK      IncludeThread;
        MINIDUMP_INCLUDE_MODULE_CALLBACK      IncludeModule;
        MINIDUMP_IO_CALLBACK                  Io;
        MINIDUMP_READ_MEMORY_FAILURE_CALLBACK ReadMemoryFailure;
        ULONG                                 SecondaryFlags;
        MINIDUMP_VM_QUERY_CALLBACK            VmQuery;
        MINIDUMP_VM_PRE_READ_CALLBACK         VmPreRead;
        MINIDUMP_VM_POST_READ_CALLBACK        VmPostRead;
    };
} MINIDUMP_CALLBACK_INPUT;

typedef struct _MINIDUMP_MEMORY_INFO {
    ULONG64 BaseAddress;
    ULONG64 AllocationBase;
    ULONG32 AllocationProtect;
    ULONG32 __alignment1;
    ULONG64 RegionSize;
    ULONG32 State;
    ULONG32 Protect;
    ULONG32 Type;
    ULONG32 __alignment2;
} MINIDUMP_MEMORY_INFO;

/* One union, 52 bytes, Status at 0 (the SDK's layout). mingw-w64 10's dbghelp.h
   declares 68 bytes with Status at 64: do not copy it. */
typedef struct _MINIDUMP_CALLBACK_OUTPUT {
    union {
        ULONG  ModuleWriteFlags;
        ULONG  ThreadWriteFlags;
        ULONG  SecondaryFlags;
        struct {
            ULONG64 MemoryBase;
            ULONG   MemorySize;
        };
        struct {
            BOOL CheckCancel;
            BOOL Cancel;
        };
        HANDLE Handle;
        struct {
            MINIDUMP_MEMORY_INFO VmRegion;
            BOOL                 Continue;
        };
        struct {
            HRESULT              VmQueryStatus;
            MINIDUMP_MEMORY_INFO VmQueryResult;
        };
        struct {
            HRESULT VmReadStatus;
            ULONG   VmReadBytesCompleted;
        };
        HRESULT Status;
    };
} MINIDUMP_CALLBACK_OUTPUT;

typedef struct _MINIDUMP_CALLBACK_INFORMATION {
    MINIDUMP_CALLBACK_ROUTINE CallbackRoutine;
    PVOID                     CallbackParam;
} MINIDUMP_CALLBACK_INFORMATION;
"""

#: dbghelp.dll exports (WINAPI: __stdcall on x86, the one Win64 convention on x64).
FUNCTIONS = """
BOOL WINAPI MiniDumpWriteDump(
    HANDLE                            hProcess,
    DWORD                             ProcessId,
    HANDLE                            hFile,
    DWORD                             DumpType,       /* MINIDUMP_TYPE, a 32-bit enum */
    PMINIDUMP_EXCEPTION_INFORMATION   ExceptionParam,
    PMINIDUMP_USER_STREAM_INFORMATION UserStreamParam,
    PMINIDUMP_CALLBACK_INFORMATION    CallbackParam);

BOOL WINAPI MiniDumpReadDumpStream(
    PVOID                BaseOfDump,
    ULONG                StreamNumber,
    PMINIDUMP_DIRECTORY *Dir,
    PVOID               *StreamPointer,
    ULONG               *StreamSize);
"""

ffi = cffi.FFI()
ffi.cdef(WIN32_TYPES)
ffi.cdef(WIN32_POINTERS + POINTERS)
ffi.cdef(CONTEXT_NATIVE + WINNT_STRUCTS)
ffi.cdef(STRUCTS, pack=4)
ffi.cdef(FUNCTIONS)

#: "All DbgHelp functions ... are single threaded" (About DbgHelp): every call
#: into dbghelp.dll must hold this lock.
LOCK = threading.Lock()


class DbgHelp(Protocol):
    """The functions of dbghelp.dll that :func:`load` makes callable."""

    def MiniDumpWriteDump(self, hProcess: Any, ProcessId: int, hFile: Any, DumpType: int,
                          ExceptionParam: Any, UserStreamParam: Any,
                          CallbackParam: Any, /) -> int: ...

    def MiniDumpReadDumpStream(self, BaseOfDump: Any, StreamNumber: int, Dir: Any,
                               StreamPointer: Any, StreamSize: Any, /) -> int: ...


#: What ``sysconfig.get_platform()`` says on the Windows interpreters whose
#: CONTEXT is declared here (the interpreter's own build, so the architecture of
#: this process and of the dbghelp.dll it loads).
SUPPORTED_PLATFORMS = ("win-amd64", "win32")


def check_process_machine(platform_tag: str | None = None) -> None:
    """Raise UnsupportedError unless this process is x64 or x86.

    What matters is the architecture of the calling process (its dbghelp.dll fills
    the CONTEXT in the callback input), not the machine's: an x64 Python emulated
    on Windows on ARM64 is fine. ``sysconfig.get_platform()`` reads it from
    ``sys.version`` (the compiler's tag), with no system call; ``platform.machine()``
    is avoided on purpose: on CPython 3.12+ it is a WMI query (a COM round trip on
    Windows, an aborted interpreter under Wine).
    """
    if platform_tag is None:
        import sysconfig

        platform_tag = sysconfig.get_platform()
    if platform_tag not in SUPPORTED_PLATFORMS:
        raise UnsupportedError(
            f"dbghelp bindings are declared for x64 and x86 processes only, not "
            f"{platform_tag}: the CONTEXT inside MINIDUMP_CALLBACK_INPUT differs on this "
            "architecture")


@functools.cache
def load() -> DbgHelp:
    """Open dbghelp.dll from the system directory (Windows only, once per process).

    Raises :class:`~minidumpkit.errors.UnsupportedError` on any other OS, and in
    Windows processes whose CONTEXT is not declared here (ARM64).
    """
    if sys.platform != "win32":
        raise UnsupportedError(
            "dbghelp.dll is a Windows library; on Linux minidumpkit uses its own writer")
    check_process_machine()
    # The system copy, not whatever dbghelp.dll the DLL search order finds first.
    system_root = os.environ.get("SystemRoot", r"C:\Windows")
    return cast(DbgHelp, ffi.dlopen(os.path.join(system_root, "System32", "dbghelp.dll")))


class ThreadCallbackLayout(NamedTuple):
    """Byte offsets, inside MINIDUMP_CALLBACK_INPUT, of the Thread/ThreadEx members.

    ``ThreadId`` (16) and ``ThreadHandle`` (20) are the same in both placements;
    everything from ``Context`` on moves by 4 bytes.
    """

    name: str
    context: int
    size_of_context: int
    stack_base: int
    stack_end: int
    backing_store_base: int
    backing_store_end: int


#: Wine's (GCC-built) dbghelp.dll: pack(4) wins, Context at input offset 28.
#: Observed under Wine 8 (reference/windows-abi.md §6); equals the cffi declaration.
GCC_X64 = ThreadCallbackLayout("gcc", context=28, size_of_context=1260, stack_base=1264,
                               stack_end=1272, backing_store_base=1280, backing_store_end=1288)

#: Microsoft's (MSVC-built) dbghelp.dll: CONTEXT keeps its 16-byte alignment inside
#: pack(4), so everything from Context on sits 4 bytes later. Inferred from MSVC's
#: rules and the 1312-byte sizeof reported in win32metadata #460; not yet observed.
MSVC_X64 = ThreadCallbackLayout("msvc", context=32, size_of_context=1264, stack_base=1268,
                                stack_end=1276, backing_store_base=1284, backing_store_end=1292)


def thread_callback_layout(callback_input: bytes | memoryview) -> ThreadCallbackLayout | None:
    """Which placement a Thread/ThreadEx callback input uses, or None if neither fits.

    ``callback_input`` is the start of a MINIDUMP_CALLBACK_INPUT of type
    ThreadCallback or ThreadExCallback (at least 1268 bytes, e.g.
    ``ffi.buffer(input_ptr, MSVC_X64.size_of_context + 4)``). The placement whose
    ``SizeOfContext`` reads 1232 (sizeof(CONTEXT) on x64) is the one dbghelp wrote.
    If both read 1232, the one whose ``ContextFlags`` carries CONTEXT_AMD64
    (0x00100000) wins. Only meaningful for 64-bit processes: on x86 both
    compilers agree and the cffi declaration is already right.
    """
    data = memoryview(callback_input).cast("B")
    fits = [
        layout for layout in (MSVC_X64, GCC_X64)
        if len(data) >= layout.size_of_context + 4
        and int.from_bytes(data[layout.size_of_context:layout.size_of_context + 4], "little")
        == CONTEXT_SIZE_AMD64
    ]
    if len(fits) > 1:
        fits = [
            layout for layout in fits
            if int.from_bytes(data[layout.context + 48:layout.context + 52], "little") & 0x00100000
        ]
    return fits[0] if len(fits) == 1 else None
