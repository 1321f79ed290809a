//! `infer run`: generate text from a prompt, streaming it to stdout.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use engine::generate::generate;
use engine::model::{tokenizer_from_gguf, ForwardOptions};
use engine::sampling::{Sampler, SamplingParams};
use engine::tokenizer::StreamDecoder;

use crate::common::{open_model, with_threads, Act, Device};

/// Generate text: the prompt is tokenized with the file's own tokenizer, the reply streamed as
/// it is produced, and generation stops at the end-of-sequence token or after --max-tokens.
///
/// Example: infer run small.gguf --prompt "the model" --max-tokens 32 --temperature 0.8 --seed 1
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// GGUF model file
    pub model: PathBuf,
    /// Text to continue (tokenized without a BOS token, as Qwen models expect)
    #[arg(long)]
    pub prompt: String,
    /// Stop after this many generated tokens (or earlier at EOS)
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// 0 = greedy
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Keep the K most likely tokens (0 = all)
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Nucleus sampling threshold (1.0 = off)
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Sampling seed (same seed and settings, same text)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Parse special tokens written in the prompt (e.g. <|im_start|>)
    #[arg(long)]
    pub special: bool,
    /// Activation precision: q8 (llama.cpp's scheme, fast) or f32 (exact)
    #[arg(long, value_enum, default_value_t = Act::Q8)]
    pub act: Act,
    /// Worker threads (0: one per core)
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Device to run on (cuda: the GPU forward, sampling on the host; needs `--features cuda`)
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
}

pub fn run(args: RunArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&args.top_p) || args.temperature < 0.0 {
        bail!("--top-p must be in [0, 1] and --temperature >= 0");
    }
    let (file, model) = open_model(&args.model)?;
    let tok =
        tokenizer_from_gguf(file).context("building the tokenizer from the file's metadata")?;
    let prompt = tok.encode(&args.prompt, args.special)?;
    if prompt.is_empty() {
        bail!("the prompt is empty after tokenization");
    }
    let mut sampler = Sampler::new(SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
    });
    let opts = ForwardOptions {
        act: args.act.to_engine(),
        ..Default::default()
    };
    let mut dec = StreamDecoder::default();
    let stdout = std::io::stdout();
    // Each token's bytes go out as soon as they complete a character.
    let emit = |out: &mut dyn Write, dec: &mut StreamDecoder, t: u32| {
        if let Ok(b) = tok.token_bytes(t) {
            let _ = out.write_all(dec.push(&b).as_bytes());
            let _ = out.flush();
        }
    };
    let finish = |out: &mut dyn Write, dec: &mut StreamDecoder| {
        let _ = out.write_all(dec.finish().as_bytes());
        let _ = writeln!(out);
    };
    let eos = tok.eos_id();
    let stats = match args.device {
        Device::Cpu => with_threads(args.threads, || {
            let mut out = stdout.lock();
            let r = generate(
                &model,
                &prompt,
                args.max_tokens,
                eos,
                &mut sampler,
                &opts,
                |t| emit(&mut out, &mut dec, t),
            );
            finish(&mut out, &mut dec);
            r
        })??,
        Device::Cuda => {
            let mut out = stdout.lock();
            let r = crate::gpu::generate(
                file,
                &model,
                &prompt,
                args.max_tokens,
                eos,
                &mut sampler,
                |t| emit(&mut out, &mut dec, t),
            );
            // A GPU that could not be used printed nothing: leave stdout empty.
            if r.is_ok() {
                finish(&mut out, &mut dec);
            }
            r?
        }
    };
    eprintln!(
        "[{} prompt tokens, {} generated{}; prefill {:.1} tok/s, decode {:.1} tok/s]",
        stats.prompt_tokens,
        stats.generated,
        if stats.stopped_at_eos {
            ", stopped at EOS"
        } else {
            ""
        },
        stats.prompt_tokens as f64 / stats.prefill_secs,
        stats.generated as f64 / stats.decode_secs.max(1e-9)
    );
    Ok(())
}
