//! The retention task: once a day, on the leader, the months of the
//! store's tables entirely past their retention are dropped
//! ([`crate::store::retention`]).

use std::time::Duration;

use chrono::Utc;

use super::{Leader, OnLeader};
use crate::store::prelude::*;
use crate::store::retention::RetentionConfig;

/// Runs once a day while this collector runs fleet-wide work, the first
/// time a minute after the start (the consumer group picks its leader).
pub async fn run(store: SharedStore, cfg: RetentionConfig, leader: Leader) {
    let mut passes = OnLeader::new(Duration::from_secs(24 * 3600), Duration::from_secs(60), leader);
    loop {
        passes.next().await;
        let result = async {
            let expired = store.retention_plan(&cfg, Utc::now()).await?;
            store.drop_partitions(&expired).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "retention failed; trying again tomorrow");
        }
    }
}
