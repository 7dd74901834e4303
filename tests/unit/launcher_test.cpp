#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

#include "launcher.hpp"
#include "proc.hpp"

using namespace memscope;

TEST(Launcher, ParsesLoaderList)
{
    const char* text =
        "\tlinux-vdso.so.1 (0x00007ffd)\n"
        "\tlibstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007f00)\n"
        "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f01)\n"
        "\t/lib64/ld-linux-x86-64.so.2 (0x00007f02)\n"
        "\tlibmissing.so => not found\n";
    auto libs = parse_loader_list(text);
    ASSERT_EQ(libs.size(), 3u);
    EXPECT_EQ(libs[0], "/lib/x86_64-linux-gnu/libstdc++.so.6");
    EXPECT_EQ(libs[1], "/lib/x86_64-linux-gnu/libc.so.6");
    EXPECT_EQ(libs[2], "/lib64/ld-linux-x86-64.so.2");
}

TEST(Launcher, ResolvesCommandsLikeExecvp)
{
    EXPECT_EQ(resolve_command("/bin/sh"), "/bin/sh");
    EXPECT_NE(resolve_command("sh"), "");
    EXPECT_EQ(resolve_command("no-such-command-here"), "");
    char plain[] = "/tmp/memscope-unit-plain-XXXXXX";
    int fd = mkstemp(plain); // mode 0600: not executable
    ASSERT_GE(fd, 0);
    close(fd);
    EXPECT_EQ(resolve_command(plain), "");
    unlink(plain);
}

TEST(Launcher, CommandObjectsIncludeLibc)
{
    std::string err;
    auto objs = command_objects("/bin/sh", err, true);
    EXPECT_EQ(err, "");
    ASSERT_FALSE(objs.empty());
    EXPECT_TRUE(std::any_of(objs.begin(), objs.end(),
                            [](const std::string& p) { return p.find("libc.so") != std::string::npos; }));
    // Not predicted: the program and its loader, what exec maps.
    objs = command_objects("/bin/sh", err, false);
    ASSERT_EQ(objs.size(), 2u);
    EXPECT_EQ(objs[0], "/bin/sh");
    EXPECT_NE(objs[1].find("ld-linux"), std::string::npos) << objs[1];
}

TEST(Launcher, HeldChildRunsOnlyWhenReleased)
{
    HeldChild ok("/bin/sh", {"sh", "-c", "exit 5"});
    ASSERT_GT(ok.pid(), 0);
    EXPECT_EQ(ok.release(), "");
    int st = 0;
    waitpid(ok.pid(), &st, 0);
    EXPECT_EQ(WEXITSTATUS(st), 5);

    HeldChild dropped("/bin/sh", {"sh", "-c", "exit 5"});
    ASSERT_GT(dropped.pid(), 0);
    dropped.abandon(); // never runs the command
    EXPECT_EQ(waitpid(dropped.pid(), &st, WNOHANG), -1);

    HeldChild bad("/nonexistent", {"x"});
    ASSERT_GT(bad.pid(), 0);
    EXPECT_NE(bad.release().find("cannot execute"), std::string::npos);
    waitpid(bad.pid(), nullptr, 0);
}

// A program may name any file as its loader (PT_INTERP); the tracer runs the
// loader as root to list libraries, so only a loader root owns is run.
TEST(Launcher, LoaderThatIsNotRootsIsNeverRun)
{
    if (geteuid() != 0) {
        const char* ci = std::getenv("CI");
        if (ci && std::string(ci) == "true")
            FAIL() << "this test needs root to make another user's loader, and CI=true forbids skipping it";
        GTEST_SKIP() << "not root";
    }
    const std::string dir = USER_LOADER_DIR;
    std::system(("rm -rf '" + dir + "' && mkdir -p '" + dir + "' && cp /lib64/ld-linux-x86-64.so.2 '" + dir +
                 "/ld.so'")
                    .c_str());
    ASSERT_EQ(chown((dir + "/ld.so").c_str(), 4242, 4242), 0);
    std::string error;
    auto objects = command_objects(TARGET_DIR "/target_user_loader", error, true);
    EXPECT_TRUE(objects.empty());
    EXPECT_NE(error.find("is not root's; not run as root"), std::string::npos) << error;
    // The same loader, root's: run, and the libraries listed.
    ASSERT_EQ(chown((dir + "/ld.so").c_str(), 0, 0), 0);
    error.clear();
    objects = command_objects(TARGET_DIR "/target_user_loader", error, true);
    EXPECT_TRUE(error.empty()) << error;
    EXPECT_TRUE(std::any_of(objects.begin(), objects.end(),
                            [](const std::string& o) { return o.find("libc.so") != std::string::npos; }));
    std::system(("rm -rf '" + dir + "'").c_str());
}

TEST(Proc, WhyAProcessCannotBeTracedNamesTheCause)
{
    // An exited (reaped) child, and a kernel thread where one is visible.
    pid_t child = fork();
    if (child == 0)
        _exit(0);
    ASSERT_GT(child, 0);
    ASSERT_EQ(waitpid(child, nullptr, 0), child);
    EXPECT_EQ(memscope::mappings_unavailable(child), "it exited");
    for (int pid = 2; pid < 256; ++pid) {
        std::ifstream status("/proc/" + std::to_string(pid) + "/status");
        std::string text((std::istreambuf_iterator<char>(status)), std::istreambuf_iterator<char>());
        if (text.find("\nKthread:\t1") != std::string::npos) {
            EXPECT_EQ(memscope::mappings_unavailable(pid), "it is a kernel thread (no user memory)") << pid;
            break;
        }
    }
}
