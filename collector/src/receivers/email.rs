//! Email: a notification as one plain-text message over SMTP (lettre),
//! STARTTLS required unless said otherwise, optionally authenticated. The
//! subject is Alertmanager's (`[FIRING:2] …`); the body lists each alert
//! with its summary, labels, fix line and links. A permanent SMTP reply
//! (5xx) is not retried; a transient one (4xx), a refused connection or a
//! failed handshake is.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::{header::ContentType, Attachment, Mailbox, Message, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Deserialize;

use super::{Attempt, Kind, Notification, Scheduled};
use crate::alert::model::Alert;

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS; refused if the server
    /// does not offer it (submission, port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (submissions, port 465).
    Implicit,
    /// No TLS at all: only for a relay on the same host.
    None,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The SMTP server, `host:port`.
    pub smarthost: String,
    pub from: String,
    pub to: Vec<String>,
    #[serde(default)]
    pub tls: TlsMode,
    /// A PEM file of further CA certificates to trust (a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub username: Option<String>,
    /// Never logged; `{file: PATH}` reads it from a file.
    #[serde(default)]
    pub password: Option<String>,
}

/// Without the password.
impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("smarthost", &self.smarthost)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

impl EmailConfig {
    /// The smarthost's host and port.
    fn host_port(&self) -> Option<(&str, u16)> {
        let (host, port) = self.smarthost.rsplit_once(':')?;
        Some((host.trim_start_matches('[').trim_end_matches(']'), port.parse().ok()?)).filter(|(h, _)| !h.is_empty())
    }

    pub fn validate(&self, at: &str, e: &mut Vec<String>) {
        if self.host_port().is_none() {
            e.push(format!("{at}.smarthost: {:?} is not host:port (e.g. smtp.example.com:587)", self.smarthost));
        }
        if self.from.parse::<Mailbox>().is_err() {
            e.push(format!("{at}.from: {:?} is not an email address", self.from));
        }
        if self.to.is_empty() {
            e.push(format!("{at}.to: name at least one recipient"));
        }
        for (i, to) in self.to.iter().enumerate() {
            if to.parse::<Mailbox>().is_err() {
                e.push(format!("{at}.to[{i}]: {to:?} is not an email address"));
            }
        }
        if self.username.is_some() != self.password.is_some() {
            e.push(format!("{at}: give username and password together"));
        }
        if self.password.is_some() && self.tls == TlsMode::None {
            e.push(format!("{at}.tls: a password is never sent without TLS (use starttls or implicit)"));
        }
        if let Some(ca) = &self.ca_file {
            match std::fs::read(ca) {
                Ok(pem) if Certificate::from_pem(&pem).is_ok() => {}
                Ok(_) => e.push(format!("{at}.ca_file: {}: not a PEM certificate", ca.display())),
                Err(err) => e.push(format!("{at}.ca_file: {}: {err}", ca.display())),
            }
        }
    }
}

pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Email {
    pub fn new(cfg: &EmailConfig, timeout: Duration) -> anyhow::Result<Self> {
        let mut problems = Vec::new();
        cfg.validate("email", &mut problems);
        anyhow::ensure!(problems.is_empty(), "{}", problems.join("; "));
        let (host, port) = cfg.host_port().ok_or_else(|| anyhow::anyhow!("email.smarthost: not host:port"))?;
        let tls = match cfg.tls {
            TlsMode::None => Tls::None,
            mode => {
                let mut params = TlsParameters::builder(host.to_string());
                if let Some(ca) = &cfg.ca_file {
                    params = params.add_root_certificate(Certificate::from_pem(&std::fs::read(ca)?)?);
                }
                let params = params.build_rustls()?;
                if mode == TlsMode::Implicit {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(port).tls(tls).timeout(Some(timeout));
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
        }
        Ok(Email { transport: builder.build(), from: cfg.from.parse()?, to: cfg.to.iter().map(|t| t.parse()).collect::<Result<_, _>>()? })
    }
}

#[async_trait::async_trait]
impl Kind for Email {
    async fn attempt(&self, n: &Notification) -> Attempt {
        let message = match message(n, &self.from, &self.to) {
            Ok(m) => m,
            Err(e) => return Attempt::GiveUp(format!("the message cannot be built: {e}")),
        };
        self.send(message).await
    }

    async fn attempt_report(&self, r: &Scheduled) -> Attempt {
        match report_message(r, &self.from, &self.to) {
            Ok(m) => self.send(m).await,
            Err(e) => Attempt::GiveUp(format!("the message cannot be built: {e}")),
        }
    }
}

impl Email {
    async fn send(&self, message: Message) -> Attempt {
        match self.transport.send(message).await {
            Ok(_) => Attempt::Delivered,
            Err(e) if e.is_permanent() => Attempt::GiveUp(format!("SMTP: {e}")),
            Err(e) => Attempt::Retry { after: None, reason: format!("SMTP: {e}") },
        }
    }
}

/// A scheduled report's message: its summary as text, the report attached.
pub fn report_message(r: &Scheduled, from: &Mailbox, to: &[Mailbox]) -> Result<Message, lettre::error::Error> {
    let mut b = Message::builder().from(from.clone()).subject(r.subject.chars().filter(|c| !c.is_control()).collect::<String>());
    for t in to {
        b = b.to(t.clone());
    }
    let (name, content_type, bytes) = &r.attachment;
    let content_type = ContentType::parse(content_type).unwrap_or(ContentType::TEXT_PLAIN);
    b.multipart(
        MultiPart::mixed()
            .singlepart(SinglePart::plain(r.text.clone()))
            .singlepart(Attachment::new(name.clone()).body(bytes.clone(), content_type)),
    )
}

/// The message of a notification.
pub fn message(n: &Notification, from: &Mailbox, to: &[Mailbox]) -> Result<Message, lettre::error::Error> {
    let mut b = Message::builder().from(from.clone()).subject(subject(n)).header(ContentType::TEXT_PLAIN);
    for t in to {
        b = b.to(t.clone());
    }
    b.body(body(n))
}

/// Alertmanager's subject: `[FIRING:2] what` or `[RESOLVED] what` (what
/// the notification's title says after its status), on one line.
pub fn subject(n: &Notification) -> String {
    let head = if n.firing.is_empty() { "[RESOLVED]".to_string() } else { format!("[FIRING:{}]", n.firing.len()) };
    let title = n.title();
    let status = format!("{}: ", n.status().to_uppercase());
    let what = title.replacen(&status, "", 1);
    format!("{head} {what}").chars().filter(|c| !c.is_control()).take(200).collect()
}

/// The plain-text body: each firing alert, then each resolved one.
pub fn body(n: &Notification) -> String {
    let mut out = String::new();
    for (heading, alerts) in [("Firing", &n.firing), ("Resolved", &n.resolved)] {
        if alerts.is_empty() {
            continue;
        }
        out += &format!("{heading} ({}):\n\n", alerts.len());
        for a in alerts.iter() {
            out += &alert_text(n, a);
        }
    }
    if let Some(link) = n.link() {
        out += &format!("Open in Driftwatch: {link}\n");
    }
    out
}

fn alert_text(n: &Notification, a: &Alert) -> String {
    let mut t = format!("* {}\n", a.annotations.get("summary").or(a.annotations.get("title")).map_or("(no summary)", |s| s.as_str()));
    let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    t += &format!("  {}\n", labels.join(" "));
    t += &format!("  since {}\n", a.starts_at.format("%Y-%m-%d %H:%M UTC"));
    if let Some(fix) = a.annotations.get("remediation").filter(|f| !f.is_empty()) {
        t += &format!("  Fix: {}\n", fix.replace('\n', "\n       "));
    }
    if let Some(link) = n.control_link(a) {
        t += &format!("  Control: {link}\n");
    }
    t + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::notification::tests::{alert, notification};

    fn cfg(text: &str) -> EmailConfig {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn a_message_says_what_fires_with_its_fix_and_link() {
        let mut a = alert("web-1", "high", false);
        a.annotations.insert("remediation".into(), "Set `PermitRootLogin no` and reload sshd.".into());
        let n = notification(vec![a], vec![alert("db-1", "low", true)]);
        assert!(subject(&n).starts_with("[FIRING:1] ") && !subject(&n).contains("FIRING: "), "{}", subject(&n));
        let body = body(&n);
        assert!(body.contains("Firing (1):") && body.contains("Resolved (1):"), "{body}");
        assert!(body.contains("Fix: Set `PermitRootLogin no` and reload sshd."), "{body}");
        assert!(body.contains("asset=web-1"), "{body}");
        let from: Mailbox = "Driftwatch <driftwatch@example.com>".parse().unwrap();
        let m = message(&n, &from, &["secops@example.com".parse().unwrap()]).unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(raw.contains("To: secops@example.com") && raw.contains("Subject: [FIRING:1]"), "{raw}");
        let resolved = notification(vec![], vec![alert("db-1", "low", true)]);
        assert!(subject(&resolved).starts_with("[RESOLVED] "));
    }

    #[test]
    fn a_bad_configuration_is_named_and_the_password_never_printed() {
        let c = cfg("{smarthost: nohost, from: not-an-address, to: [], username: u}");
        let mut e = Vec::new();
        c.validate("alerts.receivers[0].email", &mut e);
        let all = e.join("\n");
        for want in [
            "email.smarthost: \"nohost\" is not host:port",
            "email.from:",
            "email.to: name at least one",
            "give username and password together",
        ] {
            assert!(all.contains(want), "{want} not in {all}");
        }
        let c = cfg("{smarthost: 'smtp:587', from: a@b.c, to: [d@e.f], username: u, password: Hunter2, tls: none}");
        let mut e = Vec::new();
        c.validate("x", &mut e);
        assert_eq!(e, ["x.tls: a password is never sent without TLS (use starttls or implicit)"]);
        assert!(!format!("{c:?}").contains("Hunter2"));
    }
}
