//! Any auth log line: an event (perhaps with a parse error), never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = chrono::Utc::now();
    for line in String::from_utf8_lossy(data).lines() {
        let _ = driftwatch_agent::audit::authlog::parse(line, now);
    }
});
