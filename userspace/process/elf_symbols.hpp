// Finding allocator functions in an ELF file (executable or library).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "allocator_table.hpp"

typedef struct Elf Elf;

namespace memscope {

struct AllocatorSymbol {
    std::string name;
    ms_alloc_kind kind;
    std::uint64_t vaddr = 0;
    std::uint64_t file_offset = 0; // of the entry
    std::uint64_t size = 0;        // st_size: the function's length
};

struct LoadSegment {
    std::uint64_t vaddr = 0, offset = 0, filesz = 0;
};

// The tracker entry points a module carries (probes/include/memscope/probe_abi.h).
struct TrackerNote {
    std::uint64_t site_vaddr = 0, site_offset = 0;
    std::uint64_t semaphore_vaddr = 0, semaphore_offset = 0;
};

struct ElfScan {
    std::string error; // non-empty when the file could not be read as ELF
    std::vector<AllocatorSymbol> symbols; // defined allocator functions, one per name
    std::string interpreter;              // PT_INTERP, empty for static binaries
    std::vector<LoadSegment> loads;       // PT_LOAD segments
    std::optional<TrackerNote> tracker;   // from the .note.memscope note
    std::string tracker_error;            // a memscope note that cannot be used, and why
    // GOT slots (link-time addresses) of the allocator functions the file
    // calls through its PLT or GOT (JUMP_SLOT, GLOB_DAT relocations): name by slot.
    std::map<std::uint64_t, std::string> allocator_slots;
    // Entry points of a known allocator under names not probed: jemalloc,
    // tcmalloc or mimalloc built with a prefix (Rust's `_rjem_mallocx`, say).
    // Their calls are not counted: the report says so, the gate refuses it.
    std::vector<std::string> unprobed_allocator;
    // A static program with an allocator built in that no symbol names (a
    // stripped one), found by the allocator's own messages: which one
    // ("glibc's malloc"), else empty. Its calls cannot be counted either.
    std::string nameless_allocator;
};

// Scan .dynsym and .symtab for defined allocator functions, and the notes
// for tracker entry points.
ElfScan scan_elf(const std::string& path);

// File offset of a link-time address, if a PT_LOAD segment holds it in the file.
std::optional<std::uint64_t> vaddr_to_offset(const std::vector<LoadSegment>& loads, std::uint64_t vaddr);

// What the compressed sections of an ELF file (SHF_COMPRESSED, GNU .zdebug)
// say they inflate to, summed (saturating). libelf and libdw allocate that
// much when a section is decompressed: a file of a few KiB may claim 64 GiB.
// Apart: the DWARF sections' (.debug*, .zdebug*) and the others' (a
// compressed .symtab, MiniDebugInfo), each summed, saturating.
struct Inflation {
    std::uint64_t debug = 0, other = 0;
    std::uint64_t total() const { return debug > UINT64_MAX - other ? UINT64_MAX : debug + other; }
};
Inflation inflated_size(Elf* elf);
Inflation inflated_size(int fd);

// One probe per address: aliases collapse to the first name in the table.
std::vector<AllocatorSymbol> unique_by_address(const std::vector<AllocatorSymbol>& symbols);

} // namespace memscope
