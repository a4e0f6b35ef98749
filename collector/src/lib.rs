//! # driftwatch-collector
//!
//! The data path, one room per step:
//! [`ingest`] (Kafka consumer, decode, [`identity`] of the sender, dead
//! letters) → [`eval`] (facts,
//! controls, posture, violations) → [`store`] (ClickHouse) and [`alert`]
//! (webhooks). [`policy`] loads and compiles the controls that [`eval`] runs.

pub mod alert;
pub mod api;
pub mod assets;
pub mod config;
pub mod eval;
pub mod evidence;
pub mod identity;
pub mod ingest;
pub mod live;
pub mod metrics;
pub mod policy;
pub mod report;
pub mod score;
pub mod slo;
pub mod store;
pub mod waiver;
