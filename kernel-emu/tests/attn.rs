//! The prefill attention kernel (engine/src/cuda/attn_prefill.cu), run by the SIMT emulator,
//! against causal attention in float64 written out here from its definition:
//! out[t, h] = sum_j softmax_j(q[t, h] . k[j, h / G] * scale) v[j, h / G], j <= pos0 + t.

use kernel_emu::testdata::{
    causal_attention_f64 as reference, max_abs_error, Rng, PREFILL_ATTN_CASES,
};
use kernel_emu::{attn_prefill, Heads};

fn worst_error(pos0: usize, t: usize, h: Heads, seed: u64, plant_scale: f32) -> f64 {
    let mut rng = Rng(seed);
    let (qd, kvd) = (h.n_head * h.hd, h.n_head_kv * h.hd);
    let keys = pos0 + t;
    // scores of a few units: the softmax is neither flat nor one-hot
    let q: Vec<f32> = (0..t * qd).map(|_| 0.6 * rng.sym()).collect();
    let kc: Vec<f32> = (0..keys * kvd).map(|_| 0.6 * rng.sym()).collect();
    let vc: Vec<f32> = (0..keys * kvd).map(|_| rng.sym()).collect();
    let scale = 1.0 / (h.hd as f32).sqrt();
    let got = attn_prefill(&q, &kc, &vc, pos0, t, h, scale * plant_scale).expect("geometry");
    let want = reference(&q, &kc, &vc, pos0, t, h, scale as f64);
    max_abs_error(&got, &want)
}

/// Outputs are convex combinations of values in [-1, 1]; f32 sums over <= 100 keys.
const TOL: f64 = 2e-6;

#[test]
fn prefill_attention_matches_the_definition() {
    for (i, (pos0, t, h)) in PREFILL_ATTN_CASES.into_iter().enumerate() {
        let e = worst_error(pos0, t, h, 100 + i as u64, 1.0);
        eprintln!("pos0 {pos0}, {t} tokens, {h:?}: worst abs error {e:.2e}");
        assert!(e <= TOL, "case {i}: error {e:.3e} > {TOL:e}");
    }
}

#[test]
fn the_check_fails_on_a_planted_scale_bug() {
    // a scale off by 1% (for example hd instead of head_dim in a model where they differ) moves
    // the softmax enough to fail
    let e = worst_error(
        3,
        9,
        Heads {
            n_head: 8,
            n_head_kv: 1,
            hd: 64,
        },
        7,
        1.01,
    );
    assert!(e > TOL, "a 1% scale error went unnoticed ({e:.3e})");
}

#[test]
fn bad_geometry_is_an_error() {
    let h = Heads {
        n_head: 6,
        n_head_kv: 4,
        hd: 64,
    };
    assert!(attn_prefill(&[0.0; 384], &[0.0; 256], &[0.0; 256], 0, 1, h, 1.0).is_err());
    let h = Heads {
        n_head: 4,
        n_head_kv: 4,
        hd: 48,
    };
    assert!(attn_prefill(&[0.0; 192], &[0.0; 192], &[0.0; 192], 0, 1, h, 1.0).is_err());
}

#[test]
fn engine_reserves_the_kernels_shared_memory() {
    assert_eq!(
        engine::cuda::model::AP_SMEM_BYTES as usize,
        kernel_emu::ap_smem_bytes()
    );
}
