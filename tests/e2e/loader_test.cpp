// What a process really maps is probed, not what `ld.so --list` predicts
// in the tracer's environment: allocators preloaded by the command's own
// environment (env, a shell), by the tracer's, or dlopen'd later; a libc
// deleted before a fork; a chroot's own libraries. Each held at its loader
// until probed, so the counts are exact from the first call.
#include "harness.hpp"
#include "../temp_dir.hpp"

using namespace e2e;
using nlohmann::json;

namespace {

const std::string kLibDir = "/usr/lib/x86_64-linux-gnu/";
// Installed by tools/setup.sh.
const std::vector<std::string> kAllocators = {kLibDir + "libjemalloc.so.2", kLibDir + "libtcmalloc_minimal.so.4",
                                              kLibDir + "libmimalloc.so.2"};

// fork_alloc's two processes (see tests/targets/fork_alloc.c), exactly: the
// child's whole figures; the parent's calls from main (the libraries'
// constructors allocate before it: libstdc++'s pool, with jemalloc).
void expect_fork_alloc(const json& r, const std::string& prog, const std::string& how)
{
    SCOPED_TRACE(how);
    std::map<std::uint64_t, json> by_parent; // 0: the parent; its pid: the child
    for (const auto& p : r["processes"])
        if (p["exe"] == prog)
            by_parent[p["parent_pid"].get<std::uint64_t>()] = p;
    ASSERT_EQ(by_parent.size(), 2u) << r["processes"].dump(1);
    const json& parent = by_parent.begin()->second;
    const json& child = by_parent.rbegin()->second["totals"];
    EXPECT_EQ(child["alloc_count"], 100);
    EXPECT_EQ(child["alloc_bytes"], 6400);
    EXPECT_EQ(child["free_count"], 40);
    EXPECT_EQ(child["free_bytes"], 40 * 64);
    EXPECT_EQ(child["unmatched_free_count"], 0);
    std::uint64_t count = 0, bytes = 0;
    for (const auto& site : r["sites"]) {
        if (site["pid"] != parent["pid"])
            continue;
        bool in_main = false;
        for (const auto& f : site["stack"])
            in_main |= f.value("symbol", json()) == "main" && f.value("module", std::string()).ends_with("fork_alloc");
        if (in_main) {
            count += site["alloc_count"].get<std::uint64_t>();
            bytes += site["alloc_bytes"].get<std::uint64_t>();
        }
    }
    EXPECT_EQ(count, 10u) << r["sites"].dump(1);
    EXPECT_EQ(bytes, 320u);
    EXPECT_EQ(parent["totals"]["unmatched_free_count"], 0);
}

// cxx_new_delete's threads, exactly (see tests/targets/cxx_new_delete.cpp).
void expect_cxx(const json& r, int nthreads, const std::string& how)
{
    for (int i = 0; i < nthreads; ++i) {
        SCOPED_TRACE(how + ", cxx-" + std::to_string(i));
        const json* t = thread_named(r, "cxx-" + std::to_string(i));
        ASSERT_NE(t, nullptr) << r["threads"].dump(1);
        const std::uint64_t bytes = 1000 * 48 + 200 * 100 + 100 * 48 + 50 * 128;
        const std::uint64_t kept = 500 * 48;
        expect_counters(*t, 1350, bytes, 850, bytes - kept, 500, kept, bytes);
        EXPECT_EQ((*t)["unmatched_free_count"], 0);
    }
}

} // namespace

TEST_F(E2E, CxxOperatorsOfEveryAllocatorLinkedOrPreloadedAreCountedOnce)
{
    // libstdc++'s operators reach malloc: counted there, once.
    expect_cxx(trace_run({target("cxx_new_delete"), "2"}), 2, "glibc");
    const std::vector<std::string> names = {"jemalloc", "tcmalloc", "mimalloc"};
    for (std::size_t a = 0; a < names.size(); ++a) {
        const std::string& lib = kAllocators[a];
        ASSERT_EQ(access(lib.c_str(), R_OK), 0) << lib << " missing: tools/setup.sh installs it";
        const std::string linked = target("cxx_new_delete_" + names[a]);
        ASSERT_EQ(access(linked.c_str(), X_OK), 0) << linked << " not built: configure again once " << lib
                                                   << " is installed";
        // Linked: its own operators, which do not reach its exported malloc.
        expect_cxx(trace_run({linked, "2"}), 2, names[a] + " linked");
        expect_threads_c(trace_run({target("threads_c_" + names[a]), "3", "500"}), 3, 500, names[a] + " linked, C");
        // Preloaded by the command's environment and by the tracer's.
        expect_cxx(trace_run({"env", "LD_PRELOAD=" + lib, target("cxx_new_delete"), "2"}), 2,
                   "env LD_PRELOAD=" + lib);
        const std::string path = temp_json("cxx-tracer-env");
        Result res = run({"/usr/bin/env", "LD_PRELOAD=" + lib, kBin, "run", "--json", path, "--",
                          target("cxx_new_delete"), "2"});
        ASSERT_EQ(res.status, 0) << res.err;
        expect_cxx(load(path), 2, "LD_PRELOAD=" + lib + " memscope-trace run");
    }
}

TEST_F(E2E, AllocatorsPreloadedByAnyEnvironmentAreCountedExactly)
{
    const std::string prog = target("threads_c");
    for (const auto& lib : kAllocators) {
        ASSERT_EQ(access(lib.c_str(), R_OK), 0) << lib << " missing: tools/setup.sh installs it";
        // By the command, through env and through a shell; by the tracer's own environment.
        json r = trace_run({"env", "LD_PRELOAD=" + lib, prog, "3", "500"});
        expect_threads_c(r, 3, 500, "env LD_PRELOAD=" + lib);
        r = trace_run({"/bin/sh", "-c", "LD_PRELOAD=" + lib + " " + prog + " 3 500"});
        expect_threads_c(r, 3, 500, "sh -c 'LD_PRELOAD=" + lib + " ...'");
        const std::string path = temp_json("tracer-env");
        Result res = run({"/usr/bin/env", "LD_PRELOAD=" + lib, kBin, "run", "--json", path, "--", prog, "3", "500"});
        ASSERT_EQ(res.status, 0) << res.err;
        expect_threads_c(load(path), 3, 500, "LD_PRELOAD=" + lib + " memscope-trace run");
        // The first calls of main, before any thread or fork, and a forked child's.
        r = trace_run({"env", "LD_PRELOAD=" + lib, target("fork_alloc")});
        expect_fork_alloc(r, target("fork_alloc"), "env LD_PRELOAD=" + lib + " fork_alloc");
    }
}

TEST_F(E2E, AllocatorDlopenedLaterIsCountedFromItsFirstCall)
{
    // jemalloc cannot be dlopen'd (its TLS is initial-exec): tcmalloc and mimalloc.
    for (const auto& lib : {kAllocators[1], kAllocators[2]}) {
        ASSERT_EQ(access(lib.c_str(), R_OK), 0) << lib << " missing: tools/setup.sh installs it";
        json r = trace_run({target("dlopen_alloc"), lib});
        const json* t = thread_named(r, "dl-alloc");
        ASSERT_NE(t, nullptr) << lib << ": " << r["threads"].dump(1);
        expect_counters(*t, 300, 300 * 40, 100, 100 * 40, 200, 200 * 40, 300 * 40);
    }
}

TEST_F(E2E, LibcDeletedBeforeAForkIsProbedInTheChild)
{
    // The program runs on a copy of libc that it deletes before it forks,
    // as a libc6 upgrade during a long job would: the child maps a
    // "(deleted)" file, probed through its map_files.
    memscope_test::TempDir dir;
    ASSERT_EQ(std::system(("cp /lib/x86_64-linux-gnu/libc.so.6 '" + dir.path + "/'").c_str()), 0);
    const std::string prog = target("fork_alloc");
    json r = trace_run({"env", "LD_LIBRARY_PATH=" + dir.path, "FORK_ALLOC_UNLINK=" + dir / "libc.so.6", prog});
    EXPECT_EQ(access((dir / "libc.so.6").c_str(), F_OK), -1) << "the target did not delete its libc";
    expect_fork_alloc(r, prog, "libc deleted before the fork");
}

TEST_F(E2E, MappedFileTheTracerCannotOpenIsSaidAndTheGateRefusesTheReport)
{
    // A tracer given CAP_BPF and CAP_PERFMON but neither CAP_SYS_ADMIN nor
    // CAP_CHECKPOINT_RESTORE: the kernel refuses it the child's map_files,
    // the one way to the deleted libc. Its allocations cannot be counted,
    // and the report says so rather than count them as none.
    memscope_test::TempDir dir;
    ASSERT_EQ(std::system(("cp /lib/x86_64-linux-gnu/libc.so.6 '" + dir.path + "/'").c_str()), 0);
    const std::string prog = target("fork_alloc");
    const std::string path = temp_json("map-files-refused");
    Result r = run({"/usr/bin/setpriv", "--bounding-set=-sys_admin,-checkpoint_restore", "--inh-caps=-all", kBin, "run",
                    "--json", path, "--", "env", "LD_LIBRARY_PATH=" + dir.path,
                    "FORK_ALLOC_UNLINK=" + dir / "libc.so.6", prog});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("allocators not probed: " + dir / "libc.so.6"), std::string::npos) << r.err;
    Result d = run({kBin, "diff", path, path});
    EXPECT_EQ(d.status, 2) << d.out << d.err;
    EXPECT_NE(d.err.find("names allocators that were not probed"), std::string::npos) << d.err;
    json rep = load(path);
    ASSERT_EQ(rep["unprobed_allocators"].size(), 1u) << rep["unprobed_allocators"].dump();
    const json& u = rep["unprobed_allocators"][0];
    EXPECT_EQ(u["file"], dir / "libc.so.6");
    EXPECT_EQ(u["symbols"], json::array());
    EXPECT_NE(u["reason"].get<std::string>().find("CAP_CHECKPOINT_RESTORE"), std::string::npos) << u;
    // The parent, probed before its libc went, is still counted exactly;
    // the child is listed, by its pid, with nothing counted.
    std::uint64_t child = 0;
    for (const auto& p : rep["processes"]) {
        if (p["exe"] != prog)
            continue;
        if (p["parent_pid"] == 0) {
            EXPECT_EQ(p["totals"]["alloc_count"], 10) << p;
        } else {
            child = p["pid"];
            EXPECT_EQ(p["totals"]["alloc_count"], 0) << p;
        }
    }
    EXPECT_EQ(u["pid"], child) << rep["processes"].dump(1);
}

TEST_F(E2E, FilesOnBtrfsAreProbedUnwoundAndNamed)
{
    // btrfs stats a file with its subvolume's device, not the one maps
    // shows: the files a program maps there are still the ones probed,
    // their unwind tables and symbols found by the device the kernel names.
    memscope_test::TempDir dir;
    const std::string image = dir / "image", mnt = dir / "mnt", sub = mnt + "/sub";
    ASSERT_EQ(std::system(("truncate -s 200M '" + image + "' && mkfs.btrfs -q '" + image + "' >/dev/null && mkdir '" +
                           mnt + "' && mount -o loop '" + image + "' '" + mnt + "'")
                              .c_str()),
              0);
    struct Unmount {
        std::string at;
        ~Unmount() { std::system(("umount '" + at + "'").c_str()); }
    } unmount{mnt};
    ASSERT_EQ(std::system(("btrfs subvolume create '" + sub + "' >/dev/null && cp '" + target("threads_c") +
                           "' /lib/x86_64-linux-gnu/libc.so.6 '" + sub + "/'")
                              .c_str()),
              0);
    json r = trace_run({"env", "LD_LIBRARY_PATH=" + sub, sub + "/target_threads_c", "3", "500"});
    expect_threads_c(r, 3, 500, "on btrfs");
    EXPECT_EQ(r["unprobed_allocators"], json::array());
    // The workers' sites: worker in the program, then start_thread in the
    // btrfs copy of libc, reached through that copy's unwind table.
    bool whole = false;
    for (const auto& site : r["sites"]) {
        if (site["function"] != "worker" || site["stack"].size() < 2)
            continue;
        const json& caller = site["stack"][1];
        whole |= caller["symbol"] == "start_thread" && caller["module"] == sub + "/libc.so.6";
    }
    EXPECT_TRUE(whole) << r["sites"].dump(1);
    // A static program there: its own malloc, probed once (named by its
    // path before it runs, by maps after), counted exactly.
    ASSERT_EQ(std::system(("cp '" + target("short_lived_static") + "' '" + sub + "/'").c_str()), 0);
    r = trace_run({sub + "/target_short_lived_static"});
    const json* t = thread_named(r, "blink");
    ASSERT_NE(t, nullptr) << r.dump(1);
    expect_counters(*t, 3, 60, 1, 20, 2, 40, 60);
}

TEST_F(E2E, ChrootedCommandIsProbedInItsOwnRoot)
{
    // Its libc and loader are copies (other inodes than the host's): probing
    // the host's files, as a prediction from outside would, counts nothing.
    memscope_test::TempDir root;
    const std::string setup = "set -e; cd '" + root.path +
                              "'; mkdir -p lib/x86_64-linux-gnu lib64; "
                              "cp /lib/x86_64-linux-gnu/libc.so.6 lib/x86_64-linux-gnu/; "
                              "cp /lib64/ld-linux-x86-64.so.2 lib64/; cp '" +
                              target("threads_c") + "' prog; cp '" + target("fork_alloc") + "' fork_alloc";
    ASSERT_EQ(std::system(setup.c_str()), 0);
    json r = trace_run({"chroot", root.path, "/prog", "3", "500"});
    expect_threads_c(r, 3, 500, "chroot");
    EXPECT_EQ(r["dropped"]["events"], 0);
    r = trace_run({"chroot", root.path, "/fork_alloc"});
    expect_fork_alloc(r, root / "fork_alloc", "chroot fork_alloc");
}
