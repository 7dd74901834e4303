/* Allocations from code with no file behind it, as a JIT's are: a small
 * function copied into anonymous executable memory calls malloc. Symbols
 * for such code come from /tmp/perf-PID.map, which any local user could
 * plant in /tmp.
 *   jit_alloc N [write-map]
 * Prints "pid P\n", waits for a line on stdin (the test plants its files
 * meanwhile), then the JIT'd function allocates N blocks of 64 bytes
 * (freed) and "done" is printed. With write-map the program writes its own
 * perf map first, naming the function "jit_alloc_fn". */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef void* (*alloc_fn)(size_t);

int main(int argc, char** argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 10;
    printf("pid %d\n", getpid());
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin))
        return 1;
    /* push rbp; mov rbp,rsp; mov edi,64; movabs rax,malloc; call rax; pop rbp; ret */
    unsigned char code[] = {0x55, 0x48, 0x89, 0xe5, 0xbf, 0x40, 0x00, 0x00, 0x00, 0x48, 0xb8,
                            0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xd0, 0x5d, 0xc3};
    void* target = (void*)&malloc;
    memcpy(code + 11, &target, sizeof target);
    unsigned char* page = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED)
        return 1;
    memcpy(page, code, sizeof code);
    if (argc > 2 && strcmp(argv[2], "write-map") == 0) {
        char path[64];
        snprintf(path, sizeof path, "/tmp/perf-%d.map", getpid());
        FILE* map = fopen(path, "w");
        if (!map)
            return 1;
        fprintf(map, "%lx %zx jit_alloc_fn\n", (unsigned long)(uintptr_t)page, sizeof code);
        fclose(map);
    }
    alloc_fn f = (alloc_fn)(void*)page;
    for (int i = 0; i < n; ++i)
        free(f(64));
    printf("done\n");
    return 0;
}
