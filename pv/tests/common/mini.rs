//! The mini workspace the status, cache and tamper tests drive through the same runtime the
//! falsifier tests use and the same loader `pv status` uses.

use std::fs;
use std::path::{Path, PathBuf};

use pv::status::StageStatus;
use pv::status_load::{status_for, Paths};
use pv_evidence::{run_falsifier_in, FalsifierMeta, MetricSpec, Op, Tier};

pub const CONTRACT: &str = r#"contract: mini-v1
version: 0.1.0
title: Mini
summary: A mini contract for status tests.
owners: [pv]
acceptance_criteria:
  - id: AC-MINI-001
    text: It works.
    falsifiers: [FALSIFY-MINI-A-001, FALSIFY-MINI-GPU-001]
stages:
  - id: M-MINI-1.1
    title: Algorithm
    requires: []
    falsifiers: [FALSIFY-MINI-A-001]
  - id: M-MINI-1.2
    title: On the GPU
    requires: [M-MINI-1.1]
    falsifiers: [FALSIFY-MINI-A-001, FALSIFY-MINI-GPU-001]
falsifiers:
  - id: FALSIFY-MINI-A-001
    claim: No mismatch.
    tier: algorithm
    metrics:
      - name: mismatches
        op: "=="
        threshold: 0
    if_fails: Look at mini.
  - id: FALSIFY-MINI-GPU-001
    claim: The GPU agrees.
    tier: hardware
    metrics:
      - name: disagreements
        op: "=="
        threshold: 0
    if_fails: Look at the GPU.
amendment_history:
  - version: 0.1.0
    date: 2026-11-22
    summary: First.
"#;

pub const TESTS: &str = r#"
#[falsifier("FALSIFY-MINI-A-001")]
fn a(ctx: &mut Ctx) -> FalsifierResult { Ok(()) }

#[falsifier("FALSIFY-MINI-GPU-001")]
fn gpu(ctx: &mut Ctx) -> FalsifierResult { Ok(()) }
"#;

/// A mini workspace: one contract with an algorithm-tier and a hardware-tier falsifier, engine
/// sources, a bound-test file, and an evidence folder, in a temporary directory.
pub struct Mini {
    dir: tempfile::TempDir,
    manifest: &'static str,
}

impl Mini {
    pub fn new() -> Mini {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(
            root.join("Cargo.toml"),
            "[workspace]\nmembers = [\"engine\", \"falsifiers\"]\n",
        )
        .unwrap();
        fs::write(
            root.join("pv.toml"),
            "[scope]\ndefault = [\"engine/src/**\", \"engine/Cargo.toml\"]\n",
        )
        .unwrap();
        fs::create_dir_all(root.join("contracts")).unwrap();
        fs::write(root.join("contracts/mini-v1.yaml"), CONTRACT).unwrap();
        fs::create_dir_all(root.join("engine/src")).unwrap();
        fs::write(root.join("engine/src/lib.rs"), "pub fn f() -> u32 { 1 }\n").unwrap();
        fs::write(
            root.join("engine/Cargo.toml"),
            "[package]\nname = \"engine\"\n",
        )
        .unwrap();
        fs::create_dir_all(root.join("falsifiers/tests")).unwrap();
        fs::write(root.join("falsifiers/tests/mini.rs"), TESTS).unwrap();
        fs::write(
            root.join("falsifiers/Cargo.toml"),
            "[package]\nname = \"falsifiers\"\n[dev-dependencies]\ncontract-macros = \"0.1\"\n",
        )
        .unwrap();
        // FalsifierMeta wants 'static strings; a test process makes a handful of these.
        let manifest: &'static str = Box::leak(
            root.join("falsifiers")
                .display()
                .to_string()
                .into_boxed_str(),
        );
        Mini { dir, manifest }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn runs(&self) -> PathBuf {
        self.root().join("evidence/runs")
    }

    pub fn meta(&self, id: &'static str) -> FalsifierMeta {
        let bytes = fs::read(self.root().join("contracts/mini-v1.yaml")).unwrap();
        let hash: &'static str =
            Box::leak(pv_contract::digest::content_hash(&bytes).into_boxed_str());
        let claim: &'static str = {
            let text = String::from_utf8(bytes).unwrap();
            let l = pv_contract::load_str("mini-v1.yaml", &text).unwrap();
            let f = l.contract.falsifiers.iter().find(|f| f.id == id).unwrap();
            Box::leak(pv_contract::digest::claim_digest(&l.contract, f).into_boxed_str())
        };
        let (tier, metrics): (Tier, &'static [MetricSpec]) = if id.contains("GPU") {
            (
                Tier::Hardware,
                &[MetricSpec {
                    name: "disagreements",
                    op: Op::Eq,
                    threshold: 0.0,
                    unit: None,
                }],
            )
        } else {
            (
                Tier::Algorithm,
                &[MetricSpec {
                    name: "mismatches",
                    op: Op::Eq,
                    threshold: 0.0,
                    unit: None,
                }],
            )
        };
        FalsifierMeta {
            id,
            contract: "mini-v1",
            contract_version: "0.1.0",
            contract_path: "contracts/mini-v1.yaml",
            contract_sha256: hash,
            falsifier_sha256: claim,
            tier,
            metrics,
            devices: &[],
            fixtures: &[],
            if_fails: "",
            // The functions TESTS binds (rule 16: a record comes from the bound test).
            test_name: if id.contains("GPU") {
                "mini::gpu"
            } else {
                "mini::a"
            },
            test_file: "tests/mini.rs",
            manifest_dir: self.manifest,
        }
    }

    /// Runs a falsifier that reports `value` for its one metric; returns the record path.
    pub fn run(&self, id: &'static str, value: f64) -> PathBuf {
        let meta = self.meta(id);
        let name = meta.metrics[0].name;
        run_falsifier_in(&meta, &self.runs(), |ctx| {
            ctx.metric(name, value);
            Ok(())
        })
        .unwrap()
        .path
    }

    pub fn status(&self, stage: &str) -> StageStatus {
        let (_, r) = status_for(&Paths::in_workspace(self.root())).unwrap();
        r.stage(stage).unwrap().status
    }
}
