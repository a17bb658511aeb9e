"""DumpCallbacks on a live process (tests/targets/callbacks_target.c): each method changes
the dump as documented, checked with our reader and with independent tools (rust-minidump's
minidump-stackwalk --json / --dump, lldb). Expected values come from the target's
construction (its tids, thread names, stack markers and memory patterns) and from a control
dump written with default callbacks, never from our own reader alone. Exceptions and
cancel leave no file and a running, untraced target."""

from __future__ import annotations

import json
import os
import re
import sys
import types
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.live, pytest.mark.skipif(sys.platform != "linux", reason="Linux backend")]

from conftest import Target, assert_released
from oracles import run

import minidumpkit as mdk
from minidumpkit import format as md
from minidumpkit.callbacks import CallbackModule, CallbackThread, DumpCallbacks
from minidumpkit.flags import ModuleWriteFlags, ThreadWriteFlags

LIBC = "libc.so.6"
MARKER_SIZE = 64


# --- the target's known construction ------------------------------------------------------

def buffer_bytes(offset: int, size: int) -> bytes:
    return bytes(((i * 151 + 29) ^ (i >> 8)) & 0xFF for i in range(offset, offset + size))


def holey_bytes(offset: int, size: int) -> bytes:
    return bytes((0x5A ^ (i * 7)) & 0xFF for i in range(offset, offset + size))


def marker_bytes(name: str) -> bytes:
    head = f"CB-MARK-{name}".encode()
    return head + bytes((i * 11 + ord(name[3])) & 0xFF for i in range(len(head), MARKER_SIZE))


class Layout:
    """The addresses the target printed in its READY line."""

    def __init__(self, target: Target) -> None:
        self.pid = target.pid
        self.tids = {"main": target.pid, "keep": target.int("keep"), "drop": target.int("drop"),
                     "nostack": target.int("nostack")}
        self.markers = {k: target.int(f"{k}_marker") for k in ("keep", "drop", "nostack")}
        self.buffer = target.int("buffer")
        self.buffer_size = target.int("buffer_size")
        self.holey = target.int("holey")
        self.page = target.int("page")


@pytest.fixture(scope="module")
def target(target_bins: dict[str, Path]) -> Iterator[Target]:
    """One callbacks_target for the whole module; every test leaves it running."""
    t = Target([str(target_bins["callbacks_target"])])
    try:
        yield t
    finally:
        t.close()


@pytest.fixture(scope="module")
def layout(target: Target) -> Layout:
    return Layout(target)


def assert_target_fine(target: Target) -> None:
    """Running (no thread in T/t), untraced (TracerPid 0) and answering."""
    assert_released(target.pid)
    assert target.command("ping") == "PONG"


# --- independent readers ---------------------------------------------------------------------

def rust_json(path: Path) -> dict[str, Any]:
    out = run("minidump-stackwalk", "--json", path, check=True).stdout
    data: dict[str, Any] = json.loads(out)
    return data


def rust_dump(path: Path) -> str:
    return run("minidump-stackwalk", "--dump", path, check=True).stdout


def rust_memory_list(dump_text: str) -> list[tuple[int, int]]:
    """(start, size) of every MemoryList descriptor in `minidump-stackwalk --dump`."""
    section = dump_text.split("MinidumpMemoryList", 1)[1]
    count = int(re.search(r"region_count = (\d+)", section).group(1))  # type: ignore[union-attr]
    ranges = [(int(a, 16), int(n, 16)) for a, n in re.findall(
        r"start_of_memory_range = (0x[0-9a-f]+)\s+memory\.data_size\s+= (0x[0-9a-f]+)", section)]
    assert len(ranges) == count, (len(ranges), count)
    return ranges


def rust_thread_names(dump_text: str) -> dict[int, str]:
    section = dump_text.split("MinidumpThreadNames", 1)[1]
    return {int(t, 16): n for t, n in re.findall(
        r'thread_id = (0x[0-9a-f]+)\s+name\s+= "([^"]*)"', section)}


def covered(ranges: list[tuple[int, int]], address: int, size: int = 1) -> bool:
    """Whether [address, address + size) lies inside one range."""
    return any(start <= address and address + size <= start + n for start, n in ranges)


def touched(ranges: list[tuple[int, int]], address: int, size: int) -> bool:
    """Whether any byte of [address, address + size) is in some range."""
    return any(start < address + size and address < start + n for start, n in ranges)


def lldb(path: Path, *commands: str) -> str:
    args = ["--batch", "--no-lldbinit", "-c", str(path)]
    for c in commands:
        args += ["-o", c]
    return run("lldb", *args).stdout


def lldb_bytes(path: Path, address: int, size: int) -> bytes | None:
    """`memory read` through lldb: the bytes, or None if lldb finds no memory there."""
    out = lldb(path, f"memory read --force -c {size} 0x{address:x}")
    rows = re.findall(r"^0x([0-9a-f]+): ((?:[0-9a-f]{2} )+)", out, re.MULTILINE)
    if not rows:
        return None
    data = b"".join(bytes.fromhex(hexes) for _, hexes in rows)
    assert int(rows[0][0], 16) == address
    return data


# --- the callbacks under test ------------------------------------------------------------------

class Recording(DumpCallbacks):
    """Default answers, every call logged."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def progress_calls(self) -> list[tuple[int, int]]:
        return [(c[1], c[2]) for c in self.calls if c[0] == "progress"]

    def include_thread(self, thread: CallbackThread) -> bool:
        self.calls.append(("include_thread", thread))
        return True

    def include_module(self, module: CallbackModule) -> bool:
        self.calls.append(("include_module", module))
        return True

    def thread(self, thread: CallbackThread, flags: ThreadWriteFlags) -> ThreadWriteFlags:
        self.calls.append(("thread", thread, flags))
        return flags

    def module(self, module: CallbackModule, flags: ModuleWriteFlags) -> ModuleWriteFlags:
        self.calls.append(("module", module, flags))
        return flags

    def memory(self) -> Iterable[tuple[int, int]]:
        self.calls.append(("memory",))
        return ()

    def remove_memory(self) -> Iterable[tuple[int, int]]:
        self.calls.append(("remove_memory",))
        return ()

    def read_memory_failure(self, address: int, size: int, error: OSError) -> bool:
        self.calls.append(("read_memory_failure", address, size, error))
        return True

    def cancel(self) -> bool:
        self.calls.append(("cancel",))
        return False

    def progress(self, done: int, total: int) -> None:
        self.calls.append(("progress", done, total))


class Filtering(Recording):
    """Drops thread cb-drop, cb-nostack's stack and libc; adds the buffer and the holey
    range; removes the buffer's second page and cb-keep's stack marker."""

    def __init__(self, lay: Layout) -> None:
        super().__init__()
        self.lay = lay

    def include_thread(self, thread: CallbackThread) -> bool:
        super().include_thread(thread)
        return thread.tid != self.lay.tids["drop"]

    def thread(self, thread: CallbackThread, flags: ThreadWriteFlags) -> ThreadWriteFlags:
        super().thread(thread, flags)
        return flags & ~ThreadWriteFlags.Stack if thread.name == "cb-nostack" else flags

    def include_module(self, module: CallbackModule) -> bool:
        super().include_module(module)
        return module.name != LIBC

    def memory(self) -> Iterable[tuple[int, int]]:
        super().memory()
        return [(self.lay.buffer, self.lay.buffer_size), (self.lay.holey, 3 * self.lay.page)]

    def remove_memory(self) -> Iterable[tuple[int, int]]:
        super().remove_memory()
        return [(self.lay.buffer + self.lay.page, self.lay.page),
                (self.lay.markers["keep"], MARKER_SIZE)]


def write_dump(pid: int, path: Path, callbacks: object) -> Path:
    return mdk.Dumper(pid).write(path, mdk.DumpType.MINI, callbacks=callbacks)


@pytest.fixture(scope="module")
def control(target: Target, tmp_path_factory: pytest.TempPathFactory) -> types.SimpleNamespace:
    """A dump with default (recording) callbacks: what the filtered dump would hold."""
    rec = Recording()
    path = write_dump(target.pid, tmp_path_factory.mktemp("control") / "control.dmp", rec)
    assert_target_fine(target)
    return types.SimpleNamespace(path=path, callbacks=rec, rust=rust_dump(path))


@pytest.fixture(scope="module")
def filtered(target: Target, layout: Layout,
             tmp_path_factory: pytest.TempPathFactory) -> types.SimpleNamespace:
    cb = Filtering(layout)
    path = write_dump(target.pid, tmp_path_factory.mktemp("filtered") / "filtered.dmp", cb)
    assert_target_fine(target)
    text = rust_dump(path)
    return types.SimpleNamespace(path=path, callbacks=cb, rust=text,
                                 rust_ranges=rust_memory_list(text))


# --- what each method does ---------------------------------------------------------------------

def test_callbacks_see_the_targets_threads_and_modules(filtered: Any, layout: Layout) -> None:
    """The typed objects carry the target's known tids, names, stack ranges, build id; calls
    come in dbghelp's order; include_* and thread/module get the same objects."""
    cb = filtered.callbacks
    threads = [c[1] for c in cb.calls if c[0] == "include_thread"]
    assert {t.tid: t.name for t in threads} == {
        layout.tids["main"]: "callbacks_targe", layout.tids["keep"]: "cb-keep",
        layout.tids["drop"]: "cb-drop", layout.tids["nostack"]: "cb-nostack"}
    for t in threads:
        assert t.context is not None and t.sp is not None
        assert t.stack_base == t.sp - 128 and t.stack_end > t.sp
        if t.name.startswith("cb-"):  # each parked thread's marker lies in its stack range
            marker = layout.markers[t.name[3:]]
            assert t.stack_base <= marker < marker + MARKER_SIZE <= t.stack_end
    names = cb.names()
    setup = [n for n in names if n not in ("cancel", "progress", "read_memory_failure")]
    n_mod = names.count("include_module")
    assert names[0] == "cancel"
    assert setup == (["include_thread"] * 4 + ["include_module"] * n_mod + ["thread"] * 3
                     + ["module"] * (n_mod - 1) + ["memory", "remove_memory"])
    by_tid = {t.tid: t for t in threads}
    assert all(c[1] is by_tid[c[1].tid] for c in cb.calls if c[0] == "thread")
    modules = [c[1] for c in cb.calls if c[0] == "include_module"]
    exe = modules[0]
    assert exe.name == "callbacks_target"
    readelf = run_readelf_build_id(exe.path)
    assert exe.build_id.hex() == readelf and exe.cv_record[:4] == b"LEpB"
    assert LIBC in [m.name for m in modules]


def run_readelf_build_id(path: str) -> str:
    import subprocess

    out = subprocess.run(["readelf", "-n", path], capture_output=True, text=True, check=True).stdout
    match = re.search(r"Build ID: ([0-9a-f]+)", out)
    assert match
    return match.group(1)


def test_excluded_thread_is_absent_from_thread_list_and_names(filtered: Any, control: Any,
                                                              layout: Layout) -> None:
    """include_thread → False: no ThreadList entry, no ThreadNames entry (our reader,
    rust-minidump --json and --dump); the control dump has it."""
    drop = layout.tids["drop"]
    kept = {layout.tids[k] for k in ("main", "keep", "nostack")}
    with mdk.open_minidump(filtered.path) as d:
        assert {t.thread_id for t in d.threads} == kept
        assert drop not in d.thread_names and d.thread_names[layout.tids["keep"]] == "cb-keep"
    js = rust_json(filtered.path)
    assert {t["thread_id"] for t in js["threads"]} == kept
    assert {t["thread_id"]: t["thread_name"] for t in js["threads"]}[layout.tids["nostack"]] \
        == "cb-nostack"
    names = rust_thread_names(filtered.rust)
    assert drop not in names and names[layout.tids["keep"]] == "cb-keep"
    assert rust_thread_names(control.rust)[drop] == "cb-drop"
    assert drop in {t["thread_id"] for t in rust_json(control.path)["threads"]}


def test_thread_flags_without_stack_drop_that_stack(filtered: Any, control: Any,
                                                    layout: Layout) -> None:
    """thread() clearing Stack for cb-nostack: its stack is in no MemoryList range (our reader,
    rust --dump), its ThreadList stack is empty; other stacks stay; the control has it."""
    nostack, keep = layout.tids["nostack"], layout.tids["keep"]
    marker = layout.markers["nostack"]
    with mdk.open_minidump(filtered.path) as d:
        t = d.thread(nostack)
        assert t is not None and isinstance(t.context, md.ContextAMD64)
        assert t.stack_size == 0  # its ThreadList entry points at no stack bytes
        sp = t.context.rsp
        assert sp not in d.memory and d.memory.find(marker) is None
        keep_thread = d.thread(keep)
        assert keep_thread is not None and isinstance(keep_thread.context, md.ContextAMD64)
        keep_sp = keep_thread.context.rsp
        assert keep_sp in d.memory
    assert not touched(filtered.rust_ranges, sp - 128, marker + MARKER_SIZE - (sp - 128))
    assert covered(filtered.rust_ranges, keep_sp)
    control_ranges = rust_memory_list(control.rust)
    assert covered(control_ranges, marker, MARKER_SIZE)
    with mdk.open_minidump(control.path) as d:
        assert d.memory.read(marker, MARKER_SIZE) == marker_bytes("cb-nostack")


def test_excluded_module_is_absent(filtered: Any, control: Any) -> None:
    """include_module → False for libc: not in ModuleList (our reader, lldb `image list`)."""
    with mdk.open_minidump(filtered.path) as d:
        names = [os.path.basename(m.name) for m in d.modules]
    assert "callbacks_target" in names and LIBC not in names
    listed = lldb(filtered.path, "image list")
    assert "callbacks_target" in listed and LIBC not in listed
    assert LIBC in lldb(control.path, "image list")


def test_memory_ranges_hold_the_targets_bytes(filtered: Any, layout: Layout) -> None:
    """memory() ranges: the buffer's pages (but the removed one) hold the target's pattern
    (our reader, lldb `memory read`)."""
    page, base = layout.page, layout.buffer
    with mdk.open_minidump(filtered.path) as d:
        assert d.memory.read(base, page) == buffer_bytes(0, page)
        assert d.memory.read(base + 2 * page, 2 * page) == buffer_bytes(2 * page, 2 * page)
    assert lldb_bytes(filtered.path, base, 64) == buffer_bytes(0, 64)
    assert lldb_bytes(filtered.path, base + 3 * page + 100, 64) == buffer_bytes(3 * page + 100, 64)


def test_removed_ranges_are_gone(filtered: Any, control: Any, layout: Layout) -> None:
    """remove_memory(): the buffer's second page and cb-keep's stack marker are in no range
    (our reader, rust --dump, lldb), while the bytes around them are; the control dump holds
    the marker."""
    page, gone = layout.page, layout.buffer + layout.page
    marker = layout.markers["keep"]
    with mdk.open_minidump(filtered.path) as d:
        assert not any(a in d.memory for a in (gone, gone + page - 1, marker, marker + 63))
        assert gone - 1 in d.memory and gone + page in d.memory
        assert marker - 1 in d.memory and marker + MARKER_SIZE in d.memory
    ranges = filtered.rust_ranges
    assert not touched(ranges, gone, page) and not touched(ranges, marker, MARKER_SIZE)
    assert covered(ranges, marker - 8, 8) and covered(ranges, marker + MARKER_SIZE, 8)
    assert lldb_bytes(filtered.path, gone, 16) is None
    assert covered(rust_memory_list(control.rust), marker, MARKER_SIZE)
    with mdk.open_minidump(control.path) as d:
        assert d.memory.read(marker, MARKER_SIZE) == marker_bytes("cb-keep")


def test_read_failure_on_an_unmapped_range_is_survived(filtered: Any, layout: Layout) -> None:
    """The holey range's middle page is unmapped: read_memory_failure(address, size, EFAULT)
    is called once for it; True keeps both mapped pages (our reader, rust --dump, lldb)."""
    page, holey = layout.page, layout.holey
    failures = [c for c in filtered.callbacks.calls if c[0] == "read_memory_failure"]
    assert [(a, n) for _, a, n, _ in failures] == [(holey + page, page)]
    assert isinstance(failures[0][3], OSError) and failures[0][3].errno == 14
    with mdk.open_minidump(filtered.path) as d:
        assert d.memory.read(holey, page) == holey_bytes(0, page)
        assert d.memory.read(holey + 2 * page, page) == holey_bytes(2 * page, page)
        assert holey + page not in d.memory
    ranges = filtered.rust_ranges
    assert covered(ranges, holey, page) and covered(ranges, holey + 2 * page, page)
    assert not touched(ranges, holey + page, page)
    assert lldb_bytes(filtered.path, holey + 2 * page, 32) == holey_bytes(2 * page, 32)


def test_progress_is_monotonic_up_to_the_total(filtered: Any) -> None:
    """progress(done, total): first (0, total), done never decreases, last (total, total);
    total = the MemoryList bytes rust-minidump counts + the bytes that could not be read."""
    calls = filtered.callbacks.progress_calls()
    total = calls[0][1]
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert all(t == total for _, t in calls)
    dones = [d for d, _ in calls]
    assert dones == sorted(dones) and len(set(dones)) > 3
    failed = sum(c[2] for c in filtered.callbacks.calls if c[0] == "read_memory_failure")
    assert total == sum(n for _, n in filtered.rust_ranges) + failed


# --- stopping the dump -------------------------------------------------------------------------

def assert_no_file(directory: Path) -> None:
    """Neither the dump nor its temporary file is left in ``directory``."""
    assert sorted(os.listdir(directory)) == []


def test_read_failure_answered_false_fails_the_dump(target: Target, layout: Layout,
                                                   tmp_path: Path) -> None:
    """read_memory_failure → False: ProcessError (EFAULT) from write, no file, target fine."""

    class Strict(DumpCallbacks):
        def memory(self) -> Iterable[tuple[int, int]]:
            return [(layout.holey, 3 * layout.page)]

        def read_memory_failure(self, address: int, size: int, error: OSError) -> bool:
            return False

    with pytest.raises(mdk.ProcessError) as info:
        write_dump(target.pid, tmp_path / "strict.dmp", Strict())
    assert info.value.errno == 14 and f"0x{layout.holey + layout.page:x}" in str(info.value)
    assert_no_file(tmp_path)
    assert_target_fine(target)


def test_cancel_mid_way_leaves_no_file(target: Target, tmp_path: Path) -> None:
    """cancel() → True once memory copying has begun: DumpCancelled, no file, target fine."""

    class CancelLater(Recording):
        def cancel(self) -> bool:
            super().cancel()
            return any(done > 0 for done, _ in self.progress_calls())

    cb = CancelLater()
    with pytest.raises(mdk.DumpCancelled):
        write_dump(target.pid, tmp_path / "cancelled.dmp", cb)
    progress = cb.progress_calls()
    assert progress and 0 < progress[-1][0] < progress[-1][1]  # really mid-way
    assert cb.names()[-1] == "cancel"
    assert_no_file(tmp_path)
    assert_target_fine(target)


class Boom(Exception):
    pass


class Exploding(DumpCallbacks):
    """Raises ``error`` from method ``where`` (cancel: on its 5th poll, progress: once copying
    has begun, so both fire mid-way); default answers elsewhere."""

    def __init__(self, where: str, error: BaseException, holey: tuple[int, int]) -> None:
        self.where, self.error, self.holey = where, error, holey
        self.polls = 0

    def include_thread(self, thread: CallbackThread) -> bool:
        if self.where == "include_thread":
            raise self.error
        return True

    def include_module(self, module: CallbackModule) -> bool:
        if self.where == "include_module":
            raise self.error
        return True

    def thread(self, thread: CallbackThread, flags: ThreadWriteFlags) -> ThreadWriteFlags:
        if self.where == "thread":
            raise self.error
        return flags

    def module(self, module: CallbackModule, flags: ModuleWriteFlags) -> ModuleWriteFlags:
        if self.where == "module":
            raise self.error
        return flags

    def memory(self) -> Iterable[tuple[int, int]]:
        if self.where == "memory":
            raise self.error
        return [self.holey] if self.where == "read_memory_failure" else []

    def remove_memory(self) -> Iterable[tuple[int, int]]:
        if self.where == "remove_memory":
            raise self.error
        return []

    def read_memory_failure(self, address: int, size: int, error: OSError) -> bool:
        if self.where == "read_memory_failure":
            raise self.error
        return True

    def cancel(self) -> bool:
        self.polls += 1
        if self.where == "cancel" and self.polls == 5:
            raise self.error
        return False

    def progress(self, done: int, total: int) -> None:
        if self.where == "progress" and done > 0:
            raise self.error


METHODS = ["include_thread", "include_module", "thread", "module", "memory", "remove_memory",
           "read_memory_failure", "cancel", "progress"]


def frame_codes(exc: BaseException) -> list[Any]:
    tb, codes = exc.__traceback__, []
    while tb is not None:
        codes.append(tb.tb_frame.f_code)
        tb = tb.tb_next
    return codes


# Every method with an Exception; KeyboardInterrupt from one early and one mid-copy method.
CASES = [(m, Boom) for m in METHODS] + [("include_thread", KeyboardInterrupt),
                                        ("progress", KeyboardInterrupt)]


@pytest.mark.parametrize(("where", "error_type"), CASES,
                         ids=[f"{m}-{e.__name__}" for m, e in CASES])
def test_exception_in_any_callback_stops_the_dump(target: Target, layout: Layout, tmp_path: Path,
                                                  where: str,
                                                  error_type: type[BaseException]) -> None:
    """The very exception object propagates from write with the callback's frame in its
    traceback; no final or temporary file is left; the target runs untraced."""
    error = error_type(f"raised in {where}")
    cb = Exploding(where, error, (layout.holey, 3 * layout.page))
    with pytest.raises(error_type) as info:
        write_dump(target.pid, tmp_path / "boom.dmp", cb)
    assert info.value is error
    assert getattr(Exploding, where).__code__ in frame_codes(info.value)
    assert_no_file(tmp_path)
    assert_target_fine(target)
