//! `infer logits`: every position's logits for a token list — the stable oracle interface
//! (docs/infer-cli.md).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use engine::model::{ForwardOptions, KvCache, Logits};
use engine::tracing::npy::{NpyArray, NpyData};

use crate::common::{open_model, parse_tokens, with_threads, Act, Device};

/// Print or save the logits of every position for the given token ids.
///
/// The output has one row per position (rows = positions, columns = vocabulary): `.npy`
/// (float32, shape [n_tokens, vocab]) or `.json` ({"tokens": [...], "vocab": V, "logits":
/// [[...], ...]}).
///
/// Example: infer logits tiny.gguf --tokens 1,2,3 --out logits.npy
#[derive(clap::Args, Debug)]
pub struct LogitsArgs {
    /// GGUF model file
    pub model: PathBuf,
    /// Token ids, comma-separated
    #[arg(long)]
    pub tokens: String,
    /// Device to run on (cuda: the GPU forward, same output layout; needs `--features cuda`)
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
    /// Activation precision (CPU)
    #[arg(long, value_enum, default_value_t = Act::Q8)]
    pub act: Act,
    /// Output file: .npy or .json
    #[arg(long)]
    pub out: PathBuf,
    /// Worker threads (0: one per core)
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

pub fn run(args: LogitsArgs) -> Result<()> {
    let tokens = parse_tokens(&args.tokens)?;
    let ext = args.out.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext != "npy" && ext != "json" {
        bail!(
            "--out must end in .npy or .json, got {}",
            args.out.display()
        );
    }
    let (file, model) = open_model(&args.model)?;
    let logits = match args.device {
        Device::Cpu => {
            let opts = ForwardOptions {
                act: args.act.to_engine(),
                ..Default::default()
            };
            with_threads(args.threads, || {
                let mut cache = KvCache::new(&model, tokens.len());
                model.forward(&tokens, &mut cache, &opts, Logits::All, None)
            })??
        }
        // The CUDA forward's own precision; --act and --threads are CPU settings.
        Device::Cuda => crate::gpu::logits(file, &model, &tokens)?,
    };
    let vocab = model.config.vocab;
    if ext == "npy" {
        let arr = NpyArray::new(vec![tokens.len(), vocab], NpyData::F32(logits))?;
        std::fs::write(&args.out, arr.to_bytes()?)
            .with_context(|| format!("writing {}", args.out.display()))?;
    } else {
        let rows: Vec<&[f32]> = logits.chunks(vocab).collect();
        let v = serde_json::json!({ "tokens": tokens, "vocab": vocab, "logits": rows });
        std::fs::write(&args.out, serde_json::to_vec(&v)?)
            .with_context(|| format!("writing {}", args.out.display()))?;
    }
    Ok(())
}
