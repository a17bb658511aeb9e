"""The Windows-only test files, run by pytest in the Windows python under Wine.

On Linux, tests/test_windows_live.py skips every test ("needs Windows dbghelp") and
tests/test_windows_errors.py skips its comparison with Windows CPython's OSError. Here
the Windows python (pytest installed into it by .ci/install-wine.sh) runs both files
once, against this prefix's dbghelp: Wine's own, or Microsoft's with MDK_WINE_DBGHELP.
Each Windows test becomes one test here, read from the Windows run's JUnit report:
it passes when the Windows test passed, and is a strict xfail when the Windows test
was the strict xfail listed below (Wine's known limits, with the reason the
Windows-side test gives). Anything else fails with the Windows report: a failure, a
skip, a different reason, a test missing from the run or not listed here.

The Windows pytest runs with WMI disabled (``wbemprox=d``): its JUnit report asks
``platform.node()``, which CPython 3.12+ answers with a WMI query on which Wine 8
aborts the interpreter (test_wine_load.py covers dbghelp.load() with WMI on).
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from winenv import REPO, WIN_DIR, WineEnv, from_environment, winpath

pytestmark = pytest.mark.timeout(1200)

WINDOWS_TEST_FILES = ("tests/test_windows_live.py", "tests/test_windows_errors.py")

#: Every test the Windows run must report: "<module>::<JUnit name>".
WINDOWS_TESTS = (
    *(f"test_windows_live::{name}" for name in (
        "test_dump_a_child",
        "test_context_placement_is_detected",
        "test_memory_added_and_removed",
        "test_full_dump_leaves_a_region_out",
        "test_callbacks_filter_threads_and_modules",
        "test_cancel_leaves_no_file",
        "test_exception_leaves_no_file",
        "test_snapshot_dump",
        "test_self_dump_through_helper",
        "test_errors",
    )),
    *(f"test_windows_errors::{name}" for name in (
        "test_hresult_helpers",
        "test_success_raises_nothing_and_reads_no_last_error",
        "test_access_denied_in_every_spelling[2147942405_0]",
        "test_access_denied_in_every_spelling[2147942405_1]",
        "test_access_denied_in_every_spelling[5]",
        "test_access_denied_in_every_spelling[-2147024891]",
        "test_cancel_becomes_dump_cancelled[1223]",
        "test_cancel_becomes_dump_cancelled[2147943623]",
        "test_invalid_handle_is_a_process_error_with_ebadf",
        "test_invalid_parameter_means_no_such_process_only_where_the_call_says_so",
        "test_unknown_hresult_keeps_it",
        "test_partial_copy_and_noaccess_say_what_happened",
        "test_pss_not_supported_is_unsupported[50]",
        "test_pss_not_supported_is_unsupported[120]",
        "test_pss_codes_map_like_last_errors",
        "test_walk_end_is_allowed_only_when_asked",
        "test_filename_appears_in_the_message",
        "test_errno_table_equals_cpython_errmap",
        "test_errno_table_equals_windows_cpython",
        "test_last_error_reads_cffis_saved_last_error",
        *(f"test_absent_pss_symbol_raises_unsupported_naming_it[{name}]" for name in (
            "PssFreeSnapshot", "PssQuerySnapshot", "PssWalkSnapshot",
            "PssDuplicateSnapshot", "PssWalkMarkerCreate")),
        "test_present_pss_symbol_is_returned",
    )),
)

NO_PSS = "kernel32 exports no Pss* functions here (Wine 8, Windows < 8.1)"
NO_INCLUDE_THREAD = "Wine's dbghelp sends no IncludeThread, Memory or Cancel callbacks"
NO_VM_REGION = "Wine's dbghelp sends no IncludeVmRegion callbacks"
#: The strict xfails the Windows-side tests mark, by dbghelp, with their reasons.
XFAILS = {
    "microsoft": {"test_windows_live::test_snapshot_dump": NO_PSS},
    "wine": {
        "test_windows_live::test_snapshot_dump": NO_PSS,
        "test_windows_live::test_memory_added_and_removed": NO_INCLUDE_THREAD,
        "test_windows_live::test_full_dump_leaves_a_region_out": NO_VM_REGION,
        "test_windows_live::test_callbacks_filter_threads_and_modules": NO_INCLUDE_THREAD,
        "test_windows_live::test_cancel_leaves_no_file": NO_INCLUDE_THREAD,
    },
}
FLAVOR = from_environment().flavor
EXPECTED_XFAILS = XFAILS[FLAVOR]


class WindowsXfail(Exception):
    """The Windows run reported the test as the strict xfail expected of it (the only
    exception this file's xfail marks accept)."""


@dataclasses.dataclass(frozen=True)
class WindowsResult:
    outcome: str  # passed, failed, xfailed or skipped
    detail: str  # the xfail or skip reason, or the failure's report


@dataclasses.dataclass(frozen=True)
class WindowsRun:
    status: int  # the Windows pytest's exit status
    results: dict[str, WindowsResult]
    console: str  # its console report (run_pytest.py's output file)


def read_junit(path: Path) -> dict[str, WindowsResult]:
    """The outcome of every test case in a pytest JUnit report, by "<module>::<name>"."""
    results = {}
    for case in ET.parse(path).iter("testcase"):
        module = case.get("classname", "").removeprefix("tests.")
        problems = [e for e in case if e.tag in ("failure", "error")]
        skipped = case.find("skipped")
        if problems:
            result = WindowsResult("failed", "\n".join(
                f"{e.tag}: {e.get('message', '')}\n{e.text or ''}" for e in problems))
        elif skipped is not None:
            xfail = skipped.get("type") == "pytest.xfail"
            result = WindowsResult("xfailed" if xfail else "skipped",
                                   skipped.get("message", ""))
        else:
            result = WindowsResult("passed", "")
        results[f"{module}::{case.get('name')}"] = result
    return results


@pytest.fixture(scope="module")
def windows_run(wine: WineEnv, tmp_path_factory: pytest.TempPathFactory) -> WindowsRun:
    """pytest over WINDOWS_TEST_FILES in the Windows python, from this tree's root (its
    pyproject.toml and tests/conftest.py); its temporary files under a Linux directory."""
    work = tmp_path_factory.mktemp("wine-pytest")
    junit, output = work / "junit.xml", work / "console.txt"
    status = wine.run_python(
        winpath(WIN_DIR / "run_pytest.py"), winpath(output),
        "-q", "-p", "no:cacheprovider", f"--basetemp={winpath(work / 'basetemp')}",
        f"--junitxml={winpath(junit)}", *(winpath(REPO / name) for name in WINDOWS_TEST_FILES),
        cwd=REPO, wmi=False, extra_env={"PYTHONDONTWRITEBYTECODE": "1"}, timeout=1100)
    console = output.read_text("utf-8", errors="replace") if output.exists() else ""
    if not junit.is_file() or junit.stat().st_size == 0:
        raise RuntimeError(f"the Windows pytest wrote no JUnit report (exit status {status}); "
                           f"its console:\n{console[-6000:]}")
    return WindowsRun(status, read_junit(junit), console)


def expect(test_id: str) -> object:
    reason = EXPECTED_XFAILS.get(test_id)
    marks = [] if reason is None else [
        pytest.mark.xfail(strict=True, raises=WindowsXfail, reason=reason)]
    return pytest.param(test_id, marks=marks, id=test_id)


@pytest.mark.parametrize("test_id", [expect(test_id) for test_id in WINDOWS_TESTS])
def test_under_wine(windows_run: WindowsRun, test_id: str) -> None:
    """The Windows test passed, or was the strict xfail listed for this dbghelp with the
    same reason."""
    result = windows_run.results.get(test_id)
    if result is None:
        pytest.fail(f"the Windows run did not report {test_id}; it reported "
                    f"{sorted(windows_run.results)}", pytrace=False)
    reason = EXPECTED_XFAILS.get(test_id)
    if result.outcome == "passed":
        return  # where an xfail is listed, this strict xfail now fails as XPASS
    if result.outcome == "xfailed" and reason is not None:
        assert result.detail == reason, f"{test_id} xfailed for another reason"
        raise WindowsXfail(f"{test_id}: {reason}")
    pytest.fail(f"{test_id} {result.outcome} in the Windows python under Wine ({FLAVOR}'s "
                f"dbghelp): {result.detail}", pytrace=False)


def test_the_windows_run_is_the_listed_tests(windows_run: WindowsRun) -> None:
    """The Windows run reported exactly WINDOWS_TESTS (a test added to the Windows files
    is listed here) and pytest exited 0 there (no error outside the tests)."""
    reported = set(windows_run.results)
    assert sorted(reported - set(WINDOWS_TESTS)) == [], "Windows tests not listed here"
    assert sorted(set(WINDOWS_TESTS) - reported) == [], "listed tests the Windows run lacks"
    assert windows_run.status == 0, windows_run.console[-6000:]
