//! One test per rule of `docs/status.md` (the rule number is in each test's name).

use std::collections::{BTreeMap, HashMap, HashSet};

use pv_evidence::record::{
    ContractRef, EvidenceRecord, Hardware, JsonF64, MetricResult, Op, Outcome, SourceDigest,
    TestRef, Tier,
};

use super::*;

const NOW: i128 = 2_000_000_000 * 1_000_000_000;
const GOOD_SRC: &str = "src-now";
const HASH: &str = "hash-now";
const CLAIM: &str = "claim-now";

/// One unsigned run, started before every record of the tests: ordering falls back to the
/// records' own times.
fn one_run() -> Vec<RunFacts> {
    vec![RunFacts {
        manifest: "run.intoto.json".into(),
        id: "run-1".into(),
        started: 0,
        signature: RunSignature::Unsigned,
    }]
}

fn falsifier(id: &str, tier: Tier) -> FalsifierModel {
    FalsifierModel {
        id: id.to_string(),
        tier,
        retired: None,
        metrics: vec!["m".to_string()],
        claim_sha256: CLAIM.to_string(),
        thresholds: vec![("m".to_string(), Op::Eq, 0.0)],
        scope: vec!["src/**".to_string()],
    }
}

fn stage(id: &str, requires: &[&str], fs: &[&str]) -> StageModel {
    StageModel {
        id: id.to_string(),
        title: format!("title of {id}"),
        requires: requires.iter().map(|s| s.to_string()).collect(),
        falsifiers: fs.iter().map(|s| s.to_string()).collect(),
    }
}

fn model(stages: Vec<StageModel>, falsifiers: Vec<FalsifierModel>) -> Model {
    Model {
        contracts: vec![ContractModel {
            id: "c-v1".into(),
            version: "0.1.0".into(),
            path: "contracts/c-v1.yaml".into(),
            sha256: HASH.into(),
            stages,
            falsifiers,
            ..Default::default()
        }],
    }
}

fn rec(id: &str, outcome: Outcome, src: &str, contract_hash: &str) -> EvidenceRecord {
    EvidenceRecord {
        format: 1,
        falsifier: id.into(),
        contract: ContractRef {
            id: "c-v1".into(),
            version: "0.1.0".into(),
            path: "contracts/c-v1.yaml".into(),
            sha256: contract_hash.into(),
            falsifier_sha256: None,
        },
        outcome,
        reason: None,
        metrics: vec![MetricResult {
            name: "m".into(),
            value: Some(JsonF64(if outcome == Outcome::Pass { 0.0 } else { 5.0 })),
            op: Op::Eq,
            threshold: 0.0,
            unit: None,
            passed: outcome == Outcome::Pass,
        }],
        tier: Tier::Algorithm,
        hardware: Hardware {
            cpu_model: Some("cpu".into()),
            cpus: 2,
            gpus: vec![],
            platform: "linux-x86_64".into(),
        },
        git: None,
        source: SourceDigest {
            algorithm: "pv-source-v1".into(),
            roots: vec!["engine/src".into()],
            sha256: src.into(),
            files: 1,
        },
        rustc: "rustc".into(),
        timestamp: "2033-05-18T03:33:20.000000Z".into(),
        duration_s: 0.1,
        test: TestRef {
            name: "suite::a_fn".into(),
            file: "t.rs".into(),
        },
        notes: vec![],
        series: BTreeMap::new(),
        details: BTreeMap::new(),
        counterexample: None,
    }
}

/// A run `age_s` seconds before NOW.
fn run(id: &str, outcome: Outcome, age_s: i128) -> Run {
    run_with(id, outcome, age_s, GOOD_SRC, HASH, "f.json")
}

fn run_with(id: &str, outcome: Outcome, age_s: i128, src: &str, h: &str, file: &str) -> Run {
    Run {
        file: format!("{age_s}-{file}"),
        ts: NOW - age_s * 1_000_000_000,
        record: rec(id, outcome, src, h).into(),
        provenance: Provenance::Run(0),
    }
}

fn derive_all(m: &Model, runs: &[Run], bound: Option<&[&str]>) -> StatusReport {
    let fresh = |d: &SourceDigest| d.sha256 == GOOD_SRC;
    derive(
        m,
        runs,
        &fresh,
        &Inputs {
            bound: bound.map(|b| b.iter().map(|s| s.to_string()).collect::<HashSet<_>>()),
            now: NOW,
            test_functions: None,
            runs: one_run(),
            count_loose: false,
            trust: None,
        },
    )
}

fn one_stage(runs: &[Run], tiers: &[(&str, Tier)]) -> StageStatus {
    let ids: Vec<&str> = tiers.iter().map(|(i, _)| *i).collect();
    let m = model(
        vec![stage("M-A-1.1", &[], &ids)],
        tiers.iter().map(|(i, t)| falsifier(i, *t)).collect(),
    );
    derive_all(&m, runs, None).stage("M-A-1.1").unwrap().status
}

const A: (&str, Tier) = ("FALSIFY-A-001", Tier::Algorithm);
const B: (&str, Tier) = ("FALSIFY-B-001", Tier::Algorithm);
const H: (&str, Tier) = ("FALSIFY-H-001", Tier::Hardware);

#[test]
fn rule1_newest_failure_makes_the_stage_failing() {
    let runs = [run(A.0, Outcome::Pass, 100), run(A.0, Outcome::Fail, 50)];
    assert_eq!(one_stage(&runs, &[A]), StageStatus::Failing);
    // An error is a failure too.
    let runs = [run(A.0, Outcome::Pass, 100), run(A.0, Outcome::Error, 50)];
    assert_eq!(one_stage(&runs, &[A]), StageStatus::Failing);
    // A newer pass clears it.
    let runs = [run(A.0, Outcome::Fail, 100), run(A.0, Outcome::Pass, 50)];
    assert_eq!(one_stage(&runs, &[A]), StageStatus::Discharged);
    // A failure on old sources is still a failure: only a newer pass clears it.
    let runs = [
        run(A.0, Outcome::Pass, 100),
        run_with(A.0, Outcome::Fail, 50, "old", HASH, "x"),
    ];
    assert_eq!(one_stage(&runs, &[A]), StageStatus::Failing);
}

#[test]
fn rule2_a_falsifier_without_a_bound_test_is_unimplemented() {
    let m = model(
        vec![stage("M-A-1.1", &[], &[A.0, B.0])],
        vec![falsifier(A.0, A.1), falsifier(B.0, B.1)],
    );
    let runs = [run(A.0, Outcome::Pass, 10)];
    let r = derive_all(&m, &runs, Some(&[A.0]));
    assert_eq!(
        r.stage("M-A-1.1").unwrap().status,
        StageStatus::Unimplemented
    );
    assert_eq!(r.unbound, vec![B.0.to_string()]);
    // With the binding unknown (no tests dir), the rule does not apply.
    let r = derive_all(&m, &runs, None);
    assert_eq!(r.stage("M-A-1.1").unwrap().status, StageStatus::Pending);
    // A failure outranks it.
    let runs = [run(A.0, Outcome::Fail, 10)];
    let r = derive_all(&m, &runs, Some(&[A.0]));
    assert_eq!(r.stage("M-A-1.1").unwrap().status, StageStatus::Failing);
}

#[test]
fn rule3_never_passed_is_pending_and_skips_never_count() {
    assert_eq!(one_stage(&[], &[A]), StageStatus::Pending);
    let runs = [run(A.0, Outcome::Pass, 10), run(B.0, Outcome::Skipped, 5)];
    assert_eq!(one_stage(&runs, &[A, B]), StageStatus::Pending);
    // A skip after a pass does not hide the pass either.
    let runs = [run(A.0, Outcome::Pass, 10), run(A.0, Outcome::Skipped, 5)];
    assert_eq!(one_stage(&runs, &[A]), StageStatus::Discharged);
}

#[test]
fn rule4_passes_on_changed_sources_or_contract_are_stale() {
    let runs = [run_with(A.0, Outcome::Pass, 10, "old", HASH, "x")];
    assert_eq!(one_stage(&runs, &[A]), StageStatus::Stale);
    let runs = [run_with(A.0, Outcome::Pass, 10, GOOD_SRC, "old-hash", "x")];
    assert_eq!(one_stage(&runs, &[A]), StageStatus::Stale);
    // An older fresh pass still counts when no failure came after it.
    let runs = [
        run(A.0, Outcome::Pass, 100),
        run_with(A.0, Outcome::Pass, 10, "other", HASH, "x"),
    ];
    assert_eq!(one_stage(&runs, &[A]), StageStatus::Discharged);
    // ... but not across a failure.
    let runs = [
        run(A.0, Outcome::Pass, 100),
        run(A.0, Outcome::Fail, 50),
        run_with(A.0, Outcome::Pass, 10, "other", HASH, "x"),
    ];
    assert_eq!(one_stage(&runs, &[A]), StageStatus::Stale);
}

#[test]
fn rule5_algorithm_level_when_only_hardware_is_missing() {
    let runs = [run(A.0, Outcome::Pass, 10)];
    assert_eq!(one_stage(&runs, &[A, H]), StageStatus::AlgorithmLevel);
    // Stale hardware evidence does not make it DISCHARGED either.
    let runs = [
        run(A.0, Outcome::Pass, 10),
        run_with(H.0, Outcome::Pass, 10, "old", HASH, "x"),
    ];
    assert_eq!(one_stage(&runs, &[A, H]), StageStatus::AlgorithmLevel);
    // A hardware failure is a failure.
    let runs = [run(A.0, Outcome::Pass, 10), run(H.0, Outcome::Fail, 5)];
    assert_eq!(one_stage(&runs, &[A, H]), StageStatus::Failing);
}

#[test]
fn rule6_discharged_when_everything_passes_fresh() {
    let runs = [run(A.0, Outcome::Pass, 10), run(H.0, Outcome::Pass, 5)];
    assert_eq!(one_stage(&runs, &[A, H]), StageStatus::Discharged);
}

#[test]
fn rule7_hardware_only_stage_has_no_algorithm_level() {
    assert_eq!(one_stage(&[], &[H]), StageStatus::Pending);
    let runs = [run_with(H.0, Outcome::Pass, 10, "old", HASH, "x")];
    assert_eq!(one_stage(&runs, &[H]), StageStatus::Stale);
    let runs = [run(H.0, Outcome::Pass, 10)];
    assert_eq!(one_stage(&runs, &[H]), StageStatus::Discharged);
}

#[test]
fn rule8_a_stage_never_stands_above_what_it_requires() {
    let m = model(
        vec![
            stage("M-A-1.1", &[], &[A.0]),
            stage("M-A-1.2", &["M-A-1.1"], &[B.0]),
            stage("M-A-1.3", &["M-A-1.2"], &[H.0]),
        ],
        vec![
            falsifier(A.0, A.1),
            falsifier(B.0, B.1),
            falsifier(H.0, H.1),
        ],
    );
    // 1.1 failing, 1.2 and 1.3 pass: both capped to PENDING, with the reason.
    let runs = [
        run(A.0, Outcome::Fail, 10),
        run(B.0, Outcome::Pass, 10),
        run(H.0, Outcome::Pass, 10),
    ];
    let r = derive_all(&m, &runs, None);
    let s12 = r.stage("M-A-1.2").unwrap();
    assert_eq!(s12.status, StageStatus::Pending);
    assert_eq!(s12.own_status, StageStatus::Discharged);
    assert_eq!(s12.capped_by.as_deref(), Some("M-A-1.1"));
    assert_eq!(r.stage("M-A-1.3").unwrap().status, StageStatus::Pending);
    // 1.1 stale: dependants at most STALE.
    let runs = [
        run_with(A.0, Outcome::Pass, 10, "old", HASH, "x"),
        run(B.0, Outcome::Pass, 10),
        run(H.0, Outcome::Pass, 10),
    ];
    let r = derive_all(&m, &runs, None);
    assert_eq!(r.stage("M-A-1.2").unwrap().status, StageStatus::Stale);
    assert_eq!(r.stage("M-A-1.3").unwrap().status, StageStatus::Stale);
    // A stage's own failure is never hidden by the cap.
    let runs = [run(A.0, Outcome::Pass, 10), run(B.0, Outcome::Fail, 10)];
    let r = derive_all(&m, &runs, None);
    assert_eq!(r.stage("M-A-1.2").unwrap().status, StageStatus::Failing);
    assert_eq!(r.stage("M-A-1.3").unwrap().status, StageStatus::Pending);
}

#[test]
fn rule9_known_divergences_are_shown_but_never_turn_a_failure_into_a_pass() {
    let mut m = model(
        vec![stage("M-A-1.1", &[], &[A.0])],
        vec![falsifier(A.0, A.1)],
    );
    m.contracts[0].divergences.push(DivergenceModel {
        falsifier: A.0.into(),
        scope: "layer 47".into(),
        classification: "benign".into(),
    });
    let r = derive_all(&m, &[run(A.0, Outcome::Fail, 10)], None);
    assert_eq!(r.stage("M-A-1.1").unwrap().status, StageStatus::Failing);
    assert_eq!(r.falsifiers[A.0].divergences.len(), 1);
}

#[test]
fn rule10_retired_falsifiers_are_excluded() {
    let mut retired = falsifier(B.0, B.1);
    retired.retired = Some("superseded".into());
    let m = model(
        vec![stage("M-A-1.1", &[], &[A.0, B.0])],
        vec![falsifier(A.0, A.1), retired],
    );
    // B's failure and missing test do not count; B is not listed.
    let runs = [run(A.0, Outcome::Pass, 10), run(B.0, Outcome::Fail, 5)];
    let r = derive_all(&m, &runs, Some(&[A.0]));
    let s = r.stage("M-A-1.1").unwrap();
    assert_eq!(s.status, StageStatus::Discharged);
    assert_eq!((s.passed, s.total), (1, 1));
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn rule11_records_of_unknown_falsifiers_are_warned_about_and_ignored() {
    let runs = [
        run(A.0, Outcome::Pass, 10),
        run("FALSIFY-GONE-001", Outcome::Fail, 5),
    ];
    let m = model(
        vec![stage("M-A-1.1", &[], &[A.0])],
        vec![falsifier(A.0, A.1)],
    );
    let r = derive_all(&m, &runs, None);
    assert_eq!(r.stage("M-A-1.1").unwrap().status, StageStatus::Discharged);
    assert_eq!(r.warnings.len(), 1);
    assert!(r.warnings[0].contains("FALSIFY-GONE-001"));
}

#[test]
fn rule12_order_is_timestamp_then_file_name_whatever_the_input_order() {
    // Same timestamp (clock skew, or two machines): the file name decides, deterministically.
    let pass = run_with(A.0, Outcome::Pass, 10, GOOD_SRC, HASH, "b.json");
    let fail = run_with(A.0, Outcome::Fail, 10, GOOD_SRC, HASH, "a.json");
    assert_eq!(
        one_stage(&[pass.clone(), fail.clone()], &[A]),
        StageStatus::Discharged
    );
    assert_eq!(one_stage(&[fail, pass], &[A]), StageStatus::Discharged);
    // A record stamped a little in the future (clock skew between machines) is simply the
    // newest ...
    let runs = [run(A.0, Outcome::Fail, -60), run(A.0, Outcome::Pass, 10)];
    assert_eq!(one_stage(&runs, &[A]), StageStatus::Failing);
    // ... but one stamped beyond the allowed skew is invalid (rule 16) and cannot hide a newer
    // failure.
    let runs = [run(A.0, Outcome::Fail, 10), run(A.0, Outcome::Pass, -3600)];
    assert_eq!(one_stage(&runs, &[A]), StageStatus::Failing);
}

#[test]
fn rule13_a_stage_with_no_live_falsifier_is_pending() {
    let mut retired = falsifier(A.0, A.1);
    retired.retired = Some("gone".into());
    let m = model(vec![stage("M-A-1.1", &[], &[A.0])], vec![retired]);
    let r = derive_all(&m, &[run(A.0, Outcome::Pass, 1)], None);
    assert_eq!(r.stage("M-A-1.1").unwrap().status, StageStatus::Pending);
}

#[test]
fn rule14_unknown_or_cyclic_requirements_are_warned_about() {
    let m = model(
        vec![
            stage("M-A-1.1", &["M-NOPE-9.9"], &[A.0]),
            stage("M-A-2.1", &["M-A-2.2"], &[B.0]),
            stage("M-A-2.2", &["M-A-2.1"], &[B.0]),
        ],
        vec![falsifier(A.0, A.1), falsifier(B.0, B.1)],
    );
    let runs = [run(A.0, Outcome::Pass, 1), run(B.0, Outcome::Pass, 1)];
    let r = derive_all(&m, &runs, None);
    assert_eq!(r.stage("M-A-1.1").unwrap().status, StageStatus::Pending);
    assert!(r.warnings.iter().any(|w| w.contains("M-NOPE-9.9")));
    assert!(r.warnings.iter().any(|w| w.contains("cycle")));
    // The cycle does not loop forever and does not invent a failure.
    assert_eq!(r.stage("M-A-2.1").unwrap().status, StageStatus::Discharged);
}

/// A format-2 record: the claim digest, and a `pv-source-v2` digest over `scope`.
fn run_v2(id: &str, age_s: i128, claim: &str, scope: &str, src: &str) -> Run {
    let mut r = rec(id, Outcome::Pass, src, "file-hash-of-another-wording");
    r.format = 2;
    r.contract.falsifier_sha256 = Some(claim.into());
    r.source.algorithm = "pv-source-v2".into();
    r.source.roots = vec![scope.into()];
    Run {
        file: format!("{age_s}-v2.json"),
        ts: NOW - age_s * 1_000_000_000,
        record: r.into(),
        provenance: Provenance::Run(0),
    }
}

#[test]
fn rule15_format2_freshness_is_the_claim_digest_and_the_configured_scope() {
    // The whole file changed (another claim was reworded), this claim did not: fresh.
    let runs = [run_v2(A.0, 10, CLAIM, "src/**", GOOD_SRC)];
    assert_eq!(one_stage(&runs, &[A]), StageStatus::Discharged);
    // This claim changed: stale, and the reason says so.
    let runs = [run_v2(A.0, 10, "claim-before", "src/**", GOOD_SRC)];
    assert_eq!(one_stage(&runs, &[A]), StageStatus::Stale);
    let m = model(
        vec![stage("M-A-1.1", &[], &[A.0])],
        vec![falsifier(A.0, A.1)],
    );
    let r = derive_all(&m, &runs, None);
    let why = r.falsifiers[A.0].runs[0].stale_because.clone();
    assert_eq!(why.as_deref(), Some("claim changed"));
    // A source in scope changed: stale.
    let runs = [run_v2(A.0, 10, CLAIM, "src/**", "old")];
    assert_eq!(one_stage(&runs, &[A]), StageStatus::Stale);
    // The record digested another scope than the one configured now: stale, whatever its
    // digest says (a record cannot choose what it depends on).
    let runs = [run_v2(A.0, 10, CLAIM, "nothing/**", GOOD_SRC)];
    let r = derive_all(&m, &runs, None);
    assert_eq!(r.stage("M-A-1.1").unwrap().status, StageStatus::Stale);
    let why = r.falsifiers[A.0].runs[0].stale_because.clone();
    assert_eq!(why.as_deref(), Some("scope changed"));
    // Format-1 records keep the whole-file rule: another file hash is stale.
    let runs = [run_with(
        A.0,
        Outcome::Pass,
        10,
        GOOD_SRC,
        "file-hash-of-another-wording",
        "x",
    )];
    assert_eq!(one_stage(&runs, &[A]), StageStatus::Stale);
}

#[test]
fn the_key_metric_of_a_failing_stage_is_what_fails() {
    // A passes; B fails on its second metric.
    let mut fb = falsifier(B.0, B.1);
    fb.thresholds.push(("speed_ratio".into(), Op::Ge, 1.0));
    let m = model(
        vec![stage("M-A-1.1", &[], &[A.0, B.0])],
        vec![falsifier(A.0, A.1), fb],
    );
    let mut b = rec(B.0, Outcome::Fail, GOOD_SRC, HASH);
    b.metrics[0].passed = true;
    b.metrics[0].value = Some(JsonF64(0.0));
    b.metrics.push(MetricResult {
        name: "speed_ratio".into(),
        value: Some(JsonF64(0.61)),
        op: Op::Ge,
        threshold: 1.0,
        unit: None,
        passed: false,
    });
    let runs = [
        run(A.0, Outcome::Pass, 20),
        Run {
            file: "b.json".into(),
            ts: NOW - 10_000_000_000,
            record: b.into(),
            provenance: Provenance::Run(0),
        },
    ];
    let r = derive_all(&m, &runs, None);
    let s = r.stage("M-A-1.1").unwrap();
    assert_eq!(s.status, StageStatus::Failing);
    assert_eq!(s.key_metric.as_deref(), Some("speed_ratio=0.61 (fails)"));
}

#[test]
fn table_fields_count_and_age() {
    let runs = [run(A.0, Outcome::Pass, 120), run(H.0, Outcome::Pass, 7200)];
    let m = model(
        vec![stage("M-A-1.1", &[], &[A.0, H.0])],
        vec![falsifier(A.0, A.1), falsifier(H.0, H.1)],
    );
    let r = derive_all(&m, &runs, None);
    let s = r.stage("M-A-1.1").unwrap();
    assert_eq!((s.passed, s.total), (2, 2));
    assert_eq!(s.age_s, Some(120.0));
    assert_eq!(s.key_metric.as_deref(), Some("m=0"));
    assert_eq!(fmt_age(120.0), "2m");
    assert_eq!(
        StageStatus::parse("algorithm-level"),
        Some(StageStatus::AlgorithmLevel)
    );
}

/// Derives over one forged (or honest) record of A, with A's test bound to `a_fn`.
fn judge(rec: EvidenceRecord, ts_age_s: i128) -> StatusReport {
    let m = model(
        vec![stage("M-A-1.1", &[], &[A.0])],
        vec![falsifier(A.0, A.1)],
    );
    let runs = [
        run(A.0, Outcome::Fail, 100),
        Run {
            file: "forged.json".into(),
            ts: NOW - ts_age_s * 1_000_000_000,
            record: rec.into(),
            provenance: Provenance::Run(0),
        },
    ];
    let mut fns = HashMap::new();
    fns.insert(A.0.to_string(), "a_fn".to_string());
    let fresh = |d: &SourceDigest| d.sha256 == GOOD_SRC;
    derive(
        &m,
        &runs,
        &fresh,
        &Inputs {
            bound: Some([A.0.to_string()].into_iter().collect()),
            now: NOW,
            test_functions: Some(fns),
            runs: one_run(),
            count_loose: false,
            trust: None,
        },
    )
}

fn honest_pass() -> EvidenceRecord {
    let mut r = rec(A.0, Outcome::Pass, GOOD_SRC, HASH);
    r.test.name = "suite::a_fn".into();
    r
}

/// The forged record is invalid for `why`, and the real failure before it still decides.
fn assert_invalid(r: &StatusReport, why: &str) {
    assert_eq!(r.invalid.len(), 1, "{:?}", r.invalid);
    assert!(r.invalid[0].reason.contains(why), "{:?}", r.invalid[0]);
    assert_eq!(r.stage("M-A-1.1").unwrap().status, StageStatus::Failing);
}

#[test]
fn rule16_an_honest_record_is_valid() {
    let r = judge(honest_pass(), 10);
    assert!(r.invalid.is_empty(), "{:?}", r.invalid);
    assert_eq!(r.stage("M-A-1.1").unwrap().status, StageStatus::Discharged);
}

#[test]
fn rule16_a_flipped_outcome_is_invalid() {
    let mut f = rec(A.0, Outcome::Fail, GOOD_SRC, HASH);
    f.test.name = "suite::a_fn".into();
    f.outcome = Outcome::Pass;
    assert_invalid(&judge(f, 10), "says pass but its metrics give fail");
}

#[test]
fn rule16_an_edited_metric_value_is_invalid() {
    let mut f = honest_pass();
    f.metrics[0].value = Some(JsonF64(3.0));
    assert_invalid(&judge(f, 10), "marks `m` passed but 3 == 0 is false");
}

#[test]
fn rule16_a_removed_metric_is_invalid() {
    let mut f = honest_pass();
    f.metrics.clear();
    assert_invalid(&judge(f.clone(), 10), "lacks metric `m`");
    // Even against an older claim (whose thresholds pv cannot know), no metric is no pass.
    f.contract.sha256 = "older".into();
    assert_invalid(&judge(f, 10), "with no metric at all");
}

#[test]
fn rule16_changed_thresholds_are_invalid() {
    let mut f = honest_pass();
    f.metrics[0].threshold = 9.0;
    f.metrics[0].value = Some(JsonF64(9.0));
    assert_invalid(
        &judge(f, 10),
        "states `m == 9`, but the contract says `m == 0`",
    );
}

#[test]
fn rule16_a_future_timestamp_is_invalid() {
    assert_invalid(&judge(honest_pass(), -86_400 * 365 * 70), "in the future");
}

#[test]
fn rule16_a_record_from_another_test_is_invalid() {
    let mut f = honest_pass();
    f.test.name = "nothing::ran".into();
    assert_invalid(
        &judge(f, 10),
        "written by test `nothing::ran`, but the test bound to FALSIFY-A-001 is `a_fn`",
    );
}

#[test]
fn rule16_a_record_copied_onto_another_falsifier_is_invalid() {
    // B's record (metric `other`) relabelled as A's: A's metric is missing.
    let mut f = honest_pass();
    f.metrics[0].name = "other".into();
    assert_invalid(&judge(f, 10), "lacks metric `m`");
}

#[test]
fn rule16_records_of_unknown_falsifiers_are_invalid() {
    let m = model(
        vec![stage("M-A-1.1", &[], &[A.0])],
        vec![falsifier(A.0, A.1)],
    );
    let r = derive_all(&m, &[run("FALSIFY-GONE-001", Outcome::Pass, 1)], None);
    assert_eq!(r.invalid.len(), 1);
    assert!(r.invalid[0].reason.contains("no contract defines"));
}

/// Derives over `runs` with the given runs table and trust settings.
fn derive_with(
    m: &Model,
    runs: &[Run],
    table: Vec<RunFacts>,
    count_loose: bool,
    trust: Option<TrustPolicy>,
) -> StatusReport {
    let fresh = |d: &SourceDigest| d.sha256 == GOOD_SRC;
    derive(
        m,
        runs,
        &fresh,
        &Inputs {
            bound: None,
            now: NOW,
            test_functions: None,
            runs: table,
            count_loose,
            trust,
        },
    )
}

fn in_run(mut r: Run, i: usize) -> Run {
    r.provenance = Provenance::Run(i);
    r
}

fn facts(id: &str, started_age_s: i128, signature: RunSignature) -> RunFacts {
    RunFacts {
        manifest: format!("{id}.intoto.json"),
        id: id.into(),
        started: NOW - started_age_s * 1_000_000_000,
        signature,
    }
}

fn a_model() -> Model {
    model(
        vec![stage("M-A-1.1", &[], &[A.0])],
        vec![falsifier(A.0, A.1)],
    )
}

#[test]
fn rule17_loose_records_count_only_when_the_project_opts_in() {
    let mut loose = run(A.0, Outcome::Pass, 10);
    loose.provenance = Provenance::Loose;
    let runs = [loose];
    let r = derive_with(&a_model(), &runs, vec![], false, None);
    assert_eq!(r.loose.len(), 1);
    assert!(!r.loose_counted);
    assert_eq!(r.stage("M-A-1.1").unwrap().status, StageStatus::Pending);
    let r = derive_with(&a_model(), &runs, vec![], true, None);
    assert!(r.loose_counted);
    assert_eq!(r.stage("M-A-1.1").unwrap().status, StageStatus::Discharged);
}

#[test]
fn rule17_an_altered_or_missing_failure_never_brings_back_the_older_pass() {
    let table = vec![
        facts("r1", 100, RunSignature::Unsigned),
        facts("r2", 50, RunSignature::Unsigned),
    ];
    let pass = in_run(run(A.0, Outcome::Pass, 90), 0);
    for p in [
        Provenance::Altered {
            manifest: "r2.intoto.json".into(),
        },
        Provenance::Missing {
            manifest: "r2.intoto.json".into(),
        },
    ] {
        let mut tampered = run(A.0, Outcome::Pass, 40);
        tampered.provenance = p;
        let r = derive_with(
            &a_model(),
            &[pass.clone(), tampered],
            table.clone(),
            false,
            None,
        );
        assert_eq!(r.invalid.len(), 1, "{:?}", r.invalid);
        assert_eq!(r.stage("M-A-1.1").unwrap().status, StageStatus::Failing);
        let why = r.falsifiers[A.0].latest().unwrap().reason.clone().unwrap();
        assert!(why.starts_with("INVALID record:"), "{why}");
    }
    // A loose invalid record (future-dated) vouches for nothing and blocks nothing.
    let mut forged = run(A.0, Outcome::Fail, -3600);
    forged.provenance = Provenance::Loose;
    let r = derive_with(&a_model(), &[pass, forged], table, false, None);
    assert_eq!(r.invalid.len(), 1);
    assert_eq!(r.stage("M-A-1.1").unwrap().status, StageStatus::Discharged);
}

#[test]
fn rule17_records_are_ordered_by_their_runs_not_their_own_clocks() {
    // The failure's run started later; the pass claims a later time of its own.
    let table = vec![
        facts("early", 100, RunSignature::Unsigned),
        facts("late", 50, RunSignature::Unsigned),
    ];
    let runs = [
        in_run(run(A.0, Outcome::Pass, 1), 0),
        in_run(run(A.0, Outcome::Fail, 40), 1),
    ];
    let r = derive_with(&a_model(), &runs, table, false, None);
    assert_eq!(r.stage("M-A-1.1").unwrap().status, StageStatus::Failing);
}

#[test]
fn rule17_a_run_stamped_in_the_future_invalidates_its_records() {
    let table = vec![facts("r", -3600, RunSignature::Unsigned)];
    let r = derive_with(
        &a_model(),
        &[in_run(run(A.0, Outcome::Pass, 1), 0)],
        table,
        false,
        None,
    );
    assert!(
        r.invalid[0].reason.contains("in the future"),
        "{:?}",
        r.invalid
    );
    assert_eq!(r.stage("M-A-1.1").unwrap().status, StageStatus::Failing);
}

#[test]
fn rule18_only_a_signer_allowed_for_the_tier_attests() {
    let policy = TrustPolicy {
        algorithm: vec!["ci@example.com".into()],
        hardware: vec!["gpu@example.com".into()],
        require_attested: true,
    };
    let m = model(
        vec![stage("M-A-1.1", &[], &[A.0, H.0])],
        vec![falsifier(A.0, A.1), falsifier(H.0, H.1)],
    );
    let signed_by = |who: &str| RunSignature::Verified {
        principals: vec![who.into()],
        fingerprint: "SHA256:x".into(),
    };
    let runs = [
        in_run(run(A.0, Outcome::Pass, 10), 0),
        in_run(run(H.0, Outcome::Pass, 10), 0),
    ];
    // The CI key vouches for the algorithm tier only.
    let r = derive_with(
        &m,
        &runs,
        vec![facts("r", 20, signed_by("ci@example.com"))],
        false,
        Some(policy.clone()),
    );
    assert_eq!(r.unattested.len(), 1);
    assert_eq!(r.unattested[0].falsifier, H.0);
    assert_eq!(
        r.stage("M-A-1.1").unwrap().status,
        StageStatus::AlgorithmLevel
    );
    assert_eq!(r.signed_runs, 1);
    // Unsigned or unknown keys attest nothing; counted only without require_attested.
    for sig in [
        RunSignature::Unsigned,
        RunSignature::NotAllowed("key not listed".into()),
    ] {
        let r = derive_with(
            &m,
            &runs,
            vec![facts("r", 20, sig.clone())],
            false,
            Some(policy.clone()),
        );
        assert_eq!(r.unattested.len(), 2);
        assert_eq!(r.stage("M-A-1.1").unwrap().status, StageStatus::Pending);
        let relaxed = TrustPolicy {
            require_attested: false,
            ..policy.clone()
        };
        let r = derive_with(&m, &runs, vec![facts("r", 20, sig)], false, Some(relaxed));
        assert_eq!(r.unattested.len(), 2);
        assert_eq!(r.stage("M-A-1.1").unwrap().status, StageStatus::Discharged);
    }
    // A broken signature is worse than none: the records are invalid.
    let r = derive_with(
        &m,
        &runs,
        vec![facts("r", 20, RunSignature::Broken("bad".into()))],
        false,
        Some(policy),
    );
    assert_eq!(r.invalid.len(), 2);
    assert_eq!(r.stage("M-A-1.1").unwrap().status, StageStatus::Failing);
}
