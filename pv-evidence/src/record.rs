//! The evidence record: what one run of one falsifier measured, on what, from which sources.
//!
//! One record is one JSON file (`docs/evidence.md`). The JSON Schema generated from these types
//! is committed as `evidence/record.schema.json`; a test keeps the two in step.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The record format version written by this crate. Readers reject records with a higher
/// major format they do not understand.
/// Format 2 added `contract.falsifier_sha256` and the `pv-source-v2` scope digest; format-1
/// records are still read (their freshness falls back to the whole contract file's hash).
pub const RECORD_FORMAT: u32 = 2;

/// One run of one falsifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvidenceRecord {
    /// Record format version ([`RECORD_FORMAT`]).
    pub format: u32,
    /// The falsifier id, e.g. `FALSIFY-QK-DEQ-001`.
    pub falsifier: String,
    /// The contract that defined the falsifier when the test was compiled.
    pub contract: ContractRef,
    /// What happened.
    pub outcome: Outcome,
    /// Why the run was not a plain pass: the failing metrics, the error, or the skip reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Every metric the contract names, with the value measured (if any) and its verdict.
    pub metrics: Vec<MetricResult>,
    /// The falsifier's tier as written in the contract.
    pub tier: Tier,
    /// The machine the test ran on.
    pub hardware: Hardware,
    /// The checkout the test was built from; absent when git was not available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitInfo>,
    /// Digest of the sources under test; `pv` recomputes it to decide freshness.
    pub source: SourceDigest,
    /// `rustc -V` of the compiler that built the test.
    pub rustc: String,
    /// When the run finished, RFC 3339 in UTC (`2026-11-22T18:40:12.123456Z`).
    pub timestamp: String,
    /// Wall time of the test body, in seconds.
    pub duration_s: f64,
    /// The bound test function.
    pub test: TestRef,
    /// Free text the test attached with `ctx.note`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Named numeric series (`ctx.series`), e.g. per-layer cosines.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub series: BTreeMap<String, Vec<JsonF64>>,
    /// Named structured details (`ctx.detail`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, serde_json::Value>,
    /// The shrunk counterexample of a property test that found one (`ctx.counterexample`);
    /// absent otherwise, so records without one are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterexample: Option<Counterexample>,
}

/// A failing input a property test found, after shrinking: what a person re-runs first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Counterexample {
    /// The proof obligation whose generators drew the input (`PO-...`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obligation: Option<String>,
    /// The shrunk input (Rust `Debug` form of the generated `Inputs`).
    pub input: String,
    /// Why the property failed on it.
    pub message: String,
    /// The first failing input, before shrinking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_input: Option<String>,
    /// Seed of the case generator (re-running with it draws the same cases).
    pub seed: u64,
    /// Cases that passed before the first failure.
    pub cases_passed: u64,
    /// Inputs tried while shrinking (each failing one replaces the current counterexample).
    pub shrink_steps: u64,
}

/// The contract a falsifier came from, as compiled into the test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContractRef {
    /// Contract id, e.g. `quant-kernels-v1`.
    pub id: String,
    /// The contract's `version` field.
    pub version: String,
    /// Path of the contract file relative to the workspace root.
    pub path: String,
    /// sha256 (lowercase hex) of the contract file's bytes.
    pub sha256: String,
    /// The falsifier's claim digest (`pv-claim-v1`: what its verdict depends on in the
    /// contract, `pv_contract::digest::claim_digest`). Format 2 on; freshness compares this
    /// instead of the whole file's hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub falsifier_sha256: Option<String>,
}

/// The outcome of a run.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every metric met its threshold.
    Pass,
    /// At least one metric missed its threshold.
    Fail,
    /// The test could not decide: it returned an error, panicked, or reported metrics that do
    /// not match the contract (missing, duplicated or unknown).
    Error,
    /// The test did not run its check (missing device or fixture, or `ctx.skip`). Never a pass.
    Skipped,
}

impl Outcome {
    /// The lowercase name used in JSON and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Error => "error",
            Outcome::Skipped => "skipped",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A falsifier's tier.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Runs on any CPU.
    Algorithm,
    /// Needs a GPU or a full-size model.
    Hardware,
}

impl Tier {
    /// The lowercase name used in YAML and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Algorithm => "algorithm",
            Tier::Hardware => "hardware",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A comparison operator of a metric threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Op {
    /// `value < threshold`
    #[serde(rename = "<")]
    Lt,
    /// `value <= threshold`
    #[serde(rename = "<=")]
    Le,
    /// `value > threshold`
    #[serde(rename = ">")]
    Gt,
    /// `value >= threshold`
    #[serde(rename = ">=")]
    Ge,
    /// `value == threshold` (exact f64 equality)
    #[serde(rename = "==")]
    Eq,
}

impl Op {
    /// Parses the YAML/JSON spelling (`<`, `<=`, `>`, `>=`, `==`).
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "==" => Op::Eq,
            _ => return None,
        })
    }

    /// The spelling used in contracts.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
        }
    }

    /// Whether `value op threshold` holds. Any comparison with NaN is false, so a NaN metric
    /// always fails.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            #[allow(clippy::float_cmp)] // exact equality is what `==` in a contract means
            Op::Eq => value == threshold,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One metric of the contract and what the run measured for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricResult {
    /// The metric name from the contract.
    pub name: String,
    /// The measured value; absent when the test did not report it (an `error` outcome).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<JsonF64>,
    /// The operator from the contract.
    pub op: Op,
    /// The threshold from the contract.
    pub threshold: f64,
    /// The unit from the contract, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Whether `value op threshold` held (false when the value is absent or NaN).
    pub passed: bool,
}

/// The machine a run happened on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    /// `model name` from `/proc/cpuinfo`, when readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    /// Logical CPUs available to the process.
    pub cpus: usize,
    /// GPUs listed by `nvidia-smi`, empty when there is none or no `nvidia-smi`.
    #[serde(default)]
    pub gpus: Vec<Gpu>,
    /// `std::env::consts::OS` and `ARCH`, e.g. `linux-x86_64`.
    pub platform: String,
}

/// One GPU as `nvidia-smi --query-gpu=name,driver_version` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    /// e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// e.g. `550.54.15`.
    pub driver: String,
}

/// The git checkout a run was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitInfo {
    /// `git rev-parse HEAD`.
    pub commit: String,
    /// Whether `git status --porcelain` listed anything (the run may not match `commit`).
    pub dirty: bool,
}

/// A digest over the sources under test (`crate::digest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceDigest {
    /// The digest algorithm's name; `pv` refuses to compare digests of another algorithm.
    pub algorithm: String,
    /// The roots hashed, relative to the workspace root, in the order given.
    pub roots: Vec<String>,
    /// The digest, lowercase hex.
    pub sha256: String,
    /// How many files went into it.
    pub files: usize,
}

/// The test function bound to the falsifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRef {
    /// `module_path!()::function`, e.g. `trace::plan_spec_errors`.
    pub name: String,
    /// The source file, relative to the test crate (`file!()`).
    pub file: String,
}

/// An `f64` that survives JSON: finite values are numbers, the rest are the strings `"NaN"`,
/// `"inf"` and `"-inf"` (plain JSON has no spelling for them, and a NaN metric must be kept,
/// not silently turned into `null`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct JsonF64(pub f64);

impl Serialize for JsonF64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_finite() {
            s.serialize_f64(v)
        } else if v.is_nan() {
            s.serialize_str("NaN")
        } else if v > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }
}

impl<'de> Deserialize<'de> for JsonF64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = JsonF64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or one of \"NaN\", \"inf\", \"-inf\"")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<JsonF64, E> {
                Ok(JsonF64(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<JsonF64, E> {
                Ok(JsonF64(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<JsonF64, E> {
                Ok(JsonF64(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<JsonF64, E> {
                match v {
                    "NaN" => Ok(JsonF64(f64::NAN)),
                    "inf" => Ok(JsonF64(f64::INFINITY)),
                    "-inf" => Ok(JsonF64(f64::NEG_INFINITY)),
                    other => Err(E::invalid_value(serde::de::Unexpected::Str(other), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for JsonF64 {
    fn schema_name() -> Cow<'static, str> {
        "JsonF64".into()
    }

    fn json_schema(_gen: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A finite number, or \"NaN\", \"inf\" or \"-inf\".",
            "oneOf": [
                { "type": "number" },
                { "type": "string", "enum": ["NaN", "inf", "-inf"] }
            ]
        })
    }
}

impl fmt::Display for JsonF64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The JSON Schema of [`EvidenceRecord`], as committed at `evidence/record.schema.json`.
pub fn record_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(EvidenceRecord);
    schema.to_value()
}
