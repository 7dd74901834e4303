// -a --heap: the processes chosen for exact heap tracing, each probed alone
// (its allocator's probes bound to it; no other process gets a breakpoint)
// through one Tracer, a Session each. A new program that matches waits at
// its loader (tier 0's hold, no signal, no ptrace) until its probes are in
// place, so it is exact from its first allocator call.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model.hpp"
#include "selectors.hpp"
#include "trace_run.hpp" // RateMeter
#include "session.hpp"
#include "system_procs.hpp"
#include "system_watch.hpp"
#include "tracer.hpp"

namespace memscope {

struct HeapSettings {
    std::vector<HeapSelector> selectors;
    std::size_t top = 0; // --heap-top N: the N fastest-growing (anon RSS) as they appear
    std::size_t max_variables = kDefaultMaxVariables;
    double leak_min_age_s = 1; // --min-age
    // --overhead-budget with -a: each chosen process steps down on its own
    // (normal -> fast -> async -> released) to stay under it; 0: no budget.
    double budget_pct = 0;
    TracerOptions tracer;
};

class HeapSet {
public:
    HeapSet(SystemWatch& watch, CgroupNames& cgroups, HeapSettings settings);
    ~HeapSet();

    // Load the heap tracer, hold new programs that match, probe the running
    // processes that match. Returns an error sentence, empty on success;
    // `notes` gets what the user should know (a selector that matches nothing yet).
    std::string start(std::vector<std::string>& notes);
    bool active() const { return tracer_ != nullptr; }
    // When tracing began (CLOCK_MONOTONIC ns): the processes' peaks are timed from then.
    void set_start_ns(std::uint64_t ns) { start_ns_ = ns; }
    int events_fd() const;

    // Tier 0's events: a new program (held when its exec matched in the
    // kernel), a held process at its loader, a process gone.
    void on_exec(int pid, bool held, double t);
    void on_held(int pid, std::uint32_t call, double t);
    void on_exit(int pid, double t);
    // The heap tracer's events, each to its process's session.
    void drain(double t);
    // Each interval: every chosen process's rates, and its budget's step.
    void tick(double t);
    // `ctl status`: each chosen process's mode, rates and estimated overhead.
    nlohmann::json status() const;
    // `ctl heap add|drop SELECTOR`: choose the running processes it
    // matches (and new ones from now on), or let go of those it chose.
    std::string add_selector(const HeapSelector& s, double t);
    std::string drop_selector(const std::string& text, double t);
    // --heap-top: choose among the fastest-growing now (pid -> anon bytes/s).
    void consider_growth(const std::vector<std::pair<int, double>>& fastest, double t);

    // Every chosen process's report (those gone, and the live ones now).
    std::vector<Report> sections(double t, bool final);
    std::size_t chosen() const { return chosen_.size(); }
    const std::vector<std::string>& notes() const { return notes_; }
    // What the report must say: chosen processes whose first calls went unseen.
    const std::vector<std::string>& warnings() const { return warnings_; }
    // How the chosen processes' probes are attached (empty: no tracer yet).
    std::string attach_method() const;
    // The heap tracer's kernel memory and its programs' runs (nothing
    // before a process was chosen: its BPF object is loaded then).
    std::uint64_t map_bytes() const;
    void add_program_stats(std::map<std::string, std::pair<std::uint64_t, std::uint64_t>>& out) const;

private:
    struct Chosen {
        std::unique_ptr<Session> session;
        Target target;
        std::string why; // the selector, or "--heap-top"
        RateMeter rates;
        bool released = false; // its budget let it go: probes detached
    };
    void step(Chosen& c, double t);
    ProcessIdentity identity(int pid);
    bool maps_host_loader(int pid);
    bool matches(int pid, std::string& why);
    void choose(int pid, const std::string& why, bool held, double t);
    Report section(Chosen& c, double t, bool final);
    std::string hold_new_programs();

    SystemWatch& watch_;
    CgroupNames& cgroups_;
    HeapSettings settings_;
    std::uint64_t start_ns_ = 0;
    std::unique_ptr<Tracer> tracer_;
    std::map<int, Chosen> chosen_;
    static constexpr std::size_t kMaxKept = 1000;
    void keep(Report r);
    std::vector<Report> done_; // processes that exited: their final reports
    std::size_t not_kept_ = 0;
    std::vector<std::string> notes_;
    std::vector<std::string> warnings_;
    bool calibrated_ = false;
    double costs_[3] = {0, 0, 0};
};

// Fold the chosen processes' reports into -a's: its threads, sites, leaks,
// variables and totals are theirs; each one's entry in `processes` is
// marked heap_traced with its own totals.
void fold_heap_sections(Report& system, std::vector<Report> sections);

} // namespace memscope
