//! The public loading API on small inline contracts.

use pv_contract::{load_str, ContractSet, LoadError, Op, Tier};

const GOOD: &str = r#"# yaml-language-server: $schema=./contract.schema.json
contract: demo-v1
version: 0.2.0
title: Demo
summary: A demo.
owners: [pv]
acceptance_criteria:
  - id: AC-DEMO-001
    text: It works.
    falsifiers: [FALSIFY-DEMO-WORKS-001]
stages:
  - id: M-DEMO-1.1
    title: First
    requires: []
    falsifiers: [FALSIFY-DEMO-WORKS-001]
falsifiers:
  - id: FALSIFY-DEMO-WORKS-001
    claim: It works.
    tier: algorithm
    metrics:
      - name: failures
        op: "<="
        threshold: 0
        unit: count
    if_fails: Look at it.
amendment_history:
  - version: 0.1.0
    date: 2026-11-21
    summary: First.
  - version: 0.2.0
    date: 2026-11-22
    summary: Second.
    changes: [Something.]
"#;

#[test]
fn loads_and_looks_up() {
    let loaded = load_str("contracts/demo-v1.yaml", GOOD).expect("valid contract");
    let set = ContractSet::new(vec![loaded]);
    let (c, f) = set.falsifier("FALSIFY-DEMO-WORKS-001").expect("found");
    assert_eq!(c.contract, "demo-v1");
    assert_eq!(f.tier, Tier::Algorithm);
    assert_eq!(f.metrics[0].op, Op::Le);
    assert!(f.metrics[0].passes(0.0));
    assert!(!f.metrics[0].passes(1.0));
    assert!(!f.metrics[0].passes(f64::NAN));
    assert_eq!(
        set.stage("M-DEMO-1.1").map(|(c, _)| c.contract.as_str()),
        Some("demo-v1")
    );
    assert!(set.falsifier("FALSIFY-NOPE-001").is_none());
    assert_eq!(set.stages().count(), 1);
}

fn first_error(text: &str) -> String {
    match load_str("x.yaml", text) {
        Ok(_) => panic!("expected an error"),
        Err(LoadError::Invalid(d)) => d
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

#[test]
fn status_key_is_pv020_not_unknown_field() {
    let text = GOOD.replace("    title: First\n", "    title: First\n    status: done\n");
    let msg = first_error(&text);
    assert!(msg.contains("x.yaml:14:5: error[PV020]"), "{msg}");
    assert!(!msg.contains("unknown field"), "{msg}");
}

#[test]
fn unknown_field_points_at_the_key() {
    let text = GOOD.replace(
        "    tier: algorithm\n",
        "    tier: algorithm\n    teir: x\n",
    );
    let msg = first_error(&text);
    assert!(msg.contains("x.yaml:20:5: error[PV002]"), "{msg}");
    assert!(msg.contains("unknown field `teir`"), "{msg}");
}

#[test]
fn wrong_type_points_at_the_value() {
    let text = GOOD.replace("threshold: 0", "threshold: zero");
    let msg = first_error(&text);
    assert!(msg.contains("x.yaml:23:20: error[PV002]"), "{msg}");
}

#[test]
fn missing_field_points_at_the_mapping() {
    let text = GOOD.replace("    if_fails: Look at it.\n", "");
    let msg = first_error(&text);
    assert!(msg.contains("missing field `if_fails`"), "{msg}");
    assert!(msg.contains("x.yaml:17:5"), "{msg}");
}
