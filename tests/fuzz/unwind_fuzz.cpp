// libFuzzer over the unwind table builder (userspace/collect/unwind_table.cpp): any
// bytes as an ELF file in memory. Whatever the input: no crash, no hang,
// and a table that is one the BPF side can search (sorted strictly by pc,
// every kind known, every CFA offset one the walker can apply).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include <libelf.h>

#include "unwind_table.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    static const bool init = elf_version(EV_CURRENT) != EV_NONE;
    (void)init;
    std::vector<char> copy(data, data + size); // libelf may write to a memory image
    Elf* elf = elf_memory(copy.data(), copy.size());
    memscope::UnwindTable t;
    std::string why;
    const bool ok = memscope::build_unwind_table(elf, t, why);
    if (elf)
        elf_end(elf);
    if (!ok && why.empty())
        std::abort(); // a refusal always says why
    for (std::size_t i = 0; i < t.rows.size(); ++i) {
        const auto& r = t.rows[i];
        if (i > 0 && t.rows[i - 1].pc >= r.pc)
            std::abort();
        if (r.kind > MS_UNWIND_STOP)
            std::abort();
        if ((r.kind == MS_UNWIND_CFA_RSP || r.kind == MS_UNWIND_CFA_RBP) && r.cfa_off < 8)
            std::abort();
    }
    return 0;
}
