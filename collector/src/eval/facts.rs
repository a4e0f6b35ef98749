//! An asset's current facts, and their shape as CEL variables.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cel::common::types::{CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString};
use cel::common::value::{Builtin, CowVal, Val};
use cel::context::VariableResolver;
use driftwatch_schemas::{FactPath, FactValue};

/// Facts keyed by their textual path, written the one way `FactPath`
/// writes it (the decoder hands paths on so: `a["b"]` is `a.b`).
pub type FactMap = BTreeMap<String, FactValue>;

enum Node<'a> {
    Leaf(&'a FactValue),
    /// An API object shipped as JSON text ([`FactPath::is_json_object`]):
    /// CEL reads its fields (`k8s.objects.pods["app/web"].spec.hostNetwork`).
    Object(serde_json::Value),
    Branch(HashMap<String, Node<'a>>),
}

/// Turns flat facts into one nested CEL map per root segment, in CEL's
/// runtime form: `sshd.config.x = "no"` becomes variable `sshd` =
/// `{config: {x: "no"}}`. Paths that don't parse are skipped (the agent
/// never sends them; the decoder would have to have let one through).
fn to_cel_variables<'a>(facts: impl Iterator<Item = (&'a String, &'a FactValue)>) -> Vec<(String, Box<dyn Val>)> {
    match tree(facts, 0) {
        Some(Node::Branch(roots)) => roots.into_iter().map(|(k, n)| (k, to_val(n))).collect(),
        _ => Vec::new(),
    }
}

/// The tree of `facts` below their first `skip` path segments (which the
/// caller knows they share), or `None` when no fact has a path that long.
/// A value and a deeper path under it: the deeper path wins.
fn tree<'a>(facts: impl Iterator<Item = (&'a String, &'a FactValue)>, skip: usize) -> Option<Node<'a>> {
    let mut top: Option<Node> = None;
    for (path, value) in facts {
        let Ok(path) = FactPath::parse(path) else { continue };
        let object = match value {
            FactValue::Str(text) if path.is_json_object() => serde_json::from_str::<serde_json::Value>(text).ok(),
            _ => None,
        };
        let segs = path.into_segments();
        if segs.len() < skip {
            continue;
        }
        let mut node = top.get_or_insert_with(|| Node::Branch(HashMap::new()));
        let mut deeper = false;
        for seg in segs.into_iter().skip(skip) {
            deeper = true;
            if let Node::Leaf(_) | Node::Object(_) = node {
                *node = Node::Branch(HashMap::new());
            }
            let Node::Branch(children) = node else { unreachable!("made a branch above") };
            node = children.entry(seg).or_insert_with(|| Node::Branch(HashMap::new()));
        }
        if !deeper || matches!(node, Node::Branch(c) if c.is_empty()) {
            *node = match object {
                Some(o) => Node::Object(o),
                None => Node::Leaf(value),
            };
        }
    }
    top
}

fn to_val(node: Node) -> Box<dyn Val> {
    match node {
        Node::Leaf(v) => fact_to_val(v),
        Node::Object(o) => json_to_val(o),
        Node::Branch(children) => {
            let map: HashMap<CelMapKey, Box<dyn Val>> = children.into_iter().map(|(k, n)| (map_key(k), to_val(n))).collect();
            Box::new(CelMap::from(map))
        }
    }
}

/// A JSON value as a CEL runtime value: an integral number as `int`, any
/// other as `double`.
fn json_to_val(v: serde_json::Value) -> Box<dyn Val> {
    use serde_json::Value as J;
    match v {
        J::Null => Box::new(CelNull),
        J::Bool(b) => Box::new(CelBool::from(b)),
        J::Number(n) => match n.as_i64() {
            Some(i) => Box::new(CelInt::from(i)),
            None => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        },
        J::String(s) => Box::new(CelString::from(s)),
        J::Array(a) => Box::new(CelList::from(a.into_iter().map(json_to_val).collect::<Vec<_>>())),
        J::Object(m) => {
            let map: HashMap<CelMapKey, Box<dyn Val>> = m.into_iter().map(|(k, v)| (CelMapKey::from(k), json_to_val(v))).collect();
            Box::new(CelMap::from(map))
        }
    }
}

/// A map key of the facts' CEL values: shared by every asset when it can
/// be ([`super::intern`]).
fn map_key(k: String) -> CelMapKey<'static> {
    match super::intern::intern(&k) {
        Some(shared) => CelMapKey::from(shared),
        None => CelMapKey::from(k),
    }
}

/// A string of the facts' CEL values, shared like [`map_key`].
fn string(s: &str) -> Box<dyn Val> {
    match super::intern::intern(s) {
        Some(shared) => Box::new(CelString::from(shared)),
        None => Box::new(CelString::from(s.to_owned())),
    }
}

/// One fact value as a CEL runtime value.
fn fact_to_val(v: &FactValue) -> Box<dyn Val> {
    match v {
        FactValue::Null => Box::new(CelNull),
        FactValue::Bool(b) => Box::new(CelBool::from(*b)),
        FactValue::Int(i) => Box::new(CelInt::from(*i)),
        FactValue::Float(f) => Box::new(CelDouble::from(*f)),
        FactValue::Str(s) => string(s),
        FactValue::List(l) => Box::new(CelList::from(l.iter().map(|s| string(s)).collect::<Vec<_>>())),
    }
}

/// Lists longer than this are summarized in evidence (see [`add_evidence`]).
pub const LIST_EVIDENCE_MAX: usize = 32;

/// The evidence of a result: the facts at or below each path the check
/// `reads` (a path with nothing under it as `null`, so evidence shows what
/// was missing), long lists summarized by the check's string `constants`
/// (their digests kept in `digests` for the next check on the same facts).
pub fn evidence(facts: &FactMap, reads: &[String], constants: &BTreeSet<String>, digests: &ListDigests) -> BTreeMap<String, FactValue> {
    let mut out = BTreeMap::new();
    for p in reads {
        let mut found = false;
        // API objects lie only under `k8s` and `k8s.objects…`: only such a
        // read counts them (a second pass over what it reads).
        let may_hold_objects = p == "k8s" || p.starts_with("k8s.objects");
        let objects = if may_hold_objects { under(facts, p).filter(|(k, _)| FactPath::names_json_object(k)).count() } else { 0 };
        let mut summed = <sha2::Sha256 as sha2::Digest>::new();
        for (k, v) in under(facts, p) {
            found = true;
            if objects > LIST_EVIDENCE_MAX && FactPath::names_json_object(k) {
                sha2::Digest::update(&mut summed, format!("{k}\t{}\n", v.to_json()).as_bytes());
                continue;
            }
            add_evidence(&mut out, k, v, constants, digests);
        }
        if objects > LIST_EVIDENCE_MAX {
            // A cluster's hundreds of API objects are not copied into every
            // result: their number, and the SHA-256 of their paths and JSON
            // in path order, against the snapshot's facts.
            out.insert(format!("{p}{ITEMS}"), FactValue::Int(objects as i64));
            out.insert(format!("{p}{SHA256}"), FactValue::Str(hex::encode(sha2::Digest::finalize(summed))));
        }
        if !found {
            out.entry(p.clone()).or_insert(FactValue::Null);
        }
    }
    out
}

/// Adds one fact to `evidence`. A list of more than [`LIST_EVIDENCE_MAX`]
/// items (an asset's hundreds of installed packages, read by a dozen
/// controls) is not copied into every result: its evidence is the items
/// that are, or contain, one of the check's string constants (of three
/// characters or more), with `<path>#items` its length and
/// `<path>#sha256` the SHA-256 of its JSON text, the `value` of its row in
/// `facts`, against which the whole list can be checked.
pub fn add_evidence(
    evidence: &mut BTreeMap<String, FactValue>,
    path: &str,
    value: &FactValue,
    constants: &BTreeSet<String>,
    digests: &ListDigests,
) {
    let FactValue::List(items) = value else {
        evidence.insert(path.to_string(), value.clone());
        return;
    };
    if items.len() <= LIST_EVIDENCE_MAX {
        evidence.insert(path.to_string(), value.clone());
        return;
    }
    let named = |item: &String| constants.contains(item) || constants.iter().any(|c| c.len() >= 3 && item.contains(c.as_str()));
    let kept: Vec<String> = items.iter().filter(|i| named(i)).cloned().collect();
    let digest = digests.of(path, value);
    evidence.insert(format!("{path}{ITEMS}"), FactValue::Int(items.len() as i64));
    evidence.insert(format!("{path}{SHA256}"), FactValue::Str(digest));
    evidence.insert(path.to_string(), FactValue::List(kept));
}

/// The SHA-256 of long lists' JSON by fact path, for one set of facts: a
/// dozen package controls read the same list, which is serialized and
/// hashed once (shared by the threads of one evaluation; two that miss at
/// once both compute the same digest).
#[derive(Debug, Default)]
pub struct ListDigests(std::sync::Mutex<HashMap<String, String>>);

impl ListDigests {
    fn of(&self, path: &str, value: &FactValue) -> String {
        if let Some(d) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(path) {
            return d.clone();
        }
        let d = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(value.to_json().as_bytes()));
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_string(), d.clone());
        d
    }
}

const ITEMS: &str = "#items";
const SHA256: &str = "#sha256";

/// The fact path an evidence key is about (`packages.installed` for
/// `packages.installed#items`).
pub fn evidence_path(key: &str) -> &str {
    key.strip_suffix(ITEMS).or_else(|| key.strip_suffix(SHA256)).unwrap_or(key)
}

/// The facts at or below `prefix`; a prefix with nothing under it as
/// `null`.
pub fn facts_under(facts: &FactMap, prefix: &FactPath) -> Vec<(String, FactValue)> {
    let p = prefix.to_string();
    let mut out: Vec<(String, FactValue)> = under(facts, &p).map(|(k, v)| (k.clone(), v.clone())).collect();
    if out.is_empty() {
        out.push((p, FactValue::Null));
    }
    out
}

/// Whether any fact is at or below `prefix`.
pub fn holds(facts: &FactMap, prefix: &str) -> bool {
    under(facts, prefix).next().is_some()
}

/// The facts at `prefix` (a path's text) or below it.
fn under<'a>(facts: &'a FactMap, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a FactValue)> {
    facts
        .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
        .take_while(move |(k, _)| k.starts_with(prefix))
        .filter(move |(k, _)| k.len() == prefix.len() || matches!(k.as_bytes()[prefix.len()], b'.' | b'['))
}

/// An asset's facts as CEL variables, kept between snapshots: evaluations
/// borrow them through [`VariableResolver`] (nothing is converted or copied
/// per evaluation), and a delta rebuilds only the root variables it
/// touched, from the asset's facts. Only CEL's runtime form is kept (with
/// the facts themselves, two copies per asset, not three).
#[derive(Debug, Default)]
pub struct CelFacts {
    vals: HashMap<String, Box<dyn Val>>,
}

impl VariableResolver for CelFacts {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        self.vals.get(variable).map(|v| CowVal::Borrowed(v.as_ref()))
    }
}

impl CelFacts {
    pub fn build(facts: &FactMap) -> Self {
        CelFacts { vals: to_cel_variables(facts.iter()).into_iter().collect() }
    }

    /// Brings the variables up to date after `changed` paths were set or
    /// removed in `facts` (which already holds the new state). Each path
    /// is patched where it is: a delta to one of an asset's hundreds of
    /// package versions replaces one value, not the whole `packages` map.
    pub fn update(&mut self, facts: &FactMap, changed: &[FactPath]) {
        for path in changed {
            let segs = path.segments();
            let Some(root) = segs.first() else { continue };
            let patched = match self.vals.remove(root.as_str()) {
                Some(old) if segs.len() > 1 => into_map(old).map(|mut map| {
                    patch(&mut map, facts, path, 1);
                    map
                }),
                _ => None,
            };
            let value = match patched {
                Some(map) if !map.is_empty() => Some(Box::new(CelMap::from(map)) as Box<dyn Val>),
                // The root was a value, is gone, or is the path itself.
                _ => subtree(facts, &FactPath::new([root.as_str()])),
            };
            if let Some(v) = value {
                self.vals.insert(root.clone(), v);
            }
        }
    }
}

type CelEntries = HashMap<CelMapKey<'static>, Box<dyn Val>>;

/// The entries of `v` if it is a map (a branch of facts), else `None`;
/// moved out, not copied (`into_builtin` is the cel crate's one way to
/// own a boxed value's concrete type; the crate's version is pinned).
fn into_map(v: Box<dyn Val>) -> Option<CelEntries> {
    match v.into_builtin() {
        Some(Builtin::Map(m)) => Some(m.into_inner()),
        _ => None,
    }
}

/// The CEL value of the facts at or below `path`, as [`to_cel_variables`]
/// would nest it there.
fn subtree(facts: &FactMap, path: &FactPath) -> Option<Box<dyn Val>> {
    tree(under(facts, &path.to_string()), path.segments().len()).map(to_val)
}

/// Sets `path` (from its segment `depth` on) in `map`, one level of the
/// tree, to what `facts` hold at and below it. A branch left empty is
/// rebuilt from `facts` (a value at its own path shows again); a value on
/// the way is replaced by a branch (the deeper path wins).
fn patch(map: &mut CelEntries, facts: &FactMap, path: &FactPath, depth: usize) {
    let segs = path.segments();
    let key = map_key(segs[depth].clone());
    let child = if depth + 1 == segs.len() {
        subtree(facts, path)
    } else {
        let mut entries = map.remove(&key).and_then(into_map).unwrap_or_default();
        patch(&mut entries, facts, path, depth + 1);
        if entries.is_empty() {
            subtree(facts, &FactPath::new(segs[..=depth].iter().map(String::as_str)))
        } else {
            Some(Box::new(CelMap::from(entries)) as Box<dyn Val>)
        }
    };
    match child {
        Some(v) => map.insert(key, v),
        None => map.remove(&key),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(pairs: &[(&str, FactValue)]) -> FactMap {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    fn packages(n: usize, extra: &[&str]) -> FactValue {
        FactValue::List((0..n).map(|i| format!("lib{i}")).chain(extra.iter().map(|s| s.to_string())).collect())
    }

    /// Values are built, patched and dropped one level per path segment:
    /// at the deepest path the limits allow, that fits a small stack (an
    /// evaluation thread's is 2 MiB: half of it here, unoptimised).
    #[test]
    fn the_deepest_allowed_path_is_built_patched_and_dropped_on_a_small_stack() {
        let depth = driftwatch_schemas::limits::MAX_PATH_DEPTH_CEILING;
        let deep = move |leaf: &str| format!("a{}.{leaf}", ".b".repeat(depth - 2));
        std::thread::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(move || {
                let mut f = facts(&[(&deep("x"), "1".into())]);
                let mut vals = CelFacts::build(&f);
                f.insert(deep("y"), "2".into());
                vals.update(&f, &[FactPath::parse(&deep("y")).unwrap()]);
                drop(vals);
            })
            .unwrap()
            .join()
            .expect("no stack overflow");
    }

    #[test]
    fn evidence_summarizes_long_lists_by_the_checks_constants() {
        let list = packages(40, &["telnetd", "inetutils-telnet"]);
        let f = facts(&[("packages.installed", list.clone()), ("sshd.config.port", "22".into()), ("os.id", "debian".into())]);
        let reads = ["files", "packages.installed", "sshd.config", "sshd.config.port"].map(String::from);
        let constants = ["telnet".to_string(), "rsh".to_string(), "x".to_string()].into();
        let digests = ListDigests::default();
        let e = evidence(&f, &reads, &constants, &digests);
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(list.to_json().as_bytes()));
        let expected: BTreeMap<String, FactValue> = [
            ("packages.installed", FactValue::List(vec!["telnetd".into(), "inetutils-telnet".into()])),
            ("packages.installed#items", FactValue::Int(42)),
            ("packages.installed#sha256", FactValue::Str(digest)),
            // Read twice (`sshd.config` and below): once, and not null.
            ("sshd.config.port", "22".into()),
            ("files", FactValue::Null),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(e, expected);
        assert_eq!(evidence(&f, &reads, &constants, &digests), expected, "again, the digest from the cache");
        assert_eq!(digests.0.lock().unwrap().len(), 1);
        assert_eq!(evidence_path("packages.installed#sha256"), "packages.installed");
        assert_eq!(evidence_path(r#"files["/a#items"]"#), r#"files["/a#items"]"#);
    }

    #[test]
    fn many_api_objects_are_evidence_by_number_and_digest() {
        let pods: Vec<(String, FactValue)> =
            (0..=LIST_EVIDENCE_MAX).map(|i| (format!(r#"k8s.objects.pods["app/p{i:02}"]"#), format!(r#"{{"i":{i}}}"#).into())).collect();
        let mut f: FactMap = pods.iter().cloned().collect();
        f.insert("k8s.pods.count".into(), 33i64.into());
        let reads = ["k8s.objects.pods".to_string(), "k8s.pods.count".to_string()];
        let e = evidence(&f, &reads, &BTreeSet::new(), &ListDigests::default());
        let mut all = <sha2::Sha256 as sha2::Digest>::new();
        for (k, v) in &pods {
            sha2::Digest::update(&mut all, format!("{k}\t{}\n", v.to_json()).as_bytes());
        }
        let expected: BTreeMap<String, FactValue> = [
            ("k8s.objects.pods#items".to_string(), FactValue::Int(33)),
            ("k8s.objects.pods#sha256".to_string(), FactValue::Str(hex::encode(sha2::Digest::finalize(all)))),
            ("k8s.pods.count".to_string(), 33i64.into()),
        ]
        .into();
        assert_eq!(e, expected);
        // A few are evidence as they are, and CEL reads their fields.
        let few: FactMap = pods.into_iter().take(2).collect();
        assert_eq!(evidence(&few, &reads[..1], &BTreeSet::new(), &ListDigests::default()).len(), 2);
        let vars = CelFacts::build(&few);
        let program =
            crate::policy::cel::compile(r#"k8s.objects.pods["app/p01"].i == 1 && k8s.objects.pods.all(p, k8s.objects.pods[p].i < 2)"#)
                .unwrap();
        let mut ctx = crate::policy::cel::root_context();
        ctx.set_variable_resolver(&vars);
        assert_eq!(program.execute(&ctx).unwrap(), cel::Value::Bool(true));
    }

    #[test]
    fn short_lists_are_evidence_as_they_are() {
        let list = packages(LIST_EVIDENCE_MAX, &[]);
        let f = facts(&[("packages.installed", list.clone())]);
        let e = evidence(&f, &["packages.installed".to_string()], &BTreeSet::new(), &ListDigests::default());
        assert_eq!(e, [("packages.installed".to_string(), list)].into());
    }

    /// Patched variables equal variables built from scratch.
    #[test]
    fn updates_match_a_rebuild() {
        let mut f = facts(&[("a.x.y", 1i64.into()), ("a.z", "s".into()), ("b", true.into()), (r#"c["/etc/x"].mode"#, "0640".into())]);
        let mut cel = CelFacts::build(&f);
        let check = |f: &FactMap, cel: &CelFacts| {
            let fresh = CelFacts::build(f);
            assert_eq!(cel.vals.len(), fresh.vals.len());
            for (k, v) in &fresh.vals {
                assert!(cel.vals.get(k).is_some_and(|x| x.equals(v.as_ref())), "{k}: {:?} ≠ {v:?}", cel.vals.get(k));
            }
        };
        // Each step's changes: path → new value, or None for a removal.
        type Step<'a> = Vec<(&'a str, Option<FactValue>)>;
        let steps: Vec<Step> = vec![
            vec![("a.x.y", Some(2i64.into()))],
            vec![("a.new.deep", Some("n".into()))],
            vec![(r#"c["/etc/x"].mode"#, Some("0600".into()))],
            vec![("d.fresh", Some(1i64.into()))],
            vec![("a.z", None)],
            vec![("a.x", Some("leaf".into()))],
            vec![("d.fresh", None)],
            // The value at `a.x` shows again once nothing is deeper.
            vec![("a.x.y", None)],
            vec![("a.x.y", Some(3i64.into())), ("a.x.z", Some(4i64.into()))],
            vec![("a.x.y", None), ("a.x.z", None)],
            // Under a value at a root; then that deeper path gone again.
            vec![("b.deep.er", Some(1i64.into()))],
            vec![("b.deep.er", None)],
            // Nothing there to remove; a root emptied; a root's own value.
            vec![("zz.q", None)],
            vec![(r#"c["/etc/x"].mode"#, None)],
            vec![("b", None), ("e", Some(false.into()))],
            vec![(r#"c["/etc/y"]"#, Some("v".into())), (r#"c["/etc/y"].mode"#, Some("0600".into()))],
        ];
        for changes in steps {
            let mut paths = Vec::new();
            for (p, v) in changes {
                match v {
                    Some(v) => f.insert(p.to_string(), v),
                    None => f.remove(p),
                };
                paths.push(FactPath::parse(p).unwrap());
            }
            cel.update(&f, &paths);
            check(&f, &cel);
        }
    }
}
