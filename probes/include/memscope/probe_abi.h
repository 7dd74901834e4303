/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The contract between a target that links memscope's tracker entry points
 * and the tracer: constants only, no includes, so that the C/C++ header, the
 * BPF programs and the loader share one definition (the Rust crate mirrors
 * it, and a test checks that it does).
 *
 * A module (executable or shared library) that uses the entry points holds,
 * once, in a COMDAT group:
 *   - the probe site: a 16-byte aligned function whose first instruction is
 *     a 5-byte NOP (never crosses a page, so Linux >= 6.18 turns the uprobe
 *     into a trampoline call instead of a trap), then `ret`. Its arguments
 *     follow the SysV calling convention:
 *       rdi = a (address or id), rsi = b (size or mode),
 *       rdx = descriptor address (or 0), ecx = op,
 *       r8, r9 = a type name's address and length, for languages that only
 *       know it at run time (Rust's type_name: a string in the module's
 *       read-only data); r8 = 0 keeps the descriptor's;
 *   - a 2-byte semaphore in writable file-backed data, which the kernel
 *     raises while a tracer is attached (the uprobe reference counter),
 *     page-aligned so that no other mapping of the file covers its page;
 *   - one ELF note, owner "memscope", type MEMSCOPE_NOTE_TYPE, whose desc is
 *       u64 site address, u64 semaphore address (link-time addresses),
 *       u32 ABI version, u32 reserved.
 *   The note is not allocated: it survives `strip`, and is read from the
 *   file, never from the process.
 *
 * A descriptor (static, read-only, relocation-free, read once by the tracer
 * from the module's file) is:
 *   u32 magic, u32 line, u16 name_len, u16 type_len, u16 file_len, u16 kind,
 *   then name, type and file, each NUL-terminated. */
#ifndef MEMSCOPE_PROBE_ABI_H
#define MEMSCOPE_PROBE_ABI_H

#define MEMSCOPE_PROBE_ABI_VERSION 1
#define MEMSCOPE_NOTE_OWNER "memscope"
#define MEMSCOPE_NOTE_TYPE 1
#define MEMSCOPE_NOTE_SECTION ".note.memscope"
#define MEMSCOPE_DESC_MAGIC 0x3144534du /* "MSD1" little-endian */
#define MEMSCOPE_DESC_HEADER_SIZE 16
#define MEMSCOPE_DESC_MAX_STRING 4096 /* longer strings are cut by the tracer */

/* ops (ecx) */
#define MEMSCOPE_OP_TRACK 1        /* a = block (0: none), b = size, desc = variable */
#define MEMSCOPE_OP_SCOPE_ENTER 2  /* desc = scope */
#define MEMSCOPE_OP_SCOPE_EXIT 3   /* desc = scope */
#define MEMSCOPE_OP_TASK_ENTER 4   /* a = task id, desc = task */
#define MEMSCOPE_OP_TASK_EXIT 5    /* a = task id */
#define MEMSCOPE_OP_REQUEST_MODE 6 /* b = mode */

/* descriptor kinds */
#define MEMSCOPE_DESC_VARIABLE 1
#define MEMSCOPE_DESC_SCOPE 2
#define MEMSCOPE_DESC_TASK 3

/* modes a target may request (memscope_request_mode) */
#define MEMSCOPE_MODE_NORMAL 0
#define MEMSCOPE_MODE_FAST 1
#define MEMSCOPE_MODE_ASYNC 2
#define MEMSCOPE_MODE_OFF 3

#endif /* MEMSCOPE_PROBE_ABI_H */
