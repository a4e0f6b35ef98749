//! A report as NIST OSCAL assessment results (OSCAL 1.2.3, JSON), what GRC
//! tools and FedRAMP's automation read: one `result` for the period, an
//! `observation` per control behind the framework (`TEST` for checks and
//! detections, `EXAMINE` for attestations), a `finding` per assessed
//! requirement (`satisfied` when met or waived, else `not-satisfied`), the
//! requirements with evidence as the reviewed controls, and the evidence
//! chains' heads in the back matter. Requirements without evidence get no
//! finding: the result's description and props say how many there are.
//!
//! Ids are made stable (UUID v5 of what they name), so two exports of the
//! same period are the same document. Requirement ids become OSCAL tokens
//! (`hipaa-164.308_a_1_i`), each finding keeping the id as written in its
//! `label` prop. `tests/oscal.rs` validates an export against NIST's
//! published assessment-results JSON schema.

use serde_json::{json, Value};
use uuid::Uuid;

use super::{Report, Requirement};
use crate::score::RequirementStatus;

/// The OSCAL version the export follows.
pub const OSCAL_VERSION: &str = "1.2.3";

/// The namespace of Driftwatch's own props.
const NS: &str = "urn:driftwatch:oscal";

/// The UUID v5 namespace of every id the export makes.
const ID_SPACE: Uuid = Uuid::from_u128(0x6f1c_2a4e_9d3b_5c17_8e20_b4a6_d915_0c73);

fn id(parts: &[&str]) -> String {
    Uuid::new_v5(&ID_SPACE, parts.join("\u{1f}").as_bytes()).to_string()
}

fn when(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn prop(name: &str, value: impl ToString) -> Value {
    json!({"name": name, "ns": NS, "value": value.to_string()})
}

/// A requirement id as an OSCAL token: the framework, then the id with
/// every character a token cannot hold as `_` (`pci-dss-2.2.6`,
/// `gdpr-Art._32_1`).
pub fn control_token(framework: &str, requirement: &str) -> String {
    let raw = format!("{framework}-{requirement}");
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        let keep = c.is_alphanumeric() || matches!(c, '.' | '-' | '_');
        let c = if keep { c } else { '_' };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    out.trim_end_matches('_').to_string()
}

/// The OSCAL assessment-results document of `r`.
pub fn render(r: &Report) -> Value {
    let fw = r.framework.as_str();
    let (from, to) = (when(&r.from), when(&r.to));
    let plan = id(&["assessment-plan", fw]);
    let assessed: Vec<&Requirement> = r.requirements.iter().filter(|q| q.status.is_some()).collect();
    let not_assessed = r.requirements.len() - assessed.len();

    let mut observations: Vec<Value> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for q in &assessed {
        for c in &q.checks {
            if !seen.insert(c.control_id.as_str()) {
                continue;
            }
            let results: Vec<String> = c.results.iter().map(|(s, n)| format!("{} {n}", s.as_str())).collect();
            let mut description = format!("{} {} ({}): {}.", c.kind, c.control_id, c.severity.as_str(), results.join(", "));
            if !c.not_passing.is_empty() {
                description += &format!(" Not passing on: {}.", c.not_passing.join(", "));
            }
            observations.push(json!({
                "uuid": id(&["observation", fw, &from, &to, &c.control_id]),
                "title": c.title,
                "description": description,
                "props": [prop("control-id", &c.control_id), prop("control-kind", c.kind)],
                "methods": [if c.kind == "attestation" { "EXAMINE" } else { "TEST" }],
                "types": ["control-objective"],
                "relevant-evidence": [{
                    "description": "Driftwatch's stored evaluations of this control, sealed in the evidence chains listed in the back matter (driftwatch-collector verify checks them).",
                }],
                "collected": when(&c.oldest_evidence.unwrap_or(r.to)),
            }));
        }
    }

    let findings: Vec<Value> = assessed
        .iter()
        .map(|q| {
            let status = q.status.unwrap_or(RequirementStatus::Fail);
            let (state, reason) = match status {
                RequirementStatus::Pass | RequirementStatus::Waived => ("satisfied", "pass"),
                RequirementStatus::Partial | RequirementStatus::Fail => ("not-satisfied", "fail"),
            };
            let status_text = format!("{status:?}").to_lowercase();
            let title = match &q.title {
                Some(t) => format!("{} {t}", q.id),
                None => q.id.clone(),
            };
            let controls: Vec<&str> = q.checks.iter().map(|c| c.control_id.as_str()).collect();
            let mut props = vec![prop("label", &q.id), prop("requirement-status", &status_text)];
            if let Some(e) = q.effectiveness {
                props.push(prop("operating-effectiveness", format!("{:.4}", e)));
            }
            json!({
                "uuid": id(&["finding", fw, &from, &to, &q.id]),
                "title": title,
                "description": format!("{} is {status_text} at the end of the period, from {}.", q.id, controls.join(", ")),
                "props": props,
                "target": {
                    "type": "objective-id",
                    "target-id": control_token(fw, &q.id),
                    "status": {"state": state, "reason": reason},
                },
                "related-observations": q.checks.iter()
                    .map(|c| json!({"observation-uuid": id(&["observation", fw, &from, &to, &c.control_id])}))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();

    let selection = if assessed.is_empty() {
        // Nothing had evidence: every requirement is excluded.
        let all: Vec<Value> = r.requirements.iter().map(|q| json!({"control-id": control_token(fw, &q.id)})).collect();
        let mut s = json!({"description": "No requirement had evidence in the period.", "include-all": {}});
        if !all.is_empty() {
            s["exclude-controls"] = Value::Array(all);
        }
        s
    } else {
        json!({
            "description": "The requirements with evidence in the period; the others were not assessed.",
            "include-controls": assessed.iter().map(|q| json!({"control-id": control_token(fw, &q.id)})).collect::<Vec<_>>(),
        })
    };

    let s = &r.summary;
    let mut result_props =
        vec![prop("score", format!("{:.2}", s.score)), prop("score-without-waivers", format!("{:.2}", s.score_without_waivers))];
    if let (Some(c), Some(n), Some(total)) = (s.coverage, s.not_assessed, s.catalog_requirements) {
        result_props.push(prop("coverage", format!("{c:.2}")));
        result_props.push(prop("not-assessed", n));
        result_props.push(prop("catalog-requirements", total));
    }
    if let Some(a) = s.attested {
        result_props.push(prop("attested-only", a));
    }
    let mut result = json!({
        "uuid": id(&["result", fw, &from, &to]),
        "title": format!("{}: continuous assessment, {} to {}", r.framework_name, from, to),
        "description": format!(
            "Driftwatch's automated checks, detections and attestations mapped to {}. {} of {} requirements had evidence; {not_assessed} were not assessed and have no finding.",
            r.framework_name,
            assessed.len(),
            r.requirements.len()
        ),
        "start": from,
        "end": to,
        "props": result_props,
        "reviewed-controls": {"control-selections": [selection]},
    });
    if !observations.is_empty() {
        result["observations"] = Value::Array(observations);
    }
    if !findings.is_empty() {
        result["findings"] = Value::Array(findings);
    }

    let mut resources = vec![json!({
        "uuid": plan,
        "title": "Driftwatch continuous assessment plan",
        "description": format!("The policy packs in force map their controls to {}; each is evaluated continuously on every asset it applies to, or attested by its owner.", r.framework_name),
    })];
    for h in &r.evidence {
        resources.push(json!({
            "uuid": id(&["evidence-chain", &h.chain_id, &h.head]),
            "title": format!("Evidence chain {}", h.chain_id),
            "description": format!("Links {} to {} stored in the period ({} links); the last link's hash is its head.", h.first_seq, h.last_seq, h.links),
            "props": [prop("chain-head", &h.head)],
        }));
    }
    json!({
        "assessment-results": {
            "uuid": id(&["assessment-results", fw, &from, &to]),
            "metadata": {
                "title": format!("Driftwatch assessment results: {}", r.framework_name),
                "last-modified": when(&r.generated_at),
                "version": env!("CARGO_PKG_VERSION"),
                "oscal-version": OSCAL_VERSION,
                "props": [prop("framework", fw)],
            },
            "import-ap": {"href": format!("#{plan}")},
            "results": [result],
            "back-matter": {"resources": resources},
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirement_ids_become_tokens() {
        assert_eq!(control_token("hipaa", "164.308(a)(1)(i)"), "hipaa-164.308_a_1_i");
        assert_eq!(control_token("gdpr", "Art. 32(1)"), "gdpr-Art._32_1");
        assert_eq!(control_token("pci-dss", "2.2.6"), "pci-dss-2.2.6");
        assert_eq!(control_token("soc2", "CC6.1"), "soc2-CC6.1");
    }

    #[test]
    fn an_export_names_each_assessed_requirement_and_is_stable() {
        let r = crate::report::tests::report();
        let a = render(&r);
        assert_eq!(a, render(&r), "the same report, the same document");
        let result = &a["assessment-results"]["results"][0];
        let findings = result["findings"].as_array().unwrap();
        let assessed = r.requirements.iter().filter(|q| q.status.is_some()).count();
        assert_eq!(findings.len(), assessed);
        assert_eq!(result["reviewed-controls"]["control-selections"][0]["include-controls"].as_array().unwrap().len(), assessed);
        let cc61 = findings.iter().find(|f| f["target"]["target-id"] == "soc2-CC6.1").unwrap();
        assert_eq!(cc61["props"][0]["value"], "CC6.1");
        let uuid = a["assessment-results"]["uuid"].as_str().unwrap();
        assert_eq!(Uuid::parse_str(uuid).unwrap().get_version_num(), 5);
    }
}
