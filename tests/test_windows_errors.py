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
from collections.abc import Callable

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


def test_errno_table_follows_cpython() -> None:
    """Spot checks against PC/errmap.h (CPython's winerror_to_errno)."""
    assert w.winerror_to_errno(2) == errno.ENOENT
    assert w.winerror_to_errno(5) == errno.EACCES
    assert w.winerror_to_errno(6) == errno.EBADF
    assert w.winerror_to_errno(8) == errno.ENOMEM
    assert w.winerror_to_errno(87) == errno.EINVAL
    assert w.winerror_to_errno(112) == errno.ENOSPC
    assert w.winerror_to_errno(183) == errno.EEXIST
    assert w.winerror_to_errno(0x80070005) == errno.EACCES  # FACILITY_WIN32 unwrapped
    assert w.winerror_to_errno(1223) == errno.EINVAL  # unlisted


def test_last_error_needs_windows() -> None:
    """The default getter reads cffi's saved GetLastError, which exists on Windows only."""
    with pytest.raises(AttributeError):
        w.last_error()


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
