//! CEL: compiling checks, finding the fact paths a check reads, and the
//! functions Driftwatch adds to the standard library.

use std::collections::BTreeSet;
use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr, LiteralValue};
use cel::extractors::This;
use cel::{Context, ExecutionError, IdedExpr, Program};
use driftwatch_schemas::FactPath;

/// Compiles a check against Driftwatch's environment (the standard library
/// and the strings extension: `split`, `lowerAscii`, `trim`, …). The error
/// text is CEL's own, with positions; a constant `matches` pattern that is
/// not a regular expression is an error here, not at every evaluation.
pub fn compile(source: &str) -> Result<Program, String> {
    let program = STDLIB.compile(source).map_err(|e| e.to_string())?;
    check_patterns(program.expression())?;
    Ok(program)
}

/// How a check names a pack variable: `vars.<name>`.
pub const VARIABLES: &str = "vars";

/// `source` with each `vars.<name>` outside string literals replaced by
/// `(<expression>)` of the variable `name` in `vars`; an unknown name is
/// an error naming it and the names there are. Identifiers are matched
/// whole (`myvars.x`, `a.vars.x` and `"vars.x"` are left alone).
pub fn expand(source: &str, vars: &[(String, String)]) -> Result<String, String> {
    let bytes = source.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let prefix = format!("{VARIABLES}.");
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'"' || b == b'\'' {
            // A string literal: copied as it is, to its closing quote
            // (triple-quoted or not; escapes honoured unless raw).
            let raw = i > 0 && matches!(bytes[i - 1], b'r' | b'R');
            let triple = bytes[i..].starts_with(&[b, b, b]);
            let quote_len = if triple { 3 } else { 1 };
            let mut j = i + quote_len;
            while j < bytes.len() {
                if bytes[j] == b'\\' && !raw {
                    j += 2;
                    continue;
                }
                if bytes[j] == b && (!triple || bytes[j..].starts_with(&[b, b, b])) {
                    j += quote_len;
                    break;
                }
                j += 1;
            }
            let end = j.min(bytes.len());
            out.push_str(&source[i..end]);
            i = end;
            continue;
        }
        let boundary = i == 0 || !(ident(bytes[i - 1]) || bytes[i - 1] == b'.');
        if boundary && source[i..].starts_with(&prefix) {
            let start = i + prefix.len();
            let end = start + bytes[start..].iter().take_while(|b| ident(**b)).count();
            let name = &source[start..end];
            let Some((_, expr)) = vars.iter().find(|(n, _)| n == name) else {
                let known: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
                return Err(format!(
                    "unknown variable {VARIABLES}.{name} (the pack defines {})",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ));
            };
            out.push('(');
            out.push_str(expr);
            out.push(')');
            i = end;
            continue;
        }
        let ch = source[i..].chars().next().unwrap_or_default();
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    Ok(out)
}

/// Every constant pattern given to `matches` in `e` compiles.
fn check_patterns(e: &IdedExpr) -> Result<(), String> {
    if let Expr::Call(call) = &e.expr {
        if let (MATCHES, Some(Expr::Literal(LiteralValue::String(p)))) = (call.func_name.as_str(), call.args.last().map(|a| &a.expr)) {
            regex(p.inner()).map_err(|e| format!("matches: {:?} is not a valid regular expression: {e}", p.inner()))?;
        }
    }
    children(e).into_iter().try_for_each(check_patterns)
}

/// The fact paths `program` reads: every maximal chain of field selections
/// and constant-string indexes that starts at a free identifier, e.g.
/// `files["/etc/shadow"].mode`. Comprehension variables are not facts.
pub fn fact_paths(program: &Program) -> BTreeSet<FactPath> {
    let mut out = BTreeSet::new();
    walk(program.expression(), &mut Vec::new(), &mut out);
    out
}

fn walk(e: &IdedExpr, bound: &mut Vec<String>, out: &mut BTreeSet<FactPath>) {
    if let Some(path) = chain(e) {
        if !bound.contains(&path.segments()[0]) {
            out.insert(path);
        }
        return;
    }
    match &e.expr {
        Expr::Comprehension(c) => {
            walk(&c.iter_range, bound, out);
            walk(&c.accu_init, bound, out);
            let n = bound.len();
            bound.push(c.iter_var.clone());
            if let Some(v) = &c.iter_var2 {
                bound.push(v.clone());
            }
            bound.push(c.accu_var.clone());
            walk(&c.loop_cond, bound, out);
            walk(&c.loop_step, bound, out);
            walk(&c.result, bound, out);
            bound.truncate(n);
        }
        _ => children(e).into_iter().for_each(|x| walk(x, bound, out)),
    }
}

/// The string constants `program` holds (`"telnetd"` in
/// `p in ["telnetd", "rsh"]`): the items a long list's evidence keeps.
pub fn string_constants(program: &Program) -> BTreeSet<String> {
    fn visit(e: &IdedExpr, out: &mut BTreeSet<String>) {
        if let Expr::Literal(LiteralValue::String(s)) = &e.expr {
            out.insert(s.to_string());
        }
        children(e).into_iter().for_each(|x| visit(x, out));
    }
    let mut out = BTreeSet::new();
    visit(program.expression(), &mut out);
    out
}

/// The expressions directly under `e`.
fn children(e: &IdedExpr) -> Vec<&IdedExpr> {
    match &e.expr {
        Expr::Call(call) => call.target.as_deref().into_iter().chain(&call.args).collect(),
        Expr::Select(sel) => vec![&sel.operand],
        Expr::List(list) => list.elements.iter().collect(),
        Expr::Map(map) => map
            .entries
            .iter()
            .flat_map(|entry| match &entry.expr {
                EntryExpr::MapEntry(me) => vec![&me.key, &me.value],
                _ => Vec::new(),
            })
            .collect(),
        Expr::Struct(s) => s
            .entries
            .iter()
            .filter_map(|entry| match &entry.expr {
                EntryExpr::StructField(f) => Some(&f.value),
                _ => None,
            })
            .collect(),
        Expr::Comprehension(c) => vec![&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result],
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Vec::new(),
    }
}

/// `a.b["c"].d` as a path, if `e` is such a chain rooted at an identifier.
fn chain(e: &IdedExpr) -> Option<FactPath> {
    match &e.expr {
        Expr::Ident(name) => Some(FactPath::new([name.clone()])),
        // `has(a.b)` is a test-only select: it still reads `a.b`.
        Expr::Select(sel) => chain(&sel.operand).map(|p| p.child(sel.field.clone())),
        Expr::Call(call) if call.func_name == "_[_]" && call.args.len() == 2 => {
            let key = match &call.args[1].expr {
                Expr::Literal(LiteralValue::String(s)) => s.to_string(),
                _ => return None,
            };
            chain(&call.args[0]).map(|p| p.child(key))
        }
        _ => None,
    }
}

/// A constant a record's field is compared with.
#[derive(Debug, Clone, PartialEq)]
pub enum Constant {
    Str(String),
    Bool(bool),
}

/// A condition an expression cannot hold without: one of its top-level
/// `&&` terms that compares a field of the record variable with constants
/// (`event.action == "sudo"`, `event.action in ["su", "sudo"]`,
/// `probe.success`, `!probe.success`). When the field is absent or holds
/// none of `any_of`, that term is false (or an error, which a detection
/// counts as no match), so the whole expression cannot be true: the
/// record is skipped without running CEL.
#[derive(Debug, Clone, PartialEq)]
pub struct Guard {
    pub field: String,
    pub any_of: Vec<Constant>,
}

/// The [`Guard`]s of `program` on fields of the variable `root`.
pub fn guards(program: &Program, root: &str) -> Vec<Guard> {
    let mut out = Vec::new();
    conjuncts(program.expression(), root, &mut out);
    out
}

fn conjuncts(e: &IdedExpr, root: &str, out: &mut Vec<Guard>) {
    use cel::common::ast::operators::{EQUALS, IN, LOGICAL_AND, LOGICAL_NOT};
    let Expr::Call(call) = &e.expr else {
        out.extend(field_of(e, root).map(|field| Guard { field, any_of: vec![Constant::Bool(true)] }));
        return;
    };
    let constant = |e: &IdedExpr| match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => Some(Constant::Str(s.inner().to_string())),
        Expr::Literal(LiteralValue::Boolean(b)) => Some(Constant::Bool(*b.inner())),
        _ => None,
    };
    let guard = match (call.func_name.as_str(), call.args.as_slice()) {
        (LOGICAL_AND, [a, b]) => {
            conjuncts(a, root, out);
            conjuncts(b, root, out);
            return;
        }
        (LOGICAL_NOT, [a]) => field_of(a, root).map(|field| Guard { field, any_of: vec![Constant::Bool(false)] }),
        (EQUALS, [a, b]) => {
            let (field, c) = match (field_of(a, root), field_of(b, root)) {
                (Some(f), _) => (f, constant(b)),
                (_, Some(f)) => (f, constant(a)),
                _ => return,
            };
            c.map(|c| Guard { field, any_of: vec![c] })
        }
        (IN, [a, list]) => match (field_of(a, root), &list.expr) {
            (Some(field), Expr::List(l)) if l.optional_indices.is_empty() => {
                l.elements.iter().map(constant).collect::<Option<Vec<_>>>().map(|any_of| Guard { field, any_of })
            }
            _ => None,
        },
        _ => None,
    };
    out.extend(guard);
}

/// `f` if `e` is `root.f` (a plain select, not `has(root.f)`).
fn field_of(e: &IdedExpr, root: &str) -> Option<String> {
    match &e.expr {
        Expr::Select(sel) if !sel.test && matches!(&sel.operand.expr, Expr::Ident(r) if r == root) => Some(sel.field.clone()),
        _ => None,
    }
}

/// Whether an evaluation error means "the facts this check needs are not
/// there" (the control is then not applicable) rather than a broken check:
/// a missing map key, or an undeclared variable that is one of the fact
/// roots the check reads (`roots`) — an unknown function is an error.
pub fn is_missing_fact<'a>(e: &ExecutionError, mut roots: impl Iterator<Item = &'a str>) -> bool {
    match e {
        ExecutionError::NoSuchKey(_) => true,
        ExecutionError::UndeclaredReference(name) => roots.any(|r| r == name.as_str()),
        _ => false,
    }
}

/// CEL's standard environment, built once: building it is most of the
/// cost of an evaluation context.
static STDLIB: std::sync::LazyLock<Arc<cel::Env>> = std::sync::LazyLock::new(|| {
    let mut env = cel::Env::stdlib();
    // The strings extension ships with the crate; failing to add it is a
    // bug in this build, not a runtime condition.
    env.add_extension(cel::extensions::strings).expect("CEL strings extension");
    Arc::new(env)
});

/// A root context with Driftwatch's functions, to which each evaluation adds
/// the asset's facts (as its variable resolver, or in an inner scope).
pub fn root_context<'v>() -> Context<'static, 'v> {
    let mut ctx = Context::with_env(STDLIB.clone());
    // Names are Driftwatch's own; none clashes with the standard library
    // (built without its `matches`).
    let _ = ctx.add_function("mode_within", mode_within);
    let _ = ctx.add_function(MATCHES, matches);
    ctx
}

const MATCHES: &str = "matches";

/// `s.matches(re)` or `matches(s, re)`: whether `re` (RE2 syntax, as CEL
/// has it) matches anywhere in `s`. As the standard library's, but each
/// pattern is compiled once: a cipher check runs it on every item of a
/// list, a detection on every record.
fn matches(This(this): This<Arc<String>>, pattern: Arc<String>) -> Result<bool, ExecutionError> {
    let re = regex(&pattern)
        .map_err(|e| ExecutionError::function_error(MATCHES, format!("{pattern:?} is not a valid regular expression: {e}")))?;
    Ok(re.is_match(&this))
}

/// Patterns compiled so far on this thread (at most this many: a pattern
/// built from facts could be new every time).
const REGEX_CACHE_MAX: usize = 256;

thread_local! {
    static REGEXES: std::cell::RefCell<std::collections::HashMap<String, regex::Regex>> = Default::default();
}

/// `pattern` compiled, from this thread's cache when it was before.
fn regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    REGEXES.with_borrow_mut(|cache| {
        if let Some(re) = cache.get(pattern) {
            return Ok(re.clone());
        }
        let re = regex::Regex::new(pattern)?;
        if cache.len() >= REGEX_CACHE_MAX {
            cache.clear();
        }
        cache.insert(pattern.to_string(), re.clone());
        Ok(re)
    })
}

/// `mode_within(mode, max)`: whether an octal permission string such as
/// `"0640"` grants nothing beyond `max` (e.g. `"0644"`). The CIS wording
/// "permissions are 644 or more restrictive".
fn mode_within(mode: Arc<String>, max: Arc<String>) -> Result<bool, ExecutionError> {
    let parse = |s: &str| {
        u32::from_str_radix(s.trim(), 8).map_err(|_| ExecutionError::function_error("mode_within", format!("{s:?} is not an octal mode")))
    };
    let (m, x) = (parse(&mode)?, parse(&max)?);
    Ok(m & !x & 0o7777 == 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn variables_expand_outside_strings_only() {
        let vars = vec![("a".to_string(), "x.y == 1".to_string()), ("b_2".to_string(), "[1, 2]".to_string())];
        let e = |s: &str| super::expand(s, &vars);
        assert_eq!(e("vars.a && 1 in vars.b_2").unwrap(), "(x.y == 1) && 1 in ([1, 2])");
        assert_eq!(e(r#"'vars.a' + "vars.a" + """vars.a""" + r'vars.\a'"#).unwrap(), r#"'vars.a' + "vars.a" + """vars.a""" + r'vars.\a'"#);
        assert_eq!(e(r#"'it\'s vars.a' == vars.a"#).unwrap(), r#"'it\'s vars.a' == (x.y == 1)"#);
        assert_eq!(e("myvars.a || f.vars.a").unwrap(), "myvars.a || f.vars.a", "whole identifiers only");
        assert_eq!(e("vars.c").unwrap_err(), "unknown variable vars.c (the pack defines a, b_2)");
        assert_eq!(e("héllo == vars.a").unwrap(), "héllo == (x.y == 1)");
    }

    use super::*;

    fn paths(src: &str) -> Vec<String> {
        fact_paths(&compile(src).unwrap()).into_iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn guards_are_top_level_terms_on_the_record_fields() {
        let g = |src: &str, root: &str| guards(&compile(src).unwrap(), root);
        let s = |v: &str| Constant::Str(v.into());
        assert_eq!(
            g(r#"event.action in ["a", "b"] && has(event.object) && (event.outcome == "failure" && "x" == event.source)"#, "event"),
            vec![
                Guard { field: "action".into(), any_of: vec![s("a"), s("b")] },
                Guard { field: "outcome".into(), any_of: vec![s("failure")] },
                Guard { field: "source".into(), any_of: vec![s("x")] },
            ]
        );
        assert_eq!(
            g("!probe.success && probe.kind != \"host\"", "probe"),
            vec![Guard { field: "success".into(), any_of: vec![Constant::Bool(false)] }]
        );
        assert_eq!(g("probe.success && probe.latency_ms > 1000.0", "probe")[0].any_of, vec![Constant::Bool(true)]);
        // Nothing under an `||`, a negated comparison, a nested field, a
        // non-constant side, another variable, or a test-only select.
        for src in [
            r#"event.action == "a" || event.action == "b""#,
            r#"!(event.action == "a")"#,
            r#"event.actor.user == "root""#,
            r#"event.action == event.outcome"#,
            r#"other.action == "a""#,
            r#"has(event.action)"#,
            r#"event.action in ["a", event.outcome]"#,
        ] {
            assert_eq!(g(src, "event"), vec![], "{src}");
        }
    }

    #[test]
    fn string_constants_are_found_anywhere_in_the_check() {
        let p = compile(r#"!packages.installed.exists(p, p in ["telnetd", "rsh"]) && files["/etc/x"].mode == "0600""#).unwrap();
        let found: Vec<String> = string_constants(&p).into_iter().collect();
        assert_eq!(found, ["/etc/x", "0600", "rsh", "telnetd"]);
    }

    #[test]
    fn finds_select_and_index_chains() {
        assert_eq!(
            paths(r#"sshd.config.permitrootlogin == "no" && mode_within(files["/etc/shadow"].mode, "0640")"#),
            vec![r#"files["/etc/shadow"].mode"#, "sshd.config.permitrootlogin"]
        );
    }

    #[test]
    fn has_macro_and_comprehension_variables() {
        assert_eq!(paths("has(sshd.config.x) && sshd.allow_users.all(u, u != 'root')"), vec!["sshd.allow_users", "sshd.config.x"]);
    }

    #[test]
    fn dynamic_index_stops_the_chain() {
        assert_eq!(paths("files[x].mode == '0600'"), vec!["files", "x"]);
    }

    #[test]
    fn matches_as_a_method_or_a_function_and_bad_patterns_at_compile_time() {
        let ctx = root_context();
        let run = |s: &str| compile(s).unwrap().execute(&ctx);
        assert_eq!(run(r#""aes128-cbc".matches("cbc$")"#), Ok(cel::Value::Bool(true)));
        assert_eq!(run(r#"matches("aes128-ctr", "cbc$")"#), Ok(cel::Value::Bool(false)));
        assert_eq!(run(r#"["a1", "b2"].exists(x, x.matches("^b[0-9]"))"#), Ok(cel::Value::Bool(true)));
        let e = compile(r#"x.matches("(unclosed")"#).unwrap_err();
        assert!(e.contains("matches: \"(unclosed\" is not a valid regular expression"), "{e}");
        // A pattern only known when evaluated: an error then.
        let p = compile(r#""a".matches(x)"#).unwrap();
        let mut inner = ctx.new_inner_scope();
        inner.add_variable_from_value("x", "(");
        assert!(matches!(p.execute(&inner), Err(ExecutionError::FunctionError { .. })));
    }

    #[test]
    fn mode_within_compares_bits() {
        let ctx = root_context();
        let run = |s: &str| compile(s).unwrap().execute(&ctx);
        assert_eq!(run(r#"mode_within("0640", "0644")"#), Ok(cel::Value::Bool(true)));
        assert_eq!(run(r#"mode_within("0646", "0644")"#), Ok(cel::Value::Bool(false)));
        assert_eq!(run(r#"mode_within("4755", "0755")"#), Ok(cel::Value::Bool(false)));
        assert!(run(r#"mode_within("rw-", "0644")"#).is_err());
    }
}
