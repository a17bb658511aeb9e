"""The shared live dump (conftest.main_dump) read by independent tools: lldb,
rust-minidump's minidump-stackwalk, Breakpad's minidump_stackwalk, LLVM's obj2yaml
and the skelsec ``minidump`` package. Expected values come from the target's
construction and from readelf / dump_syms of the real binaries, never from our own
reader. Each tool runs once per session (cached fixtures)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.live, pytest.mark.validators,
              pytest.mark.skipif(sys.platform != "linux", reason="Linux backend")]

from oracles import run  # noqa: E402

# Each thread's known call chain, innermost first (tests/targets/mdk_target.c).
CHAINS = {
    "main": ["command_loop_level2", "command_loop_level1", "main"],
    "reader": ["reader_level3", "reader_level2", "reader_level1", "reader_main"],
    "sleeper": ["sleeper_level3", "sleeper_level2", "sleeper_level1", "sleeper_main"],
    "regs": ["regs_level3", "regs_level2", "regs_level1", "regs_main"],
    "futex": ["futex_level3", "futex_level2", "futex_level1", "futex_main"],
    "counter": ["counter_level3", "counter_level2", "counter_level1", "counter_main"],
}
NAMES = {"main": "mdk_target", "reader": "mdk-reader", "sleeper": "mdk-sleeper",
         "regs": "mdk-regs", "futex": "mdk-futex", "counter": "mdk-counter"}
REGS = {"rbx": 0x0B0B0B0B0B0B0B0B, "r12": 0x1212121212121212, "r13": 0x1313131313131313,
        "r14": 0x1414141414141414, "r15": 0x1515151515151515}


def tids(main_dump: Any) -> dict[str, int]:
    return {key: main_dump.target.int(key) for key in CHAINS}


def is_subsequence(needle: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(any(h == n for h in it) for n in needle)


def readelf_build_id(path: str | Path) -> str:
    out = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True,
                         check=True).stdout
    match = re.search(r"Build ID: ([0-9a-f]+)", out)
    assert match
    return match.group(1)


def libc_path(main_dump: Any) -> str:
    maps = Path(f"/proc/{main_dump.target.pid}/maps").read_text()
    match = re.search(r"(/\S*/libc\.so\.6)$", maps, re.M)
    assert match
    return match.group(1)


@pytest.fixture(scope="session")
def symbol_store(main_dump: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A Breakpad symbol store made by rust dump-syms from the real binaries (target and
    libc): {name: debug id} as dump-syms computes it from the files."""
    store = tmp_path_factory.mktemp("symbols")
    ids = {}
    for binary in (str(main_dump.binary), libc_path(main_dump)):
        sym = run("dump-syms", binary, check=True).stdout
        header = sym.splitlines()[0].split()
        assert header[:2] == ["MODULE", "Linux"], header
        debug_id, name = header[3], header[4]
        (store / name / debug_id).mkdir(parents=True)
        (store / name / debug_id / f"{name}.sym").write_text(sym)
        ids[name] = debug_id
    return store, ids


@pytest.fixture(scope="session")
def rust_json(main_dump: Any, symbol_store: tuple[Path, dict[str, str]]) -> dict[str, Any]:
    proc = run("minidump-stackwalk", "--json", "--symbols-path", symbol_store[0],
               main_dump.path, check=True)
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def breakpad_walk(main_dump: Any, symbol_store: tuple[Path, dict[str, str]]) -> tuple[str, str]:
    proc = run("breakpad-stackwalk", main_dump.path, symbol_store[0], check=True)
    return proc.stdout, proc.stderr


@pytest.fixture(scope="session")
def lldb_output(main_dump: Any) -> str:
    """lldb's view: thread list, bt all, then the callee-saved registers of every thread
    (in dump order), then the stack pattern's bytes."""
    cmds = ["target create --core " + str(main_dump.path), "thread list", "bt all"]
    for i in range(1, len(CHAINS) + 1):
        cmds += [f"thread select {i}", "register read rbx r12 r13 r14 r15"]
    cmds.append(f"memory read --format x --size 1 --count 17 {main_dump.target.info['pattern']}")
    args: list[str] = ["--batch", "--no-lldbinit"]
    for c in cmds:
        args += ["-o", c]
    proc = run("lldb", *args, check=True)
    return proc.stdout


# --- lldb ------------------------------------------------------------------------------

def test_lldb_thread_list(lldb_output: str, main_dump: Any) -> None:
    listed = [int(x) for x in re.findall(r"thread #\d+: tid = (\d+)", lldb_output)]
    assert sorted(listed) == sorted(tids(main_dump).values())


def test_lldb_backtraces_show_every_known_chain(lldb_output: str, main_dump: Any) -> None:
    """`bt all`, symbolized from the local binary (lldb loads it because the build id
    matches): each thread shows its known call chain in order."""
    bt = lldb_output.split("(lldb) bt all", 1)[1].split("(lldb) thread select", 1)[0]
    threads = re.split(r"\n\s*\*?\s*thread #\d+", bt)[1:]
    assert len(threads) == len(CHAINS)
    frames = [re.findall(r"`(\w+)", t) for t in threads]
    for key, chain in CHAINS.items():
        assert any(is_subsequence(chain, f) for f in frames), f"{key}: {chain} not in {frames}"


def test_lldb_register_values(lldb_output: str, main_dump: Any) -> None:
    """One thread (the regs thread) shows exactly the values the target's asm set."""
    blocks = lldb_output.split("register read rbx r12 r13 r14 r15")[1:]
    assert len(blocks) == len(CHAINS)
    parsed = [dict((k, int(v, 16)) for k, v in re.findall(r"(r\w+) = (0x[0-9a-f]+)", b))
              for b in blocks]
    assert sum(1 for regs in parsed if all(regs.get(k) == v for k, v in REGS.items())) == 1


def test_lldb_reads_the_stack_pattern(lldb_output: str) -> None:
    dump = lldb_output.rsplit("memory read", 1)[1]
    got = bytes(int(x, 16) for x in re.findall(r"0x([0-9a-f]{2})\b", dump.split("\n", 1)[1]))
    assert got[:17] == b"MDK-STACK-PATTERN"


# --- rust-minidump --------------------------------------------------------------------

def test_rust_minidump_walks_every_thread(rust_json: dict[str, Any], main_dump: Any) -> None:
    """minidump-stackwalk parses the dump (status OK), walks every thread through CFI from
    the symbol files to the known chain, and shows each thread's name."""
    assert rust_json["status"] == "OK"
    assert rust_json["pid"] == main_dump.target.pid
    threads = {t["thread_id"]: t for t in rust_json["threads"]}
    assert set(threads) == set(tids(main_dump).values())
    for key, tid in tids(main_dump).items():
        thread = threads[tid]
        assert thread["thread_name"] == NAMES[key]
        functions = [f.get("function") for f in thread["frames"]]
        assert is_subsequence(CHAINS[key], functions), (key, functions)
        assert all(f["trust"] in ("context", "cfi") for f in thread["frames"][:len(CHAINS[key])])


def test_rust_minidump_module_ids(rust_json: dict[str, Any], main_dump: Any,
                                  symbol_store: tuple[Path, dict[str, str]]) -> None:
    """Module code ids are the readelf build ids; debug ids equal what dump-syms derives
    from the same files; the main module is the executable."""
    mods = {m["filename"]: m for m in rust_json["modules"]}
    target = mods[main_dump.binary.name]
    assert target["code_id"] == readelf_build_id(main_dump.binary)
    assert target["debug_id"] == symbol_store[1][main_dump.binary.name]
    assert mods["libc.so.6"]["code_id"] == readelf_build_id(libc_path(main_dump))
    assert mods["libc.so.6"]["debug_id"] == symbol_store[1]["libc.so.6"]
    assert rust_json["modules"][rust_json["main_module"]]["filename"] == main_dump.binary.name
    assert rust_json["crash_info"]["type"] == "DUMP_REQUESTED"


def test_rust_minidump_raw_dump_parses(main_dump: Any) -> None:
    """`minidump-stackwalk --dump` prints every stream without errors, including the
    handle list and the Linux streams."""
    out = run("minidump-stackwalk", "--dump", main_dump.path, check=True).stdout
    assert str(main_dump.known_file) in out
    assert "anon_inode:[eventfd]" in out
    for name in ("MINIDUMP_THREAD_NAME", "MINIDUMP_HANDLE_DESCRIPTOR"):
        assert name in out


# --- Breakpad -------------------------------------------------------------------------

def test_breakpad_walks_every_thread(breakpad_walk: tuple[str, str], main_dump: Any) -> None:
    """Breakpad's minidump_stackwalk walks all six threads to their known chains, with no
    ERROR in its log."""
    out, err = breakpad_walk
    assert "ERROR" not in err, err[-2000:]
    assert "Crash reason:  DUMP_REQUESTED" in out
    sections = re.split(r"\nThread \d+", out)[1:]
    assert len(sections) == len(CHAINS)
    frames = [re.findall(r"^\s*\d+\s+\S+!(\w+)", s, re.M) for s in sections]
    for key, chain in CHAINS.items():
        assert any(is_subsequence(chain, f) for f in frames), f"{key}: {chain} not in {frames}"


def test_breakpad_module_ids(main_dump: Any, symbol_store: tuple[Path, dict[str, str]]) -> None:
    """Breakpad's machine-readable module lines carry dump-syms' debug ids."""
    out = run("breakpad-stackwalk", "-m", main_dump.path, check=True).stdout
    modules = {line.split("|")[1]: line.split("|") for line in out.splitlines()
               if line.startswith("Module|")}
    assert modules[main_dump.binary.name][4] == symbol_store[1][main_dump.binary.name]
    assert modules["libc.so.6"][4] == symbol_store[1]["libc.so.6"]


# --- LLVM obj2yaml and skelsec ----------------------------------------------------------

def test_obj2yaml_parses_every_stream(main_dump: Any) -> None:
    """LLVM's strict MinidumpFile parser accepts the file."""
    out = run("obj2yaml", main_dump.path, check=True).stdout
    assert "Type:            ThreadList" in out and "Type:            ModuleList" in out


def test_skelsec_minidump_threads_and_handles(main_dump: Any) -> None:
    """The pure-Python `minidump` package sees every thread and the open descriptors."""
    from minidump.minidumpfile import MinidumpFile

    mf = MinidumpFile.parse(str(main_dump.path))
    assert sorted(t.ThreadId for t in mf.threads.threads) == sorted(tids(main_dump).values())
    names = {h.Handle: h.ObjectName for h in mf.handles.handles}
    t = main_dump.target
    assert names[t.int("file_fd")] == str(main_dump.known_file)
    assert names[t.int("pipe_r")].startswith("pipe:[")
    assert names[t.int("listener")].startswith("socket:[")
    assert mf.misc_info.ProcessId == t.pid
