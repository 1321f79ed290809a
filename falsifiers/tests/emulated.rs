//! Falsifiers of `contracts/gpu-kernels-emulated-v1.yaml`: the engine's CUDA kernels
//! (engine/src/cuda/kernels.cu) run on the CPU by kernel-emu's SIMT emulator, against float64
//! products over engine::quant's dequantized weights. No GPU needed: these run in CI.

use contract_macros::falsifier;
use engine::cuda::GpuQType;
use kernel_emu::testdata::{
    activations, causal_attention_f64, decode_attn_case, device, group_pairs, max_abs_error,
    norm_weights, q16_error_ratios, random_matrix, relative_error, rmsnorm_f64, router_f64, silu,
    split_q16_error_ratios, weights, QkvCase, Reference, Rng, ALL_QTYPES, DECODE_ATTN_CASES,
    PREFILL_ATTN_CASES,
};
use kernel_emu::{
    attn_decode, attn_prefill, matmat_qi, matmat_tc, matmat_token_tiles, matvec3, matvec3n_q16,
    matvec_q16, moe_down_q16, moe_gate_up, moe_gate_up2_q16, q16_quantize, q16_quantize_lanes8,
    router_decode, split_act_q16, Decode, Pairs, SplitQ16, Q16,
};
use pv_evidence::{Ctx, FalsifierResult, ResultExt};

/// The worst ratio and where it was, across every checked output.
#[derive(Default)]
struct Worst {
    ratio: f64,
    at: String,
    compared: usize,
}

impl Worst {
    /// Records the worst ratio under `metric`, the number of outputs compared, and where.
    fn record(&self, ctx: &mut Ctx, metric: &str) {
        ctx.metric(metric, self.ratio);
        ctx.metric("outputs_compared", self.compared as f64);
        ctx.note(format!("worst at {}", self.at));
    }

    fn add(&mut self, ratio: f64, at: impl FnOnce() -> String) {
        self.compared += 1;
        if ratio > self.ratio || ratio.is_nan() {
            self.ratio = if ratio.is_nan() { f64::INFINITY } else { ratio };
            self.at = at();
        }
    }
}

/// A bug planted in the data the kernel reads (never in a real run): one weight byte flipped
/// (or, for attention, one key or V value changed) after the reference was taken, so the
/// kernel's result is wrong in one place.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Plant {
    None,
    CorruptOneInput,
}

fn plant(dev: &mut [u8], p: Plant) {
    if p == Plant::CorruptOneInput {
        let i = dev.len() / 2 + 17;
        dev[i] ^= 0x5A;
    }
}

fn tc_worst(p: Plant) -> Result<Worst, pv_evidence::FalsifierError> {
    let (rows, k, t) = (80usize, 512usize, 40usize);
    let mut worst = Worst::default();
    for (i, qt) in [GpuQType::Q4K, GpuQType::Q6K].into_iter().enumerate() {
        let mut rng = Rng(500 + i as u64);
        let file = random_matrix(qt, rows, k, &mut rng);
        let mut dev = device(qt, &file);
        plant(&mut dev, p);
        let x = activations(t, k, &mut rng);
        let reference = Reference::new(qt, &file, 1, rows, k).context("reference")?;
        let mut y = vec![f32::NAN; t * rows];
        let w = weights(qt, &dev, rows, k, 1);
        matmat_tc(w, &x, t, 1, Pairs::Dense(t), &mut y, rows, false).context("matmat_tc")?;
        for p in 0..t {
            for r in 0..rows {
                let (want, mag) = reference.dot(0, r, &x[p * k..(p + 1) * k]);
                let e = relative_error(y[p * rows + r], want, mag);
                worst.add(e, || format!("{} token {p} row {r}", qt.name()));
            }
        }
    }
    Ok(worst)
}

#[falsifier("FALSIFY-EMU-TC-001")]
fn tensor_core_products_under_emulation(ctx: &mut Ctx) -> FalsifierResult {
    let worst = tc_worst(Plant::None)?;
    worst.record(ctx, "worst_relative_error");
    Ok(())
}

fn decode_worst(pl: Plant) -> Result<Worst, pv_evidence::FalsifierError> {
    let mut worst = Worst::default();
    // q / k / v in one launch (matvec3): odd row counts split the last block
    let (rows3, k3) = ([37usize, 9, 5], 256usize);
    for (i, qt) in ALL_QTYPES.into_iter().enumerate() {
        let mut rng = Rng(40 + i as u64);
        let files: Vec<Vec<u8>> = rows3
            .iter()
            .map(|&r| random_matrix(qt, r, k3, &mut rng))
            .collect();
        let mut devs: Vec<Vec<u8>> = files.iter().map(|f| device(qt, f)).collect();
        plant(&mut devs[0], pl);
        let x = activations(1, k3, &mut rng);
        let w = |j: usize| weights(qt, &devs[j], rows3[j], k3, 1);
        let y = matvec3(Decode::KernelsCu, [w(0), w(1), w(2)], &x).context("matvec3")?;
        for j in 0..3 {
            let rf = Reference::new(qt, &files[j], 1, rows3[j], k3).context("reference")?;
            for (r, &got) in y[j].iter().enumerate() {
                let (want, mag) = rf.dot(0, r, &x);
                worst.add(relative_error(got, want, 1e-5 * mag), || {
                    format!("matvec3 {} matrix {j} row {r}", qt.name())
                });
            }
        }
    }
    // gate / up of the selected experts with SwiGLU (moe_gate_up)
    let (experts, ff, k) = (4usize, 70usize, 512usize);
    let ids = [2i32, 0, 3, 2, 1, 0];
    for (i, qt) in ALL_QTYPES.into_iter().enumerate() {
        let mut rng = Rng(900 + i as u64);
        let gf = random_matrix(qt, experts * ff, k, &mut rng);
        let uf = random_matrix(qt, experts * ff, k, &mut rng);
        let (mut gd, ud) = (device(qt, &gf), device(qt, &uf));
        plant(&mut gd, pl);
        let x = activations(3, k, &mut rng);
        let (g, u) = (
            weights(qt, &gd, ff, k, experts),
            weights(qt, &ud, ff, k, experts),
        );
        let act = moe_gate_up(Decode::KernelsCu, g, u, &x, 2, &ids).context("moe_gate_up")?;
        let rg = Reference::new(qt, &gf, experts, ff, k).context("reference")?;
        let ru = Reference::new(qt, &uf, experts, ff, k).context("reference")?;
        for (p, &e) in ids.iter().enumerate() {
            let xt = &x[(p / 2) * k..][..k];
            for r in 0..ff {
                let (gv, gm) = rg.dot(e as usize, r, xt);
                let (uv, um) = ru.dot(e as usize, r, xt);
                let silu = gv / (1.0 + (-gv).exp());
                let bound = 1e-5 * (1.1 * uv.abs() * gm + silu.abs() * um);
                worst.add(relative_error(act[p * ff + r], silu * uv, bound), || {
                    format!("moe_gate_up {} pair {p} row {r}", qt.name())
                });
            }
        }
    }
    // the CUDA-core product in token tiles, as the prefill router runs it
    let (rows, kr, t) = (24usize, 256usize, 21usize);
    for (i, qt) in [GpuQType::F32, GpuQType::Q8_0, GpuQType::Q4K]
        .into_iter()
        .enumerate()
    {
        let mut rng = Rng(70 + i as u64);
        let file = random_matrix(qt, rows, kr, &mut rng);
        let mut dev = device(qt, &file);
        plant(&mut dev, pl);
        let x = activations(t, kr, &mut rng);
        let y = matmat_token_tiles(weights(qt, &dev, rows, kr, 1), &x, t).context("matmat")?;
        let rf = Reference::new(qt, &file, 1, rows, kr).context("reference")?;
        for p in 0..t {
            for r in 0..rows {
                let (want, mag) = rf.dot(0, r, &x[p * kr..(p + 1) * kr]);
                worst.add(relative_error(y[p * rows + r], want, 1e-5 * mag), || {
                    format!("matmat {} token {p} row {r}", qt.name())
                });
            }
        }
    }
    Ok(worst)
}

#[falsifier("FALSIFY-EMU-DECODE-001")]
fn decode_products_under_emulation(ctx: &mut Ctx) -> FalsifierResult {
    let worst = decode_worst(Plant::None)?;
    worst.record(ctx, "worst_error_over_bound");
    Ok(())
}

const MQ_QTYPES: [GpuQType; 4] = [GpuQType::Q4K, GpuQType::Q5K, GpuQType::Q6K, GpuQType::Q8_0];

/// split_act_q16's bound for each element of the rows x and their split
/// (testdata::split_q16_error_ratios).
fn split_q16_check(x: &[f32], s: &SplitQ16, what: &str, worst: &mut Worst) {
    for (i, r) in split_q16_error_ratios(x, s).into_iter().enumerate() {
        worst.add(r, || format!("{what} row {} element {}", i / s.k, i % s.k));
    }
}

/// split_act_q16 over `rows` rows of x (k columns), its bound checked into `worst`.
fn split_checked(
    x: &[f32],
    k: usize,
    rows: usize,
    what: &str,
    worst: &mut Worst,
) -> Result<SplitQ16, pv_evidence::FalsifierError> {
    let xq = split_act_q16(x, k, k, rows).context("split_act_q16")?;
    split_q16_check(x, &xq, what, worst);
    Ok(xq)
}

/// FALSIFY-EMU-MMQ-001's two checks, kept apart: split_act_q16's elements against 0.51 dx, and
/// matmat_qi's outputs against 1e-5 sum |w x^| of the float64 product with x^ = dx v.
struct MmqWorst {
    quant: Worst,
    product: Worst,
}

fn mmq_worst(pl: Plant) -> Result<MmqWorst, pv_evidence::FalsifierError> {
    let mut quant = Worst::default();
    let mut worst = Worst::default();
    for (i, qt) in MQ_QTYPES.into_iter().enumerate() {
        // dense: a partial second row tile and pair tile, four K tiles
        let (rows, k, t) = (80usize, 512usize, 40usize);
        let mut rng = Rng(11 + i as u64);
        let file = random_matrix(qt, rows, k, &mut rng);
        let mut dev = device(qt, &file);
        plant(&mut dev, pl);
        let x = activations(t, k, &mut rng);
        let rf = Reference::new(qt, &file, 1, rows, k).context("reference")?;
        let what = format!("dense {} activations", qt.name());
        let xq = split_checked(&x, k, t, &what, &mut quant)?;
        let mut y = vec![f32::NAN; t * rows];
        let w = weights(qt, &dev, rows, k, 1);
        matmat_qi(w, &xq, 1, Pairs::Dense(t), &mut y, rows, false).context("matmat_qi")?;
        for p in 0..t {
            let xr = xq.values(p);
            for r in 0..rows {
                let (want, mag) = rf.dot64(0, r, &xr);
                worst.add(relative_error(y[p * rows + r], want, mag), || {
                    format!("dense {} token {p} row {r}", qt.name())
                });
            }
        }
        // grouped MoE pairs, stored and added: expert 0 is every token's first choice
        let (experts, rows, k, tokens) = (3usize, 64usize, 256usize, 21usize);
        let mut rng = Rng(77 + qt.ggml_id() as u64);
        let file = random_matrix(qt, experts * rows, k, &mut rng);
        let mut dev = device(qt, &file);
        plant(&mut dev, pl);
        let x = activations(tokens, k, &mut rng);
        let rf = Reference::new(qt, &file, experts, rows, k).context("reference")?;
        let ids: Vec<usize> = (0..tokens).flat_map(|t| [0, 1 + (t % 2)]).collect();
        let (list, off) = group_pairs(&ids, experts);
        let what = format!("grouped {} activations", qt.name());
        let xq = split_checked(&x, k, tokens, &what, &mut quant)?;
        for add in [false, true] {
            let init: Vec<f32> = (0..ids.len() * rows)
                .map(|i| (i % 13) as f32 * 0.25)
                .collect();
            let mut y = if add {
                init.clone()
            } else {
                vec![f32::NAN; init.len()]
            };
            let pairs = Pairs::Grouped {
                list: &list,
                off: &off,
                max_pairs: tokens,
            };
            let w = weights(qt, &dev, rows, k, experts);
            matmat_qi(w, &xq, 2, pairs, &mut y, rows, add).context("matmat_qi")?;
            for (p, &e) in ids.iter().enumerate() {
                let xr = xq.values(p / 2);
                for r in 0..rows {
                    let (mut want, mag) = rf.dot64(e, r, &xr);
                    if add {
                        want += init[p * rows + r] as f64;
                    }
                    worst.add(relative_error(y[p * rows + r], want, mag), || {
                        format!("grouped {} add={add} pair {p} row {r}", qt.name())
                    });
                }
            }
        }
    }
    Ok(MmqWorst {
        quant,
        product: worst,
    })
}

#[falsifier("FALSIFY-EMU-MMQ-001")]
fn integer_operand_products_under_emulation(ctx: &mut Ctx) -> FalsifierResult {
    let w = mmq_worst(Plant::None)?;
    ctx.metric("worst_quantizer_error_over_bound", w.quant.ratio);
    ctx.note(format!(
        "quantizer: {} elements, worst at {}",
        w.quant.compared, w.quant.at
    ));
    w.product.record(ctx, "worst_relative_error");
    Ok(())
}

/// attn_prefill's worst absolute error over the cases, and a note per case.
fn attn_prefill_worst(pl: Plant) -> Result<(f64, Vec<String>), pv_evidence::FalsifierError> {
    let cases = PREFILL_ATTN_CASES;
    let mut worst = 0f64;
    let mut notes = Vec::new();
    for (i, (pos0, t, h)) in cases.into_iter().enumerate() {
        let mut rng = Rng(100 + i as u64);
        let (qd, kvd) = (h.n_head * h.hd, h.n_head_kv * h.hd);
        let keys = pos0 + t;
        let q: Vec<f32> = (0..t * qd).map(|_| 0.6 * rng.sym()).collect();
        let mut kc: Vec<f32> = (0..keys * kvd).map(|_| 0.6 * rng.sym()).collect();
        let vc: Vec<f32> = (0..keys * kvd).map(|_| rng.sym()).collect();
        let scale = 1.0 / (h.hd as f32).sqrt();
        let want = causal_attention_f64(&q, &kc, &vc, pos0, t, h, scale as f64);
        if pl == Plant::CorruptOneInput {
            kc[keys * kvd / 2 + 3] += 0.5; // one cached key element, after the reference
        }
        let got = attn_prefill(&q, &kc, &vc, pos0, t, h, scale).context("attn_prefill")?;
        let e = max_abs_error(&got, &want);
        notes.push(format!(
            "pos0 {pos0}, {t} tokens, G {}, hd {}: {e:.2e}",
            h.n_head / h.n_head_kv,
            h.hd
        ));
        worst = worst.max(e);
    }
    Ok((worst, notes))
}

#[falsifier("FALSIFY-EMU-ATTN-PREFILL-001")]
fn prefill_attention_under_emulation(ctx: &mut Ctx) -> FalsifierResult {
    let (worst, notes) = attn_prefill_worst(Plant::None)?;
    ctx.metric("worst_abs_error", worst);
    ctx.note(notes.join("; "));
    Ok(())
}

/// Values where the two-rows-per-warp and fused kernels differ from the one-row kernels, values
/// compared, and a note per differing output. Planted: the adopted kernels alone read a copy of
/// the weights (or of the new V row) with one value changed.
fn decode_equal_count(
    pl: Plant,
) -> Result<(usize, usize, Vec<String>), pv_evidence::FalsifierError> {
    let (mut differing, mut compared) = (0usize, 0usize);
    let mut notes = Vec::new();
    let mut count = |what: String, a: &[f32], b: &[f32]| {
        let d = a
            .iter()
            .zip(b)
            .filter(|(x, y)| x.to_bits() != y.to_bits())
            .count()
            + a.len().abs_diff(b.len());
        if d > 0 {
            notes.push(format!("{what}: {d} differ"));
        }
        differing += d;
        compared += a.len().max(b.len());
    };
    let (experts, ff, k) = (4usize, 70usize, 512usize);
    let ids = [2i32, 0, 3, 2, 1, 0];
    let (rows3, k3) = ([37usize, 9, 5], 256usize);
    for (i, qt) in ALL_QTYPES.into_iter().enumerate() {
        let mut rng = Rng(900 + i as u64);
        let gd = device(qt, &random_matrix(qt, experts * ff, k, &mut rng));
        let ud = device(qt, &random_matrix(qt, experts * ff, k, &mut rng));
        let x = activations(3, k, &mut rng);
        let mut gp = gd.clone();
        plant(&mut gp, pl);
        let (g, u) = (
            weights(qt, &gd, ff, k, experts),
            weights(qt, &ud, ff, k, experts),
        );
        let e = moe_gate_up(Decode::KernelsCu, g, u, &x, 2, &ids).context("moe_gate_up")?;
        let g = weights(qt, &gp, ff, k, experts);
        let s = moe_gate_up(Decode::DecodeCu, g, u, &x, 2, &ids).context("moe_gate_up2")?;
        count(format!("moe_gate_up2 {}", qt.name()), &e, &s);
        let mut rng = Rng(40 + i as u64);
        let devs: Vec<Vec<u8>> = rows3
            .iter()
            .map(|&r| device(qt, &random_matrix(qt, r, k3, &mut rng)))
            .collect();
        let x = activations(1, k3, &mut rng);
        let mut last = devs[2].clone();
        plant(&mut last, pl);
        let w = |j: usize| weights(qt, &devs[j], rows3[j], k3, 1);
        let e = matvec3(Decode::KernelsCu, [w(0), w(1), w(2)], &x).context("matvec3")?;
        let w2 = weights(qt, &last, rows3[2], k3, 1);
        let s = matvec3(Decode::DecodeCu, [w(0), w(1), w2], &x).context("matvec3_2")?;
        for j in 0..3 {
            count(format!("matvec3_2 {} matrix {j}", qt.name()), &e[j], &s[j]);
        }
    }
    for (i, (h, pos, max_ctx)) in DECODE_ATTN_CASES.into_iter().enumerate() {
        let a = decode_attn_case(h, pos, max_ctx, 300 + i as u64);
        let e = attn_decode(Decode::KernelsCu, &a).context("three kernels")?;
        let mut ap = a.clone();
        if pl == Plant::CorruptOneInput {
            ap.v[5] += 0.25; // the new V row: it weighs in at every position, also at 0
        }
        let s = attn_decode(Decode::DecodeCu, &ap).context("attn_decode")?;
        let rows = (pos + 1) * h.n_head_kv * h.hd;
        count(format!("attn_decode case {i} output"), &e.out, &s.out);
        count(
            format!("attn_decode case {i} K cache"),
            &e.kc[..rows],
            &s.kc[..rows],
        );
        count(
            format!("attn_decode case {i} V cache"),
            &e.vc[..rows],
            &s.vc[..rows],
        );
    }
    Ok((differing, compared, notes))
}

#[falsifier("FALSIFY-EMU-DECODE-EQUAL-001")]
fn decode_cu_kernels_equal_kernels_cu(ctx: &mut Ctx) -> FalsifierResult {
    let (differing, compared, notes) = decode_equal_count(Plant::None)?;
    ctx.metric("values_differing", differing as f64);
    ctx.metric("values_compared", compared as f64);
    if !notes.is_empty() {
        ctx.note(notes.join("; "));
    }
    Ok(())
}

#[test]
fn the_worst_ratio_sees_non_finite_outputs() {
    let mut w = Worst::default();
    w.add(0.5, || "a".into());
    w.add(relative_error(f32::NAN, 1.0, 1.0), || "b".into());
    assert!(w.ratio.is_infinite() && w.at == "b");
    w.add(2.0, || "c".into());
    assert_eq!(w.at, "b", "a finite ratio never hides a non-finite one");
}

/// Both falsifiers fail on a planted bug: one flipped weight byte makes the same checks exceed
/// their bounds by orders of magnitude.
#[test]
fn the_checks_fail_on_a_flipped_weight_byte() {
    let tc = tc_worst(Plant::CorruptOneInput).expect("runs");
    assert!(
        tc.ratio > 1e-5,
        "FALSIFY-EMU-TC-001's check missed it ({:.3e})",
        tc.ratio
    );
    let dec = decode_worst(Plant::CorruptOneInput).expect("runs");
    assert!(
        dec.ratio > 1.0,
        "FALSIFY-EMU-DECODE-001's check missed it ({:.3e})",
        dec.ratio
    );
}

/// The adopted kernels' falsifiers (gpu-kernels-emulated-v1 0.1.1) fail on the same kind of
/// planted bug: each check must exceed its contract threshold.
#[test]
fn the_adopted_kernels_checks_fail_on_a_corrupted_input() {
    let mq = mmq_worst(Plant::CorruptOneInput).expect("runs");
    assert!(
        mq.product.ratio > 1e-5,
        "FALSIFY-EMU-MMQ-001's check missed it ({:.3e})",
        mq.product.ratio
    );
    // the quantizer check, on one element's integer moved by 2 (2 dx off: 3.9 x the bound) and
    // on one 16-group sum off by one ulp
    let x = activations(2, 64, &mut Rng(5));
    let good = split_act_q16(&x, 64, 64, 2).expect("runs");
    let mut ok = Worst::default();
    split_q16_check(&x, &good, "good", &mut ok);
    assert!(
        ok.ratio <= 1.0,
        "a correct split fails its bound ({:.3})",
        ok.ratio
    );
    let mut bad = good.clone();
    bad.lo[37] = bad.lo[37].wrapping_add(2);
    let mut w = Worst::default();
    split_q16_check(&x, &bad, "planted", &mut w);
    assert!(
        w.ratio > 1.0,
        "a moved element went unnoticed ({:.3})",
        w.ratio
    );
    let mut bad = good.clone();
    bad.sums[3] = f32::from_bits(bad.sums[3].to_bits() + 1);
    let mut w = Worst::default();
    split_q16_check(&x, &bad, "planted", &mut w);
    assert!(
        w.ratio > 1.0,
        "a wrong group sum went unnoticed ({:.3})",
        w.ratio
    );
    let (ap, _) = attn_prefill_worst(Plant::CorruptOneInput).expect("runs");
    assert!(
        ap > 2e-6,
        "FALSIFY-EMU-ATTN-PREFILL-001's check missed it ({ap:.3e})"
    );
    let (differing, _, notes) = decode_equal_count(Plant::CorruptOneInput).expect("runs");
    assert!(
        differing > 0,
        "FALSIFY-EMU-DECODE-EQUAL-001's check missed it"
    );
    // every planted kernel shows up: six qtypes x (gate/up, matvec3's third matrix), and each of
    // the 3 attention cases in its output and its V cache
    assert!(
        notes.len() >= 18,
        "planted differences not all seen: {notes:?}"
    );
}

const Q16_QTYPES: [GpuQType; 3] = [GpuQType::Q4K, GpuQType::Q5K, GpuQType::Q6K];

/// The quantizer's bound for each element of x and its Q16 form q (testdata::q16_error_ratios:
/// |x - dx v| / (0.51 dx), infinite where a block's dx is not amax / 32639).
fn q16_check(x: &[f32], q: &Q16, what: &str, worst: &mut Worst) {
    for (i, r) in q16_error_ratios(x, q).into_iter().enumerate() {
        worst.add(r, || format!("{what} element {i}"));
    }
}

/// FALSIFY-EMU-Q16-001's checks, kept apart: the quantizers' elements against 0.51 dx (which a
/// correct quantizer approaches, 0.5 / 0.51), the kernels' outputs against 1e-5 sum |w x^|, and
/// the router's id mismatches.
struct Q16Worst {
    quantizer: Worst,
    products: Worst,
    router_id_mismatches: usize,
}

fn q16_worst(pl: Plant) -> Result<Q16Worst, pv_evidence::FalsifierError> {
    let mut quant = Worst::default();
    let mut worst = Worst::default();
    let mut rng = Rng(1616);
    // the two quantizers
    let x = activations(1, 1024, &mut rng);
    let q = q16_quantize(&x).context("q16_quantize")?;
    q16_check(&x, &q, "q16_quantize", &mut quant);
    let ql = q16_quantize_lanes8(&x, 128).context("q16_quantize_lanes8")?;
    q16_check(&x, &ql, "q16_quantize_lanes8", &mut quant);
    for (i, qt) in Q16_QTYPES.into_iter().enumerate() {
        // gate / up with SwiGLU, and its own Q16 outputs
        let (experts, ff, k) = (4usize, 64usize, 512usize);
        let ids = [2i32, 0, 3, 1];
        let mut rng = Rng(1610 + i as u64);
        let gf = random_matrix(qt, experts * ff, k, &mut rng);
        let uf = random_matrix(qt, experts * ff, k, &mut rng);
        let (mut gd, ud) = (device(qt, &gf), device(qt, &uf));
        plant(&mut gd, pl);
        let xq = q16_quantize(&activations(1, k, &mut rng)).context("q16_quantize")?;
        let xd = xq.dequantized();
        let (g, u) = (
            weights(qt, &gd, ff, k, experts),
            weights(qt, &ud, ff, k, experts),
        );
        let (act, actq) = moe_gate_up2_q16(g, u, &xq, &ids).context("moe_gate_up2_q16")?;
        let rg = Reference::new(qt, &gf, experts, ff, k).context("reference")?;
        let ru = Reference::new(qt, &uf, experts, ff, k).context("reference")?;
        for (p, &e) in ids.iter().enumerate() {
            for r in 0..ff {
                let (gv, gm) = rg.dot64(e as usize, r, &xd);
                let (uv, um) = ru.dot64(e as usize, r, &xd);
                let bound = 1e-5 * (1.1 * uv.abs() * gm + silu(gv).abs() * um);
                worst.add(
                    relative_error(act[p * ff + r], silu(gv) * uv, bound),
                    || format!("moe_gate_up2_q16 {} pair {p} row {r}", qt.name()),
                );
            }
            let a = &act[p * ff..(p + 1) * ff];
            let what = format!("moe_gate_up2_q16 {} output {p}", qt.name());
            q16_check(a, &actq[p], &what, &mut quant);
        }
        // down of three slots, weighted, added to x
        let (rows, ffd) = (70usize, 512usize);
        let (dids, sw) = ([3i32, 1, 0], [0.5f32, 0.3, 0.2]);
        let df = random_matrix(qt, experts * rows, ffd, &mut rng);
        let mut dd = device(qt, &df);
        plant(&mut dd, pl);
        let acts: Vec<Q16> = activations(3, ffd, &mut rng)
            .chunks_exact(ffd)
            .map(q16_quantize)
            .collect::<Result<_, _>>()
            .context("q16_quantize")?;
        let x0 = activations(1, rows, &mut rng);
        let y = moe_down_q16(weights(qt, &dd, rows, ffd, experts), &acts, &dids, &sw, &x0)
            .context("moe_down_q16")?;
        let rd = Reference::new(qt, &df, experts, rows, ffd).context("reference")?;
        for r in 0..rows {
            let (mut want, mut mag) = (x0[r] as f64, (x0[r] as f64).abs());
            for (s, &e) in dids.iter().enumerate() {
                let (d, m) = rd.dot64(e as usize, r, &acts[s].dequantized());
                want += sw[s] as f64 * d;
                mag += sw[s] as f64 * m;
            }
            worst.add(relative_error(y[r], want, 1e-5 * mag), || {
                format!("moe_down_q16 {} row {r}", qt.name())
            });
        }
        // the o projection: 45 rows, K = 4352 (four tasks in flight, then the rest), added
        let (rows, ko) = (45usize, 4352usize);
        let of = random_matrix(qt, rows, ko, &mut rng);
        let mut od = device(qt, &of);
        plant(&mut od, pl);
        let xq = q16_quantize(&activations(1, ko, &mut rng)).context("q16_quantize")?;
        let y0 = activations(1, rows, &mut rng);
        let y = matvec_q16(weights(qt, &od, rows, ko, 1), &xq, &y0, true).context("matvec_q16")?;
        let ro = Reference::new(qt, &of, 1, rows, ko).context("reference")?;
        let xd = xq.dequantized();
        for r in 0..rows {
            let (v, m) = ro.dot64(0, r, &xd);
            worst.add(relative_error(y[r], v + y0[r] as f64, 1e-5 * m), || {
                format!("matvec_q16 {} row {r}", qt.name())
            });
        }
    }
    // q / k / v on the block's Q16 norm (matvec3n_q16), v of the q qtype or Q6_K
    for (i, vt) in [GpuQType::Q4K, GpuQType::Q6K].into_iter().enumerate() {
        let mut rng = Rng(1620 + i as u64);
        let mut c = QkvCase::new(
            [GpuQType::Q4K, GpuQType::Q4K, vt],
            [38, 10, 7],
            512,
            &mut rng,
        );
        plant(&mut c.devs[0], pl);
        let (h, y) = matvec3n_q16(c.weights(), &c.x, &c.nw, 1e-6).context("matvec3n_q16")?;
        let hd = q16_quantize(&h).context("q16_quantize")?.dequantized();
        for (j, yj) in y.iter().enumerate() {
            let rf = c.reference(j).context("reference")?;
            for (r, &got) in yj.iter().enumerate() {
                let (v, m) = rf.dot64(0, r, &hd);
                worst.add(relative_error(got, v, 1e-5 * m), || {
                    format!("matvec3n_q16 q4_k/{} matrix {j} row {r}", vt.name())
                });
            }
        }
    }
    // the decode router against a float64 router
    let mut mismatches = 0usize;
    for (c, (n_exp, k)) in [(128usize, 8usize), (8, 2)].into_iter().enumerate() {
        let kk = 512usize;
        let mut rng = Rng(1630 + c as u64);
        let f = random_matrix(GpuQType::F32, n_exp, kk, &mut rng);
        let mut fd = f.clone();
        plant(&mut fd, pl);
        let x = activations(1, kk, &mut rng);
        let nw = norm_weights(kk, &mut rng);
        let got = router_decode(weights(GpuQType::F32, &fd, n_exp, kk, 1), &x, &nw, 1e-6, k)
            .context("router_decode")?;
        if got.counter_after != 0 {
            mismatches += 1;
        }
        let rf = Reference::new(GpuQType::F32, &f, 1, n_exp, kk).context("reference")?;
        let want = router_f64(&rf, &rmsnorm_f64(&x, &nw, 1e-6), k);
        for s in 0..k {
            if got.ids[s] != want.order[s] as i32 {
                mismatches += 1;
            }
            worst.add(relative_error(got.wts[s], want.weights[s], 1e-5), || {
                format!("router_decode {n_exp} experts slot {s}")
            });
        }
    }
    Ok(Q16Worst {
        quantizer: quant,
        products: worst,
        router_id_mismatches: mismatches,
    })
}

#[falsifier("FALSIFY-EMU-Q16-001")]
fn q16_decode_products_under_emulation(ctx: &mut Ctx) -> FalsifierResult {
    let w = q16_worst(Plant::None)?;
    ctx.metric("worst_quantizer_error_over_bound", w.quantizer.ratio);
    ctx.metric("worst_product_error_over_bound", w.products.ratio);
    ctx.metric("router_id_mismatches", w.router_id_mismatches as f64);
    ctx.metric(
        "outputs_compared",
        (w.quantizer.compared + w.products.compared) as f64,
    );
    ctx.note(format!(
        "worst quantizer element at {}; worst product at {}",
        w.quantizer.at, w.products.at
    ));
    Ok(())
}

/// FALSIFY-EMU-Q16-001 fails on a planted bug: one flipped weight byte in every matrix makes
/// the products miss their bound by orders of magnitude.
#[test]
fn the_q16_check_fails_on_a_flipped_weight_byte() {
    let w = q16_worst(Plant::CorruptOneInput).expect("runs");
    assert!(
        w.products.ratio > 1.0,
        "FALSIFY-EMU-Q16-001's product check missed it ({:.3e})",
        w.products.ratio
    );
}
