"""The MINIDUMP_CALLBACK_ROUTINE trampoline: dbghelp's questions to a :class:`DumpCallbacks`.

Pure marshalling: reads ``MINIDUMP_CALLBACK_INPUT``, builds the typed objects of
:mod:`minidumpkit.callbacks`, asks the user's object, writes
``MINIDUMP_CALLBACK_OUTPUT``. It opens no library, so it runs (and is tested) on
Linux, called from C through a real function pointer.

Lifetime (pygit2's Payload pattern, aesthetics P6): one C callback is created
per process by :func:`routine`; each dump gets a :class:`Trampoline`, whose
``ffi.new_handle(self)`` is the ``CallbackParam``. :meth:`Trampoline.active`
builds the ``MINIDUMP_CALLBACK_INFORMATION`` and keeps it, the handle and the
callback alive for the whole MiniDumpWriteDump call, then drops them so no
payload outlives the dump.

No exception may cross into dbghelp (cffi would print it and return 0, which
dbghelp reads as "skip this item", not "stop"). Every exception — BaseException,
KeyboardInterrupt included — is stored; from then on the trampoline answers
every CancelCallback with ``Cancel = CheckCancel = TRUE`` (the only way to stop
dbghelp) and every other question with its "leave it out" answer
(:data:`STOP_ANSWERS`). :meth:`Trampoline.raise_pending` re-raises it, with its
traceback, once MiniDumpWriteDump has returned.
"""

from __future__ import annotations

import contextlib
import errno
import functools
from collections import deque
from collections.abc import Iterator
from typing import Any

from .. import format as md
from .._ffi import dbghelp
from .._ffi._winerror import (
    ERROR_CANCELLED,
    hresult_from_win32,
    winerror_exception,
)
from ..callbacks import (
    CallbackModule,
    CallbackThread,
    DumpCallbacks,
    VmRegion,
    _answer_bool,
    _answer_flags,
    _answer_ranges,
)
from ..errors import DumpCancelled, ProcessError
from ..flags import CallbackType, ModuleWriteFlags, ThreadWriteFlags

__all__ = [
    "CANCEL_HRESULT",
    "DEFAULT_ANSWERS",
    "STOP_ANSWERS",
    "Trampoline",
    "routine",
]

ffi = dbghelp.ffi

#: HRESULT_FROM_WIN32(ERROR_CANCELLED): the Status that stops dbghelp where a Status
#: is the answer (ReadMemoryFailureCallback) once the dump must stop.
CANCEL_HRESULT = hresult_from_win32(ERROR_CANCELLED)

# MINIDUMP_CALLBACK_OUTPUT.MemorySize is a ULONG: bigger ranges go out in pieces.
_MAX_MEMORY_SIZE = 0xFFFFF000

# Room read from the input for the thread fields at either placement.
_THREAD_INPUT_BYTES = dbghelp.MSVC_X64.backing_store_end + 8

#: What the trampoline answers for each callback type when the method is not
#: overridden or minidumpkit answers itself (docs/windows.md repeats it). "Untouched"
#: leaves the output as dbghelp pre-filled it: Microsoft's dbgcore pre-fills
#: ``Status = E_NOTIMPL`` for the types it lets a callback take over (11, 16, 17, 19,
#: 20), which is its "the callback does not implement this" (measured, issue 12).
DEFAULT_ANSWERS: dict[CallbackType, str] = {
    CallbackType.ModuleCallback: "ModuleWriteFlags = module() & pre-filled flags; TRUE",
    CallbackType.ThreadCallback: "ThreadWriteFlags = thread() & pre-filled flags; TRUE",
    CallbackType.ThreadExCallback: "as ThreadCallback",
    CallbackType.IncludeThreadCallback: "return include_thread() (TRUE by default)",
    CallbackType.IncludeModuleCallback: "return include_module() (TRUE by default)",
    CallbackType.MemoryCallback: "one memory() range per call (MemoryBase/MemorySize, TRUE); "
                                 "FALSE when none is left",
    CallbackType.CancelCallback: "Cancel = cancel(), CheckCancel = TRUE; TRUE",
    CallbackType.WriteKernelMinidumpCallback: "Handle = NULL; FALSE (no kernel minidump)",
    CallbackType.KernelMinidumpStatusCallback: "output untouched; FALSE",
    CallbackType.RemoveMemoryCallback: "one remove_memory() range per call; FALSE when none left",
    CallbackType.IncludeVmRegionCallback: "Continue = TRUE; VmRegion as pre-filled if "
                                          "include_vm_region(), else its RegionSize = 0 (left "
                                          "out); TRUE. Asked once per region",
    CallbackType.IoStartCallback: "Status untouched (S_FALSE would hand the file I/O to "
                                  "the callback); TRUE",
    CallbackType.IoWriteAllCallback: "Status untouched; FALSE (only sent after IoStart S_FALSE)",
    CallbackType.IoFinishCallback: "Status untouched; FALSE (only sent after IoStart S_FALSE)",
    CallbackType.ReadMemoryFailureCallback: "Status = S_OK if read_memory_failure() (default) "
                                            "else the failure HRESULT, and the dump stops; TRUE",
    CallbackType.SecondaryFlagsCallback: "SecondaryFlags untouched (dbghelp's default); TRUE",
    CallbackType.IsProcessSnapshotCallback: "Status = S_FALSE for Snapshot.write, untouched "
                                            "otherwise; TRUE; never reaches the user",
    CallbackType.VmStartCallback: "Status untouched (S_FALSE would send every memory read "
                                  "to the callback); TRUE",
    CallbackType.VmQueryCallback: "VmQueryStatus untouched; FALSE (only sent after VmStart "
                                  "S_FALSE)",
    CallbackType.VmPreReadCallback: "VmReadStatus untouched; FALSE (only sent after VmStart "
                                    "S_FALSE)",
    CallbackType.VmPostReadCallback: "Status untouched; FALSE (only sent after VmStart S_FALSE)",
}

#: The answers once a callback has raised (or read_memory_failure() said stop).
STOP_ANSWERS: dict[CallbackType, str] = {
    CallbackType.CancelCallback: "Cancel = TRUE, CheckCancel = TRUE; TRUE",
    CallbackType.IncludeThreadCallback: "FALSE (thread left out)",
    CallbackType.IncludeModuleCallback: "FALSE (module left out)",
    CallbackType.ThreadCallback: "ThreadWriteFlags = 0; TRUE",
    CallbackType.ThreadExCallback: "ThreadWriteFlags = 0; TRUE",
    CallbackType.ModuleCallback: "ModuleWriteFlags = 0; TRUE",
    CallbackType.MemoryCallback: "MemoryBase = MemorySize = 0; FALSE",
    CallbackType.RemoveMemoryCallback: "MemoryBase = MemorySize = 0; FALSE",
    CallbackType.IncludeVmRegionCallback: "Continue = FALSE (the dump stops); TRUE",
    CallbackType.ReadMemoryFailureCallback: "Status = HRESULT_FROM_WIN32(ERROR_CANCELLED); TRUE",
}


def _u(raw: bytes, offset: int, width: int) -> int:
    return int.from_bytes(raw[offset:offset + width], "little")


class Trampoline:
    """The payload of one MiniDumpWriteDump call: the user's callbacks and what went wrong.

    ``callbacks`` may be None (every default). ``snapshot`` makes
    IsProcessSnapshotCallback answer S_FALSE (hProcess is an HPSS). ``pid`` goes
    into error messages.
    """

    def __init__(self, callbacks: DumpCallbacks | None, *, snapshot: bool = False,
                 pid: int | None = None) -> None:
        self.callbacks = callbacks if callbacks is not None else DumpCallbacks()
        self.snapshot = snapshot
        self.pid = pid
        #: the exception a callback raised (or the stop read_memory_failure asked for)
        self.error: BaseException | None = None
        #: DumpCallbacks.cancel() returned True
        self.cancelled = False
        #: callbacks answered, by type (what dbghelp actually asked)
        self.counts: dict[int, int] = {}
        self._memory: deque[tuple[int, int]] | None = None
        self._remove: deque[tuple[int, int]] | None = None
        self._regions: dict[tuple[int, int], bool] = {}  # include_vm_region's answers
        self._keep: tuple[Any, Any, Any] | None = None

    # --- lifetime ----------------------------------------------------------------------

    @contextlib.contextmanager
    def active(self) -> Iterator[Any]:
        """The ``PMINIDUMP_CALLBACK_INFORMATION`` to pass; valid inside the block only."""
        handle = ffi.new_handle(self)
        cb = routine()
        info = ffi.new("MINIDUMP_CALLBACK_INFORMATION *",
                       {"CallbackRoutine": cb, "CallbackParam": handle})
        self._keep = (handle, cb, info)  # dbghelp holds raw pointers to all three
        try:
            yield info
        finally:
            self._keep = None

    def raise_pending(self) -> None:
        """Re-raise what a callback raised (its own traceback), or DumpCancelled."""
        error, self.error = self.error, None
        if error is not None:
            try:
                raise error.with_traceback(error.__traceback__)
            finally:
                del error  # no cycle through this frame
        if self.cancelled:
            raise DumpCancelled("the dump was cancelled: DumpCallbacks.cancel() returned True")

    @property
    def stopping(self) -> bool:
        return self.error is not None or self.cancelled

    # --- dispatch -----------------------------------------------------------------------

    def dispatch(self, inp: Any, out: Any) -> int:
        """Answer one callback; never raises."""
        kind = int(inp.CallbackType)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        try:
            return self._answer(kind, inp, out)
        except BaseException as exc:  # noqa: BLE001  (KeyboardInterrupt too: never into C)
            if self.error is None:
                self.error = exc
            try:
                return self._stop_answer(kind, out)
            except BaseException:  # noqa: BLE001
                return 0

    def _stop_answer(self, kind: int, out: Any) -> int:
        if kind == CallbackType.CancelCallback:
            out.CheckCancel, out.Cancel = 1, 1
            return 1
        if kind in (CallbackType.ThreadCallback, CallbackType.ThreadExCallback):
            out.ThreadWriteFlags = 0
            return 1
        if kind == CallbackType.ModuleCallback:
            out.ModuleWriteFlags = 0
            return 1
        if kind in (CallbackType.MemoryCallback, CallbackType.RemoveMemoryCallback):
            out.MemoryBase, out.MemorySize = 0, 0
            return 0
        if kind == CallbackType.IncludeVmRegionCallback:
            out.Continue = 0
            return 1
        if kind == CallbackType.ReadMemoryFailureCallback:
            out.Status = _signed(CANCEL_HRESULT)
            return 1
        if kind in (CallbackType.IncludeThreadCallback, CallbackType.IncludeModuleCallback):
            return 0
        return self._system_answer(kind, inp=None, out=out)

    def _answer(self, kind: int, inp: Any, out: Any) -> int:
        if kind == CallbackType.IsProcessSnapshotCallback or kind not in _USER_TYPES:
            return self._system_answer(kind, inp, out)
        if self.stopping:
            return self._stop_answer(kind, out)
        cb = self.callbacks
        if kind == CallbackType.CancelCallback:
            if _answer_bool(cb.cancel(), "cancel"):
                self.cancelled = True
                out.CheckCancel, out.Cancel = 1, 1
            else:
                out.CheckCancel, out.Cancel = 1, 0  # keep polling: a later error must stop it
            return 1
        if kind == CallbackType.IncludeThreadCallback:
            thread = CallbackThread(tid=int(inp.IncludeThread.ThreadId))
            return int(_answer_bool(cb.include_thread(thread), "include_thread"))
        if kind == CallbackType.IncludeModuleCallback:
            module = CallbackModule(path="", base=int(inp.IncludeModule.BaseOfImage))
            return int(_answer_bool(cb.include_module(module), "include_module"))
        if kind in (CallbackType.ThreadCallback, CallbackType.ThreadExCallback):
            prefilled = int(out.ThreadWriteFlags)
            flags = cb.thread(thread_from_input(inp), ThreadWriteFlags(prefilled))
            out.ThreadWriteFlags = _answer_flags(flags, "thread", ThreadWriteFlags) & prefilled
            return 1
        if kind == CallbackType.ModuleCallback:
            prefilled = int(out.ModuleWriteFlags)
            mflags = cb.module(module_from_input(inp), ModuleWriteFlags(prefilled))
            out.ModuleWriteFlags = _answer_flags(mflags, "module", ModuleWriteFlags) & prefilled
            return 1
        if kind == CallbackType.MemoryCallback:
            if self._memory is None:
                self._memory = _pieces(_answer_ranges(cb.memory(), "memory"))
            return _next_range(self._memory, out)
        if kind == CallbackType.RemoveMemoryCallback:
            if self._remove is None:
                self._remove = _pieces(_answer_ranges(cb.remove_memory(), "remove_memory"))
            return _next_range(self._remove, out)
        if kind == CallbackType.IncludeVmRegionCallback:
            # Microsoft's documentation: RegionSize = 0 leaves the region out, while
            # Continue = FALSE stops the dump (MiniDumpWriteDump fails). dbghelp asks
            # twice per region in its full-memory pass: the user is asked once.
            info = md.MemoryInfo.unpack_from(bytes(ffi.buffer(ffi.addressof(out, "VmRegion"),
                                                              md.MemoryInfo.SIZE)))
            key = (info.base_address, info.region_size)
            keep = self._regions.get(key)
            if keep is None:
                keep = self._regions[key] = _answer_bool(
                    cb.include_vm_region(VmRegion.from_memory_info(info)), "include_vm_region")
            if not keep:
                out.VmRegion.RegionSize = 0
            out.Continue = 1
            return 1
        if kind == CallbackType.ReadMemoryFailureCallback:
            r = inp.ReadMemoryFailure
            address, size, status = int(r.Offset), int(r.Bytes), int(r.FailureStatus) & 0xFFFFFFFF
            error = _read_error(status, address, size, self.pid)
            if _answer_bool(cb.read_memory_failure(address, size, error),
                            "read_memory_failure"):
                out.Status = dbghelp.S_OK
                return 1
            where = f"process {self.pid}" if self.pid is not None else "the target"
            stop = ProcessError(
                errno.EFAULT, f"cannot read {size} bytes of {where} at 0x{address:x} and "
                "DumpCallbacks.read_memory_failure() returned False, which stops the dump",
                pid=self.pid)
            stop.__cause__ = error
            self.error = stop
            out.Status = _signed(status if status & 0x80000000 else CANCEL_HRESULT)
            return 1
        raise AssertionError(f"unhandled callback type {kind}")  # pragma: no cover

    def _system_answer(self, kind: int, inp: Any, out: Any) -> int:
        """The answers minidumpkit gives itself; the user never sees these types.

        Microsoft's documentation (MINIDUMP_CALLBACK_TYPE): a callback that returns
        TRUE with ``Status = S_FALSE`` takes over the file I/O (IoStartCallback) or
        every memory read (VmStartCallback); dbghelp pre-fills E_NOTIMPL, and a
        callback that leaves it there keeps dbghelp's own I/O and reads, which is
        what Microsoft's snapshot example does (it answers only type 16 and returns
        TRUE for everything else). So nothing here writes ``Status`` except
        IsProcessSnapshotCallback for a snapshot.
        """
        if kind == CallbackType.IsProcessSnapshotCallback:
            if self.snapshot:
                out.Status = dbghelp.S_FALSE  # hProcess is an HPSS
            return 1
        if kind in (CallbackType.IoStartCallback, CallbackType.VmStartCallback,
                    CallbackType.SecondaryFlagsCallback):
            return 1
        if kind == CallbackType.WriteKernelMinidumpCallback:
            out.Handle = ffi.NULL
            return 0
        # IoWriteAll/IoFinish and VmQuery/VmPreRead/VmPostRead follow only an S_FALSE
        # this trampoline never gives: FALSE, output untouched (an I/O or read this
        # callback cannot do fails, as documented). KernelMinidumpStatusCallback and
        # types newer than this module: FALSE, untouched.
        return 0


_USER_TYPES = frozenset({
    CallbackType.CancelCallback, CallbackType.IncludeThreadCallback,
    CallbackType.IncludeModuleCallback, CallbackType.ThreadCallback,
    CallbackType.ThreadExCallback, CallbackType.ModuleCallback, CallbackType.MemoryCallback,
    CallbackType.RemoveMemoryCallback, CallbackType.IncludeVmRegionCallback,
    CallbackType.ReadMemoryFailureCallback,
})


def _signed(hresult: int) -> int:
    hresult &= 0xFFFFFFFF
    return hresult - (1 << 32) if hresult & 0x80000000 else hresult


def _pieces(ranges: list[tuple[int, int]]) -> deque[tuple[int, int]]:
    queue: deque[tuple[int, int]] = deque()
    for base, size in ranges:
        while size > 0:
            part = min(size, _MAX_MEMORY_SIZE)
            queue.append((base, part))
            base, size = base + part, size - part
    return queue


def _next_range(queue: deque[tuple[int, int]], out: Any) -> int:
    if not queue:
        out.MemoryBase, out.MemorySize = 0, 0
        return 0
    out.MemoryBase, out.MemorySize = queue.popleft()
    return 1


def _read_error(status: int, address: int, size: int, pid: int | None) -> OSError:
    exc = winerror_exception(status, f"reading {size} bytes at 0x{address:x}", pid=pid)
    if isinstance(exc, OSError):
        return exc
    wrapped = ProcessError(errno.EIO, str(exc), pid=pid)
    setattr(wrapped, "winerror", getattr(exc, "winerror", None))  # noqa: B010
    return wrapped


def thread_from_input(inp: Any) -> CallbackThread:
    """The CallbackThread of a Thread/ThreadEx callback input, at whichever placement
    dbghelp used (``dbghelp.thread_callback_layout``).

    The stack range is given low to high whatever order the DLL sends: Wine's
    dbghelp sends StackBase = the low end (just below the stack pointer) and
    StackEnd = the top, while Microsoft's sends StackBase = the top (the stack's
    base, from which it grows down) and StackEnd = the stack pointer (measured,
    issue 12).
    """
    raw = bytes(ffi.buffer(inp, _THREAD_INPUT_BYTES))
    tid = int(inp.Thread.ThreadId)
    layout = dbghelp.thread_callback_layout(raw)
    if layout is None:
        # No x64 CONTEXT at either place (an x86 dbghelp, or garbage): the declared
        # (compiler-independent on x86) stack fields, no register set.
        low, high = _low_high(int(inp.Thread.StackBase), int(inp.Thread.StackEnd))
        return CallbackThread(tid=tid, stack_base=low, stack_end=high)
    context = md.ContextAMD64.unpack_from(raw, layout.context)
    low, high = _low_high(_u(raw, layout.stack_base, 8), _u(raw, layout.stack_end, 8))
    return CallbackThread(tid=tid, context=context, stack_base=low, stack_end=high)


def _low_high(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a <= b else (b, a)


def module_from_input(inp: Any) -> CallbackModule:
    """The CallbackModule of a ModuleCallback input."""
    m = inp.Module
    path = ffi.string(m.FullPath) if m.FullPath != ffi.NULL else ""
    version_raw = bytes(ffi.buffer(ffi.addressof(m, "VersionInfo"), md.VsFixedFileInfo.SIZE))
    version = (md.VsFixedFileInfo.unpack_from(version_raw)
               if any(version_raw) else None)  # all zero: the image has no version resource

    def blob(pointer: Any, size: int) -> bytes:
        return bytes(ffi.buffer(pointer, size)) if pointer != ffi.NULL and size else b""

    return CallbackModule(path=str(path), base=int(m.BaseOfImage), size=int(m.SizeOfImage),
                          version=version, time_date_stamp=int(m.TimeDateStamp),
                          checksum=int(m.CheckSum),
                          cv_record=blob(m.CvRecord, int(m.SizeOfCvRecord)),
                          misc_record=blob(m.MiscRecord, int(m.SizeOfMiscRecord)))


def _entry(param: Any, inp: Any, out: Any) -> int:
    try:
        payload = ffi.from_handle(param)
    except BaseException:  # noqa: BLE001  a NULL or stale CallbackParam: answer "no"
        return 0
    if not isinstance(payload, Trampoline):
        return 0
    return payload.dispatch(inp, out)


@functools.cache
def routine() -> Any:
    """The one C ``MINIDUMP_CALLBACK_ROUTINE`` of this process (made on first use:
    creating a cffi callback maps executable memory, which nothing does at import)."""
    return ffi.callback("MINIDUMP_CALLBACK_ROUTINE", _entry, error=0)

