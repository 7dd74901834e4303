/* A fork/exec storm for -a: N children, one after another, each execs
 * this program again with "child" and exits at once. Prints "done" once
 * every child was waited for; exits 1 if one failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? strtol(argv[1], NULL, 10) : 100;
	char self[4096];
	ssize_t len;

	if (argc > 1 && strcmp(argv[1], "child") == 0)
		return 0;
	len = readlink("/proc/self/exe", self, sizeof self - 1);
	if (len <= 0)
		return 1;
	self[len] = 0;
	for (long i = 0; i < n; ++i) {
		pid_t pid = fork();
		int status = 0;

		if (pid < 0)
			return 1;
		if (pid == 0) {
			execl(self, argv[0], "child", (char *)NULL);
			_exit(127);
		}
		if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			return 1;
	}
	printf("done\n");
	return 0;
}
