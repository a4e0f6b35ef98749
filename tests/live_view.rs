//! The live drift view in headless Chromium: a real agent watches a fixture
//! host, a real collector serves the page; the test changes sshd_config on
//! the fixture host and sees the drift appear on the open page (no reload),
//! filters it, opens the asset's page by the link notifications carry, with
//! its timeline, the diff, the age of the evidence behind each result and
//! what to do, and from there the control's page.

use std::process::Command;

use driftwatch_tests::browser::Browser;
use driftwatch_tests::*;
use sha2::{Digest, Sha256};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_appears_on_the_live_page() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let host = work.path().join("host");
    let asset = unique("live");
    write_host_file(&host, "/etc/machine-id", &format!("{asset}\n"), 0o444);
    write_host_file(&host, "/etc/hostname", "live-host\n", 0o644);
    write_host_file(&host, "/etc/ssh/sshd_config", "PermitRootLogin no\n", 0o600);

    let names = Names::new();
    let packs = repo().join("tests/fixtures/packs/drift");
    let cfg = names.collector_config_with_policies(work.path(), "http://127.0.0.1:9/hook", &packs);
    let port = driftwatch_tests::free_port();
    let sha = hex::encode(Sha256::digest(b"view-key"));
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "api:\n  listen: null\n",
        &format!("api:\n  listen: 127.0.0.1:{port}\n  keys:\n    - {{name: viewer, sha256: {sha}, scope: read}}\n"),
    );
    std::fs::write(&cfg, text).unwrap();
    create_topics(&cfg);
    let agent_cfg = work.path().join("agent.yaml");
    std::fs::write(
        &agent_cfg,
        format!(
            "root: {}\nstate_dir: {}\nasset:\n  labels: {{team: web}}\nkafka:\n  brokers: {BROKERS}\n  topics:\n{}snapshots:\n  debounce_ms: 200\n",
            host.display(),
            work.path().join("state").display(),
            names.topics_yaml(false)
        ),
    )
    .unwrap();
    let collector = Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    let agent = Proc::spawn("agent", Command::new(bin("driftwatch-agent")).arg("run").arg("--config").arg(&agent_cfg), work.path());
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_for("the API", 60, async || http.get(format!("{base}/healthz")).send().await.ok().filter(|r| r.status() == 200)).await;
    let response = http.get(format!("{base}/ui")).send().await.unwrap();
    // The page runs below under this policy: only its own inline script.
    let csp = response.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.starts_with("default-src 'none'; script-src 'sha256-") && !csp.contains("unsafe-inline"), "{csp}");
    let page = response.text().await.unwrap();
    assert!(!page.contains("https://") && !page.contains("<script src"), "the page loads nothing from elsewhere");

    let browser = Browser::start(work.path()).await;
    browser.goto(&format!("{base}/ui#key=view-key")).await;
    browser
        .wait_for("the posture on the page", 90, r#"return document.querySelector('#posture tr[data-framework="soc2"]') !== null && document.getElementById('conn').textContent === 'live'"#)
        .await;
    assert!(!browser.eval("return location.href").await.as_str().unwrap().contains("view-key"), "the key leaves the URL");
    // The score comes with what it covers of SOC 2's 61 criteria.
    let coverage = browser
        .eval(r#"const c = document.querySelector('#posture tr[data-framework="soc2"] td.coverage'); return c.innerText + " | " + c.title"#)
        .await;
    let coverage = coverage.as_str().unwrap();
    assert!(coverage.ends_with("requirements not assessed") && coverage.contains("% | ") && coverage.contains(" of 61 "), "{coverage}");

    // Someone changes the file on the host; the page shows the drift by itself.
    let tmp = host.join("etc/ssh/.sshd_config.new");
    std::fs::write(&tmp, "PermitRootLogin yes\n").unwrap();
    std::fs::rename(&tmp, host.join("etc/ssh/sshd_config")).unwrap();
    let item =
        format!(r#"document.querySelector('#stream li[data-control="t.root_login"][data-asset="{asset}"][data-direction="regressed"]')"#);
    let shown = browser.wait_for("the drift on the page", 90, &format!("const li = {item}; return li && li.innerText")).await;
    let shown = shown.as_str().unwrap();
    assert!(shown.contains("SSH root login is disabled") && shown.contains("pass → fail"), "{shown}");
    assert!(shown.contains(r#"sshd.config.permitrootlogin: "no" → "yes""#), "the diff: {shown}");
    assert!(shown.contains("soc2:CC6.1"), "{shown}");

    // Filters: a severity it does not have hides it; the asset's label shows it.
    let hidden = browser
        .eval(&format!(
            "const s = document.getElementById('f-severity'); s.value = 'low'; s.dispatchEvent(new Event('input')); return {item} === null"
        ))
        .await;
    assert_eq!(hidden, true, "{}", browser.text().await);
    let back = browser
        .eval(&format!("document.getElementById('f-severity').value = ''; const l = document.getElementById('f-label'); l.value = 'team=web'; l.dispatchEvent(new Event('input')); return {item} !== null"))
        .await;
    assert_eq!(back, true, "{}", browser.text().await);

    // The asset's page, opened by the link notifications carry (a redirect
    // to the page's view): its results with the age of their evidence and
    // what to do, and its timeline.
    let plain = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let link = plain.get(format!("{base}/assets/{asset}")).send().await.unwrap();
    assert!(link.status().is_redirection(), "{}", link.status());
    assert_eq!(link.headers()["location"], format!("/ui#/asset/{asset}").as_str(), "to the asset's view");
    browser.goto(&format!("{base}/assets/{asset}")).await;
    let row = browser
        .wait_for(
            "the asset's results",
            30,
            r#"const r = document.querySelector('#asset-results tr[data-control="t.root_login"]'); return r && r.innerText"#,
        )
        .await;
    let row = row.as_str().unwrap();
    assert!(row.contains("fail") && row.contains("SSH root login is disabled"), "{row}");
    assert!(row.contains("Set `PermitRootLogin no` in /etc/ssh/sshd_config and reload sshd."), "what to do: {row}");
    let age =
        browser.eval(r#"return document.querySelector('#asset-results tr[data-control="t.root_login"] td[data-age]').dataset.age"#).await;
    assert!(age.as_str().and_then(|a| a.parse::<i64>().ok()).is_some_and(|a| a >= 0), "evidence age: {age}");
    let timeline = browser
        .wait_for(
            "the timeline",
            30,
            r#"const li = document.querySelector('#timeline li[data-direction="regressed"]'); return li && li.innerText"#,
        )
        .await;
    assert!(timeline.as_str().unwrap().contains(r#""no" → "yes""#), "{timeline}");

    // The control's page, from the asset's: why, how to fix it, and where
    // it does not pass.
    browser.eval(r#"document.querySelector('#asset-results tr[data-control="t.root_login"] a').click(); return true"#).await;
    let failing = browser
        .wait_for(
            "the control's page",
            30,
            &format!(r#"const r = document.querySelector('#control-assets tr[data-asset="{asset}"]'); return r && r.innerText"#),
        )
        .await;
    assert!(failing.as_str().unwrap().contains("fail"), "{failing}");
    let page = browser.eval("return document.getElementById('control').innerText").await;
    let page = page.as_str().unwrap();
    for shown in ["SSH root login is disabled", "Direct root logins leave no trace", "Set `PermitRootLogin no`", "soc2: CC6.1"] {
        assert!(page.contains(shown), "{shown} on the control's page: {page}");
    }
    assert!(browser.eval("return document.getElementById('asset').hidden").await == true, "one view at a time");

    drop(browser);
    drop(agent);
    drop(collector);
    names.drop_database().await;
}
