"""A Windows python with Python threads parked at known points, for the Python stack test.

``python py_stacks_target.py READY``: "sleeper" blocks in time.sleep two calls deep,
"waiter" blocks in threading.Event.wait under a short recursion of a method. Once both
are parked there (their newest frame is the blocking line, seen in
``sys._current_frames()``), the main thread writes READY: JSON with the Windows pid and
the ground truth, every thread's frames (name, qualified name, file, line; newest
first) and native id, then parks in time.sleep on the line that recorded them.
"""

import json
import os
import sys
import threading
import time


def sleeper_leaf():
    time.sleep(3600)


def sleeper_mid():
    sleeper_leaf()


class Waiter:
    def __init__(self):
        self.never = threading.Event()

    def wait(self):
        self.never.wait(3600)

    def recurse(self, n):
        if n == 0:
            self.wait()
        else:
            self.recurse(n - 1)


# where each worker parks: the line after the def of these
PARK = {"sleeper": sleeper_leaf.__code__, "waiter": Waiter.wait.__code__}


def parked(threads):
    """Every worker's own code is at its parking line (threading's frames above it)."""
    frames = sys._current_frames()
    for name, code in PARK.items():
        frame = frames.get(threads[name].ident)
        while frame is not None and frame.f_code is not code:
            frame = frame.f_back
        if frame is None or frame.f_lineno != code.co_firstlineno + 1:
            return False
    return True


def record(path, threads):
    deadline = time.monotonic() + 60
    while not parked(threads):
        if time.monotonic() > deadline:
            raise SystemExit("threads did not park")
        time.sleep(0.01)
    time.sleep(0.2)  # past the line's first instructions, inside the blocking call
    frames = sys._current_frames()
    truth = []
    for thread in threading.enumerate():
        frame = frames[thread.ident]
        if thread is threading.current_thread():
            frame = frame.f_back  # record() itself: the parked main thread is in main()
        stack = []
        while frame is not None:
            code = frame.f_code
            stack.append([code.co_name, code.co_qualname, code.co_filename, frame.f_lineno])
            frame = frame.f_back
        truth.append({"name": thread.name, "native_id": thread.native_id, "frames": stack})
    with open(path + ".tmp", "w") as f:
        json.dump({"pid": os.getpid(), "version": sys.hexversion, "threads": truth}, f)
    os.replace(path + ".tmp", path)


def main(path):
    threads = {"sleeper": threading.Thread(target=sleeper_mid, name="sleeper", daemon=True),
               "waiter": threading.Thread(target=Waiter().recurse, args=(2,), name="waiter",
                                          daemon=True)}
    for thread in threads.values():
        thread.start()
    record(path, threads); time.sleep(3600)  # noqa: E702  one line: recorded frame = parked one


if __name__ == "__main__":
    main(sys.argv[1])
