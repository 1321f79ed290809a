//! The falsifiers of contracts/softmax-v1.yaml, each bound to its contract entry.

use contract_macros::falsifier;
use pv_evidence::{Ctx, FalsifierResult};

/// Inputs from a small deterministic generator: no dependency, the same every run.
fn inputs(cases: usize, len: usize, scale: f32) -> Vec<Vec<f32>> {
    let mut s: u32 = 0x2545_f491;
    (0..cases)
        .map(|_| {
            (0..len)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 17;
                    s ^= s << 5;
                    (s as f32 / u32::MAX as f32 * 2.0 - 1.0) * scale
                })
                .collect()
        })
        .collect()
}

/// float64 softmax: the reference.
fn softmax_f64(x: &[f32]) -> Vec<f64> {
    let max = x.iter().map(|&v| v as f64).fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = x.iter().map(|&v| (v as f64 - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

#[falsifier("FALSIFY-SOFTMAX-SUM-001")]
fn outputs_sum_to_one(ctx: &mut Ctx) -> FalsifierResult {
    let mut worst = 0.0f64;
    for x in inputs(200, 64, 30.0) {
        let y = softmax::softmax(&x);
        let sum: f64 = y.iter().map(|&v| v as f64).sum();
        worst = worst.max((sum - 1.0).abs());
    }
    ctx.metric("max_sum_error", worst);
    Ok(())
}

#[falsifier("FALSIFY-SOFTMAX-REF-001")]
fn matches_the_f64_reference(ctx: &mut Ctx) -> FalsifierResult {
    let mut worst = 0.0f64;
    for x in inputs(200, 64, 30.0) {
        let y = softmax::softmax(&x);
        for (a, b) in y.iter().zip(softmax_f64(&x)) {
            worst = worst.max((*a as f64 - b).abs());
        }
    }
    ctx.metric("max_abs_error", worst);
    Ok(())
}

#[falsifier("FALSIFY-SOFTMAX-NAIVE-001")]
fn naive_softmax_is_finite_for_large_inputs(ctx: &mut Ctx) -> FalsifierResult {
    let bad = inputs(50, 16, 500.0)
        .iter()
        .filter(|x| softmax::softmax_naive(x).iter().any(|v| !v.is_finite()))
        .count();
    ctx.metric("non_finite_outputs", bad as f64);
    Ok(())
}
