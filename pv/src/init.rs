//! `pv init`: set up pv in an existing cargo project (a single crate or a workspace).
//!
//! Run from any folder of the project; the project root is the cargo root above it
//! ([`pv_project::cargo::root_above`]). Relative to that root it writes:
//!
//! 1. `pv.toml`, every key commented, with a `[scope] default` covering the crates' sources
//!    and manifests;
//! 2. `<contracts>/<package>-v1.yaml`, an example contract made by `pv new`'s generator
//!    ([`crate::authoring::scaffold`]) with one falsifier, [`EXAMPLE_FALSIFIER`], whose metric
//!    is `max_abs_error <= 1e-6`; and `<contracts>/contract.schema.json` (editor completion) as
//!    `pv new` does;
//! 3. `tests/pv_example.rs` in the package that holds bound tests (the root package of a single
//!    crate, the first member of a workspace): one `#[falsifier]` test for that falsifier;
//! 4. the local evidence folder appended to `.gitignore`;
//! 5. `.github/workflows/pv.yml`: validate, `pv verify --partition K/4` in four shards, and a
//!    final `pv status --check` and `pv evidence verify` over the shards' evidence.
//!
//! It never overwrites: a file that exists is left as is (`.gitignore` is only appended to, and
//! only when the line is missing), so running it again writes nothing new. It never edits
//! `Cargo.toml`: the `[dev-dependencies]` lines to add are printed. Everything is computed
//! first; then every file is written to a temporary file in its own folder, and only when all
//! of them were written are they renamed into place, so a failure (a read-only folder) leaves
//! no file behind, half-written or not.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use pv_contract::rules::IdKind;
use pv_project::{cargo, Project, PROJECT_FILE};
use serde_json::json;

/// `pv init --help`'s text (main.rs's `Init` variant uses it as its long help).
pub const LONG_ABOUT: &str =
    "Set up pv in an existing cargo project (a single crate or a workspace), from \
any folder inside it. Relative to the cargo root it writes:

  pv.toml                      the project file, every key explained in a comment
  contracts/NAME-v1.yaml       an example contract (as `pv new` writes it) with one falsifier,
                               FALSIFY-EXAMPLE-FIRST-001: max_abs_error <= 1e-6
  contracts/contract.schema.json   the JSON Schema, for editor completion
  tests/pv_example.rs          its bound test, in the package that holds bound tests (the
                               crate itself, or a workspace's first member)
  .gitignore                   + the local evidence folder (/evidence/local/)
  .github/workflows/pv.yml     CI: pv validate, pv verify --partition K/4 in four shards,
                               pv status --check and pv evidence verify over their evidence

A file that exists is left as is (.gitignore is only appended to), so running it twice is \
harmless. Cargo.toml is never edited: the [dev-dependencies] lines the tests need are printed \
as a next step. Files are written all or nothing: on an error (e.g. a read-only folder) no \
file is left behind, and pv init exits 2.";

/// `pv init` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print what would be written (each path and its contents) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print a JSON summary on stdout: {root, dry_run, written, skipped, files, next_steps,
    /// dev_dependencies}.
    #[arg(long)]
    pub json: bool,
}

/// The example falsifier's id (the scaffold's `FALSIFY-<AREA>-FIRST-001` with area `EXAMPLE`).
pub const EXAMPLE_FALSIFIER: &str = "FALSIFY-EXAMPLE-FIRST-001";

/// The example's area code (ids `AC-EXAMPLE-001`, `M-EXAMPLE-1.1`, [`EXAMPLE_FALSIFIER`]).
const EXAMPLE_AREA: &str = "EXAMPLE";

/// The bound example test's function name.
pub const EXAMPLE_FUNCTION: &str = "example_sum_matches_closed_form";

/// The dev-dependencies a package of bound tests needs: (crate, version requirement).
pub const DEV_DEPENDENCIES: &[(&str, &str)] = &[("contract-macros", "0.1"), ("pv-evidence", "0.1")];

/// What `pv init` does with one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create it (it does not exist).
    Create,
    /// Append to it (only `.gitignore`).
    Append,
    /// Leave it alone.
    Skip,
}

impl Action {
    fn word(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Append => "append",
            Action::Skip => "skip",
        }
    }
}

/// One file of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    /// Path relative to the project root, `/`-separated.
    pub rel: String,
    /// Absolute path.
    pub path: PathBuf,
    /// What happens to it.
    pub action: Action,
    /// The whole new contents (create, append); empty for skip.
    pub contents: String,
    /// What is added: the contents for create, the appended text for append.
    pub added: String,
    /// Why it is skipped, or a remark.
    pub note: Option<String>,
    /// Shown instead of the contents by `--dry-run` (for long generated files).
    pub summary: Option<String>,
}

/// The `[dev-dependencies]` the package of bound tests still lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevDeps {
    /// The package.
    pub package: String,
    /// Its manifest, relative to the root.
    pub manifest: String,
    /// The lines to add: `[dev-dependencies]` then one `name = "version"` per missing crate.
    pub lines: Vec<String>,
}

/// Everything `pv init` will do, computed before anything is written.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The project root.
    pub root: PathBuf,
    /// Whether the root manifest declares a workspace.
    pub workspace: bool,
    /// The package that holds the bound tests.
    pub test_package: cargo::Package,
    /// The files, in the order they are reported.
    pub files: Vec<PlannedFile>,
    /// The dev-dependencies to add (`None` when the package has them).
    pub dev_deps: Option<DevDeps>,
    /// What to do next, in order.
    pub next_steps: Vec<String>,
}

/// The contract id for a package: its name lowercased, every run of characters other than
/// ASCII letters and digits made one `-`, then `-v1` (unless it already ends in `-v<N>`);
/// `example-v1` when that is still not a valid contract id (e.g. a name starting with a digit).
pub fn contract_id_for(package: &str) -> String {
    let mut base = String::new();
    for c in package.chars() {
        if c.is_ascii_alphanumeric() {
            base.push(c.to_ascii_lowercase());
        } else if !base.ends_with('-') {
            base.push('-');
        }
    }
    let base = base.trim_matches('-');
    let id = if IdKind::Contract.matches(base) {
        base.to_string()
    } else {
        format!("{base}-v1")
    };
    if IdKind::Contract.matches(&id) {
        id
    } else {
        "example-v1".to_string()
    }
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML array of strings: on one line when short, else one item per line.
fn toml_array(items: &[String], indent: usize) -> String {
    let quoted: Vec<String> = items.iter().map(|s| toml_str(s)).collect();
    let one = format!("[{}]", quoted.join(", "));
    if one.len() + indent <= 90 {
        return one;
    }
    let mut out = String::from("[\n");
    for q in quoted {
        out.push_str(&format!("    {q},\n"));
    }
    out.push(']');
    out
}

/// The default scope for the packages: each package's `src/**` (when it has `src/`), its
/// `build.rs` (when it has one) and its manifest, plus the workspace manifest.
pub fn default_scope(root: &Path, packages: &[cargo::Package]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: String| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    for p in packages {
        let prefix = if p.path == "." {
            String::new()
        } else {
            format!("{}/", p.path)
        };
        if p.dir.join("src").is_dir() {
            push(format!("{prefix}src/**"));
        }
        if p.dir.join("build.rs").is_file() {
            push(format!("{prefix}build.rs"));
        }
        if p.dir.join("Cargo.toml").is_file() {
            push(format!("{prefix}Cargo.toml"));
        }
    }
    // A workspace manifest (profiles, shared dependencies) changes what every crate builds.
    if root.join("Cargo.toml").is_file() {
        push("Cargo.toml".to_string());
    }
    out
}

/// The text of a new `pv.toml`.
pub fn pv_toml_text(
    scope: &[String],
    test_package: &str,
    contract_id: &str,
    workspace: bool,
) -> String {
    let scope_line = toml_array(scope, "default = ".len());
    let scope_about = if workspace {
        "the workspace members' sources and manifests"
    } else {
        "the crate's sources and manifest"
    };
    format!(
        r#"# pv's project file, written by `pv init`. Every pv tool finds it upward from the current
# folder, as cargo finds Cargo.toml; every path in it is relative to this folder. Every key
# is optional: a missing key takes the default named in its comment. Unknown keys are errors.

[contracts]
# The folders of contract files (*.yaml). Default: ["contracts"].
dirs = ["contracts"]

[evidence]
# Evidence records kept on purpose (CI runs, runs on special hardware): commit them.
# `pv status` reads them. Default: "evidence/runs".
committed = "evidence/runs"
# Where plain `cargo test` and `pv verify` write each run's records (unless $PV_EVIDENCE_DIR
# says otherwise). `pv init` added it to .gitignore; `pv status` reads it too.
# Default: "evidence/local".
local = "evidence/local"

[tests]
# The cargo packages that hold #[falsifier] tests. Default: every package of the project that
# depends on contract-macros, so this is usually left unset:
# packages = [{test_package}]

[scope]
# The files a record's claim is about, as globs (`*` within a folder, `**` across folders).
# A record goes STALE when a file in its scope changes, until its falsifier is run again.
# Tests are deliberately outside the scope (an edited test is re-run, not staled).
# Here: {scope_about}.
# Default when unset: ["**/*.rs", "**/Cargo.toml", "Cargo.lock"].
default = {scope_line}

# Narrower scopes, per contract or per falsifier; a falsifier's scope is the first that is
# set of: its own, its contract's, the default.
# [scope.contract]
# {contract} = ["src/lib.rs", "Cargo.toml"]
# [scope.falsifier]
# {falsifier} = ["src/lib.rs"]

# The fixtures and devices a contract's `gate` may name (gate.fixtures, gate.devices). A
# falsifier whose fixture or device is absent at run time is skipped, with the `missing`
# text as the reason; it never passes.
#
# [fixtures.numpy-python]
# # An environment variable that must be set and non-empty; its value is what the test gets
# # from ctx.fixture("numpy-python"). Optional when `probe` is given.
# env = "NUMPY_PYTHON"
# # A command (argv list) that exits 0 when the fixture is usable; {{env}} is replaced by the
# # variable's value. Optional when `env` is given.
# probe = ["{{env}}", "-c", "import numpy"]
# # The skip reason shown when it is absent: say how to provide it.
# missing = "set NUMPY_PYTHON to a python that has numpy"
# # Seconds before the probe is stopped and the fixture counts as absent. Default: 60.
# timeout_s = 120
#
# [devices.cuda]
# probe = ["nvidia-smi", "-L"]
# missing = "no NVIDIA GPU visible (nvidia-smi -L failed)"
# timeout_s = 30
"#,
        test_package = toml_str(test_package),
        contract = toml_str(contract_id),
        falsifier = toml_str(EXAMPLE_FALSIFIER),
    )
}

/// Replaces the one occurrence of `from` in `text`; an error when it is not there exactly once
/// (the scaffold changed and this code was not updated).
fn replace_once(text: &str, from: &str, to: &str) -> Result<String> {
    match text.matches(from).count() {
        1 => Ok(text.replacen(from, to, 1)),
        n => bail!(
            "internal error: the contract scaffold has {n} occurrences of {from:?}, expected 1"
        ),
    }
}

/// The example contract: `pv new`'s scaffold with area `EXAMPLE`, its falsifier's claim and
/// metric made concrete (`max_abs_error <= 1e-6`), checked to be valid.
pub fn example_contract(id: &str, package: &str, test_rel: &str, date: &str) -> Result<String> {
    let title = format!("Example contract of {package}");
    let text = crate::authoring::scaffold(id, EXAMPLE_AREA, &title, date);
    let text = replace_once(
        &text,
        "      A claim precise enough that a test can refute it, with its inputs and tolerance.\n",
        &format!(
            "      An example to replace with a claim about your crate: summing 1..=1000 in f64 gives\n      \
             the closed form n(n+1)/2 to within 1e-6 ({test_rel}).\n"
        ),
    )?;
    let text = replace_once(
        &text,
        "      - name: mismatches\n        op: \"==\"\n        threshold: 0\n        unit: count\n",
        "      - name: max_abs_error\n        op: \"<=\"\n        threshold: 1.0e-6\n",
    )?;
    let text = replace_once(
        &text,
        "      Where to look first when this fails.\n",
        "      The example test itself: it checks only f64 summation of small integers.\n",
    )?;
    let loaded = pv_contract::load_str(format!("{id}.yaml"), &text)
        .map_err(|e| anyhow::anyhow!("internal error: the example contract does not load: {e}"))?;
    if !loaded
        .contract
        .falsifiers
        .iter()
        .any(|f| f.id == EXAMPLE_FALSIFIER)
    {
        bail!("internal error: the example contract does not declare {EXAMPLE_FALSIFIER}");
    }
    let set = pv_contract::ContractSet::new(vec![loaded]);
    if let Some(d) = pv_contract::rules::check(&set)
        .into_iter()
        .find(|d| d.is_error())
    {
        bail!("internal error: the example contract is invalid: {d}");
    }
    Ok(text)
}

/// The bound example test.
pub fn example_test(contract_rel: &str, manifest_rel: &str) -> String {
    let deps: Vec<String> = DEV_DEPENDENCIES
        .iter()
        .map(|(n, v)| format!("//!     {n} = \"{v}\""))
        .collect();
    format!(
        r#"//! An example bound test, written by `pv init`. `#[falsifier]` binds it to
//! {EXAMPLE_FALSIFIER}, declared in {contract_rel}: the metric it reports is
//! checked against the threshold there (thresholds live only in the contract). Each run leaves
//! an evidence record in pv.toml's local evidence folder; `pv status` derives the contract's
//! stages from the records.
//!
//! Replace the computation with a claim about your crate. It needs, in {manifest_rel}:
//!
//!     [dev-dependencies]
{deps}

#[contract_macros::falsifier("{EXAMPLE_FALSIFIER}")]
fn {EXAMPLE_FUNCTION}(ctx: &mut pv_evidence::Ctx) -> pv_evidence::FalsifierResult {{
    let n = 1000_u32;
    let summed: f64 = (1..=n).map(f64::from).sum();
    let closed_form = f64::from(n) * f64::from(n + 1) / 2.0;
    // Reported metrics are checked against the contract's thresholds (max_abs_error <= 1e-6).
    ctx.metric("max_abs_error", (summed - closed_form).abs());
    Ok(())
}}
"#,
        deps = deps.join("\n"),
    )
}

/// The CI workflow: validate, four shards of `pv verify --partition`, then `pv status --check`
/// and `pv evidence verify` over their evidence (`local` is pv.toml's local evidence folder).
pub fn workflow_text(local: &str) -> String {
    format!(
        r#"# pv: check the contracts, run the falsifiers in four shards, derive the status from their
# evidence. Written by `pv init`; edit freely.
name: pv

on:
  push:
    branches: [main]
  pull_request:

jobs:
  validate:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: dtolnay/rust-toolchain@stable
      - name: Install pv
        # Or, from a checkout of pv's sources: cargo install --locked --path path/to/pv
        run: cargo install --locked pv
      - run: pv validate

  verify:
    needs: validate
    runs-on: ubuntu-latest
    strategy:
      fail-fast: false
      matrix:
        shard: [1, 2, 3, 4]
    steps:
      - uses: actions/checkout@v4
      - uses: dtolnay/rust-toolchain@stable
      - name: Install pv
        # Or, from a checkout of pv's sources: cargo install --locked --path path/to/pv
        run: cargo install --locked pv
      # Each shard runs the falsifiers whose id hashes to it, and writes their records, with
      # one run manifest per test process, to its own folder. To have the runs vouched for,
      # store an SSH private key as a secret and pass it with --sign (or PV_SIGNING_KEY), and
      # add a [trust] table to pv.toml (docs/evidence.md, "Trust model").
      - run: pv verify --no-validate --partition ${{{{ matrix.shard }}}}/4 --run-dir {local}/shard-${{{{ matrix.shard }}}}
      - uses: actions/upload-artifact@v4
        if: ${{{{ !cancelled() }}}}
        with:
          name: pv-evidence-${{{{ matrix.shard }}}}
          path: {local}/
          if-no-files-found: ignore

  status:
    needs: verify
    if: ${{{{ !cancelled() }}}}
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: dtolnay/rust-toolchain@stable
      - name: Install pv
        # Or, from a checkout of pv's sources: cargo install --locked --path path/to/pv
        run: cargo install --locked pv
      - uses: actions/download-artifact@v4
        with:
          pattern: pv-evidence-*
          path: {local}/
          merge-multiple: true
      # Exit 1 if any stage is FAILING, or any record is invalid or missing from its run.
      - run: pv status --check
      # Every record and run manifest checked as an auditor would (digests, signatures,
      # recomputed verdicts); exit 1 on any problem.
      - run: pv evidence verify --problems-only
"#
    )
}

/// The `.gitignore` line for the local evidence folder (`/evidence/local/`), or `None` when
/// the folder is not a plain relative path inside the project.
pub fn ignore_entry(local: &str) -> Option<String> {
    let clean = local.trim().replace('\\', "/");
    let clean = clean.trim_start_matches("./").trim_end_matches('/');
    let plain = !clean.is_empty()
        && !clean.starts_with('/')
        && !clean.contains(':')
        && clean
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    plain.then(|| format!("/{clean}/"))
}

/// What to append to a `.gitignore` holding `existing` (`None`: absent) so that it has `entry`;
/// `None` when a line already says it (with or without the leading or trailing `/`).
pub fn gitignore_addition(existing: Option<&str>, entry: &str) -> Option<String> {
    let bare = entry.trim_matches('/');
    let present = existing.is_some_and(|text| {
        text.lines()
            .map(str::trim)
            .any(|l| l.trim_start_matches('/').trim_end_matches('/') == bare && !l.is_empty())
    });
    if present {
        return None;
    }
    let mut add = String::new();
    if existing.is_some_and(|t| !t.is_empty() && !t.ends_with('\n')) {
        add.push('\n');
    }
    add.push_str("# pv: the local evidence folder (plain `cargo test` and `pv verify` runs)\n");
    add.push_str(entry);
    add.push('\n');
    Some(add)
}

fn rel_join(prefix: &str, rest: &str) -> String {
    if prefix == "." || prefix.is_empty() {
        rest.to_string()
    } else {
        format!("{}/{rest}", prefix.trim_end_matches('/'))
    }
}

fn skip(rel: String, path: PathBuf, note: impl Into<String>) -> PlannedFile {
    PlannedFile {
        rel,
        path,
        action: Action::Skip,
        contents: String::new(),
        added: String::new(),
        note: Some(note.into()),
        summary: None,
    }
}

fn create(rel: String, path: PathBuf, contents: String) -> PlannedFile {
    PlannedFile {
        rel,
        path,
        action: Action::Create,
        added: contents.clone(),
        contents,
        note: None,
        summary: None,
    }
}

const EXISTS: &str = "exists, left as is";

/// The contract and falsifier ids declared by the contract files already in `dirs`, with their
/// files (unreadable or broken files are ignored: `pv validate` reports them).
fn existing_declarations(dirs: &[PathBuf]) -> Vec<(String, Vec<String>, PathBuf)> {
    let mut out = Vec::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        for f in files {
            let Ok(text) = std::fs::read_to_string(&f) else {
                continue;
            };
            if let Ok(l) = pv_contract::load_str(f.clone(), &text) {
                let ids = l.contract.falsifiers.iter().map(|x| x.id.clone()).collect();
                out.push((l.contract.contract.clone(), ids, f));
            }
        }
    }
    out
}

fn rel_of(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or(p)
        .to_string_lossy()
        .replace('\\', "/")
}

/// Computes everything `pv init` would do in the cargo project above `start`; reads only.
pub fn plan(start: &Path) -> Result<Plan> {
    let root = cargo::root_above(start);
    if !root.join("Cargo.toml").is_file() {
        bail!(
            "no Cargo.toml in {} or any folder above it: pv init sets up pv in an existing cargo \
             project; run `cargo init` first (or run pv init inside the project)",
            start.display()
        );
    }
    let manifest_text = std::fs::read_to_string(root.join("Cargo.toml"))
        .with_context(|| format!("reading {}", root.join("Cargo.toml").display()))?;
    let workspace = manifest_text
        .parse::<toml::Table>()
        .is_ok_and(|t| t.contains_key("workspace"));
    let packages = cargo::packages(&root)?;
    let Some(test_package) = packages.first().cloned() else {
        bail!(
            "{} declares no package and no workspace member: add a crate first (cargo new NAME), \
             then run pv init again",
            root.join("Cargo.toml").display()
        );
    };
    let contract_id = contract_id_for(&test_package.name);

    let mut files = Vec::new();

    // 1. pv.toml: the project as it will be (the existing file, or the one written now).
    let pv_toml = root.join(PROJECT_FILE);
    let project = if pv_toml.is_file() {
        files.push(skip(PROJECT_FILE.to_string(), pv_toml.clone(), EXISTS));
        Project::load(&pv_toml).with_context(|| {
            format!(
                "{} exists but does not load; fix it (or move it away) and run pv init again",
                pv_toml.display()
            )
        })?
    } else {
        let scope = default_scope(&root, &packages);
        let text = pv_toml_text(&scope, &test_package.name, &contract_id, workspace);
        let project = Project::parse(&root, &pv_toml, &text).map_err(|e| {
            anyhow::anyhow!("internal error: the pv.toml written does not load: {e}")
        })?;
        files.push(create(PROJECT_FILE.to_string(), pv_toml.clone(), text));
        project
    };

    // 2. The example contract, and the schema its first line points at.
    let contracts_rel = project
        .config
        .contracts
        .dirs
        .first()
        .cloned()
        .unwrap_or_else(|| "contracts".to_string());
    let contracts_rel = contracts_rel.trim_end_matches('/').to_string();
    let contracts_dir = root.join(&contracts_rel);
    let contract_rel = rel_join(&contracts_rel, &format!("{contract_id}.yaml"));
    let contract_path = root.join(&contract_rel);
    let existing = existing_declarations(&project.contract_dirs());
    let declared_in = existing
        .iter()
        .find(|(_, ids, _)| ids.iter().any(|i| i == EXAMPLE_FALSIFIER))
        .map(|(_, _, f)| f.clone());
    let example_available;
    if contract_path.exists() {
        example_available = declared_in.is_some();
        files.push(skip(contract_rel.clone(), contract_path, EXISTS));
    } else if let Some((_, _, f)) = existing.iter().find(|(c, _, _)| *c == contract_id) {
        example_available = declared_in.is_some();
        files.push(skip(
            contract_rel.clone(),
            contract_path,
            format!(
                "contract {contract_id} already exists in {}",
                rel_of(&root, f)
            ),
        ));
    } else if let Some(f) = &declared_in {
        example_available = true;
        files.push(skip(
            contract_rel.clone(),
            contract_path,
            format!(
                "{EXAMPLE_FALSIFIER} is already declared in {}",
                rel_of(&root, f)
            ),
        ));
    } else {
        example_available = true;
        let text = example_contract(
            &contract_id,
            &test_package.name,
            &rel_join(&test_package.path, "tests/pv_example.rs"),
            &crate::authoring::today_utc(),
        )?;
        files.push(create(contract_rel.clone(), contract_path, text));
    }
    let schema_rel = rel_join(&contracts_rel, "contract.schema.json");
    let schema_path = contracts_dir.join("contract.schema.json");
    if schema_path.exists() {
        files.push(skip(schema_rel, schema_path, EXISTS));
    } else {
        let text = crate::schema::schema_text();
        let mut f = create(schema_rel, schema_path, text);
        f.summary = Some(format!(
            "(the JSON Schema of contract files, as `pv schema` prints it: {} bytes)",
            f.contents.len()
        ));
        files.push(f);
    }

    // 3. The bound example test.
    let manifest_rel = rel_join(&test_package.path, "Cargo.toml");
    let test_rel = rel_join(&test_package.path, "tests/pv_example.rs");
    let test_path = test_package.dir.join("tests").join("pv_example.rs");
    if test_path.exists() {
        files.push(skip(test_rel, test_path, EXISTS));
    } else if !example_available {
        files.push(skip(
            test_rel,
            test_path,
            format!("no contract declares {EXAMPLE_FALSIFIER}, which it would bind"),
        ));
    } else {
        let contract_shown = declared_in
            .as_ref()
            .map(|f| rel_of(&root, f))
            .unwrap_or_else(|| contract_rel.clone());
        files.push(create(
            test_rel,
            test_path,
            example_test(&contract_shown, &manifest_rel),
        ));
    }

    // 4. .gitignore.
    let local = project.config.evidence.local.clone();
    let gitignore = root.join(".gitignore");
    match ignore_entry(&local) {
        None => files.push(skip(
            ".gitignore".to_string(),
            gitignore,
            format!("the local evidence folder {local:?} is not a relative path inside the project; ignore it yourself"),
        )),
        Some(entry) => {
            let existing = if gitignore.exists() {
                Some(
                    std::fs::read_to_string(&gitignore)
                        .with_context(|| format!("reading {}", gitignore.display()))?,
                )
            } else {
                None
            };
            match gitignore_addition(existing.as_deref(), &entry) {
                None => files.push(skip(
                    ".gitignore".to_string(),
                    gitignore,
                    format!("already ignores {entry}"),
                )),
                Some(add) => {
                    let action = if existing.is_some() {
                        Action::Append
                    } else {
                        Action::Create
                    };
                    let contents = format!("{}{add}", existing.as_deref().unwrap_or(""));
                    files.push(PlannedFile {
                        rel: ".gitignore".to_string(),
                        path: gitignore,
                        action,
                        contents,
                        added: add,
                        note: Some(format!("+ {entry}")),
                        summary: None,
                    });
                }
            }
        }
    }

    // 5. The CI workflow.
    let workflow_rel = ".github/workflows/pv.yml".to_string();
    let workflow_path = root.join(".github").join("workflows").join("pv.yml");
    if workflow_path.exists() {
        files.push(skip(workflow_rel, workflow_path, EXISTS));
    } else {
        let local_shown = ignore_entry(&local)
            .map(|e| e.trim_matches('/').to_string())
            .unwrap_or_else(|| "evidence/local".to_string());
        files.push(create(
            workflow_rel,
            workflow_path,
            workflow_text(&local_shown),
        ));
    }

    // The dev-dependencies the test package lacks.
    let manifest = test_package.dir.join("Cargo.toml");
    let table: toml::Table = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_default();
    let missing: Vec<String> = DEV_DEPENDENCIES
        .iter()
        .filter(|(n, _)| !cargo::depends_on(&table, n))
        .map(|(n, v)| format!("{n} = \"{v}\""))
        .collect();
    let dev_deps = (!missing.is_empty()).then(|| DevDeps {
        package: test_package.name.clone(),
        manifest: manifest_rel.clone(),
        lines: std::iter::once("[dev-dependencies]".to_string())
            .chain(missing)
            .collect(),
    });

    let mut next_steps = Vec::new();
    if let Some(d) = &dev_deps {
        next_steps.push(format!(
            "add to {} (package `{}`), under its [dev-dependencies] table if it has one:\n{}",
            d.manifest,
            d.package,
            d.lines.join("\n")
        ));
    }
    if !cargo::depends_on(&table, "pv-build") {
        next_steps.push(format!(
            "recommended: the build-time check that each falsifier has exactly one test, in {}:\n\
             [build-dependencies]\npv-build = \"0.1\"\nand a build.rs of one line: fn main() {{ pv_build::generate() }}",
            manifest_rel
        ));
    }
    next_steps.push("pv validate  (check the contracts)".to_string());
    let cargo_test = if workspace {
        format!("cargo test -p {}", test_package.name)
    } else {
        "cargo test".to_string()
    };
    next_steps.push(format!(
        "{cargo_test}  (runs the example falsifier; its record goes to {local}/)"
    ));
    next_steps.push("pv status  (the contract's stages, derived from the evidence)".to_string());

    Ok(Plan {
        root,
        workspace,
        test_package,
        files,
        dev_deps,
        next_steps,
    })
}

/// A temporary file written next to its target, removed unless renamed into place.
struct Staged {
    tmp: PathBuf,
    target: PathBuf,
    rel: String,
}

fn tmp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.pv-init-{}.tmp", std::process::id()))
}

/// The folders from `dir` up to (excluding) the first that exists, deepest first.
fn missing_dirs(dir: &Path) -> Vec<PathBuf> {
    dir.ancestors()
        .take_while(|d| !d.exists())
        .map(Path::to_path_buf)
        .collect()
}

fn stage(file: &PlannedFile, created_dirs: &mut Vec<PathBuf>) -> std::io::Result<Staged> {
    let parent = file.path.parent().unwrap_or(Path::new("."));
    let missing = missing_dirs(parent);
    std::fs::create_dir_all(parent)?;
    // Remember them shallowest last, so that removing in order removes deepest first.
    for d in missing {
        if !created_dirs.contains(&d) {
            created_dirs.push(d);
        }
    }
    let tmp = tmp_path(&file.path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    let written = f
        .write_all(file.contents.as_bytes())
        .and_then(|_| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if file.action == Action::Append {
        // Keep the file's permissions.
        if let Ok(meta) = std::fs::metadata(&file.path) {
            let _ = std::fs::set_permissions(&tmp, meta.permissions());
        }
    }
    Ok(Staged {
        tmp,
        target: file.path.clone(),
        rel: file.rel.clone(),
    })
}

fn unstage(staged: &[Staged], created_dirs: &mut [PathBuf]) {
    for s in staged {
        let _ = std::fs::remove_file(&s.tmp);
    }
    // Deepest first: a folder is removed only when empty.
    created_dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in created_dirs.iter() {
        let _ = std::fs::remove_dir(d);
    }
}

/// Writes the plan's files: every one to a temporary file next to it first, then, when all
/// were written, each renamed into place. On an error nothing is left behind.
pub fn apply(plan: &Plan) -> Result<()> {
    let mut staged = Vec::new();
    let mut created_dirs = Vec::new();
    for f in plan.files.iter().filter(|f| f.action != Action::Skip) {
        match stage(f, &mut created_dirs) {
            Ok(s) => staged.push(s),
            Err(e) => {
                unstage(&staged, &mut created_dirs);
                bail!(
                    "cannot write {} ({}): {e}; nothing was written",
                    f.rel,
                    f.path.display()
                );
            }
        }
    }
    for (i, s) in staged.iter().enumerate() {
        let is_new = plan
            .files
            .iter()
            .any(|f| f.path == s.target && f.action == Action::Create);
        let result = if is_new && s.target.exists() {
            Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "it appeared while pv init ran; left as is",
            ))
        } else {
            std::fs::rename(&s.tmp, &s.target)
        };
        if let Err(e) = result {
            for rest in &staged[i..] {
                let _ = std::fs::remove_file(&rest.tmp);
            }
            let done: Vec<&str> = staged[..i].iter().map(|s| s.rel.as_str()).collect();
            bail!(
                "cannot write {} ({}): {e}; {}",
                s.rel,
                s.target.display(),
                if done.is_empty() {
                    "nothing was written".to_string()
                } else {
                    format!("written before it: {}", done.join(", "))
                }
            );
        }
    }
    Ok(())
}

fn summary_json(plan: &Plan, dry_run: bool) -> serde_json::Value {
    let written: Vec<&str> = plan
        .files
        .iter()
        .filter(|f| f.action != Action::Skip)
        .map(|f| f.rel.as_str())
        .collect();
    let skipped: Vec<&str> = plan
        .files
        .iter()
        .filter(|f| f.action == Action::Skip)
        .map(|f| f.rel.as_str())
        .collect();
    let files: Vec<serde_json::Value> = plan
        .files
        .iter()
        .map(|f| {
            let mut v = json!({"path": f.rel, "action": f.action.word(), "note": f.note});
            if dry_run && f.action != Action::Skip {
                v["contents"] = json!(f.added);
            }
            v
        })
        .collect();
    json!({
        "root": plan.root.display().to_string(),
        "dry_run": dry_run,
        "written": written,
        "skipped": skipped,
        "files": files,
        "next_steps": plan.next_steps,
        "dev_dependencies": plan.dev_deps.as_ref().map(|d| json!({
            "package": d.package,
            "manifest": d.manifest,
            "lines": d.lines,
        })),
    })
}

fn human(plan: &Plan, dry_run: bool) -> String {
    let mut out = String::new();
    let kind = if plan.workspace {
        format!("workspace; bound tests in `{}`", plan.test_package.name)
    } else {
        format!("crate `{}`", plan.test_package.name)
    };
    out.push_str(&format!(
        "pv init{}: {} ({kind})\n",
        if dry_run {
            " --dry-run (nothing is written)"
        } else {
            ""
        },
        plan.root.display()
    ));
    for f in &plan.files {
        let note = f
            .note
            .as_ref()
            .map(|n| format!("  ({n})"))
            .unwrap_or_default();
        out.push_str(&format!("  {:<6}  {}{note}\n", f.action.word(), f.rel));
    }
    if dry_run {
        for f in plan.files.iter().filter(|f| f.action != Action::Skip) {
            out.push_str(&format!("\n=== {} {} ===\n", f.action.word(), f.rel));
            match &f.summary {
                Some(s) => out.push_str(&format!("{s}\n")),
                None => out.push_str(&f.added),
            }
        }
        if let Some(d) = &plan.dev_deps {
            out.push_str(&format!(
                "\n=== add by hand to {} (pv init does not edit it) ===\n{}\n",
                d.manifest,
                d.lines.join("\n")
            ));
        }
    }
    out.push_str("\nnext steps:\n");
    for (i, s) in plan.next_steps.iter().enumerate() {
        let mut lines = s.lines();
        out.push_str(&format!("  {}. {}\n", i + 1, lines.next().unwrap_or("")));
        for l in lines {
            out.push_str(&format!("       {l}\n"));
        }
    }
    out
}

/// `pv init`.
pub fn run(args: Args) -> Result<ExitCode> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let plan = plan(&cwd)?;
    if !args.dry_run {
        apply(&plan)?;
    }
    if args.json {
        let text = serde_json::to_string_pretty(&summary_json(&plan, args.dry_run))?;
        println!("{text}");
    } else {
        print!("{}", human(&plan, args.dry_run));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_ids_follow_the_package_name() {
        assert_eq!(contract_id_for("softmax"), "softmax-v1");
        assert_eq!(contract_id_for("My_Crate"), "my-crate-v1");
        assert_eq!(contract_id_for("a__b--c"), "a-b-c-v1");
        assert_eq!(contract_id_for("thing-v2"), "thing-v2");
        assert_eq!(contract_id_for("9lives"), "example-v1");
        assert_eq!(contract_id_for("_"), "example-v1");
        assert_eq!(contract_id_for("héllo"), "h-llo-v1");
    }

    #[test]
    fn the_example_contract_is_valid_and_declares_the_metric() {
        let text = example_contract("demo-v1", "demo", "tests/pv_example.rs", "2026-01-02")
            .expect("valid");
        let loaded = pv_contract::load_str("demo-v1.yaml", &text).expect("loads");
        let diags = pv_contract::rules::check(&pv_contract::ContractSet::new(vec![loaded.clone()]));
        assert!(diags.is_empty(), "{diags:?}");
        let f = &loaded.contract.falsifiers[0];
        assert_eq!(f.id, EXAMPLE_FALSIFIER);
        assert_eq!(f.metrics[0].name, "max_abs_error");
        assert!(
            text.contains("op: \"<=\"\n        threshold: 1.0e-6\n"),
            "{text}"
        );
        assert!(IdKind::Falsifier.matches(EXAMPLE_FALSIFIER));
    }

    #[test]
    fn the_example_test_binds_the_falsifier() {
        let text = example_test("contracts/demo-v1.yaml", "Cargo.toml");
        let b = pv_evidence::bindings::scan_text(Path::new("pv_example.rs"), &text);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].id, EXAMPLE_FALSIFIER);
        assert_eq!(b[0].function.as_deref(), Some(EXAMPLE_FUNCTION));
        assert!(text.contains("ctx.metric(\"max_abs_error\""));
        assert!(
            text.contains("contract-macros = \"0.1\"") && text.contains("pv-evidence = \"0.1\"")
        );
    }

    #[test]
    fn pv_toml_loads_and_so_do_its_commented_examples() {
        let scope = vec!["src/**".to_string(), "Cargo.toml".to_string()];
        let text = pv_toml_text(&scope, "demo", "demo-v1", false);
        let p = Project::parse(Path::new("/p"), Path::new("/p/pv.toml"), &text).expect("loads");
        assert_eq!(p.config.scope.default, scope);
        assert!(
            text.contains("default = [\"src/**\", \"Cargo.toml\"]"),
            "{text}"
        );
        assert_eq!(p.config.evidence.local, "evidence/local");
        assert_eq!(p.config.tests.packages, None);
        // Uncomment the examples (lines `# key = ...` and `# [table]`, not `# # prose`).
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[')
                        || (rest.contains(" = ") && !rest.starts_with('#')) =>
                {
                    rest.to_string()
                }
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let p = Project::parse(Path::new("/p"), Path::new("/p/pv.toml"), &uncommented)
            .unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        assert_eq!(p.config.tests.packages, Some(vec!["demo".to_string()]));
        assert_eq!(p.fixture("numpy-python").map(|f| f.timeout_s), Some(120.0));
        assert_eq!(p.device("cuda").map(|f| f.timeout_s), Some(30.0));
        assert_eq!(
            p.scope_for("demo-v1", "FALSIFY-X-001"),
            ["src/lib.rs", "Cargo.toml"]
        );
        assert_eq!(p.scope_for("demo-v1", EXAMPLE_FALSIFIER), ["src/lib.rs"]);
    }

    #[test]
    fn long_scopes_are_one_item_a_line() {
        let scope: Vec<String> = (0..8).map(|i| format!("crates/member{i}/src/**")).collect();
        let text = pv_toml_text(&scope, "member0", "member0-v1", true);
        assert!(
            text.contains("default = [\n    \"crates/member0/src/**\",\n"),
            "{text}"
        );
        let p = Project::parse(Path::new("/p"), Path::new("/p/pv.toml"), &text).expect("loads");
        assert_eq!(p.config.scope.default, scope);
    }

    #[test]
    fn gitignore_entries_are_appended_once() {
        assert_eq!(
            ignore_entry("evidence/local"),
            Some("/evidence/local/".into())
        );
        assert_eq!(ignore_entry("./ev/local/"), Some("/ev/local/".into()));
        assert_eq!(ignore_entry("/abs"), None);
        assert_eq!(ignore_entry("../out"), None);
        let e = "/evidence/local/";
        let add = gitignore_addition(None, e).expect("absent file");
        assert!(add.ends_with("\n/evidence/local/\n"), "{add}");
        assert!(gitignore_addition(Some("target\n/evidence/local/\n"), e).is_none());
        assert!(gitignore_addition(Some("evidence/local\n"), e).is_none());
        assert!(gitignore_addition(Some("  /evidence/local  \n"), e).is_none());
        let add = gitignore_addition(Some("/target"), e).expect("missing");
        assert!(
            add.starts_with('\n'),
            "a file without a final newline gets one first"
        );
        assert!(gitignore_addition(Some("/evidence/local/x\n"), e).is_some());
    }

    #[test]
    fn the_workflow_shards_and_checks() {
        let w = workflow_text("evidence/local");
        assert!(
            w.contains("pv verify --no-validate --partition ${{ matrix.shard }}/4"),
            "{w}"
        );
        assert!(w.contains("shard: [1, 2, 3, 4]"));
        assert!(w.contains("dtolnay/rust-toolchain@stable"));
        assert!(w.contains("run: cargo install --locked pv"));
        assert!(w.contains("path: evidence/local/"));
        assert!(w.contains("- run: pv status --check"));
        assert!(w.contains("- run: pv evidence verify --problems-only"));
        assert!(w.contains("- run: pv validate"));
        assert!(w.contains("if: ${{ !cancelled() }}"));
    }
}
