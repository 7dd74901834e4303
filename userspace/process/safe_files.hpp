// Files the tracer touches as root on other people's machines.
//
// Outputs go where the user points, as a shell redirection would: `-` is
// stdout; a descriptor link of our own (/dev/stdout, /proc/self/fd/N) is
// written through that descriptor; a device, FIFO or socket (or a link to
// one) is written into; a regular file (or a link to one: the link stays)
// is replaced atomically; nothing else is replaced or created in its place.
// Like the kernel's protected_* rules for root, nothing in a shared sticky
// directory (/tmp) that another user owns is followed or written, and
// another process's descriptors are never reopened. A regular file is written
// to an unnamed O_TMPFILE first, so no temporary name is left behind on any
// exit path, kill -9 included (the mkstemp fallback, on file systems without
// O_TMPFILE, removes its name on every path it controls).
//
// Inputs read on behalf of a target (perf maps, debug files, ELF files) are
// untrusted: opened without blocking, regular files only, checked with fstat
// before a byte is read, bounded in size, and resolved inside the target's
// own root (/proc/PID/root/...: an absolute link there names a file of the
// container, never one of the host).
#pragma once

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>

namespace memscope {

// Write what `writer` produces to `path`. `wait_ms` bounds how long a FIFO
// without a reader, or a reader that does not read, is waited for (-1: as
// long as it takes, as a shell would; the tracer's ending signals still end
// it). Error sentence, empty on success.
std::string write_output(const std::string& path, const std::function<bool(std::FILE*)>& writer,
                         int wait_ms = -1);
std::string write_output(const std::string& path, const std::string& contents, int wait_ms = -1);
// Waits on outputs (a FIFO without a reader, a reader that does not read)
// end with "interrupted" once *flag is non-zero (set by a signal handler).
void set_output_cancel(const volatile sig_atomic_t* flag);
// Before tracing: whether write_output could write there (a directory, a
// missing or read-only directory fail now, not after the trace).
std::string check_output(const std::string& path);

struct UntrustedOpen {
    // The last path component may not be a symbolic link.
    bool no_follow = false;
    // The file's owner must be this uid or root (-1: any owner).
    long owner = -1;
    // Larger files are refused (0: no bound).
    std::uint64_t max_bytes = 0;
};

// Open a file named on a target's behalf: a regular file, opened
// O_RDONLY|O_NONBLOCK, inside its process's root where the path starts with
// /proc/PID/root. Returns the descriptor (O_CLOEXEC), or -1 and `why` (a
// few words: "not a regular file (a FIFO)", "larger than 64 MiB", ...) with
// errno: as open(2) left it (ENOENT: nothing there), else EINVAL (not a
// regular file), EPERM (another owner), EFBIG (too large).
// ELF and debug files larger than this are not read.
inline constexpr std::uint64_t kMaxElfBytes = 4ULL << 30;
// Nor are compressed sections (SHF_COMPRESSED, .zdebug) that claim to inflate
// past this, together (libelf and libdw allocate what they claim).
inline constexpr std::uint64_t kMaxInflatedBytes = 1ULL << 30;

int open_untrusted(const std::string& path, const UntrustedOpen& how, std::string& why);

// The whole of such a file (at most how.max_bytes), or nothing and `why`.
std::optional<std::string> read_untrusted(const std::string& path, const UntrustedOpen& how, std::string& why);

} // namespace memscope
