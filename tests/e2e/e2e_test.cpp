// End-to-end tests: the real memscope-trace binary, real BPF, real uprobes,
// against the small programs in tests/targets. Figures are checked exactly.
#include "harness.hpp"

using namespace e2e;
using nlohmann::json;
using namespace std::chrono_literals;

TEST_F(E2E, NamedThreadsExactPerThreadFigures)
{
    const int nthreads = 6, base = 3000;
    json r = trace_run({target("threads_c"), std::to_string(nthreads), std::to_string(base)});
    ASSERT_EQ(r["schema"], "memscope-trace/2");
    EXPECT_EQ(r["mode"], "normal");
    EXPECT_EQ(r["target"]["exit_code"], 0);
    // Cross-thread frees: live belongs to the allocating thread (the producer's).
    expect_threads_c(r, nthreads, base, "threads_c");

    // An unprintable thread name survives JSON escaping intact.
    const json* odd = thread_named(r, "bad\t\"name\\\x01");
    ASSERT_NE(odd, nullptr);
    expect_counters(*odd, 1, 77, 0, 0, 1, 77, 77);
    EXPECT_NE(last_.err.find("bad\\x09\"name\\\\\\x01"), std::string::npos) << last_.err;

    // Totals are the sum of the threads; nothing dropped.
    for (const char* k : {"alloc_count", "alloc_bytes", "free_count", "free_bytes", "live_count", "live_bytes"}) {
        std::uint64_t sum = 0;
        for (const auto& t : r["threads"])
            sum += t[k].get<std::uint64_t>();
        EXPECT_EQ(r["totals"][k], sum) << k;
    }
    EXPECT_EQ(r["dropped"]["events"], 0);
    EXPECT_EQ(r["dropped"]["untracked_allocations"], 0);
    // Several threads held memory, and the process's peak is still exact:
    // one live sum every thread changes, not the largest sample.
    EXPECT_TRUE(r["totals"]["peak_live_bytes_exact"]);
    ASSERT_TRUE(r.contains("peak")) << r.dump();
    EXPECT_EQ(r["peak"]["live_bytes"], r["totals"]["peak_live_bytes"]);
    EXPECT_TRUE(r["peak"]["exact"]);
    for (const auto& t : r["threads"])
        EXPECT_LE(t["peak_live_bytes"], r["peak"]["live_bytes"]) << t.dump();
}

TEST_F(E2E, ReallocCallocAlignedFamilySemantics)
{
    json r = trace_run({target("realloc_family")});
    const json* t = thread_named(r, "family");
    ASSERT_NE(t, nullptr) << r.dump(1);
    // Successful allocations, as requested: malloc 100, realloc 200, realloc 50,
    // realloc(NULL) 64, calloc 300, posix_memalign 1000, aligned_alloc 256,
    // memalign 96, valloc 500, pvalloc 700, reallocarray 100 then 200, malloc 10.
    std::vector<std::uint64_t> sizes{100, 200, 50, 64, 300, 1000, 256, 96, 500, 700, 100, 200, 10};
    std::uint64_t bytes = std::accumulate(sizes.begin(), sizes.end(), std::uint64_t{0});
    // Every block is freed (realloc frees the old one; realloc(p, 0) frees);
    // one block is live at a time, so the peak is the largest.
    expect_counters(*t, sizes.size(), bytes, sizes.size(), bytes, 0, 0, 1000);
    EXPECT_EQ((*t)["failed_alloc_count"], 3); // malloc, calloc overflow, realloc
    EXPECT_EQ((*t)["unmatched_free_count"], 0);
    EXPECT_EQ(r["dropped"]["events"], 0) << r["dropped"].dump();
}

TEST_F(E2E, CxxContainers)
{
    json r = trace_run({target("cxx_containers")});
    const json* t = thread_named(r, "cxx");
    ASSERT_NE(t, nullptr);
    // vector<uint64_t>(1000), string(100), make_unique<array<char,64>>,
    // push_back growth 4..128 by doubling, reserve(10) strings, 10 strings of 30.
    std::vector<std::uint64_t> sizes{8000, 101, 64, 4, 8, 16, 32, 64, 128, 10 * sizeof(std::string)};
    for (int i = 0; i < 10; ++i)
        sizes.push_back(31);
    std::uint64_t bytes = std::accumulate(sizes.begin(), sizes.end(), std::uint64_t{0});
    // Growth frees each old buffer after the new one exists: 4+8+16+32+64 freed early.
    std::uint64_t peak = bytes - (4 + 8 + 16 + 32 + 64);
    expect_counters(*t, sizes.size(), bytes, sizes.size(), bytes, 0, 0, peak);
}

// The tracer's options go before the command wherever the user puts them:
// `run --duration 1 -- cmd` traces one second; one that does not go with
// run is said so.
TEST_F(E2E, TracerOptionsAfterRunAreTaken)
{
    const std::string path = temp_json("options_after_run");
    Result r = run({kBin, "run", "--duration", "1", "--json", path, "--", "/bin/sleep", "3"});
    EXPECT_EQ(r.status, 0) << r.err;
    json report = load(path); // traced for a second, while the command goes on
    EXPECT_NEAR(report["duration_s"].get<double>(), 1.0, 0.3);
    // The report says how it was made and where it went.
    EXPECT_EQ(report["invocation"]["argv"],
              json({kBin, "run", "--duration", "1", "--json", path, "--", "/bin/sleep", "3"}));
    EXPECT_EQ(report["invocation"]["outputs"], json({{"json", path}}));
    EXPECT_NE(r.err.find("  written: json " + path + "\n"), std::string::npos) << r.err;
    Result pid = run({kBin, "run", "--pid", "5", "--", "/bin/true"});
    EXPECT_EQ(pid.status, 2);
    EXPECT_EQ(pid.err, "memscope-trace: -p and run are exclusive\n");
}

TEST_F(E2E, RunPassesExitStatusAndStdio)
{
    EXPECT_EQ(run({kBin, "run", "--", target("exit_status"), "7"}).status, 7);
    EXPECT_EQ(run({kBin, "run", "--", target("exit_status"), "0"}).status, 0);
    Result killed = run({kBin, "run", "--", target("exit_status"), "kill"});
    EXPECT_EQ(killed.status, 128 + SIGKILL);

    const std::string input = "line one\nbinary \x01\x02\xff end\n";
    Result plain = run({target("exit_status"), "echo"}, input);
    Result traced = run({kBin, "run", "--", target("exit_status"), "echo"}, input);
    EXPECT_EQ(traced.status, 0);
    EXPECT_EQ(traced.out, plain.out); // byte-identical
    EXPECT_EQ(plain.out, input);
    EXPECT_NE(traced.err.find("to stderr\n"), std::string::npos);
}

TEST_F(E2E, ShortLivedCommandKeepsFiguresAndNames)
{
    json r = trace_run({target("short_lived")});
    const json* t = thread_named(r, "blink");
    ASSERT_NE(t, nullptr) << r.dump(1);
    expect_counters(*t, 3, 60, 1, 20, 2, 40, 60);
    EXPECT_EQ(r["target"]["comm"], "target_short_li"); // comm is 15 bytes at most
    EXPECT_EQ(r["target"]["exit_code"], 0);
}

TEST_F(E2E, FullAllocationTableIsCountedNotHidden)
{
    std::string path = temp_json("full");
    Result res = run({kBin, "run", "--max-allocations", "1024", "--json", path, "--", target("threads_c"), "1", "2000"});
    ASSERT_EQ(res.status, 0) << res.err;
    json r = load(path);
    const json* w = thread_named(r, "worker-0");
    ASSERT_NE(w, nullptr);
    EXPECT_EQ((*w)["alloc_count"], 2000); // counted even when the record is dropped
    EXPECT_GT(r["dropped"]["untracked_allocations"].get<std::uint64_t>(), 0u);
    EXPECT_EQ((*w)["free_count"].get<std::uint64_t>() + (*w)["unmatched_free_count"].get<std::uint64_t>(), 1999u);
    EXPECT_NE(res.err.find("DROPPED"), std::string::npos) << res.err;
    // Blocks that were not recorded are in no live or peak figure: those
    // figures say they are not exact, and the report says by how much.
    EXPECT_FALSE(r["totals"]["live_bytes_exact"].get<bool>()) << r["totals"].dump();
    EXPECT_FALSE(r["totals"]["peak_live_bytes_exact"].get<bool>()) << r["totals"].dump();
    const std::string shortfall = std::to_string(r["dropped"]["untracked_allocations"].get<std::uint64_t>()) +
                                  " allocations were counted but not recorded";
    bool said = false;
    for (const auto& warning : r["warnings"])
        said |= warning.get<std::string>().find(shortfall) != std::string::npos;
    EXPECT_TRUE(said) << r["warnings"].dump(1);
    EXPECT_NE(res.err.find("not exact"), std::string::npos) << res.err;
}

TEST_F(E2E, StaticBinaryIsItsOwnAllocator)
{
    json r = trace_run({target("short_lived_static")});
    const json* t = thread_named(r, "blink");
    ASSERT_NE(t, nullptr) << r.dump(1);
    expect_counters(*t, 3, 60, 1, 20, 2, 40, 60);
    EXPECT_EQ(r["dropped"]["events"], 0);
    EXPECT_EQ(r["unprobed_allocators"], json::array());
}

TEST_F(E2E, StrippedStaticBinaryIsSaidNotCountedAsZero)
{
    // The same program stripped: glibc's malloc is in it, and no symbol
    // says where; found by its messages. As the command, nothing could be
    // traced: an error that says why. Started by the command, it is listed
    // as unprobed, and the gate refuses the report.
    const std::string prog = target("short_lived_static_stripped");
    Result alone = run({kBin, "run", "--json", temp_json("static-stripped-alone"), "--", prog});
    EXPECT_EQ(alone.status, 1) << alone.err;
    EXPECT_NE(alone.err.find(prog + ": glibc's malloc built in"), std::string::npos) << alone.err;

    const std::string path = temp_json("static-stripped");
    Result res = run({kBin, "run", "--json", path, "--", "/bin/sh", "-c", prog + "; true"});
    ASSERT_EQ(res.status, 0) << res.err;
    EXPECT_NE(res.err.find("allocators not probed: " + prog), std::string::npos) << res.err;
    Result d = run({kBin, "diff", path, path});
    EXPECT_EQ(d.status, 2) << d.out << d.err;
    json r = load(path);
    ASSERT_EQ(r["unprobed_allocators"].size(), 1u) << r["unprobed_allocators"].dump();
    EXPECT_EQ(r["unprobed_allocators"][0]["file"], prog);
    EXPECT_NE(r["unprobed_allocators"][0]["reason"].get<std::string>().find("glibc's malloc built in"),
              std::string::npos)
        << r["unprobed_allocators"];
}

TEST_F(E2E, ForkIsReported)
{
    std::string path = temp_json("forker");
    Result res = run({kBin, "run", "--no-follow", "--json", path, "--", target("forker")});
    ASSERT_EQ(res.status, 0) << res.err;
    json r = load(path);
    EXPECT_EQ(r["children"]["forks"], 1);
    EXPECT_EQ(r["children"]["pids"].size(), 1u);
    EXPECT_EQ(r["children"]["traced"], false);
    EXPECT_NE(res.err.find("seen, not traced"), std::string::npos) << res.err;
}

TEST_F(E2E, AttachToRunningProcess)
{
    Child app({target("attach_target")});
    ASSERT_TRUE(app.wait_for("ready", false));
    std::string path = temp_json("attach");
    Child tracer({kBin, "-p", std::to_string(app.pid), "--json", path});
    ASSERT_TRUE(tracer.wait_for("attached to pid", true)) << tracer.err_text;
    app.write_stdin("go\n");
    EXPECT_EQ(app.finish(), 0);
    EXPECT_EQ(tracer.finish(), 0) << tracer.err_text;
    json r = load(path);
    EXPECT_EQ(r["target"]["pid"], app.pid == -1 ? r["target"]["pid"] : json(app.pid));
    EXPECT_EQ(r["target"]["exit_code"], 0);
    const json* t = thread_named(r, "attached"); // a thread born after attach
    ASSERT_NE(t, nullptr) << r.dump(1);
    expect_counters(*t, 1000, 32000, 1000, 32000, 0, 0, 32);
    // The 50 blocks allocated before attach are unknown when freed.
    EXPECT_EQ((*t)["unmatched_free_count"], 50);
}

TEST_F(E2E, KillNineLeavesTargetUnharmed)
{
    for (const std::string method : {"uprobe_multi", "shared_sites"}) {
        SCOPED_TRACE(method);
        Child app({target("attach_target")});
        ASSERT_TRUE(app.wait_for("ready ", false));
        // The target prints where malloc lives; a uprobe shows there as int3 (0xcc).
        unsigned long long malloc_addr = std::stoull(app.out_text.substr(app.out_text.find(' ') + 1), nullptr, 16);
        auto first_byte = [&] {
            unsigned char b = 0;
            int fd = open(("/proc/" + std::to_string(app.pid) + "/mem").c_str(), O_RDONLY);
            EXPECT_GE(fd, 0) << strerror(errno) << " pid " << app.pid;
            EXPECT_EQ(pread(fd, &b, 1, static_cast<off_t>(malloc_addr)), 1);
            close(fd);
            return b;
        };
        unsigned char original = first_byte();
        ASSERT_NE(original, 0xcc);

        Child tracer({kBin, "-p", std::to_string(app.pid), "--attach", method});
        ASSERT_TRUE(tracer.wait_for("attached to pid", true)) << tracer.err_text;
        EXPECT_EQ(first_byte(), 0xcc); // the probe is really there
        app.write_stdin("spin\n");
        std::this_thread::sleep_for(500ms); // mid-run, probes firing
        const std::string group = "memscope_" + std::to_string(tracer.pid) + "_"; // finish() forgets the pid
        kill(tracer.pid, SIGKILL);
        EXPECT_EQ(tracer.finish(), 128 + SIGKILL);
        EXPECT_EQ(first_byte(), original); // nothing of ours left in the target
        EXPECT_EQ(app.finish(), 0);
        EXPECT_EQ(app.out_text.substr(app.out_text.find('\n') + 1), "ok\n");
        if (method != "shared_sites")
            continue; // a uprobe_multi link leaves no name behind

        // The killed tracer's shared sites stay as names in tracefs (nothing
        // fires: no process holds them) until the next tracer removes them.
        auto uprobe_events = [] {
            std::ifstream in(uprobe_events_file());
            std::stringstream ss;
            ss << in.rdbuf();
            return ss.str();
        };
        EXPECT_NE(uprobe_events().find(group), std::string::npos) << uprobe_events();
        Result next = run({kBin, "run", "--attach", "shared_sites", "--", "/bin/true"});
        EXPECT_EQ(next.status, 0) << next.err;
        EXPECT_EQ(uprobe_events().find(group), std::string::npos) << uprobe_events();
    }
}

TEST_F(E2E, StaleProbeGroupsAreRemovedAndLiveOnesKept)
{
    // Groups are named memscope_<pid>_<start time>_<n>. One whose pid is
    // alive but started at another time was left by a killed tracer whose pid
    // was reused since: stale. One whose process is this very one is live.
    auto stat_field_22 = [](int pid) {
        std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
        std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::istringstream rest(stat.substr(stat.rfind(')') + 2));
        std::string field;
        for (int n = 3; n <= 22; ++n)
            rest >> field;
        return field;
    };
    const std::string self = std::to_string(getpid());
    const std::string reused = "memscope_" + self + "_1_0";
    const std::string live = "memscope_" + self + "_" + stat_field_22(getpid()) + "_0";
    const std::string gone = "memscope_999999999_5_0";
    const std::string file = uprobe_events_file();
    auto command = [&](const std::string& line) {
        // One write with O_APPEND (an ofstream in append mode seeks, which tracefs refuses).
        int fd = open(file.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
        bool ok = fd >= 0 && write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
        if (fd >= 0)
            close(fd);
        return ok;
    };
    auto add = [&](const std::string& group) { return command("p:" + group + "/p0 /bin/true:0x0\n"); };
    auto has = [&](const std::string& group) {
        std::ifstream in(file);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str().find(":" + group + "/") != std::string::npos;
    };
    ASSERT_TRUE(add(reused) && add(live) && add(gone));
    ASSERT_TRUE(has(reused) && has(live) && has(gone));
    // The shared sites' tracer cleans them up (uprobe_multi makes none).
    Result r = run({kBin, "run", "--attach", "shared_sites", "--", "/bin/true"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_FALSE(has(reused));
    EXPECT_FALSE(has(gone));
    EXPECT_TRUE(has(live));
    EXPECT_TRUE(command("-:" + live + "/p0\n"));
    EXPECT_FALSE(has(live));
}

TEST_F(E2E, BadPidIsOneLineAndNonZero)
{
    Result r = run({kBin, "-p", "999999999"});
    EXPECT_NE(r.status, 0);
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find("no such process"), std::string::npos) << r.err;
    // Not a number: said in the user's words, the input escaped.
    for (const std::string bad : {"abc", "-3", "12\x1b[2J"}) {
        r = run({kBin, "-p", bad});
        EXPECT_EQ(r.status, 2) << bad;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
        EXPECT_NE(r.err.find("not a process id: "), std::string::npos) << r.err;
        EXPECT_EQ(r.err.find('\x1b'), std::string::npos) << r.err;
    }
}

TEST_F(E2E, MissingCommandIsOneLine127)
{
    Result r = run({kBin, "run", "--", "/nonexistent/command"});
    EXPECT_EQ(r.status, 127);
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST_F(E2E, UnwritableJsonFailsBeforeTracing)
{
    Result r = run({kBin, "run", "--json", "/nonexistent-dir/r.json", "--", target("exit_status"), "0"});
    EXPECT_EQ(r.status, 2);
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find("cannot write /nonexistent-dir/r.json"), std::string::npos) << r.err;
    r = run({kBin, "run", "--html", "/nonexistent-dir/r.html", "--", target("exit_status"), "0"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("cannot write /nonexistent-dir/r.html"), std::string::npos) << r.err;
}

TEST_F(E2E, NoAllocationIsSaidLoudly)
{
    json r = trace_run({target("exit_status"), "0"});
    if (r["totals"]["alloc_count"] == 0) {
        ASSERT_FALSE(r["warnings"].empty());
        EXPECT_NE(r["warnings"][0].get<std::string>().find("no allocator call"), std::string::npos);
        EXPECT_NE(last_.err.find("WARNING: no allocator call"), std::string::npos);
    } else {
        ADD_FAILURE() << "exit_status 0 was expected to allocate nothing: " << r["totals"].dump();
    }
}

TEST_F(E2E, LivePrintsATableAndIntervalSamplesTheTimeline)
{
    std::string path = temp_json("interval");
    Result r = run({kBin, "run", "--live", "0.2", "--interval", "0.05", "--json", path, "--", target("attach_target")},
                   "spin\n");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("allocs/s"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("spinner"), std::string::npos) << r.err;
    json j = load(path);
    const json* t = thread_named(j, "spinner");
    ASSERT_NE(t, nullptr);
    EXPECT_EQ((*t)["alloc_count"], (*t)["free_count"]);
    EXPECT_EQ((*t)["alloc_count"].get<std::uint64_t>() % 1000, 0u);
    // Live bytes over time, every 50 ms: one value per sample for the process and each thread.
    const json& tl = j["timeline"];
    EXPECT_DOUBLE_EQ(tl["interval_s"].get<double>(), 0.05);
    ASSERT_GE(tl["t_s"].size(), 3u) << tl.dump();
    EXPECT_EQ(tl["process_live_bytes"].size(), tl["t_s"].size());
    bool spinner = false;
    for (const auto& th : tl["threads"]) {
        EXPECT_EQ(th["live_bytes"].size(), tl["t_s"].size());
        spinner |= th["name"] == "spinner";
    }
    EXPECT_TRUE(spinner) << tl.dump();
}

// --version names the version, the commit built and what this kernel offers.
TEST_F(E2E, VersionNamesTheCommitAndTheKernelsFeatures)
{
    Result r = run({kBin, "--version"});
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.out.rfind("memscope-trace 0.1.0 (commit ", 0), 0u) << r.out;
    EXPECT_EQ(r.out.find("(commit unknown)"), std::string::npos) << "built from a git checkout: " << r.out;
    EXPECT_NE(r.out.find("\nkernel "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("BTF and uprobes present; uprobe_multi sessions ("), std::string::npos) << r.out;
}

// --live lists the threads alive: those that exited are in the final report only.
TEST_F(E2E, LiveTableDropsThreadsThatExited)
{
    auto occurrences_of = [](const std::string& text, const std::string& needle) {
        std::size_t n = 0;
        for (std::size_t at = 0; (at = text.find(needle, at)) != std::string::npos; at += needle.size())
            ++n;
        return n;
    };
    const std::string path = temp_json("live_exited");
    Child tracer({kBin, "run", "--live", "0.2", "--json", path, "--", target("threads_then_wait")});
    ASSERT_TRUE(tracer.wait_for("ready\n", false));
    // Three frames at least after the threads are gone.
    const std::size_t before = tracer.err_text.size();
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline &&
           occurrences_of(tracer.err_text.substr(before), "memscope-trace: pid") < 3)
        tracer.pump(100);
    const std::string late = tracer.err_text.substr(tracer.err_text.rfind("memscope-trace: pid"));
    EXPECT_EQ(late.find("gone-"), std::string::npos) << late;
    EXPECT_NE(late.find("(3 threads exited: in the final report)"), std::string::npos) << late;
    tracer.close_stdin();
    EXPECT_EQ(tracer.finish(), 0) << tracer.err_text;
    json r = load(path);
    for (int i = 0; i < 3; ++i)
        EXPECT_NE(thread_named(r, "gone-" + std::to_string(i)), nullptr) << r["threads"].dump();
}
