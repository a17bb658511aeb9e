"""``import minidumpkit`` loads no native code and works on any OS.

Each check runs in a fresh interpreter so that nothing imported by the test session
(cffi by the backend tests, for instance) can hide a stray import.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from oracles import FIXTURES

FIXTURE = FIXTURES / "third-party" / "generated-crashpad-linux-x86_64-3threads-segv.dmp"
WINDOWS_FIXTURE = FIXTURES / "third-party" / "windows-x86-dbghelp-thread-names.dmp"


def run_python(code: str, *args: str) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return result


def test_import_and_read_do_not_load_cffi() -> None:
    result = run_python("""
        import json, sys
        import minidumpkit
        after_import = sorted(m for m in sys.modules if m.startswith(("cffi", "_cffi")))
        with minidumpkit.open_minidump(sys.argv[1]) as d:
            threads = [t.thread_id for t in d.threads]
            d.modules, d.exception, d.system_info, d.misc_info
            d.memory.read(d.memory.ranges[0].start, 16)
        from minidumpkit import cli
        loaded = sorted(m for m in sys.modules if m.startswith(("cffi", "_cffi")))
        backends = sorted(m for m in sys.modules if m.startswith(("minidumpkit._backends.",
                                                                  "minidumpkit._ffi.")))
        print(json.dumps({"after_import": after_import, "after_read": loaded,
                          "threads": threads, "backends": backends}))
    """, str(FIXTURE))
    assert result["after_import"] == [] and result["after_read"] == []
    assert result["backends"] == []
    assert result["threads"] == [4031, 4032, 4033]  # README: crashpad_crasher + 2 workers


@pytest.mark.parametrize("platform", ["darwin", "win32", "freebsd14", "emscripten"])
def test_works_on_any_os(platform: str) -> None:
    result = run_python("""
        import io, json, sys
        sys.platform = sys.argv[1]  # before anything of ours is imported
        import minidumpkit
        from minidumpkit import cli
        with minidumpkit.open_minidump(sys.argv[2]) as d:
            names = [t.name for t in d.threads]
            reason = d.exception.reason
        out = io.StringIO()
        sys.stdout, real = out, sys.stdout
        try:
            code = cli.main(["info", "--json", sys.argv[2]])
        finally:
            sys.stdout = real
        info = json.loads(out.getvalue())
        cffi = any(m.startswith("cffi") for m in sys.modules)
        backend = None
        if sys.platform != "win32":  # the Windows backend needs a real dbghelp.dll
            try:
                from minidumpkit._backends import load_backend
                load_backend()
            except minidumpkit.UnsupportedError as exc:
                backend = str(exc)
        print(json.dumps({"names": names, "reason": reason, "cli": code,
                          "cli_threads": len(info["threads"]), "backend": backend,
                          "cffi": cffi}))
    """, platform, str(WINDOWS_FIXTURE))
    # values from the fixture README: 3 of 6 threads named, an access violation (read)
    assert result["names"] == ["main thread", None, None, None, "sleep thread", "overflow thread"]
    assert result["reason"] == "EXCEPTION_ACCESS_VIOLATION_READ"
    assert result["cli"] == 0 and result["cli_threads"] == 6
    assert result["cffi"] is False
    if platform != "win32":  # dumping says clearly that this OS has no backend
        assert platform in str(result["backend"])


def test_import_is_lazy_about_the_reader() -> None:
    result = run_python("""
        import json, sys
        import minidumpkit
        before = "minidumpkit.reader" in sys.modules
        minidumpkit.open_minidump
        print(json.dumps({"before": before, "after": "minidumpkit.reader" in sys.modules}))
    """)
    assert result == {"before": False, "after": True}


def test_format_and_first_read_import_only_what_they_need() -> None:
    """``import minidumpkit.format`` (and a first read) stays cheap: it imports no cffi,
    and neither :mod:`dataclasses` nor :mod:`inspect` (which dataclasses imports), whose
    class generation made the format module cost 75-130 ms (see docs/performance.md for
    the timing; this checks what is imported, not how long it takes). Records and views
    are still dataclasses to anyone who asks."""
    result = run_python("""
        import json, sys
        import minidumpkit
        base = set(sys.modules)
        import minidumpkit.format as md
        by_format = sorted(set(sys.modules) - base)
        with minidumpkit.open_minidump(sys.argv[1]) as d:
            threads = [t.thread_id for t in d.threads]
            pc = d.threads[0].pc
            d.modules, d.exception, d.system_info, d.memory.ranges
        by_read = sorted(set(sys.modules) - base)
        import dataclasses
        ctx = d.threads[0].context
        moved = dataclasses.replace(ctx, rip=0x1234)
        print(json.dumps({
            "by_format": by_format, "by_read": by_read, "threads": threads, "pc": pc,
            "is_dataclass": [dataclasses.is_dataclass(x) for x in (ctx, d.threads[0], md.Header)],
            "fields": [f.name for f in dataclasses.fields(md.Location)],
            "replaced": [moved.rip, moved.rsp == ctx.rsp, moved != ctx],
            "repr": repr(md.Location(1, 2)),
        }))
    """, str(FIXTURE))
    assert result["by_format"] == ["minidumpkit._lazydataclass", "minidumpkit.format"]
    heavy = {"dataclasses", "inspect", "cffi", "_cffi_backend"}
    assert heavy.isdisjoint(result["by_read"]), result["by_read"]  # type: ignore[arg-type]
    assert result["threads"] == [4031, 4032, 4033]  # README: crashpad_crasher + 2 workers
    assert result["is_dataclass"] == [True, True, True]
    assert result["fields"] == ["data_size", "rva"]
    assert result["replaced"] == [0x1234, True, True]
    assert result["repr"] == "Location(data_size=1, rva=2)"


def test_info_imports_no_dataclasses_and_no_watch_machinery() -> None:
    """``minidumpkit info`` (stacks walked, waits told) imports neither :mod:`dataclasses`
    nor :mod:`inspect`, nor the ``run``/``watch`` commands' modules: generating dataclass
    methods for the analysis layer's classes and importing the trigger machinery were a
    third of its start-up (docs/performance.md). This checks what is imported, not how
    long it takes; the analysis classes are still dataclasses to anyone who asks."""
    result = run_python("""
        import io, json, sys
        from minidumpkit import cli
        out = io.StringIO()
        sys.stdout, real = out, sys.stdout
        try:
            code = cli.main(["info", sys.argv[1]])
        finally:
            sys.stdout = real
        heavy = sorted(m for m in sys.modules if m in (
            "dataclasses", "inspect", "minidumpkit._watch_cli", "minidumpkit._triggers"))
        import dataclasses
        from minidumpkit.analysis import Frame
        print(json.dumps({"code": code, "heavy": heavy, "stacks": "Stacks:" in out.getvalue(),
                          "frames": out.getvalue().count("\\n  #"),
                          "fields": [f.name for f in dataclasses.fields(Frame)][:3]}))
    """, str(FIXTURE))
    assert result["code"] == 0 and result["stacks"] is True
    assert result["frames"] >= 3  # README: three threads, each with its context frame
    assert result["heavy"] == []
    assert result["fields"] == ["index", "pc", "sp"]
