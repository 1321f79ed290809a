//! `infer trace MODEL --tokens ... --save-tensor SPEC --out DIR`: runs the production forward
//! once over the given tokens with a trace hook, and writes the selected stage tensors as `.npy`
//! files plus `manifest.json` (docs/tracing.md).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use engine::model::{ActPrecision, ForwardOptions, GgufFile, KvCache, Logits, Model};

use crate::common::{open_model, parse_tokens, Act, Device};
use engine::tracing::sink::header_digest;
use engine::tracing::{
    HookedWriter, ModelInfo, PlanDims, PlanSpec, RunInfo, TraceHook, TraceWriter,
};

/// Run one forward over the given tokens and save the tensors of the selected stages.
///
/// The spec selects stages, layers, positions and experts, e.g.
/// `moe_router,moe_ffn_out@layers=0..48@pos=last;logits` (docs/tracing.md has the grammar).
#[derive(clap::Args, Debug)]
pub struct TraceArgs {
    /// GGUF model file
    pub model: PathBuf,
    /// Token ids, comma-separated (e.g. 1,2,3)
    #[arg(long)]
    pub tokens: String,
    /// Device whose forward is traced
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
    /// Which tensors to save (plan spec)
    #[arg(long, value_name = "SPEC")]
    pub save_tensor: String,
    /// Output directory (created; must be new or empty)
    #[arg(long)]
    pub out: PathBuf,
    /// Activation precision of the forward: q8 (production default, llama.cpp's scheme) or f32
    #[arg(long, value_enum, default_value_t = Act::Q8)]
    pub act: Act,
    /// Test-only: plant the wrong-qtype dispatch bug at this layer (to practise bisection)
    #[arg(long, hide = true, value_name = "LAYER")]
    pub debug_wrong_qtype_layer: Option<usize>,
}

/// A loaded model on a device, as tracing needs it.
pub trait TraceTarget {
    /// e.g. `cpu` or `cuda:0 NVIDIA H100 80GB HBM3`
    fn device(&self) -> String;
    /// Activation precision of the forward, e.g. `f32`.
    fn precision(&self) -> String;
    /// Debug form of the forward's options (a planted bug shows up here).
    fn forward_options(&self) -> String;
    /// One forward over `tokens` with the hook; returns the logits of every position.
    fn forward(&mut self, tokens: &[u32], hook: Option<&mut dyn TraceHook>) -> Result<Vec<f32>>;
}

/// The CPU production forward (`engine::model`) as a trace target.
struct CpuTarget<'m, 'f> {
    model: &'m Model<'f>,
    opts: ForwardOptions,
}

impl TraceTarget for CpuTarget<'_, '_> {
    fn device(&self) -> String {
        "cpu".to_string()
    }
    fn precision(&self) -> String {
        precision_name(self.opts.act).to_string()
    }
    fn forward_options(&self) -> String {
        format!("{:?}", self.opts)
    }
    fn forward(&mut self, tokens: &[u32], hook: Option<&mut dyn TraceHook>) -> Result<Vec<f32>> {
        let mut cache = KvCache::new(self.model, tokens.len());
        Ok(self
            .model
            .forward(tokens, &mut cache, &self.opts, Logits::All, hook)?)
    }
}

fn precision_name(act: ActPrecision) -> &'static str {
    match act {
        ActPrecision::F32 => "f32 activations",
        ActPrecision::Q8 => "q8 activations (llama.cpp scheme), f32 elsewhere",
    }
}

/// What the manifest says about the model file.
fn model_info(path: &Path, file: &GgufFile, model: &Model<'_>) -> Result<ModelInfo> {
    let header_bytes = file.header_bytes() as u64;
    Ok(ModelInfo {
        path: path.display().to_string(),
        header_sha256: header_digest(path, header_bytes)?,
        header_bytes,
        n_layer: model.config.n_layer,
        n_expert: model.config.n_expert,
        n_expert_used: model.config.n_expert_used,
    })
}

pub fn run(args: TraceArgs) -> Result<()> {
    let tokens = parse_tokens(&args.tokens)?;
    // Syntax and names first, so that a typo fails before a large model is loaded.
    let spec = PlanSpec::parse(&args.save_tensor).map_err(|e| anyhow::anyhow!("{e}"))?;
    let opts = ForwardOptions {
        act: args.act.to_engine(),
        debug_wrong_qtype_layer: args.debug_wrong_qtype_layer,
    };
    match args.device {
        Device::Cpu => {
            let (file, model) = open_model(&args.model)?;
            if let Some(l) = opts.debug_wrong_qtype_layer {
                if l >= model.config.n_layer {
                    bail!(
                        "--debug-wrong-qtype-layer {l}: the model has {} layers",
                        model.config.n_layer
                    );
                }
            }
            let info = model_info(&args.model, file, &model)?;
            let mut target = CpuTarget {
                model: &model,
                opts,
            };
            trace_with(&mut target, &tokens, &spec, &args.out, &info)?;
        }
        Device::Cuda => trace_cuda(&args, &tokens, &spec, opts.debug_wrong_qtype_layer)?,
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn trace_cuda(_: &TraceArgs, _: &[u32], _: &PlanSpec, _: Option<usize>) -> Result<()> {
    bail!(crate::gpu::NOT_BUILT)
}

/// The CUDA forward as a trace target (engine::tracing::gpu: every stage it holds as a buffer).
#[cfg(feature = "cuda")]
struct CudaTarget {
    model: engine::cuda::GpuModel,
    device: String,
    planted: Option<usize>,
}

#[cfg(feature = "cuda")]
impl TraceTarget for CudaTarget {
    fn device(&self) -> String {
        self.device.clone()
    }
    fn precision(&self) -> String {
        "CUDA forward (its own kernels' precision)".to_string()
    }
    fn forward_options(&self) -> String {
        format!(
            "GpuModel prefill; planted wrong-qtype dispatch at layer {:?}; traced stages: {}",
            self.planted,
            engine::tracing::gpu::GPU_TRACED_STAGES
        )
    }
    fn forward(&mut self, tokens: &[u32], hook: Option<&mut dyn TraceHook>) -> Result<Vec<f32>> {
        Ok(engine::tracing::gpu::traced_prefill(
            &mut self.model,
            tokens,
            hook,
        )?)
    }
}

#[cfg(feature = "cuda")]
fn trace_cuda(
    args: &TraceArgs,
    tokens: &[u32],
    spec: &PlanSpec,
    planted: Option<usize>,
) -> Result<()> {
    use engine::cuda::model::{PlantedBug, MAX_LOGIT_ROWS};
    if tokens.len() > MAX_LOGIT_ROWS {
        bail!(
            "--device cuda traces at most {MAX_LOGIT_ROWS} tokens (the CUDA forward returns \
             the logits of every position for at most that many)"
        );
    }
    let (file, model) = open_model(&args.model)?;
    let n = tokens.len();
    let crate::gpu::Loaded {
        model: mut gpu,
        device,
        ..
    } = crate::gpu::load(file, &model, n, n)?;
    if let Some(layer) = planted {
        if layer >= model.config.n_layer {
            bail!(
                "--debug-wrong-qtype-layer {layer}: the model has {} layers",
                model.config.n_layer
            );
        }
        gpu.set_planted_bug(PlantedBug::WrongQTypeDispatch { layer });
    }
    let info = model_info(&args.model, file, &model)?;
    eprintln!(
        "note: the CUDA forward exposes {}; other stages of the plan are not traced on the GPU",
        engine::tracing::gpu::GPU_TRACED_STAGES
    );
    let mut target = CudaTarget {
        model: gpu,
        device,
        planted,
    };
    trace_with(&mut target, tokens, spec, &args.out, &info)?;
    Ok(())
}

/// Binds the plan to the model and tokens, runs the traced forward, writes the manifest.
/// Returns the logits.
pub fn trace_with(
    target: &mut dyn TraceTarget,
    tokens: &[u32],
    spec: &PlanSpec,
    out: &Path,
    info: &ModelInfo,
) -> Result<Vec<f32>> {
    let dims = PlanDims {
        n_layer: info.n_layer,
        n_expert: info.n_expert,
        n_tokens: tokens.len(),
    };
    let plan = spec.bind(dims).map_err(|e| anyhow::anyhow!("{e}"))?;
    let writer = TraceWriter::create(out, plan)?;
    let mut hook = HookedWriter::new(writer);
    let logits = target
        .forward(tokens, Some(&mut hook))
        .context("running the traced forward")?;
    let writer = hook
        .into_writer()
        .with_context(|| format!("writing the trace into {}", out.display()))?;
    let n = writer.len();
    let manifest = writer.finish(RunInfo {
        model: info.clone(),
        device: target.device(),
        precision: target.precision(),
        forward_options: target.forward_options(),
        tokens: tokens.to_vec(),
    })?;
    println!(
        "traced {} tokens on {}: {n} tensors in {} (manifest.json)",
        tokens.len(),
        manifest.device,
        out.display()
    );
    Ok(logits)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in target (not a forward) that hands over `embed` and `logits` for each position.
    struct Fake;

    impl TraceTarget for Fake {
        fn device(&self) -> String {
            "cpu".into()
        }
        fn precision(&self) -> String {
            "f32".into()
        }
        fn forward_options(&self) -> String {
            "fake".into()
        }
        fn forward(
            &mut self,
            tokens: &[u32],
            mut hook: Option<&mut dyn TraceHook>,
        ) -> Result<Vec<f32>> {
            use engine::tracing::{emit_rows, Stage};
            let rows: Vec<f32> = tokens
                .iter()
                .flat_map(|&t| [t as f32, -(t as f32)])
                .collect();
            emit_rows(&mut hook, Stage::Embed, None, None, 0, &[2], &rows);
            emit_rows(&mut hook, Stage::Logits, None, None, 0, &[2], &rows);
            Ok(rows)
        }
    }

    #[test]
    fn trace_with_writes_what_the_plan_selects() {
        let info = ModelInfo {
            path: "fake.gguf".into(),
            header_sha256: "00".into(),
            header_bytes: 0,
            n_layer: 2,
            n_expert: 4,
            n_expert_used: 2,
        };
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("t");
        let spec = PlanSpec::parse("logits@pos=last").unwrap();
        trace_with(&mut Fake, &[7, 8, 9], &spec, &out, &info).unwrap();
        let t = engine::tracing::TraceDir::open(&out).unwrap();
        let files: Vec<&str> = t.manifest.tensors.iter().map(|e| e.file.as_str()).collect();
        assert_eq!(files, ["logits.p002.npy"]);
        assert_eq!(t.manifest.tokens, [7, 8, 9]);
        // A position past the end is refused before the forward runs.
        let spec = PlanSpec::parse("logits@pos=3").unwrap();
        let e = trace_with(&mut Fake, &[7, 8, 9], &spec, &tmp.path().join("u"), &info);
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("position 3 is out of range"));
    }
}
