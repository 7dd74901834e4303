#include <gtest/gtest.h>

#include <dlfcn.h>
#include <link.h>
#include <malloc.h>

#include <algorithm>
#include <climits>
#include <cstdlib>

#include "elf_symbols.hpp"
#include "proc.hpp"

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
