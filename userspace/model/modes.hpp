// Modes: what each records, where a mode came from, and the auto policy
// that keeps the estimated overhead under a budget. Pure: no kernel here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace memscope {

enum class Mode { normal, fast, async, off };

const char* mode_name(Mode mode);
std::optional<Mode> parse_mode(std::string_view name); // normal, fast, async, off
// The value a target passes to memscope_request_mode (MEMSCOPE_MODE_*).
std::optional<Mode> mode_from_request(std::uint32_t value);

struct ModeChange {
    double t_s = 0; // seconds since tracing began
    Mode from = Mode::normal;
    Mode to = Mode::normal;
    std::string reason;
};

// The mode a target's environment asks for (as /proc/PID/environ holds it:
// NUL-separated NAME=VALUE), with the variable that asked; nullopt if none.
// MEMSCOPE_DISABLE_GLOBAL=1 and MEMSCOPE_ASYNC_MODE=1 ask for async (it
// shares nothing across threads in the hot path), MEMSCOPE_TEST_MODE=1 for fast.
struct EnvironmentMode {
    Mode mode;
    std::string source;
};
std::optional<EnvironmentMode> mode_from_environment(std::string_view environ_blob);

// auto: steps between normal, fast and async (never off: it must keep
// seeing the event rate) so that the estimated overhead on the target,
// probe hits per second times the measured cost of a hit in that mode (trap
// included), stays under the budget, a share of the target's CPU time.
class AutoPolicy {
public:
    // cost_ns[m]: measured cost of one probe hit in mode m (normal, fast, async).
    AutoPolicy(double budget_pct, const double (&cost_ns)[3]);

    // One observation over an interval: hits per second and the target's CPU
    // seconds per second (overhead included). Returns the mode to switch to,
    // with its reason, or nullopt to stay.
    std::optional<std::pair<Mode, std::string>> decide(Mode current, double hits_per_s, double cpu_per_s) const;

    // Estimated overhead (percent of the target's CPU) of running `mode` at this rate.
    double estimate_pct(Mode mode, double hits_per_s, double cpu_per_s) const;

private:
    double budget_;
    double cost_[3];
};

} // namespace memscope
