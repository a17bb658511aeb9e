"""The ``minidumpkit`` command: ``info FILE`` summarises a minidump, ``dump PID`` writes one.

Exit codes: 0 success; 1 the dump could not be written (the message says why: the
process, or the output path); 2 bad usage (``-o -`` to a terminal included), or a
file that cannot be read or is not a valid minidump.
"""

from __future__ import annotations

import argparse
import os
import time
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO, TypeVar

from . import __version__
from .errors import MinidumpError, MinidumpFormatError, PathError
from .flags import DumpType, MiniDumpType, coerce_dump_type

if TYPE_CHECKING:
    import datetime

    from ._streams import Context, Module, Thread
    from .reader import Minidump

__all__ = ["main", "parse_dump_type"]

T = TypeVar("T")

_PRESETS = {"MINI": DumpType.MINI, "TRIAGE": DumpType.TRIAGE, "FULL": DumpType.FULL,
            "PYTHON": DumpType.PYTHON}
_MEMBERS = {name.lower(): member for name, member in MiniDumpType.__members__.items()}


def parse_dump_type(text: str) -> MiniDumpType:
    """Parse a dump type written on a command line.

    Accepts preset names (``MINI``, ``TRIAGE``, ``FULL``), MiniDumpType member names
    (``WithFullMemory``) or their SDK spelling (``MiniDumpWithFullMemory``), and numbers
    (``0x1824``), any of them joined by ``|`` or ``,``; case does not matter.
    Raises ValueError for anything else or for bits outside MiniDumpValidTypeFlags.
    """
    tokens = [t.strip() for t in re.split(r"[|,]", text)]
    if not text.strip() or not all(tokens):
        raise ValueError(f"empty dump type in {text!r}")
    value = MiniDumpType.Normal
    for token in tokens:
        value |= _parse_type_token(token)
    return coerce_dump_type(value)


def _parse_type_token(token: str) -> MiniDumpType:
    preset = _PRESETS.get(token.upper())
    if preset is not None:
        return preset
    name = token.lower()
    if name.startswith("minidump") and name != "minidump":
        name = name[len("minidump"):]
    member = _MEMBERS.get(name)
    if member is not None:
        return member
    try:
        number = int(token, 0)
    except ValueError:
        raise ValueError(
            f"unknown dump type {token!r}: use MINI, TRIAGE, FULL, PYTHON, a MiniDumpType name "
            "such as WithFullMemory (or MiniDumpWithFullMemory), or a number such as 0x1824"
        ) from None
    return coerce_dump_type(number)


def _dump_type_arg(text: str) -> MiniDumpType:
    try:
        return parse_dump_type(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _pid_arg(text: str) -> int:
    try:
        pid = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a process id: {text!r}") from None
    if pid <= 0:
        raise argparse.ArgumentTypeError(f"not a process id: {text!r}")
    return pid


def _parser(watch: bool = True) -> argparse.ArgumentParser:
    """The whole command line; ``watch=False`` leaves out ``run`` and ``watch`` (their
    options import the trigger machinery: a tenth of an ``info`` start-up)."""
    parser = argparse.ArgumentParser(
        prog="minidumpkit",
        description="Write minidumps (MDMP) of live processes, and read anyone's.")
    parser.add_argument("--version", action="version", version=f"minidumpkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    info = sub.add_parser("info", help="summarise a minidump: system, crash, threads, modules",
                          description="Summarise a minidump written by any writer.")
    info.add_argument("file", metavar="FILE", help="the minidump to read")
    info.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    _add_python_options(info)
    _add_stack_arguments(info)

    dump = sub.add_parser("dump", help="write a minidump of a running process",
                          description="Write a minidump of process PID.")
    dump.add_argument("pid", metavar="PID", type=_pid_arg, help="the process to dump")
    dump.add_argument("-o", "--output", metavar="FILE",
                      help="where to write; - writes to standard output (a pipe or a file, "
                           "not a terminal). Default: <comm>-<pid>-<YYYYmmdd-HHMMSS>.dmp here, "
                           "-2, -3, ... added if that name is taken")
    dump.add_argument("--overwrite", action="store_true",
                      help="replace an existing regular file at FILE (by a new 0600 file); "
                           "without it an existing FILE is refused. Devices, FIFOs, sockets "
                           "and symbolic links are never replaced")
    kind = dump.add_mutually_exclusive_group()
    kind.add_argument("--mini", dest="type", action="store_const", const=DumpType.MINI,
                      help="DumpType.MINI: threads, stacks, modules, handles, referenced memory"
                           " (the default)")
    kind.add_argument("--triage", dest="type", action="store_const", const=DumpType.TRIAGE,
                      help="DumpType.TRIAGE: MINI reduced to what is safe to upload")
    kind.add_argument("--full", dest="type", action="store_const", const=DumpType.FULL,
                      help="DumpType.FULL (ProcDump -ma): the memory map and, on Linux, the "
                           "memory the kernel's core dump would hold (the target's "
                           "coredump_filter; no MADV_DONTDUMP memory; by default no code or "
                           "unwritten file mappings); with --all-memory every readable page")
    kind.add_argument("--python", dest="type", action="store_const", const=DumpType.PYTHON,
                      help="DumpType.PYTHON: threads, stacks, modules and the Python runtime's "
                           "memory: a tiny dump for Python stacks")
    kind.add_argument("--type", dest="type", type=_dump_type_arg, metavar="NAME[,NAME...]",
                      help="any MiniDumpType combination, e.g. WithFullMemory,WithHandleData "
                           "or 0x1824")
    dump.add_argument("--all-memory", action="store_true",
                      help="WithFullMemory copies every readable page, code, file mappings and "
                           "MADV_DONTDUMP memory included (all_memory=True); implies --full "
                           "when no type is given")
    dump.add_argument("--no-python", dest="python", action="store_false",
                      help="no Python-aware capture: leave the CPython runtime's memory and "
                           "the MinidumpkitPython stream out (python=False)")
    dump.add_argument("--progress", action="store_true",
                      help="draw a progress bar of the memory copied on stderr")
    if watch:
        from ._watch_cli import add_commands

        add_commands(sub, _dump_type_arg, _pid_arg)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    words = sys.argv[1:] if argv is None else list(argv)
    # `info FILE` and `dump PID` parse the same without run/watch's options
    parser = _parser(watch=not words or words[0] not in ("info", "dump"))
    try:
        args = parser.parse_args(words)
        if args.command == "dump" and args.all_memory:
            if args.type is None:
                args.type = DumpType.FULL
            elif not args.type & MiniDumpType.WithFullMemory:
                parser.error("--all-memory widens WithFullMemory: use it with --full or a "
                             "--type that includes WithFullMemory")
    except SystemExit as stop:  # argparse's way of reporting usage errors and --help
        return stop.code if isinstance(stop.code, int) else 2
    if args.command in ("run", "watch"):
        from . import _watch_cli

        return _watch_cli.main(args, err=sys.stderr)
    try:
        if args.command == "info":
            return _info(args.file, as_json=args.json, out=sys.stdout, err=sys.stderr,
                         stacks=not args.no_stacks, symbol_paths=args.symbols,
                         python=_python_mode(args))
        return _dump(args.pid, args.output, args.type, progress=args.progress,
                     overwrite=args.overwrite, all_memory=args.all_memory,
                     python=args.python, out=sys.stdout, err=sys.stderr)
    except BrokenPipeError:
        # the reader of our output went away (| head): not an error worth a traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


# --- dump ---------------------------------------------------------------------------------

def default_dump_name(pid: int, now: datetime.datetime | None = None) -> str:
    """``<comm>-<pid>-<YYYYmmdd-HHMMSS>.dmp``; ``comm`` is the process name where known."""
    comm = "process"
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            comm = f.read().strip() or comm
    except OSError:
        pass
    comm = re.sub(r"[^A-Za-z0-9._+-]", "_", comm)
    import datetime

    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    return f"{comm}-{pid}-{stamp}.dmp"


def _dump(pid: int, output: str | None, dump_type: MiniDumpType | None, *,
          out: TextIO, err: TextIO, progress: bool = False, overwrite: bool = False,
          all_memory: bool = False, python: bool = True) -> int:
    import contextlib

    from . import _output

    # The output is checked before the process is touched (or the backend loaded).
    try:
        if output == "-":
            path: _output.Destination = _output.stream_destination(_stream_fd(out))
        elif output is None:
            path = _output.check(default_dump_name(pid), overwrite=False, numbered=True)
        else:
            path = _output.check(output, overwrite=overwrite, hint="--overwrite")
    except PathError as exc:
        print(f"minidumpkit: error: {exc}", file=err)
        return 2 if exc.filename == "-" else 1

    import minidumpkit  # the dumper, and through it the platform backend, load only here

    kwargs: dict[str, Any] = {} if dump_type is None else {"type": dump_type}
    if all_memory:
        kwargs["all_memory"] = True
    if not python:
        kwargs["python"] = False
    bar: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if progress:
        from .progress import ProgressBar

        bar = kwargs["callbacks"] = ProgressBar(f"dumping {pid}", stream=err, force=True)
    try:
        with bar:
            written = minidumpkit.dump(pid, path, overwrite=overwrite, **kwargs)
    except PathError as exc:
        print(f"minidumpkit: error: {exc}", file=err)
        return 1
    except MinidumpError as exc:
        print(f"minidumpkit: cannot dump process {pid}: {exc}", file=err)
        return 1
    except OSError as exc:  # writing the file failed: no space, I/O error, ...
        if isinstance(exc, BrokenPipeError):
            raise
        print(f"minidumpkit: error: cannot write {path}: {exc.strerror or exc}", file=err)
        return 1
    except KeyboardInterrupt:
        print("minidumpkit: interrupted", file=err)
        return 130
    if path.stream is None:
        print(os.fspath(written), file=out)
    return 0


def _stream_fd(stream: TextIO) -> int:
    """The file descriptor under ``stream`` (flushed), -1 if it has none."""
    try:
        stream.flush()
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return -1


# --- info ---------------------------------------------------------------------------------

def _hex(value: int | None) -> str | None:
    return None if value is None else f"0x{value:x}"


def _flag_names(flags: int) -> list[str]:
    if flags == 0:
        return ["Normal"]
    names = [m.name for m in MiniDumpType
             if m.value and m.name and m is not MiniDumpType.ValidTypeFlags
             and flags & m.value == m.value]
    unknown = int(flags) & ~int(MiniDumpType.ValidTypeFlags)
    return names + ([f"0x{unknown:x}"] if unknown else [])


class _Report:
    """Collects the summary; a malformed stream is noted and the rest still reported."""

    def __init__(self, dump: Minidump) -> None:
        self.dump = dump
        self.errors: list[str] = []

    def section(self, name: str, fn: Callable[[], T], default: T) -> T:
        try:
            return fn()
        except MinidumpFormatError as exc:
            self.errors.append(f"{name}: {exc}")
            return default

    def build(self, path: str) -> dict[str, Any]:
        d = self.dump
        h = d.header
        system = self.section("SystemInfo", lambda: d.system_info, None)
        exc = self.section("Exception", lambda: d.exception, None)
        pid = self.section("process id", lambda: d.process_id, None)
        threads: list[Thread] = self.section("ThreadList", lambda: d.threads, [])
        modules: list[Module] = self.section("ModuleList", lambda: d.modules, [])
        # A dump taken on request (DUMP_REQUESTED) names the requesting thread, which
        # did not crash; stack walkers call it "crashed", we call it what it is.
        requested = exc is not None and exc.requested
        blamed = exc.thread_id if exc is not None else None
        ours = self.section("MinidumpkitInfo", lambda: d.minidumpkit_info, None)

        def regs(ctx: Context | None) -> dict[str, str | None]:
            if ctx is None:
                return {"pc": None, "sp": None, "fp": None}
            fp = ctx.rbp if hasattr(ctx, "rbp") else getattr(ctx, "ebp", None)
            return {"pc": _hex(ctx.pc), "sp": _hex(ctx.sp), "fp": _hex(fp)}

        thread_rows = []
        for t in threads:
            # The crashing (requesting) thread is shown with the exception's registers, as
            # debuggers and stackwalkers do.
            use_exc = exc is not None and t.thread_id == blamed and exc.context is not None
            ctx = exc.context if use_exc and exc is not None else t.context
            thread_rows.append({
                "thread_id": t.thread_id, "name": t.name,
                "crashed": t.thread_id == blamed and not requested,
                "requesting": t.thread_id == blamed and requested,
                "context": "exception" if use_exc else ("thread" if ctx is not None else None),
                **regs(ctx),
                "stack_start": _hex(t.stack_start), "stack_size": t.stack_size,
            })
        return {
            "file": path,
            "size": getattr(d, "_size", None),
            "header": {
                "version": _hex(h.version), "stream_count": h.stream_count,
                "time_date_stamp": _iso(h.time_date_stamp),
                "flags": _hex(h.flags), "flag_names": _flag_names(h.flags),
            },
            "system": None if system is None else {
                "os": system.os, "os_version": system.version_string, "cpu": system.cpu,
                "cpu_info": system.cpu_info, "processors": system.number_of_processors,
                "platform_id": _hex(int(system.platform)),
                "architecture": int(system.architecture),
            },
            "process": {"pid": pid},
            "minidumpkit": None if ours is None else {
                "capture": ours.capture_name, "pause_ns": ours.pause_ns,
                "writer": ours.details.get("writer"),
            },
            "crash": None if exc is None or requested else {
                "reason": exc.reason, "address": _hex(exc.crash_address),
                "exception_address": _hex(exc.address), "code": _hex(exc.code),
                "flags": _hex(exc.flags), "thread_id": exc.thread_id,
                "parameters": [_hex(p) for p in exc.parameters],
            },
            "requested": None if exc is None or not requested else {
                "reason": exc.reason, "address": _hex(exc.address), "code": _hex(exc.code),
                "thread_id": exc.thread_id,
            },
            "threads": thread_rows,
            "modules": [{
                "name": m.name, "base": _hex(m.base), "end": _hex(m.end), "size": m.size,
                "version": m.version, "code_id": m.code_id, "debug_id": m.debug_id,
                "debug_file": m.debug_file,
                "build_id": m.build_id.hex() if m.build_id is not None else None,
            } for m in modules],
            "streams": [{
                "index": si.index, "type": _hex(int(si.type)), "name": si.name,
                "size": si.data_size, "rva": _hex(si.rva),
            } for si in d.streams],
            "errors": self.errors,
        }


def _iso(stamp: int) -> str | None:
    try:
        # datetime's isoformat, without importing datetime (a millisecond of every start)
        return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(stamp))
    except (OverflowError, OSError, ValueError):
        return None


def _info(path: str, *, as_json: bool, out: TextIO, err: TextIO, stacks: bool = False,
          symbol_paths: Sequence[str] = (), python: str = "") -> int:
    from .reader import open_minidump

    try:
        dump = open_minidump(path)
    except MinidumpFormatError as exc:
        print(f"minidumpkit: {path} is not a valid minidump: {exc}", file=err)
        return 2
    except PathError as exc:  # a directory, FIFO, device, socket: the message names it
        print(f"minidumpkit: error: {exc}", file=err)
        return 2
    except OSError as exc:
        print(f"minidumpkit: cannot read {path}: {exc.strerror or exc}", file=err)
        return 2
    with dump:
        report = _Report(dump)
        data = report.build(path)
        walked: dict[int, Any] = {}
        if stacks and python != "only":  # --python-only prints the Python stacks alone
            walked = _add_stacks(dump, data, symbol_paths, report)
        runtime = None
        if python in ("only", "add") or _runs_python(dump):
            runtime = report.section("Python stacks", lambda: _python_runtime(dump), None)
        if python in ("only", "add") and runtime is not None:
            _add_python(runtime, data)
        if walked and runtime is not None and python != "native":
            report.section("merged stacks", lambda: _add_merged(runtime, walked, data), None)
        if python != "only":
            _add_waits(dump, data, symbol_paths, report, walked=stacks, runtime=runtime)
    if python == "only":
        data = _python_only(data)
    if as_json:
        import json

        json.dump(data, out, indent=2)
        out.write("\n")
    elif python == "only":
        _print_python(data, out)
    else:
        _print_verdict(data, out)
        _print_text(data, out)
        if stacks and "stacks" in data:
            _print_stacks(data, out)
        if python == "add":
            _print_python(data, out)
    for problem in report.errors:
        print(f"minidumpkit: {path}: malformed stream, {problem}", file=err)
    return 2 if report.errors else 0


def _print_text(data: dict[str, Any], out: TextIO) -> None:
    def w(line: str = "") -> None:
        out.write(line + "\n")

    h = data["header"]
    w(f"{data['file']}: minidump, {data['size']} bytes, {h['stream_count']} streams, "
      f"written {h['time_date_stamp'] or '?'}")
    w(f"  dump type  {h['flags']} ({' | '.join(h['flag_names'])})")
    sysinfo = data["system"]
    if sysinfo is not None:
        w(f"  system     {sysinfo['os']} {sysinfo['os_version']}")
        w(f"  cpu        {sysinfo['cpu']} {sysinfo['cpu_info'] or ''}".rstrip()
          + f", {sysinfo['processors']} processor(s)")
    if data["process"]["pid"] is not None:
        w(f"  process    pid {data['process']['pid']}")
    ours = data["minidumpkit"]
    if ours is not None:
        w(f"  written by {ours['writer']}, capture {ours['capture']}, "
          f"target paused {ours['pause_ns'] / 1e6:.1f} ms")
    crash, requested = data["crash"], data["requested"]
    if requested is not None:
        w(f"  crash      none: dump requested by thread {requested['thread_id']} at "
          f"{requested['address']} ({requested['reason']}, code {requested['code']})")
    elif crash is None:
        w("  crash      none (no exception stream)")
    else:
        w(f"  crash      {crash['reason']} at {crash['address']} in thread {crash['thread_id']}"
          f" (code {crash['code']}, flags {crash['flags']})")

    w()
    w(f"Threads ({len(data['threads'])}):")
    for t in data["threads"]:
        mark = "*" if t["crashed"] else ">" if t["requesting"] else " "
        name = t["name"] or ""
        regs = "  ".join(f"{r} {t[r]}" for r in ("pc", "sp", "fp") if t[r] is not None)
        w(f"  {mark} {t['thread_id']:<8} {name:<20} {regs or '(no context)'}")
    w()
    w(f"Modules ({len(data['modules'])}):")
    for m in data["modules"]:
        ident = (f"build id {m['build_id']}" if m["build_id"]
                 else f"debug id {m['debug_id']}" if m["debug_id"]
                 else f"code id {m['code_id']}" if m["code_id"] else "no id")
        version = f"  {m['version']}" if m["version"] else ""
        w(f"  {m['base']:>18}-{m['end']:<18} {m['name']}{version}")
        w(f"  {'':>37}  {ident}")
    w()
    w(f"Streams ({len(data['streams'])}):")
    for si in data["streams"]:
        w(f"  {si['index']:>3}  {si['name']:<28} {si['type']:>12}  {si['size']:>10} bytes"
          f"  at {si['rva']}")


# --- info: Python stacks (docs/python-stacks.md) ------------------------------------------

def _add_python_options(info: argparse.ArgumentParser) -> None:
    group = info.add_mutually_exclusive_group()
    group.add_argument("--python", action="store_true",
                       help="add each thread's Python stack (CPython 3.11-3.13)")
    group.add_argument("--python-only", action="store_true",
                       help="print only the Python stacks, as Python's tracebacks do")
    group.add_argument("--native-only", action="store_true",
                       help="print the native stacks alone (by default a thread running "
                            "Python shows its Python frames among its native ones)")


def _python_mode(args: argparse.Namespace) -> str:
    return "only" if args.python_only else "add" if args.python else \
        "native" if args.native_only else ""


def _runs_python(dump: Minidump) -> bool:
    """The dump's module list has a python module (libpython, a python executable); a
    broken module list is reported by its own section."""
    try:
        return any("python" in m.basename for m in dump.modules)
    except MinidumpFormatError:
        return False


def _python_runtime(dump: Minidump) -> Any:
    from .analysis.python import python_stacks

    return python_stacks(dump)


def _add_merged(runtime: Any, walked: dict[int, Any], data: dict[str, Any]) -> None:
    """``data['threads'][i]['merged']``: the thread's frames with its Python frames placed
    among them (docs/stacks.md), or null for a thread that runs no Python."""
    from .analysis.pymerge import merge_thread

    for row in data["threads"]:
        stack = walked.get(row["thread_id"])
        if stack is None:
            continue
        merged = merge_thread(stack, [t for t in runtime.threads
                                      if t.os_thread_id == row["thread_id"]])
        if merged.python is None:
            row["merged"] = None
            continue
        python = [t for t in (merged.python, *merged.others)]
        row["merged"] = {
            "status": merged.status, "eval_frames": merged.eval_frames,
            "entry_frames": merged.entry_frames,
            "frames": [f.to_json() for f in merged.frames] if merged.merged else [],
            "python": [] if merged.merged else [
                {"interpreter_id": t.interpreter_id, "frames": [
                    {"function": f.function, "qualname": f.qualname, "filename": f.filename,
                     "line": f.line, "first_line": f.first_line, "is_entry": f.is_entry}
                    for f in t.frames]} for t in python]}


def _add_python(runtime: Any, data: dict[str, Any]) -> None:
    """data["python"] = the runtime; data["threads"][i]["python"] = the Python thread
    that OS thread runs (the first found, when subinterpreters share it), else None."""

    def thread_json(t: Any) -> dict[str, Any]:
        return {"os_thread_id": t.os_thread_id, "mapped_by": t.mapped_by,
                "interpreter_id": t.interpreter_id, "thread_id": t.thread_id,
                "native_thread_id": t.native_thread_id, "holds_gil": t.holds_gil,
                "status": t.status,
                "frames": [{"function": f.function, "qualname": f.qualname,
                            "filename": f.filename, "line": f.line,
                            "first_line": f.first_line, "is_entry": f.is_entry}
                           for f in t.frames]}

    threads = [thread_json(t) for t in runtime.threads]
    data["python"] = {"status": runtime.status, "version": runtime.version,
                      "runtime_address": _hex(runtime.runtime_address),
                      "module": runtime.module, "layout": runtime.layout,
                      "found_by": runtime.found_by, "threads": threads}
    for entry in data["threads"]:
        entry["python"] = next((t for t in threads if t["os_thread_id"] == entry["thread_id"]),
                               None)


def _python_only(data: dict[str, Any]) -> dict[str, Any]:
    return {"file": data["file"], "python": data.get("python"), "errors": data["errors"]}


def _print_python(data: dict[str, Any], out: TextIO) -> None:
    runtime = data.get("python")
    if runtime is None:
        out.write("Python: not read (see the errors)\n")
        return
    if not runtime["threads"]:
        out.write(f"Python: {runtime['status']}\n")
        return
    out.write(f"\nPython {runtime['version']} ({runtime['module']}, _PyRuntime "
              f"{runtime['runtime_address']}): {runtime['status']}\n")
    for t in runtime["threads"]:
        gil = ", holds the GIL" if t["holds_gil"] else ""
        out.write(f"\nThread {t['os_thread_id']} (interpreter {t['interpreter_id']}{gil})\n")
        out.write("Traceback (most recent call last):\n")
        for f in reversed(t["frames"]):
            out.write(f'  File "{f["filename"]}", line {f["line"]}, in {f["qualname"]}\n')
        if t["status"]:
            out.write(f"  [{t['status']}]\n")


# --- stacks (minidumpkit.analysis) ----------------------------------------------------------

STACKS_SCHEMA_VERSION = 1


def _add_stack_arguments(info: argparse.ArgumentParser) -> None:
    info.add_argument("--symbols", metavar="PATH", action="append", default=[],
                      help="a file or directory to search for modules' files and debug files "
                           "(a sysroot, a directory of .debug files, a .build-id tree); "
                           "repeatable; searched after each module's own path and "
                           "/usr/lib/debug/.build-id")
    info.add_argument("--no-stacks", action="store_true",
                      help="do not walk the threads' call stacks")


def _add_stacks(dump: Minidump, data: dict[str, Any], symbol_paths: Sequence[str],
                report: _Report) -> dict[int, Any]:
    """Walk every thread into ``data['threads'][i]['frames']`` (docs/stacks.md: schema);
    returns the call stacks walked, by thread id."""
    from .analysis import symbolizer_for, walk_stack

    symbolizer = symbolizer_for(dump, symbol_paths)
    threads: list[Thread] = report.section("ThreadList", lambda: dump.threads, [])
    rows = {row["thread_id"]: row for row in data["threads"]}
    walked: dict[int, Any] = {}
    for thread in threads:
        row = rows.get(thread.thread_id)
        if row is None:
            continue
        try:
            stack = walk_stack(dump, thread, symbol_paths=symbol_paths)
        except MinidumpFormatError as exc:
            report.errors.append(f"stack of thread {thread.thread_id}: {exc}")
            row["stack"] = {"status": f"not walked: {exc}", "end": ""}
            row["frames"] = []
            continue
        row["stack"] = {"status": stack.status, "end": stack.end}
        row["frames"] = [frame.to_json() for frame in stack.frames]
        walked[thread.thread_id] = stack
    needed = {f["module_path"] for row in data["threads"] for f in row.get("frames", ())
              if f["module_path"] is not None}
    modules = []
    listed: list[Module] = report.section("ModuleList", lambda: dump.modules, [])
    for module in listed:
        if module.name not in needed:
            continue
        found = symbolizer.for_module(module)
        modules.append({"name": module.name, "problem": found.problem,
                        "files": [f.path for f in found.files]})
    data["stacks"] = {"schema": "minidumpkit-stacks", "version": STACKS_SCHEMA_VERSION,
                      "symbol_paths": list(symbol_paths), "modules": modules}
    return walked


def _print_stacks(data: dict[str, Any], out: TextIO) -> None:
    """The crashing or requesting thread first, then every thread: a header, then one
    line per frame."""
    rows = sorted(data["threads"], key=lambda t: not (t["crashed"] or t.get("requesting")))
    out.write("\nStacks:\n")
    for t in rows:
        mark = " crashing" if t["crashed"] else " requesting" if t.get("requesting") else ""
        out.write(f'thread {t["thread_id"]} "{t["name"] or ""}"{mark}\n')
        _print_wait_line(t, out)
        frames = t.get("frames", [])
        merged = t.get("merged")
        order = [m if m["kind"] == "python" else frames[m["index"]]
                 for m in merged["frames"]] if merged and merged["frames"] else frames
        for f in order:
            if f.get("kind") == "python":
                out.write(f'     File "{f["filename"]}", line {f["line"]}, in {f["qualname"]}\n')
                continue
            parts = [f"  #{f['index']} {f['pc']}"]
            if f["function"] is not None:
                off = int(f["function_offset"], 16)
                parts.append(f["function"] + (f"+0x{off:x}" if off else ""))
            if f["module"] is not None:
                parts.append(f"({f['module']}+{f['module_offset']})")
            if f["file"] is not None:
                parts.append(f"{f['file'].rsplit('/', 1)[-1]}:{f['line']}")
            parts.append(f"[{f['trust']}]")
            out.write(" ".join(parts) + "\n")
        status = t.get("stack", {}).get("status", "ok")
        if status != "ok":
            out.write(f"  ({status})\n")
        if merged and not merged["frames"] and any(p["frames"] for p in merged["python"]):
            out.write(f"  ({merged['status']}; the Python stack alone:)\n")
            for thread in reversed(merged["python"]):  # the outermost interpreter first
                for f in reversed(thread["frames"]):
                    out.write(f'     File "{f["filename"]}", line {f["line"]}, '
                              f'in {f["qualname"]}\n')
    missing = [m for m in data["stacks"]["modules"] if m["problem"]]
    if missing:
        out.write("\nModules without symbols:\n")
        for m in missing:
            out.write(f"  {m['name']}: {m['problem']}\n")


# --- info: waits and deadlocks (docs/locks.md) ---------------------------------------------

def _add_waits(dump: Minidump, data: dict[str, Any], symbol_paths: Sequence[str],
               report: _Report, *, walked: bool, runtime: Any = None) -> None:
    """``data['threads'][i]['wait']``, ``data['deadlocks']`` and ``data['chains']``; the
    frames come from the stack walker unless stacks were not asked for (then futex
    waits that need the libc frame are "unknown", and say so)."""
    from .analysis.deadlocks import wait_graph

    # the frames _add_stacks walked (not walked twice); none with --no-stacks
    frames: dict[int, list[_WalkedFrame]] = {}
    if walked:
        frames = {row["thread_id"]: [_WalkedFrame.of(f) for f in row["frames"]]
                  for row in data["threads"] if "frames" in row}
    graph = report.section("waits", lambda: wait_graph(
        dump, frames=frames, symbol_paths=symbol_paths,
        python=runtime if runtime is not None else False), None)
    if graph is None:
        return
    names = {tid: w.name for tid, w in graph.waits.items()}
    for row in data["threads"]:
        wait = graph.waits.get(row["thread_id"])
        row["wait"] = None if wait is None else {**wait.to_json(),
                                                 "text": wait.describe(names)}
    data["deadlocks"] = [d.to_json() for d in graph.deadlocks]
    data["chains"] = [c.to_json() for c in graph.chains]
    data["verdict"] = graph.verdict()


class _WalkedFrame(NamedTuple):
    """A frame of ``info``'s JSON, with the attributes the wait analysis reads."""

    function: str | None
    module: str | None
    module_basename: str | None
    module_offset: int | None
    source_file: str | None
    source_line: int | None
    pc: int

    @classmethod
    def of(cls, row: dict[str, Any]) -> _WalkedFrame:
        offset = row["module_offset"]
        return cls(row["function"], row["module_path"], row["module"],
                   None if offset is None else int(offset, 16), row["file"], row["line"],
                   int(row["pc"], 16))


def _print_verdict(data: dict[str, Any], out: TextIO) -> None:
    """The first lines: ``DEADLOCK: <n> threads`` and its lines per cycle (or that there
    is none), then the chains of waiting threads."""
    if "verdict" not in data:
        return
    for line in data["verdict"]:
        out.write(line + "\n")
    for chain in data["chains"]:
        out.write(f"chain: {chain['text']}\n")
    out.write("\n")


def _print_wait_line(row: dict[str, Any], out: TextIO) -> None:
    wait = row.get("wait")
    if wait is not None:
        out.write(f"  waits: {wait['text']}\n")


if __name__ == "__main__":  # pragma: no cover - python -m minidumpkit.cli
    sys.exit(main())
