//! The case that breaks in-process trackers: THREADS threads x ITERS
//! iterations, each tracking a Vec of 25 integers and a heap String
//! ("thread_{id}_{i}" padded past any inline buffer). Each thread keeps its
//! first Vec alive until the process exits.
//! Usage: tracked_threads [THREADS] [ITERS]
use memscope_probe::{scope, task, track_var};
use std::sync::{Arc, Mutex};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(50);
    let iters: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let kept: Arc<Mutex<Vec<Vec<i32>>>> = Arc::new(Mutex::new(Vec::with_capacity(threads)));

    let handles: Vec<_> = (0..threads)
        .map(|id| {
            let kept = Arc::clone(&kept);
            std::thread::Builder::new()
                .name(format!("worker-{}", id))
                .spawn(move || {
                    let _task = task!("worker", id as u64 + 1);
                    for i in 0..iters {
                        let _scope = scope!("iteration");
                        let data: Vec<i32> = vec![i as i32; 25];
                        let mut text = String::with_capacity(40);
                        text.push_str("thread_");
                        text.push_str(&id.to_string());
                        text.push('_');
                        text.push_str(&i.to_string());
                        while text.len() < 40 {
                            text.push('.');
                        }
                        track_var!(data);
                        track_var!(text);
                        if i == 0 {
                            kept.lock().unwrap().push(data);
                        }
                    }
                })
                .unwrap()
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // Leave the kept vectors to the process's end: live at exit.
    std::mem::forget(kept);
    println!("done {} threads x {} iterations", threads, iters);
}
