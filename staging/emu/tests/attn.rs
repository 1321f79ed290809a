//! The staged attn_prefill kernel (staging/cuda/attn_prefill.cu), run by the SIMT emulator,
//! against causal attention in float64 written out here from its definition:
//! out[t, h] = sum_j softmax_j(q[t, h] . k[j, h / G] * scale) v[j, h / G], j <= pos0 + t.

use kernel_emu::{attn_prefill, Heads};

struct Rng(u64);
impl Rng {
    fn sym(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        2.0 * (v as f32 / (1u64 << 24) as f32) - 1.0
    }
}

fn reference(
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
    got.iter()
        .zip(&want)
        .map(|(a, b)| {
            if a.is_finite() {
                (*a as f64 - b).abs()
            } else {
                f64::INFINITY
            }
        })
        .fold(0.0, f64::max)
}

/// Outputs are convex combinations of values in [-1, 1]; f32 sums over <= 100 keys.
const TOL: f64 = 2e-6;

#[test]
fn prefill_attention_matches_the_definition() {
    // Qwen3-30B-A3B's grouping (G = 8, hd = 128), a smaller one (G = 4, hd = 64); prompts that
    // start at position 0 and later (pos0 = 37), with a partial last query tile and key tile
    let cases = [
        (
            0usize,
            19usize,
            Heads {
                n_head: 16,
                n_head_kv: 2,
                hd: 128,
            },
        ),
        (
            37,
            21,
            Heads {
                n_head: 8,
                n_head_kv: 2,
                hd: 64,
            },
        ),
        (
            5,
            70,
            Heads {
                n_head: 4,
                n_head_kv: 1,
                hd: 32,
            },
        ),
    ];
    for (i, (pos0, t, h)) in cases.into_iter().enumerate() {
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
