//! Every rule has a failing fixture under tests/fixtures/rules/<CODE>-<name>/ and a snapshot of
//! its rendered diagnostics. The fixture's name says which code it must produce.

use std::path::{Path, PathBuf};

use pv::validate::{validate, Since};

fn fixtures() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("tests/fixtures/rules")
        .expect("fixtures directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn name(dir: &Path) -> String {
    dir.file_name()
        .and_then(|n| n.to_str())
        .expect("utf-8 fixture name")
        .to_string()
}

#[test]
fn each_fixture_produces_its_code_and_snapshot() {
    let dirs = fixtures();
    assert!(dirs.len() > 30, "fixtures missing: {dirs:?}");
    for dir in dirs {
        let n = name(&dir);
        let report = validate(std::slice::from_ref(&dir), &Since::Off);
        let text = pv::render::to_string(&report.diagnostics);
        if n == "valid" {
            assert!(report.diagnostics.is_empty(), "valid fixture: {text}");
            assert_eq!(report.exit_code(), 0);
            continue;
        }
        let code = &n[..5];
        assert!(
            report.diagnostics.iter().any(|d| d.code == code),
            "{n}: expected a {code} diagnostic, got:\n{text}"
        );
        let warning_only = pv_contract::rules::RULES
            .iter()
            .any(|r| r.code == code && r.severity == pv_contract::Severity::Warning);
        let expected_exit = if warning_only { 0 } else { 1 };
        assert_eq!(report.exit_code(), expected_exit, "{n}:\n{text}");
        insta::assert_snapshot!(n.clone(), text);
    }
}

#[test]
fn every_rule_has_a_fixture_or_a_dedicated_test() {
    let names: Vec<String> = fixtures().iter().map(|d| name(d)).collect();
    // PV006 (paths) is covered in tests/cli.rs, PV040-PV042 (git history) in tests/since.rs,
    // PV060-PV061 (the project file) in tests/project.rs.
    let elsewhere = ["PV006", "PV040", "PV041", "PV042", "PV060", "PV061"];
    for rule in pv_contract::rules::RULES {
        if elsewhere.contains(&rule.code) {
            continue;
        }
        assert!(
            names.iter().any(|n| n.starts_with(rule.code)),
            "rule {} ({}) has no failing fixture",
            rule.code,
            rule.summary
        );
    }
}

#[test]
fn json_output_carries_the_same_content() {
    let dir = PathBuf::from("tests/fixtures/rules/PV013-stage-falsifier");
    let report = validate(&[dir], &Since::Off);
    let d = report
        .diagnostics
        .iter()
        .find(|d| d.code == "PV013")
        .expect("PV013");
    let j = pv::render::diagnostic_json(d);
    assert_eq!(j["code"], "PV013");
    assert_eq!(j["severity"], "error");
    assert_eq!(j["line"], 19);
    assert_eq!(j["col"], 18);
    assert_eq!(j["message"], d.message.as_str());
    assert_eq!(j["primary"]["message"], "no such falsifier");
    assert_eq!(j["help"], "did you mean `FALSIFY-DEMO-FAST-001`?");
}
