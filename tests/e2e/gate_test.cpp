// The CI regression gate against real traces of gate_workload: its figures
// repeat run after run, `diff` and `run --baseline` catch its --more (3%
// more allocations and bytes), bad input is exit 2 with one line, and the
// markdown, junit and json outputs of a real pair look right.
#include "harness.hpp"

#include <algorithm>
#include <cstdio>
#include <set>

using namespace e2e;
using nlohmann::json;

namespace {

void write_all(const std::string& path, const std::string& text)
{
    std::ofstream(path, std::ios::trunc) << text;
}

std::vector<std::string> lines(const std::string& text)
{
    std::vector<std::string> out;
    std::stringstream ss(text);
    for (std::string line; std::getline(ss, line);)
        out.push_back(line);
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

void expect_one_line(const std::string& err)
{
    ASSERT_FALSE(err.empty());
    EXPECT_EQ(err.find('\n'), err.size() - 1) << err;
}

std::size_t count_of(const std::string& text, const std::string& needle)
{
    std::size_t n = 0;
    for (std::size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1))
        ++n;
    return n;
}

// Run gate_workload under the tracer; the report stays at `path`.
Result record(const std::string& path, bool more)
{
    std::vector<std::string> argv{kBin, "run", "--json", path, "--", target("gate_workload")};
    if (more)
        argv.push_back("--more");
    return run(argv);
}

// The workload's own totals: its section when the report has sections,
// else the run's totals (one process).
json workload_totals(const json& r)
{
    if (r.contains("processes") && r["processes"].is_array() && !r["processes"].empty()) {
        json sum = {{"alloc_count", 0}, {"alloc_bytes", 0}};
        for (const auto& p : r["processes"]) {
            std::string exe = p["exe"];
            if (exe.size() >= 20 && exe.compare(exe.size() - 20, 20, "target_gate_workload") == 0) {
                sum["alloc_count"] = sum["alloc_count"].get<std::uint64_t>() + p["totals"]["alloc_count"].get<std::uint64_t>();
                sum["alloc_bytes"] = sum["alloc_bytes"].get<std::uint64_t>() + p["totals"]["alloc_bytes"].get<std::uint64_t>();
            }
        }
        return sum;
    }
    return r["totals"];
}

// Threads of one name: how many, their calls and bytes summed, their peaks.
struct NameSum {
    std::uint64_t threads = 0, alloc_count = 0, alloc_bytes = 0;
    std::multiset<std::uint64_t> peaks;
    bool operator==(const NameSum&) const = default;
};

std::map<std::string, NameSum> by_name(const json& r)
{
    std::map<std::string, NameSum> out;
    for (const auto& t : r["threads"]) {
        NameSum& s = out[t["name"].get<std::string>()];
        ++s.threads;
        s.alloc_count += t["alloc_count"].get<std::uint64_t>();
        s.alloc_bytes += t["alloc_bytes"].get<std::uint64_t>();
        s.peaks.insert(t["peak_live_bytes"].get<std::uint64_t>());
    }
    return out;
}

std::string describe(const std::map<std::string, NameSum>& names)
{
    std::string s;
    for (const auto& [name, n] : names) {
        s += name + ": " + std::to_string(n.threads) + " threads, " + std::to_string(n.alloc_count) + " calls, " +
             std::to_string(n.alloc_bytes) + " bytes, peaks";
        for (auto p : n.peaks)
            s += " " + std::to_string(p);
        s += "\n";
    }
    return s;
}

// A base and a --more report of the workload, removed at the end.
class GatePair {
public:
    explicit GatePair(const std::string& name) : base(temp_json(name + "-base")), more(temp_json(name + "-more")) {}
    ~GatePair()
    {
        std::remove(base.c_str());
        std::remove(more.c_str());
    }
    bool record_both()
    {
        Result b = record(base, false), m = record(more, true);
        EXPECT_EQ(b.status, 0) << b.err;
        EXPECT_EQ(m.status, 0) << m.err;
        return b.status == 0 && m.status == 0;
    }
    std::string base, more;
};

} // namespace

TEST_F(E2E, GateWorkloadRepeatsItsFigures)
{
    std::string path = temp_json("gate-repeat");
    json first_totals;
    std::map<std::string, NameSum> first_names;
    for (int i = 0; i < 5; ++i) {
        Result r = record(path, false);
        ASSERT_EQ(r.status, 0) << r.err;
        json report = load(path);
        json totals = workload_totals(report);
        auto names = by_name(report);
        ASSERT_TRUE(names.count("gate-worker")) << describe(names);
        const NameSum& workers = names["gate-worker"];
        EXPECT_EQ(workers.threads, 4u);
        EXPECT_EQ(workers.alloc_count, 10000u);
        EXPECT_EQ(workers.alloc_bytes, 1240000u);
        EXPECT_EQ(workers.peaks, (std::multiset<std::uint64_t>{2800, 3000, 3200, 3400}));
        if (i == 0) {
            first_totals = totals;
            first_names = names;
            continue;
        }
        EXPECT_EQ(totals["alloc_count"], first_totals["alloc_count"]) << "run " << i;
        EXPECT_EQ(totals["alloc_bytes"], first_totals["alloc_bytes"]) << "run " << i;
        EXPECT_EQ(names, first_names) << "run " << i << ":\n" << describe(names) << "first run:\n" << describe(first_names);
    }
}

TEST_F(E2E, DiffCatchesThreePercentMoreAllocations)
{
    GatePair pair("gate-diff");
    ASSERT_TRUE(pair.record_both());
    Result r = run({kBin, "diff", pair.base, pair.more, "--max-increase", "alloc_count=2%"});
    EXPECT_EQ(r.status, 1) << r.out << r.err;
    auto breaches = lines_starting(r.out, "REGRESSION ");
    ASSERT_EQ(breaches.size(), 1u) << r.out;
    EXPECT_EQ(breaches[0].rfind("REGRESSION alloc_count:", 0), 0u) << breaches[0];
    EXPECT_NE(r.out.find("gate-worker x4"), std::string::npos) << r.out;

    r = run({kBin, "diff", pair.base, pair.more, "--max-increase", "alloc_count=5%"});
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    EXPECT_TRUE(lines_starting(r.out, "REGRESSION").empty()) << r.out;

    // Thresholds repeat; each breach its own line.
    r = run({kBin, "diff", pair.base, pair.more, "--max-increase", "alloc_count=2%", "--max-increase",
             "alloc_bytes=1KiB", "--max-increase", "free_count=10%"});
    EXPECT_EQ(r.status, 1) << r.out << r.err;
    breaches = lines_starting(r.out, "REGRESSION ");
    ASSERT_EQ(breaches.size(), 2u) << r.out;
    EXPECT_EQ(breaches[0].rfind("REGRESSION alloc_count:", 0), 0u) << breaches[0];
    EXPECT_EQ(breaches[1].rfind("REGRESSION alloc_bytes:", 0), 0u) << breaches[1];

    // The same report against itself: nothing grew.
    r = run({kBin, "diff", pair.base, pair.base, "--max-increase", "alloc_bytes=0", "--fail-on-new-leaks"});
    EXPECT_EQ(r.status, 0) << r.out << r.err;
}

TEST_F(E2E, RunWithBaselineGatesTheCommand)
{
    GatePair pair("gate-run");
    Result b = record(pair.base, false);
    ASSERT_EQ(b.status, 0) << b.err;

    Result r = run({kBin, "run", "--baseline", pair.base, "--max-increase", "alloc_bytes=0", "--json", pair.more,
                    "--", target("gate_workload"), "--more"});
    EXPECT_EQ(r.status, 1) << r.out << r.err;
    EXPECT_EQ(lines_starting(r.out, "REGRESSION alloc_bytes:").size(), 1u) << r.out;
    EXPECT_EQ(load(pair.more)["schema"], "memscope-trace/2") << "the new report is written all the same";

    r = run({kBin, "run", "--baseline", pair.base, "--max-increase", "alloc_bytes=0", "--json", pair.more,
             "--", target("gate_workload")});
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    EXPECT_TRUE(lines_starting(r.out, "REGRESSION").empty()) << r.out;
    EXPECT_EQ(lines_starting(r.out, "ok alloc_bytes:").size(), 1u) << r.out;

    // The command's own failure wins over the comparison.
    r = run({kBin, "run", "--baseline", pair.base, "--max-increase", "alloc_bytes=0", "--",
             target("gate_workload"), "--bogus"});
    EXPECT_EQ(r.status, 64) << r.out << r.err; // gate_workload's usage error
}

TEST_F(E2E, DiffRejectsBadInputWithOneLine)
{
    GatePair pair("gate-bad");
    Result rec = record(pair.base, false);
    ASSERT_EQ(rec.status, 0) << rec.err;
    std::string text = read_all(pair.base);

    std::string truncated = temp_json("gate-truncated");
    write_all(truncated, text.substr(0, text.size() / 2));
    Result r = run({kBin, "diff", pair.base, truncated, "--max-increase", "alloc_count=2%"});
    EXPECT_EQ(r.status, 2) << r.out << r.err;
    expect_one_line(r.err);
    EXPECT_NE(r.err.find("not valid JSON"), std::string::npos) << r.err;
    std::remove(truncated.c_str());

    std::string other = temp_json("gate-other");
    write_all(other, "{\"schema\": \"someone-else/3\", \"totals\": {}}\n");
    r = run({kBin, "diff", other, pair.base, "--max-increase", "alloc_count=2%"});
    EXPECT_EQ(r.status, 2) << r.out << r.err;
    expect_one_line(r.err);
    EXPECT_NE(r.err.find("someone-else/3"), std::string::npos) << r.err;
    std::remove(other.c_str());

    r = run({kBin, "diff", pair.base, pair.base, "--max-increase", "allocations=2%"});
    EXPECT_EQ(r.status, 2) << r.out << r.err;
    expect_one_line(r.err);
    EXPECT_NE(r.err.find("unknown metric 'allocations'"), std::string::npos) << r.err;

    r = run({kBin, "diff", pair.base, pair.base, "--max-increase", "alloc_count=lots"});
    EXPECT_EQ(r.status, 2) << r.out << r.err;
    expect_one_line(r.err);

    r = run({kBin, "diff", pair.base, temp_json("gate-missing")});
    EXPECT_EQ(r.status, 2) << r.out << r.err;
    expect_one_line(r.err);
}

TEST_F(E2E, DiffFormatsOnARealPair)
{
    GatePair pair("gate-formats");
    ASSERT_TRUE(pair.record_both());
    std::vector<std::string> gate{"--max-increase", "alloc_count=2%", "--max-increase", "peak_live_bytes=1000%"};
    auto diff = [&](const std::string& format) {
        std::vector<std::string> argv{kBin, "diff", pair.base, pair.more, "--format", format};
        argv.insert(argv.end(), gate.begin(), gate.end());
        return run(argv);
    };

    Result r = diff("json");
    ASSERT_EQ(r.status, 1) << r.out << r.err;
    json j = json::parse(r.out, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << r.out;
    EXPECT_EQ(j["schema"], "memscope-trace-diff/1");
    EXPECT_EQ(j["result"], "regression");
    ASSERT_EQ(j["checks"].size(), 2u);
    EXPECT_EQ(j["checks"][0]["metric"], "alloc_count");
    EXPECT_EQ(j["checks"][0]["breached"], true);
    EXPECT_EQ(j["checks"][1]["breached"], false);
    json base_report = json::parse(read_all(pair.base)), more_report = json::parse(read_all(pair.more));
    bool exact = base_report["totals"]["peak_live_bytes_exact"] == true && more_report["totals"]["peak_live_bytes_exact"] == true;
    EXPECT_EQ(j["checks"][1]["exact"], exact);
    EXPECT_EQ(j["notes"].empty(), exact) << j["notes"].dump();
    bool workers = false;
    for (const auto& c : j["changes"])
        if (c["kind"] == "thread" && c["name"] == "gate-worker" && c["metric"] == "alloc_count") {
            workers = true;
            EXPECT_EQ(c["base"], 10000);
            EXPECT_EQ(c["new"], 10300);
            EXPECT_EQ(c["new_members"], 4);
        }
    EXPECT_TRUE(workers) << r.out;

    r = diff("junit");
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_EQ(r.out.rfind("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites ", 0), 0u) << r.out;
    EXPECT_NE(r.out.find("<testsuite name=\"memscope-trace diff\" tests=\"2\" failures=\"1\""), std::string::npos) << r.out;
    EXPECT_EQ(count_of(r.out, "<failure "), 1u) << r.out;
    EXPECT_EQ(count_of(r.out, "<testcase "), 2u) << r.out;
    EXPECT_EQ(count_of(r.out, "<testsuite "), count_of(r.out, "</testsuite>"));
    EXPECT_NE(r.out.find("</testsuites>\n"), std::string::npos);

    r = diff("markdown");
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_EQ(r.out.rfind("### ", 0), 0u) << r.out;
    EXPECT_NE(r.out.find("| check | base | new | allowed | result |"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("| alloc\\_count=2% |"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("| thread | gate-worker x4 | alloc\\_count | 10000 | 10300 |"), std::string::npos) << r.out;
}

TEST_F(E2E, AnAllocatorThatIsNotProbedIsSaidAndTheGateRefusesTheReport)
{
    // prefixed_alloc defines ex_mallocx and ex_sdallocx (a jemalloc API under
    // a prefix, as Rust's jemallocator has): its calls cannot be counted.
    GatePair pair("gate-unprobed");
    Result b = record(pair.base, false);
    ASSERT_EQ(b.status, 0) << b.err;
    const std::string prog = target("prefixed_alloc");
    Result r = run({kBin, "run", "--baseline", pair.base, "--json", pair.more, "--", prog});
    EXPECT_EQ(r.status, 2) << r.out << r.err;
    EXPECT_NE(r.err.find("allocators not probed: " + prog), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("names allocators that were not probed"), std::string::npos) << r.err;
    Result d = run({kBin, "diff", pair.base, pair.more});
    EXPECT_EQ(d.status, 2) << d.out << d.err;
    expect_one_line(d.err);
    json rep = load(pair.more);
    ASSERT_EQ(rep["unprobed_allocators"].size(), 1u) << rep["unprobed_allocators"].dump();
    EXPECT_EQ(rep["unprobed_allocators"][0]["file"], prog);
    EXPECT_EQ(rep["unprobed_allocators"][0]["symbols"], json::array({"ex_mallocx", "ex_sdallocx"}));
    // What was probed is still counted exactly: libc's 10 pairs.
    EXPECT_EQ(rep["totals"]["alloc_count"], 10);
    EXPECT_EQ(rep["totals"]["free_count"], 10);
    // A report of the same workload with nothing unprobed passes as before.
    EXPECT_EQ(run({kBin, "diff", pair.base, pair.base}).status, 0);
}
