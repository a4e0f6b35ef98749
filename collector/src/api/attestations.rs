//! `/api/v1/attestations`: where each attested control stands (GET), a new
//! attestation with its evidence files (POST, `multipart/form-data`), and
//! an evidence file by its SHA-256 (GET `/attestations/files/{sha256}`,
//! recorded in the audit table like every read of evidence). The same
//! attestations as `driftwatch-collector attestation`.

use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use chrono::Utc;

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::attest::{self, Claim, Listing, Upload};

pub async fn list(State(s): State<AppState>) -> Result<Json<Vec<Listing>>, ApiError> {
    let all = s.store.attestations().await.map_err(super::unavailable)?;
    let set = s.policies.borrow().clone();
    Ok(Json(attest::listing(&set, &all, Utc::now())))
}

/// Takes the form's fields `control_id`, `status` (default `pass`),
/// `statement`, `attested_by` (default: the key's name) and any number of
/// `file` parts, each with its file name and content type.
pub async fn create(State(s): State<AppState>, Extension(caller): Extension<Caller>, mut form: Multipart) -> Result<Response, ApiError> {
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    let (mut control_id, mut status, mut statement, mut attested_by) = (None, None, None, None);
    let mut uploads = Vec::new();
    while let Some(field) = form.next_field().await.map_err(|e| bad(format!("multipart body: {e}")))? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            if uploads.len() >= s.attestations.max_files {
                return Err(bad(format!("more than {} files (attestations.max_files)", s.attestations.max_files)));
            }
            let file_name = field.file_name().unwrap_or_default().to_string();
            let content_type = field.content_type().map(str::to_string);
            let bytes = field.bytes().await.map_err(|e| bad(format!("file {file_name:?}: {e}")))?;
            uploads.push(Upload { name: file_name, content_type, bytes: bytes.to_vec() });
            continue;
        }
        let slot = match name.as_str() {
            "control_id" => &mut control_id,
            "status" => &mut status,
            "statement" => &mut statement,
            "attested_by" => &mut attested_by,
            other => return Err(bad(format!("unknown field {other:?} (expected control_id, status, statement, attested_by, file)"))),
        };
        let text = field.text().await.map_err(|e| bad(format!("{name}: {e}")))?;
        if text.len() > attest::MAX_STATEMENT_CHARS * 4 {
            return Err(bad(format!("{name}: too long")));
        }
        *slot = Some(text);
    }
    let claim = Claim {
        control_id: control_id.ok_or_else(|| bad("control_id: missing".into()))?,
        status: status.unwrap_or_else(|| "pass".into()),
        statement: statement.unwrap_or_default(),
        attested_by: attested_by.filter(|a| !a.trim().is_empty()).unwrap_or_else(|| caller.name.clone()),
        source: format!("api:{}", caller.name),
    };
    let set = s.policies.borrow().clone();
    let (row, files) = attest::accept(&set, claim, uploads, s.attestations, Utc::now()).map_err(|e| match e {
        attest::AttestError::UnknownControl(_) => ApiError(StatusCode::NOT_FOUND, e.to_string()),
        attest::AttestError::TooLarge { .. } => ApiError(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        attest::AttestError::TypeNotAccepted { .. } | attest::AttestError::TypeMismatch { .. } => {
            ApiError(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string())
        }
        _ => bad(e.to_string()),
    })?;
    s.store.put_attestation(&row, &files).await.map_err(super::unavailable)?;
    let detail = format!("attestation {} of {} ({}) with {} file(s)", row.attestation_id, row.control_id, row.status, row.file_names.len());
    let mut r = (StatusCode::CREATED, Json(&row)).into_response();
    if let Ok(v) = detail.parse() {
        r.headers_mut().insert("x-driftwatch-audit", v);
    }
    Ok(r)
}

pub async fn file(State(s): State<AppState>, Path(sha256): Path<String>) -> Result<Response, ApiError> {
    let sha256 = sha256.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError(StatusCode::BAD_REQUEST, "expected a SHA-256 in hex (64 digits)".into()));
    }
    let f = s.store.attestation_file(&sha256).await.map_err(super::unavailable)?;
    let f = f.ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no evidence file with SHA-256 {sha256}")))?;
    // An altered file is never served as evidence.
    let bytes = attest::file_bytes(&f).ok_or_else(|| {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("the stored file no longer has SHA-256 {sha256}: it was altered"))
    })?;
    let headers = [
        ("content-type", f.content_type),
        ("x-content-type-options", "nosniff".to_string()),
        ("content-disposition", "attachment".to_string()),
        ("digest", format!("sha-256={}", base64::engine::general_purpose::STANDARD.encode(hex::decode(&f.sha256).unwrap_or_default()))),
    ];
    Ok((headers, bytes).into_response())
}
