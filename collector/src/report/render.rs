//! A report as JSON, CSV (one row per requirement and check), a
//! self-contained HTML page (inline style, no external assets) or a PDF
//! (written with `pdf-writer`, base-14 fonts: nothing to embed, no browser).

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::Report;
use crate::score::RequirementStatus;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Csv,
    Html,
    Pdf,
    /// NIST OSCAL assessment results ([`super::oscal`]).
    Oscal,
}

impl Format {
    /// The file name extension of a report in this format.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Html => "html",
            Format::Pdf => "pdf",
            Format::Oscal => "oscal.json",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json | Format::Oscal => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Html => "text/html; charset=utf-8",
            Format::Pdf => "application/pdf",
        }
    }
}

/// The report in `format`.
pub fn render(r: &Report, format: Format) -> Vec<u8> {
    match format {
        Format::Json => serde_json::to_vec_pretty(r).unwrap_or_default(),
        Format::Csv => csv(r),
        Format::Html => html(r).into_bytes(),
        Format::Pdf => pdf(&lines(r)),
        Format::Oscal => serde_json::to_vec_pretty(&super::oscal::render(r)).unwrap_or_default(),
    }
}

fn day(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:.1}%", v * 100.0)).unwrap_or_else(|| "n/a".into())
}

fn status(s: Option<RequirementStatus>) -> &'static str {
    match s {
        Some(RequirementStatus::Pass) => "pass",
        Some(RequirementStatus::Waived) => "waived",
        Some(RequirementStatus::Partial) => "partial",
        Some(RequirementStatus::Fail) => "fail",
        None => "not assessed",
    }
}

/// A gap's tracking in a cell: its state, whether it failed again after
/// being recorded resolved, and who it is assigned to.
fn tracking_cell(g: &crate::score::Gap) -> String {
    let state = g.state.as_str().replace('_', " ");
    let state = if g.reopened { format!("{state} (reopened)") } else { state };
    match &g.assignee {
        Some(a) => format!("{state}, {a}"),
        None => state,
    }
}

/// The summary's first line: how much of the framework the report covers.
/// Below full coverage it says so, and that the score is over the
/// assessed requirements only; it never calls the framework compliant.
pub(crate) fn coverage_line(r: &Report) -> String {
    let s = &r.summary;
    let kinds = |with: usize| {
        let attested = s.attested.unwrap_or_default();
        format!("{} automated, {attested} attested only", with.saturating_sub(attested))
    };
    match (s.coverage, s.not_assessed, s.catalog_requirements) {
        (Some(c), Some(0), Some(total)) => {
            format!("Coverage {c:.1}%: all {total} requirements of {} have evidence ({}).", r.framework_name, kinds(total))
        }
        (Some(c), Some(n), Some(total)) => format!(
            "Coverage {c:.1}%: {} of the {total} requirements of {} have evidence ({}); {n} are not assessed, and the score below is over the assessed requirements only.",
            total - n,
            r.framework_name,
            kinds(total - n)
        ),
        _ => format!(
            "Coverage unknown: Driftwatch has no catalog of {}; the score is over the {} requirements its checks map to.",
            r.framework_name, s.requirements
        ),
    }
}

fn results(c: &super::Check) -> String {
    c.results.iter().map(|(s, n)| format!("{} {n}", s.as_str())).collect::<Vec<_>>().join(", ")
}

/// Ids of the report's waivers that cover a requirement or one of its checks.
fn waivers_for(r: &Report, req: &str, control: Option<&str>) -> Vec<String> {
    r.waivers
        .iter()
        .filter(|w| w.requirement() == Some((r.framework.as_str(), req)) || (control.is_some() && w.spec.control.as_deref() == control))
        .map(|w| w.spec.id.clone())
        .collect()
}

/// A CSV cell that a spreadsheet will not run: text starting with `=`,
/// `+`, `-`, `@`, a tab or a carriage return (a formula, to Excel and
/// LibreOffice) is prefixed with `'` (OWASP's advice). Asset ids come from
/// hosts; `=HYPERLINK(...)` must stay text.
fn cell(s: &str) -> std::borrow::Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}").into()
    } else {
        s.into()
    }
}

fn csv(r: &Report) -> Vec<u8> {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "framework",
        "requirement",
        "requirement_status",
        "effectiveness",
        "control_id",
        "title",
        "severity",
        "results",
        "not_passing_assets",
        "oldest_evidence",
        "waivers",
    ]);
    for q in &r.requirements {
        if q.checks.is_empty() {
            let row = [r.framework.clone(), q.id.clone(), status(q.status).to_string()];
            let _ = w.write_record(row.iter().map(|v| cell(v).into_owned()).chain(std::iter::repeat_n(String::new(), 8)));
        }
        for c in &q.checks {
            let row = [
                r.framework.clone(),
                q.id.clone(),
                status(q.status).to_string(),
                q.effectiveness.map(|e| format!("{e:.4}")).unwrap_or_default(),
                c.control_id.clone(),
                c.title.clone(),
                c.severity.as_str().to_string(),
                results(c),
                c.not_passing.join(" "),
                c.oldest_evidence.map(|t| t.to_rfc3339()).unwrap_or_default(),
                waivers_for(r, &q.id, Some(&c.control_id)).join(" "),
            ];
            let _ = w.write_record(row.iter().map(|v| cell(v).into_owned()));
        }
    }
    w.into_inner().unwrap_or_default()
}

/// A requirement's id, and its title from the catalog beneath.
fn requirement_cell(q: &super::Requirement) -> String {
    match &q.title {
        Some(t) => format!("{}<br><span class=\"muted\">{}</span>", esc(&q.id), esc(t)),
        None => esc(&q.id),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn html(r: &Report) -> String {
    let s = &r.summary;
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{name} compliance report</title><style>
body{{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;color:#1d2330}}
h1{{font-size:1.6em;margin-bottom:.2em}} h2{{margin-top:1.6em;border-bottom:1px solid #ccd}}
table{{border-collapse:collapse;width:100%}} td,th{{border:1px solid #dde;padding:.3em .5em;text-align:left;vertical-align:top}}
th{{background:#f3f4f8}} .pass{{color:#137333}} .fail{{color:#b3261e}} .partial{{color:#a15c00}} .waived{{color:#5b4dbb}}
.muted{{color:#667}} .num{{font-size:2em;font-weight:600}}
</style></head><body>
<h1>{name} compliance report</h1>
<p class="muted">Period {from} – {to} · generated {gen} · Driftwatch</p>
<h2>Executive summary</h2>
<p class="coverage">{coverage}</p>
<table><tr><th>Score</th><th>Without waivers</th><th>At the start</th><th>Trend</th><th>Operating effectiveness</th></tr>
<tr><td class="num">{score:.1}</td><td>{without:.1}</td><td>{start}</td><td>{trend}</td><td>{eff}</td></tr></table>
<p>{reqs} requirements with results: {pass} met, {waived} met by waivers, {partial} partially met, {fail} not met.
{assets} assets; {unknown} results with missing evidence; oldest evidence {oldest}.</p>
"#,
        name = esc(&r.framework_name),
        coverage = esc(&coverage_line(r)),
        from = day(&r.from),
        to = day(&r.to),
        gen = day(&r.generated_at),
        score = s.score,
        without = s.score_without_waivers,
        start = s.score_at_start.map(|v| format!("{v:.1}")).unwrap_or_else(|| "n/a".into()),
        trend = s.trend.map(|v| format!("{v:+.1}")).unwrap_or_else(|| "n/a".into()),
        eff = pct(s.effectiveness),
        reqs = s.requirements,
        pass = s.passing,
        waived = s.waived,
        partial = s.partial,
        fail = s.failing,
        assets = s.assets,
        unknown = s.unknown_results,
        oldest = s.oldest_evidence.map(|t| day(&t)).unwrap_or_else(|| "n/a".into()),
    );
    h.push_str("<h2>Requirements</h2><table><tr><th>Requirement</th><th>Status</th><th>Effectiveness</th><th>Check</th><th>Results</th><th>Not passing on</th><th>Oldest evidence</th><th>Waivers</th></tr>\n");
    for q in &r.requirements {
        let n = q.checks.len().max(1);
        if q.checks.is_empty() {
            let _ = writeln!(
                h,
                r#"<tr><td>{}</td><td class="muted">{}</td><td>{}</td><td colspan="5" class="muted">No automated check maps to it.</td></tr>"#,
                requirement_cell(q),
                status(q.status),
                pct(q.effectiveness)
            );
        }
        for (i, c) in q.checks.iter().enumerate() {
            h.push_str("<tr>");
            if i == 0 {
                let st = status(q.status);
                let _ = write!(
                    h,
                    r#"<td rowspan="{n}">{}</td><td rowspan="{n}" class="{}">{st}</td><td rowspan="{n}">{}</td>"#,
                    requirement_cell(q),
                    st.split(' ').next().unwrap_or(st),
                    pct(q.effectiveness)
                );
            }
            let _ = writeln!(
                h,
                "<td><b>{}</b><br><span class=\"muted\">{} · {}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.title),
                esc(&c.control_id),
                c.severity.as_str(),
                esc(&results(c)),
                esc(&c.not_passing.join(", ")),
                c.oldest_evidence.map(|t| day(&t)).unwrap_or_default(),
                esc(&waivers_for(r, &q.id, Some(&c.control_id)).join(", "))
            );
        }
    }
    h.push_str("</table>\n<h2>Gaps</h2>");
    if r.gaps.is_empty() {
        h.push_str("<p>None.</p>");
    } else {
        h.push_str("<table><tr><th>Requirement</th><th>Status</th><th>Severity</th><th>Controls</th><th>Assets</th><th>Owners</th><th>First seen</th><th>Due</th><th>Tracking</th></tr>\n");
        for g in &r.gaps {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td></tr>",
                esc(&g.requirement),
                status(Some(g.status)),
                g.severity.as_str(),
                esc(&g.failing_controls.join(", ")),
                g.failing_assets,
                esc(&g.owners.join(", ")),
                day(&g.first_seen),
                day(&g.due),
                if g.overdue { " <b class=\"fail\">overdue</b>" } else { "" },
                esc(&tracking_cell(g))
            );
        }
        h.push_str("</table>");
    }
    h.push_str("\n<h2>Remediation plan</h2>");
    if r.remediation_plan.is_empty() {
        h.push_str("<p>Nothing to remediate.</p>");
    } else {
        h.push_str("<p class=\"muted\">Each control that does not pass, soonest due and most severe first.</p>");
        h.push_str("<table><tr><th>Due</th><th>Control</th><th>What to do</th><th>Why</th><th>Requirements</th><th>Assets</th></tr>\n");
        for p in &r.remediation_plan {
            let _ = writeln!(
                h,
                "<tr><td>{}{}</td><td><b>{}</b><br><span class=\"muted\">{} · {}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                day(&p.due),
                if p.overdue { " <b class=\"fail\">overdue</b>" } else { "" },
                esc(&p.fix.title),
                esc(&p.fix.control_id),
                p.fix.severity.as_str(),
                esc(&p.fix.remediation),
                esc(&p.fix.rationale),
                esc(&p.requirements.join(", ")),
                esc(&p.assets.join(", "))
            );
        }
        h.push_str("</table>");
    }
    h.push_str("\n<h2>Waivers in force during the period</h2>");
    if r.waivers.is_empty() {
        h.push_str("<p>None.</p>");
    } else {
        h.push_str("<table><tr><th>Waiver</th><th>Exempts</th><th>Scope</th><th>Justification</th><th>Approver</th><th>Risk</th><th>Ticket</th><th>In force</th></tr>\n");
        for w in &r.waivers {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} – {}{}</td></tr>",
                esc(&w.spec.id),
                esc(w.target()),
                esc(&serde_json::to_string(&w.spec.scope).unwrap_or_default()),
                esc(&w.spec.justification),
                esc(&w.spec.approver),
                w.spec.risk.as_str(),
                esc(&w.spec.ticket),
                w.spec.starts.map(|t| day(&t)).unwrap_or_else(|| "…".into()),
                day(&w.spec.expires),
                w.revoked_at.map(|t| format!(" (revoked {} by {})", day(&t), esc(&w.revoked_by))).unwrap_or_default()
            );
        }
        h.push_str("</table>");
    }
    h.push_str("\n<h2>Evidence chain</h2>");
    if r.evidence.is_empty() {
        h.push_str("<p>No batches were stored in the period.</p>");
    } else {
        h.push_str("<p class=\"muted\">Every stored batch is chained (SHA-256); <code>driftwatch-collector verify</code> recomputes the chain and names any batch altered, inserted or deleted.</p>");
        h.push_str("<table><tr><th>Chain</th><th>Links</th><th>Sequence</th><th>Head (last link's hash)</th></tr>\n");
        for c in &r.evidence {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}–{}</td><td><code>{}</code></td></tr>",
                esc(&c.chain_id),
                c.links,
                c.first_seq,
                c.last_seq,
                esc(&c.head)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("\n</body></html>\n");
    h
}

/// The report as lines of text for the PDF: (indent level, bold, text).
fn lines(r: &Report) -> Vec<(u8, bool, String)> {
    let s = &r.summary;
    let mut l = vec![
        (0, true, format!("{} compliance report", r.framework_name)),
        (0, false, format!("Period {} - {}; generated {}", day(&r.from), day(&r.to), day(&r.generated_at))),
        (0, false, String::new()),
        (0, true, "Executive summary".into()),
        (1, true, coverage_line(r)),
        (
            1,
            false,
            format!(
                "Score {:.1} (without waivers {:.1}); at the start {}; trend {}",
                s.score,
                s.score_without_waivers,
                s.score_at_start.map(|v| format!("{v:.1}")).unwrap_or_else(|| "n/a".into()),
                s.trend.map(|v| format!("{v:+.1}")).unwrap_or_else(|| "n/a".into())
            ),
        ),
        (
            1,
            false,
            format!(
                "{} requirements: {} met, {} met by waivers, {} partial, {} not met; operating effectiveness {}",
                s.requirements,
                s.passing,
                s.waived,
                s.partial,
                s.failing,
                pct(s.effectiveness)
            ),
        ),
        (
            1,
            false,
            format!(
                "{} assets; {} results with missing evidence; oldest evidence {}",
                s.assets,
                s.unknown_results,
                s.oldest_evidence.map(|t| day(&t)).unwrap_or_else(|| "n/a".into())
            ),
        ),
        (0, false, String::new()),
        (0, true, "Requirements".into()),
    ];
    for q in &r.requirements {
        let title = q.title.as_deref().map(|t| format!(" {t}")).unwrap_or_default();
        l.push((1, true, format!("{}{title}  {}  (effectiveness {})", q.id, status(q.status), pct(q.effectiveness))));
        for c in &q.checks {
            let not = if c.not_passing.is_empty() { String::new() } else { format!("; not passing on {}", c.not_passing.join(", ")) };
            l.push((2, false, format!("{} [{}, {}]: {}{not}", c.title, c.control_id, c.severity.as_str(), results(c))));
        }
    }
    l.push((0, false, String::new()));
    l.push((0, true, "Gaps".into()));
    if r.gaps.is_empty() {
        l.push((1, false, "None.".into()));
    }
    for g in &r.gaps {
        l.push((
            1,
            false,
            format!(
                "{} {} ({}): {} on {} assets; due {}{}; {}",
                g.requirement,
                status(Some(g.status)),
                g.severity.as_str(),
                g.failing_controls.join(", "),
                g.failing_assets,
                day(&g.due),
                if g.overdue { " OVERDUE" } else { "" },
                tracking_cell(g)
            ),
        ));
    }
    l.push((0, false, String::new()));
    l.push((0, true, "Remediation plan".into()));
    if r.remediation_plan.is_empty() {
        l.push((1, false, "Nothing to remediate.".into()));
    }
    for p in &r.remediation_plan {
        let f = &p.fix;
        let overdue = if p.overdue { " OVERDUE" } else { "" };
        l.push((1, true, format!("Due {}{overdue}: {} [{}, {}]", day(&p.due), f.title, f.control_id, f.severity.as_str())));
        l.push((2, false, format!("Fix: {}", f.remediation)));
        if !f.rationale.is_empty() {
            l.push((2, false, format!("Why: {}", f.rationale)));
        }
        l.push((2, false, format!("On {} ({}) for {}", p.assets.join(", "), p.assets.len(), p.requirements.join(", "))));
    }
    l.push((0, false, String::new()));
    l.push((0, true, "Waivers in force during the period".into()));
    if r.waivers.is_empty() {
        l.push((1, false, "None.".into()));
    }
    for w in &r.waivers {
        l.push((
            1,
            false,
            format!(
                "{}: exempts {} until {}; approved by {}; risk {}; {}",
                w.spec.id,
                w.target(),
                day(&w.spec.expires),
                w.spec.approver,
                w.spec.risk.as_str(),
                w.spec.ticket
            ),
        ));
        l.push((2, false, format!("Justification: {}", w.spec.justification)));
    }
    l.push((0, false, String::new()));
    l.push((0, true, "Evidence chain".into()));
    if r.evidence.is_empty() {
        l.push((1, false, "No batches were stored in the period.".into()));
    }
    for c in &r.evidence {
        l.push((1, false, format!("{}: {} links, {}-{}; head {}", c.chain_id, c.links, c.first_seq, c.last_seq, c.head)));
    }
    l
}

/// Text that base-14 fonts can show (WinAnsi ≈ Latin-1); anything else
/// becomes `?`.
fn latin1(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| match c {
            '–' | '—' => b'-',
            '…' => b'.',
            c if (c as u32) < 256 => c as u8,
            _ => b'?',
        })
        .collect()
}

/// Wraps a line at `width` characters (words kept whole when they fit).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for word in text.split(' ') {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    out.push(cur);
    out
}

fn pdf(lines: &[(u8, bool, String)]) -> Vec<u8> {
    use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str};
    // A4 in points; 9.5 pt text on 13 pt lines.
    let (w, h, margin, leading, size) = (595.0_f32, 842.0_f32, 50.0_f32, 13.0_f32, 9.5_f32);
    let per_page = ((h - 2.0 * margin) / leading) as usize;
    // Wrap, then cut into pages.
    let mut all: Vec<(u8, bool, String)> = Vec::new();
    for (indent, bold, text) in lines {
        let width = 100 - 4 * usize::from(*indent);
        for (i, part) in wrap(text, width).into_iter().enumerate() {
            all.push((indent + u8::from(i > 0), *bold, part));
        }
    }
    let pages: Vec<&[(u8, bool, String)]> = all.chunks(per_page.max(1)).collect();
    let mut pdf = Pdf::new();
    let (catalog, tree, regular, bold) = (Ref::new(1), Ref::new(2), Ref::new(3), Ref::new(4));
    let page_ids: Vec<Ref> = (0..pages.len()).map(|i| Ref::new(5 + 2 * i as i32)).collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree).kids(page_ids.iter().copied()).count(pages.len() as i32);
    pdf.type1_font(regular).base_font(Name(b"Helvetica")).encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold).base_font(Name(b"Helvetica-Bold")).encoding_predefined(Name(b"WinAnsiEncoding"));
    for (n, (lines, id)) in pages.iter().zip(&page_ids).enumerate() {
        let content_id = Ref::new(id.get() + 1);
        let mut page = pdf.page(*id);
        page.media_box(Rect::new(0.0, 0.0, w, h));
        page.parent(tree);
        page.contents(content_id);
        page.resources().fonts().pair(Name(b"F1"), regular).pair(Name(b"F2"), bold);
        page.finish();
        let mut c = Content::new();
        let mut y = h - margin;
        for (indent, b, text) in lines.iter() {
            c.begin_text();
            c.set_font(if *b { Name(b"F2") } else { Name(b"F1") }, if *b && *indent == 0 { size + 2.5 } else { size });
            c.next_line(margin + 14.0 * f32::from(*indent), y);
            c.show(Str(&latin1(text)));
            c.end_text();
            y -= leading;
        }
        c.begin_text();
        c.set_font(Name(b"F1"), 8.0);
        c.next_line(w - margin - 40.0, margin / 2.0);
        c.show(Str(&latin1(&format!("page {} of {}", n + 1, pages.len()))));
        c.end_text();
        pdf.stream(content_id, &c.finish());
    }
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_never_start_a_formula() {
        for (input, out) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+1", "'+1"),
            ("-2", "'-2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("web-1", "web-1"),
            ("0.5000", "0.5000"),
        ] {
            assert_eq!(cell(input), out);
        }
    }

    #[test]
    fn lines_wrap_at_words_and_text_maps_to_latin1() {
        assert_eq!(wrap("aa bb cc", 5), vec!["aa bb", "cc"]);
        assert_eq!(latin1("a–b é ✓"), b"a-b \xe9 ?".to_vec());
    }

    #[test]
    fn a_pdf_has_a_page_per_screenful_and_the_text() {
        let lines: Vec<(u8, bool, String)> = (0..150).map(|i| (0, false, format!("line {i}"))).collect();
        let out = pdf(&lines);
        assert!(out.starts_with(b"%PDF-"));
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text.matches("/Type /Page\n").count() + text.matches("/Type /Page ").count(), 3, "150 lines, 57 a page");
        assert!(text.contains("(line 149)"));
    }
}
