/* Known temporaries, as heaptrack counts them: a block freed by the thread
 * that allocated it before that thread allocated anything else; known
 * sizes (each site's one or two powers of two); and a known peak holder.
 *   hold_peak: 64 x malloc(65536), then all freed: the process's peak,
 *     4 MiB of it at this site; its last block is a temporary  1 at hold_peak
 *   mixed_sizes: one call site, malloc(8 << i) for i < 10, each freed at
 *     once: ten sizes, one per power of two                  10 at mixed_sizes
 *   temp_at_once: 100 x { malloc(32); free }             100 temporaries
 *   pair_first/pair_second: 50 x { a = malloc(48); b = malloc(64);
 *     free(a); free(b) }: a is not (b came between), b is   50 at pair_second
 *   grow: malloc(16), realloc to 4096, free: the realloc's block is the
 *     thread's latest                                        1 at grow
 *   hand_off: 20 blocks a thread frees (another thread's)    0
 * No stdio: its buffer would be one more allocation. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>

#define KEEP(p) asm volatile("" : : "r"(p) : "memory")

static void *handed[20];
static void *held[64];

__attribute__((noinline)) void hold_peak(void)
{
	for (int i = 0; i < 64; ++i) {
		held[i] = malloc(65536);
		KEEP(held[i]);
	}
	for (int i = 0; i < 64; ++i)
		free(held[i]);
}

__attribute__((noinline)) void temp_at_once(void)
{
	for (int i = 0; i < 100; ++i) {
		void *p = malloc(32);
		KEEP(p);
		free(p);
	}
}

__attribute__((noinline)) void *pair_first(void) { void *p = malloc(48); KEEP(p); return p; }
__attribute__((noinline)) void *pair_second(void) { void *p = malloc(64); KEEP(p); return p; }

__attribute__((noinline)) void pairs(void)
{
	for (int i = 0; i < 50; ++i) {
		void *a = pair_first(), *b = pair_second();
		free(a);
		free(b);
	}
}

__attribute__((noinline)) void grow(void)
{
	void *p = malloc(16);
	KEEP(p);
	p = realloc(p, 4096);
	KEEP(p);
	free(p);
}

__attribute__((noinline)) void hand_off(void)
{
	for (int i = 0; i < 20; ++i)
		handed[i] = malloc(24);
}

static void *freer(void *arg)
{
	(void)arg;
	for (int i = 0; i < 20; ++i)
		free(handed[i]);
	return NULL;
}

__attribute__((noinline)) void mixed_sizes(void)
{
	for (int i = 0; i < 10; ++i) {
		void *p = malloc((size_t)8 << i);
		KEEP(p);
		free(p);
	}
}

int main(void)
{
	hold_peak();
	mixed_sizes();
	temp_at_once();
	pairs();
	grow();
	hand_off();
	pthread_t t;
	if (pthread_create(&t, NULL, freer, NULL) != 0)
		return 1;
	pthread_join(t, NULL);
	return 0;
}
