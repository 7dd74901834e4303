// Where to put a function's probe: the cheapest correct site, chosen by
// decoding the function's own instructions (Zydis). Under Linux 6.18 a
// page-local 5-byte NOP is rewritten into a trampoline call (cheapest),
// push/jmp/jcc/call/nop are emulated, and anything else is single-stepped
// (~9 us a hit here).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "elf_symbols.hpp"

#include "memscope.h"

namespace memscope {

enum class SiteCost { nop5_rewritten, emulated, single_stepped, undecodable };

const char* site_cost_name(SiteCost cost);

struct ProbeSite {
    std::uint64_t offset = 0; // from the function's entry
    SiteCost cost = SiteCost::undecodable;
    std::string instruction;  // mnemonic at the site
    std::string reason;       // why here
};

// How the kernel will handle a probe on the instruction at `code` (link-time
// address `vaddr`, for the page check).
SiteCost classify_site(const std::uint8_t* code, std::size_t len, std::uint64_t vaddr);

// The site for a probe of `kind` on the function whose `size` bytes start at
// `code` (link-time address `vaddr`). A later site is taken only when it is
// cheaper and provably equivalent:
//  - every skipped instruction leaves the argument registers and rsp alone
//    (so a return probe there still finds the return address at [rsp]) and
//    does not branch, except free's NULL test (`test rdi,rdi; je`), whose
//    taken path is free(NULL), which is not counted anyway;
//  - nothing in the function branches into the skipped instructions or to the
//    site itself (the site would be passed twice).
// Anything unsure keeps the entry.
ProbeSite choose_probe_site(ms_alloc_kind kind, const std::uint8_t* code, std::size_t size, std::uint64_t vaddr);

// Reads `n` bytes of the file at link-time address `vaddr` (fewer or none
// where the file has none).
using CodeReader = std::function<std::vector<std::uint8_t>(std::uint64_t vaddr, std::size_t n)>;

// The allocator functions of `symbols` worth a probe: not those that only
// jump on to another (a tail call, straight or through the PLT: jemalloc's
// operator delete[] is `jmp free@plt`). The call is counted where it lands,
// once, for one probe hit. `slots`: the file's GOT slots of allocator
// functions (ElfScan::allocator_slots).
std::vector<AllocatorSymbol> without_forwarders(const std::vector<AllocatorSymbol>& symbols,
                                                const std::map<std::uint64_t, std::string>& slots,
                                                const CodeReader& read);

// Whether the `len` bytes that end at a would-be return address end with a
// call instruction (direct, or through a register or memory): a frame-pointer
// walk through code built without frame pointers yields other values.
bool ends_with_call(const std::uint8_t* before, std::size_t len);

} // namespace memscope
