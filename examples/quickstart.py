"""Dump a running process and look inside the dump.

Starts a small Python child with two named threads, writes a MINI dump of it with
minidumpkit, and prints what the dump says: OS, why it was taken, each thread with its
name, what it waits for, its native call stack and its Python stack, and the verdict of
the lock analysis. Run: python3 examples/quickstart.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import minidumpkit as mdk
from minidumpkit.analysis import python_stacks, wait_graph, walk_stack

CHILD = r"""
import ctypes, threading, time
libc = ctypes.CDLL(None)
def worker(name):
    libc.prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME: the name the kernel (and the dump) sees
    time.sleep(3600)
for name in ("worker-one", "worker-two"):
    threading.Thread(target=worker, args=(name,), daemon=True).start()
time.sleep(0.2)
print("ready", flush=True)
time.sleep(3600)
"""


def main() -> int:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        child.stdout.readline()  # wait until the threads exist
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "child.dmp"
            started = time.perf_counter()
            mdk.dump(child.pid, path, type=mdk.DumpType.MINI)
            took = time.perf_counter() - started
            print(f"wrote {path.name}: {path.stat().st_size} bytes in {took * 1000:.0f} ms")
            with mdk.open_minidump(path) as dump:
                info = dump.system_info
                print(f"system: {info.os} {info.cpu} ({info.csd_version})")
                exc = dump.exception
                if exc is not None:  # a dump of a running process: requested, no crash
                    why = f"requested by thread {exc.thread_id}" if exc.requested else "crash"
                    print(f"reason: {exc.reason} ({why})")
                graph = wait_graph(dump)  # walks every stack, then who waits for whom
                print("verdict: " + "; ".join(graph.verdict()))
                python = {t.os_thread_id: t for t in python_stacks(dump).threads}
                for thread in dump.threads:
                    print(f"\nthread {thread.thread_id} {thread.name or ''!r}")
                    wait = graph.waits.get(thread.thread_id)
                    if wait is not None:
                        print(f"  waits: {wait.describe()}")
                    for frame in walk_stack(dump, thread).frames[:6]:
                        print(f"  {frame}")
                    py = python.get(thread.thread_id)
                    for pyframe in (py.frames[:3] if py else ()):
                        print(f"  python: {pyframe.qualname} ({pyframe.filename}:{pyframe.line})")
        # The child was only paused while it was read: it is still alive and running.
        state = Path(f"/proc/{child.pid}/status").read_text().split("State:")[1].split()[0]
        print(f"child state after the dump: {state}")
    finally:
        child.kill()
        child.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
