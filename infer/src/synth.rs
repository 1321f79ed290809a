//! `infer synth`: write a synthetic model.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use engine::synth::{write_synthetic, SynthQuant, SynthShape};

/// Write a synthetic Qwen3-MoE GGUF file with random but sane weights and a working tokenizer.
///
/// Presets: tiny (2 layers, hidden 256, 8 experts top-2, vocab 512; < 5 MB at q4_k_m),
/// tiny-mixed (6 layers, qtypes vary per layer; use --quant mixed), odd (3 q / 1 kv heads, 16
/// experts top-1), wide (64 experts top-8), small (the cpu-small benchmark shape: 8 layers,
/// hidden 2048, 32 experts top-8, ~0.9 GB at q4_k_m), qwen3-30b-a3b (the real shape, ~17 GB).
///
/// Example: infer synth --preset small --quant q4_k_m --seed 1 -o small.gguf
#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// Shape preset
    #[arg(long, conflicts_with = "config")]
    pub preset: Option<String>,
    /// JSON file with the shape: {"n_layer":2,"hidden":256,"n_head":4,"n_head_kv":2,
    /// "head_dim":64,"n_expert":8,"n_expert_used":2,"ffn":256,"vocab":512}
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Weight format: q4_k_m (llama.cpp's mix), q8_0, f16, f32, mixed
    #[arg(long, default_value = "q4_k_m")]
    pub quant: String,
    /// RNG seed (same seed, same file)
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output file
    #[arg(short = 'o', long = "out")]
    pub out: PathBuf,
}

pub fn run(args: SynthArgs) -> Result<()> {
    let shape = match (&args.preset, &args.config) {
        (Some(p), None) => SynthShape::preset(p)?,
        (None, Some(f)) => {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a valid shape", f.display()))?
        }
        _ => bail!("give exactly one of --preset NAME or --config FILE"),
    };
    let quant = SynthQuant::parse(&args.quant)?;
    let t = Instant::now();
    let bytes = write_synthetic(&args.out, &shape, quant, args.seed)?;
    eprintln!(
        "wrote {} ({:.1} MB) in {:.1} s",
        args.out.display(),
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
