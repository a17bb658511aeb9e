"""Reading a Windows dump on the Linux side: our reader and every independent validator.

:func:`verdicts` gives each reader's verdict on a dump as a short normalised string
(exit status, and the first error with numbers blanked), so a minidumpkit dump and the
reference dump of the same target (MiniDumpWriteDump through ctypes) can be compared
tool by tool: the same failure counts as the same verdict (Breakpad refuses Wine's
MemoryList of ~30,000 ranges either way). :func:`summary` is what must be equal
between the two: streams, threads, modules, and the memory where the threads are parked.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import minidumpkit as mdk
from minidumpkit.format import StreamType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oracles import run  # noqa: E402


def _normalised(line: str) -> str:
    """An error line with its numbers blanked (counts and addresses differ run to run)."""
    return re.sub(r"0x[0-9a-fA-F]+|\d+", "N", line.strip())[:160]


def _first_error(text: str) -> str:
    for line in text.splitlines():
        if re.search(r"\berror\b", line, re.IGNORECASE):
            return _normalised(line)
    return ""


def summary(path: Path) -> dict[str, Any]:
    """What our reader sees: stream types, threads with their stack ranges and the
    memory range holding each thread's stack pointer, modules."""
    with mdk.open_minidump(path) as dump:
        ranges = dump.memory.ranges
        threads = {}
        for thread in dump.threads:
            sp = getattr(thread.context, "rsp", None)  # x64 targets only
            holding = [(r.start, r.size) for r in ranges
                       if sp is not None and r.start <= sp < r.start + r.size]
            threads[thread.thread_id] = {"stack": (thread.stack_start, thread.stack_size),
                                         "sp": sp, "sp_range": holding}
        return {
            "streams": sorted(int(s.type) for s in dump.streams if int(s.type) != 0),
            "threads": threads,
            "modules": sorted((m.name.lower(), m.base, m.size) for m in dump.modules),
            "pid": dump.misc_info.process_id if dump.misc_info is not None else None,
            "names": dict(dump.thread_names),
            "range_count": len(ranges),
        }


def read(path: Path, address: int, size: int) -> bytes | None:
    """``size`` bytes at ``address`` through our reader, None if not in the dump."""
    with mdk.open_minidump(path) as dump:
        try:
            return bytes(dump.memory.read(address, size))
        except Exception:  # noqa: BLE001  (absent memory: the caller asserts on None)
            return None


def lldb_read(path: Path, address: int, count: int) -> list[int] | None:
    """``count`` 64-bit words at ``address`` through lldb, None if lldb cannot read them."""
    proc = run("lldb", "--batch", "-c", path, "-o",
               f"memory read --size 8 --format x --count {count} {address:#x}")
    words = [int(w, 16) for line in proc.stdout.splitlines()
             if re.match(r"\s*0x[0-9a-f]+: ", line)
             for w in line.split(":", 1)[1].split()]
    return words or None


_PY_ORACLES = r'''
import json, sys
path = sys.argv[1]
out = {}
try:
    import udmp_parser
    d = udmp_parser.UserDumpParser()
    out["udmp-parser"] = "parsed" if d.Parse(path) else "Parse() False"
except Exception as e:
    out["udmp-parser"] = "raised " + type(e).__name__
try:
    from minidump.minidumpfile import MinidumpFile
    m = MinidumpFile.parse(path)
    out["skelsec"] = "parsed, threads %s" % ("yes" if m.threads and m.threads.threads else "no")
except Exception as e:
    out["skelsec"] = "raised " + type(e).__name__
print(json.dumps(out))
'''


def verdicts(path: Path) -> dict[str, str]:
    """Each reader's verdict on the dump at ``path``."""
    out: dict[str, str] = {}
    try:
        with mdk.open_minidump(path) as dump:
            out["minidumpkit"] = f"read, {len(dump.threads)} threads"
    except Exception as error:  # noqa: BLE001
        out["minidumpkit"] = f"raised {type(error).__name__}"
    rust = run("minidump-stackwalk", "--json", path)
    status = ""
    if rust.returncode == 0:
        data = json.loads(rust.stdout)
        status = f" status {data.get('status')}, {len(data.get('threads', []))} threads"
    out["minidump-stackwalk"] = f"exit {rust.returncode}{status}"
    breakpad = run("breakpad-stackwalk", path)
    errors = sorted({_normalised(line.split(": ERROR: ", 1)[1].replace(str(path), "DUMP"))
                     for line in breakpad.stderr.splitlines() if ": ERROR: " in line})
    threads = len(re.findall(r"^Thread \d+", breakpad.stdout, re.MULTILINE))
    out["breakpad-stackwalk"] = f"exit {breakpad.returncode}, {threads} threads, errors {errors}"
    lldb = run("lldb", "--batch", "-c", path, "-o", "thread list")
    threads = len(re.findall(r"^\s*\*?\s*thread #\d+", lldb.stdout, re.MULTILINE))
    lldb_error = _first_error(lldb.stderr.replace(str(path), "DUMP"))
    out["lldb"] = f"exit {lldb.returncode}, {threads} threads {lldb_error}".strip()
    proc = subprocess.run([sys.executable, "-c", _PY_ORACLES, str(path)], capture_output=True,
                          text=True, timeout=300, check=False)
    if proc.returncode == 0:
        out.update(json.loads(proc.stdout))
    else:
        out["python-oracles"] = f"crashed {proc.returncode}"
    return out


#: What the Windows writer's Python-aware capture adds to a dump of a CPython process.
PYTHON_STREAMS = [int(StreamType.MinidumpkitPythonStream),
                  int(StreamType.MinidumpkitMemoryStream)]


def streams_named(types: list[int]) -> list[str]:
    names = []
    for value in types:
        try:
            names.append(StreamType(value).name)
        except ValueError:
            names.append(hex(value))
    return names
