"""Run every benchmark comparison in one go and write the table into docs/performance.md.

    python3 benchmarks/run_all.py [--quick] [--only NAME[,NAME]] [--output docs/performance.md]

Each entry of :data:`BENCHMARKS` is a function returning a list of
``_common.Comparison`` (ours against a baseline measured in the same run). The
table shows medians, the baseline's median and the ratio ours/baseline, under the
date and a description of the machine. The generated part of the output file sits
between two marker comments; text outside them is kept, so the page can explain the
figures. ``--quick`` uses small sizes and few runs (under a minute here): a smoke run,
not figures to quote.

Adding a comparison: write a function ``run(quick: bool = False) -> list[Comparison]``
(in a new ``bench_*.py`` or an existing one) and add one :class:`Entry` to
:data:`BENCHMARKS` below. Nothing else changes.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(HERE))

from _common import Comparison, machine, spread  # noqa: E402

BEGIN = "<!-- run_all.py: generated table begins -->"
END = "<!-- run_all.py: generated table ends -->"


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str  # --only picks entries by it
    module: str  # benchmarks/<module>.py
    function: str = "run"  # called as function(quick=...) -> list[Comparison]
    summary: str = ""  # what it compares, one line for the page

    def load(self) -> Callable[..., list[Comparison]]:
        func: Callable[..., list[Comparison]] = getattr(importlib.import_module(self.module),
                                                        self.function)
        return func


# Every comparison run_all.py runs, in this order. Register new ones here.
BENCHMARKS: list[Entry] = [
    Entry("import", "bench_import",
          summary="a fresh process importing minidumpkit.format / reading a small dump, "
                  "against `import minidumpkit`"),
    Entry("reader", "bench_reader",
          summary="random 64-byte reads of a Memory64 dump, against slicing an mmap at "
                  "known offsets"),
    Entry("linux_dump", "bench_linux_dump",
          summary="MINI and Normal dumps of a live C target, against Breakpad's "
                  "WriteMinidumpForChild"),
    Entry("full_memory", "bench_full_memory",
          summary="FULL stop-and-dump, against a process_vm_readv copy to a file and gdb's "
                  "gcore"),
    Entry("snapshot", "bench_snapshot",
          summary="the pause of a VA-clone snapshot, against a bare fork(), a stop-and-dump "
                  "and gcore"),
    Entry("stacks", "bench_stacks",
          summary="`minidumpkit info` with every thread symbolized (50-thread C target, idle "
                  "node), against lldb's `bt all` and minidump-stackwalk with a dump_syms "
                  "store"),
    Entry("thread_state", "bench_thread_state",
          summary="the MINI pause with the thread state and lock memory steps, against the "
                  "same writer without them; wait_graph against walk_stacks alone"),
    Entry("python", "bench_python",
          summary="a dump plus its Python stacks (in process, warm; and the CLI, cold) on a "
                  "frozen 3-thread CPython, against `py-spy dump`; the PYTHON dump's size; "
                  "the bytes and pause the Python capture adds to a MINI dump"),
    Entry("watch", "bench_watch",
          summary="a child under `minidumpkit run --on-crash` (CPU-bound; 10,000 threads; "
                  "100,000 signals) against bare and against gdb; the CPU of `--on-hang` "
                  "polling a 1,000-thread process"),
    Entry("follow", "bench_follow",
          summary="1,000 fork + exec of /bin/true under `run --on-crash --follow-children`, "
                  "against the same command bare"),
    Entry("crash_dumps", "bench_crash_dumps",
          summary="a Python process with enable_crash_dumps() on, against the same without: "
                  "CPU-bound code, thread start, signals; enable and disable"),
]



def run_entries(entries: list[Entry], quick: bool) -> tuple[list[Comparison],
                                                             dict[str, str], dict[str, float]]:
    """Every comparison; {entry: error} for those that failed; {entry: seconds}."""
    results: list[Comparison] = []
    failures: dict[str, str] = {}
    took: dict[str, float] = {}
    for entry in entries:
        print(f"[run_all] {entry.name} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            results += entry.load()(quick=quick)
        except Exception as exc:  # one broken benchmark must not lose the others' figures
            traceback.print_exc()
            failures[entry.name] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        took[entry.name] = time.monotonic() - started
        print(f"[run_all] {entry.name} done in {took[entry.name]:.0f} s", file=sys.stderr,
              flush=True)
    return results, failures, took


def _ratio(c: Comparison) -> str:
    ratio = c.ratio
    if ratio is None:
        return "-"
    if c.higher_is_better:
        return f"{ratio:.2f}× ({'faster' if ratio >= 1 else 'slower'})"
    return f"{ratio:.2f}×"


def markdown(results: list[Comparison], failures: dict[str, str], took: dict[str, float],
             entries: list[Entry], quick: bool, command: str) -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    m = machine()
    lines = [
        f"Generated by `{command}` on {now:%Y-%m-%d %H:%M} UTC"
        + (" — **a quick run** (small sizes, few runs): a smoke test of the command, "
           "not figures to quote." if quick else "."),
        "",
        f"Machine: {m['cpu']}, {m['cores']}, {m['ram']} RAM, {m['kernel']}, {m['python']}.",
        "",
        "Each row: the median of ours and of the baseline measured in the same run "
        "(median (min–max) of the samples), and the ratio ours/baseline of the medians "
        "(below 1: ours takes less time; for a throughput, above 1 is faster).",
        "",
        "| benchmark | figure | ours | baseline | ratio | note |",
        "|---|---|---|---|---|---|",
    ]
    for c in results:
        ours = f"{c.ours_label}: {spread(c.ours)} {c.unit}"
        base = (f"{c.baseline_label}: {spread(c.baseline)} {c.unit}"
                if c.baseline else "-")
        lines.append(f"| {c.bench} | {c.what} | {ours} | {base} | {_ratio(c)} | {c.note} |")
    lines.append("")
    lines.append("Run time: " + ", ".join(f"{name} {sec:.0f} s" for name, sec in took.items())
                 + f" (total {sum(took.values()) / 60:.1f} min).")
    for entry in entries:
        if entry.name in failures:
            lines.append(f"\n**{entry.name} failed**: {failures[entry.name]}")
    return "\n".join(lines) + "\n"


PAGE_HEAD = """# Performance

How minidumpkit compares with the tools it stands beside, measured by one command:

    python3 benchmarks/run_all.py --output docs/performance.md

Every figure is compared with a baseline measured in the same run on the same
machine, so the ratios hold better than the absolute times on a shared machine.
What each benchmark does, and how to add one: benchmarks/README.md.

"""


def write_page(path: Path, table: str, entries: list[Entry]) -> None:
    """Replace the generated part of ``path`` (everything else is kept)."""
    listing = "\n".join(f"- `{e.name}` ({e.module}.py): {e.summary}" for e in entries)
    generated = f"{BEGIN}\n{listing}\n\n{table}{END}\n"
    if path.exists():
        text = path.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            tail = rest.split(END, 1)[1].lstrip("\n")
            path.write_text(head + generated + ("\n" + tail if tail else ""))
            return
        path.write_text(text.rstrip("\n") + "\n\n" + generated)
        return
    path.write_text(PAGE_HEAD + generated)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="small sizes and few runs (under a minute here): a smoke run")
    ap.add_argument("--only", help="comma-separated entry names: "
                    + ", ".join(e.name for e in BENCHMARKS))
    ap.add_argument("--output", type=Path, help="the markdown page to write "
                    "(e.g. docs/performance.md); without it the table is printed")
    ap.add_argument("--json", type=Path, help="also write every sample as JSON")
    args = ap.parse_args(argv)
    entries = BENCHMARKS
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {e.name for e in BENCHMARKS}
        if unknown:
            ap.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
        entries = [e for e in BENCHMARKS if e.name in wanted]
    command = "python3 benchmarks/run_all.py" + (" --quick" if args.quick else "") + (
        f" --only {args.only}" if args.only else "") + (
        f" --output {args.output}" if args.output else "")
    results, failures, took = run_entries(entries, args.quick)
    table = markdown(results, failures, took, entries, args.quick, command)
    if args.output:
        write_page(args.output, table, entries)
        print(f"[run_all] wrote {args.output}", file=sys.stderr)
    else:
        print(table)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "quick": args.quick,
                                         "failures": failures, "seconds": took,
                                         "results": [c.as_dict() for c in results]}, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
