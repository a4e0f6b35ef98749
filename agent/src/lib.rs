//! # driftwatch-agent
//!
//! The data path on a host, one room per step: sources ([`facts`] via
//! [`snapshot`] and [`watch`], [`audit`], [`probes`]) → an in-process
//! channel of [`driftwatch_schemas::Message`]s → [`ship`] (encode, Kafka).
//! Every host path is read through [`root::HostRoot`].

pub mod audit;
pub mod cluster;
pub mod config;
pub mod facts;
pub mod memory;
pub mod probes;
pub mod redact;
pub mod root;
pub mod run;
pub mod ship;
pub mod snapshot;
pub mod watch;
