//! An asset's current facts, and their shape as CEL variables.

use std::collections::{BTreeMap, HashMap};

use cel::common::types::{CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use driftwatch_schemas::{FactPath, FactValue};

/// Facts keyed by their textual path (as on the wire).
pub type FactMap = BTreeMap<String, FactValue>;

enum Node<'a> {
    Leaf(&'a FactValue),
    Branch(HashMap<String, Node<'a>>),
}

/// Turns flat facts into one nested CEL map per root segment, in CEL's
/// runtime form: `sshd.config.x = "no"` becomes variable `sshd` =
/// `{config: {x: "no"}}`. Paths that don't parse are skipped (the agent
/// never sends them; the decoder would have to have let one through).
fn to_cel_variables<'a>(facts: impl Iterator<Item = (&'a String, &'a FactValue)>) -> Vec<(String, Box<dyn Val>)> {
    let mut roots: HashMap<String, Node> = HashMap::new();
    for (path, value) in facts {
        let Ok(path) = FactPath::parse(path) else { continue };
        let mut segs = path.into_segments().into_iter();
        let Some(first) = segs.next() else { continue };
        let mut node = roots.entry(first).or_insert_with(|| Node::Branch(HashMap::new()));
        let mut deeper = false;
        for seg in segs {
            deeper = true;
            if let Node::Leaf(_) = node {
                // A value and a deeper path under it: the deeper path wins.
                *node = Node::Branch(HashMap::new());
            }
            let Node::Branch(children) = node else { unreachable!("made a branch above") };
            node = children.entry(seg).or_insert_with(|| Node::Branch(HashMap::new()));
        }
        if !deeper || matches!(node, Node::Branch(c) if c.is_empty()) {
            *node = Node::Leaf(value);
        }
    }
    roots.into_iter().map(|(k, n)| (k, to_val(n))).collect()
}

fn to_val(node: Node) -> Box<dyn Val> {
    match node {
        Node::Leaf(v) => fact_to_val(v),
        Node::Branch(children) => {
            let map: HashMap<CelMapKey, Box<dyn Val>> = children.into_iter().map(|(k, n)| (CelMapKey::from(k), to_val(n))).collect();
            Box::new(CelMap::from(map))
        }
    }
}

/// One fact value as a CEL runtime value.
fn fact_to_val(v: &FactValue) -> Box<dyn Val> {
    match v {
        FactValue::Null => Box::new(CelNull),
        FactValue::Bool(b) => Box::new(CelBool::from(*b)),
        FactValue::Int(i) => Box::new(CelInt::from(*i)),
        FactValue::Float(f) => Box::new(CelDouble::from(*f)),
        FactValue::Str(s) => Box::new(CelString::from(s.clone())),
        FactValue::List(l) => {
            Box::new(CelList::from(l.iter().map(|s| Box::new(CelString::from(s.clone())) as Box<dyn Val>).collect::<Vec<_>>()))
        }
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
    /// removed in `facts` (which already holds the new state).
    pub fn update(&mut self, facts: &FactMap, changed: &[FactPath]) {
        let mut touched: Vec<&str> = changed.iter().map(|p| p.segments()[0].as_str()).collect();
        touched.sort_unstable();
        touched.dedup();
        for root in touched {
            match to_cel_variables(under(facts, root)).into_iter().next().map(|(_, v)| v) {
                Some(v) => self.vals.insert(root.to_string(), v),
                None => self.vals.remove(root),
            };
        }
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
