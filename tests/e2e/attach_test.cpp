// How probes reach a process (issue 15): uprobe_multi session links where
// the kernel has them, shared tracefs sites or uprobe PMU links where it
// has not, each exact; async mode in two hits per malloc+free pair; a
// machine without tracefs.
#include "harness.hpp"

#include <optional>

namespace e2e {
namespace {

// kernel.bpf_stats_enabled on while it lives (the programs' run counts).
class BpfStats {
public:
    BpfStats()
    {
        std::ifstream in(kFile);
        std::getline(in, before_);
        ok_ = static_cast<bool>(std::ofstream(kFile) << "1\n");
    }
    ~BpfStats()
    {
        if (!before_.empty())
            std::ofstream(kFile) << before_ << "\n";
    }
    bool ok() const { return ok_; }

private:
    static constexpr const char* kFile = "/proc/sys/kernel/bpf_stats_enabled";
    std::string before_;
    bool ok_ = false;
};

std::uint64_t runs_of(const json& r, const std::string& program)
{
    const json& p = r["tracer"]["bpf_programs"];
    return p.contains(program) ? p[program]["run_count"].get<std::uint64_t>() : 0;
}

std::uint64_t total(const json& r, const char* counter)
{
    return r["totals"][counter].get<std::uint64_t>();
}

int count_of(const std::string& text, const std::string& needle)
{
    int n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1))
        ++n;
    return n;
}

} // namespace

TEST_F(E2E, EveryAttachMethodCountsExactly)
{
    for (const char* method : {"uprobe_multi", "shared_sites", "uprobe_links"}) {
        SCOPED_TRACE(method);
        const std::string path = temp_json(std::string("attach-") + method);
        Result res = run({kBin, "run", "--attach", method, "--json", path, "--", target("threads_c"), "4", "300"});
        ASSERT_EQ(res.status, 0) << res.err;
        json r = load(path);
        EXPECT_EQ(r["tracer"]["attach"], method);
        expect_threads_c(r, 4, 300, method);
        EXPECT_EQ(r["dropped"]["events"], 0) << r["dropped"].dump();
    }
    // The default on this kernel (6.18): uprobe_multi.
    json r = trace_run({target("threads_c"), "2", "100"});
    EXPECT_EQ(r["tracer"]["attach"], "uprobe_multi") << last_.err;
    expect_threads_c(r, 2, 100, "default");
}

TEST_F(E2E, WithoutUprobeMultiItFallsBackAndSaysSoOnce)
{
    // What a kernel without uprobe_multi session links gets (the same code
    // path as a failed probe of the kernel; see Tracer::open).
    const std::string path = temp_json("no-uprobe-multi");
    Result res = run({"/usr/bin/env", "MEMSCOPE_ASSUME_NO_UPROBE_MULTI=1", kBin, "run", "--json", path, "--",
                      target("threads_c"), "3", "200"});
    ASSERT_EQ(res.status, 0) << res.err;
    EXPECT_EQ(count_of(res.err, "no uprobe_multi links"), 1) << res.err;
    json r = load(path);
    EXPECT_EQ(r["tracer"]["attach"], "shared_sites");
    expect_threads_c(r, 3, 200, "fallen back");
    // Asked for by name, it is one line and a failure.
    Result asked = run({"/usr/bin/env", "MEMSCOPE_ASSUME_NO_UPROBE_MULTI=1", kBin, "run", "--attach", "uprobe_multi",
                        "--", "/bin/true"});
    EXPECT_NE(asked.status, 0);
    EXPECT_EQ(count_of(asked.err, "\n"), 1) << asked.err;
    EXPECT_NE(asked.err.find("uprobe_multi"), std::string::npos) << asked.err;
}

TEST_F(E2E, AsyncModeTakesTwoHitsPerMallocAndFreePair)
{
    BpfStats stats;
    ASSERT_TRUE(stats.ok()) << "cannot turn kernel.bpf_stats_enabled on";
    // threads_c 4 3000: 12,600 mallocs and frees in its workers, 500 of
    // each in its producer and consumer.
    std::map<std::string, json> reports;
    for (const char* mode : {"normal", "async"}) {
        const std::string path = temp_json(std::string("hits-") + mode);
        Result res = run({kBin, "run", "--mode", mode, "--json", path, "--", target("threads_c"), "4", "3000"});
        ASSERT_EQ(res.status, 0) << res.err;
        reports[mode] = load(path);
        ASSERT_EQ(reports[mode]["tracer"]["attach"], "uprobe_multi");
    }
    const json& normal = reports["normal"];
    const json& async = reports["async"];
    const std::uint64_t calls = total(async, "alloc_count") + total(async, "free_count");
    ASSERT_GT(calls, 25000u);
    EXPECT_EQ(total(async, "alloc_count"), total(normal, "alloc_count"));
    EXPECT_EQ(total(async, "free_count"), total(normal, "free_count"));
    // Normal: each malloc's entry and return, each free's entry. Async:
    // entries only; what is left over is the C runtime's own few calls
    // (free(NULL), realloc's return) before main.
    EXPECT_GE(runs_of(normal, "alloc_session"), total(normal, "alloc_count") * 2 + total(normal, "free_count"));
    EXPECT_LE(runs_of(async, "alloc_session"), calls + 100) << async["tracer"]["bpf_programs"].dump();
    EXPECT_GE(runs_of(async, "alloc_session"), calls);
}

TEST_F(E2E, TheReleasingHelperHoldsNoneOfTheCallersPipes)
{
    // 60 children: ~120 links left to release at exit, ~20 ms each, by a
    // detached helper. The caller's pipe (a shell pipeline, CI's log) must
    // reach EOF when the tracer exits, not when the helper is done.
    Child tracer({kBin, "run", "--attach", "uprobe_multi", "--", "/bin/sh", "-c",
                  "for i in $(seq 60); do /bin/true; done"});
    using clock = std::chrono::steady_clock;
    const auto deadline = clock::now() + 120s;
    std::optional<clock::time_point> exited;
    int status = -1;
    while ((tracer.out >= 0 || tracer.err >= 0) && clock::now() < deadline) {
        tracer.pump(50);
        if (!exited && waitpid(tracer.pid, &status, WNOHANG) == tracer.pid) {
            exited = clock::now();
            tracer.pid = -1;
        }
    }
    const auto eof = clock::now();
    if (!exited) {
        ASSERT_EQ(waitpid(tracer.pid, &status, 0), tracer.pid);
        tracer.pid = -1;
        exited = clock::now();
    }
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << tracer.err_text;
    EXPECT_LT(eof - *exited, 1s) << "the pipes stayed open after the tracer exited";
}

TEST_F(E2E, SystemWideWithoutTracefsGoesOnAndSaysWhatIsMissing)
{
    // tracefs hidden in a mount namespace of the tracer's own: the syscall
    // tracepoints are gone, rss_stat (BTF) and uprobe_multi need none.
    const std::string path = temp_json("no-tracefs");
    const std::string script = "mount -t tmpfs none /sys/kernel/tracing && mount -t tmpfs none /sys/kernel/debug && "
                               "exec " + kBin + " -a --duration 3 --heap comm:target_threads_ --json " + path;
    Child tracer({"/usr/bin/unshare", "-m", "--propagation", "private", "/bin/sh", "-c", script});
    ASSERT_TRUE(tracer.wait_for("watching every process", true, 60s)) << tracer.err_text;
    Result threads = run({target("threads_c"), "2", "100"});
    ASSERT_EQ(threads.status, 0) << threads.err;
    ASSERT_EQ(tracer.finish(), 0) << tracer.err_text;
    // Said once as it starts (the report lists it among its warnings too).
    const std::string start = tracer.err_text.substr(0, tracer.err_text.find("watching every process"));
    EXPECT_EQ(count_of(start, "no brk, mmap or munmap figures"), 1) << tracer.err_text;
    json r = load(path);
    EXPECT_EQ(r["mode_scope"], "system");
    EXPECT_GT(r["processes"].size(), 3u);
    EXPECT_EQ(r["tracer"]["attach"], "uprobe_multi");
    expect_threads_c(r, 2, 100, "-a without tracefs");
}

} // namespace e2e
