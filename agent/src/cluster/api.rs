//! A small read-only Kubernetes API client: paginated lists and watch
//! streams over HTTPS (rustls, the cluster's CA, the service account's
//! bearer token, re-read before each request because it is rotated).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// Why a call to the API server failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("GET {path}: HTTP {status}: {message}")]
    Status { path: String, status: u16, message: String },
    #[error("GET {path}: {source}")]
    Http { path: String, source: reqwest::Error },
    #[error("GET {path}: {message}")]
    Decode { path: String, message: String },
    #[error("{path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error("GET {path}: the resource version is too old (410 Gone); listing again")]
    Gone { path: String },
}

/// One change seen on a watch stream.
#[derive(Debug)]
pub enum WatchEvent {
    /// ADDED or MODIFIED: the object as it is now.
    Upsert(Value),
    Deleted(Value),
}

/// The client of one API server.
pub struct Api {
    http: reqwest::Client,
    base: String,
    token_file: Option<PathBuf>,
}

/// What a list returns: the objects and the version to watch from.
pub struct Listed {
    pub items: Vec<Value>,
    pub resource_version: String,
}

impl Api {
    /// `base` is the API server's URL; `ca_file` the PEM of the CA that
    /// signed its certificate (in a pod: the service account's `ca.crt`).
    pub fn new(base: &str, ca_file: Option<&Path>, token_file: Option<PathBuf>) -> Result<Api, ApiError> {
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).https_only(base.starts_with("https://"));
        if let Some(ca) = ca_file {
            let pem = std::fs::read(ca).map_err(|source| ApiError::File { path: ca.to_path_buf(), source })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ApiError::Decode { path: ca.display().to_string(), message: format!("not a PEM bundle: {e}") })?;
            // The cluster's own CA only: no public roots for a private API.
            builder = builder.tls_built_in_root_certs(false);
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder.build().map_err(|source| ApiError::Http { path: base.to_string(), source })?;
        Ok(Api { http, base: base.trim_end_matches('/').to_string(), token_file })
    }

    fn get(&self, path: &str, accept: &str, timeout: Duration) -> Result<reqwest::RequestBuilder, ApiError> {
        let mut req = self.http.get(format!("{}{path}", self.base)).header("Accept", accept).timeout(timeout);
        if let Some(f) = &self.token_file {
            let token = std::fs::read_to_string(f).map_err(|source| ApiError::File { path: f.clone(), source })?;
            req = req.bearer_auth(token.trim());
        }
        Ok(req)
    }

    async fn send(&self, path: &str, accept: &str, timeout: Duration) -> Result<reqwest::Response, ApiError> {
        let resp = self.get(path, accept, timeout)?.send().await.map_err(|source| ApiError::Http { path: path.to_string(), source })?;
        let status = resp.status().as_u16();
        if status == 410 {
            return Err(ApiError::Gone { path: path.to_string() });
        }
        if !resp.status().is_success() {
            // A Status object's message says why (forbidden, not found).
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let message = body["message"].as_str().unwrap_or("no message").to_string();
            return Err(ApiError::Status { path: path.to_string(), status, message });
        }
        Ok(resp)
    }

    /// Lists every object at `path`, `page` at a time (`limit` and
    /// `continue`), as `accept` (e.g. metadata only).
    pub async fn list(&self, path: &str, accept: &str, page: u32) -> Result<Listed, ApiError> {
        let mut items = Vec::new();
        let mut cont = String::new();
        loop {
            let mut url = format!("{path}?limit={page}");
            if !cont.is_empty() {
                url.push_str(&format!("&continue={}", urlencode(&cont)));
            }
            let body: Value = self
                .send(&url, accept, Duration::from_secs(60))
                .await?
                .json()
                .await
                .map_err(|e| ApiError::Decode { path: url.clone(), message: e.to_string() })?;
            match body["items"].as_array() {
                Some(page_items) => items.extend(page_items.iter().cloned()),
                None if body["items"].is_null() => {}
                None => return Err(ApiError::Decode { path: url, message: "items is not a list".into() }),
            }
            let meta = &body["metadata"];
            cont = meta["continue"].as_str().unwrap_or_default().to_string();
            if cont.is_empty() {
                let resource_version = meta["resourceVersion"].as_str().unwrap_or_default().to_string();
                return Ok(Listed { items, resource_version });
            }
        }
    }

    /// Starts watching `path` from `resource_version`; the server ends the
    /// stream after `timeout_secs`.
    pub async fn watch(&self, path: &str, accept: &str, resource_version: &str, timeout_secs: u64) -> Result<Watch, ApiError> {
        let url = format!(
            "{path}?watch=1&allowWatchBookmarks=true&resourceVersion={}&timeoutSeconds={timeout_secs}",
            urlencode(resource_version)
        );
        let resp = self.send(&url, accept, Duration::from_secs(timeout_secs + 30)).await?;
        Ok(Watch { resp, url, buf: Vec::new(), last: resource_version.to_string() })
    }
}

/// A watch stream: one JSON event per line.
pub struct Watch {
    resp: reqwest::Response,
    url: String,
    buf: Vec<u8>,
    /// The last resource version seen (bookmarks included), to watch on from.
    pub last: String,
}

impl Watch {
    /// The next change; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<WatchEvent>, ApiError> {
        loop {
            while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                if let Some(event) = self.event(&line)? {
                    return Ok(Some(event));
                }
            }
            match self.resp.chunk().await.map_err(|source| ApiError::Http { path: self.url.clone(), source })? {
                Some(chunk) => self.buf.extend_from_slice(&chunk),
                None => return Ok(None),
            }
        }
    }

    /// Decodes one line; `None` for blank lines and bookmarks.
    fn event(&mut self, line: &[u8]) -> Result<Option<WatchEvent>, ApiError> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let url = &self.url;
        let event: Value =
            serde_json::from_slice(line).map_err(|e| ApiError::Decode { path: url.clone(), message: format!("watch event: {e}") })?;
        let object = event["object"].clone();
        if let Some(rv) = object["metadata"]["resourceVersion"].as_str() {
            self.last = rv.to_string();
        }
        match event["type"].as_str().unwrap_or_default() {
            "ADDED" | "MODIFIED" => Ok(Some(WatchEvent::Upsert(object))),
            "DELETED" => Ok(Some(WatchEvent::Deleted(object))),
            "BOOKMARK" => Ok(None),
            "ERROR" if object["code"].as_u64() == Some(410) => Err(ApiError::Gone { path: url.clone() }),
            "ERROR" => Err(ApiError::Status {
                path: url.clone(),
                status: object["code"].as_u64().unwrap_or(0) as u16,
                message: object["message"].as_str().unwrap_or("watch error").to_string(),
            }),
            other => Err(ApiError::Decode { path: url.clone(), message: format!("unknown watch event type {other:?}") }),
        }
    }
}

/// Percent-encodes a query value (continue tokens are base64 with `=`).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn continue_tokens_are_encoded() {
        assert_eq!(super::urlencode("eyJ2Ijo=+/"), "eyJ2Ijo%3D%2B%2F");
    }
}
