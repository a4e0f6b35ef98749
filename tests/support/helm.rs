//! Renders the project's Helm chart the way `helm template` does, for the
//! subset of Go templates and Sprig functions the chart uses (no helm
//! binary can be installed here): `{{ .Values.a.b }}`, `.Release.*`,
//! `.Chart.*`, whitespace trimming (`{{-`, `-}}`), `if`/`else`/`end`,
//! `define`/`include`, and the functions `quote`, `toYaml`, `nindent`,
//! `indent`, `default`, `or`, `eq` and `required`. Anything else is an error, so a template
//! that uses more fails the test instead of rendering wrongly.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml::{Mapping, Value};

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Expr(String),
    If(String, Vec<Node>, Vec<Node>),
}

/// Splits a template into text and actions, applying the trim markers.
fn lex(src: &str) -> Result<Vec<(bool, String)>, String> {
    let mut out: Vec<(bool, String)> = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut text = rest[..open].to_string();
        if trim_next {
            text = text.trim_start().to_string();
        }
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| format!("unclosed action near {:?}", &rest[open..rest.len().min(open + 40)]))?;
        let mut inner = &after[..close];
        if let Some(i) = inner.strip_prefix('-') {
            text = text.trim_end().to_string();
            inner = i;
        }
        trim_next = false;
        if let Some(i) = inner.strip_suffix('-') {
            trim_next = true;
            inner = i;
        }
        out.push((false, text));
        let inner = inner.trim();
        if !(inner.starts_with("/*") && inner.ends_with("*/")) {
            out.push((true, inner.to_string()));
        }
        rest = &after[close + 2..];
    }
    let mut text = rest.to_string();
    if trim_next {
        text = text.trim_start().to_string();
    }
    out.push((false, text));
    Ok(out)
}

/// Parses actions into nodes until `end`/`else`; returns the terminator.
fn parse(
    toks: &mut std::vec::IntoIter<(bool, String)>,
    defines: &mut BTreeMap<String, Vec<Node>>,
) -> Result<(Vec<Node>, Option<String>), String> {
    let mut nodes = Vec::new();
    while let Some((action, s)) = toks.next() {
        if !action {
            nodes.push(Node::Text(s));
            continue;
        }
        if s == "end" || s == "else" {
            return Ok((nodes, Some(s)));
        }
        if let Some(cond) = s.strip_prefix("if ") {
            let (then, term) = parse(toks, defines)?;
            let otherwise = match term.as_deref() {
                Some("else") => match parse(toks, defines)? {
                    (n, Some(t)) if t == "end" => n,
                    _ => return Err(format!("if {cond}: else without end")),
                },
                Some("end") => Vec::new(),
                _ => return Err(format!("if {cond}: no end")),
            };
            nodes.push(Node::If(cond.trim().to_string(), then, otherwise));
        } else if let Some(name) = s.strip_prefix("define ") {
            let (body, term) = parse(toks, defines)?;
            if term.as_deref() != Some("end") {
                return Err(format!("define {name}: no end"));
            }
            defines.insert(name.trim().trim_matches('"').to_string(), body);
        } else if ["range", "with", "template", "block", "else if"].iter().any(|k| s.starts_with(k)) {
            return Err(format!("unsupported action {{{{ {s} }}}}"));
        } else {
            nodes.push(Node::Expr(s));
        }
    }
    Ok((nodes, None))
}

/// A chart: its templates parsed, with the named templates of every file.
pub struct Chart {
    files: BTreeMap<String, Vec<Node>>,
    defines: BTreeMap<String, Vec<Node>>,
    values: Value,
    chart: Value,
}

impl Chart {
    pub fn load(dir: &Path) -> Result<Chart, String> {
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
        let values: Value = serde_yaml::from_str(&read(&dir.join("values.yaml"))?).map_err(|e| format!("values.yaml: {e}"))?;
        let chart: Value = serde_yaml::from_str(&read(&dir.join("Chart.yaml"))?).map_err(|e| format!("Chart.yaml: {e}"))?;
        let mut files = BTreeMap::new();
        let mut defines = BTreeMap::new();
        let mut entries: Vec<_> =
            std::fs::read_dir(dir.join("templates")).map_err(|e| e.to_string())?.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let mut toks = lex(&read(&p)?).map_err(|e| format!("{name}: {e}"))?.into_iter();
            let (nodes, term) = parse(&mut toks, &mut defines).map_err(|e| format!("{name}: {e}"))?;
            if let Some(t) = term {
                return Err(format!("{name}: unexpected {{{{ {t} }}}}"));
            }
            files.insert(name, nodes);
        }
        Ok(Chart { files, defines, values, chart })
    }

    /// Renders every template (but helpers) with the values merged with
    /// `overrides`; returns file name → text.
    pub fn render(&self, release: &str, namespace: &str, overrides: &Value) -> Result<BTreeMap<String, String>, String> {
        let mut values = self.values.clone();
        merge(&mut values, overrides);
        let mut root = Mapping::new();
        root.insert("Values".into(), values);
        let mut rel = Mapping::new();
        rel.insert("Name".into(), release.into());
        rel.insert("Namespace".into(), namespace.into());
        rel.insert("Service".into(), "Helm".into());
        root.insert("Release".into(), Value::Mapping(rel));
        let mut chart = Mapping::new();
        for (k, v) in [("Name", "name"), ("Version", "version"), ("AppVersion", "appVersion")] {
            chart.insert(k.into(), self.chart[v].clone());
        }
        root.insert("Chart".into(), Value::Mapping(chart));
        let root = Value::Mapping(root);
        let mut out = BTreeMap::new();
        for (name, nodes) in &self.files {
            if !name.starts_with('_') {
                out.insert(name.clone(), self.nodes(nodes, &root).map_err(|e| format!("{name}: {e}"))?);
            }
        }
        Ok(out)
    }

    fn nodes(&self, nodes: &[Node], ctx: &Value) -> Result<String, String> {
        let mut s = String::new();
        for n in nodes {
            match n {
                Node::Text(t) => s.push_str(t),
                Node::Expr(e) => s.push_str(&text(&self.pipeline(e, ctx)?)),
                Node::If(cond, then, otherwise) => {
                    let branch = if truthy(&self.pipeline(cond, ctx)?) { then } else { otherwise };
                    s.push_str(&self.nodes(branch, ctx)?);
                }
            }
        }
        Ok(s)
    }

    fn pipeline(&self, expr: &str, ctx: &Value) -> Result<Value, String> {
        let mut value: Option<Value> = None;
        for stage in expr.split('|') {
            let words = words(stage.trim())?;
            let (f, args) = words.split_first().ok_or_else(|| format!("empty stage in {expr:?}"))?;
            let mut args: Vec<Value> = args.iter().map(|a| term(a, ctx)).collect::<Result<_, _>>()?;
            if let Some(v) = value.take() {
                args.push(v);
            }
            value = Some(if args.is_empty() && !is_function(f) { term(f, ctx)? } else { self.call(f, &args, expr)? });
        }
        value.ok_or_else(|| format!("empty expression {expr:?}"))
    }

    fn call(&self, f: &str, args: &[Value], expr: &str) -> Result<Value, String> {
        let arg = |i: usize| args.get(i).cloned().ok_or_else(|| format!("{f}: missing argument in {expr:?}"));
        let int = |v: Value| v.as_u64().map(|n| n as usize).ok_or_else(|| format!("{f}: not a number in {expr:?}"));
        Ok(match f {
            "include" => {
                let name = text(&arg(0)?);
                let body = self.defines.get(&name).ok_or_else(|| format!("include: no template {name:?}"))?;
                Value::String(self.nodes(body, &arg(1)?)?)
            }
            "quote" => Value::String(format!("{:?}", text(&arg(0)?))),
            "toYaml" => {
                let v = arg(0)?;
                Value::String(serde_yaml::to_string(&v).map_err(|e| e.to_string())?.trim_end().to_string())
            }
            "nindent" | "indent" => {
                let pad = " ".repeat(int(arg(0)?)?);
                let body = text(&arg(1)?).lines().map(|l| format!("{pad}{l}")).collect::<Vec<_>>().join("\n");
                Value::String(if f == "nindent" { format!("\n{body}") } else { body })
            }
            "default" => {
                let v = arg(1)?;
                if truthy(&v) {
                    v
                } else {
                    arg(0)?
                }
            }
            "or" => args.iter().find(|v| truthy(v)).or(args.last()).cloned().unwrap_or(Value::Null),
            "eq" => Value::Bool(text(&arg(0)?) == text(&arg(1)?)),
            // `required "message" value`: Helm stops with the message when empty.
            "required" => {
                let v = arg(1)?;
                if !truthy(&v) {
                    return Err(text(&arg(0)?));
                }
                v
            }
            other => return Err(format!("unsupported function {other:?} in {expr:?}")),
        })
    }
}

fn is_function(w: &str) -> bool {
    !(w.starts_with('.') || w.starts_with('"') || w.parse::<f64>().is_ok())
}

/// Splits a stage into words, keeping quoted strings whole.
fn words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            let mut w = String::from(chars.next().unwrap());
            loop {
                match chars.next() {
                    Some('"') => {
                        w.push('"');
                        break;
                    }
                    Some(c) => w.push(c),
                    None => return Err(format!("unterminated string in {s:?}")),
                }
            }
            out.push(w);
        } else {
            let mut w = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                w.push(c);
                chars.next();
            }
            out.push(w);
        }
    }
    Ok(out)
}

fn term(w: &str, ctx: &Value) -> Result<Value, String> {
    if w == "." {
        return Ok(ctx.clone());
    }
    if let Some(path) = w.strip_prefix('.') {
        return Ok(path.split('.').try_fold(ctx, |v, k| v.get(k)).cloned().unwrap_or(Value::Null));
    }
    if let Some(s) = w.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        return Ok(Value::String(s.to_string()));
    }
    serde_yaml::from_str::<Value>(w).ok().filter(|v| v.is_number()).ok_or_else(|| format!("unsupported term {w:?}"))
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::Sequence(s) => !s.is_empty(),
        Value::Mapping(m) => !m.is_empty(),
        Value::Tagged(_) => true,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => serde_yaml::to_string(other).unwrap_or_default().trim_end().to_string(),
    }
}

/// Deep-merges `over` into `base` (maps merge, anything else replaces).
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(tpl: &str, values: &str) -> Result<String, String> {
        let mut defines = BTreeMap::new();
        let (nodes, _) = parse(&mut lex(tpl)?.into_iter(), &mut defines)?;
        let chart = Chart { files: BTreeMap::new(), defines, values: Value::Null, chart: Value::Null };
        let mut root = Mapping::new();
        root.insert("Values".into(), serde_yaml::from_str(values).unwrap());
        chart.nodes(&nodes, &Value::Mapping(root))
    }

    #[test]
    fn the_subset_renders_as_helm_does() {
        assert_eq!(render("a: {{ .Values.x | quote }}", "x: hi").unwrap(), "a: \"hi\"");
        assert_eq!(render("l:\n  {{- toYaml .Values.m | nindent 2 }}\n", "m: {k: v}").unwrap(), "l:\n  k: v\n");
        assert_eq!(render("{{- if .Values.on }}yes{{- else }}no{{- end }}", "on: false").unwrap(), "no");
        assert_eq!(render("{{ or .Values.a .Values.b }}", "{a: '', b: x}").unwrap(), "x");
        assert_eq!(render("{{- if eq .Values.a \"sasl\" }}yes{{- end }}", "a: sasl").unwrap(), "yes");
        assert_eq!(render("{{ required \"x is required\" .Values.x }}", "x: 1").unwrap(), "1");
        assert_eq!(render("{{ required \"x is required\" .Values.x }}", "{}").unwrap_err(), "x is required");
        assert_eq!(render("{{- define \"t\" -}}v={{ .Values.x }}{{- end }}[{{ include \"t\" . }}]", "x: 1").unwrap(), "[v=1]");
        assert!(render("{{ range .Values.l }}{{ end }}", "l: []").unwrap_err().contains("unsupported"));
        assert!(render("{{ .Values.x | upper }}", "x: a").unwrap_err().contains("upper"));
    }
}
