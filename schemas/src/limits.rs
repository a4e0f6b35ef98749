//! Bounds on what one record may hold, checked by the collector as it
//! decodes: a host (or anyone who can write to the topics) is untrusted,
//! and nothing it sends may exhaust the collector's stack, memory or
//! store. A record over a limit is not applied; it is dead-lettered with
//! the limit it broke, and counted by limit.
//!
//! Also here: record times bounded by their receipt ([`bound_times`]), so
//! an agent's clock cannot choose the partitions, the retention or the
//! liveness of what is stored.

use std::fmt::Arguments;

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use crate::{AuditEvent, ConfigSnapshot, FactPath, FactValue, Message, SlaMeasurement};

/// The limits, each configurable (`limits.*` in the collector's
/// configuration); the defaults hold every record a real agent sends with
/// a wide margin.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// A record's value, in bytes, as received (after the broker's
    /// decompression).
    pub max_record_bytes: usize,
    /// Facts in one snapshot.
    pub max_facts: usize,
    /// Paths a delta removes.
    pub max_removed_paths: usize,
    /// Bytes of one fact path.
    pub max_path_bytes: usize,
    /// Segments of one fact path (`a.b["c"]` has 3).
    pub max_path_depth: usize,
    /// Bytes of one value: a fact's string, or a list's items together; an
    /// audit event's raw text.
    pub max_value_bytes: usize,
    /// Items in one list (a fact's, an actor's groups).
    pub max_list_items: usize,
    /// Labels of an asset; entries of an audit event's `extra`.
    pub max_labels: usize,
    /// Bytes of any other string (ids, names, a label's key or value, an
    /// audit action, a probe's target or error).
    pub max_string_bytes: usize,
}

/// The most `max_path_depth` may be set to: the collector builds, patches
/// and drops a fact's nested values one level per path segment, so this
/// bounds their stack (`eval/facts.rs` tests it on a small stack).
pub const MAX_PATH_DEPTH_CEILING: usize = 256;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_record_bytes: 4 << 20,
            max_facts: 50_000,
            max_removed_paths: 50_000,
            max_path_bytes: 1024,
            max_path_depth: 32,
            max_value_bytes: 1 << 20,
            max_list_items: 100_000,
            max_labels: 256,
            max_string_bytes: 4096,
        }
    }
}

/// A limit a record broke: the dead letter's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limit {limit}: {what} is {found}, more than limits.{limit} ({max})")]
pub struct LimitError {
    /// The setting's name (`max_path_depth`): also the metric's label.
    pub limit: &'static str,
    /// What broke it (`facts[3].path`).
    pub what: String,
    pub found: usize,
    pub max: usize,
}

impl Limits {
    /// Problems with the limits themselves (a zero makes every record fail).
    pub fn problems(&self) -> Vec<String> {
        let all = [
            ("max_record_bytes", self.max_record_bytes),
            ("max_facts", self.max_facts),
            ("max_removed_paths", self.max_removed_paths),
            ("max_path_bytes", self.max_path_bytes),
            ("max_path_depth", self.max_path_depth),
            ("max_value_bytes", self.max_value_bytes),
            ("max_list_items", self.max_list_items),
            ("max_labels", self.max_labels),
            ("max_string_bytes", self.max_string_bytes),
        ];
        let mut problems: Vec<String> =
            all.iter().filter(|(_, v)| *v == 0).map(|(k, _)| format!("limits.{k}: must be at least 1")).collect();
        if self.max_path_depth > MAX_PATH_DEPTH_CEILING {
            problems.push(format!(
                "limits.max_path_depth: at most {MAX_PATH_DEPTH_CEILING} (every walk over a fact's path, building, patching and dropping its values, is as deep as the path)"
            ));
        }
        problems
    }

    /// Whether a record of `bytes` may be decoded at all.
    pub fn check_size(&self, bytes: usize) -> Result<(), LimitError> {
        over("max_record_bytes", format_args!("the record"), bytes, self.max_record_bytes)
    }

    /// Whether a decoded message stays within every limit.
    pub fn check(&self, m: &Message) -> Result<(), LimitError> {
        match m {
            Message::Snapshot(x) => self.check_snapshot(x),
            Message::Audit(a) => self.check_audit(a),
            Message::Sla(x) => self.check_sla(x),
        }
    }

    /// Whether a snapshot stays within every limit (also for one read from
    /// a file: `driftwatch-collector evaluate`).
    pub fn check_snapshot(&self, x: &ConfigSnapshot) -> Result<(), LimitError> {
        for (what, v) in [
            ("asset.id", &x.asset.id),
            ("asset.hostname", &x.asset.hostname),
            ("agent_id", &x.agent_id),
            ("agent_version", &x.agent_version),
            ("snapshot_id", &x.snapshot_id),
        ] {
            self.string(format_args!("{what}"), v)?;
        }
        over("max_labels", format_args!("asset.labels"), x.asset.labels.len(), self.max_labels)?;
        for (k, v) in &x.asset.labels {
            self.string(format_args!("asset.labels key"), k)?;
            self.string(format_args!("asset.labels[{k}]"), v)?;
        }
        over("max_facts", format_args!("facts"), x.facts.len(), self.max_facts)?;
        over("max_removed_paths", format_args!("removed_paths"), x.removed_paths.len(), self.max_removed_paths)?;
        for (i, f) in x.facts.iter().enumerate() {
            self.path(format_args!("facts[{i}].path"), &f.path)?;
            match &f.value {
                FactValue::Str(v) => over("max_value_bytes", format_args!("facts[{i}].value"), v.len(), self.max_value_bytes)?,
                FactValue::List(items) => self.list(format_args!("facts[{i}].value"), items)?,
                _ => {}
            }
        }
        for (i, p) in x.removed_paths.iter().enumerate() {
            self.path(format_args!("removed_paths[{i}]"), p)?;
        }
        Ok(())
    }

    fn check_audit(&self, a: &AuditEvent) -> Result<(), LimitError> {
        for (what, v) in [("event_id", &a.event_id), ("asset_id", &a.asset_id), ("hostname", &a.hostname), ("action", &a.action)] {
            self.string(format_args!("{what}"), v)?;
        }
        for (what, v) in [("actor.user", &a.actor.user), ("actor.auid", &a.actor.auid), ("source_address", &a.source_address)] {
            if let Some(v) = v {
                self.string(format_args!("{what}"), v)?;
            }
        }
        self.list(format_args!("actor.groups"), &a.actor.groups)?;
        if let Some(o) = &a.object {
            over("max_value_bytes", format_args!("object"), o.len(), self.max_value_bytes)?;
        }
        over("max_value_bytes", format_args!("raw"), a.raw.len(), self.max_value_bytes)?;
        over("max_labels", format_args!("extra"), a.extra.len(), self.max_labels)?;
        for (k, v) in &a.extra {
            self.string(format_args!("extra key"), k)?;
            over("max_value_bytes", format_args!("extra[{k}]"), v.len(), self.max_value_bytes)?;
        }
        Ok(())
    }

    fn check_sla(&self, x: &SlaMeasurement) -> Result<(), LimitError> {
        for (what, v) in [("asset_id", &x.asset_id), ("probe_id", &x.probe_id), ("target", &x.target)] {
            self.string(format_args!("{what}"), v)?;
        }
        if let Some(e) = &x.error {
            self.string(format_args!("error"), e)?;
        }
        Ok(())
    }

    fn string(&self, what: Arguments<'_>, v: &str) -> Result<(), LimitError> {
        over("max_string_bytes", what, v.len(), self.max_string_bytes)
    }

    /// A list's items, and their bytes together.
    fn list(&self, what: Arguments<'_>, items: &[String]) -> Result<(), LimitError> {
        over("max_list_items", what, items.len(), self.max_list_items)?;
        over("max_value_bytes", what, items.iter().map(String::len).sum(), self.max_value_bytes)
    }

    /// A fact path's bytes, then its depth (bytes first: the depth is
    /// counted by walking the path).
    fn path(&self, what: Arguments<'_>, path: &str) -> Result<(), LimitError> {
        over("max_path_bytes", what, path.len(), self.max_path_bytes)?;
        // Every segment after the first starts with '.' or '[': fewer of
        // those than the limit is within it without a walk.
        let bound = path.bytes().filter(|b| matches!(b, b'.' | b'[')).count() + 1;
        if bound > self.max_path_depth {
            if let Ok(depth) = FactPath::depth(path) {
                over("max_path_depth", what, depth, self.max_path_depth)?;
            }
        }
        Ok(())
    }
}

/// `what` is formatted only when a limit is broken: a snapshot's hundreds
/// of facts are checked on every record, and naming each one (`facts[i]`)
/// up front cost an allocation per fact.
fn over(limit: &'static str, what: Arguments<'_>, found: usize, max: usize) -> Result<(), LimitError> {
    if found > max {
        Err(LimitError { limit, what: what.to_string(), found, max })
    } else {
        Ok(())
    }
}

/// How far before its receipt a record's own time is believed: an agent
/// that was offline sends what it spooled, up to about a week late.
pub const MAX_AGE: Duration = Duration::days(7);
/// How far after its receipt: clocks drift, not by more than this.
pub const MAX_AHEAD: Duration = Duration::minutes(10);

/// The time a record claimed, when it was outside [`MAX_AGE`] before and
/// [`MAX_AHEAD`] after `received` and so was replaced by `received`.
///
/// A record's time decides its table partitions, its retention and an
/// asset's liveness. Taken from the agent as it is, one record could make
/// an insert span a hundred monthly partitions (which ClickHouse refuses),
/// have its own rows dropped by retention, or keep a dead host "alive"
/// until 2106. Bounded, every record is stored at most a week before its
/// receipt; the claimed time is kept with it (an audit event's
/// `extra.agent_timestamp`), flagged (`extra.clock_skew`), logged and
/// counted by the caller.
pub fn bound_times(m: &mut Message, received: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let t = match m {
        Message::Snapshot(x) => &mut x.collected_at,
        Message::Audit(a) => &mut a.timestamp,
        Message::Sla(x) => &mut x.timestamp,
    };
    if *t >= received - MAX_AGE && *t <= received + MAX_AHEAD {
        return None;
    }
    let claimed = std::mem::replace(t, received);
    if let Message::Audit(a) = m {
        a.extra.insert("agent_timestamp".into(), claimed.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        a.extra.insert("clock_skew".into(), "true".into());
    }
    if let Message::Sla(x) = m {
        // A heartbeat's own "last sent" is on the agent's clock too.
        if let Some(h) = &mut x.agent_health {
            h.last_sent = h.last_sent.map(|t| t.min(received));
        }
    }
    Some(claimed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;
    use chrono::TimeZone;

    fn snapshot(facts: Vec<Fact>) -> Message {
        Message::Snapshot(ConfigSnapshot {
            asset: Asset { id: "a".into(), kind: AssetKind::Host, hostname: "h".into(), labels: Default::default() },
            agent_id: "x".into(),
            agent_version: "0".into(),
            snapshot_id: "s".into(),
            sequence: 1,
            collected_at: Utc::now(),
            kind: SnapshotKind::Full,
            facts,
            removed_paths: vec![],
        })
    }

    #[test]
    fn a_deep_path_is_refused_by_depth_and_a_long_one_by_bytes() {
        let limits = Limits::default();
        let deep = format!("a{}", ".b".repeat(40));
        let e = limits.check(&snapshot(vec![Fact { path: deep, value: FactValue::Null }])).unwrap_err();
        assert_eq!((e.limit, e.found, e.max), ("max_path_depth", 41, 32));
        assert_eq!(e.to_string(), "limit max_path_depth: facts[0].path is 41, more than limits.max_path_depth (32)");
        let too_deep = Limits { max_path_depth: MAX_PATH_DEPTH_CEILING + 1, ..Limits::default() };
        assert!(too_deep.problems()[0].starts_with("limits.max_path_depth: at most 256"), "{:?}", too_deep.problems());
        let long = format!("a{}", ".b".repeat(50_000));
        assert_eq!(limits.check(&snapshot(vec![Fact { path: long, value: FactValue::Null }])).unwrap_err().limit, "max_path_bytes");
        // Dots inside a quoted key are not segments.
        let quoted = format!("files[\"{}\"].mode", "/a.b".repeat(40));
        limits.check(&snapshot(vec![Fact { path: quoted, value: FactValue::Int(1) }])).unwrap();
    }

    #[test]
    fn every_count_and_size_is_bounded() {
        let limits = Limits { max_facts: 2, max_list_items: 3, max_value_bytes: 10, ..Limits::default() };
        let f = |v: FactValue| Fact { path: "a.b".into(), value: v };
        assert_eq!(limits.check(&snapshot(vec![f(FactValue::Null); 3])).unwrap_err().limit, "max_facts");
        assert_eq!(limits.check(&snapshot(vec![f(FactValue::List(vec!["x".into(); 4]))])).unwrap_err().limit, "max_list_items");
        assert_eq!(limits.check(&snapshot(vec![f(FactValue::Str("x".repeat(11)))])).unwrap_err().limit, "max_value_bytes");
        assert_eq!(limits.check(&snapshot(vec![f(FactValue::List(vec!["xxxx".into(); 3]))])).unwrap_err().limit, "max_value_bytes");
        limits.check(&snapshot(vec![f(FactValue::Str("x".repeat(10))), f(FactValue::Null)])).unwrap();
        let mut labelled = snapshot(vec![]);
        if let Message::Snapshot(s) = &mut labelled {
            s.asset.labels = (0..300).map(|i| (i.to_string(), String::new())).collect();
        }
        assert_eq!(Limits::default().check(&labelled).unwrap_err().limit, "max_labels");
        assert_eq!(Limits::default().check_size(5 << 20).unwrap_err().limit, "max_record_bytes");
        assert!(Limits { max_facts: 0, ..Limits::default() }.problems()[0].contains("limits.max_facts"));
    }

    #[test]
    fn times_far_from_receipt_are_replaced_by_it_and_kept_as_data() {
        let received = Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap();
        let mut m = snapshot(vec![]);
        let Message::Snapshot(s) = &mut m else { unreachable!() };
        s.collected_at = received - Duration::days(6);
        assert_eq!(bound_times(&mut m, received), None, "a week-old spool is believed");
        let mut audit = Message::Audit(AuditEvent {
            event_id: "e".into(),
            asset_id: "a".into(),
            hostname: "h".into(),
            source: AuditSource::Auditd,
            timestamp: Utc.with_ymd_and_hms(2106, 1, 1, 0, 0, 0).unwrap(),
            actor: Actor { user: None, uid: None, auid: None, groups: vec![] },
            action: "x".into(),
            object: None,
            outcome: Outcome::Success,
            source_address: None,
            raw: String::new(),
            extra: Default::default(),
        });
        let claimed = bound_times(&mut audit, received).unwrap();
        assert_eq!(claimed.to_rfc3339(), "2106-01-01T00:00:00+00:00");
        let Message::Audit(a) = &audit else { unreachable!() };
        assert_eq!(a.timestamp, received);
        assert_eq!(a.extra["agent_timestamp"], "2106-01-01T00:00:00.000Z");
        assert_eq!(a.extra["clock_skew"], "true");
        // Too old is bounded as well.
        let Message::Snapshot(s) = &mut m else { unreachable!() };
        s.collected_at = Utc.timestamp_opt(0, 0).unwrap();
        assert!(bound_times(&mut m, received).is_some());
        assert_eq!(m_time(&m), received);
    }

    fn m_time(m: &Message) -> DateTime<Utc> {
        match m {
            Message::Snapshot(s) => s.collected_at,
            Message::Audit(a) => a.timestamp,
            Message::Sla(x) => x.timestamp,
        }
    }
}
