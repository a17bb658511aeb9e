"""A stand-in of Microsoft's dbgcore (10.0.18362) MiniDumpWriteDump, run on any OS.

What it models was measured on Microsoft's dbghelp.dll + dbgcore.dll 10.0.18362
loaded natively under Wine (issue 12), or is what Microsoft's documentation of
MINIDUMP_CALLBACK_TYPE / MINIDUMP_CALLBACK_OUTPUT says; each rule below names which.

Order (measured): IsProcessSnapshot (16), VmStart (17), IoStart (11), SecondaryFlags
(15); [Cancel, IncludeThread] per thread; [Cancel, IncludeModule] per module; Cancel
polls; Module (0) for every module, THEN Thread (1) for every thread (Wine: threads
first); Memory (5) until FALSE, RemoveMemory (9) until FALSE, or, for a
WithFullMemory dump, IncludeVmRegion (10) per region and no Memory callback; Cancel
polls; WriteKernelMinidump (7).

Pre-filled outputs (measured): Status = E_NOTIMPL for 11, 16, 17, 19, 20;
ThreadWriteFlags 0x57 (with WithThreadInfo); ModuleWriteFlags 0x0d.

Consequences of the answers:
* IoStart answered TRUE with Status = S_FALSE: the file I/O goes through
  IoWriteAll (12) / IoFinish (13) callbacks; one not answered TRUE + S_OK fails the
  dump (measured: the dump fails, E_FAIL).
* VmStart answered TRUE with S_FALSE: every memory read goes to VmPreRead (19), then
  VmPostRead (20), whose input Status is the pre-read's (E_NOTIMPL when it was not
  answered). VmPostRead answered TRUE: its output Status decides, and a failure drops
  the range from a MINI (which then "succeeds" with 0 memory ranges) and fails a FULL
  with HRESULT_FROM_WIN32(ERROR_PARTIAL_COPY) (measured with the trampoline's old
  answers: pre-read untouched + FALSE, post-read TRUE with Status = its input's).
  VmPostRead answered FALSE: dbgcore reads the memory itself and the dump is right
  (measured with S_FALSE to VmStart only and today's answers).
* IsProcessSnapshot S_FALSE: hProcess is read as an HPSS (documented; Microsoft's
  snapshot example).
* Cancel TRUE with Cancel = TRUE: fails with HRESULT_FROM_WIN32(ERROR_CANCELLED)
  (documented; the code as Wine-hosted dbgcore leaves it). CheckCancel FALSE: no more
  Cancel callbacks (documented).
* IncludeThread / IncludeModule FALSE: left out (documented). Thread/Module flags
  without Thread/Module: left out; Thread flags without Stack: no stack memory.
* IncludeVmRegion: RegionSize 0 leaves the region out; returning FALSE or
  Continue = FALSE fails the dump (MINIDUMP_CALLBACK_OUTPUT's documentation).
* ReadMemoryFailure (a Memory range over unreadable memory): TRUE + S_OK omits the
  block; anything else fails the dump (documented).

The stand-in decides what the dump holds (threads, modules, memory ranges) and
writes those decisions as the file's bytes; the tests read them back. It does not
prove what the real dbgcore does beyond the rules above: the Wine suite
(WINEDLLOVERRIDES="dbghelp,dbgcore=n") runs the real one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

if sys.platform == "win32":  # the C caller is built with cc; the real DLLs run in the Wine suite
    pytest.skip("Linux-side model of Microsoft's dbgcore", allow_module_level=True)

from test_windows_backend import FakeKernel32, FakePss
from test_windows_trampoline import OUT, REGS, Inputs, Recorder, build_harness, hffi, meminfo

import minidumpkit
from minidumpkit import dumper as dumper_mod
from minidumpkit._backends import _win_snapshot, windows
from minidumpkit._backends import _win_trampoline as tr
from minidumpkit.callbacks import CallbackModule, CallbackThread, DumpCallbacks, VmRegion
from minidumpkit.errors import DumpCancelled, ProcessError
from minidumpkit.flags import CallbackType as CT
from minidumpkit.flags import DumpType, ModuleWriteFlags, ThreadWriteFlags

PID = 0x1F40
OUT_SIZE = 52
E_NOTIMPL = 0x80004001
E_FAIL = 0x80004005
S_OK, S_FALSE = 0, 1
PARTIAL_COPY = 0x8007012B
CANCELLED = 0x800704C7

# The target: (tid, stack top, stack pointer); (path, base, size); full-memory regions.
THREADS = [(0x1A04, 0x0000_00AB_CE00_0000, 0x0000_00AB_CDFF_E000),
           (0x1A08, 0x0000_00AB_D000_0000, 0x0000_00AB_CFFF_F100),
           (0x1A0C, 0x0000_00AB_D200_0000, 0x0000_00AB_D1FF_F800)]
MODULES = [("C:\\py\\python.exe", 0x7FF6_0000_0000, 0x1_8000),
           ("C:\\Windows\\System32\\ntdll.dll", 0x7FFE_0000_0000, 0x1F_0000),
           ("C:\\Windows\\System32\\KERNEL32.DLL", 0x7FFD_0000_0000, 0xC_0000)]
REGIONS = [(0x10000, 0x1000), (0x2_0000_0000, 0x4000), (0x7FF6_0000_0000, 0x1_8000)]
UNREADABLE = (0xDEAD_0000, 0x1000)  # a hole: Memory ranges over it trigger ReadMemoryFailure


def _u32(data: bytes, field: str) -> int:
    offset, size = OUT[field]
    return int.from_bytes(data[offset:offset + min(size, 8)], "little")


def _out(**fields: int | bytes) -> bytes:
    """A zeroed output with the named fields pre-filled."""
    buf = bytearray(OUT_SIZE)
    for name, value in fields.items():
        offset, size = OUT[name]
        buf[offset:offset + size] = (value if isinstance(value, bytes)
                                     else value.to_bytes(size, "little"))
    return bytes(buf)


class Failed(Exception):
    """MiniDumpWriteDump gives up with this HRESULT as last error."""

    def __init__(self, hresult: int) -> None:
        super().__init__(hex(hresult))
        self.hresult = hresult


class FakeDbgCore:
    """MiniDumpWriteDump as Microsoft's dbgcore 10.0.18362 behaves (see the module doc)."""

    def __init__(self, lib: Any, k32: FakeKernel32, hpss: int | None = None) -> None:
        self.lib, self.k32, self.hpss = lib, k32, hpss
        self.asked: list[tuple[int, int, bytes]] = []  # (type, return, output)
        self.decisions: dict[str, Any] = {}
        self.ins = Inputs(pid=PID, handle=0x4C)

    # one callback, through the trampoline's C routine
    def ask(self, info: Any, data: bytes, prefill: bytes) -> tuple[int, bytes]:
        out = hffi.new("unsigned char[]", prefill)
        ret = self.lib.call_one(hffi.cast("void *", info), data, len(data), out)
        output = bytes(hffi.buffer(out, OUT_SIZE))
        self.asked.append((int.from_bytes(data[12:16], "little"), ret, output))
        return ret, output

    def MiniDumpWriteDump(self, hprocess: Any, pid: int, hfile: Any, dump_type: int,
                          exc: Any, streams: Any, info: Any) -> int:
        from minidumpkit._ffi import dbghelp

        handle = int(dbghelp.ffi.cast("uintptr_t", hprocess))
        fd = int(dbghelp.ffi.cast("uintptr_t", hfile))
        try:
            self.decisions = self._write(info, handle, pid, dump_type, fd)
        except Failed as failure:
            self.k32.last_error = failure.hresult
            return 0
        with open(fd, "w", closefd=False) as f:
            json.dump(self.decisions, f)
        return 1

    def _write(self, info: Any, handle: int, pid: int, dump_type: int,
               fd: int) -> dict[str, Any]:
        ins, full = self.ins, bool(dump_type & 0x2)
        # 16: pre-filled E_NOTIMPL; S_FALSE: hProcess is a snapshot handle (HPSS)
        ret, out = self.ask(info, ins.make(CT.IsProcessSnapshotCallback, placement="msvc"),
                            _out(Status=E_NOTIMPL))
        snapshot = bool(ret) and _u32(out, "Status") == S_FALSE
        if snapshot != (handle == self.hpss):
            raise Failed(0x80070006)  # a process read as an HPSS, or the reverse
        # 17: S_FALSE redirects every memory read to VmPreRead
        ret, out = self.ask(info, ins.make(CT.VmStartCallback, placement="msvc"),
                            _out(Status=E_NOTIMPL))
        vm_redirect = bool(ret) and _u32(out, "Status") == S_FALSE
        # 11: S_FALSE hands the file I/O to IoWriteAll / IoFinish
        ret, out = self.ask(info, ins.make(CT.IoStartCallback, {"Io.Handle": fd},
                                           placement="msvc"), _out(Status=E_NOTIMPL))
        io_redirect = bool(ret) and _u32(out, "Status") == S_FALSE
        self.ask(info, ins.make(CT.SecondaryFlagsCallback, placement="msvc"), _out())

        polling = [True]

        def poll() -> None:
            if not polling[0]:
                return
            ret, out = self.ask(info, ins.make(CT.CancelCallback, placement="msvc"), _out())
            if ret and _u32(out, "Cancel"):
                raise Failed(CANCELLED)
            if ret and not _u32(out, "CheckCancel"):
                polling[0] = False

        threads = []
        for tid, top, sp in THREADS:
            poll()
            ret, _ = self.ask(info, ins.make(CT.IncludeThreadCallback, {"IncludeThread.ThreadId": tid},
                                             placement="msvc"), _out(ThreadWriteFlags=0x57))
            if ret:
                threads.append((tid, top, sp))
        modules = []
        for path, base, size in MODULES:
            poll()
            ret, _ = self.ask(info, ins.make(CT.IncludeModuleCallback,
                                             {"IncludeModule.BaseOfImage": base},
                                             placement="msvc"), _out(ModuleWriteFlags=0x0D))
            if ret:
                modules.append((path, base, size))
        for _ in range(3):
            poll()
        written_modules = []
        for path, base, size in modules:  # Module for every module, before any Thread
            ret, out = self.ask(info, ins.module(path, base, size, placement="msvc"),
                                _out(ModuleWriteFlags=0x0D))
            flags = _u32(out, "ModuleWriteFlags") if ret else 0x0D
            if flags & ModuleWriteFlags.Module:
                written_modules.append(path)
        written_threads, ranges = [], []
        for tid, top, sp in threads:  # Microsoft's StackBase is the top, StackEnd the sp
            regs = dict(REGS, Rsp=sp)
            ret, out = self.ask(info, ins.thread(CT.ThreadCallback, tid, regs, (top, sp), "msvc"),
                                _out(ThreadWriteFlags=0x57))
            flags = _u32(out, "ThreadWriteFlags") if ret else 0x57
            if flags & ThreadWriteFlags.Thread:
                written_threads.append(tid)
                if flags & ThreadWriteFlags.Stack:
                    ranges.append((sp, top - sp))
        regions = []
        if full:  # IncludeVmRegion per region, no MemoryCallback
            for base, size in REGIONS:
                region = meminfo(BaseAddress=base, AllocationBase=base, RegionSize=size,
                                 State=0x1000, Protect=0x04, Type=0x20000)
                ret, out = self.ask(info, ins.make(CT.IncludeVmRegionCallback, placement="msvc"),
                                    _out(VmRegion=region))
                if not ret or not _u32(out, "Continue"):
                    raise Failed(E_FAIL)
                offset = OUT["VmRegion"][0]
                new_base = int.from_bytes(out[offset:offset + 8], "little")
                new_size = int.from_bytes(out[offset + 24:offset + 32], "little")
                if new_size:
                    regions.append((new_base, new_size))
        else:
            while True:
                ret, out = self.ask(info, ins.make(CT.MemoryCallback, placement="msvc"), _out())
                if not ret or not _u32(out, "MemorySize"):
                    break
                ranges.append((_u32(out, "MemoryBase"), _u32(out, "MemorySize")))
            removed = []
            while True:
                ret, out = self.ask(info, ins.make(CT.RemoveMemoryCallback, placement="msvc"),
                                    _out())
                if not ret or not _u32(out, "MemorySize"):
                    break
                removed.append((_u32(out, "MemoryBase"), _u32(out, "MemorySize")))
            ranges = [r for r in ranges if r not in removed]
        # reading: through VmPreRead if redirected, else the process (with its hole)
        memory = []
        for base, size in ranges + regions:
            if vm_redirect:
                ret, out = self.ask(info, ins.make(CT.VmPreReadCallback, {
                    "VmPreRead.Offset": base, "VmPreRead.Size": size}, placement="msvc"),
                    _out(Status=E_NOTIMPL))
                status = _u32(out, "VmReadStatus") if ret else E_NOTIMPL
                done = _u32(out, "VmReadBytesCompleted") if ret else 0
                ret, out = self.ask(info, ins.make(CT.VmPostReadCallback, {
                    "VmPostRead.Offset": base, "VmPostRead.Size": size,
                    "VmPostRead.Completed": done, "VmPostRead.Status": status},
                    placement="msvc"), _out(Status=E_NOTIMPL))
                if ret and _u32(out, "Status") != S_OK:
                    if full:
                        raise Failed(PARTIAL_COPY)
                    continue  # a MINI drops the range and "succeeds"
                if ret:
                    memory.append([base, size])
                    continue
                # FALSE: dbgcore reads it itself, below
            if UNREADABLE[0] <= base < UNREADABLE[0] + UNREADABLE[1]:
                ret, out = self.ask(info, ins.make(CT.ReadMemoryFailureCallback, {
                    "ReadMemoryFailure.Offset": base, "ReadMemoryFailure.Bytes": size,
                    "ReadMemoryFailure.FailureStatus": PARTIAL_COPY}, placement="msvc"),
                    _out(Status=E_NOTIMPL))
                if ret and _u32(out, "Status") == S_OK:
                    continue
                raise Failed(PARTIAL_COPY)
            memory.append([base, size])
        for _ in range(2):
            poll()
        if io_redirect:
            ret, out = self.ask(info, ins.make(CT.IoWriteAllCallback, {
                "Io.Handle": fd, "Io.Offset": 0, "Io.BufferBytes": 32}, placement="msvc"),
                _out(Status=E_NOTIMPL))
            if not (ret and _u32(out, "Status") == S_OK):
                raise Failed(E_FAIL)
            self.ask(info, ins.make(CT.IoFinishCallback, placement="msvc"), _out(Status=E_NOTIMPL))
        ret, out = self.ask(info, ins.make(CT.WriteKernelMinidumpCallback, placement="msvc"), _out())
        if ret and _u32(out, "Handle"):
            raise Failed(E_FAIL)  # a kernel minidump: not modelled, never wanted
        return {"threads": written_threads, "modules": written_modules, "memory": memory,
                "snapshot": snapshot}


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_harness(tmp_path_factory.mktemp("msdbgcore"))


class MsWorld:
    def __init__(self, lib: Any) -> None:
        self.k32 = FakeKernel32()
        self.pss = FakePss(self.k32)
        self.dbg = FakeDbgCore(lib, self.k32, hpss=0x5550000)
        self.api = windows.WinApi(kernel32=self.k32, dbghelp=self.dbg, pss=self.pss,
                                  get_last_error=lambda: self.k32.last_error,
                                  osfhandle=lambda fd: fd)

    def backend(self) -> Any:
        from functools import partial
        from types import SimpleNamespace

        return SimpleNamespace(check_target=partial(windows.check_target, api=self.api),
                               write_dump=partial(windows.write_dump, api=self.api))

    def types(self) -> list[int]:
        return [kind for kind, _r, _o in self.dbg.asked]


@pytest.fixture
def ms(harness: Any, monkeypatch: pytest.MonkeyPatch) -> MsWorld:
    w = MsWorld(harness)
    monkeypatch.setattr(dumper_mod, "load_backend", w.backend)
    return w


def read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


STACKS = [[sp, top - sp] for _tid, top, sp in THREADS]


# --- the trampoline against the stand-in -------------------------------------------------------

def test_mini_with_default_answers(ms: MsWorld, tmp_path: Path) -> None:
    """No callbacks: every thread, module and stack is written; the takeover questions keep
    dbgcore's E_NOTIMPL (so no IoWriteAll or VmPreRead is ever sent)."""
    path = minidumpkit.dump(PID, tmp_path / "mini.dmp", DumpType.MINI)
    dump = read(path)
    assert dump == {"threads": [t for t, _a, _b in THREADS], "modules": [m for m, _a, _b in MODULES],
                    "memory": STACKS, "snapshot": False}
    kinds = ms.types()
    assert kinds[:4] == [CT.IsProcessSnapshotCallback, CT.VmStartCallback, CT.IoStartCallback,
                         CT.SecondaryFlagsCallback]
    assert not {CT.IoWriteAllCallback, CT.IoFinishCallback, CT.VmPreReadCallback} & set(kinds)
    for kind, ret, out in ms.dbg.asked[:3]:
        assert (ret, _u32(out, "Status")) == (1, E_NOTIMPL), CT(kind).name
    assert kinds.index(CT.ModuleCallback) < kinds.index(CT.ThreadCallback)
    assert kinds[-1] == CT.WriteKernelMinidumpCallback


def test_full_with_default_answers(ms: MsWorld, tmp_path: Path) -> None:
    """A FULL dump: IncludeVmRegion per region, no MemoryCallback; every region written."""
    dump = read(minidumpkit.dump(PID, tmp_path / "full.dmp", DumpType.FULL))
    assert dump["memory"] == STACKS + [list(r) for r in REGIONS]
    assert CT.MemoryCallback not in ms.types()
    assert ms.types().count(CT.IncludeVmRegionCallback) == len(REGIONS)


def test_callbacks_filter_add_cancel(ms: MsWorld, tmp_path: Path) -> None:
    """Thread and module filters, memory added (and a read failure skipped), a region left
    out, the stack range low to high; then cancel → DumpCancelled with no file."""
    seen: list[CallbackThread] = []

    class Filter(DumpCallbacks):
        def include_thread(self, thread: CallbackThread) -> bool:
            return thread.tid != THREADS[1][0]

        def thread(self, thread: CallbackThread, flags: ThreadWriteFlags) -> ThreadWriteFlags:
            seen.append(thread)
            return flags

        def module(self, module: CallbackModule, flags: ModuleWriteFlags) -> ModuleWriteFlags:
            return ModuleWriteFlags(0) if module.name == "python.exe" else flags

        def memory(self) -> list[tuple[int, int]]:
            return [(0x4000_0000, 0x100), (UNREADABLE[0], 0x10)]

        def include_vm_region(self, region: VmRegion) -> bool:
            return region.base != REGIONS[1][0]

    dump = read(minidumpkit.dump(PID, tmp_path / "f.dmp", DumpType.MINI, callbacks=Filter()))
    assert dump["threads"] == [THREADS[0][0], THREADS[2][0]]
    assert dump["modules"] == [m for m, _a, _b in MODULES[1:]]
    assert dump["memory"] == [STACKS[0], STACKS[2], [0x4000_0000, 0x100]]
    for thread, (_tid, top, sp) in zip(seen, (THREADS[0], THREADS[2]), strict=True):
        assert (thread.stack_base, thread.stack_end, thread.stack_size) == (sp, top, top - sp)
        assert thread.sp == sp and thread.context is not None

    full = read(minidumpkit.dump(PID, tmp_path / "g.dmp", DumpType.FULL, callbacks=Filter()))
    assert full["memory"] == [STACKS[0], STACKS[2], list(REGIONS[0]), list(REGIONS[2])]

    class Cancel(DumpCallbacks):
        polls = 0

        def cancel(self) -> bool:
            self.polls += 1
            return self.polls == 4

    with pytest.raises(DumpCancelled):
        minidumpkit.dump(PID, tmp_path / "c.dmp", callbacks=Cancel())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.dmp", "g.dmp"]


def test_exception_in_module_callback_is_reraised(ms: MsWorld, tmp_path: Path) -> None:
    """module() raising (Microsoft asks Module first): the next Cancel poll stops dbgcore,
    the user's exception comes out, no file is left, the process handle is closed."""
    rec = Recorder()
    rec.raise_in = "module"
    with pytest.raises(ValueError, match="boom"):
        minidumpkit.dump(PID, tmp_path / "x.dmp", callbacks=rec)
    assert list(tmp_path.iterdir()) == [] and ms.k32.open == {}
    assert "thread" not in rec.names()


def test_callback_semantics_do_not_depend_on_thread_module_order(ms: MsWorld,
                                                                  tmp_path: Path) -> None:
    """The same callbacks object decides the same way with Microsoft's order (modules
    first) as with Wine's (threads first, the stand-in of test_windows_backend)."""
    from test_windows_backend import World

    class Policy(DumpCallbacks):
        def __init__(self) -> None:
            self.order: list[str] = []

        def thread(self, thread: CallbackThread, flags: ThreadWriteFlags) -> ThreadWriteFlags:
            self.order.append("thread")
            return flags if thread.tid % 8 == 4 else ThreadWriteFlags(0)

        def module(self, module: CallbackModule, flags: ModuleWriteFlags) -> ModuleWriteFlags:
            self.order.append("module")
            return flags if module.name.lower().endswith(".dll") else ModuleWriteFlags(0)

    policy = Policy()
    dump = read(minidumpkit.dump(PID, tmp_path / "ms.dmp", callbacks=policy))
    assert dump["threads"] == [t for t, _a, _b in THREADS if t % 8 == 4]
    assert dump["modules"] == [m for m, _a, _b in MODULES if m.lower().endswith(".dll")]
    assert policy.order == ["module"] * 3 + ["thread"] * 3

    wine = World(ms.dbg.lib)
    wine_policy = Policy()
    with open(tmp_path / "wine.dmp", "w+b") as out:
        windows.write_dump(0x20, out, DumpType.MINI, policy=wine_policy, api=wine.api)
    assert wine_policy.order.index("thread") < wine_policy.order.index("module")
    answers = {(kind, _u32(out, "ThreadWriteFlags" if kind == CT.ThreadCallback
                                else "ModuleWriteFlags"))
               for kind, _r, out in wine.dbg.answers if kind in (CT.ThreadCallback,
                                                                  CT.ModuleCallback)}
    assert (CT.ThreadCallback, 0) in answers and (CT.ModuleCallback, 0) in answers


def test_snapshot_write_answers_s_false(ms: MsWorld, tmp_path: Path) -> None:
    """Snapshot.write: IsProcessSnapshot S_FALSE, so dbgcore reads the HPSS; still no
    takeover of I/O or memory reads."""
    with _win_snapshot.WindowsSnapshot(PID, api=ms.api) as snap:
        path = snap.write(tmp_path / "s.dmp", DumpType.FULL)
    assert read(path)["snapshot"] is True
    assert ms.dbg.asked[0][1:] == (1, _out(Status=S_FALSE))
    assert not {CT.IoWriteAllCallback, CT.VmPreReadCallback} & set(ms.types())


# --- the stand-in tells the old (wrong) answers apart -----------------------------------------

def _old_system_answer(self: tr.Trampoline, kind: int, inp: Any, out: Any) -> int:
    """What the trampoline answered before issue 12 (the parts that matter here)."""
    if kind == CT.IsProcessSnapshotCallback:
        out.Status = S_FALSE if self.snapshot else S_OK
        return 1
    if kind in (CT.IoStartCallback, CT.VmStartCallback):
        out.Status = S_FALSE
        return 1
    if kind in (CT.IoWriteAllCallback, CT.IoFinishCallback):
        out.Status = E_NOTIMPL - (1 << 32)
        return 0
    if kind == CT.VmPreReadCallback:
        out.VmReadStatus = E_NOTIMPL - (1 << 32)
        return 0
    if kind == CT.VmPostReadCallback:
        out.Status = inp.VmPostRead.Status
        return 1
    return 0


@pytest.mark.parametrize("which", [CT.IoStartCallback, CT.VmStartCallback])
def test_the_old_answers_break_the_dump(ms: MsWorld, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch, which: CT) -> None:
    """Proof that the stand-in discriminates: with S_FALSE to IoStart the dump fails
    (E_FAIL, IoWriteAll unanswered); with S_FALSE to VmStart and the old VmPostRead
    answer, a MINI 'succeeds' with no memory at all and a FULL fails with
    ERROR_PARTIAL_COPY, as dbgcore did."""
    def old(self: tr.Trampoline, kind: int, inp: Any, out: Any) -> int:
        if kind in (CT.IoStartCallback, CT.VmStartCallback) and kind != which:
            return 1  # only the one under test answered the old way
        return _old_system_answer(self, kind, inp, out)

    monkeypatch.setattr(tr.Trampoline, "_system_answer", old)
    if which == CT.IoStartCallback:
        with pytest.raises(ProcessError) as caught:
            minidumpkit.dump(PID, tmp_path / "io.dmp")
        assert getattr(caught.value, "hresult", None) == E_FAIL
        assert CT.IoWriteAllCallback in ms.types()
    else:
        assert read(minidumpkit.dump(PID, tmp_path / "vm.dmp"))["memory"] == []
        assert ms.types().count(CT.VmPreReadCallback) == len(THREADS)
        with pytest.raises(ProcessError) as caught:
            minidumpkit.dump(PID, tmp_path / "vmfull.dmp", DumpType.FULL)
        assert getattr(caught.value, "hresult", None) == PARTIAL_COPY
        assert caught.value.winerror == 299  # type: ignore[attr-defined]
    assert not (tmp_path / "io.dmp").exists() and not (tmp_path / "vmfull.dmp").exists()


def test_vm_start_s_false_with_todays_read_answers_falls_back(ms: MsWorld, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """Even if VmStart were answered S_FALSE, today's FALSE to VmPreRead/VmPostRead lets
    dbgcore read the memory itself (as measured on the real one): the dump is whole."""
    real = tr.Trampoline._system_answer

    def vm_start_s_false(self: tr.Trampoline, kind: int, inp: Any, out: Any) -> int:
        if kind == CT.VmStartCallback:
            out.Status = S_FALSE
            return 1
        return real(self, kind, inp, out)

    monkeypatch.setattr(tr.Trampoline, "_system_answer", vm_start_s_false)
    assert read(minidumpkit.dump(PID, tmp_path / "vm.dmp"))["memory"] == STACKS
    assert ms.types().count(CT.VmPostReadCallback) == len(THREADS)
