//! Shipping: encode messages and produce them to Kafka.

pub mod producer;
