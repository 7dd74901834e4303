// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Allocator uprobes for memscope-trace.
 *
 * Entry probes stash the call's arguments in task storage (per thread, never
 * per CPU: a thread may migrate or sleep inside malloc); one shared return
 * probe finishes the outermost allocator call on the thread. Nesting is told
 * by the stack pointer: a call made while an outer allocator call is in
 * flight runs on a deeper stack, so it is not counted a second time (aliases,
 * realloc(NULL, n) -> malloc, memalign -> malloc, realloc(p, 0) -> free),
 * and a tail call runs on the very same stack pointer. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "memscope.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Wake the reader only when the ring is this full; it polls anyway. */
const volatile __u64 event_wakeup_bytes = MS_DEFAULT_EVENT_RING / 8;

/* Live settings, written by userspace while the probes run. A call belongs
 * to the mode in force at its entry probe (kept in its task storage). */
volatile __u32 mode = MS_MODE_NORMAL;
/* Set once a stint without records (async, or probes off) happened. */
volatile __u32 gap_seen = 0;
/* Calibration (auto mode) runs its helper process in a mode of its own,
 * leaving the target's alone. */
volatile __u32 calib_tgid = 0;
volatile __u32 calib_mode = 0;
/* -a: each heap-traced process may run in a mode of its own (its budget's
 * step); set once any does, so that -p and run pay no lookup. */
volatile __u32 per_process_modes = 0;
/* Bumped each time the probes come back on: state left by a call that was
 * in flight when they went off (its return never seen) is stale. */
volatile __u32 epoch = 0;
/* Thread slots handed out so far; the tables hold max_slots. */
volatile __u32 next_slot = 0;
const volatile __u32 max_slots = MS_DEFAULT_MAX_THREADS;
/* Frames kept per allocation stack in normal mode; 0: no stacks. */
const volatile __u32 stack_depth = MS_DEFAULT_STACK_DEPTH;
/* Raised by userspace each time a file's unwind table arrives: rules cached
 * before (the epilogue or frame-pointer guess for a library dlopen'd a
 * moment ago) are not used again. */
volatile __u32 unwind_generation = 0;

struct ms_inflight {
	__u64 entry_sp;     /* sp at the outermost entry; 0 when none in flight */
	__u64 size;
	__u64 memptr;       /* posix_memalign's out parameter */
	__u64 old_addr;     /* realloc's block */
	__u32 kind;
	__u32 has_old;      /* the old block's record was taken at entry */
	__u32 exiting;      /* the thread runs its exit path */
	__u32 scope_depth;  /* tracker scopes entered and not left */
	__u32 mode;         /* the mode at the outermost entry */
	__u32 slot;         /* this thread's slot in the thread tables */
	__u32 epoch;        /* the epoch of the outermost entry */
	__u32 pad4;
	__u32 slot_state;   /* 0: none yet, 1: slot holds it, 2: tables full */
	__u32 pad3;
	__u64 last_alloc;   /* the thread's latest allocation (normal, fast); 0: none */
	struct ms_alloc_rec old;
	__u64 scopes[MS_MAX_SCOPE_DEPTH]; /* descriptors, innermost at scope_depth - 1 */
	__u64 scope_sites[MS_MAX_SCOPE_DEPTH];
	__u32 task_depth;
	__u32 pad2;
	__u64 task_ids[MS_MAX_TASK_DEPTH];
	__u64 task_descs[MS_MAX_TASK_DEPTH];
	__u64 task_sites[MS_MAX_TASK_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct ms_inflight);
} inflight SEC(".maps");

/* Indexed by thread slot: a lookup is an index, not a hash. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MS_DEFAULT_MAX_THREADS);
	__type(key, __u32);
	__type(value, struct ms_thread_counters);
} thread_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MS_DEFAULT_MAX_THREADS);
	__type(key, __u32);
	__type(value, struct ms_thread_live);
} thread_live SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MS_DEFAULT_MAX_THREADS);
	__type(key, __u32);
	__type(value, struct ms_thread_key);
} thread_slots SEC(".maps");

/* Preallocated, never LRU: a full table is counted, not silently evicted. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MS_DEFAULT_MAX_ALLOCATIONS);
	__type(key, struct ms_alloc_key);
	__type(value, struct ms_alloc_rec);
} allocs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MS_DROP__COUNT);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MS_DEFAULT_MAX_TARGETS);
	__type(key, __u32);
	__type(value, struct ms_target);
} targets SEC(".maps");

/* tgid -> its own mode (per_process_modes). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MS_DEFAULT_MAX_TARGETS);
	__type(key, __u32);
	__type(value, __u32);
} process_modes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MS_DEFAULT_MAX_THREADS);
	__type(key, struct ms_thread_key);
	__type(value, struct ms_thread_name);
} thread_names SEC(".maps");

/* Processes the tracer holds (ptrace) each time ld.so has mapped libraries,
 * until their allocators are probed: tgid -> the signal that stops the
 * thread (one the process neither blocks nor handles at that point). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MS_DEFAULT_MAX_TARGETS);
	__type(key, __u32);
	__type(value, __u32);
} loader_holds SEC(".maps");

/* Threads sent the hold's signal, not taken back yet: tid -> the signal. A
 * signal of the same number from elsewhere (a socket's SIGURG, a terminal's
 * SIGWINCH) finds no entry and is the program's. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MS_DEFAULT_MAX_TARGETS);
	__type(key, __u32);
	__type(value, __u32);
} holds_sent SEC(".maps");

/* A process's probes fire while one of the threads their perf events are
 * bound to lives (the kernel filters hits by those threads' memory): the
 * tracer keeps two bound where no ptrace stop tells it of their exits, and
 * moves one when it goes. Bound tids (-> tgid), and the processes bound to
 * one thread only, waiting for a second. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * MS_DEFAULT_MAX_TARGETS);
	__type(key, __u32);
	__type(value, __u32);
} bound_tasks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MS_DEFAULT_MAX_TARGETS);
	__type(key, __u32);
	__type(value, __u32);
} lone_bindings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MS_DEFAULT_MAX_GROUPS);
	__type(key, struct ms_group_key);
	__type(value, struct ms_group_totals);
} group_totals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MS_DEFAULT_MAX_GROUPS);
	__type(key, struct ms_var_key);
	__type(value, struct ms_var_totals);
} var_totals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, MS_DEFAULT_EVENT_RING);
} events SEC(".maps");

/* Allocation sites: counts per process and stack, per CPU; allocated as
 * sites appear (88 bytes a CPU each: preallocated, 65,536 of them would
 * cost 88 MiB on 16 CPUs before the first allocation). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MS_DEFAULT_MAX_STACKS);
	__type(key, struct ms_site_key);
	__type(value, struct ms_site_totals);
} sites SEC(".maps");

/* Each process's live sum and peak (ms_proc_live). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MS_DEFAULT_MAX_TARGETS);
	__type(key, __u32);
	__type(value, struct ms_proc_live);
} proc_live SEC(".maps");

/* Allocation sizes by process, site and power of two, per CPU; allocated
 * as buckets are first used (a value per CPU each: preallocated, the
 * table would cost its whole size on every CPU from the start). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 2 * MS_DEFAULT_MAX_STACKS);
	__type(key, struct ms_size_key);
	__type(value, struct ms_size_totals);
} sizes SEC(".maps");

/* Each distinct stack once, by hash; written only when a site is new.
 * Userspace sizes the value to the --stack-depth it asked for. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MS_DEFAULT_MAX_STACKS);
	__uint(key_size, sizeof(__u64));
	__uint(value_size, sizeof(struct ms_stack)); /* no BTF type: resized at load */
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ms_stack);
} stack_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ms_stack_event);
} stack_event_scratch SEC(".maps");

/* The top of the user stack, read at once: the frame-pointer chain is
 * walked in this copy, and only frames beyond it cost another read. A read
 * costs about the same for 512 bytes as for 4 KiB here, and a deep stack
 * of small frames (32 of them) then needs one: ~1,160 ns a walk with 512
 * bytes, ~900 with 4 KiB (bpf_stats, alloc_pairs at depth 29). */
#define STACK_COPY_WORDS 512 /* 4 KiB */
struct stack_copy {
	__u64 w[STACK_COPY_WORDS];
	/* The CPU's scratch is in use: uprobe programs run with migration,
	 * not preemption, disabled, so on a preemptible kernel a program on
	 * this CPU may start while another is mid-walk. */
	__u64 busy;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stack_copy);
} stack_copy_scratch SEC(".maps");

/* child pid -> parent tgid, for processes a target forked. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MS_MAX_CHILDREN);
	__type(key, __u32);
	__type(value, __u32);
} children SEC(".maps");

static __always_inline void count_drop(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&drops, &reason);
	if (n)
		*n += 1;
}

/* The calling thread's state, made at its first probe hit; NULL (counted)
 * when the kernel has no room for it. */
static __always_inline struct ms_inflight *own_state(void)
{
	struct ms_inflight *st = bpf_task_storage_get(&inflight, bpf_get_current_task_btf(), 0,
						      BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (!st)
		count_drop(MS_DROP_NO_TASK_STORAGE);
	return st;
}

/* Commit a record; wake the reader only when the ring fills (it polls anyway). */
static __always_inline void event_submit(void *ev, bool urgent)
{
	bool wake = urgent || bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= event_wakeup_bytes;

	bpf_ringbuf_submit(ev, wake ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
}

/* A block event (also used for mode requests and loader changes). */
static __always_inline void report_event(__u32 type, __u32 tgid, __u64 old_addr, __u64 addr,
					 __u64 size, bool urgent)
{
	struct ms_block_event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);

	if (!ev) {
		count_drop(MS_DROP_EVENT_RING_FULL);
		return;
	}
	ev->h.type = type;
	ev->h.tgid = tgid;
	ev->h.tid = (__u32)bpf_get_current_pid_tgid();
	ev->h.flags = 0;
	ev->ts = bpf_ktime_get_ns();
	ev->old_addr = old_addr;
	ev->addr = addr;
	ev->size = size;
	event_submit(ev, urgent);
}

/* A tracked block left the program (or moved): tell userspace. */
static __always_inline void report_block(__u32 type, __u32 tgid, __u64 old_addr, __u64 addr,
					 __u64 size)
{
	report_event(type, tgid, old_addr, addr, size, false);
}

static __always_inline void self_key(struct ms_thread_key *key)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 id = bpf_get_current_pid_tgid();

	key->tgid = id >> 32;
	key->tid = (__u32)id;
	key->start_ns = task->start_time;
}

/* Look up an entry of a table of totals, creating it zeroed on first use;
 * a full table is counted as `full`. */
static __always_inline void *lookup_or_init(void *map, const void *key, const void *zero, __u32 full)
{
	void *v = bpf_map_lookup_elem(map, key);

	if (v)
		return v;
	bpf_map_update_elem(map, key, zero, BPF_NOEXIST);
	v = bpf_map_lookup_elem(map, key);
	if (!v)
		count_drop(full);
	return v;
}

/* The mode for the calling process (the calibration helper has its own;
 * under -a, a process may have its own). */
static __always_inline __u32 mode_now(void)
{
	__u32 c = calib_tgid;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 *own;

	if (c && c == tgid)
		return calib_mode;
	if (per_process_modes) {
		own = bpf_map_lookup_elem(&process_modes, &tgid);
		if (own)
			return *own;
	}
	return mode;
}

/* The mode now, and the calling thread's state unless it is off (NULL). */
static __always_inline struct ms_inflight *state_unless_off(__u32 *mode)
{
	*mode = mode_now();
	return *mode == MS_MODE_OFF ? NULL : own_state();
}

/* This thread's slot in the thread tables, handed out at its first event;
 * -1 (counted) when the tables are full. */
static __always_inline int thread_slot(struct ms_inflight *st)
{
	struct ms_thread_key *owner;
	__u32 s;

	if (st->slot_state == 1)
		return st->slot;
	if (st->slot_state == 0) {
		s = __sync_fetch_and_add(&next_slot, 1);
		owner = s < max_slots ? bpf_map_lookup_elem(&thread_slots, &s) : 0;
		if (owner) {
			self_key(owner);
			st->slot = s;
			st->slot_state = 1;
			return s;
		}
		st->slot_state = 2;
	}
	count_drop(MS_DROP_THREAD_TABLE_FULL);
	return -1;
}

static __always_inline struct ms_thread_counters *counters_of(int slot)
{
	__u32 s = slot;
	return slot < 0 ? 0 : bpf_map_lookup_elem(&thread_counters, &s);
}

static __always_inline struct ms_thread_live *live_of(int slot)
{
	__u32 s = slot;
	return slot < 0 ? 0 : bpf_map_lookup_elem(&thread_live, &s);
}

/* A new process peak at `now` live bytes, unless another thread's is
 * higher: its epoch, or 0. */
static __always_inline __u64 raise_peak(struct ms_proc_live *p, __u64 now)
{
	__u64 old = p->peak_live_bytes;

	for (int i = 0; i < 4; i++) {
		if (now <= old)
			return 0;
		__u64 seen = __sync_val_compare_and_swap(&p->peak_live_bytes, old, now);
		if (seen == old) {
			p->peak_ns = bpf_ktime_get_ns();
			return __sync_fetch_and_add(&p->epoch, 1) + 1;
		}
		old = seen;
	}
	return 0;
}

/* A block's bytes and count in (positive) or out (negative) of its
 * process's live sum; a new peak's epoch in *peak_epoch (else 0). */
static __always_inline struct ms_proc_live *proc_change(__u32 tgid, __s64 bytes, __s64 count, __u64 *peak_epoch)
{
	static const struct ms_proc_live none;
	struct ms_proc_live *p = lookup_or_init(&proc_live, &tgid, &none, MS_DROP_PROCESS_TABLE_FULL);

	*peak_epoch = 0;
	if (p) {
		__s64 now = __sync_fetch_and_add(&p->live_bytes, bytes) + bytes;

		__sync_fetch_and_add(&p->live_count, count);
		if (bytes > 0 && now > 0)
			*peak_epoch = raise_peak(p, now);
	}
	return p;
}

/* The same change to its site's live figures (this CPU's share). The
 * site's share at the latest peak is kept as its first change after that
 * peak finds it (ms_site_totals): what the process held at its peak, by
 * site, give or take the calls in flight on other CPUs at that moment. */
static __always_inline void site_change(struct ms_site_totals *t, const struct ms_proc_live *p, __s64 bytes,
					__s64 count, __u64 peak_epoch)
{
	if (!peak_epoch) {
		__u64 e = *(volatile __u64 *)&p->epoch;

		if (t->peak_epoch != e) {
			t->peak_live_bytes = t->live_bytes;
			t->peak_live_count = t->live_count;
			t->peak_epoch = e;
		}
	}
	t->live_bytes += bytes;
	t->live_count += count;
	if (peak_epoch) {
		t->peak_live_bytes = t->live_bytes;
		t->peak_live_count = t->live_count;
		t->peak_epoch = peak_epoch;
	}
}

/* Both, the site looked up (a free found a temporary there). */
static __always_inline void account_live(__u32 tgid, __u64 stack, __s64 bytes, __s64 count, bool temporary)
{
	struct ms_site_key k = { .tgid = tgid, .stack = stack };
	struct ms_site_totals *t;
	__u64 peak_epoch;
	struct ms_proc_live *p = proc_change(tgid, bytes, count, &peak_epoch);

	if (!stack)
		return;
	t = bpf_map_lookup_elem(&sites, &k);
	if (!t)
		return;
	if (temporary)
		t->temporary_count += 1;
	if (p)
		site_change(t, p, bytes, count, peak_epoch);
}

/* A block left the program: the freeing thread counts the free, the owner's
 * live figures drop, whoever the owner is, and its process's and site's. */
static __always_inline void account_free(struct ms_thread_counters *c, __u32 tgid,
					 const struct ms_alloc_rec *rec, bool temporary)
{
	struct ms_thread_live *owner;

	if (c) {
		c->free_count += 1;
		c->free_bytes += rec->size;
	}
	owner = live_of(rec->owner_slot);
	if (owner) {
		__sync_fetch_and_sub(&owner->live_bytes, rec->size);
		__sync_fetch_and_sub(&owner->live_count, 1);
	}
	account_live(tgid, rec->stack, -(__s64)rec->size, -1, temporary);
}

/* The programs, by capability. */
#include "unwind.bpf.h"
#include "accounting.bpf.h"
#include "tracker.bpf.h"
#include "session.bpf.h"
#include "lifecycle.bpf.h"
