/* Built with -O2 -fomit-frame-pointer: no frame pointer anywhere, only CFI walks out.
 * leaf_wait makes no call: it blocks in a raw read system call issued inline. */
#include <sys/syscall.h>

#define NOINLINE __attribute__((noinline))

static volatile long sink;

NOINLINE long leaf_wait(int fd) {
    char byte;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "0"((long)SYS_read), "D"((long)fd), "S"(&byte), "d"(1L)
                     : "rcx", "r11", "memory");
    return ret;
}

NOINLINE long leaf_level2(int fd) {
    volatile char scratch[40];  /* a real stack frame: CFI has a CFA offset to follow */
    scratch[0] = (char)fd;
    long r = leaf_wait(scratch[0]);
    sink = r + scratch[0];
    return r + 2;
}

NOINLINE long leaf_level1(int fd) {
    long r = leaf_level2(fd);
    sink = r;
    return r + 1;
}
