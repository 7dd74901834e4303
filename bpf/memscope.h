/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The one ABI header shared by the BPF programs and the userspace loader:
 * map keys and values, drop reasons, limits. Nothing else belongs here. */
#ifndef MEMSCOPE_ABI_H
#define MEMSCOPE_ABI_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define MS_COMM_LEN 16

/* Default capacities; userspace may override them before load. */
#define MS_DEFAULT_MAX_THREADS 8192
#define MS_DEFAULT_MAX_ALLOCATIONS (1u << 19) /* ~112 bytes of kernel memory each */
#define MS_DEFAULT_MAX_TARGETS 64
#define MS_MAX_CHILDREN 1024

/* A thread: tids are reused, so the kernel's start time is part of the key.
 * tgid is the host pid, as BPF sees it. */
struct ms_thread_key {
	__u32 tgid;
	__u32 tid;
	__u64 start_ns;
};

/* Per-thread counters, per CPU: only the calling thread writes its own entry,
 * userspace sums the CPUs. */
struct ms_thread_counters {
	__u64 alloc_count;          /* successful allocation calls by this thread */
	__u64 alloc_bytes;          /* their requested sizes */
	__u64 free_count;           /* frees of known blocks by this thread */
	__u64 free_bytes;
	__u64 failed_alloc_count;   /* NULL with n > 0 */
	__u64 unmatched_free_count; /* free of a block never seen allocated */
	__u64 untracked_alloc_count;/* allocations whose record did not fit the map */
	/* Unknown blocks freed while the thread exits: glibc emptying its
	 * per-thread cache of blocks the program had already freed. */
	__u64 exit_unmatched_free_count;
};

/* Per-thread live figures, one copy: the owner adds, any freeing thread
 * subtracts atomically; only the owner raises the peak. */
struct ms_thread_live {
	__s64 live_bytes;
	__s64 live_count;
	__u64 peak_live_bytes;
};

/* One outstanding allocation. */
struct ms_alloc_key {
	__u32 tgid;
	__u32 pad;
	__u64 addr;
};

struct ms_alloc_rec {
	__u64 size;
	__u64 alloc_ns;
	struct ms_thread_key owner;
};

/* Which allocator entry point a probe watches; the argument layout follows. */
enum ms_alloc_kind {
	MS_KIND_MALLOC = 0,        /* (size): malloc, valloc, pvalloc */
	MS_KIND_CALLOC,            /* (n, size) */
	MS_KIND_REALLOC,           /* (ptr, size) */
	MS_KIND_REALLOCARRAY,      /* (ptr, n, size) */
	MS_KIND_MEMALIGN,          /* (align, size): memalign, aligned_alloc */
	MS_KIND_POSIX_MEMALIGN,    /* (int *memptr, align, size) -> int */
	MS_KIND_FREE,              /* (ptr) */
	MS_KIND_THREAD_EXIT,       /* glibc's __call_tls_dtors: the thread is exiting */
	MS_KIND__COUNT,
};

/* What the BPF side had to give up, counted per CPU. */
enum ms_drop_reason {
	MS_DROP_NO_TASK_STORAGE = 0, /* per-thread state unavailable: event lost */
	MS_DROP_THREAD_TABLE_FULL,   /* thread maps full: event lost */
	MS_DROP_ALLOC_TABLE_FULL,    /* allocation counted but its record dropped */
	MS_DROP_LOST_RETURN,         /* an entry whose return never came */
	MS_DROP_READ_FAULT,          /* posix_memalign's result unreadable */
	MS_DROP_STALE_RECORD,        /* a block reused whose free we never saw */
	MS_DROP__COUNT,
};

/* One traced process: registered by userspace, filled by the tracepoints. */
struct ms_target {
	__u64 forks;        /* processes it forked (not threads) */
	__u64 execs;        /* execve calls that succeeded in it */
	__s32 exit_code;    /* wait status of the whole process, once exited */
	__u32 exited;
};

struct ms_thread_name {
	char comm[MS_COMM_LEN];
};

#endif /* MEMSCOPE_ABI_H */
