//! Rows of the collector's own state (the notification log, silences, the
//! API's write audit, waivers, evidence roots), built from the domain types
//! and read back into them. Both stores keep them as they are: ClickHouse
//! as columns, SQLite as JSON documents.

use ::clickhouse::Row;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{secs, time};
use crate::alert::dispatch::Sent;
use crate::alert::matcher::Matcher;
use crate::alert::mute::Silence;
use crate::policy::Severity;
use crate::waiver::{Scope, Waiver, WaiverSpec};

/// A delivered notification.
#[derive(Debug, Row, Serialize, Deserialize)]
pub struct NotificationRow {
    pub receiver: String,
    pub group_key: String,
    pub sent_at: u32,
    pub status: String,
    pub escalation: u8,
    pub firing: Vec<String>,
    pub alerts: String,
}

impl NotificationRow {
    pub fn new(s: &Sent, status: &str) -> Self {
        NotificationRow {
            receiver: s.receiver.clone(),
            group_key: s.group_key.clone(),
            sent_at: secs(&s.at),
            status: status.to_string(),
            escalation: u8::from(s.escalation),
            firing: s.firing.iter().cloned().collect(),
            alerts: serde_json::to_string(&s.alerts).unwrap_or_default(),
        }
    }

    pub fn into_sent(self) -> Sent {
        Sent {
            receiver: self.receiver,
            group_key: self.group_key,
            at: time(self.sent_at),
            firing: self.firing.into_iter().collect(),
            // A log row this version can't read only loses its resolve.
            alerts: serde_json::from_str(&self.alerts).unwrap_or_default(),
            escalation: self.escalation != 0,
        }
    }
}

/// A silence as read (the latest version).
#[derive(Debug, Row, Serialize, Deserialize)]
pub struct SilenceRow {
    pub silence_id: String,
    pub matchers: Vec<String>,
    pub starts_at: u32,
    pub ends_at: u32,
    pub created_by: String,
    pub comment: String,
}

impl SilenceRow {
    /// The silence; `None` (with an error log) when a stored matcher no
    /// longer parses: the silence then mutes nothing.
    pub fn into_silence(self) -> Option<Silence> {
        let matchers: Result<Vec<Matcher>, String> = self.matchers.iter().map(|m| Matcher::parse(m)).collect();
        match matchers {
            Ok(matchers) => Some(Silence {
                id: self.silence_id,
                matchers,
                starts_at: time(self.starts_at),
                ends_at: time(self.ends_at),
                created_by: self.created_by,
                comment: self.comment,
            }),
            Err(e) => {
                tracing::error!(silence = %self.silence_id, error = %e, "stored silence has a bad matcher; ignored");
                None
            }
        }
    }
}

/// A version of a silence, as written.
#[derive(Debug, Row, Serialize, Deserialize)]
pub struct SilenceWriteRow {
    pub silence_id: String,
    pub matchers: Vec<String>,
    pub starts_at: u32,
    pub ends_at: u32,
    pub created_by: String,
    pub comment: String,
    pub updated_at: u32,
    pub version: u64,
}

impl SilenceWriteRow {
    pub fn new(s: &Silence, now: DateTime<Utc>) -> Self {
        SilenceWriteRow {
            silence_id: s.id.clone(),
            matchers: s.matchers.iter().map(|m| m.to_string()).collect(),
            starts_at: secs(&s.starts_at),
            ends_at: secs(&s.ends_at),
            created_by: s.created_by.clone(),
            comment: s.comment.clone(),
            updated_at: secs(&now),
            // Milliseconds: an expiry right after creation still wins.
            version: now.timestamp_millis().max(0) as u64,
        }
    }
}

/// A write through the API: who, what, when, outcome.
#[derive(Debug, Row, Serialize, Deserialize)]
pub struct ApiAuditRow {
    pub at: u32,
    pub key_name: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub detail: String,
}

impl ApiAuditRow {
    pub fn new(key: &str, method: &str, path: &str, status: u16, detail: &str, now: DateTime<Utc>) -> Self {
        ApiAuditRow { at: secs(&now), key_name: key.into(), method: method.into(), path: path.into(), status, detail: detail.into() }
    }
}

/// A version of a waiver, as written and as read back (latest version).
#[derive(Debug, Row, Serialize, Deserialize)]
pub struct WaiverRow {
    pub waiver_id: String,
    pub control_id: String,
    pub requirement: String,
    pub scope: String,
    pub justification: String,
    pub approver: String,
    pub risk: String,
    pub ticket: String,
    pub starts_at: u32,
    pub expires_at: u32,
    pub revoked_at: u32,
    pub revoked_by: String,
    pub created_by: String,
    pub source: String,
    pub updated_at: u32,
    pub version: u64,
}

impl WaiverRow {
    pub fn new(w: &Waiver, now: DateTime<Utc>) -> Self {
        WaiverRow {
            waiver_id: w.spec.id.clone(),
            control_id: w.spec.control.clone().unwrap_or_default(),
            requirement: w.spec.requirement.clone().unwrap_or_default(),
            scope: serde_json::to_string(&w.spec.scope).unwrap_or_default(),
            justification: w.spec.justification.clone(),
            approver: w.spec.approver.clone(),
            risk: w.spec.risk.as_str().into(),
            ticket: w.spec.ticket.clone(),
            starts_at: w.spec.starts.map_or(0, |s| secs(&s)),
            expires_at: secs(&w.spec.expires),
            revoked_at: w.revoked_at.map_or(0, |r| secs(&r)),
            revoked_by: w.revoked_by.clone(),
            created_by: w.created_by.clone(),
            source: w.source.clone(),
            updated_at: secs(&now),
            // Microseconds: a revocation right after creation still wins.
            version: now.timestamp_micros().max(0) as u64,
        }
    }

    /// The waiver; `None` (with an error log) when its scope is unreadable.
    pub fn into_waiver(self) -> Option<Waiver> {
        let scope: Scope = match serde_json::from_str(&self.scope) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(waiver = %self.waiver_id, error = %e, "stored waiver has an unreadable scope; ignored");
                return None;
            }
        };
        let risk: Severity = serde_json::from_value(serde_json::Value::String(self.risk.clone())).unwrap_or(Severity::High);
        Some(Waiver {
            spec: WaiverSpec {
                id: self.waiver_id,
                control: Some(self.control_id).filter(|c| !c.is_empty()),
                requirement: Some(self.requirement).filter(|c| !c.is_empty()),
                scope,
                justification: self.justification,
                approver: self.approver,
                risk,
                ticket: self.ticket,
                starts: (self.starts_at > 0).then(|| time(self.starts_at)),
                expires: time(self.expires_at),
            },
            source: self.source,
            created_by: self.created_by,
            revoked_at: (self.revoked_at > 0).then(|| time(self.revoked_at)),
            revoked_by: self.revoked_by,
        })
    }
}

/// The Merkle root of a chain's hour.
#[derive(Debug, Row, Serialize, Deserialize)]
pub struct RootRow {
    pub chain_id: String,
    pub hour: u32,
    pub root: String,
    pub first_seq: u64,
    pub last_seq: u64,
    pub links: u32,
}

impl RootRow {
    pub fn into_stored(self) -> crate::evidence::verify::StoredRoot {
        crate::evidence::verify::StoredRoot {
            chain_id: self.chain_id,
            hour: time(self.hour),
            root: self.root,
            first_seq: self.first_seq,
            last_seq: self.last_seq,
        }
    }
}

/// A root as written (with when it was computed).
#[derive(Debug, Row, Serialize, Deserialize)]
pub struct RootWriteRow {
    pub chain_id: String,
    pub hour: u32,
    pub root: String,
    pub first_seq: u64,
    pub last_seq: u64,
    pub links: u32,
    pub computed_at: u32,
}

impl RootWriteRow {
    pub fn new(chain_id: &str, hour: DateTime<Utc>, root: String, seqs: (u64, u64), links: u32, now: DateTime<Utc>) -> Self {
        RootWriteRow {
            chain_id: chain_id.into(),
            hour: secs(&hour),
            root,
            first_seq: seqs.0,
            last_seq: seqs.1,
            links,
            computed_at: secs(&now),
        }
    }
}
