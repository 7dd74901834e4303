#include "system_run.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "signals.hpp"
#include "selectors.hpp"
#include "proc.hpp"
#include "report_text.hpp" // escape_for_terminal

namespace memscope {

namespace {

double seconds(const timeval& tv)
{
    return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6;
}

std::string mib(double bytes)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", bytes / (1024.0 * 1024.0));
    return buf;
}

} // namespace

SystemRun::SystemRun(SystemWatch& watch, const SystemSettings& settings, int sigfd, HeapSet* heap)
    : watch_(watch), heap_(heap), settings_(settings), sigfd_(sigfd),
      table_(settings.max_exited, monotonic_s()), tty_(isatty(2))
{
    rusage at_start{};
    getrusage(RUSAGE_SELF, &at_start);
    at_start_user_ = seconds(at_start.ru_utime);
    at_start_sys_ = seconds(at_start.ru_stime);
    table_.cgroup_name = [this](std::uint64_t id, int pid) { return cgroups_.path_of(id, pid); };
    const std::string path = settings_.control_path.empty() ? control_socket_path(getpid()) : settings_.control_path;
    if (auto err = control_.listen(path, settings_.control_uid); !err.empty())
        std::fprintf(stderr, "memscope-trace: %s (live control disabled)\n", escape_for_terminal(err).c_str());
    handler_ = [this](const SystemEvent& e) { on_event(e); };
    if (heap_)
        heap_->set_start_ns(static_cast<std::uint64_t>(table_.mono_start_s() * 1e9));
}

// Processes running before the tracer: what /proc says of them now; the
// BPF side's figures take over at their first fault, brk or mmap.
void SystemRun::list_running()
{
    for (int pid : all_pids()) {
        auto f = read_proc_facts(pid);
        if (!f)
            continue;
        ProcessSection s;
        s.target.pid = pid;
        s.target.comm = f->comm;
        s.target.exe = process_exe(pid);
        s.parent_pid = f->ppid;
        s.ns_pid = f->ns_pid;
        s.other_pid_namespace = f->other_pid_namespace;
        MemoryFigures m;
        m.rss_anon_bytes = m.peak_rss_anon_bytes = f->rss_anon;
        m.rss_file_bytes = f->rss_file;
        m.rss_shmem_bytes = f->rss_shmem;
        m.swap_bytes = f->swap;
        m.peak_rss_bytes = f->rss_anon + f->rss_file + f->rss_shmem;
        s.memory = m;
        s.cgroup = cgroups_.path_of(0, pid);
        table_.list(s, elapsed(), f->start_ticks);
    }
}

void SystemRun::on_event(const SystemEvent& e)
{
    // When it happened, not when it is read: an exit's figures are its last.
    const double t = std::min(elapsed(), static_cast<double>(e.ts_ns) / 1e9 - table_.mono_start_s());
    switch (e.kind) {
    case MS_SYS_EV_EXEC:
        if (WatchedProcess* w = table_.exec(e.pid, e.proc, t))
            w->section.target.exe = process_exe(e.pid);
        if (heap_)
            heap_->on_exec(e.pid, e.exit_code == MS_SYS_EXEC_HELD, t);
        break;
    case MS_SYS_EV_HELD:
        if (heap_)
            heap_->on_held(e.pid, static_cast<std::uint32_t>(e.exit_code), t);
        else
            watch_.end_hold(e.pid);
        break;
    case MS_SYS_EV_EXIT:
        if (heap_)
            heap_->on_exit(e.pid, t);
        table_.exit(e.pid, e.has_figures ? &e.proc : nullptr, e.exit_code, t);
        break;
    case MS_SYS_EV_OOM:
        table_.oom(e.pid, e.proc, t);
        break;
    default:
        break;
    }
}

void SystemRun::drain()
{
    watch_.drain(handler_);
    if (heap_) {
        heap_->drain(elapsed());
        say_heap_notes();
    }
}

void SystemRun::say_heap_notes()
{
    for (; heap_notes_said_ < heap_->notes().size(); ++heap_notes_said_)
        std::fprintf(stderr, "memscope-trace: %s\n", escape_for_terminal(heap_->notes()[heap_notes_said_]).c_str());
}

bool SystemRun::on_signals()
{
    signalfd_siginfo si{};
    bool stop = false;
    while (read(sigfd_, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo == SIGUSR1) {
            if (on_snapshot)
                on_snapshot(report(false));
        } else if (si.ssi_signo != SIGCHLD) {
            stop = true;
        }
    }
    return stop;
}

// `ctl status`: the machine's counts and each heap-traced process's mode
// and estimated overhead; `heap add|drop SELECTOR` changes the choice.
std::string SystemRun::on_control(const std::string& line)
{
    auto reply = [](const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); };
    std::string why;
    auto request = parse_control_line(line, why);
    if (!request)
        return reply({{"error", why}});
    switch (request->kind) {
    case ControlRequest::Kind::status: {
        const SystemSummary s = table_.summary();
        return reply({{"scope", "system"},
                      {"processes_live", table_.live().size()},
                      {"births", s.births},
                      {"exits", s.exits},
                      {"oom_kills", s.oom_kills},
                      {"heap_traced", heap_ ? heap_->status() : nlohmann::json::array()}});
    }
    case ControlRequest::Kind::mode:
        return reply({{"error", "with -a each heap-traced process has its own mode (--overhead-budget); "
                                "choose them with heap add|drop"}});
    default: break;
    }
    if (!heap_)
        return reply({{"error", "heap tracing is not set up: start -a with --heap or --heap-top"}});
    std::string err;
    if (request->kind == ControlRequest::Kind::heap_add) {
        auto sel = parse_heap_selector(request->selector, why);
        err = sel ? heap_->add_selector(*sel, elapsed()) : why;
    } else {
        err = heap_->drop_selector(request->selector, elapsed());
    }
    say_heap_notes();
    if (!err.empty())
        return reply({{"error", err}});
    return reply({{"ok", true}, {"heap_traced", heap_->status()}});
}

void SystemRun::sample()
{
    // Events first: an exit read after the map would find its pid taken
    // by a new process already (the table tells them apart either way).
    drain();
    const double t = elapsed();
    for (const auto& [pid, raw] : watch_.processes())
        table_.update(pid, raw, t);
    if (heap_) {
        std::vector<std::pair<int, double>> fastest;
        for (const auto& [pid, w] : table_.live())
            if (w.recent_rate > 0)
                fastest.emplace_back(pid, w.recent_rate);
        std::sort(fastest.begin(), fastest.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
        heap_->consider_growth(fastest, t);
        heap_->tick(t);
        say_heap_notes();
    }
}

std::string format_system_live(const ProcessTable& table, double elapsed, std::size_t rows,
                               const std::map<int, std::string>& heap)
{
    std::vector<const WatchedProcess*> order;
    for (const auto& [pid, w] : table.live())
        order.push_back(&w);
    std::sort(order.begin(), order.end(), [](const WatchedProcess* a, const WatchedProcess* b) {
        if (a->recent_rate != b->recent_rate)
            return a->recent_rate > b->recent_rate;
        return a->section.memory->rss_anon_bytes > b->section.memory->rss_anon_bytes;
    });
    const SystemSummary s = table.summary();
    char line[256];
    std::snprintf(line, sizeof line,
                  "memscope-trace -a  %.0fs  processes %zu live, %llu born, %llu exited, %llu OOM kills\n", elapsed,
                  table.live().size(), static_cast<unsigned long long>(s.births),
                  static_cast<unsigned long long>(s.exits), static_cast<unsigned long long>(s.oom_kills));
    std::string out = line;
    std::snprintf(line, sizeof line, "%8s %-16s %10s %10s %10s %10s %12s %-8s  %s\n", "PID", "COMM", "ANON MiB",
                  "PEAK MiB", "FILE MiB", "SHMEM MiB", "GROWTH MiB/s", "HEAP", "CGROUP");
    out += line;
    for (std::size_t i = 0; i < order.size() && i < rows; ++i) {
        const ProcessSection& p = order[i]->section;
        const MemoryFigures& m = *p.memory;
        const auto traced = heap.find(p.target.pid);
        std::snprintf(line, sizeof line, "%8d %-16s %10s %10s %10s %10s %12s %-8s  ", p.target.pid,
                      escape_for_terminal(p.target.comm).c_str(), mib(static_cast<double>(m.rss_anon_bytes)).c_str(),
                      mib(static_cast<double>(m.peak_rss_anon_bytes)).c_str(),
                      mib(static_cast<double>(m.rss_file_bytes)).c_str(),
                      mib(static_cast<double>(m.rss_shmem_bytes)).c_str(), mib(order[i]->recent_rate).c_str(),
                      traced == heap.end() ? "-" : traced->second.c_str());
        out += line;
        out += escape_for_terminal(p.cgroup.substr(0, 60)) + "\n";
    }
    return out;
}

void SystemRun::draw_live()
{
    std::map<int, std::string> heap;
    if (heap_)
        for (const auto& p : heap_->status())
            heap[p["pid"].get<int>()] = p["mode"].get<std::string>();
    std::string frame = format_system_live(table_, elapsed(), 20, heap);
    if (tty_ && live_lines_ > 0)
        std::fprintf(stderr, "\x1b[%dA\x1b[J", live_lines_);
    std::fputs(frame.c_str(), stderr);
    std::fflush(stderr);
    live_lines_ = static_cast<int>(std::count(frame.begin(), frame.end(), '\n'));
}

Report SystemRun::report(bool final)
{
    Report r;
    r.mode_scope = "system";
    r.duration_s = elapsed();
    r.mode = "normal";
    r.mode_source = "-a";
    r.processes = table_.sections();
    r.system = table_.summary();
    r.system.heap_selectors = settings_.heap_selectors;
    r.oom_kills = table_.oom_kills();
    r.dropped.reasons = watch_.drops();
    for (const auto& note : watch_.notes())
        r.warnings.push_back(note);
    rusage now{};
    getrusage(RUSAGE_SELF, &now);
    fill_tracer_cpu(r.tracer, at_start_user_, at_start_sys_, now);
    r.tracer.bpf_map_bytes = watch_.map_bytes();
    watch_.add_program_stats(r.tracer.programs);
    if (heap_) {
        fold_heap_sections(r, heap_->sections(r.duration_s, final));
        r.tracer.attach = heap_->attach_method();
        // Both BPF objects: tier 0's and the heap tracer's.
        r.tracer.bpf_map_bytes += heap_->map_bytes();
        heap_->add_program_stats(r.tracer.programs);
        r.warnings.insert(r.warnings.end(), heap_->warnings().begin(), heap_->warnings().end());
    }
    derive_warnings(r);
    return r;
}

Report SystemRun::run()
{
    list_running();
    sample();
    // Said once every process running is listed: one started from now on is born traced.
    std::fprintf(stderr, "memscope-trace: watching every process (tracepoints, no uprobe)\n");
    const int tick_ms = std::max(1, static_cast<int>(settings_.interval * 1000));
    double next_sample = settings_.interval;
    next_live_ = settings_.live;
    for (;;) {
        pollfd fds[5] = {{sigfd_, POLLIN, 0}, {watch_.events_fd(), POLLIN, 0},
                         {heap_ ? heap_->events_fd() : -1, POLLIN, 0}, {control_.fd(), POLLIN, 0},
                         {exporter_ ? exporter_->wake_fd() : -1, POLLIN, 0}};
        int timeout = std::max(0, static_cast<int>((next_sample - elapsed()) * 1000) + 1);
        timeout = std::min(timeout, tick_ms);
        if (settings_.duration > 0) {
            const double left = settings_.duration - elapsed();
            if (left <= 0)
                break;
            timeout = std::min(timeout, static_cast<int>(left * 1000) + 1);
        }
        if (poll(fds, 5, timeout) < 0 && errno != EINTR)
            break;
        drain();
        if ((fds[0].revents & POLLIN) && on_signals())
            break;
        control_.serve([this](const std::string& line) { return on_control(line); });
        if (elapsed() >= next_sample) {
            sample();
            next_sample = elapsed() + settings_.interval;
        }
        if (settings_.live > 0 && elapsed() >= next_live_) {
            draw_live();
            next_live_ += settings_.live;
        }
        // The processes' figures as of the last sample (an interval old at most).
        if (exporter_ && exporter_->due(elapsed()))
            exporter_->publish(report(false), elapsed());
    }
    end_on_signals_again(sigfd_);
    sample();
    return report(true);
}

} // namespace memscope
