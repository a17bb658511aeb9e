"""Self-dump, a Popen child, snapshots, the error paths and the output paths, under Wine.

Run from the Windows driver (tests/wine/win/driver.py); each outcome is judged here,
and each written dump is read by our reader and rust-minidump.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import wine_checks
from oracles import run
from wine_session import Scenario, Targets, job

from minidumpkit.flags import DumpType, MiniDumpType

pytestmark = [pytest.mark.timeout(900), pytest.mark.validators]

NORMAL = int(MiniDumpType.Normal | MiniDumpType.WithThreadInfo)
NO_PSS = pytest.mark.xfail(strict=True, raises=AssertionError,
                           reason="Wine 8 exports none of the Pss* functions "
                           "(PssCaptureSnapshot, ...): no Windows snapshot can run under Wine")


@pytest.fixture(scope="module")
def runs(scenario_factory: Any, targets: Targets) -> Scenario:
    py = targets.pid("py")

    def jobs(work: Path) -> list[dict[str, Any]]:
        (work / "existing-dir.dmp").mkdir()
        return [
            job(work, "self", "dump", "self.dmp", self=True, type=NORMAL),
            job(work, "self-callbacks", "dump", "self-callbacks.dmp", self=True, type=NORMAL,
                callbacks={"name": "record"}),
            job(work, "popen-child", "popen_child", "child.dmp", type=NORMAL),
            job(work, "exited-child", "exited_child", "exited.dmp", type=NORMAL),
            job(work, "no-such-pid", "dump", "none.dmp", pid=0x7FFFFFF0, type=NORMAL),
            job(work, "missing-dir", "dump", "no-such-dir/x.dmp", pid=py, type=NORMAL),
            job(work, "existing-dir", "dump", "existing-dir.dmp", pid=py, type=NORMAL,
                callbacks={"name": "record"}),
            job(work, "readonly", "dump", "readonly.dmp", pid=py, type=NORMAL,
                setup="readonly", callbacks={"name": "record"}),
            job(work, "snapshot", "snapshot", "snapshot.dmp", pid=py, type=int(DumpType.FULL)),
            job(work, "full-always", "dump", "always.dmp", pid=py, type=int(DumpType.FULL),
                snapshot="always"),
        ]
    return scenario_factory("process", jobs)


def test_self_dump_goes_through_the_helper_process(runs: Scenario) -> None:
    """mdk.dump(os.getpid()) works under Wine: `python -m minidumpkit dump` (a helper
    process) writes it; the dump is of the driver (its pid in MiscInfo) and readable by
    rust-minidump."""
    result = runs.ok("self")
    path = runs.path("self")
    summary = wine_checks.summary(path)
    assert summary["pid"] == result["pid"] and summary["threads"]
    rust = json.loads(run("minidump-stackwalk", "--json", path, check=True).stdout)
    assert rust["pid"] == summary["pid"]
    assert [n for n in result["path_state"]["siblings"] if "self" in n] == ["self.dmp"]


def test_self_dump_with_callbacks_raises_unsupported_naming_the_helper(runs: Scenario) -> None:
    """Callbacks cannot follow a self-dump into the helper process: UnsupportedError,
    one line, naming the helper process; no file."""
    result = runs["self-callbacks"]
    assert not result["ok"]
    error = result["error"]
    assert error["type"] == "UnsupportedError"
    assert "helper process" in error["message"] and "\n" not in error["message"]
    assert not result["path_state"]["exists"]


def test_dump_of_a_popen_child(runs: Scenario) -> None:
    """A child the driver started with subprocess.Popen: dumped by Popen.pid (the Windows
    pid), all its threads present, still running afterwards (then killed and reaped)."""
    result = runs.ok("popen-child")
    target = result["target"]
    assert result["child_pid"] == target["pid"] and result["child_running_after"]
    summary = wine_checks.summary(runs.path("popen-child"))
    assert summary["pid"] == target["pid"]
    assert {target["main_tid"], *target["tids"]} <= set(summary["threads"])


@pytest.mark.parametrize("job_id", ["exited-child", "no-such-pid"])
def test_gone_process_is_process_not_found(runs: Scenario, job_id: str) -> None:
    """An exited child (its handle still held by Popen) and an unknown pid raise
    ProcessNotFound (an OSError with errno ESRCH semantics), with no file left."""
    result = runs[job_id]
    assert not result["ok"]
    assert result["error"]["type"] == "ProcessNotFound", result["error"]
    assert "OSError" in result["error"]["mro"]
    assert "\n" not in result["error"]["message"]
    assert not result["path_state"]["exists"]


def one_line_oserror_naming(result: dict[str, Any], user_path: str) -> dict[str, Any]:
    assert not result["ok"], result
    error: dict[str, Any] = result["error"]
    assert "OSError" in error["mro"], error
    assert error["filename"] == user_path, error
    assert "\n" not in error["message"], error["message"]
    return error


def test_missing_directory_names_the_users_path(runs: Scenario) -> None:
    """An output path in a directory that does not exist: a one-line OSError subclass
    (FileNotFoundError) whose filename is the user's path, not a hidden temporary file."""
    error = one_line_oserror_naming(runs["missing-dir"], runs.jobs["missing-dir"]["path"])
    assert "FileNotFoundError" in error["mro"], error["mro"]


def test_existing_directory_is_refused_before_the_dump(runs: Scenario) -> None:
    """An output path that is a directory: refused with a one-line OSError subclass
    naming it before dbghelp is called (no callback ran); the directory is untouched."""
    result = runs["existing-dir"]
    one_line_oserror_naming(result, runs.jobs["existing-dir"]["path"])
    assert result.get("callbacks", {}).get("threads", []) == []
    assert result["path_state"]["is_dir"]


def test_read_only_file_is_refused(runs: Scenario) -> None:
    """An existing read-only file: refused with a one-line OSError subclass naming it,
    before the dump; the file keeps its content."""
    result = runs["readonly"]
    one_line_oserror_naming(result, runs.jobs["readonly"]["path"])
    assert result.get("callbacks", {}).get("threads", []) == []
    assert runs.path("readonly").read_bytes() == b"keep me"


@NO_PSS
def test_snapshot_dump(runs: Scenario) -> None:
    """Dumper.snapshot(VA_CLONE | THREADS | THREAD_CONTEXT) and a FULL dump written from it."""
    result = runs.ok("snapshot")
    assert result["threads"]
    assert wine_checks.summary(runs.path("snapshot"))["threads"]


def test_snapshot_without_pss_is_unsupported_naming_the_function(runs: Scenario) -> None:
    """Where Pss* is missing (Wine 8): Dumper.snapshot raises UnsupportedError naming
    PssCaptureSnapshot, and dump(FULL, snapshot="always") refuses; no file either way."""
    for job_id in ("snapshot", "full-always"):
        result = runs[job_id]
        assert not result["ok"]
        error = result["error"]
        assert "UnsupportedError" in error["mro"] and "SnapshotRefused" in error["mro"], error
        assert "PssCaptureSnapshot" in error["message"], error["message"]
        assert not result["path_state"]["exists"]
