//! Serving the API: one accept loop for HTTP and HTTPS that a client
//! cannot exhaust. At most `api.max_connections` connections are open at
//! once (one more is closed at accept, counted); a connection that has not
//! sent a request's headers within `api.header_read_timeout_secs` (or
//! finished its TLS handshake within that time) is closed; each request
//! carries its peer's address, which the per-client rate limit reads
//! before any authentication.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

/// The rustls server configuration from PEM files (certificate chain, key).
pub fn tls_config(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("api.tls.cert: {}: {e}", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "api.tls.cert: {}: no certificate in the file", cert.display());
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| anyhow::anyhow!("api.tls.key: {}: {e}", key.display()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| anyhow::anyhow!("api.tls: the certificate and key do not go together: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves `router` on `listener` (HTTPS when `tls` is set) until the task
/// is dropped.
pub async fn serve(listener: TcpListener, router: Router, tls: Option<Arc<rustls::ServerConfig>>, bounds: Bounds) {
    let slots = Arc::new(Semaphore::new(bounds.max_connections));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait, not spin.
                tracing::warn!(error = %e, "API accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            crate::metrics::METRICS.api_connections_refused.inc();
            tracing::debug!(%peer, "API connection refused: api.max_connections open");
            drop(stream);
            continue;
        };
        let (router, acceptor) = (router.clone(), acceptor.clone());
        tokio::spawn(async move {
            let _slot = slot;
            match acceptor {
                None => connection(stream, peer, router, bounds).await,
                Some(a) => match tokio::time::timeout(bounds.header_read_timeout, a.accept(stream)).await {
                    Ok(Ok(tls)) => connection(tls, peer, router, bounds).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "API TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "API TLS handshake timed out"),
                },
            }
        });
    }
}

/// One connection, HTTP/1.1 or HTTP/2, each request told its peer.
async fn connection<S>(stream: S, peer: SocketAddr, router: Router, bounds: Bounds)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut router = router.clone();
        async move { tower::Service::call(&mut router, req).await }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(bounds.header_read_timeout);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(bounds.header_read_timeout));
    if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await {
        tracing::debug!(%peer, error = %e, "API connection ended with an error");
    }
}
