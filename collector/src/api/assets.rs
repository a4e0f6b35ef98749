//! `/api/v1/assets`: every asset with its last snapshot and heartbeat, the
//! age of its evidence, whether it went silent, and its results by status.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{label_filter, unavailable, ApiError, AppState};
use crate::eval::Status;
use crate::store::views::AssetInfo;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetsQuery {
    /// `key=value`.
    pub label: Option<String>,
    pub kind: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Asset {
    #[serde(flatten)]
    pub info: AssetInfo,
    /// Seconds since the last snapshot or heartbeat, whichever is later.
    pub evidence_age_secs: i64,
    /// No snapshot or heartbeat for `evaluation.unknown_after_secs`.
    pub silent: bool,
    pub results: BTreeMap<Status, usize>,
}

pub async fn list(State(s): State<AppState>, Query(q): Query<AssetsQuery>) -> Result<Json<Vec<Asset>>, ApiError> {
    let matches = label_filter(q.label.as_deref())?;
    let assets = s.store.assets().await.map_err(unavailable)?;
    let results = s.store.current_results().await.map_err(unavailable)?;
    let mut counts: BTreeMap<&str, BTreeMap<Status, usize>> = BTreeMap::new();
    for r in &results {
        *counts.entry(r.asset_id.as_str()).or_default().entry(r.status).or_default() += 1;
    }
    let now = Utc::now();
    let out = assets
        .into_iter()
        .filter(|a| matches(&a.labels) && q.kind.as_ref().is_none_or(|k| &a.kind == k))
        .map(|info| {
            let seen: DateTime<Utc> = info.last_heartbeat_at.map_or(info.last_received_at, |h| h.max(info.last_received_at));
            let age = (now - seen).num_seconds().max(0);
            Asset {
                silent: s.unknown_after_secs > 0 && age > s.unknown_after_secs as i64,
                results: counts.get(info.asset_id.as_str()).cloned().unwrap_or_default(),
                evidence_age_secs: age,
                info,
            }
        })
        .collect();
    Ok(Json(out))
}
