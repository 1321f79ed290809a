//! Synthetic models: GGUF files with a real Qwen3-MoE layout, random but sane weights and a
//! working byte-level tokenizer, so that every test and benchmark has a file of known shape
//! without downloading weights.
//!
//! Weights: float tensors are uniform with RMS 1/sqrt(cols) (so each matrix keeps activations
//! at unit scale); K-quant and Q8_0 tensors are random bytes with small f16 super-scales chosen
//! to give the same RMS (random bytes are valid K-quant blocks). Norm weights are near 1. The
//! Q4_K_M mix follows llama.cpp's: Q4_K matrices, Q6_K `output.weight`, and Q6_K `attn_v` /
//! `ffn_down_exps` in its "more bits" layers; F32 norms and router. A matrix whose rows are not
//! a whole number of 256-blocks falls back to Q8_0, per tensor, as llama.cpp does.
//!
//! Generation is parallel (rayon, one SplitMix stream per 64 KiB chunk, so the bytes do not
//! depend on the thread count) and the file is written as a stream, tensor by tensor.

use std::io::{BufWriter, Seek, Write};
use std::path::Path;

use rayon::prelude::*;

use crate::model::kernels::{f32_to_f16, row_bytes, QType};
use crate::sampling::Rng;
use crate::tokenizer::bytes_to_unicode;

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("unknown preset `{0}` (tiny, tiny-mixed, odd, wide, small, qwen3-30b-a3b)")]
    UnknownPreset(String),
    #[error("unknown quantization `{0}` (q4_k_m, q8_0, f16, f32)")]
    UnknownQuant(String),
    #[error("invalid shape: {0}")]
    Shape(String),
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("reading the config file: {0}")]
    Config(String),
}

/// The shape of a synthetic model.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SynthShape {
    pub n_layer: usize,
    pub hidden: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    /// 0 for a dense qwen3 model.
    pub n_expert: usize,
    pub n_expert_used: usize,
    /// Expert FFN width (MoE) or FFN width (dense).
    pub ffn: usize,
    pub vocab: usize,
    #[serde(default = "default_ctx")]
    pub context_length: usize,
    #[serde(default = "default_rope")]
    pub rope_base: f32,
    #[serde(default = "default_eps")]
    pub rms_eps: f32,
}

fn default_ctx() -> usize {
    4096
}
fn default_rope() -> f32 {
    1_000_000.0
}
fn default_eps() -> f32 {
    1e-6
}

impl SynthShape {
    pub fn preset(name: &str) -> Result<SynthShape, SynthError> {
        let s =
            |n_layer, hidden, n_head, n_head_kv, head_dim, n_expert, n_expert_used, ffn, vocab| {
                SynthShape {
                    n_layer,
                    hidden,
                    n_head,
                    n_head_kv,
                    head_dim,
                    n_expert,
                    n_expert_used,
                    ffn,
                    vocab,
                    context_length: 4096,
                    rope_base: 1_000_000.0,
                    rms_eps: 1e-6,
                }
            };
        Ok(match name {
            "tiny" => s(2, 256, 4, 2, 64, 8, 2, 256, 512),
            "tiny-mixed" => s(6, 256, 4, 2, 64, 8, 2, 256, 512),
            "odd" => s(5, 256, 3, 1, 64, 16, 1, 256, 512),
            "wide" => s(2, 256, 4, 2, 64, 64, 8, 256, 512),
            "small" => s(8, 2048, 32, 4, 128, 32, 8, 768, 32000),
            "qwen3-30b-a3b" => s(48, 2048, 32, 4, 128, 128, 8, 768, 151936),
            other => return Err(SynthError::UnknownPreset(other.into())),
        })
    }

    fn check(&self) -> Result<(), SynthError> {
        let bad = |m: &str| Err(SynthError::Shape(m.into()));
        if self.n_layer == 0
            || self.hidden == 0
            || self.n_head == 0
            || self.n_head_kv == 0
            || self.ffn == 0
        {
            return bad("every size must be positive");
        }
        if self.n_head % self.n_head_kv != 0 {
            return bad("n_head must be a multiple of n_head_kv");
        }
        if self.head_dim % 2 != 0 || self.head_dim == 0 {
            return bad("head_dim must be even");
        }
        if self.n_expert > 0 && (self.n_expert_used == 0 || self.n_expert_used > self.n_expert) {
            return bad("n_expert_used must be in 1..=n_expert");
        }
        for (what, v) in [
            ("hidden", self.hidden),
            ("ffn", self.ffn),
            ("n_head * head_dim", self.n_head * self.head_dim),
        ] {
            if v % 32 != 0 {
                return Err(SynthError::Shape(format!(
                    "{what} = {v} must be a multiple of 32"
                )));
            }
        }
        if self.vocab < 300 {
            return bad("vocab must be at least 300 (256 byte tokens, merges, specials)");
        }
        Ok(())
    }
}

/// Weight formats of a synthetic file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynthQuant {
    F32,
    F16,
    Q8_0,
    /// llama.cpp's Q4_K_M mix.
    Q4KM,
    /// Layer-by-layer mix of Q4_K, Q5_K, Q6_K, Q8_0, F16 and F32 (attn_v always differs from
    /// attn_q in a layer; ffn_down_exps is Q6_K in even layers only).
    Mixed,
}

impl SynthQuant {
    pub fn parse(s: &str) -> Result<SynthQuant, SynthError> {
        Ok(match s {
            "f32" => SynthQuant::F32,
            "f16" => SynthQuant::F16,
            "q8_0" => SynthQuant::Q8_0,
            "q4_k_m" => SynthQuant::Q4KM,
            "mixed" => SynthQuant::Mixed,
            other => return Err(SynthError::UnknownQuant(other.into())),
        })
    }

    /// GGUF `general.file_type` (llama_ftype).
    fn file_type(self) -> u32 {
        match self {
            SynthQuant::F32 => 0,
            SynthQuant::F16 => 1,
            SynthQuant::Q8_0 => 7,
            SynthQuant::Q4KM | SynthQuant::Mixed => 15,
        }
    }
}

/// llama.cpp's `use_more_bits(i_layer, n_layers)`.
fn use_more_bits(i: usize, n: usize) -> bool {
    // The last test only runs when `i >= n / 8` (short-circuit), so it cannot underflow.
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The qtype of one matrix role in one layer (None: not a layer tensor).
fn qtype_for(quant: SynthQuant, role: &str, layer: Option<usize>, n_layer: usize) -> QType {
    match quant {
        SynthQuant::F32 => QType::F32,
        SynthQuant::F16 => QType::F16,
        SynthQuant::Q8_0 => QType::Q8_0,
        SynthQuant::Q4KM => match (role, layer) {
            ("output", _) => QType::Q6K,
            ("attn_v" | "ffn_down_exps" | "ffn_down", Some(l)) if use_more_bits(l, n_layer) => {
                QType::Q6K
            }
            _ => QType::Q4K,
        },
        SynthQuant::Mixed => {
            const CYCLE: [QType; 6] = [
                QType::Q4K,
                QType::Q5K,
                QType::Q6K,
                QType::Q8_0,
                QType::F16,
                QType::F32,
            ];
            match (role, layer) {
                ("output", _) => QType::Q6K,
                ("token_embd", _) => QType::Q8_0,
                ("attn_v", Some(l)) => CYCLE[(l + 1) % 6],
                ("ffn_down_exps", Some(l)) if l % 2 == 0 => QType::Q6K,
                (_, Some(l)) => CYCLE[l % 6],
                _ => QType::Q4K,
            }
        }
    }
}

/// Falls back to Q8_0 (then F16) when rows do not fill whole blocks.
fn fit(q: QType, cols: usize) -> QType {
    if row_bytes(q, cols).is_some() {
        q
    } else if row_bytes(QType::Q8_0, cols).is_some() {
        QType::Q8_0
    } else {
        QType::F16
    }
}

/// How a tensor's values are drawn.
#[derive(Clone, Copy, Debug)]
enum Init {
    /// Uniform with this RMS.
    Rms(f32),
    /// Uniform in [lo, hi] (norm weights near 1).
    Range(f32, f32),
}

struct PlannedTensor {
    name: String,
    dims: Vec<u64>,
    qtype: QType,
    init: Init,
    bytes: usize,
}

/// Metadata values the writer emits.
enum Meta {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    StrArr(Vec<String>),
    I32Arr(Vec<i32>),
}

/// The tokenizer section: 256 byte tokens, merges learnt from a small embedded text and then
/// filled with letter-pair merges, the Qwen special tokens, and reserved control tokens up to
/// `vocab` entries (the vocabulary must have exactly as many entries as the embedding has rows).
pub fn synth_vocab(vocab: usize) -> (Vec<String>, Vec<i32>, Vec<String>, u32, u32) {
    let table = bytes_to_unicode();
    let mut tokens: Vec<String> = table.iter().map(|c| c.to_string()).collect();
    let mut types = vec![1i32; 256];
    let mut seen: std::collections::HashSet<String> = tokens.iter().cloned().collect();
    let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    let budget = vocab.saturating_sub(specials.len() + 8).min(vocab * 9 / 10);
    let mut merges = Vec::new();
    let mut add = |a: &str,
                   b: &str,
                   tokens: &mut Vec<String>,
                   types: &mut Vec<i32>,
                   merges: &mut Vec<String>| {
        let m = format!("{a}{b}");
        if tokens.len() < budget && seen.insert(m.clone()) {
            merges.push(format!("{a} {b}"));
            tokens.push(m);
            types.push(1);
        }
    };
    // Common English pieces first (so that real text gets multi-byte tokens), then fill.
    let words = [
        "the", "and", "of", "to", "in", "is", "that", "it", "for", "on", "with", "as", "was", "he",
        "be", "at", "by", "this", "had", "not", "are", "but", "from", "or", "have", "an", "they",
        "which", "one", "you", "were", "her", "all", "she", "there", "would", "their", "we", "him",
        "been", "has", "when", "who", "will", "more", "no", "if", "out", "so", "said", "what",
        "up", "its", "about", "into", "than", "them", "can", "only", "other", "new", "some",
        "could", "time", "these", "two", "may", "then", "do", "first", "any", "my", "now", "such",
        "like", "our", "over", "man", "me", "even", "most", "made", "after", "also", "did", "many",
        "before", "must", "through", "back", "years", "where", "much", "your", "way", "well",
        "down", "should", "because", "each", "just", "those", "people", "how", "too", "little",
        "state", "good", "very", "make", "world", "still", "own", "see", "men", "work", "long",
        "get", "here", "between", "both", "life", "being", "under", "never", "day", "same",
        "another", "know", "while", "last", "might", "us", "great", "old", "year", "off", "come",
        "since", "against", "go", "came", "right", "used", "take", "three", "model", "token",
        "hello", "expert", "layer",
    ];
    for w in words {
        for prefix in [true, false] {
            let mut cur = if prefix {
                "Ġ".to_string()
            } else {
                String::new()
            };
            for ch in w.chars() {
                let c = ch.to_string();
                if cur.is_empty() {
                    cur = c;
                    continue;
                }
                add(&cur.clone(), &c, &mut tokens, &mut types, &mut merges);
                cur.push_str(&c);
            }
        }
    }
    let letters: Vec<String> = ('a'..='z').map(|c| c.to_string()).collect();
    'fill: for a in letters
        .iter()
        .map(|l| format!("Ġ{l}"))
        .chain(letters.iter().cloned())
        .collect::<Vec<_>>()
    {
        for b in &letters {
            if tokens.len() >= budget {
                break 'fill;
            }
            add(&a, b, &mut tokens, &mut types, &mut merges);
        }
    }
    let eot = tokens.len() as u32;
    for s in specials {
        tokens.push(s.to_string());
        types.push(3);
    }
    let im_end = eot + 2;
    let mut i = 0;
    while tokens.len() < vocab {
        tokens.push(format!("<|reserved_{i}|>"));
        types.push(3);
        i += 1;
    }
    (tokens, types, merges, eot, im_end)
}

/// Writes a synthetic model to `path`; returns the number of bytes written.
pub fn write_synthetic(
    path: &Path,
    shape: &SynthShape,
    quant: SynthQuant,
    seed: u64,
) -> Result<u64, SynthError> {
    shape.check()?;
    let s = shape;
    let moe = s.n_expert > 0;
    let arch = if moe { "qwen3moe" } else { "qwen3" };
    let (q_dim, kv_dim) = (
        (s.n_head * s.head_dim) as u64,
        (s.n_head_kv * s.head_dim) as u64,
    );
    let (h, ff, ne, v) = (
        s.hidden as u64,
        s.ffn as u64,
        s.n_expert as u64,
        s.vocab as u64,
    );

    let mut plan: Vec<PlannedTensor> = Vec::new();
    let mut push = |name: String, dims: Vec<u64>, role: &str, layer: Option<usize>, init: Init| {
        let cols = dims[0] as usize;
        let float_only = matches!(init, Init::Range(..)) || role == "ffn_gate_inp";
        let qtype = if float_only {
            QType::F32
        } else {
            fit(qtype_for(quant, role, layer, s.n_layer), cols)
        };
        let n: u64 = dims.iter().product();
        let (bs, bb) = qtype.block();
        plan.push(PlannedTensor {
            name,
            dims,
            qtype,
            init,
            bytes: n as usize / bs * bb,
        });
    };
    let rms = |cols: u64| Init::Rms(1.0 / (cols as f32).sqrt());
    push(
        "token_embd.weight".into(),
        vec![h, v],
        "token_embd",
        None,
        Init::Rms(1.0),
    );
    for l in 0..s.n_layer {
        let n = |r: &str| format!("blk.{l}.{r}.weight");
        let norm = Init::Range(0.8, 1.2);
        push(n("attn_norm"), vec![h], "norm", Some(l), norm);
        push(n("attn_q"), vec![h, q_dim], "attn_q", Some(l), rms(h));
        push(n("attn_k"), vec![h, kv_dim], "attn_k", Some(l), rms(h));
        push(n("attn_v"), vec![h, kv_dim], "attn_v", Some(l), rms(h));
        push(
            n("attn_output"),
            vec![q_dim, h],
            "attn_output",
            Some(l),
            rms(q_dim),
        );
        push(
            n("attn_q_norm"),
            vec![s.head_dim as u64],
            "norm",
            Some(l),
            norm,
        );
        push(
            n("attn_k_norm"),
            vec![s.head_dim as u64],
            "norm",
            Some(l),
            norm,
        );
        push(n("ffn_norm"), vec![h], "norm", Some(l), norm);
        if moe {
            // A wider router spread than 1/sqrt(h) makes routing less uniform, like real models.
            push(
                n("ffn_gate_inp"),
                vec![h, ne],
                "ffn_gate_inp",
                Some(l),
                Init::Rms(2.0 / (h as f32).sqrt()),
            );
            push(
                n("ffn_gate_exps"),
                vec![h, ff, ne],
                "ffn_gate_exps",
                Some(l),
                rms(h),
            );
            push(
                n("ffn_up_exps"),
                vec![h, ff, ne],
                "ffn_up_exps",
                Some(l),
                rms(h),
            );
            push(
                n("ffn_down_exps"),
                vec![ff, h, ne],
                "ffn_down_exps",
                Some(l),
                rms(ff),
            );
        } else {
            push(n("ffn_gate"), vec![h, ff], "ffn_gate", Some(l), rms(h));
            push(n("ffn_up"), vec![h, ff], "ffn_up", Some(l), rms(h));
            push(n("ffn_down"), vec![ff, h], "ffn_down", Some(l), rms(ff));
        }
    }
    push(
        "output_norm.weight".into(),
        vec![h],
        "norm",
        None,
        Init::Range(0.8, 1.2),
    );
    push("output.weight".into(), vec![h, v], "output", None, rms(h));

    let (tokens, types, merges, eot, im_end) = synth_vocab(s.vocab);
    let key = |k: &str| format!("{arch}.{k}");
    let mut meta: Vec<(String, Meta)> = vec![
        ("general.architecture".into(), Meta::Str(arch.into())),
        (
            "general.name".into(),
            Meta::Str(format!("pv synthetic {arch} seed {seed}")),
        ),
        ("general.file_type".into(), Meta::U32(quant.file_type())),
        ("general.alignment".into(), Meta::U32(32)),
        (key("block_count"), Meta::U32(s.n_layer as u32)),
        (key("context_length"), Meta::U32(s.context_length as u32)),
        (key("embedding_length"), Meta::U32(s.hidden as u32)),
        (key("feed_forward_length"), Meta::U32(s.ffn as u32)),
        (key("attention.head_count"), Meta::U32(s.n_head as u32)),
        (
            key("attention.head_count_kv"),
            Meta::U32(s.n_head_kv as u32),
        ),
        (key("attention.key_length"), Meta::U32(s.head_dim as u32)),
        (key("attention.value_length"), Meta::U32(s.head_dim as u32)),
        (
            key("attention.layer_norm_rms_epsilon"),
            Meta::F32(s.rms_eps),
        ),
        (key("rope.freq_base"), Meta::F32(s.rope_base)),
    ];
    if moe {
        meta.push((key("expert_count"), Meta::U32(s.n_expert as u32)));
        meta.push((key("expert_used_count"), Meta::U32(s.n_expert_used as u32)));
        meta.push((key("expert_feed_forward_length"), Meta::U32(s.ffn as u32)));
    }
    meta.extend([
        ("tokenizer.ggml.model".into(), Meta::Str("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Meta::Str("qwen2".into())),
        ("tokenizer.ggml.tokens".into(), Meta::StrArr(tokens)),
        ("tokenizer.ggml.token_type".into(), Meta::I32Arr(types)),
        ("tokenizer.ggml.merges".into(), Meta::StrArr(merges)),
        ("tokenizer.ggml.eos_token_id".into(), Meta::U32(im_end)),
        ("tokenizer.ggml.padding_token_id".into(), Meta::U32(eot)),
        ("tokenizer.ggml.bos_token_id".into(), Meta::U32(eot)),
        ("tokenizer.ggml.add_bos_token".into(), Meta::Bool(false)),
    ]);

    let io = |source| SynthError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut w = BufWriter::with_capacity(8 << 20, file);
    write_header(&mut w, &meta, &plan).map_err(io)?;
    for (ti, t) in plan.iter().enumerate() {
        let data = generate(t, seed, ti as u64);
        w.write_all(&data).map_err(io)?;
        let pad = (32 - data.len() % 32) % 32;
        w.write_all(&[0u8; 32][..pad]).map_err(io)?;
    }
    w.flush().map_err(io)?;
    let len = w.stream_position().map_err(io)?;
    Ok(len)
}

fn write_header(
    w: &mut impl Write,
    meta: &[(String, Meta)],
    plan: &[PlannedTensor],
) -> std::io::Result<()> {
    fn string(w: &mut impl Write, s: &str) -> std::io::Result<()> {
        w.write_all(&(s.len() as u64).to_le_bytes())?;
        w.write_all(s.as_bytes())
    }
    let mut buf: Vec<u8> = Vec::new();
    buf.extend_from_slice(b"GGUF");
    buf.extend_from_slice(&3u32.to_le_bytes());
    buf.extend_from_slice(&(plan.len() as u64).to_le_bytes());
    buf.extend_from_slice(&(meta.len() as u64).to_le_bytes());
    for (k, v) in meta {
        string(&mut buf, k)?;
        match v {
            Meta::U32(x) => {
                buf.extend_from_slice(&4u32.to_le_bytes());
                buf.extend_from_slice(&x.to_le_bytes());
            }
            Meta::F32(x) => {
                buf.extend_from_slice(&6u32.to_le_bytes());
                buf.extend_from_slice(&x.to_le_bytes());
            }
            Meta::Bool(x) => {
                buf.extend_from_slice(&7u32.to_le_bytes());
                buf.push(*x as u8);
            }
            Meta::Str(s) => {
                buf.extend_from_slice(&8u32.to_le_bytes());
                string(&mut buf, s)?;
            }
            Meta::StrArr(a) => {
                buf.extend_from_slice(&9u32.to_le_bytes());
                buf.extend_from_slice(&8u32.to_le_bytes());
                buf.extend_from_slice(&(a.len() as u64).to_le_bytes());
                for s in a {
                    string(&mut buf, s)?;
                }
            }
            Meta::I32Arr(a) => {
                buf.extend_from_slice(&9u32.to_le_bytes());
                buf.extend_from_slice(&5u32.to_le_bytes());
                buf.extend_from_slice(&(a.len() as u64).to_le_bytes());
                for x in a {
                    buf.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
    }
    let mut offset = 0u64;
    for t in plan {
        string(&mut buf, &t.name)?;
        buf.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            buf.extend_from_slice(&d.to_le_bytes());
        }
        buf.extend_from_slice(&t.qtype.ggml_id().to_le_bytes());
        buf.extend_from_slice(&offset.to_le_bytes());
        offset += (t.bytes as u64).div_ceil(32) * 32;
    }
    let pad = (32 - buf.len() % 32) % 32;
    buf.extend(std::iter::repeat_n(0u8, pad));
    w.write_all(&buf)
}

/// Expected RMS of the integer part of one element, per format, with the min/scale layout this
/// generator uses (see `fill_block`): the super-scale is RMS / this.
fn unit_rms(q: QType) -> f32 {
    match q {
        // d * (sc*q - 7.5*m), sc,m ~ U[0,63], q ~ U[0,15]
        QType::Q4K => 258.0,
        // d * (sc*q - 15.5*m), q ~ U[0,31]
        QType::Q5K => 527.0,
        // d * sc * (q - 32), sc ~ U[-128,127] (i8), q ~ U[0,63]
        QType::Q6K => 1365.0,
        // d * q, q ~ U[-128,127]
        QType::Q8_0 => 73.9,
        QType::F32 | QType::F16 => 1.0,
    }
}

/// Generates one tensor's bytes. Chunks of 64 KiB values (whole blocks) each get their own RNG
/// stream from (seed, tensor index, chunk index), so the result is the same on any thread count.
fn generate(t: &PlannedTensor, seed: u64, ti: u64) -> Vec<u8> {
    let (_, bb) = t.qtype.block();
    let mut out = vec![0u8; t.bytes];
    let chunk_bytes = (65536 / bb).max(1) * bb;
    out.par_chunks_mut(chunk_bytes)
        .enumerate()
        .for_each(|(ci, chunk)| {
            let mut rng = Rng::new(
                seed.wrapping_mul(0x9e37_79b9)
                    .wrapping_add(ti << 32)
                    .wrapping_add(ci as u64),
            );
            fill(chunk, t.qtype, t.init, &mut rng);
        });
    out
}

fn fill(chunk: &mut [u8], q: QType, init: Init, rng: &mut Rng) {
    let uniform = |rng: &mut Rng| -> f32 {
        match init {
            // Uniform on [-a, a] has RMS a / sqrt(3).
            Init::Rms(r) => (rng.next_f32() * 2.0 - 1.0) * r * 3f32.sqrt(),
            Init::Range(lo, hi) => lo + rng.next_f32() * (hi - lo),
        }
    };
    match q {
        QType::F32 => {
            for c in chunk.chunks_exact_mut(4) {
                c.copy_from_slice(&uniform(rng).to_le_bytes());
            }
        }
        QType::F16 => {
            for c in chunk.chunks_exact_mut(2) {
                c.copy_from_slice(&f32_to_f16(uniform(rng)).to_le_bytes());
            }
        }
        _ => {
            let target = match init {
                Init::Rms(r) => r,
                Init::Range(_, hi) => hi,
            };
            let d = target / unit_rms(q);
            let (_, bb) = q.block();
            for block in chunk.chunks_exact_mut(bb) {
                for c in block.chunks_mut(8) {
                    let r = rng.next_u64().to_le_bytes();
                    c.copy_from_slice(&r[..c.len()]);
                }
                // Scales vary a little per block (x0.75 .. x1.25) like real ones.
                let db = d * (0.75 + 0.5 * rng.next_f32());
                let put = |b: &mut [u8], at: usize, x: f32| {
                    b[at..at + 2].copy_from_slice(&f32_to_f16(x).to_le_bytes())
                };
                match q {
                    QType::Q8_0 => put(block, 0, db),
                    QType::Q4K => {
                        put(block, 0, db);
                        put(block, 2, db * 7.5);
                    }
                    QType::Q5K => {
                        put(block, 0, db);
                        put(block, 2, db * 15.5);
                    }
                    QType::Q6K => put(block, 208, db),
                    QType::F32 | QType::F16 => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{tokenizer_from_gguf, GgufFile, Model, QType};

    #[test]
    fn tiny_q4_k_m_loads_with_the_llama_cpp_mix_and_is_small() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tiny.gguf");
        let shape = SynthShape::preset("tiny").unwrap();
        let bytes = write_synthetic(&p, &shape, SynthQuant::Q4KM, 1).unwrap();
        assert!(bytes < 5 << 20, "{bytes}");
        let f = GgufFile::open(&p).unwrap();
        let m = Model::load(&f).unwrap();
        assert_eq!(m.config.vocab, 512);
        assert_eq!(m.weights.output.m.qtype, QType::Q6K);
        // 2 layers: use_more_bits(1, 2) is true, (0, 2) is not: the qtypes mix across layers.
        assert_eq!(m.weights.layers[0].wv.m.qtype, QType::Q4K);
        assert_eq!(m.weights.layers[1].wv.m.qtype, QType::Q6K);
        assert_eq!(m.weights.layers[0].wq.m.qtype, QType::Q4K);
        let tok = tokenizer_from_gguf(&f).unwrap();
        assert_eq!(tok.vocab_size(), 512);
        let ids = tok.encode("hello the model", false).unwrap();
        assert!(
            ids.len() < "hello the model".len(),
            "merges shorten text: {ids:?}"
        );
        assert_eq!(tok.decode(&ids).unwrap(), "hello the model");
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let shape = SynthShape::preset("tiny").unwrap();
        let read = |seed, name: &str| {
            let p = dir.path().join(name);
            write_synthetic(&p, &shape, SynthQuant::Q8_0, seed).unwrap();
            std::fs::read(p).unwrap()
        };
        let (a, b, c) = (read(5, "a"), read(5, "b"), read(6, "c"));
        assert_eq!(a.len(), b.len());
        assert!(a == b);
        assert!(a != c);
    }

    #[test]
    fn more_bits_layers_follow_llama_cpp() {
        // 48 layers: 0..6 and 42..48, and every third layer in between starting at 8.
        let more: Vec<usize> = (0..48).filter(|&i| use_more_bits(i, 48)).collect();
        assert_eq!(&more[..8], &[0, 1, 2, 3, 4, 5, 8, 11]);
        assert!(more.contains(&47) && !more.contains(&6));
    }
}
