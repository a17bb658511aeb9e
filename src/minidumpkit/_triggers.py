"""What a watcher waits for (:class:`Triggers`) and the names of its dumps.

Platform-free: the CLI and :class:`minidumpkit.watch.Watcher` build a Triggers, the
platform's watch backend (Linux: :mod:`._backends._linux_watch`) acts on it.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import signal

# Signals whose default action kills the process with a core dump and that a fault or
# abort() raises: the --on-crash set.
# (by name: Windows' signal module lacks SIGBUS, SIGSYS and SIGTRAP, and the CLI that
# imports this module must start there too)
CRASH_SIGNALS = frozenset(getattr(signal, name) for name in (
    "SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT", "SIGSYS", "SIGTRAP")
    if hasattr(signal, name))

DEFAULT_NAME = "<comm>_<pid>_<time>_<trigger>.dmp"
_FIELDS = ("comm", "pid", "time", "trigger", "n")


class TriggerValueError(ValueError):
    """A trigger value out of its range (the CLI exits with its own status for it)."""


class CommandError(OSError):
    """The command a watcher was to start could not be executed (errno says why)."""


#: The Triggers fields the Windows watcher implements (the debugging API's events).
WINDOWS_TRIGGERS = ("on_crash", "first_chance")


@dataclasses.dataclass(frozen=True)
class Triggers:
    """The conditions that write a dump; any number combine. Times are seconds.

    ``on_crash``: a crash signal that will kill the process (see CRASH_SIGNALS);
    ``first_chance``: also one the program handles. ``on_hang``: every thread (or
    those whose name matches ``hang_threads``) blocked in the same system call at the
    same pc, without running once, for that long; with ``heartbeat`` the file's mtime
    not advancing for that long instead; and, whatever the other threads do, two or more
    threads waiting on locks (futex) at one pc for that long whose sampled dump shows a
    lock cycle (that dump is the hang dump; one without a cycle is dropped: docs/watch.md,
    "Hangs"). ``signal``: the process received it (swallowed
    after the dump unless the program handles it). ``cpu`` percent (of one CPU, as top
    shows it) held for ``cpu_for``; ``memory_mb`` resident; ``threads`` / ``fds`` counts
    reached; ``timer``: that long after the watch began. ``count`` dumps in all, at least
    ``interval`` apart (a timer dump repeats every ``interval``, default ``timer``).

    ``follow_children``: every process the watched one starts (fork, vfork, clone,
    and theirs) is watched too, each with these triggers on its own (a heartbeat
    concerns the first process only); ``count`` counts the dumps of all of them.
    """

    on_crash: bool = False
    first_chance: bool = False
    on_hang: float | None = None
    hang_threads: str | None = None
    heartbeat: str | None = None
    signal: int | None = None
    cpu: float | None = None
    cpu_for: float = 10.0
    memory_mb: float | None = None
    threads: int | None = None
    fds: int | None = None
    timer: float | None = None
    count: int = 1
    interval: float | None = None
    follow_children: bool = False

    def __post_init__(self) -> None:
        def positive(name: str, value: float | None, *, limit: float = 10 * 365 * 86400) -> None:
            if value is not None and not 0 < value <= limit:
                raise TriggerValueError(f"{name} must be more than 0 and at most {limit:g}, "
                                        f"not {value:g}")

        positive("on_hang", self.on_hang)
        positive("cpu_for", self.cpu_for)
        positive("memory_mb", self.memory_mb, limit=1 << 40)
        positive("timer", self.timer)
        if self.interval is not None and not 0 <= self.interval <= 10 * 365 * 86400:
            raise TriggerValueError(f"interval must be 0 or more seconds, not {self.interval:g}")
        if self.cpu is not None and not 0 < self.cpu <= 100 * 4096:
            raise TriggerValueError(f"cpu must be a percentage above 0 (100 = one CPU busy), "
                                    f"not {self.cpu:g}")
        for name in ("threads", "fds", "count"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= 1 << 31:
                raise TriggerValueError(f"{name} must be at least 1, not {value}")
        if self.signal is not None:
            uncatchable = {getattr(signal, n) for n in ("SIGKILL", "SIGSTOP") if hasattr(signal, n)}
            if self.signal in uncatchable or \
                    not 1 <= self.signal < signal.NSIG:
                raise TriggerValueError(f"signal {self.signal} cannot be caught: pick another "
                                        "(SIGUSR1, say)")
            if self.signal in CRASH_SIGNALS and self.on_crash:
                raise TriggerValueError(f"{signal.Signals(self.signal).name} is already watched "
                                        "by on_crash")
        if self.hang_threads is not None:
            try:
                re.compile(self.hang_threads)
            except re.error as exc:
                raise TriggerValueError(f"hang_threads is not a regular expression: {exc}") \
                    from None
        if (self.hang_threads or self.heartbeat) and self.on_hang is None:
            raise TriggerValueError("hang_threads and heartbeat refine on_hang: give on_hang "
                                    "seconds too")
        if self.hang_threads and self.heartbeat:
            raise TriggerValueError("give either hang_threads or heartbeat, not both")

    @property
    def any(self) -> bool:
        return bool(self.on_crash or self.on_hang or self.signal or self.cpu
                    or self.memory_mb or self.threads or self.fds or self.timer)

    def repeat_after(self) -> float:
        """Seconds a trigger stays quiet after it wrote a dump."""
        if self.interval is not None:
            return self.interval
        return self.timer if self.timer is not None else 5.0


def parse_signal(text: str) -> int:
    """``SIGUSR1``, ``USR1`` or ``10`` → 10."""
    name = text.strip().upper()
    if name.isdigit():
        return int(name)
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise TriggerValueError(f"unknown signal {text!r}") from None


def check_template(template: str) -> None:
    """Refuse a template naming an unknown field, or one with a directory part."""
    for field in re.findall(r"<([^<>]*)>", template):
        if field not in _FIELDS:
            raise TriggerValueError(f"unknown field <{field}> in the name template "
                                    f"{template!r}: use " + ", ".join(f"<{f}>" for f in _FIELDS))
    if "/" in template or not template.strip():
        raise TriggerValueError(f"the name template {template!r} must be a file name; "
                                "put the directory in --dir")


def dump_name(template: str, *, comm: str, pid: int, trigger: str, n: int,
              now: datetime.datetime | None = None) -> str:
    """Fill ``template``: ``<comm>`` (made file-name safe), ``<pid>``, ``<time>``
    (YYYYmmdd_HHMMSS, local time), ``<trigger>``, ``<n>`` (1 for the first dump)."""
    values = {"comm": re.sub(r"[^A-Za-z0-9._+-]", "_", comm) or "process", "pid": str(pid),
              "time": (now or datetime.datetime.now()).strftime("%Y%m%d_%H%M%S"),
              "trigger": trigger, "n": str(n)}
    return re.sub(r"<([a-z]+)>", lambda m: values[m.group(1)], template)
