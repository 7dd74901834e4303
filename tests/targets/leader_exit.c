/* The main thread leaves with pthread_exit while its workers go on.
 * usage: leader_exit [GO_FILE]
 * main allocates 10 blocks of 100 bytes and starts 4 workers ("after-I"),
 * then calls pthread_exit. Each worker waits for the leader to be gone (and
 * for GO_FILE to exist, if given: a tracer attached to the zombie leader's
 * process), then allocates 1000 blocks of 32 + I bytes, frees 500, and
 * ends I * 50 ms later (the workers leave one by one, as pools do). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *go_file;
static volatile int leader_leaving;

static void pause_ms(long ms)
{
	struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&t, NULL);
}

static void *worker(void *arg)
{
	long i = (long)arg;
	char name[16] = "after-";
	name[6] = (char)('0' + i);
	pthread_setname_np(pthread_self(), name);
	while (!leader_leaving)
		pause_ms(1);
	pause_ms(100); /* the leader is a zombie by then */
	while (go_file && access(go_file, F_OK) != 0)
		pause_ms(10);
	void *blocks[1000];
	for (int j = 0; j < 1000; ++j)
		blocks[j] = malloc(32 + i);
	for (int j = 0; j < 500; ++j)
		free(blocks[j]);
	pause_ms(50 * i);
	return NULL;
}

int main(int argc, char **argv)
{
	go_file = argc > 1 ? argv[1] : NULL;
	static void *keep[10];
	for (int j = 0; j < 10; ++j)
		keep[j] = malloc(100);
	pthread_t t;
	for (long i = 0; i < 4; ++i)
		if (pthread_create(&t, NULL, worker, (void *)i) != 0)
			return 1;
	printf("pid %d\n", getpid());
	fflush(stdout);
	leader_leaving = 1;
	pthread_exit(NULL);
}
