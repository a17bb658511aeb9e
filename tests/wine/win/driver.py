"""The Windows side of the Wine suite: runs minidumpkit's public API under Wine.

``python driver.py JOBS RESULT``: JOBS is a JSON list of jobs written by the Linux side
(tests/wine/winenv.py); RESULT gets one JSON object per job id, rewritten after every
job so a crash still leaves the earlier results. A job never raises: its outcome is
recorded as ``{"ok": true, ...}`` or ``{"ok": false, "error": {...}}``.

Kinds: ``reference`` (MiniDumpWriteDump through ctypes, reference.py, no minidumpkit),
``dump`` (``mdk.dump``), ``dumper`` (``mdk.Dumper(pid).write``, with ``last_times``),
``cli`` (``python -m minidumpkit dump``), ``snapshot`` (``Dumper.snapshot``),
``popen_child`` (dump a child this driver starts), ``exited_child``, ``identity``,
``suspend_counts`` (every thread's suspend count, by ctypes),
``example`` (a docs code block run with the names the docs assume); the crash watcher's
(tests/wine/test_wine_crash.py): ``watch_cli`` (``python -m minidumpkit ARGV``, its exit
code and the files it left), ``watcher`` (``mdk.Watcher`` on a Popen child of crash.exe,
crashed or stopped), ``watch_attach`` (``minidumpkit watch PID --on-crash``),
``run_stopped`` (``minidumpkit.watch.run`` whose should_stop() turns true).
Callback objects are chosen by name (``CALLBACKS``) and record what they were asked.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import traceback
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import reference  # noqa: E402  (no minidumpkit inside)


def error_record(error: BaseException) -> dict[str, Any]:
    return {"type": type(error).__name__,
            "mro": [cls.__name__ for cls in type(error).__mro__],
            "message": str(error),
            "errno": getattr(error, "errno", None),
            "winerror": getattr(error, "winerror", None),
            "hresult": getattr(error, "hresult", None),
            "filename": getattr(error, "filename", None),
            "pid": getattr(error, "pid", None),
            "traceback": traceback.format_exception(error)[-6:]}


def make_callbacks(spec: dict[str, Any] | None, record: dict[str, Any]) -> Any:
    """The DumpCallbacks subclass named by ``spec["name"]``, recording into ``record``."""
    if not spec:
        return None
    options: dict[str, Any] = spec
    import minidumpkit as mdk
    from minidumpkit.flags import ModuleWriteFlags

    record.update(threads=[], modules=[], include_threads=[], include_modules=[],
                  memory_calls=0, cancel_calls=0, progress=[])

    class Record(mdk.DumpCallbacks):
        def include_thread(self, thread: Any) -> bool:
            record["include_threads"].append(thread.tid)
            return super().include_thread(thread)

        def include_module(self, module: Any) -> bool:
            record["include_modules"].append(module.base)
            return super().include_module(module)

        def thread(self, thread: Any, flags: Any) -> Any:
            record["threads"].append({
                "tid": thread.tid, "stack_base": thread.stack_base,
                "stack_end": thread.stack_end, "stack_size": thread.stack_size,
                "sp": thread.sp, "pc": thread.pc, "has_context": thread.context is not None,
                "flags": int(flags)})
            return super().thread(thread, flags)

        def module(self, module: Any, flags: Any) -> Any:
            record["modules"].append({"name": module.name, "path": module.path,
                                      "base": module.base, "size": module.size,
                                      "flags": int(flags)})
            return super().module(module, flags)

        def memory(self) -> Any:
            record["memory_calls"] += 1
            return [tuple(r) for r in options.get("memory", ())]

        def cancel(self) -> bool:
            record["cancel_calls"] += 1
            return bool(options.get("cancel"))

        def progress(self, done: int, total: int) -> None:
            record["progress"].append([done, total])

    class KeepOneThread(Record):
        """include_thread keeps only options["tid"]."""

        def include_thread(self, thread: Any) -> bool:
            super().include_thread(thread)
            return bool(thread.tid == options["tid"])

    class DropModule(Record):
        """module() answers no ModuleWriteFlags for options["module"] (a file name)."""

        def module(self, module: Any, flags: Any) -> Any:
            answer = super().module(module, flags)
            return ModuleWriteFlags(0) if module.name.lower() == options["module"] else answer

    class SkipModule(Record):
        """include_module() answers False for the module loaded at options["base"]."""

        def include_module(self, module: Any) -> bool:
            super().include_module(module)
            return bool(module.base != options["base"])

    class Raise(Record):
        """Raises LookupError from the method named options["method"]."""

        def thread(self, thread: Any, flags: Any) -> Any:
            answer = super().thread(thread, flags)
            if options["method"] == "thread":
                raise LookupError("raised from thread()")
            return answer

        def module(self, module: Any, flags: Any) -> Any:
            answer = super().module(module, flags)
            if options["method"] == "module":
                raise LookupError("raised from module()")
            return answer

    return {"record": Record, "keep_one_thread": KeepOneThread,
            "drop_module": DropModule, "skip_module": SkipModule, "raise": Raise}[options["name"]]()


def path_state(path: str) -> dict[str, Any]:
    """What is at ``path`` and beside it (debris of a failed dump)."""
    directory = os.path.dirname(path) or "."
    return {"exists": os.path.lexists(path),
            "is_dir": os.path.isdir(path),
            "size": os.path.getsize(path) if os.path.isfile(path) else None,
            "siblings": sorted(os.listdir(directory)) if os.path.isdir(directory) else None}


def prepare(job: dict[str, Any]) -> None:
    """Set up the output path's situation (error-path jobs)."""
    path: str = job.get("path", "")
    setup = job.get("setup")
    if setup == "directory":
        os.makedirs(path, exist_ok=True)
    elif setup == "readonly":
        with open(path, "wb") as f:
            f.write(b"keep me")
        os.chmod(path, stat.S_IREAD)


def suspend_counts(pid: int) -> dict[str, int]:
    """Each thread of ``pid`` and its suspend count (SuspendThread's answer, undone at
    once), through ctypes: 0 everywhere means nothing left the process suspended."""
    import ctypes
    from ctypes import wintypes

    class ThreadEntry(ctypes.Structure):
        _fields_ = [("dwSize", wintypes.DWORD), ("cntUsage", wintypes.DWORD),
                    ("th32ThreadID", wintypes.DWORD), ("th32OwnerProcessID", wintypes.DWORD),
                    ("tpBasePri", wintypes.LONG), ("tpDeltaPri", wintypes.LONG),
                    ("dwFlags", wintypes.DWORD)]

    k32 = ctypes.WinDLL("kernel32", use_last_error=True)
    k32.CreateToolhelp32Snapshot.restype = wintypes.HANDLE
    k32.OpenThread.restype = wintypes.HANDLE
    k32.CloseHandle.argtypes = [wintypes.HANDLE]
    k32.SuspendThread.argtypes = k32.ResumeThread.argtypes = [wintypes.HANDLE]
    k32.SuspendThread.restype = k32.ResumeThread.restype = wintypes.DWORD
    snap = k32.CreateToolhelp32Snapshot(0x4, 0)  # TH32CS_SNAPTHREAD
    entry = ThreadEntry(dwSize=ctypes.sizeof(ThreadEntry))
    counts: dict[str, int] = {}
    try:
        ok = k32.Thread32First(snap, ctypes.byref(entry))
        while ok:
            if entry.th32OwnerProcessID == pid:
                thread = k32.OpenThread(0x0002, False, entry.th32ThreadID)  # SUSPEND_RESUME
                if not thread:
                    raise ctypes.WinError(ctypes.get_last_error())
                try:
                    previous = k32.SuspendThread(thread)
                    k32.ResumeThread(thread)
                finally:
                    k32.CloseHandle(thread)
                counts[str(entry.th32ThreadID)] = previous
            ok = k32.Thread32Next(snap, ctypes.byref(entry))
    finally:
        k32.CloseHandle(snap)
    return counts


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    kind = job["kind"]
    result: dict[str, Any] = {"kind": kind}
    record: dict[str, Any] = {}
    started = time.perf_counter()
    try:
        prepare(job)
        if kind == "identity":
            import minidumpkit

            result.update(reference.dbghelp_identity(), pid=os.getpid(),
                          minidumpkit=minidumpkit.__file__, executable=sys.executable)
        elif kind == "reference":
            reference.write(job["pid"], job["path"], job["type"])
        elif kind in ("dump", "dumper"):
            import minidumpkit as mdk

            callbacks = make_callbacks(job.get("callbacks"), record)
            pid = os.getpid() if job.get("self") else job["pid"]
            result["pid"] = pid
            options: dict[str, Any] = {}
            if "snapshot" in job:
                options["snapshot"] = job["snapshot"]
            if "python" in job:
                options["python"] = job["python"]
            if kind == "dump":
                written = mdk.dump(pid, job["path"], job["type"], callbacks=callbacks, **options)
            else:
                dumper = mdk.Dumper(pid)
                written = dumper.write(job["path"], job["type"], callbacks=callbacks, **options)
                times = dumper.last_times
                result["last_times"] = {"type": type(times).__name__,
                                        "callbacks": {str(k): v for k, v in
                                                      getattr(times, "callbacks", {}).items()},
                                        "size": getattr(times, "size", None),
                                        "self_dump": getattr(times, "self_dump", None)}
            result["returned"] = str(written)
            result["returned_type"] = type(written).__name__
        elif kind == "suspend_counts":
            result["counts"] = suspend_counts(job["pid"])
        elif kind == "cli":
            done = subprocess.run([sys.executable, "-m", "minidumpkit", "dump", str(job["pid"]),
                                   "-o", job["path"], "--type", job["type_name"]],
                                  stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
            result.update(returncode=done.returncode,
                          stdout=done.stdout.decode("utf-8", "replace"),
                          stderr=done.stderr.decode("utf-8", "replace"))
        elif kind == "snapshot":
            import minidumpkit as mdk
            from minidumpkit.flags import PssCaptureFlags as F

            flags = F.VA_CLONE | F.THREADS | F.THREAD_CONTEXT
            with mdk.Dumper(job["pid"]).snapshot(flags) as snap:
                snap.write(job["path"], job["type"])
                result["threads"] = [t.tid for t in snap.threads]
        elif kind == "popen_child":
            import minidumpkit as mdk

            ready = job["path"] + ".ready"
            child = subprocess.Popen([sys.executable, os.path.join(HERE, "target.py"), ready],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
            try:
                deadline = time.monotonic() + 60
                while not os.path.exists(ready) and time.monotonic() < deadline:
                    time.sleep(0.05)
                with open(ready) as f:
                    result["target"] = json.load(f)
                mdk.dump(child.pid, job["path"], job["type"])
                result["child_pid"] = child.pid
                result["child_running_after"] = child.poll() is None
            finally:
                child.kill()
                child.wait()
        elif kind == "exited_child":
            import minidumpkit as mdk

            child = subprocess.Popen([sys.executable, "-c", "pass"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            child.wait()  # Popen still holds the process handle: the pid is not reused
            result["child_pid"] = child.pid
            mdk.dump(child.pid, job["path"], job["type"])
        elif kind == "example":
            # A code block of the docs, with the names the docs assume (docs/testing.md).
            import minidumpkit as mdk
            from minidumpkit.flags import DumpType, MiniDumpType
            from minidumpkit.flags import PssCaptureFlags as F

            class MyCallbacks(mdk.DumpCallbacks):
                pass

            namespace = {"mdk": mdk, "DumpType": DumpType, "MiniDumpType": MiniDumpType,
                         "F": F, "MyCallbacks": MyCallbacks, "pid": job["pid"],
                         "PID": job["pid"], "__name__": "__doc_example__"}
            here = os.getcwd()
            os.chdir(job["cwd"])
            try:
                exec(compile(job["code"], job["source"], "exec"), namespace)
            finally:
                os.chdir(here)
            result["files"] = sorted(os.listdir(job["cwd"]))
        elif kind in ("watch_cli", "watcher", "watch_attach", "run_stopped"):
            crash_job(kind, job, result)
        else:
            raise ValueError(f"unknown job kind {kind!r}")
        result["ok"] = True
    except BaseException as error:  # noqa: BLE001  (recorded, judged on the Linux side)
        result["ok"] = False
        result["error"] = error_record(error)
    result["seconds"] = time.perf_counter() - started
    if record:
        result["callbacks"] = record
    if job.get("path"):
        result["path_state"] = path_state(job["path"])
    return result


def _wait_until(predicate: Any, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _alive(pid: int) -> bool:
    from minidumpkit._backends import windows
    from minidumpkit._ffi import kernel32

    api = windows.winapi()
    handle = windows.open_process(api, pid, kernel32.PROCESS_QUERY_LIMITED_INFORMATION)
    try:
        code = kernel32.ffi.new("DWORD *")
        api.kernel32.GetExitCodeProcess(handle, code)
        return bool(code[0] == kernel32.STILL_ACTIVE)
    finally:
        windows.close_handle(api, handle)


def crash_job(kind: str, job: dict[str, Any], result: dict[str, Any]) -> None:
    """The jobs of the crash watcher; ``job["path"]`` is the directory dumps go to."""
    from minidumpkit._backends._win_watch import debugger_present

    directory = job["path"]
    os.makedirs(directory, exist_ok=True)
    quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL,
             "stderr": subprocess.DEVNULL}
    if kind == "watch_cli":
        done = subprocess.run([sys.executable, "-m", "minidumpkit", *job["argv"]],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        result.update(returncode=done.returncode,
                      stderr=done.stderr.decode("utf-8", "replace"))
        result["files"] = sorted(os.listdir(directory))
        return
    go = directory + ".go"
    if kind == "run_stopped":
        import signal

        from minidumpkit._backends._win_watch import wait_for_pid
        from minidumpkit.watch import run

        started: list[int] = []
        begun = time.monotonic()
        result["returned"] = run([job["exe"], "wait", go], on_crash=True, directory=directory,
                                 on_start=started.append,
                                 should_stop=lambda: time.monotonic() - begun > 1.0)
        pid = result["child_pid"] = started[0]
        result["debugged_after"] = debugger_present(pid)
        result["still_running"] = not _wait_until(lambda: not _alive(pid), 0.5)
        os.kill(pid, signal.SIGTERM)  # TerminateProcess(pid, 15)
        result["exit_code"] = wait_for_pid(pid)
        result["files"] = sorted(os.listdir(directory))
        return
    child = subprocess.Popen([job["exe"], "wait", go], **quiet)
    result["child_pid"] = child.pid
    try:
        if kind == "watch_attach":
            cli = subprocess.Popen([sys.executable, "-m", "minidumpkit", "watch", str(child.pid),
                                    "--on-crash", "--dir", directory], **quiet)
            result["attached"] = _wait_until(lambda: debugger_present(child.pid))
            open(go, "w").close()
            result["exit_code"] = child.wait(60) & 0xFFFFFFFF
            result["returncode"] = cli.wait(60)
        else:
            import minidumpkit as mdk

            heard: list[str] = []
            watcher = mdk.Watcher(child, on_crash=True, directory=directory,
                                  on_dump=lambda d: heard.append(os.fspath(d)))
            with watcher:
                result["debugged_while_watched"] = debugger_present(child.pid)
                second = subprocess.run([sys.executable, "-m", "minidumpkit", "watch",
                                         str(child.pid), "--on-crash"],
                                        stdin=subprocess.DEVNULL, capture_output=True,
                                        timeout=120)
                result["second_watch"] = {"returncode": second.returncode,
                                          "stderr": second.stderr.decode("utf-8", "replace")}
                if job.get("crash"):
                    open(go, "w").close()
                    result["exit_code"] = child.wait(60) & 0xFFFFFFFF
                    result["ended"] = watcher.wait(60)
            result["dumps"] = [{"path": os.fspath(d.path), "trigger": d.trigger, "pid": d.pid}
                               for d in watcher.dumps]
            result["heard"] = heard
            result["errors"] = [repr(e) for e in watcher.errors]
            if not job.get("crash"):
                result["running_after_stop"] = child.poll() is None
                result["debugged_after_stop"] = debugger_present(child.pid)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
    result["files"] = sorted(os.listdir(directory))


def main() -> None:
    jobs_path, result_path = sys.argv[1], sys.argv[2]
    with open(jobs_path, encoding="utf-8") as f:
        jobs = json.load(f)
    results: dict[str, Any] = {}
    for job in jobs:
        results[job["id"]] = run_job(job)
        with open(result_path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(results, f)
        os.replace(result_path + ".tmp", result_path)


if __name__ == "__main__":
    main()
