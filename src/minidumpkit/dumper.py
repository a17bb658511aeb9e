"""The public dumping API: :func:`dump` and :class:`Dumper`.

    import minidumpkit as mdk
    mdk.dump(pid, "app.dmp")                               # DumpType.MINI
    mdk.Dumper(pid).write("app.dmp", mdk.DumpType.FULL)

The platform backend is chosen by :func:`minidumpkit._backends.load_backend`.
The file is written under a temporary name (mode 0600) in the destination
directory, fsync'd and renamed over ``path`` only when the dump is complete; on
any failure or interruption the temporary file is removed and nothing appears
under ``path``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import IO, TYPE_CHECKING, Literal

from ._backends import load_backend
from .callbacks import as_policy
from .errors import MinidumpError, UnsupportedError
from .flags import (
    ContextFlags,
    DumpType,
    MiniDumpType,
    PssCaptureFlags,
    coerce_dump_type,
)

if TYPE_CHECKING:
    from .snapshot import Snapshot

__all__ = ["Dumper", "dump"]

StrPath = str | os.PathLike[str]
SnapshotMode = Literal["auto", "always", "never"]

# Dump types that copy memory in bulk: with snapshot="auto" these are written from a
# VA-clone snapshot, so the pause is the clone() instead of the whole copy.
BULK_MEMORY = (MiniDumpType.WithFullMemory | MiniDumpType.WithPrivateReadWriteMemory
               | MiniDumpType.WithPrivateWriteCopyMemory)
# What Dumper.write's internal snapshot captures (everything a dump can use). The
# handle-information and CREATE_* bits matter on Windows only (Microsoft's "Generate
# Dump File from a Process Snapshot" passes them); Linux ignores them.
WRITE_SNAPSHOT_FLAGS = (PssCaptureFlags.VA_CLONE | PssCaptureFlags.THREADS
                        | PssCaptureFlags.THREAD_CONTEXT | PssCaptureFlags.HANDLES
                        | PssCaptureFlags.HANDLE_NAME_INFORMATION
                        | PssCaptureFlags.HANDLE_BASIC_INFORMATION
                        | PssCaptureFlags.HANDLE_TYPE_SPECIFIC_INFORMATION
                        | PssCaptureFlags.VA_SPACE
                        | PssCaptureFlags.CREATE_BREAKAWAY_OPTIONAL
                        | PssCaptureFlags.CREATE_USE_VM_ALLOCATIONS
                        | PssCaptureFlags.CREATE_RELEASE_SECTION)


def _unnamed_file(directory: Path) -> int | None:
    """An O_TMPFILE file in ``directory`` (Linux): it has no name until it is linked,
    so a dumper killed mid-write (SIGKILL, the OOM killer) leaves nothing behind. None
    where the OS or the file system has no O_TMPFILE."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not os.path.isdir("/proc/self/fd"):  # naming it needs /proc
        return None
    try:
        return os.open(directory, flag | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            return None  # e.g. a file system without it: fall back to a named temp file
        raise


@contextlib.contextmanager
def _atomic_output(path: Path) -> Iterator[IO[bytes]]:
    """A new 0600 file that appears at ``path`` only if the block succeeds (complete
    and fsync'd, replacing any file there); nothing is left if it raises anything
    (KeyboardInterrupt included). Where O_TMPFILE exists the file has no name while it
    is written, so even a killed process leaves nothing (but for the instant between
    naming it and the rename)."""
    directory = path.parent
    fd = _unnamed_file(directory)
    tmp: str | None = None
    if fd is None:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=directory)
    try:
        with os.fdopen(fd, "w+b") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            if tmp is None:
                try:
                    tmp = _link_unnamed(f.fileno(), directory, path.name)
                except OSError as exc:
                    if exc.errno not in _LINK_REFUSED:
                        raise
                    # a file system or security module refusing the link: the dump is
                    # not lost, it is copied to a named file
                    tmp = _copy_to_named(f.fileno(), directory, path.name)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRORS \
                and exc.filename is None and not isinstance(exc, MinidumpError):
            # a bare "[Errno 28] No space left on device" from a write or fsync: say which
            # dump could not be stored
            raise type(exc)(exc.errno, f"cannot write the dump: {os.strerror(exc.errno)}",
                            os.fspath(path)) from exc
        raise


# Errors of the storage under the output file (as opposed to the target's or ours).
_STORAGE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EROFS})


# linkat errors that mean "not this way" (a copy can still succeed), unlike ENOSPC & co.
_LINK_REFUSED = frozenset({errno.EPERM, errno.EACCES, errno.EXDEV, errno.EOPNOTSUPP,
                           errno.ENOENT, errno.EINVAL, errno.EMLINK})


def _copy_to_named(src: int, directory: Path, name: str) -> str:
    """Copy the complete unnamed file ``src`` into a new named temporary file (holes
    kept: a dump's all-zero stretches are holes), fsync it and return its path."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=directory)
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
            os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def _link_unnamed(fd: int, directory: Path, name: str) -> str:
    """Give the O_TMPFILE file ``fd`` a hidden name in ``directory`` and return it (the
    caller renames it over the final name: a link cannot replace a file)."""
    hidden = f".{name}.{os.urandom(6).hex()}.partial"
    dir_fd = os.open(directory, getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY
                     | os.O_CLOEXEC)
    try:
        # linkat(AT_SYMLINK_FOLLOW) through /proc/self/fd, see open(2); a dir_fd makes
        # CPython call linkat (plain link() would link the /proc symlink itself)
        os.link(f"/proc/self/fd/{fd}", hidden, dst_dir_fd=dir_fd, follow_symlinks=True)
    finally:
        os.close(dir_fd)
    return os.path.join(directory, hidden)


class Dumper:
    """Writes minidumps of one process.

    Creating it checks at once that ``pid`` exists and may be dumped, and raises
    :class:`~minidumpkit.ProcessNotFound`, :class:`~minidumpkit.AccessDenied`,
    :class:`~minidumpkit.AlreadyTraced` or :class:`~minidumpkit.InvalidTargetError`
    with a message that says what to do. ``pid`` may be the calling process itself.
    """

    def __init__(self, pid: int) -> None:
        self._backend: ModuleType = load_backend()
        self._backend.check_target(pid)
        self.pid = pid
        #: timings of the last :meth:`write` (backend-specific; Linux: DumpTimes)
        self.last_times: object = None

    def __repr__(self) -> str:
        return f"<Dumper pid={self.pid}>"

    def snapshot(self, flags: int | PssCaptureFlags,
                 context_flags: int | ContextFlags = ContextFlags.ALL,
                 **options: object) -> Snapshot:
        """Capture the process (PssCaptureSnapshot semantics) and return a
        :class:`~minidumpkit.snapshot.Snapshot`; use it as a context manager::

            with Dumper(pid).snapshot(PssCaptureFlags.VA_CLONE | PssCaptureFlags.THREADS
                                      | PssCaptureFlags.THREAD_CONTEXT) as snap:
                snap.write("app.dmp", DumpType.FULL)

        The target is paused only while the snapshot is taken. With VA_CLONE the
        memory is frozen in a copy-on-write clone until the snapshot is freed;
        without it memory is read from the live process when a dump is written.
        ``options`` are backend-specific (Linux: ``frozen_limit``,
        ``preflight_inputs``). See docs/snapshots.md.
        """
        from .snapshot import Snapshot

        take = getattr(self._backend, "take_snapshot", None)
        if take is None:
            raise UnsupportedError(f"the {self._backend.__name__} backend cannot take snapshots "
                                   "yet")
        return Snapshot(take(self.pid, PssCaptureFlags(int(flags)),
                             ContextFlags(int(context_flags)), **options))

    def write(self, path: StrPath, type: int | MiniDumpType = DumpType.MINI, *,
              callbacks: object = None, snapshot: SnapshotMode = "auto") -> Path:
        """Write a minidump of the process to ``path`` and return it as a Path.

        ``type`` is a preset (``DumpType.MINI``, ``FULL``, ``TRIAGE``) or any
        :class:`~minidumpkit.MiniDumpType` combination or int. The process is paused
        while it is read and resumed afterwards, whatever happens.

        ``snapshot``: ``"auto"`` writes a dump that copies memory in bulk
        (WithFullMemory, WithPrivateReadWriteMemory, WithPrivateWriteCopyMemory) from
        a VA-clone snapshot when the target allows one (short pause), else stops the
        target for the whole dump; ``"always"`` always uses a VA-clone snapshot and
        raises :class:`~minidumpkit.snapshot.SnapshotRefused` (or AlreadyTraced) when
        it cannot; ``"never"`` always stops. The dump's MinidumpkitInfo stream
        records which was used.
        """
        if snapshot not in ("auto", "always", "never"):
            raise ValueError(f"snapshot must be 'auto', 'always' or 'never', not {snapshot!r}")
        dump_type = coerce_dump_type(type)
        policy = as_policy(callbacks)  # a wrong type fails here, before any file exists
        if self._use_snapshot(snapshot, dump_type):
            from .snapshot import SnapshotRefused

            try:
                snap = self.snapshot(WRITE_SNAPSHOT_FLAGS)
            except SnapshotRefused:
                if snapshot == "always":
                    raise
            else:
                with snap:
                    final = snap.write(path, dump_type, callbacks=policy, close=True)
                    self.last_times = snap.last_times
                return final
        final = Path(os.fspath(path))
        with _atomic_output(final) as out:
            self.last_times = self._backend.write_dump(self.pid, out, dump_type, policy=policy)
        return final

    def _use_snapshot(self, mode: SnapshotMode, dump_type: MiniDumpType) -> bool:
        if mode == "never":
            return False
        if mode == "always":
            if self.pid == os.getpid():
                raise UnsupportedError("a process cannot take a VA-clone snapshot of itself; "
                                       "use snapshot='never' or 'auto'")
            return True
        return bool(dump_type & BULK_MEMORY) and self.pid != os.getpid() \
            and hasattr(self._backend, "take_snapshot")


def dump(pid: int, path: StrPath, type: int | MiniDumpType = DumpType.MINI, *,
         callbacks: object = None, snapshot: SnapshotMode = "auto") -> Path:
    """Write a minidump of process ``pid`` to ``path``: ``Dumper(pid).write(path, type)``."""
    return Dumper(pid).write(path, type, callbacks=callbacks, snapshot=snapshot)
