/* Benchmark-only (docs/snapshots.md "Pause at 4 GiB"): fork() time of one process with an
 * N MiB heap (4 KiB pages) in different page states, same run.
 *   fork_scatter MIB REPS
 * ro: PTEs already read-only; written: every page rewritten; cowbroken-inorder: every
 * page COW-broken in virtual order while a child lived; cowbroken-scattered: the same
 * in a scrambled order (pages land physically scattered); then-ro: the fork after it. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static long long now_ns(void){struct timespec ts;clock_gettime(CLOCK_MONOTONIC,&ts);return ts.tv_sec*1000000000LL+ts.tv_nsec;}
static volatile char *heap; static size_t bytes;
static void touch(size_t stride_pages){for(size_t o=0;o<bytes;o+=4096*stride_pages)heap[o]++;}
static void touch_perm(void){size_t n=bytes/4096; for(size_t i=0;i<n;i++){size_t j=(i*2654435761u)%n; heap[j*4096]++;}}
static long long timed_fork(void){long long t=now_ns();pid_t p=fork();if(!p)_exit(0);long long d=now_ns()-t;waitpid(p,0,0);return d;}
int main(int argc,char**argv){
  bytes=strtoul(argv[1],0,10)<<20; int reps=atoi(argv[2]);
  heap=mmap(0,bytes,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0);
  madvise((void*)heap,bytes,MADV_NOHUGEPAGE); memset((void*)heap,0x5a,bytes);
  timed_fork();
  for(int r=0;r<reps;r++){
    long long a=timed_fork();              /* PTEs already read-only */
    touch(1); long long b=timed_fork();    /* all written again, same pages (reuse) */
    pid_t p=fork(); if(!p){pause();_exit(0);} touch(1); kill(p,SIGKILL); waitpid(p,0,0);
    long long c=timed_fork();              /* all COW-broken while a child lived: new pages */
    p=fork(); if(!p){pause();_exit(0);} touch_perm(); kill(p,SIGKILL); waitpid(p,0,0);
    long long d=timed_fork();  long long e=timed_fork();
    p=fork(); if(!p){pause();_exit(0);} touch(1); kill(p,SIGKILL); waitpid(p,0,0);
    long long f=timed_fork();
    printf("ro %.1f  written %.1f  cowbroken-inorder %.1f  cowbroken-scattered %.1f then-ro %.1f  cowbroken-inorder-again %.1f\n",a/1e6,b/1e6,c/1e6,d/1e6,e/1e6,f/1e6);
  }
}
