//! `pv diff A B`: what changed between two versions of a contract, in contract terms.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use pv_contract::{Contract, Falsifier, Loaded};
use serde::Serialize;

use crate::render::Format;

/// `pv diff` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The old contract: a file, or `REV:path` (read with `git show`).
    pub old: String,
    /// The new contract: a file, or `REV:path`.
    pub new: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Exit 1 when the declared version bump is smaller than the changes need.
    #[arg(long)]
    pub check: bool,
}

/// One change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// `added`, `removed` or `changed`.
    pub kind: &'static str,
    /// `contract`, `stage`, `falsifier`, `criterion`, `metric`, `divergence`, `equation`,
    /// `obligation`, `amendment`, `dependency`.
    pub what: &'static str,
    /// The id (metric: `FALSIFIER/metric`).
    pub id: String,
    /// Details for `changed` (`threshold: 0.001 -> 0.0001`).
    pub details: Vec<String>,
}

fn load_spec(spec: &str) -> Result<Loaded> {
    let path = PathBuf::from(spec);
    let (label, bytes) = if path.exists() {
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        (path, bytes)
    } else if spec.contains(':') {
        (PathBuf::from(spec), crate::git::show(spec)?)
    } else {
        return Err(anyhow!(
            "{spec}: no such file (use REV:path for a git revision)"
        ));
    };
    let source = pv_contract::load::source_from_bytes(label, bytes).map_err(|d| anyhow!("{d}"))?;
    match pv_contract::load::parse_source(&source) {
        (Some(l), d) if !d.iter().any(|d| d.is_error()) => Ok(l),
        (_, d) => Err(anyhow!(
            "{spec} is not a valid contract:\n{}",
            crate::render::to_string(&d)
        )),
    }
}

fn fmt_list(v: &[String]) -> String {
    format!("[{}]", v.join(", "))
}

fn field<T: PartialEq + std::fmt::Debug>(out: &mut Vec<String>, name: &str, a: &T, b: &T) {
    if a != b {
        out.push(format!("{name}: {a:?} -> {b:?}"));
    }
}

fn list_field(out: &mut Vec<String>, name: &str, a: &[String], b: &[String]) {
    if a != b {
        out.push(format!("{name}: {} -> {}", fmt_list(a), fmt_list(b)));
    }
}

fn text_field(out: &mut Vec<String>, name: &str, a: &str, b: &str) {
    if a != b {
        out.push(format!("{name} changed"));
    }
}

/// Compares two contracts; changes come in a stable order (contract, criteria, stages,
/// falsifiers, metrics, divergences, equations, proof obligations, dependencies, amendments).
pub fn diff(a: &Contract, b: &Contract) -> Vec<Change> {
    let mut out = Vec::new();
    let mut head = Vec::new();
    field(&mut head, "id", &a.contract, &b.contract);
    field(&mut head, "version", &a.version, &b.version);
    text_field(&mut head, "title", &a.title, &b.title);
    text_field(&mut head, "summary", &a.summary, &b.summary);
    field(&mut head, "owners", &a.owners, &b.owners);
    if !head.is_empty() {
        out.push(Change {
            kind: "changed",
            what: "contract",
            id: b.contract.clone(),
            details: head,
        });
    }
    keyed(
        &mut out,
        "criterion",
        &a.acceptance_criteria,
        &b.acceptance_criteria,
        |x| x.id.clone(),
        |x, y, d| {
            text_field(d, "text", &x.text, &y.text);
            list_field(d, "falsifiers", &x.falsifiers, &y.falsifiers);
        },
    );
    keyed(
        &mut out,
        "stage",
        &a.stages,
        &b.stages,
        |x| x.id.clone(),
        |x, y, d| {
            text_field(d, "title", &x.title, &y.title);
            list_field(d, "requires", &x.requires, &y.requires);
            list_field(d, "falsifiers", &x.falsifiers, &y.falsifiers);
        },
    );
    keyed(
        &mut out,
        "falsifier",
        &a.falsifiers,
        &b.falsifiers,
        |x| x.id.clone(),
        falsifier_details,
    );
    // Metrics of falsifiers present in both, by name.
    for fb in &b.falsifiers {
        let Some(fa) = a.falsifier(&fb.id) else {
            continue;
        };
        let mut m = Vec::new();
        keyed(
            &mut m,
            "metric",
            &fa.metrics,
            &fb.metrics,
            |x| format!("{}/{}", fb.id, x.name),
            |x, y, d| {
                if x.op != y.op || x.threshold != y.threshold {
                    d.push(format!(
                        "threshold: {} {} -> {} {}",
                        x.op, x.threshold, y.op, y.threshold
                    ));
                }
                field(d, "unit", &x.unit, &y.unit);
            },
        );
        out.extend(m);
    }
    keyed(
        &mut out,
        "divergence",
        &a.known_divergences,
        &b.known_divergences,
        |x| format!("{} @ {}", x.falsifier, x.scope),
        |x, y, d| {
            field(d, "classification", &x.classification, &y.classification);
            text_field(d, "justification", &x.justification, &y.justification);
            text_field(d, "revisit_when", &x.revisit_when, &y.revisit_when);
        },
    );
    keyed(
        &mut out,
        "equation",
        &a.equations,
        &b.equations,
        |x| x.id.clone(),
        |x, y, d| {
            text_field(d, "name", &x.name, &y.name);
            text_field(d, "formula", &x.formula, &y.formula);
            field(d, "domain", &x.domain, &y.domain);
            field(d, "codomain", &x.codomain, &y.codomain);
            if x.preconditions != y.preconditions {
                d.push("preconditions changed".into());
            }
            if x.invariants != y.invariants {
                d.push("invariants changed".into());
            }
        },
    );
    keyed(
        &mut out,
        "obligation",
        &a.proof_obligations,
        &b.proof_obligations,
        |x| x.id.clone(),
        |x, y, d| {
            field(d, "kind", &x.kind, &y.kind);
            text_field(d, "property", &x.property, &y.property);
            field(d, "formal", &x.formal, &y.formal);
            field(d, "tolerance", &x.tolerance, &y.tolerance);
            field(d, "equation", &x.equation, &y.equation);
            list_field(
                d,
                "falsifiers",
                &x.discharged_by.falsifiers,
                &y.discharged_by.falsifiers,
            );
            list_field(
                d,
                "harnesses",
                &x.discharged_by.harnesses,
                &y.discharged_by.harnesses,
            );
            field(d, "kani", &x.kani, &y.kani);
            match (&x.generators, &y.generators) {
                (None, Some(_)) => d.push("generators added".into()),
                (Some(_), None) => d.push("generators removed".into()),
                (Some(g), Some(h)) if g != h => d.push("generators changed".into()),
                _ => {}
            }
        },
    );
    keyed(
        &mut out,
        "dependency",
        &a.depends_on,
        &b.depends_on,
        |x| x.contract.clone(),
        |x, y, d| field(d, "version", &x.version, &y.version),
    );
    keyed(
        &mut out,
        "amendment",
        &a.amendment_history,
        &b.amendment_history,
        |x| x.version.clone(),
        |x, y, d| {
            field(d, "date", &x.date, &y.date);
            text_field(d, "summary", &x.summary, &y.summary);
            if x.changes != y.changes {
                d.push("changes edited".into());
            }
        },
    );
    out
}

fn falsifier_details(x: &Falsifier, y: &Falsifier, d: &mut Vec<String>) {
    text_field(d, "claim", &x.claim, &y.claim);
    field(d, "tier", &x.tier, &y.tier);
    if x.gate != y.gate {
        d.push(format!("gate: {:?} -> {:?}", x.gate, y.gate));
    }
    text_field(d, "if_fails", &x.if_fails, &y.if_fails);
    match (&x.retired, &y.retired) {
        (None, Some(r)) => d.push(format!("retired: {r}")),
        (Some(_), None) => d.push("un-retired".into()),
        (Some(a), Some(b)) if a != b => d.push("retirement reason changed".into()),
        _ => {}
    }
    list_field(d, "findings", &x.findings, &y.findings);
}

fn keyed<T>(
    out: &mut Vec<Change>,
    what: &'static str,
    a: &[T],
    b: &[T],
    key: impl Fn(&T) -> String,
    details: impl Fn(&T, &T, &mut Vec<String>),
) {
    let am: BTreeMap<String, &T> = a.iter().map(|x| (key(x), x)).collect();
    let bm: BTreeMap<String, &T> = b.iter().map(|x| (key(x), x)).collect();
    for x in a {
        let k = key(x);
        match bm.get(&k) {
            None => out.push(Change {
                kind: "removed",
                what,
                id: k,
                details: Vec::new(),
            }),
            Some(y) => {
                let mut d = Vec::new();
                details(x, y, &mut d);
                if !d.is_empty() {
                    out.push(Change {
                        kind: "changed",
                        what,
                        id: k,
                        details: d,
                    });
                }
            }
        }
    }
    for y in b {
        let k = key(y);
        if !am.contains_key(&k) {
            out.push(Change {
                kind: "added",
                what,
                id: k,
                details: Vec::new(),
            });
        }
    }
}

/// Text form: `+ stage M-X-1.3`, `- falsifier ...`, `~ metric F/m: threshold: <= 1 -> <= 0.5`.
pub fn to_text(a: &Contract, b: &Contract, changes: &[Change]) -> String {
    let mut s = format!(
        "{} {} -> {} {}\n",
        a.contract, a.version, b.contract, b.version
    );
    if changes.is_empty() {
        s.push_str("  no changes\n");
    }
    for c in changes {
        let sign = match c.kind {
            "added" => '+',
            "removed" => '-',
            _ => '~',
        };
        s.push_str(&format!("  {sign} {} {}", c.what, c.id));
        if !c.details.is_empty() {
            s.push_str(": ");
            s.push_str(&c.details.join("; "));
        }
        s.push('\n');
    }
    s
}

/// `pv diff`. Exits 0 whether or not there are changes (like `git diff` without --exit-code);
/// with `--check`, 1 when the declared version bump is smaller than the changes need.
pub fn run(args: Args) -> Result<ExitCode> {
    use std::io::Write;
    let a = load_spec(&args.old)?;
    let b = load_spec(&args.new)?;
    let changes = diff(&a.contract, &b.contract);
    let bump = crate::bump::suggest(&a.contract, &b.contract, &changes);
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Human => {
            out.write_all(to_text(&a.contract, &b.contract, &changes).as_bytes())?;
            out.write_all(crate::bump::to_text(&a.contract, &b.contract, &bump).as_bytes())?;
        }
        Format::Json => {
            let doc = serde_json::json!({
                "old": {"contract": a.contract.contract, "version": a.contract.version},
                "new": {"contract": b.contract.contract, "version": b.contract.version},
                "changes": changes,
                "semver": bump,
            });
            serde_json::to_writer_pretty(&mut out, &doc)?;
            writeln!(out)?;
        }
    }
    if args.check && !bump.sufficient {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
