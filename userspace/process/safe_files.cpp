#include "safe_files.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <random>
#include <utility>

namespace memscope {

namespace {

using Clock = std::chrono::steady_clock;

const volatile sig_atomic_t* g_cancel = nullptr;
bool cancelled() { return g_cancel && *g_cancel != 0; }

struct Fd {
    int fd = -1;
    explicit Fd(int f = -1) : fd(f) {}
    ~Fd()
    {
        if (fd >= 0)
            close(fd);
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int release() { return std::exchange(fd, -1); }
};

std::string errno_text(int e) { return std::strerror(e); }

const char* kind_of(mode_t m)
{
    if (S_ISDIR(m))
        return "a directory";
    if (S_ISFIFO(m))
        return "a FIFO";
    if (S_ISCHR(m))
        return "a character device";
    if (S_ISBLK(m))
        return "a block device";
    if (S_ISSOCK(m))
        return "a socket";
    if (S_ISLNK(m))
        return "a symbolic link";
    return "not a regular file";
}

std::string dir_of(const std::string& path)
{
    auto slash = path.rfind('/');
    if (slash == std::string::npos)
        return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

// Milliseconds left before `deadline`, -1 for none; 0 once passed.
int left_ms(const std::optional<Clock::time_point>& deadline)
{
    if (!deadline)
        return -1;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - Clock::now()).count();
    return left > 0 ? static_cast<int>(std::min<long long>(left, INT_MAX)) : 0;
}

// SIGPIPE held off while writing into a pipe or socket whose reader may be
// gone (EPIPE is answered instead); one raised meanwhile is taken back.
class NoSigpipe {
public:
    NoSigpipe()
    {
        sigemptyset(&pipe_);
        sigaddset(&pipe_, SIGPIPE);
        sigset_t pending;
        sigpending(&pending);
        was_pending_ = sigismember(&pending, SIGPIPE) == 1;
        pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
    }
    ~NoSigpipe()
    {
        if (!was_pending_) {
            timespec zero{};
            while (sigtimedwait(&pipe_, nullptr, &zero) > 0) {
            }
        }
        pthread_sigmask(SIG_SETMASK, &old_, nullptr);
    }

private:
    sigset_t pipe_, old_;
    bool was_pending_ = false;
};

// Every byte into `fd` (a FIFO, socket, terminal, device, or a descriptor
// of ours that may block), waiting for it to take them until `deadline` or
// a cancel. A blocking descriptor is only written once poll says it has
// room, a pipe's atomic size at a time, so no write outlasts the wait.
std::string push_bytes(int fd, const std::string& bytes, const std::optional<Clock::time_point>& deadline,
                       const std::string& shown)
{
    NoSigpipe quiet;
    std::size_t done = 0;
    while (done < bytes.size()) {
        int wait = left_ms(deadline);
        if (wait == 0)
            return "cannot write " + shown + ": nothing read it in time";
        if (cancelled())
            return "cannot write " + shown + ": interrupted";
        pollfd p{fd, POLLOUT, 0};
        int ready = poll(&p, 1, wait < 0 || wait > 100 ? 100 : wait);
        if (ready == 0 || (ready < 0 && errno == EINTR))
            continue;
        ssize_t n = write(fd, bytes.data() + done, std::min<std::size_t>(bytes.size() - done, PIPE_BUF));
        if (n > 0) {
            done += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        return "cannot write " + shown + ": " + errno_text(n < 0 ? errno : EIO);
    }
    return {};
}

// Everything `writer` produces, in memory: what goes into a FIFO or device
// is written there only once whole.
bool render(const std::function<bool(std::FILE*)>& writer, std::string& out)
{
    char* buf = nullptr;
    std::size_t size = 0;
    std::FILE* mem = open_memstream(&buf, &size);
    if (!mem)
        return false;
    bool ok = writer(mem);
    ok = std::fclose(mem) == 0 && ok;
    if (buf)
        out.assign(buf, size);
    std::free(buf);
    return ok;
}

// Write into an existing special file (or one a /proc/PID/fd link names).
std::string write_into(const std::string& path, const struct stat* expect,
                       const std::function<bool(std::FILE*)>& writer, int wait_ms)
{
    std::string bytes;
    if (!render(writer, bytes))
        return "cannot write " + path + ": the report could not be rendered";
    std::optional<Clock::time_point> deadline;
    if (wait_ms >= 0)
        deadline = Clock::now() + std::chrono::milliseconds(wait_ms);
    if (expect && S_ISSOCK(expect->st_mode)) {
        sockaddr_un addr{};
        if (path.size() >= sizeof addr.sun_path)
            return "cannot write " + path + ": socket path too long";
        addr.sun_family = AF_UNIX;
        std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
        for (int type : {SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM}) {
            Fd s(socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
            if (s.fd < 0)
                return "cannot write " + path + ": " + errno_text(errno);
            if (connect(s.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 || errno == EINPROGRESS)
                return push_bytes(s.fd, bytes, deadline, path);
            if (errno != EPROTOTYPE)
                return "cannot write " + path + ": " + errno_text(errno);
        }
        return "cannot write " + path + ": the socket takes no connection";
    }
    // A FIFO without a reader refuses a non-blocking writer (ENXIO): wait
    // for one, as a shell would, but never past the deadline or a cancel.
    Fd fd;
    for (;;) {
        fd.fd = open(path.c_str(), O_WRONLY | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW | O_CLOEXEC);
        if (fd.fd >= 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno != ENXIO || !S_ISFIFO(expect->st_mode) || left_ms(deadline) == 0 || cancelled())
            return "cannot write " + path + ": " +
                   (errno == ENXIO && S_ISFIFO(expect->st_mode) ? std::string(cancelled() ? "interrupted" : "no reader")
                                                                : errno_text(errno));
        usleep(20'000);
    }
    struct stat st{};
    if (fstat(fd.fd, &st) != 0)
        return "cannot write " + path + ": " + errno_text(errno);
    if (st.st_dev != expect->st_dev || st.st_ino != expect->st_ino)
        return "cannot write " + path + ": it was replaced while opening";
    if (S_ISDIR(st.st_mode))
        return "cannot write " + path + ": it is a directory";
    return push_bytes(fd.fd, bytes, deadline, path);
}

// /proc/PID/fd (also task/TID/fd, self, thread-self): 1 when it is this
// process's own, -1 another process's (never reopened: its descriptors are
// not ours to write through), 0 no descriptor directory at all.
int fd_directory(const std::string& dir)
{
    char real[PATH_MAX];
    if (!realpath(dir.c_str(), real))
        return 0;
    const std::string d = real;
    if (d.rfind("/proc/", 0) != 0 || d.size() < 4 || d.compare(d.size() - 3, 3, "/fd") != 0)
        return 0;
    const std::string self = "/proc/" + std::to_string(getpid());
    if (d == self + "/fd" || d == self + "/task/" + std::to_string(gettid()) + "/fd")
        return 1;
    return -1;
}

// The user who asked: root's own uid, or the one sudo ran us for.
bool invoker(uid_t uid)
{
    if (uid == geteuid())
        return true;
    const char* sudo = std::getenv("SUDO_UID");
    return sudo && *sudo && std::strtoul(sudo, nullptr, 10) == uid;
}

// A file in a shared sticky directory (/tmp) that another user put there:
// the kernel's protected_symlinks, protected_fifos and protected_regular
// refuse root such files; so do we, for links, FIFOs, sockets, devices and
// regular files alike.
bool someone_elses_in_shared_dir(const std::string& path, const struct stat& st)
{
    struct stat dir{};
    if (stat(dir_of(path).c_str(), &dir) != 0)
        return true;
    if (!(dir.st_mode & S_ISVTX) || !(dir.st_mode & S_IWOTH))
        return false;
    return !invoker(st.st_uid) && st.st_uid != dir.st_uid;
}

// A new name for an unnamed file, linked in from its descriptor.
bool link_fd(int fd, const std::string& to)
{
    std::string from = "/proc/self/fd/" + std::to_string(fd);
    if (linkat(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), AT_SYMLINK_FOLLOW) == 0)
        return true;
    if (errno == ENOENT || errno == EXDEV) // /proc not mounted: CAP_DAC_READ_SEARCH's way
        return linkat(fd, "", AT_FDCWD, to.c_str(), AT_EMPTY_PATH) == 0;
    return false;
}

std::string random_suffix()
{
    static std::mt19937_64 rng(std::random_device{}() ^ static_cast<std::uint64_t>(getpid()));
    static const char* digits = "0123456789abcdefghijklmnopqrstuvwxyz";
    std::string s;
    for (int i = 0; i < 10; ++i)
        s += digits[rng() % 36];
    return s;
}

// `path` (no link) is a regular file (`old`) or nothing: write a whole new
// file beside it and put it in its place in one step. A file that appears
// there meanwhile is not replaced.
std::string replace_regular(const std::string& path, const struct stat* old,
                            const std::function<bool(std::FILE*)>& writer)
{
    const std::string dir = dir_of(path);
    std::string named_tmp; // only where O_TMPFILE is not to be had
    Fd fd(open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644));
    if (fd.fd < 0) {
        if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
            return "cannot create " + path + ": " + errno_text(errno);
        named_tmp = path + ".tmp.XXXXXX";
        fd.fd = mkstemp(named_tmp.data());
        if (fd.fd < 0)
            return "cannot create " + path + ": " + errno_text(errno);
    }
    auto fail = [&](const std::string& what, int e) {
        if (!named_tmp.empty())
            unlink(named_tmp.c_str());
        return "cannot write " + path + ": " + (what.empty() ? errno_text(e ? e : EIO) : what);
    };
    int own = dup(fd.fd);
    std::FILE* f = own >= 0 ? fdopen(own, "w") : nullptr;
    if (!f) {
        int e = errno;
        if (own >= 0)
            close(own);
        return fail({}, e);
    }
    bool ok = writer(f) && std::fflush(f) == 0;
    int saved = ok ? 0 : errno;
    ok = std::fclose(f) == 0 && ok;
    if (!ok)
        return fail({}, saved ? saved : errno);
    if (fsync(fd.fd) != 0)
        return fail({}, errno);
    // What a shell's redirection keeps: the replaced file's mode and owner
    // (a file of another user is only replaced outside shared directories).
    if (old) {
        fchmod(fd.fd, old->st_mode & 07777);
        if (fchown(fd.fd, old->st_uid, old->st_gid) != 0)
            fchmod(fd.fd, old->st_mode & 0777);
    } else {
        fchmod(fd.fd, 0644);
    }
    if (!old) {
        // Nothing there: the name is taken only if it is still free.
        bool linked = named_tmp.empty() ? link_fd(fd.fd, path) : link(named_tmp.c_str(), path.c_str()) == 0;
        int e = errno;
        if (!named_tmp.empty())
            unlink(named_tmp.c_str());
        if (!linked)
            return "cannot write " + path + ": " +
                   (e == EEXIST ? std::string("something was created there meanwhile; left as it is") : errno_text(e));
        return {};
    }
    std::string tmp = named_tmp;
    if (tmp.empty()) {
        for (int tries = 0; tries < 8 && tmp.empty(); ++tries) {
            std::string candidate = path + ".tmp." + random_suffix();
            if (link_fd(fd.fd, candidate))
                tmp = candidate;
            else if (errno != EEXIST)
                return "cannot write " + path + ": " + errno_text(errno);
        }
        if (tmp.empty())
            return "cannot write " + path + ": no temporary name free beside it";
    }
    // Still the regular file we meant to replace? (Else leave it.)
    struct stat now{};
    if (lstat(path.c_str(), &now) != 0 || !S_ISREG(now.st_mode) || now.st_ino != old->st_ino ||
        now.st_dev != old->st_dev) {
        unlink(tmp.c_str());
        return "cannot write " + path + ": it was replaced while writing; left as it is";
    }
    if (rename(tmp.c_str(), path.c_str()) != 0) {
        int e = errno;
        unlink(tmp.c_str());
        return "cannot write " + path + ": " + errno_text(e);
    }
    return {};
}

// Where an output path leads, links followed one by one as the kernel would.
struct Destination {
    enum Kind { to_descriptor, create, replace, into, error } kind = error;
    std::string path; // the last link's target, or `error`'s sentence
    struct stat st{};
    int fd = STDOUT_FILENO; // to_descriptor: one of ours
};

Destination resolve_output(const std::string& path)
{
    Destination d;
    auto refuse = [&](const std::string& why) {
        d.kind = Destination::error;
        d.path = "cannot write " + path + ": " + why;
        return d;
    };
    if (path.empty())
        return refuse("an empty output path");
    if (path == "-") {
        d.kind = Destination::to_descriptor;
        return d;
    }
    std::string cur = path;
    for (int hops = 0;; ++hops) {
        if (lstat(cur.c_str(), &d.st) != 0) {
            if (errno != ENOENT)
                return refuse(errno_text(errno));
            d.kind = Destination::create;
            d.path = cur;
            return d;
        }
        if (S_ISDIR(d.st.st_mode))
            return refuse("it is a directory");
        if (someone_elses_in_shared_dir(cur, d.st))
            return refuse(cur + " is another user's, in a shared directory; not " +
                          (S_ISLNK(d.st.st_mode) ? "followed" : "written"));
        if (!S_ISLNK(d.st.st_mode)) {
            d.kind = S_ISREG(d.st.st_mode) ? Destination::replace : Destination::into;
            d.path = cur;
            return d;
        }
        if (hops >= 40)
            return refuse("too many levels of symbolic links");
        if (int own = fd_directory(dir_of(cur)); own != 0) {
            // A descriptor's link (/dev/stdout): ours are written through
            // as they are, at their offset; another process's never.
            const std::string n = cur.substr(cur.rfind('/') + 1);
            if (own < 0 || n.empty() || n.find_first_not_of("0123456789") != std::string::npos || n.size() > 9)
                return refuse("another process's descriptor");
            d.kind = Destination::to_descriptor;
            d.fd = std::atoi(n.c_str());
            return d;
        }
        char buf[PATH_MAX];
        ssize_t n = readlink(cur.c_str(), buf, sizeof buf - 1);
        if (n < 0)
            return refuse(errno_text(errno));
        std::string target(buf, static_cast<std::size_t>(n));
        cur = target[0] == '/' ? target : dir_of(cur) + "/" + target;
    }
}

} // namespace

void set_output_cancel(const volatile sig_atomic_t* flag)
{
    g_cancel = flag;
}

std::string check_output(const std::string& path)
{
    Destination d = resolve_output(path);
    if (d.kind == Destination::error)
        return d.path;
    if ((d.kind == Destination::create || d.kind == Destination::replace) && access(dir_of(d.path).c_str(), W_OK) != 0)
        return "cannot write " + path + ": " + errno_text(errno);
    if (d.kind == Destination::to_descriptor && fcntl(d.fd, F_GETFD) < 0)
        return "cannot write " + path + ": descriptor " + std::to_string(d.fd) + " is not open";
    return {};
}

std::string write_output(const std::string& path, const std::function<bool(std::FILE*)>& writer, int wait_ms)
{
    Destination d = resolve_output(path);
    switch (d.kind) {
    case Destination::error:
        return d.path;
    case Destination::create:
        return replace_regular(d.path, nullptr, writer);
    case Destination::replace:
        return replace_regular(d.path, &d.st, writer);
    case Destination::into:
        return write_into(d.path, &d.st, writer, wait_ms);
    case Destination::to_descriptor:
        break;
    }
    if (d.fd == STDOUT_FILENO)
        std::fflush(stdout);
    std::string bytes;
    if (!render(writer, bytes))
        return "cannot write " + path + ": the report could not be rendered";
    std::optional<Clock::time_point> deadline;
    if (wait_ms >= 0)
        deadline = Clock::now() + std::chrono::milliseconds(wait_ms);
    return push_bytes(d.fd, bytes, deadline, path == "-" ? std::string("stdout") : path);
}

std::string write_output(const std::string& path, const std::string& contents, int wait_ms)
{
    return write_output(
        path, [&](std::FILE* f) { return std::fwrite(contents.data(), 1, contents.size(), f) == contents.size(); },
        wait_ms);
}

int open_untrusted(const std::string& path, const UntrustedOpen& how, std::string& why)
{
    // O_PATH first: no driver's open() runs (a device node is only looked
    // at), and nothing is read before fstat has said what it is.
    const int path_flags = O_PATH | O_CLOEXEC | (how.no_follow ? O_NOFOLLOW : 0);
    Fd at;
    // /proc/PID/root/REST: REST resolved inside that root, links included.
    static const std::string proc = "/proc/";
    std::size_t root_end = std::string::npos;
    if (path.rfind(proc, 0) == 0) {
        std::size_t slash = path.find('/', proc.size());
        if (slash != std::string::npos && path.compare(slash, 6, "/root/") == 0 &&
            path.find_first_not_of("0123456789", proc.size()) == slash && slash > proc.size())
            root_end = slash + 5;
    }
    if (root_end != std::string::npos) {
        Fd root(open(path.substr(0, root_end).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (root.fd < 0) {
            why = errno_text(errno);
            return -1;
        }
        open_how h{};
        h.flags = static_cast<std::uint64_t>(path_flags);
        h.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
        const std::string rest = path.substr(root_end + 1);
        for (int tries = 0; tries < 8; ++tries) { // EAGAIN: a rename raced the walk
            at.fd = static_cast<int>(syscall(SYS_openat2, root.fd, rest.c_str(), &h, sizeof h));
            if (at.fd >= 0 || errno != EAGAIN)
                break;
        }
        if (at.fd < 0 && errno == ENOSYS) {
            why = "this kernel has no openat2 to resolve it inside its process's root";
            return -1;
        }
    } else {
        at.fd = open(path.c_str(), path_flags);
    }
    if (at.fd < 0) {
        why = errno_text(errno);
        return -1; // errno as open left it: ENOENT for a file that is not there
    }
    struct stat st{};
    if (fstat(at.fd, &st) != 0) {
        why = errno_text(errno);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        why = S_ISLNK(st.st_mode) ? std::string("a symbolic link")
                                  : std::string("not a regular file (") + kind_of(st.st_mode) + ")";
        errno = EINVAL;
        return -1;
    }
    if (how.owner >= 0 && st.st_uid != 0 && st.st_uid != static_cast<uid_t>(how.owner)) {
        why = "owned by uid " + std::to_string(st.st_uid) + ", neither the process's user nor root";
        errno = EPERM;
        return -1;
    }
    if (how.max_bytes && static_cast<std::uint64_t>(st.st_size) > how.max_bytes) {
        why = "larger than " + std::to_string(how.max_bytes >> 20) + " MiB";
        errno = EFBIG;
        return -1;
    }
    // The regular file just checked, opened for reading through its O_PATH
    // descriptor (no second walk of the path).
    const std::string self = "/proc/self/fd/" + std::to_string(at.fd);
    Fd fd(open(self.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    struct stat again{};
    if (fd.fd < 0 || fstat(fd.fd, &again) != 0 || again.st_dev != st.st_dev || again.st_ino != st.st_ino) {
        why = fd.fd < 0 ? errno_text(errno) : "it changed while opening";
        return -1;
    }
    return fd.release();
}

std::optional<std::string> read_untrusted(const std::string& path, const UntrustedOpen& how, std::string& why)
{
    Fd fd(open_untrusted(path, how, why));
    if (fd.fd < 0)
        return std::nullopt;
    std::string out;
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd.fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            why = errno_text(errno);
            return std::nullopt;
        }
        if (n == 0)
            break;
        out.append(buf, static_cast<std::size_t>(n));
        if (how.max_bytes && out.size() > how.max_bytes) { // it grew after fstat
            why = "larger than " + std::to_string(how.max_bytes >> 20) + " MiB";
            return std::nullopt;
        }
    }
    return out;
}

} // namespace memscope
