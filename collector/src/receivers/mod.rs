//! Receivers: where notifications go (the sinks of alerting). Each kind (`slack.rs`,
//! `pagerduty.rs`, `webhook.rs`) turns a [`Notification`] into one HTTP
//! request; this module delivers it: a per-receiver rate limit (governor),
//! retries with exponential backoff and full jitter on network errors,
//! timeouts, 429 and 5xx (honouring `Retry-After`), and no retry on other
//! 4xx (the payload will never be accepted). Every outcome is logged and
//! counted (`driftwatch_notifications_total`); a delivered notification is
//! recorded in the notification log.

pub mod pagerduty;
pub mod slack;
pub mod webhook;

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use serde::Deserialize;

pub use crate::alert::notification::Notification;

const BASE_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One receiver, as configured: a name and exactly one kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    pub name: String,
    pub slack: Option<slack::SlackConfig>,
    pub pagerduty: Option<pagerduty::PagerDutyConfig>,
    pub webhook: Option<webhook::WebhookConfig>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts before a notification is given up (and logged as failed).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Notifications per minute at most (bursts up to this many).
    #[serde(default = "default_rate")]
    pub rate_limit_per_minute: u32,
    /// Requests in flight at once (each group's still one at a time, in
    /// order).
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
}

fn default_timeout_ms() -> u64 {
    10_000
}
fn default_attempts() -> u32 {
    8
}
fn default_rate() -> u32 {
    60
}
fn default_in_flight() -> usize {
    8
}

impl ReceiverConfig {
    /// Problems, each naming its field under `at`.
    pub fn validate(&self, at: &str) -> Vec<String> {
        let mut e = Vec::new();
        let kinds = [self.slack.is_some(), self.pagerduty.is_some(), self.webhook.is_some()].iter().filter(|k| **k).count();
        if kinds != 1 {
            e.push(format!("{at}: give exactly one of slack, pagerduty, webhook (found {kinds})"));
        }
        if self.max_attempts == 0 {
            e.push(format!("{at}.max_attempts: must be at least 1"));
        }
        if self.rate_limit_per_minute == 0 {
            e.push(format!("{at}.rate_limit_per_minute: must be at least 1"));
        }
        if !(1..=1024).contains(&self.max_in_flight) {
            e.push(format!("{at}.max_in_flight: must be 1 to 1024 (found {})", self.max_in_flight));
        }
        let url = |field: &str, u: &str, e: &mut Vec<String>| {
            if reqwest::Url::parse(u).is_err() {
                e.push(format!("{at}.{field}: {u:?} is not a URL"));
            }
        };
        if let Some(s) = &self.slack {
            url("slack.url", &s.url, &mut e);
        }
        if let Some(p) = &self.pagerduty {
            url("pagerduty.url", &p.url, &mut e);
            if p.routing_key.len() != 32 {
                e.push(format!("{at}.pagerduty.routing_key: must be the 32-character integration key"));
            }
        }
        if let Some(w) = &self.webhook {
            url("webhook.url", &w.url, &mut e);
        }
        e
    }
}

/// A receiver URL as it may be shown (Debug, logs): scheme and host only,
/// since a Slack or webhook URL's path is its credential.
pub fn url_origin(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
            format!("{scheme}://{host}/…")
        }
        None => "…".into(),
    }
}

/// The kinds' common shape: one request per notification.
pub trait Kind: Send + Sync {
    fn request(&self, client: &reqwest::Client, n: &Notification) -> reqwest::RequestBuilder;
}

/// A receiver ready to deliver.
pub struct Receiver {
    pub name: String,
    kind: Box<dyn Kind>,
    client: reqwest::Client,
    max_attempts: u32,
    /// See [`ReceiverConfig::max_in_flight`].
    pub max_in_flight: usize,
    limiter: DefaultDirectRateLimiter,
}

/// The outcome of one attempt.
enum Attempt {
    Delivered,
    Retry { after: Option<Duration>, reason: String },
    GiveUp(String),
}

impl Receiver {
    pub fn new(cfg: &ReceiverConfig) -> anyhow::Result<Self> {
        let kind: Box<dyn Kind> = match (&cfg.slack, &cfg.pagerduty, &cfg.webhook) {
            (Some(s), None, None) => Box::new(slack::Slack::new(s)),
            (None, Some(p), None) => Box::new(pagerduty::PagerDuty::new(p)),
            (None, None, Some(w)) => Box::new(webhook::Webhook::new(w)),
            _ => anyhow::bail!("receiver {}: give exactly one of slack, pagerduty, webhook", cfg.name),
        };
        let client = reqwest::Client::builder().timeout(Duration::from_millis(cfg.timeout_ms)).build()?;
        let per_minute = NonZeroU32::new(cfg.rate_limit_per_minute).unwrap_or(NonZeroU32::MIN);
        Ok(Receiver {
            name: cfg.name.clone(),
            kind,
            client,
            max_attempts: cfg.max_attempts.max(1),
            max_in_flight: cfg.max_in_flight.max(1),
            limiter: RateLimiter::direct(Quota::per_minute(per_minute)),
        })
    }

    fn count(&self, outcome: &str) {
        crate::metrics::METRICS.notifications.with_label_values(&[self.name.as_str(), outcome]).inc();
    }

    /// Delivers one notification; true once the receiver accepted it.
    pub async fn deliver(&self, n: &Notification) -> bool {
        let _timer = crate::metrics::METRICS.notification_seconds.with_label_values(&[self.name.as_str()]).start_timer();
        for attempt in 1..=self.max_attempts {
            self.limiter.until_ready().await;
            match self.attempt(n).await {
                Attempt::Delivered => {
                    self.count("delivered");
                    tracing::debug!(receiver = %self.name, group = %n.group_key, status = n.status(), firing = n.firing.len(), resolved = n.resolved.len(), attempt, "notification delivered");
                    return true;
                }
                Attempt::GiveUp(reason) => {
                    self.count("failed");
                    tracing::error!(receiver = %self.name, group = %n.group_key, %reason, "notification rejected by the receiver; not retried");
                    return false;
                }
                Attempt::Retry { after, reason } => {
                    if attempt == self.max_attempts {
                        self.count("failed");
                        tracing::error!(receiver = %self.name, group = %n.group_key, %reason, attempts = attempt, "notification delivery failed; giving up");
                        return false;
                    }
                    self.count("retried");
                    let wait = after.unwrap_or_else(|| backoff(attempt));
                    tracing::warn!(receiver = %self.name, group = %n.group_key, %reason, attempt, wait_ms = wait.as_millis() as u64, "notification delivery failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
        false
    }

    async fn attempt(&self, n: &Notification) -> Attempt {
        let resp = match self.kind.request(&self.client, n).send().await {
            Ok(r) => r,
            // Without its URL: a Slack or webhook URL is itself a secret.
            Err(e) => return Attempt::Retry { after: None, reason: e.without_url().to_string() },
        };
        let status = resp.status();
        if status.is_success() {
            return Attempt::Delivered;
        }
        let after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MAX_BACKOFF * 4));
        let body = resp.text().await.unwrap_or_default();
        let reason = format!("HTTP {status}: {}", body.chars().take(200).collect::<String>());
        if status.as_u16() == 429 || status.is_server_error() {
            Attempt::Retry { after, reason }
        } else {
            Attempt::GiveUp(reason)
        }
    }
}

/// Exponential backoff with full jitter: uniform in [0, min(max, base·2^n)].
fn backoff(attempt: u32) -> Duration {
    let cap = BASE_BACKOFF.saturating_mul(1 << attempt.min(16)).min(MAX_BACKOFF);
    Duration::from_millis(rand::rng().random_range(0..=cap.as_millis() as u64))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn receiver_configs_never_print_their_secrets() {
        let slack = super::slack::SlackConfig { url: "https://hooks.slack.com/services/T0/B0/SlackSecretPath".into() };
        let pd = super::pagerduty::PagerDutyConfig {
            routing_key: "R0utingKeySecret".into(),
            url: "https://events.pagerduty.com/v2/enqueue".into(),
        };
        let hook = super::webhook::WebhookConfig {
            url: "https://user:pw@hooks.example/in/HookPathSecret".into(),
            secret: Some("HmacS3cret".into()),
        };
        let shown = format!("{slack:?} {pd:?} {hook:?}");
        for secret in ["SlackSecretPath", "R0utingKeySecret", "HookPathSecret", "HmacS3cret", "user:pw"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("https://hooks.slack.com/…"), "{shown}");
    }

    #[test]
    fn backoff_is_capped_and_grows() {
        for n in 1..40 {
            assert!(backoff(n) <= MAX_BACKOFF);
        }
        assert!((0..50).map(|_| backoff(1)).all(|d| d <= Duration::from_millis(400)));
    }
}
