"""Reader fuzz: mutants of every fixture under shared/fixtures/ (third-party, wine,
real-world) and of dumps we write of a live target, read through every reader API and
the CLI's `info` report. Only MinidumpFormatError may escape (and MemoryNotCaptured
from a memory read); the Python heap's peak per mutant stays linear in the file size
(tests/test_reader_fuzz.py's bound) and no mutant takes more than a hang guard.

A plain seeded mutator (reproducible: mutant i of a run is a function of the seed and
i), not hypothesis: at 100,000 mutants the bookkeeping of a property-based engine
costs more than the reading. Mutations: bit flips, byte runs set to 00/FF/random,
truncation, edge values (0, 1, 2**31, 2**32-1, the file size, ...) in the header,
directory and stream heads, directory entries redirected or retyped, and another
file's stream directory or stream spliced in.

A failing mutant is saved under the test's tmp directory (its path is in the failure)
so it can be read again by hand.
"""

from __future__ import annotations

import io
import random
import struct
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from collections.abc import Callable
from typing import Any

import pytest

import minidumpkit as mdk
from minidumpkit import MemoryNotCaptured, MinidumpFormatError
from minidumpkit.cli import _print_text, _Report
from oracles import FIXTURES
from test_reader_fuzz import ALLOC_CONSTANT, ALLOC_PER_BYTE, PROPERTIES

HANG_GUARD_S = 10.0  # per mutant: a hang guard, not a timing assert
MDMP = b"MDMP"


def fixture_files() -> list[Path]:
    """Every minidump under shared/fixtures (by content: the MDMP signature, whatever
    the file is called; the real-world set has .mdmp and extension-less files)."""
    out = []
    for folder in ("third-party", "wine", "real-world"):
        for path in sorted((FIXTURES / folder).rglob("*")):
            if path.is_file() and path.suffix not in (".md", ".tsv", ".yaml", ".json",
                                                      ".jsonl", ".log"):
                with open(path, "rb") as f:
                    if f.read(4) == MDMP:
                        out.append(path)
    return out


def test_every_fixture_folder_is_seeded() -> None:
    files = fixture_files()
    by_folder = Counter(p.relative_to(FIXTURES).parts[0] for p in files)
    assert by_folder["third-party"] == 9 and by_folder["wine"] == 3, by_folder
    # MANIFEST.tsv lists the real-world files; some are corrupt on purpose but all
    # start with the signature except those the manifest says are not minidumps
    manifest = (FIXTURES / "real-world" / "MANIFEST.tsv").read_text().splitlines()[1:]
    listed = {line.split("\t")[0] for line in manifest if line}
    seeded = {p.relative_to(FIXTURES / "real-world").as_posix() for p in files
              if p.relative_to(FIXTURES).parts[0] == "real-world"}
    assert seeded <= listed and len(seeded) >= len(listed) - 5, sorted(listed - seeded)


# --- the reader, every API ------------------------------------------------------------

def read_everything(source: bytes | Path,
                    before_report: Callable[[], None] | None = None) -> str:
    """Open and read everything a user can; only the reader's own errors may escape.
    Returns "refused at open" or "opened" (some streams may still have been refused)."""
    try:
        dump = mdk.open_minidump(source)
    except MinidumpFormatError:
        return "refused at open"
    with dump:
        for name in PROPERTIES:
            try:
                getattr(dump, name)
            except MinidumpFormatError:
                pass
        for s in dump.streams:
            try:
                dump.raw_stream(s.type)
                dump.stream(s.type)
            except MinidumpFormatError:
                pass
        try:
            threads = dump.threads
        except MinidumpFormatError:
            threads = []
        try:
            modules = dump.modules
        except MinidumpFormatError:
            modules = []
        try:
            memory = dump.memory
        except MinidumpFormatError:
            memory = None
        for t in threads[:64]:
            try:
                dump.thread(t.thread_id)
                _ = (t.context, t.name, t.pc, t.sp, len(t.stack))
            except MinidumpFormatError:
                pass
            if memory is not None and t.sp is not None:
                try:
                    memory.read(t.sp, 64)
                except MemoryNotCaptured:
                    pass
        for m in modules[:64]:
            try:
                _ = (m.name, m.code_id, m.debug_id, m.debug_file, m.build_id, m.version)
                dump.module_at(m.base)
            except MinidumpFormatError:
                pass
        try:
            exc = dump.exception
            if exc is not None:
                _ = (exc.reason, exc.context, exc.parameters, exc.crash_address)
        except MinidumpFormatError:
            pass
        if memory is not None:
            _ = memory.total_size
            for r in memory.ranges[:32]:
                memory.find(r.start)
                try:
                    memory.read(r.start, min(r.size, 256))
                    if r.size >= 8:
                        memory.read_u32(r.start)
                        memory.read_u64(r.start)
                except MemoryNotCaptured:
                    pass
        # what `minidumpkit info` builds and prints
        if before_report is not None:
            before_report()
        report = _Report(dump)
        data = report.build("mutant.dmp")
        _print_text(data, io.StringIO())
    return "opened"


# --- the mutator ----------------------------------------------------------------------

EDGES = (0, 1, 2, 12, 32, 0x7F, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFF0,
         0xFFFFFFFF)


class Seed:
    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.data = data
        self.directory: list[tuple[int, int, int, int]] = []  # (entry off, type, size, rva)
        if len(data) >= 32:
            count, rva = struct.unpack_from("<II", data, 8)
            for i in range(min(count, 256)):
                off = rva + 12 * i
                if off + 12 > len(data):
                    break
                self.directory.append((off, *struct.unpack_from("<III", data, off)))
        hot = [8, 12, 16, 24]
        for off, _, size, rva in self.directory:
            hot += [off, off + 4, off + 8]
            if size:
                hot += list(range(rva, min(rva + 64, len(data) - 8), 4))
        self.hot = [o for o in hot if o <= len(data) - 8] or [0]


def mutate(rng: random.Random, seed: Seed, seeds: list[Seed]) -> tuple[bytes, list[str]]:
    raw = bytearray(seed.data)
    ops: list[str] = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        op = rng.choice(("flip", "flip", "set", "truncate", "edge", "edge", "edge",
                         "redirect", "splice-directory", "splice-stream"))
        n = len(raw)
        if n < 8:
            op = "set"
        if op == "flip":
            for _ in range(rng.randint(1, 8)):
                pos = (rng.choice(seed.hot) + rng.randrange(8)) if rng.random() < 0.5 \
                    else rng.randrange(max(n, 1))
                if pos < n:
                    raw[pos] ^= 1 << rng.randrange(8)
        elif op == "set":
            pos = rng.randrange(max(n, 1))
            value = rng.choice((0, 0xFF, rng.randrange(256)))
            raw[pos:pos + rng.randint(1, 16)] = bytes([value]) * rng.randint(1, 16)
        elif op == "truncate":
            cut = rng.choice((rng.randrange(n), rng.choice(seed.hot), n - rng.randint(1, 64)))
            del raw[max(cut, 0):]
        elif op == "edge":
            pos = rng.choice(seed.hot)
            value = rng.choice((*EDGES, n, n - 1, n + 1, rng.randrange(1 << 32)))
            if pos + 8 <= n and rng.random() < 0.3:
                struct.pack_into("<Q", raw, pos, (value * rng.choice((1, 1 << 32))) % (1 << 64))
            elif pos + 4 <= n:
                struct.pack_into("<I", raw, pos, value)
        elif op == "redirect" and seed.directory:
            off, _, size, rva = rng.choice(seed.directory)
            targets = (0, 4, 12, off, n - 4, n, n + 16, 0xFFFFFFF0,
                       rng.choice(seed.directory)[3])
            if off + 12 <= n:
                struct.pack_into("<II", raw, off + 4,
                                 rng.choice((size, 0, 4, 12, n, 0xFFFFFFFF)),
                                 rng.choice(targets))
                if rng.random() < 0.3:  # retype: a duplicate of another stream's type
                    struct.pack_into("<I", raw, off, rng.choice(seed.directory)[1])
        elif op == "splice-directory":
            # another file's directory entries over ours: types and sizes from one file,
            # offsets meaningless in this one
            other = rng.choice(seeds)
            if seed.directory and other.directory and len(other.data) >= 16:
                count, rva = struct.unpack_from("<II", other.data, 8)
                entries = other.data[rva:rva + 12 * min(count, 64)]
                at = seed.directory[0][0]
                raw[at:at + len(entries)] = entries
                if rng.random() < 0.5:
                    struct.pack_into("<I", raw, 8, len(entries) // 12)
        elif op == "splice-stream":
            # another file's stream appended, and one of our entries pointed at it
            other = rng.choice(seeds)
            if seed.directory and other.directory:
                _, stype, size, rva = rng.choice(other.directory)
                body = other.data[rva:rva + min(size, 1 << 16)]
                off = rng.choice(seed.directory)[0]
                if off + 12 <= len(raw):
                    struct.pack_into("<III", raw, off, stype, len(body), len(raw))
                    raw += body
        ops.append(op)
    return bytes(raw), ops


# --- the run --------------------------------------------------------------------------

@pytest.fixture
def written_seeds(target_bins: dict[str, Path], start_target: Any,
                  tmp_path_factory: pytest.TempPathFactory) -> list[Seed]:
    """Dumps we write of a live mdk_target: MINI, Normal, TRIAGE, FULL, a snapshot."""
    work = tmp_path_factory.mktemp("fuzz-seeds")
    t = start_target([target_bins["mdk_target"], work / "known-file"])
    t.wait_parked("main", "reader", "sleeper", "regs", "futex")
    d = mdk.Dumper(t.pid)
    made = {"ours-MINI": d.write(work / "mini.dmp"),
            "ours-Normal": d.write(work / "normal.dmp", 0),
            "ours-TRIAGE": d.write(work / "triage.dmp", mdk.DumpType.TRIAGE),
            "ours-FULL": d.write(work / "full.dmp", mdk.DumpType.FULL),
            "ours-snapshot": d.write(work / "snap.dmp", snapshot="always")}
    return [Seed(name, path.read_bytes()) for name, path in made.items()]


def test_reader_fuzz(written_seeds: list[Seed], tmp_path: Path, scale: Any,
                     figures: dict[str, Any]) -> None:
    seeds = [Seed(p.relative_to(FIXTURES).as_posix(), p.read_bytes())
             for p in fixture_files()] + written_seeds
    for s in seeds:  # every seed itself, unmutated (and warm the lazy imports)
        read_everything(s.data)
    rng = random.Random(100_000)
    failures: dict[str, str] = {}
    outcomes: Counter[str] = Counter()
    ops_count: Counter[str] = Counter()
    per_seed: Counter[str] = Counter()
    slowest = (0.0, "")
    worst_ratio = 0.0
    on_disk = 0
    # the heap peak of every mutant at full scale; of every 5th in CI (tracemalloc makes
    # reading ~4x slower)
    heap_every = 1 if scale.name == "full" else 5
    heap_checked = 0
    started = time.perf_counter()
    try:
        for i in range(scale.mutants):
            seed = seeds[i % len(seeds)]  # every seed gets its share
            data, ops = mutate(rng, seed, seeds)
            ops_count.update(ops)
            per_seed[seed.name] += 1
            source: bytes | Path = data
            if i % 97 == 0:  # the path branch maps the file
                source = tmp_path / "mutant.dmp"
                source.write_bytes(data)
                on_disk += 1
            measured = i % heap_every == 0
            peaks: list[int] = []

            def stop_heap() -> None:
                # the reader's own peak; the CLI report is not held to the bound (see
                # docs/reliability.md: a damaged 264-module dump's report peaks ~35x)
                peaks.append(tracemalloc.get_traced_memory()[1])
                tracemalloc.stop()
            if measured:
                tracemalloc.start()
            t0 = time.perf_counter()
            try:
                outcomes[read_everything(source, stop_heap if measured else None)] += 1
            except MinidumpFormatError:  # cannot happen: read_everything catches them
                outcomes["MinidumpFormatError escaped"] += 1
            except MemoryNotCaptured:  # outside a memory read: not allowed
                outcomes["MemoryNotCaptured escaped"] += 1
                _keep(failures, i, seed, ops, data, tmp_path, "MemoryNotCaptured")
            except Exception as exc:  # any other escape is a bug
                outcomes[f"{type(exc).__name__}"] += 1
                tb = exc.__traceback__
                while tb is not None and tb.tb_next is not None:
                    tb = tb.tb_next
                where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else "?"
                _keep(failures, i, seed, ops, data, tmp_path,
                      f"{type(exc).__name__} at {where}: {exc}")
            elapsed = time.perf_counter() - t0
            if measured:
                if tracemalloc.is_tracing():
                    stop_heap()
                peak = peaks[0]
                heap_checked += 1
                bound = ALLOC_PER_BYTE * len(data) + ALLOC_CONSTANT
                worst_ratio = max(worst_ratio, peak / bound)
                if peak > bound:
                    _keep(failures, i, seed, ops, data, tmp_path,
                          f"peak allocation {peak} bytes for {len(data)} bytes")
            if elapsed > slowest[0]:
                slowest = (elapsed, f"mutant {i} of {seed.name} ({'+'.join(ops)})")
            if elapsed > HANG_GUARD_S:
                _keep(failures, i, seed, ops, data, tmp_path, f"took {elapsed:.1f} s")
    finally:
        if tracemalloc.is_tracing():
            tracemalloc.stop()
    figures["fuzz"] = {
        "mutants": scale.mutants, "seeds": len(seeds),
        "seeds by folder": dict(Counter(s.name.split("/")[0] if "/" in s.name else "ours"
                                        for s in seeds)),
        "read from a file (mmap)": on_disk, "outcomes": dict(outcomes),
        "mutations": dict(ops_count), "seconds": round(time.perf_counter() - started, 1),
        "slowest mutant s": [round(slowest[0], 3), slowest[1]],
        "heap peak measured (mutants)": heap_checked,
        "largest heap peak / bound": round(worst_ratio, 3),
        "failures (distinct)": failures,
    }
    assert min(per_seed.values()) >= scale.mutants // len(seeds)
    assert not failures, "\n".join(f"{k}: {v}" for k, v in failures.items())


def _keep(failures: dict[str, str], i: int, seed: Seed, ops: list[str], data: bytes,
          tmp_path: Path, what: str) -> None:
    """Record a distinct failure (by its description) with a saved copy of the mutant."""
    key = what.split(": ")[0] if " at " in what else what[:60]
    if key in failures:
        return
    path = tmp_path / f"failing-{i}.dmp"
    path.write_bytes(data)
    failures[key] = f"{what} (mutant {i} of {seed.name}, {'+'.join(ops)}; saved as {path})"


if __name__ == "__main__":  # read one saved mutant: python tests/stress/test_fuzz.py FILE
    read_everything(Path(sys.argv[1]))
