/* A fixed allocation pattern for the regression gate's tests.
 * usage: gate_workload [--more]
 * Four threads, each named "gate-worker", allocate in rounds of 25 blocks
 * (worker k: block j of a round is 16 + 8*(j + k) bytes) and free a round
 * before the next, so each thread's peak is one round, 2800 + 200*k bytes,
 * whatever the scheduling (the process peak is not: it depends on how the
 * rounds overlap). 100 rounds each: 10,000 allocations of 1,240,000 bytes in
 * all. --more runs 103 rounds: exactly 3% more of both
 * (10,300 allocations), the per-thread peaks unchanged. The threads are all
 * created before any is joined, so glibc reuses no thread stack and the
 * main thread's own allocations (thread descriptors) do not vary either.
 * Nothing is printed: stdio would allocate. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WORKERS 4
#define ROUND 25
#define BASE_ROUNDS 100
#define MORE_ROUNDS 103

static int rounds = BASE_ROUNDS;

static void fail(const char *what)
{
	(void)!write(2, what, strlen(what));
	_exit(1);
}

static void *worker(void *arg)
{
	long k = (long)arg;
	void *blocks[ROUND];
	pthread_setname_np(pthread_self(), "gate-worker");
	for (int r = 0; r < rounds; ++r) {
		for (int j = 0; j < ROUND; ++j) {
			size_t size = 16 + 8 * (size_t)(j + k);
			blocks[j] = malloc(size);
			if (!blocks[j])
				fail("gate_workload: malloc failed\n");
			memset(blocks[j], (int)j, size); /* touched: the allocation is real */
		}
		for (int j = 0; j < ROUND; ++j)
			free(blocks[j]);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t threads[WORKERS];
	if (argc > 2 || (argc == 2 && strcmp(argv[1], "--more") != 0)) {
		(void)!write(2, "usage: gate_workload [--more]\n", 30);
		return 64; /* EX_USAGE: told apart from a gate's 1 and 2 */
	}
	if (argc == 2)
		rounds = MORE_ROUNDS;
	for (long k = 0; k < WORKERS; ++k)
		if (pthread_create(&threads[k], NULL, worker, (void *)k) != 0)
			fail("gate_workload: pthread_create failed\n");
	for (int k = 0; k < WORKERS; ++k)
		pthread_join(threads[k], NULL);
	return 0;
}
