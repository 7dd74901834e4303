#include <gtest/gtest.h>

#include <dlfcn.h>
#include <link.h>
#include <malloc.h>

#include <algorithm>
#include <climits>
#include <cstdlib>

#include "elf_symbols.hpp"
#include "proc.hpp"
#include "../temp_dir.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

using namespace memscope;

// The libc this test runs on, as the loader mapped it.
static std::string own_libc()
{
    Dl_info info{};
    EXPECT_NE(dladdr(reinterpret_cast<void*>(&malloc_usable_size), &info), 0);
    return info.dli_fname;
}

TEST(Elf, FindsGlibcAllocatorWithFileOffsets)
{
    ElfScan scan = scan_elf(own_libc());
    ASSERT_EQ(scan.error, "");
    std::vector<std::string> names;
    for (const auto& s : scan.symbols)
        names.push_back(s.name);
    for (const char* want : {"malloc", "calloc", "realloc", "free", "posix_memalign", "aligned_alloc",
                             "memalign", "valloc", "pvalloc"})
        EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;

    // The file offset we would probe is where malloc really is: compare with
    // the running process's own libc mapping.
    Dl_info info{};
    ASSERT_NE(dladdr(reinterpret_cast<void*>(&malloc_usable_size), &info), 0);
    void* handle = dlopen(own_libc().c_str(), RTLD_NOW | RTLD_NOLOAD);
    ASSERT_NE(handle, nullptr);
    auto* real_malloc = reinterpret_cast<char*>(dlsym(handle, "malloc"));
    dlclose(handle);
    auto it = std::find_if(scan.symbols.begin(), scan.symbols.end(),
                           [](const AllocatorSymbol& s) { return s.name == "malloc"; });
    ASSERT_NE(it, scan.symbols.end());
    EXPECT_EQ(reinterpret_cast<char*>(info.dli_fbase) + it->vaddr, real_malloc);
}

TEST(Elf, AliasesCollapseToOneProbe)
{
    std::vector<AllocatorSymbol> syms{
        {"aligned_alloc", MS_KIND_MEMALIGN, 0x100, 0x100},
        {"memalign", MS_KIND_MEMALIGN, 0x100, 0x100},
        {"malloc", MS_KIND_MALLOC, 0x200, 0x200},
    };
    auto u = unique_by_address(syms);
    ASSERT_EQ(u.size(), 2u);
    EXPECT_EQ(u[0].name, "aligned_alloc");
    EXPECT_EQ(u[1].name, "malloc");
}

TEST(Elf, ExecutableWithoutAllocatorAndItsInterpreter)
{
    ElfScan scan = scan_elf("/proc/self/exe");
    EXPECT_EQ(scan.error, "");
    EXPECT_TRUE(scan.symbols.empty()); // imports malloc, does not define it
    EXPECT_NE(scan.interpreter.find("ld-linux"), std::string::npos) << scan.interpreter;
}

TEST(Elf, NotAnElfFile)
{
    EXPECT_NE(scan_elf("/etc/hostname").error, "");
    EXPECT_NE(scan_elf("/nonexistent").error, "");
}

TEST(Proc, OwnMappingsIncludeLibc)
{
    auto maps = executable_mappings(getpid());
    char want[PATH_MAX];
    ASSERT_NE(realpath(own_libc().c_str(), want), nullptr);
    EXPECT_TRUE(std::any_of(maps.begin(), maps.end(), [&](const MappedFile& m) {
        char got[PATH_MAX];
        return realpath(m.host.c_str(), got) && std::string(got) == want && !m.deleted;
    }));
    EXPECT_EQ(path_in_process(42, "/lib/x.so"), "/proc/42/root/lib/x.so");
    EXPECT_TRUE(process_exists(getpid()));
    EXPECT_FALSE(process_exists(999999999));
}

// A mapped file is opened once, and every later look goes to that inode:
// one whose name leads elsewhere by the time it is opened (a target swapping
// directories under a root tracer) is reached through map_files, never
// through its new name.
TEST(Proc, MappedFileIsTheInodeMappedNotWhatItsNameLeadsToNow)
{
    memscope_test::TempDir dir;
    const std::string name = dir / "d/lib.so";
    auto make = [&](const std::string& path, char fill) {
        int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
        std::string page(4096, fill);
        EXPECT_EQ(write(fd, page.data(), page.size()), 4096);
        close(fd);
    };
    ASSERT_EQ(mkdir((dir / "d").c_str(), 0755), 0);
    make(name, 'a');
    int fd = open(name.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    struct stat mapped{};
    ASSERT_EQ(fstat(fd, &mapped), 0);
    void* at = mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
    close(fd);
    ASSERT_NE(at, MAP_FAILED);
    // The maps line as read, then the swap before the file is opened.
    char range[64], dev[32];
    std::snprintf(range, sizeof range, "%lx-%lx", reinterpret_cast<unsigned long>(at),
                  reinterpret_cast<unsigned long>(at) + 4096);
    std::snprintf(dev, sizeof dev, "%02x:%02x", major(mapped.st_dev), minor(mapped.st_dev));
    ASSERT_EQ(rename((dir / "d").c_str(), (dir / "moved").c_str()), 0);
    ASSERT_EQ(mkdir((dir / "d").c_str(), 0755), 0);
    make(name, 'b');
    MappedFile f = mapped_file(getpid(), range, dev, mapped.st_ino, name);
    EXPECT_EQ(f.path, name);
    EXPECT_FALSE(f.deleted);
    EXPECT_EQ(f.named, path_in_process(getpid(), name));
    // map_files opens only with CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE.
    const int probe = open(("/proc/self/map_files/" + std::string(range)).c_str(), O_RDONLY);
    if (probe >= 0)
        close(probe);
    if (probe < 0) {
        EXPECT_EQ(f.host, "");
        EXPECT_NE(f.why.find("CAP_CHECKPOINT_RESTORE"), std::string::npos) << f.why;
    } else {
        ASSERT_NE(f.host, "") << f.why;
        EXPECT_EQ(f.ino, mapped.st_ino);
        ASSERT_EQ(unlink((dir / "moved/lib.so").c_str()), 0); // gone from every name now
        struct stat st{};
        ASSERT_EQ(stat(f.host.c_str(), &st), 0);
        EXPECT_EQ(st.st_ino, mapped.st_ino);
        char byte = 0;
        int again = open(f.host.c_str(), O_RDONLY);
        ASSERT_GE(again, 0);
        EXPECT_EQ(read(again, &byte, 1), 1);
        close(again);
        EXPECT_EQ(byte, 'a');
    }
    munmap(at, 4096);
}
