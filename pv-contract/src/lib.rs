//! # pv-contract: the contract model, YAML loading with positions, and semantic rules
//!
//! Contracts are YAML files in `contracts/` (format: `docs/contract-format.md`, rules:
//! `docs/rules.md`). This crate is deliberately lean (serde, schemars, saphyr-parser, semver,
//! sha2, thiserror-free plain errors) because proc-macros and build scripts depend on it.
//!
//! ## Public API
//!
//! Loading (YAML + format checks; no cross-contract rules):
//! - [`load_dir`]`(dir) -> Result<ContractSet, LoadError>`: every `*.yaml`/`*.yml` in `dir`,
//!   sorted by file name; an empty directory is [`LoadError::NoContracts`].
//! - [`load_file`]`(path) -> Result<Loaded, LoadError>`; [`load_str`]`(label, text)`.
//! - [`Loaded`] `{ contract: Contract, source: Arc<SourceFile>, tree: yaml::Node }`.
//! - `LoadError` implements `Display` with `path:line:col: error[PVnnn]: message` lines.
//!
//! Lookups on [`ContractSet`]:
//! - `contract(id) -> Option<&Contract>`, `entry(id) -> Option<&Loaded>`
//! - `falsifier(id) -> Option<(&Contract, &Falsifier)>`, `stage(id)`, `criterion(id)`
//! - iterate: `contracts()`, `entries()`, `falsifiers()`, `stages()`, `criteria()`
//!
//! Model ([`model`]): [`Contract`], [`Stage`], [`Falsifier`] (`is_live()`, `metric(name)`),
//! [`Metric`] (`passes(value)`), [`Op`] (`holds(value, threshold)`, NaN never passes),
//! [`Tier`], [`Gate`], [`AcceptanceCriterion`], [`KnownDivergence`], [`Amendment`],
//! [`Dependency`], [`Equation`], [`ProofObligation`] (`kind`: [`ObligationKind`],
//! `discharged_by`: [`DischargedBy`], `generators`: [`Generators`]). There is no status field: status is derived from evidence.
//!
//! Validation: [`rules::check`]`(&ContractSet) -> Vec<Diagnostic>` runs the semantic rules;
//! [`rules::RULES`] lists every code. [`Diagnostic`] is plain data (code, severity, message,
//! labels with spans and the source text, help); the `pv` crate renders it.
//!
//! Lower level, used by `pv validate`: [`load::read_source`], [`load::parse_tree`] (YAML ->
//! [`yaml::Node`] with spans, PV020 for `status` keys), [`load::deserialize`],
//! [`yaml::Node::span_of`] (field path -> span, build paths with [`path!`]).
//!
//! Hashing: [`digest::content_hash`]`(bytes) -> String` (SHA-256, lowercase hex).
//!
//! Schema: [`json_schema`]`() -> serde_json::Value` (JSON Schema generated from the types).

#![deny(missing_docs)]
// Diagnostics are returned on the cold path only; boxing them would make every caller's match
// noisier for no measurable gain.
#![allow(clippy::result_large_err)]

pub mod de;
pub mod diag;
pub mod digest;
pub mod load;
pub mod model;
pub mod rules;
pub mod source;
pub mod yaml;

pub use diag::{Diagnostic, Label, Severity};
pub use load::{load_dir, load_file, load_str, ContractSet, LoadError, Loaded};
pub use model::{
    AcceptanceCriterion, Amendment, Classification, Contract, Dependency, DischargedBy, Equation,
    Falsifier, Gate, GeneratorInput, GeneratorKind, Generators, KnownDivergence, Metric,
    ObligationKind, Op, ProofObligation, Stage, Tier,
};
pub use source::{SourceFile, Span};

/// The JSON Schema of a contract file (draft-07, which yaml-language-server understands), generated
/// from [`Contract`].
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<Contract>();
    schema.to_value()
}
