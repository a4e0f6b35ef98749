//! Slack incoming webhooks: one message per notification, in Block Kit,
//! inside an attachment so that the severity shows as the message's colour
//! bar. Slack's limits are kept (header ≤ 150 characters, section text ≤
//! 3,000, ≤ 10 fields, ≤ 50 blocks); Slack answers 200 `ok`, 4xx with a
//! reason (`invalid_payload`, `no_service`, …) and 429 with `Retry-After`.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{HttpKind, Notification};

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The incoming-webhook URL (`https://hooks.slack.com/services/…`).
    pub url: String,
}

/// Without the credential (the URL's path, the key, the secret).
impl std::fmt::Debug for SlackConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackConfig").field("url", &super::url_origin(&self.url)).finish()
    }
}

pub struct Slack {
    url: String,
}

impl Slack {
    pub fn new(cfg: &SlackConfig) -> Self {
        Slack { url: cfg.url.clone() }
    }
}

impl HttpKind for Slack {
    fn request(&self, client: &reqwest::Client, n: &Notification) -> reqwest::RequestBuilder {
        client.post(&self.url).json(&message(n))
    }
}

/// Colour of the attachment bar.
pub fn colour(n: &Notification) -> &'static str {
    if n.status() == "resolved" {
        return "#2EB67D";
    }
    match n.severity() {
        "critical" => "#E01E5A",
        "high" => "#E8912D",
        "medium" => "#ECB22E",
        _ => "#36C5F0",
    }
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max - 1).collect::<String>())
    }
}

/// Text for a mrkdwn field: Slack's three control characters escaped, so
/// that nothing a host sent (an asset id, a hostname, a user name in a
/// cause, a fact in a diff) becomes a mention (`<!channel>`), a forged
/// link (`<https://evil|Open in Driftwatch>`) or markup.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Text for inside a code block: escaped, and unable to close the block.
fn code(s: &str) -> String {
    escape(s).replace("```", "`\u{200B}``")
}

/// The message body.
pub fn message(n: &Notification) -> Value {
    let title = n.title();
    let mut blocks = vec![json!({"type": "header", "text": {"type": "plain_text", "text": cut(&title, 150), "emoji": true}})];
    let shown = 10; // alerts detailed; the rest are counted
    for a in n.firing.iter().chain(&n.resolved).take(shown) {
        let state = if a.is_resolved() { ":white_check_mark: resolved" } else { ":rotating_light: firing" };
        let mut text = format!(
            "*{}* — {state}\n",
            escape(&a.annotations.get("summary").or(a.annotations.get("title")).cloned().unwrap_or_else(|| a.fingerprint()))
        );
        if let Some(req) = a.labels.get("frameworks").filter(|f| !f.is_empty()) {
            text += &format!("*Requirements:* {}\n", escape(&req.replace(',', ", ")));
        }
        if let Some(d) = a.annotations.get("diff").filter(|d| !d.is_empty()) {
            text += &format!("*Change:*\n```{}```\n", code(d));
        } else if let Some(e) = a.annotations.get("evidence").filter(|e| !e.is_empty()) {
            text += &format!("*Evidence:*\n```{}```\n", code(e));
        }
        if let Some(c) = a.annotations.get("cause") {
            text += &format!("*Likely cause:* {}\n", escape(c));
        }
        if !a.is_resolved() {
            if let Some(fix) = a.annotations.get("remediation") {
                text += &format!("*Fix:* {}", escape(fix));
                if let Some(link) = n.control_link(a) {
                    text += &format!(" <{link}|More on this control>");
                }
                text += "\n";
            }
        }
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(&text, 3000)}}));
        let fields: Vec<Value> = ["severity", "asset", "control", "service"]
            .iter()
            .filter_map(|k| a.labels.get(*k).map(|v| json!({"type": "mrkdwn", "text": cut(&format!("*{k}:* {}", escape(v)), 2000)})))
            .collect();
        if !fields.is_empty() {
            blocks.push(json!({"type": "section", "fields": fields}));
        }
    }
    let total = n.firing.len() + n.resolved.len();
    let mut context = format!("{} firing, {} resolved", n.firing.len(), n.resolved.len());
    if total > shown {
        context += &format!(" ({} more not shown)", total - shown);
    }
    if let Some(link) = n.link() {
        context += &format!(" · <{link}|Open in Driftwatch>");
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": cut(&context, 3000)}]}));
    json!({
        "text": cut(&escape(&title), 3000),
        "attachments": [{"color": colour(n), "fallback": cut(&title, 3000), "blocks": blocks}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::notification::tests::{alert, notification};

    #[test]
    fn block_kit_with_severity_colour_requirements_and_diff() {
        let n = notification(vec![alert("web-1", "critical", false)], vec![]);
        let m = message(&n);
        assert_eq!(m["attachments"][0]["color"], "#E01E5A");
        let blocks = m["attachments"][0]["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        let body = blocks[1]["text"]["text"].as_str().unwrap();
        assert!(body.contains("*Requirements:* soc2:CC6.1"), "{body}");
        assert!(body.contains("sshd.config.permitrootlogin"), "{body}");
        assert!(
            body.contains(
                "*Fix:* Set `PermitRootLogin no` and reload sshd. <http://127.0.0.1:8080/controls/linux.sshd.root_login_disabled|"
            ),
            "{body}"
        );
        assert!(blocks.last().unwrap()["elements"][0]["text"].as_str().unwrap().contains("<http://127.0.0.1:8080/assets/web-1|"));
        assert!(m["text"].as_str().unwrap().starts_with("FIRING"));
        let resolved = message(&notification(vec![], vec![alert("web-1", "critical", true)]));
        assert_eq!(resolved["attachments"][0]["color"], "#2EB67D");
        assert!(!resolved.to_string().contains("*Fix:*"), "nothing to fix once resolved");
    }

    #[test]
    fn what_a_host_sent_cannot_mention_link_or_break_out() {
        let mut a = alert("<!channel> <https://evil.example|Open in Driftwatch> & co", "critical", false);
        a.annotations.insert("summary".into(), "<!here> root login on <@U123>".into());
        a.annotations.insert("diff".into(), "- a\n```\n*bold* <!channel>".into());
        a.annotations.insert("cause".into(), "sudo by <!everyone>".into());
        let m = message(&notification(vec![a], vec![]));
        // What Slack parses: the mrkdwn texts and the top-level text (the
        // header and the fallback are plain text, shown as written).
        fn mrkdwn(v: &Value, out: &mut String) {
            match v {
                Value::Object(o) if o.get("type") == Some(&json!("mrkdwn")) => out.push_str(o["text"].as_str().unwrap_or("")),
                Value::Object(o) => o.values().for_each(|v| mrkdwn(v, out)),
                Value::Array(a) => a.iter().for_each(|v| mrkdwn(v, out)),
                _ => {}
            }
        }
        let mut text = m["text"].as_str().unwrap().to_string();
        mrkdwn(&m, &mut text);
        for forged in ["<!channel>", "<!here>", "<!everyone>", "<@U123>", "<https://evil.example"] {
            assert!(!text.contains(forged), "{forged} survived in {text}");
        }
        assert!(text.contains("&lt;!channel&gt; &lt;https://evil.example|Open in Driftwatch&gt; &amp; co"), "{text}");
        let body = m["attachments"][0]["blocks"][1]["text"]["text"].as_str().unwrap();
        assert_eq!(body.matches("```").count(), 2, "the diff cannot close its code block: {body}");
        // Driftwatch's own link is still a link, to the asset's page, its
        // id percent-encoded.
        assert!(text.contains("/assets/%3C%21channel%3E%20%3Chttps%3A%2F%2Fevil.example%7COpen"), "{text}");
        assert!(text.ends_with("|Open in Driftwatch>"), "{text}");
    }

    #[test]
    fn limits_are_kept() {
        let mut a = alert("web-1", "low", false);
        a.annotations.insert("summary".into(), "x".repeat(5000));
        let m = message(&notification(vec![a; 30], vec![]));
        let blocks = m["attachments"][0]["blocks"].as_array().unwrap();
        assert!(blocks.len() <= 50);
        assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= 150);
        assert!(blocks.iter().all(|b| b["text"]["text"].as_str().is_none_or(|t| t.chars().count() <= 3000)));
        assert!(blocks.last().unwrap()["elements"][0]["text"].as_str().unwrap().contains("20 more not shown"));
    }
}
