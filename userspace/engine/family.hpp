// `run` follows the command's children: every process it starts (fork,
// vfork, posix_spawn), across exec, is traced from its first instruction,
// each with a Session of its own and a report section per program it ran.
//
// The stops come from ptrace (PTRACE_SEIZE with fork/vfork/clone/exec/exit
// events): a new process waits at its first stop until its probes are
// attached, and an exec waits until the new program and its loader are.
// What the process maps after that is probed where the loader says it has
// mapped it (the loader hold: `_dl_debug_state`, at start before any
// library's code ran, and at each dlopen): its own environment's
// LD_PRELOAD, a chroot's libraries, a file deleted since, from its own
// /proc/PID/maps. Nothing else is stopped; signals are passed on at once.
// Should the tracer die, the kernel detaches every tracee and they run on,
// unharmed (no PTRACE_O_EXITKILL; the hold's signal is one the program
// ignores).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "model.hpp"
#include "session.hpp"
#include "trace_source.hpp"

namespace memscope {

class Family {
public:
    // `root` is the command's Session, already attached; `make_section`
    // turns a process's Session into its report (at exec, exit or the end).
    using SectionMaker = std::function<Report(Session&, const Target&, bool final)>;
    // `follow_children` false (--no-follow): the command alone, its threads,
    // exits, execs and loader holds under ptrace; the processes it starts
    // are not traced, and its report has no sections.
    Family(TraceSource& tracer, Session& root, std::size_t max_variables, SectionMaker make_section,
           bool follow_children = true);
    bool follows_children() const { return follow_children_; }
    ~Family();

    // Trace the held root (before it execs). Returns an error sentence.
    std::string seize(int root_pid, const std::string& exe);

    // Handle every pending ptrace stop and exit (call on SIGCHLD). Returns
    // true once the root has exited; its status is root_status().
    bool reap(double t_s);
    int root_status() const { return root_status_; }

    // Drain the events of every process.
    void drain(double t_s);
    void on_event(const DecodedEvent& ev);

    // Sections of programs that ended (exec'd away or exited), then one for
    // each process still alive, the root excluded (the caller reports it).
    std::vector<Report> sections();
    // The same without ending anything: a snapshot (SIGUSR1).
    std::vector<Report> snapshot_sections();
    // Append the threads of every live process but the root, and add their
    // live bytes to `live_bytes` (the timeline's samples).
    void add_live_threads(std::vector<ThreadStats>& threads, std::uint64_t& live_bytes) const;
    // The program the root runs now (it may have exec'd another).
    std::string root_exe() const
    {
        auto it = members_.find(root_pid_);
        return it == members_.end() ? std::string() : it->second.exe;
    }
    const std::vector<std::string>& notes() const { return notes_; }

private:
    // A section for each process still here (`final`: its variables handed over).
    void add_live_sections(std::vector<Report>& out, bool final);
    struct Member {
        std::unique_ptr<Session> session; // null for the root (root_)
        int parent = 0;
        std::string exe;
        bool attached = false; // probes in place: it may run
        bool first_exec_pending = false; // the root's own exec of the command
        int hold_signal = 0; // the loader hold's signal (0: none)
    };
    Session& session_of(Member& m) { return m.session ? *m.session : root_; }
    void new_process(int pid, int parent);
    // Hold the process at its loader from now on (see above).
    void arm_hold(int pid, Member& m);
    // A signal stop of `tid` that is the loader hold: its new files are probed.
    bool on_hold(int tid, int sig);
    void on_exec(int pid, int former_tid);
    void on_exit(int pid, int status);
    Target target_of(int pid, const Member& m) const;

    TraceSource& tracer_;
    Session& root_;
    std::size_t max_variables_;
    SectionMaker make_section_;
    bool follow_children_ = true;
    int root_pid_ = 0;
    int root_status_ = 0;
    bool root_exited_ = false;
    std::map<int, Member> members_; // by pid (thread-group leader)
    std::set<int> threads_;         // tids of traced threads that are not leaders
    std::set<int> started_;          // tasks whose first stop was seen
    std::vector<Report> ended_;
    std::vector<std::string> notes_;
};

} // namespace memscope
