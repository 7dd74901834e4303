// The allocator entry points memscope-trace probes, and the argument layout
// of each. Several names may share one address (glibc's aliases); a probe is
// placed once per address, and aliases must share a layout.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "memscope.h"

namespace memscope {

struct AllocatorFunction {
    std::string_view name;
    ms_alloc_kind kind;
};

inline constexpr std::array<AllocatorFunction, 12> kGlibcAllocator{{
    {"malloc", MS_KIND_MALLOC},
    {"calloc", MS_KIND_CALLOC},
    {"realloc", MS_KIND_REALLOC},
    {"reallocarray", MS_KIND_REALLOCARRAY},
    {"free", MS_KIND_FREE},
    {"posix_memalign", MS_KIND_POSIX_MEMALIGN},
    {"aligned_alloc", MS_KIND_MEMALIGN},
    {"memalign", MS_KIND_MEMALIGN},
    {"valloc", MS_KIND_MALLOC},
    {"pvalloc", MS_KIND_MALLOC},
    // Not an allocator: marks the start of a thread's exit path (see the BPF side).
    {"__call_tls_dtors", MS_KIND_THREAD_EXIT},
    // Not an allocator: ld.so calls it after mapping or unmapping libraries,
    // which may bring tracker entry points to attach to.
    {"_dl_debug_state", MS_KIND_LOADER_CHANGED},
}};

// Kinds whose result comes back through a return probe.
constexpr bool needs_return_probe(ms_alloc_kind kind)
{
    return kind != MS_KIND_FREE && kind != MS_KIND_THREAD_EXIT && kind != MS_KIND_LOADER_CHANGED;
}

constexpr bool is_allocator(ms_alloc_kind kind)
{
    return kind != MS_KIND_THREAD_EXIT && kind != MS_KIND_LOADER_CHANGED;
}

} // namespace memscope
