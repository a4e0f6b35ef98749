//! Every Kafka client the project makes authenticates with the settings of
//! `kafka.properties`: a broker of the test's own (tansu, the broker the
//! services script installs) that requires SASL/SCRAM-SHA-512, with one
//! user per role. The collector's admin client (`topics`), its consumer
//! group and dead-letter producer, `dead-letters list`, and the agent's
//! producer all get through with their role's credentials; a wrong
//! password or none is refused.
//!
//! SASL_SSL, as a secured Kafka is run: tansu 0.6 cannot serve TLS itself
//! (its `--cert` and `--key` options exclude each other), so TLS is
//! terminated in front of it by stunnel (Debian's `stunnel4`, as a TLS
//! load balancer or sidecar would), with a certificate of a CA of the
//! test's own, and the broker advertises the TLS address: every
//! connection a client makes, after bootstrap too, is TLS. A client that
//! does not trust the CA, or speaks plaintext, gets nowhere.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use driftwatch_tests::*;
use rdkafka::producer::{FutureProducer, FutureRecord};

fn tansu() -> std::path::PathBuf {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from).unwrap_or_default();
    let installed = home.join(".cargo/bin/tansu");
    if installed.exists() {
        installed
    } else {
        "tansu".into()
    }
}

/// tansu on `port` with its data in `dir`, advertising `advertised`;
/// with `--authentication` when `authenticated`.
fn broker(dir: &Path, port: u16, advertised: u16, authenticated: bool) -> Proc {
    let url = format!("tcp://127.0.0.1:{port}");
    let mut cmd = Command::new(tansu());
    cmd.current_dir(dir).args([
        "broker",
        "--listener-url",
        &url,
        "--advertised-listener-url",
        &format!("tcp://127.0.0.1:{advertised}"),
        "--storage-engine",
        "sqlite://tansu.db",
    ]);
    if authenticated {
        cmd.arg("--authentication");
    }
    let p = Proc::spawn(if authenticated { "tansu-sasl" } else { "tansu-setup" }, &mut cmd, dir);
    wait_listening("tansu", port);
    p
}

/// Waits up to 30 s for something to listen on loopback `port`.
fn wait_listening(what: &str, port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `driftwatch-collector topics` against `brokers`.
fn topics(config: &Path, brokers: &str) -> std::process::Output {
    Command::new(bin("driftwatch-collector"))
        .args(["topics", "--partitions", "2", "--config"])
        .arg(config)
        .args(["--brokers", brokers])
        .output()
        .unwrap()
}

/// `kafka.properties` for SCRAM-SHA-512 as `user` over TLS, trusting the
/// CA file `ca` (none: the system's CAs).
fn scram(user: &str, password: &str, ca: Option<&Path>) -> String {
    let ca = ca.map(|c| format!("    ssl.ca.location: {}\n", c.display())).unwrap_or_default();
    format!(
        "  properties:\n    security.protocol: SASL_SSL\n{ca}    sasl.mechanism: SCRAM-SHA-512\n    sasl.username: {user}\n    sasl.password: {password}\n"
    )
}

/// stunnel accepting TLS on `tls` (the certificate of `pki`) and passing
/// the bytes on to `inner`.
fn tls_front(dir: &Path, pki: &Pki, tls: u16, inner: u16) -> Proc {
    let conf = dir.join("stunnel.conf");
    std::fs::write(
        &conf,
        format!(
            "foreground = yes\npid =\n[kafka]\naccept = 127.0.0.1:{tls}\nconnect = 127.0.0.1:{inner}\ncert = {}\nkey = {}\n",
            pki.server_cert.display(),
            pki.server_key.display()
        ),
    )
    .unwrap();
    let p = Proc::spawn("stunnel", Command::new("stunnel4").arg(&conf), dir);
    wait_listening("stunnel", tls);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kafka_client_authenticates_with_its_roles_credentials() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("broker");
    std::fs::create_dir_all(&data).unwrap();
    let (port, tls) = (free_port(), free_port());
    let brokers = format!("127.0.0.1:{tls}");
    let pki = pki(work.path());
    // Users are made on the broker (on its own port) before it requires
    // them.
    let mut setup = broker(&data, port, port, false);
    for (user, password) in [("driftwatch-agent", "agent-pw"), ("driftwatch-collector", "collector-pw")] {
        let out = Command::new(tansu())
            .args(["user", "create", "--broker", &format!("tcp://127.0.0.1:{port}"), "--mechanism", "scram512", user, password])
            .output()
            .unwrap();
        assert!(out.status.success(), "tansu user create {user}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(setup.terminate(10), "the setup broker stops");
    let _broker = broker(&data, port, tls, true);
    let _tls = tls_front(work.path(), &pki, tls, port);
    let ca = Some(pki.ca.as_path());

    let host = work.path().join("host");
    let asset = unique("asset");
    write_host_file(&host, "/etc/machine-id", &format!("{asset}\n"), 0o444);
    write_host_file(&host, "/etc/ssh/sshd_config", "PermitRootLogin no\n", 0o600);
    let (_receiver, addr) = Receiver::start().await;
    let names = Names::new();
    let cfg = names.collector_config(work.path(), &format!("http://{addr}/hook"));
    let base = std::fs::read_to_string(&cfg).unwrap();
    let with =
        |properties: &str| base.replacen("kafka:\n  brokers: 127.0.0.1:9092\n", &format!("kafka:\n  brokers: {brokers}\n{properties}"), 1);
    let text = with(&scram("driftwatch-collector", "collector-pw", ca));
    assert!(text.contains(&brokers), "the test's broker replaces the local one");
    std::fs::write(&cfg, &text).unwrap();
    // The admin client: refused without credentials (plaintext to a TLS
    // port), with a wrong password, or without trusting the broker's CA;
    // through with the collector's.
    let refused = [
        ("none", String::new()),
        ("wrong", scram("driftwatch-collector", "not-it", ca)),
        ("untrusted", scram("driftwatch-collector", "collector-pw", None)),
    ];
    for (name, properties) in refused {
        let bad = work.path().join(format!("collector-{name}.yaml"));
        std::fs::write(&bad, with(&properties)).unwrap();
        let brokers = brokers.clone();
        let out = tokio::task::spawn_blocking(move || topics(&bad, &brokers)).await.unwrap();
        assert!(
            !out.status.success(),
            "{name}: topics went through: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = topics(&cfg, &brokers);
    assert!(out.status.success(), "topics: {}", String::from_utf8_lossy(&out.stderr));

    // The consumer group and the agent's producer: a snapshot is evaluated.
    let _collector = Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    let agent_cfg = work.path().join("agent.yaml");
    std::fs::write(
        &agent_cfg,
        format!(
            "root: {}\nstate_dir: {}\nkafka:\n  brokers: {brokers}\n{}  topics:\n{}heartbeat_secs: 0\n",
            host.display(),
            work.path().join("state").display(),
            scram("driftwatch-agent", "agent-pw", ca),
            names.topics_yaml(false)
        ),
    )
    .unwrap();
    let _agent = Proc::spawn("agent", Command::new(bin("driftwatch-agent")).arg("run").arg("--config").arg(&agent_cfg), work.path());
    wait_status(&names.database, &asset, "linux.sshd.root_login_disabled", None, "pass", 120).await;

    // The dead-letter producer, and `dead-letters list`'s consumer.
    let producer: FutureProducer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("security.protocol", "SASL_SSL")
        .set("ssl.ca.location", pki.ca.to_str().unwrap())
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", "driftwatch-agent")
        .set("sasl.password", "agent-pw")
        .create()
        .unwrap();
    let garbage = b"not a record".to_vec();
    producer.send(FutureRecord::to(&names.topic("audit")).key(asset.as_str()).payload(&garbage), Duration::from_secs(10)).await.unwrap();
    let listed = wait_for("the dead letter to be listed", 90, async || {
        let out = Command::new(bin("driftwatch-collector"))
            .args(["dead-letters", "list", "--format", "json", "--config"])
            .arg(&cfg)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (out.status.success() && text.contains("single-object")).then_some(text)
    })
    .await;
    assert!(listed.contains(&names.topic("audit")), "{listed}");
    names.drop_database().await;
}
