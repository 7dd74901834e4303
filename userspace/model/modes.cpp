#include "modes.hpp"

#include <algorithm>
#include <cstdio>

#include "memscope/probe_abi.h"

namespace memscope {

const char* mode_name(Mode mode)
{
    switch (mode) {
    case Mode::normal: return "normal";
    case Mode::fast: return "fast";
    case Mode::async: return "async";
    case Mode::off: return "off";
    }
    return "?";
}

std::optional<Mode> parse_mode(std::string_view name)
{
    for (Mode m : {Mode::normal, Mode::fast, Mode::async, Mode::off})
        if (name == mode_name(m))
            return m;
    return std::nullopt;
}

std::optional<Mode> mode_from_request(std::uint32_t value)
{
    switch (value) {
    case MEMSCOPE_MODE_NORMAL: return Mode::normal;
    case MEMSCOPE_MODE_FAST: return Mode::fast;
    case MEMSCOPE_MODE_ASYNC: return Mode::async;
    case MEMSCOPE_MODE_OFF: return Mode::off;
    default: return std::nullopt;
    }
}

std::optional<EnvironmentMode> mode_from_environment(std::string_view blob)
{
    bool test = false, async = false, disable_global = false;
    while (!blob.empty()) {
        std::size_t end = blob.find('\0');
        std::string_view entry = blob.substr(0, end);
        blob = end == std::string_view::npos ? std::string_view{} : blob.substr(end + 1);
        if (entry == "MEMSCOPE_TEST_MODE=1")
            test = true;
        else if (entry == "MEMSCOPE_ASYNC_MODE=1")
            async = true;
        else if (entry == "MEMSCOPE_DISABLE_GLOBAL=1")
            disable_global = true;
    }
    // The lightest asked for wins: it is what the target was told to bear.
    if (disable_global)
        return EnvironmentMode{Mode::async, "environment MEMSCOPE_DISABLE_GLOBAL=1"};
    if (async)
        return EnvironmentMode{Mode::async, "environment MEMSCOPE_ASYNC_MODE=1"};
    if (test)
        return EnvironmentMode{Mode::fast, "environment MEMSCOPE_TEST_MODE=1"};
    return std::nullopt;
}

AutoPolicy::AutoPolicy(double budget_pct, const double (&cost_ns)[3]) : budget_(budget_pct)
{
    for (int i = 0; i < 3; ++i)
        cost_[i] = cost_ns[i];
}

double AutoPolicy::estimate_pct(Mode mode, double hits_per_s, double cpu_per_s) const
{
    int i = mode == Mode::normal ? 0 : mode == Mode::fast ? 1 : 2;
    double overhead_s = hits_per_s * cost_[i] * 1e-9;
    // Under a thousandth of a core the share is noise: the target's CPU is
    // read in 10 ms ticks, and a nearly idle one often reads zero.
    if (overhead_s < 1e-3)
        return 0;
    // The target's CPU time includes the probes' own; the overhead is their
    // share of it. An idle target with hits (blocked in the kernel) counts
    // the overhead against at least that much CPU.
    double cpu = std::max(cpu_per_s, overhead_s);
    return std::min(100.0, 100.0 * overhead_s / cpu); // a share: never past whole (100.00000000000001)
}

std::optional<std::pair<Mode, std::string>> AutoPolicy::decide(Mode current, double hits_per_s,
                                                                double cpu_per_s) const
{
    if (current == Mode::off)
        return std::nullopt;
    char why[160];
    double now = estimate_pct(current, hits_per_s, cpu_per_s);
    if (now > budget_ && current != Mode::async) {
        Mode down = current == Mode::normal ? Mode::fast : Mode::async;
        std::snprintf(why, sizeof why, "auto: estimated overhead %.1f%% > budget %.1f%% (%.0f hits/s)", now,
                      budget_, hits_per_s);
        return std::make_pair(down, std::string(why));
    }
    if (current != Mode::normal) {
        Mode up = current == Mode::async ? Mode::fast : Mode::normal;
        double there = estimate_pct(up, hits_per_s, cpu_per_s);
        // Step up only with room to spare, so the mode does not flap.
        if (there < budget_ / 2) {
            std::snprintf(why, sizeof why, "auto: estimated overhead in %s %.1f%% < half the budget %.1f%% (%.0f hits/s)",
                          mode_name(up), there, budget_, hits_per_s);
            return std::make_pair(up, std::string(why));
        }
    }
    return std::nullopt;
}

} // namespace memscope
