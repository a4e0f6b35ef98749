//! Evaluation: the controls that apply to an asset, run against its facts
//! (as CEL variables), each giving an [`Evaluation`] with its evidence;
//! a full evaluation's checks shared out over the engine's pool.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use driftwatch_schemas::{Asset, FactPath, FactValue};
use serde::Serialize;

use super::facts::{self, FactMap};
use super::Status;
use crate::policy::{CompiledControl, PolicySet};

/// One control evaluated on one asset.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub asset_id: String,
    pub control_id: String,
    pub title: String,
    pub severity: crate::policy::Severity,
    pub status: Status,
    /// Framework → requirement ids (the control's, shared).
    pub frameworks: Arc<crate::policy::Frameworks>,
    /// The facts the check read, with their values when evaluated.
    pub evidence: BTreeMap<String, FactValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub evaluated_at: DateTime<Utc>,
    pub snapshot_id: String,
    pub sequence: i64,
    /// What the check said on trustworthy facts (`status` before a waiver;
    /// `None` when the result is unknown). Drift compares these.
    #[serde(skip)]
    pub checked: Option<Status>,
}

/// A digest of what an evaluation's stored row says besides its time and
/// snapshot: status, severity, message and the evidence's JSON (as the row
/// holds it). Within one process only (the engine compares results with
/// the last one of the same pair); 64 bits make a false match between two
/// results of one pair negligible, and the hasher's keys, random for the
/// process, keep a host from crafting a result that matches another.
pub fn result_digest(e: &Evaluation) -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> = std::sync::OnceLock::new();
    /// Feeds what is written into the hasher.
    struct Feed(std::collections::hash_map::DefaultHasher);
    impl std::io::Write for Feed {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.write(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut feed = Feed(KEYS.get_or_init(Default::default).build_hasher());
    feed.0.write(e.status.as_str().as_bytes());
    feed.0.write_u8(0);
    feed.0.write(e.severity.as_str().as_bytes());
    feed.0.write_u8(0);
    feed.0.write(e.message.as_deref().unwrap_or_default().as_bytes());
    feed.0.write_u8(0);
    // Writing to a hasher cannot fail; a value serde cannot write would
    // leave the digest short, and the row is then simply stored again.
    let _ = serde_json::to_writer(&mut feed, &e.evidence);
    feed.0.finish()
}

/// Evaluates every control that applies to `asset` against `facts`.
pub fn evaluate_all(
    policies: &PolicySet,
    asset: &Asset,
    facts: &FactMap,
    snapshot_id: &str,
    sequence: i64,
    at: DateTime<Utc>,
) -> Vec<Evaluation> {
    let vars = facts::CelFacts::build(facts);
    let input = Input {
        asset,
        vars: &vars,
        facts,
        complete: true,
        stale: None,
        waivers: &crate::waiver::Waivers::default(),
        waivers_at: DateTime::<Utc>::MIN_UTC,
    };
    evaluate(policies, None, &input, None, snapshot_id, sequence, at)
}

/// What a check runs on: the asset, its facts (as CEL variables and as a
/// map, for evidence), whether lost deltas make them untrustworthy, and
/// the waivers.
pub(super) struct Input<'a> {
    pub(super) asset: &'a Asset,
    pub(super) vars: &'a facts::CelFacts,
    pub(super) facts: &'a FactMap,
    /// Whether `facts` are all the asset's (a full snapshot was applied);
    /// if not, a fact missing may just not be known yet.
    pub(super) complete: bool,
    /// The sequence gap (last applied, first after) while stale.
    pub(super) stale: Option<(i64, i64)>,
    pub(super) waivers: &'a crate::waiver::Waivers,
    /// Waivers are looked at no earlier than this (see
    /// `Engine::waivers_applied_at`).
    pub(super) waivers_at: DateTime<Utc>,
}

/// Below this many controls an evaluation runs on the calling thread: a
/// delta's few controls cost less than handing them to the pool.
const PARALLEL_MIN: usize = 32;

/// The fewest controls a pool thread takes at a time (each share builds
/// its own CEL context).
const PARALLEL_SHARE_MIN: usize = 8;

/// Evaluates the controls at `which` (indexes into `policies.controls`;
/// `None`: all) that apply to the input's asset. With a `pool` of more than
/// one thread, a full evaluation (many controls) is shared out over it;
/// results come back in the controls' order either way.
pub(super) fn evaluate(
    policies: &PolicySet,
    which: Option<&[usize]>,
    input: &Input,
    pool: Option<&rayon::ThreadPool>,
    snapshot_id: &str,
    sequence: i64,
    at: DateTime<Utc>,
) -> Vec<Evaluation> {
    let Input { asset, vars, facts, complete, .. } = *input;
    let controls: Box<dyn Iterator<Item = &CompiledControl>> = match which {
        Some([]) => return Vec::new(),
        Some(w) => Box::new(w.iter().filter_map(|i| policies.controls.get(*i))),
        None => Box::new(policies.controls.iter()),
    };
    let controls: Vec<&CompiledControl> = controls
        // Detections run on records (see `detect`), never on facts, and
        // attested controls take their results from attestations.
        .filter(|c| c.is_check())
        .filter(|c| c.applies_to(asset.kind, &asset.labels))
        // Without the asset's full snapshot (a restart, a rebalance: posture
        // is restored, facts are not), a missing fact says nothing: only
        // checks whose every fact is held are run until the next one.
        .filter(|c| complete || c.read_texts.iter().all(|p| facts::holds(facts, p)))
        .collect();
    let digests = facts::ListDigests::default();
    let context = || {
        let mut ctx = crate::policy::cel::root_context();
        ctx.set_variable_resolver(vars);
        ctx
    };
    let one = |ctx: &cel::Context, c: &CompiledControl| evaluate_one(c, ctx, input, &digests, snapshot_id, sequence, at);
    match pool {
        Some(pool) if controls.len() >= PARALLEL_MIN && pool.current_num_threads() > 1 => {
            use rayon::prelude::*;
            pool.install(|| controls.par_iter().with_min_len(PARALLEL_SHARE_MIN).map_init(context, |ctx, c| one(ctx, c)).collect())
        }
        _ => {
            let ctx = context();
            controls.iter().map(|c| one(&ctx, c)).collect()
        }
    }
}

/// Runs one control's check and judges its result: a sequence gap makes it
/// `unknown`, a waiver in force turns a failure `waived`.
pub(super) fn evaluate_one(
    c: &CompiledControl,
    ctx: &cel::Context,
    input: &Input,
    digests: &facts::ListDigests,
    snapshot_id: &str,
    sequence: i64,
    at: DateTime<Utc>,
) -> Evaluation {
    let Input { asset, facts, stale, waivers, waivers_at, .. } = *input;
    let (mut status, mut message) = run_check(c, ctx, facts);
    let mut checked = Some(status).filter(|s| *s != Status::Unknown);
    if let Some((from, to)) = stale {
        status = Status::Unknown;
        checked = None;
        message = Some(format!(
            "sequence_gap: deltas {}..{} were lost; unknown until the next full snapshot{}",
            from + 1,
            to - 1,
            message.map(|m| format!(" ({m})")).unwrap_or_default()
        ));
    }
    if status == Status::Fail {
        if let Some(w) = waivers.for_control(&c.control.id, &asset.id, &asset.labels, at.max(waivers_at)) {
            status = Status::Waived;
            message = Some(w.describe());
        }
    }
    let evidence = facts::evidence(facts, &c.read_texts, &c.constants, digests);
    Evaluation {
        asset_id: asset.id.clone(),
        control_id: c.control.id.clone(),
        title: c.control.title.clone(),
        severity: c.control.severity,
        status,
        frameworks: c.frameworks.clone(),
        evidence,
        message,
        evaluated_at: at,
        snapshot_id: snapshot_id.to_string(),
        sequence,
        checked,
    }
}

/// Runs a check. Facts that are missing because their family could not
/// read them (its `<family>.errors` fact) make the result `unknown`; facts
/// simply not collected (no such software) make it `not_applicable`.
pub(super) fn run_check(c: &CompiledControl, ctx: &cel::Context, facts: &FactMap) -> (Status, Option<String>) {
    match c.program.execute(ctx) {
        Ok(cel::Value::Bool(true)) => (Status::Pass, None),
        Ok(cel::Value::Bool(false)) => (Status::Fail, None),
        Ok(other) => (Status::Error, Some(format!("check returned {other:?}, not a boolean"))),
        Err(e) if crate::policy::cel::is_missing_fact(&e, c.reads.iter().map(|p| p.segments()[0].as_str())) => {
            let roots: std::collections::BTreeSet<&str> = c.reads.iter().map(|p| p.segments()[0].as_str()).collect();
            // Errors of the families read; when the check reads files by
            // path, only errors that name one of them.
            let paths: Vec<&str> =
                c.reads.iter().flat_map(|p| p.segments()[1..].iter()).map(String::as_str).filter(|s| s.contains('/')).collect();
            let errors: Vec<String> = roots
                .iter()
                .filter_map(|root| facts.get(&FactPath::new([*root, "errors"]).to_string()))
                .flat_map(|v| match v {
                    FactValue::List(l) => l.clone(),
                    other => vec![other.to_json()],
                })
                .filter(|e| paths.is_empty() || paths.iter().any(|p| e.contains(p)))
                .collect();
            if errors.is_empty() {
                (Status::NotApplicable, Some(format!("facts not collected: {e}")))
            } else {
                (Status::Unknown, Some(format!("fact_unreadable: {}", errors.join("; "))))
            }
        }
        Err(e) => (Status::Error, Some(e.to_string())),
    }
}
