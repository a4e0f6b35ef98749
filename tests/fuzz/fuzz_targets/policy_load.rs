//! Any pack file: controls or errors with file:line, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = driftwatch_collector::policy::load_text(std::path::Path::new("fuzz.yaml"), text);
    }
});
