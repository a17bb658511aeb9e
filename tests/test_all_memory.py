"""``all_memory=True`` (CLI ``--all-memory``): WithFullMemory copies every readable page.

A live C target (tests/targets/allmem_target.c) maps a file read-only (private and
shared) and holds a MADV_DONTDUMP region; its program code is a file mapping too. With
the kernel's core-dump rules (DumpType.FULL alone) these are left out; with
all_memory=True every readable mapping of /proc/PID/maps is in the dump but for those
the kernel will not let a debugger read ([vvar], [vvar_vclock], [vsyscall], devices)
and the pages of anonymous memory that were never touched (pagemap, read here by the
test, says which exist). Bytes are checked against the files on disk and
/proc/PID/mem, with our reader, lldb and minidump-stackwalk's ``--dump``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

import minidumpkit
from conftest import Target
from minidumpkit import DumpType, MiniDumpType
from minidumpkit.cli import main
from minidumpkit.dumper import SnapshotMode
from oracles import run

pytestmark = pytest.mark.validators

PAGE = os.sysconf("SC_PAGE_SIZE")
NEVER_READ = ("[vvar]", "[vvar_vclock]", "[vsyscall]")


def file_bytes(size: int) -> bytes:
    return bytes((i * 31 + 5) & 0xFF for i in range(size))


def dontdump_bytes() -> bytes:
    return bytes((i * 7 + 13) & 0xFF for i in range(4 * PAGE))


class Mapping:
    def __init__(self, line: str) -> None:
        fields = line.split(maxsplit=5)
        lo, hi = fields[0].split("-")
        self.start, self.end = int(lo, 16), int(hi, 16)
        self.perms, self.offset = fields[1], int(fields[2], 16)
        self.inode = int(fields[4])
        self.path = fields[5].strip() if len(fields) > 5 else ""

    @property
    def file(self) -> bool:
        return self.inode != 0 and self.path.startswith("/")


def maps(pid: int) -> list[Mapping]:
    with open(f"/proc/{pid}/maps") as f:
        return [Mapping(line) for line in f]


def written_mappings(pid: int) -> set[int]:
    """Starts of mappings with anonymous (copied-on-write) pages, from smaps: e.g. RELRO
    data, written and then made read-only by the loader."""
    out, start = set(), 0
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(maxsplit=1)[0]
            if "-" in head and not head.endswith(":"):
                start = int(head.split("-")[0], 16)
            elif head == "Anonymous:" and int(line.split()[1]):
                out.add(start)
    return out


def existing_pages(pid: int, m: Mapping) -> list[int]:
    """Pages of ``m`` that pagemap says are present or swapped out."""
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(m.start // PAGE * 8)
        data = f.read((m.end - m.start) // PAGE * 8)
    return [m.start + i * PAGE for i in range(len(data) // 8)
            if int.from_bytes(data[i * 8:i * 8 + 8], "little") >> 62]


def live_bytes(pid: int, address: int, size: int) -> bytes:
    with open(f"/proc/{pid}/mem", "rb") as f:
        f.seek(address)
        return f.read(size)


def covered(ranges: list[tuple[int, int]], start: int, end: int) -> bool:
    """Whether [start, end) lies inside the union of ``(start, end)`` ranges."""
    pos = start
    for lo, hi in sorted(ranges):
        if lo <= pos < hi:
            pos = hi
        if pos >= end:
            return True
    return pos >= end


def stackwalk_ranges(path: Path) -> list[tuple[int, int]]:
    """Memory ranges of MemoryList and Memory64List as minidump-stackwalk --dump prints them."""
    out = run("minidump-stackwalk", "--dump", path, check=True, timeout=600).stdout
    starts = re.findall(r"start_of_memory_range = (0x[0-9a-f]+)\n\s+memory\.data_size\s+= "
                        r"(0x[0-9a-f]+)", out)
    assert starts, "minidump-stackwalk --dump printed no memory descriptors"
    return [(int(a, 16), int(a, 16) + int(n, 16)) for a, n in starts]


def lldb_read(path: Path, address: int, size: int) -> bytes | None:
    out = run("lldb", "--batch", "--no-lldbinit", "-c", str(path),
              "-o", f"memory read --force -c {size} 0x{address:x}", check=True).stdout
    rows = re.findall(r"^0x([0-9a-f]+): ((?:[0-9a-f]{2} )+)", out, re.MULTILINE)
    if not rows:
        return None
    assert int(rows[0][0], 16) == address
    return b"".join(bytes.fromhex(hexes) for _, hexes in rows)


@pytest.fixture
def target(target_bins: dict[str, Path], start_target: Callable[..., Target],
           tmp_path: Path) -> tuple[Target, Path]:
    data = tmp_path / "mapped.bin"
    data.write_bytes(file_bytes(3 * PAGE))
    t = start_target([target_bins["allmem_target"], data])
    t.wait_parked()
    return t, data


@pytest.mark.parametrize("snapshot", ["never", "always"])
def test_all_memory_holds_every_readable_mapping(target: tuple[Target, Path], tmp_path: Path,
                                                 snapshot: SnapshotMode) -> None:
    t, data = target
    pid = t.pid
    core = minidumpkit.dump(pid, tmp_path / "core.dmp", DumpType.FULL, snapshot=snapshot)
    every = minidumpkit.dump(pid, tmp_path / "all.dmp", DumpType.FULL, snapshot=snapshot,
                             all_memory=True)
    code, ro_private, ro_shared = t.int("code"), t.int("ro_private"), t.int("ro_shared")
    dontdump = t.int("dontdump")
    with minidumpkit.open_minidump(core) as d:
        info = d.minidumpkit_info
        assert info is not None and info.details["full_memory"] == "core_dump"
        # the kernel's rules: no program code, no unwritten file mapping, no DONTDUMP
        for address in (code, ro_private, ro_shared, dontdump):
            assert address not in d.memory, hex(address)

    with minidumpkit.open_minidump(every) as d:
        info = d.minidumpkit_info
        assert info is not None and info.details["full_memory"] == "all_readable"
        ours = [(r.start, r.start + r.size) for r in d.memory.ranges]
        checked = 0
        written = written_mappings(pid)
        for m in maps(pid):
            if not m.perms.startswith("r") or m.path in NEVER_READ or m.path.startswith("/dev/"):
                continue
            if m.file or m.path == "[vdso]":
                assert covered(ours, m.start, m.end), f"{m.path} {m.start:#x}-{m.end:#x}"
                got = d.memory.read(m.start, m.end - m.start)
                assert got == live_bytes(pid, m.start, m.end - m.start), m.path
                if m.file and m.start not in written:  # never written: the file's own bytes
                    on_disk = Path(m.path).read_bytes()[m.offset:m.offset + m.end - m.start]
                    assert got[:len(on_disk)] == on_disk, m.path
            else:
                for page in existing_pages(pid, m):
                    assert covered(ours, page, page + PAGE), f"{m.path or 'anon'} {page:#x}"
            checked += 1
        assert checked >= 10
        assert d.memory.read(dontdump, 4 * PAGE) == dontdump_bytes()
        assert d.memory.read(ro_shared, 3 * PAGE) == data.read_bytes()
        assert d.memory.read(code, 64) == live_bytes(pid, code, 64)

    # minidump-stackwalk sees the same memory
    theirs = stackwalk_ranges(every)
    for address, size in ((code, 64), (ro_private, 3 * PAGE), (ro_shared, 3 * PAGE),
                          (dontdump, 4 * PAGE)):
        assert covered(theirs, address, address + size), hex(address)
    assert sum(b - a for a, b in theirs) == sum(b - a for a, b in ours)

    # lldb reads the program's code and the file mapping as they are on disk
    binary = next(m for m in maps(pid) if m.start <= code < m.end)
    with open(binary.path, "rb") as f:
        f.seek(binary.offset + code - binary.start)
        assert lldb_read(every, code, 32) == f.read(32)
    assert lldb_read(every, ro_private + PAGE, 32) == data.read_bytes()[PAGE:PAGE + 32]
    assert lldb_read(every, dontdump + 100, 16) == dontdump_bytes()[100:116]


def test_all_memory_needs_full_memory(target: tuple[Target, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """all_memory widens WithFullMemory only: without it, a clear error before the
    target is touched and no file; the CLI calls it a usage error."""
    t, _ = target
    with pytest.raises(ValueError, match="WithFullMemory"):
        minidumpkit.dump(t.pid, tmp_path / "x.dmp", DumpType.MINI, all_memory=True)
    assert not (tmp_path / "x.dmp").exists()
    assert main(["dump", str(t.pid), "--mini", "--all-memory", "-o", str(tmp_path / "y.dmp")]) == 2
    assert "--all-memory" in capsys.readouterr().err
    assert not (tmp_path / "y.dmp").exists()


def test_cli_all_memory_implies_full(target: tuple[Target, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    t, data = target
    out = tmp_path / "cli.dmp"
    assert main(["dump", str(t.pid), "--all-memory", "-o", str(out)]) == 0
    capsys.readouterr()
    with minidumpkit.open_minidump(out) as d:
        assert d.header.flags & MiniDumpType.WithFullMemory
        assert d.memory.read(t.int("ro_private"), 3 * PAGE) == data.read_bytes()
        assert d.memory.read(t.int("dontdump"), 4 * PAGE) == dontdump_bytes()


SELF_DUMP = """
import os, sys, minidumpkit
code = next(line for line in open("/proc/self/maps") if " r-xp " in line and "/" in line)
start = int(code.split("-")[0], 16)
with open("/proc/self/mem", "rb") as mem:
    mem.seek(start)
    head = mem.read(32)
minidumpkit.dump(os.getpid(), sys.argv[1], minidumpkit.DumpType.FULL, all_memory=True)
print(hex(start), head.hex(), code.split()[-1])
"""


def test_self_dump_all_memory(tmp_path: Path) -> None:
    """A process dumping itself (through the helper process) gets all_memory too."""
    import subprocess
    import sys

    path = tmp_path / "self.dmp"
    proc = subprocess.run([sys.executable, "-c", SELF_DUMP, str(path)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    start, head, mapped = proc.stdout.split()
    with minidumpkit.open_minidump(path) as d:
        info = d.minidumpkit_info
        assert info is not None and info.details["full_memory"] == "all_readable"
        assert d.memory.read(int(start, 16), 32) == bytes.fromhex(head), mapped
    assert lldb_read(path, int(start, 16), 32) == bytes.fromhex(head)
