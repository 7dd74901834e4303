/* A long-running multi-threaded target driven from stdin, for mode tests.
 *   phase K     every worker does K-dependent malloc+free pairs (all freed
 *               within the phase), then "done K <checksum>" is printed
 *   load S      every worker allocates and frees for S seconds: "done load"
 *   request M   asks the tracer for mode M (0 normal .. 3 off): "requested"
 *   keep N      the main thread allocates N blocks of 100 bytes: "kept N"
 *   release     ...and frees them: "released"
 *   exit        prints "bye <checksum>" and exits
 * The checksum depends only on the work, never on timing or tracing.
 * Usage: phases THREADS   (workers are named "phase-w0", "phase-w1", ...) */
#define _GNU_SOURCE
#include <memscope/track.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { kPairsPerPhase = 3000 };

static int nthreads;
static pthread_barrier_t start_barrier, end_barrier;
static int command;    /* 1 phase, 2 load, 3 exit */
static long argument;
static unsigned long sums[256];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void* worker(void* arg)
{
    long id = (long)arg;
    char name[16];
    snprintf(name, sizeof name, "phase-w%ld", id);
    pthread_setname_np(pthread_self(), name);
    for (;;) {
        pthread_barrier_wait(&start_barrier);
        if (command == 3)
            return NULL;
        if (command == 1) {
            for (int i = 0; i < kPairsPerPhase; ++i) {
                size_t size = 16 + (size_t)((argument * 7 + id + i) % 64);
                unsigned char* p = malloc(size);
                memset(p, (int)(i & 0xff), size);
                sums[id] += p[size - 1] + size;
                free(p);
            }
        } else {
            double end = now() + argument;
            while (now() < end)
                for (int i = 0; i < 1000; ++i) {
                    void* volatile p = malloc(64);
                    free(p);
                }
        }
        pthread_barrier_wait(&end_barrier);
    }
}

int main(int argc, char** argv)
{
    nthreads = argc > 1 ? atoi(argv[1]) : 4;
    if (nthreads < 1 || nthreads > 256)
        return 2;
    pthread_barrier_init(&start_barrier, NULL, (unsigned)nthreads + 1);
    pthread_barrier_init(&end_barrier, NULL, (unsigned)nthreads + 1);
    pthread_t threads[256];
    for (long i = 0; i < nthreads; ++i)
        pthread_create(&threads[i], NULL, worker, (void*)i);
    printf("ready\n");
    fflush(stdout);
    char line[64];
    void* kept[1000];
    long nkept = 0;
    while (fgets(line, sizeof line, stdin)) {
        long k = 0;
        if (sscanf(line, "phase %ld", &k) == 1) {
            command = 1;
            argument = k;
        } else if (sscanf(line, "load %ld", &k) == 1) {
            command = 2;
            argument = k;
        } else if (sscanf(line, "request %ld", &k) == 1) {
            memscope_request_mode((int)k);
            printf("requested\n");
            fflush(stdout);
            continue;
        } else if (sscanf(line, "keep %ld", &k) == 1 && k > 0 && k <= 1000) {
            for (nkept = 0; nkept < k; ++nkept)
                kept[nkept] = malloc(100);
            printf("kept %ld\n", k);
            fflush(stdout);
            continue;
        } else if (strncmp(line, "release", 7) == 0) {
            while (nkept > 0)
                free(kept[--nkept]);
            printf("released\n");
            fflush(stdout);
            continue;
        } else if (strncmp(line, "exit", 4) == 0) {
            break;
        } else {
            continue;
        }
        pthread_barrier_wait(&start_barrier);
        pthread_barrier_wait(&end_barrier);
        unsigned long total = 0;
        for (int i = 0; i < nthreads; ++i)
            total += sums[i];
        if (command == 1)
            printf("done %ld %lu\n", k, total);
        else
            printf("done load\n");
        fflush(stdout);
    }
    command = 3;
    pthread_barrier_wait(&start_barrier);
    for (int i = 0; i < nthreads; ++i)
        pthread_join(threads[i], NULL);
    unsigned long total = 0;
    for (int i = 0; i < nthreads; ++i)
        total += sums[i];
    printf("bye %lu\n", total);
    return 0;
}
