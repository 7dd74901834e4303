/* Lives about a millisecond: a thread "blink" allocates 10, 20 and 30
 * bytes, frees the 20, and everything exits at once. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>

static void *volatile keep[2];

static void *blink(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "blink");
	keep[0] = malloc(10);
	void *p = malloc(20);
	keep[1] = malloc(30);
	free(p);
	return NULL;
}

int main(void)
{
	pthread_t t;
	pthread_create(&t, NULL, blink, NULL);
	pthread_join(t, NULL);
	return 0;
}
