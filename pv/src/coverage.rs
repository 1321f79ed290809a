//! `pv coverage`: which proof obligations are discharged by evidence.
//!
//! An obligation is covered by *evidence* when one of its falsifiers is `pass_fresh` in the
//! status derivation (`docs/status.md`, the same function `pv status` uses); by a *harness*
//! when it names a proof harness (pv does not run harnesses, so this is the weaker kind, shown
//! separately). Anything else is uncovered, with the falsifiers' states saying why.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use pv_contract::ContractSet;
use serde::Serialize;

use crate::status::{FalsifierState, StatusReport};
use crate::status_cmd::Locations;
use crate::status_load::status_for;

/// Output format of `pv coverage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table per contract and the totals.
    #[default]
    Text,
    /// The same as JSON.
    Json,
}

/// `pv coverage` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub locations: Locations,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Write the output to this file instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// How an obligation is covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Coverage {
    /// Some falsifier passes on fresh evidence.
    Evidence,
    /// No fresh pass, but a proof harness is named (not run by pv).
    Harness,
    /// Neither.
    Uncovered,
}

/// One falsifier of an obligation and what the evidence says about it.
#[derive(Debug, Clone, Serialize)]
pub struct FalsifierCoverage {
    /// Falsifier id.
    pub id: String,
    /// Its derived state; `None` when no contract defines it (PV052) or it is retired.
    pub state: Option<FalsifierState>,
}

/// One obligation.
#[derive(Debug, Clone, Serialize)]
pub struct ObligationCoverage {
    /// Obligation id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// The equation it is about.
    pub equation: String,
    /// The verdict.
    pub coverage: Coverage,
    /// Its falsifiers and their states.
    pub falsifiers: Vec<FalsifierCoverage>,
    /// Its harnesses.
    pub harnesses: Vec<String>,
}

/// Counts.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Totals {
    /// Obligations.
    pub obligations: usize,
    /// Covered by fresh passing evidence.
    pub evidence: usize,
    /// Covered by a harness only.
    pub harness: usize,
    /// Not covered.
    pub uncovered: usize,
}

impl Totals {
    fn add(&mut self, c: Coverage) {
        self.obligations += 1;
        match c {
            Coverage::Evidence => self.evidence += 1,
            Coverage::Harness => self.harness += 1,
            Coverage::Uncovered => self.uncovered += 1,
        }
    }
}

/// One contract.
#[derive(Debug, Clone, Serialize)]
pub struct ContractCoverage {
    /// Contract id.
    pub contract: String,
    /// Its equations.
    pub equations: usize,
    /// Its obligations, in file order.
    pub obligations: Vec<ObligationCoverage>,
    /// Its counts.
    pub totals: Totals,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct CoverageReport {
    /// Contracts in file order (those without obligations included, with zero counts).
    pub contracts: Vec<ContractCoverage>,
    /// Counts over all contracts.
    pub totals: Totals,
}

/// Computes coverage from the contracts and the derived status.
pub fn coverage(set: &ContractSet, report: &StatusReport) -> CoverageReport {
    let mut all = Totals::default();
    let mut contracts = Vec::new();
    for c in set.contracts() {
        let mut totals = Totals::default();
        let mut obligations = Vec::new();
        for o in &c.proof_obligations {
            let falsifiers: Vec<FalsifierCoverage> = o
                .discharged_by
                .falsifiers
                .iter()
                .map(|id| FalsifierCoverage {
                    id: id.clone(),
                    // Retired falsifiers are not in the report: they vouch for nothing.
                    state: report.falsifiers.get(id).map(|f| f.state),
                })
                .collect();
            let fresh = falsifiers
                .iter()
                .any(|f| f.state == Some(FalsifierState::PassFresh));
            let verdict = if fresh {
                Coverage::Evidence
            } else if !o.discharged_by.harnesses.is_empty() {
                Coverage::Harness
            } else {
                Coverage::Uncovered
            };
            totals.add(verdict);
            all.add(verdict);
            obligations.push(ObligationCoverage {
                id: o.id.clone(),
                kind: o.kind.to_string(),
                equation: o.equation.clone(),
                coverage: verdict,
                falsifiers,
                harnesses: o.discharged_by.harnesses.clone(),
            });
        }
        contracts.push(ContractCoverage {
            contract: c.contract.clone(),
            equations: c.equations.len(),
            obligations,
            totals,
        });
    }
    CoverageReport {
        contracts,
        totals: all,
    }
}

fn state_str(s: Option<FalsifierState>) -> &'static str {
    match s {
        None => "undefined-or-retired",
        Some(FalsifierState::Unimplemented) => "unimplemented",
        Some(FalsifierState::NeverRun) => "never_run",
        Some(FalsifierState::Failing) => "failing",
        Some(FalsifierState::PassStale) => "pass_stale",
        Some(FalsifierState::PassFresh) => "pass_fresh",
    }
}

fn pct(n: usize, d: usize) -> String {
    if d == 0 {
        "-".to_string()
    } else {
        format!("{:.0}%", 100.0 * n as f64 / d as f64)
    }
}

/// The text report: per contract, one line per obligation, then totals.
pub fn text(r: &CoverageReport) -> String {
    let mut s = String::new();
    for c in &r.contracts {
        let t = &c.totals;
        let _ = writeln!(
            s,
            "{}: {} equations, {} obligations, {} by evidence, {} by harness only, {} uncovered",
            c.contract, c.equations, t.obligations, t.evidence, t.harness, t.uncovered
        );
        for o in &c.obligations {
            let mut by: Vec<String> = o
                .falsifiers
                .iter()
                .map(|f| format!("{} {}", f.id, state_str(f.state)))
                .collect();
            by.extend(o.harnesses.iter().map(|h| format!("harness {h}")));
            let mark = match o.coverage {
                Coverage::Evidence => "evidence ",
                Coverage::Harness => "harness  ",
                Coverage::Uncovered => "UNCOVERED",
            };
            let _ = writeln!(
                s,
                "  {mark}  {} ({}, {})  <- {}",
                o.id,
                o.kind,
                o.equation,
                if by.is_empty() {
                    "nothing".to_string()
                } else {
                    by.join(", ")
                }
            );
        }
    }
    let t = &r.totals;
    let _ = writeln!(
        s,
        "total: {} obligations, {} by evidence ({}), {} by harness only, {} uncovered",
        t.obligations,
        t.evidence,
        pct(t.evidence, t.obligations),
        t.harness,
        t.uncovered
    );
    s
}

/// Pretty JSON with a trailing newline.
pub fn json(r: &CoverageReport) -> String {
    let mut s = serde_json::to_string_pretty(r)
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialize coverage: {e}\"}}"));
    s.push('\n');
    s
}

/// `pv coverage`: always exit 0 when the inputs load (coverage is a report, `pv audit` is the
/// gate); 2 when they do not.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let paths = args.locations.paths()?;
    let (set, report) = status_for(&paths).context("deriving falsifier states")?;
    let r = coverage(&set, &report);
    let out = match args.format {
        Format::Text => text(&r),
        Format::Json => json(&r),
    };
    crate::graph::emit(&out, args.output.as_deref())?;
    Ok(ExitCode::SUCCESS)
}
