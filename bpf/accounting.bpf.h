/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Accounting: the allocator's entry and return probes, free, the
 * outstanding-allocation records, per-thread counters, sites and groups.
 * Part of memscope.bpf.c, included once, in this order: one object, one
 * skeleton. */

static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r = 0;

	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) r += 1;
	return r;
}

/* The allocation's size in its process's and site's histogram. */
static __always_inline void count_size(__u32 tgid, __u64 stack, __u64 size)
{
	static const struct ms_size_totals none;
	struct ms_size_key k = { .tgid = tgid, .bucket = log2_u64(size), .stack = stack };
	struct ms_size_totals *t = lookup_or_init(&sizes, &k, &none, MS_DROP_SIZE_TABLE_FULL);

	if (!t)
		return;
	t->count += 1;
	t->bytes += size;
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
	__u64 bucket = log2_u64(size) + 1;
	if (!t->size_bucket)
		t->size_bucket = bucket;
	if (t->size_bucket == bucket) {
		t->size_count += 1;
		t->size_bytes += size;
	} else {
		count_size(tgid, k.stack, size);
	}
	/* Live now, the entry at hand: account_alloc takes it back should
	 * the block's record not fit. */
	__u64 peak_epoch;
	struct ms_proc_live *p = proc_change(tgid, size, 1, &peak_epoch);
	if (p)
		site_change(t, p, size, 1, peak_epoch);
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
	if (!rec.stack) /* a site counts its own (account_site) */
		count_size(tgid, 0, size);
	err = bpf_map_update_elem(&allocs, &k, &rec, BPF_NOEXIST);
	if (err == -17 /* EEXIST: a block reused whose free we missed */) {
		struct ms_alloc_rec *stale = bpf_map_lookup_elem(&allocs, &k);
		if (stale) {
			struct ms_alloc_rec gone = *stale;
			account_free(0, tgid, &gone, false);
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
		if (rec.stack)
			account_live(tgid, rec.stack, -(__s64)size, -1, false);
		return false;
	}
	__s64 now = __sync_fetch_and_add(&live->live_bytes, size) + size;
	__sync_fetch_and_add(&live->live_count, 1);
	if (now > 0 && (__u64)now > live->peak_live_bytes)
		live->peak_live_bytes = now;
	if (!rec.stack) /* else live already (account_site) */
		account_live(tgid, 0, size, 1, false);
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

/* An allocator call's entry. Returns 1 when the call waits for its return
 * (the outermost call on the thread, stashed here), 0 when its return has
 * nothing to do: probes off, a call nested in another, or a leaf function
 * (see MS_COOKIE_LEAF) that async mode counts here at once. */
static __always_inline int on_entry(struct pt_regs *ctx, __u32 kind, __u64 size,
				    __u64 old_addr, __u64 memptr, bool leaf)
{
	__u64 sp = PT_REGS_SP(ctx);
	__u32 m;
	struct ms_inflight *st = state_unless_off(&m);

	if (!st)
		return 0;
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
		st->entry_sp = 0;
	}
	if (leaf && m == MS_MODE_ASYNC && size < MS_ASYNC_ENTRY_MAX_SIZE) {
		/* Nothing probed runs inside it, and a request this small fails
		 * only when the machine is out of memory: counted now, one hit. */
		struct ms_thread_counters *c = counters_of(thread_slot(st));

		st->last_alloc = 0;
		if (c) {
			c->alloc_count += 1;
			c->alloc_bytes += size;
		}
		return 0;
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
	return 1;
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
	on_entry(ctx, MS_KIND_MALLOC, size, 0, 0, false);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(calloc_entry, __u64 n, __u64 size)
{
	on_entry(ctx, MS_KIND_CALLOC, mul_or_max(n, size), 0, 0, false);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(realloc_entry, __u64 ptr, __u64 size)
{
	on_entry(ctx, MS_KIND_REALLOC, size, ptr, 0, false);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(reallocarray_entry, __u64 ptr, __u64 n, __u64 size)
{
	on_entry(ctx, MS_KIND_REALLOCARRAY, mul_or_max(n, size), ptr, 0, false);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(memalign_entry, __u64 align, __u64 size)
{
	on_entry(ctx, MS_KIND_MEMALIGN, size, 0, 0, false);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(posix_memalign_entry, __u64 memptr, __u64 align, __u64 size)
{
	on_entry(ctx, MS_KIND_POSIX_MEMALIGN, size, 0, memptr, false);
	return 0;
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

/* Async mode: counters only (no record, no live figures, no group totals). */
static __always_inline void count_async(struct ms_thread_counters *c, const struct ms_inflight *st, bool ok)
{
	bool resize = st->kind == MS_KIND_REALLOC || st->kind == MS_KIND_REALLOCARRAY;

	if (!c)
		return;
	if (resize && st->old_addr && !ok && st->size > 0) {
		c->failed_alloc_count += 1;
		return;
	}
	if (resize && st->old_addr)
		c->free_count += 1; /* its size is not known here */
	if (ok) {
		c->alloc_count += 1;
		c->alloc_bytes += st->size;
	} else if (!resize && st->size > 0) {
		c->failed_alloc_count += 1;
	}
}

/* realloc and reallocarray: the old block freed (or kept, on failure), the
 * new one allocated, a tracked variable moved with it. */
static __always_inline void account_resize(struct pt_regs *ctx, struct ms_thread_counters *c,
					   struct ms_inflight *st, int slot, __u32 tgid, __u64 addr, bool ok)
{
	__u32 tracked = st->has_old ? (st->old.flags & MS_REC_TRACKED) : 0;

	if (st->old_addr && !ok && st->size > 0) {
		/* Failed: the old block stays live, with its record. */
		if (c)
			c->failed_alloc_count += 1;
		if (st->has_old) {
			struct ms_alloc_key k = { .tgid = tgid, .addr = st->old_addr };
			bpf_map_update_elem(&allocs, &k, &st->old, BPF_NOEXIST);
		}
		return;
	}
	if (st->old_addr) {
		if (st->has_old)
			account_free(c, tgid, &st->old, false);
		else if (c && gap_seen)
			c->untracked_free_count += 1;
		else if (c)
			c->unmatched_free_count += 1;
	}
	if (!ok) {
		/* realloc(p, 0): a free only */
		if (tracked)
			report_block(MS_EV_VARIABLE_FREE, tgid, 0, st->old_addr, st->old.size);
		return;
	}
	/* A block moved (or resized in place) keeps its variable; one
	 * whose new record did not fit ends here for the tracker. */
	bool kept = account_alloc(ctx, c, slot, tgid, addr, st->size, tracked, st->mode);
	if (tracked)
		report_block(kept ? MS_EV_VARIABLE_MOVE : MS_EV_VARIABLE_FREE, tgid,
			     st->old_addr, kept ? addr : st->old_addr, st->size);
	account_groups(st, tgid, st->size);
}

/* The outermost allocator call's return: its result accounted. */
static __always_inline void on_return(struct pt_regs *ctx, __u64 ret)
{
	struct ms_thread_counters *c;
	struct ms_inflight *st;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 addr = ret;
	int slot;
	bool ok;

	st = bpf_task_storage_get(&inflight, bpf_get_current_task_btf(), 0, 0);
	if (!st || !st->entry_sp || st->epoch != epoch)
		return;
	/* A nested call returns onto a stack at or below the outer entry's. */
	if (PT_REGS_SP(ctx) <= st->entry_sp)
		return;
	st->entry_sp = 0;

	slot = thread_slot(st);
	c = counters_of(slot);

	if (st->kind == MS_KIND_POSIX_MEMALIGN) {
		addr = 0;
		ok = (int)ret == 0;
		if (ok && bpf_probe_read_user(&addr, sizeof(addr), (void *)st->memptr)) {
			count_drop(MS_DROP_READ_FAULT);
			return;
		}
	} else {
		ok = addr != 0;
	}

	if (st->mode == MS_MODE_ASYNC) {
		st->last_alloc = 0; /* no address is kept: none is the latest */
		count_async(c, st, ok);
	} else if (st->kind == MS_KIND_REALLOC || st->kind == MS_KIND_REALLOCARRAY) {
		account_resize(ctx, c, st, slot, tgid, addr, ok);
		if (ok)
			st->last_alloc = addr;
	} else if (ok) {
		account_alloc(ctx, c, slot, tgid, addr, st->size, 0, st->mode);
		account_groups(st, tgid, st->size);
		st->last_alloc = addr;
	} else if (st->size > 0 && c) {
		c->failed_alloc_count += 1;
	}
}

SEC("uretprobe")
int BPF_KRETPROBE(alloc_return, __u64 ret)
{
	on_return(ctx, ret);
	return 0;
}

static __always_inline void on_free(struct pt_regs *ctx, __u64 ptr)
{
	struct ms_thread_counters *c;
	struct ms_inflight *st;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct ms_alloc_rec rec;
	__u32 m;

	if (!ptr)
		return;
	st = state_unless_off(&m);
	if (!st)
		return;
	if (st->entry_sp && st->epoch == epoch && PT_REGS_SP(ctx) <= st->entry_sp)
		return; /* inside realloc & co: the outer call accounts for it */

	c = counters_of(thread_slot(st));
	if (m == MS_MODE_ASYNC) {
		if (c && st->exiting)
			c->exit_unmatched_free_count += 1;
		else if (c)
			c->free_count += 1; /* its size is not known here */
		return;
	}
	if (take_record(tgid, ptr, &rec)) {
		/* Its own latest allocation, no other between: a temporary. */
		bool temporary = ptr == st->last_alloc && rec.owner_slot == (__u32)thread_slot(st);

		account_free(c, tgid, &rec, temporary);
		if (temporary) {
			st->last_alloc = 0;
			if (c)
				c->temporary_count += 1;
		}
		if (rec.flags & MS_REC_TRACKED)
			report_block(MS_EV_VARIABLE_FREE, tgid, 0, ptr, rec.size);
	} else if (c && st->exiting)
		c->exit_unmatched_free_count += 1;
	else if (c && gap_seen)
		c->untracked_free_count += 1;
	else if (c)
		c->unmatched_free_count += 1;
}

SEC("uprobe")
int BPF_KPROBE(free_entry, __u64 ptr)
{
	on_free(ctx, ptr);
	return 0;
}
