"""pytest plugin: minidumps of hung and crashed tests (docs/harness.md).

Registered through the ``pytest11`` entry point as ``minidumpkit.pytest_plugin`` and
inert until enabled: ``--minidump-on-timeout SECONDS``, ``--minidump-on-crash`` (or the
ini keys ``minidump_on_timeout``, ``minidump_on_crash``), or a test marked
``@pytest.mark.minidump(timeout=SECONDS)``.

Each pytest process (each xdist worker) gets one watchdog process
(:mod:`minidumpkit._watchdog`), started at its first watched test and fed
``start``/``stop`` per test, keyed by nodeid. When a test outlives its timeout the
watchdog dumps the pytest process and every process below it, then sends this process
:data:`INTERRUPT_SIGNAL`, whose handler fails the test (the dumps' paths and, per
thread, the top native and Python frames and the lock verdict go into the report and
the JUnit XML properties). A test stuck in native code that holds the GIL runs no
handler: after ``minidump_grace`` seconds the watchdog kills the process and what runs
below it. Under xdist the worker is reported as crashed (with the dumps) and the
session goes on; without xdist the session ends killed (exit status 137 in a shell)
and the watchdog prints one line naming the test and the dumps.

Under ``--minidump-on-crash`` the watchdog traces this process and every process it
starts: a crash is dumped where it happened; a subprocess's crash is named in the report
of the test in progress. Should the watchdog die, a thread here says so once on stderr,
marks the test in progress and keeps its timeout.
"""

from __future__ import annotations

import glob
import json
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from .flags import DumpType

# The signal the watchdog sends to ask a timed-out test to fail: a real-time one,
# which no library or test is likely to use.
INTERRUPT_SIGNAL = signal.SIGRTMIN + 5 if hasattr(signal, "SIGRTMIN") else 0
DEFAULT_GRACE = 5.0
DEFAULT_DIR = "minidumps"
# How long the report hook waits for the watchdog's description of a timeout.
EVENT_WAIT = 60.0
SECTION = "minidumps"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("minidumpkit", "minidumps of hung and crashed tests")
    group.addoption("--minidump-on-timeout", metavar="SECONDS", type=float, default=None,
                    help="dump the test process and its descendants when a test runs longer "
                         "than SECONDS, then fail it (ini: minidump_on_timeout)")
    group.addoption("--minidump-on-crash", action="store_true", default=None,
                    help="dump the test process when a crash signal kills it "
                         "(ini: minidump_on_crash)")
    group.addoption("--minidump-dir", metavar="DIR", default=None,
                    help=f"where the dumps go (default: {DEFAULT_DIR}; ini: minidump_dir)")
    group.addoption("--minidump-type", metavar="TYPE", default=None,
                    help="MINI (default), TRIAGE, FULL, PYTHON or MiniDumpType flags "
                         "(ini: minidump_type)")
    group.addoption("--minidump-grace", metavar="SECONDS", type=float, default=None,
                    help="how long a timed-out test may take to fail before its process is "
                         f"killed (default {DEFAULT_GRACE:g}; ini: minidump_grace)")
    parser.addini("minidump_on_timeout", "seconds a test may run before it is dumped and "
                  "failed (minidumpkit)", default="")
    parser.addini("minidump_on_crash", "dump a test process killed by a crash signal "
                  "(minidumpkit)", type="bool", default=False)
    parser.addini("minidump_dir", "where minidumpkit writes the dumps", default=DEFAULT_DIR)
    parser.addini("minidump_type", "the dump type minidumpkit writes", default="MINI")
    parser.addini("minidump_grace", "seconds a timed-out test may take to fail before its "
                  "process is killed (minidumpkit)", default=str(DEFAULT_GRACE))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "minidump(timeout=None): dump the test process and its descendants and "
                   "fail the test after timeout seconds (minidumpkit); timeout=0 turns it off")
    plugin = _Plugin(config)
    config.pluginmanager.register(plugin, "minidumpkit-harness")


def _float_option(config: pytest.Config, option: str, ini: str) -> float | None:
    value = config.getoption(option)
    if value is None:
        text = str(config.getini(ini)).strip()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            raise pytest.UsageError(f"{ini} must be a number of seconds, not {text!r}") \
                from None
    if value is not None and not value >= 0:
        raise pytest.UsageError(f"--{option.replace('_', '-')} must be 0 or more seconds, "
                                f"not {value:g}")
    return value or None


class _Test:
    """The watched test in progress."""

    def __init__(self, item: pytest.Item, timeout: float | None) -> None:
        self.item = item
        self.key = item.nodeid
        self.timeout = timeout
        self.active = True  # the handler may fail the test
        self.interrupted = False  # the handler ran and failed it
        self.events: list[dict[str, Any]] = []
        self.attached = False
        self.started = time.monotonic()
        self.lost: str | None = None  # the watchdog ended during it: how


class _Plugin:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.timeout = _float_option(config, "minidump_on_timeout", "minidump_on_timeout")
        crash = config.getoption("minidump_on_crash")
        self.crash = bool(crash if crash is not None else config.getini("minidump_on_crash"))
        grace = _float_option(config, "minidump_grace", "minidump_grace")
        self.grace = DEFAULT_GRACE if grace is None else grace
        type_text = config.getoption("minidump_type") or str(config.getini("minidump_type"))
        self.dump_type = int(DumpType.MINI)
        if type_text.strip().upper() != "MINI":
            from .cli import parse_dump_type

            try:
                self.dump_type = int(parse_dump_type(type_text))
            except ValueError as exc:
                raise pytest.UsageError(f"--minidump-type: {exc}") from None
        if (self.timeout or self.crash) and not sys.platform.startswith("linux"):
            raise pytest.UsageError("minidumpkit's pytest plugin works on Linux only so far, "
                                    f"not on {sys.platform!r}")
        workerinput = getattr(config, "workerinput", None)
        if workerinput is not None and workerinput.get("minidumpkit_dir"):
            self.directory = str(workerinput["minidumpkit_dir"])  # the controller's, absolute
        else:
            text = config.getoption("minidump_dir") or str(config.getini("minidump_dir"))
            self.directory = str(config.invocation_params.dir / text)
        self.watchdog: Any = None
        self.test: _Test | None = None
        self.busy = False
        self.disabled = False  # the watchdog died: tests run unwatched
        self.lost: str | None = None  # how the watchdog ended, once it did by itself
        self._closing = False  # we end the watchdog: its exit is no news
        self._said_lost = False
        self._lost_lock = threading.Lock()
        self._stderr_fd = -1  # the real stderr (outside pytest's capture)
        self._monitor: threading.Thread | None = None
        self._old_handler: Any = None
        self._handler_set = False

    # --- xdist: the controller tells the workers where dumps go; reads crash records ---

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["minidumpkit_dir"] = self.directory

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport,
                               sched: Any) -> None:
        records = []
        for path in sorted(glob.glob(os.path.join(self.directory, "*-*.json"))):
            name = os.path.basename(path)
            if not (name.startswith("killed-") or name.startswith("crashed-")):
                continue
            try:
                with open(path, encoding="utf-8") as f:
                    record = json.load(f)
            except (OSError, ValueError):
                continue
            if record.get("nodeid") == crashitem:
                records.append(record)
                os.replace(path, path[:-len(".json")] + ".reported.json")
        if not records:
            return
        dumps = [d for r in records for d in r.get("dumps", ())]
        report.longrepr = "\n".join([str(report.longrepr)] + [r["line"] for r in records])
        report.sections.append((SECTION, "\n".join(_describe(dumps))))
        properties = [("minidump", d["path"]) for d in dumps]
        report.user_properties.extend(properties)
        self._junit_properties(report, properties)

    def _junit_properties(self, report: pytest.TestReport,
                          properties: list[tuple[str, str]]) -> None:
        """A crashed worker's report never reaches a teardown, where junitxml writes
        properties: add them to its testcase directly."""
        try:
            from _pytest.junitxml import xml_key
        except ImportError:
            return
        xml = self.config.stash.get(xml_key, None)
        if xml is None:
            return
        reporter = xml.node_reporter(report)
        for name, value in properties:
            reporter.add_property(name, value)

    # --- the watchdog -------------------------------------------------------------------

    def _timeout_for(self, item: pytest.Item) -> float | None:
        if not sys.platform.startswith("linux"):
            return None  # (a marker elsewhere is left alone)
        marker = item.get_closest_marker("minidump")
        if marker is not None:
            value = marker.kwargs.get("timeout", marker.args[0] if marker.args else None)
            if value is not None:
                return float(value) or None
        return self.timeout

    def _start_watchdog(self) -> Any:
        if self.watchdog is not None:
            return self.watchdog
        from .hang import WatchdogProcess

        os.makedirs(self.directory, exist_ok=True)
        config = {"target": os.getpid(), "directory": self.directory, "type": self.dump_type,
                  "descendants": True, "interrupt": int(INTERRUPT_SIGNAL) or None,
                  "grace": self.grace, "record_dir": self.directory, "crash": self.crash,
                  "label": "minidumpkit", "summary": True}
        capman = self.config.pluginmanager.getplugin("capturemanager")
        # started outside pytest's capture: its one-line report goes to the real stderr
        if capman is not None:
            with capman.global_and_fixture_disabled():
                self.watchdog = WatchdogProcess(config)
                self._stderr_fd = os.dup(2)
        else:
            self.watchdog = WatchdogProcess(config)
            self._stderr_fd = os.dup(2)
        from ._backends._selfdump import allow_tracer

        allow_tracer(self.watchdog.pid)
        if self.crash:  # wait until it traces us
            self._wait_traced()
        self._install_handler()
        self._monitor = threading.Thread(target=self._watch_watchdog, args=(self.watchdog,),
                                         name="minidumpkit-watchdog-monitor", daemon=True)
        self._monitor.start()
        return self.watchdog

    # --- a watchdog that ends by itself ---------------------------------------------------

    def _watch_watchdog(self, watchdog: Any) -> None:
        """(A thread.) When the watchdog process ends while we still need it: say so once
        on stderr, mark the test in progress, and keep that test's timeout ourselves (the
        interrupt signal, then SIGKILL after the grace period, as the watchdog would), so
        that a hung test does not hang the session for ever."""
        pid = int(watchdog.proc.pid)
        try:
            pidfd: int | None = os.pidfd_open(pid)
        except (OSError, AttributeError):
            pidfd = None
        try:
            while not self._closing:
                if pidfd is not None:
                    if select.select([pidfd], [], [], 0.5)[0]:
                        break
                else:
                    time.sleep(0.5)
                    if watchdog.proc.poll() is not None:
                        break
        finally:
            if pidfd is not None:
                os.close(pidfd)
        if self._closing:
            return
        how = _exit_words(pid, watchdog)
        test = self.test
        self.lost = how
        if test is not None:
            test.lost = how
        during = f" during {test.key}" if test is not None else ""
        self._say_lost(f"minidumpkit: the watchdog process (pid {pid}) ended ({how}){during}; "
                       "the remaining tests are not watched")
        if test is None or not test.timeout:
            return
        deadline = test.started + test.timeout
        while self.test is test and not self._closing and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        if self.test is not test or self._closing:
            return
        if self._handler_set and test.active:
            signal.pthread_kill(threading.main_thread().ident or 0, INTERRUPT_SIGNAL)
        deadline = time.monotonic() + self.grace
        while self.test is test and not self._closing and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.test is test and not self._closing and test.active:
            self._say_lost(f"minidumpkit: {test.key} did not answer its timeout in "
                           f"{self.grace:g} s and the watchdog is gone: killed pid "
                           f"{os.getpid()}", always=True)
            os.kill(os.getpid(), signal.SIGKILL)

    def _say_lost(self, line: str, *, always: bool = False) -> None:
        with self._lost_lock:
            if self._said_lost and not always:
                return
            self._said_lost = True
            fd = self._stderr_fd if self._stderr_fd >= 0 else 2
            try:
                os.write(fd, (line + "\n").encode(errors="replace"))
            except OSError:
                pass

    def _wait_traced(self) -> None:
        event = self.watchdog._read()
        if event is not None and "error" in event:
            self.config.issue_config_time_warning(
                pytest.PytestWarning(f"minidumpkit: {event['error']}"), stacklevel=2)

    def _install_handler(self) -> None:
        if not INTERRUPT_SIGNAL or threading.current_thread() is not threading.main_thread():
            return  # no handler: a timed-out test is killed after the grace period
        self._old_handler = signal.signal(INTERRUPT_SIGNAL, self._on_interrupt)
        self._handler_set = True

    def _on_interrupt(self, signum: int, frame: object) -> None:
        __tracebackhide__ = True
        test, watchdog = self.test, self.watchdog
        if test is None or watchdog is None:
            return
        try:
            watchdog.send({"ack": test.key})
        except OSError:
            pass
        if test.active and not self.busy and not test.interrupted:
            test.interrupted = True
            if test.lost is not None:
                pytest.fail(f"Timeout: {test.key} ran longer than {test.timeout or 0:g} s; "
                            f"no minidumps: the watchdog process had ended ({test.lost})",
                            pytrace=True)
            pytest.fail(f"Timeout: {test.key} ran longer than {test.timeout or 0:g} s; "
                        f"minidumps written (see '{SECTION}' below)", pytrace=True)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item,
                                nextitem: pytest.Item | None) -> Iterator[None]:
        timeout = self._timeout_for(item)
        if (timeout is None and not self.crash) or self.disabled:
            yield
            return
        if self.lost is not None:  # it ended by itself (said on stderr): run unwatched
            self._lost()
            yield
            return
        watchdog = self._start_watchdog()
        test = self.test = _Test(item, timeout)
        try:
            watchdog.send({"start": test.key, "timeout": timeout})
        except OSError:  # the watchdog is gone: say so once, run unwatched
            self.test = None
            self._lost()
            yield
            return
        try:
            yield
        finally:
            test.active = False
            self.busy = True
            try:
                _fired, events = watchdog.stop(test.key)
                test.events += events
                if test.events and not test.attached:
                    self._late(test)
            finally:
                self.test = None
                self.busy = False

    def _lost(self) -> None:
        watchdog, self.watchdog = self.watchdog, None
        self._closing = True
        how = self.lost
        if watchdog is not None:
            if how is None:
                how = _exit_words(int(watchdog.proc.pid), watchdog)
            watchdog.close(kill=True)
        self.disabled = True
        self._end_monitor()
        self._say_lost(f"minidumpkit: the watchdog process ended ({how or 'status unknown'}); "
                       "the remaining tests are not watched")

    def _end_monitor(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is not None and monitor is not threading.current_thread():
            monitor.join(2.0)

    def _late(self, test: _Test) -> None:
        """Dumps of a test that finished while the watchdog dumped it: said, not failed."""
        dumps = [d for e in test.events for d in e.get("dumps", ())]
        reporter = self.config.pluginmanager.getplugin("terminalreporter")
        if reporter is not None and dumps:
            reporter.write_line(f"minidumpkit: {test.key} reached its timeout as it ended; "
                                f"dumps: {' '.join(d['path'] for d in dumps)}")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]
                                  ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        test = self.test
        self._child_crashes(item, report)
        if test is None or test.item is not item or test.attached:
            self._fixture_dumps(item, report)
            return report
        self.busy = True
        try:
            if test.interrupted:
                self._collect(test)
            if test.events:
                self._attach(test, item, report)
            if test.lost is not None and report.when == "call":
                self._mark_lost(test, report)
            self._fixture_dumps(item, report)
        finally:
            self.busy = False
        return report

    def _mark_lost(self, test: _Test, report: pytest.TestReport) -> None:
        line = (f"the watchdog process ended ({test.lost}) during this test: it was not "
                "dumped" + (f" at its timeout ({test.timeout:g} s)" if test.timeout else ""))
        report.sections.append((SECTION, line))
        report.user_properties.append(("minidump_watchdog", f"ended: {test.lost}"))

    def _child_crashes(self, item: pytest.Item, report: pytest.TestReport) -> None:
        """The descendants that died of a signal (dumped by the crash-mode watchdog) since
        the last report: named in this one, with the test they died during."""
        if self.watchdog is None or not self.crash:
            return
        try:
            self.watchdog.poll()
        except (OSError, ValueError):
            return
        crashes = self.watchdog.take_crashes()
        if not crashes:
            return
        lines = []
        for event in crashes:
            key = event.get("crashed")
            if key == item.nodeid:
                when = "during this test"
            elif key is None:
                when = "between two tests"
            else:
                when = f"during {key}"
            lines.append(f"pid {event.get('pid')} ({event.get('comm')}), started by the "
                         f"tests, died of {event.get('signal')} {when}")
            lines += ["  " + x for x in _describe(event.get("dumps", []))]
            for entry in event.get("dumps", ()):
                item.user_properties.append(("minidump", entry["path"]))
                report.user_properties.append(("minidump", entry["path"]))
        report.sections.append((f"{SECTION} (a subprocess crashed)", "\n".join(lines)))

    def _collect(self, test: _Test) -> None:
        """The ``fired`` event of ``test`` (written before the signal was sent)."""
        if self.watchdog is None:
            return
        test.events += self.watchdog.take(test.key)
        deadline = time.monotonic() + EVENT_WAIT
        fd = self.watchdog.proc.stdout.fileno()
        while not test.events and time.monotonic() < deadline:
            if not select.select([fd], [], [], 0.5)[0]:
                continue
            event = self.watchdog._read()
            if event is None:
                break
            if event.get("fired") == test.key:
                test.events.append(event)
            else:
                self.watchdog.events.append(event)

    def _attach(self, test: _Test, item: pytest.Item, report: pytest.TestReport) -> None:
        test.attached = True
        dumps = [d for e in test.events for d in e.get("dumps", ())]
        errors = [x for e in test.events for x in e.get("errors", ())]
        lines = [f"timeout {test.timeout:g} s: {len(dumps)} dump(s) in {self.directory}"]
        lines += _describe(dumps) + [f"  {x}" for x in errors]
        report.sections.append((SECTION, "\n".join(lines)))
        if report.passed:  # it fired as the phase ended, before any handler ran
            report.outcome = "failed"
            report.longrepr = lines[0]
        for entry in dumps:
            item.user_properties.append(("minidump", entry["path"]))
            report.user_properties.append(("minidump", entry["path"]))

    def _fixture_dumps(self, item: pytest.Item, report: pytest.TestReport) -> None:
        fixture = item.stash.get(_FIXTURE_KEY, None)
        if fixture is None or not fixture.unreported:
            return
        paths, fixture.unreported = fixture.unreported, []
        report.sections.append((f"{SECTION} (minidump fixture)",
                                "\n".join(os.fspath(p) for p in paths)))

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self._closing = True
        if self.watchdog is not None:
            watchdog, self.watchdog = self.watchdog, None
            watchdog.close()
        self._end_monitor()
        if self._stderr_fd >= 0:
            os.close(self._stderr_fd)
            self._stderr_fd = -1
        if self._handler_set:
            signal.signal(INTERRUPT_SIGNAL, self._old_handler)
            self._handler_set = False


def _exit_words(pid: int, watchdog: Any) -> str:
    """How the watchdog process ended: "exit status N" or "killed by SIGNAME" (left for
    its owner to reap)."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
    except ChildProcessError:
        info = None
    if info is None:
        code = watchdog.proc.returncode
        if code is None:
            return "status unknown"
        return f"exit status {code}" if code >= 0 else f"killed by {_signame(-code)}"
    if info.si_code == os.CLD_EXITED:
        return f"exit status {info.si_status}"
    return f"killed by {_signame(info.si_status)}"


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _describe(dumps: list[dict[str, Any]]) -> list[str]:
    lines = []
    for entry in dumps:
        lines.append(f"{entry['path']} (pid {entry['pid']}, {entry['comm']})")
        lines += [f"  {line}" for line in entry.get("summary", ())]
    return lines


# --- the fixture ---------------------------------------------------------------------------

class MinidumpFixture:
    """``minidump.dump(target)`` dumps a subprocess (a pid or a ``subprocess.Popen``)
    now, into the plugin's directory; the path goes into the report and the JUnit XML
    (property ``minidump``)."""

    def __init__(self, item: pytest.Item, directory: str, dump_type: int) -> None:
        self._item = item
        self.directory = directory
        self.type = dump_type
        self.dumps: list[Path] = []
        self.unreported: list[Path] = []

    def dump(self, target: Any, *, name: str | None = None, type: int | None = None) -> Path:
        from ._watchdog import comm_of, slug, unique_path
        from .dumper import dump

        pid = target.pid if hasattr(target, "pid") and not isinstance(target, int) else target
        os.makedirs(self.directory, exist_ok=True)
        stem = name or f"{slug(self._item.nodeid)}_{pid}_{slug(comm_of(pid), 20)}"
        path = dump(pid, unique_path(self.directory, stem),
                    self.type if type is None else type, overwrite=False)
        self.dumps.append(path)
        self.unreported.append(path)
        self._item.user_properties.append(("minidump", os.fspath(path)))
        return path


_FIXTURE_KEY = pytest.StashKey[MinidumpFixture]()


@pytest.fixture
def minidump(request: pytest.FixtureRequest) -> MinidumpFixture:
    """Dump a subprocess on demand: ``path = minidump.dump(proc)``."""
    plugin = request.config.pluginmanager.get_plugin("minidumpkit-harness")
    assert isinstance(plugin, _Plugin)
    fixture = MinidumpFixture(request.node, plugin.directory, plugin.dump_type)
    request.node.stash[_FIXTURE_KEY] = fixture
    return fixture

