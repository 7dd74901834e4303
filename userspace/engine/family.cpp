#include "family.hpp"
#include "paths.hpp"

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>

#include "proc.hpp"

namespace memscope {

namespace {

// A number from /proc/TID/status ("Tgid:", "PPid:"); 0 when the task is gone.
int status_field(int tid, const char* field)
{
    std::ifstream in("/proc/" + std::to_string(tid) + "/status");
    const std::size_t n = std::strlen(field);
    for (std::string line; std::getline(in, line);)
        if (line.compare(0, n, field) == 0)
            return std::atoi(line.c_str() + n);
    return 0;
}

int tgid_of(int tid)
{
    return status_field(tid, "Tgid:");
}

// A signal the process neither blocks nor handles, that does nothing by
// default (should the tracer die before it takes it back): 0 if none.
int quiet_signal(int pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    unsigned long long blocked = ~0ull, caught = ~0ull;
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("SigBlk:", 0) == 0)
            blocked = std::strtoull(line.c_str() + 7, nullptr, 16);
        else if (line.rfind("SigCgt:", 0) == 0)
            caught = std::strtoull(line.c_str() + 7, nullptr, 16);
    }
    for (int sig : {SIGURG, SIGWINCH})
        if (!((blocked | caught) >> (sig - 1) & 1))
            return sig;
    return 0;
}

void resume(int tid, int sig = 0)
{
    ptrace(PTRACE_CONT, tid, nullptr, reinterpret_cast<void*>(static_cast<long>(sig)));
}

} // namespace

Family::Family(TraceSource& tracer, Session& root, std::size_t max_variables, SectionMaker make_section,
               bool follow_children)
    : tracer_(tracer), root_(root), max_variables_(max_variables), make_section_(std::move(make_section)),
      follow_children_(follow_children)
{
}

Family::~Family() = default;

std::string Family::seize(int root_pid, const std::string& exe)
{
    const long options = (follow_children_ ? PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK : 0) | PTRACE_O_TRACECLONE |
                         PTRACE_O_TRACEEXEC | PTRACE_O_TRACEEXIT;
    if (ptrace(PTRACE_SEIZE, root_pid, nullptr, reinterpret_cast<void*>(options)) != 0)
        return std::string("cannot follow the command's children (ptrace: ") + std::strerror(errno) + ")";
    root_pid_ = root_pid;
    Member& m = members_[root_pid];
    m.exe = exe;
    m.attached = true;
    m.first_exec_pending = true;
    started_.insert(root_pid);
    return {};
}

Target Family::target_of(int pid, const Member& m) const
{
    Target t;
    t.pid = pid;
    t.exe = m.exe;
    t.comm = base_name(m.exe).substr(0, 15);
    return t;
}

void Family::new_process(int pid, int parent)
{
    if (members_.count(pid))
        return;
    Member& m = members_[pid];
    m.parent = parent;
    m.exe = process_exe(pid);
    m.session = std::make_unique<Session>(tracer_, pid, max_variables_);
    m.session->set_start_ns(root_.start_ns());
    m.session->set_leak_min_age(root_.leak_min_age());
    m.session->follow(tracer_.mode());
    m.session->share_symbols(root_);
    std::string err;
    if (!tracer_.add_target(pid, err))
        notes_.push_back(err);
    // A copy of its parent: the same files, mapped at the same places.
    if (auto e = m.session->attach_new_files(); !e.empty())
        notes_.push_back("process " + std::to_string(pid) + ": " + e);
    m.attached = true;
    arm_hold(pid, m);
}

void Family::arm_hold(int pid, Member& m)
{
    m.hold_signal = quiet_signal(pid);
    const bool held = m.hold_signal != 0 && tracer_.hold_at_loader(pid, m.hold_signal);
    session_of(m).held_at_loader(held);
    if (!held) {
        m.hold_signal = 0;
        notes_.push_back("process " + std::to_string(pid) +
                         ": not held at its loader (SIGURG and SIGWINCH both blocked or handled, or the "
                         "hold table full): libraries it maps are probed as soon as seen, not before they run");
    }
}

bool Family::on_hold(int tid, int sig)
{
    const int pid = tgid_of(tid);
    auto it = members_.find(pid);
    if (it == members_.end() || it->second.hold_signal != sig)
        return false;
    siginfo_t info{};
    // The BPF side's signal is the kernel's (SI_KERNEL) and marked as sent
    // to this thread; one from kill(), a socket or a terminal is the
    // program's own, and passed on.
    if (ptrace(PTRACE_GETSIGINFO, tid, nullptr, &info) != 0 || info.si_code != SI_KERNEL ||
        !tracer_.take_hold_signal(tid, sig))
        return false;
    // The loader has mapped files and runs none of their code until this
    // thread goes on: the other threads do not know of them yet.
    if (auto e = session_of(it->second).attach_new_files(); !e.empty())
        notes_.push_back("process " + std::to_string(pid) + ": " + e);
    return true;
}

void Family::on_exec(int pid, int former_tid)
{
    const bool new_leader = former_tid > 0 && former_tid != pid;
    if (new_leader) {
        threads_.erase(former_tid); // it goes on as the leader; no exit comes for its old tid
        started_.erase(former_tid);
    }
    auto it = members_.find(pid);
    if (it == members_.end())
        return;
    Member& m = it->second;
    if (m.first_exec_pending) {
        // The command itself: its program and loader were probed before it
        // exec'd; its libraries are probed at the hold.
        m.first_exec_pending = false;
        if (auto e = root_.attach_new_files(); !e.empty())
            notes_.push_back("process " + std::to_string(pid) + ": " + e);
        arm_hold(pid, m);
        return;
    }
    Session& s = session_of(m);
    if (!follow_children_) {
        // One report for the command, whatever it runs: its probes stay (a
        // new leader's are moved at the old one's exit stop), and the new
        // program's files are probed as it maps them.
        if (auto e = s.attach_new_files(); !e.empty())
            notes_.push_back("process " + std::to_string(pid) + " exec'd: " + e);
        arm_hold(pid, m);
        return;
    }
    tracer_.drain_events();
    // The old program's section ends here; the new one starts afresh.
    Target old = target_of(pid, m);
    Report r = make_section_(s, old, true);
    r.processes.push_back({old, m.parent, {}, true, 0});
    ended_.push_back(std::move(r));
    tracer_.forget_process(pid);
    if (new_leader) {
        // Probes are owned by the task they were opened on; the old leader's
        // died with it, so the new program gets all of its files probed anew.
        tracer_.release_process(pid, TraceSource::Release::now);
    }
    s.on_exec(new_leader);
    m.exe = shown_path(pid, process_exe(pid));
    // The new program and its loader, as mapped; its libraries at the hold.
    if (auto e = s.attach_new_files(); !e.empty())
        notes_.push_back("process " + std::to_string(pid) + " exec'd " + m.exe + ": " + e);
    arm_hold(pid, m);
}

void Family::on_exit(int pid, int status)
{
    threads_.erase(pid);
    started_.erase(pid);
    auto it = members_.find(pid);
    if (it == members_.end())
        return;
    if (pid == root_pid_) {
        root_exited_ = true;
        root_status_ = status;
        return; // the root's Session stays: the caller reports it
    }
    tracer_.drain_events(); // what it sent before it went: its stacks, its variables
    Target t = target_of(pid, it->second);
    t.exit_code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
    Report r = make_section_(*it->second.session, t, true);
    r.processes.push_back({t, it->second.parent, {}, true, 0});
    ended_.push_back(std::move(r));
    members_.erase(it);
    // Its figures are in the section: its entries go, so that a later
    // process given the same pid starts from nothing.
    tracer_.forget_process(pid);
    tracer_.remove_target(pid);
    tracer_.release_process(pid, TraceSource::Release::background);
}

bool Family::reap(double)
{
    for (;;) {
        int status = 0;
        int tid = waitpid(-1, &status, __WALL | WNOHANG);
        if (tid <= 0)
            break;
        if (!WIFSTOPPED(status)) {
            on_exit(tid, status);
            continue;
        }
        const int sig = WSTOPSIG(status);
        const int event = status >> 16;
        unsigned long msg = 0;
        switch (event) {
        case PTRACE_EVENT_FORK:
        case PTRACE_EVENT_VFORK:
        case PTRACE_EVENT_CLONE: {
            ptrace(PTRACE_GETEVENTMSG, tid, nullptr, &msg);
            const int child = static_cast<int>(msg);
            const int parent = tgid_of(tid);
            if (tgid_of(child) == parent)
                threads_.insert(child); // a thread: nothing to attach
            else if (follow_children_)
                new_process(child, parent); // before it runs: it waits at its first stop
            // (Not followed: a process clone()d with another exit signal
            // than SIGCHLD, reported as a clone; let go at its first stop.)
            resume(tid);
            break;
        }
        case PTRACE_EVENT_EXEC:
            // The thread that exec'd (its tid before: a thread other than the
            // leader takes the leader's, the process's pid).
            ptrace(PTRACE_GETEVENTMSG, tid, nullptr, &msg);
            on_exec(tid, static_cast<int>(msg));
            resume(tid);
            break;
        case PTRACE_EVENT_EXIT: {
            // Stopped before it lets go of its memory: the probes, bound to
            // this thread, still fire in the others.
            const int pid = tgid_of(tid);
            auto it = members_.find(pid);
            if (it != members_.end()) {
                if (tid == pid)
                    session_of(it->second).before_exit();
                // A bound thread (the leader's pthread_exit): the probes
                // move to one that goes on, while this one still has the
                // process's memory.
                tracer_.thread_exiting(pid, tid);
            }
            resume(tid);
            break;
        }
        case PTRACE_EVENT_STOP:
            if (started_.insert(tid).second) {
                // A new task's first stop (before or after its parent's event):
                // a thread runs on; a process once its probes are in place.
                if (tgid_of(tid) != tid) {
                    threads_.insert(tid);
                } else if (!follow_children_) {
                    // TRACECLONE (for the command's threads) also brings
                    // a process clone()d without SIGCHLD: not followed, so
                    // it runs on untraced, as a fork does.
                    started_.erase(tid);
                    ptrace(PTRACE_DETACH, tid, nullptr, nullptr);
                    break;
                } else {
                    new_process(tid, status_field(tid, "PPid:"));
                }
                resume(tid);
            } else if (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU) {
                ptrace(PTRACE_LISTEN, tid, nullptr, nullptr); // a group-stop: stopped, as without us
            } else {
                resume(tid);
            }
            break;
        default:
            // A signal on its way to the tracee: pass it on, unless it is
            // the loader hold's (taken back: the program never sees it).
            resume(tid, on_hold(tid, sig) ? 0 : sig);
            break;
        }
    }
    return root_exited_;
}

void Family::drain(double t_s)
{
    root_.drain(t_s);
    for (auto& [pid, m] : members_)
        if (m.session)
            m.session->drain(t_s);
}

void Family::on_event(const DecodedEvent& ev)
{
    auto it = members_.find(static_cast<int>(ev.tgid));
    if (it != members_.end() && it->second.session)
        it->second.session->on_event(ev);
    else
        root_.on_event(ev);
}

std::vector<Report> Family::sections()
{
    std::vector<Report> out = std::move(ended_);
    ended_.clear();
    add_live_sections(out, true);
    return out;
}

std::vector<Report> Family::snapshot_sections()
{
    std::vector<Report> out = ended_;
    add_live_sections(out, false);
    return out;
}

void Family::add_live_sections(std::vector<Report>& out, bool final)
{
    for (auto& [pid, m] : members_) {
        if (!m.session)
            continue;
        Target t = target_of(pid, m);
        Report r = make_section_(*m.session, t, final);
        r.processes.push_back({t, m.parent, {}, true, 0});
        out.push_back(std::move(r));
    }
}

void Family::add_live_threads(std::vector<ThreadStats>& threads, std::uint64_t& live_bytes) const
{
    for (const auto& [pid, m] : members_) {
        if (!m.session)
            continue;
        Snapshot snap = tracer_.snapshot(pid);
        threads.insert(threads.end(), snap.threads.begin(), snap.threads.end());
        live_bytes += snap.live_bytes_sum;
    }
}

} // namespace memscope
