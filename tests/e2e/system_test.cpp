// -a: every process's memory from tracepoints (issue 15), against real
// processes: a bystander's figures and its untouched allocator code, a
// fork/exec storm counted whole, an OOM kill in a small memory cgroup.
#include "harness.hpp"

#include <sys/stat.h>

namespace e2e {
namespace {

// memscope-trace -a running until stop(): its report.
class SystemTrace {
public:
    explicit SystemTrace(const std::string& name, std::vector<std::string> extra = {})
        : path_(temp_json(name)), tracer_([&] {
              std::vector<std::string> argv{kBin, "-a", "--json", path_};
              argv.insert(argv.end(), extra.begin(), extra.end());
              return argv;
          }())
    {
        // A budget first measures what a hit costs: seconds.
        ready_ = tracer_.wait_for("watching every process", true, 60s);
    }
    bool ready() const { return ready_; }
    int pid() const { return tracer_.pid; }
    const std::string& err() const { return tracer_.err_text; }
    json stop(int* status = nullptr)
    {
        // One interval at least: the map is read once a second.
        std::this_thread::sleep_for(1200ms);
        kill(tracer_.pid, SIGINT);
        const int st = tracer_.finish();
        if (status)
            *status = st;
        max_rss_kb_ = tracer_.max_rss_kb;
        return load(path_);
    }
    long max_rss_kb() const { return max_rss_kb_; }

private:
    std::string path_;
    Child tracer_;
    bool ready_ = false;
    long max_rss_kb_ = 0;
};

std::string build_dir()
{
    return kTargets;
}

const json* process_of(const json& r, int pid)
{
    for (const auto& p : r["processes"])
        if (p["pid"] == pid)
            return &p;
    return nullptr;
}

// The bytes at `addr` in process `pid`, and those the file mapped there holds.
std::pair<std::string, std::string> code_and_file(int pid, std::uint64_t addr, std::size_t n)
{
    std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
    for (std::string line; std::getline(maps, line);) {
        unsigned long lo = 0, hi = 0, off = 0;
        char perms[8] = {};
        if (std::sscanf(line.c_str(), "%lx-%lx %7s %lx", &lo, &hi, perms, &off) != 4 || addr < lo || addr >= hi)
            continue;
        const std::string path = line.substr(line.find('/'));
        std::string code(n, '\0'), file(n, '\0');
        std::ifstream mem("/proc/" + std::to_string(pid) + "/mem", std::ios::binary);
        mem.seekg(static_cast<std::streamoff>(addr));
        mem.read(code.data(), static_cast<std::streamsize>(n));
        std::ifstream elf(path, std::ios::binary);
        elf.seekg(static_cast<std::streamoff>(addr - lo + off));
        elf.read(file.data(), static_cast<std::streamsize>(n));
        return {code, file};
    }
    return {};
}

class System : public E2E {};

TEST_F(System, BystanderIsListedWithItsMemoryAndItsAllocatorIsUnpatched)
{
    SystemTrace trace("system_bystander");
    ASSERT_TRUE(trace.ready()) << trace.err();
    Child hog({target("mem_hog"), "64"});
    ASSERT_TRUE(hog.wait_for("ready ", false, 30s)) << hog.err_text;
    const std::uint64_t malloc_at = std::stoull(hog.out_text.substr(hog.out_text.find("ready ") + 6), nullptr, 16);
    auto [code, file] = code_and_file(hog.pid, malloc_at, 32);
    ASSERT_FALSE(code.empty());
    EXPECT_EQ(code, file) << "malloc's code in a process that was not chosen differs from its file's";
    const int hog_pid = hog.pid;
    json r = trace.stop();
    hog.close_stdin();
    EXPECT_EQ(hog.finish(), 0);

    EXPECT_EQ(r["mode_scope"], "system");
    EXPECT_GT(r["processes"].size(), 5u) << "every process is listed, not only the new one";
    EXPECT_NE(process_of(r, 1), nullptr) << "pid 1, running before the tracer, is listed";
    const json* p = process_of(r, hog_pid);
    ASSERT_NE(p, nullptr) << r["processes"].dump().substr(0, 2000);
    EXPECT_EQ((*p)["comm"], "target_mem_hog");
    EXPECT_EQ((*p)["heap_traced"], false);
    EXPECT_EQ((*p)["exited"], false);
    EXPECT_EQ((*p)["born_while_traced"], true);
    const json& m = (*p)["memory"];
    const std::uint64_t mib = 1 << 20;
    EXPECT_GE(m["rss_anon_bytes"].get<std::uint64_t>(), 72 * mib) << m.dump();
    EXPECT_LE(m["rss_anon_bytes"].get<std::uint64_t>(), 80 * mib) << m.dump();
    EXPECT_GE(m["peak_rss_anon_bytes"].get<std::uint64_t>(), m["rss_anon_bytes"].get<std::uint64_t>());
    // 8 MiB of its own, and what malloc took for stdio's buffer before.
    EXPECT_GE(m["brk_bytes"].get<std::uint64_t>(), 8 * mib) << m.dump();
    EXPECT_LE(m["brk_bytes"].get<std::uint64_t>(), 9 * mib) << m.dump();
    EXPECT_GE(m["mmap_anon_bytes"].get<std::uint64_t>(), 64 * mib) << m.dump();
    EXPECT_GE(m["brk_calls"].get<std::uint64_t>(), 1u);
    EXPECT_GE(m["anon_growth_bytes_per_s"].get<double>(), 0.0);
    EXPECT_TRUE(r["dropped"]["reasons"].empty()) << r["dropped"].dump();
}

TEST_F(System, ForkExecStormIsCountedWhole)
{
    SystemTrace trace("system_storm");
    ASSERT_TRUE(trace.ready()) << trace.err();
    constexpr int kChildren = 10000;
    Child storm({target("storm"), std::to_string(kChildren)});
    ASSERT_TRUE(storm.wait_for("done", false, 240s)) << storm.err_text;
    const int storm_pid = storm.pid;
    EXPECT_EQ(storm.finish(), 0);
    json r = trace.stop();

    int children = 0, exec_d = 0, exit_ok = 0;
    for (const auto& p : r["processes"]) {
        if (p["parent_pid"] != storm_pid)
            continue;
        ++children;
        exec_d += p["execs"] == 1 && p["comm"] == "target_storm";
        exit_ok += p["exited"] == true && p["exit_code"] == 0;
    }
    EXPECT_EQ(children, kChildren);
    EXPECT_EQ(exec_d, kChildren);
    EXPECT_EQ(exit_ok, kChildren);
    EXPECT_EQ(r["system"]["not_listed"], 0);
    EXPECT_GE(r["system"]["births"].get<std::uint64_t>(), static_cast<std::uint64_t>(kChildren + 1));
    EXPECT_TRUE(r["dropped"]["reasons"].empty()) << r["dropped"].dump();
    // The tracer's memory stays bounded: ~10,000 processes listed.
    EXPECT_LT(trace.max_rss_kb(), 48 * 1024) << "tracer max RSS " << trace.max_rss_kb() << " KiB";
    std::fprintf(stderr, "storm of %d: tracer max RSS %ld KiB\n", kChildren, trace.max_rss_kb());
}

// A memory cgroup of 32 MiB (v2 where the memory controller is there,
// else v1's), removed at the end.
class MemoryCgroup {
public:
    MemoryCgroup()
    {
        const std::string name = "memscope-e2e-" + std::to_string(getpid());
        // A v2 hierarchy that has the memory controller, else v1's memory one.
        for (auto [base, limit] : {std::pair{"/sys/fs/cgroup", "memory.max"},
                                   std::pair{"/sys/fs/cgroup/unified", "memory.max"},
                                   std::pair{"/sys/fs/cgroup/memory", "memory.limit_in_bytes"}}) {
            const std::string b = base;
            const bool v2 = std::string(limit) == "memory.max";
            if (v2 ? read_all(b + "/cgroup.controllers").find("memory") == std::string::npos
                   : access((b + "/" + limit).c_str(), F_OK) != 0)
                continue;
            if (v2)
                std::ofstream(b + "/cgroup.subtree_control") << "+memory";
            std::string dir = b + "/" + name;
            if (mkdir(dir.c_str(), 0755) != 0)
                continue;
            if (access((dir + "/cgroup.procs").c_str(), F_OK) == 0) {
                std::ofstream(dir + "/" + limit) << (32 << 20);
                std::ofstream(dir + "/" + (v2 ? "memory.swap.max" : "memory.memsw.limit_in_bytes")) << (v2 ? 0 : 32 << 20);
                dir_ = dir;
                return;
            }
            rmdir(dir.c_str());
        }
    }
    ~MemoryCgroup()
    {
        if (!dir_.empty())
            rmdir(dir_.c_str());
    }
    const std::string& dir() const { return dir_; }

private:
    std::string dir_;
};

TEST_F(System, OomKillIsReportedWithTheVictimsFigures)
{
    MemoryCgroup cg;
    ASSERT_FALSE(cg.dir().empty()) << "no memory cgroup could be made (v2 memory.max or v1 limit_in_bytes)";
    SystemTrace trace("system_oom");
    ASSERT_TRUE(trace.ready()) << trace.err();
    Child victim({"/bin/sh", "-c", "echo $$ > " + cg.dir() + "/cgroup.procs && exec " + target("mem_hog") + " 256"});
    const int victim_pid = victim.pid;
    EXPECT_EQ(victim.finish(60s), 128 + SIGKILL) << victim.err_text;
    json r = trace.stop();

    ASSERT_EQ(r["oom_kills"].size(), 1u) << r["oom_kills"].dump();
    const json& k = r["oom_kills"][0];
    EXPECT_EQ(k["pid"], victim_pid);
    EXPECT_EQ(k["comm"], "target_mem_hog");
    EXPECT_GE(k["memory"]["rss_anon_bytes"].get<std::uint64_t>(), 16u << 20) << k.dump();
    EXPECT_LE(k["memory"]["rss_anon_bytes"].get<std::uint64_t>(), 33u << 20) << k.dump();
    const json* p = process_of(r, victim_pid);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ((*p)["oom_killed"], true);
    EXPECT_EQ((*p)["exited"], true);
    EXPECT_EQ((*p)["exit_code"], 128 + SIGKILL);
    EXPECT_EQ(r["system"]["oom_kills"], 1);
}

// A new process chosen by name is held at its loader until its probes are
// in place: exact per thread, as `run` is; a bystander running beside it
// keeps its allocator's code as its file has it, the chosen one does not.
TEST_F(System, NewProcessChosenByCommIsExactAndBystanderIsUnpatched)
{
    const std::string dir = "/tmp/memscope-e2e-" + std::to_string(getpid()) + "-heap";
    mkdir(dir.c_str(), 0755);
    const std::string chosen_hog = dir + "/chosen_hog";
    unlink(chosen_hog.c_str());
    ASSERT_EQ(symlink(target("mem_hog").c_str(), chosen_hog.c_str()), 0);
    SystemTrace trace("system_heap_comm", {"--heap", "comm:target_threads_", "--heap", "comm:chosen_hog"});
    ASSERT_TRUE(trace.ready()) << trace.err();

    Child chosen({chosen_hog, "4"}), bystander({target("mem_hog"), "4"});
    ASSERT_TRUE(chosen.wait_for("ready ", false, 30s) && bystander.wait_for("ready ", false, 30s));
    auto malloc_of = [](const Child& c) {
        return std::stoull(c.out_text.substr(c.out_text.find("ready ") + 6), nullptr, 16);
    };
    // The probe may sit past the entry (a cheaper site): malloc's first KiB.
    auto [by_code, by_file] = code_and_file(bystander.pid, malloc_of(bystander), 1024);
    auto [ch_code, ch_file] = code_and_file(chosen.pid, malloc_of(chosen), 1024);
    EXPECT_EQ(by_code, by_file) << "a process not chosen got a probe in its allocator";
    EXPECT_NE(ch_code, ch_file) << "the chosen process's malloc is not probed";

    Result threads = run({target("threads_c"), "4", "300"});
    ASSERT_EQ(threads.status, 0) << threads.err;
    const int chosen_pid = chosen.pid, bystander_pid = bystander.pid;
    chosen.close_stdin();
    bystander.close_stdin();
    EXPECT_EQ(chosen.finish(), 0);
    EXPECT_EQ(bystander.finish(), 0);
    json r = trace.stop();

    expect_threads_c(r, 4, 300, "-a --heap comm:target_threads_");
    if (::testing::Test::HasFailure())
        std::fprintf(stderr, "tracer said:\n%s\n", trace.err().substr(0, 4000).c_str());
    EXPECT_FALSE(r["dropped"]["reasons"].contains("hold_timeout")) << r["dropped"].dump();
    int traced = 0;
    for (const auto& p : r["processes"])
        if (p["heap_traced"] == true) {
            ++traced;
            EXPECT_TRUE(p["comm"] == "target_threads_" || p["pid"] == chosen_pid) << p.dump();
        }
    EXPECT_EQ(traced, 2);
    // The tracer's cost counts both BPF objects: tier 0's (~21 MiB) and the
    // heap tracer's (its allocation table alone ~96 MiB by default).
    EXPECT_EQ(r["tracer"]["attach"], "uprobe_multi");
    EXPECT_GT(r["tracer"]["bpf_map_bytes"].get<std::uint64_t>(), 100ull << 20) << r["tracer"].dump();
    const json* by = process_of(r, bystander_pid);
    ASSERT_NE(by, nullptr);
    EXPECT_EQ((*by)["heap_traced"], false);
    unlink(chosen_hog.c_str());
    rmdir(dir.c_str());
}

// --heap-top 1 picks the one process that grows out of several idle ones,
// within 2 s of its growth starting: it grows 1 MiB per 50 ms for 4 s, so
// chosen by then it makes 40 allocations or more traced.
TEST_F(System, HeapTopPicksTheGrowingProcessWithinTwoSeconds)
{
    std::vector<std::unique_ptr<Child>> idle;
    for (int i = 0; i < 3; ++i) {
        idle.push_back(std::make_unique<Child>(std::vector<std::string>{target("mem_hog"), "2"}));
        ASSERT_TRUE(idle.back()->wait_for("ready ", false, 30s));
    }
    SystemTrace trace("system_heap_top", {"--heap-top", "1", "--interval", "0.25"});
    ASSERT_TRUE(trace.ready()) << trace.err();
    std::this_thread::sleep_for(600ms);
    Child leaker({target("leaker"), "4"});
    const int leaker_pid = leaker.pid;
    EXPECT_EQ(leaker.finish(), 0);
    json r = trace.stop();
    const json* p = process_of(r, leaker_pid);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ((*p)["heap_traced"], true) << p->dump();
    EXPECT_GE((*p)["totals"]["alloc_count"].get<std::uint64_t>(), 40u) << p->dump();
    for (const auto& c : idle) {
        const json* q = process_of(r, c->pid);
        ASSERT_NE(q, nullptr);
        EXPECT_EQ((*q)["heap_traced"], false);
    }
}

// A symlink to mem_hog, so that it runs under a name of its own (its comm).
class NamedHog {
public:
    explicit NamedHog(const std::string& name)
        : dir_("/tmp/memscope-e2e-" + std::to_string(getpid()) + "-" + name), path_(dir_ + "/" + name)
    {
        mkdir(dir_.c_str(), 0755);
        unlink(path_.c_str());
        if (symlink(target("mem_hog").c_str(), path_.c_str()) != 0)
            path_.clear();
    }
    ~NamedHog()
    {
        unlink(path_.c_str());
        rmdir(dir_.c_str());
    }
    const std::string& path() const { return path_; }

private:
    std::string dir_, path_;
};

std::string ctl(int tracer, const std::vector<std::string>& words, int* status = nullptr)
{
    std::vector<std::string> argv{kBin, "ctl", "--pid", std::to_string(tracer)};
    argv.insert(argv.end(), words.begin(), words.end());
    Result r = run(argv);
    if (status)
        *status = r.status;
    return r.out + r.err;
}

// Each heap-traced process has its own budget: the hot one steps down
// (fast, async, then its probes go), the idle one stays in normal.
TEST_F(System, BudgetPerProcessStepsTheHotOneDownAndLeavesTheIdleOne)
{
    NamedHog idle_hog("idle_hog");
    ASSERT_FALSE(idle_hog.path().empty());
    SystemTrace trace("system_budget", {"--heap", "comm:alloc_pairs", "--heap", "comm:idle_hog", "--overhead-budget", "5"});
    ASSERT_TRUE(trace.ready()) << trace.err();
    Child idle({idle_hog.path(), "2"});
    ASSERT_TRUE(idle.wait_for("ready ", false, 30s));
    Child hot({build_dir() + "/alloc_pairs", "1", "600000", "64"});
    std::this_thread::sleep_for(2500ms);
    const std::string status = ctl(trace.pid(), {"status"});
    const int hot_pid = hot.pid, idle_pid = idle.pid;
    EXPECT_EQ(hot.finish(), 0) << hot.err_text;
    idle.close_stdin();
    EXPECT_EQ(idle.finish(), 0);
    json r = trace.stop();

    json st = json::parse(status, nullptr, false);
    ASSERT_TRUE(st.is_object()) << status;
    EXPECT_EQ(st["scope"], "system");
    bool listed_idle = false;
    for (const auto& p : st["heap_traced"])
        if (p["pid"] == idle_pid) {
            listed_idle = true;
            EXPECT_EQ(p["mode"], "normal") << p.dump();
            EXPECT_TRUE(p.contains("estimated_overhead_pct")) << p.dump();
        }
    EXPECT_TRUE(listed_idle) << status;
    const json* h = process_of(r, hot_pid);
    const json* i = process_of(r, idle_pid);
    ASSERT_TRUE(h && i);
    EXPECT_EQ((*h)["heap_traced"], true);
    EXPECT_NE((*h)["mode"], "normal") << h->dump();
    EXPECT_GT((*h)["totals"]["alloc_count"].get<std::uint64_t>(), 0u);
    EXPECT_EQ((*i)["heap_traced"], true) << i->dump() << "\n" << trace.err().substr(0, 3000);
    EXPECT_EQ((*i)["mode"], "normal") << i->dump();
}

// `ctl heap add` chooses a running process live; `heap drop` lets it go
// (its report so far stays); a malformed selector is refused by ctl itself.
TEST_F(System, CtlHeapAddAndDropChangeTheChoiceLive)
{
    SystemTrace trace("system_ctl_heap", {"--heap", "comm:nothing-here"});
    ASSERT_TRUE(trace.ready()) << trace.err();
    Child hog({target("mem_hog"), "2"});
    ASSERT_TRUE(hog.wait_for("ready ", false, 30s));
    const std::string sel = "pid:" + std::to_string(hog.pid);
    json added = json::parse(ctl(trace.pid(), {"heap", "add", sel}), nullptr, false);
    ASSERT_TRUE(added.is_object());
    EXPECT_EQ(added["ok"], true) << added.dump();
    ASSERT_EQ(added["heap_traced"].size(), 1u) << added.dump();
    EXPECT_EQ(added["heap_traced"][0]["pid"], hog.pid);
    json dropped = json::parse(ctl(trace.pid(), {"heap", "drop", sel}), nullptr, false);
    EXPECT_EQ(dropped["ok"], true) << dropped.dump();
    EXPECT_TRUE(dropped["heap_traced"].empty()) << dropped.dump();
    int status = 0;
    const std::string bad = ctl(trace.pid(), {"heap", "add", "uid:0"}, &status);
    EXPECT_EQ(status, 2) << bad;
    json again = json::parse(ctl(trace.pid(), {"heap", "drop", sel}), nullptr, false);
    EXPECT_TRUE(again.contains("error")) << again.dump();
    const int hog_pid = hog.pid;
    hog.close_stdin();
    EXPECT_EQ(hog.finish(), 0);
    json r = trace.stop();
    const json* p = process_of(r, hog_pid);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ((*p)["heap_traced"], true);
}

// A process in a pid namespace of its own is listed by its host pid, with
// the pid it has there (1: it is that namespace's first).
TEST_F(System, ProcessInAnotherPidNamespaceHasBothPids)
{
    SystemTrace trace("system_pidns");
    ASSERT_TRUE(trace.ready()) << trace.err();
    Child c({"/usr/bin/unshare", "--pid", "--fork", target("mem_hog"), "2"});
    ASSERT_TRUE(c.wait_for("ready ", false, 30s)) << c.err_text;
    const int unshare_pid = c.pid;
    c.close_stdin();
    EXPECT_EQ(c.finish(), 0);
    json r = trace.stop();
    const json* hog = nullptr;
    for (const auto& p : r["processes"])
        if (p["parent_pid"] == unshare_pid && p["comm"] == "target_mem_hog")
            hog = &p;
    ASSERT_NE(hog, nullptr);
    EXPECT_EQ((*hog)["other_pid_namespace"], true) << hog->dump();
    EXPECT_EQ((*hog)["ns_pid"], 1) << hog->dump();
    EXPECT_NE((*hog)["pid"], 1);
}

// A static program matched at its exec never reaches the host's loader:
// traced from when its probes are in place, and the report says so.
TEST_F(System, StaticProgramChosenIsTracedAndItsMissingHoldIsSaid)
{
    SystemTrace trace("system_static", {"--heap", "comm:target_static_a"});
    ASSERT_TRUE(trace.ready()) << trace.err();
    Child st({target("static_alloc")});
    const int pid = st.pid;
    EXPECT_EQ(st.finish(), 0);
    json r = trace.stop();
    const json* p = process_of(r, pid);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ((*p)["heap_traced"], true);
    // Its 100 pairs come 300 ms after its start: its probes are in place by then.
    EXPECT_GE((*p)["totals"]["alloc_count"].get<std::uint64_t>(), 100u) << p->dump();
    bool said = false;
    for (const auto& w : r["warnings"])
        said = said || (w.get<std::string>().find("pid " + std::to_string(pid)) != std::string::npos &&
                        w.get<std::string>().find("not held") != std::string::npos);
    EXPECT_TRUE(said) << r["warnings"].dump();
    EXPECT_FALSE(r["dropped"]["reasons"].contains("hold_timeout")) << r["dropped"].dump();
}

TEST_F(System, SelectorThatMatchesNothingIsSaidAndTracingGoesOn)
{
    Result r = run({kBin, "-a", "--duration", "1", "--heap", "comm:no-such-comm", "--heap", "pid:999999999"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("--heap comm:no-such-comm matches no running process; new ones that match will be traced"),
              std::string::npos) << r.err;
    EXPECT_NE(r.err.find("--heap pid:999999999 matches no running process"), std::string::npos) << r.err;
}

TEST_F(System, BadCombinationsExitTwoWithOneLine)
{
    for (const auto& argv : std::vector<std::vector<std::string>>{
             {kBin, "-a", "-p", "1"},
             {kBin, "-a", "run", "--", "/bin/true"},
             {kBin, "-a", "--heap", "comm"},
             {kBin, "-a", "--heap", "uid:0"},
             {kBin, "-a", "--heap", "exe:relative"},
             {kBin, "--heap", "comm:x", "-p", "1"}}) {
        Result r = run(argv);
        EXPECT_EQ(r.status, 2) << r.err;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    }
}

} // namespace
} // namespace e2e
