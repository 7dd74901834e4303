// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* System-wide tier 0 (-a): every process's memory from kernel tracepoints,
 * no uprobe anywhere.
 *
 * One entry per live process (tgid) in `procs`: resident memory by kind
 * from rss_stat (the kernel's own counters, as /proc/PID/status reads
 * them), the heap's size from brk, anonymous mappings from mmap, unmapped
 * bytes from munmap, births, execs and exits from the scheduler, OOM kills
 * from the OOM killer. A process's entry leaves the map when its last
 * thread exits; its last figures go to userspace in the exit event, so the
 * map holds live processes only, however many come and go. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "memscope.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define PF_EXITING_FLAG 0x00000004
#define PF_KTHREAD_FLAG 0x00200000
#define MAP_SHARED_FLAG 0x01
#define MAP_ANONYMOUS_FLAG 0x20
#define PAGE_BYTES 4096ull

/* Wake the reader only when the ring is this full; it polls anyway. */
const volatile __u64 event_wakeup_bytes = MS_DEFAULT_SYS_RING / 8;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MS_DEFAULT_MAX_SYS_PROCS);
	__type(key, __u32);
	__type(value, struct ms_sys_proc);
} procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, MS_DEFAULT_SYS_RING);
} sys_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MS_SYS_DROP_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} sys_drops SEC(".maps");

/* An anonymous mmap in flight on this thread: its length, from the
 * syscall's entry to its return (per thread: it may sleep and migrate). */
struct mmap_pending {
	__u64 len;
};
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct mmap_pending);
} pending_mmap SEC(".maps");

/* --heap selectors for new programs: their name, their file, their cgroup
 * (or an ancestor); and the processes that matched, held at their loader. */
volatile __u32 hold_selectors = 0;
const volatile __u64 hold_ns = MS_DEFAULT_HOLD_NS;
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MS_MAX_HOLD_SELECTORS);
	__type(key, struct ms_hold_comm);
	__type(value, __u8);
} hold_comms SEC(".maps");
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MS_MAX_HOLD_SELECTORS);
	__type(key, struct ms_hold_inode);
	__type(value, __u8);
} hold_inodes SEC(".maps");
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16 * MS_MAX_HOLD_SELECTORS);
	__type(key, __u64);
	__type(value, __u8);
} hold_cgroups SEC(".maps");
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct ms_hold);
} holds SEC(".maps");

static __always_inline void count_drop(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&sys_drops, &reason);

	if (n)
		*n += 1;
}

static __always_inline __u64 pages_to_bytes(long pages)
{
	return pages > 0 ? (__u64)pages * PAGE_BYTES : 0;
}

static __always_inline __u64 round_to_pages(__u64 len)
{
	return (len + PAGE_BYTES - 1) & ~(PAGE_BYTES - 1);
}

/* The kernel's counters of `mm`, as /proc/PID/status reads them. */
static __always_inline void read_rss(struct ms_sys_proc *p, struct mm_struct *mm)
{
	p->rss[MS_RSS_FILE] = pages_to_bytes(BPF_CORE_READ(mm, rss_stat[0].count));
	p->rss[MS_RSS_ANON] = pages_to_bytes(BPF_CORE_READ(mm, rss_stat[1].count));
	p->rss[MS_RSS_SWAP] = pages_to_bytes(BPF_CORE_READ(mm, rss_stat[2].count));
	p->rss[MS_RSS_SHMEM] = pages_to_bytes(BPF_CORE_READ(mm, rss_stat[3].count));
}

static __always_inline void note_peaks(struct ms_sys_proc *p)
{
	__u64 resident = p->rss[MS_RSS_FILE] + p->rss[MS_RSS_ANON] + p->rss[MS_RSS_SHMEM];

	if (p->rss[MS_RSS_ANON] > p->peak_rss_anon)
		p->peak_rss_anon = p->rss[MS_RSS_ANON];
	if (resident > p->peak_rss)
		p->peak_rss = resident;
}

/* A new entry's memory figures: `mm`'s counters and heap now. */
static __always_inline void first_figures(struct ms_sys_proc *p, struct mm_struct *mm)
{
	if (mm) {
		read_rss(p, mm);
		p->brk_bytes = BPF_CORE_READ(mm, brk) - BPF_CORE_READ(mm, start_brk);
		p->peak_brk_bytes = p->brk_bytes;
		note_peaks(p);
	}
	p->first_rss_anon = p->rss[MS_RSS_ANON];
}

/* `pid`'s number in its own (innermost) pid namespace, and that namespace's level. */
static __always_inline void namespace_pid(struct ms_sys_proc *p, struct pid *pid)
{
	unsigned int level = BPF_CORE_READ(pid, level);
	struct upid up = {};

	p->ns_level = level;
	if (level < 32 && pid)
		bpf_probe_read_kernel(&up, sizeof(up), &pid->numbers[level]);
	p->ns_pid = up.nr;
}

/* Who `task` is: its process's name and parent, its pid in its own pid
 * namespace, its leader's start time (a reused pid is another process). */
static __always_inline void describe(struct ms_sys_proc *p, struct task_struct *task)
{
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);

	bpf_probe_read_kernel_str(p->comm, sizeof(p->comm), leader->comm);
	p->ppid = BPF_CORE_READ(leader, real_parent, tgid);
	p->start_ns = BPF_CORE_READ(leader, start_time);
	p->start_boottime_ns = BPF_CORE_READ(leader, start_boottime);
	namespace_pid(p, BPF_CORE_READ(leader, thread_pid));
}

/* The entry of `task`'s process, made now if it has none (a process that
 * ran before the tracer and userspace did not list, or one whose fork the
 * table had no room for then). */
static __always_inline struct ms_sys_proc *entry_of(struct task_struct *task, __u32 tgid)
{
	struct ms_sys_proc *p = bpf_map_lookup_elem(&procs, &tgid);
	struct ms_sys_proc fresh = {};

	if (p)
		return p;
	describe(&fresh, task);
	fresh.first_seen_ns = bpf_ktime_get_ns();
	fresh.cgroup_id = bpf_get_current_cgroup_id();
	first_figures(&fresh, BPF_CORE_READ(task, mm));
	if (bpf_map_update_elem(&procs, &tgid, &fresh, BPF_NOEXIST) != 0) {
		p = bpf_map_lookup_elem(&procs, &tgid);
		if (!p)
			count_drop(MS_SYS_DROP_sys_table_full);
		return p;
	}
	return bpf_map_lookup_elem(&procs, &tgid);
}

/* `urgent`: someone waits on it (a held process): wake the reader now. */
static __always_inline void send_event(__u32 kind, __u32 pid, const struct ms_sys_proc *p, __s32 exit_code,
				       bool urgent)
{
	struct ms_sys_event *e = bpf_ringbuf_reserve(&sys_events, sizeof(*e), 0);
	__u64 flags;

	if (!e) {
		count_drop(MS_SYS_DROP_sys_ring_full);
		return;
	}
	e->kind = kind;
	e->pid = pid;
	e->ts = bpf_ktime_get_ns();
	e->exit_code = exit_code;
	e->pad = 0;
	if (p)
		__builtin_memcpy(&e->proc, p, sizeof(e->proc));
	else
		__builtin_memset(&e->proc, 0, sizeof(e->proc));
	flags = urgent || bpf_ringbuf_query(&sys_events, BPF_RB_AVAIL_DATA) >= event_wakeup_bytes ? BPF_RB_FORCE_WAKEUP
												   : BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

static __always_inline void send(__u32 kind, __u32 pid, const struct ms_sys_proc *p, __s32 exit_code)
{
	send_event(kind, pid, p, exit_code, false);
}

/* What this CPU last wrote for the process it last saw: a fault that moves
 * a counter by less than MS_RSS_STEP from it is not written (nor looked up:
 * the hash lookup is most of the program's cost, and a fault-heavy process
 * faults on one CPU at a time). The kernel's own counters are approximate
 * by more than that (per-CPU batches of 64 pages and up). */
#define MS_RSS_STEP (64u << 10)
struct rss_seen {
	__u32 tgid;
	__u32 pad;
	__u64 bytes[MS_RSS_MEMBERS];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rss_seen);
} rss_last SEC(".maps");

static __always_inline __u64 member_bytes(struct mm_struct *mm, int member)
{
	switch (member) {
	case MS_RSS_FILE: return pages_to_bytes(mm->rss_stat[0].count);
	case MS_RSS_ANON: return pages_to_bytes(mm->rss_stat[1].count);
	case MS_RSS_SWAP: return pages_to_bytes(mm->rss_stat[2].count);
	default: return pages_to_bytes(mm->rss_stat[3].count);
	}
}

/* A resident-memory counter of `mm` changed (every fault, every unmap). */
SEC("tp_btf/rss_stat")
int BPF_PROG(on_rss_stat, struct mm_struct *mm, int member)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	struct task_struct *owner;
	struct ms_sys_proc *p;
	struct rss_seen *seen;
	__u32 zero = 0, tgid;
	__u64 bytes, was;

	if (member < 0 || member >= MS_RSS_MEMBERS)
		return 0;
	bytes = member_bytes(mm, member);
	if (cur->mm != mm) {
		/* Another process's memory (reclaim, a fork copying it): its
		 * owner's, while the owner still uses it (not an exec's or an
		 * exit's teardown of memory no program runs in any more). */
		owner = BPF_CORE_READ(mm, owner);
		if (!owner || BPF_CORE_READ(owner, mm) != mm ||
		    (BPF_CORE_READ(owner, flags) & PF_EXITING_FLAG))
			return 0;
		tgid = BPF_CORE_READ(owner, tgid);
		p = bpf_map_lookup_elem(&procs, &tgid);
		if (!p)
			return 0;
		p->rss[member & 3] = bytes;
		note_peaks(p);
		return 0;
	}
	tgid = cur->tgid;
	seen = bpf_map_lookup_elem(&rss_last, &zero);
	if (seen && seen->tgid == tgid) {
		was = seen->bytes[member & 3];
		if ((bytes > was ? bytes - was : was - bytes) < MS_RSS_STEP)
			return 0;
	}
	p = entry_of(cur, tgid);
	if (!p)
		return 0;
	p->rss[member & 3] = bytes;
	note_peaks(p);
	if (seen) {
		if (seen->tgid != tgid) {
			seen->tgid = tgid;
			__builtin_memcpy(seen->bytes, p->rss, sizeof(seen->bytes));
		}
		seen->bytes[member & 3] = bytes;
	}
	return 0;
}

/* The heap's size after each brk (it returns the break, moved or not). */
SEC("tp/syscalls/sys_exit_brk")
int on_brk_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	struct ms_sys_proc *p = entry_of(cur, cur->tgid);
	struct mm_struct *mm = cur->mm;

	if (!p || !mm)
		return 0;
	p->brk_calls += 1;
	p->brk_bytes = BPF_CORE_READ(mm, brk) - BPF_CORE_READ(mm, start_brk);
	if (p->brk_bytes > p->peak_brk_bytes)
		p->peak_brk_bytes = p->brk_bytes;
	return 0;
}

SEC("tp/syscalls/sys_enter_mmap")
int on_mmap_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u64 flags = ctx->args[3];
	struct mmap_pending *m;

	if (!(flags & MAP_ANONYMOUS_FLAG) || (flags & MAP_SHARED_FLAG))
		return 0;
	m = bpf_task_storage_get(&pending_mmap, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (m)
		m->len = round_to_pages(ctx->args[1]);
	return 0;
}

SEC("tp/syscalls/sys_exit_mmap")
int on_mmap_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	struct mmap_pending *m = bpf_task_storage_get(&pending_mmap, cur, 0, 0);
	struct ms_sys_proc *p;
	__u64 len;

	if (!m || !m->len)
		return 0;
	len = m->len;
	m->len = 0;
	if (ctx->ret < 0 && ctx->ret > -4096)
		return 0; /* failed */
	p = entry_of(cur, cur->tgid);
	if (!p)
		return 0;
	__sync_fetch_and_add(&p->mmap_anon_bytes, len);
	__sync_fetch_and_add(&p->mmap_anon_calls, 1);
	return 0;
}

SEC("tp/syscalls/sys_enter_munmap")
int on_munmap_enter(struct trace_event_raw_sys_enter *ctx)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	struct ms_sys_proc *p = entry_of(cur, cur->tgid);

	if (!p)
		return 0;
	__sync_fetch_and_add(&p->munmap_bytes, round_to_pages(ctx->args[1]));
	__sync_fetch_and_add(&p->munmap_calls, 1);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(sys_on_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = parent->tgid, ctgid = child->tgid;
	struct ms_sys_proc fresh = {};
	struct ms_sys_proc *pp;

	if (ptgid == ctgid || (child->flags & PF_KTHREAD_FLAG))
		return 0; /* a thread, or a kernel thread: no memory of its own */
	pp = bpf_map_lookup_elem(&procs, &ptgid);
	if (pp)
		__sync_fetch_and_add(&pp->forks, 1);
	/* The child's memory was copied before this tracepoint: its counters
	 * are read here, not waited for. */
	bpf_probe_read_kernel_str(fresh.comm, sizeof(fresh.comm), child->comm);
	fresh.ppid = ptgid;
	fresh.start_ns = child->start_time;
	fresh.start_boottime_ns = child->start_boottime;
	fresh.first_seen_ns = bpf_ktime_get_ns();
	fresh.cgroup_id = bpf_get_current_cgroup_id();
	fresh.flags = MS_SYS_SEEN_FORK;
	namespace_pid(&fresh, child->thread_pid);
	first_figures(&fresh, child->mm);
	if (bpf_map_update_elem(&procs, &ctgid, &fresh, BPF_ANY) != 0)
		count_drop(MS_SYS_DROP_sys_table_full);
	return 0;
}

static long cgroup_level_matches(__u64 level, void *data)
{
	__u64 id = bpf_get_current_ancestor_cgroup_id((int)level);
	int *found = data;

	if (!id)
		return 1;
	if (bpf_map_lookup_elem(&hold_cgroups, &id)) {
		*found = 1;
		return 1;
	}
	return 0;
}

/* Does the new program match a --heap selector? Then it is held at its
 * loader until userspace has probed it. */
static __always_inline bool chosen(const struct ms_sys_proc *e, struct linux_binprm *bprm)
{
	struct ms_hold_comm comm = {};
	struct ms_hold_inode file = {};
	struct ms_hold hold = {};
	struct inode *inode;
	int found = 0;
	__u32 tgid;

	if (!hold_selectors)
		return false;
	__builtin_memcpy(comm.comm, e->comm, sizeof(comm.comm));
	inode = BPF_CORE_READ(bprm, file, f_inode);
	file.ino = BPF_CORE_READ(inode, i_ino);
	file.dev = BPF_CORE_READ(inode, i_sb, s_dev);
	if (bpf_map_lookup_elem(&hold_comms, &comm) || bpf_map_lookup_elem(&hold_inodes, &file))
		found = 1;
	else
		bpf_loop(64, cgroup_level_matches, &found, 0);
	tgid = bpf_get_current_pid_tgid() >> 32;
	if (!found) {
		/* A held process that runs another program, one not chosen:
		 * that one goes on at once. */
		bpf_map_delete_elem(&holds, &tgid);
		return false;
	}
	return bpf_map_update_elem(&holds, &tgid, &hold, BPF_ANY) == 0;
}

struct hold_wait {
	__u32 tgid;
	__u32 call;
	__u64 deadline;
	int timed_out;
};

static long still_held(__u64 i, void *data)
{
	struct hold_wait *w = data;
	struct ms_hold *h = bpf_map_lookup_elem(&holds, &w->tgid);

	if (!h || h->released >= w->call)
		return 1;
	if (bpf_ktime_get_ns() > w->deadline) {
		w->timed_out = 1;
		return 1;
	}
	return 0;
}

/* ld.so has mapped (or is about to map) libraries: a held process waits
 * here, in the kernel, until userspace has attached its probes to what it
 * maps now, or the hold's time is up. Sleepable: preemptible while it waits. */
SEC("uprobe.s")
int hold_at_loader(struct pt_regs *ctx)
{
	struct hold_wait w = { .tgid = bpf_get_current_pid_tgid() >> 32 };
	struct ms_hold *h = bpf_map_lookup_elem(&holds, &w.tgid);

	if (!h)
		return 0;
	w.call = __sync_add_and_fetch(&h->calls, 1);
	w.deadline = bpf_ktime_get_ns() + hold_ns;
	send_event(MS_SYS_EV_HELD, w.tgid, 0, (__s32)w.call, true);
	/* Each round reads the map and the clock: 2^23 of them outlast the
	 * deadline on any machine this runs on; the deadline bounds the wait. */
	bpf_loop(1 << 23, still_held, &w, 0);
	if (w.timed_out)
		count_drop(MS_SYS_DROP_hold_timeout);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(sys_on_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 tgid = p->tgid;
	struct ms_sys_proc *e = entry_of(p, tgid);
	struct mm_struct *mm = p->mm;
	bool held;

	if (!e)
		return 0;
	__builtin_memset(e->comm, 0, sizeof(e->comm));
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), p->comm);
	e->execs += 1;
	e->cgroup_id = bpf_get_current_cgroup_id();
	/* The new program's memory; the peaks stay the process's. Its growth
	 * starts afresh: a child forked from a large parent has the parent's
	 * memory until its exec, which is no shrinking of the new program. */
	if (mm) {
		read_rss(e, mm);
		e->brk_bytes = 0;
	}
	e->first_seen_ns = bpf_ktime_get_ns();
	e->first_rss_anon = e->rss[MS_RSS_ANON];
	held = chosen(e, bprm);
	send_event(MS_SYS_EV_EXEC, tgid, e, held ? MS_SYS_EXEC_HELD : 0, held);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(sys_on_exit, struct task_struct *p, bool group_dead)
{
	__u32 tgid = p->tgid;
	struct ms_sys_proc *e;

	if (!group_dead)
		return 0;
	bpf_map_delete_elem(&holds, &tgid);
	e = bpf_map_lookup_elem(&procs, &tgid);
	if (!e) {
		/* Born before the tracer, never faulted nor mapped since: its
		 * exit is still told (userspace listed it at start). */
		send(MS_SYS_EV_EXIT, tgid, 0, p->exit_code);
		return 0;
	}
	e->flags |= MS_SYS_EXITED;
	send(MS_SYS_EV_EXIT, tgid, e, p->exit_code);
	bpf_map_delete_elem(&procs, &tgid);
	return 0;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(sys_on_oom_victim, struct task_struct *task)
{
	__u32 tgid = BPF_CORE_READ(task, tgid);
	struct ms_sys_proc *e = bpf_map_lookup_elem(&procs, &tgid);
	struct ms_sys_proc last = {};
	struct mm_struct *mm = BPF_CORE_READ(task, mm);

	if (e) {
		e->flags |= MS_SYS_OOM_KILLED;
		__builtin_memcpy(&last, e, sizeof(last));
	} else {
		describe(&last, task);
	}
	/* The kernel's figures at the kill, whatever the last event said. */
	if (mm) {
		read_rss(&last, mm);
		note_peaks(&last);
	}
	last.flags |= MS_SYS_OOM_KILLED;
	send(MS_SYS_EV_OOM, tgid, &last, 0);
	return 0;
}
