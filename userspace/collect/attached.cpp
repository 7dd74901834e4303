#include "attached.hpp"

#include <unistd.h>

#include <bpf/libbpf.h>

namespace memscope {

int Link::fd() const
{
    return link_ ? bpf_link__fd(link_) : fd_;
}

void Link::reset()
{
    if (link_)
        bpf_link__destroy(std::exchange(link_, nullptr));
    if (fd_ >= 0)
        close(std::exchange(fd_, -1));
}

void UniqueFd::reset()
{
    if (fd_ >= 0)
        close(std::exchange(fd_, -1));
}

} // namespace memscope
