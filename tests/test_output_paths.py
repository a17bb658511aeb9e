"""Output paths (issue 11): a dump never replaces what is not a regular file.

Every case dumps a real running target (/usr/bin/sleep, started as the same user as
the dumper) into a scratch directory holding real device nodes (made with the device
numbers of /dev/null and /dev/full: the real ones are never touched), FIFOs, sockets,
symbolic links and directories. The dumper runs as root and as an unprivileged user
(a forked child that dropped to uid/gid 65534), traced by strace: a refused path
means no ptrace call at all. After each case the scratch directory is compared entry
by entry (type, inode, device number, link target, content) with what it was.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import minidumpkit
from minidumpkit import _output, cli, errors
from minidumpkit._ffi import libc
from oracles import run as run_validator

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux paths and ptrace")

NOBODY = 65534
STRACE = shutil.which("strace") or "/usr/bin/strace"
SRC = Path(minidumpkit.__file__).resolve().parents[1]


# --- the scratch directory and what is planted in it --------------------------------------

@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory both root and uid 65534 can create files in (mode 0777, no sticky
    bit: a plain rename there could replace anyone's file)."""
    path = Path(tempfile.mkdtemp(prefix="mdk-out-", dir="/tmp"))
    os.chmod(path, 0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def _device(path: Path, like: str) -> None:
    os.mknod(path, stat.S_IFCHR | 0o666, os.stat(like).st_rdev)


def _socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))


def _victim(scratch: Path) -> Path:
    victim = scratch / "victim"
    victim.write_bytes(b"precious data")
    os.chmod(victim, 0o666)
    return victim


# what a path may be; each plants it at ``path`` (inside ``scratch``)
PLANTS: dict[str, Callable[[Path, Path], None]] = {
    "null_device": lambda path, scratch: _device(path, "/dev/null"),
    "full_device": lambda path, scratch: _device(path, "/dev/full"),
    "fifo": lambda path, scratch: os.mkfifo(path, 0o666),
    "socket": lambda path, scratch: _socket(path),
    "symlink_to_file": lambda path, scratch: path.symlink_to(_victim(scratch)),
    "symlink_to_stdout": lambda path, scratch: path.symlink_to("/proc/self/fd/1"),
    "dangling_symlink": lambda path, scratch: path.symlink_to(scratch / "nowhere"),
    "symlink_to_directory": lambda path, scratch: path.symlink_to(scratch),
    "directory": lambda path, scratch: (path.mkdir(), os.chmod(path, 0o777)),
}
# the error each gives: (class, builtin it must also be)
REFUSED = {name: (errors.OutputExistsError, FileExistsError) for name in PLANTS}
REFUSED["directory"] = (errors.PathIsADirectoryError, IsADirectoryError)


def state(directory: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry of ``directory`` (recursively): type, inode, device, link target or
    content. Equal before and after = nothing replaced, nothing left behind."""
    out: dict[str, tuple[Any, ...]] = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            extra: object = None
            if stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                extra = Path(path).read_bytes()
            out[os.path.relpath(path, directory)] = (stat.S_IFMT(st.st_mode), st.st_ino,
                                                     st.st_rdev, st.st_uid, extra)
    return out


# --- running the dumper (as root or uid 65534) under strace ---------------------------------

@contextlib.contextmanager
def sleeper(uid: int | None = None) -> Iterator[int]:
    """A running /usr/bin/sleep (as ``uid`` if given); killed and reaped afterwards."""
    extra: dict[str, Any] = {} if uid is None else {"user": uid, "group": uid,
                                                    "extra_groups": []}
    proc = subprocess.Popen(["/usr/bin/sleep", "600"], **extra)
    try:
        deadline = time.monotonic() + 30
        while Path(f"/proc/{proc.pid}/comm").read_text().strip() != "sleep":
            assert time.monotonic() < deadline, "sleep never started"
            time.sleep(0.005)
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def tracer_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("TracerPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no TracerPid for {pid}")


@pytest.fixture(scope="module")
def warm() -> None:
    """Load everything a dump needs before forking children that cannot read /root
    (where the interpreter lives) once they are uid 65534: one real dump."""
    libc.load()
    import minidumpkit._backends.linux  # noqa: F401
    with sleeper() as pid, tempfile.TemporaryDirectory() as d:
        minidumpkit.dump(pid, os.path.join(d, "warm.dmp"))
        minidumpkit.dump(pid, os.path.join(d, "warm-full.dmp"), minidumpkit.DumpType.FULL)


def run_traced(fn: Callable[[], object], *, uid: int | None, log: Path) -> dict[str, Any]:
    """Run ``fn()`` in a forked child (dropped to ``uid``/``uid`` if given) that strace
    follows (``-f -e trace=ptrace``, attached before ``fn`` starts); return what it
    raised (class, errno, filename, str, whether it is each builtin) and the strace log."""
    go_r, go_w = os.pipe()
    res_r, res_w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.close(go_w)
            os.close(res_r)
            if uid is not None:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
            os.read(go_r, 1)  # strace is attached
            report: dict[str, Any] = {"raised": None}
            try:
                report["returned"] = str(fn())
            except BaseException as exc:
                report = {"raised": type(exc).__name__, "errno": getattr(exc, "errno", None),
                          "filename": getattr(exc, "filename", None), "message": str(exc),
                          "mro": [c.__name__ for c in type(exc).__mro__]}
            os.write(res_w, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(go_r)
    os.close(res_w)
    strace = subprocess.Popen([STRACE, "-f", "-qq", "-e", "trace=ptrace", "-o", str(log),
                               "-p", str(child)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while tracer_of(child) != strace.pid:
            assert strace.poll() is None, strace.stderr.read() if strace.stderr else ""
            assert time.monotonic() < deadline, "strace never attached"
            time.sleep(0.005)
        os.write(go_w, b"g")
        with os.fdopen(res_r, "rb") as f:
            data = f.read()
    finally:
        os.close(go_w)
        os.waitpid(child, 0)
        strace.wait(timeout=60)
    result: dict[str, Any] = json.loads(data)
    result["strace"] = log.read_text()
    return result


def ptrace_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "ptrace(" in line]


def assert_one_line_naming(result: dict[str, Any], path: str) -> None:
    message = result["message"]
    assert "\n" not in message and path in message, message
    assert ".partial" not in message, message
    assert result["filename"] == path


# --- every refused path, as root and as uid 65534: nothing replaced, no ptrace -------------

USERS = {"root": None, "nobody": NOBODY}


def test_the_harness_sees_ptrace(scratch: Path, warm: None, tmp_path: Path) -> None:
    """Control: a dump to a good path, run the same way, does show ptrace calls in the
    strace log (so an empty log below means no ptrace call, not a blind strace)."""
    for user, uid in USERS.items():
        with sleeper(uid) as pid:
            out = scratch / f"good-{user}.dmp"
            result = run_traced(lambda: minidumpkit.dump(pid, out), uid=uid,
                                log=tmp_path / f"{user}.log")
            assert result["raised"] is None, result
            assert ptrace_lines(result["strace"]), result["strace"]
            with minidumpkit.open_minidump(out) as d:
                assert d.process_id == pid
            assert os.stat(out).st_uid == (uid or 0)
            assert tracer_of(pid) == 0


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("kind", PLANTS)
def test_nothing_but_a_regular_file_is_replaced(kind: str, user: str, scratch: Path,
                                                warm: None, tmp_path: Path) -> None:
    uid = USERS[user]
    path = scratch / "out.dmp"
    PLANTS[kind](path, scratch)
    before = state(scratch)
    cls, builtin = REFUSED[kind]
    with sleeper(uid) as pid:
        # dump(MINI) and Dumper.write(FULL), which would go through a VA-clone snapshot
        for overwrite, write in (
                (True, lambda: minidumpkit.dump(pid, str(path))),
                (False, lambda: minidumpkit.Dumper(pid).write(path, minidumpkit.DumpType.FULL,
                                                              overwrite=False))):
            result = run_traced(write, uid=uid, log=tmp_path / f"{overwrite}.log")
            assert result["raised"] == cls.__name__, result
            assert builtin.__name__ in result["mro"] and "MinidumpError" in result["mro"]
            assert_one_line_naming(result, str(path))
            assert ptrace_lines(result["strace"]) == []
            assert tracer_of(pid) == 0
            assert state(scratch) == before


def _missing_parent(scratch: Path) -> str:
    return str(scratch / "no-such-dir" / "x.dmp")


def _parent_is_a_file(scratch: Path) -> str:
    (scratch / "file").write_bytes(b"x")
    return str(scratch / "file" / "x.dmp")


def _existing_file(scratch: Path) -> str:
    (scratch / "old.dmp").write_bytes(b"old dump")
    os.chmod(scratch / "old.dmp", 0o666)
    return str(scratch / "old.dmp")


def _trailing_slash(scratch: Path) -> str:
    return str(scratch / "newdir") + "/"


# (path maker, overwrite, error class, builtin)
PATH_CASES: dict[str, tuple[Callable[[Path], str], bool, type[Exception], type[Exception]]] = {
    "missing_parent": (_missing_parent, True, errors.PathNotFoundError, FileNotFoundError),
    "parent_is_a_file": (_parent_is_a_file, True, errors.PathNotADirectoryError,
                         NotADirectoryError),
    "under_proc": (lambda s: "/proc/self/x.dmp", True, errors.PathError, OSError),
    "proc_fd": (lambda s: "/proc/self/fd/1", True, errors.PathError, OSError),
    "under_sys": (lambda s: "/sys/kernel/x.dmp", True, errors.PathError, OSError),
    "existing_without_overwrite": (_existing_file, False, errors.OutputExistsError,
                                   FileExistsError),
    "trailing_slash": (_trailing_slash, True, errors.PathIsADirectoryError,
                       IsADirectoryError),
}


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("case", PATH_CASES)
def test_bad_paths_are_refused_before_the_target_is_touched(case: str, user: str,
                                                            scratch: Path, warm: None,
                                                            tmp_path: Path) -> None:
    uid = USERS[user]
    make, overwrite, cls, builtin = PATH_CASES[case]
    path = make(scratch)
    before = state(scratch)
    with sleeper(uid) as pid:
        result = run_traced(lambda: minidumpkit.dump(pid, path, overwrite=overwrite),
                            uid=uid, log=tmp_path / "log")
        assert result["raised"] == cls.__name__, result
        assert builtin.__name__ in result["mro"]
        assert_one_line_naming(result, path)
        assert ptrace_lines(result["strace"]) == []
        assert tracer_of(pid) == 0
    assert state(scratch) == before


def test_an_unprivileged_user_follows_the_permissions(scratch: Path, warm: None,
                                                      tmp_path: Path) -> None:
    """uid 65534 may create files in the scratch directory, and a plain rename there
    could replace root's file: it is refused (access(W_OK) says no), as is a file of
    its own that is read-only, and a directory it cannot write; nothing changes."""
    root_file = scratch / "roots.dmp"
    root_file.write_bytes(b"root's")
    os.chmod(root_file, 0o644)
    own_read_only = scratch / "mine.dmp"
    own_read_only.write_bytes(b"mine")
    os.chown(own_read_only, NOBODY, NOBODY)
    os.chmod(own_read_only, 0o444)
    closed = scratch / "closed"
    closed.mkdir(mode=0o755)
    before = state(scratch)
    with sleeper(NOBODY) as pid:
        for path in (root_file, own_read_only, closed / "x.dmp"):
            result = run_traced(lambda: minidumpkit.dump(pid, str(path)), uid=NOBODY,
                                log=tmp_path / "log")
            assert result["raised"] == "PathPermissionError", result
            assert "PermissionError" in result["mro"]
            assert_one_line_naming(result, str(path))
            assert ptrace_lines(result["strace"]) == []
    assert state(scratch) == before


def test_root_replaces_a_regular_file_as_open_would(scratch: Path, warm: None) -> None:
    """Through the API an existing regular file is replaced where access(W_OK) allows
    it (root: even a read-only file, as open(2) would): by a new 0600 file owned by the
    caller, a different inode."""
    old = scratch / "old.dmp"
    old.write_bytes(b"old")
    os.chown(old, NOBODY, NOBODY)
    os.chmod(old, 0o444)
    inode = os.stat(old).st_ino
    with sleeper() as pid:
        assert minidumpkit.dump(pid, old) == old
        st = os.stat(old)
        assert st.st_ino != inode and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
        with minidumpkit.open_minidump(old) as d:
            assert d.process_id == pid
    assert sorted(os.listdir(scratch)) == ["old.dmp"]


@pytest.mark.parametrize("kind", ["null_device", "fifo", "symlink_to_stdout", "directory"])
def test_cli_refusal_makes_no_ptrace_call(kind: str, scratch: Path, tmp_path: Path) -> None:
    """`strace -f -e trace=ptrace python3 -m minidumpkit dump PID -o BAD`: no ptrace
    line at all, exit 1, one line naming the path; the same for an existing file
    without --overwrite."""
    path = scratch / "out.dmp"
    PLANTS[kind](path, scratch)
    existing = scratch / "existing.dmp"
    existing.write_bytes(b"keep me")
    before = state(scratch)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    with sleeper() as pid:
        for target, extra in ((path, ["--overwrite"]), (path, []), (existing, [])):
            log = tmp_path / "strace.log"
            proc = subprocess.run([STRACE, "-f", "-qq", "-e", "trace=ptrace", "-o", str(log),
                                   sys.executable, "-m", "minidumpkit", "dump", str(pid),
                                   "-o", str(target), *extra],
                                  capture_output=True, text=True, timeout=120, env=env)
            assert proc.returncode == 1, proc.stderr
            assert proc.stdout == ""
            lines = proc.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith("minidumpkit: error: ")
            assert str(target) in lines[0] and ".partial" not in lines[0]
            assert ptrace_lines(log.read_text()) == []
            assert tracer_of(pid) == 0
    assert state(scratch) == before


@pytest.mark.parametrize("kind", ["fifo", "null_device", "symlink_to_file", "directory"])
def test_a_snapshot_write_refuses_the_same_paths(kind: str, scratch: Path) -> None:
    path = scratch / "out.dmp"
    PLANTS[kind](path, scratch)
    before = state(scratch)
    cls, builtin = REFUSED[kind]
    with sleeper() as pid:
        with minidumpkit.Dumper(pid).snapshot(minidumpkit.PssCaptureFlags.VA_CLONE
                                              | minidumpkit.PssCaptureFlags.THREADS) as snap:
            with pytest.raises(cls) as info:
                snap.write(path, minidumpkit.DumpType.FULL)
            assert isinstance(info.value, builtin) and info.value.filename == str(path)
            good = snap.write(scratch / "good.dmp", minidumpkit.DumpType.FULL)
        with minidumpkit.open_minidump(good) as d:
            assert d.process_id == pid
        assert tracer_of(pid) == 0
    (scratch / "good.dmp").unlink()
    assert state(scratch) == before


# --- races: something planted between the check and the publish ------------------------------

@pytest.fixture(params=["unnamed", "named", "named-link"])
def storage(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How the file is made and published: O_TMPFILE + linkat; a named temporary file +
    renameat2(RENAME_NOREPLACE); a named temporary file + link/unlink (where renameat2
    is missing)."""
    if request.param != "unnamed":
        monkeypatch.setattr(_output, "_unnamed_file", lambda directory, dir_fd: None)
    if request.param == "named-link":
        monkeypatch.setattr(_output, "_renameat2_noreplace", lambda *args: False)
    return str(request.param)


def before_publish(monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]) -> list[int]:
    """Run ``action`` inside the output module's publish step, after the whole dump was
    written and before it is given its name; returns a list that counts the calls."""
    calls: list[int] = []
    original = _output._Publisher.publish

    def publish(self: _output._Publisher, fd: int) -> str:
        calls.append(fd)
        action()
        return original(self, fd)

    monkeypatch.setattr(_output._Publisher, "publish", publish)
    return calls


RACE_PLANTS = ["symlink_to_file", "symlink_to_stdout", "dangling_symlink", "fifo",
               "null_device", "socket", "directory"]


@pytest.mark.parametrize("overwrite", [True, False])
@pytest.mark.parametrize("kind", RACE_PLANTS + ["regular_file"])
def test_a_path_planted_during_the_dump_is_not_replaced(kind: str, overwrite: bool,
                                                        storage: str, scratch: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing was at the path at the check; something appears before the publish: it
    stays as it is, the dump is discarded (no partial file), OutputExistsError names
    the path."""
    path = scratch / "out.dmp"

    def plant() -> None:
        if kind == "regular_file":
            path.write_bytes(b"planted")
        else:
            PLANTS[kind](path, scratch)
    calls = before_publish(monkeypatch, plant)
    with sleeper() as pid:
        with pytest.raises(errors.OutputExistsError) as info:
            minidumpkit.dump(pid, str(path), overwrite=overwrite)
        assert tracer_of(pid) == 0
    assert calls, "the publish step never ran"
    assert isinstance(info.value, FileExistsError) and info.value.filename == str(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    fresh = scratch.with_name(scratch.name + "-fresh")
    fresh.mkdir()
    try:
        if kind == "regular_file":
            (fresh / "out.dmp").write_bytes(b"planted")
        else:
            PLANTS[kind](fresh / "out.dmp", fresh)
        expected = {k: v[0] for k, v in state(fresh).items()}
    finally:
        shutil.rmtree(fresh)
    assert {k: v[0] for k, v in state(scratch).items()} == expected  # only the plant
    if kind == "symlink_to_file":
        assert (scratch / "victim").read_bytes() == b"precious data"
    if kind == "regular_file":
        assert path.read_bytes() == b"planted"


@pytest.mark.parametrize("swap", ["other_file", "symlink", "fifo", "removed"])
def test_overwrite_rechecks_the_inode_before_the_rename(swap: str, storage: str,
                                                        scratch: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """overwrite=True replaces the regular file found at the check only if that same
    inode is still there at the publish: a file swapped in meanwhile (another file, a
    symlink, a FIFO) is left alone; one removed meanwhile is simply not replaced."""
    path = scratch / "old.dmp"
    path.write_bytes(b"old")

    def swap_it() -> None:
        path.unlink()
        if swap == "other_file":
            (scratch / "other").write_bytes(b"other")
            os.rename(scratch / "other", path)
        elif swap == "symlink":
            path.symlink_to(_victim(scratch))
        elif swap == "fifo":
            os.mkfifo(path)
    before_publish(monkeypatch, swap_it)
    with sleeper() as pid:
        if swap == "removed":
            assert minidumpkit.dump(pid, path, overwrite=True) == path
            with minidumpkit.open_minidump(path) as d:
                assert d.process_id == pid
            assert os.listdir(scratch) == ["old.dmp"]
            return
        with pytest.raises(errors.OutputExistsError, match="was replaced by") as info:
            minidumpkit.dump(pid, path, overwrite=True)
    assert info.value.filename == str(path) and "\n" not in str(info.value)
    st = os.lstat(path)
    if swap == "other_file":
        assert path.read_bytes() == b"other"
    elif swap == "symlink":
        assert stat.S_ISLNK(st.st_mode) and (scratch / "victim").read_bytes() == b"precious data"
    else:
        assert stat.S_ISFIFO(st.st_mode)
    assert not [n for n in os.listdir(scratch) if n.endswith(".partial")]


def test_overwrite_replaces_the_file_found_at_the_check(storage: str, scratch: Path) -> None:
    path = scratch / "old.dmp"
    path.write_bytes(b"old")
    with sleeper() as pid:
        assert minidumpkit.Dumper(pid).write(path) == path
        with minidumpkit.open_minidump(path) as d:
            assert d.process_id == pid
    assert os.listdir(scratch) == ["old.dmp"]


# --- the command line ------------------------------------------------------------------------

def test_cli_refuses_an_existing_file_unless_overwrite(scratch: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = scratch / "x.dmp"
    path.write_bytes(b"keep")
    with sleeper() as pid:
        assert cli.main(["dump", str(pid), "-o", str(path)]) == 1
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and str(path) in err and "--overwrite" in err
        assert path.read_bytes() == b"keep"
        assert cli.main(["dump", str(pid), "-o", str(path), "--overwrite"]) == 0
        assert capsys.readouterr().out.strip() == str(path)
        with minidumpkit.open_minidump(path) as d:
            assert d.process_id == pid
    assert os.listdir(scratch) == ["x.dmp"]


def test_cli_default_names_never_collide(scratch: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The default name gets -2, -3, ... when taken: by a file, by a FIFO, or by a file
    planted while the dump is written (the no-replace publish moves on)."""
    monkeypatch.chdir(scratch)
    monkeypatch.setattr(cli, "default_dump_name", lambda pid, now=None: "sleep-fixed.dmp")
    Path("sleep-fixed.dmp").write_bytes(b"first")
    os.mkfifo("sleep-fixed-2.dmp")
    with sleeper() as pid:
        assert cli.main(["dump", str(pid)]) == 0
        assert capsys.readouterr().out.strip() == "sleep-fixed-3.dmp"
        calls = before_publish(monkeypatch, lambda: Path("sleep-fixed-4.dmp").write_bytes(b"4"))
        assert cli.main(["dump", str(pid)]) == 0
        assert calls and capsys.readouterr().out.strip() == "sleep-fixed-5.dmp"
        for name in ("sleep-fixed-3.dmp", "sleep-fixed-5.dmp"):
            with minidumpkit.open_minidump(name) as d:
                assert d.process_id == pid
    assert Path("sleep-fixed.dmp").read_bytes() == b"first"
    assert Path("sleep-fixed-4.dmp").read_bytes() == b"4"
    assert stat.S_ISFIFO(os.lstat("sleep-fixed-2.dmp").st_mode)
    assert set(os.listdir()) == {f"sleep-fixed{n}.dmp" for n in ("", "-2", "-3", "-4", "-5")}


def _cli(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-m", "minidumpkit", *args], env=env,
                          timeout=120, **kwargs)


def test_cli_dash_o_dash_writes_to_a_pipe(scratch: Path) -> None:
    """`-o -` into a pipe: a complete dump on stdout, read back by our reader (from the
    pipe itself and from bytes) and by rust-minidump's minidump-stackwalk."""
    with sleeper() as pid:
        proc = _cli("dump", str(pid), "-o", "-", capture_output=True)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == b""
        with minidumpkit.open_minidump(proc.stdout) as d:
            assert d.process_id == pid and [t.thread_id for t in d.threads] == [pid]
        piped = subprocess.Popen([sys.executable, "-m", "minidumpkit", "dump", str(pid),
                                  "-o", "-"], stdout=subprocess.PIPE,
                                 env={**os.environ, "PYTHONPATH": str(SRC)})
        assert piped.stdout is not None
        with minidumpkit.open_minidump(piped.stdout) as d:  # a pipe: read to its end
            assert d.process_id == pid
        assert piped.wait(timeout=120) == 0
        piped.stdout.close()
        assert tracer_of(pid) == 0
    dump = scratch / "from-pipe.dmp"
    dump.write_bytes(proc.stdout)
    walked = run_validator("minidump-stackwalk", "--json", dump, check=True)
    report = json.loads(walked.stdout)
    assert report["pid"] == pid and report["thread_count"] == 1
    assert os.listdir(scratch) == ["from-pipe.dmp"]


def test_cli_dash_o_dash_writes_to_a_file(scratch: Path) -> None:
    out = scratch / "redirected.dmp"
    with sleeper() as pid, open(out, "wb") as f:
        proc = _cli("dump", str(pid), "-o", "-", stdout=f, stderr=subprocess.PIPE)
    assert proc.returncode == 0, proc.stderr
    with minidumpkit.open_minidump(out) as d:
        assert d.process_id == pid


def test_cli_dash_o_dash_refuses_a_terminal(tmp_path: Path) -> None:
    """A dump is binary: `-o -` on a terminal is a usage error (exit 2, one line), and
    the target is never attached (strace: no ptrace call)."""
    master, slave = os.openpty()
    log = tmp_path / "strace.log"
    try:
        with sleeper() as pid:
            proc = subprocess.run(
                [STRACE, "-f", "-qq", "-e", "trace=ptrace", "-o", str(log), sys.executable,
                 "-m", "minidumpkit", "dump", str(pid), "-o", "-"],
                stdout=slave, stderr=subprocess.PIPE, text=True, timeout=120,
                env={**os.environ, "PYTHONPATH": str(SRC)})
            assert tracer_of(pid) == 0
        assert proc.returncode == 2
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("minidumpkit: error: ")
        assert "terminal" in lines[0]
        assert ptrace_lines(log.read_text()) == []
        written = b""
        while select.select([master], [], [], 0)[0]:
            written += os.read(master, 65536)
        assert b"MDMP" not in written
    finally:
        os.close(master)
        os.close(slave)


# --- the reader ------------------------------------------------------------------------------

@contextlib.contextmanager
def bounded(seconds: int) -> Iterator[None]:
    """Fail instead of hanging: SIGALRM interrupts a blocking open()."""
    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still blocked after {seconds} s")
    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


READER_PLANTS = {
    "fifo": (lambda p, s: os.mkfifo(p), errors.NotARegularFileError, "FIFO"),
    "symlink_to_fifo": (lambda p, s: (os.mkfifo(s / "f"), p.symlink_to(s / "f")),
                        errors.NotARegularFileError, "FIFO"),
    "null_device": (lambda p, s: _device(p, "/dev/null"), errors.NotARegularFileError,
                    "character device"),
    "zero_device": (lambda p, s: _device(p, "/dev/zero"), errors.NotARegularFileError,
                    "character device"),
    "socket": (lambda p, s: _socket(p), errors.NotARegularFileError, "socket"),
    "directory": (lambda p, s: p.mkdir(), errors.PathIsADirectoryError, "directory"),
}


@pytest.mark.parametrize("kind", READER_PLANTS)
def test_the_reader_refuses_what_is_not_a_regular_file(kind: str, scratch: Path) -> None:
    plant, cls, words = READER_PLANTS[kind]
    path = scratch / "in.dmp"
    plant(path, scratch)
    with bounded(20), pytest.raises(cls) as info:
        minidumpkit.open_minidump(path)
    assert isinstance(info.value, OSError) and isinstance(info.value, errors.MinidumpError)
    assert info.value.filename == str(path)
    assert str(path) in str(info.value) and words in str(info.value)
    assert "\n" not in str(info.value)
    proc = _cli("info", str(path), capture_output=True, text=True)  # bounded: timeout=120
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "Traceback" not in proc.stderr


def test_the_reader_still_reads_through_a_symlink(scratch: Path) -> None:
    with sleeper() as pid:
        minidumpkit.dump(pid, scratch / "real.dmp")
    (scratch / "link.dmp").symlink_to(scratch / "real.dmp")
    with minidumpkit.open_minidump(scratch / "link.dmp") as d:
        assert d.process_id == pid


# --- the Windows code path of the module, run here ------------------------------------------

@pytest.fixture
def windows_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """The module as it runs on Windows: no O_TMPFILE, no directory fds (*at calls),
    no renameat2; a named temporary file renamed with os.rename. (os.rename replacing
    nothing is Windows' own behaviour: the Wine suite runs that part.)"""
    monkeypatch.setattr(_output, "_WINDOWS", True)
    monkeypatch.setattr(_output, "_LINUX", False)
    monkeypatch.setattr(_output, "_AT_CALLS", False)
    monkeypatch.setattr(_output, "_unnamed_file", lambda directory, dir_fd: None)


def test_the_windows_code_path_writes_replaces_and_refuses(windows_paths: None,
                                                           scratch: Path) -> None:
    seen: list[list[str]] = []
    original = _output._Publisher.publish

    def publish(self: _output._Publisher, fd: int) -> str:
        assert self.dir_fd is None
        seen.append(sorted(os.listdir(scratch)))
        return original(self, fd)

    with pytest.MonkeyPatch.context() as mp, sleeper() as pid:
        mp.setattr(_output._Publisher, "publish", publish)
        new = scratch / "new.dmp"
        assert minidumpkit.dump(pid, new) == new
        [names] = seen
        assert len(names) == 1 and names[0].startswith(".new.dmp.") \
            and names[0].endswith(".partial")
        assert minidumpkit.dump(pid, new) == new  # overwrite (API default)
        with pytest.raises(errors.OutputExistsError, match="already exists"):
            minidumpkit.dump(pid, new, overwrite=False)
        with pytest.raises(errors.PathNotFoundError, match="does not exist"):
            minidumpkit.dump(pid, scratch / "nope" / "x.dmp")
        (scratch / "d").mkdir()
        with pytest.raises(errors.PathIsADirectoryError):
            minidumpkit.dump(pid, scratch / "d")
        with minidumpkit.open_minidump(new) as d:
            assert d.process_id == pid
    assert sorted(os.listdir(scratch)) == ["d", "new.dmp"]


def test_the_windows_code_path_with_a_relative_directory(windows_paths: None, scratch: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Names joined to a relative directory (no directory fd) land in that directory."""
    monkeypatch.chdir(scratch)
    (scratch / "sub").mkdir()
    with sleeper() as pid:
        assert minidumpkit.dump(pid, os.path.join("sub", "x.dmp")) == Path("sub/x.dmp")
        assert minidumpkit.dump(pid, os.path.join("sub", "x.dmp")) == Path("sub/x.dmp")
        with minidumpkit.open_minidump("sub/x.dmp") as d:
            assert d.process_id == pid
    assert os.listdir(scratch / "sub") == ["x.dmp"] and sorted(os.listdir(scratch)) == ["sub"]


def test_the_module_imports_without_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    """Imported with sys.platform = "win32" and none of the Linux-only os names, the
    module loads and picks the Windows way (Windows CPython itself runs under Wine)."""
    code = (
        "import os, sys\n"
        "sys.platform = 'win32'\n"
        "for name in ('O_TMPFILE', 'O_PATH', 'O_CLOEXEC', 'O_NOFOLLOW', 'O_DIRECTORY'):\n"
        "    if hasattr(os, name): delattr(os, name)\n"
        "import minidumpkit._output as o\n"
        "assert o._WINDOWS and not o._LINUX\n"
        "print(o._unnamed_file('.', None))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(SRC)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "None"


# --- the documentation's example -------------------------------------------------------------

def test_the_dumping_docs_output_path_example_runs(scratch: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The code block of docs/dumping.md's "The output path" section, run as written
    against a live target in an empty directory: its comments say what it prints."""
    text = (SRC.parent / "docs" / "dumping.md").read_text()
    section = text.split("## The output path", 1)[1].split("\n## ", 1)[0]
    [code] = [block.split("\n", 1)[1] for block in section.split("```python")[1:]]
    code = code.split("```", 1)[0]
    monkeypatch.chdir(scratch)
    with sleeper() as pid:
        exec(compile(code, "docs/dumping.md", "exec"), {"pid": pid})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("app.dmp already exists: nothing was written")
    assert lines[1] == "no-such-dir/app.dmp"
    assert os.listdir(scratch) == ["app.dmp"]
