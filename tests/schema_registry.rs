//! Confluent's wire format through a schema registry: an agent with
//! `kafka.wire_format: confluent` registers its schemas and frames its
//! records with the ids; a collector with `kafka.schema_registry` fetches
//! each writer schema once (waiting while the registry cannot answer) and
//! evaluates the records; fastavro (an independent Avro implementation)
//! reads the agent's framing and writes a newer writer's record whose enum
//! symbol the collector does not know, which it reads as the default; an id
//! the registry does not have is dead-lettered with the registry's answer.
//!
//! No schema registry installs from the package registries these machines
//! reach (Confluent's ships on Maven and Docker, Karapace is not on PyPI),
//! so the registry here is a double that answers as Confluent's REST API
//! reference documents it: `POST /subjects/{subject}/versions` →
//! `{"id": n}`, `GET /schemas/ids/{id}` → `{"schema": "…"}` or 404
//! `{"error_code": 40403, …}`, 5xx `{"error_code": 50001, …}`, with its
//! content type `application/vnd.schemaregistry.v1+json`.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use driftwatch_tests::*;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message as _;
use serde_json::{json, Value};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Default)]
struct Registry {
    /// Schemas by id (id = index + 1), as JSON text.
    schemas: Vec<String>,
    /// Each registration: subject and id, with the request's content type.
    registered: Vec<(String, u32, String)>,
    /// Each schema asked for, and the status answered.
    asked: Vec<(u32, u16)>,
    /// How many of the next schema requests fail with 503.
    unavailable: usize,
}

type Shared = Arc<Mutex<Registry>>;

fn answer(status: StatusCode, body: Value) -> impl IntoResponse {
    (status, [("content-type", CONTENT_TYPE)], body.to_string())
}

async fn register(State(r): State<Shared>, UrlPath(subject): UrlPath<String>, headers: HeaderMap, body: String) -> impl IntoResponse {
    let invalid = || {
        answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"error_code": 42201, "message": "Either the input schema or one its references is invalid"}),
        )
    };
    let Some(text) = serde_json::from_str::<Value>(&body).ok().and_then(|v| v["schema"].as_str().map(String::from)) else {
        return invalid();
    };
    let Ok(parsed) = serde_json::from_str::<Value>(&text) else { return invalid() };
    let canonical = parsed.to_string();
    let mut r = r.lock().unwrap();
    let id = match r.schemas.iter().position(|s| *s == canonical) {
        Some(i) => i as u32 + 1,
        None => {
            r.schemas.push(canonical);
            r.schemas.len() as u32
        }
    };
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    r.registered.push((subject, id, content_type));
    answer(StatusCode::OK, json!({ "id": id }))
}

async fn schema_by_id(State(r): State<Shared>, UrlPath(id): UrlPath<u32>) -> impl IntoResponse {
    let mut r = r.lock().unwrap();
    let (status, body) = if r.unavailable > 0 {
        r.unavailable -= 1;
        (StatusCode::SERVICE_UNAVAILABLE, json!({"error_code": 50001, "message": "Error in the backend data store"}))
    } else {
        match r.schemas.get((id as usize).wrapping_sub(1)) {
            Some(s) => (StatusCode::OK, json!({ "schema": s })),
            None => (StatusCode::NOT_FOUND, json!({"error_code": 40403, "message": format!("Schema {id} not found")})),
        }
    };
    r.asked.push((id, status.as_u16()));
    answer(status, body)
}

async fn start_registry(unavailable: usize) -> (Shared, String) {
    let shared: Shared = Arc::new(Mutex::new(Registry { unavailable, ..Default::default() }));
    let app = axum::Router::new()
        .route("/subjects/{subject}/versions", axum::routing::post(register))
        .route("/schemas/ids/{id}", axum::routing::get(schema_by_id))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (shared, url)
}

/// fastavro's side (tests/interop/confluent_framing.py).
fn fastavro(args: &[&str]) -> String {
    let out = Command::new("python3").arg(repo().join("tests/interop/confluent_framing.py")).args(args).output().expect("python3");
    assert!(out.status.success(), "fastavro {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn avsc(name: &str) -> String {
    repo().join("schemas/avro").join(name).display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_in_confluents_wire_format_round_trip_through_a_registry() {
    services_up();
    // The registry fails the collector's first two schema requests.
    let (registry, url) = start_registry(2).await;
    let work = tempfile::tempdir().unwrap();
    let host = work.path().join("host");
    let asset = unique("asset");
    write_host_file(&host, "/etc/machine-id", &format!("{asset}\n"), 0o444);
    write_host_file(&host, "/etc/hostname", "registry-host\n", 0o644);
    write_host_file(&host, "/etc/ssh/sshd_config", "PermitRootLogin no\n", 0o600);

    let (_receiver, addr) = Receiver::start().await;
    let names = Names::new();
    let (cfg, port) = names.collector_config_with_api(work.path(), &format!("http://{addr}/hook"), "");
    let text = std::fs::read_to_string(&cfg).unwrap().replacen("kafka:\n", &format!("kafka:\n  schema_registry: {{url: \"{url}\"}}\n"), 1);
    std::fs::write(&cfg, text).unwrap();
    create_topics(&cfg);
    let mut collector =
        Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    let agent_cfg = work.path().join("agent.yaml");
    std::fs::write(
        &agent_cfg,
        format!(
            "root: {}\nstate_dir: {}\nkafka:\n  brokers: {BROKERS}\n  wire_format: confluent\n  schema_registry: {{url: \"{url}\"}}\n  topics:\n{}heartbeat_secs: 0\n",
            host.display(),
            work.path().join("state").display(),
            names.topics_yaml(false)
        ),
    )
    .unwrap();
    let mut agent = Proc::spawn("agent", Command::new(bin("driftwatch-agent")).arg("run").arg("--config").arg(&agent_cfg), work.path());

    // The agent's snapshot is evaluated: the collector waited out the
    // registry's failures and lost nothing.
    wait_status(&names.database, &asset, "linux.sshd.root_login_disabled", None, "pass", 90).await;
    let (registered, asked) = {
        let r = registry.lock().unwrap();
        (r.registered.clone(), r.asked.clone())
    };
    let subjects: Vec<&str> = registered.iter().map(|(s, _, _)| s.as_str()).collect();
    for stream in ["snapshots", "audit", "sla"] {
        assert!(subjects.contains(&format!("{}-value", names.topic(stream)).as_str()), "{subjects:?}");
    }
    assert!(registered.iter().all(|(_, _, ct)| ct == CONTENT_TYPE), "{registered:?}");
    let snapshot_id = registered.iter().find(|(s, _, _)| s.starts_with(&names.topic("snapshots"))).unwrap().1;
    // The first two answers were 503; every id was then fetched once and
    // not asked again.
    assert!(asked.len() >= 3 && asked[..2].iter().all(|(_, status)| *status == 503), "{asked:?}");
    for (i, (id, status)) in asked.iter().enumerate().skip(2) {
        assert_eq!(*status, 200, "{asked:?}");
        assert!(!asked[i + 1..].iter().any(|(other, _)| other == id), "id {id} asked again after it was fetched: {asked:?}");
    }
    assert!(asked.contains(&(snapshot_id, 200)), "{asked:?}");

    // On the topic: Confluent's framing, which fastavro reads with the
    // schema file alone.
    let reader = topic_reader(&names.topic("snapshots"));
    let m = tokio::time::timeout(Duration::from_secs(30), reader.recv()).await.expect("a snapshot record").unwrap();
    let payload = m.payload().unwrap();
    assert_eq!(payload[0], 0, "Confluent's magic byte");
    let read: Value = serde_json::from_str(&fastavro(&["read", &avsc("config_snapshot.avsc"), &hex::encode(payload)])).unwrap();
    assert_eq!(read["schema_id"].as_u64(), Some(snapshot_id as u64));
    assert_eq!(read["record"]["asset"]["id"], asset.as_str());

    // A newer writer's schema (an outcome symbol this collector lacks),
    // registered, and a record fastavro writes with it: stored, its outcome
    // read as the enum's default.
    let newer = std::fs::read_to_string(avsc("audit_event.avsc"))
        .unwrap()
        .replace(r#""symbols": ["success", "failure", "unknown"]"#, r#""symbols": ["success", "failure", "unknown", "partial"]"#);
    let newer_file = work.path().join("audit_event.newer.avsc");
    std::fs::write(&newer_file, &newer).unwrap();
    let subject = format!("{}-value", names.topic("audit"));
    let id: Value = reqwest::Client::new()
        .post(format!("{url}/subjects/{subject}/versions"))
        .header("content-type", CONTENT_TYPE)
        .body(json!({ "schema": newer }).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let newer_id = id["id"].as_u64().unwrap();
    let other = unique("newer");
    let event = json!({
        "event_id": other, "asset_id": other, "hostname": "h", "source": "authlog", "timestamp": chrono::Utc::now().timestamp_millis(),
        "actor": {"user": "alice", "uid": null, "auid": null, "groups": []}, "action": "ssh_login", "object": null,
        "outcome": "partial", "source_address": null, "raw": "raw", "extra": {}
    });
    let framed = hex::decode(fastavro(&["write", &newer_file.display().to_string(), &newer_id.to_string(), &event.to_string()])).unwrap();
    // And one naming an id the registry does not have.
    let mut unknown = framed.clone();
    unknown[1..5].copy_from_slice(&999u32.to_be_bytes());
    let producer: FutureProducer = rdkafka::config::ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
    let audit_topic = names.topic("audit");
    for payload in [&unknown, &framed] {
        let record = FutureRecord::to(&audit_topic).key(other.as_str()).payload(payload).headers(signed_as(&other, payload));
        producer.send(record, Duration::from_secs(10)).await.unwrap();
    }
    let sql = format!("SELECT outcome FROM {}.audit_events WHERE event_id = '{other}'", names.database);
    let rows = wait_for("the newer writer's event to be stored", 60, async || try_query(&sql).await.ok().filter(|r| !r.is_empty())).await;
    assert_eq!(rows[0]["outcome"], "unknown");
    let dead = topic_reader(&names.topic("dead-letter"));
    let letter = tokio::time::timeout(Duration::from_secs(30), dead.recv()).await.expect("a dead letter").unwrap();
    let reason = header_text(&letter, "driftwatch.reason").unwrap();
    assert!(reason.contains("answered 404: Schema 999 not found (error code 40403)"), "{reason}");
    assert_eq!(letter.payload(), Some(&unknown[..]), "the record as produced");

    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap();
    for (outcome, at_least) in [("fetched", 2), ("unreachable", 2), ("refused", 1)] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("driftwatch_schema_registry_requests_total{{outcome=\"{outcome}\"}}")))
            .unwrap_or_else(|| panic!("no {outcome} count"));
        let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n >= at_least as f64, "{line}");
    }
    assert!(collector.alive() && agent.alive());
    names.drop_database().await;
}
