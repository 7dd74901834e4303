/* Named threads with known allocations, for exact per-thread checks.
 * usage: threads_c NTHREADS BASE
 * worker i (named "worker-i") allocates BASE + 100*i blocks of 16*(i+1) + j%7
 * bytes, then frees all but the last i+1 (left live at exit).
 * "producer" allocates 500 blocks of 48 bytes; "consumer" frees them all.
 * A thread with an unprintable name allocates one block of 77 bytes. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_BLOCKS 100000
static int base;
static void *handoff[500];

static void *worker(void *arg)
{
	long i = (long)arg;
	char name[16];
	static __thread void *blocks[MAX_BLOCKS];
	long n = base + 100 * i;
	/* Named by hand: no stdio, which would allocate. */
	memcpy(name, "worker-", 7);
	name[7] = (char)('0' + i / 10);
	name[8] = (char)('0' + i % 10);
	name[9] = 0;
	if (i < 10) {
		name[7] = (char)('0' + i);
		name[8] = 0;
	}
	pthread_setname_np(pthread_self(), name);
	for (long j = 0; j < n; ++j)
		blocks[j] = malloc(16 * (i + 1) + j % 7);
	for (long j = 0; j < n - (i + 1); ++j)
		free(blocks[j]);
	return NULL;
}

static void *producer(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "producer");
	for (int j = 0; j < 500; ++j)
		handoff[j] = malloc(48);
	return NULL;
}

static void *consumer(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "consumer");
	for (int j = 0; j < 500; ++j)
		free(handoff[j]);
	return NULL;
}

static void *oddly_named(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "bad\t\"name\\\x01");
	void *volatile p = malloc(77);
	(void)p;
	return NULL;
}

int main(int argc, char **argv)
{
	int nthreads = argc > 1 ? atoi(argv[1]) : 4;
	base = argc > 2 ? atoi(argv[2]) : 1000;
	if (nthreads < 1 || nthreads > 99 || base < 1 || base + 100 * nthreads > MAX_BLOCKS)
		return 2;
	pthread_t t[100];
	for (long i = 0; i < nthreads; ++i)
		pthread_create(&t[i], NULL, worker, (void *)i);
	for (int i = 0; i < nthreads; ++i)
		pthread_join(t[i], NULL);
	pthread_t p, c, o;
	pthread_create(&p, NULL, producer, NULL);
	pthread_join(p, NULL);
	pthread_create(&c, NULL, consumer, NULL);
	pthread_join(c, NULL);
	pthread_create(&o, NULL, oddly_named, NULL);
	pthread_join(o, NULL);
	return 0;
}
