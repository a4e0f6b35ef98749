//! Turning XCCDF rules (a SCAP Security Guide data stream or a bare
//! XCCDF benchmark) into a pack skeleton: each rule's id, title,
//! description, rationale, severity and `references.ssg`, with its NIST
//! SP 800-53, 800-171 and HIPAA references mapped to the requirements of
//! Driftwatch's catalogs. The checks are the author's to write (in CEL
//! over the agent's facts): a skeleton has none, so `policies check`
//! refuses it until each control has one.

use std::collections::{BTreeMap, BTreeSet};

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::catalog::Catalogs;

/// The prefix SSG gives rule ids.
const SSG_RULE: &str = "xccdf_org.ssgproject.content_rule_";

/// One XCCDF rule.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rule {
    /// The rule's id (SSG's prefix removed).
    pub id: String,
    pub title: String,
    pub description: String,
    pub rationale: String,
    /// `low`, `medium`, `high` or `unknown`.
    pub severity: String,
    /// Each reference: the document's URL and the id it cites.
    pub references: Vec<(String, String)>,
}

/// A benchmark's rules and its profiles (each profile's selected rules).
#[derive(Debug, Default)]
pub struct Benchmark {
    pub title: String,
    pub rules: Vec<Rule>,
    pub profiles: BTreeMap<String, BTreeSet<String>>,
}

/// Reads the XCCDF rules and profiles of `xml`; other components of a data
/// stream (OVAL, CPE) are passed over. The error names the byte offset.
pub fn parse(xml: &str) -> Result<Benchmark, String> {
    let mut reader = Reader::from_str(xml);
    let mut out = Benchmark::default();
    let mut rule: Option<Rule> = None;
    let mut profile: Option<String> = None;
    // Every open element's local name.
    let mut stack: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut href = String::new();
    loop {
        let event = reader.read_event().map_err(|e| format!("XML at byte {}: {e}", reader.error_position()))?;
        match event {
            Event::Start(e) => {
                let name = local(&e);
                match name.as_str() {
                    "Rule" => rule = Some(start_rule(&e)),
                    "Profile" => {
                        profile = attr(&e, "id").map(|id| id.trim_start_matches("xccdf_org.ssgproject.content_profile_").to_string())
                    }
                    "reference" if rule.is_some() => href = attr(&e, "href").unwrap_or_default(),
                    _ => {}
                }
                // Markup inside a description (code, pre) keeps its text.
                if TEXTS.contains(&name.as_str()) {
                    text.clear();
                }
                stack.push(name);
            }
            Event::Empty(e) => {
                if let (Some(p), "select") = (&profile, local(&e).as_str()) {
                    if attr(&e, "selected").as_deref() == Some("true") {
                        let id = attr(&e, "idref").unwrap_or_default();
                        out.profiles.entry(p.clone()).or_default().insert(id.trim_start_matches(SSG_RULE).to_string());
                    }
                }
            }
            Event::Text(t) => text.push_str(&t.decode().map_err(|e| e.to_string())?),
            Event::CData(t) => text.push_str(&t.decode().map_err(|e| e.to_string())?),
            Event::GeneralRef(r) => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    text.push(c);
                } else if let Some(s) = r.decode().ok().and_then(|n| quick_xml::escape::resolve_predefined_entity(&n)) {
                    text.push_str(s);
                }
            }
            Event::End(_) => {
                let name = stack.pop().unwrap_or_default();
                let parent = stack.last().map(String::as_str);
                let clean = || text.split_whitespace().collect::<Vec<_>>().join(" ");
                match (&mut rule, name.as_str(), parent) {
                    (Some(r), "title", Some("Rule")) => r.title = clean(),
                    (Some(r), "description", Some("Rule")) => r.description = clean(),
                    (Some(r), "rationale", Some("Rule")) => r.rationale = clean(),
                    (Some(r), "reference", Some("Rule")) => r.references.push((std::mem::take(&mut href), clean())),
                    (Some(_), "Rule", _) => out.rules.extend(rule.take()),
                    (None, "title", Some("Benchmark")) if out.title.is_empty() => out.title = clean(),
                    (None, "Profile", _) => profile = None,
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

/// The elements whose text is read.
const TEXTS: [&str; 4] = ["title", "description", "rationale", "reference"];

fn local(e: &BytesStart) -> String {
    String::from_utf8_lossy(e.local_name().as_ref()).into_owned()
}

fn attr(e: &BytesStart, name: &str) -> Option<String> {
    e.try_get_attribute(name).ok().flatten().and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

fn start_rule(e: &BytesStart) -> Rule {
    Rule {
        id: attr(e, "id").unwrap_or_default().trim_start_matches(SSG_RULE).to_string(),
        severity: attr(e, "severity").unwrap_or_else(|| "unknown".into()),
        ..Default::default()
    }
}

/// The Driftwatch framework a reference's document is, and the catalog id
/// it cites (`None`: no catalog of ours).
fn framework_of(href: &str, id: &str, catalogs: &Catalogs) -> Option<(&'static str, String)> {
    let id = id.trim();
    let fw = if href.contains("800-53") {
        "nist-800-53"
    } else if href.contains("800-171") {
        "cmmc"
    } else if href.contains("CFR") && id.starts_with("164.") {
        "hipaa"
    } else {
        return None;
    };
    // SSG cites an 800-171 practice by number (3.1.1); CMMC names it by
    // domain and level (AC.L1-3.1.1).
    let suffix = format!("-{id}");
    let wanted = |c: &str| if fw == "cmmc" { c.ends_with(&suffix) } else { c == id };
    catalogs.get(fw)?.requirements.iter().find(|r| wanted(&r.id)).map(|r| (fw, r.id.clone()))
}

/// A pack skeleton for `rules` (YAML text): one control per rule, named
/// `<pack>.<rule id>`, with what the rule says and the requirements its
/// references map to; references no catalog of ours holds are listed in a
/// comment. No `check`: each is the author's to write.
pub fn skeleton(pack: &str, source: &str, rules: &[Rule], catalogs: &Catalogs) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut out = format!(
        "# A pack skeleton imported from {source} by `driftwatch-collector policies import-xccdf`.\n\
         # Write each control's check (CEL over the agent's facts: agent/FACTS.md); until then\n\
         # `driftwatch-collector policies check` refuses the pack.\npack: {}\ncontrols:\n",
        q(pack)
    );
    for r in rules {
        let severity = match r.severity.as_str() {
            s @ ("low" | "medium" | "high") => s,
            _ => "low",
        };
        let mut frameworks: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        let mut unmapped = Vec::new();
        for (href, id) in &r.references {
            for one in id.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match framework_of(href, one, catalogs) {
                    Some((fw, req)) => {
                        frameworks.entry(fw).or_default().insert(req);
                    }
                    None => unmapped.push(one.to_string()),
                }
            }
        }
        out.push_str(&format!("  - id: {}\n    title: {}\n    severity: {severity}\n", q(&format!("{pack}.{}", r.id)), q(&r.title)));
        out.push_str(&format!("    description: {}\n    rationale: {}\n", q(&r.description), q(&r.rationale)));
        out.push_str(&format!("    # check: the CEL for {} (SSG's own check is OVAL)\n", r.id));
        if frameworks.is_empty() {
            out.push_str("    frameworks: {}  # no reference maps to a Driftwatch catalog\n");
        } else {
            out.push_str("    frameworks:\n");
            for (fw, ids) in &frameworks {
                let ids: Vec<String> = ids.iter().map(|i| q(i)).collect();
                out.push_str(&format!("      {fw}: [{}]\n", ids.join(", ")));
            }
        }
        out.push_str(&format!("    references: {{ssg: {}}}\n", q(&r.id)));
        if !unmapped.is_empty() {
            unmapped.sort();
            unmapped.dedup();
            let shown: Vec<&str> = unmapped.iter().take(20).map(String::as_str).collect();
            out.push_str(&format!("    # other references: {}{}\n", shown.join(", "), if unmapped.len() > 20 { ", …" } else { "" }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<?xml version="1.0"?>
<ds:data-stream-collection xmlns:ds="http://scap.nist.gov/schema/scap/source/1.2" xmlns:xccdf-1.2="http://checklists.nist.gov/xccdf/1.2" xmlns:xhtml="http://www.w3.org/1999/xhtml">
 <xccdf-1.2:Benchmark id="b">
  <xccdf-1.2:title>Guide to the Secure Configuration of Debian 11</xccdf-1.2:title>
  <xccdf-1.2:Profile id="xccdf_org.ssgproject.content_profile_standard">
   <xccdf-1.2:title>Standard</xccdf-1.2:title>
   <xccdf-1.2:select idref="xccdf_org.ssgproject.content_rule_sshd_disable_root_login" selected="true"/>
   <xccdf-1.2:select idref="xccdf_org.ssgproject.content_rule_other" selected="false"/>
  </xccdf-1.2:Profile>
  <xccdf-1.2:Group id="g">
   <xccdf-1.2:title>SSH Server</xccdf-1.2:title>
   <xccdf-1.2:Rule id="xccdf_org.ssgproject.content_rule_sshd_disable_root_login" severity="medium" selected="false">
    <xccdf-1.2:title>Disable SSH Root Login</xccdf-1.2:title>
    <xccdf-1.2:description>The root user should never be allowed to login to a system directly over a network.
To disable root login via SSH, add or correct the following line in <xhtml:code>/etc/ssh/sshd_config</xhtml:code> &amp; reload:
<xhtml:pre>PermitRootLogin no</xhtml:pre></xccdf-1.2:description>
    <xccdf-1.2:reference href="http://nvlpubs.nist.gov/nistpubs/SpecialPublications/NIST.SP.800-53r4.pdf">AC-6(2),CM-6(a),IA-2</xccdf-1.2:reference>
    <xccdf-1.2:reference href="http://nvlpubs.nist.gov/nistpubs/SpecialPublications/NIST.SP.800-171.pdf">3.1.1,3.1.5</xccdf-1.2:reference>
    <xccdf-1.2:reference href="https://www.iso.org/standard/54534.html">A.9.2.3</xccdf-1.2:reference>
    <xccdf-1.2:rationale>Even though the communications channel may be encrypted, an additional layer of security is gained.</xccdf-1.2:rationale>
    <xccdf-1.2:check system="http://oval.mitre.org/XMLSchema/oval-definitions-5"><xccdf-1.2:check-content-ref href="oval.xml" name="oval:x:def:1"/></xccdf-1.2:check>
   </xccdf-1.2:Rule>
  </xccdf-1.2:Group>
 </xccdf-1.2:Benchmark>
</ds:data-stream-collection>"#;

    #[test]
    fn rules_and_profiles_are_read() {
        let b = parse(XML).unwrap();
        assert_eq!(b.title, "Guide to the Secure Configuration of Debian 11");
        assert_eq!(b.rules.len(), 1);
        let r = &b.rules[0];
        assert_eq!((r.id.as_str(), r.title.as_str(), r.severity.as_str()), ("sshd_disable_root_login", "Disable SSH Root Login", "medium"));
        assert!(r.description.starts_with("The root user should never"), "{}", r.description);
        assert!(r.description.contains("/etc/ssh/sshd_config & reload: PermitRootLogin no"), "{}", r.description);
        assert!(r.rationale.starts_with("Even though"), "{}", r.rationale);
        assert_eq!(r.references.len(), 3);
        assert_eq!(b.profiles["standard"], BTreeSet::from(["sshd_disable_root_login".to_string()]));
        assert!(parse("<a><b></a>").unwrap_err().starts_with("XML at byte"));
    }

    #[test]
    fn the_skeleton_maps_references_to_the_catalogs_and_has_no_check() {
        let b = parse(XML).unwrap();
        let text = skeleton("site", "ssg-debian11-ds.xml", &b.rules, &Catalogs::shipped());
        assert!(
            text.contains("frameworks:\n      cmmc: [\"AC.L1-3.1.1\", \"AC.L2-3.1.5\"]\n      nist-800-53: [\"AC-6(2)\", \"IA-2\"]\n"),
            "{text}"
        );
        assert!(text.contains("# other references: A.9.2.3, CM-6(a)"), "{text}");
        assert!(text.contains("references: {ssg: \"sshd_disable_root_login\"}"), "{text}");
        // It is YAML, and a pack once its checks are written.
        let written = text.replace(
            "    # check: the CEL for sshd_disable_root_login (SSG's own check is OVAL)\n",
            "    check: sshd.config.permitrootlogin == \"no\"\n",
        );
        let controls = super::super::load_text(std::path::Path::new("site.yaml"), &written).unwrap_or_else(|e| panic!("{e:?}\n{written}"));
        assert_eq!(controls[0].control.id, "site.sshd_disable_root_login");
        let refused = super::super::load_text(std::path::Path::new("site.yaml"), &text).unwrap_err();
        assert!(refused[0].message.contains("has none of `check`"), "{refused:?}");
    }
}
