//! Renders the `pv status` HTML page in headless Chromium: it must load without console errors,
//! run its one script, and produce a screenshot (kept at `$PV_SCREENSHOT_DIR/pv-status.png`,
//! default the system temp dir). Skips, saying so, when no `chromium` binary is installed
//! (`apt-get install -y chromium`; `.ci/run` installs it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use pv::status::{
    derive, ContractModel, FalsifierModel, Inputs, Model, Run, RunRecord, StageModel,
};
use pv_evidence::record::{Outcome, SourceDigest, Tier};

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

type Thresholds = BTreeMap<(String, String), (String, f64)>;

fn report() -> (pv::status::StatusReport, Thresholds) {
    let f = |id: &str, tier| FalsifierModel {
        id: id.into(),
        tier,
        retired: None,
        metrics: vec!["m".into()],
    };
    let model = Model {
        contracts: vec![ContractModel {
            id: "demo-v1".into(),
            version: "0.1.0".into(),
            sha256: "h".into(),
            stages: vec![
                StageModel {
                    id: "M-DEMO-1.1".into(),
                    title: "First <b>not bold</b> & escaped".into(),
                    requires: vec![],
                    falsifiers: vec!["FALSIFY-DEMO-A-001".into()],
                },
                StageModel {
                    id: "M-DEMO-1.2".into(),
                    title: "Second".into(),
                    requires: vec!["M-DEMO-1.1".into()],
                    falsifiers: vec!["FALSIFY-DEMO-A-001".into(), "FALSIFY-DEMO-GPU-001".into()],
                },
            ],
            falsifiers: vec![
                f("FALSIFY-DEMO-A-001", Tier::Algorithm),
                f("FALSIFY-DEMO-GPU-001", Tier::Hardware),
            ],
            ..Default::default()
        }],
    };
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
                contract_sha256: "h".into(),
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
        },
    );
    let mut th = BTreeMap::new();
    th.insert(
        ("FALSIFY-DEMO-A-001".to_string(), "m".to_string()),
        ("<=".to_string(), 0.35),
    );
    (r, th)
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

    let (report, thresholds) = report();
    let html = pv::status_render::html(&report, &thresholds);
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
