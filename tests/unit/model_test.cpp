#include <gtest/gtest.h>

#include "model.hpp"
#include "session.hpp"

using namespace memscope;

TEST(Model, SumsPerCpuSlices)
{
    std::vector<CpuCounters> cpus(3);
    cpus[0].alloc_count = 2;
    cpus[0].alloc_bytes = 100;
    cpus[1].alloc_count = 5;
    cpus[1].alloc_bytes = 50;
    cpus[1].free_count = 1;
    cpus[1].free_bytes = 10;
    cpus[2].unmatched_free_count = 4;
    cpus[2].untracked_alloc_count = 3;
    cpus[2].exit_unmatched_free_count = 6;
    std::uint64_t untracked = 0;
    Counters c = sum_counters(cpus, {140, 6, 150}, &untracked);
    EXPECT_EQ(c.alloc_count, 7u);
    EXPECT_EQ(c.alloc_bytes, 150u);
    EXPECT_EQ(c.free_count, 1u);
    EXPECT_EQ(c.free_bytes, 10u);
    EXPECT_EQ(c.unmatched_free_count, 4u);
    EXPECT_EQ(c.exit_unmatched_free_count, 6u);
    EXPECT_EQ(c.live_bytes, 140u);
    EXPECT_EQ(c.live_count, 6u);
    EXPECT_EQ(c.peak_live_bytes, 150u);
    EXPECT_EQ(untracked, 3u);
}

TEST(Model, TransientNegativeLiveReadsAsZero)
{
    Counters c = sum_counters({}, {-8, -1, 0});
    EXPECT_EQ(c.live_bytes, 0u);
    EXPECT_EQ(c.live_count, 0u);
}

static ThreadStats thread(std::uint32_t tid, std::uint64_t allocs, std::uint64_t live, std::uint64_t peak)
{
    ThreadStats t;
    t.tid = tid;
    t.counters.alloc_count = allocs;
    t.counters.alloc_bytes = allocs * 10;
    t.counters.live_bytes = live;
    t.counters.live_count = live ? 1 : 0;
    t.counters.peak_live_bytes = peak;
    return t;
}

TEST(Model, TotalsAndPeakExactness)
{
    Report r;
    r.threads = {thread(3, 4, 30, 40)};
    compute_totals(r, 0);
    EXPECT_TRUE(r.peak_live_bytes_exact);
    EXPECT_EQ(r.totals.peak_live_bytes, 40u);

    r.threads.push_back(thread(2, 1, 5, 100));
    r.threads[1].untracked_alloc_count = 2;
    compute_totals(r, 120);
    EXPECT_FALSE(r.peak_live_bytes_exact); // two threads held memory
    EXPECT_EQ(r.totals.alloc_count, 5u);
    EXPECT_EQ(r.totals.alloc_bytes, 50u);
    EXPECT_EQ(r.totals.live_bytes, 35u);
    EXPECT_EQ(r.totals.peak_live_bytes, 120u); // the sample beats each thread's own peak
    EXPECT_EQ(r.dropped.untracked_allocations, 2u);

    sort_threads(r);
    EXPECT_EQ(r.threads[0].tid, 2u);
}

TEST(Model, ShellStatus)
{
    EXPECT_EQ(shell_status(7 << 8), 7);
    EXPECT_EQ(shell_status(9), 137);   // killed by SIGKILL
    EXPECT_EQ(shell_status(0), 0);
}

TEST(Model, ReportWarnsWhenNothingWasSeen)
{
    Snapshot snap;
    Report r = make_report(snap, Target{42, "x", "/x", 0}, 1.0, 0);
    ASSERT_EQ(r.warnings.size(), 1u);
    EXPECT_NE(r.warnings[0].find("no allocator call"), std::string::npos);

    snap.threads = {thread(42, 1, 10, 10)};
    snap.children.forks = 2;
    r = make_report(snap, Target{42, "x", "/x", 0}, 1.0, 0);
    ASSERT_EQ(r.warnings.size(), 1u);
    EXPECT_NE(r.warnings[0].find("2 forked"), std::string::npos);
}

#include "report_json.hpp"

// Sections of several processes merge into the command's report: a child's
// leaks keep their own variables and their own stacks, even where a stack's
// hash is the same number in two processes.
TEST(Model, MergedSectionsKeepEachProcesssStacksAndVariables)
{
    auto section = [](std::uint32_t pid, const std::string& fn, const std::string& var) {
        Report r;
        r.target.pid = static_cast<int>(pid);
        r.totals.alloc_count = 1;
        r.totals.alloc_bytes = 16;
        Site s;
        s.pid = pid;
        s.id = 0x1234; // the same hash in both processes
        Frame f;
        f.symbol = fn;
        s.stack = {f};
        s.alloc_count = 1;
        s.alloc_bytes = 16;
        s.live_count = 1;
        s.live_bytes = 16;
        r.sites.push_back(s);
        Descriptor d;
        d.name = var;
        d.type = "int";
        d.valid = true;
        r.tracked.descriptors.push_back(d);
        Leak l;
        l.pid = pid;
        l.id = 0x1234;
        l.live_count = 1;
        l.live_bytes = 16;
        l.variables.push_back({0, 1, 16});
        r.leaks.push_back(l);
        return r;
    };
    Report root = section(100, "root_fn()", "root_var");
    std::vector<Report> children;
    children.push_back(section(200, "child_fn()", "child_var"));
    merge_processes(root, std::move(children), 0);
    nlohmann::json j = report_to_json(root);
    ASSERT_EQ(j["leaks"].size(), 2u);
    std::map<int, std::pair<std::string, std::string>> by_pid;
    for (const auto& l : j["leaks"])
        by_pid[l["pid"].get<int>()] = {l["function"].get<std::string>(), l["variables"][0]["name"].get<std::string>()};
    EXPECT_EQ(by_pid[100], std::make_pair(std::string("root_fn()"), std::string("root_var")));
    EXPECT_EQ(by_pid[200], std::make_pair(std::string("child_fn()"), std::string("child_var")));
    EXPECT_EQ(j["processes"].size(), 2u);
}
