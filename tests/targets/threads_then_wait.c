/* Three threads ("gone-0".."gone-2") allocate and exit; the process then
 * prints "ready" and waits for stdin to close: --live's table must drop them. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void *gone(void *arg)
{
	char name[16];
	snprintf(name, sizeof name, "gone-%ld", (long)arg);
	pthread_setname_np(pthread_self(), name);
	free(malloc(100));
	return NULL;
}

int main(void)
{
	pthread_t t[3];
	for (long i = 0; i < 3; ++i)
		pthread_create(&t[i], NULL, gone, (void *)i);
	for (int i = 0; i < 3; ++i)
		pthread_join(t[i], NULL);
	printf("ready\n");
	fflush(stdout);
	while (getchar() != EOF)
		;
	return 0;
}
