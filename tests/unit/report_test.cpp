#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

#include "report_json.hpp"
#include "report_text.hpp"

using namespace memscope;
using nlohmann::json;

static Report sample()
{
    Report r;
    r.target = {1234, "svc", "/usr/bin/svc", 3};
    r.duration_s = 2.5;
    ThreadStats t;
    t.tid = 1235;
    t.name = "bad\t\"name\\\x01\xff";
    t.counters.alloc_count = 10;
    t.counters.alloc_bytes = 1536;
    t.counters.peak_live_bytes = 1024;
    r.threads.push_back(t);
    r.dropped.reasons["lost_return"] = 2;
    r.dropped.events = 2;
    r.children.forks = 1;
    r.children.pids = {99};
    r.warnings.push_back("w");
    compute_totals(r, 0);
    return r;
}

TEST(Report, HumanBytes)
{
    EXPECT_EQ(human_bytes(0), "0 B");
    EXPECT_EQ(human_bytes(1023), "1023 B");
    EXPECT_EQ(human_bytes(1536), "1.5 KiB");
    EXPECT_EQ(human_bytes(3ULL << 30), "3.0 GiB");
}

TEST(Report, TerminalEscaping)
{
    EXPECT_EQ(escape_for_terminal("ok name"), "ok name");
    EXPECT_EQ(escape_for_terminal("a\tb\x1b[2J\\"), "a\\x09b\\x1b[2J\\\\");
    EXPECT_EQ(escape_for_terminal("\xff"), "\\xff");
}

TEST(Report, JsonSchemaAndKeys)
{
    json j = json::parse(report_to_json_text(sample()));
    EXPECT_EQ(j["schema"], "memscope-trace/2");
    EXPECT_EQ(j["tool"]["version"], kToolVersion);
    EXPECT_EQ(j["target"]["pid"], 1234);
    EXPECT_EQ(j["target"]["exit_code"], 3);
    EXPECT_EQ(j["mode"], "normal");
    for (const char* k : {"alloc_count", "alloc_bytes", "free_count", "free_bytes", "live_count", "live_bytes",
                          "peak_live_bytes", "failed_alloc_count", "unmatched_free_count"}) {
        EXPECT_TRUE(j["totals"].contains(k)) << k;
        EXPECT_TRUE(j["threads"][0].contains(k)) << k;
    }
    EXPECT_EQ(j["totals"]["alloc_bytes"], 1536);
    EXPECT_EQ(j["totals"]["peak_live_bytes_exact"], true);
    EXPECT_EQ(j["dropped"]["events"], 2);
    EXPECT_EQ(j["dropped"]["reasons"]["lost_return"], 2);
    EXPECT_EQ(j["children"]["pids"][0], 99);
}

TEST(Report, JsonEscapesUntrustedNamesAndReplacesBadUtf8)
{
    std::string text = report_to_json_text(sample());
    EXPECT_NE(text.find(R"(bad\t\"name\\\u0001)"), std::string::npos) << text;
    json j = json::parse(text); // still valid JSON despite the 0xff byte
    EXPECT_EQ(j["threads"][0]["name"], "bad\t\"name\\\x01\xEF\xBF\xBD");
}

TEST(Report, ExitCodeNullWhileUnknown)
{
    Report r = sample();
    r.target.exit_code.reset();
    EXPECT_TRUE(report_to_json(r)["target"]["exit_code"].is_null());
}

TEST(Report, TextReportEscapesAndShowsFigures)
{
    std::string t = format_report(sample());
    EXPECT_NE(t.find("bad\\x09\"name\\\\\\x01\\xff"), std::string::npos) << t;
    EXPECT_EQ(t.find('\x01'), std::string::npos);
    EXPECT_NE(t.find("1.5 KiB"), std::string::npos);
    EXPECT_NE(t.find("exit status 3"), std::string::npos);
    EXPECT_NE(t.find("DROPPED: 2 events"), std::string::npos);
}

TEST(Report, LiveTableRate)
{
    Report r = sample();
    std::string t = format_live_table(r, {{1235, 4}}, 2.0);
    EXPECT_NE(t.find("allocs/s"), std::string::npos);
    EXPECT_NE(t.find(" 3 "), std::string::npos) << t; // (10 - 4) / 2 s
}

static Report with_variables()
{
    Report r = sample();
    Tracked& t = r.tracked;
    t.descriptors.push_back({"evil\"\n\x01\xffname", "std::vector<int>", "a\x1b[2J.cpp", 7, 1, true});
    t.descriptors.push_back({"scope", "", "s.cpp", 1, 2, true});
    Variable live;
    live.desc = 0;
    live.tid = 1235;
    live.addr = 0x1000;
    live.size = 100;
    live.heap = true;
    live.alloc_ns = 10;
    live.scope = 1;
    Variable freed = live;
    freed.addr = 0x2000;
    freed.free_ns = 30;
    Variable plain;
    plain.desc = 0;
    plain.tid = 1235;
    plain.size = 4;
    t.variables = {live, freed, plain};
    t.summary.push_back({0, 3, 204, 1, 100});
    t.scopes.push_back({1, 0, 2, 200});
    t.tasks.push_back({1, 9, 1, 100});
    t.mode_requests.push_back({5, 1234, 1235, 1});
    return r;
}

TEST(Report, VariablesInJson)
{
    Report r = with_variables();
    json j = json::parse(report_to_json_text(r));
    ASSERT_EQ(j["variables"].size(), 3u);
    const json& v = j["variables"][0];
    EXPECT_EQ(v["name"], "evil\"\n\x01\xEF\xBF\xBDname"); // escaped, invalid UTF-8 replaced
    EXPECT_EQ(v["type"], "std::vector<int>");
    EXPECT_EQ(v["thread"], r.threads[0].name.substr(0, r.threads[0].name.size() - 1) + "\xEF\xBF\xBD");
    EXPECT_EQ(v["addr"], 0x1000);
    EXPECT_TRUE(v["free_ns"].is_null());
    EXPECT_TRUE(v["lifetime_ns"].is_null());
    EXPECT_EQ(v["scope"], "scope");
    EXPECT_TRUE(v["task"].is_null());
    EXPECT_EQ(j["variables"][1]["lifetime_ns"], 20);
    EXPECT_TRUE(j["variables"][2]["addr"].is_null());
    EXPECT_FALSE(j["variables"][2]["heap"].get<bool>());
    EXPECT_EQ(j["variable_summary"][0]["live_bytes"], 100);
    EXPECT_EQ(j["scopes"][0]["alloc_bytes"], 200);
    EXPECT_EQ(j["tasks"][0]["id"], 9);
    EXPECT_EQ(j["tasks"][0]["name"], "scope");
    EXPECT_EQ(j["mode_requests"][0]["mode"], "fast");
    EXPECT_EQ(j["threads"][0]["track_count"], 0);
    // The streamed document and the in-memory one say the same.
    EXPECT_EQ(j, json::parse(report_to_json(r).dump(-1, ' ', false, json::error_handler_t::replace)));
}

TEST(Report, NoVariablesIsAnEmptyArray)
{
    json j = json::parse(report_to_json_text(sample()));
    EXPECT_TRUE(j["variables"].is_array());
    EXPECT_TRUE(j["variables"].empty());
}

TEST(Report, VariablesInTextAreEscaped)
{
    std::string text = format_report(with_variables());
    EXPECT_NE(text.find("tracked variables 3 (1 names), live at end 1 (100 B)"), std::string::npos) << text;
    EXPECT_NE(text.find("evil\"\\x0a\\x01\\xff"), std::string::npos) << text;
    EXPECT_EQ(text.find('\x1b'), std::string::npos);
    EXPECT_EQ(text.find("evil\"\n"), std::string::npos);
    EXPECT_NE(text.find("live at end (1, largest first)"), std::string::npos);
    EXPECT_NE(text.find("scopes (1)"), std::string::npos);
}

// A pool of threads of one name is one row (summed, its peak the largest),
// unless every thread is asked for.
TEST(Report, ThreadsOfOneNameShareARow)
{
    Report r = sample();
    r.threads.clear();
    for (std::uint32_t i = 0; i < 3; ++i) {
        ThreadStats t;
        t.pid = 1234;
        t.tid = 2000 + i;
        t.name = "pool";
        t.counters.alloc_count = 10;
        t.counters.alloc_bytes = 1000;
        t.counters.peak_live_bytes = 100 * (i + 1);
        r.threads.push_back(t);
    }
    ThreadStats main_thread;
    main_thread.tid = 1234;
    main_thread.name = "svc";
    main_thread.counters.alloc_count = 1;
    r.threads.insert(r.threads.begin(), main_thread);
    const std::string grouped = format_report(r);
    EXPECT_NE(grouped.find("  x3       pool                     30      2.9 KiB          0          0 B          0 B        300 B\n"),
              std::string::npos) << grouped;
    EXPECT_NE(grouped.find("  1234     svc "), std::string::npos) << grouped;
    EXPECT_EQ(grouped.find("2001"), std::string::npos) << grouped;
    const std::string all = format_report(r, true);
    for (const char* tid : {"  2000     pool", "  2001     pool", "  2002     pool"})
        EXPECT_NE(all.find(tid), std::string::npos) << all;
}
