//! `/api/v1/posture` (scores per framework and scope, now or at a past
//! instant, with and without waivers) and `/api/v1/results` (each
//! control's result per asset, with the age of the evidence behind it).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use crate::eval::Status;
use crate::score::{self, GroupBy, WaiversAt};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostureQuery {
    pub framework: Option<String>,
    /// `fleet` (default), `asset` or `label:KEY`.
    pub by: Option<String>,
    /// A past instant (RFC 3339).
    pub at: Option<DateTime<Utc>>,
}

async fn results(s: &AppState, at: Option<DateTime<Utc>>) -> Result<Vec<score::Result>, ApiError> {
    let r = match at {
        Some(at) => s.store.results_at(at).await,
        None => s.store.current_results().await,
    };
    r.map_err(super::unavailable)
}

pub async fn posture(State(s): State<AppState>, Query(q): Query<PostureQuery>) -> Result<Json<Vec<score::Score>>, ApiError> {
    let by: GroupBy =
        q.by.as_deref().unwrap_or("fleet").parse().map_err(|e: String| ApiError(StatusCode::BAD_REQUEST, format!("by: {e}")))?;
    let results = results(&s, q.at).await?;
    let (policies, waivers) = (s.policies.borrow().clone(), s.waivers.borrow().clone());
    let w = WaiversAt { waivers: &waivers, at: q.at.unwrap_or_else(Utc::now) };
    Ok(Json(score::scores(&policies, &results, q.framework.as_deref(), &by, w)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultsQuery {
    pub asset: Option<String>,
    pub control: Option<String>,
    pub framework: Option<String>,
    pub status: Option<String>,
    pub at: Option<DateTime<Utc>>,
}

/// One result.
#[derive(Debug, Serialize)]
pub struct Row {
    pub asset_id: String,
    pub control_id: String,
    pub status: Status,
    /// Since when it has had this status.
    pub since: DateTime<Utc>,
    /// When the snapshot behind it was collected, and how old that is.
    pub evidence_at: Option<DateTime<Utc>>,
    pub evidence_age_secs: Option<i64>,
    pub labels: std::sync::Arc<std::collections::BTreeMap<String, String>>,
}

pub async fn results_list(State(s): State<AppState>, Query(q): Query<ResultsQuery>) -> Result<Json<Vec<Row>>, ApiError> {
    let status = match &q.status {
        Some(x) => Some(Status::parse(x).ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, format!("status: {x:?} is not a status")))?),
        None => None,
    };
    let now = q.at.unwrap_or_else(Utc::now);
    let policies = s.policies.borrow().clone();
    let rows = results(&s, q.at)
        .await?
        .into_iter()
        .filter(|r| q.asset.as_ref().is_none_or(|a| &r.asset_id == a))
        .filter(|r| q.control.as_ref().is_none_or(|c| &r.control_id == c))
        .filter(|r| status.is_none_or(|st| r.status == st))
        .filter(|r| {
            q.framework.as_ref().is_none_or(|f| policies.get(&r.control_id).is_some_and(|(_, c)| c.control.frameworks.contains_key(f)))
        })
        .map(|r| Row {
            evidence_age_secs: r.evidence_at.map(|e| (now - e).num_seconds().max(0)),
            asset_id: r.asset_id,
            control_id: r.control_id,
            status: r.status,
            since: r.since,
            evidence_at: r.evidence_at,
            labels: r.labels,
        })
        .collect();
    Ok(Json(rows))
}
