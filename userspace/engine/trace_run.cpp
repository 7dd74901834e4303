#include "trace_run.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "proc.hpp"
#include "system_procs.hpp"
#include "report_text.hpp"
#include "signals.hpp"

namespace memscope {

namespace {

std::string json_line(const nlohmann::json& j)
{
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

double seconds(const timeval& t)
{
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
}

} // namespace

void RateMeter::sample(const Snapshot& snap, int pid, double t)
{
    std::uint64_t hits = 0;
    for (const auto& th : snap.threads) {
        const Counters& c = th.counters;
        hits += c.alloc_count + c.failed_alloc_count + c.free_count + c.unmatched_free_count +
                c.exit_unmatched_free_count + c.untracked_free_count + c.track_count;
    }
    double cpu = process_cpu_seconds(pid);
    if (last_t_ >= 0 && t - last_t_ >= 0.5) {
        hits_per_s_ = hits >= last_hits_ ? static_cast<double>(hits - last_hits_) / (t - last_t_) : 0;
        cpu_per_s_ = cpu >= last_cpu_ ? (cpu - last_cpu_) / (t - last_t_) : 0;
        fresh_ = true;
    }
    if (last_t_ < 0 || t - last_t_ >= 0.5) {
        last_t_ = t;
        last_hits_ = hits;
        last_cpu_ = cpu;
    }
}

LiveTable::LiveTable() : tty_(isatty(STDERR_FILENO)) {}

void LiveTable::draw(const Report& taken, double elapsed)
{
    // Threads that exited keep their figures in the report, not a row here.
    Report snap = taken;
    std::size_t gone = 0;
    std::erase_if(snap.threads, [&](const ThreadStats& t) {
        const bool exited = access(("/proc/" + std::to_string(snap.target.pid) + "/task/" + std::to_string(t.tid)).c_str(),
                                   F_OK) != 0;
        gone += exited;
        return exited;
    });
    std::string frame = format_live_table(snap, previous_, elapsed - last_);
    if (gone)
        frame += "(" + std::to_string(gone) + " threads exited: in the final report)\n";
    if (tty_ && lines_ > 0)
        std::fprintf(stderr, "\x1b[%dA\x1b[J", lines_);
    std::fputs(frame.c_str(), stderr);
    std::fflush(stderr);
    lines_ = 0;
    for (char c : frame)
        lines_ += c == '\n';
    previous_.clear();
    for (const auto& t : snap.threads)
        previous_[t.tid] = t.counters.alloc_count;
    last_ = elapsed;
}

void fill_tracer_cpu(Report::TracerCost& cost, double start_user_s, double start_sys_s, const rusage& at_end)
{
    rusage self{};
    getrusage(RUSAGE_SELF, &self);
    cost.cpu_user_s = seconds(self.ru_utime);
    cost.cpu_sys_s = seconds(self.ru_stime);
    cost.startup_cpu_user_s = start_user_s;
    cost.startup_cpu_sys_s = start_sys_s;
    cost.tracing_cpu_user_s = seconds(at_end.ru_utime) - start_user_s;
    cost.tracing_cpu_sys_s = seconds(at_end.ru_stime) - start_sys_s;
    cost.max_rss_kb = static_cast<std::uint64_t>(self.ru_maxrss);
}

Calibration calibrate_for_auto(TraceSource& tracer, bool auto_mode)
{
    Calibration c;
    if (!auto_mode)
        return c;
    std::string err = tracer.measure_hit_costs(c.costs);
    if (!err.empty())
        std::fprintf(stderr, "memscope-trace: %s; auto mode disabled: no measured cost per hit\n",
                     escape_for_terminal(err).c_str());
    c.done = err.empty();
    return c;
}

TraceRun::TraceRun(TraceSource& tracer, Session& session, Traced& traced, const RunSettings& settings, int sigfd,
                   const Calibration& calibration, Family* family)
    : tracer_(tracer), session_(session), traced_(traced), settings_(settings), sigfd_(sigfd), family_(family),
      timeline_(settings.interval), costs_{calibration.costs[0], calibration.costs[1], calibration.costs[2]},
      calibrated_(calibration.done)
{
    // The steady clock is CLOCK_MONOTONIC, the BPF side's.
    session_.set_start_ns(static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(start_.time_since_epoch()).count()));
    rusage at_start{};
    getrusage(RUSAGE_SELF, &at_start);
    at_start_user_ = seconds(at_start.ru_utime);
    at_start_sys_ = seconds(at_start.ru_stime);
    if (settings_.live > 0) {
        table_.emplace();
        next_table_ = settings_.live;
    }
    if (settings_.auto_mode && calibrated_)
        autopilot_.emplace(settings_.overhead_budget, costs_);
    const std::string control_path =
        settings_.control_path.empty() ? control_socket_path(getpid()) : settings_.control_path;
    if (auto err = control_.listen(control_path, settings_.control_uid); !err.empty())
        std::fprintf(stderr, "memscope-trace: %s (live control disabled)\n", escape_for_terminal(err).c_str());
}

void TraceRun::drain()
{
    if (family_) {
        family_->drain(elapsed());
        return;
    }
    session_.drain(elapsed());
    while (auto e = session_.take_exec())
        if (!traced_.child) // run's exec stops are the family's
            on_exec(*e);
}

void TraceRun::on_exec(const Session::ExecMark& e)
{
    // The old program's figures are its slots' (the new one's come after);
    // what it left behind (records, sites) goes with it. Calls the new one
    // made before this, through files the old one had probed too (its libc),
    // were counted: in its slots, and its sites' first milliseconds are lost.
    const int pid = traced_.pid;
    Snapshot snap = tracer_.snapshot(pid, e.first_slot);
    Target old = traced_.target;
    Report r = make_report(snap, old, elapsed(), snap.live_bytes_sum);
    session_.describe_modes(r);
    session_.add_sites(r);
    add_tracked(r, session_.tracked(snap, true));
    r.processes.push_back({old, 0, {}, true, 0});
    exec_sections_.push_back(std::move(r));
    tracer_.forget_image(pid, e.first_slot);
    // A thread other than the leader exec'd: it took the leader's pid, and
    // every thread the probes were bound to went with the old program. The
    // new one is probed afresh; what it did before then went unseen (no
    // ptrace here to hold it, and a signal stop would show to its parent).
    const bool new_leader = e.former_tid > 0 && e.former_tid != pid;
    if (new_leader)
        tracer_.release_process(pid, TraceSource::Release::now);
    session_.on_exec(new_leader);
    traced_.target.exe = process_exe(pid);
    traced_.target.comm = read_first_line("/proc/" + std::to_string(pid) + "/comm").value_or("");
    const std::string err = session_.attach_new_files(new_leader);
    if (!err.empty())
        std::fprintf(stderr, "memscope-trace: pid %d exec'd %s: %s\n", pid,
                     escape_for_terminal(traced_.target.exe).c_str(), escape_for_terminal(err).c_str());
    if (new_leader)
        tracer_.watch_threads(pid);
    if (new_leader && !err.empty()) {
        unseen_.push_back("pid " + std::to_string(pid) + ": a thread other than the leader exec'd " +
                          traced_.target.exe + ", and its probes could not be placed again: " + err);
    } else if (new_leader) {
        const double gap_ms = static_cast<double>(monotonic_ns() - e.ns) / 1e6;
        char text[96];
        std::snprintf(text, sizeof text, "%.1f ms", gap_ms);
        unseen_.push_back("pid " + std::to_string(pid) + ": a thread other than the leader exec'd " +
                          traced_.target.exe + "; its probes were in place again " + text +
                          " later, and calls it made before then were not seen (live bytes are not exact)");
    }
    std::fprintf(stderr, "memscope-trace: pid %d exec'd %s: a new section\n", pid,
                 escape_for_terminal(traced_.target.exe).c_str());
}

bool TraceRun::calibrate()
{
    if (!calibrated_)
        calibrated_ = tracer_.measure_hit_costs(costs_).empty();
    return calibrated_;
}

// The timeline covers every followed process: their threads side by side.
void TraceRun::sample_timeline(const Snapshot& root)
{
    if (!family_) {
        timeline_.sample(elapsed(), root.threads);
        return;
    }
    std::vector<ThreadStats> threads = root.threads;
    std::uint64_t live = root.live_bytes_sum;
    family_->add_live_threads(threads, live);
    command_peak_ = std::max(command_peak_, live);
    timeline_.sample(elapsed(), threads);
}

// The target's name (its leader thread's) and the program it runs now.
void TraceRun::name_target(const Snapshot& snap)
{
    for (const auto& t : snap.threads)
        if (static_cast<int>(t.tid) == traced_.pid && !t.name.empty())
            traced_.target.comm = t.name;
    if (family_ && !family_->root_exe().empty())
        traced_.target.exe = family_->root_exe(); // what it ran last
    if (traced_.target.comm.empty())
        traced_.target.comm = read_first_line("/proc/" + std::to_string(traced_.pid) + "/comm").value_or("");
}

Report TraceRun::snapshot_report(bool final)
{
    Snapshot snap = tracer_.snapshot(traced_.pid);
    name_target(snap);
    Report r = make_report(snap, traced_.target, elapsed(), std::max(sampled_peak_, snap.live_bytes_sum));
    r.tracer.attach = tracer_.attach_method();
    r.tracer.bpf_map_bytes = tracer_.map_bytes();
    describe(r);
    session_.add_sites(r);
    r.timeline = timeline_.timeline();
    add_tracked(r, session_.tracked(snap, final));
    if (family_ && family_->follows_children())
        merge_processes(r, family_->snapshot_sections(), std::max(sampled_peak_, command_peak_));
    else if (!exec_sections_.empty())
        merge_processes(r, exec_sections_, std::max(sampled_peak_, command_peak_));
    r.alloc_functions = settings_.alloc_fns;
    derive_warnings(r);
    return r;
}

std::string TraceRun::control_status()
{
    calibrate(); // once, in a helper of its own: the target's mode is untouched
    nlohmann::json reply;
    reply["mode"] = mode_name(session_.mode());
    reply["mode_source"] = session_.mode_source();
    reply["probes_attached"] = tracer_.probes_attached();
    reply["event_rate"] = rates_.hits_per_s();
    reply["target_cpu"] = rates_.cpu_per_s();
    if (calibrated_) {
        AutoPolicy estimate(settings_.overhead_budget, costs_);
        reply["estimated_overhead_pct"] =
            session_.mode() == Mode::off ? 0.0
                                         : estimate.estimate_pct(session_.mode(), rates_.hits_per_s(), rates_.cpu_per_s());
        reply["cost_per_hit_ns"] = {{"normal", costs_[0]}, {"fast", costs_[1]}, {"async", costs_[2]}};
    } else {
        reply["estimated_overhead_pct"] = nullptr;
    }
    reply["auto"] = autopilot_.has_value();
    reply["mode_changes"] = session_.mode_changes().size();
    return json_line(reply);
}

std::string TraceRun::on_control(const std::string& line)
{
    std::string why;
    auto request = parse_control_line(line, why);
    if (!request)
        return json_line({{"error", why}});
    if (request->kind == ControlRequest::Kind::status)
        return control_status();
    if (request->kind != ControlRequest::Kind::mode)
        return json_line({{"error", "heap add and heap drop are -a's: this tracer follows one command or process"}});
    std::string err = session_.switch_mode(request->mode, "ctl", elapsed());
    if (!err.empty())
        return json_line({{"error", err}});
    return json_line({{"ok", true}, {"mode", mode_name(session_.mode())}});
}

bool TraceRun::on_signals()
{
    signalfd_siginfo si{};
    bool stop = false;
    while (read(sigfd_, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo == SIGCHLD) {
            if (family_ && family_->reap(elapsed()))
                stop = target_gone_ = true;
        } else if (si.ssi_signo == SIGUSR1) {
            if (on_snapshot)
                on_snapshot(snapshot_report(false)); // and tracing goes on
        } else if (traced_.child) {
            // `run`: the command decides when it ends. A terminal's Ctrl-C
            // already reached it; a kill(1) aimed at us is passed on.
            if (si.ssi_code == SI_USER || si.ssi_code == SI_QUEUE)
                kill(traced_.pid, static_cast<int>(si.ssi_signo));
        } else {
            stop = true;
        }
    }
    return stop;
}

void TraceRun::on_tick()
{
    Snapshot snap = tracer_.snapshot(traced_.pid);
    sampled_peak_ = std::max(sampled_peak_, snap.live_bytes_sum);
    if (timeline_.due(elapsed()))
        sample_timeline(snap);
    rates_.sample(snap, traced_.pid, elapsed());
    if (autopilot_ && rates_.take_fresh()) {
        if (auto step = autopilot_->decide(session_.mode(), rates_.hits_per_s(), rates_.cpu_per_s())) {
            std::string err = session_.switch_mode(step->first, step->second, elapsed());
            std::fprintf(stderr, "memscope-trace: mode %s (%s)\n", mode_name(session_.mode()),
                         err.empty() ? step->second.c_str() : err.c_str());
        }
    }
    if (table_ && elapsed() >= next_table_) {
        table_->draw(make_report(snap, traced_.target, elapsed(), sampled_peak_), elapsed());
        next_table_ += settings_.live;
    }
}

Report TraceRun::run(int& status)
{
    const int sample_ms = std::max(1, static_cast<int>(settings_.interval * 1000));
    for (;;) {
        // poll skips the fds that are -1 (no control socket, no exporter).
        pollfd fds[5] = {{sigfd_, POLLIN, 0},
                         {traced_.pidfd, POLLIN, 0},
                         {tracer_.events_fd(), POLLIN, 0},
                         {control_.fd(), POLLIN, 0},
                         {exporter_ ? exporter_->wake_fd() : -1, POLLIN, 0}};
        int timeout = sample_ms;
        if (settings_.duration > 0) {
            double left = settings_.duration - elapsed();
            if (left <= 0)
                break;
            timeout = std::min(timeout, static_cast<int>(left * 1000) + 1);
        }
        int n = poll(fds, 5, timeout);
        if (n < 0 && errno != EINTR)
            break;
        drain();
        if ((fds[0].revents & POLLIN) && on_signals())
            break;
        if (fds[1].revents & POLLIN) {
            target_gone_ = true;
            break;
        }
        // Never waits: a client gets its turn when it is ready.
        control_.serve([this](const std::string& line) { return on_control(line); });
        on_tick();
        if (exporter_ && exporter_->due(elapsed()))
            exporter_->publish(snapshot_report(false), elapsed());
    }
    end_on_signals_again(sigfd_);
    reap(status);
    drain();
    return final_report();
}

void TraceRun::reap(int& status)
{
    if (!target_gone_)
        return;
    if (family_) {
        // The root is gone: its exit status comes with the other processes' stops.
        while (!family_->reap(elapsed()))
            usleep(1000);
        status = shell_status(family_->root_status());
        traced_.target.exit_code = status;
    } else if (traced_.child) {
        int ws = 0;
        while (waitpid(traced_.pid, &ws, 0) < 0 && errno == EINTR) {
        }
        status = shell_status(ws);
        traced_.target.exit_code = status;
    }
}

void TraceRun::describe(Report& r) const
{
    session_.describe_modes(r);
    for (const auto& w : unseen_) {
        r.live_bytes_exact = r.free_bytes_exact = false;
        r.warnings.push_back(w);
    }
}

Report TraceRun::final_report()
{
    Snapshot snap = tracer_.snapshot(traced_.pid);
    rusage at_end{}; // tracing done: what follows is the report's (symbols, merging)
    getrusage(RUSAGE_SELF, &at_end);
    if (traced_.child && snap.children.execs > 0)
        --snap.children.execs; // the first exec is the command itself
    if (!traced_.child && snap.exited)
        traced_.target.exit_code = shell_status(snap.wait_status);
    sampled_peak_ = std::max(sampled_peak_, snap.live_bytes_sum);
    name_target(snap);
    Report report = make_report(snap, traced_.target, elapsed(), sampled_peak_);
    describe(report);
    if (timeline_.due(elapsed()))
        sample_timeline(snap);
    report.timeline = timeline_.timeline();
    session_.add_sites(report);
    add_tracked(report, session_.tracked(snap, true));
    if (family_ && family_->follows_children())
        merge_processes(report, family_->sections(), std::max(sampled_peak_, command_peak_));
    else if (!exec_sections_.empty())
        merge_processes(report, std::move(exec_sections_), std::max(sampled_peak_, command_peak_));
    report.tracer.attach = tracer_.attach_method(); // before the warnings: one depends on it
    derive_warnings(report);
    // The whole run's cost: the report so far included (symbols, merging;
    // not the writing of its files).
    fill_tracer_cpu(report.tracer, at_start_user_, at_start_sys_, at_end);
    report.tracer.bpf_map_bytes = tracer_.map_bytes();
    report.tracer.programs = tracer_.program_stats();
    report.alloc_functions = settings_.alloc_fns;
    const UnwindStats& u = tracer_.unwind_stats();
    report.stacks.unwind = {u.files,        u.rows,      u.rows * sizeof(ms_unwind_row), u.eh_frame_bytes,
                            u.build_ms,     u.skipped,   u.shared_files};
    return report;
}

} // namespace memscope
