/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Lifecycle: forks, execs and exits of traced processes, and the
 * benchmark's empty programs.
 * Part of memscope.bpf.c, included once, in this order: one object, one
 * skeleton. */

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

/* The same as a session: a return probe where alloc_session would ask for
 * one (async mode's leaf calls go without, as there). The loader's and a
 * thread's end, rare, do their real work: the tracer must still learn of
 * libraries to probe. */
SEC("uprobe")
int empty_session(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 kind = (cookie >> MS_COOKIE_KIND_SHIFT) & MS_COOKIE_KIND_MASK;

	if (bpf_session_is_return())
		return 0;
	if (kind == MS_KIND_LOADER_CHANGED)
		on_loader_changed();
	if (kind == MS_KIND_THREAD_EXIT)
		on_thread_exit();
	if (kind == MS_KIND_FREE || kind == MS_KIND_THREAD_EXIT || kind == MS_KIND_LOADER_CHANGED)
		return 1;
	return (cookie & MS_COOKIE_LEAF) && mode_now() == MS_MODE_ASYNC;
}

/* Process-level facts of traced processes; cheap lookups on rare events. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = parent->tgid, ctgid = child->tgid;
	struct ms_target *t;

	if (ptgid == ctgid) {
		/* A new thread: a second one to bind the probes to, if wanted. */
		if (bpf_map_delete_elem(&lone_bindings, &ptgid) == 0)
			report_event(MS_EV_NEW_THREAD, ptgid, 0, child->pid, 0, true);
		return 0; /* not a process */
	}
	t = bpf_map_lookup_elem(&targets, &ptgid);
	if (!t)
		return 0;
	__sync_fetch_and_add(&t->forks, 1);
	bpf_map_update_elem(&children, &ctgid, &ptgid, BPF_NOEXIST);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p, pid_t old_pid)
{
	__u32 tgid = p->tgid;
	struct ms_target *t = bpf_map_lookup_elem(&targets, &tgid);
	struct ms_inflight *st;

	if (t) {
		__sync_fetch_and_add(&t->execs, 1);
		/* Slots handed out from now on are the new program's. */
		report_event(MS_EV_EXEC, tgid, 0, next_slot, (__u32)old_pid, true);
	}
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
	/* Its memory is gone already: the probes stay only through the other
	 * bound thread until the tracer moves this one's. */
	if (bpf_map_delete_elem(&bound_tasks, &key.tid) == 0)
		report_event(MS_EV_BOUND_EXIT, tgid, 0, key.tid, 0, true);
	/* A hold's signal it never stopped for (killed on the way): its mark
	 * goes, or a later thread given its tid would lose a real signal. */
	bpf_map_delete_elem(&holds_sent, &key.tid);
	/* The thread's last name, kept for threads gone before the report. */
	bpf_probe_read_kernel_str(name.comm, sizeof(name.comm), p->comm);
	bpf_map_update_elem(&thread_names, &key, &name, BPF_ANY);
	if (p->signal->live.counter == 0) {
		t->exit_code = p->exit_code;
		t->exited = 1;
	}
	return 0;
}
