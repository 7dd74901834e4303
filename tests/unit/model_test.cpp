#include <gtest/gtest.h>

#include "model.hpp"
#include "session.hpp"

using namespace memscope;

TEST(Model, CountersTakeTheSumsAndLiveFigures)
{
    RawCounters sums;
    sums.alloc_count = 7;
    sums.alloc_bytes = 150;
    sums.free_count = 1;
    sums.free_bytes = 10;
    sums.unmatched_free_count = 4;
    sums.untracked_alloc_count = 3;
    sums.exit_unmatched_free_count = 6;
    std::uint64_t untracked = 0;
    Counters c = counters_of(sums, {140, 6, 150}, &untracked);
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
    Counters c = counters_of({}, {-8, -1, 0});
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
    derive_warnings(r);
    ASSERT_EQ(r.warnings.size(), 1u);
    EXPECT_NE(r.warnings[0].find("no allocator call"), std::string::npos);

    snap.threads = {thread(42, 1, 10, 10)};
    snap.children.forks = 2;
    r = make_report(snap, Target{42, "x", "/x", 0}, 1.0, 0);
    derive_warnings(r);
    derive_warnings(r); // said again: nothing added
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
        l.stack = s.stack; // as add_sites gives a leak its site's stack
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

// A child's tracked variables, their summary, scopes and tasks reach the
// command's report, named through the child's own descriptors.
TEST(Model, MergedSectionsKeepEachProcesssTrackedVariables)
{
    auto section = [](std::uint32_t pid, const std::string& var, std::uint64_t n, std::uint64_t bytes) {
        Report r;
        r.target.pid = static_cast<int>(pid);
        r.totals.alloc_count = n;
        r.totals.alloc_bytes = n * bytes;
        ThreadStats t;
        t.pid = pid;
        t.tid = pid;
        t.counters.alloc_count = n;
        t.counters.alloc_bytes = n * bytes;
        t.counters.track_count = n;
        r.threads.push_back(t);
        for (const std::string& name : {std::string("padding_") + std::to_string(pid), var, std::string("work")}) {
            Descriptor d;
            d.name = name;
            d.type = "int";
            d.valid = true;
            r.tracked.descriptors.push_back(d);
        }
        for (std::uint64_t i = 0; i < n; ++i) {
            Variable v;
            v.tgid = pid;
            v.tid = pid;
            v.desc = 1;
            v.scope = 2;
            v.size = bytes;
            v.heap = true;
            v.addr = 0x1000 + i;
            r.tracked.variables.push_back(v);
        }
        r.tracked.summary.push_back({1, n, n * bytes, n, n * bytes});
        r.tracked.scopes.push_back({2, 0, n, n * bytes, pid});
        r.tracked.tasks.push_back({2, 1, n, n * bytes, pid});
        r.tracked.modules.push_back("/bin/prog");
        r.tracked.unreadable_descriptors = pid == 200 ? 1 : 0;
        return r;
    };
    Report root = section(100, "shared", 2, 8);
    std::vector<Report> children;
    children.push_back(section(200, "shared", 3, 8));
    children.push_back(section(300, "child_only", 4, 16));
    Report other = section(400, "other", 1, 8); // its scope "work" is declared elsewhere
    other.tracked.descriptors[2].file = "elsewhere.c";
    children.push_back(other);
    merge_processes(root, std::move(children), 0);
    derive_warnings(root);
    nlohmann::json j = report_to_json(root);
    EXPECT_EQ(j["totals"]["track_count"], 10);
    // Every variable, each named by its own process's descriptor.
    std::map<std::string, int> names;
    for (const auto& line : j["variables"])
        names[line["name"].get<std::string>() + "@" + std::to_string(line["pid"].get<int>())]++;
    EXPECT_EQ(names, (std::map<std::string, int>{
                         {"shared@100", 2}, {"shared@200", 3}, {"child_only@300", 4}, {"other@400", 1}}));
    // One summary line per name over the command.
    ASSERT_EQ(j["variable_summary"].size(), 3u) << j["variable_summary"].dump();
    std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> summary;
    for (const auto& s : j["variable_summary"])
        summary[s["name"].get<std::string>()] = {s["count"].get<std::uint64_t>(), s["bytes"].get<std::uint64_t>()};
    EXPECT_EQ(summary["shared"], std::make_pair(std::uint64_t{5}, std::uint64_t{40}));
    EXPECT_EQ(summary["child_only"], std::make_pair(std::uint64_t{4}, std::uint64_t{64}));
    EXPECT_EQ(j["variable_summary"][0]["name"], "child_only"); // largest first
    // Scopes by descriptor (three "work" at one place, one elsewhere); tasks
    // per process, largest first.
    ASSERT_EQ(j["scopes"].size(), 2u) << j["scopes"].dump();
    EXPECT_EQ(j["scopes"][0]["name"], "work");
    EXPECT_EQ(j["scopes"][0]["alloc_count"], 9);
    EXPECT_EQ(j["scopes"][1]["file"], "elsewhere.c");
    EXPECT_EQ(j["scopes"][1]["alloc_count"], 1);
    ASSERT_EQ(j["tasks"].size(), 4u);
    EXPECT_EQ(j["tasks"][0]["pid"], 300);
    EXPECT_EQ(j["tasks"][0]["alloc_bytes"], 64);
    EXPECT_EQ(j["tracker"]["unreadable_descriptors"], 1);
    EXPECT_EQ(std::count_if(root.warnings.begin(), root.warnings.end(),
                            [](const std::string& w) { return w.find("could not be read") != std::string::npos; }),
              1);
}

TEST(Model, UnrecordedAllocationsMakeLiveAndPeakInexactOnce)
{
    Report r;
    note_unrecorded(r);
    EXPECT_TRUE(r.live_bytes_exact);
    EXPECT_TRUE(r.peak_live_bytes_exact);
    EXPECT_TRUE(r.warnings.empty());
    r.dropped.untracked_allocations = 49000;
    note_unrecorded(r);
    note_unrecorded(r); // said again (a merge): still one warning
    EXPECT_FALSE(r.live_bytes_exact);
    EXPECT_FALSE(r.peak_live_bytes_exact);
    ASSERT_EQ(r.warnings.size(), 1u);
    EXPECT_NE(r.warnings[0].find("49000 allocations were counted but not recorded"), std::string::npos) << r.warnings[0];
    EXPECT_EQ(report_to_json(r)["totals"]["live_bytes_exact"], false);
}
