/* A running process for -p tests.
 * Allocates 50 blocks of 40 bytes, prints "ready MALLOC_ADDR", then waits for
 * a line on stdin:
 *   "go"   -> thread "attached" allocates and frees 1000 blocks of 32 bytes,
 *             frees the 50 early blocks (unknown to a tracer attached later),
 *             and the process exits 0.
 *   "spin" -> thread "spinner" allocates and frees for 4 seconds, checking
 *             its data, prints "ok" (or "corrupt N"), then waits for one more
 *             line (or the end of stdin) and exits 0. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void *early[50];

static void *attached(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "attached");
	for (int i = 0; i < 1000; ++i) {
		void *volatile p = malloc(32);
		free(p);
	}
	for (int i = 0; i < 50; ++i)
		free(early[i]);
	return NULL;
}

static void *spinner(void *arg)
{
	uint64_t *sum = arg;
	struct timespec start, now;
	pthread_setname_np(pthread_self(), "spinner");
	clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		for (int i = 0; i < 1000; ++i) {
			unsigned char *p = malloc(64);
			memset(p, i & 0xff, 64);
			*sum += p[63] != (unsigned char)(i & 0xff); /* counts corruption */
			free(p);
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) < 4000000000L);
	return NULL;
}

int main(void)
{
	char line[64];
	for (int i = 0; i < 50; ++i)
		early[i] = malloc(40);
	printf("ready %p\n", (void *)&malloc);
	fflush(stdout);
	if (!fgets(line, sizeof line, stdin))
		return 3;
	pthread_t t;
	if (strncmp(line, "go", 2) == 0) {
		pthread_create(&t, NULL, attached, NULL);
		pthread_join(t, NULL);
		return 0;
	}
	if (strncmp(line, "spin", 4) == 0) {
		uint64_t sum = 0;
		pthread_create(&t, NULL, spinner, &sum);
		pthread_join(t, NULL);
		/* Every block held what was written to it: nothing corrupted. */
		printf(sum == 0 ? "ok\n" : "corrupt %llu\n", (unsigned long long)sum);
		fflush(stdout);
		/* Alive until told (or stdin closes): the test looks at our memory after. */
		fgets(line, sizeof line, stdin);
		return 0;
	}
	return 4;
}
