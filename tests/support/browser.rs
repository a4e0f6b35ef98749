//! Headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromedriver`, installed by `deploy/local/services up`), for the live
//! view's test: open a page, run a script in it, wait for what it shows.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::{wait_for, Proc};

pub struct Browser {
    driver: Proc,
    base: String,
    session: String,
    http: reqwest::Client,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless session.
    pub async fn start(work: &Path) -> Browser {
        let port = crate::free_port();
        let driver = Proc::spawn("chromedriver", Command::new("chromedriver").arg(format!("--port={port}")), work);
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let status = format!("{base}/status");
        wait_for("chromedriver", 30, async || {
            let v: Value = http.get(&status).send().await.ok()?.json().await.ok()?;
            v["value"]["ready"].as_bool().filter(|r| *r)
        })
        .await;
        let profile = work.join("chromium-profile");
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}});
        let v: Value =
            http.post(format!("{base}/session")).json(&caps).send().await.expect("new session").json().await.expect("session json");
        let session = v["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no WebDriver session: {v}")).to_string();
        Browser { driver, base, session, http }
    }

    pub async fn goto(&self, url: &str) {
        let r = self
            .http
            .post(format!("{}/session/{}/url", self.base, self.session))
            .json(&json!({"url": url}))
            .send()
            .await
            .expect("navigate");
        assert!(r.status().is_success(), "navigating to {url}: {}", r.text().await.unwrap_or_default());
    }

    /// Runs `script` (a function body; `return` a value) in the page.
    pub async fn eval(&self, script: &str) -> Value {
        let v: Value = self
            .http
            .post(format!("{}/session/{}/execute/sync", self.base, self.session))
            .json(&json!({"script": script, "args": []}))
            .send()
            .await
            .expect("execute")
            .json()
            .await
            .expect("execute json");
        v["value"].clone()
    }

    /// Waits until `script` returns something other than null or false.
    pub async fn wait_for(&self, what: &str, secs: u64, script: &str) -> Value {
        wait_for(what, secs, async || Some(self.eval(script).await).filter(|v| !v.is_null() && *v != Value::Bool(false))).await
    }

    /// The page's visible text (for failure messages).
    pub async fn text(&self) -> String {
        self.eval("return document.body.innerText").await.as_str().unwrap_or_default().to_string()
    }

    pub fn driver_log(&self) -> String {
        self.driver.log()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Best effort: close the session so chromium exits with the driver.
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = std::process::Command::new("curl").args(["-s", "-X", "DELETE", &url]).output();
    }
}
