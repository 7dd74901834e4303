#include "elf_symbols.hpp"
#include "safe_files.hpp"

#include "memscope/probe_abi.h"

#include <fcntl.h>
#include <gelf.h>
#include <lzma.h>
#include <libelf.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <span>

namespace memscope {

namespace {

struct FdCloser {
    int fd;
    ~FdCloser() { if (fd >= 0) close(fd); }
};

struct ElfCloser {
    Elf* elf;
    ~ElfCloser() { if (elf) elf_end(elf); }
};

const AllocatorFunction* lookup(std::string_view name)
{
    using Table = std::span<const AllocatorFunction>;
    for (Table table : {Table(kGlibcAllocator), Table(kAllocatorExtensions), Table(kCxxOperators)})
        for (const auto& f : table)
            if (f.name == name)
                return &f;
    return nullptr;
}

// A known allocator's own entry point under another name: a prefixed build
// (je_mallocx, _rjem_sdallocx, xx_tc_malloc, pre_mi_malloc).
bool unprobed_entry_point(std::string_view name)
{
    for (std::string_view suffix : {"mallocx", "sdallocx", "rallocx", "dallocx", "je_malloc", "jem_malloc",
                                    "tc_malloc", "mi_malloc"})
        if (name.size() > suffix.size() && name.ends_with(suffix))
            return true;
    return false;
}

// The relocations of one RELA section that fill a GOT slot with an
// allocator function's address: how the file calls those through its PLT.
void scan_allocator_slots(Elf* elf, Elf_Scn* scn, const GElf_Shdr& sh, ElfScan& out)
{
    Elf_Data* data = elf_getdata(scn, nullptr);
    Elf_Scn* symtab = elf_getscn(elf, sh.sh_link);
    GElf_Shdr symsh;
    if (!data || sh.sh_entsize == 0 || !symtab || !gelf_getshdr(symtab, &symsh))
        return;
    Elf_Data* syms = elf_getdata(symtab, nullptr);
    if (!syms || symsh.sh_entsize == 0)
        return;
    const size_t count = sh.sh_size / sh.sh_entsize, nsyms = symsh.sh_size / symsh.sh_entsize;
    for (size_t i = 0; i < count && out.allocator_slots.size() < 4096; ++i) {
        GElf_Rela rela;
        if (!gelf_getrela(data, static_cast<int>(i), &rela))
            continue;
        const auto type = GELF_R_TYPE(rela.r_info);
        const auto index = GELF_R_SYM(rela.r_info);
        if ((type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT) || index == 0 || index >= nsyms)
            continue;
        GElf_Sym sym;
        if (!gelf_getsym(syms, static_cast<int>(index), &sym))
            continue;
        const char* name = elf_strptr(elf, symsh.sh_link, sym.st_name);
        if (name && lookup(name))
            out.allocator_slots.emplace(rela.r_offset, name);
    }
}

std::uint64_t read_u64(const unsigned char* p)
{
    std::uint64_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// The memscope note: u64 site, u64 semaphore, u32 ABI version, u32 reserved.
void scan_tracker_note(Elf_Scn* scn, ElfScan& out)
{
    Elf_Data* data = elf_getdata(scn, nullptr);
    if (!data)
        return;
    GElf_Nhdr nh;
    size_t off = 0, name_off = 0, desc_off = 0;
    while ((off = gelf_getnote(data, off, &nh, &name_off, &desc_off)) > 0) {
        const auto* base = static_cast<const unsigned char*>(data->d_buf);
        if (nh.n_type != MEMSCOPE_NOTE_TYPE || nh.n_namesz != sizeof(MEMSCOPE_NOTE_OWNER) ||
            std::memcmp(base + name_off, MEMSCOPE_NOTE_OWNER, sizeof(MEMSCOPE_NOTE_OWNER)) != 0)
            continue;
        if (out.tracker)
            continue; // the linker keeps one copy; a second would be the same
        if (nh.n_descsz < 24) {
            out.tracker_error = "truncated memscope note";
            continue;
        }
        const unsigned char* d = base + desc_off;
        std::uint32_t version;
        std::memcpy(&version, d + 16, sizeof version);
        if (version != MEMSCOPE_PROBE_ABI_VERSION) {
            out.tracker_error = "memscope note of ABI version " + std::to_string(version) +
                                ", this tracer reads version " +
                                std::to_string(MEMSCOPE_PROBE_ABI_VERSION);
            continue;
        }
        TrackerNote note;
        note.site_vaddr = read_u64(d);
        note.semaphore_vaddr = read_u64(d + 8);
        if (note.site_vaddr == 0)
            continue; // the entry points were discarded (--gc-sections): nothing calls them
        // Offsets need the program headers, read before the sections.
        out.tracker = note;
    }
}

// Whether the program asks the loader for libraries (DT_NEEDED).
bool needs_libraries(Elf* elf)
{
    size_t nphdr = 0;
    elf_getphdrnum(elf, &nphdr);
    for (size_t i = 0; i < nphdr; ++i) {
        GElf_Phdr ph;
        if (!gelf_getphdr(elf, static_cast<int>(i), &ph) || ph.p_type != PT_DYNAMIC)
            continue;
        Elf_Data* dyn = elf_getdata_rawchunk(elf, static_cast<int64_t>(ph.p_offset), ph.p_filesz, ELF_T_DYN);
        for (size_t j = 0; dyn && j < ph.p_filesz / sizeof(Elf64_Dyn); ++j) {
            GElf_Dyn d;
            if (!gelf_getdyn(dyn, static_cast<int>(j), &d) || d.d_tag == DT_NULL)
                break;
            if (d.d_tag == DT_NEEDED)
                return true;
        }
    }
    return false;
}

// An allocator built into a static program that no symbol names, by a
// message of its own in the program's read-only data (all of it where the
// linker kept no segment apart for it: -z noseparate-code): glibc's malloc,
// tcmalloc, jemalloc, mimalloc. Empty when none is found. (Not in dynamic
// programs: CPython, say, carries mimalloc unused beside libc's malloc.)
std::string nameless_allocator(Elf* elf)
{
    static constexpr std::pair<std::string_view, const char*> kMarkers[] = {
        {"free(): invalid pointer", "glibc's malloc"},
        {"TCMALLOC_", "tcmalloc"},
        {"<jemalloc>: ", "jemalloc"},
        {"mimalloc: ", "mimalloc"},
    };
    size_t size = 0;
    const char* raw = elf_rawfile(elf, &size);
    size_t nphdr = 0;
    if (!raw || elf_getphdrnum(elf, &nphdr) != 0)
        return {};
    std::vector<GElf_Phdr> loads;
    bool separate = false; // a read-only segment of its own
    for (size_t i = 0; i < nphdr; ++i) {
        GElf_Phdr ph;
        if (gelf_getphdr(elf, static_cast<int>(i), &ph) && ph.p_type == PT_LOAD && ph.p_offset < size) {
            loads.push_back(ph);
            separate |= !(ph.p_flags & PF_X);
        }
    }
    for (const auto& ph : loads) {
        if (separate && (ph.p_flags & PF_X))
            continue;
        const char* from = raw + ph.p_offset;
        const size_t n = std::min<std::uint64_t>(ph.p_filesz, size - ph.p_offset);
        for (const auto& [marker, name] : kMarkers)
            if (memmem(from, n, marker.data(), marker.size()))
                return name;
    }
    return {};
}

} // namespace

namespace {
// What an xz stream inflates to, counted by decoding it (its index may lie)
// into a small buffer, up to `cap` (then cap + 1).
std::uint64_t xz_size(const void* data, std::size_t size, std::uint64_t cap)
{
    lzma_stream z = LZMA_STREAM_INIT;
    if (lzma_stream_decoder(&z, 64 << 20, 0) != LZMA_OK)
        return cap + 1;
    unsigned char out[64 * 1024];
    z.next_in = static_cast<const std::uint8_t*>(data);
    z.avail_in = size;
    std::uint64_t total = 0;
    for (;;) {
        z.next_out = out;
        z.avail_out = sizeof out;
        const lzma_ret r = lzma_code(&z, LZMA_FINISH);
        total += sizeof out - z.avail_out;
        if (total > cap || (r != LZMA_OK && r != LZMA_STREAM_END) || r == LZMA_STREAM_END)
            break;
    }
    lzma_end(&z);
    return std::min(total, cap + 1);
}
} // namespace

Inflation inflated_size(Elf* elf)
{
    Inflation out;
    bool debug = false;
    auto add = [&](std::uint64_t n) {
        std::uint64_t& total = debug ? out.debug : out.other;
        total = n > UINT64_MAX - total ? UINT64_MAX : total + n;
    };
    std::size_t shstrndx = 0;
    const bool named = elf_getshdrstrndx(elf, &shstrndx) == 0;
    for (Elf_Scn* scn = nullptr; (scn = elf_nextscn(elf, scn));) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh) || sh.sh_type == SHT_NOBITS)
            continue;
        const char* name = named ? elf_strptr(elf, shstrndx, sh.sh_name) : nullptr;
        debug = name && (std::strncmp(name, ".debug", 6) == 0 || std::strncmp(name, ".zdebug", 7) == 0);
        if (sh.sh_flags & SHF_COMPRESSED) {
            GElf_Chdr ch;
            if (gelf_getchdr(scn, &ch))
                add(ch.ch_size);
            continue;
        }
        if (name && std::strcmp(name, ".gnu_debugdata") == 0) {
            // MiniDebugInfo: an xz'd symbol table that libdw inflates with
            // no bound; counted here (a symbol table: not "debug").
            // Real ones are a few MiB: past 64 MiB it is not one (and the
            // decoding stops there).
            constexpr std::uint64_t kMaxMiniDebugInfo = 64ULL << 20;
            if (Elf_Data* raw = elf_rawdata(scn, nullptr); raw && raw->d_buf) {
                const std::uint64_t n = xz_size(raw->d_buf, raw->d_size, kMaxMiniDebugInfo);
                add(n > kMaxMiniDebugInfo ? kMaxInflatedBytes + 1 : n);
            }
            continue;
        }
        if (!name || std::strncmp(name, ".zdebug", 7) != 0)
            continue;
        // "ZLIB", then the inflated size, big-endian.
        Elf_Data* raw = elf_rawdata(scn, nullptr);
        if (!raw || raw->d_size < 12 || std::memcmp(raw->d_buf, "ZLIB", 4) != 0)
            continue;
        const auto* b = static_cast<const unsigned char*>(raw->d_buf) + 4;
        std::uint64_t n = 0;
        for (int i = 0; i < 8; ++i)
            n = n << 8 | b[i];
        add(n);
    }
    return out;
}

Inflation inflated_size(int fd)
{
    elf_version(EV_CURRENT);
    Elf* elf = elf_begin(fd, ELF_C_READ_MMAP, nullptr);
    if (!elf)
        return {};
    const Inflation n = inflated_size(elf);
    elf_end(elf);
    return n;
}

std::optional<std::uint64_t> vaddr_to_offset(const std::vector<LoadSegment>& loads, std::uint64_t vaddr)
{
    for (const auto& l : loads)
        if (vaddr >= l.vaddr && vaddr - l.vaddr < l.filesz)
            return vaddr - l.vaddr + l.offset;
    return std::nullopt;
}

namespace {

// Allocator functions defined in one symbol table (by name, first kept),
// and entry points of a known allocator under names not probed.
void scan_symbols(Elf* elf, Elf_Scn* scn, const GElf_Shdr& sh, std::map<std::string, AllocatorSymbol>& found,
                  ElfScan& out)
{
    Elf_Data* data = elf_getdata(scn, nullptr);
    if (!data || sh.sh_entsize == 0)
        return;
    size_t count = sh.sh_size / sh.sh_entsize;
    for (size_t i = 0; i < count; ++i) {
        GElf_Sym sym;
        if (!gelf_getsym(data, static_cast<int>(i), &sym))
            continue;
        if (GELF_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_shndx == SHN_UNDEF ||
            sym.st_shndx >= SHN_LORESERVE || sym.st_value == 0)
            continue;
        int bind = GELF_ST_BIND(sym.st_info);
        if (bind != STB_GLOBAL && bind != STB_WEAK)
            continue;
        const char* name = elf_strptr(elf, sh.sh_link, sym.st_name);
        if (!name)
            continue;
        // Versioned dynamic names come without the @VERSION suffix here.
        const AllocatorFunction* f = lookup(name);
        if (!f && unprobed_entry_point(name) && out.unprobed_allocator.size() < 8 &&
            std::find(out.unprobed_allocator.begin(), out.unprobed_allocator.end(), name) ==
                out.unprobed_allocator.end())
            out.unprobed_allocator.emplace_back(name);
        if (!f || found.count(f->name.data()))
            continue;
        Elf_Scn* target = elf_getscn(elf, sym.st_shndx);
        GElf_Shdr tsh;
        if (!target || !gelf_getshdr(target, &tsh) || sym.st_value < tsh.sh_addr)
            continue;
        AllocatorSymbol s;
        s.name = std::string(f->name);
        s.kind = f->kind;
        s.vaddr = sym.st_value;
        s.file_offset = sym.st_value - tsh.sh_addr + tsh.sh_offset;
        s.size = sym.st_size;
        found.emplace(s.name, s);
    }
}

} // namespace

ElfScan scan_elf(const std::string& path)
{
    ElfScan out;
    elf_version(EV_CURRENT);
    std::string why;
    FdCloser fd{open_untrusted(path, {}, why)};
    if (fd.fd < 0) {
        out.error = "cannot open " + path + ": " + why;
        return out;
    }
    ElfCloser e{elf_begin(fd.fd, ELF_C_READ_MMAP, nullptr)};
    if (!e.elf || elf_kind(e.elf) != ELF_K_ELF) {
        out.error = path + " is not an ELF file";
        return out;
    }
    GElf_Ehdr ehdr;
    if (!gelf_getehdr(e.elf, &ehdr) || ehdr.e_machine != EM_X86_64) {
        out.error = path + " is not an x86-64 ELF file";
        return out;
    }

    size_t nphdr = 0;
    elf_getphdrnum(e.elf, &nphdr);
    for (size_t i = 0; i < nphdr; ++i) {
        GElf_Phdr ph;
        if (!gelf_getphdr(e.elf, static_cast<int>(i), &ph))
            continue;
        if (ph.p_type == PT_LOAD)
            out.loads.push_back({ph.p_vaddr, ph.p_offset, ph.p_filesz});
        if (ph.p_type == PT_INTERP) {
            size_t size = 0;
            char* raw = elf_rawfile(e.elf, &size);
            if (raw && ph.p_offset < size && ph.p_filesz > 0 && ph.p_offset + ph.p_filesz <= size)
                out.interpreter.assign(raw + ph.p_offset, strnlen(raw + ph.p_offset, ph.p_filesz));
        }
    }

    std::map<std::string, AllocatorSymbol> found;
    Elf_Scn* scn = nullptr;
    while ((scn = elf_nextscn(e.elf, scn)) != nullptr) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh))
            continue;
        if (sh.sh_type == SHT_NOTE) {
            scan_tracker_note(scn, out);
            continue;
        }
        if (sh.sh_type == SHT_RELA) {
            scan_allocator_slots(e.elf, scn, sh, out);
            continue;
        }
        if (sh.sh_type == SHT_SYMTAB || sh.sh_type == SHT_DYNSYM)
            scan_symbols(e.elf, scn, sh, found, out);
    }
    auto take = [&](const auto& table) {
        for (const auto& f : table) {
            auto it = found.find(std::string(f.name));
            if (it != found.end())
                out.symbols.push_back(it->second);
        }
    };
    std::sort(out.unprobed_allocator.begin(), out.unprobed_allocator.end());
    // In table order: where names share an address, the first one's layout.
    take(kGlibcAllocator);
    take(kAllocatorExtensions);
    // The C++ operators of an allocator that has its own (see the table).
    const bool own_operators =
        found.count("malloc") && std::any_of(kOperatorAllocatorMarkers.begin(), kOperatorAllocatorMarkers.end(),
                                             [&](std::string_view m) { return found.count(std::string(m)) > 0; });
    if (own_operators)
        take(kCxxOperators);
    // A program that needs no library and defines no allocator by name, yet
    // has one built in: a stripped static one.
    if (out.symbols.empty() && out.unprobed_allocator.empty() && out.interpreter.empty() && ehdr.e_entry != 0 &&
        !needs_libraries(e.elf))
        out.nameless_allocator = nameless_allocator(e.elf);
    if (out.tracker) {
        auto site = vaddr_to_offset(out.loads, out.tracker->site_vaddr);
        auto sema = vaddr_to_offset(out.loads, out.tracker->semaphore_vaddr);
        if (!site || !sema) {
            out.tracker_error = "memscope note points outside the file's loaded segments";
            out.tracker.reset();
        } else {
            out.tracker->site_offset = *site;
            out.tracker->semaphore_offset = *sema;
        }
    }
    return out;
}

std::vector<AllocatorSymbol> unique_by_address(const std::vector<AllocatorSymbol>& symbols)
{
    std::vector<AllocatorSymbol> out;
    for (const auto& s : symbols) {
        bool dup = std::any_of(out.begin(), out.end(),
                               [&](const AllocatorSymbol& o) { return o.file_offset == s.file_offset; });
        if (!dup)
            out.push_back(s);
    }
    return out;
}

} // namespace memscope
