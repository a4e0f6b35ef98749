//! Policy packs: loading YAML files, validating them (with file:line
//! errors), and compiling each control's CEL check.
//!
//! A set of packs is accepted whole or not at all: [`load_dir`] returns
//! every problem it found, so an operator fixes them in one pass.

pub mod bundled;
pub mod catalog;
pub mod cel;
pub mod frameworks;
pub mod model;
pub mod xccdf;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use driftwatch_schemas::{AssetKind, FactPath};
pub use model::{Control, DetectStream, Severity, ORGANIZATION};

/// A control ready to evaluate.
#[derive(Debug)]
pub struct CompiledControl {
    pub control: Control,
    /// The check, or for a detection its `match`; for an attestation the
    /// constant `false`, never run (its results come from attestations).
    pub program: ::cel::Program,
    /// The fact paths the check reads; the evidence of a result. Empty for
    /// detections, which read records, not facts.
    pub reads: BTreeSet<FactPath>,
    /// The same paths written out, in the same order: how facts are keyed,
    /// and so how evidence looks them up (written once per policy load,
    /// not once per result).
    pub read_texts: Vec<String>,
    /// The check's string constants: what a long list's evidence keeps of
    /// it (see [`crate::eval::facts::evidence`]).
    pub constants: BTreeSet<String>,
    /// Set for a detection over the audit or SLA stream.
    pub detect: Option<CompiledDetect>,
    /// Set for an attested control.
    pub attest: Option<CompiledAttest>,
    /// Where the control was declared, and its pack's name.
    pub source: PathBuf,
    pub pack: Arc<str>,
    /// The control's framework mapping, shared by all its results.
    pub frameworks: Arc<Frameworks>,
}

/// A control's framework mapping (framework → requirement ids), and the
/// same as `framework:id` strings (e.g. `soc2:CC6.1`, in map order), made
/// once per policy load rather than once per result.
#[derive(Debug, Default, PartialEq)]
pub struct Frameworks {
    pub by_framework: std::collections::BTreeMap<String, Vec<String>>,
    pub ids: Vec<String>,
}

impl Frameworks {
    pub fn new(by_framework: &std::collections::BTreeMap<String, Vec<String>>) -> Arc<Self> {
        let ids = by_framework.iter().flat_map(|(f, ids)| ids.iter().map(move |id| format!("{f}:{id}"))).collect();
        Arc::new(Frameworks { by_framework: by_framework.clone(), ids })
    }
}

/// Serialized as the mapping.
impl serde::Serialize for Frameworks {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.by_framework.serialize(s)
    }
}

/// A detection's compiled parts (see [`model::Detect`]).
#[derive(Debug)]
pub struct CompiledDetect {
    pub stream: DetectStream,
    pub group_by: Vec<::cel::Program>,
    pub threshold: u32,
    pub window: chrono::Duration,
    /// Variables `match` reads (the record's, and fact roots of the asset):
    /// one of them undeclared means "no such data", not a broken match.
    pub roots: Vec<String>,
    /// Terms of `match` on the record's own fields, checked on the record
    /// as it arrived: a record failing one is skipped without running CEL.
    pub guards: Vec<cel::Guard>,
}

/// An attested control's compiled parts (see [`model::Attest`]).
#[derive(Debug, Clone)]
pub struct CompiledAttest {
    pub owner: String,
    /// How long an attestation holds.
    pub cadence: chrono::Duration,
    /// How long before expiry its reminder fires.
    pub remind_before: chrono::Duration,
    pub evidence: String,
}

impl CompiledControl {
    /// Whether it is a check over facts (neither a detection nor attested):
    /// what a snapshot evaluates.
    pub fn is_check(&self) -> bool {
        self.detect.is_none() && self.attest.is_none()
    }

    /// How it gets its results: `check`, `detection` or `attestation`.
    pub fn kind(&self) -> &'static str {
        match (&self.detect, &self.attest) {
            (Some(_), _) => "detection",
            (_, Some(_)) => "attestation",
            _ => "check",
        }
    }

    /// Whether the control applies to an asset of `kind` with `labels`.
    pub fn applies_to(&self, kind: AssetKind, labels: &std::collections::BTreeMap<String, String>) -> bool {
        let a = &self.control.applies_to;
        (a.kinds.is_empty() || a.kinds.iter().any(|k| k == kind.as_str())) && a.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    /// `framework:id` strings, e.g. `soc2:CC6.1`.
    pub fn framework_ids(&self) -> &[String] {
        &self.frameworks.ids
    }
}

/// All loaded controls.
#[derive(Debug, Default)]
pub struct PolicySet {
    pub controls: Vec<CompiledControl>,
    /// Root variable (first path segment) → (control index, paths it reads
    /// under that root). Built by [`PolicySet::new`].
    index: HashMap<String, Vec<(usize, Vec<FactPath>)>>,
    /// Control id → index.
    by_id: HashMap<String, usize>,
    /// Stream → indexes of the detections that watch it.
    detections: HashMap<DetectStream, Vec<usize>>,
    /// The frameworks' catalogs: what a mapping may name, and what a score
    /// covers.
    pub catalogs: catalog::Catalogs,
}

impl PolicySet {
    /// Indexes the controls by the fact paths they read.
    pub fn new(controls: Vec<CompiledControl>) -> Self {
        let mut index: HashMap<String, Vec<(usize, Vec<FactPath>)>> = HashMap::new();
        for (i, c) in controls.iter().enumerate() {
            let mut by_root: HashMap<&str, Vec<FactPath>> = HashMap::new();
            for p in &c.reads {
                by_root.entry(p.segments()[0].as_str()).or_default().push(p.clone());
            }
            for (root, paths) in by_root {
                index.entry(root.to_string()).or_default().push((i, paths));
            }
        }
        let by_id = controls.iter().enumerate().map(|(i, c)| (c.control.id.clone(), i)).collect();
        let mut detections: HashMap<DetectStream, Vec<usize>> = HashMap::new();
        for (i, c) in controls.iter().enumerate() {
            if let Some(d) = &c.detect {
                detections.entry(d.stream).or_default().push(i);
            }
        }
        PolicySet { controls, index, by_id, detections, catalogs: catalog::Catalogs::shipped() }
    }

    /// Indexes of the detections of `stream`.
    pub fn detections(&self, stream: DetectStream) -> &[usize] {
        self.detections.get(&stream).map(Vec::as_slice).unwrap_or_default()
    }

    /// The control with `id`.
    pub fn get(&self, id: &str) -> Option<(usize, &CompiledControl)> {
        self.by_id.get(id).map(|&i| (i, &self.controls[i]))
    }

    /// Every requirement of `framework`: its catalog's, in the catalog's
    /// order, then those controls map to that the catalog lacks (all of
    /// them, without a catalog), sorted.
    pub fn requirement_ids(&self, framework: &str) -> Vec<String> {
        let catalog = self.catalogs.get(framework);
        let mapped: std::collections::BTreeSet<&String> = self
            .controls
            .iter()
            .flat_map(|c| c.control.frameworks.get(framework).into_iter().flatten())
            .filter(|id| !catalog.is_some_and(|c| c.contains(id)))
            .collect();
        let listed = catalog.into_iter().flat_map(|c| c.requirements.iter().map(|r| &r.id));
        listed.chain(mapped).cloned().collect()
    }

    /// Indexes (into `controls`) of the controls whose result may change
    /// when the facts at `changed` change: a control reading `p` is affected
    /// by a change at, below, or above `p` (a check may read a whole map).
    /// Sorted, without duplicates.
    pub fn affected<'a>(&self, changed: impl IntoIterator<Item = &'a FactPath>) -> Vec<usize> {
        let mut out = Vec::new();
        for c in changed {
            let Some(entries) = self.index.get(&c.segments()[0]) else { continue };
            for (i, reads) in entries {
                if reads.iter().any(|r| c.starts_with(r) || r.starts_with(c)) {
                    out.push(*i);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// One problem in a pack, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file.display(), l, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Every problem found in a set of packs.
#[derive(Debug, thiserror::Error)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

const ASSET_KINDS: [&str; 3] = ["host", "k8s-node", "k8s-cluster"];

/// Loads every `*.yaml` / `*.yml` under `dir` (recursively, in name order).
/// Files under a folder named `fixtures` are test data, not packs; those
/// under `frameworks/` are catalogs ([`catalog`]: a control may map only to
/// requirements they list); files whose top-level key is `waivers:` are
/// waivers ([`crate::waiver`]).
pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyErrors> {
    let mut files = Vec::new();
    collect_files(dir, &mut files)
        .map_err(|e| PolicyErrors(vec![PolicyError { file: dir.to_path_buf(), line: None, message: e.to_string() }]))?;
    files.sort();
    let mut errors = Vec::new();
    let mut all = Vec::new();
    let mut seen: HashMap<String, (PathBuf, Option<usize>)> = HashMap::new();
    let catalogs = catalog::Catalogs::load(dir).map_err(|mut e| errors.append(&mut e)).unwrap_or_default();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(PolicyError { file, line: None, message: format!("cannot read: {e}") });
                continue;
            }
        };
        if is_waiver_file(&text) {
            continue; // waivers, loaded by `crate::waiver::load_dir`
        }
        match load_text(&file, &text) {
            Ok(controls) => {
                for c in controls {
                    let line = line_of_id(&text, &c.control.id);
                    if let Some((f, l)) = seen.get(&c.control.id) {
                        let at = match l {
                            Some(l) => format!("{}:{l}", f.display()),
                            None => f.display().to_string(),
                        };
                        errors.push(PolicyError {
                            file: file.clone(),
                            line,
                            message: format!("duplicate control id {:?} (first declared at {at})", c.control.id),
                        });
                        continue;
                    }
                    seen.insert(c.control.id.clone(), (file.clone(), line));
                    errors.extend(unknown_requirements(&c.control, &catalogs).map(|message| PolicyError {
                        file: file.clone(),
                        line,
                        message,
                    }));
                    let mut c = c;
                    catalogs.derive(&mut c.control.frameworks);
                    c.frameworks = Frameworks::new(&c.control.frameworks);
                    all.push(c);
                }
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        if all.is_empty() {
            return Err(PolicyErrors(vec![PolicyError {
                file: dir.to_path_buf(),
                line: None,
                message: "no controls found (expected *.yaml policy packs)".into(),
            }]));
        }
        let mut set = PolicySet::new(all);
        set.catalogs = catalogs;
        Ok(set)
    } else {
        Err(PolicyErrors(errors))
    }
}

/// Each mapping of `control` to a requirement its framework's catalog does
/// not have.
fn unknown_requirements<'a>(control: &'a model::Control, catalogs: &'a catalog::Catalogs) -> impl Iterator<Item = String> + 'a {
    control.frameworks.iter().filter_map(|(fw, ids)| Some((fw, ids, catalogs.get(fw)?))).flat_map(move |(fw, ids, cat)| {
        ids.iter()
            .filter(|id| !cat.contains(id))
            .map(move |id| format!("control {}: {fw} has no requirement {id:?} (its catalog: {})", control.id, cat.source.display()))
    })
}

pub(crate) fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        // Hidden entries are not packs: `.git`, an editor's `.x.yaml.swp`,
        // and the `..data` / `..2026_…` folders a Kubernetes ConfigMap
        // volume keeps its files in (its visible names link into them, so
        // reading both would declare every control twice).
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
            continue;
        }
        if path.is_dir() {
            // Test data, and the frameworks' catalogs (`catalog`).
            if path.file_name().is_some_and(|n| n == "fixtures" || n == catalog::DIR) {
                continue;
            }
            collect_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

/// Parses and validates one pack file.
pub fn load_text(file: &Path, text: &str) -> Result<Vec<CompiledControl>, Vec<PolicyError>> {
    let pack: model::PackFile = serde_yaml::from_str(text)
        .map_err(|e| vec![PolicyError { file: file.to_path_buf(), line: e.location().map(|l| l.line()), message: e.to_string() }])?;
    let mut errors = Vec::new();
    let mut out = Vec::new();
    let pack_name: Arc<str> = pack.pack.as_str().into();
    let vars = variables(file, text, &pack.variables, &mut errors);
    for mut control in pack.controls {
        let pack = pack_name.clone();
        let line = line_of_id(text, &control.id);
        let mut err = |message: String| errors.push(PolicyError { file: file.to_path_buf(), line, message });
        if control.id.is_empty() || !control.id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            err(format!("control id {:?} must be non-empty and use only letters, digits, '.', '_' and '-'", control.id));
        }
        for k in &control.applies_to.kinds {
            if !ASSET_KINDS.contains(&k.as_str()) {
                err(format!("control {}: unknown asset kind {k:?} (expected one of {})", control.id, ASSET_KINDS.join(", ")));
            }
        }
        if control.frameworks.is_empty() {
            err(format!("control {}: maps to no framework", control.id));
        }
        for (fw, ids) in &control.frameworks {
            match frameworks::framework(fw) {
                None => err(format!(
                    "control {}: unknown framework {fw:?} (known: {})",
                    control.id,
                    frameworks::FRAMEWORKS.iter().map(|f| f.key).collect::<Vec<_>>().join(", ")
                )),
                Some((f, re)) => {
                    if ids.is_empty() {
                        err(format!("control {}: framework {fw} lists no requirement ids", control.id));
                    }
                    for id in ids {
                        if !re.is_match(id) {
                            err(format!("control {}: {id:?} is not a {} requirement id (e.g. {:?})", control.id, f.name, f.example));
                        }
                    }
                }
            }
        }
        // The pack's variables, in the check or the detection's match.
        for source in [control.check.as_mut(), control.detect.as_mut().map(|d| &mut d.matches)].into_iter().flatten() {
            match cel::expand(source, &vars) {
                Ok(expanded) => *source = expanded,
                Err(e) => err(format!("control {}: {e}", control.id)),
            }
        }
        let frameworks = Frameworks::new(&control.frameworks);
        let compiled =
            |control: Control, program: ::cel::Program, detect: Option<CompiledDetect>, attest: Option<CompiledAttest>| CompiledControl {
                control,
                program,
                reads: BTreeSet::new(),
                read_texts: Vec::new(),
                constants: BTreeSet::new(),
                detect,
                attest,
                source: file.to_path_buf(),
                pack,
                frameworks,
            };
        match (&control.check, &control.detect, &control.attest) {
            (Some(check), None, None) => match cel::compile(check) {
                Err(e) => err(format!("control {}: check does not compile: {e}", control.id)),
                Ok(program) => {
                    let (reads, constants) = (cel::fact_paths(&program), cel::string_constants(&program));
                    let read_texts = reads.iter().map(ToString::to_string).collect();
                    out.push(CompiledControl { reads, read_texts, constants, ..compiled(control, program, None, None) });
                }
            },
            (None, Some(d), None) => {
                if let Some(detect) = compile_detect(&control.id, d, &mut err) {
                    match cel::compile(&d.matches) {
                        Err(e) => err(format!("control {}: detect.match does not compile: {e}", control.id)),
                        Ok(program) => out.push(compiled(control, program, Some(detect), None)),
                    }
                }
            }
            (None, None, Some(a)) => {
                if !control.applies_to.kinds.is_empty() || !control.applies_to.labels.is_empty() {
                    err(format!("control {}: an attested control is the organisation's; it takes no applies_to", control.id));
                }
                if let (Some(attest), Ok(never)) = (compile_attest(&control.id, a, &mut err), cel::compile("false")) {
                    out.push(compiled(control, never, None, Some(attest)));
                }
            }
            (None, None, None) => {
                err(format!("control {}: has none of `check` (over facts), `detect` (over a stream), `attest` (by people)", control.id))
            }
            _ => err(format!("control {}: give one of `check`, `detect` and `attest`", control.id)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// A pack's `variables:`, checked: each a name of letters, digits and
/// `_`, an expression that compiles on its own and uses no other
/// variable. Those with errors are left out (the errors are reported).
fn variables(file: &Path, text: &str, declared: &serde_yaml::Mapping, errors: &mut Vec<PolicyError>) -> Vec<(String, String)> {
    let line = text.lines().position(|l| l.starts_with("variables:")).map(|n| n + 1);
    let mut err = |message: String| errors.push(PolicyError { file: file.to_path_buf(), line, message });
    let mut out = Vec::new();
    for (name, expr) in declared {
        let (Some(name), Some(expr)) = (name.as_str(), expr.as_str()) else {
            err(format!("variables: each must be a name and a CEL expression, not {name:?}: {expr:?}"));
            continue;
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || name.starts_with(|c: char| c.is_ascii_digit())
        {
            err(format!("variables: {name:?} must be letters, digits and '_', not starting with a digit"));
            continue;
        }
        if cel::expand(expr, &[]).is_err() {
            err(format!("variables: {name} uses another variable; a variable may only read facts"));
            continue;
        }
        if let Err(e) = cel::compile(expr) {
            err(format!("variables: {name} does not compile: {e}"));
            continue;
        }
        out.push((name.to_string(), expr.to_string()));
    }
    out
}

/// Parses an attestation's durations.
fn compile_attest(id: &str, a: &model::Attest, err: &mut impl FnMut(String)) -> Option<CompiledAttest> {
    let mut duration = |field: &str, text: &str| match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => chrono::Duration::from_std(d).ok(),
        Ok(_) => {
            err(format!("control {id}: attest.{field} {text:?} must be a positive duration"));
            None
        }
        Err(e) => {
            err(format!("control {id}: attest.{field} {text:?}: {e} (e.g. \"90d\", \"365d\")"));
            None
        }
    };
    let (cadence, remind_before) = (duration("cadence", &a.cadence), duration("remind_before", &a.remind_before));
    if a.owner.trim().is_empty() || a.evidence.trim().is_empty() {
        err(format!("control {id}: attest needs an owner and the evidence it expects"));
        return None;
    }
    Some(CompiledAttest { owner: a.owner.clone(), cadence: cadence?, remind_before: remind_before?, evidence: a.evidence.clone() })
}

/// Compiles a detection's group keys and parses its window.
fn compile_detect(id: &str, d: &model::Detect, err: &mut impl FnMut(String)) -> Option<CompiledDetect> {
    let mut ok = true;
    let window = match humantime::parse_duration(&d.window) {
        Ok(w) if !w.is_zero() => chrono::Duration::from_std(w).ok(),
        Ok(_) => None,
        Err(e) => {
            err(format!("control {id}: detect.window {:?}: {e} (e.g. \"5m\", \"1h\")", d.window));
            ok = false;
            None
        }
    };
    if window.is_none() && ok {
        err(format!("control {id}: detect.window {:?} must be a positive duration", d.window));
        ok = false;
    }
    if d.threshold == 0 {
        err(format!("control {id}: detect.threshold must be at least 1"));
        ok = false;
    }
    let mut group_by = Vec::new();
    for g in &d.group_by {
        match cel::compile(g) {
            Ok(p) => group_by.push(p),
            Err(e) => {
                err(format!("control {id}: detect.group_by {g:?} does not compile: {e}"));
                ok = false;
            }
        }
    }
    let program = cel::compile(&d.matches).ok();
    let mut roots: Vec<String> =
        program.as_ref().map(|p| cel::fact_paths(p).iter().map(|p| p.segments()[0].clone()).collect()).unwrap_or_default();
    roots.dedup();
    let guards = program.map(|p| cel::guards(&p, d.stream.variable())).unwrap_or_default();
    Some(CompiledDetect { stream: d.stream, group_by, threshold: d.threshold, window: window?, roots, guards }).filter(|_| ok)
}

/// The 1-based line where `id: <id>` is declared, for error messages.
pub(crate) fn line_of_id(text: &str, id: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let t = l.trim_start().trim_start_matches("- ").trim_start();
            t.strip_prefix("id:").is_some_and(|rest| rest.trim().trim_matches(|c| c == '"' || c == '\'') == id)
        })
        .map(|i| i + 1)
}

/// The catalog rows of every control in `set`.
pub fn control_rows(set: &PolicySet, now: &chrono::DateTime<chrono::Utc>) -> Vec<crate::store::rows::ControlRow> {
    set.controls
        .iter()
        .map(|c| crate::store::rows::ControlRow {
            control_id: c.control.id.clone(),
            title: c.control.title.clone(),
            severity: c.control.severity.as_str().to_string(),
            pack: c.pack.to_string(),
            frameworks: c.frameworks.ids.clone(),
            loaded_at: crate::store::secs(now),
        })
        .collect()
}

/// Whether a YAML text is a waiver file (top-level key `waivers:`), not a
/// policy pack: the loader leaves it to `crate::waiver::load_dir`.
pub fn is_waiver_file(text: &str) -> bool {
    text.lines().any(|l| l.starts_with("waivers:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"pack: t
controls:
  - id: t.one
    title: One
    severity: high
    check: sshd.config.permitrootlogin == "no"
    frameworks:
      soc2: [CC6.1]
      pci-dss: ["8.2.1"]
"#;

    #[test]
    fn loads_a_good_pack() {
        let c = load_text(Path::new("p.yaml"), GOOD).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].framework_ids(), vec!["pci-dss:8.2.1", "soc2:CC6.1"]);
        assert_eq!(c[0].reads.iter().next().unwrap().to_string(), "sshd.config.permitrootlogin");
    }

    #[test]
    fn errors_carry_file_and_line() {
        let bad = GOOD
            .replace("CC6.1", "CC6")
            .replace("== \"no\"", "== (")
            .replace("soc2:", "soc2:\n      sox: [X]\n      pci-dss2: [\"1\"]\n      zzz:");
        let errs = load_text(Path::new("p.yaml"), &bad).unwrap_err();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(text.iter().all(|t| t.starts_with("p.yaml:3: control t.one")), "{text:#?}");
        assert!(text.iter().any(|t| t.contains("unknown framework \"sox\"")), "{text:#?}");
        assert!(text.iter().any(|t| t.contains("check does not compile")), "{text:#?}");
    }

    #[test]
    fn unknown_fields_are_located() {
        let bad = GOOD.replace("    title: One\n", "    title: One\n    severty: low\n");
        let errs = load_text(Path::new("p.yaml"), &bad).unwrap_err();
        assert_eq!(errs[0].line, Some(5), "{:?}", errs);
        assert!(errs[0].message.contains("severty"));
    }

    #[test]
    fn the_index_finds_controls_by_what_they_read() {
        let text = r#"pack: t
controls:
  - {id: a, title: a, severity: low, check: 'sshd.config.permitrootlogin == "no"', frameworks: {soc2: [CC6.1]}}
  - {id: b, title: b, severity: low, check: 'sshd.config.maxauthtries <= 4', frameworks: {soc2: [CC6.1]}}
  - {id: c, title: c, severity: low, check: 'size(sshd.matches) == 0 && files["/etc/shadow"].mode == "0640"', frameworks: {soc2: [CC6.1]}}
  - {id: d, title: d, severity: low, check: 'true', frameworks: {soc2: [CC6.1]}}
"#;
        let set = PolicySet::new(load_text(Path::new("t.yaml"), text).unwrap());
        let p = |s: &str| FactPath::parse(s).unwrap();
        assert_eq!(set.affected([&p("sshd.config.permitrootlogin")]), vec![0]);
        assert_eq!(set.affected([&p("sshd.config")]), vec![0, 1], "a change above what is read");
        assert_eq!(set.affected([&p(r#"files["/etc/shadow"].mode"#), &p("sshd.config.maxauthtries")]), vec![1, 2]);
        assert_eq!(set.affected([&p("sshd.matches")]), vec![2]);
        assert!(set.affected([&p("os.id"), &p(r#"files["/etc/passwd"].mode"#)]).is_empty());
    }

    /// `variables:` name expressions a pack's checks and detections share;
    /// what a variable reads is what the control reads.
    #[test]
    fn pack_variables_are_shared_by_checks_and_checked() {
        let text = r#"pack: t
variables:
  strong_macs: "['hmac-sha2-512', 'hmac-sha2-256']"
  root_off: sshd.config.permitrootlogin == "no"
controls:
  - id: t.macs
    title: Strong MACs
    severity: high
    check: sshd.config.macs.all(m, m in vars.strong_macs) && vars.root_off && "vars.not_a_variable" != ""
    frameworks: {soc2: [CC6.1]}
  - id: t.root
    title: Root
    severity: high
    check: vars.root_off
    frameworks: {soc2: [CC6.1]}
"#;
        let set = PolicySet::new(load_text(Path::new("p.yaml"), text).unwrap_or_else(|e| panic!("{e:?}")));
        let p = |s: &str| FactPath::parse(s).unwrap();
        assert_eq!(set.affected([&p("sshd.config.permitrootlogin")]), vec![0, 1], "a variable's reads are the control's");
        assert_eq!(set.affected([&p("sshd.config.macs")]), vec![0]);
        assert!(set.controls[0].control.check.as_deref().unwrap().contains("\"vars.not_a_variable\""), "strings are left alone");

        let bad = text
            .replace("m in vars.strong_macs", "m in vars.strong_mac")
            .replace("root_off: sshd", "root_off: vars.strong_macs.size() > 0 || sshd");
        let errs: Vec<String> = load_text(Path::new("p.yaml"), &bad).unwrap_err().iter().map(|e| e.to_string()).collect();
        assert!(errs.iter().any(|e| e.starts_with("p.yaml:2: variables: root_off uses another variable")), "{errs:#?}");
        assert!(
            errs.iter().any(|e| e.starts_with("p.yaml:6: control t.macs: unknown variable vars.strong_mac (the pack defines strong_macs)")),
            "{errs:#?}"
        );
        let bad = text.replace("root_off: sshd.config.permitrootlogin == \"no\"", "root_off: sshd.config.permitrootlogin ==");
        let errs: Vec<String> = load_text(Path::new("p.yaml"), &bad).unwrap_err().iter().map(|e| e.to_string()).collect();
        assert!(errs.iter().any(|e| e.starts_with("p.yaml:2: variables: root_off does not compile")), "{errs:#?}");
    }

    /// A pack mounted from a Kubernetes ConfigMap (the Helm chart's
    /// `collector.policies`): its visible file links into `..data`, a link
    /// to a hidden timestamped folder. Each control is read once.
    #[test]
    fn a_configmap_volume_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site");
        let stamped = site.join("..2026_12_07_12_00_00.1");
        std::fs::create_dir_all(&stamped).unwrap();
        std::fs::write(stamped.join("mine.yaml"), GOOD).unwrap();
        std::os::unix::fs::symlink("..2026_12_07_12_00_00.1", site.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/mine.yaml", site.join("mine.yaml")).unwrap();
        std::fs::write(site.join(".mine.yaml.swp"), "not yaml: [").unwrap();
        let set = load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(set.controls.iter().map(|c| c.control.id.as_str()).collect::<Vec<_>>(), ["t.one"]);
    }

    #[test]
    fn applies_to_kinds_and_labels() {
        let text = GOOD
            .replace("    severity: high\n", "    severity: high\n    applies_to:\n      kinds: [k8s-node]\n      labels: {env: prod}\n");
        let c = &load_text(Path::new("p.yaml"), &text).unwrap()[0];
        let prod = [("env".to_string(), "prod".to_string())].into();
        assert!(c.applies_to(AssetKind::K8sNode, &prod));
        assert!(!c.applies_to(AssetKind::Host, &prod));
        assert!(!c.applies_to(AssetKind::K8sNode, &Default::default()));
    }

    /// The coverage the shipped packs promise: 150+ checks, every
    /// framework evidenced by 10+ of them, every check mapped to 2+
    /// frameworks, and Linux fact checks naming an SSG rule where they can.
    /// The organisational requirements no agent can observe are each
    /// mapped by an attested control, so that automated and attested
    /// evidence together can cover these frameworks.
    #[test]
    fn shipped_attested_controls_cover_the_organisational_requirements() {
        let set = load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")).unwrap_or_else(|e| panic!("{e}"));
        let attested: BTreeSet<(&str, &str)> = set
            .controls
            .iter()
            .filter(|c| c.attest.is_some())
            .flat_map(|c| c.control.frameworks.iter().flat_map(|(fw, ids)| ids.iter().map(move |id| (fw.as_str(), id.as_str()))))
            .collect();
        let sections: [(&str, &[&str]); 4] = [
            ("soc2", &["CC1.", "CC2.", "CC3.", "CC4.", "CC5.", "CC9."]),
            ("iso27001", &["A.5.", "A.6."]),
            ("hipaa", &["164.308("]),
            ("pci-dss", &["12."]),
        ];
        for (fw, prefixes) in sections {
            let catalog = set.catalogs.get(fw).unwrap();
            let wanted: Vec<&str> =
                catalog.requirements.iter().map(|r| r.id.as_str()).filter(|id| prefixes.iter().any(|p| id.starts_with(p))).collect();
            assert!(wanted.len() >= 8, "{fw}: {wanted:?}");
            let missing: Vec<&&str> = wanted.iter().filter(|id| !attested.contains(&(fw, **id))).collect();
            assert!(missing.is_empty(), "{fw}: no attested control maps to {missing:?}");
        }
        for c in set.controls.iter().filter(|c| c.attest.is_some()) {
            assert!(c.control.id.starts_with("org."), "{}: attested controls live in policies/organization", c.control.id);
        }
    }

    #[test]
    fn shipped_packs_cover_every_framework() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let set = load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert!(set.controls.len() >= 150, "{} controls", set.controls.len());
        for f in frameworks::FRAMEWORKS {
            let n = set.controls.iter().filter(|c| c.control.frameworks.contains_key(f.key)).count();
            assert!(n >= 10, "{} is covered by {n} checks", f.key);
        }
        for c in &set.controls {
            assert!(c.control.frameworks.len() >= 2, "{} maps to {:?}", c.control.id, c.control.frameworks.keys());
            assert!(
                !c.control.description.is_empty() && !c.control.rationale.is_empty() && !c.control.remediation.is_empty(),
                "{}",
                c.control.id
            );
        }
        let linux: Vec<_> = set.controls.iter().filter(|c| c.control.id.starts_with("linux.")).collect();
        let with_ssg = linux.iter().filter(|c| c.control.references.contains_key("ssg")).count();
        assert!(with_ssg * 10 >= linux.len() * 8, "{with_ssg} of {} Linux checks name an SSG rule", linux.len());
        for kind in ["detect", "k8s-node", "k8s-cluster"] {
            let n = set
                .controls
                .iter()
                .filter(|c| match kind {
                    "detect" => c.detect.is_some(),
                    k => c.control.applies_to.kinds == [k],
                })
                .count();
            assert!(n >= 10, "{n} {kind} checks");
        }
    }
}
