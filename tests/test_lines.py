"""Source lines (minidumpkit.analysis.lines) of a binary whose DWARF is zlib-compressed,
against binutils' ``addr2line``.

Where ``.debug_info`` is compressed the line table finds a unit's line program by its
order (the .debug_aranges set's number), not by inflating ``.debug_info`` to the
unit's DIE (docs/stacks.md). The test program is built by the test with compressed
DWARF 5 sections (``-gz=zlib``, as Debian's debug files are), of three units, one of
them code-free: every byte of its functions must get addr2line's file and line, through
that route, and the line program of any other unit must claim none of them (the check
that makes the order safe to use).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from minidumpkit.analysis.elf import ElfFile
from minidumpkit.analysis.lines import LineTable

SOURCES = {
    "a.c": "int helper(int);\nstatic int twice(int x) {\n  return helper(x) + helper(x + 1);\n}\n"
           "int main(int argc, char **argv) {\n  (void)argv;\n  return twice(argc);\n}\n",
    "data.c": "int table[4] = {1, 2, 3, 4};\n",  # a unit with no code
    "b.c": "int helper(int x) {\n  return x * 3;\n}\n",
}
FUNCTIONS = ("main", "twice", "helper")


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is required (binutils / the C compiler)")
    return found


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("lines")
    for name, text in SOURCES.items():
        (work / name).write_text(text)
    out = work / "prog"
    subprocess.run([tool("cc"), "-O1", "-g", "-gdwarf-5", "-gz=zlib", "-fno-inline", "-o",
                    str(out), *SOURCES], cwd=work, check=True)
    return out


def function_bytes(path: Path) -> list[int]:
    nm = subprocess.run([tool("nm"), "-S", str(path)], capture_output=True, text=True,
                        check=True).stdout
    out = []
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] in FUNCTIONS:
            start, size = int(parts[0], 16), int(parts[1], 16)
            out += range(start, start + size)
    assert len(out) > 20, nm
    return out


def test_compressed_dwarf_lines_by_unit_order_equal_addr2line(program: Path) -> None:
    elf = ElfFile(str(program))
    assert elf.sections[".debug_info"].flags & 0x800  # SHF_COMPRESSED: the case tested
    addresses = function_bytes(program)
    text = subprocess.run([tool("addr2line"), "-e", str(program),
                           *[hex(a) for a in addresses]], capture_output=True, text=True,
                          check=True).stdout.splitlines()
    table = LineTable(elf)
    for address, line in zip(addresses, text, strict=True):
        path, _, number = line.split(" ")[0].rpartition(":")
        found = table.lookup(address)
        assert found is not None, hex(address)
        assert (found[0].rsplit("/", 1)[-1], found[1]) == (path.rsplit("/", 1)[-1],
                                                           int(number)), hex(address)
        assert found[0] == str(program.parent / path.rsplit("/", 1)[-1])  # absolute: comp dir
    assert table._programs and not table._units  # every line came by order, no DIE read

    # the property the order relies on: another unit's program never covers an address
    starts, _ends, _cus, ordinals = table._aranges
    units = max(ordinals) + 1
    assert units == 3  # the code-free unit has a set too
    for address in addresses[::7]:
        own = [k for k in range(units) if table._by_order(k, address) is not None]
        assert len(own) == 1, (hex(address), own)
