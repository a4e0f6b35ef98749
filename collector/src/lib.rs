//! # driftwatch-collector
//!
//! The data path, one room per step: [`ingest`] (Kafka consumer, decode,
//! [`identity`] of the sender, dead letters) → [`eval`] (facts, controls,
//! posture, violations, drift) → [`store`] (ClickHouse or SQLite; rows in,
//! rows out) and [`alert`] → [`receivers`] (Slack, PagerDuty, webhooks).
//! [`policy`] loads and compiles the controls [`eval`] runs; [`tasks`] are
//! the loops beside the path (alerting, waivers, SLOs, scores, silent
//! assets, evidence roots, retention). The layers these rooms keep are
//! declared in ARCHITECTURE.md and held by `tests/layers.rs`.

pub mod alert;
pub mod api;
pub mod assets;
pub mod attest;
pub mod config;
pub mod eval;
pub mod evidence;
pub mod identity;
pub mod ingest;
pub mod live;
pub mod metrics;
pub mod policy;
pub mod receivers;
pub mod report;
pub mod score;
pub mod slo;
pub mod store;
pub mod tasks;
pub mod waiver;
