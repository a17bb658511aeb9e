"""Live dumps of real processes, checked with minidumpkit's reader against what the
targets are known to contain (tests/targets/mdk_target.c, py_target.py), and the
target's state after every dump."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.live,
              pytest.mark.skipif(sys.platform != "linux", reason="Linux backend")]

import minidumpkit  # noqa: E402
from minidumpkit import DumpType, MiniDumpType  # noqa: E402
from minidumpkit._backends import linux  # noqa: E402

FILETIME_UNIX_OFFSET = 11_644_473_600  # seconds from 1601 to 1970
REGS_THREAD_VALUES = {"rbx": 0x0B0B0B0B0B0B0B0B, "r12": 0x1212121212121212,
                      "r13": 0x1313131313131313, "r14": 0x1414141414141414,
                      "r15": 0x1515151515151515}


def readelf_build_id(path: str | Path) -> str:
    out = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True,
                         check=True).stdout
    match = re.search(r"Build ID: ([0-9a-f]+)", out)
    assert match, f"no build id in {path}"
    return match.group(1)


def expected_names(t: Any) -> dict[int, str]:
    return {t.int("main"): "mdk_target", t.int("reader"): "mdk-reader",
            t.int("sleeper"): "mdk-sleeper", t.int("regs"): "mdk-regs",
            t.int("futex"): "mdk-futex", t.int("counter"): "mdk-counter"}


# --- the shared dump, through our reader -----------------------------------------------

def test_threads_and_names(main_dump: Any) -> None:
    """Every thread of the target, with the name it gave itself."""
    t = main_dump.target
    with minidumpkit.open_minidump(main_dump.path) as d:
        assert {th.thread_id: th.name for th in d.threads} == expected_names(t)
        assert d.thread_names == expected_names(t)
        assert d.threads[0].thread_id == t.pid  # main thread first


def test_registers_of_the_parked_thread(main_dump: Any) -> None:
    """The thread parked in a raw pause() holds the callee-saved values the inline asm
    put there; contexts are full CONTEXT_AMD64 (0x0010001f) with the FXSAVE area."""
    t = main_dump.target
    with minidumpkit.open_minidump(main_dump.path) as d:
        regs = d.thread(t.int("regs"))
        assert regs is not None and regs.context is not None
        for name, value in REGS_THREAD_VALUES.items():
            assert getattr(regs.context, name) == value, name
        for th in d.threads:
            ctx = th.context
            assert ctx is not None and ctx.context_flags == 0x0010001F
            assert ctx.flt_save.mx_csr == ctx.mx_csr != 0
            assert ctx.seg_cs == 0x33 and ctx.seg_ss == 0x2B  # __USER_CS / __USER_DS
            assert th.teb != 0  # fs_base: the thread's TLS block


def test_stack_pattern_is_in_the_dump(main_dump: Any) -> None:
    """The regs thread's stack array (known bytes at the address it printed) is captured,
    inside that thread's stack range."""
    t = main_dump.target
    addr = t.int("pattern")
    expected = bytearray((0xA5 ^ i) & 0xFF for i in range(256))
    expected[:17] = b"MDK-STACK-PATTERN"
    with minidumpkit.open_minidump(main_dump.path) as d:
        assert d.memory.read(addr, 256) == bytes(expected)
        regs = d.thread(t.int("regs"))
        assert regs is not None
        assert regs.stack_start <= addr < regs.stack_start + regs.stack_size
        # stacks start at the red zone below rsp
        assert regs.stack_start <= regs.context.rsp - 128


def test_modules_and_build_ids_match_readelf(main_dump: Any) -> None:
    """Main executable first; its and libc's build ids equal `readelf -n`; the vDSO is
    listed as linux-gate.so."""
    with minidumpkit.open_minidump(main_dump.path) as d:
        mods = d.modules
        assert mods[0].name == str(main_dump.binary)
        assert mods[0].code_id == readelf_build_id(main_dump.binary)
        libc = [m for m in mods if m.name.endswith("/libc.so.6")]
        assert len(libc) == 1
        assert libc[0].code_id == readelf_build_id(libc[0].name)
        assert any(m.name == "linux-gate.so" and m.code_id for m in mods)
        maps = Path(f"/proc/{main_dump.target.pid}/maps").read_text()
        for m in mods:
            if m.name.startswith("/"):
                assert f"{m.base:x}-" in maps, f"{m.name} base is not a mapping start"


def test_handles_list_files_pipes_sockets(main_dump: Any) -> None:
    """HandleData names the open file, the pipe, the sockets and the eventfd, each with
    its type, under the descriptor numbers the target printed."""
    t = main_dump.target
    with minidumpkit.open_minidump(main_dump.path) as d:
        handles = {h.handle: h for h in d.handles}
    assert handles[t.int("file_fd")].object_name == str(main_dump.known_file)
    assert handles[t.int("file_fd")].type_name == "File"
    for key in ("pipe_r", "pipe_w"):
        assert handles[t.int(key)].type_name == "Pipe"
        assert handles[t.int(key)].object_name.startswith("pipe:[")
    assert handles[t.int("pipe_r")].object_name == handles[t.int("pipe_w")].object_name
    for key in ("sock0", "sock1", "listener"):
        assert handles[t.int(key)].type_name == "Socket"
        assert handles[t.int(key)].object_name.startswith("socket:[")
    assert handles[t.int("eventfd")].object_name == "anon_inode:[eventfd]"
    live_fds = sorted(int(fd) for fd in os.listdir(f"/proc/{t.pid}/fd"))
    assert sorted(handles) == live_fds


def test_exception_misc_and_system_info(main_dump: Any) -> None:
    """A live dump says DUMP_REQUESTED on the main thread; MiscInfo carries the pid and a
    creation time within the target's start; SystemInfo says Linux on AMD64."""
    t = main_dump.target
    with minidumpkit.open_minidump(main_dump.path) as d:
        exc = d.exception
        assert exc is not None and exc.thread_id == t.pid and exc.code == 0xFFFFFFFF
        assert d.process_id == t.pid
        misc = d.misc_info
        assert misc is not None and misc.process_create_time is not None
        created = misc.process_create_time.timestamp()
        assert main_dump.started - 2 <= created <= main_dump.ready + 1
        si = d.system_info
        assert si is not None
        assert int(si.platform) == 0x8201 and int(si.architecture) == 9
        assert si.number_of_processors == os.cpu_count()


def test_thread_info_times(main_dump: Any) -> None:
    """ThreadInfoList: one entry per thread; create times (FILETIME) fall between the
    moment the test started the target and its READY line."""
    t = main_dump.target
    with minidumpkit.open_minidump(main_dump.path) as d:
        infos = {i.thread_id: i for i in d.thread_info}
    assert set(infos) == set(expected_names(t))
    for info in infos.values():
        unix = info.create_time / 1e7 - FILETIME_UNIX_OFFSET
        assert main_dump.started - 2 <= unix <= main_dump.ready + 1
        assert info.affinity & 1


def test_linux_streams_equal_proc(main_dump: Any) -> None:
    """The raw Linux streams are byte copies of what /proc shows for the target."""
    pid = main_dump.target.pid
    with minidumpkit.open_minidump(main_dump.path) as d:
        assert d.raw_stream(0x47670006) == Path(f"/proc/{pid}/cmdline").read_bytes()
        assert d.raw_stream(0x47670007) == Path(f"/proc/{pid}/environ").read_bytes()
        assert d.raw_stream(0x47670008) == Path(f"/proc/{pid}/auxv").read_bytes()
        assert d.raw_stream(0x47670009) == Path(f"/proc/{pid}/maps").read_bytes()
        release = Path("/etc/lsb-release") if Path("/etc/lsb-release").exists() \
            else Path("/etc/os-release")
        assert d.raw_stream(0x47670005) == release.read_bytes()
        status = d.linux_proc_status
        assert status is not None and status["Pid"] == str(pid)
        assert "vendor_id" in (d.linux_cpuinfo or "")


def test_dso_debug_link_map_matches_ldd(main_dump: Any) -> None:
    """LinuxDsoDebug's link-map names are the libraries ldd resolves for the binary."""
    ldd = subprocess.run(["ldd", str(main_dump.binary)], capture_output=True, text=True,
                         check=True).stdout
    libc_path = re.search(r"libc\.so\.6 => (\S+)", ldd)
    assert libc_path
    with minidumpkit.open_minidump(main_dump.path) as d:
        dso = d.linux_dso_debug
    assert dso is not None and dso.version == 1
    names = [lm.name for lm in dso.link_maps]
    assert os.path.realpath(libc_path.group(1)) in {os.path.realpath(n) for n in names if n}
    assert dso.dso_count == len(dso.link_maps) >= 3


def test_target_is_healthy_after_the_dump(main_dump: Any, live: Any) -> None:
    """After the dump the target runs, nothing traces it, and its self-checks pass."""
    live.assert_released(main_dump.target.pid)
    live.assert_target_healthy(main_dump.target)


def test_dump_file_mode_is_0600(main_dump: Any) -> None:
    assert os.stat(main_dump.path).st_mode & 0o777 == 0o600


# --- behaviour, each with its own target -----------------------------------------------

def test_repeated_dumps_leave_the_target_intact(target_bins: dict[str, Path], start_target: Any,
                                                live: Any, tmp_path: Path) -> None:
    """Three dumps in a row (MINI and plain Normal): after each, the target is released
    and its checks (counter, checksum, no EINTR in read/nanosleep) pass."""
    t = start_target([target_bins["mdk_target"], tmp_path / "f"])
    for i, kind in enumerate([DumpType.MINI, MiniDumpType.Normal, DumpType.MINI]):
        path = minidumpkit.Dumper(t.pid).write(tmp_path / f"{i}.dmp", kind)
        live.assert_released(t.pid)
        live.assert_target_healthy(t)
        with minidumpkit.open_minidump(path) as d:
            assert len(d.threads) == 6


def test_stopped_target_stays_stopped(target_bins: dict[str, Path], start_target: Any,
                                      live: Any, tmp_path: Path) -> None:
    """A target SIGSTOPped before the dump is still in its job-control stop after it
    (state T, untraced); we never continue it. SIGCONT from the test resumes it."""
    t = start_target([target_bins["mdk_target"], tmp_path / "f"])
    os.kill(t.pid, signal.SIGSTOP)
    live.wait_until(lambda: all(s == "T" for s, _ in live.task_states(t.pid).values()),
                    "every thread to stop")
    path = minidumpkit.dump(t.pid, tmp_path / "stopped.dmp")
    live.assert_released(t.pid, stopped=True)
    with minidumpkit.open_minidump(path) as d:
        assert len(d.threads) == 6
    os.kill(t.pid, signal.SIGCONT)
    live.wait_until(lambda: all(s not in "Tt" for s, _ in live.task_states(t.pid).values()),
                    "the target to continue")
    live.assert_target_healthy(t)


def test_signal_sent_during_the_dump_is_delivered_once(target_bins: dict[str, Path],
                                                       start_target: Any, live: Any,
                                                       tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGUSR1 sent while every thread is held stopped stays pending and is handled
    exactly once after the dump."""
    t = start_target([target_bins["mdk_target"], tmp_path / "f"])
    original = linux._procfs.iter_handles
    sent = []

    def send_then_list(pid: int) -> Any:
        os.kill(pid, signal.SIGUSR1)
        sent.append(pid)
        return original(pid)

    monkeypatch.setattr(linux._procfs, "iter_handles", send_then_list)
    minidumpkit.dump(t.pid, tmp_path / "sig.dmp")
    assert sent == [t.pid]
    live.assert_released(t.pid)
    live.wait_until(lambda: t.status()["usr1"] == 1, "SIGUSR1 to be handled")
    live.assert_target_healthy(t)
    assert t.status()["usr1"] == 1


def test_python_child_target(start_target: Any, live: Any, tmp_path: Path) -> None:
    """A Python process: all its threads (the three it named) are in the dump, and it
    keeps answering afterwards."""
    t = start_target([sys.executable, live.targets_dir / "py_target.py"])
    tids = [int(x) for x in t.info["tids"].split(",")]
    names = t.info["names"].split(",")
    path = minidumpkit.dump(t.pid, tmp_path / "py.dmp")
    live.assert_released(t.pid)
    assert t.command("ping") == "pong"
    with minidumpkit.open_minidump(path) as d:
        got = {th.thread_id: th.name for th in d.threads}
        assert set(got) == {int(x) for x in os.listdir(f"/proc/{t.pid}/task")}
        for tid, name in zip(tids, names, strict=True):
            assert got[tid] == name
        assert d.modules[0].name == os.path.realpath(sys.executable) or \
            d.modules[0].name == sys.executable


def test_dump_of_our_own_process(tmp_path: Path) -> None:
    """minidumpkit.dump(os.getpid()) works (a helper process does the tracing) and the
    dump holds our threads, including one parked on an Event."""
    started = threading.Event()
    release = threading.Event()
    tid: list[int] = []

    def park() -> None:
        tid.append(threading.get_native_id())
        started.set()
        release.wait()

    th = threading.Thread(target=park, daemon=True)
    th.start()
    started.wait()
    try:
        path = minidumpkit.dump(os.getpid(), tmp_path / "self.dmp")
        tasks = {int(x) for x in os.listdir("/proc/self/task")}
    finally:
        release.set()
        th.join()
    with minidumpkit.open_minidump(path) as d:
        got = {t.thread_id for t in d.threads}
        assert os.getpid() in got and tid[0] in got
        assert got <= tasks | {tid[0]}
        assert d.process_id == os.getpid()
    status = Path("/proc/self/status").read_text()
    assert re.search(r"TracerPid:\s+0\n", status)


def test_dump_of_our_own_thread_id_dumps_our_process(tmp_path: Path) -> None:
    """A thread id names its process: dumping one of our own threads by its tid is a
    self-dump, not a deadlock."""
    path = minidumpkit.dump(threading.get_native_id(), tmp_path / "tid.dmp")
    with minidumpkit.open_minidump(path) as d:
        assert d.process_id == os.getpid()


def test_cli_dump(target_bins: dict[str, Path], start_target: Any, live: Any,
                  tmp_path: Path) -> None:
    """`minidumpkit dump PID -o FILE` writes a dump our reader opens."""
    t = start_target([target_bins["mdk_target"], tmp_path / "f"])
    out = tmp_path / "cli.dmp"
    proc = subprocess.run([sys.executable, "-m", "minidumpkit", "dump", str(t.pid), "-o",
                           str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with minidumpkit.open_minidump(out) as d:
        assert {th.thread_id for th in d.threads} == set(expected_names(t))
    live.assert_released(t.pid)
