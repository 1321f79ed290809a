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
    /// The expert set the layer's MoE block was computed with, when it is not `ids`: another
    /// forward's choice at a near-tie, followed (see [`RouteFollow`]).
    pub followed: Option<Vec<usize>>,
}

/// Another forward's expert choices, which the reference takes over at near-ties only.
///
/// At (position, layer) the reference computes its own top-k set `ids`. When the other forward
/// chose a different set `other`, the reference computes the layer's MoE block with `other`
/// instead (weights: its own probabilities renormalised over `other`) if and only if the choice is
/// a near-tie within `eps`: the reference's k-th and (k+1)-th probabilities differ by less than
/// `eps`, and every expert in one set but not the other has a probability within `eps` of the
/// k-th. Any other difference is not followed. Why: at such a tie either set is a correct
/// forward (the routing is ill-conditioned there), so hidden states compared after the two sides
/// picked different sets would measure the tie-break rather than the arithmetic; following keeps
/// the comparison at full strength on every later layer and position.
pub struct RouteFollow<'a> {
    /// The other forward's expert ids of this position, per layer (`k` each).
    pub ids: &'a [Vec<usize>],
    pub eps: f64,
}

/// The set the reference computes the MoE block with: `other` at a near-tie within `eps` (see
/// [`RouteFollow`]), else its own `ids`.
pub fn follow_at_near_tie(
    probs: &[f64],
    ids: &[usize],
    other: &[usize],
    eps: f64,
) -> Option<Vec<usize>> {
    let k = ids.len();
    let mut a = ids.to_vec();
    let mut b = other.to_vec();
    a.sort_unstable();
    b.sort_unstable();
    b.dedup();
    if a == b || b.len() != k || b.iter().any(|&e| e >= probs.len()) || probs.len() <= k {
        return None;
    }
    let mut sorted = probs.to_vec();
    sorted.sort_by(|x, y| y.total_cmp(x));
    let (pk, pk1) = (sorted[k - 1], sorted[k]);
    // every expert in one set and not the other sits within eps of the k-th probability
    let at_tie = |e: &usize| (probs[*e] - pk).abs() < eps;
    let near = pk - pk1 < eps
        && b.iter().filter(|e| !a.contains(e)).all(at_tie)
        && a.iter().filter(|e| !b.contains(e)).all(at_tie);
    near.then(|| other.to_vec())
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
        layers: Option<&mut Vec<RefLayer>>,
    ) -> Result<Vec<f64>, CudaError> {
        self.step_following(token, layers, None)
    }

    /// [`Self::step`], taking over `follow`'s expert sets at near-ties (see [`RouteFollow`]).
    pub fn step_following(
        &mut self,
        token: u32,
        mut layers: Option<&mut Vec<RefLayer>>,
        follow: Option<&RouteFollow<'_>>,
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
            let followed = follow
                .and_then(|f| f.ids.get(l).map(|o| (o, f.eps)))
                .and_then(|(o, e)| follow_at_near_tie(&probs, &ids, o, e));
            let (use_ids, use_weights) = match &followed {
                Some(o) => {
                    let s: f64 = o.iter().map(|&i| probs[i]).sum();
                    (o.clone(), o.iter().map(|&i| probs[i] / s).collect())
                }
                None => (ids.clone(), weights.clone()),
            };
            let gate_t = self.t(&n("ffn_gate_exps"))?;
            let up_t = self.t(&n("ffn_up_exps"))?;
            let down_t = self.t(&n("ffn_down_exps"))?;
            let mut moe = vec![0f64; c.n_embd];
            for (&eid, &w) in use_ids.iter().zip(&use_weights) {
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
                    followed,
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

#[cfg(test)]
mod tests {
    use super::follow_at_near_tie;

    #[test]
    fn follows_only_a_near_tie_among_the_experts_at_the_kth_probability() {
        // k = 2 of 4: experts 1 (0.25 + 2e-5) and 2 (0.25 - 2e-5) make a near-tie (margin 4e-5)
        let p = [0.5, 0.25 + 2e-5, 0.25 - 2e-5, 0.0];
        let own = [0, 1];
        assert_eq!(
            follow_at_near_tie(&p, &own, &[2, 0], 1e-4),
            Some(vec![2, 0])
        );
        // the same set in another order is no difference
        assert_eq!(follow_at_near_tie(&p, &own, &[1, 0], 1e-4), None);
        // expert 3 is far from the k-th probability: not a tie, not followed
        assert_eq!(follow_at_near_tie(&p, &own, &[0, 3], 1e-4), None);
        // dropping the leading expert is no tie either
        assert_eq!(follow_at_near_tie(&p, &own, &[1, 2], 1e-4), None);
        // a margin of 4e-5 is not below epsilon 3e-5
        assert_eq!(follow_at_near_tie(&p, &own, &[2, 0], 3e-5), None);
        // malformed sets: a repeated id, an id out of range, the wrong size
        assert_eq!(follow_at_near_tie(&p, &own, &[2, 2], 1e-4), None);
        assert_eq!(follow_at_near_tie(&p, &own, &[0, 9], 1e-4), None);
        assert_eq!(follow_at_near_tie(&p, &own, &[0, 1, 2], 1e-4), None);
    }
}
