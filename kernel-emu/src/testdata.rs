//! Test data for the emulator's tests and falsifiers: random matrices in the GGUF layout (every
//! qtype the GPU backend supports), their device layout, and a float64 reference product through
//! the CPU engine's dequantizer (engine::quant, checked bit for bit against gguf-py by
//! FALSIFY-QK-DEQ-001). Generated data only: nothing here reads outside input.

use engine::cuda::qtype::repack_for_device;
use engine::cuda::GpuQType;
use engine::quant::{dequantize_row, f32_to_f16, QType};

use crate::{DecodeAttn, EmuError, Heads, SplitQ16, Weights, Q16};

/// Every qtype the engine has GPU kernels for, in the order the tests seed them by.
pub const ALL_QTYPES: [GpuQType; 6] = [
    GpuQType::F32,
    GpuQType::F16,
    GpuQType::Q8_0,
    GpuQType::Q4K,
    GpuQType::Q5K,
    GpuQType::Q6K,
];

/// xorshift64*: deterministic test data without a dependency.
pub struct Rng(pub u64);
impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    pub fn sym(&mut self) -> f32 {
        2.0 * self.unit() - 1.0
    }
}

pub fn file_qtype(qt: GpuQType) -> QType {
    QType::from_ggml_id(qt.ggml_id()).expect("a GPU qtype is a GGUF qtype")
}

/// Random blocks in the GGUF file layout: random quant and scale bytes (every pattern is valid),
/// with the f16 super-scales set to sane magnitudes (random bytes would give infinities).
pub fn random_matrix(qt: GpuQType, rows: usize, k: usize, rng: &mut Rng) -> Vec<u8> {
    match qt {
        GpuQType::F32 => {
            return (0..rows * k)
                .flat_map(|_| (0.05 * rng.sym()).to_le_bytes())
                .collect()
        }
        GpuQType::F16 => {
            return (0..rows * k)
                .flat_map(|_| f32_to_f16(0.05 * rng.sym()).to_le_bytes())
                .collect()
        }
        _ => {}
    }
    let bb = qt.file_block_bytes();
    let nb = rows * k / qt.block_elems();
    let mut v: Vec<u8> = (0..nb * bb).map(|_| rng.next_u64() as u8).collect();
    for b in v.chunks_exact_mut(bb) {
        let d = f32_to_f16(0.002 + 0.01 * rng.unit()).to_le_bytes();
        let dmin = f32_to_f16(0.001 + 0.01 * rng.unit()).to_le_bytes();
        match qt {
            GpuQType::Q4K | GpuQType::Q5K => {
                b[0..2].copy_from_slice(&d);
                b[2..4].copy_from_slice(&dmin);
            }
            GpuQType::Q6K => b[208..210].copy_from_slice(&d),
            GpuQType::Q8_0 => b[0..2].copy_from_slice(&d),
            GpuQType::F32 | GpuQType::F16 => {}
        }
    }
    v
}

pub fn activations(rows: usize, k: usize, rng: &mut Rng) -> Vec<f32> {
    // mixed magnitudes, so that the lo part of the split matters
    (0..rows * k)
        .map(|i| {
            let s = if i % 7 == 0 { 0.01 } else { 1.0 };
            s * 2.0 * rng.sym()
        })
        .collect()
}

/// The float64 reference: dequantized rows (file layout) times the activations. F32 and F16 rows
/// are converted exactly.
pub struct Reference {
    pub w: Vec<f32>, // experts * rows * k
    pub rows: usize,
    pub k: usize,
}

impl Reference {
    pub fn new(
        qt: GpuQType,
        file: &[u8],
        experts: usize,
        rows: usize,
        k: usize,
    ) -> Result<Self, EmuError> {
        let rb = qt.file_row_bytes(k);
        if file.len() != experts * rows * rb {
            return Err(EmuError::Geometry(format!(
                "{} bytes for {experts} x {rows} rows of {rb}",
                file.len()
            )));
        }
        let mut w = vec![0f32; experts * rows * k];
        for (r, out) in w.chunks_exact_mut(k).enumerate() {
            dequantize_row(file_qtype(qt), &file[r * rb..(r + 1) * rb], out)
                .map_err(|e| EmuError::Geometry(format!("dequantizing row {r}: {e}")))?;
        }
        Ok(Reference { w, rows, k })
    }
    /// (value, sum of |w x|) of expert e's row r with float64 activations x (e.g. a Q16
    /// vector's dequantized values).
    pub fn dot64(&self, e: usize, r: usize, x: &[f64]) -> (f64, f64) {
        let w = &self.w[(e * self.rows + r) * self.k..][..self.k];
        w.iter().zip(x).fold((0.0, 0.0), |(s, m), (&a, &b)| {
            (s + a as f64 * b, m + (a as f64 * b).abs())
        })
    }
    /// (value, sum of |w x|) of expert e's row r with activation row x.
    pub fn dot(&self, e: usize, r: usize, x: &[f32]) -> (f64, f64) {
        let w = &self.w[(e * self.rows + r) * self.k..][..self.k];
        let mut s = 0f64;
        let mut m = 0f64;
        for (a, b) in w.iter().zip(x) {
            s += *a as f64 * *b as f64;
            m += (*a as f64 * *b as f64).abs();
        }
        (s, m)
    }
}

pub fn device(qt: GpuQType, file: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    repack_for_device(qt, file, &mut out);
    out
}

/// Tokens' expert choices -> (list, off) as the engine's group_pairs kernel builds them: pair
/// p = token * k + slot, grouped by expert, ascending within a group.
pub fn group_pairs(ids: &[usize], experts: usize) -> (Vec<i32>, Vec<i32>) {
    let mut off = vec![0i32; experts + 1];
    for &e in ids {
        off[e + 1] += 1;
    }
    for e in 0..experts {
        off[e + 1] += off[e];
    }
    let mut fill = off.clone();
    let mut list = vec![0i32; ids.len()];
    for (p, &e) in ids.iter().enumerate() {
        list[fill[e] as usize] = p as i32;
        fill[e] += 1;
    }
    (list, off)
}

const fn heads(n_head: usize, n_head_kv: usize, hd: usize) -> Heads {
    Heads {
        n_head,
        n_head_kv,
        hd,
    }
}

/// Prefill attention cases (pos0, tokens, heads): Qwen3-30B-A3B's grouping (G = 8, hd = 128) and
/// smaller ones; prompts that start at position 0 and later, with partial query and key tiles.
pub const PREFILL_ATTN_CASES: [(usize, usize, Heads); 3] = [
    (0, 19, heads(16, 2, 128)),
    (37, 21, heads(8, 2, 64)),
    (5, 70, heads(4, 1, 32)),
];

/// Decode attention cases (heads, position, max context): positions inside a chunk, at a chunk's
/// first row, and at 0.
pub const DECODE_ATTN_CASES: [(Heads, usize, usize); 3] = [
    (heads(16, 2, 128), 45, 128),
    (heads(8, 2, 64), 64, 96),
    (heads(3, 1, 32), 0, 64),
];

/// |got - want| / bound, infinite for a non-finite output, so that an unwritten or NaN result
/// can never pass as a small error.
pub fn relative_error(got: f32, want: f64, bound: f64) -> f64 {
    if got.is_finite() {
        (got as f64 - want).abs() / bound.max(1e-30)
    } else {
        f64::INFINITY
    }
}

/// The largest |got - want|, infinite if any output is non-finite.
pub fn max_abs_error(got: &[f32], want: &[f64]) -> f64 {
    got.iter()
        .zip(want)
        .map(|(&g, &w)| relative_error(g, w, 1.0))
        .fold(0.0, f64::max)
}

/// Causal attention in float64 from its definition: out[t, h] = sum_j softmax_j(q[t, h] .
/// k[j, h / G] * scale) v[j, h / G] over j <= pos0 + t.
pub fn causal_attention_f64(
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    pos0: usize,
    t: usize,
    h: Heads,
    scale: f64,
) -> Vec<f64> {
    let (qd, kvd, g) = (h.n_head * h.hd, h.n_head_kv * h.hd, h.n_head / h.n_head_kv);
    let mut out = vec![0f64; t * qd];
    for ti in 0..t {
        for hh in 0..h.n_head {
            let kvh = hh / g;
            let qv = &q[ti * qd + hh * h.hd..][..h.hd];
            let n = pos0 + ti + 1;
            let s: Vec<f64> = (0..n)
                .map(|j| {
                    let k = &kc[j * kvd + kvh * h.hd..][..h.hd];
                    qv.iter()
                        .zip(k)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let p: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
            let l: f64 = p.iter().sum();
            for d in 0..h.hd {
                out[ti * qd + hh * h.hd + d] = (0..n)
                    .map(|j| p[j] * vc[j * kvd + kvh * h.hd + d] as f64)
                    .sum::<f64>()
                    / l;
            }
        }
    }
    out
}

/// Random inputs of one decode token's attention at `pos`; cache rows from `pos` on hold NaN
/// (the kernels must overwrite row pos and never read later ones).
pub fn decode_attn_case(h: Heads, pos: usize, max_ctx: usize, seed: u64) -> DecodeAttn {
    let mut rng = Rng(seed);
    let (qd, kvd) = (h.n_head * h.hd, h.n_head_kv * h.hd);
    let mut v = |n: usize, s: f32| -> Vec<f32> { (0..n).map(|_| s * rng.sym()).collect() };
    let mut kc = v(max_ctx * kvd, 0.5);
    let vc = v(max_ctx * kvd, 1.0);
    // rows at and after pos hold garbage the kernels must overwrite (pos) or never read
    for x in &mut kc[pos * kvd..] {
        *x = f32::NAN;
    }
    DecodeAttn {
        h,
        q: v(qd, 2.0),
        k: v(kvd, 2.0),
        v: v(kvd, 1.0),
        q_norm: v(h.hd, 1.0).iter().map(|x| 1.0 + 0.3 * x).collect(),
        k_norm: v(h.hd, 1.0).iter().map(|x| 1.0 + 0.3 * x).collect(),
        kc,
        vc,
        max_ctx,
        pos,
        rope_base: 1_000_000.0,
        eps: 1e-6,
    }
}

/// A matrix of `experts` x `rows` rows of K = `k` in the device layout, for a launch.
pub fn weights(qt: GpuQType, bytes: &[u8], rows: usize, k: usize, experts: usize) -> Weights<'_> {
    Weights {
        qt,
        bytes,
        rows,
        k,
        experts,
    }
}

/// SiLU in float64 (the SwiGLU references).
pub fn silu(g: f64) -> f64 {
    g / (1.0 + (-g).exp())
}

/// The norm weights of the fused-norm tests: 1 + v / 2 for v drawn as [`activations`].
pub fn norm_weights(k: usize, rng: &mut Rng) -> Vec<f32> {
    activations(1, k, rng)
        .iter()
        .map(|v| 1.0 + 0.5 * v)
        .collect()
}

/// RMSNorm(x) * nw in float64.
pub fn rmsnorm_f64(x: &[f32], nw: &[f32], eps: f64) -> Vec<f64> {
    let ss: f64 = x.iter().map(|&v| v as f64 * v as f64).sum();
    let scale = 1.0 / (ss / x.len() as f64 + eps).sqrt();
    x.iter()
        .zip(nw)
        .map(|(&a, &b)| a as f64 * scale * b as f64)
        .collect()
}

/// A decode q / k / v case: three random matrices (file and device layouts) of `qts` and
/// `rows`, all of K = `k`, then the token x and the norm weights, drawn from `rng` in that order.
pub struct QkvCase {
    pub qts: [GpuQType; 3],
    pub rows: [usize; 3],
    pub k: usize,
    pub files: Vec<Vec<u8>>,
    pub devs: Vec<Vec<u8>>,
    pub x: Vec<f32>,
    pub nw: Vec<f32>,
}

impl QkvCase {
    pub fn new(qts: [GpuQType; 3], rows: [usize; 3], k: usize, rng: &mut Rng) -> Self {
        let files: Vec<Vec<u8>> = (0..3)
            .map(|j| random_matrix(qts[j], rows[j], k, rng))
            .collect();
        let devs = (0..3).map(|j| device(qts[j], &files[j])).collect();
        let x = activations(1, k, rng);
        let nw = norm_weights(k, rng);
        QkvCase {
            qts,
            rows,
            k,
            files,
            devs,
            x,
            nw,
        }
    }
    /// The three matrices in the device layout, for a launch.
    pub fn weights(&self) -> [Weights<'_>; 3] {
        [0, 1, 2].map(|j| weights(self.qts[j], &self.devs[j], self.rows[j], self.k, 1))
    }
    /// Matrix j's float64 reference.
    pub fn reference(&self, j: usize) -> Result<Reference, EmuError> {
        Reference::new(self.qts[j], &self.files[j], 1, self.rows[j], self.k)
    }
}

/// The float64 router over `rf`'s rows (one per expert) for the normed token h: the logits, the
/// experts in rank order (larger logit first, ties to the lower index) and the top `k`'s
/// weights (the softmax renormalised over them).
pub struct RouterF64 {
    pub logits: Vec<f64>,
    pub order: Vec<usize>,
    pub weights: Vec<f64>,
}

pub fn router_f64(rf: &Reference, h: &[f64], k: usize) -> RouterF64 {
    let logits: Vec<f64> = (0..rf.rows).map(|r| rf.dot64(0, r, h).0).collect();
    let mut order: Vec<usize> = (0..rf.rows).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    let mx = logits[order[0]];
    let p: Vec<f64> = logits.iter().map(|l| (l - mx).exp()).collect();
    let psel: f64 = order[..k].iter().map(|&i| p[i]).sum();
    let weights = order[..k].iter().map(|&i| p[i] / psel).collect();
    RouterF64 {
        logits,
        order,
        weights,
    }
}

/// For each element of x, its Q16 error over the stated bound: |x - dx v| / (0.51 dx), with
/// dx = amax / 32639 of its block of 8; infinite where a block's dx is not that (bit for bit).
pub fn q16_error_ratios(x: &[f32], q: &Q16) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for (b, blk) in x.chunks_exact(8).enumerate() {
        let amax = blk.iter().fold(0f32, |m, v| m.max(v.abs()));
        let dx = q.dx(b);
        let scale_ok = dx.to_bits() == (amax / 32639.0).to_bits();
        for (i, &xv) in blk.iter().enumerate() {
            let e = (xv as f64 - dx as f64 * q.v(8 * b + i) as f64).abs();
            out.push(if scale_ok && e.is_finite() {
                e / (0.51 * dx as f64).max(1e-30)
            } else {
                f64::INFINITY
            });
        }
    }
    out
}

/// For each element of the rows x (row stride `s.k`), split_act_q16's error over its stated
/// bound: |x - dx v| / (0.51 dx), dx = amax / 32639 of its group of 32; infinite where a group's
/// dx is not that (bit for bit), or one of its two 16-element sums is not dx times the sum of v
/// (bit for bit), or |v| > 32639.
pub fn split_q16_error_ratios(x: &[f32], s: &SplitQ16) -> Vec<f64> {
    let k = s.k;
    let mut out = Vec::with_capacity(s.rows * k);
    for r in 0..s.rows {
        for g in 0..k / 32 {
            let blk = &x[r * k + 32 * g..][..32];
            let amax = blk.iter().fold(0f32, |m, v| m.max(v.abs()));
            let dx = s.dx[r * k / 32 + g];
            let v = |i: usize| s.v(r, 32 * g + i);
            let sum = |h: usize| (16 * h..16 * h + 16).map(|i| v(i) as i64).sum::<i64>();
            let meta_ok = dx.to_bits() == (amax / 32639.0).to_bits()
                && (0..2).all(|h| {
                    s.sums[r * k / 16 + 2 * g + h].to_bits() == (dx * sum(h) as f32).to_bits()
                })
                && (0..32).all(|i| v(i).abs() <= 32639);
            for (i, &xv) in blk.iter().enumerate() {
                let e = (xv as f64 - dx as f64 * v(i) as f64).abs();
                out.push(if meta_ok && e.is_finite() {
                    e / (0.51 * dx as f64).max(1e-30)
                } else {
                    f64::INFINITY
                });
            }
        }
    }
    out
}
