//! Falsifiers of `contracts/trace-moe-sub-stages-v1.yaml` that need the CUDA forward.
//!
//! On the GPU machine: `PV_DEVICES=cuda cargo test --release --features cuda -p falsifiers
//! --test trace_gpu -- --include-ignored --test-threads=1`.
//!
//! `trace_gpu_parity_002_metrics_can_fail` needs no GPU: it feeds FALSIFY-TRACE-GPU-PARITY-002's
//! two metrics CPU traces with a stage dropped and with the CPU's planted bug, and checks that
//! they count them.
#![cfg(feature = "cuda")]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use contract_macros::falsifier;
use engine::cuda::model::{LoadOptions, PlantedBug};
use engine::cuda::{GpuDevice, GpuModel};
use engine::model::{ActPrecision, ForwardOptions, GgufFile, KvCache, Logits, Model};
use engine::synth::{write_synthetic, SynthQuant, SynthShape};
use engine::tracing::diff::{diff_dirs, DiffOptions, DiffReport};
use engine::tracing::npy::NpyData;
use engine::tracing::{
    HookedWriter, ModelInfo, Phase, PlanDims, RunInfo, Stage, TensorKey, TraceDir, TraceHook,
    TracePlan, TraceWriter,
};
use pv_evidence::{Ctx, FalsifierError, FalsifierResult};
use serde_json::json;

/// The stages FALSIFY-TRACE-GPU-PARITY-001 compares (the per-layer bisection step).
const COMMON_SPEC: &str = "layer_out;moe_router;logits";

/// The stages FALSIFY-TRACE-GPU-PARITY-002's claim names ("at least"), as `stage` or
/// `stage.part`. The falsifier requires these and every stage the CUDA forward declares
/// (engine::tracing::gpu::GPU_TRACED), so that dropping one from either list cannot hide it.
const PARITY_002_CLAIM: &[&str] = &[
    "attn_norm",
    "q",
    "k",
    "v",
    "rope.q",
    "rope.k",
    "attn_residual",
    "ffn_norm",
    "moe_router.logits",
    "moe_router.topk_ids",
    "moe_router.topk_weights",
    "layer_out",
    "logits",
];

fn err(what: &str) -> impl Fn(String) -> FalsifierError + '_ {
    move |e| FalsifierError::msg(format!("{what}: {e}"))
}

/// Writes one trace of `spec` into `dir`, running `forward` with the hook. With `drop`, the
/// hook discards that stage (`stage` or `stage.part`) instead of saving it (planted checks).
fn trace_into(
    dir: &Path,
    model: &Model<'_>,
    tokens: &[u32],
    device: &str,
    spec: &str,
    drop: Option<&str>,
    forward: impl FnOnce(&mut dyn TraceHook) -> Result<Vec<f32>, String>,
) -> Result<(), FalsifierError> {
    let dims = PlanDims {
        n_layer: model.config.n_layer,
        n_expert: model.config.n_expert,
        n_tokens: tokens.len(),
    };
    let plan = TracePlan::parse(spec, dims).map_err(|e| err("plan")(e.to_string()))?;
    let writer = TraceWriter::create(dir, plan).map_err(|e| err("trace dir")(e.to_string()))?;
    let mut hook = HookedWriter::new(writer);
    match drop {
        Some(name) => forward(&mut DropStage {
            inner: &mut hook,
            name,
        }),
        None => forward(&mut hook),
    }
    .map_err(err("forward"))?;
    let writer = hook
        .into_writer()
        .map_err(|e| err("writing the trace")(e.to_string()))?;
    writer
        .finish(RunInfo {
            model: ModelInfo {
                path: "synthetic".into(),
                header_sha256: "same-file".into(),
                header_bytes: 0,
                n_layer: dims.n_layer,
                n_expert: dims.n_expert,
                n_expert_used: model.config.n_expert_used,
            },
            device: device.into(),
            precision: String::new(),
            forward_options: String::new(),
            tokens: tokens.to_vec(),
        })
        .map_err(|e| err("manifest")(e.to_string()))?;
    Ok(())
}

/// A hook that passes everything on except one stage (`stage` or `stage.part`): a trace with a
/// stage missing, as a forward that forgot to call the hook there would leave.
struct DropStage<'a> {
    inner: &'a mut dyn TraceHook,
    name: &'a str,
}

impl DropStage<'_> {
    fn dropped(&self, key: &TensorKey) -> bool {
        part_name(key) == self.name || key.stage.name() == self.name
    }
}

impl TraceHook for DropStage<'_> {
    fn wants(&self, stage: Stage, layer: Option<usize>, pos: usize) -> bool {
        self.inner.wants(stage, layer, pos)
    }
    fn wants_expert(&self, stage: Stage, layer: usize, pos: usize, expert: usize) -> bool {
        self.inner.wants_expert(stage, layer, pos, expert)
    }
    fn record_f32(&mut self, key: TensorKey, shape: &[usize], data: &[f32]) {
        if !self.dropped(&key) {
            self.inner.record_f32(key, shape, data);
        }
    }
    fn record_i32(&mut self, key: TensorKey, shape: &[usize], data: &[i32]) {
        if !self.dropped(&key) {
            self.inner.record_i32(key, shape, data);
        }
    }
}

/// `stage` or `stage.part`, as the required lists and trace-diff's rows name them.
fn part_name(key: &TensorKey) -> String {
    match &key.part {
        Some(p) => format!("{}.{p}", key.stage),
        None => key.stage.to_string(),
    }
}

/// A synthetic model file and the token ids of a run on it.
struct Synth {
    tmp: tempfile::TempDir,
    path: PathBuf,
    tokens: Vec<u32>,
}

fn synth(
    preset: &str,
    quant: SynthQuant,
    seed: u64,
    n_tokens: usize,
) -> Result<Synth, FalsifierError> {
    let tmp = tempfile::tempdir().map_err(|e| err("temp dir")(e.to_string()))?;
    let path = tmp.path().join("model.gguf");
    let shape = SynthShape::preset(preset).map_err(|e| err("preset")(e.to_string()))?;
    write_synthetic(&path, &shape, quant, seed).map_err(|e| err("synth")(e.to_string()))?;
    let mut rng = engine::sampling::Rng::new(seed);
    let tokens: Vec<u32> = (0..n_tokens)
        .map(|_| (rng.next_u64() % shape.vocab as u64) as u32)
        .collect();
    Ok(Synth { tmp, path, tokens })
}

/// Traces the CPU forward over `s` (f32 activations: the near-exact CPU path) into `dir`.
fn cpu_trace(
    dir: &Path,
    model: &Model<'_>,
    s: &Synth,
    spec: &str,
    opts: ForwardOptions,
    drop: Option<&str>,
) -> Result<(), FalsifierError> {
    trace_into(dir, model, &s.tokens, "cpu", spec, drop, |hook| {
        let mut cache = KvCache::new(model, s.tokens.len());
        let opts = ForwardOptions {
            act: ActPrecision::F32,
            ..opts
        };
        model
            .forward(&s.tokens, &mut cache, &opts, Logits::All, Some(hook))
            .map_err(|e| e.to_string())
    })
}

/// A CPU trace (f32 activations) and a GPU trace of `spec` of the same synthetic model and
/// tokens, in `cpu/` and `gpu/` under the returned model's temp dir. `planted` plants the GPU's
/// wrong-qtype dispatch at that layer; `drop` drops that stage from the GPU trace.
fn cpu_and_gpu_traces(
    preset: &str,
    quant: SynthQuant,
    seed: u64,
    n_tokens: usize,
    planted: Option<usize>,
    spec: &str,
    drop: Option<&str>,
) -> Result<Synth, FalsifierError> {
    let s = synth(preset, quant, seed, n_tokens)?;
    let file = GgufFile::open(&s.path).map_err(|e| err("open")(e.to_string()))?;
    let model = Model::load(&file).map_err(|e| err("load")(e.to_string()))?;
    let tokens = &s.tokens;
    let (a, b) = (s.tmp.path().join("cpu"), s.tmp.path().join("gpu"));
    cpu_trace(&a, &model, &s, spec, ForwardOptions::default(), None)?;

    let host = engine::tracing::gpu::host_model(&file, &model);
    let dev = GpuDevice::open(0).map_err(|e| err("GPU")(e.to_string()))?;
    let mut gpu = GpuModel::load(
        Arc::new(dev),
        &host,
        LoadOptions {
            max_ctx: n_tokens,
            max_batch: n_tokens,
        },
    )
    .map_err(|e| err("GPU load")(e.to_string()))?;
    if let Some(layer) = planted {
        gpu.set_planted_bug(PlantedBug::WrongQTypeDispatch { layer });
    }
    trace_into(&b, &model, tokens, "cuda", spec, drop, |hook| {
        engine::tracing::gpu::traced_prefill(&mut gpu, tokens, Some(hook))
            .map_err(|e| e.to_string())
    })?;
    Ok(s)
}

/// FALSIFY-TRACE-GPU-PARITY-001's comparison: the per-layer stages, CPU against GPU, diffed.
fn cpu_vs_gpu(
    preset: &str,
    quant: SynthQuant,
    seed: u64,
    n_tokens: usize,
    planted: Option<usize>,
) -> Result<DiffReport, FalsifierError> {
    let s = cpu_and_gpu_traces(preset, quant, seed, n_tokens, planted, COMMON_SPEC, None)?;
    let (a, b) = (s.tmp.path().join("cpu"), s.tmp.path().join("gpu"));
    diff_dirs(&a, &b, DiffOptions::default()).map_err(|e| err("diff")(e.to_string()))
}

#[falsifier("FALSIFY-TRACE-GPU-PARITY-001")]
fn trace_cpu_gpu_parity(ctx: &mut Ctx) -> FalsifierResult {
    let r = cpu_vs_gpu("tiny", SynthQuant::Q4KM, 3, 6, None)?;
    let below = r
        .tensors
        .iter()
        .filter(|t| t.diverged && t.location.part.as_deref() != Some("topk_ids"))
        .count();
    let not_near_tie = r.router.iter().filter(|c| !c.agree && !c.near_tie).count();
    ctx.metric("stages_below_cosine", below as f64);
    ctx.metric("router_disagreements_not_near_tie", not_near_tie as f64);
    ctx.series(
        "layer_out_min_cosine",
        r.rows
            .iter()
            .filter(|row| row.stage == "layer_out")
            .map(|row| row.min_cosine.unwrap_or(f64::NAN)),
    );
    ctx.note(format!(
        "tiny q4_k_m seed 3, 6 tokens, CPU f32 activations vs CUDA; {} tensors compared; first \
         divergence: {}",
        r.compared,
        r.first_divergence
            .as_ref()
            .map_or("none".to_string(), |d| format!(
                "{} ({})",
                d.location.description, d.reason
            ))
    ));
    Ok(())
}

#[falsifier("FALSIFY-TRACE-GPU-PLANTED-001")]
fn trace_gpu_planted_bug_found(ctx: &mut Ctx) -> FalsifierResult {
    let mut misattributed = 0;
    let mut found = Vec::new();
    for layer in [0usize, 4] {
        let r = cpu_vs_gpu("tiny-mixed", SynthQuant::Mixed, 5, 6, Some(layer))?;
        let got = r.first_divergence.as_ref().and_then(|d| d.location.layer);
        if got != Some(layer) {
            misattributed += 1;
        }
        found.push(format!(
            "planted at {layer}: {}",
            r.first_divergence
                .as_ref()
                .map_or("no divergence".to_string(), |d| d
                    .location
                    .description
                    .clone())
        ));
    }
    ctx.metric("misattributed_runs", misattributed as f64);
    ctx.note(found.join("; "));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// FALSIFY-TRACE-GPU-PARITY-002
// ---------------------------------------------------------------------------------------------

/// `stage` or `stage.part` as a stage and its part, checked against the stage table.
fn parse_name(name: &str) -> Result<(Stage, Option<&str>), FalsifierError> {
    let (stage, part) = match name.split_once('.') {
        Some((s, p)) => (s, Some(p)),
        None => (name, None),
    };
    let st = Stage::from_name(stage)
        .ok_or_else(|| FalsifierError::msg(format!("unknown stage `{stage}` in `{name}`")))?;
    if let Some(p) = part {
        if !st.parts().contains(&p) {
            return Err(FalsifierError::msg(format!(
                "stage `{stage}` has no part `{p}`"
            )));
        }
    }
    Ok((st, part))
}

/// The stages PARITY-002 requires in the GPU trace: those its claim names and those the CUDA
/// forward declares it materializes, once each, in forward order.
fn required_stages() -> Result<Vec<String>, FalsifierError> {
    let mut v: Vec<((usize, usize), String)> = Vec::new();
    for name in PARITY_002_CLAIM
        .iter()
        .chain(engine::tracing::gpu::GPU_TRACED)
    {
        let (st, part) = parse_name(name)?;
        let pi = part.map_or(0, |p| st.parts().iter().position(|q| *q == p).unwrap_or(0));
        v.push(((st.index(), pi), name.to_string()));
    }
    v.sort();
    v.dedup();
    Ok(v.into_iter().map(|(_, n)| n).collect())
}

/// The plan spec that selects every required stage at every layer, position and expert (a
/// stage selects all its parts: the CPU's `moe_router.margin` comes along, and trace-diff's
/// near-tie check uses it).
fn spec_for(required: &[String]) -> String {
    let mut stages: Vec<&str> = Vec::new();
    for n in required {
        let s = n.split('.').next().unwrap_or(n);
        if !stages.contains(&s) {
            stages.push(s);
        }
    }
    stages.join(",")
}

/// A trace's tensors by key (index into its manifest).
fn index(t: &TraceDir) -> Result<HashMap<TensorKey, usize>, FalsifierError> {
    let mut m = HashMap::new();
    for (i, e) in t.manifest.tensors.iter().enumerate() {
        m.insert(e.key().map_err(FalsifierError::msg)?, i);
    }
    Ok(m)
}

/// The router's top-k ids at (layer, pos), if the trace holds them.
fn topk_ids(
    t: &TraceDir,
    idx: &HashMap<TensorKey, usize>,
    l: usize,
    pos: usize,
) -> Option<Vec<i32>> {
    let key = TensorKey::new(Stage::MoeRouter, Some(l), pos).part("topk_ids");
    let arr = t.load(&t.manifest.tensors[*idx.get(&key)?]).ok()?;
    match arr.data {
        NpyData::I32(v) => Some(v),
        NpyData::F32(_) => None,
    }
}

/// A required stage the GPU trace lacks at some (layer, position[, expert]).
#[derive(Debug)]
struct Missing {
    stage: String,
    absent: usize,
    expected: usize,
    first: String,
}

/// For each required stage, the tensors the GPU trace (`gpu`) should hold: every layer (or none,
/// outside the layers) and every position of the run; for a per-expert stage, the experts the
/// GPU's own router chose there (the CPU's when the GPU trace has no router ids). Returns the
/// stages with any of them absent, and the non-per-expert tensors the CPU trace lacks (which
/// would leave the comparison hollow).
fn missing_from_gpu(
    cpu: &TraceDir,
    gpu: &TraceDir,
    required: &[String],
) -> Result<(Vec<Missing>, Vec<String>), FalsifierError> {
    let (ic, ig) = (index(cpu)?, index(gpu)?);
    let n_layer = gpu.manifest.model.n_layer;
    let n_tokens = gpu.manifest.tokens.len();
    let mut missing = Vec::new();
    let mut cpu_gaps = Vec::new();
    for name in required {
        let (stage, part) = parse_name(name)?;
        let layers: Vec<Option<usize>> = match stage.phase() {
            Phase::Pre | Phase::Post => vec![None],
            Phase::Layer => (0..n_layer).map(Some).collect(),
        };
        let mut expected: Vec<TensorKey> = Vec::new();
        let mut no_ids = 0;
        for &layer in &layers {
            for pos in 0..n_tokens {
                let mut key = TensorKey::new(stage, layer, pos);
                if let Some(p) = part {
                    key = key.part(p);
                }
                if !stage.per_expert() {
                    if !ic.contains_key(&key) {
                        cpu_gaps.push(key.describe());
                    }
                    expected.push(key);
                    continue;
                }
                let l = layer.unwrap_or(0);
                let ids = topk_ids(gpu, &ig, l, pos).or_else(|| topk_ids(cpu, &ic, l, pos));
                match ids {
                    Some(ids) => {
                        for e in ids {
                            expected.push(key.clone().expert(e.max(0) as usize));
                        }
                    }
                    None => no_ids += 1,
                }
            }
        }
        let absent: Vec<&TensorKey> = expected.iter().filter(|k| !ig.contains_key(k)).collect();
        if !absent.is_empty() || no_ids > 0 {
            missing.push(Missing {
                stage: name.clone(),
                absent: absent.len() + no_ids,
                expected: expected.len() + no_ids,
                first: absent.first().map_or_else(
                    || format!("no router ids to name the experts at {no_ids} positions"),
                    |k| k.describe(),
                ),
            });
        }
    }
    Ok((missing, cpu_gaps))
}

/// A stage that diverged (cosine below the threshold, other shape, other NaN/Inf counts) at
/// some layer and position.
#[derive(Debug)]
struct Below {
    tensors: usize,
    min_cosine: Option<f64>,
    first: String,
}

/// The stages of `r` that diverged anywhere, by `stage` / `stage.part`. As in PARITY-001 the
/// router's ids are not a vector: they are checked as sets, and a set disagreement that is not
/// a near-tie counts against `moe_router.topk_ids`; at a near-tie disagreement the two
/// `topk_weights` belong to different experts and are not held against the GPU either.
fn below_cosine(r: &DiffReport) -> BTreeMap<String, Below> {
    let near_tie: BTreeSet<(usize, usize)> = r
        .router
        .iter()
        .filter(|c| !c.agree && c.near_tie)
        .map(|c| (c.layer, c.pos))
        .collect();
    let mut below: BTreeMap<String, Below> = BTreeMap::new();
    let mut add = |name: String, cosine: Option<f64>, what: String| {
        let b = below.entry(name).or_insert(Below {
            tensors: 0,
            min_cosine: None,
            first: what,
        });
        b.tensors += 1;
        if let Some(c) = cosine {
            b.min_cosine = Some(b.min_cosine.map_or(c, |m: f64| m.min(c)));
        }
    };
    for t in r.tensors.iter().filter(|t| t.diverged) {
        let loc = &t.location;
        match loc.part.as_deref() {
            Some("topk_ids") => continue,
            Some("topk_weights") if near_tie.contains(&(loc.layer.unwrap_or(0), loc.pos)) => {
                continue
            }
            _ => {}
        }
        let name = match &loc.part {
            Some(p) => format!("{}.{p}", loc.stage),
            None => loc.stage.clone(),
        };
        let why = t.reason.clone().unwrap_or_default();
        add(name, t.cosine, format!("{} ({why})", loc.description));
    }
    for c in r.router.iter().filter(|c| !c.agree && !c.near_tie) {
        add(
            "moe_router.topk_ids".into(),
            None,
            format!(
                "layer {} pos {}: experts {:?} vs {:?}, not a near-tie",
                c.layer, c.pos, c.ids_a, c.ids_b
            ),
        );
    }
    below
}

/// `PV_GPU_PLANT=wrong-qtype:L` (as in tests/gpu_support) plants the CUDA forward's wrong-qtype
/// dispatch at layer L. On `tiny` q4_k_m, layer 1 holds the Q6_K matrices (attn_v,
/// ffn_down_exps), so `PV_GPU_PLANT=wrong-qtype:1` must make this falsifier fail with
/// stages_below_cosine > 0, starting at layer 1 `v`.
fn planted_from_env() -> Result<Option<usize>, FalsifierError> {
    match std::env::var("PV_GPU_PLANT") {
        Ok(v) => match v.strip_prefix("wrong-qtype:").and_then(|l| l.parse().ok()) {
            Some(layer) => Ok(Some(layer)),
            None => Err(FalsifierError::msg(format!(
                "PV_GPU_PLANT={v}: expected wrong-qtype:<layer>"
            ))),
        },
        Err(_) => Ok(None),
    }
}

/// Both metrics over two trace directories (`a` the CPU's, `b` the GPU's), with the details.
struct Parity002 {
    missing: Vec<Missing>,
    below: BTreeMap<String, Below>,
    report: DiffReport,
}

fn measure_parity_002(
    a: &Path,
    b: &Path,
    required: &[String],
) -> Result<Parity002, FalsifierError> {
    let ta = TraceDir::open(a).map_err(|e| err("CPU trace")(e.to_string()))?;
    let tb = TraceDir::open(b).map_err(|e| err("GPU trace")(e.to_string()))?;
    let (missing, cpu_gaps) = missing_from_gpu(&ta, &tb, required)?;
    if !cpu_gaps.is_empty() {
        return Err(FalsifierError::msg(format!(
            "the CPU trace lacks {} required tensors (first: {}): the comparison would be hollow",
            cpu_gaps.len(),
            cpu_gaps[0]
        )));
    }
    let report = diff_dirs(a, b, DiffOptions::default()).map_err(|e| err("diff")(e.to_string()))?;
    let below = below_cosine(&report);
    Ok(Parity002 {
        missing,
        below,
        report,
    })
}

/// Planted checks, on the GPU machine: `PV_GPU_PLANT=wrong-qtype:1` (see planted_from_env) must
/// give stages_below_cosine > 0; `PV_TRACE_GPU_DROP=rope.k` (any `stage` or `stage.part`) drops
/// that stage from the GPU trace, as a CUDA layer that forgot to call the hook would, and must
/// give stages_missing_from_gpu_trace == 1. Without a GPU,
/// `trace_gpu_parity_002_metrics_can_fail` runs the same two metrics on CPU traces.
#[falsifier("FALSIFY-TRACE-GPU-PARITY-002")]
fn trace_cpu_gpu_parity_sub_stages(ctx: &mut Ctx) -> FalsifierResult {
    let required = required_stages()?;
    let spec = spec_for(&required);
    let planted = planted_from_env()?;
    let drop = std::env::var("PV_TRACE_GPU_DROP").ok();
    let s = cpu_and_gpu_traces(
        "tiny",
        SynthQuant::Q4KM,
        3,
        6,
        planted,
        &spec,
        drop.as_deref(),
    )?;
    let (a, b) = (s.tmp.path().join("cpu"), s.tmp.path().join("gpu"));
    let m = measure_parity_002(&a, &b, &required)?;
    let r = &m.report;
    ctx.metric("stages_missing_from_gpu_trace", m.missing.len() as f64);
    ctx.metric("stages_below_cosine", m.below.len() as f64);

    ctx.detail("spec", json!(spec));
    ctx.detail("required_stages", json!(required));
    ctx.detail(
        "missing",
        json!(m
            .missing
            .iter()
            .map(|x| json!({"stage": x.stage, "absent": x.absent, "expected": x.expected, "first": x.first}))
            .collect::<Vec<_>>()),
    );
    ctx.detail(
        "below_cosine",
        json!(m
            .below
            .iter()
            .map(|(n, x)| json!({"stage": n, "tensors": x.tensors, "min_cosine": x.min_cosine, "first": x.first}))
            .collect::<Vec<_>>()),
    );
    ctx.detail(
        "rows",
        json!(r
            .rows
            .iter()
            .map(|row| json!({
                "layer": row.layer,
                "stage": row.name(),
                "tensors": row.tensors,
                "diverged": row.diverged,
                "min_cosine": row.min_cosine,
                "max_abs_diff": row.max_abs_diff,
            }))
            .collect::<Vec<_>>()),
    );
    let disagreements: Vec<_> = r.router.iter().filter(|c| !c.agree).collect();
    ctx.detail(
        "router",
        json!({
            "checked": r.router.len(),
            "disagreements": disagreements.len(),
            "near_tie": disagreements.iter().filter(|c| c.near_tie).count(),
        }),
    );
    ctx.detail("warnings", json!(r.warnings));
    let worst = r
        .rows
        .iter()
        .filter_map(|row| row.min_cosine.map(|c| (c, row)))
        .min_by(|x, y| x.0.total_cmp(&y.0));
    ctx.note(format!(
        "tiny q4_k_m seed 3, 6 tokens, CPU f32 activations vs CUDA, spec `{spec}`; {} tensors \
         compared; lowest cosine {}; first divergence: {}{}{}",
        r.compared,
        worst.map_or("none".to_string(), |(c, row)| format!(
            "{c:.9} ({} at layer {:?})",
            row.name(),
            row.layer
        )),
        r.first_divergence
            .as_ref()
            .map_or("none".to_string(), |d| format!(
                "{} ({})",
                d.location.description, d.reason
            )),
        planted.map_or(String::new(), |l| format!(
            "; PLANTED: GPU wrong-qtype dispatch at layer {l}"
        )),
        drop.as_ref().map_or(String::new(), |d| format!(
            "; PLANTED: `{d}` dropped from the GPU trace"
        )),
    ));
    Ok(())
}

/// PARITY-002's two metrics on CPU traces (no GPU needed): the same forward twice gives 0 and 0;
/// a stage dropped from the second trace counts once as missing; the CPU's planted wrong-qtype
/// read of layer 1's attn_v (Q6_K in `tiny` q4_k_m) counts `v` below cosine, first at layer 1.
#[test]
fn trace_gpu_parity_002_metrics_can_fail() {
    let required = required_stages().unwrap();
    for claimed in PARITY_002_CLAIM {
        assert!(
            required.iter().any(|r| r == claimed),
            "{claimed} not required"
        );
    }
    let spec = spec_for(&required);
    let s = synth("tiny", SynthQuant::Q4KM, 3, 6).unwrap();
    let file = GgufFile::open(&s.path).unwrap();
    let model = Model::load(&file).unwrap();
    let dir = |n: &str| s.tmp.path().join(n);
    let clean = ForwardOptions::default();
    let planted = ForwardOptions {
        debug_wrong_qtype_layer: Some(1),
        ..Default::default()
    };
    cpu_trace(&dir("a"), &model, &s, &spec, clean.clone(), None).unwrap();
    cpu_trace(&dir("same"), &model, &s, &spec, clean.clone(), None).unwrap();
    cpu_trace(
        &dir("dropped"),
        &model,
        &s,
        &spec,
        clean.clone(),
        Some("rope.k"),
    )
    .unwrap();
    cpu_trace(
        &dir("experts"),
        &model,
        &s,
        &spec,
        clean,
        Some("moe_expert_up"),
    )
    .unwrap();
    cpu_trace(&dir("planted"), &model, &s, &spec, planted, None).unwrap();
    let m = |b: &str| measure_parity_002(&dir("a"), &dir(b), &required).unwrap();

    let same = m("same");
    assert!(same.missing.is_empty(), "{:?}", same.missing);
    assert!(same.below.is_empty(), "{:?}", same.below);
    assert!(same.report.compared > 0);

    let dropped = m("dropped");
    let names: Vec<&str> = dropped.missing.iter().map(|x| x.stage.as_str()).collect();
    assert_eq!(names, ["rope.k"]);
    assert_eq!(dropped.missing[0].absent, 2 * 6, "every layer and position");
    assert!(dropped.below.is_empty(), "{:?}", dropped.below);

    let experts = m("experts");
    let names: Vec<&str> = experts.missing.iter().map(|x| x.stage.as_str()).collect();
    assert_eq!(names, ["moe_expert_up"]);
    assert_eq!(
        experts.missing[0].absent,
        2 * 6 * 2,
        "every layer, position and chosen expert"
    );

    let bugged = m("planted");
    assert!(bugged.missing.is_empty(), "{:?}", bugged.missing);
    let v = bugged.below.get("v").expect("v below cosine");
    assert!(v.first.contains("layer 1"), "{}", v.first);
    assert!(!bugged.below.contains_key("q"), "{:?}", bugged.below.keys());
}
