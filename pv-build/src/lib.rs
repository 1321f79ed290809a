//! # pv-build: the build-time half of pv, as one line in a test crate's `build.rs`
//!
//! ```ignore
//! // build.rs of a crate whose tests are bound with #[falsifier("FALSIFY-...")]
//! fn main() { pv_build::generate() }
//! ```
//!
//! What it does, from the project file (`pv.toml`, found upward from the crate):
//!
//! 1. **The one-test-per-falsifier check.** Every `#[falsifier("ID")]` in every test package of
//!    the project (`pv_evidence::bindings`, the scan `pv status` uses) is collected; an id bound
//!    to two tests is a build error naming both places (two tests would write competing
//!    evidence for one claim). A live falsifier with no test is a cargo warning; `pv status`
//!    shows its stages UNIMPLEMENTED.
//! 2. **The registry**, `$OUT_DIR/pv_registry.rs`: `REGISTRY` (every falsifier of every
//!    contract, with its contract, tier, gate, metrics and bound tests, as
//!    [`pv_evidence::registry::Entry`]), `BROKEN_CONTRACTS`, `entry(id)` and `unbound()`.
//!    Include it with `include!(concat!(env!("OUT_DIR"), "/pv_registry.rs"));`.
//! 3. **Property tests**, `$OUT_DIR/pv_generators.rs`: for every proof obligation with
//!    `generators:`, a module named after the obligation id in snake_case with `Inputs`,
//!    `strategy()` and `SPEC`, run by `pv_evidence::prop::check` (feature `prop` of
//!    pv-evidence). Invalid generators (PV057, PV058) stop the build.
//!
//! Cargo reruns the script when a contract folder, a test folder, `pv.toml`,
//! `$PV_CONTRACTS_DIR` or `$PV_DEVICES` changes. [`generate_into`] is the same without cargo's
//! environment, for tests.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use pv_evidence::bindings::Binding;

/// Why the build must stop.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The project file did not load.
    #[error(transparent)]
    Project(#[from] pv_project::ProjectError),
    /// A folder could not be scanned for bound tests.
    #[error("scanning {dir} for #[falsifier] tests: {source}")]
    Scan {
        /// The folder.
        dir: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Falsifiers bound to more than one test.
    #[error("each falsifier is bound to exactly one test:\n  {0}")]
    DoubleBinding(String),
    /// Generators that `pv validate` rejects.
    #[error("invalid generators (run `pv validate`):\n  {0}")]
    Generators(String),
    /// An output file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// What a run produced, for the caller to report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Contract files that did not load (their falsifiers are missing from the registry).
    pub broken: Vec<String>,
    /// Live falsifiers with no bound test in any test package.
    pub unbound: Vec<String>,
    /// Folders and files cargo should watch.
    pub watched: Vec<PathBuf>,
}

/// Runs in a build script: reads cargo's environment, writes the outputs to `$OUT_DIR`, prints
/// the rerun lines and the warnings, and panics (a build error) with the reason when the build
/// must stop.
pub fn generate() {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let out = std::env::var_os("OUT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let contracts_override = std::env::var_os("PV_CONTRACTS_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| manifest.join(PathBuf::from(d)));
    println!("cargo:rerun-if-env-changed=PV_CONTRACTS_DIR");
    println!("cargo:rerun-if-env-changed=PV_DEVICES");
    println!("cargo:rerun-if-changed=build.rs");
    match generate_into(&manifest, &out, contracts_override.as_deref()) {
        Ok(o) => {
            for w in &o.watched {
                println!("cargo:rerun-if-changed={}", w.display());
            }
            for b in &o.broken {
                println!(
                    "cargo:warning=contract did not load: {}",
                    b.lines().next().unwrap_or("")
                );
            }
            if !o.unbound.is_empty() {
                println!(
                    "cargo:warning={} live falsifier(s) have no bound test yet ({}); `pv status` reports their stages as UNIMPLEMENTED",
                    o.unbound.len(),
                    o.unbound.join(", ")
                );
            }
        }
        Err(e) => panic!("pv-build: {e}"),
    }
}

/// The whole job for the crate at `manifest_dir`, writing into `out_dir`; `contracts` overrides
/// the project's contract folders.
pub fn generate_into(
    manifest_dir: &Path,
    out_dir: &Path,
    contracts: Option<&Path>,
) -> Result<Outcome, BuildError> {
    let project = pv_project::Project::discover(manifest_dir)?;
    let dirs = match contracts {
        Some(d) => vec![d.to_path_buf()],
        None => project.contract_dirs(),
    };
    // Every test package of the project, and this crate even if it is not (yet) one.
    let mut packages: Vec<PathBuf> = project
        .test_packages()?
        .into_iter()
        .map(|p| p.dir)
        .collect();
    if !packages.iter().any(|p| same(p, manifest_dir)) {
        packages.push(manifest_dir.to_path_buf());
    }
    let mut bindings: Vec<Binding> = Vec::new();
    for p in &packages {
        bindings.extend(pv_evidence::bindings::scan_package(p).map_err(|source| {
            BuildError::Scan {
                dir: p.clone(),
                source,
            }
        })?);
    }
    let mut by_id: BTreeMap<&str, Vec<&Binding>> = BTreeMap::new();
    for b in &bindings {
        by_id.entry(b.id.as_str()).or_default().push(b);
    }
    let dupes: Vec<String> = by_id
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(id, v)| {
            let at: Vec<String> = v
                .iter()
                .map(|b| format!("{}:{}", rel(&project.root, &b.file), b.line))
                .collect();
            format!("{id} is bound to {} tests: {}", v.len(), at.join(", "))
        })
        .collect();
    if !dupes.is_empty() {
        return Err(BuildError::DoubleBinding(dupes.join("\n  ")));
    }

    let mut files = Vec::new();
    for d in &dirs {
        files.extend(pv_contract::load::contract_files(d).unwrap_or_default());
    }
    let write = |name: &str, text: String| {
        let path = out_dir.join(name);
        std::fs::write(&path, text).map_err(|source| BuildError::Write { path, source })
    };
    write("pv_generators.rs", generators_source(&files)?)?;

    let mut out = String::from("// Generated by pv-build from the contracts. Do not edit.\n\n");
    out.push_str("/// Every falsifier of every contract, in contract-file then file order.\n");
    out.push_str("pub static REGISTRY: &[::pv_evidence::registry::Entry] = &[\n");
    let mut outcome = Outcome::default();
    for file in &files {
        let loaded = match pv_contract::load_file(file) {
            Ok(l) => l,
            Err(e) => {
                outcome.broken.push(e.to_string());
                continue;
            }
        };
        let c = &loaded.contract;
        for f in &c.falsifiers {
            let tests: Vec<String> = by_id
                .get(f.id.as_str())
                .map(|v| {
                    v.iter()
                        .map(|b| {
                            format!(
                                "::pv_evidence::registry::Binding {{ file: {:?}, line: {}, function: {:?} }}",
                                rel(&project.root, &b.file),
                                b.line,
                                b.function.as_deref().unwrap_or("")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            if tests.is_empty() && f.is_live() {
                outcome.unbound.push(f.id.clone());
            }
            let metrics: Vec<String> = f
                .metrics
                .iter()
                .map(|m| {
                    format!(
                        "::pv_evidence::MetricSpec {{ name: {:?}, op: ::pv_evidence::Op::{:?}, threshold: {:?}_f64, unit: {:?} }}",
                        m.name, m.op, m.threshold, m.unit.as_deref()
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "    ::pv_evidence::registry::Entry {{ id: {:?}, contract: {:?}, contract_version: {:?}, contract_file: {:?}, tier: ::pv_evidence::Tier::{:?}, features: &{:?}, devices: &{:?}, fixtures: &{:?}, metrics: &[{}], retired: {:?}, tests: &[{}], manifest_dir: env!(\"CARGO_MANIFEST_DIR\") }},",
                f.id,
                c.contract,
                c.version,
                rel(&project.root, file),
                f.tier,
                f.gate.features,
                f.gate.devices,
                f.gate.fixtures,
                metrics.join(", "),
                f.retired.as_deref(),
                tests.join(", "),
            );
        }
    }
    out.push_str("];\n\n");
    let _ = writeln!(
        out,
        "/// Contract files that did not load (their falsifiers are missing above).\npub static BROKEN_CONTRACTS: &[&str] = &{:?};\n",
        outcome.broken
    );
    out.push_str(
        "/// The registry entry for `id`.\npub fn entry(id: &str) -> Option<&'static ::pv_evidence::registry::Entry> {\n    REGISTRY.iter().find(|e| e.id == id)\n}\n\n/// Live falsifiers with no bound test (their stages are UNIMPLEMENTED in `pv status`).\npub fn unbound() -> impl Iterator<Item = &'static ::pv_evidence::registry::Entry> {\n    REGISTRY.iter().filter(|e| e.retired.is_none() && !e.is_bound())\n}\n",
    );
    write("pv_registry.rs", out)?;

    outcome.watched.extend(dirs);
    for p in &packages {
        outcome.watched.push(p.join("tests"));
        outcome.watched.push(p.join("src"));
    }
    if let Some(f) = &project.file {
        outcome.watched.push(f.clone());
    }
    Ok(outcome)
}

fn same(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// The generated strategies of every obligation with generators. Generators that `pv validate`
/// rejects (PV057, PV058) stop the build: a strategy over an empty range would panic at run
/// time, and a silently skipped one would leave its falsifier with nothing to run.
fn generators_source(files: &[PathBuf]) -> Result<String, BuildError> {
    use pv_contract::rules::codes;
    let loaded: Vec<pv_contract::Loaded> = files
        .iter()
        .filter_map(|f| pv_contract::load_file(f).ok())
        .collect();
    let set = pv_contract::ContractSet::new(loaded);
    let bad: Vec<String> = pv_contract::rules::check(&set)
        .into_iter()
        .filter(|d| {
            d.is_error() && (d.code == codes::GENERATORS || d.code == codes::GENERATOR_INPUT)
        })
        .map(|d| d.to_string())
        .collect();
    if !bad.is_empty() {
        return Err(BuildError::Generators(bad.join("\n  ")));
    }
    let mut s =
        String::from("// Generated by pv-build from the contracts' `generators:`. Do not edit.\n");
    for (c, o) in set.obligations() {
        if let Some(g) = &o.generators {
            s.push_str(&generator_module(&c.contract, o, g));
        }
    }
    Ok(s)
}

/// FNV-1a 64 of `text`: the default seed, a stable function of the obligation id.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A float literal Rust reads back as the same f64 (`{:?}` prints the shortest round-trip form).
fn f64_lit(v: f64) -> String {
    format!("{v:?}_f64")
}

fn generator_module(
    contract: &str,
    o: &pv_contract::ProofObligation,
    g: &pv_contract::Generators,
) -> String {
    use pv_contract::GeneratorKind as K;
    let module = o.id.to_ascii_lowercase().replace('-', "_");
    let mut fields = Vec::new();
    let mut strategies = Vec::new();
    for inp in &g.inputs {
        let (lo, hi) = (inp.min.unwrap_or(0.0), inp.max.unwrap_or(0.0));
        let (ty, elem) = match inp.kind {
            K::Int => ("i64", format!("{}_i64..={}_i64", lo as i64, hi as i64)),
            K::Ints => ("Vec<i64>", format!("{}_i64..={}_i64", lo as i64, hi as i64)),
            K::Float => ("f64", format!("{}..={}", f64_lit(lo), f64_lit(hi))),
            K::Floats => ("Vec<f64>", format!("{}..={}", f64_lit(lo), f64_lit(hi))),
            K::Bool => ("bool", "proptest::bool::ANY".to_string()),
            K::Choice => (
                "&'static str",
                format!("proptest::sample::select(&{:?}[..])", inp.values),
            ),
            K::Bytes => ("Vec<u8>", "proptest::num::u8::ANY".to_string()),
        };
        let strategy = if inp.kind.has_len() {
            let (lo_len, hi_len) = inp.len_range().unwrap_or((0, 0));
            match inp.multiple_of.unwrap_or(1) {
                1 => format!(
                    "proptest::collection::vec({elem}, {lo_len}_usize..={hi_len}_usize).boxed()"
                ),
                // Draw up to m - 1 extra elements and cut down to a multiple of m: unlike a
                // flat_map over the block count, this shrinks by whole blocks.
                m => {
                    let (lo, hi) = (lo_len.div_ceil(m) * m, hi_len / m * m);
                    format!(
                        "proptest::collection::vec({elem}, {lo}_usize..={}_usize).prop_map(|mut v| {{ v.truncate(v.len() / {m} * {m}); v }}).boxed()",
                        hi + m - 1
                    )
                }
            }
        } else if inp.kind.has_range() {
            format!("({elem}).boxed()")
        } else {
            format!("{elem}.boxed()")
        };
        fields.push(format!(
            "        /// `{}` ({}).\n        pub {}: {ty},",
            inp.name, inp.kind, inp.name
        ));
        strategies.push(strategy);
    }
    let names: Vec<&str> = g.inputs.iter().map(|i| i.name.as_str()).collect();
    let seed = g.seed.unwrap_or_else(|| fnv1a(&o.id));
    format!(
        r#"
/// Generators of {id} ({contract}): {property}
pub mod {module} {{
    #[allow(unused_imports)]
    use ::pv_evidence::prop::proptest::prelude::*;
    #[allow(unused_imports)]
    use ::pv_evidence::prop::proptest;

    /// One generated case.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Inputs {{
{fields}
    }}

    /// Cases, seed and bindings of {id}.
    pub const SPEC: ::pv_evidence::prop::GenSpec = ::pv_evidence::prop::GenSpec {{
        obligation: {id:?},
        contract: {contract:?},
        falsifiers: &{falsifiers:?},
        cases: {cases},
        seed: {seed},
    }};

    /// The strategy drawing [`Inputs`] as the contract's generators describe them.
    pub fn strategy() -> impl Strategy<Value = Inputs> {{
        ({strategies},).prop_map(|({names},)| Inputs {{ {names} }})
    }}
}}
"#,
        id = o.id,
        property = o.property.split_whitespace().collect::<Vec<_>>().join(" "),
        fields = fields.join("\n"),
        falsifiers = o.discharged_by.falsifiers,
        cases = g.cases,
        strategies = strategies.join(", "),
        names = names.join(", "),
    )
}

fn rel(base: &Path, p: &Path) -> String {
    let b = base.canonicalize().unwrap_or_else(|_| base.to_path_buf());
    let q = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    q.strip_prefix(&b)
        .unwrap_or(&q)
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTRACT: &str = r#"contract: demo-v1
version: 0.1.0
title: Demo
summary: A demo.
stages:
  - id: M-DEMO-1.1
    title: One
    falsifiers: [FALSIFY-DEMO-A-001, FALSIFY-DEMO-B-001]
falsifiers:
  - id: FALSIFY-DEMO-A-001
    claim: A holds.
    tier: algorithm
    metrics:
      - {name: err, op: "<=", threshold: 0.001}
    if_fails: Look at a.
  - id: FALSIFY-DEMO-B-001
    claim: B holds.
    tier: algorithm
    metrics:
      - {name: err, op: "<=", threshold: 0.001}
    if_fails: Look at b.
amendment_history:
  - version: 0.1.0
    date: 2026-12-07
    summary: First.
"#;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// A workspace with a library and two test packages.
    fn project() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        write(
            r,
            "Cargo.toml",
            "[workspace]\nmembers = [\"lib\", \"checks\", \"more\"]\n",
        );
        write(r, "lib/Cargo.toml", "[package]\nname = \"lib\"\n");
        let dev = "[dev-dependencies]\ncontract-macros = \"0.1\"\n";
        write(
            r,
            "checks/Cargo.toml",
            &format!("[package]\nname = \"checks\"\n{dev}"),
        );
        write(
            r,
            "more/Cargo.toml",
            &format!("[package]\nname = \"more\"\n{dev}"),
        );
        write(r, "contracts/demo-v1.yaml", CONTRACT);
        write(
            r,
            "checks/tests/a.rs",
            "#[falsifier(\"FALSIFY-DEMO-A-001\")]\nfn a(ctx: &mut Ctx) -> FalsifierResult { Ok(()) }\n",
        );
        d
    }

    #[test]
    fn registry_lists_falsifiers_with_their_tests_and_warns_of_unbound_ones() {
        let p = project();
        let out = tempfile::tempdir().unwrap();
        let o = generate_into(&p.path().join("checks"), out.path(), None).unwrap();
        assert_eq!(o.unbound, ["FALSIFY-DEMO-B-001"]);
        assert!(o.broken.is_empty());
        let reg = std::fs::read_to_string(out.path().join("pv_registry.rs")).unwrap();
        assert!(reg.contains("id: \"FALSIFY-DEMO-A-001\""), "{reg}");
        assert!(
            reg.contains("file: \"checks/tests/a.rs\", line: 1, function: \"a\""),
            "{reg}"
        );
        assert!(
            reg.contains("contract_file: \"contracts/demo-v1.yaml\""),
            "{reg}"
        );
        // A test bound in another test package counts too.
        write(
            p.path(),
            "more/src/lib.rs",
            "#[cfg(test)]\nmod t {\n#[falsifier(\"FALSIFY-DEMO-B-001\")]\nfn b(ctx: &mut Ctx) -> FalsifierResult { Ok(()) }\n}\n",
        );
        let o = generate_into(&p.path().join("checks"), out.path(), None).unwrap();
        assert!(o.unbound.is_empty(), "{:?}", o.unbound);
    }

    #[test]
    fn two_tests_bound_to_one_falsifier_stop_the_build() {
        let p = project();
        write(
            p.path(),
            "more/tests/again.rs",
            "\n#[contract_macros::falsifier(\"FALSIFY-DEMO-A-001\")]\nfn again(ctx: &mut Ctx) -> FalsifierResult { Ok(()) }\n",
        );
        let out = tempfile::tempdir().unwrap();
        let e = generate_into(&p.path().join("checks"), out.path(), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("FALSIFY-DEMO-A-001 is bound to 2 tests"), "{e}");
        assert!(
            e.contains("checks/tests/a.rs:1") && e.contains("more/tests/again.rs:2"),
            "{e}"
        );
    }

    #[test]
    fn a_broken_contract_is_reported_not_fatal_and_a_broken_project_file_is() {
        let p = project();
        write(p.path(), "contracts/bad-v1.yaml", "contract: [\n");
        let out = tempfile::tempdir().unwrap();
        let o = generate_into(&p.path().join("checks"), out.path(), None).unwrap();
        assert_eq!(o.broken.len(), 1);
        write(p.path(), "pv.toml", "[contracts]\nfolders = [\"c\"]\n");
        let e = generate_into(&p.path().join("checks"), out.path(), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("pv.toml") && e.contains("unknown field `folders`"),
            "{e}"
        );
    }
}
