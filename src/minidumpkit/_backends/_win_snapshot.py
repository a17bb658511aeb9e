"""A Windows process snapshot (PssCaptureSnapshot) as a handle-owning object.

Microsoft's "Generate Dump File from a Process Snapshot": capture with
PssCaptureSnapshot, pass the HPSS as MiniDumpWriteDump's hProcess (with the real
pid) and answer IsProcessSnapshotCallback with S_FALSE, free with
PssFreeSnapshot(GetCurrentProcess(), hpss). With PssCaptureFlags.VA_CLONE the
target runs again as soon as the capture returns.

Ownership (aesthetics P7): every field ``__del__`` reads is set first; ``close()``
is idempotent and frees the snapshot exactly once, then closes the process
handle; ``__exit__`` closes; ``__del__`` warns ResourceWarning and closes.
NOT RUN ON WINDOWS YET: see docs/windows.md.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from .._ffi import _winerror, kernel32, pss
from ..callbacks import DumpCallbacks
from ..flags import (
    ContextFlags,
    DumpType,
    MiniDumpType,
    PssCaptureFlags,
    coerce_dump_type,
)
from . import windows
from ._win_trampoline import Trampoline

__all__ = ["DEFAULT_CAPTURE_FLAGS", "SNAPSHOT_ACCESS", "WindowsSnapshot"]

#: What a dump from the snapshot needs: a memory clone, threads with their
#: contexts, handles with their names and details (Microsoft's example, less the
#: handle trace, which needs extra rights, and the extended contexts).
DEFAULT_CAPTURE_FLAGS = (
    PssCaptureFlags.VA_CLONE | PssCaptureFlags.HANDLES | PssCaptureFlags.HANDLE_NAME_INFORMATION
    | PssCaptureFlags.HANDLE_BASIC_INFORMATION | PssCaptureFlags.HANDLE_TYPE_SPECIFIC_INFORMATION
    | PssCaptureFlags.THREADS | PssCaptureFlags.THREAD_CONTEXT
    | PssCaptureFlags.CREATE_BREAKAWAY_OPTIONAL | PssCaptureFlags.CREATE_USE_VM_ALLOCATIONS
    | PssCaptureFlags.CREATE_RELEASE_SECTION)

#: PssCaptureSnapshot's needs (VA_CLONE creates a process: CREATE_PROCESS,
#: VM_OPERATION) plus what MiniDumpWriteDump needs.
SNAPSHOT_ACCESS = (windows.DUMP_ACCESS | kernel32.PROCESS_CREATE_PROCESS
                   | kernel32.PROCESS_VM_OPERATION)


class WindowsSnapshot:
    """A PSS snapshot of process ``pid``; write dumps from it, then close it.

    ::

        with WindowsSnapshot(pid) as snap:   # the target runs again here
            snap.write("app.dmp", DumpType.FULL)

    Pss* missing (Windows before 8.1, Wine) raises UnsupportedError naming the
    function, before the process is opened.
    """

    def __init__(self, pid: int, flags: int | PssCaptureFlags = DEFAULT_CAPTURE_FLAGS,
                 context_flags: int | ContextFlags = ContextFlags.ALL, *,
                 api: windows.WinApi | None = None) -> None:
        # First, so that __del__ and close() work whatever fails below.
        self._hpss: Any = None
        self._hprocess: Any = None
        self.pid = pid
        #: timings of the last :meth:`write`
        self.last_times: windows.WindowsDumpTimes | None = None
        self.flags = PssCaptureFlags(int(flags))
        self.context_flags = ContextFlags(int(context_flags))
        self._api = api or windows.winapi()
        capture = pss.function("PssCaptureSnapshot", self._api.pss)
        self._free = pss.function("PssFreeSnapshot", self._api.pss)  # needed later: check now
        hprocess = windows.open_process(self._api, pid, SNAPSHOT_ACCESS)
        try:
            out = pss.ffi.new("HPSS *")
            code = capture(hprocess, int(self.flags), int(self.context_flags), out)
            _winerror.check_win32(code, "PssCaptureSnapshot", pid=pid)
        except BaseException:
            windows.close_handle(self._api, hprocess)
            raise
        self._hprocess = hprocess
        self._hpss = out[0]

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"flags={self.flags!r}"
        return f"<WindowsSnapshot pid={self.pid} {state}>"

    @property
    def closed(self) -> bool:
        return self._hpss is None

    @property
    def handle(self) -> Any:
        """The HPSS (valid until :meth:`close`)."""
        if self._hpss is None:
            raise ValueError("the snapshot is closed")
        return self._hpss

    def write(self, path: str | Path, type: int | MiniDumpType = DumpType.MINI, *,
              callbacks: DumpCallbacks | None = None) -> Path:
        """Write a minidump of the snapshot to ``path`` (atomically: nothing is left
        there on failure) and return it. ``callbacks`` never see
        IsProcessSnapshotCallback: it is answered S_FALSE here."""
        from ..dumper import _atomic_output

        if callbacks is not None and not isinstance(callbacks, DumpCallbacks):
            raise TypeError(f"callbacks must be a minidumpkit.DumpCallbacks instance, not "
                            f"{callbacks.__class__.__name__}")
        dump_type = coerce_dump_type(type)
        hpss = self.handle
        final = Path(path)
        with _atomic_output(final) as out:
            self.last_times = windows.write_from_handle(
                self._api, hpss, self.pid, out, dump_type,
                Trampoline(callbacks, snapshot=True, pid=self.pid))
        return final

    def close(self) -> None:
        """PssFreeSnapshot(GetCurrentProcess(), hpss) once, then close the process handle."""
        hpss, self._hpss = self._hpss, None
        hprocess, self._hprocess = self._hprocess, None
        if hpss is None:
            return
        try:
            code = self._free(self._api.kernel32.GetCurrentProcess(), hpss)
        finally:
            if hprocess is not None:
                windows.close_handle(self._api, hprocess)
        _winerror.check_win32(code, "PssFreeSnapshot", pid=self.pid)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_hpss", None) is None:
            return
        warnings.warn(f"unclosed {self!r}: use 'with' or close()", ResourceWarning,
                      source=self, stacklevel=2)
        with contextlib.suppress(Exception):
            self.close()
