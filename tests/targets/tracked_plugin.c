/* A library loaded with dlopen that carries its own entry points. */
#include <memscope/track.h>

#include <stdlib.h>

int plugin_traced(void)
{
    return memscope_traced();
}

void plugin_run(int n)
{
    MEMSCOPE_SCOPE("plugin_scope");
    for (int i = 0; i < n; ++i) {
        char* p = calloc(1, 32);
        MEMSCOPE_TRACK_PTR(p, 32, "plugin_block");
        free(p);
    }
}
