"""windows.py and the PSS snapshot class, end to end on Linux with stand-in DLLs.

The stand-in dbghelp's MiniDumpWriteDump plays a scripted callback sequence (the
order Wine's real dbghelp used, from fixtures/wine/*.callbacks.jsonl, with the
CancelCallback polls and IsProcessSnapshotCallback real Windows adds) through the
C caller of test_windows_trampoline, then writes the bytes of the Wine dump that
came with that log through the file handle it was given. kernel32/pss stand-ins
record every handle opened, closed and freed.

What this does not prove: anything about the real DLLs (their argument checks,
which callbacks they send, the last error they leave); see docs/windows.md.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import types
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import pytest

if sys.platform == "win32":  # stand-ins built with cc; the real DLLs are in test_windows_live.py
    pytest.skip("Linux-side model of the Windows backend", allow_module_level=True)

from oracles import FIXTURES
from test_windows_trampoline import Inputs, Recorder, build_harness, expect, hffi

import minidumpkit
from minidumpkit import dumper as dumper_mod
from minidumpkit._backends import _win_snapshot, windows
from minidumpkit._ffi import dbghelp, kernel32, pss
from minidumpkit._selection import DumpPolicy
from minidumpkit.errors import (
    AccessDenied,
    DumpCancelled,
    ProcessError,
    ProcessNotFound,
    UnsupportedError,
)
from minidumpkit.flags import CallbackType as CT
from minidumpkit.flags import ContextFlags, DumpType, MiniDumpType, PssCaptureFlags

WINE = FIXTURES / "wine"
LOG = WINE / "wine8-x64-normal.callbacks.jsonl"
DUMP_BYTES = (WINE / "wine8-x64-normal.dmp").read_bytes()
PID = 0x20
SELF_PID = 1
OUT_SIZE = 52


def script_from_wine(ins: Inputs, snapshot: bool) -> list[tuple[bytes, bytes]]:
    """(input, pre-filled output) pairs in Wine's order, a CancelCallback poll before each."""
    steps: list[tuple[bytes, bytes]] = []
    if snapshot:  # real Windows asks this first when hProcess may be an HPSS
        steps.append((ins.make(CT.IsProcessSnapshotCallback), expect()))
    for line in LOG.read_text().splitlines():
        r = json.loads(line)
        steps.append((ins.make(CT.CancelCallback), expect()))
        if r["CallbackType"] == CT.ThreadCallback:
            g = r["gcc"]
            steps.append((ins.thread(CT.ThreadCallback, r["ThreadId"],
                                     {"ContextFlags": g["ContextFlags"], "Rip": g["Ip"],
                                      "Rsp": g["Sp"]}, (g["StackBase"], g["StackEnd"]), "gcc"),
                          expect(ThreadWriteFlags=r["out.ThreadWriteFlags_in"])))
        else:
            steps.append((ins.module(r["FullPath"], r["BaseOfImage"], r["SizeOfImage"],
                                     r["CheckSum"], r["TimeDateStamp"]),
                          expect(ModuleWriteFlags=r["out.ModuleWriteFlags_in"])))
    steps.append((ins.make(CT.MemoryCallback), expect()))
    steps.append((ins.make(CT.CancelCallback), expect()))
    return steps


class FakeKernel32:
    """OpenProcess/CloseHandle/... with a per-instance last error and a handle ledger."""

    def __init__(self) -> None:
        self.last_error = 0
        self.open: dict[int, int] = {}  # handle -> pid
        self.opened: list[tuple[int, int]] = []  # (access, pid)
        self.closed: list[int] = []
        self.refuse: dict[int, int] = {}  # pid -> Win32 error
        self.exit_code = kernel32.STILL_ACTIVE

    def OpenProcess(self, access: int, inherit: int, pid: int) -> Any:
        self.opened.append((access, pid))
        if pid in self.refuse:
            self.last_error = self.refuse[pid]
            return kernel32.ffi.NULL
        handle = 0x100 + 4 * len(self.opened)
        self.open[handle] = pid
        return kernel32.ffi.cast("HANDLE", handle)

    def CloseHandle(self, handle: Any) -> int:
        value = int(kernel32.ffi.cast("uintptr_t", handle))
        assert value in self.open, f"closing a handle that is not open: {value:#x}"
        del self.open[value]
        self.closed.append(value)
        return 1

    def GetCurrentProcessId(self) -> int:
        return SELF_PID

    def GetCurrentProcess(self) -> Any:
        return kernel32.ffi.cast("HANDLE", -1)

    def GetExitCodeProcess(self, handle: Any, code: Any) -> int:
        code[0] = self.exit_code
        return 1


class FakeDbgHelp:
    """MiniDumpWriteDump: plays the script through the C caller, then writes the bytes."""

    def __init__(self, lib: Any, k32: FakeKernel32, steps: list[tuple[bytes, bytes]]) -> None:
        self.lib, self.k32, self.steps = lib, k32, steps
        self.calls: list[dict[str, Any]] = []
        self.answers: list[tuple[int, int, bytes]] = []  # (type, return, output)
        self.result: int | None = None  # forced return value
        self.error = 0
        self.payload = DUMP_BYTES

    def MiniDumpWriteDump(self, hprocess: Any, pid: int, hfile: Any, dump_type: int,
                          exc: Any, streams: Any, info: Any) -> int:
        self.calls.append({
            "hprocess": int(dbghelp.ffi.cast("uintptr_t", hprocess)), "pid": pid,
            "hfile": int(dbghelp.ffi.cast("uintptr_t", hfile)), "type": dump_type,
            "exc": exc == dbghelp.ffi.NULL, "streams": streams == dbghelp.ffi.NULL,
            "locked": dbghelp.LOCK.locked(), "open": dict(self.k32.open)})
        for data, prefill in self.steps:
            kind = int.from_bytes(data[12:16], "little")
            while True:
                out = hffi.new("unsigned char[]", prefill)
                ret = self.lib.call_one(hffi.cast("void *", info), data, len(data), out)
                output = bytes(hffi.buffer(out, OUT_SIZE))
                self.answers.append((kind, ret, output))
                if kind == CT.CancelCallback and output[4:8] != bytes(4):  # Cancel = TRUE
                    self.k32.last_error = 0x800704C7  # what dbghelp leaves
                    return 0
                if not (kind == CT.MemoryCallback and ret):
                    break
        if self.result is not None and not self.result:
            self.k32.last_error = self.error
            os.write(int(dbghelp.ffi.cast("uintptr_t", hfile)), self.payload[:100])  # partial
            return 0
        os.write(int(dbghelp.ffi.cast("uintptr_t", hfile)), self.payload)
        return 1


class FakePss:
    def __init__(self, k32: FakeKernel32) -> None:
        self.k32 = k32
        self.captured: list[tuple[int, int, int]] = []
        self.freed: list[tuple[int, int]] = []
        self.capture_error = 0
        self.free_error = 0

    def PssCaptureSnapshot(self, hprocess: Any, flags: int, ctx: int, out: Any) -> int:
        handle = int(kernel32.ffi.cast("uintptr_t", hprocess))
        assert handle in self.k32.open
        self.captured.append((handle, flags, ctx))
        if self.capture_error:
            return self.capture_error
        out[0] = pss.ffi.cast("HPSS", 0x5550000)
        return 0

    def PssFreeSnapshot(self, hcurrent: Any, hpss: Any) -> int:
        self.freed.append((int(pss.ffi.cast("intptr_t", hcurrent)),
                           int(pss.ffi.cast("uintptr_t", hpss))))
        return self.free_error


class World:
    def __init__(self, lib: Any, snapshot: bool = False, missing: str | None = None) -> None:
        self.k32 = FakeKernel32()
        self.ins = Inputs(pid=PID, handle=0x34)
        self.dbg = FakeDbgHelp(lib, self.k32, script_from_wine(self.ins, snapshot))
        self.pss = FakePss(self.k32)
        # kernel32.dll as an older Windows (or Wine) exports it: without `missing`
        exports = types.SimpleNamespace(**{name: getattr(self.pss, name) for name in
                                           ("PssCaptureSnapshot", "PssFreeSnapshot")
                                           if name != missing})
        self.api = windows.WinApi(kernel32=self.k32, dbghelp=self.dbg, pss=exports,
                                  get_last_error=lambda: self.k32.last_error,
                                  osfhandle=lambda fd: fd)  # on Linux the "OS handle" is the fd

    def backend(self) -> types.SimpleNamespace:
        return types.SimpleNamespace(check_target=partial(windows.check_target, api=self.api),
                                     write_dump=partial(windows.write_dump, api=self.api))


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The C caller of test_windows_trampoline, which plays dbghelp's side of each callback."""
    return build_harness(tmp_path_factory.mktemp("backend"))


@pytest.fixture
def world(harness: Any, monkeypatch: pytest.MonkeyPatch) -> World:
    w = World(harness)
    monkeypatch.setattr(dumper_mod, "load_backend", w.backend)
    return w


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --- Dumper.write through windows.write_dump ------------------------------------------------

def test_dump_end_to_end(world: World, tmp_path: Path) -> None:
    """Dumper(pid).write: OpenProcess with the dump rights, MiniDumpWriteDump with that handle,
    the pid, the type, the output's handle and the trampoline, under dbghelp.LOCK; the
    user's callbacks get Wine's threads and modules; handles are closed; the file holds
    what dbghelp wrote; progress is reported once, at the end."""
    class Progress(Recorder):
        def progress(self, done: int, total: int) -> None:
            self.calls.append(("progress", (done, total)))

    rec = Progress()
    d = minidumpkit.Dumper(PID)
    written = d.write(tmp_path / "a.dmp", MiniDumpType.WithHandleData, callbacks=rec)
    assert written.read_bytes() == DUMP_BYTES
    assert leftovers(tmp_path) == ["a.dmp"]
    k32, dbg = world.k32, world.dbg
    assert k32.opened == [(windows.DUMP_ACCESS, PID), (windows.DUMP_ACCESS, PID)]  # check, write
    assert windows.DUMP_ACCESS == 0x0400 | 0x0010 | 0x0040
    assert k32.open == {} and len(k32.closed) == 2
    (call,) = dbg.calls
    assert call["hprocess"] == k32.closed[1] and call["hprocess"] in call["open"]
    assert (call["pid"], call["type"], call["exc"], call["streams"], call["locked"]) == (
        PID, int(MiniDumpType.WithHandleData), True, True, True)
    assert not dbghelp.LOCK.locked()
    names = rec.names()
    assert names.count("thread") == 5 and names.count("module") == 13
    assert names.count("cancel") == 19 and names[-1] == "progress"
    assert rec.calls[-1][1] == (len(DUMP_BYTES), len(DUMP_BYTES))
    assert isinstance(d.last_times, windows.WindowsDumpTimes)
    assert (d.last_times.size, d.last_times.callbacks[CT.ThreadCallback]) == (len(DUMP_BYTES), 5)
    assert 16 not in {k for k, _r, _o in dbg.answers}  # a live process: not asked


def test_all_memory_is_dbghelps_full_memory(world: World, tmp_path: Path) -> None:
    """all_memory=True asks dbghelp for exactly DumpType.FULL: its WithFullMemory already
    copies every committed readable page; without WithFullMemory it is refused before
    the process is opened."""
    written = minidumpkit.Dumper(PID).write(tmp_path / "all.dmp", DumpType.FULL,
                                            snapshot="never", all_memory=True)
    assert written.read_bytes() == DUMP_BYTES
    (call,) = world.dbg.calls
    assert call["type"] == int(DumpType.FULL)
    opened = len(world.k32.opened)
    with pytest.raises(ValueError, match="WithFullMemory"):
        minidumpkit.Dumper(PID).write(tmp_path / "mini.dmp", DumpType.MINI, all_memory=True)
    assert len(world.k32.opened) == opened + 1  # Dumper() checked the target; write did not
    assert leftovers(tmp_path) == ["all.dmp"]


def test_default_answers_keep_prefilled_flags(world: World, tmp_path: Path) -> None:
    """Without callbacks, every thread and module keeps dbghelp's pre-filled flags."""
    minidumpkit.dump(PID, tmp_path / "b.dmp")
    for kind, ret, output in world.dbg.answers:
        if kind in (CT.ThreadCallback, CT.ModuleCallback):
            assert ret == 1 and output[4:] == b"\xAA" * 48
    assert {output[:4] for kind, _r, output in world.dbg.answers
            if kind == CT.ThreadCallback} == {(0x17).to_bytes(4, "little")}


@pytest.mark.parametrize("code,exc,hresult", [
    (0x80070005, AccessDenied, 0x80070005),
    (0x800704C7, DumpCancelled, 0x800704C7),
    (0x8007012B, ProcessError, 0x8007012B),
    (0x80004005, ProcessError, 0x80004005),
    (0x80070032, UnsupportedError, 0x80070032),
])
def test_minidumpwritedump_failure_mapping(world: World, tmp_path: Path, code: int,
                                           exc: type[Exception], hresult: int) -> None:
    """MiniDumpWriteDump FALSE + an injected last error: the mapped exception (with the
    HRESULT), no file left, the process handle closed."""
    world.dbg.result, world.dbg.error = 0, code
    with pytest.raises(exc) as caught:
        minidumpkit.dump(PID, tmp_path / "c.dmp")
    assert getattr(caught.value, "hresult", None) == hresult
    assert "MiniDumpWriteDump" in str(caught.value) or exc is DumpCancelled
    assert leftovers(tmp_path) == [] and world.k32.open == {}


@pytest.mark.parametrize("code,exc", [(87, ProcessNotFound), (5, AccessDenied), (6, ProcessError)])
def test_openprocess_failure_mapping(world: World, tmp_path: Path, code: int,
                                     exc: type[Exception]) -> None:
    """OpenProcess NULL: ERROR_INVALID_PARAMETER is "no such process", 5 access denied."""
    world.k32.refuse[PID] = code
    with pytest.raises(exc) as caught:
        minidumpkit.dump(PID, tmp_path / "d.dmp")
    assert getattr(caught.value, "winerror", None) == code and caught.value.pid == PID  # type: ignore[attr-defined]
    assert world.dbg.calls == [] and leftovers(tmp_path) == []


def test_exited_process_is_not_found(world: World) -> None:
    """check_target: a handle to a process that has exited → ProcessNotFound, handle closed."""
    world.k32.exit_code = 3
    with pytest.raises(ProcessNotFound, match="exited"):
        minidumpkit.Dumper(PID)
    assert world.k32.open == {}


@pytest.mark.parametrize("what", [RuntimeError("in thread()"), KeyboardInterrupt()],
                         ids=["RuntimeError", "KeyboardInterrupt"])
def test_callback_exception_cancels_removes_file_and_reraises(world: World, tmp_path: Path,
                                                              what: BaseException) -> None:
    """A callback raising on the 2nd thread: the next CancelCallback answers Cancel = TRUE
    (dbghelp then fails with ERROR_CANCELLED), yet the user's exception — not
    DumpCancelled — comes out of write(), no file is left, handles are closed."""
    class Boom(Recorder):
        def thread(self, thread: Any, flags: Any) -> Any:
            if self.names().count("thread") == 1:
                self.calls.append(("thread", thread))
                raise what
            return super().thread(thread, flags)

    rec = Boom()
    with pytest.raises(type(what)) as caught:
        minidumpkit.Dumper(PID).write(tmp_path / "e.dmp", callbacks=rec)
    assert caught.value is what
    answers = world.dbg.answers
    threads = [i for i, (k, _r, _o) in enumerate(answers) if k == CT.ThreadCallback]
    failed = threads[1]
    assert answers[failed][2][:4] == bytes(4)  # the failing thread: ThreadWriteFlags = 0
    assert answers[failed + 1][0] == CT.CancelCallback
    assert answers[failed + 1][1:] == (1, expect(CheckCancel=1, Cancel=1))
    assert len(answers) == failed + 2  # dbghelp stopped there
    assert leftovers(tmp_path) == [] and world.k32.open == {}


def test_cancel_true_raises_dump_cancelled(world: World, tmp_path: Path) -> None:
    """cancel() True on the 3rd poll: DumpCancelled, no file."""
    class Cancel(Recorder):
        def cancel(self) -> bool:
            self.calls.append(("cancel", None))
            return self.names().count("cancel") == 3

    with pytest.raises(DumpCancelled):
        minidumpkit.dump(PID, tmp_path / "f.dmp", callbacks=Cancel())
    assert leftovers(tmp_path) == [] and world.k32.open == {}


def test_bare_dump_policy_is_refused(world: World, tmp_path: Path) -> None:
    """A Linux writer DumpPolicy has no Windows meaning: UnsupportedError, nothing opened
    for writing, no file."""
    with pytest.raises(UnsupportedError, match="DumpCallbacks"):
        minidumpkit.dump(PID, tmp_path / "g.dmp", callbacks=DumpPolicy())
    assert world.dbg.calls == [] and leftovers(tmp_path) == []


# --- the self-dump helper --------------------------------------------------------------------

def test_self_dump_goes_through_a_helper_process(world: World, tmp_path: Path) -> None:
    """pid == GetCurrentProcessId(): `python -m minidumpkit dump PID -o TMP --type 0x...` runs
    and its file is copied into the output; dbghelp is not called in this process."""
    seen: list[list[str]] = []

    def runner(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
        seen.append(argv)
        output = Path(argv[argv.index("-o") + 1])
        assert not output.exists()  # the real CLI refuses to replace a file (tests/wine)
        output.write_bytes(b"MDMP-from-helper")
        return subprocess.CompletedProcess(argv, 0, b"", b"")

    with open(tmp_path / "self.dmp", "w+b") as out:
        times = windows.dump_self(SELF_PID, out, DumpType.FULL, None, runner=runner)
    assert (tmp_path / "self.dmp").read_bytes() == b"MDMP-from-helper"
    (argv,) = seen
    assert argv[:6] == [sys.executable, "-m", "minidumpkit", "dump", str(SELF_PID), "-o"]
    assert argv[7:] == ["--type", f"0x{int(DumpType.FULL):x}"]
    assert not Path(argv[6]).exists()  # the helper's temporary file is gone
    assert times.self_dump and times.size == 16 and world.dbg.calls == []


def test_self_dump_failures(world: World, tmp_path: Path) -> None:
    """A failing helper is a ProcessError with its message; callbacks are refused."""
    def runner(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
        return subprocess.CompletedProcess(argv, 1, b"", b"minidumpkit: cannot dump process 1")

    with open(tmp_path / "s.dmp", "w+b") as out:
        with pytest.raises(ProcessError, match="cannot dump process 1"):
            windows.dump_self(SELF_PID, out, DumpType.MINI, None, runner=runner)
        with pytest.raises(UnsupportedError, match="helper process"):
            windows.write_dump(SELF_PID, out, DumpType.MINI, policy=Recorder(), api=world.api)


# --- PSS snapshots ---------------------------------------------------------------------------

@pytest.fixture
def snap_world(harness: Any) -> World:
    return World(harness, snapshot=True)


def test_snapshot_write_passes_hpss_and_answers_is_process_snapshot(snap_world: World,
                                                                    tmp_path: Path) -> None:
    """PssCaptureSnapshot on an opened process (flags, CONTEXT_ALL); write() passes the HPSS
    as hProcess with the real pid; IsProcessSnapshotCallback gets S_FALSE without reaching
    the user; leaving the block frees the snapshot once, with GetCurrentProcess()."""
    w = snap_world
    rec = Recorder()
    with _win_snapshot.WindowsSnapshot(PID, api=w.api) as snap:
        (captured,) = w.pss.captured
        assert captured[1:] == (int(_win_snapshot.DEFAULT_CAPTURE_FLAGS), int(ContextFlags.ALL))
        assert w.k32.opened == [(_win_snapshot.SNAPSHOT_ACCESS, PID)]
        path = snap.write(tmp_path / "snap.dmp", DumpType.FULL, callbacks=rec)
        assert w.pss.freed == []
    assert path.read_bytes() == DUMP_BYTES
    (call,) = w.dbg.calls
    assert (call["hprocess"], call["pid"], call["type"], call["locked"]) == (
        0x5550000, PID, int(DumpType.FULL), True)
    first = w.dbg.answers[0]
    assert first == (CT.IsProcessSnapshotCallback, 1, expect(Status=1))
    assert "is_process_snapshot" not in rec.names() and rec.names()[0] == "cancel"
    assert w.pss.freed == [(-1, 0x5550000)]
    assert w.k32.open == {}  # the process handle closed after the free
    assert snap.closed
    snap.close()
    assert len(w.pss.freed) == 1


def test_snapshot_freed_once_on_exception_and_double_close(snap_world: World) -> None:
    """An exception inside the block frees it once and propagates; close() twice is once."""
    w = snap_world
    with (pytest.raises(LookupError),
          _win_snapshot.WindowsSnapshot(PID, PssCaptureFlags.VA_CLONE, api=w.api) as snap):
        raise LookupError("inside")
    assert len(w.pss.freed) == 1 and w.k32.open == {}
    assert w.pss.captured[0][1] == int(PssCaptureFlags.VA_CLONE)
    snap.close()
    snap.close()
    assert len(w.pss.freed) == 1
    with pytest.raises(ValueError, match="closed"):
        snap.write("never.dmp")


def test_snapshot_write_callback_exception(snap_world: World, tmp_path: Path) -> None:
    """A callback raising during Snapshot.write: re-raised, no file left, snapshot still open
    (the user's block decides), freed once on exit."""
    w = snap_world
    rec = Recorder()
    rec.raise_in = "module"
    with _win_snapshot.WindowsSnapshot(PID, api=w.api) as snap:
        with pytest.raises(ValueError, match="boom"):
            snap.write(tmp_path / "x.dmp", callbacks=rec)
        assert leftovers(tmp_path) == [] and not snap.closed
    assert len(w.pss.freed) == 1


def test_snapshot_unclosed_warns_and_frees(snap_world: World) -> None:
    """A snapshot dropped without close(): ResourceWarning, and it is freed."""
    w = snap_world
    snap = _win_snapshot.WindowsSnapshot(PID, api=w.api)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del snap
        gc.collect()
    assert any(issubclass(c.category, ResourceWarning) for c in caught)
    assert len(w.pss.freed) == 1 and w.k32.open == {}


@pytest.mark.parametrize("missing", ["PssCaptureSnapshot", "PssFreeSnapshot"])
def test_snapshot_without_pss(harness: Any, missing: str) -> None:
    """Pss* not exported: UnsupportedError naming the function, before OpenProcess."""
    w = World(harness, snapshot=True, missing=missing)
    with pytest.raises(UnsupportedError, match=missing):
        _win_snapshot.WindowsSnapshot(PID, api=w.api)
    assert w.k32.opened == []


def test_snapshot_errors(snap_world: World) -> None:
    """PssCaptureSnapshot's Win32 code is mapped (5 → AccessDenied) and the process handle is
    closed; a failing PssFreeSnapshot raises but still closes the handle, once."""
    w = snap_world
    w.pss.capture_error = 5
    with pytest.raises(AccessDenied, match="PssCaptureSnapshot"):
        _win_snapshot.WindowsSnapshot(PID, api=w.api)
    assert w.k32.open == {} and w.pss.freed == []
    w.pss.capture_error, w.pss.free_error = 0, 6
    snap = _win_snapshot.WindowsSnapshot(PID, api=w.api)
    with pytest.raises(ProcessError, match="PssFreeSnapshot"):
        snap.close()
    assert w.k32.open == {} and len(w.pss.freed) == 1
    snap.close()
    assert len(w.pss.freed) == 1


def test_snapshot_rejects_wrong_callbacks(snap_world: World, tmp_path: Path) -> None:
    """callbacks must be a DumpCallbacks (TypeError before any file)."""
    with (_win_snapshot.WindowsSnapshot(PID, api=snap_world.api) as snap,
          pytest.raises(TypeError, match="DumpCallbacks")):
        snap.write(tmp_path / "y.dmp", callbacks=object())  # type: ignore[arg-type]
    assert leftovers(tmp_path) == []


# --- never a Windows DLL on Linux --------------------------------------------------------------

def test_linux_path_never_loads_a_windows_dll(tmp_path: Path) -> None:
    """`import minidumpkit` and a real Linux dump of a child, with cffi's dlopen and
    ctypes' CDLL watched: no Windows library is asked for and no Windows module imported."""
    code = r"""
import ctypes, subprocess, sys, cffi
asked = []
real = cffi.FFI.dlopen
def dlopen(self, name, *a, **k):
    asked.append(str(name)); return real(self, name, *a, **k)
cffi.FFI.dlopen = dlopen
real_cdll = ctypes.CDLL.__init__
def cdll(self, name, *a, **k):
    asked.append(str(name)); return real_cdll(self, name, *a, **k)
ctypes.CDLL.__init__ = cdll
import minidumpkit
child = subprocess.Popen(["sleep", "60"])
try:
    minidumpkit.dump(child.pid, sys.argv[1])
finally:
    child.kill(); child.wait()
bad = [n for n in asked if any(w in n.lower() for w in ("dbghelp", "kernel32", ".dll"))]
mods = [m for m in sys.modules if m.endswith(("_backends.windows", "_win_trampoline",
        "_win_snapshot", "_ffi.dbghelp", "_ffi.kernel32", "_ffi.pss"))]
print(repr((bad, mods, len(asked))))
"""
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "l.dmp")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    bad, mods, _count = eval(done.stdout.strip().splitlines()[-1])  # our own repr() output
    assert (bad, mods) == ([], [])
    assert (tmp_path / "l.dmp").read_bytes()[:4] == b"MDMP"


def test_winapi_refuses_off_windows() -> None:
    """The real-library loader raises UnsupportedError on Linux (no dlopen attempted)."""
    if sys.platform == "win32":  # pragma: no cover
        pytest.skip("this is the off-Windows behaviour")
    windows.winapi.cache_clear()
    with pytest.raises(UnsupportedError):
        windows.winapi()
