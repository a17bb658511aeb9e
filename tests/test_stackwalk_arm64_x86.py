"""The arm64 and x86 walkers on synthetic stacks built here byte by byte.

Each dump is assembled with plain ``struct`` from the format's definitions (not with
minidumpkit's writer or format.py), and every expected frame follows from how the stack
was built: frame records with pointer-authentication bits, return addresses after
BL/BLR instructions (or not), Breakpad STACK CFI for arm64 and x86, STACK WIN frame data
and FPO records for x86. rust-minidump's ``minidump-stackwalk`` walks the same files
(with the same Breakpad store) and must find the same frames by the same method; the
real-world arm64 threads are compared with it in tests/test_stackwalk.py.
"""

from __future__ import annotations

import json
import struct
import uuid
from pathlib import Path

import pytest

import minidumpkit
from minidumpkit import MinidumpFormatError
from minidumpkit.analysis import FrameTrust, walk_stack
from minidumpkit.analysis.breakpad import BreakpadError, evaluate_win
from oracles import run

ARM64, X86 = 12, 0
MACOS, WIN32_NT = 0x8101, 2
APP_GUID = uuid.UUID("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
APP_DEBUG_ID = APP_GUID.hex.upper() + "1"  # age 1

BL = 0x94000010  # bl #0x40
BLR_X8 = 0xD63F0100  # blr x8
BLRAA = 0xD63F0900  # blraa x8, x0
NOP = 0xD503201F


def _string(text: str) -> bytes:
    data = text.encode("utf-16-le")
    return struct.pack("<I", len(data)) + data + b"\0\0"


def build_dump(arch: int, platform: int, context: bytes, stack: tuple[int, bytes],
               modules: list[tuple[int, int, str, str]], memory: list[tuple[int, bytes]],
               ) -> bytes:
    """A minidump with SystemInfo, one thread, modules (base, size, name, pdb name; a
    CV_INFO_PDB70 record with APP_GUID, age 1) and MemoryList (the stack first)."""
    blobs = bytearray()
    base = 32 + 4 * 12  # header, four directory entries

    def put(data: bytes) -> int:
        rva = base + len(blobs)
        blobs.extend(data)
        while len(blobs) % 8:
            blobs.append(0)
        return rva

    context_rva = put(context)
    ranges = [stack, *memory]
    range_rvas = [put(data) for _, data in ranges]
    module_entries = b""
    for mod_base, size, name, pdb in modules:
        name_rva = put(_string(name))
        cv = b"RSDS" + APP_GUID.bytes_le + struct.pack("<I", 1) + pdb.encode() + b"\0"
        cv_rva = put(cv)
        module_entries += (struct.pack("<QIIII", mod_base, size, 0, 0, name_rva) + bytes(52)
                           + struct.pack("<IIII", len(cv), cv_rva, 0, 0) + bytes(16))
    system = struct.pack("<HHHBBIIIIIHH24s", arch, 8, 0, 1, 1, 10, 0, 0, platform, 0, 0, 0,
                         bytes(24))
    system_rva = put(system)
    thread = struct.pack("<IIIIQQIIII", 0x1234, 0, 0, 0, 0, stack[0], len(stack[1]),
                         range_rvas[0], len(context), context_rva)
    thread_rva = put(struct.pack("<I", 1) + thread)
    module_rva = put(struct.pack("<I", len(modules)) + module_entries)
    mem = struct.pack("<I", len(ranges)) + b"".join(
        struct.pack("<QII", start, len(data), rva) for (start, data), rva in
        zip(ranges, range_rvas))
    memory_rva = put(mem)
    directory = b"".join(struct.pack("<III", kind, size, rva) for kind, size, rva in (
        (7, len(system), system_rva), (3, 4 + len(thread), thread_rva),
        (4, 4 + len(module_entries), module_rva), (5, len(mem), memory_rva)))
    header = struct.pack("<IIIIIIQ", 0x504D444D, 0xA793, 4, 32, 0, 0, 0)
    return header + directory + bytes(blobs)


def arm64_context(pc: int, sp: int, fp: int, lr: int = 0) -> bytes:
    """ARM64_NT_CONTEXT: flags, cpsr, x0..x30, sp, pc, v0..v31, fpcr, fpsr, debug regs."""
    x = [0] * 31
    x[29], x[30] = fp, lr
    return (struct.pack("<II31QQQ", 0x00400007, 0, *x, sp, pc) + bytes(512)
            + struct.pack("<II8I8Q2I2Q", *([0] * 22)))


def x86_context(eip: int, esp: int, ebp: int) -> bytes:
    """CONTEXT (x86): flags, dr0-3/6/7, FLOATING_SAVE_AREA, segments, gprs, ..."""
    regs = struct.pack("<4I6I6I", 0, 0, 0, 0,  # gs fs es ds
                       0, 0, 0, 0, 0, 0,  # edi esi ebx edx ecx eax
                       ebp, eip, 0x23, 0x202, esp, 0x2B)
    return struct.pack("<7I", 0x0001003F, 0, 0, 0, 0, 0, 0) + bytes(112) + regs + bytes(512)


def words(start: int, size: int, values: dict[int, int], width: int = 8) -> bytes:
    out = bytearray(size)
    for address, value in values.items():
        struct.pack_into("<Q" if width == 8 else "<I", out, address - start, value)
    return bytes(out)


def code(start: int, size: int, instructions: dict[int, int]) -> bytes:
    return words(start, size, instructions, width=4)


def rust_frames(path: Path, store: Path | None) -> list[tuple[int, str]]:
    """minidump-stackwalk's (instruction address, trust) of the one thread."""
    args: list[str | Path] = ["--json", path]
    if store is not None:
        args += ["--symbols-path", store]
    data = json.loads(run("minidump-stackwalk", *args, check=True).stdout)
    return [(int(f["offset"], 16), f["trust"]) for f in data["threads"][0]["frames"]]


def walk(tmp_path: Path, data: bytes, store: Path | None = None) -> list[tuple[int, int, str]]:
    """Our frames (pc, sp, trust), after checking that minidump-stackwalk finds the same
    ones (its address is the return address - 4 on arm64, - 1 on x86, for callers)."""
    path = tmp_path / "synthetic.dmp"
    path.write_bytes(data)
    with minidumpkit.open_minidump(path) as dump:
        stack = walk_stack(dump, dump.threads[0], use_local_files=False,
                           symbol_paths=[store] if store else ())
        assert stack.status == "ok", stack.status
        assert dump.system_info is not None
        back = 4 if dump.system_info.cpu == "arm64" else 1
        ours = [(f.pc - back * (f.index > 0), f.trust.value) for f in stack.frames]
        assert ours == rust_frames(path, store)
        return [(f.pc, f.sp, f.trust.value) for f in stack.frames]


APP = 0x1_0000_0000
STACK = 0x16F_000_000
PAC = 0x002A_0000_0000_0000  # pointer-authentication bits above bit 47


# --- arm64 ------------------------------------------------------------------------------

def test_arm64_frame_records_with_pointer_authentication(tmp_path: Path) -> None:
    s = STACK
    stack = words(s, 0x200, {
        s + 0x20: (s + 0x60) | PAC, s + 0x28: (APP + 0x204) | PAC,
        s + 0x60: s + 0xA0, s + 0x68: (APP + 0x308) | PAC,
        s + 0xA0: 0, s + 0xA8: APP + 0x404,
    })
    text = code(APP, 0x1000, {APP + 0x200: BL, APP + 0x304: BLR_X8, APP + 0x400: BL})
    dump = build_dump(ARM64, MACOS, arm64_context(APP + 0x100, s, s + 0x20),
                      (s, stack), [(APP, 0x10000, "/usr/bin/app", "app")], [(APP, text)])
    frames = walk(tmp_path, dump)
    assert frames == [(APP + 0x100, s, "context"),
                      (APP + 0x204, s + 0x30, "frame_pointer"),
                      (APP + 0x308, s + 0x70, "frame_pointer"),
                      (APP + 0x404, s + 0xB0, "frame_pointer")]


def test_arm64_scan_accepts_only_returns_after_a_call(tmp_path: Path) -> None:
    s = STACK
    other = 0x1_8000_0000  # a module whose code is neither in the dump nor on disk
    stack = words(s, 0x200, {
        s + 0x08: APP + 0x500,  # after a NOP: not a return address
        s + 0x10: APP + 0x502,  # misaligned
        s + 0x18: APP + 0x604,  # after BL
        s + 0x30: (APP + 0x704) | PAC,  # after BLRAA, signed
        s + 0x48: other + 0x100,  # no code bytes: module membership only
    })
    text = code(APP, 0x1000, {APP + 0x4FC: NOP, APP + 0x600: BL, APP + 0x700: BLRAA})
    dump = build_dump(ARM64, MACOS, arm64_context(APP + 0x100, s, 0),
                      (s, stack), [(APP, 0x10000, "/usr/bin/app", "app"),
                                   (other, 0x10000, "/usr/lib/libother.dylib", "libother")],
                      [(APP, text)])
    path = tmp_path / "scan.dmp"
    path.write_bytes(dump)
    with minidumpkit.open_minidump(path) as d:
        stack_ = walk_stack(d, d.threads[0], use_local_files=False)
    got = [(f.pc, f.sp, f.trust.value, f.note) for f in stack_.frames]
    assert got == [
        (APP + 0x100, s, "context", None),
        (APP + 0x604, s + 0x20, "scan", None),
        (APP + 0x704, s + 0x38, "scan", None),
        (other + 0x100, s + 0x50, "scan",
         "scan: in a module; no code bytes to check for a call"),
    ]
    assert stack_.frames[-1].to_json()["note"].startswith("scan: in a module")
    # rust-minidump checks no instruction: it takes the value after the NOP and then
    # the misaligned one (docs/stacks.md), and finds the BL/BLRAA returns after them
    rust = rust_frames(path, None)
    assert rust[:3] == [(APP + 0x100, "context"), (APP + 0x500 - 4, "scan"),
                        (APP + 0x502 - 4, "scan")]
    assert (APP + 0x604 - 4, "scan") in rust


def test_arm64_stack_cfi_from_a_breakpad_store(tmp_path: Path) -> None:
    s = STACK
    store = tmp_path / "store"
    sym = store / "app" / APP_DEBUG_ID / "app.sym"
    sym.parent.mkdir(parents=True)
    sym.write_text(
        f"MODULE mac arm64 {APP_DEBUG_ID} app\n"
        "FUNC 100 40 0 leaf_with_cfi\n"
        "FUNC 600 100 0 caller\n"
        "STACK CFI INIT 100 40 .cfa: sp 0 + .ra: x30\n"
        "STACK CFI 108 .cfa: sp 32 + .ra: .cfa -8 + ^ x29: .cfa -16 + ^\n")
    stack = words(s, 0x200, {
        s + 0x10: s + 0x60, s + 0x18: APP + 0x604,  # saved by leaf_with_cfi's prologue
        s + 0x60: 0, s + 0x68: APP + 0x404,  # caller's frame record
    })
    text = code(APP, 0x1000, {APP + 0x600: BL, APP + 0x400: BL})
    # x29 is garbage: a frame-pointer step would fail, only the CFI finds the caller
    dump = build_dump(ARM64, MACOS, arm64_context(APP + 0x110, s, 0x10, lr=0x1),
                      (s, stack), [(APP, 0x10000, "/usr/bin/app", "app")], [(APP, text)])
    frames = walk(tmp_path, dump, store)
    assert frames[:3] == [(APP + 0x110, s, "context"),
                          (APP + 0x604, s + 0x20, "cfi"),
                          (APP + 0x404, s + 0x70, "frame_pointer")]


def test_arm64_leaf_at_function_entry_keeps_sp(tmp_path: Path) -> None:
    """At a function's first instruction the CFI row says ``.cfa: sp .ra: x30``: the
    caller has the same sp (allowed for the context frame, as rust-minidump does)."""
    s = STACK
    store = tmp_path / "store"
    sym = store / "app" / APP_DEBUG_ID / "app.sym"
    sym.parent.mkdir(parents=True)
    sym.write_text(f"MODULE mac arm64 {APP_DEBUG_ID} app\n"
                   "STACK CFI INIT 100 40 .cfa: sp .ra: x30\n")
    text = code(APP, 0x1000, {APP + 0x600: BL})
    dump = build_dump(ARM64, MACOS, arm64_context(APP + 0x100, s, 0, lr=APP + 0x604),
                      (s, bytes(0x100)), [(APP, 0x10000, "/usr/bin/app", "app")],
                      [(APP, text)])
    assert walk(tmp_path, dump, store)[:2] == [(APP + 0x100, s, "context"),
                                              (APP + 0x604, s, "cfi")]


def test_arm64_frame_record_cycle_terminates(tmp_path: Path) -> None:
    s = STACK
    stack = words(s, 0x100, {s + 0x20: s + 0x20, s + 0x28: APP + 0x204})  # points at itself
    text = code(APP, 0x1000, {APP + 0x200: BL})
    dump = build_dump(ARM64, MACOS, arm64_context(APP + 0x100, s, s + 0x20), (s, stack),
                      [(APP, 0x10000, "/usr/bin/app", "app")], [(APP, text)])
    frames = walk(tmp_path, dump)
    assert frames[:2] == [(APP + 0x100, s, "context"), (APP + 0x204, s + 0x30, "frame_pointer")]
    assert len(frames) <= 3  # then at most one scanned frame, and the walk ends


# --- x86 --------------------------------------------------------------------------------

EXE = 0x0040_0000
XSTACK = 0x0012_0000
EXE_DEBUG_ID = APP_DEBUG_ID


def x86_store(tmp_path: Path, records: str) -> Path:
    store = tmp_path / "store"
    sym = store / "app.pdb" / EXE_DEBUG_ID / "app.sym"
    sym.parent.mkdir(parents=True)
    sym.write_text(f"MODULE windows x86 {EXE_DEBUG_ID} app.pdb\n" + records)
    return store


def x86_dump(eip: int, esp: int, ebp: int, stack: dict[int, int]) -> bytes:
    calls = {EXE + 0x2000: 0xE8, EXE + 0x3002: 0xE8, EXE + 0x4002: 0xE8}
    text = bytearray(0x5000)
    for address, opcode in calls.items():
        text[address - EXE] = opcode  # call rel32: 5 bytes before each return address
    return build_dump(X86, WIN32_NT, x86_context(eip, esp, ebp),
                      (XSTACK, words(XSTACK, 0x200, stack, width=4)),
                      [(EXE, 0x10000, "C:\\app\\app.exe", "app.pdb")], [(EXE, bytes(text))])


def test_x86_stack_win_frame_data_program(tmp_path: Path) -> None:
    s = XSTACK
    store = x86_store(tmp_path, "FUNC 1000 100 8 f\n"
                      "STACK WIN 4 1000 100 3 0 8 4 10 0 1 "
                      "$T0 $ebp = $eip $T0 4 + ^ = $ebp $T0 ^ = $esp $T0 8 + =\n")
    dump = x86_dump(EXE + 0x1010, s, s + 0x20,
                    {s + 0x20: s + 0x40, s + 0x24: EXE + 0x2005})
    frames = walk(tmp_path, dump, store)
    assert frames[:2] == [(EXE + 0x1010, s, "context"), (EXE + 0x2005, s + 0x28, "cfi")]


def test_x86_stack_win_fpo_and_stack_cfi(tmp_path: Path) -> None:
    """An FPO record without ebp (return address above locals and saved registers), then
    a STACK CFI frame, then nothing: each frame from the record that covers it."""
    s = XSTACK
    store = x86_store(tmp_path, "STACK WIN 0 1000 100 3 0 0 8 10 0 0 0\n"
                      "STACK CFI INIT 3000 20 .cfa: $esp 4 + .ra: .cfa 4 - ^\n")
    dump = x86_dump(EXE + 0x1010, s, 0,  # ebp 0: a frame-pointer step finds nothing
                    {s + 0x18: EXE + 0x3007, s + 0x1C: EXE + 0x4007})
    frames = walk(tmp_path, dump, store)
    assert frames[:3] == [(EXE + 0x1010, s, "context"), (EXE + 0x3007, s + 0x1C, "cfi"),
                          (EXE + 0x4007, s + 0x20, "cfi")]


def test_stack_win_program_evaluator() -> None:
    memory = {0x1000: 0x2000, 0x1004: 0x401234, 0x0FF8: 7}
    out = evaluate_win("$T0 $ebp = $eip $T0 4 + ^ = $ebp $T0 ^ = $esp $T0 8 + = "
                       "$T1 $T0 8 - ^ 3 * 5 % = $T2 $esp 16 @ =",
                       {"$ebp": 0x1000, "$esp": 0xFF0}, memory.__getitem__)
    assert (out["$eip"], out["$esp"], out["$ebp"], out["$T0"]) == (0x401234, 0x1008, 0x2000,
                                                                 0x1000)
    assert out["$T1"] == (7 * 3) % 5 and out["$T2"] == 0x1000
    for bad in ("$eip =", "$eip 1 0 / =", "5 $eip =", "$eip $nothing =", "1 2 +"):
        with pytest.raises(BreakpadError):
            evaluate_win(bad, {}, memory.__getitem__)


def test_truncated_synthetic_dumps_raise_only_format_errors(tmp_path: Path) -> None:
    s = STACK
    stack = words(s, 0x200, {s + 0x20: s + 0x60, s + 0x28: APP + 0x204})
    data = build_dump(ARM64, MACOS, arm64_context(APP + 0x100, s, s + 0x20), (s, stack),
                      [(APP, 0x10000, "/usr/bin/app", "app")], [])
    for cut in range(100, len(data), 97):
        path = tmp_path / f"cut{cut}.dmp"
        path.write_bytes(data[:cut])
        try:
            with minidumpkit.open_minidump(path) as dump:
                for thread in dump.threads:
                    stack_ = walk_stack(dump, thread, use_local_files=False)
                    assert len(stack_.frames) <= 1024
                    assert all(f.trust in FrameTrust for f in stack_.frames)
        except MinidumpFormatError:
            pass


STORE = Path(__file__).parent / "data" / "breakpad-store"


def test_x86_windows_dump_with_breakpads_own_symbols() -> None:
    """Breakpad's minidump2.dmp (Windows XP, x86) with the kernel32 records of Breakpad's
    own test store (tests/data/breakpad-store): the frames, their trust and names equal
    minidump-stackwalk's with the same store. The last frame's STACK WIN program gives a
    null return address: both walks end there. minidump-stackwalk does not walk the
    thread that wrote the dump (BreakpadInfo's dump thread); we do."""
    from oracles import FIXTURES

    path = FIXTURES / "real-world" / "breakpad" / "minidump2.dmp"
    data = json.loads(run("minidump-stackwalk", "--json", path, "--symbols-path", STORE,
                          check=True).stdout)
    rust = {t["thread_id"]: t["frames"] for t in data["threads"]}
    with minidumpkit.open_minidump(path) as dump:
        assert dump.breakpad_info is not None
        writer = dump.breakpad_info.dump_thread_id
        for thread in dump.threads:
            stack = walk_stack(dump, thread, use_local_files=False, symbol_paths=[STORE])
            if thread.thread_id == writer:
                assert rust[writer] == [] and stack.frames
                continue
            ours = [(f.pc - (f.index > 0), f.trust.value, f.function) for f in stack.frames]
            theirs = [(int(f["offset"], 16), f["trust"], f["function"])
                      for f in rust[thread.thread_id]]
            assert ours == theirs
            assert ours[-1][2] == "BaseProcessStart"
            assert stack.end == "end of stack (return address below 4096)"
