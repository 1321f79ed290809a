//! A float64 CPU forward of Qwen3-MoE over a [`HostModel`], written independently of the GPU
//! kernels from the rules in docs (engine-facts: llama.cpp's qwen3moe forward). It is the oracle
//! of the GPU parity falsifiers: weights are dequantized exactly as ggml defines them (f32), all
//! arithmetic after that is f64. One token per call, rows of each mat-vec spread over threads.

use super::qtype::{dequantize_row_file, GpuQType};
use super::{CudaError, GpuConfig, HostModel, HostTensor};

/// Per-layer values of the reference at one position.
#[derive(Clone, Debug)]
pub struct RefLayer {
    /// Hidden state after the layer.
    pub hidden: Vec<f64>,
    /// Softmax over all experts.
    pub probs: Vec<f64>,
    /// Top-k experts, largest probability first (ties: lower index first).
    pub ids: Vec<usize>,
    /// Renormalised weights of `ids`.
    pub weights: Vec<f64>,
}

pub struct RefForward<'m> {
    m: &'m HostModel<'m>,
    cfg: GpuConfig,
    kc: Vec<Vec<f64>>,
    vc: Vec<Vec<f64>>,
    pos: usize,
    threads: usize,
}

struct Mat<'a> {
    qt: GpuQType,
    data: &'a [u8],
    k: usize,
    rows: usize,
}

fn mat<'a>(t: &'a HostTensor<'a>, index: usize) -> Result<Mat<'a>, CudaError> {
    let qt = GpuQType::from_ggml(t.ggml_type).map_err(|q| CudaError::UnsupportedQType {
        tensor: t.name.clone(),
        qtype: q,
    })?;
    let k = t.dims[0] as usize;
    let rows = t.dims.get(1).copied().unwrap_or(1) as usize;
    let rb = qt.file_row_bytes(k);
    let start = index * rows * rb;
    let data = t
        .data
        .get(start..start + rows * rb)
        .ok_or_else(|| CudaError::Model(format!("tensor `{}` too short", t.name)))?;
    Ok(Mat { qt, data, k, rows })
}

fn vec_f64(t: &HostTensor<'_>) -> Result<Vec<f64>, CudaError> {
    let m = mat(t, 0)?;
    let n: usize = t.dims.iter().product::<u64>() as usize;
    let mut v = vec![0f32; n];
    dequantize_row_file(m.qt, t.data, &mut v);
    Ok(v.into_iter().map(f64::from).collect())
}

impl<'m> RefForward<'m> {
    pub fn new(m: &'m HostModel<'m>) -> Self {
        let cfg = m.config.clone();
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(4);
        Self {
            m,
            cfg,
            kc: vec![Vec::new(); m.config.n_layer],
            vc: vec![Vec::new(); m.config.n_layer],
            pos: 0,
            threads,
        }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    fn t(&self, name: &str) -> Result<&'m HostTensor<'m>, CudaError> {
        self.m
            .tensor(name)
            .ok_or_else(|| CudaError::Model(format!("tensor `{name}` is missing")))
    }

    /// out = W x for matrix `index` of tensor `t` (rows in parallel).
    fn matvec(&self, m: &Mat<'_>, x: &[f64]) -> Vec<f64> {
        let rb = m.qt.file_row_bytes(m.k);
        let mut out = vec![0f64; m.rows];
        let work = m.rows * m.k;
        let threads = if work < 1 << 16 { 1 } else { self.threads };
        let per = m.rows.div_ceil(threads);
        std::thread::scope(|s| {
            for (ci, chunk) in out.chunks_mut(per).enumerate() {
                s.spawn(move || {
                    let mut w = vec![0f32; m.k];
                    for (i, o) in chunk.iter_mut().enumerate() {
                        let r = ci * per + i;
                        dequantize_row_file(m.qt, &m.data[r * rb..(r + 1) * rb], &mut w);
                        *o = w.iter().zip(x).map(|(&a, &b)| a as f64 * b).sum();
                    }
                });
            }
        });
        out
    }

    fn rmsnorm(x: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
        let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
        let s = 1.0 / (ms + eps).sqrt();
        x.iter().zip(w).map(|(a, b)| a * s * b).collect()
    }

    /// Run one token at the current position; returns its logits. `layers`, when given, gets one
    /// entry per layer.
    pub fn step(
        &mut self,
        token: u32,
        mut layers: Option<&mut Vec<RefLayer>>,
    ) -> Result<Vec<f64>, CudaError> {
        let c = self.cfg.clone();
        if token as usize >= c.vocab {
            return Err(CudaError::Model(format!(
                "token {token} outside the vocabulary"
            )));
        }
        let eps = c.rms_eps as f64;
        let hd = c.head_dim;
        let emb = mat(self.t("token_embd.weight")?, 0)?;
        let rb = emb.qt.file_row_bytes(emb.k);
        let mut row = vec![0f32; c.n_embd];
        dequantize_row_file(
            emb.qt,
            &emb.data[token as usize * rb..(token as usize + 1) * rb],
            &mut row,
        );
        let mut x: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        let p = self.pos;
        for l in 0..c.n_layer {
            let n = |s: &str| format!("blk.{l}.{s}.weight");
            let h = Self::rmsnorm(&x, &vec_f64(self.t(&n("attn_norm"))?)?, eps);
            let mut q = self.matvec(&mat(self.t(&n("attn_q"))?, 0)?, &h);
            let mut k = self.matvec(&mat(self.t(&n("attn_k"))?, 0)?, &h);
            let v = self.matvec(&mat(self.t(&n("attn_v"))?, 0)?, &h);
            let qn = vec_f64(self.t(&n("attn_q_norm"))?)?;
            let kn = vec_f64(self.t(&n("attn_k_norm"))?)?;
            let rope = |v: &mut [f64], w: &[f64]| {
                let nv = Self::rmsnorm(v, w, eps);
                let half = hd / 2;
                for i in 0..half {
                    let ang = p as f64 * (c.rope_base as f64).powf(-2.0 * i as f64 / hd as f64);
                    let (s, co) = ang.sin_cos();
                    v[i] = nv[i] * co - nv[i + half] * s;
                    v[i + half] = nv[i] * s + nv[i + half] * co;
                }
            };
            for hh in 0..c.n_head {
                rope(&mut q[hh * hd..(hh + 1) * hd], &qn);
            }
            for hh in 0..c.n_head_kv {
                rope(&mut k[hh * hd..(hh + 1) * hd], &kn);
            }
            self.kc[l].extend_from_slice(&k);
            self.vc[l].extend_from_slice(&v);
            let kvd = c.n_head_kv * hd;
            let npos = p + 1;
            let mut att = vec![0f64; c.n_head * hd];
            let group = c.n_head / c.n_head_kv;
            let scale = 1.0 / (hd as f64).sqrt();
            for hh in 0..c.n_head {
                let kvh = hh / group;
                let qh = &q[hh * hd..(hh + 1) * hd];
                let sc: Vec<f64> = (0..npos)
                    .map(|j| {
                        let kr = &self.kc[l][j * kvd + kvh * hd..j * kvd + (kvh + 1) * hd];
                        qh.iter().zip(kr).map(|(a, b)| a * b).sum::<f64>() * scale
                    })
                    .collect();
                let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let ex: Vec<f64> = sc.iter().map(|s| (s - m).exp()).collect();
                let sum: f64 = ex.iter().sum();
                for (j, e) in ex.iter().enumerate() {
                    let vr = &self.vc[l][j * kvd + kvh * hd..j * kvd + (kvh + 1) * hd];
                    for d in 0..hd {
                        att[hh * hd + d] += e / sum * vr[d];
                    }
                }
            }
            let o = self.matvec(&mat(self.t(&n("attn_output"))?, 0)?, &att);
            for (a, b) in x.iter_mut().zip(&o) {
                *a += b;
            }
            let h = Self::rmsnorm(&x, &vec_f64(self.t(&n("ffn_norm"))?)?, eps);
            let logits = self.matvec(&mat(self.t(&n("ffn_gate_inp"))?, 0)?, &h);
            let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let ex: Vec<f64> = logits.iter().map(|v| (v - m).exp()).collect();
            let sum: f64 = ex.iter().sum();
            let probs: Vec<f64> = ex.iter().map(|v| v / sum).collect();
            let mut order: Vec<usize> = (0..c.n_expert).collect();
            order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
            let ids: Vec<usize> = order[..c.n_expert_used].to_vec();
            let wsum: f64 = ids.iter().map(|&i| probs[i]).sum();
            let weights: Vec<f64> = ids.iter().map(|&i| probs[i] / wsum).collect();
            let gate_t = self.t(&n("ffn_gate_exps"))?;
            let up_t = self.t(&n("ffn_up_exps"))?;
            let down_t = self.t(&n("ffn_down_exps"))?;
            let mut moe = vec![0f64; c.n_embd];
            for (&eid, &w) in ids.iter().zip(&weights) {
                let g = self.matvec(&mat(gate_t, eid)?, &h);
                let u = self.matvec(&mat(up_t, eid)?, &h);
                let a: Vec<f64> = g
                    .iter()
                    .zip(&u)
                    .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                    .collect();
                let y = self.matvec(&mat(down_t, eid)?, &a);
                for (m, yv) in moe.iter_mut().zip(&y) {
                    *m += w * yv;
                }
            }
            for (a, b) in x.iter_mut().zip(&moe) {
                *a += b;
            }
            if let Some(v) = layers.as_deref_mut() {
                v.push(RefLayer {
                    hidden: x.clone(),
                    probs,
                    ids,
                    weights,
                });
            }
        }
        let h = Self::rmsnorm(&x, &vec_f64(self.t("output_norm.weight")?)?, eps);
        let head = match self.m.tensor("output.weight") {
            Some(t) => t,
            None => self.t("token_embd.weight")?,
        };
        let logits = self.matvec(&mat(head, 0)?, &h);
        self.pos += 1;
        Ok(logits)
    }
}
