//! TCP connect and DNS resolution probes, with the latency as measured and
//! the error's category first (`timeout`, `refused`, `dns`, `connect`).

use std::time::Duration;

use driftwatch_schemas::{ProbeKind, SlaMeasurement};

use super::Started;

/// Connects to `target` (`host:port`) once.
pub async fn tcp(asset_id: &str, probe_id: &str, target: &str, timeout: Duration) -> SlaMeasurement {
    let start = Started::now();
    let error = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(target)).await {
        Err(_) => Some(format!("timeout: no connection within {} ms", timeout.as_millis())),
        Ok(Ok(_)) => None,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(format!("refused: {e}")),
        Ok(Err(e)) if e.to_string().contains("lookup") || e.to_string().contains("resolve") => Some(format!("dns: {e}")),
        Ok(Err(e)) => Some(format!("connect: {e}")),
    };
    start.measured(asset_id, probe_id, target, ProbeKind::Tcp, error)
}

/// Resolves `name` once; success when it has at least one address.
pub async fn dns(asset_id: &str, probe_id: &str, name: &str, timeout: Duration) -> SlaMeasurement {
    let start = Started::now();
    let error = match tokio::time::timeout(timeout, tokio::net::lookup_host((name, 0))).await {
        Err(_) => Some(format!("timeout: no answer within {} ms", timeout.as_millis())),
        Ok(Ok(mut addrs)) => addrs.next().is_none().then(|| format!("dns: {name} has no address")),
        Ok(Err(e)) => Some(format!("dns: {e}")),
    };
    start.measured(asset_id, probe_id, name, ProbeKind::Dns, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tcp_connects_or_says_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().to_string();
        let m = tcp("a", "p", &open, Duration::from_secs(2)).await;
        assert!(m.success && m.error.is_none(), "{m:?}");
        assert_eq!(m.kind, ProbeKind::Tcp);
        drop(listener);
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let m = tcp("a", "p", &closed, Duration::from_secs(2)).await;
        assert!(!m.success && m.error.as_deref().unwrap().starts_with("refused: "), "{m:?}");
    }

    #[tokio::test]
    async fn dns_resolves_or_says_why_not() {
        let m = dns("a", "p", "localhost", Duration::from_secs(2)).await;
        assert!(m.success, "{m:?}");
        let m = dns("a", "p", "no-such-host.invalid", Duration::from_secs(2)).await;
        assert!(!m.success);
        let e = m.error.unwrap();
        assert!(e.starts_with("dns: ") || e.starts_with("timeout: "), "{e}");
    }
}
