//! Any Kubernetes API audit line: an event or a parse error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for line in String::from_utf8_lossy(data).lines() {
        if driftwatch_agent::audit::k8s::is_final(line) {
            let _ = driftwatch_agent::audit::k8s::parse(line);
        }
    }
});
