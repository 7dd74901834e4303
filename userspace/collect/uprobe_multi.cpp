#include "uprobe_multi.hpp"

#include "memscope.h"

#include <bpf/bpf.h>
#include <linux/bpf.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include <sys/syscall.h>
#include <unistd.h>

namespace memscope {

namespace {

// bpf_attr's link_create as Linux 6.6 and later lay it out for
// uprobe_multi; the rest of the union is zero.
struct LinkCreateUprobeMulti {
    std::uint32_t prog_fd;
    std::uint32_t target_fd;
    std::uint32_t attach_type;
    std::uint32_t flags;
    std::uint64_t path;
    std::uint64_t offsets;
    std::uint64_t ref_ctr_offsets;
    std::uint64_t cookies;
    std::uint32_t cnt;
    std::uint32_t multi_flags;
    std::uint32_t pid;
    std::uint32_t pad;
};
static_assert(sizeof(LinkCreateUprobeMulti) == 64);

int link_create(int prog_fd, std::uint32_t attach_type, const char* path, const std::uint64_t* offsets,
                const std::uint64_t* ref_ctr_offsets, const std::uint64_t* cookies, std::uint32_t count, int pid)
{
    union {
        LinkCreateUprobeMulti link;
        char whole[128]; // zero beyond what is set
    } attr;
    std::memset(&attr, 0, sizeof attr);
    attr.link.prog_fd = static_cast<std::uint32_t>(prog_fd);
    attr.link.attach_type = attach_type;
    attr.link.path = reinterpret_cast<std::uintptr_t>(path);
    attr.link.offsets = reinterpret_cast<std::uintptr_t>(offsets);
    attr.link.ref_ctr_offsets = reinterpret_cast<std::uintptr_t>(ref_ctr_offsets);
    attr.link.cookies = reinterpret_cast<std::uintptr_t>(cookies);
    attr.link.cnt = count;
    attr.link.pid = static_cast<std::uint32_t>(pid);
    return static_cast<int>(syscall(__NR_bpf, BPF_LINK_CREATE, &attr, sizeof attr.link));
}

} // namespace

bool uprobe_sessions_supported(std::string& why)
{
    static std::once_flag once;
    static bool supported = false;
    static std::string reason;
    std::call_once(once, [] {
        // The way libbpf asks: a session program on a site of "/" (no
        // file to probe) fails with EBADF where such links exist.
        const bpf_insn insns[] = {
            {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0},
            {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
        };
        LIBBPF_OPTS(bpf_prog_load_opts, opts);
        opts.expected_attach_type = static_cast<bpf_attach_type>(MS_ATTACH_UPROBE_SESSION);
        int prog = bpf_prog_load(BPF_PROG_TYPE_KPROBE, "ms_session", "GPL", insns, 2, &opts);
        if (prog < 0) {
            reason = std::string("a session program does not load: ") + std::strerror(errno);
            return;
        }
        const std::uint64_t offset = 0;
        int fd = link_create(prog, MS_ATTACH_UPROBE_SESSION, "/", &offset, nullptr, nullptr, 1, 0);
        const int err = errno;
        if (fd >= 0)
            close(fd);
        close(prog);
        supported = fd < 0 && err == EBADF;
        if (!supported)
            reason = std::string("a session link is refused: ") + std::strerror(fd < 0 ? err : EINVAL);
    });
    why = reason;
    return supported;
}

int uprobe_multi_link(int prog_fd, bool session, const std::string& path, const std::vector<MultiSite>& sites,
                      int pid)
{
    if (sites.empty()) {
        errno = EINVAL;
        return -1;
    }
    std::vector<std::uint64_t> offsets, ref_ctr_offsets, cookies;
    bool semaphores = false;
    for (const MultiSite& s : sites) {
        offsets.push_back(s.offset);
        ref_ctr_offsets.push_back(s.ref_ctr_offset);
        cookies.push_back(s.cookie);
        semaphores |= s.ref_ctr_offset != 0;
    }
    return link_create(prog_fd, session ? MS_ATTACH_UPROBE_SESSION : MS_ATTACH_UPROBE_MULTI, path.c_str(),
                       offsets.data(), semaphores ? ref_ctr_offsets.data() : nullptr, cookies.data(),
                       static_cast<std::uint32_t>(sites.size()), pid);
}

} // namespace memscope
