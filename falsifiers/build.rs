//! Generates the falsifier registry from the contracts, and checks the binding of tests.
//!
//! Output: `$OUT_DIR/registry.rs`, included by `src/lib.rs`: one `Entry` per falsifier of every
//! contract in `../contracts` (or `$PV_CONTRACTS_DIR`), with its contract, tier, gate, metrics,
//! and the tests bound to it. The bound tests are found by a textual scan of `tests/*.rs` for
//! `#[falsifier("ID")]` (`pv_evidence::bindings`, the same scan `pv status` uses).
//!
//! Second output: `$OUT_DIR/generators.rs`, included by `src/lib.rs` as `falsifiers::generators`:
//! for every proof obligation with `generators:`, a module named after the obligation id in
//! snake_case holding an `Inputs` struct (one field per input), `strategy()` (a proptest
//! strategy drawing `Inputs`) and `SPEC` (cases, seed, obligation, falsifiers), which a
//! `#[falsifier]` test runs with `falsifiers::prop::check` (docs/falsifier-api.md).
//!
//! A falsifier with no bound test is not a build error: `pv status` reports its stages as
//! UNIMPLEMENTED (docs/status.md). Binding one falsifier to two tests is a build error, because
//! two tests would write competing evidence for one claim.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let contracts = match std::env::var_os("PV_CONTRACTS_DIR") {
        Some(d) if !d.is_empty() => manifest.join(PathBuf::from(d)),
        _ => manifest.join("..").join("contracts"),
    };
    let tests = manifest.join("tests");
    println!("cargo:rerun-if-env-changed=PV_CONTRACTS_DIR");
    println!("cargo:rerun-if-env-changed=PV_DEVICES");
    println!("cargo:rerun-if-changed={}", contracts.display());
    println!("cargo:rerun-if-changed={}", tests.display());
    println!("cargo:rerun-if-changed=build.rs");

    let bindings = match pv_evidence::bindings::scan_tests_dir(&tests) {
        Ok(b) => b,
        Err(e) => panic!("scanning {}: {e}", tests.display()),
    };
    let mut by_id: std::collections::BTreeMap<&str, Vec<&pv_evidence::bindings::Binding>> =
        Default::default();
    for b in &bindings {
        by_id.entry(b.id.as_str()).or_default().push(b);
    }
    let dupes: Vec<String> = by_id
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(id, v)| {
            let at: Vec<String> = v
                .iter()
                .map(|b| format!("{}:{}", rel(&manifest, &b.file), b.line))
                .collect();
            format!("{id} is bound to {} tests: {}", v.len(), at.join(", "))
        })
        .collect();
    if !dupes.is_empty() {
        panic!(
            "each falsifier is bound to exactly one test:\n  {}",
            dupes.join("\n  ")
        );
    }

    let mut out = String::new();
    let mut broken = Vec::new();
    let mut unbound = 0usize;
    let files = pv_contract::load::contract_files(&contracts).unwrap_or_default();
    let generators = generators_source(&files);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    std::fs::write(out_dir.join("generators.rs"), generators).expect("writing generators.rs");
    out.push_str("/// Every falsifier of every contract, in contract-file then file order.\n");
    out.push_str("pub static REGISTRY: &[Entry] = &[\n");
    for file in &files {
        let loaded = match pv_contract::load_file(file) {
            Ok(l) => l,
            Err(e) => {
                broken.push(e.to_string());
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
                                "Binding {{ file: {:?}, line: {}, function: {:?} }}",
                                rel(&manifest, &b.file),
                                b.line,
                                b.function.as_deref().unwrap_or("")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            if tests.is_empty() && f.is_live() {
                unbound += 1;
            }
            let metrics: Vec<String> = f
                .metrics
                .iter()
                .map(|m| {
                    format!(
                        "MetricSpec {{ name: {:?}, op: Op::{:?}, threshold: {:?}_f64, unit: {:?} }}",
                        m.name, m.op, m.threshold, m.unit.as_deref()
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "    Entry {{ id: {:?}, contract: {:?}, contract_version: {:?}, contract_file: {:?}, tier: Tier::{:?}, features: &{:?}, devices: &{:?}, fixtures: &{:?}, metrics: &[{}], retired: {:?}, tests: &[{}] }},",
                f.id,
                c.contract,
                c.version,
                rel(&manifest.join(".."), file),
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
        "/// Contract files that did not load (their falsifiers are missing above).\npub static BROKEN_CONTRACTS: &[&str] = &{broken:?};"
    );
    std::fs::write(out_dir.join("registry.rs"), out).expect("writing registry.rs");

    for b in &broken {
        println!(
            "cargo:warning=contract did not load: {}",
            b.lines().next().unwrap_or("")
        );
    }
    if unbound > 0 {
        println!(
            "cargo:warning={unbound} live falsifier(s) have no bound test yet; `pv status` reports their stages as UNIMPLEMENTED"
        );
    }
}

/// The generated strategies of every obligation with generators. Generators that `pv validate`
/// rejects (PV057, PV058) stop the build: a strategy over an empty range would panic at run
/// time, and a silently skipped one would leave its falsifier with nothing to run.
fn generators_source(files: &[PathBuf]) -> String {
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
        panic!(
            "invalid generators (run `pv validate`):\n  {}",
            bad.join("\n  ")
        );
    }
    let mut s = String::from(
        "// Generated by falsifiers/build.rs from the contracts' `generators:`. Do not edit.\n",
    );
    for (c, o) in set.obligations() {
        if let Some(g) = &o.generators {
            s.push_str(&generator_module(&c.contract, o, g));
        }
    }
    s
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
    use proptest::prelude::*;

    /// One generated case.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Inputs {{
{fields}
    }}

    /// Cases, seed and bindings of {id}.
    pub const SPEC: crate::prop::GenSpec = crate::prop::GenSpec {{
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
