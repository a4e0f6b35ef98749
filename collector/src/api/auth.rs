//! API keys: hashed in the configuration, with scopes and a rate limit per
//! key. A request carries its key as `Authorization: Bearer <key>` or
//! `X-API-Key: <key>`; the key's name is who acted, for the audit table.

use std::collections::HashMap;
use std::num::NonZeroU32;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{ApiError, AppState};

/// What a key may do; each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
    Admin,
}

/// One API key, as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Who holds it (recorded with every write).
    pub name: String,
    /// Hex SHA-256 of the key (`printf %s "$KEY" | sha256sum`); the key
    /// itself is never stored.
    pub sha256: String,
    pub scope: Scope,
}

impl KeyConfig {
    pub fn validate(&self, at: &str) -> Vec<String> {
        let mut e = Vec::new();
        if self.name.trim().is_empty() {
            e.push(format!("{at}.name: must not be empty"));
        }
        if self.sha256.len() != 64 || !self.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            e.push(format!("{at}.sha256: must be the 64 hex digits of the key's SHA-256, not the key"));
        }
        e
    }
}

/// The caller, once authenticated.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub scope: Scope,
}

/// Keys by hash, the per-key limiter, and the per-client-address one.
pub struct Auth {
    keys: HashMap<String, Caller>,
    limiter: DefaultKeyedRateLimiter<String>,
    clients: DefaultKeyedRateLimiter<std::net::IpAddr>,
}

/// Hex SHA-256 of a key.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl Auth {
    pub fn new(keys: &[KeyConfig], per_minute: u32, per_client_per_minute: u32) -> Self {
        let keys = keys.iter().map(|k| (k.sha256.to_ascii_lowercase(), Caller { name: k.name.clone(), scope: k.scope })).collect();
        let quota = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        Auth { keys, limiter: RateLimiter::keyed(quota(per_minute)), clients: RateLimiter::keyed(quota(per_client_per_minute)) }
    }

    fn caller(&self, headers: &HeaderMap) -> Option<Caller> {
        let key = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .or_else(|| headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")))?;
        self.keys.get(&hash(key.trim())).cloned()
    }
}

/// The scope a request needs: reads need `read`; approving a waiver (it
/// exempts assets from controls) or deciding on an agent's key (whose
/// word an asset's records are) `admin`; anything else `write`.
fn needed(method: &Method, path: &str) -> Scope {
    let path = path.trim_end_matches('/');
    if method == Method::GET || method == Method::HEAD {
        Scope::Read
    } else if method == Method::POST && (path.ends_with("/waivers") || path.contains("/keys/")) {
        Scope::Admin
    } else {
        Scope::Write
    }
}

/// Reads that are themselves audit-relevant: who looked at the evidence,
/// took a report or downloaded an attested evidence file is recorded like
/// a write.
fn audited_read(path: &str) -> bool {
    let p = path.trim_end_matches('/');
    p.ends_with("/evidence") || p.ends_with("/reports") || p.contains("/attestations/files/")
}

/// A 429 with `Retry-After` for a limiter that said "not until".
fn too_many(not_until: governor::NotUntil<governor::clock::QuantaInstant>, what: String) -> Response {
    let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
    let mut r = ApiError(StatusCode::TOO_MANY_REQUESTS, what).into_response();
    if let Ok(v) = (wait.as_secs() + 1).to_string().parse() {
        r.headers_mut().insert("retry-after", v);
    }
    r
}

/// Rate-limits every request by its client's address, before anything
/// else looks at it (a client guessing keys gets 429s, not 401s, past its
/// share). Requests without a known peer (in-process tests) pass.
pub async fn per_client(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(axum::extract::ConnectInfo(peer)) = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>() {
        if let Err(not_until) = state.auth.clients.check_key(&peer.ip()) {
            crate::metrics::METRICS.api_rate_limited.inc();
            return too_many(not_until, format!("rate limit of client {} exceeded", peer.ip()));
        }
    }
    next.run(req).await
}

/// Authenticates, authorises and rate-limits every `/api/v1` request, and
/// records writes in the audit table.
pub async fn middleware(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(caller) = state.auth.caller(req.headers()) else {
        return ApiError(StatusCode::UNAUTHORIZED, "a valid API key is required (Authorization: Bearer <key> or X-API-Key)".into())
            .into_response();
    };
    if let Err(not_until) = state.auth.limiter.check_key(&caller.name) {
        crate::metrics::METRICS.api_rate_limited.inc();
        return too_many(not_until, format!("rate limit of key {:?} exceeded", caller.name));
    }
    // The full path (`/api/v1/…`), not the one inside the nested router.
    let path = req.extensions().get::<axum::extract::OriginalUri>().map_or_else(|| req.uri().path(), |u| u.0.path()).to_string();
    let need = needed(req.method(), &path);
    if caller.scope < need {
        return ApiError(StatusCode::FORBIDDEN, format!("key {:?} has scope {:?}; this needs {:?}", caller.name, caller.scope, need))
            .into_response();
    }
    let query = req.uri().query().map(str::to_string);
    let method = req.method().clone();
    req.extensions_mut().insert(caller.clone());
    let mut resp = next.run(req).await;
    // Handlers describe a write in this header; it is for the audit table,
    // not the client.
    let detail = resp.headers_mut().remove("x-driftwatch-audit").and_then(|v| v.to_str().ok().map(String::from)).unwrap_or_default();
    let detail = match query.filter(|_| detail.is_empty() && audited_read(&path)) {
        Some(q) => format!("read {q}"),
        None => detail,
    };
    if need >= Scope::Write || audited_read(&path) {
        if let Err(e) = state.store.record_api_write(&caller.name, method.as_str(), &path, resp.status().as_u16(), &detail).await {
            tracing::error!(error = %e, key = %caller.name, %path, "recording an API write in the audit table failed");
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_matched_by_hash_from_either_header() {
        let k = KeyConfig { name: "ops".into(), sha256: hash("s3cret"), scope: Scope::Write };
        assert!(k.validate("k").is_empty());
        let a = Auth::new(&[k], 60, 60);
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer s3cret".parse().unwrap());
        assert_eq!(a.caller(&h).map(|c| c.name), Some("ops".into()));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", "s3cret".parse().unwrap());
        assert!(a.caller(&h).is_some());
        h.insert("x-api-key", "wrong".parse().unwrap());
        assert!(a.caller(&h).is_none());
        assert!(Scope::Admin > Scope::Write && Scope::Write > Scope::Read);
        let bad = KeyConfig { name: "x".into(), sha256: "s3cret".into(), scope: Scope::Read };
        assert!(bad.validate("api.keys[0]")[0].starts_with("api.keys[0].sha256"));
    }
}
