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
