//! The collector's HTTP API (axum): health, readiness, Prometheus metrics
//! (`/metrics`, unauthenticated like `/healthz`), and the resources of
//! `/api/v1/` (described by `openapi.json`, served at
//! `/api/v1/openapi.json`): posture and results (`posture.rs`), frameworks
//! and controls (`catalog.rs`), assets, violations, gaps, effectiveness,
//! evidence, reports and SLOs (`compliance.rs`), silences, waivers,
//! attestations with their evidence files (`attestations.rs`), agents'
//! keys (`keys.rs`), drift
//! (recent and live); and the live drift view's page at `/ui`.
//! Authentication by API key
//! (`Authorization: Bearer <key>` or `X-API-Key: <key>`), keys stored only
//! as SHA-256 hashes in the configuration, with scopes (`read` < `write` <
//! `admin`); a rate limit per key; every write recorded in `api_audit`.

mod assets;
mod attestations;
pub mod auth;
mod catalog;
mod compliance;
mod gaps;
mod keys;
mod live;
mod posture;
pub mod serve;
mod silences;
mod violations;
mod waivers;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::Router;
use serde::Deserialize;
use tokio::sync::watch;

use crate::policy::PolicySet;
use crate::store::prelude::*;
use crate::waiver::Waivers;

/// The `api` section of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address to listen on; `null` turns the API off.
    pub listen: Option<String>,
    pub keys: Vec<auth::KeyConfig>,
    /// Requests per minute per key.
    pub rate_limit_per_minute: u32,
    /// Requests per minute per client address, counted before any
    /// authentication (a client guessing keys, or flooding `/ui`).
    pub rate_limit_per_client_per_minute: u32,
    /// Connections open at once; one more is closed as it is accepted.
    pub max_connections: usize,
    /// A connection that has not sent a request's headers (or finished
    /// its TLS handshake) within this time is closed.
    pub header_read_timeout_secs: u64,
    /// Serve HTTPS (rustls) with this certificate and key; unset: HTTP.
    pub tls: Option<TlsConfig>,
}

/// The API's certificate (chain) and private key, PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: Some("127.0.0.1:8080".into()),
            keys: Vec::new(),
            rate_limit_per_minute: 600,
            rate_limit_per_client_per_minute: 1200,
            max_connections: 1024,
            header_read_timeout_secs: 10,
            tls: None,
        }
    }
}

impl ApiConfig {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if let Some(l) = &self.listen {
            if l.parse::<SocketAddr>().is_err() {
                problems.push(format!("api.listen: {l:?} is not an address such as 127.0.0.1:8080"));
            }
        }
        for (i, k) in self.keys.iter().enumerate() {
            problems.extend(k.validate(&format!("api.keys[{i}]")));
        }
        for (field, v) in [
            ("rate_limit_per_minute", u64::from(self.rate_limit_per_minute)),
            ("rate_limit_per_client_per_minute", u64::from(self.rate_limit_per_client_per_minute)),
            ("max_connections", self.max_connections as u64),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
        ] {
            if v == 0 {
                problems.push(format!("api.{field}: must be at least 1"));
            }
        }
        if let Some(tls) = &self.tls {
            for (field, path) in [("cert", &tls.cert), ("key", &tls.key)] {
                if let Err(e) = std::fs::metadata(path) {
                    problems.push(format!("api.tls.{field}: {}: {e}", path.display()));
                }
            }
        }
    }
}

/// What the API reads besides its configuration: the store, and the
/// policies and waivers in force.
#[derive(Clone)]
pub struct Shared {
    pub store: SharedStore,
    pub policies: watch::Receiver<Arc<PolicySet>>,
    pub waivers: watch::Receiver<Arc<Waivers>>,
    /// Publishes a waiver change to the engine at once.
    pub publish_waivers: Option<Arc<watch::Sender<Arc<Waivers>>>>,
    /// Drift events as they are stored, for the live view.
    pub hub: crate::live::Hub,
    pub slo: crate::slo::conditions::SloSettings,
    /// `evaluation.unknown_after_secs`: when an asset counts as silent.
    pub unknown_after_secs: u64,
    /// The bounds on attestations' evidence files.
    pub attestations: crate::attest::Limits,
}

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: SharedStore,
    pub auth: Arc<auth::Auth>,
    pub policies: watch::Receiver<Arc<PolicySet>>,
    pub waivers: watch::Receiver<Arc<Waivers>>,
    pub publish_waivers: Option<Arc<watch::Sender<Arc<Waivers>>>>,
    pub hub: crate::live::Hub,
    pub slo: crate::slo::conditions::SloSettings,
    pub unknown_after_secs: u64,
    pub attestations: crate::attest::Limits,
}

impl AppState {
    pub fn new(shared: Shared, auth: auth::Auth) -> Self {
        AppState {
            store: shared.store,
            auth: Arc::new(auth),
            policies: shared.policies,
            waivers: shared.waivers,
            publish_waivers: shared.publish_waivers,
            hub: shared.hub,
            slo: shared.slo,
            unknown_after_secs: shared.unknown_after_secs,
            attestations: shared.attestations,
        }
    }
}

/// The router (separate from serving, for tests).
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/silences", get(silences::list).post(silences::create))
        .route("/silences/{id}", delete(silences::expire))
        .route("/waivers", get(waivers::list).post(waivers::create))
        .route("/waivers/{id}", delete(waivers::revoke))
        .route(
            "/attestations",
            get(attestations::list)
                .post(attestations::create)
                .layer(axum::extract::DefaultBodyLimit::max(state.attestations.max_body_bytes())),
        )
        .route("/attestations/files/{sha256}", get(attestations::file))
        .route("/keys", get(keys::list))
        .route("/keys/approve", post(keys::approve))
        .route("/keys/revoke", post(keys::revoke))
        .route("/posture", get(posture::posture))
        .route("/results", get(posture::results_list))
        .route("/drift", get(live::recent))
        .route("/live", get(live::stream))
        .route("/frameworks", get(catalog::frameworks))
        .route("/controls", get(catalog::controls))
        .route("/controls/{id}", get(catalog::control))
        .route("/assets", get(assets::list))
        .route("/violations", get(violations::list))
        .route("/gaps", get(compliance::gaps))
        .route("/gaps/{id}/tracking", post(gaps::change))
        .route("/gaps/{id}/history", get(gaps::history))
        .route("/effectiveness", get(compliance::effectiveness))
        .route("/evidence", get(compliance::evidence))
        .route("/reports", get(compliance::report))
        .route("/policyreports", get(compliance::policyreports))
        .route("/slos", get(compliance::slos))
        .route("/openapi.json", get(|| async { ([("content-type", "application/json")], OPENAPI) }))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::middleware));
    Router::new()
        .route("/", get(|| async { axum::response::Redirect::to("/ui") }))
        .route("/ui", get(live::page))
        .route("/assets/{id}", get(|p| live::page_of("asset", p)))
        .route("/controls/{id}", get(|p| live::page_of("control", p)))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(|| async { ([("content-type", "text/plain; version=0.0.4")], crate::metrics::render()) }))
        .nest("/api/v1", v1)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::per_client))
        .with_state(state)
}

/// Ready when the store answers. The store's own error is logged, not
/// served: it names hosts, databases and users to anyone who asks.
async fn ready(axum::extract::State(s): axum::extract::State<AppState>) -> impl IntoResponse {
    match s.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
        }
    }
}

/// Binds the API's address (a failure stops the collector at start) and
/// returns the task that serves it; `None` when the API is off.
pub async fn start(cfg: &ApiConfig, shared: Shared) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(listen) = &cfg.listen else { return Ok(None) };
    if cfg.keys.is_empty() {
        tracing::warn!("api.keys is empty: /api/v1 answers 401 to every request");
    }
    let state = AppState::new(shared, auth::Auth::new(&cfg.keys, cfg.rate_limit_per_minute, cfg.rate_limit_per_client_per_minute));
    let tls = match &cfg.tls {
        Some(t) => Some(Arc::new(serve::tls_config(&t.cert, &t.key)?)),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("api.listen {listen}: {e}"))?;
    match &cfg.tls {
        Some(t) => tracing::info!(%listen, cert = %t.cert.display(), "API listening (HTTPS)"),
        None => tracing::info!(%listen, "API listening (HTTP)"),
    }
    let bounds = serve::Bounds {
        max_connections: cfg.max_connections,
        header_read_timeout: std::time::Duration::from_secs(cfg.header_read_timeout_secs),
    };
    Ok(Some(tokio::spawn(serve::serve(listener, router(state), tls, bounds))))
}

/// The OpenAPI document of `/api/v1`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Every route of `/api/v1` (method, path as in the OpenAPI document).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/posture"),
    ("get", "/results"),
    ("get", "/frameworks"),
    ("get", "/controls"),
    ("get", "/controls/{id}"),
    ("get", "/assets"),
    ("get", "/violations"),
    ("get", "/gaps"),
    ("post", "/gaps/{id}/tracking"),
    ("get", "/gaps/{id}/history"),
    ("get", "/effectiveness"),
    ("get", "/evidence"),
    ("get", "/reports"),
    ("get", "/policyreports"),
    ("get", "/slos"),
    ("get", "/drift"),
    ("get", "/live"),
    ("get", "/silences"),
    ("post", "/silences"),
    ("delete", "/silences/{id}"),
    ("get", "/waivers"),
    ("post", "/waivers"),
    ("delete", "/waivers/{id}"),
    ("get", "/attestations"),
    ("post", "/attestations"),
    ("get", "/attestations/files/{sha256}"),
    ("get", "/keys"),
    ("post", "/keys/approve"),
    ("post", "/keys/revoke"),
    ("get", "/openapi.json"),
];

/// A store error as an answer.
pub fn unavailable(e: crate::store::StoreError) -> ApiError {
    ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// A `key=value` label filter (none: everything matches).
pub fn label_filter(label: Option<&str>) -> Result<impl Fn(&std::collections::BTreeMap<String, String>) -> bool, ApiError> {
    let kv = match label {
        None => None,
        Some(l) => match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => Some((k.to_string(), v.to_string())),
            _ => return Err(ApiError(StatusCode::BAD_REQUEST, format!("label: {l:?} is not key=value"))),
        },
    };
    Ok(move |labels: &std::collections::BTreeMap<String, String>| kv.as_ref().is_none_or(|(k, v)| labels.get(k) == Some(v)))
}

/// An error answer: status and a JSON `{"error": …}` body.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        (self.0, axum::Json(serde_json::json!({"error": self.1}))).into_response()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_openapi_document_names_every_route_and_only_those() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).expect("openapi.json parses");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                documented.push((method.clone(), path.clone()));
            }
        }
        documented.sort();
        let mut routes: Vec<(String, String)> = super::ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
        routes.sort();
        assert_eq!(documented, routes);
    }
}
