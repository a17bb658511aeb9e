"""The MINIDUMP_CALLBACK_ROUTINE trampoline, called from C through a real function pointer.

A tiny C caller (compiled here with ``cc``) copies a hand-built
MINIDUMP_CALLBACK_INPUT into its own 16-aligned stack buffer, as dbghelp does,
and calls the ``CallbackRoutine`` of the MINIDUMP_CALLBACK_INFORMATION the
trampoline hands out. Input buffers are built from the offsets of
``reference/winabi/layout-x86_64.json`` (the ground truth, not our cdef), in
both thread-context placements (GCC/Wine ``reference``, MSVC ``msvc_model``);
expected output bytes are packed at that JSON's MINIDUMP_CALLBACK_OUTPUT
offsets over a 0xAA baseline, so any stray write shows.

What this does not prove: what Microsoft's dbghelp sends (order, pre-filled
flags, which types at all), the Win64 calling convention (SysV here).
"""

from __future__ import annotations

import gc
import json
import struct
import subprocess
import sys
import traceback
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cffi
import pytest

if sys.platform == "win32":  # the C caller is built as a POSIX shared object with cc
    pytest.skip("Linux-side model of dbghelp's calls; on Windows test_windows_live.py "
                "exercises the real dbghelp", allow_module_level=True)

from oracles import FIXTURES

from minidumpkit import format as md
from minidumpkit._backends import _win_trampoline as tr
from minidumpkit._ffi import dbghelp
from minidumpkit.callbacks import (
    CallbackModule,
    CallbackThread,
    DumpCallbacks,
    VmRegion,
)
from minidumpkit.errors import DumpCancelled, ProcessError
from minidumpkit.flags import CallbackType as CT
from minidumpkit.flags import ModuleWriteFlags, ThreadWriteFlags

WINABI = FIXTURES.parent / "reference" / "winabi"
LAYOUT = json.loads((WINABI / "layout-x86_64.json").read_text())
IN_GCC = {k: tuple(v) for k, v in LAYOUT["reference"]["MINIDUMP_CALLBACK_INPUT"]["fields"].items()}
IN_MSVC = {k: tuple(v) for k, v in
           LAYOUT["msvc_model"]["MINIDUMP_CALLBACK_INPUT_MSVC"]["fields"].items()}
OUT = {k: tuple(v) for k, v in LAYOUT["reference"]["MINIDUMP_CALLBACK_OUTPUT"]["fields"].items()}
MEMINFO = {k: tuple(v) for k, v in LAYOUT["reference"]["MINIDUMP_MEMORY_INFO"]["fields"].items()}
CTX = {k: tuple(v) for k, v in LAYOUT["reference"]["CONTEXT"]["fields"].items()}
VSFFI = {k: tuple(v) for k, v in LAYOUT["reference"]["VS_FIXEDFILEINFO"]["fields"].items()}
INPUT_SIZE = LAYOUT["msvc_model"]["MINIDUMP_CALLBACK_INPUT_MSVC"]["size"]  # 1312, the larger
OUT_SIZE = LAYOUT["reference"]["MINIDUMP_CALLBACK_OUTPUT"]["size"]  # 52
WINE_LOGS = sorted(FIXTURES.joinpath("wine").glob("*.callbacks.jsonl"))

HARNESS_C = r"""
/* What dbghelp does around each callback, minus dbghelp: the input and output live in
   the caller's own (16-aligned) memory, and the routine is called through the
   MINIDUMP_CALLBACK_INFORMATION's function pointer with its CallbackParam. */
#include <stdint.h>
#include <string.h>
typedef int32_t (*ROUTINE)(void *param, void *input, void *output);
typedef struct { ROUTINE CallbackRoutine; void *CallbackParam; } CB_INFO;
int32_t call_one(const CB_INFO *info, const unsigned char *input, uint32_t size,
                 unsigned char *output) {
    unsigned char in[1312] __attribute__((aligned(16)));
    unsigned char out[52] __attribute__((aligned(8)));
    memset(in, 0, sizeof in);
    memcpy(in, input, size < sizeof in ? size : sizeof in);
    memcpy(out, output, sizeof out);
    int32_t ret = info->CallbackRoutine(info->CallbackParam, in, out);
    memcpy(output, out, sizeof out);
    return ret;
}
int32_t call_with_param(const CB_INFO *info, void *param, const unsigned char *input,
                        unsigned char *output) {
    CB_INFO other = { info->CallbackRoutine, param };
    return call_one(&other, input, 1312, output);
}
"""

hffi = cffi.FFI()
hffi.cdef("""
int32_t call_one(void *info, const unsigned char *input, uint32_t size, unsigned char *output);
int32_t call_with_param(void *info, void *param, const unsigned char *input,
                        unsigned char *output);
""")


def build_harness(directory: Path) -> Any:
    """The C caller, compiled with the system cc into ``directory``."""
    src = directory / "harness.c"
    src.write_text(HARNESS_C)
    lib = src.with_suffix(".so")
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o", str(lib), str(src)],
                   check=True, capture_output=True)
    return hffi.dlopen(str(lib))


@pytest.fixture(scope="session")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_harness(tmp_path_factory.mktemp("trampoline"))


# --- hand-built inputs and outputs ----------------------------------------------------

def put(buf: bytearray, at: tuple[int, int], value: int | bytes) -> None:
    offset, size = at
    if isinstance(value, bytes):
        assert len(value) <= size
        buf[offset:offset + len(value)] = value
    else:
        buf[offset:offset + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


class Inputs:
    """Builds MINIDUMP_CALLBACK_INPUT bytes; keeps pointed-to buffers alive."""

    def __init__(self, pid: int = 4242, handle: int = 0x1234) -> None:
        self.pid, self.handle = pid, handle
        self.keep: list[Any] = []

    def pointer(self, cdata: Any) -> int:
        self.keep.append(cdata)
        return int(hffi.cast("uintptr_t", cdata))

    def make(self, kind: int, fields: dict[str, int | bytes] | None = None,
             placement: str = "gcc") -> bytes:
        layout = IN_MSVC if placement == "msvc" else IN_GCC
        buf = bytearray(INPUT_SIZE)
        put(buf, layout["ProcessId"], self.pid)
        put(buf, layout["ProcessHandle"], self.handle)
        put(buf, layout["CallbackType"], kind)
        for name, value in (fields or {}).items():
            put(buf, layout[name], value)
        return bytes(buf)

    def thread(self, kind: int, tid: int, regs: dict[str, int], stack: tuple[int, int],
               placement: str, size_of_context: int = 1232,
               backing: tuple[int, int] | None = None) -> bytes:
        prefix = "ThreadEx" if kind == CT.ThreadExCallback else "Thread"
        fields: dict[str, int | bytes] = {
            f"{prefix}.ThreadId" if prefix == "Thread" else "Thread.ThreadId": tid,
            "Thread.ThreadHandle": 0x2222,
            f"{prefix}.Context": context(regs),
            f"{prefix}.SizeOfContext": size_of_context,
            f"{prefix}.StackBase": stack[0], f"{prefix}.StackEnd": stack[1]}
        if backing is not None:
            fields["ThreadEx.BackingStoreBase"], fields["ThreadEx.BackingStoreEnd"] = backing
        return self.make(kind, fields, placement)

    def module(self, path: str, base: int, size: int, checksum: int = 0, stamp: int = 0,
               version: dict[str, int] | None = None, cv: bytes = b"", misc: bytes = b"",
               placement: str = "gcc") -> bytes:
        path_p = self.pointer(hffi.new("char16_t[]", path))
        vs = bytearray(52)
        for name, value in (version or {}).items():
            put(vs, VSFFI[name], value)
        fields: dict[str, int | bytes] = {
            "Module.FullPath": path_p, "Module.BaseOfImage": base, "Module.SizeOfImage": size,
            "Module.CheckSum": checksum, "Module.TimeDateStamp": stamp,
            "Module.VersionInfo": bytes(vs)}
        if cv:
            fields["Module.CvRecord"] = self.pointer(hffi.new("unsigned char[]", cv))
            fields["Module.SizeOfCvRecord"] = len(cv)
        if misc:
            fields["Module.MiscRecord"] = self.pointer(hffi.new("unsigned char[]", misc))
            fields["Module.SizeOfMiscRecord"] = len(misc)
        return self.make(CT.ModuleCallback, fields, placement)


def context(regs: dict[str, int]) -> bytes:
    buf = bytearray(1232)
    for name, value in regs.items():
        put(buf, CTX[name], value)
    return bytes(buf)


def baseline() -> bytearray:
    return bytearray(b"\xAA" * OUT_SIZE)


def expect(**fields: int | bytes) -> bytes:
    """0xAA everywhere except the named output fields (JSON offsets)."""
    buf = baseline()
    for name, value in fields.items():
        put(buf, OUT[name], value)
    return bytes(buf)


def call(lib: Any, info: Any, data: bytes, output: bytes | None = None) -> tuple[int, bytes]:
    out = hffi.new("unsigned char[]", output if output is not None else bytes(baseline()))
    ret = lib.call_one(hffi.cast("void *", info), data, len(data), out)
    return ret, bytes(hffi.buffer(out, OUT_SIZE))


def meminfo(**fields: int) -> bytes:
    buf = bytearray(48)
    for name, value in fields.items():
        put(buf, MEMINFO[name], value)
    return bytes(buf)


class Recorder(DumpCallbacks):
    """Records every call with its arguments; answers are programmable."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.exclude_threads: set[int] = set()
        self.thread_answer: Any = None
        self.module_answer: Any = None
        self.ranges: list[tuple[int, int]] = []
        self.removed: list[tuple[int, int]] = []
        self.vm_answer = True
        self.read_answer: Any = True
        self.cancel_answer: Any = False
        self.raise_in: str | None = None
        self.raise_what: BaseException = ValueError("boom from a callback")

    def _maybe_raise(self, name: str) -> None:
        if self.raise_in == name:
            raise self.raise_what

    def include_thread(self, thread: CallbackThread) -> bool:
        self.calls.append(("include_thread", thread))
        self._maybe_raise("include_thread")
        return thread.tid not in self.exclude_threads

    def include_module(self, module: CallbackModule) -> bool:
        self.calls.append(("include_module", module))
        self._maybe_raise("include_module")
        return True

    def thread(self, thread: CallbackThread, flags: ThreadWriteFlags) -> ThreadWriteFlags:
        self.calls.append(("thread", (thread, flags)))
        self._maybe_raise("thread")
        return flags if self.thread_answer is None else self.thread_answer

    def module(self, module: CallbackModule, flags: ModuleWriteFlags) -> ModuleWriteFlags:
        self.calls.append(("module", (module, flags)))
        self._maybe_raise("module")
        return flags if self.module_answer is None else self.module_answer

    def memory(self) -> Iterable[tuple[int, int]]:
        self.calls.append(("memory", None))
        self._maybe_raise("memory")
        return self.ranges

    def remove_memory(self) -> Iterable[tuple[int, int]]:
        self.calls.append(("remove_memory", None))
        return self.removed

    def include_vm_region(self, region: VmRegion) -> bool:
        self.calls.append(("include_vm_region", region))
        return self.vm_answer

    def read_memory_failure(self, address: int, size: int, error: OSError) -> bool:
        self.calls.append(("read_memory_failure", (address, size, error)))
        return self.read_answer  # type: ignore[no-any-return]

    def cancel(self) -> bool:
        self.calls.append(("cancel", None))
        self._maybe_raise("cancel")
        return self.cancel_answer  # type: ignore[no-any-return]

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


REGS = {"ContextFlags": 0x0010001F, "Rip": 0x7FF6_1234_5678, "Rsp": 0x0000_00AB_CDEF_0100,
        "Rax": 0x1111_2222_3333_4444, "Rbx": 0x5555, "EFlags": 0x246, "SegCs": 0x33}


def check_regs(thread: CallbackThread) -> None:
    assert thread.context is not None
    c = thread.context
    assert (c.context_flags, c.rip, c.rsp, c.rax, c.rbx, c.eflags, c.seg_cs) == (
        REGS["ContextFlags"], REGS["Rip"], REGS["Rsp"], REGS["Rax"], REGS["Rbx"],
        REGS["EFlags"], REGS["SegCs"])
    assert (thread.pc, thread.sp) == (REGS["Rip"], REGS["Rsp"])


# --- every callback type ------------------------------------------------------------------

@pytest.mark.parametrize("placement", ["gcc", "msvc"])
def test_every_callback_type_through_c(harness: Any, placement: str) -> None:
    """Each MINIDUMP_CALLBACK_TYPE, built by hand and sent from C: the user's methods get the
    typed values that were put in, and the output holds exactly the documented answer."""
    rec = Recorder()
    rec.exclude_threads = {0x2222}
    rec.thread_answer = ThreadWriteFlags.Thread | ThreadWriteFlags.Context | ThreadWriteFlags.ThreadData
    rec.module_answer = ModuleWriteFlags.Module | ModuleWriteFlags.DataSeg
    rec.ranges = [(0x1000, 0x20), (0x5000, 0x1_0000_0000)]
    rec.removed = [(0x7000, 0x10)]
    rec.vm_answer = False
    t = tr.Trampoline(rec, snapshot=True, pid=4242)
    ins = Inputs()
    cv = b"RSDS" + bytes(range(16)) + (7).to_bytes(4, "little") + b"x.pdb\0"
    version = {"dwSignature": md.VS_FFI_SIGNATURE, "dwStrucVersion": 0x10000,
               "dwFileVersionMS": 0x000A0000, "dwFileVersionLS": 0x4A610001}
    with t.active() as info:
        def run(data: bytes, output: bytes | None = None) -> tuple[int, bytes]:
            return call(harness, info, data, output)

        # IsProcessSnapshot: answered here, S_FALSE
        assert run(ins.make(CT.IsProcessSnapshotCallback)) == (1, expect(Status=1))
        assert rec.calls == []
        # Cancel: polled, keep polling
        assert run(ins.make(CT.CancelCallback)) == (1, expect(CheckCancel=1, Cancel=0))
        # IncludeThread: TRUE / FALSE, output untouched
        assert run(ins.make(CT.IncludeThreadCallback, {"IncludeThread.ThreadId": 0x1111})) == (
            1, expect())
        assert run(ins.make(CT.IncludeThreadCallback, {"IncludeThread.ThreadId": 0x2222})) == (
            0, expect())
        # IncludeModule
        assert run(ins.make(CT.IncludeModuleCallback,
                            {"IncludeModule.BaseOfImage": 0x1_4000_0000})) == (1, expect())
        # Thread and ThreadEx: flags AND-ed with dbghelp's pre-fill (0x57 = Wine's with ThreadInfo)
        pre = expect(ThreadWriteFlags=0x57)
        assert run(ins.thread(CT.ThreadCallback, 0x1111, REGS, (0x7FFE0000, 0x7FFF0000),
                              placement), pre) == (1, expect(ThreadWriteFlags=0x57 & 0x25))
        assert run(ins.thread(CT.ThreadExCallback, 0x3333, REGS, (0x8000, 0x9000), placement,
                              backing=(0xB000, 0xA000)), pre) == (1, expect(ThreadWriteFlags=0x05))
        # Module
        assert run(ins.module("C:\\app\\x.dll", 0x1_4000_0000, 0x5000, 0x1234, 0x5F000000,
                              version, cv, b"MISC", placement),
                   expect(ModuleWriteFlags=13)) == (1, expect(ModuleWriteFlags=0x01))
        # Memory: one range per call, >4 GiB split at a ULONG, then FALSE
        memory = [run(ins.make(CT.MemoryCallback)) for _ in range(4)]
        assert memory == [
            (1, expect(MemoryBase=0x1000, MemorySize=0x20)),
            (1, expect(MemoryBase=0x5000, MemorySize=0xFFFFF000)),
            (1, expect(MemoryBase=0x5000 + 0xFFFFF000, MemorySize=0x1000)),
            (0, expect(MemoryBase=0, MemorySize=0))]
        assert run(ins.make(CT.RemoveMemoryCallback)) == (
            1, expect(MemoryBase=0x7000, MemorySize=0x10))
        assert run(ins.make(CT.RemoveMemoryCallback)) == (0, expect(MemoryBase=0, MemorySize=0))
        # IncludeVmRegion: the pre-filled region is read, Continue answers
        region = meminfo(BaseAddress=0x20000, AllocationBase=0x10000, AllocationProtect=0x40,
                         RegionSize=0x3000, State=0x1000, Protect=0x04, Type=0x20000)
        # include_vm_region False: RegionSize = 0 leaves it out, Continue = TRUE goes on
        # (Continue = FALSE would fail the dump: MINIDUMP_CALLBACK_OUTPUT's documentation)
        left_out = meminfo(BaseAddress=0x20000, AllocationBase=0x10000, AllocationProtect=0x40,
                           RegionSize=0, State=0x1000, Protect=0x04, Type=0x20000)
        assert run(ins.make(CT.IncludeVmRegionCallback), expect(VmRegion=region)) == (
            1, expect(VmRegion=left_out, Continue=1))
        # dbghelp asks twice per region: the same answer, the user asked once
        assert run(ins.make(CT.IncludeVmRegionCallback), expect(VmRegion=region)) == (
            1, expect(VmRegion=left_out, Continue=1))
        # ReadMemoryFailure: S_OK, go on
        assert run(ins.make(CT.ReadMemoryFailureCallback, {
            "ReadMemoryFailure.Offset": 0x30000, "ReadMemoryFailure.Bytes": 4096,
            "ReadMemoryFailure.FailureStatus": 0x8007012B})) == (1, expect(Status=0))
        # The types minidumpkit answers itself: Status stays as dbghelp pre-filled it
        # (E_NOTIMPL on Microsoft's dbgcore), so dbghelp keeps its own I/O and reads;
        # the I/O and Vm callbacks that follow only an S_FALSE get FALSE.
        e_notimpl = expect(Status=0x80004001)
        assert run(ins.make(CT.IoStartCallback), e_notimpl) == (1, e_notimpl)
        assert run(ins.make(CT.IoWriteAllCallback), e_notimpl) == (0, e_notimpl)
        assert run(ins.make(CT.IoFinishCallback), e_notimpl) == (0, e_notimpl)
        assert run(ins.make(CT.SecondaryFlagsCallback)) == (1, expect())
        assert run(ins.make(CT.VmStartCallback), e_notimpl) == (1, e_notimpl)
        assert run(ins.make(CT.VmQueryCallback, {"VmQuery.Offset": 0x20000})) == (0, expect())
        assert run(ins.make(CT.VmPreReadCallback), e_notimpl) == (0, e_notimpl)
        assert run(ins.make(CT.VmPostReadCallback, {"VmPostRead.Status": 0x8007012B}),
                   e_notimpl) == (0, e_notimpl)
        assert run(ins.make(CT.WriteKernelMinidumpCallback)) == (0, expect(Handle=0))
        assert run(ins.make(CT.KernelMinidumpStatusCallback)) == (0, expect())
        assert run(ins.make(99)) == (0, expect())  # a type newer than this code

    assert rec.names() == ["cancel", "include_thread", "include_thread", "include_module",
                           "thread", "thread", "module", "memory", "remove_memory",
                           "include_vm_region", "read_memory_failure"]
    args = [a for _, a in rec.calls]
    assert [args[1].tid, args[2].tid] == [0x1111, 0x2222]
    assert (args[1].context, args[1].stack_base, args[1].stack_end) == (None, 0, 0)
    assert args[3] == CallbackModule(path="", base=0x1_4000_0000)
    thread, flags = args[4]
    assert flags == ThreadWriteFlags(0x57) and isinstance(flags, ThreadWriteFlags)
    assert (thread.tid, thread.stack_base, thread.stack_end) == (0x1111, 0x7FFE0000, 0x7FFF0000)
    check_regs(thread)
    thread_ex, _ = args[5]
    assert (thread_ex.tid, thread_ex.stack_base, thread_ex.stack_end) == (0x3333, 0x8000, 0x9000)
    check_regs(thread_ex)
    module, mflags = args[6]
    assert mflags == ModuleWriteFlags(13)
    assert (module.path, module.name, module.base, module.size, module.checksum,
            module.time_date_stamp) == ("C:\\app\\x.dll", "x.dll", 0x1_4000_0000, 0x5000, 0x1234,
                                        0x5F000000)
    assert (module.cv_record, module.misc_record) == (cv, b"MISC")
    assert module.version is not None
    assert (module.version.signature, module.version.struc_version, module.version.file_version_hi,
            module.version.file_version_lo) == (0xFEEF04BD, 0x10000, 0x000A0000, 0x4A610001)
    assert args[9] == VmRegion(base=0x20000, size=0x3000, protect=0x04, state=0x1000,
                               type=0x20000, allocation_base=0x10000, allocation_protect=0x40)
    address, size, error = args[10]
    assert (address, size, getattr(error, "winerror", None)) == (0x30000, 4096, 299)
    assert isinstance(error, OSError)
    assert t.error is None and not t.cancelled
    t.raise_pending()  # nothing stored: returns
    assert t.counts[CT.MemoryCallback] == 4 and t.counts[CT.IsProcessSnapshotCallback] == 1


def test_is_process_snapshot_is_untouched_for_a_live_process(harness: Any) -> None:
    """Without a snapshot, IsProcessSnapshotCallback leaves Status as dbghelp pre-filled
    it (E_NOTIMPL on Microsoft's dbgcore: not a snapshot), and the user's callbacks
    still never see it."""
    rec = Recorder()
    t = tr.Trampoline(rec)
    prefill = expect(Status=0x80004001)
    with t.active() as info:
        assert call(harness, info, Inputs().make(CT.IsProcessSnapshotCallback), prefill) == (
            1, prefill)
    assert rec.calls == []


@pytest.mark.parametrize("kind", [CT.IoStartCallback, CT.VmStartCallback,
                                  CT.IsProcessSnapshotCallback])
def test_never_answers_s_false_to_a_takeover_question(harness: Any, kind: int) -> None:
    """Microsoft's documentation: IoStartCallback answered TRUE with Status = S_FALSE hands
    every file write to the callback; VmStartCallback with S_FALSE sends every memory
    read to it. The trampoline does neither, with any callbacks object, before or after
    an error; S_FALSE for type 16 only when writing from a snapshot."""
    class Busy(Recorder):
        pass

    for callbacks, stopped in ((None, False), (Busy(), False), (Busy(), True)):
        t = tr.Trampoline(callbacks)
        if stopped:
            t.error = ValueError("an earlier callback raised")
        for prefill in (expect(Status=0x80004001), expect(Status=0), expect()):
            with t.active() as info:
                ret, out = call(harness, info, Inputs().make(kind), prefill)
            assert (ret, out) == (1, prefill)


def test_defaults_without_callbacks(harness: Any) -> None:
    """callbacks=None: every pre-filled flag is kept, no range added, everything included."""
    t = tr.Trampoline(None)
    ins = Inputs()
    with t.active() as info:
        assert call(harness, info, ins.thread(CT.ThreadCallback, 1, REGS, (0, 0), "gcc"),
                    expect(ThreadWriteFlags=0x17)) == (1, expect(ThreadWriteFlags=0x17))
        assert call(harness, info, ins.make(CT.IncludeModuleCallback)) == (1, expect())
        assert call(harness, info, ins.make(CT.MemoryCallback)) == (
            0, expect(MemoryBase=0, MemorySize=0))
        assert call(harness, info, ins.make(CT.CancelCallback)) == (1, expect(CheckCancel=1, Cancel=0))


def test_no_context_at_either_placement(harness: Any) -> None:
    """SizeOfContext reads 1232 nowhere (an x86 dbghelp or garbage): no register set is
    invented; the declared stack fields are used."""
    rec = Recorder()
    t = tr.Trampoline(rec)
    data = Inputs().thread(CT.ThreadCallback, 7, REGS, (0x100, 0x200), "gcc", size_of_context=716)
    with t.active() as info:
        assert call(harness, info, data, expect(ThreadWriteFlags=0x17)) == (
            1, expect(ThreadWriteFlags=0x17))
    thread, _ = rec.calls[0][1]
    assert (thread.tid, thread.context, thread.stack_base, thread.stack_end) == (7, None, 0x100, 0x200)


@pytest.mark.parametrize("placement,size_of_context", [("msvc", 1232), ("gcc", 1232),
                                                       ("gcc", 716)])
def test_stack_range_is_low_to_high_whatever_the_dll_sends(harness: Any, placement: str,
                                                          size_of_context: int) -> None:
    """Microsoft's dbghelp sends StackBase = the top and StackEnd = the stack pointer (the
    reverse of Wine's): CallbackThread always holds low..high, so stack_size is the span."""
    rec = Recorder()
    t = tr.Trampoline(rec)
    top, sp = 0x0000_00AB_CDF0_0000, REGS["Rsp"]
    ins = Inputs()
    with t.active() as info:
        for stack in ((top, sp), (sp, top)):
            data = ins.thread(CT.ThreadCallback, 9, REGS, stack, placement, size_of_context)
            call(harness, info, data, expect(ThreadWriteFlags=0x57))
    for _name, (thread, _flags) in rec.calls:
        assert (thread.stack_base, thread.stack_end, thread.stack_size) == (sp, top, top - sp)
        if thread.context is not None:
            assert thread.stack_base <= thread.sp < thread.stack_end


# --- the Wine logs as inputs ----------------------------------------------------------------

@pytest.mark.parametrize("placement", ["gcc", "msvc"])
@pytest.mark.parametrize("log", WINE_LOGS, ids=lambda p: p.name.split(".")[0])
def test_wine_callback_sequences(harness: Any, log: Path, placement: str) -> None:
    """Every callback Wine's dbghelp sent, rebuilt at both placements: the user sees the
    values Wine's probe read at the true (GCC) offsets, and with default answers the
    pre-filled flags come back unchanged."""
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert records
    rec = Recorder()
    t = tr.Trampoline(rec, pid=records[0]["ProcessId"])
    ins = Inputs(pid=records[0]["ProcessId"], handle=int(records[0]["ProcessHandle"], 16))
    with t.active() as info:
        for r in records:
            if r["CallbackType"] == CT.ThreadCallback:
                g = r["gcc"]
                data = ins.thread(CT.ThreadCallback, r["ThreadId"],
                                  {"ContextFlags": g["ContextFlags"], "Rip": g["Ip"], "Rsp": g["Sp"]},
                                  (g["StackBase"], g["StackEnd"]), placement, g["SizeOfContext"])
                pre = r["out.ThreadWriteFlags_in"]
                assert call(harness, info, data, expect(ThreadWriteFlags=pre)) == (
                    1, expect(ThreadWriteFlags=pre))
            else:
                assert r["CallbackType"] == CT.ModuleCallback
                data = ins.module(r["FullPath"], r["BaseOfImage"], r["SizeOfImage"],
                                  r["CheckSum"], r["TimeDateStamp"], placement=placement)
                pre = r["out.ModuleWriteFlags_in"]
                assert call(harness, info, data, expect(ModuleWriteFlags=pre)) == (
                    1, expect(ModuleWriteFlags=pre))
    seen = iter(rec.calls)
    for r in records:
        name, (obj, flags) = next(seen)
        if r["CallbackType"] == CT.ThreadCallback:
            g = r["gcc"]
            assert name == "thread" and int(flags) == r["out.ThreadWriteFlags_in"]
            assert (obj.tid, obj.pc, obj.sp, obj.stack_base, obj.stack_end) == (
                r["ThreadId"], g["Ip"], g["Sp"], g["StackBase"], g["StackEnd"])
            assert obj.context.context_flags == g["ContextFlags"]
        else:
            assert name == "module" and int(flags) == r["out.ModuleWriteFlags_in"]
            assert (obj.path, obj.base, obj.size, obj.checksum, obj.time_date_stamp,
                    obj.version, obj.cv_record) == (
                r["FullPath"], r["BaseOfImage"], r["SizeOfImage"], r["CheckSum"],
                r["TimeDateStamp"], None, b"")


# --- exceptions, cancel, stop ----------------------------------------------------------------

def _after_stop_answers(harness: Any, info: Any, ins: Inputs, snapshot: bool = True) -> None:
    """Every user-facing type answered "leave it out", Cancel = CheckCancel = TRUE."""
    assert call(harness, info, ins.make(CT.CancelCallback)) == (1, expect(CheckCancel=1, Cancel=1))
    assert call(harness, info, ins.make(CT.IncludeThreadCallback)) == (0, expect())
    assert call(harness, info, ins.make(CT.IncludeModuleCallback)) == (0, expect())
    assert call(harness, info, ins.thread(CT.ThreadCallback, 5, REGS, (0, 0), "msvc"),
                expect(ThreadWriteFlags=0x17)) == (1, expect(ThreadWriteFlags=0))
    assert call(harness, info, ins.module("a.dll", 1, 2), expect(ModuleWriteFlags=13)) == (
        1, expect(ModuleWriteFlags=0))
    assert call(harness, info, ins.make(CT.MemoryCallback)) == (0, expect(MemoryBase=0, MemorySize=0))
    assert call(harness, info, ins.make(CT.RemoveMemoryCallback)) == (
        0, expect(MemoryBase=0, MemorySize=0))
    assert call(harness, info, ins.make(CT.IncludeVmRegionCallback)) == (1, expect(Continue=0))
    assert call(harness, info, ins.make(CT.ReadMemoryFailureCallback)) == (
        1, expect(Status=tr.CANCEL_HRESULT))
    # still answered correctly: reading an HPSS as a process would be worse
    assert call(harness, info, ins.make(CT.IsProcessSnapshotCallback)) == (
        1, expect(Status=1) if snapshot else expect())


@pytest.mark.parametrize("where", ["include_thread", "include_module", "thread", "module",
                                   "memory", "cancel"])
@pytest.mark.parametrize("what", [ValueError("boom"), KeyboardInterrupt()], ids=["ValueError",
                                                                               "KeyboardInterrupt"])
def test_exception_stops_and_is_reraised(harness: Any, where: str, what: BaseException) -> None:
    """A callback that raises (KeyboardInterrupt too) is never called again, every later
    question gets its stop answer (CancelCallback: Cancel = TRUE), and raise_pending()
    re-raises the very exception with the user's frame in its traceback."""
    rec = Recorder()
    rec.raise_in, rec.raise_what = where, what
    t = tr.Trampoline(rec, snapshot=True)
    ins = Inputs()
    # the failing call itself already gets the stop answer (pre-fill 0x17 for flags)
    data, answer = {
        "include_thread": (ins.make(CT.IncludeThreadCallback), (0, expect(ThreadWriteFlags=0x17))),
        "include_module": (ins.make(CT.IncludeModuleCallback), (0, expect(ThreadWriteFlags=0x17))),
        "thread": (ins.thread(CT.ThreadCallback, 1, REGS, (0, 0), "gcc"),
                   (1, expect(ThreadWriteFlags=0))),
        "module": (ins.module("b.dll", 1, 2), (1, expect(ModuleWriteFlags=0))),
        "memory": (ins.make(CT.MemoryCallback), (0, expect(MemoryBase=0, MemorySize=0))),
        "cancel": (ins.make(CT.CancelCallback), (1, expect(CheckCancel=1, Cancel=1))),
    }[where]
    with t.active() as info:
        assert call(harness, info, data, expect(ThreadWriteFlags=0x17)) == answer
        assert t.error is what
        calls_before = len(rec.calls)
        _after_stop_answers(harness, info, ins)
        assert len(rec.calls) == calls_before  # the user is not asked again
    with pytest.raises(type(what)) as caught:
        t.raise_pending()
    assert caught.value is what
    frames = [f.name for f in traceback.extract_tb(caught.value.__traceback__)]
    assert "_maybe_raise" in frames and where in frames
    assert t.error is None  # raised once


def test_cancel_true_stops_and_raises_dump_cancelled(harness: Any) -> None:
    """cancel() returning True: Cancel = CheckCancel = TRUE, stop answers afterwards,
    DumpCancelled from raise_pending()."""
    rec = Recorder()
    rec.cancel_answer = True
    t = tr.Trampoline(rec)
    ins = Inputs()
    with t.active() as info:
        assert call(harness, info, ins.make(CT.CancelCallback)) == (1, expect(CheckCancel=1, Cancel=1))
        _after_stop_answers(harness, info, ins, snapshot=False)
    assert rec.names() == ["cancel"]
    with pytest.raises(DumpCancelled):
        t.raise_pending()


def test_read_memory_failure_false_stops_the_dump(harness: Any) -> None:
    """read_memory_failure() returning False: Status = the failure HRESULT, then the stop
    answers; raise_pending() raises ProcessError(EFAULT) caused by the read error."""
    rec = Recorder()
    rec.read_answer = False
    t = tr.Trampoline(rec, pid=77)
    ins = Inputs()
    data = ins.make(CT.ReadMemoryFailureCallback, {
        "ReadMemoryFailure.Offset": 0xDEAD0000, "ReadMemoryFailure.Bytes": 64,
        "ReadMemoryFailure.FailureStatus": 0x8007001E})
    with t.active() as info:
        assert call(harness, info, data) == (1, expect(Status=0x8007001E))
        assert call(harness, info, ins.make(CT.CancelCallback)) == (1, expect(CheckCancel=1, Cancel=1))
    with pytest.raises(ProcessError) as caught:
        t.raise_pending()
    assert caught.value.errno == 14 and "0xdead0000" in str(caught.value)
    assert getattr(caught.value.__cause__, "winerror", None) == 0x1E


@pytest.mark.parametrize("method,answer", [("include_thread", None), ("thread", "all"),
                                           ("cancel", 1)])
def test_wrong_answer_type_is_an_error(harness: Any, method: str, answer: Any) -> None:
    """A forgotten return (None) or a wrong type is a TypeError, stored and re-raised."""
    class Wrong(DumpCallbacks):
        pass

    setattr(Wrong, method, lambda self, *a: answer)
    t = tr.Trampoline(Wrong())
    ins = Inputs()
    data = {"include_thread": ins.make(CT.IncludeThreadCallback),
            "thread": ins.thread(CT.ThreadCallback, 1, REGS, (0, 0), "gcc"),
            "cancel": ins.make(CT.CancelCallback)}[method]
    with t.active() as info:
        call(harness, info, data, expect(ThreadWriteFlags=0x17))
    with pytest.raises(TypeError, match=method):
        t.raise_pending()


# --- lifetime -------------------------------------------------------------------------------

def test_payload_released_after_the_call(harness: Any) -> None:
    """Outside active() the trampoline holds no handle or info, and once dropped the
    payload (and the user's callbacks) are freed: nothing outlives the dump."""
    rec = Recorder()
    t = tr.Trampoline(rec)
    with t.active() as info:
        call(harness, info, Inputs().make(CT.CancelCallback))
        assert t._keep is not None
    assert t._keep is None
    ref_t, ref_rec = weakref.ref(t), weakref.ref(rec)
    del t, rec, info
    gc.collect()
    assert ref_t() is None and ref_rec() is None


def test_foreign_callback_param_answers_false(harness: Any) -> None:
    """A CallbackParam that is not a live trampoline handle (NULL) gets FALSE, no crash."""
    t = tr.Trampoline(Recorder())
    with t.active() as info:
        out = hffi.new("unsigned char[]", bytes(baseline()))
        assert harness.call_with_param(hffi.cast("void *", info), hffi.NULL,
                                       Inputs().make(CT.CancelCallback), out) == 0
        assert bytes(hffi.buffer(out, OUT_SIZE)) == expect()


def test_routine_type_is_the_declared_callback_routine() -> None:
    """The C callback has exactly MINIDUMP_CALLBACK_ROUTINE's type, and there is one."""
    assert dbghelp.ffi.typeof(tr.routine()) is dbghelp.ffi.typeof("MINIDUMP_CALLBACK_ROUTINE")
    assert tr.routine() is tr.routine()
    assert set(tr.DEFAULT_ANSWERS) == set(CT)
    assert struct.calcsize("P") == 8  # the placements tested above are the x64 ones
