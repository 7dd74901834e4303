/* A bystander for -a: N MiB of anonymous memory from mmap, touched, and
 * 8 MiB of heap from brk, touched; prints "ready ADDR" (malloc's address,
 * whose code the test compares with the file's) and waits for stdin to
 * close. With N large in a small memory cgroup it is an OOM victim. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
	size_t len = mib << 20;
	char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *heap;

	if (m == MAP_FAILED)
		return 1;
	for (size_t i = 0; i < len; i += 4096)
		m[i] = 1;
	heap = sbrk(8 << 20);
	if (heap == (void *)-1)
		return 1;
	for (size_t i = 0; i < (8u << 20); i += 4096)
		heap[i] = 1;
	printf("ready %p\n", (void *)(uintptr_t)&malloc);
	fflush(stdout);
	while (getchar() != EOF)
		;
	return 0;
}
