// uprobe_multi links (Linux 6.6; sessions 6.13): one BPF link puts a
// program on many sites of one file, for one process only (the kernel
// patches that process's memory alone and runs the program for its threads
// alone, whichever thread is alive), and closing it releases every site at
// once. A session program runs at a site's entry and, only when its entry
// asks for it, at the function's return. libbpf 1.1 has no API for these:
// the link is made with the bpf(2) call itself.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace memscope {

// Whether this kernel makes uprobe_multi session links (asked once a
// process, by trying); false with the reason.
bool uprobe_sessions_supported(std::string& why);

// One site of a link: where in the file, its semaphore (0: none), its cookie.
struct MultiSite {
    std::uint64_t offset = 0;
    std::uint64_t ref_ctr_offset = 0;
    std::uint64_t cookie = 0;
};

// A link of program `prog_fd` (loaded for MS_ATTACH_UPROBE_SESSION when
// `session`, else MS_ATTACH_UPROBE_MULTI) on `sites` of the file at `path`,
// firing in process `pid` only. Its fd (the caller's to close: that
// releases it, waiting out a grace period of ~20 ms), or -1 with errno set.
int uprobe_multi_link(int prog_fd, bool session, const std::string& path, const std::vector<MultiSite>& sites,
                      int pid);

} // namespace memscope
