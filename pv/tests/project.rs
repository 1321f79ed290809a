//! The project file, `pv.toml`, through the `pv` binary: discovery from a subfolder, the project
//! rules PV060 (undeclared gates) and PV061 (scopes), and bad project files.

use std::fs;
use std::path::Path;
use std::process::Output;

mod common;
use common::{pv, valid_contract};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, text).expect("write");
}

/// A one-crate project: Cargo.toml, src/lib.rs, the valid demo contract (its GPU falsifier's
/// gate names device `cuda`) and `pv_toml`.
fn project(pv_toml: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    let r = d.path();
    write(r, "Cargo.toml", "[package]\nname = \"demo\"\n");
    write(r, "src/lib.rs", "pub fn f() {}\n");
    write(r, "contracts/demo-v1.yaml", &valid_contract());
    write(r, "pv.toml", pv_toml);
    d
}

const DECLARED: &str = "[devices.cuda]\nprobe = [\"nvidia-smi\", \"-L\"]\nmissing = \"no GPU\"\n";

#[test]
fn a_project_found_from_a_subfolder_validates() {
    let p = project(DECLARED);
    let sub = p.path().join("src");
    let o = pv(&["validate", "--no-since"], &sub);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "ok: 1 contract, 2 stages, 2 falsifiers\n");
}

#[test]
fn pv060_an_undeclared_device_is_a_located_error() {
    let p = project("[contracts]\ndirs = [\"contracts\"]\n");
    let o = pv(&["validate", "--no-since"], p.path());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("error[PV060]"), "{e}");
    assert!(
        e.contains("names device `cuda`, which") && e.contains("pv.toml does not declare"),
        "{e}"
    );
    // Located at the gate entry, with the fix.
    assert!(e.contains("demo-v1.yaml:34:"), "{e}");
    assert!(
        e.contains("help: declare it in pv.toml: [devices.cuda]"),
        "{e}"
    );
    // The same contract in a project that declares it is valid.
    write(p.path(), "pv.toml", DECLARED);
    let o = pv(&["validate", "--no-since"], p.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn pv061_scopes_must_select_files_and_name_known_ids() {
    let p = project(&format!(
        "{DECLARED}[scope]\ndefault = [\"src/**\", \"scr/**\"]\n[scope.contract]\n\"nope-v1\" = [\"src/lib.rs\"]\n[scope.falsifier]\n\"FALSIFY-DEMO-NOPE-001\" = [\"src/lib.rs\"]\n"
    ));
    let o = pv(&["validate", "--no-since"], p.path());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("pattern \"scr/**\" selects no file"), "{e}");
    assert!(e.contains("[scope.contract] names `nope-v1`"), "{e}");
    assert!(
        e.contains("[scope.falsifier] names `FALSIFY-DEMO-NOPE-001`"),
        "{e}"
    );
    assert_eq!(e.matches("error[PV061]").count(), 3, "{e}");
}

#[test]
fn bad_project_files_are_clear_errors_naming_the_file() {
    for (text, want) in [
        ("[contracts]\ndir = [\"c\"]\n", "unknown field `dir`"),
        ("[contracts\n", "TOML parse error"),
        ("[scope]\ndefault = []\n", "empty scope"),
        (
            "[scope]\ndefault = [\"../elsewhere/**\"]\n",
            "leaves the project",
        ),
    ] {
        let p = project(text);
        for cmd in [&["validate", "--no-since"][..], &["status"][..]] {
            let o = pv(cmd, p.path());
            assert_eq!(o.status.code(), Some(2), "{cmd:?} {text:?}: {}", stderr(&o));
            let e = stderr(&o);
            assert!(
                e.contains("pv.toml") && e.contains(want),
                "{cmd:?} {text:?}: {e}"
            );
            assert!(!e.contains("panicked"), "{e}");
        }
    }
    // --config names a missing file.
    let p = project(DECLARED);
    let o = pv(&["status", "--config", "nowhere.toml"], p.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("reading nowhere.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn status_in_a_project_without_tests_shows_unimplemented() {
    // No package depends on contract-macros: no falsifier has a bound test.
    let p = project(DECLARED);
    let o = pv(&["status", "--format", "json"], p.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let text = j.to_string();
    assert!(text.contains("UNIMPLEMENTED"), "{text}");
}
