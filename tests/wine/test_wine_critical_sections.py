"""Windows critical sections in the wait-for graph, for real under Wine (docs/locks.md).

tests/wine/win/cs_target.c (mingw-w64) deadlocks two threads ABBA on two
CRITICAL_SECTIONs and parks a third in EnterCriticalSection on a section a sleeping
thread holds (a chain), then prints the sections' addresses and its thread ids. It is
dumped by minidumpkit's Windows backend under the Windows python: FULL (the sections,
globals in .bss, and ntdll's image are captured) and Normal|WithThreadInfo (stacks
only). On Linux, ``wait_graph`` must give the waits, owners, cycle and chain the
program printed, and with the section memory absent "unknown: memory not captured".
The frame that called EnterCriticalSection is checked with binutils' addr2line on the
target's debug info (our unwinder found it through ntdll's .pdata).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import winenv
from wine_session import Scenario, job

import minidumpkit
from minidumpkit.analysis import critical_section, wait_graph
from minidumpkit.flags import DumpType, MiniDumpType

pytestmark = [pytest.mark.timeout(300), pytest.mark.validators]

NORMAL = int(MiniDumpType.Normal | MiniDumpType.WithThreadInfo)
# Wine's PE builds of its DLLs: the images whose TimeDateStamp and SizeOfImage the
# running ntdll.dll has (a Normal dump does not hold ntdll's image)
WINE_DLLS = Path("/usr/lib/x86_64-linux-gnu/wine/x86_64-windows")
ADDR2LINE = "x86_64-w64-mingw32-addr2line"


@pytest.fixture(scope="module")
def cs_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wine-cs") / "cs_target.exe"
    subprocess.run([winenv.MINGW_GCC, "-O1", "-g", "-Wall", "-municode",
                    str(winenv.WIN_DIR / "cs_target.c"), "-o", str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def cs(wine: winenv.WineEnv, cs_exe: Path, scenario_factory: Any,
       tmp_path_factory: pytest.TempPathFactory) -> Any:
    work = tmp_path_factory.mktemp("wine-cs-target")
    proc, state = wine.start_target(cs_exe, ready=work / "cs.ready")
    try:
        def jobs(work: Path) -> list[dict[str, Any]]:
            return [job(work, "identity", "identity"),
                    job(work, "full", "dump", "full.dmp", pid=state["pid"],
                        type=int(DumpType.FULL)),
                    job(work, "normal", "dump", "normal.dmp", pid=state["pid"], type=NORMAL)]
        scenario: Scenario = scenario_factory("cs", jobs)
        assert proc.poll() is None, "cs_target.exe died while it was dumped"
    finally:
        proc.kill()
        proc.wait()
    return scenario, state, cs_exe


def caller_function(exe: Path, frame: str) -> str:
    """addr2line's function for the call before ``cs_target.exe+0x...`` (a return address)."""
    module, offset = frame.split("+")
    assert module == "cs_target.exe", frame
    address = 0x140000000 + int(offset, 16) - 1  # the image base: checked in the test
    done = subprocess.run([ADDR2LINE, "-f", "-e", str(exe), f"{address:#x}"],
                          capture_output=True, text=True, check=True)
    return done.stdout.splitlines()[0]


def test_full_dump_tells_the_abba_cycle_and_the_chain(cs: Any, wine: winenv.WineEnv) -> None:
    scenario, state, exe = cs
    identity = scenario.ok("identity")
    if wine.flavor == "wine":
        assert identity["version"].startswith("6.1.")  # Wine's own dbghelp wrote the dumps
    scenario.ok("full")
    with minidumpkit.open_minidump(scenario.path("full")) as dump:
        assert next(m for m in dump.modules if m.basename == "cs_target.exe").base == 0x140000000
        graph = wait_graph(dump)
        expected = {"ab": ("cs_b", "ba"), "ba": ("cs_a", "ab"), "chained": ("cs_c", "holder")}
        for role, (section, owner) in expected.items():
            wait = graph.waits[state[role]]
            assert (wait.kind, wait.object_address, wait.owner_tid, wait.hold_count) == \
                ("critical_section", state[section], state[owner], 1), wait
            assert caller_function(exe, wait.frame) == role
        for role in ("main", "holder"):
            assert graph.waits[state[role]].kind != "critical_section"
        assert graph.edges() == {state["ab"]: state["ba"], state["ba"]: state["ab"],
                                 state["chained"]: state["holder"]}
        [deadlock] = graph.deadlocks
        assert set(deadlock.threads) == {state["ab"], state["ba"]}
        assert {(lk.waiter, lk.holder, lk.address, lk.kind) for lk in deadlock.locks} == {
            (state["ab"], state["ba"], state["cs_b"], "critical_section"),
            (state["ba"], state["ab"], state["cs_a"], "critical_section")}
        assert graph.verdict()[0] == "DEADLOCK: 2 threads"
        assert [c.threads for c in graph.chains] == [(state["chained"], state["holder"])]
        # the CLI leads with the same verdict
        info = subprocess.run([sys.executable, "-m", "minidumpkit", "info",
                               str(scenario.path("full"))], capture_output=True, text=True,
                              check=True).stdout.splitlines()
        assert info[:3] == str(deadlock).splitlines()
        # the held sections read directly: their owners as the program printed them
        for section, owner in (("cs_a", "ab"), ("cs_b", "ba"), ("cs_c", "holder")):
            read = critical_section(dump, state[section])
            assert (read.owner_tid, read.recursion_count) == (state[owner], 1), read


def test_section_memory_absent_is_unknown(cs: Any) -> None:
    scenario, state, _exe = cs
    scenario.ok("normal")
    with minidumpkit.open_minidump(scenario.path("normal")) as dump:
        for section in ("cs_a", "cs_b", "cs_c"):
            assert critical_section(dump, state[section]).reason == \
                "memory not captured"
        # no ntdll image in a Normal dump: nothing is told, and the reason says so
        graph = wait_graph(dump)
        assert not graph.edges() and not graph.deadlocks
        for wait in graph.waits.values():
            assert "ntdll.dll's image (its unwind tables) is not in the dump" in wait.unknown
        # with Wine's ntdll.dll as the image: the waits are found, their sections are not
        graph = wait_graph(dump, symbol_paths=[WINE_DLLS])
        assert not graph.edges() and not graph.deadlocks
        for role in ("ab", "ba", "chained"):
            wait = graph.waits[state[role]]
            assert wait.kind == "unknown" and wait.unknown.startswith("memory not captured"), wait
            assert wait.call == "critical section (RtlpWaitForCriticalSection)"
