"""The reference writer: MiniDumpWriteDump called directly through ctypes.

No minidumpkit here (not even imported): a dump written by this module is what
dbghelp writes for a target when nobody stands between the caller and the DLL.
The Wine suite compares every minidumpkit dump with one of these.
"""

from __future__ import annotations

import ctypes
import os
from ctypes import wintypes

PROCESS_QUERY_INFORMATION = 0x0400
PROCESS_VM_READ = 0x0010
PROCESS_DUP_HANDLE = 0x0040
GENERIC_READ_WRITE = 0x80000000 | 0x40000000
CREATE_ALWAYS = 2
INVALID_HANDLE_VALUE = ctypes.c_void_p(-1).value


def _libraries() -> tuple[ctypes.WinDLL, ctypes.WinDLL]:
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    system_root = os.environ.get("SystemRoot", r"C:\Windows")
    dbghelp = ctypes.WinDLL(os.path.join(system_root, "System32", "dbghelp.dll"),
                            use_last_error=True)
    kernel32.OpenProcess.restype = wintypes.HANDLE
    kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
    kernel32.CreateFileW.restype = wintypes.HANDLE
    kernel32.CreateFileW.argtypes = (wintypes.LPCWSTR, wintypes.DWORD, wintypes.DWORD,
                                     ctypes.c_void_p, wintypes.DWORD, wintypes.DWORD,
                                     wintypes.HANDLE)
    kernel32.CloseHandle.argtypes = (wintypes.HANDLE,)
    dbghelp.MiniDumpWriteDump.restype = wintypes.BOOL
    dbghelp.MiniDumpWriteDump.argtypes = (wintypes.HANDLE, wintypes.DWORD, wintypes.HANDLE,
                                          wintypes.DWORD, ctypes.c_void_p, ctypes.c_void_p,
                                          ctypes.c_void_p)
    return kernel32, dbghelp


def write(pid: int, path: str, dump_type: int) -> None:
    """MiniDumpWriteDump(OpenProcess(pid), pid, CreateFileW(path), dump_type, NULL, NULL, NULL)."""
    kernel32, dbghelp = _libraries()
    process = kernel32.OpenProcess(
        PROCESS_QUERY_INFORMATION | PROCESS_VM_READ | PROCESS_DUP_HANDLE, False, pid)
    if not process:
        raise ctypes.WinError(ctypes.get_last_error())
    try:
        handle = kernel32.CreateFileW(path, GENERIC_READ_WRITE, 0, None, CREATE_ALWAYS, 0, None)
        if handle == INVALID_HANDLE_VALUE or handle is None:
            raise ctypes.WinError(ctypes.get_last_error())
        try:
            if not dbghelp.MiniDumpWriteDump(process, pid, handle, dump_type, None, None, None):
                error = ctypes.get_last_error()
                raise OSError(None, f"MiniDumpWriteDump failed: 0x{error & 0xFFFFFFFF:08x}",
                              None, error)
        finally:
            kernel32.CloseHandle(handle)
    finally:
        kernel32.CloseHandle(process)


def dbghelp_identity() -> dict[str, str]:
    """Which dbghelp.dll this process loads, and its file version."""
    kernel32, dbghelp = _libraries()
    name = ctypes.create_unicode_buffer(1024)
    kernel32.GetModuleFileNameW(ctypes.c_void_p(dbghelp._handle), name, 1024)
    version = ctypes.WinDLL("version")
    size = version.GetFileVersionInfoSizeW(name.value, None)
    info = ctypes.create_string_buffer(size)
    version.GetFileVersionInfoW(name.value, 0, size, info)
    fixed = ctypes.c_void_p()
    length = wintypes.UINT()
    version.VerQueryValueW(info, "\\", ctypes.byref(fixed), ctypes.byref(length))
    ms, ls = ctypes.cast(fixed, ctypes.POINTER(wintypes.DWORD))[2:4]
    return {"path": name.value,
            "version": f"{ms >> 16}.{ms & 0xFFFF}.{ls >> 16}.{ls & 0xFFFF}"}
