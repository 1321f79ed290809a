//! # pv-project: the project file, `pv.toml`
//!
//! Every pv tool (the `pv` CLI, the `#[falsifier]` macro, the falsifier runtime, `pv-build`)
//! learns the project's layout from one file, `pv.toml`, found upward from the current
//! directory as cargo finds `Cargo.toml`. It names:
//!
//! - `[contracts] dirs`: the contract folders;
//! - `[evidence] committed / local`: where committed evidence lives, and where plain test runs
//!   and `pv verify` write;
//! - `[tests] packages`: the cargo packages that hold bound tests (default: every package that
//!   depends on `contract-macros`);
//! - `[scope]`: the source files each contract's (or falsifier's) evidence depends on, as globs;
//! - `[fixtures.NAME]` and `[devices.NAME]`: the gates a contract may name, each with a probe.
//!
//! The format, with every key and default: `docs/project-file.md`. A project without `pv.toml`
//! gets [`Config::default`] rooted at its cargo workspace (or package) root.
//!
//! Map of the crate:
//! - [`Project`]: a loaded project ([`Project::discover`], [`Project::load`]) and the questions
//!   the tools ask of it (contract folders, evidence folders, scopes, gates, test packages).
//! - [`Config`] and its parts: what `pv.toml` says, deserialized with unknown keys rejected.
//! - [`scope`]: glob scopes and the files they select.
//! - [`cargo`]: the few facts read from `Cargo.toml` files (roots, members, dependants).
//! - [`ProjectError`]: every failure, naming the file and the fix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub mod cargo;
pub mod scope;

pub use scope::Scope;

/// The project file's name.
pub const PROJECT_FILE: &str = "pv.toml";

/// The crate whose dependants hold bound tests, by default.
pub const MACROS_CRATE: &str = "contract-macros";

/// What `pv.toml` says. Every table and key is optional; unknown keys are errors.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where contracts live.
    #[serde(default)]
    pub contracts: ContractsConfig,
    /// Where evidence lives.
    #[serde(default)]
    pub evidence: EvidenceConfig,
    /// Which packages hold bound tests.
    #[serde(default)]
    pub tests: TestsConfig,
    /// Which source files each record's digest covers.
    #[serde(default)]
    pub scope: ScopeConfig,
    /// The fixtures a contract's `gate.fixtures` may name.
    #[serde(default)]
    pub fixtures: BTreeMap<String, Probe>,
    /// The devices a contract's `gate.devices` may name.
    #[serde(default)]
    pub devices: BTreeMap<String, Probe>,
    /// What the project ships, for `pv audit`'s unclaimed-code report.
    #[serde(default)]
    pub product: ProductConfig,
    /// Who may vouch for evidence (signed run manifests); absent: signatures are optional.
    #[serde(default)]
    pub trust: Option<TrustConfig>,
}

/// `[trust]`: which SSH keys may sign run manifests, and for which tier. With it, a record whose
/// run is unsigned, or signed by a key not allowed for the record's tier, is UNATTESTED.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// An OpenSSH `allowed_signers` file (as `ssh-keygen -Y verify` and git read it), relative
    /// to the project root.
    pub allowed_signers: String,
    /// Principals (as named in `allowed_signers`) whose signature vouches for algorithm-tier
    /// records.
    #[serde(default)]
    pub algorithm: Vec<String>,
    /// Principals whose signature vouches for hardware-tier records.
    #[serde(default)]
    pub hardware: Vec<String>,
    /// Count only attested records, always (as `pv status --require-attested` does).
    #[serde(default)]
    pub require_attested: bool,
}

/// What happens to a record that no run manifest lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LooseRecords {
    /// Shown as loose, never counted (the default).
    #[default]
    Ignore,
    /// Counted, for migrating evidence written before run manifests; every dashboard says so.
    Count,
}

/// `[product]`: the binaries users run. `pv audit` lists the project's source files compiled
/// into them (cargo's dep-info `.d` files) that no contract's scope covers.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductConfig {
    /// Binary target names (`cargo build --bin NAME` writes `target/<profile>/NAME.d`).
    #[serde(default)]
    pub binaries: Vec<String>,
    /// Files (relative to the project root) that need no claim, each with the reason; they are
    /// listed, never counted as unclaimed.
    #[serde(default)]
    pub unclaimed: BTreeMap<String, String>,
}

/// `[contracts]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractsConfig {
    /// Contract folders, relative to the project root (default `["contracts"]`).
    #[serde(default = "default_contract_dirs")]
    pub dirs: Vec<String>,
}

impl Default for ContractsConfig {
    fn default() -> Self {
        ContractsConfig {
            dirs: default_contract_dirs(),
        }
    }
}

fn default_contract_dirs() -> Vec<String> {
    vec!["contracts".to_string()]
}

/// `[evidence]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceConfig {
    /// Committed evidence, read by `pv status` (default `evidence/runs`).
    #[serde(default = "default_committed")]
    pub committed: String,
    /// Where test runs write unless `$PV_EVIDENCE_DIR` says otherwise, git-ignored (default
    /// `evidence/local`). `pv status` reads it too.
    #[serde(default = "default_local")]
    pub local: String,
    /// Records in no run manifest: `ignore` (default) or `count` (migration only).
    #[serde(default)]
    pub loose: LooseRecords,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        EvidenceConfig {
            committed: default_committed(),
            local: default_local(),
            loose: LooseRecords::default(),
        }
    }
}

fn default_committed() -> String {
    "evidence/runs".to_string()
}

fn default_local() -> String {
    "evidence/local".to_string()
}

/// `[tests]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestsConfig {
    /// Cargo packages that hold bound tests. Default: every package of the workspace (or the
    /// single package) that depends on `contract-macros`.
    #[serde(default)]
    pub packages: Option<Vec<String>>,
}

/// `[scope]`: globs relative to the project root. A falsifier's scope is the first of
/// `falsifier.ID`, `contract.ID`, `default` that is set.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeConfig {
    /// The scope of every contract without its own (default: [`DEFAULT_SCOPE`]).
    #[serde(default = "default_scope")]
    pub default: Vec<String>,
    /// Per contract id.
    #[serde(default)]
    pub contract: BTreeMap<String, Vec<String>>,
    /// Per falsifier id (overrides its contract's).
    #[serde(default)]
    pub falsifier: BTreeMap<String, Vec<String>>,
}

/// The default scope: every Rust source, manifest and lock file of the project (conservative:
/// any such edit stales every record until a narrower scope is configured).
pub const DEFAULT_SCOPE: &[&str] = &["**/*.rs", "**/Cargo.toml", "Cargo.lock"];

fn default_scope() -> Vec<String> {
    DEFAULT_SCOPE.iter().map(|s| s.to_string()).collect()
}

impl ScopeConfig {
    /// Every scope with the label messages give it (`[scope] default`,
    /// `[scope.contract] "ID"`, `[scope.falsifier] "ID"`), default first.
    pub fn entries(&self) -> Vec<(String, &Vec<String>)> {
        let mut out = vec![("[scope] default".to_string(), &self.default)];
        out.extend(
            self.contract
                .iter()
                .map(|(k, v)| (format!("[scope.contract] {k:?}"), v)),
        );
        out.extend(
            self.falsifier
                .iter()
                .map(|(k, v)| (format!("[scope.falsifier] {k:?}"), v)),
        );
        out
    }
}

impl Default for ScopeConfig {
    fn default() -> Self {
        ScopeConfig {
            default: default_scope(),
            contract: BTreeMap::new(),
            falsifier: BTreeMap::new(),
        }
    }
}

/// How to tell whether a fixture or device is present: run `probe` (argv; `{env}` is replaced
/// by the value of `env`), which must exit 0 within `timeout_s`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    /// An environment variable that must be set and non-empty; its value is what the fixture
    /// exports to tests (`ctx.fixture(NAME)`).
    #[serde(default)]
    pub env: Option<String>,
    /// The probe command, argv form. Empty: only `env` is checked.
    #[serde(default)]
    pub probe: Vec<String>,
    /// Shown as the skip reason when the fixture is absent: say how to provide it.
    pub missing: String,
    /// Seconds before the probe is killed and the fixture counts as absent (default 60).
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
}

fn default_timeout() -> f64 {
    60.0
}

/// A failure to find, read or understand the project file.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys or wrong types (the message carries the
    /// line and column).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is well-formed TOML but not acceptable.
    #[error("{path}: {message}\nhelp: {help}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
        /// How to fix it.
        help: String,
    },
    /// A directory could not be walked.
    #[error("walking {path}: {source}")]
    Walk {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A loaded project: its root (the folder of `pv.toml`), the file, and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    /// The project root: every relative path of the config is relative to it.
    pub root: PathBuf,
    /// The `pv.toml` read, or `None` when the defaults apply.
    pub file: Option<PathBuf>,
    /// The configuration.
    pub config: Config,
}

impl Project {
    /// Finds `pv.toml` in `start` or its nearest ancestor that has one and loads it. Without
    /// one, the defaults apply, rooted at the cargo workspace root above `start` (or the nearest
    /// package root, or `start` itself).
    pub fn discover(start: &Path) -> Result<Project, ProjectError> {
        match find_project_file(start) {
            Some(file) => Project::load(&file),
            None => Ok(Project::defaults(&cargo::root_above(start))),
        }
    }

    /// The default configuration, rooted at `root`.
    pub fn defaults(root: &Path) -> Project {
        Project {
            root: root.to_path_buf(),
            file: None,
            config: Config::default(),
        }
    }

    /// Loads and checks one `pv.toml`.
    pub fn load(file: &Path) -> Result<Project, ProjectError> {
        let text = std::fs::read_to_string(file).map_err(|source| ProjectError::Read {
            path: file.to_path_buf(),
            source,
        })?;
        let root = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let root = if root.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            root
        };
        Project::parse(&root, file, &text)
    }

    /// Parses `text` as the `pv.toml` at `file`, rooted at `root`.
    pub fn parse(root: &Path, file: &Path, text: &str) -> Result<Project, ProjectError> {
        let config: Config = toml::from_str(text).map_err(|e| ProjectError::Parse {
            path: file.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let project = Project {
            root: root.to_path_buf(),
            file: Some(file.to_path_buf()),
            config,
        };
        project.check()?;
        Ok(project)
    }

    /// Checks what the types cannot: non-empty lists, valid globs, sane probes.
    fn check(&self) -> Result<(), ProjectError> {
        let c = &self.config;
        if c.contracts.dirs.is_empty() {
            return Err(self.invalid(
                "[contracts] dirs is empty",
                "name at least one folder, e.g. dirs = [\"contracts\"]",
            ));
        }
        for (what, v) in [
            ("[evidence] committed", &c.evidence.committed),
            ("[evidence] local", &c.evidence.local),
        ] {
            if v.trim().is_empty() {
                return Err(self.invalid(
                    format!("{what} is empty"),
                    "give a folder relative to the project root",
                ));
            }
        }
        if let Some(p) = &c.tests.packages {
            if p.is_empty() {
                return Err(self.invalid(
                    "[tests] packages is empty",
                    "name the packages that hold #[falsifier] tests, or remove the key to use every package that depends on contract-macros",
                ));
            }
        }
        for (what, patterns) in c.scope.entries() {
            if patterns.is_empty() {
                return Err(self.invalid(
                    format!("{what} is an empty scope"),
                    "a record that depends on no file could never go stale; list the files its claim is about",
                ));
            }
            Scope::new(patterns).map_err(|e| self.invalid(format!("{what}: {e}"), "globs use `*` within a folder and `**` across folders, relative to the project root"))?;
        }
        if let Some(t) = &c.trust {
            if t.allowed_signers.trim().is_empty() {
                return Err(self.invalid(
                    "[trust] allowed_signers is empty",
                    "name an OpenSSH allowed_signers file relative to the project root, e.g. allowed_signers = \".pv/allowed_signers\"",
                ));
            }
            if t.algorithm.is_empty() && t.hardware.is_empty() {
                return Err(self.invalid(
                    "[trust] allows no signer for either tier",
                    "list the principals that may vouch, e.g. algorithm = [\"ci@example.com\"] and hardware = [\"gpu-runner@example.com\"]",
                ));
            }
        }
        for (kind, table) in [("fixtures", &c.fixtures), ("devices", &c.devices)] {
            for (name, p) in table {
                if p.probe.is_empty() && p.env.is_none() {
                    return Err(self.invalid(
                        format!("[{kind}.{name}] has neither `probe` nor `env`"),
                        "give a probe command (argv list) that exits 0 when it is present, or an environment variable that must be set",
                    ));
                }
                if !(p.timeout_s.is_finite() && p.timeout_s > 0.0) {
                    return Err(self.invalid(
                        format!(
                            "[{kind}.{name}] timeout_s = {} is not a positive number of seconds",
                            p.timeout_s
                        ),
                        "e.g. timeout_s = 30",
                    ));
                }
                if p.probe.iter().any(|a| a.contains("{env}")) && p.env.is_none() {
                    return Err(self.invalid(
                        format!("[{kind}.{name}] uses {{env}} in its probe but sets no `env`"),
                        "add env = \"VARIABLE\"",
                    ));
                }
            }
        }
        Ok(())
    }

    fn invalid(&self, message: impl Into<String>, help: impl Into<String>) -> ProjectError {
        ProjectError::Invalid {
            path: self
                .file
                .clone()
                .unwrap_or_else(|| self.root.join(PROJECT_FILE)),
            message: message.into(),
            help: help.into(),
        }
    }

    /// The contract folders, absolute (joined to the root).
    pub fn contract_dirs(&self) -> Vec<PathBuf> {
        self.config
            .contracts
            .dirs
            .iter()
            .map(|d| self.root.join(d))
            .collect()
    }

    /// The committed evidence folder.
    pub fn committed_evidence(&self) -> PathBuf {
        self.root.join(&self.config.evidence.committed)
    }

    /// The `allowed_signers` file of the trust policy, if there is one.
    pub fn allowed_signers(&self) -> Option<PathBuf> {
        self.config
            .trust
            .as_ref()
            .map(|t| self.root.join(&t.allowed_signers))
    }

    /// The local evidence folder (plain test runs and `pv verify` write here).
    pub fn local_evidence(&self) -> PathBuf {
        self.root.join(&self.config.evidence.local)
    }

    /// The evidence folders `pv status` reads: committed and local (the local one once if it
    /// lies inside the committed one).
    pub fn evidence_dirs(&self) -> Vec<PathBuf> {
        let committed = self.committed_evidence();
        let local = self.local_evidence();
        if local.starts_with(&committed) {
            vec![committed]
        } else {
            vec![committed, local]
        }
    }

    /// The scope (glob patterns) of a falsifier: its own, else its contract's, else the
    /// default.
    pub fn scope_for(&self, contract: &str, falsifier: &str) -> &[String] {
        let s = &self.config.scope;
        s.falsifier
            .get(falsifier)
            .or_else(|| s.contract.get(contract))
            .unwrap_or(&s.default)
    }

    /// A fixture's probe, if `pv.toml` declares it.
    pub fn fixture(&self, name: &str) -> Option<&Probe> {
        self.config.fixtures.get(name)
    }

    /// A device's probe, if `pv.toml` declares it.
    pub fn device(&self, name: &str) -> Option<&Probe> {
        self.config.devices.get(name)
    }

    /// The packages that hold bound tests: `[tests] packages` if set, else every package that
    /// depends on `contract-macros`. Each with its folder.
    pub fn test_packages(&self) -> Result<Vec<cargo::Package>, ProjectError> {
        let all = cargo::packages(&self.root)?;
        match &self.config.tests.packages {
            Some(names) => names
                .iter()
                .map(|n| {
                    all.iter().find(|p| &p.name == n).cloned().ok_or_else(|| {
                        let known: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
                        self.invalid(
                            format!("[tests] packages names `{n}`, which is not a package of this project"),
                            format!("the packages are: {}", known.join(", ")),
                        )
                    })
                })
                .collect(),
            None => Ok(all.into_iter().filter(|p| p.uses_macros).collect()),
        }
    }
}

/// `pv.toml` in `start` or the nearest ancestor that has one.
pub fn find_project_file(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|d| d.join(PROJECT_FILE))
        .find(|f| f.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Project, ProjectError> {
        Project::parse(Path::new("/p"), Path::new("/p/pv.toml"), text)
    }

    #[test]
    fn empty_file_gives_defaults() {
        let p = parse("").unwrap();
        assert_eq!(p.config, Config::default());
        assert_eq!(p.contract_dirs(), vec![PathBuf::from("/p/contracts")]);
        assert_eq!(
            p.evidence_dirs(),
            vec![
                PathBuf::from("/p/evidence/runs"),
                PathBuf::from("/p/evidence/local")
            ]
        );
        assert_eq!(p.scope_for("c", "F"), DEFAULT_SCOPE);
    }

    #[test]
    fn scopes_resolve_falsifier_then_contract_then_default() {
        let p = parse(
            r#"
[scope]
default = ["src/**"]
contract."c1" = ["src/a/**"]
falsifier."FALSIFY-X-001" = ["src/a/x.rs"]
"#,
        )
        .unwrap();
        assert_eq!(p.scope_for("c1", "FALSIFY-X-001"), ["src/a/x.rs"]);
        assert_eq!(p.scope_for("c1", "FALSIFY-Y-001"), ["src/a/**"]);
        assert_eq!(p.scope_for("c2", "FALSIFY-Y-001"), ["src/**"]);
    }

    #[test]
    fn local_inside_committed_is_read_once() {
        let p = parse("[evidence]\ncommitted = \"ev\"\nlocal = \"ev/local\"\n").unwrap();
        assert_eq!(p.evidence_dirs(), vec![PathBuf::from("/p/ev")]);
    }

    #[test]
    fn unknown_keys_are_rejected_with_a_position() {
        let e = parse("[contracts]\ndir = [\"c\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/p/pv.toml"), "{e}");
        assert!(e.contains("unknown field `dir`"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let e = parse("[contract]\n").unwrap_err().to_string();
        assert!(e.contains("unknown field `contract`"), "{e}");
    }

    #[test]
    fn bad_values_are_explained() {
        for (text, want) in [
            ("[contracts]\ndirs = []", "dirs is empty"),
            ("[scope]\ndefault = []", "empty scope"),
            ("[scope]\ndefault = [\"src/[\"]", "[scope] default"),
            (
                "[fixtures.db]\nmissing = \"start it\"",
                "neither `probe` nor `env`",
            ),
            (
                "[devices.gpu]\nprobe = [\"x\"]\nmissing = \"m\"\ntimeout_s = 0",
                "not a positive number",
            ),
            (
                "[fixtures.py]\nprobe = [\"{env}\"]\nmissing = \"m\"",
                "sets no `env`",
            ),
            ("[tests]\npackages = []", "packages is empty"),
            ("[evidence]\nlocal = \" \"", "local is empty"),
            ("contracts = 3", "invalid type"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn gates_are_looked_up_by_name() {
        let p = parse(
            "[fixtures.py]\nenv = \"PY\"\nprobe = [\"{env}\", \"-c\", \"1\"]\nmissing = \"set PY\"\n[devices.gpu]\nprobe = [\"nvidia-smi\", \"-L\"]\nmissing = \"no GPU\"\n",
        )
        .unwrap();
        assert_eq!(p.fixture("py").unwrap().env.as_deref(), Some("PY"));
        assert_eq!(p.fixture("py").unwrap().timeout_s, 60.0);
        assert!(p.fixture("gpu").is_none());
        assert_eq!(p.device("gpu").unwrap().missing, "no GPU");
    }

    #[test]
    fn discovery_walks_up_and_falls_back_to_the_cargo_root() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(d.path().join("Cargo.toml"), "[package]\nname = \"x\"\n").unwrap();
        let p = Project::discover(&sub).unwrap();
        assert_eq!(p.file, None);
        assert_eq!(p.root, d.path());
        std::fs::write(d.path().join("a/pv.toml"), "[contracts]\ndirs = [\"k\"]\n").unwrap();
        let p = Project::discover(&sub).unwrap();
        assert_eq!(p.root, d.path().join("a"));
        assert_eq!(p.contract_dirs(), vec![d.path().join("a/k")]);
    }
}
