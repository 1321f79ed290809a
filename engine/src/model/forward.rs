//! The production forward: one readable path, batched over the tokens of a call, with a KV
//! cache so that a call can continue where the previous one stopped.
//!
//! Layer by layer, as llama.cpp's qwen3moe graph (docs: engine-facts.md):
//!   h = rmsnorm(x) * attn_norm; q,k,v = Wq h, Wk h, Wv h; per-head rmsnorm of q and k; NEOX
//!   RoPE; causal GQA attention; x += Wo attn;
//!   h = rmsnorm(x) * ffn_norm; p = softmax(router h) over all experts; top-k; renormalise;
//!   x += sum_e w_e down_e(silu(gate_e h) * up_e h);
//! then logits = output(rmsnorm(x) * output_norm).
//!
//! Parallelism: matrix products split their output rows over rayon; attention splits over
//! (token, head). Every output value is computed by one thread in a fixed order, so results do
//! not depend on the thread count (FALSIFY-QW3-DETERMINISM-001).
//!
//! Tracing: every named stage calls the optional [`TraceHook`], which is asked before anything is
//! copied; with `None` each stage costs one branch.

use rayon::prelude::*;

use super::kernels::{quantize_act, row_dot, row_dot_x4, ActNeeds, QType, QuantAct, RowDot};
use super::ops::{
    rms_norm, rms_norm_in_place, rope_neox, rope_table, silu, softmax_in_place, top_k_indices,
};
use super::weights::{Ffn, MatRef};
use super::{Model, ModelError};
use crate::tracing::{emit_rows, Stage, TensorKey, TraceHook};

/// How activations meet quantized weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ActPrecision {
    /// Activations stay f32; weights are dequantized block by block (the exact path).
    F32,
    /// Activations are quantized to 8 bits before each quantized dot product, as llama.cpp's
    /// CPU backend does (Q8_K for K-quants, Q8_0 for Q8_0, f16 for F16 weights). Faster.
    #[default]
    Q8,
}

/// Options of one forward call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwardOptions {
    pub act: ActPrecision,
    /// FALSIFIER AID, never for real use: reads `blk.L.attn_v.weight` of this layer with the
    /// wrong qtype (that of `attn_q`, or another format if they match) — the classic "one
    /// qtype per model" bug. Exists so that falsifiers and trace bisection can show that they
    /// catch it (FALSIFY-QW3-DISPATCH-001, trace-moe-sub-stages-v1). Default `None`.
    pub debug_wrong_qtype_layer: Option<usize>,
}

/// Which positions get logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Every position of the call (rows = positions).
    All,
    /// Only the last position (generation).
    Last,
}

/// Keys and values of every layer for the positions seen so far.
pub struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: usize,
    capacity: usize,
    kv_dim: usize,
}

impl KvCache {
    pub fn new(model: &Model<'_>, capacity: usize) -> KvCache {
        let kv_dim = model.config.kv_dim();
        let n = model.config.n_layer;
        KvCache {
            k: (0..n).map(|_| vec![0.0; capacity * kv_dim]).collect(),
            v: (0..n).map(|_| vec![0.0; capacity * kv_dim]).collect(),
            len: 0,
            capacity,
            kv_dim,
        }
    }

    /// Positions already in the cache (the next token's position).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets everything (keeps the allocation).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Bytes held (for memory reports).
    pub fn bytes(&self) -> usize {
        2 * self.k.len() * self.capacity * self.kv_dim * 4
    }
}

/// One activation batch prepared for the matrices that read it.
struct Input<'a> {
    x: std::borrow::Cow<'a, [f32]>,
    n: usize,
    cols: usize,
    q: Vec<QuantAct>,
}

impl<'a> Input<'a> {
    fn new(x: &'a [f32], n: usize, cols: usize, act: ActPrecision, qtypes: &[QType]) -> Input<'a> {
        let mut needs = ActNeeds::default();
        if act == ActPrecision::Q8 {
            for &q in qtypes {
                needs.add(q);
            }
        }
        let q = if (needs.q8k || needs.q8_0 || needs.f16) && n == 1 {
            // One row: not worth a trip through the thread pool.
            let mut a = QuantAct::default();
            quantize_act(x, needs, &mut a);
            vec![a]
        } else if needs.q8k || needs.q8_0 || needs.f16 {
            x.par_chunks(cols)
                .map(|row| {
                    let mut a = QuantAct::default();
                    quantize_act(row, needs, &mut a);
                    a
                })
                .collect()
        } else {
            Vec::new()
        };
        Input {
            x: x.into(),
            n,
            cols,
            q,
        }
    }

    /// Token `t`'s activations: the f32 row and its prepared forms.
    #[inline]
    fn token(&self, t: usize) -> (&[f32], &QuantAct) {
        static NONE: QuantAct = QuantAct::EMPTY;
        (
            &self.x[t * self.cols..(t + 1) * self.cols],
            self.q.get(t).unwrap_or(&NONE),
        )
    }
}

/// Rows per parallel task in single-token products: enough tasks to balance a few threads
/// (an expert's 768 rows give 6), few enough that task overhead stays small.
const DECODE_ROWS: usize = 128;

/// `out[t][r] = W[r] . x[t]` for every token `t` of `inp` and row `r` of `m`. Rows are split over
/// threads; `out` is `n x m.rows`, row-major.
fn matmul(m: &MatRef<'_>, inp: &Input<'_>, out: &mut [f32]) {
    let (n, rows) = (inp.n, m.rows);
    debug_assert_eq!(out.len(), n * rows);
    debug_assert_eq!(m.cols, inp.cols);
    let dot = row_dot(m.qtype, !inp.q.is_empty());
    if n == 1 {
        // Decode: write straight into the output, a few dozen rows per task.
        let (x, a) = inp.token(0);
        out.par_chunks_mut(DECODE_ROWS)
            .enumerate()
            .for_each(|(c, o)| {
                for (i, v) in o.iter_mut().enumerate() {
                    *v = dot(m.row(c * DECODE_ROWS + i), x, a);
                }
            });
        return;
    }
    // Prefill: each task takes a block of rows for all tokens (the rows stay in cache while
    // every token reads them), into a rows-major scratch that is transposed afterwards.
    let dot_x4 = row_dot_x4(m.qtype, !inp.q.is_empty());
    let mut t_out = vec![0.0f32; rows * n];
    t_out.par_chunks_mut(n * 8).enumerate().for_each(|(c, o)| {
        for (i, row_out) in o.chunks_mut(n).enumerate() {
            let r = c * 8 + i;
            let mut t = 0;
            if let Some(dot4) = dot_x4 {
                // Four tokens per weight-row pass (bit-identical to four single calls).
                while t + 4 <= n {
                    let a = [
                        inp.token(t).1,
                        inp.token(t + 1).1,
                        inp.token(t + 2).1,
                        inp.token(t + 3).1,
                    ];
                    row_out[t..t + 4].copy_from_slice(&dot4(m.row(r), a));
                    t += 4;
                }
            }
            for (tt, v) in row_out.iter_mut().enumerate().skip(t) {
                let (x, a) = inp.token(tt);
                *v = dot(m.row(r), x, a);
            }
        }
    });
    for r in 0..rows {
        for t in 0..n {
            out[t * rows + r] = t_out[r * n + t];
        }
    }
}

/// Several independent products in one parallel region. For a single token (decode) every
/// row block of every product is one task of the same parallel loop, so the threads meet once
/// instead of once per matrix (8 experts x 3 matrices per layer would otherwise be 24 joins).
/// Each output value is still one row kernel call, so results equal [`matmul`]'s bit for bit.
fn matmul_many(jobs: &mut [(MatRef<'_>, &Input<'_>, &mut [f32])]) {
    if jobs.iter().any(|(_, inp, _)| inp.n != 1) {
        for (m, inp, out) in jobs.iter_mut() {
            matmul(m, inp, out);
        }
        return;
    }
    const ROWS: usize = DECODE_ROWS;
    /// One task: rows `r0..` of a matrix, its kernel, one token's activations, the outputs.
    type Task<'a, 'b> = (
        MatRef<'a>,
        RowDot,
        &'b [f32],
        &'b QuantAct,
        usize,
        &'b mut [f32],
    );
    let mut tasks: Vec<Task<'_, '_>> = Vec::new();
    for (m, inp, out) in jobs.iter_mut() {
        let dot = row_dot(m.qtype, !inp.q.is_empty());
        let (x, a) = inp.token(0);
        for (c, chunk) in out.chunks_mut(ROWS).enumerate() {
            tasks.push((*m, dot, x, a, c * ROWS, chunk));
        }
    }
    tasks.into_par_iter().for_each(|(m, dot, x, a, r0, chunk)| {
        for (i, v) in chunk.iter_mut().enumerate() {
            *v = dot(m.row(r0 + i), x, a);
        }
    });
}

/// The qtype the planted bug reads attn_v with: anything but its own.
fn wrong_qtype(own: QType, q_of_attn_q: QType) -> QType {
    if q_of_attn_q != own {
        return q_of_attn_q;
    }
    [QType::Q8_0, QType::Q4K, QType::F16]
        .into_iter()
        .find(|&q| q != own)
        .unwrap_or(QType::Q6K)
}

impl<'f> Model<'f> {
    /// Runs `tokens` at positions `cache.len() ..` and appends their keys and values to the
    /// cache. Returns logits, `rows x vocab`, rows = every token (`Logits::All`) or the last.
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        opts: &ForwardOptions,
        want: Logits,
        mut hook: Option<&mut dyn TraceHook>,
    ) -> Result<Vec<f32>, ModelError> {
        let c = &self.config;
        let w = &self.weights;
        let n = tokens.len();
        let pos0 = cache.len;
        if n == 0 {
            return Err(ModelError::EmptyInput);
        }
        if pos0 + n > cache.capacity {
            return Err(ModelError::ContextFull {
                needed: pos0 + n,
                capacity: cache.capacity,
            });
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= c.vocab) {
            return Err(ModelError::TokenOutOfRange {
                token: bad,
                vocab: c.vocab,
            });
        }
        let (hd, nh, nkv) = (c.head_dim, c.n_head, c.n_head_kv);
        let (hid, qd, kvd) = (c.hidden, c.q_dim(), c.kv_dim());
        let act = opts.act;

        // embed
        let mut x = vec![0.0f32; n * hid];
        for (t, &tok) in tokens.iter().enumerate() {
            let e = &w.token_embd.m;
            super::kernels::dequantize_row(
                e.qtype,
                e.row(tok as usize),
                &mut x[t * hid..(t + 1) * hid],
            );
        }
        emit_rows(&mut hook, Stage::Embed, None, None, pos0, &[hid], &x);

        let mut h = vec![0.0f32; n * hid];
        let mut q = vec![0.0f32; n * qd];
        let mut k = vec![0.0f32; n * kvd];
        let mut v = vec![0.0f32; n * kvd];
        let mut att = vec![0.0f32; n * qd];
        let mut o = vec![0.0f32; n * hid];
        let mut cos = vec![0.0f32; hd / 2];
        let mut sin = vec![0.0f32; hd / 2];

        for (l, lw) in w.layers.iter().enumerate() {
            let li = Some(l);
            // --- attention ---
            for t in 0..n {
                rms_norm(
                    &mut h[t * hid..(t + 1) * hid],
                    &x[t * hid..(t + 1) * hid],
                    &lw.attn_norm,
                    c.rms_eps,
                );
            }
            emit_rows(&mut hook, Stage::AttnNorm, None, li, pos0, &[hid], &h);

            let wv = if opts.debug_wrong_qtype_layer == Some(l) {
                planted_wrong_qtype(&lw.wv.m, lw.wq.m.qtype)
            } else {
                lw.wv.m
            };
            let inp = Input::new(&h, n, hid, act, &[lw.wq.m.qtype, lw.wk.m.qtype, wv.qtype]);
            if wv.data.len() / wv.row_bytes.max(1) >= wv.rows {
                matmul_many(&mut [
                    (lw.wq.m, &inp, &mut q),
                    (lw.wk.m, &inp, &mut k),
                    (wv, &inp, &mut v),
                ]);
            } else {
                // Only the planted wrong-qtype view can be short of rows.
                matmul(&lw.wq.m, &inp, &mut q);
                matmul(&lw.wk.m, &inp, &mut k);
                matmul_rows_available(&wv, &inp, &mut v);
            }
            emit_rows(&mut hook, Stage::Q, None, li, pos0, &[nh, hd], &q);
            emit_rows(&mut hook, Stage::K, None, li, pos0, &[nkv, hd], &k);
            emit_rows(&mut hook, Stage::V, None, li, pos0, &[nkv, hd], &v);

            for head in q.chunks_exact_mut(hd) {
                rms_norm_in_place(head, &lw.q_norm, c.rms_eps);
            }
            for head in k.chunks_exact_mut(hd) {
                rms_norm_in_place(head, &lw.k_norm, c.rms_eps);
            }
            emit_rows(&mut hook, Stage::QNorm, None, li, pos0, &[nh, hd], &q);
            emit_rows(&mut hook, Stage::KNorm, None, li, pos0, &[nkv, hd], &k);

            for t in 0..n {
                rope_table(pos0 + t, hd, c.rope_base, &mut cos, &mut sin);
                for head in q[t * qd..(t + 1) * qd].chunks_exact_mut(hd) {
                    rope_neox(head, &cos, &sin);
                }
                for head in k[t * kvd..(t + 1) * kvd].chunks_exact_mut(hd) {
                    rope_neox(head, &cos, &sin);
                }
            }
            emit_rows(&mut hook, Stage::Rope, Some("q"), li, pos0, &[nh, hd], &q);
            emit_rows(&mut hook, Stage::Rope, Some("k"), li, pos0, &[nkv, hd], &k);

            cache.k[l][pos0 * kvd..(pos0 + n) * kvd].copy_from_slice(&k);
            cache.v[l][pos0 * kvd..(pos0 + n) * kvd].copy_from_slice(&v);
            attention(&q, &cache.k[l], &cache.v[l], &mut att, pos0, n, nh, nkv, hd);

            let inp = Input::new(&att, n, qd, act, &[lw.wo.m.qtype]);
            matmul(&lw.wo.m, &inp, &mut o);
            emit_rows(&mut hook, Stage::AttnOut, None, li, pos0, &[hid], &o);
            for (xv, ov) in x.iter_mut().zip(&o) {
                *xv += ov;
            }
            emit_rows(&mut hook, Stage::AttnResidual, None, li, pos0, &[hid], &x);

            // --- feed-forward ---
            for t in 0..n {
                rms_norm(
                    &mut h[t * hid..(t + 1) * hid],
                    &x[t * hid..(t + 1) * hid],
                    &lw.ffn_norm,
                    c.rms_eps,
                );
            }
            emit_rows(&mut hook, Stage::FfnNorm, None, li, pos0, &[hid], &h);
            match &lw.ffn {
                Ffn::Moe {
                    router,
                    gate,
                    up,
                    down,
                } => {
                    self.moe(
                        l, &h, n, pos0, act, &router.m, gate, up, down, &mut o, &mut hook,
                    );
                }
                Ffn::Dense { gate, up, down } => {
                    let ff = c.ffn_dim;
                    let inp = Input::new(&h, n, hid, act, &[gate.m.qtype, up.m.qtype]);
                    let mut g = vec![0.0f32; n * ff];
                    let mut u = vec![0.0f32; n * ff];
                    matmul(&gate.m, &inp, &mut g);
                    matmul(&up.m, &inp, &mut u);
                    for (gv, uv) in g.iter_mut().zip(&u) {
                        *gv = silu(*gv) * uv;
                    }
                    let inp = Input::new(&g, n, ff, act, &[down.m.qtype]);
                    matmul(&down.m, &inp, &mut o);
                }
            }
            emit_rows(&mut hook, Stage::MoeFfnOut, None, li, pos0, &[hid], &o);
            for (xv, ov) in x.iter_mut().zip(&o) {
                *xv += ov;
            }
            emit_rows(&mut hook, Stage::LayerOut, None, li, pos0, &[hid], &x);
        }
        cache.len = pos0 + n;

        // --- output ---
        let first = match want {
            Logits::All => 0,
            Logits::Last => n - 1,
        };
        let rows = n - first;
        let mut hn = vec![0.0f32; rows * hid];
        for i in 0..rows {
            let t = first + i;
            rms_norm(
                &mut hn[i * hid..(i + 1) * hid],
                &x[t * hid..(t + 1) * hid],
                &w.output_norm,
                c.rms_eps,
            );
        }
        emit_rows(
            &mut hook,
            Stage::FinalNorm,
            None,
            None,
            pos0 + first,
            &[hid],
            &hn,
        );
        let inp = Input::new(&hn, rows, hid, act, &[w.output.m.qtype]);
        let mut logits = vec![0.0f32; rows * c.vocab];
        matmul(&w.output.m, &inp, &mut logits);
        emit_rows(
            &mut hook,
            Stage::Logits,
            None,
            None,
            pos0 + first,
            &[c.vocab],
            &logits,
        );
        Ok(logits)
    }

    /// The MoE block for `n` tokens: router, top-k, renormalised weights, then the chosen
    /// experts. Tokens are grouped by expert so that a prefill reads each expert's weights once;
    /// each token's expert outputs are summed in its top-k order, which keeps the result
    /// independent of the grouping (decode == prefill, bit for bit).
    #[allow(clippy::too_many_arguments)]
    fn moe(
        &self,
        l: usize,
        h: &[f32],
        n: usize,
        pos0: usize,
        act: ActPrecision,
        router: &MatRef<'_>,
        gate: &super::weights::ExpertStack<'_>,
        up: &super::weights::ExpertStack<'_>,
        down: &super::weights::ExpertStack<'_>,
        out: &mut [f32],
        hook: &mut Option<&mut dyn TraceHook>,
    ) {
        let c = &self.config;
        let (hid, ne, k, ff) = (c.hidden, c.n_expert, c.n_expert_used, c.ffn_dim);
        // Router: F32 weights and f32 activations, as llama.cpp (the router is never quantized).
        let inp = Input::new(h, n, hid, ActPrecision::F32, &[]);
        let mut logits = vec![0.0f32; n * ne];
        matmul(router, &inp, &mut logits);
        let mut chosen = vec![0usize; n * k];
        let mut weights = vec![0.0f32; n * k];
        let mut probs = vec![0.0f32; ne];
        for t in 0..n {
            probs.copy_from_slice(&logits[t * ne..(t + 1) * ne]);
            softmax_in_place(&mut probs);
            let top = top_k_indices(&probs, k);
            let sum: f32 = top.iter().map(|&e| probs[e]).sum();
            for (j, &e) in top.iter().enumerate() {
                chosen[t * k + j] = e;
                weights[t * k + j] = probs[e] / sum;
            }
            if let Some(hk) = hook.as_deref_mut() {
                let pos = pos0 + t;
                if hk.wants(Stage::MoeRouter, Some(l), pos) {
                    let key = |p: &str| TensorKey::new(Stage::MoeRouter, Some(l), pos).part(p);
                    hk.record_f32(key("logits"), &[ne], &logits[t * ne..(t + 1) * ne]);
                    let ids: Vec<i32> = top.iter().map(|&e| e as i32).collect();
                    hk.record_i32(key("topk_ids"), &[k], &ids);
                    hk.record_f32(key("topk_weights"), &[k], &weights[t * k..(t + 1) * k]);
                    let next = top_k_indices(&probs, (k + 1).min(ne));
                    let margin = if ne > k {
                        probs[next[k - 1]] - probs[next[k]]
                    } else {
                        f32::INFINITY
                    };
                    hk.record_f32(key("margin"), &[1], &[margin]);
                }
            }
        }

        // Group the (token, slot) pairs by expert, so that a prefill reads each chosen
        // expert's weights once; then run every active expert's gate and up products in one
        // parallel region, SwiGLU, and every down product in another.
        let full_inp = Input::new(h, n, hid, act, &[gate.m.qtype, up.m.qtype]);
        let mut groups: Vec<(usize, Vec<(usize, usize)>)> = Vec::new();
        for e in 0..ne {
            let slots: Vec<(usize, usize)> = (0..n)
                .flat_map(|t| (0..k).map(move |j| (t, j)))
                .filter(|&(t, j)| chosen[t * k + j] == e)
                .collect();
            if !slots.is_empty() {
                groups.push((e, slots));
            }
        }
        // Each group's tokens (and their prepared activations), gathered.
        let inputs: Vec<Input<'_>> = groups
            .iter()
            .map(|(_, slots)| {
                if n == 1 {
                    return Input {
                        x: h.into(),
                        n: 1,
                        cols: hid,
                        q: full_inp.q.clone(),
                    };
                }
                let mut xs = Vec::with_capacity(slots.len() * hid);
                let mut q = Vec::new();
                for &(t, _) in slots {
                    xs.extend_from_slice(&h[t * hid..(t + 1) * hid]);
                    if !full_inp.q.is_empty() {
                        q.push(full_inp.q[t].clone());
                    }
                }
                Input {
                    x: xs.into(),
                    n: slots.len(),
                    cols: hid,
                    q,
                }
            })
            .collect();
        let mut g: Vec<Vec<f32>> = groups
            .iter()
            .map(|(_, s)| vec![0.0f32; s.len() * ff])
            .collect();
        let mut u: Vec<Vec<f32>> = g.clone();
        {
            let mut jobs: Vec<(MatRef<'_>, &Input<'_>, &mut [f32])> = Vec::new();
            for (((&(e, _), inp), gb), ub) in groups
                .iter()
                .zip(&inputs)
                .zip(g.iter_mut())
                .zip(u.iter_mut())
            {
                jobs.push((gate.expert(e), inp, gb));
                jobs.push((up.expert(e), inp, ub));
            }
            matmul_many(&mut jobs);
        }
        let sw: Vec<Vec<f32>> = g
            .iter()
            .zip(&u)
            .map(|(gb, ub)| gb.iter().zip(ub).map(|(gv, uv)| silu(*gv) * uv).collect())
            .collect();
        let sw_inputs: Vec<Input<'_>> = groups
            .iter()
            .zip(&sw)
            .map(|((e, slots), s)| Input::new(s, slots.len(), ff, act, &[down.expert(*e).qtype]))
            .collect();
        let mut ye: Vec<Vec<f32>> = groups
            .iter()
            .map(|(_, s)| vec![0.0f32; s.len() * hid])
            .collect();
        {
            let mut jobs: Vec<(MatRef<'_>, &Input<'_>, &mut [f32])> = Vec::new();
            for ((&(e, _), inp), yb) in groups.iter().zip(&sw_inputs).zip(ye.iter_mut()) {
                jobs.push((down.expert(e), inp, yb));
            }
            matmul_many(&mut jobs);
        }

        // Per (token, slot) expert output.
        let mut y = vec![0.0f32; n * k * hid];
        for (gi, (e, slots)) in groups.iter().enumerate() {
            let e = *e;
            for (i, &(t, j)) in slots.iter().enumerate() {
                y[(t * k + j) * hid..(t * k + j + 1) * hid]
                    .copy_from_slice(&ye[gi][i * hid..(i + 1) * hid]);
                if let Some(hk) = hook.as_deref_mut() {
                    let pos = pos0 + t;
                    let parts: [(Stage, &[f32], usize); 4] = [
                        (Stage::MoeExpertGate, &g[gi][i * ff..(i + 1) * ff], ff),
                        (Stage::MoeExpertUp, &u[gi][i * ff..(i + 1) * ff], ff),
                        (Stage::MoeExpertSwiglu, &sw[gi][i * ff..(i + 1) * ff], ff),
                        (Stage::MoeExpertOut, &ye[gi][i * hid..(i + 1) * hid], hid),
                    ];
                    for (stage, data, len) in parts {
                        if hk.wants_expert(stage, l, pos, e) {
                            hk.record_f32(
                                TensorKey::new(stage, Some(l), pos).expert(e),
                                &[len],
                                data,
                            );
                        }
                    }
                }
            }
        }
        for t in 0..n {
            let o = &mut out[t * hid..(t + 1) * hid];
            o.fill(0.0);
            for j in 0..k {
                let wgt = weights[t * k + j];
                for (ov, yv) in o
                    .iter_mut()
                    .zip(&y[(t * k + j) * hid..(t * k + j + 1) * hid])
                {
                    *ov += wgt * yv;
                }
            }
        }
    }
}

/// The planted wrong-qtype view of a matrix: same bytes, another format. Rows that the bytes do
/// not cover read as zero (see `matmul_rows_available`).
fn planted_wrong_qtype<'a>(m: &MatRef<'a>, attn_q_qtype: QType) -> MatRef<'a> {
    let q = wrong_qtype(m.qtype, attn_q_qtype);
    let row_bytes = super::kernels::row_bytes(q, m.cols).unwrap_or(m.row_bytes);
    MatRef {
        qtype: q,
        row_bytes,
        ..*m
    }
}

/// [`matmul`] for a matrix whose byte buffer may hold fewer rows than `rows` (only the planted
/// wrong-qtype view): missing rows give 0.
fn matmul_rows_available(m: &MatRef<'_>, inp: &Input<'_>, out: &mut [f32]) {
    let avail = (m.data.len() / m.row_bytes.max(1)).min(m.rows);
    if avail == m.rows {
        return matmul(m, inp, out);
    }
    let part = MatRef { rows: avail, ..*m };
    let mut tmp = vec![0.0f32; inp.n * avail];
    matmul(&part, inp, &mut tmp);
    out.fill(0.0);
    for t in 0..inp.n {
        out[t * m.rows..t * m.rows + avail].copy_from_slice(&tmp[t * avail..(t + 1) * avail]);
    }
}

/// Causal GQA attention for tokens at positions `pos0 .. pos0+n`, keys/values `0 ..= pos`.
#[allow(clippy::too_many_arguments)]
fn attention(
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    out: &mut [f32],
    pos0: usize,
    n: usize,
    nh: usize,
    nkv: usize,
    hd: usize,
) {
    let (qd, kvd, group) = (nh * hd, nkv * hd, nh / nkv);
    let scale = 1.0 / (hd as f32).sqrt();
    out.par_chunks_mut(hd).enumerate().for_each(|(idx, o)| {
        let (t, head) = (idx / nh, idx % nh);
        let kvh = head / group;
        let qh = &q[t * qd + head * hd..t * qd + (head + 1) * hd];
        let upto = pos0 + t + 1;
        let mut scores: Vec<f32> = (0..upto)
            .map(|p| {
                super::ops::dot_f32(qh, &kc[p * kvd + kvh * hd..p * kvd + (kvh + 1) * hd]) * scale
            })
            .collect();
        softmax_in_place(&mut scores);
        o.fill(0.0);
        for (p, &s) in scores.iter().enumerate() {
            let vrow = &vc[p * kvd + kvh * hd..p * kvd + (kvh + 1) * hd];
            for (ov, vv) in o.iter_mut().zip(vrow) {
                *ov += s * vv;
            }
        }
    });
    debug_assert_eq!(out.len(), n * qd);
}
