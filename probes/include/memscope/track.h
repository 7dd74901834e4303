/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* memscope tracker entry points: name variables, scopes and tasks for
 * memscope-trace, which watches them from outside the process.
 *
 * Header-only, no dependencies beyond the C/C++ standard headers, x86-64
 * Linux with GCC or Clang. C99 or later for the C API, C++17 for the C++
 * macros.
 *
 *   MEMSCOPE_TRACK_VAR(v)              name a variable and the heap block it
 *                                      owns (C++: vector, string, unique_ptr,
 *                                      shared_ptr, any type through
 *                                      memscope_heap_block(); C: the object only)
 *   MEMSCOPE_TRACK_PTR(p, size, "name")  a raw block
 *   MEMSCOPE_SCOPE("name")             allocations until the end of the
 *                                      enclosing block belong to this scope
 *   MEMSCOPE_TASK("name")              ...to a new logical task (thread pools)
 *   MEMSCOPE_TASK_ID("name", id)       ...to task `id` (coroutines resumed on
 *                                      several threads use one id)
 *   memscope_request_mode(MEMSCOPE_MODE_FAST)  ask the tracer for a mode
 *   memscope_traced()                  nonzero while a tracer is attached
 *
 * Cost: untraced, each entry point is one load and one untaken branch (the
 * kernel raises a semaphore while a tracer is attached). Traced, one call to
 * a 5-byte NOP that the kernel turns into a trampoline call: no trap, no
 * string is read on the hot path (the tracer reads each descriptor once from
 * the file).
 *
 * What is recorded is the block the variable owns *at the time of the call*:
 * a block moved by realloc keeps its variable, but a container that grows
 * into a new block (vector::push_back past its capacity, a string that
 * outgrows its buffer) must be tracked again.
 *
 * Calls in a library loaded with dlopen are seen once the tracer has attached
 * to it, a few milliseconds after the load; memscope_traced() turns nonzero
 * then. Nothing here takes a lock or allocates.
 *
 * The tracer finds the entry points through a non-allocated ELF note that
 * GNU strip and objcopy keep; llvm-strip drops it unless told
 * --keep-section=.note.memscope. Strings longer than 65535 bytes are not
 * recorded (the tracer keeps at most 4096 bytes of each anyway). */
#ifndef MEMSCOPE_TRACK_H
#define MEMSCOPE_TRACK_H

#include <stddef.h>
#include <stdint.h>

#include "probe_abi.h"

#if !defined(__x86_64__) || !defined(__linux__) || !(defined(__GNUC__) || defined(__clang__)) || \
    defined(MEMSCOPE_DISABLE)
/* Elsewhere the entry points compile to nothing. */
#define MEMSCOPE__ENABLED 0
#else
#define MEMSCOPE__ENABLED 1
#endif

#if MEMSCOPE__ENABLED
/* The probe site, the semaphore and the note, once per module (COMDAT:
 * every translation unit emits them, the linker keeps one copy; hidden, so
 * each executable and library has its own and calls it directly).
 * The semaphore starts a page: lld lets the first page of .data share its
 * file page with the RELRO segment, and the kernel would then raise the
 * counter through the RELRO mapping, not the one the program reads. */
__asm__(".ifndef __memscope_probe_v1\n" /* GCC -flto joins every unit's asm into one file */
        ".pushsection .text.__memscope_probe_v1,\"axG\",@progbits,__memscope_probe_v1,comdat\n"
        ".weak __memscope_probe_v1\n"
        ".hidden __memscope_probe_v1\n"
        ".type __memscope_probe_v1,@function\n"
        ".p2align 4\n"
        "__memscope_probe_v1:\n"
        ".byte 0x0f,0x1f,0x44,0x00,0x00\n" /* nopl 0(%rax,%rax,1): the probe site */
        "ret\n"
        ".size __memscope_probe_v1,.-__memscope_probe_v1\n"
        ".popsection\n"
        ".pushsection .data.__memscope_semaphore_v1,\"awG\",@progbits,__memscope_probe_v1,comdat\n"
        ".weak __memscope_semaphore_v1\n"
        ".hidden __memscope_semaphore_v1\n"
        ".type __memscope_semaphore_v1,@object\n"
        ".p2align 12\n" /* a file page of its own: see below */
        "__memscope_semaphore_v1:\n"
        ".2byte 0\n"
        ".size __memscope_semaphore_v1,2\n"
        ".weak __memscope_task_counter_v1\n"
        ".hidden __memscope_task_counter_v1\n"
        ".type __memscope_task_counter_v1,@object\n"
        ".p2align 3\n"
        "__memscope_task_counter_v1:\n"
        ".8byte 0\n"
        ".size __memscope_task_counter_v1,8\n"
        ".popsection\n"
        ".pushsection .note.memscope,\"G\",@note,__memscope_probe_v1,comdat\n"
        ".p2align 2\n"
        ".4byte 9, 24, 1\n" /* namesz, descsz, MEMSCOPE_NOTE_TYPE */
        ".asciz \"memscope\"\n"
        ".p2align 2\n"
        ".8byte __memscope_probe_v1\n"
        ".8byte __memscope_semaphore_v1\n"
        ".4byte 1, 0\n" /* MEMSCOPE_PROBE_ABI_VERSION, reserved */
        ".popsection\n"
        ".endif\n");
#endif

#ifdef __cplusplus
extern "C" {
#endif

#if MEMSCOPE__ENABLED
extern void __memscope_probe_v1(uintptr_t a, uintptr_t b, const void* desc, unsigned op,
                                const char* type, size_t type_len) __attribute__((visibility("hidden")));
extern volatile unsigned short __memscope_semaphore_v1 __attribute__((visibility("hidden")));
extern uint64_t __memscope_task_counter_v1 __attribute__((visibility("hidden")));
#define MEMSCOPE__CALL(a, b, desc, op)                                                              \
    do {                                                                                            \
        if (__builtin_expect(__memscope_semaphore_v1 != 0, 0))                                      \
            __memscope_probe_v1((uintptr_t)(a), (uintptr_t)(b), (desc), (op), 0, 0);               \
    } while (0)
#else
#define MEMSCOPE__CALL(a, b, desc, op) ((void)(a), (void)(b), (void)(desc), (void)(op))
#endif

/* The descriptor header; name, type and file follow it, NUL-terminated. */
struct memscope_desc_header {
    uint32_t magic;
    uint32_t line;
    uint16_t name_len, type_len, file_len, kind;
};

/* The C ABI. `desc` points to a static descriptor (the macros make them). */
static inline int memscope_traced(void)
{
#if MEMSCOPE__ENABLED
    return __memscope_semaphore_v1 != 0;
#else
    return 0;
#endif
}
static inline void memscope_track(const void* block, size_t size, const void* desc)
{
    MEMSCOPE__CALL(block, size, desc, MEMSCOPE_OP_TRACK);
}
static inline void memscope_scope_enter(const void* desc)
{
    MEMSCOPE__CALL(0, 0, desc, MEMSCOPE_OP_SCOPE_ENTER);
}
static inline void memscope_scope_exit(const void* desc)
{
    MEMSCOPE__CALL(0, 0, desc, MEMSCOPE_OP_SCOPE_EXIT);
}
static inline void memscope_task_enter(uint64_t id, const void* desc)
{
    MEMSCOPE__CALL(id, 0, desc, MEMSCOPE_OP_TASK_ENTER);
}
static inline void memscope_task_exit(uint64_t id)
{
    MEMSCOPE__CALL(id, 0, (const void*)0, MEMSCOPE_OP_TASK_EXIT);
}
/* Ask the tracer for a mode (MEMSCOPE_MODE_*): the out-of-process form of
 * an in-process tracker's enable_fast_mode(). An explicit --mode wins. */
static inline void memscope_request_mode(int mode)
{
    MEMSCOPE__CALL(0, mode, (const void*)0, MEMSCOPE_OP_REQUEST_MODE);
}
/* A fresh task id, unique in this module (executable or library); tasks of
 * several modules are told apart by their names and modules. */
static inline uint64_t memscope_new_task_id(void)
{
#if MEMSCOPE__ENABLED
    return __atomic_add_fetch(&__memscope_task_counter_v1, 1, __ATOMIC_RELAXED);
#else
    return 0;
#endif
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#define MEMSCOPE__CAT2(a, b) a##b
#define MEMSCOPE__CAT(a, b) MEMSCOPE__CAT2(a, b)
/* Names unique per expansion: MEMSCOPE_SCOPE and MEMSCOPE_TASK take
 * __COUNTER__ once and pass it down, so two on one line do not clash. */
#define MEMSCOPE__ID(prefix, n) MEMSCOPE__CAT(prefix, n)

#ifndef __cplusplus
/* ---- C ------------------------------------------------------------------ */

/* A static descriptor: header, then name, type and file, contiguous and
 * free of pointers (no relocation, readable from the file). */
#define MEMSCOPE__C_DESC(id, kind_, name_, type_)                                                   \
    static const struct {                                                                           \
        struct memscope_desc_header h;                                                              \
        char name[sizeof(name_)];                                                                   \
        char type[sizeof(type_)];                                                                   \
        char file[sizeof(__FILE__)];                                                                \
    } id = {{MEMSCOPE_DESC_MAGIC, __LINE__, sizeof(name_) - 1, sizeof(type_) - 1,                    \
             sizeof(__FILE__) - 1, kind_},                                                          \
            name_,                                                                                  \
            type_,                                                                                  \
            __FILE__}

/* C cannot see which block a variable owns: this records the object itself.
 * Use MEMSCOPE_TRACK_PTR for heap blocks. */
#define MEMSCOPE_TRACK_VAR(var)                                                                     \
    do {                                                                                            \
        MEMSCOPE__C_DESC(memscope__d, MEMSCOPE_DESC_VARIABLE, #var, "");                            \
        memscope_track((const void*)0, sizeof(var), &memscope__d);                                  \
    } while (0)

#define MEMSCOPE_TRACK_PTR(ptr, size, name)                                                         \
    do {                                                                                            \
        MEMSCOPE__C_DESC(memscope__d, MEMSCOPE_DESC_VARIABLE, name, "");                            \
        memscope_track((const void*)(ptr), (size), &memscope__d);                                   \
    } while (0)

static inline void memscope__scope_cleanup(const void* const* desc)
{
    memscope_scope_exit(*desc);
}
static inline void memscope__task_cleanup(const uint64_t* id)
{
    memscope_task_exit(*id);
}

/* Until the end of the enclosing block (cleanup attribute). */
#define MEMSCOPE_SCOPE(name) MEMSCOPE__SCOPE(name, __COUNTER__)
#define MEMSCOPE__SCOPE(name, n)                                                                    \
    MEMSCOPE__C_DESC(MEMSCOPE__ID(memscope__sd, n), MEMSCOPE_DESC_SCOPE, name, "");                 \
    const void* MEMSCOPE__ID(memscope__sp, n)                                                       \
        __attribute__((cleanup(memscope__scope_cleanup))) = &MEMSCOPE__ID(memscope__sd, n);         \
    memscope_scope_enter(MEMSCOPE__ID(memscope__sp, n))

#define MEMSCOPE_TASK_ID(name, id) MEMSCOPE__TASK_ID(name, id, __COUNTER__)
#define MEMSCOPE__TASK_ID(name, id, n)                                                              \
    MEMSCOPE__C_DESC(MEMSCOPE__ID(memscope__td, n), MEMSCOPE_DESC_TASK, name, "");                  \
    uint64_t MEMSCOPE__ID(memscope__tid, n) __attribute__((cleanup(memscope__task_cleanup))) = (id); \
    memscope_task_enter(MEMSCOPE__ID(memscope__tid, n), &MEMSCOPE__ID(memscope__td, n))

#define MEMSCOPE_TASK(name) MEMSCOPE_TASK_ID(name, memscope_new_task_id())

#else
/* ---- C++ ---------------------------------------------------------------- */
#include <array>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace memscope {

// The heap block a value owns; {nullptr, sizeof(T)} when it owns none.
struct block {
    const void* addr;
    std::size_t size;
};

namespace detail {

struct no_type {}; // scopes and tasks have no type

template <class T>
constexpr std::string_view raw_type_name()
{
    return __PRETTY_FUNCTION__;
}

// The type's name as the compiler spells it, from __PRETTY_FUNCTION__
// (GCC: "[with T = X; ...]", Clang: "[T = X]"): up to the first ';' or ']'
// outside brackets, so "char [64]" and "std::array<int, 3>" stay whole.
template <class T>
constexpr std::string_view type_name()
{
    if constexpr (std::is_same_v<T, no_type>)
        return {};
    std::string_view s = raw_type_name<T>();
    std::size_t b = s.find("T = ");
    if (b == std::string_view::npos)
        return {};
    b += 4;
    int depth = 0;
    std::size_t e = b;
    for (; e < s.size(); ++e) {
        char c = s[e];
        if (c == '<' || c == '(' || c == '[')
            ++depth;
        else if ((c == '>' || c == ')' || c == ']') && depth > 0)
            --depth;
        else if ((c == ';' || c == ']') && depth == 0)
            break;
    }
    return s.substr(b, e - b);
}

// The usual spellings for the usual types.
template <>
constexpr std::string_view type_name<std::string>()
{
    return "std::string";
}

template <std::size_t N>
struct desc {
    memscope_desc_header h;
    char text[N];
};

template <class T, std::size_t NameN, std::size_t FileN>
constexpr auto make_desc(unsigned kind, const char (&name)[NameN], const char (&file)[FileN],
                         unsigned line)
{
    constexpr std::string_view type = type_name<T>();
    desc<NameN + type.size() + 1 + FileN> d{};
    d.h = {MEMSCOPE_DESC_MAGIC, line, static_cast<uint16_t>(NameN - 1),
           static_cast<uint16_t>(type.size()), static_cast<uint16_t>(FileN - 1),
           static_cast<uint16_t>(kind)};
    std::size_t at = 0;
    for (std::size_t i = 0; i < NameN; ++i)
        d.text[at++] = name[i];
    for (char c : type)
        d.text[at++] = c;
    d.text[at++] = '\0';
    for (std::size_t i = 0; i < FileN; ++i)
        d.text[at++] = file[i];
    return d;
}

template <class T, class = void>
struct has_adl_heap_block : std::false_type {};
template <class T>
struct has_adl_heap_block<T, std::void_t<decltype(memscope_heap_block(std::declval<const T&>()))>>
    : std::true_type {};

} // namespace detail

// The customization point: specialise heap_block_of<T>, or define
// `memscope::block memscope_heap_block(const T&)` next to T (found by ADL).
template <class T, class = void>
struct heap_block_of {
    static block get(const T& v)
    {
        if constexpr (detail::has_adl_heap_block<T>::value)
            return memscope_heap_block(v);
        else
            return {nullptr, sizeof(T)};
    }
};

template <class T, class A>
struct heap_block_of<std::vector<T, A>> {
    static block get(const std::vector<T, A>& v)
    {
        return v.capacity() ? block{v.data(), v.capacity() * sizeof(T)} : block{nullptr, sizeof v};
    }
};

// Packed bits have no data(): the object itself.
template <class A>
struct heap_block_of<std::vector<bool, A>> {
    static block get(const std::vector<bool, A>& v) { return {nullptr, sizeof v}; }
};

template <class C, class Tr, class A>
struct heap_block_of<std::basic_string<C, Tr, A>> {
    static block get(const std::basic_string<C, Tr, A>& s)
    {
        const char* p = reinterpret_cast<const char*>(s.data());
        const char* self = reinterpret_cast<const char*>(&s);
        if (p >= self && p < self + sizeof s)
            return {nullptr, sizeof s}; // in the small-string buffer: no heap block
        return {s.data(), (s.capacity() + 1) * sizeof(C)};
    }
};

template <class T, class D>
struct heap_block_of<std::unique_ptr<T, D>> {
    static block get(const std::unique_ptr<T, D>& p)
    {
        // The tracer takes the size from the allocation. (An array of a type
        // with a destructor starts after new[]'s count: not a block start,
        // so it is recorded without a block.)
        if constexpr (std::is_array_v<T>)
            return {p.get(), 0};
        else
            return p ? block{p.get(), sizeof(T)} : block{nullptr, sizeof p};
    }
};

// A shared_ptr owns its control block (which holds the object too when made
// by make_shared; made from `new T`, the object is a block of its own, not
// this one). libstdc++ and libc++ both lay a shared_ptr out as
// {object pointer, control block pointer}.
template <class T>
struct heap_block_of<std::shared_ptr<T>> {
    static block get(const std::shared_ptr<T>& p)
    {
        const void* words[2];
        static_assert(sizeof p == sizeof words, "unexpected shared_ptr layout");
        std::memcpy(words, &p, sizeof words);
        return words[1] ? block{words[1], 0} : block{nullptr, sizeof p};
    }
};

template <class T>
inline void track(const T& value, const void* desc)
{
    block b = heap_block_of<std::remove_cv_t<T>>::get(value);
    memscope_track(b.addr, b.size, desc);
}

class scope_guard {
public:
    explicit scope_guard(const void* desc) : desc_(desc) { memscope_scope_enter(desc_); }
    ~scope_guard() { memscope_scope_exit(desc_); }
    scope_guard(const scope_guard&) = delete;
    scope_guard& operator=(const scope_guard&) = delete;

private:
    const void* desc_;
};

class task_guard {
public:
    task_guard(std::uint64_t id, const void* desc) : id_(id) { memscope_task_enter(id_, desc); }
    ~task_guard() { memscope_task_exit(id_); }
    task_guard(const task_guard&) = delete;
    task_guard& operator=(const task_guard&) = delete;
    std::uint64_t id() const { return id_; }

private:
    std::uint64_t id_;
};

} // namespace memscope

#define MEMSCOPE__CXX_DESC(id, kind, type, name)                                                    \
    static constexpr auto id = ::memscope::detail::make_desc<type>(kind, name, __FILE__, __LINE__)

#define MEMSCOPE_TRACK_VAR(var)                                                                     \
    do {                                                                                            \
        MEMSCOPE__CXX_DESC(memscope__d, MEMSCOPE_DESC_VARIABLE,                                     \
                           std::remove_cv_t<std::remove_reference_t<decltype(var)>>, #var);         \
        ::memscope::track((var), &memscope__d);                                                     \
    } while (0)

#define MEMSCOPE_TRACK_PTR(ptr, size, name)                                                         \
    do {                                                                                            \
        MEMSCOPE__CXX_DESC(memscope__d, MEMSCOPE_DESC_VARIABLE,                                     \
                           std::remove_cv_t<std::remove_reference_t<decltype(ptr)>>, name);         \
        memscope_track(static_cast<const void*>(ptr), (size), &memscope__d);                        \
    } while (0)

#define MEMSCOPE_SCOPE(name) MEMSCOPE__SCOPE(name, __COUNTER__)
#define MEMSCOPE__SCOPE(name, n)                                                                    \
    MEMSCOPE__CXX_DESC(MEMSCOPE__ID(memscope__sd, n), MEMSCOPE_DESC_SCOPE, ::memscope::detail::no_type, name); \
    ::memscope::scope_guard MEMSCOPE__ID(memscope__sg, n)(&MEMSCOPE__ID(memscope__sd, n))

#define MEMSCOPE_TASK_ID(name, id) MEMSCOPE__TASK_ID(name, id, __COUNTER__)
#define MEMSCOPE__TASK_ID(name, id, n)                                                              \
    MEMSCOPE__CXX_DESC(MEMSCOPE__ID(memscope__td, n), MEMSCOPE_DESC_TASK, ::memscope::detail::no_type, name); \
    ::memscope::task_guard MEMSCOPE__ID(memscope__tg, n)((id), &MEMSCOPE__ID(memscope__td, n))

#define MEMSCOPE_TASK(name) MEMSCOPE_TASK_ID(name, memscope_new_task_id())

#endif /* __cplusplus */

#endif /* MEMSCOPE_TRACK_H */
