/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The tracker's entry points (variables, scopes, tasks), ld.so's library
 * changes that bring new ones, and a thread's teardown.
 * Part of memscope.bpf.c, included once, in this order: one object, one
 * skeleton. */

/* Past this point the thread only tears down: glibc then frees its tcache,
 * blocks the program freed long ago, which must not read as unmatched. */
static __always_inline void on_thread_exit(void)
{
	struct ms_inflight *st;

	st = bpf_task_storage_get(&inflight, bpf_get_current_task_btf(), 0,
				  BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (st)
		st->exiting = 1;
}

SEC("uprobe")
int BPF_KPROBE(thread_exit_entry)
{
	on_thread_exit();
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

/* Scopes and tasks: entered and left on the thread's own stacks. */
static __always_inline void nesting_op(struct pt_regs *ctx, struct ms_inflight *st, __u32 op, __u64 site)
{
	switch (op) {
	case MEMSCOPE_OP_SCOPE_ENTER: {
		__u32 d = st->scope_depth;
		if (d < MS_MAX_SCOPE_DEPTH) {
			st->scopes[d] = ctx->dx;
			st->scope_sites[d] = site;
		} else
			count_drop(MS_DROP_SCOPE_TOO_DEEP);
		st->scope_depth = d + 1;
		return;
	}
	case MEMSCOPE_OP_SCOPE_EXIT:
		if (st->scope_depth > 0)
			st->scope_depth -= 1;
		return;
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
		return;
	}
	case MEMSCOPE_OP_TASK_EXIT:
		if (st->task_depth > 0)
			st->task_depth -= 1;
		return;
	default:
		return;
	}
}

/* A tracked variable, streamed to userspace with what it is joined to: its
 * block's record, the scope and task it was named in. */
static __always_inline void report_variable(struct pt_regs *ctx, struct ms_inflight *st,
					    const struct ms_thread_key *me, __u64 site)
{
	/* The join with the block's record first, outside the ring's reservation. */
	struct ms_alloc_rec *rec = 0;
	if (ctx->di) {
		struct ms_alloc_key k = { .tgid = me->tgid, .addr = ctx->di };
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
			return;
		}
		e->ext.thread_start_ns = me->start_ns;
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
			return;
		}
		base->h.flags = 0;
	}
	/* Every field written once, no memset first. */
	base->h.type = MS_EV_VARIABLE;
	base->h.tgid = me->tgid;
	base->h.tid = me->tid;
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
}

/* The tracker entry point (probes/include/memscope/track.h): one site per
 * module, the op in ecx; see probe_abi.h for the registers. */
SEC("uprobe")
int tracker_entry(struct pt_regs *ctx)
{
	__u32 op = (__u32)ctx->cx;
	__u64 site = PT_REGS_IP(ctx) | (bpf_get_attach_cookie(ctx) << MS_SITE_MODULE_SHIFT);
	__u32 m;
	struct ms_inflight *st = state_unless_off(&m);

	if (!st)
		return 0;

	if (op != MEMSCOPE_OP_TRACK && op != MEMSCOPE_OP_REQUEST_MODE) {
		nesting_op(ctx, st, op, site);
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

	report_variable(ctx, st, &me, site);
	return 0;
}

/* ld.so calls _dl_debug_state before and after it maps or unmaps libraries
 * (at start and at each dlopen/dlclose): the loader may find new allocators
 * and tracker entry points to attach to. */
static __always_inline void on_loader_changed(void)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	__u32 *sig = bpf_map_lookup_elem(&loader_holds, &tgid);

	/* A process the tracer follows stops here (a signal it intercepts and
	 * never delivers) until the new files' allocators are probed: no code
	 * of theirs, constructors included, runs unseen. */
	if (sig && bpf_map_update_elem(&holds_sent, &tid, sig, BPF_ANY) == 0)
		bpf_send_signal_thread(*sig);
	report_event(MS_EV_LOADER_CHANGED, tgid, 0, 0, 0, true);
}

SEC("uprobe")
int loader_changed(struct pt_regs *ctx)
{
	on_loader_changed();
	return 0;
}
