"""The x86_64 stack walker (minidumpkit.analysis) on live targets and on every fixture.

Expected frames come from lldb's ``bt all`` on the same dump (with the target binaries
and the system's debug files on disk, as our walker sees them), from how the targets
were built (tests/targets/stacks/: known call chains, a static function, a thread
blocked inside a signal handler, a leaf built -O2 -fomit-frame-pointer, C++), and from
rust-minidump's ``minidump-stackwalk`` for the frame-pointer chains of the fixtures.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import minidumpkit
from minidumpkit import DumpType, MinidumpFormatError
from minidumpkit.analysis import CallStack, Frame, FrameTrust, walk_stack, walk_stacks
from oracles import FIXTURES, run

pytestmark = pytest.mark.validators

SOURCES = Path(__file__).resolve().parent / "targets" / "stacks"
CFLAGS = ["-g", "-O0", "-fno-omit-frame-pointer", "-pthread"]
LEAF_CFLAGS = ["-g", "-O2", "-fomit-frame-pointer"]
LDFLAGS = ["-pthread", "-Wl,--build-id"]
# The distribution's interpreter (stripped, non-PIE on Debian: names from .dynsym only)
# when there is one, else the running one.
PYTHON = next((p for p in ("/usr/bin/python3.11", "/usr/bin/python3") if Path(p).exists()),
              sys.executable)


# --- targets ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stack_bins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """stack_target (stack_target.c at -O0 with frame pointers + leaf.c at -O2
    -fomit-frame-pointer) and cxx_target, built by the system compilers."""
    cc, cxx = shutil.which("cc"), shutil.which("c++")
    if cc is None or cxx is None:
        pytest.fail("the system C and C++ compilers (cc, c++) are required")
    out = tmp_path_factory.mktemp("stack_targets")
    main_o, leaf_o = out / "stack_target.o", out / "leaf.o"
    subprocess.run([cc, *CFLAGS, "-c", str(SOURCES / "stack_target.c"), "-o", str(main_o)],
                   check=True)
    subprocess.run([cc, *LEAF_CFLAGS, "-c", str(SOURCES / "leaf.c"), "-o", str(leaf_o)],
                   check=True)
    subprocess.run([cc, *LDFLAGS, str(main_o), str(leaf_o), "-o", str(out / "stack_target")],
                   check=True)
    subprocess.run([cxx, *CFLAGS, *LDFLAGS, str(SOURCES / "cxx_target.cpp"),
                    "-o", str(out / "cxx_target")], check=True)
    # the same, but leaf.c without unwind tables: its CFI is only in .debug_frame
    df_o = out / "leaf_debug_frame.o"
    subprocess.run([cc, *LEAF_CFLAGS, "-fno-asynchronous-unwind-tables", "-fno-unwind-tables",
                    "-c", str(SOURCES / "leaf.c"), "-o", str(df_o)], check=True)
    subprocess.run([cc, *LDFLAGS, str(main_o), str(df_o), "-o", str(out / "stack_target_df")],
                   check=True)
    return {"stack_target": out / "stack_target", "cxx_target": out / "cxx_target",
            "stack_target_df": out / "stack_target_df"}


@pytest.fixture(scope="module")
def dumps(stack_bins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[dict[str, types.SimpleNamespace]]:
    """One DumpType.MINI dump of each target, every thread parked in its known chain."""
    from conftest import Target

    work = tmp_path_factory.mktemp("stack_dumps")
    out: dict[str, types.SimpleNamespace] = {}
    targets: list[Target] = []
    try:
        argvs = {name: [str(exe)] for name, exe in stack_bins.items()}
        argvs["python"] = [PYTHON, str(SOURCES.parent / "py_target.py")]
        for name, argv in argvs.items():
            target = Target(argv)
            targets.append(target)
            target.wait_parked()
            path = minidumpkit.dump(target.pid, work / f"{name}.dmp", DumpType.MINI)
            out[name] = types.SimpleNamespace(path=path, binary=Path(argv[0]), info=target.info,
                                              pid=target.pid)
        yield out
    finally:
        for target in targets:
            target.close()


def stacks_of(path: Path, **kwargs: Any) -> dict[int, CallStack]:
    with minidumpkit.open_minidump(path) as dump:
        return {s.thread_id: s for s in walk_stacks(dump, **kwargs)}


# --- lldb ---------------------------------------------------------------------------------

LLDB_FORMAT = [
    "settings set thread-stop-format \"THREAD ${thread.id}\\n\"",
    "settings set thread-format \"THREAD ${thread.id}\\n\"",
    # {...} scopes: a part whose variable is unavailable is left out (else lldb falls back
    # to its default format for the whole line)
    "settings set frame-format \"FRAME ${frame.pc} ${frame.sp} {OFF=${function.pc-offset} }"
    "{LINE=${line.file.basename}:${line.number} }{NAME=${function.mangled-name}}\\n\"",
]


@functools.cache
def lldb_stacks(path: Path) -> dict[int, list[tuple[int, int | None, str | None]]]:
    """lldb's ``bt all`` as {tid: [(pc, function start or None, name or None)]}, one entry
    per physical frame: lldb lists inlined frames too, all with the sp of the physical
    frame that holds them; the group's pc is its first entry's, its function the last's."""
    return {tid: [row[:3] for row in rows] for tid, rows in lldb_rows(path).items()}


@functools.cache
def lldb_rows(path: Path) -> dict[int, list[tuple[int, int | None, str | None, str | None]]]:
    """:func:`lldb_stacks` plus each physical frame's ``file:line`` (basename), as lldb
    gives it for the group's first (innermost, possibly inlined) entry."""
    args = ["--batch", "--no-lldbinit", "-c", str(path)]
    for cmd in [*LLDB_FORMAT, "bt all"]:
        args += ["-o", cmd]
    text = run("lldb", *args, check=True).stdout
    out: dict[int, list[tuple[int, int, int | None, str, str]]] = {}
    current: list[tuple[int, int, int | None, str, str]] | None = None
    for line in text.splitlines():
        m = re.search(r"THREAD (0x[0-9a-f]+|\d+)", line)
        if m:
            current = []
            out[int(m.group(1), 0)] = current
            continue
        m = re.search(r"FRAME (0x[0-9a-f]+) (0x[0-9a-f]+) (?:OFF=(?: \+ (\d+))? )?"
                      r"(?:LINE=(\S+) )?(?:NAME=(.*))?$", line)
        if m and current is not None:
            pc, sp = int(m.group(1), 16), int(m.group(2), 16)
            name = (m.group(5) or "").strip()
            off = int(m.group(3)) if m.group(3) else (0 if name else None)
            current.append((pc, sp, off, name, m.group(4) or ""))
    physical: dict[int, list[tuple[int, int | None, str | None, str | None]]] = {}
    for tid, frames in out.items():
        groups: list[list[tuple[int, int, int | None, str, str]]] = []
        for f in frames:
            if groups and groups[-1][-1][1] == f[1]:
                groups[-1].append(f)
            else:
                groups.append([f])
        rows = []
        for g in groups:
            last_pc, _sp, off, name, _line = g[-1]
            unnamed = not name or name.startswith("___lldb_unnamed_symbol")
            start = None if unnamed or off is None else last_pc - off
            where = g[0][4]
            rows.append((g[0][0], start, None if unnamed else name,
                         where if re.fullmatch(r".+:\d+", where) else None))
        physical[tid] = rows
    return physical


def _names(frame: Frame) -> set[str]:
    """Our name, raw name and aliases, without symbol versions and without GCC's clone
    suffixes (lldb names a clone after its DWARF subprogram: ``__new_sem_wait_slow64``
    for the symbol ``__new_sem_wait_slow64.constprop.0``)."""
    raw = {n.split("@", 1)[0] for n in (frame.mangled or "", *frame.aliases) if n}
    raw |= {frame.function or ""}
    return raw | {re.sub(r"(\.(constprop|isra|part|cold|lto_priv)(\.\d+)?)+$", "", n)
                  for n in raw}


def _base_name(demangled: str) -> str:
    """``ns::C<int>::f(int) const`` → ``f``: the last component before the argument list
    (lldb and __cxa_demangle spell templates and lambdas differently)."""
    depth, end = 0, len(demangled)
    for i in range(len(demangled) - 1, -1, -1):
        ch = demangled[i]
        if ch == ")":
            depth += 1
        elif ch == "(":
            depth -= 1
            if depth == 0:
                end = i
                break
    head = demangled[:end].rstrip()
    if head.endswith("operator()"):
        return "operator()"
    flat, depth = "", 0
    for ch in head:  # drop template arguments, which may hold '::' and spaces
        depth += ch == "<"
        if depth == 0:
            flat += ch
        depth -= ch == ">" and depth > 0
    return re.split(r"::|\s", flat)[-1]


def assert_same_as_lldb(path: Path) -> int:
    """Our frames equal lldb's on every thread, frame for frame: the same pcs, and where
    lldb names a function, ours starts at the same address with a matching name;
    where lldb has no symbol, neither do we. Returns the number of frames compared."""
    ours = stacks_of(path)
    theirs = lldb_stacks(path)
    assert set(ours) == set(theirs), "thread ids differ from lldb's"
    compared = 0
    for tid, stack in ours.items():
        lldb_frames = theirs[tid]
        assert [hex(f.pc) for f in stack.frames] == [hex(f[0]) for f in lldb_frames], \
            f"thread {tid}: pcs differ from lldb's\nours:\n{stack}\nlldb: {lldb_frames}"
        for frame, (_pc, start, name) in zip(stack.frames, lldb_frames):
            compared += 1
            if name is None:
                assert frame.function is None, f"thread {tid}: we name {frame}, lldb does not"
                continue
            assert frame.function is not None, f"thread {tid}: lldb names {name}, we: {frame}"
            assert frame.function_offset is not None
            assert frame.pc - frame.function_offset == start, (tid, str(frame), name)
            if name.startswith("_Z") or "(" not in name and "<" not in name:
                assert name in _names(frame) or _base_name(frame.function) == name, \
                    (tid, str(frame), name)
            else:
                assert _base_name(frame.function) == _base_name(name + "()"), (tid, str(frame), name)
    return compared


def assert_lines_as_lldb(path: Path) -> int:
    """Each frame's file:line (basename) equals lldb's wherever lldb has one; we have
    none where lldb has none. Returns the number of lines compared."""
    ours = stacks_of(path)
    compared = 0
    for tid, rows in lldb_rows(path).items():
        for frame, row in zip(ours[tid].frames, rows):
            mine = None if frame.source_file is None else \
                f"{frame.source_file.rsplit('/', 1)[-1]}:{frame.source_line}"
            assert mine == row[3], (tid, str(frame), row)
            compared += row[3] is not None
    return compared


def test_source_lines_equal_lldb(dumps: dict[str, types.SimpleNamespace]) -> None:
    """.debug_line of the targets and of libc's debug file (compressed sections)."""
    assert assert_lines_as_lldb(dumps["stack_target"].path) >= 20
    assert assert_lines_as_lldb(dumps["cxx_target"].path) >= 10
    assert assert_lines_as_lldb(dumps["python"].path) > 0  # libc's; none in python3.11


def test_c_target_frames_equal_lldb(dumps: dict[str, types.SimpleNamespace]) -> None:
    assert assert_same_as_lldb(dumps["stack_target"].path) >= 25


def test_cxx_target_frames_equal_lldb(dumps: dict[str, types.SimpleNamespace]) -> None:
    assert assert_same_as_lldb(dumps["cxx_target"].path) >= 20


def test_python_child_frames_equal_lldb(dumps: dict[str, types.SimpleNamespace]) -> None:
    """A Python interpreter with four threads in Event.wait / stdin: lldb and we both name
    exactly the functions a symbol covers, and the same ones."""
    d = dumps["python"]
    assert assert_same_as_lldb(d.path) >= 40
    stacks = stacks_of(d.path)
    for tid in map(int, d.info["tids"].split(",")):
        assert "PyThread_acquire_lock_timed" in chain(stacks[tid])


def test_node_text_after_a_gap_equals_lldb(tmp_path: Path) -> None:
    """node (non-PIE, 94 MiB): most of its code lies beyond the first gap between its
    mappings. The module record covers the whole image (the writer fix of issue 13), so
    frames there are inside the record; every frame equals lldb's."""
    from conftest import task_states, wait_until

    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.fail("Debian's nodejs is required (apt-get install nodejs)")
    proc = subprocess.Popen([node, "-e", "setInterval(() => {}, 1000)"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: len(task_states(proc.pid)) >= 7, "node to start its threads")
        wait_until(lambda: all(st == "S" for st, _ in task_states(proc.pid).values()),
                   "node's threads to block (idle)")
        path = minidumpkit.dump(proc.pid, tmp_path / "node.dmp", DumpType.MINI)
    finally:
        proc.kill()
        proc.wait()
    with minidumpkit.open_minidump(path) as dump:
        main = next(m for m in dump.modules if m.name == os.path.realpath(node)
                    or m.basename == "node")
        first = next(m for m in dump.linux_maps or [] if m.start == main.base)
        frames = [f for s in walk_stacks(dump) for f in s.frames if f.module == main.name]
    assert frames and all(main.base <= f.pc < main.end for f in frames)
    assert any(f.pc >= first.end for f in frames), "no frame in node's text beyond its first mapping"
    assert assert_same_as_lldb(path) >= 30
    assert assert_lines_as_lldb(path) >= 10


DEBIAN_IDLE = {  # Debian programs blocked reading stdin or sleeping: argv
    "bash": ["bash", "-c", "read line"],
    "perl": ["perl", "-e", "sleep 1000"],
    "sqlite3": ["sqlite3"],
    "tclsh": ["tclsh"],
    "gdb": ["gdb", "-q", "-nx"],
}


@pytest.mark.parametrize("name", sorted(DEBIAN_IDLE))
def test_debian_program_frames_equal_lldb(name: str, tmp_path: Path) -> None:
    """Debian's own binaries (stripped, their debug files absent unless installed),
    dumped idle: every frame of every thread as lldb has it, names and lines included."""
    from conftest import task_states, wait_until

    argv = DEBIAN_IDLE[name]
    if shutil.which(argv[0]) is None:
        pytest.fail(f"Debian's {argv[0]} is required (apt-get install {argv[0]})")
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: all(st == "S" for st, _ in task_states(proc.pid).values()),
                   f"{name} to block (idle)")
        time.sleep(0.2)  # past start-up: blocked in its idle call, not in a transient one
        wait_until(lambda: all(st == "S" for st, _ in task_states(proc.pid).values()),
                   f"{name} to block (idle)")
        path = minidumpkit.dump(proc.pid, tmp_path / f"{name}.dmp", DumpType.MINI)
    finally:
        proc.kill()
        proc.wait()
    assert assert_same_as_lldb(path) >= 3
    assert_lines_as_lldb(path)


# --- five Debian programs, dumped idle (issue 13) --------------------------------------

POSTGRES_BIN = Path("/usr/lib/postgresql")


def _free_loopback_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _postgres_bin(name: str) -> Path:
    found = sorted(POSTGRES_BIN.glob(f"*/bin/{name}"))
    if not found:
        pytest.fail(f"Debian's PostgreSQL is required ({POSTGRES_BIN}/*/bin/{name}: "
                    "apt-get install postgresql)")
    return found[-1]


def _server_argv(name: str, work: Path) -> tuple[list[str], dict[str, Any]]:
    """(argv, extra Popen arguments) of a Debian server confined to ``work`` (its data,
    socket, logs), listening on a unix socket or a loopback port only."""
    if name == "redis-server":
        return ["redis-server", "--port", "0", "--unixsocket", str(work / "redis.sock"),
                "--dir", str(work), "--save", "", "--appendonly", "no",
                "--daemonize", "no"], {}
    if name == "nginx":
        for sub in ("logs", "tmp"):
            (work / sub).mkdir()
        temps = "\n".join(f"    {kind}_temp_path {work / 'tmp' / kind};"
                          for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (work / "nginx.conf").write_text(
            f"daemon off;\npid {work / 'nginx.pid'};\nerror_log {work / 'logs/error.log'};\n"
            f"events {{ worker_connections 64; }}\nhttp {{\n    access_log off;\n{temps}\n"
            f"    server {{ listen 127.0.0.1:{_free_loopback_port()}; }}\n}}\n")
        return ["nginx", "-p", str(work), "-c", str(work / "nginx.conf")], {}
    if name == "postgres":
        # postgres refuses to run as root: an unprivileged user owns its data directory
        data = work / "pgdata"
        subprocess.run([str(_postgres_bin("initdb")), "-D", str(data), "-A", "trust",
                        "-U", "postgres", "--no-sync"], user="nobody", check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work)
        return [str(_postgres_bin("postgres")), "-D", str(data), "-k", str(work),
                "-c", "listen_addresses="], {"user": "nobody", "cwd": str(work)}
    raise AssertionError(name)


@dataclasses.dataclass
class LldbAgreement:
    threads: int
    frames: int        # lldb's physical frames
    equal: int         # same pc, and the same function (or both none) at the same start
    differing_names: list[str]  # both name the frame, and the names differ

    def __str__(self) -> str:
        return (f"{self.threads} threads, {self.frames} frames, {self.equal} equal, "
                f"{len(self.differing_names)} differing names")


def agreement_with_lldb(path: Path) -> LldbAgreement:
    """Frame by frame against lldb's ``bt all``: a frame of ours is equal when lldb has
    one at the same depth with the same pc and either both name no function or both name
    the same one starting at the same address. Names that differ are listed."""
    ours, theirs = stacks_of(path), lldb_stacks(path)
    frames = equal = 0
    differing: list[str] = []
    for tid, lldb_frames in theirs.items():
        mine = ours[tid].frames if tid in ours else []
        frames += len(lldb_frames)
        for frame, (pc, start, name) in zip(mine, lldb_frames):
            if frame.pc != pc:
                continue
            if name is None or frame.function is None:
                equal += name is None and frame.function is None
                continue
            same = name in _names(frame) or _base_name(frame.function) == name if (
                name.startswith("_Z") or "(" not in name and "<" not in name) else \
                _base_name(frame.function) == _base_name(name + "()")
            if not same:
                differing.append(f"thread {tid} {frame}: lldb {name}")
            elif frame.function_offset is not None and pc - frame.function_offset == start:
                equal += 1
    return LldbAgreement(len(theirs), frames, equal, differing)


def _dump_idle(argv: list[str], path: Path, settle_threads: int = 1,
               **popen: Any) -> Path:
    """Start ``argv``, wait until every thread of it sleeps (twice, 0.2 s apart: past
    start-up), dump it MINI. The process is then stopped with SIGTERM, so that a server
    ends its own children (nginx's workers, postgres's background processes), and killed
    if it has not ended within 10 s; it is reaped whatever happens."""
    from conftest import task_states, wait_until

    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, **popen)
    try:
        def idle() -> bool:
            states = task_states(proc.pid)
            return len(states) >= settle_threads and all(st == "S" for st, _ in states.values())

        wait_until(idle, f"{argv[0]} to block (idle)")
        time.sleep(0.2)
        wait_until(idle, f"{argv[0]} to block (idle)")
        return minidumpkit.dump(proc.pid, path, DumpType.MINI)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


FIVE_PROGRAMS = ("python3", "redis-server", "nginx", "postgres", "node")


def _dump_debian_program(name: str, out: Path) -> Path:
    """A MINI dump of Debian's ``name`` (one of FIVE_PROGRAMS), idle."""
    import tempfile

    if name in ("python3", "node"):
        exe = PYTHON if name == "python3" else (shutil.which("node") or shutil.which("nodejs"))
        if exe is None:
            pytest.fail("Debian's nodejs is required (apt-get install nodejs)")
        argv = [exe, "-c", "import sys; sys.stdin.read()"] if name == "python3" else \
            [exe, "-e", "setInterval(() => {}, 1000)"]
        return _dump_idle(argv, out, 7 if name == "node" else 1)
    if name != "postgres" and shutil.which(name) is None:
        pytest.fail(f"Debian's {name} is required (.ci/install-validators.sh installs it)")
    # a directory the unprivileged postgres user can enter (pytest's is root's, 0700)
    work = Path(tempfile.mkdtemp(prefix=f"mdk-{name}-", dir="/tmp"))
    try:
        os.chmod(work, 0o755)
        if name == "postgres":
            shutil.chown(work, "nobody")
        argv, popen = _server_argv(name, work)
        return _dump_idle(argv, out, **popen)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def debian_dumps(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """name -> the program's dump, made on first request and shared by the tests."""
    work = tmp_path_factory.mktemp("debian_dumps")
    made: dict[str, Path] = {}

    def dump_of(name: str) -> Path:
        if name not in made:
            made[name] = _dump_debian_program(name, work / f"{name}.dmp")
        return made[name]

    return dump_of


@pytest.mark.parametrize("name", FIVE_PROGRAMS)
def test_five_debian_programs_agree_with_lldb(name: str,
                                              debian_dumps: Callable[[str], Path]) -> None:
    """Issue 13: five Debian programs dumped idle; against lldb's ``bt all`` on our dump
    at least 99% of frames equal and not one frame both name differently. The per-program
    figures are printed (pytest -s) for the report."""
    path = debian_dumps(name)
    found = agreement_with_lldb(path)
    print(f"\n{name}: {found}")
    assert found.frames >= 3, f"{name}: lldb found almost no frames ({found})"
    assert found.differing_names == [], "\n".join(found.differing_names)
    assert found.equal >= 0.99 * found.frames, f"{name}: {found}"


def test_debug_frame_only_leaf_equals_lldb(dumps: dict[str, types.SimpleNamespace]) -> None:
    """leaf.c built without .eh_frame entries: its frames are walked from .debug_frame."""
    d = dumps["stack_target_df"]
    assert assert_same_as_lldb(d.path) >= 25
    stack = stacks_of(d.path)[int(d.info["leaf"])]
    assert chain(stack)[:4] == ["leaf_wait", "leaf_level2", "leaf_level1", "leaf_thread"]
    assert [f.trust for f in stack.frames[:4]] == [FrameTrust.CONTEXT] + [FrameTrust.CFI] * 3


# --- known chains (from how the targets were built) ---------------------------------------

def chain(stack: CallStack) -> list[str | None]:
    return [f.function for f in stack.frames]


def test_static_function_named_from_symtab(dumps: dict[str, types.SimpleNamespace]) -> None:
    d = dumps["stack_target"]
    stack = stacks_of(d.path)[int(d.info["static"])]
    names = chain(stack)
    i = names.index("static_wait")
    assert names[i:i + 2] == ["static_wait", "static_level1"]
    assert names[-2:] == ["start_thread", "clone3"]
    assert stack.frames[0].trust is FrameTrust.CONTEXT
    assert all(f.trust is FrameTrust.CFI for f in stack.frames[1:])
    assert stack.end.startswith("end of stack")
    assert stack.frames[i].module_basename == "stack_target"


def test_signal_handler_frame(dumps: dict[str, types.SimpleNamespace]) -> None:
    """The handler, glibc's __restore_rt (size-0 symbol, extent from its FDE), then the
    interrupted code read from the ucontext: pthread_kill's internals, raise_level2."""
    d = dumps["stack_target"]
    stack = stacks_of(d.path)[int(d.info["signal"])]
    names = chain(stack)
    i = names.index("on_signal")
    assert names[i + 1] == "__restore_rt"
    restore = stack.frames[i + 1]
    assert restore.function_offset == 0 and restore.trust is FrameTrust.CFI
    assert names.index("raise_level2") > i + 1
    k = names.index("raise_level2")
    assert names[k:k + 2] == ["raise_level2", "raise_level1"]
    assert names[-2:] == ["start_thread", "clone3"]
    interrupted = stack.frames[i + 2]
    assert interrupted.function is not None and "kill" in interrupted.function


def test_leaf_without_frame_pointer(dumps: dict[str, types.SimpleNamespace]) -> None:
    """leaf.c is built -O2 -fomit-frame-pointer: only CFI walks out of it."""
    d = dumps["stack_target"]
    stack = stacks_of(d.path)[int(d.info["leaf"])]
    assert chain(stack)[:4] == ["leaf_wait", "leaf_level2", "leaf_level1", "leaf_thread"]
    assert [f.trust for f in stack.frames[:4]] == [FrameTrust.CONTEXT] + [FrameTrust.CFI] * 3
    leaf, leaf_level2 = stack.frames[0], stack.frames[1]
    assert leaf.cfa == leaf_level2.sp == leaf.sp + 8  # no frame: just the return address
    # leaf_level2 keeps a 40-byte array on its stack: its CFA lies beyond it
    assert leaf_level2.cfa == stack.frames[2].sp >= leaf_level2.sp + 8 + 40


def test_cxx_names_demangled(dumps: dict[str, types.SimpleNamespace]) -> None:
    d = dumps["cxx_target"]
    stack = stacks_of(d.path)[int(d.info["worker"])]
    names = chain(stack)
    assert "shapes::Holder<int>::wait_in_read(int)" in names
    assert "shapes::Holder<int>::operator()(int)" in names
    assert "shapes::run_worker(int)" in names
    frame = stack.frames[names.index("shapes::run_worker(int)")]
    assert frame.mangled == "_ZN6shapes10run_workerEi"


def test_thread_frames_accessor(dumps: dict[str, types.SimpleNamespace]) -> None:
    """``thread.frames()`` is walk_stack for that thread; the reader alone does not import
    the analysis layer."""
    d = dumps["stack_target"]
    code = ("import sys, minidumpkit\n"
            "d = minidumpkit.open_minidump(sys.argv[1]); d.threads\n"
            "assert 'minidumpkit.analysis' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code, str(d.path)], check=True)
    with minidumpkit.open_minidump(d.path) as dump:
        thread = next(t for t in dump.threads if t.thread_id == int(d.info["static"]))
        assert [f.pc for f in thread.frames().frames] == \
            [f.pc for f in walk_stack(dump, thread).frames]
        assert "static_wait" in chain(thread.frames())


def test_frame_repr_and_json(dumps: dict[str, types.SimpleNamespace]) -> None:
    d = dumps["stack_target"]
    stack = stacks_of(d.path)[int(d.info["static"])]
    frame = next(f for f in stack.frames if f.function == "static_wait")
    text = str(frame)
    assert re.fullmatch(rf"#{frame.index} 0x{frame.pc:016x} static_wait\+0x[0-9a-f]+ "
                        r"\(stack_target\+0x[0-9a-f]+\) stack_target\.c:\d+ \[cfi\]", text), text
    assert repr(frame) == f"<Frame {text}>"
    assert str(stack).splitlines()[0] == f'thread {stack.thread_id} "stk-static"'
    data = json.loads(json.dumps(stack.to_json()))
    assert data["frames"][frame.index]["function"] == "static_wait"
    assert data["frames"][frame.index]["trust"] == "cfi"
    read = stack.frames[0]
    assert read.function == "read" and "__libc_read" in read.aliases  # global name shown


# --- where symbols come from --------------------------------------------------------------

def _static_frame(stacks: dict[int, CallStack], tid: int) -> Frame:
    return next(f for f in stacks[tid].frames
                if f.module_basename == "stack_target" and f.trust is not FrameTrust.CONTEXT)


def test_user_path_and_build_id_tree(dumps: dict[str, types.SimpleNamespace],
                                     tmp_path: Path) -> None:
    """Local files off: a stripped copy in a user directory gives CFI, its debug file in
    that directory's .build-id tree gives the static function's name."""
    d = dumps["stack_target"]
    tid = int(d.info["static"])
    build_id = minidumpkit.open_minidump(d.path).modules[0].build_id
    assert build_id is not None
    stripped = tmp_path / "stack_target"
    debug = tmp_path / ".build-id" / build_id.hex()[:2] / (build_id.hex()[2:] + ".debug")
    debug.parent.mkdir(parents=True)
    subprocess.run(["objcopy", "--only-keep-debug", str(d.binary), str(debug)], check=True)
    subprocess.run(["objcopy", "--strip-all", str(d.binary), str(stripped)], check=True)
    nothing = stacks_of(d.path, use_local_files=False)
    assert all(f.function is None for f in nothing[tid].frames)
    assert all(f.trust is not FrameTrust.CFI for f in nothing[tid].frames)
    missing = nothing[tid].frames[0].missing
    assert missing is not None and missing.startswith("no file")
    with minidumpkit.open_minidump(d.path) as dump:
        libc = next(m.name for m in dump.modules if m.basename.startswith("libc.so"))
    # user paths only: our directory, libc's directory (by basename), /usr/lib/debug as
    # a .build-id tree; the same frames and names as with the local files
    paths = [tmp_path, Path(libc).parent, "/usr/lib/debug"]
    found = stacks_of(d.path, use_local_files=False, symbol_paths=paths)
    local = stacks_of(d.path)
    assert chain(found[tid]) == chain(local[tid])
    assert "static_wait" in chain(found[tid])
    assert [f.trust for f in found[tid].frames] == [f.trust for f in local[tid].frames]
    # only the stripped file: CFI still, but no name for the static function, and why
    debug.unlink()
    stripped_only = stacks_of(d.path, use_local_files=False, symbol_paths=paths)
    frame = stripped_only[tid].frames[chain(found[tid]).index("static_wait")]
    assert frame.function is None and frame.trust is FrameTrust.CFI
    assert frame.missing is not None and "stripped" in frame.missing


def test_build_id_mismatch_is_never_used(dumps: dict[str, types.SimpleNamespace],
                                         stack_bins: dict[str, Path], tmp_path: Path) -> None:
    """A file of the same name but another build id (the C++ target renamed) is refused,
    and the frame says so."""
    d = dumps["stack_target"]
    tid = int(d.info["static"])
    shutil.copy(stack_bins["cxx_target"], tmp_path / "stack_target")
    stacks = stacks_of(d.path, use_local_files=False, symbol_paths=[tmp_path])
    frame = _static_frame(stacks, tid)
    assert frame.function is None
    assert frame.missing is not None and frame.missing.startswith("build id mismatch")


# --- fixtures: robustness and rust-minidump's frame-pointer chains -------------------------

ALL_DUMPS = sorted(p for p in FIXTURES.rglob("*.dmp") if p.is_file())


def test_every_fixture_walks_or_says_why() -> None:
    """Every thread of every fixture: a CallStack, or MinidumpFormatError from the reader;
    threads of CPUs we do not walk (32-bit ARM and others) are reported 'not walked:
    arch ...', never silently empty."""
    assert len(ALL_DUMPS) > 100, f"fixtures missing under {FIXTURES}"
    walked = not_walked = 0
    for path in ALL_DUMPS:
        try:
            dump = minidumpkit.open_minidump(path)
        except MinidumpFormatError:
            continue
        with dump:
            try:
                threads = dump.threads
                cpu = dump.system_info.cpu if dump.system_info else None
            except MinidumpFormatError:
                continue
            for thread in threads:
                try:
                    stack = walk_stack(dump, thread)
                except MinidumpFormatError:
                    continue
                assert len(stack.frames) <= 1024
                if stack.status == "ok":
                    walked += 1
                    assert stack.frames and stack.frames[0].trust is FrameTrust.CONTEXT
                    sps = [f.sp for f in stack.frames]
                    if cpu == "arm64":  # a stackless leaf keeps its caller's sp
                        assert sps == sorted(sps), f"{path.name}: sp decreasing"
                    else:
                        assert sps == sorted(set(sps)), f"{path.name}: sp not increasing"
                else:
                    not_walked += 1
                    assert not stack.frames
                    assert stack.status.startswith(("not walked: arch", "no context")), \
                        stack.status
                    if cpu not in (None, "amd64"):
                        assert stack.status == f"not walked: arch {cpu}"
    assert walked > 200 and not_walked >= 4


def _walked_with_system_info(path: Path) -> bool:
    """Dumps minidump-stackwalk walks (it refuses those without SystemInfo or a thread
    list) whose CPU we walk (amd64, x86): the ones whose frame-pointer chains compare."""
    try:
        with minidumpkit.open_minidump(path) as dump:
            return (dump.system_info is not None
                    and dump.system_info.cpu in ("amd64", "x86", "arm64")
                    and bool(dump.threads))
    except MinidumpFormatError:
        return False


# rust-minidump keeps the last of duplicated streams (we, as dbghelp, the first): here that
# is a thread list it cannot read, and it refuses the file
RUST_REFUSES = {"bad_duplicate_streams.dmp"}
RUST_CHECKED = [p for p in ALL_DUMPS if _walked_with_system_info(p) and p.name not in RUST_REFUSES]


@pytest.mark.parametrize("path", RUST_CHECKED, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_frame_pointer_chain_matches_rust_minidump(path: Path) -> None:
    """With no local files (as minidump-stackwalk without symbols), our context frame and
    frame-pointer chain equal rust-minidump's, frame for frame, as far as it goes by
    context and frame pointer (amd64, x86 and arm64); its instruction address is the
    return address - 1 for callers (- 4 on arm64, whose instructions are 4 bytes)."""
    proc = run("minidump-stackwalk", "--json", path)
    if proc.returncode != 0:
        pytest.fail(f"minidump-stackwalk failed on {path.name}: {proc.stderr[-500:]}")
    rust = json.loads(proc.stdout)
    with minidumpkit.open_minidump(path) as dump:
        if dump.system_info is None or dump.system_info.cpu not in ("amd64", "x86", "arm64"):
            pytest.fail(f"{path.name} is not an amd64, x86 or arm64 dump")
        back = 4 if dump.system_info.cpu == "arm64" else 1
        rust_threads = {t["thread_id"]: t["frames"] for t in rust["threads"]}
        compared = 0
        for thread in dump.threads:
            stack = walk_stack(dump, thread, use_local_files=False)
            theirs = rust_threads.get(thread.thread_id, [])
            for i, their in enumerate(theirs):
                if their["trust"] not in ("context", "frame_pointer"):
                    break
                assert i < len(stack.frames), \
                    f"thread {thread.thread_id}: rust-minidump has frame {i} ({their}), we stop"
                ours = stack.frames[i]
                assert ours.trust.value == their["trust"], (thread.thread_id, str(ours), their)
                assert ours.pc - back * (i > 0) == int(their["offset"], 16), \
                    f"thread {thread.thread_id} frame {i}: {ours} vs {their}"
                compared += 1
            if theirs and stack.frames:
                assert stack.frames[0].trust is FrameTrust.CONTEXT
    assert compared > 0 or not any(rust_threads.values()), "no frame compared"


# --- the command line ---------------------------------------------------------------------

def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    from minidumpkit.cli import main

    code = main(["info", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


FRAME_LINE = re.compile(r"  #(\d+) 0x([0-9a-f]+)(?: (\S.*?)\+0x[0-9a-f]+| (\S+))? "
                        r"\((\S+)\+0x[0-9a-f]+\)(?: \S+:\d+)? \[(context|cfi|frame_pointer|scan)\]")


def test_info_prints_every_thread_with_lldbs_frames(dumps: dict[str, types.SimpleNamespace],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    d = dumps["stack_target"]
    code, out, err = cli(capsys, d.path)
    assert code == 0 and err == ""
    text = out.split("\nStacks:\n", 1)[1]
    lldb = lldb_stacks(d.path)
    printed: dict[int, list[tuple[int, str | None]]] = {}
    order = []
    for line in text.splitlines():
        head = re.fullmatch(r'thread (\d+) "([^"]*)"( requesting| crashing)?', line)
        if head:
            order.append(int(head.group(1)))
            printed[int(head.group(1))] = []
            continue
        m = FRAME_LINE.fullmatch(line)
        if m:
            printed[order[-1]].append((int(m.group(2), 16), m.group(3) or m.group(4)))
    assert set(printed) == set(lldb)
    assert order[0] == d.pid  # the thread the dump names as requesting (main), first
    assert text.splitlines()[0].endswith(" requesting")
    for tid, frames in printed.items():
        assert [pc for pc, _ in frames] == [f[0] for f in lldb[tid]]
        names = [n for _, n in frames]
        assert ("static_wait" in names) == (tid == int(d.info["static"]))
    assert '"stk-signal"' in text and "__restore_rt (libc.so.6+0x" in text


def test_info_json_stacks_schema(dumps: dict[str, types.SimpleNamespace],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    d = dumps["cxx_target"]
    code, out, err = cli(capsys, "--json", d.path)
    assert code == 0 and err == ""
    data = json.loads(out)
    assert data["stacks"]["schema"] == "minidumpkit-stacks" and data["stacks"]["version"] == 1
    lldb = lldb_stacks(d.path)
    for thread in data["threads"]:
        assert thread["stack"]["status"] == "ok"
        assert [int(f["pc"], 16) for f in thread["frames"]] == [f[0] for f in lldb[thread["thread_id"]]]
        for f in thread["frames"]:
            assert set(f) == {"index", "pc", "sp", "cfa", "trust", "module", "module_path",
                              "module_offset", "function", "mangled", "function_offset",
                              "aliases", "file", "line", "missing_symbol", "note"}
            assert (f["function"] is None) == (f["missing_symbol"] is not None)
            assert f["note"] is None  # only scanned frames whose code was not at hand
    worker = next(t for t in data["threads"] if t["thread_id"] == int(d.info["worker"]))
    assert "shapes::run_worker(int)" in [f["function"] for f in worker["frames"]]
    libstdcxx = [m for m in data["stacks"]["modules"] if "libstdc++" in m["name"]]
    assert libstdcxx and libstdcxx[0]["files"]  # its own file, build id checked


def test_info_no_stacks_and_symbols(dumps: dict[str, types.SimpleNamespace], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    d = dumps["stack_target"]
    code, out, _ = cli(capsys, "--no-stacks", d.path)
    assert code == 0 and "Stacks:" not in out
    code, out, _ = cli(capsys, "--json", "--no-stacks", d.path)
    assert "stacks" not in json.loads(out) and "frames" not in json.loads(out)["threads"][0]
    # --symbols: a directory holding a copy is searched (the module's own path is too)
    shutil.copy(d.binary, tmp_path / "stack_target")
    code, out, err = cli(capsys, "--json", "--symbols", tmp_path, "--symbols", "/nonexistent",
                         d.path)
    assert code == 0 and err == ""
    data = json.loads(out)
    assert data["stacks"]["symbol_paths"] == [str(tmp_path), "/nonexistent"]


# --- docs/stacks.md -----------------------------------------------------------------------

DOC = Path(__file__).resolve().parents[1] / "docs" / "stacks.md"


def test_docs_examples_run(dumps: dict[str, types.SimpleNamespace], tmp_path: Path,
                           capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/stacks.md's examples, as the docs runner runs them (``app.dmp`` in the
    working directory), on the dump of the stack target: the Python block runs, each
    ``$ minidumpkit`` line of a console block exits 0 and prints its lines in order."""
    text = DOC.read_text()
    shutil.copy(dumps["stack_target"].path, tmp_path / "app.dmp")
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), {})
    out = capsys.readouterr().out
    assert '"stk-signal"' in out and "static_wait+0x" in out
    consoles = re.findall(r"```console\n(.*?)```", text, re.S)
    assert consoles
    for block in consoles:
        lines = block.splitlines()
        assert lines[0].startswith("$ minidumpkit info")
        code, out, err = cli(capsys, *lines[0].split()[3:])
        assert code == 0 and err == ""
        at = 0
        for expected in lines[1:]:
            if expected != "...":
                at = out.index(expected, at) + len(expected)


# --- corrupted dumps ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def pristine(dumps: dict[str, types.SimpleNamespace]) -> tuple[bytes, list[tuple[int, int]]]:
    """The stack_target dump's bytes, and the file spans of its stacks and contexts (the
    bytes a walk reads and trusts least)."""
    path = dumps["stack_target"].path
    data = path.read_bytes()
    spans = []
    with minidumpkit.open_minidump(path) as dump:
        for t in dump.threads:
            spans.append((t._stack_rva, t.stack_size))
        for r in dump.memory.ranges:
            spans.append((r.rva, r.size))
    return data, spans


def test_walk_of_corrupted_stacks_ends_cleanly(
        pristine: tuple[bytes, list[tuple[int, int]]]) -> None:
    """Stack words overwritten with hostile values (self-pointing frame pointers, return
    addresses into other frames, huge and tiny numbers): every walk ends, within the
    frame limit, raising nothing but MinidumpFormatError."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    data, spans = pristine
    hostile = st.sampled_from([0, 1, 4095, 4096, 2**47 - 1, 2**63, 2**64 - 1]) | \
        st.integers(0, 2**64 - 1)

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck),
              derandomize=True)
    @given(st.lists(st.tuples(st.integers(0, len(spans) - 1), st.integers(0, 2**20),
                              hostile, st.booleans()), min_size=1, max_size=40))
    def run(edits: list[tuple[int, int, int, bool]]) -> None:
        buf = bytearray(data)
        for span, where, value, relative in edits:
            rva, size = spans[span]
            if size < 8:
                continue
            at = rva + (where % (size - 7)) // 8 * 8
            if relative:  # a pointer into the same stack: cycles and backward links
                value = int.from_bytes(buf[at:at + 8], "little") + (value % 256) - 128
            buf[at:at + 8] = (value % 2**64).to_bytes(8, "little")
        with minidumpkit.open_minidump(bytes(buf)) as dump:
            for thread in dump.threads:
                try:
                    stack = walk_stack(dump, thread)
                except MinidumpFormatError:
                    continue
                assert len(stack.frames) <= 1024
                sps = [f.sp for f in stack.frames]
                assert sps == sorted(set(sps))

    run()


def test_walk_with_corrupted_module_files(dumps: dict[str, types.SimpleNamespace],
                                          tmp_path: Path) -> None:
    """A module file cut short, or with its .eh_frame, .eh_frame_hdr, .symtab and
    .strtab overwritten with noise (its build id note intact, so it is used): the walk
    goes on, raising nothing."""
    import random

    from minidumpkit.analysis.elf import ElfFile

    d = dumps["stack_target"]
    original = d.binary.read_bytes()
    elf = ElfFile(str(d.binary))
    regions = [(s.offset, s.size) for name, s in elf.sections.items()
               if name in (".eh_frame", ".eh_frame_hdr", ".symtab", ".strtab", ".debug_line",
                           ".debug_info", ".debug_aranges", ".debug_abbrev")]
    elf.close()
    rng = random.Random(13)
    variants = [original[:n] for n in (16, 64, 1000, 4096, 8192, len(original) // 2)]
    for _ in range(25):
        buf = bytearray(original)
        for offset, size in regions:
            for _ in range(max(1, size // 16)):
                buf[offset + rng.randrange(size)] = rng.randrange(256)
        variants.append(bytes(buf))
    for i, variant in enumerate(variants):
        where = tmp_path / str(i)
        where.mkdir()
        (where / "stack_target").write_bytes(variant)
        with minidumpkit.open_minidump(d.path) as dump:
            for thread in dump.threads:
                stack = walk_stack(dump, thread, use_local_files=False, symbol_paths=[where])
                assert stack.frames and len(stack.frames) <= 1024


def test_gnu_debuglink(dumps: dict[str, types.SimpleNamespace], tmp_path: Path) -> None:
    """A stripped binary whose .gnu_debuglink names its debug file (objcopy
    --add-gnu-debuglink, as distributions do) in a directory of its own: the walk finds
    the debug file by that name (and checks its build id), and names the static
    function."""
    d = dumps["stack_target"]
    tid = int(d.info["static"])
    bin_dir, dbg_dir = tmp_path / "bin", tmp_path / "dbg"
    bin_dir.mkdir()
    dbg_dir.mkdir()
    debug = dbg_dir / "stack_target.dbg"
    stripped = bin_dir / "stack_target"
    subprocess.run(["objcopy", "--only-keep-debug", str(d.binary), str(debug)], check=True)
    subprocess.run(["objcopy", "--strip-all", f"--add-gnu-debuglink={debug}",
                    str(d.binary), str(stripped)], check=True)
    with minidumpkit.open_minidump(d.path) as dump:
        libc = next(m.name for m in dump.modules if m.basename.startswith("libc.so"))
    paths = [bin_dir, dbg_dir, Path(libc).parent, "/usr/lib/debug"]
    stacks = stacks_of(d.path, use_local_files=False, symbol_paths=paths)
    assert "static_wait" in chain(stacks[tid])
    # the same name, another build id: refused
    subprocess.run(["objcopy", "--only-keep-debug", str(dumps["cxx_target"].binary),
                    str(debug)], check=True)
    stacks = stacks_of(d.path, use_local_files=False, symbol_paths=paths)
    assert "static_wait" not in chain(stacks[tid])


def test_module_recorded_by_file_name_only() -> None:
    """Crashpad records libc as ``libc.so.6``: the loader's directories are searched for
    it (build id checked). Where this machine's libc is the one that was dumped (the
    fixture was written on Debian 12 with libc build id 93ac61ec...), the worker threads
    walk out of pause() by CFI into start_thread; with another libc, the file is refused
    and the frame says why."""
    path = FIXTURES / "third-party" / "generated-crashpad-linux-x86_64-3threads-segv.dmp"
    with minidumpkit.open_minidump(path) as dump:
        libc = next(m for m in dump.modules if m.name == "libc.so.6")
        assert libc.build_id is not None
        from minidumpkit.analysis.elf import read_build_id

        here = [p for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6")
                if Path(p).exists()]
        same = bool(here) and read_build_id(here[0]) == libc.build_id
        worker = next(t for t in dump.threads if t.name == "worker-one")
        stack = walk_stack(dump, worker)
        if same:
            assert [f.trust for f in stack.frames[:2]] == [FrameTrust.CONTEXT, FrameTrust.CFI]
            assert chain(stack)[-2:] == ["start_thread", "clone3"]
        else:
            missing = stack.frames[0].missing
            assert missing is not None and missing.startswith("build id mismatch"), missing
            assert all(f.trust is not FrameTrust.CFI for f in stack.frames
                       if f.module == "libc.so.6")


# --- Breakpad symbol stores: the same frames as minidump-stackwalk -------------------------

def make_store(dump_path: Path, store: Path) -> None:
    """``dump_syms -s STORE`` (rust-minidump's dump-syms) over every module file of the
    dump that is on this machine: NAME/DEBUGID/NAME.sym."""
    with minidumpkit.open_minidump(dump_path) as dump:
        files = sorted({m.name for m in dump.modules if Path(m.name).is_file()})
    for name in files:
        run("dump-syms", "-s", store, name, check=True, timeout=300)


def public_names(store: Path) -> set[str]:
    names = set()
    for sym in store.rglob("*.sym"):
        for line in sym.read_text(errors="replace").splitlines():
            if line.startswith("PUBLIC "):
                parts = line.split(None, 3 if line.split()[1] != "m" else 4)
                names.add(parts[-1])
    return names


def assert_same_as_minidump_stackwalk(path: Path, store: Path) -> tuple[int, int]:
    """Local files off, ``store`` made by dump_syms: the frames both we and
    minidump-stackwalk (same store) find by context, CFI or frame pointer are the same
    frames (trust, pc, function and its start); where it names a pc from a PUBLIC record
    and we show module+offset (a PUBLIC has no size: it may not cover the pc), that
    counts as agreement. Returns (frames compared, frames named by both)."""
    rust = json.loads(run("minidump-stackwalk", "--json", path, store, check=True).stdout)
    publics = public_names(store)
    ours = stacks_of(path, use_local_files=False, symbol_paths=[store])
    compared = named = 0
    for thread in rust["threads"]:
        stack = ours[thread["thread_id"]]
        for i, their in enumerate(thread["frames"]):
            if their["trust"] not in ("context", "cfi", "frame_pointer"):
                break
            assert i < len(stack.frames), (thread["thread_id"], i, their)
            frame = stack.frames[i]
            assert frame.trust.value == their["trust"], (str(frame), their)
            assert frame.pc - (i > 0) == int(their["offset"], 16), (str(frame), their)
            compared += 1
            if frame.function is not None:
                assert frame.function == their["function"], (str(frame), their)
                assert frame.function_offset is not None
                assert frame.pc - frame.function_offset == \
                    int(their["offset"], 16) - int(their["function_offset"], 16)  # same start
                named += 1
            else:
                assert their["function"] is None or their["function"] in publics, \
                    (str(frame), their)
    return compared, named


@pytest.mark.parametrize("name", ["stack_target", "cxx_target"])
def test_breakpad_store_frames_equal_minidump_stackwalk(
        dumps: dict[str, types.SimpleNamespace], tmp_path: Path, name: str) -> None:
    """The C and C++ targets: see :func:`assert_same_as_minidump_stackwalk`."""
    d = dumps[name]
    make_store(d.path, tmp_path / "store")
    compared, named = assert_same_as_minidump_stackwalk(d.path, tmp_path / "store")
    assert compared >= 15 and named >= 8


@pytest.mark.parametrize("name", FIVE_PROGRAMS)
def test_five_debian_programs_store_frames_equal_minidump_stackwalk(
        name: str, debian_dumps: Callable[[str], Path], tmp_path: Path) -> None:
    """The five Debian programs, idle: see :func:`assert_same_as_minidump_stackwalk`."""
    path = debian_dumps(name)
    make_store(path, tmp_path / "store")
    compared, named = assert_same_as_minidump_stackwalk(path, tmp_path / "store")
    print(f"\n{name}: {compared} frames found by both by context/CFI/frame pointer, "
          f"{named} named by both")
    assert compared >= 3

