"""The Windows crash watcher's debug loop (_backends/_win_watch.py) with stand-in DLLs.

The real thing runs under Wine (tests/wine/test_wine_crash.py); here a scripted
kernel32 hands out DEBUG_EVENTs (filled into the loop's own cffi structure, at the
offsets the layout test pins) and records every call, so the paths Wine cannot show
on demand are checked: the answer to each event, the handles closed, what
MiniDumpWriteDump receives, and that Ctrl-C, should_stop() and errors all end in
ContinueDebugEvent for the pending event and DebugActiveProcessStop.
"""

from __future__ import annotations

import tempfile
from typing import Any

import pytest

from minidumpkit import watch
from minidumpkit._backends import _win_watch as ww
from minidumpkit._backends.windows import WinApi
from minidumpkit._ffi import dbghelp, kernel32
from minidumpkit._triggers import Triggers
from minidumpkit.errors import AlreadyTraced, UnsupportedError

K = kernel32
PID, MAIN, WORKER = 4242, 100, 104
AV = 0xC0000005


def event(code: int, tid: int = MAIN, **fields: Any) -> dict[str, Any]:
    return {"code": code, "tid": tid, **fields}


def exception(code: int, first: bool, tid: int = MAIN, address: int = 0x140001589,
              params: tuple[int, ...] = ()) -> dict[str, Any]:
    return event(K.EXCEPTION_DEBUG_EVENT, tid, exc=(code, first, address, params))


class FakeKernel32:
    """Scripted debug events; every call recorded in ``calls``."""

    def __init__(self, events: list[dict[str, Any]], *, debugged: bool = False,
                 interrupt_at: int | None = None) -> None:
        self.events = list(events)
        self.calls: list[tuple[Any, ...]] = []
        self.debugged = debugged
        self.interrupt_at = interrupt_at  # KeyboardInterrupt from the nth wait
        self.waits = 0

    def _h(self, value: Any) -> int:
        return int(K.ffi.cast("uintptr_t", value))

    def WaitForDebugEvent(self, ev: Any, ms: int) -> int:
        self.waits += 1
        if self.interrupt_at is not None and self.waits >= self.interrupt_at:
            raise KeyboardInterrupt
        if not self.events:
            self.error = ww.ERROR_SEM_TIMEOUT
            return 0
        spec = self.events.pop(0)
        K.ffi.memmove(ev, bytes(K.ffi.sizeof("DEBUG_EVENT")), K.ffi.sizeof("DEBUG_EVENT"))
        ev.dwDebugEventCode, ev.dwProcessId, ev.dwThreadId = spec["code"], PID, spec["tid"]
        if "file" in spec:
            target = (ev.u.CreateProcessInfo if spec["code"] == K.CREATE_PROCESS_DEBUG_EVENT
                      else ev.u.LoadDll)
            target.hFile = K.ffi.cast("HANDLE", spec["file"])
        if "exit" in spec:
            ev.u.ExitProcess.dwExitCode = spec["exit"]
        if "exc" in spec:
            code, first, address, params = spec["exc"]
            rec = ev.u.Exception.ExceptionRecord
            rec.ExceptionCode, rec.ExceptionAddress = code, K.ffi.cast("PVOID", address)
            rec.ExceptionRecord = K.ffi.cast("PEXCEPTION_RECORD", 0xDEAD0000)  # debuggee's
            rec.NumberParameters = len(params)
            for i, p in enumerate(params):
                rec.ExceptionInformation[i] = p
            ev.u.Exception.dwFirstChance = int(first)
        self.calls.append(("event", spec["code"], spec["tid"]))
        return 1

    def ContinueDebugEvent(self, pid: int, tid: int, status: int) -> int:
        self.calls.append(("continue", pid, tid, status))
        return 1

    def DebugActiveProcess(self, pid: int) -> int:
        self.calls.append(("attach", pid))
        return 1

    def DebugActiveProcessStop(self, pid: int) -> int:
        self.calls.append(("stop", pid))
        return 1

    def DebugSetProcessKillOnExit(self, kill: int) -> int:
        self.calls.append(("kill_on_exit", kill))
        return 1

    def OpenProcess(self, access: int, inherit: int, pid: int) -> Any:
        self.calls.append(("open_process", pid))
        return K.ffi.cast("HANDLE", 0x500)

    def CheckRemoteDebuggerPresent(self, handle: Any, out: Any) -> int:
        out[0] = int(self.debugged)
        return 1

    def OpenThread(self, access: int, inherit: int, tid: int) -> Any:
        self.calls.append(("open_thread", tid, access))
        return K.ffi.cast("HANDLE", 0x700 + tid)

    def GetThreadContext(self, handle: Any, context: Any) -> int:
        address = int(K.ffi.cast("uintptr_t", context))
        self.calls.append(("get_context", self._h(handle), address % 16,
                           int(context.ContextFlags)))
        context.Rip, context.Rsp = 0x14000158C, 0x21FCF8
        return 1

    def CloseHandle(self, handle: Any) -> int:
        self.calls.append(("close", self._h(handle)))
        return 1

    def GetCurrentProcessId(self) -> int:
        return 1


class FakeDbgHelp:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def MiniDumpWriteDump(self, hprocess: Any, pid: int, hfile: Any, kind: int,
                          exception: Any, streams: Any, callbacks: Any) -> int:
        ffi = dbghelp.ffi
        info: dict[str, Any] = {"pid": pid, "type": kind}
        if exception != ffi.NULL:
            pointers = exception.ExceptionPointers
            rec = pointers.ExceptionRecord
            info.update(tid=exception.ThreadId, client=exception.ClientPointers,
                        code=rec.ExceptionCode, chain=int(ffi.cast("uintptr_t",
                                                                   rec.ExceptionRecord)),
                        address=int(ffi.cast("uintptr_t", rec.ExceptionAddress)),
                        params=[rec.ExceptionInformation[i]
                                for i in range(rec.NumberParameters)],
                        rip=pointers.ContextRecord.Rip,
                        flags=pointers.ContextRecord.ContextFlags)
        self.seen.append(info)
        return 1


def make(events: list[dict[str, Any]], triggers: Triggers, *, created: bool = True,
         **fake: Any) -> tuple[ww.WindowsWatch, FakeKernel32, FakeDbgHelp, list[str]]:
    k32, dbg = FakeKernel32(events, **fake), FakeDbgHelp()
    api = WinApi(kernel32=k32, dbghelp=dbg, pss=None,
                 get_last_error=lambda: getattr(k32, "error", 0), osfhandle=lambda fd: 0x900)
    written: list[str] = []

    def on_dump(trigger: str, write: Any) -> None:
        with tempfile.TemporaryFile() as out:
            write(out, 0, False)
        written.append(trigger)

    return ww.WindowsWatch(PID, triggers, on_dump, created=created, api=api), k32, dbg, written


START = [event(K.CREATE_PROCESS_DEBUG_EVENT, file=0x10),
         event(K.LOAD_DLL_DEBUG_EVENT, file=0x20),
         event(K.LOAD_DLL_DEBUG_EVENT, file=0),  # no file handle: nothing to close
         event(K.CREATE_THREAD_DEBUG_EVENT, WORKER),
         exception(0x80000003, True)]  # the loader's breakpoint


def continues(k32: FakeKernel32) -> list[tuple[int, int]]:
    return [(c[2], c[3]) for c in k32.calls if c[0] == "continue"]


def test_a_second_chance_exception_is_dumped_then_passed_on() -> None:
    """Loader breakpoint DBG_CONTINUE; a first-chance AV passed on (NOT_HANDLED) with no
    dump; its second chance dumped with the record (chain pointer cleared, parameters
    kept), the thread's CONTEXT (16-aligned, CONTEXT_ALL) and ClientPointers FALSE, then
    passed on; EXIT_PROCESS gives the exit code. File handles closed; the process is
    never DebugActiveProcessStop'ed (it exited); KillOnExit FALSE first."""
    events = [*START, exception(AV, True, WORKER, params=(1, 0xBAD8)),
              exception(AV, False, WORKER, params=(1, 0xBAD8)),
              event(K.EXIT_THREAD_DEBUG_EVENT, WORKER),
              event(K.EXIT_PROCESS_DEBUG_EVENT, exit=AV)]
    w, k32, dbg, written = make(events, Triggers(on_crash=True))
    w.attach()
    w.run()
    assert k32.calls[0] == ("kill_on_exit", 0)
    assert continues(k32) == [(MAIN, K.DBG_CONTINUE)] * 3 + [
        (WORKER, K.DBG_CONTINUE), (MAIN, K.DBG_CONTINUE),
        (WORKER, K.DBG_EXCEPTION_NOT_HANDLED), (WORKER, K.DBG_EXCEPTION_NOT_HANDLED),
        (WORKER, K.DBG_CONTINUE), (MAIN, K.DBG_CONTINUE)]
    closed = [c[1] for c in k32.calls if c[0] == "close"]
    assert 0x10 in closed and 0x20 in closed and 0 not in closed
    assert ("open_thread", WORKER, K.THREAD_GET_CONTEXT | K.THREAD_QUERY_INFORMATION) \
        in k32.calls
    assert ("get_context", 0x700 + WORKER, 0, 0x0010001F) in k32.calls
    assert 0x700 + WORKER in closed and 0x500 in closed  # thread and process handles
    assert written == ["crash"]
    assert dbg.seen == [{"pid": PID, "type": 0, "tid": WORKER, "client": 0, "code": AV,
                         "chain": 0, "address": 0x140001589, "params": [1, 0xBAD8],
                         "rip": 0x14000158C, "flags": 0x0010001F}]
    assert w.exit_code == AV and w.finished
    assert not [c for c in k32.calls if c[0] == "stop"]


def test_first_chance_dumps_errors_only() -> None:
    """first_chance: a first-chance AV is dumped (then passed on); a later breakpoint,
    thread naming (0x406D1388) and a debug print are passed on undumped; count limits
    first-chance dumps, never the crash."""
    events = [*START, exception(0x406D1388, True), exception(0x80000003, True),
              exception(0x4001000A, True), exception(AV, True), exception(AV, True),
              exception(AV, False), event(K.EXIT_PROCESS_DEBUG_EVENT, exit=AV)]
    w, k32, dbg, written = make(events, Triggers(on_crash=True, first_chance=True))
    w.attach()
    w.run()
    assert written == ["first-chance", "crash"]
    assert continues(k32)[5:] == [(MAIN, K.DBG_EXCEPTION_NOT_HANDLED)] * 6 + [
        (MAIN, K.DBG_CONTINUE)]


def test_should_stop_detaches_an_attached_process() -> None:
    """watch PID: CheckRemoteDebuggerPresent, DebugActiveProcess, KillOnExit FALSE; once
    should_stop() is true, DebugActiveProcessStop with no event left pending."""
    w, k32, _, _ = make(START[:2], Triggers(on_crash=True), created=False)
    w.attach()
    assert [c for c in k32.calls if c[0] != "open_process" and c[0] != "close"] == [
        ("attach", PID), ("kill_on_exit", 0)]
    w.run(lambda: k32.waits >= 2)
    assert k32.calls[-1] == ("stop", PID)
    assert len(continues(k32)) == 2 and w.detached


def test_ctrl_c_with_an_event_pending_continues_it_and_detaches() -> None:
    """KeyboardInterrupt while a second-chance exception is being dumped: the event is
    continued (passed on, as without us) and the process let go; the interrupt
    propagates."""
    w, k32, _, _ = make([*START, exception(AV, False)], Triggers(on_crash=True))

    def interrupted(trigger: str, write: Any) -> None:
        raise KeyboardInterrupt

    w.on_dump = interrupted
    w.attach()
    with pytest.raises(KeyboardInterrupt):
        w.run()
    assert continues(k32)[-1] == (MAIN, K.DBG_EXCEPTION_NOT_HANDLED)
    assert k32.calls[-1] == ("stop", PID)


def test_ctrl_c_between_events_detaches() -> None:
    w, k32, _, _ = make(START, Triggers(on_crash=True), interrupt_at=3)
    w.attach()
    with pytest.raises(KeyboardInterrupt):
        w.run()
    assert len(continues(k32)) == 2
    assert k32.calls[-1] == ("stop", PID)


def test_a_dump_error_is_reported_and_the_process_still_dies_as_it_would() -> None:
    """on_error gets the failure; the exception is still passed on (NOT_HANDLED)."""
    errors: list[BaseException] = []
    w, k32, _, _ = make([*START, exception(AV, False),
                         event(K.EXIT_PROCESS_DEBUG_EVENT, exit=AV)], Triggers(on_crash=True))

    def failing(trigger: str, write: Any) -> None:
        raise OSError(28, "No space left on device")

    w.on_dump, w.on_error = failing, errors.append
    w.attach()
    w.run()
    assert [str(e) for e in errors] == ["[Errno 28] No space left on device"]
    assert continues(k32)[-2:] == [(MAIN, K.DBG_EXCEPTION_NOT_HANDLED), (MAIN, K.DBG_CONTINUE)]
    assert w.exit_code == AV


def test_a_process_another_debugger_holds_is_refused() -> None:
    w, k32, _, _ = make([], Triggers(on_crash=True), created=False, debugged=True)
    with pytest.raises(AlreadyTraced, match="already being debugged"):
        w.attach()
    assert not [c for c in k32.calls if c[0] == "attach"]


def test_windows_has_the_crash_triggers_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch, "WINDOWS", True)
    watch._check_platform(Triggers(on_crash=True, first_chance=True, count=3))
    for triggers, named in ((Triggers(on_crash=True, on_hang=2), "on_hang"),
                            (Triggers(timer=1), "timer"),
                            (Triggers(on_crash=True, signal=10), "signal")):
        with pytest.raises(UnsupportedError, match=named):
            watch._check_platform(triggers)


def test_is_error_code() -> None:
    assert ww.is_error_code(0xC0000005) and ww.is_error_code(0xE06D7363)
    assert not ww.is_error_code(0x80000003) and not ww.is_error_code(0x406D1388)
