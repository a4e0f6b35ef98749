//! The collector's API: health and readiness, API keys (hashed, scoped,
//! rate-limited), silences created, listed and expired over HTTP, every
//! write in the audit table, and reads as the read-only ClickHouse user.

use std::process::Command;

use driftwatch_tests::*;
use serde_json::{json, Value};

/// A collector configuration (with the drift test pack, or the shipped
/// packs) whose API listens on a free loopback port, with `api` (keys,
/// limits, TLS) under `api:` and `extra` sections appended.
fn with_api(names: &Names, work: &std::path::Path, drift_pack: bool, api: &str, extra: &str) -> (std::path::PathBuf, u16) {
    let hook = "http://127.0.0.1:9/hook";
    let cfg = if drift_pack {
        names.collector_config_with_policies(work, hook, &repo().join("tests/fixtures/packs/drift"))
    } else {
        names.collector_config(work, hook)
    };
    let port = listen_api(&cfg, api);
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text + extra).unwrap();
    (cfg, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_scopes_silences_audit_and_rate_limit() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let names = Names::new();
    let api =
        format!("  rate_limit_per_minute: 5\n  keys:\n{}{}", api_key("ops", "ops-key", "write"), api_key("viewer", "viewer-key", "read"));
    let (cfg, port) = with_api(&names, work.path(), false, &api, "");
    create_topics(&cfg);
    let collector = Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_for("the API", 60, async || http.get(format!("{base}/healthz")).send().await.ok().filter(|r| r.status() == 200)).await;
    assert_eq!(http.get(format!("{base}/readyz")).send().await.unwrap().status(), 200);
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    for m in ["driftwatch_batches_stored_total", "driftwatch_rows_stored_total", "driftwatch_store_seconds_bucket"] {
        assert!(metrics.contains(m), "/metrics lacks {m}:\n{metrics}");
    }

    let silences = format!("{base}/api/v1/silences");
    assert_eq!(http.get(&silences).send().await.unwrap().status(), 401, "no key");
    assert_eq!(http.get(&silences).bearer_auth("nope").send().await.unwrap().status(), 401, "unknown key");
    let body = json!({"matchers": ["asset=web-1", "severity=~\"low|medium\""], "duration": "2h", "comment": "CHG-42 patching"});
    let r = http.post(&silences).header("x-api-key", "viewer-key").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 403, "a read key cannot write");

    let r = http.post(&silences).bearer_auth("ops-key").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers().get("x-driftwatch-audit").is_none(), "internal header stays internal");
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["created_by"], "ops");
    let id = created["id"].as_str().unwrap().to_string();
    let bad = http
        .post(&silences)
        .bearer_auth("ops-key")
        .json(&json!({"matchers": ["severity"], "duration": "1h", "comment": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("matchers[0]"), "the error names the field");

    let listed: Value = http.get(&silences).header("x-api-key", "viewer-key").send().await.unwrap().json().await.unwrap();
    assert!(listed.as_array().unwrap().iter().any(|s| s["id"] == id.as_str()), "{listed}");
    // The CLI sees the same silences.
    let out =
        Command::new(bin("driftwatch-collector")).args(["silence", "list", "--format", "json", "--config"]).arg(&cfg).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));

    assert_eq!(http.delete(format!("{silences}/{id}")).bearer_auth("ops-key").send().await.unwrap().status(), 204);
    let listed: Value = http.get(&silences).header("x-api-key", "viewer-key").send().await.unwrap().json().await.unwrap();
    assert!(!listed.as_array().unwrap().iter().any(|s| s["id"] == id.as_str()), "expired: {listed}");

    // Every write is in the audit table, with the key's name.
    let db = names.database.clone();
    let audit = wait_for("the audit rows", 30, async || {
        let rows =
            try_query(&format!("SELECT key_name, method, path, status, detail FROM {db}.api_audit ORDER BY at, method DESC")).await.ok()?;
        (rows.len() >= 3).then_some(rows)
    })
    .await;
    let summary: Vec<(String, String, u64)> = audit
        .iter()
        .map(|r| (r["key_name"].as_str().unwrap().to_string(), r["method"].as_str().unwrap().to_string(), r["status"].as_u64().unwrap()))
        .collect();
    assert!(summary.contains(&("ops".into(), "POST".into(), 201)), "{summary:?}");
    assert!(summary.contains(&("ops".into(), "POST".into(), 400)), "{summary:?}");
    assert!(summary.contains(&("ops".into(), "DELETE".into(), 204)), "{summary:?}");
    assert!(audit.iter().any(|r| r["detail"].as_str().unwrap().starts_with(&format!("silence {id} created"))));

    // The viewer key has used 4 of its 5 requests a minute.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = http.get(&silences).header("x-api-key", "viewer-key").send().await.unwrap();
        statuses.push((r.status().as_u16(), r.headers().get("retry-after").is_some()));
    }
    assert!(statuses.contains(&(429, true)), "rate limited with Retry-After: {statuses:?}");
    drop(collector);
    names.drop_database().await;
}

/// Waivers, posture and results over HTTP: a waiver posted through the API
/// turns a failing result into `waived` at once, posture shows both scores
/// (now and before), results carry the age of their evidence, and revoking
/// it makes the control fail again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waivers_posture_and_results() {
    use driftwatch_schemas::SnapshotKind;
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::FutureProducer;

    services_up();
    let work = tempfile::tempdir().unwrap();
    let names = Names::new();
    let (cfg, port) = with_api(
        &names,
        work.path(),
        true,
        &format!("  keys:\n{}{}", api_key("ops", "ops-key", "write"), api_key("ciso@example.com", "ciso-key", "admin")),
        "",
    );
    // Reads go through the read-only user (`clickhouse.reader`); one that
    // can write is refused at start.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let db_line = format!("  database: {}\n", names.database);
    std::fs::write(&cfg, text.replace(&db_line, &format!("{db_line}  reader: {{user: default}}\n"))).unwrap();
    let refused = collector_err(&["posture"], &cfg);
    assert!(refused.contains("clickhouse.reader: the user \"default\" can write (readonly = 0)"), "{refused}");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("reader: {user: default}", "reader: {user: driftwatch_reader}")).unwrap();
    create_topics(&cfg);
    let collector = Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    let base = format!("{}/api/v1", format_args!("http://127.0.0.1:{port}"));
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        async move {
            let r = http.get(path).bearer_auth("ops-key").send().await.ok()?;
            (r.status() == 200).then_some(())?;
            r.json::<Value>().await.ok()
        }
    };
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
    let asset = unique("api");
    produce(&producer, &names, &snapshot(&asset, 1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes")])).await;
    let results = format!("{base}/results?asset={asset}&control=t.root_login");
    let failing =
        wait_for("the failing result over HTTP", 60, async || get(results.clone()).await.filter(|v| v[0]["status"] == "fail")).await;
    assert!(failing[0]["evidence_at"].is_string() && failing[0]["evidence_age_secs"].as_i64().unwrap() >= 0, "{failing}");
    assert_eq!(failing[0]["labels"]["team"], "web");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let before = chrono::Utc::now().to_rfc3339();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    let body = json!({"control": "t.root_login", "scope": {"assets": [asset]}, "justification": "appliance",
                      "risk": "high", "ticket": "SEC-9", "expires": "2100-01-01T00:00:00Z"});
    // Approving a waiver takes an admin key; the approver is that key,
    // not what the body says; nothing is backdated.
    let post = |key: &'static str, body: Value| http.post(format!("{base}/waivers")).bearer_auth(key).json(&body).send();
    assert_eq!(post("ops-key", body.clone()).await.unwrap().status(), 403, "a write key cannot approve");
    let mut forged = body.clone();
    forged["approver"] = json!("ceo@example.com");
    let r = post("ciso-key", forged).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("is not this key"));
    let mut backdated = body.clone();
    backdated["starts"] = json!("2020-01-01T00:00:00Z");
    let r = post("ciso-key", backdated).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("cannot be backdated"));
    let r = post("ciso-key", body).await.unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!((created["created_by"].as_str(), created["approver"].as_str()), (Some("api:ciso@example.com"), Some("ciso@example.com")));

    wait_for("the waived result", 30, async || get(results.clone()).await.filter(|v| v[0]["status"] == "waived")).await;
    let now = get(format!("{base}/posture?framework=soc2")).await.unwrap();
    assert_eq!((now[0]["score"].as_f64(), now[0]["score_without_waivers"].as_f64()), (Some(100.0), Some(0.0)), "{now}");
    let then = get(format!("{base}/posture?framework=soc2&at={}", urlencode(&before))).await.unwrap();
    assert_eq!(then[0]["score"].as_f64(), Some(0.0), "{then}");
    let listed = get(format!("{base}/waivers")).await.unwrap();
    let w = listed["waivers"].as_array().unwrap().iter().find(|w| w["id"] == id.as_str()).cloned().unwrap();
    assert_eq!(w["state"], "in_force");

    assert_eq!(http.delete(format!("{base}/waivers/{id}")).bearer_auth("ops-key").send().await.unwrap().status(), 204);
    assert_eq!(http.delete(format!("{base}/waivers/{id}")).bearer_auth("ops-key").send().await.unwrap().status(), 409, "already revoked");
    wait_for("the control to fail again", 30, async || get(results.clone()).await.filter(|v| v[0]["status"] == "fail")).await;

    let db = names.database.clone();
    let audit = wait_for("the audit rows", 30, async || {
        let rows = try_query(&format!("SELECT method, status, detail FROM {db}.api_audit WHERE path LIKE '/api/v1/waivers%' ORDER BY at"))
            .await
            .ok()?;
        (rows.len() >= 4).then_some(rows)
    })
    .await;
    assert!(audit.iter().any(|r| r["detail"].as_str().unwrap().starts_with(&format!("waiver {id} created for t.root_login"))), "{audit:?}");
    assert!(audit.iter().any(|r| r["detail"] == format!("waiver {id} revoked").as_str()), "{audit:?}");
    // Reading the evidence is recorded too: who looked, at what.
    get(format!("{base}/evidence?asset={asset}")).await;
    let reads = wait_for("the evidence read in the audit table", 30, async || {
        let rows = try_query(&format!("SELECT key_name, detail FROM {db}.api_audit WHERE path = '/api/v1/evidence'")).await.ok()?;
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    assert_eq!(reads[0]["key_name"], "ops");
    assert!(reads[0]["detail"].as_str().unwrap().contains(&format!("asset={asset}")), "{reads:?}");
    // Who read: the API's queries of this asset ran as the reader, and
    // none as the writer (whose queries are not logged).
    exec("SYSTEM FLUSH LOGS").await;
    let readers = query(&format!(
        "SELECT DISTINCT user FROM system.query_log WHERE type = 2 AND query LIKE '%{asset}%' AND query NOT LIKE '%query_log%'"
    ))
    .await;
    assert_eq!(readers.iter().map(|r| r["user"].as_str().unwrap_or_default()).collect::<Vec<_>>(), ["driftwatch_reader"]);
    drop(collector);
    names.drop_database().await;
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

/// Every schema named in the OpenAPI document, with the document's
/// components so that references resolve.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    jsonschema::validator_for(&root).unwrap_or_else(|e| panic!("schema {schema}: {e}"))
}

fn check(doc: &Value, path: &str, schema: &Value, body: &Value) {
    let v = validator(doc, schema);
    let errors: Vec<String> = v.iter_errors(body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{path}: the answer does not match the OpenAPI document:\n{}\n{body:#}", errors.join("\n"));
}

/// The OpenAPI document at /api/v1/openapi.json describes what the API
/// answers: every GET of the document is called (with real ids), and each
/// answer, and each write's answer, is validated against its schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_answer() {
    use driftwatch_schemas::SnapshotKind;
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::FutureProducer;

    services_up();
    let work = tempfile::tempdir().unwrap();
    let names = Names::new();
    let extra = "slo:\n  objectives:\n    - {service: web, sli: {kind: availability, probes: [web]}, objective: 99.9, window: 30d}\nevaluation:\n  score_interval_secs: 1\n";
    // An admin key: approving a waiver is among the writes.
    let (cfg, port) = with_api(&names, work.path(), true, &format!("  keys:\n{}", api_key("ops", "ops-key", "admin")), extra);
    create_topics(&cfg);
    let started = chrono::Utc::now() - chrono::Duration::minutes(1);
    let collector = Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
    let asset = unique("oas");
    produce(&producer, &names, &snapshot(&asset, 1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "no")])).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    produce(&producer, &names, &snapshot(&asset, 2, SnapshotKind::Delta, &[("sshd.config.permitrootlogin", "yes")])).await;
    let db = names.database.clone();
    let a = asset.clone();
    wait_for("the drift and violation", 60, async || {
        let rows = try_query(&format!("SELECT count() AS n FROM {db}.drift_events WHERE asset_id = '{a}'")).await.ok()?;
        (rows[0]["n"] != "0" && rows[0]["n"] != 0).then_some(())
    })
    .await;

    let base = format!("http://127.0.0.1:{port}/api/v1");
    let http = reqwest::Client::new();
    let doc: Value = http.get(format!("{base}/openapi.json")).bearer_auth("ops-key").send().await.unwrap().json().await.unwrap();
    // Writes first, so the lists have something in them.
    for (path, body) in [
        ("/silences", json!({"matchers": [format!("asset={asset}")], "duration": "1h", "comment": "contract test"})),
        (
            "/waivers",
            json!({"requirement": "pci-dss:10.2.1", "scope": {"assets": [asset]}, "justification": "contract test", "risk": "low", "expires": "2100-01-01T00:00:00Z"}),
        ),
    ] {
        let r = http.post(format!("{base}{path}")).bearer_auth("ops-key").json(&body).send().await.unwrap();
        assert_eq!(r.status(), 201, "{path}");
        let schema = &doc["paths"][path]["post"]["responses"]["201"]["content"]["application/json"]["schema"];
        check(&doc, path, schema, &r.json().await.unwrap());
    }
    // An attestation, with an evidence file (multipart).
    let pdf = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n".to_vec();
    let form = || {
        reqwest::multipart::Form::new()
            .text("control_id", "t.access_review")
            .text("statement", "Reviewed 41 accounts; removed 3.")
            .part("file", reqwest::multipart::Part::bytes(pdf.clone()).file_name("review.pdf").mime_str("application/pdf").unwrap())
    };
    let r = http.post(format!("{base}/attestations")).bearer_auth("ops-key").multipart(form()).send().await.unwrap();
    assert_eq!(r.status(), 201, "attestation");
    let attestation: Value = r.json().await.unwrap();
    check(
        &doc,
        "/attestations",
        &doc["paths"]["/attestations"]["post"]["responses"]["201"]["content"]["application/json"]["schema"],
        &attestation,
    );
    assert_eq!(attestation["attested_by"], "ops", "the key's name, unless given");
    let sha256 = attestation["file_sha256"][0].as_str().unwrap().to_string();
    // Bytes that are not what their type says: 415, named.
    let lying = reqwest::multipart::Form::new()
        .text("control_id", "t.access_review")
        .text("statement", "x")
        .part("file", reqwest::multipart::Part::bytes(b"<html></html>".to_vec()).file_name("r.pdf").mime_str("application/pdf").unwrap());
    let r = http.post(format!("{base}/attestations")).bearer_auth("ops-key").multipart(lying).send().await.unwrap();
    assert_eq!(r.status(), 415);
    assert!(r.text().await.unwrap().contains("declared application/pdf but its bytes are text"));
    // A gap assigned: its tracking, then the list says so.
    let r = http
        .post(format!("{base}/gaps/soc2:CC6.1/tracking"))
        .bearer_auth("ops-key")
        .json(&json!({"assignee": "alice", "state": "in_progress", "note": "rolling out the fix"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "gap tracking");
    let tracking: Value = r.json().await.unwrap();
    check(
        &doc,
        "/gaps/{id}/tracking",
        &doc["paths"]["/gaps/{id}/tracking"]["post"]["responses"]["201"]["content"]["application/json"]["schema"],
        &tracking,
    );
    let r =
        http.post(format!("{base}/gaps/soc2:NOPE/tracking")).bearer_auth("ops-key").json(&json!({"assignee": "x"})).send().await.unwrap();
    assert_eq!(r.status(), 404, "a requirement the framework does not have");
    let check_control = reqwest::multipart::Form::new().text("control_id", "t.root_login").text("statement", "x");
    let r = http.post(format!("{base}/attestations")).bearer_auth("ops-key").multipart(check_control).send().await.unwrap();
    assert_eq!(r.status(), 400, "a check is not attested");

    let real = |name: &str| -> Option<String> {
        match name {
            "asset" => Some(asset.clone()),
            "control" => Some("t.root_login".into()),
            "framework" => Some("soc2".into()),
            "from" => Some(started.to_rfc3339()),
            _ => None,
        }
    };
    let mut called = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let Some(op) = ops.get("get") else { continue };
        let mut query: Vec<(String, String)> = Vec::new();
        let mut at = path.clone();
        for p in op["parameters"].as_array().unwrap() {
            let name = p["name"].as_str().unwrap();
            if p["in"] == "path" {
                // The path parameters of GETs: a control of the test pack,
                // the evidence file attested above.
                at = match (path.as_str(), name) {
                    ("/controls/{id}", "id") => path.replace("{id}", "t.root_login"),
                    ("/attestations/files/{sha256}", "sha256") => path.replace("{sha256}", &sha256),
                    ("/gaps/{id}/history", "id") => path.replace("{id}", "soc2:CC6.1"),
                    _ => panic!("{path}: a path parameter this test has no value for: {name}"),
                };
                continue;
            }
            // Required parameters, and the ones that select this test's data.
            if p["required"] == true || ["asset", "framework"].contains(&name) && path != "/violations" {
                let v =
                    real(name).or_else(|| p["example"].as_str().map(String::from)).unwrap_or_else(|| panic!("{path}: no value for {name}"));
                query.push((name.to_string(), v));
            }
        }
        let r = http.get(format!("{base}{at}")).bearer_auth("ops-key").query(&query).send().await.unwrap();
        assert_eq!(r.status(), 200, "{at}?{query:?}");
        let (ctype, schema) = op["responses"]["200"]["content"].as_object().unwrap().iter().next().unwrap();
        if ctype == "*/*" {
            // An evidence file: its own type, and the very bytes attested.
            assert_eq!(r.headers()["content-type"], "application/pdf");
            assert_eq!(r.bytes().await.unwrap().to_vec(), pdf, "{path}");
            continue;
        }
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with(ctype.as_str()), "{path}: content type");
        if ctype == "text/event-stream" {
            continue; // a stream: its events are Drift objects, checked below
        }
        let body: Value = r.json().await.unwrap();
        check(&doc, path, &schema["schema"], &body);
        called += 1;
        // The answers this test made sure are not empty.
        if ["/results", "/assets", "/controls", "/frameworks", "/drift", "/posture", "/slos"].contains(&path.as_str()) {
            assert!(!body.as_array().unwrap().is_empty(), "{path}: empty answer validates nothing");
        }
        if path == "/violations" {
            assert!(body["total"].as_u64().unwrap() >= 1, "{body}");
        }
        if path == "/frameworks" {
            // Whole catalogs: every SOC 2 criterion with its title, mapped or not.
            let soc2 = body.as_array().unwrap().iter().find(|f| f["key"] == "soc2").unwrap();
            assert_eq!(soc2["catalog_requirements"], 61, "{soc2}");
            let reqs = soc2["requirements"].as_array().unwrap();
            let cc11 = reqs.iter().find(|r| r["id"] == "CC1.1").unwrap();
            assert!(cc11["title"].as_str().is_some_and(|t| !t.is_empty()) && cc11["controls"].as_array().unwrap().is_empty(), "{cc11}");
            assert!(reqs.iter().any(|r| r["id"] == "CC6.1" && r["controls"].as_array().unwrap().contains(&json!("t.root_login"))));
        }
        if path == "/gaps" {
            let g = body.as_array().unwrap().iter().find(|g| g["id"] == "soc2:CC6.1").unwrap_or_else(|| panic!("{body}"));
            assert_eq!((g["assignee"].as_str(), g["state"].as_str()), (Some("alice"), Some("in_progress")), "{g}");
        }
        if path == "/gaps/{id}/history" {
            assert_eq!(body.as_array().unwrap().len(), 1, "{body}");
        }
        if path == "/attestations" {
            let listed = body.as_array().unwrap().iter().find(|a| a["control_id"] == "t.access_review").unwrap();
            assert_eq!((listed["state"].as_str(), listed["status"].as_str()), (Some("holding"), Some("pass")), "{listed}");
        }
        if path == "/controls/{id}" {
            let failing = body["not_passing"].as_array().unwrap();
            assert!(failing.iter().any(|r| r["asset_id"] == asset.as_str() && r["status"] == "fail"), "{body}");
            assert!(body["remediation"].as_str().unwrap().contains("PermitRootLogin no"), "{body}");
        }
    }
    assert!(called >= 15, "{called} GETs");
    let unknown = http.get(format!("{base}/controls/no.such.control")).bearer_auth("ops-key").send().await.unwrap();
    assert_eq!(unknown.status(), 404, "a control not in the packs");

    // /metrics: scores per framework, open violations per severity, consumer lag.
    let metrics = wait_for("scores, violations and lag in /metrics", 60, async || {
        let m = http.get(format!("http://127.0.0.1:{port}/metrics")).send().await.ok()?.text().await.ok()?;
        (m.contains(r#"driftwatch_compliance_score{framework="soc2",waivers="honoured"} 0"#)
            && m.contains(r#"driftwatch_open_violations{severity="high"} 1"#)
            && m.contains("driftwatch_consumer_lag{partition="))
        .then_some(m)
    })
    .await;
    assert!(metrics.contains(r#"driftwatch_compliance_score{framework="pci-dss",waivers="ignored"} 0"#), "{metrics}");
    // What the score covers: one of SOC 2's 61 criteria has evidence.
    assert!(metrics.contains(r#"driftwatch_compliance_coverage{framework="soc2"} 1.64"#), "{metrics}");
    drop(collector);
    names.drop_database().await;
}

/// HTTPS through rustls: with `api.tls`, the API answers over TLS with the
/// configured certificate, and a missing certificate file is a clear
/// configuration error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_https() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let names = Names::new();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (work.path().join("api.crt"), work.path().join("api.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let api = format!("  tls: {{cert: {}, key: {}}}\n  keys:\n{}", cert.display(), key.display(), self::api_key("ops", "ops-key", "read"));
    let (cfg, port) = with_api(&names, work.path(), false, &api, "");
    let text = std::fs::read_to_string(&cfg).unwrap();

    // A missing file is named at start.
    let broken = work.path().join("broken.yaml");
    std::fs::write(&broken, text.replace("api.key", "missing.key")).unwrap();
    let out = Command::new(bin("driftwatch-collector")).args(["check-config", "--config"]).arg(&broken).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("api.tls.key:"), "{}", String::from_utf8_lossy(&out.stderr));

    create_topics(&cfg);
    let collector = Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{port}");
    wait_for("the API over HTTPS", 60, async || https.get(format!("{base}/healthz")).send().await.ok().filter(|r| r.status() == 200)).await;
    let r = https.get(format!("{base}/api/v1/frameworks")).bearer_auth("ops-key").send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Plain HTTP is not served.
    let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/healthz")).send().await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true), "plain HTTP must not be answered");
    // A client that does not trust the certificate is refused.
    assert!(reqwest::Client::new().get(format!("{base}/healthz")).send().await.is_err());
    drop(collector);
    names.drop_database().await;
}

/// The API under abuse: a client that opens a connection and sends no
/// headers is cut off after `header_read_timeout_secs`; past
/// `max_connections` a connection is closed at once; a client guessing keys
/// is rate-limited by its address before authentication (429, not 401).
/// (`/readyz` without the store's error: tests/clickhouse_outage.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_holds_under_abuse() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    services_up();
    let work = tempfile::tempdir().unwrap();
    let names = Names::new();
    let api = format!(
        "  header_read_timeout_secs: 2\n  max_connections: 4\n  rate_limit_per_client_per_minute: 10\n  keys:\n{}",
        api_key("ops", "ops-key", "read")
    );
    let (cfg, port) = with_api(&names, work.path(), false, &api, "");
    create_topics(&cfg);
    let collector = Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    let base = format!("http://127.0.0.1:{port}");
    // No pooled connection: an idle one would hold a slot until the
    // header timeout closes it, racing the count below.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    wait_for("the API", 60, async || http.get(format!("{base}/healthz")).send().await.ok().filter(|r| r.status() == 200)).await;

    // Slowloris: half a request line, then nothing.
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), slow.read(&mut buf)).await.expect("closed, not held open");
    assert!(started.elapsed() >= std::time::Duration::from_millis(1500), "{:?}", started.elapsed());
    assert!(n.as_ref().map_or(true, |&n| n == 0 || String::from_utf8_lossy(&buf[..n]).contains("408")), "{n:?}");

    // Four idle connections hold every slot; a fifth is closed at accept.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut fifth = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _ = fifth.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), fifth.read(&mut buf)).await.expect("closed at once");
    assert!(n.map_or(true, |n| n == 0), "the fifth connection was served: {:?}", String::from_utf8_lossy(&buf));
    drop(held);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // Guessing keys: 401s until the client's share is spent, then 429s
    // with Retry-After, whatever the key.
    let guesser = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..14 {
        let r = guesser.get(format!("{base}/api/v1/frameworks")).bearer_auth(format!("guess-{i}")).send().await.unwrap();
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
        }
        statuses.push(r.status().as_u16());
    }
    assert!(statuses.contains(&401) && statuses.ends_with(&[429, 429]), "{statuses:?}");
    let r = guesser.get(format!("{base}/api/v1/frameworks")).bearer_auth("ops-key").send().await.unwrap();
    assert_eq!(r.status(), 429, "the right key too: the limit comes before authentication");
    drop(collector);
    names.drop_database().await;
}
