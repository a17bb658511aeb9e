"""The wait-for graph: deadlocks, chains and every thread's wait, from MINI dumps of real
targets, compared with what each target recorded about itself.

tests/targets/deadlock_target.c sets up one situation per run (an ABBA deadlock, a
three-thread cycle, a self-deadlock, a chain ending in read() on a pipe, condvar,
semaphore, pthread_join, rwlock and recursive / error-checking / robust / PI mutex
waits) and writes, as it happens, which thread holds which lock and what each thread is
about to wait for. Each target is dumped twice in a row and once more after gdb attached
and detached (which moves some threads through the kernel's restart path); every dump
must give the same verdict, equal to the record.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import CFLAGS

import minidumpkit as mdk
from minidumpkit._backends import linux
from minidumpkit._selection import DumpPolicy
from minidumpkit.analysis import wait_graph
from minidumpkit.analysis.deadlocks import WaitGraph

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="Linux only")

# the cycles each scenario was built with (roles), and the function each role waits in
CYCLES = {"abba": [{"t1", "t2"}], "cycle3": [{"t1", "t2", "t3"}], "self": [{"t1"}]}
SCENARIOS = ("abba", "cycle3", "self", "chain", "cond", "sem", "join", "rwlock", "mutexes")
WAITS_IN = {"mutex": "lock_mutex", "robust_mutex": "lock_mutex", "pi_mutex": "lock_mutex",
            "condvar": "cond_waiter", "semaphore": "sem_waiter", "read": None,
            "join": "main", "rwlock": None}


class Record:
    """What the target wrote: roles, holds, waits."""

    def __init__(self, path: Path) -> None:
        self.roles: dict[str, int] = {}
        self.holds: dict[int, tuple[int, str, int]] = {}  # address: (tid, kind, times)
        self.waits: dict[int, tuple[str, int]] = {}  # tid: (kind, address / fd / tid)
        for line in path.read_text().splitlines():
            word, *rest = line.split()
            if word == "role":
                self.roles[rest[0]] = int(rest[1])
            elif word == "hold":
                self.holds[int(rest[2], 16)] = (int(rest[0]), rest[1], int(rest[3]))
            elif word == "wait":
                what = rest[2]
                self.waits[int(rest[0])] = (rest[1], int(what, 16) if what.startswith("0x")
                                            else int(what))

    def role_of(self, tid: int) -> str:
        return next(r for r, t in self.roles.items() if t == tid)


def _start(scenario: str, target_bins: dict[str, Path], start_target: Callable[..., Any],
           tmp_path: Path, binary: Path | None = None) -> tuple[Any, Record]:
    record = tmp_path / f"{scenario}-{len(list(tmp_path.glob('*.record')))}.record"
    target = start_target([str(binary or target_bins["deadlock_target"]), scenario,
                           str(record)])
    target.wait_parked()  # every thread asleep in its last call
    return target, Record(record)


def _gdb_attach_detach(pid: int) -> None:
    gdb = shutil.which("gdb")
    if gdb is None:
        pytest.fail("gdb is needed to attach to and detach from the target")
    subprocess.run([gdb, "-p", str(pid), "-batch", "-nx", "-ex", "detach"],
                   capture_output=True, timeout=120, check=True)


def _check(graph: WaitGraph, record: Record, scenario: str, pid: int) -> None:
    """Every wait, owner, deadlock and chain of ``graph`` equals the target's record."""
    assert not graph.unknown, [w.describe() for w in graph.unknown]
    assert not graph.problem
    assert set(graph.waits) == set(record.roles.values())
    for tid, (kind, what) in record.waits.items():
        wait = graph.waits[tid]
        role = record.role_of(tid)
        if kind == "read":
            assert (wait.kind, wait.syscall, wait.fd) == ("io", "read", what), role
            assert wait.fd_target == os.readlink(f"/proc/{pid}/fd/{what}"), role
            assert wait.owner_tid is None
            continue
        if kind == "join":
            assert (wait.kind, wait.owner_tid) == ("join", what), role
            continue
        assert wait.kind == kind, role
        if kind == "condvar":  # waits on __g_signals, +40 or +44 (analysis.md B.6)
            assert wait.address in (what + 40, what + 44) and wait.owner_tid is None, role
            assert "no owner" in wait.note, role
        elif kind == "semaphore":
            assert wait.address == what and wait.owner_tid is None, role
            assert "no owner" in wait.note, role
        else:
            holder, _kind, times = record.holds[what]
            assert (wait.object_address, wait.owner_tid) == (what, holder), role
            if times > 1:
                assert wait.hold_count == times, role
        expected_frame = WAITS_IN[kind]
        if expected_frame is not None:
            assert wait.frame is not None and wait.frame.startswith(expected_frame + " ("), \
                (role, wait.frame)
    for tid in set(record.roles.values()) - set(record.waits):
        pytest.fail(f"thread {tid} recorded no wait")

    cycles = [{record.role_of(t) for t in d.threads} for d in graph.deadlocks]
    assert sorted(map(sorted, cycles)) == sorted(map(sorted, CYCLES.get(scenario, [])))
    for deadlock in graph.deadlocks:
        for lock in deadlock.locks:
            kind, address = record.waits[lock.waiter]
            holder, held_kind, _ = record.holds[address]
            assert (lock.address, lock.kind, lock.holder) == (address, kind, holder)
        assert len(deadlock.lines) == len(deadlock.threads)
    # every edge in the dump is one the record has, and no other
    expected_edges = {tid: (record.holds[what][0] if kind not in ("join", "read", "condvar",
                                                                  "semaphore") else what)
                      for tid, (kind, what) in record.waits.items()
                      if kind not in ("read", "condvar", "semaphore")}
    assert graph.edges() == expected_edges


def _dump(pid: int, path: Path) -> mdk.Minidump:
    mdk.dump(pid, path, mdk.DumpType.MINI)
    return mdk.open_minidump(path)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_verdict_equals_the_targets_record(
        scenario: str, target_bins: dict[str, Path], start_target: Callable[..., Any],
        live: Any, tmp_path: Path) -> None:
    target, record = _start(scenario, target_bins, start_target, tmp_path)
    graphs = []
    for i, between in enumerate((None, None, _gdb_attach_detach)):
        if between is not None:
            between(target.pid)
            live.assert_released(target.pid)
            target.wait_parked()
        with _dump(target.pid, tmp_path / f"{i}.dmp") as dump:
            live.assert_released(target.pid)
            graph = wait_graph(dump)
            _check(graph, record, scenario, target.pid)
            graphs.append(graph)
    # the same verdict each time
    assert len({str(g) for g in graphs}) == 1, [str(g) for g in graphs]

    first = graphs[0]
    verdict = first.verdict()
    if scenario in CYCLES:
        n = len(CYCLES[scenario][0])
        assert verdict[0] == f"DEADLOCK: {n} thread{'s' if n > 1 else ''}"
        assert len(verdict) == 1 + n
        for line in verdict[1:]:
            assert re.fullmatch(r'  thread \d+ "[^"]*" holds mutex 0x[0-9a-f]+ and waits for '
                                r'mutex 0x[0-9a-f]+ held by thread \d+ "[^"]*" in lock_mutex '
                                r'\(deadlock_target\.c:\d+\)', line), line
    else:
        assert verdict == ["no deadlock"]
    if scenario == "abba":  # main joins t1, which is in the deadlock: a chain into it
        roles = record.roles
        (chain,) = first.chains
        assert chain.threads == (roles["main"], roles["t1"]) and chain.into_deadlock == 0
    if scenario == "chain":  # t3 -> t2 -> main, which waits in read(fd 0 -> pipe:[...])
        roles = record.roles
        (chain,) = first.chains
        assert chain.threads == (roles["t3"], roles["t2"], roles["main"])
        target_of_stdin = os.readlink(f"/proc/{target.pid}/fd/0")
        assert chain.text.endswith(f'thread {roles["main"]} "deadlock_target", which waits in '
                                   f"read(fd 0 -> {target_of_stdin}) in read_stdin "
                                   f"(deadlock_target.c:{_line_of('read(0, buf')})")
    # the JSON view carries the same
    as_json = json.loads(json.dumps(first.to_json()))
    assert [d["threads"] for d in as_json["deadlocks"]] == [list(d.threads)
                                                           for d in first.deadlocks]
    assert repr(first).startswith(f"<WaitGraph {len(record.roles)} threads, "
                                  f"{len(CYCLES.get(scenario, []))} deadlock(s)")


def _line_of(text: str) -> int:
    source = (Path(__file__).parent / "targets" / "deadlock_target.c").read_text()
    return next(i for i, line in enumerate(source.splitlines(), 1) if text in line)


def test_info_leads_with_the_verdict(target_bins: dict[str, Path],
                                     start_target: Callable[..., Any], tmp_path: Path) -> None:
    """``minidumpkit info`` of an ABBA deadlock: DEADLOCK first, a waits: line under each
    thread of the Stacks section, and the JSON fields."""
    target, record = _start("abba", target_bins, start_target, tmp_path)
    path = tmp_path / "abba.dmp"
    mdk.dump(target.pid, path, mdk.DumpType.MINI)
    cli = [sys.executable, "-m", "minidumpkit", "info"]
    text = subprocess.run([*cli, str(path)], capture_output=True, text=True, check=True).stdout
    lines = text.splitlines()
    roles, holds = record.roles, {tid: a for a, (tid, _k, _n) in record.holds.items()}
    t1, t2 = roles["t1"], roles["t2"]
    assert lines[0] == "DEADLOCK: 2 threads"
    line = next(i for i in lines[1:3] if i.startswith(f"  thread {t1} "))
    assert line.startswith(f'  thread {t1} "deadlock_target" holds mutex 0x{holds[t1]:x} and '
                           f'waits for mutex 0x{holds[t2]:x} held by thread {t2} '
                           '"deadlock_target" in lock_mutex (deadlock_target.c:')
    assert lines[3].startswith(f'chain: thread {roles["main"]} "deadlock_target" waits for '
                               f'thread {t1} "deadlock_target" to exit (pthread_join)')
    stacks = lines.index("Stacks:")
    for tid in roles.values():
        header = next(i for i in range(stacks, len(lines))
                      if lines[i].startswith(f'thread {tid} "'))
        assert lines[header + 1].startswith("  waits: "), lines[header:header + 2]
    assert f"  waits: mutex 0x{holds[t2]:x} held by thread {t2}" in text

    data = json.loads(subprocess.run([*cli, "--json", str(path)], capture_output=True,
                                     text=True, check=True).stdout)
    by_tid = {t["thread_id"]: t for t in data["threads"]}
    assert by_tid[t1]["wait"]["kind"] == "mutex"
    assert by_tid[t1]["wait"]["syscall"] == "futex"
    assert by_tid[t1]["wait"]["owner_tid"] == t2
    assert by_tid[t1]["wait"]["address"] == f"0x{holds[t2]:x}"
    assert by_tid[roles["main"]]["wait"]["owner_tid"] == t1
    (deadlock,) = data["deadlocks"]
    assert sorted(deadlock["threads"]) == sorted([t1, t2])
    assert sorted((lk["address"], lk["holder"]) for lk in deadlock["locks"]) \
        == sorted([(f"0x{holds[t1]:x}", t1), (f"0x{holds[t2]:x}", t2)])


def _without_state_stream(path: Path) -> mdk.Minidump:
    """The dump as another writer would have written it: the state stream's directory
    entry made unused."""
    data = bytearray(path.read_bytes())
    with mdk.open_minidump(path) as dump:
        info = dump.stream(mdk.StreamType.MinidumpkitThreadStateStream)
        assert info is not None
        entry = int.from_bytes(data[12:16], "little") + 12 * info.index
    data[entry:entry + 4] = bytes(4)
    return mdk.open_minidump(bytes(data))


def test_foreign_and_bad_dumps_say_unknown(
        target_bins: dict[str, Path], start_target: Callable[..., Any], live: Any,
        tmp_path: Path) -> None:
    """No state stream: the ABBA cycle is still found from the registers and the frames.
    No lock memory: the owners are unknown, with the reason, and no deadlock is claimed.
    A statically linked program (no libc.so.6 to check the layouts against): mutex waits
    are unknown, with the reason."""
    target, record = _start("abba", target_bins, start_target, tmp_path)
    path = tmp_path / "abba.dmp"
    mdk.dump(target.pid, path, mdk.DumpType.MINI)
    with _without_state_stream(path) as foreign:
        assert foreign.thread_states == {}
        graph = wait_graph(foreign)
        assert [{record.role_of(t) for t in d.threads} for d in graph.deadlocks] \
            == [{"t1", "t2"}]

    bare = tmp_path / "bare.dmp"
    with open(bare, "wb") as f:  # Normal, without the lock memory: the mutexes are globals
        linux.write_dump(target.pid, f, mdk.MiniDumpType.Normal,
                         policy=DumpPolicy(max_lock_memory_bytes=0))
    live.assert_released(target.pid)
    with mdk.open_minidump(bare) as dump:
        graph = wait_graph(dump)
        assert graph.deadlocks == []
        unknown = {w.thread_id: w for w in graph.unknown}
        assert set(unknown) == {record.roles["t1"], record.roles["t2"]}
        for wait in unknown.values():
            assert wait.kind == "mutex" and wait.owner_tid is None
            assert "not in the dump" in wait.unknown
        assert graph.verdict() == ["no deadlock proven: 2 thread(s) unknown"]

    static_exe = tmp_path / "deadlock_target_static"
    subprocess.run(["cc", *CFLAGS, "-static", "-o", str(static_exe),
                    str(live.targets_dir / "deadlock_target.c")], check=True)
    static, record = _start("abba", target_bins, start_target, tmp_path, static_exe)
    with _dump(static.pid, tmp_path / "static.dmp") as dump:
        graph = wait_graph(dump)
        assert "no glibc (libc.so.6)" in graph.problem
        assert graph.deadlocks == []
        for role in ("t1", "t2"):
            wait = graph.waits[record.roles[role]]
            assert wait.kind == "mutex" and wait.owner_tid is None
            assert wait.unknown == graph.problem
        assert graph.verdict()[0].startswith("no deadlock found, but no glibc")


# --- Debian programs, idle ---------------------------------------------------------------------

def _debian_programs(tmp: Path) -> dict[str, list[str]]:
    nginx_conf = tmp / "nginx.conf"
    nginx_conf.write_text(
        f"daemon off; master_process off; pid {tmp}/nginx.pid; error_log stderr; "
        f"events {{}} http {{ access_log off; server {{ listen unix:{tmp}/nginx.sock; }} }}\n")
    return {
        # the main thread sleeping, a second one in threading.Event().wait()
        "python3": ["/usr/bin/python3", "-c", "import threading, time\n"
                    "threading.Thread(target=threading.Event().wait).start()\n"
                    "time.sleep(1000)"],
        "node": ["node", "-e", "setInterval(() => {}, 1000)"],
        "redis-server": ["redis-server", "--port", "0", "--save", "",
                         "--unixsocket", f"{tmp}/redis.sock"],
        "nginx": ["nginx", "-c", str(nginx_conf), "-p", str(tmp)],
        "memcached": ["memcached", "-u", "root", "-p", "0", "-U", "0", "-s", f"{tmp}/mc.sock"],
        "sqlite3": ["sqlite3"],
    }


def _idle(pid: int) -> None:
    from conftest import task_states, wait_until

    def asleep() -> bool:
        return all(st == "S" for st, _ in task_states(pid).values())
    wait_until(asleep, f"process {pid} to be idle")
    import time
    time.sleep(0.5)  # past start-up: in its idle calls, not in a transient one
    wait_until(asleep, f"process {pid} to be idle")


def _census(name: str, pid: int, path: Path, found: dict[str, list[str]],
            counts: dict[str, int]) -> None:
    mdk.dump(pid, path, mdk.DumpType.MINI)
    with mdk.open_minidump(path) as dump:
        graph = wait_graph(dump)
    assert graph.deadlocks == [], f"{name}: a deadlock in an idle program: {graph}"
    counts[name] = counts.get(name, 0) + len(graph.waits)
    found.setdefault(name, []).extend(f"{w.label}: {w.describe()}" for w in graph.unknown)
    for wait in graph.waits.values():
        print(f"{name}: {wait.label} waits: {wait.describe()}")


def _postgres(tmp: Path, found: dict[str, list[str]], counts: dict[str, int]) -> None:
    """Debian's PostgreSQL 15: initdb, then the postmaster and each of its processes."""
    import glob
    import pwd

    from conftest import wait_until

    bindir = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        bindir = []
    if not bindir:
        pytest.fail("Debian's postgresql (its binaries and the postgres user) is required")
    import tempfile

    # a directory of its own under /tmp: pytest's are closed to other users
    data = Path(tempfile.mkdtemp(prefix="mdk-pg-"))
    shutil.chown(data, "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_pg, f"{bindir[-1]}/initdb", "-D", str(data / "db"), "-A", "trust"],
                   check=True, capture_output=True, timeout=300)
    proc = subprocess.Popen([*as_pg, f"{bindir[-1]}/postgres", "-D", str(data / "db"), "-k",
                             str(data), "-c", "listen_addresses="],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def started() -> list[int]:
            out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                 text=True).stdout.split()
            if not out:
                return []
            return [int(out[0]), *map(int, subprocess.run(
                ["pgrep", "-P", out[0]], capture_output=True, text=True).stdout.split())]
        wait_until(lambda: len(started()) >= 5, "postgres to start its processes")
        pids = started()
        for pid in pids:
            _idle(pid)
        for pid in pids:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            _census("postgres", pid, tmp / f"pg-{pid}.dmp", found, counts)
            print(f"postgres process {pid} ({comm}) dumped")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(data, ignore_errors=True)


def test_debian_programs_idle_are_told(tmp_path: Path) -> None:
    """python3, node, redis-server, nginx, memcached, sqlite3 and PostgreSQL dumped idle:
    at most 2 % of their threads unknown (each listed with its reason), no deadlock."""
    found: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    for name, argv in _debian_programs(tmp_path).items():
        if shutil.which(argv[0]) is None:
            pytest.fail(f"Debian's {argv[0]} is required (.ci/install-validators.sh)")
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            _idle(proc.pid)
            _census(name, proc.pid, tmp_path / f"{name}.dmp", found, counts)
        finally:
            proc.kill()
            proc.wait()
    _postgres(tmp_path, found, counts)
    total, unknown = sum(counts.values()), sum(len(v) for v in found.values())
    for name in counts:
        print(f"{name}: {counts[name]} threads, {len(found[name])} unknown")
        for line in found[name]:
            print(f"  unknown: {line}")
    print(f"all: {total} threads, {unknown} unknown")
    assert unknown <= 0.02 * total, found


def test_crashpad_dump_says_what_it_can() -> None:
    """A Crashpad dump (no state stream; threads in pause() whose registers do not show
    the call): the crashing thread crashed, the others are unknown with the reason."""
    from oracles import FIXTURES

    path = FIXTURES / "third-party" / "generated-crashpad-linux-x86_64-3threads-segv.dmp"
    with mdk.open_minidump(path) as dump:
        graph = wait_graph(dump)
        crashed = dump.exception
        assert crashed is not None
    wait = graph.waits[crashed.thread_id]
    assert (wait.kind, wait.note) == ("crashed", crashed.reason)
    others = [w for tid, w in graph.waits.items() if tid != crashed.thread_id]
    assert others and all(w.kind == "unknown" for w in others)
    assert all("no thread state stream" in w.unknown for w in others)
    assert graph.verdict() == [f"no deadlock proven: {len(others)} thread(s) unknown"]


@pytest.mark.parametrize("fixture, problem", [
    ("real-world/lldb/linux-x86_64_not_crashed.dmp", "glibc 2.19: the lock layouts used are "
                                                     "those of glibc 2.25 and later"),
    ("real-world/lldb/memory-list-padded.dmp", "no SystemInfo stream"),
    ("third-party/windows-x86_64-breakpad-invalid-parameter.dmp",
     "a Windows NT dump: the lock analysis reads Linux glibc objects (of Windows waits "
     "only critical sections, x64, are told: not SRW locks, condition variables nor waits "
     "on handles)"),
])
def test_other_libc_or_system_is_said(fixture: str, problem: str) -> None:
    """Dumps of other writers whose libc (glibc 2.19 by its file name, libc-2.19.so) or
    system the glibc 2.25+ x86_64 layouts do not fit: the verdict says so, no owner is
    read with them."""
    from oracles import FIXTURES

    with mdk.open_minidump(FIXTURES / fixture) as dump:
        graph = wait_graph(dump)
    assert graph.problem.startswith(problem)
    assert graph.deadlocks == [] and graph.edges() == {}
    assert graph.verdict() == [f"no deadlock found, but {graph.problem}"]


def test_a_stray_file_named_like_ntdll_in_symbol_paths_is_not_an_image(tmp_path: Path) -> None:
    """A short non-PE ``ntdll.dll`` among the symbol paths (a partial download, say) is
    passed over, and the paths may be a generator: wait_graph still answers for every
    thread of a Windows x64 dump (it raised struct.error, found in review)."""
    from oracles import FIXTURES

    (tmp_path / "ntdll.dll").write_bytes(b"MZ" + bytes(8))
    with mdk.open_minidump(FIXTURES / "third-party" / "windows-x86_64-dbghelp-fastfail.dmp") \
            as dump:
        graph = wait_graph(dump, symbol_paths=(p for p in [tmp_path]))
        assert sorted(graph.waits) == sorted(t.thread_id for t in dump.threads)
