#include "signals.hpp"

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "safe_files.hpp"

namespace memscope {

namespace {

volatile sig_atomic_t g_ending_signal = 0;

extern "C" void on_ending_signal(int sig)
{
    if (g_ending_signal) { // the second: now, as the default action would
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    g_ending_signal = sig;
}

} // namespace

int trace_signal_fd()
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGCHLD); // `run`: the command's processes stopping and ending (ptrace)
    sigprocmask(SIG_BLOCK, &set, nullptr);
    return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

void end_on_signals_again(int sigfd)
{
    signalfd_siginfo si{};
    while (read(sigfd, &si, sizeof si) == sizeof si) {
    }
    set_output_cancel(&g_ending_signal);
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGINT, SIGTERM, SIGHUP}) {
        struct sigaction old{};
        sigaction(s, nullptr, &old);
        if (old.sa_handler != SIG_IGN) {
            struct sigaction act{};
            act.sa_handler = on_ending_signal;
            sigemptyset(&act.sa_mask);
            act.sa_flags = SA_RESTART;
            sigaction(s, &act, nullptr);
        }
        sigaddset(&set, s);
    }
    sigprocmask(SIG_UNBLOCK, &set, nullptr);
}

int ending_signal()
{
    return g_ending_signal;
}

} // namespace memscope
