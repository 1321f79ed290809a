//! The equations and proof obligations of one contract, as HTML tables for the `pv status` page.
//!
//! Coverage comes from [`crate::coverage::coverage`], the function `pv coverage` prints, so the
//! page and the command cannot disagree. Every contract text is escaped; formulas go into
//! `<pre class="formula">` blocks as written (they are ASCII or LaTeX-ish text, and the page
//! loads no math renderer: it stays one offline file; the CSS is in the page's `<style>`).

use std::fmt::Write as _;

use pv_contract::{Contract, ContractSet};

use crate::coverage::{ContractCoverage, Coverage};
use crate::show::fmt_tolerance;
use crate::status::{FalsifierState, StatusReport};
use crate::status_render::esc;

/// How a falsifier's derived state reads on the page (the stage table uses the same words).
pub fn state_label(s: FalsifierState) -> &'static str {
    match s {
        FalsifierState::Unimplemented => "no test",
        FalsifierState::NeverRun => "never run",
        FalsifierState::Failing => "failing",
        FalsifierState::PassStale => "pass (stale)",
        FalsifierState::PassFresh => "pass",
    }
}

/// Label and colour of a coverage verdict (green and red as DISCHARGED and FAILING; blue for
/// the weaker harness-only kind).
pub fn coverage_badge(c: Coverage) -> (&'static str, &'static str) {
    match c {
        Coverage::Evidence => ("evidence", "#28a745"),
        Coverage::Harness => ("harness only", "#0366d6"),
        Coverage::Uncovered => ("uncovered", "#d73a49"),
    }
}

/// The anchor of an equation's row, so an obligation can link to it (ids are unique across
/// contracts, PV012).
fn anchor(eq: &str) -> String {
    format!("eq-{}", esc(eq))
}

/// `<pre class="formula">` with the text trimmed and escaped.
fn formula(s: &str) -> String {
    format!("<pre class=\"formula\">{}</pre>", esc(s.trim()))
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "<span class=\"muted\">-</span>".to_string();
    }
    let mut s = String::from("<ul>");
    for i in items {
        let _ = write!(s, "<li>{}</li>", esc(i.trim()));
    }
    s.push_str("</ul>");
    s
}

fn opt(s: Option<&str>) -> String {
    match s {
        Some(t) => esc(t.trim()),
        None => "<span class=\"muted\">-</span>".to_string(),
    }
}

/// The equations table and the obligations table of `c` (empty when it has neither).
pub fn contract_math(
    c: &Contract,
    cov: Option<&ContractCoverage>,
    set: &ContractSet,
    r: &StatusReport,
) -> String {
    let mut h = String::new();
    if !c.equations.is_empty() {
        h.push_str("<h3>Equations</h3>\n<table class=\"equations\"><tr><th>equation</th><th>formula</th><th>domain</th><th>codomain</th><th>preconditions</th><th>invariants</th></tr>\n");
        for q in &c.equations {
            // Which obligations (of any contract) are about it: an equation nobody is
            // obliged to check is a break `pv audit` reports, so the page says so too.
            let about: Vec<String> = set
                .contracts()
                .flat_map(|k| &k.proof_obligations)
                .filter(|o| o.equation == q.id)
                .map(|o| format!("<code>{}</code>", esc(&o.id)))
                .collect();
            let about = if about.is_empty() {
                "<span class=\"warn\">no obligation</span>".to_string()
            } else {
                format!(
                    "<span class=\"muted\">obligations:</span> {}",
                    about.join(", ")
                )
            };
            let _ = writeln!(
                h,
                r#"<tr id="{}"><td><b>{}</b><br><span class="muted">{}</span><br>{about}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                anchor(&q.id),
                esc(&q.id),
                esc(&q.name),
                formula(&q.formula),
                opt(q.domain.as_deref()),
                opt(q.codomain.as_deref()),
                list(&q.preconditions),
                list(&q.invariants),
            );
        }
        h.push_str("</table>\n");
    }
    if !c.proof_obligations.is_empty() {
        h.push_str("<h3>Proof obligations</h3>\n<table class=\"obligations\"><tr><th>obligation</th><th>property</th><th>equation</th><th>discharged by</th><th>coverage</th></tr>\n");
        for o in &c.proof_obligations {
            let mut prop = esc(o.property.trim());
            if let Some(f) = &o.formal {
                prop.push_str(&formula(f));
            }
            if let Some(t) = o.tolerance {
                let _ = write!(
                    prop,
                    "<span class=\"muted\">tolerance</span> <code>{}</code>",
                    esc(&fmt_tolerance(t))
                );
            }
            let defined = set.contracts().any(|k| k.equation(&o.equation).is_some());
            let equation = if defined {
                format!(
                    "<a href=\"#{}\"><code>{}</code></a>",
                    anchor(&o.equation),
                    esc(&o.equation)
                )
            } else {
                format!(
                    "<code>{}</code> <span class=\"warn\">(not defined)</span>",
                    esc(&o.equation)
                )
            };
            let _ = writeln!(
                h,
                r#"<tr data-obligation="{}"><td><b>{}</b><br><span class="muted">{}</span></td><td>{prop}</td><td>{equation}</td><td>{}</td><td>{}</td></tr>"#,
                esc(&o.id),
                esc(&o.id),
                o.kind,
                discharged_by(o, set, r),
                verdict(cov, &o.id),
            );
        }
        h.push_str("</table>\n");
    }
    h
}

/// Falsifiers with their derived state and tier, then harnesses (which pv never runs).
fn discharged_by(o: &pv_contract::ProofObligation, set: &ContractSet, r: &StatusReport) -> String {
    let mut s = String::new();
    for fid in &o.discharged_by.falsifiers {
        let state = match r.falsifiers.get(fid) {
            Some(f) => format!(
                "{} <span class=\"muted\">({})</span>",
                state_label(f.state),
                f.tier
            ),
            // Not in the report: retired (excluded everywhere) or defined nowhere (PV052).
            None => match set.falsifiers().find(|(_, f)| &f.id == fid) {
                Some(_) => "<span class=\"warn\">retired</span>".to_string(),
                None => "<span class=\"warn\">not defined</span>".to_string(),
            },
        };
        let _ = write!(s, "<code>{}</code> {state}<br>", esc(fid));
    }
    for hn in &o.discharged_by.harnesses {
        let _ = write!(
            s,
            "harness <code>{}</code> <span class=\"muted\">(not run by pv)</span><br>",
            esc(hn)
        );
    }
    if s.is_empty() {
        s.push_str("<span class=\"warn\">nothing</span>");
    }
    s
}

fn verdict(cov: Option<&ContractCoverage>, id: &str) -> String {
    match cov.and_then(|c| c.obligations.iter().find(|o| o.id == id)) {
        Some(o) => {
            let (label, colour) = coverage_badge(o.coverage);
            format!(
                "<span class=\"st\" style=\"background:{colour}\" data-coverage=\"{label}\">{label}</span>"
            )
        }
        None => "<span class=\"muted\">-</span>".to_string(),
    }
}
