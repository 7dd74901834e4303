/* usage: exit_status CODE | exit_status kill | exit_status echo
 * echo copies stdin to stdout and writes a line to stderr. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	if (strcmp(argv[1], "kill") == 0) {
		raise(SIGKILL);
		return 1;
	}
	if (strcmp(argv[1], "echo") == 0) {
		int c;
		while ((c = getchar()) != EOF)
			putchar(c);
		fprintf(stderr, "to stderr\n");
		return 0;
	}
	return atoi(argv[1]);
}
