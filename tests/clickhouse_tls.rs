//! The collector stores to ClickHouse over TLS: a ClickHouse server of the
//! test's own (Debian's, the one `deploy/local/services` installs) with an
//! HTTPS port whose certificate a self-signed CA signs and which asks every
//! client for a certificate of that CA (mutual TLS). The collector
//! migrates and writes through it with `clickhouse.tls`; without the CA it
//! refuses the server, without a client certificate the server refuses it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use driftwatch_tests::*;

/// A ClickHouse server of this test's: the local services' configuration
/// with an HTTPS port that requires a client certificate.
fn start_clickhouse(dir: &Path, pki: &Pki) -> (Proc, u16, u16) {
    let (http, tcp, https) = (free_port(), free_port(), free_port());
    let tables = dir.join("tables");
    for d in ["tmp", "user_files", "format_schemas", "log"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::create_dir_all(&tables).unwrap();
    let template = std::fs::read_to_string(repo().join("deploy/local/clickhouse/config.xml.in")).unwrap();
    let tls = format!(
        "    <https_port>{https}</https_port>\n    <openSSL>\n        <server>\n            <certificateFile>{}</certificateFile>\n            <privateKeyFile>{}</privateKeyFile>\n            <caConfig>{}</caConfig>\n            <verificationMode>strict</verificationMode>\n            <loadDefaultCAFile>false</loadDefaultCAFile>\n            <cacheSessions>false</cacheSessions>\n            <disableProtocols>sslv2,sslv3</disableProtocols>\n            <preferServerCiphers>true</preferServerCiphers>\n        </server>\n    </openSSL>\n</yandex>",
        pki.server_cert.display(),
        pki.server_key.display(),
        pki.ca.display()
    );
    let config = template
        .replace("@DATA@", &dir.display().to_string())
        .replace("@TABLES@", &tables.display().to_string())
        .replace("@HTTP_PORT@", &http.to_string())
        .replace("@TCP_PORT@", &tcp.to_string())
        .replace("</yandex>", &tls);
    std::fs::write(dir.join("config.xml"), config).unwrap();
    std::fs::copy(repo().join("deploy/local/clickhouse/users.xml"), dir.join("users.xml")).unwrap();
    let server = Proc::spawn(
        "clickhouse-tls",
        Command::new("clickhouse-server").arg(format!("--config-file={}", dir.join("config.xml").display())).current_dir(dir),
        dir,
    );
    (server, http, https)
}

fn collector_config(dir: &Path, name: &str, https: u16, database: &str, tls: &str) -> PathBuf {
    let p = dir.join(format!("{name}.yaml"));
    std::fs::write(&p, format!("clickhouse:\n  url: https://127.0.0.1:{https}\n  database: {database}\n{tls}")).unwrap();
    p
}

fn posture(cfg: &Path) -> std::process::Output {
    Command::new(bin("driftwatch-collector")).args(["posture", "--format", "json", "--config"]).arg(cfg).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_stores_to_clickhouse_over_mutual_tls() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let pki = pki(work.path());
    let ch_dir = work.path().join("clickhouse");
    std::fs::create_dir_all(&ch_dir).unwrap();
    let (server, http, https) = start_clickhouse(&ch_dir, &pki);
    let http_url = format!("http://127.0.0.1:{http}");
    let client = reqwest::Client::new();
    let query = |sql: String| {
        let (client, url) = (client.clone(), http_url.clone());
        async move {
            let r = client.post(&url).body(sql).send().await.ok()?;
            r.status().is_success().then_some(())?;
            r.text().await.ok()
        }
    };
    wait_for("the TLS ClickHouse to answer", 60, async || query("SELECT 1".into()).await).await;
    // The HTTPS port listens once the server answers on HTTP.
    let log = || format!("{}\n{}", server.log(), std::fs::read_to_string(ch_dir.join("log/clickhouse-server.err.log")).unwrap_or_default());
    wait_for("the HTTPS port", 30, async || std::net::TcpStream::connect(("127.0.0.1", https)).ok()).await;

    let database = unique("dw_tls");
    let tls = format!(
        "  tls:\n    ca_file: {}\n    cert_file: {}\n    key_file: {}\n",
        pki.ca.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    // 1. With the CA and a client certificate: migrated and read over TLS.
    let cfg = collector_config(work.path(), "mutual", https, &database, &tls);
    let out = posture(&cfg);
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), log());
    let migrations = query(format!("SELECT count() FROM {database}.schema_migrations")).await.unwrap();
    assert!(migrations.trim().parse::<u32>().unwrap() >= 16, "every migration recorded over TLS: {migrations}");

    // 2. Without the CA the server's certificate is refused (the web PKI's
    //    roots do not sign it).
    let client_only = format!("  tls:\n    cert_file: {}\n    key_file: {}\n", pki.client_cert.display(), pki.client_key.display());
    let out = posture(&collector_config(work.path(), "no-ca", https, &database, &client_only));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("UnknownIssuer"), "{stderr}");

    // 3. Without a client certificate the server refuses the connection.
    let ca_only = format!("  tls:\n    ca_file: {}\n", pki.ca.display());
    let out = posture(&collector_config(work.path(), "no-client-cert", https, &database, &ca_only));
    assert!(!out.status.success(), "a server requiring a client certificate took none");

    // 4. TLS settings with an http:// URL are refused at start, named.
    let plain = work.path().join("plain.yaml");
    std::fs::write(&plain, format!("clickhouse:\n  url: {http_url}\n  database: {database}\n{tls}")).unwrap();
    let out = Command::new(bin("driftwatch-collector")).args(["check-config", "--config"]).arg(&plain).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("clickhouse.tls: set, but clickhouse.url"), "{stderr}");

    query(format!("DROP DATABASE IF EXISTS {database}")).await;
    drop(server);
    tokio::time::sleep(Duration::from_millis(100)).await;
}
