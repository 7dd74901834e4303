#include "tracker_events.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <utility>

#include "memscope/probe_abi.h"
#include "safe_files.hpp"

namespace memscope {

TrackerModules::~TrackerModules()
{
    for (auto& m : modules_)
        if (m.fd >= 0)
            close(m.fd);
}

std::optional<std::uint32_t> TrackerModules::add(const std::string& path, const std::string& shown,
                                                  const ElfScan& scan, std::string& error)
{
    if (!scan.tracker) {
        error = shown;
        error += ": no tracker entry points"; // (appended: GCC 12 warns wrongly on path + "...")
        return std::nullopt;
    }
    std::string why;
    int fd = open_untrusted(path, {}, why);
    struct stat st{};
    if (fd < 0 || fstat(fd, &st) != 0) {
        error = "cannot open " + shown + ": " + (fd < 0 ? why : std::strerror(errno));
        if (fd >= 0)
            close(fd);
        return std::nullopt;
    }
    for (std::uint32_t i = 0; i < modules_.size(); ++i) {
        if (modules_[i].dev == st.st_dev && modules_[i].ino == st.st_ino) {
            close(fd);
            return i;
        }
    }
    TrackerModule m;
    m.path = shown;
    m.fd = fd;
    m.dev = st.st_dev;
    m.ino = st.st_ino;
    m.note = *scan.tracker;
    m.loads = scan.loads;
    modules_.push_back(std::move(m));
    return static_cast<std::uint32_t>(modules_.size() - 1);
}

bool TrackerModules::read(std::uint32_t index, std::uint64_t site, std::uint64_t addr, void* out,
                          std::size_t len) const
{
    if (index >= modules_.size())
        return false;
    const TrackerModule& m = modules_[index];
    // The probe site's runtime address gives the module's load bias.
    std::uint64_t bias = site - m.note.site_vaddr;
    std::uint64_t vaddr = addr - bias;
    auto off = vaddr_to_offset(m.loads, vaddr);
    auto end = vaddr_to_offset(m.loads, vaddr + (len ? len - 1 : 0));
    if (!off || !end || *end - *off != (len ? len - 1 : 0))
        return false; // not (wholly) in one segment of this file: not one of ours
    return pread(m.fd, out, len, static_cast<off_t>(*off)) == static_cast<ssize_t>(len);
}

Descriptor TrackerModules::read_descriptor(std::uint32_t index, std::uint64_t site, std::uint64_t addr) const
{
    Descriptor d;
    unsigned char header[MEMSCOPE_DESC_HEADER_SIZE];
    if (!read(index, site, addr, header, sizeof header))
        return d;
    std::uint32_t magic, line;
    std::uint16_t len[3], kind;
    std::memcpy(&magic, header, 4);
    std::memcpy(&line, header + 4, 4);
    std::memcpy(len, header + 8, 6);
    std::memcpy(&kind, header + 14, 2);
    if (magic != MEMSCOPE_DESC_MAGIC)
        return d;
    // Each string is read up to the bound; one read in full must end in NUL.
    std::string* out[3] = {&d.name, &d.type, &d.file};
    std::uint64_t at = addr + MEMSCOPE_DESC_HEADER_SIZE;
    for (int i = 0; i < 3; ++i) {
        std::size_t want = std::min<std::size_t>(len[i], MEMSCOPE_DESC_MAX_STRING);
        bool whole = want == len[i];
        std::string text(want + (whole ? 1 : 0), '\0');
        if (!read(index, site, at, text.data(), text.size()))
            return Descriptor{};
        if (whole) {
            if (text.back() != '\0')
                return Descriptor{};
            text.pop_back();
        }
        *out[i] = std::move(text);
        at += std::uint64_t(len[i]) + 1;
    }
    d.line = line;
    d.kind = kind;
    d.valid = true;
    return d;
}

std::map<std::uint32_t, std::uint64_t> TrackerModules::biases_from_maps(int pid) const
{
    std::map<std::uint32_t, std::uint64_t> out;
    std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
    std::string line;
    while (std::getline(maps, line)) {
        // start-end perms offset dev inode path
        unsigned long long start = 0, end = 0, offset = 0, inode = 0;
        char perms[8] = {}, dev[16] = {};
        if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx %15s %llu", &start, &end, perms, &offset, dev, &inode) != 6 ||
            inode == 0)
            continue;
        for (std::uint32_t i = 0; i < modules_.size(); ++i) {
            const TrackerModule& m = modules_[i];
            if (out.count(i) || m.ino != inode)
                continue;
            for (const auto& l : m.loads) {
                // The mapping starts at the page of this segment's file offset.
                std::uint64_t page_off = l.offset & ~0xfffull;
                if (page_off == offset) {
                    out[i] = start - (l.vaddr & ~0xfffull);
                    break;
                }
            }
        }
    }
    return out;
}

std::uint32_t TrackerEvents::descriptor(std::uint32_t tgid, std::uint64_t module, std::uint64_t site,
                                       std::uint64_t addr)
{
    if (addr == 0)
        return kNoDescriptor;
    if (module >= modules_.size())
        return unreadable();
    const std::uint64_t bias = site - modules_.at(module).note.site_vaddr;
    biases_[{tgid, static_cast<std::uint32_t>(module)}] = bias;
    auto key = std::make_pair(module, addr - bias);
    auto it = by_address_.find(key);
    if (it != by_address_.end())
        return it->second;
    if (by_address_.size() >= kMaxCachedDescriptors)
        return unreadable(); // a target passing ever new addresses gets no more reads
    Descriptor d = modules_.read_descriptor(static_cast<std::uint32_t>(module), site, addr);
    if (!d.valid) {
        // The descriptor may live in another module: a static in an inline
        // function is one object for the executable and its libraries.
        if (!maps_read_.count(tgid)) {
            maps_read_.insert(tgid);
            for (const auto& [m, b] : modules_.biases_from_maps(static_cast<int>(tgid)))
                biases_.emplace(std::make_pair(tgid, m), b);
        }
        for (auto b = biases_.lower_bound({tgid, 0}); b != biases_.end() && b->first.first == tgid; ++b) {
            std::uint32_t m = b->first.second;
            if (m == module)
                continue;
            d = modules_.read_descriptor(m, modules_.at(m).note.site_vaddr + b->second, addr);
            if (d.valid)
                break;
        }
    }
    std::uint32_t index;
    if (d.valid) {
        index = table_.intern(d);
    } else {
        ++unreadable_;
        Descriptor unknown;
        unknown.name.assign(1, '?'); // (not = "?": GCC 12 -Wrestrict false positive)
        index = table_.intern(unknown);
    }
    by_address_.emplace(key, index);
    return index;
}

std::uint32_t TrackerEvents::unreadable()
{
    ++unreadable_;
    Descriptor unknown;
    unknown.name.assign(1, '?');
    return table_.intern(unknown);
}

std::uint32_t TrackerEvents::descriptor(std::uint32_t tgid, std::uint64_t packed_site, std::uint64_t addr)
{
    const std::uint64_t mask = (std::uint64_t(1) << MS_SITE_MODULE_SHIFT) - 1;
    return descriptor(tgid, packed_site >> MS_SITE_MODULE_SHIFT, packed_site & mask, addr);
}

std::uint32_t TrackerEvents::with_runtime_type(std::uint32_t desc, const DecodedEvent& ev)
{
    // A type name known only at run time (Rust): a string in the module's file.
    auto key = std::make_tuple(desc, ev.module, ev.type_addr - ev.site, ev.type_len);
    if (auto it = typed_.find(key); it != typed_.end())
        return it->second;
    if (typed_.size() >= kMaxCachedDescriptors)
        return unreadable();
    Descriptor d = table_.descriptors()[desc];
    std::size_t len = std::min<std::uint64_t>(ev.type_len, MEMSCOPE_DESC_MAX_STRING);
    std::string type(len, '\0');
    if (ev.module < modules_.size() &&
        modules_.read(static_cast<std::uint32_t>(ev.module), ev.site, ev.type_addr, type.data(), len))
        d.type = type;
    else
        ++unreadable_;
    return typed_.emplace(key, table_.intern(d)).first->second;
}

void TrackerEvents::handle(const DecodedEvent& ev)
{
    switch (ev.type) {
    case MS_EV_VARIABLE: {
        Variable v;
        v.tgid = ev.tgid;
        v.tid = ev.tid;
        v.thread_start_ns = ev.thread_start_ns;
        v.addr = ev.addr;
        v.size = ev.size;
        v.heap = (ev.flags & MS_EV_HEAP) != 0;
        v.alloc_ns = ev.alloc_ns;
        v.desc = descriptor(ev.tgid, ev.module, ev.site, ev.desc);
        if (ev.type_addr && v.desc != kNoDescriptor)
            v.desc = with_runtime_type(v.desc, ev);
        v.scope = descriptor(ev.tgid, ev.scope_site, ev.scope);
        v.task = ev.task;
        v.task_desc = descriptor(ev.tgid, ev.task_site, ev.task_desc);
        table_.on_track(v);
        break;
    }
    case MS_EV_VARIABLE_FREE:
        table_.on_free(ev.tgid, ev.addr, ev.ts);
        break;
    case MS_EV_VARIABLE_MOVE:
        table_.on_move(ev.tgid, ev.old_addr, ev.addr, ev.size);
        break;
    case MS_EV_MODE_REQUEST:
        mode_requests_.push_back({ev.ts, ev.tgid, ev.tid, static_cast<std::uint32_t>(ev.size)});
        break;
    case MS_EV_LOADER_CHANGED:
        loader_changed_.insert(ev.tgid);
        break;
    default:
        break;
    }
}

} // namespace memscope
