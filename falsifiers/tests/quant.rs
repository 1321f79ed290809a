//! Falsifiers of `contracts/quant-kernels-v1.yaml`: engine::quant against gguf-py (fixture
//! python-oracle), against float64 arithmetic, and its AVX2 paths against the scalar ones.

use std::path::Path;
use std::process::Command;

use contract_macros::falsifier;
use engine::gguf::GgufWriter;
use engine::quant::{
    self, dequantize_row, dequantize_row_scalar, f16_to_f32, f32_to_f16, matmat_q8, matvec_f32,
    matvec_q8, quantize_row_q8_0, vec_dot_f32, vec_dot_f32_scalar, vec_dot_q8, vec_dot_q8_scalar,
    Q80Acts, QType, QuantizedActs,
};
use engine::sampling::Rng;
use pv_evidence::{Ctx, FalsifierError, FalsifierResult, ResultExt};

const DEQ_QTYPES: [QType; 8] = [
    QType::F32,
    QType::F16,
    QType::BF16,
    QType::Q8_0,
    QType::Q4_0,
    QType::Q4K,
    QType::Q5K,
    QType::Q6K,
];
const Q8_QTYPES: [QType; 6] = [
    QType::Q4_0,
    QType::Q8_0,
    QType::Q4K,
    QType::Q5K,
    QType::Q6K,
    QType::Q8K,
];

fn put_f16(v: &mut [u8], at: usize, x: f32) {
    v[at..at + 2].copy_from_slice(&f32_to_f16(x).to_le_bytes());
}

/// A random row of `cols` values of `q`. Block formats: random bytes with small finite scales
/// (d in [1e-3, 3e-3), dmin in [0, 2e-3)), as real files have. Float formats: arbitrary bit
/// patterns when `any_bits` (NaN, inf, subnormals included), else values in [-1, 1).
fn random_row(q: QType, cols: usize, rng: &mut Rng, any_bits: bool) -> Vec<u8> {
    let n = q.row_bytes(cols).expect("whole blocks");
    let mut v: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
    let bb = q.block_bytes();
    let scale = |rng: &mut Rng| 0.001 + rng.next_f32() * 0.002;
    match q {
        QType::F32 if !any_bits => {
            for c in v.chunks_exact_mut(4) {
                c.copy_from_slice(&(rng.next_f32() * 2.0 - 1.0).to_le_bytes());
            }
        }
        QType::F16 if !any_bits => {
            for c in v.chunks_exact_mut(2) {
                c.copy_from_slice(&f32_to_f16(rng.next_f32() * 2.0 - 1.0).to_le_bytes());
            }
        }
        QType::BF16 if !any_bits => {
            for c in v.chunks_exact_mut(2) {
                let b = ((rng.next_f32() * 2.0 - 1.0).to_bits() >> 16) as u16;
                c.copy_from_slice(&b.to_le_bytes());
            }
        }
        QType::F32 | QType::F16 | QType::BF16 => {}
        QType::Q8_0 | QType::Q4_0 => {
            for b in 0..n / bb {
                put_f16(&mut v, b * bb, scale(rng));
            }
        }
        QType::Q4K | QType::Q5K => {
            for b in 0..n / bb {
                put_f16(&mut v, b * bb, scale(rng));
                put_f16(&mut v, b * bb + 2, rng.next_f32() * 0.002);
            }
        }
        QType::Q6K => {
            for b in 0..n / bb {
                put_f16(&mut v, b * bb + 208, scale(rng));
            }
        }
        QType::Q8K => {
            for b in 0..n / bb {
                v[b * bb..b * bb + 4].copy_from_slice(&scale(rng).to_le_bytes());
            }
        }
    }
    v
}

/// Activations with a spread of magnitudes and occasional outliers (which set the block scale).
fn random_x(cols: usize, rng: &mut Rng) -> Vec<f32> {
    (0..cols)
        .map(|i| {
            let v = rng.next_f32() * 2.0 - 1.0;
            if i % 97 == 13 {
                v * 8.0
            } else {
                v
            }
        })
        .collect()
}

fn deq(q: QType, row: &[u8], cols: usize) -> Vec<f32> {
    let mut w = vec![0.0f32; cols];
    dequantize_row_scalar(q, row, &mut w).expect("row shape");
    w
}

fn oracle(py: &Path, args: &[&str]) -> Result<(), FalsifierError> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("oracles/gguf_py_oracle.py");
    let out = Command::new(py)
        .arg(script)
        .args(args)
        .output()
        .context("running gguf_py_oracle.py")?;
    if !out.status.success() {
        return Err(FalsifierError::msg(format!(
            "gguf_py_oracle.py {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

/// (mismatched values, values compared, first mismatch per qtype)
fn compare_bits(ours: &[f32], theirs: &[f32]) -> (usize, Option<(usize, u32, u32)>) {
    let mut bad = 0;
    let mut first = None;
    if ours.len() != theirs.len() {
        return (ours.len().max(theirs.len()), Some((usize::MAX, 0, 0)));
    }
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        if a.to_bits() != b.to_bits() {
            bad += 1;
            first.get_or_insert((i, a.to_bits(), b.to_bits()));
        }
    }
    (bad, first)
}

#[falsifier("FALSIFY-QK-DEQ-001")]
fn dequant_matches_gguf_py(ctx: &mut Ctx) -> FalsifierResult {
    let py = std::path::PathBuf::from(ctx.fixture("python-oracle")?);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("blocks.gguf");
    let (rows, cols) = (32usize, 1024usize);
    let mut rng = Rng::new(0xDE0);
    let mut w = GgufWriter::create(&path)?;
    let mut data = Vec::new();
    for q in DEQ_QTYPES {
        w.add_tensor(&format!("t.{}", q.name()), q, &[cols as u64, rows as u64])?;
        let mut t = Vec::new();
        for _ in 0..rows {
            t.extend(random_row(q, cols, &mut rng, true));
        }
        data.push(t);
    }
    let mut d = w.begin_data()?;
    for t in &data {
        d.write_tensor_data(t)?;
    }
    d.finish()?;
    oracle(
        &py,
        &[
            "dequant",
            &path.to_string_lossy(),
            &dir.path().to_string_lossy(),
        ],
    )?;
    let (mut mismatched, mut compared) = (0usize, 0usize);
    let mut details = Vec::new();
    for (i, (q, t)) in DEQ_QTYPES.iter().zip(&data).enumerate() {
        let raw = std::fs::read(dir.path().join(format!("{i}.f32")))?;
        let theirs: Vec<f32> = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let rb = q.row_bytes(cols).context("row bytes")?;
        // Both our production path (AVX2 where present) and the scalar reference.
        for scalar in [false, true] {
            let mut ours = vec![0.0f32; rows * cols];
            for (r, y) in ours.chunks_exact_mut(cols).enumerate() {
                let row = &t[r * rb..(r + 1) * rb];
                if scalar {
                    dequantize_row_scalar(*q, row, y)?;
                } else {
                    dequantize_row(*q, row, y)?;
                }
            }
            let (bad, first) = compare_bits(&ours, &theirs);
            mismatched += bad;
            compared += ours.len();
            details.push(format!(
                "{}{}: {bad} mismatches{}",
                q.name(),
                if scalar { " (scalar)" } else { "" },
                first
                    .map(|(i, a, b)| format!(", first at {i}: ours {a:#010x} gguf-py {b:#010x}"))
                    .unwrap_or_default()
            ));
        }
    }
    ctx.metric("mismatched_values", mismatched as f64);
    ctx.metric("values_compared", compared as f64);
    ctx.note(details.join("; "));
    Ok(())
}

#[test]
fn bit_comparison_can_fail() {
    let a = [1.0f32, f32::from_bits(0x7fc0_0001)];
    let b = [1.0f32, f32::from_bits(0x7fc0_0002)];
    assert_eq!(compare_bits(&a, &a).0, 0);
    assert_eq!(compare_bits(&a, &b).0, 1);
    assert_eq!(compare_bits(&[0.0], &[-0.0]).0, 1);
}

// ---------------------------------------------------------------------------------------------

/// Activation rows for the Q8_0 byte comparison: random magnitudes, zeros, an all-zero block,
/// and blocks with amax = 127 (so id = 1) holding exact ties k + 0.5.
fn q8_0_inputs(rng: &mut Rng) -> Vec<f32> {
    let mut x = Vec::new();
    for b in 0..512 {
        let mag = 10f32.powi(b % 7 - 3);
        for i in 0..32 {
            x.push(match (b % 5, i) {
                (0, _) => 0.0,
                (1, 0) => 127.0,
                (1, i) => (i as f32 - 16.0) + 0.5,
                (2, 3) => 0.0,
                _ => (rng.next_f32() * 2.0 - 1.0) * mag,
            });
        }
    }
    x
}

#[falsifier("FALSIFY-QK-QUANT-Q80-001")]
fn q8_0_quantization_matches_gguf_py(ctx: &mut Ctx) -> FalsifierResult {
    let py = std::path::PathBuf::from(ctx.fixture("python-oracle")?);
    let dir = tempfile::tempdir()?;
    let mut rng = Rng::new(0x080);
    let x = q8_0_inputs(&mut rng);
    let inp = dir.path().join("x.f32");
    let out = dir.path().join("q.bin");
    std::fs::write(
        &inp,
        x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
    )?;
    oracle(
        &py,
        &[
            "quantize-q8_0",
            &inp.to_string_lossy(),
            &out.to_string_lossy(),
        ],
    )?;
    let theirs = std::fs::read(&out)?;
    let mut acts = Q80Acts::default();
    quantize_row_q8_0(&x, &mut acts)?;
    let ours = acts.to_ggml_bytes();
    let mismatched = ours.len().abs_diff(theirs.len())
        + ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
    ctx.metric("mismatched_bytes", mismatched as f64);
    ctx.note(format!(
        "{} blocks of 32 ({} bytes)",
        x.len() / 32,
        ours.len()
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------------

const COLS: [usize; 4] = [256, 1024, 4096, 8192];

#[falsifier("FALSIFY-QK-DOT-F32-001")]
fn f32_dots_match_f64(ctx: &mut Ctx) -> FalsifierResult {
    let mut rng = Rng::new(0xF32);
    let mut worst = 0.0f64;
    let mut per = Vec::new();
    for q in QType::ALL {
        let mut wq = 0.0f64;
        for cols in COLS {
            for _ in 0..4 {
                let row = random_row(q, cols, &mut rng, false);
                let x = random_x(cols, &mut rng);
                let w = deq(q, &row, cols);
                let exact: f64 = w.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
                let abs: f64 = w
                    .iter()
                    .zip(&x)
                    .map(|(a, b)| (*a as f64 * *b as f64).abs())
                    .sum();
                for got in [vec_dot_f32(q, &row, &x)?, vec_dot_f32_scalar(q, &row, &x)?] {
                    wq = wq.max((got as f64 - exact).abs() / abs.max(f64::MIN_POSITIVE));
                }
            }
        }
        per.push(wq);
        worst = worst.max(wq);
    }
    ctx.metric("max_err_over_abs_sum", worst);
    ctx.series("max_err_over_abs_sum_per_qtype", per);
    ctx.note(format!(
        "qtypes {:?}, columns {COLS:?}, 4 rows each, production and scalar kernels",
        QType::ALL.map(|q| q.name())
    ));
    Ok(())
}

/// Dequantized activations of the prepared form `q` uses.
fn xq_of(q: QType, a: &QuantizedActs) -> Vec<f32> {
    match q.act_format() {
        quant::ActFormat::Q8K => a.q8k.as_ref().map(|k| k.dequantize()).unwrap_or_default(),
        quant::ActFormat::Q80 => a.q80.as_ref().map(|k| k.dequantize()).unwrap_or_default(),
        quant::ActFormat::F32 => a.f32.clone(),
    }
}

#[falsifier("FALSIFY-QK-DOT-Q8-001")]
fn q8_dots_match_dequantized_product(ctx: &mut Ctx) -> FalsifierResult {
    let mut rng = Rng::new(0x0808);
    let mut worst = 0.0f64;
    let mut per = Vec::new();
    for q in Q8_QTYPES {
        let mut wq = 0.0f64;
        for cols in COLS {
            for _ in 0..4 {
                let row = random_row(q, cols, &mut rng, false);
                let x = random_x(cols, &mut rng);
                let a = QuantizedActs::new(&x, &[q])?;
                let w = deq(q, &row, cols);
                let xq = xq_of(q, &a);
                let exact: f64 = w.iter().zip(&xq).map(|(a, b)| *a as f64 * *b as f64).sum();
                let abs: f64 = w
                    .iter()
                    .zip(&xq)
                    .map(|(a, b)| (*a as f64 * *b as f64).abs())
                    .sum();
                for got in [vec_dot_q8(q, &row, &a)?, vec_dot_q8_scalar(q, &row, &a)?] {
                    wq = wq.max((got as f64 - exact).abs() / abs.max(f64::MIN_POSITIVE));
                }
            }
        }
        per.push(wq);
        worst = worst.max(wq);
    }
    ctx.metric("max_err_over_abs_sum", worst);
    ctx.series("max_err_over_abs_sum_per_qtype", per);
    ctx.note(format!(
        "qtypes {:?}, columns {COLS:?}",
        Q8_QTYPES.map(|q| q.name())
    ));
    Ok(())
}

/// The proven bound B of FALSIFY-QK-DOT-Q8-BOUND-001 for weights `w` and activations `x`.
fn quant_bound(q: QType, w: &[f32], x: &[f32]) -> f64 {
    let bs = match q.act_format() {
        quant::ActFormat::Q8K => 256,
        _ => 32,
    };
    let mut b = 0.0f64;
    for (wb, xb) in w.chunks(bs).zip(x.chunks(bs)) {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let e = if bs == 256 {
            amax as f64 / 254.0
        } else {
            let d = amax / 127.0;
            let d16 = f16_to_f32(f32_to_f16(d));
            d as f64 / 2.0 + 127.0 * (d as f64 - d16 as f64).abs()
        };
        b += wb.iter().map(|v| v.abs() as f64).sum::<f64>() * e;
    }
    b + 1e-5
        * w.iter()
            .zip(x)
            .map(|(a, b)| (*a as f64 * *b as f64).abs())
            .sum::<f64>()
}

fn bound_ratio(q: QType, row: &[u8], x: &[f32], a: &QuantizedActs) -> Result<f64, FalsifierError> {
    let cols = x.len();
    let w = deq(q, row, cols);
    let exact: f64 = w.iter().zip(x).map(|(a, b)| *a as f64 * *b as f64).sum();
    let got = vec_dot_q8(q, row, a)? as f64;
    Ok((got - exact).abs() / quant_bound(q, &w, x))
}

#[falsifier("FALSIFY-QK-DOT-Q8-BOUND-001")]
fn q8_dots_within_quantization_bound(ctx: &mut Ctx) -> FalsifierResult {
    let mut rng = Rng::new(0xB0B);
    let mut worst = 0.0f64;
    let mut per = Vec::new();
    for q in Q8_QTYPES {
        let mut wq = 0.0f64;
        for cols in COLS {
            for _ in 0..4 {
                let row = random_row(q, cols, &mut rng, false);
                let x = random_x(cols, &mut rng);
                let a = QuantizedActs::new(&x, &[q])?;
                wq = wq.max(bound_ratio(q, &row, &x, &a)?);
            }
        }
        per.push(wq);
        worst = worst.max(wq);
    }
    ctx.metric("max_err_over_bound", worst);
    ctx.series("max_err_over_bound_per_qtype", per);
    Ok(())
}

/// Activations quantized with a systematic error (every value one step too high) break the
/// bound: the bound check is not vacuous.
#[test]
fn quantization_bound_can_fail() {
    let mut rng = Rng::new(3);
    let cols = 1024;
    // Positive weights and activations, so the systematic error cannot cancel.
    let mut row = random_row(QType::Q8_0, cols, &mut rng, false);
    for b in row.chunks_exact_mut(34) {
        for v in &mut b[2..] {
            *v &= 0x7f;
        }
    }
    let x: Vec<f32> = (0..cols).map(|_| rng.next_f32() + 0.5).collect();
    let mut a = QuantizedActs::new(&x, &[QType::Q8_0]).unwrap();
    assert!(bound_ratio(QType::Q8_0, &row, &x, &a).unwrap() <= 1.0);
    for q in &mut a.q80.as_mut().unwrap().qs {
        *q = q.saturating_add(1);
    }
    assert!(bound_ratio(QType::Q8_0, &row, &x, &a).unwrap() > 1.0);
}

// ---------------------------------------------------------------------------------------------

#[falsifier("FALSIFY-QK-SIMD-001")]
fn simd_paths_match_scalar(ctx: &mut Ctx) -> FalsifierResult {
    if !quant::has_avx2() {
        return Err(ctx.skip("this CPU has no AVX2+FMA+F16C: the fast paths do not run"));
    }
    let mut rng = Rng::new(0x51D);
    let (mut deq_bad, mut worst) = (0usize, 0.0f64);
    let mut per = Vec::new();
    for q in QType::ALL {
        let mut wq = 0.0f64;
        for cols in COLS {
            for _ in 0..4 {
                let row = random_row(q, cols, &mut rng, false);
                let x = random_x(cols, &mut rng);
                let (mut fast, mut slow) = (vec![0.0f32; cols], vec![0.0f32; cols]);
                dequantize_row(q, &row, &mut fast)?;
                dequantize_row_scalar(q, &row, &mut slow)?;
                deq_bad += compare_bits(&fast, &slow).0;
                let abs: f64 = slow
                    .iter()
                    .zip(&x)
                    .map(|(a, b)| (*a as f64 * *b as f64).abs())
                    .sum();
                let d = (vec_dot_f32(q, &row, &x)? as f64
                    - vec_dot_f32_scalar(q, &row, &x)? as f64)
                    .abs();
                wq = wq.max(d / abs.max(f64::MIN_POSITIVE));
                if q.act_format() != quant::ActFormat::F32 {
                    let a = QuantizedActs::new(&x, &[q])?;
                    let xq = xq_of(q, &a);
                    let abs: f64 = slow
                        .iter()
                        .zip(&xq)
                        .map(|(a, b)| (*a as f64 * *b as f64).abs())
                        .sum();
                    let d = (vec_dot_q8(q, &row, &a)? as f64
                        - vec_dot_q8_scalar(q, &row, &a)? as f64)
                        .abs();
                    wq = wq.max(d / abs.max(f64::MIN_POSITIVE));
                }
            }
        }
        per.push(wq);
        worst = worst.max(wq);
    }
    ctx.metric("dequant_mismatches", deq_bad as f64);
    ctx.metric("dot_max_diff_over_abs_sum", worst);
    ctx.series("dot_max_diff_per_qtype", per);
    ctx.note(format!(
        "qtypes {:?} (AVX2 dequant: F16, Q4_K, Q6_K, Q8_0; AVX2 q8 dots: Q4_0, Q8_0, Q4_K, Q5_K, Q6_K; AVX2 f32 dots: all), columns {COLS:?}",
        QType::ALL.map(|q| q.name())
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------------

fn with_threads<R: Send>(n: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .expect("thread pool")
        .install(f)
}

fn bits_differ(a: &[f32], b: &[f32]) -> usize {
    a.len().abs_diff(b.len())
        + a.iter()
            .zip(b)
            .filter(|(x, y)| x.to_bits() != y.to_bits())
            .count()
}

#[falsifier("FALSIFY-QK-MATVEC-001")]
fn matvec_is_deterministic_and_equals_row_dots(ctx: &mut Ctx) -> FalsifierResult {
    let mut rng = Rng::new(0x3A7);
    let (rows, cols, batch) = (173usize, 1024usize, 5usize);
    let mut bad = 0usize;
    for q in QType::ALL {
        let w: Vec<u8> = (0..rows)
            .flat_map(|_| random_row(q, cols, &mut rng, false))
            .collect();
        let rb = q.row_bytes(cols).context("row bytes")?;
        let xs: Vec<Vec<f32>> = (0..batch).map(|_| random_x(cols, &mut rng)).collect();
        let acts: Vec<QuantizedActs> = xs
            .iter()
            .map(|x| QuantizedActs::new(x, &[q]))
            .collect::<Result<_, _>>()?;
        for (x, a) in xs.iter().zip(&acts) {
            let want_f32: Vec<f32> = w
                .chunks_exact(rb)
                .map(|r| vec_dot_f32(q, r, x))
                .collect::<Result<_, _>>()?;
            let want_q8: Vec<f32> = w
                .chunks_exact(rb)
                .map(|r| vec_dot_q8(q, r, a))
                .collect::<Result<_, _>>()?;
            for threads in [1, 2] {
                let (mut o1, mut o2) = (vec![0.0; rows], vec![0.0; rows]);
                with_threads(threads, || -> Result<(), quant::QuantError> {
                    matvec_f32(q, &w, rows, cols, x, &mut o1)?;
                    matvec_q8(q, &w, rows, cols, a, &mut o2)
                })?;
                bad += bits_differ(&o1, &want_f32) + bits_differ(&o2, &want_q8);
            }
        }
        let mut mm = vec![0.0f32; rows * batch];
        with_threads(2, || matmat_q8(q, &w, rows, cols, &acts, &mut mm))?;
        for (t, a) in acts.iter().enumerate() {
            let mut o = vec![0.0; rows];
            matvec_q8(q, &w, rows, cols, a, &mut o)?;
            bad += bits_differ(&mm[t * rows..(t + 1) * rows], &o);
        }
    }
    ctx.metric("mismatched_outputs", bad as f64);
    ctx.note(format!(
        "{rows} rows x {cols} columns, batch {batch}, every qtype, 1 and 2 threads"
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------------

/// Throughput on this machine (not a falsifier: numbers for the report). Run with
/// `cargo test -p falsifiers --release --test quant -- --ignored --nocapture throughput`.
#[test]
#[ignore = "benchmark; run explicitly"]
fn throughput() {
    let mut rng = Rng::new(1);
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    let (p1, p2) = (pool(1), pool(2));
    // 2048 rows (a few MB: cache-resident) and 16384 rows (out of L2, mostly out of L3).
    for (rows, cols, q) in [2048usize, 16384].into_iter().flat_map(|r| {
        [
            QType::Q4K,
            QType::Q5K,
            QType::Q6K,
            QType::Q8_0,
            QType::Q4_0,
            QType::F16,
            QType::F32,
        ]
        .map(|q| (r, 2048usize, q))
    }) {
        let w: Vec<u8> = (0..rows)
            .flat_map(|_| random_row(q, cols, &mut rng, false))
            .collect();
        let x = random_x(cols, &mut rng);
        let a = QuantizedActs::new(&x, &[q]).unwrap();
        let mut out = vec![0.0f32; rows];
        let mut y = vec![0.0f32; cols];
        let rb = q.row_bytes(cols).unwrap();
        let time = |f: &mut dyn FnMut()| {
            f();
            let t = std::time::Instant::now();
            let mut n = 0;
            while t.elapsed().as_secs_f64() < 0.5 {
                f();
                n += 1;
            }
            t.elapsed().as_secs_f64() / n as f64
        };
        let t_deq = time(&mut || {
            for r in w.chunks_exact(rb) {
                dequantize_row(q, r, &mut y).unwrap();
            }
        });
        let t_f32 = time(&mut || {
            p1.install(|| matvec_f32(q, &w, rows, cols, &x, &mut out))
                .unwrap()
        });
        let t_q8 = time(&mut || {
            p1.install(|| matvec_q8(q, &w, rows, cols, &a, &mut out))
                .unwrap()
        });
        let t_q8_2 = time(&mut || {
            p2.install(|| matvec_q8(q, &w, rows, cols, &a, &mut out))
                .unwrap()
        });
        let gb = w.len() as f64 / 1e9;
        let gv = (rows * cols) as f64 / 1e9;
        println!(
            "{rows:5} x {cols} {:5} dequant {:6.2} Gvalues/s | matvec f32-act 1t {:6.2} GB/s | q8-act 1t {:6.2} GB/s, 2t {:6.2} GB/s",
            q.name(),
            gv / t_deq,
            gb / t_f32,
            gb / t_q8,
            gb / t_q8_2
        );
    }
}
