#include "events.hpp"

#include <cstddef>
#include <cstring>

namespace memscope {

namespace {

// The first `need` bytes of a record as a `T`, if it has that many.
template <typename T>
bool read_as(const void* data, std::size_t size, T& out, std::size_t need = sizeof(T))
{
    if (size < need)
        return false;
    std::memcpy(&out, data, need);
    return true;
}

} // namespace

std::optional<DecodedEvent> decode_event(const void* data, std::size_t size)
{
    DecodedEvent ev;
    ms_event_head head;
    if (!read_as(data, size, head))
        return std::nullopt;
    ev.type = head.type;
    ev.tgid = head.tgid;
    ev.tid = head.tid;
    ev.flags = head.flags;
    if (head.type == MS_EV_VARIABLE) {
        ms_variable_event_ext v{};
        const std::size_t need =
            (head.flags & MS_EV_EXTENDED) ? sizeof(ms_variable_event_ext) : sizeof(ms_variable_event);
        if (!read_as(data, size, v, need))
            return std::nullopt;
        const std::uint64_t mask = (std::uint64_t(1) << MS_SITE_MODULE_SHIFT) - 1;
        ev.addr = v.base.addr;
        ev.size = v.base.size;
        ev.desc = v.base.desc;
        ev.site = v.base.site & mask;
        ev.module = v.base.site >> MS_SITE_MODULE_SHIFT;
        ev.alloc_ns = v.base.alloc_ns;
        ev.thread_start_ns = v.ext.thread_start_ns;
        ev.type_addr = v.ext.type_addr;
        ev.type_len = v.ext.type_len;
        ev.scope = v.ext.scope;
        ev.scope_site = v.ext.scope_site;
        ev.task = v.ext.task;
        ev.task_desc = v.ext.task_desc;
        ev.task_site = v.ext.task_site;
        return ev;
    }
    if (head.type == MS_EV_LOADER_CHANGED)
        return ev;
    if (head.type == MS_EV_NEW_STACK) {
        ms_stack_event s;
        const std::size_t fixed = offsetof(ms_stack_event, frames);
        if (!read_as(data, size, s, fixed))
            return std::nullopt;
        if (s.nr > MS_STACK_SLOTS || size < fixed + s.nr * sizeof(ms_stack_frame))
            return std::nullopt;
        std::memcpy(s.frames, static_cast<const char*>(data) + fixed, s.nr * sizeof(ms_stack_frame));
        ev.addr = s.stack;
        for (std::uint64_t i = 0; i < s.nr; ++i)
            ev.frames.push_back({s.frames[i].ip, s.frames[i].base, s.frames[i].ino, s.frames[i].dev});
        return ev;
    }
    ms_block_event b;
    if (!read_as(data, size, b))
        return std::nullopt;
    ev.ts = b.ts;
    ev.addr = b.addr;
    ev.size = b.size;
    ev.old_addr = b.old_addr;
    return ev;
}

} // namespace memscope
