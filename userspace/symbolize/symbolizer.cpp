#include "symbolizer.hpp"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwelf.h>
#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <gelf.h>
// libiberty declares basename() itself unless told string.h has it.
#define HAVE_DECL_BASENAME 1
#include <libiberty/demangle.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "elf_symbols.hpp"
#include "probe_sites.hpp"
#include "proc.hpp"
#include "safe_files.hpp"

namespace memscope {

namespace {
// A JIT's symbol map: megabytes at most in practice.
constexpr std::uint64_t kMaxPerfMapBytes = 64ULL << 20;
} // namespace

std::string demangle(const std::string& name)
{
    // libiberty's demangler: C++, and Rust in both its legacy and v0 manglings.
    char* d = cplus_demangle(name.c_str(), DMGL_PARAMS | DMGL_ANSI | DMGL_AUTO);
    if (!d)
        return name;
    std::string out(d);
    std::free(d);
    return out;
}

bool is_root_symbol(const std::string& s)
{
    static const char* const roots[] = {"main", "__libc_start_call_main", "__libc_start_main",
                                        "__libc_start_main_impl", "start_thread", "_start", "_dl_start_user",
                                        "clone3", "__clone3", "clone", "__clone"};
    for (const char* r : roots)
        if (s == r)
            return true;
    return false;
}

namespace {

// Where libdwfl's callbacks, which know no symbolizer, note a skipped file.
thread_local std::vector<std::string>* t_skipped = nullptr;

void note_skipped(std::vector<std::string>* to, const std::string& path, const std::string& why)
{
    if (!to || errno == ENOENT || errno == ENOTDIR)
        return;
    std::string line = "skipped " + path + ": " + why;
    if (std::find(to->begin(), to->end(), line) == to->end())
        to->push_back(std::move(line));
}

std::string hex(const unsigned char* p, int n)
{
    static const char* digits = "0123456789abcdef";
    std::string s;
    for (int i = 0; i < n; ++i) {
        s += digits[p[i] >> 4];
        s += digits[p[i] & 15];
    }
    return s;
}

// A debug file found by name is only the module's if its build-id says so
// (a stale foo.debug beside a rebuilt foo would lend it wrong names).
bool same_build_id(int fd, const unsigned char* bits, int len)
{
    if (len <= 0)
        return true; // nothing to compare with, as before build-ids
    Elf* elf = elf_begin(fd, ELF_C_READ_MMAP, nullptr);
    const void* id = nullptr;
    const ssize_t n = elf ? dwelf_elf_gnu_build_id(elf, &id) : -1;
    const bool same = n == len && std::memcmp(id, bits, static_cast<std::size_t>(len)) == 0;
    if (elf)
        elf_end(elf);
    return same;
}

// Compressed sections that claim `n` bytes, more than kMaxInflatedBytes:
// libdw would allocate that much inflating them. Said.
bool inflates_too_much(std::uint64_t n, const std::string& path)
{
    if (n <= kMaxInflatedBytes)
        return false;
    errno = EFBIG;
    note_skipped(t_skipped, path,
                 "its compressed sections would inflate to " +
                     (n == kMaxInflatedBytes + 1 || n == UINT64_MAX
                          ? "more than " + std::to_string(kMaxInflatedBytes >> 20) + " MiB"
                          : std::to_string(n >> 20) + " MiB (more than " + std::to_string(kMaxInflatedBytes >> 20) +
                                " MiB)"));
    return true;
}

// Separate debug files from this machine only. dwfl_standard_find_debuginfo
// also asks debuginfod servers when DEBUGINFOD_URLS is set (Debian sets it
// for login shells): a tracer must not go to the network unasked, nor wait
// on it. libdwfl's own build-id lookup (debuginfo_path: /usr/lib/debug)
// comes first: it also answers for a dwz file's shared "alt" part. Then, for
// a file in a container (/proc/PID/root/...), the same under that root, and
// the file's .gnu_debuglink beside it, in .debug/ and under the debug root.
int find_local_debuginfo(Dwfl_Module* mod, void** userdata, const char* modname, Dwarf_Addr base,
                         const char* file_name, const char* debuglink, GElf_Word crc, char** debuginfo_file_name)
{
    int fd = dwfl_build_id_find_debuginfo(mod, userdata, modname, base, file_name, debuglink, crc,
                                          debuginfo_file_name);
    if (fd >= 0 &&
        inflates_too_much(inflated_size(fd).total(), *debuginfo_file_name ? *debuginfo_file_name : "a debug file")) {
        close(fd);
        free(*debuginfo_file_name);
        *debuginfo_file_name = nullptr;
        errno = EFBIG;
        return -1;
    }
    // An alt (dwz) file is asked for by its path: only the build-id
    // lookup above can answer that one.
    if (fd >= 0 || (debuglink && std::strchr(debuglink, '/')))
        return fd;
    const std::string path = file_name ? file_name : "";
    std::string root;
    if (path.rfind("/proc/", 0) == 0)
        if (auto r = path.find("/root/", 6); r != std::string::npos)
            root = path.substr(0, r + 5);
    std::vector<std::string> candidates;
    const unsigned char* bits = nullptr;
    GElf_Addr vaddr = 0;
    const int len = dwfl_module_build_id(mod, &bits, &vaddr);
    if (len > 1 && !root.empty())
        candidates.push_back(root + "/usr/lib/debug/.build-id/" + hex(bits, 1) + "/" + hex(bits + 1, len - 1) +
                             ".debug");
    if (debuglink && *debuglink && !path.empty()) {
        const std::string dir = path.substr(0, path.rfind('/') + 1);
        const std::string inside = dir.substr(root.size()); // the directory as the process names it
        for (const std::string& d : {dir, dir + ".debug/", root + "/usr/lib/debug" + inside})
            if (d + debuglink != path)
                candidates.push_back(d + debuglink);
    }
    for (const auto& c : candidates) {
        // Named by the target's file: no FIFO, device or huge file is read.
        std::string why;
        fd = open_untrusted(c, {.max_bytes = kMaxElfBytes}, why);
        if (fd < 0) {
            note_skipped(t_skipped, c, why);
            continue;
        }
        if (same_build_id(fd, bits, len) && !inflates_too_much(inflated_size(fd).total(), c)) {
            *debuginfo_file_name = strdup(c.c_str());
            return fd;
        }
        close(fd);
    }
    errno = ENOENT;
    return -1;
}

// Modules are reported with their open files: find_elf is never asked, and
// would look nowhere else.
int find_no_elf(Dwfl_Module*, void**, const char*, Dwarf_Addr, char**, Elf**)
{
    errno = ENOENT;
    return -1;
}

const Dwfl_Callbacks kOffline = {
    find_no_elf,
    find_local_debuginfo,
    dwfl_offline_section_address,
    nullptr,
};

} // namespace

// One ELF file, reported to its own libdwfl session at its link-time addresses.
struct Symbolizer::Module {
    struct Sym {
        std::string name; // demangled; empty when unknown
        std::string file;
        std::uint32_t line = 0;
        bool return_address = false; // a call ends just before it
        // Functions inlined at this address, innermost first, each with its
        // own position; `name`'s position is then the outermost call's.
        struct Inline {
            std::string name, file;
            std::uint32_t line = 0;
        };
        std::vector<Inline> inlined;
    };

    int fd = -1;
    Dwfl* dwfl = nullptr;
    Dwfl_Module* mod = nullptr;
    bool no_dwarf = false; // its compressed sections claim too much to inflate
    GElf_Addr bias = 0;
    std::vector<LoadSegment> loads;
    std::unordered_map<std::uint64_t, Sym> cache; // by link-time return address

    ~Module()
    {
        if (dwfl)
            dwfl_end(dwfl);
        if (fd >= 0)
            close(fd);
    }

    // Open `file` and name it (`key`: its build-id, else its path, device,
    // inode and mtime); false when it is no ELF file libdwfl can read. Cheap:
    // what costs (line tables, symbols) waits for load(). libdwfl knows it
    // by the name the process gives it (`file.named`): its debug files are
    // looked for beside that.
    bool identify(const MappedFile& file, std::string& key)
    {
        const std::string& host_path = file.named;
        std::string why;
        fd = file.host.empty() ? -1 : open_untrusted(file.host, {.max_bytes = kMaxElfBytes}, why);
        if (fd < 0) {
            note_skipped(t_skipped, host_path, file.host.empty() ? file.why : why);
            return false;
        }
        // Its symbols are still read, its DWARF is not; not even those when
        // they are what would inflate.
        const Inflation inflation = inflated_size(fd);
        if (inflates_too_much(inflation.other, host_path))
            return false;
        no_dwarf = inflates_too_much(inflation.debug, host_path);
        dwfl = dwfl_begin(&kOffline);
        if (!dwfl)
            return false;
        dwfl_report_begin(dwfl);
        // libdwfl takes a descriptor of its own: ours stays for the call checks.
        int own = dup(fd);
        mod = dwfl_report_elf(dwfl, host_path.c_str(), host_path.c_str(), own, 0, false);
        dwfl_report_end(dwfl, nullptr, nullptr);
        if (!mod) {
            if (own >= 0)
                close(own);
            return false;
        }
        const unsigned char* bits = nullptr;
        GElf_Addr at = 0;
        int len = dwfl_module_build_id(mod, &bits, &at);
        if (len > 0) {
            key = "build-id:" + hex(bits, len);
        } else {
            struct stat st{};
            fstat(fd, &st);
            key = "file:" + host_path + ":" + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
                  std::to_string(st.st_mtime);
        }
        return true;
    }

    // Symbols and line tables now, while the file is reachable (a path
    // through /proc/PID/root is gone with the process). The costly part:
    // compressed debug sections (libc6-dbg's) are inflated here, ~30 ms for libc.
    bool load()
    {
        Dwarf_Addr dwarf_bias = 0;
        if (!no_dwarf)
            dwfl_module_getdwarf(mod, &dwarf_bias);
        dwfl_module_getsymtab(mod);
        Elf* elf = dwfl_module_getelf(mod, &bias);
        if (!elf)
            return false;
        std::size_t n = 0;
        if (elf_getphdrnum(elf, &n) != 0)
            return false;
        for (std::size_t i = 0; i < n; ++i) {
            GElf_Phdr ph;
            if (gelf_getphdr(elf, static_cast<int>(i), &ph) && ph.p_type == PT_LOAD)
                loads.push_back({ph.p_vaddr, ph.p_offset, ph.p_filesz});
        }
        return true;
    }

    // Link-time address of a byte at `file_offset`, if a segment maps it.
    std::optional<std::uint64_t> vaddr_of(std::uint64_t file_offset) const
    {
        for (const auto& l : loads)
            if (file_offset >= l.offset && file_offset < l.offset + l.filesz)
                return file_offset - l.offset + l.vaddr;
        return std::nullopt;
    }

    const Sym& lookup(std::uint64_t vaddr)
    {
        auto it = cache.find(vaddr);
        if (it != cache.end())
            return it->second;
        Sym s;
        // A return address: the call is the instruction before it.
        if (auto off = vaddr_to_offset(loads, vaddr - 1)) {
            std::uint8_t before[9];
            std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(sizeof before, *off + 1));
            ssize_t got = pread(fd, before + sizeof before - want, want, static_cast<off_t>(*off + 1 - want));
            s.return_address = got == static_cast<ssize_t>(want) &&
                               ends_with_call(before + sizeof before - want, want);
        }
        GElf_Off offset = 0;
        GElf_Sym sym;
        const char* name = dwfl_module_addrinfo(mod, vaddr - 1 + bias, &offset, &sym, nullptr, nullptr, nullptr);
        if (name)
            s.name = demangle(name);
        // The runtime's frames that start every stack (a thread's start,
        // __libc_start_call_main) need no source line: looking one up reads
        // and inflates all of libc's DWARF (libc6-dbg), ~30 ms and megabytes
        // of the tracer's memory for nothing a user reads.
        const bool no_lines = (s.name != "main" && is_root_symbol(s.name)) || no_dwarf;
        if (Dwfl_Line* line = no_lines ? nullptr : dwfl_module_getsrc(mod, vaddr - 1 + bias)) {
            int lineno = 0;
            if (const char* file = dwfl_lineinfo(line, nullptr, &lineno, nullptr, nullptr, nullptr)) {
                s.file = file;
                s.line = static_cast<std::uint32_t>(lineno);
            }
        }
        if (!no_lines)
            expand_inlined(vaddr - 1 + bias, s);
        return cache.emplace(vaddr, std::move(s)).first->second;
    }

    // The functions inlined at `addr` (libdw's scopes: each
    // DW_TAG_inlined_subroutine, innermost first): the innermost takes the
    // line table's position, each outer one the call site its inner one
    // records (DW_AT_call_file/line), the real function the outermost's.
    void expand_inlined(Dwarf_Addr addr, Sym& s)
    {
        Dwarf_Addr cu_bias = 0;
        Dwarf_Die* cu = dwfl_module_addrdie(mod, addr, &cu_bias);
        if (!cu)
            return;
        // The innermost scope at addr, then every DIE around it in the
        // concrete tree (dwarf_getscopes itself goes on into an inlined
        // function's abstract definition, not to its call sites).
        Dwarf_Die* scopes = nullptr;
        int n = dwarf_getscopes(cu, addr - cu_bias, &scopes);
        if (n <= 0)
            return;
        Dwarf_Die innermost = scopes[0];
        std::free(scopes);
        scopes = nullptr;
        n = dwarf_getscopes_die(&innermost, &scopes);
        if (n <= 0)
            return;
        Dwarf_Files* files = nullptr;
        std::size_t nfiles = 0;
        dwarf_getsrcfiles(cu, &files, &nfiles);
        std::string file = s.file;
        std::uint32_t line = s.line;
        for (int i = 0; i < n && i < 64; ++i) {
            const int tag = dwarf_tag(&scopes[i]);
            if (tag == DW_TAG_subprogram)
                break;
            if (tag != DW_TAG_inlined_subroutine)
                continue;
            s.inlined.push_back({die_name(&scopes[i]), file, line});
            // Where it was inlined: the position in the function around it.
            Dwarf_Attribute attr;
            Dwarf_Word call_file = 0, call_line = 0;
            file.clear();
            line = 0;
            if (dwarf_formudata(dwarf_attr(&scopes[i], DW_AT_call_file, &attr), &call_file) == 0 && files &&
                call_file < nfiles)
                if (const char* f = dwarf_filesrc(files, call_file, nullptr, nullptr))
                    file = f;
            if (dwarf_formudata(dwarf_attr(&scopes[i], DW_AT_call_line, &attr), &call_line) == 0)
                line = static_cast<std::uint32_t>(call_line);
        }
        std::free(scopes);
        if (!s.inlined.empty()) {
            s.file = file;
            s.line = line;
        }
    }

    // A DIE's function name: its linkage name demangled, else its name
    // (both through its abstract origin).
    static std::string die_name(Dwarf_Die* die)
    {
        Dwarf_Attribute attr;
        if (const char* linkage = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_linkage_name, &attr)))
            return demangle(linkage);
        if (const char* linkage = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &attr)))
            return demangle(linkage);
        if (const char* name = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_name, &attr)))
            return name;
        return {};
    }
};

Symbolizer::Symbolizer()
    : modules_(std::make_shared<Modules>()), skipped_(std::make_shared<std::vector<std::string>>())
{
    elf_version(EV_CURRENT);
}

void Symbolizer::share_modules(const Symbolizer& other)
{
    modules_ = other.modules_;
    skipped_ = other.skipped_;
}

Symbolizer::~Symbolizer() = default;

Symbolizer::Module* Symbolizer::open_module(const MappedFile& file)
{
    auto m = std::make_unique<Module>();
    std::string key;
    t_skipped = skipped_.get();
    struct Reset {
        ~Reset() { t_skipped = nullptr; }
    } reset;
    if (!m->identify(file, key))
        return nullptr;
    if (auto it = modules_->find(key); it != modules_->end())
        return it->second.get(); // read already, for this process or another
    if (!m->load())
        return nullptr;
    return modules_->emplace(key, std::move(m)).first->second.get();
}

void Symbolizer::know_file(const MappedFile& file)
{
    if (file.host.empty())
        return;
    const std::pair<std::uint32_t, std::uint64_t> key{kernel_dev(file.dev), file.ino};
    if (files_.count(key))
        return;
    files_[key] = {file.path, open_module(file)};
}

const Symbolizer::Known* Symbolizer::known(std::uint32_t dev, std::uint64_t ino) const
{
    auto it = files_.find({dev, ino});
    return it == files_.end() ? nullptr : &it->second;
}

void Symbolizer::refresh(int pid)
{
    const int task = live_task(pid); // a zombie leader maps nothing; its threads do
    const int from = task ? task : pid;
    std::ifstream in("/proc/" + std::to_string(from) + "/maps");
    if (!in)
        return; // gone: the last mappings read stay
    std::vector<Mapping> maps;
    Process& p = processes_[pid];
    for (std::string line; std::getline(in, line);) {
        std::istringstream ls(line);
        std::string range, perms, offset, dev, inode, path;
        if (!(ls >> range >> perms >> offset >> dev >> inode) || perms.size() < 3 || perms[2] != 'x')
            continue;
        std::getline(ls >> std::ws, path);
        Mapping m;
        std::size_t dash = range.find('-');
        m.start = std::strtoull(range.substr(0, dash).c_str(), nullptr, 16);
        m.end = std::strtoull(range.substr(dash + 1).c_str(), nullptr, 16);
        m.pgoff = std::strtoull(offset.c_str(), nullptr, 16);
        if (!path.empty() && path[0] == '/') {
            // The device as maps prints it (hex major:minor), as the BPF side reads it.
            std::size_t colon = dev.find(':');
            const std::uint32_t kdev =
                kernel_dev(makedev(std::strtoul(dev.substr(0, colon).c_str(), nullptr, 16),
                                   std::strtoul(dev.substr(colon + 1).c_str(), nullptr, 16)));
            const std::pair<std::uint32_t, std::uint64_t> key{kdev, std::strtoull(inode.c_str(), nullptr, 10)};
            auto it = files_.find(key);
            if (it == files_.end()) { // where to open it from: looked up for a file new here only
                MappedFile file = mapped_file(from, range, dev, std::strtoul(inode.c_str(), nullptr, 10), path);
                it = files_.emplace(key, Known{file.path, open_module(file)}).first;
            }
            m.path = named_path(path);
            m.module = it->second.module;
        } else if (!path.empty()) {
            continue; // [vdso], [vsyscall]: no allocator returns there
        }
        maps.push_back(std::move(m));
    }
    if (!maps.empty())
        p.maps = std::move(maps);
}

const Symbolizer::Mapping* Symbolizer::mapping_at(Process& p, std::uint64_t addr) const
{
    auto it = std::upper_bound(p.maps.begin(), p.maps.end(), addr,
                               [](std::uint64_t a, const Mapping& m) { return a < m.start; });
    if (it == p.maps.begin())
        return nullptr;
    --it;
    return addr < it->end ? &*it : nullptr;
}

const Symbolizer::JitSymbol* Symbolizer::jit_at(int pid, Process& p, std::uint64_t addr)
{
    if (!p.jit_read) {
        p.jit_read = true;
        // The map is named by the pid the process knows itself by (its namespace's).
        std::string nspid = std::to_string(pid);
        long uid = -1;
        std::ifstream status("/proc/" + std::to_string(pid) + "/status");
        for (std::string line; std::getline(status, line);)
            if (line.rfind("NSpid:", 0) == 0) {
                std::istringstream ls(line.substr(6));
                for (std::string v; ls >> v;)
                    nspid = v;
            } else if (line.rfind("Uid:", 0) == 0) {
                std::istringstream ls(line.substr(4));
                long real = -1;
                ls >> real >> uid; // the effective uid writes the map
            }
        if (uid < 0)
            return nullptr; // gone: whose map it would be is unknown
        // /tmp is anyone's: the map must be a regular file of the process's
        // user (or root), not a link, and of a sane size; resolved in the
        // process's own root.
        const std::string shown = "/tmp/perf-" + nspid + ".map";
        std::string why;
        auto text = read_untrusted(path_in_process(pid, shown),
                                   {.no_follow = true, .owner = uid, .max_bytes = kMaxPerfMapBytes}, why);
        if (!text)
            note_skipped(skipped_.get(), shown + " of process " + std::to_string(pid), why);
        std::istringstream in(text.value_or(""));
        for (std::string line; std::getline(in, line);) {
            std::istringstream ls(line);
            std::string start, size, name;
            if (!(ls >> start >> size))
                continue;
            std::getline(ls >> std::ws, name);
            p.jit.push_back({std::strtoull(start.c_str(), nullptr, 16), std::strtoull(size.c_str(), nullptr, 16),
                             name});
        }
        std::sort(p.jit.begin(), p.jit.end(), [](const auto& a, const auto& b) { return a.start < b.start; });
    }
    auto it = std::upper_bound(p.jit.begin(), p.jit.end(), addr,
                               [](std::uint64_t a, const JitSymbol& s) { return a < s.start; });
    if (it == p.jit.begin())
        return nullptr;
    --it;
    return addr < it->start + it->size ? &*it : nullptr;
}

std::vector<Frame> Symbolizer::resolve(int pid, const std::vector<RawFrame>& raw, bool& truncated, std::string* cut)
{
    std::vector<Frame> out;
    out.reserve(raw.size());
    Process& p = processes_[pid];
    bool refreshed = false, rooted = false;
    for (std::size_t i = 0; i < raw.size(); ++i) {
        const RawFrame& r = raw[i];
        Frame f;
        f.addr = r.ip;
        // Where the file is: as the BPF side saw it, else the mappings read.
        Module* module = nullptr;
        std::uint64_t file_offset = 0;
        const Known* k = r.ino ? known(r.dev, r.ino) : nullptr;
        if (r.ino && !k && !refreshed) {
            refresh(pid); // a library this tracer has not opened yet
            refreshed = true;
            k = known(r.dev, r.ino);
        }
        const Mapping* m = nullptr;
        if (k) {
            module = k->module;
            f.module = k->shown;
            file_offset = r.ip - r.base;
        } else if (!r.ino) {
            m = mapping_at(p, r.ip);
            if (!m && !refreshed) {
                refresh(pid);
                refreshed = true;
                m = mapping_at(p, r.ip);
            }
            if (m && m->module) {
                module = m->module;
                f.module = m->path;
                file_offset = r.ip - m->start + m->pgoff;
            }
        }
        // A return address is looked up at the call before it; the others
        // (a signal's trampoline, the code a signal interrupted) at their own.
        const bool exact = r.at != RawFrame::At::return_address;
        bool valid = false;
        if (module) {
            if (auto vaddr = module->vaddr_of(file_offset)) {
                const Module::Sym& s = module->lookup(*vaddr + (exact ? 1 : 0));
                f.offset = *vaddr;
                f.symbol = r.at == RawFrame::At::signal_trampoline ? "<signal handler called>" : s.name;
                f.file = s.file;
                f.line = s.line;
                valid = s.return_address || exact;
                if (valid || i == 0)
                    for (const auto& in : s.inlined) { // innermost first, before the real function
                        Frame g = f;
                        g.symbol = in.name;
                        g.file = in.file;
                        g.line = in.line;
                        g.inlined = true;
                        out.push_back(std::move(g));
                    }
            }
        } else if (m || !r.ino) {
            if (const JitSymbol* j = jit_at(pid, p, f.addr)) {
                f.symbol = j->name;
                valid = true;
            }
        }
        // The first frame is the allocator's own return address: always real.
        if (!valid && i > 0) {
            if (cut)
                *cut = "a frame that is no call's return address, after " +
                       (out.back().module.empty() ? std::string("anonymous code") : out.back().module.str());
            break;
        }
        out.push_back(std::move(f));
        if (is_root_symbol(out.back().symbol)) {
            rooted = true;
            break;
        }
    }
    truncated = !rooted;
    return out;
}

} // namespace memscope
