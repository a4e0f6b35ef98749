//! Every Grafana panel's query, expanded the way the ClickHouse plugin
//! expands it (`$__timeFilter`, `$__interval_s`, `$__fromTime`,
//! `$__toTime`, and Grafana's `${var:singlequote}` variables), runs on
//! ClickHouse 18.16 against test data and returns the columns its panel
//! expects, with rows; the same queries then run on a current engine
//! (chDB).

use std::path::Path;
use std::process::Command;

use driftwatch_tests::*;
use regex::Regex;
use serde_json::Value;

const INTERVAL_S: i64 = 60;

/// The plugin's `$__conditionalAll(condition, $var)`: `1=1` while `var` is
/// "All" (so a fleet of 100,000 assets never becomes an `IN` list of
/// 100,000 ids), else the condition.
fn conditional_all(sql: &str, all: bool) -> String {
    const MACRO: &str = "$__conditionalAll(";
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find(MACRO) {
        out.push_str(&rest[..at]);
        let body = &rest[at + MACRO.len()..];
        let mut depth = 1;
        let end = body
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map(|(i, _)| i)
            .expect("$__conditionalAll is closed");
        let (condition, var) = body[..end].rsplit_once(", $").expect("$__conditionalAll(condition, $var)");
        assert!(condition.contains(&format!("${{{var}:")), "$__conditionalAll on ${var} tests another variable: {condition}");
        out.push_str(if all { "1=1" } else { condition });
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    out
}

/// What Grafana and the plugin would send for `sql`, with the asset and
/// probe variables set to "All" or to two values.
fn expand_with(sql: &str, from: i64, to: i64, all: bool) -> String {
    let sql = &conditional_all(sql, all);
    let vars: &[(&str, &str)] = &[
        ("framework", "'soc2','pci-dss','hipaa','iso27001','nist-csf','nist-800-53','fedramp-low','fedramp-moderate','fedramp-high','cmmc','nerc-cip','gdpr','cis'"),
        ("asset", "'web-1','db-1'"),
        ("severity", "'critical','high','medium','low'"),
        ("probe", "'web'"),
        ("source", "'auditd','authlog','journald','k8s-audit'"),
    ];
    let mut s = sql.to_string();
    for (name, value) in vars {
        s = s.replace(&format!("${{{name}:singlequote}}"), value);
    }
    s = s.replace("${label_key}", "team").replace("${objective}", "99.9");
    let time_filter = Regex::new(r"\$__timeFilter\(([^)]+)\)").unwrap();
    s = time_filter
        .replace_all(&s, |c: &regex::Captures| format!("{0} >= toDateTime({from}) AND {0} <= toDateTime({to})", &c[1]))
        .into_owned();
    s.replace("$__interval_s", &INTERVAL_S.to_string())
        .replace("$__fromTime", &format!("toDateTime({from})"))
        .replace("$__toTime", &format!("toDateTime({to})"))
}

fn expand(sql: &str, from: i64, to: i64) -> String {
    expand_with(sql, from, to, false)
}

async fn seed(db: &str, now: i64) {
    let t = |ago: i64| now - ago;
    let stmts = [
        format!("INSERT INTO {db}.snapshots VALUES ('web-1','host','web-1',['team'],['web'],'ag1','0.1.0','s1',1,'full',{},{},10,[],'b',''), ('db-1','host','db-1',['team'],['db'],'ag2','0.1.0','s2',1,'full',{},{},10,[],'b','')", t(600), t(590), t(7200), t(7190)),
        // As the collector writes them: the mapping is in `controls`.
        format!("INSERT INTO {db}.evaluations VALUES ('web-1','linux.sshd.root_login_disabled','fail','high',{},'s1',1,[],'{{}}','','b',0), ('db-1','linux.sshd.root_login_disabled','pass','high',{},'s2',1,[],'{{}}','','b',0)", t(600), t(7200)),
        format!("INSERT INTO {db}.controls VALUES ('linux.sshd.root_login_disabled','SSH root login is disabled','high','linux-sshd',['soc2:CC6.1','pci-dss:2.2.6'],{}), ('linux.sshd.root_login_disabled','SSH root login is disabled','low','linux-sshd',['cis:5.2.10'],{})", t(60), t(86400)),
        format!("INSERT INTO {db}.violations VALUES ('v1','web-1','linux.sshd.root_login_disabled','SSH root login is disabled','high','opened',{},['soc2:CC6.1','pci-dss:2.2.6'],'{{}}','b'), ('v0','db-1','linux.sshd.root_login_disabled','SSH root login is disabled','high','opened',{},['soc2:CC6.1'],'{{}}','b'), ('v0','db-1','linux.sshd.root_login_disabled','SSH root login is disabled','high','resolved',{},['soc2:CC6.1'],'{{}}','b'), ('v2','web-1','linux.files.shadow_protected','shadow','critical','opened',{},['soc2:CC6.1'],'{{}}','b')", t(600), t(90000), t(80000), t(10 * 86400)),
        format!("INSERT INTO {db}.drift_events VALUES ('d1','web-1','linux.sshd.root_login_disabled','SSH root login is disabled','high','regressed','pass','fail',{},['soc2:CC6.1'],'{{\"sshd.config.permitrootlogin\":\"no\"}}','{{\"sshd.config.permitrootlogin\":\"yes\"}}',['sshd.config.permitrootlogin'],'e1','auditd','syscall','mallory','/etc/ssh/sshd_config',{},'/etc/ssh/sshd_config','s1',1,'b')", t(600), t(610)),
        format!("INSERT INTO {db}.audit_events VALUES ('e1','web-1','web-1','auditd',{},0,'mallory',1001,'mallory',[],'sudo','/usr/bin/vi /etc/ssh/sshd_config','success','', '',[],[],'b'), ('e2','web-1','web-1','authlog',{},0,'root',NULL,'',[],'ssh_login_failed','','failure','203.0.113.9','',[],[],'b'), ('e3','db-1','db-1','k8s-audit',{},0,'eve',NULL,'',[],'k8s_get','secrets kube-system/x','success','10.0.0.7','',[],[],'b'), ('e4','db-1','db-1','authlog',{},0,'',NULL,'',[],'events_dropped','','unknown','','',[],[],'b')", t(620), t(500), t(400), t(300)),
        format!("INSERT INTO {db}.sla_measurements (asset_id, probe_id, target, kind, timestamp, timestamp_ms, success, latency_us, status_code, error, cpu_percent, memory_used_bytes, memory_total_bytes, disk_used_percent, load1, batch_id) VALUES ('web-1','web','https://x/','http',{},0,1,120000,200,'',NULL,NULL,NULL,NULL,NULL,'b'), ('web-1','web','https://x/','http',{},0,0,5000000,NULL,'timeout',NULL,NULL,NULL,NULL,NULL,'b')", t(120), t(60)),
        format!("INSERT INTO {db}.sla_measurements (asset_id, probe_id, target, kind, timestamp, timestamp_ms, success, latency_us, error, batch_id, spool_depth, spool_bytes, agent_dropped, last_sent) VALUES ('web-1','heartbeat','agent','host',{},0,1,0,'','b',120,65536,3,{})", t(30), t(400)),
        format!("INSERT INTO {db}.sla_minutes VALUES ('web','web-1',toStartOfMinute(toDateTime({})),2,1,1,1,1,1,1,1,2,1)", t(120)),
        format!("INSERT INTO {db}.scores VALUES ({},'soc2','fleet','','fleet',75.0,2,1,1,4,1,62.5,61,57,6.56,1), ({},'soc2','label','team','web',50.0,1,1,1,3,0,50.0,61,58,4.92,0), ({},'soc2','section','','security',75.0,2,1,1,4,1,62.5,33,29,12.12,1)", t(300), t(300), t(300)),
        format!("INSERT INTO {db}.notification_log VALUES ('pager','0:abc',{},'firing',0,['f1'],'[{{\"labels\":{{\"alertname\":\"slo_burn\"}}}}]')", t(200)),
    ];
    for s in stmts {
        exec(&s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_query_runs_on_both_engines_with_the_expected_columns() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let names = Names::new();
    let cfg = names.collector_config(work.path(), "http://127.0.0.1:9/hook");
    // Any store command creates and migrates the database.
    let out = Command::new(bin("driftwatch-collector")).args(["posture", "--format", "json", "--config"]).arg(&cfg).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let now = chrono::Utc::now().timestamp();
    seed(&names.database, now).await;
    // The dashboards' time range: the last two days.
    let (from, to) = (now - 2 * 86400, now + 60);

    let dir = repo().join("dashboards");
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect();
    files.sort();
    assert_eq!(files.len(), 6, "six dashboards: {files:?}");
    // Grafana's user reads, and nothing else: no writes, no DDL, no table
    // functions (url(), file()) whatever a variable makes of a query.
    for (sql, refused) in [
        (format!("CREATE TABLE {}.planted (a UInt8) ENGINE = Memory", names.database), "readonly"),
        (format!("OPTIMIZE TABLE {}.scores", names.database), "readonly"),
        ("SELECT * FROM url('http://127.0.0.1:8123/ping', TSV, 'a String')".to_string(), "Table functions are forbidden"),
        (format!("DROP TABLE {}.scores", names.database), "readonly"),
    ] {
        let e = run(&names.database, &sql).await.expect_err(&sql);
        assert!(e.contains(refused), "{sql}: {e}");
    }
    let mut uids = std::collections::BTreeSet::new();
    let mut expanded = Vec::new();
    let mut failures = Vec::new();
    for f in &files {
        let d: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        assert!(uids.insert(d["uid"].as_str().unwrap().to_string()), "{name}: duplicate uid");
        let refresh = d["refresh"].as_str().unwrap_or_default();
        assert!(["5s", "10s"].contains(&refresh), "{name}: refresh {refresh} is not real-time");
        let vars = d["templating"]["list"].as_array().unwrap();
        assert!(
            vars.iter().any(|v| v["type"] == "datasource" && v["query"] == "grafana-clickhouse-datasource"),
            "{name}: no data source variable"
        );
        // No free-text variable: its value would be spliced into SQL. A
        // custom variable offers only its own values.
        for v in vars {
            assert!(!["textbox", "adhoc"].contains(&v["type"].as_str().unwrap_or("")), "{name}: free-text variable {}", v["name"]);
            if v["type"] == "custom" {
                assert_eq!(v["allowCustomValue"].as_bool(), Some(false), "{name}: custom variable {} takes any value", v["name"]);
            }
            if v["name"] == "framework" {
                let keys: Vec<&str> = driftwatch_collector::policy::frameworks::FRAMEWORKS.iter().map(|f| f.key).collect();
                assert_eq!(v["query"].as_str(), Some(keys.join(",").as_str()), "{name}: the framework variable offers every framework");
            }
        }
        // Variable queries run too.
        for v in vars.iter().filter(|v| v["type"] == "query") {
            let sql = expand(v["query"].as_str().unwrap(), from, to);
            if let Err(e) = try_query(&sql.replace("FROM ", &format!("FROM {}.", names.database))).await {
                failures.push(format!("{name}: variable {}: {e}", v["name"]));
            }
        }
        for p in d["panels"].as_array().unwrap() {
            let title = p["title"].as_str().unwrap();
            assert_eq!(p["datasource"]["type"], "grafana-clickhouse-datasource", "{name}/{title}");
            for t in p["targets"].as_array().unwrap() {
                assert_eq!(t["editorType"], "sql", "{name}/{title}");
                let raw = t["rawSql"].as_str().unwrap();
                // A variable of the fleet's size filters only through
                // $__conditionalAll: "All" must not expand into a list.
                for var in ["asset", "probe"] {
                    let bare = conditional_all(raw, true);
                    assert!(!bare.contains(&format!("${{{var}")), "{name}/{title}: ${var} outside $__conditionalAll:\n{raw}");
                }
                let all = expand_with(raw, from, to, true);
                if let Err(e) = run(&names.database, &all).await {
                    failures.push(format!("{name}/{title} (All selected): {e}\n{all}"));
                }
                let sql = expand(raw, from, to);
                assert!(!sql.contains("$__") && !sql.contains("${"), "{name}/{title}: unexpanded macro or variable:\n{sql}");
                let want: Vec<String> =
                    t["driftwatchColumns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
                match run(&names.database, &sql).await {
                    Ok((cols, rows)) => {
                        if cols != want {
                            failures.push(format!("{name}/{title}: columns {cols:?}, panel expects {want:?}"));
                        }
                        if rows == 0 {
                            failures.push(format!("{name}/{title}: no rows from the test data"));
                        }
                        if p["type"] == "timeseries" && cols.first().map(String::as_str) != Some("time") {
                            failures.push(format!("{name}/{title}: a time series needs `time` first"));
                        }
                    }
                    Err(e) => failures.push(format!("{name}/{title}: {e}\n{sql}")),
                }
                expanded.push((format!("{name}-{}", p["id"]), sql));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // The same expanded queries on a current ClickHouse (chDB).
    let qdir = work.path().join("queries");
    std::fs::create_dir_all(&qdir).unwrap();
    let mut paths = Vec::new();
    for (n, sql) in &expanded {
        let p = qdir.join(format!("{n}.sql"));
        std::fs::write(&p, sql).unwrap();
        paths.push(p);
    }
    chdb(&repo().join("schemas/clickhouse"), &paths);
    names.drop_database().await;
}

/// Column names and row count of `sql` in `db` (FORMAT JSON keeps the
/// column list even without rows).
/// Runs `sql` as Grafana would: as the read-only `driftwatch_grafana`
/// user (deploy/local/clickhouse/users.xml).
async fn run(db: &str, sql: &str) -> Result<(Vec<String>, usize), String> {
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{CLICKHOUSE}/?database={db}&user=driftwatch_grafana"))
        .body(format!("{sql}\nFORMAT JSON"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let ok = resp.status().is_success();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    if !ok {
        return Err(text.lines().next().unwrap_or_default().to_string());
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let cols =
        v["meta"].as_array().map(|m| m.iter().map(|c| c["name"].as_str().unwrap_or_default().to_string()).collect()).unwrap_or_default();
    Ok((cols, v["rows"].as_u64().unwrap_or(0) as usize))
}

fn chdb(migrations: &Path, queries: &[std::path::PathBuf]) {
    let out = Command::new("python3").arg(repo().join("tests/chdb/check_sql.py")).arg(migrations).args(queries).output().unwrap();
    assert!(out.status.success(), "chDB: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
