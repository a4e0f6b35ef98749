//! Agent identity: whose word a record is. Every agent signs its records
//! with its own Ed25519 key (`driftwatch_schemas::identity`); the collector
//! pins one key per asset, on first use or by an operator's approval, and
//! takes a record as the asset's word only when signed by that key.
//!
//! This module is the model (no I/O): the settings, what a record presents,
//! the verdict on it ([`decide`]), the alert raised when someone else
//! speaks for a pinned asset, and operators' decisions ([`approve`],
//! [`revoke`]). The gate that applies it to Kafka records, with the keys
//! cached from the store, is `ingest::identity`.

use chrono::{DateTime, Utc};
use driftwatch_schemas::identity::PublicKey;
use serde::Deserialize;

use crate::alert::model::Alert;
use crate::store::keys::AssetKeyRow;

/// `identity:` in the collector's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// How an asset's first key is trusted: `first_use` pins the key of the
    /// first signed record (trust on first use); `approval` holds every new
    /// asset's records until an operator approves its key (an allowlist).
    pub enrolment: Enrolment,
    /// Records with no signature, from an asset that has no pinned key
    /// (older agents during an upgrade): `reject` (the default) or
    /// `accept`. An asset with a pinned key never has an unsigned record
    /// accepted, whatever this says.
    pub unsigned: Unsigned,
    /// How often every asset's keys are read again from the store, so that
    /// decisions made elsewhere (the CLI, another collector) take effect.
    pub refresh_secs: u64,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig { enrolment: Enrolment::FirstUse, unsigned: Unsigned::Reject, refresh_secs: 60 }
    }
}

impl IdentityConfig {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.refresh_secs == 0 {
            problems.push("identity.refresh_secs: must be at least 1".into());
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enrolment {
    FirstUse,
    Approval,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unsigned {
    Reject,
    Accept,
}

/// A key's standing for an asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Records it signs are the asset's word.
    Pinned,
    /// Seen; its records are refused until an operator decides.
    Pending,
    /// Refused.
    Revoked,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Pinned => "pinned",
            KeyStatus::Pending => "pending",
            KeyStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<KeyStatus> {
        match s {
            "pinned" => Some(KeyStatus::Pinned),
            "pending" => Some(KeyStatus::Pending),
            "revoked" => Some(KeyStatus::Revoked),
            _ => None,
        }
    }
}

/// What a record shows of its signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    Unsigned,
    /// Signature headers that are malformed or do not verify (the error).
    Invalid(String),
    Signed(PublicKey),
}

/// Why someone should look: a record refused for an asset whose word is
/// already someone's, or a new asset waiting for approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Concern {
    /// Signed by a key other than the asset's pinned one.
    KeyChanged,
    /// A signature that does not verify, for an asset with a pinned key.
    Forged,
    /// No signature, for an asset with a pinned key.
    Unsigned,
    /// A new asset's key, under `enrolment: approval`.
    NotEnrolled,
}

impl Concern {
    pub fn as_str(self) -> &'static str {
        match self {
            Concern::KeyChanged => "key_changed",
            Concern::Forged => "forged_signature",
            Concern::Unsigned => "unsigned",
            Concern::NotEnrolled => "not_enrolled",
        }
    }
}

/// The verdict on one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Signed by the asset's pinned key (or unsigned and allowed).
    Accept,
    /// The first signed record of an asset with no key: its key is pinned
    /// (`enrolment: first_use`) and the record accepted.
    PinFirstUse,
    /// Refused (dead-lettered with `reason`). `hold`: the presented key is
    /// recorded as pending, for an operator to approve or revoke.
    Reject { reason: String, concern: Option<Concern>, hold: bool },
}

/// The verdict on a record of `asset` presenting `presented`, given the
/// latest standing of the asset's keys (`keys`, this asset's only).
pub fn decide(cfg: &IdentityConfig, asset: &str, keys: &[AssetKeyRow], presented: &Presented) -> Verdict {
    let pinned: Vec<&str> =
        keys.iter().filter(|k| KeyStatus::parse(&k.status) == Some(KeyStatus::Pinned)).map(|k| k.fingerprint.as_str()).collect();
    let reject = |reason: String, concern: Option<Concern>, hold: bool| Verdict::Reject { reason, concern, hold };
    match presented {
        Presented::Unsigned if !pinned.is_empty() => reject(
            format!("identity: unsigned record for asset {asset}, whose records must be signed by {}", pinned.join(" or ")),
            Some(Concern::Unsigned),
            false,
        ),
        Presented::Unsigned if cfg.unsigned == Unsigned::Accept => Verdict::Accept,
        Presented::Unsigned => reject(format!("identity: unsigned record for asset {asset} (identity.unsigned is reject)"), None, false),
        Presented::Invalid(e) => reject(format!("identity: asset {asset}: {e}"), (!pinned.is_empty()).then_some(Concern::Forged), false),
        Presented::Signed(key) => {
            let fp = key.fingerprint();
            let standing = keys.iter().find(|k| k.fingerprint == fp).and_then(|k| KeyStatus::parse(&k.status));
            match standing {
                Some(KeyStatus::Pinned) => Verdict::Accept,
                Some(KeyStatus::Revoked) => reject(format!("identity: asset {asset}: key {fp} is revoked"), None, false),
                Some(KeyStatus::Pending) => reject(
                    format!("identity: asset {asset}: key {fp} awaits approval (driftwatch-collector keys approve {asset} {fp})"),
                    None,
                    false,
                ),
                None if keys.is_empty() && cfg.enrolment == Enrolment::FirstUse => Verdict::PinFirstUse,
                None if keys.is_empty() => reject(
                    format!(
                        "identity: asset {asset}: key {fp} is not enrolled (identity.enrolment is approval): driftwatch-collector keys approve {asset} {fp}"
                    ),
                    Some(Concern::NotEnrolled),
                    true,
                ),
                None => reject(
                    format!(
                        "identity: asset {asset} is pinned to {}; this record is signed by {fp}, held until approved",
                        if pinned.is_empty() { "no key (its keys were revoked)".to_string() } else { pinned.join(" or ") }
                    ),
                    Some(Concern::KeyChanged),
                    true,
                ),
            }
        }
    }
}

/// A new version of a key's standing, decided at `now`.
pub fn row(
    asset: &str,
    key: KeyRef<'_>,
    status: KeyStatus,
    by: &str,
    reason: &str,
    first_seen: DateTime<Utc>,
    now: DateTime<Utc>,
) -> AssetKeyRow {
    AssetKeyRow {
        asset_id: asset.to_string(),
        fingerprint: key.fingerprint.to_string(),
        public_key: key.public_key.to_string(),
        status: status.as_str().to_string(),
        first_seen: crate::store::secs(&first_seen),
        decided_at: crate::store::secs(&now),
        decided_by: by.to_string(),
        reason: reason.to_string(),
        version: now.timestamp_millis().max(0) as u64,
    }
}

/// A key as rows name it.
#[derive(Debug, Clone, Copy)]
pub struct KeyRef<'a> {
    pub fingerprint: &'a str,
    /// The signer header, or empty when only the fingerprint is known.
    pub public_key: &'a str,
}

/// An operator's decision on one key of one asset (the CLI's and the
/// API's `keys approve|revoke`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Revoke,
}

impl Decision {
    /// The verb, as the commands and the audit table name it.
    pub fn verb(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Revoke => "revoke",
        }
    }

    /// The new versions of the asset's keys ([`approve`], [`revoke`]).
    pub fn rows(
        self,
        keys: &[AssetKeyRow],
        asset: &str,
        fingerprint: &str,
        by: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<AssetKeyRow>, String> {
        match self {
            Decision::Approve => approve(keys, asset, fingerprint, by, reason, now),
            Decision::Revoke => revoke(keys, asset, fingerprint, by, reason, now),
        }
    }
}

/// An operator approves `fingerprint` for `asset` (`keys` are the asset's
/// current ones): it becomes the pinned key and any other pinned key is
/// revoked (one key speaks for an asset). Approving a key never seen
/// enrols it ahead of its agent.
pub fn approve(
    keys: &[AssetKeyRow],
    asset: &str,
    fingerprint: &str,
    by: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Vec<AssetKeyRow>, String> {
    check_names(asset, fingerprint)?;
    let known = keys.iter().find(|k| k.fingerprint == fingerprint);
    let mut out = Vec::new();
    let first_seen = known.map_or(now, |k| crate::store::time(k.first_seen));
    let public_key = known.map_or("", |k| k.public_key.as_str());
    out.push(row(asset, KeyRef { fingerprint, public_key }, KeyStatus::Pinned, by, reason, first_seen, now));
    for k in keys.iter().filter(|k| k.fingerprint != fingerprint && KeyStatus::parse(&k.status) == Some(KeyStatus::Pinned)) {
        let replaced = format!("replaced by {fingerprint}");
        let key = KeyRef { fingerprint: &k.fingerprint, public_key: &k.public_key };
        out.push(row(asset, key, KeyStatus::Revoked, by, &replaced, crate::store::time(k.first_seen), now));
    }
    Ok(out)
}

/// An operator revokes `fingerprint` for `asset`: its records are refused
/// from now on. The asset then accepts no new key without an approval.
pub fn revoke(
    keys: &[AssetKeyRow],
    asset: &str,
    fingerprint: &str,
    by: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Vec<AssetKeyRow>, String> {
    check_names(asset, fingerprint)?;
    let k = keys.iter().find(|k| k.fingerprint == fingerprint).ok_or_else(|| format!("asset {asset} has no key {fingerprint}"))?;
    let key = KeyRef { fingerprint, public_key: &k.public_key };
    Ok(vec![row(asset, key, KeyStatus::Revoked, by, reason, crate::store::time(k.first_seen), now)])
}

fn check_names(asset: &str, fingerprint: &str) -> Result<(), String> {
    if asset.is_empty() {
        return Err("the asset id is empty".into());
    }
    if !driftwatch_schemas::identity::is_fingerprint(fingerprint) {
        return Err(format!(
            "{fingerprint:?} is not a key fingerprint (sha256: and 64 lower-case hex digits, as `driftwatch-agent identity` prints)"
        ));
    }
    Ok(())
}

/// The alert for a refused record that needs a person: someone other than
/// the asset's agent speaking for it (critical), or a new asset waiting
/// for approval (warning). Notified once (a point event).
pub fn alert(asset: &str, concern: Concern, fingerprint: Option<&str>, reason: &str, now: DateTime<Utc>) -> Alert {
    let severity = if concern == Concern::NotEnrolled { "warning" } else { "critical" };
    let fp = fingerprint.unwrap_or("");
    let labels = [("alertname", "agent_identity"), ("asset", asset), ("concern", concern.as_str()), ("severity", severity)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (title, remediation) = match concern {
        Concern::NotEnrolled => (
            format!("New agent for {asset} awaits enrolment"),
            format!("Check that {fp} is the key `driftwatch-agent identity` prints on the host, then: driftwatch-collector keys approve {asset} {fp}"),
        ),
        Concern::KeyChanged => (
            format!("Records for {asset} signed by another key"),
            format!(
                "If the agent was reinstalled or its key file lost, compare {fp} with `driftwatch-agent identity` on the host and approve it (driftwatch-collector keys approve {asset} {fp}). Otherwise someone else writes as this asset: find the producer through the broker's principals and ACLs, then revoke the key (driftwatch-collector keys revoke {asset} {fp})."
            ),
        ),
        Concern::Forged | Concern::Unsigned => (
            format!("Forged records for {asset}"),
            "A producer without the asset's key writes as it: find it through the broker's principals and ACLs and remove its write access to the Driftwatch topics.".to_string(),
        ),
    };
    let annotations = [
        ("title", title.clone()),
        ("summary", format!("{title}: {reason}")),
        ("remediation", remediation),
        ("fingerprint", fp.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Alert {
        labels,
        annotations,
        starts_at: now,
        ends_at: None,
        instance: format!("identity/{asset}/{}/{fp}", concern.as_str()),
        one_shot: true,
    }
}

#[cfg(test)]
mod tests {
    use driftwatch_schemas::identity::KeyPair;

    use super::*;

    fn key(n: u8) -> PublicKey {
        KeyPair::from_seed(&[n; 32]).public()
    }

    fn standing(k: PublicKey, status: KeyStatus) -> AssetKeyRow {
        let fp = k.fingerprint();
        row("a", KeyRef { fingerprint: &fp, public_key: &k.header() }, status, "t", "", Utc::now(), Utc::now())
    }

    fn concern(v: &Verdict) -> Option<Concern> {
        match v {
            Verdict::Reject { concern, .. } => *concern,
            _ => None,
        }
    }

    #[test]
    fn the_first_key_is_pinned_and_only_it_speaks_for_the_asset_after() {
        let cfg = IdentityConfig::default();
        assert_eq!(decide(&cfg, "a", &[], &Presented::Signed(key(1))), Verdict::PinFirstUse);
        let keys = [standing(key(1), KeyStatus::Pinned)];
        assert_eq!(decide(&cfg, "a", &keys, &Presented::Signed(key(1))), Verdict::Accept);
        let other = decide(&cfg, "a", &keys, &Presented::Signed(key(2)));
        assert!(
            matches!(&other, Verdict::Reject { hold: true, reason, .. } if reason.contains(&key(2).fingerprint()) && reason.contains(&key(1).fingerprint())),
            "{other:?}"
        );
        assert_eq!(concern(&other), Some(Concern::KeyChanged));
        let unsigned = decide(&IdentityConfig { unsigned: Unsigned::Accept, ..cfg.clone() }, "a", &keys, &Presented::Unsigned);
        assert_eq!(concern(&unsigned), Some(Concern::Unsigned), "a pinned asset never takes an unsigned record");
        assert_eq!(concern(&decide(&cfg, "a", &keys, &Presented::Invalid("bad".into()))), Some(Concern::Forged));
    }

    #[test]
    fn unsigned_records_of_new_assets_follow_the_setting() {
        let cfg = IdentityConfig::default();
        assert!(matches!(decide(&cfg, "a", &[], &Presented::Unsigned), Verdict::Reject { concern: None, hold: false, .. }));
        let accept = IdentityConfig { unsigned: Unsigned::Accept, ..cfg };
        assert_eq!(decide(&accept, "a", &[], &Presented::Unsigned), Verdict::Accept);
        assert_eq!(concern(&decide(&accept, "a", &[], &Presented::Invalid("bad".into()))), None, "nothing to forge yet");
    }

    #[test]
    fn under_approval_a_new_key_waits_and_pending_or_revoked_keys_stay_refused() {
        let cfg = IdentityConfig { enrolment: Enrolment::Approval, ..Default::default() };
        let v = decide(&cfg, "a", &[], &Presented::Signed(key(1)));
        assert!(matches!(v, Verdict::Reject { concern: Some(Concern::NotEnrolled), hold: true, .. }), "{v:?}");
        let pending = [standing(key(1), KeyStatus::Pending)];
        assert!(matches!(decide(&cfg, "a", &pending, &Presented::Signed(key(1))), Verdict::Reject { concern: None, hold: false, .. }));
        // Once an asset has any history, a new key is a change, even when
        // first use would pin: a revoked key's asset is not open to anyone.
        let revoked = [standing(key(1), KeyStatus::Revoked)];
        let first_use = IdentityConfig::default();
        assert!(matches!(decide(&first_use, "a", &revoked, &Presented::Signed(key(1))), Verdict::Reject { hold: false, .. }));
        assert_eq!(concern(&decide(&first_use, "a", &revoked, &Presented::Signed(key(2)))), Some(Concern::KeyChanged));
    }

    #[test]
    fn approving_a_key_replaces_the_pinned_one_and_revoking_needs_a_known_key() {
        let now = Utc::now();
        let (k1, k2) = (key(1), key(2));
        let keys = [standing(k1, KeyStatus::Pinned), standing(k2, KeyStatus::Pending)];
        let rows = approve(&keys, "a", &k2.fingerprint(), "ops", "reinstalled", now).unwrap();
        let got: Vec<(String, &str)> = rows.iter().map(|r| (r.fingerprint.clone(), r.status.as_str())).collect();
        assert_eq!(got, vec![(k2.fingerprint(), "pinned"), (k1.fingerprint(), "revoked")]);
        assert_eq!(rows[0].public_key, k2.header(), "the key seen is kept");
        let ahead = approve(&[], "b", &k1.fingerprint(), "ops", "", now).unwrap();
        assert_eq!((ahead.len(), ahead[0].public_key.as_str()), (1, ""), "enrolled by fingerprint alone");
        assert!(approve(&[], "b", "sha256:xyz", "ops", "", now).unwrap_err().contains("not a key fingerprint"));
        assert!(revoke(&[], "b", &k1.fingerprint(), "ops", "", now).unwrap_err().contains("has no key"));
        assert_eq!(revoke(&keys, "a", &k1.fingerprint(), "ops", "", now).unwrap()[0].status, "revoked");
    }

    #[test]
    fn the_alert_names_the_asset_the_key_and_what_to_do() {
        let a = alert("web-1", Concern::KeyChanged, Some("sha256:ab"), "why", Utc::now());
        assert_eq!(a.severity(), "critical");
        assert_eq!(a.labels.get("asset").map(String::as_str), Some("web-1"));
        assert!(a.annotations["remediation"].contains("keys approve web-1 sha256:ab"));
        assert!(a.one_shot);
        assert_eq!(alert("web-1", Concern::NotEnrolled, Some("sha256:ab"), "", Utc::now()).severity(), "warning");
    }
}
