// `run` follows the command's children across fork and exec: one section
// per process, exact figures in each, totals over the whole command.
#include "harness.hpp"

#include <set>

using namespace e2e;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

std::vector<json> processes_running(const json& r, const std::string& exe)
{
    std::vector<json> out;
    for (const auto& p : r["processes"])
        if (p["exe"] == exe)
            out.push_back(p);
    return out;
}

std::uint64_t sum_over_processes(const json& r, const char* key)
{
    std::uint64_t n = 0;
    for (const auto& p : r["processes"])
        n += p["totals"][key].get<std::uint64_t>();
    return n;
}

} // namespace

TEST_F(E2E, RunFollowsAShellsChildrenAcrossForkAndExec)
{
    const std::string stacks = target("stacks10k");
    json r = trace_run({"/bin/sh", "-c", stacks + " 100; " + stacks + " 250"});
    EXPECT_EQ(r["children"]["traced"], true);
    auto runs = processes_running(r, stacks);
    ASSERT_EQ(runs.size(), 2u) << r["processes"].dump(1);
    std::multiset<std::uint64_t> counts;
    for (const auto& p : runs) {
        counts.insert(p["totals"]["alloc_count"].get<std::uint64_t>());
        EXPECT_EQ(p["totals"]["free_count"], p["totals"]["alloc_count"]);
        EXPECT_EQ(p["exit_code"], 0);
        EXPECT_EQ(p["parent_pid"], r["target"]["pid"]) << p.dump();
    }
    EXPECT_EQ(counts, (std::multiset<std::uint64_t>{100, 250}));
    // The whole command's totals are its processes'.
    for (const char* k : {"alloc_count", "alloc_bytes", "free_count", "free_bytes"})
        EXPECT_EQ(r["totals"][k], sum_over_processes(r, k)) << k;
    // Every site is a process's; the children's stacks are symbolized.
    std::uint64_t stack_allocs = 0;
    for (const auto& s : r["sites"])
        if (s["function"] == "step")
            stack_allocs += s["alloc_count"].get<std::uint64_t>();
    EXPECT_EQ(stack_allocs, 350u);
}

TEST_F(E2E, RunFollowsAForkWithoutExecAndItsExec)
{
    const std::string me = target("fork_alloc"), stacks = target("stacks10k");
    json r = trace_run({me, stacks, "30"});
    auto mine = processes_running(r, me);
    ASSERT_EQ(mine.size(), 2u) << r["processes"].dump(1); // the parent, and the child before its exec
    std::map<std::uint64_t, const json*> by_count;
    for (const auto& p : mine)
        by_count[p["totals"]["alloc_count"].get<std::uint64_t>()] = &p;
    ASSERT_TRUE(by_count.count(10) && by_count.count(100)) << r["processes"].dump(1);
    const json& child = *by_count[100];
    EXPECT_EQ(child["totals"]["free_count"], 40);
    EXPECT_EQ(child["totals"]["live_count"], 60); // at its exec: the program that had them is gone
    EXPECT_EQ(child["parent_pid"], r["target"]["pid"]);
    auto after = processes_running(r, stacks);
    ASSERT_EQ(after.size(), 1u) << r["processes"].dump(1);
    EXPECT_EQ(after[0]["pid"], child["pid"]); // the same process, its next program
    EXPECT_EQ(after[0]["totals"]["alloc_count"], 30);
    EXPECT_EQ(after[0]["exit_code"], 0);
    EXPECT_EQ(r["totals"]["alloc_count"], 140);
}

TEST_F(E2E, RunFollowsTheCommandsOwnExec)
{
    const std::string stacks = target("stacks10k");
    json r = trace_run({"/bin/sh", "-c", "exec " + stacks + " 40"});
    EXPECT_EQ(r["target"]["exe"], stacks);
    auto runs = processes_running(r, stacks);
    ASSERT_EQ(runs.size(), 1u) << r["processes"].dump(1);
    EXPECT_EQ(runs[0]["totals"]["alloc_count"], 40);
    EXPECT_EQ(runs[0]["pid"], r["target"]["pid"]);
}

TEST_F(E2E, NoFollowTracesTheCommandAlone)
{
    std::string path = temp_json("nofollow");
    Result res = run({kBin, "run", "--no-follow", "--json", path, "--", target("fork_alloc")});
    ASSERT_EQ(res.status, 0) << res.err;
    json r = load(path);
    EXPECT_EQ(r["children"]["traced"], false);
    EXPECT_EQ(r["totals"]["alloc_count"], 10);
}

TEST_F(E2E, AProcessClonedWithoutSigchldIsFollowedOrLetGoAsAFork)
{
    // clone() with no exit signal: the kernel reports it to a tracer as a
    // clone (as it does threads), not as a fork. Followed, it is a process
    // of the command's, counted exactly; with --no-follow it runs untraced.
    const std::string prog = target("clone_proc");
    json r = trace_run({prog});
    EXPECT_NE(last_.out.find("child traced: yes"), std::string::npos) << last_.out;
    auto runs = processes_running(r, prog);
    ASSERT_EQ(runs.size(), 2u) << r["processes"].dump(1);
    std::multiset<std::uint64_t> counts;
    for (const auto& p : runs)
        counts.insert(p["totals"]["alloc_count"].get<std::uint64_t>());
    EXPECT_EQ(counts, (std::multiset<std::uint64_t>{10, 100}));

    std::string path = temp_json("clone-nofollow");
    Result res = run({kBin, "run", "--no-follow", "--json", path, "--", prog});
    ASSERT_EQ(res.status, 0) << res.err;
    EXPECT_NE(res.out.find("child traced: no"), std::string::npos) << res.out;
    json alone = load(path);
    EXPECT_EQ(alone["children"]["traced"], false);
    EXPECT_EQ(alone["totals"]["alloc_count"], 10);
}

TEST_F(E2E, RunFollowsAnExecFromAThreadThatIsNotTheLeader)
{
    // The exec'ing thread becomes the leader; the probes placed for the old
    // leader die with it, so the new program is probed afresh.
    const std::string me = target("thread_exec"), stacks = target("stacks10k");
    json r = trace_run({me, stacks, "30"});
    auto before = processes_running(r, me);
    ASSERT_EQ(before.size(), 1u) << r["processes"].dump(1);
    EXPECT_GE(before[0]["totals"]["alloc_count"], 10);
    auto after = processes_running(r, stacks);
    ASSERT_EQ(after.size(), 1u) << r["processes"].dump(1);
    EXPECT_EQ(after[0]["pid"], r["target"]["pid"]);
    EXPECT_EQ(after[0]["totals"]["alloc_count"], 30);
    EXPECT_EQ(after[0]["totals"]["free_count"], 30);
    EXPECT_EQ(after[0]["exit_code"], 0);
    std::uint64_t stack_allocs = 0;
    for (const auto& s : r["sites"])
        if (s["function"] == "step")
            stack_allocs += s["alloc_count"].get<std::uint64_t>();
    EXPECT_EQ(stack_allocs, 30u);
}

TEST_F(E2E, SnapshotAndTimelineCoverTheFollowedProcesses)
{
    // phases runs as the shell's child (`; true` keeps the shell from
    // exec'ing it): SIGUSR1's snapshot and the timeline include it.
    const int pairs = 3000; // tests/targets/phases.c, per worker per phase
    std::string path = temp_json("follow-snapshot");
    Child tracer({kBin, "run", "--interval", "0.02", "--json", path, "--", "/bin/sh", "-c",
                  target("phases") + " 2; true"});
    ASSERT_TRUE(tracer.wait_for("ready\n", false)) << tracer.err_text;
    tracer.write_stdin("phase 1\n");
    ASSERT_TRUE(tracer.wait_for("done 1 ", false)) << tracer.err_text;
    kill(tracer.pid, SIGUSR1);
    json snap;
    for (int i = 0; i < 200 && snap.is_null(); ++i) {
        std::ifstream in(path);
        if (in.good())
            snap = json::parse(in, nullptr, false);
        if (snap.is_discarded())
            snap = nullptr;
        std::this_thread::sleep_for(20ms);
    }
    ASSERT_TRUE(snap.is_object()) << tracer.err_text;
    auto in_snapshot = processes_running(snap, target("phases"));
    ASSERT_EQ(in_snapshot.size(), 1u) << snap["processes"].dump(1);
    const json* w0 = thread_named(snap, "phase-w0");
    ASSERT_NE(w0, nullptr) << snap["threads"].dump(1);
    EXPECT_EQ((*w0)["alloc_count"], pairs);
    tracer.write_stdin("phase 2\nexit\n");
    ASSERT_EQ(tracer.finish(), 0) << tracer.err_text;

    json r = load(path);
    w0 = thread_named(r, "phase-w0");
    ASSERT_NE(w0, nullptr);
    EXPECT_EQ((*w0)["alloc_count"], 2 * pairs);
    bool sampled = false;
    for (const auto& t : r["timeline"]["threads"])
        sampled = sampled || t["name"] == "phase-w0";
    EXPECT_TRUE(sampled) << r["timeline"]["threads"].dump();
}

TEST_F(E2E, TheAnchorIgnoresSignalsAndIsStartedAgainIfKilled)
{
    // The anchor holds the shared sites' programs. Signals other than
    // SIGKILL do not reach it; killed, a new one takes its place when a new
    // site needs it (here the tracker's entry point in a program exec'd after).
    const std::string path = temp_json("anchor");
    Child tracer({kBin, "run", "--attach", "shared_sites", "--json", path, "--", "/bin/sh", "-c",
                  "read go; " + target("tracked_threads") + " 2 10; read done"});
    auto anchor_of = [](pid_t parent) {
        for (const auto& e : std::filesystem::directory_iterator("/proc")) {
            const std::string name = e.path().filename();
            if (name.find_first_not_of("0123456789") != std::string::npos)
                continue;
            std::ifstream in(e.path() / "stat");
            std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            auto open = stat.find('('), close = stat.rfind(')');
            if (open == std::string::npos || close == std::string::npos)
                continue;
            std::istringstream rest(stat.substr(close + 2));
            std::string state;
            int ppid = 0;
            rest >> state >> ppid;
            if (stat.substr(open + 1, close - open - 1) == "memscope-anchor" && ppid == parent && state != "Z")
                return static_cast<pid_t>(std::stoi(name));
        }
        return pid_t(-1);
    };
    pid_t anchor = -1;
    for (int i = 0; i < 200 && anchor < 0; ++i) {
        std::this_thread::sleep_for(50ms);
        anchor = anchor_of(tracer.pid);
    }
    ASSERT_GT(anchor, 0) << "no anchor";
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGQUIT})
        ASSERT_EQ(kill(anchor, sig), 0);
    std::this_thread::sleep_for(200ms);
    EXPECT_EQ(anchor_of(tracer.pid), anchor) << "a signal reached the anchor";
    ASSERT_EQ(kill(anchor, SIGKILL), 0);
    for (int i = 0; i < 100 && anchor_of(tracer.pid) == anchor; ++i)
        std::this_thread::sleep_for(20ms);
    tracer.write_stdin("go\n");
    pid_t next = -1;
    for (int i = 0; i < 250 && (next < 0 || next == anchor); ++i) {
        std::this_thread::sleep_for(20ms);
        next = anchor_of(tracer.pid);
    }
    EXPECT_GT(next, 0) << "no new anchor";
    EXPECT_NE(next, anchor);
    tracer.write_stdin("done\n");
    ASSERT_EQ(tracer.finish(), 0) << tracer.err_text;
    json r = load(path);
    EXPECT_EQ(r["totals"]["track_count"], 40) << tracer.err_text;
    // The child's variables, by name, in the command's report.
    auto runs = processes_running(r, target("tracked_threads"));
    ASSERT_EQ(runs.size(), 1u) << r["processes"].dump(1);
    ASSERT_EQ(r["variables"].size(), 40u);
    for (const auto& v : r["variables"])
        ASSERT_EQ(v["pid"], runs[0]["pid"]) << v.dump();
    std::map<std::string, std::uint64_t> counts;
    for (const auto& s : r["variable_summary"])
        counts[s["name"].get<std::string>()] = s["count"].get<std::uint64_t>();
    EXPECT_EQ(counts, (std::map<std::string, std::uint64_t>{{"data", 20}, {"text", 20}}));
}
