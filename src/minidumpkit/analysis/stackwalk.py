"""The x86_64 stack walker: from a thread's context to its call stack.

Each step tries, in order (as rust-minidump and Breakpad do):

1. **CFI**: the FDE covering the pc in ``.eh_frame``/``.debug_frame`` of the module's
   build-id-checked file, run to the pc's row; DWARF expressions cover PLT stubs and
   glibc's signal trampoline ``__restore_rt`` (whose rules read the interrupted
   registers from the ``ucontext`` on the stack);
2. **frame pointer**: ``rbp`` → saved ``rbp`` and return address, with rust-minidump's
   sanity checks;
3. **scan**: the stack words above ``sp``, accepting only a value that lies in an
   executable part of a module, inside a symbol or FDE when the module has them, and
   right after a ``call`` instruction (code bytes from the dump, else from the module's
   checked file).

The walk stops at an undefined return address (``clone3``, ``_start``), a pc below
4096, a stack pointer that does not grow, a repeated (pc, sp), or ``max_frames``.
Reading a frame never raises for missing memory or a bad file: that step just fails.
"""

from __future__ import annotations

import enum
import struct
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from .. import format as md
from .._lazydataclass import field, lazy_dataclass
from ..errors import MemoryNotCaptured, MinidumpFormatError
from .breakpad import BreakpadError, BreakpadSymbols, evaluate_win
from .breakpad import evaluate as breakpad_eval
from .cfi import RA, RBP, RSP, CfiError, eval_expression
from .elf import ElfError
from .symbols import ModuleSymbols, Symbolizer

if TYPE_CHECKING:
    from .._streams import Thread
    from ..reader import Minidump

__all__ = ["CallStack", "Frame", "FrameTrust", "walk_thread"]

MAX_FRAMES = 1024
MAX_SCANNED = 64           # scanned frames per thread before scanning is switched off
SCAN_WORDS = 40            # words searched for a return address (x4 for the context frame)
CANONICAL_LIMIT = 1 << 47  # user-space addresses on x86_64 Linux
CALLEE_SAVED = (3, RBP, 12, 13, 14, 15)  # rbx rbp r12-r15, forwarded unless CFI says otherwise
# DWARF register number -> CONTEXT field (System V psABI numbering)
_DWARF_REGS = ("rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
               "r12", "r13", "r14", "r15", "rip")
_AMD64_NAMES = dict(enumerate(_DWARF_REGS))
_LOCAL_ERRORS = (MemoryNotCaptured, CfiError, ElfError, struct.error, IndexError, ValueError,
                 KeyError, OverflowError, ZeroDivisionError)


class FrameTrust(str, enum.Enum):
    """How a frame was found, with rust-minidump's names (best first)."""

    CONTEXT = "context"
    CFI = "cfi"
    FRAME_POINTER = "frame_pointer"
    SCAN = "scan"

    def __str__(self) -> str:
        return self.value


@lazy_dataclass
class Frame:
    """One frame. ``pc`` is the instruction pointer for the context frame and the return
    address for callers (what gdb and lldb print); names and lines are looked up at
    ``pc - 1`` for callers so that a call at the very end of a function names it.

    ``function`` is set only when a symbol whose extent contains the address exists;
    otherwise ``missing`` says why (no file, build id mismatch, stripped, ...)."""

    index: int
    pc: int
    sp: int
    cfa: int | None  # this frame's canonical frame address (its caller's sp); None if outermost
    trust: FrameTrust
    module: str | None = None
    module_offset: int | None = None
    function: str | None = None
    function_offset: int | None = None
    mangled: str | None = None
    aliases: tuple[str, ...] = ()
    source_file: str | None = None
    source_line: int | None = None
    missing: str | None = None
    registers: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    note: str | None = None  # what a scanned frame's validation could not check

    @property
    def module_basename(self) -> str | None:
        return None if self.module is None else self.module.replace("\\", "/").rsplit("/", 1)[-1]

    def __str__(self) -> str:
        parts = [f"#{self.index} 0x{self.pc:016x}"]
        if self.function is not None:
            parts.append(self.function if not self.function_offset
                         else f"{self.function}+0x{self.function_offset:x}")
        if self.module is not None and self.module_offset is not None:
            parts.append(f"({self.module_basename}+0x{self.module_offset:x})")
        if self.source_file is not None:
            parts.append(f"{self.source_file.rsplit('/', 1)[-1]}:{self.source_line}")
        parts.append(f"[{self.trust.value}]")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"<Frame {self}>"

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index, "pc": f"0x{self.pc:x}", "sp": f"0x{self.sp:x}",
            "cfa": None if self.cfa is None else f"0x{self.cfa:x}", "trust": self.trust.value,
            "module": self.module_basename, "module_path": self.module,
            "module_offset": None if self.module_offset is None else f"0x{self.module_offset:x}",
            "function": self.function, "mangled": self.mangled,
            "function_offset": None if self.function_offset is None
            else f"0x{self.function_offset:x}",
            "aliases": list(self.aliases), "file": self.source_file, "line": self.source_line,
            "missing_symbol": self.missing, "note": self.note,
        }


class CallStack:
    """A thread's frames, innermost first. ``status`` is "ok" or why the thread was not
    (fully) walked, e.g. "not walked: arch arm64" or "no context"."""

    __slots__ = ("thread_id", "thread_name", "frames", "status", "end")

    def __init__(self, thread_id: int, thread_name: str | None, frames: list[Frame],
                 status: str = "ok", end: str = "") -> None:
        self.thread_id = thread_id
        self.thread_name = thread_name
        self.frames = frames
        self.status = status
        self.end = end  # why the walk stopped

    def __eq__(self, other: object) -> bool:
        if type(other) is not CallStack:
            return NotImplemented
        return (self.thread_id, self.thread_name, self.frames, self.status, self.end) == (
            other.thread_id, other.thread_name, other.frames, other.status, other.end)

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        head = f'thread {self.thread_id} "{self.thread_name or ""}"'
        lines = [head] + [f"  {f}" for f in self.frames]
        if self.status != "ok":
            lines.append(f"  ({self.status})")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<CallStack thread {self.thread_id} {len(self.frames)} frames, {self.status}>"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.thread_id, "name": self.thread_name, "status": self.status,
                "end": self.end, "frames": [f.to_json() for f in self.frames]}


class _State:
    __slots__ = ("regs", "trust", "cfa", "exact_pc", "param_size", "note")

    def __init__(self, regs: dict[int, int], trust: FrameTrust, cfa: int | None = None,
                 exact_pc: bool = True, param_size: int = 0, note: str | None = None) -> None:
        self.regs = regs        # DWARF register number -> value; absent = unknown
        self.trust = trust
        self.cfa = cfa
        self.exact_pc = exact_pc  # look up at pc (context frame, caller of a signal frame)
        self.param_size = param_size  # x86 STACK WIN: this frame's parameter bytes
        self.note = note        # how a scanned frame was validated, when only partly


class _Walker:
    def __init__(self, dump: Minidump, symbolizer: Symbolizer) -> None:
        self.dump = dump
        self.memory = dump.memory
        self.sym = symbolizer
        self.scanned = 0
        self._executable_maps: list[tuple[int, int]] | None = None
        system = _optional(lambda: dump.system_info)
        self.windows = system is not None and system.is_windows
        self.x86 = False  # 32-bit walk: 4-byte words, STACK WIN / STACK CFI from Breakpad
        self.arm64 = False  # frame records, STACK CFI from Breakpad
        self.canonical_limit = CANONICAL_LIMIT
        # Breakpad register names -> the walker's slots, and the callee-saved slots
        self.reg_slots: dict[str, int] = {name: n for n, name in enumerate(_DWARF_REGS)}
        self.callee_saved: tuple[int, ...] = CALLEE_SAVED
        self.pac_mask = (1 << 64) - 1

    def read_word(self, address: int) -> int:
        return self.read_u32(address) if self.x86 else self.read_u64(address)

    def read_u64(self, address: int) -> int:
        if not 0 <= address < 1 << 64:
            raise MemoryNotCaptured(address & ((1 << 64) - 1), 8)
        value: int = struct.unpack("<Q", self.memory.read(address, 8))[0]
        return value

    def _lookup(self, state: _State) -> tuple[ModuleSymbols | None, int]:
        pc = state.regs[RA]
        addr = pc if state.exact_pc else pc - 1
        module = self.sym.module_at(addr)
        if module is None:
            return None, addr
        return self.sym.for_module(module), addr

    # --- one step ---------------------------------------------------------------------

    def by_cfi(self, state: _State) -> _State | None | bool:
        """The caller by CFI; None if no CFI applies; False at a CFI-marked stack end."""
        ms, addr = self._lookup(state)
        if ms is None:
            return None
        vaddr = ms.vaddr(addr)
        if ms.breakpad is not None:
            return self.by_breakpad_cfi(state, ms.breakpad, vaddr)
        found = ms.find_fde(vaddr)
        if found is None:
            return None
        section, fde = found
        row = ms.row(section, fde, vaddr)
        regs = state.regs

        def register(n: int) -> int:
            return regs[n]

        if row.cfa_expression is not None:
            cfa = eval_expression(row.cfa_expression, register, self.read_u64)
        else:
            cfa = regs[row.cfa_register] + row.cfa_offset
        cfa &= (1 << 64) - 1
        caller = {r: regs[r] for r in CALLEE_SAVED if r in regs}
        for reg, rule in row.rules.items():
            try:
                if rule.kind == "undefined":
                    if reg == RA:
                        return False
                    caller.pop(reg, None)
                elif rule.kind == "same":
                    if reg in regs:
                        caller[reg] = regs[reg]
                elif rule.kind == "offset":
                    caller[reg] = self.read_u64(cfa + rule.arg)
                elif rule.kind == "val_offset":
                    caller[reg] = (cfa + rule.arg) & ((1 << 64) - 1)
                elif rule.kind == "register":
                    caller[reg] = regs[rule.arg]
                elif rule.kind == "expression":
                    caller[reg] = self.read_u64(
                        eval_expression(rule.expr, register, self.read_u64, [cfa]))
                elif rule.kind == "val_expression":
                    caller[reg] = eval_expression(rule.expr, register, self.read_u64, [cfa])
            except _LOCAL_ERRORS:
                if reg == RA:
                    return None
                caller.pop(reg, None)
        if RA not in caller:
            return None
        caller.setdefault(RSP, cfa)
        return _State(caller, FrameTrust.CFI, cfa=cfa, exact_pc=row.signal_frame)

    def by_breakpad_cfi(self, state: _State, symbols: BreakpadSymbols,
                        offset: int) -> _State | None:
        """STACK CFI: ``.cfa`` first, then ``.ra``; another register whose rule fails is
        dropped rather than carried over (as Breakpad and rust-minidump do)."""
        rules = symbols.rules(offset)
        if rules is None or ".cfa" not in rules or ".ra" not in rules:
            return None
        regs = state.regs
        slots = self.reg_slots
        mask = 0xFFFF_FFFF if self.x86 else (1 << 64) - 1

        def register(name: str) -> int:
            return regs[slots[name]]

        try:
            cfa = breakpad_eval(rules[".cfa"], register, self.read_word) & mask
            ra = breakpad_eval(rules[".ra"], register, self.read_word, cfa) & mask
        except (BreakpadError, *_LOCAL_ERRORS):
            return None
        caller = {r: regs[r] for r in self.callee_saved if r in regs}
        for name, expr in rules.items():
            if name.startswith(".") or name not in slots:
                continue
            n = slots[name]
            try:
                caller[n] = breakpad_eval(expr, register, self.read_word, cfa) & mask
            except (BreakpadError, *_LOCAL_ERRORS):
                caller.pop(n, None)
        caller[RA] = ra & self.pac_mask
        caller.setdefault(RSP, cfa)
        return _State(caller, FrameTrust.CFI, cfa=cfa, exact_pc=False)

    # --- x86: STACK WIN (Windows frame data and FPO) ------------------------------------

    def x86_by_stack_win(self, state: _State) -> _State | None:
        """The caller from a STACK WIN record, as Breakpad's x86 walker does: a frame-data
        program string, else the program Breakpad builds for an FPO record. The search
        for a better return address Breakpad does around ``.raSearchStart`` is not done
        (docs/stacks.md)."""
        ms, addr = self._lookup(state)
        if ms is None or ms.breakpad is None:
            return None
        info = ms.breakpad.win_info(ms.vaddr(addr))
        if info is None:
            return None
        regs = state.regs
        esp = regs[RSP]
        callee_params = state.param_size
        ra_search = (esp + callee_params + info.local_size + info.saved_register_size) \
            & 0xFFFF_FFFF
        if info.program is not None:
            program = info.program
        elif info.allocates_base_pointer:
            program = ("$eip .raSearchStart ^ = "
                       "$ebp $esp .cbCalleeParams + .cbSavedRegs + 8 - ^ = "
                       "$esp .raSearchStart 4 + =")
        else:
            program = "$eip .raSearchStart ^ = $esp .raSearchStart 4 + ="
        if RBP in regs and "@" in program:
            ra_search = (regs[RBP] + 4) & 0xFFFF_FFFF  # aligned frames: Breakpad's rule
        variables = {"$esp": esp, ".cbCalleeParams": callee_params,
                     ".cbSavedRegs": info.saved_register_size, ".cbLocals": info.local_size,
                     ".cbParams": info.parameter_size, ".raSearchStart": ra_search,
                     ".raSearch": ra_search}
        for name, slot in (("$ebp", RBP), ("$ebx", 3), ("$esi", 4), ("$edi", 5)):
            if slot in regs:
                variables[name] = regs[slot]
        try:
            out = evaluate_win(program, variables, self.read_u32)
        except (BreakpadError, *_LOCAL_ERRORS):
            return None
        if "$eip" not in out or "$esp" not in out:
            return None
        caller = {r: regs[r] for r in _X86_CALLEE_SAVED if r in regs}
        for name, slot in (("$ebp", RBP), ("$ebx", 3), ("$esi", 4), ("$edi", 5)):
            if name in out:
                caller[slot] = out[name]
        caller.update({RA: out["$eip"], RSP: out["$esp"]})
        return _State(caller, FrameTrust.CFI, cfa=out["$esp"], exact_pc=False,
                      param_size=info.parameter_size)

    # --- arm64: frame records and validated scanning ------------------------------------

    def arm64_by_frame_pointer(self, state: _State) -> _State | None:
        """rust-minidump's rule: the frame record at ``x29`` holds the caller's ``x29`` and
        return address (pointer-authentication bits stripped); the caller's sp is
        ``x29 + 16``. A zero ``x29`` gives no caller. As rust-minidump, a leaf at the top of
        the stack is taken for a normal frame (its caller is then skipped); Breakpad
        takes the caller from ``lr`` instead."""
        regs = state.regs
        fp, sp = regs.get(RBP), regs[RSP]
        if fp is None or fp >= (1 << 64) - 16:
            return None
        if fp == 0:
            # the outermost frame record; rust-minidump then finds no caller by frame
            # pointer (its null pc fails the range check) and scans, and so do we
            return None
        caller_fp = self.read_u64(fp) & self.pac_mask
        caller_pc = self.read_u64(fp + 8) & self.pac_mask
        if not 0x1000 <= caller_pc <= ARM64_USER_LIMIT:
            return None
        caller = {RA: caller_pc, RSP: fp + 16, RBP: caller_fp}
        if caller_fp:
            try:
                caller[LR] = self.read_u64(caller_fp + 8) & self.pac_mask
            except MemoryNotCaptured:
                pass
        return _State(caller, FrameTrust.FRAME_POINTER, cfa=fp + 16, exact_pc=False)

    def arm64_by_scan(self, state: _State) -> _State | None:
        if self.scanned >= MAX_SCANNED:
            return None
        regs = state.regs
        sp = regs[RSP]
        words = SCAN_WORDS * (4 if state.trust in (FrameTrust.CONTEXT, FrameTrust.CFI) else 1)
        for i in range(words):
            slot = sp + 8 * i
            try:
                candidate = self.read_u64(slot) & self.pac_mask
            except MemoryNotCaptured:
                return None
            verdict = self.arm64_plausible_return(candidate)
            if verdict is None:
                continue
            self.scanned += 1
            return _State({RA: candidate, RSP: slot + 8}, FrameTrust.SCAN, cfa=slot + 8,
                          exact_pc=False, note=verdict or None)
        return None

    def arm64_plausible_return(self, address: int) -> str | None:
        """None if ``address`` is no plausible return address; "" if it lies in a module
        and follows a BL/BLR instruction; a note saying what was not checked if the
        code bytes are neither in the dump nor in a checked file."""
        if not 0x1000 <= address <= ARM64_USER_LIMIT or address & 3:
            return None
        module = self.sym.module_at(address - 4)
        if module is None:
            return None
        ms = self.sym.for_module(module)
        vaddr = ms.vaddr(address - 4)
        try:
            if ms.breakpad is not None and ms.breakpad.has_functions:
                if not ms.breakpad.has_cfi(vaddr) and ms.symbolize(vaddr) is None:
                    return None
            try:
                code: bytes | None = self.memory.read(address - 4, 4)
            except (MemoryNotCaptured, ValueError):
                code = ms.code_bytes(vaddr, 4)
        except _LOCAL_ERRORS:
            return None
        if code is None or len(code) != 4:
            return "scan: in a module; no code bytes to check for a call"
        return "" if _arm64_is_call(struct.unpack("<I", code)[0]) else None

    def by_frame_pointer(self, state: _State) -> _State | None:
        """rust-minidump's amd64 rules: the saved rbp must lie at or above the caller's
        sp and be readable, the return address canonical, the stack must grow. Not on
        Windows, whose x64 code keeps no frame-pointer chain."""
        if self.windows:
            return None
        regs = state.regs
        rbp, sp = regs.get(RBP), regs[RSP]
        if rbp is None or rbp >= (1 << 64) - 16:
            return None
        caller_pc = self.read_u64(rbp + 8)
        caller_rbp = self.read_u64(rbp)
        caller_sp = rbp + 16
        if caller_sp <= rbp or caller_rbp < caller_sp or caller_pc >= CANONICAL_LIMIT:
            return None
        self.read_u64(caller_rbp)  # still inside captured stack memory
        if caller_sp <= sp:
            return None
        self.read_u64(caller_sp)
        caller = {r: regs[r] for r in CALLEE_SAVED if r in regs}
        caller.update({RA: caller_pc, RSP: caller_sp, RBP: caller_rbp})
        return _State(caller, FrameTrust.FRAME_POINTER, cfa=caller_sp, exact_pc=False)

    def by_scan(self, state: _State, first: bool) -> _State | None:
        if self.scanned >= MAX_SCANNED:
            return None
        regs = state.regs
        sp = regs[RSP]
        words = SCAN_WORDS * (4 if first or state.trust in (FrameTrust.CONTEXT, FrameTrust.CFI)
                              else 1)
        for i in range(words):
            slot = sp + 8 * i
            try:
                candidate = self.read_u64(slot)
            except MemoryNotCaptured:
                return None
            if self.plausible_return(candidate):
                caller = {r: regs[r] for r in CALLEE_SAVED if r in regs}
                caller.update({RA: candidate, RSP: slot + 8})
                rbp = regs.get(RBP)
                if rbp is not None and rbp == slot - 8:
                    try:
                        saved = self.read_u64(rbp)
                    except MemoryNotCaptured:
                        saved = None
                    if saved is not None and slot < saved <= slot + (128 << 10):
                        caller[RBP] = saved
                    else:
                        caller.pop(RBP, None)
                elif rbp is not None and rbp < slot + 8:
                    caller.pop(RBP, None)
                self.scanned += 1
                return _State(caller, FrameTrust.SCAN, cfa=slot + 8, exact_pc=False)
        return None

    def plausible_return(self, address: int) -> bool:
        """In an executable module, inside a known function (when the module has symbols
        or CFI), and right after a call instruction."""
        if not 4096 <= address < self.canonical_limit:
            return False
        module = self.sym.module_at(address - 1)
        if module is None:
            return False
        ms = self.sym.for_module(module)
        vaddr = ms.vaddr(address - 1)
        try:
            if not self._executable(address - 1, ms, vaddr):
                return False
            code = self._code_before(address, ms)
            if code is None or not _follows_call(code):
                return False
            if ms.breakpad is not None:
                if not ms.breakpad.has_cfi(vaddr) and ms.symbolize(vaddr) is None:
                    return False
            elif ms.has_symbols or ms.files:
                if ms.find_fde(vaddr) is None and ms.symbolize(vaddr) is None:
                    return False
        except _LOCAL_ERRORS:
            return False
        return True

    def _executable(self, address: int, ms: ModuleSymbols, vaddr: int) -> bool:
        if self._executable_maps is None:
            maps = None
            try:
                maps = self.dump.linux_maps
            except MinidumpFormatError:
                maps = None
            self._executable_maps = [(m.start, m.end) for m in maps or () if "x" in m.perms]
        if self._executable_maps:
            return any(lo <= address < hi for lo, hi in self._executable_maps)
        return bool(ms.is_executable(vaddr))

    def _code_before(self, address: int, ms: ModuleSymbols) -> bytes | None:
        try:
            return self.memory.read(address - 7, 7)
        except (MemoryNotCaptured, ValueError):
            return ms.code_bytes(ms.vaddr(address) - 7, 7)

    # --- x86 (32-bit): frame pointer and validated scan, rust-minidump's rules -----------

    def read_u32(self, address: int) -> int:
        if not 0 <= address < 1 << 32:
            raise MemoryNotCaptured(address & 0xFFFF_FFFF, 4)
        value: int = struct.unpack("<I", self.memory.read(address, 4))[0]
        return value

    def x86_by_frame_pointer(self, state: _State) -> _State | None:
        """``ebp`` → saved ``ebp`` and return address; as rust-minidump, nothing else is
        checked here (stricter checks made its scanner invent frames), the loop still
        requires the stack to grow."""
        regs = state.regs
        ebp = regs.get(RBP)
        if ebp is None or ebp >= (1 << 32) - 8:
            return None
        caller = {r: regs[r] for r in _X86_CALLEE_SAVED if r in regs}
        caller.update({RA: self.read_u32(ebp + 4), RSP: ebp + 8, RBP: self.read_u32(ebp)})
        return _State(caller, FrameTrust.FRAME_POINTER, cfa=ebp + 8, exact_pc=False)

    def x86_by_scan(self, state: _State) -> _State | None:
        if self.scanned >= MAX_SCANNED:
            return None
        regs = state.regs
        esp = regs[RSP]
        words = SCAN_WORDS * (4 if state.trust is FrameTrust.CONTEXT else 1)
        for i in range(words):
            slot = esp + 4 * i
            try:
                candidate = self.read_u32(slot)
            except MemoryNotCaptured:
                return None
            if not self.plausible_return(candidate):
                continue
            caller = {r: regs[r] for r in _X86_CALLEE_SAVED if r in regs and r != RBP}
            caller.update({RA: candidate, RSP: slot + 4})
            if i > 0:  # rebuild the ebp chain: a pushed ebp just below the return address
                try:
                    saved = self.read_u32(slot - 4)
                    if slot < saved and saved - (slot - 4) <= 128 << 10:
                        self.read_u32(saved)
                        caller[RBP] = saved
                    elif RBP in regs and regs[RBP] >= slot + 4:
                        self.read_u32(regs[RBP])
                        caller[RBP] = regs[RBP]
                except MemoryNotCaptured:
                    pass
            self.scanned += 1
            return _State(caller, FrameTrust.SCAN, cfa=slot + 4, exact_pc=False)
        return None

    # --- the loop -----------------------------------------------------------------------

    def walk(self, regs: dict[int, int], max_frames: int) -> tuple[list[Frame], str]:
        state = _State(regs, FrameTrust.CONTEXT)
        states = [state]
        end = self._steps(states, max_frames)
        # each frame is made once, knowing its CFA (its caller's sp)
        last = len(states) - 1
        return [self.describe(s, i, states[i + 1].cfa if i < last else None)
                for i, s in enumerate(states)], end

    def _steps(self, states: list[_State], max_frames: int) -> str:
        """Append each caller found to ``states``; returns why the walk ended."""
        state = states[0]
        seen = {(state.regs[RA], state.regs[RSP])}
        while len(states) < max_frames:
            first = len(states) == 1
            caller: _State | None | bool = None
            if self.arm64:
                caller = self._arm64_step(state)
            elif self.x86:
                caller = self._x86_step(state)
            else:
                try:
                    caller = self.by_cfi(state)
                except _LOCAL_ERRORS:
                    caller = None
            if caller is False:
                return "end of stack (CFI: return address undefined)"
            amd64 = not (self.x86 or self.arm64)
            if caller is None and amd64:
                try:
                    caller = self.by_frame_pointer(state)
                except _LOCAL_ERRORS:
                    caller = None
            if caller is None and amd64:
                caller = self.by_scan(state, first)
            if not isinstance(caller, _State):
                return "no unwind method found a caller"
            pc, sp = caller.regs[RA], caller.regs[RSP]
            if pc < 4096:
                return "end of stack (return address below 4096)"
            if sp < state.regs[RSP] or (sp == state.regs[RSP] and not self._equal_sp_allowed(
                    state, caller)):
                return "stack pointer did not grow"
            if (pc, sp) in seen:
                return "cycle"
            seen.add((pc, sp))
            states.append(caller)
            state = caller
        return f"frame limit {max_frames}"

    def _equal_sp_allowed(self, callee: _State, caller: _State) -> bool:
        """arm64 only, as rust-minidump: a stackless leaf (the context frame) or a
        function-entry CFI row leaves sp unchanged; the pc must still change."""
        return (self.arm64 and caller.regs[RA] != callee.regs[RA]
                and (callee.trust is FrameTrust.CONTEXT or caller.trust is FrameTrust.CFI))

    def _x86_step(self, state: _State) -> _State | None:
        """STACK WIN, then STACK CFI (both from a Breakpad store), then the ebp chain,
        then a validated scan (Breakpad's order)."""
        return self._first_caller(state, (self.x86_by_stack_win, self._breakpad_cfi_only,
                                          self.x86_by_frame_pointer), self.x86_by_scan)

    def _arm64_step(self, state: _State) -> _State | None:
        """STACK CFI (Breakpad store), then the frame-record chain, then a scan."""
        return self._first_caller(state, (self._breakpad_cfi_only,
                                          self.arm64_by_frame_pointer), self.arm64_by_scan)

    @staticmethod
    def _first_caller(state: _State, methods: tuple[Callable[[_State], _State | None], ...],
                      scan: Callable[[_State], _State | None]) -> _State | None:
        """The caller the first of ``methods`` finds (one that fails on this frame's data
        counts as finding none), else what ``scan`` finds."""
        for method in methods:
            try:
                caller = method(state)
            except _LOCAL_ERRORS:
                caller = None
            if caller is not None:
                return caller
        return scan(state)

    def _breakpad_cfi_only(self, state: _State) -> _State | None:
        """STACK CFI for x86 and arm64 (no DWARF reader for them yet). After a frame found
        by frame pointer or scan, ``lr`` is a guess: CFI may not read it (rust-minidump
        allows it at a function's entry only)."""
        ms, addr = self._lookup(state)
        if ms is None or ms.breakpad is None:
            return None
        if self.arm64 and state.trust in (FrameTrust.FRAME_POINTER, FrameTrust.SCAN):
            state = _State({k: v for k, v in state.regs.items() if k != LR}, state.trust,
                           state.cfa, state.exact_pc)
        return self.by_breakpad_cfi(state, ms.breakpad, ms.vaddr(addr))

    def describe(self, state: _State, index: int, cfa: int | None = None) -> Frame:
        pc, sp = state.regs[RA], state.regs[RSP]
        names = _X86_NAMES if self.x86 else _ARM64_NAMES if self.arm64 else _AMD64_NAMES
        regs = {names[n]: v for n, v in state.regs.items() if n in names}
        addr = pc if state.exact_pc else pc - 1
        module = self.sym.module_at(addr)
        if module is None:
            return Frame(index, pc, sp, cfa, state.trust, None, None, None, None, None, (),
                         None, None, "not in any module", regs, state.note)
        ms = self.sym.for_module(module)
        try:
            match = ms.symbolize(ms.vaddr(addr))
        except _LOCAL_ERRORS:
            match = None
        try:
            source = ms.source(ms.vaddr(addr))
        except _LOCAL_ERRORS:
            source = None
        file, line = source if source is not None else (None, None)
        if match is None:
            return Frame(index, pc, sp, cfa, state.trust, module.name, pc - module.base, None,
                         None, None, (), file, line, ms.why_unnamed(), regs, state.note)
        start = module.base - ms.load_base + match.start
        return Frame(index, pc, sp, cfa, state.trust, module.name, pc - module.base,
                     match.name, pc - start, match.raw, match.aliases, file, line, None, regs,
                     state.note)


def _arm64_is_call(word: int) -> bool:
    """BL imm26, BLR Xn, or the pointer-authenticating BLRAA/BLRAAZ/BLRAB/BLRABZ."""
    return (word & 0xFC000000 == 0x94000000 or word & 0xFFFFFC1F == 0xD63F0000
            or word & 0xFEFFF800 == 0xD63F0800)


# arm64 registers in the walker's slots: pc in RA, sp in RSP, x29 in RBP, x<n> at 100 + n
ARM64_USER_LIMIT = 0x000F_FFFF_FFFF_FFFF  # rust-minidump's bound for a plausible pc
LR = 130
_ARM64_NAMES = {RA: "pc", RSP: "sp", RBP: "x29", **{100 + n: f"x{n}" for n in range(31)
                                                    if n != 29}}
_ARM64_SLOTS = {name: slot for slot, name in _ARM64_NAMES.items()} | {
    "fp": RBP, "lr": LR, "x30": LR}
_ARM64_CALLEE_SAVED = (*range(119, 129), RBP)  # x19..x28, x29


def _arm64_regs(ctx: md.ContextARM64 | md.ContextARM64Old) -> dict[int, int]:
    regs = {100 + n: ctx.x(n) for n in range(31) if n != 29}
    regs.update({RA: ctx.pc, RSP: ctx.sp, RBP: ctx.fp})
    return regs


def _pac_mask(dump: Minidump) -> int:
    """rust-minidump's pointer-authentication strip mask: every address bit up to the
    highest of 2**47 - 1 and the end of the highest module."""
    try:
        highest = max((m.end for m in dump.modules), default=0)
    except MinidumpFormatError:
        highest = 0
    top = max((1 << 47) - 1, highest)
    return (1 << top.bit_length()) - 1 if top < 1 << 63 else (1 << 64) - 1


def _follows_call(code: bytes) -> bool:
    """Whether the 7 bytes before a return address end with a call instruction:
    ``E8 rel32`` or ``FF /2`` (register, memory, rip-relative; optional REX)."""
    if len(code) >= 5 and code[-5] == 0xE8:
        return True
    for length in (2, 3, 4, 6, 7):
        if len(code) < length:
            continue
        at = len(code) - length
        if code[at] != 0xFF:
            continue
        modrm = code[at + 1]
        if (modrm >> 3) & 7 != 2:
            continue
        if _ff_length(modrm, code[at + 2] if at + 2 < len(code) else 0) == length:
            return True
    return False


def _ff_length(modrm: int, sib: int) -> int:
    mod, rm = modrm >> 6, modrm & 7
    if mod == 3:
        return 2
    if mod == 0:
        if rm == 5:
            return 6
        if rm == 4:
            return 7 if sib & 7 == 5 else 3
        return 2
    if mod == 1:
        return 4 if rm == 4 else 3
    return 7 if rm == 4 else 6


def _amd64_regs(ctx: md.ContextAMD64) -> dict[int, int]:
    return {n: getattr(ctx, name) for n, name in enumerate(_DWARF_REGS)}


# x86 registers in the walker's slots (pc in RA, sp in RSP, frame pointer in RBP) and the
# i386 DWARF numbers of the rest: eax ecx edx ebx esp ebp esi edi
_X86_NAMES = {0: "eax", 1: "ecx", 2: "edx", 3: "ebx", 6: "ebp", 7: "esp", 16: "eip",
              4: "esi", 5: "edi"}
_X86_CALLEE_SAVED = (3, 4, 5, RBP)  # ebx esi edi ebp


def _x86_regs(ctx: md.ContextX86) -> dict[int, int]:
    return {0: ctx.eax, 1: ctx.ecx, 2: ctx.edx, 3: ctx.ebx, 4: ctx.esi, 5: ctx.edi,
            RBP: ctx.ebp, RSP: ctx.esp, RA: ctx.eip}


T = TypeVar("T")


def _optional(read: Callable[[], T | None]) -> T | None:
    """A stream the walk can do without: a malformed one counts as absent."""
    try:
        return read()
    except MinidumpFormatError:
        return None


def walk_thread(dump: Minidump, thread: Thread, symbolizer: Symbolizer, *,
                max_frames: int = MAX_FRAMES) -> CallStack:
    """Walk one thread of ``dump`` (see :func:`minidumpkit.analysis.walk_stack`)."""
    name = thread.name
    context = thread.context
    exc = _optional(lambda: dump.exception)
    if exc is not None and exc.thread_id == thread.thread_id and exc.context is not None:
        context = exc.context  # the fault-time state, as crash reporters walk it
    system = _optional(lambda: dump.system_info)
    cpu = system.cpu if system is not None else None
    if context is None:
        why = "no context" if thread.context_size == 0 and cpu in (None, "amd64") else \
            f"not walked: arch {cpu or 'unknown'}"
        return CallStack(thread.thread_id, name, [], why)
    walker = _Walker(dump, symbolizer)
    if isinstance(context, md.ContextX86):
        walker.x86, walker.canonical_limit = True, 1 << 32
        walker.reg_slots = {name: slot for slot, name in _X86_NAMES.items()}
        walker.callee_saved = _X86_CALLEE_SAVED
        frames, end = walker.walk(_x86_regs(context), max_frames)
        return CallStack(thread.thread_id, name, frames, "ok", end)
    if isinstance(context, (md.ContextARM64, md.ContextARM64Old)):
        walker.arm64 = True
        walker.canonical_limit = ARM64_USER_LIMIT + 1
        walker.reg_slots, walker.callee_saved = _ARM64_SLOTS, _ARM64_CALLEE_SAVED
        walker.pac_mask = _pac_mask(dump)
        frames, end = walker.walk(_arm64_regs(context), max_frames)
        return CallStack(thread.thread_id, name, frames, "ok", end)
    if not isinstance(context, md.ContextAMD64):
        return CallStack(thread.thread_id, name, [], f"not walked: arch {cpu or 'unknown'}")
    frames, end = walker.walk(_amd64_regs(context), max_frames)
    return CallStack(thread.thread_id, name, frames, "ok", end)
