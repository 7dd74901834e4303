// Allocation sites, stacks and leaks against real traced programs; the
// folded stacks and the HTML page made from the same report.
#include "harness.hpp"
#include "temp_dir.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <map>
#include <set>

using namespace e2e;
using nlohmann::json;

namespace {

bool has_frame(const json& stack, const std::string& symbol)
{
    for (const auto& f : stack)
        if (f["symbol"].is_string() && f["symbol"] == symbol)
            return true;
    return false;
}

} // namespace

TEST_F(E2E, LeakReportNamesTheThreeLeakSites)
{
    std::string collapsed = temp_json("leaks-folded");
    std::string html = temp_json("leaks-html");
    std::string path = temp_json("leaks");
    Result run_result = run({kBin, "run", "--json", path, "--collapsed", collapsed, "--weight", "count", "--html", html,
                             "--", target("leaks")});
    ASSERT_EQ(run_result.status, 0) << run_result.err;
    json r = load(path);
    ASSERT_TRUE(r["stacks"]["enabled"]);
    EXPECT_EQ(r["stacks"]["depth"], 64);

    // The program's leaks, by function: exactly the three, with their counts and bytes.
    std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> by_function;
    std::uint64_t expected_blocks = 0;
    for (const auto& l : r["leaks"]) {
        if (!l["expected"].is_null()) {
            ++expected_blocks; // libstdc++'s emergency exception pool
            continue;
        }
        ASSERT_TRUE(l["function"].is_string()) << l.dump();
        auto& [count, bytes] = by_function[l["function"].get<std::string>()];
        count += l["live_count"].get<std::uint64_t>();
        bytes += l["live_bytes"].get<std::uint64_t>();
        EXPECT_TRUE(has_frame(l["stack"], "main")) << l.dump();
        EXPECT_GT(l["oldest_age_s"].get<double>(), 0.0);
        ASSERT_EQ(l["threads"].size(), 1u);
        EXPECT_EQ(l["threads"][0]["name"], "target_leaks");
    }
    std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> want{
        {"leak_shallow(unsigned long)", {3, 300}}, {"make_widget()", {5, 320}}, {"leak_deep()", {2, 2048}}};
    EXPECT_EQ(by_function, want) << r["leaks"].dump(1);
    EXPECT_LE(expected_blocks, 1u);

    // Each at its depth, the direct caller first after the allocator's own frame.
    for (const auto& l : r["leaks"]) {
        if (l["function"] == "make_widget()") {
            const json& s = l["stack"];
            ASSERT_GE(s.size(), 5u) << s.dump();
            EXPECT_EQ(s[0]["symbol"], "operator new(unsigned long)");
            EXPECT_EQ(s[1]["symbol"], "make_widget()");
            EXPECT_EQ(s[2]["symbol"], "add_widget()");
            EXPECT_EQ(s[4]["symbol"], "main");
        }
        if (l["function"] == "leak_deep()") {
            std::vector<std::string> names;
            for (const auto& f : l["stack"])
                names.push_back(f["symbol"]);
            EXPECT_EQ(names, (std::vector<std::string>{"leak_deep()", "d()", "c()", "b()", "a()", "main"}));
            EXPECT_EQ(l["stack"][0]["module"], target("leaks"));
        }
    }
    // Sites count every allocation of the normal-mode run, with frame pointers no stack is cut.
    std::uint64_t count = 0, bytes = 0;
    for (const auto& s : r["sites"]) {
        count += s["alloc_count"].get<std::uint64_t>();
        bytes += s["alloc_bytes"].get<std::uint64_t>();
    }
    EXPECT_EQ(count, r["totals"]["alloc_count"]);
    EXPECT_EQ(bytes, r["totals"]["alloc_bytes"]);
    EXPECT_NE(run_result.err.find("make_widget() (leaks.cpp:"), std::string::npos) << run_result.err;
    EXPECT_NE(run_result.err.find("leaks: "), std::string::npos);

    // Folded stacks, weighted by count, root first: they add up to the totals.
    std::istringstream folded(read_all(collapsed));
    std::uint64_t folded_count = 0;
    bool saw_widget = false;
    for (std::string line; std::getline(folded, line);) {
        auto space = line.rfind(' ');
        ASSERT_NE(space, std::string::npos) << line;
        folded_count += std::stoull(line.substr(space + 1));
        saw_widget |= line.find("main;build_scene(std::vector<Widget*, std::allocator<Widget*> >&);add_widget();"
                                "make_widget();operator new(unsigned long) 5") == 0;
    }
    EXPECT_EQ(folded_count, r["totals"]["alloc_count"]);
    EXPECT_TRUE(saw_widget) << read_all(collapsed);
    std::remove(collapsed.c_str());

    // The HTML page at the end of tracing, and the same rendered later from the JSON.
    std::string page = read_all(html);
    EXPECT_NE(page.find("<!DOCTYPE html>"), std::string::npos);
    EXPECT_NE(page.find("make_widget()"), std::string::npos);
    std::remove(html.c_str());
}

TEST_F(E2E, ReportRendersAJsonReportLater)
{
    json r = trace_run({target("leaks")});
    std::string in = temp_json("report-in"), out = temp_json("report-out") + ".html";
    std::ofstream(in) << r.dump();
    Result rr = run({kBin, "report", in, "--html", out});
    EXPECT_EQ(rr.status, 0) << rr.err;
    EXPECT_NE(read_all(out).find("leak_deep()"), std::string::npos);
    std::remove(out.c_str());
    // Nothing to render: the text report, on stdout, its figures the file's.
    rr = run({kBin, "report", in});
    EXPECT_EQ(rr.status, 0) << rr.err;
    EXPECT_NE(rr.out.find("allocations " + std::to_string(r["totals"]["alloc_count"].get<std::uint64_t>()) + " ("),
              std::string::npos)
        << rr.out;
    EXPECT_NE(rr.out.find("leak_deep()"), std::string::npos) << rr.out;

    // Bad input: one line, exit 2, nothing written.
    std::ofstream(in) << "{\"schema\": \"memscope-trace/1\", \"sites\": [";
    rr = run({kBin, "report", in, "--html", out});
    EXPECT_EQ(rr.status, 2);
    EXPECT_NE(rr.err.find("not valid JSON"), std::string::npos) << rr.err;
    EXPECT_EQ(std::count(rr.err.begin(), rr.err.end(), '\n'), 1) << rr.err;
    EXPECT_FALSE(std::ifstream(out).good());
    std::ofstream(in) << "{\"schema\": \"other/2\"}";
    rr = run({kBin, "report", in, "--html", out});
    EXPECT_EQ(rr.status, 2);
    EXPECT_NE(rr.err.find("not a memscope-trace report"), std::string::npos) << rr.err;
    std::remove(in.c_str());
}

TEST_F(E2E, TenThousandDistinctStacksSumToTheTotals)
{
    json r = trace_run({target("stacks10k"), "10000"});
    EXPECT_EQ(r["totals"]["alloc_count"], 10000);
    EXPECT_EQ(r["stacks"]["distinct"], r["sites"].size());
    EXPECT_GE(r["sites"].size(), 10000u);
    std::uint64_t count = 0, bytes = 0;
    std::set<std::string> ids;
    for (const auto& s : r["sites"]) {
        count += s["alloc_count"].get<std::uint64_t>();
        bytes += s["alloc_bytes"].get<std::uint64_t>();
        ids.insert(s["id"].get<std::string>());
    }
    EXPECT_EQ(ids.size(), r["sites"].size());
    EXPECT_EQ(count, r["totals"]["alloc_count"]);
    EXPECT_EQ(bytes, r["totals"]["alloc_bytes"]);
    EXPECT_EQ(r["dropped"]["events"], 0);
    EXPECT_EQ(r["stacks"]["truncated_share"], 0.0);
    // 14 levels of left/right, step and main: the whole path, symbolized.
    const json& deep = r["sites"][0]["stack"];
    EXPECT_EQ(deep.size(), 30u) << deep.dump();
    EXPECT_EQ(deep.back()["symbol"], "main");
}

TEST_F(E2E, TheTracersMaxRssIsItsRealHighWaterMark)
{
    // 10,000 sites: the report's sites, leaks and frames are streamed, so
    // writing it adds nothing to the peak the report states. The target is
    // small: the wait's figure (the larger of the tracer and its child) is
    // the tracer's own.
    std::string path = temp_json("max_rss");
    Result res = run({kBin, "run", "--json", path, "--", target("stacks10k")});
    ASSERT_EQ(res.status, 0) << res.err;
    json r = load(path);
    const long stated = r["tracer"]["max_rss_kb"].get<long>();
    EXPECT_LE(stated, res.max_rss_kb);
    EXPECT_GE(stated, res.max_rss_kb * 97 / 100) << "stated " << stated << " KiB, real " << res.max_rss_kb << " KiB";
}

TEST_F(E2E, WithoutFramePointersStacksReachMainThroughTheUnwindTables)
{
    // -O2 and no frame pointers, as distributions build: every frame found
    // by the .eh_frame rules, operator new (libstdc++) included. The leaks
    // at depths 1, 3 and 5 show every frame down to main, in order.
    json r = trace_run({target("leaks_nofp")});
    EXPECT_EQ(r["stacks"]["truncated_share"].get<double>(), 0.0) << r["stacks"].dump();
    EXPECT_FALSE(r["stacks"].contains("note"));
    std::uint64_t count = 0;
    bool widget = false, deep = false, shallow = false;
    std::uint64_t shallow_count = 0, deep_count = 0;
    for (const auto& s : r["sites"]) {
        count += s["alloc_count"].get<std::uint64_t>();
        ASSERT_GE(s["stack"].size(), 1u);
        EXPECT_FALSE(s["truncated"].get<bool>()) << s.dump();
        // Every frame past the first is a return address in a known module.
        for (std::size_t i = 1; i < s["stack"].size(); ++i) {
            EXPECT_TRUE(s["stack"][i]["module"].is_string()) << s.dump();
            EXPECT_TRUE(s["stack"][i]["symbol"].is_string()) << s.dump();
        }
        std::vector<std::string> names;
        for (const auto& f : s["stack"])
            names.push_back(f["symbol"].is_string() ? f["symbol"].get<std::string>() : "?");
        if (s["function"] == "make_widget()") {
            widget = true;
            EXPECT_EQ(names, (std::vector<std::string>{"operator new(unsigned long)", "make_widget()", "add_widget()",
                                                       "build_scene(std::vector<Widget*, std::allocator<Widget*> >&)",
                                                       "main"}));
            EXPECT_EQ(s["alloc_count"], 5);
        }
        if (s["function"] == "leak_deep()") {
            deep = true;
            EXPECT_EQ(names, (std::vector<std::string>{"leak_deep()", "d()", "c()", "b()", "a()", "main"}));
            deep_count += s["alloc_count"].get<std::uint64_t>();
        }
        if (s["function"] == "leak_shallow(unsigned long)") {
            // main's loops are unrolled at -O2: a call, a site.
            shallow = true;
            EXPECT_EQ(names, (std::vector<std::string>{"leak_shallow(unsigned long)", "main"}));
            shallow_count += s["alloc_count"].get<std::uint64_t>();
        }
    }
    EXPECT_EQ(shallow_count, 3u);
    EXPECT_EQ(deep_count, 2u);
    EXPECT_TRUE(widget && deep && shallow) << r["sites"].dump(1);
    EXPECT_EQ(count, r["totals"]["alloc_count"]);
}

TEST_F(E2E, AFramelessFunctionUsingRbpDoesNotEndTheStack)
{
    // rbp_scratch_alloc keeps its own value in rbp; the caller's is where
    // its epilogue's `pop rbp` finds it, and the chain goes on from there.
    json r = trace_run({target("rbp_scratch")});
    const json* site = nullptr;
    for (const auto& s : r["sites"])
        if (s["function"] == "rbp_scratch_alloc")
            site = &s;
    ASSERT_NE(site, nullptr) << r["sites"].dump(1);
    EXPECT_EQ((*site)["alloc_count"], 7);
    EXPECT_EQ((*site)["truncated"], false) << site->dump(1);
    std::vector<std::string> names;
    for (const auto& f : (*site)["stack"])
        names.push_back(f["symbol"].is_string() ? f["symbol"].get<std::string>() : "?");
    ASSERT_GE(names.size(), 3u) << site->dump(1);
    EXPECT_EQ(names[0], "rbp_scratch_alloc");
    EXPECT_EQ(names[1], "keep_one");
    EXPECT_EQ(names[2], "main");
}

TEST_F(E2E, NoStacksMeansNoSites)
{
    std::string path = temp_json("nostacks");
    Result res = run({kBin, "run", "--no-stacks", "--json", path, "--", target("leaks")});
    ASSERT_EQ(res.status, 0) << res.err;
    json r = load(path);
    EXPECT_FALSE(r["stacks"]["enabled"]);
    EXPECT_TRUE(r["sites"].empty());
    EXPECT_EQ(r["totals"]["live_count"], r["allocation_records"]);
}

TEST_F(E2E, RustStacksAreDemangled)
{
    json r = trace_run({RUST_EXAMPLE, "2", "3"});
    bool std_frame = false;
    for (const auto& s : r["sites"])
        for (const auto& f : s["stack"]) {
            if (!f["symbol"].is_string())
                continue;
            std::string name = f["symbol"];
            EXPECT_NE(name.rfind("_R", 0), 0u) << name; // v0 mangling
            EXPECT_NE(name.rfind("_ZN", 0), 0u) << name; // legacy
            std_frame |= name.rfind("std::", 0) == 0;
        }
    EXPECT_TRUE(std_frame) << r["sites"].dump(1);
}

TEST_F(E2E, SymbolsComeFromThisMachineOnlyNeverADebuginfodServer)
{
    // DEBUGINFOD_URLS set (Debian sets it for login shells) and libstdc++
    // without local debug symbols: the symbolizer must not ask the server.
    int server = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    ASSERT_GE(server, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    ASSERT_EQ(bind(server, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(listen(server, 16), 0);
    ASSERT_EQ(getsockname(server, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    const std::string url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
    std::string path = temp_json("debuginfod");
    // A fresh client cache: one that already had the answer would ask nobody.
    char cache[] = "/tmp/memscope-debuginfod-XXXXXX";
    ASSERT_NE(mkdtemp(cache), nullptr);
    Result res = run({"/usr/bin/env", "DEBUGINFOD_URLS=" + url, std::string("DEBUGINFOD_CACHE_PATH=") + cache, kBin,
                      "run", "--json", path, "--", target("leaks")});
    std::filesystem::remove_all(cache);
    ASSERT_EQ(res.status, 0) << res.err;
    json r = load(path);
    EXPECT_TRUE(std::any_of(r["sites"].begin(), r["sites"].end(),
                            [](const json& s) { return has_frame(s["stack"], "leak_deep()"); }));
    int queries = 0;
    while (true) {
        int c = accept4(server, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0)
            break;
        ++queries;
        close(c);
    }
    close(server);
    EXPECT_EQ(queries, 0) << "the tracer asked " << url;
}

// Temporaries as heaptrack counts them (see tests/targets/temporaries.c):
// per site, per thread and in total, exactly; and the text report lists them.
TEST_F(E2E, TemporariesPerSiteExactly)
{
    json r = trace_run({target("temporaries")});
    std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> by_function; // temporaries, allocations
    std::uint64_t sum = 0;
    for (const auto& s : r["sites"]) {
        ASSERT_TRUE(s.contains("temporary_count")) << s.dump();
        auto& [temps, allocs] = by_function[s["function"].is_string() ? s["function"].get<std::string>() : "?"];
        temps += s["temporary_count"].get<std::uint64_t>();
        allocs += s["alloc_count"].get<std::uint64_t>();
        sum += s["temporary_count"].get<std::uint64_t>();
    }
    using P = std::pair<std::uint64_t, std::uint64_t>;
    EXPECT_EQ(by_function["hold_peak"], (P{1, 64})); // its last block, freed with no allocation after it
    EXPECT_EQ(by_function["mixed_sizes"], (P{10, 10}));
    EXPECT_EQ(by_function["temp_at_once"], (P{100, 100}));
    EXPECT_EQ(by_function["pair_first"], (P{0, 50}));
    EXPECT_EQ(by_function["pair_second"], (P{50, 50}));
    EXPECT_EQ(by_function["grow"], (P{1, 2})); // malloc(16), then the realloc's block
    EXPECT_EQ(by_function["hand_off"], (P{0, 20}));
    EXPECT_EQ(r["totals"]["temporary_count"], sum) << r["totals"].dump();
    EXPECT_EQ(sum, 162u);
    const json* main_thread = thread_named(r, "target_temporar");
    ASSERT_NE(main_thread, nullptr) << r["threads"].dump();
    EXPECT_EQ((*main_thread)["temporary_count"], 162);
    EXPECT_NE(last_.err.find("temporary 162 ("), std::string::npos) << last_.err;
    EXPECT_NE(last_.err.find("top sites by temporaries:"), std::string::npos) << last_.err;
    EXPECT_NE(last_.err.find("100 of       100 allocs temporary  temp_at_once"), std::string::npos) << last_.err;
}

// The same program's sizes, exactly, per site and for the process; and what
// was live at its peak: hold_peak's 64 blocks of 64 KiB, all of them.
TEST_F(E2E, SizeHistogramsAndThePeakBySiteExactly)
{
    json r = trace_run({target("temporaries")});
    using Buckets = std::vector<std::array<std::uint64_t, 4>>; // min, max, count, bytes
    auto buckets = [](const json& list) {
        Buckets out;
        for (const auto& b : list)
            out.push_back({b["min"].get<std::uint64_t>(), b["max"].get<std::uint64_t>(), b["count"].get<std::uint64_t>(),
                           b["bytes"].get<std::uint64_t>()});
        return out;
    };
    std::map<std::string, Buckets> by_function;
    std::map<std::string, std::string> id_of;
    std::map<std::uint64_t, std::array<std::uint64_t, 2>> summed; // min -> count, bytes over the sites
    for (const auto& s : r["sites"]) {
        ASSERT_TRUE(s.contains("size_histogram")) << s.dump();
        const std::string f = s["function"].is_string() ? s["function"].get<std::string>() : "?";
        // A function's sites (grow's malloc and realloc are two), merged.
        Buckets& merged = by_function[f];
        for (const auto& b : buckets(s["size_histogram"])) {
            auto it = std::find_if(merged.begin(), merged.end(), [&](const auto& m) { return m[0] == b[0]; });
            if (it == merged.end())
                merged.push_back(b);
            else
                (*it)[2] += b[2], (*it)[3] += b[3];
        }
        std::sort(merged.begin(), merged.end());
        id_of[f] = s["id"];
        std::uint64_t count = 0;
        for (const auto& b : s["size_histogram"]) {
            summed[b["min"]][0] += b["count"].get<std::uint64_t>();
            summed[b["min"]][1] += b["bytes"].get<std::uint64_t>();
            count += b["count"].get<std::uint64_t>();
        }
        EXPECT_EQ(count, s["alloc_count"]) << s.dump(); // every allocation of a site in one bucket
    }
    EXPECT_EQ(by_function["hold_peak"], (Buckets{{65536, 131071, 64, 64 * 65536}}));
    Buckets mixed; // one site, ten sizes: its first kept in the site's entry, the others beside it
    for (std::uint64_t i = 0; i < 10; ++i)
        mixed.push_back({8u << i, (16u << i) - 1, 1, 8u << i});
    EXPECT_EQ(by_function["mixed_sizes"], mixed);
    EXPECT_EQ(by_function["temp_at_once"], (Buckets{{32, 63, 100, 3200}}));
    EXPECT_EQ(by_function["pair_first"], (Buckets{{32, 63, 50, 2400}}));
    EXPECT_EQ(by_function["pair_second"], (Buckets{{64, 127, 50, 3200}}));
    EXPECT_EQ(by_function["grow"], (Buckets{{16, 31, 1, 16}, {4096, 8191, 1, 4096}}));
    EXPECT_EQ(by_function["hand_off"], (Buckets{{16, 31, 20, 480}}));
    // The process's histogram: the sites' summed, the totals' allocations.
    std::uint64_t count = 0, bytes = 0;
    for (const auto& b : r["size_histogram"]) {
        EXPECT_EQ(summed[b["min"]], (std::array<std::uint64_t, 2>{b["count"], b["bytes"]})) << b.dump();
        EXPECT_EQ(b["max"], b["min"] == 0 ? 1 : 2 * b["min"].get<std::uint64_t>() - 1) << b.dump();
        count += b["count"].get<std::uint64_t>();
        bytes += b["bytes"].get<std::uint64_t>();
    }
    EXPECT_EQ(r["size_histogram"].size(), summed.size());
    EXPECT_EQ(count, r["totals"]["alloc_count"]);
    EXPECT_EQ(bytes, r["totals"]["alloc_bytes"]);

    // The peak: exact, one figure, hold_peak's blocks all in it.
    ASSERT_TRUE(r.contains("peak")) << r.dump();
    const json& peak = r["peak"];
    EXPECT_EQ(peak["exact"], true) << peak.dump();
    EXPECT_EQ(peak["pid"], r["target"]["pid"]);
    EXPECT_EQ(peak["live_bytes"], r["totals"]["peak_live_bytes"]);
    EXPECT_EQ(r["totals"]["peak_live_bytes_exact"], true);
    EXPECT_GE(peak["live_bytes"].get<std::uint64_t>(), 64u * 65536);
    EXPECT_GE(peak["t_s"].get<double>(), 0.0);
    EXPECT_LE(peak["t_s"].get<double>(), r["duration_s"].get<double>());
    ASSERT_FALSE(peak["sites"].empty());
    EXPECT_EQ(peak["sites"][0]["id"], id_of["hold_peak"]) << peak.dump();
    EXPECT_EQ(peak["sites"][0]["live_count"], 64);
    EXPECT_EQ(peak["sites"][0]["live_bytes"], 64 * 65536);
    std::uint64_t at_peak = 0;
    for (const auto& s : peak["sites"])
        at_peak += s["live_bytes"].get<std::uint64_t>();
    EXPECT_EQ(at_peak, peak["live_bytes"]) << peak.dump(); // one thread: every byte placed
    for (const auto& t : r["threads"])
        EXPECT_LE(t["peak_live_bytes"], peak["live_bytes"]);
    EXPECT_NE(last_.err.find("live at the peak: "), std::string::npos) << last_.err;

    // `report` prints them again from the JSON.
    const std::string in = temp_json("answers-in");
    std::ofstream(in) << r.dump();
    Result rr = run({kBin, "report", in});
    std::remove(in.c_str());
    EXPECT_EQ(rr.status, 0) << rr.err;
    EXPECT_NE(rr.out.find("allocation sizes (" + std::to_string(count) + " allocations):"), std::string::npos) << rr.out;
    EXPECT_NE(rr.out.find("64.0 KiB - 128.0 KiB             64 allocs      4.0 MiB"), std::string::npos) << rr.out;
    EXPECT_NE(rr.out.find("32 B - 63 B                     151 allocs"), std::string::npos) << rr.out;
    EXPECT_NE(rr.out.find("live at the peak: " + std::string(peak["live_bytes"] == 64u * 65536 ? "4.0 MiB" : "")),
              std::string::npos) << rr.out;
    EXPECT_NE(rr.out.find("4.0 MiB        64 blocks  hold_peak"), std::string::npos) << rr.out;
}

// --min-age: blocks younger than S at the end are the working set, not
// leaks: counted apart in the JSON, left out of the lists and the gate.
TEST_F(E2E, MinAgeKeepsTheWorkingSetOutOfTheLeakList)
{
    auto traced = [&](const std::string& min_age) {
        std::string path = temp_json("min-age-" + min_age);
        Result res = run({kBin, "run", "--min-age", min_age, "--json", path, "--", target("leaker"), "1.5"});
        EXPECT_EQ(res.status, 0) << res.err;
        last_ = res;
        return load(path);
    };
    auto leaker_leak = [](const json& r) -> json {
        for (const auto& l : r["leaks"])
            if (l["function"] == "main" && l["live_count"].get<std::uint64_t>() >= 20)
                return l;
        return json();
    };
    json young = traced("0.6");
    EXPECT_EQ(young["stacks"]["leak_min_age_s"], 0.6);
    json l = leaker_leak(young);
    ASSERT_TRUE(l.is_object()) << young["leaks"].dump(1);
    // One block each 50 ms for 1.5 s: about 12 in the last 0.6 s; the rest older.
    const auto live = l["live_count"].get<std::uint64_t>(), fresh = l["young_count"].get<std::uint64_t>();
    EXPECT_GT(fresh, 3u) << l.dump();
    EXPECT_LT(fresh, live) << l.dump();
    EXPECT_EQ(l["young_bytes"], fresh << 20);
    EXPECT_EQ(l["live_bytes"], live << 20);
    EXPECT_NE(last_.err.find("leaks: 1 stacks with blocks outstanding at the end for 0.60 s or more (--min-age)"),
              std::string::npos) << last_.err;
    EXPECT_NE(last_.err.find(" " + std::to_string(live - fresh) + " blocks  oldest "), std::string::npos) << last_.err;
    EXPECT_NE(last_.err.find("+ " + std::to_string(fresh) + " blocks (" + std::to_string(fresh) +
                             ".0 MiB) younger than 0.60 s, not listed: the working set"),
              std::string::npos) << last_.err;

    // run's default: everything outstanding at the exit is listed.
    json all = traced("0");
    json whole = leaker_leak(all);
    ASSERT_TRUE(whole.is_object());
    EXPECT_EQ(whole["young_count"], 0);

    // All of it too young: nothing listed, and the gate sees no new leak.
    json none = traced("100");
    json held = leaker_leak(none);
    ASSERT_TRUE(held.is_object());
    EXPECT_EQ(held["young_count"], held["live_count"]);
    EXPECT_NE(last_.err.find("leaks: 0 stacks with blocks outstanding at the end for 100.00 s or more"),
              std::string::npos) << last_.err;
    memscope_test::TempDir dir;
    json base = none;
    base["leaks"] = json::array();
    std::ofstream(dir / "base.json") << base.dump();
    std::ofstream(dir / "young.json") << none.dump();
    std::ofstream(dir / "old.json") << all.dump();
    Result gate = run({kBin, "diff", dir / "base.json", dir / "young.json", "--fail-on-new-leaks"});
    EXPECT_EQ(gate.status, 0) << gate.out << gate.err;
    gate = run({kBin, "diff", dir / "base.json", dir / "old.json", "--fail-on-new-leaks"});
    EXPECT_EQ(gate.status, 1) << gate.out << gate.err; // the same blocks, old enough: a new leak
}
