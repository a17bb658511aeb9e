"""Live tests against the real dbghelp.dll and kernel32.dll (Windows only).

These have NEVER been run: they were written on Linux, where they are skipped.
They are what .github/workflows/windows.yml runs on a fork's windows-latest
runners. Each dumps a child Python process (killed and reaped afterwards) and
reads the dump back with minidumpkit's reader.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import minidumpkit as mdk
from minidumpkit.callbacks import CallbackModule, CallbackThread, DumpCallbacks
from minidumpkit.flags import DumpType, ModuleWriteFlags, ThreadWriteFlags

pytestmark = pytest.mark.skipif(sys.platform != "win32", reason="needs Windows dbghelp")

CHILD = r"""
import sys, threading, time
for _ in range(3):
    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
print("ready", flush=True)
time.sleep(600)
"""


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    """A Python child with 4 threads, ready when it says so; killed and reaped afterwards."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def module_names(path: Path) -> list[str]:
    dump = mdk.open_minidump(path)
    return [m.name.replace("\\", "/").rsplit("/", 1)[-1].lower() for m in dump.modules]


def test_dump_a_child(child: subprocess.Popen[bytes], tmp_path: Path) -> None:
    """MINI and FULL dumps of a child: readable, its threads and ntdll/python present."""
    # not kind.name: a combined flag's name holds "|", which Windows file names refuse
    for label, kind in (("mini", DumpType.MINI), ("full", DumpType.FULL)):
        path = mdk.dump(child.pid, tmp_path / f"{label}.dmp", kind)
        dump = mdk.open_minidump(path)
        assert len(dump.threads) >= 4
        names = module_names(path)
        assert "ntdll.dll" in names
        assert Path(sys.executable).name.lower() in names


def test_context_placement_is_detected(child: subprocess.Popen[bytes], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Records which placement Microsoft's dbghelp uses (expected: MSVC, context at 32), and
    that every thread callback carries a register set whose sp lies in its stack range."""
    from minidumpkit._ffi import dbghelp

    seen: list[str] = []
    real = dbghelp.thread_callback_layout

    def spy(raw: Any) -> Any:
        layout = real(raw)
        seen.append("none" if layout is None else layout.name)
        return layout

    monkeypatch.setattr(dbghelp, "thread_callback_layout", spy)
    threads: list[CallbackThread] = []

    class Watch(DumpCallbacks):
        def thread(self, thread: CallbackThread, flags: ThreadWriteFlags) -> ThreadWriteFlags:
            threads.append(thread)
            return flags

    mdk.dump(child.pid, tmp_path / "p.dmp", callbacks=Watch())
    print("placements seen:", seen)
    assert seen and set(seen) == {"msvc"}
    for t in threads:
        assert t.context is not None and t.pc
        assert t.stack_base <= (t.sp or 0) <= t.stack_end


def test_callbacks_filter_threads_and_modules(child: subprocess.Popen[bytes],
                                              tmp_path: Path) -> None:
    """include_thread keeps one thread; module() without Module drops python's exe."""
    exe = Path(sys.executable).name.lower()
    kept: list[int] = []

    class Filter(DumpCallbacks):
        def include_thread(self, thread: CallbackThread) -> bool:
            if not kept:
                kept.append(thread.tid)
            return thread.tid in kept

        def module(self, module: CallbackModule, flags: ModuleWriteFlags) -> ModuleWriteFlags:
            return ModuleWriteFlags(0) if module.name.lower() == exe else flags

    path = mdk.dump(child.pid, tmp_path / "f.dmp", callbacks=Filter())
    dump = mdk.open_minidump(path)
    assert [t.thread_id for t in dump.threads] == kept
    names = module_names(path)
    assert exe not in names and "ntdll.dll" in names


def test_cancel_and_exception_leave_no_file(child: subprocess.Popen[bytes], tmp_path: Path) -> None:
    """cancel() True → DumpCancelled; an exception in a callback → that exception; no file."""
    class Cancel(DumpCallbacks):
        def cancel(self) -> bool:
            return True

    class Boom(DumpCallbacks):
        def module(self, module: CallbackModule, flags: ModuleWriteFlags) -> ModuleWriteFlags:
            raise LookupError("from module()")

    with pytest.raises(mdk.DumpCancelled):
        mdk.dump(child.pid, tmp_path / "c.dmp", callbacks=Cancel())
    with pytest.raises(LookupError, match="from module"):
        mdk.dump(child.pid, tmp_path / "e.dmp", callbacks=Boom())
    assert list(tmp_path.iterdir()) == []
    assert child.poll() is None  # the target is still running


def test_snapshot_dump(child: subprocess.Popen[bytes], tmp_path: Path) -> None:
    """PssCaptureSnapshot → write from the HPSS → PssFreeSnapshot; the dump is readable."""
    from minidumpkit._backends._win_snapshot import WindowsSnapshot

    class Count(DumpCallbacks):
        n = 0

        def thread(self, thread: CallbackThread, flags: ThreadWriteFlags) -> ThreadWriteFlags:
            self.n += 1
            return flags

    count = Count()
    with WindowsSnapshot(child.pid) as snap:
        path = snap.write(tmp_path / "s.dmp", DumpType.FULL, callbacks=count)
    assert snap.closed
    assert len(mdk.open_minidump(path).threads) >= 4 and count.n >= 4


def test_self_dump_through_helper(tmp_path: Path) -> None:
    """Dumping our own pid goes through `python -m minidumpkit dump` and yields a dump."""
    path = mdk.dump(os.getpid(), tmp_path / "self.dmp")
    assert len(mdk.open_minidump(path).threads) >= 1


def test_errors(tmp_path: Path) -> None:
    """No such pid → ProcessNotFound; an exited child → ProcessNotFound; no file either time."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with pytest.raises(mdk.ProcessNotFound):
        mdk.dump(proc.pid, tmp_path / "gone.dmp")
    with pytest.raises(mdk.ProcessNotFound):
        mdk.dump(0x7FFFFFF0, tmp_path / "none.dmp")
    assert list(tmp_path.iterdir()) == []
