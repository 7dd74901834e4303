// Allocations made in a signal handler, three calls below main:
//   main -> raise_deep -> raise -> (the signal) -> on_signal -> keep_in_handler -> malloc
// three times on the thread's stack and twice on an alternate signal stack
// (SA_ONSTACK), where the interrupted frames lie on another stack. Built -O2
// without frame pointers: the handler's frames are found by the unwind
// tables, the interrupted ones through the signal frame's saved registers.
#include <signal.h>
#include <stdlib.h>
#include <string.h>

// After the call, before the return: no sibling calls.
#define KEEP(p) asm volatile("" : : "r"(p) : "memory")

static void* volatile kept[8];
static volatile int kept_n;
static char alt_stack[64 * 1024] __attribute__((aligned(16)));

__attribute__((noinline)) static void keep_in_handler(void)
{
    void* p = malloc(77);
    KEEP(p);
    kept[kept_n++ & 7] = p;
}

static void on_signal(int sig)
{
    (void)sig;
    keep_in_handler();
    KEEP(0);
}

__attribute__((noinline)) void raise_deep(int sig)
{
    raise(sig);
    KEEP(0);
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGUSR1, &sa, 0);
    stack_t ss = {.ss_sp = alt_stack, .ss_size = sizeof alt_stack, .ss_flags = 0};
    sigaltstack(&ss, 0);
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR2, &sa, 0);
    for (int i = 0; i < 3; ++i)
        raise_deep(SIGUSR1);
    for (int i = 0; i < 2; ++i)
        raise_deep(SIGUSR2);
    return 0;
}
