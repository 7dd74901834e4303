/* The parent allocates 10 blocks, forks a child that allocates 100 and
 * frees 40 of them without exec, then execs (argv[1], if given) another
 * program; the parent waits for it and exits 0. With FORK_ALLOC_UNLINK set,
 * the parent deletes that file first (its libc, as an upgrade would). */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char** argv)
{
	void* volatile keep[100];
	for (int i = 0; i < 10; ++i)
		keep[i] = malloc(32);
	const char* doomed = getenv("FORK_ALLOC_UNLINK");
	if (doomed && unlink(doomed) != 0)
		return 2;
	pid_t pid = fork();
	if (pid == 0) {
		for (int i = 0; i < 100; ++i)
			keep[i] = malloc(64);
		for (int i = 0; i < 40; ++i)
			free(keep[i]);
		if (argc > 1)
			execv(argv[1], argv + 1);
		_exit(0);
	}
	if (pid < 0)
		return 1;
	int status;
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
