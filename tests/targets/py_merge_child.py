"""A CPython child for the merged-stack and Python-lock tests (tests/test_python_merge.py).

Threads, each parked at a known point:
  "cpause"    a ctypes call to libc's pause() under two Python functions (GIL released);
  "rowner"    holds a threading.RLock twice, then sleeps in time.sleep;
  "rwaiter"   blocks in ``with rlock:`` on that RLock;
  "lwaiter"   blocks in ``lock.acquire()`` on a threading.Lock the main thread holds;
  "ab1/ab2"   an ABBA deadlock on two RLocks;
  "sub"       (3.12+) runs a subinterpreter whose code sleeps in time.sleep;
  "busy"      loops in Python.
Once the others are asleep in their system calls (checked in /proc: the lock waiters on
their lock's very futex word, not on the GIL or an Event's), the main thread
writes the ground truth (sys._current_frames(), idents, native ids, the locks' own reprs)
to the JSON file named by argv[1] and prints READY; then it sets the switch interval to
1000 s and sleeps 0.1 s: the busy thread takes the GIL and keeps it, and the main thread,
back from its sleep (or at its first eval-breaker check after the switch-interval call),
waits for the GIL. The busy thread, seeing that (main blocked in futex after the switch),
prints GILWAIT without letting the GIL go.
"""

import ctypes
import json
import os
import sys
import threading
import time

started = {}
rlock = threading.RLock()
lock = threading.Lock()
rlock_held = threading.Event()
SUB_CODE = "import time\ndef sub_leaf():\n    time.sleep(3600)\nsub_leaf()\n"


def pause_leaf():
    started["cpause"] = threading.get_native_id()
    ctypes.CDLL(None).pause()


def pause_mid():
    pause_leaf()


def rlock_owner():
    started["rowner"] = threading.get_native_id()
    with rlock:
        rlock.acquire()
        rlock_held.set()
        time.sleep(3600)


def rlock_waiter():
    rlock_held.wait()
    started["rwaiter"] = threading.get_native_id()
    with rlock:
        pass


def lock_waiter():
    started["lwaiter"] = threading.get_native_id()
    lock.acquire()


ra, rb = threading.RLock(), threading.RLock()
holds = {"ab1": threading.Event(), "ab2": threading.Event()}


def abba(name, first, second, other):
    """ABBA: ab1 holds ra and waits for rb, ab2 holds rb and waits for ra."""
    started[name] = threading.get_native_id()
    with first:
        holds[name].set()
        holds[other].wait()
        with second:
            pass


def sub_thread():
    try:
        import _interpreters as interpreters
    except ImportError:
        import _xxsubinterpreters as interpreters
    interp = interpreters.create()
    started["sub"] = threading.get_native_id()
    interpreters.run_string(interp, SUB_CODE)


# libc called with the GIL held (ctypes.PyDLL keeps it): the busy thread must never let
# the GIL go, or the main thread would take it
libc = ctypes.PyDLL(None)
state = {"switched": False}


def main_waits_for_gil():
    """The main thread is blocked in futex (202) after the switch interval was set: the
    only futex it can wait on then is the GIL's."""
    buf = ctypes.create_string_buffer(64)
    fd = libc.open(f"/proc/self/task/{os.getpid()}/syscall".encode(), 0)
    n = libc.read(fd, buf, 63)
    libc.close(fd)
    return buf.raw[:max(n, 0)].split()[:1] == [b"202"]


def busy_leaf():
    started["busy"] = threading.get_native_id()
    n = 0
    while True:
        n += 1
        if state["switched"] and n % 65536 == 0 and main_waits_for_gil():
            state["switched"] = False
            libc.write(1, b"GILWAIT\n", 8)  # the test's cue, written holding the GIL


# x86_64 system call numbers where each thread parks
CALLS = {"cpause": {34, 130}, "rowner": {230, 35}, "rwaiter": {202}, "lwaiter": {202},
         "ab1": {202}, "ab2": {202}, "sub": {230, 35}}


def semaphore(obj):
    """The futex word a _thread.lock / _thread.RLock waits on: its lock_lock semaphore."""
    return ctypes.c_void_p.from_address(id(obj) + 16).value


def asleep(tid, calls, futex=None):
    """Thread ``tid`` is blocked in one of ``calls`` (and, for a futex, on ``futex``: a
    thread waiting for the GIL or an Event is in futex too)."""
    try:
        with open(f"/proc/self/task/{tid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/self/task/{tid}/syscall") as f:
            call = f.read().split()
    except OSError:
        return False
    return (state == "S" and bool(call) and call[0] != "running" and int(call[0]) in calls
            and (futex is None or int(call[1], 16) == futex))


def main(path):
    lock.acquire()
    names = ["cpause", "rowner", "rwaiter", "lwaiter", "ab1", "ab2", "busy"]
    targets = {"cpause": pause_mid, "rowner": rlock_owner, "rwaiter": rlock_waiter,
               "lwaiter": lock_waiter, "busy": busy_leaf,
               "ab1": lambda: abba("ab1", ra, rb, "ab2"),
               "ab2": lambda: abba("ab2", rb, ra, "ab1")}
    futexes = {"rwaiter": semaphore(rlock), "lwaiter": semaphore(lock),
               "ab1": semaphore(rb), "ab2": semaphore(ra)}
    if sys.version_info >= (3, 12):
        names.insert(4, "sub")
        targets["sub"] = sub_thread
    for name in names:
        threading.Thread(target=targets[name], name=name, daemon=True).start()
    deadline = time.monotonic() + 30
    while not ("busy" in started and all(asleep(started.get(n, 0), CALLS[n], futexes.get(n))
                                         for n in names if n != "busy")):
        if time.monotonic() > deadline:
            raise SystemExit(f"threads did not park: {started}")
        time.sleep(0.01)
    frames = sys._current_frames()
    truth = []
    for thread in threading.enumerate():
        stack = []
        frame = frames.get(thread.ident)
        if thread is threading.current_thread():
            frame = None  # the main thread moves on
        while frame is not None:
            code = frame.f_code
            stack.append([code.co_name, code.co_qualname, code.co_filename, frame.f_lineno])
            frame = frame.f_back
        truth.append({"name": thread.name, "ident": thread.ident,
                      "native_id": thread.native_id, "frames": stack})
    with open(path, "w") as f:
        json.dump({"pid": os.getpid(), "version": sys.hexversion, "threads": truth,
                   "rlock": repr(rlock), "rlock_address": id(rlock),
                   "lock": repr(lock), "lock_address": id(lock),
                   "ra": repr(ra), "rb": repr(rb),
                   "main_ident": threading.get_ident()}, f)
    print("READY pid=" + " ".join([str(os.getpid())] + [f"{n}={started[n]}" for n in names]),
          flush=True)
    sys.setswitchinterval(1000)
    state["switched"] = True
    time.sleep(0.1)
    time.sleep(3600)  # not reached while busy runs


if __name__ == "__main__":
    main(sys.argv[1])
