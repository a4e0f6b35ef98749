//! Rows of the collector's own state (the notification log, silences, the
//! API's write audit, waivers, evidence roots). The rooms that own those
//! things build these rows and read them back (`Sent::row`,
//! `Silence::from_row`, `Waiver::row`, …); ClickHouse keeps them as
//! columns, SQLite as JSON documents.

use ::clickhouse::Row;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{secs, time};

/// A delivered notification.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct NotificationRow {
    pub receiver: String,
    pub group_key: String,
    pub sent_at: u32,
    pub status: String,
    pub escalation: u8,
    pub firing: Vec<String>,
    pub alerts: String,
}

/// A silence as read (the latest version).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct SilenceRow {
    pub silence_id: String,
    pub matchers: Vec<String>,
    pub starts_at: u32,
    pub ends_at: u32,
    pub created_by: String,
    pub comment: String,
}

/// A version of a silence, as written.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
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

/// A write through the API: who, what, when, outcome.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
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

/// The Merkle root of a chain's hour.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct RootRow {
    pub chain_id: String,
    pub hour: u32,
    pub root: String,
    pub first_seq: u64,
    pub last_seq: u64,
    pub links: u32,
}

impl RootRow {
    pub fn into_stored(self) -> super::evidence::StoredRoot {
        super::evidence::StoredRoot {
            chain_id: self.chain_id,
            hour: time(self.hour),
            root: self.root,
            first_seq: self.first_seq,
            last_seq: self.last_seq,
        }
    }
}

/// A root as written (with when it was computed).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
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
