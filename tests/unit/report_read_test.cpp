// The one report reader: what the writer writes comes back whole, and a
// wrong field is said with its place.
#include <gtest/gtest.h>
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
    r.sites = {a, b};
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
    EXPECT_EQ(back.mode_changes[0].to, Mode::fast);
    EXPECT_EQ(back.unprobed_allocators[1].reason, "permission denied");
    EXPECT_TRUE(back.absent_counters.empty());
    // The process tree: the root alone, a tree of one.
    ASSERT_EQ(back.processes.size(), 1u);
    EXPECT_EQ(back.processes[0].target.exe, "/usr/bin/svc");
    EXPECT_EQ(back.processes[0].threads, 2u);

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
