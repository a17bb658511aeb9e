"""A dump taken on request (no crash) names its requesting thread, and nothing calls
that thread "crashing": ``minidumpkit info`` (text and JSON) and ``ExceptionInfo``.

The file follows Breakpad's convention (an exception stream with code DUMP_REQUESTED,
0xFFFFFFFF); what thread it names and what the stack walkers make of it come from
rust-minidump's minidump-stackwalk and Breakpad's minidump_stackwalk.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import minidumpkit
from conftest import Target
from minidumpkit.cli import main
from oracles import run

pytestmark = pytest.mark.validators


def test_cli_dump_of_a_running_target_is_requested(
        target_bins: dict[str, Path], start_target: Callable[..., Target], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    target = start_target([target_bins["mdk_target"], tmp_path / "known.txt"])
    target.wait_parked("main")
    path = tmp_path / "requested.dmp"
    assert main(["dump", str(target.pid), "-o", str(path)]) == 0
    capsys.readouterr()

    rust = json.loads(run("minidump-stackwalk", "--json", path, check=True).stdout)
    assert rust["crash_info"]["type"] == "DUMP_REQUESTED"
    requesting = rust["crashing_thread"]["thread_id"]
    assert requesting == target.pid  # another process's dump: its main thread
    rust_pc = int(rust["crashing_thread"]["frames"][0]["registers"]["rip"], 16)

    with minidumpkit.open_minidump(path) as d:
        exc = d.exception
        assert exc is not None and exc.requested and exc.thread_id == requesting

    assert main(["info", "--json", str(path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["crash"] is None
    assert data["requested"]["reason"] == rust["crash_info"]["type"]
    assert data["requested"]["thread_id"] == requesting
    assert int(data["requested"]["address"], 16) == int(rust["crash_info"]["address"], 16)
    rows = {t["thread_id"]: t for t in data["threads"]}
    assert [tid for tid, t in rows.items() if t["requesting"]] == [requesting]
    assert not any(t["crashed"] for t in rows.values())
    assert int(rows[requesting]["pc"], 16) == rust_pc

    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert f"crash      none: dump requested by thread {requesting} at " in text
    assert "DUMP_REQUESTED" in text
    assert re.search(rf"^  > {requesting}\s", text, re.M)
    assert not re.search(r"^  \* ", text, re.M)

    # Breakpad's walker agrees on the reason and the thread (index 0, the main thread)
    machine = run("breakpad-stackwalk", "-m", path, check=True).stdout
    crash_line = next(line for line in machine.splitlines() if line.startswith("Crash|"))
    assert crash_line.split("|")[1] == "DUMP_REQUESTED"
    assert crash_line.split("|")[3] == "0"


SELF_DUMP = textwrap.dedent("""
    import os, sys, threading, minidumpkit
    out = {}
    def requester():
        out["tid"] = threading.get_native_id()
        minidumpkit.dump(os.getpid(), sys.argv[1])
    t = threading.Thread(target=requester, name="requester")
    t.start(); t.join()
    print(out["tid"])
""")


def test_self_dump_names_the_calling_thread(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A process dumping itself from a worker thread: that thread requested the dump."""
    path = tmp_path / "self.dmp"
    proc = subprocess.run([sys.executable, "-c", SELF_DUMP, str(path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    requester = int(proc.stdout.split()[-1])
    rust: dict[str, Any] = json.loads(run("minidump-stackwalk", "--json", path,
                                          check=True).stdout)
    assert rust["crash_info"]["type"] == "DUMP_REQUESTED"
    assert rust["crashing_thread"]["thread_id"] == requester
    assert requester in {t["thread_id"] for t in rust["threads"]}
    with minidumpkit.open_minidump(path) as d:
        assert d.exception is not None and d.exception.requested
        assert d.exception.thread_id == requester
        assert d.process_id != requester  # not the main thread
    assert main(["info", "--json", str(path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["crash"] is None and data["requested"]["thread_id"] == requester
    assert [t["thread_id"] for t in data["threads"] if t["requesting"]] == [requester]
