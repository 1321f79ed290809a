//! Falsifiers of `contracts/trace-moe-sub-stages-v1.yaml`.
//!
//! Each falsifier's body computes the metrics its contract entry names (the thresholds live only
//! in the contract; `#[falsifier]` compares and records). Each also has a plain `*_can_fail`
//! test that feeds the same check a deliberately broken component and asserts that the metric
//! then shows the failure, so none of these checks passes by construction.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;

use contract_macros::falsifier;
use engine::tracing::npy::{NpyArray, NpyData};
use engine::tracing::{PlanDims, SpecError, Stage, TracePlan};
use pv_evidence::{Ctx, FalsifierResult};

// ---------------------------------------------------------------------------------------------
// FALSIFY-TRACE-SPEC-ERRORS-001
// ---------------------------------------------------------------------------------------------

const SPEC_DIMS: PlanDims = PlanDims {
    n_layer: 48,
    n_expert: 128,
    n_tokens: 6,
};

/// Bad specs, each with the text its error must point at (the caret span).
const BAD_SPECS: &[(&str, &str)] = &[
    ("moe_routr", "moe_routr"),              // unknown stage
    ("q,moe_ffn_ot@layers=1", "moe_ffn_ot"), // unknown stage in a list
    ("q@layer=3", "layer"),                  // unknown key
    ("q@position=last", "position"),         // unknown key
    ("q@layers", "layers"),                  // missing `=`
    ("q@layers=1@layers=2", "layers=2"),     // duplicate key
    ("q@layers=48", "48"),                   // layer out of range
    ("q@layers=0..49", "0..49"),             // range past the end
    ("q@layers=0..=48", "0..=48"),           // inclusive range past the end
    ("q@layers=5..2", "5..2"),               // reversed range
    ("q@layers=3..3", "3..3"),               // empty range
    ("q@layers=1..2..3", "2..3"),            // malformed range
    ("q@layers=1...3", ".3"),                // malformed range
    ("q@layers=x..3", "x"),                  // not a number
    ("q@layers=-1", "-1"),                   // negative
    ("q@layers=last", "last"),               // `last` is for positions
    ("q@pos=6", "6"),                        // position past the end
    ("q@pos=2..9", "2..9"),                  // positions past the end
    ("moe_expert_up@experts=128", "128"),    // expert out of range
    ("q@experts=1", "experts=1"),            // experts on a non-expert stage
    ("logits@layers=1", "layers=1"),         // layers on a stage with no layer
    ("all,q", "all"),                        // `all` mixed with names
    ("q@layers=all,1", "all"),               // `all` mixed with items
    (
        "q@layers=99999999999999999999999",
        "99999999999999999999999",
    ), // overflow
];

/// Bad specs whose error is an empty span at a byte offset (nothing to underline).
const BAD_SPECS_AT: &[(&str, usize)] = &[
    ("q;;k", 2),           // empty clause
    ("q;", 2),             // trailing empty clause
    ("q@layers=", 9),      // empty value
    ("q,,k", 2),           // empty stage name
    ("q@layers=1,,2", 11), // empty item
    ("@layers=1", 0),      // no stages
];

type Triple = (Stage, Option<usize>, usize);
type Selects = Box<dyn Fn(Triple) -> bool>;

/// Good specs and exactly what they select, as (stage, layer, position) triples, checked
/// exhaustively over every stage, layer and position of `SPEC_DIMS`.
fn good_specs() -> Vec<(&'static str, Selects)> {
    vec![
        (
            "moe_router,moe_ffn_out@layers=0..48@pos=last",
            Box::new(|(s, l, p)| {
                matches!(s, Stage::MoeRouter | Stage::MoeFfnOut) && l.is_some() && p == 5
            }),
        ),
        (
            "logits ; q @ layers = 3..=4 , 7 @pos=0,last",
            Box::new(|(s, l, p)| {
                s == Stage::Logits
                    || (s == Stage::Q && matches!(l, Some(3 | 4 | 7)) && (p == 0 || p == 5))
            }),
        ),
        (
            "layer_out@layers=..2,46..@pos=1..3",
            Box::new(|(s, l, p)| {
                s == Stage::LayerOut && matches!(l, Some(0 | 1 | 46 | 47)) && (1..3).contains(&p)
            }),
        ),
        (
            "all@layers=10",
            Box::new(|(s, l, _)| match s.phase() {
                engine::tracing::Phase::Layer => l == Some(10),
                _ => true,
            }),
        ),
        ("embed@pos=all", Box::new(|(s, _, _)| s == Stage::Embed)),
    ]
}

#[derive(Debug, Default, PartialEq)]
struct SpecMetrics {
    bad_specs_accepted: usize,
    misplaced_carets: usize,
    good_specs_misread: usize,
}

fn spec_metrics(parse: &dyn Fn(&str, PlanDims) -> Result<TracePlan, SpecError>) -> SpecMetrics {
    let mut m = SpecMetrics::default();
    let mut check_bad = |spec: &str, want: Range<usize>| match parse(spec, SPEC_DIMS) {
        Ok(_) => {
            eprintln!("accepted bad spec {spec:?}");
            m.bad_specs_accepted += 1;
        }
        Err(e) => {
            // The rendered message must show the spec and a caret line of the span's width.
            let rendered = e.to_string();
            let caret_ok = e.span == want && rendered.contains(&format!("  | {spec}"));
            if !caret_ok {
                eprintln!(
                    "spec {spec:?}: error span {:?}, want {want:?}\n{rendered}",
                    e.span
                );
                m.misplaced_carets += 1;
            }
        }
    };
    for (spec, bad_text) in BAD_SPECS {
        // In every table entry the offending text is its last occurrence in the spec.
        let start = spec
            .rfind(bad_text)
            .expect("table entry: the bad text occurs in the spec");
        check_bad(spec, start..start + bad_text.len());
    }
    for (spec, at) in BAD_SPECS_AT {
        check_bad(spec, *at..*at);
    }
    for (spec, expect) in good_specs() {
        match parse(spec, SPEC_DIMS) {
            Err(e) => {
                eprintln!("rejected good spec {spec:?}:\n{e}");
                m.good_specs_misread += 1;
            }
            Ok(plan) => {
                let mut wrong = 0;
                for s in Stage::ALL {
                    let layers: Vec<Option<usize>> = match s.phase() {
                        engine::tracing::Phase::Layer => (0..SPEC_DIMS.n_layer).map(Some).collect(),
                        _ => vec![None],
                    };
                    for l in layers {
                        for p in 0..SPEC_DIMS.n_tokens {
                            if plan.wants(s, l, p) != expect((s, l, p)) {
                                wrong += 1;
                            }
                        }
                    }
                }
                if wrong > 0 {
                    eprintln!("good spec {spec:?}: {wrong} (stage, layer, pos) triples misread");
                    m.good_specs_misread += 1;
                }
            }
        }
    }
    m
}

#[falsifier("FALSIFY-TRACE-SPEC-ERRORS-001")]
fn trace_spec_errors(ctx: &mut Ctx) -> FalsifierResult {
    let m = spec_metrics(&TracePlan::parse);
    ctx.metric("bad_specs_accepted", m.bad_specs_accepted as f64);
    ctx.metric("misplaced_carets", m.misplaced_carets as f64);
    ctx.metric("good_specs_misread", m.good_specs_misread as f64);
    ctx.note(format!(
        "{} bad specs, {} good specs checked exhaustively over {} stages x {} layers x {} positions",
        BAD_SPECS.len() + BAD_SPECS_AT.len(),
        good_specs().len(),
        Stage::ALL.len(),
        SPEC_DIMS.n_layer,
        SPEC_DIMS.n_tokens
    ));
    Ok(())
}

#[test]
fn falsify_trace_spec_errors_001_can_fail() {
    // A parser that forgets to check ranges (binds against a huge model) accepts bad specs.
    let lax = |spec: &str, _dims: PlanDims| {
        TracePlan::parse(
            spec,
            PlanDims {
                n_layer: 1000,
                n_expert: 1000,
                n_tokens: 1000,
            },
        )
    };
    assert!(spec_metrics(&lax).bad_specs_accepted > 0);
    // A parser whose spans are off by one misplaces carets.
    let shifted = |spec: &str, dims: PlanDims| {
        TracePlan::parse(spec, dims).map_err(|mut e| {
            e.span = e.span.start + 1..e.span.end + 1;
            e
        })
    };
    assert!(spec_metrics(&shifted).misplaced_carets > 0);
    // A parser that treats every range as inclusive misreads good specs.
    let inclusive = |spec: &str, dims: PlanDims| {
        TracePlan::parse(&spec.replace("..", "..=").replace("..==", "..="), dims)
    };
    assert!(spec_metrics(&inclusive).good_specs_misread > 0);
}

// ---------------------------------------------------------------------------------------------
// FALSIFY-TRACE-NPY-NUMPY-001 (fixture: python-oracle)
// ---------------------------------------------------------------------------------------------

/// The oracle python (`$PV_ORACLE_PYTHON`, fixture python-oracle in pv.toml), if it can import numpy.
fn oracle_python() -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var_os("PV_ORACLE_PYTHON")?);
    let ok = Command::new(&p)
        .args(["-c", "import numpy"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok.then_some(p)
}

fn npy_cases() -> Vec<NpyArray> {
    let specials = vec![
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -0.0,
        f32::from_bits(1),
        f32::MIN_POSITIVE,
        f32::MAX,
        1.0 / 3.0,
    ];
    let ramp = |n: usize| {
        (0..n)
            .map(|i| (i as f32 - 7.5) * 0.37)
            .collect::<Vec<f32>>()
    };
    vec![
        NpyArray::new(vec![8], NpyData::F32(specials)).expect("shape matches"),
        NpyArray::new(vec![4, 6], NpyData::F32(ramp(24))).expect("shape matches"),
        NpyArray::new(vec![2, 3, 5], NpyData::F32(ramp(30))).expect("shape matches"),
        NpyArray::new(vec![1], NpyData::F32(vec![42.0])).expect("shape matches"),
        NpyArray::new(
            vec![8],
            NpyData::I32(vec![0, 1, -1, i32::MAX, i32::MIN, 7, 127, 3]),
        )
        .expect("shape matches"),
        NpyArray::new(vec![3, 2], NpyData::I32(vec![5, 4, 3, 2, 1, 0])).expect("shape matches"),
    ]
}

fn raw_bytes(d: &NpyData) -> Vec<u8> {
    match d {
        NpyData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        NpyData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

const NUMPY_CHECK: &str = r#"
import json, sys, numpy as np
d = sys.argv[1]
out = []
for i in range(int(sys.argv[2])):
    x = np.load(f"{d}/ours_{i}.npy")
    out.append({"descr": x.dtype.str, "shape": list(x.shape), "hex": x.tobytes().hex()})
    np.save(f"{d}/numpy_{i}.npy", x)
print(json.dumps(out))
"#;

/// Writes every case with `write`, has numpy load it and save it again, and counts cases where
/// numpy saw another dtype, shape or bit pattern, or where our reader reads numpy's file
/// differently.
fn npy_mismatches(python: &Path, write: &dyn Fn(&NpyArray) -> Vec<u8>) -> usize {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = npy_cases();
    for (i, a) in cases.iter().enumerate() {
        std::fs::write(dir.path().join(format!("ours_{i}.npy")), write(a)).expect("write npy");
    }
    let out = Command::new(python)
        .args(["-c", NUMPY_CHECK])
        .arg(dir.path())
        .arg(cases.len().to_string())
        .output()
        .expect("run the oracle python");
    if !out.status.success() {
        eprintln!("numpy failed:\n{}", String::from_utf8_lossy(&out.stderr));
        return cases.len();
    }
    let seen: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).expect("numpy script prints JSON");
    let mut mismatches = 0;
    for (i, a) in cases.iter().enumerate() {
        let s = &seen[i];
        let shape: Vec<usize> = s["shape"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|d| d.as_u64())
                    .map(|d| d as usize)
                    .collect()
            })
            .unwrap_or_default();
        let hex: String = raw_bytes(&a.data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if s["descr"] != a.data.descr() || shape != a.shape || s["hex"] != hex.as_str() {
            eprintln!(
                "case {i}: numpy read {s}, we wrote {} {:?}",
                a.data.descr(),
                a.shape
            );
            mismatches += 1;
        }
        let back = std::fs::read(dir.path().join(format!("numpy_{i}.npy")))
            .ok()
            .and_then(|b| NpyArray::from_bytes(&b).ok());
        match back {
            Some(b) if b.shape == a.shape && raw_bytes(&b.data) == raw_bytes(&a.data) => {}
            other => {
                eprintln!("case {i}: our reader on numpy's file gave {other:?}");
                mismatches += 1;
            }
        }
    }
    mismatches
}

#[falsifier("FALSIFY-TRACE-NPY-NUMPY-001")]
fn trace_npy_numpy(ctx: &mut Ctx) -> FalsifierResult {
    let python = std::path::PathBuf::from(ctx.fixture("python-oracle")?);
    let m = npy_mismatches(&python, &|a| a.to_bytes().expect("serialize"));
    ctx.metric("numpy_mismatches", m as f64);
    ctx.note(format!(
        "{} arrays (f32 and i32, rank 1 to 3, NaN/Inf/-0/subnormals) both ways",
        npy_cases().len()
    ));
    Ok(())
}

#[test]
fn falsify_trace_npy_numpy_001_can_fail() {
    let Some(python) = oracle_python() else {
        eprintln!("SKIPPED: $PV_ORACLE_PYTHON with numpy not found");
        return;
    };
    // A writer that stores big-endian data under a little-endian header.
    let big_endian = |a: &NpyArray| {
        let mut bytes = a.to_bytes().expect("serialize");
        let data_at = bytes.len() - a.data.len() * 4;
        for w in bytes[data_at..].chunks_exact_mut(4) {
            w.reverse();
        }
        bytes
    };
    assert!(npy_mismatches(&python, &big_endian) > 0);
}

// ---------------------------------------------------------------------------------------------
// Harness for the falsifiers that run a forward: FALSIFY-TRACE-NO-EFFECT-001,
// FALSIFY-TRACE-PLANTED-001, FALSIFY-TRACE-FIRST-NAN-001, FALSIFY-TRACE-OFF-COST-001.
//
// Each takes the forward under test as a closure, so the same code runs against the production
// CPU forward (and, on the GPU machine, the CUDA forward) and, in the `*_can_fail` self-tests,
// against a small test double (`toy`) with known bugs.
// ---------------------------------------------------------------------------------------------

use engine::tracing::diff::{diff_dirs, DiffOptions, DiffReport};
use engine::tracing::{HookedWriter, ModelInfo, RunInfo, TraceHook, TraceWriter};

/// A forward under test: (tokens, planted wrong-qtype layer, hook) -> logits of every position.
type Forward<'a> =
    &'a (dyn Fn(&[u32], Option<usize>, Option<&mut dyn TraceHook>) -> Vec<f32> + Sync);

/// Runs `fwd` with a trace of `spec` into `dir`; returns the logits and the trace's report of
/// the run (the manifest is written).
fn trace_into(
    fwd: Forward,
    dims: PlanDims,
    tokens: &[u32],
    planted: Option<usize>,
    spec: &str,
    dir: &Path,
) -> Vec<f32> {
    let plan = TracePlan::parse(spec, dims).expect("harness specs are valid");
    let mut hook = HookedWriter::new(TraceWriter::create(dir, plan).expect("new trace dir"));
    let logits = fwd(tokens, planted, Some(&mut hook));
    let writer = hook
        .into_writer()
        .expect("trace written without I/O errors");
    writer
        .finish(RunInfo {
            model: ModelInfo {
                path: "under-test".into(),
                header_sha256: "same".into(),
                header_bytes: 0,
                n_layer: dims.n_layer,
                n_expert: dims.n_expert,
                n_expert_used: 0,
            },
            device: "cpu".into(),
            precision: "f32".into(),
            forward_options: format!("planted={planted:?}"),
            tokens: tokens.to_vec(),
        })
        .expect("manifest written");
    logits
}

fn differing_bits(a: &[f32], b: &[f32]) -> usize {
    if a.len() != b.len() {
        return a.len().max(b.len());
    }
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count()
}

/// FALSIFY-TRACE-NO-EFFECT-001: (logit_bits_differing, traced_logit_bits_differing).
fn no_effect_metrics(fwd: Forward, dims: PlanDims, tokens: &[u32]) -> (usize, usize) {
    let plain = fwd(tokens, None, None);
    let tmp = tempfile::tempdir().expect("temp dir");
    let traced = trace_into(fwd, dims, tokens, None, "all", tmp.path());
    // The traced `logits` stage, position by position, must equal the returned logits.
    let t = engine::tracing::TraceDir::open(tmp.path()).expect("trace dir");
    let mut from_trace = Vec::new();
    for e in t.manifest.tensors.iter().filter(|e| e.stage == "logits") {
        match t.load(e).expect("tensor").data {
            NpyData::F32(v) => from_trace.extend(v),
            NpyData::I32(_) => return (differing_bits(&plain, &traced), plain.len()),
        }
    }
    (
        differing_bits(&plain, &traced),
        differing_bits(&plain, &from_trace),
    )
}

/// Traces the clean and the planted forward (every stage) and diffs them.
fn planted_report(
    fwd: Forward,
    dims: PlanDims,
    tokens: &[u32],
    planted: Option<usize>,
) -> DiffReport {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (a, b) = (tmp.path().join("clean"), tmp.path().join("planted"));
    trace_into(fwd, dims, tokens, None, "all", &a);
    trace_into(fwd, dims, tokens, planted, "all", &b);
    diff_dirs(&a, &b, DiffOptions::default()).expect("diff")
}

/// FALSIFY-TRACE-PLANTED-001: (misattributed_runs, divergences_with_bug_off).
fn planted_metrics(
    fwd: Forward,
    dims: PlanDims,
    tokens: &[u32],
    expected_stage: Stage,
) -> (usize, usize) {
    let mut layers = vec![0, dims.n_layer / 2, dims.n_layer - 1];
    layers.dedup();
    let mut misattributed = 0;
    for &l in &layers {
        let r = planted_report(fwd, dims, tokens, Some(l));
        let got = r
            .first_divergence
            .as_ref()
            .map(|d| (d.location.layer, d.location.stage.clone()));
        if got != Some((Some(l), expected_stage.name().to_string())) {
            eprintln!("planted at layer {l} ({expected_stage}): first divergence {got:?}");
            misattributed += 1;
        }
    }
    let off = planted_report(fwd, dims, tokens, None);
    (misattributed, off.diverged)
}

/// FALSIFY-TRACE-FIRST-NAN-001: `clean` and `with_nan` are the same model except for a NaN in
/// layer `layer`'s ffn_norm weight. Returns misattributed_first_nan (0 or 1).
fn first_nan_metric(
    clean: Forward,
    with_nan: Forward,
    dims: PlanDims,
    tokens: &[u32],
    layer: usize,
) -> usize {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (a, b) = (tmp.path().join("clean"), tmp.path().join("nan"));
    trace_into(clean, dims, tokens, None, "all", &a);
    trace_into(with_nan, dims, tokens, None, "all", &b);
    let r = diff_dirs(&a, &b, DiffOptions::default()).expect("diff");
    let got = r
        .first_nan_b
        .as_ref()
        .map(|n| (n.location.layer, n.location.stage.clone()));
    let want = Some((Some(layer), Stage::FfnNorm.name().to_string()));
    if got != want || r.first_nan_a.is_some() {
        eprintln!(
            "first NaN: A {:?}, B {got:?}; want B {want:?}",
            r.first_nan_a.map(|n| n.location.description)
        );
        return 1;
    }
    0
}

/// FALSIFY-TRACE-OFF-COST-001: CPU time of a forward given a hook that selects nothing over
/// that of a forward given no hook. The forward runs in a private one-thread rayon pool (its
/// results do not depend on the thread count) and is timed by that thread's CPU clock, so that
/// other processes and tests competing for the cores do not enter the measurement; pairs of runs
/// in ABBA order cancel drift (caches, frequency); the median of the per-pair ratios is kept.
fn idle_sink_overhead_ratio(fwd: Forward, tokens: &[u32], pairs: usize) -> f64 {
    // What a plan that selects nothing answers at every stage.
    struct Nothing;
    impl TraceHook for Nothing {
        fn wants(&self, _: Stage, _: Option<usize>, _: usize) -> bool {
            false
        }
        fn wants_expert(&self, _: Stage, _: usize, _: usize, _: usize) -> bool {
            false
        }
        fn record_f32(&mut self, _: engine::tracing::TensorKey, _: &[usize], _: &[f32]) {}
        fn record_i32(&mut self, _: engine::tracing::TensorKey, _: &[usize], _: &[i32]) {}
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    pool.install(|| {
        let time = |idle: bool| {
            let mut h = Nothing;
            let hook: Option<&mut dyn TraceHook> = if idle { Some(&mut h) } else { None };
            let t = thread_cpu_seconds();
            std::hint::black_box(fwd(tokens, None, hook));
            thread_cpu_seconds() - t
        };
        // Warm caches and page in the weights.
        time(false);
        time(true);
        let mut ratios: Vec<f64> = (0..pairs)
            .map(|i| {
                if i % 2 == 0 {
                    let off = time(false);
                    time(true) / off
                } else {
                    let idle = time(true);
                    idle / time(false)
                }
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios[ratios.len() / 2]
    })
}

/// CPU time consumed by the calling thread (Linux `CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

// ---------------------------------------------------------------------------------------------
// `toy`: a test double for the harness self-tests. It is NOT the engine's forward and no
// contract falsifier runs on it; it only shows that each check above can fail. It emits the
// MoE stages through the same hook API (attention is left out: positions do not mix).
// ---------------------------------------------------------------------------------------------

mod toy {
    use engine::tracing::{emit_rows, Stage, TensorKey, TraceHook};

    pub const N_LAYER: usize = 4;
    pub const HIDDEN: usize = 8;
    pub const N_EXPERT: usize = 6;
    pub const K: usize = 2;
    const FF: usize = 5;
    const VOCAB: usize = 11;

    /// The known bugs a toy forward can carry.
    #[derive(Clone, Copy, Default)]
    pub struct Bugs {
        /// Tracing changes the result (rounds the residual when a hook is present).
        pub hook_changes_result: bool,
        /// Hands the per-expert stages over under the next layer's index (an off-by-one in the
        /// hook calls), so a bisection would look in the wrong place.
        pub expert_layer_off_by_one: bool,
        /// A NaN in this layer's ffn_norm weight.
        pub nan_ffn_norm: Option<usize>,
        /// Copies every stage out (into a scratch buffer) whenever a hook is present, before
        /// asking whether it is wanted.
        pub copies_before_asking: bool,
    }

    fn w(seed: usize, n: usize) -> Vec<f32> {
        // Deterministic pseudo-random weights in [-0.5, 0.5).
        let mut s = (seed as u64)
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    fn matvec(m: &[f32], x: &[f32], rows: usize) -> Vec<f32> {
        (0..rows)
            .map(|r| {
                m[r * x.len()..(r + 1) * x.len()]
                    .iter()
                    .zip(x)
                    .map(|(a, b)| a * b)
                    .sum()
            })
            .collect()
    }

    fn rms(x: &[f32], g: &[f32]) -> Vec<f32> {
        let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
        let s = 1.0 / (ms + 1e-6).sqrt();
        x.iter().zip(g).map(|(v, g)| v * s * g).collect()
    }

    pub fn forward(
        tokens: &[u32],
        planted: Option<usize>,
        mut hook: Option<&mut dyn TraceHook>,
        bugs: Bugs,
    ) -> Vec<f32> {
        let mut logits_all = Vec::new();
        for (pos, &tok) in tokens.iter().enumerate() {
            let mut x = w(1000 + tok as usize, HIDDEN);
            emit_rows(&mut hook, Stage::Embed, None, None, pos, &[HIDDEN], &x);
            for l in 0..N_LAYER {
                let seed = 10_000 * (l + 1);
                let h = rms(&x, &[1.0; HIDDEN]);
                emit_rows(
                    &mut hook,
                    Stage::AttnNorm,
                    None,
                    Some(l),
                    pos,
                    &[HIDDEN],
                    &h,
                );
                let a = matvec(&w(seed + 1, HIDDEN * HIDDEN), &h, HIDDEN);
                emit_rows(&mut hook, Stage::AttnOut, None, Some(l), pos, &[HIDDEN], &a);
                for (xi, ai) in x.iter_mut().zip(&a) {
                    *xi += ai;
                }
                if bugs.hook_changes_result && hook.is_some() {
                    x.iter_mut()
                        .for_each(|v| *v = (*v * 1024.0).round() / 1024.0);
                }
                if bugs.copies_before_asking && hook.is_some() {
                    // What a careless hook call site costs: a large copy per stage.
                    let scratch: Vec<f32> = x.iter().copied().cycle().take(1 << 16).collect();
                    std::hint::black_box(scratch);
                }
                emit_rows(
                    &mut hook,
                    Stage::AttnResidual,
                    None,
                    Some(l),
                    pos,
                    &[HIDDEN],
                    &x,
                );
                let mut g = vec![1.0; HIDDEN];
                if bugs.nan_ffn_norm == Some(l) {
                    g[3] = f32::NAN;
                }
                let h = rms(&x, &g);
                emit_rows(&mut hook, Stage::FfnNorm, None, Some(l), pos, &[HIDDEN], &h);
                let rl = matvec(&w(seed + 2, N_EXPERT * HIDDEN), &h, N_EXPERT);
                let max = rl.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = rl.iter().map(|v| (v - max).exp()).collect();
                let sum: f32 = e.iter().sum();
                let p: Vec<f32> = e.iter().map(|v| v / sum).collect();
                let mut order: Vec<usize> = (0..N_EXPERT).collect();
                order.sort_by(|&i, &j| p[j].total_cmp(&p[i]));
                let ids: Vec<usize> = order[..K].to_vec();
                let wsum: f32 = ids.iter().map(|&i| p[i]).sum();
                let weights: Vec<f32> = ids.iter().map(|&i| p[i] / wsum).collect();
                let margin = p[order[K - 1]] - p[order[K]];
                if let Some(hk) = hook.as_deref_mut() {
                    if hk.wants(Stage::MoeRouter, Some(l), pos) {
                        let k = TensorKey::new(Stage::MoeRouter, Some(l), pos);
                        hk.record_f32(k.clone().part("logits"), &[N_EXPERT], &rl);
                        let ids32: Vec<i32> = ids.iter().map(|&i| i as i32).collect();
                        hk.record_i32(k.clone().part("topk_ids"), &[K], &ids32);
                        hk.record_f32(k.clone().part("topk_weights"), &[K], &weights);
                        hk.record_f32(k.part("margin"), &[1], &[margin]);
                    }
                }
                let mut moe = vec![0.0f32; HIDDEN];
                for (&ex, &wt) in ids.iter().zip(&weights) {
                    let es = seed + 100 * (ex + 1);
                    // The planted "wrong qtype" bug reads the gate matrix with the up matrix's
                    // layout, i.e. gets the wrong numbers, at one layer.
                    let gate_seed = if planted == Some(l) { es + 2 } else { es + 1 };
                    let gate = matvec(&w(gate_seed, FF * HIDDEN), &h, FF);
                    let up = matvec(&w(es + 2, FF * HIDDEN), &h, FF);
                    let sw: Vec<f32> = gate
                        .iter()
                        .zip(&up)
                        .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                        .collect();
                    let out = matvec(&w(es + 3, HIDDEN * FF), &sw, HIDDEN);
                    if let Some(hk) = hook.as_deref_mut() {
                        for (stage, v) in [
                            (Stage::MoeExpertGate, &gate),
                            (Stage::MoeExpertUp, &up),
                            (Stage::MoeExpertSwiglu, &sw),
                            (Stage::MoeExpertOut, &out),
                        ] {
                            let tl = if bugs.expert_layer_off_by_one {
                                l + 1
                            } else {
                                l
                            };
                            if hk.wants_expert(stage, tl, pos, ex) {
                                let key = TensorKey::new(stage, Some(tl), pos).expert(ex);
                                hk.record_f32(key, &[v.len()], v);
                            }
                        }
                    }
                    for (m, o) in moe.iter_mut().zip(&out) {
                        *m += wt * o;
                    }
                }
                emit_rows(
                    &mut hook,
                    Stage::MoeFfnOut,
                    None,
                    Some(l),
                    pos,
                    &[HIDDEN],
                    &moe,
                );
                for (xi, m) in x.iter_mut().zip(&moe) {
                    *xi += m;
                }
                emit_rows(
                    &mut hook,
                    Stage::LayerOut,
                    None,
                    Some(l),
                    pos,
                    &[HIDDEN],
                    &x,
                );
            }
            let h = rms(&x, &[1.0; HIDDEN]);
            emit_rows(&mut hook, Stage::FinalNorm, None, None, pos, &[HIDDEN], &h);
            let logits = matvec(&w(7, VOCAB * HIDDEN), &h, VOCAB);
            emit_rows(&mut hook, Stage::Logits, None, None, pos, &[VOCAB], &logits);
            logits_all.extend(logits);
        }
        logits_all
    }
}

const TOY_DIMS: PlanDims = PlanDims {
    n_layer: toy::N_LAYER,
    n_expert: toy::N_EXPERT,
    n_tokens: 3,
};
const TOY_TOKENS: &[u32] = &[3, 1, 4];

#[test]
fn harness_passes_on_a_correct_toy_forward() {
    let good = |t: &[u32], p: Option<usize>, h: Option<&mut dyn TraceHook>| {
        toy::forward(t, p, h, toy::Bugs::default())
    };
    assert_eq!(no_effect_metrics(&good, TOY_DIMS, TOY_TOKENS), (0, 0));
    assert_eq!(
        planted_metrics(&good, TOY_DIMS, TOY_TOKENS, Stage::MoeExpertGate),
        (0, 0)
    );
    let nan = |t: &[u32], p: Option<usize>, h: Option<&mut dyn TraceHook>| {
        toy::forward(
            t,
            p,
            h,
            toy::Bugs {
                nan_ffn_norm: Some(2),
                ..Default::default()
            },
        )
    };
    assert_eq!(first_nan_metric(&good, &nan, TOY_DIMS, TOY_TOKENS, 2), 0);
    let ratio = idle_sink_overhead_ratio(&good, TOY_TOKENS, 5);
    assert!(ratio.is_finite() && ratio > 0.0);
}

#[test]
fn no_effect_can_fail() {
    let bad = |t: &[u32], p: Option<usize>, h: Option<&mut dyn TraceHook>| {
        toy::forward(
            t,
            p,
            h,
            toy::Bugs {
                hook_changes_result: true,
                ..Default::default()
            },
        )
    };
    let (differing, _) = no_effect_metrics(&bad, TOY_DIMS, TOY_TOKENS);
    assert!(differing > 0);
}

#[test]
fn planted_can_fail() {
    let good = |t: &[u32], p: Option<usize>, h: Option<&mut dyn TraceHook>| {
        toy::forward(t, p, h, toy::Bugs::default())
    };
    // Expecting the wrong stage is a misattribution.
    let (mis, _) = planted_metrics(&good, TOY_DIMS, TOY_TOKENS, Stage::MoeExpertUp);
    assert_eq!(mis, 3);
    // A forward that hands stages over under the wrong layer misleads the bisection.
    let off = |t: &[u32], p: Option<usize>, h: Option<&mut dyn TraceHook>| {
        toy::forward(
            t,
            p,
            h,
            toy::Bugs {
                expert_layer_off_by_one: true,
                ..Default::default()
            },
        )
    };
    let (mis, _) = planted_metrics(&off, TOY_DIMS, TOY_TOKENS, Stage::MoeExpertGate);
    assert_eq!(mis, 3);
    // A forward that is not deterministic from run to run (here: every second run carries the
    // bug) shows divergences with the switch off.
    let runs = std::sync::atomic::AtomicUsize::new(0);
    let flaky = |t: &[u32], p: Option<usize>, h: Option<&mut dyn TraceHook>| {
        let run = runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let p = if run % 2 == 0 { Some(1) } else { p };
        toy::forward(t, p, h, toy::Bugs::default())
    };
    let (_, divergences_with_bug_off) =
        planted_metrics(&flaky, TOY_DIMS, TOY_TOKENS, Stage::MoeExpertGate);
    assert!(divergences_with_bug_off > 0);
}

#[test]
fn first_nan_can_fail() {
    let good = |t: &[u32], p: Option<usize>, h: Option<&mut dyn TraceHook>| {
        toy::forward(t, p, h, toy::Bugs::default())
    };
    let nan = |t: &[u32], p: Option<usize>, h: Option<&mut dyn TraceHook>| {
        toy::forward(
            t,
            p,
            h,
            toy::Bugs {
                nan_ffn_norm: Some(2),
                ..Default::default()
            },
        )
    };
    // Claiming the NaN is in another layer, or comparing against a clean model, must fail.
    assert_eq!(first_nan_metric(&good, &nan, TOY_DIMS, TOY_TOKENS, 1), 1);
    assert_eq!(first_nan_metric(&good, &good, TOY_DIMS, TOY_TOKENS, 2), 1);
}

// ---------------------------------------------------------------------------------------------
// The falsifiers proper, on the production CPU forward (engine::model) and synthetic models
// written by engine::synth.
// ---------------------------------------------------------------------------------------------

use engine::model::{ForwardOptions, GgufFile, KvCache, Logits, Model};
use engine::synth::{write_synthetic, SynthQuant, SynthShape};

fn synth(dir: &Path, preset: &str, quant: SynthQuant, seed: u64) -> PathBuf {
    let p = dir.join(format!("{preset}-{quant:?}-{seed}.gguf"));
    let shape = SynthShape::preset(preset).expect("known preset");
    write_synthetic(&p, &shape, quant, seed).expect("synthetic model written");
    p
}

/// The production forward of `m` as the harness calls it: a fresh KV cache, default options
/// except the planted-bug switch, logits of every position.
fn production<'a>(
    m: &'a Model<'a>,
) -> impl Fn(&[u32], Option<usize>, Option<&mut dyn TraceHook>) -> Vec<f32> + Sync + 'a {
    move |tokens, planted, hook| {
        let mut cache = KvCache::new(m, tokens.len());
        let opts = ForwardOptions {
            debug_wrong_qtype_layer: planted,
            ..Default::default()
        };
        m.forward(tokens, &mut cache, &opts, Logits::All, hook)
            .expect("forward runs")
    }
}

fn dims_of(m: &Model<'_>, tokens: &[u32]) -> PlanDims {
    PlanDims {
        n_layer: m.config.n_layer,
        n_expert: m.config.n_expert,
        n_tokens: tokens.len(),
    }
}

fn tokens_for(m: &Model<'_>, n: usize, seed: u64) -> Vec<u32> {
    let mut rng = engine::sampling::Rng::new(seed);
    (0..n)
        .map(|_| (rng.next_u64() % m.config.vocab as u64) as u32)
        .collect()
}

#[falsifier("FALSIFY-TRACE-NO-EFFECT-001")]
fn trace_no_effect(ctx: &mut Ctx) -> FalsifierResult {
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = synth(tmp.path(), "tiny", SynthQuant::Q4KM, 11);
    let file = GgufFile::open(&path).expect("open");
    let model = Model::load(&file).expect("load");
    let tokens = tokens_for(&model, 7, 1);
    let fwd = production(&model);
    let (logit_bits_differing, traced_logit_bits_differing) =
        no_effect_metrics(&fwd, dims_of(&model, &tokens), &tokens);
    ctx.metric("logit_bits_differing", logit_bits_differing as f64);
    ctx.metric(
        "traced_logit_bits_differing",
        traced_logit_bits_differing as f64,
    );
    ctx.note(format!(
        "tiny q4_k_m (seed 11), {} tokens, plan `all`, default forward options",
        tokens.len()
    ));
    Ok(())
}

#[test]
fn falsify_trace_no_effect_001_can_fail() {
    // The bit comparison sees a real change: the planted bug changes the logits.
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = synth(tmp.path(), "tiny", SynthQuant::Q4KM, 11);
    let file = GgufFile::open(&path).expect("open");
    let model = Model::load(&file).expect("load");
    let tokens = tokens_for(&model, 7, 1);
    let fwd = production(&model);
    assert!(differing_bits(&fwd(&tokens, None, None), &fwd(&tokens, Some(1), None)) > 0);
}

#[falsifier("FALSIFY-TRACE-PLANTED-001")]
fn trace_planted_bug_found(ctx: &mut Ctx) -> FalsifierResult {
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = synth(tmp.path(), "tiny-mixed", SynthQuant::Mixed, 5);
    let file = GgufFile::open(&path).expect("open");
    let model = Model::load(&file).expect("load");
    let tokens = tokens_for(&model, 6, 2);
    let fwd = production(&model);
    let (misattributed_runs, divergences_with_bug_off) =
        planted_metrics(&fwd, dims_of(&model, &tokens), &tokens, Stage::V);
    ctx.metric("misattributed_runs", misattributed_runs as f64);
    ctx.metric("divergences_with_bug_off", divergences_with_bug_off as f64);
    let n = model.config.n_layer;
    ctx.note(format!(
        "tiny-mixed (seed 5), {} tokens, planted at layers {:?}, expected stage v",
        tokens.len(),
        [0, n / 2, n - 1]
    ));
    Ok(())
}

#[test]
fn falsify_trace_planted_001_can_fail() {
    // The check tells stages apart: with the production forward, claiming that the planted bug
    // shows first in `q` (computed just before `v`, from the same input) is wrong every time.
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = synth(tmp.path(), "tiny-mixed", SynthQuant::Mixed, 5);
    let file = GgufFile::open(&path).expect("open");
    let model = Model::load(&file).expect("load");
    let tokens = tokens_for(&model, 6, 2);
    let fwd = production(&model);
    let (mis, _) = planted_metrics(&fwd, dims_of(&model, &tokens), &tokens, Stage::Q);
    assert_eq!(mis, 3);
}

/// Copies `src` to `dst` with element `index` of `tensor` (an F32 tensor) set to NaN.
fn with_nan(src: &Path, dst: &Path, tensor: &str, index: usize) {
    let file = GgufFile::open(src).expect("open");
    let info = file
        .tensors
        .iter()
        .find(|t| t.name == tensor)
        .expect("tensor exists");
    assert_eq!(
        info.qtype,
        engine::model::QType::F32,
        "norm weights are F32"
    );
    let at = info.offset + 4 * index;
    let mut bytes = std::fs::read(src).expect("read model");
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(dst, bytes).expect("write model");
}

fn first_nan_on_production(claimed_layer: usize) -> usize {
    let tmp = tempfile::tempdir().expect("temp dir");
    let clean_path = synth(tmp.path(), "tiny", SynthQuant::Q4KM, 13);
    let nan_path = tmp.path().join("nan.gguf");
    with_nan(&clean_path, &nan_path, "blk.1.ffn_norm.weight", 3);
    let (fc, fnan) = (
        GgufFile::open(&clean_path).expect("open"),
        GgufFile::open(&nan_path).expect("open"),
    );
    let (mc, mn) = (
        Model::load(&fc).expect("load"),
        Model::load(&fnan).expect("load"),
    );
    let tokens = tokens_for(&mc, 5, 3);
    let (clean, nan) = (production(&mc), production(&mn));
    first_nan_metric(&clean, &nan, dims_of(&mc, &tokens), &tokens, claimed_layer)
}

#[falsifier("FALSIFY-TRACE-FIRST-NAN-001")]
fn trace_first_nan_found(ctx: &mut Ctx) -> FalsifierResult {
    ctx.metric("misattributed_first_nan", first_nan_on_production(1) as f64);
    ctx.note("tiny q4_k_m (seed 13), blk.1.ffn_norm.weight[3] = NaN, 5 tokens");
    Ok(())
}

#[test]
fn falsify_trace_first_nan_001_can_fail() {
    assert_eq!(first_nan_on_production(0), 1);
}

#[falsifier("FALSIFY-TRACE-OFF-COST-001")]
fn trace_idle_hook_cost(ctx: &mut Ctx) -> FalsifierResult {
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = synth(tmp.path(), "tiny", SynthQuant::Q4KM, 17);
    let file = GgufFile::open(&path).expect("open");
    let model = Model::load(&file).expect("load");
    let tokens = tokens_for(&model, 16, 4);
    let fwd = production(&model);
    let ratio = idle_sink_overhead_ratio(&fwd, &tokens, 41);
    ctx.metric("idle_sink_overhead_ratio", ratio);
    ctx.note(
        "tiny q4_k_m (seed 17), 16 tokens, 1 thread, thread CPU time, median of 41 ABBA pairs",
    );
    Ok(())
}

#[test]
fn off_cost_can_fail() {
    let eager = |t: &[u32], p: Option<usize>, h: Option<&mut dyn TraceHook>| {
        toy::forward(
            t,
            p,
            h,
            toy::Bugs {
                copies_before_asking: true,
                ..Default::default()
            },
        )
    };
    let ratio = idle_sink_overhead_ratio(&eager, TOY_TOKENS, 11);
    assert!(ratio > 1.03, "ratio {ratio}");
}
