//! The HTTP client the ClickHouse store talks through: plain HTTP, or
//! HTTPS with rustls (`clickhouse.tls`: the CA that signs the server's
//! certificate, else the web PKI's roots; a client certificate for mutual
//! TLS). Built once at connect; a file that cannot be used is a
//! configuration error named by its setting, found at start.

use std::path::Path;
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::store::config::ClickHouseTls;

/// Idle connections are closed before ClickHouse's keep-alive (3 s on
/// old servers, 10 s on current ones) would close them under a request.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// The rustls client configuration of `tls`.
pub fn client_config(tls: &ClickHouseTls) -> Result<rustls::ClientConfig, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(ca) => {
            for cert in certificates("clickhouse.tls.ca_file", ca)? {
                roots.add(cert).map_err(|e| format!("clickhouse.tls.ca_file: {}: {e}", ca.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = certificates("clickhouse.tls.cert_file", cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("clickhouse.tls.key_file: {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("clickhouse.tls: the client certificate and key do not go together: {e}"))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("clickhouse.tls: cert_file and key_file go together (a client certificate and its key)".into()),
    };
    Ok(config)
}

fn certificates(setting: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{setting}: {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{setting}: {}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

/// The clickhouse client's HTTP transport: HTTPS (per `tls`) and plain
/// HTTP both, so the URL's scheme decides.
pub fn client(tls: &ClickHouseTls) -> Result<clickhouse::Client, String> {
    let mut http = HttpConnector::new();
    http.set_keepalive(Some(Duration::from_secs(60)));
    http.enforce_http(false);
    let https =
        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(client_config(tls)?).https_or_http().enable_http1().wrap_connector(http);
    let hyper = HyperClient::builder(TokioExecutor::new()).pool_idle_timeout(POOL_IDLE_TIMEOUT).build(https);
    Ok(clickhouse::Client::with_http_client(hyper))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn unusable_files_are_named_by_their_setting() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = write(dir.path(), "ca.pem", "not a certificate\n");
        let missing = dir.path().join("missing.pem");
        let of = |tls: ClickHouseTls| client_config(&tls).unwrap_err();
        let e = of(ClickHouseTls { ca_file: Some(not_pem.clone()), ..Default::default() });
        assert!(e.starts_with(&format!("clickhouse.tls.ca_file: {}: no certificate", not_pem.display())), "{e}");
        let e = of(ClickHouseTls { ca_file: Some(missing.clone()), ..Default::default() });
        assert!(e.starts_with(&format!("clickhouse.tls.ca_file: {}:", missing.display())), "{e}");
        let e = of(ClickHouseTls { cert_file: Some(not_pem), ..Default::default() });
        assert!(e.contains("cert_file and key_file go together"), "{e}");
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = write(dir.path(), "c.pem", &certified.cert.pem());
        let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let wrong_key = write(dir.path(), "k.pem", &other.signing_key.serialize_pem());
        let e = of(ClickHouseTls { ca_file: Some(cert.clone()), cert_file: Some(cert.clone()), key_file: Some(wrong_key) });
        assert!(e.contains("do not go together"), "{e}");
        let key = write(dir.path(), "key.pem", &certified.signing_key.serialize_pem());
        assert!(client_config(&ClickHouseTls { ca_file: Some(cert.clone()), cert_file: Some(cert), key_file: Some(key) }).is_ok());
        assert!(client_config(&ClickHouseTls::default()).is_ok(), "the web PKI's roots without a CA file");
    }
}
