"""The objects the Wine suite's fixtures hand to tests (conftest.py makes them)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import winenv


class Targets:
    """The two running Windows targets: ``py`` (python, 4 threads) and ``c`` (mdktarget.exe).

    ``state[name]`` is what each wrote when ready (Windows pid, thread ids, ...).
    """

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.state: dict[str, dict[str, Any]] = {}

    def pid(self, name: str) -> int:
        return int(self.state[name]["pid"])

    def alive(self, name: str) -> bool:
        return self.procs[name].poll() is None


class Scenario:
    """One driver run: the jobs sent and the results by job id, with paths on Linux."""

    def __init__(self, env: winenv.WineEnv, work: Path, jobs: list[dict[str, Any]]) -> None:
        self.env, self.work, self.jobs = env, work, {job["id"]: job for job in jobs}
        self.results, self.status = env.run_jobs(jobs, work)

    def __getitem__(self, job_id: str) -> dict[str, Any]:
        result = self.results.get(job_id)
        if result is None:  # not an AssertionError: no xfail may absorb a dead driver
            raise RuntimeError(f"the Windows driver left no result for job {job_id!r} "
                                 f"(driver exit status {self.status}; results so far: "
                                 f"{sorted(self.results)})")
        return dict(result)

    def path(self, job_id: str) -> Path:
        """The Linux path of the job's output file."""
        return self.work / str(self.jobs[job_id]["file"])

    def ok(self, job_id: str) -> dict[str, Any]:
        """The result of a job that must have succeeded (else: its error, in full).

        A job's failure is an AssertionError, the only exception the suite's strict
        xfails accept: a broken environment or a dead driver still fails an
        xfail-marked test."""
        result = self[job_id]
        if not result["ok"]:
            error = result["error"]
            raise AssertionError(f"job {job_id} raised {error['type']}: {error['message']}\n"
                                 + "".join(error["traceback"]))
        return result


def job(work: Path, job_id: str, kind: str, file: str | None = None,
        **fields: Any) -> dict[str, Any]:
    """A driver job; ``file`` is a name in ``work`` (sent as a Windows path)."""
    spec: dict[str, Any] = {"id": job_id, "kind": kind, **fields}
    if file is not None:
        spec["file"] = file
        spec["path"] = winenv.winpath(work / file)
    return spec
