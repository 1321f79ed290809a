//! `pv coverage`: which proof obligations are discharged by evidence.
//!
//! An obligation is covered by *evidence* when one of its falsifiers is `pass_fresh` in the
//! status derivation (`docs/status.md`, the same function `pv status` uses); by a *harness*
//! when it names a proof harness (pv does not run harnesses, so this is the weaker kind, shown
//! separately). Anything else is uncovered, with the falsifiers' states saying why.
//!
//! Per crate (`--by crate`): each workspace member's public functions, and which of them a
//! falsifier *names* — the name is a word of a falsifier test file or of a live falsifier's
//! `claim` / `if_fails`. Named is not tested: it only says that some falsifier mentions the
//! function, so the unnamed list is where nothing even points. The scan is textual
//! ([`crate::crate_scan`]).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use pv_contract::ContractSet;
use serde::Serialize;

use crate::crate_scan::{self, ScanError};
use crate::status::{FalsifierState, StatusReport};
use crate::status_cmd::Locations;
use crate::status_load::{load_contracts, status_for};

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
    /// Which part to report: proof obligations, public functions per crate, or both.
    #[arg(long, value_enum, default_value_t)]
    pub by: By,
    /// Write the output to this file instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// The part of the report `pv coverage` prints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    /// Public functions per workspace crate, named by a falsifier or not.
    Crate,
    /// Proof obligations per contract, by evidence / harness / uncovered.
    Obligation,
    /// Both (obligations first).
    #[default]
    All,
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

/// A public function (by name: the scan cannot tell overloads in different `impl`s apart).
#[derive(Debug, Clone, Serialize)]
pub struct FnCoverage {
    /// Its name.
    pub name: String,
    /// Every `file:line` (relative to the crate) that declares a `pub fn` of that name.
    pub locations: Vec<String>,
}

/// One member crate.
#[derive(Debug, Clone, Serialize)]
pub struct CrateCoverage {
    /// Package name.
    #[serde(rename = "crate")]
    pub name: String,
    /// Member path, relative to the workspace root.
    pub path: String,
    /// Distinct public function names.
    pub total: usize,
    /// Of those, named by a falsifier test or claim.
    pub named: usize,
    /// The others, in source order.
    pub unnamed: Vec<FnCoverage>,
}

/// Every member crate.
#[derive(Debug, Clone, Serialize)]
pub struct CratesReport {
    /// Members in `Cargo.toml` order (`falsifiers`, `fuzz` and crates with no `src/` skipped).
    pub crates: Vec<CrateCoverage>,
    /// Distinct names summed over crates.
    pub total: usize,
    /// Named ones summed over crates.
    pub named: usize,
    /// Members or files that were skipped, and why.
    pub notes: Vec<String>,
}

/// The words that count as naming a function: those of the falsifier test files under
/// `tests_dir` and of every live falsifier's claim and `if_fails` (a retired falsifier vouches
/// for nothing, as in `pv status`).
pub fn naming_words(
    set: &ContractSet,
    test_dirs: &[PathBuf],
    notes: &mut Vec<String>,
) -> HashSet<String> {
    let mut words = HashSet::new();
    for d in test_dirs {
        words.extend(crate_scan::falsifier_test_words(d, notes));
    }
    for (_, f) in set.falsifiers().filter(|(_, f)| f.is_live()) {
        for text in [&f.claim, &f.if_fails] {
            words.extend(crate_scan::words(text).map(str::to_string));
        }
    }
    words
}

/// Per member crate of the workspace at `root`: public functions, named or not by `words`.
pub fn crates_coverage(
    root: &Path,
    test_packages: &[PathBuf],
    words: &HashSet<String>,
    mut notes: Vec<String>,
) -> Result<CratesReport, ScanError> {
    let (members, member_notes) = crate_scan::workspace_members(root, test_packages)?;
    notes.extend(member_notes);
    let mut crates = Vec::new();
    for m in members {
        let scan = crate_scan::scan_crate(&root.join(&m.path));
        notes.extend(scan.notes.into_iter().map(|n| format!("{}: {n}", m.path)));
        // Name -> locations, keeping the order names first appear in.
        let mut order: Vec<String> = Vec::new();
        let mut locs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (file, f) in scan.fns {
            let l = locs.entry(f.name.clone()).or_default();
            if l.is_empty() {
                order.push(f.name);
            }
            l.push(format!("{file}:{}", f.line));
        }
        let unnamed: Vec<FnCoverage> = order
            .iter()
            .filter(|n| !words.contains(n.as_str()))
            .map(|n| FnCoverage {
                name: n.clone(),
                locations: locs.remove(n).unwrap_or_default(),
            })
            .collect();
        crates.push(CrateCoverage {
            name: m.name,
            path: m.path,
            total: order.len(),
            named: order.len() - unnamed.len(),
            unnamed,
        });
    }
    Ok(CratesReport {
        total: crates.iter().map(|c| c.total).sum(),
        named: crates.iter().map(|c| c.named).sum(),
        crates,
        notes,
    })
}

/// Unnamed functions the text report lists per crate (JSON lists all).
const TEXT_UNNAMED_CAP: usize = 12;

/// The per-crate text report.
pub fn crates_text(r: &CratesReport) -> String {
    let mut s = String::from(
        "crates: public functions named by a falsifier (the name is a word of a falsifier test, \
         claim or if_fails; textual scan, approximate)\n",
    );
    for c in &r.crates {
        let _ = writeln!(
            s,
            "{} ({}): named {} / total {}",
            c.name, c.path, c.named, c.total
        );
        for f in c.unnamed.iter().take(TEXT_UNNAMED_CAP) {
            let more = match f.locations.len() {
                0 | 1 => String::new(),
                n => format!(" (+{} more)", n - 1),
            };
            let first = f.locations.first().map(String::as_str).unwrap_or("?");
            let _ = writeln!(s, "  unnamed  {}  {first}{more}", f.name);
        }
        if c.unnamed.len() > TEXT_UNNAMED_CAP {
            let _ = writeln!(
                s,
                "  ... and {} more (--format json lists all)",
                c.unnamed.len() - TEXT_UNNAMED_CAP
            );
        }
    }
    let _ = writeln!(
        s,
        "total: named {} / total {} public functions ({})",
        r.named,
        r.total,
        pct(r.named, r.total)
    );
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}

/// The JSON document: the obligation report's fields at the top level (as before `--by`
/// existed), and `crates` when the per-crate part was asked for.
#[derive(Serialize)]
struct JsonReport<'a> {
    #[serde(flatten)]
    obligations: Option<&'a CoverageReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    crates: Option<&'a CratesReport>,
}

/// Pretty JSON with a trailing newline.
pub fn json(obligations: Option<&CoverageReport>, crates: Option<&CratesReport>) -> String {
    let r = JsonReport {
        obligations,
        crates,
    };
    let mut s = serde_json::to_string_pretty(&r)
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialize coverage: {e}\"}}"));
    s.push('\n');
    s
}

/// `pv coverage`: always exit 0 when the inputs load (coverage is a report, `pv audit` is the
/// gate); 2 when they do not.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let paths = args.locations.paths()?;
    let (set, obligations) = match args.by {
        // Evidence plays no part in naming: do not read it.
        By::Crate => (load_contracts(&paths.contracts)?, None),
        By::Obligation | By::All => {
            let (set, report) = status_for(&paths).context("deriving falsifier states")?;
            let r = coverage(&set, &report);
            (set, Some(r))
        }
    };
    let crates = match args.by {
        By::Obligation => None,
        By::Crate | By::All => {
            let mut notes = Vec::new();
            let tests = paths.tests.clone().unwrap_or_default();
            let words = naming_words(&set, &tests, &mut notes);
            Some(
                crates_coverage(&paths.root, &tests, &words, notes)
                    .context("listing the workspace's crates (`--by obligation` does without)")?,
            )
        }
    };
    let out = match args.format {
        Format::Text => {
            let mut parts = Vec::new();
            if let Some(r) = &obligations {
                parts.push(text(r));
            }
            if let Some(r) = &crates {
                parts.push(crates_text(r));
            }
            parts.join("\n")
        }
        Format::Json => json(obligations.as_ref(), crates.as_ref()),
    };
    crate::graph::emit(&out, args.output.as_deref())?;
    Ok(ExitCode::SUCCESS)
}
