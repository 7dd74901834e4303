// Starting a command with tracing in place before any of it runs.
#pragma once

#include <string>
#include <vector>

namespace memscope {

// execvp's search: the path that would run, or empty if none.
std::string resolve_command(const std::string& name);

// The files a command maps when exec'd: the program (or its #! interpreter)
// and its dynamic loader; with `predict_libraries`, also the libraries the
// loader resolves for it with this environment (`ld.so --list`, which runs
// none of its code): a guess, for a command not held at its loader (what
// its own environment preloads, or a chroot maps, is missed).
std::vector<std::string> command_objects(const std::string& exe, std::string& error, bool predict_libraries);

// Parse `ld.so --list` output into library paths.
std::vector<std::string> parse_loader_list(const std::string& text);

// A child forked and held before exec until release(); its stdio is ours.
class HeldChild {
public:
    // On failure pid() is -1 and error() says why.
    HeldChild(const std::string& exe, const std::vector<std::string>& argv);
    ~HeldChild();
    HeldChild(const HeldChild&) = delete;
    HeldChild& operator=(const HeldChild&) = delete;

    int pid() const { return pid_; }
    const std::string& error() const { return error_; }
    // Let it exec. Returns an error sentence if exec failed, else empty.
    std::string release();
    // Kill a child that was never released.
    void abandon();

private:
    int pid_ = -1;
    int go_fd_ = -1;   // write end: closing it lets the child exec
    int exec_fd_ = -1; // read end of a CLOEXEC pipe: EOF means exec succeeded
    std::string error_;
};

} // namespace memscope
