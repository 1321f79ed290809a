//! The adopter journey of docs/adopting.md, walked as a new user would on a project that is not
//! this repository: examples/softmax is copied to a temporary folder (its own workspace, using
//! pv's crates by path) and taken from `pv init` to a dashboard, then through the edits that
//! must and must not stale its evidence.
//!
//! It builds the example's tests with cargo (about two minutes cold on two cores) in
//! `target-journey/` beside the workspace's own target, so later runs are quick.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the pv crate lies in the repository")
        .to_path_buf()
}

fn pv(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pv"))
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .env_remove("PV_EVIDENCE_DIR")
        .env("CARGO_TARGET_DIR", repo().join("target-journey"))
        .output()
        .expect("run pv")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> Output {
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    o
}

fn copy(from: &Path, to: &Path) {
    if from.is_dir() {
        fs::create_dir_all(to).expect("mkdir");
        for e in fs::read_dir(from).expect("read_dir") {
            let e = e.expect("entry");
            copy(&e.path(), &to.join(e.file_name()));
        }
    } else {
        fs::copy(from, to).expect("copy");
    }
}

/// `(stage id, status)` of every stage, from `pv status --format json`.
fn statuses(root: &Path) -> Vec<(String, String)> {
    let o = ok(pv(root, &["status", "--format", "json", "--no-cache"]));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status json");
    let mut out = Vec::new();
    for c in j["contracts"].as_array().expect("contracts") {
        for s in c["stages"].as_array().expect("stages") {
            out.push((
                s["id"].as_str().expect("id").to_string(),
                s["status"].as_str().expect("status").to_string(),
            ));
        }
    }
    out
}

fn status_of(root: &Path, stage: &str) -> String {
    statuses(root)
        .into_iter()
        .find(|(s, _)| s == stage)
        .map(|(_, st)| st)
        .unwrap_or_else(|| panic!("no stage {stage} in {:?}", statuses(root)))
}

#[test]
fn a_new_user_adopts_pv_in_a_project_of_their_own() {
    let example = repo().join("examples/softmax");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();

    // The user's project before pv: a manifest, the code, a README. The manifest already lists
    // the dependencies `pv init` asks for (by path here, so rewritten to this checkout).
    let manifest = fs::read_to_string(example.join("Cargo.toml"))
        .expect("example manifest")
        .replace("../../", &format!("{}/", repo().display()));
    fs::write(root.join("Cargo.toml"), manifest).expect("manifest");
    copy(&example.join("src"), &root.join("src"));
    copy(&example.join("README.md"), &root.join("README.md"));

    // 1. pv init, from a subfolder; a second run writes nothing.
    ok(pv(&root.join("src"), &["init"]));
    for f in ["pv.toml", ".gitignore", ".github/workflows/pv.yml"] {
        assert!(root.join(f).is_file(), "pv init did not write {f}");
    }
    let before: Vec<_> = walk(root);
    let again = ok(pv(root, &["init"]));
    assert_eq!(
        walk(root),
        before,
        "a second pv init changed files: {}",
        text(&again)
    );
    // The one-line build.rs of the guide.
    copy(&example.join("build.rs"), &root.join("build.rs"));

    // The example contract init wrote validates, and its example test is bound: PENDING.
    assert!(root.join("contracts/softmax-v1.yaml").is_file());
    ok(pv(root, &["validate"]));
    assert!(root.join("tests/pv_example.rs").is_file());
    assert!(
        statuses(root).iter().all(|(_, st)| st == "PENDING"),
        "{:?}",
        statuses(root)
    );

    // 2. The contract, before the code: the user edits init's example into their claims (and
    // drops its example test, whose falsifier is gone), and scaffolds a second one with
    // `pv new` for later.
    copy(
        &example.join("contracts/softmax-v1.yaml"),
        &root.join("contracts/softmax-v1.yaml"),
    );
    fs::remove_file(root.join("tests/pv_example.rs")).expect("rm");
    ok(pv(root, &["new", "log-sum-exp", "--area", "LSE"]));
    ok(pv(root, &["validate"]));
    // No test binds their falsifiers yet.
    assert_eq!(status_of(root, "M-SOFTMAX-1.1"), "UNIMPLEMENTED");
    assert_eq!(status_of(root, "M-LSE-1.1"), "UNIMPLEMENTED");

    // 3. Bound tests: PENDING, never run.
    copy(
        &example.join("tests/softmax.rs"),
        &root.join("tests/softmax.rs"),
    );
    assert_eq!(status_of(root, "M-SOFTMAX-1.1"), "PENDING");
    assert_eq!(status_of(root, "M-SOFTMAX-1.2"), "PENDING");

    // 4. pv verify: one claim is false on purpose, so it exits 1; the statuses follow the runs.
    let v = pv(root, &["verify"]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert_eq!(status_of(root, "M-SOFTMAX-1.1"), "DISCHARGED");
    assert_eq!(status_of(root, "M-SOFTMAX-1.2"), "FAILING");
    // The evidence went to the local folder, not the committed one.
    assert!(root.join("evidence/local").is_dir());
    assert!(!root.join("evidence/runs").exists());

    // 5a. An edit outside the scope stales nothing.
    fs::write(
        root.join("README.md"),
        "# softmax\n\nNow with more words.\n",
    )
    .expect("write");
    assert_eq!(status_of(root, "M-SOFTMAX-1.1"), "DISCHARGED");

    // 6. A text-only amendment of another claim stales nothing.
    let path = root.join("contracts/softmax-v1.yaml");
    let c = fs::read_to_string(&path).expect("contract");
    let reworded = c.replace(
        "the naive softmax gives no NaN or infinity.",
        "the naive softmax gives neither NaN nor an infinity.",
    );
    assert_ne!(c, reworded);
    fs::write(&path, reworded).expect("write");
    ok(pv(
        root,
        &[
            "amend",
            "softmax-v1",
            "--bump",
            "patch",
            "--summary",
            "Wording",
            "--change",
            "FALSIFY-SOFTMAX-NAIVE-001: wording only",
        ],
    ));
    ok(pv(root, &["validate"]));
    assert_eq!(status_of(root, "M-SOFTMAX-1.1"), "DISCHARGED");

    // 5b. An edit inside the scope stales the evidence of the claims about it.
    let lib = root.join("src/lib.rs");
    let code = fs::read_to_string(&lib).expect("lib");
    fs::write(&lib, format!("{code}\n// a comment is an edit too\n")).expect("write");
    assert_eq!(status_of(root, "M-SOFTMAX-1.1"), "STALE");

    // The CI gate: FAILING stages fail the check.
    let check = pv(root, &["status", "--check"]);
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
}

/// Every file under `root` (relative path, bytes), sorted.
fn walk(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn go(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for e in fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                go(&p, root, out);
            } else {
                let rel = p.strip_prefix(root).expect("under root").to_path_buf();
                out.push((rel, fs::read(&p).expect("read")));
            }
        }
    }
    let mut out = Vec::new();
    go(root, root, &mut out);
    out.sort();
    out
}
