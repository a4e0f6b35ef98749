//! Generic JSON webhook receiver: POSTs each [`Alert`] as JSON.
//!
//! Delivery: retries with exponential backoff and full jitter on network
//! errors, timeouts, 429 and 5xx, honouring `Retry-After`; other 4xx mean
//! the payload will never be accepted and are given up at once. Every
//! failure is logged with the receiver's name.

use std::time::Duration;

use rand::Rng;
use tokio::sync::mpsc;

use super::Alert;
use crate::config::WebhookConfig;

const BASE_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct Webhook {
    name: String,
    url: reqwest::Url,
    client: reqwest::Client,
    max_attempts: u32,
}

/// The outcome of one attempt.
enum Attempt {
    Delivered,
    Retry { after: Option<Duration>, reason: String },
    GiveUp(String),
}

impl Webhook {
    pub fn new(cfg: &WebhookConfig) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(&cfg.url).map_err(|e| anyhow::anyhow!("webhook {}: url {:?}: {e}", cfg.name, cfg.url))?;
        let client = reqwest::Client::builder().timeout(Duration::from_millis(cfg.timeout_ms)).build()?;
        Ok(Webhook { name: cfg.name.clone(), url, client, max_attempts: cfg.max_attempts })
    }

    /// Delivers queued alerts in order until the queue closes.
    pub async fn run(self, mut rx: mpsc::Receiver<Alert>) {
        while let Some(alert) = rx.recv().await {
            self.deliver(&alert).await;
        }
    }

    async fn deliver(&self, alert: &Alert) -> bool {
        for attempt in 1..=self.max_attempts {
            match self.attempt(alert).await {
                Attempt::Delivered => {
                    tracing::info!(receiver = %self.name, violation = %alert.violation_id, status = alert.status, attempt, "alert delivered");
                    return true;
                }
                Attempt::GiveUp(reason) => {
                    tracing::error!(receiver = %self.name, violation = %alert.violation_id, %reason, "alert rejected by receiver; not retried");
                    return false;
                }
                Attempt::Retry { after, reason } => {
                    if attempt == self.max_attempts {
                        tracing::error!(receiver = %self.name, violation = %alert.violation_id, %reason, attempts = attempt, "alert delivery failed; giving up");
                        return false;
                    }
                    let wait = after.unwrap_or_else(|| backoff(attempt));
                    tracing::warn!(receiver = %self.name, violation = %alert.violation_id, %reason, attempt, wait_ms = wait.as_millis() as u64, "alert delivery failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
        false
    }

    async fn attempt(&self, alert: &Alert) -> Attempt {
        let resp = match self.client.post(self.url.clone()).json(alert).send().await {
            Ok(r) => r,
            Err(e) => return Attempt::Retry { after: None, reason: e.to_string() },
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
        if status.as_u16() == 429 || status.is_server_error() {
            Attempt::Retry { after, reason: format!("HTTP {status}") }
        } else {
            let body = resp.text().await.unwrap_or_default();
            Attempt::GiveUp(format!("HTTP {status}: {}", body.chars().take(200).collect::<String>()))
        }
    }
}

/// Exponential backoff with full jitter: uniform in [0, min(max, base·2^n)].
fn backoff(attempt: u32) -> Duration {
    let cap = BASE_BACKOFF.saturating_mul(1 << attempt.min(16)).min(MAX_BACKOFF);
    Duration::from_millis(rand::rng().random_range(0..=cap.as_millis() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_grows() {
        for n in 1..40 {
            assert!(backoff(n) <= MAX_BACKOFF);
        }
        assert!((0..50).map(|_| backoff(1)).all(|d| d <= Duration::from_millis(400)));
    }
}
