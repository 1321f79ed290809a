//! `pv graph`, `pv coverage`, `pv show`, `pv audit` end to end on a mini workspace: two
//! contracts (one depends on the other), equations and obligations, bound tests, a Kani harness
//! in a source file, and evidence written by the same runtime the falsifier tests use (one
//! pass, one failure, one bound falsifier never run, one unbound).

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use pv_evidence::{run_falsifier_in, FalsifierMeta, MetricSpec, Op, Tier};

const BASE: &str = r#"contract: base-v1
version: 0.1.0
title: Base
summary: The contract the math contract builds on.
stages:
  - id: M-BASE-1.1
    title: Base stage
    requires: []
    falsifiers: [FALSIFY-BASE-OK-001]
falsifiers:
  - id: FALSIFY-BASE-OK-001
    claim: The base works.
    tier: algorithm
    metrics:
      - name: errors
        op: "=="
        threshold: 0
    if_fails: Look at the base.
amendment_history:
  - version: 0.1.0
    date: 2026-11-22
    summary: First.
"#;

const MATH: &str = r#"contract: math-v1
version: 0.1.0
title: Math
summary: Equations and obligations for the command tests.
depends_on:
  - contract: base-v1
    version: ">=0.1.0"
stages:
  - id: M-MATH-1.1
    title: Scale and softmax
    requires: [M-BASE-1.1]
    falsifiers: [FALSIFY-MATH-EXACT-001, FALSIFY-MATH-SUM-001]
  - id: M-MATH-1.2
    title: Softmax error bound
    requires: [M-MATH-1.1]
    falsifiers: [FALSIFY-MATH-UNBOUND-001]
falsifiers:
  - id: FALSIFY-MATH-EXACT-001
    claim: Scaling is exact.
    tier: algorithm
    metrics:
      - name: max_abs_diff
        op: "<="
        threshold: 0
    if_fails: Look at scale.
  - id: FALSIFY-MATH-SUM-001
    claim: Probabilities sum to one.
    tier: algorithm
    metrics:
      - name: sum_error
        op: "<="
        threshold: 1e-6
    if_fails: Look at softmax.
  - id: FALSIFY-MATH-UNBOUND-001
    claim: Softmax is within 1 ulp of f64.
    tier: algorithm
    metrics:
      - name: max_ulps
        op: "<="
        threshold: 1
    if_fails: Write the test.
equations:
  - id: EQ-MATH-SCALE
    name: Scaling
    formula: "y_i = a * x_i"
    domain: "x in f32^n, a in f32"
    codomain: "y in f32^n"
    preconditions: [a is finite]
    invariants: [len(y) == len(x)]
  - id: EQ-MATH-SOFTMAX
    name: Softmax (max-subtracted)
    formula: "p_i = exp(x_i - m) / sum_j exp(x_j - m), m = max_j x_j"
    preconditions: [x is finite and non-empty]
    invariants: ["0 <= p_i <= 1", "sum_i p_i == 1"]
  - id: EQ-MATH-ORPHAN
    name: Nobody's concern
    formula: "z = 0"
proof_obligations:
  - id: PO-MATH-001
    kind: postcondition
    property: Every output is exactly the input times a.
    formal: "forall i: y_i == fl(a * x_i)"
    tolerance: 0
    equation: EQ-MATH-SCALE
    discharged_by:
      falsifiers: [FALSIFY-MATH-EXACT-001]
  - id: PO-MATH-002
    kind: invariant
    property: The probabilities sum to one.
    formal: "|sum_i p_i - 1| <= 1e-6"
    tolerance: 1e-6
    equation: EQ-MATH-SOFTMAX
    discharged_by:
      falsifiers: [FALSIFY-MATH-SUM-001]
  - id: PO-MATH-003
    kind: bound
    property: Each probability is within 1 ulp of the f64 value.
    equation: EQ-MATH-SOFTMAX
    discharged_by:
      falsifiers: [FALSIFY-MATH-UNBOUND-001, FALSIFY-BASE-OK-001]
  - id: PO-MATH-004
    kind: equivalence
    property: The SIMD scale equals the scalar scale bit for bit.
    equation: EQ-MATH-SCALE
    discharged_by:
      harnesses: [math::proofs::scale_exact]
    kani: true
  - id: PO-MATH-005
    kind: invariant
    property: Scaling never produces NaN from finite inputs.
    equation: EQ-MATH-SCALE
    discharged_by:
      harnesses: [math::proofs::missing_proof]
amendment_history:
  - version: 0.1.0
    date: 2026-11-22
    summary: First.
"#;

const TESTS: &str = r#"
#[falsifier("FALSIFY-BASE-OK-001")]
fn base(ctx: &mut Ctx) -> FalsifierResult { Ok(()) }

#[falsifier("FALSIFY-MATH-EXACT-001")]
fn exact(ctx: &mut Ctx) -> FalsifierResult { Ok(()) }

#[falsifier("FALSIFY-MATH-SUM-001")]
fn sum(ctx: &mut Ctx) -> FalsifierResult {
    kernels::normalize(&mut []);
    Ok(())
}
"#;

/// A member crate for `pv coverage --by crate`: `scale` and `softmax` are named by `if_fails`
/// texts, `normalize` by the test file; `fetch`, `lanes` (declared twice) and `scale_avx2` by
/// nothing; `helper` is not public and `commented_out` is a comment.
const KERNELS_LIB: &str = r#"//! Tiny kernels.
pub mod simd;

pub fn scale(a: f32, x: &[f32]) -> Vec<f32> {
    x.iter().map(|v| a * v).collect()
}

pub fn softmax(x: &mut [f32]) {}

pub fn normalize(x: &mut [f32]) {}

pub async fn fetch() {}

pub const fn lanes() -> usize {
    8
}

pub(crate) fn helper() {}

// pub fn commented_out() {}
"#;

const KERNELS_SIMD: &str = r#"pub fn lanes() -> usize {
    super::lanes()
}

pub unsafe fn scale_avx2(a: f32, x: &[f32]) -> Vec<f32> {
    super::scale(a, x)
}
"#;

const PROOFS: &str = r#"
#[cfg(kani)]
mod proofs {
    #[kani::proof]
    fn scale_exact() {}
}
"#;

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, text).expect("write");
}

fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(
        root,
        "Cargo.toml",
        "[workspace]\nmembers = [\"engine\", \"kernels\", \"falsifiers\"]\n",
    );
    write(root, "contracts/base-v1.yaml", BASE);
    write(root, "contracts/math-v1.yaml", MATH);
    write(root, "engine/Cargo.toml", "[package]\nname = \"engine\"\n");
    write(root, "engine/src/lib.rs", "pub fn f() -> u32 { 1 }\n");
    write(
        root,
        "kernels/Cargo.toml",
        "[package]\nname = \"pv-kernels\"\n",
    );
    write(root, "kernels/src/lib.rs", KERNELS_LIB);
    write(root, "kernels/src/simd.rs", KERNELS_SIMD);
    write(root, "falsifiers/tests/math.rs", TESTS);
    write(
        root,
        "falsifiers/Cargo.toml",
        "[package]\nname = \"falsifiers\"\n[dev-dependencies]\ncontract-macros = \"0.1\"\n",
    );
    write(root, "math/src/proofs.rs", PROOFS);
    fs::create_dir_all(root.join("evidence/runs")).expect("mkdir");
    dir
}

/// Records one run of `id` reporting `value` for `metric` (judged against the contract's
/// threshold by the runtime).
fn run(root: &Path, id: &'static str, metric: &'static str, op: Op, threshold: f64, value: f64) {
    let bytes = fs::read(root.join("contracts/math-v1.yaml")).expect("contract");
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let metrics: &'static [MetricSpec] = Box::leak(Box::new([MetricSpec {
        name: metric,
        op,
        threshold,
        unit: None,
    }]));
    let meta = FalsifierMeta {
        id,
        contract: "math-v1",
        contract_version: "0.1.0",
        contract_path: "contracts/math-v1.yaml",
        contract_sha256: leak(pv_contract::digest::content_hash(&bytes)),
        falsifier_sha256: leak(claim_of(&bytes, id)),
        tier: Tier::Algorithm,
        metrics,
        devices: &[],
        fixtures: &[],
        if_fails: "",
        // The function TESTS binds to `id` (rule 16: a record comes from the bound test).
        test_name: match id {
            "FALSIFY-MATH-EXACT-001" => "math::exact",
            "FALSIFY-MATH-SUM-001" => "math::sum",
            _ => "math::base",
        },
        test_file: "tests/math.rs",
        manifest_dir: leak(root.join("falsifiers").display().to_string()),
    };
    run_falsifier_in(&meta, &root.join("evidence/runs"), |ctx| {
        ctx.metric(metric, value);
        Ok(())
    })
    .expect("record written");
}

/// The claim digest of falsifier `id` in the contract text `bytes`.
pub fn claim_of(bytes: &[u8], id: &str) -> String {
    let text = String::from_utf8_lossy(bytes);
    let loaded = pv_contract::load_str("c.yaml", &text).expect("contract loads");
    let c = &loaded.contract;
    let f = c.falsifiers.iter().find(|f| f.id == id).expect("falsifier");
    pv_contract::digest::claim_digest(c, f)
}

fn with_evidence() -> tempfile::TempDir {
    let ws = workspace();
    run(
        ws.path(),
        "FALSIFY-MATH-EXACT-001",
        "max_abs_diff",
        Op::Le,
        0.0,
        0.0,
    );
    run(
        ws.path(),
        "FALSIFY-MATH-SUM-001",
        "sum_error",
        Op::Le,
        1e-6,
        0.5,
    );
    ws
}

fn pv(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pv"))
        .args(args)
        .arg("--root")
        .arg(root)
        .current_dir(root)
        .env("NO_COLOR", "1")
        .output()
        .expect("run pv")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_mini_workspace_validates() {
    let ws = workspace();
    let o = Command::new(env!("CARGO_BIN_EXE_pv"))
        .args(["validate", "--no-since", "contracts"])
        .current_dir(ws.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("run pv");
    // Only the deliberate orphan equation warns.
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("warning[PV056]: equation `EQ-MATH-ORPHAN`"),
        "{e}"
    );
    assert!(!e.contains("error["), "{e}");
}

#[test]
fn graph_formats() {
    let ws = with_evidence();
    for (format, name) in [
        ("dot", "graph_dot"),
        ("json", "graph_json"),
        ("svg", "graph_svg"),
    ] {
        let o = pv(ws.path(), &["graph", "--format", format]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        insta::assert_snapshot!(name, stdout(&o));
    }
    let j: serde_json::Value =
        serde_json::from_str(&stdout(&pv(ws.path(), &["graph", "--format", "json"])))
            .expect("json");
    // Topological: the base stage first; M-MATH-1.1 fails (SUM), so 1.2 is capped.
    let ids: Vec<&str> = j["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["M-BASE-1.1", "M-MATH-1.1", "M-MATH-1.2"]);
    assert_eq!(j["stages"][1]["status"], "FAILING");
    assert_eq!(j["contracts"][1]["layer"], 1);
}

#[test]
fn graph_names_a_stage_cycle_and_a_contract_cycle() {
    let ws = workspace();
    let path = ws.path().join("contracts/base-v1.yaml");
    let text = fs::read_to_string(&path).expect("read");
    fs::write(
        &path,
        text.replace("requires: []", "requires: [M-MATH-1.2]"),
    )
    .expect("write");
    let o = pv(ws.path(), &["graph"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    insta::assert_snapshot!("graph_stage_cycle", stderr(&o));

    let ws = workspace();
    let path = ws.path().join("contracts/base-v1.yaml");
    let text = fs::read_to_string(&path).expect("read");
    fs::write(
        &path,
        text.replace(
            "stages:",
            "depends_on:\n  - contract: math-v1\n    version: \">=0.1.0\"\nstages:",
        ),
    )
    .expect("write");
    let o = pv(ws.path(), &["graph", "--format", "svg"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert_eq!(
        stderr(&o),
        "error: contract dependencies form a cycle: base-v1 -> math-v1 -> base-v1 \
         (`a -> b`: a depends on / requires b)\n"
    );
    assert!(
        stdout(&o).is_empty(),
        "no graph is printed for a cyclic input"
    );
}

#[test]
fn coverage_counts_fresh_passes_and_harnesses() {
    let ws = with_evidence();
    let o = pv(ws.path(), &["coverage"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    insta::assert_snapshot!("coverage_text", stdout(&o));
    let o = pv(ws.path(), &["coverage", "--format", "json"]);
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(j["totals"]["obligations"], 5);
    assert_eq!(j["totals"]["evidence"], 1);
    assert_eq!(j["totals"]["harness"], 2);
    assert_eq!(j["totals"]["uncovered"], 2);
    // The default `--by all` adds the per-crate part.
    assert_eq!(j["crates"]["total"], 7);
    assert_eq!(j["crates"]["named"], 3);
    insta::assert_snapshot!("coverage_json", stdout(&o));
    // `--by obligation` is the obligation part alone.
    let o = pv(
        ws.path(),
        &["coverage", "--by", "obligation", "--format", "json"],
    );
    let only: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert!(only.get("crates").is_none(), "{only}");
    assert_eq!(only["totals"], j["totals"]);

    // A comment in the contract changes no claim: the pass stays fresh.
    let path = ws.path().join("contracts/math-v1.yaml");
    let text = fs::read_to_string(&path).expect("read");
    fs::write(&path, format!("# edited\n{text}")).expect("write");
    let o = pv(ws.path(), &["coverage", "--format", "json"]);
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(j["totals"]["evidence"], 1);
    // Editing the passing falsifier's claim makes it stale: nothing is covered by evidence.
    fs::write(
        &path,
        text.replace(
            "claim: Scaling is exact.",
            "claim: Scaling is exact, always.",
        ),
    )
    .expect("write");
    let o = pv(ws.path(), &["coverage", "--format", "json"]);
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(j["totals"]["evidence"], 0);
    assert_eq!(j["totals"]["uncovered"], 3);
}

#[test]
fn coverage_by_crate_names_public_functions() {
    let ws = workspace();
    let o = pv(ws.path(), &["coverage", "--by", "crate"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    insta::assert_snapshot!("coverage_by_crate_text", stdout(&o));
    let o = pv(
        ws.path(),
        &["coverage", "--by", "crate", "--format", "json"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    // Only the per-crate part: no obligation fields.
    assert!(j.get("contracts").is_none(), "{j}");
    let crates = j["crates"]["crates"].as_array().expect("crates");
    let names: Vec<&str> = crates
        .iter()
        .map(|c| c["crate"].as_str().expect("crate"))
        .collect();
    // `falsifiers` is a member but never scanned.
    assert_eq!(names, ["engine", "pv-kernels"]);
    assert_eq!(crates[1]["total"], 6);
    assert_eq!(crates[1]["named"], 3);
    let unnamed: Vec<&str> = crates[1]["unnamed"]
        .as_array()
        .expect("unnamed")
        .iter()
        .map(|f| f["name"].as_str().expect("name"))
        .collect();
    assert_eq!(unnamed, ["fetch", "lanes", "scale_avx2"]);
    assert_eq!(
        crates[1]["unnamed"][1]["locations"],
        serde_json::json!(["src/lib.rs:14", "src/simd.rs:1"])
    );
    insta::assert_snapshot!("coverage_by_crate_json", stdout(&o));

    // The naming can fail: drop the word from the test file and `normalize` is unnamed.
    let t = ws.path().join("falsifiers/tests/math.rs");
    let text = fs::read_to_string(&t).expect("read");
    fs::write(&t, text.replace("kernels::normalize(&mut []);", "")).expect("write");
    let o = pv(ws.path(), &["coverage", "--by", "crate"]);
    assert!(
        stdout(&o).contains(
            "pv-kernels (kernels): named 2 / total 6\n  unnamed  normalize  src/lib.rs:10\n"
        ),
        "{}",
        stdout(&o)
    );
    // Retiring a falsifier takes its if_fails words away (`scale` is in no test file).
    let path = ws.path().join("contracts/math-v1.yaml");
    let text = fs::read_to_string(&path).expect("read");
    fs::write(
        &path,
        text.replace(
            "    if_fails: Look at scale.\n",
            "    if_fails: Look at scale.\n    retired: replaced\n",
        ),
    )
    .expect("write");
    let o = pv(ws.path(), &["coverage", "--by", "crate"]);
    assert!(
        stdout(&o).contains("  unnamed  scale  src/lib.rs:4\n"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn coverage_by_crate_on_hostile_workspaces() {
    // No Cargo.toml: the per-crate part is an input error that says what is missing; the
    // obligation part alone still works.
    let ws = workspace();
    fs::remove_file(ws.path().join("Cargo.toml")).expect("rm");
    let o = pv(ws.path(), &["coverage"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.starts_with(
            "error: listing the workspace's crates (`--by obligation` does without): reading "
        ) && e.contains("Cargo.toml: no Cargo.toml"),
        "{e}"
    );
    let o = pv(ws.path(), &["coverage", "--by", "obligation"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("base-v1: "), "{}", stdout(&o));

    // Not TOML: an error naming the file. A single package (no [workspace]) is a project of
    // one crate.
    write(ws.path(), "Cargo.toml", "[workspace\nmembers = [\n");
    let o = pv(ws.path(), &["coverage", "--by", "crate"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("Cargo.toml: TOML parse error"),
        "{}",
        stderr(&o)
    );
    write(ws.path(), "Cargo.toml", "[package]\nname = \"solo\"\n");
    write(ws.path(), "src/lib.rs", "pub fn solo_fn() {}\n");
    let o = pv(ws.path(), &["coverage", "--by", "crate"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("solo (.): named 0 / total 1"),
        "{}",
        stdout(&o)
    );
    fs::remove_dir_all(ws.path().join("src")).expect("rm");

    // Members that do not exist, have no src/, hold a non-UTF-8 file, or declare more
    // unnamed functions than the text lists; and a `dir/*` pattern.
    write(
        ws.path(),
        "Cargo.toml",
        "[workspace]\nmembers = [\"nope\", \"nosrc\", \"bad\", \"big\", \"crates/*\", \"odd/**/x\"]\nexclude = [\"crates/skipped\"]\n",
    );
    write(
        ws.path(),
        "nosrc/Cargo.toml",
        "[package]\nname = \"nosrc\"\n",
    );
    write(ws.path(), "bad/Cargo.toml", "this is not toml [");
    write(ws.path(), "bad/src/ok.rs", "pub fn fine_fn() {}\n");
    fs::write(ws.path().join("bad/src/lib.rs"), b"pub fn \xff\xfe() {}\n").expect("write");
    let big: String = (0..15)
        .map(|i| format!("pub fn big_{i:02}() {{}}\n"))
        .collect();
    write(ws.path(), "big/Cargo.toml", "[package]\nname = \"big\"\n");
    write(ws.path(), "big/src/lib.rs", &big);
    write(
        ws.path(),
        "crates/one/Cargo.toml",
        "[package]\nname = \"one\"\n",
    );
    write(ws.path(), "crates/one/src/lib.rs", "pub fn one_fn() {}\n");
    write(
        ws.path(),
        "crates/skipped/Cargo.toml",
        "[package]\nname = \"skipped\"\n",
    );
    write(
        ws.path(),
        "crates/skipped/src/lib.rs",
        "pub fn skipped_fn() {}\n",
    );
    let o = pv(ws.path(), &["coverage", "--by", "crate"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    insta::assert_snapshot!("coverage_by_crate_hostile", stdout(&o));
    let o = pv(
        ws.path(),
        &["coverage", "--by", "crate", "--format", "json"],
    );
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    let big = &j["crates"]["crates"][1];
    assert_eq!(big["crate"], "big");
    // JSON lists every unnamed function; the text stopped at 12.
    assert_eq!(big["unnamed"].as_array().expect("unnamed").len(), 15);
}

#[test]
fn coverage_without_contracts_is_an_input_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "Cargo.toml", "[workspace]\n");
    let o = pv(dir.path(), &["coverage"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("loading contracts"), "{}", stderr(&o));
}

/// The part of the status page between the first `<h3>` (math-v1's equations: base-v1 has
/// none) and the metric history: equations and obligations, with no ages in it.
fn math_section(html: &str) -> &str {
    let start = html.find("<h3>Equations</h3>").expect("equations section");
    let end = html
        .find("<h2>Metric history</h2>")
        .expect("metric history");
    &html[start..end]
}

#[test]
fn status_html_shows_equations_and_obligations_with_coverage() {
    let ws = with_evidence();
    let o = pv(ws.path(), &["status", "--format", "html"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let html = stdout(&o);
    assert!(html.contains(
        "<p id=\"coverage\">Proof obligations: 1 by evidence, 2 by harness only, 2 uncovered"
    ));
    insta::assert_snapshot!("status_html_math", math_section(&html));
    // Each obligation's verdict on the page is the one `pv coverage` prints.
    let j: serde_json::Value = serde_json::from_str(&stdout(&pv(
        ws.path(),
        &["coverage", "--by", "obligation", "--format", "json"],
    )))
    .expect("json");
    let mut checked = 0;
    for c in j["contracts"].as_array().expect("contracts") {
        for ob in c["obligations"].as_array().expect("obligations") {
            let id = ob["id"].as_str().expect("id");
            let label = match ob["coverage"].as_str().expect("coverage") {
                "evidence" => "evidence",
                "harness" => "harness only",
                _ => "uncovered",
            };
            let row_start = html
                .find(&format!("<tr data-obligation=\"{id}\">"))
                .expect("row");
            let row = &html[row_start..row_start + html[row_start..].find("</tr>").expect("end")];
            assert!(
                row.contains(&format!("data-coverage=\"{label}\"")),
                "{id}: expected {label}: {row}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 5);
}

#[test]
fn status_html_escapes_hostile_formulas() {
    let ws = workspace();
    let path = ws.path().join("contracts/math-v1.yaml");
    let text = fs::read_to_string(&path).expect("read");
    let hostile = text
        .replace(
            "formula: \"z = 0\"",
            "formula: \"<script>alert('x')</script> z = a & b <= c\"",
        )
        .replace(
            "formal: \"forall i: y_i == fl(a * x_i)\"",
            "formal: \"</pre><img src=x onerror=alert(1)> && \\\"q\\\"\"",
        );
    assert_ne!(hostile, text, "the fixture changed: nothing was replaced");
    fs::write(&path, hostile).expect("write");
    let o = pv(ws.path(), &["status", "--format", "html"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let html = stdout(&o);
    // The page's own script is the only one; the formula stays text.
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(html.contains(
        "<pre class=\"formula\">&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; z = a &amp; b &lt;= c</pre>"
    ));
    assert!(html.contains(
        "<pre class=\"formula\">&lt;/pre&gt;&lt;img src=x onerror=alert(1)&gt; &amp;&amp; &quot;q&quot;</pre>"
    ));
}

#[test]
fn show_text_and_latex() {
    let ws = workspace();
    let o = pv(ws.path(), &["show", "math-v1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    insta::assert_snapshot!("show_text", stdout(&o));
    let o = pv(ws.path(), &["show", "math-v1", "--format", "latex"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let tex = stdout(&o);
    assert_eq!(tex.matches("\\begin{align*}").count(), 3);
    assert_eq!(
        tex.matches("\\begin{itemize}").count(),
        tex.matches("\\end{itemize}").count()
    );
    insta::assert_snapshot!("show_latex", tex);
    let o = pv(ws.path(), &["show", "base-v1"]);
    assert!(stdout(&o).contains("(no equations and no proof obligations)"));
}

#[test]
fn show_unknown_contract_names_the_loaded_ones() {
    let ws = workspace();
    let o = pv(ws.path(), &["show", "maths-v1"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: no contract `maths-v1`; loaded contracts: base-v1, math-v1\n"
    );
}

#[test]
fn audit_lists_every_break() {
    let ws = with_evidence();
    let o = pv(ws.path(), &["audit"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    insta::assert_snapshot!("audit_text", stdout(&o));
    let o = pv(ws.path(), &["audit", "--format", "json"]);
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    let kinds: Vec<&str> = j["breaks"]
        .as_array()
        .expect("breaks")
        .iter()
        .map(|b| b["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        [
            "equation_without_obligation",
            "failing",
            "no_test",
            "no_evidence",
            "harness_not_found"
        ]
    );
}

#[test]
fn audit_passes_when_every_chain_holds() {
    let ws = workspace();
    // Keep only the obligation whose falsifier passes, and the harness that exists.
    let path = ws.path().join("contracts/math-v1.yaml");
    let text = fs::read_to_string(&path).expect("read");
    let start = text.find("  - id: EQ-MATH-SOFTMAX").expect("softmax");
    let end = text.find("proof_obligations:").expect("obligations");
    let mut t = format!("{}{}", &text[..start], &text[end..]);
    let start = t.find("  - id: PO-MATH-002").expect("po2");
    let end = t.find("  - id: PO-MATH-004").expect("po4");
    t.replace_range(start..end, "");
    let start = t.find("  - id: PO-MATH-005").expect("po5");
    let end = t.find("amendment_history:").expect("history");
    t.replace_range(start..end, "");
    fs::write(&path, t).expect("write");
    run(
        ws.path(),
        "FALSIFY-MATH-EXACT-001",
        "max_abs_diff",
        Op::Le,
        0.0,
        0.0,
    );
    let o = pv(ws.path(), &["audit"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("audit: 2 obligations, every chain intact\n")
            && stdout(&o).ends_with(
                "0 invalid, 0 loose, 0 unattested, 0 missing, 0 unreadable; 1 run(s), unsigned\n"
            ),
        "{}",
        stdout(&o)
    );
    // A failing run after the pass breaks the chain again.
    run(
        ws.path(),
        "FALSIFY-MATH-EXACT-001",
        "max_abs_diff",
        Op::Le,
        0.0,
        1.0,
    );
    let o = pv(ws.path(), &["audit"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains(
        "PO-MATH-001 -> FALSIFY-MATH-EXACT-001 -> test -> evidence: the newest decisive run fails"
    ));
}

#[test]
fn kani_skeletons_fail_until_written() {
    let ws = workspace();
    // Before the harness is written: a skeleton that panics.
    fs::remove_file(ws.path().join("math/src/proofs.rs")).expect("rm");
    let o = pv(ws.path(), &["kani", "math-v1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let src = stdout(&o);
    // Only PO-MATH-004 is marked; its harness keeps the name the contract gives it.
    assert_eq!(src.matches("#[kani::proof]").count(), 1);
    assert!(src.contains("fn scale_exact() {"), "{src}");
    assert!(src.contains("panic!(\"Kani harness for PO-MATH-004 is not written yet\");"));
    insta::assert_snapshot!("kani_skeleton", src);

    let o = pv(ws.path(), &["kani", "base-v1"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "error: base-v1 has no proof obligation marked `kani: true`; nothing to generate\n"
    );
    let o = pv(ws.path(), &["kani", "nope-v1"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn kani_never_replaces_written_harnesses() {
    let ws = workspace();
    // math/src/proofs.rs has `#[kani::proof] fn scale_exact`: no skeleton for PO-MATH-004.
    let o = pv(ws.path(), &["kani", "math-v1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let src = stdout(&o);
    assert_eq!(src.matches("#[kani::proof]").count(), 0, "{src}");
    assert!(src.contains(
        "// PO-MATH-004: already written (math::proofs::scale_exact); not regenerated. \
         Not run here: Kani is not installed."
    ));
    // Hostile: -o naming an existing file (a written harness file) is refused, and the file
    // is left as it was.
    let target = ws.path().join("math/src/proofs.rs");
    let before = fs::read_to_string(&target).expect("read");
    let o = Command::new(env!("CARGO_BIN_EXE_pv"))
        .args(["kani", "math-v1", "-o"])
        .arg(&target)
        .arg("--root")
        .arg(ws.path())
        .output()
        .expect("run pv");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("never overwrites a file"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::read_to_string(&target).expect("read"), before);
}

#[test]
fn docs_rules_lists_every_rule_code() {
    let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/rules.md"))
        .expect("docs/rules.md exists");
    for rule in pv_contract::rules::RULES {
        assert!(
            doc.contains(&format!("| {} |", rule.code)),
            "docs/rules.md has no row for {} ({})",
            rule.code,
            rule.summary
        );
    }
}
