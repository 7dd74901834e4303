// The exports' encoders: pprof profiles (decoded back with libprotobuf),
// Prometheus text, and the addresses --listen and --push take.
#include <gtest/gtest.h>
#include <zlib.h>

#include <map>
#include <string>

#include "exporter.hpp"
#include "frames.hpp"
#include "metrics.hpp"
#include "pprof.hpp"
#include "profile.pb.h"

using namespace memscope;
using memscope_test::frame;

namespace {

perftools::profiles::Profile decode(const std::string& gz)
{
    std::string raw(1 << 20, '\0');
    z_stream z{};
    EXPECT_EQ(inflateInit2(&z, 31), Z_OK);
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
    z.avail_in = static_cast<uInt>(gz.size());
    z.next_out = reinterpret_cast<Bytef*>(raw.data());
    z.avail_out = static_cast<uInt>(raw.size());
    EXPECT_EQ(inflate(&z, Z_FINISH), Z_STREAM_END);
    raw.resize(z.total_out);
    inflateEnd(&z);
    perftools::profiles::Profile p;
    EXPECT_TRUE(p.ParseFromString(raw));
    return p;
}

std::array<std::int64_t, 4> sums(const perftools::profiles::Profile& p)
{
    std::array<std::int64_t, 4> s{};
    for (const auto& sample : p.sample())
        for (int i = 0; i < 4; ++i)
            s[static_cast<std::size_t>(i)] += sample.value(i);
    return s;
}

// One process: two sites, one of them through an inlined function, a leak
// on two threads, and allocations no site holds.
Report sample_report()
{
    Report r;
    r.target = {42, "app", "/usr/bin/app", std::nullopt};
    r.duration_s = 2;
    r.totals.alloc_count = 10;
    r.totals.alloc_bytes = 1000;
    r.totals.live_count = 3;
    r.totals.live_bytes = 300;
    Site a;
    a.pid = 42;
    a.id = 1;
    Frame inl = frame("inner_inlined", "/usr/bin/app", 0x1100);
    inl.inlined = true;
    inl.file = "app.c";
    inl.line = 7;
    Frame outer = frame("outer", "/usr/bin/app", 0x1100);
    outer.file = "app.c";
    outer.line = 20;
    a.stack = {inl, outer, frame("main", "/usr/bin/app", 0x1200)};
    a.alloc_count = 6;
    a.alloc_bytes = 600;
    Site b;
    b.pid = 42;
    b.id = 2;
    b.stack = {frame("", "/usr/lib/libfoo.so", 0x40), frame("main", "/usr/bin/app", 0x1210)};
    b.alloc_count = 3;
    b.alloc_bytes = 300;
    r.sites = {a, b};
    Leak l;
    l.pid = 42;
    l.id = 1;
    l.stack = a.stack;
    l.live_count = 2;
    l.live_bytes = 200;
    l.threads = {{43, "worker \"1\"", 1, 150}, {44, "io", 1, 50}};
    r.leaks = {l};
    return r;
}

} // namespace

TEST(Pprof, SumsAreTheReportsTotalsAndEveryLocationHasAMapping)
{
    const Report r = sample_report();
    auto p = decode(heap_profile(r, {1, 2}));
    auto str = [&](std::int64_t i) { return p.string_table(static_cast<int>(i)); };
    ASSERT_EQ(p.sample_type_size(), 4);
    EXPECT_EQ(str(p.sample_type(0).type()), "alloc_objects");
    EXPECT_EQ(str(p.sample_type(1).unit()), "bytes");
    EXPECT_EQ(str(p.sample_type(3).type()), "inuse_space");
    EXPECT_EQ(str(p.period_type().type()), "space");
    EXPECT_EQ(str(p.default_sample_type()), "inuse_space");
    // The site-less remainder (1 allocation, 100 bytes; 1 block, 100 bytes live) is a sample too.
    EXPECT_EQ(sums(p), (std::array<std::int64_t, 4>{10, 1000, 3, 300}));
    for (const auto& l : p.location())
        EXPECT_NE(l.mapping_id(), 0u) << l.id();
    // The inlined function is a line of its caller's location, innermost first.
    bool found = false;
    for (const auto& l : p.location())
        if (l.line_size() == 2) {
            found = true;
            EXPECT_EQ(str(p.function(static_cast<int>(l.line(0).function_id() - 1)).name()), "inner_inlined");
            EXPECT_EQ(l.line(0).line(), 7);
            EXPECT_EQ(str(p.function(static_cast<int>(l.line(1).function_id() - 1)).filename()), "app.c");
        }
    EXPECT_TRUE(found);
    // In-use samples carry the thread's name; every sample its pid.
    std::map<std::string, std::int64_t> by_thread;
    for (const auto& s : p.sample()) {
        std::string pid, thread;
        for (const auto& l : s.label())
            (str(l.key()) == "pid" ? pid : thread) = str(l.str());
        EXPECT_EQ(pid, "42");
        if (!thread.empty())
            by_thread[thread] += s.value(3);
    }
    EXPECT_EQ(by_thread["worker \"1\""], 150);
    EXPECT_EQ(by_thread["io"], 50);
}

TEST(Pprof, DeltasAddUpToTheTotals)
{
    Report first = sample_report();
    AllocBaseline base;
    auto p1 = decode(heap_profile(first, {}, &base));
    Report second = sample_report();
    second.sites[0].alloc_count += 4;
    second.sites[0].alloc_bytes += 400;
    second.totals.alloc_count += 5;
    second.totals.alloc_bytes += 450;
    auto p2 = decode(heap_profile(second, {}, &base));
    auto s1 = sums(p1), s2 = sums(p2);
    EXPECT_EQ(s2[0], 5);
    EXPECT_EQ(s2[1], 450);
    EXPECT_EQ(s1[0] + s2[0], 15);
    EXPECT_EQ(s1[1] + s2[1], 1450);
    EXPECT_EQ(s2[3], 300); // in use: a snapshot, not a delta
}

TEST(Pprof, StringsThatAreNotUtf8AreReplaced)
{
    Report r = sample_report();
    r.leaks[0].threads[0].name = "bad\xff\xfename";
    auto p = decode(heap_profile(r, {}));
    bool seen = false;
    for (const auto& s : p.string_table())
        if (s.find("bad") == 0) {
            seen = true;
            EXPECT_EQ(s, "bad\xEF\xBF\xBD\xEF\xBF\xBDname");
        }
    EXPECT_TRUE(seen);
}

TEST(Metrics, LabelsAreEscapedAndThreadsOfOneNameSummed)
{
    Report r = sample_report();
    r.target.comm = "ev\"il\\\n\xff";
    ThreadStats t1, t2, t3;
    t1.pid = t2.pid = t3.pid = 42;
    t1.tid = 42, t2.tid = 43, t3.tid = 44;
    t1.name = "main";
    t2.name = t3.name = "worker";
    t1.counters.alloc_bytes = 10, t2.counters.alloc_bytes = 20, t3.counters.alloc_bytes = 30;
    t2.counters.live_bytes = 5, t3.counters.live_bytes = 6;
    r.threads = {t1, t2, t3};
    r.totals.peak_live_bytes = 77;
    const std::string text = prometheus_metrics(r, {}, [](int) { return std::string("/svc/a"); });
    const std::string labels = "comm=\"ev\\\"il\\\\\\n\xEF\xBF\xBD\",exe=\"/usr/bin/app\",cgroup=\"/svc/a\"";
    EXPECT_NE(text.find("memscope_heap_alloc_bytes_total{" + labels + ",thread=\"worker\"} 50\n"), std::string::npos)
        << text;
    EXPECT_NE(text.find("memscope_heap_live_bytes{" + labels + ",thread=\"worker\"} 11\n"), std::string::npos);
    EXPECT_NE(text.find("memscope_heap_alloc_bytes_total{" + labels + ",thread=\"main\"} 10\n"), std::string::npos);
    EXPECT_NE(text.find("memscope_heap_peak_live_bytes{" + labels + "} 77\n"), std::string::npos);
    EXPECT_NE(text.find("# TYPE memscope_heap_allocs_total counter\n"), std::string::npos);
    EXPECT_EQ(text.find("pid="), std::string::npos); // no pid label
}

TEST(Metrics, ThreadNamesAreBounded)
{
    Report r = sample_report();
    for (std::uint32_t i = 0; i < kMaxThreadNames + 10; ++i) {
        ThreadStats t;
        t.pid = 42;
        t.tid = 100 + i;
        t.name = "t" + std::to_string(i);
        t.counters.alloc_count = 1;
        r.threads.push_back(t);
    }
    const std::string text = prometheus_metrics(r, {});
    std::size_t series = 0;
    for (std::size_t at = 0; (at = text.find("memscope_heap_allocs_total{", at)) != std::string::npos; ++at)
        ++series;
    EXPECT_EQ(series, kMaxThreadNames + 1);
    EXPECT_NE(text.find(",thread=\"[other]\"} 10\n"), std::string::npos) << text;
}

TEST(Metrics, SystemWideGroupsProcessesByLabels)
{
    Report r;
    r.mode_scope = "system";
    for (int pid : {10, 11, 12}) {
        ProcessSection s;
        s.target = {pid, pid == 12 ? "other" : "web", "/usr/bin/web", std::nullopt};
        s.cgroup = "/system.slice/web.service";
        s.memory = MemoryFigures{};
        s.memory->rss_anon_bytes = 1000;
        s.exited = pid == 11;
        r.processes.push_back(s);
    }
    const std::string text = prometheus_metrics(r, {});
    EXPECT_NE(text.find("memscope_rss_anon_bytes{comm=\"web\",exe=\"/usr/bin/web\",cgroup=\"/system.slice/web.service\"} "
                        "1000\n"),
              std::string::npos)
        << text; // the exited one is not resident
    EXPECT_EQ(text.find("memscope_heap_peak_live_bytes{"), std::string::npos); // none heap-traced
}

TEST(ExportArguments, ListenAndPushAreCheckedBeforeTracing)
{
    std::string why;
    auto a = parse_listen_address("9100", why);
    ASSERT_TRUE(a);
    EXPECT_EQ(a->host, "127.0.0.1");
    EXPECT_EQ(a->port, 9100);
    a = parse_listen_address("[::1]:0", why);
    ASSERT_TRUE(a);
    EXPECT_EQ(a->host, "::1");
    for (const char* bad : {"", "host:80", "127.0.0.1:", "127.0.0.1:99999", "::1:80", "1.2.3.4:8o", "[::1]80"})
        EXPECT_FALSE(parse_listen_address(bad, why)) << bad;
    auto u = parse_push_url("http://127.0.0.1:4040", why);
    ASSERT_TRUE(u);
    EXPECT_EQ(u->scheme_host_port, "http://127.0.0.1:4040");
    EXPECT_EQ(u->path, "/ingest");
    u = parse_push_url("https://pyro.example/prefix/ingest", why);
    ASSERT_TRUE(u);
    EXPECT_EQ(u->path, "/prefix/ingest");
    for (const char* bad : {"127.0.0.1:4040", "ftp://x", "http://", "http://h:0", "http://h:port", "http://u@h",
                            "http://h/p?q=1"})
        EXPECT_FALSE(parse_push_url(bad, why)) << bad;
}
