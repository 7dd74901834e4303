/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Unwinding: the stack walk at an allocator's return (unwind tables from
 * each file's .eh_frame, epilogues, frame pointers, signal frames), the
 * per-CPU rule cache, and new stacks sent to userspace.
 * Part of memscope.bpf.c, included once, in this order: one object, one
 * skeleton. */

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

/* rule_at as a global function: the kernel verifies it once, on its own,
 * rather than again for every state of the walk that calls it (inlined,
 * the table search and the vma walk within the walk's loop took the
 * verifier past its million instructions). The calling task is the
 * current one. Returns 0. */
__noinline int rule_lookup(__u64 prog, __u64 ip, struct rule *r)
{
	if (!r)
		return 0;
	rule_at(bpf_get_current_task_btf(), prog, ip, r);
	return 0;
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
	rule_lookup(w->prog, w->ip - !w->exact, &r);
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
