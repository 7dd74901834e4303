/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The one ABI header shared by the BPF programs and the userspace loader:
 * map keys and values, drop reasons, limits. Nothing else belongs here. */
#ifndef MEMSCOPE_ABI_H
#define MEMSCOPE_ABI_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#include "memscope/probe_abi.h" /* the target-facing contract: probe ops */

#define MS_COMM_LEN 16

/* Default capacities; userspace may override them before load. */
#define MS_DEFAULT_MAX_THREADS 8192
#define MS_DEFAULT_MAX_ALLOCATIONS (1u << 19) /* ~112 bytes of kernel memory each */
#define MS_DEFAULT_MAX_TARGETS 4096
#define MS_MAX_CHILDREN 1024
#define MS_DEFAULT_MAX_GROUPS 16384      /* scope and task totals */
#define MS_DEFAULT_EVENT_RING (8u << 20) /* bytes */
#define MS_MAX_SCOPE_DEPTH 8
#define MS_MAX_TASK_DEPTH 4
#define MS_DEFAULT_STACK_DEPTH 64 /* an interpreter's eval loop is deep: 32 cut most of python3's */
#define MS_MAX_STACK_DEPTH 127 /* the kernel's perf_event_max_stack default */
#define MS_DEFAULT_MAX_STACKS 65536 /* distinct stacks, and allocation sites */
/* Frameless functions (operator new) unwound by their epilogue, per allocation. */
#define MS_MAX_FRAMELESS 3

/* Unwinding without frame pointers (x86-64): one rule per PC range of a
 * file, built by userspace from its .eh_frame (or .debug_frame), sorted by
 * pc. pc is a file offset, as BPF computes it from a mapping:
 * ip - (vm_start - vm_pgoff * 4096); a rule holds up to the next row's pc.
 * The caller's frame: CFA = base register + cfa_off; its return address at
 * CFA - 8; its rbp at CFA + 8 * rbp_off (0: rbp unchanged by this frame). */
enum ms_unwind_kind {
	MS_UNWIND_INVALID = 0, /* no rule here (a gap between functions): the stack ends */
	MS_UNWIND_CFA_RSP = 1,
	MS_UNWIND_CFA_RBP = 2,
	MS_UNWIND_PLT = 3,     /* CFA = rsp + 8, + 8 more once (rip & 15) >= cfa_off */
	MS_UNWIND_SIGNAL = 4,  /* a signal frame: the interrupted state in its sigcontext */
	MS_UNWIND_STOP = 5,    /* the return address is undefined: the real root (_start, clone) */
};
/* In a stack's ips: this frame is a signal frame (the ip is the return
 * trampoline's, __restore_rt), and the next is the interrupted code's exact
 * ip, no return address. User addresses never have this bit. */
#define MS_IP_SIGNAL_FRAME (1ull << 63)
/* Where the kernel's rt_sigframe keeps the interrupted registers, from the
 * signal frame's CFA (its struct ucontext; uc_mcontext at 40, then r8..r15,
 * rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip: x86-64's sigcontext). */
#define MS_SIGFRAME_RBP (40 + 10 * 8)
#define MS_SIGFRAME_RSP (40 + 15 * 8)
#define MS_SIGFRAME_RIP (40 + 16 * 8)
#define MS_UNWIND_RBP_UNKNOWN (-128) /* rbp saved where no rule says: unknown in the caller */
struct ms_unwind_row {
	__u32 pc;
	__u16 cfa_off;
	__u8 kind;
	__s8 rbp_off;
};
/* A file's rows: unwind_rows[first, first + count), keyed as the kernel
 * names a mapping's file (inode, and its device as major << 20 | minor). */
struct ms_unwind_file_key {
	__u64 ino;
	__u32 dev;
	__u32 pad;
};
struct ms_unwind_file {
	__u32 first;
	__u32 count;
};
#define MS_DEFAULT_MAX_UNWIND_FILES 4096
#define MS_DEFAULT_MAX_UNWIND_ROWS (1u << 21) /* 8 bytes each: 16 MiB */
/* Why a walk ended. */
enum ms_stack_end {
	MS_STACK_END_ROOT = 0,      /* the return address is undefined: a real root */
	MS_STACK_END_DEPTH = 1,     /* the depth limit */
	MS_STACK_END_NO_RULE = 2,   /* no unwind rule for the code (no table, a gap) */
	MS_STACK_END_BAD_FRAME = 3, /* the rule led to an unreadable or impossible frame */
};

/* A thread: tids are reused, so the kernel's start time is part of the key.
 * tgid is the host pid, as BPF sees it. */
struct ms_thread_key {
	__u32 tgid;
	__u32 tid;
	__u64 start_ns;
};

/* Threads get a slot in the thread tables (arrays, so a lookup is an index)
 * at their first event; thread_slots names the thread of each slot. */

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
	__u64 track_count;          /* tracker entry point calls (MEMSCOPE_OP_TRACK) */
	/* Frees of unknown blocks after a stint without records (async mode,
	 * or probes off): most were allocated then. */
	__u64 untracked_free_count;
	/* Blocks it freed that were its own latest allocation (no other
	 * allocation of its between): temporaries, as heaptrack counts them. */
	__u64 temporary_count;
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

#define MS_REC_TRACKED 1u /* a variable names this block: its free is reported */

struct ms_alloc_rec {
	__u64 size;
	__u64 alloc_ns;   /* 0 in fast mode: no clock read */
	__u64 stack;      /* the allocating stack's hash (normal mode), or 0 */
	__u32 owner_slot; /* the allocating thread's slot in the thread tables */
	__u32 flags;
};

/* Allocation sites (normal mode): one per process and distinct user stack.
 * The stack itself is kept once, under its hash, in the stack table. */
struct ms_site_key {
	__u32 tgid;
	__u32 pad;
	__u64 stack;
};

struct ms_site_totals {
	__u64 alloc_count;
	__u64 alloc_bytes;
	__u64 temporary_count; /* of them, freed as temporaries (ms_thread_counters) */
	/* This CPU's share of the site's live figures (negative when its
	 * frees outweigh its allocations: a block may be freed on another CPU
	 * than its own), and that share at the process's latest peak: taken by
	 * this CPU's first change to the site after the peak, `peak_epoch` then
	 * naming the peak (ms_proc_live.epoch); a share not changed since reads
	 * as `live_*`. The sum over the CPUs is the site's figure. */
	__s64 live_bytes;
	__s64 live_count;
	__s64 peak_live_bytes;
	__s64 peak_live_count;
	__u64 peak_epoch;
	/* This CPU's allocations at the site in its first size bucket (the
	 * bucket + 1; 0: none yet): a site allocates one size as a rule, and
	 * then needs no lookup of ms_size_totals; other sizes go there. */
	__u64 size_bucket;
	__u64 size_count;
	__u64 size_bytes;
};

/* A process's live figures over all its threads, in one shared entry
 * changed atomically: its peak is exact. Each new peak counts an epoch. */
struct ms_proc_live {
	__s64 live_bytes;
	__s64 live_count;
	__u64 peak_live_bytes;
	__u64 peak_ns; /* CLOCK_MONOTONIC: when the peak was reached */
	__u64 epoch;   /* new peaks so far */
};

/* Allocation sizes by power of two, per process and site (stack 0: no
 * site, as in fast mode): bucket 0 holds sizes 0 and 1, bucket k > 0 sizes
 * 2^k to 2^(k+1)-1. */
struct ms_size_key {
	__u32 tgid;
	__u32 bucket;
	__u64 stack;
};

struct ms_size_totals {
	__u64 count;
	__u64 bytes;
};

/* A user stack, innermost first: the allocator's caller is ips[0] (the
 * return address), then frames unwound by epilogue through frameless
 * functions such as operator new, then the frame-pointer walk. The table's
 * value size is nr plus the --stack-depth userspace chose. */
#define MS_STACK_SLOTS (MS_MAX_STACK_DEPTH + MS_MAX_FRAMELESS + 1)

struct ms_stack {
	__u64 nr;
	__u64 ips[MS_STACK_SLOTS];
};

/* A frame of a new stack with the file mapped where it is, as the kernel
 * saw it then: symbolizing needs no /proc/PID/maps, so a process that
 * exited meanwhile is symbolized all the same. */
struct ms_stack_frame {
	__u64 ip;
	__u64 base; /* the mapping's start less its file offset: ip - base is the file offset */
	__u64 ino;  /* the file's inode; 0 for anonymous memory or no mapping */
	__u32 dev;  /* its device, kernel encoding (major << 20 | minor) */
	__u32 pad;
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
	MS_KIND_LOADER_CHANGED,    /* ld.so's _dl_debug_state: a library came or went */
	MS_KIND__COUNT,
};

/* uprobe_multi links (where the kernel has them): one session program
 * serves every allocator site of a file in one process; each site's cookie
 * carries its kind and how it may be counted. */
#define MS_COOKIE_KIND_SHIFT 32
#define MS_COOKIE_KIND_MASK 0xffULL
/* The function calls no other probed function (glibc's malloc and calloc):
 * async mode counts it at its entry, with no return probe, below this size
 * (above it the call may well fail, and its return says so). */
#define MS_COOKIE_LEAF (1ULL << 40)
#define MS_ASYNC_ENTRY_MAX_SIZE (1ULL << 20)
/* The kernel's attach types for them (libbpf 1.1 predates them). */
#define MS_ATTACH_UPROBE_MULTI 48
#define MS_ATTACH_UPROBE_SESSION 57

/* What the BPF side had to give up, counted per CPU: each reason once,
 * with the name the report gives it (X(ENUM, report_name), why). */
#define MS_DROP_REASONS(X)                                                             \
	X(NO_TASK_STORAGE, no_task_storage)       /* per-thread state unavailable: event lost */ \
	X(THREAD_TABLE_FULL, thread_table_full)   /* thread maps full: event lost */ \
	X(ALLOC_TABLE_FULL, allocation_table_full) /* allocation counted but its record dropped */ \
	X(LOST_RETURN, lost_return)               /* an entry whose return never came */ \
	X(READ_FAULT, read_fault)                 /* posix_memalign's result unreadable */ \
	X(STALE_RECORD, stale_record)             /* a block reused whose free we never saw */ \
	X(EVENT_RING_FULL, event_ring_full)       /* an event for userspace did not fit: lost */ \
	X(GROUP_TABLE_FULL, group_table_full)     /* a scope's or task's totals did not fit */ \
	X(SCOPE_TOO_DEEP, scope_too_deep)         /* scopes or tasks nested deeper than we keep */ \
	X(SITE_TABLE_FULL, site_table_full)       /* an allocation counted, but not to a site */ \
	X(STACK_TABLE_FULL, stack_table_full)     /* a new stack's frames did not fit: its site has none */ \
	X(STACK_SCRATCH_BUSY, stack_scratch_busy) /* preempted mid-walk on a preemptible kernel: no site */ \
	X(SIZE_TABLE_FULL, size_table_full)       /* an allocation counted, but not in the size histogram */ \
	X(PROCESS_TABLE_FULL, process_table_full) /* a process's live sum not kept: its peak is sampled */

#define MS_DROP_ENUM(e, name) MS_DROP_##e,
enum ms_drop_reason {
	MS_DROP_REASONS(MS_DROP_ENUM)
	MS_DROP__COUNT,
};
#undef MS_DROP_ENUM

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

/* Modes the BPF side runs in (MEMSCOPE_MODE_* values; "off" is userspace's:
 * no probe attached at all). */
enum ms_mode {
	MS_MODE_NORMAL = MEMSCOPE_MODE_NORMAL, /* records, live bytes, variable stream */
	MS_MODE_FAST = MEMSCOPE_MODE_FAST,     /* records, live bytes, variables by name */
	MS_MODE_ASYNC = MEMSCOPE_MODE_ASYNC,   /* per-thread counters only */
	/* Going off: new calls are not seen, calls in flight still return
	 * through their probes before they are detached. */
	MS_MODE_OFF = MEMSCOPE_MODE_OFF,
};

/* Variables named in fast mode, counted by descriptor. */
struct ms_var_key {
	__u32 tgid;
	__u32 pad;
	__u64 desc;
	__u64 site; /* MS_SITE_MODULE_SHIFT */
};

struct ms_var_totals {
	__u64 count;
	__u64 bytes;
};

/* Allocations made inside a scope or a task, per CPU. */
enum ms_group_kind {
	MS_GROUP_SCOPE = 1, /* id 0, desc = the scope's descriptor */
	MS_GROUP_TASK = 2,  /* id = task id, desc = the task's descriptor */
};

/* A probe site's runtime address, with the module userspace numbered it
 * (the uprobe cookie) in the top 16 bits: user addresses fit in 47. Enough
 * for userspace to find a descriptor's module and load bias. */
#define MS_SITE_MODULE_SHIFT 48

struct ms_group_key {
	__u32 tgid;
	__u32 kind;
	__u64 id;
	__u64 desc;
	__u64 site;  /* where the scope or task was entered (MS_SITE_MODULE_SHIFT) */
};

struct ms_group_totals {
	__u64 alloc_count;
	__u64 alloc_bytes;
};

/* Events for userspace, through one ring buffer: small records, since every
 * cache line a probe writes costs it. */
enum ms_event_type {
	MS_EV_VARIABLE = 1,   /* a tracker entry point named a variable */
	MS_EV_VARIABLE_FREE,  /* a tracked block was freed (addr) */
	MS_EV_VARIABLE_MOVE,  /* realloc moved a tracked block (old_addr -> addr, size) */
	MS_EV_MODE_REQUEST,   /* the target asked for a mode */
	MS_EV_LOADER_CHANGED, /* a library was loaded or unloaded in tgid */
	MS_EV_NEW_STACK,      /* a stack first seen in tgid, with its frames' mappings */
	MS_EV_BOUND_EXIT,     /* a thread the tgid's probes are bound to exited (addr = its tid) */
	MS_EV_NEW_THREAD,     /* a thread of a tgid bound to one thread only started (addr = its tid) */
	MS_EV_EXEC,           /* tgid exec'd a new program (addr = the first thread slot it may use,
			       * size = the exec'ing thread's tid before: another than tgid when
			       * a thread other than the leader exec'd) */
};

#define MS_EV_HEAP 1u     /* variable: addr starts a block we saw allocated */
#define MS_EV_EXTENDED 2u /* variable: struct ms_variable_ext follows */

struct ms_event_head {
	__u32 type;
	__u32 tgid;
	__u32 tid;
	__u32 flags;
};

/* MS_EV_VARIABLE: 56 bytes, one cache line with the ring's own header. */
struct ms_variable_event {
	struct ms_event_head h;
	__u64 addr;
	__u64 size;     /* the block's allocated size (MS_EV_HEAP), else what was passed */
	__u64 desc;     /* descriptor, a runtime address in the module of `site` */
	__u64 site;     /* the probe site that fired (MS_SITE_MODULE_SHIFT) */
	__u64 alloc_ns; /* the block's allocation time (MS_EV_HEAP) */
};

/* Follows a variable event made inside a scope or task, or with a type
 * name given at run time (Rust). */
struct ms_variable_ext {
	__u64 thread_start_ns;
	__u64 type_addr; /* a type name given at run time, or 0 */
	__u64 type_len;
	__u64 scope;     /* innermost scope's descriptor, or 0 */
	__u64 scope_site;
	__u64 task;      /* current task id, or 0 */
	__u64 task_desc;
	__u64 task_site;
};

struct ms_variable_event_ext {
	struct ms_variable_event base;
	struct ms_variable_ext ext;
};

/* MS_EV_NEW_STACK: nr frames follow the fixed part. */
struct ms_stack_event {
	struct ms_event_head h;
	__u64 stack; /* its hash */
	__u64 nr;
	struct ms_stack_frame frames[MS_STACK_SLOTS];
};

/* MS_EV_VARIABLE_FREE, MS_EV_VARIABLE_MOVE, MS_EV_MODE_REQUEST (size = mode),
 * MS_EV_LOADER_CHANGED (head only), MS_EV_BOUND_EXIT and MS_EV_NEW_THREAD
 * (addr = tid). */
struct ms_block_event {
	struct ms_event_head h;
	__u64 ts; /* CLOCK_MONOTONIC ns */
	__u64 addr;
	__u64 size;
	__u64 old_addr;
};

/* --- System-wide (-a), tier 0: every process, tracepoints only ----------
 * system.bpf.c keeps one entry per live process (tgid), filled by rss_stat,
 * the brk/mmap/munmap syscalls and the scheduler's fork/exec/exit; a
 * process's entry leaves the map at its exit, its last figures sent in the
 * exit event. No uprobe: nothing in any process's code is patched. */
#define MS_DEFAULT_MAX_SYS_PROCS 65536
#define MS_DEFAULT_SYS_RING (4u << 20) /* bytes */
/* rss_stat's members, as the kernel numbers them (MM_FILEPAGES...). */
enum ms_rss_member {
	MS_RSS_FILE = 0,
	MS_RSS_ANON = 1,
	MS_RSS_SWAP = 2,
	MS_RSS_SHMEM = 3,
	MS_RSS_MEMBERS = 4,
};
struct ms_sys_proc {
	__u64 rss[MS_RSS_MEMBERS];  /* bytes now (swap: bytes swapped out) */
	__u64 peak_rss_anon;        /* bytes */
	__u64 peak_rss;             /* file + anon + shmem, bytes */
	__u64 brk_bytes;            /* the heap's size now: brk - start_brk */
	__u64 peak_brk_bytes;
	__u64 mmap_anon_bytes;      /* anonymous private mappings made, bytes (cumulative) */
	__u64 munmap_bytes;         /* unmapped, any kind (cumulative) */
	__u64 brk_calls, mmap_anon_calls, munmap_calls;
	__u64 start_ns;             /* the kernel's start time of its leader (a pid's reuse tells apart) */
	__u64 start_boottime_ns;    /* the same on the boot clock (what /proc/PID/stat says, in ticks) */
	__u64 first_seen_ns;        /* CLOCK_MONOTONIC: when this entry began */
	__u64 first_rss_anon;       /* bytes then */
	__u64 cgroup_id;            /* cgroup v2 id of its last thread seen */
	__u32 ppid;
	__u32 ns_pid;               /* its pid in its own pid namespace */
	__u32 ns_level;             /* 0: the host's namespace */
	__u32 execs;
	__u32 forks;                /* processes it started */
	__u32 flags;                /* MS_SYS_* */
	char comm[MS_COMM_LEN];
};
#define MS_SYS_SEEN_FORK 1u     /* born while the tracer watched */
#define MS_SYS_EXITED 2u
#define MS_SYS_OOM_KILLED 4u

enum ms_sys_event_kind {
	MS_SYS_EV_FORK = 1, /* a new process (pid), its parent (ppid) */
	MS_SYS_EV_EXEC,     /* pid ran a new program (comm is the new one) */
	MS_SYS_EV_EXIT,     /* pid's last thread left; proc holds its last figures */
	MS_SYS_EV_OOM,      /* pid was chosen by the OOM killer; its figures then */
	MS_SYS_EV_HELD,     /* pid waits at its loader for its heap probes (exit_code: the call's number) */
};
/* MS_SYS_EV_EXEC's exit_code: the new program matched a --heap selector
 * and waits at its loader's _dl_debug_state until userspace releases it. */
#define MS_SYS_EXEC_HELD 1

/* -a --heap: a new process chosen for heap tracing waits in a sleepable
 * uprobe on ld.so's _dl_debug_state (which the loader calls once the
 * program's libraries are mapped, before any of their code runs) until
 * userspace has attached its probes, at most MS_DEFAULT_HOLD_NS a call.
 * No signal, no ptrace: its parent sees nothing. */
#define MS_DEFAULT_HOLD_NS (500ull * 1000 * 1000)
struct ms_hold {
	__u32 calls;    /* _dl_debug_state calls that waited (BPF) */
	__u32 released; /* the last call userspace let go (userspace) */
};
/* The selectors the exec tracepoint matches in the kernel. */
struct ms_hold_comm {
	char comm[MS_COMM_LEN];
};
struct ms_hold_inode {
	__u64 ino;
	__u32 dev; /* major << 20 | minor, as the kernel encodes it */
	__u32 pad;
};
#define MS_MAX_HOLD_SELECTORS 256
struct ms_sys_event {
	__u32 kind;
	__u32 pid;
	__u64 ts;          /* CLOCK_MONOTONIC ns */
	__s32 exit_code;   /* MS_SYS_EV_EXIT: as wait(2) encodes it */
	__u32 pad;
	struct ms_sys_proc proc;
};
/* Why tier 0 lost something: the counters userspace reports. */
#define MS_SYS_DROP_REASONS(X) \
	X(sys_table_full)      /* a process not tracked: the process table is full */ \
	X(sys_ring_full)       /* a fork, exec, exit or OOM event lost: the ring was full */ \
	X(hold_timeout)        /* a chosen process went on before its heap probes were in place */
enum ms_sys_drop {
#define MS_SYS_DROP_ENUM(name) MS_SYS_DROP_##name,
	MS_SYS_DROP_REASONS(MS_SYS_DROP_ENUM)
#undef MS_SYS_DROP_ENUM
	MS_SYS_DROP_COUNT
};

#endif /* MEMSCOPE_ABI_H */
