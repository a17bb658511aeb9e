"""The exception hierarchy: builtin bases, pickling, and the errno mapping."""

from __future__ import annotations

import errno
import os
import pickle

import pytest

import minidumpkit
from minidumpkit.errors import (
    AccessDenied,
    AlreadyTraced,
    DumpCancelled,
    InvalidTargetError,
    MemoryNotCaptured,
    MinidumpError,
    MinidumpFormatError,
    NotARegularFileError,
    OutputExistsError,
    PathError,
    PathIsADirectoryError,
    PathNotADirectoryError,
    PathNotFoundError,
    PathPermissionError,
    ProcessError,
    ProcessNotFound,
    UnsupportedError,
)

BUILTIN_BASES = [
    (MinidumpFormatError, ValueError),
    (MemoryNotCaptured, LookupError),
    (UnsupportedError, NotImplementedError),
    (InvalidTargetError, ValueError),
    (ProcessError, OSError),
    (ProcessNotFound, ProcessLookupError),
    (AccessDenied, PermissionError),
    (AlreadyTraced, PermissionError),
    (PathError, OSError),
    (OutputExistsError, FileExistsError),
    (PathIsADirectoryError, IsADirectoryError),
    (PathNotADirectoryError, NotADirectoryError),
    (PathNotFoundError, FileNotFoundError),
    (PathPermissionError, PermissionError),
    (NotARegularFileError, OSError),
]


@pytest.mark.parametrize("cls,builtin", BUILTIN_BASES, ids=lambda c: c.__name__)
def test_classes_derive_from_root_and_builtin(cls: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(cls, MinidumpError)
    assert issubclass(cls, builtin)


def test_hierarchy_shape() -> None:
    assert issubclass(ProcessNotFound, ProcessError)
    assert issubclass(AccessDenied, ProcessError)
    assert issubclass(AlreadyTraced, AccessDenied)
    assert issubclass(DumpCancelled, MinidumpError)
    assert not issubclass(DumpCancelled, OSError)
    assert not issubclass(MinidumpFormatError, OSError)


def test_public_names_are_exported() -> None:
    for cls in (MinidumpError, MinidumpFormatError, MemoryNotCaptured, UnsupportedError,
                DumpCancelled, InvalidTargetError, ProcessError, ProcessNotFound,
                AccessDenied, AlreadyTraced, PathError, OutputExistsError,
                PathIsADirectoryError, PathNotADirectoryError, PathNotFoundError,
                PathPermissionError, NotARegularFileError):
        assert getattr(minidumpkit, cls.__name__) is cls
        assert cls.__name__ in minidumpkit.__all__


def roundtrip(exc: BaseException) -> BaseException:
    return pickle.loads(pickle.dumps(exc))


def test_format_error_carries_offset_and_stream_and_pickles() -> None:
    err = MinidumpFormatError("thread list too short", offset=0x450, stream_type=3)
    assert err.offset == 0x450 and err.stream_type == 3
    assert "offset 0x450" in str(err) and "stream 0x3" in str(err)
    back = roundtrip(err)
    assert type(back) is MinidumpFormatError
    assert (back.offset, back.stream_type, str(back)) == (0x450, 3, str(err))  # type: ignore[attr-defined]
    bare = MinidumpFormatError("no context")
    assert bare.offset is None and str(bare) == "no context"
    assert str(roundtrip(bare)) == "no context"


def test_memory_not_captured_pickles() -> None:
    err = MemoryNotCaptured(0x7FFD0000, 64)
    assert (err.address, err.size) == (0x7FFD0000, 64)
    assert "0x7ffd0000" in str(err)
    back = roundtrip(err)
    assert type(back) is MemoryNotCaptured
    assert (back.address, back.size, str(back)) == (0x7FFD0000, 64, str(err))  # type: ignore[attr-defined]
    with pytest.raises(LookupError):
        raise err


@pytest.mark.parametrize("code,cls", [
    (errno.ESRCH, ProcessNotFound),
    (errno.EPERM, AccessDenied),
    (errno.EACCES, AccessDenied),
    (errno.EIO, ProcessError),
    (errno.ENOMEM, ProcessError),
])
def test_from_errno_picks_the_subclass(code: int, cls: type[ProcessError]) -> None:
    err = ProcessError.from_errno(code, "ptrace(PTRACE_SEIZE)", pid=4242)
    assert type(err) is cls
    assert err.errno == code and err.pid == 4242
    assert os.strerror(code) in str(err) and "ptrace(PTRACE_SEIZE)" in str(err)
    assert errno.errorcode[code] in str(err)
    back = roundtrip(err)
    assert type(back) is cls
    assert back.errno == code and back.pid == 4242 and str(back) == str(err)  # type: ignore[attr-defined]


def test_from_errno_on_a_subclass_keeps_it() -> None:
    err = AlreadyTraced.from_errno(errno.EPERM, "traced by pid 77", pid=1)
    assert type(err) is AlreadyTraced
    assert isinstance(err, PermissionError)


def test_process_error_with_winerror() -> None:
    err = AccessDenied(errno.EACCES, "OpenProcess failed: run as administrator", pid=4,
                       winerror=5)
    # OSError keeps winerror as its 4th argument everywhere (the attribute exists on Windows)
    assert getattr(err, "winerror", err.args[3]) == 5
    assert err.errno == errno.EACCES and err.pid == 4
    back = roundtrip(err)
    assert type(back) is AccessDenied and back.args == err.args and str(back) == str(err)


def test_os_error_semantics() -> None:
    err = ProcessNotFound(errno.ESRCH, "no process 999999", pid=999999)
    try:
        raise err
    except ProcessLookupError as caught:  # a caller catching the builtin sees ours
        assert caught.errno == errno.ESRCH and caught.strerror == "no process 999999"
    assert str(err) == "[ESRCH] no process 999999"


def test_simple_errors_pickle() -> None:
    for err in (UnsupportedError("PssCaptureSnapshot is not available"), DumpCancelled("stop")):
        back = roundtrip(err)
        assert type(back) is type(err) and str(back) == str(err)


def test_invalid_target_keeps_pid_through_pickle() -> None:
    err = InvalidTargetError("process 12 is a zombie", pid=12)
    assert err.pid == 12
    back = roundtrip(err)
    assert type(back) is InvalidTargetError and str(back) == str(err)
    assert back.pid == 12  # type: ignore[attr-defined]


@pytest.mark.parametrize("cls", [PathError, OutputExistsError, PathIsADirectoryError,
                                 PathNotADirectoryError, PathNotFoundError,
                                 PathPermissionError, NotARegularFileError])
def test_path_errors_name_the_path_and_pickle(cls: type[PathError]) -> None:
    err = cls(errno.EEXIST, "out.dmp is a FIFO: nothing was written", "out.dmp")
    assert issubclass(cls, PathError) and issubclass(cls, MinidumpError)
    assert err.filename == "out.dmp" and err.errno == errno.EEXIST
    assert str(err) == "out.dmp is a FIFO: nothing was written"
    back = roundtrip(err)
    assert type(back) is cls and back.filename == "out.dmp" and str(back) == str(err)
