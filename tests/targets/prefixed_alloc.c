/* An allocator of its own under a prefixed jemalloc API (as Rust's
 * jemallocator exports _rjem_mallocx): ex_mallocx and ex_sdallocx, a bump
 * allocator over a static arena. main makes 100 calls of each, and 10
 * malloc/free pairs through libc. Its messages are jemalloc's: a stripped
 * copy (no symbol left to name it) is known by them. */
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

static char arena[1 << 16];
static size_t used;

__attribute__((noinline, used)) void *ex_mallocx(size_t size, int flags)
{
	(void)flags;
	size = (size + 15) & ~(size_t)15;
	if (used + size > sizeof arena) {
		static const char full[] = "<jemalloc>: arena exhausted\n";
		if (write(2, full, sizeof full - 1) < 0)
			abort();
		return NULL;
	}
	used += size;
	return arena + used - size;
}

__attribute__((noinline, used)) void ex_sdallocx(void *p, size_t size, int flags)
{
	(void)p;
	(void)size;
	(void)flags;
}

int main(void)
{
	for (int i = 0; i < 100; ++i) {
		void *volatile p = ex_mallocx(64, 0);
		ex_sdallocx(p, 64, 0);
	}
	for (int i = 0; i < 10; ++i) {
		void *volatile p = malloc(32);
		free(p);
	}
	return 0;
}
