/* A program that execs itself.
 * usage: exec_self GO_FILE N
 * Waits for GO_FILE to exist (a tracer attached to it with -p), then each
 * image allocates 100 blocks of 50 bytes, frees 60 and execs itself with
 * N - 1, until N is 0: N + 1 images, the same pid. No stdio: nothing else
 * allocates. With EXEC_SELF_FROM_THREAD set, a thread other than the leader
 * execs (cloned by hand: pthread_create would allocate), and the kernel
 * gives it the leader's pid; each image then waits for GO_FILE.N (N < 10). */
#define _GNU_SOURCE
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int exec_again(void *args)
{
	execv("/proc/self/exe", (char **)args);
	_exit(3);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	int n = atoi(argv[2]);
	/* From a thread, each image waits for GO_FILE.N of its own: the tracer
	 * must see the exec and probe the new program first (it cannot hold it). */
	char go[4096];
	size_t at = strlen(argv[1]);
	if (at + 4 > sizeof go || n < 0 || n > 9)
		return 2;
	memcpy(go, argv[1], at + 1);
	if (getenv("EXEC_SELF_FROM_THREAD")) {
		go[at] = '.';
		go[at + 1] = (char)('0' + n);
		go[at + 2] = 0;
	}
	while (access(go, F_OK) != 0) {
		struct timespec t = {0, 10 * 1000 * 1000};
		nanosleep(&t, NULL);
	}
	static void *blocks[100];
	for (int i = 0; i < 100; ++i)
		blocks[i] = malloc(50);
	for (int i = 0; i < 60; ++i)
		free(blocks[i]);
	if (n <= 0)
		return 0;
	char next[16];
	int len = 0;
	for (int v = n - 1, d = 1; d; d = 0) /* n - 1, in decimal, without stdio */
		do
			next[len++] = (char)('0' + v % 10);
		while ((v /= 10) > 0);
	for (int i = 0; i < len / 2; ++i) {
		char c = next[i];
		next[i] = next[len - 1 - i];
		next[len - 1 - i] = c;
	}
	next[len] = 0;
	static char *args[4];
	args[0] = argv[0];
	args[1] = argv[1];
	args[2] = next;
	if (getenv("EXEC_SELF_FROM_THREAD")) {
		static char stack[64 * 1024];
		if (clone(exec_again, stack + sizeof stack,
			  CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM, args) < 0)
			return 4;
		for (;;)
			pause(); /* the exec ends this thread */
	}
	exec_again(args);
	return 3;
}
