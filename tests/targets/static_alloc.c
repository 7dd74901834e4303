/* A static program (no loader) for -a --heap: it cannot be held at the
 * host's loader, so the report must say its first calls may go unseen.
 * Waits 300 ms, then 100 malloc+free pairs. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(void)
{
	usleep(300 * 1000);
	for (int i = 0; i < 100; ++i)
		free(malloc(64));
	puts("done");
	return 0;
}
