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
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import IO

from ._backends import load_backend
from .callbacks import as_policy
from .flags import DumpType, MiniDumpType, coerce_dump_type

__all__ = ["Dumper", "dump"]

StrPath = str | os.PathLike[str]


@contextlib.contextmanager
def _atomic_output(path: Path) -> Iterator[IO[bytes]]:
    """A new 0600 file next to ``path``; renamed to ``path`` if the block succeeds,
    removed if it raises anything (KeyboardInterrupt included)."""
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=directory)
    try:
        with os.fdopen(fd, "w+b") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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

    def write(self, path: StrPath, type: int | MiniDumpType = DumpType.MINI, *,  # noqa: A002
              callbacks: object = None) -> Path:
        """Write a minidump of the process to ``path`` and return it as a Path.

        ``type`` is a preset (``DumpType.MINI``, ``FULL``, ``TRIAGE``) or any
        :class:`~minidumpkit.MiniDumpType` combination or int. The process is paused
        while it is read and resumed afterwards, whatever happens.
        """
        dump_type = coerce_dump_type(type)
        policy = as_policy(callbacks)  # a wrong type fails here, before any file exists
        final = Path(os.fspath(path))
        with _atomic_output(final) as out:
            self.last_times = self._backend.write_dump(self.pid, out, dump_type, policy=policy)
        return final


def dump(pid: int, path: StrPath, type: int | MiniDumpType = DumpType.MINI, *,  # noqa: A002
         callbacks: object = None) -> Path:
    """Write a minidump of process ``pid`` to ``path``: ``Dumper(pid).write(path, type)``."""
    return Dumper(pid).write(path, type, callbacks=callbacks)
