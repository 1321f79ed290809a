//! The types of the falsifier registry that `pv-build` generates into a test crate
//! (`$OUT_DIR/pv_registry.rs`): every falsifier the contracts define, with the tests bound to
//! it.

use crate::{MetricSpec, Tier};

/// A test bound to a falsifier (found by the textual scan of [`crate::bindings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// Test file, relative to the project root.
    pub file: &'static str,
    /// 1-based line of the `#[falsifier]` attribute.
    pub line: usize,
    /// Function name (empty if the scan could not find it).
    pub function: &'static str,
}

/// One falsifier as the contracts define it.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// `FALSIFY-...`.
    pub id: &'static str,
    /// Contract id.
    pub contract: &'static str,
    /// Contract version.
    pub contract_version: &'static str,
    /// Contract file relative to the project root.
    pub contract_file: &'static str,
    /// Tier.
    pub tier: Tier,
    /// `gate.features`.
    pub features: &'static [&'static str],
    /// `gate.devices`.
    pub devices: &'static [&'static str],
    /// `gate.fixtures`.
    pub fixtures: &'static [&'static str],
    /// Metrics and thresholds.
    pub metrics: &'static [MetricSpec],
    /// Retirement reason.
    pub retired: Option<&'static str>,
    /// Bound tests (exactly one for an implemented falsifier).
    pub tests: &'static [Binding],
    /// `CARGO_MANIFEST_DIR` of the crate the registry was generated into (the project is found
    /// above it).
    pub manifest_dir: &'static str,
}

impl Entry {
    /// Whether a test is bound to it.
    pub fn is_bound(&self) -> bool {
        !self.tests.is_empty()
    }
}
