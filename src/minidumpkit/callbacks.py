"""The callback object: dbghelp's ``MINIDUMP_CALLBACK_ROUTINE`` as Python methods.

Subclass :class:`DumpCallbacks`, override the methods whose default you want to
change, and pass an instance to :meth:`Dumper.write <minidumpkit.Dumper.write>`::

    class OnlyMain(mdk.DumpCallbacks):
        def include_thread(self, thread):
            return thread.tid == pid

    mdk.Dumper(pid).write("app.dmp", callbacks=OnlyMain())

Each method answers one ``MINIDUMP_CALLBACK_TYPE`` (:data:`CALLBACK_TABLE` maps
every type, including those minidumpkit answers itself, to its method, default
and Linux behaviour) and receives typed, immutable objects: :class:`CallbackThread`,
:class:`CallbackModule`, :class:`VmRegion`. Both backends produce these same
types: the Linux writer from its capture, the Windows trampoline from
``MINIDUMP_THREAD_CALLBACK``, ``MINIDUMP_MODULE_CALLBACK`` and friends. A field a
platform does not report at that point holds its empty value (0, ``""``,
``b""``, None), as documented per class.

An exception raised by any method stops the dump; the partial file is removed
and the exception propagates from ``write`` unchanged (same object, traceback
through your method). :meth:`DumpCallbacks.cancel` returning True raises
:class:`~minidumpkit.DumpCancelled` and leaves no file.

On Linux the planning methods (include_*, thread, module, memory, remove_memory)
run while the target is stopped: a slow callback lengthens the target's pause.
"""

from __future__ import annotations

import dataclasses
import errno
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import NamedTuple

from . import format as md
from ._capture import CapturedModule, CapturedThread, ProcessCapture, Region
from ._selection import DumpPolicy, RegionIndex, stack_range
from .errors import DumpCancelled, ProcessError
from .flags import CallbackType, ModuleWriteFlags, ThreadWriteFlags

__all__ = [
    "CALLBACK_TABLE",
    "CallbackModule",
    "CallbackRole",
    "CallbackThread",
    "DumpCallbacks",
    "VmRegion",
    "as_policy",
]


# --- the typed objects --------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CallbackThread:
    """One thread of the target, as the callbacks see it.

    ============  =====================================  ==========================================
    field         Linux (the stopped thread)             Windows (dbghelp's callback input)
    ============  =====================================  ==========================================
    tid           the thread id                          ``ThreadId``
    name          ``/proc/PID/task/TID/comm``            ``""`` (dbghelp passes no name)
    context       its registers (CONTEXT_AMD64)          ``Context`` (Thread/ThreadEx callbacks);
                                                         None for IncludeThreadCallback
    stack_base    lowest stack address the dump copies   the lower of ``StackBase`` and
                  (``rsp - 128``, or 0: no stack found)  ``StackEnd``; 0 for IncludeThread
    stack_end     one past the highest copied address    the higher of the two; 0 for
                                                         IncludeThread
    teb           fs_base (the TLS pointer)              0 (not in the callback input)
    ============  =====================================  ==========================================

    ``stack_base .. stack_end`` is the range the dump will copy for this thread's
    stack if its ThreadWriteFlags keep ``Stack`` (within the stack size limit),
    always low to high: Microsoft's dbghelp sends ``StackBase`` as the top of the
    stack and ``StackEnd`` as the stack pointer, Wine's the other way round.
    """

    tid: int
    name: str = ""
    context: md.ContextAMD64 | None = None
    stack_base: int = 0
    stack_end: int = 0
    teb: int = 0

    @property
    def pc(self) -> int | None:
        """The instruction pointer, or None without a context."""
        return None if self.context is None else self.context.rip

    @property
    def sp(self) -> int | None:
        """The stack pointer, or None without a context."""
        return None if self.context is None else self.context.rsp

    @property
    def registers(self) -> dict[str, int]:
        """General registers by name (rax ... r15, rip, eflags); empty without a context."""
        c = self.context
        if c is None:
            return {}
        regs = {name: int(getattr(c, name)) for name in md.AMD64_GPRS}
        regs["rip"] = c.rip
        regs["eflags"] = c.eflags
        return regs

    @property
    def stack_size(self) -> int:
        return max(self.stack_end - self.stack_base, 0)

    @classmethod
    def from_captured(cls, thread: CapturedThread,
                      stack: tuple[int, int] | None = None) -> CallbackThread:
        """The Linux (platform-free capture) view of ``thread``; ``stack`` is the
        ``(start, end)`` range the writer would copy."""
        start, end = stack if stack is not None else (0, 0)
        return cls(tid=thread.tid, name=thread.name, context=thread.context,
                   stack_base=start, stack_end=end, teb=thread.teb)


def _basename(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


@dataclasses.dataclass(frozen=True)
class CallbackModule:
    """One loaded module (ELF object on Linux, PE image on Windows).

    ===============  ======================================  =================================
    field            Linux                                   Windows
    ===============  ======================================  =================================
    path             the mapped file's path                  ``FullPath``; ``""`` for
                                                             IncludeModuleCallback
    base             lowest address of its mappings          ``BaseOfImage``
    size             span of its mappings                    ``SizeOfImage``; 0 for IncludeModule
    build_id         ELF NT_GNU_BUILD_ID (may be empty)      ``b""``
    version          None (ELF has no version resource)      ``VersionInfo``
    time_date_stamp  0                                       ``TimeDateStamp``
    checksum         0                                       ``CheckSum``
    cv_record        the CodeView record the dump holds:     ``CvRecord`` bytes (RSDS ...)
                     ``b"LEpB" + build_id``, or ``b""``
    misc_record      ``b""``                                 ``MiscRecord`` bytes
    ===============  ======================================  =================================
    """

    path: str
    base: int
    size: int = 0
    build_id: bytes = b""
    version: md.VsFixedFileInfo | None = None
    time_date_stamp: int = 0
    checksum: int = 0
    cv_record: bytes = b""
    misc_record: bytes = b""

    @property
    def name(self) -> str:
        """The file name without its directory (either separator)."""
        return _basename(self.path)

    @property
    def end(self) -> int:
        return self.base + self.size

    def contains(self, address: int) -> bool:
        return self.base <= address < self.end

    @classmethod
    def from_captured(cls, module: CapturedModule) -> CallbackModule:
        cv = (md.CV_SIGNATURE_ELF.to_bytes(4, "little") + bytes(module.build_id)
              if module.build_id else b"")
        return cls(path=module.path, base=module.base, size=module.size,
                   build_id=bytes(module.build_id), version=module.version, cv_record=cv)


# Windows PAGE_* protection of a Linux mapping, by (read, write, execute). Windows has no
# write-only or execute-only-with-write page, so those widen as Crashpad widens them.
_PROTECT = {
    (False, False, False): md.MemProtect.NOACCESS,
    (True, False, False): md.MemProtect.READONLY,
    (False, True, False): md.MemProtect.READWRITE,
    (True, True, False): md.MemProtect.READWRITE,
    (False, False, True): md.MemProtect.EXECUTE,
    (True, False, True): md.MemProtect.EXECUTE_READ,
    (False, True, True): md.MemProtect.EXECUTE_READWRITE,
    (True, True, True): md.MemProtect.EXECUTE_READWRITE,
}
_READABLE = (md.MemProtect.READONLY | md.MemProtect.READWRITE | md.MemProtect.WRITECOPY
             | md.MemProtect.EXECUTE_READ | md.MemProtect.EXECUTE_READWRITE
             | md.MemProtect.EXECUTE_WRITECOPY)
_WRITABLE = (md.MemProtect.READWRITE | md.MemProtect.WRITECOPY | md.MemProtect.EXECUTE_READWRITE
             | md.MemProtect.EXECUTE_WRITECOPY)
_EXECUTABLE = (md.MemProtect.EXECUTE | md.MemProtect.EXECUTE_READ
               | md.MemProtect.EXECUTE_READWRITE | md.MemProtect.EXECUTE_WRITECOPY)


@dataclasses.dataclass(frozen=True)
class VmRegion:
    """One region of the address space, in MINIDUMP_MEMORY_INFO's terms.

    On Windows it is the ``VmRegion`` dbghelp proposes in IncludeVmRegionCallback
    (:meth:`from_memory_info`); on Linux one ``/proc/PID/maps`` line
    (:meth:`from_region`): ``protect`` is the PAGE_* value of its r/w/x bits,
    ``state`` MEM_COMMIT, ``type`` MEM_MAPPED for shared mappings and MEM_PRIVATE
    otherwise, ``allocation_base``/``allocation_protect`` the region's own, ``path``
    the mapped file or pseudo-name (``"[heap]"``); Windows leaves ``path`` empty.
    """

    base: int
    size: int
    protect: int
    state: int = md.MemState.COMMIT
    type: int = md.MemType.PRIVATE
    allocation_base: int = 0
    allocation_protect: int = 0
    path: str = ""

    @property
    def end(self) -> int:
        return self.base + self.size

    @property
    def readable(self) -> bool:
        return bool(self.protect & _READABLE) and not self.protect & md.MemProtect.GUARD

    @property
    def writable(self) -> bool:
        return bool(self.protect & _WRITABLE)

    @property
    def executable(self) -> bool:
        return bool(self.protect & _EXECUTABLE)

    def contains(self, address: int) -> bool:
        return self.base <= address < self.end

    @classmethod
    def from_region(cls, region: Region) -> VmRegion:
        protect = int(_PROTECT[(region.readable, region.writable, region.executable)])
        return cls(base=region.start, size=region.size, protect=protect,
                   state=int(md.MemState.COMMIT),
                   type=int(md.MemType.PRIVATE if region.private else md.MemType.MAPPED),
                   allocation_base=region.start, allocation_protect=protect, path=region.path)

    @classmethod
    def from_memory_info(cls, info: md.MemoryInfo, path: str = "") -> VmRegion:
        return cls(base=info.base_address, size=info.region_size, protect=info.protect,
                   state=info.state, type=info.type, allocation_base=info.allocation_base,
                   allocation_protect=info.allocation_protect, path=path)

    def to_memory_info(self) -> md.MemoryInfo:
        return md.MemoryInfo(base_address=self.base, allocation_base=self.allocation_base,
                             allocation_protect=self.allocation_protect, alignment1=0,
                             region_size=self.size, state=self.state, protect=self.protect,
                             type=self.type, alignment2=0)


# --- the callback object -------------------------------------------------------------

class DumpCallbacks:
    """The questions dbghelp asks its ``MINIDUMP_CALLBACK_ROUTINE``, one method each.

    Override what you need; every default writes exactly what the dump type asks
    for. Order of the calls on Linux: :meth:`cancel`;
    :meth:`include_thread` for every thread; :meth:`include_module` for every
    module; :meth:`thread` for every included thread; :meth:`module` for every
    included module; :meth:`memory`; :meth:`remove_memory`; :meth:`include_vm_region`
    for each region copied in bulk (full/private memory types only); then while the
    file is written :meth:`cancel` before every stream and memory chunk,
    :meth:`progress` after every chunk, :meth:`read_memory_failure` when target
    memory cannot be read.

    On Windows the order is the DLL's own, and DLLs differ: Microsoft's dbghelp
    asks every :meth:`include_thread`, then every :meth:`include_module`, then
    :meth:`module` for every module *before* :meth:`thread` for every thread; Wine's
    asks :meth:`thread` first and sends no include_*, memory or cancel questions.
    Write callbacks that do not depend on the order of :meth:`thread` and
    :meth:`module` (decide each from its own argument). A full-memory dump
    (WithFullMemory) asks :meth:`include_vm_region` per region and never
    :meth:`memory`.

    Return values are checked: a method that should return a bool and returns
    something else (a forgotten ``return`` gives None) raises TypeError, which stops
    the dump like any other exception.
    """

    # IncludeThreadCallback
    def include_thread(self, thread: CallbackThread) -> bool:
        """Whether ``thread`` is in the dump at all. Default: True.

        False: no ThreadList, ThreadNames or ThreadInfoList entry and none of its
        stack. (An Exception stream blaming it keeps its own copy of the context.)
        """
        return True

    # IncludeModuleCallback
    def include_module(self, module: CallbackModule) -> bool:
        """Whether ``module`` is in ModuleList. Default: True."""
        return True

    # ThreadCallback / ThreadExCallback
    def thread(self, thread: CallbackThread, flags: ThreadWriteFlags) -> ThreadWriteFlags:
        """What is written for an included thread. Default: ``flags``.

        ``flags`` is what dbghelp pre-fills: Thread|Stack|Context|InstructionWindow,
        plus ThreadInfo with MiniDumpWithThreadInfo. As in dbghelp the answer can only
        clear bits (it is ANDed with ``flags``): without Thread the thread is left out;
        without Stack its stack is not copied; without Context its entry has no
        context; without InstructionWindow the code around its pc is not copied;
        without ThreadInfo it has no ThreadInfoList entry.
        """
        return flags

    # ModuleCallback
    def module(self, module: CallbackModule, flags: ModuleWriteFlags) -> ModuleWriteFlags:
        """What is written for an included module. Default: ``flags``
        (Module|CvRecord|MiscRecord); the answer is ANDed with it. Without Module the
        module is left out; without CvRecord it has no build id / PDB record."""
        return flags

    # MemoryCallback
    def memory(self) -> Iterable[tuple[int, int]]:
        """Extra ``(base, size)`` ranges of target memory to copy. Default: none.

        Unreadable parts go through :meth:`read_memory_failure`. (dbghelp calls
        MemoryCallback repeatedly for one range each; here one call returns them all.)
        """
        return ()

    # RemoveMemoryCallback
    def remove_memory(self) -> Iterable[tuple[int, int]]:
        """``(base, size)`` ranges kept out of the dump whatever added them (stacks,
        :meth:`memory`, indirectly referenced memory). Default: none."""
        return ()

    # IncludeVmRegionCallback
    def include_vm_region(self, region: VmRegion) -> bool:
        """Whether a region the dump type copies whole (WithFullMemory,
        WithPrivateReadWriteMemory ...) is copied. Default: True.

        Not called for dump types that copy no whole region (DumpType.MINI on
        Linux); stacks and :meth:`memory` ranges never go through it. On Windows
        it is asked once per region (dbghelp asks twice; the second question gets
        the same answer), and False sets the proposed region's size to 0, which is
        how dbghelp leaves a region out.
        """
        return True

    # ReadMemoryFailureCallback
    def read_memory_failure(self, address: int, size: int, error: OSError) -> bool:
        """``size`` bytes of target memory at ``address`` could not be read.

        True (default): go on without those bytes (the range keeps what was read
        before ``address``). False: stop the dump with
        :class:`~minidumpkit.ProcessError` (errno EFAULT); no file is left.
        ``error`` says why (an OSError; on Windows its ``winerror`` holds dbghelp's
        FailureStatus).
        """
        return True

    # CancelCallback
    def cancel(self) -> bool:
        """Polled before the first question, before every stream and before every
        memory chunk. True stops the dump with :class:`~minidumpkit.DumpCancelled`
        and leaves no file. Default: False."""
        return False

    # (no MINIDUMP_CALLBACK_TYPE: dbghelp has no progress callback)
    def progress(self, done: int, total: int) -> None:
        """``done`` of ``total`` bytes of target memory copied; called after every
        chunk, never decreasing, first with ``done == 0`` and last with
        ``done == total``. Default: nothing. See :class:`minidumpkit.progress.ProgressBar`."""


class CallbackRole(NamedTuple):
    """How one MINIDUMP_CALLBACK_TYPE is answered."""

    method: str | None  # the DumpCallbacks method, None when minidumpkit answers itself
    default: str  # the answer when the method is not overridden
    linux: str  # what the Linux writer does


#: Every MINIDUMP_CALLBACK_TYPE: the method that answers it, its default, its Linux meaning.
CALLBACK_TABLE: Mapping[CallbackType, CallbackRole] = MappingProxyType({
    CallbackType.ModuleCallback: CallbackRole(
        "module", "flags unchanged: Module|CvRecord|MiscRecord",
        "called for every included module, after every include_module"),
    CallbackType.ThreadCallback: CallbackRole(
        "thread", "flags unchanged: Thread|Stack|Context|InstructionWindow (+ThreadInfo)",
        "called for every included thread, after every include_module"),
    CallbackType.ThreadExCallback: CallbackRole(
        "thread", "as ThreadCallback (its backing-store fields exist on IA64 only)",
        "never sent: every thread goes through ThreadCallback"),
    CallbackType.IncludeThreadCallback: CallbackRole(
        "include_thread", "True", "called for every thread, first"),
    CallbackType.IncludeModuleCallback: CallbackRole(
        "include_module", "True", "called for every module, after every include_thread"),
    CallbackType.MemoryCallback: CallbackRole(
        "memory", "no extra range", "called once, after the last module()"),
    CallbackType.CancelCallback: CallbackRole(
        "cancel", "False (CheckCancel stays TRUE: polling goes on)",
        "polled before the first question, every stream and every memory chunk"),
    CallbackType.WriteKernelMinidumpCallback: CallbackRole(
        None, "no kernel minidump (Handle NULL)", "never sent: there is no kernel dump"),
    CallbackType.KernelMinidumpStatusCallback: CallbackRole(
        None, "ignored (FALSE, output untouched)", "never sent"),
    CallbackType.RemoveMemoryCallback: CallbackRole(
        "remove_memory", "no range removed", "called once, after memory()"),
    CallbackType.IncludeVmRegionCallback: CallbackRole(
        "include_vm_region", "True, region unchanged",
        "asked for each region a full/private memory type copies whole; "
        "never with DumpType.MINI (no such region)"),
    CallbackType.IoStartCallback: CallbackRole(
        None, "Status untouched (dbghelp's E_NOTIMPL): dbghelp writes the file itself",
        "never sent: minidumpkit writes the file"),
    CallbackType.IoWriteAllCallback: CallbackRole(
        None, "never sent after IoStart is declined", "never sent"),
    CallbackType.IoFinishCallback: CallbackRole(
        None, "never sent after IoStart is declined", "never sent"),
    CallbackType.ReadMemoryFailureCallback: CallbackRole(
        "read_memory_failure", "True (S_OK): skip the unreadable bytes, go on",
        "called for each range cut short by unreadable memory"),
    CallbackType.SecondaryFlagsCallback: CallbackRole(
        None, "untouched: dbghelp's default MINIDUMP_SECONDARY_FLAGS", "never sent: no power information exists"),
    CallbackType.IsProcessSnapshotCallback: CallbackRole(
        None, "Status untouched (not a snapshot); Snapshot.write answers S_FALSE itself",
        "never sent: Linux snapshots are read directly"),
    CallbackType.VmStartCallback: CallbackRole(
        None, "Status untouched (dbghelp's E_NOTIMPL): dbghelp reads memory itself",
        "never sent"),
    CallbackType.VmQueryCallback: CallbackRole(
        None, "never sent after VmStart is declined", "never sent"),
    CallbackType.VmPreReadCallback: CallbackRole(
        None, "never sent after VmStart is declined", "never sent"),
    CallbackType.VmPostReadCallback: CallbackRole(
        None, "never sent after VmStart is declined", "never sent"),
})


# --- the Linux path: DumpCallbacks as the writer's DumpPolicy ------------------------

def _answer_bool(value: object, method: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"DumpCallbacks.{method}() must return a bool, not {value!r}")
    return value


def _answer_flags(value: object, method: str, kind: type[ThreadWriteFlags | ModuleWriteFlags]
                  ) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"DumpCallbacks.{method}() must return {kind.__name__}, not {value!r}")
    return int(value)


def _answer_ranges(value: object, method: str) -> list[tuple[int, int]]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"DumpCallbacks.{method}() must return an iterable of (base, size), "
                        f"not {value!r}")
    out = []
    for item in value:
        if not (isinstance(item, tuple) and len(item) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in item)):
            raise TypeError(f"DumpCallbacks.{method}() must yield (base, size) int pairs, "
                            f"got {item!r}")
        base, size = item
        if base < 0 or size < 0 or base + size > 1 << 64:
            raise ValueError(f"DumpCallbacks.{method}() gave an impossible range "
                             f"(0x{base:x}, {size})")
        out.append((base, size))
    return out


class _CallbacksPolicy(DumpPolicy):
    """Asks a :class:`DumpCallbacks` the writer's questions, with typed objects.

    The same CallbackThread / CallbackModule object is passed to include_* and to
    thread() / module(), so callbacks may keep them in sets or dicts.
    """

    def __init__(self, callbacks: DumpCallbacks) -> None:
        super().__init__()
        self.callbacks = callbacks
        self._pid: int | None = None
        self._threads: dict[int, CallbackThread] = {}
        self._modules: dict[int, CallbackModule] = {}

    def begin(self, capture: ProcessCapture) -> None:
        self._pid = capture.pid
        index = RegionIndex(capture.regions)
        self._threads = {t.tid: CallbackThread.from_captured(
            t, stack_range(t, index, self.max_stack_size)) for t in capture.threads}
        self._modules = {id(m): CallbackModule.from_captured(m) for m in capture.modules}

    def _thread(self, thread: CapturedThread) -> CallbackThread:
        view = self._threads.get(thread.tid)
        if view is None:  # a writer that did not call begin(): no stack range known
            view = self._threads[thread.tid] = CallbackThread.from_captured(thread)
        return view

    def _module(self, module: CapturedModule) -> CallbackModule:
        view = self._modules.get(id(module))
        if view is None:
            view = self._modules[id(module)] = CallbackModule.from_captured(module)
        return view

    def include_thread(self, thread: CapturedThread) -> bool:
        return _answer_bool(self.callbacks.include_thread(self._thread(thread)), "include_thread")

    def thread_flags(self, thread: CapturedThread,
                     default: ThreadWriteFlags) -> ThreadWriteFlags:
        answer = self.callbacks.thread(self._thread(thread), default)
        return ThreadWriteFlags(_answer_flags(answer, "thread", ThreadWriteFlags))

    def include_module(self, module: CapturedModule) -> bool:
        return _answer_bool(self.callbacks.include_module(self._module(module)), "include_module")

    def module_flags(self, module: CapturedModule,
                     default: ModuleWriteFlags) -> ModuleWriteFlags:
        answer = self.callbacks.module(self._module(module), default)
        return ModuleWriteFlags(_answer_flags(answer, "module", ModuleWriteFlags))

    def extra_memory(self) -> list[tuple[int, int]]:
        return _answer_ranges(self.callbacks.memory(), "memory")

    def remove_memory(self) -> list[tuple[int, int]]:
        return _answer_ranges(self.callbacks.remove_memory(), "remove_memory")

    def include_vm_region(self, region: Region) -> bool:
        answer = self.callbacks.include_vm_region(VmRegion.from_region(region))
        return _answer_bool(answer, "include_vm_region")

    def read_memory_failure(self, address: int, size: int, error: OSError) -> bool:
        if _answer_bool(self.callbacks.read_memory_failure(address, size, error),
                        "read_memory_failure"):
            return True
        where = f"process {self._pid}" if self._pid is not None else "the target"
        raise ProcessError(
            errno.EFAULT, f"cannot read {size} bytes of {where} at 0x{address:x} and "
            "DumpCallbacks.read_memory_failure() returned False, which stops the dump",
            pid=self._pid) from error

    def cancel(self) -> bool:
        if _answer_bool(self.callbacks.cancel(), "cancel"):
            raise DumpCancelled("the dump was cancelled: DumpCallbacks.cancel() returned True")
        return False

    def progress(self, done: int, total: int) -> None:
        self.callbacks.progress(done, total)


def as_policy(callbacks: object) -> DumpPolicy | None:
    """The writer's :class:`~minidumpkit._selection.DumpPolicy` for ``callbacks``.

    A :class:`DumpCallbacks` is adapted; a DumpPolicy (the writer's own interface,
    with its size limits) is used as is; None stays None (the defaults). Anything
    else raises TypeError before the target is touched.
    """
    if callbacks is None or isinstance(callbacks, DumpPolicy):
        return callbacks
    if isinstance(callbacks, DumpCallbacks):
        return _CallbacksPolicy(callbacks)
    raise TypeError(f"callbacks must be a minidumpkit.DumpCallbacks instance, not "
                    f"{type(callbacks).__name__}")
