//! `--device cuda` for infer's commands: loading a model onto the GPU (engine::cuda), and the
//! logits and generation loops `infer logits` and `infer run` need from it. Without the `cuda`
//! feature every entry point is the same clear error.

use anyhow::Result;
use engine::generate::GenerateStats;
use engine::model::{GgufFile, Model};
use engine::sampling::Sampler;

/// The error of every `--device cuda` request to an `infer` built without the feature.
#[cfg(not(feature = "cuda"))]
pub const NOT_BUILT: &str = "--device cuda: this `infer` was built without the `cuda` feature (cargo build --release --features cuda -p infer)";

/// A model on the GPU, and the device's name (`cuda:0 NAME`).
#[cfg(feature = "cuda")]
pub struct Loaded {
    /// The model.
    pub model: engine::cuda::GpuModel,
    /// `cuda:0 NAME`.
    pub device: String,
}

/// Loads an opened model onto GPU 0 with room for `max_ctx` positions and chunks of
/// `max_batch` tokens.
#[cfg(feature = "cuda")]
pub fn load(
    file: &GgufFile,
    model: &Model<'_>,
    max_ctx: usize,
    max_batch: usize,
) -> Result<Loaded> {
    use anyhow::Context;
    use engine::cuda::model::LoadOptions;
    use engine::cuda::{GpuDevice, GpuModel};

    let host = engine::tracing::gpu::host_model(file, model);
    let dev = std::sync::Arc::new(GpuDevice::open(0).context("opening CUDA device 0")?);
    let device = format!("cuda:0 {}", dev.info.name);
    let gpu = GpuModel::load(dev.clone(), &host, LoadOptions { max_ctx, max_batch })
        .context("loading the model onto the GPU")?;
    Ok(Loaded { model: gpu, device })
}

/// Every position's logits for `tokens` (rows = positions), from the CUDA forward, fed in
/// chunks of at most `MAX_LOGIT_ROWS` tokens (the most the GPU returns all rows for).
#[cfg(feature = "cuda")]
pub fn logits(file: &GgufFile, model: &Model<'_>, tokens: &[u32]) -> Result<Vec<f32>> {
    use engine::cuda::model::MAX_LOGIT_ROWS;
    let chunk = tokens.len().clamp(1, MAX_LOGIT_ROWS);
    let mut gpu = load(file, model, tokens.len().max(1), chunk)?;
    let vocab = model.config.vocab;
    let mut out = Vec::with_capacity(tokens.len() * vocab);
    for part in tokens.chunks(chunk) {
        out.extend(gpu.model.prefill(part, true, None)?);
    }
    eprintln!("[{} positions on {}]", tokens.len(), gpu.device);
    Ok(out)
}

#[cfg(not(feature = "cuda"))]
pub fn logits(_: &GgufFile, _: &Model<'_>, _: &[u32]) -> Result<Vec<f32>> {
    anyhow::bail!(NOT_BUILT)
}

/// Generates after `prompt` on the GPU: one prefill, then one decode step per token, each
/// sampled on the host by `sampler` (the same sampler as the CPU path, so the same settings
/// mean the same thing); stops at `eos` or after `max_tokens`.
#[cfg(feature = "cuda")]
pub fn generate(
    file: &GgufFile,
    model: &Model<'_>,
    prompt: &[u32],
    max_tokens: usize,
    eos: Option<u32>,
    sampler: &mut Sampler,
    mut on_token: impl FnMut(u32),
) -> Result<GenerateStats> {
    let max_ctx = prompt.len() + max_tokens + 1;
    let mut gpu = load(file, model, max_ctx, prompt.len().min(512))?;
    eprintln!("[on {}]", gpu.device);
    let t0 = std::time::Instant::now();
    let mut logits = gpu.model.prefill(prompt, false, None)?;
    let prefill_secs = t0.elapsed().as_secs_f64();
    let t1 = std::time::Instant::now();
    let (mut generated, mut stopped_at_eos) = (0, false);
    while generated < max_tokens {
        let next = sampler.sample(&logits);
        if Some(next) == eos {
            stopped_at_eos = true;
            break;
        }
        on_token(next);
        generated += 1;
        if generated == max_tokens {
            break;
        }
        logits = gpu.model.decode(next, None)?;
    }
    Ok(GenerateStats {
        prompt_tokens: prompt.len(),
        generated,
        prefill_secs,
        decode_secs: t1.elapsed().as_secs_f64(),
        stopped_at_eos,
    })
}

#[cfg(not(feature = "cuda"))]
pub fn generate(
    _: &GgufFile,
    _: &Model<'_>,
    _: &[u32],
    _: usize,
    _: Option<u32>,
    _: &mut Sampler,
    _: impl FnMut(u32),
) -> Result<GenerateStats> {
    anyhow::bail!(NOT_BUILT)
}
