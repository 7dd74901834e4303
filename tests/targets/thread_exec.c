/* Exec from a thread that is not the leader: main allocates 10 blocks and
 * starts a thread that execs argv[1] with the rest of the arguments (the
 * kernel makes the exec'ing thread the leader, with the process's pid). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char **next;

static void *exec_it(void *arg)
{
	(void)arg;
	execv(next[0], next);
	perror("execv");
	_exit(127);
}

int main(int argc, char **argv)
{
	void *volatile keep[10];
	pthread_t t;

	if (argc < 2) {
		fputs("usage: thread_exec PROGRAM [ARGS...]\n", stderr);
		return 64;
	}
	for (int i = 0; i < 10; ++i)
		keep[i] = malloc(32);
	next = argv + 1;
	if (pthread_create(&t, NULL, exec_it, NULL) != 0)
		return 1;
	pthread_join(t, NULL); /* never returns: the exec ends this program */
	return 1;
}
