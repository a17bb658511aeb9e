"""Our reader on the 127 real-world minidumps of ``fixtures/real-world`` (its README and
MANIFEST.tsv say where each comes from), against rust-minidump's ``minidump-stackwalk``.

Every expected value is what ``minidump-stackwalk --json`` or ``--dump`` prints for the
same file: registers by name (ARM, arm64 in both of Breakpad's layouts, x86, amd64),
module code and debug ids (Mach-O UUIDs on macOS and iOS, the PDB age's letter case),
crash reasons (Mach exceptions), ARM cpu info, Crashpad annotations and Breakpad info.
Some files are corrupt on purpose: on every file the reader raises nothing but
MinidumpFormatError.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest

import minidumpkit
from minidumpkit import Minidump, MinidumpFormatError
from minidumpkit import format as md
from oracles import FIXTURES, run

pytestmark = pytest.mark.validators

REAL_WORLD = FIXTURES / "real-world"
MANIFEST = REAL_WORLD / "MANIFEST.tsv"
NAMES = sorted(line.split("\t")[0] for line in MANIFEST.read_text().splitlines()[1:]
               if line.strip())


def test_fixture_set_is_complete() -> None:
    assert len(NAMES) == 127 and all((REAL_WORLD / n).is_file() for n in NAMES)


@functools.cache
def rust_json(name: str) -> dict[str, Any] | None:
    """``minidump-stackwalk --json``, or None where it refuses the file."""
    proc = run("minidump-stackwalk", "--json", REAL_WORLD / name)
    if proc.returncode != 0:
        return None
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


@functools.cache
def rust_dump(name: str) -> list[tuple[str, dict[str, str]]]:
    """``minidump-stackwalk --dump`` as (heading, {field: value}) sections."""
    text = run("minidump-stackwalk", "--dump", REAL_WORLD / name).stdout
    sections: list[tuple[str, dict[str, str]]] = []
    for line in text.splitlines():
        if line and not line[0].isspace():
            sections.append((line, {}))
        elif sections and line.startswith("  ") and not line.startswith("    "):
            key, sep, value = line.partition(" = ")
            if sep:
                sections[-1][1][key.strip()] = value.strip()
    return sections


def open_or_none(name: str) -> Minidump | None:
    try:
        return minidumpkit.open_minidump(REAL_WORLD / name)
    except MinidumpFormatError:
        return None


# rust-minidump's --dump names for registers our registers() calls otherwise
_ARM_IREG = re.compile(r"iregs\[\s*(\d+)\]")


def _their_register(key: str) -> str | None:
    """Our name of a --dump CONTEXT_* field, None for fields we do not compare."""
    m = _ARM_IREG.fullmatch(key)
    if m:
        return md.ARM_GPRS[int(m.group(1))]
    return key.split(" ")[0]  # "x29 (fp)"


def _their_contexts(name: str) -> list[tuple[str, dict[str, str]]]:
    """(thread id, CONTEXT fields) for each thread that --dump prints a context of."""
    out: list[tuple[str, dict[str, str]]] = []
    owner: str | None = None
    for heading, fields in rust_dump(name):
        if heading == "MINIDUMP_THREAD":
            owner = fields["thread_id"]
        elif heading.startswith("CONTEXT_") and owner is not None:
            out.append((owner, {"(kind)": heading, **fields}))
            owner = None
        elif not heading.startswith("CONTEXT_"):
            owner = None if heading != "MINIDUMP_THREAD" else owner
    return out


@pytest.mark.parametrize("name", NAMES)
def test_never_raises_anything_but_format_error(name: str) -> None:
    d = open_or_none(name)
    if d is None:
        return
    with d:
        for attr in ("system_info", "misc_info", "threads", "modules", "exception",
                     "memory_info", "thread_info", "crashpad_info", "breakpad_info",
                     "unloaded_modules", "handles", "linux_maps", "memory"):
            try:
                getattr(d, attr)
            except MinidumpFormatError:
                pass
        try:
            for t in d.threads:
                t.registers, t.pc, t.sp, t.fp
        except MinidumpFormatError:
            pass


KINDS = {"CONTEXT_ARM": md.ContextARM, "CONTEXT_ARM64": md.ContextARM64,
         "CONTEXT_ARM64_OLD": md.ContextARM64Old, "CONTEXT_AMD64": md.ContextAMD64,
         "CONTEXT_X86": md.ContextX86}


def test_arm_and_arm64_contexts_are_among_the_fixtures() -> None:
    kinds = {ctx["(kind)"] for n in NAMES for _, ctx in _their_contexts(n)}
    assert {"CONTEXT_ARM", "CONTEXT_ARM64", "CONTEXT_ARM64_OLD"} <= kinds


@pytest.mark.parametrize("name", NAMES)
def test_registers_match_rust_dump(name: str) -> None:
    theirs = _their_contexts(name)
    if not theirs:
        return
    d = open_or_none(name)
    assert d is not None
    with d:
        ours = {t.thread_id: t for t in d.threads}
        for tid, ctx in theirs:
            t = ours[int(tid, 0)]
            kind = ctx.pop("(kind)")
            assert isinstance(t.context, KINDS[kind]), (tid, kind, t.context)
            regs = t.registers
            compared = 0
            for key, value in ctx.items():
                reg = _their_register(key)
                if reg in regs:
                    assert regs[reg] == int(value, 0), f"thread {tid} {reg}"
                    compared += 1
            assert compared >= len(regs) - 6, (tid, sorted(regs), sorted(ctx))
            assert t.context.context_flags == int(ctx["context_flags"], 0)


@pytest.mark.parametrize("name", NAMES)
def test_exception_registers_match_rust_dump(name: str) -> None:
    theirs: dict[str, str] | None = None
    owner = False
    for heading, fields in rust_dump(name):
        if heading == "MINIDUMP_EXCEPTION":
            owner = True
        elif heading.startswith("CONTEXT_") and owner:
            theirs = {"(kind)": heading, **fields}
            break
        else:
            owner = False
    if theirs is None:
        return
    d = open_or_none(name)
    assert d is not None
    with d:
        assert d.exception is not None and d.exception.context is not None
        assert isinstance(d.exception.context, KINDS[theirs.pop("(kind)")])
        regs = d.exception.context.registers()
        compared = [reg for key, value in theirs.items()
                    if (reg := _their_register(key)) in regs
                    and regs[reg] == int(value, 0)]
        assert len(compared) == sum(_their_register(k) in regs for k in theirs) >= 8


@pytest.mark.parametrize("name", NAMES)
def test_module_ids_match_rust_json(name: str) -> None:
    rust = rust_json(name)
    if rust is None:
        return
    d = open_or_none(name)
    assert d is not None
    with d:
        mods = d.modules
        assert len(mods) == len(rust["modules"])
        for m, r in zip(mods, rust["modules"]):
            assert m.code_id == r["code_id"], m.name
            assert (m.debug_id or "0" * 33) == r["debug_id"], m.name


def test_mach_o_code_ids_are_uuids() -> None:
    d = minidumpkit.open_minidump(REAL_WORLD / "symbolicator/macos-no-fp.dmp")
    with d:
        m = d.modules[0]
        assert m.code_id == "73781edebf5b34ec81b2749a0f1fa5fd"  # minidump-stackwalk --json
        assert m.debug_id == "73781EDEBF5B34EC81B2749A0F1FA5FD0"


def test_pdb_age_is_lower_case_hex_in_debug_ids() -> None:
    # minidump-stackwalk prints ...1c; Breakpad's minidump_stackwalk prints the same
    # (its debug_identifier formats the age with %x)
    d = minidumpkit.open_minidump(REAL_WORLD / "breakpad/ascii_read_av_conditional.dmp")
    with d:
        ids = {m.debug_id for m in d.modules}
        assert "1B5043085F174DA385521DD4740D17301c" in ids
        out = run("breakpad-stackwalk", "-m", REAL_WORLD / "breakpad/ascii_read_av_conditional.dmp",
                  check=True).stdout
        breakpad_ids = {line.split("|")[4] for line in out.splitlines()
                        if line.startswith("Module|")}
        assert "1B5043085F174DA385521DD4740D17301c" in breakpad_ids
        assert {m.debug_id for m in d.modules if m.debug_id} <= breakpad_ids


@pytest.mark.parametrize("name", NAMES)
def test_crash_reason_matches_rust_json(name: str) -> None:
    rust = rust_json(name)
    if rust is None or not (rust.get("crash_info") or {}).get("type"):
        return
    d = open_or_none(name)
    assert d is not None
    with d:
        assert d.exception is not None
        assert d.exception.reason == rust["crash_info"]["type"]


def test_mac_exception_names_are_among_the_fixtures() -> None:
    reasons = {(rust_json(n) or {}).get("crash_info", {}).get("type") for n in NAMES
               if n.startswith(("symbolic", "node-minidump", "rust-minidump/pipeline"))}
    assert {"EXC_BAD_ACCESS / KERN_INVALID_ADDRESS",
            "EXC_BAD_INSTRUCTION / EXC_I386_INVOP"} <= reasons


@pytest.mark.parametrize("name", NAMES)
def test_cpu_info_matches_rust_json(name: str) -> None:
    rust = rust_json(name)
    d = open_or_none(name)
    if rust is None or d is None:
        return
    with d:
        if d.system_info is None or d.system_info.cpu not in ("arm", "arm64"):
            return
        assert d.system_info.cpu_info == rust["system_info"]["cpu_info"]


def _their_crashpad(name: str) -> dict[str, str] | None:
    return next((f for h, f in rust_dump(name) if h == "MDRawCrashpadInfo"), None)


# Crashpad's first MinidumpModuleCrashpadInfo was 20 bytes (no annotation objects):
# rust-minidump and Breakpad's minidump_dump print no Crashpad info for such a file.
OLD_CRASHPAD = ["node-minidump/mac.dmp"]


@pytest.mark.parametrize("name", sorted(set(NAMES) - set(OLD_CRASHPAD)))
def test_crashpad_info_matches_rust_dump(name: str) -> None:
    theirs = _their_crashpad(name)
    d = open_or_none(name)
    if d is None:
        assert theirs is None
        return
    with d:
        info = d.crashpad_info
        if theirs is None:
            assert info is None
            return
        assert info is not None
        fields = {"version": str(info.version), "report_id": str(info.report_id),
                  "client_id": str(info.client_id)}
        for key, value in info.simple_annotations.items():
            fields[f'simple_annotations["{key}"]'] = value
        for i, m in enumerate(info.modules):
            fields[f"module_list[{i}].minidump_module_list_index"] = str(m.module_index)
            fields[f"module_list[{i}].version"] = str(m.version)
            for j, text in enumerate(m.list_annotations):
                fields[f"module_list[{i}].list_annotations[{j}]"] = text
            for key, value in m.simple_annotations.items():
                fields[f'module_list[{i}].simple_annotations["{key}"]'] = value
            for key, ann in m.annotation_objects.items():
                shown = ann.text if ann.text is not None else "<user defined>"
                fields[f'module_list[{i}].annotation_objects["{key}"]'] = shown
        assert fields == theirs


def test_crashpad_annotations_are_among_the_fixtures() -> None:
    d = minidumpkit.open_minidump(REAL_WORLD / "breakpad/minidump_crashpad_annotation.dmp")
    with d:
        info = d.crashpad_info
        assert info is not None
        assert info.simple_annotations["plat"] == "iOS"
        objects = info.modules[0].annotation_objects
        assert objects["exceptionName"].text == "NSRangeException"
        assert objects["CounterAnnotation"].type >= md.ANNOTATION_USER_DEFINED


@pytest.mark.parametrize("name", NAMES)
def test_breakpad_info_matches_rust_dump(name: str) -> None:
    theirs = next((f for h, f in rust_dump(name) if h == "MINIDUMP_BREAKPAD_INFO"), None)
    d = open_or_none(name)
    if d is None:
        return
    with d:
        info = d.breakpad_info
        if theirs is None:
            assert info is None
            return
        assert info is not None
        validity = int(theirs["validity"], 0)
        dump_tid = int(theirs["dump_thread_id"], 0) if validity & 1 else None
        req_tid = int(theirs["requesting_thread_id"], 0) if validity & 2 else None
        assert (info.dump_thread_id, info.requesting_thread_id) == (dump_tid, req_tid)


def test_every_crashpad_and_breakpad_info_stream_is_compared() -> None:
    crashpad = sum(_their_crashpad(n) is not None for n in NAMES)
    breakpad = sum(any(h == "MINIDUMP_BREAKPAD_INFO" for h, _ in rust_dump(n)) for n in NAMES)
    assert crashpad == 8 and breakpad == 20, (crashpad, breakpad)


def test_crashpad_info_of_the_first_module_info_layout() -> None:
    """The 20-byte module info, read by the location's size. Expected values are the
    stream's bytes decoded here by hand with struct (no tool reads this file's stream)."""
    import struct
    path = REAL_WORLD / OLD_CRASHPAD[0]
    raw = path.read_bytes()
    d = minidumpkit.open_minidump(path)
    with d:
        entry = d.stream(0x43500001)
        assert entry is not None
        module_list_rva = struct.unpack_from("<I", raw, entry.rva + 48)[0]
        count, index, size, rva = struct.unpack_from("<IIII", raw, module_list_rva)
        assert (count, size) == (1, 20)
        version, n_list, list_rva = struct.unpack_from("<III", raw, rva)
        info = d.crashpad_info
        assert info is not None and len(info.modules) == 1
        m = info.modules[0]
        assert (m.module_index, m.version, m.annotation_objects) == (index, version, {})
        texts = []
        if n_list:
            n = struct.unpack_from("<I", raw, list_rva)[0]
            for i in range(n):
                at = struct.unpack_from("<I", raw, list_rva + 4 + 4 * i)[0]
                length = struct.unpack_from("<I", raw, at)[0]
                texts.append(raw[at + 4:at + 4 + length].decode())
        assert m.list_annotations == texts
        # Electron's crash reporter sets these (the dump is of Electron 1.4.3)
        assert m.simple_annotations["prod"] == "Electron"
        assert m.simple_annotations["ver"] == "1.4.3"


@pytest.mark.parametrize("cpuid,hwcaps", [(0x410FC090, 0x1007), (0x511F06F0, 0x8040),
                                          (0x560F5810, 0), (0, 0x40000)])
def test_arm_cpu_info_matches_rust_json_on_synthetic_dumps(tmp_path: Path, cpuid: int,
                                                           hwcaps: int) -> None:
    """The fixtures' ARM dumps record no MIDR: these, built here (an ARM Linux dump whose
    CPU_INFORMATION holds MIDR and AT_HWCAP), are read by minidump-stackwalk too."""
    import struct

    from test_stackwalk_arm64_x86 import build_dump

    context = struct.pack("<I16II", 0x40000002, *range(16), 0x10) + bytes(8 + 256 + 32)
    data = bytearray(build_dump(5, 0x8201, context, (0x8000, bytes(64)), [], []))
    kind, _, system_rva = struct.unpack_from("<III", data, 32)  # first directory entry
    assert kind == 7 and struct.unpack_from("<H", data, system_rva)[0] == 5
    struct.pack_into("<H", data, system_rva + 2, 7)  # processor_level: ARMv7
    struct.pack_into("<II", data, system_rva + 32, cpuid, hwcaps)
    path = tmp_path / "arm.dmp"
    path.write_bytes(bytes(data))
    rust = json.loads(run("minidump-stackwalk", "--json", path, check=True).stdout)
    with minidumpkit.open_minidump(path) as d:
        assert d.system_info is not None
        assert d.system_info.cpu_info == rust["system_info"]["cpu_info"]
        assert d.threads[0].registers["pc"] == 15 and d.threads[0].registers["cpsr"] == 0x10
