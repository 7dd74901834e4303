// End-to-end tests of stacks without frame pointers: Debian's own binaries,
// built without them, unwound by each file's .eh_frame rules.
#include "harness.hpp"
#include "../temp_dir.hpp"

#include <algorithm>
#include <set>

using namespace e2e;
using nlohmann::json;

namespace {

// Allocations (by count) whose stack reached main or a thread's start.
double whole_share(const json& r)
{
    std::uint64_t all = 0, whole = 0;
    for (const auto& s : r["sites"]) {
        all += s["alloc_count"].get<std::uint64_t>();
        if (!s["truncated"].get<bool>())
            whole += s["alloc_count"].get<std::uint64_t>();
    }
    return all ? static_cast<double>(whole) / static_cast<double>(all) : 0;
}

} // namespace

TEST_F(E2E, DebianPython3StacksReachMain)
{
    // Debian's python3 is built with -O2 and no frame pointers; its eval
    // loop makes deep stacks.
    const std::string script = "d = {}\n"
                               "for i in range(20000):\n"
                               "    d[str(i) * 3] = [i, str(i)]\n"
                               "s = ''.join(str(k) for k in list(d)[:5000])\n"
                               "print(len(d), len(s))\n";
    json r = trace_run({"/usr/bin/python3", "-c", script});
    EXPECT_EQ(last_.out, "20000 56670\n");
    ASSERT_GT(r["totals"]["alloc_count"].get<std::uint64_t>(), 500u);
    EXPECT_GE(whole_share(r), 0.95) << r["stacks"].dump(1);
    // Per-site counts still sum to the totals.
    std::uint64_t count = 0;
    for (const auto& s : r["sites"])
        count += s["alloc_count"].get<std::uint64_t>();
    EXPECT_EQ(count, r["totals"]["alloc_count"]);
    EXPECT_EQ(r["dropped"]["events"], 0) << r["dropped"].dump();
    // The tables were built for the interpreter and its libraries.
    EXPECT_GE(r["stacks"]["unwind"]["files"].get<std::uint64_t>(), 3u) << r["stacks"]["unwind"].dump();
    EXPECT_GT(r["stacks"]["unwind"]["rows"].get<std::uint64_t>(), 10000u);
    // A stack that ends early says why.
    for (const auto& s : r["sites"])
        if (s["truncated"].get<bool>())
            EXPECT_TRUE(s["end"].is_string()) << s.dump();
    for (const auto& [why, n] : r["stacks"]["truncated_by"].items())
        EXPECT_GT(n.get<std::uint64_t>(), 0u) << why;
}

TEST_F(E2E, StacksGoOnThroughASignalFrameToMain)
{
    // malloc in a signal handler, raised three calls below main, on the
    // thread's stack and on an alternate signal stack: the walk crosses the
    // kernel's signal frame (__restore_rt, the registers it saved) and the
    // stack reaches main, whole.
    json r = trace_run({target("signal_alloc")});
    std::uint64_t count = 0;
    for (const auto& s : r["sites"]) {
        if (s["function"] != "keep_in_handler")
            continue;
        count += s["alloc_count"].get<std::uint64_t>();
        EXPECT_FALSE(s["truncated"].get<bool>()) << s.dump(1);
        std::vector<std::string> names;
        for (const auto& f : s["stack"])
            names.push_back(f["symbol"].is_string() ? f["symbol"].get<std::string>() : "?");
        ASSERT_GE(names.size(), 6u) << s.dump(1);
        EXPECT_EQ(names[0], "keep_in_handler");
        EXPECT_EQ(names[1], "on_signal");
        EXPECT_EQ(names[2], "<signal handler called>");
        // raise's own frames in libc, then the caller and main.
        EXPECT_EQ(names[names.size() - 2], "raise_deep");
        EXPECT_EQ(names.back(), "main");
    }
    EXPECT_EQ(count, 5u) << r["sites"].dump(1);
    EXPECT_EQ(r["stacks"]["truncated_share"].get<double>(), 0.0) << r["stacks"].dump(1);
}

TEST_F(E2E, ACopyOfAFileSharesItsUnwindRowsByBuildId)
{
    // The same program twice, the second a copy (another inode, the same
    // build-id): one table serves both, and both stacks come out whole.
    memscope_test::TempDir dir;
    const std::string copy = dir / "leaks_copy";
    ASSERT_EQ(std::system(("cp '" + target("leaks_nofp") + "' '" + copy + "'").c_str()), 0);
    json r = trace_run({"/bin/sh", "-c", target("leaks_nofp") + " && " + copy});
    EXPECT_GE(r["stacks"]["unwind"]["shared_files"].get<std::uint64_t>(), 1u) << r["stacks"]["unwind"].dump();
    std::set<std::uint64_t> pids;
    for (const auto& s : r["sites"]) {
        if (s["function"] != "leak_deep()")
            continue;
        pids.insert(s["pid"].get<std::uint64_t>());
        EXPECT_FALSE(s["truncated"].get<bool>()) << s.dump(1);
        std::vector<std::string> names;
        for (const auto& f : s["stack"])
            names.push_back(f["symbol"].is_string() ? f["symbol"].get<std::string>() : "?");
        EXPECT_EQ(names, (std::vector<std::string>{"leak_deep()", "d()", "c()", "b()", "a()", "main"}));
    }
    EXPECT_EQ(pids.size(), 2u) << r["sites"].dump(1);
}

TEST_F(E2E, AStackCutByTheDepthLimitSaysSo)
{
    // 20 levels of calls, 8 frames kept.
    std::string path = temp_json("depth_limit");
    Result res = run({kBin, "run", "--stack-depth", "8", "--json", path, "--", kTargets + "/alloc_pairs", "1", "100",
                      "64", "20"});
    ASSERT_EQ(res.status, 0) << res.err;
    json r = load(path);
    const json* top = nullptr;
    for (const auto& s : r["sites"])
        if (!top || s["alloc_count"] > (*top)["alloc_count"])
            top = &s;
    ASSERT_NE(top, nullptr);
    EXPECT_EQ((*top)["stack"].size(), 8u);
    EXPECT_TRUE((*top)["truncated"].get<bool>());
    EXPECT_EQ((*top)["end"], "depth limit (--stack-depth 8)");
    EXPECT_EQ(r["stacks"]["truncated_by"]["depth limit (--stack-depth 8)"], (*top)["alloc_count"]);
}

TEST_F(E2E, DemoRowsNameItsOwnLinesThroughInlinedStandardLibraryCode)
{
    // The demo as it is built (no frame-pointer flag): the standard
    // library's inlined code (vector, make_unique, std::string) shows as
    // frames of their own, and rows are named by the demo's lines.
    std::string path = temp_json("demo_rows");
    Result res = run({kBin, "run", "--json", path, "--", kTargets + "/demo_workload", "2", "2000"});
    ASSERT_EQ(res.status, 0) << res.err;
    json r = load(path);
    std::vector<const json*> sites;
    for (const auto& s : r["sites"])
        sites.push_back(&s);
    std::sort(sites.begin(), sites.end(),
              [](const json* a, const json* b) { return (*a)["alloc_bytes"] > (*b)["alloc_bytes"]; });
    ASSERT_GE(sites.size(), 3u);
    std::set<std::uint32_t> lines;
    for (std::size_t i = 0; i < 3; ++i) {
        const json& s = *sites[i];
        EXPECT_EQ(s["function"], "(anonymous namespace)::worker(int, int)") << s.dump(1);
        bool inlined_std = false, named = false;
        for (const auto& f : s["stack"]) {
            const std::string file = f.value("file", "");
            inlined_std |= f.value("inlined", false) && file.find("/c++/") != std::string::npos;
            if (f["symbol"] == "(anonymous namespace)::worker(int, int)" && file.ends_with("demo_workload.cpp")) {
                named = true;
                lines.insert(f["line"].get<std::uint32_t>());
            }
        }
        EXPECT_TRUE(inlined_std) << s.dump(1);
        EXPECT_TRUE(named) << s.dump(1);
        EXPECT_FALSE(s["truncated"].get<bool>()) << s.dump(1);
    }
    EXPECT_EQ(lines, (std::set<std::uint32_t>{26, 27, 28})); // vector, string, make_unique
}

TEST_F(E2E, AllocFnNamesSitesAfterTheWrappersCaller)
{
    std::string path = temp_json("alloc_fn");
    Result res = run({kBin, "run", "--alloc-fn", "leak_deep", "--json", path, "--", target("leaks")});
    ASSERT_EQ(res.status, 0) << res.err;
    json r = load(path);
    bool found = false;
    for (const auto& s : r["sites"])
        if (s["stack"].size() > 1 && s["stack"][0]["symbol"] == "leak_deep()") {
            found = true;
            EXPECT_EQ(s["function"], "d()") << s.dump(1);
        }
    EXPECT_TRUE(found) << r["sites"].dump(1);
    EXPECT_EQ(r["stacks"]["alloc_functions"], json::array({"leak_deep"}));
}

TEST_F(E2E, AFullStackTableStillAddsUpOnALabelledSite)
{
    // 10,000 distinct stacks into tables of 16: the rest still count, on
    // a "(stack table full)" row, and the sites add up to the totals.
    std::string path = temp_json("max_stacks");
    Result res = run({kBin, "run", "--max-stacks", "16", "--json", path, "--", target("stacks10k"), "10000"});
    ASSERT_EQ(res.status, 0) << res.err;
    json r = load(path);
    EXPECT_EQ(r["totals"]["alloc_count"], 10000);
    std::uint64_t count = 0, bytes = 0, full = 0;
    for (const auto& s : r["sites"]) {
        count += s["alloc_count"].get<std::uint64_t>();
        bytes += s["alloc_bytes"].get<std::uint64_t>();
        if (s["function"] == "(stack table full)")
            full = s["alloc_count"].get<std::uint64_t>();
    }
    EXPECT_EQ(count, r["totals"]["alloc_count"]);
    EXPECT_EQ(bytes, r["totals"]["alloc_bytes"]);
    EXPECT_GT(full, 9000u) << r["sites"].dump().substr(0, 2000);
    EXPECT_LE(r["sites"].size(), 17u);
    EXPECT_GT(r["dropped"]["reasons"]["site_table_full"].get<std::uint64_t>(), 0u);
    Result bad = run({kBin, "run", "--max-stacks", "0", "--", "/bin/true"});
    EXPECT_EQ(bad.status, 2);
}

TEST_F(E2E, DebianGxxCompileFollowedIntoCc1plusIsWholeAndDropsNothing)
{
    // A 2,300-line translation unit (std containers and strings, then plain
    // functions) compiled by Debian's g++: cc1plus, built without frame
    // pointers, followed from the driver.
    memscope_test::TempDir dir;
    {
        std::ofstream src(dir / "unit.cpp");
        src << "#include <vector>\n#include <string>\n#include <map>\n\n";
        for (int i = 0; i < 40; ++i)
            src << "struct Item" << i << " { std::string name; std::vector<int> values; std::map<int, std::string> tags; };\n"
                << "int use" << i << "(int n) {\n    Item" << i << " it{\"item" << i << "\", {}, {}};\n"
                << "    for (int k = 0; k < n; ++k) { it.values.push_back(k * " << i
                << "); it.tags[k] = std::to_string(k); }\n"
                << "    return (int)it.values.size() + (int)it.tags.size() + (int)it.name.size();\n}\n";
        for (int i = 0; i < 330; ++i)
            src << "static int plain" << i << "(int a, int b) {\n    int s = a * " << i
                << " + b;\n    if (s & 1) s += 3;\n    return s ^ " << i << ";\n}\n\n";
        src << "int main() { int s = 0;\n";
        for (int i = 0; i < 40; ++i)
            src << "  s += use" << i << "(3);\n";
        for (int i = 0; i < 330; i += 7)
            src << "  s += plain" << i << "(s, " << i << ");\n";
        src << "  return s & 1; }\n";
    }
    std::string path = temp_json("gxx");
    Result res = run({kBin, "run", "--json", path, "--", "/usr/bin/g++", "-O1", "-c", dir / "unit.cpp", "-o", dir / "unit.o"});
    ASSERT_EQ(res.status, 0) << res.err.substr(0, 3000);
    {
        // Each distinct frame is written once: stacks name them by index.
        json raw = json::parse(read_all(path));
        std::size_t refs = 0;
        for (const auto& s : raw["sites"])
            refs += s["stack"].size();
        EXPECT_GT(refs, 20 * raw["frames"].size()) << raw["frames"].size() << " frames";
    }
    json r = load(path);
    const json* cc1plus = nullptr;
    for (const auto& p : r["processes"])
        if (p["comm"] == "cc1plus")
            cc1plus = &p;
    ASSERT_NE(cc1plus, nullptr) << r["processes"].dump(1);
    EXPECT_EQ((*cc1plus)["exit_code"], 0);
    EXPECT_GT((*cc1plus)["totals"]["alloc_count"].get<std::uint64_t>(), 100000u);
    EXPECT_EQ(r["dropped"]["events"], 0) << r["dropped"].dump();
    EXPECT_GE(whole_share(r), 0.95) << r["stacks"]["truncated_by"].dump();
    std::uint64_t count = 0;
    for (const auto& s : r["sites"])
        count += s["alloc_count"].get<std::uint64_t>();
    EXPECT_EQ(count, r["totals"]["alloc_count"]);
    EXPECT_EQ(access((dir / "unit.o").c_str(), F_OK), 0) << "the compile made its object";
}
