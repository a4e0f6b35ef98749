//! An asset's current facts, and their shape as CEL variables.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

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
    let mut out: Vec<(String, FactValue)> = facts
        .range(p.clone()..)
        .take_while(|(k, _)| k.starts_with(&p))
        .filter(|(k, _)| k.len() == p.len() || matches!(k.as_bytes()[p.len()], b'.' | b'['))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if out.is_empty() {
        out.push((p, FactValue::Null));
    }
    out
}
