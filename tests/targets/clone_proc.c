/* The parent allocates 10 blocks, then clone()s a process (its own memory,
 * as fork's) whose exit signal is none, so the kernel reports it to a
 * tracer as a clone, not a fork. The child says whether it is traced,
 * allocates 100 blocks and exits; the parent waits for it and exits 0. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Says it without stdio, which allocates: the child's 100 are all. */
static int child(void* arg)
{
	(void)arg;
	char buf[4096];
	int fd = open("/proc/self/status", O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
	buf[n > 0 ? n : 0] = 0;
	const char* at = strstr(buf, "TracerPid:");
	long tracer = at ? strtol(at + 10, NULL, 10) : -1;
	void* volatile keep[100];
	for (int i = 0; i < 100; ++i)
		keep[i] = malloc(64);
	const char* say = tracer > 0 ? "child traced: yes\n" : tracer == 0 ? "child traced: no\n" : "child traced: unknown\n";
	if (write(1, say, strlen(say)) < 0)
		_exit(1);
	_exit(0);
}

int main(void)
{
	void* volatile keep[10];
	for (int i = 0; i < 10; ++i)
		keep[i] = malloc(32);
	static char stack[256 * 1024];
	pid_t pid = clone(child, stack + sizeof stack, 0, NULL);
	if (pid < 0)
		return 1;
	int status;
	if (waitpid(pid, &status, __WALL) != pid)
		return 1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
