"""The Windows backend: Microsoft's own writer, dbghelp's MiniDumpWriteDump, through cffi.

The backend contract (``_backends.load_backend``): :func:`check_target`,
:func:`write_dump` and :func:`take_snapshot`. The sequence is OpenProcess →
MiniDumpWriteDump (under ``dbghelp.LOCK``, with the callback trampoline of
:mod:`._win_trampoline`) → CloseHandle in ``finally``. Snapshots
(PssCaptureSnapshot, PssWalkSnapshot, PssQuerySnapshot) are in
:mod:`._win_snapshot` and share :func:`write_from_handle`.

Every function takes ``api``: the libraries and the two OS helpers it needs
(:class:`WinApi`). The default, :func:`winapi`, opens the real DLLs and exists on
Windows only; tests on Linux pass stand-ins, which is how everything here except
the DLLs themselves is exercised. NOT RUN ON WINDOWS YET: see docs/windows.md.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import IO, Any

from .._ffi import _winerror, dbghelp, kernel32
from ..callbacks import DumpCallbacks, _CallbacksPolicy
from ..errors import ProcessError, ProcessNotFound, UnsupportedError
from ..flags import MiniDumpType, coerce_dump_type
from . import _win_python
from ._win_trampoline import Trampoline

__all__ = [
    "DUMP_ACCESS",
    "WinApi",
    "WindowsDumpTimes",
    "callbacks_from_policy",
    "check_target",
    "close_handle",
    "open_process",
    "process_name",
    "take_snapshot",
    "winapi",
    "write_dump",
    "write_from_handle",
]

#: What MiniDumpWriteDump needs: query + read memory, DUP_HANDLE for WithHandleData.
DUMP_ACCESS = (kernel32.PROCESS_QUERY_INFORMATION | kernel32.PROCESS_VM_READ
               | kernel32.PROCESS_DUP_HANDLE)

# OpenProcess reports a pid that does not exist as ERROR_INVALID_PARAMETER.
_NOT_FOUND = (_winerror.ERROR_INVALID_PARAMETER,)


@dataclasses.dataclass(frozen=True)
class WinApi:
    """The foreign functions the backend calls, injectable for tests.

    ``kernel32`` and ``dbghelp`` are cffi libraries (or stand-ins with the same
    attributes and cdata results); ``pss`` is where the Pss* functions are looked
    up (kernel32.dll on Windows; a missing one raises UnsupportedError naming it);
    ``get_last_error`` reads the failing call's last error; ``osfhandle`` turns a
    C runtime fd into an OS handle (``msvcrt.get_osfhandle``); ``ntdll``
    (NtSuspendProcess, NtResumeProcess) is what the Python-aware capture suspends the
    target with: None (stand-ins without it) writes dumps without the capture.
    """

    kernel32: Any
    dbghelp: Any
    pss: Any
    get_last_error: Callable[[], int]
    osfhandle: Callable[[int], int]
    ntdll: Any = None


@functools.cache
def winapi() -> WinApi:
    """The real libraries (Windows only: ``load()`` raises UnsupportedError elsewhere)."""
    k32 = kernel32.load()
    dbg = dbghelp.load()
    import msvcrt  # Windows only

    osfhandle: Callable[[int], int] = msvcrt.get_osfhandle  # type: ignore[attr-defined,unused-ignore]
    return WinApi(kernel32=k32, dbghelp=dbg, pss=_pss_lib(), get_last_error=_winerror.last_error,
                  osfhandle=osfhandle, ntdll=kernel32.load_ntdll())


def _pss_lib() -> Any:
    from .._ffi import pss

    return pss.load()


@dataclasses.dataclass(frozen=True)
class WindowsDumpTimes:
    """What one MiniDumpWriteDump call did (``Dumper.last_times`` on Windows)."""

    write_ns: int  # the MiniDumpWriteDump call, callbacks included
    size: int  # bytes in the file
    callbacks: dict[int, int]  # callback type -> how often dbghelp asked
    self_dump: bool = False


def _address(handle: Any) -> int:
    """A HANDLE cdata (any of our FFIs) as an integer."""
    if handle is None:
        return 0
    if isinstance(handle, int):
        return handle
    return int(kernel32.ffi.cast("uintptr_t", handle))


def callbacks_from_policy(policy: object) -> DumpCallbacks | None:
    """The user's DumpCallbacks behind ``Dumper.write``'s policy (None: defaults).

    ``dumper.py`` adapts a DumpCallbacks into the Linux writer's DumpPolicy; the
    adapter keeps the original in ``.callbacks``. A bare DumpPolicy has no Windows
    meaning (dbghelp asks its own questions), so it is refused.
    """
    if policy is None or isinstance(policy, DumpCallbacks):
        return policy
    if isinstance(policy, _CallbacksPolicy):
        return policy.callbacks
    raise UnsupportedError(
        f"{type(policy).__name__} is a Linux writer policy; on Windows pass a "
        "minidumpkit.DumpCallbacks instance as callbacks=")


def open_process(api: WinApi, pid: int, access: int) -> Any:
    """OpenProcess(access, FALSE, pid), or the mapped error (unknown pid: ProcessNotFound)."""
    handle = api.kernel32.OpenProcess(access, 0, pid)
    ok = _address(handle) != 0
    _winerror.check_bool_hresult(ok, "OpenProcess", pid=pid, get_last_error=api.get_last_error,
                                 not_found=_NOT_FOUND)
    return handle


def close_handle(api: WinApi, handle: Any) -> None:
    """CloseHandle; a failure here would only hide the real error, so it is ignored
    (an invalid handle is a bug the tests' stand-ins catch)."""
    api.kernel32.CloseHandle(handle)


def process_name(pid: int, *, api: WinApi | None = None) -> str:
    """The file name of ``pid``'s image without its extension (``crash`` for
    ``C:\\bin\\crash.exe``): the ``<comm>`` of a watcher's dump names."""
    api = api or winapi()
    handle = open_process(api, pid, kernel32.PROCESS_QUERY_LIMITED_INFORMATION)
    try:
        size = kernel32.ffi.new("DWORD *", 1024)
        name = kernel32.ffi.new("WCHAR[]", 1024)
        ok = api.kernel32.QueryFullProcessImageNameW(handle, 0, name, size)
        _winerror.check_bool_hresult(ok, "QueryFullProcessImageNameW", pid=pid,
                                     get_last_error=api.get_last_error)
        path = kernel32.ffi.string(name, size[0])
    finally:
        close_handle(api, handle)
    return os.path.splitext(path.replace("/", "\\").rsplit("\\", 1)[-1])[0] or "process"


def check_target(pid: int, *, api: WinApi | None = None) -> None:
    """Raise unless ``pid`` is a live process this user may dump (the access a dump needs)."""
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"pid must be an int, not {type(pid).__name__}")
    api = api or winapi()
    handle = open_process(api, pid, DUMP_ACCESS)
    try:
        code = kernel32.ffi.new("DWORD *")
        if api.kernel32.GetExitCodeProcess(handle, code) and code[0] != kernel32.STILL_ACTIVE:
            # Someone still holds a handle to an exited process: nothing left to dump.
            raise ProcessNotFound(errno.ESRCH, f"process {pid} has exited "
                                  f"(exit code {code[0]})", pid=pid)
    finally:
        close_handle(api, handle)


def user_stream_param(streams: list[tuple[int, bytes]]) -> tuple[Any, list[Any]]:
    """A MINIDUMP_USER_STREAM_INFORMATION for ``streams`` ((type, bytes) pairs), NULL for
    none, and the cdata that must stay alive while dbghelp reads it."""
    ffi = dbghelp.ffi
    if not streams:
        return ffi.NULL, []
    array = ffi.new("MINIDUMP_USER_STREAM[]", len(streams))
    keep: list[Any] = [array]
    for entry, (stream_type, data) in zip(array, streams, strict=True):
        buffer = ffi.new("char[]", data)
        keep.append(buffer)
        entry.Type, entry.BufferSize, entry.Buffer = stream_type, len(data), buffer
    info = ffi.new("MINIDUMP_USER_STREAM_INFORMATION *")
    info.UserStreamCount, info.UserStreamArray = len(streams), array
    keep.append(info)
    return info, keep


def write_from_handle(api: WinApi, hprocess: Any, pid: int, out: IO[bytes],
                      dump_type: MiniDumpType, trampoline: Trampoline, *,
                      user_streams: list[tuple[int, bytes]] | None = None,
                      exception: Any = None) -> WindowsDumpTimes:
    """MiniDumpWriteDump(hprocess, pid, <out's OS handle>, dump_type) with the trampoline
    and ``user_streams`` ((stream type, bytes) pairs: UserStreamParam).

    ``exception``: a ``MINIDUMP_EXCEPTION_INFORMATION *`` (dbghelp.ffi) for the
    Exception stream (the crash watcher's, ``_win_watch.ExceptionParam``), else NULL.

    ``hprocess`` is a process handle, or an HPSS for a snapshot (the trampoline
    then answers IsProcessSnapshotCallback). Order after the call: an exception a
    callback raised is re-raised first (with its traceback), then a cancel, then
    dbghelp's own failure; the caller removes the partial file.
    """
    out.flush()
    hfile = dbghelp.ffi.cast("HANDLE", api.osfhandle(out.fileno()))
    process = dbghelp.ffi.cast("HANDLE", _address(hprocess))
    null = dbghelp.ffi.NULL
    streams, _alive = user_stream_param(user_streams or [])
    started = time.perf_counter_ns()
    with dbghelp.LOCK, trampoline.active() as info:
        ok = api.dbghelp.MiniDumpWriteDump(process, pid, hfile, int(dump_type),
                                           null if exception is None else exception,
                                           streams, info)
        # Read now: the trampoline's own cffi calls must not come between.
        code = 0 if ok else api.get_last_error()
    elapsed = time.perf_counter_ns() - started
    trampoline.raise_pending()
    _winerror.check_bool_hresult(ok, "MiniDumpWriteDump", pid=pid, get_last_error=lambda: code)
    # dbghelp wrote through the OS handle, behind the file object's back.
    size = out.seek(0, os.SEEK_END)
    # dbghelp has no progress callback: the one report is the end (docs/windows.md).
    trampoline.callbacks.progress(size, size)
    return WindowsDumpTimes(write_ns=elapsed, size=size, callbacks=dict(trampoline.counts))


#: write_dump takes ``python=False`` (no Python-aware capture)
PYTHON_CAPTURE = True


def write_dump(pid: int, out: IO[bytes], dump_type: int | MiniDumpType, *,
               policy: object = None, api: WinApi | None = None,
               all_memory: bool = False, python: bool = True) -> WindowsDumpTimes:
    """Write a minidump of ``pid`` into ``out`` (an open, seekable binary file).

    ``all_memory`` changes nothing: dbghelp's WithFullMemory already copies every
    committed readable page, image and mapped-file memory included. ``python``: when
    the target runs CPython (python3XY.dll), suspend it, walk its runtime and add that
    memory and a MinidumpkitPythonStream as user streams (:mod:`._win_python`)."""
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"pid must be an int, not {type(pid).__name__}")
    dump_type = coerce_dump_type(dump_type)
    callbacks = callbacks_from_policy(policy)
    api = api or winapi()
    if pid == api.kernel32.GetCurrentProcessId():
        return dump_self(pid, out, dump_type, callbacks, python=python)
    hprocess = open_process(api, pid, DUMP_ACCESS)
    try:
        if not python:
            return write_from_handle(api, hprocess, pid, out, dump_type,
                                     Trampoline(callbacks, pid=pid))
        with _win_python.held_capture(api, pid, hprocess) as streams:
            return write_from_handle(api, hprocess, pid, out, dump_type,
                                     Trampoline(callbacks, pid=pid), user_streams=streams)
    finally:
        close_handle(api, hprocess)


def take_snapshot(pid: int, flags: int, context_flags: int, *,
                  api: WinApi | None = None) -> Any:
    """The SnapshotBackend of ``Dumper.snapshot``: PssCaptureSnapshot(pid, flags,
    context_flags) as a :class:`~._win_snapshot.WindowsSnapshotBackend`.

    ``api`` (tests) is the only option; the Linux ones (``frozen_limit``,
    ``preflight_inputs``) have no Windows meaning and raise TypeError. A Windows
    without the Pss* functions raises ``_win_snapshot.PssUnavailable`` (an
    UnsupportedError and a SnapshotRefused: ``Dumper.write`` then dumps the live
    process).
    """
    from ._win_snapshot import take

    return take(pid, flags, context_flags, api=api)


Runner = Callable[..., "subprocess.CompletedProcess[bytes]"]


def dump_self(pid: int, out: IO[bytes], dump_type: MiniDumpType,
              callbacks: DumpCallbacks | None, *,
              runner: Runner = subprocess.run, python: bool = True) -> WindowsDumpTimes:
    """Dump our own process from a helper process, as Microsoft advises
    (MiniDumpWriteDump on the calling process gives unreliable stacks and can
    deadlock on the loader lock).

    The helper is ``python -m minidumpkit dump PID``; callbacks cannot follow it
    into another process, so a self-dump with callbacks is refused.
    """
    if callbacks is not None and type(callbacks) is not DumpCallbacks:
        raise UnsupportedError(
            "a dump of the calling process is written by a helper process on Windows "
            "(Microsoft's advice), and DumpCallbacks cannot run there: dump without "
            "callbacks, or dump this process from another one")
    out.flush()
    started = time.perf_counter_ns()
    # A name that does not exist yet: the helper's CLI refuses to replace a file.
    with tempfile.TemporaryDirectory(prefix="minidumpkit-self-") as scratch:
        tmp = os.path.join(scratch, "self.dmp")
        done = runner([sys.executable, "-m", "minidumpkit", "dump", str(pid), "-o", tmp,
                       "--type", f"0x{int(dump_type):x}", *([] if python else ["--no-python"])],
                      stdin=subprocess.DEVNULL, capture_output=True, check=False)
        if done.returncode != 0:
            message = (done.stderr or b"").decode("utf-8", "replace").strip()[-2000:]
            raise ProcessError(errno.EIO, f"the self-dump helper exited with status "
                               f"{done.returncode}: {message}", pid=pid)
        with open(tmp, "rb") as f:
            size = 0
            while chunk := f.read(1 << 20):
                out.write(chunk)
                size += len(chunk)
        out.flush()
    return WindowsDumpTimes(write_ns=time.perf_counter_ns() - started, size=size,
                            callbacks={}, self_dump=True)
