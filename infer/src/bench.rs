//! `infer bench`: prefill and decode speed, time to first token, per-token latency percentiles
//! and peak memory.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use engine::model::{ForwardOptions, KvCache, Logits};
use engine::sampling::{argmax, Rng};

use crate::common::{open_model, with_threads, Act, Device};

/// Measure speed: a prompt of --prompt-tokens random tokens is prefilled in one call, then
/// --gen-tokens tokens are decoded greedily one at a time. Reports prefill tok/s, decode tok/s,
/// time to first token (prefill + first sampled token), p50/p99 per-token decode latency and
/// the process's peak RSS. A progress bar goes to stderr; --json prints one JSON object.
///
/// Example: infer bench small.gguf --prompt-tokens 128 --gen-tokens 32 --threads 2 --json
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// GGUF model file
    pub model: PathBuf,
    /// Device to run on
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
    /// Prompt length (random token ids, prefilled in one call)
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: usize,
    /// Tokens to decode greedily, one per call
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: usize,
    /// Worker threads (0: one per core)
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    #[arg(long, value_enum, default_value_t = Act::Q8)]
    pub act: Act,
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// Seed of the random prompt
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

pub fn run(args: BenchArgs) -> Result<()> {
    // GPU engineer's hook: the CUDA bench lives in bench_cuda.rs
    if args.device == Device::Cuda {
        return crate::bench_cuda::run(&args);
    }
    anyhow::ensure!(args.prompt_tokens > 0, "--prompt-tokens must be at least 1");
    let (_file, model) = open_model(&args.model)?;
    let vocab = model.config.vocab;
    let mut rng = Rng::new(args.seed);
    let prompt: Vec<u32> = (0..args.prompt_tokens)
        .map(|_| (rng.next_u64() % vocab as u64) as u32)
        .collect();
    let opts = ForwardOptions {
        act: args.act.to_engine(),
        ..Default::default()
    };
    let threads = if args.threads == 0 {
        rayon_threads()
    } else {
        args.threads
    };
    let result = with_threads(args.threads, || -> Result<serde_json::Value> {
        let mut cache = KvCache::new(&model, args.prompt_tokens + args.gen_tokens + 1);
        let t0 = Instant::now();
        let logits = model.forward(&prompt, &mut cache, &opts, Logits::Last, None)?;
        let prefill = t0.elapsed().as_secs_f64();
        let mut next = argmax(&logits) as u32;
        let ttft = t0.elapsed().as_secs_f64();
        let mut lat = Vec::with_capacity(args.gen_tokens);
        let td = Instant::now();
        for i in 0..args.gen_tokens {
            let t = Instant::now();
            let logits = model.forward(&[next], &mut cache, &opts, Logits::Last, None)?;
            next = argmax(&logits) as u32;
            lat.push(t.elapsed().as_secs_f64());
            if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                let done = (i + 1) * 40 / args.gen_tokens.max(1);
                eprint!(
                    "\rdecode [{}{}] {}/{}",
                    "#".repeat(done),
                    " ".repeat(40 - done),
                    i + 1,
                    args.gen_tokens
                );
                let _ = std::io::stderr().flush();
            }
        }
        eprintln!();
        let decode = td.elapsed().as_secs_f64();
        let mut sorted = lat.clone();
        sorted.sort_by(f64::total_cmp);
        Ok(serde_json::json!({
            "model": args.model.display().to_string(),
            "device": "cpu",
            "threads": threads,
            "act": format!("{:?}", args.act).to_lowercase(),
            "prompt_tokens": args.prompt_tokens,
            "gen_tokens": args.gen_tokens,
            "prefill_tok_s": args.prompt_tokens as f64 / prefill,
            "decode_tok_s": args.gen_tokens as f64 / decode,
            "ttft_ms": ttft * 1e3,
            "p50_token_ms": percentile(&sorted, 0.5) * 1e3,
            "p99_token_ms": percentile(&sorted, 0.99) * 1e3,
            "peak_rss_bytes": peak_rss_bytes(),
        }))
    })??;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!(
            "prefill {:.1} tok/s | decode {:.1} tok/s | TTFT {:.1} ms | p50 {:.2} ms p99 {:.2} ms | peak RSS {:.0} MB",
            result["prefill_tok_s"].as_f64().unwrap_or(f64::NAN),
            result["decode_tok_s"].as_f64().unwrap_or(f64::NAN),
            result["ttft_ms"].as_f64().unwrap_or(f64::NAN),
            result["p50_token_ms"].as_f64().unwrap_or(f64::NAN),
            result["p99_token_ms"].as_f64().unwrap_or(f64::NAN),
            result["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN) / 1e6,
        );
    }
    Ok(())
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
