//! The layer order of the two crates, held: ARCHITECTURE.md declares it
//! once (the ```` ```layers ```` block: for each crate, its top-level
//! modules layer by layer, top first), and this test reads every source
//! file's paths (`use` trees, paths in code and in macro arguments; not
//! comments) and fails on any that points up, on a module the order does
//! not place, and on a cycle between modules of one layer.
//!
//! Paths are resolved as rustc does for the forms the crates use:
//! `crate::m::…` and the library's own name from its binary
//! (`driftwatch_collector::m::…`) are absolute; `super::…` and `self::…`
//! are relative to the file's module and the inline modules around the
//! path (`mod tests { use super::*; }`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

/// One crate's declared order: layers, top first, and which are pure.
#[derive(Debug)]
struct Order {
    layers: Vec<Vec<String>>,
    pure: Vec<bool>,
}

impl Order {
    fn layer_of(&self, module: &str) -> Option<usize> {
        self.layers.iter().position(|l| l.iter().any(|m| m == module))
    }
}

/// Reads the ```` ```layers ```` block of ARCHITECTURE.md: a line
/// `crate:` (at the margin) starts a crate; each indented line after it is
/// one layer, its modules separated by spaces, `pure:` first for a pure
/// layer; `#` starts a comment.
fn declared(text: &str) -> Result<BTreeMap<String, Order>, String> {
    let start = text.find("```layers\n").ok_or("ARCHITECTURE.md has no ```layers block")?;
    let body = &text[start + "```layers\n".len()..];
    let body = &body[..body.find("```").ok_or("the ```layers block is not closed")?];
    let mut out: BTreeMap<String, Order> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (i, raw) in body.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or_default();
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            let name = line.trim().strip_suffix(':').ok_or_else(|| format!("layers block line {}: expected `crate:`", i + 1))?;
            current = Some(name.to_string());
            out.insert(name.to_string(), Order { layers: Vec::new(), pure: Vec::new() });
            continue;
        }
        let krate = current.as_ref().ok_or_else(|| format!("layers block line {}: a layer before any `crate:`", i + 1))?;
        let (pure, line) = match line.trim().strip_prefix("pure:") {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let modules = line.split_whitespace().map(String::from).collect();
        let order = out.get_mut(krate).expect("inserted above");
        order.layers.push(modules);
        order.pure.push(pure);
    }
    Ok(out)
}

/// One path a file uses: the top-level module it reaches and where.
#[derive(Debug)]
struct Use {
    target: String,
    path: String,
    line: usize,
}

/// Collects the top-level modules a file's paths reach.
struct Paths<'a> {
    /// The library's name as the binary spells it (`driftwatch_collector`).
    lib: &'a str,
    /// The module the file is (`["tasks", "alerting"]`), then the inline
    /// modules the visitor is in.
    module: Vec<String>,
    text: &'a str,
    found: Vec<Use>,
    /// What a pure module must not do, where: `async`, `.await`, a store
    /// handle.
    impure: Vec<(String, usize)>,
}

impl Paths<'_> {
    /// The absolute module path `segments` names, seen from `self.module`;
    /// `None` for a path that leaves the crate (std, other crates) or that
    /// starts with a local name.
    fn resolve(&self, segments: &[String]) -> Option<Vec<String>> {
        let first = segments.first()?;
        if first == "crate" || first == self.lib {
            return Some(segments[1..].to_vec());
        }
        if first != "super" && first != "self" {
            return None;
        }
        let mut at = self.module.clone();
        let mut rest = segments;
        while let Some(s) = rest.first() {
            match s.as_str() {
                "super" => {
                    at.pop()?;
                }
                "self" => {}
                _ => break,
            }
            rest = &rest[1..];
        }
        at.extend(rest.iter().cloned());
        Some(at)
    }

    fn note(&mut self, segments: &[String]) {
        if segments.iter().any(|s| s == "SharedStore" || s == "prelude")
            && self.resolve(segments).is_some_and(|a| a.first().is_some_and(|m| m == "store"))
        {
            let what = segments.join("::");
            let line = self.line_of(segments.last().map_or("", String::as_str)).unwrap_or(0);
            self.impure.push((format!("a store handle ({what})"), line));
        }
        let Some(abs) = self.resolve(segments) else { return };
        let Some(target) = abs.first() else { return };
        if target == "*" {
            return;
        }
        let path = segments.join("::");
        // The whole path, else its last two segments (a `use` group splits
        // the rest off), else its last one.
        let tail = segments[segments.len().saturating_sub(2)..].join("::");
        let line = [path.as_str(), tail.as_str(), segments[segments.len() - 1].as_str()].iter().find_map(|w| self.line_of(w)).unwrap_or(0);
        self.found.push(Use { target: target.clone(), path, line });
    }

    /// The first line of the file where `text` appears as whole words
    /// outside a comment: where to look (syn's spans carry no lines without
    /// a feature that would rebuild every proc macro).
    fn line_of(&self, text: &str) -> Option<usize> {
        let word = |c: char| c.is_alphanumeric() || c == '_';
        self.text
            .lines()
            .position(|l| {
                let code = l.split("//").next().unwrap_or_default();
                code.match_indices(text).any(|(i, _)| {
                    code[..i].chars().next_back().is_none_or(|c| !word(c)) && code[i + text.len()..].chars().next().is_none_or(|c| !word(c))
                })
            })
            .map(|i| i + 1)
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                self.note(&prefix.clone());
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.note(&prefix.clone());
                prefix.pop();
            }
            syn::UseTree::Glob(_) => {
                prefix.push("*".into());
                self.note(&prefix.clone());
                prefix.pop();
            }
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Paths<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        self.module.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.module.pop();
    }

    fn visit_signature(&mut self, s: &'ast syn::Signature) {
        if s.asyncness.is_some() {
            let line = self.line_of(&s.ident.to_string()).unwrap_or(0);
            self.impure.push((format!("async fn {}", s.ident), line));
        }
        syn::visit::visit_signature(self, s);
    }

    fn visit_expr_await(&mut self, e: &'ast syn::ExprAwait) {
        let line = self.line_of(".await").unwrap_or(0);
        self.impure.push((".await".into(), line));
        syn::visit::visit_expr_await(self, e);
    }

    fn visit_expr_async(&mut self, e: &'ast syn::ExprAsync) {
        let line = self.line_of("async").unwrap_or(0);
        self.impure.push(("an async block".into(), line));
        syn::visit::visit_expr_async(self, e);
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &u.tree);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        self.note(&segments);
        syn::visit::visit_path(self, p);
    }

    /// A macro's arguments are tokens, not parsed paths: `crate :: m`,
    /// `super :: m` and `lib :: m` sequences in them count too.
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        syn::visit::visit_macro(self, m);
        let mut tokens = Vec::new();
        flatten(m.tokens.clone(), &mut tokens);
        let mut i = 0;
        while i < tokens.len() {
            let mut segments = Vec::new();
            let mut j = i;
            while let Some(proc_macro2::TokenTree::Ident(id)) = tokens.get(j) {
                segments.push(id.to_string());
                let colons = matches!((tokens.get(j + 1), tokens.get(j + 2)),
                    (Some(proc_macro2::TokenTree::Punct(a)), Some(proc_macro2::TokenTree::Punct(b))) if a.as_char() == ':' && b.as_char() == ':');
                if !colons {
                    break;
                }
                j += 3;
            }
            if segments.len() > 1 {
                self.note(&segments);
            }
            i = j.max(i) + 1;
        }
    }
}

/// A token stream with its groups opened, in order.
fn flatten(ts: proc_macro2::TokenStream, out: &mut Vec<proc_macro2::TokenTree>) {
    for t in ts {
        match t {
            proc_macro2::TokenTree::Group(g) => flatten(g.stream(), out),
            t => out.push(t),
        }
    }
}

/// The module a source file is, under `src`: `tasks/alerting.rs` →
/// `[tasks, alerting]`, `tasks/mod.rs` → `[tasks]`, `main.rs` → `[]` with
/// the name `main` as its top-level module.
fn module_of(rel: &Path) -> (String, Vec<String>) {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let file = parts.pop().unwrap_or_default();
    let stem = file.trim_end_matches(".rs").to_string();
    if parts.is_empty() && (stem == "main" || stem == "lib") {
        return (stem, Vec::new());
    }
    if stem != "mod" {
        parts.push(stem);
    }
    (parts[0].clone(), parts)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every problem with one crate's layering, as messages naming the file.
fn check(krate: &str, order: &Order) -> Vec<String> {
    let src = root().join(krate).join("src");
    let lib = format!("driftwatch_{krate}");
    let mut problems = Vec::new();
    // Every top-level module is placed, once; every placed one exists.
    let mut present: BTreeSet<String> = BTreeSet::new();
    for e in std::fs::read_dir(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display())).flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let module = name.trim_end_matches(".rs").to_string();
        if e.path().is_dir() || (name.ends_with(".rs") && module != "lib") {
            present.insert(module);
        }
    }
    let placed: Vec<&String> = order.layers.iter().flatten().collect();
    for m in &present {
        match placed.iter().filter(|p| **p == m).count() {
            0 => problems.push(format!("{krate}/src/{m}: not placed in ARCHITECTURE.md's layer order")),
            1 => {}
            _ => problems.push(format!("{krate}: `{m}` is placed in more than one layer")),
        }
    }
    for p in &placed {
        if !present.contains(*p) {
            problems.push(format!("{krate}: the layer order places `{p}`, which is not a module of {krate}/src"));
        }
    }
    // Each file's uses against the order; edges within a layer kept for
    // the cycle check.
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut same_layer: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let (top, module) = module_of(rel);
        if top == "lib" {
            continue; // declares the modules, uses none
        }
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let ast = match syn::parse_file(&text) {
            Ok(a) => a,
            Err(e) => {
                problems.push(format!("{krate}/src/{}: does not parse: {e}", rel.display()));
                continue;
            }
        };
        let mut v = Paths { lib: &lib, module, text: &text, found: Vec::new(), impure: Vec::new() };
        v.visit_file(&ast);
        let Some(from) = order.layer_of(&top) else { continue };
        if order.pure[from] {
            for (what, line) in &v.impure {
                problems.push(format!("{krate}/src/{}:{line}: `{top}` is in a pure layer but has {what}", rel.display()));
            }
        }
        for u in v.found {
            if u.target == top || !present.contains(&u.target) {
                continue;
            }
            let Some(to) = order.layer_of(&u.target) else { continue };
            if to < from {
                problems.push(format!(
                    "{krate}/src/{}:{}: `{}` uses `{}` ({}), which is above it in ARCHITECTURE.md's layer order",
                    rel.display(),
                    u.line,
                    top,
                    u.target,
                    u.path
                ));
            } else if to == from {
                same_layer.entry(top.clone()).or_default().entry(u.target.clone()).or_insert(format!("{}:{}", rel.display(), u.line));
            }
        }
    }
    // No cycle between modules of one layer.
    for start in same_layer.keys() {
        let mut path = vec![start.clone()];
        if let Some(cycle) = cycle_from(start, &same_layer, &mut path) {
            let shown: Vec<String> = cycle.windows(2).map(|w| format!("{} → {} ({})", w[0], w[1], same_layer[&w[0]][&w[1]])).collect();
            let msg = format!("{krate}: modules of one layer use each other in a cycle: {}", shown.join(", "));
            if !problems.contains(&msg) {
                problems.push(msg);
            }
            break;
        }
    }
    problems
}

/// A path back to `path[0]` through `edges`, if there is one.
fn cycle_from(start: &str, edges: &BTreeMap<String, BTreeMap<String, String>>, path: &mut Vec<String>) -> Option<Vec<String>> {
    let last = path.last()?.clone();
    for next in edges.get(&last).map(|e| e.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
        if next == start {
            let mut cycle = path.clone();
            cycle.push(next);
            return Some(cycle);
        }
        if path.contains(&next) {
            continue;
        }
        path.push(next);
        if let Some(c) = cycle_from(start, edges, path) {
            return Some(c);
        }
        path.pop();
    }
    None
}

#[test]
fn each_crate_keeps_the_layer_order_architecture_md_declares() {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let orders = declared(&text).unwrap_or_else(|e| panic!("{e}"));
    let crates: Vec<&String> = orders.keys().collect();
    assert_eq!(crates, ["agent", "collector"], "ARCHITECTURE.md's layer order names both crates");
    let problems: Vec<String> = orders.iter().flat_map(|(k, o)| check(k, o)).collect();
    assert!(problems.is_empty(), "{} layering problem(s):\n  {}", problems.len(), problems.join("\n  "));
}

/// The checker itself: an upward use, a relative one, one in a macro, an
/// async fn and an await, and a cycle within a layer are each found.
#[test]
fn the_checker_finds_what_it_must() {
    let orders = declared("```layers\nx:\n  top\n  pure: mid other  # models\n  low\n```\n").unwrap();
    assert_eq!(orders["x"].layers, [vec!["top".to_string()], vec!["mid".into(), "other".into()], vec!["low".into()]]);
    assert_eq!(orders["x"].pure, [false, true, false]);
    let text = r#"
use crate::low::Row;
use super::top::Thing;
mod tests {
    use super::super::super::mid::X;
}
fn f() { tracing::info!("{}", crate::top::NAME); let _ = driftwatch_x::other::y(); }
async fn g(s: crate::low::SharedStore) { s.x().await; }
use crate::store::prelude::*;
"#;
    let ast = syn::parse_file(text).unwrap();
    let mut v = Paths { lib: "driftwatch_x", module: vec!["mid".into(), "inner".into()], text, found: Vec::new(), impure: Vec::new() };
    v.visit_file(&ast);
    let targets: Vec<&str> = v.found.iter().map(|u| u.target.as_str()).collect();
    assert_eq!(targets, ["low", "mid", "mid", "top", "other", "low", "store"]);
    assert_eq!(v.found[3].line, 7, "the macro's path is on line 7");
    let impure: Vec<&str> = v.impure.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(impure, ["async fn g", ".await", "a store handle (crate::store::prelude::*)"], "`low`'s SharedStore is not the store's");
    let edges: BTreeMap<String, BTreeMap<String, String>> = [
        ("mid".to_string(), BTreeMap::from([("other".to_string(), "a.rs:1".to_string())])),
        ("other".to_string(), BTreeMap::from([("mid".to_string(), "b.rs:2".to_string())])),
    ]
    .into();
    assert_eq!(cycle_from("mid", &edges, &mut vec!["mid".into()]), Some(vec!["mid".into(), "other".into(), "mid".into()]));
}
