#include "unwind_table.hpp"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwelf.h>
#include <gelf.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>

#include "safe_files.hpp"

namespace memscope {

namespace {

constexpr int kRegRbp = 6, kRegRsp = 7, kRegRa = 16; // DWARF's x86-64 numbering

// A pointer as .eh_frame encodes it (DW_EH_PE_*): `field_vaddr` is where
// the field itself is loaded, for pc-relative ones.
std::optional<std::uint64_t> read_encoded(const std::uint8_t*& p, const std::uint8_t* end, std::uint8_t enc,
                                          std::uint64_t field_vaddr)
{
    if (enc == DW_EH_PE_omit)
        return std::nullopt;
    std::uint64_t v = 0;
    auto fixed = [&](std::size_t n, bool is_signed) -> bool {
        if (static_cast<std::size_t>(end - p) < n)
            return false;
        std::uint64_t u = 0;
        std::memcpy(&u, p, n); // little-endian host and file (x86-64 only)
        if (is_signed && n < 8 && (u >> (8 * n - 1)) & 1)
            u |= ~0ULL << (8 * n);
        v = u;
        p += n;
        return true;
    };
    auto leb = [&](bool is_signed) -> bool {
        std::uint64_t u = 0;
        unsigned shift = 0;
        std::uint8_t b = 0;
        do {
            if (p >= end || shift >= 64)
                return false;
            b = *p++;
            u |= static_cast<std::uint64_t>(b & 0x7f) << shift;
            shift += 7;
        } while (b & 0x80);
        if (is_signed && shift < 64 && (b & 0x40))
            u |= ~0ULL << shift;
        v = u;
        return true;
    };
    bool ok = false;
    switch (enc & 0x0f) {
    case DW_EH_PE_absptr: ok = fixed(8, false); break;
    case DW_EH_PE_uleb128: ok = leb(false); break;
    case DW_EH_PE_udata2: ok = fixed(2, false); break;
    case DW_EH_PE_udata4: ok = fixed(4, false); break;
    case DW_EH_PE_udata8: ok = fixed(8, false); break;
    case DW_EH_PE_sleb128: ok = leb(true); break;
    case DW_EH_PE_sdata2: ok = fixed(2, true); break;
    case DW_EH_PE_sdata4: ok = fixed(4, true); break;
    case DW_EH_PE_sdata8: ok = fixed(8, true); break;
    default: return std::nullopt;
    }
    if (!ok)
        return std::nullopt;
    switch (enc & 0x70) {
    case DW_EH_PE_absptr: return v;
    case DW_EH_PE_pcrel: return v + field_vaddr;
    default: return std::nullopt; // datarel, textrel, funcrel, aligned: not used for FDE ranges
    }
}

// The FDE pointer encoding a CIE's augmentation names ('R'); absptr without.
std::uint8_t fde_encoding(const Dwarf_CIE& cie)
{
    const char* aug = cie.augmentation ? cie.augmentation : "";
    if (aug[0] != 'z')
        return DW_EH_PE_absptr;
    const std::uint8_t* p = cie.augmentation_data;
    const std::uint8_t* end = p + cie.augmentation_data_size;
    for (const char* a = aug + 1; *a && p < end; ++a) {
        switch (*a) {
        case 'R': return *p;
        case 'L': ++p; break;
        case 'P': {
            const std::uint8_t enc = *p++;
            if ((enc & 0x70) == DW_EH_PE_aligned || !read_encoded(p, end, enc & 0x7f, 0))
                return DW_EH_PE_omit;
            break;
        }
        case 'S': case 'B': case 'G': break;
        default: return DW_EH_PE_omit; // an augmentation we cannot step over
        }
    }
    return DW_EH_PE_absptr;
}

struct Range {
    std::uint64_t lo, hi;
};

// Every FDE's [start, end) in a CFI section, from its entries.
std::vector<Range> fde_ranges(Elf* elf, Elf_Scn* scn, bool eh, std::uint64_t section_vaddr)
{
    std::vector<Range> out;
    Elf_Data* data = elf_getdata(scn, nullptr);
    if (!data || !data->d_buf)
        return out;
    const unsigned char* ident = reinterpret_cast<const unsigned char*>(elf_getident(elf, nullptr));
    std::map<Dwarf_Off, std::uint8_t> encodings; // by CIE offset
    Dwarf_Off offset = 0;
    for (std::size_t guard = 0; guard < (1u << 24); ++guard) {
        Dwarf_CFI_Entry entry;
        Dwarf_Off next = 0;
        if (dwarf_next_cfi(ident, data, eh, offset, &next, &entry) != 0 || next <= offset)
            break;
        if (dwarf_cfi_cie_p(&entry)) {
            encodings[offset] = fde_encoding(entry.cie);
        } else {
            auto cie = encodings.find(entry.fde.CIE_pointer);
            std::uint8_t enc = DW_EH_PE_absptr;
            if (cie != encodings.end()) {
                enc = cie->second;
            } else if (eh) {
                // A CIE after its FDE: read it where the FDE points.
                Dwarf_CFI_Entry c;
                Dwarf_Off after = 0;
                if (dwarf_next_cfi(ident, data, eh, entry.fde.CIE_pointer, &after, &c) != 0 || !dwarf_cfi_cie_p(&c))
                    enc = DW_EH_PE_omit;
                else
                    enc = encodings[entry.fde.CIE_pointer] = fde_encoding(c.cie);
            }
            if (enc != DW_EH_PE_omit) {
                const auto* p = entry.fde.start;
                const auto* base = static_cast<const std::uint8_t*>(data->d_buf);
                auto lo = read_encoded(p, entry.fde.end, enc, section_vaddr + static_cast<std::uint64_t>(p - base));
                auto len = read_encoded(p, entry.fde.end, enc & 0x0f, 0);
                if (lo && len && *len > 0 && *lo + *len > *lo)
                    out.push_back({*lo, *lo + *len});
            }
        }
        offset = next;
    }
    return out;
}

// One CFI row as a BPF rule.
ms_unwind_row classify(Dwarf_Frame* frame, bool signal, UnwindTable& t)
{
    ms_unwind_row row{};
    row.kind = MS_UNWIND_INVALID;
    row.rbp_off = 0;
    Dwarf_Op mem[3];
    Dwarf_Op* ops = nullptr;
    std::size_t n = 0;
    if (signal) {
        row.kind = MS_UNWIND_SIGNAL;
        return row;
    }
    // The return address: undefined at a stack's real root.
    if (dwarf_frame_register(frame, kRegRa, mem, &ops, &n) == 0 && n == 0 && ops == mem) {
        row.kind = MS_UNWIND_STOP;
        return row;
    }
    if (dwarf_frame_cfa(frame, &ops, &n) != 0 || n == 0) {
        ++t.unsupported;
        return row;
    }
    int reg = -1;
    std::int64_t off = 0;
    if (n == 1 && ops[0].atom == DW_OP_bregx) {
        reg = static_cast<int>(ops[0].number);
        off = static_cast<std::int64_t>(ops[0].number2);
    } else if (n == 1 && ops[0].atom >= DW_OP_breg0 && ops[0].atom <= DW_OP_breg31) {
        reg = ops[0].atom - DW_OP_breg0;
        off = static_cast<std::int64_t>(ops[0].number);
    } else if (n == 9 && ops[0].atom == DW_OP_breg7 && ops[0].number == 8 && ops[1].atom == DW_OP_breg16 &&
               ops[1].number == 0 && ops[2].atom == DW_OP_lit15 && ops[3].atom == DW_OP_and &&
               (ops[4].atom == DW_OP_lit11 || ops[4].atom == DW_OP_lit10) && ops[5].atom == DW_OP_ge &&
               ops[6].atom == DW_OP_lit3 && ops[7].atom == DW_OP_shl && ops[8].atom == DW_OP_plus) {
        // The PLT's rule: rsp + 8, and 8 more past the push in each entry.
        row.kind = MS_UNWIND_PLT;
        row.cfa_off = static_cast<std::uint16_t>(ops[4].atom - DW_OP_lit0);
        return row;
    }
    if ((reg != kRegRsp && reg != kRegRbp) || off < 8 || off > 0xffff) {
        ++t.unsupported;
        return row;
    }
    row.kind = reg == kRegRsp ? MS_UNWIND_CFA_RSP : MS_UNWIND_CFA_RBP;
    row.cfa_off = static_cast<std::uint16_t>(off);
    if (reg == kRegRbp)
        ++t.frame_pointer_rows;
    // Where the caller's rbp is.
    if (dwarf_frame_register(frame, kRegRbp, mem, &ops, &n) != 0) {
        row.rbp_off = MS_UNWIND_RBP_UNKNOWN;
    } else if (n == 0) {
        row.rbp_off = ops ? MS_UNWIND_RBP_UNKNOWN : 0; // undefined, or the same value
    } else {
        // offset(N): the CFA, plus N (libdw: call_frame_cfa, plus_uconst N).
        std::int64_t at = 0;
        bool ok = ops[0].atom == DW_OP_call_frame_cfa;
        if (ok && n == 2) {
            ok = ops[1].atom == DW_OP_plus_uconst;
            at = static_cast<std::int64_t>(ops[1].number);
        } else if (ok && n == 3) {
            ok = ops[1].atom == DW_OP_consts && ops[2].atom == DW_OP_plus;
            at = static_cast<std::int64_t>(ops[1].number);
        } else {
            ok = ok && n == 1;
        }
        ok = ok && at % 8 == 0 && at / 8 > MS_UNWIND_RBP_UNKNOWN && at / 8 <= 127 && at != 0;
        row.rbp_off = ok ? static_cast<std::int8_t>(at / 8) : MS_UNWIND_RBP_UNKNOWN;
    }
    return row;
}

bool same_rule(const ms_unwind_row& a, const ms_unwind_row& b)
{
    return a.kind == b.kind && a.cfa_off == b.cfa_off && a.rbp_off == b.rbp_off;
}

// Rows at link-time addresses `addrs` as rows at file offsets, through the
// executable segments, sorted (stable by address); one row per pc, a
// function's first rule winning over the previous one's end.
std::vector<ms_unwind_row> by_file_offset(Elf* elf, const std::vector<ms_unwind_row>& rows,
                                          const std::vector<std::uint64_t>& addrs)
{
    std::vector<ms_unwind_row> kept;
    std::size_t nph = 0;
    elf_getphdrnum(elf, &nph);
    std::vector<GElf_Phdr> exec;
    for (std::size_t i = 0; i < nph; ++i) {
        GElf_Phdr ph;
        if (gelf_getphdr(elf, static_cast<int>(i), &ph) && ph.p_type == PT_LOAD && (ph.p_flags & PF_X))
            exec.push_back(ph);
    }
    std::vector<std::pair<std::uint64_t, std::size_t>> order; // (file offset, index): stable by address
    for (std::size_t i = 0; i < rows.size(); ++i)
        for (const auto& ph : exec)
            if (addrs[i] >= ph.p_vaddr && addrs[i] <= ph.p_vaddr + ph.p_filesz) {
                const std::uint64_t off = addrs[i] - ph.p_vaddr + ph.p_offset;
                if (off <= 0xffffffffULL)
                    order.push_back({off, i});
                break;
            }
    std::stable_sort(order.begin(), order.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (std::size_t k = 0; k < order.size(); ++k) {
        ms_unwind_row row = rows[order[k].second];
        row.pc = static_cast<std::uint32_t>(order[k].first);
        // At one pc: a function's first rule wins over the previous one's end.
        if (!kept.empty() && kept.back().pc == row.pc) {
            if (row.kind != MS_UNWIND_INVALID)
                kept.back() = row;
            continue;
        }
        kept.push_back(row);
    }
    return kept;
}

} // namespace

bool build_unwind_table(Elf* elf, UnwindTable& out, std::string& why)
{
    out = {};
    GElf_Ehdr ehdr;
    if (!elf || elf_kind(elf) != ELF_K_ELF || !gelf_getehdr(elf, &ehdr)) {
        why = "not an ELF file";
        return false;
    }
    if (ehdr.e_machine != EM_X86_64 || ehdr.e_ident[EI_CLASS] != ELFCLASS64 || ehdr.e_ident[EI_DATA] != ELFDATA2LSB) {
        why = "not x86-64 (unwind tables are built for x86-64 only)";
        return false;
    }
    std::size_t shstrndx = 0;
    if (elf_getshdrstrndx(elf, &shstrndx) != 0) {
        why = "no section names";
        return false;
    }
    Elf_Scn* eh = nullptr;
    Elf_Scn* debug = nullptr;
    for (Elf_Scn* scn = nullptr; (scn = elf_nextscn(elf, scn));) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh) || sh.sh_type == SHT_NOBITS)
            continue;
        const char* name = elf_strptr(elf, shstrndx, sh.sh_name);
        if (!name)
            continue;
        if (std::strcmp(name, ".eh_frame") == 0 && sh.sh_size > 0)
            eh = scn;
        else if (std::strcmp(name, ".debug_frame") == 0 && sh.sh_size > 0)
            debug = scn;
    }
    Elf_Scn* scn = eh ? eh : debug;
    if (!scn) {
        why = "no .eh_frame or .debug_frame";
        return false;
    }
    GElf_Shdr sh;
    gelf_getshdr(scn, &sh);
    if (!eh && (sh.sh_flags & SHF_COMPRESSED)) {
        // Inflated into memory of the size it claims: a bounded claim only.
        GElf_Chdr ch;
        if (!gelf_getchdr(scn, &ch) || ch.ch_size > kMaxInflatedBytes) {
            why = ".debug_frame would inflate past " + std::to_string(kMaxInflatedBytes >> 20) + " MiB";
            return false;
        }
        if (elf_compress(scn, 0, 0) < 0) {
            why = ".debug_frame cannot be decompressed";
            return false;
        }
    }
    out.source = eh ? ".eh_frame" : ".debug_frame";
    out.section_bytes = sh.sh_size;
    std::vector<Range> ranges = fde_ranges(elf, scn, eh != nullptr, sh.sh_addr);
    Dwarf* dwarf = nullptr;
    Dwarf_CFI* cfi = nullptr;
    if (eh) {
        cfi = dwarf_getcfi_elf(elf);
    } else if ((dwarf = dwarf_begin_elf(elf, DWARF_C_READ, nullptr))) {
        cfi = dwarf_getcfi(dwarf);
    }
    if (!cfi) {
        if (dwarf)
            dwarf_end(dwarf);
        why = out.source + " cannot be read";
        return false;
    }
    // Rows in link-time addresses first.
    std::vector<ms_unwind_row> rows;
    std::vector<std::uint64_t> addrs;
    auto emit = [&](std::uint64_t at, const ms_unwind_row& r) {
        addrs.push_back(at);
        rows.push_back(r);
    };
    std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.lo < b.lo; });
    const ms_unwind_row gap{0, 0, MS_UNWIND_INVALID, 0};
    for (const Range& r : ranges) {
        ++out.functions;
        std::uint64_t addr = r.lo;
        for (std::size_t steps = 0; addr < r.hi && steps < (1u << 20); ++steps) {
            Dwarf_Frame* frame = nullptr;
            if (dwarf_cfi_addrframe(cfi, addr, &frame) != 0 || !frame)
                break;
            Dwarf_Addr start = 0, end = 0;
            bool signal = false;
            dwarf_frame_info(frame, &start, &end, &signal);
            emit(addr, classify(frame, signal, out));
            std::free(frame);
            if (end <= addr)
                break;
            addr = std::min<std::uint64_t>(end, r.hi);
        }
        emit(r.hi, gap); // until the next function's rules, if any
    }
    if (eh)
        dwarf_cfi_end(cfi); // .debug_frame's belongs to its Dwarf
    if (dwarf)
        dwarf_end(dwarf);
    out.rows = by_file_offset(elf, rows, addrs);
    // One row per change of rule.
    out.rows.erase(std::unique(out.rows.begin(), out.rows.end(), same_rule), out.rows.end());
    if (out.rows.empty()) {
        why = out.source + " has no rules for this file's code";
        return false;
    }
    return true;
}

UnwindFile::UnwindFile(const std::string& path)
{
    fd_ = open_untrusted(path, {.max_bytes = kMaxElfBytes}, why_);
    if (fd_ < 0)
        return;
    elf_version(EV_CURRENT);
    elf_ = elf_begin(fd_, ELF_C_READ_MMAP, nullptr);
}

UnwindFile::~UnwindFile()
{
    if (elf_)
        elf_end(elf_);
    if (fd_ >= 0)
        close(fd_);
}

std::string UnwindFile::build_id() const
{
    const void* bits = nullptr;
    const ssize_t n = elf_ ? dwelf_elf_gnu_build_id(elf_, &bits) : -1;
    return n > 0 && bits ? std::string(static_cast<const char*>(bits), static_cast<std::size_t>(n)) : std::string();
}

bool UnwindFile::build(UnwindTable& out, std::string& why) const
{
    if (fd_ < 0) {
        why = why_;
        return false;
    }
    return build_unwind_table(elf_, out, why);
}

bool build_unwind_table(const std::string& path, UnwindTable& out, std::string& why)
{
    return UnwindFile(path).build(out, why);
}

const ms_unwind_row* find_unwind_row(const std::vector<ms_unwind_row>& rows, std::uint64_t pc)
{
    auto it = std::upper_bound(rows.begin(), rows.end(), pc,
                               [](std::uint64_t v, const ms_unwind_row& r) { return v < r.pc; });
    return it == rows.begin() ? nullptr : &*(it - 1);
}

} // namespace memscope
