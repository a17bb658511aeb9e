"""A module record covers every mapping of its file: the code the kernel or lld put
after a gap is inside the module, so the stack walkers find its unwind info and names.

Targets are built here with the layouts that broke the old rule (the module ended at
the first gap): a non-PIE GNU ld binary whose text lies after a hole (Debian's node has
one after its first text mapping), with a large .bss between; lld binaries whose
segments are ``-z max-page-size`` apart (their first segment is r--p, as chromium's),
with the text mapping at file offset 0 or not. Expected extents come from readelf's
program headers and /proc/PID/maps; names from dump-syms symbol stores read by
minidump-stackwalk, and from lldb.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.live, pytest.mark.validators,
              pytest.mark.skipif(sys.platform != "linux", reason="Linux backend")]

import minidumpkit as mdk  # noqa: E402
from minidumpkit import format as md  # noqa: E402
from oracles import run  # noqa: E402

# far_inner and far_outer live in their own section, which the layouts below place
# after a gap; the thread blocks in far_inner's read(), so its frames are there.
FAR_TEXT_C = r"""
#include <stdio.h>
#include <unistd.h>
#define FAR __attribute__((noinline, section(".fartext")))
static char big_bss[3 << 20];  /* anonymous pages after the file's data */
FAR void far_inner(void) {
    char c;
    big_bss[sizeof big_bss - 1] = 1;
    printf("READY pid=%d\n", getpid());
    fflush(stdout);
    while (read(0, &c, 1) == 1) {}
}
FAR void far_outer(void) { far_inner(); __asm__ volatile(""); }
__attribute__((noinline)) void near_caller(void) { far_outer(); __asm__ volatile(""); }
int main(void) { near_caller(); return 0; }
"""
CHAIN = ["far_inner", "far_outer", "near_caller", "main"]
BASE_FLAGS = ["-g", "-O0", "-fno-omit-frame-pointer", "-Wl,--build-id"]
LAYOUTS = {
    # GNU ld, non-PIE, like node: .fartext 12 MiB past the rest, the kernel leaves a hole
    "gnu-nonpie-hole": ["-no-pie", "-Wl,-z,separate-code",
                        "-Wl,--section-start=.fartext=0x1000000"],
    # lld, segments 2 MiB apart; the small first segment puts the text at file offset 0
    "lld-max-page-size": ["-fuse-ld=lld", "-Wl,-z,max-page-size=0x200000"],
    # lld, separate code: text at a non-zero offset, 2 MiB after the r--p headers
    "lld-separate-code": ["-fuse-ld=lld", "-Wl,-z,separate-code", "-Wl,-z,max-page-size=0x200000"],
}


def load_segments(binary: Path | str) -> list[tuple[int, int, str]]:
    """(vaddr, vaddr + memsz, flags) of every PT_LOAD, as readelf prints them."""
    out = subprocess.run(["readelf", "-lW", str(binary)], capture_output=True, text=True,
                         check=True).stdout
    segs = []
    for m in re.finditer(r"^\s*LOAD\s+0x[0-9a-f]+\s+(0x[0-9a-f]+)\s+0x[0-9a-f]+\s+0x[0-9a-f]+"
                         r"\s+(0x[0-9a-f]+)\s+([RWE ]+?)\s+0x", out, re.M):
        vaddr, memsz = int(m.group(1), 16), int(m.group(2), 16)
        segs.append((vaddr, vaddr + memsz, m.group(3).replace(" ", "")))
    assert segs, out
    return segs


def file_mappings(pid: int, path: str) -> list[tuple[int, int, int]]:
    """(start, end, offset) of every mapping of ``path`` in /proc/PID/maps."""
    out = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == path:
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            out.append((lo, hi, int(fields[2], 16)))
    return out


def expected_text(pid: int, binary: str) -> tuple[int, int, list[tuple[int, int]]]:
    """The module's first and last mapped byte (its mappings in maps up to where its
    program headers end: node maps pieces of its own file again elsewhere) and its
    executable segments' address ranges (program headers relocated by the load bias)."""
    maps = file_mappings(pid, binary)
    segs = load_segments(binary)
    bias = maps[0][0] - (min(lo for lo, _, _ in segs) & ~0xFFF)
    image_end = bias + max(hi for _, hi, _ in segs)
    text = [(bias + lo, bias + hi) for lo, hi, flags in segs if "E" in flags]
    return maps[0][0], max(hi for lo, hi, _ in maps if lo < image_end), text


def symbol_store(store: Path, *binaries: str) -> Path:
    """A Breakpad symbol store made by rust dump-syms from ``binaries``."""
    for binary in binaries:
        sym = run("dump-syms", binary, check=True, timeout=300).stdout
        header = sym.splitlines()[0].split()
        assert header[:2] == ["MODULE", "Linux"], header
        folder = store / header[4] / header[3]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{header[4]}.sym").write_text(sym)
    return store


def rust_walk(dump: Path, store: Path) -> dict[str, Any]:
    proc = run("minidump-stackwalk", "--json", "--symbols-path", store, dump, check=True)
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def rust_module(walk: dict[str, Any], name: str) -> tuple[int, int]:
    found = [(int(m["base_addr"], 16), int(m["end_addr"], 16))
             for m in walk["modules"] if m["filename"] == name]
    assert len(found) == 1, f"{name}: {found}"
    return found[0]


def libc_of(pid: int) -> str:
    match = re.search(r"(/\S*/libc\.so\.6)$", Path(f"/proc/{pid}/maps").read_text(), re.M)
    assert match
    return match.group(1)


@pytest.fixture(scope="module")
def far_text_bins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The far-text target built with each layout."""
    if shutil.which("ld.lld") is None:
        pytest.fail("lld (ld.lld) is required to build the lld-linked targets: "
                    "apt-get install lld (.ci/install-validators.sh does)")
    out = tmp_path_factory.mktemp("far_text")
    src = out / "far_text.c"
    src.write_text(FAR_TEXT_C)
    bins = {}
    for name, flags in LAYOUTS.items():
        exe = out / name
        subprocess.run(["cc", *BASE_FLAGS, *flags, "-o", str(exe), str(src)], check=True)
        bins[name] = exe
    return bins


@pytest.fixture(params=sorted(LAYOUTS))
def far_dump(request: pytest.FixtureRequest, far_text_bins: dict[str, Path],
             start_target: Callable[..., Any], tmp_path: Path) -> Iterator[Any]:
    """A MINI dump of the far-text target blocked in far_inner, with the layout's facts."""
    import types

    binary = far_text_bins[request.param]
    target = start_target([binary])
    target.wait_parked()
    first, last, text = expected_text(target.pid, str(binary))
    path = mdk.dump(target.pid, tmp_path / f"{request.param}.dmp")
    yield types.SimpleNamespace(layout=request.param, binary=binary, path=path, pid=target.pid,
                                first=first, last=last, text=text, libc=libc_of(target.pid))


def test_layouts_have_the_gaps_they_test(far_text_bins: dict[str, Path]) -> None:
    """The built binaries really put their text after a gap (else the tests below would
    pass with the old rule): a PT_LOAD that starts pages after the previous one's end."""
    for name, binary in far_text_bins.items():
        segs = sorted(load_segments(binary))
        gaps = [lo - (prev_hi + 0xFFF & ~0xFFF) for (_, prev_hi, _), (lo, _, _)
                in zip(segs, segs[1:])]
        assert max(gaps) >= 0x100000, (name, [hex(g) for g in gaps])
        assert segs[0][2] == "R", (name, segs)  # the first segment is not executable


def test_module_record_covers_the_far_text(far_dump: Any) -> None:
    """One module record per file, from its first mapping to its last, holding every
    executable segment; minidump-stackwalk reads the same extent."""
    with mdk.open_minidump(far_dump.path) as d:
        mods = [m for m in d.modules if m.name == str(far_dump.binary)]
        assert len(mods) == 1, [(hex(m.base), m.name) for m in d.modules]
        mod = mods[0]
        assert (mod.base, mod.base + mod.size) == (far_dump.first, far_dump.last)
        # the main executable stays module 0 (readers take it as the program)
        assert d.modules[0].name == str(far_dump.binary)
    for lo, hi in far_dump.text:
        assert far_dump.first <= lo and hi <= far_dump.last, (hex(lo), hex(hi))
    walk = rust_walk(far_dump.path, far_dump.path.parent / "no-symbols")
    assert rust_module(walk, far_dump.binary.name) == (far_dump.first, far_dump.last)


def test_walkers_name_the_frames_in_the_far_text(far_dump: Any, tmp_path: Path) -> None:
    """With dump-syms symbols, minidump-stackwalk walks the main thread through the far
    text by CFI and names every frame of the chain; Breakpad's walker and lldb name
    them too."""
    store = symbol_store(tmp_path / "syms", str(far_dump.binary), far_dump.libc)
    walk = rust_walk(far_dump.path, store)
    frames = walk["threads"][0]["frames"]
    named = [f.get("function") for f in frames]
    it = iter(named)
    assert all(any(n == want for n in it) for want in CHAIN), named
    for f in frames:
        if f.get("function") in CHAIN:
            assert f["module"] == far_dump.binary.name, f
            assert f["trust"] in ("context", "cfi"), f
    in_far = [f for f in frames if f.get("function") in ("far_inner", "far_outer")]
    for f in in_far:  # these pcs are past the gap: in the text the old record left out
        pc = int(f["offset"], 16)
        assert any(lo <= pc < hi for lo, hi in far_dump.text), hex(pc)
        assert pc >= min(lo for lo, _ in far_dump.text), hex(pc)

    proc = run("breakpad-stackwalk", far_dump.path, store, check=True)
    thread0 = proc.stdout.split("\nThread 1")[0]
    for want in CHAIN:
        assert re.search(rf"{far_dump.binary.name}!{want}\b", thread0), (want, thread0[:3000])

    proc = run("lldb", "--batch", "--no-lldbinit", "-o", f"target create --core {far_dump.path}",
               "-o", "bt", check=True)
    lldb_names = re.findall(r"frame #\d+: 0x[0-9a-f]+ \S+`(\w+)", proc.stdout)
    it = iter(lldb_names)
    assert all(any(n == want for n in it) for want in CHAIN), proc.stdout


# --- a real program: node ------------------------------------------------------------

NODE_IDLE = "console.log('READY pid=' + process.pid); setInterval(() => {}, 1e9)"


def node_binary() -> str:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.fail("node is required (Debian's nodejs, which npm pulls in: "
                    ".ci/install-validators.sh installs it)")
    return str(Path(node).resolve())


def with_module_size(dump: Path, out: Path, base: int, size: int) -> Path:
    """A copy of ``dump`` whose module at ``base`` has SizeOfImage ``size``."""
    data = bytearray(dump.read_bytes())
    with mdk.open_minidump(dump) as d:
        info = d.stream(mdk.StreamType.ModuleListStream)
        assert info is not None
        index = [m.base for m in d.modules].index(base)
    entry = info.rva + 4 + index * md.Module.SIZE
    assert int.from_bytes(data[entry:entry + 8], "little") == base
    data[entry + 8:entry + 12] = size.to_bytes(4, "little")
    out.write_bytes(data)
    return out


def node_code_files(pid: int, node: str) -> list[str]:
    """The files holding node's own code: its binary and, in Debian's build (a small PIE
    launcher), the libnode shared library."""
    paths = {line.split(maxsplit=5)[5] for line in Path(f"/proc/{pid}/maps").read_text()
             .splitlines() if len(line.split(maxsplit=5)) == 6}
    return [node] + sorted(p for p in paths if re.search(r"/libnode\.so[.\d]*$", p))


def cut_at_first_gap(maps: list[tuple[int, int, int]]) -> int:
    """Where the writer used to end the module: after the mappings adjacent to the first."""
    end = maps[0][1]
    for lo, hi, _ in maps[1:]:
        if lo != end:
            break
        end = hi
    return end


@pytest.fixture(scope="module")
def node_dump(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A MINI dump of node, idle, with its code files' expected extents and a dump-syms
    store of them and libc."""
    import types

    from conftest import Target

    node = node_binary()
    work = tmp_path_factory.mktemp("node")
    target = Target([node, "-e", NODE_IDLE])
    try:
        target.wait_parked()
        files = {f: expected_text(target.pid, f) for f in node_code_files(target.pid, node)}
        maps = {f: file_mappings(target.pid, f) for f in files}
        path = mdk.dump(target.pid, work / "node.dmp")
        started = time.monotonic()
        store = symbol_store(work / "syms", *files, libc_of(target.pid))
        print(f"dump-syms of {len(files) + 1} files: {time.monotonic() - started:.1f} s")
        yield types.SimpleNamespace(node=node, path=path, files=files, maps=maps, store=store,
                                    walk=rust_walk(path, store), work=work)
    finally:
        target.close()


def test_node_modules_cover_their_text(node_dump: Any) -> None:
    """Dumped idle, the record of each file holding node's code (NodeSource's non-PIE
    node with a hole after its first text mapping; Debian's PIE launcher and libnode)
    runs from its first mapping to its last and holds every executable segment
    readelf lists; minidump-stackwalk, with a dump-syms store, attributes every frame
    in that text to it and walks some of them by CFI."""
    with mdk.open_minidump(node_dump.path) as d:
        for name, (first, last, text) in node_dump.files.items():
            mods = [m for m in d.modules if m.name == name]
            assert [(m.base, m.end) for m in mods] == [(first, last)], name
            for lo, hi in text:
                assert first <= lo and hi <= last
            assert rust_module(node_dump.walk, Path(name).name) == (first, last)
    frames = [f for t in node_dump.walk["threads"] for f in t["frames"]]
    texts = {Path(name).name: text for name, (_, _, text) in node_dump.files.items()}
    in_text = [(f, name) for f in frames for name, text in texts.items()
               if any(lo <= int(f["offset"], 16) < hi for lo, hi in text)]
    assert in_text and all(f.get("module") == name for f, name in in_text)
    assert any(f["trust"] == "cfi" for f, _ in in_text)


def test_node_walks_further_than_with_its_record_cut_at_the_gap(node_dump: Any) -> None:
    """Where node's binary has a hole between its mappings (NodeSource's build: the
    issue's 0xb71000), the same dump with node's record cut there, as the writer did,
    gets fewer frames named by minidump-stackwalk (the issue measured 30 of 90 frames
    named then, 89 after)."""
    first, last, _text = node_dump.files[node_dump.node]
    old_end = cut_at_first_gap(node_dump.maps[node_dump.node])
    if old_end == last:
        pytest.skip(f"{node_dump.node} has no hole between its mappings (Debian's is a PIE "
                    "launcher with contiguous segments); the hole layout is tested live "
                    "by test_walkers_name_the_frames_in_the_far_text")
    frames = [f for t in node_dump.walk["threads"] for f in t["frames"]]
    named = sum(1 for f in frames if f.get("function"))
    cut_path = with_module_size(node_dump.path, node_dump.work / "cut.dmp", first,
                                old_end - first)
    cut = rust_walk(cut_path, node_dump.store)
    cut_named = sum(1 for t in cut["threads"] for f in t["frames"] if f.get("function"))
    print(f"node: {named} of {len(frames)} frames named; cut at the gap: {cut_named} of "
          f"{sum(len(t['frames']) for t in cut['threads'])}")
    assert named > cut_named
