"""Targets that cannot be dumped, and targets that change under the dump: each is a
clear exception from the hierarchy (or a complete dump), never a hang, never a
target left stopped or traced, never a file left behind."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.live,
              pytest.mark.skipif(sys.platform != "linux", reason="Linux backend")]

import minidumpkit  # noqa: E402
from minidumpkit import errors  # noqa: E402
from minidumpkit._backends import _ptrace, linux  # noqa: E402
from minidumpkit._ffi import libc  # noqa: E402
from liveproc import in_unprivileged_child  # noqa: E402


def no_files(directory: Path) -> None:
    assert list(directory.iterdir()) == [], "a dump or temporary file was left behind"


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_nonexistent_pid(tmp_path: Path) -> None:
    pid = dead_pid()
    with pytest.raises(errors.ProcessNotFound, match=f"no process with pid {pid}") as info:
        minidumpkit.Dumper(pid)
    assert info.value.errno == errno.ESRCH and isinstance(info.value, ProcessLookupError)
    with pytest.raises(errors.ProcessNotFound):
        minidumpkit.dump(pid, tmp_path / "x.dmp")
    for bad in (0, -4):
        with pytest.raises(errors.ProcessNotFound, match="not a valid process id"):
            minidumpkit.dump(bad, tmp_path / "x.dmp")
    no_files(tmp_path)


def test_zombie(tmp_path: Path, live: Any) -> None:
    proc = subprocess.Popen(["true"])
    try:
        live.wait_until(lambda: Path(f"/proc/{proc.pid}/stat").read_text().split()[2] == "Z",
                        "the child to become a zombie")
        with pytest.raises(errors.InvalidTargetError, match="zombie"):
            minidumpkit.dump(proc.pid, tmp_path / "z.dmp")
    finally:
        proc.wait()
    no_files(tmp_path)


def test_kernel_thread(tmp_path: Path) -> None:
    """pid 2 (kthreadd) has no user address space."""
    assert Path("/proc/2/maps").read_bytes() == b""
    with pytest.raises(errors.InvalidTargetError, match="kernel thread"):
        minidumpkit.dump(2, tmp_path / "k.dmp")
    no_files(tmp_path)


def test_already_traced(target_bins: dict[str, Path], start_target: Any, live: Any,
                        tmp_path: Path) -> None:
    """A target another process has PTRACE_SEIZEd: AlreadyTraced naming that tracer's pid
    and name; the target is untouched and dumpable once the tracer is gone."""
    t = start_target([target_bins["mdk_target"], tmp_path / "f"])
    code = ("import sys\nfrom minidumpkit._ffi import libc\n"
            "ffi, lib = libc.load()\n"
            f"rc = lib.ptrace(libc.PTRACE_SEIZE, ffi.cast('int', {t.pid}), "
            "ffi.cast('void *', 0), ffi.cast('void *', 0))\n"
            "print('SEIZED' if rc == 0 else f'FAILED {ffi.errno}', flush=True)\n"
            "sys.stdin.read()\n")
    tracer = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert tracer.stdout is not None and tracer.stdout.readline().strip() == "SEIZED"
        with pytest.raises(errors.AlreadyTraced,
                           match=rf"already traced by pid {tracer.pid} \(python") as info:
            minidumpkit.dump(t.pid, tmp_path / "t.dmp")
        assert isinstance(info.value, errors.AccessDenied)
    finally:
        tracer.communicate("")  # EOF: the tracer exits, the kernel detaches it
    live.assert_released(t.pid)
    assert (tmp_path / "f").exists()
    (tmp_path / "f").unlink()
    no_files(tmp_path)
    live.assert_target_healthy(t)


def test_permission_denied_for_another_users_process(target_bins: dict[str, Path],
                                                     start_target: Any, live: Any,
                                                     tmp_path: Path) -> None:
    """An unprivileged user may not dump root's process: the preflight says AccessDenied
    and explains same uid / CAP_SYS_PTRACE / ptrace_scope; the ptrace path itself (if the
    preflight were skipped) gives AccessDenied too."""
    t = start_target([target_bins["mdk_target"], tmp_path / "f"])
    name, message = in_unprivileged_child(lambda: minidumpkit.Dumper(t.pid))
    assert name == "AccessDenied", message
    assert "CAP_SYS_PTRACE" in message and "ptrace_scope" in message and "uid 0" in message

    def seize() -> None:
        with _ptrace.ProcessStop(t.pid):
            pass

    name, message = in_unprivileged_child(seize)
    assert name == "AccessDenied", message
    assert "CAP_SYS_PTRACE" in message
    live.assert_released(t.pid)
    live.assert_target_healthy(t)


def test_target_killed_mid_dump(target_bins: dict[str, Path], live: Any, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL while every thread is held: the dump fails with ProcessNotFound (or
    completes from what was read), leaves no file, and the parent can reap the target."""
    out = tmp_path / "out"
    out.mkdir()
    t = live.Target([str(target_bins["mdk_target"]), str(tmp_path / "f")])
    try:
        original = linux._procfs.iter_handles

        def kill_then_list(pid: int) -> Any:
            os.kill(pid, signal.SIGKILL)
            return original(pid)

        monkeypatch.setattr(linux._procfs, "iter_handles", kill_then_list)
        try:
            minidumpkit.dump(t.pid, out / "k.dmp")
        except errors.ProcessNotFound:
            no_files(out)
        # reaped by its parent without waiting on us: no tracer holds the zombie
        assert t.proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        t.close()


def test_target_exiting_by_itself_during_dumps(tmp_path: Path) -> None:
    """A target that exits on its own while we dump it over and over: every attempt
    either completes or raises ProcessNotFound; none hangs."""
    code = ("import threading, time\n"
            "for _ in range(4): threading.Thread(target=time.sleep, args=(10,), daemon=True).start()\n"
            "print('READY', flush=True)\ntime.sleep(0.3)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    outcomes = set()
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
        for i in range(500):
            try:
                minidumpkit.dump(proc.pid, tmp_path / f"{i}.dmp")
                outcomes.add("ok")
            except errors.ProcessNotFound:
                outcomes.add("gone")
            except errors.InvalidTargetError:  # caught as a zombie before the parent reaps
                outcomes.add("zombie")
            if proc.poll() is not None or "zombie" in outcomes:
                break
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "ok" in outcomes
    for f in tmp_path.iterdir():
        assert f.suffix == ".dmp"  # only complete dumps, no temporaries


def test_threads_born_and_dying_during_the_dump(target_bins: dict[str, Path], start_target: Any,
                                                live: Any, tmp_path: Path) -> None:
    """A target that creates and ends threads in a tight loop: 20 dumps, each completes
    (every thread in it was stopped and has a context); afterwards nothing is traced or
    stopped."""
    t = start_target([target_bins["mdk_spawner"]])
    for i in range(20):
        path = minidumpkit.dump(t.pid, tmp_path / f"{i}.dmp")
        with minidumpkit.open_minidump(path) as d:
            assert d.threads and all(th.context is not None for th in d.threads)
            assert d.threads[0].thread_id == t.pid
        live.assert_released(t.pid)


def test_keyboard_interrupt_mid_dump(target_bins: dict[str, Path], start_target: Any,
                                     live: Any, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """KeyboardInterrupt raised while the target is held: it propagates, every thread is
    released, the target runs on, and no file (final or temporary) is left."""
    t = start_target([target_bins["mdk_target"], tmp_path / "f"])
    out = tmp_path / "out"
    out.mkdir()

    def interrupt(pid: int) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(linux._procfs, "iter_handles", interrupt)
    with pytest.raises(KeyboardInterrupt):
        minidumpkit.dump(t.pid, out / "ki.dmp")
    live.assert_released(t.pid)
    no_files(out)
    live.assert_target_healthy(t)


def test_keyboard_interrupt_during_detach_still_releases(target_bins: dict[str, Path],
                                                         start_target: Any, live: Any,
                                                         tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """KeyboardInterrupt arriving in the middle of releasing the threads: the release
    finishes first, then the interrupt is re-raised."""
    t = start_target([target_bins["mdk_target"], tmp_path / "f"])
    real = _ptrace._ptrace
    fired = []

    def flaky(request: int, tid: int, addr: int = 0, data: object = 0) -> int:
        if request == libc.PTRACE_DETACH and not fired:
            fired.append(tid)
            raise KeyboardInterrupt
        return real(request, tid, addr, data)

    monkeypatch.setattr(_ptrace, "_ptrace", flaky)
    with pytest.raises(KeyboardInterrupt):
        with _ptrace.ProcessStop(t.pid) as stop:
            assert len(stop.tids) == 6
    assert fired
    live.assert_released(t.pid)
    live.assert_target_healthy(t)


def test_unsupported_type_bit_refused_before_stopping(target_bins: dict[str, Path],
                                                      start_target: Any, live: Any,
                                                      tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A MiniDumpType bit the Linux writer does not implement yet is refused with
    UnsupportedError naming it, before any thread is stopped."""
    t = start_target([target_bins["mdk_target"], tmp_path / "f"])
    out = tmp_path / "out"
    out.mkdir()
    stops = []
    monkeypatch.setattr(_ptrace.ProcessStop, "stop", lambda self: stops.append(self))
    # every valid bit is implemented now: narrow the writer's list to exercise the refusal
    from minidumpkit import writer
    monkeypatch.setattr(writer, "SUPPORTED_TYPES", minidumpkit.DumpType.MINI)
    with pytest.raises(errors.UnsupportedError, match="WithFullMemory"):
        minidumpkit.dump(t.pid, out / "u.dmp", minidumpkit.MiniDumpType.WithFullMemory,
                         snapshot="never")
    assert stops == []
    no_files(out)
    live.assert_released(t.pid)


def test_dump_completes_quickly_enough_not_to_hang(target_bins: dict[str, Path],
                                                   start_target: Any, tmp_path: Path) -> None:
    """Guard against a regression into waiting forever: a plain dump returns (the
    pytest-timeout limit is the failure, not a timing assertion)."""
    t = start_target([target_bins["mdk_target"], tmp_path / "f"])
    start = time.monotonic()
    minidumpkit.dump(t.pid, tmp_path / "q.dmp")
    assert time.monotonic() >= start
