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

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MS_DEFAULT_MAX_THREADS);
	__type(key, struct ms_thread_key);
	__type(value, struct ms_thread_name);
} thread_names SEC(".maps");

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

/* Allocation sites: counts per process and stack, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MS_DEFAULT_MAX_STACKS);
	__type(key, struct ms_site_key);
	__type(value, struct ms_site_totals);
} sites SEC(".maps");

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

/* The mode for the calling process (the calibration helper has its own). */
static __always_inline __u32 mode_now(void)
{
	__u32 c = calib_tgid;

	if (c && c == bpf_get_current_pid_tgid() >> 32)
		return calib_mode;
	return mode;
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

/* A block left the program: the freeing thread counts the free, the owner's
 * live figures drop, whoever the owner is. */
static __always_inline void account_free(struct ms_thread_counters *c,
					 const struct ms_alloc_rec *rec)
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
}

static __always_inline __u64 hash_step(__u64 h, __u64 ip)
{
	h = (h ^ ip) * 0x9e3779b97f4a7c15ULL;
	return h ^ (h >> 29);
}

/* A frameless function (libstdc++'s operator new, any code built without
 * frame pointers) returned into at `ip`: its epilogue says where its return
 * address is. The code a successful allocation runs next is read, skipping
 * test rax,rax / je (not taken: the result is not NULL) / mov between
 * registers, adding up pops and `add rsp, imm8` until `ret`. */
struct epilogue {
	__u8 c[24];
	__u32 i;
	int depth;     /* bytes from sp to the return address, once done */
	int saved_fp;  /* where `pop rbp` found the caller's frame pointer, or -1 */
	int done;      /* 1: ret reached; -1: other code */
};

static long epilogue_step(__u32 n, struct epilogue *e)
{
	__u32 i = e->i;

	if (i > sizeof(e->c) - 4) {
		e->done = -1;
		return 1;
	}
	__u8 b = e->c[i], b1 = e->c[i + 1], b2 = e->c[i + 2], b3 = e->c[i + 3];

	if (b == 0xc3) { /* ret */
		e->done = 1;
		return 1;
	}
	if (b >= 0x58 && b <= 0x5f) { /* pop r64 */
		if (b == 0x5d)
			e->saved_fp = e->depth;
		e->depth += 8;
		e->i = i + 1;
	} else if (b == 0x41 && b1 >= 0x58 && b1 <= 0x5f) { /* pop r8-r15 */
		e->depth += 8;
		e->i = i + 2;
	} else if (b == 0x48 && b1 == 0x85 && b2 == 0xc0) { /* test rax, rax */
		e->i = i + 3;
	} else if (b == 0x74) { /* je rel8 */
		e->i = i + 2;
	} else if (b == 0x48 && b1 == 0x83 && b2 == 0xc4 && b3 < 0x80) { /* add rsp, imm8 */
		e->depth += b3;
		e->i = i + 4;
	} else if ((b & 0xfa) == 0x48 && b1 == 0x89 && (b2 & 0xc0) == 0xc0 && (b2 & 7) != 4) {
		e->i = i + 3; /* mov r64, r64, not into rsp */
	} else {
		e->done = -1;
		return 1;
	}
	return 0;
}

/* Bytes from sp to the return address of the function returned into at
 * `ip`, or -1 when its code is no epilogue we know, -2 when it could not be
 * read; *saved_fp as above. */
static __always_inline int epilogue_read(__u64 ip, int *saved_fp)
{
	struct epilogue e = { .saved_fp = -1 };

	*saved_fp = -1;
	if (bpf_probe_read_user(e.c, sizeof(e.c), (void *)ip))
		return -2;
	bpf_loop(8, epilogue_step, &e, 0);
	if (e.done != 1 || e.depth >= 0xfff || e.saved_fp >= 0xffe)
		return -1;
	*saved_fp = e.saved_fp;
	return e.depth;
}

/* Unwind tables (userspace builds them from each file's .eh_frame): the
 * file of a mapping -> its rows in unwind_rows, sorted by pc. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MS_DEFAULT_MAX_UNWIND_FILES);
	__type(key, struct ms_unwind_file_key);
	__type(value, struct ms_unwind_file);
} unwind_files SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MS_DEFAULT_MAX_UNWIND_ROWS);
	__type(key, __u32);
	__type(value, struct ms_unwind_row);
} unwind_rows SEC(".maps");

/* The rule for a return address, per CPU, direct-mapped by a hash of the
 * program (process, start, exec count) and the address: one word each, a
 * 32-bit tag (never 0) over kind, rbp_off and cfa_off. Nearly every
 * allocation returns through code seen before: its frames then cost one
 * lookup each, no vma walk, no table search, no read of code. Code
 * replaced at one address in one program (dlclose then dlopen, JIT) could
 * be unwound wrongly for a frame; userspace keeps only frames a call
 * precedes. */
#define RULE_CACHE_SLOTS 4096
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RULE_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} rule_cache SEC(".maps");

struct rule {
	__u32 kind;
	int cfa_off;
	int rbp_off; /* in words from the CFA; 0: unchanged */
};

struct vma_file {
	struct ms_unwind_file_key key;
	__u64 base;
	int found;
};

static long vma_file_cb(struct task_struct *task, struct vm_area_struct *vma, struct vma_file *f)
{
	struct file *file = vma->vm_file;

	f->base = vma->vm_start - (vma->vm_pgoff << 12);
	if (file) {
		f->key.ino = file->f_inode->i_ino;
		f->key.dev = file->f_inode->i_sb->s_dev;
		f->found = 1;
	}
	return 0;
}

struct row_search {
	__u32 lo, hi; /* the answer is in [lo, hi): the last row with pc <= want */
	__u32 want;
};

static long row_search_step(__u32 n, struct row_search *b)
{
	if (b->hi - b->lo <= 1)
		return 1;
	__u32 mid = b->lo + (b->hi - b->lo) / 2;
	struct ms_unwind_row *r = bpf_map_lookup_elem(&unwind_rows, &mid);

	if (!r)
		return 1;
	if (r->pc <= b->want)
		b->lo = mid;
	else
		b->hi = mid;
	return 0;
}

/* The rule at `ip` (the byte before a return address: inside the call),
 * from its file's table; else, for code without one (a file not in the
 * tables, anonymous code), from its epilogue (frameless functions) or the
 * frame pointer. Returns 0 when none could be had now (not cached). */
static __always_inline int rule_from_tables(struct task_struct *task, __u64 ip, struct rule *r)
{
	struct vma_file f = {};

	if (bpf_find_vma(task, ip, vma_file_cb, &f, 0))
		return 0; /* the mm was busy (or nothing mapped there): not cached */
	if (f.found) {
		struct ms_unwind_file *uf = bpf_map_lookup_elem(&unwind_files, &f.key);

		if (uf && uf->count) {
			struct row_search b = { .lo = uf->first, .hi = uf->first + uf->count,
						.want = (__u32)(ip - f.base) };
			__u32 at;
			struct ms_unwind_row *row;

			bpf_loop(32, row_search_step, &b, 0);
			at = b.lo;
			row = bpf_map_lookup_elem(&unwind_rows, &at);
			/* Code no rule covers (assembly without CFI) is read as
			 * code without a table is. */
			if (row && row->pc <= b.want && row->kind != MS_UNWIND_INVALID) {
				r->kind = row->kind;
				r->cfa_off = row->cfa_off;
				r->rbp_off = row->rbp_off;
				return 1;
			}
		}
	}
	int saved_fp, d = epilogue_read(ip + 1, &saved_fp);

	if (d == -2)
		return 0;
	if (d >= 0) { /* frameless: the return address d bytes above sp */
		r->kind = MS_UNWIND_CFA_RSP;
		r->cfa_off = d + 8;
		r->rbp_off = saved_fp >= 0 ? (saved_fp - d - 8) >> 3 : 0; /* no signed division in BPF */
	} else { /* a frame-pointer frame: {saved rbp, return address} at rbp */
		r->kind = MS_UNWIND_CFA_RBP;
		r->cfa_off = 16;
		r->rbp_off = -2;
	}
	return 1;
}

static __always_inline void rule_at(struct task_struct *task, __u64 prog, __u64 ip, struct rule *r)
{
	__u64 h = hash_step(prog, ip);
	__u32 slot = h & (RULE_CACHE_SLOTS - 1);
	__u64 tag = (h >> 32) | 1, *c = bpf_map_lookup_elem(&rule_cache, &slot);

	if (c) {
		__u64 v = *(volatile __u64 *)c; /* once: a preempting program may rewrite it */

		if (v >> 32 == tag) {
			r->kind = (v >> 24) & 0xff;
			r->rbp_off = (int)(__s8)((v >> 16) & 0xff);
			r->cfa_off = v & 0xffff;
			return;
		}
	}
	if (!rule_from_tables(task, ip, r)) {
		r->kind = MS_UNWIND_INVALID;
		return;
	}
	if (c)
		*c = tag << 32 | (__u64)(r->kind & 0xff) << 24 | (__u64)(__u8)r->rbp_off << 16 |
		     (__u64)(r->cfa_off & 0xffff);
}

/* The walk: per frame, the rule at its return address gives the caller's
 * CFA, return address (at CFA - 8) and rbp. Stack words are read from a
 * copy of the stack's top (4 KiB, re-copied from where a frame lies
 * beyond it). */
struct unwind_walk {
	struct ms_stack *s;
	struct stack_copy *copy;
	struct task_struct *task;
	__u64 prog;
	__u64 base;  /* user address of copy->w[0] */
	__u64 valid; /* bytes of the copy that were read; 0: none */
	__u64 ip, sp, fp;
	__u64 hash;  /* of the frames so far */
	__u32 nr;    /* frames in s so far */
	__u32 limit;
	__u32 end;   /* why the walk ended (MS_STACK_END_*) */
	__u32 exact; /* ip is an interrupted instruction's, not a return address */
};

/* The word at user address `at` (8-aligned), from the copy; 0 when unreadable. */
static __always_inline int stack_word(struct unwind_walk *w, __u64 at, __u64 *out)
{
	__u64 off = at - w->base;

	if (at & 7)
		return 0;
	if (at < w->base || off + 8 > w->valid) {
		/* Fixed sizes: a length the verifier must follow as a range
		 * cost ~0.2 s more at every start. */
		__u64 n = sizeof(w->copy->w);

		if (bpf_probe_read_user(w->copy->w, n, (void *)at)) {
			n = 16;
			if (bpf_probe_read_user(w->copy->w, n, (void *)at))
				return 0;
		}
		w->valid = n;
		w->base = at;
		off = 0;
	}
	*out = w->copy->w[(off >> 3) & (STACK_COPY_WORDS - 1)];
	return 1;
}

static long unwind_step(__u32 i, struct unwind_walk *w)
{
	__u32 nr = w->nr;
	struct rule r = {};
	__u64 cfa, ret, fp = w->fp;

	if (nr >= w->limit || nr >= MS_STACK_SLOTS) {
		w->end = MS_STACK_END_DEPTH;
		return 1;
	}
	/* A return address: the call is the byte before it. */
	rule_at(w->task, w->prog, w->ip - !w->exact, &r);
	w->exact = 0;
	if (r.kind == MS_UNWIND_SIGNAL) {
		/* A handler returned here: at the frame's CFA is the ucontext
		 * of the interrupted code, its registers all saved. */
		__u64 ip, sp;

		w->s->ips[nr] = w->ip | MS_IP_SIGNAL_FRAME;
		w->hash = hash_step(w->hash, w->ip | MS_IP_SIGNAL_FRAME);
		w->nr = nr + 1;
		if (!stack_word(w, w->sp + MS_SIGFRAME_RIP, &ip) || !stack_word(w, w->sp + MS_SIGFRAME_RSP, &sp) ||
		    !ip || !sp) {
			w->end = MS_STACK_END_BAD_FRAME;
			return 1;
		}
		if (!stack_word(w, w->sp + MS_SIGFRAME_RBP, &fp))
			fp = 0;
		w->ip = ip;
		w->sp = sp;
		w->fp = fp;
		w->exact = 1;
		return 0;
	}
	w->s->ips[nr] = w->ip;
	w->hash = hash_step(w->hash, w->ip);
	w->nr = nr + 1;
	if (r.kind == MS_UNWIND_CFA_RSP) {
		cfa = w->sp + r.cfa_off;
	} else if (r.kind == MS_UNWIND_CFA_RBP) {
		cfa = w->fp + r.cfa_off;
	} else {
		w->end = r.kind == MS_UNWIND_STOP ? MS_STACK_END_ROOT : MS_STACK_END_NO_RULE;
		return 1;
	}
	if (cfa <= w->sp || !stack_word(w, cfa - 8, &ret) || !ret) {
		w->end = MS_STACK_END_BAD_FRAME;
		return 1;
	}
	if (r.rbp_off == MS_UNWIND_RBP_UNKNOWN)
		fp = 0;
	else if (r.rbp_off && !stack_word(w, cfa + (__s64)r.rbp_off * 8, &fp))
		fp = 0;
	w->ip = ret;
	w->sp = cfa;
	w->fp = fp;
	return 0;
}

/* The calling thread's user stack at an allocator's return, into the
 * per-CPU scratch; returns its hash (never 0), or 0 when none was taken.
 * At the return the instruction pointer is the caller's return address, sp
 * and rbp the caller's own: an unwind from there names the direct caller,
 * which one started at the allocator's entry would skip. The walk is ours,
 * in a copy of the stack's top: bpf_get_stack costs ~0.7 us here for three
 * frames, and needs frame pointers. */
static __always_inline __u64 capture_stack(struct pt_regs *ctx, struct ms_stack **out, __u32 *end)
{
	__u32 zero = 0;
	struct ms_stack *s = bpf_map_lookup_elem(&stack_scratch, &zero);
	struct stack_copy *copy = bpf_map_lookup_elem(&stack_copy_scratch, &zero);
	__u32 nr;

	if (!s || !copy)
		return 0;
	/* The program, for the rule cache: the process, its start (pids are
	 * reused) and its exec count (an exec brings other code). */
	struct task_struct *task = bpf_get_current_task_btf();
	struct unwind_walk w = {
		.s = s, .copy = copy, .task = task,
		.prog = hash_step(hash_step(hash_step(task->tgid, task->group_leader->start_time), task->self_exec_id),
				  unwind_generation),
		.ip = PT_REGS_IP(ctx), .sp = PT_REGS_SP(ctx), .fp = ctx->bp, .limit = stack_depth,
	};

	bpf_loop(MS_MAX_STACK_DEPTH, unwind_step, &w, 0);
	nr = w.nr;
	if (nr > stack_depth)
		nr = stack_depth;
	s->nr = nr;
	*out = s;
	*end = w.end;
	__u64 h = hash_step(w.hash, nr);
	return h ? h : 1;
}

/* Where a new stack's frames are mapped, for userspace to symbolize them
 * whenever it gets to it, the process alive or not. */
struct frame_walk {
	struct task_struct *task;
	struct ms_stack *stack;
	struct ms_stack_event *ev;
};

static long frame_vma(struct task_struct *task, struct vm_area_struct *vma, struct ms_stack_frame *f)
{
	struct file *file = vma->vm_file;

	f->base = vma->vm_start - (vma->vm_pgoff << 12);
	if (file) {
		f->ino = file->f_inode->i_ino;
		f->dev = file->f_inode->i_sb->s_dev;
	}
	return 0;
}

static long frame_step(__u32 i, struct frame_walk *w)
{
	if (i >= MS_STACK_SLOTS)
		return 1;
	struct ms_stack_frame f = { .ip = w->stack->ips[i] };

	bpf_find_vma(w->task, f.ip & ~MS_IP_SIGNAL_FRAME, frame_vma, &f, 0);
	w->ev->frames[i] = f;
	return 0;
}

static __always_inline void report_new_stack(__u32 tgid, __u64 hash, struct ms_stack *s, __u32 end)
{
	__u32 zero = 0;
	struct ms_stack_event *ev = bpf_map_lookup_elem(&stack_event_scratch, &zero);
	struct frame_walk w = { .task = bpf_get_current_task_btf(), .stack = s };
	__u64 nr = s->nr;

	if (!ev)
		return;
	if (nr > MS_STACK_SLOTS)
		nr = MS_STACK_SLOTS;
	w.ev = ev;
	ev->h.type = MS_EV_NEW_STACK;
	ev->h.tgid = tgid;
	ev->h.tid = (__u32)bpf_get_current_pid_tgid();
	ev->h.flags = end + 1; /* why the walk ended; 0: not said */
	ev->stack = hash;
	ev->nr = nr;
	bpf_loop(nr, frame_step, &w, 0);
	__u64 size = sizeof(*ev) - sizeof(ev->frames) + nr * sizeof(ev->frames[0]);
	if (size > sizeof(*ev))
		size = sizeof(*ev);
	/* Urgent: the sooner read, the sooner a dlopen'd library is known. */
	if (bpf_ringbuf_output(&events, ev, size, BPF_RB_FORCE_WAKEUP))
		count_drop(MS_DROP_EVENT_RING_FULL);
}

/* The allocation's site in normal mode: its stack's hash, counted per
 * process; a site new to the process has its stack kept and userspace told,
 * to symbolize it while the process lives. 0 when none. */
__noinline __u64 account_site(struct pt_regs *ctx, __u32 tgid, __u64 size)
{
	static const struct ms_site_totals none;
	struct ms_site_totals *t;
	struct ms_stack *s = 0;
	struct ms_site_key k = { .tgid = tgid };
	struct stack_copy *scratch;
	__u32 zero = 0;

	if (!stack_depth)
		return 0;
	scratch = bpf_map_lookup_elem(&stack_copy_scratch, &zero);
	if (!scratch)
		return 0;
	if (scratch->busy) {
		count_drop(MS_DROP_STACK_SCRATCH_BUSY);
		return 0;
	}
	scratch->busy = 1;
	__u32 end = 0;

	k.stack = capture_stack(ctx, &s, &end);
	if (!k.stack || !s) {
		k.stack = 0;
		goto out;
	}
	t = bpf_map_lookup_elem(&sites, &k);
	if (!t) {
		long err = bpf_map_update_elem(&stacks, &k.stack, s, BPF_NOEXIST);

		if (err && err != -17 /* EEXIST: another process's, or a racing thread's */)
			count_drop(MS_DROP_STACK_TABLE_FULL);
		bpf_map_update_elem(&sites, &k, &none, BPF_NOEXIST);
		t = bpf_map_lookup_elem(&sites, &k);
		if (!t) {
			count_drop(MS_DROP_SITE_TABLE_FULL);
			k.stack = 0;
			goto out;
		}
		report_new_stack(tgid, k.stack, s, end);
	}
	t->alloc_count += 1;
	t->alloc_bytes += size;
out:
	scratch->busy = 0;
	return k.stack;
}

/* Count an allocation and record its block; false when the record could
 * not be kept (counted as untracked). */
static __always_inline bool account_alloc(struct pt_regs *ctx, struct ms_thread_counters *c,
					  int slot, __u32 tgid, __u64 addr, __u64 size, __u32 flags,
					  __u32 m)
{
	struct ms_alloc_key k = { .tgid = tgid, .addr = addr };
	struct ms_alloc_rec rec = { .size = size, .owner_slot = slot, .flags = flags };
	struct ms_thread_live *live;
	long err;

	if (c) {
		c->alloc_count += 1;
		c->alloc_bytes += size;
	}
	live = live_of(slot);
	if (!live) {
		if (c)
			c->untracked_alloc_count += 1;
		return false;
	}
	/* Ages and stacks are for normal mode's reports; fast mode saves them. */
	if (m == MS_MODE_NORMAL) {
		rec.alloc_ns = bpf_ktime_get_ns();
		rec.stack = account_site(ctx, tgid, size);
	}
	err = bpf_map_update_elem(&allocs, &k, &rec, BPF_NOEXIST);
	if (err == -17 /* EEXIST: a block reused whose free we missed */) {
		struct ms_alloc_rec *stale = bpf_map_lookup_elem(&allocs, &k);
		if (stale) {
			struct ms_alloc_rec gone = *stale;
			account_free(0, &gone);
			if (gone.flags & MS_REC_TRACKED)
				report_block(MS_EV_VARIABLE_FREE, tgid, 0, addr, gone.size);
		}
		count_drop(MS_DROP_STALE_RECORD);
		err = bpf_map_update_elem(&allocs, &k, &rec, BPF_ANY);
	}
	if (err) {
		if (c)
			c->untracked_alloc_count += 1;
		count_drop(MS_DROP_ALLOC_TABLE_FULL);
		return false;
	}
	__s64 now = __sync_fetch_and_add(&live->live_bytes, size) + size;
	__sync_fetch_and_add(&live->live_count, 1);
	if (now > 0 && (__u64)now > live->peak_live_bytes)
		live->peak_live_bytes = now;
	return true;
}

/* Take a block's record out of the table; true when it was there. Deleting
 * before the block is really freed keeps a racing malloc of the same address
 * on another thread from losing its record. */
static __always_inline bool take_record(__u32 tgid, __u64 addr, struct ms_alloc_rec *out)
{
	struct ms_alloc_key k = { .tgid = tgid, .addr = addr };
	struct ms_alloc_rec *rec = bpf_map_lookup_elem(&allocs, &k);

	if (!rec)
		return false;
	*out = *rec;
	/* Two threads freeing one block: only the one whose delete wins counts it. */
	return bpf_map_delete_elem(&allocs, &k) == 0;
}

static __always_inline int on_entry(struct pt_regs *ctx, __u32 kind, __u64 size,
				    __u64 old_addr, __u64 memptr)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct ms_inflight *st;
	__u64 sp = PT_REGS_SP(ctx);
	__u32 m = mode_now();

	if (m == MS_MODE_OFF)
		return 0;

	st = bpf_task_storage_get(&inflight, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!st) {
		count_drop(MS_DROP_NO_TASK_STORAGE);
		return 0;
	}
	if (st->entry_sp && st->epoch != epoch) {
		/* Entered before the probes went off: its return was never seen. */
		count_drop(MS_DROP_LOST_RETURN);
		st->entry_sp = 0;
	}
	if (st->entry_sp) {
		/* Deeper: called from the outer allocator call. Equal: tail-called
		 * by it (aligned_alloc -> _mid_memalign -> malloc, realloc(NULL, n)
		 * -> malloc); the one return then fires for both, with one result. */
		if (sp <= st->entry_sp)
			return 0;
		/* The stack unwound past an entry whose return we never saw. */
		count_drop(MS_DROP_LOST_RETURN);
		if (st->has_old) {
			struct ms_alloc_key k = { .tgid = bpf_get_current_pid_tgid() >> 32,
						  .addr = st->old_addr };
			bpf_map_update_elem(&allocs, &k, &st->old, BPF_NOEXIST);
		}
	}
	st->entry_sp = sp;
	st->epoch = epoch;
	st->kind = kind;
	st->size = size;
	st->memptr = memptr;
	st->old_addr = old_addr;
	st->has_old = 0;
	st->mode = m;
	if (old_addr && st->mode != MS_MODE_ASYNC)
		st->has_old = take_record(bpf_get_current_pid_tgid() >> 32, old_addr, &st->old);
	return 0;
}

static __always_inline __u64 mul_or_max(__u64 a, __u64 b)
{
	__u64 limit;

	if (((a | b) >> 32) == 0)
		return a * b;
	limit = ~0ULL / (a ? a : 1);
	/* Keep clang from turning the check into a 128-bit multiply BPF lacks. */
	asm volatile("" : "+r"(limit));
	if (b > limit)
		return ~0ULL; /* overflows: the call fails, and is counted so */
	return a * b;
}

SEC("uprobe")
int BPF_KPROBE(malloc_entry, __u64 size)
{
	return on_entry(ctx, MS_KIND_MALLOC, size, 0, 0);
}

SEC("uprobe")
int BPF_KPROBE(calloc_entry, __u64 n, __u64 size)
{
	return on_entry(ctx, MS_KIND_CALLOC, mul_or_max(n, size), 0, 0);
}

SEC("uprobe")
int BPF_KPROBE(realloc_entry, __u64 ptr, __u64 size)
{
	return on_entry(ctx, MS_KIND_REALLOC, size, ptr, 0);
}

SEC("uprobe")
int BPF_KPROBE(reallocarray_entry, __u64 ptr, __u64 n, __u64 size)
{
	return on_entry(ctx, MS_KIND_REALLOCARRAY, mul_or_max(n, size), ptr, 0);
}

SEC("uprobe")
int BPF_KPROBE(memalign_entry, __u64 align, __u64 size)
{
	return on_entry(ctx, MS_KIND_MEMALIGN, size, 0, 0);
}

SEC("uprobe")
int BPF_KPROBE(posix_memalign_entry, __u64 memptr, __u64 align, __u64 size)
{
	return on_entry(ctx, MS_KIND_POSIX_MEMALIGN, size, 0, memptr);
}

/* Allocations made inside a scope or a task add to its totals. */
static __always_inline void account_group(__u32 tgid, __u32 kind, __u64 id, __u64 desc,
					  __u64 site, __u64 size)
{
	struct ms_group_key k = { .tgid = tgid, .kind = kind, .id = id, .desc = desc, .site = site };
	static const struct ms_group_totals zero;
	struct ms_group_totals *g = lookup_or_init(&group_totals, &k, &zero, MS_DROP_GROUP_TABLE_FULL);

	if (!g)
		return;
	g->alloc_count += 1;
	g->alloc_bytes += size;
}

static __always_inline void account_groups(const struct ms_inflight *st, __u32 tgid, __u64 size)
{
	__u32 d = st->scope_depth;
	__u32 t = st->task_depth;

	if (d > 0 && d <= MS_MAX_SCOPE_DEPTH)
		account_group(tgid, MS_GROUP_SCOPE, 0, st->scopes[d - 1], st->scope_sites[d - 1], size);
	if (t > 0 && t <= MS_MAX_TASK_DEPTH)
		account_group(tgid, MS_GROUP_TASK, st->task_ids[t - 1], st->task_descs[t - 1],
			      st->task_sites[t - 1], size);
}

SEC("uretprobe")
int BPF_KRETPROBE(alloc_return, __u64 ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct ms_thread_counters *c;
	struct ms_inflight *st;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 addr = ret;
	int slot;
	bool ok;

	st = bpf_task_storage_get(&inflight, task, 0, 0);
	if (!st || !st->entry_sp || st->epoch != epoch)
		return 0;
	/* A nested call returns onto a stack at or below the outer entry's. */
	if (PT_REGS_SP(ctx) <= st->entry_sp)
		return 0;
	st->entry_sp = 0;

	slot = thread_slot(st);
	c = counters_of(slot);

	if (st->kind == MS_KIND_POSIX_MEMALIGN) {
		addr = 0;
		ok = (int)ret == 0;
		if (ok && bpf_probe_read_user(&addr, sizeof(addr), (void *)st->memptr)) {
			count_drop(MS_DROP_READ_FAULT);
			return 0;
		}
	} else {
		ok = addr != 0;
	}

	if (st->mode == MS_MODE_ASYNC) {
		/* Counters only: no record, no live figures, no group totals. */
		bool resize = st->kind == MS_KIND_REALLOC || st->kind == MS_KIND_REALLOCARRAY;

		if (!c)
			return 0;
		if (resize && st->old_addr && !ok && st->size > 0) {
			c->failed_alloc_count += 1;
			return 0;
		}
		if (resize && st->old_addr)
			c->free_count += 1; /* its size is not known here */
		if (ok) {
			c->alloc_count += 1;
			c->alloc_bytes += st->size;
		} else if (!resize && st->size > 0) {
			c->failed_alloc_count += 1;
		}
		return 0;
	}

	if (st->kind == MS_KIND_REALLOC || st->kind == MS_KIND_REALLOCARRAY) {
		__u32 tracked = st->has_old ? (st->old.flags & MS_REC_TRACKED) : 0;

		if (st->old_addr && !ok && st->size > 0) {
			/* Failed: the old block stays live, with its record. */
			if (c)
				c->failed_alloc_count += 1;
			if (st->has_old) {
				struct ms_alloc_key k = { .tgid = tgid, .addr = st->old_addr };
				bpf_map_update_elem(&allocs, &k, &st->old, BPF_NOEXIST);
			}
			return 0;
		}
		if (st->old_addr) {
			if (st->has_old)
				account_free(c, &st->old);
			else if (c && gap_seen)
				c->untracked_free_count += 1;
			else if (c)
				c->unmatched_free_count += 1;
		}
		if (!ok) {
			/* realloc(p, 0): a free only */
			if (tracked)
				report_block(MS_EV_VARIABLE_FREE, tgid, 0, st->old_addr, st->old.size);
			return 0;
		}
		/* A block moved (or resized in place) keeps its variable; one
		 * whose new record did not fit ends here for the tracker. */
		bool kept = account_alloc(ctx, c, slot, tgid, addr, st->size, tracked, st->mode);
		if (tracked)
			report_block(kept ? MS_EV_VARIABLE_MOVE : MS_EV_VARIABLE_FREE, tgid,
				     st->old_addr, kept ? addr : st->old_addr, st->size);
		account_groups(st, tgid, st->size);
		return 0;
	}

	if (ok) {
		account_alloc(ctx, c, slot, tgid, addr, st->size, 0, st->mode);
		account_groups(st, tgid, st->size);
	} else if (st->size > 0 && c) {
		c->failed_alloc_count += 1;
	}
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(free_entry, __u64 ptr)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct ms_thread_counters *c;
	struct ms_inflight *st;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct ms_alloc_rec rec;

	__u32 m = mode_now();

	if (!ptr || m == MS_MODE_OFF)
		return 0;
	st = bpf_task_storage_get(&inflight, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!st) {
		count_drop(MS_DROP_NO_TASK_STORAGE);
		return 0;
	}
	if (st->entry_sp && st->epoch == epoch && PT_REGS_SP(ctx) <= st->entry_sp)
		return 0; /* inside realloc & co: the outer call accounts for it */

	c = counters_of(thread_slot(st));
	if (m == MS_MODE_ASYNC) {
		if (c && st->exiting)
			c->exit_unmatched_free_count += 1;
		else if (c)
			c->free_count += 1; /* its size is not known here */
		return 0;
	}
	if (take_record(tgid, ptr, &rec)) {
		account_free(c, &rec);
		if (rec.flags & MS_REC_TRACKED)
			report_block(MS_EV_VARIABLE_FREE, tgid, 0, ptr, rec.size);
	} else if (c && st->exiting)
		c->exit_unmatched_free_count += 1;
	else if (c && gap_seen)
		c->untracked_free_count += 1;
	else if (c)
		c->unmatched_free_count += 1;
	return 0;
}

/* Past this point the thread only tears down: glibc then frees its tcache,
 * blocks the program freed long ago, which must not read as unmatched. */
SEC("uprobe")
int BPF_KPROBE(thread_exit_entry)
{
	struct ms_inflight *st;

	st = bpf_task_storage_get(&inflight, bpf_get_current_task_btf(), 0,
				  BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (st)
		st->exiting = 1;
	return 0;
}

/* Fast mode: a variable is counted under its name (descriptor), not streamed. */
static __always_inline void count_variable(struct pt_regs *ctx, const struct ms_thread_key *me,
					   __u64 site)
{
	struct ms_var_key k = { .tgid = me->tgid, .desc = ctx->dx, .site = site };
	static const struct ms_var_totals zero;
	struct ms_var_totals *t;
	__u64 size = ctx->si;

	/* The size the target passed is the block's; only a block passed
	 * without one (unique_ptr<T[]>, shared_ptr) needs the record's. */
	if (ctx->di && !size) {
		struct ms_alloc_key ak = { .tgid = me->tgid, .addr = ctx->di };
		struct ms_alloc_rec *rec = bpf_map_lookup_elem(&allocs, &ak);
		if (rec)
			size = rec->size;
	}
	t = lookup_or_init(&var_totals, &k, &zero, MS_DROP_GROUP_TABLE_FULL);
	if (!t)
		return;
	t->count += 1;
	t->bytes += size;
}

/* The tracker entry point (probes/include/memscope/track.h): one site per
 * module, the op in ecx; see probe_abi.h for the registers. */
SEC("uprobe")
int tracker_entry(struct pt_regs *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 op = (__u32)ctx->cx;
	__u64 site = PT_REGS_IP(ctx) | (bpf_get_attach_cookie(ctx) << MS_SITE_MODULE_SHIFT);
	struct ms_inflight *st;

	__u32 m = mode_now();

	if (m == MS_MODE_OFF)
		return 0;
	st = bpf_task_storage_get(&inflight, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!st) {
		count_drop(MS_DROP_NO_TASK_STORAGE);
		return 0;
	}

	switch (op) {
	case MEMSCOPE_OP_SCOPE_ENTER: {
		__u32 d = st->scope_depth;
		if (d < MS_MAX_SCOPE_DEPTH) {
			st->scopes[d] = ctx->dx;
			st->scope_sites[d] = site;
		} else
			count_drop(MS_DROP_SCOPE_TOO_DEEP);
		st->scope_depth = d + 1;
		return 0;
	}
	case MEMSCOPE_OP_SCOPE_EXIT:
		if (st->scope_depth > 0)
			st->scope_depth -= 1;
		return 0;
	case MEMSCOPE_OP_TASK_ENTER: {
		__u32 t = st->task_depth;
		if (t < MS_MAX_TASK_DEPTH) {
			st->task_ids[t] = ctx->di;
			st->task_descs[t] = ctx->dx;
			st->task_sites[t] = site;
		} else {
			count_drop(MS_DROP_SCOPE_TOO_DEEP);
		}
		st->task_depth = t + 1;
		return 0;
	}
	case MEMSCOPE_OP_TASK_EXIT:
		if (st->task_depth > 0)
			st->task_depth -= 1;
		return 0;
	case MEMSCOPE_OP_TRACK:
	case MEMSCOPE_OP_REQUEST_MODE:
		break;
	default:
		return 0;
	}

	struct ms_thread_key me;
	self_key(&me);
	if (op == MEMSCOPE_OP_TRACK && m != MS_MODE_NORMAL) {
		struct ms_thread_counters *c = counters_of(thread_slot(st));

		if (c)
			c->track_count += 1;
		if (m == MS_MODE_FAST)
			count_variable(ctx, &me, site);
		return 0; /* async: counted per thread, not registered */
	}
	if (op == MEMSCOPE_OP_REQUEST_MODE) {
		report_event(MS_EV_MODE_REQUEST, me.tgid, 0, 0, ctx->si, true);
		return 0;
	}

	/* The join with the block's record first, outside the ring's reservation. */
	struct ms_alloc_rec *rec = 0;
	if (ctx->di) {
		struct ms_alloc_key k = { .tgid = me.tgid, .addr = ctx->di };
		rec = bpf_map_lookup_elem(&allocs, &k);
		/* Its free (or move) will be reported. Were the element freed and
		 * reused by another thread meanwhile (the program freeing what it
		 * names), another block would report a free userspace ignores. */
		if (rec)
			__sync_fetch_and_or(&rec->flags, MS_REC_TRACKED);
	}
	struct ms_thread_counters *c = counters_of(thread_slot(st));
	__u32 d = st->scope_depth, t = st->task_depth;
	bool in_scope = d > 0 && d <= MS_MAX_SCOPE_DEPTH;
	bool in_task = t > 0 && t <= MS_MAX_TASK_DEPTH;
	struct ms_variable_event *base;

	if (c)
		c->track_count += 1;
	if (in_scope || in_task || ctx->r8) {
		struct ms_variable_event_ext *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
		if (!e) {
			count_drop(MS_DROP_EVENT_RING_FULL);
			return 0;
		}
		e->ext.thread_start_ns = me.start_ns;
		e->ext.type_addr = ctx->r8;
		e->ext.type_len = ctx->r9;
		e->ext.scope = in_scope ? st->scopes[(d - 1) & (MS_MAX_SCOPE_DEPTH - 1)] : 0;
		e->ext.scope_site = in_scope ? st->scope_sites[(d - 1) & (MS_MAX_SCOPE_DEPTH - 1)] : 0;
		e->ext.task = in_task ? st->task_ids[(t - 1) & (MS_MAX_TASK_DEPTH - 1)] : 0;
		e->ext.task_desc = in_task ? st->task_descs[(t - 1) & (MS_MAX_TASK_DEPTH - 1)] : 0;
		e->ext.task_site = in_task ? st->task_sites[(t - 1) & (MS_MAX_TASK_DEPTH - 1)] : 0;
		base = &e->base;
		base->h.flags = MS_EV_EXTENDED;
	} else {
		base = bpf_ringbuf_reserve(&events, sizeof(*base), 0);
		if (!base) {
			count_drop(MS_DROP_EVENT_RING_FULL);
			return 0;
		}
		base->h.flags = 0;
	}
	/* Every field written once, no memset first. */
	base->h.type = MS_EV_VARIABLE;
	base->h.tgid = me.tgid;
	base->h.tid = me.tid;
	base->addr = ctx->di;
	base->size = ctx->si;
	base->alloc_ns = 0;
	if (rec) {
		base->h.flags |= MS_EV_HEAP;
		base->size = rec->size;
		base->alloc_ns = rec->alloc_ns;
	}
	base->desc = ctx->dx;
	base->site = site;
	event_submit(base, false);
	return 0;
}

/* ld.so calls _dl_debug_state after it mapped or unmapped libraries: the
 * loader may find new tracker entry points to attach to. */
SEC("uprobe")
int loader_changed(struct pt_regs *ctx)
{
	report_event(MS_EV_LOADER_CHANGED, bpf_get_current_pid_tgid() >> 32, 0, 0, 0, true);
	return 0;
}

/* The benchmark's floor: empty programs on the very same sites. */
SEC("uprobe")
int empty_entry(struct pt_regs *ctx)
{
	return 0;
}

SEC("uretprobe")
int empty_return(struct pt_regs *ctx)
{
	return 0;
}

/* Process-level facts of traced processes; cheap lookups on rare events. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = parent->tgid, ctgid = child->tgid;
	struct ms_target *t;

	if (ptgid == ctgid)
		return 0; /* a new thread, not a process */
	t = bpf_map_lookup_elem(&targets, &ptgid);
	if (!t)
		return 0;
	__sync_fetch_and_add(&t->forks, 1);
	bpf_map_update_elem(&children, &ctgid, &ptgid, BPF_NOEXIST);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p)
{
	__u32 tgid = p->tgid;
	struct ms_target *t = bpf_map_lookup_elem(&targets, &tgid);
	struct ms_inflight *st;

	if (t)
		__sync_fetch_and_add(&t->execs, 1);
	/* A new program in the same thread: its figures start afresh in a slot
	 * of their own (userspace closes the old image's at the exec stop).
	 * Only a task our probes met has this storage. */
	st = bpf_task_storage_get(&inflight, p, 0, 0);
	if (st) {
		st->slot_state = 0;
		st->entry_sp = 0;
		st->scope_depth = 0;
		st->task_depth = 0;
		st->exiting = 0;
	}
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p)
{
	__u32 tgid = p->tgid;
	struct ms_target *t = bpf_map_lookup_elem(&targets, &tgid);
	struct ms_thread_key key = { .tgid = tgid, .tid = p->pid, .start_ns = p->start_time };
	struct ms_thread_name name = {};

	if (!t)
		return 0;
	/* The thread's last name, kept for threads gone before the report. */
	bpf_probe_read_kernel_str(name.comm, sizeof(name.comm), p->comm);
	bpf_map_update_elem(&thread_names, &key, &name, BPF_ANY);
	if (p->signal->live.counter == 0) {
		t->exit_code = p->exit_code;
		t->exited = 1;
	}
	return 0;
}
