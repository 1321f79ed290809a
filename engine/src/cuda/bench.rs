//! Throughput measurement of the GPU forward: prefill tok/s, TTFT, greedy decode tok/s from the
//! captured graph, VRAM, and the roofline fraction (active weight bytes per token over measured
//! copy bandwidth).

use std::time::Instant;

use cudarc::driver::sys;

use super::device::drv;
use super::model::{GpuModel, VramReport};
use super::CudaError;

#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    pub device: String,
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    pub reps: usize,
    /// Median over reps (the first, warm-up rep is not counted).
    pub prefill_tok_s: f64,
    pub prefill_tok_s_all: Vec<f64>,
    pub ttft_ms: f64,
    pub decode_tok_s: f64,
    pub decode_tok_s_all: Vec<f64>,
    pub copy_bandwidth_gbs: f64,
    pub active_bytes_per_token: usize,
    pub roofline_tok_s: f64,
    pub roofline_fraction: f64,
    pub vram: VramReport,
    /// Tokens of the last rep's greedy decode (graph path) equal those of step-by-step decoding
    /// without the graph.
    pub graph_matches_direct: bool,
    pub tokens_checked: usize,
    pub graph_tokens: Vec<u32>,
    pub direct_tokens: Vec<u32>,
    /// Kernel time breakdown (ms, launches) of one direct decode step at position prompt_len
    /// and of one prefill of the prompt (events between launches).
    pub profile_decode: Vec<(String, f64, usize)>,
    pub profile_prefill: Vec<(String, f64, usize)>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

/// Deterministic pseudo-random prompt.
pub fn prompt(len: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % vocab as u64) as u32
        })
        .collect()
}

pub fn run(
    m: &mut GpuModel,
    prompt_len: usize,
    gen: usize,
    reps: usize,
    copy_bw_gbs: f64,
) -> Result<BenchReport, CudaError> {
    let toks = prompt(prompt_len, m.cfg.vocab, 0x5eed);
    let start = m
        .dev
        .ctx
        .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
        .map_err(drv("event"))?;
    let stop = m
        .dev
        .ctx
        .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
        .map_err(drv("event"))?;
    let mut pf = Vec::new();
    let mut ttft = Vec::new();
    let mut dec = Vec::new();
    let mut last_tokens = Vec::new();
    for rep in 0..reps + 1 {
        m.reset()?;
        m.dev.sync()?;
        let t0 = Instant::now();
        m.prefill(&toks, false, None)?; // returns after the logits are on the host
        let pre_s = t0.elapsed().as_secs_f64();
        m.argmax_last_logits()?;
        m.dev.sync()?;
        let ttft_s = t0.elapsed().as_secs_f64();
        let p0 = m.pos();
        // the first rep also captures the graph, outside the timed region
        if rep == 0 {
            m.decode_steps_graph(0)?;
        }
        start.record(&m.dev.stream).map_err(drv("event record"))?;
        m.decode_steps_graph(gen)?;
        stop.record(&m.dev.stream).map_err(drv("event record"))?;
        stop.synchronize().map_err(drv("event sync"))?;
        let ms = start.elapsed_ms(&stop).map_err(drv("event time"))? as f64;
        let _ = p0;
        if rep > 0 {
            pf.push(prompt_len as f64 / pre_s);
            ttft.push(ttft_s * 1e3);
            dec.push(gen as f64 / (ms * 1e-3));
        }
        last_tokens = m.generated_tokens(prompt_len, gen + 1)?;
    }
    // Same prompt, step-by-step decode without the graph: the tokens must be the same.
    let check = gen.min(16);
    m.reset()?;
    let mut logits = m.prefill(&toks, false, None)?;
    let mut direct = Vec::new();
    for _ in 0..check {
        let t = argmax(&logits);
        direct.push(t);
        logits = m.decode(t, None)?;
    }
    let graph_matches_direct = last_tokens.len() >= check && last_tokens[..check] == direct[..];
    m.reset()?;
    let profile_prefill = m.profile(&toks)?;
    let profile_decode = m.profile(&[direct[0]])?;
    let active = m.active_bytes_per_token();
    let roof = copy_bw_gbs * 1e9 / active as f64;
    let decode_tok_s = median(&dec);
    Ok(BenchReport {
        device: m.dev.info.name.clone(),
        prompt_tokens: prompt_len,
        gen_tokens: gen,
        reps,
        prefill_tok_s: median(&pf),
        prefill_tok_s_all: pf,
        ttft_ms: median(&ttft),
        decode_tok_s,
        decode_tok_s_all: dec,
        copy_bandwidth_gbs: copy_bw_gbs,
        active_bytes_per_token: active,
        roofline_tok_s: roof,
        roofline_fraction: decode_tok_s / roof,
        vram: m.vram()?,
        graph_matches_direct,
        tokens_checked: check,
        graph_tokens: last_tokens.iter().take(check).cloned().collect(),
        direct_tokens: direct,
        profile_decode,
        profile_prefill,
    })
}

/// First index of the largest value (NaN never wins).
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = f32::NEG_INFINITY;
    let mut idx = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > best {
            best = x;
            idx = i;
        }
    }
    idx as u32
}
