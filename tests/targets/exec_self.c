/* A program that execs itself.
 * usage: exec_self GO_FILE N
 * Waits for GO_FILE to exist (a tracer attached to it with -p), then each
 * image allocates 100 blocks of 50 bytes, frees 60 and execs itself with
 * N - 1, until N is 0: N + 1 images, the same pid. No stdio: nothing else
 * allocates. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	int n = atoi(argv[2]);
	while (access(argv[1], F_OK) != 0) {
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
	char *args[] = {argv[0], argv[1], next, NULL};
	execv("/proc/self/exe", args);
	return 3;
}
