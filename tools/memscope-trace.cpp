// memscope-trace: out-of-process memory tracing of a live process or a command.
#include <CLI/CLI.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_doc.hpp"
#include "control.hpp"
#include "safe_files.hpp"
#include "diff.hpp"
#include "exporter.hpp"
#include "paths.hpp"
#include "pprof.hpp"
#include "system_procs.hpp"
#include "family.hpp"
#include "launcher.hpp"
#include "modes.hpp"
#include "proc.hpp"
#include "report_collapsed.hpp"
#include "report_html.hpp"
#include "report_json.hpp"
#include "report_text.hpp"
#include "session.hpp"
#include "signals.hpp"
#include "system_run.hpp"
#include "trace_run.hpp"
#include "tracer.hpp"
#include "uprobe_multi.hpp"
#include "version.hpp"

using namespace memscope;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
    int pid = 0;
    bool all = false;                      // -a: every process
    std::vector<std::string> heap;         // -a --heap SELECTOR
    std::size_t heap_top = 0;              // -a --heap-top N
    std::size_t max_exited = 20000;        // -a: exited processes listed one by one
    double duration = 0;
    double interval = 0.1; // live figures sampled this often (the timeline, the process peak)
    double min_age = -1;   // --min-age; unset: 1 s for a process that runs on (-p, -a), 0 for run
    double live = 0;       // a live per-thread table every N seconds
    std::string json_path;
    std::string html_path;
    std::string collapsed_path;
    std::string pprof_path;
    std::string listen, push_url;      // live export
    double push_interval = 10;
    std::string service_name;
    std::vector<std::string> push_labels; // K=V
    std::string weight = "bytes";
    std::string threads = "grouped"; // the text report's thread table: grouped by name, or all
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
    std::string attach = "auto";
    bool bench_no_unwind_tables = false; // the walk by epilogue and frame pointer alone
    std::vector<std::string> alloc_fns;
    std::uint32_t max_stacks = MS_DEFAULT_MAX_STACKS;
    std::string mode; // empty: not given
    bool auto_mode = false;
    double overhead_budget = 5.0;
    bool budget_given = false; // -a: a budget per heap-traced process only when asked
    int ctl_pid = 0;
    std::vector<std::string> ctl_request;
    std::vector<std::string> command;
    std::vector<std::string> argv; // the tracer's own, for the report
    ExportSettings exporting;      // --listen, --push as parsed (checked before tracing)
};

// The report says how it was made: the command line and the files written
// (absolute paths: it may be read from elsewhere).
void stamp(Report& r, const Options& opt)
{
    r.invocation.argv = opt.argv;
    char cwd[PATH_MAX];
    const std::string here = getcwd(cwd, sizeof cwd) ? std::string(cwd) + "/" : std::string();
    for (auto [kind, path] : {std::pair{"json", &opt.json_path}, {"html", &opt.html_path},
                              {"collapsed", &opt.collapsed_path}, {"pprof", &opt.pprof_path}})
        if (!path->empty())
            r.invocation.outputs[kind] = path->front() == '/' ? *path : here + *path;
}

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

// --listen, --push: checked before tracing (a malformed one is exit 2);
// what cannot be reached while tracing is said once, and tracing goes on.
std::optional<ExportSettings> export_settings(const Options& opt, std::string& why)
{
    ExportSettings s;
    if (!opt.listen.empty())
        if (!(s.listen = parse_listen_address(opt.listen, why)))
            return std::nullopt;
    if (!opt.push_url.empty())
        if (!(s.push = parse_push_url(opt.push_url, why)))
            return std::nullopt;
    s.push_interval = opt.push_interval;
    s.service_name = opt.service_name;
    for (const auto& kv : opt.push_labels) {
        auto eq = kv.find('=');
        const std::string k = kv.substr(0, eq);
        const bool name_ok = !k.empty() && !std::isdigit(static_cast<unsigned char>(k[0])) &&
                             k.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") ==
                                 std::string::npos;
        const std::string v = eq == std::string::npos ? "" : kv.substr(eq + 1);
        if (eq == std::string::npos || !name_ok || v.empty() || v.find_first_of(",{}=\"") != std::string::npos) {
            why = "--push-label " + kv + ": expected NAME=VALUE (a name of letters, digits and _; a value "
                  "without , { } = or quotes)";
            return std::nullopt;
        }
        s.labels.emplace_back(k, v);
    }
    return s;
}

// The live exporter when --listen or --push asks for one; its troubles said
// once on stderr. `cgroup_of_target`: -p and run, whose report does not
// name the target's cgroup (-a's sections do).
std::unique_ptr<Exporter> start_exporter(ExportSettings settings, bool cgroup_of_target)
{
    if (!settings.listen && !settings.push)
        return nullptr;
    if (cgroup_of_target)
        settings.cgroup_of = [cgroups = std::make_shared<CgroupNames>()](int pid) { return cgroups->path_of(0, pid); };
    auto e = std::make_unique<Exporter>(std::move(settings), [](const std::string& line) {
        std::fprintf(stderr, "memscope-trace: %s\n", escape_for_terminal(line).c_str());
    });
    if (e->listening())
        std::fprintf(stderr, "memscope-trace: serving /metrics, /debug/pprof/heap and /healthz on port %d\n",
                     e->port());
    return e;
}

// What the exporter did, in the report's tracer section.
void add_export_figures(Report& report, const Exporter* exporter)
{
    if (!exporter)
        return;
    const TracerFigures f = exporter->figures();
    report.tracer.exported = {{"scrapes", f.scrapes},
                              {"pushes", f.pushes},
                              {"push_failures", f.push_failures},
                              {"push_dropped", f.push_dropped}};
}

// The folded stacks and the HTML page, drawn from the report model.
// `wait_ms`: how long a FIFO or device may keep us waiting (-1: as long as
// it takes, once tracing is over and the ending signals work again).
std::string write_renderings(const Report& report, const Options& opt, int wait_ms = -1)
{
    if (!opt.collapsed_path.empty()) {
        std::string err = write_output(
            opt.collapsed_path, [&](std::FILE* f) { return write_collapsed(report, opt.weight, f); }, wait_ms);
        if (!err.empty())
            return err;
    }
    if (!opt.pprof_path.empty()) {
        const std::string profile = heap_profile(report, times_of(report));
        if (profile.empty())
            return "cannot encode the pprof profile";
        if (std::string err = write_output(opt.pprof_path, profile, wait_ms); !err.empty())
            return err;
    }
    if (!opt.html_path.empty())
        return write_output(opt.html_path, render_html(report_summary_json(report)), wait_ms);
    return {};
}

// The text report to stderr, then every file asked for. Returns an error
// sentence, empty on success.
std::string write_outputs(const Report& report, const Options& opt, int wait_ms = -1)
{
    std::fputs(format_report(report, opt.threads == "all").c_str(), stderr);
    if (!opt.json_path.empty()) {
        std::string err = write_output(
            opt.json_path, [&](std::FILE* f) { return write_report_json(report, f); }, wait_ms);
        if (!err.empty())
            return err;
    }
    return write_renderings(report, opt, wait_ms);
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
    for (const auto& s : tracer.probe_sites())
        std::fprintf(stderr, "memscope-trace: probe %s%s at %s+0x%llx: %s+%llu, %s (%s), %s\n",
                     s.symbol.c_str(), s.return_probe ? " (return)" : "", escape_for_terminal(s.path).c_str(),
                     static_cast<unsigned long long>(s.file_offset), s.symbol.c_str(),
                     static_cast<unsigned long long>(s.site_offset), s.instruction.c_str(), s.cost.c_str(),
                     s.reason.c_str());
}

int finish(const Report& report, const Options& opt)
{
    std::string err = write_outputs(report, opt);
    if (int sig = ending_signal())
        return 128 + sig; // asked to end: what was written stays
    if (!err.empty())
        return fail(err);
    return 0;
}

// `report IN.json [--html OUT.html] [--collapsed OUT.folded]`: render a
// report written earlier; the text report when nothing else is asked for.
int run_report(const Options& opt)
{
    Report report;
    const bool text = opt.html_path.empty() && opt.collapsed_path.empty() && opt.pprof_path.empty();
    // Everything: the text report lists the variables, the page draws the timeline.
    if (std::string err = read_report_json(opt.report_in, report); !err.empty())
        return fail(escape_for_terminal(err), 2);
    if (text) {
        std::fputs(format_report(report, opt.threads == "all").c_str(), stdout);
        return std::fflush(stdout) == 0 ? 0 : fail(std::string("cannot write the report: ") + std::strerror(errno));
    }
    if (std::string err = write_renderings(report, opt); !err.empty())
        return fail(escape_for_terminal(err));
    return 0;
}

TracerOptions tracer_options(const Options& opt)
{
    TracerOptions t;
    t.max_threads = opt.max_threads;
    t.max_allocations = opt.max_allocations;
    t.empty_programs = opt.bench_floor;
    using Attach = TracerOptions::Attach;
    t.attach = opt.attach == "uprobe_multi"   ? Attach::uprobe_multi
               : opt.attach == "shared_sites" ? Attach::shared_sites
               : opt.attach == "uprobe_links" ? Attach::uprobe_links
                                              : Attach::automatic;
    if (opt.bench_pmu_uprobes)
        t.attach = Attach::uprobe_links;
    t.tracker_site_on_ret = opt.bench_tracker_on_ret;
    t.stack_depth = opt.no_stacks ? 0 : opt.stack_depth;
    t.unwind_tables = !opt.bench_no_unwind_tables;
    t.max_stacks = opt.max_stacks;
    return t;
}

RunSettings run_settings(const Options& opt)
{
    RunSettings r;
    r.duration = opt.duration;
    r.interval = opt.interval;
    r.live = opt.live;
    r.auto_mode = opt.auto_mode;
    r.overhead_budget = opt.overhead_budget;
    r.alloc_fns = opt.alloc_fns;
    return r;
}

// Trace until the target ends, a signal, or --duration: the final report.
// SIGUSR1 writes a snapshot of it (a FIFO nobody reads holds tracing back a
// second at most).
Report trace(TraceSource& tracer, Session& session, Traced& traced, const Options& opt, int sigfd,
             const Calibration& calibration, int& status, Family* family = nullptr)
{
    TraceRun run(tracer, session, traced, run_settings(opt), sigfd, calibration, family);
    run.on_snapshot = [&opt](const Report& taken) {
        Report snapshot = taken;
        stamp(snapshot, opt);
        if (auto err = write_outputs(snapshot, opt, 1000); !err.empty())
            std::fprintf(stderr, "memscope-trace: %s\n", escape_for_terminal(err).c_str());
    };
    ExportSettings settings = opt.exporting;
    if (settings.service_name.empty())
        settings.service_name = traced.target.comm.empty() ? base_name(traced.target.exe) : traced.target.comm;
    auto exporter = start_exporter(std::move(settings), true);
    run.set_exporter(exporter.get());
    Report report = run.run(status);
    if (exporter)
        exporter->finish(report, run.elapsed_s());
    add_export_figures(report, exporter.get());
    stamp(report, opt);
    return report;
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

    int sigfd = trace_signal_fd(); // before anything slow: a signal meanwhile is queued, not fatal
    std::string err;
    TracerOptions options = tracer_options(opt);
    // A zombie leader: uprobe_multi links reach a process through its
    // leader's memory, which it no longer has; shared sites bind the probes
    // to threads that live on.
    if (int task = live_task(opt.pid);
        task > 0 && task != opt.pid && options.attach == TracerOptions::Attach::automatic)
        options.attach = TracerOptions::Attach::shared_sites;
    auto tracer = Tracer::open(options, err);
    if (!tracer)
        return fail(err);
    if (!tracer->add_target(opt.pid, err))
        return fail(err);

    // A zombie leader's threads go on: the probes are bound to one of them.
    if (int task = live_task(opt.pid); task > 0 && task != opt.pid)
        tracer->bind_first(opt.pid, task);
    std::vector<MappedFile> objects = executable_mappings(opt.pid);
    if (objects.empty())
        return fail("cannot trace process " + std::to_string(opt.pid) + ": " + mappings_unavailable(opt.pid));
    int probed = 0;
    Session session(*tracer, opt.pid, opt.max_variables);
    session.set_leak_min_age(opt.min_age >= 0 ? opt.min_age : 1.0);
    tracer->set_event_handler([&](const DecodedEvent& ev) { session.on_event(ev); });
    // Costs are measured before the target's probes exist: calibration
    // switches the BPF side's mode, which must not touch the target.
    Calibration calibration = calibrate_for_auto(*tracer, opt.auto_mode);
    if (auto e = session.attach(opt.pid, objects, probed); !e.empty())
        return fail(e);
    tracer->watch_threads(opt.pid); // no ptrace stop tells of a leader's pthread_exit
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
    Report report = trace(*tracer, session, traced, opt, sigfd, calibration, unused);
    return finish(report, opt);
}

// An ending signal that came while the command was not running yet (a
// terminal's ^C too, which reached no command then) is its own: taken
// here, passed on once.
void pass_on_pending_ending_signals(int pid)
{
    sigset_t ending;
    sigemptyset(&ending);
    for (int sig : {SIGINT, SIGTERM, SIGHUP})
        sigaddset(&ending, sig);
    const timespec now{0, 0};
    for (int sig; (sig = sigtimedwait(&ending, nullptr, &now)) > 0;)
        kill(pid, sig);
}

// run --baseline's report, read and checked with the gate's options; an
// error sentence, empty when fine (or when there is no gate).
std::string read_baseline(const Options& opt, Report& baseline)
{
    if (opt.baseline.empty())
        return !opt.gate.max_increase.empty() || opt.gate.fail_on_new_leaks
                   ? "--max-increase and --fail-on-new-leaks need --baseline FILE"
                   : std::string();
    if (auto e = check_diff_options(opt.gate); !e.empty())
        return e;
    if (auto e = read_report_json(opt.baseline, baseline, false); !e.empty())
        return escape_for_terminal(e);
    return {};
}

int run_command(const Options& opt)
{
    if (opt.command.empty())
        return fail("run needs a command: memscope-trace run -- CMD [ARGS...]", 2);
    // The gate's input is checked before the command runs, not after.
    Report baseline;
    if (auto e = read_baseline(opt, baseline); !e.empty())
        return fail(e, 2);
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
    // Before anything slow (loading BPF takes ~0.5 s): a signal meanwhile is
    // queued and passed on to the command once it runs, as later ones are.
    int sigfd = trace_signal_fd(); // blocked before fork; the child unblocks
    // Under ptrace it is held at its loader and probed in what it maps then;
    // without (ptrace refused), its libraries are what the loader lists for
    // it here.
    std::string err;
    auto files = [&](bool predict) {
        std::vector<MappedFile> out;
        for (auto& path : command_objects(exe, err, predict))
            out.push_back(hold_file(path, path));
        return out;
    };
    std::vector<MappedFile> objects = files(false);
    if (objects.empty())
        return fail("cannot run " + escape_for_terminal(exe) + ": " + err, 126);

    auto tracer = Tracer::open(tracer_options(opt), err);
    if (!tracer)
        return fail(err);

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
    session.set_leak_min_age(opt.min_age >= 0 ? opt.min_age : 0.0);
    const auto started = Clock::now();
    std::optional<Family> family;
    family.emplace(
        *tracer, session, opt.max_variables,
        [&](Session& s, const Target& t, bool final) {
            Snapshot snap = tracer->snapshot(s.pid());
            Report r = make_report(snap, t, std::chrono::duration<double>(Clock::now() - started).count(),
                                   snap.live_bytes_sum);
            s.describe_modes(r);
            s.add_sites(r);
            add_tracked(r, s.tracked(snap, final));
            return r;
        },
        !opt.no_follow);
    tracer->set_event_handler([&](const DecodedEvent& ev) {
        if (family)
            family->on_event(ev);
        else
            session.on_event(ev);
    });
    // Before it execs: every process it starts (with --no-follow, every
    // thread and exec of its own) is then seen from its first instruction.
    if (auto e = family->seize(traced.pid, exe); !e.empty()) {
        std::fprintf(stderr, "memscope-trace: %s; tracing the command alone, its libraries as the loader "
                     "lists them here\n", e.c_str());
        family.reset();
        objects = files(true);
    }
    // A program with no allocator and no loader to bring one: said now.
    if (auto e = session.attach(traced.pid, objects, probed, !family || objects.size() == 1); !e.empty()) {
        traced.child->abandon();
        return fail(e);
    }
    if (!family)
        tracer->watch_threads(traced.pid); // no ptrace stop tells of a leader's pthread_exit
    if (auto e = choose_start_mode(session, opt, own_environment()); !e.empty()) {
        traced.child->abandon();
        return fail(e);
    }
    if (opt.verbose)
        print_sites(*tracer, session);
    Calibration calibration = calibrate_for_auto(*tracer, opt.auto_mode);
    raise_priority(opt.nice); // the child, already forked, keeps its own
    if (auto e = traced.child->release(); !e.empty()) {
        waitpid(traced.pid, nullptr, 0);
        return fail(escape_for_terminal(exe) + ": " + e, 126);
    }
    traced.target.pid = traced.pid;
    traced.target.exe = exe;
    pass_on_pending_ending_signals(traced.pid);

    int status = 0;
    Report report = trace(*tracer, session, traced, opt, sigfd, calibration, status, family ? &*family : nullptr);
    if (family && opt.verbose)
        for (const auto& n : family->notes())
            std::fprintf(stderr, "memscope-trace: %s\n", escape_for_terminal(n).c_str());
    if (int rc = finish(report, opt); rc != 0)
        return rc;
    if (!opt.baseline.empty()) {
        std::fflush(stdout);
        int gate = diff_reports(baseline, report, opt.gate, stdout, stderr,
                                opt.baseline, "(this run)");
        return status != 0 ? status : gate; // a failing command fails the gate its own way
    }
    return status;
}

// -a: every process's memory from tracepoints, until a signal or --duration.
int run_system(const Options& opt)
{
    if (auto e = check_privileges(); !e.empty())
        return fail(e);
    int sigfd = trace_signal_fd();
    std::string err;
    auto watch = SystemWatch::open(SystemWatchOptions{}, err);
    if (!watch)
        return fail(err);
    for (const auto& note : watch->notes())
        std::fprintf(stderr, "memscope-trace: %s\n", note.c_str());
    HeapSettings heap;
    heap.top = opt.heap_top;
    heap.max_variables = opt.max_variables;
    heap.leak_min_age_s = opt.min_age >= 0 ? opt.min_age : 1.0;
    heap.budget_pct = opt.budget_given || opt.auto_mode ? opt.overhead_budget : 0;
    heap.tracer = tracer_options(opt);
    for (const auto& text : opt.heap) {
        std::string why;
        auto sel = parse_heap_selector(text, why);
        if (!sel)
            return fail(escape_for_terminal(why), 2);
        heap.selectors.push_back(*sel);
    }
    SystemSettings settings;
    settings.duration = opt.duration;
    settings.interval = opt.interval;
    settings.live = opt.live;
    settings.max_exited = opt.max_exited;
    settings.heap_selectors = opt.heap;
    if (opt.heap_top)
        settings.heap_selectors.push_back("top:" + std::to_string(opt.heap_top));
    CgroupNames cgroups;
    HeapSet heap_set(*watch, cgroups, std::move(heap));
    std::vector<std::string> notes;
    if (auto e = heap_set.start(notes); !e.empty())
        return fail(e);
    for (const auto& note : notes)
        std::fprintf(stderr, "memscope-trace: %s\n", escape_for_terminal(note).c_str());
    SystemRun run(*watch, settings, sigfd, heap_set.active() ? &heap_set : nullptr);
    run.on_snapshot = [&opt](const Report& taken) {
        Report snapshot = taken;
        stamp(snapshot, opt);
        if (auto e = write_outputs(snapshot, opt, 1000); !e.empty())
            std::fprintf(stderr, "memscope-trace: %s\n", escape_for_terminal(e).c_str());
    };
    auto exporter = start_exporter(opt.exporting, false);
    run.set_exporter(exporter.get());
    raise_priority(opt.nice);
    Report report = run.run();
    if (exporter)
        exporter->finish(report, run.elapsed_s());
    add_export_figures(report, exporter.get());
    stamp(report, opt);
    return finish(report, opt);
}

int run_diff(const Options& opt)
{
    if (auto err = check_diff_options(opt.gate); !err.empty())
        return fail(err, 2);
    return diff_files(opt.diff_base, opt.diff_new, opt.gate, stdout, stderr);
}

int run_ctl(const Options& opt)
{
    std::string why;
    if (!parse_control_request(opt.ctl_request, why))
        return fail("ctl: " + why, 2);
    std::string request;
    for (const auto& w : opt.ctl_request)
        request += (request.empty() ? "" : " ") + w;
    std::string reply;
    // A tracer just started opens its socket once its probes are set up (a
    // second or so): while that process is a memscope-trace, wait for it.
    const auto until = Clock::now() + std::chrono::seconds(10);
    for (;;) {
        std::string err = control_request(control_socket_path(opt.ctl_pid), request, reply);
        if (err.empty())
            break;
        if (Clock::now() >= until || read_first_line("/proc/" + std::to_string(opt.ctl_pid) + "/comm") !=
                                          std::optional<std::string>("memscope-trace"))
            return fail(err);
        usleep(50 * 1000);
    }
    std::printf("%s\n", reply.c_str());
    auto j = nlohmann::json::parse(reply, nullptr, false);
    return j.is_object() && !j.contains("error") ? 0 : 1;
}

// --version: the version, the commit built, and what this kernel offers
// (probed: uprobe_multi sessions need a BPF program loaded, so root).
std::string version_text()
{
    std::string out = std::string("memscope-trace ") + kToolVersion + " (commit " + kBuildCommit + ")\n";
    utsname u{};
    uname(&u);
    out += std::string("kernel ") + u.release + ": ";
    const std::string missing = check_kernel_features();
    out += missing.empty() ? "BTF and uprobes present" : missing;
    if (!check_privileges().empty()) {
        out += "; uprobe_multi sessions not probed (needs root)";
    } else {
        std::string why;
        out += uprobe_sessions_supported(why) ? "; uprobe_multi sessions (pid-filtered links, return probes only where asked)"
                                              : "; no uprobe_multi sessions (" + why + "): shared sites or uprobe links";
    }
    return out;
}

// The command line: options shared by tracing, rendering and the gate.
void add_renderings(CLI::App* a, Options& opt)
{
    a->add_option("--html", opt.html_path, "write a self-contained HTML report to FILE");
    a->add_option("--collapsed", opt.collapsed_path,
                  "write the allocation sites as folded stacks (flamegraph.pl, inferno, speedscope) to FILE");
    a->add_option("--weight", opt.weight, "what the folded stacks weigh: bytes, count, live_bytes, live_count")
        ->check(CLI::IsMember({"bytes", "count", "live_bytes", "live_count"}));
    a->add_option("--threads", opt.threads,
                  "the text report's thread table: grouped (threads of one name share a row, default) or all")
        ->check(CLI::IsMember({"grouped", "all"}));
    a->add_option("--pprof", opt.pprof_path,
                  "write a gzipped pprof heap profile (go tool pprof, Pyroscope, Parca) to FILE");
}

// Live export while tracing.
void add_export(CLI::App* a, Options& opt)
{
    a->add_option("--listen", opt.listen,
                  "serve /metrics (Prometheus), /debug/pprof/heap and /healthz on [ADDR:]PORT while tracing "
                  "(ADDR defaults to 127.0.0.1; 0.0.0.0 exposes it, without authentication)");
    a->add_option("--push", opt.push_url,
                  "push a heap profile to a Pyroscope server (http(s)://HOST:PORT[/PATH], /ingest by default) "
                  "every --push-interval");
    a->add_option("--push-interval", opt.push_interval, "seconds between pushes (default 10)")
        ->check(CLI::Range(0.1, 86400.0));
    a->add_option("--service-name", opt.service_name,
                  "the pushed profiles' service_name (default: the command's name; memscope-trace with -a)");
    a->add_option("--push-label", opt.push_labels, "NAME=VALUE added to the pushed profiles' labels (repeatable)");
}

void add_common(CLI::App* a, Options& opt)
{
    a->add_option("--interval", opt.interval,
                  "sample live bytes (process and per thread) every N seconds (default 0.1)")
        ->check(CLI::Range(0.001, 3600.0));
    a->add_option("--live", opt.live, "print a live per-thread table to stderr every N seconds")
        ->check(CLI::PositiveNumber);
    a->add_option("--json", opt.json_path, "write the final report as JSON to FILE");
    add_renderings(a, opt);
    a->add_option("--stack-depth", opt.stack_depth,
                  "frames kept per allocation stack in normal mode (default 64)")
        ->check(CLI::Range(1u, static_cast<unsigned>(MS_MAX_STACK_DEPTH)));
    a->add_flag("--no-stacks", opt.no_stacks, "record no stacks (no sites, no leak report by stack)");
    a->add_option("--min-age", opt.min_age,
                  "list as leaks only blocks outstanding for at least S seconds at the end (default 1 with -p "
                  "and -a, whose processes run on; 0 with run); younger ones are counted as the working set")
        ->check(CLI::Range(0.0, 1e6));
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
    a->add_option("--attach", opt.attach,
                  "how probes reach a process: uprobe_multi (pid-filtered links, released at once), "
                  "shared_sites (tracefs events bound to its threads), uprobe_links (a link per probe), "
                  "or auto (default: the first the kernel offers)")
        ->check(CLI::IsMember({"auto", "uprobe_multi", "shared_sites", "uprobe_links"}));
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
}

void add_gate(CLI::App* a, Options& opt)
{
    a->add_option("--max-increase", opt.gate.max_increase,
                  "METRIC=PCT% or METRIC=ABS (bytes take KiB/MiB/GiB): fail (exit 1) past it; repeatable")
        ->expected(1)
        ->allow_extra_args(false)
        ->take_all();
    a->add_flag("--fail-on-new-leaks", opt.gate.fail_on_new_leaks,
                "fail when a stack leaks that did not in the baseline");
    a->add_option("--format", opt.gate.format, "the comparison as text, markdown, json or junit")
        ->check(CLI::IsMember({"text", "markdown", "json", "junit"}));
}

// -a and its heap choice.
void add_system(CLI::App* a, Options& opt)
{
    a->add_flag("-a,--all", opt.all,
                 "every process, present and future: resident memory by kind, heap growth, births, execs, "
                 "exits and OOM kills, from kernel tracepoints (no uprobe in any process)");
    a->add_option("--heap", opt.heap,
                   "-a: trace the heap exactly (allocator probes, in these processes alone) of processes matching "
                   "pid:N, comm:NAME, exe:PATH or cgroup:PREFIX (repeatable); a new one is held at its loader "
                   "until probed");
    a->add_option("--heap-top", opt.heap_top,
                   "-a: also trace the heap of the N processes whose anonymous memory grows fastest (1 MiB/s or "
                   "more), as they appear")
        ->check(CLI::Range(std::size_t{1}, std::size_t{64}));
    a->add_option("--max-exited", opt.max_exited,
                   "-a: exited processes listed one by one in the report (default 20000); the rest are counted")
        ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 24));
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"memscope-trace: trace a process's heap from outside it, with uprobes and BPF"};
    app.set_version_flag("--version", version_text);
    Options opt;
    opt.argv.assign(argv, argv + argc);
    const CLI::Validator pid_number(
        [](std::string& s) -> std::string {
            const bool digits = !s.empty() && s.size() <= 9 && s.find_first_not_of("0123456789") == std::string::npos;
            return digits && std::stol(s) > 0 ? "" : "not a process id: " + escape_for_terminal(s) + " (a number from 1 up)";
        },
        "PID");
    app.add_option("-p,--pid", opt.pid, "attach to a running process")->check(pid_number);
    app.add_option("--duration", opt.duration, "stop after SECONDS")->check(CLI::PositiveNumber);
    add_system(&app, opt);
    add_common(&app, opt);
    add_export(&app, opt);

    CLI::App* run = app.add_subcommand("run", "start a command traced from its first instruction");
    add_common(run, opt);
    add_export(run, opt);
    run->add_flag("--no-follow", opt.no_follow,
                  "trace the command's own process only, not the processes it starts");
    run->add_option("command", opt.command, "CMD [ARGS...] (after --)")->required();
    // The tracer's options before the command, wherever the user puts them
    // (`run --duration 1 -- cmd`); those that do not go with run say so.
    run->fallthrough();

    add_gate(run, opt);
    run->add_option("--baseline", opt.baseline,
                    "after the command, compare its report with this one (see diff); exit 1 on a regression");

    CLI::App* diff = app.add_subcommand(
        "diff", "compare two JSON reports: 0 within the thresholds, 1 a regression, 2 bad input");
    diff->add_option("base", opt.diff_base, "the baseline report")->required();
    diff->add_option("new", opt.diff_new, "the report to check")->required();
    add_gate(diff, opt);

    CLI::App* report = app.add_subcommand("report", "a JSON report written earlier: its text report, or --html, --collapsed");
    report->add_option("input", opt.report_in, "the JSON report (memscope-trace --json)")->required();
    add_renderings(report, opt);

    CLI::App* ctl = app.add_subcommand("ctl", "talk to a running memscope-trace: `mode NAME` or `status`");
    ctl->add_option("--pid", opt.ctl_pid, "the tracer's pid (not the target's)")->required()->check(pid_number);
    ctl->add_option("request", opt.ctl_request,
                    "mode normal|fast|async|off, status, or (-a) heap add|drop SELECTOR")->required();
    add_doc_generator(app, kToolVersion); // --generate man|bash|zsh, for the build: the page and completions

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0)
            return app.exit(e);
        std::fprintf(stderr, "memscope-trace: %s (see --help)\n", e.what());
        return 2;
    }
    // Fail before tracing, not after, when an output could not be written.
    for (const std::string* path : {&opt.json_path, &opt.html_path, &opt.collapsed_path, &opt.pprof_path})
        if (!path->empty())
            if (std::string err = check_output(*path); !err.empty())
                return fail(escape_for_terminal(err), 2);
    if (std::string why; auto parsed = export_settings(opt, why))
        opt.exporting = std::move(*parsed);
    else
        return fail(escape_for_terminal(why), 2);
    opt.auto_mode = opt.mode == "auto";
    opt.budget_given = app.get_option("--overhead-budget")->count() > 0;
    if (ctl->parsed())
        return run_ctl(opt);
    if (report->parsed())
        return run_report(opt);
    if (diff->parsed())
        return run_diff(opt);
    if (run->parsed()) {
        if (opt.pid || opt.all)
            return fail(opt.pid ? "-p and run are exclusive" : "-a and run are exclusive", 2);
        return run_command(opt);
    }
    if (!opt.all && (!opt.heap.empty() || opt.heap_top))
        return fail("--heap and --heap-top go with -a", 2);
    if (opt.all) {
        if (!opt.mode.empty() && !opt.auto_mode)
            return fail("-a: each heap-traced process has its own mode; set a budget with --overhead-budget", 2);
        if (opt.pid)
            return fail("-a and -p are exclusive", 2);
        if (app.get_option("--interval")->count() == 0)
            opt.interval = 1.0; // -a reads every process's entry: once a second unless asked
        return run_system(opt);
    }
    if (!opt.pid)
        return fail("nothing to trace: use -p PID, -a, or run -- CMD (see --help)", 2);
    return run_attach(opt);
}
