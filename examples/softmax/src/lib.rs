//! Softmax and log-sum-exp over `f32` slices.

/// The softmax of `x`, shifted by its maximum so that no `exp` overflows: every output is in
/// [0, 1] and they sum to 1 (up to rounding). An empty input gives an empty output.
pub fn softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = x.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

/// The textbook softmax, without the shift: `exp` overflows to infinity above about 88.7.
pub fn softmax_naive(x: &[f32]) -> Vec<f32> {
    let exps: Vec<f32> = x.iter().map(|v| v.exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

/// `ln(sum(exp(x)))`, computed stably.
pub fn log_sum_exp(x: &[f32]) -> f32 {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max + x.iter().map(|v| (v - max).exp()).sum::<f32>().ln()
}
