//! The falsifier runtime: what `#[falsifier("ID")]` tests call.
//!
//! The macro embeds a [`FalsifierMeta`] (ids, thresholds, tier, gate, contract hash, `if_fails`)
//! read from the contract at compile time, and calls [`run_falsifier`] with the test body. The
//! runtime checks the gate, runs the body (a panic becomes an `error` outcome), compares every
//! reported metric with the contract's threshold, writes one evidence record, and panics on
//! `fail` or `error` so that `cargo test` fails too.

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use std::sync::Arc;

use pv_project::Project;

use crate::digest::scope_digest;
use crate::env;
use crate::record::{
    ContractRef, Counterexample, EvidenceRecord, JsonF64, MetricResult, Op, Outcome, SourceDigest,
    TestRef, Tier, RECORD_FORMAT,
};
use crate::store::{evidence_dir, write_record};
use crate::timefmt::format_rfc3339_utc;

/// A metric as the contract states it (compiled into the test by the macro).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricSpec {
    /// `snake_case` name.
    pub name: &'static str,
    /// Comparison operator.
    pub op: Op,
    /// Threshold.
    pub threshold: f64,
    /// Unit, if the contract gives one.
    pub unit: Option<&'static str>,
}

/// Everything the runtime needs to know about a falsifier, embedded by `#[falsifier]`.
#[derive(Debug, Clone, Copy)]
pub struct FalsifierMeta {
    /// `FALSIFY-...` id.
    pub id: &'static str,
    /// Contract id.
    pub contract: &'static str,
    /// Contract `version`.
    pub contract_version: &'static str,
    /// Contract file path relative to the workspace root (as the macro found it).
    pub contract_path: &'static str,
    /// sha256 of the contract file when the test was compiled.
    pub contract_sha256: &'static str,
    /// The falsifier's claim digest when the test was compiled
    /// (`pv_contract::digest::claim_digest`).
    pub falsifier_sha256: &'static str,
    /// Tier.
    pub tier: Tier,
    /// The contract's metrics.
    pub metrics: &'static [MetricSpec],
    /// `gate.devices`: each must be present at run time, else the run is skipped.
    pub devices: &'static [&'static str],
    /// `gate.fixtures`: each must be present at run time, else the run is skipped.
    pub fixtures: &'static [&'static str],
    /// `if_fails` text, quoted in the failure message.
    pub if_fails: &'static str,
    /// Test name (`module_path!()::function`).
    pub test_name: &'static str,
    /// Test file (`file!()`).
    pub test_file: &'static str,
    /// `CARGO_MANIFEST_DIR` of the test crate; the project (`pv.toml`) is found above it.
    pub manifest_dir: &'static str,
}

/// What a falsifier body returns.
pub type FalsifierResult = Result<(), FalsifierError>;

/// Why a body did not finish normally: it chose to skip, or something went wrong.
///
/// Any `std::error::Error` converts into it with `?` (an `error` outcome). It deliberately does
/// not implement `std::error::Error` itself, which is what makes that blanket conversion legal.
pub enum FalsifierError {
    /// The run was skipped (`ctx.skip`, missing fixture). Never a pass.
    Skip(String),
    /// The test could not decide.
    Error(String),
}

impl FalsifierError {
    /// An `error` outcome with this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        FalsifierError::Error(message.to_string())
    }
}

impl fmt::Debug for FalsifierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for FalsifierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FalsifierError::Skip(r) => write!(f, "skipped: {r}"),
            FalsifierError::Error(e) => f.write_str(e),
        }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for FalsifierError {
    fn from(e: E) -> Self {
        // Keep the whole cause chain: the record is read long after the process is gone.
        let mut s = e.to_string();
        let mut src = e.source();
        while let Some(c) = src {
            s.push_str(": ");
            s.push_str(&c.to_string());
            src = c.source();
        }
        FalsifierError::Error(s)
    }
}

/// Adds context to errors and turns `Option::None` into an error, for use with `?` in bodies.
pub trait ResultExt<T> {
    /// Prefixes the error with `what`.
    fn context(self, what: impl fmt::Display) -> Result<T, FalsifierError>;
}

impl<T, E: fmt::Display> ResultExt<T> for Result<T, E> {
    fn context(self, what: impl fmt::Display) -> Result<T, FalsifierError> {
        self.map_err(|e| FalsifierError::Error(format!("{what}: {e}")))
    }
}

impl<T> ResultExt<T> for Option<T> {
    fn context(self, what: impl fmt::Display) -> Result<T, FalsifierError> {
        self.ok_or_else(|| FalsifierError::Error(what.to_string()))
    }
}

/// The handle a falsifier body reports through.
pub struct Ctx {
    id: &'static str,
    project: Option<Arc<Project>>,
    metrics: Vec<(String, f64)>,
    notes: Vec<String>,
    series: BTreeMap<String, Vec<JsonF64>>,
    details: BTreeMap<String, serde_json::Value>,
    counterexample: Option<Counterexample>,
}

impl Ctx {
    fn new(meta: &FalsifierMeta, project: Option<Arc<Project>>) -> Self {
        Ctx {
            id: meta.id,
            project,
            metrics: Vec::new(),
            notes: Vec::new(),
            series: BTreeMap::new(),
            details: BTreeMap::new(),
            counterexample: None,
        }
    }

    /// Reports a metric the contract names. Report each exactly once: a second report, or a
    /// name the contract does not list, makes the outcome `error`.
    pub fn metric(&mut self, name: &str, value: f64) {
        self.metrics.push((name.to_string(), value));
    }

    /// Attaches free text to the record.
    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// Attaches a named numeric series (e.g. per-layer cosines). A repeated name replaces it.
    pub fn series(&mut self, name: &str, values: impl IntoIterator<Item = f64>) {
        self.series
            .insert(name.to_string(), values.into_iter().map(JsonF64).collect());
    }

    /// Attaches a named JSON value. A repeated name replaces it.
    pub fn detail(&mut self, name: &str, value: serde_json::Value) {
        self.details.insert(name.to_string(), value);
    }

    /// Records the (shrunk) counterexample of a failed property test in the evidence record.
    /// A second call replaces the first: a record holds one counterexample.
    pub fn counterexample(&mut self, c: Counterexample) {
        self.counterexample = Some(c);
    }

    /// An error value that marks the run `skipped` with `reason`: `return Err(ctx.skip(..))`.
    pub fn skip(&self, reason: impl Into<String>) -> FalsifierError {
        FalsifierError::Skip(reason.into())
    }

    /// What fixture `name` exports (the value of its `env` variable, or empty), or a skip with
    /// its `missing` text when it is absent. The name must be declared in `pv.toml`
    /// (`[fixtures.NAME]`); an undeclared one is an error, not a skip.
    pub fn fixture(&self, name: &str) -> Result<String, FalsifierError> {
        let project = self
            .project
            .as_ref()
            .ok_or_else(|| FalsifierError::msg("the project file (pv.toml) did not load"))?;
        let p = project.fixture(name).ok_or_else(|| {
            FalsifierError::msg(format!(
                "fixture `{name}` is not declared in {} ([fixtures.{name}])",
                project_file(project)
            ))
        })?;
        env::probe("fixture", name, p).map_err(FalsifierError::Skip)
    }

    /// The falsifier id this body runs for.
    pub fn falsifier_id(&self) -> &'static str {
        self.id
    }

    /// The project root (the folder of `pv.toml`; fixtures under the checkout are found from
    /// it).
    pub fn project_root(&self) -> &Path {
        self.project
            .as_ref()
            .map(|p| p.root.as_path())
            .unwrap_or(Path::new("."))
    }
}

fn project_file(p: &Project) -> String {
    p.file
        .as_ref()
        .map(|f| f.display().to_string())
        .unwrap_or_else(|| {
            format!(
                "{} (absent)",
                p.root.join(pv_project::PROJECT_FILE).display()
            )
        })
}

/// The verdict on the reported metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Outcome from the metrics alone (`pass`, `fail` or `error`).
    pub outcome: Outcome,
    /// One entry per contract metric.
    pub metrics: Vec<MetricResult>,
    /// Problems with the reporting itself (missing, duplicate, unknown metrics).
    pub problems: Vec<String>,
}

/// Compares reported metrics with the contract's. Pure: the rules of `docs/evidence.md`.
pub fn evaluate(specs: &[MetricSpec], reported: &[(String, f64)]) -> Evaluation {
    let mut problems = Vec::new();
    for (i, (name, _)) in reported.iter().enumerate() {
        if !specs.iter().any(|s| s.name == name) {
            let known: Vec<&str> = specs.iter().map(|s| s.name).collect();
            problems.push(format!(
                "metric `{name}` is not in the contract (it lists: {})",
                known.join(", ")
            ));
        } else if reported[..i].iter().any(|(n, _)| n == name) {
            problems.push(format!("metric `{name}` reported more than once"));
        }
    }
    let metrics: Vec<MetricResult> = specs
        .iter()
        .map(|s| {
            let value = reported.iter().find(|(n, _)| n == s.name).map(|(_, v)| *v);
            if value.is_none() {
                problems.push(format!("metric `{}` was not reported", s.name));
            }
            MetricResult {
                name: s.name.to_string(),
                value: value.map(JsonF64),
                op: s.op,
                threshold: s.threshold,
                unit: s.unit.map(str::to_string),
                passed: value.is_some_and(|v| s.op.holds(v, s.threshold)),
            }
        })
        .collect();
    let outcome = if !problems.is_empty() {
        Outcome::Error
    } else if metrics.iter().all(|m| m.passed) {
        Outcome::Pass
    } else {
        Outcome::Fail
    };
    Evaluation {
        outcome,
        metrics,
        problems,
    }
}

/// A finished run: the record and where it was written.
#[derive(Debug)]
pub struct RunReport {
    /// The record as written.
    pub record: EvidenceRecord,
    /// The file it was written to.
    pub path: PathBuf,
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// `None` when every gate is present, else `Ok(skip reason)` or `Err(error)` for a gate the
/// project does not declare (or a project that did not load).
fn gate_skip(
    meta: &FalsifierMeta,
    project: &Result<Arc<Project>, String>,
) -> Option<Result<String, String>> {
    if meta.devices.is_empty() && meta.fixtures.is_empty() {
        return None;
    }
    let project = match project {
        Ok(p) => p,
        Err(e) => return Some(Err(e.clone())),
    };
    let gates = meta
        .devices
        .iter()
        .map(|d| ("device", *d, project.device(d)))
        .chain(
            meta.fixtures
                .iter()
                .map(|f| ("fixture", *f, project.fixture(f))),
        );
    for (kind, name, probe) in gates {
        let Some(probe) = probe else {
            return Some(Err(format!(
                "{kind} `{name}` is named by the contract's gate but not declared in {} ([{kind}s.{name}])",
                project_file(project)
            )));
        };
        if let Err(why) = env::probe(kind, name, probe) {
            return Some(Ok(why));
        }
    }
    None
}

/// Runs a falsifier body and writes its record into `dir`; never panics on the outcome.
/// [`run_falsifier`] is this plus the evidence directory and the panic on fail/error.
pub fn run_falsifier_in(
    meta: &FalsifierMeta,
    dir: &Path,
    body: impl FnOnce(&mut Ctx) -> FalsifierResult,
) -> Result<RunReport, crate::store::WriteError> {
    let project = env::project(Path::new(meta.manifest_dir));
    let mut ctx = Ctx::new(meta, project.as_ref().ok().cloned());
    let start = Instant::now();
    let (outcome, reason, metrics) = match gate_skip(meta, &project) {
        Some(Ok(why)) => (
            Outcome::Skipped,
            Some(why),
            evaluate(meta.metrics, &[]).metrics,
        ),
        Some(Err(why)) => (
            Outcome::Error,
            Some(why),
            evaluate(meta.metrics, &[]).metrics,
        ),
        None => {
            let ran = panic::catch_unwind(AssertUnwindSafe(|| body(&mut ctx)));
            let eval = evaluate(meta.metrics, &ctx.metrics);
            match ran {
                Err(p) => (
                    Outcome::Error,
                    Some(format!("test panicked: {}", panic_text(&*p))),
                    eval.metrics,
                ),
                Ok(Err(FalsifierError::Skip(why))) => (Outcome::Skipped, Some(why), eval.metrics),
                Ok(Err(FalsifierError::Error(e))) => (Outcome::Error, Some(e), eval.metrics),
                Ok(Ok(())) => {
                    let reason = match eval.outcome {
                        Outcome::Error => Some(eval.problems.join("; ")),
                        Outcome::Fail => Some(
                            eval.metrics
                                .iter()
                                .filter(|m| !m.passed)
                                .map(describe_metric)
                                .collect::<Vec<_>>()
                                .join("; "),
                        ),
                        _ => None,
                    };
                    (eval.outcome, reason, eval.metrics)
                }
            }
        }
    };
    let duration_s = start.elapsed().as_secs_f64();
    let (source, git, outcome, reason) = match &project {
        Ok(p) => {
            let scope = p.scope_for(meta.contract, meta.id);
            let source = scope_digest(&p.root, scope, &p.evidence_dirs()).unwrap_or_else(|e| {
                SourceDigest {
                    // An unreadable source tree makes this record permanently stale, which is
                    // right.
                    algorithm: format!("unavailable: {e}"),
                    roots: scope.to_vec(),
                    sha256: String::new(),
                    files: 0,
                }
            });
            (source, env::git_info(&p.root), outcome, reason)
        }
        // Without a project there is no scope: the run cannot vouch for any source.
        Err(e) => (
            SourceDigest {
                algorithm: format!("unavailable: {e}"),
                roots: Vec::new(),
                sha256: String::new(),
                files: 0,
            },
            None,
            Outcome::Error,
            Some(format!("the project file did not load: {e}")),
        ),
    };
    let record = EvidenceRecord {
        format: RECORD_FORMAT,
        falsifier: meta.id.to_string(),
        contract: ContractRef {
            id: meta.contract.to_string(),
            version: meta.contract_version.to_string(),
            path: meta.contract_path.to_string(),
            sha256: meta.contract_sha256.to_string(),
            falsifier_sha256: Some(meta.falsifier_sha256.to_string()),
        },
        outcome,
        reason,
        metrics,
        tier: meta.tier,
        hardware: env::hardware(),
        git,
        source,
        rustc: env!("PV_EVIDENCE_RUSTC_VERSION").to_string(),
        timestamp: format_rfc3339_utc(SystemTime::now()),
        duration_s,
        test: TestRef {
            name: meta.test_name.to_string(),
            file: meta.test_file.to_string(),
        },
        notes: ctx.notes,
        series: ctx.series,
        details: ctx.details,
        counterexample: ctx.counterexample,
    };
    let written = write_record(dir, &record)?;
    // The record counts only as part of a run: list it in this process's manifest.
    let file = written
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let project_file = project.as_ref().ok().and_then(|p| {
        let f = p.file.as_ref()?;
        let bytes = std::fs::read(f).ok()?;
        let name = f.strip_prefix(&p.root).unwrap_or(f).display().to_string();
        Some((name, crate::manifest::sha256_hex(&bytes)))
    });
    crate::manifest::record_written(dir, &file, &written.sha256, &record, project_file).map_err(
        |source| crate::store::WriteError {
            path: dir.to_path_buf(),
            source,
        },
    )?;
    Ok(RunReport {
        record,
        path: written.path,
    })
}

/// `name = value (op threshold)` for messages.
pub fn describe_metric(m: &MetricResult) -> String {
    let unit = m
        .unit
        .as_deref()
        .map(|u| format!(" {u}"))
        .unwrap_or_default();
    match m.value {
        Some(v) => format!(
            "{} = {}{unit}, required {} {}{unit} -> {}",
            m.name,
            v,
            m.op,
            m.threshold,
            if m.passed { "ok" } else { "FAIL" }
        ),
        None => format!("{} not reported", m.name),
    }
}

/// Runs a falsifier as a test: gate, body, verdict, one record under `$PV_EVIDENCE_DIR` (default:
/// the project's local evidence folder, `pv.toml` `[evidence] local`), then a panic on `fail` or `error` naming each failing metric, its
/// value, operator and threshold, and the contract's `if_fails` text.
pub fn run_falsifier(meta: &FalsifierMeta, body: impl FnOnce(&mut Ctx) -> FalsifierResult) {
    let dir = match env::project(Path::new(meta.manifest_dir)) {
        Ok(p) => evidence_dir(&p),
        // The record (an `error`) still needs a home: the crate's own folder.
        Err(_) => evidence_dir(&Project::defaults(Path::new(meta.manifest_dir))),
    };
    let report = match run_falsifier_in(meta, &dir, body) {
        Ok(r) => r,
        // Without its record a run proves nothing; fail loudly rather than pass silently.
        Err(e) => panic!("{}: {e}", meta.id),
    };
    let rec = &report.record;
    eprintln!(
        "{} {}: {}{} [evidence {}]",
        meta.id,
        rec.outcome,
        rec.metrics
            .iter()
            .map(describe_metric)
            .collect::<Vec<_>>()
            .join("; "),
        rec.reason
            .as_deref()
            .filter(|_| rec.outcome == Outcome::Skipped)
            .map(|r| format!(" ({r})"))
            .unwrap_or_default(),
        report.path.display()
    );
    if matches!(rec.outcome, Outcome::Fail | Outcome::Error) {
        panic!("{}", failure_message(meta, &report));
    }
}

/// The message a failing falsifier test panics with.
pub fn failure_message(meta: &FalsifierMeta, report: &RunReport) -> String {
    let rec = &report.record;
    let mut s = format!(
        "{} {} (contract {} {}, {})\n",
        meta.id,
        if rec.outcome == Outcome::Fail {
            "FAILED"
        } else {
            "ERROR"
        },
        meta.contract,
        meta.contract_version,
        meta.contract_path
    );
    for m in &rec.metrics {
        s.push_str(&format!("  metric {}\n", describe_metric(m)));
    }
    if let Some(r) = &rec.reason {
        s.push_str(&format!("  reason: {r}\n"));
    }
    s.push_str(&format!("  if it fails: {}\n", meta.if_fails.trim()));
    s.push_str(&format!("  evidence: {}", report.path.display()));
    s
}
