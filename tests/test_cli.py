"""The ``minidumpkit`` command line: ``info`` on the fixtures, ``dump``, and its errors.

Expected values for ``info`` come from rust-minidump's minidump-stackwalk (run through
the cached helpers of test_reader_fixtures), never from our reader.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import minidumpkit
from minidumpkit import DumpType, MiniDumpType, ProcessNotFound
from minidumpkit.cli import main, parse_dump_type
from test_reader_fixtures import NAMES, PATHS, h, rust_contexts, rust_dump, rust_json

pytestmark = pytest.mark.validators


def info(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["info", *args])
    out, err = capsys.readouterr()
    return code, out, err


# --- info ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_info_json_matches_rust_minidump(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = info(capsys, "--json", str(PATHS[name]))
    assert code == 0 and err == ""
    data = json.loads(out)
    rust = rust_json(name)
    assert data["system"]["os"] == rust["system_info"]["os"]
    assert data["system"]["cpu"] == rust["system_info"]["cpu_arch"]
    assert data["system"]["cpu_info"] == rust["system_info"]["cpu_info"]
    assert data["system"]["processors"] == rust["system_info"]["cpu_count"]
    assert data["process"]["pid"] == rust["pid"]
    crash = rust["crash_info"]
    if crash["type"] is None:
        assert data["crash"] is None and data["requested"] is None
    elif crash["type"] == "DUMP_REQUESTED":  # rust-minidump's "crashing" thread requested it
        assert data["crash"] is None
        assert data["requested"]["reason"] == crash["type"]
        assert h(data["requested"]["address"]) == h(crash["address"])
        requesting = rust["threads"][crash["crashing_thread"]]["thread_id"]
        assert data["requested"]["thread_id"] == requesting
        assert [t["thread_id"] for t in data["threads"] if t["requesting"]] == [requesting]
        assert not any(t["crashed"] for t in data["threads"])
    else:
        assert data["crash"]["reason"] == crash["type"]
        assert h(data["crash"]["address"]) == h(crash["address"])
        crashed = rust["threads"][crash["crashing_thread"]]["thread_id"]
        assert data["crash"]["thread_id"] == crashed
        assert [t["thread_id"] for t in data["threads"] if t["crashed"]] == [crashed]
        assert data["requested"] is None and not any(t["requesting"] for t in data["threads"])
    assert [(t["thread_id"], t["name"]) for t in data["threads"]] == [
        (t["thread_id"], t["thread_name"]) for t in rust["threads"]]
    # top registers: the thread list's context, the exception's for the crashing thread
    contexts, exc = rust_contexts(name)
    pcs = {"rip", "eip"}
    for row, ctx in zip(data["threads"], contexts):
        use = exc if (row["crashed"] or row["requesting"]) and exc is not None else ctx
        pc_name = next(k for k in use if k in pcs)
        sp_name, fp_name = ("rsp", "rbp") if pc_name == "rip" else ("esp", "ebp")
        assert (h(row["pc"]), h(row["sp"]), h(row["fp"])) == (
            h(use[pc_name]), h(use[sp_name]), h(use[fp_name]))
    nil = "0" * 33
    assert [(Path(m["name"].replace("\\", "/")).name, h(m["base"]), m["code_id"],
             m["debug_id"] or nil) for m in data["modules"]] == [
        (m["filename"], h(m["base_addr"]), m["code_id"], m["debug_id"])
        for m in rust["modules"]]
    directory = {}
    index = None
    for heading, fields, _ in rust_dump(name):
        m = re.fullmatch(r"mDirectory\[(\d+)\]", heading)
        if m:
            index = int(m.group(1))
        elif heading == "MDRawDirectory" and index is not None:
            directory[index] = (h(fields["stream_type"].split()[0]),
                                h(fields["location.data_size"]))
    for s in data["streams"]:
        if s["index"] in directory:
            assert (h(s["type"]), s["size"]) == directory[s["index"]]
    assert data["errors"] == []


@pytest.mark.parametrize("name", NAMES)
def test_info_text(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = info(capsys, str(PATHS[name]))
    assert code == 0 and err == ""
    rust = rust_json(name)
    assert f"Threads ({rust['thread_count']})" in out
    assert f"Modules ({len(rust['modules'])})" in out
    for t in rust["threads"]:
        assert re.search(rf"^  [*> ] {t['thread_id']}\s", out, re.M), t["thread_id"]
        if t["thread_name"]:
            assert t["thread_name"] in out
    for m in rust["modules"]:
        assert m["filename"] in out
    if rust["crash_info"]["type"] == "DUMP_REQUESTED":
        requesting = rust["threads"][rust["crash_info"]["crashing_thread"]]["thread_id"]
        assert f"crash      none: dump requested by thread {requesting} at " in out
        assert re.search(rf"^  > {requesting}\s", out, re.M)
    elif rust["crash_info"]["type"] is not None:
        assert f"crash      {rust['crash_info']['type']} at " in out
    else:
        assert "crash      none" in out
    assert rust["system_info"]["os"] in out


def test_info_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = info(capsys, str(tmp_path / "nope.dmp"))
    assert code == 2 and out == ""
    assert "cannot read" in err and "No such file" in err and "Traceback" not in err


def test_info_not_a_minidump(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.dmp"
    bogus.write_bytes(b"ELF\0" + bytes(60))
    code, out, err = info(capsys, str(bogus))
    assert code == 2 and out == ""
    assert "not a valid minidump" in err and "signature" in err and "Traceback" not in err


def test_info_reports_a_broken_stream_and_the_rest(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    name = "generated-crashpad-linux-x86_64-3threads-segv.dmp"
    raw = bytearray(PATHS[name].read_bytes())
    # make the ModuleList count absurd (the directory, read with struct: entry 5)
    dir_rva = int.from_bytes(raw[12:16], "little")
    entry = next(dir_rva + 12 * i for i in range(int.from_bytes(raw[8:12], "little"))
                 if int.from_bytes(raw[dir_rva + 12 * i:dir_rva + 12 * i + 4], "little") == 4)
    rva = int.from_bytes(raw[entry + 8:entry + 12], "little")
    raw[rva:rva + 4] = (1 << 30).to_bytes(4, "little")
    broken = tmp_path / "broken.dmp"
    broken.write_bytes(raw)
    code, out, err = info(capsys, "--json", str(broken))
    assert code == 2
    data = json.loads(out)
    assert data["modules"] == [] and len(data["threads"]) == 3
    assert data["crash"]["reason"] == rust_json(name)["crash_info"]["type"]
    assert "ModuleList" in err and "malformed" in err and "Traceback" not in err


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage:" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2
    assert main(["info"]) == 2
    assert main(["--version"]) == 0
    assert minidumpkit.__version__ in capsys.readouterr().out


def test_python_dash_m(tmp_path: Path) -> None:
    name = "windows-x86_64-dbghelp-fastfail.dmp"
    proc = subprocess.run([sys.executable, "-m", "minidumpkit", "info", str(PATHS[name])],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert rust_json(name)["crash_info"]["type"] in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "minidumpkit", "info", str(tmp_path / "x")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


# --- parse_dump_type ------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("MINI", DumpType.MINI),
    ("full", DumpType.FULL),
    ("Triage", DumpType.TRIAGE),
    ("WithFullMemory", MiniDumpType.WithFullMemory),
    ("MiniDumpWithFullMemory", MiniDumpType.WithFullMemory),
    ("minidumpwithhandledata", MiniDumpType.WithHandleData),
    ("Normal", MiniDumpType.Normal),
    ("MiniDumpNormal", MiniDumpType.Normal),
    ("WithHandleData|WithUnloadedModules,WithFullMemoryInfo | WithThreadInfo", MiniDumpType(0x1824)),
    ("0x1824", MiniDumpType(0x1824)),
    ("6180", MiniDumpType(0x1824)),
    ("MINI|WithFullMemory", DumpType.MINI | MiniDumpType.WithFullMemory),
    ("0x200000,WithDataSegs", MiniDumpType.WithAvxXStateContext | MiniDumpType.WithDataSegs),
])
def test_parse_dump_type(text: str, expected: MiniDumpType) -> None:
    got = parse_dump_type(text)
    assert got == expected and isinstance(got, MiniDumpType)


@pytest.mark.parametrize("text", ["", " ", "WithFullMemory|", "Bogus", "0x2000000",
                                  "-1", "MiniDump", "With Full Memory", "0xZZ"])
def test_parse_dump_type_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_dump_type(text)


# --- dump -------------------------------------------------------------------------------------

class FakeDump:
    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[int, str, dict[str, Any]]] = []
        self.error = error

    def __call__(self, pid: int, path: str, **kwargs: Any) -> Path:
        self.calls.append((pid, str(path), kwargs))
        if self.error is not None:
            raise self.error
        return Path(path)


@pytest.fixture
def fake_dump(monkeypatch: pytest.MonkeyPatch) -> FakeDump:
    fake = FakeDump()
    monkeypatch.setattr(minidumpkit, "dump", fake, raising=False)
    return fake


@pytest.mark.parametrize("args,expected", [
    ([], {}),
    (["--mini"], {"type": DumpType.MINI}),
    (["--full"], {"type": DumpType.FULL}),
    (["--triage"], {"type": DumpType.TRIAGE}),
    (["--type", "WithFullMemory,WithHandleData"],
     {"type": MiniDumpType.WithFullMemory | MiniDumpType.WithHandleData}),
    (["--type", "0x1824"], {"type": MiniDumpType(0x1824)}),
    (["--overwrite"], {"overwrite": True}),
])
def test_dump_passes_the_type(args: list[str], expected: dict[str, Any], fake_dump: FakeDump,
                              capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_file = str(tmp_path / "x.dmp")
    assert main(["dump", "4242", "-o", out_file, *args]) == 0
    assert fake_dump.calls == [(4242, out_file, {"overwrite": False, **expected})]
    assert capsys.readouterr().out.strip() == out_file


def test_dump_default_name(fake_dump: FakeDump, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    pid = os.getpid()
    comm = Path(f"/proc/{pid}/comm").read_text().strip()
    assert main(["dump", str(pid)]) == 0
    (call,) = fake_dump.calls
    assert re.fullmatch(rf"{re.escape(comm)}-{pid}-\d{{8}}-\d{{6}}\.dmp", call[1]), call[1]
    assert capsys.readouterr().out.strip() == call[1]


def test_dump_error_is_a_message_and_exit_1(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeDump(ProcessNotFound(3, "no process with pid 4242", pid=4242))
    monkeypatch.setattr(minidumpkit, "dump", fake, raising=False)
    assert main(["dump", "4242", "-o", "never.dmp"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "no process with pid 4242" in err and "Traceback" not in err


@pytest.mark.parametrize("args", [["dump"], ["dump", "abc"], ["dump", "0"], ["dump", "-5"],
                                  ["dump", "1", "--mini", "--full"],
                                  ["dump", "1", "--type", "Bogus"]])
def test_dump_usage_errors(args: list[str], fake_dump: FakeDump,
                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    assert "usage:" in capsys.readouterr().err
    assert fake_dump.calls == []


@pytest.fixture
def gone_pid() -> int:
    """The pid of a child that has exited and been reaped (the kernel does not hand a
    pid out again until the pid space wraps)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.mark.skipif(sys.platform != "linux", reason="needs the Linux backend")
def test_dump_of_a_missing_process(gone_pid: int, capsys: pytest.CaptureFixture[str],
                                   tmp_path: Path) -> None:
    out_file = tmp_path / "gone.dmp"
    assert main(["dump", str(gone_pid), "-o", str(out_file)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and str(gone_pid) in err and "Traceback" not in err
    assert not out_file.exists()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(["sleep", "60"])
    try:
        # Popen may return (vfork) before exec has renamed the child: wait for "sleep"
        comm = Path(f"/proc/{child.pid}/comm")
        deadline = time.monotonic() + 30
        while comm.read_text().strip() != "sleep":
            if time.monotonic() > deadline:
                pytest.fail(f"child {child.pid} never became `sleep`")
            time.sleep(0.005)
        yield child
    finally:
        child.kill()
        child.wait()


@pytest.mark.live
@pytest.mark.skipif(sys.platform != "linux", reason="needs the Linux backend")
def test_dump_a_live_process_end_to_end(sleeper: subprocess.Popen[bytes],
                                        capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["dump", str(sleeper.pid)]) == 0
    written = Path(capsys.readouterr().out.strip())
    assert re.fullmatch(rf"sleep-{sleeper.pid}-\d{{8}}-\d{{6}}\.dmp", written.name)
    with minidumpkit.open_minidump(tmp_path / written) as d:
        assert [t.thread_id for t in d.threads] == [sleeper.pid]
        assert d.process_id == sleeper.pid
        info = d.minidumpkit_info
        assert info is not None and str(info.details["writer"]).startswith("minidumpkit ")
        assert info.dump_type == DumpType.MINI
    assert sleeper.poll() is None  # still running, not left stopped
    state = Path(f"/proc/{sleeper.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    assert state in ("S", "R")
    os.kill(sleeper.pid, signal.SIGTERM)



@pytest.mark.live
@pytest.mark.skipif(sys.platform != "linux", reason="needs the Linux backend")
def test_dump_with_a_progress_bar(sleeper: subprocess.Popen[bytes],
                                  capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--progress draws the bar on stderr, ending at 100 % on its own line; stdout still
    carries only the path, and the dump is complete."""
    path = tmp_path / "p.dmp"
    assert main(["dump", str(sleeper.pid), "-o", str(path), "--full", "--progress"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(path)
    assert f"dumping {sleeper.pid}" in captured.err and "100%" in captured.err
    assert captured.err.endswith("\n")
    with minidumpkit.open_minidump(path) as d:
        assert [t.thread_id for t in d.threads] == [sleeper.pid]
        assert d.memory_info  # FULL: the memory map is there
    os.kill(sleeper.pid, signal.SIGTERM)
