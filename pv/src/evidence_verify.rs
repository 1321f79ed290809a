//! `pv evidence verify`: the auditor's command. Reads every byte of every record and run
//! manifest (no cache) and checks, per record:
//!
//! - **run**: a run manifest lists it with the sha256 of its bytes (else `loose`, or `altered`
//!   when a manifest lists it with another digest); records a manifest lists that are gone are
//!   `missing`;
//! - **signature**: the run's signature verifies against `allowed_signers` and its signer is
//!   allowed for the record's tier (`[trust]` in pv.toml; without it, `unsigned` or `not
//!   checked` is shown and is no problem);
//! - **verdict**: recomputed from its metrics and the contract (rule 16);
//! - **git**: where git is available and the record names a commit, the commit exists and the
//!   contract file at that commit has the version the record names.
//!
//! Prints a table and a summary (or `--format json`); exits 1 on any problem.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use crate::status::{Provenance, RunSignature, StatusReport};
use crate::status_cmd::Locations;
use crate::status_load::{
    bound_tests, derive_loaded, load_contracts, load_runs_excluding, model_from_contracts,
    SourceFreshness, Trust,
};

/// `pv evidence verify` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub locations: Locations,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Do not ask git whether each record's commit and contract version exist.
    #[arg(long)]
    pub no_git: bool,
    /// List only the records with a problem (the summary still counts every record).
    #[arg(long)]
    pub problems_only: bool,
}

/// Output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table and a summary.
    #[default]
    Table,
    /// JSON: rows, runs, problems, summary.
    Json,
}

/// One record's checks.
#[derive(Debug, Clone, Serialize)]
pub struct RecordRow {
    /// Record file, relative to its evidence folder.
    pub file: String,
    /// Falsifier id.
    pub falsifier: String,
    /// `ok (RUN-ID)`, `loose`, or `altered (MANIFEST)`.
    pub run: String,
    /// `signed by ...`, `unsigned`, `not checked`, `not allowed: ...`, `broken: ...`.
    pub signature: String,
    /// `ok` or why the record is invalid or unattested.
    pub verdict: String,
    /// `ok`, `-` (not checked) or what git says.
    pub git: String,
    /// Whether any check failed.
    pub problem: bool,
}

/// One run manifest.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    /// Manifest file.
    pub manifest: String,
    /// Run id.
    pub id: String,
    /// Signature state.
    pub signature: String,
}

/// The whole verification.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Per record.
    pub records: Vec<RecordRow>,
    /// Per run.
    pub runs: Vec<RunRow>,
    /// Problems not tied to one record: unreadable files.
    pub problems: Vec<String>,
    /// Counts.
    pub summary: BTreeMap<String, usize>,
}

impl Verification {
    /// Whether everything checked out.
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.records.iter().all(|r| !r.problem)
    }
}

fn signature_text(s: &RunSignature) -> String {
    match s {
        RunSignature::Unsigned => "unsigned".to_string(),
        RunSignature::NotChecked => "signed, not checked (no [trust])".to_string(),
        RunSignature::Verified {
            principals,
            fingerprint,
        } => format!("signed by {} ({fingerprint})", principals.join(",")),
        RunSignature::NotAllowed(why) => format!("not allowed: {why}"),
        RunSignature::Broken(why) => format!("BROKEN: {why}"),
    }
}

/// Git facts about the records: `(commit, contract path) -> contract version there`, asked
/// once per pair. `None` for the whole thing: no git here.
struct GitCheck {
    repo: PathBuf,
    project_root: PathBuf,
    versions: HashMap<(String, String), Result<Option<String>, String>>,
}

impl GitCheck {
    fn new(project_root: &Path) -> Option<GitCheck> {
        Some(GitCheck {
            repo: crate::git::repo_root(project_root)?,
            project_root: project_root.to_path_buf(),
            versions: HashMap::new(),
        })
    }

    /// `Ok(())` or what is wrong with `commit` and the contract `path`'s `version`.
    fn check(&mut self, commit: &str, path: &str, version: &str) -> Result<(), String> {
        let key = (commit.to_string(), path.to_string());
        if !self.versions.contains_key(&key) {
            let found = self.version_at(commit, path);
            self.versions.insert(key.clone(), found);
        }
        match &self.versions[&key] {
            Err(e) => Err(e.clone()),
            Ok(None) => Err(format!("{path} does not exist at {}", short(commit))),
            Ok(Some(v)) if v == version => Ok(()),
            Ok(Some(v)) => Err(format!(
                "{path} at {} has version {v}, the record says {version}",
                short(commit)
            )),
        }
    }

    fn version_at(&self, commit: &str, path: &str) -> Result<Option<String>, String> {
        if !crate::git::rev_exists(&self.repo, commit) {
            return Err(format!(
                "commit {} is not in this repository",
                short(commit)
            ));
        }
        let rel = crate::git::relative(&self.repo, &self.project_root)
            .map(|r| {
                if r.is_empty() {
                    path.to_string()
                } else {
                    format!("{r}/{path}")
                }
            })
            .unwrap_or_else(|| path.to_string());
        let blobs = crate::git::show_many(&self.repo, commit, std::slice::from_ref(&rel))
            .map_err(|e| e.to_string())?;
        let Some(bytes) = blobs.get(&rel) else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(bytes);
        let loaded = pv_contract::load_str(&rel, &text)
            .map_err(|e| format!("{rel} at {} does not load: {e}", short(commit)))?;
        Ok(Some(loaded.contract.version.clone()))
    }
}

fn short(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

/// Runs every check; never stops at the first problem.
pub fn verify(locations: &Locations, use_git: bool) -> anyhow::Result<Verification> {
    let mut locations = locations.clone();
    locations.no_cache = true;
    let paths = locations.paths()?;
    let trust = Trust::for_project(&paths.project)?;
    let set = load_contracts(&paths.contracts)?;
    let model = model_from_contracts(&set, &paths.project);
    let loaded = load_runs_excluding(&paths.evidence, &[], &[], None, trust.signers.as_ref())?;
    // The run and git facts the derivation does not keep.
    let runs: Vec<(String, String, RunSignature)> = loaded
        .manifests
        .iter()
        .map(|m| (m.manifest.clone(), m.id.clone(), m.signature.clone()))
        .collect();
    let records: Vec<(String, String, Provenance, Option<String>)> = loaded
        .runs
        .iter()
        .map(|r| {
            (
                r.file.clone(),
                r.record.falsifier.clone(),
                r.provenance.clone(),
                r.record.commit.clone(),
            )
        })
        .collect();
    let tests = bound_tests(paths.tests.as_deref())?;
    let fresh = SourceFreshness::new(&paths.project);
    // Every record is judged, attested or not: verification wants every reason.
    let report: StatusReport = derive_loaded(&model, loaded, &fresh, tests, &trust, false);
    let invalid: HashMap<&str, &str> = report
        .invalid
        .iter()
        .map(|i| (i.file.as_str(), i.reason.as_str()))
        .collect();
    let unattested: HashMap<&str, &str> = report
        .unattested
        .iter()
        .map(|i| (i.file.as_str(), i.reason.as_str()))
        .collect();

    // The contract each record names, read from the record itself for the git check.
    let mut git = (use_git).then(|| GitCheck::new(&paths.root)).flatten();
    let contract_of = contract_refs(&paths.evidence);

    let mut rows = Vec::new();
    for (file, falsifier, provenance, _) in &records {
        let mut problem = false;
        let run = match provenance {
            Provenance::Run(i) => format!("ok ({})", runs[*i].1),
            Provenance::Loose => {
                problem |= !trust.count_loose;
                "LOOSE: in no run manifest".to_string()
            }
            Provenance::Altered { manifest } => {
                problem = true;
                format!("ALTERED: digest differs from {manifest}")
            }
            Provenance::Missing { manifest } => {
                problem = true;
                format!("MISSING: listed in {manifest}, the file is gone")
            }
        };
        let signature = match provenance {
            Provenance::Run(i) => signature_text(&runs[*i].2),
            _ => "-".to_string(),
        };
        let verdict = if let Some(why) = invalid.get(file.as_str()) {
            problem = true;
            format!("INVALID: {why}")
        } else if let Some(why) = unattested.get(file.as_str()) {
            problem = true;
            format!("UNATTESTED: {why}")
        } else {
            "ok".to_string()
        };
        let git_text = match (&mut git, contract_of.get(file.as_str())) {
            (Some(g), Some(c)) => match &c.commit {
                Some((commit, dirty)) => match g.check(commit, &c.path, &c.version) {
                    Ok(()) => "ok".to_string(),
                    // A dirty tree may hold a contract edit not yet committed.
                    Err(e) if *dirty => format!("note (dirty tree): {e}"),
                    Err(e) => {
                        problem = true;
                        e
                    }
                },
                None => "- (no commit recorded)".to_string(),
            },
            _ => "-".to_string(),
        };
        rows.push(RecordRow {
            file: file.clone(),
            falsifier: falsifier.clone(),
            run,
            signature,
            verdict,
            git: git_text,
            problem,
        });
    }
    let problems: Vec<String> = report
        .unreadable
        .iter()
        .map(|u| format!("unreadable: {u}"))
        .collect();
    let mut summary = BTreeMap::new();
    summary.insert("records".to_string(), rows.len());
    summary.insert(
        "records_with_problems".to_string(),
        rows.iter().filter(|r| r.problem).count(),
    );
    summary.insert("invalid".to_string(), report.invalid.len());
    summary.insert("loose".to_string(), report.loose.len());
    summary.insert("unattested".to_string(), report.unattested.len());
    summary.insert("missing".to_string(), report.missing.len());
    summary.insert("unreadable".to_string(), report.unreadable.len());
    summary.insert("runs".to_string(), runs.len());
    summary.insert("signed_runs".to_string(), report.signed_runs);
    Ok(Verification {
        records: rows,
        runs: runs
            .iter()
            .map(|(m, id, s)| RunRow {
                manifest: m.clone(),
                id: id.clone(),
                signature: signature_text(s),
            })
            .collect(),
        problems,
        summary,
    })
}

/// What a record says about its contract and checkout.
struct ContractOf {
    path: String,
    version: String,
    commit: Option<(String, bool)>,
}

/// Record file (relative to its evidence folder) -> its contract reference, for every record
/// that parses.
fn contract_refs(dirs: &[PathBuf]) -> HashMap<String, ContractOf> {
    let mut out = HashMap::new();
    for d in dirs {
        let Ok(files) = pv_evidence::store::list_record_files(d) else {
            continue;
        };
        for f in files {
            let Ok(r) = pv_evidence::store::read_record(&f) else {
                continue;
            };
            let rel = f
                .strip_prefix(d)
                .unwrap_or(&f)
                .to_string_lossy()
                .into_owned();
            out.insert(
                rel,
                ContractOf {
                    path: r.contract.path,
                    version: r.contract.version,
                    commit: r.git.map(|g| (g.commit, g.dirty)),
                },
            );
        }
    }
    out
}

/// The table (every record, or with `problems_only` those with a problem) and the summary.
pub fn text(v: &Verification, problems_only: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for r in v.records.iter().filter(|r| r.problem || !problems_only) {
        let _ = writeln!(
            out,
            "{} {} [{}]\n    run: {}\n    signature: {}\n    verdict: {}\n    git: {}",
            if r.problem { "FAIL" } else { "ok  " },
            r.file,
            r.falsifier,
            r.run,
            r.signature,
            r.verdict,
            r.git
        );
    }
    for p in &v.problems {
        let _ = writeln!(out, "FAIL {p}");
    }
    let n = |k: &str| v.summary.get(k).copied().unwrap_or(0);
    let _ = writeln!(
        out,
        "pv evidence verify: {} record(s) in {} run(s) ({} signed): {} with problems ({} invalid, {} loose, {} unattested), {} missing, {} unreadable -> {}",
        n("records"),
        n("runs"),
        n("signed_runs"),
        n("records_with_problems"),
        n("invalid"),
        n("loose"),
        n("unattested"),
        n("missing"),
        n("unreadable"),
        if v.ok() { "ok" } else { "PROBLEMS" }
    );
    out
}

/// Runs `pv evidence verify`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let v = verify(&args.locations, !args.no_git).context("verifying evidence")?;
    let out = match args.format {
        Format::Table => text(&v, args.problems_only),
        Format::Json => serde_json::to_string_pretty(&v)? + "\n",
    };
    crate::graph::emit(&out, None)?;
    Ok(if v.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
