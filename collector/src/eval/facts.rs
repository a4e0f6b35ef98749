//! An asset's current facts, and their shape as CEL variables.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::objects::{Key, Map};
use driftwatch_schemas::{FactPath, FactValue};

/// Facts keyed by their textual path (as on the wire).
pub type FactMap = BTreeMap<String, FactValue>;

enum Node {
    Leaf(FactValue),
    Branch(HashMap<String, Node>),
}

/// Turns flat facts into one nested CEL map per root segment:
/// `sshd.config.x = "no"` becomes variable `sshd` = `{config: {x: "no"}}`.
/// Paths that don't parse are skipped (the agent never sends them; the
/// decoder would have to have let one through).
pub fn to_cel_variables(facts: &FactMap) -> Vec<(String, cel::Value)> {
    let mut roots: HashMap<String, Node> = HashMap::new();
    for (path, value) in facts {
        let Ok(path) = FactPath::parse(path) else { continue };
        let segs = path.segments();
        let mut node = roots.entry(segs[0].clone()).or_insert_with(|| Node::Branch(HashMap::new()));
        for seg in &segs[1..] {
            if let Node::Leaf(_) = node {
                // A value and a deeper path under it: the deeper path wins.
                *node = Node::Branch(HashMap::new());
            }
            let Node::Branch(children) = node else { unreachable!("made a branch above") };
            node = children.entry(seg.clone()).or_insert_with(|| Node::Branch(HashMap::new()));
        }
        if segs.len() == 1 || matches!(node, Node::Branch(c) if c.is_empty()) {
            *node = Node::Leaf(value.clone());
        }
    }
    roots.into_iter().map(|(k, n)| (k, to_cel(n))).collect()
}

fn to_cel(node: Node) -> cel::Value {
    match node {
        Node::Leaf(v) => fact_to_cel(&v),
        Node::Branch(children) => {
            let map: HashMap<Key, cel::Value> = children.into_iter().map(|(k, n)| (Key::String(Arc::new(k)), to_cel(n))).collect();
            cel::Value::Map(Map { map: Arc::new(map) })
        }
    }
}

/// One fact value as a CEL value.
pub fn fact_to_cel(v: &FactValue) -> cel::Value {
    match v {
        FactValue::Null => cel::Value::Null,
        FactValue::Bool(b) => cel::Value::Bool(*b),
        FactValue::Int(i) => cel::Value::Int(*i),
        FactValue::Float(f) => cel::Value::Float(*f),
        FactValue::Str(s) => cel::Value::String(Arc::new(s.clone())),
        FactValue::List(l) => cel::Value::List(Arc::new(l.iter().map(|s| cel::Value::String(Arc::new(s.clone()))).collect())),
    }
}

/// The facts at or below `prefix`, for evidence. A prefix with nothing
/// under it is reported as `null`, so evidence shows what was missing.
pub fn facts_under(facts: &FactMap, prefix: &FactPath) -> Vec<(String, FactValue)> {
    let p = prefix.to_string();
    let mut out: Vec<(String, FactValue)> = under(facts, &p).map(|(k, v)| (k.clone(), v.clone())).collect();
    if out.is_empty() {
        out.push((p, FactValue::Null));
    }
    out
}

/// Whether any fact is at or below `prefix`.
pub fn holds(facts: &FactMap, prefix: &FactPath) -> bool {
    under(facts, &prefix.to_string()).next().is_some()
}

/// The facts at `prefix` (a path's text) or below it.
fn under<'a>(facts: &'a FactMap, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a FactValue)> {
    facts
        .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
        .take_while(move |(k, _)| k.starts_with(prefix))
        .filter(move |(k, _)| k.len() == prefix.len() || matches!(k.as_bytes()[prefix.len()], b'.' | b'['))
}

/// An asset's facts as CEL variables, kept between snapshots so that a
/// delta patches them instead of rebuilding every map. Evaluations borrow
/// them through [`VariableResolver`]: nothing is converted or copied per
/// evaluation, only a root that a snapshot changed is converted again.
#[derive(Debug, Default)]
pub struct CelFacts {
    roots: HashMap<String, cel::Value>,
    /// `roots` as CEL's runtime values (what a context binds).
    vals: HashMap<String, Box<dyn Val>>,
}

impl VariableResolver for CelFacts {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        self.vals.get(variable).map(|v| CowVal::Borrowed(v.as_ref()))
    }
}

/// A CEL value as a runtime value; `None` for what facts never hold.
fn to_val(v: &cel::Value) -> Option<Box<dyn Val>> {
    v.clone().try_into().ok()
}

impl CelFacts {
    pub fn build(facts: &FactMap) -> Self {
        let roots: HashMap<String, cel::Value> = to_cel_variables(facts).into_iter().collect();
        let vals = roots.iter().filter_map(|(k, v)| Some((k.clone(), to_val(v)?))).collect();
        CelFacts { roots, vals }
    }

    /// Brings the variables up to date after `changed` paths were set or
    /// removed in `facts` (which already holds the new state).
    pub fn update(&mut self, facts: &FactMap, changed: &[FactPath], removed: bool) {
        let mut rebuild: Vec<&str> = Vec::new();
        for path in changed {
            let root = path.segments()[0].as_str();
            if removed || !self.set_in_place(path, facts) {
                rebuild.push(root);
            }
        }
        rebuild.sort_unstable();
        rebuild.dedup();
        for root in rebuild {
            self.rebuild_root(root, facts);
        }
        let mut touched: Vec<&str> = changed.iter().map(|p| p.segments()[0].as_str()).collect();
        touched.sort_unstable();
        touched.dedup();
        for root in touched {
            match self.roots.get(root).and_then(to_val) {
                Some(v) => self.vals.insert(root.to_string(), v),
                None => self.vals.remove(root),
            };
        }
    }

    /// Rebuilds one root variable from the facts under it.
    fn rebuild_root(&mut self, root: &str, facts: &FactMap) {
        let facts: FactMap = under(facts, root).map(|(k, v)| (k.clone(), v.clone())).collect();
        match to_cel_variables(&facts).into_iter().next() {
            Some((_, v)) => {
                self.roots.insert(root.to_string(), v);
            }
            None => {
                self.roots.remove(root);
            }
        }
    }

    /// Sets one leaf by walking (and copy-on-write cloning) the maps on its
    /// path. Returns false when the shape changes (a leaf where a map is, or
    /// the reverse): the caller rebuilds the root.
    fn set_in_place(&mut self, path: &FactPath, facts: &FactMap) -> bool {
        let Some(value) = facts.get(&path.to_string()) else { return false };
        let segs = path.segments();
        if segs.len() == 1 {
            return false;
        }
        let Some(mut node) = self.roots.get_mut(&segs[0]) else { return false };
        for (i, seg) in segs[1..].iter().enumerate() {
            let cel::Value::Map(m) = node else { return false };
            let map = Arc::make_mut(&mut m.map);
            let key = Key::String(Arc::new(seg.clone()));
            let last = i + 2 == segs.len();
            if last {
                if matches!(map.get(&key), Some(cel::Value::Map(_))) {
                    return false;
                }
                map.insert(key, fact_to_cel(value));
                return true;
            }
            node = map.entry(key).or_insert_with(|| cel::Value::Map(Map { map: Arc::new(HashMap::new()) }));
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(pairs: &[(&str, FactValue)]) -> FactMap {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    /// Patched variables equal variables built from scratch.
    #[test]
    fn updates_match_a_rebuild() {
        let mut f = facts(&[("a.x.y", 1i64.into()), ("a.z", "s".into()), ("b", true.into()), (r#"c["/etc/x"].mode"#, "0640".into())]);
        let mut cel = CelFacts::build(&f);
        let check = |f: &FactMap, cel: &CelFacts| {
            let fresh = CelFacts::build(f);
            assert_eq!(cel.roots, fresh.roots);
            // What evaluations see is patched too.
            assert_eq!(cel.vals.len(), fresh.vals.len());
            for (k, v) in &fresh.vals {
                assert!(cel.vals.get(k).is_some_and(|x| x.equals(v.as_ref())), "{k}: {:?} ≠ {v:?}", cel.vals.get(k));
            }
        };
        // (changes: path → new value or None for removal, any removal?)
        type Step<'a> = (Vec<(&'a str, Option<FactValue>)>, bool);
        let steps: Vec<Step> = vec![
            (vec![("a.x.y", Some(2i64.into()))], false),
            (vec![("a.new.deep", Some("n".into()))], false),
            (vec![(r#"c["/etc/x"].mode"#, Some("0600".into()))], false),
            (vec![("d.fresh", Some(1i64.into()))], false),
            (vec![("a.z", None)], true),
            (vec![("a.x", Some("leaf".into()))], false),
        ];
        for (changes, removal) in steps {
            let mut paths = Vec::new();
            for (p, v) in changes {
                match v {
                    Some(v) => f.insert(p.to_string(), v),
                    None => f.remove(p),
                };
                paths.push(FactPath::parse(p).unwrap());
            }
            cel.update(&f, &paths, removal);
            check(&f, &cel);
        }
    }
}
