// Finding allocator functions in an ELF file (executable or library).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "allocator_table.hpp"

namespace memscope {

struct AllocatorSymbol {
    std::string name;
    ms_alloc_kind kind;
    std::uint64_t vaddr = 0;
    std::uint64_t file_offset = 0; // what a uprobe is attached at
};

struct ElfScan {
    std::string error; // non-empty when the file could not be read as ELF
    std::vector<AllocatorSymbol> symbols; // defined allocator functions, one per name
    std::string interpreter;              // PT_INTERP, empty for static binaries
};

// Scan .dynsym and .symtab for defined allocator functions.
ElfScan scan_elf(const std::string& path);

// One probe per address: aliases collapse to the first name in the table.
std::vector<AllocatorSymbol> unique_by_address(const std::vector<AllocatorSymbol>& symbols);

} // namespace memscope
