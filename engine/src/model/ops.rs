//! The small element-wise pieces of the forward, written once and shared by the production
//! forward (f32) and, where the float64 reference has its own copy, mirrored there.
//!
//! Each function follows llama.cpp's definition (see /work/shared/docs/engine-facts.md).

/// `out = x / sqrt(mean(x^2) + eps) * weight`, accumulating the mean of squares in f64 so that
/// the norm does not depend on the summation order of a long row.
pub fn rms_norm(out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
    debug_assert_eq!(out.len(), x.len());
    debug_assert_eq!(weight.len(), x.len());
    let scale = rms_scale(x, eps);
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = v * scale * w;
    }
}

/// In-place form of [`rms_norm`] (used for the per-head q/k norms).
pub fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    debug_assert_eq!(weight.len(), x.len());
    let scale = rms_scale(x, eps);
    for (v, &w) in x.iter_mut().zip(weight) {
        *v = *v * scale * w;
    }
}

fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let sum: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let mean = sum / x.len() as f64;
    (1.0 / (mean + eps as f64).sqrt()) as f32
}

/// The NEOX-style rotation tables for one position: `cos[i], sin[i]` for `i < head_dim / 2`,
/// angle = pos * base^(-2i / head_dim). Computed in f64 and rounded once.
pub fn rope_table(pos: usize, head_dim: usize, base: f32, cos: &mut [f32], sin: &mut [f32]) {
    let half = head_dim / 2;
    for i in 0..half {
        let theta = (pos as f64) * (base as f64).powf(-2.0 * i as f64 / head_dim as f64);
        cos[i] = theta.cos() as f32;
        sin[i] = theta.sin() as f32;
    }
}

/// Rotates one head in place, NEOX style: pairs `(i, i + head_dim/2)`.
pub fn rope_neox(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = head.len() / 2;
    let (lo, hi) = head.split_at_mut(half);
    for i in 0..half {
        let (a, b) = (lo[i], hi[i]);
        lo[i] = a * cos[i] - b * sin[i];
        hi[i] = a * sin[i] + b * cos[i];
    }
}

/// Numerically stable softmax in place (max subtracted first).
pub fn softmax_in_place(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// `x * sigmoid(x)`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// The top `k` indices of `probs` by value, largest first; ties go to the lower index (the
/// order llama.cpp's argsort gives and the one the GPU backend mirrors).
pub fn top_k_indices(probs: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// Plain f32 dot product with 8 independent accumulators (lets the compiler vectorise while
/// keeping a fixed, thread-independent summation order).
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for j in 0..8 {
            acc[j] += a[c * 8 + j] * b[c * 8 + j];
        }
    }
    let mut tail = 0.0f32;
    for i in chunks * 8..a.len() {
        tail += a[i] * b[i];
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_of_constant_row_is_the_weight() {
        let x = [3.0f32; 16];
        let w: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let mut out = [0.0f32; 16];
        rms_norm(&mut out, &x, &w, 0.0);
        for (o, w) in out.iter().zip(&w) {
            assert!((o - w).abs() < 1e-6, "{o} vs {w}");
        }
    }

    #[test]
    fn rope_at_position_zero_is_identity_and_preserves_norm_elsewhere() {
        let mut cos = [0.0f32; 4];
        let mut sin = [0.0f32; 4];
        let orig = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        rope_table(0, 8, 10000.0, &mut cos, &mut sin);
        let mut h = orig;
        rope_neox(&mut h, &cos, &sin);
        assert_eq!(h, orig);
        rope_table(7, 8, 10000.0, &mut cos, &mut sin);
        let mut h = orig;
        rope_neox(&mut h, &cos, &sin);
        let n0: f32 = orig.iter().map(|v| v * v).sum();
        let n1: f32 = h.iter().map(|v| v * v).sum();
        assert!((n0 - n1).abs() < 1e-3);
        // Pair (0, 4) rotated by 7 radians.
        let (c, s) = (7.0f64.cos() as f32, 7.0f64.sin() as f32);
        assert!((h[0] - (1.0 * c - 5.0 * s)).abs() < 1e-5);
        assert!((h[4] - (1.0 * s + 5.0 * c)).abs() < 1e-5);
    }

    #[test]
    fn softmax_handles_large_values_and_sums_to_one() {
        let mut x = [1000.0f32, 1001.0, 999.0];
        softmax_in_place(&mut x);
        assert!(x.iter().all(|v| v.is_finite()));
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[1] > x[0] && x[0] > x[2]);
    }

    #[test]
    fn top_k_breaks_ties_by_lower_index() {
        assert_eq!(top_k_indices(&[0.1, 0.3, 0.3, 0.2], 2), vec![1, 2]);
        assert_eq!(top_k_indices(&[0.5, 0.1, 0.4], 1), vec![0]);
    }

    #[test]
    fn dot_matches_naive_sum() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let naive: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        assert!((dot_f32(&a, &b) as f64 - naive).abs() < 1e-5);
    }
}
