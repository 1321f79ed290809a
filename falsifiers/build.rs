//! Generates the falsifier registry from the contracts, and checks the binding of tests.
//!
//! Output: `$OUT_DIR/registry.rs`, included by `src/lib.rs`: one `Entry` per falsifier of every
//! contract in `../contracts` (or `$PV_CONTRACTS_DIR`), with its contract, tier, gate, metrics,
//! and the tests bound to it. The bound tests are found by a textual scan of `tests/*.rs` for
//! `#[falsifier("ID")]` (`pv_evidence::bindings`, the same scan `pv status` uses).
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
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
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

fn rel(base: &Path, p: &Path) -> String {
    let b = base.canonicalize().unwrap_or_else(|_| base.to_path_buf());
    let q = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    q.strip_prefix(&b)
        .unwrap_or(&q)
        .to_string_lossy()
        .into_owned()
}
