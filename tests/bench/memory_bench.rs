//! `memory-bench`: what the evaluation engine holds per asset, printed as
//! figures (not a timed test). The repository's packs are loaded, then
//! the first full snapshots of a simulated fleet (`fleet.rs`, the load of
//! `loadgen` and `collector-bench`) are applied to a fresh engine, one
//! asset after another, and the heap the engine holds is read after
//! 2,000, 10,000 and 50,000 assets (or the counts given): bytes per asset,
//! so a flat figure shows memory growing with the fleet and nothing else.
//! A delta round follows (one change per asset, as a running fleet sends),
//! which should not grow it.
//!
//! The heap is counted by a global allocator that wraps the system's and
//! adds up what is allocated and not yet freed: bytes asked for, whatever
//! the allocator rounds them to, and the same on every run of the same
//! seed. The engine is the collector's state per asset (facts, their CEL
//! values, posture); the collector's RSS per asset (`collector-bench`'s
//! "memory per asset") adds the alerting state, batches in flight and the
//! allocator's own overhead.
//!
//!   cargo run --release -p driftwatch-tests --bin memory-bench -- [--assets 2000,10000,50000] [--seed 42]

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use driftwatch_collector::eval::Engine;
use driftwatch_schemas::{Message, SnapshotKind};

#[path = "fleet.rs"]
mod fleet;

/// The system's allocator, counting the bytes held.
struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to `System` unchanged; the counter is
// only arithmetic beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            HELD.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn held() -> f64 {
    HELD.load(Ordering::Relaxed) as f64
}

/// Bytes per asset of the two forms the engine keeps an asset's facts in,
/// for the first `n` assets of `fleet` (a copy: the fleet is not advanced):
/// the fact map (evidence, drift's before values) and the CEL variables
/// (what checks read).
fn split(fleet: &fleet::Fleet, n: usize) -> (f64, f64) {
    use driftwatch_collector::eval::facts::{CelFacts, FactMap};
    let mut fleet = fleet.clone();
    let before = held();
    let maps: Vec<FactMap> = (0..n)
        .map(|i| match fleet.snapshot(i, SnapshotKind::Full, vec![]) {
            Message::Snapshot(s) => s.facts.into_iter().map(|f| (f.path, f.value)).collect(),
            _ => FactMap::new(),
        })
        .collect();
    let after_maps = held();
    let cel: Vec<CelFacts> = maps.iter().map(CelFacts::build).collect();
    let after_cel = held();
    drop((cel, maps));
    ((after_maps - before) / n as f64, (after_cel - after_maps) / n as f64)
}

const USAGE: &str = "usage: memory-bench [--assets 2000,10000,50000] [--seed 42]";

/// The budget of the issue: at most this much per asset (the collector's
/// whole resident memory, of which the engine is the largest part).
const GOAL_KB_PER_ASSET: f64 = 100.0;

fn main() -> std::process::ExitCode {
    let (mut counts, mut seed) = (vec![2_000usize, 10_000, 50_000], 42u64);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--assets" => counts = value.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
            "--seed" => seed = value.parse().unwrap_or(seed),
            _ => {
                eprintln!("{USAGE}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    counts.sort_unstable();
    let Some(&most) = counts.last() else {
        eprintln!("memory-bench: --assets names no count\n{USAGE}");
        return std::process::ExitCode::from(2);
    };
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let set = match driftwatch_collector::policy::load_dir(&policies) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("memory-bench: the packs in {}: {e}", policies.display());
            return std::process::ExitCode::from(2);
        }
    };
    let templates = match fleet::templates() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("memory-bench: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    println!("memory-bench: {} controls, seed {seed}; heap held by the engine (bytes allocated and not freed)", set.controls.len());
    let first = counts[0];
    let (map, cel) = split(&fleet::Fleet::new(first, seed, &templates), first);
    println!(
        "  where it goes (the first {first} assets' facts alone): {:.1} KB per asset as the fact map, {:.1} KB as their CEL values",
        map / 1024.0,
        cel / 1024.0
    );
    let mut engine = Engine::new(set, chrono::Duration::minutes(10));
    let mut fleet = fleet::Fleet::new(most, seed, &templates);
    let (base, start) = (held(), Instant::now());
    let (mut facts, mut applied) = (0usize, 0usize);
    let mut rows = Vec::new();
    for i in 0..most {
        let Message::Snapshot(s) = fleet.snapshot(i, SnapshotKind::Full, vec![]) else { unreachable!("a full snapshot") };
        facts += s.facts.len();
        drop(engine.apply(&s));
        applied += 1;
        if counts.contains(&applied) {
            let per_asset = (held() - base) / applied as f64;
            rows.push((applied, per_asset, facts as f64 / applied as f64));
            println!(
                "  {applied:>6} assets: {:>7.1} MB held, {:>5.1} KB per asset ({:.0} facts each on average; goal ≤ {GOAL_KB_PER_ASSET:.0} KB for the whole collector), {:.1} s",
                (held() - base) / 1e6,
                per_asset / 1024.0,
                facts as f64 / applied as f64,
                start.elapsed().as_secs_f64()
            );
        }
    }
    // A running fleet: one delta per asset (a package upgraded, an sshd
    // setting flipped, a mode changed), which replaces what it changes.
    let before = held();
    let mut deltas = 0;
    while deltas < most {
        if let Message::Snapshot(s) = fleet.next() {
            drop(engine.apply(&s));
            deltas += 1;
        }
    }
    println!(
        "  then {deltas} deltas: {:+.1} KB per asset ({:.1} s)",
        (held() - before) / most as f64 / 1024.0,
        start.elapsed().as_secs_f64()
    );
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        println!("  flat? {:.2}× from {} to {} assets", last.1 / first.1.max(1.0), first.0, last.0);
    }
    drop(engine);
    std::process::ExitCode::SUCCESS
}
