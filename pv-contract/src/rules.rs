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
}
