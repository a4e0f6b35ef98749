//! The identity gate of the Kafka source: each decoded record is checked
//! against the keys of the asset it claims (`crate::identity::decide`)
//! before it is evaluated. A refused record is dead-lettered with the
//! reason; someone speaking for another asset raises an alert once.
//!
//! Keys are cached from the store: all of them at start, at each
//! reassignment and every `identity.refresh_secs`; one asset's again
//! (at most every [`RECHECK`]) before a record of it would be refused or
//! its first key pinned, so that a decision made elsewhere (the CLI,
//! another collector) is seen first. Most records are decided from the
//! cache without waiting ([`IdentityGate::verdict_cached`]); the others
//! after reading the store ([`IdentityGate::resolve`], cancel-safe), and
//! the verdict is acted on by [`IdentityGate::apply`]. Keys pinned or held here are written
//! to the store before the offsets of the records that made them are
//! committed ([`IdentityGate::save`]): after a crash they are made again
//! from the same records.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use driftwatch_schemas::identity::{self, SIGNATURE_HEADER, SIGNER_HEADER};

pub use crate::identity::Presented;
use crate::identity::{decide, IdentityConfig, KeyRef, KeyStatus, Verdict};
use crate::store::keys::AssetKeyRow;
use crate::store::prelude::*;
use crate::store::StoreError;
use crate::tasks::alerting::Alerting;
use crate::tasks::until_ok;

/// An asset's keys are read again from the store at most this often when
/// one of its records would be refused.
const RECHECK: Duration = Duration::from_secs(5);
/// Keys held pending per asset, at most: more (a flood of made-up keys)
/// are refused without being recorded.
const MAX_PENDING: usize = 8;
/// Alerts remembered as sent (a bound on one collector's memory of them).
const MAX_ALERTED: usize = 100_000;

/// One asset's keys as last read, and when.
struct Cached {
    keys: Vec<AssetKeyRow>,
    read_at: Option<Instant>,
}

/// Checks records' signatures against their assets' pinned keys.
pub struct IdentityGate {
    cfg: IdentityConfig,
    store: SharedStore,
    alerting: Alerting,
    assets: HashMap<String, Cached>,
    /// Keys pinned or held here and not yet stored.
    unsaved: Vec<AssetKeyRow>,
    alerted: HashSet<String>,
    /// When every asset's keys are read again.
    reload_at: Instant,
}

impl IdentityGate {
    /// Reads every asset's keys.
    pub async fn start(cfg: IdentityConfig, store: SharedStore, alerting: Alerting) -> Result<Self, StoreError> {
        let mut gate = IdentityGate {
            cfg,
            store,
            alerting,
            assets: HashMap::new(),
            unsaved: Vec::new(),
            alerted: HashSet::new(),
            reload_at: Instant::now(),
        };
        gate.reload().await?;
        tracing::info!(
            assets = gate.assets.len(),
            enrolment = ?gate.cfg.enrolment,
            unsigned = ?gate.cfg.unsigned,
            "agent identity: records must be signed by their asset's pinned key"
        );
        Ok(gate)
    }

    /// Reads every asset's keys again (keeping what is not yet stored).
    pub async fn reload(&mut self) -> Result<(), StoreError> {
        let rows = self.store.asset_keys(None).await?;
        let mut assets: HashMap<String, Cached> = HashMap::new();
        let now = Instant::now();
        for r in rows {
            assets.entry(r.asset_id.clone()).or_insert_with(|| Cached { keys: Vec::new(), read_at: Some(now) }).keys.push(r);
        }
        self.assets = assets;
        for r in self.unsaved.clone() {
            self.remember(r);
        }
        self.reload_at = now + Duration::from_secs(self.cfg.refresh_secs);
        self.count_pending();
        Ok(())
    }

    /// Every asset's keys are read again before the next record.
    pub fn refresh_soon(&mut self) {
        self.reload_at = Instant::now();
    }

    /// The verdict on a record of `asset` that [`presented`] what it did,
    /// when the cache decides it without reading the store: `None` when
    /// the store must be read first ([`Self::resolve`]). No I/O, so a
    /// consumer may call it between receiving a record and returning it.
    pub fn verdict_cached(&self, asset: &str, presented: &Presented) -> Option<Verdict> {
        if Instant::now() >= self.reload_at {
            return None;
        }
        let verdict = self.verdict(asset, presented);
        let stale = self.assets.get(asset).is_none_or(|c| c.read_at.is_none_or(|t| t.elapsed() >= RECHECK));
        (verdict == Verdict::Accept || !stale).then_some(verdict)
    }

    /// The verdict after reading what the store holds (every asset's keys
    /// when a refresh is due, the asset's before refusing one of its
    /// records or pinning its first key); waits for the store when it does
    /// not answer. Cancel-safe: nothing is decided until it returns.
    pub async fn resolve(&mut self, asset: &str, presented: &Presented) -> Verdict {
        if Instant::now() >= self.reload_at {
            if let Err(e) = self.reload().await {
                // Decisions go on from the cache; each refusal reads its asset.
                tracing::warn!(error = %e, "could not read agents' keys again; trying at the next refresh");
                self.reload_at = Instant::now() + Duration::from_secs(self.cfg.refresh_secs);
            }
        }
        let verdict = self.verdict(asset, presented);
        let stale = self.assets.get(asset).is_none_or(|c| c.read_at.is_none_or(|t| t.elapsed() >= RECHECK));
        if verdict == Verdict::Accept || !stale {
            return verdict;
        }
        self.read_asset(asset).await;
        self.verdict(asset, presented)
    }

    /// Acts on `verdict` for a record of `asset` (pins or holds its key,
    /// alerts once, counts) and says whether the record is the asset's
    /// word; if not, why (the dead letter's reason).
    pub fn apply(&mut self, asset: &str, presented: &Presented, verdict: Verdict) -> Result<(), String> {
        let m = &crate::metrics::METRICS;
        let now = Utc::now();
        match verdict {
            Verdict::Accept => {
                let outcome = if *presented == Presented::Unsigned { "unsigned_accepted" } else { "signed" };
                m.identity_records.with_label_values(&[outcome]).inc();
                Ok(())
            }
            Verdict::PinFirstUse => {
                let Presented::Signed(key) = presented else { unreachable!("only a signed record is pinned") };
                let (fp, header) = (key.fingerprint(), key.header());
                tracing::info!(asset, fingerprint = %fp, "agent key pinned on first use");
                let key = KeyRef { fingerprint: &fp, public_key: &header };
                self.record(crate::identity::row(asset, key, KeyStatus::Pinned, "first use", "first signed record", now, now));
                m.identity_records.with_label_values(&["pinned_first_use"]).inc();
                Ok(())
            }
            Verdict::Reject { reason, concern, hold } => {
                let fp = match presented {
                    Presented::Signed(k) => Some(k.fingerprint()),
                    _ => None,
                };
                let pending = self.assets.get(asset).map_or(0, |c| c.keys.iter().filter(|k| k.status == "pending").count());
                if let (true, Presented::Signed(key), Some(fp)) = (hold, presented, &fp) {
                    if pending < MAX_PENDING {
                        let key = KeyRef { fingerprint: fp, public_key: &key.header() };
                        self.record(crate::identity::row(asset, key, KeyStatus::Pending, "collector", &reason, now, now));
                        self.count_pending();
                    }
                }
                let outcome = concern.map_or_else(|| "rejected".to_string(), |c| format!("rejected_{}", c.as_str()));
                m.identity_records.with_label_values(&[&outcome]).inc();
                if let Some(concern) = concern {
                    let id = format!("{asset}\u{1f}{}\u{1f}{}", concern.as_str(), fp.as_deref().unwrap_or(""));
                    if self.alerted.len() >= MAX_ALERTED {
                        self.alerted.clear();
                    }
                    if self.alerted.insert(id) {
                        tracing::error!(asset, concern = concern.as_str(), %reason, "record refused: not signed by the asset's key");
                        self.alerting.send(crate::identity::alert(asset, concern, fp.as_deref(), &reason, now));
                    }
                }
                Err(reason)
            }
        }
    }

    /// Writes the keys pinned or held since the last call, retrying until
    /// the store takes them (called before offsets are committed).
    pub async fn save(&mut self) {
        if self.unsaved.is_empty() {
            return;
        }
        until_ok("storing agents' keys", || self.store.put_asset_keys(&self.unsaved)).await;
        self.unsaved.clear();
    }

    fn verdict(&self, asset: &str, presented: &Presented) -> Verdict {
        let keys = self.assets.get(asset).map_or(&[][..], |c| &c.keys[..]);
        decide(&self.cfg, asset, keys, presented)
    }

    /// Reads one asset's keys, waiting for the store if it does not
    /// answer (a key must not be pinned over one the store holds).
    async fn read_asset(&mut self, asset: &str) {
        let rows = until_ok("reading an asset's keys (its records wait)", || self.store.asset_keys(Some(asset))).await;
        self.assets.insert(asset.to_string(), Cached { keys: rows, read_at: Some(Instant::now()) });
        for r in self.unsaved.clone().into_iter().filter(|r| r.asset_id == asset) {
            self.remember(r);
        }
    }

    /// A new version of a key's standing: cached now, stored at [`Self::save`].
    fn record(&mut self, row: AssetKeyRow) {
        self.unsaved.push(row.clone());
        self.remember(row);
    }

    fn remember(&mut self, row: AssetKeyRow) {
        let cached = self.assets.entry(row.asset_id.clone()).or_insert_with(|| Cached { keys: Vec::new(), read_at: None });
        match cached.keys.iter_mut().find(|k| k.fingerprint == row.fingerprint) {
            Some(k) if k.version <= row.version => *k = row,
            Some(_) => {}
            None => cached.keys.push(row),
        }
    }

    fn count_pending(&self) {
        let n = self.assets.values().flat_map(|c| &c.keys).filter(|k| k.status == "pending").count();
        crate::metrics::METRICS.agent_keys_pending.set(n as i64);
    }
}

/// What a record's headers show of its signer (the last value of each
/// signature header counts, as Kafka clients read headers).
pub fn presented(headers: Option<&rdkafka::message::BorrowedHeaders>, payload: &[u8]) -> Presented {
    use rdkafka::message::Headers;
    let (mut signer, mut signature) = (None, None);
    if let Some(h) = headers {
        for header in h.iter() {
            match header.key {
                SIGNER_HEADER => signer = Some(header.value.unwrap_or_default()),
                SIGNATURE_HEADER => signature = Some(header.value.unwrap_or_default()),
                _ => {}
            }
        }
    }
    match identity::verify(signer, signature, payload) {
        Ok(None) => Presented::Unsigned,
        Ok(Some(key)) => Presented::Signed(key),
        Err(e) => Presented::Invalid(e.to_string()),
    }
}
