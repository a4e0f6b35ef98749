//! Receivers: where notifications go (the sinks of alerting). The HTTP
//! kinds (`slack.rs`, `pagerduty.rs`, `webhook.rs`, `alertmanager.rs`) turn a [`Notification`]
//! into one HTTP request; `email.rs` into one message sent over SMTP (with
//! STARTTLS). This module delivers it: a per-receiver rate limit
//! (governor), retries with exponential backoff and full jitter on network
//! errors, timeouts, 429 and 5xx (honouring `Retry-After`) and SMTP's
//! transient replies (4xx), and no retry on other 4xx or SMTP's permanent
//! replies (5xx: the message will never be accepted). Every outcome is logged and
//! counted (`driftwatch_notifications_total`); a delivered notification is
//! recorded in the notification log.

pub mod alertmanager;
pub mod email;
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
    pub email: Option<email::EmailConfig>,
    pub alertmanager: Option<alertmanager::AlertmanagerConfig>,
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
        let kinds =
            [self.slack.is_some(), self.pagerduty.is_some(), self.webhook.is_some(), self.email.is_some(), self.alertmanager.is_some()]
                .iter()
                .filter(|k| **k)
                .count();
        if kinds != 1 {
            e.push(format!("{at}: give exactly one of slack, pagerduty, webhook, email, alertmanager (found {kinds})"));
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
        if let Some(m) = &self.email {
            m.validate(&format!("{at}.email"), &mut e);
        }
        if let Some(a) = &self.alertmanager {
            url("alertmanager.url", &a.url, &mut e);
            if let Err(problem) = a.hold() {
                e.push(format!("{at}.alertmanager.{problem}"));
            }
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

/// A scheduled report as a receiver delivers it (`reports.schedules`).
#[derive(Debug, Clone)]
pub struct Scheduled {
    /// The schedule's name.
    pub schedule: String,
    pub subject: String,
    /// A plain-text summary (coverage, score, gaps).
    pub text: String,
    /// The report rendered in the schedule's format: file name, content
    /// type, bytes (an email's attachment).
    pub attachment: (String, String, Vec<u8>),
    /// The report as JSON (a webhook's body).
    pub json: serde_json::Value,
}

/// How a receiver's kind makes one attempt at delivering a notification
/// (and, for the kinds that take them, a scheduled report).
#[async_trait::async_trait]
pub trait Kind: Send + Sync {
    async fn attempt(&self, n: &Notification) -> Attempt;

    async fn attempt_report(&self, _r: &Scheduled) -> Attempt {
        Attempt::GiveUp("this receiver kind takes no reports (email and webhook do)".into())
    }
}

/// The HTTP kinds' shape: one request per notification.
pub trait HttpKind: Send + Sync {
    fn request(&self, client: &reqwest::Client, n: &Notification) -> reqwest::RequestBuilder;

    /// The request delivering a scheduled report, for kinds that take them.
    fn report_request(&self, _client: &reqwest::Client, _r: &Scheduled) -> Option<reqwest::RequestBuilder> {
        None
    }
}

/// An HTTP kind with its client.
struct Http<K> {
    kind: K,
    client: reqwest::Client,
}

#[async_trait::async_trait]
impl<K: HttpKind> Kind for Http<K> {
    async fn attempt(&self, n: &Notification) -> Attempt {
        outcome(self.kind.request(&self.client, n).send().await).await
    }

    async fn attempt_report(&self, r: &Scheduled) -> Attempt {
        match self.kind.report_request(&self.client, r) {
            Some(req) => outcome(req.send().await).await,
            None => Attempt::GiveUp("this receiver kind takes no reports (email and webhook do)".into()),
        }
    }
}

/// What an HTTP response says of a delivery.
async fn outcome(sent: reqwest::Result<reqwest::Response>) -> Attempt {
    let resp = match sent {
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

/// A receiver ready to deliver.
pub struct Receiver {
    pub name: String,
    kind: Box<dyn Kind>,
    max_attempts: u32,
    /// See [`ReceiverConfig::max_in_flight`].
    pub max_in_flight: usize,
    limiter: DefaultDirectRateLimiter,
}

/// The outcome of one attempt.
pub enum Attempt {
    Delivered,
    Retry { after: Option<Duration>, reason: String },
    GiveUp(String),
}

impl Receiver {
    pub fn new(cfg: &ReceiverConfig) -> anyhow::Result<Self> {
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let client = || reqwest::Client::builder().timeout(timeout).build();
        let kind: Box<dyn Kind> = match (&cfg.slack, &cfg.pagerduty, &cfg.webhook, &cfg.email, &cfg.alertmanager) {
            (Some(s), None, None, None, None) => Box::new(Http { kind: slack::Slack::new(s), client: client()? }),
            (None, Some(p), None, None, None) => Box::new(Http { kind: pagerduty::PagerDuty::new(p), client: client()? }),
            (None, None, Some(w), None, None) => Box::new(Http { kind: webhook::Webhook::new(w), client: client()? }),
            (None, None, None, Some(m), None) => Box::new(email::Email::new(m, timeout)?),
            (None, None, None, None, Some(a)) => Box::new(Http { kind: alertmanager::Alertmanager::new(a), client: client()? }),
            _ => anyhow::bail!("receiver {}: give exactly one of slack, pagerduty, webhook, email, alertmanager", cfg.name),
        };
        let per_minute = NonZeroU32::new(cfg.rate_limit_per_minute).unwrap_or(NonZeroU32::MIN);
        Ok(Receiver {
            name: cfg.name.clone(),
            kind,
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
        let delivered = self.with_retries(&n.group_key, || self.kind.attempt(n)).await;
        if delivered {
            tracing::debug!(receiver = %self.name, group = %n.group_key, status = n.status(), firing = n.firing.len(), resolved = n.resolved.len(), "notification delivered");
        }
        delivered
    }

    /// Delivers a scheduled report; true once the receiver accepted it.
    pub async fn deliver_report(&self, r: &Scheduled) -> bool {
        let delivered = self.with_retries(&format!("report:{}", r.schedule), || self.kind.attempt_report(r)).await;
        if delivered {
            tracing::info!(receiver = %self.name, schedule = %r.schedule, "scheduled report delivered");
        }
        delivered
    }

    /// Makes attempts within the rate limit until one is accepted, one is
    /// refused for good, or `max_attempts` have failed.
    async fn with_retries<'a, F, Fut>(&'a self, group: &str, attempt: F) -> bool
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Attempt> + 'a,
    {
        for n in 1..=self.max_attempts {
            self.limiter.until_ready().await;
            match attempt().await {
                Attempt::Delivered => {
                    self.count("delivered");
                    return true;
                }
                Attempt::GiveUp(reason) => {
                    self.count("failed");
                    tracing::error!(receiver = %self.name, %group, %reason, "notification rejected by the receiver; not retried");
                    return false;
                }
                Attempt::Retry { after, reason } => {
                    if n == self.max_attempts {
                        self.count("failed");
                        tracing::error!(receiver = %self.name, %group, %reason, attempts = n, "notification delivery failed; giving up");
                        return false;
                    }
                    self.count("retried");
                    let wait = after.unwrap_or_else(|| backoff(n));
                    tracing::warn!(receiver = %self.name, %group, %reason, attempt = n, wait_ms = wait.as_millis() as u64, "notification delivery failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
        false
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
