//! `pv validate --since REV`: history rules against a real git repository.

use std::path::Path;
use std::process::{Command, Output};

fn git(dir: &Path, args: &[&str]) {
    let st = Command::new("git")
        .args([
            "-c",
            "user.name=pv-test",
            "-c",
            "user.email=pv@test",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        st.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&st.stderr)
    );
}

mod common;
use common::{pv, valid_contract};

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    git(d, &["init", "-q"]);
    std::fs::create_dir(d.join("contracts")).expect("mkdir");
    std::fs::write(d.join("contracts/demo-v1.yaml"), valid_contract()).expect("write");
    // The demo's GPU falsifier gates on device `cuda`, which the project must declare (PV060).
    std::fs::write(
        d.join("pv.toml"),
        "[devices.cuda]\nprobe = [\"nvidia-smi\", \"-L\"]\nmissing = \"no GPU\"\n",
    )
    .expect("write");
    git(d, &["add", "."]);
    git(d, &["commit", "-q", "-m", "first"]);
    dir
}

fn codes(o: &Output) -> Vec<String> {
    let text = String::from_utf8_lossy(&o.stderr);
    text.lines()
        .filter_map(|l| l.strip_prefix("error["))
        .filter_map(|l| l.get(..5))
        .map(str::to_string)
        .collect()
}

const ENTRY: &str = "  - version: 0.3.0\n    date: 2026-11-23\n    summary: Third.\n";

#[test]
fn unchanged_and_properly_amended_contracts_pass() {
    let r = repo();
    let d = r.path();
    let o = pv(&["validate"], d);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = valid_contract()
        .replace("title: Demo contract", "title: Demo contract, renamed")
        .replace("version: 0.2.0\ntitle", "version: 0.3.0\ntitle")
        + ENTRY;
    std::fs::write(d.join("contracts/demo-v1.yaml"), text).expect("write");
    let o = pv(&["validate", "--since", "HEAD"], d);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn change_without_version_bump_is_pv040() {
    let r = repo();
    let d = r.path();
    std::fs::write(
        d.join("contracts/demo-v1.yaml"),
        valid_contract().replace("threshold: 100.5", "threshold: 90"),
    )
    .expect("write");
    let o = pv(&["validate"], d);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(codes(&o), ["PV040"]);
    insta::assert_snapshot!("since_pv040", String::from_utf8_lossy(&o.stderr));
    // --no-since turns the history rules off.
    assert_eq!(pv(&["validate", "--no-since"], d).status.code(), Some(0));
}

#[test]
fn edited_amendment_is_pv041() {
    let r = repo();
    let d = r.path();
    let text = valid_contract()
        .replace(
            "summary: First version.",
            "summary: First version, reworded.",
        )
        .replace("version: 0.2.0\ntitle", "version: 0.3.0\ntitle")
        + ENTRY;
    std::fs::write(d.join("contracts/demo-v1.yaml"), text).expect("write");
    let o = pv(&["validate"], d);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(codes(&o), ["PV041"]);
    insta::assert_snapshot!("since_pv041", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn deleted_falsifier_is_pv042() {
    let r = repo();
    let d = r.path();
    let old = valid_contract();
    let start = old
        .find("  - id: FALSIFY-DEMO-FAST-001")
        .expect("falsifier");
    let end = old.find("amendment_history:").expect("history");
    let text = format!("{}{}", &old[..start], &old[end..])
        .replace(
            "falsifiers: [FALSIFY-DEMO-FAST-001]",
            "falsifiers: [FALSIFY-DEMO-WORKS-001]",
        )
        .replace("version: 0.2.0\ntitle", "version: 0.3.0\ntitle")
        + ENTRY;
    std::fs::write(d.join("contracts/demo-v1.yaml"), text).expect("write");
    let o = pv(&["validate"], d);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(codes(&o), ["PV042"]);
    insta::assert_snapshot!("since_pv042", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn deleted_contract_file_is_pv042() {
    let r = repo();
    let d = r.path();
    let other = valid_contract()
        .replace("demo-v1", "other-v1")
        .replace("-DEMO-", "-OTHER-");
    std::fs::write(d.join("contracts/other-v1.yaml"), other).expect("write");
    std::fs::remove_file(d.join("contracts/demo-v1.yaml")).expect("rm");
    let o = pv(&["validate", "contracts"], d);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(codes(&o), ["PV042"]);
}

#[test]
fn unknown_revision_is_a_usage_error_and_no_repo_is_a_note() {
    let r = repo();
    let o = pv(&["validate", "--since", "no-such-rev"], r.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--since no-such-rev: no such git revision")
    );

    let plain = tempfile::tempdir().expect("tempdir");
    std::fs::write(plain.path().join("demo-v1.yaml"), valid_contract()).expect("write");
    let o = pv(&["validate", "."], plain.path());
    let err = String::from_utf8_lossy(&o.stderr);
    // A temporary directory may itself sit inside a repository; only check outside one.
    if !err.contains("PV0") {
        assert_eq!(o.status.code(), Some(0), "{err}");
    }
    let o = pv(&["validate", "--since", "HEAD", "."], plain.path());
    if String::from_utf8_lossy(&o.stderr).contains("not inside a git repository") {
        assert_eq!(o.status.code(), Some(2));
    }
}
