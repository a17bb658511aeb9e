"""Windows error conventions mapped onto minidumpkit's exceptions, with injected codes.

The codes are the ones Windows documents or was seen to return: MiniDumpWriteDump
leaves an HRESULT as last error (0x8007xxxx wraps a Win32 code), cancelling gives
HRESULT_FROM_WIN32(ERROR_CANCELLED), Pss* functions return Win32 codes, and
OpenProcess reports an unknown pid as ERROR_INVALID_PARAMETER. Expected errno
values are CPython's own winerror->errno mapping (PC/errmap.h), i.e. what an
OSError with that winerror carries on Windows.
"""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from minidumpkit._ffi import _winerror as w
from minidumpkit._ffi import pss
from minidumpkit.errors import (
    AccessDenied,
    DumpCancelled,
    MinidumpError,
    ProcessError,
    ProcessNotFound,
    UnsupportedError,
)

HRESULT_FROM_WIN32_ACCESS_DENIED = 0x80070005
HRESULT_FROM_WIN32_CANCELLED = 0x800704C7
HRESULT_PARTIAL_COPY = 0x8007012B
HRESULT_NOACCESS = 0x800703E6  # what a wrong pack(4) layout produces (windows-abi.md §1)


def last(code: int) -> Callable[[], int]:
    """A last-error getter that returns what Windows would have left."""
    return lambda: code


def raised(code: int, func: str = "MiniDumpWriteDump", **kw: object) -> MinidumpError:
    with pytest.raises(MinidumpError) as info:
        w.check_bool_hresult(0, func, get_last_error=last(code), **kw)  # type: ignore[arg-type]
    return info.value


def test_hresult_helpers() -> None:
    assert w.hresult_from_win32(w.ERROR_ACCESS_DENIED) == w.E_ACCESSDENIED == HRESULT_FROM_WIN32_ACCESS_DENIED
    assert w.hresult_from_win32(w.ERROR_CANCELLED) == HRESULT_FROM_WIN32_CANCELLED
    assert w.hresult_from_win32(0) == 0
    assert w.hresult_from_win32(w.E_FAIL) == w.E_FAIL  # already an HRESULT
    assert w.win32_from_hresult(HRESULT_PARTIAL_COPY) == w.ERROR_PARTIAL_COPY
    assert w.win32_from_hresult(-2147024891) == w.ERROR_ACCESS_DENIED  # signed, as cffi returns it
    assert w.win32_from_hresult(w.E_FAIL) is None  # FACILITY_NULL
    assert w.win32_from_hresult(5) is None  # a plain Win32 code is not an HRESULT


def test_success_raises_nothing_and_reads_no_last_error() -> None:
    def must_not_be_called() -> int:
        raise AssertionError("the last error is garbage after a success")

    w.check_bool_hresult(1, "MiniDumpWriteDump", get_last_error=must_not_be_called)
    assert w.check_win32(w.ERROR_SUCCESS, "PssCaptureSnapshot") == 0


@pytest.mark.parametrize("code", [w.E_ACCESSDENIED, HRESULT_FROM_WIN32_ACCESS_DENIED,
                                  w.ERROR_ACCESS_DENIED, -2147024891])
def test_access_denied_in_every_spelling(code: int) -> None:
    exc = raised(code, pid=1234)
    assert type(exc) is AccessDenied
    assert isinstance(exc, PermissionError) and isinstance(exc, ProcessError)
    assert exc.winerror == w.ERROR_ACCESS_DENIED  # type: ignore[attr-defined]
    assert exc.errno == errno.EACCES
    assert exc.pid == 1234
    expected_hresult = None if code == w.ERROR_ACCESS_DENIED else HRESULT_FROM_WIN32_ACCESS_DENIED
    assert exc.hresult == expected_hresult  # type: ignore[attr-defined]
    text = str(exc)
    assert "MiniDumpWriteDump failed for pid 1234" in text and "ERROR_ACCESS_DENIED" in text
    assert "administrator" in text  # says what to do


@pytest.mark.parametrize("code", [w.ERROR_CANCELLED, HRESULT_FROM_WIN32_CANCELLED])
def test_cancel_becomes_dump_cancelled(code: int) -> None:
    exc = raised(code)
    assert type(exc) is DumpCancelled
    assert not isinstance(exc, OSError)
    assert exc.winerror == w.ERROR_CANCELLED  # type: ignore[attr-defined]
    assert exc.hresult == (None if code == w.ERROR_CANCELLED else HRESULT_FROM_WIN32_CANCELLED)  # type: ignore[attr-defined]


def test_invalid_handle_is_a_process_error_with_ebadf() -> None:
    exc = raised(w.hresult_from_win32(w.ERROR_INVALID_HANDLE))
    assert type(exc) is ProcessError
    assert (exc.errno, exc.winerror) == (errno.EBADF, w.ERROR_INVALID_HANDLE)  # type: ignore[attr-defined]
    assert "ERROR_INVALID_HANDLE" in str(exc)


def test_invalid_parameter_means_no_such_process_only_where_the_call_says_so() -> None:
    generic = raised(w.ERROR_INVALID_PARAMETER)
    assert type(generic) is ProcessError and generic.errno == errno.EINVAL
    gone = raised(w.ERROR_INVALID_PARAMETER, "OpenProcess", pid=999999,
                  not_found=(w.ERROR_INVALID_PARAMETER,))
    assert type(gone) is ProcessNotFound and isinstance(gone, ProcessLookupError)
    assert gone.winerror == w.ERROR_INVALID_PARAMETER  # type: ignore[attr-defined]
    assert gone.errno == errno.EINVAL  # what CPython on Windows computes from winerror 87
    assert "no such process" in str(gone) and "999999" in str(gone)


def test_unknown_hresult_keeps_it() -> None:
    exc = raised(w.E_FAIL)
    assert type(exc) is ProcessError
    assert exc.hresult == w.E_FAIL  # type: ignore[attr-defined]
    # winerror as CPython on Windows can hold it (a C long): the signed 32-bit value
    assert exc.winerror == w.E_FAIL - (1 << 32)  # type: ignore[attr-defined]
    assert exc.errno == errno.EINVAL
    assert "HRESULT 0x80004005" in str(exc)


def test_partial_copy_and_noaccess_say_what_happened() -> None:
    partial = raised(HRESULT_PARTIAL_COPY, pid=7)
    assert partial.winerror == w.ERROR_PARTIAL_COPY  # type: ignore[attr-defined]
    assert "snapshot" in str(partial)
    noaccess = raised(HRESULT_NOACCESS)
    assert noaccess.winerror == w.ERROR_NOACCESS  # type: ignore[attr-defined]
    assert "minidumpkit bug" in str(noaccess)


@pytest.mark.parametrize("code", [w.ERROR_NOT_SUPPORTED, w.ERROR_CALL_NOT_IMPLEMENTED])
def test_pss_not_supported_is_unsupported(code: int) -> None:
    with pytest.raises(UnsupportedError) as info:
        w.check_win32(code, "PssCaptureSnapshot", pid=42)
    assert info.value.winerror == code  # type: ignore[attr-defined]
    assert info.value.hresult is None  # type: ignore[attr-defined]
    assert "PssCaptureSnapshot" in str(info.value) and "pid 42" in str(info.value)


def test_pss_codes_map_like_last_errors() -> None:
    with pytest.raises(AccessDenied) as denied:
        w.check_win32(w.ERROR_ACCESS_DENIED, "PssCaptureSnapshot", pid=4)
    assert denied.value.hresult is None  # type: ignore[attr-defined]
    with pytest.raises(ProcessError) as memory:
        w.check_win32(w.ERROR_NOT_ENOUGH_MEMORY, "PssCaptureSnapshot")
    assert memory.value.errno == errno.ENOMEM


def test_walk_end_is_allowed_only_when_asked() -> None:
    assert w.check_win32(w.ERROR_NO_MORE_ITEMS, "PssWalkSnapshot",
                         allow=(w.ERROR_NO_MORE_ITEMS,)) == w.ERROR_NO_MORE_ITEMS
    with pytest.raises(ProcessError):
        w.check_win32(w.ERROR_NO_MORE_ITEMS, "PssWalkSnapshot")


def test_filename_appears_in_the_message() -> None:
    exc = raised(32, "CreateFileW", filename="C:\\out.dmp")  # ERROR_SHARING_VIOLATION
    assert type(exc) is AccessDenied  # CPython maps 32 to EACCES
    assert "'C:\\\\out.dmp'" in str(exc)


ERRMAP = json.loads((Path(__file__).parent / "data" / "cpython-errmap.json").read_text())


def errmap_errno(code: int) -> int:
    """PC/errmap.h's winerror_to_errno, evaluated from the data file (tests/data)."""
    code &= 0xFFFFFFFF
    if (code & 0xFFFF0000) == 0x80070000:
        code &= 0xFFFF
    low, high = ERRMAP["winsock"]["range"]
    if low <= code < high:
        return code - 10000 if code in ERRMAP["winsock"]["minus_10000"] else code
    values = ERRMAP["errno_values_msvc"]
    for name, codes in ERRMAP["cases"].items():
        if code in codes:
            return int(values[name])
    return int(values[ERRMAP["default"]])


ALL_CODES = [*range(0, 0x10000), *(0x80070000 | c for c in range(0, 0x10000, 7)),
             0x80004005, 0x80004001, 0x8007FFFF, 0xC0000005, -2147024891, -2147467259]


def test_errno_table_equals_cpython_errmap() -> None:
    """winerror_to_errno equals CPython's PC/errmap.h (tests/data/cpython-errmap.json) for
    every 16-bit code, FACILITY_WIN32 HRESULTs (unsigned and signed) and other HRESULTs:
    the Microsoft C runtime's errno numbers, e.g. WAIT_TIMEOUT (258) -> 138, not
    errno.ETIMEDOUT (110 on Linux, WSAETIMEDOUT 10060 in Windows CPython's errno module)."""
    bad = [(c, w.winerror_to_errno(c), errmap_errno(c)) for c in ALL_CODES
           if w.winerror_to_errno(c) != errmap_errno(c)]
    assert bad == []
    assert (w.winerror_to_errno(258), w.winerror_to_errno(145), w.winerror_to_errno(1113)) == (
        138, 41, 42)
    assert (w.winerror_to_errno(10060), w.winerror_to_errno(10013)) == (10060, 13)


@pytest.mark.skipif(sys.platform != "win32", reason="compares with Windows CPython's OSError")
def test_errno_table_equals_windows_cpython() -> None:  # pragma: no cover - Windows only
    """On Windows: the errno CPython itself computes from winerror, for every code."""
    codes = [c if c < 0x80000000 else c - (1 << 32) for c in ALL_CODES if c >= 0]
    bad = [(c, w.winerror_to_errno(c), OSError(None, "x", None, c).errno) for c in codes
           if w.winerror_to_errno(c) != OSError(None, "x", None, c).errno]
    assert bad == []


def test_last_error_reads_cffis_saved_last_error() -> None:
    """The default getter reads cffi's saved GetLastError: off Windows cffi has no
    getwinerror (AttributeError); on Windows it is the last error of the latest cffi call."""
    if sys.platform != "win32":
        with pytest.raises(AttributeError):
            w.last_error()
        return
    from minidumpkit._ffi import kernel32  # pragma: no cover - Windows only

    lib = kernel32.load()
    lib.SetLastError(1234)
    assert w.last_error() == 1234
    assert not lib.DeleteFileW("C:\\minidumpkit-no-such-dir\\x.dmp")
    assert w.last_error() == 3  # ERROR_PATH_NOT_FOUND


class _Lib:
    """A stand-in for kernel32 on a Windows without the Process Snapshotting API."""

    def PssCaptureSnapshot(self, *args: object) -> int:
        return 0


@pytest.mark.parametrize("name", ["PssFreeSnapshot", "PssQuerySnapshot", "PssWalkSnapshot",
                                  "PssDuplicateSnapshot", "PssWalkMarkerCreate"])
def test_absent_pss_symbol_raises_unsupported_naming_it(name: pss.PssFunctionName) -> None:
    with pytest.raises(UnsupportedError, match=name) as info:
        pss.function(name, _Lib())
    assert "Windows 8.1" in str(info.value) and "Wine" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_present_pss_symbol_is_returned() -> None:
    lib = _Lib()
    assert pss.function("PssCaptureSnapshot", lib)() == 0
