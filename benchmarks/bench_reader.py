"""Reader benchmark: open a >= 1 GiB full-memory minidump and read it at random.

    python benchmarks/bench_reader.py [--size-gib 1] [--range-kib 64] [--reads 10000]

Builds a synthetic dump with format.py's records into a temporary file: a header,
SystemInfo, MiscInfo, a ThreadList (8 threads with AMD64 contexts), a ModuleList (24
modules with ELF build ids) and a Memory64List of ``size / range`` ranges (groups of
four abutting ranges, then a gap). The memory is a sparse file: zero except for an
8-byte marker at every 4 KiB page, so the file costs little disk and each read can be
checked. Then it measures

* open + ``threads`` + ``modules`` (+ ``system_info``), median of repeated runs;
* building the memory index (first use of ``memory``);
* ``memory.read(address, 64)`` at random captured addresses: median and p99;
* the same reads done directly, ``mmap`` slicing at the precomputed file offsets
  (no lookup at all): the floor, and the ratio of ours to it.

Not a test (no timed asserts in tests): run it by hand; it prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import mmap
import os
import random
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import Comparison

import minidumpkit
from minidumpkit import DumpType, StreamType
from minidumpkit import format as md

PAGE = 4096
BASE_ADDRESS = 0x7F00_0000_0000


def marker(address: int) -> bytes:
    return struct.pack("<Q", address ^ 0x5A5A_5A5A_5A5A_5A5A)


def build(path: Path, total: int, range_size: int, threads: int = 8, modules: int = 24) -> \
        list[tuple[int, int, int]]:
    """Write the dump; return (address, size, file offset) of every memory range."""
    count = total // range_size
    addresses = []
    address = BASE_ADDRESS
    for i in range(count):
        addresses.append(address)
        address += range_size + (range_size if i % 4 == 3 else 0)  # a gap after every 4th

    out = bytearray()
    stream_types = [StreamType.SystemInfoStream, StreamType.MiscInfoStream,
                    StreamType.ThreadListStream, StreamType.ModuleListStream,
                    StreamType.Memory64ListStream]
    directory_rva = md.Header.SIZE
    out += bytes(md.Header.SIZE + md.Directory.SIZE * len(stream_types))
    locations: dict[StreamType, md.Location] = {}

    def put(data: bytes) -> int:
        rva = len(out)
        out.extend(data)
        out.extend(bytes(-len(out) % 8))
        return rva

    csd = put(md.pack_string("bench"))
    sysinfo = dataclasses.replace(
        md.SystemInfo.zero(), processor_architecture=md.ProcessorArchitecture.AMD64,
        processor_level=25, number_of_processors=2, major_version=6, minor_version=18,
        platform_id=md.PlatformId.LINUX, csd_version_rva=csd)
    locations[StreamType.SystemInfoStream] = md.Location(md.SystemInfo.SIZE, put(sysinfo.pack()))
    misc = md.MiscInfo(md.MiscInfo.SIZE, md.MiscInfoFlags.PROCESS_ID, 4242, 0, 0, 0)
    locations[StreamType.MiscInfoStream] = md.Location(md.MiscInfo.SIZE, put(misc.pack()))

    contexts = []
    for i in range(threads):
        stack = addresses[(i * 37) % count]
        ctx = dataclasses.replace(md.ContextAMD64.zero(), context_flags=md.CONTEXT_AMD64_ALL,
                                  rip=0x5555_0000_1000 + i, rsp=stack + 256, rbp=stack + 512)
        contexts.append((stack, put(ctx.pack())))
    names = [put(md.pack_string(f"/usr/lib/libbench{i}.so")) for i in range(modules)]
    cvs = [put(b"LEpB" + bytes(range(i, i + 20))) for i in range(modules)]

    # the lists have known sizes: reserve them, place the memory, then fill them in
    thread_rva = put(bytes(4 + threads * md.Thread.SIZE))
    module_rva = put(bytes(4 + modules * md.Module.SIZE))
    mem64_rva = len(out)
    mem64 = bytearray(md.Memory64ListHeader(count, 0).pack())
    for a in addresses:
        mem64 += md.MemoryDescriptor64(a, range_size).pack()
    data_rva = (mem64_rva + len(mem64) + PAGE - 1) // PAGE * PAGE
    mem64[:md.Memory64ListHeader.SIZE] = md.Memory64ListHeader(count, data_rva).pack()
    out += mem64
    locations[StreamType.Memory64ListStream] = md.Location(len(mem64), mem64_rva)
    ranges = [(a, range_size, data_rva + i * range_size) for i, a in enumerate(addresses)]
    offset_of = {a: off for a, _, off in ranges}

    thread_list = struct.pack("<I", threads)
    for i, (stack, ctx_rva) in enumerate(contexts):
        thread_list += md.Thread(
            1000 + i, 0, 0, 0, 0,
            md.MemoryDescriptor(stack, md.Location(range_size, offset_of[stack])),
            md.Location(md.ContextAMD64.SIZE, ctx_rva)).pack()
    out[thread_rva:thread_rva + len(thread_list)] = thread_list
    locations[StreamType.ThreadListStream] = md.Location(len(thread_list), thread_rva)
    module_list = struct.pack("<I", modules)
    for i in range(modules):
        module_list += dataclasses.replace(
            md.Module.zero(), base_of_image=0x5555_0000_0000 + i * 0x100000,
            size_of_image=0x80000, module_name_rva=names[i],
            cv_record=md.Location(24, cvs[i])).pack()
    out[module_rva:module_rva + len(module_list)] = module_list
    locations[StreamType.ModuleListStream] = md.Location(len(module_list), module_rva)

    header = md.Header(md.SIGNATURE, md.VERSION, len(stream_types), directory_rva, 0,
                       int(time.time()), int(DumpType.FULL))
    out[:md.Header.SIZE] = header.pack()
    for i, st in enumerate(stream_types):
        entry = md.Directory(st, locations[st]).pack()
        out[directory_rva + i * 12:directory_rva + (i + 1) * 12] = entry

    with open(path, "wb") as f:
        f.write(out)
        f.truncate(data_rva + count * range_size)  # sparse: holes read as zeros
        for a, size, off in ranges:
            for page in range(0, size, PAGE):
                f.seek(off + page)
                f.write(marker(a + page))
    return ranges


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def measure(size_gib: float = 1.0, range_kib: int = 64, reads: int = 10_000, opens: int = 20,
            directory: str | None = None, keep: bool = False) -> dict[str, object]:
    """Build the dump, time it; every sample (seconds or ns) in a dict."""
    total = int(size_gib * (1 << 30))
    range_size = range_kib * 1024
    fd, name = tempfile.mkstemp(suffix=".dmp", prefix="mdk-bench-",
                                dir=directory or tempfile.gettempdir())
    os.close(fd)
    path = Path(name)
    try:
        t0 = time.perf_counter()
        ranges = build(path, total, range_size)
        build_s = time.perf_counter() - t0
        size = path.stat().st_size
        rng = random.Random(2)

        with minidumpkit.open_minidump(path) as warm:  # imports and page cache
            warm.threads, warm.modules, warm.system_info
        open_s = []
        for _ in range(opens):
            t = time.perf_counter()
            with minidumpkit.open_minidump(path) as d:
                threads, modules = d.threads, d.modules
                d.system_info
            open_s.append(time.perf_counter() - t)
        assert len(threads) == 8 and len(modules) == 24

        d = minidumpkit.open_minidump(path)
        t = time.perf_counter()
        memory = d.memory
        index_s = time.perf_counter() - t
        assert len(memory) == len(ranges) and memory.total_size == len(ranges) * range_size
        for t_ in d.threads:
            assert t_.stack[:8] == marker(t_.stack_start)

        picks = []
        for _ in range(reads):
            a, sz, off = ranges[rng.randrange(len(ranges))]
            delta = rng.randrange(0, sz - 64)
            picks.append((a + delta, off + delta))
        for a, _ in picks[:200]:  # correctness: the page markers come back
            page = a - (a - BASE_ADDRESS) % PAGE
            assert memory.read(page, 8) == marker(page)

        clock = time.perf_counter_ns
        with open(path, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        for _, off in picks:  # fault every page in first, so neither side pays for it
            mm[off:off + 64]
        read = memory.read

        def timed(fn: Callable[[int], object], args: list[int]) -> list[int]:
            out = []
            for arg in args:
                t1 = clock()
                fn(arg)
                out.append(clock() - t1)
            return out

        addrs = [a for a, _ in picks]
        offs = [o for _, o in picks]
        # each loop twice, keeping the second: the first pays for warming caches and clocks
        for _ in range(2):
            ours = timed(lambda a: read(a, 64), addrs)
            raw = timed(lambda o: mm[o:o + 64], offs)
        mm.close()
        # spanning reads: across the seam of two abutting ranges
        seams = [(ranges[i][0] + range_size - 32) for i in range(0, len(ranges) - 1, 4)]
        for _ in range(2):
            span = timed(lambda a: read(a, 64), seams[: reads // 10])
        d.close()
    finally:
        if keep:
            print(f"kept {path}")
        else:
            path.unlink(missing_ok=True)
    return {"size": size, "ranges": len(ranges), "range_kib": range_kib, "build_s": build_s,
            "open_s": open_s, "index_s": index_s, "read_ns": ours, "mmap_ns": raw,
            "span_ns": span}


def comparisons(r: dict[str, Any]) -> list[Comparison]:
    dump = f"{r['size'] / (1 << 30):.2f} GiB dump, {r['ranges']} Memory64 ranges"
    return [
        Comparison("bench_reader", f"memory.read(address, 64), {dump}", "minidumpkit",
                   [n / 1e3 for n in r["read_ns"]], "us", "raw mmap slice at a known offset",
                   [n / 1e3 for n in r["mmap_ns"]]),
        Comparison("bench_reader", f"open + threads + modules + system_info, {dump}",
                   "minidumpkit", [x * 1e3 for x in r["open_s"]], "ms"),
        Comparison("bench_reader", f"memory index, first use, {dump}", "minidumpkit",
                   [r["index_s"] * 1e3], "ms"),
    ]


def run(quick: bool = False, **options: Any) -> list[Comparison]:
    """The structured results (run_all.py); ``quick``: a 0.25 GiB dump, fewer reads."""
    if quick:
        options = {"size_gib": 0.25, "reads": 2000, "opens": 5, **options}
    return comparisons(measure(**options))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--range-kib", type=int, default=64)
    parser.add_argument("--reads", type=int, default=10_000)
    parser.add_argument("--opens", type=int, default=20)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--keep", action="store_true", help="keep the generated dump")
    args = parser.parse_args(argv)
    r: dict[str, Any] = measure(args.size_gib, args.range_kib, args.reads, args.opens,
                                args.dir, args.keep)
    opens, ours, raw, span = r["open_s"], r["read_ns"], r["mmap_ns"], r["span_ns"]
    med_ours, med_raw = statistics.median(ours), statistics.median(raw)
    rows = [
        ("dump file", f"{r['size'] / (1 << 30):.2f} GiB, {r['ranges']} Memory64 ranges "
                      f"of {args.range_kib} KiB (built in {r['build_s']:.1f} s)"),
        ("open + threads + modules", f"median {statistics.median(opens) * 1e3:.2f} ms, "
                                     f"max {max(opens) * 1e3:.2f} ms ({args.opens} runs)"),
        ("memory index (first use)", f"{r['index_s'] * 1e3:.1f} ms for {r['ranges']} ranges"),
        ("memory.read(addr, 64)", f"median {med_ours / 1e3:.2f} us, "
                                  f"p99 {percentile(ours, 99) / 1e3:.2f} us ({len(ours)} reads)"),
        ("raw mmap slice, 64 B", f"median {med_raw / 1e3:.2f} us, "
                                 f"p99 {percentile(raw, 99) / 1e3:.2f} us"),
        ("ours / raw (median)", f"{med_ours / med_raw:.1f}x"),
        ("read across a seam, 64 B", f"median {statistics.median(span) / 1e3:.2f} us, "
                                     f"p99 {percentile(span, 99) / 1e3:.2f} us "
                                     f"({len(span)} reads)"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"minidumpkit reader benchmark (Python {sys.version.split()[0]})")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
