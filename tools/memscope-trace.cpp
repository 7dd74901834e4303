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

#include "launcher.hpp"
#include "proc.hpp"
#include "report_json.hpp"
#include "report_text.hpp"
#include "session.hpp"
#include "tracer.hpp"

using namespace memscope;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
    int pid = 0;
    double duration = 0;
    double interval = 0;
    std::string json_path;
    bool verbose = false;
    std::uint32_t max_allocations = MS_DEFAULT_MAX_ALLOCATIONS;
    std::uint32_t max_threads = MS_DEFAULT_MAX_THREADS;
    std::size_t max_variables = kDefaultMaxVariables;
    int nice = -19;
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

// Trace until the target exits, a signal, or --duration; returns the final report.
Report trace_loop(Tracer& tracer, Session& session, Traced& traced, const Options& opt, int sigfd,
                  int& status_out)
{
    const auto start = Clock::now();
    const int sample_ms = 100; // the process-wide peak is sampled this often
    std::uint64_t sampled_peak = 0;
    std::optional<LiveTable> table;
    if (opt.interval > 0)
        table.emplace();
    double next_table = opt.interval;
    bool target_gone = false;

    auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };

    for (;;) {
        pollfd fds[3] = {{sigfd, POLLIN, 0}, {traced.pidfd, POLLIN, 0}, {tracer.events_fd(), POLLIN, 0}};
        int timeout = sample_ms;
        if (opt.duration > 0) {
            double left = opt.duration - elapsed();
            if (left <= 0)
                break;
            timeout = std::min(timeout, static_cast<int>(left * 1000) + 1);
        }
        int n = poll(fds, 3, timeout);
        if (n < 0 && errno != EINTR)
            break;
        session.drain(traced.pid);
        if (fds[0].revents & POLLIN) {
            signalfd_siginfo si{};
            bool stop = false;
            while (read(sigfd, &si, sizeof si) == sizeof si) {
                if (traced.child) {
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
        Snapshot snap = tracer.snapshot(traced.pid);
        sampled_peak = std::max(sampled_peak, snap.live_bytes_sum);
        if (table && elapsed() >= next_table) {
            Report r = make_report(snap, traced.target, elapsed(), sampled_peak);
            table->draw(r, elapsed());
            next_table += opt.interval;
        }
    }

    if (traced.child && target_gone) {
        int ws = 0;
        while (waitpid(traced.pid, &ws, 0) < 0 && errno == EINTR) {
        }
        status_out = shell_status(ws);
        traced.target.exit_code = status_out;
    }
    session.drain(traced.pid);
    Snapshot snap = tracer.snapshot(traced.pid);
    if (traced.child && snap.children.execs > 0)
        --snap.children.execs; // the first exec is the command itself
    if (!traced.child && snap.exited)
        traced.target.exit_code = shell_status(snap.wait_status);
    sampled_peak = std::max(sampled_peak, snap.live_bytes_sum);
    for (const auto& t : snap.threads)
        if (static_cast<int>(t.tid) == traced.pid && !t.name.empty())
            traced.target.comm = t.name;
    if (traced.target.comm.empty())
        traced.target.comm = read_first_line("/proc/" + std::to_string(traced.pid) + "/comm").value_or("");
    Report report = make_report(snap, traced.target, elapsed(), sampled_peak);
    add_tracked(report, session.tracked(snap));
    return report;
}

void print_sites(const Tracer& tracer, const Session& session)
{
    for (const auto& n : session.notes())
        std::fprintf(stderr, "memscope-trace: %s\n", escape_for_terminal(n).c_str());
    for (const auto& s : tracer.sites())
        std::fprintf(stderr, "memscope-trace: probe %s%s at %s+0x%llx\n", s.symbol.c_str(),
                     s.return_probe ? " (return)" : "", escape_for_terminal(s.path).c_str(),
                     static_cast<unsigned long long>(s.file_offset));
}

int finish(const Report& report, const Options& opt)
{
    std::fputs(format_report(report).c_str(), stderr);
    if (!opt.json_path.empty()) {
        std::string err = write_file_atomic(opt.json_path,
                                            [&](std::FILE* f) { return write_report_json(report, f); });
        if (!err.empty()) {
            fail(err);
            return 1;
        }
    }
    return 0;
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

    std::string err;
    auto tracer = Tracer::open({opt.max_threads, opt.max_allocations}, err);
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
    Session session(*tracer, opt.max_variables);
    if (auto e = session.attach(opt.pid, objects, probed); !e.empty())
        return fail(e);
    pollfd pfd{traced.pidfd, POLLIN, 0};
    if (poll(&pfd, 1, 0) > 0)
        return fail("process " + std::to_string(opt.pid) + " exited while attaching");
    if (opt.verbose)
        print_sites(*tracer, session);
    traced.target.pid = opt.pid;
    traced.target.exe = process_exe(opt.pid);
    std::fprintf(stderr, "memscope-trace: attached to pid %d (%d allocator functions, %zu modules with tracker entry points)\n",
                 opt.pid, probed, session.tracker_modules());

    raise_priority(opt.nice);
    int sigfd = signal_fd();
    int unused = 0;
    Report report = trace_loop(*tracer, session, traced, opt, sigfd, unused);
    return finish(report, opt);
}

int run_command(const Options& opt)
{
    if (opt.command.empty())
        return fail("run needs a command: memscope-trace run -- CMD [ARGS...]", 2);
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

    auto tracer = Tracer::open({opt.max_threads, opt.max_allocations}, err);
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
    Session session(*tracer, opt.max_variables);
    if (auto e = session.attach(traced.pid, objects, probed); !e.empty()) {
        traced.child->abandon();
        return fail(e);
    }
    if (opt.verbose)
        print_sites(*tracer, session);
    raise_priority(opt.nice); // the child, already forked, keeps its own
    if (auto e = traced.child->release(); !e.empty()) {
        waitpid(traced.pid, nullptr, 0);
        return fail(escape_for_terminal(exe) + ": " + e, 126);
    }
    traced.target.pid = traced.pid;
    traced.target.exe = exe;

    int status = 0;
    Report report = trace_loop(*tracer, session, traced, opt, sigfd, status);
    if (int rc = finish(report, opt); rc != 0)
        return rc;
    return status;
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"memscope-trace: trace a process's heap from outside it, with uprobes and BPF"};
    app.set_version_flag("--version", std::string(kToolVersion));
    Options opt;
    auto add_common = [&](CLI::App* a) {
        a->add_option("--interval", opt.interval, "print a live per-thread table to stderr every N seconds")
            ->check(CLI::PositiveNumber);
        a->add_option("--json", opt.json_path, "write the final report as JSON to FILE");
        a->add_flag("-v,--verbose", opt.verbose, "show each probe site attached");
        a->add_option("--max-allocations", opt.max_allocations,
                      "capacity of the outstanding-allocation table (kernel memory, preallocated)")
            ->check(CLI::Range(1024u, 1u << 26));
        a->add_option("--max-threads", opt.max_threads, "capacity of the per-thread tables")
            ->check(CLI::Range(16u, 1u << 20));
        a->add_option("--max-variables", opt.max_variables,
                      "tracked variables kept for the report (about 90 bytes each); more are counted as dropped")
            ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30));
        a->add_option("--nice", opt.nice,
                      "the tracer's own nice value (default -19: it must drain events as fast as the "
                      "target's threads make them)")
            ->check(CLI::Range(-20, 19));
    };
    app.add_option("-p,--pid", opt.pid, "attach to a running process")->check(CLI::PositiveNumber);
    app.add_option("--duration", opt.duration, "stop after SECONDS")->check(CLI::PositiveNumber);
    add_common(&app);

    CLI::App* run = app.add_subcommand("run", "start a command traced from its first instruction");
    add_common(run);
    run->add_option("command", opt.command, "CMD [ARGS...] (after --)")->required();

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0)
            return app.exit(e);
        std::fprintf(stderr, "memscope-trace: %s (see --help)\n", e.what());
        return 2;
    }
    if (!opt.json_path.empty()) {
        // Fail before tracing, not after, when the report could not be written.
        std::string dir = opt.json_path.substr(0, opt.json_path.find_last_of('/') + 1);
        if (dir.empty())
            dir = ".";
        if (access(dir.c_str(), W_OK) != 0)
            return fail("cannot write the JSON report in " + escape_for_terminal(dir) + ": " +
                        std::strerror(errno), 2);
    }
    if (run->parsed()) {
        if (opt.pid)
            return fail("-p and run are exclusive", 2);
        return run_command(opt);
    }
    if (!opt.pid)
        return fail("nothing to trace: use -p PID or run -- CMD (see --help)", 2);
    return run_attach(opt);
}
