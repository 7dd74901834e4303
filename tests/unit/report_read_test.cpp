// The one report reader: what the writer writes comes back whole, and a
// wrong field is said with its place.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <functional>
#include <unistd.h>

#include "memscope/probe_abi.h"
#include "report_collapsed.hpp"
#include "report_json.hpp"
#include "report_text.hpp"
#include "../temp_dir.hpp"
#include "frames.hpp"

using namespace memscope;
using nlohmann::json;
using memscope_test::TempDir;
using memscope_test::frame;

namespace {

// A report with something in every part the writer writes.
Report everything()
{
    Report r;
    r.target = {100, "svc", "/usr/bin/svc", 3};
    r.invocation.argv = {"memscope-trace", "-p", "100", "--json", "out dir/r.json", "--pprof", "\x1b[2Jp.pb.gz"};
    r.invocation.outputs = {{"json", "/tmp/out dir/r.json"}, {"pprof", "/tmp/\x1b[2Jp.pb.gz"}};
    r.duration_s = 2.25;
    r.mode = "fast";
    r.mode_source = "--mode";
    r.mode_changes.push_back({0.5, Mode::normal, Mode::fast, "ctl"});
    r.live_bytes_exact = false;
    r.allocation_records = 7;
    r.tracer.cpu_user_s = 0.125;
    r.tracer.max_rss_kb = 9000;
    r.tracer.programs["malloc_entry"] = {10, 2000};
    for (std::uint32_t tid : {100u, 101u}) {
        ThreadStats t;
        t.pid = 100;
        t.tid = tid;
        t.start_ns = tid * 10;
        t.name = tid == 100 ? "svc" : "bad\xff\x01name";
        t.counters.alloc_count = tid;
        t.counters.alloc_bytes = tid * 16;
        t.counters.free_count = 3;
        t.counters.peak_live_bytes = 4096;
        t.counters.untracked_free_count = 2;
        r.threads.push_back(t);
    }
    r.totals.alloc_count = 201;
    r.totals.alloc_bytes = 201 * 16;
    r.totals.peak_live_bytes = 5000;
    r.peak_live_bytes_exact = false;
    r.dropped = {4, 1, {{"lost_return", 3}, {"variable_table_full", 1}}};
    r.children = {2, 1, {101, 102}};
    r.followed_children = true;
    r.warnings = {"w1", "figures are incomplete: see dropped"};
    r.unprobed_allocators.push_back({100, "/opt/lib/libjemalloc.so", {"je_malloc"}, ""});
    r.unprobed_allocators.push_back({100, "/opt/lib/secret.so", {}, "permission denied"});
    r.alloc_functions = {"xmalloc"};

    Tracked& t = r.tracked;
    t.modules = {"/usr/bin/svc"};
    t.descriptors = {{"buf", "std::vector<int>", "a.cpp", 10, 0, true},
                     {"request", "", "b.cpp", 20, 0, true},
                     {"worker", "", "", 0, 0, true}};
    Variable v;
    v.desc = 0;
    v.tgid = 100;
    v.tid = 101;
    v.thread_start_ns = 1010;
    v.addr = 0x1000;
    v.size = 64;
    v.heap = true;
    v.alloc_ns = 5;
    v.free_ns = 25;
    v.scope = 1;
    v.task = 9;
    v.task_desc = 2;
    t.variables.push_back(v);
    v.addr = 0;
    v.heap = false;
    v.free_ns = 0;
    v.scope = kNoDescriptor;
    v.task_desc = kNoDescriptor;
    t.variables.push_back(v);
    t.summary.push_back({0, 2, 128, 1, 64});
    t.scopes.push_back({1, 0, 3, 300, 0});
    t.tasks.push_back({2, 9, 1, 100, 100});
    t.mode_requests.push_back({5, 100, 101, MEMSCOPE_MODE_ASYNC});
    t.unreadable_descriptors = 1;
    t.counted_by_name = 2;

    r.stacks.enabled = true;
    r.stacks.depth = 32;
    r.stacks.distinct = 2;
    r.stacks.truncated_share = 0.25;
    r.stacks.truncated_by = {{"no unwind rule", 1}};
    r.stacks.without_stack = 1;
    r.stacks.note = "note";
    r.stacks.unwind.files = 3;
    r.stacks.unwind.rows = 1000;
    r.stacks.unwind.skipped = {"/x: why"};
    Site a;
    a.pid = 100;
    a.id = 0xabcdef0123456789;
    a.stack = {frame("xmalloc", "/usr/bin/svc", 0x10, 0x5010), frame("make()", "/usr/bin/svc", 0x20, 0x5020),
               frame("", "/usr/lib/libfoo.so", 0x2a, 0x7000)};
    a.stack[1].file = "a.cpp";
    a.stack[1].line = 12;
    a.stack[1].inlined = true;
    a.alloc_count = 150;
    a.alloc_bytes = 2400;
    a.live_count = 1;
    a.live_bytes = 64;
    Site b;
    b.pid = 100;
    b.id = 7;
    b.truncated = true;
    b.end = "no unwind rule";
    b.stack = {frame("main", "/usr/bin/svc", 0x30, 0x5030)};
    b.alloc_count = 51;
    b.alloc_bytes = 816;
    a.size_histogram = {{16, 31, 150, 2400}};
    b.size_histogram = {{0, 1, 1, 0}, {16, 31, 50, 816}};
    r.sites = {a, b};
    r.size_histogram = {{0, 1, 1, 0}, {16, 31, 200, 3216}};
    r.peak = Peak{100, 0.25, 5000, true, {{a.id, 100, 3, 3000}, {b.id, 100, 1, 2000}}, "a \x1b[2J note"};
    Leak l;
    l.pid = 100;
    l.id = a.id;
    l.stack = a.stack;
    l.live_count = 1;
    l.live_bytes = 64;
    l.oldest_age_s = 1.5;
    l.threads.push_back({101, "bad\xff\x01name", 1, 64});
    l.variables.push_back({0, 1, 64});
    r.leaks.push_back(l);
    l.id = b.id;
    l.stack = b.stack;
    l.truncated = true;
    l.end = b.end;
    l.expected = "made inside the C++ runtime";
    l.variables.clear();
    r.leaks.push_back(l);

    r.timeline.interval_s = 0.1;
    r.timeline.t_s = {0.1, 0.2};
    r.timeline.process_live_bytes = {10, -2};
    r.timeline.threads.push_back({101, 1010, "bad\xff\x01name", {0, 64}});
    return r;
}

MemoryFigures figures(std::uint64_t anon, std::uint64_t peak_anon)
{
    MemoryFigures m;
    std::uint64_t n = 1;
    for (const auto& f : kMemoryFields)
        m.*f.member = 4096 * n++; // each its own
    m.rss_anon_bytes = anon;
    m.peak_rss_anon_bytes = peak_anon;
    m.anon_growth_bytes_per_s = -1234.5;
    m.watched_s = 2.25;
    return m;
}

// -a: the machine's processes (one heap-traced, one without figures, one
// in another pid namespace with a hostile name), an OOM kill, the counts.
Report system_report()
{
    Report r;
    r.mode_scope = "system";
    r.duration_s = 3.5;
    r.target = {0, "", "", std::nullopt};
    ProcessSection a;
    a.target = {200, "postgres", "/usr/lib/postgresql/bin/postgres", std::nullopt};
    a.parent_pid = 1;
    a.memory = figures(1 << 20, 3 << 20);
    a.cgroup = "/system.slice/postgresql.service";
    a.heap_traced = true;
    a.totals.alloc_count = 10;
    a.execs = 1;
    a.forks = 4;
    ProcessSection b;
    b.target = {201, "kworker", "", std::nullopt};
    b.exited = true;
    ProcessSection c;
    c.target = {300, "\x1b[2J<script>x</script>", "/tmp/\x07evil", 137};
    c.memory = figures(5 << 20, 9 << 20);
    c.cgroup = "/kubepods/\x1b]0;pod\x07";
    c.ns_pid = 7;
    c.other_pid_namespace = true;
    c.born_while_traced = true;
    c.exited = true;
    c.oom_killed = true;
    r.processes = {a, b, c};
    r.oom_kills.push_back({300, 7, c.target.comm, c.cgroup, 1.25, *c.memory});
    r.system = {40, 5, 6, 7, 1, 30, 1 << 30, {"--heap=postgres", "--heap-top=2"}};
    return r;
}

Report read(const std::string& text)
{
    json doc;
    EXPECT_EQ(parse_report_text(text, doc), "");
    Report r;
    EXPECT_EQ(report_from_json(doc, r), "");
    return r;
}

std::string error_of(const json& doc)
{
    Report r;
    return report_from_json(doc, r);
}

} // namespace

TEST(ReportRead, WhatTheWriterWritesComesBackWhole)
{
    const Report original = everything();
    const std::string text = report_to_json_text(original);
    Report back = read(text);
    // Written again, it is the same document, byte for byte.
    EXPECT_EQ(report_to_json_text(back), text);

    EXPECT_EQ(back.totals.alloc_count, 201u);
    EXPECT_EQ(back.threads.size(), 2u);
    EXPECT_EQ(back.threads[1].counters.untracked_free_count, 2u);
    EXPECT_EQ(back.threads[1].name, "bad\xef\xbf\xbd\x01name"); // as written: the bad byte replaced
    ASSERT_EQ(back.sites.size(), 2u);
    EXPECT_EQ(back.sites[0].id, 0xabcdef0123456789u);
    EXPECT_EQ(back.sites[0].stack[1].line, 12u);
    EXPECT_TRUE(back.sites[0].stack[1].inlined);
    ASSERT_EQ(back.leaks.size(), 2u);
    EXPECT_EQ(back.leaks[0].stack.size(), 3u);
    EXPECT_EQ(back.leaks[1].expected, "made inside the C++ runtime");
    EXPECT_EQ(back.tracked.variables.size(), 2u);
    EXPECT_EQ(back.tracked.mode_requests[0].mode, static_cast<std::uint32_t>(MEMSCOPE_MODE_ASYNC));
    EXPECT_EQ(back.timeline.process_live_bytes[1], -2);
    ASSERT_EQ(back.size_histogram.size(), 2u);
    EXPECT_EQ(back.size_histogram[1].bytes, 3216u);
    ASSERT_EQ(back.sites[1].size_histogram.size(), 2u);
    EXPECT_EQ(back.sites[1].size_histogram[0].max, 1u);
    ASSERT_TRUE(back.peak);
    EXPECT_EQ(back.peak->live_bytes, 5000u);
    EXPECT_DOUBLE_EQ(back.peak->t_s, 0.25);
    ASSERT_EQ(back.peak->sites.size(), 2u);
    EXPECT_EQ(back.peak->sites[0].id, 0xabcdef0123456789u);
    EXPECT_EQ(back.peak->sites[1].live_bytes, 2000u);
    const std::string said_peak = format_report(back);
    EXPECT_NE(said_peak.find("peak 4.9 KiB at 0.250 s ("), std::string::npos) << said_peak;
    EXPECT_NE(said_peak.find("live at the peak: 4.9 KiB at 0.250 s in pid 100 (exact), by site:\n       2.9 KiB         3 blocks  make() (a.cpp:12) <- libfoo.so+0x2a\n       2.0 KiB         1 blocks  main\n"), std::string::npos) << said_peak;
    EXPECT_NE(said_peak.find("(a \\x1b[2J note)"), std::string::npos) << said_peak;
    EXPECT_EQ(back.mode_changes[0].to, Mode::fast);
    EXPECT_EQ(back.unprobed_allocators[1].reason, "permission denied");
    EXPECT_TRUE(back.absent_counters.empty());
    // The process tree: the root alone, a tree of one.
    ASSERT_EQ(back.processes.size(), 1u);
    EXPECT_EQ(back.processes[0].target.exe, "/usr/bin/svc");
    EXPECT_EQ(back.processes[0].threads, 2u);
    EXPECT_EQ(back.invocation.argv, original.invocation.argv);
    EXPECT_EQ(back.invocation.outputs, original.invocation.outputs);
    // The text says how the report was made, each word escaped, blanks quoted.
    const std::string said = format_report(back);
    EXPECT_NE(said.find("  command: memscope-trace -p 100 --json 'out dir/r.json' --pprof \\x1b[2Jp.pb.gz\n"),
              std::string::npos) << said;
    EXPECT_NE(said.find("  written: json /tmp/out dir/r.json, pprof /tmp/\\x1b[2Jp.pb.gz\n"), std::string::npos)
        << said;

    // The renderings drawn from the model read back are those of the original.
    EXPECT_EQ(format_report(back), format_report(read(report_to_json_text(back))));
    auto folded = [](const Report& r) {
        char* buf = nullptr;
        std::size_t size = 0;
        std::FILE* f = open_memstream(&buf, &size);
        write_collapsed(r, "bytes", f);
        std::fclose(f);
        std::string s(buf, size);
        std::free(buf);
        return s;
    };
    EXPECT_EQ(folded(back), folded(original));
    EXPECT_EQ(report_summary_json(back), report_summary_json(read(report_to_json_text(back))));
}

TEST(ReportRead, SchemaOneFramesWrittenOutAreReadToo)
{
    json doc = json::parse(report_to_json_text(everything()));
    json frames = doc["frames"];
    for (const char* list : {"sites", "leaks"})
        for (auto& entry : doc[list])
            for (auto& f : entry["stack"])
                f = frames[f.get<std::size_t>()];
    doc.erase("frames");
    doc["schema"] = "memscope-trace/1";
    Report r;
    ASSERT_EQ(report_from_json(doc, r), "");
    EXPECT_EQ(report_to_json_text(r), report_to_json_text(everything()));
}

TEST(ReportRead, AnOlderReportHasNoSizesNorPeak)
{
    json doc = json::parse(report_to_json_text(everything()));
    doc.erase("size_histogram");
    doc.erase("peak");
    for (auto& s : doc["sites"])
        s.erase("size_histogram");
    Report r;
    ASSERT_EQ(report_from_json(doc, r), "");
    EXPECT_TRUE(r.size_histogram.empty());
    EXPECT_FALSE(r.peak);
    const std::string text = format_report(r);
    EXPECT_EQ(text.find("allocation sizes"), std::string::npos) << text;
    EXPECT_EQ(text.find("live at the peak"), std::string::npos) << text;
    EXPECT_NE(text.find("peak 4.9 KiB ("), std::string::npos) << text; // the totals' figure, still said
}

TEST(ReportRead, AnOlderReportLacksLaterCounters)
{
    json doc = json::parse(report_to_json_text(everything()));
    doc["totals"].erase("track_count");
    doc["totals"].erase("untracked_free_count");
    Report r;
    ASSERT_EQ(report_from_json(doc, r), "");
    EXPECT_EQ(r.absent_counters, (std::set<std::string>{"track_count", "untracked_free_count"}));
    doc["totals"].erase("alloc_count"); // one every report has
    EXPECT_EQ(error_of(doc), "totals.alloc_count is missing");
}

TEST(ReportRead, AWrongFieldIsSaidWithItsPlace)
{
    const json good = json::parse(report_to_json_text(everything()));
    struct Case {
        std::function<void(json&)> spoil;
        std::string says;
    } cases[] = {
        {[](json& j) { j["timeline"]["t_s"][1] = "x"; }, "timeline.t_s[1] is a string, expected a number"},
        {[](json& j) { j["tracer"]["bpf_programs"]["malloc_entry"]["run_count"] = -1; },
         "tracer.bpf_programs.malloc_entry.run_count is negative, expected an unsigned 64-bit integer"},
        {[](json& j) { j["sites"][0]["id"] = "not hex"; }, "sites[0].id is not a stack's hash (16 hex digits)"},
        {[](json& j) { j["threads"][0]["tid"] = 1ull << 40; }, "threads[0].tid is 1099511627776, beyond 4294967295"},
        {[](json& j) { j["frames"][0]["line"] = true; },
         "frames[0].line is a boolean, expected an unsigned 64-bit integer"},
        {[](json& j) { j["variables"][0]["heap"] = 1; }, "variables[0].heap is a number, expected true or false"},
        {[](json& j) { j["mode_changes"] = json::object(); }, "mode_changes is an object, expected an array"},
        {[](json& j) { j["processes"][0]["threads"] = "many"; },
         "processes[0].threads is a string, expected an array or a count"},
        {[](json& j) { j["warnings"][0] = nullptr; }, "warnings[0] is null, expected a string"},
        {[](json& j) { j["size_histogram"][1]["max"] = 3; }, "size_histogram[1] ends (max 3) before it begins (min 16)"},
        {[](json& j) { j["sites"][1]["size_histogram"][0].erase("count"); }, "sites[1].size_histogram[0].count is missing"},
        {[](json& j) { j["peak"].erase("live_bytes"); }, "peak.live_bytes is missing"},
        {[](json& j) { j["peak"]["sites"][0]["id"] = 5; }, "peak.sites[0].id is a number, expected a string"},
        {[](json& j) { j["peak"] = 5; }, "peak is a number, expected an object"},
        {[](json& j) { j["schema"] = "memscope-trace/9"; },
         "is not a memscope-trace report: it has schema 'memscope-trace/9', expected 'memscope-trace/2'"},
    };
    for (const auto& c : cases) {
        json bad = good;
        c.spoil(bad);
        EXPECT_EQ(error_of(bad), c.says);
    }
}

TEST(ReportRead, AFileNamesItselfInItsError)
{
    TempDir dir;
    const std::string path = dir / "r.json";
    std::ofstream(path) << "{\"schema\": \"memscope-trace/2\", \"totals\": {";
    Report r;
    const std::string e = read_report_json(path, r);
    EXPECT_EQ(e.rfind(path + " is not valid JSON", 0), 0u) << e;
    EXPECT_EQ(read_report_json(dir / "none.json", r), "cannot read " + (dir / "none.json") + ": No such file or directory");
    std::ofstream(dir / "empty.json").flush();
    EXPECT_EQ(read_report_json(dir / "empty.json", r), (dir / "empty.json") + " is empty");
    std::ofstream(dir / "deep.json") << std::string(100, '[') << std::string(100, ']');
    EXPECT_EQ(read_report_json(dir / "deep.json", r), (dir / "deep.json") + " nests deeper than 64 levels: no report does");
}

// The variables, a report's longest list, are read one by one from the file
// as the parser meets them: the same model as from the whole document, and
// a bad one said with its place.
TEST(ReportRead, AFileIsReadAsItIsParsedVariablesOneByOne)
{
    TempDir dir;
    Report big = everything();
    const Variable v = big.tracked.variables.at(0);
    for (int i = 0; i < 50000; ++i) {
        big.tracked.variables.push_back(v);
        big.tracked.variables.back().addr = 0x1000 + static_cast<std::uint64_t>(i) * 16;
    }
    const std::string path = dir / "big.json";
    {
        std::FILE* f = std::fopen(path.c_str(), "w");
        ASSERT_NE(f, nullptr);
        ASSERT_TRUE(write_report_json(big, f));
        std::fclose(f);
    }
    Report r;
    ASSERT_EQ(read_report_json(path, r), "");
    ASSERT_EQ(r.tracked.variables.size(), big.tracked.variables.size());
    EXPECT_EQ(r.tracked.variables.back().addr, 0x1000u + 49999u * 16);
    EXPECT_EQ(report_to_json_text(r), report_to_json_text(read(report_to_json_text(big))));
    // Not wanted (a comparison): none read, the rest whole.
    Report bare;
    ASSERT_EQ(read_report_json(path, bare, false), "");
    EXPECT_TRUE(bare.tracked.variables.empty());
    EXPECT_EQ(bare.sites.size(), big.sites.size());

    json doc = json::parse(report_to_json_text(big));
    doc["variables"][7]["size"] = -1;
    std::ofstream(path) << doc.dump();
    EXPECT_EQ(read_report_json(path, r),
              path + ": variables[7].size is negative, expected an unsigned 64-bit integer");
    EXPECT_TRUE(r.tracked.variables.empty()); // nothing half-read is left
    doc["variables"][7] = 5;
    std::ofstream(path) << doc.dump();
    EXPECT_EQ(read_report_json(path, r), path + ": variables[7] is a number, expected an object");
    doc["variables"] = json::object();
    std::ofstream(path) << doc.dump();
    EXPECT_EQ(read_report_json(path, r), path + ": variables is an object, expected an array");
}

// Sites and leaks too: each read as met, its stack once the frames table
// (written after them) is had; in the writer's order or any other.
TEST(ReportRead, SitesAndLeaksAreReadAsTheyAreParsedTheirStacksOnceTheFramesAreHad)
{
    TempDir dir;
    const Report original = everything();
    const std::string path = dir / "r.json";
    {
        std::FILE* f = std::fopen(path.c_str(), "w");
        ASSERT_NE(f, nullptr);
        ASSERT_TRUE(write_report_json(original, f));
        std::fclose(f);
    }
    const std::string text = report_to_json_text(original);
    Report r;
    ASSERT_EQ(read_report_json(path, r), "");
    EXPECT_EQ(report_to_json_text(r), text); // frames after sites and leaks, as written
    json doc = json::parse(text);
    std::ofstream(path) << doc.dump(); // keys sorted: frames first
    ASSERT_EQ(read_report_json(path, r), "");
    EXPECT_EQ(report_to_json_text(r), text);

    struct Case {
        std::function<void(json&)> spoil;
        std::string says;
    } cases[] = {
        {[](json& j) { j["sites"][1]["alloc_count"] = -1; },
         "sites[1].alloc_count is negative, expected an unsigned 64-bit integer"},
        {[](json& j) { j["sites"][0]["stack"][1] = 99999u; },
         "sites[0].stack[1] is 99999, which names no entry of \"frames\""},
        {[](json& j) { j["leaks"][1].erase("stack"); }, "leaks[1].stack is missing"},
        {[](json& j) { j["leaks"][0]["threads"][0]["tid"] = "x"; },
         "leaks[0].threads[0].tid is a string, expected an unsigned 64-bit integer"},
        {[](json& j) { j["leaks"][0] = nullptr; }, "leaks[0] is null, expected an object"},
        {[](json& j) { j.erase("schema"); }, "is not a memscope-trace report (no \"schema\")"},
        {[](json& j) { j.erase("schema"); j["sites"][0] = 1; }, "is not a memscope-trace report (no \"schema\")"},
    };
    for (const auto& c : cases) {
        json bad = doc;
        c.spoil(bad);
        std::ofstream(path) << bad.dump();
        EXPECT_EQ(read_report_json(path, r), path + ": " + c.says);
        EXPECT_EQ(error_of(bad), c.says); // the same as from the whole document
        EXPECT_TRUE(r.sites.empty());
    }
}

TEST(ReportRead, ATextReportOfAFileReadBackEscapesWhatTheFileSays)
{
    json doc = json::parse(report_to_json_text(everything()));
    doc["mode"] = "\x1b]0;owned\x07";
    doc["target"]["comm"] = "\x1b[2J";
    doc["warnings"][0] = "\x9b" "1m";
    Report r;
    ASSERT_EQ(report_from_json(doc, r), "");
    const std::string text = format_report(r);
    EXPECT_EQ(text.find('\x1b'), std::string::npos) << text;
    EXPECT_EQ(text.find('\x07'), std::string::npos) << text;
    EXPECT_EQ(text.find("\xc2\x9b"), std::string::npos) << text;
}

TEST(ReportRead, ASystemReportComesBackWhole)
{
    const std::string text = report_to_json_text(system_report());
    Report back = read(text);
    EXPECT_EQ(report_to_json_text(back), text); // byte for byte
    EXPECT_EQ(back.mode_scope, "system");
    ASSERT_EQ(back.processes.size(), 3u);
    ASSERT_TRUE(back.processes[0].memory);
    EXPECT_EQ(back.processes[0].memory->peak_rss_anon_bytes, 3u << 20);
    EXPECT_EQ(back.processes[0].memory->munmap_calls, figures(0, 0).munmap_calls);
    EXPECT_EQ(back.processes[0].memory->anon_growth_bytes_per_s, -1234.5);
    EXPECT_EQ(back.processes[0].cgroup, "/system.slice/postgresql.service");
    EXPECT_TRUE(back.processes[0].heap_traced);
    EXPECT_EQ(back.processes[0].forks, 4u);
    EXPECT_FALSE(back.processes[1].memory);
    EXPECT_TRUE(back.processes[1].exited);
    EXPECT_EQ(back.processes[2].ns_pid, 7);
    EXPECT_TRUE(back.processes[2].other_pid_namespace && back.processes[2].born_while_traced &&
                back.processes[2].oom_killed);
    ASSERT_EQ(back.oom_kills.size(), 1u);
    EXPECT_EQ(back.oom_kills[0].ns_pid, 7);
    EXPECT_EQ(back.oom_kills[0].t_s, 1.25);
    EXPECT_EQ(back.oom_kills[0].memory.rss_anon_bytes, 5u << 20);
    EXPECT_EQ(back.system.not_listed_peak_rss_anon_bytes, 1u << 30);
    EXPECT_EQ(back.system.heap_selectors, (std::vector<std::string>{"--heap=postgres", "--heap-top=2"}));
    EXPECT_EQ(format_report(back), format_report(system_report()));

    // A process without figures is written as null; a machine of no
    // processes lists none (no root is made up).
    const json doc = json::parse(text);
    EXPECT_TRUE(doc["processes"][1]["memory"].is_null());
    Report none = system_report();
    none.processes.clear();
    const json empty = json::parse(report_to_json_text(none));
    EXPECT_EQ(empty["processes"], json::array());
    EXPECT_EQ(read(empty.dump()).processes.size(), 0u);
}

TEST(ReportRead, AProcessReportHasNoSystemPartsAndAnOlderOneReadsAsProcess)
{
    json doc = json::parse(report_to_json_text(everything()));
    EXPECT_EQ(doc["mode_scope"], "process");
    EXPECT_EQ(doc["oom_kills"], json::array());
    EXPECT_FALSE(doc.contains("system"));
    EXPECT_FALSE(doc["processes"][0].contains("memory"));
    EXPECT_FALSE(doc["processes"][0].contains("cgroup"));
    doc.erase("mode_scope"); // written before -a
    doc.erase("oom_kills");
    Report r;
    ASSERT_EQ(report_from_json(doc, r), "");
    EXPECT_EQ(r.mode_scope, "process");
    EXPECT_TRUE(r.oom_kills.empty());
    EXPECT_FALSE(r.processes[0].memory);
    EXPECT_EQ(report_to_json_text(r), report_to_json_text(everything()));
}

TEST(ReportRead, AWrongSystemFieldIsSaidWithItsPlace)
{
    const json good = json::parse(report_to_json_text(system_report()));
    struct Case {
        std::function<void(json&)> spoil;
        std::string says;
    } cases[] = {
        {[](json& j) { j["processes"][0]["memory"]["rss_anon_bytes"] = "1 MiB"; },
         "processes[0].memory.rss_anon_bytes is a string, expected an unsigned 64-bit integer"},
        {[](json& j) { j["processes"][2]["memory"]["peak_rss_anon_bytes"] = -5; },
         "processes[2].memory.peak_rss_anon_bytes is negative, expected an unsigned 64-bit integer"},
        {[](json& j) { j["processes"][0]["memory"]["watched_s"] = true; },
         "processes[0].memory.watched_s is a boolean, expected a number"},
        {[](json& j) { j["processes"][1]["memory"] = 3; },
         "processes[1].memory is a number, expected an object or null"},
        {[](json& j) { j["processes"][0]["heap_traced"] = "yes"; },
         "processes[0].heap_traced is a string, expected true or false"},
        {[](json& j) { j["processes"][2]["ns_pid"] = 1.5; },
         "processes[2].ns_pid is a number, expected a 64-bit integer"},
        {[](json& j) { j["processes"][0]["cgroup"] = json::array(); },
         "processes[0].cgroup is an array, expected a string"},
        {[](json& j) { j["oom_kills"][0]["memory"]["swap_bytes"] = nullptr; },
         "oom_kills[0].memory.swap_bytes is null, expected an unsigned 64-bit integer"},
        {[](json& j) { j["oom_kills"][0]["memory"] = "x"; }, "oom_kills[0].memory is a string, expected an object"},
        {[](json& j) { j["oom_kills"] = json::object(); }, "oom_kills is an object, expected an array"},
        {[](json& j) { j["system"]["births"] = -1; },
         "system.births is negative, expected an unsigned 64-bit integer"},
        {[](json& j) { j["system"]["heap_selectors"][1] = 2; }, "system.heap_selectors[1] is a number, expected a string"},
        {[](json& j) { j["system"] = json::array(); }, "system is an array, expected an object"},
        {[](json& j) { j["mode_scope"] = 1; }, "mode_scope is a number, expected a string"},
        {[](json& j) { j["mode_scope"] = "galaxy"; }, "mode_scope is not \"process\" or \"system\""},
    };
    for (const auto& c : cases) {
        json bad = good;
        c.spoil(bad);
        EXPECT_EQ(error_of(bad), c.says);
    }
}

TEST(ReportRead, ASystemTextReportListsTheLargestAndEscapesWhatProcessesSay)
{
    Report r = system_report();
    const std::string text = format_report(r);
    EXPECT_NE(text.find("system-wide"), std::string::npos) << text;
    for (char c : {'\x1b', '\x07'})
        EXPECT_EQ(text.find(c), std::string::npos) << text;
    EXPECT_NE(text.find("\\x1b[2J<script>~ /kubepods/\\x1b]0;pod\\x07"), std::string::npos) << text; // comm clipped
    EXPECT_NE(text.find("~lice/postgresql.service"), std::string::npos) << text; // a cgroup's end kept
    EXPECT_NE(text.find("300/7"), std::string::npos) << text;                  // pid and ns pid
    EXPECT_NE(text.find("exited,OOM"), std::string::npos) << text;
    EXPECT_NE(text.find("heap-traced"), std::string::npos) << text;
    EXPECT_NE(text.find("-1.2 KiB/s"), std::string::npos) << text;
    EXPECT_NE(text.find("processes seen 40: 5 born, 6 exec'd, 7 exited, 30 not listed"), std::string::npos)
        << text;
    EXPECT_NE(text.find("heap traced by: --heap=postgres --heap-top=2"), std::string::npos) << text;
    EXPECT_NE(text.find("OOM kills: 1"), std::string::npos) << text;
    // Largest anonymous peak first; without figures last.
    const auto c = text.find("300/7"), a = text.find("200 "), b = text.find("201 ");
    EXPECT_LT(c, a);
    EXPECT_LT(a, b);

    // Twenty rows at most, the rest counted.
    for (int pid = 1000; pid < 1030; ++pid) {
        ProcessSection p;
        p.target = {pid, "many", "", std::nullopt};
        p.memory = figures(1, 1);
        r.processes.push_back(p);
    }
    EXPECT_NE(format_report(r).find("... 13 more in the JSON report"), std::string::npos);
}

// What is not a regular file is refused at once, never waited on (a FIFO
// with no writer) nor read without end (a device).
TEST(ReportRead, OnlyARegularFileIsRead)
{
    TempDir dir;
    const std::string fifo = dir / "fifo";
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    Report r;
    EXPECT_EQ(read_report_json(fifo, r), "cannot read " + fifo + ": not a regular file");
    EXPECT_EQ(read_report_json("/dev/zero", r), "cannot read /dev/zero: not a regular file");
    EXPECT_EQ(read_report_json(dir.path, r), "cannot read " + dir.path + ": a directory");
}
