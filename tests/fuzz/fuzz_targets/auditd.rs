//! Any auditd log: records grouped into events, never a panic.
#![no_main]
use driftwatch_agent::audit::auditd::{to_event, users_from_passwd, Assembler};
use driftwatch_agent::audit::tail::Line;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let users = users_from_passwd("root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n");
    let mut a = Assembler::default();
    for (i, l) in text.lines().enumerate() {
        let line = Line { text: l.to_string(), inode: 1, offset: i as u64, truncated: false };
        for g in a.push(&line) {
            let _ = to_event(&g, &users);
        }
    }
    if let Some(g) = a.flush() {
        let _ = to_event(&g, &users);
    }
});
