"""Breakpad symbol files (``.sym``): FUNC, LINE, FILE, PUBLIC and STACK CFI records.

The format Mozilla, Sentry and Chromium ship symbols in (``dump_syms`` writes it). A
store is laid out as ``NAME/DEBUGID/NAME.sym`` (NAME the module's file name, DEBUGID the
module's debug id, as rust-minidump and Breakpad look it up). Addresses in the file are
offsets from the module's base.

Names follow the walker's rule: a FUNC record covers ``[address, address + size)``; a
PUBLIC record has no size, so it names a pc only when the STACK CFI INIT or STACK WIN
record covering the pc starts at the PUBLIC's address (the same rule as a size-0 ELF
symbol and its FDE).
STACK CFI rules are postfix expressions (``.cfa: $rsp 8 +  .ra: .cfa -8 + ^``) evaluated
with ``+ - * / % @ ^`` as Breakpad defines them. Lines that do not parse are counted and
skipped, as rust-minidump does.
"""

from __future__ import annotations

import bisect
from typing import Callable

from .._lazydataclass import lazy_dataclass

__all__ = ["BreakpadError", "BreakpadSymbols", "WinFrameInfo", "evaluate_win", "read_module_line"]


class BreakpadError(Exception):
    """A STACK CFI rule that cannot be evaluated, or a file that is not a .sym file."""


class _Func:
    __slots__ = ("start", "size", "name", "lines")

    def __init__(self, start: int, size: int, name: str) -> None:
        self.start, self.size, self.name = start, size, name
        self.lines: list[tuple[int, int, int, int]] = []  # addr, size, line, file


@lazy_dataclass
class WinFrameInfo:
    """One ``STACK WIN`` record: Windows x86 frame data (type 4, with a postfix program
    string) or FPO data (type 0, sizes and whether the function keeps ``ebp``)."""

    type: int
    start: int
    size: int
    parameter_size: int
    saved_register_size: int
    local_size: int
    program: str | None
    allocates_base_pointer: bool


STACK_WIN_FPO = 0
STACK_WIN_FRAME_DATA = 4


def read_module_line(path: str) -> tuple[str, str, str, str] | None:
    """``MODULE os arch id name`` of a .sym file, or None."""
    try:
        with open(path, "rb") as f:
            first = f.readline(4096).decode("utf-8", "replace").split(None, 4)
    except OSError:
        return None
    if len(first) != 5 or first[0] != "MODULE":
        return None
    return first[1], first[2], first[3], first[4].strip()


class BreakpadSymbols:
    """One parsed .sym file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.corrupt_lines = 0
        self.files: dict[int, str] = {}
        funcs: list[_Func] = []
        publics: list[tuple[int, str]] = []
        inits: list[tuple[int, int, str]] = []
        deltas: list[tuple[int, str]] = []
        wins: list[WinFrameInfo] = []
        current: _Func | None = None
        with open(path, "rb") as f:
            head = f.readline().decode("utf-8", "replace").split(None, 4)
            if len(head) != 5 or head[0] != "MODULE":
                raise BreakpadError(f"{path}: not a Breakpad symbol file (no MODULE line)")
            self.module_id = head[3]
            for raw in f:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                try:
                    if line.startswith("FUNC "):
                        parts = line.split(None, 4)  # FUNC address size param_size name
                        if parts[1] == "m":  # multiple: the address has several names
                            parts = [parts[0]] + line.split(None, 5)[2:]
                        current = _Func(int(parts[1], 16), int(parts[2], 16), parts[4])
                        funcs.append(current)
                    elif line.startswith("PUBLIC "):
                        parts = line.split(None, 3)  # PUBLIC address param_size name
                        if parts[1] == "m":
                            parts = [parts[0]] + line.split(None, 4)[2:]
                        publics.append((int(parts[1], 16), parts[3]))
                        current = None
                    elif line.startswith("STACK CFI INIT "):
                        parts = line.split(None, 5)
                        inits.append((int(parts[3], 16), int(parts[4], 16), parts[5]))
                        current = None
                    elif line.startswith("STACK CFI "):
                        parts = line.split(None, 3)
                        deltas.append((int(parts[2], 16), parts[3]))
                    elif line.startswith("FILE "):
                        parts = line.split(None, 2)
                        self.files[int(parts[1])] = parts[2]
                    elif line[:1] in "0123456789abcdef" and line and current is not None:
                        a, s, ln, fi = line.split()[:4]
                        current.lines.append((int(a, 16), int(s, 16), int(ln), int(fi)))
                    elif line.startswith("STACK WIN "):
                        wins.append(_win_record(line))
                        current = None
                    elif line.startswith(("INFO ", "INLINE")) or not line:
                        pass
                    else:
                        self.corrupt_lines += 1
                except (ValueError, IndexError):
                    self.corrupt_lines += 1
        funcs.sort(key=lambda fn: fn.start)
        self._funcs = funcs
        self._func_starts = [fn.start for fn in funcs]
        publics.sort()
        self._publics = dict(publics)
        inits.sort()
        self._inits = inits
        self._init_starts = [i[0] for i in inits]
        deltas.sort()
        self._deltas = deltas
        self._delta_starts = [d[0] for d in deltas]
        # frame data (type 4) wins over FPO (type 0) at the same address, as in Breakpad
        wins.sort(key=lambda w: (w.start, w.type != STACK_WIN_FRAME_DATA))
        self._wins = wins
        self._win_starts = [w.start for w in wins]

    # --- names and lines ---------------------------------------------------------------

    def function(self, offset: int) -> tuple[str, int] | None:
        """(name, start) of the FUNC covering ``offset``, else of a PUBLIC that starts the
        STACK CFI INIT range covering it."""
        i = bisect.bisect_right(self._func_starts, offset) - 1
        if i >= 0 and offset < self._funcs[i].start + self._funcs[i].size:
            return self._funcs[i].name, self._funcs[i].start
        # a PUBLIC has no size: the extent of the STACK CFI INIT or STACK WIN record that
        # starts at it (Windows symbol files have the latter) stands in for one
        extents: list[tuple[int, int]] = []
        init = self._init(offset)
        if init is not None:
            extents.append((init[0], init[1]))
        win = self.win_info(offset)
        if win is not None:
            extents.append((win.start, win.size))
        for start, size in extents:
            if start not in self._publics:
                continue
            j = bisect.bisect_left(self._func_starts, start)
            if j == len(self._funcs) or self._funcs[j].start >= start + size:
                return self._publics[start], start
        return None

    def source(self, offset: int) -> tuple[str, int] | None:
        i = bisect.bisect_right(self._func_starts, offset) - 1
        if i < 0 or offset >= self._funcs[i].start + self._funcs[i].size:
            return None
        for a, s, ln, fi in self._funcs[i].lines:
            if a <= offset < a + s:
                name = self.files.get(fi)
                return None if name is None else (name, ln)
        return None

    @property
    def has_functions(self) -> bool:
        return bool(self._funcs or self._publics)

    # --- STACK CFI ---------------------------------------------------------------------

    def _init(self, offset: int) -> tuple[int, int, str] | None:
        i = bisect.bisect_right(self._init_starts, offset) - 1
        if i >= 0 and offset < self._inits[i][0] + self._inits[i][1]:
            return self._inits[i]
        return None

    def has_cfi(self, offset: int) -> bool:
        return self._init(offset) is not None or self.win_info(offset) is not None

    def win_info(self, offset: int) -> WinFrameInfo | None:
        """The STACK WIN record covering ``offset`` (frame data before FPO), or None."""
        i = bisect.bisect_right(self._win_starts, offset) - 1
        found: WinFrameInfo | None = None
        while i >= 0 and self._wins[i].start > offset - (1 << 24):
            w = self._wins[i]
            if w.start <= offset < w.start + w.size and (
                    found is None or w.start > found.start
                    or (w.start == found.start and w.type == STACK_WIN_FRAME_DATA)):
                found = w
            if found is not None and w.start < found.start:
                break
            i -= 1
        return found

    def rules(self, offset: int) -> dict[str, str] | None:
        """{register: postfix expression} in force at ``offset``: the INIT record's, then
        every delta record at or before it, later ones replacing earlier ones."""
        init = self._init(offset)
        if init is None:
            return None
        rules = _split_rules(init[2])
        lo = bisect.bisect_right(self._delta_starts, init[0])
        hi = bisect.bisect_right(self._delta_starts, offset)
        for _addr, text in self._deltas[lo:hi]:
            rules.update(_split_rules(text))
        return rules


def _split_rules(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    reg: str | None = None
    expr: list[str] = []
    for token in text.split():
        if token.endswith(":"):
            if reg is not None:
                out[reg] = " ".join(expr)
            reg, expr = token[:-1].lstrip("$"), []
        else:
            expr.append(token)
    if reg is not None:
        out[reg] = " ".join(expr)
    return out


def evaluate(expr: str, register: Callable[[str], int], read_u64: Callable[[int], int],
             cfa: int | None = None) -> int:
    """A STACK CFI postfix expression. ``register("rsp")`` gives a callee register (raises
    if unknown); ``.cfa`` is the CFA once computed; ``.undef`` makes the rule fail."""
    stack: list[int] = []
    mask = (1 << 64) - 1
    for token in expr.split():
        if token in ("+", "-", "*", "/", "%", "@"):
            if len(stack) < 2:
                raise BreakpadError(f"stack underflow in {expr!r}")
            b, a = stack.pop(), stack.pop()
            if token in ("/", "%", "@") and b == 0:
                raise BreakpadError(f"division by zero in {expr!r}")
            value = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                     "/": lambda: a // b, "%": lambda: a % b,
                     "@": lambda: a & ~(b - 1)}[token]()
            stack.append(value & mask)
        elif token == "^":
            if not stack:
                raise BreakpadError(f"stack underflow in {expr!r}")
            stack.append(read_u64(stack.pop()))
        elif token == ".cfa":
            if cfa is None:
                raise BreakpadError(".cfa used before it is known")
            stack.append(cfa)
        elif token == ".undef":
            raise BreakpadError("undefined")
        elif token.lstrip("-").isdigit():
            stack.append(int(token) & mask)
        elif token.lower().startswith("0x"):
            stack.append(int(token, 16) & mask)
        else:
            stack.append(register(token.lstrip("$")))
    if len(stack) != 1:
        raise BreakpadError(f"{expr!r} leaves {len(stack)} values")
    return stack[0]


def _win_record(line: str) -> WinFrameInfo:
    """``STACK WIN type rva code_size prologue epilogue params saved_regs locals
    max_stack has_program program_string|allocates_base_pointer``."""
    parts = line.split(None, 12)
    if len(parts) < 13:
        raise ValueError("short STACK WIN record")
    kind, start, size = int(parts[2], 16), int(parts[3], 16), int(parts[4], 16)
    params, saved, local = (int(parts[i], 16) for i in (7, 8, 9))
    has_program = parts[11] != "0"
    return WinFrameInfo(kind, start, size, params, saved, local,
                        parts[12].strip() if has_program else None,
                        not has_program and parts[12].strip() != "0")


def evaluate_win(program: str, variables: dict[str, int],
                 read_u32: Callable[[int], int]) -> dict[str, int]:
    """Run a STACK WIN program string (Windows frame data, as the PDB gives it): postfix
    ``+ - * / % @`` and ``^`` (read 4 bytes), and ``=`` assigning to a ``$`` variable,
    e.g. ``$T0 $ebp = $eip $T0 4 + ^ = $ebp $T0 ^ = $esp $T0 8 + =``. ``variables``
    holds ``$ebp``, ``$esp``, ``.cbSavedRegs``, ``.raSearchStart`` ...; the result is
    every variable afterwards. Raises BreakpadError for a program that does not run."""
    mask = 0xFFFF_FFFF
    values = dict(variables)
    stack: list[int | str] = []

    def operand() -> int:
        if not stack:
            raise BreakpadError(f"stack underflow in {program!r}")
        top = stack.pop()
        if isinstance(top, int):
            return top
        if top not in values:
            raise BreakpadError(f"{top} is not set in {program!r}")
        return values[top]

    for token in program.split():
        if token in ("+", "-", "*", "/", "%", "@"):
            b, a = operand(), operand()
            if token in ("/", "%", "@") and b == 0:
                raise BreakpadError(f"division by zero in {program!r}")
            result = {"+": a + b, "-": a - b, "*": a * b,
                      "/": a // b if token == "/" else 0, "%": a % b if token == "%" else 0,
                      "@": a & ~(b - 1) if token == "@" else 0}[token]
            stack.append(result & mask)
        elif token == "^":
            stack.append(read_u32(operand()))
        elif token == "=":
            value = operand()
            if not stack or not isinstance(stack[-1], str) or not stack[-1].startswith("$"):
                raise BreakpadError(f"assignment to a non-variable in {program!r}")
            values[str(stack.pop())] = value
        elif token[0] in "$.":
            stack.append(token)
        else:
            try:
                stack.append(int(token, 10) & mask)
            except ValueError:
                raise BreakpadError(f"bad token {token!r} in {program!r}") from None
    if stack:
        raise BreakpadError(f"{program!r} leaves {len(stack)} values")
    return values
