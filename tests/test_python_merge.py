"""Merged native + Python stacks and Python-level waits, from dumps of CPython 3.11, 3.12
and 3.13 children (tests/targets/py_merge_child.py).

One child per version, frozen by SIGSTOP; on the frozen process ``pystack remote
--native`` (PyPI pystack) runs and our FULL dump is written, then SIGCONT. Oracles:

* pystack's merged view of the same frozen process: its Python frames (name, line) equal
  ours on every thread, subinterpreter included (py-spy shows only the newest
  interpreter), and its native frames sit among them in the same order (pystack hides
  some CPython-internal C frames and lists inlined ones: its physical named frames must
  be a subsequence of ours, interleaved with the Python frames as ours are);
* lldb's ``bt`` on the same dump: the native frames of the thread inside ctypes's call to
  libc's pause(), pc for pc;
* how the child was built and what it recorded: the thread idents, native ids, its
  Python frames (``sys._current_frames()``) and the locks' own reprs (``<locked
  _thread.RLock object owner=IDENT count=2 at 0x...>``);
* pystack's "[Has the GIL]" / "[Waiting for the GIL]" for the GIL wait.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import minidumpkit as mdk
from minidumpkit import DumpType
from minidumpkit.analysis import wait_graph
from minidumpkit.analysis import pylocks
from minidumpkit.analysis.pylocks import GIL, NO_OWNER, PYTHON_LOCK, PYTHON_RLOCK
from minidumpkit.analysis.pymerge import MergedStack, is_eval_frame, merge_thread, merged_stacks
from minidumpkit.analysis.stackwalk import CallStack

from conftest import TARGETS, Target, assert_released, wait_until
from test_python_stacks import VERSIONS, interpreter
from test_stackwalk import lldb_stacks

pytestmark = pytest.mark.live

CHILD = TARGETS / "py_merge_child.py"


def pystack() -> list[str]:
    """pystack of this interpreter's environment (the test extras install it)."""
    if importlib.util.find_spec("pystack") is not None:
        return [sys.executable, "-m", "pystack"]
    exe = shutil.which("pystack")
    if exe is None:
        pytest.fail("pystack is not installed (pip install -e '.[test]' installs it)")
    return [exe]


def start(start_target: Any, version: str, tmp_path: Path) -> tuple[Target, dict[str, Any]]:
    truth_file = tmp_path / "truth.json"
    target: Target = start_target([interpreter(version), CHILD, truth_file])
    keys = ["cpause", "rowner", "rwaiter", "lwaiter", "ab1", "ab2"] + (
        ["sub"] if "sub" in target.info else [])
    target.wait_parked(*keys)
    # busy keeps the GIL (switch interval 1000 s) and says when main waits for it
    assert target._readline() == "GILWAIT"
    return target, json.loads(truth_file.read_text())


def freeze_and_dump(target: Target, path: Path) -> str:
    """pystack's text and our FULL dump of the same SIGSTOP-frozen process."""
    os.kill(target.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: all(open(f"/proc/{target.pid}/task/{t}/stat").read()
                               .rsplit(")", 1)[1].split()[0] == "T"
                               for t in os.listdir(f"/proc/{target.pid}/task")),
                   "the target to stop")
        text = subprocess.run([*pystack(), "remote", "--native", "--no-color",
                               str(target.pid)], check=True, capture_output=True, text=True,
                              timeout=120).stdout
        mdk.dump(target.pid, path, type=DumpType.FULL)
        assert_released(target.pid, stopped=True)
    finally:
        os.kill(target.pid, signal.SIGCONT)
    assert_released(target.pid)
    return text


_THREAD = re.compile(r"^Traceback for thread (\d+) ")
_FRAME = re.compile(r'^\s+\((C|Python)\) File "(.*)", line (\d+), in (\S+)(?: \((inlined)\))?')


def parse_pystack(text: str) -> dict[int, dict[str, Any]]:
    """{tid: {"frames": [("C", name) | ("Python", name, line)] innermost first,
    "gil": the GIL marks}}; inlined C frames and unnamed ones (???) left out."""
    out: dict[int, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        m = _THREAD.match(line)
        if m:
            current = out[int(m.group(1))] = {"frames": [], "gil": re.findall(r"\[[^]]*\]",
                                                                              line)}
            continue
        if current is None:
            continue
        if "interpreter" in line and "[" in line:
            current["gil"].append(line.strip())
        m = _FRAME.match(line)
        if m is None:
            continue
        kind, _file, number, name, inlined = m.groups()
        if kind == "Python":
            current["frames"].append(("Python", name, int(number)))
        elif not inlined and name != "???":
            current["frames"].append(("C", name.split("@", 1)[0]))
    for entry in out.values():
        entry["frames"].reverse()
    return out


def our_tokens(stack: MergedStack) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for f in stack.frames:
        if f.python is not None:
            out.append(("Python", f.python.function, f.python.line))
        elif f.native is not None and not is_eval_frame(f.native):
            n = f.native
            names = {x.split("@", 1)[0] for x in (n.function, n.mangled, *n.aliases) if x}
            names |= {re.sub(r"(\.(constprop|isra|part|cold)(\.\d+)?)+$", "", x) for x in names}
            out.append(("C", names))
    return out


def assert_like_pystack(stack: MergedStack, theirs: list[tuple[Any, ...]]) -> None:
    ours = our_tokens(stack)
    assert [t for t in ours if t[0] == "Python"] == [t for t in theirs if t[0] == "Python"], \
        (stack, theirs)
    i = 0  # theirs, in order, within ours: C frames by name, Python frames exactly
    for token in theirs:
        while i < len(ours) and not (
                ours[i] == token if token[0] == "Python"
                else ours[i][0] == "C" and (token[1] in ours[i][1]
                                            or token[1].lstrip("_") in ours[i][1])):
            assert ours[i][0] == "C", f"pystack's {token} is not where ours is:\n{stack}"
            i += 1
        assert i < len(ours), f"pystack's {token} not found in order:\n{stack}\n{theirs}"
        i += 1


@pytest.mark.parametrize("version", VERSIONS)
def test_merged_stacks_and_python_waits(start_target: Any, tmp_path: Path,
                                        version: str) -> None:
    target, truth = start(start_target, version, tmp_path)
    path = tmp_path / "frozen.dmp"
    theirs = parse_pystack(freeze_and_dump(target, path))
    by_native = {t["native_id"]: t for t in truth["threads"]}
    with mdk.open_minidump(path) as dump:
        stacks = {s.thread_id: s for s in merged_stacks(dump)}
        graph = wait_graph(dump)

    # every thread merged, and placed as pystack places it
    assert sorted(stacks) == sorted(theirs)
    for tid, stack in stacks.items():
        assert stack.merged, stack
        assert stack.eval_frames == stack.entry_frames > 0
        assert_like_pystack(stack, theirs[tid]["frames"])

    # (a) the ctypes call: libc's pause, libffi, _ctypes, then the Python frames that made
    # the call (the child's own record), then the eval loop that ran them
    cpause = stacks[target.int("cpause")]
    kinds = [(f.native.function if f.native else ("py", f.python.function))
             for f in cpause.frames if f.native is None or f.native.function]
    assert kinds[0] == "pause"
    first_py = next(i for i, k in enumerate(kinds) if isinstance(k, tuple))
    assert {"ffi_call", "_ctypes_callproc", "PyCFuncPtr_call"} <= set(kinds[:first_py])
    assert kinds.index("ffi_call") < kinds.index("_ctypes_callproc") < first_py
    python = [f.python for f in cpause.frames if f.python is not None]
    assert [[f.function, f.qualname, f.filename, f.line] for f in python] == \
        by_native[cpause.thread_id]["frames"]
    after = cpause.frames[cpause.frames.index(next(f for f in cpause.frames
                                                   if f.python is python[-1])) + 1]
    assert after.native is not None and is_eval_frame(after.native)
    lldb = lldb_stacks(path)[cpause.thread_id]
    assert [f.pc for f in cpause.native.frames] == [pc for pc, _start, _name in lldb]
    assert [f.native.pc for f in cpause.frames if f.native] == [pc for pc, *_ in lldb]

    # (b) the subinterpreter thread: two thread states on one OS thread, the newer
    # interpreter's frames innermost (pystack: "In interpreter 1", checked above)
    if "sub" in target.info:
        sub = stacks[target.int("sub")]
        assert sub.python is not None and sub.python.interpreter_id != 0
        assert [t.interpreter_id for t in sub.others] == [0]
        assert [f.function for f in sub.python.frames] == ["sub_leaf", "<module>"]
        assert sub.python.frames[0].filename == "<string>" and sub.python.frames[0].line == 3
        assert [f.function for f in sub.others[0].frames] == \
            [f[0] for f in by_native[sub.thread_id]["frames"]]

    # (c) the RLock: owner and depth from the child's repr of it
    m = re.fullmatch(r"<locked _thread\.RLock object owner=(\d+) count=(\d+) at (0x[0-9a-f]+)>",
                     truth["rlock"])
    assert m, truth["rlock"]
    owner_ident, count, address = int(m.group(1)), int(m.group(2)), int(m.group(3), 16)
    owner = next(t for t in truth["threads"] if t["ident"] == owner_ident)
    assert owner["name"] == "rowner" and count == 2 and address == truth["rlock_address"]
    wait = graph.waits[target.int("rwaiter")]
    assert (wait.kind, wait.object_address, wait.owner_tid, wait.hold_count) == \
        (PYTHON_RLOCK, address, owner["native_id"], count), wait
    assert "rlock_waiter" in (wait.frame or "")
    assert graph.edges()[target.int("rwaiter")] == target.int("rowner")
    # the Lock: no owner, and said so
    assert truth["lock"].startswith("<locked _thread.lock object at ")
    wait = graph.waits[target.int("lwaiter")]
    assert (wait.kind, wait.object_address, wait.owner_tid, wait.note) == \
        (PYTHON_LOCK, truth["lock_address"], None, NO_OWNER), wait
    assert "lock_waiter" in (wait.frame or "")

    # the ABBA on two RLocks is the verdict's deadlock, with the RLocks the child reprs
    addresses = {}
    for name in ("ra", "rb"):
        m = re.fullmatch(r"<locked _thread\.RLock object owner=(\d+) count=1 at "
                         r"(0x[0-9a-f]+)>", truth[name])
        assert m, truth[name]
        addresses[name] = int(m.group(2), 16)
    ab1, ab2 = target.int("ab1"), target.int("ab2")
    assert [sorted(d.threads) for d in graph.deadlocks] == [sorted([ab1, ab2])]
    assert {(lk.waiter, lk.holder, lk.address, lk.kind) for lk in graph.deadlocks[0].locks} \
        == {(ab1, ab2, addresses["rb"], PYTHON_RLOCK), (ab2, ab1, addresses["ra"], PYTHON_RLOCK)}
    assert graph.verdict()[0] == "DEADLOCK: 2 threads"

    # (d) the GIL: main waits, busy holds it (and pystack says the same)
    wait = graph.waits[target.pid]
    assert (wait.kind, wait.owner_tid) == (GIL, target.int("busy")), wait
    assert any("Waiting for the GIL" in g for g in theirs[target.pid]["gil"])
    assert any("Has the GIL" in g for g in theirs[target.int("busy")]["gil"])
    assert "the GIL" in wait.describe() and f"held by thread {target.int('busy')}" in \
        wait.describe()


def test_cli_merged_native_only_and_waits(start_target: Any, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`info` shows Python frames among the native ones and the Python waits;
    `--native-only` the native frames alone; `--json` the merged frames as an extension."""
    target, truth = start(start_target, "3.12.1", tmp_path)
    path = tmp_path / "cli.dmp"
    mdk.dump(target.pid, path, type=DumpType.FULL)
    cli = [sys.executable, "-m", "minidumpkit", "info"]
    text = subprocess.run([*cli, str(path)], check=True, capture_output=True, text=True,
                          timeout=120).stdout
    native = subprocess.run([*cli, "--native-only", str(path)], check=True,
                            capture_output=True, text=True, timeout=120).stdout
    cpause = next(t for t in truth["threads"] if t["name"] == "cpause")
    block = [f'     File "{file}", line {line}, in {qualname}'
             for _name, qualname, file, line in cpause["frames"]]
    assert "\n".join(block) in text
    assert 'File "' not in native
    assert f'held by thread {target.int("rowner")}' in text
    assert "threading.RLock" in text and "threading.Lock" in text and "the GIL" in text
    data = json.loads(subprocess.run([*cli, "--json", str(path)], check=True,
                                     capture_output=True, text=True, timeout=120).stdout)
    row = next(r for r in data["threads"] if r["thread_id"] == target.int("cpause"))
    merged = row["merged"]
    assert merged["status"] == "merged" and merged["eval_frames"] == merged["entry_frames"]
    natives = [m["index"] for m in merged["frames"] if m["kind"] == "native"]
    assert natives == [f["index"] for f in row["frames"]]  # every native frame, in order
    assert [[m["function"], m["qualname"], m["filename"], m["line"]]
            for m in merged["frames"] if m["kind"] == "python"] == cpause["frames"]
    assert row["wait"] is not None
    waiter = next(r for r in data["threads"] if r["thread_id"] == target.int("rwaiter"))
    assert waiter["wait"]["kind"] == PYTHON_RLOCK
    assert waiter["wait"]["owner_tid"] == target.int("rowner")

    # a MINI dump: the writer's Python capture kept the newest frames' slots and the lock
    # objects there, so the same waits are told
    mini = tmp_path / "mini.dmp"
    mdk.dump(target.pid, mini, type=DumpType.MINI)
    with mdk.open_minidump(mini) as dump:
        graph = wait_graph(dump)
        stacks = merged_stacks(dump)
        # without the lock objects (another writer's dump): the locks are told by
        # _thread's C functions, the RLock's owner unknown, with the reason
        monkeypatch.setattr(pylocks, "lock_objects", lambda *args: [])
        bare = wait_graph(dump)
    assert all(s.merged for s in stacks), stacks
    wait = graph.waits[target.int("rwaiter")]
    assert (wait.kind, wait.object_address, wait.owner_tid, wait.hold_count) == \
        (PYTHON_RLOCK, truth["rlock_address"], target.int("rowner"), 2), wait
    wait = graph.waits[target.int("lwaiter")]
    assert (wait.kind, wait.object_address, wait.note) == \
        (PYTHON_LOCK, truth["lock_address"], NO_OWNER), wait
    graph = bare
    # a native walk that stopped before the eval loop: the counts differ, nothing merged
    cpause = next(s for s in stacks if s.thread_id == target.int("cpause"))
    native = cpause.native
    cut = CallStack(native.thread_id, native.thread_name, native.frames[:4], native.status,
                    native.end)
    alone = merge_thread(cut, [cpause.python, *cpause.others])
    assert alone.status == ("not merged: 0 eval frame(s) (_PyEval_EvalFrameDefault) in the "
                            "native stack, 1 Python entry frame(s)"), alone.status
    assert [f.native for f in alone.frames] == cut.frames and alone.python is cpause.python
    assert "the Python stack alone" in str(alone) and "pause_leaf" in str(alone)
    assert (graph.waits[target.pid].kind, graph.waits[target.pid].owner_tid) == \
        (GIL, target.int("busy"))
    rwait, lwait = graph.waits[target.int("rwaiter")], graph.waits[target.int("lwaiter")]
    assert (rwait.kind, rwait.owner_tid) == (PYTHON_RLOCK, None) and rwait.unknown
    assert (lwait.kind, lwait.owner_tid, lwait.note) == (PYTHON_LOCK, None, NO_OWNER)
    assert "no deadlock proven" in graph.verdict()[0]
