// End-to-end tests of the tracker entry points: real targets that link
// probes/include/memscope/track.h or the Rust crate, traced for real.
#include "harness.hpp"

#include <fstream>
#include <set>

using namespace e2e;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

const json* summary_of(const json& r, const std::string& name)
{
    for (const auto& s : r["variable_summary"])
        if (s["name"] == name)
            return &s;
    return nullptr;
}

bool ends_with(const std::string& s, const std::string& tail)
{
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

void expect_nothing_dropped(const json& r)
{
    EXPECT_EQ(r["dropped"]["events"], 0) << r["dropped"].dump();
    EXPECT_EQ(r["dropped"]["untracked_allocations"], 0) << r["dropped"].dump();
    EXPECT_TRUE(r["dropped"]["reasons"].empty()) << r["dropped"].dump();
    EXPECT_EQ(r["tracker"]["unreadable_descriptors"], 0);
}

// The scenario of the issue: THREADS x ITERS iterations, each naming a
// vector (or Vec) of 25 ints and a padded heap string; each thread keeps its
// first vector alive until the end.
void check_threads_scenario(const json& r, int threads, int iters, const std::string& vec_type,
                            const std::string& str_type, std::uint64_t str_size, bool rust)
{
    const std::uint64_t total = 2ull * threads * iters;
    expect_nothing_dropped(r);
    const json& vars = r["variables"];
    ASSERT_EQ(vars.size(), total);

    std::map<std::uint64_t, std::uint64_t> per_tid, data_per_tid, text_per_tid;
    std::map<std::uint64_t, std::set<std::uint64_t>> tasks_of_tid;
    std::uint64_t live_data = 0;
    for (const auto& v : vars) {
        std::uint64_t tid = v["tid"];
        per_tid[tid]++;
        ASSERT_TRUE(v["heap"].get<bool>()) << v.dump();
        ASSERT_FALSE(v["addr"].is_null()) << v.dump();
        ASSERT_TRUE(ends_with(v["file"], rust ? "tracked_threads.rs" : "tracked_threads.cpp")) << v.dump();
        ASSERT_FALSE(v["task"].is_null()) << v.dump();
        tasks_of_tid[tid].insert(v["task"].get<std::uint64_t>());
        EXPECT_EQ(v["task_name"], "worker");
        EXPECT_EQ(v["scope"], "iteration");
        if (v["name"] == "data") {
            data_per_tid[tid]++;
            ASSERT_EQ(v["type"], vec_type);
            ASSERT_EQ(v["size"], 100) << v.dump();
            if (v["free_ns"].is_null())
                ++live_data;
            else
                ASSERT_GE(v["free_ns"].get<std::uint64_t>(), v["alloc_ns"].get<std::uint64_t>());
        } else {
            ASSERT_EQ(v["name"], "text") << v.dump();
            text_per_tid[tid]++;
            ASSERT_EQ(v["type"], str_type);
            ASSERT_EQ(v["size"], str_size) << v.dump();
            ASSERT_FALSE(v["free_ns"].is_null()) << v.dump();
        }
        if (rust) // Rust names its threads: the record is on the right one
            ASSERT_EQ(v["thread"], "worker-" + std::to_string(v["task"].get<std::uint64_t>() - 1)) << v.dump();
    }
    // Each worker thread: exactly its own 2 x ITERS records, all of one task.
    ASSERT_EQ(per_tid.size(), static_cast<size_t>(threads));
    std::set<std::uint64_t> tasks;
    for (const auto& [tid, n] : per_tid) {
        EXPECT_EQ(n, 2ull * iters) << "tid " << tid;
        EXPECT_EQ(data_per_tid[tid], static_cast<std::uint64_t>(iters));
        EXPECT_EQ(text_per_tid[tid], static_cast<std::uint64_t>(iters));
        ASSERT_EQ(tasks_of_tid[tid].size(), 1u) << "tid " << tid;
        tasks.insert(*tasks_of_tid[tid].begin());
    }
    EXPECT_EQ(tasks.size(), static_cast<size_t>(threads));
    EXPECT_EQ(live_data, static_cast<std::uint64_t>(threads)); // each kept its first

    for (const auto& t : r["threads"])
        if (per_tid.count(t["tid"].get<std::uint64_t>()))
            EXPECT_EQ(t["track_count"], 2 * iters);
    EXPECT_EQ(r["totals"]["track_count"], total);

    const json* data = summary_of(r, "data");
    const json* text = summary_of(r, "text");
    ASSERT_TRUE(data && text);
    const std::uint64_t n = static_cast<std::uint64_t>(threads) * iters;
    EXPECT_EQ((*data)["count"], n);
    EXPECT_EQ((*data)["bytes"], 100 * n);
    EXPECT_EQ((*data)["live_count"], threads);
    EXPECT_EQ((*data)["live_bytes"], 100 * threads);
    EXPECT_EQ((*text)["count"], n);
    EXPECT_EQ((*text)["bytes"], str_size * n);
    EXPECT_EQ((*text)["live_count"], 0);
}

} // namespace

TEST_F(E2E, TrackedVariablesCxx50ThreadsNoneLost)
{
    const int threads = 50, iters = 1000;
    json r = trace_run({target("tracked_threads"), std::to_string(threads), std::to_string(iters)});
    check_threads_scenario(r, threads, iters, "std::vector<int>", "std::string", 41, false);
    // Scope and task totals: exactly the vector and the string of each iteration.
    ASSERT_EQ(r["scopes"].size(), 1u);
    EXPECT_EQ(r["scopes"][0]["name"], "iteration");
    EXPECT_EQ(r["scopes"][0]["alloc_count"], 2 * threads * iters);
    EXPECT_EQ(r["scopes"][0]["alloc_bytes"], 141ull * threads * iters);
    ASSERT_EQ(r["tasks"].size(), static_cast<size_t>(threads));
    std::set<std::uint64_t> ids;
    for (const auto& t : r["tasks"]) {
        ids.insert(t["id"].get<std::uint64_t>());
        EXPECT_EQ(t["name"], "worker");
        EXPECT_EQ(t["alloc_count"], 2 * iters);
        EXPECT_EQ(t["alloc_bytes"], 141 * iters);
    }
    EXPECT_EQ(*ids.begin(), 1u);
    EXPECT_EQ(*ids.rbegin(), static_cast<std::uint64_t>(threads));
    // The text report names the top variables and those live at the end.
    EXPECT_NE(last_.err.find("tracked variables 100000 (2 names), live at end 50"), std::string::npos) << last_.err;
    EXPECT_NE(last_.err.find("live at end (50, largest first)"), std::string::npos);
}

TEST_F(E2E, TrackedVariablesCxx200Threads)
{
    const int threads = 200, iters = 500;
    json r = trace_run({target("tracked_threads"), std::to_string(threads), std::to_string(iters)});
    check_threads_scenario(r, threads, iters, "std::vector<int>", "std::string", 41, false);
    ASSERT_EQ(r["tasks"].size(), static_cast<size_t>(threads));
}

TEST_F(E2E, TrackedVariablesRust50ThreadsNoneLost)
{
    const int threads = 50, iters = 1000;
    json r = trace_run({RUST_EXAMPLE, std::to_string(threads), std::to_string(iters)});
    check_threads_scenario(r, threads, iters, "alloc::vec::Vec<i32>", "alloc::string::String", 40, true);
    ASSERT_EQ(r["tasks"].size(), static_cast<size_t>(threads));
}

TEST_F(E2E, TrackedVariablesRust200Threads)
{
    const int threads = 200, iters = 500;
    json r = trace_run({RUST_EXAMPLE, std::to_string(threads), std::to_string(iters)});
    check_threads_scenario(r, threads, iters, "alloc::vec::Vec<i32>", "alloc::string::String", 40, true);
}

TEST_F(E2E, StrippedBinaryKeepsItsEntryPoints)
{
    json r = trace_run({kTargets + "/target_tracked_threads_stripped", "4", "25"});
    check_threads_scenario(r, 4, 25, "std::vector<int>", "std::string", 41, false);
}

TEST_F(E2E, LibraryLoadedWithDlopenIsAttached)
{
    json r = trace_run({target("tracked_dlopen"), PLUGIN_PATH, "20"});
    ASSERT_EQ(last_.out, "ok\n") << last_.err;
    expect_nothing_dropped(r);
    ASSERT_EQ(r["variables"].size(), 20u);
    for (const auto& v : r["variables"]) {
        EXPECT_EQ(v["name"], "plugin_block");
        EXPECT_EQ(v["size"], 32);
        EXPECT_TRUE(v["heap"].get<bool>());
        EXPECT_FALSE(v["free_ns"].is_null());
        EXPECT_EQ(v["scope"], "plugin_scope");
        EXPECT_TRUE(ends_with(v["file"], "tracked_plugin.c"));
    }
    ASSERT_EQ(r["scopes"].size(), 1u);
    EXPECT_EQ(r["scopes"][0]["alloc_count"], 20);
    EXPECT_EQ(r["scopes"][0]["alloc_bytes"], 640);
    bool plugin_listed = false;
    for (const auto& m : r["tracker"]["modules"])
        plugin_listed |= ends_with(m, "libtracked_plugin.so");
    EXPECT_TRUE(plugin_listed) << r["tracker"].dump();
}

TEST_F(E2E, CApiAttachedWithPid)
{
    Child t({target("tracked_wait")});
    ASSERT_TRUE(t.wait_for("ready\n", false));
    std::string path = temp_json("c_api");
    // --mode normal: the target's request for fast mode is recorded, not obeyed
    // (obeyed, it would race with the calls below).
    Result tr = run({kBin, "-p", std::to_string(t.pid), "--mode", "normal", "--json", path});
    ASSERT_EQ(tr.status, 0) << tr.err;
    ASSERT_EQ(t.finish(), 0) << t.err_text;
    json r = load(path);
    expect_nothing_dropped(r);

    std::uint64_t blocks = 0, live_blocks = 0, block_bytes = 0;
    const json *counter = nullptr, *grown = nullptr, *evil = nullptr;
    for (const auto& v : r["variables"]) {
        if (v["name"] == "block") {
            ++blocks;
            block_bytes += v["size"].get<std::uint64_t>();
            live_blocks += v["free_ns"].is_null();
            EXPECT_EQ(v["scope"], "c_scope");
            EXPECT_EQ(v["task_name"], "c_task");
            EXPECT_EQ(v["task"], 1);
        } else if (v["name"] == "counter") {
            counter = &v;
        } else if (v["name"] == "grown") {
            grown = &v;
        } else {
            evil = &v;
        }
    }
    EXPECT_EQ(blocks, 10u);
    EXPECT_EQ(block_bytes, 685u); // 64 + 65 + ... + 73
    EXPECT_EQ(live_blocks, 5u);
    ASSERT_TRUE(counter && grown && evil) << r["variables"].dump();
    // A variable with no heap block: recorded with its own size, no block.
    EXPECT_FALSE((*counter)["heap"].get<bool>());
    EXPECT_TRUE((*counter)["addr"].is_null());
    EXPECT_EQ((*counter)["size"], sizeof(int));
    EXPECT_TRUE((*counter)["scope"].is_null());
    // Moved by realloc: the variable follows the block, and its free.
    EXPECT_EQ((*grown)["size"], 100000);
    EXPECT_FALSE((*grown)["free_ns"].is_null());
    // A hostile name: intact in JSON (invalid UTF-8 replaced), escaped on the terminal.
    EXPECT_EQ((*evil)["name"], "evil\"\n\x01\xEF\xBF\xBDname");
    EXPECT_EQ((*evil)["size"], 7);
    EXPECT_EQ(tr.err.find("evil\"\n"), std::string::npos);
    EXPECT_NE(tr.err.find("evil\"\\x0a\\x01\\xff"), std::string::npos) << tr.err;

    ASSERT_EQ(r["scopes"].size(), 1u);
    EXPECT_EQ(r["scopes"][0]["alloc_count"], 10);
    EXPECT_EQ(r["scopes"][0]["alloc_bytes"], 685);
    ASSERT_EQ(r["tasks"].size(), 1u);
    EXPECT_EQ(r["tasks"][0]["alloc_bytes"], 685);
    ASSERT_EQ(r["mode_requests"].size(), 1u);
    EXPECT_EQ(r["mode_requests"][0]["mode"], "fast");
    EXPECT_TRUE(r["mode_changes"].empty());
    EXPECT_EQ(r["totals"]["track_count"], 13);
}

namespace {

std::map<std::string, json> by_name(const json& r)
{
    std::map<std::string, json> out;
    for (const auto& v : r["variables"])
        out[v["name"]] = v;
    return out;
}

void expect_variable(const std::map<std::string, json>& vars, const std::string& name, const std::string& type,
                     bool heap, std::uint64_t size)
{
    auto it = vars.find(name);
    ASSERT_NE(it, vars.end()) << name << " missing";
    const json& v = it->second;
    EXPECT_EQ(v["type"], type) << v.dump();
    EXPECT_EQ(v["heap"].get<bool>(), heap) << v.dump();
    EXPECT_EQ(v["size"], size) << v.dump();
    EXPECT_EQ(v["addr"].is_null(), !heap) << v.dump();
}

} // namespace

TEST_F(E2E, CxxOwnersJoinTheirBlocks)
{
    json r = trace_run({target("tracked_kinds")});
    expect_nothing_dropped(r);
    auto vars = by_name(r);
    ASSERT_EQ(vars.size(), 8u);
    expect_variable(vars, "numbers", "std::vector<int>", true, 40);
    expect_variable(vars, "empty", "std::vector<int>", false, sizeof(std::vector<int>));
    expect_variable(vars, "small", "std::string", false, sizeof(std::string)); // in its own buffer
    expect_variable(vars, "large", "std::string", true, 101);
    expect_variable(vars, "boxed", "std::unique_ptr<int, std::default_delete<int> >", true, 4);
    // make_shared: one block, control block and object (libstdc++: 16 + 100, rounded).
    expect_variable(vars, "shared", "std::shared_ptr<std::array<char, 100> >", true, 120);
    expect_variable(vars, "buffer", "app::Buffer", true, 333); // named through ADL
    expect_variable(vars, "plain", "double", false, sizeof(double));
    EXPECT_FALSE(vars["buffer"]["free_ns"].is_null());

    // Its text report read back later counts the variables one by one, as the live one did.
    std::string in = temp_json("kinds-report");
    std::ofstream(in) << r.dump();
    Result text = run({kBin, "report", in});
    EXPECT_EQ(text.status, 0) << text.err;
    EXPECT_NE(text.out.find("tracked variables " + std::to_string(r["variables"].size()) + " ("), std::string::npos)
        << text.out;
    std::remove(in.c_str());
}

TEST_F(E2E, RustOwnersJoinTheirBlocks)
{
    json r = trace_run({RUST_KINDS});
    expect_nothing_dropped(r);
    auto vars = by_name(r);
    ASSERT_EQ(vars.size(), 5u);
    expect_variable(vars, "numbers", "alloc::vec::Vec<u32>", true, 40);
    expect_variable(vars, "text", "alloc::string::String", true, 36);
    expect_variable(vars, "boxed", "alloc::boxed::Box<[u64; 4]>", true, 32);
    // Rc and Arc: the block starts at the counts, before the value.
    expect_variable(vars, "counted", "alloc::rc::Rc<u32>", true, 24);
    expect_variable(vars, "shared", "alloc::sync::Arc<[u8; 100]>", true, 120);
}

TEST_F(E2E, TrackedVariablesInAProgramWhosePathHasABlank)
{
    // tracefs cannot take such a path: the tracker's probe in the program
    // gets a link of its own; nothing is lost.
    char dir[] = "/tmp/memscope e2e XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    const std::string copy = std::string(dir) + "/tracked threads";
    std::filesystem::copy_file(target("tracked_threads"), copy);
    std::filesystem::permissions(copy, std::filesystem::perms::owner_all);
    const int threads = 4, iters = 100;
    json r = trace_run({copy, std::to_string(threads), std::to_string(iters)});
    std::filesystem::remove_all(dir);
    check_threads_scenario(r, threads, iters, "std::vector<int>", "std::string", 41, false);
}
