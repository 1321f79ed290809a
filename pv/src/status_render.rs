//! Renderings of a [`StatusReport`]: terminal table, JSON, Markdown, self-contained HTML (inline
//! SVG, no network, no external assets), and JUnit XML.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use pv_contract::ContractSet;
use pv_evidence::record::Outcome;

use crate::status::{fmt_age, fmt_num, FalsifierState, InvalidRecord, StageStatus, StatusReport};
use crate::status_math;

/// Plain-text table, one block per contract.
pub fn table(r: &StatusReport) -> String {
    let mut out = String::new();
    let headers = ["stage", "status", "passed", "age", "key metric"];
    for c in &r.contracts {
        let _ = writeln!(out, "{} {}", c.id, c.version);
        let rows: Vec<[String; 5]> = c
            .stages
            .iter()
            .map(|s| {
                let status = match &s.capped_by {
                    Some(by) => format!("{} (own {}, capped by {by})", s.status, s.own_status),
                    None => s.status.to_string(),
                };
                [
                    s.id.clone(),
                    status,
                    format!("{}/{}", s.passed, s.total),
                    s.age_s.map(fmt_age).unwrap_or_else(|| "-".into()),
                    s.key_metric.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        let mut w = headers.map(str::len);
        for row in &rows {
            for (i, cell) in row.iter().enumerate() {
                w[i] = w[i].max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut l = String::from("  ");
            for (i, cell) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    l.push_str(cell);
                } else {
                    let pad = w[i] - cell.chars().count();
                    l.push_str(cell);
                    l.push_str(&" ".repeat(pad + 2));
                }
            }
            l.trim_end().to_string()
        };
        let _ = writeln!(out, "{}", line(&headers.map(String::from)));
        for row in &rows {
            let _ = writeln!(out, "{}", line(row));
        }
        // Failing falsifiers, and known divergences beside them.
        for s in &c.stages {
            for fid in &s.falsifiers {
                let Some(f) = r.falsifiers.get(fid) else {
                    continue;
                };
                if f.state == FalsifierState::Failing {
                    let why = f
                        .latest()
                        .and_then(|run| run.reason.clone())
                        .unwrap_or_default();
                    let _ = writeln!(out, "    {fid} FAILING: {why}");
                    for d in &f.divergences {
                        let _ = writeln!(
                            out,
                            "      known divergence ({}): {}",
                            d.classification, d.scope
                        );
                    }
                }
            }
        }
        out.push('\n');
    }
    footer(r, &mut out);
    out
}

fn footer(r: &StatusReport, out: &mut String) {
    if !r.unbound.is_empty() {
        let _ = writeln!(
            out,
            "no bound test ({}): {}",
            r.unbound.len(),
            r.unbound.join(", ")
        );
    }
    for w in &r.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    capped_lines(
        out,
        r.unreadable
            .iter()
            .map(|u| format!("warning: skipped unreadable evidence {u}")),
        "warning: ... and {} more unreadable files (pv evidence verify lists them all)",
    );
    out.push_str(&untrusted_text(r));
    let _ = writeln!(out, "{}", evidence_summary(r));
}

/// One line: records read, and how many count for nothing or are not vouched for; runs and
/// signed runs.
pub fn evidence_summary(r: &StatusReport) -> String {
    let mut s = format!(
        "{} evidence record(s) read: {} invalid, {} loose{}, {} unattested{}, {} missing, {} unreadable; {} run(s), {}",
        r.records,
        r.invalid.len(),
        r.loose.len(),
        if r.loose_counted { " (COUNTED: [evidence] loose = \"count\")" } else { "" },
        r.unattested.len(),
        if r.attested_only { " (not counted)" } else { "" },
        r.missing.len(),
        r.unreadable.len(),
        r.runs,
        match r.signed_runs {
            0 => "unsigned".to_string(),
            n => format!("{n} signed"),
        },
    );
    if r.loose_counted {
        s.push_str("\nwarning: loose records are counted (migration): nothing vouches for them");
    }
    s
}

/// Loose (and unreadable) files shown by name in text, before "... and N more".
const LOOSE_SHOWN: usize = 20;

/// Writes the first [`LOOSE_SHOWN`] of `lines`, then `more` with the count of the rest in
/// place of `{}`.
fn capped_lines(out: &mut String, lines: impl ExactSizeIterator<Item = String>, more: &str) {
    let total = lines.len();
    for l in lines.take(LOOSE_SHOWN) {
        let _ = writeln!(out, "{l}");
    }
    if total > LOOSE_SHOWN {
        let _ = writeln!(
            out,
            "{}",
            more.replace("{}", &(total - LOOSE_SHOWN).to_string())
        );
    }
}

/// A heading and one `file (falsifier): reason` line per record; nothing when there are none.
fn record_lines(out: &mut String, heading: String, records: &[InvalidRecord]) {
    if records.is_empty() {
        return;
    }
    let _ = writeln!(out, "{heading}");
    for i in records {
        let _ = writeln!(out, "  {} ({}): {}", i.file, i.falsifier, i.reason);
    }
}

/// The records that count for nothing or that nobody vouches for (rules 16-18), as text: one
/// section each for invalid, loose, unattested and missing records; empty when there are
/// none. `pv status`, `pv audit` and `pv evidence report` print the same lines.
pub fn untrusted_text(r: &StatusReport) -> String {
    let mut out = String::new();
    record_lines(
        &mut out,
        format!(
            "INVALID evidence ({}), never counted as a pass (docs/status.md, rules 16 and 17):",
            r.invalid.len()
        ),
        &r.invalid,
    );
    if !r.loose.is_empty() {
        let _ = writeln!(
            out,
            "LOOSE evidence ({}), in no run manifest, {} (docs/status.md, rule 17):",
            r.loose.len(),
            if r.loose_counted {
                "COUNTED for migration"
            } else {
                "counted for nothing"
            }
        );
        capped_lines(
            &mut out,
            r.loose.iter().map(|f| format!("  {f}")),
            "  ... and {} more",
        );
    }
    record_lines(
        &mut out,
        format!(
            "UNATTESTED evidence ({}), no allowed signer vouches for it, {} (rule 18):",
            r.unattested.len(),
            if r.attested_only {
                "counted for nothing"
            } else {
                "counted (--require-attested leaves it out)"
            }
        ),
        &r.unattested,
    );
    if !r.missing.is_empty() {
        let _ = writeln!(
            out,
            "MISSING evidence ({}): listed in a run manifest, not found (deleted?):",
            r.missing.len()
        );
        for m in &r.missing {
            let _ = writeln!(out, "  {m}");
        }
    }
    out
}

/// `(file, falsifier, reason)` rows of `records`, for [`html_section`].
fn record_rows(records: &[InvalidRecord]) -> Vec<(&str, &str, &str)> {
    records
        .iter()
        .map(|i| (i.file.as_str(), i.falsifier.as_str(), i.reason.as_str()))
        .collect()
}

/// An HTML section: heading and a record / falsifier / why table; nothing without rows.
fn html_section(h: &mut String, id: &str, title: &str, rows: Vec<(&str, &str, &str)>) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        h,
        "<h2 id=\"{id}\">{}</h2>\n<table><tr><th>record</th><th>falsifier</th><th>why</th></tr>",
        esc(title)
    );
    for (a, b, c) in rows {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(a),
            esc(b),
            esc(c)
        );
    }
    h.push_str("</table>\n");
}

/// [`untrusted_text`] as HTML sections, and the summary line.
pub fn untrusted_html(r: &StatusReport) -> String {
    let mut h = String::new();
    html_section(
        &mut h,
        "invalid",
        &format!(
            "Invalid evidence ({}), never counted as a pass",
            r.invalid.len()
        ),
        record_rows(&r.invalid),
    );
    html_section(
        &mut h,
        "loose",
        &format!(
            "Loose evidence ({}), in no run manifest, {}",
            r.loose.len(),
            if r.loose_counted {
                "COUNTED for migration"
            } else {
                "counted for nothing"
            }
        ),
        r.loose
            .iter()
            .map(|f| (f.as_str(), "", "in no run manifest"))
            .collect(),
    );
    html_section(
        &mut h,
        "unattested",
        &format!(
            "Unattested evidence ({}), {}",
            r.unattested.len(),
            if r.attested_only {
                "counted for nothing"
            } else {
                "counted"
            }
        ),
        record_rows(&r.unattested),
    );
    html_section(
        &mut h,
        "missing",
        &format!(
            "Missing evidence ({}), listed in a run manifest",
            r.missing.len()
        ),
        r.missing
            .iter()
            .map(|m| (m.as_str(), "", "not found"))
            .collect(),
    );
    let _ = writeln!(h, "<p class=\"muted\">{}</p>", esc(&evidence_summary(r)));
    h
}

/// JSON (the report's serde form).
pub fn json(r: &StatusReport) -> String {
    serde_json::to_string_pretty(r).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// Markdown tables.
pub fn markdown(r: &StatusReport) -> String {
    let mut out = String::from("# Stage status (derived from evidence)\n\n");
    for c in &r.contracts {
        let _ = writeln!(out, "## {} {}\n", c.id, c.version);
        out.push_str("| stage | status | passed | age | key metric | title |\n");
        out.push_str("|---|---|---|---|---|---|\n");
        for s in &c.stages {
            let status = match &s.capped_by {
                Some(by) => format!("{} (capped by {by})", s.status),
                None => s.status.to_string(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {}/{} | {} | {} | {} |",
                s.id,
                status,
                s.passed,
                s.total,
                s.age_s.map(fmt_age).unwrap_or_else(|| "-".into()),
                md(s.key_metric.as_deref().unwrap_or("-")),
                md(&s.title)
            );
        }
        out.push('\n');
    }
    let mut f = String::new();
    footer(r, &mut f);
    for l in f.lines() {
        let _ = writeln!(out, "- {}", md(l));
    }
    out
}

fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Escapes text for HTML and XML.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The colour of a status (HTML page, `pv graph`).
pub fn color(s: StageStatus) -> &'static str {
    match s {
        StageStatus::Failing => "#d73a49",
        StageStatus::Unimplemented => "#6f42c1",
        StageStatus::Pending => "#959da5",
        StageStatus::Stale => "#e36209",
        StageStatus::AlgorithmLevel => "#0366d6",
        StageStatus::Discharged => "#28a745",
    }
}

/// The stage graph as inline SVG: one column per contract, stages top to bottom, an arrow from
/// each required stage to the stage that requires it.
fn stage_graph(r: &StatusReport) -> String {
    const W: f64 = 210.0;
    const H: f64 = 44.0;
    const GX: f64 = 40.0;
    const GY: f64 = 18.0;
    let mut pos: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    let mut max_rows = 0usize;
    for (ci, c) in r.contracts.iter().enumerate() {
        for (si, s) in c.stages.iter().enumerate() {
            pos.insert(
                s.id.as_str(),
                (20.0 + ci as f64 * (W + GX), 40.0 + si as f64 * (H + GY)),
            );
        }
        max_rows = max_rows.max(c.stages.len());
    }
    let width = 40.0 + r.contracts.len().max(1) as f64 * (W + GX);
    let height = 60.0 + max_rows as f64 * (H + GY);
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="stage graph" width="{width}" height="{height}" viewBox="0 0 {width} {height}">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#586069"/></marker></defs>
"##
    );
    for (ci, c) in r.contracts.iter().enumerate() {
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="24" font-size="12" font-weight="bold">{}</text>"#,
            20.0 + ci as f64 * (W + GX),
            esc(&c.id)
        );
    }
    // Edges first, so nodes paint over them.
    for (_, s) in r.stages() {
        let Some(&(x2, y2)) = pos.get(s.id.as_str()) else {
            continue;
        };
        for req in &s.requires {
            let Some(&(x1, y1)) = pos.get(req.as_str()) else {
                continue;
            };
            let (sx, sy, ex, ey) = if (x1 - x2).abs() < 1.0 {
                (x1 + W / 2.0, y1 + H, x2 + W / 2.0, y2)
            } else if x1 < x2 {
                (x1 + W, y1 + H / 2.0, x2, y2 + H / 2.0)
            } else {
                (x1, y1 + H / 2.0, x2 + W, y2 + H / 2.0)
            };
            let _ = writeln!(
                svg,
                r##"<line x1="{sx}" y1="{sy}" x2="{ex}" y2="{ey}" stroke="#586069" stroke-width="1.2" marker-end="url(#arrow)"/>"##
            );
        }
    }
    for (_, s) in r.stages() {
        let Some(&(x, y)) = pos.get(s.id.as_str()) else {
            continue;
        };
        let _ = writeln!(
            svg,
            r##"<g class="node" data-stage="{id}" data-status="{st}"><title>{id}: {title}</title><rect x="{x}" y="{y}" width="{W}" height="{H}" rx="6" fill="{fill}" fill-opacity="0.15" stroke="{fill}" stroke-width="2"/><text x="{tx}" y="{ty1}" font-size="12" font-weight="bold">{id}</text><text x="{tx}" y="{ty2}" font-size="11" fill="{fill}">{st} {p}/{t}</text></g>"##,
            id = esc(&s.id),
            title = esc(&s.title),
            st = s.status,
            fill = color(s.status),
            tx = x + 8.0,
            ty1 = y + 18.0,
            ty2 = y + 35.0,
            p = s.passed,
            t = s.total,
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A small line chart of one metric over runs (oldest left), with the threshold as a dashed
/// line and failing runs as red dots.
fn sparkline(points: &[(f64, bool)], threshold: Option<f64>) -> String {
    const W: f64 = 220.0;
    const H: f64 = 48.0;
    let mut vals: Vec<f64> = points.iter().map(|p| p.0).collect();
    if let Some(t) = threshold {
        vals.push(t);
    }
    let lo = vals.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let span = if (hi - lo).abs() < 1e-300 {
        1.0
    } else {
        hi - lo
    };
    let n = points.len().max(2) - 1;
    let xy = |i: usize, v: f64| {
        (
            4.0 + (W - 8.0) * i as f64 / n as f64,
            H - 4.0 - (H - 8.0) * (v - lo) / span,
        )
    };
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="spark" width="{W}" height="{H}" viewBox="0 0 {W} {H}">"#
    );
    if let Some(t) = threshold {
        let (_, y) = xy(0, t);
        let _ = write!(
            s,
            r##"<line x1="0" x2="{W}" y1="{y}" y2="{y}" stroke="#959da5" stroke-dasharray="3,3"/>"##
        );
    }
    let path: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (x, y) = xy(i, p.0);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let _ = write!(
        s,
        r##"<polyline fill="none" stroke="#0366d6" stroke-width="1.5" points="{}"/>"##,
        path.join(" ")
    );
    for (i, p) in points.iter().enumerate() {
        let (x, y) = xy(i, p.0);
        let fill = if p.1 { "#28a745" } else { "#d73a49" };
        let _ = write!(
            s,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="{fill}"/>"#
        );
    }
    s.push_str("</svg>");
    s
}

/// The newest N runs per falsifier shown in the history charts.
const HISTORY: usize = 50;

/// A self-contained HTML page: summary, stage graph, per contract its stage table, equations
/// and proof obligations (with the coverage `pv coverage` computes), metric history.
pub fn html(r: &StatusReport, set: &ContractSet) -> String {
    let thresholds = crate::status_cmd::thresholds(set);
    let coverage = crate::coverage::coverage(set, r);
    let mut h = String::new();
    h.push_str(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pv status</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#24292e}
table{border-collapse:collapse;margin:8px 0 20px}
th,td{border:1px solid #e1e4e8;padding:4px 8px;text-align:left;font-size:13px;vertical-align:top}
th{background:#f6f8fa}
.st{font-weight:bold;padding:1px 6px;border-radius:4px;color:#fff}
.muted{color:#6a737d}
.warn{color:#b08800}
code{font-size:12px}
pre.formula{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;background:#f6f8fa;border:1px solid #e1e4e8;border-radius:4px;padding:3px 6px;margin:2px 0;white-space:pre-wrap;overflow-wrap:anywhere}
td ul{margin:0;padding-left:16px}
.st,table.equations code,table.obligations b,table.obligations code{white-space:nowrap}
table.equations td:nth-child(2){min-width:280px}
h3{font-size:15px;margin:12px 0 4px}
</style></head><body>
<h1>pv status</h1>
<p class="muted">Derived from contracts and evidence records; nobody typed these statuses.</p>
"#,
    );
    let mut counts: BTreeMap<StageStatus, usize> = BTreeMap::new();
    for (_, s) in r.stages() {
        *counts.entry(s.status).or_default() += 1;
    }
    h.push_str("<p id=\"summary\">");
    for (st, n) in &counts {
        let _ = write!(
            h,
            r#"<span class="st" style="background:{}">{st}</span> {n} &nbsp; "#,
            color(*st)
        );
    }
    let _ = writeln!(
        h,
        "<span class=\"muted\">{} evidence records</span></p>",
        r.records
    );
    let t = &coverage.totals;
    if t.obligations > 0 {
        let _ = writeln!(
            h,
            "<p id=\"coverage\">Proof obligations: {} by evidence, {} by harness only, {} uncovered <span class=\"muted\">(of {}; as <code>pv coverage</code>)</span></p>",
            t.evidence, t.harness, t.uncovered, t.obligations
        );
    }
    h.push_str("<h2>Stages</h2>\n");
    h.push_str(&stage_graph(r));
    for c in &r.contracts {
        let _ = writeln!(
            h,
            "<h2>{} <span class=\"muted\">{}</span></h2>",
            esc(&c.id),
            esc(&c.version)
        );
        h.push_str("<table><tr><th>stage</th><th>status</th><th>passed</th><th>age</th><th>key metric</th><th>falsifiers</th></tr>\n");
        for s in &c.stages {
            let cap = s
                .capped_by
                .as_ref()
                .map(|b| {
                    format!(
                        "<br><span class=\"muted\">own {}, capped by {}</span>",
                        s.own_status,
                        esc(b)
                    )
                })
                .unwrap_or_default();
            let mut fl = String::new();
            for fid in &s.falsifiers {
                let Some(f) = r.falsifiers.get(fid) else {
                    continue;
                };
                let state = status_math::state_label(f.state);
                let _ = write!(
                    fl,
                    "<code>{}</code> {} <span class=\"muted\">({})</span>",
                    esc(fid),
                    state,
                    f.tier
                );
                for d in &f.divergences {
                    let _ = write!(
                        fl,
                        "<br><span class=\"warn\">known divergence ({}): {}</span>",
                        esc(&d.classification),
                        esc(&d.scope)
                    );
                }
                fl.push_str("<br>");
            }
            let _ = writeln!(
                h,
                r#"<tr><td><b>{}</b><br><span class="muted">{}</span></td><td><span class="st" style="background:{}">{}</span>{cap}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{fl}</td></tr>"#,
                esc(&s.id),
                esc(&s.title),
                color(s.status),
                s.status,
                s.passed,
                s.total,
                s.age_s.map(fmt_age).unwrap_or_else(|| "-".into()),
                esc(s.key_metric.as_deref().unwrap_or("-")),
            );
        }
        h.push_str("</table>\n");
        if let Some(contract) = set.contract(&c.id) {
            let cov = coverage.contracts.iter().find(|k| k.contract == c.id);
            h.push_str(&status_math::contract_math(contract, cov, set, r));
        }
    }
    h.push_str(&untrusted_html(r));
    h.push_str("<h2>Metric history</h2>\n<table><tr><th>falsifier</th><th>metric</th><th>last</th><th>history (newest right)</th></tr>\n");
    for (fid, f) in &r.falsifiers {
        if f.runs.is_empty() {
            continue;
        }
        let runs = &f.runs[f.runs.len().saturating_sub(HISTORY)..];
        let names: Vec<&String> = runs
            .last()
            .map(|l| l.metrics.iter().map(|m| &m.0).collect())
            .unwrap_or_default();
        for name in names {
            let points: Vec<(f64, bool)> = runs
                .iter()
                .filter_map(|run| {
                    run.metrics
                        .iter()
                        .find(|m| &m.0 == name)
                        .and_then(|m| m.1.map(|v| (v, m.2)))
                })
                .collect();
            let th = thresholds.get(&(fid.clone(), name.clone()));
            let last = points
                .last()
                .map(|p| fmt_num(p.0))
                .unwrap_or_else(|| "n/a".into());
            let _ = writeln!(
                h,
                "<tr><td><code>{}</code></td><td>{}{}</td><td>{}</td><td>{}</td></tr>",
                esc(fid),
                esc(name),
                th.map(|(op, t)| format!(
                    " <span class=\"muted\">{} {}</span>",
                    esc(op),
                    fmt_num(*t)
                ))
                .unwrap_or_default(),
                last,
                if points.is_empty() {
                    "-".to_string()
                } else {
                    sparkline(&points, th.map(|t| t.1))
                }
            );
        }
    }
    h.push_str("</table>\n");
    let mut f = String::new();
    footer(r, &mut f);
    h.push_str("<h2>Notes</h2>\n<ul>\n");
    for l in f.lines() {
        let _ = writeln!(h, "<li>{}</li>", esc(l));
    }
    h.push_str("</ul>\n");
    // The only script: marks the page as rendered (the headless render test looks for it).
    h.push_str(
        "<script>document.body.setAttribute('data-rendered','yes');</script>\n</body></html>\n",
    );
    h
}

/// JUnit XML: one test suite per contract, one test case per stage. FAILING is a failure,
/// UNIMPLEMENTED an error, PENDING and STALE are skipped with the reason.
pub fn junit(r: &StatusReport) -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let total: usize = r.contracts.iter().map(|c| c.stages.len()).sum();
    let count = |st: &[StageStatus]| r.stages().filter(|(_, s)| st.contains(&s.status)).count();
    let _ = writeln!(
        x,
        r#"<testsuites name="pv status" tests="{total}" failures="{}" errors="{}" skipped="{}">"#,
        count(&[StageStatus::Failing]),
        count(&[StageStatus::Unimplemented]),
        count(&[StageStatus::Pending, StageStatus::Stale])
    );
    for c in &r.contracts {
        let n = |st: &[StageStatus]| c.stages.iter().filter(|s| st.contains(&s.status)).count();
        let _ = writeln!(
            x,
            r#"  <testsuite name="{}" tests="{}" failures="{}" errors="{}" skipped="{}">"#,
            esc(&c.id),
            c.stages.len(),
            n(&[StageStatus::Failing]),
            n(&[StageStatus::Unimplemented]),
            n(&[StageStatus::Pending, StageStatus::Stale])
        );
        for s in &c.stages {
            let _ = write!(
                x,
                r#"    <testcase classname="{}" name="{} {}">"#,
                esc(&c.id),
                esc(&s.id),
                esc(&s.title)
            );
            let failing: Vec<String> = s
                .falsifiers
                .iter()
                .filter_map(|f| r.falsifiers.get(f))
                .filter(|f| f.state == FalsifierState::Failing)
                .map(|f| {
                    format!(
                        "{}: {}",
                        f.id,
                        f.latest()
                            .and_then(|l| l.reason.clone())
                            .unwrap_or_default()
                    )
                })
                .collect();
            match s.status {
                StageStatus::Failing => {
                    let _ = write!(
                        x,
                        r#"<failure message="FAILING">{}</failure>"#,
                        esc(&failing.join("\n"))
                    );
                }
                StageStatus::Unimplemented => {
                    let _ = write!(
                        x,
                        r#"<error message="UNIMPLEMENTED: a falsifier has no bound test"/>"#
                    );
                }
                StageStatus::Pending | StageStatus::Stale => {
                    let why = match &s.capped_by {
                        Some(b) => format!("{} (capped by {b})", s.status),
                        None => s.status.to_string(),
                    };
                    let _ = write!(x, r#"<skipped message="{}"/>"#, esc(&why));
                }
                StageStatus::AlgorithmLevel | StageStatus::Discharged => {
                    let _ = write!(x, r#"<system-out>{}</system-out>"#, s.status);
                }
            }
            x.push_str("</testcase>\n");
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

/// Whether an outcome counts as a failure in reports.
pub fn is_failure(o: Outcome) -> bool {
    matches!(o, Outcome::Fail | Outcome::Error)
}
