//! The runtime's verdicts, records and file handling, on a fake falsifier.

use std::collections::HashSet;
use std::path::Path;

use pv_evidence::store::{list_record_files, read_record};
use pv_evidence::{
    run_falsifier_in, Ctx, FalsifierError, FalsifierMeta, FalsifierResult, MetricSpec, Op, Outcome,
    ResultExt, Tier,
};

const METRICS: &[MetricSpec] = &[
    MetricSpec {
        name: "mismatches",
        op: Op::Eq,
        threshold: 0.0,
        unit: Some("count"),
    },
    MetricSpec {
        name: "ratio",
        op: Op::Le,
        threshold: 1.03,
        unit: None,
    },
];

fn meta() -> FalsifierMeta {
    FalsifierMeta {
        id: "FALSIFY-META-RT-001",
        contract: "meta-v1",
        contract_version: "0.1.0",
        contract_path: "contracts/meta-v1.yaml",
        contract_sha256: "00",
        falsifier_sha256: "11",
        tier: Tier::Algorithm,
        metrics: METRICS,
        devices: &[],
        fixtures: &[],
        if_fails: "Look at the fake.",
        test_name: "runtime::fake",
        test_file: file!(),
        manifest_dir: env!("CARGO_MANIFEST_DIR"),
    }
}

fn run(body: impl FnOnce(&mut Ctx) -> FalsifierResult) -> pv_evidence::runtime::RunReport {
    let dir = tempfile::tempdir().unwrap();
    let r = run_falsifier_in(&meta(), dir.path(), body).unwrap();
    // What was written is what is returned (compared as JSON: NaN != NaN as f64).
    let back = serde_json::to_value(read_record(&r.path).unwrap()).unwrap();
    assert_eq!(back, serde_json::to_value(&r.record).unwrap());
    r
}

#[test]
fn pass_when_every_metric_meets_its_threshold() {
    let r = run(|ctx| {
        ctx.metric("mismatches", 0.0);
        ctx.metric("ratio", 1.03);
        ctx.note("checked");
        ctx.series("per_layer", [1.0, f64::NAN, 0.5]);
        ctx.detail("k", serde_json::json!({"a": 1}));
        Ok(())
    });
    assert_eq!(r.record.outcome, Outcome::Pass);
    assert_eq!(r.record.reason, None);
    assert!(r.record.metrics.iter().all(|m| m.passed));
    assert_eq!(r.record.notes, vec!["checked"]);
    assert!(r.record.series["per_layer"][1].0.is_nan());
    assert_eq!(r.record.contract.id, "meta-v1");
    assert!(r.record.rustc.starts_with("rustc "), "{}", r.record.rustc);
    // No scope configured for this fake: the project's default scope.
    let project = pv_evidence::env::project(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
    assert_eq!(
        r.record.source.roots,
        project.scope_for("meta-v1", "FALSIFY-META-RT-001")
    );
    assert_eq!(r.record.source.algorithm, "pv-source-v2");
    assert_eq!(r.record.contract.falsifier_sha256.as_deref(), Some("11"));
    assert!(pv_evidence::timefmt::parse_rfc3339(&r.record.timestamp).is_some());
}

#[test]
fn fail_names_the_metric() {
    let r = run(|ctx| {
        ctx.metric("mismatches", 0.0);
        ctx.metric("ratio", 1.07);
        Ok(())
    });
    assert_eq!(r.record.outcome, Outcome::Fail);
    let reason = r.record.reason.clone().unwrap();
    assert!(
        reason.contains("ratio = 1.07, required <= 1.03"),
        "{reason}"
    );
    let msg = pv_evidence::runtime::failure_message(&meta(), &r);
    assert!(msg.contains("FAILED"), "{msg}");
    assert!(msg.contains("Look at the fake."), "{msg}");
    assert!(msg.contains("ratio = 1.07"), "{msg}");
}

#[test]
fn nan_metric_fails() {
    let r = run(|ctx| {
        ctx.metric("mismatches", f64::NAN);
        ctx.metric("ratio", 1.0);
        Ok(())
    });
    assert_eq!(r.record.outcome, Outcome::Fail);
    assert!(r.record.metrics[0].value.unwrap().0.is_nan());
}

#[test]
fn reporting_mistakes_are_errors() {
    let missing = run(|ctx| {
        ctx.metric("mismatches", 0.0);
        Ok(())
    });
    assert_eq!(missing.record.outcome, Outcome::Error);
    assert!(missing
        .record
        .reason
        .unwrap()
        .contains("`ratio` was not reported"));

    let twice = run(|ctx| {
        ctx.metric("mismatches", 0.0);
        ctx.metric("mismatches", 0.0);
        ctx.metric("ratio", 1.0);
        Ok(())
    });
    assert_eq!(twice.record.outcome, Outcome::Error);
    assert!(twice.record.reason.unwrap().contains("more than once"));

    let typo = run(|ctx| {
        ctx.metric("mismatch", 0.0);
        ctx.metric("mismatches", 0.0);
        ctx.metric("ratio", 1.0);
        Ok(())
    });
    assert_eq!(typo.record.outcome, Outcome::Error);
    assert!(typo
        .record
        .reason
        .unwrap()
        .contains("`mismatch` is not in the contract"));
}

#[test]
fn panics_and_errors_are_errors() {
    let p = run(|_| panic!("boom at layer 3"));
    assert_eq!(p.record.outcome, Outcome::Error);
    assert!(p.record.reason.unwrap().contains("boom at layer 3"));

    let e = run(|_| {
        std::fs::read("/definitely/not/here").context("reading the fixture")?;
        Ok(())
    });
    assert_eq!(e.record.outcome, Outcome::Error);
    assert!(e
        .record
        .reason
        .unwrap()
        .starts_with("reading the fixture: "));

    let q = run(|_| {
        let n: u32 = "x".parse()?;
        let _ = n;
        Ok(())
    });
    assert_eq!(q.record.outcome, Outcome::Error);
}

#[test]
fn skip_is_never_a_pass() {
    let r = run(|ctx| {
        ctx.metric("mismatches", 0.0);
        Err(ctx.skip("no oracle"))
    });
    assert_eq!(r.record.outcome, Outcome::Skipped);
    assert_eq!(r.record.reason.as_deref(), Some("no oracle"));
    let e: FalsifierError = FalsifierError::msg("x");
    assert_eq!(e.to_string(), "x");
}

/// A project of its own in a temporary folder, with the given `pv.toml`; the meta's manifest
/// folder points into it so the runtime discovers it.
fn meta_in_project(pv_toml: &str) -> (tempfile::TempDir, FalsifierMeta) {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("pv.toml"), pv_toml).unwrap();
    std::fs::create_dir_all(d.path().join("checks/src")).unwrap();
    std::fs::write(d.path().join("checks/src/lib.rs"), "// code under test\n").unwrap();
    let manifest: &'static str = Box::leak(
        d.path()
            .join("checks")
            .display()
            .to_string()
            .into_boxed_str(),
    );
    let mut m = meta();
    m.manifest_dir = manifest;
    (d, m)
}

#[test]
fn gates_come_from_the_project_file() {
    let (project, mut m) = meta_in_project(
        r#"
[devices.never]
probe = ["false"]
missing = "this device is never present"
[fixtures.path]
env = "PATH"
missing = "set PATH"
"#,
    );
    let dir = tempfile::tempdir().unwrap();
    // Undeclared names are errors that say where to declare them.
    m.fixtures = &["no-such-fixture"];
    let r = run_falsifier_in(&m, dir.path(), |_| Ok(())).unwrap();
    assert_eq!(r.record.outcome, Outcome::Error);
    let why = r.record.reason.unwrap();
    assert!(
        why.contains("not declared in") && why.contains("[fixtures.no-such-fixture]"),
        "{why}"
    );
    // An absent device skips without running the body, with the declared message.
    m.fixtures = &[];
    m.devices = &["never"];
    let r = run_falsifier_in(&m, dir.path(), |_| panic!("must not run")).unwrap();
    assert_eq!(r.record.outcome, Outcome::Skipped);
    assert!(r
        .record
        .reason
        .unwrap()
        .contains("this device is never present"));
    // A present fixture runs the body, which can read what it exports.
    m.devices = &[];
    m.fixtures = &["path"];
    let r = run_falsifier_in(&m, dir.path(), |ctx| {
        let path = ctx.fixture("path")?;
        ctx.metric("mismatches", if path.is_empty() { 1.0 } else { 0.0 });
        ctx.metric("ratio", 1.0);
        let undeclared = ctx
            .fixture("nope")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        ctx.note(undeclared);
        Ok(())
    })
    .unwrap();
    assert_eq!(r.record.outcome, Outcome::Pass, "{:?}", r.record.reason);
    assert!(
        r.record.notes[0].contains("fixture `nope` is not declared"),
        "{:?}",
        r.record.notes
    );
    // The digest covers the project's default scope, in that project.
    assert_eq!(r.record.source.files, 1);
    drop(project);
}

#[test]
fn a_broken_project_file_is_an_error_record() {
    let (_project, m) = meta_in_project("[contracts]\ndir = []\n");
    let dir = tempfile::tempdir().unwrap();
    let r = run_falsifier_in(&m, dir.path(), |ctx| {
        ctx.metric("mismatches", 0.0);
        ctx.metric("ratio", 1.0);
        Ok(())
    })
    .unwrap();
    assert_eq!(r.record.outcome, Outcome::Error);
    let why = r.record.reason.unwrap();
    assert!(
        why.contains("pv.toml") && why.contains("unknown field `dir`"),
        "{why}"
    );
}

#[test]
fn parallel_writers_never_collide() {
    let dir = tempfile::tempdir().unwrap();
    let d: &Path = dir.path();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(move || {
                for _ in 0..25 {
                    run_falsifier_in(&meta(), d, |ctx| {
                        ctx.metric("mismatches", 0.0);
                        ctx.metric("ratio", 1.0);
                        Ok(())
                    })
                    .unwrap();
                }
            });
        }
    });
    let files = list_record_files(d).unwrap();
    assert_eq!(files.len(), 200);
    let names: HashSet<_> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 200);
    // No temporary file is left behind: the records and the one run manifest of this process.
    let all = std::fs::read_dir(d).unwrap().count();
    assert_eq!(all, 201);
    // The manifest lists every record once, with the sha256 of its bytes, in a parseable
    // in-toto Statement.
    let listed = pv_evidence::store::list_evidence_files(d).unwrap();
    assert_eq!(listed.manifests.len(), 1);
    let m = pv_evidence::manifest::read_manifest(&listed.manifests[0]).unwrap();
    assert_eq!(m.statement.subject.len(), 200);
    for (name, sha) in m.subjects() {
        let bytes = std::fs::read(d.join(name)).unwrap();
        assert_eq!(pv_evidence::manifest::sha256_hex(&bytes), sha, "{name}");
    }
    assert_eq!(m.statement.predicate.passed_tests.len(), 200);
    assert_eq!(m.statement.predicate.result, "pass");
    assert!(m.envelope.signatures.is_empty());
    assert!(!m.run.command.is_empty());
}
