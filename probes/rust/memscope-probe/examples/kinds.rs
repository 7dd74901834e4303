//! Each kind of owner track_var! knows, once: Vec, String, Box, Rc, Arc.
use memscope_probe::track_var;
use std::rc::Rc;
use std::sync::Arc;

fn main() {
    let numbers: Vec<u32> = vec![1; 10];
    let text = String::from("a string of some length, on the heap");
    let boxed = Box::new([0u64; 4]);
    let counted = Rc::new(5u32);
    let shared = Arc::new([1u8; 100]);
    track_var!(numbers);
    track_var!(text);
    track_var!(boxed);
    track_var!(counted);
    track_var!(shared);
    println!("{} {} {} {} {}", numbers.len(), text.len(), boxed[0], counted, shared[0]);
}
