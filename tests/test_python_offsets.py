"""The offset tables and the line-table decoder against CPython itself.

The 3.11/3.12 tables are recompiled from each pyenv CPython's own headers
(tools/pyoffsets/offsets.c); the 3.13 _Py_DebugOffsets field order is checked with
offsetof on the 3.13 headers (tools/pyoffsets/debug_offsets.c). The location-table decoder
is compared with the running interpreter's own ``co_lines()`` on every code object of a
few stdlib modules. Hostile memory (loops, garbage) ends in a status, within the limits.
"""

from __future__ import annotations

import dataclasses
import shutil
import struct
import subprocess
import sys
import types
from pathlib import Path

import pytest

from minidumpkit import MemoryNotCaptured
from minidumpkit._pyruntime import offsets as o
from minidumpkit._pyruntime.walk import MAX_FRAMES, Walker, line_for

TOOLS = Path(__file__).resolve().parents[1] / "tools" / "pyoffsets"
PYENV = Path("/root/.pyenv/versions")

FIELD_OF = {  # offsets.c name -> Layout field
    "runtime.interpreters_head": "runtime_interpreters_head",
    "runtime.gil_holder": "runtime_gil_holder", "runtime.ceval_gil": "runtime_ceval_gil",
    "interp.next": "interp_next", "interp.id": "interp_id",
    "interp.threads_head": "interp_threads_head", "interp.ceval_gil": "interp_ceval_gil",
    "gil.last_holder": "gil_last_holder", "gil.locked": "gil_locked",
    "tstate.size": "tstate_size", "tstate.next": "tstate_next", "tstate.interp": "tstate_interp",
    "tstate.cframe": "tstate_cframe", "tstate.root_cframe": "tstate_root_cframe",
    "tstate.thread_id": "tstate_thread_id", "tstate.native_thread_id": "tstate_native_thread_id",
    "cframe.current_frame": "cframe_current_frame",
    "frame.size": "frame_size", "frame.code": "frame_code", "frame.previous": "frame_previous",
    "frame.instr": "frame_instr", "frame.owner": "frame_owner", "frame.is_entry": "frame_is_entry",
    "object.ob_type": "object_type",
    "code.firstlineno": "code_firstlineno", "code.filename": "code_filename",
    "code.name": "code_name", "code.qualname": "code_qualname", "code.linetable": "code_linetable",
    "code.firsttraceable": "code_firsttraceable", "code.code_adaptive": "code_adaptive",
    "bytes.ob_size": "bytes_size", "bytes.ob_sval": "bytes_sval",
    "unicode.length": "unicode_length", "unicode.state": "unicode_state",
    "unicode.ascii_size": "unicode_ascii_size", "unicode.compact_size": "unicode_compact_size",
    "unicode.legacy_data": "unicode_legacy_data",
}


def compile_and_run(source: Path, version: str, tmp_path: Path) -> dict[str, int]:
    prefix = PYENV / version
    includes = sorted(prefix.glob("include/python3.*"))
    if not includes or shutil.which("cc") is None:
        pytest.skip(f"CPython {version} headers or cc missing")
    exe = tmp_path / "offsets"
    subprocess.run(["cc", "-std=gnu11", f"-I{includes[0]}", f"-I{includes[0]}/internal",
                    "-o", str(exe), str(source)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return {k: int(v) for k, v in (line.split() for line in out.splitlines())}


@pytest.mark.parametrize("version,layout", [("3.11.7", o.PY311_LP64), ("3.12.1", o.PY312_LP64)])
def test_static_tables_equal_the_headers(tmp_path: Path, version: str, layout: o.Layout) -> None:
    got = compile_and_run(TOOLS / "offsets.c", version, tmp_path)
    assert got.pop("version_hex") >> 16 == int(version.split(".")[1]) | 0x300
    got.pop("runtime.interpreters_main")
    for name, value in got.items():
        assert getattr(layout, FIELD_OF[name]) == value, name
    present = {FIELD_OF[n] for n in got}
    for f in dataclasses.fields(layout):  # fields the headers lack are None in the table
        if f.name.startswith(("runtime_", "interp_", "gil_", "tstate_", "cframe_", "frame_")) \
                and f.name not in present and f.name != "tstate_current_frame":
            assert getattr(layout, f.name) is None, f.name


@pytest.mark.parametrize("version", ["3.11.7", "3.12.1", "3.13.0"])
def test_lock_offsets_equal_the_headers(tmp_path: Path, version: str) -> None:
    """What analysis/pylocks.py reads: frame slots, code sizes, the GIL's cond and mutex."""
    got = compile_and_run(TOOLS / "lock_offsets.c", version, tmp_path)
    locks = o.LOCK_OFFSETS[(3, int(version.split(".")[1]), o.LP64)]
    assert len(got) == 9
    for name, value in got.items():
        assert getattr(locks, name) == value, name


def test_debug_offsets_order_equals_the_313_headers(tmp_path: Path) -> None:
    got = compile_and_run(TOOLS / "debug_offsets.c", "3.13.0", tmp_path)
    assert got.pop("sizeof") == 8 + 8 * len(o.DEBUG_FIELDS_313)
    assert got.pop("code.firsttraceable") == o.EXTRA_313["code_firsttraceable"]
    for name, offset in got.items():
        assert 8 + 8 * o.DEBUG_FIELDS_313.index(name) == offset, name


def all_code(module: types.ModuleType) -> list[types.CodeType]:
    out: list[types.CodeType] = []
    todo = [v.__code__ for v in vars(module).values() if isinstance(v, types.FunctionType)]
    for cls in (v for v in vars(module).values() if isinstance(v, type)):
        todo += [v.__code__ for v in vars(cls).values() if isinstance(v, types.FunctionType)]
    while todo:
        code = todo.pop()
        out.append(code)
        todo += [c for c in code.co_consts if isinstance(c, types.CodeType)]
    return out


@pytest.mark.skipif(sys.version_info < (3, 11), reason="location tables are 3.11+")
def test_line_for_equals_co_lines() -> None:
    import argparse
    import json
    import threading
    checked = 0
    for module in (threading, argparse, json.decoder):
        for code in all_code(module):
            for start, end, line in code.co_lines():
                for offset in range(start, end, 2):
                    assert line_for(code.co_linetable, code.co_firstlineno, offset) == line, \
                        (code.co_qualname, offset)
                    checked += 1
    assert checked > 10000


class FakeMemory:
    """Hand-laid memory for the limit tests: {address: bytes}."""

    def __init__(self) -> None:
        self.blocks: dict[int, bytes] = {}

    def put(self, address: int, data: bytes) -> None:
        self.blocks[address] = data

    def read(self, address: int, size: int) -> bytes:
        for start, data in self.blocks.items():
            if start <= address and address + size <= start + len(data):
                return data[address - start:address - start + size]
        raise MemoryNotCaptured(address, size)


def runtime_with_frames(frame_links: dict[int, int]) -> tuple[FakeMemory, int]:
    """A 3.12 runtime: one interpreter, one thread, frames linked as given, all shims
    (owner 3) so no code object is needed."""
    lo = o.PY312_LP64
    mem = FakeMemory()
    runtime, interp, tstate, cframe = 0x10000, 0x20000, 0x30000, 0x40000
    rt = bytearray(64)
    struct.pack_into("<Q", rt, lo.runtime_interpreters_head, interp)
    mem.put(runtime, bytes(rt))
    it = bytearray(512)
    struct.pack_into("<Q", it, lo.interp_threads_head, tstate)
    mem.put(interp, bytes(it))
    ts = bytearray(lo.tstate_size)
    first = min(frame_links)
    struct.pack_into("<Q", ts, lo.tstate_cframe, cframe)
    mem.put(tstate, bytes(ts))
    mem.put(cframe, struct.pack("<QQQ", first, 0, 0))
    for address, previous in frame_links.items():
        fr = bytearray(lo.frame_size)
        struct.pack_into("<Q", fr, lo.frame_previous, previous)
        fr[lo.frame_owner] = o.OWNED_BY_CSTACK
        mem.put(address, bytes(fr))
    return mem, runtime


def test_frame_cycle_is_a_partial_walk() -> None:
    mem, runtime = runtime_with_frames({0x50000: 0x50100, 0x50100: 0x50000})
    threads, status = Walker(mem, o.PY312_LP64).walk(runtime)
    assert status == "partial walk: frame list loops"
    assert len(threads) == 1 and threads[0].status == status


def test_frame_depth_limit() -> None:
    links = {0x100000 + i * 0x100: 0x100000 + (i + 1) * 0x100 for i in range(MAX_FRAMES + 5)}
    mem, runtime = runtime_with_frames(links)
    threads, status = Walker(mem, o.PY312_LP64).walk(runtime)
    assert status == f"partial walk: more than {MAX_FRAMES} frames"


def test_missing_memory_and_time_limit() -> None:
    mem, runtime = runtime_with_frames({0x50000: 0x60000})  # 0x60000 is not there
    threads, status = Walker(mem, o.PY312_LP64).walk(runtime)
    assert status.startswith("partial walk: frame at 0x60000 not readable"), status
    _, status = Walker(mem, o.PY312_LP64, time_limit=-1).walk(runtime)
    assert status == "partial walk: time limit reached"


def test_hostile_debug_offsets_are_refused() -> None:
    values = {name: 4096 if name.endswith(".size") else 8 for name in o.DEBUG_FIELDS_313}
    values["thread_state.next"] = 1 << 40
    with pytest.raises(ValueError, match="thread_state.next"):
        o.layout_from_debug_offsets(values, 13, o.LP64)
