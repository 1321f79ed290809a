//! Falsifiers of `contracts/trace-moe-sub-stages-v1.yaml` that need the CUDA forward.
//!
//! On the GPU machine: `PV_DEVICES=cuda cargo test --release --features cuda -p falsifiers
//! --test trace_gpu -- --include-ignored --test-threads=1`.
#![cfg(feature = "cuda")]

use std::path::Path;
use std::sync::Arc;

use contract_macros::falsifier;
use engine::cuda::model::{LoadOptions, PlantedBug};
use engine::cuda::{GpuDevice, GpuModel};
use engine::model::{ActPrecision, ForwardOptions, GgufFile, KvCache, Logits, Model};
use engine::synth::{write_synthetic, SynthQuant, SynthShape};
use engine::tracing::diff::{diff_dirs, DiffOptions, DiffReport};
use engine::tracing::{
    HookedWriter, ModelInfo, PlanDims, RunInfo, TraceHook, TracePlan, TraceWriter,
};
use pv_evidence::{Ctx, FalsifierError, FalsifierResult};

/// The stages both forwards expose (engine::tracing::gpu::GPU_TRACED_STAGES).
const COMMON_SPEC: &str = "layer_out;moe_router;logits";

fn err(what: &str) -> impl Fn(String) -> FalsifierError + '_ {
    move |e| FalsifierError::msg(format!("{what}: {e}"))
}

/// Writes one trace of `spec` into `dir`, running `forward` with the hook.
fn trace_into(
    dir: &Path,
    model: &Model<'_>,
    tokens: &[u32],
    device: &str,
    forward: impl FnOnce(&mut dyn TraceHook) -> Result<Vec<f32>, String>,
) -> Result<(), FalsifierError> {
    let dims = PlanDims {
        n_layer: model.config.n_layer,
        n_expert: model.config.n_expert,
        n_tokens: tokens.len(),
    };
    let plan = TracePlan::parse(COMMON_SPEC, dims).map_err(|e| err("plan")(e.to_string()))?;
    let writer = TraceWriter::create(dir, plan).map_err(|e| err("trace dir")(e.to_string()))?;
    let mut hook = HookedWriter::new(writer);
    forward(&mut hook).map_err(err("forward"))?;
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

/// A CPU trace (f32 activations: the near-exact CPU path) and a GPU trace of the same synthetic
/// model and tokens, diffed. `planted` plants the GPU's wrong-qtype dispatch at that layer.
fn cpu_vs_gpu(
    preset: &str,
    quant: SynthQuant,
    seed: u64,
    n_tokens: usize,
    planted: Option<usize>,
) -> Result<DiffReport, FalsifierError> {
    let tmp = tempfile::tempdir().map_err(|e| err("temp dir")(e.to_string()))?;
    let path = tmp.path().join("model.gguf");
    let shape = SynthShape::preset(preset).map_err(|e| err("preset")(e.to_string()))?;
    write_synthetic(&path, &shape, quant, seed).map_err(|e| err("synth")(e.to_string()))?;
    let file = GgufFile::open(&path).map_err(|e| err("open")(e.to_string()))?;
    let model = Model::load(&file).map_err(|e| err("load")(e.to_string()))?;
    let mut rng = engine::sampling::Rng::new(seed);
    let tokens: Vec<u32> = (0..n_tokens)
        .map(|_| (rng.next_u64() % model.config.vocab as u64) as u32)
        .collect();

    let (a, b) = (tmp.path().join("cpu"), tmp.path().join("gpu"));
    trace_into(&a, &model, &tokens, "cpu", |hook| {
        let mut cache = KvCache::new(&model, tokens.len());
        let opts = ForwardOptions {
            act: ActPrecision::F32,
            ..Default::default()
        };
        model
            .forward(&tokens, &mut cache, &opts, Logits::All, Some(hook))
            .map_err(|e| e.to_string())
    })?;

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
    trace_into(&b, &model, &tokens, "cuda", |hook| {
        engine::tracing::gpu::traced_prefill(&mut gpu, &tokens, Some(hook))
            .map_err(|e| e.to_string())
    })?;
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
