//! Any text a host logs, through the redactor (every rule, the hex
//! decoding of auditd values, the Kubernetes Secret bodies): redacted text,
//! never a panic, and never blown up out of proportion to its input.
#![no_main]
use driftwatch_agent::redact::Redactor;
use driftwatch_schemas::{Actor, AuditEvent, AuditSource, Outcome};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let r = Redactor::default();
    let out = r.text(text);
    assert!(out.len() <= text.len() * 100 + 1024, "{} bytes from {}", out.len(), text.len());
    for source in [AuditSource::Auditd, AuditSource::K8sAudit] {
        let mut e = AuditEvent {
            event_id: "e".into(),
            asset_id: "a".into(),
            hostname: "h".into(),
            source,
            timestamp: chrono::Utc::now(),
            actor: Actor::default(),
            action: "x".into(),
            object: Some(text.to_string()),
            outcome: Outcome::Unknown,
            source_address: None,
            raw: text.to_string(),
            extra: Default::default(),
        };
        r.event(&mut e);
    }
});
