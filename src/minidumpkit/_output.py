"""Output paths: where a dump may be written, and how it gets there.

Every writer goes through this module (``Dumper.write``, ``Snapshot.write``, the
Windows snapshot, the ``minidumpkit dump`` command):

* :func:`check` looks at the path before the target is touched and refuses, with one
  line naming the caller's path, anything it must not write: a directory, a missing or
  unwritable directory, a path under /proc or /sys, and whatever exists there and is
  not a regular file (device, FIFO, socket, symbolic link; a symlink is refused even
  when it points at a regular file). An existing regular file is replaced only with
  ``overwrite`` and only where ``access(path, W_OK)`` allows it, so root follows the
  same rule as ``open``.
* :func:`open_output` gives a new 0600 file that has no name while it is written
  (Linux O_TMPFILE; elsewhere a hidden ``.NAME.XXXX.partial`` file in the same
  directory) and publishes it only once the dump is complete and fsync'd. When
  nothing was at the path at the check, publishing never replaces anything
  (``linkat`` of the unnamed file, ``renameat2(RENAME_NOREPLACE)``, or on Windows
  ``os.rename``): whatever was planted there meanwhile stays and the dump is dropped.
  A file to overwrite is re-checked (``fstatat(AT_SYMLINK_NOFOLLOW)``: the same regular
  inode) just before the rename. On failure or interruption nothing is left.

This module imports no backend and no dumper: the layers above use it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, ParamSpec, TypeVar

from .errors import (
    MinidumpError,
    OutputExistsError,
    PathError,
    PathIsADirectoryError,
    PathNotADirectoryError,
    PathNotFoundError,
    PathPermissionError,
)

__all__ = ["Destination", "check", "destination", "open_output", "stream_destination"]

StrPath = str | os.PathLike[str]
P = ParamSpec("P")
T = TypeVar("T")

_WINDOWS = sys.platform == "win32"
_LINUX = sys.platform.startswith("linux")
# directories relative to an open directory fd (openat, linkat, renameat2, fstatat)
_AT_CALLS = os.name == "posix"
# pseudo file systems: a "file" there is a kernel interface, never a place for a dump
_PSEUDO_ROOTS = ("/proc", "/sys")
# how many default names (NAME-2.dmp, NAME-3.dmp, ...) are tried before giving up
_MAX_NUMBERED = 10_000

_BY_ERRNO: dict[int, type[PathError]] = {
    errno.ENOENT: PathNotFoundError,
    errno.ENOTDIR: PathNotADirectoryError,
    errno.EISDIR: PathIsADirectoryError,
    errno.EACCES: PathPermissionError,
    errno.EPERM: PathPermissionError,
    errno.EROFS: PathPermissionError,
    errno.EEXIST: OutputExistsError,
}

# linkat errors that mean "not this way" (a copy can still succeed), unlike ENOSPC & co.
_LINK_REFUSED = frozenset({errno.EPERM, errno.EACCES, errno.EXDEV, errno.EOPNOTSUPP,
                           errno.ENOENT, errno.EINVAL, errno.EMLINK})


def _show(path: str) -> str:
    """The path as the user wrote it, quoted only if printing it raw would break the
    one-line message (a newline or another control character in it)."""
    return repr(path) if any(ord(c) < 32 or c == "\x7f" for c in path) else path


# Failures of the storage under the output file (as opposed to the path's, the target's
# or ours): raised as plain OSErrors naming the user's path, not as PathErrors.
STORAGE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EROFS})


def _storage_error(code: int, path: str) -> OSError:
    return OSError(code, f"cannot write the dump {_show(path)}: {os.strerror(code)}", path)


def _error(code: int, message: str, path: str) -> PathError:
    return _BY_ERRNO.get(code, PathError)(code, message, path)


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


@dataclass
class Destination:
    """A checked output path (see :func:`check`); good for one dump.

    It is path-like (``os.fspath`` gives the caller's path), so it can be handed to
    :func:`minidumpkit.dump` in place of the path it was made from.
    """

    path: str
    """the caller's path, exactly as given ("-" for standard output)"""
    overwrite: bool = False
    numbered: bool = False
    """take NAME-2.EXT, NAME-3.EXT, ... when the name is taken (CLI default names)"""
    replaces: tuple[int, int] | None = None
    """(st_dev, st_ino) of the regular file found at the path, to be replaced"""
    stream: int | None = None
    """write to this file descriptor (standard output) instead of a path"""
    written: str | None = None
    """where the dump went, once published"""
    pin: int | None = None
    """an O_PATH fd of the file to replace (Linux): while it is open the kernel cannot
    give that inode number to a file planted meanwhile, so the (st_dev, st_ino) check
    before the rename cannot be fooled by a recycled inode"""

    def close(self) -> None:
        pin, self.pin = self.pin, None
        if pin is not None:
            os.close(pin)

    def __del__(self) -> None:
        self.close()

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path

    @property
    def directory(self) -> str:
        return os.path.dirname(self.path) or os.curdir

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def names(self) -> Iterator[str]:
        """The names to try, first the caller's."""
        yield self.name
        if self.numbered:
            stem, ext = os.path.splitext(self.name)
            for n in range(2, _MAX_NUMBERED + 1):
                yield f"{stem}-{n}{ext}"

    def at(self, name: str) -> str:
        """The caller's path with its last component replaced by ``name``."""
        head = os.path.dirname(self.path)
        return os.path.join(head, name) if head else name


def destination(path: StrPath | Destination, *, overwrite: bool) -> Destination:
    """``path`` checked (:func:`check`), or ``path`` itself if it already is a
    Destination (checked by the caller, e.g. the CLI, with its own settings)."""
    if isinstance(path, Destination):
        return path
    return check(path, overwrite=overwrite)


def check(path: StrPath, *, overwrite: bool, numbered: bool = False,
          hint: str = "overwrite=True") -> Destination:
    """Check ``path`` as a place to write a new dump, before anything is done.

    Raises a :class:`~minidumpkit.PathError` subclass naming ``path``:
    PathIsADirectoryError (an existing directory, or a path ending in a separator),
    PathNotFoundError (the directory does not exist), PathNotADirectoryError (a
    component of the directory is not one), PathPermissionError (no right to create a
    file in the directory, or to replace the file there), OutputExistsError (a device,
    FIFO, socket or symbolic link is there, or a regular file without ``overwrite``;
    ``hint`` says how the caller allows replacing), PathError (under /proc or /sys).
    With ``numbered`` a taken name moves on to NAME-2.EXT, NAME-3.EXT, ...
    """
    user = os.fspath(path)
    if not isinstance(user, str):
        raise TypeError(f"the output path must be a str or os.PathLike[str], not "
                        f"{type(user).__name__}")
    show = _show(user)
    if not user:
        raise PathNotFoundError(errno.ENOENT, "the output path is empty", user)
    dest = Destination(user, overwrite=overwrite, numbered=numbered)
    if dest.name in ("", os.curdir, os.pardir) or user.endswith(("/", os.sep)):
        raise PathIsADirectoryError(
            errno.EISDIR, f"{show} names a directory: give the path of a file to write", user)
    directory = dest.directory
    _refuse_pseudo_file_systems(directory, user)
    _check_directory_exists(directory, user)
    # (numbered names need no look here: publishing never replaces, it moves on)
    found = None if numbered else _lstat(user, user)
    if found is not None:
        if stat.S_ISDIR(found.st_mode):
            raise PathIsADirectoryError(errno.EISDIR, f"{show} is a directory", user)
        if not stat.S_ISREG(found.st_mode):
            raise OutputExistsError(
                errno.EEXIST, f"{show} is {_kind(found.st_mode)}: nothing was written "
                "(only a regular file is ever replaced)", user)
        if not overwrite:
            raise OutputExistsError(
                errno.EEXIST, f"{show} already exists: nothing was written ({hint} "
                "replaces it)", user)
        if not os.access(user, os.W_OK):
            raise PathPermissionError(
                errno.EACCES, f"{show} is not writable by this user, so it is not replaced",
                user)
        dest.replaces = (found.st_dev, found.st_ino)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PathPermissionError(
            errno.EACCES, f"cannot write {show}: no permission to create files in "
            f"{_show(directory)}", user)
    if dest.replaces is not None:
        dest.pin = _pin(user, dest.replaces)
    return dest


def _pin(user: str, identity: tuple[int, int]) -> int | None:
    """An O_PATH fd of the regular file just checked (None where there is no O_PATH)."""
    flag = getattr(os, "O_PATH", 0)
    if not flag:
        return None
    try:
        fd = os.open(user, flag | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise _error(exc.errno or errno.EIO, f"cannot write {_show(user)}: {exc.strerror}",
                     user) from None
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != identity or not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise OutputExistsError(errno.EEXIST, f"{_show(user)} changed while it was checked: "
                                "nothing was written", user)
    return fd


def stream_destination(fd: int, *, name: str = "-") -> Destination:
    """Write the dump to the open file descriptor ``fd`` (``-o -``: standard output),
    which must not be a terminal (a dump is binary): a pipe, a file, a socket."""
    try:
        os.fstat(fd)
    except OSError as exc:
        raise _error(exc.errno or errno.EBADF, f"{name}: standard output is not open "
                     f"({exc.strerror})", name) from None
    if os.isatty(fd):
        raise PathError(errno.ENOTTY, f"{name}: standard output is a terminal; a dump is "
                        "binary: redirect it to a file or a pipe", name)
    return Destination(name, stream=fd)


def _refuse_pseudo_file_systems(directory: str, user: str) -> None:
    if os.name != "posix":
        return
    real = os.path.realpath(directory)
    for root in _PSEUDO_ROOTS:
        if real == root or real.startswith(root + "/"):
            raise PathError(errno.EINVAL, f"{_show(user)} is under {root}, a kernel interface: "
                            "a dump is never written there", user)


def _check_directory_exists(directory: str, user: str) -> None:
    show, where = _show(user), _show(directory)
    try:
        st = os.stat(directory)
    except OSError as exc:
        code = exc.errno or errno.EIO
        if code == errno.ENOENT:
            message = f"cannot write {show}: the directory {where} does not exist"
        elif code == errno.ENOTDIR:
            message = f"cannot write {show}: a component of {where} is not a directory"
        elif code == errno.EACCES:
            message = f"cannot write {show}: no permission to enter {where}"
        else:
            message = f"cannot write {show}: {where}: {exc.strerror}"
        raise _error(code, message, user) from None
    if not stat.S_ISDIR(st.st_mode):
        raise PathNotADirectoryError(errno.ENOTDIR, f"cannot write {show}: {where} is not a "
                                     "directory", user)


def _lstat(full: str, user: str) -> os.stat_result | None:
    """lstat of ``full`` (never following a symlink), None if nothing is there."""
    try:
        return os.lstat(full)
    except FileNotFoundError:
        return None
    except OSError as exc:
        code = exc.errno or errno.EIO
        raise _error(code, f"cannot write {_show(user)}: {exc.strerror}", user) from None


# --- writing and publishing -----------------------------------------------------------------

@contextlib.contextmanager
def open_output(dest: Destination) -> Iterator[IO[bytes]]:
    """A new 0600 file, published at ``dest`` only if the block succeeds (complete and
    fsync'd); ``dest.written`` then says where. Nothing is left if the block raises
    anything (KeyboardInterrupt included). Where O_TMPFILE exists the file has no name
    while it is written, so even a killed process leaves nothing (but for the instant
    between naming it and the rename when a file is replaced)."""
    if dest.written is not None:
        raise ValueError(f"{dest.path}: this destination has been written already")
    if dest.stream is not None:
        with _stream_output(dest) as out:
            yield out
        return
    try:
        publisher = _Publisher(dest)
        try:
            fd = publisher.create()
            with os.fdopen(fd, "w+b") as out:
                yield out
                out.flush()
                publisher.run(os.fsync, out.fileno())
                if publisher.hidden is None:  # the unnamed O_TMPFILE file: linked by its fd
                    dest.written = publisher.publish(out.fileno())
            if dest.written is None:
                # A named file is renamed once closed: Windows cannot rename a file that
                # is open without FILE_SHARE_DELETE (a sharing violation; tests/wine).
                dest.written = publisher.publish(-1)
        except BaseException as exc:
            publisher.discard()
            if isinstance(exc, OSError) and exc.errno in STORAGE_ERRORS \
                    and exc.filename is None and not isinstance(exc, MinidumpError):
                # a bare "[Errno 28] No space left on device" from a write, or from the
                # close that flushes it: say which dump could not be stored
                raise _storage_error(exc.errno, dest.path) from exc
            raise
        finally:
            publisher.close()
    finally:
        dest.close()


@contextlib.contextmanager
def _stream_output(dest: Destination) -> Iterator[IO[bytes]]:
    """Write to an unnamed temporary file (the writer seeks), then copy it out."""
    assert dest.stream is not None
    with tempfile.TemporaryFile(prefix=".minidumpkit-", suffix=".partial") as out:
        yield out
        out.flush()
        _copy_out(out.fileno(), dest.stream)
    dest.written = dest.path


def _copy_out(src: int, dst: int) -> None:
    size = os.fstat(src).st_size
    offset = 0
    if hasattr(os, "sendfile"):
        with contextlib.suppress(OSError):  # not every fd pair: fall back to read/write
            while offset < size:
                sent = os.sendfile(dst, src, offset, min(size - offset, 1 << 30))
                if sent == 0:
                    break
                offset += sent
    while offset < size:
        piece = os.pread(src, min(size - offset, 1 << 20), offset)
        if not piece:
            raise OSError(errno.EIO, "the dump file shrank while it was copied out")
        view = memoryview(piece)
        while view:
            view = view[os.write(dst, view):]
        offset += len(piece)


class _Publisher:
    """The temporary file of one Destination and the steps that publish it. Names are
    relative to an open fd of the directory where *at calls exist (so the directory
    cannot be swapped under us), else joined to the directory's path (Windows)."""

    def __init__(self, dest: Destination) -> None:
        self.dest = dest
        self.directory = dest.directory
        self.dir_fd: int | None = None
        self.hidden: str | None = None  # the name of our file in the directory, if it has one
        if _AT_CALLS:
            flags = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC
            self.dir_fd = self.run(os.open, self.directory, flags)

    def run(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``call(*args)``, an OSError turned into one naming the caller's path (never
        a temporary name)."""
        try:
            return call(*args, **kwargs)
        except PathError:
            raise
        except OSError as exc:
            code = exc.errno or errno.EIO
            if code in STORAGE_ERRORS:  # the storage's failure, not the path's
                raise _storage_error(code, self.dest.path) from None
            raise _error(code, f"cannot write {_show(self.dest.path)}: {exc.strerror}",
                         self.dest.path) from None

    def loc(self, name: str) -> str:
        return _at(self.dir_fd, self.directory, name)

    def close(self) -> None:
        if self.dir_fd is not None:
            os.close(self.dir_fd)
            self.dir_fd = None

    def discard(self) -> None:
        hidden, self.hidden = self.hidden, None
        if hidden is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.loc(hidden), dir_fd=self.dir_fd)

    def create(self) -> int:
        fd = self.run(_unnamed_file, self.directory, self.dir_fd)
        if fd is None:
            fd, self.hidden = self.run(_named_temp, self.dir_fd, self.directory, self.dest.name)
        return fd

    def publish(self, fd: int) -> str:
        """Give the complete file its final name; return the path it got."""
        dest = self.dest
        for name in dest.names():
            try:
                if dest.replaces is not None and name == dest.name:
                    self._replace(fd, name, dest.replaces)
                else:
                    self._place(fd, name)
            except OutputExistsError:
                raise
            except FileExistsError:
                if dest.numbered:
                    continue
                raise OutputExistsError(
                    errno.EEXIST, f"{_show(dest.path)} appeared while the dump was written: "
                    "it was left as it was and the dump discarded", dest.path) from None
            except OSError as exc:
                raise _error(exc.errno or errno.EIO, f"cannot write {_show(dest.path)}: "
                             f"{exc.strerror}", dest.path) from None
            return dest.at(name)
        raise OutputExistsError(errno.EEXIST, f"{_show(dest.path)} and {_MAX_NUMBERED - 1} "
                                "numbered names after it are all taken", dest.path)

    def _place(self, fd: int, name: str) -> None:
        """Publish under ``name`` without replacing anything (FileExistsError if taken)."""
        if self.hidden is None:  # the unnamed O_TMPFILE file: linkat never replaces
            try:
                _link_fd(fd, self.dir_fd, name)
                return
            except OSError as exc:
                if exc.errno not in _LINK_REFUSED:
                    raise
                # a file system or security module refusing the link: the dump is not
                # lost, it is copied to a named file
                self.hidden = _copy_to_named(fd, self.dir_fd, self.directory, self.dest.name)
        _rename_noreplace(self.loc(self.hidden), self.loc(name), self.dir_fd)
        self.hidden = None

    def _replace(self, fd: int, name: str, expected: tuple[int, int]) -> None:
        """Rename over ``name`` if the regular file found there at the check still is."""
        if self.hidden is None:
            self.hidden = _name_unnamed(fd, self.dir_fd, self.directory, self.dest.name)
        try:
            now = os.stat(self.loc(name), dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:  # removed meanwhile: publish, but replace nothing
            self._place(fd, name)
            return
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != expected:
            what = "another file" if stat.S_ISREG(now.st_mode) else _kind(now.st_mode)
            raise OutputExistsError(
                errno.EEXIST, f"{_show(self.dest.path)} was replaced by {what} while the dump "
                "was written: it was left as it was and the dump discarded", self.dest.path)
        os.replace(self.loc(self.hidden), self.loc(name), src_dir_fd=self.dir_fd,
                   dst_dir_fd=self.dir_fd)
        self.hidden = None


def _unnamed_file(directory: str, dir_fd: int | None) -> int | None:
    """An O_TMPFILE file in the directory (Linux): it has no name until it is linked,
    so a dumper killed mid-write (SIGKILL, the OOM killer) leaves nothing behind. None
    where the OS or the file system has no O_TMPFILE."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not os.path.isdir("/proc/self/fd"):  # naming it needs /proc
        return None
    where = os.curdir if dir_fd is not None else directory
    try:
        return os.open(where, flag | os.O_RDWR | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            return None  # e.g. a file system without it: fall back to a named temp file
        raise


def _hidden_name(name: str) -> str:
    # the name is cut so that the hidden one fits NAME_MAX (255) as the final one does
    return f".{name[:200]}.{os.urandom(6).hex()}.partial"


def _at(dir_fd: int | None, directory: str, name: str) -> str:
    """How to name ``name`` of the directory: relative to its fd, or joined to its path."""
    return name if dir_fd is not None else os.path.join(directory, name)


def _named_temp(dir_fd: int | None, directory: str, name: str) -> tuple[int, str]:
    """A new hidden 0600 file in the directory: (fd, its name in the directory)."""
    flags = (os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
             | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
             | getattr(os, "O_NOINHERIT", 0))
    while True:
        hidden = _hidden_name(name)
        try:
            return os.open(_at(dir_fd, directory, hidden), flags, 0o600, dir_fd=dir_fd), hidden
        except FileExistsError:
            continue


def _link_fd(fd: int, dir_fd: int | None, name: str) -> None:
    """linkat(AT_SYMLINK_FOLLOW) of the O_TMPFILE file ``fd`` to ``name`` through
    /proc/self/fd, see open(2): it fails with EEXIST rather than replace anything. A
    dir_fd makes CPython call linkat (plain link() would link the /proc symlink)."""
    os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dir_fd, follow_symlinks=True)


def _name_unnamed(fd: int, dir_fd: int | None, directory: str, name: str) -> str:
    """Give the O_TMPFILE file ``fd`` a hidden name (a link cannot replace a file, a
    rename can); copy it to a named file where the link is refused."""
    while True:
        hidden = _hidden_name(name)
        try:
            _link_fd(fd, dir_fd, hidden)
            return hidden
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in _LINK_REFUSED:
                raise
            return _copy_to_named(fd, dir_fd, directory, name)


def _copy_to_named(src: int, dir_fd: int | None, directory: str, name: str) -> str:
    """Copy the complete unnamed file ``src`` into a new hidden file (holes kept: a
    dump's all-zero stretches are holes), fsync it and return its name."""
    fd, hidden = _named_temp(dir_fd, directory, name)
    try:
        size = os.fstat(src).st_size
        offset = 0
        while offset < size:
            try:
                data = os.lseek(src, offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only a hole is left
                    break
                raise
            end = os.lseek(src, data, os.SEEK_HOLE)
            while data < end:
                piece = os.pread(src, min(end - data, 1 << 20), data)
                if not piece:
                    raise OSError(errno.EIO, "the dump file shrank while it was copied")
                os.pwrite(fd, piece, data)
                data += len(piece)
            offset = end
        os.ftruncate(fd, size)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_at(dir_fd, directory, hidden), dir_fd=dir_fd)
        raise
    os.close(fd)
    return hidden


def _rename_noreplace(src: str, dst: str, dir_fd: int | None) -> None:
    """Rename ``src`` to ``dst`` (both in one directory) only if nothing is at ``dst``;
    FileExistsError otherwise."""
    if _WINDOWS:
        os.rename(src, dst)  # MoveFileExW without MOVEFILE_REPLACE_EXISTING: never replaces
        return
    if _LINUX and _renameat2_noreplace(src, dst, dir_fd):
        return
    try:
        os.link(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        # A file system with neither RENAME_NOREPLACE nor hard links: look, then rename.
        # Something planted in the microseconds between the two would be replaced; every
        # local Linux file system takes one of the two ways above.
        if os.path.lexists(dst if dir_fd is None else f"/proc/self/fd/{dir_fd}/{dst}"):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST)) from None
        os.rename(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return
    os.unlink(src, dir_fd=dir_fd)


def _renameat2_noreplace(src: str, dst: str, dir_fd: int | None) -> bool:
    """renameat2(RENAME_NOREPLACE); False where the C library or the file system does
    not offer it (then the caller links instead). Raises FileExistsError if taken."""
    from ._ffi import libc

    ffi, lib = libc.load()
    try:
        call = lib.renameat2
    except AttributeError:  # a C library older than glibc 2.28
        return False
    at = -100 if dir_fd is None else dir_fd  # AT_FDCWD
    if call(at, os.fsencode(src), at, os.fsencode(dst), libc.RENAME_NOREPLACE) == 0:
        return True
    code = ffi.errno
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code))
