// Unwind rules for code built without frame pointers (x86-64 only): each
// file's .eh_frame (or .debug_frame where that is all it has) turned into
// the compact, sorted table of ms_unwind_row that the BPF stack walker
// searches. Built once per file (by build-id) from libdw's CFI interpreter.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <libelf.h>

#include "memscope.h"

namespace memscope {

struct UnwindTable {
    std::vector<ms_unwind_row> rows; // by pc (file offsets), each holds until the next
    std::string source;              // ".eh_frame" or ".debug_frame"
    std::uint64_t section_bytes = 0; // its size
    std::size_t functions = 0;       // FDEs read
    std::size_t unsupported = 0;     // rows whose rule fits no kind (they end a stack)
    std::size_t frame_pointer_rows = 0; // rows with CFA = rbp + off (code that keeps rbp)
};

// From an ELF file open for reading. False, and a few words in `why`, when
// it is not x86-64 ELF or carries no unwind information at all.
bool build_unwind_table(Elf* elf, UnwindTable& out, std::string& why);

// A file named on a target's behalf, opened once (as untrusted) for its
// build-id and, where no copy of it was read before, its table.
class UnwindFile {
public:
    explicit UnwindFile(const std::string& path);
    ~UnwindFile();
    UnwindFile(const UnwindFile&) = delete;
    UnwindFile& operator=(const UnwindFile&) = delete;
    // Its GNU build-id (the bytes), empty when it has none or cannot be
    // read: copies of one library (a container's, a bind mount) share a table.
    std::string build_id() const;
    bool build(UnwindTable& out, std::string& why) const;

private:
    int fd_ = -1;
    Elf* elf_ = nullptr;
    std::string why_; // why it could not be opened
};

// The same for a file named on a target's behalf, in one call.
bool build_unwind_table(const std::string& path, UnwindTable& out, std::string& why);

// The rule covering file offset `pc`, as the BPF side finds it; nullptr
// before the first row.
const ms_unwind_row* find_unwind_row(const std::vector<ms_unwind_row>& rows, std::uint64_t pc);

} // namespace memscope
