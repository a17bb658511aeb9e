"""cffi (in-line ABI mode) declarations of the kernel32 functions the Windows backend calls.

Declarations, constants and the loader; no policy. Importing this module parses
the declarations and opens nothing; :func:`load` opens kernel32.dll, on Windows
only. The Pss* functions (also kernel32 exports) are declared in :mod:`.pss`
because they may be missing and are looked up one by one.

BOOL- and HANDLE-returning functions report failure through the thread's last
error (a Win32 code): test the return value first, then call
:func:`minidumpkit._ffi._winerror.check_bool_hresult`, which reads it.

References: learn.microsoft.com processthreadsapi.h (OpenProcess,
GetCurrentProcess, GetProcessId, GetExitCodeProcess), handleapi.h (CloseHandle),
fileapi.h (CreateFileW, DeleteFileW, FlushFileBuffers), errhandlingapi.h
(GetLastError, SetLastError), wow64apiset.h (IsWow64Process), winbase.h
(QueryFullProcessImageNameW), memoryapi.h (ReadProcessMemory), psapi.h
(K32EnumProcessModules, K32GetModuleFileNameExW, K32GetModuleInformation); ntdll's
NtSuspendProcess / NtResumeProcess are undocumented but stable (what Process
Explorer's Suspend calls; Wine implements them). The debugging API of debugapi.h and winbase.h
(WaitForDebugEvent, ContinueDebugEvent, DebugActiveProcess, DebugActiveProcessStop,
DebugSetProcessKillOnExit, CheckRemoteDebuggerPresent), minwinbase.h (DEBUG_EVENT and
its members), processthreadsapi.h (OpenThread, GetThreadContext), synchapi.h
(WaitForSingleObject).

DEBUG_EVENT is 176 bytes on x64: three DWORDs, then the union at 16 (its members hold
pointers, so it is 8-aligned), the largest member EXCEPTION_DEBUG_INFO (an
EXCEPTION_RECORD of 152 bytes and dwFirstChance, 160). GetThreadContext wants a
16-aligned CONTEXT on x64: allocate it with :func:`new_context`.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Protocol, cast

import cffi  # type: ignore[import-untyped,unused-ignore]  # cffi ships no types

from ..errors import UnsupportedError
from ._win32 import CONTEXT_NATIVE, WIN32_POINTERS, WIN32_TYPES, WINNT_STRUCTS

__all__ = ["Kernel32", "Ntdll", "ffi", "load", "load_ntdll", "new_context"]

# Process access rights (winnt.h). MiniDumpWriteDump needs
# PROCESS_QUERY_INFORMATION | PROCESS_VM_READ, plus PROCESS_DUP_HANDLE for
# WithHandleData; PssCaptureSnapshot with VA_CLONE also needs
# PROCESS_CREATE_PROCESS and PROCESS_VM_OPERATION.
PROCESS_TERMINATE = 0x0001
PROCESS_VM_OPERATION = 0x0008
PROCESS_VM_READ = 0x0010
PROCESS_DUP_HANDLE = 0x0040
PROCESS_CREATE_PROCESS = 0x0080
PROCESS_QUERY_INFORMATION = 0x0400
PROCESS_SUSPEND_RESUME = 0x0800
PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
SYNCHRONIZE = 0x00100000

# CreateFileW
GENERIC_READ = 0x80000000
GENERIC_WRITE = 0x40000000
FILE_SHARE_READ = 0x00000001
CREATE_NEW = 1
CREATE_ALWAYS = 2
FILE_ATTRIBUTE_NORMAL = 0x00000080

STILL_ACTIVE = 259  # GetExitCodeProcess of a running process

# Thread access rights (winnt.h)
THREAD_SUSPEND_RESUME = 0x0002
THREAD_GET_CONTEXT = 0x0008
THREAD_QUERY_INFORMATION = 0x0040

# CreateProcess creation flags (winbase.h)
DEBUG_PROCESS = 0x00000001
DEBUG_ONLY_THIS_PROCESS = 0x00000002

# DEBUG_EVENT.dwDebugEventCode (minwinbase.h)
EXCEPTION_DEBUG_EVENT = 1
CREATE_THREAD_DEBUG_EVENT = 2
CREATE_PROCESS_DEBUG_EVENT = 3
EXIT_THREAD_DEBUG_EVENT = 4
EXIT_PROCESS_DEBUG_EVENT = 5
LOAD_DLL_DEBUG_EVENT = 6
UNLOAD_DLL_DEBUG_EVENT = 7
OUTPUT_DEBUG_STRING_EVENT = 8
RIP_EVENT = 9

# ContinueDebugEvent's dwContinueStatus (ntstatus.h)
DBG_CONTINUE = 0x00010002
DBG_EXCEPTION_NOT_HANDLED = 0x80010001

INFINITE = 0xFFFFFFFF
WAIT_OBJECT_0 = 0
WAIT_TIMEOUT = 258

#: minwinbase.h debugging structures, default packing; pointers through typedef names
#: (LPTHREAD_START_ROUTINE is declared as the LPVOID it is in layout).
DEBUG_STRUCTS = """
typedef struct _EXCEPTION_DEBUG_INFO {
    EXCEPTION_RECORD ExceptionRecord;
    DWORD            dwFirstChance;
} EXCEPTION_DEBUG_INFO;

typedef struct _CREATE_THREAD_DEBUG_INFO {
    HANDLE hThread;
    LPVOID lpThreadLocalBase;
    LPVOID lpStartAddress;
} CREATE_THREAD_DEBUG_INFO;

typedef struct _CREATE_PROCESS_DEBUG_INFO {
    HANDLE hFile;
    HANDLE hProcess;
    HANDLE hThread;
    LPVOID lpBaseOfImage;
    DWORD  dwDebugInfoFileOffset;
    DWORD  nDebugInfoSize;
    LPVOID lpThreadLocalBase;
    LPVOID lpStartAddress;
    LPVOID lpImageName;
    WORD   fUnicode;
} CREATE_PROCESS_DEBUG_INFO;

typedef struct _EXIT_THREAD_DEBUG_INFO {
    DWORD dwExitCode;
} EXIT_THREAD_DEBUG_INFO;

typedef struct _EXIT_PROCESS_DEBUG_INFO {
    DWORD dwExitCode;
} EXIT_PROCESS_DEBUG_INFO;

typedef struct _LOAD_DLL_DEBUG_INFO {
    HANDLE hFile;
    LPVOID lpBaseOfDll;
    DWORD  dwDebugInfoFileOffset;
    DWORD  nDebugInfoSize;
    LPVOID lpImageName;
    WORD   fUnicode;
} LOAD_DLL_DEBUG_INFO;

typedef struct _UNLOAD_DLL_DEBUG_INFO {
    LPVOID lpBaseOfDll;
} UNLOAD_DLL_DEBUG_INFO;

typedef struct _OUTPUT_DEBUG_STRING_INFO {
    LPSTR lpDebugStringData;
    WORD  fUnicode;
    WORD  nDebugStringLength;
} OUTPUT_DEBUG_STRING_INFO;

typedef struct _RIP_INFO {
    DWORD dwError;
    DWORD dwType;
} RIP_INFO;

typedef struct _DEBUG_EVENT {
    DWORD dwDebugEventCode;
    DWORD dwProcessId;
    DWORD dwThreadId;
    union {
        EXCEPTION_DEBUG_INFO      Exception;
        CREATE_THREAD_DEBUG_INFO  CreateThread;
        CREATE_PROCESS_DEBUG_INFO CreateProcessInfo;
        EXIT_THREAD_DEBUG_INFO    ExitThread;
        EXIT_PROCESS_DEBUG_INFO   ExitProcess;
        LOAD_DLL_DEBUG_INFO       LoadDll;
        UNLOAD_DLL_DEBUG_INFO     UnloadDll;
        OUTPUT_DEBUG_STRING_INFO  DebugString;
        RIP_INFO                  RipInfo;
    } u;
} DEBUG_EVENT;
"""

FUNCTIONS = """
typedef struct _SECURITY_ATTRIBUTES *LPSECURITY_ATTRIBUTES;

HANDLE WINAPI OpenProcess(DWORD dwDesiredAccess, BOOL bInheritHandle, DWORD dwProcessId);
BOOL   WINAPI CloseHandle(HANDLE hObject);
HANDLE WINAPI GetCurrentProcess(void);
DWORD  WINAPI GetCurrentProcessId(void);
DWORD  WINAPI GetCurrentThreadId(void);
DWORD  WINAPI GetProcessId(HANDLE Process);
BOOL   WINAPI GetExitCodeProcess(HANDLE hProcess, LPDWORD lpExitCode);
BOOL   WINAPI IsWow64Process(HANDLE hProcess, PBOOL Wow64Process);
BOOL   WINAPI QueryFullProcessImageNameW(HANDLE hProcess, DWORD dwFlags,
                                         LPWSTR lpExeName, PDWORD lpdwSize);

HANDLE WINAPI CreateFileW(LPCWSTR lpFileName, DWORD dwDesiredAccess, DWORD dwShareMode,
                          LPSECURITY_ATTRIBUTES lpSecurityAttributes,
                          DWORD dwCreationDisposition, DWORD dwFlagsAndAttributes,
                          HANDLE hTemplateFile);
BOOL   WINAPI DeleteFileW(LPCWSTR lpFileName);
BOOL   WINAPI FlushFileBuffers(HANDLE hFile);

DWORD  WINAPI GetLastError(void);
void   WINAPI SetLastError(DWORD dwErrCode);

typedef SIZE_T *PSIZE_T;
typedef HANDLE *PHANDLE;
BOOL   WINAPI ReadProcessMemory(HANDLE hProcess, LPCVOID lpBaseAddress, LPVOID lpBuffer,
                                SIZE_T nSize, PSIZE_T lpNumberOfBytesRead);
BOOL   WINAPI K32EnumProcessModules(HANDLE hProcess, PHANDLE lphModule, DWORD cb,
                                    LPDWORD lpcbNeeded);
DWORD  WINAPI K32GetModuleFileNameExW(HANDLE hProcess, HANDLE hModule, LPWSTR lpFilename,
                                      DWORD nSize);
/* lpmodinfo: a MODULEINFO (base, SizeOfImage, entry point), passed as 3 uint64_t */
BOOL   WINAPI K32GetModuleInformation(HANDLE hProcess, HANDLE hModule, LPVOID lpmodinfo,
                                      DWORD cb);

/* ntdll.dll (load_ntdll): suspend and resume every thread of a process */
LONG   WINAPI NtSuspendProcess(HANDLE ProcessHandle);
LONG   WINAPI NtResumeProcess(HANDLE ProcessHandle);
BOOL   WINAPI WaitForDebugEvent(LPDEBUG_EVENT lpDebugEvent, DWORD dwMilliseconds);
BOOL   WINAPI ContinueDebugEvent(DWORD dwProcessId, DWORD dwThreadId, DWORD dwContinueStatus);
BOOL   WINAPI DebugActiveProcess(DWORD dwProcessId);
BOOL   WINAPI DebugActiveProcessStop(DWORD dwProcessId);
BOOL   WINAPI DebugSetProcessKillOnExit(BOOL KillOnExit);
BOOL   WINAPI CheckRemoteDebuggerPresent(HANDLE hProcess, PBOOL pbDebuggerPresent);
HANDLE WINAPI OpenThread(DWORD dwDesiredAccess, BOOL bInheritHandle, DWORD dwThreadId);
BOOL   WINAPI GetThreadContext(HANDLE hThread, PCONTEXT lpContext);
DWORD  WINAPI WaitForSingleObject(HANDLE hHandle, DWORD dwMilliseconds);
"""

#: The pointer spellings only the debugging declarations use.
DEBUG_POINTERS = """
typedef char *LPSTR;
typedef struct _DEBUG_EVENT *LPDEBUG_EVENT;
"""

ffi = cffi.FFI()
ffi.cdef(WIN32_TYPES)
ffi.cdef(WIN32_POINTERS + DEBUG_POINTERS)
ffi.cdef(CONTEXT_NATIVE + WINNT_STRUCTS)
ffi.cdef(DEBUG_STRUCTS)
ffi.cdef(FUNCTIONS)

#: CreateFileW's failure value, (HANDLE)-1; compare with ``handle == INVALID_HANDLE_VALUE``.
INVALID_HANDLE_VALUE = ffi.cast("HANDLE", -1)


class Kernel32(Protocol):
    """The kernel32.dll functions :func:`load` makes callable."""

    def OpenProcess(self, dwDesiredAccess: int, bInheritHandle: int,
                    dwProcessId: int, /) -> Any: ...
    def CloseHandle(self, hObject: Any, /) -> int: ...
    def GetCurrentProcess(self) -> Any: ...
    def GetCurrentProcessId(self) -> int: ...
    def GetCurrentThreadId(self) -> int: ...
    def GetProcessId(self, Process: Any, /) -> int: ...
    def GetExitCodeProcess(self, hProcess: Any, lpExitCode: Any, /) -> int: ...
    def IsWow64Process(self, hProcess: Any, Wow64Process: Any, /) -> int: ...
    def QueryFullProcessImageNameW(self, hProcess: Any, dwFlags: int, lpExeName: Any,
                                   lpdwSize: Any, /) -> int: ...
    def CreateFileW(self, lpFileName: str, dwDesiredAccess: int, dwShareMode: int,
                    lpSecurityAttributes: Any, dwCreationDisposition: int,
                    dwFlagsAndAttributes: int, hTemplateFile: Any, /) -> Any: ...
    def DeleteFileW(self, lpFileName: str, /) -> int: ...
    def FlushFileBuffers(self, hFile: Any, /) -> int: ...
    def GetLastError(self) -> int: ...
    def SetLastError(self, dwErrCode: int, /) -> None: ...
    def WaitForDebugEvent(self, lpDebugEvent: Any, dwMilliseconds: int, /) -> int: ...
    def ContinueDebugEvent(self, dwProcessId: int, dwThreadId: int,
                           dwContinueStatus: int, /) -> int: ...
    def DebugActiveProcess(self, dwProcessId: int, /) -> int: ...
    def DebugActiveProcessStop(self, dwProcessId: int, /) -> int: ...
    def DebugSetProcessKillOnExit(self, KillOnExit: int, /) -> int: ...
    def CheckRemoteDebuggerPresent(self, hProcess: Any, pbDebuggerPresent: Any, /) -> int: ...
    def OpenThread(self, dwDesiredAccess: int, bInheritHandle: int, dwThreadId: int, /) -> Any: ...
    def GetThreadContext(self, hThread: Any, lpContext: Any, /) -> int: ...
    def WaitForSingleObject(self, hHandle: Any, dwMilliseconds: int, /) -> int: ...
    def ReadProcessMemory(self, hProcess: Any, lpBaseAddress: Any, lpBuffer: Any, nSize: int,
                          lpNumberOfBytesRead: Any, /) -> int: ...
    def K32EnumProcessModules(self, hProcess: Any, lphModule: Any, cb: int,
                              lpcbNeeded: Any, /) -> int: ...
    def K32GetModuleFileNameExW(self, hProcess: Any, hModule: Any, lpFilename: Any,
                                nSize: int, /) -> int: ...
    def K32GetModuleInformation(self, hProcess: Any, hModule: Any, lpmodinfo: Any,
                                cb: int, /) -> int: ...


class Ntdll(Protocol):
    """The ntdll.dll functions :func:`load_ntdll` makes callable (NTSTATUS results)."""

    def NtSuspendProcess(self, ProcessHandle: Any, /) -> int: ...
    def NtResumeProcess(self, ProcessHandle: Any, /) -> int: ...


@functools.cache
def load() -> Kernel32:
    """Open kernel32.dll (Windows only, once per process)."""
    if sys.platform != "win32":
        raise UnsupportedError(
            "kernel32.dll is a Windows library; on Linux minidumpkit uses ptrace and /proc")
    return cast(Kernel32, ffi.dlopen("kernel32.dll"))


@functools.cache
def load_ntdll() -> Ntdll:
    """Open ntdll.dll (Windows only, once per process)."""
    if sys.platform != "win32":
        raise UnsupportedError("ntdll.dll is a Windows library")
    return cast(Ntdll, ffi.dlopen("ntdll.dll"))


def new_context() -> tuple[Any, Any]:
    """A zeroed CONTEXT at a 16-byte boundary (GetThreadContext fails with
    ERROR_NOACCESS on a misaligned one on x64; cffi's own allocations are only
    8-aligned): (owner, ``CONTEXT *``). Keep ``owner`` alive as long as the pointer."""
    size = ffi.sizeof("CONTEXT")
    owner = ffi.new("char[]", size + 16)
    address = int(ffi.cast("uintptr_t", owner))
    return owner, ffi.cast("CONTEXT *", (address + 15) & ~15)
