//! `pv init` end to end (a single crate, a workspace, re-runs, dry runs, failures) and the
//! usage of `pv verify --partition`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::pv;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, text).expect("write");
}

/// A crate as `cargo new --lib` makes it, with an empty folder `src/deep`.
fn crate_project(name: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    write(
        d.path(),
        "Cargo.toml",
        &format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n"),
    );
    write(
        d.path(),
        "src/lib.rs",
        "pub fn add(a: u64, b: u64) -> u64 {\n    a + b\n}\n",
    );
    fs::create_dir_all(d.path().join("src/deep")).expect("mkdir");
    d
}

/// Every file under `root` (relative path -> contents), folders included as empty entries.
fn tree(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
        for e in fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("entry").path();
            let rel = p.strip_prefix(root).expect("under root").to_path_buf();
            if p.is_dir() {
                out.insert(rel, None);
                walk(root, &p, out);
            } else {
                out.insert(rel, Some(fs::read(&p).expect("read")));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

const FILES: [&str; 6] = [
    "pv.toml",
    "contracts/demo-lib-v1.yaml",
    "contracts/contract.schema.json",
    "tests/pv_example.rs",
    ".gitignore",
    ".github/workflows/pv.yml",
];

#[test]
fn init_from_a_subfolder_writes_a_valid_project() {
    let p = crate_project("demo_lib");
    let r = p.path();
    let o = pv(&["init"], &r.join("src/deep"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    for f in FILES {
        assert!(r.join(f).is_file(), "{f} not written\n{out}");
        assert!(out.contains(&format!("create  {f}")), "{f}\n{out}");
    }
    // The user's files are untouched.
    assert_eq!(
        fs::read_to_string(r.join("Cargo.toml")).expect("read"),
        "[package]\nname = \"demo_lib\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n"
    );
    // Next steps: the dev-dependencies to add by hand, then validate, test, status.
    for want in [
        "next steps:",
        "[dev-dependencies]",
        "contract-macros = \"0.1\"",
        "pv-evidence = \"0.1\"",
        "pv validate",
        "cargo test",
        "pv status",
    ] {
        assert!(out.contains(want), "{want}\n{out}");
    }

    // pv.toml loads and scopes the crate.
    let project = pv_project::Project::load(&r.join("pv.toml")).expect("pv.toml loads");
    assert_eq!(project.config.scope.default, ["src/**", "Cargo.toml"]);
    assert_eq!(project.config.evidence.local, "evidence/local");
    let pv_toml = fs::read_to_string(r.join("pv.toml")).expect("read");
    for want in [
        "# packages = [\"demo_lib\"]",
        "# [fixtures.",
        "# [devices.",
        "# probe = ",
        "# missing = ",
        "# env = ",
        "# timeout_s = ",
    ] {
        assert!(pv_toml.contains(want), "{want}\n{pv_toml}");
    }

    // The contract validates in the project, and the test binds its falsifier.
    let v = pv(&["validate", "--no-since"], r);
    assert_eq!(v.status.code(), Some(0), "{}", stderr(&v));
    assert!(
        stderr(&v).contains("ok: 1 contract, 1 stage, 1 falsifier"),
        "{}",
        stderr(&v)
    );
    let contract = fs::read_to_string(r.join("contracts/demo-lib-v1.yaml")).expect("read");
    assert!(
        contract.contains("- id: FALSIFY-EXAMPLE-FIRST-001"),
        "{contract}"
    );
    assert!(
        contract.contains("name: max_abs_error\n        op: \"<=\"\n        threshold: 1.0e-6"),
        "{contract}"
    );
    let bindings = pv_evidence::bindings::scan_package(r).expect("scan");
    assert_eq!(bindings.len(), 1);
    assert_eq!(bindings[0].id, "FALSIFY-EXAMPLE-FIRST-001");
    let test = fs::read_to_string(r.join("tests/pv_example.rs")).expect("read");
    assert!(
        test.contains("#[contract_macros::falsifier(\"FALSIFY-EXAMPLE-FIRST-001\")]"),
        "{test}"
    );
    assert!(
        test.contains("(ctx: &mut pv_evidence::Ctx) -> pv_evidence::FalsifierResult"),
        "{test}"
    );
    assert!(test.contains("ctx.metric(\"max_abs_error\", "), "{test}");

    // .gitignore ignores the local evidence; the workflow shards and checks.
    let gi = fs::read_to_string(r.join(".gitignore")).expect("read");
    assert_eq!(
        gi.lines().filter(|l| *l == "/evidence/local/").count(),
        1,
        "{gi}"
    );
    let wf = fs::read_to_string(r.join(".github/workflows/pv.yml")).expect("read");
    for want in [
        "dtolnay/rust-toolchain@stable",
        "cargo install --locked pv",
        "--path",
        "pv validate",
        "pv verify --no-validate --partition ${{ matrix.shard }}/4",
        "shard: [1, 2, 3, 4]",
        "actions/upload-artifact",
        "actions/download-artifact",
        "pv status --check",
    ] {
        assert!(wf.contains(want), "{want}\n{wf}");
    }
    assert!(!wf.contains('\t'));

    // pv status sees the bound falsifier (no evidence yet).
    let s = pv(&["status", "--format", "json"], r);
    assert_eq!(s.status.code(), Some(0), "{}", stderr(&s));
}

#[test]
fn init_twice_writes_nothing_new_and_appends_to_gitignore_once() {
    let p = crate_project("demo_lib");
    let r = p.path();
    write(r, ".gitignore", "/target"); // no final newline
    let o = pv(&["init"], r);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("append  .gitignore"), "{}", stdout(&o));
    let gi = fs::read_to_string(r.join(".gitignore")).expect("read");
    assert!(gi.starts_with("/target\n"), "{gi:?}");
    assert!(gi.ends_with("\n/evidence/local/\n"), "{gi:?}");

    let before = tree(r);
    let again = pv(&["init"], r);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(tree(r), before, "a second run changes nothing");
    let out = stdout(&again);
    assert!(
        !out.contains("create ") && !out.contains("append "),
        "{out}"
    );
    assert_eq!(out.matches("exists, left as is").count(), 5, "{out}");
    assert!(
        out.contains("skip    .gitignore  (already ignores /evidence/local/)"),
        "{out}"
    );

    let j = pv(&["init", "--json"], r);
    assert_eq!(j.status.code(), Some(0), "{}", stderr(&j));
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).expect("json");
    assert_eq!(v["written"], serde_json::json!([]));
    assert_eq!(v["skipped"].as_array().map(Vec::len), Some(6));
    assert_eq!(tree(r), before);
}

#[test]
fn an_edited_file_is_left_as_is() {
    let p = crate_project("demo_lib");
    let r = p.path();
    write(
        r,
        "pv.toml",
        "[evidence]\nlocal = \"ev/mine\"\n[scope]\ndefault = [\"src/**\"]\n",
    );
    let o = pv(&["init", "--json"], r);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        fs::read_to_string(r.join("pv.toml")).expect("read"),
        "[evidence]\nlocal = \"ev/mine\"\n[scope]\ndefault = [\"src/**\"]\n"
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["skipped"], serde_json::json!(["pv.toml"]));
    // The rest follows the existing pv.toml: its local evidence folder is ignored and uploaded.
    let gi = fs::read_to_string(r.join(".gitignore")).expect("read");
    assert!(gi.contains("/ev/mine/\n"), "{gi}");
    let wf = fs::read_to_string(r.join(".github/workflows/pv.yml")).expect("read");
    assert!(wf.contains("path: ev/mine/"), "{wf}");
    let v = pv(&["validate", "--no-since"], r);
    assert_eq!(v.status.code(), Some(0), "{}", stderr(&v));
}

#[test]
fn dry_run_prints_everything_and_writes_nothing() {
    let p = crate_project("demo_lib");
    let r = p.path();
    let before = tree(r);
    let o = pv(&["init", "--dry-run"], &r.join("src"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(tree(r), before, "--dry-run wrote something");
    let out = stdout(&o);
    for f in FILES {
        assert!(out.contains(&format!("=== create {f} ===")), "{f}\n{out}");
    }
    for want in [
        "dirs = [\"contracts\"]",
        "contract: demo-lib-v1",
        "#[contract_macros::falsifier(\"FALSIFY-EXAMPLE-FIRST-001\")]",
        "/evidence/local/",
        "pv status --check",
        "=== add by hand to Cargo.toml (pv init does not edit it) ===\n[dev-dependencies]\ncontract-macros = \"0.1\"\npv-evidence = \"0.1\"\n",
    ] {
        assert!(out.contains(want), "{want}\n{out}");
    }

    let j = pv(&["init", "--dry-run", "--json"], r);
    assert_eq!(j.status.code(), Some(0), "{}", stderr(&j));
    assert_eq!(tree(r), before);
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).expect("json");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["root"], r.display().to_string());
    let written: Vec<&str> = v["written"]
        .as_array()
        .expect("written")
        .iter()
        .filter_map(|x| x.as_str())
        .collect();
    assert_eq!(written, FILES);
    assert_eq!(v["skipped"], serde_json::json!([]));
    // dev-dependencies, the recommended pv-build check, validate, cargo test, status.
    assert_eq!(v["next_steps"].as_array().map(Vec::len), Some(5));
    assert!(
        v["next_steps"][1]
            .as_str()
            .is_some_and(|s| s.contains("pv-build = \"0.1\"")),
        "{v}"
    );
    assert_eq!(
        v["dev_dependencies"]["lines"],
        serde_json::json!([
            "[dev-dependencies]",
            "contract-macros = \"0.1\"",
            "pv-evidence = \"0.1\""
        ])
    );
    assert!(v["files"][0]["contents"]
        .as_str()
        .is_some_and(|c| c.contains("[scope]")));
}

#[test]
fn without_a_cargo_project_it_says_to_run_cargo_init() {
    let d = tempfile::tempdir().expect("tempdir");
    let o = pv(&["init"], d.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains(&d.path().display().to_string()), "{e}");
    assert!(
        e.contains("no Cargo.toml") && e.contains("cargo init"),
        "{e}"
    );
    assert_eq!(tree(d.path()), BTreeMap::new());
}

#[test]
fn a_read_only_folder_is_an_error_and_leaves_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let p = crate_project("demo_lib");
    let r = p.path();
    let before = tree(r);
    fs::set_permissions(r, fs::Permissions::from_mode(0o555)).expect("chmod");
    // As root the folder stays writable: then there is nothing to check.
    let probe = r.join("probe");
    if fs::write(&probe, "x").is_ok() {
        fs::remove_file(&probe).expect("rm");
        fs::set_permissions(r, fs::Permissions::from_mode(0o755)).expect("chmod");
        eprintln!("skipped: running as root, a 0o555 folder is writable");
        return;
    }
    let o = pv(&["init"], r);
    fs::set_permissions(r, fs::Permissions::from_mode(0o755)).expect("chmod");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("cannot write pv.toml") && e.contains("ermission denied"),
        "{e}"
    );
    assert_eq!(tree(r), before, "nothing was written");
}

#[test]
fn a_failure_on_the_last_file_leaves_no_file_behind() {
    // `.github` is a file, so `.github/workflows/pv.yml` cannot be written (even as root): the
    // files staged before it must all go away, and the folders made for them.
    let p = crate_project("demo_lib");
    let r = p.path();
    write(r, ".github", "not a folder\n");
    write(r, ".gitignore", "/target\n");
    let before = tree(r);
    let o = pv(&["init"], r);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("cannot write .github/workflows/pv.yml"), "{e}");
    assert!(e.contains("nothing was written"), "{e}");
    assert_eq!(tree(r), before, "no partial or temporary file is left");
}

#[test]
fn a_workspace_gets_its_members_scoped_and_tests_in_the_first_member() {
    let d = tempfile::tempdir().expect("tempdir");
    let r = d.path();
    write(
        r,
        "Cargo.toml",
        "[workspace]\nresolver = \"2\"\nmembers = [\"crates/*\", \"app\"]\n",
    );
    write(
        r,
        "crates/alpha/Cargo.toml",
        "[package]\nname = \"alpha\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    write(r, "crates/alpha/src/lib.rs", "pub fn a() {}\n");
    write(
        r,
        "crates/beta/Cargo.toml",
        "[package]\nname = \"beta\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[dev-dependencies]\npv-evidence = \"0.1\"\n",
    );
    write(r, "crates/beta/src/lib.rs", "pub fn b() {}\n");
    write(
        r,
        "app/Cargo.toml",
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    write(r, "app/src/main.rs", "fn main() {}\n");

    let o = pv(&["init", "--json"], &r.join("crates/beta/src"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["root"], r.display().to_string());
    let written: Vec<&str> = v["written"]
        .as_array()
        .expect("written")
        .iter()
        .filter_map(|x| x.as_str())
        .collect();
    assert_eq!(
        written,
        [
            "pv.toml",
            "contracts/alpha-v1.yaml",
            "contracts/contract.schema.json",
            "crates/alpha/tests/pv_example.rs",
            ".gitignore",
            ".github/workflows/pv.yml",
        ]
    );
    assert!(r.join("crates/alpha/tests/pv_example.rs").is_file());
    let contract = fs::read_to_string(r.join("contracts/alpha-v1.yaml")).expect("read");
    assert!(
        contract.contains("(crates/alpha/tests/pv_example.rs)"),
        "{contract}"
    );
    assert_eq!(v["dev_dependencies"]["manifest"], "crates/alpha/Cargo.toml");
    let steps = v["next_steps"].to_string();
    assert!(steps.contains("cargo test -p alpha"), "{steps}");

    let project = pv_project::Project::load(&r.join("pv.toml")).expect("loads");
    assert_eq!(
        project.config.scope.default,
        [
            "crates/alpha/src/**",
            "crates/alpha/Cargo.toml",
            "crates/beta/src/**",
            "crates/beta/Cargo.toml",
            "app/src/**",
            "app/Cargo.toml",
            "Cargo.toml",
        ]
    );
    let val = pv(&["validate", "--no-since"], r);
    assert_eq!(val.status.code(), Some(0), "{}", stderr(&val));
}

#[test]
fn help_explains_what_is_written() {
    let d = tempfile::tempdir().expect("tempdir");
    let o = pv(&["init", "--help"], d.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let h = stdout(&o);
    for want in [
        "--dry-run",
        "--json",
        "pv.toml",
        "tests/pv_example.rs",
        ".github/workflows/pv.yml",
        "[dev-dependencies]",
        "left as is",
    ] {
        assert!(h.contains(want), "{want}\n{h}");
    }
}

#[test]
fn a_workspace_without_members_is_an_error() {
    let d = tempfile::tempdir().expect("tempdir");
    write(d.path(), "Cargo.toml", "[workspace]\nmembers = []\n");
    let o = pv(&["init"], d.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cargo new"), "{}", stderr(&o));
}

#[test]
fn verify_partition_usage_errors_name_the_form() {
    let p = crate_project("demo_lib");
    for bad in ["3/2", "0/0", "0/3", "a/b", "1/0"] {
        let o = pv(&["verify", "--partition", bad], p.path());
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("--partition") && e.contains("expected K/N"),
            "{bad}: {e}"
        );
    }
    let o = pv(&["verify", "--partition", "1/2", "--filter", "x"], p.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));
}

#[test]
fn verify_a_shard_without_falsifiers_runs_nothing() {
    let p = crate_project("demo_lib");
    let r = p.path();
    let o = pv(&["init"], r);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The dev-dependency makes the crate a package of bound tests; cargo never runs here.
    let manifest = fs::read_to_string(r.join("Cargo.toml")).expect("read");
    write(
        r,
        "Cargo.toml",
        &format!(
            "{manifest}\n[dev-dependencies]\ncontract-macros = \"0.1\"\npv-evidence = \"0.1\"\n"
        ),
    );
    let n = 3;
    let home = pv::verify::shard_of("FALSIFY-EXAMPLE-FIRST-001", n);
    let empty = (1..=n).find(|k| *k != home).expect("another shard");
    let o = pv(&["verify", "--partition", &format!("{empty}/{n}")], r);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "shard {empty}/{n} holds no falsifier (of 1 bound); nothing to run"
        )),
        "{}",
        stderr(&o)
    );
    assert!(
        !r.join("evidence").exists(),
        "an empty shard makes no run folder"
    );
}
