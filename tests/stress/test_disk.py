"""A dump that cannot be stored: ENOSPC from a 1 MiB tmpfs the test mounts, EIO from a
FUSE file system the test builds and mounts (tests/stress/fuse/failfs.c, libfuse3)
whose writes or fsyncs fail. Each gives one OSError with that errno naming the user's
path, leaves no file (partial or hidden) in the directory, and the target runs on,
untraced, its self-checks intact. Needs root (mount) and /dev/fuse; libfuse3-dev is
installed by .ci/install-validators.sh.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import minidumpkit as mdk
from liveproc import children, held_threads

pytestmark = [pytest.mark.live,
              pytest.mark.skipif(sys.platform != "linux", reason="Linux backend")]

HERE = Path(__file__).resolve().parent
WAYS = {"FULL via snapshot": dict(type=mdk.DumpType.FULL),
        "FULL stop-and-dump": dict(type=mdk.DumpType.FULL, snapshot="never"),
        "MINI": dict(type=mdk.DumpType.MINI)}


def _mounted(path: Path) -> bool:
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == str(path) for line in f)


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("the disk tests mount file systems: run them as root")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mnt)],
                   check=True, timeout=30)
    try:
        yield mnt
    finally:
        _umount(mnt)


@pytest.fixture(scope="module")
def failfs_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/stress/fuse/failfs.c built against libfuse3."""
    try:
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "fuse3"], check=True,
                               capture_output=True, text=True, timeout=30).stdout.split()
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"libfuse3 is needed for the EIO tests ({exc}): apt-get install "
                    "libfuse3-dev fuse3 (.ci/install-validators.sh does)")
    exe = tmp_path_factory.mktemp("failfs") / "failfs"
    subprocess.run(["cc", "-Wall", "-O1", "-o", str(exe), str(HERE / "fuse" / "failfs.c"),
                    *flags], check=True, timeout=120)
    return exe


@pytest.fixture(params=["write", "fsync"])
def failing_fuse(request: pytest.FixtureRequest, failfs_bin: Path, tmp_path: Path) -> Iterator[Path]:
    if not os.path.exists("/dev/fuse"):
        pytest.fail("/dev/fuse is missing: the EIO tests need FUSE")
    mnt = tmp_path / f"fuse-{request.param}"
    mnt.mkdir()
    proc = subprocess.Popen([str(failfs_bin), str(mnt), request.param],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not _mounted(mnt):
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.poll() is not None else "timeout"
                pytest.fail(f"failfs did not mount at {mnt}: {err}")
            time.sleep(0.01)
        yield mnt
    finally:
        _umount(mnt)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


def _refused(t: Any, folder: Path, expected_errno: int, how: str) -> str:
    path = folder / "app.dmp"
    with pytest.raises(OSError) as info:
        mdk.dump(t.pid, path, **WAYS[how])  # type: ignore[arg-type]
    exc = info.value
    assert exc.errno == expected_errno, f"{how}: {exc!r}"
    assert exc.filename == str(path), f"{how}: the error does not name the path: {exc!r}"
    assert not isinstance(exc, mdk.MinidumpError), exc  # the storage's error, not the target's
    message = str(exc)
    assert "\n" not in message and str(path) in message
    assert os.listdir(folder) == [], f"{how}: left {os.listdir(folder)}"
    assert held_threads(t.pid) == [] and children(t.pid) == []
    return message


def test_enospc_on_a_full_tmpfs(small_tmpfs: Path, target_bins: dict[str, Path],
                                start_target: Any, tmp_path: Path, live: Any,
                                figures: dict[str, Any]) -> None:
    t = start_target([target_bins["mdk_target"], tmp_path / "known-file"])
    messages = {}
    for how in ("FULL via snapshot", "FULL stop-and-dump"):  # 1.6 MB: does not fit
        messages[how] = _refused(t, small_tmpfs, errno.ENOSPC, how)
    # a MINI (~60 KB) fits: the file system works, it is only full for the big ones
    path = mdk.dump(t.pid, small_tmpfs / "mini.dmp")
    with mdk.open_minidump(path) as d:
        assert d.process_id == t.pid
    path.unlink()
    live.assert_target_healthy(t)
    figures.setdefault("disk", {})["ENOSPC (1 MiB tmpfs)"] = messages


def test_eio_from_fuse(failing_fuse: Path, target_bins: dict[str, Path], start_target: Any,
                       tmp_path: Path, live: Any, figures: dict[str, Any]) -> None:
    t = start_target([target_bins["mdk_target"], tmp_path / "known-file"])
    messages = {how: _refused(t, failing_fuse, errno.EIO, how) for how in WAYS}
    live.assert_target_healthy(t)
    figures.setdefault("disk", {})[f"EIO (FUSE, {failing_fuse.name})"] = messages
