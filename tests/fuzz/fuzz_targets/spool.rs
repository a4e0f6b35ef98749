//! Any bytes as a spool segment and position file: what reads cleanly is
//! returned, the rest counted as dropped; the spool keeps working.
#![no_main]
use driftwatch_agent::ship::spool::{Record, Spool};
use driftwatch_schemas::Stream;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary spool");
    let (acked, segment) = data.split_at(data.len().min(12));
    std::fs::write(dir.path().join("acked"), acked).expect("write");
    std::fs::write(dir.path().join("00000000000000000001.seg"), segment).expect("write");
    let mut spool = Spool::open(dir.path(), 1 << 20, 1 << 16).expect("opens");
    let mut pos = spool.acked();
    while let Some((_, next)) = spool.read(pos) {
        assert!(next > pos, "reading moves forward");
        pos = next;
    }
    let rec = Record { stream: Stream::Audit, key: "a".into(), payload: b"x".to_vec() };
    spool.append(&rec).expect("appends");
    spool.flush().expect("flushes");
    let mut last = None;
    let mut pos = spool.acked();
    while let Some((r, next)) = spool.read(pos) {
        last = Some(r);
        pos = next;
    }
    assert_eq!(last, Some(rec), "a new record is read back after whatever was there");
});
