//! Shipping: encode messages, spool them on disk, produce them to Kafka
//! ([`producer`] runs both halves; [`spool`] is the disk queue between them;
//! [`local`] reads the spool for a collector in the same process instead;
//! [`identity`] is the agent's key pair, which signs every record produced).

pub mod config;
pub mod identity;
pub mod local;
pub mod producer;
pub mod registry;
pub mod spool;
