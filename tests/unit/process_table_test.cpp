// -a's process table: a reused pid never mixes two processes, exits and
// their statuses land on the right one, the exited list is bounded.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "process_table.hpp"
#include "system_procs.hpp"

namespace memscope {
namespace {

ms_sys_proc entry(std::uint64_t start_ns, std::uint64_t anon, std::uint32_t flags = 0, const char* comm = "worker")
{
    ms_sys_proc p{};
    p.start_ns = start_ns;
    p.first_seen_ns = 1;
    p.rss[MS_RSS_ANON] = anon;
    p.peak_rss_anon = anon;
    p.flags = flags;
    p.ppid = 1;
    std::strncpy(p.comm, comm, sizeof p.comm - 1);
    return p;
}

ProcessSection listed(int pid, std::uint64_t anon)
{
    ProcessSection s;
    s.target.pid = pid;
    s.target.comm = "old";
    s.memory.emplace();
    s.memory->rss_anon_bytes = s.memory->peak_rss_anon_bytes = anon;
    return s;
}

TEST(ProcessTable, ListedProcessTakesItsFirstEntryAndKeepsThePeakProcSaw)
{
    ProcessTable t(10);
    t.list(listed(42, 5000), 0);
    t.update(42, entry(777, 3000), 1.0);
    ASSERT_EQ(t.live().size(), 1u);
    const WatchedProcess& w = t.live().at(42);
    EXPECT_EQ(w.start_ns, 777u);
    EXPECT_EQ(w.section.memory->rss_anon_bytes, 3000u);
    EXPECT_EQ(w.section.memory->peak_rss_anon_bytes, 5000u);
    EXPECT_EQ(w.section.target.comm, "worker");
    EXPECT_DOUBLE_EQ(w.section.memory->anon_growth_bytes_per_s, -2000.0);
    EXPECT_EQ(t.summary().processes_seen, 1u);
}

TEST(ProcessTable, GrowthStartsAfreshAtExec)
{
    // A child forked from a large parent has the parent's memory until it
    // execs: the new program's growth is measured from its exec.
    ProcessTable t(10);
    const std::uint64_t mib = 1 << 20;
    ms_sys_proc forked = entry(900, 400 * mib, MS_SYS_SEEN_FORK);
    forked.first_seen_ns = 0;
    forked.first_rss_anon = 400 * mib;
    t.update(42, forked, 0.0);
    ms_sys_proc exec = entry(900, 1 * mib, MS_SYS_SEEN_FORK);
    exec.first_seen_ns = 0;
    exec.first_rss_anon = 1 * mib;
    t.exec(42, exec, 1.0);
    exec.rss[MS_RSS_ANON] = 3 * mib;
    t.update(42, exec, 3.0);
    const MemoryFigures& m = *t.live().at(42).section.memory;
    EXPECT_DOUBLE_EQ(m.anon_growth_bytes_per_s, static_cast<double>(mib));
    EXPECT_EQ(m.peak_rss_anon_bytes, 400 * mib); // the process's peak stays
}

TEST(ProcessTable, ListedProcessIsNotTakenForOneBornWhileTraced)
{
    ProcessTable t(10);
    t.list(listed(42, 5000), 0);
    t.update(42, entry(900, 100, MS_SYS_SEEN_FORK), 1.0);
    auto all = t.sections();
    ASSERT_EQ(all.size(), 2u);
    EXPECT_TRUE(all[0].exited != all[1].exited);
    EXPECT_EQ(t.summary().births, 1u);
    EXPECT_EQ(t.summary().processes_seen, 2u);
}

TEST(ProcessTable, ListedProcessBornJustBeforeTheListingIsOneProcessByItsStartTime)
{
    // Forked while tracing started: /proc listed it, and the kernel saw its fork.
    ProcessTable t(10);
    const std::uint64_t tick_ns = 1000000000ull / static_cast<std::uint64_t>(sysconf(_SC_CLK_TCK));
    t.list(listed(42, 5000), 0, 1234);
    ms_sys_proc born = entry(777, 3000, MS_SYS_SEEN_FORK);
    born.start_boottime_ns = 1234 * tick_ns + tick_ns / 3;
    t.update(42, born, 1.0);
    EXPECT_EQ(t.sections().size(), 1u);
    // Another start time: the listed one is gone, this is a new process.
    ProcessTable u(10);
    u.list(listed(42, 5000), 0, 1234);
    born.start_boottime_ns = 1300 * tick_ns;
    u.update(42, born, 1.0);
    EXPECT_EQ(u.sections().size(), 2u);
}

TEST(ProcessTable, ReusedPidIsAnotherProcessAndTheLateExitFindsTheFirst)
{
    ProcessTable t(10);
    t.update(7, entry(100, 1000, MS_SYS_SEEN_FORK, "first"), 0.5);
    // The map shows a new process under pid 7 before the first one's exit event is read.
    t.update(7, entry(200, 50, MS_SYS_SEEN_FORK, "second"), 1.0);
    ms_sys_proc gone = entry(100, 1000, MS_SYS_SEEN_FORK | MS_SYS_EXITED, "first");
    t.exit(7, &gone, 3 << 8, 1.1); // exit(3)
    auto all = t.sections();
    ASSERT_EQ(all.size(), 2u);
    const ProcessSection& first = all[0].target.comm == "first" ? all[0] : all[1];
    const ProcessSection& second = all[0].target.comm == "first" ? all[1] : all[0];
    EXPECT_TRUE(first.exited);
    EXPECT_EQ(first.target.exit_code, 3);
    EXPECT_FALSE(second.exited);
    EXPECT_FALSE(second.target.exit_code.has_value());
    EXPECT_EQ(second.memory->rss_anon_bytes, 50u);
    EXPECT_EQ(t.summary().exits, 1u);
    EXPECT_EQ(t.summary().births, 2u);
}

TEST(ProcessTable, ExitWithLastFiguresAndSignalStatus)
{
    ProcessTable t(10);
    t.update(9, entry(5, 10, MS_SYS_SEEN_FORK), 0.1);
    ms_sys_proc last = entry(5, 4096, MS_SYS_SEEN_FORK);
    t.exit(9, &last, SIGKILL, 0.2);
    EXPECT_TRUE(t.live().empty());
    auto all = t.sections();
    ASSERT_EQ(all.size(), 1u);
    EXPECT_EQ(all[0].target.exit_code, 128 + SIGKILL);
    EXPECT_EQ(all[0].memory->rss_anon_bytes, 4096u);
}

TEST(ProcessTable, ExitOfAnUnknownPidIsAKernelThreadAndNotCounted)
{
    ProcessTable t(10);
    t.exit(1234, nullptr, 0, 0.1);
    EXPECT_TRUE(t.sections().empty());
    EXPECT_EQ(t.summary().exits, 0u);
}

TEST(ProcessTable, ExitedPastTheLimitAreCountedNotListed)
{
    ProcessTable t(2);
    for (int pid = 10; pid < 15; ++pid) {
        ms_sys_proc p = entry(static_cast<std::uint64_t>(pid), static_cast<std::uint64_t>(pid) * 100, MS_SYS_SEEN_FORK);
        t.exit(pid, &p, 0, 0.1);
    }
    EXPECT_EQ(t.sections().size(), 2u);
    EXPECT_EQ(t.summary().not_listed, 3u);
    EXPECT_EQ(t.summary().not_listed_peak_rss_anon_bytes, 1400u);
    EXPECT_EQ(t.summary().exits, 5u);
    EXPECT_EQ(t.summary().processes_seen, 5u);
}

TEST(ProcessTable, OomKillIsRecordedWithItsFiguresAndMarksTheProcess)
{
    ProcessTable t(10);
    t.update(3, entry(1, 10), 0.1);
    t.oom(3, entry(1, 32 << 20, MS_SYS_OOM_KILLED, "hog"), 0.5);
    ASSERT_EQ(t.oom_kills().size(), 1u);
    EXPECT_EQ(t.oom_kills()[0].comm, "hog");
    EXPECT_EQ(t.oom_kills()[0].memory.rss_anon_bytes, 32u << 20);
    EXPECT_TRUE(t.live().at(3).section.oom_killed);
    EXPECT_EQ(t.summary().oom_kills, 1u);
}

TEST(ProcStatus, KernelThreadHasNoMemoryAndNamespacedPidIsTheInnermost)
{
    EXPECT_FALSE(parse_proc_status(2, "Name:\tkthreadd\nPPid:\t0\nNSpid:\t2\n").has_value());
    auto f = parse_proc_status(4000, "Name:\tweb\\nserver\nPPid:\t3999\nNSpid:\t4000\t17\n"
                                     "RssAnon:\t    2048 kB\nRssFile:\t 1024 kB\nRssShmem:\t 0 kB\nVmSwap:\t 4 kB\n");
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(f->comm, "web\\nserver");
    EXPECT_EQ(f->ppid, 3999);
    EXPECT_EQ(f->ns_pid, 17);
    EXPECT_TRUE(f->other_pid_namespace);
    EXPECT_EQ(f->rss_anon, 2048u * 1024);
    EXPECT_EQ(f->rss_file, 1024u * 1024);
    EXPECT_EQ(f->swap, 4096u);
}

} // namespace
} // namespace memscope

#include "selectors.hpp"

namespace memscope {
namespace {

TEST(HeapSelector, ParsesEachKindAndRefusesMalformedOnesInOneSentence)
{
    std::string why;
    auto p = parse_heap_selector("pid:42", why);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->pid, 42);
    auto c = parse_heap_selector("cgroup:/system.slice/", why);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->value, "/system.slice");
    for (const char* bad : {"42", "pid:", "pid:-1", "pid:x", "comm:0123456789abcdef", "exe:relative/path",
                            "cgroup:nope", "uid:0"}) {
        why.clear();
        EXPECT_FALSE(parse_heap_selector(bad, why)) << bad;
        EXPECT_NE(why.find(bad), std::string::npos) << why;
        EXPECT_EQ(why.find('\n'), std::string::npos);
    }
}

TEST(HeapSelector, CgroupPrefixMatchesWholeComponentsOnly)
{
    std::string why;
    auto s = *parse_heap_selector("cgroup:/a/b", why);
    EXPECT_TRUE(selector_matches(s, {1, "x", "", "/a/b"}));
    EXPECT_TRUE(selector_matches(s, {1, "x", "", "/a/b/c"}));
    EXPECT_FALSE(selector_matches(s, {1, "x", "", "/a/bc"}));
    EXPECT_FALSE(selector_matches(s, {1, "x", "", ""}));
    auto root = *parse_heap_selector("cgroup:/", why);
    EXPECT_TRUE(selector_matches(root, {1, "x", "", "/anything"}));
    auto comm = *parse_heap_selector("comm:web", why);
    EXPECT_TRUE(selector_matches(comm, {1, "web", "", ""}));
    EXPECT_FALSE(selector_matches(comm, {1, "webx", "", ""}));
}

} // namespace
} // namespace memscope

#include "heap_set.hpp"

namespace memscope {
namespace {

Report heap_section(int pid, std::uint32_t tid, std::uint64_t allocs, const std::string& mode, bool exited)
{
    Report r;
    r.target.pid = pid;
    r.target.comm = "p" + std::to_string(pid);
    if (exited)
        r.target.exit_code = 0;
    r.mode = mode;
    ThreadStats t;
    t.pid = static_cast<std::uint32_t>(pid);
    t.tid = tid;
    t.counters.alloc_count = allocs;
    t.counters.alloc_bytes = allocs * 16;
    r.threads.push_back(t);
    compute_totals(r, 0);
    return r;
}

// The chosen processes' reports become -a's threads and totals; each goes
// to its own entry, the exited one of a reused pid to the exited entry.
TEST(FoldHeapSections, EachSectionMarksItsOwnProcessEntry)
{
    Report sys;
    sys.mode_scope = "system";
    ProcessSection a, gone, again, other;
    a.target.pid = 10;
    gone.target.pid = 20;
    gone.exited = true;
    again.target.pid = 20; // the pid reused by a process not chosen
    other.target.pid = 30;
    sys.processes = {a, gone, again, other};
    fold_heap_sections(sys, {heap_section(10, 10, 5, "normal", false), heap_section(20, 21, 7, "released", true)});
    EXPECT_EQ(sys.totals.alloc_count, 12u);
    EXPECT_EQ(sys.threads.size(), 2u);
    EXPECT_TRUE(sys.processes[0].heap_traced);
    EXPECT_EQ(sys.processes[0].totals.alloc_count, 5u);
    EXPECT_EQ(sys.processes[0].mode, "normal");
    EXPECT_TRUE(sys.processes[1].heap_traced);
    EXPECT_EQ(sys.processes[1].mode, "released");
    EXPECT_EQ(sys.processes[1].totals.alloc_count, 7u);
    EXPECT_FALSE(sys.processes[2].heap_traced);
    EXPECT_FALSE(sys.processes[3].heap_traced);
}

} // namespace
} // namespace memscope

#include "system_run.hpp"

namespace memscope {
namespace {

// The top-like view: fastest-growing first, the heap-traced ones' modes,
// a hostile name escaped.
TEST(SystemLive, FastestGrowingFirstWithHeapModesAndEscapedNames)
{
    ProcessTable t(10);
    t.update(1, entry(1, 1 << 20, 0, "idle"), 0.0);
    t.update(2, entry(2, 1 << 20, 0, "grow\x1b[2J"), 0.0);
    t.update(1, entry(1, 1 << 20, 0, "idle"), 1.0);
    t.update(2, entry(2, 9 << 20, 0, "grow\x1b[2J"), 1.0);
    const std::string view = format_system_live(t, 1.0, 10, {{2, "fast"}});
    const auto grow = view.find("grow"), idle = view.find("idle");
    ASSERT_NE(grow, std::string::npos);
    ASSERT_NE(idle, std::string::npos);
    EXPECT_LT(grow, idle) << view;
    EXPECT_EQ(view.find('\x1b'), std::string::npos) << view;
    EXPECT_NE(view.find("fast"), std::string::npos) << view;
    EXPECT_NE(view.find("8.0"), std::string::npos) << view; // MiB/s of growth
}

} // namespace
} // namespace memscope
