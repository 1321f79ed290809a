//! `infer bench --device cuda` (hook added by the GPU engineer; the CPU bench is bench.rs).
//!
//! Loads the GGUF file's tensors onto the GPU (engine::cuda), measures the device-to-device copy
//! bandwidth, then runs engine::cuda::bench: a --prompt-tokens prefill, greedy decode of
//! --gen-tokens tokens replayed from a CUDA graph (median of 3 runs after a warm-up), TTFT, peak
//! VRAM and the roofline fraction (active weight bytes per token over the copy bandwidth).

use anyhow::Result;

use crate::bench::BenchArgs;

#[cfg(not(feature = "cuda"))]
pub fn run(_args: &BenchArgs) -> Result<()> {
    anyhow::bail!(crate::gpu::NOT_BUILT)
}

#[cfg(feature = "cuda")]
pub fn run(args: &BenchArgs) -> Result<()> {
    use std::sync::Arc;

    use anyhow::Context;
    use engine::cuda::model::LoadOptions;
    use engine::cuda::{bench, GpuDevice, GpuModel};

    use crate::common::open_model;

    anyhow::ensure!(
        args.prompt_tokens > 0 && args.gen_tokens > 0,
        "--prompt-tokens and --gen-tokens must be at least 1"
    );
    let (file, model) = open_model(&args.model)?;
    let host = engine::tracing::gpu::host_model(file, &model);
    let dev = Arc::new(GpuDevice::open(0).context("opening the GPU")?);
    eprintln!(
        "device: {} (sm {}.{}, {} SMs, {:.1} GiB)",
        dev.info.name,
        dev.info.compute_capability.0,
        dev.info.compute_capability.1,
        dev.info.sm_count,
        dev.info.total_mem_bytes as f64 / (1u64 << 30) as f64
    );
    let bw = dev
        .copy_bandwidth_gbs(2 << 30, 10)
        .context("measuring copy bandwidth")?;
    let max_ctx = (args.prompt_tokens + args.gen_tokens + 2).next_multiple_of(64);
    let opts = LoadOptions {
        max_ctx,
        max_batch: args.prompt_tokens.min(512),
    };
    let mut gpu = GpuModel::load(dev, &host, opts).context("loading the model onto the GPU")?;
    let r = bench::run(&mut gpu, args.prompt_tokens, args.gen_tokens, 3, bw)
        .context("running the GPU bench")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!("device            {}", r.device);
        println!(
            "prefill           {:.0} tok/s ({} tokens)",
            r.prefill_tok_s, r.prompt_tokens
        );
        println!("TTFT              {:.1} ms", r.ttft_ms);
        println!(
            "decode            {:.1} tok/s ({} tokens, CUDA graph)",
            r.decode_tok_s, r.gen_tokens
        );
        println!("copy bandwidth    {:.0} GB/s", r.copy_bandwidth_gbs);
        println!(
            "roofline          {:.2} GB/token -> {:.0} tok/s; fraction {:.3}",
            r.active_bytes_per_token as f64 / 1e9,
            r.roofline_tok_s,
            r.roofline_fraction
        );
        let v = &r.vram;
        println!(
            "VRAM              {:.2} GB used at peak (weights {:.2} GB, KV {:.2} GB, scratch {:.2} GB)",
            v.used_peak.saturating_sub(v.used_at_start) as f64 / 1e9,
            v.weight_bytes_device as f64 / 1e9,
            v.kv_bytes as f64 / 1e9,
            v.scratch_bytes as f64 / 1e9
        );
        println!(
            "graph == direct   {} ({} tokens compared)",
            r.graph_matches_direct, r.tokens_checked
        );
    }
    anyhow::ensure!(
        r.graph_matches_direct,
        "the CUDA-graph decode produced other tokens than step-by-step decode"
    );
    Ok(())
}
