"""The DWARF CFI reader (minidumpkit.analysis.cfi) against binutils' ``readelf -wF``.

``readelf --debug-dump=frames-interp`` prints, for every FDE of a file, the table of
rows our interpreter computes: at each location the CFA rule and one rule per
register. For the test targets, the C library, the C++ runtime and the dynamic loader,
every row readelf prints must be the row we compute at that address; the lookup goes
through .eh_frame_hdr's table as in a walk. The PLT's CFA expression is evaluated
against the System V psABI's definition of a PLT entry.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import types
from pathlib import Path

import pytest

from minidumpkit.analysis.cfi import CfiSection, Row, eval_expression
from minidumpkit.analysis.elf import ElfFile

REGS = ["rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
        "r12", "r13", "r14", "r15", "ra"]
SYSTEM_FILES = ["/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6",
                "/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/libm.so.6"]


def readelf_rows(path: Path | str, section: str = ".eh_frame"
                 ) -> list[tuple[int, int, list[tuple[int, str, dict[str, str]]]]]:
    """(fde start, fde end, [(loc, cfa, {reg: rule})]) for each FDE of ``section``."""
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.fail("binutils' readelf is required")
    # readelf exits 1 on system libraries for an unrelated complaint ("Unable to find
    # program interpreter name"); the frame tables it prints are complete
    text = subprocess.run([readelf, "--debug-dump=frames-interp", str(path)],
                          capture_output=True, text=True).stdout
    assert "Contents of the .eh_frame section" in text, f"readelf printed no frames for {path}"
    parts = re.split(r"Contents of the (\S+) section[^:\n]*:", text)
    text = "".join(body for name, body in zip(parts[1::2], parts[2::2]) if name == section)
    out: list[tuple[int, int, list[tuple[int, str, dict[str, str]]]]] = []
    header: list[str] = []
    for line in text.splitlines():
        m = re.search(r" FDE cie=\w+ pc=([0-9a-f]+)\.\.([0-9a-f]+)", line)
        if m:
            out.append((int(m.group(1), 16), int(m.group(2), 16), []))
            header = []
            continue
        if " CIE " in line:
            out.append((-1, -1, []))  # the CIE's own table: not looked up
            continue
        if line.strip().startswith("LOC"):
            header = line.split()[2:]
            continue
        cells = line.split()
        if header and out and len(cells) == len(header) + 2 and re.fullmatch(r"[0-9a-f]{16}", cells[0]):
            out[-1][2].append((int(cells[0], 16), cells[1], dict(zip(header, cells[2:]))))
    return [fde for fde in out if fde[0] >= 0]


def section_of(elf: ElfFile) -> CfiSection:
    eh, hdr = elf.sections[".eh_frame"], elf.sections[".eh_frame_hdr"]
    data, table = elf.section_bytes(".eh_frame"), elf.section_bytes(".eh_frame_hdr")
    assert data is not None and table is not None
    return CfiSection(data, eh.addr, is_eh=True, hdr=table, hdr_vaddr=hdr.addr)


def as_readelf(row: Row, columns: list[str]) -> tuple[str, dict[str, str]]:
    if row.cfa_expression is not None:
        cfa = "exp"
    else:
        cfa = f"{REGS[row.cfa_register]}{row.cfa_offset:+d}"
    rules = {}
    for name in columns:
        rule = row.rules.get(REGS.index(name)) if name in REGS else None
        if rule is None or rule.kind == "undefined":
            rules[name] = "u"
        elif rule.kind == "offset":
            rules[name] = f"c{rule.arg:+d}"
        elif rule.kind == "val_offset":
            rules[name] = f"v{rule.arg:+d}"
        elif rule.kind == "same":
            rules[name] = "s"
        elif rule.kind == "register":
            rules[name] = REGS[rule.arg]
        else:
            rules[name] = "exp" if rule.kind == "expression" else "vexp"
    return cfa, rules


def compare_file(path: Path | str, which: str = ".eh_frame") -> int:
    elf = ElfFile(str(path))
    try:
        if which == ".eh_frame":
            section = section_of(elf)
        else:
            data = elf.section_bytes(".debug_frame")
            assert data is not None
            section = CfiSection(data, 0, is_eh=False)
        rows = 0
        for start, end, table in readelf_rows(path, which):
            for loc, cfa, regs in table:
                found = section.find(loc)
                assert found is not None and (found.start, found.end) == (start, end), \
                    f"{path}: no FDE {start:#x}..{end:#x} for {loc:#x}"
                assert as_readelf(section.row(found, loc), list(regs)) == (cfa, regs), \
                    f"{path}: row at {loc:#x}"
                rows += 1
            if table:
                after = section.find(end)
                assert after is None or after.start == end
        return rows
    finally:
        elf.close()


@pytest.mark.parametrize("path", SYSTEM_FILES)
def test_rows_equal_readelf_on_system_libraries(path: str) -> None:
    assert compare_file(Path(path).resolve()) > 1000


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The stack targets, as tests/test_stackwalk.py builds them."""
    from test_stackwalk import stack_bins

    return stack_bins.__wrapped__(tmp_path_factory)  # type: ignore[attr-defined, no-any-return]


def test_rows_equal_readelf_on_targets(built: dict[str, Path]) -> None:
    for path in built.values():
        assert compare_file(path) > 20


def test_debug_frame_rows_equal_readelf(built: dict[str, Path]) -> None:
    """.debug_frame (CIE id 0xffffffff, absolute addresses, no augmentation)."""
    assert compare_file(built["stack_target_df"], ".debug_frame") >= 6


def test_plt_cfa_expression_follows_the_psabi(built: dict[str, Path]) -> None:
    """A PLT entry is ``jmp *GOT(%rip); push $n; jmp .PLT0`` (16 bytes): before the push
    ends (offsets 0-10) the CFA is rsp+8, after it (11-15) rsp+16."""
    elf = ElfFile(str(built["stack_target"]))
    try:
        plt = elf.sections[".plt"]
        section = section_of(elf)
        rsp = 0x7FFF_0000_1000
        checked = 0
        for entry in range(plt.addr + 16, plt.addr + plt.size, 16):
            for k in range(16):
                fde = section.find(entry + k)
                assert fde is not None
                row = section.row(fde, entry + k)
                assert row.cfa_expression is not None
                regs = {7: rsp, 16: entry + k}
                cfa = eval_expression(row.cfa_expression, regs.__getitem__, lambda a: 0)
                assert cfa == rsp + (16 if k >= 11 else 8), (hex(entry), k)
                checked += 1
        assert checked >= 16
    finally:
        elf.close()


class _LoadedImage:
    """Process memory as the loader lays a file out (each PT_LOAD's file bytes at base +
    vaddr), answering the two calls cfi_from_memory makes of a dump's Memory. What a full
    dump holding the module's read-only segments gives (our writer does not capture them
    yet: see docs/stacks.md)."""

    def __init__(self, path: str, base: int) -> None:
        from minidumpkit.analysis.elf import PT_LOAD

        elf = ElfFile(path)
        self.ranges = []
        low = elf.load_base
        for seg in elf.segments:
            if seg.type == PT_LOAD:
                data = bytes(elf.data[seg.offset:seg.offset + seg.filesz])
                self.ranges.append((base + seg.vaddr - low, data))
        elf.close()

    def find(self, address: int) -> types.SimpleNamespace | None:
        for start, data in self.ranges:
            if start <= address < start + len(data):
                return types.SimpleNamespace(start=start, end=start + len(data))
        return None

    def read(self, address: int, size: int) -> bytes:
        from minidumpkit import MemoryNotCaptured

        for start, data in self.ranges:
            if start <= address and address + size <= start + len(data):
                return data[address - start:address - start + size]
        raise MemoryNotCaptured(address, size)


@pytest.mark.parametrize("path", SYSTEM_FILES[:2])
def test_cfi_from_module_bytes_in_memory(path: str) -> None:
    """.eh_frame found from the ELF header, PT_GNU_EH_FRAME and .eh_frame_hdr in module
    memory gives readelf's rows, as the file does."""
    from minidumpkit.analysis.memimage import cfi_from_memory

    real = str(Path(path).resolve())
    image = _LoadedImage(real, 0x7F00_0000_0000)
    found = cfi_from_memory(image, 0x7F00_0000_0000)  # type: ignore[arg-type]
    assert found is not None
    section, load_base = found
    assert load_base == 0
    rows = 0
    for start, end, table in readelf_rows(real):
        for loc, cfa, regs in table:
            fde = section.find(loc)
            assert fde is not None and (fde.start, fde.end) == (start, end)
            assert as_readelf(section.row(fde, loc), list(regs)) == (cfa, regs)
            rows += 1
    assert rows > 1000
    # the first page alone (what our full dumps hold today): no CFI, no error
    first = _LoadedImage(real, 0x7F00_0000_0000)
    first.ranges = [(s, d[:4096]) for s, d in first.ranges[:1]]
    assert cfi_from_memory(first, 0x7F00_0000_0000) is None  # type: ignore[arg-type]
