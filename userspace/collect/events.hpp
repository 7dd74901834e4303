// An event from the BPF side, decoded from its ring record (memscope.h's
// wire structs) into one shape; fields a record does not carry read zero.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "memscope.h"

namespace memscope {

// A stack's frame with the file mapped where it is, as the BPF side saw it
// (ino 0: unknown, or anonymous memory; then /proc/PID/maps decides).
struct RawFrame {
    std::uint64_t ip = 0, base = 0, ino = 0;
    std::uint32_t dev = 0; // kernel encoding: major << 20 | minor
    // What ip is: a return address (the call is before it), a signal
    // handler's return trampoline, or the interrupted code's own ip (the
    // frame after a trampoline).
    enum class At : std::uint8_t { return_address, signal_trampoline, interrupted } at = At::return_address;
};

struct DecodedEvent {
    std::uint32_t type = 0, tgid = 0, tid = 0, flags = 0;
    std::uint64_t thread_start_ns = 0; // 0 when the record does not say
    std::uint64_t ts = 0;
    std::uint64_t addr = 0, size = 0, old_addr = 0, alloc_ns = 0;
    std::uint64_t desc = 0, site = 0, module = 0;
    std::uint64_t type_addr = 0, type_len = 0;
    std::uint64_t scope = 0, scope_site = 0;
    std::uint64_t task = 0, task_desc = 0, task_site = 0;
    std::vector<RawFrame> frames; // MS_EV_NEW_STACK (addr: the stack's hash)
};

// nullopt for a record too short for its type.
std::optional<DecodedEvent> decode_event(const void* data, std::size_t size);

} // namespace memscope
