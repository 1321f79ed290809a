//! The `pv` binary end to end: exit codes, output formats, authoring commands.

use std::path::Path;
use std::process::Output;

mod common;
use common::pv;

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rules")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn validate_exit_codes() {
    let fx = fixtures();
    let ok = pv(&["validate", "--no-since", "valid"], &fx);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert_eq!(stderr(&ok), "ok: 1 contract, 2 stages, 2 falsifiers\n");

    let bad = pv(&["validate", "--no-since", "PV013-stage-falsifier"], &fx);
    assert_eq!(bad.status.code(), Some(1));
    insta::assert_snapshot!("cli_validate_invalid", stderr(&bad));

    let warn = pv(&["validate", "--no-since", "PV035-orphan-falsifier"], &fx);
    assert_eq!(warn.status.code(), Some(0), "warnings do not fail");

    let missing = pv(&["validate", "no-such-dir"], &fx);
    assert_eq!(missing.status.code(), Some(2));
    insta::assert_snapshot!("cli_validate_pv006_missing_path", stderr(&missing));
    assert!(
        stderr(&missing).contains("error[PV006]: cannot read no-such-dir"),
        "{}",
        stderr(&missing)
    );

    let empty = tempfile::tempdir().expect("tempdir");
    let none = pv(&["validate", "."], empty.path());
    assert_eq!(none.status.code(), Some(2));
    assert!(
        stderr(&none).contains("no contract files (*.yaml, *.yml) in ."),
        "{}",
        stderr(&none)
    );

    let usage = pv(&["validate", "--format", "xml"], &fx);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn validate_json_format() {
    let out = pv(
        &[
            "validate",
            "--no-since",
            "--format",
            "json",
            "PV022-version-mismatch",
        ],
        &fixtures(),
    );
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json on stdout");
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"], 1);
    assert_eq!(v["contracts"], 1);
    let d = &v["diagnostics"][0];
    assert_eq!(d["code"], "PV022");
    assert_eq!(d["file"], "PV022-version-mismatch/demo-v1.yaml");
    assert_eq!((d["line"].as_u64(), d["col"].as_u64()), (Some(3), Some(10)));
    assert_eq!(d["secondary"][0]["line"], 44);
    assert!(out.stderr.is_empty(), "json mode keeps stderr quiet");
}

#[test]
fn validate_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = fixtures().join("PV019-stage-cycle/demo-v1.yaml");
    std::fs::copy(&src, dir.path().join("demo-v1.yaml")).expect("copy");
    let before = std::fs::read(dir.path().join("demo-v1.yaml")).expect("read");
    let out = pv(&["validate", "."], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert_eq!(
        std::fs::read(dir.path().join("demo-v1.yaml")).expect("read"),
        before
    );
}

#[test]
fn committed_schema_is_current() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts/contract.schema.json");
    let text = std::fs::read_to_string(&committed).expect("contracts/contract.schema.json exists");
    assert!(
        text == pv::schema::schema_text(),
        "contracts/contract.schema.json is stale: run `pv schema -o contracts/contract.schema.json`"
    );
    let out = pv(&["schema"], &fixtures());
    assert_eq!(String::from_utf8_lossy(&out.stdout), text);
}

#[test]
fn new_amend_diff_list_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let out = pv(&["new", "kv-cache", "--dir", "c"], d);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let path = d.join("c/kv-cache-v1.yaml");
    let first = std::fs::read_to_string(&path).expect("created");
    assert!(first.starts_with("# yaml-language-server: $schema=./contract.schema.json\n"));
    assert!(first.contains("contract: kv-cache-v1\nversion: 0.1.0\n"));
    assert!(d.join("c/contract.schema.json").exists());
    // A second `new` with the same name refuses to overwrite.
    let again = pv(&["new", "kv-cache", "--dir", "c"], d);
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&path).expect("still there"), first);

    let ok = pv(&["validate", "c"], d);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));

    let out = pv(
        &[
            "amend",
            "kv-cache-v1",
            "--dir",
            "c",
            "--bump",
            "minor",
            "--summary",
            "Add the eviction stage",
            "--change",
            "Added M-KC-1.2.",
            "--date",
            "2030-01-02",
        ],
        d,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let second = std::fs::read_to_string(&path).expect("amended");
    assert!(second.contains("version: 0.2.0\n"));
    assert!(second.ends_with(
        "  - version: 0.2.0\n    date: 2030-01-02\n    summary: Add the eviction stage\n    changes:\n      - Added M-KC-1.2.\n"
    ));
    let ok = pv(&["validate", "c"], d);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));

    std::fs::write(d.join("old.yaml"), &first).expect("write old");
    let diff = pv(&["diff", "old.yaml", "c/kv-cache-v1.yaml"], d);
    assert_eq!(diff.status.code(), Some(0));
    insta::assert_snapshot!("cli_diff_amend", String::from_utf8_lossy(&diff.stdout));

    let list = pv(&["list", "--format", "json", "c"], d);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    assert_eq!(v[0]["contract"], "kv-cache-v1");
    assert_eq!(v[0]["version"], "0.2.0");
    assert_eq!(v[0]["stages"], 1);
    assert_eq!(v[0]["falsifiers"], 1);
}

#[test]
fn diff_reports_thresholds_stages_and_falsifiers() {
    let fx = fixtures();
    let out = pv(
        &[
            "diff",
            "valid/demo-v1.yaml",
            "PV034-retired-in-use/demo-v1.yaml",
        ],
        &fx,
    );
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "~ falsifier FALSIFY-DEMO-FAST-001: retired: replaced by the end-to-end benchmark"
        ),
        "{text}"
    );
    // Equations and proof obligations are part of the semantic diff.
    let out = pv(
        &[
            "diff",
            "PV055-obligation-tolerance/demo-v1.yaml",
            "PV056-orphan-equation/demo-v1.yaml",
        ],
        &fx,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("  + equation EQ-DEMO-UNUSED\n"), "{text}");
    assert!(text.contains("  ~ obligation PO-DEMO-001: "), "{text}");
    let out = pv(
        &[
            "diff",
            "valid/demo-v1.yaml",
            "PV055-obligation-tolerance/demo-v1.yaml",
        ],
        &fx,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("  + equation EQ-DEMO-SCALE\n  + obligation PO-DEMO-001\n"),
        "{text}"
    );
    // A threshold change, a stage added and a falsifier removed, in JSON.
    let dir = tempfile::tempdir().expect("tempdir");
    let old = std::fs::read_to_string(fx.join("valid/demo-v1.yaml")).expect("read");
    let new = old.replace("threshold: 100.5", "threshold: 120").replace(
        "stages:\n",
        "stages:\n  - id: M-DEMO-0.9\n    title: Zero\n    falsifiers: [FALSIFY-DEMO-WORKS-001]\n",
    );
    std::fs::write(dir.path().join("new.yaml"), new).expect("write");
    let out = pv(
        &["diff", "--format", "json", "old.yaml", "new.yaml"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "old.yaml does not exist yet");
    std::fs::write(dir.path().join("old.yaml"), &old).expect("write");
    let out = pv(
        &["diff", "--format", "json", "old.yaml", "new.yaml"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let changes = v["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 2, "{v}");
    assert_eq!(changes[0]["kind"], "added");
    assert_eq!(changes[0]["what"], "stage");
    assert_eq!(changes[0]["id"], "M-DEMO-0.9");
    assert_eq!(changes[1]["what"], "metric");
    assert_eq!(changes[1]["details"][0], "threshold: >= 100.5 -> >= 120");
}
