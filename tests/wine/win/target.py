"""A multi-threaded Windows python target: three parked threads and the main one.

``python target.py READY`` writes READY (JSON: pid as Windows knows it, native thread
ids) once every thread is parked in time.sleep, then sleeps until it is killed.
"""

import json
import os
import sys
import threading
import time

PARKED_THREADS = 3


def park(barrier: threading.Barrier, tids: list[int]) -> None:
    tids.append(threading.get_native_id())
    barrier.wait()
    time.sleep(3600)


def main() -> None:
    ready = sys.argv[1]
    barrier = threading.Barrier(PARKED_THREADS + 1)
    tids: list[int] = []
    for index in range(PARKED_THREADS):
        threading.Thread(target=park, args=(barrier, tids), name=f"parked-{index}",
                         daemon=True).start()
    barrier.wait()
    state = {"pid": os.getpid(), "main_tid": threading.get_native_id(), "tids": sorted(tids)}
    with open(ready + ".tmp", "w") as f:
        json.dump(state, f)
    os.replace(ready + ".tmp", ready)
    time.sleep(3600)


if __name__ == "__main__":
    main()
