//! `pv audit`: follows every chain equation -> obligation -> falsifier -> bound test -> evidence
//! and lists each place it breaks. Exit 1 if anything breaks.
//!
//! The falsifier states come from the status derivation (`docs/status.md`): "bound" is the same
//! textual scan of the test packages that `pv-build` uses for the registry, and
//! "passing" means `pass_fresh`. Harnesses are checked the same textual way: some `.rs` file in
//! the workspace has `#[kani::proof]` on a `fn` with the harness's last path segment. pv does
//! not run harnesses, so a found harness is reported as such, never as evidence.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use pv_contract::ContractSet;
use serde::Serialize;

use crate::status::{FalsifierState, StatusReport};
use crate::status_cmd::Locations;
use crate::status_load::status_for;

/// Output format of `pv audit`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per chain link, breaks marked.
    #[default]
    Text,
    /// The breaks and the chains as JSON.
    Json,
}

/// `pv audit` arguments.
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

/// Where a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Break {
    /// An equation no obligation is about.
    EquationWithoutObligation {
        /// Equation id.
        equation: String,
    },
    /// An obligation whose equation is not defined.
    UnknownEquation {
        /// Obligation id.
        obligation: String,
        /// The missing equation.
        equation: String,
    },
    /// An obligation nothing discharges.
    Undischarged {
        /// Obligation id.
        obligation: String,
    },
    /// A falsifier that no contract defines, or that is retired.
    UnknownFalsifier {
        /// Obligation id.
        obligation: String,
        /// Falsifier id.
        falsifier: String,
    },
    /// A falsifier with no bound test.
    NoTest {
        /// Obligation id.
        obligation: String,
        /// Falsifier id.
        falsifier: String,
    },
    /// A bound falsifier with no decisive run.
    NoEvidence {
        /// Obligation id.
        obligation: String,
        /// Falsifier id.
        falsifier: String,
    },
    /// The newest decisive run failed.
    Failing {
        /// Obligation id.
        obligation: String,
        /// Falsifier id.
        falsifier: String,
    },
    /// Passed, but not on fresh evidence.
    Stale {
        /// Obligation id.
        obligation: String,
        /// Falsifier id.
        falsifier: String,
    },
    /// A harness that no `#[kani::proof]` function in the workspace matches.
    HarnessNotFound {
        /// Obligation id.
        obligation: String,
        /// Harness path.
        harness: String,
    },
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Break::EquationWithoutObligation { equation } => {
                write!(f, "{equation}: no proof obligation is about this equation")
            }
            Break::UnknownEquation {
                obligation,
                equation,
            } => write!(f, "{obligation}: equation `{equation}` is not defined"),
            Break::Undischarged { obligation } => {
                write!(f, "{obligation}: no falsifier and no harness discharges it")
            }
            Break::UnknownFalsifier {
                obligation,
                falsifier,
            } => write!(
                f,
                "{obligation} -> {falsifier}: no contract defines it as a live falsifier"
            ),
            Break::NoTest {
                obligation,
                falsifier,
            } => write!(
                f,
                "{obligation} -> {falsifier}: no test is bound to it (#[falsifier(\"{falsifier}\")])"
            ),
            Break::NoEvidence {
                obligation,
                falsifier,
            } => write!(
                f,
                "{obligation} -> {falsifier} -> test: no decisive run recorded (run `pv verify`)"
            ),
            Break::Failing {
                obligation,
                falsifier,
            } => write!(
                f,
                "{obligation} -> {falsifier} -> test -> evidence: the newest decisive run fails"
            ),
            Break::Stale {
                obligation,
                falsifier,
            } => write!(
                f,
                "{obligation} -> {falsifier} -> test -> evidence: passed, but the contract or the sources changed since"
            ),
            Break::HarnessNotFound {
                obligation,
                harness,
            } => write!(
                f,
                "{obligation} -> harness {harness}: no #[kani::proof] fn of that name in the workspace"
            ),
        }
    }
}

/// One obligation's chain, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Chain {
    /// Contract id.
    pub contract: String,
    /// Equation id.
    pub equation: String,
    /// Obligation id.
    pub obligation: String,
    /// Each falsifier and its derived state (`None`: undefined or retired).
    pub falsifiers: Vec<(String, Option<FalsifierState>)>,
    /// Each harness and whether a `#[kani::proof]` fn of that name was found.
    pub harnesses: Vec<(String, bool)>,
    /// Whether some falsifier passes on fresh evidence.
    pub evidenced: bool,
}

/// The audit result.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// One chain per obligation, file order.
    pub chains: Vec<Chain>,
    /// Every break found.
    pub breaks: Vec<Break>,
    /// Whether the bound-test scan ran (false: no tests directory, so "no test" is unknown and
    /// reported as no evidence instead).
    pub bindings_checked: bool,
    /// Per product binary (`pv.toml` `[product] binaries`): project files compiled into it that
    /// no contract's scope covers (`crate::unclaimed`).
    pub product: Vec<crate::unclaimed::BinaryReport>,
    /// Evidence records that count for nothing (`docs/status.md`, rules 16 and 17): a chain
    /// that seems intact may rest on none of them.
    pub invalid: Vec<crate::status::InvalidRecord>,
    /// Records a run manifest lists that are gone.
    pub missing: Vec<String>,
    /// Records in no run manifest (not counted unless the project opts in).
    pub loose: usize,
    /// Records no allowed signer vouches for (with a trust policy).
    pub unattested: Vec<crate::status::InvalidRecord>,
}

impl AuditReport {
    /// Whether anything breaks: a chain, or unclaimed code in a product binary.
    pub fn is_clean(&self) -> bool {
        self.breaks.is_empty()
            && self.product.iter().all(|b| b.unclaimed.is_empty())
            && self.invalid.is_empty()
            && self.missing.is_empty()
    }
}

/// Names of `fn`s carrying `#[kani::proof]` in `text`: the attribute, then (after other
/// attributes or blank lines) a line declaring `fn NAME`.
pub fn kani_proofs_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut armed = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("#[kani::proof") {
            armed = true;
            continue;
        }
        if !armed {
            continue;
        }
        if t.is_empty() || t.starts_with("#[") || t.starts_with("//") {
            continue;
        }
        let decl = t
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub ")
            .trim_start_matches("unsafe ");
        if let Some(rest) = decl.strip_prefix("fn ") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
        armed = false;
    }
    out
}

/// Every `#[kani::proof]` fn name under `root`'s `.rs` files, skipping build outputs
/// (`target*`), hidden directories and `evidence/`.
pub fn kani_proofs(root: &Path) -> HashSet<String> {
    let mut found = HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                if !(name.starts_with('.') || name.starts_with("target") || name == "evidence") {
                    stack.push(path);
                }
            } else if ft.is_file() && name.ends_with(".rs") {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    if text.contains("kani::proof") {
                        found.extend(kani_proofs_in(&text));
                    }
                }
            }
        }
    }
    found
}

/// Audits every obligation of `set` against the derived `report`; `proofs` are the harness
/// fn names found in the workspace.
pub fn audit(set: &ContractSet, report: &StatusReport, proofs: &HashSet<String>) -> AuditReport {
    let mut breaks = Vec::new();
    let mut chains = Vec::new();
    let bindings_checked = report.falsifiers.values().any(|f| f.bound.is_some());
    for c in set.contracts() {
        for q in &c.equations {
            if !set.obligations().any(|(_, o)| o.equation == q.id) {
                breaks.push(Break::EquationWithoutObligation {
                    equation: q.id.clone(),
                });
            }
        }
        for o in &c.proof_obligations {
            let ob = || o.id.clone();
            if set.equation(&o.equation).is_none() {
                breaks.push(Break::UnknownEquation {
                    obligation: ob(),
                    equation: o.equation.clone(),
                });
            }
            if o.discharged_by.is_empty() {
                breaks.push(Break::Undischarged { obligation: ob() });
            }
            let mut falsifiers = Vec::new();
            for fid in &o.discharged_by.falsifiers {
                let f = fid.clone();
                let state = report.falsifiers.get(fid).map(|r| r.state);
                falsifiers.push((fid.clone(), state));
                let b = match state {
                    None => Some(Break::UnknownFalsifier {
                        obligation: ob(),
                        falsifier: f,
                    }),
                    Some(FalsifierState::Unimplemented) => Some(Break::NoTest {
                        obligation: ob(),
                        falsifier: f,
                    }),
                    Some(FalsifierState::NeverRun) => Some(Break::NoEvidence {
                        obligation: ob(),
                        falsifier: f,
                    }),
                    Some(FalsifierState::Failing) => Some(Break::Failing {
                        obligation: ob(),
                        falsifier: f,
                    }),
                    Some(FalsifierState::PassStale) => Some(Break::Stale {
                        obligation: ob(),
                        falsifier: f,
                    }),
                    Some(FalsifierState::PassFresh) => None,
                };
                breaks.extend(b);
            }
            let mut harnesses = Vec::new();
            for h in &o.discharged_by.harnesses {
                let last = h.rsplit("::").next().unwrap_or(h);
                let found = proofs.contains(last);
                if !found {
                    breaks.push(Break::HarnessNotFound {
                        obligation: ob(),
                        harness: h.clone(),
                    });
                }
                harnesses.push((h.clone(), found));
            }
            chains.push(Chain {
                contract: c.contract.clone(),
                equation: o.equation.clone(),
                obligation: o.id.clone(),
                evidenced: falsifiers
                    .iter()
                    .any(|(_, s)| *s == Some(FalsifierState::PassFresh)),
                falsifiers,
                harnesses,
            });
        }
    }
    AuditReport {
        product: Vec::new(),
        invalid: report.invalid.clone(),
        missing: report.missing.clone(),
        loose: report.loose.len(),
        unattested: report.unattested.clone(),
        chains,
        breaks,
        bindings_checked,
    }
}

fn state_str(s: Option<FalsifierState>) -> &'static str {
    match s {
        None => "undefined-or-retired",
        Some(FalsifierState::Unimplemented) => "no bound test",
        Some(FalsifierState::NeverRun) => "bound, never run",
        Some(FalsifierState::Failing) => "FAILING",
        Some(FalsifierState::PassStale) => "passed, stale",
        Some(FalsifierState::PassFresh) => "passes on fresh evidence",
    }
}

/// Text: each chain, then the breaks, then a one-line verdict.
pub fn text(r: &AuditReport) -> String {
    let mut s = String::new();
    for ch in &r.chains {
        let _ = writeln!(
            s,
            "{} {} <- {} [{}]",
            if ch.evidenced {
                "ok     "
            } else if ch.harnesses.iter().any(|(_, found)| *found) {
                "harness"
            } else {
                "open   "
            },
            ch.equation,
            ch.obligation,
            ch.contract
        );
        for (f, st) in &ch.falsifiers {
            let _ = writeln!(s, "       <- {f}: {}", state_str(*st));
        }
        for (h, found) in &ch.harnesses {
            let _ = writeln!(
                s,
                "       <- harness {h}: {}",
                if *found {
                    "found (not run by pv)"
                } else {
                    "NOT FOUND"
                }
            );
        }
    }
    if !r.bindings_checked {
        let _ = writeln!(
            s,
            "note: no bound-test directory was scanned, so unbound falsifiers show as never run"
        );
    }
    if r.chains.is_empty() && r.breaks.is_empty() {
        let _ = writeln!(s, "audit: no proof obligations to audit");
    } else if r.breaks.is_empty() {
        let _ = writeln!(
            s,
            "audit: {} obligations, every chain intact",
            r.chains.len()
        );
    } else {
        let _ = writeln!(s, "breaks:");
        for b in &r.breaks {
            let _ = writeln!(s, "  {b}");
        }
        let _ = writeln!(
            s,
            "audit: {} obligations, {} breaks",
            r.chains.len(),
            r.breaks.len()
        );
    }
    s
}

/// The unclaimed-code part of the text report (empty when `pv.toml` names no product binary).
pub fn product_text(product: &[crate::unclaimed::BinaryReport]) -> String {
    let mut s = String::new();
    for b in product {
        let Some(d) = &b.dep_info else {
            let _ = writeln!(
                s,
                "unclaimed code in {}: not checked, no dep-info file (build it first: cargo build --bin {})",
                b.binary, b.binary
            );
            continue;
        };
        let _ = writeln!(
            s,
            "unclaimed code in {} ({} project files compiled in, from {d}):",
            b.binary, b.files
        );
        for f in &b.unclaimed {
            let _ = writeln!(s, "  UNCLAIMED  {f}  (no contract's scope covers it)");
        }
        for (f, why) in &b.excused {
            let _ = writeln!(s, "  excused    {f}  ({why})");
        }
        if b.unclaimed.is_empty() {
            let _ = writeln!(
                s,
                "  every file is in some contract's scope or excused in pv.toml"
            );
        }
    }
    s
}

/// Pretty JSON with a trailing newline.
pub fn json(r: &AuditReport) -> String {
    let mut s = serde_json::to_string_pretty(r)
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialize the audit: {e}\"}}"));
    s.push('\n');
    s
}

/// `pv audit`: exit 0 when every chain is intact and no product file is unclaimed, 1 on any
/// break, 2 when inputs do not load.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let paths = args.locations.paths()?;
    let (set, report) = status_for(&paths).context("deriving falsifier states")?;
    let proofs = kani_proofs(&paths.root);
    let mut r = audit(&set, &report, &proofs);
    r.product = crate::unclaimed::report(
        &paths.project,
        &set,
        &crate::unclaimed::target_dir(&paths.root),
    );
    let out = match args.format {
        Format::Text => {
            text(&r)
                + &product_text(&r.product)
                + &crate::status_render::untrusted_text(&report)
                + &crate::status_render::evidence_summary(&report)
                + "\n"
        }
        Format::Json => json(&r),
    };
    crate::graph::emit(&out, args.output.as_deref())?;
    Ok(if r.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_kani_proofs_after_other_attributes() {
        let src = "#[cfg(kani)]\nmod proofs {\n    #[kani::proof]\n    #[kani::unwind(3)]\n    fn q4k_dequant() {}\n\n    #[kani::proof]\n    pub fn softmax_sums() {}\n    fn not_a_proof() {}\n}\n";
        assert_eq!(kani_proofs_in(src), vec!["q4k_dequant", "softmax_sums"]);
    }
}
