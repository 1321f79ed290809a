//! Evidence records and the falsifier runtime.
//!
//! - [`record`]: the evidence record (one JSON file per falsifier run), its JSON Schema
//!   (`evidence/record.schema.json`).
//! - [`runtime`]: what `#[falsifier("ID")]` tests call: [`Ctx`], [`FalsifierResult`],
//!   [`run_falsifier`].
//! - [`store`]: atomic, collision-free writing and non-destructive reading of records.
//! - [`manifest`]: run manifests (an in-toto Statement in a DSSE envelope) listing the records a
//!   run wrote, with their digests; a record in no manifest is loose.
//! - [`digest`]: the source digest over a falsifier's scope (`pv.toml`), recomputed by `pv` to decide
//!   whether evidence is fresh.
//! - [`bindings`]: the textual scan of test packages for bound tests.
//! - [`registry`]: the types of the registry `pv-build` generates into a test crate.
//! - `prop` (feature `prop`): property tests over the strategies `pv-build` generates from
//!   contracts' `generators:`, with shrunk counterexamples in the record.
//!
//! `docs/evidence.md` describes the record; `docs/falsifier-api.md` the test-writing API.

pub mod bindings;
pub mod digest;
pub mod env;
pub mod manifest;
#[cfg(feature = "prop")]
pub mod prop;
pub mod record;
pub mod registry;
pub mod runtime;
pub mod store;
pub mod timefmt;

pub use record::{Counterexample, EvidenceRecord, JsonF64, MetricResult, Op, Outcome, Tier};
pub use runtime::{
    run_falsifier, run_falsifier_in, Ctx, FalsifierError, FalsifierMeta, FalsifierResult,
    MetricSpec, ResultExt,
};
