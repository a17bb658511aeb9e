"""A Python dump target: three named threads blocked in Event.wait, the main thread
reading commands from stdin. Prints ``READY pid=N tids=a,b,c names=x,y,z`` and then
answers ``ping`` with ``pong`` until stdin closes."""

import ctypes
import os
import sys
import threading

PR_SET_NAME = 15
libc = ctypes.CDLL(None, use_errno=True)
ready = threading.Barrier(4)
stop = threading.Event()
tids: dict[str, int] = {}


def worker(name: str) -> None:
    # Name the OS thread (what /proc/PID/task/TID/comm and the dump show).
    libc.prctl(PR_SET_NAME, name.encode(), 0, 0, 0)
    tids[name] = threading.get_native_id()
    ready.wait()
    stop.wait()


names = ["py-worker-1", "py-worker-2", "py-worker-3"]
threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in names]
for t in threads:
    t.start()
ready.wait()
print(f"READY pid={os.getpid()} tids={','.join(str(tids[n]) for n in names)} "
      f"names={','.join(names)}", flush=True)
for line in sys.stdin:
    if line.strip() == "ping":
        print("pong", flush=True)
stop.set()
