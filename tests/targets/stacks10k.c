/* 10,000 distinct allocation stacks: each number below 10,000 picks, bit by
 * bit, one of two call sites at each of 14 levels, then allocates and frees
 * a block whose size depends on the number. Built with frame pointers and
 * without sibling calls, so every path is its own stack. */
#include <stdlib.h>

#define LEVELS 14

static void step(int level, unsigned path, unsigned n);

__attribute__((noinline)) static void left(int level, unsigned path, unsigned n)
{
    step(level, path, n);
}

__attribute__((noinline)) static void right(int level, unsigned path, unsigned n)
{
    step(level, path, n);
}

__attribute__((noinline)) static void step(int level, unsigned path, unsigned n)
{
    if (level == LEVELS) {
        void* volatile p = malloc(16 + n % 64);
        free(p);
        return;
    }
    if (path & 1)
        left(level + 1, path >> 1, n);
    else
        right(level + 1, path >> 1, n);
}

int main(int argc, char** argv)
{
    unsigned count = argc > 1 ? (unsigned)atoi(argv[1]) : 10000;
    for (unsigned i = 0; i < count; ++i)
        step(0, i, i);
    return 0;
}
