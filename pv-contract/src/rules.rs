//! Semantic rules over a whole contract set, with stable codes (documented in docs/rules.md).

/// The stable diagnostic codes.
pub mod codes {
    /// The file is not valid YAML (syntax, tab indentation, not UTF-8, several documents).
    pub const YAML: &str = "PV001";
    /// The document does not match the contract format (type, missing/unknown field, enum).
    pub const SCHEMA: &str = "PV002";
    /// An input limit was exceeded (file size, nesting depth, alias expansion).
    pub const LIMIT: &str = "PV003";
    /// The same key twice in one mapping.
    pub const DUPLICATE_KEY: &str = "PV004";
    /// The file is empty or holds only comments.
    pub const EMPTY: &str = "PV005";
    /// A path could not be read, or holds no contract.
    pub const IO: &str = "PV006";
    /// An id does not match the pattern for its kind.
    pub const ID_PATTERN: &str = "PV010";
    /// The file name is not `<contract-id>.yaml`.
    pub const FILE_NAME: &str = "PV011";
    /// An id is defined twice (across all contracts).
    pub const DUPLICATE_ID: &str = "PV012";
    /// A stage names a falsifier that does not exist in its contract.
    pub const STAGE_FALSIFIER: &str = "PV013";
    /// A stage requires a stage that does not exist.
    pub const STAGE_REQUIRES: &str = "PV014";
    /// An acceptance criterion names a falsifier that does not exist.
    pub const CRITERION_FALSIFIER: &str = "PV015";
    /// A known divergence names a falsifier that does not exist.
    pub const DIVERGENCE_FALSIFIER: &str = "PV016";
    /// `depends_on` names a contract that does not exist.
    pub const DEPENDS_CONTRACT: &str = "PV017";
    /// `depends_on` has an invalid requirement, or the contract's version does not satisfy it.
    pub const DEPENDS_VERSION: &str = "PV018";
    /// Stages require each other in a cycle.
    pub const STAGE_CYCLE: &str = "PV019";
    /// A `status` key: status is derived from evidence, never written.
    pub const STATUS: &str = "PV020";
    /// A version is not a semantic version.
    pub const SEMVER: &str = "PV021";
    /// `version` differs from the newest amendment's version.
    pub const VERSION_MISMATCH: &str = "PV022";
    /// Amendment versions are not strictly increasing.
    pub const AMENDMENT_ORDER: &str = "PV023";
    /// An amendment date is invalid or earlier than the previous one.
    pub const AMENDMENT_DATE: &str = "PV024";
    /// The amendment history is empty.
    pub const AMENDMENT_EMPTY: &str = "PV025";
    /// A metric name is not snake_case.
    pub const METRIC_NAME: &str = "PV030";
    /// A metric operator is not one of <, <=, >, >=, ==.
    pub const METRIC_OP: &str = "PV031";
    /// A metric threshold is not a finite number.
    pub const METRIC_THRESHOLD: &str = "PV032";
    /// A falsifier lists the same metric twice.
    pub const METRIC_DUPLICATE: &str = "PV033";
    /// A stage names a retired falsifier.
    pub const RETIRED_IN_USE: &str = "PV034";
    /// (warning) A live falsifier is named by no stage and no criterion.
    pub const ORPHAN_FALSIFIER: &str = "PV035";
    /// (warning) A live falsifier lists no metric, so only an error can fail it.
    pub const NO_METRICS: &str = "PV036";
    /// (warning) A stage names no falsifier, so its status can never be derived.
    pub const EMPTY_STAGE: &str = "PV037";
    /// `--since`: the contract changed but its version did not move forward.
    pub const SINCE_VERSION: &str = "PV040";
    /// `--since`: an amendment entry was edited or removed.
    pub const SINCE_AMENDMENT: &str = "PV041";
    /// `--since`: a falsifier was deleted instead of retired.
    pub const SINCE_DELETED: &str = "PV042";
    /// A proof obligation names no falsifier and no harness.
    pub const OBLIGATION_UNDISCHARGED: &str = "PV050";
    /// A proof obligation names an equation that does not exist.
    pub const OBLIGATION_EQUATION: &str = "PV051";
    /// A proof obligation names a falsifier that does not exist.
    pub const OBLIGATION_FALSIFIER: &str = "PV052";
    /// A proof obligation is discharged by a retired falsifier.
    pub const OBLIGATION_RETIRED: &str = "PV053";
    /// A harness name is not a Rust path of snake_case segments.
    pub const HARNESS_NAME: &str = "PV054";
    /// A proof obligation's tolerance is negative or not finite.
    pub const OBLIGATION_TOLERANCE: &str = "PV055";
    /// (warning) An equation is named by no proof obligation.
    pub const ORPHAN_EQUATION: &str = "PV056";
    /// An obligation's generators: case count, number of inputs, input names.
    pub const GENERATORS: &str = "PV057";
    /// A generator input's fields do not fit its kind, or its range or length is invalid.
    pub const GENERATOR_INPUT: &str = "PV058";
    /// An obligation with generators names no falsifier to run its property test.
    pub const GENERATORS_UNBOUND: &str = "PV059";
    /// A gate names a device or fixture that the project file does not declare.
    pub const GATE_UNDECLARED: &str = "PV060";
    /// The project file's scopes name an unknown contract or falsifier, or select no file.
    pub const SCOPE: &str = "PV061";
}

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::diag::{Diagnostic, Severity};
use crate::load::{ContractSet, Loaded};
use crate::path;
use crate::source::{SourceFile, Span};
use crate::yaml::Seg;

/// One row of the rules table: code, severity, one-line summary.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Stable code.
    pub code: &'static str,
    /// Default severity.
    pub severity: Severity,
    /// What the rule checks.
    pub summary: &'static str,
}

const fn rule(code: &'static str, severity: Severity, summary: &'static str) -> Rule {
    Rule {
        code,
        severity,
        summary,
    }
}

/// What the project file (`pv.toml`) declares, for the project rules ([`check_project`]).
#[derive(Debug, Clone, Default)]
pub struct Declared {
    /// The project file, for messages (`pv.toml`, or a note that there is none).
    pub file: String,
    /// Declared device names.
    pub devices: Vec<String>,
    /// Declared fixture names.
    pub fixtures: Vec<String>,
}

/// PV060: every `gate.devices` / `gate.fixtures` entry of a live falsifier names something the
/// project declares (`[devices.NAME]`, `[fixtures.NAME]`), located at the entry.
pub fn check_project(set: &ContractSet, declared: &Declared) -> Vec<Diagnostic> {
    let mut cx = Ctx { out: Vec::new() };
    for e in set.entries() {
        for (fi, f) in e.contract.falsifiers.iter().enumerate() {
            if !f.is_live() {
                continue;
            }
            for (kind, key, names, known) in [
                ("device", "devices", &f.gate.devices, &declared.devices),
                ("fixture", "fixtures", &f.gate.fixtures, &declared.fixtures),
            ] {
                for (i, name) in names.iter().enumerate() {
                    if known.contains(name) {
                        continue;
                    }
                    let listed = if known.is_empty() {
                        format!("it declares no {key}")
                    } else {
                        format!("it declares: {}", known.join(", "))
                    };
                    let d = cx.err(
                        codes::GATE_UNDECLARED,
                        e,
                        &path!["falsifiers", fi, "gate", key, i],
                        format!(
                            "{} names {kind} `{name}`, which {} does not declare ({listed})",
                            f.id, declared.file
                        ),
                        "undeclared",
                    );
                    help(
                        d,
                        format!(
                            "declare it in pv.toml: [{key}.{name}] with `probe = [...]` (a command that exits 0 when it is present) and `missing = \"how to provide it\"`; docs/project-file.md"
                        ),
                    );
                }
            }
        }
    }
    let mut out = cx.out;
    sort_diagnostics(&mut out);
    out
}

/// Every rule `pv validate` applies, in code order. docs/rules.md documents each one.
pub const RULES: &[Rule] = &[
    rule(
        codes::YAML,
        Severity::Error,
        "the file is valid UTF-8 YAML with one document",
    ),
    rule(
        codes::SCHEMA,
        Severity::Error,
        "the document matches the contract format (JSON Schema and types)",
    ),
    rule(
        codes::LIMIT,
        Severity::Error,
        "input limits: file size, nesting depth, alias expansion",
    ),
    rule(
        codes::DUPLICATE_KEY,
        Severity::Error,
        "no key appears twice in one mapping",
    ),
    rule(codes::EMPTY, Severity::Error, "the file is not empty"),
    rule(
        codes::IO,
        Severity::Error,
        "the paths can be read and hold contracts",
    ),
    rule(
        codes::ID_PATTERN,
        Severity::Error,
        "ids match the pattern of their kind",
    ),
    rule(
        codes::FILE_NAME,
        Severity::Error,
        "the file is named <contract-id>.yaml",
    ),
    rule(
        codes::DUPLICATE_ID,
        Severity::Error,
        "ids are unique across all contracts",
    ),
    rule(
        codes::STAGE_FALSIFIER,
        Severity::Error,
        "a stage's falsifiers exist",
    ),
    rule(
        codes::STAGE_REQUIRES,
        Severity::Error,
        "a stage's required stages exist",
    ),
    rule(
        codes::CRITERION_FALSIFIER,
        Severity::Error,
        "an acceptance criterion's falsifiers exist",
    ),
    rule(
        codes::DIVERGENCE_FALSIFIER,
        Severity::Error,
        "a known divergence's falsifier exists",
    ),
    rule(
        codes::DEPENDS_CONTRACT,
        Severity::Error,
        "depends_on names an existing contract",
    ),
    rule(
        codes::DEPENDS_VERSION,
        Severity::Error,
        "depends_on's requirement is valid semver and satisfied",
    ),
    rule(
        codes::STAGE_CYCLE,
        Severity::Error,
        "stage requirements have no cycle",
    ),
    rule(
        codes::STATUS,
        Severity::Error,
        "no `status` key anywhere: status is derived from evidence",
    ),
    rule(
        codes::SEMVER,
        Severity::Error,
        "versions are semantic versions",
    ),
    rule(
        codes::VERSION_MISMATCH,
        Severity::Error,
        "version equals the newest amendment's version",
    ),
    rule(
        codes::AMENDMENT_ORDER,
        Severity::Error,
        "amendment versions strictly increase",
    ),
    rule(
        codes::AMENDMENT_DATE,
        Severity::Error,
        "amendment dates are valid YYYY-MM-DD and never decrease",
    ),
    rule(
        codes::AMENDMENT_EMPTY,
        Severity::Error,
        "the amendment history has at least one entry",
    ),
    rule(
        codes::METRIC_NAME,
        Severity::Error,
        "metric names are snake_case",
    ),
    rule(
        codes::METRIC_OP,
        Severity::Error,
        "metric op is one of <, <=, >, >=, ==",
    ),
    rule(
        codes::METRIC_THRESHOLD,
        Severity::Error,
        "metric thresholds are finite numbers",
    ),
    rule(
        codes::METRIC_DUPLICATE,
        Severity::Error,
        "a falsifier lists each metric once",
    ),
    rule(
        codes::RETIRED_IN_USE,
        Severity::Error,
        "no stage names a retired falsifier",
    ),
    rule(
        codes::ORPHAN_FALSIFIER,
        Severity::Warning,
        "a live falsifier is named by some stage or criterion",
    ),
    rule(
        codes::NO_METRICS,
        Severity::Warning,
        "a live falsifier lists at least one metric",
    ),
    rule(
        codes::EMPTY_STAGE,
        Severity::Warning,
        "a stage names at least one falsifier",
    ),
    rule(
        codes::SINCE_VERSION,
        Severity::Error,
        "--since: a changed contract moves its version forward",
    ),
    rule(
        codes::SINCE_AMENDMENT,
        Severity::Error,
        "--since: existing amendment entries are never edited or removed",
    ),
    rule(
        codes::SINCE_DELETED,
        Severity::Error,
        "--since: falsifiers are retired, never deleted",
    ),
    rule(
        codes::OBLIGATION_UNDISCHARGED,
        Severity::Error,
        "a proof obligation is discharged by at least one falsifier or harness",
    ),
    rule(
        codes::OBLIGATION_EQUATION,
        Severity::Error,
        "a proof obligation's equation exists",
    ),
    rule(
        codes::OBLIGATION_FALSIFIER,
        Severity::Error,
        "a proof obligation's falsifiers exist",
    ),
    rule(
        codes::OBLIGATION_RETIRED,
        Severity::Error,
        "no proof obligation is discharged by a retired falsifier",
    ),
    rule(
        codes::HARNESS_NAME,
        Severity::Error,
        "harness names are Rust paths of snake_case segments",
    ),
    rule(
        codes::OBLIGATION_TOLERANCE,
        Severity::Error,
        "a proof obligation's tolerance is a finite number >= 0",
    ),
    rule(
        codes::ORPHAN_EQUATION,
        Severity::Warning,
        "an equation is named by some proof obligation",
    ),
    rule(
        codes::GENERATORS,
        Severity::Error,
        "generators run 1..=100000 cases over 1 to 12 inputs with unique snake_case names",
    ),
    rule(
        codes::GENERATOR_INPUT,
        Severity::Error,
        "a generator input has the fields its kind needs, with a valid range and length",
    ),
    rule(
        codes::GENERATORS_UNBOUND,
        Severity::Error,
        "an obligation with generators is discharged by a falsifier (its property test)",
    ),
    rule(
        codes::GATE_UNDECLARED,
        Severity::Error,
        "every device and fixture a gate names is declared in the project file (pv.toml)",
    ),
    rule(
        codes::SCOPE,
        Severity::Error,
        "the project file's scopes name known contracts and falsifiers and each pattern selects a file",
    ),
];

/// Which kind of id, for pattern checks and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// `quant-kernels-v1`
    Contract,
    /// `AC-QK-001`
    Criterion,
    /// `M-QK-1.1`
    Stage,
    /// `FALSIFY-QK-DEQ-001`
    Falsifier,
    /// `EQ-QK-Q4K-DEQUANT`
    Equation,
    /// `PO-QK-Q4K-001`
    Obligation,
}

impl IdKind {
    /// Human name.
    pub fn name(self) -> &'static str {
        match self {
            IdKind::Contract => "contract id",
            IdKind::Criterion => "acceptance criterion id",
            IdKind::Stage => "stage id",
            IdKind::Falsifier => "falsifier id",
            IdKind::Equation => "equation id",
            IdKind::Obligation => "proof obligation id",
        }
    }

    /// "a" or "an", for the name in running text.
    pub fn article(self) -> &'static str {
        match self {
            IdKind::Criterion | IdKind::Equation => "an",
            _ => "a",
        }
    }

    /// The expected shape, for help lines.
    pub fn shape(self) -> &'static str {
        match self {
            IdKind::Contract => {
                "lowercase words joined by '-', ending in -v<major>, e.g. quant-kernels-v1"
            }
            IdKind::Criterion => "AC-<AREA>-<NNN>, e.g. AC-QK-001",
            IdKind::Stage => "M-<AREA>-<major>.<minor>, e.g. M-QK-1.1",
            IdKind::Falsifier => "FALSIFY-<AREA>-<WORDS>-<NNN>, e.g. FALSIFY-QK-DEQ-001",
            IdKind::Equation => "EQ-<AREA>-<WORDS>, e.g. EQ-QK-Q4K-DEQUANT",
            IdKind::Obligation => "PO-<AREA>-<NNN>, e.g. PO-QK-Q4K-001",
        }
    }

    /// Whether `id` matches the pattern (the same language as the schema's regex).
    pub fn matches(self, id: &str) -> bool {
        let upper = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        };
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        let parts: Vec<&str> = id.split('-').collect();
        match self {
            IdKind::Contract => {
                let lower = |p: &str| {
                    !p.is_empty()
                        && p.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                };
                parts.len() >= 2
                    && parts[0]
                        .bytes()
                        .next()
                        .is_some_and(|b| b.is_ascii_lowercase())
                    && parts[..parts.len() - 1].iter().all(|p| lower(p))
                    && parts[parts.len() - 1].strip_prefix('v').is_some_and(digits)
            }
            IdKind::Equation => {
                parts.len() >= 2 && parts[0] == "EQ" && parts[1..].iter().all(|p| upper(p))
            }
            IdKind::Criterion | IdKind::Falsifier | IdKind::Obligation => {
                let head = match self {
                    IdKind::Criterion => "AC",
                    IdKind::Obligation => "PO",
                    _ => "FALSIFY",
                };
                parts.len() >= 3
                    && parts[0] == head
                    && parts[1..parts.len() - 1].iter().all(|p| upper(p))
                    && parts[parts.len() - 1].len() >= 3
                    && digits(parts[parts.len() - 1])
            }
            IdKind::Stage => {
                parts.len() >= 3
                    && parts[0] == "M"
                    && parts[1..parts.len() - 1].iter().all(|p| upper(p))
                    && parts[parts.len() - 1]
                        .split_once('.')
                        .is_some_and(|(a, b)| digits(a) && digits(b))
            }
        }
    }
}

/// Whether `name` is snake_case: `^[a-z][a-z0-9]*(_[a-z0-9]+)*$`.
pub fn is_snake_case(name: &str) -> bool {
    name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name.split('_').all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Whether `date` is a real calendar date written `YYYY-MM-DD`.
pub fn is_valid_date(date: &str) -> bool {
    let b = date.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = &date[r];
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// Where an id is defined, for duplicate reports.
struct Def<'a> {
    entry: &'a Loaded,
    kind: IdKind,
    index: usize,
}

/// Path of the id field of the `index`-th item of a kind.
fn id_path(kind: IdKind, index: usize) -> Vec<Seg> {
    match kind {
        IdKind::Contract => path!["contract"].to_vec(),
        IdKind::Criterion => path!["acceptance_criteria", index, "id"].to_vec(),
        IdKind::Stage => path!["stages", index, "id"].to_vec(),
        IdKind::Falsifier => path!["falsifiers", index, "id"].to_vec(),
        IdKind::Equation => path!["equations", index, "id"].to_vec(),
        IdKind::Obligation => path!["proof_obligations", index, "id"].to_vec(),
    }
}

struct Ctx {
    out: Vec<Diagnostic>,
}

impl Ctx {
    fn err(
        &mut self,
        code: &'static str,
        e: &Loaded,
        path: &[Seg],
        message: String,
        label: &str,
    ) -> &mut Diagnostic {
        let span = e.tree.span_of(path);
        self.out
            .push(Diagnostic::error(code, &e.source, span, message, label));
        let last = self.out.len() - 1;
        &mut self.out[last]
    }
}

fn help(d: &mut Diagnostic, text: impl Into<String>) {
    d.help = Some(text.into());
}

fn secondary(d: &mut Diagnostic, source: &Arc<SourceFile>, span: Span, text: &str) {
    d.secondary.push(crate::diag::Label {
        source: Arc::clone(source),
        span,
        message: text.to_string(),
    });
}

/// Runs every semantic rule (PV010-PV037, PV050-PV056) over the set. Diagnostics come sorted by file, then
/// position, then code.
pub fn check(set: &ContractSet) -> Vec<Diagnostic> {
    let mut cx = Ctx { out: Vec::new() };
    check_ids(set, &mut cx);
    for e in set.entries() {
        check_references(set, e, &mut cx);
        check_versions(set, e, &mut cx);
        check_metrics(e, &mut cx);
        check_usage(e, &mut cx);
        check_obligations(set, e, &mut cx);
    }
    check_cycles(set, &mut cx);
    let mut out = cx.out;
    sort_diagnostics(&mut out);
    out
}

/// Sorts by file, line, column, code (the order `pv validate` prints).
pub fn sort_diagnostics(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| {
        let key = |d: &Diagnostic| {
            (
                d.file.clone(),
                d.primary.as_ref().map(|l| l.span.start),
                d.code,
            )
        };
        key(a).cmp(&key(b))
    });
}

fn check_ids(set: &ContractSet, cx: &mut Ctx) {
    // Where each id was first seen; the path is only built when a diagnostic needs it (this
    // loop runs over every id of every contract).
    let mut seen: HashMap<&str, Def<'_>> = HashMap::new();
    for e in set.entries() {
        let c = &e.contract;
        let ids = std::iter::once((IdKind::Contract, c.contract.as_str(), 0))
            .chain(
                c.acceptance_criteria
                    .iter()
                    .enumerate()
                    .map(|(i, a)| (IdKind::Criterion, a.id.as_str(), i)),
            )
            .chain(
                c.stages
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (IdKind::Stage, s.id.as_str(), i)),
            )
            .chain(
                c.falsifiers
                    .iter()
                    .enumerate()
                    .map(|(i, f)| (IdKind::Falsifier, f.id.as_str(), i)),
            )
            .chain(
                c.equations
                    .iter()
                    .enumerate()
                    .map(|(i, q)| (IdKind::Equation, q.id.as_str(), i)),
            )
            .chain(
                c.proof_obligations
                    .iter()
                    .enumerate()
                    .map(|(i, o)| (IdKind::Obligation, o.id.as_str(), i)),
            );
        for (kind, id, index) in ids {
            if !kind.matches(id) {
                let d = cx.err(
                    codes::ID_PATTERN,
                    e,
                    &id_path(kind, index),
                    format!("`{id}` is not a valid {}", kind.name()),
                    "does not match the pattern",
                );
                help(
                    d,
                    format!(
                        "{} {} looks like {}",
                        kind.article(),
                        kind.name(),
                        kind.shape()
                    ),
                );
            }
            if let Some(first) = seen.get(id) {
                let first_span = first.entry.tree.span_of(&id_path(first.kind, first.index));
                let first_src = Arc::clone(&first.entry.source);
                let d = cx.err(
                    codes::DUPLICATE_ID,
                    e,
                    &id_path(kind, index),
                    format!("`{id}` is defined more than once"),
                    "defined again here",
                );
                secondary(d, &first_src, first_span, "first defined here");
                help(d, "ids are unique across all contracts; rename one of them");
            } else {
                seen.insert(
                    id,
                    Def {
                        entry: e,
                        kind,
                        index,
                    },
                );
            }
        }
        // File name: `<contract-id>.yaml` (or .yml).
        let stem = e
            .source
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if stem != c.contract {
            let d = cx.err(
                codes::FILE_NAME,
                e,
                &path!["contract"],
                format!(
                    "the file is named `{stem}` but the contract id is `{}`",
                    c.contract
                ),
                "contract id",
            );
            help(d, format!("rename the file to {}.yaml", c.contract));
        }
    }
}

fn check_references(set: &ContractSet, e: &Loaded, cx: &mut Ctx) {
    let c = &e.contract;
    let missing_falsifier_help = |id: &str| -> String {
        let near = set
            .falsifiers()
            .map(|(_, f)| f.id.as_str())
            .min_by_key(|cand| edit_distance(cand, id));
        match near {
            Some(n) if edit_distance(n, id) <= 3 => format!("did you mean `{n}`?"),
            _ => "define the falsifier under `falsifiers:` or fix the id".to_string(),
        }
    };
    for (si, s) in c.stages.iter().enumerate() {
        for (fi, fid) in s.falsifiers.iter().enumerate() {
            if set.falsifier(fid).is_none() {
                let h = missing_falsifier_help(fid);
                let d = cx.err(
                    codes::STAGE_FALSIFIER,
                    e,
                    &path!["stages", si, "falsifiers", fi],
                    format!("stage `{}` names unknown falsifier `{fid}`", s.id),
                    "no such falsifier",
                );
                help(d, h);
            }
        }
        for (ri, rid) in s.requires.iter().enumerate() {
            if set.stage(rid).is_none() {
                let near = set
                    .stages()
                    .map(|(_, s)| s.id.as_str())
                    .min_by_key(|cand| edit_distance(cand, rid));
                let h = match near {
                    Some(n) if edit_distance(n, rid) <= 2 => format!("did you mean `{n}`?"),
                    _ => "`requires` names stages of this or another loaded contract".into(),
                };
                let d = cx.err(
                    codes::STAGE_REQUIRES,
                    e,
                    &path!["stages", si, "requires", ri],
                    format!("stage `{}` requires unknown stage `{rid}`", s.id),
                    "no such stage",
                );
                help(d, h);
            }
        }
    }
    for (ai, a) in c.acceptance_criteria.iter().enumerate() {
        for (fi, fid) in a.falsifiers.iter().enumerate() {
            if set.falsifier(fid).is_none() {
                let h = missing_falsifier_help(fid);
                let d = cx.err(
                    codes::CRITERION_FALSIFIER,
                    e,
                    &path!["acceptance_criteria", ai, "falsifiers", fi],
                    format!(
                        "acceptance criterion `{}` names unknown falsifier `{fid}`",
                        a.id
                    ),
                    "no such falsifier",
                );
                help(d, h);
            }
        }
    }
    for (ki, k) in c.known_divergences.iter().enumerate() {
        if set.falsifier(&k.falsifier).is_none() {
            let h = missing_falsifier_help(&k.falsifier);
            let d = cx.err(
                codes::DIVERGENCE_FALSIFIER,
                e,
                &path!["known_divergences", ki, "falsifier"],
                format!("known divergence names unknown falsifier `{}`", k.falsifier),
                "no such falsifier",
            );
            help(d, h);
        }
    }
    for (di, dep) in c.depends_on.iter().enumerate() {
        let Some(other) = set.contract(&dep.contract) else {
            let d = cx.err(
                codes::DEPENDS_CONTRACT,
                e,
                &path!["depends_on", di, "contract"],
                format!("depends on unknown contract `{}`", dep.contract),
                "no such contract",
            );
            help(
                d,
                "validate the directory holding all contracts, or fix the id",
            );
            continue;
        };
        match semver::VersionReq::parse(&dep.version) {
            Err(err) => {
                let d = cx.err(
                    codes::DEPENDS_VERSION,
                    e,
                    &path!["depends_on", di, "version"],
                    format!("`{}` is not a semver requirement: {err}", dep.version),
                    "invalid requirement",
                );
                help(d, "write a requirement such as \">=0.1.0\" or \"^1.2\"");
            }
            Ok(req) => {
                if let Some(v) = other.semver() {
                    if !req.matches(&v) {
                        let d = cx.err(
                            codes::DEPENDS_VERSION,
                            e,
                            &path!["depends_on", di, "version"],
                            format!(
                                "`{}` is at version {v}, which does not satisfy `{}`",
                                dep.contract, dep.version
                            ),
                            "requirement not met",
                        );
                        help(
                            d,
                            "update the requirement after checking this contract still holds \
                             against the new version",
                        );
                    }
                }
            }
        }
    }
}

fn check_versions(_set: &ContractSet, e: &Loaded, cx: &mut Ctx) {
    let c = &e.contract;
    let version = semver::Version::parse(&c.version);
    if let Err(err) = &version {
        let d = cx.err(
            codes::SEMVER,
            e,
            &path!["version"],
            format!("`{}` is not a semantic version: {err}", c.version),
            "not semver",
        );
        help(d, "write MAJOR.MINOR.PATCH, e.g. 0.1.0");
    }
    let Some(last) = c.amendment_history.last() else {
        let d = cx.err(
            codes::AMENDMENT_EMPTY,
            e,
            &path!["amendment_history"],
            "the amendment history is empty".into(),
            "no entry",
        );
        help(
            d,
            "add the first entry: version, date, summary (pv new does this)",
        );
        return;
    };
    let mut prev: Option<(usize, semver::Version)> = None;
    let mut prev_date: Option<(usize, &str)> = None;
    for (i, a) in c.amendment_history.iter().enumerate() {
        match semver::Version::parse(&a.version) {
            Err(err) => {
                cx.err(
                    codes::SEMVER,
                    e,
                    &path!["amendment_history", i, "version"],
                    format!("`{}` is not a semantic version: {err}", a.version),
                    "not semver",
                );
            }
            Ok(v) => {
                if let Some((pi, pv)) = &prev {
                    if v <= *pv {
                        let ps = e.tree.span_of(&path!["amendment_history", *pi, "version"]);
                        let src = Arc::clone(&e.source);
                        let d = cx.err(
                            codes::AMENDMENT_ORDER,
                            e,
                            &path!["amendment_history", i, "version"],
                            format!("amendment version {v} does not come after {pv}"),
                            "not greater than the previous entry",
                        );
                        secondary(d, &src, ps, "previous entry");
                        help(
                            d,
                            "amendments are appended in order; each one bumps the version",
                        );
                    }
                }
                prev = Some((i, v));
            }
        }
        if !is_valid_date(&a.date) {
            let d = cx.err(
                codes::AMENDMENT_DATE,
                e,
                &path!["amendment_history", i, "date"],
                format!("`{}` is not a date", a.date),
                "expected YYYY-MM-DD",
            );
            help(d, "write the date as YYYY-MM-DD, e.g. 2026-11-22");
        } else {
            if let Some((pi, pd)) = prev_date {
                if a.date.as_str() < pd {
                    let ps = e.tree.span_of(&path!["amendment_history", pi, "date"]);
                    let src = Arc::clone(&e.source);
                    let d = cx.err(
                        codes::AMENDMENT_DATE,
                        e,
                        &path!["amendment_history", i, "date"],
                        format!(
                            "amendment date {} is earlier than the previous {pd}",
                            a.date
                        ),
                        "earlier than the previous entry",
                    );
                    secondary(d, &src, ps, "previous entry");
                }
            }
            prev_date = Some((i, a.date.as_str()));
        }
    }
    let matches = match (&version, semver::Version::parse(&last.version)) {
        (Ok(v), Ok(l)) => *v == l,
        _ => c.version == last.version,
    };
    if !matches {
        let li = c.amendment_history.len() - 1;
        let ls = e.tree.span_of(&path!["amendment_history", li, "version"]);
        let src = Arc::clone(&e.source);
        let d = cx.err(
            codes::VERSION_MISMATCH,
            e,
            &path!["version"],
            format!(
                "version {} differs from the newest amendment's version {}",
                c.version, last.version
            ),
            "contract version",
        );
        secondary(d, &src, ls, "newest amendment");
        help(
            d,
            "every version change gets an amendment entry: use `pv amend`",
        );
    }
}

fn check_metrics(e: &Loaded, cx: &mut Ctx) {
    for (fi, f) in e.contract.falsifiers.iter().enumerate() {
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (mi, m) in f.metrics.iter().enumerate() {
            if !is_snake_case(&m.name) {
                let d = cx.err(
                    codes::METRIC_NAME,
                    e,
                    &path!["falsifiers", fi, "metrics", mi, "name"],
                    format!("metric name `{}` is not snake_case", m.name),
                    "not snake_case",
                );
                help(
                    d,
                    "lowercase letters and digits joined by '_', e.g. max_abs_diff",
                );
            }
            if !m.threshold.is_finite() {
                let d = cx.err(
                    codes::METRIC_THRESHOLD,
                    e,
                    &path!["falsifiers", fi, "metrics", mi, "threshold"],
                    format!("the threshold of `{}` is not a finite number", m.name),
                    "not finite",
                );
                help(
                    d,
                    "a threshold nothing can fail (.inf, .nan) decides nothing",
                );
            }
            if let Some(&first) = names.get(m.name.as_str()) {
                let fs = e
                    .tree
                    .span_of(&path!["falsifiers", fi, "metrics", first, "name"]);
                let src = Arc::clone(&e.source);
                let d = cx.err(
                    codes::METRIC_DUPLICATE,
                    e,
                    &path!["falsifiers", fi, "metrics", mi, "name"],
                    format!("`{}` lists metric `{}` twice", f.id, m.name),
                    "listed again here",
                );
                secondary(d, &src, fs, "first listed here");
            } else {
                names.insert(&m.name, mi);
            }
        }
    }
}

fn check_usage(e: &Loaded, cx: &mut Ctx) {
    let c = &e.contract;
    let mut used: HashSet<&str> = HashSet::new();
    for (si, s) in c.stages.iter().enumerate() {
        if s.falsifiers.is_empty() {
            let d = cx.err(
                codes::EMPTY_STAGE,
                e,
                &path!["stages", si, "id"],
                format!("stage `{}` names no falsifier", s.id),
                "no falsifiers",
            );
            d.severity = Severity::Warning;
            help(d, "a stage's status is derived from its falsifiers; without any it stays UNIMPLEMENTED");
        }
        for (fi, fid) in s.falsifiers.iter().enumerate() {
            used.insert(fid);
            if let Some(f) = c.falsifier(fid) {
                if let Some(reason) = &f.retired {
                    let fidx = c.falsifiers.iter().position(|x| x.id == *fid).unwrap_or(0);
                    let rs = e.tree.span_of(&path!["falsifiers", fidx, "retired"]);
                    let src = Arc::clone(&e.source);
                    let d = cx.err(
                        codes::RETIRED_IN_USE,
                        e,
                        &path!["stages", si, "falsifiers", fi],
                        format!(
                            "stage `{}` names retired falsifier `{fid}` ({reason})",
                            s.id
                        ),
                        "retired",
                    );
                    secondary(d, &src, rs, "retired here");
                    help(
                        d,
                        "name the falsifier that replaces it, or drop it from the stage",
                    );
                }
            }
        }
    }
    for a in &c.acceptance_criteria {
        used.extend(a.falsifiers.iter().map(String::as_str));
    }
    for (fi, f) in c.falsifiers.iter().enumerate() {
        if !f.is_live() {
            continue;
        }
        if !used.contains(f.id.as_str()) {
            let d = cx.err(
                codes::ORPHAN_FALSIFIER,
                e,
                &path!["falsifiers", fi, "id"],
                format!(
                    "falsifier `{}` is named by no stage and no acceptance criterion",
                    f.id
                ),
                "unused",
            );
            d.severity = Severity::Warning;
            help(
                d,
                "name it from the stage or criterion it decides, or retire it",
            );
        }
        if f.metrics.is_empty() {
            let d = cx.err(
                codes::NO_METRICS,
                e,
                &path!["falsifiers", fi, "id"],
                format!("falsifier `{}` lists no metric", f.id),
                "no metrics",
            );
            d.severity = Severity::Warning;
            help(
                d,
                "without a metric only an error can fail the test; state the threshold here",
            );
        }
    }
}

/// Whether `name` is a Rust path of snake_case segments (`mycrate::proofs::sum_is_one`).
pub fn is_harness_name(name: &str) -> bool {
    name.split("::").all(|seg| {
        seg.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
            && seg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    })
}

/// PV050-PV056: proof obligations are discharged by something that exists and is live, name an
/// equation that exists, and every equation is the subject of some obligation.
fn check_obligations(set: &ContractSet, e: &Loaded, cx: &mut Ctx) {
    let c = &e.contract;
    for (oi, o) in c.proof_obligations.iter().enumerate() {
        if o.discharged_by.is_empty() {
            let d = cx.err(
                codes::OBLIGATION_UNDISCHARGED,
                e,
                &path!["proof_obligations", oi, "id"],
                format!(
                    "proof obligation `{}` is discharged by no falsifier and no harness",
                    o.id
                ),
                "nothing discharges it",
            );
            help(
                d,
                "name the falsifiers that test it under `discharged_by: {falsifiers: [...]}` \
                 (or a proof harness under `harnesses:`)",
            );
        }
        if set.equation(&o.equation).is_none() {
            let near = set
                .equations()
                .map(|(_, q)| q.id.as_str())
                .min_by_key(|cand| edit_distance(cand, &o.equation));
            let h = match near {
                Some(n) if edit_distance(n, &o.equation) <= 3 => format!("did you mean `{n}`?"),
                _ => "define the equation under `equations:` or fix the id".to_string(),
            };
            let d = cx.err(
                codes::OBLIGATION_EQUATION,
                e,
                &path!["proof_obligations", oi, "equation"],
                format!(
                    "proof obligation `{}` names unknown equation `{}`",
                    o.id, o.equation
                ),
                "no such equation",
            );
            help(d, h);
        }
        for (fi, fid) in o.discharged_by.falsifiers.iter().enumerate() {
            match set.falsifier(fid) {
                None => {
                    let near = set
                        .falsifiers()
                        .map(|(_, f)| f.id.as_str())
                        .min_by_key(|cand| edit_distance(cand, fid));
                    let h = match near {
                        Some(n) if edit_distance(n, fid) <= 3 => format!("did you mean `{n}`?"),
                        _ => "define the falsifier under `falsifiers:` or fix the id".to_string(),
                    };
                    let d = cx.err(
                        codes::OBLIGATION_FALSIFIER,
                        e,
                        &path!["proof_obligations", oi, "discharged_by", "falsifiers", fi],
                        format!(
                            "proof obligation `{}` names unknown falsifier `{fid}`",
                            o.id
                        ),
                        "no such falsifier",
                    );
                    help(d, h);
                }
                Some((_, f)) => {
                    if let Some(reason) = &f.retired {
                        let d = cx.err(
                            codes::OBLIGATION_RETIRED,
                            e,
                            &path!["proof_obligations", oi, "discharged_by", "falsifiers", fi],
                            format!(
                                "proof obligation `{}` is discharged by retired falsifier `{fid}` ({reason})",
                                o.id
                            ),
                            "retired",
                        );
                        help(
                            d,
                            "a retired falsifier produces no evidence; name the one that replaces it",
                        );
                    }
                }
            }
        }
        for (hi, h) in o.discharged_by.harnesses.iter().enumerate() {
            if !is_harness_name(h) {
                let d = cx.err(
                    codes::HARNESS_NAME,
                    e,
                    &path!["proof_obligations", oi, "discharged_by", "harnesses", hi],
                    format!("harness name `{h}` is not a Rust path"),
                    "not a Rust path",
                );
                help(
                    d,
                    "write the harness function's path, snake_case segments joined by '::', \
                     e.g. mycrate::proofs::sum_is_one",
                );
            }
        }
        if let Some(t) = o.tolerance {
            if !t.is_finite() || t < 0.0 {
                let d = cx.err(
                    codes::OBLIGATION_TOLERANCE,
                    e,
                    &path!["proof_obligations", oi, "tolerance"],
                    format!("the tolerance of `{}` is not a finite number >= 0", o.id),
                    "invalid tolerance",
                );
                help(
                    d,
                    "a tolerance is a distance: 0 for exact, e.g. 1e-6 for a float bound",
                );
            }
        }
    }
    for (oi, o) in c.proof_obligations.iter().enumerate() {
        if let Some(g) = &o.generators {
            check_generators(e, oi, o, g, cx);
        }
    }
    for (qi, q) in c.equations.iter().enumerate() {
        let named = set.obligations().any(|(_, o)| o.equation == q.id);
        if !named {
            let d = cx.err(
                codes::ORPHAN_EQUATION,
                e,
                &path!["equations", qi, "id"],
                format!("equation `{}` is named by no proof obligation", q.id),
                "no obligation",
            );
            d.severity = Severity::Warning;
            help(
                d,
                "state what must hold of it under `proof_obligations:`, discharged by a falsifier",
            );
        }
    }
}

/// Rust keywords: a generator input becomes a struct field, so its name cannot be one.
const RUST_KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Largest integer an `int` range may name: the f64 the YAML number becomes is exact up to it.
const MAX_EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// PV057-PV059: an obligation's generators are something `pv-build` can turn into a
/// proptest strategy that a falsifier runs.
fn check_generators(
    e: &Loaded,
    oi: usize,
    o: &crate::model::ProofObligation,
    g: &crate::model::Generators,
    cx: &mut Ctx,
) {
    use crate::model::{GeneratorKind, MAX_CASES, MAX_INPUTS, MAX_LEN};
    let base = || path!["proof_obligations", oi, "generators"].to_vec();
    let at = |extra: &[Seg]| {
        let mut p = base();
        p.extend_from_slice(extra);
        p
    };
    if o.discharged_by.falsifiers.is_empty() {
        let d = cx.err(
            codes::GENERATORS_UNBOUND,
            e,
            &base(),
            format!(
                "proof obligation `{}` declares generators but no falsifier runs them",
                o.id
            ),
            "generators without a property test",
        );
        help(
            d,
            "name the falsifier whose #[falsifier] test runs the generated strategy under \
             `discharged_by: {falsifiers: [...]}`",
        );
    }
    if g.cases == 0 || g.cases > MAX_CASES {
        let d = cx.err(
            codes::GENERATORS,
            e,
            &at(&path!["cases"]),
            format!("{} cases is outside 1..={MAX_CASES}", g.cases),
            "case count",
        );
        help(
            d,
            "property tests run in `cargo test`: a few hundred cases is the usual size",
        );
    }
    if g.inputs.is_empty() || g.inputs.len() > MAX_INPUTS {
        let d = cx.err(
            codes::GENERATORS,
            e,
            &at(&path!["inputs"]),
            format!(
                "{} inputs (a property test draws 1 to {MAX_INPUTS})",
                g.inputs.len()
            ),
            "input count",
        );
        help(
            d,
            "group related values into one vector input (`ints`, `floats`, `bytes`)",
        );
    }
    for (ii, inp) in g.inputs.iter().enumerate() {
        let ip = |field: &str| at(&path!["inputs", ii, field]);
        if !is_snake_case(&inp.name) || RUST_KEYWORDS.contains(&inp.name.as_str()) {
            let d = cx.err(
                codes::GENERATORS,
                e,
                &ip("name"),
                format!(
                    "generator input name `{}` is not a snake_case identifier",
                    inp.name
                ),
                "becomes a struct field",
            );
            help(
                d,
                "lowercase words joined by '_', not a Rust keyword, e.g. `block_bytes`",
            );
        } else if g.inputs[..ii].iter().any(|p| p.name == inp.name) {
            cx.err(
                codes::GENERATORS,
                e,
                &ip("name"),
                format!("generator input `{}` is declared twice", inp.name),
                "duplicate input",
            );
        }
        let k = inp.kind;
        let mut bad = |field: &str, message: String, label: &str, hint: &str| {
            let d = cx.err(codes::GENERATOR_INPUT, e, &ip(field), message, label);
            help(d, hint.to_string());
        };
        // Fields that do not belong to the kind: an error, not silently ignored.
        let stray: [(&str, bool); 7] = [
            ("min", inp.min.is_some() && !k.has_range()),
            ("max", inp.max.is_some() && !k.has_range()),
            ("len", inp.len.is_some() && !k.has_len()),
            ("min_len", inp.min_len.is_some() && !k.has_len()),
            ("max_len", inp.max_len.is_some() && !k.has_len()),
            ("multiple_of", inp.multiple_of.is_some() && !k.has_len()),
            (
                "values",
                !inp.values.is_empty() && k != GeneratorKind::Choice,
            ),
        ];
        for (field, is_stray) in stray {
            if is_stray {
                bad(
                    field,
                    format!("`{field}` does not apply to a `{k}` input (`{}`)", inp.name),
                    "not for this kind",
                    "min/max: int, ints, float, floats; len, min_len, max_len, multiple_of: \
                     ints, floats, bytes; values: choice",
                );
            }
        }
        if k.has_range() {
            match (inp.min, inp.max) {
                (Some(lo), Some(hi)) => {
                    let integral = |v: f64| v.fract() == 0.0 && v.abs() <= MAX_EXACT_INT;
                    if !lo.is_finite() || !hi.is_finite() || lo > hi {
                        bad(
                            "min",
                            format!(
                                "`{}`: range {lo}..={hi} is not finite and ordered",
                                inp.name
                            ),
                            "invalid range",
                            "min <= max, both finite",
                        );
                    } else if k.is_integer() && !(integral(lo) && integral(hi)) {
                        bad(
                            "min",
                            format!(
                                "`{}`: an {k} range needs integers within +-2^53, got {lo}..={hi}",
                                inp.name
                            ),
                            "not integers",
                            "write whole numbers, e.g. min: 0, max: 255",
                        );
                    }
                }
                _ => bad(
                    "kind",
                    format!("`{}`: a `{k}` input needs both `min` and `max`", inp.name),
                    "range missing",
                    "add min: and max: (inclusive)",
                ),
            }
        }
        if k.has_len() {
            match inp.len_range() {
                None => bad(
                    "kind",
                    format!(
                        "`{}`: a `{k}` input needs `len`, or `max_len` (and optionally `min_len`), not both",
                        inp.name
                    ),
                    "length missing or ambiguous",
                    "len: 144, or min_len: 1 and max_len: 64",
                ),
                Some((lo, hi)) => {
                    let m = inp.multiple_of.unwrap_or(1);
                    if lo > hi || hi > MAX_LEN {
                        bad(
                            "kind",
                            format!(
                                "`{}`: length range {lo}..={hi} is empty or longer than {MAX_LEN}",
                                inp.name
                            ),
                            "invalid length",
                            "min_len <= max_len <= 1048576",
                        );
                    } else if m == 0 || hi / m < lo.div_ceil(m) {
                        bad(
                            "multiple_of",
                            format!(
                                "`{}`: no length in {lo}..={hi} is a multiple of {m}",
                                inp.name
                            ),
                            "no valid length",
                            "multiple_of >= 1 with some multiple inside the length range",
                        );
                    }
                }
            }
        }
        if k == GeneratorKind::Choice {
            if inp.values.is_empty() {
                bad(
                    "kind",
                    format!("`{}`: a `choice` input needs `values`", inp.name),
                    "no values",
                    "values: [Q4_K, Q6_K]",
                );
            }
            for (vi, v) in inp.values.iter().enumerate() {
                if inp.values[..vi].contains(v) {
                    let d = cx.err(
                        codes::GENERATOR_INPUT,
                        e,
                        &at(&path!["inputs", ii, "values", vi]),
                        format!("`{}`: value `{v}` is listed twice", inp.name),
                        "duplicate value",
                    );
                    help(d, "each choice once: duplicates only skew the distribution");
                }
            }
        }
    }
}

fn check_cycles(set: &ContractSet, cx: &mut Ctx) {
    // Iterative three-colour DFS over all stages of all contracts.
    let stages: Vec<(&Loaded, usize)> = set
        .entries()
        .iter()
        .flat_map(|e| (0..e.contract.stages.len()).map(move |i| (e, i)))
        .collect();
    let index: HashMap<&str, usize> = {
        let mut m = HashMap::new();
        for (n, (e, i)) in stages.iter().enumerate() {
            m.entry(e.contract.stages[*i].id.as_str()).or_insert(n);
        }
        m
    };
    let edges: Vec<Vec<(usize, usize)>> = stages
        .iter()
        .map(|(e, i)| {
            e.contract.stages[*i]
                .requires
                .iter()
                .enumerate()
                .filter_map(|(ri, r)| index.get(r.as_str()).map(|&t| (t, ri)))
                .collect()
        })
        .collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        White,
        Grey,
        Black,
    }
    let mut colour = vec![Colour::White; stages.len()];
    let mut reported: HashSet<Vec<usize>> = HashSet::new();
    for root in 0..stages.len() {
        if colour[root] != Colour::White {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        colour[root] = Colour::Grey;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if *next < edges[node].len() {
                let (target, ri) = edges[node][*next];
                *next += 1;
                match colour[target] {
                    Colour::White => {
                        colour[target] = Colour::Grey;
                        stack.push((target, 0));
                    }
                    Colour::Grey => {
                        let pos = stack.iter().position(|(n, _)| *n == target).unwrap_or(0);
                        let cycle: Vec<usize> = stack[pos..].iter().map(|(n, _)| *n).collect();
                        let mut key = cycle.clone();
                        key.sort_unstable();
                        if reported.insert(key) {
                            let names: Vec<&str> = cycle
                                .iter()
                                .chain(std::iter::once(&target))
                                .map(|&n| {
                                    let (e, i) = stages[n];
                                    e.contract.stages[i].id.as_str()
                                })
                                .collect();
                            let (e, i) = stages[node];
                            let d = cx.err(
                                codes::STAGE_CYCLE,
                                e,
                                &path!["stages", i, "requires", ri],
                                format!("stage requirements form a cycle: {}", names.join(" -> ")),
                                "closes the cycle",
                            );
                            help(d, "a stage cannot (indirectly) require itself; remove one requirement");
                        }
                    }
                    Colour::Black => {}
                }
            } else {
                colour[node] = Colour::Black;
                stack.pop();
            }
        }
    }
}

/// Levenshtein distance, for "did you mean" hints (ids are short).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Rules against an earlier revision of the same contract (`pv validate --since REV`):
/// PV040 (changed without a version bump, or version moved back), PV041 (amendment entry edited
/// or removed), PV042 (falsifier deleted instead of retired). `old` is the contract at REV.
pub fn check_since(old: &Loaded, new: &Loaded) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let (o, n) = (&old.contract, &new.contract);
    let src = &new.source;
    let span = |p: &[Seg]| new.tree.span_of(p);
    let ov = semver::Version::parse(&o.version).ok();
    let nv = semver::Version::parse(&n.version).ok();
    if let (Some(ov), Some(nv)) = (&ov, &nv) {
        if nv < ov {
            out.push(
                Diagnostic::error(
                    codes::SINCE_VERSION,
                    src,
                    span(&path!["version"]),
                    format!("version moved back from {ov} to {nv}"),
                    "older than before",
                )
                .with_label(
                    &old.source,
                    old.tree.span_of(&path!["version"]),
                    "earlier version",
                ),
            );
        } else if nv == ov && o != n {
            out.push(
                Diagnostic::error(
                    codes::SINCE_VERSION,
                    src,
                    span(&path!["version"]),
                    format!("the contract changed since {} but its version is still {nv}", old.source.path.display()),
                    "version not bumped",
                )
                .with_help("record the change with `pv amend <contract> --bump patch|minor|major --summary \"...\"`"),
            );
        }
    }
    for (i, oa) in o.amendment_history.iter().enumerate() {
        match n.amendment_history.get(i) {
            Some(na) if na == oa => {}
            Some(_) => out.push(
                Diagnostic::error(
                    codes::SINCE_AMENDMENT,
                    src,
                    span(&path!["amendment_history", i]),
                    format!("amendment entry {} ({}) was edited", i + 1, oa.version),
                    "differs from the earlier revision",
                )
                .with_label(
                    &old.source,
                    old.tree.span_of(&path!["amendment_history", i]),
                    "as it was",
                )
                .with_help("the history is append-only: restore the entry and add a new one"),
            ),
            None => out.push(
                Diagnostic::error(
                    codes::SINCE_AMENDMENT,
                    src,
                    new.tree.key_span_of(&path!["amendment_history"]),
                    format!("amendment entry {} ({}) was removed", i + 1, oa.version),
                    "entry missing",
                )
                .with_label(
                    &old.source,
                    old.tree.span_of(&path!["amendment_history", i]),
                    "removed entry",
                )
                .with_help("the history is append-only: restore the entry"),
            ),
        }
    }
    for (i, of) in o.falsifiers.iter().enumerate() {
        if n.falsifier(&of.id).is_none() {
            out.push(
                Diagnostic::error(
                    codes::SINCE_DELETED,
                    src,
                    new.tree.key_span_of(&path!["falsifiers"]),
                    format!("falsifier `{}` was deleted", of.id),
                    "no longer listed",
                )
                .with_label(
                    &old.source,
                    old.tree.span_of(&path!["falsifiers", i, "id"]),
                    "was defined here",
                )
                .with_help(
                    "keep it and add `retired: \"<reason>\"`; evidence and history refer to it",
                ),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_patterns() {
        for ok in [
            "quant-kernels-v1",
            "gguf-format-v12",
            "a-v0",
            "qwen3-moe-forward-gpu-v1",
        ] {
            assert!(IdKind::Contract.matches(ok), "{ok}");
        }
        for bad in [
            "Quant-v1",
            "quant",
            "quant-v",
            "-v1",
            "quant--x-v1",
            "quant-kernels-v1a",
        ] {
            assert!(!IdKind::Contract.matches(bad), "{bad}");
        }
        assert!(IdKind::Criterion.matches("AC-QK-001"));
        assert!(IdKind::Criterion.matches("AC-QW3-GPU-0001"));
        assert!(!IdKind::Criterion.matches("AC-QK-01"));
        assert!(!IdKind::Criterion.matches("AC-001"));
        assert!(IdKind::Stage.matches("M-QK-1.1"));
        assert!(IdKind::Stage.matches("M-GPU-MOE-12.3"));
        assert!(!IdKind::Stage.matches("M-QK-1"));
        assert!(!IdKind::Stage.matches("M-qk-1.1"));
        assert!(IdKind::Falsifier.matches("FALSIFY-QK-DEQ-001"));
        assert!(IdKind::Falsifier.matches("FALSIFY-QW3-GPU-LAYER-COS-002"));
        assert!(!IdKind::Falsifier.matches("FALSIFY-QK-DEQ-1"));
        assert!(!IdKind::Falsifier.matches("FALSIFY-QK-deq-001"));
        assert!(IdKind::Equation.matches("EQ-QK-Q4K-DEQUANT"));
        assert!(IdKind::Equation.matches("EQ-RMSNORM"));
        assert!(!IdKind::Equation.matches("EQ"));
        assert!(!IdKind::Equation.matches("EQ-rmsnorm"));
        assert!(!IdKind::Equation.matches("EQ--X"));
        assert!(IdKind::Obligation.matches("PO-QK-Q4K-001"));
        assert!(!IdKind::Obligation.matches("PO-QK-Q4K"));
        assert!(!IdKind::Obligation.matches("PO-001"));
        assert!(is_harness_name("engine::quant::proof_q4k"));
        assert!(is_harness_name("_private"));
        assert!(!is_harness_name("Engine::x"));
        assert!(!is_harness_name("a::::b"));
        assert!(!is_harness_name(""));
        assert!(!is_harness_name("a b"));
    }

    #[test]
    fn snake_case_and_dates() {
        assert!(is_snake_case("max_abs_diff"));
        assert!(is_snake_case("p99"));
        assert!(!is_snake_case("maxAbs"));
        assert!(!is_snake_case("max__abs"));
        assert!(!is_snake_case("_max"));
        assert!(!is_snake_case("1max"));
        assert!(is_valid_date("2024-02-29"));
        assert!(!is_valid_date("2023-02-29"));
        assert!(!is_valid_date("2026-13-01"));
        assert!(!is_valid_date("2026-1-01"));
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
