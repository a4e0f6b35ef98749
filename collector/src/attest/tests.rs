use std::path::Path;

use chrono::{Duration, TimeZone};

use super::*;

const PACK: &str = r#"pack: org
controls:
  - id: org.access_review
    title: Quarterly access review
    severity: high
    attest:
      owner: security-team
      cadence: 90d
      remind_before: 14d
      evidence: The review's export, each account with the reviewer's decision.
    frameworks: {soc2: [CC6.2]}
  - id: t.root
    title: Root login off
    severity: high
    check: sshd.config.permitrootlogin == "no"
    frameworks: {soc2: [CC6.1]}
"#;

fn set() -> PolicySet {
    PolicySet::new(crate::policy::load_text(Path::new("org.yaml"), PACK).unwrap_or_else(|e| panic!("{e:?}")))
}

fn claim(control: &str, status: &str) -> Claim {
    Claim {
        control_id: control.into(),
        status: status.into(),
        statement: "Reviewed all 41 accounts; 3 removed.".into(),
        attested_by: "alice".into(),
        source: "cli".into(),
    }
}

fn upload(name: &str, content_type: Option<&str>, bytes: &[u8]) -> Upload {
    Upload { name: name.into(), content_type: content_type.map(str::to_string), bytes: bytes.to_vec() }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

const PDF: &[u8] = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n";

#[test]
fn an_attestation_names_each_file_by_its_sha256_and_stores_each_content_once() {
    let files = vec![
        upload("/home/alice/review.pdf", None, PDF),
        upload("accounts.csv", Some("text/csv; charset=utf-8"), b"account,decision\nbob,keep\n"),
        upload("copy.pdf", Some("application/pdf"), PDF),
    ];
    let (row, stored) = accept(&set(), claim("org.access_review", "pass"), files, Limits::default(), t0()).unwrap();
    assert_eq!(row.file_names, ["review.pdf", "accounts.csv", "copy.pdf"]);
    assert_eq!(row.file_types, ["application/pdf", "text/csv", "application/pdf"]);
    assert_eq!(row.file_sha256[0], hex::encode(Sha256::digest(PDF)));
    assert_eq!(row.file_sha256[0], row.file_sha256[2]);
    assert_eq!(row.file_sizes[1], 26);
    assert_eq!(stored.len(), 2, "one row per content");
    let bytes = base64::engine::general_purpose::STANDARD.decode(&stored[0].content).unwrap();
    assert_eq!(bytes, PDF);
    assert_eq!((row.attested_at, row.status.as_str(), row.attested_by.as_str()), (secs(&t0()), "pass", "alice"));
}

#[test]
fn what_is_not_an_attested_control_a_status_or_an_accepted_file_is_refused_by_name() {
    let s = set();
    let err = |c: Claim, files: Vec<Upload>, limits: Limits| accept(&s, c, files, limits, t0()).unwrap_err().to_string();
    assert!(err(claim("nope", "pass"), vec![], Limits::default()).contains("no control \"nope\""));
    assert!(err(claim("t.root", "pass"), vec![], Limits::default()).contains("is a check"));
    assert!(err(claim("org.access_review", "passed"), vec![], Limits::default()).contains("expected pass"));
    let mut empty = claim("org.access_review", "pass");
    empty.statement = "  ".into();
    assert_eq!(err(empty, vec![], Limits::default()), "statement: must not be empty");
    let small = Limits { max_file_bytes: 10, max_files: 1, ..Limits::default() };
    assert!(err(claim("org.access_review", "pass"), vec![upload("a.pdf", None, PDF)], small).contains("more than the 10 allowed"));
    let two = vec![upload("a.txt", None, b"a"), upload("b.txt", None, b"b")];
    assert!(err(claim("org.access_review", "pass"), two, small).contains("at most 1 per attestation"));
    let exe = upload("tool.exe", None, b"MZ\x90\x00\x03");
    assert!(err(claim("org.access_review", "pass"), vec![exe], Limits::default()).contains("\"application/octet-stream\" is not accepted"));
    // A type declared is checked against the bytes.
    let fake = upload("report.pdf", None, b"<html>not a pdf</html>");
    assert!(
        err(claim("org.access_review", "pass"), vec![fake], Limits::default()).contains("declared application/pdf but its bytes are text")
    );
    let png_as_text = upload("notes.txt", None, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR");
    assert!(err(claim("org.access_review", "pass"), vec![png_as_text], Limits::default()).contains("its bytes are image/png"));
    let json = upload("export.json", None, b"{\"accounts\": [");
    assert!(err(claim("org.access_review", "pass"), vec![json], Limits::default()).contains("not valid JSON"));
    let binary = upload("notes.txt", None, b"ok\0\xff\xfe");
    assert!(err(claim("org.access_review", "pass"), vec![binary], Limits::default()).contains("declared text/plain"));
    let dots = upload("../", None, b"x");
    assert!(err(claim("org.access_review", "pass"), vec![dots], Limits::default()).contains("names no file"));
}

fn attested(id: &str, at: DateTime<Utc>, status: &str) -> AttestationRow {
    let (mut row, _) = accept(&set(), claim("org.access_review", status), vec![upload("r.pdf", None, PDF)], Limits::default(), at).unwrap();
    row.attestation_id = id.into();
    row
}

#[test]
fn a_result_holds_for_the_cadence_then_is_unknown_and_the_latest_attestation_wins() {
    let s = set();
    let (_, c) = s.get("org.access_review").unwrap();
    assert_eq!(standing(c, None, t0()), Standing::Never);
    assert!(Standing::Never.evaluation(c, t0()).is_none(), "never attested: no result, not assessed");
    let rows = vec![attested("b", t0() + Duration::days(10), "fail"), attested("a", t0(), "pass")];
    let l = latest(&rows);
    assert_eq!(l["org.access_review"].attestation_id, "b");
    let now = t0() + Duration::days(20);
    let e = standing(c, Some(l["org.access_review"]), now).evaluation(c, now).unwrap();
    assert_eq!((e.asset_id.as_str(), e.status), (ORGANIZATION, Status::Fail));
    assert_eq!(e.snapshot_id, "attestation:b");
    let files = &e.evidence["attestation.files"];
    assert!(
        matches!(files, driftwatch_schemas::FactValue::List(f) if f[0].contains(&format!("sha256:{}", hex::encode(Sha256::digest(PDF)))))
    );
    assert!(e.message.as_deref().unwrap().contains("until 2026-04-11"), "{:?}", e.message);
    // 100 days after `b` (90 days' cadence): expired, unknown.
    let later = t0() + Duration::days(100);
    let st = standing(c, Some(l["org.access_review"]), later);
    assert_eq!(st.status(), Some(Status::Unknown));
    assert!(st
        .evaluation(c, later)
        .unwrap()
        .message
        .unwrap()
        .starts_with("attestation_expired: attested by alice on 2026-01-11, expired 2026-04-11"));
}

#[test]
fn reminders_hold_from_remind_before_the_expiry_and_expiry_until_attested_again() {
    let s = set();
    let rows = vec![attested("a", t0(), "pass")];
    let at = |days: i64| conditions(&s, &rows, t0() + Duration::days(days));
    assert!(at(75).is_empty(), "76 days of 90: not yet");
    let due = at(77);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].labels["alertname"], "attestation_due");
    assert_eq!((due[0].labels["owner"].as_str(), due[0].labels["control"].as_str()), ("security-team", "org.access_review"));
    assert_eq!(due[0].starts_at, t0() + Duration::days(76));
    assert_eq!(due[0].instance, at(80)[0].instance, "one instance while it holds");
    assert!(due[0].annotations["description"].contains("reviewer's decision"));
    let expired = at(91);
    assert_eq!(expired[0].labels["alertname"], "attestation_expired");
    assert!(expired[0].annotations["remediation"].contains("attestation add org.access_review"));
    // Attested again: nothing holds.
    let again = vec![attested("a", t0(), "pass"), attested("b", t0() + Duration::days(91), "pass")];
    assert!(conditions(&s, &again, t0() + Duration::days(92)).is_empty());
    // Never attested: no reminder (a missing attestation is a coverage gap).
    assert!(conditions(&s, &[], t0()).is_empty());
}

#[test]
fn an_attested_control_is_declared_with_an_owner_a_cadence_and_no_applies_to() {
    let bad = PACK
        .replace("cadence: 90d", "cadence: quarterly")
        .replace("    frameworks: {soc2: [CC6.2]}", "    applies_to: {kinds: [host]}\n    frameworks: {soc2: [CC6.2]}");
    let errors: Vec<String> = crate::policy::load_text(Path::new("org.yaml"), &bad).unwrap_err().iter().map(ToString::to_string).collect();
    assert!(errors.iter().any(|e| e.contains("org.yaml:3: control org.access_review: attest.cadence \"quarterly\"")), "{errors:#?}");
    assert!(errors.iter().any(|e| e.contains("it takes no applies_to")), "{errors:#?}");
    let both = PACK.replace("      owner: security-team", "      owner: security-team\n    check: 'true'").replace(
        "    attest:\n      owner: security-team\n    check: 'true'",
        "    check: 'true'\n    attest:\n      owner: security-team",
    );
    let errors = crate::policy::load_text(Path::new("org.yaml"), &both).unwrap_err();
    assert!(errors.iter().any(|e| e.message.contains("give one of `check`, `detect` and `attest`")), "{errors:#?}");
}

#[test]
fn a_stored_file_is_given_back_only_while_it_has_its_sha256() {
    let (row, mut stored) =
        accept(&set(), claim("org.access_review", "pass"), vec![upload("r.pdf", None, PDF)], Limits::default(), t0()).unwrap();
    assert_eq!(file_bytes(&stored[0]).as_deref(), Some(PDF));
    assert!(check_files(&row, |_| Some(&stored[0])).is_empty());
    stored[0].content = base64::engine::general_purpose::STANDARD.encode(b"%PDF-1.7 forged");
    assert_eq!(file_bytes(&stored[0]), None);
    assert!(matches!(check_files(&row, |_| Some(&stored[0]))[..], [crate::evidence::verify::Finding::FileAltered { .. }]));
    assert!(matches!(check_files(&row, |_| None)[..], [crate::evidence::verify::Finding::FileMissing { .. }]));
}
