/* The C API, traced with -p: waits until a tracer is attached (the kernel
 * raises the module's semaphore), then names blocks, a plain variable, a
 * block moved by realloc and a hostile name, inside a scope and a task. */
#include <memscope/track.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(void)
{
    printf("ready\n");
    fflush(stdout);
    for (int i = 0; i < 20000 && !memscope_traced(); ++i)
        usleep(1000);
    if (!memscope_traced()) {
        fprintf(stderr, "never traced\n");
        return 3;
    }
    memscope_request_mode(MEMSCOPE_MODE_FAST);

    char* kept[5];
    {
        MEMSCOPE_SCOPE("c_scope");
        MEMSCOPE_TASK("c_task");
        for (int i = 0; i < 10; ++i) {
            char* p = malloc(64 + i);
            MEMSCOPE_TRACK_PTR(p, 64 + i, "block");
            if (i % 2)
                free(p);
            else
                kept[i / 2] = p;
        }
    }
    int counter = 5;
    MEMSCOPE_TRACK_VAR(counter); /* no heap block: the object itself */

    char* grown = malloc(10);
    MEMSCOPE_TRACK_PTR(grown, 10, "grown");
    grown = realloc(grown, 100000); /* moves: the variable follows */
    free(grown);

    char* evil = malloc(7);
    MEMSCOPE_TRACK_PTR(evil, 7, "evil\"\n\x01\xff" "name");
    printf("ok %d %p\n", counter, (void*)kept[0]);
    return 0;
}
