#include "calibrate.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <csignal>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "elf_symbols.hpp"
#include "proc.hpp"
#include "system_procs.hpp"

namespace memscope {

namespace {

constexpr int kPairs = 2000;

// The helper: one batch of pairs per byte received, its time sent back.
[[noreturn]] void helper(pid_t parent, int in, int out)
{
    // Nothing of the tracer's but its two pipes (its own copy of the write
    // end would keep it reading forever, a killed tracer's probe links alive),
    // and gone with the tracer.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(0);
    const int keep[2] = {std::min(in, out), std::max(in, out)};
    close_fds_except(keep, 2);
    char c;
    while (read(in, &c, 1) == 1 && c == 'g') {
        std::uint64_t t0 = monotonic_ns();
        for (int i = 0; i < kPairs; ++i) {
            void* p = std::malloc(64);
            asm volatile("" : : "r"(p) : "memory");
            std::free(p);
        }
        std::uint64_t dt = monotonic_ns() - t0;
        if (write(out, &dt, sizeof dt) != sizeof dt)
            break;
    }
    _exit(0);
}

struct Helper {
    pid_t pid = -1;
    int cmd = -1, res = -1;
    ~Helper()
    {
        if (cmd >= 0)
            close(cmd);
        if (res >= 0)
            close(res);
        if (pid > 0)
            waitpid(pid, nullptr, 0);
    }
    // Best of three batches, ns per pair; negative on failure.
    double batch()
    {
        double best = -1;
        for (int i = 0; i < 3; ++i) {
            std::uint64_t dt = 0;
            if (write(cmd, "g", 1) != 1 || read(res, &dt, sizeof dt) != sizeof dt)
                return -1;
            double per = static_cast<double>(dt) / kPairs;
            best = best < 0 ? per : std::min(best, per);
        }
        return best;
    }
};

} // namespace

std::string calibrate_hit_costs(Tracer& tracer, double (&cost_ns)[3])
{
    Dl_info info{};
    if (!dladdr(reinterpret_cast<void*>(&std::malloc), &info) || !info.dli_fname)
        return "cannot find this process's allocator to calibrate with";
    ElfScan scan = scan_elf(info.dli_fname);
    if (!scan.error.empty() || scan.symbols.empty())
        return std::string("no allocator functions in ") + info.dli_fname;

    int to[2], from[2];
    if (pipe2(to, O_CLOEXEC) != 0 || pipe2(from, O_CLOEXEC) != 0)
        return std::string("cannot calibrate: ") + std::strerror(errno);
    Helper h;
    const pid_t self = getpid();
    h.pid = fork();
    if (h.pid == 0)
        helper(self, to[0], from[1]);
    close(to[0]);
    close(from[1]);
    h.cmd = to[1];
    h.res = from[0];
    if (h.pid < 0)
        return std::string("cannot calibrate: ") + std::strerror(errno);

    double untraced = h.batch();
    std::vector<Probe> links;
    std::string err = tracer.attach_allocator_temporary(h.pid, info.dli_fname, scan.symbols, links);
    const Mode modes[3] = {Mode::normal, Mode::fast, Mode::async};
    double traced[3] = {-1, -1, -1};
    if (err.empty()) {
        for (int m = 0; m < 3; ++m) {
            tracer.set_calibration_mode(h.pid, modes[m]);
            traced[m] = h.batch();
        }
    }
    tracer.set_calibration_mode(0, Mode::normal);
    write(h.cmd, "q", 1);
    links.clear(); // detached here, before the maps forget the helper
    tracer.forget_process(h.pid);
    if (!err.empty())
        return err;
    if (untraced < 0 || std::any_of(traced, traced + 3, [](double t) { return t < 0; }))
        return "the calibration helper failed";
    for (int m = 0; m < 3; ++m)
        cost_ns[m] = std::max(0.0, (traced[m] - untraced) / 2); // two hits a pair
    return {};
}

} // namespace memscope
