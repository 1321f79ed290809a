//! The float64 reference forward: the same model, written as plainly as possible, with every
//! weight dequantized to f64 and every sum in f64. No cache, no batching tricks, no threads.
//! It is the yardstick for the production forward (FALSIFY-QW3-REF-*) and for the GPU backend;
//! it is slow and meant for tiny models and short prompts (it dequantizes each matrix it uses).

use super::kernels::dequantize_row;
use super::weights::{Ffn, MatRef};
use super::Model;

/// The router's decision for one (layer, position).
#[derive(Clone, Debug)]
pub struct RouterChoice {
    pub layer: usize,
    pub pos: usize,
    /// Chosen experts, highest probability first.
    pub ids: Vec<usize>,
    /// Their renormalised weights.
    pub weights: Vec<f64>,
    /// p_k - p_(k+1) (softmax probabilities over all experts): how decisive the choice was.
    pub margin: f64,
}

pub struct RefOutput {
    /// `n x vocab`
    pub logits: Vec<f64>,
    /// Per layer, the residual stream after the layer, `n x hidden`.
    pub layer_out: Vec<Vec<f64>>,
    pub router: Vec<RouterChoice>,
}

fn dequant(m: &MatRef<'_>) -> Vec<f64> {
    let mut row = vec![0.0f32; m.cols];
    let mut out = Vec::with_capacity(m.rows * m.cols);
    for r in 0..m.rows {
        dequantize_row(m.qtype, m.row(r), &mut row);
        out.extend(row.iter().map(|&v| v as f64));
    }
    out
}

fn matvec(w: &[f64], rows: usize, x: &[f64]) -> Vec<f64> {
    let cols = x.len();
    (0..rows)
        .map(|r| {
            w[r * cols..(r + 1) * cols]
                .iter()
                .zip(x)
                .map(|(a, b)| a * b)
                .sum()
        })
        .collect()
}

fn rms_norm(x: &[f64], w: &[f32], eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let s = 1.0 / (ms + eps).sqrt();
    x.iter().zip(w).map(|(v, &g)| v * s * g as f64).collect()
}

fn softmax(x: &[f64]) -> Vec<f64> {
    let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = x.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

fn rope(head: &mut [f64], pos: usize, base: f64) {
    let d = head.len();
    for i in 0..d / 2 {
        let th = pos as f64 * base.powf(-2.0 * i as f64 / d as f64);
        let (a, b) = (head[i], head[i + d / 2]);
        head[i] = a * th.cos() - b * th.sin();
        head[i + d / 2] = a * th.sin() + b * th.cos();
    }
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// Runs `tokens` from position 0 and returns every position's logits.
pub fn forward(model: &Model<'_>, tokens: &[u32]) -> RefOutput {
    let c = &model.config;
    let w = &model.weights;
    let (n, hid, hd, nh, nkv) = (tokens.len(), c.hidden, c.head_dim, c.n_head, c.n_head_kv);
    let eps = c.rms_eps as f64;
    let mut row = vec![0.0f32; hid];
    let mut x: Vec<Vec<f64>> = tokens
        .iter()
        .map(|&t| {
            dequantize_row(
                w.token_embd.m.qtype,
                w.token_embd.m.row(t as usize),
                &mut row,
            );
            row.iter().map(|&v| v as f64).collect()
        })
        .collect();
    let mut layer_out = Vec::new();
    let mut router = Vec::new();
    for (l, lw) in w.layers.iter().enumerate() {
        let (wq, wk, wv, wo) = (
            dequant(&lw.wq.m),
            dequant(&lw.wk.m),
            dequant(&lw.wv.m),
            dequant(&lw.wo.m),
        );
        let mut qs = Vec::new();
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (t, xt) in x.iter().enumerate() {
            let h = rms_norm(xt, &lw.attn_norm, eps);
            let mut q = matvec(&wq, nh * hd, &h);
            let mut k = matvec(&wk, nkv * hd, &h);
            let v = matvec(&wv, nkv * hd, &h);
            for head in q.chunks_mut(hd) {
                let nrm = rms_norm(head, &lw.q_norm, eps);
                head.copy_from_slice(&nrm);
                rope(head, t, c.rope_base as f64);
            }
            for head in k.chunks_mut(hd) {
                let nrm = rms_norm(head, &lw.k_norm, eps);
                head.copy_from_slice(&nrm);
                rope(head, t, c.rope_base as f64);
            }
            qs.push(q);
            ks.push(k);
            vs.push(v);
        }
        for t in 0..n {
            let mut att = vec![0.0f64; nh * hd];
            for head in 0..nh {
                let kvh = head / (nh / nkv);
                let qh = &qs[t][head * hd..(head + 1) * hd];
                let scores: Vec<f64> = (0..=t)
                    .map(|p| {
                        qh.iter()
                            .zip(&ks[p][kvh * hd..(kvh + 1) * hd])
                            .map(|(a, b)| a * b)
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let p = softmax(&scores);
                for (pi, &s) in p.iter().enumerate() {
                    for i in 0..hd {
                        att[head * hd + i] += s * vs[pi][kvh * hd + i];
                    }
                }
            }
            let o = matvec(&wo, hid, &att);
            for (xv, ov) in x[t].iter_mut().zip(&o) {
                *xv += ov;
            }
        }
        match &lw.ffn {
            Ffn::Moe {
                router: r,
                gate,
                up,
                down,
            } => {
                let wr = dequant(&r.m);
                let k = c.n_expert_used;
                let mut cache: Vec<Option<[Vec<f64>; 3]>> = vec![None; c.n_expert];
                for (t, xt) in x.iter_mut().enumerate() {
                    let h = rms_norm(xt, &lw.ffn_norm, eps);
                    let p = softmax(&matvec(&wr, c.n_expert, &h));
                    let mut order: Vec<usize> = (0..c.n_expert).collect();
                    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
                    let ids: Vec<usize> = order[..k].to_vec();
                    let sum: f64 = ids.iter().map(|&e| p[e]).sum();
                    let wts: Vec<f64> = ids.iter().map(|&e| p[e] / sum).collect();
                    let margin = if c.n_expert > k {
                        p[order[k - 1]] - p[order[k]]
                    } else {
                        f64::INFINITY
                    };
                    let mut y = vec![0.0f64; hid];
                    for (&e, &we) in ids.iter().zip(&wts) {
                        let m = cache[e].get_or_insert_with(|| {
                            [
                                dequant(&gate.expert(e)),
                                dequant(&up.expert(e)),
                                dequant(&down.expert(e)),
                            ]
                        });
                        let g = matvec(&m[0], c.ffn_dim, &h);
                        let u = matvec(&m[1], c.ffn_dim, &h);
                        let s: Vec<f64> = g.iter().zip(&u).map(|(a, b)| silu(*a) * b).collect();
                        let d = matvec(&m[2], hid, &s);
                        for (yv, dv) in y.iter_mut().zip(&d) {
                            *yv += we * dv;
                        }
                    }
                    for (xv, yv) in xt.iter_mut().zip(&y) {
                        *xv += yv;
                    }
                    router.push(RouterChoice {
                        layer: l,
                        pos: t,
                        ids,
                        weights: wts,
                        margin,
                    });
                }
            }
            Ffn::Dense { gate, up, down } => {
                let (g, u, d) = (dequant(&gate.m), dequant(&up.m), dequant(&down.m));
                for xt in x.iter_mut() {
                    let h = rms_norm(xt, &lw.ffn_norm, eps);
                    let gv = matvec(&g, c.ffn_dim, &h);
                    let uv = matvec(&u, c.ffn_dim, &h);
                    let s: Vec<f64> = gv.iter().zip(&uv).map(|(a, b)| silu(*a) * b).collect();
                    for (xv, dv) in xt.iter_mut().zip(&matvec(&d, hid, &s)) {
                        *xv += dv;
                    }
                }
            }
        }
        layer_out.push(x.iter().flatten().copied().collect());
    }
    let out = dequant(&w.output.m);
    let mut logits = Vec::with_capacity(n * c.vocab);
    for xt in &x {
        let h = rms_norm(xt, &w.output_norm, eps);
        logits.extend(matvec(&out, c.vocab, &h));
    }
    RefOutput {
        logits,
        layer_out,
        router,
    }
}
