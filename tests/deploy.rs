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
    for want in ["kafka", "clickhouse", "grafana", "topics", "acls", "collector", "agent"] {
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
    // Clients authenticate, one user per role, and only ACLs grant access.
    let listener = advertised.split_once("://").unwrap().0;
    let protocols = kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].as_str().unwrap();
    assert!(protocols.split(',').any(|p| p == format!("{listener}:SASL_PLAINTEXT") || p == format!("{listener}:SASL_SSL")), "{protocols}");
    assert_eq!(kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"], "false");
    assert!(kafka["KAFKA_AUTHORIZER_CLASS_NAME"].as_str().unwrap().ends_with("StandardAuthorizer"));
    let jaas = kafka["KAFKA_LISTENER_NAME_SASL__PLAINTEXT_PLAIN_SASL_JAAS_CONFIG"].as_str().unwrap();
    let env_of = |svc: &str| serde_yaml::to_string(&c["services"][svc]["environment"]).unwrap();
    let acls = std::fs::read_to_string(dir.join("kafka-admin.sh")).unwrap();
    for (role, file, other) in [("agent", "agent.yaml", "COLLECTOR"), ("collector", "collector.yaml", "AGENT")] {
        let user = format!("driftwatch_{role}");
        assert_eq!(yaml(&dir.join(file))["kafka"]["properties"]["sasl.username"].as_str(), Some(user.as_str()), "{file}");
        assert!(jaas.contains(&format!("user_{user}=")), "the broker knows {user}");
        let env = env_of(role);
        assert!(
            env.contains(&format!("DRIFTWATCH_KAFKA_{}_PASSWORD", role.to_uppercase())),
            "{role}: its own password
{env}"
        );
        assert!(
            !env.contains(&format!("DRIFTWATCH_KAFKA_{other}_PASSWORD")) && !env.contains("ADMIN"),
            "{role}: no other credential
{env}"
        );
        assert!(acls.contains(&format!("User:{user}")), "{user} is granted its topics");
    }
    assert!(!env_of("agent").to_lowercase().contains("clickhouse"), "no ClickHouse credential on a host");
    // Agents may only write the streams: never read, never the dead letters.
    let agent_grants: Vec<&str> = acls.lines().filter(|l| l.contains("User:driftwatch_agent")).collect();
    assert!(agent_grants.iter().all(|l| !l.contains("Read") && !l.contains("dead-letter")), "{agent_grants:?}");
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
    // Grafana reads ClickHouse as a read-only user, defined where the
    // server reads users, with the same password on both sides.
    assert_eq!(j["username"], "driftwatch_grafana");
    assert!(mounts("clickhouse").contains(&"/etc/clickhouse-server/users.d/driftwatch-grafana.xml".to_string()));
    let users = std::fs::read_to_string(repo().join("deploy/clickhouse/users.d/driftwatch-grafana.xml")).unwrap();
    assert!(
        users.contains("<driftwatch_grafana>") && users.contains("<readonly>1</readonly>") && users.contains("<changeable_in_readonly/>")
    );
    assert_eq!(
        c["services"]["clickhouse"]["environment"]["DRIFTWATCH_GRAFANA_PASSWORD"],
        c["services"]["grafana"]["environment"]["DRIFTWATCH_GRAFANA_PASSWORD"]
    );

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

/// `section → key → values` of a systemd unit (keys may repeat).
fn unit(text: &str) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<String>>> {
    let mut out: std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<String>>> = Default::default();
    let mut section = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
        } else {
            let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("not key=value: {line}"));
            out.entry(section.clone()).or_default().entry(k.to_string()).or_default().push(v.to_string());
        }
    }
    out
}

#[test]
fn systemd_unit_is_hardened_and_its_files_agree() {
    driftwatch_tests::services_up();
    let dir = repo().join("deploy/systemd");
    let u = unit(&std::fs::read_to_string(dir.join("driftwatch-agent.service")).unwrap());
    let svc = &u["Service"];
    let one = |k: &str| svc.get(k).and_then(|v| v.last()).map(String::as_str).unwrap_or_else(|| panic!("[Service] {k} missing"));
    for (k, want) in [
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("StateDirectory", "driftwatch-agent"),
        ("CapabilityBoundingSet", "CAP_DAC_READ_SEARCH"),
        ("AmbientCapabilities", "CAP_DAC_READ_SEARCH"),
        ("ProtectHome", "read-only"),
        ("RestrictSUIDSGID", "yes"),
        ("Restart", "on-failure"),
    ] {
        assert_eq!(one(k), want, "[Service] {k}");
    }
    assert_eq!(u["Install"]["WantedBy"], ["multi-user.target"]);
    assert_eq!(one("ExecStart"), "/usr/local/bin/driftwatch-agent run --config /etc/driftwatch/agent.yaml");
    assert!(one("EnvironmentFile").ends_with("/etc/default/driftwatch-agent"));

    // The configuration installed beside it keeps its state where systemd
    // gives write access, and passes check-config with the environment file.
    let cfg = yaml(&dir.join("agent.yaml"));
    assert_eq!(cfg["state_dir"].as_str(), Some("/var/lib/driftwatch-agent"), "state_dir is the StateDirectory");
    let env: Vec<(String, String)> = std::fs::read_to_string(dir.join("driftwatch-agent.env"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).unwrap())
        .collect();
    assert!(env.iter().all(|(k, _)| k.starts_with("DRIFTWATCH_")), "{env:?}");
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    check_config("driftwatch-agent", &dir.join("agent.yaml"), &env);
}

#[test]
fn standalone_unit_runs_the_single_node_mode_with_the_agents_hardening() {
    driftwatch_tests::services_up();
    let dir = repo().join("deploy/systemd");
    let agent = unit(&std::fs::read_to_string(dir.join("driftwatch-agent.service")).unwrap());
    let u = unit(&std::fs::read_to_string(dir.join("driftwatch-standalone.service")).unwrap());
    let one = |k: &str| u["Service"].get(k).and_then(|v| v.last()).map(String::as_str).unwrap_or_else(|| panic!("[Service] {k} missing"));
    for k in
        ["ProtectSystem", "NoNewPrivileges", "PrivateTmp", "CapabilityBoundingSet", "AmbientCapabilities", "ProtectHome", "DynamicUser"]
    {
        assert_eq!(Some(one(k)), agent["Service"][k].last().map(String::as_str), "[Service] {k} as the agent's");
    }
    assert_eq!(one("StateDirectory"), "driftwatch");
    assert_eq!(
        one("ExecStart"),
        "/usr/local/bin/driftwatch-collector standalone --config /etc/driftwatch/standalone.yaml --data-dir /var/lib/driftwatch"
    );
    // The configuration keeps its database in the data directory and
    // passes check-config (policies from the repository here).
    let cfg = yaml(&dir.join("standalone.yaml"));
    assert_eq!(cfg["store"]["kind"].as_str(), Some("sqlite"));
    assert_eq!(cfg["store"]["sqlite_path"].as_str(), Some("/var/lib/driftwatch/driftwatch.db"));
    let policies = repo().join("policies").display().to_string();
    check_config("driftwatch-collector", &dir.join("standalone.yaml"), &[("DRIFTWATCH_COLLECTOR__POLICIES", policies)]);
    let env = std::fs::read_to_string(dir.join("driftwatch-standalone.env")).unwrap();
    assert!(env.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).all(|l| l.starts_with("DRIFTWATCH_")), "{env}");
}

/// Every document of a multi-document YAML file.
fn documents(path: &Path) -> Vec<Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn kubernetes_manifests_are_complete_and_consistent() {
    driftwatch_tests::services_up();
    let dir = repo().join("deploy/kubernetes");
    let kustomization = yaml(&dir.join("kustomization.yaml"));
    let listed: Vec<&str> = kustomization["resources"].as_sequence().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    let mut objects = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".yaml") && name != "kustomization.yaml" {
            assert!(listed.contains(&name.as_str()), "kustomization.yaml does not list {name}");
            objects.extend(documents(&entry.path()));
            validate_against_kubernetes(&entry.path());
        }
    }
    validate_against_kubernetes(&dir.join("opt-in/secrets-metadata.yaml"));
    check_agents(&objects, "driftwatch");
    // The opt-in role for Secrets' metadata binds the cluster agent's
    // service account, read-only, to Secrets alone.
    let opt_in = documents(&dir.join("opt-in/secrets-metadata.yaml"));
    let role = opt_in.iter().find(|o| o["kind"] == "ClusterRole").unwrap();
    assert_eq!(role["rules"].as_sequence().unwrap().len(), 1);
    assert_eq!(role["rules"][0]["resources"].as_sequence().unwrap(), &vec![Value::from("secrets")]);
    let binding = opt_in.iter().find(|o| o["kind"] == "ClusterRoleBinding").unwrap();
    let sa = objects.iter().find(|o| o["kind"] == "ServiceAccount" && o["metadata"]["name"] == "driftwatch-cluster-agent").unwrap();
    assert_eq!(binding["subjects"][0]["name"], sa["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["namespace"], sa["metadata"]["namespace"]);
}

/// The node agent's DaemonSet and the cluster agent's Deployment
/// (`<prefix>-node-agent`, `<prefix>-cluster-agent`) among `objects`:
/// complete, consistent with each other, the images and the agent's own
/// validation.
fn check_agents(objects: &[Value], prefix: &str) {
    for o in objects {
        for field in ["apiVersion", "kind"] {
            assert!(o[field].is_string(), "an object without {field}: {o:?}");
        }
        assert!(o["metadata"]["name"].is_string(), "an object without a name: {o:?}");
    }
    let find = |kind: &str, name: &str| {
        objects.iter().find(|o| o["kind"] == kind && o["metadata"]["name"] == name).unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    let ds = find("DaemonSet", &format!("{prefix}-node-agent"));
    let pod = &ds["spec"]["template"]["spec"];
    for (k, v) in ds["spec"]["selector"]["matchLabels"].as_mapping().expect("a selector") {
        assert_eq!(&ds["spec"]["template"]["metadata"]["labels"][k], v, "the selector matches the pods");
    }
    find("ServiceAccount", pod["serviceAccountName"].as_str().unwrap());
    find("PriorityClass", pod["priorityClassName"].as_str().unwrap());
    assert!(
        pod["tolerations"].as_sequence().unwrap().iter().any(|t| t["operator"] == "Exists" && t["key"].is_null()),
        "runs on every node"
    );
    let c = &pod["containers"][0];
    // The image is the one the Dockerfile builds and compose runs.
    let compose = yaml(&repo().join("deploy/compose/docker-compose.yaml"));
    assert_eq!(c["image"], compose["services"]["agent"]["image"]);
    for r in ["requests", "limits"] {
        assert!(c["resources"][r]["cpu"].is_string() && c["resources"][r]["memory"].is_string(), "resources.{r}");
    }
    let sc = &c["securityContext"];
    assert_eq!((sc["readOnlyRootFilesystem"].as_bool(), sc["allowPrivilegeEscalation"].as_bool()), (Some(true), Some(false)));
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    assert_eq!(sc["capabilities"]["add"].as_sequence().unwrap().len(), 1, "one capability only");

    let volume = |name: &str| pod["volumes"].as_sequence().unwrap().iter().find(|v| v["name"] == name).unwrap().clone();
    let mount = |path: &str| c["volumeMounts"].as_sequence().unwrap().iter().find(|m| m["mountPath"] == path).cloned();
    let host = mount("/host").expect("the host root is mounted at /host");
    assert_eq!(host["readOnly"].as_bool(), Some(true));
    assert_eq!(volume(host["name"].as_str().unwrap())["hostPath"]["path"], "/");

    let agent = pod_config(objects, pod);
    assert_eq!(agent["root"], "/host");
    assert_eq!(agent["asset"]["kind"], "k8s-node");
    let env = pod_env(pod);
    assert!(env.iter().any(|(k, _)| *k == "DRIFTWATCH_AGENT__ASSET__LABELS__NODE"), "labelled with the node name");
    let state_mount = mount(agent["state_dir"].as_str().unwrap()).expect("the state directory is mounted");
    assert!(volume(state_mount["name"].as_str().unwrap())["hostPath"].is_mapping(), "state survives the pod");
    check_pod_config(&agent, &[env, vec![("DRIFTWATCH_AGENT__ROOT", "/".into())]].concat());

    // The cluster agent: one replica, read-only RBAC over what it follows.
    let dep = find("Deployment", &format!("{prefix}-cluster-agent"));
    assert_eq!(dep["spec"]["replicas"].as_u64(), Some(1), "one cluster agent per cluster");
    let pod = &dep["spec"]["template"]["spec"];
    let sa = pod["serviceAccountName"].as_str().unwrap();
    find("ServiceAccount", sa);
    let c = &pod["containers"][0];
    assert_eq!(c["image"], compose["services"]["agent"]["image"]);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert!(c["securityContext"]["capabilities"]["add"].is_null(), "no capability added");
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let binding = objects
        .iter()
        .find(|o| o["kind"] == "ClusterRoleBinding" && o["subjects"].as_sequence().unwrap().iter().any(|s| s["name"] == sa))
        .expect("the service account is bound");
    let role = find("ClusterRole", binding["roleRef"]["name"].as_str().unwrap());
    let mut granted = std::collections::BTreeSet::new();
    for rule in role["rules"].as_sequence().unwrap() {
        for verb in rule["verbs"].as_sequence().unwrap() {
            assert!(["get", "list", "watch"].contains(&verb.as_str().unwrap()), "read-only: {verb:?}");
        }
        granted.extend(rule["resources"].as_sequence().unwrap().iter().map(|r| r.as_str().unwrap().to_string()));
    }
    // Every collection the cluster agent follows by default
    // (agent/src/cluster/checks.rs), and not Secrets: listing them cannot
    // be limited to metadata (opt-in, in a role of its own).
    assert!(!granted.contains("secrets") && !granted.contains("*"), "no Secret reading by default: {granted:?}");
    let agent = pod_config(objects, pod);
    assert_ne!(agent["cluster"]["secrets_metadata"].as_bool(), Some(true), "Secrets off by default");
    for r in [
        "pods",
        "namespaces",
        "nodes",
        "serviceaccounts",
        "networkpolicies",
        "ingresses",
        "clusterroles",
        "clusterrolebindings",
        "roles",
        "rolebindings",
    ] {
        assert!(granted.contains(r), "the ClusterRole does not grant {r}");
    }
    assert_eq!(agent["mode"], "cluster");
    check_pod_config(&agent, &pod_env(pod));
}

/// The pod template of the workload `kind`/`name` among `objects`.
fn pod_of(objects: &[Value], kind: &str, name: &str) -> Value {
    objects.iter().find(|o| o["kind"] == kind && o["metadata"]["name"] == name).unwrap()["spec"]["template"].clone()
}

/// The agent configuration a pod reads: the file its arguments name, from
/// the ConfigMap mounted there.
fn pod_config(objects: &[Value], pod: &Value) -> Value {
    let c = &pod["containers"][0];
    let args: Vec<&str> = c["args"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let path = Path::new(args[args.iter().position(|a| *a == "--config").unwrap() + 1]);
    let dir = path.parent().unwrap().to_str().unwrap();
    let mount =
        c["volumeMounts"].as_sequence().unwrap().iter().find(|m| m["mountPath"] == dir).expect("the configuration directory is mounted");
    let volume = pod["volumes"].as_sequence().unwrap().iter().find(|v| v["name"] == mount["name"]).unwrap();
    let cm = volume["configMap"]["name"].as_str().unwrap();
    let cm = objects.iter().find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == cm).expect("the ConfigMap exists");
    let text = cm["data"][path.file_name().unwrap().to_str().unwrap()].as_str().expect("the ConfigMap holds the file");
    serde_yaml::from_str(text).unwrap()
}

/// The `DRIFTWATCH_AGENT__*` variables of a pod (downward-API ones get a
/// placeholder).
fn pod_env(pod: &Value) -> Vec<(&str, String)> {
    pod["containers"][0]["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|e| e["name"].as_str().is_some_and(|n| n.starts_with("DRIFTWATCH_AGENT__") || n.starts_with("DRIFTWATCH_COLLECTOR__")))
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap_or("from-the-downward-api").to_string()))
        .collect()
}

/// The agent configuration passes `check-config` with the pod's variables.
fn check_pod_config(agent: &Value, env: &[(&str, String)]) {
    check_in_pod("driftwatch-agent", agent, env);
}

/// `binary check-config` on a pod's configuration and variables, with the
/// pod's secret files (`/etc/driftwatch/secrets/…`) stood in for by files
/// of this test.
fn check_in_pod(binary: &str, config: &Value, env: &[(&str, String)]) {
    let work = tempfile::tempdir().unwrap();
    let secrets = work.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    for name in ["kafka-password", "clickhouse-password", "kafka-ca.pem", "kafka-client.pem", "kafka-client.key"] {
        std::fs::write(secrets.join(name), "stand-in").unwrap();
    }
    let local = |s: &str| s.replace("/etc/driftwatch/secrets", &secrets.display().to_string());
    let file = work.path().join("config.yaml");
    std::fs::write(&file, local(&serde_yaml::to_string(config).unwrap())).unwrap();
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, local(v))).collect();
    check_config(binary, &file, &env);
}

/// `helm <args> deploy/helm/driftwatch --values <values>` with the helm
/// `deploy/local/services up` installs (the real one), its own state in a
/// temporary folder: what it prints, or what it says when it fails.
fn helm(args: &[&str], values: &str) -> Result<String, String> {
    let local = std::env::var_os("DRIFTWATCH_LOCAL").map(std::path::PathBuf::from).unwrap_or_else(|| repo().join(".local"));
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("values.yaml");
    std::fs::write(&file, values).unwrap();
    let out = Command::new(local.join("bin/helm"))
        .args(args)
        .arg(repo().join("deploy/helm/driftwatch"))
        .arg("--values")
        .arg(&file)
        .env("HELM_CACHE_HOME", work.path().join("cache"))
        .env("HELM_CONFIG_HOME", work.path().join("config"))
        .env("HELM_DATA_HOME", work.path().join("data"))
        .output()
        .expect("helm runs (deploy/local/services up installs it)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// Kubernetes' own OpenAPI schemas (kubernetes-validate, strict: no field
/// the API does not know) accept every object of `path`, for the oldest and
/// the newest Kubernetes the chart supports. The Prometheus Operator's
/// kinds have no schema there; their tests check them.
fn validate_against_kubernetes(path: &Path) {
    for version in ["1.30.0", "1.35.0"] {
        let out = Command::new("python3")
            .args(["-m", "kubernetes_validate", "--strict", "--quiet", "-k", version])
            .arg(path)
            .output()
            .expect("python3 runs");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let unexplained: Vec<&str> = text
            .lines()
            .filter(|l| !(l.starts_with("WARN") && l.contains("monitoring.coreos.com/v1")))
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert!(out.status.success() && unexplained.is_empty(), "Kubernetes {version} refuses {}:\n{text}", path.display());
    }
}

/// The objects of the chart rendered by helm with `values`, each checked
/// against Kubernetes' schemas.
fn rendered(values: &str) -> Vec<Value> {
    use serde::Deserialize;
    let text = helm(&["template", "dw", "--namespace", "driftwatch"], values).unwrap_or_else(|e| panic!("helm template: {e}"));
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("rendered.yaml");
    std::fs::write(&file, &text).unwrap();
    validate_against_kubernetes(&file);
    let mut objects = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("the chart renders invalid YAML: {e}\n{text}"));
        if !v.is_null() {
            objects.push(v);
        }
    }
    // Every object carries the recommended labels.
    for o in &objects {
        let labels = &o["metadata"]["labels"];
        for key in ["app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by"] {
            assert!(
                labels[key].is_string(),
                "{} {} has no {key} label",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            );
        }
    }
    objects
}

/// What helm says when it refuses `values`.
fn refused(values: &str) -> String {
    match helm(&["template", "dw", "--namespace", "driftwatch"], values) {
        Ok(text) => panic!("helm rendered {values:?}:\n{text}"),
        Err(e) => e,
    }
}

/// The collectors: image, ports, probes, configuration and scaling agree.
fn check_collector(objects: &[Value], prefix: &str, partitions: u64) {
    let name = format!("{prefix}-collector");
    let find = |kind: &str| objects.iter().find(|o| o["kind"] == kind && o["metadata"]["name"] == name.as_str());
    let dep = find("Deployment").expect("the collector Deployment");
    let pod = &dep["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let compose = yaml(&repo().join("deploy/compose/docker-compose.yaml"));
    assert_eq!(c["image"], compose["services"]["collector"]["image"]);
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let port =
        c["ports"].as_sequence().unwrap().iter().find(|p| p["name"] == "api").expect("an api port")["containerPort"].as_u64().unwrap();
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let config = pod_config(objects, pod);
    assert!(config["api"]["listen"].as_str().unwrap().ends_with(&format!(":{port}")), "the API listens on the container port");
    assert_eq!(config["policies"], "/etc/driftwatch/policies", "the image's packs (not hidden by the config mount)");
    // The release's nodes are in its cluster by the operator's word, not theirs.
    assert_eq!(config["assets"]["host_labels"], "prefixed");
    assert_eq!(config["assets"]["labels"][0]["labels"]["cluster"], "my-cluster");
    let mounts: Vec<&str> = c["volumeMounts"].as_sequence().unwrap().iter().map(|m| m["mountPath"].as_str().unwrap()).collect();
    assert!(!mounts.iter().any(|m| *m == "/etc/driftwatch" || *m == "/etc/driftwatch/policies"), "{mounts:?}");
    let svc = find("Service").expect("the collector Service");
    let sp = &svc["spec"]["ports"][0];
    assert_eq!((sp["port"].as_u64(), sp["targetPort"].as_str()), (Some(port), Some("api")));
    for (k, v) in svc["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(&dep["spec"]["template"]["metadata"]["labels"][k], v, "the Service selects the collectors");
    }
    let init: Vec<&str> = pod["initContainers"][0]["args"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(init[0], "topics");
    assert_eq!(init[init.iter().position(|a| *a == "--partitions").unwrap() + 1], partitions.to_string());
    if let Some(hpa) = find("HorizontalPodAutoscaler") {
        assert_eq!(hpa["spec"]["maxReplicas"].as_u64(), Some(partitions), "scaling stops at the partitions");
        assert!(dep["spec"]["replicas"].is_null(), "no replicas beside the autoscaler (each upgrade would reset them)");
        assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], name.as_str());
    } else {
        assert!(dep["spec"]["replicas"].as_u64().unwrap() <= partitions);
    }
    // Its own service account, without an API token.
    let sa = pod["serviceAccountName"].as_str().expect("a service account of its own");
    assert!(objects.iter().any(|o| o["kind"] == "ServiceAccount" && o["metadata"]["name"] == sa));
    assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false));
    let mut env: Vec<(&str, String)> = c["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|e| e["name"].as_str().unwrap().starts_with("DRIFTWATCH_COLLECTOR__"))
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap_or_default().to_string()))
        .collect();
    env.push(("DRIFTWATCH_COLLECTOR__POLICIES", repo().join("policies").display().to_string()));
    check_in_pod("driftwatch-collector", &config, &env);
}

#[test]
fn helm_chart_renders_what_the_plain_manifests_hold_and_the_collector() {
    driftwatch_tests::services_up();
    // Defaults: SASL on, so each role's password must be given.
    let refusal = refused("{}");
    assert!(refusal.contains("kafka.agent.password is required"), "{refusal}");
    const CREDENTIALS: &str = "kafka: {agent: {password: agent-pw}, collector: {password: collector-pw}}\n";
    helm(&["lint", "--strict"], CREDENTIALS).unwrap_or_else(|e| panic!("helm lint: {e}"));
    let objects = rendered(CREDENTIALS);
    check_agents(&objects, "dw");
    check_collector(&objects, "dw", 6);

    // One credential per role, each in its own Secret, mounted only where
    // that role runs; the ClickHouse password never on a node.
    let objects = rendered(&format!(
        "{CREDENTIALS}collector: {{clickhouse: {{password: ch-pw, reader: {{user: dw_reader, password: reader-pw}}}}}}\n"
    ));
    let secret =
        |name: &str| objects.iter().find(|o| o["kind"] == "Secret" && o["metadata"]["name"] == name).unwrap_or_else(|| panic!("{name}"));
    let (agent_secret, collector_secret) = (secret("dw-agent-secrets"), secret("dw-collector-secrets"));
    assert_eq!(agent_secret["stringData"]["kafka-password"], "agent-pw");
    assert!(agent_secret["stringData"]["clickhouse-password"].is_null(), "no ClickHouse password for agents");
    assert_eq!(collector_secret["stringData"]["kafka-password"], "collector-pw");
    assert_eq!(collector_secret["stringData"]["clickhouse-password"], "ch-pw");
    assert_eq!(collector_secret["stringData"]["clickhouse-reader-password"], "reader-pw");
    let reader = &pod_config(&objects, &pod_of(&objects, "Deployment", "dw-collector")["spec"])["clickhouse"]["reader"];
    assert_eq!(reader["user"], "dw_reader");
    assert_eq!(reader["password"]["file"], "/etc/driftwatch/secrets/clickhouse-reader-password");
    let text = serde_yaml::to_string(&objects.iter().filter(|o| o["kind"] != "Secret").collect::<Vec<_>>()).unwrap();
    assert!(["agent-pw", "collector-pw", "ch-pw", "reader-pw"].iter().all(|pw| !text.contains(pw)), "secrets stay in the Secrets");
    for (kind, name, role) in
        [("DaemonSet", "dw-node-agent", "agent"), ("Deployment", "dw-cluster-agent", "agent"), ("Deployment", "dw-collector", "collector")]
    {
        let workload = objects.iter().find(|o| o["kind"] == kind && o["metadata"]["name"] == name).unwrap();
        let pod = &workload["spec"]["template"]["spec"];
        let secrets: Vec<&str> = pod["volumes"].as_sequence().unwrap().iter().filter_map(|v| v["secret"]["secretName"].as_str()).collect();
        assert_eq!(secrets, [format!("dw-{role}-secrets")], "{name} mounts its role's Secret only");
        let config = pod_config(&objects, pod);
        let kafka = &config["kafka"]["properties"];
        assert_eq!(
            (kafka["security.protocol"].as_str(), kafka["sasl.username"].as_str()),
            (Some("SASL_SSL"), Some(format!("driftwatch-{role}").as_str())),
            "{name}"
        );
        let env = pod_env(pod);
        let upper = role.to_uppercase();
        assert!(
            env.iter().any(|(k, v)| *k == format!("DRIFTWATCH_{upper}__KAFKA__PROPERTIES__SASL.PASSWORD")
                && v.contains("/etc/driftwatch/secrets/kafka-password")),
            "{name}: {env:?}"
        );
    }
    // The cluster agent's key outlives its pod.
    let pvc = objects.iter().find(|o| o["kind"] == "PersistentVolumeClaim").expect("the cluster agent's state claim");
    assert_eq!(pvc["metadata"]["name"], "dw-cluster-agent-state");

    // Client certificates instead (mTLS), with the brokers' CA.
    let objects =
        rendered("kafka:\n  auth: mtls\n  caPem: CA\n  agent: {certPem: AC, keyPem: AK}\n  collector: {certPem: CC, keyPem: CK}\n");
    check_agents(&objects, "dw");
    check_collector(&objects, "dw", 6);
    let ds = objects.iter().find(|o| o["kind"] == "DaemonSet").unwrap();
    let kafka = pod_config(&objects, &ds["spec"]["template"]["spec"])["kafka"]["properties"].clone();
    assert_eq!(kafka["security.protocol"], "SSL");
    assert_eq!(kafka["ssl.key.location"], "/etc/driftwatch/secrets/kafka-client.key");
    assert_eq!(kafka["ssl.ca.location"], "/etc/driftwatch/secrets/kafka-ca.pem");
    let agent_secret = objects.iter().find(|o| o["kind"] == "Secret" && o["metadata"]["name"] == "dw-agent-secrets").unwrap();
    assert_eq!(agent_secret["stringData"]["kafka-client.key"], "AK");
    let refusal = refused("kafka: {auth: mtls}");
    assert!(refusal.contains("kafka.agent.certPem is required"), "{refusal}");

    // Plaintext only when asked for.
    let objects = rendered("kafka: {auth: none, partitions: 12}\n");
    check_collector(&objects, "dw", 12);
    let ds = objects.iter().find(|o| o["kind"] == "DaemonSet").unwrap();
    assert!(pod_config(&objects, &ds["spec"]["template"]["spec"])["kafka"]["properties"]["security.protocol"].is_null());

    // Components turned off are not rendered.
    let objects = rendered(&format!(
        "{CREDENTIALS}nodeAgent: {{enabled: false}}\nclusterAgent: {{enabled: false}}\ncollector: {{autoscaling: {{enabled: false}}}}\n"
    ));
    assert!(!objects.iter().any(|o| ["DaemonSet", "ClusterRole", "HorizontalPodAutoscaler"].contains(&o["kind"].as_str().unwrap())));
    check_collector(&objects, "dw", 6);
}

/// What a platform team asks of a chart: values checked by its schema,
/// every setting reachable, its own Secrets, its own packs, pods that roll
/// when their configuration changes, room for drains, and the Prometheus
/// Operator's objects.
#[test]
fn helm_chart_fits_a_platform() {
    driftwatch_tests::services_up();
    const CREDENTIALS: &str = "kafka: {agent: {password: agent-pw}, collector: {password: collector-pw}}\n";
    // values.schema.json refuses what the chart cannot mean, naming where.
    for (values, says) in [
        ("kafka: {auth: kerberos}", "at '/kafka/auth'"),
        ("colector: {replicas: 3}", "additional properties 'colector' not allowed"),
        ("collector: {clickhouse: {url: 'clickhouse:8123'}}", "at '/collector/clickhouse/url'"),
        ("collector: {policies: {files: {'../x.yaml': 'pack: x'}}}", "'../x.yaml' does not match pattern"),
    ] {
        let refusal = refused(&format!("{CREDENTIALS}{values}\n"));
        assert!(refusal.contains(says), "{values}: {refusal}");
    }

    // Any setting, merged over the chart's: maps merge, the rest stays.
    let objects = rendered(&format!(
        "{CREDENTIALS}collector:\n  config: {{clickhouse: {{query_timeout_secs: 60}}, evaluation: {{score_interval_secs: 120}}}}\nnodeAgent:\n  config: {{heartbeat_secs: 15}}\n"
    ));
    check_agents(&objects, "dw");
    check_collector(&objects, "dw", 6);
    let collector = pod_config(&objects, &pod_of(&objects, "Deployment", "dw-collector")["spec"]);
    assert_eq!(collector["clickhouse"]["query_timeout_secs"].as_u64(), Some(60));
    assert_eq!(collector["clickhouse"]["url"], "http://clickhouse.clickhouse.svc:8123", "the chart's settings beside it stay");
    let node = pod_config(&objects, &pod_of(&objects, "DaemonSet", "dw-node-agent")["spec"]);
    assert_eq!((node["heartbeat_secs"].as_u64(), node["root"].as_str()), (Some(15), Some("/host")));

    // A change of configuration or Secret rolls the pods it concerns, not
    // the others.
    let base = rendered(CREDENTIALS);
    let checksum = |objects: &[Value], kind: &str, name: &str, which: &str| {
        pod_of(objects, kind, name)["metadata"]["annotations"][format!("checksum/{which}")].as_str().unwrap().to_string()
    };
    assert_ne!(checksum(&base, "Deployment", "dw-collector", "config"), checksum(&objects, "Deployment", "dw-collector", "config"));
    assert_ne!(checksum(&base, "DaemonSet", "dw-node-agent", "config"), checksum(&objects, "DaemonSet", "dw-node-agent", "config"));
    assert_eq!(checksum(&base, "Deployment", "dw-cluster-agent", "config"), checksum(&objects, "Deployment", "dw-cluster-agent", "config"));
    let new_password = rendered("kafka: {agent: {password: agent-pw}, collector: {password: rotated}}\n");
    assert_ne!(checksum(&base, "Deployment", "dw-collector", "secret"), checksum(&new_password, "Deployment", "dw-collector", "secret"));
    assert_eq!(checksum(&base, "DaemonSet", "dw-node-agent", "secret"), checksum(&new_password, "DaemonSet", "dw-node-agent", "secret"));

    // Secrets of your own: the chart makes none and asks for no password;
    // the pods mount yours and read the keys you say it holds.
    let objects = rendered(
        "existingSecrets: {agent: vault-agent, collector: vault-collector}\nkafka: {caInSecret: true}\n\
         collector: {clickhouse: {url: 'https://clickhouse.clickhouse.svc:8443', passwordInSecret: true, caInSecret: true}}\n",
    );
    assert!(!objects.iter().any(|o| o["kind"] == "Secret"), "no Secret made beside yours");
    for (kind, name, secret) in [
        ("DaemonSet", "dw-node-agent", "vault-agent"),
        ("Deployment", "dw-cluster-agent", "vault-agent"),
        ("Deployment", "dw-collector", "vault-collector"),
    ] {
        let pod = pod_of(&objects, kind, name);
        let secrets: Vec<&str> =
            pod["spec"]["volumes"].as_sequence().unwrap().iter().filter_map(|v| v["secret"]["secretName"].as_str()).collect();
        assert_eq!(secrets, [secret], "{name}");
        assert!(pod["metadata"]["annotations"]["checksum/secret"].is_null(), "{name}: the chart cannot know your Secret's content");
        assert_eq!(pod_config(&objects, &pod["spec"])["kafka"]["properties"]["ssl.ca.location"], "/etc/driftwatch/secrets/kafka-ca.pem");
    }
    let collector = pod_config(&objects, &pod_of(&objects, "Deployment", "dw-collector")["spec"]);
    assert_eq!(collector["clickhouse"]["password"]["file"], "/etc/driftwatch/secrets/clickhouse-password");
    assert_eq!(collector["clickhouse"]["tls"]["ca_file"], "/etc/driftwatch/secrets/clickhouse-ca.pem");

    // Your own packs and waivers beside the image's, from the values or
    // from volumes; they load with the shipped ones.
    let pack = "pack: site\ncontrols:\n  - id: site.motd_present\n    title: A login banner is shown\n    severity: low\n    check: 'files[\"/etc/motd\"].exists'\n    frameworks: {soc2: [CC6.1]}\n";
    let values = format!(
        "{CREDENTIALS}collector:\n  policies:\n    files: {{site.yaml: {pack:?}}}\n    volumes: [{{name: team, configMap: {{name: team-packs}}}}]\n"
    );
    let objects = rendered(&values);
    check_collector(&objects, "dw", 6);
    let pod = pod_of(&objects, "Deployment", "dw-collector");
    let mounts = &pod["spec"]["containers"][0]["volumeMounts"];
    let mount = |path: &str| {
        mounts.as_sequence().unwrap().iter().find(|m| m["mountPath"] == path).unwrap_or_else(|| panic!("{path} is not mounted")).clone()
    };
    let volume = |name: &Value| pod["spec"]["volumes"].as_sequence().unwrap().iter().find(|v| v["name"] == *name).unwrap().clone();
    assert_eq!(volume(&mount("/etc/driftwatch/policies/team")["name"])["configMap"]["name"], "team-packs");
    let site = volume(&mount("/etc/driftwatch/policies/site")["name"])["configMap"]["name"].as_str().unwrap().to_string();
    let cm = objects.iter().find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == site.as_str()).unwrap();
    let folder = tempfile::tempdir().unwrap();
    let copy = Command::new("cp").arg("-r").arg(repo().join("policies/.")).arg(folder.path()).status().unwrap();
    assert!(copy.success());
    std::fs::create_dir_all(folder.path().join("site")).unwrap();
    std::fs::write(folder.path().join("site/site.yaml"), cm["data"]["site.yaml"].as_str().unwrap()).unwrap();
    let check = Command::new(bin("driftwatch-collector")).args(["policies", "check"]).arg(folder.path()).output().unwrap();
    let said = String::from_utf8_lossy(&check.stdout).to_string() + &String::from_utf8_lossy(&check.stderr);
    let shipped = Command::new(bin("driftwatch-collector")).args(["policies", "check"]).arg(repo().join("policies")).output().unwrap();
    let count = |text: &str| {
        text.split_whitespace()
            .zip(text.split_whitespace().skip(1))
            .find(|(_, w)| *w == "controls,")
            .map(|(n, _)| n.parse::<usize>().unwrap())
    };
    assert_eq!(count(&said), count(&String::from_utf8_lossy(&shipped.stdout)).map(|n| n + 1), "{said}");
    let files_changed = rendered(&values.replace("low", "medium"));
    assert_ne!(
        checksum(&objects, "Deployment", "dw-collector", "config"),
        checksum(&files_changed, "Deployment", "dw-collector", "config")
    );

    // Drains take one collector at a time; the Prometheus Operator's
    // objects scrape every collector as the rules expect and carry the
    // rules themselves.
    let objects = rendered(&format!(
        "{CREDENTIALS}monitoring: {{labels: {{release: kube-prometheus-stack}}, serviceMonitor: {{enabled: true}}, prometheusRule: {{enabled: true}}}}\n"
    ));
    let find = |kind: &str| objects.iter().find(|o| o["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"));
    let pods = &pod_of(&objects, "Deployment", "dw-collector")["metadata"]["labels"];
    let pdb = find("PodDisruptionBudget");
    assert_eq!(pdb["spec"]["maxUnavailable"].as_u64(), Some(1));
    for (k, v) in pdb["spec"]["selector"]["matchLabels"].as_mapping().unwrap() {
        assert_eq!(&pods[k], v, "the budget selects the collectors");
    }
    let (service, monitor, rule) = (find("Service"), find("ServiceMonitor"), find("PrometheusRule"));
    for (k, v) in monitor["spec"]["selector"]["matchLabels"].as_mapping().unwrap() {
        assert_eq!(&service["metadata"]["labels"][k], v, "the ServiceMonitor selects the collectors' Service");
    }
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!((endpoint["port"].as_str(), endpoint["path"].as_str()), (service["spec"]["ports"][0]["name"].as_str(), Some("/metrics")));
    let job = service["metadata"]["labels"][monitor["spec"]["jobLabel"].as_str().unwrap()].as_str().unwrap();
    let rules_text = std::fs::read_to_string(repo().join("deploy/prometheus/driftwatch.rules.yml")).unwrap();
    assert!(rules_text.contains(&format!("job=\"{job}\"")), "the rules select the job the ServiceMonitor names ({job})");
    let rules: Value = serde_yaml::from_str(&rules_text).unwrap();
    assert_eq!(rule["spec"]["groups"], rules["groups"], "the PrometheusRule holds deploy/prometheus/driftwatch.rules.yml");
    for o in [monitor, rule] {
        assert_eq!(o["metadata"]["labels"]["release"], "kube-prometheus-stack");
    }
    let off = rendered(&format!("{CREDENTIALS}collector: {{podDisruptionBudget: {{enabled: false}}}}\n"));
    assert!(!off.iter().any(|o| ["PodDisruptionBudget", "ServiceMonitor", "PrometheusRule"].contains(&o["kind"].as_str().unwrap())));
}

/// `deploy/local/services up` from another data folder (as another
/// checkout would be) uses the broker and ClickHouse that answer on the
/// ports, whoever started them; a port held by something that is not a
/// broker is refused, naming what holds it.
#[test]
fn services_reuse_what_answers_and_refuse_what_does_not() {
    driftwatch_tests::services_up();
    let script = driftwatch_tests::repo().join("deploy/local/services");
    let other = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(&script).arg("up").env("DRIFTWATCH_LOCAL", other.path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("using the Kafka broker already answering"), "{err}");
    assert!(err.contains("using the ClickHouse already answering"), "{err}");
    assert!(!other.path().join("tansu.pid").exists(), "nothing started: {err}");

    // An HTTP server where the broker should be.
    let impostor = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = impostor.local_addr().unwrap().port();
    // Answers every connection with an HTTP error, for as long as the
    // test runs (never joined).
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut s in impostor.incoming().flatten() {
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        }
    });
    // Whatever the script started under this data folder is stopped, pass
    // or fail.
    struct Down<'a>(&'a Path, &'a Path);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new(self.0).arg("down").env("DRIFTWATCH_LOCAL", self.1).output();
        }
    }
    let _down = Down(&script, other.path());
    let out = std::process::Command::new(&script)
        .arg("up")
        .env("DRIFTWATCH_LOCAL", other.path())
        .env("KAFKA_PORT", port.to_string())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&format!("port {port} (for the Kafka broker) is taken by")), "{err}");
}
