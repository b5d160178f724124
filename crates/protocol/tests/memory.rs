//! Decoding arbitrary input uses memory proportional to the input, never to a length the
//! input merely claims. A counting allocator measures the peak of live heap bytes on the
//! test's own thread; this file holds a single test so nothing else runs on that thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use pushwarden_protocol::fuzzing;

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn record(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            record(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        record(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            record(new_size as isize - layout.size() as isize);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak extra heap bytes while `f` runs.
fn peak_during(f: impl FnOnce()) -> usize {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    f();
    (PEAK.with(Cell::get) - base).max(0) as usize
}

/// Generous but linear: decoded values cost a few dozen bytes per input byte at worst,
/// plus a constant for rmpv's bounded 64 KiB pre-allocation of strings and binaries.
fn bound(input_len: usize) -> usize {
    128 * input_len + 256 * 1024
}

#[test]
fn decoders_use_memory_linear_in_input() {
    // The counter really sees allocations on this thread.
    assert!(peak_during(|| drop(std::hint::black_box(vec![1u8; 100_000]))) >= 100_000);
    let adversarial: Vec<Vec<u8>> = vec![
        // MessagePack: huge declared lengths with nothing behind them.
        vec![0x92, 0x02, 0xdd, 0xff, 0xff, 0xff, 0xff],
        vec![0x94, 0x02, 0x80, 0xa1, 0x31, 0xc6, 0xff, 0xff, 0xff, 0xff],
        vec![0x94, 0x02, 0x80, 0xa1, 0x31, 0xdb, 0xff, 0xff, 0xff, 0xff],
        vec![0xdf, 0xff, 0xff, 0xff, 0xff],
        // Length prefix claiming 2 GB.
        vec![0x01, 0xff, 0xff, 0xff, 0xff, 0x07, 0x91],
        // Many small values.
        [
            vec![0x94, 0x02, 0x80, 0xa1, 0x31, 0xdc, 0x7f, 0xff],
            vec![0x90; 0x7fff],
        ]
        .concat(),
        [
            b"{\"type\":1,\"target\":\"t\",\"arguments\":[".to_vec(),
            b"{\"a\":0},".repeat(3000),
        ]
        .concat(),
        b"[".repeat(20_000),
    ];
    for input in &adversarial {
        let peak = peak_during(|| {
            fuzzing::msgpack(input);
            fuzzing::json(input);
            fuzzing::handshake(input);
            fuzzing::reader(input);
        });
        assert!(
            peak <= bound(input.len()),
            "{} bytes used {peak}",
            input.len()
        );
    }

    let mut runner = TestRunner::new(Config {
        cases: 256,
        ..Config::default()
    });
    runner
        .run(&prop::collection::vec(any::<u8>(), 0..4096), |data| {
            let peak = peak_during(|| {
                fuzzing::msgpack(&data);
                fuzzing::json(&data);
                fuzzing::handshake(&data);
                fuzzing::reader(&data);
            });
            prop_assert!(
                peak <= bound(data.len()),
                "{} bytes used {}",
                data.len(),
                peak
            );
            Ok(())
        })
        .unwrap();
}
