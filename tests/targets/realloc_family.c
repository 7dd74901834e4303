/* Every allocator entry point once, in a thread named "family".
 * The expected figures are spelled out in the end-to-end test. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

static void *volatile sink;

static void *family(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "family");
	void *p = malloc(100);
	p = realloc(p, 200);             /* free 100, alloc 200 */
	p = realloc(p, 50);              /* free 200, alloc 50 */
	sink = realloc(p, 0);            /* free 50 */
	p = realloc(NULL, 64);           /* alloc 64 */
	free(p);
	p = calloc(10, 30);              /* alloc 300 */
	free(p);
	if (posix_memalign(&p, 64, 1000) == 0) /* alloc 1000 */
		free(p);
	p = aligned_alloc(128, 256);     /* alloc 256 */
	free(p);
	p = memalign(32, 96);            /* alloc 96 */
	free(p);
	p = valloc(500);                 /* alloc 500 */
	free(p);
	p = pvalloc(700);                /* alloc 700 */
	free(p);
	p = reallocarray(NULL, 5, 20);   /* alloc 100 */
	p = reallocarray(p, 10, 20);     /* free 100, alloc 200 */
	free(p);
	free(NULL);                      /* ignored */
	sink = malloc(SIZE_MAX / 2);     /* failed */
	sink = calloc(SIZE_MAX / 2, 4);  /* failed: overflow */
	p = malloc(10);                  /* alloc 10 */
	sink = realloc(p, SIZE_MAX / 2); /* failed: p stays live */
	free(p);                         /* free 10 */
	return NULL;
}

int main(void)
{
	pthread_t t;
	pthread_create(&t, NULL, family, NULL);
	pthread_join(t, NULL);
	return 0;
}
