//! Micro-measurements behind the statistics' design (#17, docs/benchmarks.md), outside
//! PostgreSQL: what one clock read costs (the latency histogram's price per timed call), and
//! what counting per row costs when it is a backend-local add (the chosen design: flush at
//! transaction end) against an atomic add on a shared counter (the alternative), with 1 and 8
//! threads, as 8 concurrent writers would do it.
//!   rustc -O bench/counting.rs -o /tmp/counting && /tmp/counting
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

const N: u64 = 20_000_000;

fn per_op(t: Instant, n: u64) -> f64 {
    t.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    // The clock: two reads per timed call (entry and exit).
    let t = Instant::now();
    let mut acc = 0u128;
    for _ in 0..N {
        acc = acc.wrapping_add(Instant::now().elapsed().as_nanos());
    }
    println!("clock: {:.1} ns per Instant::now() + elapsed() pair (checksum {})", per_op(t, N), acc % 7);

    // Local add (what the trigger does per row).
    let mut local = [0u64; 8];
    let t = Instant::now();
    for i in 0..N {
        local[(i & 7) as usize] = std::hint::black_box(local[(i & 7) as usize] + 1);
    }
    println!("local add: {:.2} ns per row ({})", per_op(t, N), local.iter().sum::<u64>());

    // Atomic add on one shared counter, uncontended and with 8 threads.
    for threads in [1usize, 8] {
        let shared: &'static [AtomicU64; 8] = Box::leak(Box::new(std::array::from_fn(|_| AtomicU64::new(0))));
        let t = Instant::now();
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                std::thread::spawn(move || {
                    for _ in 0..N / threads as u64 {
                        shared[0].fetch_add(1, Relaxed);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        println!("atomic add, {threads} thread(s) on one counter: {:.2} ns per row (wall, all threads)", per_op(t, N));
    }
}
