// End-to-end tests of modes: switched live through the control socket, by
// the target's environment and requests, and by auto under a budget.
#include "harness.hpp"

#include <cstdio>
#include <fstream>
#include <set>

#include <unistd.h>

using namespace e2e;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

const int kPairs = 3000; // tests/targets/phases.c, per worker per phase

std::uint64_t phase_bytes(int phase, int worker)
{
    std::uint64_t bytes = 0;
    for (int i = 0; i < kPairs; ++i)
        bytes += 16 + static_cast<std::uint64_t>((phase * 7 + worker + i) % 64);
    return bytes;
}

json ctl(int tracer_pid, const std::string& request)
{
    std::vector<std::string> argv{kBin, "ctl", "--pid", std::to_string(tracer_pid)};
    std::istringstream words(request);
    for (std::string w; words >> w;)
        argv.push_back(w);
    Result r = run(argv);
    EXPECT_EQ(r.status, 0) << request << ": " << r.out << r.err;
    json j = json::parse(r.out, nullptr, false);
    EXPECT_TRUE(j.is_object()) << r.out;
    return j;
}

// Bytes of process `pid`'s executable file mappings that differ from the
// files: a uprobe is a breakpoint (or a call, where the kernel rewrote a
// NOP) written into the process's copy of the page. 0: no probe in it.
std::size_t probed_bytes(int pid)
{
    std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
    std::ifstream mem("/proc/" + std::to_string(pid) + "/mem", std::ios::binary);
    std::size_t differ = 0;
    for (std::string line; std::getline(maps, line);) {
        unsigned long long start = 0, end = 0, offset = 0;
        char perms[8] = {};
        int path_at = 0;
        if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx %*s %*s %n", &start, &end, perms, &offset, &path_at) < 4 ||
            perms[2] != 'x' || path_at <= 0 || line[static_cast<std::size_t>(path_at)] != '/')
            continue;
        std::ifstream file(line.substr(static_cast<std::size_t>(path_at)), std::ios::binary);
        std::string in_process(end - start, '\0'), in_file(end - start, '\0');
        mem.clear();
        mem.seekg(static_cast<std::streamoff>(start));
        mem.read(in_process.data(), static_cast<std::streamsize>(in_process.size()));
        file.seekg(static_cast<std::streamoff>(offset));
        file.read(in_file.data(), static_cast<std::streamsize>(in_file.size()));
        const auto n = static_cast<std::size_t>(std::min(mem.gcount(), file.gcount()));
        for (std::size_t i = 0; i < n; ++i)
            differ += in_process[i] != in_file[i];
    }
    return differ;
}

// The traced program among the tracer's children (the others are its helpers).
int child_running(int tracer_pid, const std::string& exe)
{
    std::ifstream children("/proc/" + std::to_string(tracer_pid) + "/task/" + std::to_string(tracer_pid) + "/children");
    for (int pid; children >> pid;) {
        char buf[4096];
        ssize_t n = readlink(("/proc/" + std::to_string(pid) + "/exe").c_str(), buf, sizeof buf);
        if (n > 0 && std::string(buf, static_cast<std::size_t>(n)) == exe)
            return pid;
    }
    return 0;
}

std::string untraced_output(const std::string& input)
{
    Result r = run({target("phases"), "3"}, input);
    EXPECT_EQ(r.status, 0);
    return r.out;
}

} // namespace

TEST_F(E2E, LiveSwitchNormalFastAsyncOffNormal)
{
    const int workers = 3;
    std::string path = temp_json("live_switch");
    Child tracer({kBin, "run", "--json", path, "--", target("phases"), std::to_string(workers)});
    ASSERT_TRUE(tracer.wait_for("ready\n", false));
    json status = ctl(tracer.pid, "status");
    EXPECT_EQ(status["mode"], "normal");
    EXPECT_EQ(status["probes_attached"], true);
    EXPECT_TRUE(status.contains("event_rate"));
    EXPECT_TRUE(status["estimated_overhead_pct"].is_number()) << status.dump();

    auto phase = [&](int k) {
        tracer.write_stdin("phase " + std::to_string(k) + "\n");
        ASSERT_TRUE(tracer.wait_for("done " + std::to_string(k) + " ", false)) << tracer.err_text;
    };
    phase(1);
    EXPECT_EQ(ctl(tracer.pid, "mode fast")["mode"], "fast");
    phase(2);
    EXPECT_EQ(ctl(tracer.pid, "mode async")["mode"], "async");
    phase(3);
    const int target_pid = child_running(tracer.pid, target("phases"));
    ASSERT_GT(target_pid, 0);
    EXPECT_GT(probed_bytes(target_pid), 0u);
    EXPECT_EQ(ctl(tracer.pid, "mode off")["mode"], "off");
    EXPECT_EQ(probed_bytes(target_pid), 0u) << "a probe of ours is still in the target while off";
    EXPECT_EQ(ctl(tracer.pid, "status")["probes_attached"], false);
    phase(4);
    EXPECT_EQ(ctl(tracer.pid, "mode normal")["mode"], "normal");
    EXPECT_GT(probed_bytes(target_pid), 0u);
    phase(5);
    tracer.write_stdin("exit\n");
    ASSERT_EQ(tracer.finish(), 0) << tracer.err_text;

    // The target saw nothing: the same output as untraced.
    EXPECT_EQ(tracer.out_text, untraced_output("phase 1\nphase 2\nphase 3\nphase 4\nphase 5\nexit\n"));

    json r = load(path);
    ASSERT_EQ(r["mode_changes"].size(), 4u) << r["mode_changes"].dump();
    const char* to[] = {"fast", "async", "off", "normal"};
    for (int i = 0; i < 4; ++i) {
        EXPECT_EQ(r["mode_changes"][i]["to"], to[i]);
        EXPECT_EQ(r["mode_changes"][i]["reason"], "ctl");
    }
    EXPECT_EQ(r["mode"], "normal");
    EXPECT_FALSE(r["totals"]["live_bytes_exact"].get<bool>());
    EXPECT_FALSE(r["totals"]["free_bytes_exact"].get<bool>());

    // Counted exactly in normal, fast and async; nothing while off; no
    // block crossed a switch, so nothing is left over or unknown.
    for (int w = 0; w < workers; ++w) {
        const json* t = thread_named(r, "phase-w" + std::to_string(w));
        ASSERT_NE(t, nullptr);
        std::uint64_t counted = phase_bytes(1, w) + phase_bytes(2, w) + phase_bytes(3, w) + phase_bytes(5, w);
        std::uint64_t sized = phase_bytes(1, w) + phase_bytes(2, w) + phase_bytes(5, w);
        EXPECT_EQ((*t)["alloc_count"], 4 * kPairs) << t->dump();
        EXPECT_EQ((*t)["alloc_bytes"], counted);
        EXPECT_EQ((*t)["free_count"], 4 * kPairs);
        EXPECT_EQ((*t)["free_bytes"], sized); // async frees have no size
        EXPECT_EQ((*t)["live_count"], 0);
        EXPECT_EQ((*t)["unmatched_free_count"], 0);
        EXPECT_EQ((*t)["untracked_free_count"], 0);
    }
    // No record left behind in the tracer's table but the live blocks.
    EXPECT_EQ(r["allocation_records"], r["totals"]["live_count"]);
    EXPECT_EQ(r["dropped"]["events"], 0) << r["dropped"].dump();
}

TEST_F(E2E, AutoStepsDownUnderLoadAndBackUp)
{
    std::string path = temp_json("auto");
    Child tracer({kBin, "run", "--mode", "auto", "--overhead-budget", "0.5", "--json", path, "--",
                  target("phases"), "2"});
    ASSERT_TRUE(tracer.wait_for("ready\n", false));
    // The target runs from the moment tracing starts (costs are measured
    // before): its first line is the tracer's time zero, near enough.
    auto t0 = std::chrono::steady_clock::now();
    // Idle first: auto stays in normal.
    std::this_thread::sleep_for(1500ms);
    double load_at = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    tracer.write_stdin("load 3\n");
    ASSERT_TRUE(tracer.wait_for("done load\n", false));
    double idle_at = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::this_thread::sleep_for(3000ms);
    tracer.write_stdin("exit\n");
    ASSERT_EQ(tracer.finish(), 0) << tracer.err_text;

    json r = load(path);
    EXPECT_EQ(r["mode_source"], "--mode auto");
    const json& changes = r["mode_changes"];
    ASSERT_GE(changes.size(), 4u) << changes.dump() << tracer.err_text;
    // Down to async within 2 s of the load, never off, back to normal once idle.
    double async_at = -1, normal_again_at = -1;
    for (const auto& c : changes) {
        EXPECT_NE(c["to"], "off");
        EXPECT_EQ(c["reason"].get<std::string>().rfind("auto: ", 0), 0u) << c.dump();
        if (c["to"] == "async" && async_at < 0)
            async_at = c["t_s"];
        if (c["to"] == "normal" && async_at >= 0)
            normal_again_at = c["t_s"];
    }
    ASSERT_GE(async_at, 0) << changes.dump();
    EXPECT_LT(async_at - load_at, 2.0) << changes.dump() << " load at " << load_at;
    ASSERT_GE(normal_again_at, 0) << changes.dump();
    EXPECT_GT(normal_again_at, idle_at - 0.6);
    EXPECT_EQ(r["mode"], "normal");
}

TEST_F(E2E, EnvironmentModesForRunAndPid)
{
    // run: the command's environment is ours.
    {
        std::string path = temp_json("env_run");
        setenv("MEMSCOPE_TEST_MODE", "1", 1);
        Result r = run({kBin, "run", "--json", path, "--", target("phases"), "1"}, "phase 1\nexit\n");
        unsetenv("MEMSCOPE_TEST_MODE");
        ASSERT_EQ(r.status, 0) << r.err;
        json j = load(path);
        EXPECT_EQ(j["mode"], "fast");
        EXPECT_EQ(j["mode_source"], "environment MEMSCOPE_TEST_MODE=1");
        EXPECT_TRUE(j["mode_changes"].empty());
        EXPECT_TRUE(j["totals"]["live_bytes_exact"].get<bool>());
    }
    // -p: the environment the target was started with.
    {
        setenv("MEMSCOPE_DISABLE_GLOBAL", "1", 1);
        Child t({target("phases"), "1"});
        unsetenv("MEMSCOPE_DISABLE_GLOBAL");
        ASSERT_TRUE(t.wait_for("ready\n", false));
        std::string path = temp_json("env_pid");
        Child tracer({kBin, "-p", std::to_string(t.pid), "--json", path});
        ASSERT_TRUE(tracer.wait_for("mode async", true)) << tracer.err_text;
        t.write_stdin("phase 1\nexit\n");
        ASSERT_EQ(t.finish(), 0);
        ASSERT_EQ(tracer.finish(), 0) << tracer.err_text;
        json j = load(path);
        EXPECT_EQ(j["mode"], "async");
        EXPECT_EQ(j["mode_source"], "environment MEMSCOPE_DISABLE_GLOBAL=1");
        const json* w = thread_named(j, "phase-w0");
        ASSERT_NE(w, nullptr);
        EXPECT_EQ((*w)["alloc_count"], kPairs);
        EXPECT_EQ((*w)["alloc_bytes"], phase_bytes(1, 0));
        EXPECT_EQ((*w)["free_count"], kPairs);
        EXPECT_EQ((*w)["free_bytes"], 0);
        EXPECT_EQ(j["allocation_records"], 0); // async keeps no records
    }
    // An explicit --mode wins over the environment.
    {
        std::string path = temp_json("env_explicit");
        setenv("MEMSCOPE_ASYNC_MODE", "1", 1);
        Result r = run({kBin, "run", "--mode", "normal", "--json", path, "--", target("phases"), "1"}, "exit\n");
        unsetenv("MEMSCOPE_ASYNC_MODE");
        ASSERT_EQ(r.status, 0) << r.err;
        json j = load(path);
        EXPECT_EQ(j["mode"], "normal");
        EXPECT_EQ(j["mode_source"], "--mode");
    }
}

TEST_F(E2E, TargetRequestIsHonouredUnlessModeIsExplicit)
{
    for (bool explicit_mode : {false, true}) {
        std::string path = temp_json(explicit_mode ? "request_explicit" : "request");
        std::vector<std::string> argv{kBin, "run", "--json", path};
        if (explicit_mode) {
            argv.push_back("--mode");
            argv.push_back("normal");
        }
        for (const char* a : {"--", "", "2"})
            argv.push_back(a);
        argv[argv.size() - 2] = target("phases");
        Child tracer(argv);
        ASSERT_TRUE(tracer.wait_for("ready\n", false));
        tracer.write_stdin("request 1\n"); // MEMSCOPE_MODE_FAST
        ASSERT_TRUE(tracer.wait_for("requested\n", false));
        std::this_thread::sleep_for(500ms);
        tracer.write_stdin("phase 1\nexit\n");
        ASSERT_EQ(tracer.finish(), 0) << tracer.err_text;
        json j = load(path);
        ASSERT_EQ(j["mode_requests"].size(), 1u);
        EXPECT_EQ(j["mode_requests"][0]["mode"], "fast");
        if (explicit_mode) {
            EXPECT_EQ(j["mode"], "normal");
            EXPECT_TRUE(j["mode_changes"].empty());
        } else {
            EXPECT_EQ(j["mode"], "fast");
            ASSERT_EQ(j["mode_changes"].size(), 1u);
            EXPECT_EQ(j["mode_changes"][0]["reason"].get<std::string>().rfind("target request", 0), 0u);
        }
    }
}

TEST_F(E2E, CtlRejectsBadInputInOneLine)
{
    Result r = run({kBin, "ctl", "--pid", "999999", "status"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("no memscope-trace listening"), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1);
    r = run({kBin, "ctl", "--pid", "1", "mode", "turbo"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("normal, fast, async, off"), std::string::npos) << r.err;
    r = run({kBin, "run", "--mode", "turbo", "--", "/bin/true"});
    EXPECT_EQ(r.status, 2);
}

TEST_F(E2E, BlocksAllocatedInAsyncFreedLaterHaveTheirOwnCounter)
{
    std::string path = temp_json("async_blocks");
    Child tracer({kBin, "run", "--json", path, "--", target("phases"), "1"});
    ASSERT_TRUE(tracer.wait_for("ready\n", false));
    tracer.write_stdin("keep 10\n");
    ASSERT_TRUE(tracer.wait_for("kept 10\n", false));
    tracer.write_stdin("release\n");
    ASSERT_TRUE(tracer.wait_for("released\n", false));
    ctl(tracer.pid, "mode async");
    tracer.write_stdin("keep 50\n");
    ASSERT_TRUE(tracer.wait_for("kept 50\n", false));
    ctl(tracer.pid, "mode normal");
    tracer.write_stdin("release\nexit\n");
    ASSERT_EQ(tracer.finish(), 0) << tracer.err_text;
    json r = load(path);
    const json* main_thread = nullptr;
    for (const auto& t : r["threads"])
        if (t["tid"] == r["target"]["pid"])
            main_thread = &t;
    ASSERT_NE(main_thread, nullptr);
    // The 50 blocks allocated in async and freed in normal are not unmatched.
    EXPECT_EQ((*main_thread)["untracked_free_count"], 50) << main_thread->dump();
    EXPECT_EQ((*main_thread)["unmatched_free_count"], 0);
    EXPECT_FALSE(r["totals"]["live_bytes_exact"].get<bool>());
    bool warned = false;
    for (const auto& w : r["warnings"])
        warned |= w.get<std::string>().find("live bytes are not exact") != std::string::npos;
    EXPECT_TRUE(warned) << r["warnings"].dump();
}

TEST_F(E2E, Sigusr1WritesASnapshotAndTracingGoesOn)
{
    std::string path = temp_json("sigusr1");
    Child tracer({kBin, "run", "--json", path, "--", target("phases"), "2"});
    ASSERT_TRUE(tracer.wait_for("ready\n", false));
    tracer.write_stdin("phase 1\n");
    ASSERT_TRUE(tracer.wait_for("done 1 ", false));
    kill(tracer.pid, SIGUSR1);
    ASSERT_TRUE(tracer.wait_for("memscope-trace: pid", true)) << tracer.err_text;
    // The snapshot is a whole report, on disk while the target still runs.
    json snap;
    for (int i = 0; i < 100 && snap.is_null(); ++i) {
        std::ifstream in(path);
        if (in.good())
            snap = json::parse(in, nullptr, false);
        if (snap.is_discarded())
            snap = nullptr;
        std::this_thread::sleep_for(20ms);
    }
    ASSERT_TRUE(snap.is_object());
    EXPECT_TRUE(snap["target"]["exit_code"].is_null()); // still running
    const json* w0 = thread_named(snap, "phase-w0");
    ASSERT_NE(w0, nullptr);
    EXPECT_EQ((*w0)["alloc_count"], kPairs);
    tracer.write_stdin("phase 2\nexit\n");
    ASSERT_EQ(tracer.finish(), 0) << tracer.err_text;
    json r = load(path);
    EXPECT_EQ(r["target"]["exit_code"], 0);
    w0 = thread_named(r, "phase-w0");
    ASSERT_NE(w0, nullptr);
    EXPECT_EQ((*w0)["alloc_count"], 2 * kPairs);
}

// ctl right after the tracer starts waits for its socket, not "no
// memscope-trace listening".
TEST_F(E2E, CtlWaitsForATracerStillStarting)
{
    Child tracer({kBin, "run", "--", target("phases"), "1"});
    // Once it is the tracer (exec'd), not yet listening: BPF is still loading.
    for (int i = 0; i < 1000 && read_all("/proc/" + std::to_string(tracer.pid) + "/comm") != "memscope-trace\n"; ++i)
        std::this_thread::sleep_for(1ms);
    EXPECT_NE(access(("/run/memscope-trace/" + std::to_string(tracer.pid) + ".sock").c_str(), F_OK), 0);
    json status = ctl(tracer.pid, "status");
    EXPECT_EQ(status["mode"], "normal") << status.dump();
    ASSERT_TRUE(tracer.wait_for("ready\n", false));
    tracer.write_stdin("exit\n");
    EXPECT_EQ(tracer.finish(), 0) << tracer.err_text;
    // Not a tracer: said at once.
    Result r = run({kBin, "ctl", "--pid", "1", "status"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("no memscope-trace listening"), std::string::npos) << r.err;
}
