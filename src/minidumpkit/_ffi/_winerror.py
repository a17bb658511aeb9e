"""The two Windows error conventions at the FFI boundary, turned into minidumpkit errors.

* BOOL (or HANDLE) results whose failure is told by the thread's last error —
  MiniDumpWriteDump, whose last error is usually an HRESULT (0x8007xxxx wraps a
  Win32 code), and the kernel32 functions, whose last error is a plain Win32
  code: :func:`check_bool_hresult`. The return value is tested first; the last
  error is read only after a failure (after a success dbghelp leaves garbage
  there).
* Pss* functions, which return a Win32 error code: :func:`check_win32`.

Both raise through :func:`winerror_exception`:

=============================================== ===================================
code (Win32, or the Win32 code inside an HRESULT) exception
=============================================== ===================================
ERROR_CANCELLED (a callback cancelled)           DumpCancelled
ERROR_NOT_SUPPORTED, ERROR_CALL_NOT_IMPLEMENTED  UnsupportedError
a code in ``not_found`` (OpenProcess: 87)        ProcessNotFound
codes CPython maps to EACCES (5, 32, 33, ...)    AccessDenied
anything else                                    ProcessError
=============================================== ===================================

``winerror`` is the Win32 code (or the HRESULT, as a signed 32-bit int, when it
wraps none: that is what fits CPython's ``OSError(..., winerror)`` on Windows),
``hresult`` the unsigned HRESULT when the error came as one, else None.
``errno`` follows CPython's own winerror→errno table (``PC/errmap.h``), so the
values are the same on Linux, where the tests run, as on Windows, where CPython
recomputes errno from winerror anyway.

Nothing here imports cffi unless :func:`last_error` is actually called (on
Windows, after a failed call).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection

from ..errors import (
    AccessDenied,
    DumpCancelled,
    MinidumpError,
    ProcessError,
    ProcessNotFound,
    UnsupportedError,
)

__all__ = [
    "ERROR_ACCESS_DENIED",
    "ERROR_CANCELLED",
    "ERROR_INVALID_PARAMETER",
    "ERROR_NOT_SUPPORTED",
    "ERROR_SUCCESS",
    "check_bool_hresult",
    "check_win32",
    "hresult_from_win32",
    "last_error",
    "win32_from_hresult",
    "winerror_exception",
    "winerror_to_errno",
]

# winerror.h
ERROR_SUCCESS = 0
ERROR_FILE_NOT_FOUND = 2
ERROR_ACCESS_DENIED = 5
ERROR_INVALID_HANDLE = 6
ERROR_NOT_ENOUGH_MEMORY = 8
ERROR_NOT_SUPPORTED = 50
ERROR_INVALID_PARAMETER = 87
ERROR_CALL_NOT_IMPLEMENTED = 120
ERROR_INSUFFICIENT_BUFFER = 122
ERROR_NO_MORE_ITEMS = 259  # PssWalkSnapshot: the walk is over (not a failure)
ERROR_PARTIAL_COPY = 299
ERROR_NOACCESS = 998
ERROR_CANCELLED = 1223

FACILITY_WIN32 = 7
E_ACCESSDENIED = 0x80070005  # = HRESULT_FROM_WIN32(ERROR_ACCESS_DENIED)
E_FAIL = 0x80004005
E_NOTIMPL = 0x80004001

_NAMES = {
    ERROR_FILE_NOT_FOUND: "ERROR_FILE_NOT_FOUND",
    ERROR_ACCESS_DENIED: "ERROR_ACCESS_DENIED",
    ERROR_INVALID_HANDLE: "ERROR_INVALID_HANDLE",
    ERROR_NOT_ENOUGH_MEMORY: "ERROR_NOT_ENOUGH_MEMORY",
    ERROR_NOT_SUPPORTED: "ERROR_NOT_SUPPORTED",
    ERROR_INVALID_PARAMETER: "ERROR_INVALID_PARAMETER",
    ERROR_CALL_NOT_IMPLEMENTED: "ERROR_CALL_NOT_IMPLEMENTED",
    ERROR_INSUFFICIENT_BUFFER: "ERROR_INSUFFICIENT_BUFFER",
    ERROR_NO_MORE_ITEMS: "ERROR_NO_MORE_ITEMS",
    ERROR_PARTIAL_COPY: "ERROR_PARTIAL_COPY",
    ERROR_NOACCESS: "ERROR_NOACCESS",
    ERROR_CANCELLED: "ERROR_CANCELLED",
}

# What to do about the common failures; the message names the call and the code.
_ADVICE = {
    ERROR_ACCESS_DENIED: (
        "run as the target's user or as an administrator (SeDebugPrivilege); "
        "protected processes (PPL) and some services cannot be opened at all"),
    ERROR_INVALID_HANDLE: (
        "a handle passed to the call is closed or lacks the needed access rights"),
    ERROR_INVALID_PARAMETER: (
        "the process may have exited, or an argument was rejected"),
    ERROR_PARTIAL_COPY: (
        "memory of the target changed or vanished while it was read (did it exit?); "
        "retry, or dump from a snapshot (PssCaptureFlags.VA_CLONE)"),
    ERROR_NOACCESS: (
        "a structure passed to the call does not match the DLL's layout; "
        "this is a minidumpkit bug, please report it"),
    ERROR_NOT_ENOUGH_MEMORY: "free memory or dump less (a smaller MiniDumpType)",
}

# errno values of the Microsoft C runtime (ucrt errno.h), which is what Windows
# CPython's errmap.h returns. Not the errno module's: on Linux ENOTEMPTY, EILSEQ and
# ETIMEDOUT differ (39, 84, 110), and on Windows errno.ETIMEDOUT is WSAETIMEDOUT
# (10060) while OSError(None, msg, None, 258).errno is the CRT's 138.
_CRT_ENOENT = 2
_CRT_E2BIG = 7
_CRT_ENOEXEC = 8
_CRT_EBADF = 9
_CRT_ECHILD = 10
_CRT_EAGAIN = 11
_CRT_ENOMEM = 12
_CRT_EACCES = 13
_CRT_EEXIST = 17
_CRT_EXDEV = 18
_CRT_ENOTDIR = 20
_CRT_EINVAL = 22
_CRT_EMFILE = 24
_CRT_ENOSPC = 28
_CRT_EPIPE = 32
_CRT_ENOTEMPTY = 41
_CRT_EILSEQ = 42
_CRT_ETIMEDOUT = 138

# CPython's PC/errmap.h (winerror_to_errno), as data: CRT errno -> Win32 codes.
# Codes not listed (outside the Winsock range) map to EINVAL.
_ERRNO_OF: dict[int, tuple[int, ...]] = {
    _CRT_ENOENT: (2, 3, 15, 18, 53, 67, 161, 206),
    _CRT_E2BIG: (10,),
    _CRT_ENOEXEC: (11, *range(188, 203)),
    _CRT_EBADF: (6, 114, 130),
    _CRT_ECHILD: (128, 129),
    _CRT_EAGAIN: (89, 164, 215),
    _CRT_ENOMEM: (7, 8, 9, 1816),
    _CRT_EACCES: (5, 16, *range(19, 37), 65, 82, 83, 108, 132, 158, 167),
    _CRT_EEXIST: (80, 183),
    _CRT_EXDEV: (17,),
    _CRT_ENOTDIR: (267,),
    _CRT_EMFILE: (4,),
    _CRT_ENOSPC: (112,),
    _CRT_EPIPE: (109, 232),
    _CRT_ENOTEMPTY: (145,),
    _CRT_EILSEQ: (1113,),
    _CRT_ETIMEDOUT: (258,),
}
_WINERROR_TO_ERRNO = {code: err for err, codes in _ERRNO_OF.items() for code in codes}
# Winsock codes (10000-11999) are errno values themselves, except the six Winsock
# restates from the C runtime (WSAEINTR, WSAEBADF, WSAEACCES, WSAEFAULT, WSAEINVAL,
# WSAEMFILE), which map to the CRT's number.
_WINSOCK = range(10000, 12000)
_WINSOCK_CRT = frozenset({10004, 10009, 10013, 10014, 10022, 10024})


def winerror_to_errno(code: int) -> int:
    """The errno Windows CPython gives an OSError with this winerror (PC/errmap.h):
    a Microsoft C runtime value, EINVAL (22) if unlisted."""
    code &= 0xFFFFFFFF  # a negative (signed HRESULT) winerror, as C sees it
    if (code & 0xFFFF0000) == 0x80070000:
        code &= 0xFFFF
    if code in _WINSOCK:
        return code - 10000 if code in _WINSOCK_CRT else code
    return _WINERROR_TO_ERRNO.get(code, _CRT_EINVAL)


def hresult_from_win32(code: int) -> int:
    """HRESULT_FROM_WIN32: a Win32 code wrapped as an unsigned 32-bit HRESULT."""
    code &= 0xFFFFFFFF
    if code == 0 or code & 0x80000000:
        return code
    return (code & 0xFFFF) | (FACILITY_WIN32 << 16) | 0x80000000


def win32_from_hresult(hresult: int) -> int | None:
    """The Win32 code inside a failure HRESULT of FACILITY_WIN32, else None."""
    hresult &= 0xFFFFFFFF
    if hresult & 0x80000000 and (hresult >> 16) & 0x1FFF == FACILITY_WIN32:
        return hresult & 0xFFFF
    return None


def last_error() -> int:
    """The calling thread's last error as saved by cffi after its latest call.

    cffi stores GetLastError() per thread right after each foreign call, so this
    is the failing call's value as long as no other cffi call ran in between.
    ``ffi.getwinerror`` exists only on Windows, so this only works there.
    """
    import cffi  # type: ignore[import-untyped,unused-ignore]

    code, _message = cffi.FFI().getwinerror()
    return int(code) & 0xFFFFFFFF


def _system_message(code: int) -> str:
    """Windows' own text for ``code`` (FormatMessage through cffi), "" elsewhere."""
    if sys.platform != "win32":
        return ""
    try:
        import cffi  # type: ignore[import-untyped,unused-ignore]

        return str(cffi.FFI().getwinerror(code)[1]).strip()
    except (AttributeError, OSError, ValueError, UnicodeError):  # a nicety; never hide the real error
        return ""


def winerror_exception(code: int, func: str, *, pid: int | None = None,
                       not_found: Collection[int] = (),
                       filename: str | None = None) -> MinidumpError:
    """The exception for ``func`` failing with ``code`` (a Win32 code or an HRESULT).

    ``not_found`` lists the Win32 codes that mean "no such process" for this
    call (OpenProcess reports an unknown pid as ERROR_INVALID_PARAMETER).
    """
    raw = code & 0xFFFFFFFF
    inner = win32_from_hresult(raw)
    if inner is not None:
        win32, hresult = inner, raw
    elif raw & 0x80000000:
        win32, hresult = None, raw  # an HRESULT that wraps no Win32 code (E_FAIL, ...)
    else:
        win32, hresult = raw, None
    # CPython on Windows passes winerror through a C long: keep it in 32 signed bits.
    winerror = win32 if win32 is not None else raw - (1 << 32)

    what = f"{func} failed"
    if pid is not None:
        what += f" for pid {pid}"
    if filename is not None:
        what += f" on {filename!r}"
    name = _NAMES.get(win32 if win32 is not None else -1, "")
    codes = ", ".join(p for p in (
        name or (f"Win32 error {win32}" if win32 is not None else ""),
        f"HRESULT 0x{hresult:08X}" if hresult is not None else "") if p)
    detail = _system_message(winerror)
    message = f"{what}: {codes}" + (f" ({detail})" if detail else "")
    advice = _ADVICE.get(win32 if win32 is not None else -1)
    if advice:
        message += f"; {advice}"

    exc: MinidumpError
    if win32 == ERROR_CANCELLED:
        exc = DumpCancelled(f"{what}: the dump was cancelled (a callback asked to stop)")
    elif win32 in (ERROR_NOT_SUPPORTED, ERROR_CALL_NOT_IMPLEMENTED):
        exc = UnsupportedError(f"{message}; this Windows (or Wine) does not support it")
    else:
        err = winerror_to_errno(winerror)
        cls: type[ProcessError]
        if win32 is not None and win32 in not_found:
            cls = ProcessNotFound
            message = f"{what}: no such process ({codes})"
        elif err == _CRT_EACCES:
            cls = AccessDenied
        else:
            cls = ProcessError
        exc = cls(err, message, pid=pid, winerror=winerror)
    # OSError has a winerror attribute only on Windows; DumpCancelled and
    # UnsupportedError have none. Set both facts on every platform.
    if getattr(exc, "winerror", None) is None:
        setattr(exc, "winerror", winerror)  # noqa: B010
    setattr(exc, "hresult", hresult)  # noqa: B010
    return exc


def check_bool_hresult(ok: object, func: str, *, pid: int | None = None,
                       get_last_error: Callable[[], int] = last_error,
                       not_found: Collection[int] = (),
                       filename: str | None = None) -> None:
    """Raise if ``ok`` is false (a FALSE BOOL or a NULL HANDLE); read the last error then.

    CreateFileW fails with INVALID_HANDLE_VALUE, not NULL: pass
    ``handle != kernel32.INVALID_HANDLE_VALUE`` for it.

    ``get_last_error`` is injectable: tests pass the codes Windows would leave;
    the default reads cffi's saved value (Windows only). Call this right after
    the foreign call, before any other cffi call on the same thread.
    """
    if ok:
        return
    raise winerror_exception(get_last_error(), func, pid=pid, not_found=not_found,
                             filename=filename)


def check_win32(code: int, func: str, *, pid: int | None = None,
                allow: Collection[int] = (), not_found: Collection[int] = ()) -> int:
    """Return ``code`` if it is ERROR_SUCCESS or listed in ``allow``; raise otherwise.

    For the Pss* functions, which return their Win32 error code and leave the
    last error alone. ``allow`` is for codes that end a loop rather than fail it
    (PssWalkSnapshot's ERROR_NO_MORE_ITEMS).
    """
    if code == ERROR_SUCCESS or code in allow:
        return code
    raise winerror_exception(code, func, pid=pid, not_found=not_found)
