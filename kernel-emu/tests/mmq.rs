//! The prefill products of engine/src/cuda/mmq.cu (split_act_q16 + matmat_qi: int8 mma on Q16
//! activations), run by the SIMT emulator, against the CPU engine's dequantizer (engine::quant::dequantize_row, itself checked bit for bit against the
//! gguf package's by FALSIFY-QK-DEQ-001) and a float64 product. The engine's own matmat_tc is
//! checked the same way by FALSIFY-EMU-TC-001 (falsifiers/tests/emulated.rs).
//!
//! Two claims, kept apart as FALSIFY-EMU-Q16-001 keeps them for the decode's Q16 vectors: the
//! quantizer rounds every element to within 0.51 dx (`split_act_q16_rounds_each_group...`), and
//! matmat_qi's output is the float64 product with the values it rounded them to (dx v), up to
//! f32 rounding.
//!
//! Each case also plants a bug outside the kernel (a wrong qtype dispatch, group sums left out,
//! activations of the wrong token) and requires the same check to fail on it, so a pass is not a
//! check that cannot fail.

use engine::cuda::GpuQType;
use kernel_emu::testdata::{
    activations, device, group_pairs, random_matrix, relative_error, split_q16_error_ratios,
    Reference, Rng,
};
use kernel_emu::{matmat_qi, split_act_q16, Pairs, SplitQ16, Weights};

/// Largest |got - want| / (sum |w x|) over the checked outputs, against the rounded activations
/// dx v: the kernel's integer dots are exact, what is left is the f32 scaling and accumulation
/// over k terms: 1e-5 of the magnitude.
const TOL: f64 = 1e-5;

fn split(x: &[f32], x_stride: usize, k: usize, rows: usize) -> SplitQ16 {
    split_act_q16(x, x_stride, k, rows).expect("split_act_q16 geometry")
}

#[allow(clippy::too_many_arguments)]
fn dense_error(
    qt_kernel: GpuQType,
    qt: GpuQType,
    rows: usize,
    k: usize,
    t: usize,
    seed: u64,
    plant: Plant,
) -> f64 {
    let mut rng = Rng(seed);
    let file = random_matrix(qt, rows, k, &mut rng);
    let dev = device(qt, &file);
    let x = activations(t, k, &mut rng);
    let reference = Reference::new(qt, &file, 1, rows, k).expect("reference");
    let mut xq = split(&x, k, k, t);
    if plant == Plant::NoGroupSums {
        xq.sums.iter_mut().for_each(|v| *v = 0.0);
    }
    let mut y = vec![f32::NAN; t * rows];
    let w = Weights {
        qt: qt_kernel,
        bytes: &dev,
        rows,
        k,
        experts: 1,
    };
    if qt_kernel != qt {
        // a wrong dispatch runs the other kernel over these bytes with this matrix's row stride;
        // the wrapper's length check would refuse it, so the planted call uses a shorter k
        let kk = k * qt.device_block_bytes() / qt.block_elems() * qt_kernel.block_elems()
            / qt_kernel.device_block_bytes();
        let kk = kk / 256 * 256;
        let w2 = Weights {
            k: kk,
            bytes: &dev[..qt_kernel.device_row_bytes(kk) * rows],
            ..w
        };
        matmat_qi(
            w2,
            &split(&x, k, kk, t),
            1,
            Pairs::Dense(t),
            &mut y,
            rows,
            false,
        )
        .expect("matmat_qi geometry");
    } else {
        matmat_qi(w, &xq, 1, Pairs::Dense(t), &mut y, rows, false).expect("matmat_qi geometry");
    }
    let mut worst = 0f64;
    for p in 0..t {
        let xr = xq.values(p);
        for r in 0..rows {
            let (want, mag) = reference.dot64(0, r, &xr);
            worst = worst.max(relative_error(y[p * rows + r], want, mag));
        }
    }
    worst
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Plant {
    None,
    NoGroupSums,
    WrongToken,
}

const QTYPES: [GpuQType; 4] = [GpuQType::Q4K, GpuQType::Q5K, GpuQType::Q6K, GpuQType::Q8_0];

#[test]
fn dense_products_match_the_cpu_dequantizer() {
    // 80 rows: a second, partial row tile; 40 tokens: a partial second pair tile; k = 512: four
    // K tiles, so both pipeline stages are used twice
    for (i, qt) in QTYPES.into_iter().enumerate() {
        let e = dense_error(qt, qt, 80, 512, 40, 11 + i as u64, Plant::None);
        eprintln!("{}: worst relative error {e:.3e}", qt.name());
        assert!(e <= TOL, "{}: relative error {e:.3e} > {TOL:e}", qt.name());
    }
    // the shapes of the tiny-mixed model's layers (K = 256, two K tiles; 256 and 128 rows)
    for (i, qt) in QTYPES.into_iter().enumerate() {
        for (rows, t) in [(256usize, 8usize), (128, 33)] {
            let e = dense_error(qt, qt, rows, 256, t, 21 + i as u64, Plant::None);
            assert!(
                e <= TOL,
                "{} {rows} rows, {t} tokens: relative error {e:.3e} > {TOL:e}",
                qt.name()
            );
        }
    }
}

#[test]
fn dense_check_fails_on_planted_bugs() {
    // Q6_K bytes run by the Q5_K kernel (the engine's own planted-bug case)
    let e = dense_error(GpuQType::Q5K, GpuQType::Q6K, 64, 512, 8, 3, Plant::None);
    assert!(e > TOL, "a wrong qtype dispatch went unnoticed ({e:.3e})");
    // the offset term's group sums left out: every qtype has one (Q4_K / Q5_K their mins, Q6_K
    // and Q8_0 the offset of their unsigned quants)
    for qt in QTYPES {
        let e = dense_error(qt, qt, 64, 256, 8, 5, Plant::NoGroupSums);
        assert!(
            e > TOL,
            "{}: missing group sums went unnoticed ({e:.3e})",
            qt.name()
        );
    }
}

fn grouped_error(qt: GpuQType, add: bool, plant: Plant) -> f64 {
    let (experts, rows, k, tokens, slots) = (3usize, 64usize, 256usize, 21usize, 2usize);
    let mut rng = Rng(77 + qt.ggml_id() as u64);
    let file = random_matrix(qt, experts * rows, k, &mut rng);
    let dev = device(qt, &file);
    let x = activations(tokens, k, &mut rng);
    let reference = Reference::new(qt, &file, experts, rows, k).expect("reference");
    // expert choices: distinct per token; expert 0 is chosen by every token, so its group (21
    // pairs) and the others' differ in size
    let ids: Vec<usize> = (0..tokens).flat_map(|t| [0, 1 + (t % 2)]).collect();
    let (list, off) = group_pairs(&ids, experts);
    let xq = split(&x, k, k, tokens);
    let n_pairs = tokens * slots;
    let init: Vec<f32> = (0..n_pairs * rows)
        .map(|i| (i % 13) as f32 * 0.25)
        .collect();
    let mut y = if add {
        init.clone()
    } else {
        vec![f32::NAN; n_pairs * rows]
    };
    let in_div = if plant == Plant::WrongToken { 1 } else { slots };
    let w = Weights {
        qt,
        bytes: &dev,
        rows,
        k,
        experts,
    };
    // WrongToken reads activation row p instead of p / 2: give it rows to read
    let big;
    let xq_used: &SplitQ16 = if plant == Plant::WrongToken {
        let xx: Vec<f32> = x.iter().cycle().take(n_pairs * k).cloned().collect();
        big = split(&xx, k, k, n_pairs);
        &big
    } else {
        &xq
    };
    let pairs = Pairs::Grouped {
        list: &list,
        off: &off,
        max_pairs: tokens,
    };
    matmat_qi(w, xq_used, in_div, pairs, &mut y, rows, add).expect("matmat_qi geometry");
    let mut worst = 0f64;
    for (p, &e) in ids.iter().enumerate() {
        let xr = xq.values(p / slots);
        for r in 0..rows {
            let (mut want, mag) = reference.dot64(e, r, &xr);
            if add {
                want += init[p * rows + r] as f64;
            }
            worst = worst.max(relative_error(y[p * rows + r], want, mag));
        }
    }
    worst
}

#[test]
fn grouped_moe_products_match_the_cpu_dequantizer() {
    for qt in QTYPES {
        for add in [false, true] {
            let e = grouped_error(qt, add, Plant::None);
            eprintln!("{} (add {add}): worst relative error {e:.3e}", qt.name());
            assert!(
                e <= TOL,
                "{} add={add}: relative error {e:.3e} > {TOL:e}",
                qt.name()
            );
        }
    }
}

#[test]
fn grouped_check_fails_on_the_wrong_token() {
    let e = grouped_error(GpuQType::Q4K, false, Plant::WrongToken);
    assert!(
        e > TOL,
        "activations of the wrong token went unnoticed ({e:.3e})"
    );
}

#[test]
fn split_act_q16_rounds_each_group_to_16_bits_of_its_largest_magnitude() {
    let mut rng = Rng(19);
    let (rows, k) = (3usize, 256usize);
    let mut x = activations(rows, k, &mut rng);
    // a zero group, a group with one non-zero, groups of tiny and of huge values
    x[..32].fill(0.0);
    x[32..64].fill(0.0);
    x[40] = -3.5;
    x[64..96].iter_mut().for_each(|v| *v *= 1e-30);
    x[96..128].iter_mut().for_each(|v| *v *= 1e30);
    let s = split_act_q16(&x, k, k, rows).expect("split_act_q16 geometry");
    for (i, r) in split_q16_error_ratios(&x, &s).into_iter().enumerate() {
        assert!(
            r <= 1.0,
            "element {i}: |x - dx v| at {r:.3e} of 0.51 dx (or a wrong dx or group sum)"
        );
    }
    assert_eq!(s.dx[0], 0.0);
    assert!((0..32).all(|i| s.v(0, i) == 0));
    assert_eq!(s.v(0, 40), -32639);
    assert!(
        split_act_q16(&[1.0; 48], 48, 48, 1).is_err(),
        "K % 32 != 0 must be refused"
    );
}

#[test]
fn bad_geometry_is_an_error_not_a_fault() {
    let s = split(&[0.0; 64], 32, 32, 2);
    let w = [0u8; 144];
    let r = matmat_qi(
        Weights {
            qt: GpuQType::Q4K,
            bytes: &w,
            rows: 1,
            k: 256,
            experts: 1,
        },
        &s,
        1,
        Pairs::Dense(2),
        &mut [0.0; 2],
        1,
        false,
    );
    assert!(r.is_err(), "k mismatch must be refused");
    assert!(
        split_act_q16(&[0.0; 8], 32, 32, 1).is_err(),
        "short input must be refused"
    );
}

#[test]
fn engine_reserves_the_kernels_shared_memory() {
    // the host's launch constant must match what the kernel's two stages occupy
    assert_eq!(
        engine::cuda::model::QI_SMEM_BYTES as usize,
        kernel_emu::qi_smem_bytes()
    );
}
