"""The exception hierarchy of minidumpkit.

Every exception minidumpkit raises on purpose derives from :class:`MinidumpError`,
and each also derives from the builtin a caller would naturally catch::

    MinidumpError
    ├── MinidumpFormatError (ValueError)      a file is not a valid minidump
    ├── MemoryNotCaptured (LookupError)       a read asks for bytes the dump does not hold
    ├── UnsupportedError (NotImplementedError) not possible on this platform / flag not honoured
    ├── DumpCancelled                         a callback asked to cancel the dump
    ├── InvalidTargetError (ValueError)       the pid names something that cannot be dumped
    ├── ProcessError (OSError)                the OS refused; carries errno / winerror and pid
    │   ├── ProcessNotFound (ProcessLookupError)
    │   └── AccessDenied (PermissionError)
    │       └── AlreadyTraced                 another debugger/tracer holds the target
    └── PathError (OSError)                   a path not written to / read from; filename = it
        ├── OutputExistsError (FileExistsError)      something is (or appeared) at the output path
        ├── PathIsADirectoryError (IsADirectoryError)
        ├── PathNotADirectoryError (NotADirectoryError)
        ├── PathNotFoundError (FileNotFoundError)    e.g. the output's directory does not exist
        ├── PathPermissionError (PermissionError)
        └── NotARegularFileError                     the reader's input is a FIFO, device, ...
"""

from __future__ import annotations

import errno as _errno
import os

__all__ = [
    "AccessDenied",
    "AlreadyTraced",
    "DumpCancelled",
    "InvalidTargetError",
    "MemoryNotCaptured",
    "MinidumpError",
    "MinidumpFormatError",
    "NotARegularFileError",
    "OutputExistsError",
    "PathError",
    "PathIsADirectoryError",
    "PathNotADirectoryError",
    "PathNotFoundError",
    "PathPermissionError",
    "ProcessError",
    "ProcessNotFound",
    "UnsupportedError",
]


class MinidumpError(Exception):
    """Root of every exception minidumpkit raises on purpose."""


class MinidumpFormatError(MinidumpError, ValueError):
    """The input is not a well-formed minidump.

    ``offset`` is the file offset where the problem was found and ``stream_type``
    the stream being parsed, when known.
    """

    def __init__(self, message: str, *, offset: int | None = None,
                 stream_type: int | None = None) -> None:
        where = []
        if stream_type is not None:
            where.append(f"stream 0x{stream_type:x}")
        if offset is not None:
            where.append(f"offset 0x{offset:x}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)
        self.offset = offset
        self.stream_type = stream_type

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_rebuild_format_error, (self.args[0], self.offset, self.stream_type))


def _rebuild_format_error(msg: str, offset: int | None, stream_type: int | None) -> MinidumpFormatError:
    err = MinidumpFormatError(msg)
    err.offset, err.stream_type = offset, stream_type
    return err


class MemoryNotCaptured(MinidumpError, LookupError):
    """The dump holds no bytes for (part of) the requested address range."""

    def __init__(self, address: int, size: int) -> None:
        super().__init__(f"the dump holds no memory for 0x{address:x}..0x{address + size:x}")
        self.address = address
        self.size = size

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.address, self.size))


class UnsupportedError(MinidumpError, NotImplementedError):
    """A feature cannot work here; the message names what is missing."""


class DumpCancelled(MinidumpError):
    """A callback's ``cancel()`` returned True; no file was left behind."""


class InvalidTargetError(MinidumpError, ValueError):
    """The target exists but cannot be dumped (a zombie, a kernel thread, ...)."""

    def __init__(self, message: str, *, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


class ProcessError(MinidumpError, OSError):
    """The operating system refused an operation on the target.

    Behaves as an :class:`OSError`: ``errno`` (POSIX) or ``winerror`` (Windows) is set,
    ``strerror`` holds a message that says what to do. ``pid`` names the target;
    ``hresult`` the raw HRESULT when Windows reported the failure as one.
    """

    hresult: int | None = None

    def __init__(self, code: int, message: str, *, pid: int | None = None,
                 winerror: int | None = None, hresult: int | None = None) -> None:
        if winerror is not None:
            super().__init__(code, message, None, winerror)
        else:
            super().__init__(code, message)
        self.pid = pid
        self.hresult = hresult

    def __str__(self) -> str:
        name = _errno.errorcode.get(self.errno or 0)
        winerror = getattr(self, "winerror", None)  # OSError has it on Windows only
        if winerror is not None:
            return f"[WinError {winerror}] {self.strerror}"
        return f"[{name or self.errno}] {self.strerror}"

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # winerror is only an attribute on Windows; args[3] holds it everywhere
        winerror = getattr(self, "winerror", self.args[3] if len(self.args) > 3 else None)
        return (_rebuild_process_error,
                (type(self), self.errno, self.strerror, self.pid, winerror, self.hresult))

    @classmethod
    def from_errno(cls, err: int, message: str, *, pid: int | None = None) -> ProcessError:
        """The subclass matching ``err`` (ESRCH → ProcessNotFound, EPERM/EACCES → AccessDenied)."""
        sub: type[ProcessError] = cls
        if cls is ProcessError:
            if err == _errno.ESRCH:
                sub = ProcessNotFound
            elif err in (_errno.EPERM, _errno.EACCES):
                sub = AccessDenied
        return sub(err, f"{message}: {os.strerror(err)}" if message else os.strerror(err), pid=pid)


def _rebuild_process_error(cls: type[ProcessError], code: int, msg: str, pid: int | None,
                           winerror: int | None, hresult: int | None = None) -> ProcessError:
    return cls(code, msg, pid=pid, winerror=winerror, hresult=hresult)


class ProcessNotFound(ProcessError, ProcessLookupError):
    """No such process (or it exited while we worked on it)."""


class AccessDenied(ProcessError, PermissionError):
    """Not allowed to read or trace the target."""


class AlreadyTraced(AccessDenied):
    """Another tracer (a debugger, strace, a running dump) is attached to the target."""


class PathError(MinidumpError, OSError):
    """A path minidumpkit will not write to (or read from), found before anything was
    done. ``filename`` is the path exactly as the caller gave it (never a temporary
    name of ours); ``errno`` the matching POSIX code; ``str()`` one line naming it."""

    def __init__(self, code: int, message: str, path: str) -> None:
        super().__init__(code, message, path)

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.errno, self.strerror, self.filename))


class OutputExistsError(PathError, FileExistsError):
    """Something is at the output path that may not be replaced (anything but a regular
    file, or a regular file without overwrite), or something appeared there while the
    dump was written: it was left as it was and the dump discarded."""


class PathIsADirectoryError(PathError, IsADirectoryError):
    """The path names a directory."""


class PathNotADirectoryError(PathError, NotADirectoryError):
    """A component of the path that should be a directory is not one."""


class PathNotFoundError(PathError, FileNotFoundError):
    """The directory that should hold the output (or the input file) does not exist."""


class PathPermissionError(PathError, PermissionError):
    """This user may not create the output there, or not replace the file there."""


class NotARegularFileError(PathError):
    """The input is not a regular file (a FIFO, a device, a socket): reading it could
    block for ever or have side effects, so it is refused."""
