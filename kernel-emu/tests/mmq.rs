//! The integer-operand matmat_q kernel (engine/src/cuda/mmq.cu), run by the SIMT emulator, against the CPU
//! engine's dequantizer (engine::quant::dequantize_row, itself checked bit for bit against the
//! gguf package's by FALSIFY-QK-DEQ-001) and a float64 product. The engine's own matmat_tc is
//! checked the same way by FALSIFY-EMU-TC-001 (falsifiers/tests/emulated.rs).
//!
//! Each case also plants a bug outside the kernel (a wrong qtype dispatch, group sums left out,
//! activations of the wrong token) and requires the same check to fail on it, so a pass is not a
//! check that cannot fail.

use engine::cuda::GpuQType;
use kernel_emu::testdata::{
    activations, device, group_pairs, random_matrix, relative_error, Reference, Rng,
};
use kernel_emu::{matmat_q, split_act, Pairs, SplitAct, Weights};

/// Largest |got - want| / (sum |w x|) over the checked outputs. The kernel's error budget is the
/// f32 accumulation over k terms plus the 2^-22 of the activation split: 1e-5 of the magnitude.
const TOL: f64 = 1e-5;

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
    let mut split = split_act(&x, k, k, t).expect("split_act geometry");
    if plant == Plant::NoGroupSums {
        split.sums.iter_mut().for_each(|s| *s = 0.0);
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
        let split2 = split_act(&x, k, kk, t).expect("split_act geometry");
        matmat_q(w2, &split2, 1, Pairs::Dense(t), &mut y, rows, false).expect("matmat_q geometry");
    } else {
        matmat_q(w, &split, 1, Pairs::Dense(t), &mut y, rows, false).expect("matmat_q geometry");
    }
    let mut worst = 0f64;
    for p in 0..t {
        for r in 0..rows {
            let (want, mag) = reference.dot(0, r, &x[p * k..(p + 1) * k]);
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
}

#[test]
fn dense_check_fails_on_planted_bugs() {
    // Q6_K bytes run by the Q5_K kernel (the engine's own planted-bug case)
    let e = dense_error(GpuQType::Q5K, GpuQType::Q6K, 64, 512, 8, 3, Plant::None);
    assert!(e > TOL, "a wrong qtype dispatch went unnoticed ({e:.3e})");
    // the min term's group sums left out: only Q4_K and Q5_K have mins
    for qt in [GpuQType::Q4K, GpuQType::Q5K] {
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
    let split = split_act(&x, k, k, tokens).expect("split_act geometry");
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
    let split_used: &SplitAct = if plant == Plant::WrongToken {
        let xx: Vec<f32> = x.iter().cycle().take(n_pairs * k).cloned().collect();
        big = split_act(&xx, k, k, n_pairs).expect("split_act geometry");
        &big
    } else {
        &split
    };
    let pairs = Pairs::Grouped {
        list: &list,
        off: &off,
        max_pairs: tokens,
    };
    matmat_q(w, split_used, in_div, pairs, &mut y, rows, add).expect("matmat_q geometry");
    let mut worst = 0f64;
    for (p, &e) in ids.iter().enumerate() {
        let tok = p / slots;
        for r in 0..rows {
            let (mut want, mag) = reference.dot(e, r, &x[tok * k..(tok + 1) * k]);
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
fn split_act_parts_add_up() {
    let mut rng = Rng(9);
    let x = activations(3, 64, &mut rng);
    let s = split_act(&x, 64, 64, 3).expect("split_act geometry");
    for (i, &v) in x.iter().enumerate() {
        let h =
            engine::quant::f16_to_f32(s.hi[i]) as f64 + engine::quant::f16_to_f32(s.lo[i]) as f64;
        // hi carries 11 bits; lo is rounded to f16 too, and below 2^-14 it is subnormal, with an
        // absolute step of 2^-24: |hi + lo - x| <= 2^-25 + 2^-22 |x|
        let bound = 2f64.powi(-25) + 2f64.powi(-22) * v.abs() as f64;
        assert!((h - v as f64).abs() <= bound, "element {i}: {h} vs {v}");
    }
    for (g, &sum) in s.sums.iter().enumerate() {
        let want: f64 = x[16 * g..16 * g + 16].iter().map(|&v| v as f64).sum();
        assert!(
            (sum as f64 - want).abs() <= 1e-5,
            "group {g}: {sum} vs {want}"
        );
    }
}

#[test]
fn bad_geometry_is_an_error_not_a_fault() {
    let s = split_act(&[0.0; 32], 16, 16, 2).expect("split_act geometry");
    let w = [0u8; 144];
    let r = matmat_q(
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
        split_act(&[0.0; 8], 16, 16, 1).is_err(),
        "short input must be refused"
    );
}

#[test]
fn engine_reserves_the_kernels_shared_memory() {
    // the host's launch constant must match what the kernel's two stages occupy
    assert_eq!(
        engine::cuda::model::MQ_SMEM_BYTES as usize,
        kernel_emu::mq_smem_bytes()
    );
}
