#include "elf_symbols.hpp"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>

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
    for (const auto& f : kGlibcAllocator)
        if (f.name == name)
            return &f;
    return nullptr;
}

} // namespace

ElfScan scan_elf(const std::string& path)
{
    ElfScan out;
    elf_version(EV_CURRENT);
    FdCloser fd{open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    if (fd.fd < 0) {
        out.error = "cannot open " + path;
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
        if (gelf_getphdr(e.elf, static_cast<int>(i), &ph) && ph.p_type == PT_INTERP) {
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
        if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM))
            continue;
        Elf_Data* data = elf_getdata(scn, nullptr);
        if (!data || sh.sh_entsize == 0)
            continue;
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
            const char* name = elf_strptr(e.elf, sh.sh_link, sym.st_name);
            if (!name)
                continue;
            // Versioned dynamic names come without the @VERSION suffix here.
            const AllocatorFunction* f = lookup(name);
            if (!f || found.count(f->name.data()))
                continue;
            Elf_Scn* target = elf_getscn(e.elf, sym.st_shndx);
            GElf_Shdr tsh;
            if (!target || !gelf_getshdr(target, &tsh) || sym.st_value < tsh.sh_addr)
                continue;
            AllocatorSymbol s;
            s.name = std::string(f->name);
            s.kind = f->kind;
            s.vaddr = sym.st_value;
            s.file_offset = sym.st_value - tsh.sh_addr + tsh.sh_offset;
            found.emplace(s.name, s);
        }
    }
    for (const auto& f : kGlibcAllocator) {
        auto it = found.find(std::string(f.name));
        if (it != found.end())
            out.symbols.push_back(it->second);
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
