//! decode_q16.cu (the decode expert products on 16-bit integer activations) against the CPU
//! dequantizer in float64.
//!
//! Two claims, kept apart. (1) The quantizer: every element is within 0.51 dx of dx v, with dx
//! the block's largest magnitude over 32639, and the block's integer sum is stored exactly. (2)
//! The dp4a kernels: their output is the float64 dot product of the dequantized weights with the
//! *dequantized Q16 activations* (dx v), up to f32 rounding (1e-5 of the sum of |w x|). Together
//! they bound the error against the f32 activations: sum |w_i| 0.51 dx_i, which the last test
//! checks for the kernel's output directly.

use engine::cuda::GpuQType;
use kernel_emu::testdata::{
    activations, device, norm_weights, q16_error_ratios, random_matrix, rmsnorm_f64, router_f64,
    silu, weights, QkvCase, Reference, Rng,
};
use kernel_emu::{
    matvec3n_q16, matvec_q16, moe_down_q16, moe_gate_up2_q16, q16_quantize, q16_quantize_lanes8,
    router_decode, Q16,
};

const Q16_QTYPES: [GpuQType; 3] = [GpuQType::Q4K, GpuQType::Q5K, GpuQType::Q6K];
const Q16_MAX: f32 = 32639.0;

/// The quantizer's contract for the elements x and their Q16 form q: dx = amax / 32639 and
/// every element within 0.51 dx (testdata::q16_error_ratios), |v| <= 32639, the block's sum exact.
fn check_q16(x: &[f32], q: &Q16, what: &str) {
    assert_eq!(q.k, x.len());
    for (i, r) in q16_error_ratios(x, q).into_iter().enumerate() {
        assert!(
            r <= 1.0,
            "{what} element {i}: |x - dx v| at {r:.3e} of 0.51 dx (or a wrong dx)"
        );
    }
    for b in 0..x.len() / 8 {
        let mut sum = 0i32;
        for i in 8 * b..8 * b + 8 {
            let v = q.v(i);
            assert!(v.abs() <= Q16_MAX as i32, "{what} element {i}: v = {v}");
            sum += v;
        }
        assert_eq!(q.isum(b), sum, "{what} block {b}: isum");
    }
}

#[test]
fn quantizer_rounds_every_block_to_16_bits_of_its_largest_magnitude() {
    let mut rng = Rng(16);
    for k in [32usize, 256, 2048] {
        let mut x = activations(1, k, &mut rng);
        // a zero block, a block with one non-zero, a block of tiny and one of huge values
        x[..8].fill(0.0);
        x[8..16].copy_from_slice(&[0.0, 0.0, 0.0, -3.5, 0.0, 0.0, 0.0, 0.0]);
        for v in &mut x[16..24] {
            *v *= 1e-30;
        }
        for v in &mut x[24..32] {
            *v *= 1e30;
        }
        let q = q16_quantize(&x).expect("geometry");
        check_q16(&x, &q, &format!("K = {k}"));
        assert_eq!(q.dx(0), 0.0);
        assert!((0..8).all(|i| q.v(i) == 0));
        assert_eq!(q.v(11), -(Q16_MAX as i32));
    }
    assert!(
        q16_quantize(&[1.0; 40]).is_err(),
        "K % 32 != 0 must be refused"
    );
}

#[test]
fn gate_up_q16_is_the_dot_product_with_the_quantized_activation() {
    // 64 rows (8 blocks of 8 rows: one Q16 block of outputs each), 4 experts, 6 pairs
    let (experts, ff, k) = (4usize, 64usize, 512usize);
    let ids = [2i32, 0, 3, 2, 1, 0];
    for (i, qt) in Q16_QTYPES.into_iter().enumerate() {
        let mut rng = Rng(1600 + i as u64);
        let gf = random_matrix(qt, experts * ff, k, &mut rng);
        let uf = random_matrix(qt, experts * ff, k, &mut rng);
        let (gd, ud) = (device(qt, &gf), device(qt, &uf));
        let x = activations(1, k, &mut rng);
        let xq = q16_quantize(&x).expect("geometry");
        let xd = xq.dequantized();
        let (g, u) = (
            weights(qt, &gd, ff, k, experts),
            weights(qt, &ud, ff, k, experts),
        );
        let (act, actq) = moe_gate_up2_q16(g, u, &xq, &ids).expect("geometry");
        let (rg, ru) = (
            Reference::new(qt, &gf, experts, ff, k).expect("reference"),
            Reference::new(qt, &uf, experts, ff, k).expect("reference"),
        );
        let mut worst = 0f64;
        for (p, &e) in ids.iter().enumerate() {
            for r in 0..ff {
                let (g, gm) = rg.dot64(e as usize, r, &xd);
                let (u, um) = ru.dot64(e as usize, r, &xd);
                let want = silu(g) * u;
                // |d(silu(g) u)| <= |u| |dg| (silu' <= 1.1) + |silu(g)| |du|
                let bound = 1e-5 * (1.1 * u.abs() * gm + silu(g).abs() * um) + 1e-30;
                worst = worst.max((act[p * ff + r] as f64 - want).abs() / bound);
            }
            // the kernel's Q16 form of its own outputs, block by block
            check_q16(
                &act[p * ff..(p + 1) * ff],
                &actq[p],
                &format!("{} pair {p}", qt.name()),
            );
        }
        eprintln!("{}: worst error {worst:.3e} of the bound", qt.name());
        assert!(
            worst <= 1.0,
            "{}: {worst:.3e} of the f32 rounding bound",
            qt.name()
        );
    }
}

#[test]
fn down_q16_is_the_weighted_dot_product_with_the_quantized_activations() {
    // 70 output rows (a last block of 2 warps), K = ff = 512, 3 slots
    let (experts, rows, ff) = (4usize, 70usize, 512usize);
    let ids = [3i32, 1, 0];
    let sw = [0.5f32, 0.3, 0.2];
    for (i, qt) in Q16_QTYPES.into_iter().enumerate() {
        let mut rng = Rng(1700 + i as u64);
        let df = random_matrix(qt, experts * rows, ff, &mut rng);
        let dd = device(qt, &df);
        let acts = activations(ids.len(), ff, &mut rng);
        let actq: Vec<Q16> = acts
            .chunks_exact(ff)
            .map(|a| q16_quantize(a).expect("geometry"))
            .collect();
        let x = activations(1, rows, &mut rng);
        let y = moe_down_q16(weights(qt, &dd, rows, ff, experts), &actq, &ids, &sw, &x)
            .expect("geometry");
        let rf = Reference::new(qt, &df, experts, rows, ff).expect("reference");
        let mut worst = 0f64;
        for r in 0..rows {
            let (mut want, mut mag) = (x[r] as f64, (x[r] as f64).abs());
            for (s, &e) in ids.iter().enumerate() {
                let (d, m) = rf.dot64(e as usize, r, &actq[s].dequantized());
                want += sw[s] as f64 * d;
                mag += sw[s] as f64 * m;
            }
            worst = worst.max((y[r] as f64 - want).abs() / (1e-5 * mag + 1e-30));
        }
        eprintln!("{}: worst error {worst:.3e} of the bound", qt.name());
        assert!(
            worst <= 1.0,
            "{}: {worst:.3e} of the f32 rounding bound",
            qt.name()
        );
    }
}

#[test]
fn gate_up_q16_stays_within_the_stated_bound_of_the_f32_activation() {
    // what the contract states: against the unrounded activations, the error of each product is
    // at most sum_i |w_i| 0.51 dx_i (the rounding of x) plus the f32 rounding
    let (experts, ff, k) = (2usize, 32usize, 2048usize);
    let ids = [1i32, 0];
    for (i, qt) in Q16_QTYPES.into_iter().enumerate() {
        let mut rng = Rng(1800 + i as u64);
        let gf = random_matrix(qt, experts * ff, k, &mut rng);
        let gd = device(qt, &gf);
        let x = activations(1, k, &mut rng);
        let xq = q16_quantize(&x).expect("geometry");
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        // gate = up: act = silu(g) g, so the check goes through one dot product per row
        let g = weights(qt, &gd, ff, k, experts);
        let (act, _) = moe_gate_up2_q16(g, g, &xq, &ids).expect("geometry");
        let rf = Reference::new(qt, &gf, experts, ff, k).expect("reference");
        for (p, &e) in ids.iter().enumerate() {
            for r in 0..ff {
                let (gv, gm) = rf.dot64(e as usize, r, &x64);
                let w = &rf.w[(e as usize * ff + r) * k..][..k];
                let qerr: f64 = w
                    .iter()
                    .enumerate()
                    .map(|(j, &wv)| (wv as f64).abs() * 0.51 * xq.dx(j / 8) as f64)
                    .sum();
                let dg = qerr + 1e-5 * gm;
                // |d(silu(g) g)| <= (1.1 |g| + |silu(g)|) |dg| to first order, plus dg^2
                let bound = (1.1 * gv.abs() + silu(gv).abs()) * dg + 1.1 * dg * dg + 1e-30;
                let got = act[p * ff + r] as f64;
                assert!(
                    (got - silu(gv) * gv).abs() <= bound,
                    "{} pair {p} row {r}: {got} against {} (bound {bound:.3e})",
                    qt.name(),
                    silu(gv) * gv
                );
            }
        }
    }
}

#[test]
fn q16_kernels_refuse_qtypes_they_do_not_have() {
    let mut rng = Rng(2);
    let f = random_matrix(GpuQType::Q8_0, 32, 256, &mut rng);
    let d = device(GpuQType::Q8_0, &f);
    let w = weights(GpuQType::Q8_0, &d, 32, 256, 1);
    let xq = q16_quantize(&[0.5; 256]).expect("geometry");
    assert!(moe_gate_up2_q16(w, w, &xq, &[0]).is_err());
}

#[test]
fn the_lane_quantizer_of_attn_combine_gives_the_same_blocks() {
    // attn_combine: one element per thread, head_dim threads per block
    let mut rng = Rng(19);
    let mut x = activations(1, 1024, &mut rng);
    x[40..48].fill(0.0);
    let lanes = q16_quantize_lanes8(&x, 128).expect("geometry");
    check_q16(&x, &lanes, "lanes8");
    let blocks = q16_quantize(&x).expect("geometry");
    assert_eq!(
        lanes.bytes, blocks.bytes,
        "the two quantizers must agree byte for byte"
    );
}

#[test]
fn matvec_q16_is_the_dot_product_with_the_quantized_activation() {
    // 45 rows (a last block of one warp), K = 4096 (four tasks per lane in flight, then the rest)
    let (rows, k) = (45usize, 4096usize + 256);
    for (i, qt) in Q16_QTYPES.into_iter().enumerate() {
        let mut rng = Rng(1900 + i as u64);
        let f = random_matrix(qt, rows, k, &mut rng);
        let d = device(qt, &f);
        let x = activations(1, k, &mut rng);
        let xq = q16_quantize(&x).expect("geometry");
        let xd = xq.dequantized();
        let y0 = activations(1, rows, &mut rng);
        let rf = Reference::new(qt, &f, 1, rows, k).expect("reference");
        for add in [false, true] {
            let y = matvec_q16(weights(qt, &d, rows, k, 1), &xq, &y0, add).expect("geometry");
            for r in 0..rows {
                let (v, m) = rf.dot64(0, r, &xd);
                let want = v + if add { y0[r] as f64 } else { 0.0 };
                let e = (y[r] as f64 - want).abs() / (1e-5 * m + 1e-30);
                assert!(
                    e <= 1.0,
                    "{} row {r} (add {add}): {e:.3e} of the bound",
                    qt.name()
                );
            }
        }
    }
}

#[test]
fn decode_router_matches_the_float64_router_and_writes_h_as_q16() {
    // the decode router (kernels.cu): the norm folded into the dot product, the top-k by rank in
    // the last block; 128 experts as in Qwen3-30B-A3B and 8 as in the tiny models
    for (case, (n_exp, k)) in [(128usize, 8usize), (8, 2)].into_iter().enumerate() {
        let kk = 512usize;
        let mut rng = Rng(2000 + case as u64);
        let f = random_matrix(GpuQType::F32, n_exp, kk, &mut rng);
        let x = activations(1, kk, &mut rng);
        let nw = norm_weights(kk, &mut rng);
        let got = router_decode(weights(GpuQType::F32, &f, n_exp, kk, 1), &x, &nw, 1e-6, k)
            .expect("geometry");
        assert_eq!(got.counter_after, 0, "the ticket counter must return to 0");
        let h = rmsnorm_f64(&x, &nw, 1e-6);
        for (i, (&g, &w)) in got.h.iter().zip(&h).enumerate() {
            assert!(
                (g as f64 - w).abs() <= 1e-6 * w.abs().max(1e-30),
                "h[{i}] {g} against {w}"
            );
        }
        check_q16(&got.h, &got.hq, "router hq");
        let rf = Reference::new(GpuQType::F32, &f, 1, n_exp, kk).expect("reference");
        let want = router_f64(&rf, &h, k);
        for (r, (&g, &l)) in got.logits.iter().zip(&want.logits).enumerate() {
            let m = rf.dot64(0, r, &h).1;
            assert!((g as f64 - l).abs() <= 1e-5 * m, "logit {r}");
        }
        for s in 0..k {
            assert_eq!(got.ids[s], want.order[s] as i32, "slot {s}: expert");
            let w = want.weights[s];
            assert!(
                (got.wts[s] as f64 - w).abs() <= 1e-5,
                "slot {s}: weight {} against {w}",
                got.wts[s]
            );
        }
    }
}

#[test]
fn decode_router_makes_a_nan_logit_visible_and_fills_every_slot() {
    let (n_exp, k, kk) = (16usize, 4usize, 256usize);
    let mut rng = Rng(2100);
    let mut f = random_matrix(GpuQType::F32, n_exp, kk, &mut rng);
    // row 5 all NaN: its logit is NaN
    for c in f[5 * 4 * kk..6 * 4 * kk].chunks_exact_mut(4) {
        c.copy_from_slice(&f32::NAN.to_le_bytes());
    }
    let x = activations(1, kk, &mut rng);
    let got = router_decode(
        weights(GpuQType::F32, &f, n_exp, kk, 1),
        &x,
        &vec![1.0; kk],
        1e-6,
        k,
    )
    .expect("geometry");
    let mut ids = got.ids.clone();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        k,
        "every slot set, no expert twice: {:?}",
        got.ids
    );
    assert!(ids
        .iter()
        .all(|&e| e >= 0 && (e as usize) < n_exp && e != 5));
    assert!(
        got.wts.iter().all(|w| w.is_nan()),
        "weights {:?} must be NaN",
        got.wts
    );
}

#[test]
fn fused_norm_qkv_q16_is_the_dot_product_with_the_quantized_norm() {
    // matvec3n_q16: 38 + 10 q/k rows and 7 v rows (as the f32 kernel's test), K = 512
    let (rows, k, eps) = ([38usize, 10, 7], 512usize, 1e-6f32);
    let pairs = [
        (GpuQType::Q4K, GpuQType::Q4K),
        (GpuQType::Q4K, GpuQType::Q6K),
        (GpuQType::Q4K, GpuQType::Q5K),
        (GpuQType::Q5K, GpuQType::Q5K),
        (GpuQType::Q5K, GpuQType::Q6K),
        (GpuQType::Q6K, GpuQType::Q6K),
    ];
    for (i, (qt, vt)) in pairs.into_iter().enumerate() {
        let mut rng = Rng(2200 + i as u64);
        let c = QkvCase::new([qt, qt, vt], rows, k, &mut rng);
        let (h, y) = matvec3n_q16(c.weights(), &c.x, &c.nw, eps).expect("geometry");
        let hd = q16_quantize(&h).expect("geometry").dequantized();
        for (j, yj) in y.iter().enumerate() {
            let rf = c.reference(j).expect("reference");
            for (r, &got) in yj.iter().enumerate() {
                let (want, mag) = rf.dot64(0, r, &hd);
                let e = (got as f64 - want).abs() / (1e-5 * mag + 1e-30);
                assert!(
                    e <= 1.0,
                    "{} / {} matrix {j} row {r}: {e:.3e} of the bound",
                    qt.name(),
                    vt.name()
                );
            }
        }
    }
}
