//! The contract types: one-to-one with the YAML format in `docs/contract-format.md`.
//!
//! Every struct denies unknown fields, so a typo is an error rather than silently ignored data.
//! There is deliberately no `status` field anywhere: status is derived from evidence.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Pattern of a contract id (`quant-kernels-v1`).
pub const CONTRACT_ID_PATTERN: &str = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*-v[0-9]+$";
/// Pattern of an acceptance-criterion id (`AC-QK-001`).
pub const CRITERION_ID_PATTERN: &str = r"^AC(-[A-Z0-9]+)+-[0-9]{3,}$";
/// Pattern of a stage id (`M-QK-1.1`).
pub const STAGE_ID_PATTERN: &str = r"^M(-[A-Z0-9]+)+-[0-9]+\.[0-9]+$";
/// Pattern of a falsifier id (`FALSIFY-QK-DEQ-001`).
pub const FALSIFIER_ID_PATTERN: &str = r"^FALSIFY(-[A-Z0-9]+)+-[0-9]{3,}$";
/// Pattern of an equation id (`EQ-QK-Q4K-DEQUANT`).
pub const EQUATION_ID_PATTERN: &str = r"^EQ(-[A-Z0-9]+)+$";
/// Pattern of a proof-obligation id (`PO-QK-Q4K-001`).
pub const OBLIGATION_ID_PATTERN: &str = r"^PO(-[A-Z0-9]+)+-[0-9]{3,}$";
/// Pattern of a harness name: a Rust path of snake_case segments (`mycrate::proofs::sum_is_one`).
pub const HARNESS_NAME_PATTERN: &str = r"^[a-z_][a-z0-9_]*(::[a-z_][a-z0-9_]*)*$";
/// Pattern of a metric name (`snake_case`).
pub const METRIC_NAME_PATTERN: &str = r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$";
/// Pattern of a semantic version (the full grammar is checked by the `semver` crate).
pub const SEMVER_PATTERN: &str =
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$";
/// Pattern of an amendment date (`YYYY-MM-DD`).
pub const DATE_PATTERN: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$";

/// One contract file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "pv contract",
    description = "A pv contract: claims about the system and the falsifiers that try to break them. There is no status field anywhere: status is derived from evidence."
)]
pub struct Contract {
    /// Unique id, lowercase words joined by '-', ending in -v<major>; the file is `<id>.yaml`.
    #[schemars(pattern(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*-v[0-9]+$"))]
    pub contract: String,
    /// Semantic version; equals the newest `amendment_history` entry's version.
    #[schemars(pattern(
        r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"
    ))]
    pub version: String,
    /// One-line title.
    pub title: String,
    /// What the contract is about, in a paragraph.
    pub summary: String,
    /// Who answers for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
    /// Other contracts this one builds on, with a semver requirement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Dependency>,
    /// What "done" means, each decided by falsifiers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acceptance_criteria: Vec<AcceptanceCriterion>,
    /// Implementation milestones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Stage>,
    /// The claims and how to break them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub falsifiers: Vec<Falsifier>,
    /// Explained failures; they never turn a failure into a pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub known_divergences: Vec<KnownDivergence>,
    /// The mathematics the contract is about: each equation the code must compute.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub equations: Vec<Equation>,
    /// Properties of the equations that must hold, each discharged by falsifiers or harnesses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proof_obligations: Vec<ProofObligation>,
    /// Append-only history: strictly increasing versions, non-decreasing dates.
    pub amendment_history: Vec<Amendment>,
}

/// A dependency on another contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    /// The other contract's id.
    pub contract: String,
    /// A semver requirement (`>=0.1.0`, `^1.2`) the other contract's version must satisfy.
    pub version: String,
}

/// An acceptance criterion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptanceCriterion {
    /// `AC-<AREA>-<NNN>`.
    #[schemars(pattern(r"^AC(-[A-Z0-9]+)+-[0-9]{3,}$"))]
    pub id: String,
    /// The criterion in words.
    pub text: String,
    /// Falsifier ids that decide it.
    #[serde(default)]
    pub falsifiers: Vec<String>,
}

/// An implementation milestone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// `M-<AREA>-<major>.<minor>`.
    #[schemars(pattern(r"^M(-[A-Z0-9]+)+-[0-9]+\.[0-9]+$"))]
    pub id: String,
    /// What the stage delivers.
    pub title: String,
    /// Stage ids (this or another contract) that must be done first.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Falsifier ids of this contract whose outcomes decide the stage.
    #[serde(default)]
    pub falsifiers: Vec<String>,
}

/// Where a falsifier can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Runs on any CPU.
    Algorithm,
    /// Needs a GPU or a full-size model.
    Hardware,
}

/// Conditions under which a falsifier's test is built and run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// Cargo features: the test is `#[cfg(feature = "...")]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    /// Devices that must be present at run time, else the run is skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// Fixtures declared in the project file (docs/project-file.md), else the run is skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fixtures: Vec<String>,
}

impl Gate {
    /// True when nothing is gated.
    pub fn is_empty(&self) -> bool {
        self.features.is_empty() && self.devices.is_empty() && self.fixtures.is_empty()
    }
}

/// A claim and the test that tries to break it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Falsifier {
    /// `FALSIFY-<AREA>-<WORDS>-<NNN>`.
    #[schemars(pattern(r"^FALSIFY(-[A-Z0-9]+)+-[0-9]{3,}$"))]
    pub id: String,
    /// The claim, precise enough that a test can refute it.
    pub claim: String,
    /// `algorithm` (any CPU) or `hardware` (GPU or full-size model).
    pub tier: Tier,
    /// Build and run conditions.
    #[serde(default, skip_serializing_if = "Gate::is_empty")]
    pub gate: Gate,
    /// What the test reports, and the thresholds it is judged by.
    #[serde(default)]
    pub metrics: Vec<Metric>,
    /// Where to look next when it fails.
    pub if_fails: String,
    /// Set (to the reason) when the falsifier is retired; it stays in the file forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<String>,
    /// Links to findings documents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<String>,
}

impl Falsifier {
    /// True unless the falsifier has been retired.
    pub fn is_live(&self) -> bool {
        self.retired.is_none()
    }

    /// The metric named `name`, if the falsifier lists it.
    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }
}

/// A reported metric and its pass condition `value <op> threshold`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    /// `snake_case` name, as passed to `ctx.metric(name, value)`.
    #[schemars(pattern(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$"))]
    pub name: String,
    /// Comparison operator.
    pub op: Op,
    /// Finite threshold.
    pub threshold: f64,
    /// Unit, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

impl Metric {
    /// Whether `value` passes this metric. NaN never passes.
    pub fn passes(&self, value: f64) -> bool {
        self.op.holds(value, self.threshold)
    }
}

/// Comparison operator of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Op {
    /// `<`
    #[serde(rename = "<")]
    Lt,
    /// `<=`
    #[serde(rename = "<=")]
    Le,
    /// `>`
    #[serde(rename = ">")]
    Gt,
    /// `>=`
    #[serde(rename = ">=")]
    Ge,
    /// `==`
    #[serde(rename = "==")]
    Eq,
}

impl Op {
    /// `value <op> threshold`; false whenever either side is NaN.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Eq => value == threshold,
        }
    }

    /// The operator as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An explained failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KnownDivergence {
    /// The falsifier whose failure is explained.
    pub falsifier: String,
    /// Where the divergence shows (layer, position, inputs).
    pub scope: String,
    /// `benign` or `not-benign`.
    pub classification: Classification,
    /// Why.
    pub justification: String,
    /// When to look again.
    pub revisit_when: String,
}

/// Classification of a known divergence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Classification {
    /// Explained and harmless.
    Benign,
    /// Explained but a real defect.
    NotBenign,
}

/// An equation the code computes, written so a reader can check it against the code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Equation {
    /// `EQ-<AREA>-<WORDS>`.
    #[schemars(pattern(r"^EQ(-[A-Z0-9]+)+$"))]
    pub id: String,
    /// Short human name (`Q4_K dequantization`).
    pub name: String,
    /// The formula, ASCII or LaTeX-ish (`y_i = d * sc_j * q_i - dmin * m_j`).
    pub formula: String,
    /// Where the inputs live (types, shapes, ranges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Where the result lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codomain: Option<String>,
    /// What must hold of the inputs for the formula to apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preconditions: Vec<String>,
    /// What the formula guarantees about its result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invariants: Vec<String>,
}

/// What kind of property a proof obligation states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ObligationKind {
    /// Holds of every result (`sum of probabilities = 1`).
    Invariant,
    /// Relates the result to the inputs (`y = f(x)` within tolerance).
    Postcondition,
    /// A numeric bound on an error or a value.
    Bound,
    /// Two computations agree (scalar vs SIMD, CPU vs GPU, ours vs a reference).
    Equivalence,
}

impl ObligationKind {
    /// The kind as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            ObligationKind::Invariant => "invariant",
            ObligationKind::Postcondition => "postcondition",
            ObligationKind::Bound => "bound",
            ObligationKind::Equivalence => "equivalence",
        }
    }
}

impl std::fmt::Display for ObligationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What discharges a proof obligation: falsifiers (tests with evidence) and/or proof harnesses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DischargedBy {
    /// Falsifier ids (any loaded contract) whose passing evidence discharges the obligation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub falsifiers: Vec<String>,
    /// Proof harnesses (Rust paths, e.g. Kani `#[kani::proof]` functions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub harnesses: Vec<String>,
}

impl DischargedBy {
    /// True when nothing discharges the obligation.
    pub fn is_empty(&self) -> bool {
        self.falsifiers.is_empty() && self.harnesses.is_empty()
    }
}

/// A property of an equation that must hold, and what shows that it does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProofObligation {
    /// `PO-<AREA>-<NNN>`.
    #[schemars(pattern(r"^PO(-[A-Z0-9]+)+-[0-9]{3,}$"))]
    pub id: String,
    /// `invariant`, `postcondition`, `bound` or `equivalence`.
    pub kind: ObligationKind,
    /// The property in words.
    pub property: String,
    /// The property as a formal statement (quantifiers, tolerances), ASCII or LaTeX-ish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formal: Option<String>,
    /// The numeric tolerance the property allows, if any (finite, >= 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    /// The equation (id, any loaded contract) the property is about.
    pub equation: String,
    /// Falsifiers and/or harnesses that discharge it; at least one.
    #[serde(default)]
    pub discharged_by: DischargedBy,
    /// Whether `pv kani` should generate a Kani harness skeleton for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kani: bool,
    /// Inputs for a generated property test (`pv-build` emits a proptest strategy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generators: Option<Generators>,
}

/// Default number of cases a generated property test runs.
pub const DEFAULT_CASES: u32 = 256;
/// Most cases a property test may ask for (keeps `cargo test` fast).
pub const MAX_CASES: u32 = 100_000;
/// Most inputs one obligation may declare (proptest tuples go up to 12).
pub const MAX_INPUTS: usize = 12;
/// Longest vector or byte string a generator may produce.
pub const MAX_LEN: u64 = 1 << 20;

fn default_cases() -> u32 {
    DEFAULT_CASES
}

/// The inputs a property test draws. `pv-build` turns each obligation's generators into a
/// module `<po_id_snake>` of the generated `pv_generators.rs` with an `Inputs` struct (one
/// field per input, in order), `strategy()` and `SPEC` (cases, seed, obligation, falsifiers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Generators {
    /// Cases to run (1..=100000, default 256).
    #[serde(default = "default_cases")]
    pub cases: u32,
    /// Seed of the case generator. Absent: a seed derived from the obligation id, so every run
    /// draws the same cases; `PV_PROPTEST_SEED` overrides both (the evidence records the seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The inputs, in order (1 to 12, names unique snake_case).
    pub inputs: Vec<GeneratorInput>,
}

/// What kind of value a generator input draws, and the Rust type it becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GeneratorKind {
    /// An integer in `min..=max` (`i64`).
    Int,
    /// A vector of integers in `min..=max` (`Vec<i64>`), length per `len` or `min_len..=max_len`.
    Ints,
    /// A finite float in `min..=max` (`f64`).
    Float,
    /// A vector of finite floats in `min..=max` (`Vec<f64>`), length as for `ints`.
    Floats,
    /// `true` or `false`.
    Bool,
    /// One of `values` (`&'static str`), e.g. a dtype or qtype name.
    Choice,
    /// Arbitrary bytes (`Vec<u8>`), length as for `ints`.
    Bytes,
}

impl GeneratorKind {
    /// The kind as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            GeneratorKind::Int => "int",
            GeneratorKind::Ints => "ints",
            GeneratorKind::Float => "float",
            GeneratorKind::Floats => "floats",
            GeneratorKind::Bool => "bool",
            GeneratorKind::Choice => "choice",
            GeneratorKind::Bytes => "bytes",
        }
    }

    /// Whether values are drawn from `min..=max`.
    pub fn has_range(self) -> bool {
        matches!(
            self,
            GeneratorKind::Int | GeneratorKind::Ints | GeneratorKind::Float | GeneratorKind::Floats
        )
    }

    /// Whether the value is a vector with a length.
    pub fn has_len(self) -> bool {
        matches!(
            self,
            GeneratorKind::Ints | GeneratorKind::Floats | GeneratorKind::Bytes
        )
    }

    /// Whether the range must be integral.
    pub fn is_integer(self) -> bool {
        matches!(self, GeneratorKind::Int | GeneratorKind::Ints)
    }
}

impl std::fmt::Display for GeneratorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One input of a property test. Which fields apply depends on `kind` (PV058): `min`/`max` for
/// int, ints, float, floats; `len` or `min_len`/`max_len` (and optionally `multiple_of`) for
/// ints, floats, bytes; `values` for choice; nothing else for bool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeneratorInput {
    /// snake_case field name of the generated `Inputs` struct.
    pub name: String,
    /// What it draws.
    pub kind: GeneratorKind,
    /// Smallest value (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest value (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Exact length of a vector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub len: Option<u64>,
    /// Shortest length of a vector (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_len: Option<u64>,
    /// Longest length of a vector (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_len: Option<u64>,
    /// Every length is a multiple of this (whole blocks, pairs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiple_of: Option<u64>,
    /// The choices of a `choice` input.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl GeneratorInput {
    /// The inclusive length range `(lo, hi)` of a vector input (before `multiple_of`), if its
    /// fields give one.
    pub fn len_range(&self) -> Option<(u64, u64)> {
        match (self.len, self.min_len, self.max_len) {
            (Some(n), None, None) => Some((n, n)),
            (None, Some(lo), Some(hi)) => Some((lo, hi)),
            (None, None, Some(hi)) => Some((0, hi)),
            _ => None,
        }
    }
}

/// One entry of the append-only amendment history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Amendment {
    /// The version this amendment produced.
    #[schemars(pattern(
        r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"
    ))]
    pub version: String,
    /// `YYYY-MM-DD`.
    #[schemars(pattern(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"))]
    pub date: String,
    /// One line.
    pub summary: String,
    /// What changed, item by item.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
}

impl Contract {
    /// The falsifier with this id, if this contract defines it.
    pub fn falsifier(&self, id: &str) -> Option<&Falsifier> {
        self.falsifiers.iter().find(|f| f.id == id)
    }

    /// The equation with this id, if this contract defines it.
    pub fn equation(&self, id: &str) -> Option<&Equation> {
        self.equations.iter().find(|e| e.id == id)
    }

    /// The stage with this id, if this contract defines it.
    pub fn stage(&self, id: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.id == id)
    }

    /// The parsed version, if it is valid semver.
    pub fn semver(&self) -> Option<semver::Version> {
        semver::Version::parse(&self.version).ok()
    }
}
