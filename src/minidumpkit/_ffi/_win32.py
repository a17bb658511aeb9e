"""Win32 base types shared by the dbghelp, kernel32 and process-snapshot declarations.

Declarations only (cdef text and a few constants); importing this module does not
import cffi and loads nothing.

Every scalar is spelled with a fixed width (``DWORD`` is ``uint32_t``, never
``unsigned long``), so the same text has the Windows x64 layout when cffi parses
it on Linux x86_64, and ``tests/test_windows_ffi.py`` can pin every offset against
``reference/winabi/layout-x86_64.json`` without Windows.

``WCHAR`` is cffi's ``char16_t`` rather than ``uint16_t``: it is two bytes on every
platform (unlike ``wchar_t``, four bytes on Linux), and cffi converts Python
``str`` to and from UTF-16 for it, so ``CreateFileW(path, ...)`` and
``ffi.string(module.FullPath)`` need no manual encoding.

Pointers are only ever written through typedef names inside structures (the
``*_POINTERS`` blocks hold every ``T *`` spelling). That discipline is what lets
the tests re-parse the structure text with each pointer typedef replaced by
``uint32_t`` and compare the result with the 32-bit (i686) layouts as well.
"""

from __future__ import annotations

import struct

MAX_PATH = 260
EXCEPTION_MAXIMUM_PARAMETERS = 15

# Size of the CONTEXT record handed to callbacks and PSS thread entries.
CONTEXT_SIZE_AMD64 = 1232
CONTEXT_SIZE_X86 = 716

# 8 on 64-bit interpreters, 4 on 32-bit ones: picks the CONTEXT declaration.
POINTER_SIZE = struct.calcsize("P")

#: Fixed-width scalar typedefs (windef.h, winnt.h, basetsd.h).
WIN32_TYPES = """
typedef uint8_t   UCHAR;
typedef uint8_t   BYTE;
typedef uint16_t  WORD;
typedef uint16_t  USHORT;
typedef char16_t  WCHAR;
typedef uint32_t  DWORD;
typedef uint32_t  ULONG;
typedef uint32_t  ULONG32;
typedef uint32_t  UINT;
typedef int32_t   LONG;
typedef int32_t   INT;
typedef int32_t   BOOL;
typedef int32_t   HRESULT;
typedef uint64_t  ULONG64;
typedef uint64_t  DWORD64;
typedef uint64_t  UINT64;
typedef uint64_t  ULONGLONG;
typedef int64_t   LONGLONG;
typedef int64_t   LONG64;
typedef uint32_t  RVA;
typedef uint64_t  RVA64;
typedef uintptr_t ULONG_PTR;
typedef uintptr_t SIZE_T;
"""

#: Every pointer spelling the base structures and the kernel32 functions use.
WIN32_POINTERS = """
typedef void *HANDLE;
typedef void *PVOID;
typedef void *LPVOID;
typedef const void *LPCVOID;
typedef WCHAR *PWCHAR;
typedef WCHAR *LPWSTR;
typedef const WCHAR *PCWSTR;
typedef const WCHAR *LPCWSTR;
typedef DWORD *LPDWORD;
typedef DWORD *PDWORD;
typedef BOOL *PBOOL;
typedef ULONG *PULONG;
typedef ULONG_PTR *PULONG_PTR;
typedef struct _CONTEXT *PCONTEXT;
typedef struct _EXCEPTION_RECORD *PEXCEPTION_RECORD;
typedef struct _EXCEPTION_POINTERS *PEXCEPTION_POINTERS;
"""

# winnt.h, x64. CONTEXT is DECLSPEC_ALIGN(16) and M128A is 16-aligned; cffi has no
# way to say so, so cffi reports alignment 8 for them. Inside the structure every
# offset still equals Windows' (each 16-byte member falls on a 16-byte offset by
# construction), and the only place the alignment would move a CONTEXT is inside
# pack(4) callback structures, handled in dbghelp.thread_callback_layout().
CONTEXT_AMD64 = """
typedef struct _M128A {
    ULONGLONG Low;
    LONGLONG  High;
} M128A;

typedef struct _XMM_SAVE_AREA32 {
    WORD  ControlWord;
    WORD  StatusWord;
    BYTE  TagWord;
    BYTE  Reserved1;
    WORD  ErrorOpcode;
    DWORD ErrorOffset;
    WORD  ErrorSelector;
    WORD  Reserved2;
    DWORD DataOffset;
    WORD  DataSelector;
    WORD  Reserved3;
    DWORD MxCsr;
    DWORD MxCsr_Mask;
    M128A FloatRegisters[8];
    M128A XmmRegisters[16];
    BYTE  Reserved4[96];
} XMM_SAVE_AREA32;

typedef struct _CONTEXT {
    DWORD64 P1Home;
    DWORD64 P2Home;
    DWORD64 P3Home;
    DWORD64 P4Home;
    DWORD64 P5Home;
    DWORD64 P6Home;
    DWORD   ContextFlags;
    DWORD   MxCsr;
    WORD    SegCs;
    WORD    SegDs;
    WORD    SegEs;
    WORD    SegFs;
    WORD    SegGs;
    WORD    SegSs;
    DWORD   EFlags;
    DWORD64 Dr0;
    DWORD64 Dr1;
    DWORD64 Dr2;
    DWORD64 Dr3;
    DWORD64 Dr6;
    DWORD64 Dr7;
    DWORD64 Rax;
    DWORD64 Rcx;
    DWORD64 Rdx;
    DWORD64 Rbx;
    DWORD64 Rsp;
    DWORD64 Rbp;
    DWORD64 Rsi;
    DWORD64 Rdi;
    DWORD64 R8;
    DWORD64 R9;
    DWORD64 R10;
    DWORD64 R11;
    DWORD64 R12;
    DWORD64 R13;
    DWORD64 R14;
    DWORD64 R15;
    DWORD64 Rip;
    union {
        XMM_SAVE_AREA32 FltSave;
        struct {
            M128A Header[2];
            M128A Legacy[8];
            M128A Xmm0;
            M128A Xmm1;
            M128A Xmm2;
            M128A Xmm3;
            M128A Xmm4;
            M128A Xmm5;
            M128A Xmm6;
            M128A Xmm7;
            M128A Xmm8;
            M128A Xmm9;
            M128A Xmm10;
            M128A Xmm11;
            M128A Xmm12;
            M128A Xmm13;
            M128A Xmm14;
            M128A Xmm15;
        };
    };
    M128A   VectorRegister[26];
    DWORD64 VectorControl;
    DWORD64 DebugControl;
    DWORD64 LastBranchToRip;
    DWORD64 LastBranchFromRip;
    DWORD64 LastExceptionToRip;
    DWORD64 LastExceptionFromRip;
} CONTEXT;
"""

# winnt.h, x86 (what a 32-bit interpreter needs; 4-aligned, no padding anywhere).
CONTEXT_X86 = """
typedef struct _FLOATING_SAVE_AREA {
    DWORD ControlWord;
    DWORD StatusWord;
    DWORD TagWord;
    DWORD ErrorOffset;
    DWORD ErrorSelector;
    DWORD DataOffset;
    DWORD DataSelector;
    BYTE  RegisterArea[80];
    DWORD Cr0NpxState;
} FLOATING_SAVE_AREA;

typedef struct _CONTEXT {
    DWORD ContextFlags;
    DWORD Dr0;
    DWORD Dr1;
    DWORD Dr2;
    DWORD Dr3;
    DWORD Dr6;
    DWORD Dr7;
    FLOATING_SAVE_AREA FloatSave;
    DWORD SegGs;
    DWORD SegFs;
    DWORD SegEs;
    DWORD SegDs;
    DWORD Edi;
    DWORD Esi;
    DWORD Ebx;
    DWORD Edx;
    DWORD Ecx;
    DWORD Eax;
    DWORD Ebp;
    DWORD Eip;
    DWORD SegCs;
    DWORD EFlags;
    DWORD Esp;
    DWORD SegSs;
    BYTE  ExtendedRegisters[512];
} CONTEXT;
"""

#: The CONTEXT of the interpreter's own architecture (x64 or x86).
CONTEXT_NATIVE = CONTEXT_AMD64 if POINTER_SIZE == 8 else CONTEXT_X86

#: winnt.h / minwinbase.h / verrsrc.h structures with default packing.
WINNT_STRUCTS = """
typedef struct _EXCEPTION_RECORD {
    DWORD             ExceptionCode;
    DWORD             ExceptionFlags;
    PEXCEPTION_RECORD ExceptionRecord;
    PVOID             ExceptionAddress;
    DWORD             NumberParameters;
    ULONG_PTR         ExceptionInformation[15];
} EXCEPTION_RECORD;

typedef struct _EXCEPTION_POINTERS {
    PEXCEPTION_RECORD ExceptionRecord;
    PCONTEXT          ContextRecord;
} EXCEPTION_POINTERS;

typedef struct _FILETIME {
    DWORD dwLowDateTime;
    DWORD dwHighDateTime;
} FILETIME;

typedef union _LARGE_INTEGER {
    struct {
        DWORD LowPart;
        LONG  HighPart;
    } u;
    LONGLONG QuadPart;
} LARGE_INTEGER;

typedef struct _MEMORY_BASIC_INFORMATION {
    PVOID  BaseAddress;
    PVOID  AllocationBase;
    DWORD  AllocationProtect;
    SIZE_T RegionSize;
    DWORD  State;
    DWORD  Protect;
    DWORD  Type;
} MEMORY_BASIC_INFORMATION;

typedef struct tagVS_FIXEDFILEINFO {
    DWORD dwSignature;
    DWORD dwStrucVersion;
    DWORD dwFileVersionMS;
    DWORD dwFileVersionLS;
    DWORD dwProductVersionMS;
    DWORD dwProductVersionLS;
    DWORD dwFileFlagsMask;
    DWORD dwFileFlags;
    DWORD dwFileOS;
    DWORD dwFileType;
    DWORD dwFileSubtype;
    DWORD dwFileDateMS;
    DWORD dwFileDateLS;
} VS_FIXEDFILEINFO;
"""
