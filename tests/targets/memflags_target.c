/* A dump target with a known memory layout, for tests/test_flags_*.py and
 * tests/test_full_memory*.py (MiniDumpType memory and info flags).
 *
 * usage: memflags_target MODE [FILE]
 *   layout  FILE: everything below (the default)
 *   reserve      a 64 GiB MAP_NORESERVE reservation of which 1 MiB (at offset 1 GiB) is
 *                touched with the page pattern
 *   fill MIB     MIB mebibytes of the page pattern (benchmarks, snapshot release
 *                tests), 4 KiB pages (MADV_NOHUGEPAGE: page frames are per page)
 *   big MIB      MIB mebibytes allocated and present (MAP_POPULATE); the first page
 *                of every 64 MiB block (page i) starts with the word i * 0x9E3779B97F4A7C15,
 *                everything else is zero
 * Memory (layout mode):
 *   pattern     PATTERN_MIB MiB anonymous mmap; page i holds the 8-byte little-endian
 *               word i * 0x9E3779B97F4A7C15 followed by bytes (j * 7 + 13) & 0xff for
 *               j = 8..4095 (the test rebuilds it)
 *   dontdump    64 KiB with the same pattern, madvise(MADV_DONTDUMP)
 *   untouched   16 MiB anonymous, never touched
 *   cow         FILE (4 pages of 'F') mapped MAP_PRIVATE read-write; page 2 written ('W')
 *   known_data  an initialized global (.data); known_function: its first 16 bytes printed
 *   tls_marker  a __thread array (static TLS, below fs_base)
 * Threads:
 *   main        command loop (read() on stdin), a stack frame holding NONPTR_VALUE
 *   mdk-avx     ymm0 = YMM0 bytes, ymm1 = YMM1 bytes, then blocked in a raw read()
 *               syscall on a pipe nobody writes (no libc code runs after the loads)
 * Commands: "rss" -> "RSS kb=N" (VmRSS); "poke 0xADDR" adds 1 to the 8-byte word at
 * ADDR -> "POKED old=N" (its value before); "quit".
 * The READY line gives every address as key=0x...
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
#define PAGE 4096
#define PATTERN_MIB 256
#define NONPTR_VALUE 0x1122334455667788ULL

char known_data[32] = "MDK-DATA-SEGMENT-0123456789abcd";
__thread char tls_marker[32] = "MDK-TLS-MARKER-0123456789abcdef";
static unsigned char ymm_values[64];
static int avx_pipe[2];
static volatile pid_t avx_tid;

NOINLINE int known_function(int x) { return x * 3 + 7; }

static void fill_pattern(unsigned char *p, size_t bytes) {
    unsigned char block[PAGE];
    for (int j = 0; j < PAGE; j++) block[j] = (unsigned char)((j * 7 + 13) & 0xff);
    for (size_t i = 0; i < bytes / PAGE; i++) {
        uint64_t word = (uint64_t)i * 0x9E3779B97F4A7C15ULL;
        memcpy(block, &word, 8);
        memcpy(p + i * PAGE, block, PAGE);
    }
}

static long vm_rss_kb(void) {
    char line[256];
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1) break;
    fclose(f);
    return kb;
}

static void *avx_thread(void *arg) {
    (void)arg;
    char c;
    pthread_setname_np(pthread_self(), "mdk-avx");
    avx_tid = (pid_t)syscall(SYS_gettid);
    /* Load the known values and block in read() without returning to C in between. */
    __asm__ volatile(
        "vmovdqu (%[v]), %%ymm0\n\t"
        "vmovdqu 32(%[v]), %%ymm1\n\t"
        "mov $0, %%eax\n\t"      /* SYS_read */
        "syscall\n\t"
        :
        : [v] "r"(ymm_values), "D"((long)avx_pipe[0]), "S"(&c), "d"(1L)
        : "rax", "rcx", "r11", "memory", "xmm0", "xmm1");
    return NULL;
}

NOINLINE static void command_loop(void) {
    volatile uint64_t nonpointer = NONPTR_VALUE; /* a stack word that is no pointer */
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (!strncmp(line, "rss", 3)) {
            printf("RSS kb=%ld\n", vm_rss_kb());
        } else if (!strncmp(line, "poke ", 5)) {
            volatile uint64_t *word = (volatile uint64_t *)strtoul(line + 5, NULL, 16);
            uint64_t old = *word;
            *word = old + 1;
            printf("POKED old=%llu\n", (unsigned long long)old);
        } else if (!strncmp(line, "quit", 4)) {
            break;
        } else {
            printf("ERR %s", line);
        }
        fflush(stdout);
    }
    (void)nonpointer;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "layout";
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(mode, "reserve")) {
        size_t size = 64ULL << 30;
        unsigned char *r = mmap(NULL, size, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (r == MAP_FAILED) { perror("mmap"); return 1; }
        fill_pattern(r + (1ULL << 30), 1 << 20);
        printf("READY reserve=0x%lx size=%zu touched=0x%lx touched_size=%d\n",
               (unsigned long)r, size, (unsigned long)(r + (1ULL << 30)), 1 << 20);
        command_loop();
        return 0;
    }
    if (!strcmp(mode, "fill")) { /* benchmarks: MIB of the page pattern, nothing zero */
        size_t size = (size_t)strtoul(argc > 2 ? argv[2] : "1024", NULL, 10) << 20;
        unsigned char *b = mmap(NULL, size, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (b == MAP_FAILED) { perror("mmap"); return 1; }
        madvise(b, size, MADV_NOHUGEPAGE);
        fill_pattern(b, size);
        printf("READY fill=0x%lx size=%zu\n", (unsigned long)b, size);
        command_loop();
        return 0;
    }
    if (!strcmp(mode, "big")) {
        size_t size = (size_t)strtoul(argc > 2 ? argv[2] : "4200", NULL, 10) << 20;
        unsigned char *b = mmap(NULL, size, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (b == MAP_FAILED) { perror("mmap"); return 1; }
        /* every page is present (MAP_POPULATE); page i of each 64 MiB block starts
         * with the word i * golden, the rest is zero */
        for (size_t i = 0; i < size / PAGE; i += (64 << 20) / PAGE) {
            uint64_t word = (uint64_t)i * 0x9E3779B97F4A7C15ULL;
            memcpy(b + i * PAGE, &word, 8);
        }
        printf("READY big=0x%lx size=%zu\n", (unsigned long)b, size);
        command_loop();
        return 0;
    }

    const char *path = argc > 2 ? argv[2] : "memflags-cow.bin";
    size_t psize = (size_t)PATTERN_MIB << 20;
    unsigned char *pattern = mmap(NULL, psize, PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *dontdump = mmap(NULL, 65536, PROT_READ | PROT_WRITE,
                                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *untouched = mmap(NULL, 16 << 20, PROT_READ | PROT_WRITE,
                                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pattern == MAP_FAILED || dontdump == MAP_FAILED || untouched == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    fill_pattern(pattern, psize);
    fill_pattern(dontdump, 65536);
    madvise(dontdump, 65536, MADV_DONTDUMP);

    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    unsigned char fpage[PAGE];
    memset(fpage, 'F', PAGE);
    for (int i = 0; i < 4; i++) write(fd, fpage, PAGE);
    unsigned char *cow = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    if (cow == MAP_FAILED) { perror("mmap cow"); return 1; }
    volatile unsigned char sink = cow[0] + cow[PAGE] + cow[3 * PAGE]; /* present, clean */
    (void)sink;
    memset(cow + 2 * PAGE, 'W', PAGE);

    for (int i = 0; i < 64; i++) ymm_values[i] = (unsigned char)(0xA0 + i);
    pipe(avx_pipe);
    pthread_t t;
    pthread_create(&t, NULL, avx_thread, NULL);
    while (!avx_tid) usleep(1000);
    usleep(20000); /* let it reach the syscall */

    unsigned long fs_base;
    __asm__ volatile("mov %%fs:0, %0" : "=r"(fs_base));
    unsigned char *code = (unsigned char *)(uintptr_t)&known_function;
    char code_hex[33];
    for (int i = 0; i < 16; i++) sprintf(code_hex + 2 * i, "%02x", code[i]);
    printf("READY pattern=0x%lx pattern_size=%zu dontdump=0x%lx untouched=0x%lx cow=0x%lx "
           "known_data=0x%lx known_function=0x%lx code=%s tls_marker=0x%lx fs_base=0x%lx "
           "avx_tid=%d nonptr=0x%llx\n",
           (unsigned long)pattern, psize, (unsigned long)dontdump, (unsigned long)untouched,
           (unsigned long)cow, (unsigned long)known_data, (unsigned long)&known_function,
           code_hex, (unsigned long)tls_marker, fs_base, (int)avx_tid, NONPTR_VALUE);
    command_loop();
    return 0;
}
