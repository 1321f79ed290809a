//! Derived stage status: a pure function from contracts + evidence records to a status per stage.
//!
//! Nobody types a status. `docs/status.md` states the rules; each rule has a test below. The
//! inputs are plain data ([`Model`], [`Run`]) so the rules can be tested without files; the
//! loaders (`status_load`) build them from `contracts/` and `evidence/`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use pv_evidence::record::{EvidenceRecord, JsonF64, Op, Outcome, SourceDigest, Tier};
use serde::{Deserialize, Serialize};

/// A stage's derived status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StageStatus {
    /// The newest decisive run of one of its falsifiers failed (or errored).
    Failing,
    /// One of its falsifiers has no bound test in the project's test packages.
    Unimplemented,
    /// One of its falsifiers never passed (no run, or only skipped runs), or a required stage is
    /// below it.
    Pending,
    /// Every falsifier passed once, but some pass is no longer fresh (the contract or the
    /// sources under test changed since).
    Stale,
    /// Every algorithm-tier falsifier passes on fresh evidence; hardware-tier ones not yet.
    AlgorithmLevel,
    /// Every falsifier, hardware tier included, passes on fresh evidence.
    Discharged,
}

impl StageStatus {
    /// Progress level: a stage never stands above (at a higher level than) a stage it requires.
    /// FAILING, UNIMPLEMENTED and PENDING are all "not achieved" (0).
    pub fn level(self) -> u8 {
        match self {
            StageStatus::Failing | StageStatus::Unimplemented | StageStatus::Pending => 0,
            StageStatus::Stale => 1,
            StageStatus::AlgorithmLevel => 2,
            StageStatus::Discharged => 3,
        }
    }

    /// The status a stage is capped to when a required stage is at `level`.
    fn cap_for_level(level: u8) -> StageStatus {
        match level {
            0 => StageStatus::Pending,
            1 => StageStatus::Stale,
            2 => StageStatus::AlgorithmLevel,
            _ => StageStatus::Discharged,
        }
    }

    /// The name as printed and as accepted by `--require`.
    pub fn as_str(self) -> &'static str {
        match self {
            StageStatus::Failing => "FAILING",
            StageStatus::Unimplemented => "UNIMPLEMENTED",
            StageStatus::Pending => "PENDING",
            StageStatus::Stale => "STALE",
            StageStatus::AlgorithmLevel => "ALGORITHM_LEVEL",
            StageStatus::Discharged => "DISCHARGED",
        }
    }

    /// Parses a name (case-insensitive, `-` or `_`).
    pub fn parse(s: &str) -> Option<StageStatus> {
        let u = s.trim().to_ascii_uppercase().replace('-', "_");
        [
            StageStatus::Failing,
            StageStatus::Unimplemented,
            StageStatus::Pending,
            StageStatus::Stale,
            StageStatus::AlgorithmLevel,
            StageStatus::Discharged,
        ]
        .into_iter()
        .find(|st| st.as_str() == u)
    }
}

impl fmt::Display for StageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the evidence says about one falsifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FalsifierState {
    /// No bound test.
    Unimplemented,
    /// No decisive run (none at all, or only skipped ones).
    NeverRun,
    /// The newest decisive run is `fail` or `error`.
    Failing,
    /// Passed, but no pass newer than the last failure is fresh.
    PassStale,
    /// A fresh pass exists, newer than every failure.
    PassFresh,
}

/// The contracts as the status rules need them.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// Contracts in display order.
    pub contracts: Vec<ContractModel>,
}

/// One contract.
#[derive(Debug, Clone, Default)]
pub struct ContractModel {
    /// Contract id.
    pub id: String,
    /// `version`.
    pub version: String,
    /// File path as loaded (for messages).
    pub path: String,
    /// sha256 of the contract file as it is now.
    pub sha256: String,
    /// Acceptance criteria (for the traceability report).
    pub criteria: Vec<CriterionModel>,
    /// Stages in file order.
    pub stages: Vec<StageModel>,
    /// Falsifiers in file order.
    pub falsifiers: Vec<FalsifierModel>,
    /// Known divergences.
    pub divergences: Vec<DivergenceModel>,
}

/// An acceptance criterion.
#[derive(Debug, Clone, Default)]
pub struct CriterionModel {
    /// `AC-...`.
    pub id: String,
    /// Text.
    pub text: String,
    /// Falsifier ids.
    pub falsifiers: Vec<String>,
}

/// A stage.
#[derive(Debug, Clone, Default)]
pub struct StageModel {
    /// `M-...`.
    pub id: String,
    /// Title.
    pub title: String,
    /// Required stage ids (any contract).
    pub requires: Vec<String>,
    /// Falsifier ids.
    pub falsifiers: Vec<String>,
}

/// A falsifier.
#[derive(Debug, Clone)]
pub struct FalsifierModel {
    /// `FALSIFY-...`.
    pub id: String,
    /// Tier.
    pub tier: Tier,
    /// Retirement reason, if retired.
    pub retired: Option<String>,
    /// Metric names in contract order (the first is the stage's key metric).
    pub metrics: Vec<String>,
    /// The claim digest now (`pv_contract::digest::claim_digest`).
    pub claim_sha256: String,
    /// `(name, op, threshold)` of each metric now, in contract order: what a record's verdict
    /// is recomputed against (rule 16).
    pub thresholds: Vec<(String, Op, f64)>,
    /// The source scope configured now (`pv.toml`).
    pub scope: Vec<String>,
}

/// A known divergence.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DivergenceModel {
    /// Falsifier id.
    pub falsifier: String,
    /// Where it shows.
    pub scope: String,
    /// `benign` | `not-benign`.
    pub classification: String,
}

/// One evidence record as loaded, with its ordering key.
#[derive(Debug, Clone)]
pub struct Run {
    /// Path relative to the evidence root (the tie-breaker after the timestamp).
    pub file: String,
    /// Timestamp in ns since the epoch.
    pub ts: i128,
    /// What the rules and reports need of the record.
    pub record: RunRecord,
    /// Which run wrote it, as far as the manifests say (rule 17).
    pub provenance: Provenance,
}

/// Where a record stands with the run manifests (rule 17).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    /// Listed, with the digest of its bytes, in the manifest of `Inputs::runs[i]`.
    Run(usize),
    /// Listed in no manifest.
    Loose,
    /// Listed in this manifest with another digest: changed after its run wrote it.
    Altered {
        /// The manifest (relative to its evidence directory).
        manifest: String,
    },
    /// Listed in this manifest, but the file is gone: the [`Run`] is a placeholder made from
    /// the manifest's summary of the record (falsifier, outcome, test, metrics).
    Missing {
        /// The manifest (relative to its evidence directory).
        manifest: String,
    },
}

/// A run, as its manifest says and its signature proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFacts {
    /// The manifest file (relative to its evidence directory).
    pub manifest: String,
    /// Run id.
    pub id: String,
    /// Start, ns since the epoch: runs are ordered by it.
    pub started: i128,
    /// What its signatures establish.
    pub signature: RunSignature,
}

/// What a run's signatures establish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunSignature {
    /// No signature.
    Unsigned,
    /// Signatures present, but no trust policy to check them against.
    NotChecked,
    /// A signature verified against `allowed_signers`: the principal patterns of the key.
    Verified {
        /// Principal patterns of the `allowed_signers` lines that accept the key.
        principals: Vec<String>,
        /// The key's fingerprint.
        fingerprint: String,
    },
    /// Signed, but by no key `allowed_signers` accepts (UNATTESTED, not INVALID: the bytes may
    /// be intact, nobody trusted vouches for them).
    NotAllowed(String),
    /// A signature that does not verify: the manifest changed after it was signed (INVALID).
    Broken(String),
}

/// The trust policy (`pv.toml` `[trust]`): who may vouch for which tier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustPolicy {
    /// Identities whose signature vouches for algorithm-tier records.
    pub algorithm: Vec<String>,
    /// Identities whose signature vouches for hardware-tier records.
    pub hardware: Vec<String>,
    /// Count attested records only.
    pub require_attested: bool,
}

/// The part of an [`EvidenceRecord`] that status derivation and reports use (kept small so that
/// 100,000 of them load fast and cache compactly).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Falsifier id.
    pub falsifier: String,
    /// Contract file hash at compile time.
    pub contract_sha256: String,
    /// The falsifier's claim digest at compile time (format 2 on).
    #[serde(default)]
    pub falsifier_sha256: Option<String>,
    /// Outcome.
    pub outcome: Outcome,
    /// Reason.
    pub reason: Option<String>,
    /// (name, finite value, passed) per contract metric.
    pub metrics: Vec<(String, Option<f64>, bool)>,
    /// (operator, threshold, value as recorded, non-finite included) per metric, parallel to
    /// `metrics`: what the verdict is recomputed from.
    #[serde(default)]
    pub checks: Vec<(Op, f64, Option<JsonF64>)>,
    /// The test that wrote it (`module::function`).
    #[serde(default)]
    pub test: String,
    /// Source digest.
    pub source: SourceDigest,
    /// RFC 3339 timestamp.
    pub timestamp: String,
    /// Short commit (+dirty).
    pub commit: Option<String>,
    /// CPU model and GPU names.
    pub hardware: String,
}

impl From<EvidenceRecord> for RunRecord {
    fn from(r: EvidenceRecord) -> Self {
        let mut hardware = r
            .hardware
            .cpu_model
            .clone()
            .unwrap_or_else(|| r.hardware.platform.clone());
        for g in &r.hardware.gpus {
            hardware.push_str(" + ");
            hardware.push_str(&g.name);
        }
        RunRecord {
            falsifier: r.falsifier,
            contract_sha256: r.contract.sha256,
            falsifier_sha256: r.contract.falsifier_sha256,
            outcome: r.outcome,
            reason: r.reason,
            checks: r
                .metrics
                .iter()
                .map(|m| (m.op, m.threshold, m.value))
                .collect(),
            test: r.test.name,
            metrics: r
                .metrics
                .into_iter()
                .map(|m| {
                    (
                        m.name,
                        m.value.map(|v| v.0).filter(|v| v.is_finite()),
                        m.passed,
                    )
                })
                .collect(),
            source: r.source,
            timestamp: r.timestamp,
            commit: r.git.map(|g| {
                format!(
                    "{}{}",
                    g.commit.get(..10).unwrap_or(&g.commit),
                    if g.dirty { "+dirty" } else { "" }
                )
            }),
            hardware,
        }
    }
}

/// The facts about the checkout that decide freshness.
pub trait Freshness {
    /// Whether the record's source digest equals the digest of the same roots now.
    fn source_fresh(&self, digest: &SourceDigest) -> bool;
}

impl<F: Fn(&SourceDigest) -> bool> Freshness for F {
    fn source_fresh(&self, digest: &SourceDigest) -> bool {
        self(digest)
    }
}

/// Options of one derivation.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Ids of falsifiers with a bound test; `None` skips the UNIMPLEMENTED rule (no tests dir).
    pub bound: Option<HashSet<String>>,
    /// "Now" in ns since the epoch, for ages and the future-timestamp rule.
    pub now: i128,
    /// Falsifier id -> the function bound to it (rule 16: a record must come from that test);
    /// `None`: not checked.
    pub test_functions: Option<HashMap<String, String>>,
    /// The runs [`Provenance::Run`] indexes.
    pub runs: Vec<RunFacts>,
    /// Count loose records (migration; `pv.toml` `[evidence] loose = "count"`).
    pub count_loose: bool,
    /// The trust policy, if the project sets one.
    pub trust: Option<TrustPolicy>,
}

/// A run as shown in reports.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    /// Record file (relative to the evidence root).
    pub file: String,
    /// RFC 3339 timestamp.
    pub timestamp: String,
    /// ns since the epoch.
    #[serde(skip)]
    pub ts: i128,
    /// Outcome.
    pub outcome: Outcome,
    /// Whether both the contract hash and the source digest match the checkout.
    pub fresh: bool,
    /// Why it is not fresh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_because: Option<String>,
    /// Reason recorded with the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Metric name -> value (None = not reported or not finite).
    pub metrics: Vec<(String, Option<f64>, bool)>,
    /// Git commit (short) and dirty flag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// CPU model / GPU names.
    pub hardware: String,
}

/// Derived facts about one falsifier.
#[derive(Debug, Clone, Serialize)]
pub struct FalsifierReport {
    /// Id.
    pub id: String,
    /// Tier.
    pub tier: Tier,
    /// State.
    pub state: FalsifierState,
    /// Whether a bound test was found (None: not checked).
    pub bound: Option<bool>,
    /// Skipped runs (never a pass).
    pub skipped_runs: usize,
    /// Decisive runs, oldest first.
    pub runs: Vec<RunView>,
    /// Known divergences of this falsifier (shown, never turning a failure into a pass).
    pub divergences: Vec<DivergenceModel>,
}

impl FalsifierReport {
    /// The newest decisive run.
    pub fn latest(&self) -> Option<&RunView> {
        self.runs.last()
    }
}

/// Derived status of one stage.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    /// Stage id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Effective status (after the `requires` cap).
    pub status: StageStatus,
    /// Status from its own falsifiers alone.
    pub own_status: StageStatus,
    /// The required stage that capped it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capped_by: Option<String>,
    /// Required stages.
    pub requires: Vec<String>,
    /// Live falsifiers passing on fresh evidence.
    pub passed: usize,
    /// Live (not retired) falsifiers.
    pub total: usize,
    /// Newest timestamp of any decisive run of its falsifiers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freshest: Option<String>,
    /// Age of that run in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_s: Option<f64>,
    /// `name=value (op threshold)` of the first metric of its first falsifier, newest run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_metric: Option<String>,
    /// Its live falsifiers.
    pub falsifiers: Vec<String>,
}

/// One contract's stages.
#[derive(Debug, Clone, Serialize)]
pub struct ContractReport {
    /// Contract id.
    pub id: String,
    /// Version.
    pub version: String,
    /// Stages in file order.
    pub stages: Vec<StageReport>,
}

/// The whole derivation.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// Per contract.
    pub contracts: Vec<ContractReport>,
    /// Per falsifier (live ones), by id.
    pub falsifiers: BTreeMap<String, FalsifierReport>,
    /// Live falsifiers with no bound test.
    pub unbound: Vec<String>,
    /// Warnings: records of unknown falsifiers, unknown or cyclic `requires`.
    pub warnings: Vec<String>,
    /// Records that could not be read (reported and skipped).
    pub unreadable: Vec<String>,
    /// Records that contradict themselves, the contract or their run (rules 16 and 17): they
    /// count for nothing.
    pub invalid: Vec<InvalidRecord>,
    /// Records in no run manifest (rule 17): counted only when `count_loose`.
    pub loose: Vec<String>,
    /// Whether loose records were counted (migration), which every dashboard says.
    pub loose_counted: bool,
    /// Records no allowed signer vouches for (rule 18), when a trust policy is set; counted
    /// unless the policy requires attestation.
    pub unattested: Vec<InvalidRecord>,
    /// Whether unattested records were left out.
    pub attested_only: bool,
    /// Records a manifest lists that are not there (`manifest: file`).
    pub missing: Vec<String>,
    /// Runs read, and how many of them carry a verified signature.
    pub runs: usize,
    /// Runs whose signature verified against `allowed_signers`.
    pub signed_runs: usize,
    /// Number of records considered.
    pub records: usize,
}

/// A record that counts for nothing, and why (rule 16).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidRecord {
    /// Record file (relative to its evidence directory).
    pub file: String,
    /// The falsifier it names.
    pub falsifier: String,
    /// What is wrong with it.
    pub reason: String,
}

/// How far in the future a record's timestamp may lie (clock skew between machines).
pub const FUTURE_SKEW_NS: i128 = 300 * 1_000_000_000;

/// Rule 16: why a record of falsifier `f` is invalid, if it is. `claim_current`: the record was
/// written against the claim as it is now (so its thresholds must be the contract's).
pub fn invalid_because(
    rec: &RunRecord,
    ts: i128,
    f: &FalsifierModel,
    claim_current: bool,
    inputs: &Inputs,
) -> Option<String> {
    if ts > inputs.now + FUTURE_SKEW_NS {
        return Some(format!(
            "stamped {} in the future ({}), beyond the {} s allowed for clock skew",
            fmt_age(((ts - inputs.now) / 1_000_000_000) as f64),
            rec.timestamp,
            FUTURE_SKEW_NS / 1_000_000_000
        ));
    }
    if let Some(bound) = inputs.test_functions.as_ref().and_then(|t| t.get(&f.id)) {
        let function = rec.test.rsplit("::").next().unwrap_or("");
        if function != bound {
            return Some(format!(
                "written by test `{}`, but the test bound to {} is `{bound}`",
                rec.test, f.id
            ));
        }
    }
    if !matches!(rec.outcome, Outcome::Pass | Outcome::Fail) {
        return None;
    }
    if rec.checks.len() != rec.metrics.len() {
        return Some("its metrics carry no operators or thresholds".to_string());
    }
    // The thresholds to judge by: the contract's when the record is about the claim as it is
    // now; otherwise (an older claim) the record's own, checked for consistency only.
    if claim_current {
        for (name, op, threshold) in &f.thresholds {
            let Some(i) = rec.metrics.iter().position(|m| &m.0 == name) else {
                return Some(format!("lacks metric `{name}`, which {} requires", f.id));
            };
            let (rop, rthr, _) = rec.checks[i];
            if rop != *op || rthr != *threshold {
                return Some(format!(
                    "states `{name} {rop} {rthr}`, but the contract says `{name} {op} {threshold}`"
                ));
            }
        }
        if let Some(extra) = rec
            .metrics
            .iter()
            .find(|m| !f.thresholds.iter().any(|t| t.0 == m.0))
        {
            return Some(format!(
                "reports metric `{}`, which {} does not list",
                extra.0, f.id
            ));
        }
    }
    if rec.metrics.is_empty() {
        return Some(format!("says {} with no metric at all", rec.outcome));
    }
    let mut all = true;
    for ((name, _, passed), (op, threshold, value)) in rec.metrics.iter().zip(&rec.checks) {
        let holds = value.is_some_and(|v| op.holds(v.0, *threshold));
        if holds != *passed {
            return Some(format!(
                "marks `{name}` {} but {} {op} {threshold} is {holds}",
                if *passed { "passed" } else { "failed" },
                value.map_or("no value".to_string(), |v| v.0.to_string()),
            ));
        }
        all &= holds;
    }
    let recomputed = if all { Outcome::Pass } else { Outcome::Fail };
    (recomputed != rec.outcome)
        .then(|| format!("says {} but its metrics give {recomputed}", rec.outcome))
}

impl StatusReport {
    /// Every stage, with its contract id.
    pub fn stages(&self) -> impl Iterator<Item = (&str, &StageReport)> {
        self.contracts
            .iter()
            .flat_map(|c| c.stages.iter().map(move |s| (c.id.as_str(), s)))
    }

    /// The stage with this id.
    pub fn stage(&self, id: &str) -> Option<&StageReport> {
        self.stages().map(|(_, s)| s).find(|s| s.id == id)
    }
}

fn falsifier_state(runs: &[RunView], bound: Option<bool>) -> FalsifierState {
    if bound == Some(false) {
        return FalsifierState::Unimplemented;
    }
    let Some(latest) = runs.last() else {
        return FalsifierState::NeverRun;
    };
    if latest.outcome != Outcome::Pass {
        return FalsifierState::Failing;
    }
    // Passes newer than the newest failure: is any of them fresh?
    let last_fail = runs.iter().rposition(|r| r.outcome != Outcome::Pass);
    let since = last_fail.map_or(0, |i| i + 1);
    if runs[since..].iter().any(|r| r.fresh) {
        FalsifierState::PassFresh
    } else {
        FalsifierState::PassStale
    }
}

/// The status from a stage's own live falsifiers (rules 1-6 of `docs/status.md`).
pub fn own_status(states: &[(Tier, FalsifierState)]) -> StageStatus {
    use FalsifierState as F;
    if states.is_empty() {
        return StageStatus::Pending;
    }
    if states.iter().any(|(_, s)| *s == F::Failing) {
        return StageStatus::Failing;
    }
    if states.iter().any(|(_, s)| *s == F::Unimplemented) {
        return StageStatus::Unimplemented;
    }
    let algo: Vec<F> = states
        .iter()
        .filter(|(t, _)| *t == Tier::Algorithm)
        .map(|(_, s)| *s)
        .collect();
    let hw: Vec<F> = states
        .iter()
        .filter(|(t, _)| *t == Tier::Hardware)
        .map(|(_, s)| *s)
        .collect();
    // A stage with only hardware-tier falsifiers has no algorithm level to reach.
    let first = if algo.is_empty() { &hw } else { &algo };
    if first.contains(&F::NeverRun) {
        return StageStatus::Pending;
    }
    if first.contains(&F::PassStale) {
        return StageStatus::Stale;
    }
    if hw.iter().all(|s| *s == F::PassFresh) {
        StageStatus::Discharged
    } else {
        StageStatus::AlgorithmLevel
    }
}

/// Derives every stage's status. Deterministic: runs are ordered by timestamp, then file name.
pub fn derive(model: &Model, runs: &[Run], fresh: &dyn Freshness, inputs: &Inputs) -> StatusReport {
    let mut warnings = Vec::new();
    let mut defs: HashMap<&str, &FalsifierModel> = HashMap::new();
    for c in &model.contracts {
        for f in &c.falsifiers {
            defs.insert(f.id.as_str(), f);
        }
    }

    // Group runs by falsifier, in deterministic order: the order of the runs that wrote them
    // (their start), then their own time, then the file name.
    let run_start = |r: &Run| match r.provenance {
        Provenance::Run(i) => inputs.runs.get(i).map_or(r.ts, |f| f.started),
        _ => r.ts,
    };
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by(|&a, &b| {
        run_start(&runs[a])
            .cmp(&run_start(&runs[b]))
            .then_with(|| runs[a].ts.cmp(&runs[b].ts))
            .then_with(|| runs[a].file.cmp(&runs[b].file))
    });
    let mut by_f: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut unknown: BTreeMap<&str, usize> = BTreeMap::new();
    for i in order {
        let id = runs[i].record.falsifier.as_str();
        match defs.get(id) {
            Some(f) if f.retired.is_some() => {} // retired: excluded
            Some(_) => by_f.entry(id).or_default().push(i),
            None => *unknown.entry(id).or_default() += 1,
        }
    }
    for (id, n) in &unknown {
        warnings.push(format!(
            "{n} evidence record(s) for {id}, which no contract defines (invalid)"
        ));
    }
    let mut invalid: Vec<InvalidRecord> = runs
        .iter()
        .filter(|r| !defs.contains_key(r.record.falsifier.as_str()))
        .map(|r| InvalidRecord {
            file: r.file.clone(),
            falsifier: r.record.falsifier.clone(),
            reason: "names a falsifier that no contract defines".to_string(),
        })
        .collect();

    let missing: Vec<String> = runs
        .iter()
        .filter_map(|r| match &r.provenance {
            Provenance::Missing { manifest } => Some(format!("{manifest}: {}", r.file)),
            _ => None,
        })
        .collect();
    // Loose is a fact about the file, whatever it names (rule 17).
    let mut loose: Vec<String> = runs
        .iter()
        .filter(|r| r.provenance == Provenance::Loose)
        .map(|r| r.file.clone())
        .collect();
    let mut unattested = Vec::new();

    // Source freshness is the same for every record with the same digest: compute it once each.
    let mut source_cache: HashMap<(&str, &[String], &str), bool> = HashMap::new();

    let mut falsifiers = BTreeMap::new();
    let mut unbound = Vec::new();
    for c in &model.contracts {
        for f in c.falsifiers.iter().filter(|f| f.retired.is_none()) {
            let mut views = Vec::new();
            let mut skipped = 0;
            for &i in by_f.get(f.id.as_str()).map(Vec::as_slice).unwrap_or(&[]) {
                let r = &runs[i];
                let rec = &r.record;
                // Format 2 records carry the claim digest; format 1 records fall back to the
                // whole contract file.
                let contract_fresh = match &rec.falsifier_sha256 {
                    Some(d) => *d == f.claim_sha256,
                    None => rec.contract_sha256 == c.sha256,
                };
                let invalid_reason = run_invalid_because(&r.provenance, inputs)
                    .or_else(|| invalid_because(rec, r.ts, f, contract_fresh, inputs));
                if let Some(reason) = invalid_reason {
                    // A run that vouched for this record produced *some* result for `f` here;
                    // with the record invalid, altered or gone, that result is unknown, so no
                    // older pass may stand in for it (rule 17: tampering with a failure never
                    // turns it into the previous pass). A loose record vouches for nothing.
                    if r.provenance != Provenance::Loose {
                        views.push(RunView {
                            file: r.file.clone(),
                            timestamp: rec.timestamp.clone(),
                            ts: r.ts,
                            outcome: Outcome::Error,
                            fresh: true,
                            stale_because: None,
                            reason: Some(format!("INVALID record: {reason}")),
                            metrics: Vec::new(),
                            commit: rec.commit.clone(),
                            hardware: rec.hardware.clone(),
                        });
                    }
                    invalid.push(InvalidRecord {
                        file: r.file.clone(),
                        falsifier: f.id.clone(),
                        reason,
                    });
                    continue;
                }
                if r.provenance == Provenance::Loose && !inputs.count_loose {
                    continue;
                }
                if let Some(policy) = &inputs.trust {
                    if let Some(reason) = unattested_because(&r.provenance, f.tier, policy, inputs)
                    {
                        unattested.push(InvalidRecord {
                            file: r.file.clone(),
                            falsifier: f.id.clone(),
                            reason,
                        });
                        if policy.require_attested {
                            continue;
                        }
                    }
                }
                if rec.outcome == Outcome::Skipped {
                    skipped += 1;
                    continue;
                }
                let key = (
                    rec.source.algorithm.as_str(),
                    rec.source.roots.as_slice(),
                    rec.source.sha256.as_str(),
                );
                // A scope-digest record must have digested the scope configured now.
                let scope_moved = rec.source.algorithm == pv_evidence::digest::DIGEST_ALGORITHM
                    && rec.source.roots != f.scope;
                let src_fresh = !scope_moved
                    && *source_cache
                        .entry(key)
                        .or_insert_with(|| fresh.source_fresh(&rec.source));
                let mut why = Vec::new();
                if !contract_fresh {
                    why.push(match rec.falsifier_sha256 {
                        Some(_) => "claim changed",
                        None => "contract changed",
                    });
                }
                if scope_moved {
                    why.push("scope changed");
                } else if !src_fresh {
                    why.push("sources changed");
                }
                let stale_because = (!why.is_empty()).then(|| why.join(", "));
                views.push(RunView {
                    file: r.file.clone(),
                    timestamp: rec.timestamp.clone(),
                    ts: r.ts,
                    outcome: rec.outcome,
                    fresh: stale_because.is_none(),
                    stale_because,
                    reason: rec.reason.clone(),
                    metrics: rec.metrics.clone(),
                    commit: rec.commit.clone(),
                    hardware: rec.hardware.clone(),
                });
            }
            let bound = inputs.bound.as_ref().map(|b| b.contains(&f.id));
            if bound == Some(false) {
                unbound.push(f.id.clone());
            }
            let state = falsifier_state(&views, bound);
            falsifiers.insert(
                f.id.clone(),
                FalsifierReport {
                    id: f.id.clone(),
                    tier: f.tier,
                    state,
                    bound,
                    skipped_runs: skipped,
                    runs: views,
                    divergences: c
                        .divergences
                        .iter()
                        .filter(|d| d.falsifier == f.id)
                        .cloned()
                        .collect(),
                },
            );
        }
    }

    // Own status per stage.
    let mut own: HashMap<&str, StageStatus> = HashMap::new();
    for c in &model.contracts {
        for s in &c.stages {
            let states: Vec<(Tier, FalsifierState)> = s
                .falsifiers
                .iter()
                .filter_map(|id| falsifiers.get(id))
                .map(|f: &FalsifierReport| (f.tier, f.state))
                .collect();
            own.insert(s.id.as_str(), own_status(&states));
        }
    }
    let requires: HashMap<&str, &[String]> = model
        .contracts
        .iter()
        .flat_map(|c| c.stages.iter())
        .map(|s| (s.id.as_str(), s.requires.as_slice()))
        .collect();

    // Effective status: capped by every required stage's effective status (memoised DFS).
    let mut effective: HashMap<String, (StageStatus, Option<String>)> = HashMap::new();
    let mut ids: Vec<&str> = own.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        let mut visiting = Vec::new();
        effective_status(
            id,
            &own,
            &requires,
            &mut effective,
            &mut visiting,
            &mut warnings,
        );
    }

    let mut contracts = Vec::new();
    for c in &model.contracts {
        let mut stages = Vec::new();
        for s in &c.stages {
            let (status, capped_by) = effective
                .get(&s.id)
                .cloned()
                .unwrap_or((StageStatus::Pending, None));
            let live: Vec<&FalsifierReport> = s
                .falsifiers
                .iter()
                .filter_map(|id| falsifiers.get(id))
                .collect();
            let passed = live
                .iter()
                .filter(|f| f.state == FalsifierState::PassFresh)
                .count();
            let newest = live.iter().filter_map(|f| f.latest()).max_by_key(|r| r.ts);
            // A failing stage shows what fails: the first failing metric of its first failing
            // falsifier; any other stage the first metric of its first falsifier.
            let failing = live.iter().find(|f| f.state == FalsifierState::Failing);
            let key_metric = failing.or(live.first()).and_then(|f| {
                let run = f.latest()?;
                let (name, value, passed) = run
                    .metrics
                    .iter()
                    .find(|m| failing.is_some() && !m.2)
                    .or(run.metrics.first())?;
                Some(format!(
                    "{name}={}{}",
                    value.map_or("n/a".to_string(), fmt_num),
                    if *passed { "" } else { " (fails)" }
                ))
            });
            stages.push(StageReport {
                id: s.id.clone(),
                title: s.title.clone(),
                status,
                own_status: own[s.id.as_str()],
                capped_by,
                requires: s.requires.clone(),
                passed,
                total: live.len(),
                freshest: newest.map(|r| r.timestamp.clone()),
                age_s: newest.map(|r| ((inputs.now - r.ts) as f64 / 1e9).max(0.0)),
                key_metric,
                falsifiers: live.iter().map(|f| f.id.clone()).collect(),
            });
        }
        contracts.push(ContractReport {
            id: c.id.clone(),
            version: c.version.clone(),
            stages,
        });
    }
    StatusReport {
        contracts,
        falsifiers,
        unbound,
        warnings,
        unreadable: Vec::new(),
        invalid: {
            invalid.sort_by(|a, b| a.file.cmp(&b.file));
            invalid
        },
        loose: {
            loose.sort();
            loose
        },
        loose_counted: inputs.count_loose,
        unattested: {
            unattested.sort_by(|a, b| a.file.cmp(&b.file));
            unattested
        },
        attested_only: inputs.trust.as_ref().is_some_and(|t| t.require_attested),
        missing,
        runs: inputs.runs.len(),
        signed_runs: inputs
            .runs
            .iter()
            .filter(|r| matches!(r.signature, RunSignature::Verified { .. }))
            .count(),
        records: runs
            .iter()
            .filter(|r| !matches!(r.provenance, Provenance::Missing { .. }))
            .count(),
    }
}

/// Rule 17: why a record is invalid because of its run, if it is: changed after its manifest
/// was written, its run's signature broken, or its run stamped in the future.
pub fn run_invalid_because(p: &Provenance, inputs: &Inputs) -> Option<String> {
    let run = match p {
        Provenance::Loose => return None,
        Provenance::Altered { manifest } => {
            return Some(format!(
                "changed after its run wrote it (its digest differs from the one in {manifest})"
            ))
        }
        Provenance::Missing { manifest } => {
            return Some(format!(
                "MISSING: listed in its run's manifest {manifest}, but the file is gone"
            ))
        }
        Provenance::Run(i) => inputs.runs.get(*i)?,
    };
    if let RunSignature::Broken(why) = &run.signature {
        return Some(format!(
            "its run's manifest {} has a signature that does not verify ({why}): the manifest changed after it was signed",
            run.manifest
        ));
    }
    (run.started > inputs.now + FUTURE_SKEW_NS).then(|| {
        format!(
            "its run ({}) is stamped {} in the future",
            run.manifest,
            fmt_age(((run.started - inputs.now) / 1_000_000_000) as f64)
        )
    })
}

/// Rule 18: why no allowed signer vouches for a record of `tier`, if none does.
pub fn unattested_because(
    p: &Provenance,
    tier: Tier,
    policy: &TrustPolicy,
    inputs: &Inputs,
) -> Option<String> {
    let Provenance::Run(i) = p else {
        return Some("in no run manifest".to_string());
    };
    let Some(run) = inputs.runs.get(*i) else {
        return Some("in no run manifest".to_string());
    };
    let allowed = match tier {
        Tier::Algorithm => &policy.algorithm,
        Tier::Hardware => &policy.hardware,
    };
    match &run.signature {
        RunSignature::Unsigned => Some(format!("its run ({}) is unsigned", run.manifest)),
        RunSignature::NotChecked => Some(format!(
            "its run's signature ({}) was not checked",
            run.manifest
        )),
        RunSignature::NotAllowed(why) | RunSignature::Broken(why) => {
            Some(format!("its run ({}): {why}", run.manifest))
        }
        RunSignature::Verified {
            principals,
            fingerprint,
        } => {
            let verified = pv_attest::Verified {
                principals: principals.clone(),
                fingerprint: fingerprint.clone(),
            };
            let vouches = allowed.iter().any(|id| verified.vouches_as(id));
            (!vouches).then(|| {
                format!(
                    "its run ({}) is signed by {fingerprint} ({}), which [trust] does not allow for {tier}-tier records",
                    run.manifest,
                    principals.join(", ")
                )
            })
        }
    }
}

fn effective_status(
    id: &str,
    own: &HashMap<&str, StageStatus>,
    requires: &HashMap<&str, &[String]>,
    memo: &mut HashMap<String, (StageStatus, Option<String>)>,
    visiting: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> StageStatus {
    if let Some((s, _)) = memo.get(id) {
        return *s;
    }
    let Some(&mine) = own.get(id) else {
        // Required but defined nowhere: nothing can vouch for it.
        return StageStatus::Pending;
    };
    visiting.push(id.to_string());
    let mut status = mine;
    let mut capped_by = None;
    for req in requires.get(id).copied().unwrap_or(&[]) {
        if visiting.iter().any(|v| v == req) {
            warnings.push(format!(
                "stage {id} requires {req}, which requires {id} again (cycle ignored)"
            ));
            continue;
        }
        if !own.contains_key(req.as_str()) {
            warnings.push(format!(
                "stage {id} requires {req}, which no contract defines (treated as PENDING)"
            ));
        }
        let r = effective_status(req, own, requires, memo, visiting, warnings);
        if r.level() < status.level() {
            status = StageStatus::cap_for_level(r.level());
            capped_by = Some(req.clone());
        }
    }
    visiting.pop();
    memo.insert(id.to_string(), (status, capped_by));
    status
}

/// A compact number for tables.
pub fn fmt_num(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.abs() >= 1e-3 && v.abs() < 1e6 {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.3e}")
    }
}

/// `3m`, `2h`, `5d` style age.
pub fn fmt_age(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
