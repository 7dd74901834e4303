// What an attached probe holds, each released in its destructor: a libbpf
// link (a program on a uprobe or perf event of its own) or a perf event on a
// shared site (uprobe_events.hpp). A tracer that fails halfway, or forgets a
// path, leaves no probe behind in the target.
#pragma once

#include <utility>

struct bpf_link;

namespace memscope {

// One BPF link: libbpf's, or the fd of one made with bpf(2) (a
// uprobe_multi link). Destroying a uprobe's link waits out a grace period
// (~0.1 s for a uprobe PMU link, under a kernel-wide lock; ~20 ms for a
// uprobe_multi link, after its sites are gone): a loop that must not wait
// hands it to a thread of its own (Tracer::release_links) rather than let
// it go here.
class Link {
public:
    Link() = default;
    explicit Link(bpf_link* link) : link_(link) {}
    static Link from_fd(int fd)
    {
        Link l;
        l.fd_ = fd;
        return l;
    }
    ~Link() { reset(); }
    Link(Link&& other) noexcept
        : link_(std::exchange(other.link_, nullptr)), fd_(std::exchange(other.fd_, -1))
    {
    }
    Link& operator=(Link&& other) noexcept
    {
        if (this != &other) {
            reset();
            link_ = std::exchange(other.link_, nullptr);
            fd_ = std::exchange(other.fd_, -1);
        }
        return *this;
    }
    Link(const Link&) = delete;
    Link& operator=(const Link&) = delete;

    explicit operator bool() const { return link_ != nullptr || fd_ >= 0; }
    // The link's own fd (-1: none), for a helper that holds the last reference.
    int fd() const;
    // Detach now (and wait for it).
    void reset();

private:
    bpf_link* link_ = nullptr;
    int fd_ = -1;
};

// An fd this object closes.
class UniqueFd {
public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    ~UniqueFd() { reset(); }
    UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    UniqueFd& operator=(UniqueFd&& other) noexcept
    {
        if (this != &other) {
            reset();
            fd_ = std::exchange(other.fd_, -1);
        }
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;

    explicit operator bool() const { return fd_ >= 0; }
    int get() const { return fd_; }
    void reset();

private:
    int fd_ = -1;
};

// A probe bound to one thread of its process: a perf event on a shared site
// (closing it costs nothing), or, where the site is not shared, a link of its
// own (see Link on its release).
struct Binding {
    Link link;
    UniqueFd event;
    explicit operator bool() const { return link || event; }
};

// An attached probe of one process: bound to its first bound thread, and to
// its second when it has one (see Tracer::watch_threads).
struct Probe {
    Binding first;
    Binding second;
    explicit operator bool() const { return bool(first); }
};

} // namespace memscope
