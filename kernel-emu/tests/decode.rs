//! The two-rows-per-warp decode kernels (engine/src/cuda/decode.cu) against the engine's own
//! one-row-per-warp kernels (kernels.cu), both under the emulator: each row's tasks are
//! accumulated in the same order, so the outputs must be equal bit for bit. And both against
//! the CPU dequantizer in float64, so that "equal" cannot mean "equally wrong".

use engine::cuda::GpuQType;
use kernel_emu::testdata::{
    activations, decode_attn_case as decode_case, device, random_matrix, silu, weights, Reference,
    Rng, ALL_QTYPES, DECODE_ATTN_CASES,
};
use kernel_emu::{attn_decode, matmat_token_tiles, matvec3, moe_gate_up, Decode};

#[test]
fn two_rows_per_warp_gate_up_equals_the_engines_kernel() {
    // 70 rows: 4-row blocks end mid-way and the two-row warps' last one has a single row
    let (experts, ff, k) = (4usize, 70usize, 512usize);
    let ids = [2i32, 0, 3, 2, 1, 0];
    for (i, qt) in ALL_QTYPES.into_iter().enumerate() {
        let mut rng = Rng(900 + i as u64);
        let gf = random_matrix(qt, experts * ff, k, &mut rng);
        let uf = random_matrix(qt, experts * ff, k, &mut rng);
        let (gd, ud) = (device(qt, &gf), device(qt, &uf));
        let x = activations(3, k, &mut rng);
        let (g, u) = (
            weights(qt, &gd, ff, k, experts),
            weights(qt, &ud, ff, k, experts),
        );
        let engine = moe_gate_up(Decode::KernelsCu, g, u, &x, 2, &ids).expect("geometry");
        let two_row = moe_gate_up(Decode::DecodeCu, g, u, &x, 2, &ids).expect("geometry");
        let differ = engine
            .iter()
            .zip(&two_row)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(
            differ,
            0,
            "{}: {differ} of {} outputs differ",
            qt.name(),
            engine.len()
        );
        let (rg, ru) = (
            Reference::new(qt, &gf, experts, ff, k).expect("reference"),
            Reference::new(qt, &uf, experts, ff, k).expect("reference"),
        );
        let mut worst = 0f64;
        for (p, &e) in ids.iter().enumerate() {
            let xt = &x[(p / 2) * k..][..k];
            for r in 0..ff {
                let (g, gm) = rg.dot(e as usize, r, xt);
                let (u, um) = ru.dot(e as usize, r, xt);
                let want = silu(g) * u;
                // |d(silu(g) u)| <= |u| |dg| (silu' <= 1.1) + |silu(g)| |du|
                let bound = 1e-5 * (1.1 * u.abs() * gm + silu(g).abs() * um) + 1e-30;
                let got = two_row[p * ff + r] as f64;
                worst = worst.max((got - want).abs() / bound);
            }
        }
        eprintln!(
            "{}: bit-equal; worst error {worst:.3e} of the bound",
            qt.name()
        );
        assert!(
            worst <= 1.0,
            "{}: {worst:.3e} of the error bound",
            qt.name()
        );
    }
}

#[test]
fn two_rows_per_warp_qkv_equals_the_engines_kernel() {
    // odd row counts: warps whose two rows fall in two matrices, and a last warp with one row
    let (rows, k) = ([37usize, 9, 5], 256usize);
    for (i, qt) in ALL_QTYPES.into_iter().enumerate() {
        let mut rng = Rng(40 + i as u64);
        let files: Vec<Vec<u8>> = rows
            .iter()
            .map(|&r| random_matrix(qt, r, k, &mut rng))
            .collect();
        let devs: Vec<Vec<u8>> = files.iter().map(|f| device(qt, f)).collect();
        let x = activations(1, k, &mut rng);
        let w = |j: usize| weights(qt, &devs[j], rows[j], k, 1);
        let engine = matvec3(Decode::KernelsCu, [w(0), w(1), w(2)], &x).expect("geometry");
        let two_row = matvec3(Decode::DecodeCu, [w(0), w(1), w(2)], &x).expect("geometry");
        for j in 0..3 {
            let differ = engine[j]
                .iter()
                .zip(&two_row[j])
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(
                differ,
                0,
                "{} matrix {j}: {differ} outputs differ",
                qt.name()
            );
            assert!(
                two_row[j].iter().all(|v| v.is_finite()),
                "{} matrix {j}: unwritten rows",
                qt.name()
            );
        }
        for j in 0..3 {
            let rf = Reference::new(qt, &files[j], 1, rows[j], k).expect("reference");
            for (r, &got) in two_row[j].iter().enumerate() {
                let (want, mag) = rf.dot(0, r, &x);
                let e = (got as f64 - want).abs() / mag.max(1e-30);
                assert!(e <= 1e-5, "{} matrix {j} row {r}: {e:.3e}", qt.name());
            }
        }
    }
}

/// The prefill router as the adoption patch runs it: kernels.cu's matmat in token tiles (one
/// group of 8 tokens per grid.z, all reading the same matrix) instead of matmat_tc's 16 blocks.
#[test]
fn token_tiled_router_product_matches_the_cpu_dequantizer() {
    let (rows, k, t) = (24usize, 256usize, 21usize); // 21 tokens: a partial last tile
    for (i, qt) in [GpuQType::F32, GpuQType::Q8_0, GpuQType::Q4K]
        .into_iter()
        .enumerate()
    {
        let mut rng = Rng(70 + i as u64);
        let file = random_matrix(qt, rows, k, &mut rng);
        let dev = device(qt, &file);
        let x = activations(t, k, &mut rng);
        let y = matmat_token_tiles(weights(qt, &dev, rows, k, 1), &x, t).expect("geometry");
        let w: Vec<f64> = Reference::new(qt, &file, 1, rows, k)
            .expect("reference")
            .w
            .iter()
            .map(|&v| v as f64)
            .collect();
        for p in 0..t {
            for r in 0..rows {
                let (mut want, mut mag) = (0f64, 0f64);
                for j in 0..k {
                    let v = w[r * k + j] * x[p * k + j] as f64;
                    want += v;
                    mag += v.abs();
                }
                let got = y[p * rows + r] as f64;
                let e = (got - want).abs() / mag.max(1e-30);
                assert!(e <= 1e-5, "{} token {p} row {r}: {e:.3e}", qt.name());
            }
        }
    }
}

#[test]
fn fused_decode_attention_equals_the_engines_three_kernels() {
    for (i, (h, pos, max_ctx)) in DECODE_ATTN_CASES.into_iter().enumerate() {
        let a = decode_case(h, pos, max_ctx, 300 + i as u64);
        let e = attn_decode(Decode::KernelsCu, &a).expect("geometry");
        let s = attn_decode(Decode::DecodeCu, &a).expect("geometry");
        let (oe, kce, vce) = (e.out, e.kc, e.vc);
        let (os, kcs, vcs) = (s.out, s.kc, s.vc);
        assert!(
            oe.iter().all(|x| x.is_finite()),
            "case {i}: the engine's output is not finite"
        );
        let bits = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .filter(|(x, y)| x.to_bits() != y.to_bits())
                .count()
        };
        let kvd = h.n_head_kv * h.hd;
        let rows = (pos + 1) * kvd; // the caches up to and with the new row
        assert_eq!(bits(&oe, &os), 0, "case {i}: attention outputs differ");
        assert_eq!(
            bits(&kce[..rows], &kcs[..rows]),
            0,
            "case {i}: K caches differ"
        );
        assert_eq!(
            bits(&vce[..rows], &vcs[..rows]),
            0,
            "case {i}: V caches differ"
        );
    }
}
