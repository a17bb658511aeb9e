"""The public dumping API: :func:`dump` and :class:`Dumper`.

    import minidumpkit as mdk
    mdk.dump(pid, "app.dmp")                               # DumpType.MINI
    mdk.Dumper(pid).write("app.dmp", mdk.DumpType.FULL)

The platform backend is chosen by :func:`minidumpkit._backends.load_backend`.
The output path is checked before the target is touched, and the file (mode 0600,
nameless while it is written where the OS allows) appears at ``path`` only when
the dump is complete; on any failure or interruption nothing appears there. Only a
regular file the caller may write is ever replaced (see :mod:`minidumpkit._output`).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Literal

from . import _output
from ._backends import load_backend
from ._selection import check_all_memory
from .callbacks import as_policy
from .errors import UnsupportedError
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
              callbacks: object = None, snapshot: SnapshotMode = "auto",
              overwrite: bool = True, all_memory: bool = False, python: bool = True) -> Path:
        """Write a minidump of the process to ``path`` and return it as a Path.

        ``path`` is checked before the process is touched: a directory, a missing or
        unwritable directory, a path under /proc or /sys, and anything there that is
        not a regular file (device, FIFO, socket, symbolic link) raise a
        :class:`~minidumpkit.PathError` subclass naming ``path``. An existing regular
        file is replaced (by a new 0600 file owned by the caller) only if
        ``overwrite`` and ``os.access(path, os.W_OK)``; with ``overwrite=False`` it
        raises :class:`~minidumpkit.OutputExistsError`. Whatever appears at ``path``
        while the dump is written is never replaced (OutputExistsError, no file
        left).

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

        ``all_memory``: with WithFullMemory (``DumpType.FULL``), copy every page the
        kernel lets a debugger read, not only what the OS's own core dump would hold.
        On Linux WithFullMemory alone follows the kernel's core-dump rules (the
        target's coredump_filter, MADV_DONTDUMP: by default code and unwritten file
        mappings are left out); ``all_memory=True`` adds them. On Windows dbghelp's
        WithFullMemory already copies everything, so it changes nothing there. A dump
        type without WithFullMemory raises ValueError. See docs/dump-types.md.

        ``python``: when the process runs CPython (3.11-3.13), walk its interpreters,
        thread states, frames and code objects on the frozen target and add exactly that
        memory and a MinidumpkitPythonStream to the dump, whatever ``type`` is, so
        :func:`minidumpkit.analysis.python_stacks` reads the Python stacks from the dump
        alone (Linux; Windows: CPython 3.13, live dumps, the memory in a user stream).
        ``python=False`` adds nothing. See
        docs/python-stacks.md.
        """
        if snapshot not in ("auto", "always", "never"):
            raise ValueError(f"snapshot must be 'auto', 'always' or 'never', not {snapshot!r}")
        dump_type = coerce_dump_type(type)
        check_all_memory(all_memory, dump_type)
        policy = as_policy(callbacks)  # a wrong type fails here, before any file exists
        dest = _output.destination(path, overwrite=overwrite)  # before the target is touched
        # (only when asked: backends written to the older protocol keep working)
        options: dict[str, bool] = {"all_memory": True} if all_memory else {}
        if not python and getattr(self._backend, "PYTHON_CAPTURE", False):
            options["python"] = False
        if self._use_snapshot(snapshot, dump_type):
            from .snapshot import SnapshotRefused

            try:
                snap = self.snapshot(WRITE_SNAPSHOT_FLAGS)
            except SnapshotRefused:
                if snapshot == "always":
                    raise
            else:
                with snap:
                    final = snap.write(dest, dump_type, callbacks=policy, close=True,
                                       all_memory=all_memory, python=python)
                    self.last_times = snap.last_times
                return final
        with _output.open_output(dest) as out:
            self.last_times = self._backend.write_dump(self.pid, out, dump_type, policy=policy,
                                                       **options)
        return Path(dest.written or dest.path)

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
         callbacks: object = None, snapshot: SnapshotMode = "auto",
         overwrite: bool = True, all_memory: bool = False, python: bool = True) -> Path:
    """Write a minidump of process ``pid`` to ``path``: ``Dumper(pid).write(path, type)``,
    with ``path`` checked first (see :meth:`Dumper.write`)."""
    dest = _output.destination(path, overwrite=overwrite)
    return Dumper(pid).write(dest, type, callbacks=callbacks, snapshot=snapshot,
                             overwrite=overwrite, all_memory=all_memory, python=python)
