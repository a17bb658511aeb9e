/* A dump target for all_memory=True (tests/test_all_memory.py): memory that the
 * kernel's core-dump rules leave out of WithFullMemory, each with known content.
 *
 * usage: allmem_target FILE      (FILE: at least 3 pages, written by the test)
 * Memory:
 *   ro_private  FILE mapped PROT_READ, MAP_PRIVATE (never written: its pages are the file's)
 *   ro_shared   FILE mapped PROT_READ, MAP_SHARED
 *   dontdump    4 pages of anonymous memory holding the byte pattern (i * 7 + 13) & 0xff,
 *               then madvise(MADV_DONTDUMP)
 *   code        the address of known_function (this program's .text)
 * The single thread then blocks in read() on stdin; "quit" or EOF ends it.
 * READY gives each address as key=0x...
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096

__attribute__((noinline)) int known_function(int x) { return x * 5 + 11; }

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: allmem_target FILE\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) { perror("open"); return 1; }
    size_t size = (size_t)lseek(fd, 0, SEEK_END);
    void *ro_private = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    void *ro_shared = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    unsigned char *dontdump = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE,
                                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ro_private == MAP_FAILED || ro_shared == MAP_FAILED || dontdump == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    for (int i = 0; i < 4 * PAGE; i++) dontdump[i] = (unsigned char)((i * 7 + 13) & 0xff);
    if (madvise(dontdump, 4 * PAGE, MADV_DONTDUMP) != 0) { perror("madvise"); return 1; }
    printf("READY ro_private=%p ro_shared=%p size=%zu dontdump=%p code=%p answer=%d\n",
           ro_private, ro_shared, size, (void *)dontdump, (void *)known_function,
           known_function(1));
    fflush(stdout);
    char line[256];
    while (fgets(line, sizeof line, stdin) != NULL) {
        if (strncmp(line, "quit", 4) == 0) break;
        printf("ERR %s", line);
        fflush(stdout);
    }
    return 0;
}
