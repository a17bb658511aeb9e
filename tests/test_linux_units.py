"""Unit tests of the Linux backend's pieces: /proc parsing, ELF reading, the errno
checker, the Yama branch of the self-dump, and the cffi declarations."""

from __future__ import annotations

import errno
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux backend")

from minidumpkit import errors  # noqa: E402
from minidumpkit._backends import _elf, _procfs, _selfdump, linux  # noqa: E402
from minidumpkit._capture import Region  # noqa: E402
from minidumpkit._ffi import _errors, libc  # noqa: E402


def readelf_build_id(path: str | Path) -> str:
    """The GNU build id as binutils' readelf prints it (the independent reference)."""
    out = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True,
                         check=True).stdout
    match = re.search(r"Build ID: ([0-9a-f]+)", out)
    assert match, f"readelf found no build id in {path}"
    return match.group(1)


def test_ffi_layouts_match_the_kernel_abi() -> None:
    """struct user_regs_struct / user_fpregs_struct have the sizes PTRACE_GETREGSET fills
    (216 and 512 bytes, sys/user.h on x86_64)."""
    ffi, _ = libc.load()
    assert ffi.sizeof("struct user_regs_struct") == 216
    assert ffi.sizeof("struct user_fpregs_struct") == 512
    assert ffi.offsetof("struct user_regs_struct", "rip") == 128
    assert ffi.offsetof("struct user_regs_struct", "fs_base") == 168
    assert ffi.sizeof("struct iovec") == 16


def test_importing_the_package_does_not_load_cffi() -> None:
    """`import minidumpkit` and even importing the Linux backend leave cffi unloaded:
    the library is opened on first use."""
    code = ("import sys, minidumpkit, minidumpkit._backends.linux, minidumpkit.dumper;"
            "print('cffi' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_check_errno_maps_errno_to_the_hierarchy() -> None:
    """-1 from libc becomes ProcessNotFound for ESRCH and AccessDenied for EPERM; other
    values pass through."""
    ffi, lib = libc.load()
    assert _errors.check_errno(5, "x", 1) == 5
    assert lib.kill(2**22 + 12345, 0) == -1  # beyond pid_max: ESRCH
    with pytest.raises(errors.ProcessNotFound) as info:
        _errors.check_errno(-1, "kill", 2**22 + 12345)
    assert info.value.errno == errno.ESRCH and info.value.pid == 2**22 + 12345
    ffi.errno = errno.EPERM
    with pytest.raises(errors.AccessDenied):
        _errors.check_errno(-1, "ptrace", 1)


def test_parse_stat_handles_hostile_comm() -> None:
    """A comm with spaces and parentheses does not shift the fields (it ends at the
    last ')')."""
    line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 1 0 0 0 7 9 0 0 20 0 3 0 1234 0 0\n"
    st = _procfs.parse_stat(line)
    assert (st.pid, st.comm, st.state, st.ppid) == (42, "a) b (c)", "S", 1)
    assert (st.flags, st.utime, st.stime, st.starttime) == (4194560, 7, 9, 1234)


def test_parse_stat_of_a_real_process_matches_ps() -> None:
    """Fields parsed from /proc/self/stat agree with what ps reports for us."""
    st = _procfs.read_stat(os.getpid())
    out = subprocess.run(["ps", "-o", "ppid=,comm=", "-p", str(os.getpid())],
                         capture_output=True, text=True, check=True).stdout.split()
    assert st.pid == os.getpid() and st.ppid == int(out[0]) == os.getppid()


def test_parse_maps_fields() -> None:
    """Every column of a maps line lands in its Region field; paths with spaces survive."""
    text = ("55d0c0a00000-55d0c0a02000 r--p 00000000 fe:00 26723   /usr/bin/my prog\n"
            "7ffc1000-7ffc3000 rw-p 00000000 00:00 0                          [stack]\n"
            "7f0000000000-7f0000001000 ---s 00002000 00:05 77 /dev/zero (deleted)\n")
    a, b, c = _procfs.parse_maps(text)
    assert (a.start, a.end, a.readable, a.writable, a.executable, a.private) == \
        (0x55D0C0A00000, 0x55D0C0A02000, True, False, False, True)
    assert (a.device, a.inode, a.path) == ("fe:00", 26723, "/usr/bin/my prog")
    assert b.path == "[stack]" and b.writable
    assert (c.private, c.offset, c.path) == (False, 0x2000, "/dev/zero (deleted)")


def test_parse_auxv_stops_at_at_null() -> None:
    data = struct.pack("<6Q", 3, 0x400040, 9, 0x401000, 0, 0) + struct.pack("<2Q", 5, 99)
    assert _procfs.parse_auxv(data) == {3: 0x400040, 9: 0x401000}


def test_auxv_of_ourselves_matches_python() -> None:
    """AT_ENTRY parsed from /proc/self/auxv equals what glibc's getauxval returns."""
    import ctypes

    getauxval = ctypes.CDLL(None).getauxval
    getauxval.restype = ctypes.c_ulong
    auxv = _procfs.parse_auxv(_procfs.read_bytes("/proc/self/auxv"))
    for key in (_procfs.AT_ENTRY, _procfs.AT_PHDR, _procfs.AT_SYSINFO_EHDR):
        assert auxv[key] == getauxval(key)


def test_cpuinfo_count_matches_nproc() -> None:
    info = _procfs.parse_cpuinfo(_procfs.read_text("/proc/cpuinfo"))
    nproc = int(subprocess.run(["nproc", "--all"], capture_output=True, text=True).stdout)
    assert int(info["count"]) == nproc
    assert "vendor_id" in info


def test_cpuid_version_encoding() -> None:
    """Family/model/stepping fold back into CPUID.1:EAX the way the SDM defines it
    (AMD Zen 2 family 23 model 49 stepping 0 = 0x00830F10; Intel Skylake 6/85/4 =
    0x00050654)."""
    assert linux._cpuid_version(23, 49, 0) == 0x00830F10
    assert linux._cpuid_version(6, 85, 4) == 0x00050654


def test_handles_of_our_own_process(tmp_path: Path) -> None:
    """Descriptors we open appear with the right type, name and open flags."""
    import socket

    path = tmp_path / "some file"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    r, w = os.pipe()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        handles = {h.handle: h for h in _procfs.iter_handles(os.getpid())}
        assert handles[fd].type_name == "File" and handles[fd].object_name == str(path)
        assert handles[fd].granted_access & os.O_APPEND
        assert handles[fd].granted_access & os.O_ACCMODE == os.O_WRONLY
        assert handles[r].type_name == "Pipe" and handles[r].object_name.startswith("pipe:[")
        assert handles[w].object_name == handles[r].object_name
        assert handles[s.fileno()].type_name == "Socket"
        assert handles[dfd].type_name == "Directory" and handles[dfd].object_name == str(tmp_path)
    finally:
        for f in (fd, r, w, dfd):
            os.close(f)
        s.close()


def test_build_id_from_file_equals_readelf(target_bins: dict[str, Path]) -> None:
    """Our PT_NOTE parse of a file gives the id readelf prints, for our target and libc."""
    target = target_bins["mdk_target"]
    got = _elf.build_id_from_file(str(target))
    assert got is not None and got.hex() == readelf_build_id(target)
    libc_path = next(r.path for r in _procfs.parse_maps(_procfs.read_text("/proc/self/maps"))
                     if "libc.so" in r.path)
    got = _elf.build_id_from_file(libc_path)
    assert got is not None and got.hex() == readelf_build_id(libc_path)


def test_build_id_from_memory_equals_readelf() -> None:
    """Reading our own python executable's notes from memory gives readelf's id."""
    regions = _procfs.parse_maps(_procfs.read_text("/proc/self/maps"))
    exe = os.path.realpath(sys.executable)
    base = next(r.start for r in regions if r.path == exe and r.offset == 0)
    import ctypes

    def read(address: int, size: int) -> bytes:
        return ctypes.string_at(address, size)

    got = _elf.build_id_from_memory(read, base)
    assert got is not None and got.hex() == readelf_build_id(exe)


def test_file_without_build_id_falls_back_to_text_hash(tmp_path: Path) -> None:
    """Without NT_GNU_BUILD_ID, the id is Breakpad's XOR fold of the first 4 KiB of .text
    (recomputed here from objcopy's dump of the section)."""
    src = tmp_path / "n.c"
    src.write_text("int f(int x) { return x * 3 + 1; }\nint main(void) { return f(2); }\n")
    exe = tmp_path / "n"
    subprocess.run(["cc", "-O0", "-Wl,--build-id=none", "-o", str(exe), str(src)], check=True)
    text = tmp_path / "text.bin"
    subprocess.run(["objcopy", "-O", "binary", "--only-section=.text", str(exe), str(text)],
                   check=True)
    expected = bytearray(16)
    for i, byte in enumerate(text.read_bytes()[:4096]):
        expected[i % 16] ^= byte
    assert _elf.build_id_from_file(str(exe)) == bytes(expected)


def test_build_id_reader_never_opens_devices() -> None:
    assert _elf.build_id_from_file("/dev/zero") is None


def test_module_spans_merge_segments_of_one_file() -> None:
    """The r--/r-x/r--/rw- mappings of one file (with a PROT_NONE gap) are one module; a
    second mapping of the same file at offset 0 starts another; /dev mappings and pieces
    without their headers are not modules."""
    def reg(start: int, end: int, perms: str, offset: int, path: str, inode: int = 7) -> Region:
        return Region(start, end, perms[0] == "r", perms[1] == "w", perms[2] == "x",
                      perms[3] == "p", offset, "fe:00", inode, path)

    regions = [
        reg(0x1000, 0x2000, "r--p", 0, "/lib/a.so"),
        reg(0x2000, 0x5000, "r-xp", 0x1000, "/lib/a.so"),
        reg(0x5000, 0x6000, "---p", 0x4000, "/lib/a.so"),
        reg(0x6000, 0x7000, "rw-p", 0x5000, "/lib/a.so"),
        reg(0x7000, 0x8000, "rw-p", 0, ""),
        reg(0x9000, 0xA000, "r--p", 0, "/lib/a.so"),
        reg(0xB000, 0xC000, "r-xp", 0x3000, "/lib/b.so", 8),
        reg(0xD000, 0xE000, "rw-s", 0, "/dev/shm/x", 9),
    ]
    spans = [(s.path, s.start, s.end) for s in linux._module_spans(regions)]
    assert spans == [("/lib/a.so", 0x1000, 0x7000), ("/lib/a.so", 0x9000, 0xA000)]


def test_module_spans_cross_gaps_up_to_the_image_end() -> None:
    """With the image's end known (program headers), a module takes in its file's later
    mappings across holes, anonymous .bss and even another file mapped into a hole, and
    a text mapping at file offset 0 (lld); a mapping of the file past the image's end
    starts the next load. Without it, a gap is crossed only to a non-zero offset with no
    other file between."""
    def reg(start: int, end: int, offset: int, path: str, inode: int = 7) -> Region:
        return Region(start, end, True, False, False, True, offset, "fe:00", inode, path)

    regions = [
        reg(0x400000, 0x401000, 0, "/bin/p"),
        reg(0x401000, 0x402000, 0, "/bin/p"),           # lld: text shares the header page
        reg(0x402000, 0x500000, 0, ""),                  # .bss
        reg(0x600000, 0x601000, 0, "/lib/other.so", 8),  # something mapped into the hole
        reg(0x800000, 0x900000, 0x2000, "/bin/p"),       # far text
        reg(0x980000, 0x981000, 0, "/bin/p"),            # past the image: a new load
        reg(0xA00000, 0xA01000, 0x1000, "/bin/q", 9),
        reg(0xB00000, 0xB01000, 0, "/bin/q", 9),
    ]
    ends = {0x400000: 0x900000, 0x980000: 0x981000}
    spans = [(s.path, s.start, s.end)
             for s in linux._module_spans(regions, ends)]
    assert spans == [("/bin/p", 0x400000, 0x900000), ("/lib/other.so", 0x600000, 0x601000),
                     ("/bin/p", 0x980000, 0x981000), ("/bin/q", 0xB00000, 0xB01000)]
    # headers unreadable: the far text (non-zero offset) joins only while no other file
    # came between
    spans = [(s.path, s.start, s.end) for s in linux._module_spans(regions)]
    assert spans[0] == ("/bin/p", 0x400000, 0x402000)
    no_other = [r for r in regions if r.inode != 8]
    spans = [(s.path, s.start, s.end) for s in linux._module_spans(no_other)]
    assert spans[0] == ("/bin/p", 0x400000, 0x900000)


def test_image_end_from_program_headers(tmp_path: Path) -> None:
    """image_end relocates the highest PT_LOAD end (readelf's numbers) by the load bias."""
    src = tmp_path / "e.c"
    src.write_text("static char bss[1 << 16];\nint main(void) { return bss[5]; }\n")
    exe = tmp_path / "e"
    subprocess.run(["cc", "-o", str(exe), str(src)], check=True)
    out = subprocess.run(["readelf", "-lW", str(exe)], capture_output=True, text=True,
                         check=True).stdout
    loads = [line.split() for line in out.splitlines() if line.strip().startswith("LOAD")]
    highest = max(int(f[2], 16) + int(f[5], 16) for f in loads)
    data = exe.read_bytes()
    base = 0x7F0000000000

    def read(address: int, size: int) -> bytes:
        return data[address - base:address - base + size]

    assert _elf.image_end(read, base) == base + highest
    assert _elf.image_end(lambda a, n: b"", base) is None
    assert _elf.image_end(lambda a, n: b"\x7fELF\x01" + bytes(n), base) is None  # 32-bit


def test_yama_scope_1_names_the_helper_as_tracer() -> None:
    """Where Yama restricts ptrace to ancestors (scope 1), the self-dump tells the kernel
    that the helper may trace us; without Yama (this kernel) or at scope 0 nothing is
    called; scopes 2 and 3 cannot be helped and raise AccessDenied."""
    calls: list[int] = []
    assert _selfdump.allow_tracer(1234, read_scope=lambda: 1, set_tracer=calls.append) is True
    assert calls == [1234]
    calls.clear()
    assert _selfdump.allow_tracer(1234, read_scope=lambda: None, set_tracer=calls.append) is False
    assert _selfdump.allow_tracer(1234, read_scope=lambda: 0, set_tracer=calls.append) is False
    assert calls == []
    for scope in (2, 3):
        with pytest.raises(errors.AccessDenied, match="ptrace_scope is"):
            _selfdump.allow_tracer(1234, read_scope=lambda s=scope: s, set_tracer=calls.append)
    assert calls == []


def test_yama_is_absent_on_this_kernel() -> None:
    """The default reader reports no Yama here (so the prctl branch is covered by the
    unit test above only)."""
    assert _selfdump.read_yama_scope() == (
        None if not os.path.exists(_selfdump.YAMA_SCOPE_PATH)
        else int(Path(_selfdump.YAMA_SCOPE_PATH).read_text()))


def test_set_ptracer_calls_prctl() -> None:
    """prctl(PR_SET_PTRACER) through our declaration: EINVAL without Yama (the kernel does
    not know the option), success where Yama exists."""
    if os.path.exists(_selfdump.YAMA_SCOPE_PATH):
        _selfdump.set_ptracer(0)
    else:
        with pytest.raises(errors.ProcessError) as info:
            _selfdump.set_ptracer(0)
        assert info.value.errno == errno.EINVAL
