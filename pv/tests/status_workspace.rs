//! Derived status reacts to what happens in a workspace: a mini workspace (contracts, engine
//! sources, a bound-test file, evidence) in a temporary directory, driven through the same
//! runtime the falsifier tests use and the same loader `pv status` uses.

use std::fs;

use pv::status::StageStatus;
use pv::status_load::{status_for, Paths};

mod common;
use common::mini::{Mini, TESTS};

#[test]
fn passing_runs_discharge_and_deleting_a_run_makes_pending() {
    let m = Mini::new();
    assert_eq!(m.status("M-MINI-1.1"), StageStatus::Pending);
    let a = m.run("FALSIFY-MINI-A-001", 0.0);
    assert_eq!(m.status("M-MINI-1.1"), StageStatus::Discharged);
    assert_eq!(m.status("M-MINI-1.2"), StageStatus::AlgorithmLevel);
    m.run("FALSIFY-MINI-GPU-001", 0.0);
    assert_eq!(m.status("M-MINI-1.2"), StageStatus::Discharged);
    // Deleting the only record of A while its run's manifest still lists it: the run's result
    // is unknown, which is no pass (rule 17).
    fs::remove_file(a).unwrap();
    assert_eq!(m.status("M-MINI-1.1"), StageStatus::Failing);
    // Deleting the whole run (records and manifest): nothing vouches for A any more.
    for f in pv_evidence::store::list_evidence_files(&m.runs())
        .unwrap()
        .manifests
    {
        fs::remove_file(f).unwrap();
    }
    fs::remove_dir_all(m.runs()).unwrap();
    assert_eq!(m.status("M-MINI-1.1"), StageStatus::Pending);
    // ... and the stage that requires 1.1 cannot stand above it.
    assert_eq!(m.status("M-MINI-1.2"), StageStatus::Pending);
}

#[test]
fn editing_engine_sources_makes_evidence_stale_until_rerun() {
    let m = Mini::new();
    m.run("FALSIFY-MINI-A-001", 0.0);
    assert_eq!(m.status("M-MINI-1.1"), StageStatus::Discharged);
    fs::write(
        m.root().join("engine/src/lib.rs"),
        "pub fn f() -> u32 { 2 }\n",
    )
    .unwrap();
    assert_eq!(m.status("M-MINI-1.1"), StageStatus::Stale);
    m.run("FALSIFY-MINI-A-001", 0.0);
    assert_eq!(m.status("M-MINI-1.1"), StageStatus::Discharged);
    // A file outside the scope: nothing goes stale.
    fs::write(m.root().join("README.md"), "words\n").unwrap();
    fs::write(
        m.root().join("falsifiers/tests/mini.rs"),
        format!("{TESTS}\n// more\n"),
    )
    .unwrap();
    assert_eq!(m.status("M-MINI-1.1"), StageStatus::Discharged);
    // Editing the contract where this claim does not change (a comment, another claim's
    // wording) stales nothing; editing its threshold does.
    let path = m.root().join("contracts/mini-v1.yaml");
    let text = fs::read_to_string(&path).unwrap();
    let reworded = text.replace(
        "claim: The GPU agrees.",
        "claim: The GPU agrees with the CPU.",
    );
    fs::write(&path, format!("# edited\n{reworded}")).unwrap();
    assert_eq!(m.status("M-MINI-1.1"), StageStatus::Discharged);
    let threshold = reworded.replacen("threshold: 0\n", "threshold: 1\n", 1);
    assert_ne!(threshold, reworded);
    fs::write(&path, threshold).unwrap();
    assert_eq!(m.status("M-MINI-1.1"), StageStatus::Stale);
}

#[test]
fn a_failing_run_makes_the_stage_failing_until_a_newer_pass() {
    let m = Mini::new();
    m.run("FALSIFY-MINI-A-001", 0.0);
    m.run("FALSIFY-MINI-A-001", 3.0);
    assert_eq!(m.status("M-MINI-1.1"), StageStatus::Failing);
    let (_, r) = status_for(&Paths::in_workspace(m.root())).unwrap();
    let s = r.stage("M-MINI-1.1").unwrap();
    assert_eq!(s.key_metric.as_deref(), Some("mismatches=3 (fails)"));
    m.run("FALSIFY-MINI-A-001", 0.0);
    assert_eq!(m.status("M-MINI-1.1"), StageStatus::Discharged);
}

#[test]
fn corrupt_records_are_reported_and_skipped_and_never_rewritten() {
    let m = Mini::new();
    let good = m.run("FALSIFY-MINI-A-001", 0.0);
    let text = fs::read_to_string(&good).unwrap();
    let bad = m.runs().join("truncated.json");
    fs::write(&bad, &text[..text.len() / 2]).unwrap();
    fs::write(m.runs().join("garbage.json"), "not json").unwrap();
    let (_, r) = status_for(&Paths::in_workspace(m.root())).unwrap();
    assert_eq!(
        r.stage("M-MINI-1.1").unwrap().status,
        StageStatus::Discharged
    );
    assert_eq!(r.unreadable.len(), 2, "{:?}", r.unreadable);
    // pv only reads.
    assert_eq!(fs::read_to_string(&bad).unwrap(), text[..text.len() / 2]);
}

#[test]
fn a_falsifier_without_a_bound_test_is_unimplemented() {
    let m = Mini::new();
    fs::write(
        m.root().join("falsifiers/tests/mini.rs"),
        "#[falsifier(\"FALSIFY-MINI-A-001\")]\nfn a() {}\n",
    )
    .unwrap();
    m.run("FALSIFY-MINI-A-001", 0.0);
    m.run("FALSIFY-MINI-GPU-001", 0.0);
    let (_, r) = status_for(&Paths::in_workspace(m.root())).unwrap();
    assert_eq!(
        r.stage("M-MINI-1.1").unwrap().status,
        StageStatus::Discharged
    );
    assert_eq!(
        r.stage("M-MINI-1.2").unwrap().status,
        StageStatus::Unimplemented
    );
    assert_eq!(r.unbound, vec!["FALSIFY-MINI-GPU-001".to_string()]);
}

#[test]
fn traceability_rows_flag_stale_and_missing_evidence() {
    let m = Mini::new();
    m.run("FALSIFY-MINI-A-001", 0.0);
    fs::write(
        m.root().join("engine/src/lib.rs"),
        "pub fn f() -> u32 { 3 }\n",
    )
    .unwrap();
    let (set, report) = status_for(&Paths::in_workspace(m.root())).unwrap();
    let model =
        pv::status_load::model_from_contracts(&set, &pv_project::Project::defaults(m.root()));
    let rows = pv::evidence_cmd::rows(&report, &model, &Default::default(), 3);
    let a = rows
        .iter()
        .find(|r| r.falsifier == "FALSIFY-MINI-A-001")
        .unwrap();
    assert_eq!(a.criterion, "AC-MINI-001");
    assert_eq!(a.stages, vec!["M-MINI-1.1", "M-MINI-1.2"]);
    assert_eq!(a.flags, vec!["stale"]);
    assert_eq!(a.runs.len(), 1);
    let gpu = rows
        .iter()
        .find(|r| r.falsifier == "FALSIFY-MINI-GPU-001")
        .unwrap();
    assert_eq!(gpu.flags, vec!["no evidence"]);
    let md = pv::evidence_cmd::markdown(&rows);
    assert!(md.contains("STALE (sources changed)"), "{md}");
}

#[test]
fn the_summary_cache_gives_the_same_runs_as_reading_every_file() {
    use pv::status_load::load_runs_excluding;
    let m = Mini::new();
    let a = m.run("FALSIFY-MINI-A-001", 0.0);
    m.run("FALSIFY-MINI-GPU-001", 1.0);
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = cache_dir.path().join("c.json");
    let dirs = [m.runs()];
    let key = |r: &pv::status_load::LoadedRuns| {
        let mut v: Vec<(String, i128, String)> = r
            .runs
            .iter()
            .map(|x| (x.file.clone(), x.ts, format!("{:?}", x.record)))
            .collect();
        v.sort();
        v
    };
    let cold = load_runs_excluding(&dirs, &[], &[], Some(&cache), None).unwrap();
    assert!(cache.is_file());
    let warm = load_runs_excluding(&dirs, &[], &[], Some(&cache), None).unwrap();
    assert_eq!(key(&cold), key(&warm));
    // A new record is read and added.
    m.run("FALSIFY-MINI-A-001", 2.0);
    let after = load_runs_excluding(&dirs, &[], &[], Some(&cache), None).unwrap();
    assert_eq!(after.runs.len(), 3);
    assert_eq!(
        key(&after),
        key(&load_runs_excluding(&dirs, &[], &[], None, None).unwrap())
    );
    // Every record the runtime wrote is in its process's run.
    assert!(after
        .runs
        .iter()
        .all(|r| matches!(r.provenance, pv::status::Provenance::Run(_))));
    assert_eq!(after.manifests.len(), 1);
    // A record edited in place (its size or time changed) is read again despite the cache.
    fs::write(&a, "{").unwrap();
    let present = |l: &pv::status_load::LoadedRuns| {
        l.runs
            .iter()
            .filter(|r| !matches!(r.provenance, pv::status::Provenance::Missing { .. }))
            .count()
    };
    let cached = load_runs_excluding(&dirs, &[], &[], Some(&cache), None).unwrap();
    assert_eq!((present(&cached), cached.unreadable.len()), (2, 1));
    let uncached = load_runs_excluding(&dirs, &[], &[], None, None).unwrap();
    assert_eq!((present(&uncached), uncached.unreadable.len()), (2, 1));
    // A deleted record disappears.
    fs::remove_file(&a).unwrap();
    let after = load_runs_excluding(&dirs, &[], &[], Some(&cache), None).unwrap();
    assert_eq!((present(&after), after.unreadable.len()), (2, 0));
    // ... but its run's manifest still lists it.
    assert_eq!(after.runs.len(), 3);
}

#[test]
fn a_hand_forged_pass_moves_nothing_and_fails_the_check() {
    // The forgery of the trusted-evidence issue: a genuinely failing stage, then a hand-written
    // record saying `pass`, from test `nothing::ran`, dated 2099, digesting no source at all.
    let m = Mini::new();
    let real = m.run("FALSIFY-MINI-A-001", 3.0);
    assert_eq!(m.status("M-MINI-1.1"), StageStatus::Failing);
    let mut v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&real).unwrap()).unwrap();
    v["outcome"] = "pass".into();
    v["reason"] = serde_json::Value::Null;
    v["metrics"][0]["passed"] = true.into();
    v["test"]["name"] = "nothing::ran".into();
    v["timestamp"] = "2099-01-01T00:00:00.000000Z".into();
    v["source"]["roots"] = serde_json::json!([]);
    v["source"]["sha256"] = pv_contract::digest::content_hash(b"pv-source-v2\0").into();
    v["source"]["files"] = 0.into();
    let forged = m
        .runs()
        .join("20990101T000000.000000Z_FALSIFY-MINI-A-001_1-0-00000000.json");
    fs::write(&forged, serde_json::to_string(&v).unwrap()).unwrap();

    let (_, r) = status_for(&Paths::in_workspace(m.root())).unwrap();
    assert_eq!(r.stage("M-MINI-1.1").unwrap().status, StageStatus::Failing);
    assert_eq!(r.invalid.len(), 1, "{:?}", r.invalid);
    assert!(
        r.invalid[0].reason.contains("in the future"),
        "{:?}",
        r.invalid
    );
    // Dated today, it is still caught: another test wrote it, and its metrics say fail.
    v["timestamp"] = pv_evidence::timefmt::format_rfc3339_utc(std::time::SystemTime::now()).into();
    fs::write(&forged, serde_json::to_string(&v).unwrap()).unwrap();
    let (_, r) = status_for(&Paths::in_workspace(m.root())).unwrap();
    assert_eq!(r.stage("M-MINI-1.1").unwrap().status, StageStatus::Failing);
    assert!(
        r.invalid[0].reason.contains("nothing::ran"),
        "{:?}",
        r.invalid
    );
    v["test"]["name"] = "mini::a".into();
    fs::write(&forged, serde_json::to_string(&v).unwrap()).unwrap();
    let (_, r) = status_for(&Paths::in_workspace(m.root())).unwrap();
    assert_eq!(r.stage("M-MINI-1.1").unwrap().status, StageStatus::Failing);
    assert!(
        r.invalid[0]
            .reason
            .contains("marks `mismatches` passed but 3 == 0 is false"),
        "{:?}",
        r.invalid
    );

    // The CI gate fails, names the invalid record, and does not call the stage discharged.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_pv"))
        .args([
            "status",
            "--no-cache",
            "--check",
            "--require",
            "M-MINI-1.1=DISCHARGED",
        ])
        .current_dir(m.root())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(out.contains("INVALID evidence (1)"), "{out}");
    assert!(out.contains("1 invalid evidence record(s)"), "{out}");
    assert!(out.contains("M-MINI-1.1 is FAILING"), "{out}");
}
