// Outputs that go where they point and never clobber; inputs read for a
// target that never block, never follow where they must not, never balloon.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <csignal>
#include <cstdlib>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <dirent.h>
#include <algorithm>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "../temp_dir.hpp"
#include "safe_files.hpp"

using namespace memscope;

namespace {

using memscope_test::TempDir;

std::string slurp(const std::string& path)
{
    std::ifstream in(path);
    return std::string((std::istreambuf_iterator<char>(in)), {});
}

// Everything a pipe's read end gets until its writers are gone.
std::string drain(int fd)
{
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;)
        out.append(buf, static_cast<std::size_t>(n));
    return out;
}

} // namespace

TEST(Outputs, NewFileAndReplacedFileLeaveNothingElse)
{
    TempDir dir;
    EXPECT_EQ(write_output(dir / "r.json", "one\n"), "");
    EXPECT_EQ(slurp(dir / "r.json"), "one\n");
    ASSERT_EQ(chmod((dir / "r.json").c_str(), 0600), 0);
    EXPECT_EQ(write_output(dir / "r.json", "two\n"), "");
    EXPECT_EQ(slurp(dir / "r.json"), "two\n");
    struct stat st{};
    ASSERT_EQ(stat((dir / "r.json").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u) << "the replaced file's mode is kept";
    EXPECT_EQ(dir.entries(), std::vector<std::string>{"r.json"}) << "no temporary file left";
    std::string bad = write_output(dir / "missing/r.json", "x");
    EXPECT_NE(bad.find("cannot create"), std::string::npos) << bad;
}

TEST(Outputs, FailedWriterLeavesTheOldFileAndNoTemporary)
{
    TempDir dir;
    ASSERT_EQ(write_output(dir / "r.json", "old\n"), "");
    std::string err = write_output(dir / "r.json", [](std::FILE* f) {
        std::fputs("half", f);
        return false;
    });
    EXPECT_NE(err, "");
    EXPECT_EQ(slurp(dir / "r.json"), "old\n");
    EXPECT_EQ(dir.entries(), std::vector<std::string>{"r.json"});
}

TEST(Outputs, SymlinkToRegularFileReplacesTheTargetAndKeepsTheLink)
{
    TempDir dir;
    ASSERT_EQ(write_output(dir / "target", "old"), "");
    ASSERT_EQ(symlink("target", (dir / "link").c_str()), 0);
    EXPECT_EQ(write_output(dir / "link", "new"), "");
    struct stat st{};
    ASSERT_EQ(lstat((dir / "link").c_str(), &st), 0);
    EXPECT_TRUE(S_ISLNK(st.st_mode));
    EXPECT_EQ(slurp(dir / "target"), "new");
    // A dangling link: the file it names is created, as `>` would.
    ASSERT_EQ(symlink((dir / "later").c_str(), (dir / "dangling").c_str()), 0);
    EXPECT_EQ(write_output(dir / "dangling", "made"), "");
    EXPECT_EQ(slurp(dir / "later"), "made");
    ASSERT_EQ(lstat((dir / "dangling").c_str(), &st), 0);
    EXPECT_TRUE(S_ISLNK(st.st_mode));
    EXPECT_EQ(dir.entries(), (std::vector<std::string>{"dangling", "later", "link", "target"}));
}

TEST(Outputs, DevNullStaysADevice)
{
    EXPECT_EQ(write_output("/dev/null", "report\n"), "");
    struct stat st{};
    ASSERT_EQ(stat("/dev/null", &st), 0);
    EXPECT_TRUE(S_ISCHR(st.st_mode));
    TempDir dir;
    ASSERT_EQ(symlink("/dev/null", (dir / "null").c_str()), 0);
    EXPECT_EQ(write_output(dir / "null", "x"), "");
    ASSERT_EQ(lstat((dir / "null").c_str(), &st), 0);
    EXPECT_TRUE(S_ISLNK(st.st_mode));
}

TEST(Outputs, DirectoryIsRefused)
{
    TempDir dir;
    std::string err = write_output(dir.path, "x");
    EXPECT_NE(err.find("directory"), std::string::npos) << err;
}

TEST(Outputs, FifoIsWrittenIntoWhenReadAndWaitsBoundedWithoutReader)
{
    TempDir dir;
    const std::string fifo = dir / "fifo";
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    auto t0 = std::chrono::steady_clock::now();
    std::string err = write_output(fifo, "x", 300);
    EXPECT_NE(err.find("no reader"), std::string::npos) << err;
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));

    std::string got;
    std::thread reader([&] {
        int fd = open(fifo.c_str(), O_RDONLY);
        got = drain(fd);
        close(fd);
    });
    std::string big(1 << 20, 'r'); // more than a pipe holds: the writer waits on the reader
    EXPECT_EQ(write_output(fifo, big), "");
    reader.join();
    EXPECT_EQ(got.size(), big.size());
    struct stat st{};
    ASSERT_EQ(lstat(fifo.c_str(), &st), 0);
    EXPECT_TRUE(S_ISFIFO(st.st_mode)) << "the FIFO is still a FIFO";

    // A reader that never reads: bounded too, and no SIGPIPE when it goes.
    int rd = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
    ASSERT_GE(rd, 0);
    err = write_output(fifo, big, 300);
    EXPECT_NE(err.find("in time"), std::string::npos) << err;
    close(rd);
}

TEST(Outputs, DashAndDescriptorLinksWriteIntoStdout)
{
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    pid_t child = fork();
    if (child == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        bool ok = write_output("-", "dash\n").empty() && write_output("/dev/stdout", "devstdout\n").empty() &&
                  write_output("/proc/self/fd/1", "procfd\n").empty();
        _exit(ok ? 0 : 1);
    }
    close(p[1]);
    std::string got = drain(p[0]);
    close(p[0]);
    int status = 0;
    waitpid(child, &status, 0);
    EXPECT_EQ(WEXITSTATUS(status), 0);
    EXPECT_EQ(got, "dash\ndevstdout\nprocfd\n");
    struct stat st{};
    ASSERT_EQ(lstat("/dev/stdout", &st), 0);
    EXPECT_TRUE(S_ISLNK(st.st_mode)) << "/dev/stdout is still a link";
    // stdout redirected to a regular file: appended to, not replaced.
    TempDir dir;
    child = fork();
    if (child == 0) {
        int fd = open((dir / "out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 1);
        if (write(1, "before\n", 7) != 7)
            _exit(2);
        _exit(write_output("/dev/stdout", "report\n").empty() ? 0 : 1);
    }
    waitpid(child, &status, 0);
    EXPECT_EQ(WEXITSTATUS(status), 0);
    EXPECT_EQ(slurp(dir / "out"), "before\nreport\n");
}

TEST(Outputs, UnixSocketIsWrittenInto)
{
    TempDir dir;
    const std::string path = dir / "sock";
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(listen(s, 1), 0);
    std::string got;
    std::thread server([&] {
        int c = accept(s, nullptr, nullptr);
        got = drain(c);
        close(c);
    });
    EXPECT_EQ(write_output(path, "over a socket"), "");
    server.join();
    close(s);
    EXPECT_EQ(got, "over a socket");
}

TEST(UntrustedInput, OnlyBoundedRegularFilesAreRead)
{
    TempDir dir;
    std::string why;
    ASSERT_EQ(write_output(dir / "map", "1000 10 jitted\n"), "");
    auto text = read_untrusted(dir / "map", {}, why);
    ASSERT_TRUE(text) << why;
    EXPECT_EQ(*text, "1000 10 jitted\n");

    ASSERT_EQ(mkfifo((dir / "fifo").c_str(), 0600), 0);
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_FALSE(read_untrusted(dir / "fifo", {}, why));
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1)) << "a FIFO never blocks";
    EXPECT_NE(why.find("FIFO"), std::string::npos) << why;

    ASSERT_EQ(symlink("/dev/zero", (dir / "zero").c_str()), 0);
    EXPECT_FALSE(read_untrusted(dir / "zero", {}, why));
    EXPECT_NE(why.find("character device"), std::string::npos) << why;
    EXPECT_FALSE(read_untrusted(dir / "zero", {.no_follow = true}, why));
    EXPECT_EQ(why, "a symbolic link");

    // Sparse and huge: refused by its size before a byte is read.
    int fd = open((dir / "sparse").c_str(), O_WRONLY | O_CREAT, 0600);
    ASSERT_EQ(ftruncate(fd, 50LL << 30), 0);
    close(fd);
    EXPECT_FALSE(read_untrusted(dir / "sparse", {.max_bytes = 64 << 20}, why));
    EXPECT_EQ(why, "larger than 64 MiB");

    // A file of another user (not root) is not the process's.
    ASSERT_EQ(chown((dir / "map").c_str(), 4242, 4242), geteuid() == 0 ? 0 : -1);
    if (geteuid() == 0) {
        EXPECT_FALSE(read_untrusted(dir / "map", {.owner = 1000}, why));
        EXPECT_NE(why.find("uid 4242"), std::string::npos) << why;
        EXPECT_TRUE(read_untrusted(dir / "map", {.owner = 4242}, why)) << why;
    }
}

TEST(UntrustedInput, ProcessRootPathsResolveInsideThatRoot)
{
    // An absolute link under /proc/PID/root names a file of that root: for
    // our own root the same file, found through openat2's RESOLVE_IN_ROOT.
    TempDir dir;
    ASSERT_EQ(write_output(dir / "real", "inside"), "");
    ASSERT_EQ(symlink((dir / "real").c_str(), (dir / "abs").c_str()), 0);
    std::string why;
    auto text = read_untrusted("/proc/" + std::to_string(getpid()) + "/root" + dir.path + "/abs", {}, why);
    ASSERT_TRUE(text) << why;
    EXPECT_EQ(*text, "inside");
    // Magic links (/proc/self/fd/N) are not followed from there.
    int fd = open((dir / "real").c_str(), O_RDONLY);
    EXPECT_FALSE(read_untrusted("/proc/" + std::to_string(getpid()) + "/root/proc/self/fd/" + std::to_string(fd), {},
                                why));
    close(fd);
}

namespace {
// Files of another user need root to make; CI runs as root and must not skip.
bool need_root()
{
    if (geteuid() == 0)
        return true;
    const char* ci = std::getenv("CI");
    if (ci && std::string(ci) == "true")
        ADD_FAILURE() << "this test needs root to make another user's files, and CI=true forbids skipping it";
    return false;
}
} // namespace

TEST(Outputs, AnotherUsersLinkOrFifoInASharedDirectoryIsNeitherFollowedNorWritten)
{
    if (!need_root())
        GTEST_SKIP() << "not root";
    TempDir shared; // as /tmp is: sticky and writable by all
    ASSERT_EQ(chmod(shared.path.c_str(), 01777), 0);
    TempDir safe;
    ASSERT_EQ(write_output(safe / "passwd", "precious\n"), "");
    // Planted by uid 4242: a link to a file of root's, a dangling link, a FIFO.
    ASSERT_EQ(symlink((safe / "passwd").c_str(), (shared / "r.json").c_str()), 0);
    ASSERT_EQ(lchown((shared / "r.json").c_str(), 4242, 4242), 0);
    ASSERT_EQ(symlink((safe / "cron").c_str(), (shared / "d.json").c_str()), 0);
    ASSERT_EQ(lchown((shared / "d.json").c_str(), 4242, 4242), 0);
    ASSERT_EQ(mkfifo((shared / "f.json").c_str(), 0666), 0);
    ASSERT_EQ(chown((shared / "f.json").c_str(), 4242, 4242), 0);
    ASSERT_EQ(write_output(shared / "x.json", "theirs"), "");
    ASSERT_EQ(chown((shared / "x.json").c_str(), 4242, 4242), 0);
    for (const char* name : {"r.json", "d.json", "f.json", "x.json"}) {
        std::string err = write_output(shared / name, "report\n", 200);
        EXPECT_NE(err.find("another user's, in a shared directory"), std::string::npos) << name << ": " << err;
        EXPECT_NE(check_output(shared / name), "") << name;
    }
    EXPECT_EQ(slurp(safe / "passwd"), "precious\n");
    EXPECT_EQ(access((safe / "cron").c_str(), F_OK), -1);
    EXPECT_EQ(slurp(shared / "x.json"), "theirs");
    // Our own file there is ours to replace.
    EXPECT_EQ(write_output(shared / "mine.json", "one"), "");
    EXPECT_EQ(write_output(shared / "mine.json", "two"), "");
    EXPECT_EQ(slurp(shared / "mine.json"), "two");
}

TEST(Outputs, AnotherProcesssDescriptorIsNeverReopened)
{
    TempDir dir;
    ASSERT_EQ(write_output(dir / "victim", "precious\n"), "");
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    pid_t holder = fork();
    if (holder == 0) {
        int fd = open((dir / "victim").c_str(), O_RDONLY);
        dup2(fd, 7);
        if (write(ready[1], "k", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    char k;
    ASSERT_EQ(read(ready[0], &k, 1), 1);
    ASSERT_EQ(symlink(("/proc/" + std::to_string(holder) + "/fd/7").c_str(), (dir / "r.json").c_str()), 0);
    std::string err = write_output(dir / "r.json", "report\n");
    kill(holder, SIGKILL);
    waitpid(holder, nullptr, 0);
    close(ready[0]);
    close(ready[1]);
    EXPECT_NE(err.find("another process's descriptor"), std::string::npos) << err;
    EXPECT_EQ(slurp(dir / "victim"), "precious\n");
}
