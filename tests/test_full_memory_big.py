"""Full-memory dumps of big address spaces: a 64 GiB MAP_NORESERVE reservation with
1 MiB touched (the dump holds that MiB, nothing is faulted into the target), and a
process with more than 4 GiB present (64-bit RVAs past 4 GiB, checked field by field
with our reader and by udmp-parser and lldb reading the memory beyond 4 GiB).

Kept cheap: the >4 GiB target's memory is zero but for one word per 64 MiB, so the
dump is a sparse file (its zero chunks are holes) in /dev/shm, deleted afterwards.
"""

from __future__ import annotations

import itertools
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from oracles import run
from test_flags_memory import PAGE, page_pattern

import minidumpkit as mdk
from minidumpkit import format as md
from minidumpkit.flags import StreamType

pytestmark = [pytest.mark.live, pytest.mark.validators]

GOLDEN = 0x9E3779B97F4A7C15
_PRESENT_BYTE = bytes(1 if b & 0x80 else 0 for b in range(256))


def present_pages(pid: int, start: int, end: int) -> int:
    """Pages of [start, end) whose pagemap entry has the present bit (the zero page
    counts: a read fault on an untouched page maps it)."""
    count = 0
    with open(f"/proc/{pid}/pagemap", "rb", buffering=0) as f:
        page = start // PAGE
        while page < end // PAGE:
            n = min(1 << 20, end // PAGE - page)
            data = os.pread(f.fileno(), n * 8, page * 8)
            # high byte of each entry; bit 7 of it is bit 63, "present"
            count += data[7::8].translate(_PRESENT_BYTE).count(1)
            page += n
    return count


def rss_kb(target: Any) -> int:
    line = target.command("rss")
    assert line.startswith("RSS kb="), line
    return int(line.split("=")[1])


@pytest.mark.parametrize("snapshot", ["never", "always"])
def test_reservation_of_64_gib_costs_only_what_was_touched(target_bins: dict[str, Path],
                                                           start_target: Any, live: Any,
                                                           tmp_path: Path,
                                                           snapshot: str) -> None:
    """A full dump of a 64 GiB MAP_NORESERVE arena with 1 MiB touched holds that 1 MiB only,
    maps no page into the target, whether stopped and read, or read from a VA clone."""
    t = start_target([target_bins["memflags_target"], "reserve"])
    base, size = t.int("reserve"), t.int("size")
    touched = t.int("touched")
    rss_before = rss_kb(t)
    present_before = present_pages(t.pid, base, base + size)
    assert present_before == 256  # the 1 MiB the target wrote
    path = mdk.dump(t.pid, tmp_path / "reserve.dmp", mdk.DumpType.FULL,
                    snapshot=snapshot)  # type: ignore[arg-type]
    live.assert_released(t.pid)
    assert present_pages(t.pid, base, base + size) == present_before
    assert rss_kb(t) <= rss_before + 256  # stdio noise at most, never the reservation
    assert path.stat().st_size < 32 << 20
    with mdk.open_minidump(path) as d:
        assert d.memory.read(touched, 1 << 20) == page_pattern(0, 256)
        assert base not in d.memory and touched - PAGE not in d.memory
        assert touched + (1 << 20) not in d.memory
        in_reservation = [r for r in d.memory.ranges if base <= r.start < base + size]
        assert sum(r.size for r in in_reservation) == 1 << 20
    code = ("import sys, udmp_parser; d = udmp_parser.UserDumpParser(); "
            "print(d.Parse(sys.argv[1]), bytes(d.ReadMemory(int(sys.argv[2]), 8)).hex())")
    out = subprocess.run([sys.executable, "-c", code, str(path), str(touched + 5 * PAGE)],
                         capture_output=True, text=True, timeout=120, check=True).stdout.split()
    assert out == ["True", struct.pack("<Q", (5 * GOLDEN) % 2**64).hex()]


def _check_fields(path: Path, size: int) -> tuple[int, list[tuple[int, int]]]:
    """Every RVA and size of the dump, read with struct against the file size: 32-bit
    locations below 4 GiB and inside the file, Memory64 data last and exactly to EOF.
    Returns Memory64List's base RVA and descriptors."""
    with open(path, "rb") as f:
        head = md.Header.unpack_from(f.read(md.Header.SIZE))
        f.seek(head.stream_directory_rva)
        dirs = [md.Directory.unpack_from(f.read(12)) for _ in range(head.stream_count)]
        m64: md.Location | None = None
        for e in dirs:
            assert e.location.rva + e.location.data_size <= min(size, 1 << 32), e
            if e.stream_type == StreamType.Memory64ListStream:
                m64 = e.location
            if e.stream_type == StreamType.MemoryListStream:
                f.seek(e.location.rva)
                n = struct.unpack("<I", f.read(4))[0]
                for _ in range(n):
                    d = md.MemoryDescriptor.unpack_from(f.read(16))
                    assert d.memory.rva + d.memory.data_size < 1 << 32
            if e.stream_type == StreamType.ThreadListStream:
                f.seek(e.location.rva)
                n = struct.unpack("<I", f.read(4))[0]
                for _ in range(n):
                    th = md.Thread.unpack_from(f.read(48))
                    assert th.stack.memory.rva + th.stack.memory.data_size < 1 << 32
                    # past 4 GiB the stacks keep a MemoryList copy the thread points at
                    assert th.stack.memory.data_size > 0 and th.stack.memory.rva > 0
                    assert th.thread_context.rva + th.thread_context.data_size < 1 << 32
        assert m64 is not None
        f.seek(m64.rva)
        h = md.Memory64ListHeader.unpack_from(f.read(16))
        assert m64.data_size == 16 + 16 * h.number_of_memory_ranges
        descs = [struct.unpack("<QQ", f.read(16)) for _ in range(h.number_of_memory_ranges)]
    assert h.base_rva + sum(n for _, n in descs) == size  # the bytes end the file
    assert all(a1 + n1 <= a2 for (a1, n1), (a2, _) in itertools.pairwise(descs))
    return h.base_rva, descs


def test_dump_over_4_gib_has_correct_64_bit_rvas(target_bins: dict[str, Path],
                                                 start_target: Any, live: Any) -> None:
    mib = 4200
    t = start_target([target_bins["memflags_target"], "big", str(mib)])
    base = t.int("big")
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    fd, name = tempfile.mkstemp(suffix=".dmp", dir=shm)
    os.close(fd)
    path = Path(name)
    try:
        mdk.dump(t.pid, path, mdk.DumpType.FULL, snapshot="never")
        live.assert_released(t.pid)
        size = path.stat().st_size
        assert size > (mib << 20) > 1 << 32
        base_rva, descs = _check_fields(path, size)
        block = 64 << 20
        markers = list(range(base, base + (mib << 20), block))
        # where each marker lives in the file: base RVA + bytes of the ranges before it
        offsets = {}
        rva = base_rva
        for a, n in descs:
            for m in markers:
                if a <= m < a + n:
                    offsets[m] = rva + m - a
            rva += n
        assert set(offsets) == set(markers)
        assert max(offsets.values()) > 1 << 32  # some are read from beyond 4 GiB
        with mdk.open_minidump(path) as d:
            for m in markers:
                i = (m - base) // PAGE
                assert d.memory.read(m, 16) == struct.pack("<QQ", (i * GOLDEN) % 2**64, 0)
        last = markers[-1]
        want = struct.pack("<Q", ((last - base) // PAGE * GOLDEN) % 2**64).hex()
        code = ("import sys, udmp_parser; d = udmp_parser.UserDumpParser(); "
                "print(d.Parse(sys.argv[1]), bytes(d.ReadMemory(int(sys.argv[2]), 8)).hex())")
        out = subprocess.run([sys.executable, "-c", code, str(path), str(last)],
                             capture_output=True, text=True, timeout=120, check=True).stdout
        assert out.split() == ["True", want]
        lldb = run("lldb", "--batch", "--no-lldbinit", "-o", f"target create --core {path}",
                   "-o", f"memory read --format x --size 8 --count 1 {last}", check=True).stdout
        assert f"0x{int.from_bytes(bytes.fromhex(want), 'little'):016x}" in lldb, lldb
    finally:
        path.unlink(missing_ok=True)
