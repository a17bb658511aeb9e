"""cffi (ABI mode) declarations of the libc calls the Linux backend makes.

Declarations and the loader only: no policy lives here. Nothing is loaded when
this module is imported; :func:`load` parses the declarations and opens libc
(``ffi.dlopen(None)``) on first use.

Man pages: ptrace(2), waitpid(2), process_vm_readv(2), kill(2), tgkill(2),
prctl(2), renameat2(2). Constants are the x86_64 values of glibc's and the kernel's headers
(checked in /work/shared/reference/linux-writers.md §4.9).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

# ptrace(2) requests
PTRACE_PEEKDATA = 2
PTRACE_PEEKUSER = 3
PTRACE_CONT = 7
PTRACE_DETACH = 17
PTRACE_GETREGSET = 0x4204
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_LISTEN = 0x4208
PTRACE_EVENT_STOP = 128  # status >> 16 of a SEIZE-style stop

# regsets (elf.h)
NT_PRSTATUS = 1
NT_PRFPREG = 2
NT_X86_XSTATE = 0x202

# offsetof(struct user, u_debugreg) on x86_64
USER_DEBUGREG_OFFSET = 848

# waitpid(2) / waitid(2) options
WNOHANG = 1
WSTOPPED = 2
WEXITED = 4
WNOWAIT = 0x01000000
WALL = 0x40000000  # __WALL: wait for threads (clone children) too
P_PID = 1
CLD_EXITED, CLD_KILLED, CLD_DUMPED = 1, 2, 3

# prctl(2)
PR_SET_PTRACER = 0x59616D61  # "Yama"
PR_SET_PTRACER_ANY = -1

SYS_TGKILL = 234

# renameat2(2) flags (linux/fs.h)
RENAME_NOREPLACE = 1

CDEF = """
typedef int pid_t;
typedef long ssize_t;

/* ptrace(2): glibc declares it variadic; every argument after the first must
   be passed as cdata (ffi.cast), see aesthetics.md §3.3. */
long ptrace(int request, ...);

/* waitpid(2), waitid(2); siginfo_t is 128 bytes, read through the accessors below */
pid_t waitpid(pid_t pid, int *wstatus, int options);
typedef struct { int si_signo, si_errno, si_code, _pad; int si_pid, si_uid, si_status;
                 int _rest[25]; } siginfo_t;
int waitid(int idtype, int id, siginfo_t *infop, int options);

/* process_vm_readv(2). The iovec arrays are declared void * so that the backend can
   fill many at once from a flat unsigned long[] of (address, length) pairs: a remote
   address is a number in another process, never a pointer of ours. */
struct iovec {
    void  *iov_base;
    size_t iov_len;
};
ssize_t process_vm_readv(pid_t pid,
                         const void *local_iov, unsigned long liovcnt,
                         const void *remote_iov, unsigned long riovcnt,
                         unsigned long flags);

/* kill(2); tgkill(2) has no glibc wrapper before 2.30, so it goes through syscall(2) */
int kill(pid_t pid, int sig);
long syscall(long number, ...);

/* prctl(2) is variadic in glibc */
int prctl(int option, ...);

/* renameat2(2), glibc 2.28+: RENAME_NOREPLACE publishes a file without replacing one */
int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
              unsigned int flags);

/* sys/user.h (x86_64): what PTRACE_GETREGSET NT_PRSTATUS / NT_PRFPREG return */
struct user_regs_struct {
    unsigned long long r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8;
    unsigned long long rax, rcx, rdx, rsi, rdi, orig_rax, rip, cs, eflags;
    unsigned long long rsp, ss, fs_base, gs_base, ds, es, fs, gs;
};
struct user_fpregs_struct {
    unsigned short cwd, swd, ftw, fop;
    unsigned long long rip, rdp;
    unsigned int mxcsr, mxcr_mask;
    unsigned int st_space[32];
    unsigned int xmm_space[64];
    unsigned int padding[24];
};
"""


class LibC(NamedTuple):
    """The cffi FFI object and the opened C library."""

    ffi: Any  # cffi.FFI (cffi ships no type information)
    lib: Any


@functools.cache
def load() -> LibC:
    """Parse the declarations and open the C library (once)."""
    import cffi  # type: ignore[import-untyped,unused-ignore]  # cffi ships no types

    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    return LibC(ffi, ffi.dlopen(None))
