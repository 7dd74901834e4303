// Stacks into names: a process's mappings, each file's symbols (elfutils'
// libdwfl: .symtab, .dynsym, separate debug files by build-id), C++ and Rust
// names demangled, perf JIT maps for anonymous code. Files are cached by
// build-id, so every process mapping one library shares its lookups.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "events.hpp"
#include "model.hpp"
#include "proc.hpp"

namespace memscope {

// Demangle a C++ or Rust (legacy) symbol; other names come back as they are.
std::string demangle(const std::string& name);

// The frame where a stack really starts (main, a thread's start routine's
// caller): nothing past it is the program's.
bool is_root_symbol(const std::string& demangled);

class Symbolizer {
public:
    Symbolizer();
    ~Symbolizer();
    Symbolizer(const Symbolizer&) = delete;
    Symbolizer& operator=(const Symbolizer&) = delete;

    // A file processes may map (held open; see MappedFile): read now, for
    // stacks of processes that are gone by the time they are symbolized.
    void know_file(const MappedFile& file);

    // Read files through `other`'s cache (and it through ours from now on):
    // the processes of one command map the same libraries.
    void share_modules(const Symbolizer& other);

    // Read the process's mappings now. Call it at attach, when its libraries
    // change, and before its exit if possible: afterwards the last mappings
    // read are used.
    void refresh(int pid);

    // Frames of a raw stack, innermost first (return addresses). The stack
    // ends at its root frame, or at the first frame that is no return address
    // (a frame-pointer walk through code built without frame pointers); then
    // `truncated` is set, as when no root was reached.
    // `cut`, when the stack was cut at a frame that is no return address:
    // what the last frame kept was ("not a call's return address after
    // MODULE").
    std::vector<Frame> resolve(int pid, const std::vector<RawFrame>& frames, bool& truncated,
                               std::string* cut = nullptr);

    // Files a process named that were not read, and why (a FIFO where a perf
    // map or a debug file should be, a file too large...): one line each,
    // shared like the modules.
    const std::vector<std::string>& skipped() const { return *skipped_; }

private:
    struct Module;
    struct Mapping {
        std::uint64_t start = 0, end = 0, pgoff = 0;
        std::string path; // as the process sees it; empty for anonymous memory
        Module* module = nullptr;
    };
    struct JitSymbol {
        std::uint64_t start = 0, size = 0;
        std::string name;
    };
    struct Process {
        std::vector<Mapping> maps; // executable mappings, by start
        bool jit_read = false;
        std::vector<JitSymbol> jit; // /tmp/perf-PID.map, by start
    };

    Module* open_module(const MappedFile& file);
    struct Known {
        std::string shown;
        Module* module = nullptr;
    };
    const Known* known(std::uint32_t dev, std::uint64_t ino) const;
    const Mapping* mapping_at(Process& p, std::uint64_t addr) const;
    const JitSymbol* jit_at(int pid, Process& p, std::uint64_t addr);

    std::map<int, Process> processes_;
    std::map<std::pair<std::uint32_t, std::uint64_t>, Known> files_; // by (device, inode)
    // By build-id (or path, device, inode and mtime when the file has none);
    // shared by the symbolizers of one run's processes.
    using Modules = std::unordered_map<std::string, std::unique_ptr<Module>>;
    std::shared_ptr<Modules> modules_;
    std::shared_ptr<std::vector<std::string>> skipped_;
};

} // namespace memscope
