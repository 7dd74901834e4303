/* Forks one child that exits at once; the parent waits and exits 0. */
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	if (pid < 0)
		return 1;
	int status;
	waitpid(pid, &status, 0);
	return 0;
}
