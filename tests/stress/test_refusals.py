"""Refusals as an unprivileged user (uid/gid 65534, a forked child of the test: the
interpreter under /root cannot be exec'd by that user), against a target it does not
own and against a target of its own uid that set PR_SET_DUMPABLE 0 (as root both would
be no-ops). Each gives AccessDenied with a one-line message that says why, and the
target is never touched: still running, untraced, self-check intact. Yama only where
/proc/sys/kernel/yama exists (never changed by the tests)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import minidumpkit as mdk
from liveproc import held_threads, in_unprivileged_child, wait_for

pytestmark = [pytest.mark.live,
              pytest.mark.skipif(sys.platform != "linux", reason="Linux backend")]

NOBODY = 65534
YAMA = Path("/proc/sys/kernel/yama/ptrace_scope")


@pytest.fixture
def public_bin(target_bins: dict[str, Path]) -> Iterator[Path]:
    """churn_target copied where uid 65534 can run it (pytest's tmp dirs are 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="mdk-stress-"))
    try:
        folder.chmod(0o755)
        exe = folder / "churn_target"
        shutil.copy(target_bins["churn_target"], exe)
        exe.chmod(0o755)
        yield exe
    finally:
        shutil.rmtree(folder)


def _as_nobody() -> None:
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)


def _attempts(pid: int, out: Path) -> list[tuple[str, str]]:
    """What the unprivileged user gets from each way in."""
    ways = [lambda: mdk.Dumper(pid),
            lambda: mdk.dump(pid, out),
            lambda: mdk.dump(pid, out, mdk.DumpType.FULL),
            lambda: mdk.dump(pid, out, snapshot="always")]
    return [in_unprivileged_child(way, NOBODY) for way in ways]


def _untouched(t: Any) -> None:
    assert held_threads(t.pid) == []
    before = t.status()
    assert wait_for(lambda: t.status()["ticks"] > before["ticks"], 10)
    assert t.status()["selfcheck_errors"] == 0


def test_another_users_target(public_bin: Path, start_target: Any, tmp_path: Path,
                              figures: dict[str, Any]) -> None:
    t = start_target([public_bin, "plain"])  # root's
    out_dir = Path(tempfile.mkdtemp(prefix="mdk-out-"))
    try:
        out_dir.chmod(0o777)
        results = _attempts(t.pid, out_dir / "x.dmp")
        assert os.listdir(out_dir) == []
    finally:
        shutil.rmtree(out_dir)
    for name, message in results:
        assert name == "AccessDenied", (name, message)
        assert "\n" not in message and f"process {t.pid}" in message and "uid 0" in message
        assert "CAP_SYS_PTRACE" in message
    figures.setdefault("refusals", {})["another user's target"] = [n for n, _ in results]
    _untouched(t)


def test_undumpable_target_of_the_same_user(public_bin: Path, start_target: Any,
                                            figures: dict[str, Any]) -> None:
    """Same uid, but prctl(PR_SET_DUMPABLE, 0): ptrace and /proc/PID/mem are refused to
    all but CAP_SYS_PTRACE, and the message names the cause."""
    t = start_target([public_bin, "nodump"], user=NOBODY, group=NOBODY, extra_groups=[])
    status = Path(f"/proc/{t.pid}/status").read_text()
    assert f"Uid:\t{NOBODY}" in status
    out_dir = Path(tempfile.mkdtemp(prefix="mdk-out-"))
    try:
        out_dir.chmod(0o777)
        results = _attempts(t.pid, out_dir / "x.dmp")
        assert os.listdir(out_dir) == []
    finally:
        shutil.rmtree(out_dir)
    for name, message in results:
        assert name == "AccessDenied", (name, message)
        assert "\n" not in message and f"process {t.pid}" in message
        assert "PR_SET_DUMPABLE" in message, message
    figures.setdefault("refusals", {})["undumpable target, same uid"] = [n for n, _ in results]
    _untouched(t)
    # root (CAP_SYS_PTRACE) may dump it: the refusal above was the dumpable flag's
    path = mdk.dump(t.pid, Path(tempfile.gettempdir()) / f"mdk-undumpable-{t.pid}.dmp")
    try:
        with mdk.open_minidump(path) as d:
            assert d.process_id == t.pid
    finally:
        path.unlink()
    _untouched(t)


@pytest.mark.skipif(not YAMA.exists(), reason="no Yama LSM on this kernel "
                    "(/proc/sys/kernel/yama absent): the ptrace_scope refusal cannot occur")
def test_yama_scope(public_bin: Path, start_target: Any) -> None:  # pragma: no cover
    """Where Yama restricts attaching (scope >= 1), the unprivileged user may not dump
    a same-uid process that is not its descendant; the message names ptrace_scope."""
    scope = int(YAMA.read_text())
    if scope == 0:
        pytest.skip("Yama ptrace_scope is 0 here (classic rules); the tests never change it")
    t = start_target([public_bin, "plain"], user=NOBODY, group=NOBODY, extra_groups=[])
    name, message = in_unprivileged_child(lambda: mdk.Dumper(t.pid), NOBODY)
    assert name == "AccessDenied" and "ptrace_scope" in message, (name, message)
    _untouched(t)
