//! HTTP(S) GET probe.

use std::time::{Duration, Instant};

use chrono::Utc;
use driftwatch_schemas::{ProbeKind, SlaMeasurement};

pub fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::limited(5)).build()
}

/// Probes `url` once. Success: the expected status, or any 2xx.
pub async fn probe(client: &reqwest::Client, asset_id: &str, probe_id: &str, url: &str, expect: Option<u16>) -> SlaMeasurement {
    let timestamp = Utc::now();
    let start = Instant::now();
    let result = client.get(url).send().await;
    let latency_us = start.elapsed().as_micros().min(i64::MAX as u128) as i64;
    let (success, status_code, error) = match result {
        Ok(resp) => {
            let s = resp.status();
            let ok = match expect {
                Some(code) => s.as_u16() == code,
                None => s.is_success(),
            };
            let err = (!ok)
                .then(|| format!("status: got {}, expected {}", s.as_u16(), expect.map(|c| c.to_string()).unwrap_or_else(|| "2xx".into())));
            (ok, Some(i32::from(s.as_u16())), err)
        }
        Err(e) => (false, None, Some(categorize(&e))),
    };
    SlaMeasurement {
        asset_id: asset_id.to_string(),
        probe_id: probe_id.to_string(),
        target: url.to_string(),
        kind: ProbeKind::Http,
        timestamp,
        success,
        latency_us,
        status_code,
        error,
        host_metrics: None,
    }
}

/// `category: message`, the category one of timeout, refused, tls, dns, http.
fn categorize(e: &reqwest::Error) -> String {
    let text = format!("{e:?}").to_ascii_lowercase();
    let cat = if e.is_timeout() {
        "timeout"
    } else if text.contains("connection refused") {
        "refused"
    } else if text.contains("certificate") || text.contains("tls") {
        "tls"
    } else if text.contains("dns") || text.contains("failed to lookup") {
        "dns"
    } else {
        "http"
    };
    format!("{cat}: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_connection_is_a_failed_measurement() {
        // Bind then drop a listener to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let c = client(Duration::from_secs(2)).unwrap();
        let m = probe(&c, "a", "p", &format!("http://127.0.0.1:{port}/"), None).await;
        assert!(!m.success);
        assert!(m.error.as_deref().unwrap().starts_with("refused"), "{:?}", m.error);
    }
}
