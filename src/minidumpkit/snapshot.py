"""Process snapshots with PSS semantics: capture briefly, dump at leisure, free.

    import minidumpkit as mdk
    from minidumpkit.flags import PssCaptureFlags as F

    with mdk.Dumper(pid).snapshot(F.VA_CLONE | F.THREADS | F.THREAD_CONTEXT) as snap:
        # the target runs again here
        snap.write("app.dmp", mdk.DumpType.FULL)
        for t in snap.threads: ...

This module is platform-neutral: :class:`Snapshot` and the typed walk objects
(:class:`SnapshotThread`, :class:`SnapshotHandle`, :class:`SnapshotVaRegion`,
:class:`SnapshotProcessInfo`, the equivalents of PssWalkSnapshot's and
PssQuerySnapshot's PSS_* records) are defined once here and returned by every
backend. A backend supplies a :class:`SnapshotBackend` (Linux: ptrace and an
injected clone, :mod:`minidumpkit._backends._linux_snapshot`; Windows:
PssCaptureSnapshot). docs/snapshots.md has the semantics and the guarantees.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from ._closing import Closeable
from .errors import InvalidTargetError
from .flags import (
    ContextFlags,
    DumpType,
    MiniDumpType,
    PssCaptureFlags,
    coerce_dump_type,
)

if TYPE_CHECKING:
    from . import format as md

__all__ = [
    "Snapshot",
    "SnapshotBackend",
    "SnapshotHandle",
    "SnapshotProcessInfo",
    "SnapshotRefused",
    "SnapshotThread",
    "SnapshotVaRegion",
]


class SnapshotRefused(InvalidTargetError):
    """A VA-clone snapshot of this target would be unsafe or would fail (seccomp filter,
    strict overcommit, a stopped process ...); ``reason`` names the check.

    ``Dumper.write(snapshot="auto")`` falls back to stop-and-dump on it;
    ``snapshot="always"`` raises it.
    """

    def __init__(self, message: str, *, pid: int | None = None, reason: str = "") -> None:
        super().__init__(message, pid=pid)
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_refused, (str(self.args[0]) if self.args else "", self.pid, self.reason))


def _quoted(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit - 1] + "\u2026")


def _rebuild_refused(message: str, pid: int | None, reason: str) -> SnapshotRefused:
    return SnapshotRefused(message, pid=pid, reason=reason)


# --- the walk objects (PSS_THREAD_ENTRY, PSS_HANDLE_ENTRY, PSS_VA_SPACE_ENTRY,
# PSS_PROCESS_INFORMATION): the fields both platforms can fill; 0 / "" where one
# has no equivalent (documented per field in docs/snapshots.md) -----------------------

@dataclasses.dataclass(frozen=True)
class SnapshotThread:
    """One thread as captured (PSS_THREAD_ENTRY)."""

    tid: int
    pid: int
    name: str = ""
    teb: int = 0  # TebBaseAddress; Linux: fs_base (the TLS block)
    start_address: int = 0  # Win32StartAddress; 0 where unknown
    affinity: int = 0  # AffinityMask (CPUs 0..63)
    priority: int = 0
    base_priority: int = 0
    create_time: int = 0  # FILETIME (100 ns since 1601)
    user_time: int = 0  # 100 ns units
    kernel_time: int = 0
    suspended: bool = False  # Linux: in a job-control stop when captured
    last_syscall_number: int = -1  # the syscall it was in (Linux: orig_rax), -1 in user mode
    last_syscall_first_argument: int = 0
    context: md.ContextAMD64 | None = None  # with PssCaptureFlags.THREAD_CONTEXT

    def __repr__(self) -> str:
        pc = f" pc=0x{self.context.pc:x}" if self.context is not None else ""
        call = f" syscall {self.last_syscall_number}" if self.last_syscall_number >= 0 else ""
        stopped = " suspended" if self.suspended else ""
        return f"<SnapshotThread {self.tid} {_quoted(self.name)}{pc}{call}{stopped}>"


@dataclasses.dataclass(frozen=True)
class SnapshotHandle:
    """One open handle; on Linux one file descriptor (PSS_HANDLE_ENTRY)."""

    handle: int
    type_name: str  # "File", "Socket", "Pipe", "Anon", "Directory", "Device" ...
    object_name: str  # Linux: readlink(/proc/PID/fd/N)
    attributes: int = 0  # Linux: st_mode
    granted_access: int = 0  # Linux: the open flags

    def __repr__(self) -> str:
        return f"<SnapshotHandle {self.handle} {self.type_name} {_quoted(self.object_name)}>"


@dataclasses.dataclass(frozen=True)
class SnapshotVaRegion:
    """One region of the address space (PSS_VA_SPACE_ENTRY / MEMORY_BASIC_INFORMATION).

    ``protect`` and ``type`` use the Windows values (PAGE_*, MEM_PRIVATE /
    MEM_MAPPED / MEM_IMAGE); ``point_in_time`` says whether a VA-clone snapshot
    holds this region as it was at capture (False: read live when written, e.g. a
    MAP_SHARED mapping too big to copy while the target was stopped).
    """

    base_address: int
    region_size: int
    protect: int
    type: int
    state: int = 0x1000  # MEM_COMMIT
    allocation_base: int = 0
    allocation_protect: int = 0
    mapped_file_name: str = ""
    point_in_time: bool = True

    def __repr__(self) -> str:
        end = self.base_address + self.region_size
        name = f" {_quoted(self.mapped_file_name)}" if self.mapped_file_name else ""
        live = "" if self.point_in_time else " (read live)"
        return (f"<SnapshotVaRegion 0x{self.base_address:x}-0x{end:x} "
                f"protect=0x{self.protect:x}{name}{live}>")


@dataclasses.dataclass(frozen=True)
class SnapshotProcessInfo:
    """The process as a whole (PSS_PROCESS_INFORMATION)."""

    pid: int
    parent_pid: int
    image_file_name: str
    create_time: int = 0  # FILETIME
    user_time: int = 0  # 100 ns units
    kernel_time: int = 0
    virtual_size: int = 0
    peak_virtual_size: int = 0
    working_set_size: int = 0
    peak_working_set_size: int = 0
    page_fault_count: int = 0
    thread_count: int = 0
    base_priority: int = 0
    exit_status: int = 259  # STILL_ACTIVE

    def __repr__(self) -> str:
        return (f"<SnapshotProcessInfo pid {self.pid} {_quoted(self.image_file_name)} "
                f"parent {self.parent_pid}, {self.thread_count} threads>")


class SnapshotBackend(Protocol):
    """What a platform's snapshot provides to :class:`Snapshot`."""

    pid: int
    flags: PssCaptureFlags
    capture_method: int  # md.CAPTURE_VA_CLONE or md.CAPTURE_SNAPSHOT_LIVE
    pause_ns: int

    def threads(self) -> list[SnapshotThread]: ...
    def handles(self) -> list[SnapshotHandle]: ...
    def va_space(self) -> list[SnapshotVaRegion]: ...
    def process_info(self) -> SnapshotProcessInfo: ...
    def write(self, out: IO[bytes], dump_type: MiniDumpType, policy: Any, *,
              last: bool = False, all_memory: bool = False) -> object: ...
    def close(self) -> None: ...


class Snapshot(Closeable):
    """A captured process; write dumps from it, then free it (leave the ``with`` block,
    or :meth:`close`). Made by :meth:`minidumpkit.Dumper.snapshot`.

    ``close()`` is idempotent; a snapshot garbage-collected unclosed warns
    ResourceWarning and is freed then (on Linux a VA-clone snapshot holds a cloned
    process until freed: free it promptly).
    """

    def __init__(self, backend: SnapshotBackend) -> None:
        self._impl: SnapshotBackend | None = backend
        self.pid = backend.pid
        self.flags = backend.flags
        #: timings/statistics of the last :meth:`write` (backend-specific)
        self.last_times: object = None

    def __repr__(self) -> str:
        state = "closed" if self._impl is None else f"flags={self.flags!r}"
        return f"<Snapshot pid={self.pid} {state}>"

    def _repr_html_(self) -> str | None:
        """The notebook view (IPython's rich display): see :mod:`minidumpkit._display`."""
        from . import _display

        return _display.html_of(self)

    @property
    def closed(self) -> bool:
        return self._impl is None

    def _live(self) -> SnapshotBackend:
        if self._impl is None:
            raise ValueError("the snapshot is closed (by close(), the end of its `with` "
                             "block, or write(..., close=True)): take a new one")
        return self._impl

    @property
    def capture_method(self) -> int:
        """``format.CAPTURE_VA_CLONE`` (memory frozen) or ``CAPTURE_SNAPSHOT_LIVE``."""
        return self._live().capture_method

    @property
    def pause_ns(self) -> int:
        """How long the target was held stopped while the snapshot was taken."""
        return self._live().pause_ns

    @property
    def threads(self) -> list[SnapshotThread]:
        """The threads (empty unless PssCaptureFlags.THREADS was given)."""
        return self._live().threads()

    @property
    def handles(self) -> list[SnapshotHandle]:
        """The handles / fds (empty unless PssCaptureFlags.HANDLES was given)."""
        return self._live().handles()

    @property
    def va_space(self) -> list[SnapshotVaRegion]:
        """The address space (empty unless PssCaptureFlags.VA_SPACE was given)."""
        return self._live().va_space()

    @property
    def process_info(self) -> SnapshotProcessInfo:
        return self._live().process_info()

    def write(self, path: str | os.PathLike[str], type: int | MiniDumpType = DumpType.MINI, *,
              callbacks: object = None, close: bool = False, overwrite: bool = True,
              all_memory: bool = False, python: bool = True) -> Path:
        """Write a minidump of the snapshot to ``path`` (atomically) and return it.

        ``path`` and ``overwrite`` follow :meth:`minidumpkit.Dumper.write`: the path is
        checked first, only a regular file the caller may write is replaced.
        ``all_memory=True`` (with WithFullMemory): every readable page, as
        :meth:`minidumpkit.Dumper.write`. ``python``: the Python-aware capture of
        :meth:`minidumpkit.Dumper.write`, walked in the snapshot's memory (a VA clone's
        is frozen); ``python=False`` adds nothing.

        ``close=True`` makes this the snapshot's last dump: it is freed when the write
        returns or raises, and on Linux a VA-clone snapshot gives each part of its
        memory back as soon as that part is in the file, so the target's writes to
        pages already dumped no longer copy them (less memory, no scattering of the
        target's pages; see docs/snapshots.md). Use it for a single big dump.
        """
        from . import _output
        from ._selection import check_all_memory
        from .callbacks import as_policy

        impl = self._live()
        try:
            dump_type = coerce_dump_type(type)
            check_all_memory(all_memory, dump_type)
            policy = as_policy(callbacks)
            dest = _output.destination(path, overwrite=overwrite)
            # (``last`` and ``all_memory`` only when asked: a backend written to the older
            # protocol still works for every other write)
            options: dict[str, bool] = {"last": True} if close else {}
            if all_memory:
                options["all_memory"] = True
            if not python and _takes_python(impl):
                options["python"] = False
            with _output.open_output(dest) as out:
                self.last_times = impl.write(out, dump_type, policy, **options)
        finally:
            if close:
                self.close()
        return Path(dest.written or dest.path)

    def close(self) -> None:
        """Free the snapshot (Linux: kill and reap the clone). Idempotent."""
        impl, self._impl = self._impl, None
        if impl is not None:
            impl.close()

    def _open(self) -> bool:
        return getattr(self, "_impl", None) is not None


def _takes_python(impl: object) -> bool:
    """Whether a backend's write knows ``python`` (one without the capture ignores it)."""
    import inspect

    try:
        return "python" in inspect.signature(impl.write).parameters  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return False


DEFAULT_FLAGS = (PssCaptureFlags.VA_CLONE | PssCaptureFlags.THREADS
                 | PssCaptureFlags.THREAD_CONTEXT | PssCaptureFlags.HANDLES
                 | PssCaptureFlags.VA_SPACE)
DEFAULT_CONTEXT_FLAGS = ContextFlags.ALL
