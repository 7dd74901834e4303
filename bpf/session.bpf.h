/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* uprobe_multi sessions (where the kernel has them): one program for every
 * allocator site of a file, attached to one process by a pid-filtered link
 * (no other process gets a breakpoint). The kernel runs it at a site's
 * entry and, only when the entry asks for it, at the function's return:
 * calls that need no result (free, nested calls, async mode's leaf calls,
 * probes off) pay no return probe. Each site's cookie carries its kind.
 * Part of memscope.bpf.c, included once, in this order: one object, one
 * skeleton. */

extern bool bpf_session_is_return(void) __ksym __weak;

SEC("uprobe")
int alloc_session(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	bool leaf = (cookie & MS_COOKIE_LEAF) != 0;
	__u64 a1 = PT_REGS_PARM1(ctx), a2 = PT_REGS_PARM2(ctx), a3 = PT_REGS_PARM3(ctx);

	if (bpf_session_is_return()) {
		on_return(ctx, PT_REGS_RC(ctx));
		return 0;
	}
	/* At the entry: 0 asks for the return, anything else waives it. */
	switch ((cookie >> MS_COOKIE_KIND_SHIFT) & MS_COOKIE_KIND_MASK) {
	case MS_KIND_MALLOC:
		return !on_entry(ctx, MS_KIND_MALLOC, a1, 0, 0, leaf);
	case MS_KIND_CALLOC:
		return !on_entry(ctx, MS_KIND_CALLOC, mul_or_max(a1, a2), 0, 0, leaf);
	case MS_KIND_REALLOC:
		return !on_entry(ctx, MS_KIND_REALLOC, a2, a1, 0, false);
	case MS_KIND_REALLOCARRAY:
		return !on_entry(ctx, MS_KIND_REALLOCARRAY, mul_or_max(a2, a3), a1, 0, false);
	case MS_KIND_MEMALIGN:
		return !on_entry(ctx, MS_KIND_MEMALIGN, a2, 0, 0, false);
	case MS_KIND_POSIX_MEMALIGN:
		return !on_entry(ctx, MS_KIND_POSIX_MEMALIGN, a3, 0, a1, false);
	case MS_KIND_FREE:
		on_free(ctx, a1);
		return 1;
	case MS_KIND_THREAD_EXIT:
		on_thread_exit();
		return 1;
	case MS_KIND_LOADER_CHANGED:
		on_loader_changed();
		return 1;
	}
	return 1;
}
