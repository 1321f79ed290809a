//! Property tests bound to falsifiers (feature `prop`): run a contract-generated proptest
//! strategy (the `pv_generators.rs` that `pv-build` writes) under the obligation's case count
//! and seed, and put the shrunk counterexample of a failure into the evidence record.
//!
//! A `#[falsifier]` body calls [`check`] and reports the two numbers it returns as metrics,
//! whose thresholds live in the contract like any other falsifier's:
//!
//! ```ignore
//! let r = pv_evidence::prop::check(ctx, &g::SPEC, g::strategy(), |inp| property(inp))?;
//! ctx.metric("counterexamples", r.counterexamples as f64);
//! ctx.metric("cases_run", r.cases_run as f64);
//! ```

use std::cell::{Cell, RefCell};

use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

/// proptest itself, for the generated strategies (the test crate needs no direct dependency).
pub use proptest;

use crate::record::Counterexample;
use crate::registry::Entry;
use crate::{Ctx, FalsifierError, FalsifierMeta};

/// What `pv-build` knows about one obligation's generators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenSpec {
    /// `PO-...` id.
    pub obligation: &'static str,
    /// The contract that defines it.
    pub contract: &'static str,
    /// `discharged_by.falsifiers`.
    pub falsifiers: &'static [&'static str],
    /// Cases to run.
    pub cases: u32,
    /// The contract's seed, or one derived from the obligation id.
    pub seed: u64,
}

/// The outcome of a property run, for the falsifier's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PropReport {
    /// Cases that ran: all of them when the property held, else up to and including the first
    /// failure.
    pub cases_run: u64,
    /// 0 or 1: proptest stops at the first failure and shrinks it.
    pub counterexamples: u64,
    /// The seed used (`PV_PROPTEST_SEED` if set, else the spec's).
    pub seed: u64,
}

/// `PV_PROPTEST_SEED` (decimal) if set and valid, else `spec.seed`.
pub fn seed_for(spec: &GenSpec) -> Result<u64, FalsifierError> {
    match std::env::var("PV_PROPTEST_SEED") {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|e| FalsifierError::msg(format!("PV_PROPTEST_SEED={v:?}: {e}"))),
        Err(_) => Ok(spec.seed),
    }
}

fn rng(seed: u64) -> TestRng {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

/// Runs `property` on `spec.cases` inputs drawn from `strategy` with the spec's seed. On the
/// first failure proptest shrinks the input; the shrunk input, the first failing input, the
/// message and the counts go into the record (`ctx.counterexample`) and a note. A property
/// that panics fails like one that returns `Err`.
pub fn check<S>(
    ctx: &mut Ctx,
    spec: &GenSpec,
    strategy: S,
    property: impl Fn(&S::Value) -> Result<(), String>,
) -> Result<PropReport, FalsifierError>
where
    S: proptest::strategy::Strategy,
{
    let seed = seed_for(spec)?;
    let config = Config {
        cases: spec.cases,
        // Evidence records are the persistence: no proptest-regressions files in the tree.
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, rng(seed));
    let passed = Cell::new(0u64);
    let shrink_steps = Cell::new(0u64);
    let first_failure: RefCell<Option<String>> = RefCell::new(None);
    let result = runner.run(&strategy, |value| {
        let failing_before = first_failure.borrow().is_some();
        if failing_before {
            shrink_steps.set(shrink_steps.get() + 1);
        }
        let outcome = property(&value);
        match outcome {
            Ok(()) => {
                if !failing_before {
                    passed.set(passed.get() + 1);
                }
                Ok(())
            }
            Err(message) => {
                if !failing_before {
                    *first_failure.borrow_mut() = Some(format!("{value:?}"));
                }
                Err(TestCaseError::fail(message))
            }
        }
    });
    ctx.detail(
        "generators",
        serde_json::json!({
            "obligation": spec.obligation,
            "contract": spec.contract,
            "cases": spec.cases,
            "seed": seed,
        }),
    );
    match result {
        Ok(()) => {
            ctx.note(format!(
                "{}: property held on {} generated cases (seed {seed})",
                spec.obligation, spec.cases
            ));
            Ok(PropReport {
                cases_run: u64::from(spec.cases),
                counterexamples: 0,
                seed,
            })
        }
        Err(TestError::Fail(reason, value)) => {
            let c = Counterexample {
                obligation: Some(spec.obligation.to_string()),
                input: format!("{value:?}"),
                message: reason.message().to_string(),
                original_input: first_failure.borrow().clone(),
                seed,
                cases_passed: passed.get(),
                shrink_steps: shrink_steps.get(),
            };
            ctx.note(format!(
                "{}: counterexample after {} passing cases, shrunk in {} steps: {} ({})",
                spec.obligation, c.cases_passed, c.shrink_steps, c.input, c.message
            ));
            ctx.counterexample(c);
            Ok(PropReport {
                cases_run: passed.get() + 1,
                counterexamples: 1,
                seed,
            })
        }
        Err(TestError::Abort(reason)) => Err(FalsifierError::msg(format!(
            "{}: proptest aborted: {reason}",
            spec.obligation
        ))),
    }
}

/// The runtime metadata of a registry entry, for running a property against a deliberately
/// wrong function with [`crate::run_falsifier_in`] (planted-bug tests): the thresholds are the
/// contract's, the contract hash is not (such records go to a temporary directory, never to the
/// evidence folders).
pub fn planted_meta(e: &Entry) -> FalsifierMeta {
    FalsifierMeta {
        id: e.id,
        contract: e.contract,
        contract_version: e.contract_version,
        contract_path: e.contract_file,
        contract_sha256: "planted-bug run: not evidence",
        falsifier_sha256: "planted-bug run: not evidence",
        tier: e.tier,
        metrics: e.metrics,
        devices: &[],
        fixtures: &[],
        if_fails: "a planted bug: this run must fail",
        test_name: "planted",
        test_file: "planted",
        manifest_dir: e.manifest_dir,
    }
}
