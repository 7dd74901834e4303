#include "tracker_events.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "memscope/probe_abi.h"

namespace memscope {

TrackerModules::~TrackerModules()
{
    for (auto& m : modules_)
        if (m.fd >= 0)
            close(m.fd);
}

std::optional<std::uint32_t> TrackerModules::add(const std::string& path, const ElfScan& scan,
                                                  std::string& error)
{
    if (!scan.tracker) {
        error = path + ": no tracker entry points";
        return std::nullopt;
    }
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st{};
    if (fd < 0 || fstat(fd, &st) != 0) {
        error = "cannot open " + path + ": " + std::strerror(errno);
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
    m.path = path;
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
    std::uint16_t name_len, type_len, file_len, kind;
    std::memcpy(&magic, header, 4);
    std::memcpy(&line, header + 4, 4);
    std::memcpy(&name_len, header + 8, 2);
    std::memcpy(&type_len, header + 10, 2);
    std::memcpy(&file_len, header + 12, 2);
    std::memcpy(&kind, header + 14, 2);
    if (magic != MEMSCOPE_DESC_MAGIC)
        return d;
    std::size_t total = std::size_t(name_len) + type_len + file_len + 3;
    std::string text(total, '\0');
    if (!read(index, site, addr + MEMSCOPE_DESC_HEADER_SIZE, text.data(), total))
        return d;
    // Each string must end where its length says.
    if (text[name_len] != '\0' || text[name_len + 1 + type_len] != '\0' || text[total - 1] != '\0')
        return d;
    auto cut = [](std::string s) {
        if (s.size() > MEMSCOPE_DESC_MAX_STRING)
            s.resize(MEMSCOPE_DESC_MAX_STRING);
        return s;
    };
    d.name = cut(text.substr(0, name_len));
    d.type = cut(text.substr(name_len + 1, type_len));
    d.file = cut(text.substr(name_len + 1 + type_len + 1, file_len));
    d.line = line;
    d.kind = kind;
    d.valid = true;
    return d;
}

std::uint32_t TrackerEvents::descriptor(std::uint64_t module, std::uint64_t site, std::uint64_t addr)
{
    if (addr == 0)
        return kNoDescriptor;
    std::uint64_t link = module < modules_.size() ? addr - (site - modules_.at(module).note.site_vaddr) : addr;
    auto key = std::make_pair(module, link);
    auto it = by_address_.find(key);
    if (it != by_address_.end())
        return it->second;
    Descriptor d;
    if (module < modules_.size())
        d = modules_.read_descriptor(static_cast<std::uint32_t>(module), site, addr);
    if (!d.valid) {
        ++unreadable_;
        d.name = "?";
    }
    std::uint32_t index = table_.intern(d);
    by_address_.emplace(key, index);
    return index;
}

std::uint32_t TrackerEvents::descriptor(std::uint64_t packed_site, std::uint64_t addr)
{
    const std::uint64_t mask = (std::uint64_t(1) << MS_SITE_MODULE_SHIFT) - 1;
    return descriptor(packed_site >> MS_SITE_MODULE_SHIFT, packed_site & mask, addr);
}

void TrackerEvents::handle(const ms_event& ev)
{
    switch (ev.type) {
    case MS_EV_VARIABLE: {
        TrackCall call;
        call.tgid = ev.tgid;
        call.tid = ev.tid;
        call.thread_start_ns = ev.thread_start_ns;
        call.ts = ev.ts;
        call.addr = ev.addr;
        call.size = ev.size;
        call.heap = (ev.flags & MS_EV_HEAP) != 0;
        call.alloc_ns = ev.alloc_ns;
        call.desc = descriptor(ev.module, ev.site, ev.desc);
        call.scope = descriptor(ev.scope_site, ev.scope);
        call.task = ev.task;
        call.task_desc = descriptor(ev.task_site, ev.task_desc);
        if (ev.type_addr && call.desc != kNoDescriptor) {
            // A type name known only at run time (Rust): a string in the module's file.
            auto key = std::make_tuple(call.desc, ev.module, ev.type_addr - ev.site, ev.type_len);
            auto it = typed_.find(key);
            if (it == typed_.end()) {
                Descriptor d = table_.descriptors()[call.desc];
                std::size_t len = std::min<std::uint64_t>(ev.type_len, MEMSCOPE_DESC_MAX_STRING);
                std::string type(len, '\0');
                if (ev.module < modules_.size() &&
                    modules_.read(static_cast<std::uint32_t>(ev.module), ev.site, ev.type_addr, type.data(), len))
                    d.type = type;
                else
                    ++unreadable_;
                it = typed_.emplace(key, table_.intern(d)).first;
            }
            call.desc = it->second;
        }
        table_.on_track(call);
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
