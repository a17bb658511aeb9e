"""Watching a process on Windows: the debugging API, and a dump at a second-chance exception.

:class:`WindowsWatch` is the debugger of one process: started by it
(:func:`spawn_debugged`: CreateProcess with ``DEBUG_ONLY_THIS_PROCESS``, through
``subprocess.Popen``) or attached to (``DebugActiveProcess``). Its loop is
``WaitForDebugEvent`` / ``ContinueDebugEvent``; while an event is reported every
thread of the process is frozen by the system, so a dump written then sees the
process exactly at the event.

* An exception's first chance is passed on (``DBG_EXCEPTION_NOT_HANDLED``): the
  program's own handlers (SEH, vectored) run as without us. With ``first_chance``,
  one that is an error (severity bits 11: access violation, illegal instruction, a
  C++ throw, ...) is dumped first.
* The second chance (``dwFirstChance == 0``: no handler took it, the process is about
  to die) is dumped with a MINIDUMP_EXCEPTION_INFORMATION built here: the debug
  event's EXCEPTION_RECORD and the thread's CONTEXT (GetThreadContext), both in our
  memory (``ClientPointers = FALSE``). Then it is continued with
  ``DBG_EXCEPTION_NOT_HANDLED``: the system ends the process with the exception code
  as its exit code, as it would have.
* The loader's breakpoint (the first one, at process start or from the thread
  ``DebugActiveProcess`` injects) is continued with ``DBG_CONTINUE``, as every
  debugger does.
* The file handles of CREATE_PROCESS and LOAD_DLL events are closed at once; the
  process and thread handles the events carry belong to the system (it closes them
  at EXIT_THREAD / EXIT_PROCESS).

``DebugSetProcessKillOnExit(FALSE)`` is set first thing, so the process survives us
if we die; every other way out (the process exits, ``should_stop()``, Ctrl-C, an
error) continues a pending event and calls ``DebugActiveProcessStop``. Every call
is made from the thread that called :meth:`WindowsWatch.attach` or
:func:`spawn_debugged` (Windows ties a debuggee to that thread).
"""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Callable, Sequence
from typing import IO, Any

from .._ffi import _winerror, dbghelp, kernel32
from .._triggers import Triggers
from ..errors import AlreadyTraced
from ..flags import ContextFlags, MiniDumpType

WriteFn = Callable[[IO[bytes], MiniDumpType, bool], object]
DumpHandler = Callable[[str, WriteFn], None]

EXCEPTION_BREAKPOINT = 0x80000003
STATUS_WX86_BREAKPOINT = 0x4000001F  # the loader breakpoint of a WOW64 process
#: How long one WaitForDebugEvent waits (ms) before should_stop() is asked again.
POLL_MS = 100
ERROR_SEM_TIMEOUT = 121  # WaitForDebugEvent's "no event within the time-out"


def is_error_code(code: int) -> bool:
    """NTSTATUS severity ERROR (the top two bits set): what --first-chance dumps.
    Breakpoints (0x80000003, a warning), thread naming (0x406D1388) and debug
    prints (0x4001000A) are not."""
    return (code & 0xC0000000) == 0xC0000000


class WindowsWatch:
    """The debugger of process ``pid``: ``on_dump(trigger, write)`` at each dump.

    ``created``: the process was started by :func:`spawn_debugged` on this thread
    (already being debugged); otherwise :meth:`attach` calls DebugActiveProcess.
    """

    def __init__(self, pid: int, triggers: Triggers, on_dump: DumpHandler, *,
                 created: bool = False,
                 on_error: Callable[[BaseException], object] | None = None,
                 api: Any = None) -> None:
        self.pid = pid
        self.triggers = triggers
        self.on_dump = on_dump
        self.on_error = on_error
        self.created = created
        self.dumps = 0
        self.exit_code: int | None = None  # from EXIT_PROCESS_DEBUG_EVENT
        self.finished = False  # the process is gone
        self.detached = False
        self.attached = created
        self._api = api
        self._event = kernel32.ffi.new("DEBUG_EVENT *")
        self._pending: tuple[int, int] | None = None  # (tid, status) not yet continued
        self._loader_breakpoint_seen = False

    @property
    def api(self) -> Any:
        if self._api is None:
            from .windows import winapi

            self._api = winapi()
        return self._api

    # --- attaching ------------------------------------------------------------

    def attach(self) -> None:
        """DebugActiveProcess(pid) unless we created it; then KillOnExit FALSE."""
        k32 = self.api.kernel32
        if not self.created:
            _refuse_if_debugged(self.api, self.pid)
            ok = k32.DebugActiveProcess(self.pid)
            _winerror.check_bool_hresult(ok, "DebugActiveProcess", pid=self.pid,
                                         get_last_error=self.api.get_last_error,
                                         not_found=(_winerror.ERROR_INVALID_PARAMETER,))
            self.attached = True
        ok = k32.DebugSetProcessKillOnExit(0)
        if not ok:
            code = self.api.get_last_error()
            self.detach()
            raise _winerror.winerror_exception(code, "DebugSetProcessKillOnExit", pid=self.pid)

    # --- the loop -------------------------------------------------------------

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Handle debug events until the process exits or ``should_stop()``; detaches
        on every way out but the exit (also on an exception or KeyboardInterrupt)."""
        try:
            while not self.finished and not should_stop():
                if self._wait(POLL_MS):
                    self._handle()
        finally:
            if not self.finished:
                self.detach()

    def _wait(self, timeout_ms: int) -> bool:
        ok = self.api.kernel32.WaitForDebugEvent(self._event, timeout_ms)
        if ok:
            self._pending = (int(self._event.dwThreadId), kernel32.DBG_CONTINUE)
            return True
        code = self.api.get_last_error()
        if code == ERROR_SEM_TIMEOUT:
            return False
        raise _winerror.winerror_exception(code, "WaitForDebugEvent", pid=self.pid)

    def _handle(self) -> None:
        event = self._event
        kind = int(event.dwDebugEventCode)
        if int(event.dwProcessId) != self.pid:  # not ours (DEBUG_ONLY_THIS_PROCESS: never)
            self._continue(kernel32.DBG_CONTINUE)
            return
        if kind == kernel32.CREATE_PROCESS_DEBUG_EVENT:
            self._close(event.u.CreateProcessInfo.hFile)
        elif kind == kernel32.LOAD_DLL_DEBUG_EVENT:
            self._close(event.u.LoadDll.hFile)
        elif kind == kernel32.EXIT_PROCESS_DEBUG_EVENT:
            self.exit_code = int(event.u.ExitProcess.dwExitCode)
            self.finished = True
        elif kind == kernel32.EXCEPTION_DEBUG_EVENT:
            self._continue(self._on_exception())
            return
        self._continue(kernel32.DBG_CONTINUE)

    def _on_exception(self) -> int:
        """The continue status for the pending exception event (after a dump, if one)."""
        info = self._event.u.Exception
        record = info.ExceptionRecord
        code = int(record.ExceptionCode)
        first = bool(info.dwFirstChance)
        if first and not self._loader_breakpoint_seen and code in (EXCEPTION_BREAKPOINT,
                                                                     STATUS_WX86_BREAKPOINT):
            self._loader_breakpoint_seen = True
            return kernel32.DBG_CONTINUE
        if not first and self.triggers.on_crash:
            self._dump("crash", always=True)
        elif first and self.triggers.first_chance and is_error_code(code):
            self._dump("first-chance")
        return kernel32.DBG_EXCEPTION_NOT_HANDLED

    def _continue(self, status: int) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        ok = self.api.kernel32.ContinueDebugEvent(self.pid, pending[0], status)
        if not ok:
            raise _winerror.winerror_exception(self.api.get_last_error(), "ContinueDebugEvent",
                                               pid=self.pid)

    def _close(self, handle: Any) -> None:
        if handle != kernel32.ffi.NULL:
            self.api.kernel32.CloseHandle(handle)

    # --- dumping --------------------------------------------------------------

    def _dump(self, trigger: str, *, always: bool = False) -> None:
        if self.dumps >= self.triggers.count and not always:
            return
        self.dumps += 1
        tid = int(self._event.dwThreadId)
        try:
            exception = ExceptionParam(self.api, tid, self._event.u.Exception.ExceptionRecord)
        except OSError as exc:  # the thread's context is unreadable: report, watch on
            if self.on_error is None:
                raise
            self.on_error(exc)
            return

        def write(out: IO[bytes], dump_type: MiniDumpType, all_memory: bool) -> object:
            from ._win_trampoline import Trampoline
            from .windows import DUMP_ACCESS, close_handle, open_process, write_from_handle

            hprocess = open_process(self.api, self.pid, DUMP_ACCESS)
            try:
                return write_from_handle(self.api, hprocess, self.pid, out, dump_type,
                                         Trampoline(None, pid=self.pid),
                                         exception=exception.pointer)
            finally:
                close_handle(self.api, hprocess)

        try:
            self.on_dump(trigger, write)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001  reported; the watch goes on
            if self.on_error is None:
                raise
            self.on_error(exc)

    # --- detaching ------------------------------------------------------------

    def detach(self) -> None:
        """Continue a pending event (its exception passed on), then
        DebugActiveProcessStop. Idempotent; a KeyboardInterrupt meanwhile is
        re-raised once the process is let go."""
        deferred: BaseException | None = None
        while not self.detached:
            try:
                self._detach_once()
            except KeyboardInterrupt as exc:
                deferred = exc
        if deferred is not None:
            raise deferred

    def _detach_once(self) -> None:
        if self._pending is not None:
            kind = int(self._event.dwDebugEventCode)
            try:
                self._continue(kernel32.DBG_EXCEPTION_NOT_HANDLED
                               if kind == kernel32.EXCEPTION_DEBUG_EVENT
                               and not self._is_loader_breakpoint() else kernel32.DBG_CONTINUE)
            except OSError:
                pass  # (the process is gone) DebugActiveProcessStop still comes
        if self.attached and not self.finished:
            self.api.kernel32.DebugActiveProcessStop(self.pid)  # fails only if already gone
        self.attached = False
        self.detached = True

    def _is_loader_breakpoint(self) -> bool:
        code = int(self._event.u.Exception.ExceptionRecord.ExceptionCode)
        return not self._loader_breakpoint_seen and code in (EXCEPTION_BREAKPOINT,
                                                             STATUS_WX86_BREAKPOINT)


class ExceptionParam:
    """MINIDUMP_EXCEPTION_INFORMATION for thread ``tid`` at the reported exception:
    a copy of the debug event's EXCEPTION_RECORD (its ``ExceptionRecord`` chain
    pointer, an address in the debuggee, cleared) and the thread's CONTEXT, all in
    this process (``ClientPointers = FALSE``). ``pointer`` is what MiniDumpWriteDump
    takes; it stays valid as long as this object lives."""

    def __init__(self, api: Any, tid: int, record: Any) -> None:
        ffi = dbghelp.ffi
        self._record = ffi.new("EXCEPTION_RECORD *")
        ffi.memmove(self._record, kernel32.ffi.buffer(kernel32.ffi.addressof(record)),
                    ffi.sizeof("EXCEPTION_RECORD"))
        self._record.ExceptionRecord = ffi.NULL
        self._context_owner, context = kernel32.new_context()
        context.ContextFlags = int(ContextFlags.ALL)
        hthread = api.kernel32.OpenThread(
            kernel32.THREAD_GET_CONTEXT | kernel32.THREAD_QUERY_INFORMATION, 0, tid)
        _winerror.check_bool_hresult(hthread != kernel32.ffi.NULL, "OpenThread",
                                     get_last_error=api.get_last_error)
        try:
            ok = api.kernel32.GetThreadContext(hthread, context)
            _winerror.check_bool_hresult(ok, "GetThreadContext",
                                         get_last_error=api.get_last_error)
        finally:
            api.kernel32.CloseHandle(hthread)
        self._pointers = ffi.new("EXCEPTION_POINTERS *")
        self._pointers.ExceptionRecord = self._record
        self._pointers.ContextRecord = ffi.cast(
            "PCONTEXT", int(kernel32.ffi.cast("uintptr_t", context)))
        self.pointer = ffi.new("MINIDUMP_EXCEPTION_INFORMATION *")
        self.pointer.ThreadId = tid
        self.pointer.ExceptionPointers = self._pointers
        self.pointer.ClientPointers = 0


def _refuse_if_debugged(api: Any, pid: int) -> None:
    """AlreadyTraced if another debugger holds ``pid`` (CheckRemoteDebuggerPresent)."""
    from .windows import close_handle, open_process

    handle = open_process(api, pid, kernel32.PROCESS_QUERY_INFORMATION)
    try:
        present = kernel32.ffi.new("BOOL *")
        if api.kernel32.CheckRemoteDebuggerPresent(handle, present) and present[0]:
            raise AlreadyTraced(errno.EPERM, f"process {pid} is already being debugged: "
                                "detach the other debugger first", pid=pid)
    finally:
        close_handle(api, handle)


def debugger_present(pid: int, api: Any = None) -> bool:
    """Whether a debugger holds ``pid`` now (CheckRemoteDebuggerPresent)."""
    from .windows import close_handle, open_process, winapi

    api = api or winapi()
    handle = open_process(api, pid, kernel32.PROCESS_QUERY_INFORMATION)
    try:
        present = kernel32.ffi.new("BOOL *")
        _winerror.check_bool_hresult(api.kernel32.CheckRemoteDebuggerPresent(handle, present),
                                     "CheckRemoteDebuggerPresent", pid=pid,
                                     get_last_error=api.get_last_error)
        return bool(present[0])
    finally:
        close_handle(api, handle)


def spawn_debugged(argv: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start ``argv`` with CreateProcess(DEBUG_ONLY_THIS_PROCESS) (``subprocess.Popen``
    makes the call: command-line quoting, PATH search and stdio as usual). The
    calling thread is its debugger. FileNotFoundError / PermissionError as Popen
    raises them."""
    return subprocess.Popen(list(argv), creationflags=kernel32.DEBUG_ONLY_THIS_PROCESS)


def wait_exit_code(proc: subprocess.Popen[bytes], timeout: float | None = None) -> int:
    """The exit code of a process we no longer debug (unsigned, as Windows keeps it)."""
    code = proc.wait(timeout)
    return code & 0xFFFFFFFF


def wait_for_pid(pid: int, api: Any = None) -> int:
    """Wait for process ``pid`` (not ours to wait for through Popen) and return its
    exit code."""
    from .windows import close_handle, open_process, winapi

    api = api or winapi()
    handle = open_process(api, pid, kernel32.SYNCHRONIZE
                          | kernel32.PROCESS_QUERY_LIMITED_INFORMATION)
    try:
        while api.kernel32.WaitForSingleObject(handle, 200) == kernel32.WAIT_TIMEOUT:
            pass  # (a short wait at a time: Ctrl-C is seen between two)
        code = kernel32.ffi.new("DWORD *")
        _winerror.check_bool_hresult(api.kernel32.GetExitCodeProcess(handle, code),
                                     "GetExitCodeProcess", pid=pid,
                                     get_last_error=api.get_last_error)
        return int(code[0])
    finally:
        close_handle(api, handle)


__all__ = ["ExceptionParam", "WindowsWatch", "debugger_present", "is_error_code",
           "spawn_debugged", "wait_exit_code", "wait_for_pid"]
