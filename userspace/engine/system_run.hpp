// -a: every process, present and future, until a signal or --duration.
// Tier 0 (tracepoints) for all of them; the loop waits on the tracer's
// signals and tier 0's event ring, and reads the process map each interval.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "control.hpp"
#include "exporter.hpp"
#include "heap_set.hpp"
#include "model.hpp"
#include "process_table.hpp"
#include "system_procs.hpp"
#include "system_watch.hpp"

namespace memscope {

struct SystemSettings {
    double duration = 0;   // 0: until a signal
    double interval = 1.0; // the process map read this often
    double live = 0;       // a top-like table on stderr every N seconds
    std::string control_path; // the control socket (empty: control_socket_path() of this process)
    uid_t control_uid = 0;
    std::size_t max_exited = 20000; // exited processes listed one by one; the rest counted
    std::vector<std::string> heap_selectors; // as given, for the report
};

class SystemRun {
public:
    // `heap`: the processes chosen for exact heap tracing (null: none).
    SystemRun(SystemWatch& watch, const SystemSettings& settings, int sigfd, HeapSet* heap = nullptr);
    CgroupNames& cgroups() { return cgroups_; }

    // Called with a snapshot report on SIGUSR1 (tracing goes on).
    std::function<void(const Report&)> on_snapshot;
    // Live export (--listen, --push): snapshots when it asks for them.
    void set_exporter(Exporter* exporter) { exporter_ = exporter; }
    double elapsed_s() const { return elapsed(); }

    // Watch until a signal or the duration; the final report.
    Report run();

private:
    using Clock = std::chrono::steady_clock;
    double elapsed() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
    void list_running();
    void drain();
    void on_event(const SystemEvent& e);
    bool on_signals(); // true: watching ends
    void sample();
    void draw_live();
    Report report(bool final);

    void say_heap_notes();
    std::string on_control(const std::string& line);
    ControlServer control_;
    Exporter* exporter_ = nullptr;
    SystemWatch& watch_;
    HeapSet* heap_;
    std::size_t heap_notes_said_ = 0;
    SystemSettings settings_;
    int sigfd_;
    Clock::time_point start_ = Clock::now();
    ProcessTable table_;
    CgroupNames cgroups_;
    std::function<void(const SystemEvent&)> handler_;
    double next_live_ = 0;
    int live_lines_ = 0;
    bool tty_ = false;
    double at_start_user_ = 0, at_start_sys_ = 0;
};

// The top-like view: the processes growing fastest first.
// `heap`: the heap-traced processes' modes by pid (a column of their own).
std::string format_system_live(const ProcessTable& table, double elapsed, std::size_t rows,
                               const std::map<int, std::string>& heap = {});

} // namespace memscope
