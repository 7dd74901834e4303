// memscope-trace: out-of-process memory tracing of a live process or a command.
#include <CLI/CLI.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "calibrate.hpp"
#include "control.hpp"
#include "safe_files.hpp"
#include "diff.hpp"
#include "family.hpp"
#include "launcher.hpp"
#include "modes.hpp"
#include "proc.hpp"
#include "report_collapsed.hpp"
#include "report_html.hpp"
#include "report_json.hpp"
#include "report_text.hpp"
#include "sites.hpp"
#include "session.hpp"
#include "tracer.hpp"

using namespace memscope;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
    int pid = 0;
    double duration = 0;
    double interval = 0.1; // live figures sampled this often (the timeline, the process peak)
    double live = 0;       // a live per-thread table every N seconds
    std::string json_path;
    std::string html_path;
    std::string collapsed_path;
    std::string weight = "bytes";
    std::uint32_t stack_depth = MS_DEFAULT_STACK_DEPTH;
    bool no_stacks = false;
    bool no_follow = false;
    std::string report_in; // `report IN.json`
    std::string diff_base, diff_new, baseline; // `diff BASE NEW`, `run --baseline BASE`
    DiffOptions gate;
    bool verbose = false;
    std::uint32_t max_allocations = MS_DEFAULT_MAX_ALLOCATIONS;
    std::uint32_t max_threads = MS_DEFAULT_MAX_THREADS;
    std::size_t max_variables = kDefaultMaxVariables;
    int nice = -19;
    bool bench_floor = false, bench_tracker_on_ret = false, bench_pmu_uprobes = false;
    bool bench_no_unwind_tables = false; // the walk by epilogue and frame pointer alone
    std::vector<std::string> alloc_fns;
    std::uint32_t max_stacks = MS_DEFAULT_MAX_STACKS;
    std::string mode; // empty: not given
    bool auto_mode = false;
    double overhead_budget = 5.0;
    int ctl_pid = 0;
    std::vector<std::string> ctl_request;
    std::vector<std::string> command;
};

int fail(const std::string& msg, int code = 1)
{
    std::fprintf(stderr, "memscope-trace: %s\n", msg.c_str());
    return code;
}

// The tracer sleeps until events wait, then must drain them faster than a
// target with hundreds of busy threads makes them: at a fair share of one
// thread among hundreds it falls behind and the event ring overflows. Its
// CPU time stays what the events cost; only its turn comes sooner.
void raise_priority(int nice)
{
    errno = 0;
    if (setpriority(PRIO_PROCESS, 0, nice) != 0 && errno != 0)
        std::fprintf(stderr, "memscope-trace: cannot set priority %d: %s\n", nice, std::strerror(errno));
}

int pidfd_open(int pid)
{
    return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
}

// Blocks the signals the tracer handles and returns a signalfd for them.
int signal_fd()
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

class LiveTable {
public:
    LiveTable() : tty_(isatty(STDERR_FILENO)) {}

    void draw(const Report& snap, double elapsed)
    {
        std::string frame = format_live_table(snap, previous_, elapsed - last_);
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

private:
    bool tty_;
    int lines_ = 0;
    double last_ = 0;
    std::map<std::uint32_t, std::uint64_t> previous_;
};

struct Traced {
    int pid = 0;
    int pidfd = -1;
    std::optional<HeldChild> child; // set for `run`
    Target target;
};

// Probe hits per second and the target's CPU seconds per second, over the
// last half second: what auto mode and `ctl status` go by.
class RateMeter {
public:
    void sample(const Snapshot& snap, int pid, double t)
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
    // True once per new measurement.
    bool take_fresh() { return std::exchange(fresh_, false); }
    double hits_per_s() const { return hits_per_s_; }
    double cpu_per_s() const { return cpu_per_s_; }

private:
    double last_t_ = -1, last_cpu_ = 0, hits_per_s_ = 0, cpu_per_s_ = 0;
    std::uint64_t last_hits_ = 0;
    bool fresh_ = false;
};

std::string json_line(const nlohmann::json& j)
{
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// The folded stacks and the HTML page, from a report's JSON document.
// `wait_ms`: how long a FIFO or device may keep us waiting (-1: as long as
// it takes, once tracing is over and the ending signals work again).
std::string write_renderings(const nlohmann::json& doc, const Options& opt, int wait_ms = -1)
{
    if (!opt.collapsed_path.empty()) {
        std::string err = write_output(
            opt.collapsed_path, [&](std::FILE* f) { return write_collapsed(doc, opt.weight, f); }, wait_ms);
        if (!err.empty())
            return err;
    }
    if (!opt.html_path.empty())
        return write_output(opt.html_path, render_html(doc), wait_ms);
    return {};
}

// The text report to stderr, then every file asked for. Returns an error
// sentence, empty on success.
std::string write_outputs(const Report& report, const Options& opt, int wait_ms = -1)
{
    std::fputs(format_report(report).c_str(), stderr);
    if (!opt.json_path.empty()) {
        std::string err = write_output(
            opt.json_path, [&](std::FILE* f) { return write_report_json(report, f); }, wait_ms);
        if (!err.empty())
            return err;
    }
    if (opt.collapsed_path.empty() && opt.html_path.empty())
        return {};
    return write_renderings(report_summary_json(report), opt, wait_ms);
}

// Set by the first SIGINT, SIGTERM or SIGHUP once tracing is over.
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

// Tracing is over: SIGINT, SIGTERM and SIGHUP end the tracer again,
// whatever it is doing. The first one stops every wait on an output (a
// FIFO nobody reads) and the tracer ends with what it has written, 128 +
// the signal; a second ends it at once. Those already queued were for the
// trace, which has stopped; one ignored when we were started stays ignored.
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

// Trace until the target exits, a signal, or --duration; returns the final report.
// Measured before the target runs (auto mode), so that stepping starts at once.
struct Calibration {
    bool done = false;
    double costs[3] = {0, 0, 0};
};

Calibration calibrate_for_auto(Tracer& tracer, const Session& session, const Options& opt)
{
    Calibration c;
    if (!opt.auto_mode)
        return c;
    (void)session;
    std::string err = calibrate_hit_costs(tracer, c.costs);
    if (!err.empty())
        std::fprintf(stderr, "memscope-trace: %s; auto mode disabled: no measured cost per hit\n",
                     escape_for_terminal(err).c_str());
    c.done = err.empty();
    return c;
}

Report trace_loop(Tracer& tracer, Session& session, Traced& traced, const Options& opt, int sigfd,
                  int& status_out, const Calibration& calibration, Family* family = nullptr)
{
    const auto start = Clock::now();
    rusage at_start{}; // what starting cost the tracer: BPF load and verification, ELF scans, symbols
    getrusage(RUSAGE_SELF, &at_start);
    const int sample_ms = std::max(1, static_cast<int>(opt.interval * 1000));
    std::uint64_t sampled_peak = 0;
    std::uint64_t command_peak = 0; // every followed process's live bytes together, sampled
    TimelineRecorder timeline(opt.interval);
    // The timeline covers every followed process: their threads side by side.
    auto sample_timeline = [&](const Snapshot& root) {
        const double now = std::chrono::duration<double>(Clock::now() - start).count();
        if (!family) {
            timeline.sample(now, root.threads);
            return;
        }
        std::vector<ThreadStats> threads = root.threads;
        std::uint64_t live = root.live_bytes_sum;
        family->add_live_threads(threads, live);
        command_peak = std::max(command_peak, live);
        timeline.sample(now, threads);
    };
    std::optional<LiveTable> table;
    if (opt.live > 0)
        table.emplace();
    double next_table = opt.live;
    bool target_gone = false;
    RateMeter rates;
    std::optional<AutoPolicy> autopilot;
    double costs[3] = {calibration.costs[0], calibration.costs[1], calibration.costs[2]};
    bool calibrated = calibration.done;
    auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
    auto calibrate = [&] {
        if (!calibrated)
            calibrated = calibrate_hit_costs(tracer, costs).empty();
        return calibrated;
    };
    if (opt.auto_mode && calibrated)
        autopilot.emplace(opt.overhead_budget, costs);

    ControlServer control;
    if (auto err = control.listen(control_socket_path(getpid())); !err.empty())
        std::fprintf(stderr, "memscope-trace: %s (live control disabled)\n", escape_for_terminal(err).c_str());

    auto snapshot_report = [&](bool final) {
        Snapshot snap = tracer.snapshot(traced.pid);
        Report r = make_report(snap, traced.target, elapsed(), std::max(sampled_peak, snap.live_bytes_sum));
        session.describe_modes(r);
        session.add_sites(r);
        r.timeline = timeline.timeline();
        add_tracked(r, session.tracked(snap, final));
        if (family)
            merge_processes(r, family->snapshot_sections(), std::max(sampled_peak, command_peak));
        r.alloc_functions = opt.alloc_fns;
        return r;
    };
    auto control_reply = [&](const std::string& line) -> std::string {
        nlohmann::json reply;
        if (line.rfind("mode ", 0) == 0) {
            auto m = parse_mode(line.substr(5));
            if (!m)
                return json_line({{"error", "unknown mode: use normal, fast, async or off"}});
            std::string err = session.switch_mode(*m, "ctl", elapsed());
            if (!err.empty())
                return json_line({{"error", err}});
            return json_line({{"ok", true}, {"mode", mode_name(session.mode())}});
        }
        if (line == "status") {
            calibrate(); // once, in a helper of its own: the target's mode is untouched
            reply["mode"] = mode_name(session.mode());
            reply["mode_source"] = session.mode_source();
            reply["probes_attached"] = tracer.probes_attached();
            reply["event_rate"] = rates.hits_per_s();
            reply["target_cpu"] = rates.cpu_per_s();
            if (calibrated) {
                AutoPolicy estimate(opt.overhead_budget, costs);
                reply["estimated_overhead_pct"] =
                    session.mode() == Mode::off ? 0.0
                                                : estimate.estimate_pct(session.mode(), rates.hits_per_s(), rates.cpu_per_s());
                reply["cost_per_hit_ns"] = {{"normal", costs[0]}, {"fast", costs[1]}, {"async", costs[2]}};
            } else {
                reply["estimated_overhead_pct"] = nullptr;
            }
            reply["auto"] = autopilot.has_value();
            reply["mode_changes"] = session.mode_changes().size();
            return json_line(reply);
        }
        return json_line({{"error", "unknown request: use `mode NAME` or `status`"}});
    };

    for (;;) {
        pollfd fds[4] = {{sigfd, POLLIN, 0},
                         {traced.pidfd, POLLIN, 0},
                         {tracer.events_fd(), POLLIN, 0},
                         {control.fd(), POLLIN, 0}};
        int timeout = sample_ms;
        if (opt.duration > 0) {
            double left = opt.duration - elapsed();
            if (left <= 0)
                break;
            timeout = std::min(timeout, static_cast<int>(left * 1000) + 1);
        }
        int n = poll(fds, control.fd() >= 0 ? 4 : 3, timeout);
        if (n < 0 && errno != EINTR)
            break;
        if (family)
            family->drain(elapsed());
        else
            session.drain(elapsed());
        if (fds[0].revents & POLLIN) {
            signalfd_siginfo si{};
            bool stop = false;
            while (read(sigfd, &si, sizeof si) == sizeof si) {
                if (si.ssi_signo == SIGCHLD) {
                    if (family && family->reap(elapsed()))
                        stop = target_gone = true;
                } else if (si.ssi_signo == SIGUSR1) {
                    // A snapshot, and tracing goes on: a FIFO nobody reads
                    // holds it back a second at most.
                    if (auto err = write_outputs(snapshot_report(false), opt, 1000); !err.empty())
                        std::fprintf(stderr, "memscope-trace: %s\n", escape_for_terminal(err).c_str());
                } else if (traced.child) {
                    // `run`: the command decides when it ends. A terminal's
                    // Ctrl-C already reached it; a kill(1) aimed at us is passed on.
                    if (si.ssi_code == SI_USER || si.ssi_code == SI_QUEUE)
                        kill(traced.pid, static_cast<int>(si.ssi_signo));
                } else {
                    stop = true;
                }
            }
            if (stop)
                break;
        }
        if (fds[1].revents & POLLIN) {
            target_gone = true;
            break;
        }
        control.serve(control_reply); // never waits: a client gets its turn when it is ready
        Snapshot snap = tracer.snapshot(traced.pid);
        sampled_peak = std::max(sampled_peak, snap.live_bytes_sum);
        if (timeline.due(elapsed()))
            sample_timeline(snap);
        rates.sample(snap, traced.pid, elapsed());
        if (autopilot && rates.take_fresh()) {
            if (auto step = autopilot->decide(session.mode(), rates.hits_per_s(), rates.cpu_per_s())) {
                std::string err = session.switch_mode(step->first, step->second, elapsed());
                std::fprintf(stderr, "memscope-trace: mode %s (%s)\n", mode_name(session.mode()),
                             err.empty() ? step->second.c_str() : err.c_str());
            }
        }
        if (table && elapsed() >= next_table) {
            Report r = make_report(snap, traced.target, elapsed(), sampled_peak);
            table->draw(r, elapsed());
            next_table += opt.live;
        }
    }

    end_on_signals_again(sigfd);
    if (family && target_gone) {
        // The root is gone: its exit status comes with the other processes' stops.
        while (!family->reap(elapsed()))
            usleep(1000);
        status_out = shell_status(family->root_status());
        traced.target.exit_code = status_out;
    } else if (traced.child && target_gone) {
        int ws = 0;
        while (waitpid(traced.pid, &ws, 0) < 0 && errno == EINTR) {
        }
        status_out = shell_status(ws);
        traced.target.exit_code = status_out;
    }
    if (family)
        family->drain(elapsed());
    else
        session.drain(elapsed());
    Snapshot snap = tracer.snapshot(traced.pid);
    rusage at_end{}; // tracing done: what follows is the report's (symbols, merging)
    getrusage(RUSAGE_SELF, &at_end);
    if (traced.child && snap.children.execs > 0)
        --snap.children.execs; // the first exec is the command itself
    if (!traced.child && snap.exited)
        traced.target.exit_code = shell_status(snap.wait_status);
    sampled_peak = std::max(sampled_peak, snap.live_bytes_sum);
    for (const auto& t : snap.threads)
        if (static_cast<int>(t.tid) == traced.pid && !t.name.empty())
            traced.target.comm = t.name;
    if (family && !family->root_exe().empty())
        traced.target.exe = family->root_exe(); // what it ran last
    if (traced.target.comm.empty())
        traced.target.comm = read_first_line("/proc/" + std::to_string(traced.pid) + "/comm").value_or("");
    Report report = make_report(snap, traced.target, elapsed(), sampled_peak);
    session.describe_modes(report);
    if (timeline.due(elapsed()))
        sample_timeline(snap);
    report.timeline = timeline.timeline();
    session.add_sites(report);
    add_tracked(report, session.tracked(snap, true));
    if (family)
        merge_processes(report, family->sections(), std::max(sampled_peak, command_peak));
    // The whole run's cost: the report so far included (symbols, merging;
    // not the writing of its files).
    rusage self{};
    getrusage(RUSAGE_SELF, &self);
    auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
    report.tracer.cpu_user_s = seconds(self.ru_utime);
    report.tracer.cpu_sys_s = seconds(self.ru_stime);
    report.tracer.startup_cpu_user_s = seconds(at_start.ru_utime);
    report.tracer.startup_cpu_sys_s = seconds(at_start.ru_stime);
    report.tracer.tracing_cpu_user_s = seconds(at_end.ru_utime) - report.tracer.startup_cpu_user_s;
    report.tracer.tracing_cpu_sys_s = seconds(at_end.ru_stime) - report.tracer.startup_cpu_sys_s;
    report.tracer.max_rss_kb = static_cast<std::uint64_t>(self.ru_maxrss);
    report.tracer.bpf_map_bytes = tracer.map_bytes();
    report.tracer.programs = tracer.program_stats();
    report.alloc_functions = opt.alloc_fns;
    const UnwindStats& u = tracer.unwind_stats();
    report.stacks.unwind = {u.files, u.rows, u.rows * sizeof(ms_unwind_row), u.eh_frame_bytes, u.build_ms, u.skipped, u.shared_files};
    return report;
}

// The mode tracing starts in: an explicit --mode, else what the target's
// environment asks for, else normal.
std::string choose_start_mode(Session& session, const Options& opt, const std::string& environ_blob)
{
    if (opt.auto_mode)
        return session.start_mode(Mode::normal, "--mode auto", true);
    if (!opt.mode.empty())
        return session.start_mode(*parse_mode(opt.mode), "--mode", true);
    if (auto e = mode_from_environment(environ_blob))
        return session.start_mode(e->mode, e->source, false);
    return session.start_mode(Mode::normal, "default", false);
}

std::string own_environment()
{
    std::string blob;
    for (char** e = environ; *e; ++e) {
        blob += *e;
        blob += '\0';
    }
    return blob;
}

void print_sites(const Tracer& tracer, const Session& session)
{
    for (const auto& n : session.notes())
        std::fprintf(stderr, "memscope-trace: %s\n", escape_for_terminal(n).c_str());
    for (const auto& s : tracer.sites())
        std::fprintf(stderr, "memscope-trace: probe %s%s at %s+0x%llx: %s+%llu, %s (%s), %s\n",
                     s.symbol.c_str(), s.return_probe ? " (return)" : "", escape_for_terminal(s.path).c_str(),
                     static_cast<unsigned long long>(s.file_offset), s.symbol.c_str(),
                     static_cast<unsigned long long>(s.site_offset), s.instruction.c_str(), s.cost.c_str(),
                     s.reason.c_str());
}

int finish(const Report& report, const Options& opt)
{
    std::string err = write_outputs(report, opt);
    if (g_ending_signal)
        return 128 + g_ending_signal; // asked to end: what was written stays
    if (!err.empty())
        return fail(err);
    return 0;
}

// `report IN.json --html OUT.html`: render a report written earlier.
int run_report(const Options& opt)
{
    if (opt.html_path.empty() && opt.collapsed_path.empty())
        return fail("report needs something to write: --html FILE and/or --collapsed FILE", 2);
    nlohmann::json doc;
    if (std::string err = read_report_json(opt.report_in, doc); !err.empty())
        return fail(escape_for_terminal(err), 2);
    try {
        if (std::string err = write_renderings(doc, opt); !err.empty())
            return fail(escape_for_terminal(err));
    } catch (const nlohmann::json::exception& e) {
        return fail(escape_for_terminal(opt.report_in) + ": unexpected content (" + e.what() + ")", 2);
    }
    return 0;
}

TracerOptions tracer_options(const Options& opt)
{
    TracerOptions t;
    t.max_threads = opt.max_threads;
    t.max_allocations = opt.max_allocations;
    t.empty_programs = opt.bench_floor;
    t.shared_sites = !opt.bench_pmu_uprobes;
    t.tracker_site_on_ret = opt.bench_tracker_on_ret;
    t.stack_depth = opt.no_stacks ? 0 : opt.stack_depth;
    t.unwind_tables = !opt.bench_no_unwind_tables;
    t.max_stacks = opt.max_stacks;
    return t;
}

int run_attach(const Options& opt)
{
    if (opt.pid <= 0)
        return fail("invalid pid " + std::to_string(opt.pid));
    if (auto e = check_privileges(); !e.empty())
        return fail(e);
    if (auto e = check_kernel_features(); !e.empty())
        return fail(e);
    Traced traced;
    traced.pid = opt.pid;
    traced.pidfd = pidfd_open(opt.pid);
    if (traced.pidfd < 0)
        return fail("no such process: " + std::to_string(opt.pid));
    if (opt.pid == getpid())
        return fail("memscope-trace cannot trace itself");

    int sigfd = signal_fd(); // before anything slow: a signal meanwhile is queued, not fatal
    std::string err;
    auto tracer = Tracer::open(tracer_options(opt), err);
    if (!tracer)
        return fail(err);
    if (!tracer->add_target(opt.pid, err))
        return fail(err);

    std::vector<std::string> objects;
    for (const auto& path : executable_mappings(opt.pid))
        objects.push_back(path_in_process(opt.pid, path));
    if (objects.empty())
        return fail("cannot read the mappings of process " + std::to_string(opt.pid) +
                    " (it exited, or is a kernel thread)");
    int probed = 0;
    Session session(*tracer, opt.pid, opt.max_variables);
    tracer->set_event_handler([&](const DecodedEvent& ev) { session.on_event(ev); });
    // Costs are measured before the target's probes exist: calibration
    // switches the BPF side's mode, which must not touch the target.
    Calibration calibration = calibrate_for_auto(*tracer, session, opt);
    if (auto e = session.attach(opt.pid, objects, probed); !e.empty())
        return fail(e);
    if (auto e = choose_start_mode(session, opt, process_environ(opt.pid)); !e.empty())
        return fail(e);
    pollfd pfd{traced.pidfd, POLLIN, 0};
    if (poll(&pfd, 1, 0) > 0)
        return fail("process " + std::to_string(opt.pid) + " exited while attaching");
    if (opt.verbose)
        print_sites(*tracer, session);
    traced.target.pid = opt.pid;
    traced.target.exe = process_exe(opt.pid);
    std::fprintf(stderr,
                 "memscope-trace: attached to pid %d (%d allocator functions, %zu modules with tracker entry "
                 "points), mode %s (%s)\n",
                 opt.pid, probed, session.tracker_modules(), mode_name(session.mode()),
                 escape_for_terminal(session.mode_source()).c_str());

    raise_priority(opt.nice);
    int unused = 0;
    Report report = trace_loop(*tracer, session, traced, opt, sigfd, unused, calibration);
    return finish(report, opt);
}

int run_command(const Options& opt)
{
    if (opt.command.empty())
        return fail("run needs a command: memscope-trace run -- CMD [ARGS...]", 2);
    // The gate's input is checked before the command runs, not after.
    nlohmann::json baseline;
    if (!opt.baseline.empty()) {
        if (auto e = check_diff_options(opt.gate); !e.empty())
            return fail(e, 2);
        if (auto e = read_report_json(opt.baseline, baseline); !e.empty())
            return fail(escape_for_terminal(e), 2);
    } else if (!opt.gate.max_increase.empty() || opt.gate.fail_on_new_leaks) {
        return fail("--max-increase and --fail-on-new-leaks need --baseline FILE", 2);
    }
    std::string exe = resolve_command(opt.command[0]);
    if (exe.empty())
        return fail("command not found: " + escape_for_terminal(opt.command[0]), 127);
    char real[PATH_MAX];
    if (realpath(exe.c_str(), real))
        exe = real; // probes and the report name the file, not the spelling
    if (auto e = check_privileges(); !e.empty())
        return fail(e);
    if (auto e = check_kernel_features(); !e.empty())
        return fail(e);
    std::string err;
    std::vector<std::string> objects = command_objects(exe, err);
    if (objects.empty())
        return fail("cannot run " + escape_for_terminal(exe) + ": " + err, 126);

    auto tracer = Tracer::open(tracer_options(opt), err);
    if (!tracer)
        return fail(err);

    int sigfd = signal_fd(); // blocked before fork; the child unblocks
    Traced traced;
    traced.child.emplace(exe, opt.command);
    if (traced.child->pid() < 0)
        return fail(traced.child->error());
    traced.pid = traced.child->pid();
    traced.pidfd = pidfd_open(traced.pid);
    int probed = 0;
    if (!tracer->add_target(traced.pid, err)) {
        traced.child->abandon();
        return fail(err);
    }
    Session session(*tracer, traced.pid, opt.max_variables);
    const auto started = Clock::now();
    std::optional<Family> family;
    if (!opt.no_follow)
        family.emplace(*tracer, session, opt.max_variables, [&](Session& s, const Target& t, bool final) {
            Snapshot snap = tracer->snapshot(s.pid());
            Report r = make_report(snap, t, std::chrono::duration<double>(Clock::now() - started).count(),
                                   snap.live_bytes_sum);
            s.describe_modes(r);
            s.add_sites(r);
            add_tracked(r, s.tracked(snap, final));
            return r;
        });
    tracer->set_event_handler([&](const DecodedEvent& ev) {
        if (family)
            family->on_event(ev);
        else
            session.on_event(ev);
    });
    if (auto e = session.attach(traced.pid, objects, probed); !e.empty()) {
        traced.child->abandon();
        return fail(e);
    }
    if (family) {
        // Before it execs: every process it starts is then seen from its first instruction.
        if (auto e = family->seize(traced.pid, exe); !e.empty()) {
            std::fprintf(stderr, "memscope-trace: %s; tracing the command alone\n", e.c_str());
            family.reset();
        }
    }
    if (auto e = choose_start_mode(session, opt, own_environment()); !e.empty()) {
        traced.child->abandon();
        return fail(e);
    }
    if (opt.verbose)
        print_sites(*tracer, session);
    Calibration calibration = calibrate_for_auto(*tracer, session, opt);
    raise_priority(opt.nice); // the child, already forked, keeps its own
    if (auto e = traced.child->release(); !e.empty()) {
        waitpid(traced.pid, nullptr, 0);
        return fail(escape_for_terminal(exe) + ": " + e, 126);
    }
    traced.target.pid = traced.pid;
    traced.target.exe = exe;

    int status = 0;
    Report report = trace_loop(*tracer, session, traced, opt, sigfd, status, calibration,
                               family ? &*family : nullptr);
    if (family && opt.verbose)
        for (const auto& n : family->notes())
            std::fprintf(stderr, "memscope-trace: %s\n", escape_for_terminal(n).c_str());
    if (int rc = finish(report, opt); rc != 0)
        return rc;
    if (!opt.baseline.empty()) {
        std::fflush(stdout);
        int gate = diff_reports(baseline, report_summary_json(report), opt.gate, stdout, stderr,
                                opt.baseline, "(this run)");
        return status != 0 ? status : gate; // a failing command fails the gate its own way
    }
    return status;
}

int run_diff(const Options& opt)
{
    if (auto err = check_diff_options(opt.gate); !err.empty())
        return fail(err, 2);
    return diff_files(opt.diff_base, opt.diff_new, opt.gate, stdout, stderr);
}

int run_ctl(const Options& opt)
{
    if (opt.ctl_request.empty())
        return fail("ctl needs a request: `mode normal|fast|async|off` or `status`", 2);
    std::string request;
    for (const auto& w : opt.ctl_request)
        request += (request.empty() ? "" : " ") + w;
    if (opt.ctl_request[0] == "mode" && (opt.ctl_request.size() != 2 || !parse_mode(opt.ctl_request[1])))
        return fail("ctl mode takes one of normal, fast, async, off", 2);
    if (opt.ctl_request[0] != "mode" && !(opt.ctl_request[0] == "status" && opt.ctl_request.size() == 1))
        return fail("unknown ctl request: use `mode NAME` or `status`", 2);
    std::string reply;
    if (auto err = control_request(control_socket_path(opt.ctl_pid), request, reply); !err.empty())
        return fail(err);
    std::printf("%s\n", reply.c_str());
    auto j = nlohmann::json::parse(reply, nullptr, false);
    return j.is_object() && !j.contains("error") ? 0 : 1;
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"memscope-trace: trace a process's heap from outside it, with uprobes and BPF"};
    app.set_version_flag("--version", std::string(kToolVersion));
    Options opt;
    auto add_renderings = [&](CLI::App* a) {
        a->add_option("--html", opt.html_path, "write a self-contained HTML report to FILE");
        a->add_option("--collapsed", opt.collapsed_path,
                      "write the allocation sites as folded stacks (flamegraph.pl, inferno, speedscope) to FILE");
        a->add_option("--weight", opt.weight, "what the folded stacks weigh: bytes, count, live_bytes, live_count")
            ->check(CLI::IsMember({"bytes", "count", "live_bytes", "live_count"}));
    };
    auto add_common = [&](CLI::App* a) {
        a->add_option("--interval", opt.interval,
                      "sample live bytes (process and per thread) every N seconds (default 0.1)")
            ->check(CLI::Range(0.001, 3600.0));
        a->add_option("--live", opt.live, "print a live per-thread table to stderr every N seconds")
            ->check(CLI::PositiveNumber);
        a->add_option("--json", opt.json_path, "write the final report as JSON to FILE");
        add_renderings(a);
        a->add_option("--stack-depth", opt.stack_depth,
                      "frames kept per allocation stack in normal mode (default 64)")
            ->check(CLI::Range(1u, static_cast<unsigned>(MS_MAX_STACK_DEPTH)));
        a->add_flag("--no-stacks", opt.no_stacks, "record no stacks (no sites, no leak report by stack)");
        a->add_option("--max-stacks", opt.max_stacks,
                      "distinct stacks (and allocation sites) the tables hold (default 65536); allocations past "
                      "them count on a '(stack table full)' site")
            ->check(CLI::Range(16u, 1u << 24));
        a->add_option("--alloc-fn", opt.alloc_fns,
                      "a function of yours that allocates for its callers: sites are named after its caller "
                      "(repeatable; operator new and the C++ standard library are skipped already)");
        a->add_flag("-v,--verbose", opt.verbose, "show each probe site attached");
        a->add_option("--max-allocations", opt.max_allocations,
                      "capacity of the outstanding-allocation table (kernel memory, preallocated)")
            ->check(CLI::Range(1024u, 1u << 26));
        a->add_option("--max-threads", opt.max_threads, "capacity of the per-thread tables")
            ->check(CLI::Range(16u, 1u << 20));
        a->add_option("--max-variables", opt.max_variables,
                      "tracked variables kept for the report (about 72 bytes each); more are counted as dropped")
            ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30));
        a->add_option("--mode", opt.mode,
                      "normal, fast, async, off, or auto (steps between normal, fast and async to stay under "
                      "--overhead-budget); default: what the target's environment asks, else normal")
            ->check(CLI::IsMember({"normal", "fast", "async", "off", "auto"}));
        a->add_option("--overhead-budget", opt.overhead_budget,
                      "auto mode: the estimated overhead to stay under, percent of the target's CPU time")
            ->check(CLI::Range(0.001, 1000.0));
        // For tools/bench only: the floor (empty programs on the same sites)
        // and the tracker probed on a site the kernel cannot rewrite.
        a->add_flag("--bench-floor", opt.bench_floor)->group("");
        a->add_flag("--bench-tracker-on-ret", opt.bench_tracker_on_ret)->group("");
        a->add_flag("--bench-pmu-uprobes", opt.bench_pmu_uprobes)->group("");
        a->add_flag("--bench-no-unwind-tables", opt.bench_no_unwind_tables)->group("");
        a->add_option("--nice", opt.nice,
                      "the tracer's own nice value (default -19: it must drain events as fast as the "
                      "target's threads make them)")
            ->check(CLI::Range(-20, 19));
    };
    const CLI::Validator pid_number(
        [](std::string& s) -> std::string {
            const bool digits = !s.empty() && s.size() <= 9 && s.find_first_not_of("0123456789") == std::string::npos;
            return digits && std::stol(s) > 0 ? "" : "a process id is a number from 1 up";
        },
        "PID");
    app.add_option("-p,--pid", opt.pid, "attach to a running process")->check(pid_number);
    app.add_option("--duration", opt.duration, "stop after SECONDS")->check(CLI::PositiveNumber);
    add_common(&app);

    CLI::App* run = app.add_subcommand("run", "start a command traced from its first instruction");
    add_common(run);
    run->add_flag("--no-follow", opt.no_follow,
                  "trace the command's own process only, not the processes it starts");
    run->add_option("command", opt.command, "CMD [ARGS...] (after --)")->required();

    auto add_gate = [&](CLI::App* a) {
        a->add_option("--max-increase", opt.gate.max_increase,
                      "METRIC=PCT% or METRIC=ABS (bytes take KiB/MiB/GiB): fail (exit 1) past it; repeatable")
            ->expected(1)
            ->allow_extra_args(false)
            ->take_all();
        a->add_flag("--fail-on-new-leaks", opt.gate.fail_on_new_leaks,
                    "fail when a stack leaks that did not in the baseline");
        a->add_option("--format", opt.gate.format, "the comparison as text, markdown, json or junit")
            ->check(CLI::IsMember({"text", "markdown", "json", "junit"}));
    };
    add_gate(run);
    run->add_option("--baseline", opt.baseline,
                    "after the command, compare its report with this one (see diff); exit 1 on a regression");

    CLI::App* diff = app.add_subcommand(
        "diff", "compare two JSON reports: 0 within the thresholds, 1 a regression, 2 bad input");
    diff->add_option("base", opt.diff_base, "the baseline report")->required();
    diff->add_option("new", opt.diff_new, "the report to check")->required();
    add_gate(diff);

    CLI::App* report = app.add_subcommand("report", "render a JSON report written earlier: --html, --collapsed");
    report->add_option("input", opt.report_in, "the JSON report (memscope-trace --json)")->required();
    add_renderings(report);

    CLI::App* ctl = app.add_subcommand("ctl", "talk to a running memscope-trace: `mode NAME` or `status`");
    ctl->add_option("--pid", opt.ctl_pid, "the tracer's pid (not the target's)")->required()->check(pid_number);
    ctl->add_option("request", opt.ctl_request, "mode normal|fast|async|off, or status")->required();

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0)
            return app.exit(e);
        std::fprintf(stderr, "memscope-trace: %s (see --help)\n", e.what());
        return 2;
    }
    // Fail before tracing, not after, when an output could not be written.
    for (const std::string* path : {&opt.json_path, &opt.html_path, &opt.collapsed_path})
        if (!path->empty())
            if (std::string err = check_output(*path); !err.empty())
                return fail(escape_for_terminal(err), 2);
    opt.auto_mode = opt.mode == "auto";
    if (ctl->parsed())
        return run_ctl(opt);
    if (report->parsed())
        return run_report(opt);
    if (diff->parsed())
        return run_diff(opt);
    if (run->parsed()) {
        if (opt.pid)
            return fail("-p and run are exclusive", 2);
        return run_command(opt);
    }
    if (!opt.pid)
        return fail("nothing to trace: use -p PID or run -- CMD (see --help)", 2);
    return run_attach(opt);
}
