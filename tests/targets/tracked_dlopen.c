/* Loads a plugin with dlopen after start, waits until the tracer attached
 * to the plugin's entry points, then runs it. Usage: tracked_dlopen PLUGIN N */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char** argv)
{
    if (argc < 3)
        return 2;
    void* h = dlopen(argv[1], RTLD_NOW);
    if (!h) {
        fprintf(stderr, "%s\n", dlerror());
        return 2;
    }
    int (*traced)(void) = (int (*)(void))dlsym(h, "plugin_traced");
    void (*run)(int) = (void (*)(int))dlsym(h, "plugin_run");
    if (!traced || !run)
        return 2;
    for (int i = 0; i < 10000 && !traced(); ++i)
        usleep(1000);
    if (!traced()) {
        fprintf(stderr, "plugin never traced\n");
        return 3;
    }
    run(atoi(argv[2]));
    printf("ok\n");
    return 0;
}
