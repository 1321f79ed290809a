//! The tamper suite: each test forges or damages evidence the way a person could, and checks
//! that the forgery is caught (not the code) with a clear message and no panic, in `pv status`,
//! `pv audit` and `pv evidence verify` (docs/status.md, rules 16-18; docs/evidence.md, "Trust
//! model").
//!
//! The evidence is real: written by the falsifier runtime into a mini workspace
//! (`common::mini`), each run with its manifest; signatures are made with keys generated here.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::mini::Mini;
use pv::status::{StageStatus, StatusReport};
use pv::status_load::{status_for, Paths};
use pv_evidence::manifest::{envelope_for, read_manifest, sha256_hex, write_envelope};

/// What the three commands said.
struct Views {
    status: (i32, String),
    audit: (i32, String),
    verify: (i32, String),
}

fn pv_out(root: &Path, args: &[&str]) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_pv"))
        .args(args)
        .current_dir(root)
        .env("NO_COLOR", "1")
        .env("PV_CACHE_DIR", root.join(".cache"))
        .output()
        .expect("run pv");
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(!text.contains("panicked"), "pv {args:?} panicked:\n{text}");
    (o.status.code().unwrap_or(-1), text)
}

fn views(m: &Mini) -> Views {
    Views {
        status: pv_out(m.root(), &["status", "--check"]),
        audit: pv_out(m.root(), &["audit"]),
        verify: pv_out(m.root(), &["evidence", "verify", "--no-git"]),
    }
}

impl Views {
    /// Every view names the problem with `needle`, the check and the auditor's command fail.
    fn all_say(&self, needle: &str) {
        for (what, (_, text)) in [
            ("pv status", &self.status),
            ("pv audit", &self.audit),
            ("pv evidence verify", &self.verify),
        ] {
            assert!(
                text.contains(needle),
                "{what} does not say {needle:?}:\n{text}"
            );
        }
        assert_eq!(self.verify.0, 1, "pv evidence verify:\n{}", self.verify.1);
    }
}

fn report(m: &Mini) -> StatusReport {
    let mut p = Paths::in_workspace(m.root());
    p.cache = false;
    status_for(&p).expect("status derives").1
}

fn manifest_of(m: &Mini) -> PathBuf {
    let files = pv_evidence::store::list_evidence_files(&m.runs()).unwrap();
    assert_eq!(files.manifests.len(), 1, "{:?}", files.manifests);
    files.manifests[0].clone()
}

/// Edits a record's JSON in place.
fn edit(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    f(&mut v);
    fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// What a forger without a key does after editing records: rewrite the manifest's digests to
/// match (keeping whatever signatures it had, which then no longer verify).
fn reseal(manifest: &Path) {
    let m = read_manifest(manifest).unwrap();
    let dir = manifest.parent().unwrap();
    let mut statement = m.statement.clone();
    for s in &mut statement.subject {
        let bytes = fs::read(dir.join(&s.name)).unwrap();
        s.digest.insert("sha256".into(), sha256_hex(&bytes));
    }
    statement.predicate.pv = Some(m.run.clone());
    write_envelope(
        manifest,
        &envelope_for(&statement, m.envelope.signatures.clone()),
    )
    .unwrap();
}

/// A passing algorithm-tier run and a failing one after it: M-MINI-1.1 is FAILING.
fn failing_mini() -> (Mini, PathBuf) {
    let m = Mini::new();
    m.run("FALSIFY-MINI-A-001", 0.0);
    let failing = m.run("FALSIFY-MINI-A-001", 3.0);
    assert_eq!(m.status("M-MINI-1.1"), StageStatus::Failing);
    (m, failing)
}

#[test]
fn a_flipped_outcome_is_caught_before_and_after_the_manifest_is_resealed() {
    let (m, failing) = failing_mini();
    edit(&failing, |v| {
        v["outcome"] = "pass".into();
        v["reason"] = serde_json::Value::Null;
    });
    // The record no longer has the bytes its run listed.
    let r = report(&m);
    assert_eq!(r.stage("M-MINI-1.1").unwrap().status, StageStatus::Failing);
    views(&m).all_say("changed after its run wrote it");
    // Resealed (digests rewritten), the verdict is recomputed from the metrics.
    reseal(&manifest_of(&m));
    let r = report(&m);
    assert_eq!(r.stage("M-MINI-1.1").unwrap().status, StageStatus::Failing);
    let v = views(&m);
    v.all_say("says pass but its metrics give fail");
    assert_eq!(v.status.0, 1);
}

#[test]
fn an_edited_metric_value_is_caught() {
    let (m, failing) = failing_mini();
    edit(&failing, |v| {
        v["metrics"][0]["value"] = 0.0.into();
    });
    views(&m).all_say("changed after its run wrote it");
    reseal(&manifest_of(&m));
    // Value 0 with `passed: false` and outcome fail: the record contradicts itself.
    views(&m).all_say("marks `mismatches` failed but 0 == 0 is true");
    assert_eq!(
        report(&m).stage("M-MINI-1.1").unwrap().status,
        StageStatus::Failing
    );
}

#[test]
fn a_removed_metric_is_caught() {
    let (m, failing) = failing_mini();
    edit(&failing, |v| {
        v["outcome"] = "pass".into();
        v["metrics"] = serde_json::json!([]);
    });
    reseal(&manifest_of(&m));
    views(&m).all_say("lacks metric `mismatches`, which FALSIFY-MINI-A-001 requires");
    assert_eq!(
        report(&m).stage("M-MINI-1.1").unwrap().status,
        StageStatus::Failing
    );
}

#[test]
fn a_future_timestamp_is_caught() {
    let (m, failing) = failing_mini();
    let pass = m.run("FALSIFY-MINI-A-001", 0.0);
    fs::remove_file(&failing).unwrap();
    // The forger dates a pass into the future to outrank later failures, and reseals.
    edit(&pass, |v| {
        v["timestamp"] = "2099-01-01T00:00:00.000000Z".into()
    });
    let manifest = manifest_of(&m);
    reseal_dropping_missing(&manifest, false);
    views(&m).all_say("in the future");
}

/// Reseals after records were deleted on purpose: the forger also drops them from the list,
/// keeping the old signatures (which then no longer verify) or dropping them.
fn reseal_dropping_missing(manifest: &Path, keep_signatures: bool) {
    let m = read_manifest(manifest).unwrap();
    let dir = manifest.parent().unwrap();
    let mut statement = m.statement.clone();
    let mut run = m.run.clone();
    statement.subject.retain(|s| dir.join(&s.name).exists());
    run.records.retain(|r| dir.join(&r.file).exists());
    statement.predicate.pv = Some(run);
    let signatures = if keep_signatures {
        m.envelope.signatures.clone()
    } else {
        Vec::new()
    };
    write_envelope(manifest, &envelope_for(&statement, signatures)).unwrap();
    reseal(manifest);
}

#[test]
fn a_record_copied_onto_another_falsifiers_id_is_caught() {
    let m = Mini::new();
    let a = m.run("FALSIFY-MINI-A-001", 0.0);
    // The algorithm-tier pass, copied as a pass of the hardware-tier falsifier.
    let copy = m
        .runs()
        .join("20261208T000000.000000Z_FALSIFY-MINI-GPU-001_1-0-0000abcd.json");
    fs::copy(&a, &copy).unwrap();
    edit(&copy, |v| v["falsifier"] = "FALSIFY-MINI-GPU-001".into());
    let v = views(&m);
    v.all_say("LOOSE");
    assert_ne!(
        report(&m).stage("M-MINI-1.2").unwrap().status,
        StageStatus::Discharged
    );
    // Listed by a resealed manifest, the copy still names the wrong test and metric.
    let manifest = manifest_of(&m);
    let mut mf = read_manifest(&manifest).unwrap();
    let bytes = fs::read(&copy).unwrap();
    mf.statement
        .subject
        .push(pv_evidence::manifest::ResourceDescriptor {
            name: copy.file_name().unwrap().to_string_lossy().into_owned(),
            digest: [("sha256".to_string(), sha256_hex(&bytes))].into(),
        });
    let mut summary = mf.run.records[0].clone();
    summary.file = mf.statement.subject.last().unwrap().name.clone();
    mf.run.records.push(summary);
    mf.statement.predicate.pv = Some(mf.run.clone());
    write_envelope(&manifest, &envelope_for(&mf.statement, Vec::new())).unwrap();
    views(&m)
        .all_say("written by test `mini::a`, but the test bound to FALSIFY-MINI-GPU-001 is `gpu`");
}

#[test]
fn a_record_naming_an_unbound_test_is_caught() {
    let (m, failing) = failing_mini();
    edit(&failing, |v| {
        v["test"]["name"] = "nothing::ran".into();
    });
    reseal(&manifest_of(&m));
    views(&m).all_say("written by test `nothing::ran`");
}

#[test]
fn a_loose_hand_written_record_counts_for_nothing() {
    let (m, failing) = failing_mini();
    // An honest-looking pass, consistent in itself, that no run wrote.
    let forged = m
        .runs()
        .join("20261208T000000.000000Z_FALSIFY-MINI-A-001_1-0-0000abcd.json");
    fs::copy(&failing, &forged).unwrap();
    edit(&forged, |v| {
        v["outcome"] = "pass".into();
        v["reason"] = serde_json::Value::Null;
        v["metrics"][0]["value"] = 0.0.into();
        v["metrics"][0]["passed"] = true.into();
        v["timestamp"] =
            pv_evidence::timefmt::format_rfc3339_utc(std::time::SystemTime::now()).into();
    });
    let r = report(&m);
    assert_eq!(r.loose.len(), 1);
    assert_eq!(r.invalid.len(), 0, "{:?}", r.invalid);
    assert_eq!(r.stage("M-MINI-1.1").unwrap().status, StageStatus::Failing);
    views(&m).all_say("LOOSE");
    // A project migrating old evidence may count loose records; then the dashboards say so.
    let toml = fs::read_to_string(m.root().join("pv.toml")).unwrap();
    fs::write(
        m.root().join("pv.toml"),
        toml + "\n[evidence]\nloose = \"count\"\n",
    )
    .unwrap();
    let r = report(&m);
    assert!(r.loose_counted);
    assert_eq!(
        r.stage("M-MINI-1.1").unwrap().status,
        StageStatus::Discharged
    );
    let (_, out) = pv_out(m.root(), &["status"]);
    assert!(out.contains("COUNTED"), "{out}");
}

/// Keys, `allowed_signers` and a `[trust]` table: `ci` may vouch for the algorithm tier,
/// `gpu` for the hardware tier.
struct Keys {
    ci: pv_attest::SigningKey,
    gpu: pv_attest::SigningKey,
    stranger: pv_attest::SigningKey,
}

fn with_trust(m: &Mini, require_attested: bool) -> Keys {
    let keys = Keys {
        ci: pv_attest::SigningKey::generate_ed25519(),
        gpu: pv_attest::SigningKey::generate_ed25519(),
        stranger: pv_attest::SigningKey::generate_ed25519(),
    };
    fs::write(
        m.root().join("allowed_signers"),
        format!(
            "ci@example.com {}\ngpu@example.com {}\n",
            keys.ci.public_key_openssh(),
            keys.gpu.public_key_openssh()
        ),
    )
    .unwrap();
    let toml = fs::read_to_string(m.root().join("pv.toml")).unwrap();
    fs::write(
        m.root().join("pv.toml"),
        format!(
            "{toml}\n[trust]\nallowed_signers = \"allowed_signers\"\nalgorithm = [\"ci@example.com\"]\nhardware = [\"gpu@example.com\"]\nrequire_attested = {require_attested}\n"
        ),
    )
    .unwrap();
    keys
}

fn sign(manifest: &Path, key: &pv_attest::SigningKey) {
    let r = pv::sign::sign_manifest(manifest, key, None, false).unwrap();
    assert_eq!(r, pv::sign::Signed::Added);
}

#[test]
fn a_signed_run_is_attested_and_counts() {
    let m = Mini::new();
    m.run("FALSIFY-MINI-A-001", 0.0);
    let keys = with_trust(&m, true);
    // Unsigned: unattested, and with require_attested it counts for nothing.
    let r = report(&m);
    assert_eq!(r.unattested.len(), 1);
    assert!(
        r.unattested[0].reason.contains("unsigned"),
        "{:?}",
        r.unattested
    );
    assert_eq!(r.stage("M-MINI-1.1").unwrap().status, StageStatus::Pending);
    sign(&manifest_of(&m), &keys.ci);
    let r = report(&m);
    assert!(r.unattested.is_empty(), "{:?}", r.unattested);
    assert_eq!(r.signed_runs, 1);
    assert_eq!(
        r.stage("M-MINI-1.1").unwrap().status,
        StageStatus::Discharged
    );
    let (code, out) = pv_out(m.root(), &["evidence", "verify", "--no-git"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("signed by ci@example.com"), "{out}");
    // Signing again with the same key changes nothing.
    assert_eq!(
        pv::sign::sign_manifest(&manifest_of(&m), &keys.ci, None, false).unwrap(),
        pv::sign::Signed::AlreadySigned
    );
}

#[test]
fn a_manifest_edited_after_signing_is_caught() {
    let (m, failing) = failing_mini();
    let keys = with_trust(&m, true);
    sign(&manifest_of(&m), &keys.ci);
    assert_eq!(
        report(&m).stage("M-MINI-1.1").unwrap().status,
        StageStatus::Failing
    );
    // The forger deletes the failure and rewrites the signed manifest without it.
    fs::remove_file(&failing).unwrap();
    reseal_dropping_missing(&manifest_of(&m), true);
    let r = report(&m);
    assert!(
        r.invalid
            .iter()
            .all(|i| i.reason.contains("does not verify")),
        "{:?}",
        r.invalid
    );
    assert_ne!(
        r.stage("M-MINI-1.1").unwrap().status,
        StageStatus::Discharged
    );
    views(&m).all_say("does not verify");
}

#[test]
fn a_signature_by_a_key_not_in_allowed_signers_is_unattested() {
    let m = Mini::new();
    m.run("FALSIFY-MINI-A-001", 0.0);
    let keys = with_trust(&m, true);
    sign(&manifest_of(&m), &keys.stranger);
    let r = report(&m);
    assert_eq!(r.unattested.len(), 1);
    assert_eq!(r.stage("M-MINI-1.1").unwrap().status, StageStatus::Pending);
    let v = views(&m);
    v.all_say("UNATTESTED");
    assert!(
        v.verify.1.contains(&keys.stranger.fingerprint()),
        "{}",
        v.verify.1
    );
}

#[test]
fn an_algorithm_key_cannot_vouch_for_a_hardware_record() {
    let m = Mini::new();
    m.run("FALSIFY-MINI-A-001", 0.0);
    m.run("FALSIFY-MINI-GPU-001", 0.0);
    let keys = with_trust(&m, true);
    sign(&manifest_of(&m), &keys.ci);
    let r = report(&m);
    assert_eq!(r.unattested.len(), 1, "{:?}", r.unattested);
    assert_eq!(r.unattested[0].falsifier, "FALSIFY-MINI-GPU-001");
    assert!(
        r.unattested[0]
            .reason
            .contains("does not allow for hardware-tier records"),
        "{:?}",
        r.unattested
    );
    assert_eq!(
        r.stage("M-MINI-1.1").unwrap().status,
        StageStatus::Discharged
    );
    assert_ne!(
        r.stage("M-MINI-1.2").unwrap().status,
        StageStatus::Discharged
    );
    views(&m).all_say("does not allow for hardware-tier records");
    // The GPU runner's key, added to the same run, vouches for it.
    sign(&manifest_of(&m), &keys.gpu);
    assert!(report(&m).unattested.is_empty());
}

#[test]
fn a_record_deleted_from_a_signed_run_is_missing() {
    let (m, failing) = failing_mini();
    let keys = with_trust(&m, false);
    sign(&manifest_of(&m), &keys.ci);
    fs::remove_file(&failing).unwrap();
    let r = report(&m);
    assert_eq!(r.missing.len(), 1, "{:?}", r.missing);
    let v = views(&m);
    v.all_say("MISSING");
    assert_eq!(v.status.0, 1, "{}", v.status.1);
    assert_eq!(v.audit.0, 1, "{}", v.audit.1);
}

#[test]
fn truncated_and_non_utf8_files_are_reported_not_fatal() {
    let (m, _) = failing_mini();
    let manifest = manifest_of(&m);
    let bytes = fs::read(&manifest).unwrap();
    fs::write(
        m.runs().join("20261208T000000Z_trunc.json"),
        b"{\"format\": 2, \"falsifier\": \"FALSIFY-MI",
    )
    .unwrap();
    fs::write(
        m.runs().join("20261208T000001Z_bin.json"),
        [0xff, 0xfe, 0x00, 0x80],
    )
    .unwrap();
    fs::write(
        m.runs().join("20261208T000002Z_run_x.intoto.json"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    fs::write(
        m.runs().join("20261208T000003Z_run_y.intoto.json"),
        [0xff, 0xfe, 0x00, 0x80],
    )
    .unwrap();
    let r = report(&m);
    assert_eq!(r.unreadable.len(), 4, "{:?}", r.unreadable);
    assert_eq!(r.stage("M-MINI-1.1").unwrap().status, StageStatus::Failing);
    let v = views(&m);
    for (_, text) in [&v.status, &v.verify] {
        assert!(text.contains("trunc.json"), "{text}");
        assert!(text.contains("not a valid run manifest"), "{text}");
    }
    assert_eq!(v.verify.0, 1);
}

#[test]
fn ten_thousand_junk_files_are_listed_and_change_nothing() {
    let (m, _) = failing_mini();
    let junk = m.runs().join("junk");
    fs::create_dir_all(&junk).unwrap();
    for i in 0..10_000 {
        fs::write(junk.join(format!("{i:05}.json")), format!("junk {i}")).unwrap();
    }
    let r = report(&m);
    assert_eq!(r.unreadable.len(), 10_000);
    assert_eq!(r.stage("M-MINI-1.1").unwrap().status, StageStatus::Failing);
    let (_, out) = pv_out(m.root(), &["status"]);
    // Listed by count, not ten thousand lines.
    assert!(
        out.contains("10000 unreadable"),
        "{}",
        &out[..out.len().min(2000)]
    );
    assert!(out.lines().count() < 200, "{} lines", out.lines().count());
}

#[test]
fn evidence_verify_can_list_only_the_records_with_a_problem() {
    let m = Mini::new();
    m.run("FALSIFY-MINI-A-001", 0.0);
    let forged = m
        .runs()
        .join("20261208T000000.000000Z_FALSIFY-MINI-A-001_1-0-0000abcd.json");
    fs::copy(m.run("FALSIFY-MINI-A-001", 0.0), &forged).unwrap();
    let (code, all) = pv_out(m.root(), &["evidence", "verify", "--no-git"]);
    let (code2, some) = pv_out(
        m.root(),
        &["evidence", "verify", "--no-git", "--problems-only"],
    );
    assert_eq!((code, code2), (1, 1));
    assert_eq!(
        all.matches("\nok   ").count() + all.starts_with("ok   ") as usize,
        2,
        "{all}"
    );
    assert!(!some.contains("ok   2026"), "{some}");
    assert!(some.contains("FAIL 20261208T000000"), "{some}");
    assert!(some.contains("3 record(s)"), "{some}");
    // JSON lists every record either way.
    let (_, json) = pv_out(
        m.root(),
        &["evidence", "verify", "--no-git", "--format", "json"],
    );
    let v: serde_json::Value = serde_json::from_str(&json[..json.rfind('}').unwrap() + 1]).unwrap();
    assert_eq!(v["records"].as_array().unwrap().len(), 3);
    assert_eq!(v["summary"]["loose"], 1);
}

#[test]
fn pv_evidence_sign_signs_with_a_key_file_and_refuses_bad_keys() {
    let m = Mini::new();
    m.run("FALSIFY-MINI-A-001", 0.0);
    let keys = with_trust(&m, true);
    let key_file = m.root().join("ci_key");
    fs::write(&key_file, keys.ci.to_openssh()).unwrap();
    let runs = m.runs();
    let runs = runs.to_str().unwrap();
    let key = key_file.to_str().unwrap();
    // --dry-run changes nothing.
    let (code, out) = pv_out(
        m.root(),
        &["evidence", "sign", "--key", key, "--dry-run", runs],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("would sign 1"), "{out}");
    assert_eq!(report(&m).signed_runs, 0);
    let (code, out) = pv_out(m.root(), &["evidence", "sign", "--key", key, runs]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&keys.ci.fingerprint()), "{out}");
    let r = report(&m);
    assert_eq!((r.signed_runs, r.unattested.len()), (1, 0));
    assert_eq!(
        r.stage("M-MINI-1.1").unwrap().status,
        StageStatus::Discharged
    );
    // Bad keys are clear errors (exit 2), and sign nothing.
    fs::write(m.root().join("not_a_key"), "hello").unwrap();
    for bad in ["not_a_key", "no_such_file"] {
        let (code, out) = pv_out(m.root(), &["evidence", "sign", "--key", bad, runs]);
        assert_eq!(code, 2, "{out}");
        assert!(out.contains("loading the signing key"), "{out}");
    }
    let (code, out) = pv_out(m.root(), &["evidence", "sign", runs]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("PV_SIGNING_KEY"), "{out}");
}
