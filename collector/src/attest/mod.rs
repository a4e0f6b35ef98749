//! Attestations: the organisational half of compliance, what no agent can
//! observe (access reviews, training, vendor reviews, restore tests).
//! People attest an attested control (`attest:` in its pack) with a
//! statement and evidence files; the control's result is the latest
//! attestation while it holds (`cadence` after it was made) and `unknown`
//! once it has expired. A control never attested has no result: its
//! requirements stay `not_assessed`.
//!
//! This room is pure: it checks what is attested ([`accept`]: the control,
//! the status, the files' sizes and content types, sniffed from their
//! bytes), says where each control stands ([`standing`]), turns that into
//! the control's result ([`Standing::evaluation`]) and into the reminders
//! that hold ([`conditions`]). The attestation task writes the results into
//! the evidence chain; the CLI and the API take attestations.

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::alert::model::Alert;
use crate::eval::{Evaluation, Status};
use crate::policy::{CompiledControl, PolicySet, ORGANIZATION};
use crate::store::attestations::{AttestationFileRow, AttestationRow};
use crate::store::{secs, time};

/// The content types accepted, each with what its bytes must be.
pub const CONTENT_TYPES: [&str; 9] = [
    "application/pdf",
    "image/png",
    "image/jpeg",
    "text/plain",
    "text/csv",
    "text/markdown",
    "application/json",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
];

/// The longest statement, attester and file name accepted.
pub const MAX_STATEMENT_CHARS: usize = 4096;
pub const MAX_NAME_CHARS: usize = 255;

/// The `attestations` settings: how often results and reminders are
/// looked at, and the bounds on what an attestation carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Seconds between the attestation task's passes.
    pub check_secs: u64,
    /// The largest evidence file, in bytes.
    pub max_file_bytes: u64,
    /// The most files one attestation carries.
    pub max_files: usize,
}

/// The largest `max_file_bytes` allowed: the API takes a whole
/// attestation in memory.
pub const MAX_FILE_BYTES_CEILING: u64 = 64 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits { check_secs: 60, max_file_bytes: 10 * 1024 * 1024, max_files: 10 }
    }
}

impl Limits {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.check_secs == 0 {
            problems.push("attestations.check_secs: must be at least 1".into());
        }
        if self.max_files == 0 {
            problems.push("attestations.max_files: must be at least 1".into());
        }
        if self.max_file_bytes == 0 || self.max_file_bytes > MAX_FILE_BYTES_CEILING {
            problems.push(format!("attestations.max_file_bytes: must be from 1 to {MAX_FILE_BYTES_CEILING}"));
        }
    }

    /// The largest request body an attestation can need.
    pub fn max_body_bytes(&self) -> usize {
        let files = self.max_file_bytes.saturating_mul(self.max_files as u64);
        usize::try_from(files.saturating_add(1024 * 1024)).unwrap_or(usize::MAX)
    }
}

/// What someone states about an attested control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub control_id: String,
    /// `pass` (met) or `fail` (not met).
    pub status: String,
    pub statement: String,
    pub attested_by: String,
    /// `cli`, or `api:<key name>`.
    pub source: String,
}

/// An evidence file as uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The file's name (only its last path component is kept).
    pub name: String,
    /// As declared (a multipart part's type, `--content-type`); `None` or
    /// `application/octet-stream`: guessed from the name's extension.
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
}

/// Why an attestation is refused; each names what to change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttestError {
    #[error("no control {0:?} in the packs in force")]
    UnknownControl(String),
    #[error("control {0} is a {1}: its results come from agents, not attestations")]
    NotAttested(String, &'static str),
    #[error("status {0:?}: expected pass (the control is met) or fail (it is not)")]
    Status(String),
    #[error("{field}: {problem}")]
    Field { field: &'static str, problem: String },
    #[error("{count} files: at most {limit} per attestation (attestations.max_files)")]
    TooManyFiles { count: usize, limit: usize },
    #[error("file {name:?}: {size} bytes, more than the {limit} allowed (attestations.max_file_bytes)")]
    TooLarge { name: String, size: u64, limit: u64 },
    #[error("file {name:?} is empty")]
    Empty { name: String },
    #[error("file {name:?}: content type {declared:?} is not accepted (accepted: {})", CONTENT_TYPES.join(", "))]
    TypeNotAccepted { name: String, declared: String },
    #[error("file {name:?}: declared {declared} but its bytes are {found}")]
    TypeMismatch { name: String, declared: String, found: String },
}

/// Checks a claim and its files and makes the rows to store: the
/// attestation (with each file's SHA-256) and the files.
pub fn accept(
    policies: &PolicySet,
    claim: Claim,
    uploads: Vec<Upload>,
    limits: Limits,
    now: DateTime<Utc>,
) -> Result<(AttestationRow, Vec<AttestationFileRow>), AttestError> {
    let (_, control) = policies.get(&claim.control_id).ok_or_else(|| AttestError::UnknownControl(claim.control_id.clone()))?;
    if control.attest.is_none() {
        return Err(AttestError::NotAttested(claim.control_id, control.kind()));
    }
    if !matches!(claim.status.as_str(), "pass" | "fail") {
        return Err(AttestError::Status(claim.status));
    }
    bounded("statement", &claim.statement, MAX_STATEMENT_CHARS)?;
    bounded("attested_by", &claim.attested_by, MAX_NAME_CHARS)?;
    if uploads.len() > limits.max_files {
        return Err(AttestError::TooManyFiles { count: uploads.len(), limit: limits.max_files });
    }
    let mut row = AttestationRow {
        attestation_id: uuid::Uuid::now_v7().to_string(),
        control_id: claim.control_id,
        status: claim.status,
        statement: claim.statement.trim().to_string(),
        attested_by: claim.attested_by.trim().to_string(),
        attested_at: secs(&now),
        source: claim.source,
        file_names: Vec::new(),
        file_sha256: Vec::new(),
        file_sizes: Vec::new(),
        file_types: Vec::new(),
    };
    let mut files: Vec<AttestationFileRow> = Vec::new();
    for u in uploads {
        let name = file_name(&u.name)?;
        let size = u.bytes.len() as u64;
        if size > limits.max_file_bytes {
            return Err(AttestError::TooLarge { name, size, limit: limits.max_file_bytes });
        }
        if size == 0 {
            return Err(AttestError::Empty { name });
        }
        let content_type = content_type(&name, u.content_type.as_deref(), &u.bytes)?;
        let sha256 = hex::encode(Sha256::digest(&u.bytes));
        row.file_names.push(name);
        row.file_sha256.push(sha256.clone());
        row.file_sizes.push(size);
        row.file_types.push(content_type.clone());
        if !files.iter().any(|f| f.sha256 == sha256) {
            let content = base64::engine::general_purpose::STANDARD.encode(&u.bytes);
            files.push(AttestationFileRow { sha256, content_type, size, content, stored_at: row.attested_at });
        }
    }
    Ok((row, files))
}

fn bounded(field: &'static str, text: &str, max: usize) -> Result<(), AttestError> {
    let problem = if text.trim().is_empty() {
        "must not be empty".to_string()
    } else if text.chars().count() > max {
        format!("longer than {max} characters")
    } else if text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\t')) {
        "holds control characters".to_string()
    } else {
        return Ok(());
    };
    Err(AttestError::Field { field, problem })
}

/// A file's name as kept: its last path component, bounded, printable.
fn file_name(name: &str) -> Result<String, AttestError> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default().trim();
    if base.is_empty() || base == "." || base == ".." {
        return Err(AttestError::Field { field: "file name", problem: format!("{name:?} names no file") });
    }
    bounded("file name", base, MAX_NAME_CHARS)?;
    Ok(base.to_string())
}

/// The file's content type: as declared (or guessed from its extension),
/// accepted, and matching what its bytes are.
fn content_type(name: &str, declared: Option<&str>, bytes: &[u8]) -> Result<String, AttestError> {
    let declared = declared
        .map(|d| d.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .filter(|d| !d.is_empty() && d != "application/octet-stream")
        .or_else(|| by_extension(name).map(str::to_string))
        .unwrap_or_else(|| "application/octet-stream".into());
    if !CONTENT_TYPES.contains(&declared.as_str()) {
        return Err(AttestError::TypeNotAccepted { name: name.into(), declared });
    }
    let sniffed = infer::get(bytes).map(|t| t.mime_type());
    let textual = declared.starts_with("text/") || declared == "application/json";
    let fits = match sniffed {
        Some(found) => found == declared,
        None if textual => match std::str::from_utf8(bytes) {
            Ok(text) => !text.contains('\0') && (declared != "application/json" || serde_json::from_str::<serde_json::Value>(text).is_ok()),
            Err(_) => false,
        },
        None => false,
    };
    if fits {
        return Ok(declared);
    }
    let found = match sniffed {
        Some(t) => t.to_string(),
        None if std::str::from_utf8(bytes).is_ok() => "text".to_string(),
        None => "of no type recognised".to_string(),
    };
    let found = if textual && found == "text" { "not valid JSON".to_string() } else { found };
    Err(AttestError::TypeMismatch { name: name.into(), declared, found })
}

/// The accepted type a file name's extension stands for.
pub fn by_extension(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        "md" => "text/markdown",
        "json" => "application/json",
        "xlsx" => CONTENT_TYPES[7],
        "docx" => CONTENT_TYPES[8],
        _ => return None,
    })
}

/// Where an attested control stands at an instant.
#[derive(Debug, Clone, PartialEq)]
pub enum Standing<'a> {
    /// Never attested: no result (its requirements are not assessed).
    Never,
    /// Attested and holding; `due` once the reminder window has begun.
    Holding { attestation: &'a AttestationRow, expires: DateTime<Utc>, due: bool },
    /// The latest attestation has expired: the result is `unknown`.
    Expired { attestation: &'a AttestationRow, expired: DateTime<Utc> },
}

/// The latest attestation of each control, from every attestation (in
/// any order).
pub fn latest(attestations: &[AttestationRow]) -> BTreeMap<&str, &AttestationRow> {
    let mut out: BTreeMap<&str, &AttestationRow> = BTreeMap::new();
    for a in attestations {
        let newer = out.get(a.control_id.as_str()).is_none_or(|b| (a.attested_at, &a.attestation_id) > (b.attested_at, &b.attestation_id));
        if newer {
            out.insert(&a.control_id, a);
        }
    }
    out
}

/// Where `control` (an attested one) stands at `now`, given its latest
/// attestation. The cadence is the control's as now declared: a pack that
/// shortens it expires attestations sooner.
pub fn standing<'a>(control: &CompiledControl, latest: Option<&'a AttestationRow>, now: DateTime<Utc>) -> Standing<'a> {
    let (Some(attest), Some(a)) = (&control.attest, latest) else { return Standing::Never };
    let expires = time(a.attested_at) + attest.cadence;
    if now >= expires {
        Standing::Expired { attestation: a, expired: expires }
    } else {
        Standing::Holding { attestation: a, expires, due: now >= expires - attest.remind_before }
    }
}

impl Standing<'_> {
    /// The status the control's result has (`None`: no result).
    pub fn status(&self) -> Option<Status> {
        match self {
            Standing::Never => None,
            Standing::Holding { attestation, .. } => Some(if attestation.status == "pass" { Status::Pass } else { Status::Fail }),
            Standing::Expired { .. } => Some(Status::Unknown),
        }
    }

    /// The attestation behind it.
    pub fn attestation(&self) -> Option<&AttestationRow> {
        match self {
            Standing::Never => None,
            Standing::Holding { attestation, .. } | Standing::Expired { attestation, .. } => Some(attestation),
        }
    }

    /// The control's result as of `at`, on the asset [`ORGANIZATION`]: its
    /// evidence is the attestation (who, when, until when, the statement,
    /// each file's SHA-256), so the evidence chain seals the files' digests.
    pub fn evaluation(&self, control: &CompiledControl, at: DateTime<Utc>) -> Option<Evaluation> {
        let status = self.status()?;
        let a = self.attestation()?;
        let (until, message) = match self {
            Standing::Expired { expired, .. } => (
                *expired,
                format!("attestation_expired: attested by {} on {}, expired {}", a.attested_by, day(time(a.attested_at)), day(*expired)),
            ),
            Standing::Holding { expires, .. } => (
                *expires,
                format!("attested by {} on {} until {}: {}", a.attested_by, day(time(a.attested_at)), day(*expires), a.statement),
            ),
            Standing::Never => return None,
        };
        let files: Vec<String> = a
            .file_names
            .iter()
            .zip(&a.file_sha256)
            .zip(a.file_sizes.iter().zip(&a.file_types))
            .map(|((n, h), (s, t))| format!("{n} sha256:{h} {s} bytes {t}"))
            .collect();
        let evidence = BTreeMap::from([
            ("attestation.id".to_string(), a.attestation_id.clone().into()),
            ("attestation.attested_by".to_string(), a.attested_by.clone().into()),
            ("attestation.attested_at".to_string(), time(a.attested_at).to_rfc3339().into()),
            ("attestation.expires_at".to_string(), until.to_rfc3339().into()),
            ("attestation.statement".to_string(), a.statement.clone().into()),
            ("attestation.files".to_string(), driftwatch_schemas::FactValue::List(files)),
        ]);
        Some(Evaluation {
            asset_id: ORGANIZATION.into(),
            control_id: control.control.id.clone(),
            title: control.control.title.clone(),
            severity: control.control.severity,
            status,
            frameworks: control.frameworks.clone(),
            evidence,
            message: Some(message),
            evaluated_at: at,
            snapshot_id: format!("attestation:{}", a.attestation_id),
            sequence: 0,
            checked: Some(status).filter(|s| *s != Status::Unknown),
        })
    }
}

fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// An attested control as listed (CLI `attestation list`, the API).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Listing {
    pub control_id: String,
    pub title: String,
    pub severity: crate::policy::Severity,
    pub owner: String,
    pub cadence_days: i64,
    /// What the evidence must show.
    pub evidence: String,
    /// `never`, `holding`, `due` (its reminder window runs) or `expired`.
    pub state: &'static str,
    /// The result it gives: `pass`, `fail`, `unknown`; none if never attested.
    pub status: Option<Status>,
    pub expires_at: Option<DateTime<Utc>>,
    /// `framework:requirement` it gives evidence for.
    pub requirements: Vec<String>,
    pub latest: Option<AttestationRow>,
}

/// Every attested control in force and where it stands at `now`.
pub fn listing(policies: &PolicySet, attestations: &[AttestationRow], now: DateTime<Utc>) -> Vec<Listing> {
    let latest = latest(attestations);
    policies
        .controls
        .iter()
        .filter_map(|c| Some((c, c.attest.as_ref()?)))
        .map(|(c, attest)| {
            let standing = standing(c, latest.get(c.control.id.as_str()).copied(), now);
            let (state, expires_at) = match &standing {
                Standing::Never => ("never", None),
                Standing::Holding { expires, due, .. } => (if *due { "due" } else { "holding" }, Some(*expires)),
                Standing::Expired { expired, .. } => ("expired", Some(*expired)),
            };
            Listing {
                control_id: c.control.id.clone(),
                title: c.control.title.clone(),
                severity: c.control.severity,
                owner: attest.owner.clone(),
                cadence_days: attest.cadence.num_days(),
                evidence: attest.evidence.clone(),
                state,
                status: standing.status(),
                expires_at,
                requirements: c.framework_ids().to_vec(),
                latest: standing.attestation().cloned(),
            }
        })
        .collect()
}

/// A stored evidence file's bytes, only if they still have the SHA-256
/// (and size) they were stored under: what `verify`, the CLI and the API
/// all rely on before trusting or serving a file.
pub fn file_bytes(f: &AttestationFileRow) -> Option<Vec<u8>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(&f.content).ok()?;
    (hex::encode(Sha256::digest(&bytes)) == f.sha256 && bytes.len() as u64 == f.size).then_some(bytes)
}

/// Whether each evidence file of `attestation` is still what was attested:
/// `stored` gives a file by its SHA-256 (as stored now).
pub fn check_files<'a>(
    attestation: &AttestationRow,
    stored: impl Fn(&str) -> Option<&'a AttestationFileRow>,
) -> Vec<crate::evidence::verify::Finding> {
    use crate::evidence::verify::Finding;
    let mut out = Vec::new();
    for (name, sha256) in attestation.file_names.iter().zip(&attestation.file_sha256) {
        let (attestation_id, name, sha256) = (attestation.attestation_id.clone(), name.clone(), sha256.clone());
        match stored(&sha256) {
            None => out.push(Finding::FileMissing { attestation_id, name, sha256 }),
            Some(f) if f.sha256 != sha256 || file_bytes(f).is_none() => out.push(Finding::FileAltered { attestation_id, name, sha256 }),
            Some(_) => {}
        }
    }
    out
}

/// The alert names of attestation reminders.
pub const ALERTNAMES: [&str; 2] = ["attestation_due", "attestation_expired"];

/// The reminders that hold at `now`: `attestation_due` while an
/// attestation's reminder window runs (from `remind_before` ahead of its
/// expiry), `attestation_expired` once it has expired, each until a new
/// attestation is made. Labelled with the control, its owner and severity.
pub fn conditions(policies: &PolicySet, attestations: &[AttestationRow], now: DateTime<Utc>) -> Vec<Alert> {
    let latest = latest(attestations);
    let mut out = Vec::new();
    for c in policies.controls.iter().filter(|c| c.attest.is_some()) {
        let Some(attest) = &c.attest else { continue };
        let standing = standing(c, latest.get(c.control.id.as_str()).copied(), now);
        let (alertname, summary, since) = match &standing {
            Standing::Holding { due: true, expires, .. } => {
                (ALERTNAMES[0], format!("{} must be attested again by {}", c.control.title, day(*expires)), *expires - attest.remind_before)
            }
            Standing::Expired { expired, .. } => (
                ALERTNAMES[1],
                format!("{}: its attestation expired on {}; the result is unknown", c.control.title, day(*expired)),
                *expired,
            ),
            _ => continue,
        };
        let labels = BTreeMap::from([
            ("alertname".to_string(), alertname.to_string()),
            ("control".to_string(), c.control.id.clone()),
            ("owner".to_string(), attest.owner.clone()),
            ("severity".to_string(), c.control.severity.as_str().to_string()),
            ("asset".to_string(), ORGANIZATION.to_string()),
        ]);
        let annotations = BTreeMap::from([
            ("summary".to_string(), summary),
            ("description".to_string(), format!("Evidence expected: {}", attest.evidence.trim())),
            (
                "remediation".to_string(),
                format!(
                    "Attest it with evidence: driftwatch-collector attestation add {} --status pass --by NAME --statement TEXT --file FILE",
                    c.control.id
                ),
            ),
        ]);
        out.push(Alert::condition(labels, annotations, since));
    }
    out
}

#[cfg(test)]
mod tests;
