"""DumpCallbacks without a live process: the adapter onto the writer's DumpPolicy on a
hand-built capture, the typed objects, the callback table against docs/callbacks.md,
and the terminal progress bar's output."""

from __future__ import annotations

import dataclasses
import io
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

import minidumpkit
from minidumpkit import format as md
from minidumpkit._capture import (
    CapturedModule,
    CapturedSystem,
    CapturedThread,
    ProcessCapture,
    Region,
)
from minidumpkit._selection import DumpPolicy
from minidumpkit.callbacks import (
    CALLBACK_TABLE,
    CallbackModule,
    CallbackThread,
    DumpCallbacks,
    VmRegion,
    as_policy,
)
from minidumpkit.errors import DumpCancelled, ProcessError
from minidumpkit.flags import (
    CallbackType,
    DumpType,
    MiniDumpType,
    ModuleWriteFlags,
    ThreadWriteFlags,
)
from minidumpkit.progress import ProgressBar, format_bytes
from minidumpkit.writer import write_minidump

DOCS = Path(__file__).resolve().parents[1] / "docs" / "callbacks.md"

# A small made-up process: two threads with stacks in their own mappings, two modules,
# a data mapping. Memory bytes are a function of the address (byte = addr & 0xff).
STACK1 = (0x7000_0000_0000, 0x7000_0001_0000)
STACK2 = (0x7000_0010_0000, 0x7000_0011_0000)
CODE = (0x5555_0000_0000, 0x5555_0000_4000)
LIB = (0x7F00_0000_0000, 0x7F00_0000_2000)
DATA = (0x6000_0000_0000, 0x6000_0000_3000)


class AddressMemory:
    def __init__(self, regions: list[Region]) -> None:
        self.regions = regions

    def read(self, address: int, size: int) -> bytes:
        out = bytearray()
        while len(out) < size:
            a = address + len(out)
            if not any(r.readable and r.contains(a) for r in self.regions):
                break
            out.append(a & 0xFF)
        return bytes(out)


def build() -> ProcessCapture:
    def ctx(sp: int, pc: int) -> md.ContextAMD64:
        return dataclasses.replace(md.ContextAMD64.zero(), rsp=sp, rip=pc, rbx=0x0B0B,
                                   context_flags=0x0010001F)

    regions = [
        Region(*CODE, True, False, True, True, path="/bin/app"),
        Region(*LIB, True, False, True, True, path="/lib/libx.so"),
        Region(*DATA, True, True, False, True),
        Region(*STACK1, True, True, False, True, path="[stack]"),
        Region(*STACK2, True, True, False, True),
    ]
    threads = [CapturedThread(tid=100, name="main", context=ctx(STACK1[1] - 0x400, CODE[0] + 0x100),
                              teb=0x1234),
               CapturedThread(tid=101, name="worker", context=ctx(STACK2[1] - 0x200, LIB[0] + 0x80))]
    modules = [CapturedModule(base=CODE[0], size=CODE[1] - CODE[0], path="/bin/app",
                              build_id=bytes(range(20))),
               CapturedModule(base=LIB[0], size=LIB[1] - LIB[0], path="/lib/libx.so")]
    return ProcessCapture(pid=4242, threads=threads, regions=regions, modules=modules,
                          memory=AddressMemory(regions), system=CapturedSystem(),
                          timestamp=1_700_000_000)


def write(callbacks: object, dump_type: MiniDumpType = DumpType.MINI) -> bytes:
    out = io.BytesIO()
    write_minidump(build(), out, dump_type, policy=as_policy(callbacks))
    return out.getvalue()


class Recorder(DumpCallbacks):
    """Logs every call in order with the objects it received; default answers."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def include_thread(self, thread: CallbackThread) -> bool:
        self.calls.append(("include_thread", thread))
        return super().include_thread(thread)

    def include_module(self, module: CallbackModule) -> bool:
        self.calls.append(("include_module", module))
        return super().include_module(module)

    def thread(self, thread: CallbackThread, flags: ThreadWriteFlags) -> ThreadWriteFlags:
        self.calls.append(("thread", thread, flags))
        return super().thread(thread, flags)

    def module(self, module: CallbackModule, flags: ModuleWriteFlags) -> ModuleWriteFlags:
        self.calls.append(("module", module, flags))
        return super().module(module, flags)

    def memory(self) -> Iterable[tuple[int, int]]:
        self.calls.append(("memory",))
        return super().memory()

    def remove_memory(self) -> Iterable[tuple[int, int]]:
        self.calls.append(("remove_memory",))
        return super().remove_memory()

    def cancel(self) -> bool:
        self.calls.append(("cancel",))
        return super().cancel()

    def progress(self, done: int, total: int) -> None:
        self.calls.append(("progress", done, total))

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


# --- the adapter ------------------------------------------------------------------------

def test_default_callbacks_write_the_same_bytes_as_no_callbacks() -> None:
    """DumpCallbacks() changes nothing: every default is dbghelp's default answer."""
    assert write(DumpCallbacks()) == write(None)


def test_calls_come_in_dbghelps_order_with_typed_objects() -> None:
    """cancel; IncludeThread*; IncludeModule*; Thread*; Module*; Memory; RemoveMemory; then
    cancel/progress while writing; include_* and thread/module get the same objects."""
    rec = Recorder()
    write(rec)
    names = rec.names()
    assert names[0] == "cancel"
    setup = [n for n in names if n not in ("cancel", "progress")]
    assert setup == (["include_thread"] * 2 + ["include_module"] * 2 + ["thread"] * 2
                     + ["module"] * 2 + ["memory", "remove_memory"])
    first_progress = names.index("progress")
    assert first_progress > names.index("remove_memory")
    inc_t = [c[1] for c in rec.calls if c[0] == "include_thread"]
    thr = [c[1] for c in rec.calls if c[0] == "thread"]
    assert all(a is b for a, b in zip(inc_t, thr, strict=True))
    inc_m = [c[1] for c in rec.calls if c[0] == "include_module"]
    mod = [c[1] for c in rec.calls if c[0] == "module"]
    assert all(a is b for a, b in zip(inc_m, mod, strict=True))

    main, worker = inc_t
    assert isinstance(main, CallbackThread)
    assert (main.tid, main.name, main.teb) == (100, "main", 0x1234)
    assert main.sp == STACK1[1] - 0x400 and main.pc == CODE[0] + 0x100
    assert main.registers["rbx"] == 0x0B0B and main.registers["rsp"] == main.sp
    # the range the writer copies: rsp - 128 (red zone) to the end of the stack mapping
    assert (main.stack_base, main.stack_end) == (STACK1[1] - 0x400 - 128, STACK1[1])
    assert (worker.stack_base, worker.stack_end) == (STACK2[1] - 0x200 - 128, STACK2[1])
    app, lib = inc_m
    assert isinstance(app, CallbackModule)
    assert (app.path, app.name, app.base, app.size) == ("/bin/app", "app", CODE[0], 0x4000)
    assert app.build_id == bytes(range(20))
    assert app.cv_record == b"LEpB" + bytes(range(20))
    assert lib.build_id == b"" and lib.cv_record == b""
    default_t = (ThreadWriteFlags.Thread | ThreadWriteFlags.Stack | ThreadWriteFlags.Context
                 | ThreadWriteFlags.InstructionWindow | ThreadWriteFlags.ThreadInfo)
    assert [c[2] for c in rec.calls if c[0] == "thread"] == [default_t] * 2


def test_frozen_objects() -> None:
    """The typed objects are immutable: a callback cannot change what others see."""
    t = CallbackThread(tid=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.tid = 2  # type: ignore[misc]
    assert t.pc is None and t.sp is None and t.registers == {} and t.stack_size == 0
    m = CallbackModule(path="C:\\Windows\\System32\\ntdll.dll", base=0x1000, size=0x10)
    assert m.name == "ntdll.dll" and m.contains(0x100F) and not m.contains(0x1010)


@pytest.mark.parametrize(("method", "answer", "error"), [
    ("include_thread", None, TypeError),
    ("include_module", 1, TypeError),
    ("thread", None, TypeError),
    ("module", "Module", TypeError),
    ("memory", [(1, 2, 3)], TypeError),
    ("memory", 5, TypeError),
    ("remove_memory", [(-1, 2)], ValueError),
    ("cancel", None, TypeError),
])
def test_wrong_answers_stop_the_dump(method: str, answer: object, error: type[Exception]) -> None:
    """A forgotten return or a wrong type raises (it would otherwise silently drop data)."""
    cb = DumpCallbacks()
    setattr(cb, method, lambda *args: answer)
    with pytest.raises(error, match=f"DumpCallbacks.{method}"):
        write(cb)


def test_cancel_raises_dump_cancelled() -> None:
    class Cancel(DumpCallbacks):
        def cancel(self) -> bool:
            return True

    with pytest.raises(DumpCancelled, match="DumpCallbacks.cancel"):
        write(Cancel())


def test_read_memory_failure_false_is_a_process_error_caused_by_the_given_error() -> None:
    """The OSError handed to read_memory_failure becomes the ProcessError's __cause__."""
    seen: list[OSError] = []

    class Strict(DumpCallbacks):
        def memory(self) -> Iterable[tuple[int, int]]:
            return [(DATA[1] - 0x10, 0x20)]  # runs 16 bytes past the mapping

        def read_memory_failure(self, address: int, size: int, error: OSError) -> bool:
            seen.append(error)
            assert (address, size) == (DATA[1], 0x10)
            return False

    with pytest.raises(ProcessError) as info:
        write(Strict())
    assert info.value.errno == 14 and info.value.pid == 4242
    assert info.value.__cause__ is seen[0]


def test_as_policy() -> None:
    """None stays None, a DumpPolicy is used as is, anything else is refused at once."""
    policy = DumpPolicy(chunk_size=4096)
    assert as_policy(None) is None
    assert as_policy(policy) is policy
    with pytest.raises(TypeError, match="DumpCallbacks"):
        as_policy(object())


# --- include_vm_region: reachable from the policy (the full-memory flags call it) ------------

def test_include_vm_region_reaches_the_callbacks_with_a_vm_region() -> None:
    """DumpPolicy.include_vm_region(Region) asks DumpCallbacks.include_vm_region(VmRegion);
    its exception propagates like any other."""
    seen: list[VmRegion] = []

    class Regions(DumpCallbacks):
        def include_vm_region(self, region: VmRegion) -> bool:
            seen.append(region)
            if region.path == "[boom]":
                raise LookupError("no")
            return region.writable

    policy = as_policy(Regions())
    assert policy is not None
    data = Region(*DATA, True, True, False, True)
    code = Region(*CODE, True, False, True, False, offset=0x1000, inode=7, path="/bin/app")
    assert policy.include_vm_region(data) is True
    assert policy.include_vm_region(code) is False
    assert seen[0] == VmRegion(base=DATA[0], size=0x3000, protect=md.MemProtect.READWRITE,
                               state=md.MemState.COMMIT, type=md.MemType.PRIVATE,
                               allocation_base=DATA[0],
                               allocation_protect=md.MemProtect.READWRITE, path="")
    assert seen[1].protect == md.MemProtect.EXECUTE_READ and seen[1].type == md.MemType.MAPPED
    assert seen[1].readable and seen[1].executable and not seen[1].writable
    with pytest.raises(LookupError):
        policy.include_vm_region(Region(0, 0x1000, False, False, False, True, path="[boom]"))
    assert seen[2].protect == md.MemProtect.NOACCESS and not seen[2].readable


def test_vm_region_round_trips_memory_info() -> None:
    """The Windows trampoline's path: MINIDUMP_MEMORY_INFO in and out, unchanged."""
    info = md.MemoryInfo(base_address=0x10000, allocation_base=0x0F000, allocation_protect=0x40,
                         alignment1=0, region_size=0x3000, state=0x1000, protect=0x104,
                         type=0x1000000, alignment2=0)
    region = VmRegion.from_memory_info(info, "x.dll")
    assert region.to_memory_info() == info
    assert region.readable is False  # PAGE_GUARD: reading faults
    assert region.writable and region.path == "x.dll"


# --- the table and the docs -------------------------------------------------------------------

def test_every_callback_type_has_a_documented_answer() -> None:
    """CALLBACK_TABLE covers all 21 MINIDUMP_CALLBACK_TYPEs; each named method exists and is
    overridable; docs/callbacks.md has one row per type naming the same method."""
    assert set(CALLBACK_TABLE) == set(CallbackType)
    docs = DOCS.read_text()
    for ctype, role in CALLBACK_TABLE.items():
        assert role.default and role.linux
        row = re.search(rf"^\| {ctype.value} \| {ctype.name} \| ([^|]*) \|", docs, re.MULTILINE)
        assert row, f"docs/callbacks.md lacks the row for {ctype.name}"
        if role.method is None:
            assert row.group(1).strip() == "—"
        else:
            assert callable(getattr(DumpCallbacks, role.method))
            assert re.match(rf"`{role.method}[(`]", row.group(1).strip()), (ctype.name, row.group(1))
    assert "`progress(done, total)`" in docs


# --- the progress bar -------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def frames(text: str) -> list[str]:
    """The successive states of the line (each redraw starts with a carriage return)."""
    return [f.rstrip(" \n") for f in text.split("\r") if f]


def test_progress_bar_draws_rate_limited_and_ends_with_one_newline() -> None:
    clock = FakeClock()
    out = Tty()
    bar = ProgressBar("dumping", stream=out, width=60, interval=0.5, clock=clock)
    bar.progress(0, 4096)                     # first state: drawn
    clock.now = 0.1
    bar.progress(1024, 4096)                  # 0.1 s later: skipped
    clock.now = 0.6
    bar.progress(2048, 4096)                  # 0.6 s after the first draw: drawn
    clock.now = 0.7
    bar.progress(4096, 4096)                  # the end: always drawn, then a newline
    bar.progress(4096, 4096)                  # after the end: nothing
    bar.finish()
    text = out.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    shown = frames(text)
    assert len(shown) == 3
    assert shown[0].startswith("dumping [") and shown[0].endswith("0%  0 B / 4.0 KiB")
    assert shown[1].endswith(" 50%  2.0 KiB / 4.0 KiB")
    assert shown[2].endswith("100%  4.0 KiB / 4.0 KiB")
    bars = [re.search(r"\[([#.]+)\]", f).group(1) for f in shown]  # type: ignore[union-attr]
    assert [round(b.count("#") / len(b), 1) for b in bars] == [0.0, 0.5, 1.0]
    assert all(len(f) <= 60 for f in shown)


def test_progress_bar_is_silent_off_a_terminal_unless_forced() -> None:
    plain = io.StringIO()
    bar = ProgressBar(stream=plain)
    bar.progress(0, 10)
    bar.progress(10, 10)
    bar.finish()
    assert plain.getvalue() == ""
    forced = io.StringIO()
    bar = ProgressBar(stream=forced, force=True, width=40)
    bar.progress(10, 10)
    assert frames(forced.getvalue())[-1].endswith("100%  10 B / 10 B")
    assert forced.getvalue().endswith("\n")


def test_progress_bar_context_manager_ends_an_unfinished_line() -> None:
    """A cancelled dump never reaches done == total: leaving the block ends the line."""
    out = Tty()
    with ProgressBar(stream=out, width=50) as bar:
        bar.progress(3, 10)
    assert out.getvalue().endswith("\n") and out.getvalue().count("\n") == 1
    # a shorter later line overwrites a longer one completely
    out2 = Tty()
    bar = ProgressBar(stream=out2, width=200, interval=0)
    bar.progress(0, 5 << 30)
    first = len(out2.getvalue())
    bar.width = 30
    bar.progress(1, 5 << 30)
    assert len(out2.getvalue()) - first == first  # "\r" + shorter line + padding


def test_progress_bar_wrap_delegates_every_question() -> None:
    """ProgressBar.wrap(inner) answers with inner's methods and still draws."""
    rec = Recorder()
    out = Tty()
    data = io.BytesIO()
    write_minidump(build(), data, DumpType.MINI,
                   policy=as_policy(ProgressBar.wrap(rec, stream=out, width=50)))
    assert data.getvalue() == write(None)
    assert rec.names().count("include_thread") == 2 and "progress" in rec.names()
    assert frames(out.getvalue())[-1].startswith("dumping [")
    assert out.getvalue().endswith("\n")


def test_format_bytes() -> None:
    assert [format_bytes(n) for n in (0, 1023, 1024, 1536, 5 << 20, 3 << 40)] == \
        ["0 B", "1023 B", "1.0 KiB", "1.5 KiB", "5.0 MiB", "3.0 TiB"]


def test_callbacks_are_refused_for_a_self_dump(tmp_path: Path) -> None:
    """A self-dump is written by a helper process that cannot call back into us: callbacks
    are refused with a clear error, before any file exists, instead of being ignored."""
    with pytest.raises(minidumpkit.UnsupportedError, match="dumps itself"):
        minidumpkit.dump(os.getpid(), tmp_path / "self.dmp", callbacks=minidumpkit.DumpCallbacks())
    assert list(tmp_path.iterdir()) == []
