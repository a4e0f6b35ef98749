//! Helpers for tests against the real services: start them with the
//! project's own script, run the real binaries, receive webhooks, query
//! ClickHouse.

pub mod browser;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BROKERS: &str = "127.0.0.1:9092";
pub const CLICKHOUSE: &str = "http://127.0.0.1:8123";

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Starts (or checks) Kafka and ClickHouse with `deploy/local/services up`
/// and builds the binaries, once per test process.
pub fn services_up() {
    static UP: OnceLock<()> = OnceLock::new();
    UP.get_or_init(|| {
        let out = Command::new(repo().join("deploy/local/services")).arg("up").output().expect("running deploy/local/services");
        assert!(out.status.success(), "services up failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let out = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "driftwatch-agent", "-p", "driftwatch-collector"])
            .current_dir(repo())
            .output()
            .expect("running cargo build");
        assert!(out.status.success(), "building the binaries failed:\n{}", String::from_utf8_lossy(&out.stderr));
    });
}

/// Runs `deploy/local/services <args>` for services of a test's own: their
/// data under `local`, their ports in `env` (the script's settings).
pub fn private_services(local: &Path, env: &[(&str, String)], args: &[&str]) {
    let out = Command::new(repo().join("deploy/local/services"))
        .args(args)
        .env("DRIFTWATCH_LOCAL", local)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("running deploy/local/services");
    assert!(out.status.success(), "services {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// PEM files of a CA, a server certificate for 127.0.0.1 and a client
/// certificate, both signed by the CA.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

pub fn pki(dir: &Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair};
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    // Each with a name of its own: OpenSSL takes a certificate whose
    // issuer is its own subject for a self-signed one.
    let named = |sans: Vec<String>, cn: &str| {
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
    };
    let mut ca_params = named(Vec::new(), "Driftwatch test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cn = names[0].clone();
        let cert = named(names, &cn).signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()]);
    let (client_cert, client_key) = leaf(vec!["driftwatch-collector".into()]);
    Pki {
        ca: write("ca.pem", ca.pem()),
        server_cert: write("server.pem", server_cert),
        server_key: write("server.key", server_key),
        client_cert: write("client.pem", client_cert),
        client_key: write("client.key", client_key),
    }
}

/// Path of a workspace binary (built by [`services_up`]).
pub fn bin(name: &str) -> PathBuf {
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(Path::parent).expect("target dir").join(name)
}

/// A name unique to this test run, for databases, topics and groups.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple().to_string().get(..12).unwrap_or("x"))
}

/// A loopback port free to bind, for a server a test starts later.
///
/// Chosen below the kernel's ephemeral range (32768–60999 on Linux): a
/// port from `bind(":0")` is ephemeral, and between its release and the
/// server's bind any outgoing connection of a parallel test (a Kafka
/// client, an HTTP request) may take it ("Address already in use"). Each
/// test process walks its own stretch of 20000–32767, so two test
/// binaries do not hand out the same port either.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 32_768 - LOW;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(97) % SPAN;
    for _ in 0..SPAN {
        let port = (LOW + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..32768");
}

/// A child process killed when dropped; its output goes to a log file
/// that is printed if the test fails.
pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command, log_dir: &Path) -> Proc {
        let log = log_dir.join(format!("{name}.log"));
        let f = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .stdout(Stdio::from(f.try_clone().expect("dup")))
            .stderr(Stdio::from(f))
            .env("DRIFTWATCH_LOG", "info,driftwatch_collector=debug")
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        Proc { name: name.into(), child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the process with SIGTERM (a graceful stop: a collector
    /// finishes its batch and leaves its consumer group) and waits up to
    /// `secs` for it to exit; true if it did.
    pub fn terminate(&mut self, secs: u64) -> bool {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            if !self.alive() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        false
    }

    /// Kills the process with SIGKILL (a crash) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let exited = self.child.try_wait().ok().flatten();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let how = exited.map(|s| format!("exited early: {s}")).unwrap_or_else(|| "was running".into());
            eprintln!("----- {} log ({how}; {}) -----\n{}", self.name, self.log.display(), self.log());
        }
    }
}

/// A request's headers (lower-case names) and raw body.
pub type RawRequest = (std::collections::BTreeMap<String, String>, Vec<u8>);

/// A scripted answer: status, `Retry-After` seconds, seconds to stall first.
pub type ScriptedAnswer = (u16, Option<u64>, u64);

/// A local HTTP server that records every JSON body POSTed to it and
/// answers 200 to GET (a probe target).
#[derive(Clone, Default)]
pub struct Receiver {
    pub bodies: Arc<Mutex<Vec<Value>>>,
    /// Each request's headers (lower-case names) and raw body.
    pub raw: Arc<Mutex<Vec<RawRequest>>>,
}

impl Receiver {
    pub async fn start() -> (Receiver, SocketAddr) {
        let r = Receiver::default();
        let (bodies, raw) = (r.bodies.clone(), r.raw.clone());
        let app = axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let (bodies, raw) = (bodies.clone(), raw.clone());
                    async move {
                        let h = headers.iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string())).collect();
                        raw.lock().expect("lock").push((h, body.to_vec()));
                        if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                            bodies.lock().expect("lock").push(v);
                        }
                        "ok"
                    }
                }),
            )
            .route("/health", axum::routing::get(|| async { "ok" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (r, addr)
    }

    pub fn all(&self) -> Vec<Value> {
        self.bodies.lock().expect("lock").clone()
    }
}

/// Polls `f` every 200 ms until it returns `Some`, or panics after `secs`.
pub async fn wait_for<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out after {secs}s waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A number from a JSON row (64-bit integers come quoted from some
/// ClickHouse versions).
pub fn count(v: &Value) -> u64 {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or(0)
}

/// The column `n` of a query's first row (0 on an error or no row).
pub async fn number(sql: &str) -> u64 {
    try_query(sql).await.ok().and_then(|rows| rows.first().map(|r| count(&r["n"]))).unwrap_or(0)
}

/// Runs a query on ClickHouse and returns the rows (JSONEachRow); panics
/// with ClickHouse's message on error.
pub async fn query(sql: &str) -> Vec<Value> {
    try_query(sql).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Like [`query`], but an error (e.g. a table not created yet) is returned.
pub async fn try_query(sql: &str) -> Result<Vec<Value>, String> {
    try_exec(&format!("{sql} FORMAT JSONEachRow")).await
}

/// Runs a statement on ClickHouse; panics on error.
pub async fn exec(sql: &str) -> Vec<Value> {
    try_exec(sql).await.unwrap_or_else(|e| panic!("{e}"))
}

async fn try_exec(sql: &str) -> Result<Vec<Value>, String> {
    let resp =
        reqwest::Client::new().post(CLICKHOUSE).body(sql.to_string()).send().await.map_err(|e| format!("ClickHouse unreachable: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| format!("ClickHouse body: {e}"))?;
    if !status.is_success() {
        return Err(format!("ClickHouse: {sql}\n{text}"));
    }
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).map_err(|e| format!("row {l:?}: {e}"))).collect()
}

/// Creates the topics with the collector's own command.
pub fn create_topics(collector_config: &Path) {
    let out = Command::new(bin("driftwatch-collector"))
        .args(["topics", "--brokers", BROKERS, "--partitions", "3", "--config"])
        .arg(collector_config)
        .output()
        .expect("driftwatch-collector topics");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "topics: {said}");
    // The local broker is one: the replication factor follows it.
    assert!(said.contains("replication factor 1, chosen for 1 broker(s)"), "topics: {said}");
}

/// The `assets:` section of the tests' collector configurations: hosts'
/// own labels trusted (the default keeps them as `host_<key>`).
pub const TRUSTED_HOST_LABELS: &str = "assets:\n  host_labels: trusted\n";

/// Names for one isolated pipeline: its own topics, group and database.
#[derive(Clone)]
pub struct Names {
    pub prefix: String,
    pub database: String,
    pub group: String,
}

impl Names {
    pub fn new() -> Names {
        let prefix = unique("e2e");
        Names { database: format!("dw_{prefix}"), group: format!("{prefix}.collector"), prefix }
    }

    pub fn topic(&self, stream: &str) -> String {
        format!("{}.{stream}", self.prefix)
    }

    /// The `kafka.topics` section of a config (agent: without dead_letter).
    pub fn topics_yaml(&self, with_dead_letter: bool) -> String {
        let mut s =
            format!("    snapshots: {}\n    audit: {}\n    sla: {}\n", self.topic("snapshots"), self.topic("audit"), self.topic("sla"));
        if with_dead_letter {
            s.push_str(&format!("    dead_letter: {}\n", self.topic("dead-letter")));
        }
        s
    }

    /// A collector config for these names, with the repository's packs.
    pub fn collector_config(&self, dir: &Path, webhook: &str) -> PathBuf {
        self.collector_config_with_policies(dir, webhook, &repo().join("policies"))
    }

    /// A collector config for these names, with the packs in `policies`.
    /// Its operator trusts the labels hosts send ([`TRUSTED_HOST_LABELS`]):
    /// the tests' snapshots say `team=web` for routes, waivers and scores.
    pub fn collector_config_with_policies(&self, dir: &Path, webhook: &str, policies: &Path) -> PathBuf {
        let path = dir.join("collector.yaml");
        let text = format!(
            "kafka:\n  brokers: {BROKERS}\n  group_id: {}\n  topics:\n{}clickhouse:\n  url: {CLICKHOUSE}\n  database: {}\npolicies: {}\nbatch:\n  max_messages: 500\n  max_wait_ms: 200\n{TRUSTED_HOST_LABELS}alerts:\n  receivers:\n    - name: test\n      webhook: {{url: \"{webhook}\"}}\n  route:\n    receiver: test\n    group_by: [\"...\"]\n    group_wait: 0s\n    group_interval: 1s\napi:\n  listen: null\n",
            self.group,
            self.topics_yaml(true),
            self.database,
            policies.display()
        );
        std::fs::write(&path, text).expect("write collector config");
        path
    }

    /// [`Self::collector_config`] with the API listening on a free loopback
    /// port (returned), `api` (keys, limits, TLS) under `api:`.
    pub fn collector_config_with_api(&self, dir: &Path, webhook: &str, api: &str) -> (PathBuf, u16) {
        let cfg = self.collector_config(dir, webhook);
        let port = listen_api(&cfg, api);
        (cfg, port)
    }

    pub async fn drop_database(&self) {
        exec(&format!("DROP DATABASE IF EXISTS {}", self.database)).await;
    }
}

impl Default for Names {
    fn default() -> Self {
        Names::new()
    }
}

/// Makes the collector configuration at `cfg` serve its API on a free
/// loopback port (returned), with `api` (keys, limits, TLS) under `api:`.
pub fn listen_api(cfg: &Path, api: &str) -> u16 {
    let port = free_port();
    let text = std::fs::read_to_string(cfg).expect("read collector config");
    assert!(text.contains("api:\n  listen: null\n"), "{} has no `api: listen: null` to replace", cfg.display());
    let text = text.replace("api:\n  listen: null\n", &format!("api:\n  listen: 127.0.0.1:{port}\n{api}"));
    std::fs::write(cfg, text).expect("write collector config");
    port
}

/// A line under `api.keys`: a key named `name` whose secret is `secret`.
pub fn api_key(name: &str, secret: &str, scope: &str) -> String {
    use sha2::Digest;
    format!("    - {{name: {name}, sha256: {}, scope: {scope}}}\n", hex::encode(sha2::Sha256::digest(secret.as_bytes())))
}

/// A snapshot of a host labelled `team=web` with string facts.
pub fn snapshot(asset: &str, seq: i64, kind: driftwatch_schemas::SnapshotKind, facts: &[(&str, &str)]) -> driftwatch_schemas::Message {
    use driftwatch_schemas::{Asset, AssetKind, ConfigSnapshot, Fact, Message};
    Message::Snapshot(ConfigSnapshot {
        asset: Asset {
            id: asset.into(),
            kind: AssetKind::Host,
            hostname: "web-1".into(),
            labels: [("team".to_string(), "web".to_string())].into(),
        },
        agent_id: "test".into(),
        agent_version: "0".into(),
        snapshot_id: format!("{asset}-{seq}"),
        sequence: seq,
        collected_at: chrono::Utc::now(),
        kind,
        facts: facts.iter().map(|(p, v)| Fact { path: p.to_string(), value: (*v).into() }).collect(),
        removed_paths: vec![],
    })
}

/// The key the test agent of `asset` signs with, derived from the asset id
/// (tests keep no key files; a real agent makes its own at first start).
pub fn agent_key(asset: &str) -> driftwatch_schemas::identity::KeyPair {
    use sha2::Digest;
    let seed: [u8; 32] = sha2::Sha256::digest(format!("driftwatch-test-agent:{asset}")).into();
    driftwatch_schemas::identity::KeyPair::from_seed(&seed)
}

/// The signature headers `key` puts on a record whose value is `payload`
/// (`driftwatch_schemas::identity`), as the agent's producer does.
pub fn signed_by(key: &driftwatch_schemas::identity::KeyPair, payload: &[u8]) -> rdkafka::message::OwnedHeaders {
    use driftwatch_schemas::identity::{SIGNATURE_HEADER, SIGNER_HEADER};
    use rdkafka::message::{Header, OwnedHeaders};
    let (signer, signature) = key.sign(payload);
    OwnedHeaders::new()
        .insert(Header { key: SIGNER_HEADER, value: Some(signer) })
        .insert(Header { key: SIGNATURE_HEADER, value: Some(&signature) })
}

/// The headers of `asset`'s test agent ([`agent_key`]) for `payload`.
pub fn signed_as(asset: &str, payload: &[u8]) -> rdkafka::message::OwnedHeaders {
    signed_by(&agent_key(asset), payload)
}

/// A consumer of every partition of `topic` from its start, assigned
/// (it joins no group, so dropping it does not wait for the group to let
/// it leave).
pub fn topic_reader(topic: &str) -> rdkafka::consumer::StreamConsumer {
    use rdkafka::consumer::Consumer;
    let consumer: rdkafka::consumer::StreamConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", BROKERS)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("the topic's metadata");
    let mut assignment = rdkafka::TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            assignment.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning).expect("a partition");
        }
    }
    assert!(assignment.count() > 0, "{topic} has no partitions");
    consumer.assign(&assignment).expect("assign");
    consumer
}

/// A record's header `key`, as text.
pub fn header_text(m: &impl rdkafka::Message, key: &str) -> Option<String> {
    use rdkafka::message::Headers;
    m.headers()?.iter().find(|h| h.key == key).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Encodes `msg` and produces it to its stream's topic for `names`, keyed
/// by asset id and signed by the asset's test agent (as the agent does);
/// returns the partition it went to.
pub async fn produce(p: &rdkafka::producer::FutureProducer, names: &Names, msg: &driftwatch_schemas::Message) -> i32 {
    use driftwatch_schemas::Stream;
    let stream = match msg.stream() {
        Stream::Snapshots => "snapshots",
        Stream::Audit => "audit",
        Stream::Sla => "sla",
    };
    let topic = names.topic(stream);
    let payload = driftwatch_schemas::Encoder::new().expect("encoder").encode(msg).expect("encode");
    let headers = signed_as(msg.asset_id(), &payload);
    p.send(
        rdkafka::producer::FutureRecord::to(&topic).key(msg.asset_id()).payload(&payload).headers(headers),
        std::time::Duration::from_secs(10),
    )
    .await
    .expect("produce")
    .partition
}

/// Produces `msgs` as [`produce`] does, all in flight at once (fast for a
/// backlog); returns once every one is acknowledged, in order per asset.
pub async fn produce_all(p: &rdkafka::producer::FutureProducer, names: &Names, msgs: &[driftwatch_schemas::Message]) {
    use driftwatch_schemas::Stream;
    let mut encoder = driftwatch_schemas::Encoder::new().expect("encoder");
    let records: Vec<(String, String, Vec<u8>)> = msgs
        .iter()
        .map(|m| {
            let stream = match m.stream() {
                Stream::Snapshots => "snapshots",
                Stream::Audit => "audit",
                Stream::Sla => "sla",
            };
            (names.topic(stream), m.asset_id().to_string(), encoder.encode(m).expect("encode"))
        })
        .collect();
    let mut keys = std::collections::HashMap::new();
    let sends = records.iter().map(|(topic, key, payload)| {
        let headers = signed_by(keys.entry(key.clone()).or_insert_with(|| agent_key(key)), payload);
        p.send(rdkafka::producer::FutureRecord::to(topic).key(key).payload(payload).headers(headers), std::time::Duration::from_secs(30))
    });
    for r in futures_util::future::join_all(sends).await {
        r.expect("produce");
    }
}

/// The alerts in webhook notifications (Alertmanager's shape), one JSON
/// object each: `status`, `asset_id`, `control_id`, `severity`,
/// `frameworks`, `alertname`, `labels` (all), `instance` (the violation
/// id), `annotations`, `receiver`.
pub fn notified_alerts(bodies: &[serde_json::Value]) -> Vec<serde_json::Value> {
    bodies
        .iter()
        .flat_map(|b| {
            b["alerts"].as_array().cloned().unwrap_or_default().into_iter().map(move |a| {
                serde_json::json!({
                    "status": a["status"],
                    "asset_id": a["labels"]["asset"],
                    "control_id": a["labels"]["control"],
                    "severity": a["labels"]["severity"],
                    "frameworks": a["labels"]["frameworks"],
                    "alertname": a["labels"]["alertname"],
                    "labels": a["labels"],
                    "instance": a["instance"],
                    "annotations": a["annotations"],
                    "generator_url": a["generatorURL"],
                    "receiver": b["receiver"],
                })
            })
        })
        .collect()
}

/// A collector configuration for a group of collectors (the drift test
/// pack, alerts to `webhook`), where a dead member is noticed within
/// seconds (session timeout 6 s, not the default 45); topics created.
pub fn group_collector_config(names: &Names, dir: &Path, webhook: &str) -> PathBuf {
    let cfg = names.collector_config_with_policies(dir, webhook, &repo().join("tests/fixtures/packs/drift"));
    short_session(&cfg);
    create_topics(&cfg);
    cfg
}

/// Sets a collector config's consumer session timeout to 6 s (not the
/// default 45): a killed collector's group membership ends within seconds,
/// and a restarted one whose group kept the dead member's assignment (tansu
/// 0.6 does when it was the leader) rejoins within half a minute (see
/// `OrphanWatch` in `collector/src/ingest/kafka.rs`), not after two.
pub fn short_session(collector_config: &Path) {
    let text = std::fs::read_to_string(collector_config).expect("read the config").replacen(
        "kafka:\n",
        "kafka:\n  properties:\n    session.timeout.ms: \"6000\"\n    heartbeat.interval.ms: \"1000\"\n",
        1,
    );
    std::fs::write(collector_config, text).expect("write the config");
}

/// `driftwatch-collector run --config cfg`, named `name`, working in
/// `work/name`.
pub fn spawn_collector(work: &Path, name: &str, cfg: &Path) -> Proc {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir).expect("the collector's directory");
    Proc::spawn(name, std::process::Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(cfg), &dir)
}

/// Violation notifications per (asset, `firing` | `resolved`).
pub fn violation_counts(bodies: &[serde_json::Value]) -> std::collections::BTreeMap<(String, String), usize> {
    let mut m = std::collections::BTreeMap::new();
    for a in notified_alerts(bodies).iter().filter(|a| a["alertname"] == "violation") {
        let key = (a["asset_id"].as_str().unwrap_or_default().to_string(), a["status"].as_str().unwrap_or_default().to_string());
        *m.entry(key).or_default() += 1;
    }
    m
}

/// Violation pages sent so far (firing notifications, all assets).
pub fn pages(receiver: &Receiver) -> usize {
    violation_counts(&receiver.all()).iter().filter(|((_, s), _)| s == "firing").map(|(_, c)| c).sum()
}

/// A successful SSH login on `asset` by `user`: audit event `i` (its id
/// is `<asset>-<i:06>`, so a redelivery is the same event).
pub fn ssh_login(asset: &str, i: usize, hostname: &str, user: &str) -> driftwatch_schemas::Message {
    use driftwatch_schemas::{Actor, AuditEvent, AuditSource, Message, Outcome};
    Message::Audit(AuditEvent {
        event_id: format!("{asset}-{i:06}"),
        asset_id: asset.into(),
        hostname: hostname.into(),
        source: AuditSource::Authlog,
        timestamp: chrono::Utc::now(),
        actor: Actor { user: Some(user.into()), uid: None, auid: None, groups: vec![] },
        action: "ssh_login".into(),
        object: None,
        outcome: Outcome::Success,
        source_address: Some("10.0.0.1".into()),
        raw: format!("login {i}"),
        extra: Default::default(),
    })
}

/// The agent's heartbeat for `asset`, stamped now.
pub fn heartbeat(asset: &str) -> driftwatch_schemas::Message {
    driftwatch_schemas::Message::Sla(driftwatch_schemas::SlaMeasurement::heartbeat(asset, chrono::Utc::now()))
}

/// Every result in `db`, stored as an evaluation or confirmed by a later
/// snapshot (`0017_confirmations.sql`: an unchanged result is not stored
/// again), as a table expression with `asset_id`, `control_id`, `status`,
/// `evaluated_at`, `snapshot_id` and `sequence`.
pub fn results(db: &str) -> String {
    format!(
        "(SELECT asset_id, control_id, status, evaluated_at, snapshot_id, sequence FROM {db}.evaluations \
         UNION ALL SELECT asset_id, control_id, status, collected_at AS evaluated_at, snapshot_id, sequence \
         FROM {db}.confirmations ARRAY JOIN controls AS control_id, statuses AS status) AS results"
    )
}

/// Waits until `control` on `asset` has a result with `status` (of
/// snapshot `snapshot_id`, when given), stored or confirmed.
pub async fn wait_status(db: &str, asset: &str, control: &str, snapshot_id: Option<&str>, status: &str, secs: u64) {
    let snapshot = snapshot_id.map(|s| format!(" AND snapshot_id = '{s}'")).unwrap_or_default();
    let sql = format!("SELECT status FROM {} WHERE asset_id = '{asset}' AND control_id = '{control}'{snapshot}", results(db));
    wait_for(&format!("{control} on {asset} to be {status}"), secs, async || {
        let rows = try_query(&sql).await.ok()?;
        rows.iter().any(|r| r["status"] == status).then_some(())
    })
    .await;
}

/// A log without terminal colour codes.
pub fn strip_ansi(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Waits until snapshot `seq` of every asset is evaluated (it has
/// [`results`]; snapshot ids are `<asset>-<seq>`).
pub async fn wait_evaluated(db: &str, assets: &[String], seq: i64) {
    let list = assets.iter().map(|a| format!("'{a}-{seq}'")).collect::<Vec<_>>().join(",");
    wait_for(&format!("snapshot {seq} of every asset to be evaluated"), 120, async || {
        let rows =
            try_query(&format!("SELECT count(DISTINCT asset_id) AS n FROM {} WHERE snapshot_id IN ({list})", results(db))).await.ok()?;
        (rows.first()?["n"].as_str().and_then(|n| n.parse::<usize>().ok()).or_else(|| rows[0]["n"].as_u64().map(|n| n as usize))
            == Some(assets.len()))
        .then_some(())
    })
    .await;
}

/// A local stand-in for Slack's incoming webhooks or PagerDuty's Events API
/// v2 that holds to their contracts: it validates each payload as the real
/// service would (rejecting an invalid one with the service's status and
/// error body), answers with the service's success response, and can be
/// scripted to fail first (429 with `Retry-After`, 5xx, or a stall past the
/// client's timeout).
#[derive(Clone, Default)]
pub struct ContractServer {
    /// Every request accepted (valid and answered with success).
    pub accepted: Arc<Mutex<Vec<Value>>>,
    /// Every request, with the status it was answered.
    pub seen: Arc<Mutex<Vec<(u16, Value)>>>,
    /// Validation errors of rejected payloads.
    pub invalid: Arc<Mutex<Vec<String>>>,
    /// Answers to use before succeeding: (status, Retry-After seconds,
    /// stall seconds).
    pub script: Arc<Mutex<std::collections::VecDeque<ScriptedAnswer>>>,
}

/// Which contract a [`ContractServer`] holds to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    Slack,
    PagerDuty,
}

impl ContractServer {
    /// Serves `POST /` under `contract`.
    pub async fn start(contract: Contract) -> (ContractServer, SocketAddr) {
        use axum::http::StatusCode;
        use axum::response::IntoResponse;
        let s = ContractServer::default();
        let state = s.clone();
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move |body: axum::body::Bytes| {
                let st = state.clone();
                async move {
                    let v: Value = match serde_json::from_slice(&body) {
                        Ok(v) => v,
                        Err(e) => {
                            st.invalid.lock().expect("lock").push(format!("not JSON: {e}"));
                            return (StatusCode::BAD_REQUEST, "invalid_payload").into_response();
                        }
                    };
                    let problems = match contract {
                        Contract::Slack => slack_problems(&v),
                        Contract::PagerDuty => pagerduty_problems(&v),
                    };
                    if !problems.is_empty() {
                        st.invalid.lock().expect("lock").extend(problems.clone());
                        st.seen.lock().expect("lock").push((400, v));
                        return match contract {
                            Contract::Slack => (StatusCode::BAD_REQUEST, "invalid_blocks").into_response(),
                            Contract::PagerDuty => (
                                StatusCode::BAD_REQUEST,
                                axum::Json(serde_json::json!({"status": "invalid event", "message": "Event object is invalid", "errors": problems})),
                            )
                                .into_response(),
                        };
                    }
                    let scripted = st.script.lock().expect("lock").pop_front();
                    if let Some((status, retry_after, stall)) = scripted {
                        st.seen.lock().expect("lock").push((status, v));
                        if stall > 0 {
                            tokio::time::sleep(Duration::from_secs(stall)).await;
                        }
                        let mut resp = (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), "rate_limited").into_response();
                        if let Some(s) = retry_after {
                            resp.headers_mut().insert("retry-after", s.to_string().parse().expect("header"));
                        }
                        return resp;
                    }
                    st.seen.lock().expect("lock").push((if contract == Contract::Slack { 200 } else { 202 }, v.clone()));
                    st.accepted.lock().expect("lock").push(v.clone());
                    match contract {
                        Contract::Slack => (StatusCode::OK, "ok").into_response(),
                        Contract::PagerDuty => (
                            StatusCode::ACCEPTED,
                            axum::Json(serde_json::json!({"status": "success", "message": "Event processed", "dedup_key": v["dedup_key"]})),
                        )
                            .into_response(),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (s, addr)
    }

    pub fn accepted(&self) -> Vec<Value> {
        self.accepted.lock().expect("lock").clone()
    }

    pub fn seen(&self) -> Vec<(u16, Value)> {
        self.seen.lock().expect("lock").clone()
    }

    pub fn invalid(&self) -> Vec<String> {
        self.invalid.lock().expect("lock").clone()
    }

    /// Answers the next requests with these (status, Retry-After, stall).
    pub fn fail_next(&self, answers: &[ScriptedAnswer]) {
        self.script.lock().expect("lock").extend(answers.iter().copied());
    }
}

/// What Slack would reject in an incoming-webhook message (Block Kit
/// limits: ≤ 50 blocks, header plain_text ≤ 150, section text ≤ 3000, ≤ 10
/// fields of ≤ 2000, ≤ 10 context elements; text or blocks required).
pub fn slack_problems(v: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let has_text = v["text"].as_str().is_some_and(|t| !t.is_empty());
    let mut blocks: Vec<Value> = v["blocks"].as_array().cloned().unwrap_or_default();
    for a in v["attachments"].as_array().into_iter().flatten() {
        if let Some(c) = a.get("color") {
            if !c.as_str().is_some_and(|c| c.starts_with('#') && c.len() == 7 || ["good", "warning", "danger"].contains(&c)) {
                p.push(format!("attachment color {c}"));
            }
        }
        blocks.extend(a["blocks"].as_array().cloned().unwrap_or_default());
    }
    if !has_text && blocks.is_empty() {
        p.push("no_text".into());
    }
    if blocks.len() > 50 {
        p.push(format!("{} blocks > 50", blocks.len()));
    }
    let len = |x: &Value| x.as_str().map(|s| s.chars().count()).unwrap_or(0);
    for b in &blocks {
        match b["type"].as_str() {
            Some("header") => {
                if b["text"]["type"] != "plain_text" || len(&b["text"]["text"]) == 0 || len(&b["text"]["text"]) > 150 {
                    p.push("header must be plain_text of 1-150 characters".into());
                }
            }
            Some("section") => {
                let text_ok = b["text"].is_null()
                    || (["mrkdwn", "plain_text"].contains(&b["text"]["type"].as_str().unwrap_or("")) && len(&b["text"]["text"]) <= 3000);
                let fields = b["fields"].as_array().map(|f| f.len()).unwrap_or(0);
                let fields_ok = fields <= 10 && b["fields"].as_array().into_iter().flatten().all(|f| len(&f["text"]) <= 2000);
                if !text_ok || !fields_ok || (b["text"].is_null() && fields == 0) {
                    p.push(format!("bad section block {b}"));
                }
            }
            Some("context") => {
                if b["elements"].as_array().is_none_or(|e| e.is_empty() || e.len() > 10) {
                    p.push("context needs 1-10 elements".into());
                }
            }
            Some("divider" | "actions" | "image") => {}
            other => p.push(format!("unknown block type {other:?}")),
        }
    }
    p
}

/// What PagerDuty's Events API v2 would reject.
pub fn pagerduty_problems(v: &Value) -> Vec<String> {
    let mut p = Vec::new();
    if v["routing_key"].as_str().is_none_or(|k| k.len() != 32) {
        p.push("routing_key must be 32 characters".into());
    }
    let action = v["event_action"].as_str().unwrap_or("");
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        p.push(format!("event_action {action:?}"));
    }
    if v["dedup_key"].as_str().is_some_and(|k| k.len() > 255) {
        p.push("dedup_key longer than 255".into());
    }
    if action != "trigger" && v["dedup_key"].as_str().is_none_or(|k| k.is_empty()) {
        p.push("dedup_key is required to acknowledge or resolve".into());
    }
    if action == "trigger" {
        let pl = &v["payload"];
        if pl["summary"].as_str().is_none_or(|s| s.is_empty() || s.len() > 1024) {
            p.push("payload.summary must be 1-1024 characters".into());
        }
        if pl["source"].as_str().is_none_or(|s| s.is_empty()) {
            p.push("payload.source is required".into());
        }
        if !["critical", "error", "warning", "info"].contains(&pl["severity"].as_str().unwrap_or("")) {
            p.push(format!("payload.severity {}", pl["severity"]));
        }
        if let Some(t) = pl["timestamp"].as_str() {
            if chrono::DateTime::parse_from_rfc3339(t).is_err() {
                p.push("payload.timestamp is not ISO 8601".into());
            }
        }
    }
    p
}

/// Writes `text` at `host_path` under the host tree `root`, with `mode`.
pub fn write_host_file(root: &Path, host_path: &str, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let p = root.join(host_path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().expect("a parent")).expect("create the directory");
    std::fs::write(&p, text).expect("write the file");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("set the mode");
}

/// `driftwatch-collector ARGS --config CFG`, run to its end.
pub fn collector(args: &[&str], cfg: &Path) -> std::process::Output {
    Command::new(bin("driftwatch-collector")).args(args).arg("--config").arg(cfg).output().expect("running driftwatch-collector")
}

/// Its standard output; panics with its standard error if it failed.
pub fn collector_ok(args: &[&str], cfg: &Path) -> String {
    let out = collector(args, cfg);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Its answer with `--format json`, parsed.
pub fn collector_json(args: &[&str], cfg: &Path) -> serde_json::Value {
    let mut with = args.to_vec();
    with.extend(["--format", "json"]);
    serde_json::from_str(&collector_ok(&with, cfg)).expect("a JSON answer")
}

/// Its standard error, when it fails (panics if it succeeds).
pub fn collector_err(args: &[&str], cfg: &Path) -> String {
    let out = collector(args, cfg);
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}
