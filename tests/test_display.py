"""How dumps show in a REPL and a notebook: short plain reprs, and the HTML of
``_repr_html_`` rendered by a real browser (Debian's chromium, headless).

Expected values come from the target's construction (thread names given on its command
line, tids it prints) and from /proc while it is parked (the pc of each thread from
/proc/PID/task/TID/syscall, module paths from /proc/PID/maps), never from our reader.
The browser's DOM (``--dump-dom``) is parsed with the standard library; its screenshot
(``--screenshot``) is decoded with zlib and struct.
"""

from __future__ import annotations

import collections
import html.parser
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import zlib
from pathlib import Path
from typing import Any

import pytest

import minidumpkit as mdk

from conftest import Target
from oracles import FIXTURES, tool

pytestmark = pytest.mark.live

# a name with markup, one with every character HTML escapes, two plain ones (15 bytes max)
NAMES = ["mdk-alpha", "<img src=x>", "a&b\"c'<i>", "mdk-omega"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--no-first-run", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]
REPO = Path(__file__).resolve().parents[1]
# docs/notebooks.md shows this picture; MDK_DOCS_SCREENSHOT=1 rewrites it from the test
DOCS_SCREENSHOT = REPO / "docs" / "images" / "notebook-dump.png"


# --- what /proc says of the parked target ---------------------------------------------

def parked_pc(pid: int, tid: int) -> int:
    """The pc of a thread blocked in a system call: the last field of its syscall file."""
    fields = Path(f"/proc/{pid}/task/{tid}/syscall").read_text().split()
    assert fields and fields[0] not in ("running", "-1"), fields
    return int(fields[-1], 16)


def mapped_files(pid: int) -> dict[str, int]:
    """{path: lowest mapped address} of the files mapped by ``pid``."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("/"):
            start = int(parts[0].split("-")[0], 16)
            out[parts[5]] = min(start, out.get(parts[5], start))
    return out


@pytest.fixture
def named_target(target_bins: dict[str, Path], start_target: Any) -> Target:
    target: Target = start_target([target_bins["display_target"], *NAMES])
    target.wait_parked()
    return target


def tids(target: Target) -> list[int]:
    return [target.int(f"t{i}") for i in range(len(NAMES))]


# --- plain reprs ----------------------------------------------------------------------

def test_reprs_are_short_and_say_what_matters(named_target: Target, tmp_path: Path) -> None:
    pid = named_target.pid
    pcs = {tid: parked_pc(pid, tid) for tid in [pid, *tids(named_target)]}
    files = mapped_files(pid)
    path = mdk.dump(pid, tmp_path / "t.dmp")
    with mdk.open_minidump(path) as d:
        text = repr(d)
        assert len(text) < 300, text
        assert f"pid {pid}" in text and f"{len(pcs)} threads" in text and "t.dmp" in text
        assert f"requested by thread {pid}" in text  # a dump of another process: its main

        listed = repr(d.threads)
        assert len(listed) < 200 * len(pcs), listed  # was 18.5 KB of decimal fields for 4
        for tid, name in zip(tids(named_target), NAMES, strict=True):
            thread = d.thread(tid)
            assert thread is not None
            one = repr(thread)
            assert len(one) < 200, one
            assert str(tid) in one and repr(name) in one, one
            assert f"pc=0x{pcs[tid]:x}" in one, one
            # the module holding the pc, by /proc/PID/maps: libc's pause()
            libc = next(p for p in files if os.path.basename(p).startswith("libc.so"))
            assert f"(libc.so.6+0x{pcs[tid] - files[libc]:x})" in one, one
            assert one in listed

        modules = repr(d.modules)
        assert len(modules) < 250 * min(len(d.modules), 8) + 40
        for file in files:
            if os.path.basename(file).startswith(("libc.so", "ld-linux", "display_target")):
                assert repr(os.path.basename(file)) in modules, (file, modules)

        memory = repr(d.memory)
        assert len(memory) < 120 and f"{len(d.memory.ranges)} ranges" in memory, memory
        context = d.thread(pid).context  # type: ignore[union-attr]
        regs = repr(context)
        assert len(regs) < 700 and f"rip=0x{pcs[pid]:x}" in regs, regs
        assert f"'rip': 0x{pcs[pid]:x}" in repr(d.thread(pid).registers)  # type: ignore[union-attr]
        exc = repr(d.exception)
        assert exc.startswith("<ExceptionInfo DUMP_REQUESTED by thread") and len(exc) < 120
        for obj in (d.system_info, d.misc_info, *d.memory.ranges[:3], *d.handles[:3],
                    *d.streams[:3], *(d.linux_maps or [])[:3]):
            assert len(repr(obj)) < 200, repr(obj)
        assert "Linux amd64" in repr(d.system_info)
        assert len(repr(d.handles)) < 200 * 8 + 40


def test_list_reprs_stay_bounded() -> None:
    """A dump with many modules: the list's repr shows eight, then how many more."""
    path = FIXTURES / "third-party" / "windows-x86-dbghelp-thread-names.dmp"
    with mdk.open_minidump(path) as d:
        assert len(d.modules) > 8
        text = repr(d.modules)
        assert text.endswith(f", ... {len(d.modules) - 8} more]") and len(text) < 2500
        assert repr(d.modules[0]) in text
        assert d.modules == list(d.modules)  # still a list to everyone
        assert repr(d).startswith("<Minidump 'windows-x86-dbghelp-thread-names.dmp' Windows NT x86")
    assert repr(d) == "<Minidump 'windows-x86-dbghelp-thread-names.dmp' " \
        f"{len(d.streams)} streams, closed>"
    assert d._repr_html_() is None  # nothing to render from a closed file


# --- help(), dir() and completion -------------------------------------------------------

def test_dir_help_and_completion_show_the_lazy_names() -> None:
    code = textwrap.dedent("""
        import json, pydoc, rlcompleter, sys
        import minidumpkit
        names = dir(minidumpkit)
        loaded_by_dir = "minidumpkit.reader" in sys.modules
        completer = rlcompleter.Completer({"minidumpkit": minidumpkit})
        completions = []
        for prefix in ("minidumpkit.open_", "minidumpkit.Dum", "minidumpkit.Snap"):
            state = 0
            while (found := completer.complete(prefix, state)) is not None:
                completions.append(found)
                state += 1
        doc = minidumpkit.__doc__
        helped = pydoc.render_doc(minidumpkit, renderer=pydoc.plaintext)
        cffi = sorted(m for m in sys.modules if m.startswith(("cffi", "_cffi")))
        print(json.dumps({"dir": names, "loaded_by_dir": loaded_by_dir, "doc": doc,
                          "completions": completions, "help": helped, "cffi": cffi,
                          "all": minidumpkit.__all__}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    got = json.loads(proc.stdout)
    lazy = ["open_minidump", "Minidump", "Dumper", "dump", "DumpCallbacks", "CallbackThread",
            "CallbackModule", "VmRegion", "Snapshot", "SnapshotRefused"]
    assert set(lazy) <= set(got["dir"]) and set(got["all"]) <= set(got["dir"])
    assert got["loaded_by_dir"] is False  # dir() lists them without importing them
    assert set(lazy) <= set(got["all"])
    for name in lazy:
        assert name in got["doc"], name  # the docstring lists the whole API
    completed = {c.rstrip("()") for c in got["completions"]}  # "f(" or "Class()"
    assert {"minidumpkit.open_minidump", "minidumpkit.Dumper", "minidumpkit.DumpType",
            "minidumpkit.DumpCallbacks", "minidumpkit.Snapshot",
            "minidumpkit.SnapshotRefused"} <= completed, completed
    # help() documents the lazy ones with their signatures
    assert "open_minidump(source:" in got["help"] and "class Dumper" in got["help"]
    assert got["cffi"] == []


def test_ipython_completes_the_lazy_names() -> None:
    """IPython's own completer (jedi off: its runtime completion, which uses dir())."""
    code = textwrap.dedent("""
        import json
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.Completer.use_jedi = False
        shell.run_cell("import minidumpkit")
        _, found = shell.complete("minidumpkit.open_")
        _, more = shell.complete("minidumpkit.Dum")
        print(json.dumps(found + more))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    found = json.loads(proc.stdout.splitlines()[-1])
    assert {"minidumpkit.open_minidump", "minidumpkit.Dumper", "minidumpkit.DumpType",
            "minidumpkit.DumpCallbacks"} <= set(found), found


# --- the HTML in a real browser ---------------------------------------------------------

class _Dom(html.parser.HTMLParser):
    """Tags, text, and tables (rows of cell texts; a cell's text includes that of the
    tables nested in it) of the DOM chromium dumped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.cells: list[str] = []  # every cell's text, in the order cells close
        self.text: list[str] = []
        self.tables: list[list[list[str]]] = []  # in the order tables open
        self._tables: list[list[list[str]]] = []  # the open ones, innermost last
        self._cells: list[tuple[list[str], int]] = []  # open cells: (row, index)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "table":
            self._tables.append([])
            self.tables.append(self._tables[-1])
        elif tag == "tr" and self._tables:
            self._tables[-1].append([])
        elif tag in ("td", "th") and self._tables and self._tables[-1]:
            row = self._tables[-1][-1]
            row.append("")
            self._cells.append((row, len(row) - 1))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._tables:
            self._tables.pop()
        elif tag in ("td", "th") and self._cells:
            row, index = self._cells.pop()
            row[index] = row[index].strip()
            self.cells.append(row[index])

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        for row, index in self._cells:
            row[index] += data


def _rows(fragment: str) -> dict[str, list[str]]:
    """{thread id: the cells of its row} of a dump's thread table."""
    dom = _Dom()
    dom.feed(fragment)
    table = next(t for t in dom.tables if t and t[0][:3] == ["thread", "name", "top frames"])
    return {row[0]: row for row in table[1:]}


def render(fragment: str, where: Path, *, width: int = 1100, height: int = 700,
           ) -> tuple[_Dom, bytes]:
    """The DOM chromium builds from ``fragment`` (in a page as a notebook embeds it),
    and a screenshot of it (PNG bytes)."""
    page = where / "page.html"
    page.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>dump</title>'
                    f"</head><body>{fragment}</body></html>", encoding="utf-8")
    shot = where / "page.png"
    browser = tool("chromium")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        with tempfile.TemporaryDirectory(prefix="mdk-chromium-") as profile:
            return subprocess.run(
                [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
                capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                check=True)

    dom = _Dom()
    dom.feed(run("--dump-dom").stdout)
    run(f"--screenshot={shot}", f"--window-size={width},{height}")
    return dom, shot.read_bytes()


def png_rows(data: bytes) -> tuple[int, int, list[bytes], int]:
    """(width, height, rows of pixel bytes, bytes per pixel) of an 8-bit RGB(A) PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, header
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):  # undo the PNG filter of this row
            left = line[i - bpp] if i >= bpp else 0
            up = prev[i]
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                upleft = prev[i - bpp] if i >= bpp else 0
                p = left + up - upleft
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else upleft
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows, bpp


def ink(png: bytes) -> tuple[float, float]:
    """(variance of the grey levels, fraction of pixels that are not the background)."""
    width, height, rows, bpp = png_rows(png)
    greys = [sum(row[x:x + 3]) // 3 for row in rows for x in range(0, width * bpp, bpp)]
    mean = sum(greys) / len(greys)
    variance = sum((g - mean) ** 2 for g in greys) / len(greys)
    background, count = collections.Counter(greys).most_common(1)[0]
    return variance, (len(greys) - count) / len(greys)


def test_dump_html_in_chromium(named_target: Target, tmp_path: Path) -> None:
    pid = named_target.pid
    pcs = {tid: parked_pc(pid, tid) for tid in [pid, *tids(named_target)]}
    path = mdk.dump(pid, tmp_path / "t.dmp")
    with mdk.open_minidump(path) as d:
        fragment = d._repr_html_()
    assert fragment is not None
    dom, png = render(fragment, tmp_path)
    assert "img" not in dom.tags  # the thread named <img src=x> is text, not an element
    assert "script" not in dom.tags
    for name in NAMES:
        assert name in dom.cells, name  # each name, markup and all, is a cell's text
    text = "".join(dom.text)
    assert f"requesting thread {pid}" in text
    for tid, pc in pcs.items():
        assert str(tid) in dom.cells
        # without a stack walker a thread shows its registers: rip as /proc gives it
        assert f"0x{pc:016x}" in dom.cells, hex(pc)
    assert dom.tags.count("details") >= len(pcs) + 2  # per thread, modules, streams
    variance, covered = ink(png)
    assert variance > 100 and covered > 0.01, (variance, covered)
    if os.environ.get("MDK_DOCS_SCREENSHOT"):
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / "page.png", DOCS_SCREENSHOT)


def test_threads_thread_and_modules_html_in_chromium(named_target: Target,
                                                     tmp_path: Path) -> None:
    pid = named_target.pid
    files = mapped_files(pid)
    path = mdk.dump(pid, tmp_path / "t.dmp")
    with mdk.open_minidump(path) as d:
        parts = {"threads": d.threads._repr_html_(),
                 "thread": d.thread(tids(named_target)[1])._repr_html_(),  # type: ignore[union-attr]
                 "modules": d.modules._repr_html_()}
    for what, fragment in parts.items():
        assert fragment is not None, what
        out = tmp_path / what
        out.mkdir()
        dom, png = render(fragment, out, height=400)
        assert "img" not in dom.tags, what
        text = "".join(dom.text)
        if what == "threads":
            assert set(NAMES) <= set(dom.cells)
        elif what == "thread":
            assert f"thread {tids(named_target)[1]} “<img src=x>”" in text
        else:
            for file in files:
                if os.path.basename(file).startswith(("libc.so", "display_target")):
                    assert file in dom.cells and os.path.basename(file) in dom.cells
        variance, covered = ink(png)
        assert variance > 50 and covered > 0.005, (what, variance, covered)


def test_crash_dump_html_names_the_crash() -> None:
    """A Crashpad dump of a real SIGSEGV (fixture README: crashpad_crasher, thread 4031,
    SEGV_MAPERR at 0x45): the verdict comes first, the crashed thread's row is marked."""
    path = FIXTURES / "third-party" / "generated-crashpad-linux-x86_64-3threads-segv.dmp"
    with mdk.open_minidump(path) as d:
        fragment = d._repr_html_()
    assert fragment is not None
    dom = _Dom()
    dom.feed(fragment)
    text = "".join(dom.text)
    verdict = text.index("SIGSEGV / SEGV_MAPERR at 0x45 in thread 4031")
    assert verdict < text.index("Threads (3)")
    assert '<tr class="crashed"><td class=mono>4031</td>' in fragment
    assert "crashpad_crasher+0x" in text  # the fault pc, in the executable


def test_python_stacks_show_in_the_html(start_target: Any, tmp_path: Path) -> None:
    """A CPython child (tests/targets/py_stacks_child.py) dumped FULL with all memory:
    each thread's row names its Python function, as the child's own
    sys._current_frames() recorded it."""
    from test_python_stacks import VERSIONS, start_child

    target, truth = start_child(start_target, VERSIONS[0], tmp_path)
    path = mdk.dump(target.pid, tmp_path / "py.dmp", type=mdk.DumpType.FULL, all_memory=True)
    with mdk.open_minidump(path) as d:
        fragment = d._repr_html_()
    assert fragment is not None
    rows = _rows(fragment)
    for thread in truth["threads"]:
        newest = thread["frames"][0]
        top_cell = rows[str(thread["native_id"])][2]  # thread, name, top frames
        assert top_cell.startswith(f"Python: {newest[1]} ({newest[2]}"), (thread, top_cell)


# --- what the analysis layer adds, when this tree has it ---------------------------------

def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


HAVE_WALKER = _has("minidumpkit.analysis.stackwalk")
HAVE_LOCKS = _has("minidumpkit.analysis.locks")




@pytest.mark.xfail(not HAVE_WALKER, strict=True,
                   reason="no stack walker in this tree (minidumpkit.analysis.stackwalk, "
                          "branch stacks): a thread shows its pc and registers, not frames")
def test_native_frames_show_in_the_rows(target_bins: dict[str, Path], start_target: Any,
                                        tmp_path: Path) -> None:
    """Each named thread parks in pause() called from park() (the target's source); the
    lock waiter is in pthread_mutex_lock called from wait_for_lock()."""
    target: Target = start_target([target_bins["display_target"], "--mutex", *NAMES])
    target.wait_parked()
    path = mdk.dump(target.pid, tmp_path / "t.dmp")
    with mdk.open_minidump(path) as d:
        fragment = d._repr_html_()
    assert fragment is not None
    rows = _rows(fragment)
    for i in range(len(NAMES)):
        top = rows[str(target.int(f"t{i}"))][2]
        assert "pause" in top and "park" in top, top
    waiter = rows[str(target.int("waiter"))][2]
    assert "wait_for_lock" in waiter or "pthread_mutex_lock" in waiter, waiter


@pytest.mark.xfail(not (HAVE_WALKER and HAVE_LOCKS), strict=True,
                   reason="no lock analysis or stack walker in this tree "
                          "(minidumpkit.analysis.locks, .stackwalk): no lock verdict")
def test_lock_verdict_names_the_holder(target_bins: dict[str, Path], start_target: Any,
                                       tmp_path: Path) -> None:
    """The waiter blocks on the mutex the holder locked (the target's READY line gives
    both tids and the mutex's address): the verdict above the threads says so."""
    target: Target = start_target([target_bins["display_target"], "--mutex", "mdk-alpha"])
    target.wait_parked()
    path = mdk.dump(target.pid, tmp_path / "t.dmp")
    with mdk.open_minidump(path) as d:
        fragment = d._repr_html_()
    assert fragment is not None
    dom, png = render(fragment, tmp_path)
    text = "".join(dom.text)
    verdict = (f"thread {target.int('waiter')}: mutex 0x{target.int('mutex'):x} "
               f"held by thread {target.int('holder')}")
    assert verdict in text, text[:2000]
    assert text.index("Lock waits") < text.index("Threads (")
    assert f"mutex 0x{target.int('mutex'):x} held by thread {target.int('holder')}" \
        in _rows(fragment)[str(target.int("waiter"))][3]


def test_snapshot_html_in_chromium(named_target: Target, tmp_path: Path) -> None:
    """A live VA-clone snapshot shows its threads (names as the target set them, as text)
    and its file descriptors; closed, it has nothing to show."""
    from minidumpkit.flags import PssCaptureFlags as F

    pid = named_target.pid
    fds = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    with mdk.Dumper(pid).snapshot(F.VA_CLONE | F.THREADS | F.THREAD_CONTEXT | F.HANDLES) as snap:
        assert repr(snap.threads[0]).startswith(f"<SnapshotThread {pid} ")
        fragment = snap._repr_html_()
    assert snap._repr_html_() is None
    assert fragment is not None
    dom, png = render(fragment, tmp_path, height=400)
    assert "img" not in dom.tags
    assert set(NAMES) <= set(dom.cells)
    assert {str(t) for t in [pid, *tids(named_target)]} <= set(dom.cells)
    assert {str(fd) for fd in fds} <= set(dom.cells)
    assert f"snapshot of pid {pid}" in "".join(dom.text)
    variance, covered = ink(png)
    assert variance > 50 and covered > 0.005, (variance, covered)


def test_reprs_import_nothing_heavy() -> None:
    """repr() of a dump and its views imports neither the HTML renderer nor
    :mod:`dataclasses` (the views' own reprs replace the generated ones); asking for
    the HTML loads the renderer then."""
    code = textwrap.dedent("""
        import json, sys
        import minidumpkit
        with minidumpkit.open_minidump(sys.argv[1]) as d:
            texts = [repr(x) for x in (d, d.threads, d.modules, d.memory, d.exception,
                                       d.system_info, d.misc_info, d.threads[0].context,
                                       d.threads[0].registers, d.memory.ranges, d.streams)]
            heavy = sorted(m for m in ("dataclasses", "inspect", "html", "minidumpkit._display",
                                       "cffi") if m in sys.modules)
            page = d._repr_html_()
            after = "minidumpkit._display" in sys.modules
        print(json.dumps({"heavy": heavy, "after": after, "page": len(page or ""),
                          "longest": max(map(len, texts))}))
    """)
    fixture = FIXTURES / "third-party" / "generated-crashpad-linux-x86_64-3threads-segv.dmp"
    proc = subprocess.run([sys.executable, "-c", code, str(fixture)], capture_output=True,
                          text=True, timeout=120, check=True)
    got = json.loads(proc.stdout.splitlines()[-1])
    assert got["heavy"] == [] and got["after"] is True and got["page"] > 1000
    assert got["longest"] < 1000
