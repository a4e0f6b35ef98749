//! The live drift view: the page (`/ui`, unauthenticated: it holds no
//! data), recent drift events (`/api/v1/drift`), and the stream of new
//! ones as server-sent events (`/api/v1/live`: `event: drift` with the
//! event as JSON; `event: lagged` with how many a slow page missed).

use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use axum::Json;
use futures_util::stream::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::{ApiError, AppState};
use crate::live::{DriftView, PAGE};

pub async fn page() -> impl IntoResponse {
    (
        [
            ("cache-control", "no-cache"),
            ("content-security-policy", crate::live::content_security_policy()),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
        ],
        Html(PAGE),
    )
}

/// `/assets/{id}` and `/controls/{id}`, the links notifications carry:
/// a redirect to the page's view of it (`/ui#/asset/<id>`; the part after
/// `#` stays in the browser, so the page's key is asked for there, not
/// here). The id is encoded again, so it stays one segment of the view's
/// address whatever a host named itself.
pub async fn page_of(view: &'static str, axum::extract::Path(id): axum::extract::Path<String>) -> impl IntoResponse {
    let to = format!("/ui#/{view}/{}", crate::alert::notification::percent_encode(&id));
    ([("cache-control", "no-cache"), ("referrer-policy", "no-referrer")], axum::response::Redirect::to(&to))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftQuery {
    pub asset: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<u32>,
}

pub async fn recent(State(s): State<AppState>, Query(q): Query<DriftQuery>) -> Result<Json<Vec<DriftView>>, ApiError> {
    let unavailable = |e: crate::store::StoreError| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    let rows = s.store.recent_drifts(q.asset.as_deref(), q.limit.unwrap_or(100).min(1000)).await.map_err(unavailable)?;
    let labels = s.store.asset_labels().await.map_err(unavailable)?;
    Ok(Json(
        rows.into_iter()
            .map(|r| {
                let l = labels.get(&r.asset_id).cloned().unwrap_or_default();
                DriftView::from_row(r, l)
            })
            .collect(),
    ))
}

pub async fn stream(State(s): State<AppState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = s.hub.subscribe();
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(d) => Event::default().event("drift").json_data(&d).unwrap_or_else(|_| Event::default().comment("unencodable event")),
            Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
