"""The public dumping API (minidumpkit.dump, minidumpkit.Dumper) independent of the
platform: argument handling and the all-or-nothing output file, exercised with a
stand-in backend module so any failure can be injected at will."""

from __future__ import annotations

import errno
import inspect
import os
import types
from pathlib import Path
from typing import Any, BinaryIO

import pytest

import minidumpkit
from minidumpkit._selection import DumpPolicy
from minidumpkit import DumpType, MiniDumpType, _output, dumper, errors


class FakeBackend(types.ModuleType):
    """Records what the Dumper asks for; ``fail`` decides how write_dump ends."""

    def __init__(self, fail: BaseException | None = None) -> None:
        super().__init__("fake_backend")
        self.fail = fail
        self.directory: Path | None = None  # listed during write_dump
        self.checked: list[int] = []
        self.writes: list[tuple[int, int, bool]] = []
        self.policies: list[object] = []
        self.names_during_write: list[list[str]] = []

    def check_target(self, pid: int) -> None:
        self.checked.append(pid)

    def write_dump(self, pid: int, out: BinaryIO, dump_type: MiniDumpType, *,
                   policy: object = None) -> str:
        out.write(b"MDMP" + b"x" * 100)
        self.names_during_write.append(sorted(os.listdir(self.directory)) if self.directory
                                       else [])
        self.writes.append((pid, int(dump_type), out.seekable()))
        self.policies.append(policy)
        if self.fail is not None:
            raise self.fail
        return "times"


@pytest.fixture(params=["unnamed", "named"])
def fake(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
         tmp_path: Path) -> FakeBackend:
    """The stand-in backend, with the output file made both ways: O_TMPFILE (no name
    until complete) and the named temporary file used where O_TMPFILE is missing."""
    backend = FakeBackend()
    backend.directory = tmp_path
    monkeypatch.setattr(dumper, "load_backend", lambda: backend)
    if request.param == "named":
        monkeypatch.setattr(_output, "_unnamed_file", lambda directory, dir_fd: None)
    return backend


def test_the_file_has_no_name_while_it_is_written(fake: FakeBackend, tmp_path: Path,
                                                  request: pytest.FixtureRequest) -> None:
    """With O_TMPFILE nothing is visible in the directory until the dump is complete, so
    a dumper killed mid-write leaves nothing; without it, one hidden .partial file."""
    (tmp_path / "old.dmp").write_bytes(b"old")
    minidumpkit.dump(1, tmp_path / "old.dmp")
    [during] = fake.names_during_write
    if request.node.callspec.params["fake"] == "unnamed":
        assert during == ["old.dmp"]
    else:
        assert len(during) == 2 and during[0].startswith(".old.dmp.") \
            and during[0].endswith(".partial")
    assert os.listdir(tmp_path) == ["old.dmp"]
    assert (tmp_path / "old.dmp").read_bytes().startswith(b"MDMP")


def test_dump_and_dumper_write_have_identical_defaults() -> None:
    """dump(pid, path, ...) and Dumper(pid).write(path, ...) take the same options with
    the same defaults (DumpType.MINI, callbacks=None)."""
    dump_params = list(inspect.signature(minidumpkit.dump).parameters.values())[1:]
    write_params = list(inspect.signature(minidumpkit.Dumper.write).parameters.values())[1:]
    assert [(p.name, p.kind, p.default) for p in dump_params] == \
        [(p.name, p.kind, p.default) for p in write_params]
    assert inspect.signature(minidumpkit.dump).parameters["type"].default == DumpType.MINI


def test_dumper_checks_the_target_at_construction(fake: FakeBackend) -> None:
    d = minidumpkit.Dumper(1234)
    assert fake.checked == [1234] and d.pid == 1234


def test_successful_write_renames_a_0600_file(fake: FakeBackend, tmp_path: Path) -> None:
    final = tmp_path / "a.dmp"
    d = minidumpkit.Dumper(7)
    assert d.write(final) == final
    assert final.read_bytes().startswith(b"MDMP")
    assert os.stat(final).st_mode & 0o777 == 0o600
    assert list(tmp_path.iterdir()) == [final]
    assert fake.writes == [(7, int(DumpType.MINI), True)]
    assert d.last_times == "times"


def test_type_accepts_presets_flags_and_ints(fake: FakeBackend, tmp_path: Path) -> None:
    minidumpkit.dump(1, tmp_path / "a", DumpType.FULL)
    minidumpkit.dump(1, tmp_path / "b", MiniDumpType.WithThreadInfo | MiniDumpType.WithHandleData)
    minidumpkit.dump(1, tmp_path / "c", 0x1004)
    assert [w[1] for w in fake.writes] == [int(DumpType.FULL), 0x1004, 0x1004]
    with pytest.raises(ValueError, match="0x2000000"):
        minidumpkit.dump(1, tmp_path / "d", 0x2000000)
    with pytest.raises(TypeError):
        minidumpkit.dump(1, tmp_path / "e", "mini")  # type: ignore[arg-type]
    assert not (tmp_path / "d").exists() and not (tmp_path / "e").exists()


def test_callbacks_must_be_dumpcallbacks(fake: FakeBackend, tmp_path: Path) -> None:
    """A callbacks object that is not a DumpCallbacks is refused before any file exists."""
    with pytest.raises(TypeError, match="DumpCallbacks"):
        minidumpkit.dump(1, tmp_path / "a.dmp", callbacks=object())
    assert fake.writes == [] and list(tmp_path.iterdir()) == []


def test_callbacks_reach_the_backend_as_a_policy(fake: FakeBackend, tmp_path: Path) -> None:
    """DumpCallbacks are handed to the backend as the writer's policy; none means None."""
    minidumpkit.dump(1, tmp_path / "a.dmp")
    minidumpkit.dump(1, tmp_path / "b.dmp", callbacks=minidumpkit.DumpCallbacks())
    assert fake.policies[0] is None
    assert isinstance(fake.policies[1], DumpPolicy)


@pytest.mark.parametrize("failure", [errors.ProcessNotFound(3, "gone"), KeyboardInterrupt(),
                                     errors.DumpCancelled("stop"), RuntimeError("bug")])
def test_failure_leaves_no_file(fake: FakeBackend, tmp_path: Path,
                                failure: BaseException) -> None:
    """Whatever ends a dump early (an error, KeyboardInterrupt, a cancel), the partial
    temporary file is removed and nothing appears under the final name."""
    fake.fail = failure
    with pytest.raises(type(failure)):
        minidumpkit.dump(1, tmp_path / "a.dmp")
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_an_existing_file(fake: FakeBackend, tmp_path: Path) -> None:
    """A failed dump does not clobber an older dump under the same name."""
    final = tmp_path / "a.dmp"
    final.write_bytes(b"old")
    fake.fail = errors.ProcessNotFound(3, "gone")
    with pytest.raises(errors.ProcessNotFound):
        minidumpkit.dump(1, final)
    assert final.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [final]


def test_missing_directory_is_a_clear_error(fake: FakeBackend, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        minidumpkit.dump(1, tmp_path / "nope" / "a.dmp")
    assert fake.writes == []


def test_real_backend_is_chosen_by_default(tmp_path: Path) -> None:
    """Without the stand-in, Dumper uses the platform backend: a pid that does not exist
    is refused at construction with ProcessNotFound (Linux) or the platform's error."""
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(errors.ProcessNotFound):
        minidumpkit.Dumper(proc.pid)


def test_repr_names_the_pid(fake: Any) -> None:
    assert repr(minidumpkit.Dumper(42)) == "<Dumper pid=42>"


@pytest.mark.parametrize("fake", ["unnamed"], indirect=True)
def test_a_refused_link_still_delivers_the_dump(fake: FakeBackend, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """If naming the O_TMPFILE file fails (a file system or LSM refusing linkat), the
    complete dump is copied to a named file instead: nothing is lost, nothing left."""
    refused: list[str] = []

    def refuse(src: str, *args: object, **kwargs: object) -> None:
        refused.append(src)
        raise PermissionError(1, "linkat refused")
    monkeypatch.setattr(os, "link", refuse)
    final = minidumpkit.dump(1, tmp_path / "a.dmp")
    assert len(refused) == 1 and refused[0].startswith("/proc/self/fd/")
    assert final.read_bytes() == b"MDMP" + b"x" * 100
    assert os.stat(final).st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["a.dmp"]


def test_the_copy_after_a_refused_link_keeps_holes(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback copy of a finished dump keeps its holes (all-zero stretches of a
    full dump are holes) and every byte."""
    src = os.open(tmp_path, os.O_TMPFILE | os.O_RDWR, 0o600)
    try:
        os.pwrite(src, b"head", 0)
        os.pwrite(src, b"middle", 64 << 20)
        os.ftruncate(src, 256 << 20)  # a trailing hole too
        copy = tmp_path / _output._copy_to_named(src, None, str(tmp_path), "x.dmp")
    finally:
        os.close(src)
    st = os.stat(copy)
    assert st.st_size == 256 << 20 and st.st_blocks * 512 < 1 << 20
    with open(copy, "rb") as f:
        assert f.read(4) == b"head"
        f.seek(64 << 20)
        assert f.read(6) == b"middle"
        f.seek(128 << 20)
        assert f.read(8) == bytes(8)


@pytest.mark.parametrize("fake", ["unnamed"], indirect=True)
def test_a_link_failure_that_a_copy_cannot_fix_is_raised(fake: FakeBackend, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """linkat failing for lack of space (ENOSPC) is not worked around by copying more:
    it is raised, and nothing is left."""
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "no space")
    monkeypatch.setattr(os, "link", full)
    with pytest.raises(OSError) as info:
        minidumpkit.dump(1, tmp_path / "a.dmp")
    assert info.value.errno == errno.ENOSPC and os.listdir(tmp_path) == []
