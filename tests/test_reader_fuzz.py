"""Malformed input: mutated fixtures give MinidumpFormatError and nothing else.

Each example takes a fixture, damages it (truncation, bit flips, huge counts,
out-of-file / overlapping / self-referencing RVAs), opens it and touches every
property, every thread stack and some memory. The only exceptions allowed are
MinidumpFormatError (and MemoryNotCaptured from ``memory.read``); anything else
fails the test, a hang trips pytest-timeout, and for the structural mutations
tracemalloc checks that the reader's peak allocation stays linear in the file size.

Examples are derandomized (reproducible in CI) and few: about 500 in total.
"""

from __future__ import annotations

import struct
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minidumpkit
from minidumpkit import MemoryNotCaptured, MinidumpFormatError, StreamType
from oracles import FIXTURES

FILES = sorted((FIXTURES / "third-party").glob("*.dmp")) + sorted((FIXTURES / "wine").glob("*.dmp"))
DATA = {p.name: p.read_bytes() for p in FILES}
NAMES = sorted(DATA)

PROPERTIES = ("system_info", "misc_info", "threads", "thread_names", "modules",
              "unloaded_modules", "exception", "memory_info", "thread_info", "handles",
              "linux_cpuinfo", "linux_proc_status", "linux_lsb_release", "linux_cmdline",
              "linux_environ", "linux_auxv", "linux_maps", "linux_dso_debug", "process_id",
              "minidumpkit_info")

# Peak Python allocation allowed per byte of input, plus a constant. Parsed objects cost
# more than the bytes they come from (a 16-byte memory descriptor becomes a MemoryRange
# of ~150 bytes), so the bound is linear, not 1:1; a count taken on trust would blow it.
ALLOC_PER_BYTE = 10
ALLOC_CONSTANT = 1 << 20

FUZZ = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def exercise(source: bytes | Path) -> None:
    """Open and read everything; only the reader's own errors may escape."""
    try:
        dump = minidumpkit.open_minidump(source)
    except MinidumpFormatError:
        return
    with dump:
        for name in PROPERTIES:
            try:
                getattr(dump, name)
            except MinidumpFormatError:
                pass
        try:
            threads = dump.threads
        except MinidumpFormatError:
            threads = []
        for t in threads:
            try:
                assert len(t.stack) == t.stack_size
            except MinidumpFormatError:
                pass
        for s in dump.streams:
            try:
                dump.raw_stream(s.type)
            except MinidumpFormatError:
                pass
        try:
            memory = dump.memory
        except MinidumpFormatError:
            return
        for r in memory.ranges[:32]:
            try:
                assert len(memory.read(r.start, min(r.size, 256))) == min(r.size, 256)
            except MemoryNotCaptured:
                pass  # only a range running past 2**64 can do this
        for t in threads:
            if t.sp is not None:
                try:
                    memory.read(t.sp, 64)
                except MemoryNotCaptured:
                    pass


def exercise_bounded(data: bytes) -> None:
    """exercise() under tracemalloc: the peak must be linear in the input size."""
    tracemalloc.start()
    try:
        exercise(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= ALLOC_PER_BYTE * len(data) + ALLOC_CONSTANT, (
        f"peak allocation {peak} bytes for a {len(data)}-byte input")


@pytest.fixture(scope="module", autouse=True)
def _warm_imports() -> None:
    exercise(DATA[NAMES[0]])  # lazy imports are not the reader's allocations


def test_unmodified_fixtures_stay_within_the_allocation_bound() -> None:
    for name in NAMES:
        exercise_bounded(DATA[name])


# --- truncation ----------------------------------------------------------------------------

@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", NAMES)
@settings(FUZZ, max_examples=15)
@given(data=st.data())
def test_truncated(name: str, data: st.DataObject) -> None:
    raw = DATA[name]
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
    exercise(raw[:cut])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", NAMES[::4])
@settings(FUZZ, max_examples=6)
@given(data=st.data())
def test_truncated_file_on_disk(name: str, data: st.DataObject) -> None:
    # the path branch maps the file: a short mapping must be as safe as short bytes
    raw = DATA[name]
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cut.dmp"
        path.write_bytes(raw[:cut])
        exercise(path)


# --- bit flips -----------------------------------------------------------------------------

@pytest.mark.timeout(180)
@settings(FUZZ, max_examples=150)
@given(name=st.sampled_from(NAMES), data=st.data())
def test_bit_flips(name: str, data: st.DataObject) -> None:
    raw = bytearray(DATA[name])
    # half of the flips land in the header, directory and stream headers, where they matter
    hot = _structural_offsets(name)
    for _ in range(data.draw(st.integers(1, 8), label="flips")):
        if data.draw(st.booleans(), label="hot"):
            pos = data.draw(st.sampled_from(hot), label="hot pos") + data.draw(st.integers(0, 7))
        else:
            pos = data.draw(st.integers(0, len(raw) - 1), label="pos")
        pos = min(pos, len(raw) - 1)
        raw[pos] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    exercise(bytes(raw))


# --- structural damage ---------------------------------------------------------------------

def _directory(name: str) -> list[tuple[int, int, int, int]]:
    """(entry offset, stream type, size, rva) of each directory entry, read with struct."""
    raw = DATA[name]
    count, dir_rva = struct.unpack_from("<II", raw, 8)
    return [(dir_rva + 12 * i, *struct.unpack_from("<III", raw, dir_rva + 12 * i))
            for i in range(count)]


def _structural_offsets(name: str) -> list[int]:
    """Header count/RVA fields, every directory field, and the first 64 bytes of every
    stream (list counts, entry sizes, header RVAs live there)."""
    offsets = [8, 12, 16, 24]
    for entry, _, size, rva in _directory(name):
        offsets += [entry, entry + 4, entry + 8]
        if size:
            offsets += list(range(rva, min(rva + 64, len(DATA[name]) - 8), 4))
    return [o for o in offsets if o < len(DATA[name]) - 8]


def _edge_values(size: int) -> st.SearchStrategy[int]:
    return st.sampled_from([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0x10000000, size,
                            size - 1, size - 4, size + 1, 12, 32, 0xFFFF])


@pytest.mark.timeout(240)
@settings(FUZZ, max_examples=150)
@given(name=st.sampled_from(NAMES), data=st.data())
def test_huge_counts_and_wild_fields(name: str, data: st.DataObject) -> None:
    raw = bytearray(DATA[name])
    for _ in range(data.draw(st.integers(1, 3), label="writes")):
        pos = data.draw(st.sampled_from(_structural_offsets(name)), label="field")
        value = data.draw(st.one_of(_edge_values(len(raw)), st.integers(0, 0xFFFFFFFF)),
                          label="value")
        if data.draw(st.booleans(), label="64-bit"):
            struct.pack_into("<Q", raw, pos, value * data.draw(
                st.sampled_from([1, 1 << 32, 0xFFFFFFFF]), label="scale") & (2**64 - 1))
        else:
            struct.pack_into("<I", raw, pos, value)
    exercise_bounded(bytes(raw))


@pytest.mark.timeout(240)
@settings(FUZZ, max_examples=80)
@given(name=st.sampled_from(NAMES), data=st.data())
def test_redirected_streams(name: str, data: st.DataObject) -> None:
    """Point directory entries at the directory itself, at the header, at each other
    (overlaps), at the end of the file, or past it."""
    raw = bytearray(DATA[name])
    directory = _directory(name)
    dir_rva = struct.unpack_from("<I", raw, 12)[0]
    targets = [0, 4, dir_rva, dir_rva + 12, len(raw) - 4, len(raw), len(raw) + 16,
               0xFFFFFFF0] + [rva for _, _, _, rva in directory]
    for _ in range(data.draw(st.integers(1, 4), label="entries")):
        entry, _, size, _ = data.draw(st.sampled_from(directory), label="entry")
        rva = data.draw(st.sampled_from(targets), label="rva")
        new_size = data.draw(st.sampled_from([size, 0, 4, 12, len(raw), 0xFFFFFFFF]),
                             label="size")
        struct.pack_into("<II", raw, entry + 4, new_size, rva)
        if data.draw(st.booleans(), label="retype"):  # duplicate another stream's type
            other = data.draw(st.sampled_from(directory), label="as")
            struct.pack_into("<I", raw, entry, other[1])
    exercise_bounded(bytes(raw))


def test_directory_pointing_into_the_header() -> None:
    for name in NAMES:
        raw = bytearray(DATA[name])
        struct.pack_into("<II", raw, 8, 3, 0)  # 3 "entries" read from the header itself
        exercise_bounded(bytes(raw))
        struct.pack_into("<II", raw, 8, 0xFFFFFFFF, 32)
        with pytest.raises(MinidumpFormatError) as info:
            minidumpkit.open_minidump(bytes(raw))
        assert info.value.offset == 32


# --- targeted cases with a definite answer -------------------------------------------------

def _stream_offset(name: str, stream: int) -> tuple[int, int]:
    entry = next(e for e in _directory(name) if e[1] == stream)
    return entry[3], entry[2]


@pytest.mark.parametrize("stream,counted", [
    (StreamType.ThreadListStream, "threads"),
    (StreamType.ModuleListStream, "modules"),
    (StreamType.MemoryListStream, "memory"),
])
def test_huge_list_count_is_refused_before_allocating(stream: StreamType, counted: str) -> None:
    name = "windows-x86_64-dbghelp-fastfail.dmp"
    raw = bytearray(DATA[name])
    rva, _ = _stream_offset(name, stream)
    struct.pack_into("<I", raw, rva, 0xFFFFFFFF)
    tracemalloc.start()
    try:
        with minidumpkit.open_minidump(bytes(raw)) as d, \
                pytest.raises(MinidumpFormatError) as info:
            getattr(d, counted)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.stream_type == stream and info.value.offset == rva
    assert "4294967295 entries" in str(info.value)
    assert peak < ALLOC_CONSTANT


def test_memory64_list_past_the_end_of_the_file() -> None:
    # A Memory64List assembled with raw struct (not our writer) in an UnusedStream slot
    # of a fixture: two 16-byte... then one range made to claim 1 TiB.
    name = "generated-breakpad-linux-x86_64-3threads-live.dmp"
    base = bytearray(DATA[name])
    end = len(base)
    entry = next(e for e in _directory(name) if e[1] == 0)[0]
    head = struct.pack("<QQ", 2, end + 48)  # count, BaseRva (data right after the list)

    def build(second_size: int) -> bytes:
        raw = bytearray(base)
        body = head + struct.pack("<QQQQ", 0x10000, 16, 0x20000, second_size)
        struct.pack_into("<III", raw, entry, StreamType.Memory64ListStream, len(body), end)
        return bytes(raw + body + b"A" * 16 + b"B" * 16)

    with minidumpkit.open_minidump(build(1 << 40)) as d:
        assert d.threads  # the rest of the dump stays readable
        with pytest.raises(MinidumpFormatError) as info:
            d.memory
        assert info.value.stream_type == StreamType.Memory64ListStream
        assert info.value.offset == end + 48 + 16
    with minidumpkit.open_minidump(build(16)) as d:
        assert d.memory.read(0x10000, 16) == b"A" * 16
        assert d.memory.read(0x20008, 8) == b"B" * 8
        with pytest.raises(MemoryNotCaptured):
            d.memory.read(0x10000, 17)
        assert [(r.start, r.size, r.rva) for r in d.memory.ranges][-2:] == [
            (0x10000, 16, end + 48), (0x20000, 16, end + 64)]


@pytest.mark.parametrize("mutate,message", [
    (lambda raw: raw.__setitem__(slice(0, 4), b"XXXX"), "signature"),
    (lambda raw: raw.__setitem__(slice(0, 4), b"PMDM"), "big-endian"),
    (lambda raw: raw.__setitem__(slice(4, 6), b"\x00\x00"), "version"),
    (lambda raw: raw.__delitem__(slice(31, None)), "header"),
])
def test_not_a_minidump(mutate: Callable[[bytearray], None], message: str) -> None:
    raw = bytearray(DATA[NAMES[0]])
    mutate(raw)
    with pytest.raises(MinidumpFormatError, match=message):
        minidumpkit.open_minidump(bytes(raw))


def test_empty_inputs(tmp_path: Path) -> None:
    with pytest.raises(MinidumpFormatError):
        minidumpkit.open_minidump(b"")
    empty = tmp_path / "empty.dmp"
    empty.write_bytes(b"")
    with pytest.raises(MinidumpFormatError):
        minidumpkit.open_minidump(empty)
    with pytest.raises(FileNotFoundError):
        minidumpkit.open_minidump(tmp_path / "missing.dmp")
    with pytest.raises(TypeError):
        minidumpkit.open_minidump(1234)  # type: ignore[arg-type]


def test_string_longer_than_a_unicode_string_is_refused() -> None:
    """A module name whose length field says 0x10000 bytes (one more than any Windows
    UNICODE_STRING holds) is damage: refused, not copied and decoded (a fuzz mutant of a
    264-module dump made each of them decode most of the file); 0xFFFE is accepted."""
    name = "windows-x86_64-dbghelp-fastfail.dmp"
    rva, _ = _stream_offset(name, StreamType.ModuleListStream)
    base = bytearray(DATA[name])
    name_rva = struct.unpack_from("<I", base, rva + 4 + 20)[0]  # first module's ModuleNameRva
    end = len(base)
    for length, refused in ((0x10000, True), (0xFFFE, False)):
        raw = bytearray(base) + b"\0" * 4 + "A".encode("utf-16-le") * (length // 2)
        struct.pack_into("<I", raw, rva + 4 + 20, end)  # the name: at the end, that long
        struct.pack_into("<I", raw, end, length)
        with minidumpkit.open_minidump(bytes(raw)) as d:
            if refused:
                with pytest.raises(MinidumpFormatError, match="claims 65536 bytes") as info:
                    d.modules
                assert info.value.offset == end
            else:
                assert d.modules[0].name == "A" * (0xFFFE // 2)
    assert name_rva  # the fixture's own name was somewhere else
