//! Synthetic Qwen3-MoE models built in memory (no file), for the GPU falsifiers and the bench
//! when no GGUF is at hand. Weights are random valid blocks: random quant bytes with small f16
//! super-scales chosen so that a mat-vec over a unit-RMS input gives outputs of order 1, which
//! keeps 48 layers of residual stream finite and the routing non-degenerate (near-uniform, as with
//! real weights). Deterministic for a given preset and seed.

use super::qtype::{f32_to_f16, GpuQType};
use super::{GpuConfig, HostModel, HostTensor};

/// An owned synthetic model; [`SynthModel::host`] borrows it as a [`HostModel`].
pub struct SynthModel {
    pub preset: String,
    pub config: GpuConfig,
    pub tensors: Vec<(String, GpuQType, Vec<u64>, Vec<u8>)>,
}

impl SynthModel {
    pub fn host(&self) -> HostModel<'_> {
        HostModel {
            config: self.config.clone(),
            tensors: self
                .tensors
                .iter()
                .map(|(n, q, d, b)| HostTensor {
                    name: n.clone(),
                    ggml_type: q.ggml_id(),
                    dims: d.clone(),
                    data: b,
                })
                .collect(),
        }
    }

    /// Total tensor bytes (GGUF layout).
    pub fn bytes(&self) -> usize {
        self.tensors.iter().map(|t| t.3.len()).sum()
    }
}

/// The presets: `tiny` (2 layers, Q4_K with a Q6_K layer), `tiny-mixed` (6 layers, one qtype per
/// layer: Q4_K, Q5_K, Q6_K, Q8_0, F16, F32, with Q6_K / Q4_K expert-down swaps and a Q8_0 head),
/// `qwen3-30b-a3b` (the real shape, Q4_K_M-like mix).
pub fn preset_names() -> &'static [&'static str] {
    &["tiny", "tiny-mixed", "qwen3-30b-a3b"]
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit(state: &mut u64) -> f32 {
    (splitmix(state) >> 40) as f32 / (1u64 << 24) as f32
}

fn name_seed(seed: u64, name: &str) -> u64 {
    let mut h = seed ^ 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Fill `out` with random blocks of `qt` (GGUF layout). `scale` sets the typical magnitude of a
/// weight (its standard deviation, roughly).
fn fill(qt: GpuQType, out: &mut [u8], seed: u64, scale: f32) {
    let mut s = seed;
    // bulk random bytes
    for c in out.chunks_mut(8) {
        let r = splitmix(&mut s).to_le_bytes();
        c.copy_from_slice(&r[..c.len()]);
    }
    let put16 = |b: &mut [u8], at: usize, v: f32| {
        b[at..at + 2].copy_from_slice(&f32_to_f16(v).to_le_bytes())
    };
    match qt {
        GpuQType::Q4K => {
            // w = d*sc*q - dmin*m: std ~ 257 d when dmin ~ 7.5 d (mean ~ 0)
            for b in out.chunks_exact_mut(144) {
                let d = scale / 257.0 * (0.5 + unit(&mut s));
                put16(b, 0, d);
                put16(b, 2, d * 7.5 * (0.8 + 0.4 * unit(&mut s)));
            }
        }
        GpuQType::Q5K => {
            for b in out.chunks_exact_mut(176) {
                let d = scale / 530.0 * (0.5 + unit(&mut s));
                put16(b, 0, d);
                put16(b, 2, d * 15.5 * (0.8 + 0.4 * unit(&mut s)));
            }
        }
        GpuQType::Q6K => {
            for b in out.chunks_exact_mut(210) {
                let d = scale / 1369.0 * (0.5 + unit(&mut s));
                put16(b, 208, d);
            }
        }
        GpuQType::Q8_0 => {
            for b in out.chunks_exact_mut(34) {
                let d = scale / 74.0 * (0.5 + unit(&mut s));
                put16(b, 0, d);
            }
        }
        GpuQType::F16 => {
            for c in out.chunks_exact_mut(2) {
                let v = (unit(&mut s) * 2.0 - 1.0) * scale * 1.732;
                put16(c, 0, v);
            }
        }
        GpuQType::F32 => {
            for c in out.chunks_exact_mut(4) {
                let v = (unit(&mut s) * 2.0 - 1.0) * scale * 1.732;
                c.copy_from_slice(&v.to_le_bytes());
            }
        }
    }
}

fn norm_weights(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    let mut v = Vec::with_capacity(n * 4);
    for _ in 0..n {
        v.extend_from_slice(&(0.8 + 0.4 * unit(&mut s)).to_le_bytes());
    }
    v
}

struct Spec {
    name: String,
    qt: GpuQType,
    dims: Vec<u64>,
    scale: f32,
    norm: bool,
}

/// The qtype of a tensor role (`attn_v`, `ffn_down_exps`, `output`, ...) at a layer.
type QTypeRule = Box<dyn Fn(usize, &str) -> GpuQType>;

/// Build a preset. Generation runs on all cores (the 30B shape is about 18 GB).
pub fn build(preset: &str, seed: u64) -> Option<SynthModel> {
    use GpuQType::*;
    let (config, per_layer): (GpuConfig, QTypeRule) = match preset {
        "tiny" => (
            GpuConfig {
                n_layer: 2,
                n_embd: 256,
                n_head: 4,
                n_head_kv: 2,
                head_dim: 64,
                n_expert: 8,
                n_expert_used: 2,
                expert_ff: 256,
                vocab: 512,
                rope_base: 10000.0,
                rms_eps: 1e-6,
            },
            Box::new(|l, role| match role {
                "output" => Q6K,
                "ffn_down_exps" | "attn_v" if l == 1 => Q6K,
                _ => Q4K,
            }),
        ),
        "tiny-mixed" => (
            GpuConfig {
                n_layer: 6,
                n_embd: 256,
                n_head: 4,
                n_head_kv: 2,
                head_dim: 64,
                n_expert: 16,
                n_expert_used: 4,
                expert_ff: 256,
                vocab: 1000,
                rope_base: 1_000_000.0,
                rms_eps: 1e-6,
            },
            Box::new(|l, role| {
                let base = [Q4K, Q5K, Q6K, Q8_0, F16, F32][l % 6];
                match role {
                    "token_embd" => Q8_0,
                    "output" => Q6K,
                    "ffn_down_exps" if l == 0 => Q6K,
                    "ffn_down_exps" if l == 2 => Q4K,
                    "attn_v" if l == 1 => Q6K,
                    _ => base,
                }
            }),
        ),
        "qwen3-30b-a3b" => (
            GpuConfig {
                n_layer: 48,
                n_embd: 2048,
                n_head: 32,
                n_head_kv: 4,
                head_dim: 128,
                n_expert: 128,
                n_expert_used: 8,
                expert_ff: 768,
                vocab: 151_936,
                rope_base: 1_000_000.0,
                rms_eps: 1e-6,
            },
            Box::new(|l, role| {
                // llama.cpp's use_more_bits(i, n) for Q4_K_M
                let n = 48;
                let more = l < n / 8 || l >= 7 * n / 8 || (l as isize - (n / 8) as isize) % 3 == 2;
                match role {
                    "output" => Q6K,
                    "attn_v" | "ffn_down_exps" if more => Q6K,
                    _ => Q4K,
                }
            }),
        ),
        _ => return None,
    };
    let c = &config;
    let e = c.n_embd as u64;
    let qd = (c.n_head * c.head_dim) as u64;
    let kvd = (c.n_head_kv * c.head_dim) as u64;
    let mut specs = vec![
        Spec {
            name: "token_embd.weight".into(),
            qt: per_layer(0, "token_embd"),
            dims: vec![e, c.vocab as u64],
            scale: 0.03,
            norm: false,
        },
        Spec {
            name: "output_norm.weight".into(),
            qt: F32,
            dims: vec![e],
            scale: 0.0,
            norm: true,
        },
        Spec {
            name: "output.weight".into(),
            qt: per_layer(0, "output"),
            dims: vec![e, c.vocab as u64],
            scale: 1.0 / (e as f32).sqrt(),
            norm: false,
        },
    ];
    for l in 0..c.n_layer {
        let m = |role: &str, dims: Vec<u64>, k: u64| Spec {
            name: format!("blk.{l}.{role}.weight"),
            qt: per_layer(l, role),
            dims,
            scale: 1.0 / (k as f32).sqrt(),
            norm: false,
        };
        let nrm = |role: &str, n: u64| Spec {
            name: format!("blk.{l}.{role}.weight"),
            qt: F32,
            dims: vec![n],
            scale: 0.0,
            norm: true,
        };
        let ne = c.n_expert as u64;
        let ff = c.expert_ff as u64;
        specs.push(nrm("attn_norm", e));
        specs.push(m("attn_q", vec![e, qd], e));
        specs.push(m("attn_k", vec![e, kvd], e));
        specs.push(m("attn_v", vec![e, kvd], e));
        specs.push(m("attn_output", vec![qd, e], qd));
        specs.push(nrm("attn_q_norm", c.head_dim as u64));
        specs.push(nrm("attn_k_norm", c.head_dim as u64));
        specs.push(nrm("ffn_norm", e));
        // router: F32 as in real files; scale gives logits of order 1
        specs.push(Spec {
            name: format!("blk.{l}.ffn_gate_inp.weight"),
            qt: F32,
            dims: vec![e, ne],
            scale: 1.0 / (e as f32).sqrt(),
            norm: false,
        });
        specs.push(m("ffn_gate_exps", vec![e, ff, ne], e));
        specs.push(m("ffn_up_exps", vec![e, ff, ne], e));
        specs.push(m("ffn_down_exps", vec![ff, e, ne], ff));
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(4);
    let mut tensors: Vec<(String, GpuQType, Vec<u64>, Vec<u8>)> = specs
        .iter()
        .map(|s| {
            let n: u64 = s.dims.iter().product();
            let bytes = n as usize / s.qt.block_elems() * s.qt.file_block_bytes();
            (s.name.clone(), s.qt, s.dims.clone(), vec![0u8; bytes])
        })
        .collect();
    // Work items: chunks of whole blocks, so that big expert tensors spread over all cores.
    let mut items: Vec<(&Spec, &mut [u8], u64)> = Vec::new();
    for (spec, t) in specs.iter().zip(tensors.iter_mut()) {
        if spec.norm {
            t.3 = norm_weights(t.3.len() / 4, name_seed(seed, &spec.name));
            continue;
        }
        let bb = spec.qt.file_block_bytes() * if spec.qt.block_elems() == 1 { 256 } else { 1 };
        let chunk = (1 << 22) / bb * bb;
        for (i, c) in t.3.chunks_mut(chunk.max(bb)).enumerate() {
            items.push((
                spec,
                c,
                name_seed(seed, &spec.name) ^ (i as u64).wrapping_mul(0x9E37_79B9),
            ));
        }
    }
    let per = items.len().div_ceil(threads).max(1);
    std::thread::scope(|sc| {
        let mut rest = items;
        while !rest.is_empty() {
            let take = per.min(rest.len());
            let mine: Vec<_> = rest.drain(..take).collect();
            sc.spawn(move || {
                for (spec, c, sd) in mine {
                    fill(spec.qt, c, sd, spec.scale);
                }
            });
        }
    });
    Some(SynthModel {
        preset: preset.to_string(),
        config,
        tensors,
    })
}
