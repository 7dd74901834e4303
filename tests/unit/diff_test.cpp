// The regression gate: thresholds, exit codes, matching across runs
// (thread names, executables, stacks without addresses, variables), new
// leaks, the four formats and hostile input.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>
#include <unistd.h>
#include <vector>

#include "diff.hpp"

using namespace memscope;
using nlohmann::json;

namespace {

json counters(std::uint64_t alloc_count, std::uint64_t alloc_bytes, std::uint64_t peak = 1000)
{
    return json{{"alloc_count", alloc_count},
                {"alloc_bytes", alloc_bytes},
                {"free_count", alloc_count / 2},
                {"free_bytes", alloc_bytes / 2},
                {"live_count", alloc_count - alloc_count / 2},
                {"live_bytes", alloc_bytes - alloc_bytes / 2},
                {"peak_live_bytes", peak},
                {"failed_alloc_count", 0},
                {"unmatched_free_count", 0},
                {"exit_unmatched_free_count", 0},
                {"track_count", 0},
                {"untracked_free_count", 0}};
}

json thread(std::uint64_t tid, const std::string& name, std::uint64_t alloc_count, std::uint64_t alloc_bytes)
{
    json t = counters(alloc_count, alloc_bytes, alloc_bytes);
    t["tid"] = tid;
    t["name"] = name;
    return t;
}

// One process, one thread, the totals those of the thread.
json report(std::uint64_t alloc_count, std::uint64_t alloc_bytes, std::uint64_t peak = 1000, bool peak_exact = true)
{
    json totals = counters(alloc_count, alloc_bytes, peak);
    totals["peak_live_bytes_exact"] = peak_exact;
    totals["live_bytes_exact"] = true;
    totals["free_bytes_exact"] = true;
    return json{{"schema", "memscope-trace/1"},
                {"target", {{"pid", 100}, {"comm", "app"}, {"exe", "/usr/bin/app"}, {"exit_code", 0}}},
                {"totals", totals},
                {"threads", json::array({thread(100, "app", alloc_count, alloc_bytes)})}};
}

json frame(std::uint64_t addr, const json& symbol, const std::string& module, std::uint64_t offset)
{
    return json{{"addr", addr}, {"symbol", symbol}, {"module", module}, {"offset", offset}};
}

struct Outcome {
    int code;
    std::string out, err;
};

std::string read_stream(std::FILE* f)
{
    std::string s;
    std::rewind(f);
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;)
        s.append(buf, n);
    std::fclose(f);
    return s;
}

template <typename F>
Outcome capture(F&& call)
{
    std::FILE* out = std::tmpfile();
    std::FILE* err = std::tmpfile();
    int code = call(out, err);
    return {code, read_stream(out), read_stream(err)};
}

Outcome diff(const json& base, const json& current, const DiffOptions& options = {})
{
    return capture([&](std::FILE* out, std::FILE* err) { return diff_reports(base, current, options, out, err); });
}

Outcome diff_text(const std::string& base, const std::string& current, const DiffOptions& options = {})
{
    return capture([&](std::FILE* out, std::FILE* err) { return diff_texts(base, current, options, out, err); });
}

DiffOptions gate(std::vector<std::string> limits, const std::string& format = "text", bool leaks = false)
{
    DiffOptions o;
    o.max_increase = std::move(limits);
    o.format = format;
    o.fail_on_new_leaks = leaks;
    return o;
}

std::vector<std::string> lines(const std::string& text)
{
    std::vector<std::string> out;
    std::size_t start = 0;
    for (std::size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1)
        out.push_back(text.substr(start, nl - start));
    if (start < text.size())
        out.push_back(text.substr(start));
    return out;
}

std::vector<std::string> lines_starting(const std::string& text, const std::string& prefix)
{
    std::vector<std::string> out;
    for (const auto& l : lines(text))
        if (l.rfind(prefix, 0) == 0)
            out.push_back(l);
    return out;
}

// Exactly one line, ending in a newline: what a CI log shows.
void expect_one_line(const std::string& err)
{
    ASSERT_FALSE(err.empty());
    EXPECT_EQ(err.back(), '\n') << err;
    EXPECT_EQ(err.find('\n'), err.size() - 1) << err;
}

const json* change(const json& doc, const std::string& kind, const std::string& what_prefix, const std::string& metric)
{
    for (const auto& c : doc["changes"])
        if (c["kind"] == kind && c["metric"] == metric &&
            c["what"].get<std::string>().rfind(what_prefix, 0) == 0)
            return &c;
    return nullptr;
}

// Well-formed XML, simply: every tag closed in order, attributes quoted,
// no stray '<' or '&', only XML 1.0 characters. Counts <failure> elements.
bool well_formed_xml(const std::string& x, int& failures, std::string& why)
{
    failures = 0;
    std::vector<std::string> open;
    std::size_t i = 0;
    if (x.rfind("<?xml", 0) == 0)
        i = x.find("?>") + 2;
    for (; i < x.size(); ++i) {
        unsigned char c = static_cast<unsigned char>(x[i]);
        if (c < 0x20 && c != '\n' && c != '\t' && c != '\r') {
            why = "control byte at " + std::to_string(i);
            return false;
        }
        if (c == '&') {
            std::size_t semi = x.find(';', i);
            std::string ent = x.substr(i, semi - i + 1);
            if (semi == std::string::npos || (ent != "&amp;" && ent != "&lt;" && ent != "&gt;" && ent != "&quot;" &&
                                              ent != "&apos;" && ent.rfind("&#", 0) != 0)) {
                why = "bad entity at " + std::to_string(i);
                return false;
            }
            continue;
        }
        if (c == '>') {
            continue; // legal in text
        }
        if (c != '<')
            continue;
        std::size_t end = i + 1;
        char quote = 0;
        for (; end < x.size(); ++end) {
            if (quote) {
                if (x[end] == quote)
                    quote = 0;
                else if (x[end] == '<') {
                    why = "'<' in an attribute";
                    return false;
                }
            } else if (x[end] == '"' || x[end] == '\'') {
                quote = x[end];
            } else if (x[end] == '>') {
                break;
            } else if (x[end] == '<') {
                why = "'<' inside a tag at " + std::to_string(end);
                return false;
            }
        }
        if (end >= x.size()) {
            why = "unterminated tag";
            return false;
        }
        std::string tag = x.substr(i + 1, end - i - 1);
        i = end;
        if (tag.empty()) {
            why = "empty tag";
            return false;
        }
        if (tag[0] == '/') {
            std::string name = tag.substr(1);
            if (open.empty() || open.back() != name) {
                why = "</" + name + "> closes " + (open.empty() ? "nothing" : open.back());
                return false;
            }
            open.pop_back();
            continue;
        }
        std::string name = tag.substr(0, tag.find_first_of(" \t\n/"));
        if (name == "failure")
            ++failures;
        if (tag.back() != '/')
            open.push_back(name);
    }
    if (!open.empty()) {
        why = "<" + open.back() + "> not closed";
        return false;
    }
    return true;
}

std::string xml_attribute(const std::string& x, const std::string& element, const std::string& attribute)
{
    std::size_t at = x.find("<" + element + " ");
    std::size_t a = x.find(" " + attribute + "=\"", at);
    if (at == std::string::npos || a == std::string::npos)
        return {};
    a += attribute.size() + 3;
    return x.substr(a, x.find('"', a) - a);
}

} // namespace

// --- thresholds -----------------------------------------------------------------

TEST(DiffThreshold, PercentAndAbsolute)
{
    std::string error;
    auto t = parse_threshold("alloc_count=2%", error);
    ASSERT_TRUE(t) << error;
    EXPECT_EQ(t->metric, "alloc_count");
    EXPECT_TRUE(t->percent);
    EXPECT_EQ(t->percent_micro, 2000000u);
    t = parse_threshold("alloc_count=0.5%", error);
    ASSERT_TRUE(t) << error;
    EXPECT_EQ(t->percent_micro, 500000u);
    t = parse_threshold("alloc_bytes=0", error);
    ASSERT_TRUE(t) << error;
    EXPECT_FALSE(t->percent);
    EXPECT_EQ(t->limit, 0u);
    t = parse_threshold("alloc_count=300", error);
    ASSERT_TRUE(t) << error;
    EXPECT_EQ(t->limit, 300u);
}

TEST(DiffThreshold, ByteUnits)
{
    std::string error;
    auto t = parse_threshold("alloc_bytes=10KiB", error);
    ASSERT_TRUE(t) << error;
    EXPECT_EQ(t->limit, 10240u);
    t = parse_threshold("peak_live_bytes=1.5MiB", error);
    ASSERT_TRUE(t) << error;
    EXPECT_EQ(t->limit, 1572864u);
    t = parse_threshold("live_bytes=2GiB", error);
    ASSERT_TRUE(t) << error;
    EXPECT_EQ(t->limit, 2147483648u);
    t = parse_threshold("live_bytes=0.1KiB", error); // 102.4: a fraction of a byte rounds down
    ASSERT_TRUE(t) << error;
    EXPECT_EQ(t->limit, 102u);
}

TEST(DiffThreshold, EveryNumericMetricOfTotals)
{
    for (const auto& metric : diff_metrics()) {
        std::string error;
        EXPECT_TRUE(parse_threshold(metric + "=1%", error)) << error;
    }
    EXPECT_EQ(diff_metrics().size(), 13u); // the counters (temporary_count the latest) and the peak
}

TEST(DiffThreshold, UnknownMetricAndGarbageAreErrors)
{
    struct Case {
        const char* spec;
        const char* says;
    } cases[] = {
        {"bogus=2%", "unknown metric 'bogus'"},
        {"alloc_count", "expected METRIC=PCT% or METRIC=ABS"},
        {"=2%", "unknown metric ''"},
        {"alloc_count=", "no limit"},
        {"alloc_count=abc", "is not a limit"},
        {"alloc_count=-1", "cannot be negative"},
        {"alloc_count=2%%", "not a percentage"},
        {"alloc_count=2 %", "not a percentage"},
        {"alloc_count=.5%", "is not a limit"},
        {"alloc_count=2.%", "is not a number"},
        {"alloc_count=10KiB", "is a count"},
        {"alloc_count=1.5", "is a count"},
        {"alloc_bytes=1.5", "whole"},
        {"alloc_bytes=5TB", "unknown unit"},
        {"alloc_bytes=5kib", "unknown unit"},
        {"alloc_bytes=99999999999999999999999", "too long"},
        {"alloc_bytes=18446744073709551616", "beyond 64 bits"},
        {"alloc_bytes=99999999999GiB", "beyond 64 bits"},
        {"alloc_count=2000000000%", "limits nothing"},
        {"alloc_count=0.0000001%", "six decimals"},
    };
    for (const auto& c : cases) {
        std::string error;
        EXPECT_FALSE(parse_threshold(c.spec, error)) << c.spec;
        EXPECT_NE(error.find(c.says), std::string::npos) << c.spec << ": " << error;
        EXPECT_EQ(error.find('\n'), std::string::npos) << error;
        EXPECT_NE(check_diff_options(gate({c.spec})), "") << c.spec;
    }
}

TEST(DiffThreshold, OptionsCheckFormat)
{
    EXPECT_EQ(check_diff_options(gate({"alloc_count=2%", "peak_live_bytes=5%"})), "");
    for (const char* f : {"text", "markdown", "json", "junit"})
        EXPECT_EQ(check_diff_options(gate({}, f)), "") << f;
    EXPECT_NE(check_diff_options(gate({}, "xml")).find("unknown format 'xml'"), std::string::npos);
    Outcome r = diff(report(10, 100), report(10, 100), gate({}, "yaml"));
    EXPECT_EQ(r.code, 2);
    expect_one_line(r.err);
    EXPECT_TRUE(r.out.empty());
}

// --- the gate -------------------------------------------------------------------

TEST(DiffGate, ThreePercentMoreFailsAtTwoPassesAtFive)
{
    json base = report(10000, 1000000), more = report(10300, 1030000);
    Outcome r = diff(base, more, gate({"alloc_count=2%"}));
    EXPECT_EQ(r.code, 1) << r.out << r.err;
    EXPECT_TRUE(r.err.empty()) << r.err;
    auto breaches = lines_starting(r.out, "REGRESSION ");
    ASSERT_EQ(breaches.size(), 1u) << r.out;
    EXPECT_EQ(breaches[0].rfind("REGRESSION alloc_count: 10000 -> 10300 (+300, +3.00%)", 0), 0u) << breaches[0];
    EXPECT_NE(r.out.find("result: regression (1 breach)"), std::string::npos) << r.out;

    r = diff(base, more, gate({"alloc_count=5%"}));
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_TRUE(lines_starting(r.out, "REGRESSION").empty()) << r.out;
    EXPECT_EQ(lines_starting(r.out, "ok alloc_count: 10000 -> 10300").size(), 1u) << r.out;
}

TEST(DiffGate, EachBreachOnItsOwnLine)
{
    Outcome r = diff(report(100, 1000, 500), report(200, 3000, 900),
                     gate({"alloc_count=10%", "alloc_bytes=1KiB", "peak_live_bytes=100%", "free_count=50"}));
    EXPECT_EQ(r.code, 1);
    auto breaches = lines_starting(r.out, "REGRESSION ");
    ASSERT_EQ(breaches.size(), 2u) << r.out;
    EXPECT_EQ(breaches[0].rfind("REGRESSION alloc_count:", 0), 0u) << breaches[0];
    EXPECT_EQ(breaches[1].rfind("REGRESSION alloc_bytes:", 0), 0u) << breaches[1];
    EXPECT_NE(breaches[1].find("allowed +1KiB (1024)"), std::string::npos) << breaches[1];
    EXPECT_EQ(lines_starting(r.out, "ok peak_live_bytes:").size(), 1u) << r.out;
    EXPECT_EQ(lines_starting(r.out, "ok free_count:").size(), 1u) << r.out;
}

TEST(DiffGate, ZeroForbidsAnyIncrease)
{
    EXPECT_EQ(diff(report(10, 1000), report(10, 1000), gate({"alloc_bytes=0"})).code, 0);
    EXPECT_EQ(diff(report(10, 1000), report(10, 1001), gate({"alloc_bytes=0"})).code, 1);
    EXPECT_EQ(diff(report(10, 1000), report(10, 900), gate({"alloc_bytes=0"})).code, 0);
    EXPECT_EQ(diff(report(10, 1000), report(10, 1001), gate({"alloc_bytes=0%"})).code, 1);
}

TEST(DiffGate, PercentBoundaryIsExact)
{
    EXPECT_EQ(diff(report(100, 1000), report(102, 1000), gate({"alloc_count=2%"})).code, 0);
    EXPECT_EQ(diff(report(100, 1000), report(103, 1000), gate({"alloc_count=2%"})).code, 1);
    EXPECT_EQ(diff(report(3, 1000), report(4, 1000), gate({"alloc_count=33.333333%"})).code, 1);
    EXPECT_EQ(diff(report(3, 1000), report(4, 1000), gate({"alloc_count=33.333334%"})).code, 0);
    std::uint64_t big = std::numeric_limits<std::uint64_t>::max();
    EXPECT_EQ(diff(report(big - 1, 1000), report(big, 1000), gate({"alloc_count=0.000001%"})).code, 0);
    EXPECT_EQ(diff(report(1, 1000), report(big, 1000), gate({"alloc_count=1000000000%"})).code, 1);
}

TEST(DiffGate, IncreaseFromZeroBreachesAPercentage)
{
    json base = report(10, 100), current = report(10, 100);
    current["totals"]["track_count"] = 3;
    Outcome r = diff(base, current, gate({"track_count=50%"}));
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("REGRESSION track_count: 0 -> 3 (+3, from 0)"), std::string::npos) << r.out;
}

TEST(DiffGate, NoAllocatorCallInTheNewReportIsBadInput)
{
    json none = report(0, 0, 0);
    Outcome r = diff(report(10, 100), none, gate({"alloc_count=2%"}));
    EXPECT_EQ(r.code, 2);
    expect_one_line(r.err);
    EXPECT_NE(r.err.find("no allocator call"), std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
    // Frees alone are calls: the probes were there.
    none["totals"]["free_count"] = 1;
    EXPECT_EQ(diff(report(10, 100), none, gate({"alloc_count=2%"})).code, 0);
}

TEST(DiffGate, InexactPeakIsNotedAndStillCompared)
{
    Outcome r = diff(report(10, 100, 1000, true), report(10, 100, 2000, false), gate({"peak_live_bytes=5%"}));
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_EQ(lines_starting(r.out, "note: peak_live_bytes is not exact in the new report").size(), 1u) << r.out;
    EXPECT_EQ(lines_starting(r.out, "REGRESSION peak_live_bytes:").size(), 1u) << r.out;

    r = diff(report(10, 100, 1000, false), report(10, 100, 1000, false), gate({"peak_live_bytes=5%"}, "json"));
    EXPECT_EQ(r.code, 0);
    json j = json::parse(r.out);
    ASSERT_EQ(j["notes"].size(), 1u);
    EXPECT_EQ(j["checks"][0]["exact"], false);

    r = diff(report(10, 100, 1000, true), report(10, 100, 1000, true), gate({"peak_live_bytes=5%"}));
    EXPECT_EQ(r.out.find("note:"), std::string::npos) << r.out;
}

TEST(DiffGate, NoThresholdIsAComparisonOnly)
{
    Outcome r = diff(report(10, 100), report(20, 200));
    EXPECT_EQ(r.code, 0);
    EXPECT_NE(r.out.find("result: no threshold given"), std::string::npos) << r.out;
}

// --- matching -------------------------------------------------------------------

TEST(DiffThreads, SummedByNameWithTheirCount)
{
    json base = report(300, 3000), current = report(400, 4000);
    base["threads"] = json::array({thread(1, "main", 100, 1000), thread(2, "w", 100, 1000), thread(3, "w", 100, 1000)});
    current["threads"] = json::array(
        {thread(9, "w", 100, 1000), thread(7, "main", 100, 1000), thread(8, "w", 100, 1000), thread(5, "w", 100, 1000)});
    Outcome r = diff(base, current, gate({}, "json"));
    ASSERT_EQ(r.code, 0) << r.err;
    json j = json::parse(r.out);
    const json* c = change(j, "thread", "w", "alloc_count");
    ASSERT_TRUE(c) << j.dump(1);
    EXPECT_EQ((*c)["base"], 200);
    EXPECT_EQ((*c)["new"], 300);
    EXPECT_EQ((*c)["base_members"], 2);
    EXPECT_EQ((*c)["new_members"], 3);
    c = change(j, "thread", "w", "threads");
    ASSERT_TRUE(c);
    EXPECT_EQ((*c)["base"], 2);
    EXPECT_EQ((*c)["new"], 3);
    EXPECT_FALSE(change(j, "thread", "main", "alloc_count")) << "tids differ, names match: no change";

    r = diff(base, current);
    EXPECT_NE(r.out.find("w x2->3"), std::string::npos) << r.out;
}

TEST(DiffProcesses, MatchedByExecutableAndSummed)
{
    auto section = [](std::uint64_t pid, const std::string& exe, std::uint64_t n, json threads) {
        json totals = counters(n, n * 10);
        totals["peak_live_bytes_exact"] = true;
        return json{{"pid", pid}, {"parent_pid", 1}, {"exe", exe}, {"comm", "x"}, {"exit_code", 0},
                    {"totals", totals}, {"threads", std::move(threads)}};
    };
    json base = report(15, 150), current = report(25, 250);
    base["processes"] = json::array({section(10, "/bin/sh", 5, json::array({thread(10, "sh", 5, 50)})),
                                     section(11, "/usr/bin/worker", 10, json::array({thread(11, "worker", 10, 100)}))});
    current["processes"] =
        json::array({section(20, "/usr/bin/worker", 10, json::array({thread(20, "worker", 10, 100)})),
                     section(21, "/bin/sh", 5, json::array({thread(21, "sh", 5, 50)})),
                     section(22, "/usr/bin/worker", 10, json::array({thread(22, "worker", 10, 100)}))});
    Outcome r = diff(base, current, gate({"alloc_count=50%"}, "json"));
    EXPECT_EQ(r.code, 1) << r.out << r.err;
    json j = json::parse(r.out);
    const json* c = change(j, "process", "/usr/bin/worker", "alloc_count");
    ASSERT_TRUE(c) << j.dump(1);
    EXPECT_EQ((*c)["base"], 10);
    EXPECT_EQ((*c)["new"], 20);
    EXPECT_EQ((*c)["new_members"], 2);
    EXPECT_FALSE(change(j, "process", "/bin/sh", "alloc_count"));
    c = change(j, "thread", "worker x", "alloc_count");
    ASSERT_TRUE(c) << j.dump(1);
    EXPECT_EQ((*c)["exe"], "/usr/bin/worker");
    EXPECT_EQ((*c)["what"], "worker x1->2 in worker");

    // Sections that only count their threads: the top-level list, by pid.
    json flat = current;
    for (auto& p : flat["processes"])
        p["threads"] = 1;
    flat["threads"] = json::array();
    for (std::uint64_t pid : {20, 21, 22}) {
        json t = thread(pid, pid == 21 ? "sh" : "worker", pid == 21 ? 5 : 10, pid == 21 ? 50 : 100);
        t["pid"] = pid;
        flat["threads"].push_back(t);
    }
    Outcome same = diff(current, flat, gate({}, "json"));
    ASSERT_EQ(same.code, 0) << same.err;
    EXPECT_TRUE(json::parse(same.out)["changes"].empty()) << same.out;
}

TEST(DiffProcesses, OneProgramHasNoProcessRows)
{
    Outcome r = diff(report(10, 100), report(20, 200), gate({}, "json"));
    json j = json::parse(r.out);
    for (const auto& c : j["changes"])
        EXPECT_NE(c["kind"], "process") << c.dump();
    EXPECT_TRUE(change(j, "total", "", "alloc_count"));
}

TEST(DiffSites, MatchedByFramesNotAddresses)
{
    auto site = [](std::uint64_t base_addr, std::uint64_t n) {
        json stack = json::array({frame(base_addr + 0x10, "parse(char const*)", "/usr/bin/app", 0x1010),
                                  frame(base_addr + 0x20, nullptr, "/usr/lib/libfoo.so.1", 0x2020),
                                  frame(base_addr + 0x30, "main", "/usr/bin/app", 0x1100)});
        return json{{"id", "00000000000000ab"}, {"function", "parse(char const*)"}, {"stack", stack},
                    {"truncated", false}, {"alloc_count", n}, {"alloc_bytes", n * 16},
                    {"live_count", 0}, {"live_bytes", 0}};
    };
    json base = report(10, 100), current = report(12, 132);
    base["stacks"] = {{"enabled", true}};
    current["stacks"] = {{"enabled", true}};
    base["sites"] = json::array({site(0x5555000000, 10)});
    current["sites"] = json::array({site(0x7fff000000, 12)});
    Outcome r = diff(base, current, gate({}, "json"));
    ASSERT_EQ(r.code, 0) << r.err;
    json j = json::parse(r.out);
    const json* c = change(j, "site", "parse(char const*) < libfoo.so.1+0x2020 < main", "alloc_count");
    ASSERT_TRUE(c) << j.dump(1);
    EXPECT_EQ((*c)["base"], 10);
    EXPECT_EQ((*c)["new"], 12);
    EXPECT_EQ((*c)["status"], "changed");
    EXPECT_EQ((*c)["stack"].size(), 3u);

    // One report without stacks: sites are not compared.
    current["stacks"]["enabled"] = false;
    r = diff(base, current, gate({}, "json"));
    j = json::parse(r.out);
    EXPECT_FALSE(change(j, "site", "parse", "alloc_count"));
    EXPECT_EQ(j["compared"]["sites"], false);
}

TEST(DiffVariables, ByNameAndType)
{
    json base = report(10, 100), current = report(10, 100);
    auto var = [](const std::string& name, const std::string& type, std::uint64_t count) {
        return json{{"name", name}, {"type", type}, {"count", count}, {"bytes", count * 8},
                    {"live_count", 0}, {"live_bytes", 0}};
    };
    base["variable_summary"] = json::array({var("buf", "std::vector<int>", 2), var("buf", "std::string", 5)});
    current["variable_summary"] = json::array({var("buf", "std::string", 5), var("buf", "std::vector<int>", 4)});
    Outcome r = diff(base, current, gate({}, "json"));
    json j = json::parse(r.out);
    const json* c = change(j, "variable", "buf (std::vector<int>)", "count");
    ASSERT_TRUE(c) << j.dump(1);
    EXPECT_EQ((*c)["base"], 2);
    EXPECT_EQ((*c)["new"], 4);
    EXPECT_FALSE(change(j, "variable", "buf (std::string)", "count"));
}

TEST(DiffOrder, WorstFirstAndDeterministic)
{
    json base = report(100, 1000), current = report(110, 3000);
    base["threads"] = json::array({thread(1, "a", 50, 500), thread(2, "b", 50, 500)});
    current["threads"] = json::array({thread(3, "b", 60, 500), thread(4, "a", 50, 2500), thread(5, "c", 0, 0)});
    Outcome r = diff(base, current, gate({}, "json"));
    json j = json::parse(r.out);
    ASSERT_GE(j["changes"].size(), 4u);
    // New first (from zero), then +400% before +200% before +20%.
    EXPECT_EQ(j["changes"][0]["status"], "new");
    double last = 1e300;
    for (const auto& c : j["changes"]) {
        if (c["relative"].is_null())
            continue;
        EXPECT_LE(c["relative"].get<double>(), last) << j.dump(1);
        last = c["relative"];
    }
    // The same input in another order: the same output, byte for byte.
    json shuffled = current;
    std::swap(shuffled["threads"][0], shuffled["threads"][2]);
    for (const char* f : {"text", "markdown", "json", "junit"})
        EXPECT_EQ(diff(base, current, gate({"alloc_count=1%"}, f)).out,
                  diff(base, shuffled, gate({"alloc_count=1%"}, f)).out) << f;
}

// --- leaks ----------------------------------------------------------------------

namespace {

json leak(const std::string& function, std::uint64_t bytes, const json& expected = nullptr)
{
    return json{{"id", "01"}, {"function", function},
                {"stack", json::array({frame(0x1000, function, "/usr/bin/app", 0x10), frame(0x2000, "main", "/usr/bin/app", 0x20)})},
                {"live_count", 1}, {"live_bytes", bytes}, {"oldest_age_s", 0.5},
                {"threads", json::array()}, {"variables", json::array()}, {"expected", expected}};
}

} // namespace

// The text table shows bytes as people read them; JSON keeps every byte.
TEST(DiffText, BytesInReadableUnits)
{
    Outcome r = diff(report(803, 33542), report(1203, 44347), gate({}));
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("alloc_bytes     32.8 KiB 43.3 KiB +10.6 KiB (+32.21%)\n"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("alloc_count          803     1203 +400 (+49.81%)\n"), std::string::npos) << r.out;
    r = diff(report(803, 33542), report(1203, 44347), gate({}, "json"));
    EXPECT_NE(r.out.find("44347"), std::string::npos) << r.out;
}

TEST(DiffLeaks, NewLeaksFailOnlyWithTheFlag)
{
    json base = report(10, 100), current = report(10, 100);
    base["leaks"] = json::array({leak("old_leak()", 64), leak("runtime()", 8, "made inside the C++ runtime")});
    current["leaks"] = json::array({leak("old_leak()", 128), leak("new_leak()", 32),
                                    leak("runtime()", 8), // explained in the base run
                                    leak("init()", 16, "made inside the C++ runtime")});
    Outcome r = diff(base, current, gate({}));
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(lines_starting(r.out, "new leak at new_leak() < main: 32 B live at exit").size(), 1u) << r.out;

    r = diff(base, current, gate({}, "text", true));
    EXPECT_EQ(r.code, 1) << r.out;
    auto breaches = lines_starting(r.out, "REGRESSION ");
    ASSERT_EQ(breaches.size(), 1u) << r.out;
    EXPECT_EQ(breaches[0], "REGRESSION new leak at new_leak() < main: 32 bytes in 1 block live at exit");

    r = diff(base, base, gate({}, "text", true));
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(lines_starting(r.out, "ok no new leaks").size(), 1u) << r.out;

    r = diff(base, current, gate({}, "junit", true));
    int failures = 0;
    std::string why;
    EXPECT_TRUE(well_formed_xml(r.out, failures, why)) << why << "\n" << r.out;
    EXPECT_EQ(failures, 1);
}

TEST(DiffLeaks, ManyNewLeaksKeepTheMarkdownShort)
{
    json base = report(10, 100), current = report(10, 100);
    base["leaks"] = json::array();
    current["leaks"] = json::array();
    for (int i = 0; i < 500; ++i)
        current["leaks"].push_back(leak("f" + std::to_string(i) + "()", 8));
    Outcome r = diff(base, current, gate({}, "markdown", true));
    EXPECT_EQ(r.code, 1);
    EXPECT_LT(r.out.size(), 20000u);
    EXPECT_NE(r.out.find("470 more new leaks"), std::string::npos) << r.out;
    r = diff(base, current, gate({}, "text", true));
    EXPECT_EQ(lines_starting(r.out, "REGRESSION new leak at ").size(), 500u); // each breach its line
    r = diff(base, current, gate({}, "markdown"));
    EXPECT_NE(r.out.find("- and 470 more"), std::string::npos) << r.out;
}

TEST(DiffLeaks, TheFlagNeedsLeaksInBothReports)
{
    json base = report(10, 100), current = report(10, 100);
    current["leaks"] = json::array({leak("new_leak()", 32)});
    Outcome r = diff(base, current, gate({}, "text", true));
    EXPECT_EQ(r.code, 2);
    expect_one_line(r.err);
    EXPECT_NE(r.err.find("the base report has none"), std::string::npos) << r.err;
}

// --- formats --------------------------------------------------------------------

namespace {

// A pair with two breaches and a thread and site row or two.
std::pair<json, json> sample_pair()
{
    json base = report(10000, 1000000, 5000, true), current = report(10300, 1100000, 6000, false);
    base["threads"] = json::array({thread(1, "app", 5000, 500000), thread(2, "gate-worker", 5000, 500000)});
    current["threads"] = json::array({thread(3, "app", 5000, 500000), thread(4, "gate-worker", 5300, 600000)});
    return {base, current};
}

const std::vector<std::string> kTwoBreaches = {"alloc_count=2%", "alloc_bytes=5%", "peak_live_bytes=50%"};

} // namespace

TEST(DiffFormats, JsonParsesBack)
{
    auto [base, current] = sample_pair();
    Outcome r = diff(base, current, gate(kTwoBreaches, "json"));
    EXPECT_EQ(r.code, 1);
    json j = json::parse(r.out);
    EXPECT_EQ(j["schema"], "memscope-trace-diff/1");
    EXPECT_EQ(j["result"], "regression");
    EXPECT_EQ(j["exit_code"], 1);
    ASSERT_EQ(j["breaches"].size(), 2u);
    ASSERT_EQ(j["checks"].size(), 3u);
    EXPECT_EQ(j["checks"][0]["metric"], "alloc_count");
    EXPECT_EQ(j["checks"][0]["breached"], true);
    EXPECT_EQ(j["checks"][0]["allowed_percent"], 2.0);
    EXPECT_EQ(j["checks"][2]["breached"], false);
    EXPECT_EQ(j["checks"][2]["exact"], false);
    EXPECT_FALSE(j["changes"].empty());
}

TEST(DiffFormats, JunitHasAFailurePerBreach)
{
    auto [base, current] = sample_pair();
    Outcome r = diff(base, current, gate(kTwoBreaches, "junit"));
    EXPECT_EQ(r.code, 1);
    int failures = 0;
    std::string why;
    ASSERT_TRUE(well_formed_xml(r.out, failures, why)) << why << "\n" << r.out;
    EXPECT_EQ(failures, 2);
    EXPECT_EQ(xml_attribute(r.out, "testsuite", "tests"), "3");
    EXPECT_EQ(xml_attribute(r.out, "testsuite", "failures"), "2");
    EXPECT_NE(r.out.find("<testcase classname=\"memscope-trace.diff\" name=\"alloc_count=2%\">"), std::string::npos);

    r = diff(base, base, gate({}, "junit"));
    EXPECT_EQ(r.code, 0);
    ASSERT_TRUE(well_formed_xml(r.out, failures, why)) << why;
    EXPECT_EQ(failures, 0);
    EXPECT_EQ(xml_attribute(r.out, "testsuite", "tests"), "1");
}

TEST(DiffFormats, MarkdownHasTables)
{
    auto [base, current] = sample_pair();
    Outcome r = diff(base, current, gate(kTwoBreaches, "markdown"));
    EXPECT_EQ(r.code, 1);
    EXPECT_EQ(r.out.rfind("### ", 0), 0u) << r.out;
    EXPECT_NE(r.out.find("| check | base | new | allowed | result |\n|---|"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("| alloc\\_count=2% | 10000 | 10300 | +2% | :x: **regression** |"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("| kind | what | metric | base | new | change |"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("> **Note:** peak\\_live\\_bytes is not exact"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("</details>"), std::string::npos);
}

// --- hostile input --------------------------------------------------------------

namespace {

// Pipes, backticks, HTML, a terminal escape, a newline, a mention, an ampersand.
const std::string kHostile = "ev|l`x`<script>alert(1)</script>\x1b[2J\n@user & \x7f\xc2\x9b" "ok";

// Every cell of a markdown table row: split on pipes not escaped.
std::size_t unescaped_pipes(const std::string& line)
{
    std::size_t n = 0;
    for (std::size_t i = 0; i < line.size(); ++i) {
        if (line[i] == '\\') {
            ++i;
            continue;
        }
        n += line[i] == '|';
    }
    return n;
}

} // namespace

TEST(DiffEscaping, HostileNamesInEveryFormat)
{
    json base = report(10, 100), current = report(20, 200);
    base["threads"] = json::array({thread(1, kHostile, 10, 100)});
    current["threads"] = json::array({thread(2, kHostile, 20, 200)});
    base["target"]["exe"] = current["target"]["exe"] = "/tmp/" + kHostile;
    base["leaks"] = json::array();
    current["leaks"] = json::array({leak(kHostile, 10)});
    DiffOptions o = gate({"alloc_count=10%"}, "text", true);

    Outcome r = diff(base, current, o);
    ASSERT_EQ(r.code, 1) << r.err;
    for (char c : r.out)
        EXPECT_TRUE(c == '\n' || static_cast<unsigned char>(c) >= 0x20) << "control byte in text output";
    EXPECT_EQ(r.out.find("\x7f"), std::string::npos);
    EXPECT_EQ(r.out.find("\xc2\x9b"), std::string::npos);
    EXPECT_NE(r.out.find("\\x1b[2J\\x0a@user"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("\\xc2\\x9b"), std::string::npos) << r.out;

    o.format = "markdown";
    r = diff(base, current, o);
    EXPECT_EQ(r.out.find("<script>"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("@user"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("\x1b"), std::string::npos);
    EXPECT_NE(r.out.find("ev\\|l\\`x\\`&lt;script&gt;"), std::string::npos) << r.out;
    for (const auto& line : lines(r.out)) {
        if (line.rfind("| ", 0) != 0)
            continue;
        std::size_t pipes = unescaped_pipes(line);
        EXPECT_TRUE(pipes == 6 || pipes == 7) << line; // 5 or 6 columns
    }

    o.format = "junit";
    r = diff(base, current, o);
    int failures = 0;
    std::string why;
    EXPECT_TRUE(well_formed_xml(r.out, failures, why)) << why << "\n" << r.out;
    EXPECT_EQ(failures, 2);
    EXPECT_EQ(r.out.find("<script>"), std::string::npos);
    EXPECT_EQ(r.out.find("\x1b"), std::string::npos);

    o.format = "json";
    r = diff(base, current, o);
    json j = json::parse(r.out);
    const json* c = change(j, "thread", kHostile, "alloc_count");
    ASSERT_TRUE(c) << r.out;
    EXPECT_EQ((*c)["name"], kHostile);
}

TEST(DiffBadInput, NumbersThatAreNotCounts)
{
    const std::string good = report(10, 100).dump();
    struct Case {
        std::string from, to, says;
    } cases[] = {
        {"\"alloc_count\":10", "\"alloc_count\":100000000000000000000000", "totals.alloc_count is not an unsigned 64-bit integer"},
        {"\"alloc_count\":10", "\"alloc_count\":18446744073709551616", "totals.alloc_count is not an unsigned"},
        {"\"alloc_count\":10", "\"alloc_count\":-10", "totals.alloc_count is negative"},
        {"\"alloc_count\":10", "\"alloc_count\":1.5", "totals.alloc_count is not an unsigned"},
        {"\"alloc_count\":10", "\"alloc_count\":1e3", "totals.alloc_count is not an unsigned"},
        {"\"alloc_count\":10", "\"alloc_count\":\"10\"", "totals.alloc_count is a string"},
        {"\"alloc_count\":10", "\"alloc_count\":null", "totals.alloc_count is null"},
        {"\"alloc_count\":10", "\"allocs\":10", "totals.alloc_count is missing"},
        {"\"peak_live_bytes_exact\":true", "\"peak_live_bytes_exact\":1", "peak_live_bytes_exact is a number"},
        {"\"name\":\"app\"", "\"name\":7", "threads[0].name is a number"},
        {"\"exe\":\"/usr/bin/app\"", "\"exe\":[]", "target.exe is an array"},
        {"\"schema\":\"memscope-trace/1\"", "\"schema\":\"memscope-trace/3\"", "has schema 'memscope-trace/3'"},
        {"\"schema\":\"memscope-trace/1\"", "\"schema\":1", "\"schema\" is a number"},
    };
    for (const auto& c : cases) {
        std::string bad = good;
        std::size_t at = bad.find(c.from, bad.find("\"totals\":"));
        if (c.from.rfind("\"name\"", 0) == 0 || c.from.rfind("\"exe\"", 0) == 0 || c.from.rfind("\"schema\"", 0) == 0)
            at = bad.find(c.from);
        ASSERT_NE(at, std::string::npos) << c.from;
        bad.replace(at, c.from.size(), c.to);
        for (bool as_base : {false, true}) {
            Outcome r = as_base ? diff_text(bad, good, gate({"alloc_count=1%"})) : diff_text(good, bad, gate({"alloc_count=1%"}));
            EXPECT_EQ(r.code, 2) << c.to;
            expect_one_line(r.err);
            EXPECT_NE(r.err.find(c.says), std::string::npos) << c.to << ": " << r.err;
            EXPECT_NE(r.err.find(as_base ? "the base report" : "the new report"), std::string::npos) << r.err;
            EXPECT_TRUE(r.out.empty());
        }
    }
}

TEST(DiffBadInput, BrokenDocuments)
{
    const std::string good = report(10, 100).dump();
    struct Case {
        std::string text, says;
    } cases[] = {
        {good.substr(0, good.size() / 2), "truncated"},
        {"", "is empty"},
        {"[1,2]", "not an object"},
        {"null", "not an object"},
        {"{\"schema\":\"other/1\"}", "has schema 'other/1'"},
        {"{}", "no \"schema\""},
        {"{\"schema\":\"memscope-trace/1\"}", "totals is missing"},
        {"{\"schema\":\"memscope-trace/1\",\"totals\":[]}", "totals is an array"},
        {std::string("{\"schema\":\"memscope-trace/1\",\"x\":\"\xff\"}"), "not valid JSON"},
        {"{\"schema\":\"memscope-trace/1\"} trailing", "not valid JSON"},
        {std::string(100000, '['), "nests deeper than 64 levels"},
    };
    for (const auto& c : cases) {
        Outcome r = diff_text(good, c.text);
        EXPECT_EQ(r.code, 2) << c.text.substr(0, 80);
        expect_one_line(r.err);
        EXPECT_NE(r.err.find(c.says), std::string::npos) << c.text.substr(0, 80) << ": " << r.err;
    }
}

TEST(DiffBadInput, StructureAndStrings)
{
    auto expect_bad = [](const json& current, const std::string& says) {
        Outcome r = diff(report(10, 100), current);
        EXPECT_EQ(r.code, 2) << says;
        expect_one_line(r.err);
        EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
    };
    json j = report(10, 100);
    j["threads"] = json::object();
    expect_bad(j, "threads is an object, expected an array");
    j = report(10, 100);
    j["threads"].push_back(42);
    expect_bad(j, "threads[1] is a number");
    j = report(10, 100);
    j["processes"] = "all";
    expect_bad(j, "processes is a string");
    j = report(10, 100);
    j["processes"] = json::array({{{"exe", "/bin/x"}}});
    expect_bad(j, "processes[0].totals is missing");
    j = report(10, 100);
    j["sites"] = json::array({{{"stack", json::array({1})}, {"alloc_count", 1}}});
    expect_bad(j, "sites[0].stack[0] is a number");
    // Schema 2: stacks index the frame table, within it.
    j["schema"] = "memscope-trace/2";
    j["frames"] = json::array({{{"symbol", "main"}, {"module", "/bin/x"}, {"offset", 16}}});
    expect_bad(j, "sites[0].stack[0] is 1, which names no entry of \"frames\"");
    j["frames"] = json::array({{{"symbol", "main"}}, 7});
    expect_bad(j, "frames[1] is a number");
    j = report(10, 100);
    j["sites"] = json::array({{{"stack", json::array()}, {"alloc_count", 1}}});
    expect_bad(j, "sites[0].alloc_bytes is missing");
    j = report(10, 100);
    j["leaks"] = json::array({leak("f", 1, 5)});
    expect_bad(j, "leaks[0].expected is a number");
    j = report(10, 100);
    j["stacks"] = {{"enabled", "yes"}};
    expect_bad(j, "stacks.enabled is a string");
    j = report(10, 100);
    j["variable_summary"] = json::array({{{"name", "v"}, {"type", "int"}, {"count", -1}}});
    expect_bad(j, "variable_summary[0].count is negative");
    // Sums that overflow 64 bits.
    j = report(10, 100);
    std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
    j["threads"] = json::array({thread(1, "w", max, 1), thread(2, "w", max, 1)});
    expect_bad(j, "overflows 64 bits");
    // A metric a threshold names, missing in one report.
    j = report(10, 100);
    j["totals"].erase("track_count");
    Outcome r = diff(report(10, 100), j, gate({"track_count=1%"}));
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("the new report has no totals.track_count"), std::string::npos) << r.err;
    // ... but it is fine when nothing asks for it.
    EXPECT_EQ(diff(report(10, 100), j, gate({"alloc_count=1%"})).code, 0);
}

TEST(DiffBadInput, TextThatIsNotUtf8)
{
    // In a file: bad input.
    json j = report(10, 100);
    std::string text = j.dump();
    text.replace(text.find("\"app\""), 5, "\"\xff\xfe\"");
    Outcome r = diff_text(report(10, 100).dump(), text);
    EXPECT_EQ(r.code, 2);
    expect_one_line(r.err);
    EXPECT_NE(r.err.find("the new report is not valid JSON"), std::string::npos) << r.err;
    for (char c : r.err)
        EXPECT_TRUE(c == '\n' || (static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f)) << r.err;

    // In memory (the tracer's own report, run --baseline): read as the
    // report writer would write it, the bytes replaced by U+FFFD, so it
    // matches the same report read from its file.
    json base = report(10, 100), current = report(10, 100);
    base["threads"][0]["name"] = "bad\xef\xbf\xbd";
    current["threads"][0]["name"] = std::string("bad\xff");
    r = diff(base, current, gate({"alloc_count=0"}, "json"));
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(json::parse(r.out)["changes"].empty()) << r.out;
}

TEST(DiffFormats, LabelsNameTheReports)
{
    Outcome r = capture([](std::FILE* out, std::FILE* err) {
        return diff_reports(report(10, 100), report(10, 100), gate({}), out, err, "base.json", "(this run)");
    });
    EXPECT_EQ(r.out.rfind("memscope-trace diff: base.json -> (this run)\n", 0), 0u) << r.out;
    r = capture([](std::FILE* out, std::FILE* err) {
        json bad = report(10, 100);
        bad["totals"]["alloc_count"] = -1;
        return diff_reports(report(10, 100), bad, gate({}), out, err, "base.json", "(this run)");
    });
    EXPECT_NE(r.err.find("the new report (this run): totals.alloc_count is negative"), std::string::npos) << r.err;
}

TEST(DiffBadInput, Files)
{
    std::string dir = ::testing::TempDir();
    std::string base = dir + "/diff-base-" + std::to_string(getpid()) + ".json";
    std::string current = dir + "/diff-new-" + std::to_string(getpid()) + ".json";
    std::ofstream(base) << report(10000, 1000).dump(2);
    std::ofstream(current) << report(10300, 1000).dump(2);
    auto files = [](const std::string& a, const std::string& b, const DiffOptions& o) {
        return capture([&](std::FILE* out, std::FILE* err) { return diff_files(a, b, o, out, err); });
    };
    Outcome r = files(base, current, gate({"alloc_count=2%"}));
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_EQ(r.out.rfind("memscope-trace diff: " + base + " -> " + current + "\n", 0), 0u) << r.out;
    r = files(base, current, gate({"alloc_count=5%"}));
    EXPECT_EQ(r.code, 0) << r.err;

    r = files(base, dir + "/no-such-report.json", gate({}));
    EXPECT_EQ(r.code, 2);
    expect_one_line(r.err);
    EXPECT_NE(r.err.find("cannot read"), std::string::npos) << r.err;
    r = files(base, dir, gate({}));
    EXPECT_EQ(r.code, 2);
    expect_one_line(r.err);

    std::ofstream(current, std::ios::trunc) << report(10300, 1000).dump(2).substr(0, 100);
    r = files(base, current, gate({}));
    EXPECT_EQ(r.code, 2);
    expect_one_line(r.err);
    EXPECT_NE(r.err.find("the new report " + current + " is not valid JSON"), std::string::npos) << r.err;

    r = files(base, current, gate({"bogus=1%"}));
    EXPECT_EQ(r.code, 2);
    expect_one_line(r.err);
    EXPECT_NE(r.err.find("unknown metric 'bogus'"), std::string::npos) << r.err;
    std::remove(base.c_str());
    std::remove(current.c_str());
}

// A system-wide report (-a) is read, then refused with a sentence: its
// figures are the kernel's per process, not one command's allocator calls.
TEST(DiffBadInput, SystemWideReportsAreReadAndRefusedClearly)
{
    json system = report(10000, 1000);
    system["mode_scope"] = "system";
    system["processes"] = json::array();
    system["system"] = {{"processes_seen", 3}, {"births", 1}};
    system["oom_kills"] = json::array();
    json process = report(10000, 1000);
    process["mode_scope"] = "process";
    for (const auto& [base, current] : {std::pair{system, system}, {process, system}, {system, process}}) {
        Outcome r = diff(base, current, gate({"alloc_count=2%"}));
        EXPECT_EQ(r.code, 2) << r.out;
        expect_one_line(r.err);
        EXPECT_NE(r.err.find("is a system-wide report (memscope-trace -a): diff compares the allocator figures of "
                             "one traced command"),
                  std::string::npos)
            << r.err;
    }
    EXPECT_EQ(diff(process, process, gate({"alloc_count=2%"})).code, 0);
    system["system"]["births"] = "many"; // read first: a wrong field is said as such
    Outcome r = diff(system, system, gate({}));
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("system.births is a string, expected an unsigned 64-bit integer"), std::string::npos)
        << r.err;
}
