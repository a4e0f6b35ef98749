//! `tls.*`: certificates in configured files (PEM, or DER), so expiring or
//! self-signed certificates are visible. For each file, the first (leaf)
//! certificate is reported.
//!
//! Facts: `tls.cert["<path>"].{subject, issuer, not_after, days_to_expiry,
//! self_signed}` (`not_after` in seconds since the epoch), and
//! `tls.errors` for files that hold no parseable certificate.

use chrono::Utc;
use driftwatch_schemas::FactPath;
use x509_parser::prelude::*;

use super::Facts;
use crate::root::HostRoot;

/// Files looked at when the configuration names none (globs allowed).
pub const DEFAULT_PATHS: &[&str] = &[
    "/etc/ssl/certs/ssl-cert-snakeoil.pem",
    "/etc/letsencrypt/live/*/cert.pem",
    "/etc/nginx/**/*.crt",
    "/etc/apache2/**/*.crt",
    "/etc/pki/tls/certs/*.crt",
    "/etc/kubernetes/pki/*.crt",
    "/var/lib/kubelet/pki/*.crt",
];
/// Certificate files read at most per snapshot.
const MAX_FILES: usize = 200;

pub fn collect(root: &HostRoot, patterns: &[String], facts: &mut Facts) {
    let files: Vec<String> =
        patterns.iter().flat_map(|p| if p.contains(['*', '?', '[']) { root.glob(p) } else { vec![p.clone()] }).take(MAX_FILES).collect();
    let now = Utc::now().timestamp();
    for path in files {
        let data = match std::fs::read(root.path(&path)) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                facts.error("tls", format!("{path}: {e}"));
                continue;
            }
        };
        // Note the read for the watcher (the bytes were read directly).
        let _ = root.metadata(&path);
        match leaf(&data) {
            Ok(c) => {
                let p = FactPath::new(["tls", "cert", path.as_str()]);
                facts.set(&p.child("subject"), c.subject.as_str());
                facts.set(&p.child("issuer"), c.issuer.as_str());
                facts.set(&p.child("not_after"), c.not_after);
                facts.set(&p.child("days_to_expiry"), (c.not_after - now).div_euclid(86_400));
                facts.set(&p.child("self_signed"), c.subject == c.issuer);
            }
            Err(e) => facts.error("tls", format!("{path}: {e}")),
        }
    }
}

/// What is reported of a certificate.
#[derive(Debug, PartialEq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub not_after: i64,
}

/// The first certificate in PEM or DER data.
pub fn leaf(data: &[u8]) -> Result<CertInfo, String> {
    let info = |c: &X509Certificate| CertInfo {
        subject: c.subject().to_string(),
        issuer: c.issuer().to_string(),
        not_after: c.validity().not_after.timestamp(),
    };
    if data.starts_with(b"-----") || data.windows(11).any(|w| w == b"-----BEGIN ") {
        for pem in Pem::iter_from_buffer(data) {
            let pem = pem.map_err(|e| format!("bad PEM: {e}"))?;
            if pem.label != "CERTIFICATE" {
                continue;
            }
            let cert = pem.parse_x509().map_err(|e| format!("bad certificate: {e}"))?;
            return Ok(info(&cert));
        }
        return Err("no CERTIFICATE block".into());
    }
    let (_, cert) = parse_x509_certificate(data).map_err(|e| format!("neither PEM nor a DER certificate: {e}"))?;
    Ok(info(&cert))
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_schemas::FactValue;

    /// A self-signed certificate for CN=driftwatch-test, made 2026-11-22, valid ten years.
    pub const PEM: &str = include_str!("../../tests/fixtures/tls/selfsigned.pem");

    #[test]
    fn reads_pem_leaf_and_reports_expiry() {
        let c = leaf(PEM.as_bytes()).unwrap();
        assert!(c.subject.contains("CN=driftwatch-test"), "{c:?}");
        assert_eq!(c.subject, c.issuer);
        let f = crate::facts::testing::collect_with(
            &[("/etc/ssl/a.pem", PEM), ("/etc/ssl/bad.pem", "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")],
            |r, f| collect(r, &["/etc/ssl/*.pem".to_string()], f),
        );
        assert_eq!(f.0[r#"tls.cert["/etc/ssl/a.pem"].self_signed"#], FactValue::Bool(true));
        assert!(matches!(f.0[r#"tls.cert["/etc/ssl/a.pem"].days_to_expiry"#], FactValue::Int(d) if d > 0));
        let FactValue::List(errs) = &f.0["tls.errors"] else { panic!("{f:?}") };
        assert!(errs[0].starts_with("/etc/ssl/bad.pem: "), "{errs:?}");
    }
}
