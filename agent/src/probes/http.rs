//! HTTP(S) probe: any method, headers and body; success is the expected
//! status (default any 2xx), then the body matching `expect_body`, then
//! (https) the server certificate lasting at least `min_cert_days`. The
//! certificate's days to expiry are reported on every https measurement.
//! Error categories: timeout, refused, tls, dns, http, status, body.

use std::time::Duration;

use driftwatch_schemas::{ProbeKind, SlaMeasurement};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Method;

use super::config::ProbeConfig;
use super::Started;

/// The first bytes of a body that `expect_body` is matched against.
const BODY_LIMIT: usize = 1 << 20;

/// One configured HTTP probe, its client built once.
pub struct HttpProbe {
    client: reqwest::Client,
    method: Method,
    url: String,
    headers: HeaderMap,
    body: Option<String>,
    expect_status: Option<u16>,
    expect_body: Option<regex::Regex>,
    min_cert_days: Option<i64>,
}

impl HttpProbe {
    /// Builds the probe; an error names the offending field.
    pub fn new(p: &ProbeConfig) -> Result<HttpProbe, String> {
        let url = p.url.clone().ok_or("url: required for an http probe")?;
        let method = match &p.method {
            None => Method::GET,
            Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| format!("method: {m:?} is not an HTTP method"))?,
        };
        let mut headers = HeaderMap::new();
        for (k, v) in &p.headers.0 {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("headers: {k:?} is not a header name"))?;
            let mut value = HeaderValue::from_str(v).map_err(|_| format!("headers.{k}: not a valid header value"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let expect_body = match &p.expect_body {
            None => None,
            Some(re) => Some(regex::Regex::new(re).map_err(|e| format!("expect_body: {e}"))?),
        };
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_millis(p.timeout_ms))
            .redirect(reqwest::redirect::Policy::limited(5))
            .tls_info(true);
        if let Some(path) = &p.ca_file {
            let pem = std::fs::read(path).map_err(|e| format!("ca_file: {}: {e}", path.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("ca_file: {}: {e}", path.display()))? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|e| format!("url: cannot build an HTTP client: {e}"))?;
        Ok(HttpProbe {
            client,
            method,
            url,
            headers,
            body: p.body.clone(),
            expect_status: p.expect_status,
            expect_body,
            min_cert_days: p.min_cert_days,
        })
    }

    /// Probes once.
    pub async fn probe(&self, asset_id: &str, probe_id: &str) -> SlaMeasurement {
        let start = Started::now();
        let mut req = self.client.request(self.method.clone(), &self.url).headers(self.headers.clone());
        if let Some(b) = &self.body {
            req = req.body(b.clone());
        }
        let (status, cert_days_left, error) = match req.send().await {
            Err(e) => (None, None, Some(categorize(&e))),
            Ok(resp) => {
                let status = resp.status();
                let days = cert_days_left(&resp);
                let error = self.check(resp, days).await;
                (Some(i32::from(status.as_u16())), days, error)
            }
        };
        let mut m = start.measured(asset_id, probe_id, &self.url, ProbeKind::Http, error);
        m.status_code = status;
        m.cert_days_left = cert_days_left;
        m
    }

    /// What is wrong with a response, if anything: status, body, certificate.
    async fn check(&self, resp: reqwest::Response, cert_days: Option<i32>) -> Option<String> {
        let s = resp.status();
        let status_ok = match self.expect_status {
            Some(code) => s.as_u16() == code,
            None => s.is_success(),
        };
        if !status_ok {
            let want = self.expect_status.map(|c| c.to_string()).unwrap_or_else(|| "2xx".into());
            return Some(format!("status: got {}, expected {want}", s.as_u16()));
        }
        if let Some(re) = &self.expect_body {
            match read_prefix(resp, BODY_LIMIT).await {
                Err(e) => return Some(categorize(&e)),
                Ok(body) if !re.is_match(&String::from_utf8_lossy(&body)) => {
                    return Some(format!("body: does not match {:?} (first {} bytes read)", re.as_str(), body.len()));
                }
                Ok(_) => {}
            }
        }
        match (self.min_cert_days, cert_days) {
            (Some(min), Some(days)) if i64::from(days) < min => Some(format!("tls: certificate expires in {days} days (minimum {min})")),
            (Some(_), None) => Some("tls: no server certificate seen".into()),
            _ => None,
        }
    }
}

/// Up to `limit` bytes of the body.
async fn read_prefix(mut resp: reqwest::Response, limit: usize) -> reqwest::Result<Vec<u8>> {
    let mut body = Vec::new();
    while body.len() < limit {
        match resp.chunk().await? {
            Some(chunk) => body.extend_from_slice(&chunk[..chunk.len().min(limit - body.len())]),
            None => break,
        }
    }
    Ok(body)
}

/// Whole days until the server certificate of `resp` expires.
fn cert_days_left(resp: &reqwest::Response) -> Option<i32> {
    let der = resp.extensions().get::<reqwest::tls::TlsInfo>()?.peer_certificate()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let secs = cert.validity().not_after.timestamp() - chrono::Utc::now().timestamp();
    i32::try_from(secs.div_euclid(86_400)).ok()
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
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn probe_config(yaml: &str) -> ProbeConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    /// A one-route HTTP server answering `status` and `body` to every
    /// request, keeping each request's head and body text.
    async fn server(status: u16, body: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                kept.lock().unwrap().push(String::from_utf8_lossy(&buf[..n]).to_string());
                let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        (format!("http://{addr}/health"), seen)
    }

    #[tokio::test]
    async fn method_headers_and_body_are_sent_and_the_body_is_matched() {
        let (url, seen) = server(200, "{\"status\":\"ok\"}").await;
        let p = HttpProbe::new(&probe_config(&format!(
            "{{id: p, kind: http, url: '{url}', method: post, headers: {{x-token: s3cret}}, body: ping, expect_body: '\"status\":\"ok\"'}}"
        )))
        .unwrap();
        let m = p.probe("a", "p").await;
        assert!(m.success, "{m:?}");
        assert_eq!((m.status_code, m.cert_days_left), (Some(200), None));
        let req = seen.lock().unwrap().join("\n").to_ascii_lowercase();
        assert!(req.starts_with("post /health") && req.contains("x-token: s3cret") && req.ends_with("ping"), "{req}");

        let p = HttpProbe::new(&probe_config(&format!("{{id: p, kind: http, url: '{url}', expect_body: degraded}}"))).unwrap();
        let m = p.probe("a", "p").await;
        assert!(!m.success && m.error.as_deref().unwrap().starts_with("body: does not match"), "{m:?}");
    }

    #[tokio::test]
    async fn an_unexpected_status_is_a_status_error() {
        let (url, _) = server(503, "down").await;
        let p = HttpProbe::new(&probe_config(&format!("{{id: p, kind: http, url: '{url}'}}"))).unwrap();
        let m = p.probe("a", "p").await;
        assert_eq!((m.success, m.status_code, m.error.as_deref()), (false, Some(503), Some("status: got 503, expected 2xx")));
        let p = HttpProbe::new(&probe_config(&format!("{{id: p, kind: http, url: '{url}', expect_status: 503}}"))).unwrap();
        assert!(p.probe("a", "p").await.success);
    }

    #[tokio::test]
    async fn refused_connection_is_a_failed_measurement() {
        // Bind then drop a listener to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let p = HttpProbe::new(&probe_config(&format!("{{id: p, kind: http, url: 'http://127.0.0.1:{port}/'}}"))).unwrap();
        let m = p.probe("a", "p").await;
        assert!(!m.success);
        assert!(m.error.as_deref().unwrap().starts_with("refused"), "{:?}", m.error);
    }

    #[test]
    fn bad_settings_name_their_field() {
        let e = |y: &str| HttpProbe::new(&probe_config(y)).err().unwrap();
        assert!(e("{id: p, kind: http, url: 'http://x/', method: 'GE T'}").starts_with("method:"));
        assert!(e("{id: p, kind: http, url: 'http://x/', headers: {'bad name': v}}").starts_with("headers:"));
        assert!(e("{id: p, kind: http, url: 'http://x/', expect_body: '('}").starts_with("expect_body:"));
        assert!(e("{id: p, kind: http, url: 'https://x/', ca_file: /nonexistent.pem}").starts_with("ca_file: /nonexistent.pem"));
    }

    /// An HTTPS server whose certificate (for localhost, from a private CA
    /// written to `ca`) expires in `days` days.
    async fn tls_server(days: i64, ca: &std::path::Path) -> String {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let not_after = chrono::Utc::now() + chrono::Duration::days(days) + chrono::Duration::hours(12);
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(
            chrono::Datelike::year(&not_after),
            chrono::Datelike::month(&not_after) as u8,
            chrono::Datelike::day(&not_after) as u8,
        );
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(ca, cert.pem()).unwrap();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap())
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(s).await else { return };
                    let mut buf = vec![0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
                    let _ = s.shutdown().await;
                });
            }
        });
        format!("https://localhost:{port}/")
    }

    #[tokio::test]
    async fn the_certificate_s_days_to_expiry_are_measured_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let url = tls_server(10, &ca).await;
        let yaml = format!("{{id: p, kind: http, url: '{url}', ca_file: '{}', min_cert_days: 5}}", ca.display());
        let m = HttpProbe::new(&probe_config(&yaml)).unwrap().probe("a", "p").await;
        assert!(m.success, "{m:?}");
        assert!(matches!(m.cert_days_left, Some(9..=10)), "{m:?}");
        let strict = yaml.replace("min_cert_days: 5", "min_cert_days: 30");
        let m = HttpProbe::new(&probe_config(&strict)).unwrap().probe("a", "p").await;
        assert!(!m.success && m.error.as_deref().unwrap().starts_with("tls: certificate expires in"), "{m:?}");
        // Without the private CA the certificate is not trusted: a tls error.
        let m = HttpProbe::new(&probe_config(&format!("{{id: p, kind: http, url: '{url}'}}"))).unwrap().probe("a", "p").await;
        assert!(!m.success && m.error.as_deref().unwrap().starts_with("tls:"), "{m:?}");
    }
}
