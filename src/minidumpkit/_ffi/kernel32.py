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
Explorer's Suspend calls; Wine implements them).
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Protocol, cast

import cffi  # type: ignore[import-untyped,unused-ignore]  # cffi ships no types

from ..errors import UnsupportedError
from ._win32 import WIN32_POINTERS, WIN32_TYPES

__all__ = ["Kernel32", "Ntdll", "ffi", "load", "load_ntdll"]

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
"""

ffi = cffi.FFI()
ffi.cdef(WIN32_TYPES)
ffi.cdef(WIN32_POINTERS)
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
