// A trace run: from the target's first probed instruction to its report.
// The loop waits on the tracer's signals, the target's pidfd, the event
// ring and the control socket, and hands each to a small handler: signals
// (stop, snapshot, reap, pass on), control requests, the tick (samples,
// timeline, auto mode, the live table), and the finish (reaping, the
// report and the tracer's own cost).
#pragma once

#include <sys/resource.h>

#include <chrono>
#include <functional>
#include <optional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "control.hpp"
#include "exporter.hpp"
#include "family.hpp"
#include "launcher.hpp"
#include "model.hpp"
#include "modes.hpp"
#include "session.hpp"
#include "sites.hpp"
#include "trace_source.hpp"

namespace memscope {

// What shapes the run (the CLI's options that the loop reads).
struct RunSettings {
    double duration = 0;   // 0: until the target ends
    double interval = 0.1; // live figures sampled this often (the timeline, the process peak)
    double live = 0;       // a live per-thread table on stderr every N seconds
    bool auto_mode = false;
    double overhead_budget = 5.0; // auto mode's, in percent of the target's CPU
    std::vector<std::string> alloc_fns;
    // The control socket (empty: control_socket_path() of this process) and
    // the user it takes requests from besides root: unit tests run
    // unprivileged and name their own.
    std::string control_path;
    uid_t control_uid = 0;
};

// The process traced: a live one (`-p`), or the command `run` started.
struct Traced {
    int pid = 0;
    int pidfd = -1;
    std::optional<HeldChild> child; // set for `run`
    Target target;
};

// Probe costs measured before the target's probes exist (auto mode), so
// that stepping starts at once; calibration switches the BPF side's mode,
// which must not touch the target.
struct Calibration {
    bool done = false;
    double costs[3] = {0, 0, 0};
};
Calibration calibrate_for_auto(TraceSource& tracer, bool auto_mode);

// The tracer's own CPU and memory (RUSAGE_SELF) into `cost`: the whole run
// so far, its start (CPU seconds when tracing began), and the tracing from
// then until `at_end` (tracing done; what follows is the report's).
void fill_tracer_cpu(Report::TracerCost& cost, double start_user_s, double start_sys_s, const rusage& at_end);

// Probe hits per second and the target's CPU seconds per second, over the
// last half second: what auto mode and `ctl status` go by.
class RateMeter {
public:
    void sample(const Snapshot& snap, int pid, double t);
    // True once per new measurement.
    bool take_fresh() { return std::exchange(fresh_, false); }
    double hits_per_s() const { return hits_per_s_; }
    double cpu_per_s() const { return cpu_per_s_; }

private:
    double last_t_ = -1, last_cpu_ = 0, hits_per_s_ = 0, cpu_per_s_ = 0;
    std::uint64_t last_hits_ = 0;
    bool fresh_ = false;
};

// `--live N`: a per-thread table on stderr, redrawn in place on a terminal.
class LiveTable {
public:
    LiveTable();
    void draw(const Report& snap, double elapsed);

private:
    bool tty_;
    int lines_ = 0;
    double last_ = 0;
    std::map<std::uint32_t, std::uint64_t> previous_;
};

class TraceRun {
public:
    TraceRun(TraceSource& tracer, Session& session, Traced& traced, const RunSettings& settings, int sigfd,
             const Calibration& calibration, Family* family = nullptr);

    // Called with a snapshot report on SIGUSR1 (tracing goes on).
    std::function<void(const Report&)> on_snapshot;
    // Live export (--listen, --push): snapshots when it asks for them.
    void set_exporter(Exporter* exporter) { exporter_ = exporter; }
    double elapsed_s() const { return elapsed(); }

    // Trace until the target exits, a signal, or the duration; the final
    // report. `status` gets the command's exit status (`run`).
    Report run(int& status);

private:
    // The mode and what is inexact (describe_modes), and the gaps of execs.
    void describe(Report& r) const;
    using Clock = std::chrono::steady_clock;
    double elapsed() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
    void drain();
    bool on_signals();               // true: tracing ends
    void on_tick();                  // samples, timeline, auto mode, live table
    std::string on_control(const std::string& line);
    std::string control_status();
    bool calibrate();
    void sample_timeline(const Snapshot& root);
    Report snapshot_report(bool final);
    void name_target(const Snapshot& snap);
    void reap(int& status);          // the target is gone: its exit status
    Report final_report();
    // -p: the target exec'd; its old program becomes a section of its own.
    void on_exec(const Session::ExecMark& e);

    TraceSource& tracer_;
    Exporter* exporter_ = nullptr;
    Session& session_;
    Traced& traced_;
    RunSettings settings_;
    int sigfd_;
    Family* family_;
    Clock::time_point start_ = Clock::now();
    std::uint64_t sampled_peak_ = 0;
    std::uint64_t command_peak_ = 0; // every followed process's live bytes together, sampled
    TimelineRecorder timeline_;
    bool target_gone_ = false;
    double costs_[3];
    bool calibrated_;
    std::optional<AutoPolicy> autopilot_;
    ControlServer control_;
    RateMeter rates_;
    std::optional<LiveTable> table_;
    double next_table_ = 0;
    double at_start_user_ = 0, at_start_sys_ = 0; // the tracer's start: BPF load, ELF scans, symbols
    std::vector<Report> exec_sections_; // -p: the programs the target ran before this one
    std::vector<std::string> unseen_;   // -p: execs by a thread other than the leader (a gap each)
};

} // namespace memscope
