//! Drift: a control whose status changed on an asset, explained — the
//! values of the facts it read before and after, which of them changed,
//! and, when the asset's audit stream shows one nearby, the audit event
//! that most likely caused it.
//!
//! Attribution is deliberately conservative: an event is a candidate only
//! when it names something the control's facts come from (the file a fact
//! describes, or the configuration files and tools of its family), within
//! `window` before the change (or a few seconds after it: the streams are
//! separate topics and may arrive in either order). The closest such event
//! wins. No candidate, no cause — never a guess.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use driftwatch_schemas::{AuditEvent, FactPath, FactValue};
use serde::Serialize;

use super::{facts, Evaluation, Status};

/// How long after a change an event may be stamped and still have caused it
/// (clock skew between the agent's file watcher and its log tailer).
const AFTER_SLACK_SECS: i64 = 10;
/// Recent audit events kept per asset for attribution.
const RECENT_PER_ASSET: usize = 1024;

/// One change of a control's status on an asset.
#[derive(Debug, Clone, Serialize)]
pub struct DriftEvent {
    /// Stable under redelivery: derived from the asset, control, snapshot
    /// and new status.
    pub drift_id: String,
    pub from: Status,
    pub evaluation: Evaluation,
    /// The facts the control read, before the change.
    pub before: BTreeMap<String, FactValue>,
    /// Paths whose value differs between `before` and `evaluation.evidence`.
    pub changed: Vec<String>,
    pub cause: Option<Cause>,
    /// The asset's labels (for routing the drift's alert).
    #[serde(skip)]
    pub asset_labels: BTreeMap<String, String>,
}

impl DriftEvent {
    pub fn new(from: Status, evaluation: Evaluation, before: BTreeMap<String, FactValue>) -> Self {
        let keys: BTreeSet<&String> = before.keys().chain(evaluation.evidence.keys()).collect();
        let changed = keys.into_iter().filter(|k| before.get(*k) != evaluation.evidence.get(*k)).cloned().collect();
        let drift_id = uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            format!(
                "drift\0{}\0{}\0{}\0{}",
                evaluation.asset_id,
                evaluation.control_id,
                evaluation.snapshot_id,
                evaluation.status.as_str()
            )
            .as_bytes(),
        )
        .to_string();
        DriftEvent { drift_id, from, evaluation, before, changed, cause: None, asset_labels: BTreeMap::new() }
    }

    /// The control that drifted.
    pub fn control(&self) -> &str {
        &self.evaluation.control_id
    }

    /// `regressed` (pass → fail, waived or not), `remediated` (fail →
    /// pass), or `changed`.
    pub fn direction(&self) -> &'static str {
        match (self.from, self.evaluation.checked.unwrap_or(self.evaluation.status)) {
            (Status::Pass, Status::Fail) => "regressed",
            (Status::Fail, Status::Pass) => "remediated",
            _ => "changed",
        }
    }
}

/// The audit event held responsible for a drift.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cause {
    pub event_id: String,
    pub source: String,
    pub action: String,
    pub user: Option<String>,
    pub object: Option<String>,
    pub at: DateTime<Utc>,
    /// What tied the event to the control, e.g. `/etc/ssh/sshd_config`.
    pub matched: String,
}

/// What attribution keeps of an audit event.
#[derive(Debug, Clone)]
struct Recent {
    id: String,
    source: String,
    action: String,
    user: Option<String>,
    object: Option<String>,
    at: DateTime<Utc>,
    /// Object, paths, command and raw text, for matching.
    text: String,
}

/// Recent audit events per asset.
#[derive(Default)]
pub struct Attributor {
    window: Duration,
    recent: HashMap<String, VecDeque<Recent>>,
}

impl Attributor {
    pub fn new(window: Duration) -> Self {
        Attributor { window, recent: HashMap::new() }
    }

    /// Remembers an audit event of its asset (bounded per asset).
    pub fn record(&mut self, e: &AuditEvent) {
        let q = self.recent.entry(e.asset_id.clone()).or_default();
        let mut text = String::new();
        for part in [e.object.as_deref(), e.extra.get("paths").map(String::as_str), e.extra.get("cmd").map(String::as_str), Some(&e.raw)]
            .into_iter()
            .flatten()
        {
            text.push_str(part);
            text.push('\n');
        }
        let r = Recent {
            id: e.event_id.clone(),
            source: e.source.as_str().to_string(),
            action: e.action.clone(),
            user: e.actor.user.clone().or_else(|| e.actor.auid.clone()),
            object: e.object.clone(),
            at: e.timestamp,
            text,
        };
        let pos = q.partition_point(|x| x.at <= r.at);
        q.insert(pos, r);
        let newest = q.back().map(|x| x.at).unwrap_or(e.timestamp);
        while q.len() > RECENT_PER_ASSET || q.front().is_some_and(|x| newest - x.at > self.window + Duration::seconds(AFTER_SLACK_SECS)) {
            q.pop_front();
        }
    }

    /// Finds the likely cause of `drift` among its asset's recent events.
    pub fn attribute(&self, drift: &mut DriftEvent) {
        if drift.cause.is_some() {
            return;
        }
        let Some(q) = self.recent.get(&drift.evaluation.asset_id) else { return };
        let at = drift.evaluation.evaluated_at;
        let hints = hints(&drift.changed);
        if hints.is_empty() {
            return;
        }
        let best = q
            .iter()
            .filter(|r| r.at <= at + Duration::seconds(AFTER_SLACK_SECS) && at - r.at <= self.window)
            .filter_map(|r| hints.iter().find(|h| r.text.contains(h.as_str())).map(|h| (r, h)))
            .min_by_key(|(r, _)| (r.at - at).num_milliseconds().abs());
        if let Some((r, h)) = best {
            drift.cause = Some(Cause {
                event_id: r.id.clone(),
                source: r.source.clone(),
                action: r.action.clone(),
                user: r.user.clone(),
                object: r.object.clone(),
                at: r.at,
                matched: h.clone(),
            });
        }
    }
}

/// Where the facts at `paths` come from: files a fact names, and the
/// configuration files and tools of each family.
fn hints(paths: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for p in paths {
        let Ok(fp) = FactPath::parse(p) else { continue };
        let segs = fp.segments();
        // files["/etc/shadow"].mode, tls.cert["/etc/ssl/x.pem"].…: the file itself.
        if let Some(file) = segs.iter().find(|s| s.starts_with('/')) {
            out.push(file.clone());
        }
        let family: &[&str] = match segs[0].as_str() {
            "sshd" => &["/etc/ssh/sshd_config"],
            "sudo" => &["/etc/sudoers"],
            "accounts" => &[
                "/etc/passwd",
                "/etc/shadow",
                "/etc/group",
                "/etc/login.defs",
                "/etc/security/",
                "/etc/pam.d/",
                "useradd",
                "usermod",
                "passwd",
                "chage",
            ],
            "kernel" => &["/etc/sysctl", "sysctl ", "/etc/modprobe.d/", "modprobe", "insmod", "rmmod"],
            "packages" => &["apt-get ", "apt ", "dpkg ", "dnf ", "yum ", "rpm ", "/var/lib/dpkg/"],
            "services" => &["systemctl ", "/etc/systemd/system/"],
            "mounts" => &["/etc/fstab", "mount "],
            "logging" => &["/etc/audit/", "auditctl", "/etc/rsyslog", "/etc/systemd/journald", "/etc/logrotate"],
            "time" => &["/etc/chrony", "/etc/ntp", "timesyncd", "timedatectl"],
            "apt" => &["/etc/apt/"],
            "network" => &["nft ", "iptables", "ufw ", "/etc/nftables", "/etc/ufw/", "/etc/iptables"],
            _ => &[],
        };
        out.extend(family.iter().map(|s| s.to_string()));
    }
    out.sort();
    out.dedup();
    out
}

/// The facts a control read before a change: its evidence now, with every
/// path under a changed one taken from `old` (the values those changed
/// paths had before, as evidence; absent ones as `null`).
pub fn before_evidence(
    after: &BTreeMap<String, FactValue>,
    changed: &[FactPath],
    old: &BTreeMap<String, FactValue>,
    reads: &BTreeSet<FactPath>,
    constants: &BTreeSet<String>,
    digests: &facts::ListDigests,
) -> BTreeMap<String, FactValue> {
    let under =
        |key: &str, roots: &[FactPath]| FactPath::parse(facts::evidence_path(key)).is_ok_and(|k| roots.iter().any(|r| k.starts_with(r)));
    let mut before: BTreeMap<String, FactValue> =
        after.iter().filter(|(k, _)| !under(k, changed)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let reads: Vec<FactPath> = reads.iter().cloned().collect();
    for (k, v) in old {
        if under(k, &reads) {
            facts::add_evidence(&mut before, k, v, constants, digests);
        }
    }
    // A path read now but absent before was null.
    for k in after.keys() {
        let path = facts::evidence_path(k);
        if !before.contains_key(path) {
            before.insert(path.to_string(), FactValue::Null);
        }
    }
    before
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_schemas::{Actor, AuditSource, Outcome};

    fn event(id: &str, secs_before: i64, object: &str, user: &str, now: DateTime<Utc>) -> AuditEvent {
        AuditEvent {
            event_id: id.into(),
            asset_id: "a".into(),
            hostname: "h".into(),
            source: AuditSource::Auditd,
            timestamp: now - Duration::seconds(secs_before),
            actor: Actor { user: Some(user.into()), ..Default::default() },
            action: "syscall".into(),
            object: Some(object.into()),
            outcome: Outcome::Success,
            source_address: None,
            raw: format!("type=SYSCALL name={object}"),
            extra: Default::default(),
        }
    }

    fn drift(now: DateTime<Utc>, path: &str, before: &str, after: &str) -> DriftEvent {
        let ev = Evaluation {
            asset_id: "a".into(),
            control_id: "c".into(),
            title: "t".into(),
            severity: crate::policy::Severity::High,
            status: Status::Fail,
            frameworks: Default::default(),
            evidence: [(path.to_string(), FactValue::from(after))].into(),
            message: None,
            evaluated_at: now,
            snapshot_id: "s2".into(),
            sequence: 2,
            checked: Some(Status::Fail),
        };
        DriftEvent::new(Status::Pass, ev, [(path.to_string(), FactValue::from(before))].into())
    }

    #[test]
    fn the_closest_event_naming_the_source_is_the_cause() {
        let now = Utc::now();
        let mut a = Attributor::new(Duration::minutes(10));
        a.record(&event("old", 300, "/etc/ssh/sshd_config", "bob", now));
        a.record(&event("near", 5, "/etc/ssh/sshd_config", "alice", now));
        a.record(&event("other", 1, "/etc/hosts", "eve", now));
        let mut d = drift(now, "sshd.config.permitrootlogin", "no", "yes");
        assert_eq!(d.changed, vec!["sshd.config.permitrootlogin"]);
        assert_eq!(d.direction(), "regressed");
        a.attribute(&mut d);
        let c = d.cause.unwrap();
        assert_eq!((c.event_id.as_str(), c.user.as_deref(), c.matched.as_str()), ("near", Some("alice"), "/etc/ssh/sshd_config"));
    }

    #[test]
    fn no_matching_event_or_outside_the_window_means_no_cause() {
        let now = Utc::now();
        let mut a = Attributor::new(Duration::minutes(1));
        a.record(&event("unrelated", 5, "/etc/hosts", "eve", now));
        a.record(&event("too-old", 120, r#"/etc/shadow"#, "eve", now));
        let mut d = drift(now, r#"files["/etc/shadow"].mode"#, "0640", "0644");
        a.attribute(&mut d);
        assert_eq!(d.cause, None);
        a.record(&event("late-but-close", -3, "/etc/shadow", "mallory", now));
        a.attribute(&mut d);
        assert_eq!(d.cause.unwrap().event_id, "late-but-close");
    }

    #[test]
    fn before_values_come_from_the_old_facts_of_changed_paths() {
        let p = |s: &str| FactPath::parse(s).unwrap();
        let after = [("sshd.config.a".to_string(), FactValue::from("yes")), ("sshd.config.b".to_string(), FactValue::from("x"))].into();
        let old = [("sshd.config.a".to_string(), FactValue::from("no")), ("os.id".to_string(), FactValue::from("debian"))].into();
        let reads = [p("sshd.config.a"), p("sshd.config.b")].into();
        let b = before_evidence(&after, &[p("sshd.config.a"), p("os.id")], &old, &reads, &BTreeSet::new(), &facts::ListDigests::default());
        assert_eq!(b.get("sshd.config.a"), Some(&FactValue::from("no")));
        assert_eq!(b.get("sshd.config.b"), Some(&FactValue::from("x")));
        assert!(!b.contains_key("os.id"), "not read by the control");
    }

    #[test]
    fn a_long_lists_drift_shows_the_named_items_that_changed() {
        let p = |s: &str| FactPath::parse(s).unwrap();
        let list =
            |extra: &[&str]| FactValue::List((0..100).map(|i| format!("lib{i}")).chain(extra.iter().map(|s| s.to_string())).collect());
        let (reads, constants) = ([p("packages.installed")].into(), ["telnetd".to_string()].into());
        let mut after = BTreeMap::new();
        facts::add_evidence(&mut after, "packages.installed", &list(&["telnetd"]), &constants, &facts::ListDigests::default());
        let old = [("packages.installed".to_string(), list(&[]))].into();
        let before = before_evidence(&after, &[p("packages.installed")], &old, &reads, &constants, &facts::ListDigests::default());
        assert_eq!(before.get("packages.installed"), Some(&FactValue::List(vec![])));
        assert_eq!(before.get("packages.installed#items"), Some(&FactValue::Int(100)));
        let ev = Evaluation { evidence: after, ..drift(Utc::now(), "x", "a", "a").evaluation };
        let d = DriftEvent::new(Status::Pass, ev, before);
        assert_eq!(d.changed, ["packages.installed", "packages.installed#items", "packages.installed#sha256"]);
        // Installed where nothing was before: the path was null, no summary.
        let before = before_evidence(
            &d.evaluation.evidence,
            &[p("packages.installed")],
            &BTreeMap::new(),
            &reads,
            &constants,
            &facts::ListDigests::default(),
        );
        assert_eq!(before, [("packages.installed".to_string(), FactValue::Null)].into());
    }
}
