/* A target whose threads are born and die in a tight loop, for the dump robustness
 * tests: two spawner threads each create short-lived detached threads as fast as they
 * can (at most 64 alive). Prints "READY pid=N" and runs until killed.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static volatile int alive;

static void *short_lived(void *arg) {
    (void)arg;
    volatile unsigned long x = 0;
    for (int i = 0; i < 1000; i++) x += (unsigned long)i;
    __sync_fetch_and_sub(&alive, 1);
    return NULL;
}

static void *spawner(void *arg) {
    (void)arg;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    for (;;) {
        if (alive >= 64) {
            usleep(100);
            continue;
        }
        pthread_t t;
        __sync_fetch_and_add(&alive, 1);
        if (pthread_create(&t, &attr, short_lived, NULL)) __sync_fetch_and_sub(&alive, 1);
    }
    return NULL;
}

int main(void) {
    pthread_t t;
    for (int i = 0; i < 2; i++) pthread_create(&t, NULL, spawner, NULL);
    printf("READY pid=%d\n", getpid());
    fflush(stdout);
    for (;;) pause();
}
