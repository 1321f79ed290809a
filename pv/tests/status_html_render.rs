//! Renders the `pv status` HTML page in headless Chromium: it must load without console errors,
//! run its one script, and produce a screenshot (kept at `$PV_SCREENSHOT_DIR/pv-status.png`,
//! default the system temp dir). Skips, saying so, when no `chromium` binary is installed
//! (`apt-get install -y chromium`; `.ci/run` installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

use pv::status::{derive, Inputs, Run, RunRecord};
use pv::status_load::model_from_contracts;
use pv_contract::ContractSet;
use pv_evidence::record::{Outcome, SourceDigest};

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            let out = Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        })
}

/// Loads `page` headless; returns (DOM after scripts, stderr log).
fn render(chrome: &Path, page: &Path, screenshot: Option<&Path>) -> (String, String) {
    let url = format!("file://{}", page.display());
    let mut cmd = Command::new(chrome);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1400,1000",
    ]);
    let out = match screenshot {
        Some(png) => cmd
            .arg(format!("--screenshot={}", png.display()))
            .arg(&url)
            .output(),
        None => cmd.arg("--dump-dom").arg(&url).output(),
    }
    .expect("running chromium");
    assert!(out.status.success(), "chromium failed: {out:?}");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Console errors and uncaught exceptions as Chromium logs them to stderr.
fn console_errors(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .filter(|l| !l.contains(":INFO:CONSOLE") || l.contains("Uncaught") || l.contains("rror"))
        .collect()
}

/// A contract whose texts try to break out of the page: a title with markup, a formula with a
/// script tag and ampersands.
const DEMO: &str = r#"contract: demo-v1
version: 0.1.0
title: Demo
summary: The render test's contract.
stages:
  - id: M-DEMO-1.1
    title: First <b>not bold</b> & escaped
    falsifiers: [FALSIFY-DEMO-A-001]
  - id: M-DEMO-1.2
    title: Second
    requires: [M-DEMO-1.1]
    falsifiers: [FALSIFY-DEMO-A-001, FALSIFY-DEMO-GPU-001]
falsifiers:
  - id: FALSIFY-DEMO-A-001
    claim: A holds.
    tier: algorithm
    metrics:
      - name: m
        op: "<="
        threshold: 0.35
    if_fails: Look at A.
  - id: FALSIFY-DEMO-GPU-001
    claim: A holds on the GPU.
    tier: hardware
    metrics:
      - name: m
        op: "<="
        threshold: 0.35
    if_fails: Look at the kernel.
equations:
  - id: EQ-DEMO-HOSTILE
    name: Hostile <i>name</i>
    formula: "<script>alert(1)</script> y_i = a & b_i <= c"
    domain: "x in f32^n"
    codomain: "y in f32^n"
    preconditions: [a is finite]
    invariants: ["sum_i y_i == 1"]
proof_obligations:
  - id: PO-DEMO-001
    kind: bound
    property: The error is at most 1e-6.
    formal: "forall i: |y_i - ref_i| <= 1e-6"
    tolerance: 1e-6
    equation: EQ-DEMO-HOSTILE
    discharged_by:
      falsifiers: [FALSIFY-DEMO-A-001]
  - id: PO-DEMO-002
    kind: equivalence
    property: The GPU equals the CPU.
    equation: EQ-DEMO-HOSTILE
    discharged_by:
      falsifiers: [FALSIFY-DEMO-GPU-001]
      harnesses: [demo::proofs::gpu_eq]
  - id: PO-DEMO-003
    kind: invariant
    property: The outputs sum to one on the GPU.
    equation: EQ-DEMO-HOSTILE
    discharged_by:
      falsifiers: [FALSIFY-DEMO-GPU-001]
amendment_history:
  - version: 0.1.0
    date: 2026-11-22
    summary: First.
"#;

fn report() -> (pv::status::StatusReport, ContractSet) {
    let loaded = pv_contract::load_str("contracts/demo-v1.yaml", DEMO).expect("demo contract");
    let set = ContractSet::new(vec![loaded]);
    let model = model_from_contracts(
        &set,
        &pv_project::Project::defaults(std::path::Path::new(".")),
    );
    let sha = model.contracts[0].sha256.clone();
    let src = SourceDigest {
        algorithm: "pv-source-v1".into(),
        roots: vec![],
        sha256: "s".into(),
        files: 0,
    };
    let runs: Vec<Run> = (0..20)
        .map(|i| Run {
            file: format!("{i:03}.json"),
            ts: i as i128 * 1_000_000_000,
            record: RunRecord {
                falsifier: "FALSIFY-DEMO-A-001".into(),
                contract_sha256: sha.clone(),
                falsifier_sha256: None,
                checks: vec![(
                    pv_evidence::Op::Le,
                    0.35,
                    Some(pv_evidence::JsonF64(if i == 7 {
                        0.5
                    } else {
                        (i % 4) as f64 * 0.1
                    })),
                )],
                test: "demo::a".into(),
                outcome: if i == 7 { Outcome::Fail } else { Outcome::Pass },
                reason: None,
                // Values under the 0.35 threshold, except one failing run.
                metrics: vec![(
                    "m".into(),
                    Some(if i == 7 { 0.5 } else { (i % 4) as f64 * 0.1 }),
                    i != 7,
                )],
                source: src.clone(),
                timestamp: format!("2026-11-22T18:00:{i:02}.000000Z"),
                commit: Some("0123456789".into()),
                hardware: "cpu".into(),
            },
            provenance: pv::status::Provenance::Run(0),
        })
        .collect();
    let fresh = |_: &SourceDigest| true;
    let r = derive(
        &model,
        &runs,
        &fresh,
        &Inputs {
            bound: None,
            now: 60_000_000_000,
            test_functions: None,
            runs: vec![pv::status::RunFacts {
                manifest: "run.intoto.json".into(),
                id: "run-1".into(),
                started: 0,
                signature: pv::status::RunSignature::Unsigned,
            }],
            count_loose: false,
            trust: None,
        },
    );
    (r, set)
}

#[test]
fn status_html_renders_in_headless_chromium_without_console_errors() {
    let Some(chrome) = chromium() else {
        eprintln!(
            "SKIPPED: no chromium binary found; install it with `apt-get install -y chromium`"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();

    // The check can fail: a page whose script throws is caught.
    let bad = dir.path().join("bad.html");
    std::fs::write(
        &bad,
        "<!DOCTYPE html><html><body><script>undefinedFunction();</script></body></html>",
    )
    .unwrap();
    let (_, log) = render(&chrome, &bad, None);
    assert!(
        !console_errors(&log).is_empty(),
        "the console-error check did not see a thrown error; log:\n{log}"
    );

    let (report, set) = report();
    let html = pv::status_render::html(&report, &set);
    // Self-contained: nothing fetched (the SVG namespace URI is a name, not a fetch).
    for fetch in ["src=\"http", "href=\"http", "<link", "@import", "url(http"] {
        assert!(!html.contains(fetch), "page fetches something: {fetch}");
    }
    assert!(html.contains("First &lt;b&gt;not bold&lt;/b&gt; &amp; escaped"));
    let page = dir.path().join("status.html");
    std::fs::write(&page, &html).unwrap();

    let (dom, log) = render(&chrome, &page, None);
    assert!(console_errors(&log).is_empty(), "console errors:\n{log}");
    assert!(
        dom.contains("data-rendered=\"yes\""),
        "the page's script did not run"
    );
    assert!(
        dom.contains("M-DEMO-1.2") && dom.contains("<svg"),
        "stage graph missing"
    );
    assert!(dom.contains("class=\"spark\""), "metric history missing");
    // The hostile formula stays text: the one script is the page's own.
    assert_eq!(dom.matches("<script").count(), 1, "a script was injected");
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt; y_i = a &amp; b_i &lt;= c"),
        "formula missing or unescaped"
    );
    assert!(
        dom.contains("data-coverage=\"evidence\"") && dom.contains("data-coverage=\"uncovered\""),
        "obligation coverage missing"
    );

    let shots = std::env::var_os("PV_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join("pv-status.png");
    let _ = std::fs::remove_file(&png);
    render(&chrome, &page, Some(&png));
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(
        bytes.len() > 1000 && bytes.starts_with(b"\x89PNG"),
        "not a PNG screenshot"
    );
    eprintln!("screenshot: {}", png.display());
}
