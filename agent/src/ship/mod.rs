//! Shipping: encode messages, spool them on disk, produce them to Kafka
//! ([`producer`] runs both halves; [`spool`] is the disk queue between them).

pub mod producer;
pub mod spool;
