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

// What jemalloc, tcmalloc and mimalloc add to the C API: probed wherever a
// file defines them (only those allocators do). jemalloc's xallocx (resize
// in place) and mimalloc's heap-first mi_heap_* functions are not probed.
inline constexpr std::array<AllocatorFunction, 73> kAllocatorExtensions{{
    // jemalloc
    {"mallocx", MS_KIND_MALLOC},
    {"rallocx", MS_KIND_REALLOC},
    {"dallocx", MS_KIND_FREE},
    {"sdallocx", MS_KIND_FREE},
    // tcmalloc
    {"tc_malloc", MS_KIND_MALLOC},
    {"tc_malloc_skip_new_handler", MS_KIND_MALLOC},
    {"tc_new", MS_KIND_MALLOC},
    {"tc_newarray", MS_KIND_MALLOC},
    {"tc_new_nothrow", MS_KIND_MALLOC},
    {"tc_newarray_nothrow", MS_KIND_MALLOC},
    {"tc_new_aligned", MS_KIND_MALLOC},
    {"tc_newarray_aligned", MS_KIND_MALLOC},
    {"tc_new_aligned_nothrow", MS_KIND_MALLOC},
    {"tc_newarray_aligned_nothrow", MS_KIND_MALLOC},
    {"tc_valloc", MS_KIND_MALLOC},
    {"tc_pvalloc", MS_KIND_MALLOC},
    {"tc_calloc", MS_KIND_CALLOC},
    {"tc_realloc", MS_KIND_REALLOC},
    {"tc_memalign", MS_KIND_MEMALIGN},
    {"tc_posix_memalign", MS_KIND_POSIX_MEMALIGN},
    {"tc_free", MS_KIND_FREE},
    {"tc_free_sized", MS_KIND_FREE},
    {"tc_cfree", MS_KIND_FREE},
    {"tc_delete", MS_KIND_FREE},
    {"tc_deletearray", MS_KIND_FREE},
    {"tc_delete_nothrow", MS_KIND_FREE},
    {"tc_deletearray_nothrow", MS_KIND_FREE},
    {"tc_delete_sized", MS_KIND_FREE},
    {"tc_deletearray_sized", MS_KIND_FREE},
    {"tc_delete_aligned", MS_KIND_FREE},
    {"tc_deletearray_aligned", MS_KIND_FREE},
    {"tc_delete_sized_aligned", MS_KIND_FREE},
    {"tc_deletearray_sized_aligned", MS_KIND_FREE},
    {"tc_delete_aligned_nothrow", MS_KIND_FREE},
    {"tc_deletearray_aligned_nothrow", MS_KIND_FREE},
    // mimalloc
    {"mi_malloc", MS_KIND_MALLOC},
    {"mi_zalloc", MS_KIND_MALLOC},
    {"mi_malloc_small", MS_KIND_MALLOC},
    {"mi_zalloc_small", MS_KIND_MALLOC},
    {"mi_new", MS_KIND_MALLOC},
    {"mi_new_nothrow", MS_KIND_MALLOC},
    {"mi_new_aligned", MS_KIND_MALLOC},
    {"mi_new_aligned_nothrow", MS_KIND_MALLOC},
    {"mi_malloc_aligned", MS_KIND_MALLOC},
    {"mi_zalloc_aligned", MS_KIND_MALLOC},
    {"mi_malloc_aligned_at", MS_KIND_MALLOC},
    {"mi_zalloc_aligned_at", MS_KIND_MALLOC},
    {"mi_valloc", MS_KIND_MALLOC},
    {"mi_pvalloc", MS_KIND_MALLOC},
    {"mi_calloc", MS_KIND_CALLOC},
    {"mi_mallocn", MS_KIND_CALLOC},
    {"mi_new_n", MS_KIND_CALLOC},
    {"mi_calloc_aligned", MS_KIND_CALLOC},
    {"mi_calloc_aligned_at", MS_KIND_CALLOC},
    {"mi_realloc", MS_KIND_REALLOC},
    {"mi_reallocf", MS_KIND_REALLOC},
    {"mi_rezalloc", MS_KIND_REALLOC},
    {"mi_realloc_aligned", MS_KIND_REALLOC},
    {"mi_realloc_aligned_at", MS_KIND_REALLOC},
    {"mi_rezalloc_aligned", MS_KIND_REALLOC},
    {"mi_rezalloc_aligned_at", MS_KIND_REALLOC},
    {"mi_new_realloc", MS_KIND_REALLOC},
    {"mi_reallocn", MS_KIND_REALLOCARRAY},
    {"mi_new_reallocn", MS_KIND_REALLOCARRAY},
    {"mi_recalloc", MS_KIND_REALLOCARRAY},
    {"mi_free", MS_KIND_FREE},
    {"mi_free_size", MS_KIND_FREE},
    {"mi_free_size_aligned", MS_KIND_FREE},
    {"mi_free_aligned", MS_KIND_FREE},
    {"mi_cfree", MS_KIND_FREE},
    {"mi_memalign", MS_KIND_MEMALIGN},
    {"mi_aligned_alloc", MS_KIND_MEMALIGN},
    {"mi_posix_memalign", MS_KIND_POSIX_MEMALIGN},
}};

// C++'s operator new and delete, every form (plain, array; nothrow, sized,
// aligned). libstdc++'s call malloc and free, already probed: they are
// probed only in a file that is an allocator itself (it defines malloc and
// jemalloc's, tcmalloc's or mimalloc's own entry points), whose operators
// do not reach its exported malloc. A call that does reach it is counted
// once: the BPF side ignores an allocator call made inside another.
inline constexpr std::array<AllocatorFunction, 20> kCxxOperators{{
    {"_Znwm", MS_KIND_MALLOC},
    {"_Znam", MS_KIND_MALLOC},
    {"_ZnwmRKSt9nothrow_t", MS_KIND_MALLOC},
    {"_ZnamRKSt9nothrow_t", MS_KIND_MALLOC},
    {"_ZnwmSt11align_val_t", MS_KIND_MALLOC},
    {"_ZnamSt11align_val_t", MS_KIND_MALLOC},
    {"_ZnwmSt11align_val_tRKSt9nothrow_t", MS_KIND_MALLOC},
    {"_ZnamSt11align_val_tRKSt9nothrow_t", MS_KIND_MALLOC},
    {"_ZdlPv", MS_KIND_FREE},
    {"_ZdaPv", MS_KIND_FREE},
    {"_ZdlPvm", MS_KIND_FREE},
    {"_ZdaPvm", MS_KIND_FREE},
    {"_ZdlPvRKSt9nothrow_t", MS_KIND_FREE},
    {"_ZdaPvRKSt9nothrow_t", MS_KIND_FREE},
    {"_ZdlPvSt11align_val_t", MS_KIND_FREE},
    {"_ZdaPvSt11align_val_t", MS_KIND_FREE},
    {"_ZdlPvmSt11align_val_t", MS_KIND_FREE},
    {"_ZdaPvmSt11align_val_t", MS_KIND_FREE},
    {"_ZdlPvSt11align_val_tRKSt9nothrow_t", MS_KIND_FREE},
    {"_ZdaPvSt11align_val_tRKSt9nothrow_t", MS_KIND_FREE},
}};

// One entry point of each allocator that defines its own C++ operators.
inline constexpr std::array<std::string_view, 3> kOperatorAllocatorMarkers{{"mallocx", "tc_malloc", "mi_malloc"}};

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
