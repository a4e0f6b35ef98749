//! The deployment files hold together: the compose stack's services,
//! images, ports (loopback only), mounts and configurations agree with each
//! other and with the code's defaults, its configurations pass the
//! binaries' own `check-config`, and the Dockerfiles are multi-stage with a
//! non-root runtime that starts the right binary.

use std::path::Path;
use std::process::Command;

use driftwatch_tests::{bin, repo};
use serde_yaml::Value;

fn yaml(path: &Path) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn check_config(binary: &str, config: &Path, env: &[(&str, String)]) {
    let mut cmd = Command::new(bin(binary));
    cmd.arg("check-config").arg("--config").arg(config);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{binary} check-config {}: {}", config.display(), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn compose_stack_is_consistent() {
    driftwatch_tests::services_up();
    let dir = repo().join("deploy/compose");
    let c = yaml(&dir.join("docker-compose.yaml"));
    let services = c["services"].as_mapping().expect("services");
    let names: Vec<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    for want in ["kafka", "clickhouse", "grafana", "topics", "collector", "agent"] {
        assert!(names.contains(&want), "service {want} missing: {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains("zookeeper")), "KRaft, not ZooKeeper");
    for (name, s) in services {
        let name = name.as_str().unwrap();
        let image = s["image"].as_str().unwrap_or_else(|| panic!("{name}: no image"));
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or_else(|| panic!("{name}: image {image} has no tag"));
        assert!(tag != "latest", "{name}: pin the image, not :latest");
        for p in s["ports"].as_sequence().into_iter().flatten() {
            assert!(p.as_str().unwrap().starts_with("127.0.0.1:"), "{name}: port {p:?} must bind to loopback");
        }
        for v in s["volumes"].as_sequence().into_iter().flatten() {
            let src = v.as_str().unwrap().split(':').next().unwrap();
            if src.starts_with('.') {
                assert!(dir.join(src).exists(), "{name}: mounted {src} does not exist");
            }
        }
    }
    let kafka = &c["services"]["kafka"]["environment"];
    assert!(kafka["KAFKA_PROCESS_ROLES"].as_str().unwrap().contains("controller"), "KRaft mode");
    let advertised = kafka["KAFKA_ADVERTISED_LISTENERS"].as_str().unwrap();
    let grafana = &c["services"]["grafana"];
    assert!(grafana["environment"]["GF_INSTALL_PLUGINS"].as_str().unwrap().contains("grafana-clickhouse-datasource"));

    // The collector and the agent reach the services by the names and
    // ports the stack gives them.
    let collector = yaml(&dir.join("collector.yaml"));
    let brokers = collector["kafka"]["brokers"].as_str().unwrap();
    assert!(advertised.ends_with(brokers), "collector brokers {brokers} vs advertised {advertised}");
    let ch_url = collector["clickhouse"]["url"].as_str().unwrap();
    assert_eq!(ch_url, "http://clickhouse:8123");
    let ch_ports: Vec<&str> = c["services"]["clickhouse"]["ports"].as_sequence().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert!(ch_ports.iter().any(|p| p.ends_with(":8123")) && ch_ports.iter().any(|p| p.ends_with(":9000")));
    let agent = yaml(&dir.join("agent.yaml"));
    assert_eq!(agent["kafka"]["brokers"].as_str(), Some(brokers));
    assert_eq!(agent["root"].as_str(), Some("/host"));
    let ds = yaml(&dir.join("grafana-datasource.yaml"));
    let j = &ds["datasources"][0]["jsonData"];
    assert_eq!(
        (j["host"].as_str(), j["port"].as_u64(), j["defaultDatabase"].as_str()),
        (Some("clickhouse"), Some(9000), collector["clickhouse"]["database"].as_str())
    );
    assert_eq!(ds["datasources"][0]["type"], "grafana-clickhouse-datasource");
    // Mount targets are where the images read their configuration.
    let mounts = |svc: &str| -> Vec<String> {
        c["services"][svc]["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().split(':').nth(1).unwrap().to_string())
            .collect()
    };
    assert!(mounts("collector").contains(&"/etc/driftwatch/collector.yaml".to_string()));
    assert!(mounts("agent").contains(&"/etc/driftwatch/agent.yaml".to_string()) && mounts("agent").contains(&"/host".to_string()));
    assert!(mounts("grafana").contains(&"/var/lib/grafana/dashboards/driftwatch".to_string()));

    // The configurations pass the binaries' own validation (paths that
    // exist only in the containers pointed at this checkout).
    check_config(
        "driftwatch-collector",
        &dir.join("collector.yaml"),
        &[("DRIFTWATCH_COLLECTOR__POLICIES", repo().join("policies").display().to_string())],
    );
    let state = tempfile::tempdir().unwrap();
    check_config(
        "driftwatch-agent",
        &dir.join("agent.yaml"),
        &[("DRIFTWATCH_AGENT__ROOT", "/".into()), ("DRIFTWATCH_AGENT__STATE_DIR", state.path().display().to_string())],
    );
}

#[test]
fn dockerfiles_are_multi_stage_and_run_unprivileged() {
    for (file, binary) in [("collector.Dockerfile", "driftwatch-collector"), ("agent.Dockerfile", "driftwatch-agent")] {
        let text = std::fs::read_to_string(repo().join("deploy/docker").join(file)).unwrap();
        let stages: Vec<&str> = text.split("\nFROM ").collect();
        assert!(stages.len() >= 2 || text.matches("FROM ").count() >= 2, "{file}: multi-stage build");
        let last = text.rsplit("FROM ").next().unwrap();
        let user = last.lines().find_map(|l| l.strip_prefix("USER ")).unwrap_or_else(|| panic!("{file}: runtime stage sets no USER"));
        assert!(!["0", "root"].contains(&user.trim()), "{file}: runtime user {user} is root");
        assert!(last.contains(&format!("ENTRYPOINT [\"{binary}\"]")), "{file}: entrypoint is not {binary}");
        assert!(last.contains(&format!("/usr/local/bin/{binary}")), "{file}: binary not copied");
        assert!(text.contains(&format!("-p {binary}")), "{file}: builds another package");
        assert!(text.contains("--locked"), "{file}: build with the lock file");
    }
    let collector = std::fs::read_to_string(repo().join("deploy/docker/collector.Dockerfile")).unwrap();
    assert!(collector.contains("COPY policies /etc/driftwatch/policies"), "the collector image ships the policy packs");
}

#[test]
fn cluster_schema_is_current() {
    driftwatch_tests::services_up();
    let out = Command::new(bin("driftwatch-collector")).args(["schema", "--cluster", "driftwatch"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let file = std::fs::read_to_string(repo().join("deploy/clickhouse/cluster.sql")).unwrap();
    assert!(
        file == String::from_utf8_lossy(&out.stdout),
        "deploy/clickhouse/cluster.sql is stale: run `driftwatch-collector schema --cluster driftwatch > deploy/clickhouse/cluster.sql`"
    );
}
