"""A CPython child with Python threads parked at known points, for the Python stack tests.

Threads: "busy" loops in Python holding the GIL, "sleeper" blocks in time.sleep,
"selector" blocks in select.select under a short recursion. Once sleeper and selector are
asleep in their system calls (checked in /proc), the main thread writes the ground truth,
sys._current_frames() with each thread's native id, to the JSON file named by argv[1],
prints READY and parks, in one line, so its own recorded frame is the one it parks in.
"""

import json
import os
import select
import sys
import threading
import time

started = {}


def busy_leaf():
    started["busy"] = threading.get_native_id()
    n = 0
    while True:
        n += 1


def busy_mid():
    busy_leaf()


def sleeper_leaf():
    started["sleeper"] = threading.get_native_id()
    time.sleep(3600)


def sleeper_mid():
    sleeper_leaf()


class Selector:
    def wait(self):
        started["selector"] = threading.get_native_id()
        select.select([], [], [], 3600)

    def recurse(self, n):
        if n == 0:
            self.wait()
        else:
            self.recurse(n - 1)


# x86_64 system call numbers: a thread waiting for the GIL is in futex (202) instead
SLEEP_CALLS = {"sleeper": {230, 35}, "selector": {23, 270, 7}}  # clock_nanosleep/nanosleep,
                                                                 # select/pselect6/poll


def asleep(tid, calls):
    """The thread is blocked in one of ``calls`` (state S)."""
    try:
        with open(f"/proc/self/task/{tid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/self/task/{tid}/syscall") as f:
            call = f.read().split()
    except OSError:
        return False
    return state == "S" and bool(call) and call[0] != "running" and int(call[0]) in calls


def record(path, names):
    deadline = time.monotonic() + 30
    while not (("busy" in started or "busy" not in names)
               and all(asleep(started.get(name, 0), SLEEP_CALLS[name])
                       for name in names if name != "busy")):
        if time.monotonic() > deadline:
            raise SystemExit("threads did not park")
        time.sleep(0.01)
    frames = sys._current_frames()
    truth = []
    for thread in threading.enumerate():
        stack = []
        frame = frames.get(thread.ident)
        if thread is threading.current_thread():
            frame = frame.f_back  # record() itself: the parked main thread is in main()
        while frame is not None:
            code = frame.f_code
            stack.append([code.co_name, code.co_qualname, code.co_filename, frame.f_lineno])
            frame = frame.f_back
        truth.append({"name": thread.name, "ident": thread.ident,
                      "native_id": thread.native_id, "frames": stack})
    with open(path, "w") as f:
        json.dump({"pid": os.getpid(), "version": sys.hexversion, "threads": truth}, f)
    print("READY pid=" + " ".join([str(os.getpid())]
                                  + [f"{name}={started[name]}" for name in names]), flush=True)


def main(path, names):
    threads = {"busy": busy_mid, "sleeper": sleeper_mid,
               "selector": lambda: Selector().recurse(3)}
    for name in names:
        threading.Thread(target=threads[name], name=name, daemon=True).start()
    record(path, names); time.sleep(3600)  # noqa: E702  one line: the recorded frame is the parked one


if __name__ == "__main__":
    # argv[2], optional: the threads to start besides main (default busy,sleeper,selector)
    main(sys.argv[1], sys.argv[2].split(",") if len(sys.argv) > 2 else
         ["busy", "sleeper", "selector"])
