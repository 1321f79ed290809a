//! `pv diff`'s semver suggestion: breaking / additive / text changes, the 0.x rule, the
//! declared bump compared with the needed one, `--check`, and hostile inputs.

use std::path::Path;
use std::process::Output;

mod common;
use common::{pv, valid_contract};

/// `text` with its version moved to `version` and a matching amendment entry appended.
fn bumped(text: &str, version: &str) -> String {
    let old = text
        .lines()
        .find_map(|l| l.strip_prefix("version: "))
        .expect("version line")
        .to_string();
    format!(
        "{}  - version: {version}\n    date: 2026-11-23\n    summary: Bumped.\n",
        text.replacen(
            &format!("version: {old}\n"),
            &format!("version: {version}\n"),
            1
        )
    )
}

fn diff(dir: &Path, old: &str, new: &str, extra: &[&str]) -> Output {
    std::fs::write(dir.join("old.yaml"), old).expect("write");
    std::fs::write(dir.join("new.yaml"), new).expect("write");
    let mut args = vec!["diff"];
    args.extend_from_slice(extra);
    args.extend(["old.yaml", "new.yaml"]);
    pv(&args, dir)
}

#[test]
fn breaking_additive_and_text_changes_and_the_declared_bump() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let old = valid_contract();
    assert!(old.contains("version: 0.2.0\n"), "the fixture is 0.x");

    // Text only, patch bump: enough.
    let new = bumped(
        &old.replace("claim: It works.", "claim: It really works."),
        "0.2.1",
    );
    let o = diff(d, &old, &new, &["--check"]);
    assert_eq!(o.status.code(), Some(0));
    insta::assert_snapshot!("semver_text_patch", String::from_utf8_lossy(&o.stdout));

    // A claim whose wording changes a bound is not a text change: (0,1] -> [0,1] weakens the
    // range, which at 0.x needs a minor bump.
    let ranged = old.replace("claim: It works.", "claim: Every output is in (0,1].");
    let weakened = bumped(
        &ranged.replace(
            "claim: Every output is in (0,1].",
            "claim: Every output is in [0,1].",
        ),
        "0.2.1",
    );
    let o = diff(d, &ranged, &weakened, &["--check", "--format", "json"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["semver"]["needed"], "minor", "{v}");
    // ... while rewording around the same numbers stays a patch.
    let reworded = bumped(
        &ranged.replace(
            "claim: Every output is in (0,1].",
            "claim: Every single output lies in (0,1].",
        ),
        "0.2.1",
    );
    let o = diff(d, &ranged, &reworded, &["--check"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // A loosened threshold and a retired falsifier at 0.x need a minor bump; patch is too small.
    let new = bumped(
        &old.replace("threshold: 100.5", "threshold: 90").replace(
            "    if_fails: Profile it.\n",
            "    if_fails: Profile it.\n    retired: too slow to run\n",
        ),
        "0.2.1",
    );
    let o = diff(d, &old, &new, &[]);
    assert_eq!(o.status.code(), Some(0), "without --check it is a report");
    insta::assert_snapshot!(
        "semver_breaking_too_small",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = diff(d, &old, &new, &["--check"]);
    assert_eq!(o.status.code(), Some(1));
    let o = diff(d, &old, &new, &["--check", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["semver"]["needed"], "minor");
    assert_eq!(v["semver"]["declared"], "patch");
    assert_eq!(v["semver"]["sufficient"], false);
    let first = &v["semver"]["reasons"][0];
    assert_eq!(first["class"], "breaking");

    // A tightened threshold is breaking too, whatever the direction of the operator.
    let new = bumped(&old.replace("threshold: 100.5", "threshold: 120"), "0.3.0");
    let o = diff(d, &old, &new, &["--check"]);
    assert_eq!(o.status.code(), Some(0));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("breaking  metric FALSIFY-DEMO-FAST-001/tokens_per_second: threshold tightened: threshold: >= 100.5 -> >= 120"), "{text}");
    assert!(
        text.contains("declared bump: minor (0.2.0 -> 0.3.0): ok"),
        "{text}"
    );

    // From 1.0.0 on: an added stage is minor, a removed falsifier major.
    let one = bumped(&old, "1.0.0");
    let added = bumped(
        &one.replace(
            "stages:\n",
            "stages:\n  - id: M-DEMO-0.9\n    title: Zero\n    falsifiers: [FALSIFY-DEMO-WORKS-001]\n",
        ),
        "1.0.1",
    );
    let o = diff(d, &one, &added, &["--check"]);
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!(
        "semver_1x_additive_patch",
        String::from_utf8_lossy(&o.stdout)
    );
    let start = one
        .find("  - id: FALSIFY-DEMO-FAST-001")
        .expect("falsifier");
    let end = one
        .find("equations:")
        .unwrap_or_else(|| one.find("amendment_history:").expect("history"));
    let mut removed = one.clone();
    removed.replace_range(start..end, "");
    let removed = bumped(
        &removed.replace("[FALSIFY-DEMO-FAST-001]", "[FALSIFY-DEMO-WORKS-001]"),
        "1.1.0",
    );
    let o = diff(d, &one, &removed, &["--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["semver"]["needed"], "major", "{v}");
    assert_eq!(v["semver"]["declared"], "minor");

    // No change at all: nothing needed, nothing to flag.
    let o = diff(d, &old, &old, &["--check"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("suggested bump: none"));
}

#[test]
fn hostile_inputs_are_errors_not_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let old = valid_contract();
    for bad in [
        "\u{0}\u{ff}\u{fe} not yaml: [".to_string(),
        "contract: demo-v1\nversion: banana\n".to_string(),
        "- a\n- b\n".to_string(),
        String::new(),
    ] {
        let o = diff(d, &old, &bad, &["--check"]);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{bad:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("is not a valid contract") || err.starts_with("error:"),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    // A version too large for semver parses as a contract (the format only checks its shape)
    // but has no declared bump: flagged, not a crash.
    let huge = old.replace("0.2.0", "99999999999999999999.0.0");
    let o = diff(d, &old, &huge, &["--check"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("declared bump: none"));
    // A directory and a missing revision are input errors too.
    let o = pv(&["diff", ".", "new.yaml"], d);
    assert_eq!(o.status.code(), Some(2));
    let o = pv(&["diff", "no-such-rev-xyz:old.yaml", "new.yaml"], d);
    assert_eq!(o.status.code(), Some(2));
}
