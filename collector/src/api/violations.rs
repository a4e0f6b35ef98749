//! `/api/v1/violations`: filtered by framework, severity, status, asset and
//! label, newest first, paged (`limit`, `offset`; `total` says how many
//! match).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{label_filter, unavailable, ApiError, AppState};
use crate::store::views::Violation;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViolationsQuery {
    pub framework: Option<String>,
    pub severity: Option<String>,
    /// `open` or `resolved`.
    pub status: Option<String>,
    pub asset: Option<String>,
    /// `key=value`.
    pub label: Option<String>,
    /// Default 50, at most 1000.
    pub limit: Option<usize>,
    pub offset: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct Page {
    pub total: usize,
    pub limit: usize,
    pub offset: usize,
    pub items: Vec<Violation>,
}

pub async fn list(State(s): State<AppState>, Query(q): Query<ViolationsQuery>) -> Result<Json<Page>, ApiError> {
    if let Some(st) = &q.status {
        if st != "open" && st != "resolved" {
            return Err(ApiError(StatusCode::BAD_REQUEST, format!("status: {st:?} is neither open nor resolved")));
        }
    }
    let matches = label_filter(q.label.as_deref())?;
    let all = s.store.violations().await.map_err(unavailable)?;
    let selected: Vec<Violation> = all
        .into_iter()
        .filter(|v| q.framework.as_ref().is_none_or(|f| v.frameworks.iter().any(|x| x.split(':').next() == Some(f.as_str()))))
        .filter(|v| q.severity.as_ref().is_none_or(|sv| &v.severity == sv))
        .filter(|v| q.status.as_ref().is_none_or(|st| &v.status == st))
        .filter(|v| q.asset.as_ref().is_none_or(|a| &v.asset_id == a))
        .filter(|v| matches(&v.labels))
        .collect();
    let (limit, offset) = (q.limit.unwrap_or(50).clamp(1, 1000), q.offset.unwrap_or(0));
    let total = selected.len();
    let items = selected.into_iter().skip(offset).take(limit).collect();
    Ok(Json(Page { total, limit, offset, items }))
}
