//! Tracker entry points for memscope-trace, which watches them from outside
//! the process with uprobes: nothing here locks, allocates or keeps state.
//!
//! ```ignore
//! use memscope_probe::track_var;
//! let data = vec![1u8; 100];
//! track_var!(data);            // name `data` and the block it owns
//! let _s = memscope_probe::scope!("parse");   // allocations until `_s` drops
//! ```
//!
//! Untraced, an entry point is one load and one untaken branch: the kernel
//! raises a semaphore while a tracer is attached. Traced, one call to a
//! 5-byte NOP that the kernel turns into a trampoline call.
//!
//! What is recorded is the block a value owns at the time of the call: a
//! block moved by realloc keeps its variable, but a Vec or String that grows
//! into a new block must be tracked again.
//!
//! The ABI is `probes/include/memscope/probe_abi.h` (the C/C++ header's):
//! one probe site per module, in a COMDAT group with its semaphore and note.
#![no_std]

extern crate alloc;
use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

/// Mirrors of probe_abi.h (checked against it by the project's tests).
pub const PROBE_ABI_VERSION: u32 = 1;
pub const DESC_MAGIC: u32 = 0x3144_534d;
pub const OP_TRACK: u32 = 1;
pub const OP_SCOPE_ENTER: u32 = 2;
pub const OP_SCOPE_EXIT: u32 = 3;
pub const OP_TASK_ENTER: u32 = 4;
pub const OP_TASK_EXIT: u32 = 5;
pub const OP_REQUEST_MODE: u32 = 6;
pub const DESC_VARIABLE: u16 = 1;
pub const DESC_SCOPE: u16 = 2;
pub const DESC_TASK: u16 = 3;
pub const MODE_NORMAL: i32 = 0;
pub const MODE_FAST: i32 = 1;
pub const MODE_ASYNC: i32 = 2;
pub const MODE_OFF: i32 = 3;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
core::arch::global_asm!(
    ".pushsection .text.__memscope_probe_v1,\"axG\",@progbits,__memscope_probe_v1,comdat",
    ".weak __memscope_probe_v1",
    ".hidden __memscope_probe_v1",
    ".type __memscope_probe_v1,@function",
    ".p2align 4",
    "__memscope_probe_v1:",
    ".byte 0x0f,0x1f,0x44,0x00,0x00",
    "ret",
    ".size __memscope_probe_v1,.-__memscope_probe_v1",
    ".popsection",
    ".pushsection .data.__memscope_semaphore_v1,\"awG\",@progbits,__memscope_probe_v1,comdat",
    ".weak __memscope_semaphore_v1",
    ".hidden __memscope_semaphore_v1",
    ".type __memscope_semaphore_v1,@object",
    ".p2align 12", // a file page of its own (see track.h)
    "__memscope_semaphore_v1:",
    ".2byte 0",
    ".size __memscope_semaphore_v1,2",
    ".weak __memscope_task_counter_v1",
    ".hidden __memscope_task_counter_v1",
    ".type __memscope_task_counter_v1,@object",
    ".p2align 3",
    "__memscope_task_counter_v1:",
    ".8byte 0",
    ".size __memscope_task_counter_v1,8",
    ".popsection",
    ".pushsection .note.memscope,\"G\",@note,__memscope_probe_v1,comdat",
    ".p2align 2",
    ".4byte 9, 24, 1",
    ".asciz \"memscope\"",
    ".p2align 2",
    ".8byte __memscope_probe_v1",
    ".8byte __memscope_semaphore_v1",
    ".4byte 1, 0",
    ".popsection",
    options(att_syntax)
);

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod site {
    use core::sync::atomic::{AtomicU64, Ordering};

    extern "C" {
        fn __memscope_probe_v1(a: usize, b: usize, desc: *const u8, op: u32, ty: *const u8, ty_len: usize);
        static __memscope_semaphore_v1: u16;
        static __memscope_task_counter_v1: AtomicU64;
    }

    #[inline(always)]
    pub fn traced() -> bool {
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!(__memscope_semaphore_v1)) != 0 }
    }

    #[inline(always)]
    pub fn call(a: usize, b: usize, desc: *const u8, op: u32, ty: &'static str) {
        if traced() {
            // r8 = 0 keeps the descriptor's type (an empty str's pointer is not null).
            let ty_ptr = if ty.is_empty() { core::ptr::null() } else { ty.as_ptr() };
            unsafe { __memscope_probe_v1(a, b, desc, op, ty_ptr, ty.len()) }
        }
    }

    pub fn new_task_id() -> u64 {
        unsafe { __memscope_task_counter_v1.fetch_add(1, Ordering::Relaxed) + 1 }
    }
}

/// Elsewhere the entry points do nothing.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod site {
    use core::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);

    pub fn traced() -> bool {
        false
    }
    pub fn call(_a: usize, _b: usize, _desc: *const u8, _op: u32, _ty: &'static str) {}
    pub fn new_task_id() -> u64 {
        NEXT.fetch_add(1, Ordering::Relaxed)
    }
}

/// Nonzero while a tracer is attached to this module.
#[inline(always)]
pub fn traced() -> bool {
    site::traced()
}

#[inline(always)]
fn call(a: usize, b: usize, desc: *const u8, op: u32, ty: &'static str) {
    site::call(a, b, desc, op, ty)
}

/// A static descriptor: header, then name, type and file, NUL-terminated,
/// free of pointers (the tracer reads it from the file).
#[repr(C)]
pub struct Desc<const N: usize> {
    magic: u32,
    line: u32,
    name_len: u16,
    type_len: u16,
    file_len: u16,
    kind: u16,
    text: [u8; N],
}

/// The text size a descriptor needs (no type: Rust passes it at run time).
pub const fn desc_len(name: &str, file: &str) -> usize {
    name.len() + 1 + 1 + file.len() + 1
}

pub const fn make_desc<const N: usize>(kind: u16, name: &str, file: &str, line: u32) -> Desc<N> {
    let mut text = [0u8; N];
    let n = name.as_bytes();
    let f = file.as_bytes();
    let mut i = 0;
    while i < n.len() {
        text[i] = n[i];
        i += 1;
    }
    // name NUL at n.len(), empty type NUL at n.len() + 1
    let mut j = 0;
    while j < f.len() {
        text[n.len() + 2 + j] = f[j];
        j += 1;
    }
    Desc {
        magic: DESC_MAGIC,
        line,
        name_len: n.len() as u16,
        type_len: 0,
        file_len: f.len() as u16,
        kind,
        text,
    }
}

/// The heap block a value owns: (address, size), or (0, size_of_val) when none.
pub trait Trackable {
    fn heap_block(&self) -> (usize, usize);
}

impl<T> Trackable for Vec<T> {
    fn heap_block(&self) -> (usize, usize) {
        let bytes = self.capacity() * core::mem::size_of::<T>();
        if bytes == 0 {
            (0, core::mem::size_of::<Self>())
        } else {
            (self.as_ptr() as usize, bytes)
        }
    }
}

impl Trackable for String {
    fn heap_block(&self) -> (usize, usize) {
        if self.capacity() == 0 {
            (0, core::mem::size_of::<Self>())
        } else {
            (self.as_ptr() as usize, self.capacity())
        }
    }
}

impl<T> Trackable for Box<T> {
    fn heap_block(&self) -> (usize, usize) {
        let size = core::mem::size_of::<T>();
        if size == 0 {
            (0, core::mem::size_of::<Self>())
        } else {
            (&**self as *const T as usize, size)
        }
    }
}

/// Rc and Arc own one block: the counts, then the value (repr(C) in std).
fn counted_block<T>(value: *const T) -> (usize, usize) {
    let align = core::mem::align_of::<T>().max(core::mem::align_of::<usize>());
    let header = (2 * core::mem::size_of::<usize>() + align - 1) / align * align;
    let size = (header + core::mem::size_of::<T>() + align - 1) / align * align;
    (value as usize - header, size)
}

impl<T> Trackable for Rc<T> {
    fn heap_block(&self) -> (usize, usize) {
        counted_block(Rc::as_ptr(self))
    }
}

impl<T> Trackable for Arc<T> {
    fn heap_block(&self) -> (usize, usize) {
        counted_block(Arc::as_ptr(self))
    }
}

impl<T: Trackable + ?Sized> Trackable for &T {
    fn heap_block(&self) -> (usize, usize) {
        (**self).heap_block()
    }
}

#[doc(hidden)]
#[inline(always)]
pub fn __track<T: Trackable>(value: &T, desc: *const u8) {
    if traced() {
        let (addr, size) = value.heap_block();
        call(addr, size, desc, OP_TRACK, core::any::type_name::<T>());
    }
}

/// Name a raw block.
#[inline(always)]
pub fn track_ptr(addr: *const u8, size: usize, desc: *const u8) {
    call(addr as usize, size, desc, OP_TRACK, "");
}

/// Ask the tracer for a mode (MODE_*); an explicit --mode wins.
#[inline(always)]
pub fn request_mode(mode: i32) {
    call(0, mode as usize, core::ptr::null(), OP_REQUEST_MODE, "");
}

/// A fresh task id, unique in this module (executable or library): tasks of
/// several modules are told apart by their names and modules.
pub fn new_task_id() -> u64 {
    site::new_task_id()
}

/// Allocations on this thread belong to the scope until the guard drops.
pub struct ScopeGuard {
    desc: *const u8,
}

impl ScopeGuard {
    #[inline(always)]
    pub fn enter(desc: *const u8) -> Self {
        call(0, 0, desc, OP_SCOPE_ENTER, "");
        ScopeGuard { desc }
    }
}

impl Drop for ScopeGuard {
    #[inline(always)]
    fn drop(&mut self) {
        call(0, 0, self.desc, OP_SCOPE_EXIT, "");
    }
}

/// Allocations on this thread belong to the task until the guard drops.
pub struct TaskGuard {
    id: u64,
}

impl TaskGuard {
    #[inline(always)]
    pub fn enter(id: u64, desc: *const u8) -> Self {
        call(id as usize, 0, desc, OP_TASK_ENTER, "");
        TaskGuard { id }
    }
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for TaskGuard {
    #[inline(always)]
    fn drop(&mut self) {
        call(self.id as usize, 0, core::ptr::null(), OP_TASK_EXIT, "");
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __desc {
    ($kind:expr, $name:expr) => {{
        const NAME: &str = $name;
        const N: usize = $crate::desc_len(NAME, file!());
        static DESC: $crate::Desc<N> = $crate::make_desc::<N>($kind, NAME, file!(), line!());
        &DESC as *const $crate::Desc<N> as *const u8
    }};
}

/// Name a variable and the heap block it owns (Vec, String, Box, Rc, Arc,
/// or any `Trackable`).
#[macro_export]
macro_rules! track_var {
    ($var:expr) => {
        $crate::__track(&$var, $crate::__desc!($crate::DESC_VARIABLE, stringify!($var)))
    };
}

/// Name a raw block: `track_ptr!(ptr, size, "name")`.
#[macro_export]
macro_rules! track_ptr {
    ($ptr:expr, $size:expr, $name:expr) => {
        $crate::track_ptr($ptr as *const u8, $size, $crate::__desc!($crate::DESC_VARIABLE, $name))
    };
}

/// `let _s = scope!("name");`: allocations until `_s` drops belong to the scope.
#[macro_export]
macro_rules! scope {
    ($name:expr) => {
        $crate::ScopeGuard::enter($crate::__desc!($crate::DESC_SCOPE, $name))
    };
}

/// `let _t = task!("name");` (a new task id) or `task!("name", id)`.
#[macro_export]
macro_rules! task {
    ($name:expr) => {
        $crate::TaskGuard::enter($crate::new_task_id(), $crate::__desc!($crate::DESC_TASK, $name))
    };
    ($name:expr, $id:expr) => {
        $crate::TaskGuard::enter($id, $crate::__desc!($crate::DESC_TASK, $name))
    };
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    // The C header's constants, read from the header itself.
    fn abi_constant(name: &str) -> u64 {
        let header = include_str!("../../../include/memscope/probe_abi.h");
        for line in header.lines() {
            let mut words = line.split_whitespace();
            if words.next() == Some("#define") && words.next() == Some(name) {
                let value = words.next().unwrap().trim_end_matches('u');
                return if let Some(hex) = value.strip_prefix("0x") {
                    u64::from_str_radix(hex, 16).unwrap()
                } else {
                    value.parse().unwrap()
                };
            }
        }
        panic!("{} not in probe_abi.h", name);
    }

    #[test]
    fn constants_match_the_c_header() {
        assert_eq!(abi_constant("MEMSCOPE_PROBE_ABI_VERSION"), PROBE_ABI_VERSION as u64);
        assert_eq!(abi_constant("MEMSCOPE_DESC_MAGIC"), DESC_MAGIC as u64);
        assert_eq!(abi_constant("MEMSCOPE_DESC_HEADER_SIZE"), 16);
        assert_eq!(abi_constant("MEMSCOPE_OP_TRACK"), OP_TRACK as u64);
        assert_eq!(abi_constant("MEMSCOPE_OP_SCOPE_ENTER"), OP_SCOPE_ENTER as u64);
        assert_eq!(abi_constant("MEMSCOPE_OP_SCOPE_EXIT"), OP_SCOPE_EXIT as u64);
        assert_eq!(abi_constant("MEMSCOPE_OP_TASK_ENTER"), OP_TASK_ENTER as u64);
        assert_eq!(abi_constant("MEMSCOPE_OP_TASK_EXIT"), OP_TASK_EXIT as u64);
        assert_eq!(abi_constant("MEMSCOPE_OP_REQUEST_MODE"), OP_REQUEST_MODE as u64);
        assert_eq!(abi_constant("MEMSCOPE_DESC_VARIABLE"), DESC_VARIABLE as u64);
        assert_eq!(abi_constant("MEMSCOPE_DESC_SCOPE"), DESC_SCOPE as u64);
        assert_eq!(abi_constant("MEMSCOPE_DESC_TASK"), DESC_TASK as u64);
        assert_eq!(abi_constant("MEMSCOPE_MODE_NORMAL"), MODE_NORMAL as u64);
        assert_eq!(abi_constant("MEMSCOPE_MODE_FAST"), MODE_FAST as u64);
        assert_eq!(abi_constant("MEMSCOPE_MODE_ASYNC"), MODE_ASYNC as u64);
        assert_eq!(abi_constant("MEMSCOPE_MODE_OFF"), MODE_OFF as u64);
    }

    #[test]
    fn descriptor_layout() {
        const N: usize = desc_len("var", "f.rs");
        static D: Desc<N> = make_desc::<N>(DESC_VARIABLE, "var", "f.rs", 7);
        assert_eq!(core::mem::size_of::<Desc<N>>() >= 16 + N, true);
        let bytes = unsafe { core::slice::from_raw_parts(&D as *const Desc<N> as *const u8, 16 + N) };
        assert_eq!(&bytes[0..4], &DESC_MAGIC.to_le_bytes());
        assert_eq!(&bytes[4..8], &7u32.to_le_bytes());
        assert_eq!(&bytes[8..10], &3u16.to_le_bytes()); // name
        assert_eq!(&bytes[10..12], &0u16.to_le_bytes()); // type: given at run time
        assert_eq!(&bytes[12..14], &4u16.to_le_bytes()); // file
        assert_eq!(&bytes[14..16], &DESC_VARIABLE.to_le_bytes());
        assert_eq!(&bytes[16..], b"var\0\0f.rs\0");
    }

    #[test]
    fn heap_blocks() {
        let v: Vec<u32> = Vec::with_capacity(10);
        assert_eq!(v.heap_block(), (v.as_ptr() as usize, 40));
        let e: Vec<u32> = Vec::new();
        assert_eq!(e.heap_block().0, 0);
        let s = "abc".to_string();
        assert_eq!(s.heap_block(), (s.as_ptr() as usize, s.capacity()));
        let b = Box::new(5u64);
        assert_eq!(b.heap_block(), (&*b as *const u64 as usize, 8));
        // Rc and Arc: the counts come first, the block starts before the value.
        let r = Rc::new(1u8);
        let (addr, size) = r.heap_block();
        assert_eq!(addr + 16, Rc::as_ptr(&r) as usize);
        assert_eq!(size, 24);
        let a = Arc::new([0u64; 4]);
        assert_eq!(a.heap_block(), (Arc::as_ptr(&a) as usize - 16, 48));
        assert!(!traced());
    }
}
