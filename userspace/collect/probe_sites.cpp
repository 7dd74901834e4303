#include "probe_sites.hpp"

#include "allocator_table.hpp"

#include <Zydis/Zydis.h>

#include <algorithm>
#include <optional>
#include <cstring>
#include <vector>

namespace memscope {

namespace {

struct Decoded {
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
};

bool decode(const std::uint8_t* code, std::size_t len, Decoded& out)
{
    static ZydisDecoder decoder = [] {
        ZydisDecoder d;
        ZydisDecoderInit(&d, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
        return d;
    }();
    return ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder, code, len, &out.insn, out.ops));
}

bool is_branch(const ZydisDecodedInstruction& i)
{
    return i.meta.category == ZYDIS_CATEGORY_COND_BR || i.meta.category == ZYDIS_CATEGORY_UNCOND_BR ||
           i.meta.category == ZYDIS_CATEGORY_CALL || i.meta.category == ZYDIS_CATEGORY_RET ||
           i.meta.category == ZYDIS_CATEGORY_SYSTEM || i.meta.category == ZYDIS_CATEGORY_INTERRUPT;
}

// The registers a probe of this kind reads its arguments from.
std::vector<ZydisRegister> argument_registers(ms_alloc_kind kind)
{
    switch (kind) {
    case MS_KIND_MALLOC:
    case MS_KIND_FREE: return {ZYDIS_REGISTER_RDI};
    case MS_KIND_CALLOC:
    case MS_KIND_REALLOC:
    case MS_KIND_MEMALIGN: return {ZYDIS_REGISTER_RDI, ZYDIS_REGISTER_RSI};
    case MS_KIND_REALLOCARRAY:
    case MS_KIND_POSIX_MEMALIGN: return {ZYDIS_REGISTER_RDI, ZYDIS_REGISTER_RSI, ZYDIS_REGISTER_RDX};
    default: return {};
    }
}

// Writes rsp or an argument register (hidden operands included: push, call).
bool clobbers(const Decoded& d, const std::vector<ZydisRegister>& args)
{
    for (int i = 0; i < d.insn.operand_count; ++i) {
        const ZydisDecodedOperand& op = d.ops[i];
        if (op.type != ZYDIS_OPERAND_TYPE_REGISTER || !(op.actions & ZYDIS_OPERAND_ACTION_MASK_WRITE))
            continue;
        ZydisRegister r = ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, op.reg.value);
        if (r == ZYDIS_REGISTER_RSP)
            return true;
        for (ZydisRegister a : args)
            if (r == a)
                return true;
    }
    return false;
}

bool tests_rdi_against_itself(const Decoded& d)
{
    return d.insn.mnemonic == ZYDIS_MNEMONIC_TEST && d.insn.operand_count_visible == 2 &&
           d.ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER && d.ops[1].type == ZYDIS_OPERAND_TYPE_REGISTER &&
           d.ops[0].reg.value == ZYDIS_REGISTER_RDI && d.ops[1].reg.value == ZYDIS_REGISTER_RDI;
}

// Every branch target inside the function, as offsets from its entry.
bool branch_targets(const std::uint8_t* code, std::size_t size, std::uint64_t vaddr, std::vector<std::uint64_t>& out)
{
    std::size_t at = 0;
    while (at < size) {
        Decoded d;
        if (!decode(code + at, size - at, d))
            return false; // not plain code from end to end: unsure
        if (is_branch(d.insn)) {
            for (int i = 0; i < d.insn.operand_count_visible; ++i) {
                ZyanU64 target = 0;
                if ((d.ops[i].type == ZYDIS_OPERAND_TYPE_IMMEDIATE && d.ops[i].imm.is_relative) &&
                    ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&d.insn, &d.ops[i], vaddr + at, &target)) &&
                    target >= vaddr && target < vaddr + size)
                    out.push_back(target - vaddr);
            }
        }
        at += d.insn.length;
    }
    return true;
}

std::string mnemonic(const std::uint8_t* code, std::size_t len)
{
    Decoded d;
    if (!decode(code, len, d))
        return "?";
    return ZydisMnemonicGetString(d.insn.mnemonic);
}

} // namespace

const char* site_cost_name(SiteCost cost)
{
    switch (cost) {
    case SiteCost::nop5_rewritten: return "5-byte nop, rewritten into a call";
    case SiteCost::emulated: return "emulated";
    case SiteCost::single_stepped: return "single-stepped";
    case SiteCost::undecodable: return "not decodable";
    }
    return "?";
}

SiteCost classify_site(const std::uint8_t* code, std::size_t len, std::uint64_t vaddr)
{
    static const std::uint8_t nop5[] = {0x0f, 0x1f, 0x44, 0x00, 0x00};
    if (len >= 5 && std::memcmp(code, nop5, 5) == 0 && (vaddr & 4095) <= 4096 - 5)
        return SiteCost::nop5_rewritten;
    Decoded d;
    if (!decode(code, len, d))
        return SiteCost::undecodable;
    switch (d.insn.mnemonic) {
    case ZYDIS_MNEMONIC_PUSH:
        // The kernel emulates push of a register, not of memory or an immediate.
        return d.ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER ? SiteCost::emulated : SiteCost::single_stepped;
    case ZYDIS_MNEMONIC_NOP:
        return SiteCost::emulated;
    case ZYDIS_MNEMONIC_JMP:
    case ZYDIS_MNEMONIC_CALL:
        // Relative forms only: indirect ones are single-stepped.
        return d.ops[0].type == ZYDIS_OPERAND_TYPE_IMMEDIATE ? SiteCost::emulated : SiteCost::single_stepped;
    default:
        if (d.insn.meta.category == ZYDIS_CATEGORY_COND_BR && d.insn.mnemonic != ZYDIS_MNEMONIC_JRCXZ &&
            d.insn.mnemonic != ZYDIS_MNEMONIC_JECXZ && d.insn.mnemonic != ZYDIS_MNEMONIC_LOOP)
            return SiteCost::emulated;
        return SiteCost::single_stepped;
    }
}

ProbeSite choose_probe_site(ms_alloc_kind kind, const std::uint8_t* code, std::size_t size, std::uint64_t vaddr)
{
    ProbeSite entry;
    entry.cost = classify_site(code, size, vaddr);
    entry.instruction = mnemonic(code, size);
    entry.reason = "function entry";
    if (entry.cost == SiteCost::nop5_rewritten || entry.cost == SiteCost::emulated || size == 0)
        return entry;

    const auto args = argument_registers(kind);
    // Walk forward over instructions that are safe to skip, to the first
    // cheaper one.
    std::size_t at = 0;
    std::string skipped;
    for (int steps = 0; steps < 8 && at < size; ++steps) {
        Decoded d;
        if (!decode(code + at, size - at, d))
            return entry;
        if (kind == MS_KIND_FREE && at == 0 && tests_rdi_against_itself(d)) {
            // free's NULL test: the taken branch is free(NULL).
            Decoded j;
            std::size_t next = at + d.insn.length;
            if (!decode(code + next, size - next, j) ||
                (j.insn.mnemonic != ZYDIS_MNEMONIC_JZ))
                return entry;
            at = next + j.insn.length;
            skipped = "past the NULL test (free(NULL) is not counted)";
        } else if (is_branch(d.insn) || clobbers(d, args)) {
            return entry;
        } else {
            at += d.insn.length;
            if (skipped.empty())
                skipped = "past instructions that touch neither the arguments nor rsp";
        }
        SiteCost c = classify_site(code + at, size - at, vaddr + at);
        if (c == SiteCost::nop5_rewritten || c == SiteCost::emulated) {
            std::vector<std::uint64_t> targets;
            if (!branch_targets(code, size, vaddr, targets))
                return entry;
            for (auto t : targets)
                if (t > 0 && t <= at)
                    return entry; // something jumps into what we skip, or to the site
            ProbeSite site;
            site.offset = at;
            site.cost = c;
            site.instruction = mnemonic(code + at, size - at);
            site.reason = skipped;
            return site;
        }
    }
    return entry;
}

bool ends_with_call(const std::uint8_t* before, std::size_t len)
{
    // call rel32 is 5 bytes; call through a register or memory 2 to 9 (with
    // prefixes, SIB and displacement). Any decoding that ends exactly here
    // and is a call will do.
    for (std::size_t k = 2; k <= std::min<std::size_t>(len, 9); ++k) {
        Decoded d;
        if (decode(before + len - k, k, d) && d.insn.length == k && d.insn.meta.category == ZYDIS_CATEGORY_CALL)
            return true;
    }
    return false;
}

namespace {

// The first instruction after an optional endbr64, at `vaddr`.
bool first_instruction(const std::vector<std::uint8_t>& code, std::uint64_t vaddr, Decoded& d, std::uint64_t& at)
{
    at = vaddr;
    std::size_t off = 0;
    for (int i = 0; i < 2; ++i) {
        if (off >= code.size() || !decode(code.data() + off, code.size() - off, d))
            return false;
        if (d.insn.mnemonic != ZYDIS_MNEMONIC_ENDBR64)
            return true;
        off += d.insn.length;
        at = vaddr + off;
    }
    return false;
}

// Where an unconditional jmp goes: through an immediate (the target) or
// through [rip+disp] (the slot it loads the target from).
std::optional<std::uint64_t> jump_operand(const Decoded& d, std::uint64_t at, bool through_memory)
{
    if (d.insn.mnemonic != ZYDIS_MNEMONIC_JMP || d.insn.operand_count_visible < 1)
        return std::nullopt;
    const ZydisDecodedOperand& op = d.ops[0];
    const bool fits = through_memory ? op.type == ZYDIS_OPERAND_TYPE_MEMORY && op.mem.base == ZYDIS_REGISTER_RIP
                                     : op.type == ZYDIS_OPERAND_TYPE_IMMEDIATE;
    ZyanU64 address = 0;
    if (!fits || !ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&d.insn, &op, at, &address)))
        return std::nullopt;
    return address;
}

} // namespace

std::vector<AllocatorSymbol> without_forwarders(const std::vector<AllocatorSymbol>& symbols,
                                                const std::map<std::uint64_t, std::string>& slots,
                                                const CodeReader& read)
{
    std::vector<AllocatorSymbol> out;
    for (const auto& sym : symbols) {
        Decoded d;
        std::uint64_t at = 0;
        std::optional<std::uint64_t> target;
        if (first_instruction(read(sym.vaddr, 16), sym.vaddr, d, at))
            target = jump_operand(d, at, false);
        bool forwards = false;
        if (target && *target != sym.vaddr) {
            // To another of them in this file, or to a PLT stub that jumps
            // through an allocator function's GOT slot.
            forwards = std::any_of(symbols.begin(), symbols.end(),
                                   [&](const AllocatorSymbol& o) { return o.vaddr == *target && is_allocator(o.kind); });
            Decoded stub;
            std::uint64_t stub_at = 0;
            if (!forwards && first_instruction(read(*target, 16), *target, stub, stub_at))
                if (auto slot = jump_operand(stub, stub_at, true))
                    forwards = slots.count(*slot) > 0;
        }
        if (!forwards || !is_allocator(sym.kind))
            out.push_back(sym);
    }
    return out;
}

} // namespace memscope
