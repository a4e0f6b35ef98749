//! JUnit XML: what CI systems (GitLab, Jenkins, GitHub Actions' test
//! reporters) read, for `driftwatch-collector evaluate --format junit` in a
//! pipeline (an image or a host rooted in a folder, evaluated before it
//! ships). One `<testsuite>` per pack, one `<testcase>` per control
//! evaluated: a failing control is a `<failure>` whose text is the
//! evidence it read and the fix; an error or missing evidence is an
//! `<error>`; a control that does not apply, or is waived, is `<skipped>`.
//!
//! The text comes from a host (fact values): characters XML 1.0 cannot
//! carry are replaced, and the writer escapes the rest, so the document is
//! well-formed whatever the host sent.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::Writer;

use crate::eval::{Evaluation, Status};
use crate::policy::PolicySet;

/// Counts of one suite or of the whole document.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub tests: usize,
    pub failures: usize,
    pub errors: usize,
    pub skipped: usize,
}

impl Tally {
    fn add(&mut self, s: Status) {
        self.tests += 1;
        match s {
            Status::Fail => self.failures += 1,
            Status::Error | Status::Unknown => self.errors += 1,
            Status::NotApplicable | Status::Waived => self.skipped += 1,
            Status::Pass => {}
        }
    }

    fn attributes(&self) -> [(&'static str, String); 4] {
        [
            ("tests", self.tests.to_string()),
            ("failures", self.failures.to_string()),
            ("errors", self.errors.to_string()),
            ("skipped", self.skipped.to_string()),
        ]
    }
}

/// The document for `results` (one asset's evaluation), named `name`.
pub fn render(results: &[Evaluation], policies: &PolicySet, name: &str, at: DateTime<Utc>) -> String {
    // Suites by pack, in name order; cases by control id.
    let mut suites: BTreeMap<String, Vec<&Evaluation>> = BTreeMap::new();
    for e in results {
        let pack = policies.get(&e.control_id).map_or_else(|| "(unknown pack)".to_string(), |(_, c)| c.pack.to_string());
        suites.entry(pack).or_default().push(e);
    }
    let mut total = Tally::default();
    for e in results {
        total.add(e.status);
    }
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    // Writing to a Vec cannot fail.
    let _ = write(&mut w, &suites, total, policies, name, at);
    String::from_utf8(w.into_inner()).unwrap_or_default()
}

fn write(
    w: &mut Writer<Vec<u8>>,
    suites: &BTreeMap<String, Vec<&Evaluation>>,
    total: Tally,
    policies: &PolicySet,
    name: &str,
    at: DateTime<Utc>,
) -> std::io::Result<()> {
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let timestamp = at.format("%Y-%m-%dT%H:%M:%S").to_string();
    let mut root = w.create_element("testsuites").with_attribute(("name", xml_text(name).as_str()));
    for (k, v) in total.attributes() {
        root = root.with_attribute((k, v.as_str()));
    }
    root.write_inner_content(|w| {
        for (pack, cases) in suites {
            let mut tally = Tally::default();
            for e in cases {
                tally.add(e.status);
            }
            let mut suite = w
                .create_element("testsuite")
                .with_attribute(("name", xml_text(pack).as_str()))
                .with_attribute(("timestamp", timestamp.as_str()));
            for (k, v) in tally.attributes() {
                suite = suite.with_attribute((k, v.as_str()));
            }
            suite.write_inner_content(|w| {
                for e in cases {
                    case(w, e, pack, policies)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    })?;
    Ok(())
}

fn case(w: &mut Writer<Vec<u8>>, e: &Evaluation, pack: &str, policies: &PolicySet) -> std::io::Result<()> {
    let name = xml_text(&format!("{} ({})", e.control_id, e.title));
    let classname = xml_text(&format!("{pack}.{}", e.asset_id));
    let element = w.create_element("testcase").with_attribute(("name", name.as_str())).with_attribute(("classname", classname.as_str()));
    let remediation = policies.get(&e.control_id).map(|(_, c)| c.control.fix_line()).unwrap_or_default();
    let frameworks = e.frameworks.ids.join(", ");
    match e.status {
        Status::Pass => {
            element.write_empty()?;
        }
        Status::Fail => {
            let mut body = format!("severity: {}\nrequirements: {frameworks}\n", e.severity.as_str());
            for (path, value) in &e.evidence {
                body += &format!("{path} = {}\n", serde_json::to_string(value).unwrap_or_default());
            }
            if !remediation.is_empty() {
                body += &format!("fix: {remediation}\n");
            }
            let message = xml_text(&format!("{} ({})", e.title, e.severity.as_str()));
            element.write_inner_content(|w| {
                w.create_element("failure")
                    .with_attribute(("type", "fail"))
                    .with_attribute(("message", message.as_str()))
                    .write_text_content(BytesText::new(&xml_text(&body)))?;
                Ok(())
            })?;
        }
        Status::Error | Status::Unknown => {
            let message = xml_text(e.message.as_deref().unwrap_or(if e.status == Status::Unknown { "evidence missing" } else { "error" }));
            element.write_inner_content(|w| {
                w.create_element("error")
                    .with_attribute(("type", e.status.as_str()))
                    .with_attribute(("message", message.as_str()))
                    .write_empty()?;
                Ok(())
            })?;
        }
        Status::NotApplicable | Status::Waived => {
            let message = if e.status == Status::Waived { "waived" } else { "not applicable: the facts it reads were not collected" };
            element.write_inner_content(|w| {
                w.create_element("skipped").with_attribute(("message", message)).write_empty()?;
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// `s` with every character XML 1.0 cannot carry (control characters but
/// tab, newline and carriage return; U+FFFE, U+FFFF) replaced by U+FFFD.
fn xml_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => '\u{FFFD}',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_schemas::FactValue;
    use quick_xml::events::Event;
    use quick_xml::Reader;

    fn policies() -> PolicySet {
        let text = "pack: t\ncontrols:\n  - {id: a, title: Root login off, severity: high, check: 'x.a', remediation: Set it off., frameworks: {soc2: [CC6.1]}}\n  - {id: b, title: b, severity: low, check: 'x.b', frameworks: {soc2: [CC6.6]}}\n  - {id: c, title: c, severity: low, check: 'x.c', frameworks: {soc2: [CC7.2]}}\n  - {id: d, title: d, severity: low, check: 'x.d', frameworks: {soc2: [CC7.1]}}\n";
        PolicySet::new(crate::policy::load_text(std::path::Path::new("t.yaml"), text).unwrap())
    }

    fn evaluation(p: &PolicySet, id: &str, status: Status, evidence: &[(&'static str, &str)]) -> Evaluation {
        super::super::evaluation(p, id, status, evidence.iter().map(|(k, v)| (*k, FactValue::Str(v.to_string()))))
    }

    /// Every element and attribute, parsed back (so the document is
    /// well-formed), as (element, attributes).
    fn parse(xml: &str) -> Vec<(String, BTreeMap<String, String>)> {
        let mut r = Reader::from_str(xml);
        let mut out = Vec::new();
        loop {
            match r.read_event().expect("well-formed XML") {
                Event::Start(e) | Event::Empty(e) => {
                    let attrs = e
                        .attributes()
                        .map(|a| {
                            let a = a.expect("a well-formed attribute");
                            (String::from_utf8_lossy(a.key.as_ref()).to_string(), a.unescape_value().unwrap().to_string())
                        })
                        .collect();
                    out.push((String::from_utf8_lossy(e.name().as_ref()).to_string(), attrs));
                }
                Event::Text(t) => assert!(!t.decode().unwrap().contains('\u{0}')),
                Event::Eof => break,
                _ => {}
            }
        }
        out
    }

    #[test]
    fn statuses_become_failures_errors_and_skips_with_counts() {
        let p = policies();
        let results = vec![
            evaluation(&p, "a", Status::Fail, &[("sshd.config.permitrootlogin", "yes")]),
            evaluation(&p, "b", Status::Pass, &[]),
            evaluation(&p, "c", Status::Unknown, &[]),
            evaluation(&p, "d", Status::NotApplicable, &[]),
        ];
        let xml = render(&results, &p, "web-1", Utc::now());
        let elements = parse(&xml);
        let root = &elements[0];
        assert_eq!(root.0, "testsuites");
        let counts: Vec<&str> = ["tests", "failures", "errors", "skipped"].iter().map(|k| root.1[*k].as_str()).collect();
        assert_eq!(counts, ["4", "1", "1", "1"]);
        assert_eq!(elements.iter().filter(|(n, _)| n == "testcase").count(), 4);
        let failure = elements.iter().find(|(n, _)| n == "failure").unwrap();
        assert_eq!(failure.1["message"], "Root login off (high)");
        assert!(
            xml.contains("sshd.config.permitrootlogin = &quot;yes&quot;") || xml.contains("sshd.config.permitrootlogin = \"yes\""),
            "{xml}"
        );
        assert!(xml.contains("fix: Set it off."), "{xml}");
        assert!(xml.contains("requirements: soc2:CC6.1"), "{xml}");
        assert_eq!(elements.iter().find(|(n, _)| n == "error").unwrap().1["type"], "unknown");
        assert!(elements.iter().any(|(n, _)| n == "skipped"));
    }

    #[test]
    fn what_a_host_sent_cannot_break_the_document() {
        let p = policies();
        let hostile = "</failure><x a=\"1\">&\u{0}\u{1b}[31m]]>\u{FFFF}";
        let mut e = evaluation(&p, "a", Status::Fail, &[(hostile, hostile)]);
        e.asset_id = hostile.into();
        let xml = render(&[e], &p, hostile, Utc::now());
        let elements = parse(&xml);
        assert_eq!(elements.iter().filter(|(n, _)| n == "failure").count(), 1, "{xml}");
        assert!(!elements.iter().any(|(n, _)| n == "x"), "no element from the host's text: {xml}");
        assert_eq!(elements[0].1["name"], "</failure><x a=\"1\">&\u{FFFD}\u{FFFD}[31m]]>\u{FFFD}");
    }
}
