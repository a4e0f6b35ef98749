//! A client of a schema registry speaking Confluent's REST API (Confluent
//! Schema Registry, Karapace, Redpanda, Apicurio's `ccompat` API), for
//! Confluent's wire format ([`crate::avro::Encoder::encode_confluent`]).
//! Only with the crate's `registry` feature: it is the one part of this
//! crate that does I/O.
//!
//! Agents register their current schemas at start under each topic's
//! value subject (TopicNameStrategy, `<topic>-value`) and write the ids
//! the registry gives; collectors fetch a writer schema the first time a
//! record names its id. What the registry answers is classified: a refusal
//! (4xx but 408 and 429: no such schema, incompatible, invalid,
//! unauthorised) is [`RegistryError::is_permanent`] and never retried; no
//! answer, a 5xx, 408 or 429 is worth retrying.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The registry's content type (v1 of its API).
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// The most a schema answer may weigh. Driftwatch's schemas are under
/// 10 KiB; an answer larger than this is not one of them.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Where the registry is and how to reach it (`kafka.schema_registry`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Base URL, `http(s)://host:port[/path]`.
    pub url: String,
    /// HTTP basic authentication (Confluent Cloud: the API key and secret).
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM file of the CA of the registry's certificate, beside the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// Each request's bound.
    pub timeout_secs: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig { url: String::new(), username: None, password: None, ca_file: None, timeout_secs: 10 }
    }
}

impl std::fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("ca_file", &self.ca_file)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

impl RegistryConfig {
    /// Whether a registry is configured.
    pub fn is_set(&self) -> bool {
        !self.url.trim().is_empty()
    }

    /// Checks the settings (`field` is where they are, for the message).
    pub fn validate(&self, field: &str) -> Result<(), String> {
        let url = self.url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("{field}.url must be an http:// or https:// URL, not {url:?}"));
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(format!("{field}.password is set without {field}.username"));
        }
        if self.timeout_secs == 0 {
            return Err(format!("{field}.timeout_secs must be at least 1"));
        }
        if let Some(ca) = &self.ca_file {
            std::fs::metadata(ca).map_err(|e| format!("{field}.ca_file {}: {e}", ca.display()))?;
        }
        Ok(())
    }
}

/// The subject a topic's values are registered under (TopicNameStrategy,
/// the default of Confluent's serializers, Kafka Connect and ksqlDB).
pub fn subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// Why a registry request failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema registry settings: {0}")]
    Config(String),
    #[error("schema registry {url}: no answer: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("schema registry {url} answered {status}: {message}{}", code.map(|c| format!(" (error code {c})")).unwrap_or_default())]
    Answered { url: String, status: u16, code: Option<i64>, message: String },
    #[error("schema registry {url}: {reason}")]
    BadAnswer { url: String, reason: String },
}

impl RegistryError {
    /// Whether asking again cannot help: the registry refused (a 4xx other
    /// than 408 and 429), or what it answered is not a schema we can use.
    pub fn is_permanent(&self) -> bool {
        match self {
            RegistryError::Config(_) | RegistryError::BadAnswer { .. } => true,
            RegistryError::Unreachable { .. } => false,
            RegistryError::Answered { status, .. } => (400..500).contains(status) && *status != 408 && *status != 429,
        }
    }
}

/// A registry client (cheap to clone: one connection pool).
#[derive(Clone)]
pub struct Registry {
    base: String,
    http: reqwest::Client,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
struct Registered {
    id: u32,
}

#[derive(Deserialize)]
struct SchemaAnswer {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error_code: Option<i64>,
    message: Option<String>,
}

impl Registry {
    pub fn new(cfg: &RegistryConfig) -> Result<Self, RegistryError> {
        let mut builder =
            reqwest::Client::builder().timeout(Duration::from_secs(cfg.timeout_secs.max(1))).connect_timeout(Duration::from_secs(5));
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca).map_err(|e| RegistryError::Config(format!("ca_file {}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| RegistryError::Config(format!("ca_file {}: not PEM certificates: {e}", ca.display())))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| RegistryError::Config(e.to_string()))?;
        Ok(Registry {
            base: cfg.url.trim().trim_end_matches('/').to_string(),
            http,
            username: cfg.username.clone(),
            password: cfg.password.clone(),
        })
    }

    /// Registers `schema` (Avro, as JSON text) under `subject`; the id the
    /// registry gives it (the same id again for a schema it has).
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let url = format!("{}/subjects/{subject}/versions", self.base);
        let body = serde_json::json!({ "schema": schema }).to_string();
        let answer = self.send(self.http.post(&url).header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE).body(body), &url).await?;
        let r: Registered = serde_json::from_slice(&answer)
            .map_err(|e| RegistryError::BadAnswer { url, reason: format!("not a registration answer: {e}") })?;
        Ok(r.id)
    }

    /// The schema registered under `id`, as JSON text (Avro only).
    pub async fn schema(&self, id: u32) -> Result<String, RegistryError> {
        let url = format!("{}/schemas/ids/{id}", self.base);
        let answer = self.send(self.http.get(&url), &url).await?;
        let a: SchemaAnswer = serde_json::from_slice(&answer)
            .map_err(|e| RegistryError::BadAnswer { url: url.clone(), reason: format!("not a schema answer: {e}") })?;
        match a.schema_type.as_deref() {
            None | Some("AVRO") => Ok(a.schema),
            Some(other) => Err(RegistryError::BadAnswer { url, reason: format!("schema {id} is {other}, not Avro") }),
        }
    }

    /// Sends a request; the answer's body when it is a success, bounded by
    /// [`MAX_ANSWER_BYTES`].
    async fn send(&self, request: reqwest::RequestBuilder, url: &str) -> Result<Vec<u8>, RegistryError> {
        let mut request = request.header(reqwest::header::ACCEPT, CONTENT_TYPE);
        if let Some(user) = &self.username {
            request = request.basic_auth(user, self.password.as_ref());
        }
        let unreachable = |e: reqwest::Error| RegistryError::Unreachable { url: url.to_string(), reason: e.to_string() };
        let mut response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(RegistryError::BadAnswer { url: url.to_string(), reason: format!("answer over {MAX_ANSWER_BYTES} bytes") });
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok(body);
        }
        let err: Option<ErrorAnswer> = serde_json::from_slice(&body).ok();
        let message = err.as_ref().and_then(|e| e.message.clone()).unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&body);
            text.chars().take(200).collect::<String>()
        });
        Err(RegistryError::Answered { url: url.to_string(), status: status.as_u16(), code: err.and_then(|e| e.error_code), message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_permanent_and_outages_are_not() {
        let answered = |status| RegistryError::Answered { url: "u".into(), status, code: None, message: String::new() };
        for s in [400, 401, 403, 404, 409, 422] {
            assert!(answered(s).is_permanent(), "{s}");
        }
        for s in [408, 429, 500, 502, 503] {
            assert!(!answered(s).is_permanent(), "{s}");
        }
        assert!(!RegistryError::Unreachable { url: "u".into(), reason: "refused".into() }.is_permanent());
        let e = RegistryError::Answered {
            url: "http://r/schemas/ids/9".into(),
            status: 404,
            code: Some(40403),
            message: "Schema 9 not found".into(),
        };
        assert_eq!(e.to_string(), "schema registry http://r/schemas/ids/9 answered 404: Schema 9 not found (error code 40403)");
    }

    #[test]
    fn settings_are_checked_by_name() {
        let cfg = |url: &str| RegistryConfig { url: url.into(), ..Default::default() };
        assert!(cfg("http://registry:8081").validate("kafka.schema_registry").is_ok());
        let e = cfg("registry:8081").validate("kafka.schema_registry").unwrap_err();
        assert!(e.starts_with("kafka.schema_registry.url must be"), "{e}");
        let e = RegistryConfig { password: Some("p".into()), ..cfg("https://r") }.validate("x").unwrap_err();
        assert_eq!(e, "x.password is set without x.username");
        let shown = format!("{:?}", RegistryConfig { username: Some("u".into()), password: Some("secret".into()), ..cfg("https://r") });
        assert!(!shown.contains("secret"), "{shown}");
        assert_eq!(subject("driftwatch.audit"), "driftwatch.audit-value");
    }
}
