/* --heap-top's quarry: grows by 1 MiB of touched heap every 50 ms (never
 * freed) for SECONDS, then exits. Prints "growing" as it starts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 4;
	struct timespec start, now;

	clock_gettime(CLOCK_MONOTONIC, &start);
	printf("growing\n");
	fflush(stdout);
	for (;;) {
		char *p = malloc(1 << 20);

		if (!p)
			return 1;
		memset(p, 1, 1 << 20);
		usleep(50 * 1000);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 >= seconds)
			return 0;
	}
}
