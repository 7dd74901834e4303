// End-to-end tests of a tracer that runs as root on other people's
// machines: its outputs go where they point and clobber nothing; files a
// target names (perf maps, debug links) never hang it; idle control
// clients never stall tracing.
#include "harness.hpp"
#include "../temp_dir.hpp"

#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>

#include <elf.h>

#include <cstddef>
#include <fstream>
#include <set>

using namespace e2e;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr uid_t kNobody = 65534;

using memscope_test::TempDir;

bool has_warning(const json& r, const std::string& part)
{
    for (const auto& w : r["warnings"])
        if (w.get<std::string>().find(part) != std::string::npos)
            return true;
    return false;
}

// A client of a unix socket at `path` (-1 when it could not connect).
int connect_unix(const std::string& path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

// `jit_alloc` started under the tracer: its pid once it says it.
int jit_pid(Child& tracer)
{
    if (!tracer.wait_for("pid ", false) || !tracer.wait_for("\n", false))
        return 0;
    return std::atoi(tracer.out_text.substr(tracer.out_text.find("pid ") + 4).c_str());
}

} // namespace

TEST_F(E2E, OutputsIntoDevicesFifosLinksAndStdoutClobberNothing)
{
    struct stat null_before{};
    ASSERT_EQ(stat("/dev/null", &null_before), 0);
    Result r = run({kBin, "run", "--json", "/dev/null", "--html", "/dev/null", "--collapsed", "/dev/null", "--",
                    target("short_lived")});
    EXPECT_EQ(r.status, 0) << r.err;
    struct stat null_after{};
    ASSERT_EQ(stat("/dev/null", &null_after), 0);
    EXPECT_TRUE(S_ISCHR(null_after.st_mode)) << "/dev/null was replaced";
    EXPECT_EQ(null_after.st_rdev, null_before.st_rdev);
    EXPECT_EQ(null_after.st_ino, null_before.st_ino);

    // `-` and /dev/stdout: the JSON on the tracer's stdout (the target prints nothing).
    for (const std::string out : {"-", "/dev/stdout"}) {
        r = run({kBin, "run", "--json", out, "--", target("short_lived")});
        EXPECT_EQ(r.status, 0) << r.err;
        json j = json::parse(r.out, nullptr, false);
        ASSERT_TRUE(j.is_object()) << out << ": " << r.out.substr(0, 200);
        EXPECT_EQ(j["schema"], "memscope-trace/2");
        EXPECT_EQ(access("-", F_OK), -1) << "a file named '-' was written";
    }
    struct stat st{};
    ASSERT_EQ(lstat("/dev/stdout", &st), 0);
    EXPECT_TRUE(S_ISLNK(st.st_mode)) << "/dev/stdout is no longer a link";

    // A FIFO: written into, read by whoever listens.
    TempDir dir;
    const std::string fifo = dir / "report.fifo";
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    std::string got;
    std::thread reader([&] {
        std::ifstream in(fifo);
        got.assign(std::istreambuf_iterator<char>(in), {});
    });
    r = run({kBin, "run", "--json", fifo, "--", target("short_lived")});
    reader.join();
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(json::parse(got, nullptr, false).is_object()) << got.substr(0, 200);
    ASSERT_EQ(lstat(fifo.c_str(), &st), 0);
    EXPECT_TRUE(S_ISFIFO(st.st_mode));

    // A link to a regular file: the file is replaced, the link stays.
    ASSERT_EQ(symlink("real.json", (dir / "link.json").c_str()), 0);
    { std::ofstream(dir / "real.json") << "old"; }
    r = run({kBin, "run", "--json", dir / "link.json", "--", target("short_lived")});
    EXPECT_EQ(r.status, 0) << r.err;
    ASSERT_EQ(lstat((dir / "link.json").c_str(), &st), 0);
    EXPECT_TRUE(S_ISLNK(st.st_mode));
    EXPECT_TRUE(load(dir / "real.json").is_object());

    // A directory: one line, non-zero, nothing written.
    r = run({kBin, "run", "--json", dir.path, "--", target("short_lived")});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("is a directory"), std::string::npos) << r.err;
    ASSERT_EQ(lstat(dir.path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
}

TEST_F(E2E, JitFramesAreNamedByTheProcesssOwnPerfMap)
{
    std::string path = temp_json("jit_map");
    Child tracer({kBin, "run", "--json", path, "--", target("jit_alloc"), "25", "write-map"});
    const int pid = jit_pid(tracer);
    ASSERT_GT(pid, 0) << tracer.err_text;
    tracer.write_stdin("go\n");
    ASSERT_EQ(tracer.finish(), 0) << tracer.err_text;
    unlink(("/tmp/perf-" + std::to_string(pid) + ".map").c_str());
    json r = load(path);
    bool named = false;
    for (const auto& s : r["sites"])
        for (const auto& f : s["stack"])
            if (f["symbol"] == "jit_alloc_fn" && s["alloc_count"] == 25)
                named = true;
    EXPECT_TRUE(named) << r["sites"].dump().substr(0, 2000);
    EXPECT_FALSE(has_warning(r, "perf-")) << r["warnings"].dump();
}

TEST_F(E2E, PerfMapPlantedAsFifoOrDevZeroLinkIsSkippedInBoundedTime)
{
    for (const bool fifo : {true, false}) {
        std::string path = temp_json(fifo ? "perf_fifo" : "perf_zero");
        const auto t0 = std::chrono::steady_clock::now();
        Child tracer({kBin, "run", "--json", path, "--", target("jit_alloc"), "25"});
        const int pid = jit_pid(tracer);
        ASSERT_GT(pid, 0) << tracer.err_text;
        // Planted by an unprivileged user, where the tracer (root) looks.
        const std::string map = "/tmp/perf-" + std::to_string(pid) + ".map";
        unlink(map.c_str());
        if (fifo)
            ASSERT_EQ(mkfifo(map.c_str(), 0666), 0);
        else
            ASSERT_EQ(symlink("/dev/zero", map.c_str()), 0);
        ASSERT_EQ(lchown(map.c_str(), kNobody, kNobody), 0);
        tracer.write_stdin("go\n");
        const int status = tracer.finish(60s);
        unlink(map.c_str());
        ASSERT_EQ(status, 0) << tracer.err_text;
        EXPECT_LT(std::chrono::steady_clock::now() - t0, 30s);
        json r = load(path);
        // Counted all the same, and what was skipped is said.
        EXPECT_EQ(r["totals"]["alloc_count"].get<std::uint64_t>() >= 25, true);
        const std::string why = fifo ? "not a regular file (a FIFO)" : "a symbolic link";
        EXPECT_TRUE(has_warning(r, "skipped " + map + " of process " + std::to_string(pid) + ": " + why))
            << r["warnings"].dump();
        EXPECT_NE(tracer.err_text.find("skipped " + map), std::string::npos);
    }
}

TEST_F(E2E, DebuglinkNamingAFifoIsSkippedInBoundedTime)
{
    TempDir dir;
    const std::string prog = dir / "leaks";
    const std::string cmd = "cp '" + target("leaks") + "' '" + prog + "' && cd '" + dir.path +
                            "' && objcopy --only-keep-debug leaks leaks.debug && objcopy --strip-debug "
                            "--add-gnu-debuglink=leaks.debug leaks && rm leaks.debug && mkfifo leaks.debug";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    std::string path = temp_json("debuglink_fifo");
    const auto t0 = std::chrono::steady_clock::now();
    Child tracer({kBin, "run", "--json", path, "--", prog});
    const int status = tracer.finish(60s);
    ASSERT_EQ(status, 0) << tracer.err_text;
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 30s);
    json r = load(path);
    EXPECT_TRUE(has_warning(r, "leaks.debug: not a regular file (a FIFO)")) << r["warnings"].dump();
    // Symbols from the file's own symbol table still name the leaks.
    bool named = false;
    for (const auto& l : r["leaks"])
        for (const auto& f : l["stack"])
            named |= f["symbol"].is_string() && f["symbol"].get<std::string>().find("leak_") != std::string::npos;
    EXPECT_TRUE(named) << r["leaks"].dump().substr(0, 1500);
}

TEST_F(E2E, TenIdleControlClientsStallNothing)
{
    const int workers = 2;
    std::string path = temp_json("idle_clients");
    Child tracer({kBin, "run", "--json", path, "--", target("phases"), std::to_string(workers)});
    ASSERT_TRUE(tracer.wait_for("ready\n", false));
    const std::string sock = "/run/memscope-trace/" + std::to_string(tracer.pid) + ".sock";
    std::vector<int> idle;
    for (int i = 0; i < 10; ++i) {
        int fd = connect_unix(sock);
        ASSERT_GE(fd, 0) << std::strerror(errno);
        idle.push_back(fd);
    }
    // Busy phases while ten clients say nothing; a status request is answered at once.
    const auto t0 = std::chrono::steady_clock::now();
    for (int k = 1; k <= 5; ++k) {
        tracer.write_stdin("phase " + std::to_string(k) + "\n");
        Result st = run({kBin, "ctl", "--pid", std::to_string(tracer.pid), "status"});
        EXPECT_EQ(st.status, 0) << st.out << st.err;
        EXPECT_TRUE(json::parse(st.out, nullptr, false).contains("mode")) << st.out;
        ASSERT_TRUE(tracer.wait_for("done " + std::to_string(k) + " ", false)) << tracer.err_text;
    }
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s) << "status requests waited on idle clients";
    // The idle ones are let go after their deadline (EOF), not kept forever.
    for (int fd : idle) {
        pollfd p{fd, POLLIN, 0};
        EXPECT_EQ(poll(&p, 1, 5000), 1);
        char c;
        EXPECT_EQ(read(fd, &c, 1), 0);
        close(fd);
    }
    tracer.write_stdin("exit\n");
    ASSERT_EQ(tracer.finish(), 0) << tracer.err_text;
    json r = load(path);
    EXPECT_EQ(r["dropped"]["events"], 0) << r["dropped"].dump();
    for (int w = 0; w < workers; ++w) {
        const json* t = thread_named(r, "phase-w" + std::to_string(w));
        ASSERT_NE(t, nullptr);
        EXPECT_EQ((*t)["alloc_count"], 5 * 3000);
        EXPECT_EQ((*t)["free_count"], 5 * 3000);
    }
}

TEST_F(E2E, ControlClientsPastTheBoundAreToldSo)
{
    Child tracer({kBin, "run", "--", target("phases"), "1"});
    ASSERT_TRUE(tracer.wait_for("ready\n", false));
    const std::string sock = "/run/memscope-trace/" + std::to_string(tracer.pid) + ".sock";
    // 20 at once: 16 are served (here: idle until their deadline), 4 told to come back.
    std::vector<int> held;
    for (int i = 0; i < 20; ++i) {
        int fd = connect_unix(sock);
        ASSERT_GE(fd, 0);
        held.push_back(fd);
    }
    int refused = 0, dropped = 0;
    for (int fd : held) {
        pollfd p{fd, POLLIN, 0};
        ASSERT_EQ(poll(&p, 1, 5000), 1);
        char buf[256];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0 && std::string(buf, static_cast<std::size_t>(n)).find("too many control clients") != std::string::npos)
            ++refused;
        else if (n == 0)
            ++dropped;
        close(fd);
    }
    EXPECT_EQ(refused, 4);
    EXPECT_EQ(dropped, 16);
    tracer.write_stdin("exit\n");
    EXPECT_EQ(tracer.finish(), 0) << tracer.err_text;
}

TEST_F(E2E, HundredThousandDeepJsonToEveryReaderIsOneLineExit2)
{
    TempDir dir;
    const std::string deep = dir / "deep.json";
    {
        std::ofstream out(deep);
        out << "{\"schema\":\"memscope-trace/1\",\"threads\":";
        for (int i = 0; i < 100000; ++i)
            out << "[{\"a\":";
        out << "1";
        for (int i = 0; i < 100000; ++i)
            out << "}]";
        out << "}";
    }
    std::string good = temp_json("deep_good");
    ASSERT_EQ(run({kBin, "run", "--json", good, "--", target("short_lived")}).status, 0);
    const std::vector<std::vector<std::string>> readers = {
        {kBin, "report", deep, "--html", dir / "out.html"},
        {kBin, "report", deep, "--collapsed", dir / "out.folded"},
        {kBin, "diff", deep, good},
        {kBin, "diff", good, deep},
        {kBin, "run", "--baseline", deep, "--", target("short_lived")},
    };
    for (const auto& argv : readers) {
        Result r = run(argv);
        EXPECT_EQ(r.status, 2) << argv[1] << ": " << r.err;
        EXPECT_NE(r.err.find("nests deeper than"), std::string::npos) << r.err;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    }
    EXPECT_EQ(access((dir / "out.html").c_str(), F_OK), -1);
    std::remove(good.c_str());
}

TEST_F(E2E, KilledTracersSocketsAreClearedAndBadPidsSaySoInOneLine)
{
    // A socket left by a tracer killed with -9: its pid is gone.
    pid_t gone = fork();
    if (gone == 0)
        _exit(0);
    waitpid(gone, nullptr, 0);
    mkdir("/run/memscope-trace", 0700);
    const std::string stale = "/run/memscope-trace/" + std::to_string(gone) + ".sock";
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", stale.c_str());
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    close(fd);
    ASSERT_EQ(access(stale.c_str(), F_OK), 0);
    ASSERT_EQ(run({kBin, "run", "--", target("short_lived")}).status, 0);
    EXPECT_EQ(access(stale.c_str(), F_OK), -1) << "a dead tracer's socket stayed";

    for (const std::string pid : {"0", "-1", "99999999999999999999", "x"}) {
        Result r = run({kBin, "-p", pid});
        EXPECT_EQ(r.status, 2) << pid;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
        EXPECT_LT(r.err.size(), 160u) << r.err;
    }
}

TEST_F(E2E, SigtermEndsTheTracerWaitingOnAFifoNobodyReads)
{
    TempDir dir;
    const std::string fifo = dir / "report.fifo";
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    Child tracer({kBin, "run", "--json", fifo, "--", target("short_lived")});
    // The text report comes first: then it waits on the FIFO, as a shell would.
    ASSERT_TRUE(tracer.wait_for("memscope-trace: pid", true)) << tracer.err_text;
    std::this_thread::sleep_for(300ms);
    ASSERT_EQ(waitpid(tracer.pid, nullptr, WNOHANG), 0) << "it should still wait for a reader";
    const auto t0 = std::chrono::steady_clock::now();
    kill(tracer.pid, SIGTERM);
    EXPECT_EQ(tracer.finish(10s), 128 + SIGTERM);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
    struct stat st{};
    ASSERT_EQ(lstat(fifo.c_str(), &st), 0);
    EXPECT_TRUE(S_ISFIFO(st.st_mode));
}

TEST_F(E2E, RunSignalledWhileStartingRunsTheCommandAndPassesTheSignalOn)
{
    // Loading BPF takes ~0.5 s: SIGTERM and SIGINT come before the command
    // is forked. Each is the command's, as later ones are: it starts, gets
    // it, and the tracer reports it with the command's status.
    for (int sig : {SIGTERM, SIGINT}) {
        SCOPED_TRACE(sig);
        const std::string path = temp_json("early-signal");
        Child tracer({kBin, "run", "--json", path, "--", "/bin/sleep", "30"});
        // Past the tracer's own start (its libraries, libssl and libprotobuf
        // among them, load in ~40 ms before main), well before BPF is loaded.
        std::this_thread::sleep_for(150ms);
        kill(tracer.pid, sig);
        const auto t0 = std::chrono::steady_clock::now();
        EXPECT_EQ(tracer.finish(20s), 128 + sig) << tracer.err_text;
        EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s) << "the command did not get the signal";
        json r = load(path);
        EXPECT_EQ(r["target"]["exit_code"], 128 + sig) << tracer.err_text;
    }
}

namespace {
// leader_exit's workers, exactly (see tests/targets/leader_exit.c).
void expect_after_leader(const json& r, const std::string& how)
{
    for (int i = 0; i < 4; ++i) {
        SCOPED_TRACE(how + ", after-" + std::to_string(i));
        const json* t = thread_named(r, "after-" + std::to_string(i));
        ASSERT_NE(t, nullptr) << r["threads"].dump(1);
        const std::uint64_t size = 32 + i;
        expect_counters(*t, 1000, 1000 * size, 500, 500 * size, 500, 500 * size, 1000 * size);
    }
}
} // namespace

TEST_F(E2E, CountingGoesOnAfterTheLeadersPthreadExit)
{
    // Followed and alone (--no-follow), five times each: the loss was
    // timing-dependent.
    for (int round = 0; round < 5; ++round) {
        json r = trace_run({target("leader_exit")});
        expect_after_leader(r, "run, round " + std::to_string(round));
        const std::string path = temp_json("leader-exit-alone");
        Result res = run({kBin, "run", "--no-follow", "--json", path, "--", target("leader_exit")});
        ASSERT_EQ(res.status, 0) << res.err;
        expect_after_leader(load(path), "run --no-follow, round " + std::to_string(round));
    }
}

TEST_F(E2E, DashPTracesAProcessWhoseLeaderIsAZombie)
{
    TempDir dir;
    const std::string go = dir / "go";
    Child target_process({target("leader_exit"), go});
    ASSERT_TRUE(target_process.wait_for("\n", false)) << target_process.err_text;
    const std::string pid = std::to_string(target_process.pid);
    // Its leader gone: a zombie while the workers wait.
    std::string state;
    for (int i = 0; i < 200 && state.find("Z") == std::string::npos; ++i) {
        std::this_thread::sleep_for(10ms);
        std::ifstream stat("/proc/" + pid + "/stat");
        std::string line;
        std::getline(stat, line);
        state = line.substr(line.rfind(')') + 2, 1);
    }
    ASSERT_EQ(state, "Z");
    const std::string path = temp_json("zombie-leader");
    Child tracer({kBin, "-p", pid, "--json", path});
    ASSERT_TRUE(tracer.wait_for("attached to pid", true)) << tracer.err_text;
    std::ofstream(go.c_str()) << "go\n";
    EXPECT_EQ(tracer.finish(60s), 0) << tracer.err_text;
    json r = load(path);
    expect_after_leader(r, "-p on a zombie leader");
    // Bound to two workers, moved as each left: never lapsed.
    EXPECT_FALSE(has_warning(r, "lapsed")) << r["warnings"].dump();
    target_process.finish();
}

namespace {
// exec_self's N + 1 images under -p (see tests/targets/exec_self.c): a
// section each, exact.
void expect_exec_self_under_dash_p(bool from_thread)
{
    TempDir dir;
    const std::string go = dir / "go";
    std::vector<std::string> argv{target("exec_self"), go, "3"};
    if (from_thread)
        argv.insert(argv.begin(), {"/usr/bin/env", "EXEC_SELF_FROM_THREAD=1"});
    Child target_process(argv);
    const int pid = target_process.pid;
    // Traced from exec_self on: env's own image is no part of it.
    auto exe = [pid] {
        char buf[4096];
        const ssize_t n = readlink(("/proc/" + std::to_string(pid) + "/exe").c_str(), buf, sizeof buf);
        return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
    };
    for (int i = 0; i < 500 && exe() != target("exec_self"); ++i)
        std::this_thread::sleep_for(10ms);
    ASSERT_EQ(exe(), target("exec_self"));
    const std::string path = temp_json("exec-self");
    Child tracer({kBin, "-p", std::to_string(target_process.pid), "--json", path});
    ASSERT_TRUE(tracer.wait_for("attached to pid", true)) << tracer.err_text;
    if (!from_thread) {
        std::ofstream(go.c_str()) << "go\n";
    } else {
        // The tracer cannot hold a program a thread exec'd: each image
        // waits until the tracer says its probes are in place.
        std::string said;
        for (int n = 3; n >= 0; --n) {
            std::ofstream(go + "." + std::to_string(n)) << "go\n";
            if (n > 0) {
                ASSERT_TRUE(tracer.wait_for("a new section", true)) << said << tracer.err_text;
                said += std::exchange(tracer.err_text, {});
            }
        }
        tracer.err_text = said + tracer.err_text;
    }
    EXPECT_EQ(tracer.finish(60s), 0) << tracer.err_text;
    EXPECT_EQ(target_process.finish(), 0);
    json r = load(path);
    if (from_thread) {
        // What an image did before its probes came back is unseen: said.
        EXPECT_FALSE(r["totals"]["live_bytes_exact"].get<bool>());
        bool said = false;
        for (const auto& w : r["warnings"])
            said |= w.get<std::string>().find("a thread other than the leader exec'd") != std::string::npos;
        EXPECT_TRUE(said) << r["warnings"].dump();
    }
    ASSERT_EQ(r["processes"].size(), 4u) << r["processes"].dump(1) << tracer.err_text;
    for (const auto& p : r["processes"]) {
        EXPECT_EQ(p["pid"], pid);
        EXPECT_EQ(p["totals"]["alloc_count"], 100) << p.dump();
        EXPECT_EQ(p["totals"]["alloc_bytes"], 5000) << p.dump();
        EXPECT_EQ(p["totals"]["free_count"], 60) << p.dump();
        EXPECT_EQ(p["totals"]["unmatched_free_count"], 0) << p.dump();
        EXPECT_EQ(p["totals"]["live_bytes"], 2000) << p.dump();
    }
    EXPECT_EQ(r["totals"]["alloc_count"], 400);
    EXPECT_EQ(r["totals"]["free_count"], 240);
}
} // namespace

TEST_F(E2E, DashPFollowsATargetThatExecsItself)
{
    expect_exec_self_under_dash_p(false);
}

TEST_F(E2E, DashPFollowsATargetThatExecsItselfFromAThreadThatIsNotTheLeader)
{
    // The exec'ing thread takes the leader's pid; every thread the probes
    // were bound to is gone with the old image.
    expect_exec_self_under_dash_p(true);
}

namespace {
// `run` of a program whose files would inflate to gigabytes: it ends in
// bounded time and memory; its report.
json trace_bounded(const std::string& program)
{
    const std::string path = temp_json("inflation");
    const auto t0 = std::chrono::steady_clock::now();
    Result r = run({kBin, "run", "--json", path, "--", program});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 60s);
    EXPECT_LT(r.max_rss_kb, 400 * 1024) << "the tracer inflated something";
    return load(path);
}
} // namespace

TEST_F(E2E, CompressedSectionsClaimingSixtyFourGiBAreNotInflated)
{
    // leaks with its DWARF compressed, each compressed section then claiming
    // to inflate to 64 GiB (a file of a few KiB can): its debug sections are
    // skipped, said, and the tracer stays small. Its symbols still name the
    // leaks.
    TempDir dir;
    const std::string bomb = dir / "leaks_bomb";
    ASSERT_EQ(std::system(("objcopy --compress-debug-sections=zlib-gabi '" + target("leaks") + "' '" + bomb + "'")
                              .c_str()),
              0);
    {
        std::fstream f(bomb, std::ios::in | std::ios::out | std::ios::binary);
        Elf64_Ehdr eh{};
        f.read(reinterpret_cast<char*>(&eh), sizeof eh);
        int patched = 0;
        for (int i = 0; i < eh.e_shnum; ++i) {
            Elf64_Shdr sh{};
            f.seekg(static_cast<std::streamoff>(eh.e_shoff + static_cast<std::uint64_t>(i) * eh.e_shentsize));
            f.read(reinterpret_cast<char*>(&sh), sizeof sh);
            if (!(sh.sh_flags & SHF_COMPRESSED))
                continue;
            const std::uint64_t claim = 64ULL << 30;
            f.seekp(static_cast<std::streamoff>(sh.sh_offset + offsetof(Elf64_Chdr, ch_size)));
            f.write(reinterpret_cast<const char*>(&claim), sizeof claim);
            ++patched;
        }
        ASSERT_GT(patched, 0) << "objcopy compressed no section";
    }
    chmod(bomb.c_str(), 0755);
    json rep = trace_bounded(bomb);
    EXPECT_TRUE(has_warning(rep, "compressed sections would inflate to")) << rep["warnings"].dump(1);
    std::set<std::string> functions;
    for (const auto& l : rep["leaks"])
        if (l["function"].is_string())
            functions.insert(l["function"].get<std::string>());
    EXPECT_TRUE(functions.count("leak_deep()")) << rep["leaks"].dump(1);
}

TEST_F(E2E, MiniDebugInfoThatInflatesToGigabytesIsNotInflated)
{
    // leaks without its symbol table, given a .gnu_debugdata (xz, the
    // MiniDebugInfo libdw inflates with no bound) of 1 GiB of zeros: decoded
    // here only until it is plainly no symbol table, the file skipped, said.
    TempDir dir;
    const std::string bomb = dir / "leaks_minidebuginfo";
    const std::string make = "set -e; cd '" + dir.path + "'; head -c 1G /dev/zero | xz -1 -T1 > data.xz; " +
                             "strip --strip-all -o stripped '" + target("leaks") + "'; " +
                             "objcopy --add-section .gnu_debugdata=data.xz stripped '" + bomb + "'";
    ASSERT_EQ(std::system(make.c_str()), 0);
    json rep = trace_bounded(bomb);
    EXPECT_TRUE(has_warning(rep, "leaks_minidebuginfo: its compressed sections would inflate to more than"))
        << rep["warnings"].dump(1);
}
